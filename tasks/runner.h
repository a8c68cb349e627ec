/* runner.h: the graphs a task's training and evaluation run, and the callbacks that run
 * them through cg_engine (either backend): the step function the training engine calls
 * (train/train.h) and the forward function a task's evaluate and predict call
 * (tasks/task.h). Both drop a micro-batch's trailing columns of padding first, so one
 * compiled graph serves any S. */
#ifndef BERTCC_TASKS_RUNNER_H
#define BERTCC_TASKS_RUNNER_H

#include "../codegen/engine.h"
#include "../frontend/frontend.h"
#include "task.h"

/* The training graph: m with the labels of `labels` (TK_LABEL_* bits) in training mode,
 * differentiated (frozen prefixes get no gradient), only "loss" and the gradients kept.
 * mlm_gather > 0: the MLM head runs on that many labelled positions per sequence
 * (fe_build_bert_mlm_gather; rundir_step makes its inputs from mlm_labels). */
/* labels may carry FE_BUILD_* flags too (e.g. FE_BUILD_INTENT_WEIGHTS). */
/* fuse: the fusion rules (pass_fuse_parse: "all", "none", "epilogue,..."; NULL: all). */
ir_graph *rundir_train_graph(const fe_model *m, unsigned labels, const char *const *frozen,
                             int nfrozen, int64_t mlm_gather, const char *fuse, bc_err *e);
/* The eval-mode graph without labels, only outputs[] (NULL-terminated; NULL: every
 * output) kept. */
ir_graph *rundir_eval_graph(const fe_model *m, const char *const *outputs, const char *fuse,
                            bc_err *e);

/* What the step and forward callbacks run. */
typedef struct rundir_runner {
    cg_engine *engine;
    const rt_tensor_list *params; /* for rundir_forward */
    int threads;                  /* 0: all cores */
    int has_seed;                 /* the graph takes "dropout_seed" */
    int64_t mlm_gather;           /* the graph's MLM head runs on this many rows per
                                     sequence (mlm_gather input), 0: on every position */
    const tk_task_ops *task;      /* its augment hook, or NULL */
    void *task_state;
} rundir_runner;

/* Prepares a runner for g (the engine keeps its own copy). */
int rundir_runner_init(rundir_runner *r, const ir_graph *g, cg_backend backend, int threads,
                       bc_err *e);
void rundir_runner_free(rundir_runner *r);

/* tr_step_fn over a runner: drops the micro-batch's trailing columns where every
 * attention_mask is 0 (one compiled graph serves any S), applies the task's augment
 * hook, adds dropout_seed and runs the engine. */
int rundir_step(void *ctx, const rt_tensor_list *params, const rt_tensor_list *batch,
                uint64_t dropout_seed, rt_tensor_list *out, bc_err *e);
/* tk_forward_fn over a runner (its params), with the same trimming. */
int rundir_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out, bc_err *e);

#endif
