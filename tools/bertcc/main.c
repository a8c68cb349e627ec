/* main.c: the bertcc command-line driver. It only parses arguments and calls the
 * modules' public interfaces; everything it does, a C program can do too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../codegen/codegen.h"
#include "driver.h"

static const char usage[] =
    "usage: bertcc MODEL.xml --emit=STAGE [-o FILE]   print a compilation stage\n"
    "       bertcc MODEL.xml -o bert.so                compile to a shared library\n"
    "       bertcc run MODEL.xml --batch B.safetensors -o OUT.safetensors [options]\n"
    "       bertcc train MODEL.xml --data B.safetensors -o RUN_DIR [options]\n"
    "       bertcc train MODEL.xml --task intent-slot --data DIR --vocab V -o RUN_DIR\n"
    "       bertcc eval --model RUN_DIR --data DIR [--split test|dev] [--json]\n"
    "       bertcc predict --model RUN_DIR [--json] [TEXT...]\n"
    "       bertcc bench MODEL.xml --mode infer|train [--batch-size B] [--json]\n"
    "       bertcc COMMAND --help                      help on one command\n"
    "\n"
    "commands:\n"
    "  (none)          compile a model description: --emit=ir|opt|grad|llvm-raw|llvm|asm\n"
    "  run             one eval-mode forward pass on a batch file\n"
    "  train           train on batch files or a task's data (--task intent-slot)\n"
    "  eval            score a trained run on a split of a task's data\n"
    "  predict         answer raw text with a trained run\n"
    "  export          write a trained run as a Hugging Face model directory\n"
    "  demo-data       write the bundled Korean voice-assistant data set\n"
    "  show            summarize the tensors of a safetensors file\n"
    "  tokenize        BERT tokenization of text with a vocab.txt\n"
    "  vocab           learn a WordPiece vocabulary from a corpus\n"
    "  pretrain-data   BERT's MLM/NSP pre-training instances from plain text\n"
    "  bench           time a model's forward pass or training step on random ids\n"
    "\n"
    "MODEL is an XML model description (see README.md) or a Hugging Face config.json.\n"
    "Every command takes --backend=ref|jit and --threads N.\n";

void driver_note(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "bertcc: note: %s\n", msg);
}

int driver_fail(const char *msg)
{
    fprintf(stderr, "bertcc: %s\n", msg);
    return 1;
}

double driver_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    /* libgomp spins about 0.1 ms at every barrier before it sleeps. The executor meets
     * one barrier per step, and on a loaded machine a spinning thread takes the core
     * its partner needs: bert-base ran 5x slower on 2 threads than on 1 while another
     * process was busy. A short spin keeps the quiet-machine speed and avoids that.
     * Either variable set by the user wins. */
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT"))
        setenv("GOMP_SPINCOUNT", "20000", 1);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        char cpu[64], feat[4096];
        cg_host_target(cpu, sizeof cpu, feat, sizeof feat);
        printf("bertcc 0.1.0 (LLVM %s, host cpu %s)\n", cg_llvm_version(), cpu);
        return 0;
    }
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc, argv);
    if (!strcmp(argv[1], "show"))
        return cmd_show(argc, argv);
    if (!strcmp(argv[1], "train"))
        return cmd_train(argc, argv);
    if (!strcmp(argv[1], "pretrain-data"))
        return cmd_pretrain_data(argc, argv);
    if (!strcmp(argv[1], "tokenize"))
        return cmd_tokenize(argc, argv);
    if (!strcmp(argv[1], "vocab"))
        return cmd_vocab(argc, argv);
    if (!strcmp(argv[1], "eval"))
        return cmd_eval(argc, argv);
    if (!strcmp(argv[1], "predict"))
        return cmd_predict(argc, argv);
    if (!strcmp(argv[1], "export"))
        return cmd_export(argc, argv);
    if (!strcmp(argv[1], "demo-data"))
        return cmd_demo_data(argc, argv);
    if (!strcmp(argv[1], "bench"))
        return cmd_bench(argc, argv);
    /* a word that is no command and names no file: a mistyped command, not a model */
    if (argv[1][0] != '-' && !strpbrk(argv[1], "./") && access(argv[1], F_OK)) {
        fprintf(stderr,
                "bertcc: unknown command '%s' (commands: run, train, eval, predict, export, "
                "demo-data, show, tokenize, vocab, pretrain-data, bench; or a model "
                "description MODEL.xml; see bertcc --help)\n",
                argv[1]);
        return 1;
    }
    return cmd_compile(argc, argv);
}
