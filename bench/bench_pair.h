/* bench_pair.h: one graph compiled through two pipelines (unfused and with a fusion
 * rule) and the two engines timed in alternation: what the fusion-rule benchmarks
 * (layout_bench, bias_grad_bench) share. Header-only, as bench_stats.h. */
#ifndef BERTCC_BENCH_PAIR_H
#define BERTCC_BENCH_PAIR_H

#include <stdio.h>
#include <stdlib.h>

#include "../codegen/engine.h"
#include "../passes/passes.h"
#include "../support/clock.h"
#include "bench_stats.h"

/* x[k] = the JIT engine of make()'s graph through pipes[k]; 0, or -1 after a message
 * naming who. */
static inline int bench_pair_compile(ir_graph *(*make)(const void *), const void *arg,
                                     const char *const pipes[2], cg_engine *x[2],
                                     const char *who)
{
    bc_err e;
    x[0] = x[1] = NULL;
    for (int k = 0; k < 2; k++) {
        ir_graph *g = make(arg);
        if (g->failed || pass_run_pipeline(&g, pipes[k], NULL, &e) ||
            !(x[k] = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e))) {
            fprintf(stderr, "%s: %s\n", who, g->failed ? g->err.msg : e.msg);
            ir_graph_free(g);
            return -1;
        }
        ir_graph_free(g);
    }
    return 0;
}

/* Runs both engines once (warm-up, into out[k], which this initializes), then reps
 * times alternately; med[k]: engine k's median ms (the upper middle run for even
 * reps). 0, or -1 after a message. */
static inline int bench_pair_time(cg_engine *const x[2], const rt_tensor_list *par,
                                  const rt_tensor_list *in, int threads, int reps,
                                  rt_tensor_list out[2], double med[2], const char *who)
{
    bc_err e;
    double *ms[2] = {malloc(sizeof(double) * (size_t)reps),
                     malloc(sizeof(double) * (size_t)reps)};
    int rc = ms[0] && ms[1] ? 0 : -1;
    for (int k = 0; k < 2; k++) {
        rt_list_init(&out[k]);
        if (!rc && cg_engine_run(x[k], par, in, threads, &out[k], &e))
            rc = -1;
    }
    for (int r = 0; !rc && r < reps; r++)
        for (int k = 0; k < 2; k++) {
            double t0 = bc_now();
            cg_engine_run(x[k], par, in, threads, &out[k], &e);
            ms[k][r] = 1e3 * (bc_now() - t0);
        }
    if (rc)
        fprintf(stderr, "%s: %s\n", who, ms[0] && ms[1] ? e.msg : "out of memory");
    for (int k = 0; k < 2; k++) {
        if (!rc) {
            qsort(ms[k], (size_t)reps, sizeof(double), bench_cmp_double);
            med[k] = ms[k][reps / 2];
        }
        free(ms[k]);
    }
    return rc;
}

#endif
