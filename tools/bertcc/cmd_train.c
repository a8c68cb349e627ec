/* cmd_train.c: `bertcc train` — parses the options into rundir_train_args and calls
 * rundir_train (tasks/trainer.h), which does everything; Ctrl-C asks it to checkpoint
 * and stop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tasks/trainer.h"
#include "../../train/dist.h"
#include "args.h"
#include "driver.h"

static rundir_train_args a;
static const char *freeze, *quiet;
static char task_help[RUNDIR_MAX_TASK_OPTS][1024];

#define BASE_OPTS 31
static arg_opt opts[BASE_OPTS + RUNDIR_MAX_TASK_OPTS + 1] = {
    {"data", "PATH",
     "a batch file (the run batch format, N rows), or the task's data "
     "(intent-slot: DIR/{train,dev,test}/{seq.in,seq.out,label}; qa: a SQuAD v1.1 "
     "JSON file; pretrain: a corpus, one sentence per line and a blank line between "
     "documents, or a pretrain-data file; classify: DIR/{train,dev,test}.{tsv,csv,jsonl} "
     "or one such file)",
     &a.data},
    {"o", "RUN_DIR", "run directory (weights, optimizer state, logs, options)", &a.out},
    {"task", "NAME", "batches (default), intent-slot, qa, pretrain or classify", &a.task},
    {"vocab", "VOCAB.txt", "the vocabulary (with --task; sets the model's vocab-size)",
     &a.vocab},
    {"lowercase", NULL, "lower-case the text (the default)", &a.lower},
    {"no-lowercase", NULL, "keep case (for a cased vocabulary)", &a.no_lower},
    {"strip-accents", NULL, "strip accents even without lower-casing", &a.strip},
    {"no-strip-accents", NULL, "keep accents (and Hangul syllables) when lower-casing",
     &a.no_strip},
    {"init", "CKPT",
     "start from a checkpoint: a .safetensors file or a Hugging Face model "
     "directory (model.safetensors; its vocab.txt and tokenizer_config.json casing "
     "unless given); what it lacks is initialized and listed",
     &a.init},
    {"resume", "RUN_DIR",
     "continue a stopped run exactly (its options are the "
     "defaults)",
     &a.resume},
    {"epochs", "N", "passes over the data (default 3)", &a.epochs},
    {"steps", "N", "total optimizer updates instead of --epochs", &a.steps},
    {"batch-size", "N",
     "rows per micro-batch (default 8); under mpirun -np N, the rows of a micro-batch "
     "across all ranks, rank r taking rows [r*G/N, (r+1)*G/N)",
     &a.batch_size},
    {"accum", "N", "micro-batches per update, gradients averaged (default 1)", &a.accum},
    {"lr", "X", "peak learning rate (default 5e-5)", &a.lr},
    {"warmup", "F", "linear warm-up, fraction of the updates (default 0.1)", &a.warmup},
    {"weight-decay", "X",
     "AdamW decoupled weight decay, not on biases and LayerNorm "
     "(default 0.01)",
     &a.weight_decay},
    {"clip", "X", "max global gradient norm, 0: off (default 1.0)", &a.clip},
    {"eps", "X", "AdamW epsilon (default 1e-6 as transformers.AdamW; torch: 1e-8)", &a.eps},
    {"freeze", "PREFIX",
     "never update parameters whose name starts with PREFIX "
     "(repeatable)",
     &freeze},
    {"seed", "N", "initialization, shuffling and dropout (default 0)", &a.seed},
    {"threads", "N",
     "number of threads (default: all cores; under mpirun, the host's cores divided "
     "by its ranks)",
     &a.threads},
    {"backend", "NAME",
     "jit (generated code, the default) or ref (the reference interpreter)", &a.backend},
    {"fuse", "RULES", FUSE_HELP " (kept by --resume)", &a.fuse},
    {"save-every", "N", "also checkpoint every N updates (default: at the end)",
     &a.save_every},
    {"log-every", "N", "progress line every N updates when stderr is not a terminal",
     &a.log_every},
    {"no-eval", NULL, "with --task: no dev evaluation after each epoch", &a.no_eval},
    {"group-by-length", NULL,
     "micro-batches of rows of similar length (sorted within runs of 50 "
     "micro-batches after shuffling, the micro-batches then in random order): less "
     "padding, faster epochs",
     &a.group},
    {"eval-batch-size", "N", "with --task: rows per dev batch (default 64)", &a.eval_batch},
    {"quiet", NULL, "no progress or summary on stderr", &quiet},
    {"dist-bucket-mb", "MB",
     "under mpirun: the gradient travels in messages of MB (default 25; any size gives "
     "the same bits)",
     &a.dist_bucket_mb},
    {NULL, NULL, NULL, NULL},
};

static const char usage[] =
    "bertcc train MODEL.xml --data B.safetensors -o RUN_DIR [options]\n"
    "       bertcc train MODEL.xml --task intent-slot --data DIR --vocab V -o "
    "RUN_DIR [options]\n"
    "       bertcc train MODEL.xml --task qa --data F.json (--eval-data D.json | "
    "--holdout K) --vocab V -o RUN_DIR\n"
    "       bertcc train MODEL.xml --task pretrain --data "
    "CORPUS.txt|DATA.safetensors "
    "--vocab V -o RUN_DIR\n"
    "       bertcc train MODEL.xml --task classify --data DIR|FILE [--holdout K] --vocab V "
    "-o RUN_DIR\n"
    "       bertcc train --resume RUN_DIR [options]";

static const char about[] =
    "Trains MODEL (AdamW, linear warm-up and decay, gradient clipping) on the\n"
    "rows of a batch file, or on a task's data, shuffled every epoch. With\n"
    "--task, the model description gives the encoder; the vocabulary and the\n"
    "label sets size it (RUN_DIR/model.xml), dev is evaluated after each epoch\n"
    "(RUN_DIR/metrics.csv, curves.svg) and the best weights are kept\n"
    "(RUN_DIR/best.safetensors). Ctrl-C or SIGTERM writes a checkpoint at the\n"
    "end of the current update and stops (further ones are ignored until it is\n"
    "written; SIGQUIT, Ctrl-\\, ends at once); --resume continues with the same\n"
    "losses as an uninterrupted run (given the same --threads and backend).\n"
    "Checkpoints are atomic units under RUN_DIR/checkpoints/: a kill at any\n"
    "instant leaves the last complete one to resume. The options marked (TASK)\n"
    "belong to that task.\n"
    "\n"
    "Data parallel: `mpirun -np N bertcc train ...` trains on N processes (on one\n"
    "machine or several: README \"Training on several processes and machines\"),\n"
    "each taking its share of every micro-batch; the weights are bit-identical to\n"
    "one process's with --batch-size G/N --accum N*A. Rank 0 writes RUN_DIR.\n"
    "To stop such a job with a checkpoint, send SIGUSR1 to mpirun (it forwards it\n"
    "to every rank) or SIGTERM to the ranks.";

static volatile sig_atomic_t interrupted;

/* The first SIGINT, SIGTERM (what schedulers send) or SIGUSR1 (what mpirun forwards to
 * every rank without ending the job) asks for a checkpoint at the end of the current
 * update; further ones are ignored, with a note, until it is durable (a second Ctrl-C used
 * to kill the run before its checkpoint was written). */
