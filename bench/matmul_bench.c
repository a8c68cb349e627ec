/* matmul_bench.c: the generated matmul (codegen/matmul.c) against OpenBLAS sgemm at
 * BERT's shapes, with 1 and 2 threads in the same run. Each shape is compiled once as a
 * one-matmul graph; its kernel runs the way the executor runs it (units split
 * statically over an OpenMP team, per-thread scratch), and sgemm runs on the same
 * operands. Runs alternate (ours, OpenBLAS, ours, ...) and each side reports the median,
 * as GFLOP/s and the ratio ours / OpenBLAS. Run through bench/run_matmul.sh, which lets
 * OpenBLAS pick its own kernel for the CPU.
 *
 *   matmul_bench [-r REPS] [-t THREADS,...] [-s M,N,K,ta,tb]... [-c]
 * -s (repeatable) replaces the BERT set. -c times 1-thread runs by the calling thread's
 * CPU time instead of wall time: on a machine shared with other jobs it leaves out the
 * time the thread was descheduled (it is refused with more threads, whose work runs on
 * other threads). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../codegen/codegen.h"
#include "../ir/ir.h"
#include "../runtime/plan.h"
#include "bench_stats.h"

/* C (M, N) = op(A) x op(B); op(A) is (M, K), op(B) is (K, N). */
typedef struct shape {
    const char *what;
    int64_t M, N, K;
    int ta, tb;
} shape;

/* A generated matmul kernel for one shape. */
typedef struct gen_mm {
    ir_graph *g;
    rt_plan plan;
    cg_program *prog;
    rt_kernel k;
    int64_t units, scratch; /* scratch bytes per thread, rounded to 64 */
    char *scratch_all;      /* (threads, scratch) */
} gen_mm;

static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int gen_build(gen_mm *m, const shape *s, int max_threads, bc_err *e)
{
    memset(m, 0, sizeof *m);
    m->g = ir_graph_new("bench");
    ir_dim ad[2] = {ir_dconst(s->ta ? s->K : s->M), ir_dconst(s->ta ? s->M : s->K)};
    ir_dim bd[2] = {ir_dconst(s->tb ? s->N : s->K), ir_dconst(s->tb ? s->K : s->N)};
    int a = ir_input(m->g, "a", ir_type_make(IR_F32, 2, ad));
    int b = ir_input(m->g, "b", ir_type_make(IR_F32, 2, bd));
    ir_set_output(m->g, "c", ir_matmul(m->g, a, b, s->ta, s->tb));
    if (m->g->failed)
        return bc_errf(e, "%s", m->g->err.msg);
    if (rt_plan_build(m->g, &m->plan, e) || !(m->prog = cg_jit(m->g, &m->plan, NULL, e)))
        return -1;
    if (m->plan.nsteps != 1)
        return bc_errf(e, "expected one kernel, the plan has %d steps", m->plan.nsteps);
    m->k = cg_program_kernels(m->prog)[m->plan.steps[0].kernel];
    const int64_t dims[2] = {1, 1};
    m->units = m->k.units(dims, &m->scratch);
    m->scratch = (m->scratch + 63) & ~(int64_t)63;
    if (m->scratch &&
        !(m->scratch_all = aligned_alloc(64, (size_t)(m->scratch * max_threads))))
        return bc_errf(e, "out of memory");
    return 0;
}

static void gen_free(gen_mm *m)
{
    free(m->scratch_all);
    cg_program_free(m->prog);
    rt_plan_free(&m->plan);
    ir_graph_free(m->g);
}

/* One run, split as runtime/exec.c splits it. */
static double gen_run(const gen_mm *m, float *c, const float *a, const float *b,
                      int threads)
{
    void *ptrs[3] = {c, (void *)a, (void *)b};
    const int64_t dims[2] = {1, 1};
    double t0 = now();
#pragma omp parallel num_threads(threads)
    {
        int ith = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t u0 = m->units * ith / nt, u1 = m->units * (ith + 1) / nt;
        if (u0 < u1)
            m->k.body(ptrs, dims, u0, u1,
                      m->scratch_all ? m->scratch_all + m->scratch * ith : NULL);
    }
    return now() - t0;
}

static double blas_run(const shape *s, float *c, const float *a, const float *b)
{
    double t0 = now();
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f, a,
                (int)(s->ta ? s->M : s->K), b, (int)(s->tb ? s->K : s->N), 0.0f, c,
                (int)s->N);
    return now() - t0;
}

static void fill(float *x, int64_t n, uint64_t seed)
{
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(st >> 40) / (double)(1 << 24) * 2.0 - 1.0);
    }
}

/* The BERT-base shapes at B*S = 1024 tokens, hidden H, the MLP's 4H: a linear layer
 * y = x W^T (W as stored, [out, in]) and its two gradients dx = dy W, dW = dy^T x. */
static int bert_shapes(shape *out)
{
    static const int64_t kn[4][2] = {{768, 768}, {768, 3072}, {3072, 768}, {3072, 3072}};
    const int64_t T = 1024;
    int n = 0;
    for (int i = 0; i < 4; i++) {
        int64_t K = kn[i][0], N = kn[i][1];
        out[n++] = (shape){"y = x W^T", T, N, K, 0, 1};
        out[n++] = (shape){"dx = dy W", T, K, N, 0, 0};
        out[n++] = (shape){"dW = dy^T x", N, K, T, 1, 0};
    }
    return n;
}

