/* rundir.h: what `train`, `eval`, `predict` and `export` share: the registry of tasks,
 * run directories (their files, options.json, opening a trained run), the graphs they
 * run through cg_engine with the step and forward callbacks, dev metrics (metrics.csv)
 * and the SVG plot of the curves.
 *
 * A run directory (RUN_DIR) holds:
 *   model.xml            the model description as trained (vocab and head sizes set)
 *   weights.safetensors  the last weights        optimizer.safetensors  resume state
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
#include "task.h"

#define RUNDIR_MODEL "model.xml"
#define RUNDIR_VOCAB "vocab.txt"
#define RUNDIR_OPTIONS "options.json"
#define RUNDIR_BEST "best.safetensors"
#define RUNDIR_METRICS "metrics.csv"
#define RUNDIR_PLOT "curves.svg"

/* ---- tasks -------------------------------------------------------------------------- */

/* Every task the driver knows, NULL-terminated. */
extern const rt_task_ops *const rundir_tasks[];
const rt_task_ops *rundir_task_find(const char *name);

/* ---- graphs and callbacks -------------------------------------------------------------
 */

/* The training graph: m with the labels of `labels` (RT_LABEL_* bits) in training mode,
 * differentiated (frozen prefixes get no gradient), only "loss" and the gradients kept.
 * mlm_gather > 0: the MLM head runs on that many labelled positions per sequence
 * (fe_build_bert_mlm_gather; rundir_step makes its inputs from mlm_labels). */
ir_graph *rundir_train_graph(const fe_model *m, unsigned labels, const char *const *frozen,
                             int nfrozen, int64_t mlm_gather, ir_err *e);
/* The eval-mode graph without labels, only outputs[] (NULL-terminated) kept. */
ir_graph *rundir_eval_graph(const fe_model *m, const char *const *outputs, ir_err *e);

/* What the step and forward callbacks run. */
typedef struct rundir_runner {
    cg_engine *engine;
    const rt_tensor_list *params; /* for rundir_forward */
    int threads;                  /* 0: all cores */
    int has_seed;                 /* the graph takes "dropout_seed" */
    int64_t mlm_gather;           /* the graph's MLM head runs on this many rows per
                                     sequence (mlm_gather input), 0: on every position */
    const rt_task_ops *task;      /* its augment hook, or NULL */
    void *task_state;
} rundir_runner;

/* Prepares a runner for g (the engine keeps its own copy). */
int rundir_runner_init(rundir_runner *r, const ir_graph *g, cg_backend backend, int threads,
                       ir_err *e);
void rundir_runner_free(rundir_runner *r);

/* rt_step_fn over a runner: drops the micro-batch's trailing columns where every
 * attention_mask is 0 (one compiled graph serves any S), applies the task's augment
 * hook, adds dropout_seed and runs the engine. */
int rundir_step(void *ctx, const rt_tensor_list *params, const rt_tensor_list *batch,
                uint64_t dropout_seed, rt_tensor_list *out, ir_err *e);
/* rt_forward_fn over a runner (its params), with the same trimming. */
int rundir_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out, ir_err *e);

/* ---- a trained run ------------------------------------------------------------------ */

typedef struct rundir_run {
    char dir[4096];
    json_t *options;         /* options.json */
    fe_model model;          /* model.xml */
    rt_vocab *vocab;         /* vocab.txt */
    rt_tok_opts tok;         /* from options.json */
    const rt_task_ops *task; /* options.json's task */
    const char **task_opt;   /* [options of the task], values from options.json */
} rundir_run;

/* Opens RUN_DIR for eval, predict or export. Errors name the file. */
int rundir_open(const char *dir, rundir_run *r, ir_err *e);
void rundir_close(rundir_run *r);
/* The weights: which is "best" (best.safetensors, or the last weights when there is
 * none), "last", or a file path. */
int rundir_load_weights(const rundir_run *r, const char *which, const ir_graph *g,
                        rt_tensor_list *params, ir_err *e);
/* Opens r's task on data (may be NULL) with its run's label lists; the task's notes go
 * to note (may be NULL). */
int rundir_task_open(const rundir_run *r, const char *data, rt_note_fn note, void *note_ctx,
                     rt_task *t, ir_err *e);

/* Tokenizer options as stored in options.json ({"lowercase": b, "strip_accents":
 * null | b}). */
json_t *rundir_tok_json(const rt_tok_opts *o);
int rundir_tok_from_json(const json_t *j, rt_tok_opts *o);

/* ---- metrics.csv and the plot ----------------------------------------------------- */

/* Appends one evaluation to RUN_DIR/metrics.csv (written with its header first when
 * absent): step, epoch, train_loss, the metrics, examples, best (1 when it became the
 * best so far). */
int rundir_metrics_append(const char *dir, int64_t step, double epoch, double train_loss,
                          const rt_metrics *m, int best, ir_err *e);
/* For a resumed run: drops lines past step, and returns in *best the best kept line by
 * the task's best_by (*have_best 0 when none). Names in *best point into *keep (a
 * json_t the caller decrefs). No file: nothing kept. */
int rundir_metrics_resume(const char *dir, int64_t step, const rt_task_ops *t,
                          rt_metrics *best, int *have_best, json_t **keep, ir_err *e);
/* The mean loss of the updates (from, to] from train_log.csv (NaN when none). */
double rundir_mean_loss(const char *dir, int64_t from, int64_t to);
/* Draws train_log.csv and metrics.csv into RUN_DIR/curves.svg. */
int rundir_plot(const char *dir, const char *title, ir_err *e);

#endif
