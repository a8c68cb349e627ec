/* main.c: the bertcc command-line driver. It only parses arguments and calls the
 * modules' public interfaces; everything it does, a C program can do too. */
#include <stdio.h>
#include <string.h>

#include "../../codegen/codegen.h"
#include "driver.h"

static const char usage[] =
    "usage: bertcc MODEL.xml --emit=STAGE [-o FILE]   print a compilation stage\n"
    "       bertcc MODEL.xml -o bert.so                compile to a shared library\n"
    "       bertcc run MODEL.xml --batch B.safetensors -o OUT.safetensors [options]\n"
    "       bertcc train MODEL.xml --data B.safetensors -o RUN_DIR [options]\n"
    "       bertcc COMMAND --help                      help on one command\n"
    "\n"
    "commands:\n"
    "  (none)          compile a model description: --emit=ir|opt|grad|llvm-raw|llvm|asm\n"
    "  run             one eval-mode forward pass on a batch file\n"
    "  train           train on batch files (AdamW, warm-up/decay, checkpoints, resume)\n"
    "  show            summarize the tensors of a safetensors file\n"
    "  tokenize        BERT tokenization of text with a vocab.txt\n"
    "  vocab           learn a WordPiece vocabulary from a corpus\n"
    "  pretrain-data   BERT's MLM/NSP pre-training instances from plain text\n"
    "  eval, predict, export, bench\n"
    "                  (not implemented yet: later issues)\n"
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

int main(int argc, char **argv)
{
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
    static const char *const later[] = {"eval", "predict", "export", "bench"};
    for (size_t i = 0; i < sizeof later / sizeof *later; i++)
        if (!strcmp(argv[1], later[i])) {
            fprintf(stderr, "bertcc %s: not implemented yet\n", later[i]);
            return 1;
        }
    return cmd_compile(argc, argv);
}
