/* layout_bench.c: the layout fusion rule in isolation. A batched matmul whose right
 * operand is a head view of v [B, S, nh D] and whose result is merged back to [B, S,
 * nh D] (attention's context product, and with ta = 1 the dK / dV form of its
 * backward), compiled twice: as three steps (the view's transpose copy, the matmul, the
 * merge's transpose copy) and as one layout region. Alternates the two and prints
 * the median ms of each (2 threads by default).
 *
 *   layout_bench [-t THREADS] [-r REPS] [-b B] [-s S] [--ta]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_pair.h"

typedef struct shape {
    int64_t nh, D;
    int ta;
} shape;

static ir_graph *graph(const void *arg)
{
    const shape *sh = arg;
    int64_t nh = sh->nh, D = sh->D;
    int ta = sh->ta;
    ir_graph *g = ir_graph_new("layout");
    ir_dim dx[3] = {IR_DIM_B, IR_DIM_S, ir_dconst(nh * D)};
    ir_dim dp[4] = {IR_DIM_B, ir_dconst(nh), IR_DIM_S, IR_DIM_S};
    ir_dim dh[4] = {IR_DIM_B, IR_DIM_S, ir_dconst(nh), ir_dconst(D)};
    int perm[4] = {0, 2, 1, 3};
    int p = ir_input(g, "p", ir_type_make(IR_F32, 4, dp));
    int v = ir_input(g, "v", ir_type_make(IR_F32, 3, dx));
    int vh = ir_transpose(g, ir_reshape(g, v, 4, dh), perm);
    ir_set_output(g, "y",
                  ir_reshape(g, ir_transpose(g, ir_matmul(g, p, vh, ta, 0), perm), 3, dx));
    return g;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 30, ta = 0;
    int64_t B = 32, S = 128, nh = 4, D = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ta"))
            ta = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "-t"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-r"))
            reps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-b"))
            B = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-s"))
            S = atoll(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: layout_bench [-t THREADS] [-r REPS] [-b B] [-s S] [--ta]\n");
            return 1;
        }
    }
    if (threads < 1 || reps < 1 || B < 1 || S < 1) {
        fprintf(stderr, "layout_bench: sizes, threads and reps must be positive\n");
        return 1;
    }
    static const char *const pipes[2] = {PASS_BASE_PIPELINE,
                                         PASS_BASE_PIPELINE ",fuse=layout"};
    cg_engine *x[2];
    const shape sh = {nh, D, ta};
    if (bench_pair_compile(graph, &sh, pipes, x, "layout_bench"))
        return 1;
    rt_tensor_list in, par, out[2];
    rt_list_init(&in);
    rt_list_init(&par);
    int64_t sp[4] = {B, nh, S, S}, sv[3] = {B, S, nh * D};
    rt_tensor *tp = rt_list_add(&in, "p", RT_F32, 4, sp, NULL);
    rt_tensor *tv = rt_list_add(&in, "v", RT_F32, 3, sv, NULL);
    if (!tp || !tv) {
        fprintf(stderr, "layout_bench: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < rt_numel(tp); i++)
        ((float *)tp->data)[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < rt_numel(tv); i++)
        ((float *)tv->data)[i] = (float)(i % 5) * 0.1f;
    double med[2];
    if (bench_pair_time(x, &par, &in, threads, reps, out, med, "layout_bench"))
        return 1;
    const rt_tensor *y0 = rt_list_cfind(&out[0], "y"), *y1 = rt_list_cfind(&out[1], "y");
    int same = y0 && y1 && !memcmp(y0->data, y1->data, (size_t)rt_numel(y0) * 4);
    double flop = 2.0 * (double)(B * nh * S * S * D);
    printf(
        "B=%lld S=%lld heads=%lld D=%lld ta=%d, %d threads, median of %d alternated runs\n",
        (long long)B, (long long)S, (long long)nh, (long long)D, ta, threads, reps);
    for (int k = 0; k < 2; k++) {
        printf("%-38s %8.3f ms %7.1f GFLOP/s\n",
               k ? "layout region (strided operand, result)"
                 : "transpose + matmul + transpose",
               med[k], flop / (med[k] / 1e3) / 1e9);
        rt_list_free(&out[k]);
        cg_engine_free(x[k]);
    }
    printf("same bits: %s\n", same ? "yes" : "NO");
    rt_list_free(&in);
    rt_list_free(&par);
    return !same;
}
