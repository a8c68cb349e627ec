/* rundir.h: what `train`, `eval`, `predict` and `export` share: the registry of tasks,
 * run directories (their files, options.json, opening a trained run), the graphs they
 * run through cg_engine with the step and forward callbacks, dev metrics (metrics.csv)
 * and the SVG plot of the curves.
 *
 * A run directory (RUN_DIR) holds:
 *   model.xml            the model description as trained (vocab and head sizes set)
 *   weights.safetensors  the last checkpoint's weights (a hard link into checkpoints/)
 *   checkpoints/         step-N/ units and `current` (train/ckpt.h); .lock while training
 *   best.safetensors     the weights that scored best on dev (the task's best_by)
 *   vocab.txt            the vocabulary           options.json  task, tokenizer, training
 *   <task files>         e.g. intent_labels.txt, slot_labels.txt
 *   train_log.csv        one line per update      metrics.csv   one line per dev evaluation
 *   curves.svg           training loss and dev metrics, redrawn after every evaluation */
#ifndef BERTCC_TASKS_RUNDIR_H
#define BERTCC_TASKS_RUNDIR_H

#include <jansson.h>

#include "../codegen/engine.h"
#include "../frontend/frontend.h"
#include "runner.h"
#include "task.h"

#define RUNDIR_MODEL "model.xml"
#define RUNDIR_VOCAB "vocab.txt"
#define RUNDIR_OPTIONS "options.json"
#define RUNDIR_BEST "best.safetensors"
#define RUNDIR_METRICS "metrics.csv"
#define RUNDIR_PLOT "curves.svg"

/* "DIR/NAME" into buf; returns buf. */
const char *rundir_path(const char *dir, const char *name, char *buf, size_t len);

/* ---- a trained run ------------------------------------------------------------------ */

typedef struct rundir_run {
    char dir[4096];
    json_t *options;         /* options.json */
    fe_model model;          /* model.xml */
    tx_vocab *vocab;         /* vocab.txt */
    tx_tok_opts tok;         /* from options.json */
    const tk_task_ops *task; /* options.json's task */
    const char **task_opt;   /* [options of the task], values from options.json */
} rundir_run;

/* Opens RUN_DIR for eval, predict or export. Errors name the file. */
int rundir_open(const char *dir, rundir_run *r, bc_err *e);
void rundir_close(rundir_run *r);
/* The weights: which is "best" (best.safetensors, or the last weights when there is
 * none), "last", or a file path. */
int rundir_load_weights(const rundir_run *r, const char *which, const ir_graph *g,
                        rt_tensor_list *params, bc_err *e);
/* The file of the weights `which` names (see rundir_load_weights) into buf. */
const char *rundir_weights_path(const rundir_run *r, const char *which, char *buf,
                                size_t len);
/* Opens r's task on data (may be NULL) with its run's label lists; the task's notes go
 * to note (may be NULL); top_k: tk_task_config's. */
int rundir_task_open(const rundir_run *r, const char *data, bc_note_fn note, void *note_ctx,
                     int top_k, tk_task *t, bc_err *e);

/* ---- a trained model: what `eval` and `predict` use ---------------------------------- */

typedef struct rundir_model_opts {
    const char *weights; /* "best" (NULL too), "last" or a file (rundir_load_weights) */
    cg_backend backend;
    int threads;     /* 0: all cores */
    bc_note_fn note; /* the task's notes; may be NULL */
    void *note_ctx;
    int top_k; /* labels an answer lists, where the task ranks them (0: its default) */
    const char *fuse; /* fusion rules (pass_fuse_parse); NULL: the run's (options.json) */
} rundir_model_opts;

/* A run opened for evaluation and prediction: its eval-mode graph with the chosen
 * weights on an engine, and its task (with data for evaluation, or none). */
typedef struct rundir_model {
    rundir_run run;
    tk_task task;
    rundir_runner runner;
    rt_tensor_list params;
    ir_graph *g;
    int opened;
} rundir_model;

/* Opens RUN_DIR with the task reading data (NULL for prediction only). */
int rundir_model_open(rundir_model *m, const char *dir, const char *data,
                      const rundir_model_opts *o, bc_err *e);
void rundir_model_close(rundir_model *m);
/* Scores a split of the data with the task's metrics, in batches of batch_size rows. */
int rundir_evaluate(rundir_model *m, tk_split split, int batch_size, tk_metrics *out,
                    bc_err *e);
/* Answers raw text (text_pair: the second segment, e.g. QA's context, or NULL); *out
 * receives the task's JSON answer (the caller decrefs). */
int rundir_predict(rundir_model *m, const char *text, const char *text_pair, json_t **out,
                   bc_err *e);
/* Writes an answer for people, e.g. "intent: stop_music (0.98)". */
int rundir_print_prediction(const rundir_model *m, const json_t *prediction, FILE *f);
/* What the last rundir_evaluate found beyond its scores (per-class scores, a confusion
 * matrix: tk_task_ops' details), or NULL when the task reports nothing more; and how
 * it reads for people (nothing for NULL). */
json_t *rundir_eval_details(const rundir_model *m);
int rundir_print_eval_details(const rundir_model *m, const json_t *details, FILE *f);

/* Tokenizer options as stored in options.json ({"lowercase": b, "strip_accents":
 * null | b}). */
json_t *rundir_tok_json(const tx_tok_opts *o);
int rundir_tok_from_json(const json_t *j, tx_tok_opts *o);

#endif
