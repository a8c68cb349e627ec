/* engine.h: one interface over both backends — the reference interpreter and
 * JIT-compiled code — for everything that runs graphs (run, train, eval, predict). */
#ifndef BERTCC_CG_ENGINE_H
#define BERTCC_CG_ENGINE_H

#include "../ir/ir.h"
#include "../runtime/tensor.h"
#include "codegen.h"

typedef enum { CG_BACKEND_JIT, CG_BACKEND_REF } cg_backend;
/* What commands use without --backend. */
#define CG_BACKEND_DEFAULT CG_BACKEND_JIT

typedef struct cg_engine cg_engine;

/* Prepares g (which the engine keeps a copy of) for repeated runs: for the JIT, plans
 * and compiles it. Parses "jit" / "ref" with cg_backend_parse. */
cg_engine *cg_engine_new(const ir_graph *g, cg_backend backend, const cg_options *o,
                         bc_err *e);
void cg_engine_free(cg_engine *x);
int cg_backend_parse(const char *s, cg_backend *out);

/* rt_interp_run's contract (F32 outputs), whichever the backend. */
int cg_engine_run(cg_engine *x, const rt_tensor_list *params, const rt_tensor_list *inputs,
                  int threads, rt_tensor_list *out, bc_err *e);

const ir_graph *cg_engine_graph(const cg_engine *x);

/* rt_exec_keep_constants (exec.h) for the JIT: packed weights are kept between runs while
 * the parameters stay where they are; the caller promises not to change their contents
 * in place meanwhile. Nothing for the reference backend, which packs nothing. */
void cg_engine_keep_constants(cg_engine *x, int on);

/* ---- profiling: where a compiled graph's time goes ----
 * Switching it on (which clears it) makes every following run time each step
 * (rt_exec_profile); cg_engine_profile_rows sums the steps by kernel. The reference
 * backend has no steps: -1 with a message. */
int cg_engine_profile(cg_engine *x, int on, bc_err *e);

typedef struct cg_profile_row {
    int kernel;     /* index in the plan's kernel table */
    char what[200]; /* "fused(matmul+add+gelu) f32[B,S,3072]": the op(s) and result type */
    int steps;      /* steps of one run that use the kernel */
    double seconds; /* their wall time per run (mean over the profiled runs) */
    double flops;   /* their matmul floating-point operations per run at (B, S) */
} cg_profile_row;

/* The profile since it was switched on, one row per kernel that ran, slowest first
 * (*rows: malloc'd, the caller frees), over *runs runs; flops at (B, S). */
int cg_engine_profile_rows(const cg_engine *x, int64_t B, int64_t S, cg_profile_row **rows,
                           int *nrows, int64_t *runs, bc_err *e);

#endif