static void on_stop_signal(int sig)
{
    (void)sig;
    if (!interrupted) {
        interrupted = 1;
        return;
    }
    static const char msg[] =
        "\nbertcc: note: stopping after the checkpoint being written; "
        "further interrupts are ignored (SIGQUIT, Ctrl-\\, ends at "
        "once)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
}

/* Every --freeze PREFIX (the option parser keeps only the last of a repeated option),
 * each possibly a comma-separated list. */
static int collect_freeze(int argc, char **argv, char **copies)
{
    int nc = 0;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--freeze") && i + 1 < argc)
            v = argv[++i];
        else if (!strncmp(argv[i], "--freeze=", 9))
            v = argv[i] + 9;
        if (!v)
            continue;
        if (nc == RUNDIR_MAX_FREEZE)
            return driver_fail("train: too many --freeze options"), -1;
        char *c = copies[nc++] = strdup(v);
        for (char *tok = c ? strtok(c, ",") : NULL; tok; tok = strtok(NULL, ",")) {
            if (a.nfrozen == RUNDIR_MAX_FREEZE)
                return driver_fail("train: too many --freeze prefixes"), -1;
            a.frozen[a.nfrozen++] = tok;
        }
    }
    return 0;
}

static void print_metrics(const tk_metrics *m)
{
    for (int i = 0; i < m->n; i++)
        fprintf(stderr, "%s%s %.4f", i ? "  " : "", m->name[i], m->value[i]);
}

