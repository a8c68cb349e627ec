/* model_bench.c: the whole model, JIT against the reference interpreter (and against
 * itself with 1 and 2 threads), forward or forward+backward, on random ids.
 *
 *   model_bench MODEL.xml [-b B] [-s S] [-r RUNS] [--grads] [--no-ref]
 *
 * Runs alternate (JIT, reference, JIT, ...); each side reports the median of its runs
 * and the ratio of the medians. The first JIT run is not timed (page faults of a new
 * arena). Compile time (or cache load) is reported separately. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/engine.h"
#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/params.h"
#include "../runtime/rng.h"
#include "../support/clock.h"
#include "bench_stats.h"

static double timed(cg_engine *x, const rt_tensor_list *p, const rt_tensor_list *in,
                    int threads)
{
    rt_tensor_list out;
    rt_list_init(&out);
    bc_err e;
    double t0 = bc_now();
    if (cg_engine_run(x, p, in, threads, &out, &e)) {
        fprintf(stderr, "model_bench: %s\n", e.msg);
        exit(1);
    }
    double t = bc_now() - t0;
    rt_list_free(&out);
    return t;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    int64_t B = 1, S = 128;
    int runs = 5, grads = 0, ref = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-b") && i + 1 < argc)
            B = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            S = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--grads"))
            grads = 1;
        else if (!strcmp(argv[i], "--no-ref"))
            ref = 0;
        else
            model = argv[i];
    }
    if (!model || runs < 1 || runs > 100) {
        fprintf(stderr, "usage: model_bench MODEL.xml [-b B] [-s S] [-r RUNS] [--grads] "
                        "[--no-ref]\n");
        return 1;
    }
    fe_model m;
    bc_err e;
    ir_graph *g;
    unsigned labels = grads ? FE_LABEL_ALL : 0;
    if (fe_load(model, &m, &e) || !(g = fe_build_bert(&m, labels, &e)) ||
        pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e)) {
        fprintf(stderr, "model_bench: %s\n", e.msg);
        return 1;
    }
    pass_grad_opts go = {"loss", NULL, 0};
    if (grads && (pass_autodiff(&g, &go, &e) ||
                  pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e))) {
        fprintf(stderr, "model_bench: %s\n", e.msg);
        return 1;
    }
    rt_tensor_list params, in;
    rt_list_init(&params);
    rt_list_init(&in);
    rt_params_init(g, 1, &params, &e);
    rt_rng r;
    rt_rng_seed(&r, 7);
    int64_t bs[2] = {B, S};
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_INPUT)
            continue;
        int64_t shape[2] = {B, S};
        rt_tensor *t = rt_list_add(&in, n->name, RT_I64, n->type.rank, shape, NULL);
        int64_t hi = !strcmp(n->name, "input_ids") || !strcmp(n->name, "mlm_labels")
                         ? m.vocab_size
                     : !strcmp(n->name, "attention_mask") ? 2
                     : strstr(n->name, "positions")       ? S
                                                          : 2;
        for (int64_t k = 0; k < rt_numel(t); k++)
            ((int64_t *)t->data)[k] = !strcmp(n->name, "attention_mask")
                                          ? 1
                                          : (int64_t)rt_rng_below(&r, (uint64_t)hi);
    }
    (void)bs;
    cg_options o = {NULL, NULL, NULL, 0, 0};
    double t0 = bc_now();
    cg_engine *jit = cg_engine_new(g, CG_BACKEND_JIT, &o, &e);
    double tc = bc_now() - t0;
    cg_engine *rx = ref ? cg_engine_new(g, CG_BACKEND_REF, NULL, &e) : NULL;
    if (!jit || (ref && !rx)) {
        fprintf(stderr, "model_bench: %s\n", e.msg);
        return 1;
    }
    printf("%s, B=%lld S=%lld, %s: %d nodes; JIT ready in %.3f s\n", m.name, (long long)B,
           (long long)S, grads ? "forward+backward" : "forward", g->n, tc);
    double tj1[100], tj2[100], tr[100];
    timed(jit, &params, &in, 2); /* warm-up */
    for (int i = 0; i < runs; i++) {
        tj2[i] = timed(jit, &params, &in, 2);
        tj1[i] = timed(jit, &params, &in, 1);
        if (ref)
            tr[i] = timed(rx, &params, &in, 2);
    }
    double mj2 = bench_median(tj2, runs), mj1 = bench_median(tj1, runs);
    printf("jit, 2 threads: %9.2f ms (median of %d)\n", 1e3 * mj2, runs);
    printf("jit, 1 thread:  %9.2f ms   2-thread speedup %.2fx\n", 1e3 * mj1, mj1 / mj2);
    if (ref) {
        double mr = bench_median(tr, runs);
        printf("ref, 2 threads: %9.2f ms   jit is %.1fx faster\n", 1e3 * mr, mr / mj2);
    }
    cg_engine_free(jit);
    cg_engine_free(rx);
    rt_list_free(&params);
    rt_list_free(&in);
    ir_graph_free(g);
    return 0;
}
