/* train.h: the training engine. It owns the loop that every training task shares
 * (pre-training, intent/slot, QA): shuffled micro-batches, gradient accumulation,
 * AdamW with warm-up/decay and clipping (optim.h), frozen parameters, non-finite
 * checks, progress, a CSV loss log, checkpoints and exact resumption.
 *
 * It does not know how a loss and its gradients are computed: the caller passes a
 * step function (the reference interpreter, generated code, or a hand-written model
 * in a test), so the engine depends on neither the interpreter nor the JIT.
 *
 * Randomness is a pure function of the seed: epoch e's row order is a Fisher-Yates
 * shuffle drawn from a generator seeded with (seed, e), and micro-batch number k of the
 * whole run (counted from 0 across epochs) gets the dropout seed
 * tr_train_dropout_seed(seed, k). The checkpoint therefore holds the seed and the
 * position (step, epoch, micro-batch in the epoch) rather than generator states, and
 * a resumed run continues with the same bits as an uninterrupted one (given the same
 * step function and thread count).
 *
 * Memory, as llm.c keeps it: tr_train packs the params list it is given into one
 * 64-byte-aligned arena (rt_list_pack in tensor.h: the same tensors, names and order,
 * now views; rt_list_free still frees it), and keeps the summed gradients in one arena,
 * the gradients of an update's later micro-batches (accum > 1) in another, and AdamW's
 * two moments in one each (optim.h). The step function is handed views of the gradient
 * memory in `out`, so an executor that computes outputs in place (exec.h) writes the
 * gradients there and nothing is copied. */
#ifndef BERTCC_TRAIN_TRAIN_H
#define BERTCC_TRAIN_TRAIN_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "../runtime/tensor.h"
#include "optim.h"

/* Computes the loss of one micro-batch and its gradients. batch holds the data tensors
 * sliced to the micro-batch's rows (same names, leading dim = its row count). Fills out
 * with "loss" (F32, one element) and "grad.<name>" (F32, the parameter's shape) for
 * every trainable parameter; other tensors in out are ignored.
 *
 * out arrives holding, for every trainable parameter, "grad.<name>": an F32 view of
 * the parameter's shape into the engine's gradient memory (and no "loss"). The step
 * function writes each gradient either into that view's data (what generated code does
 * when out is passed to cg_engine_run) or by replacing the tensor (rt_list_add, as the
 * reference interpreter does); the engine reads whatever out holds under the name. A
 * view left as it is counts as written. Returns 0, or -1 with e filled. */
typedef int (*tr_step_fn)(void *ctx, const rt_tensor_list *params,
                          const rt_tensor_list *batch, uint64_t dropout_seed,
                          rt_tensor_list *out, bc_err *e);

/* Files of a run directory. */
#define TR_TRAIN_WEIGHTS "weights.safetensors" /* params, Hugging Face names */
#define TR_TRAIN_OPTIM "optimizer.safetensors" /* optimizer state and position */
#define TR_TRAIN_LOG "train_log.csv"           /* one line per update */
#define TR_TRAIN_LOG_HEADER "step,epoch,loss,lr,grad_norm,tokens_per_s"

/* What one update did, for the progress line, the log and the on_step hook. */
typedef struct tr_train_progress {
    int64_t step;        /* updates done, including this one (1-based) */
    int64_t total;       /* updates planned */
    double epoch;        /* epochs done, fractional (step / updates per epoch) */
    double loss;         /* mean of the update's micro-batch losses */
    double lr;           /* learning rate this update used */
    double grad_norm;    /* global gradient norm before clipping */
    double tokens_per_s; /* this update's throughput */
    double eta_s;        /* estimated seconds left */
    int ranks;           /* processes training together (dist.h; 1: this one alone) */
    double step_s;       /* this update's seconds */
    double comm_s;       /* of which communicating with the other ranks (ranks > 1) */
} tr_train_progress;

