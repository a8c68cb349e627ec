/* bench.h: `bertcc bench` as a library call — how fast a model runs on this machine.
 * The model is compiled once, run `warmup` times untimed, then `iters` times timed, on
 * random ids (and, in training, random labels) drawn from the seed:
 *   infer  the eval-mode forward pass (rundir_eval_graph with every output: the encoder,
 *          the pooler and each head's logits, no labels, no dropout), as eval and
 *          predict run it (rundir_forward); a model without heads runs encoder+pooler;
 *   train  one full training step as `bertcc train` takes it (tr_train over
 *          rundir_step, rundir_train_graph): forward and backward of the sum of every
 *          head's loss, dropout as the model says, global gradient clipping and the
 *          AdamW update, with random labels for every head the model has and the MLM
 *          head labelled at every position (not gathered). A model without heads has no
 *          loss and is refused.
 * The figures: the median of the timed iterations; tokens/s = B*S / median; GFLOP/s =
 * ir_matmul_flops of the graph that ran (in training, forward and backward) at (B, S) /
 * median; peak RSS = getrusage's ru_maxrss of the whole process (compilation included).
 * Timings are this machine's at this moment: compare them only with a peer measured in
 * the same session (DESIGN.md §7). */
#ifndef BERTCC_TASKS_BENCH_H
#define BERTCC_TASKS_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "../codegen/engine.h"
#include "../frontend/frontend.h"

typedef enum { TK_BENCH_INFER, TK_BENCH_TRAIN } tk_bench_mode;

typedef struct tk_bench_opts {
    const char *model;    /* an XML model description, a config.json or an HF directory */
    tk_bench_mode mode;   /* (TK_BENCH_INFER) */
    int64_t batch_size;   /* B (8) */
    int64_t seq_len;      /* S (128), at most the model's max-position */
    int64_t iters;        /* timed iterations, at least 1 (10) */
    int64_t warmup;       /* untimed iterations before them (1); in train mode the first
                             iteration also sets up the optimizer and gradient memory */
    int threads;          /* 0: all cores (OpenMP's default) */
    uint64_t seed;        /* parameters, ids, labels, dropout (0) */
    cg_backend backend;   /* (CG_BACKEND_DEFAULT) */
    const char *fuse;     /* the fusion rules (pass_fuse_parse; NULL: all) */
    int profile;          /* time every step of the timed iterations (jit only) */
} tk_bench_opts;

typedef struct tk_bench_result {
    char model[128]; /* the model's name */
    char cpu[64];    /* the host CPU as LLVM names it (cg_host_target) */
    tk_bench_mode mode;
    cg_backend backend;
    int64_t batch_size, seq_len, iters, warmup;
    int threads;           /* the threads used (0 resolved to OpenMP's default) */
    double compile_s;      /* building the graph (passes, autodiff) and the engine (JIT
                              code generation, or loading it from the object cache) */
    double ms_per_iter;    /* median of the timed iterations */
    double ms_min, ms_max; /* fastest and slowest of them */
    double tokens_per_s;   /* B * S / median */
    double gflop_per_iter; /* ir_matmul_flops of the graph at (B, S), in 1e9 */
    double gflop_per_s;    /* gflop_per_iter / median */
    double peak_rss_mb;    /* ru_maxrss in MiB */
    char fuse[64];         /* the fusion rules (o->fuse, "all" for NULL) */
    /* With o->profile: the timed iterations' steps summed by kernel, slowest first
     * (cg_engine_profile_rows; seconds per iteration, their mean), and the mean
     * iteration's time outside them (in training: gradient clipping, AdamW, batching).
     * tk_bench_result_free releases them. */
    cg_profile_row *prof;
    int nprof;
    double prof_ms_mean, prof_ms_outside;
} tk_bench_result;

void tk_bench_result_free(tk_bench_result *r);

void tk_bench_defaults(tk_bench_opts *o);

/* "infer" / "train"; parse returns -1 on anything else. */
const char *tk_bench_mode_name(tk_bench_mode mode);
int tk_bench_mode_parse(const char *s, tk_bench_mode *out);

/* The graph a mode runs for m, optimized and fused by the rules of fuse (NULL: all),
 * as train, eval and predict build theirs. Train mode on a model without heads is an
 * error. */
ir_graph *tk_bench_graph(const fe_model *m, tk_bench_mode mode, const char *fuse,
                         bc_err *e);

/* Loads o->model, builds and compiles its graph, and times it (see above). Errors: the
 * model's, B, S or iterations not positive, S beyond max-position, train mode without
 * heads, and whatever compiling or running reports. */
int tk_bench(const tk_bench_opts *o, tk_bench_result *r, bc_err *e);

/* The one-line summary `bertcc bench` prints:
 * "bert-tiny infer B=8 S=128: 12.34 ms/iter, 83012 tokens/s, 45.67 GFLOP/s, peak RSS
 * 512 MB (median of 10; 2 threads, jit, rocketlake; compile 1.23 s)". */
char *tk_bench_line(const tk_bench_result *r, char *buf, size_t len);

/* The result as one JSON object: ms_per_iter, tokens_per_s, gflop_per_s, peak_rss_mb,
 * model, mode, backend, batch_size, seq_len, threads, iters, warmup, compile_s, cpu,
 * gflop_per_iter, ms_min, ms_max. NULL when out of memory. */
json_t *tk_bench_json(const tk_bench_result *r);

/* With a profile: the table `bertcc bench --profile` prints after its line, one kernel
 * per row (ms per iteration, share of the mean iteration, GFLOP/s of its matmuls, steps,
 * what it computes), then the time outside the graph. */
void tk_bench_profile_print(const tk_bench_result *r, FILE *f);

#endif
