/* allreduce_bench.c: the time of combining a float vector across MPI ranks, two ways:
 * MPI_Allreduce(SUM) and bertcc's rank-ordered fold (train/dist.h: tr_fold_begin, one
 * tr_fold_add with every rank's shard present, tr_fold_finish: a reduce-scatter by
 * MPI_Alltoallv whose owner adds the slices in rank order, then MPI_Allgatherv), which
 * is what every data-parallel update does to the gradient. Run under mpirun (tr_dist_init
 * starts MPI only then); bench/allreduce.sh runs it over shared memory and TCP.
 *
 *   mpirun -np 2 allreduce_bench [-r REPS] [-b BUCKET_MB] [-t THREADS]
 *                                [--min BYTES] [--max BYTES]
 *
 * For each size (powers of 4 from --min, 4 KiB, to --max, 64 MiB), the two alternate
 * REPS times after one untimed warm-up each; a repetition is k calls (k: enough for 4 MiB
 * in all, so small sizes are not below the clock's grain), its time the slowest rank's
 * per call. Prints the median, the bus bandwidth 2 (N-1)/N bytes / time (what each
 * rank sends and receives in a ring allreduce, nccl-tests' "busbw") and the fold's time
 * outside MPI (its adds and copies, the slowest rank's). Both results are
 * checked against the exact sum (small integers) after the timed calls: exit status 1 if
 * either differs. */
#include <mpi.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/dist.h"
#include "bench_stats.h"

enum { OP_ALLREDUCE, OP_FOLD };

typedef struct bufs {
    float *mine; /* [n] this rank's vector: (j % 251) + rank */
    float *sum;  /* [n] MPI_Allreduce's result */
    float *acc;  /* [n] the fold's result */
    int64_t n;
    tr_fold fold;
    unsigned char *present; /* [N] all 1 */
} bufs;

