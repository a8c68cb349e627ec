/* task.h: what a training task (intent + slot, QA, pre-training) gives the trainer and
 * the run directory code (trainer.h, rundir.h), so that training, evaluation and
 * prediction are written once for every task.
 *
 * A task turns its data into `run` batch tensors (DESIGN.md §5), says which heads it
 * needs and how large they are, keeps its label lists in a run directory, scores a
 * split and answers raw text. It never runs a model itself: evaluation and prediction
 * take a forward callback (eval mode, no labels, returning at least the task's
 * eval_outputs: runner.h makes one from an engine), so a task does not depend on
 * codegen and a test can pass a hand-written model.
 *
 * The lifetime of a task in a run:
 *   train:    open(data, run_dir NULL) -> heads -> save(RUN_DIR) -> data(TRAIN) ->
 *             [augment each micro-batch] -> evaluate(DEV) at each epoch's end
 *   resume:   open(data, run_dir RUN_DIR): the label lists come from RUN_DIR
 *   eval:     open(other data, RUN_DIR) -> evaluate(TEST or DEV)
 *   predict:  open(NULL data, RUN_DIR) -> predict(text[, pair]) -> print
 * The trainer owns the model, the weights and options.json; the task owns its label
 * files and the meaning of its options. To add a task: implement tk_task_ops in
 * tasks/task_NAME.c (with its header) and add it to the registry in tasks/task.c; its
 * options then appear in `bertcc train --help` (README "Adding a task"). */
#ifndef BERTCC_TASKS_TASK_H
#define BERTCC_TASKS_TASK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "../runtime/params.h"
#include "../runtime/tensor.h"
#include "../support/err.h"
#include "../text/tokenizer.h"

typedef enum tk_split { TK_SPLIT_TRAIN, TK_SPLIT_DEV, TK_SPLIT_TEST } tk_split;

static inline const char *tk_split_name(tk_split s)
{
    return s == TK_SPLIT_TRAIN ? "train" : s == TK_SPLIT_DEV ? "dev" : "test";
}

/* An eval-mode forward pass: batch holds input_ids, token_type_ids, attention_mask
 * ([B, S], I64, any B and S up to the model's max-position); out receives F32 outputs
 * named as `run` names them (intent_logits [B, C], slot_logits [B, S, L], ...).
 * Returns 0, or -1 with e filled. */
typedef int (*tk_forward_fn)(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                             bc_err *e);

/* Sharded evaluation (data-parallel training, train/dist.h): the shards are ranks
 * 0..size-1 of one job, each running evaluate on the same split with its own rank.
 * Batch k (counted from 0 in the order evaluate runs them) belongs to shard k % size,
 * which alone runs its forward. What evaluate keeps of a batch (predictions, logits,
 * per-row loss terms) goes into arrays that start zeroed; merge then combines such an
 * array across the shards in place, each byte the bitwise OR of the shards' bytes, so
 * that every shard holds every batch's values with their exact bits. Metrics are then
 * computed from the merged arrays in example order, as one process computes them, and
 * equal the one-process values. NULL or size 1: one process, every batch. */
typedef struct tk_shard {
    int rank, size;
    int (*merge)(void *ctx, void *buf, size_t bytes, bc_err *e);
    void *ctx;
} tk_shard;

/* Whether batch k is this shard's to run. */
static inline int tk_shard_mine(const tk_shard *s, int64_t k)
{
    return !s || s->size <= 1 || k % s->size == s->rank;
}

/* merge over buf (a no-op for one process). */
static inline int tk_shard_merge(const tk_shard *s, void *buf, size_t bytes, bc_err *e)
{
    return !s || s->size <= 1 || !bytes ? 0 : s->merge(s->ctx, buf, bytes, e);
}

/* Named scores of one evaluation, in a fixed order per task. Names are static
 * strings; fractions are in [0, 1]. */
#define TK_TASK_MAX_METRICS 12
typedef struct tk_metrics {
    int n;
    const char *name[TK_TASK_MAX_METRICS];
    double value[TK_TASK_MAX_METRICS];
    int64_t examples; /* examples scored */
} tk_metrics;