/* The run's outcome on stderr; the exit status. */
static int report(int failed, const bc_err *e, const rundir_train_result *r)
{
    const tr_train_result *t = &r->train;
    if (failed && tr_dist_size() > 1)
        tr_dist_fail(e->msg); /* ends every rank */
    if (failed)
        return fprintf(stderr, "bertcc train: %s\n", e->msg), 1;
    if (tr_dist_rank() > 0)
        return t->stopped ? 130 : 0;
    if (t->stopped) {
        fprintf(stderr,
                "bertcc train: interrupted at step %lld/%lld; checkpoint in %s (continue "
                "with: bertcc train --resume %s)\n",
                (long long)t->step, (long long)t->total, r->out, r->out);
        return 130;
    }
    if (quiet)
        return 0;
    if (t->step == t->start_step)
        fprintf(stderr,
                "bertcc train: %s is complete (%lld/%lld steps); give a larger --steps or "
                "--epochs to train further\n",
                r->out, (long long)t->step, (long long)t->total);
    else
        fprintf(stderr,
                "bertcc train: %lld/%lld steps, final loss %.6g; weights in %s/%s\n",
                (long long)t->step, (long long)t->total, t->last_loss, r->out,
                TR_TRAIN_WEIGHTS);
    if (tr_dist_size() > 1 && t->train_s > 0)
        fprintf(
            stderr,
            "bertcc train: %d ranks; communication %.2f s of %.2f s training (%.1f%%)\n",
            tr_dist_size(), t->comm_s, t->train_s, 100 * t->comm_s / t->train_s);
    if (r->have_best) {
        fprintf(stderr, "bertcc train: best on dev (best.safetensors): ");
        print_metrics(&r->best);
        fputc('\n', stderr);
    }
    return 0;
}

static int train(void)
{
    bc_err e;
    if (tr_dist_init(&e))
        return driver_fail(e.msg);
    /* under MPI, rank 0 speaks for the job */
    a.progress = quiet || tr_dist_rank() > 0 ? NULL : stderr;
    a.note = tr_dist_rank() > 0 ? NULL : driver_note;
    a.stop = &interrupted;
    interrupted = 0;
    struct sigaction sa, old_int, old_term, old_usr1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGUSR1, &sa, &old_usr1); /* what mpirun forwards as it is */
    rundir_train_result r;
    int failed = rundir_train(&a, &r, &e) != 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    int rc = report(failed, &e, &r);
    rundir_train_result_free(&r);
    tr_dist_finalize();
    return rc;
}

int cmd_train(int argc, char **argv)
{
    /* The tasks' own options after the engine's. */
    const char *meta[RUNDIR_MAX_TASK_OPTS];
    rundir_train_task_options(&a, meta, task_help);
    int n = 0;
    while (opts[n].name)
        n++;
    for (int i = 0; i < a.ntopt; i++)
        opts[n++] = (arg_opt){a.topt_name[i], meta[i], task_help[i], &a.topt_value[i]};
    opts[n] = (arg_opt){NULL, NULL, NULL, NULL};
    const char *pos[1] = {NULL};
    int help;
    int npos = args_parse(argc, argv, 2, opts, pos, 1, &help, "train");
    if (npos < 0)
        return 1;
    if (help) {
        args_usage(usage, about, opts);
        puts(tr_dist_built()
                 ? "\nThis build has MPI."
                 : "\nThis build has no MPI (install libopenmpi-dev and rebuild "
                   "for data-parallel training).");
        return 0;
    }
    if (a.epochs && a.steps)
        return driver_fail("train: give --epochs or --steps, not both");
    a.model = npos ? pos[0] : NULL;
    if (!a.model && !a.resume)
        return driver_fail(
            "train: expected one model description (see bertcc train --help)");
    char *copies[RUNDIR_MAX_FREEZE] = {NULL};
    int rc = collect_freeze(argc, argv, copies) ? 1 : train();
    for (int i = 0; i < RUNDIR_MAX_FREEZE; i++)
        free(copies[i]);
    return rc;
}
