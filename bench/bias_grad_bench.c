/* bias_grad_bench.c: the backward rule's bias gradient in isolation. A weight gradient
 * dW = dy^T x (matmul {ta=1} over R rows; dy [R, M], x [R, N]) and its bias gradient
 * db = reduce_sum(dy) [M], compiled twice: as two steps (the GEMM, then the column sums
 * reading dy again) and as one region whose GEMM sums dy's columns as it packs them.
 * Alternates the two and prints the median ms of each (2 threads by default). The
 * defaults are bert-base's FFN-up weight gradient at B=8, S=128.
 *
 *   bias_grad_bench [-t THREADS] [-r REPS] [-R ROWS] [-m M] [-n N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_pair.h"

static ir_graph *graph(const void *arg)
{
    int64_t M = ((const int64_t *)arg)[0], N = ((const int64_t *)arg)[1];
    ir_graph *g = ir_graph_new("bias_grad");
    ir_dim dy[2] = {IR_DIM_S, ir_dconst(M)}, dx[2] = {IR_DIM_S, ir_dconst(N)};
    ir_dim dm[1] = {ir_dconst(M)};
    int y = ir_input(g, "dy", ir_type_make(IR_F32, 2, dy));
    int x = ir_input(g, "x", ir_type_make(IR_F32, 2, dx));
    ir_attrs none = {0};
    ir_type tm = ir_type_make(IR_F32, 1, dm);
    ir_set_output(g, "db", ir_add(g, IR_OP_REDUCE_SUM, &y, 1, &none, NULL, &tm));
    ir_set_output(g, "dw", ir_matmul(g, y, x, 1, 0));
    return g;
}

static int same_output(const rt_tensor_list *a, const rt_tensor_list *b, const char *name)
{
    const rt_tensor *x = rt_list_cfind(a, name), *y = rt_list_cfind(b, name);
    return x && y && rt_nbytes(x) == rt_nbytes(y) &&
           !memcmp(x->data, y->data, rt_nbytes(x));
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 30;
    int64_t R = 1024, M = 3072, N = 768;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "-t"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-r"))
            reps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-R"))
            R = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-m"))
            M = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-n"))
            N = atoll(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bias_grad_bench [-t THREADS] [-r REPS] [-R ROWS] [-m M] "
                    "[-n N]\n");
            return 1;
        }
    }
    if (threads < 1 || reps < 1 || R < 1 || M < 1 || N < 1) {
        fprintf(stderr, "bias_grad_bench: sizes, threads and reps must be positive\n");
        return 1;
    }
    static const char *const pipes[2] = {PASS_BASE_PIPELINE,
                                         PASS_BASE_PIPELINE ",fuse=backward"};
    cg_engine *x[2];
    const int64_t mn[2] = {M, N};
    if (bench_pair_compile(graph, mn, pipes, x, "bias_grad_bench"))
        return 1;
    rt_tensor_list in, par, out[2];
    rt_list_init(&in);
    rt_list_init(&par);
    int64_t sy[2] = {R, M}, sx[2] = {R, N};
    rt_tensor *ty = rt_list_add(&in, "dy", RT_F32, 2, sy, NULL);
    rt_tensor *tx = rt_list_add(&in, "x", RT_F32, 2, sx, NULL);
    if (!ty || !tx) {
        fprintf(stderr, "bias_grad_bench: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < rt_numel(ty); i++)
        ((float *)ty->data)[i] = (float)(i % 7) * 0.1f - 0.3f;
    for (int64_t i = 0; i < rt_numel(tx); i++)
        ((float *)tx->data)[i] = (float)(i % 5) * 0.1f;
    double med[2];
    if (bench_pair_time(x, &par, &in, threads, reps, out, med, "bias_grad_bench"))
        return 1;
    int same = same_output(&out[0], &out[1], "dw") && same_output(&out[0], &out[1], "db");
    double flop = 2.0 * (double)R * (double)M * (double)N;
    printf("rows=%lld M=%lld N=%lld, %d threads, median of %d alternated runs\n",
           (long long)R, (long long)M, (long long)N, threads, reps);
    for (int k = 0; k < 2; k++) {
        printf("%-44s %8.3f ms %7.1f GFLOP/s\n",
               k ? "one region (dy summed as it is packed)"
                 : "matmul {ta=1}, then reduce_sum",
               med[k], flop / (med[k] / 1e3) / 1e9);
        rt_list_free(&out[k]);
        cg_engine_free(x[k]);
    }
    printf("same bits: %s\n", same ? "yes" : "NO");
    rt_list_free(&in);
    rt_list_free(&par);
    return !same;
}