/* Appends a score (ignored past TK_TASK_MAX_METRICS). */
static inline void tk_metrics_add(tk_metrics *m, const char *name, double value)
{
    if (m->n < TK_TASK_MAX_METRICS) {
        m->name[m->n] = name;
        m->value[m->n++] = value;
    }
}

/* The score named name, or NaN. */
static inline double tk_metrics_get(const tk_metrics *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->name[i], name))
            return m->value[i];
    return NAN;
}

/* A task's own command-line option (`--max-seq 64`), shown in --help and stored in the
 * run's options.json. Values are strings: the task parses and checks them in open. */
typedef struct tk_task_option {
    const char *name;  /* without "--" */
    const char *value; /* metavariable, e.g. "N" */
    const char *help;
    const char *def; /* the default, as a string */
} tk_task_option;

/* The heads a task trains and their sizes. labels uses the TK_LABEL_* bits of batch.h
 * (the same bits as the frontend's FE_HEAD_* and FE_LABEL_*); the trainer rewrites the
 * model description to have exactly these heads, with these sizes. */
typedef struct tk_task_heads {
    unsigned labels;
    int64_t intent_classes;   /* with TR_LABEL_INTENT */
    int64_t slot_labels;      /* with TR_LABEL_SLOT */
    int64_t mlm_predictions;  /* with TR_LABEL_MLM: no row of the training data has more
                                 labelled positions, so the training graph computes MLM
                                 logits on this many rows only (0: on every position) */
    int intent_class_weights; /* with TR_LABEL_INTENT: the training loss weighs each
                                 class (augment adds the input "intent_class_weights",
                                 F32 [intent_classes], to every micro-batch) */
} tk_task_heads;

typedef struct tk_task_config {
    const char *data;       /* --data: a directory or a file, as the task reads it; NULL
                               for prediction only */
    const char *run_dir;    /* NULL: a new run (label lists are built from the training
                               data); else the label lists are read from this run */
    const tx_vocab *vocab;  /* outlives the task */
    tx_tok_opts tok;        /* the tokenizer options of the run */
    const char *const *opt; /* [number of the task's options]: a value, or NULL for the
                               option's default */
    int64_t max_position;   /* the model's: rows may not be longer (0: unchecked) */
    bc_note_fn note;        /* notes (truncations, unseen labels, ...); may be NULL */
    void *note_ctx;
    int top_k; /* predict: how many labels an answer lists, where the task
                  ranks labels (0: its default) */
} tk_task_config;