int main(int argc, char **argv)
{
    int reps = 11, threads[8] = {1, 2}, nthreads = 2;
    shape shapes[32];
    int nshapes = bert_shapes(shapes), custom = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            nthreads = 0;
            for (char *p = argv[++i]; *p && nthreads < 8; p += strcspn(p, ","), p += !!*p)
                threads[nthreads++] = atoi(p);
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            shape s = {"custom", 0, 0, 0, 0, 0};
            long long M, N, K;
            if (sscanf(argv[++i], "%lld,%lld,%lld,%d,%d", &M, &N, &K, &s.ta, &s.tb) != 5) {
                fprintf(stderr, "matmul_bench: -s wants M,N,K,ta,tb\n");
                return 2;
            }
            s.M = M, s.N = N, s.K = K;
            if (!custom++)
                nshapes = 0;
            if (nshapes < 32)
                shapes[nshapes++] = s;
        } else if (!strcmp(argv[i], "-c")) {
            clock_id = CLOCK_THREAD_CPUTIME_ID;
        } else {
            fprintf(stderr, "usage: matmul_bench [-r REPS] [-t THREADS,...] [-s "
                            "M,N,K,ta,tb]... [-c]\n");
            return 2;
        }
    }
    int max_threads = 1;
    for (int t = 0; t < nthreads; t++)
        max_threads = threads[t] > max_threads ? threads[t] : max_threads;
    if (reps < 1 || nthreads < 1 || (clock_id != CLOCK_MONOTONIC && max_threads > 1)) {
        fprintf(stderr, "matmul_bench: bad options (-c needs -t 1)\n");
        return 2;
    }
    char cpu[64], feat[4096];
    cg_host_target(cpu, sizeof cpu, feat, sizeof feat);
    printf(
        "LLVM %s, host cpu %s; OpenBLAS %s, core %s; median of %d interleaved runs%s\n\n",
        cg_llvm_version(), cpu, openblas_get_config(), openblas_get_corename(), reps,
        clock_id == CLOCK_MONOTONIC ? "" : " (thread CPU time)");
    printf("| op | M | N | K | ta | tb | threads | bertcc GFLOP/s | OpenBLAS GFLOP/s | "
           "ratio |\n");
    printf("|---|---:|---:|---:|:-:|:-:|:-:|---:|---:|---:|\n");
    double worst = 1e9;
    for (int si = 0; si < nshapes; si++) {
        const shape *s = &shapes[si];
        gen_mm m;
        bc_err e;
        if (gen_build(&m, s, max_threads, &e)) {
            fprintf(stderr, "matmul_bench: %s\n", e.msg);
            return 1;
        }
        size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N),
               nc = (size_t)(s->M * s->N);
        float *a = malloc(na * 4), *b = malloc(nb * 4), *c1 = malloc(nc * 4),
              *c2 = malloc(nc * 4);
        double *t1 = malloc(sizeof(double) * (size_t)reps),
               *t2 = malloc(sizeof(double) * (size_t)reps);
        if (!a || !b || !c1 || !c2 || !t1 || !t2) {
            fprintf(stderr, "matmul_bench: out of memory\n");
            return 1;
        }
        fill(a, (int64_t)na, 1);
        fill(b, (int64_t)nb, 2);
        double flop = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        for (int ti = 0; ti < nthreads; ti++) {
            int nt = threads[ti];
            openblas_set_num_threads(nt);
            gen_run(&m, c1, a, b, nt); /* warm up both, and check they agree */
            blas_run(s, c2, a, b);
            double err = 0, mref = 0;
            for (size_t i = 0; i < nc; i++) {
                err = fmax(err, fabs((double)c1[i] - (double)c2[i]));
                mref = fmax(mref, fabs((double)c2[i]));
            }
            if (err > 1e-5 * mref * sqrt((double)s->K)) {
                fprintf(stderr,
                        "matmul_bench: %s: results differ from OpenBLAS (max error %g, max "
                        "%g)\n",
                        s->what, err, mref);
                return 1;
            }
            for (int r = 0; r < reps; r++) {
                t1[r] = gen_run(&m, c1, a, b, nt);
                t2[r] = blas_run(s, c2, a, b);
            }
            double g1 = flop / bench_median(t1, reps) * 1e-9;
            double g2 = flop / bench_median(t2, reps) * 1e-9;
            worst = fmin(worst, g1 / g2);
            printf("| %s | %lld | %lld | %lld | %d | %d | %d | %.1f | %.1f | %.2f |\n",
                   s->what, (long long)s->M, (long long)s->N, (long long)s->K, s->ta, s->tb,
                   nt, g1, g2, g1 / g2);
            fflush(stdout);
        }
        free(a);
        free(b);
        free(c1);
        free(c2);
        free(t1);
        free(t2);
        gen_free(&m);
    }
    printf("\nlowest ratio: %.2f\n", worst);
    return 0;
}
