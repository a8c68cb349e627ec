/* trainer.h: `bertcc train` as a library call. It trains a model with the engine of
 * train/train.h, either on a batch file (the `run` batch format with N rows; task
 * "batches", the default) or on a task's data (tasks/task.h), which also sizes the model
 * from the vocabulary and the label sets, evaluates on dev after every epoch, keeps the
 * best weights and draws the curves. The training-mode graph (dropout, driven by a
 * "dropout_seed" input) is differentiated by pass_autodiff and runs through cg_engine
 * (either backend). A run directory collects everything (rundir.h); a resumed run
 * continues it exactly.
 *
 * The options are the command line's, as strings (NULL: not given), because a resumed
 * run takes every option its command line omits from the run's options.json, and
 * because their checks and messages ("--lr expects a number in [0, 10], got 'x'") are
 * the same from C as from the shell. A C program sets the fields it wants, e.g.
 *     rundir_train_args a = {.model = "bert-tiny.xml", .task = "intent-slot",
 *                            .data = "data", .vocab = "vocab.txt", .out = "run",
 *                            .epochs = "3"};
 *     rundir_train_result r;
 *     if (rundir_train(&a, &r, &e)) ...  */
#ifndef BERTCC_TASKS_TRAINER_H
#define BERTCC_TASKS_TRAINER_H

#include <signal.h>
#include <stdio.h>

#include "../support/err.h"
#include "../train/train.h"
#include "task.h"

#define RUNDIR_MAX_FREEZE 64
#define RUNDIR_MAX_TASK_OPTS 32

typedef struct rundir_train_args {
    /* What to train and where: a model description (or, with resume, RUN_DIR's), the
     * data, the run directory, the task ("batches" when NULL), a checkpoint or Hugging
     * Face directory to start from, or a run to resume. */
    const char *model, *data, *out, *task, *init, *resume;
    /* The engine's options (train/train.h, train/optim.h), as `bertcc train --help`
     * describes them. */
    const char *epochs, *steps, *batch_size, *accum, *lr, *warmup, *weight_decay, *clip;
    const char *eps, *seed, *threads, *backend, *save_every, *log_every;
    const char *dist_bucket_mb; /* under MPI: the gradient's message size (train/dist.h) */
    const char *fuse;           /* the fusion rules (pass_fuse_parse; NULL: all) */
    /* With a task: the vocabulary, the tokenizer flags (any non-NULL value sets one),
     * no dev evaluation, the dev batch size, grouping by length. */
    const char *vocab, *lower, *no_lower, *strip, *no_strip, *no_eval, *eval_batch, *group;
    const char *frozen[RUNDIR_MAX_FREEZE]; /* parameter name prefixes never updated */
    int nfrozen;
    /* The task's own options by name (any task's; one of another task is an error). */
    const char *topt_name[RUNDIR_MAX_TASK_OPTS];
    const char *topt_value[RUNDIR_MAX_TASK_OPTS];
    int ntopt;
    FILE *progress;  /* progress lines, dev scores and the summary; NULL: quiet */
    bc_note_fn note; /* notes (initialized tensors, unseen labels ...); may be NULL */
    void *note_ctx;
    volatile sig_atomic_t *stop; /* set (e.g. by SIGINT): checkpoint and return; may be
                                    NULL. A failed dev evaluation sets it too. */
} rundir_train_args;

typedef struct rundir_train_result {
    tr_train_result train; /* steps done, planned, stopped, last loss */
    int have_best;         /* dev was evaluated: best holds the best scores */
    tk_metrics best;       /* names are static strings of the task (or of the run's
                              metrics.csv, kept until rundir_train_result_free) */
    char out[4096];        /* the run directory */
    void *keep;            /* what best's names point into (internal) */
} rundir_train_result;

/* Trains as `bertcc train` does. Returns 0 (also when *stop ended the run early:
 * r->train.stopped says so), or -1 with e filled; a dev evaluation that fails after a
 * checkpoint was written says so in e. r->keep must be released with
 * rundir_train_result_free in both cases. */
int rundir_train(rundir_train_args *a, rundir_train_result *r, bc_err *e);
void rundir_train_result_free(rundir_train_result *r);

/* Adds to *a the task options of every registered task, each name once (for an option
 * parser): meta[i] receives option i's metavariable ("N") and help[i] "(TASK) help",
 * joined with "; " when several tasks share the option. */
void rundir_train_task_options(rundir_train_args *a, const char **meta, char help[][1024]);

#endif