typedef struct tk_task_ops {
    const char *name;                /* as in --task */
    const char *about;               /* one line for --help */
    const tk_task_option *options;   /* terminated by a NULL name */
    const char *const *best_by;      /* the scores that pick best.safetensors on dev,
                                        compared in this order (higher is better; the
                                        first that differs decides; a full tie keeps
                                        the earlier epoch), NULL-terminated */
    const char *const *eval_outputs; /* the forward outputs evaluate and predict read,
                                        NULL-terminated */

    /* Reads what the task needs of c (the data is read lazily or at once, as the task
     * likes). *state receives the task's state. Errors name files and lines. */
    int (*open)(const tk_task_config *c, void **state, bc_err *e);
    void (*close)(void *state);
    void (*heads)(void *state, tk_task_heads *h);
    /* The value option i (of options[]) has in effect: the one given, or the default as
     * the task applied it. The trainer stores it in options.json for eval and predict. */
    void (*option_value)(void *state, int i, char *buf, size_t len);
    /* Optional (may be NULL: nothing beyond options.json): writes the task's files
     * (label lists) into a run directory. */
    int (*save)(void *state, const char *dir, bc_err *e);
    /* Appends a split's rows in the run batch format, labels included: I64 tensors with
     * one leading dimension of N rows ([N, S] padded, or [N]); the training engine
     * slices them into micro-batches. A split the data lacks is an error naming it. */
    int (*data)(void *state, tk_split split, rt_tensor_list *out, bc_err *e);
    /* Optional (may be NULL): the training rows of epoch e >= 1 when they differ from
     * epoch 0's (those of data), e.g. the next rows of a stream; see tr_train_opts'
     * refill, which the trainer points here (1: no refill, epoch 0's rows again). */
    int (*refill)(void *state, int64_t epoch, rt_tensor_list *out, bc_err *e);
    /* Optional (may be NULL): changes a training micro-batch in place before its step,
     * e.g. a fresh masking each epoch; seed is the micro-batch's dropout seed. */
    int (*augment)(void *state, rt_tensor_list *batch, uint64_t seed, bc_err *e);
    /* Scores a split: runs forward on batches of at most batch_size rows (padded to
     * their longest row) and fills out. With shard (may be NULL), runs only the
     * shard's batches and merges (tk_shard above): out is the one-process value. */
    int (*evaluate)(void *state, tk_split split, int batch_size, tk_forward_fn forward,
                    void *fctx, const tk_shard *shard, tk_metrics *out, bc_err *e);
    /* Answers raw text (text_pair: a second segment, e.g. QA's context; NULL when the
     * task takes one text). *out receives a JSON object (the caller decrefs). */
    int (*predict)(void *state, const char *text, const char *text_pair,
                   tk_forward_fn forward, void *fctx, json_t **out, bc_err *e);
    /* Writes a prediction for people, e.g. "intent: stop_music (0.98)". */
    int (*print)(void *state, const json_t *prediction, FILE *f);
    /* 1 when print writes one line per answer, so that answers to many texts are not
     * separated by blank lines (one output line per input line). */
    int one_line;
    /* Optional: the scores that pick best.safetensors when they depend on the task's
     * options (e.g. classify's --select); NULL: best_by. */
    const char *const *(*select)(void *state);
    /* Optional: what the last evaluate found beyond its scores (per-class scores, a
     * confusion matrix) as a JSON object (the caller decrefs; NULL when out of memory),
     * and how it reads for people. `eval --json` merges the object's keys into its own. */
    json_t *(*details)(void *state);
    int (*print_details)(void *state, const json_t *details, FILE *f);
} tk_task_ops;

/* An opened task. */
typedef struct tk_task {
    const tk_task_ops *ops;
    void *state;
} tk_task;

/* The scores that pick an opened task's best checkpoint (ops->select, or best_by). */
static inline const char *const *tk_task_best_by(const tk_task *t)
{
    return t->ops->select ? t->ops->select(t->state) : t->ops->best_by;
}

/* Compares two evaluations by best_by (NULL-terminated): > 0 when a is better, < 0 when
 * b is, 0 on a tie. A NaN score loses to any number. */
static inline int tk_task_compare(const char *const *best_by, const tk_metrics *a,
                                  const tk_metrics *b)
{
    for (int i = 0; best_by && best_by[i]; i++) {
        double x = tk_metrics_get(a, best_by[i]), y = tk_metrics_get(b, best_by[i]);
        if (x > y || (!isnan(x) && isnan(y)))
            return 1;
        if (x < y || (isnan(x) && !isnan(y)))
            return -1;
    }
    return 0;
}

/* Every task, NULL-terminated (task.c: adding a task adds a line there). */
extern const tk_task_ops *const tk_tasks[];
/* The task named name, or NULL. */
const tk_task_ops *tk_task_find(const char *name);

/* Helpers the tasks share (task.c). */

/* Formats a note and passes it to note (nothing when note is NULL). */
void tk_task_note(bc_note_fn note, void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An option's integer value in [lo, hi]; the error names --name. */
int tk_task_int_opt(const char *v, const char *name, long long lo, long long hi,
                    long long *out, bc_err *e);
/* An option's real value in [lo, hi]; the error names --name. */
int tk_task_real_opt(const char *v, const char *name, double lo, double hi, double *out,
                     bc_err *e);
/* log(sum exp(x[i])) over x[0..n), n >= 1, in double with the maximum taken out first
 * (for the probabilities tasks print from logits). */
double tk_log_sum_exp(const float *x, int64_t n);
/* A path made absolute (so that a run finds it from anywhere), or a copy as given;
 * NULL when out of memory. */
char *tk_task_abs_path(const char *p);

/* The number of options of a task. */
static inline int tk_task_noptions(const tk_task_ops *t)
{
    int n = 0;
    while (t->options && t->options[n].name)
        n++;
    return n;
}

#endif