static int run_op(bufs *b, int op, bc_err *e)
{
    if (op == OP_ALLREDUCE) {
        if (MPI_Allreduce(b->mine, b->sum, (int)b->n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return bc_errf(e, "MPI_Allreduce failed");
        return 0;
    }
    tr_fold_begin(&b->fold);
    if (tr_fold_add(&b->fold, b->mine, b->present, e) || tr_fold_finish(&b->fold, e))
        return -1;
    return 0;
}

/* Seconds per call of op, k calls in a row: t[0] the slowest rank's, t[1] the most any
 * rank spent outside MPI (tr_dist_comm_seconds counts the fold's MPI calls): the fold's
 * adds and copies. */
static int time_op(bufs *b, int op, int k, double t[2], bc_err *e)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime(), c0 = tr_dist_comm_seconds();
    for (int i = 0; i < k; i++)
        if (run_op(b, op, e))
            return -1;
    double all = MPI_Wtime() - t0;
    double mine[2] = {all / k,
                      op == OP_FOLD ? (all - (tr_dist_comm_seconds() - c0)) / k : 0};
    MPI_Allreduce(mine, t, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return 0;
}

/* The first element of got that is not the exact sum over N ranks, or -1. */
static int64_t first_wrong(const float *got, int64_t n, int N)
{
    for (int64_t j = 0; j < n; j++) {
        float want = (float)(N * (j % 251) + N * (N - 1) / 2);
        if (got[j] != want)
            return j;
    }
    return -1;
}

static int usage(int rank)
{
    if (rank == 0)
        fprintf(stderr, "usage: mpirun -np N allreduce_bench [-r REPS] [-b BUCKET_MB] "
                        "[-t THREADS] [--min BYTES] [--max BYTES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    bc_err e;
    if (tr_dist_init(&e)) {
        fprintf(stderr, "allreduce_bench: %s\n", e.msg);
        return 1;
    }
    int rank = tr_dist_rank(), N = tr_dist_size();
    if (!tr_dist_built() || N < 2) {
        fprintf(stderr, "allreduce_bench: run it under mpirun with 2 or more ranks "
                        "(bench/allreduce.sh)\n");
        tr_dist_finalize();
        return 2;
    }
    int reps = 11, threads = 1;
    double bucket_mb = 25; /* bertcc train's --dist-bucket-mb default */
    int64_t lo = 4096, hi = (int64_t)64 << 20;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "-r"))
            reps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-b"))
            bucket_mb = atof(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "-t"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--min"))
            lo = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--max"))
            hi = atoll(argv[++i]);
        else {
            tr_dist_finalize();
            return usage(rank);
        }
    }
    if (reps < 1 || threads < 1 || bucket_mb <= 0 || lo < 4 * N || hi < lo ||
        hi > ((int64_t)1 << 31) - 4) {
        tr_dist_finalize();
        return usage(rank);
    }
    /* The fold's adds are OpenMP loops; one thread per rank, as `bertcc train
     * --threads 1` under `mpirun -np 2` on a 2-core machine. */
    omp_set_num_threads(threads);

    bufs b = {0};
    int64_t nmax = hi / (int64_t)sizeof(float);
    b.mine = malloc((size_t)nmax * sizeof(float));
    b.sum = malloc((size_t)nmax * sizeof(float));
    b.acc = malloc((size_t)nmax * sizeof(float));
    b.present = malloc((size_t)N);
    double *ta = malloc((size_t)reps * sizeof *ta), *tf = malloc((size_t)reps * sizeof *tf);
    double *tl = malloc((size_t)reps * sizeof *tl); /* the fold outside MPI */
    if (!b.mine || !b.sum || !b.acc || !b.present || !ta || !tf || !tl) {
        fprintf(stderr, "allreduce_bench: rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(b.present, 1, (size_t)N);
    for (int64_t j = 0; j < nmax; j++)
        b.mine[j] = (float)(j % 251 + rank);

    if (rank == 0) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(lib, &len);
        char *nl = strchr(lib, '\n');
        if (nl)
            *nl = 0;
        printf("%d ranks, %d thread(s) each; fold buckets of %g MiB; median of %d "
               "alternated repetitions; %s\n\n",
               N, threads, bucket_mb, reps, lib);
        printf(
            "| bytes | MPI_Allreduce µs | bus GB/s | bertcc fold µs | bus GB/s | of which "
            "adds µs | fold / allreduce |\n");
        printf("|---:|---:|---:|---:|---:|---:|---:|\n");
        fflush(stdout);
    }
    int status = 0;
    for (int64_t bytes = lo; bytes <= hi; bytes *= 4) {
        b.n = bytes / (int64_t)sizeof(float);
        if (tr_fold_init(&b.fold, b.acc, b.n, (size_t)(bucket_mb * 1048576.0), &e))
            goto fail;
        int k = bytes >= ((int64_t)4 << 20) ? 1 : (int)(((int64_t)4 << 20) / bytes);
        double t[2], u[2];
        if (time_op(&b, OP_ALLREDUCE, 1, t, &e) || time_op(&b, OP_FOLD, 1, t, &e))
            goto fail;
        for (int r = 0; r < reps; r++) {
            /* alternate which goes first, so neither always follows the other */
            int first = r % 2 ? OP_FOLD : OP_ALLREDUCE;
            int second = first == OP_FOLD ? OP_ALLREDUCE : OP_FOLD;
            if (time_op(&b, first, k, t, &e) || time_op(&b, second, k, u, &e))
                goto fail;
            const double *a = first == OP_ALLREDUCE ? t : u, *f = first == OP_FOLD ? t : u;
            ta[r] = a[0];
            tf[r] = f[0];
            tl[r] = f[1];
        }
        tr_fold_free(&b.fold);
        int64_t wa = first_wrong(b.sum, b.n, N), wf = first_wrong(b.acc, b.n, N);
        if (wa >= 0 || wf >= 0) {
            fprintf(
                stderr,
                "allreduce_bench: rank %d, %lld bytes: wrong sum at element %lld (%s)\n",
                rank, (long long)bytes, (long long)(wa >= 0 ? wa : wf),
                wa >= 0 ? "MPI_Allreduce" : "fold");
            status = 1;
        }
        double ma = bench_median(ta, reps), mf = bench_median(tf, reps);
        double ml = bench_median(tl, reps);
        double moved = 2.0 * (N - 1) / N * (double)bytes;
        if (rank == 0) {
            printf("| %lld | %.1f | %.2f | %.1f | %.2f | %.1f | %.2f |\n", (long long)bytes,
                   1e6 * ma, moved / ma / 1e9, 1e6 * mf, moved / mf / 1e9, 1e6 * ml,
                   mf / ma);
            fflush(stdout);
        }
    }
    free(b.mine);
    free(b.sum);
    free(b.acc);
    free(b.present);
    free(ta);
    free(tf);
    free(tl);
    int any = status;
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    tr_dist_finalize();
    return any;
fail:
    fprintf(stderr, "allreduce_bench: rank %d: %s\n", rank, e.msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}