typedef struct tr_train_opts {
    tr_adamw_opts adam;
    int64_t batch_size; /* rows per micro-batch (8); the last of an epoch may be smaller */
    int64_t accum;      /* micro-batches per update (1); gradients are averaged */
    int64_t epochs;     /* passes over the data (3), when steps is 0 */
    int64_t steps;      /* total updates; 0: epochs * updates per epoch */
    uint64_t seed;      /* shuffling and dropout (0) */
    int shuffle;        /* shuffle rows every epoch (1) */
    /* With shuffle: after shuffling, sort each run of 50 micro-batches' rows by length
     * (attention_mask's ones; longest first), so that a micro-batch holds rows of
     * similar length and trimming it to its longest row drops more padding (Hugging
     * Face's group_by_length). Every row is still seen once an epoch. (0) */
    int group_by_length;
    const char *const *frozen; /* parameter name prefixes never updated (no state) */
    int nfrozen;
    const char *out_dir;     /* checkpoints and log go here; NULL: none */
    int64_t save_every;      /* also checkpoint every N updates (0: only at the end) */
    FILE *progress;          /* progress lines (\r-overwritten on a tty); NULL: none */
    int64_t progress_every;  /* not a tty: one line every N updates (0: about 50 lines) */
    const char *tokens_from; /* tokens per row = its numel per row ("input_ids"), when
                                the batch has no attention_mask (whose ones are counted) */
    volatile sig_atomic_t *stop; /* when set (e.g. by SIGINT), checkpoint and return */
    /* Optional: data that changes every epoch, e.g. the next rows of a stream over a
     * corpus larger than memory. Before epoch e >= 1 is trained (and before the epoch a
     * resumed run starts in, when it is not 0), refill replaces the contents of chunk
     * (an empty list the engine owns) with that epoch's rows: the same tensors, with as
     * many rows as data has. data serves epoch 0. refill must give the same rows for the
     * same epoch whenever it is asked (exact resumption relies on it). It returns 0,
     * 1 to leave data serving this epoch, or -1 with e filled. NULL: data serves every
     * epoch. */
    int (*refill)(void *ctx, int64_t epoch, rt_tensor_list *chunk, bc_err *e);
    void *refill_ctx;
    void (*on_step)(void *ctx, const tr_train_progress *p); /* after each update */
    void *hook_ctx;
    /* With out_dir: set to 1 (by on_step) to checkpoint this update; the engine clears
     * it. on_saved(hook_ctx, step) runs after each checkpoint is committed (ckpt.h),
     * e.g. to link RUN/best.safetensors to it; a failure stops the run. May be NULL. */
    int *save_request;
    int (*on_saved)(void *ctx, int64_t step, bc_err *e);
    /* Data parallel (dist.h), when MPI runs more than one rank: batch_size counts the
     * rows of a micro-batch across the ranks, rank r taking rows [r G/N, (r+1) G/N) of
     * each (G = batch_size >= N ranks); the gradients are combined in rank order, so
     * that N ranks give the bits of one process with batch_size G/N and accum N *
     * accum. Only rank 0 writes out_dir and progress. The gradient travels in buckets
     * of dist_bucket_bytes (0: 25 MiB; any size gives the same bits), and every
     * dist_check_every updates (0: 100), at every checkpoint and at the end, the ranks
     * compare a hash of their weights: a difference is an error. */
    size_t dist_bucket_bytes;
    int64_t dist_check_every;
} tr_train_opts;

typedef struct tr_train_result {
    int64_t start_step; /* updates done before this call (resumed runs) */
    int64_t step;       /* updates done at return */
    int64_t total;      /* updates planned */
    int stopped;        /* 1 if *stop ended the run early */
    double last_loss;   /* the last update's loss (NaN if none) */
    double train_s;     /* seconds in the loop */
    double comm_s;      /* of which communicating with the other ranks (dist.h) */
} tr_train_result;

void tr_train_defaults(tr_train_opts *o);

/* Micro-batches and updates per epoch for rows rows. */
int64_t tr_train_micro_per_epoch(const tr_train_opts *o, int64_t rows);
int64_t tr_train_updates_per_epoch(const tr_train_opts *o, int64_t rows);
/* Total updates the run makes: o->steps, or epochs * updates per epoch. */
int64_t tr_train_total_steps(const tr_train_opts *o, int64_t rows);

/* The dropout seed of micro-batch number micro_step of a run seeded with seed
 * (non-negative as an int64). */
uint64_t tr_train_dropout_seed(uint64_t seed, int64_t micro_step);

/* Trains params (updated in place) on data: tensors with the same leading dimension N
 * (the rows), any dtype. resume: the contents of an optimizer.safetensors written by a
 * previous run (params must then be that run's weights.safetensors), or NULL to start.
 * With out_dir, writes a checkpoint there (ckpt.h) every save_every updates, when
 * on_step asks (save_request), at the end and when stopped, and appends to TR_TRAIN_LOG (a
 * resumed run first drops log lines past its checkpoint). Stops with an error naming the
 * step and the tensor on a non-finite loss or gradient (the last checkpoint is kept). r may
 * be NULL. */
int tr_train(const tr_train_opts *o, tr_step_fn step, void *ctx, rt_tensor_list *params,
             const rt_tensor_list *data, const rt_tensor_list *resume, tr_train_result *r,
             bc_err *e);

/* "step 12/300  loss 2.3456  lr 4.00e-05  1234 tok/s  ETA 0:03:12" into buf. */
char *tr_train_progress_str(const tr_train_progress *p, char *buf, size_t len);

#endif
