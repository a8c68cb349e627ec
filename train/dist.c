/* dist.c: see dist.h. */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/clock.h"

#ifdef BERTCC_HAVE_MPI
#include <mpi.h>
#endif
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

static int g_rank = 0, g_size = 1, g_local = 1, g_started = 0;
static double g_comm = 0;

int tr_dist_built(void)
{
#ifdef BERTCC_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

/* Whether an MPI launcher started this process (Open MPI, PMI: MPICH, Slurm). */
static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

int tr_dist_init(bc_err *e)
{
    if (g_started || !launched())
        return 0;
#ifdef BERTCC_HAVE_MPI
    int provided, flag = 0;
    MPI_Initialized(&flag);
    if (!flag && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return bc_errf(e, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL,
                            &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &g_local);
        MPI_Comm_free(&local);
    }
    g_started = 1;
    return 0;
#else
    if (getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1)
        return bc_errf(e,
                       "started by mpirun, but this bertcc was built without MPI (install "
                       "libopenmpi-dev and rebuild: tools/setup.sh)");
    return 0;
#endif
}

void tr_dist_finalize(void)
{
#ifdef BERTCC_HAVE_MPI
    if (g_started) {
#ifdef __SANITIZE_ADDRESS__
        /* The leak check of a sanitizer build runs now, while MPI's plugins are still
         * loaded: everything of bertcc's is freed by here, and the few allocations Open
         * MPI leaves behind are named by their libraries for tests/lsan-mpi.supp (after
         * MPI_Finalize unloads the plugins, their frames have no names to match). */
        __lsan_do_leak_check();
#endif
        MPI_Finalize();
        g_started = 0;
        g_rank = 0;
        g_size = g_local = 1;
    }
#endif
}

int tr_dist_rank(void)
{
    return g_rank;
}

int tr_dist_size(void)
{
    return g_size;
}

int tr_dist_local_size(void)
{
    return g_local;
}

_Noreturn void tr_dist_fail(const char *msg)
{
#ifdef BERTCC_HAVE_MPI
    if (g_started) {
        fprintf(stderr, "bertcc: rank %d: %s\n", g_rank, msg);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
#endif
    fprintf(stderr, "bertcc: %s\n", msg);
    exit(1);
}

double tr_dist_comm_seconds(void)
{
    return g_comm;
}

#ifdef BERTCC_HAVE_MPI
static int mpi_ok(int rc, const char *what, bc_err *e)
{
    if (rc == MPI_SUCCESS)
        return 0;
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return bc_errf(e, "%s: %.*s", what, len, s);
}
#endif

/* MPI counts are ints: large messages go in pieces of 1 GiB. */
#define CHUNK ((size_t)1 << 30)

/* A collective over bytes in pieces: a broadcast from rank 0, or (op != 0) an in-place
 * allreduce with op. */
static int bytes_collective(void *buf, size_t bytes, int bor, bc_err *e)
{
#ifdef BERTCC_HAVE_MPI
    if (g_size > 1) {
        double t0 = bc_now();
        for (size_t at = 0; at < bytes; at += CHUNK) {
            size_t n = bytes - at < CHUNK ? bytes - at : CHUNK;
            char *p = (char *)buf + at;
            int rc = bor ? MPI_Allreduce(MPI_IN_PLACE, p, (int)n, MPI_BYTE, MPI_BOR,
                                         MPI_COMM_WORLD)
                         : MPI_Bcast(p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
            if (mpi_ok(rc, bor ? "MPI_Allreduce" : "MPI_Bcast", e))
                return -1;
        }
        g_comm += bc_now() - t0;
    }
#else
    (void)buf, (void)bytes, (void)bor, (void)e;
#endif
    return 0;
}

int tr_dist_bcast(void *buf, size_t bytes, bc_err *e)
{
    return bytes_collective(buf, bytes, 0, e);
}

int tr_dist_max_i64(int64_t *v, int n, bc_err *e)
{
#ifdef BERTCC_HAVE_MPI
    if (g_size > 1) {
        double t0 = bc_now();
        if (mpi_ok(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD),
                   "MPI_Allreduce", e))
            return -1;
        g_comm += bc_now() - t0;
    }
#else
    (void)v, (void)n, (void)e;
#endif
    return 0;
}

int tr_dist_allgather(const void *mine, void *all, size_t bytes, bc_err *e)
{
    if (g_size == 1) {
        memcpy(all, mine, bytes);
        return 0;
    }
#ifdef BERTCC_HAVE_MPI
    if (bytes > CHUNK)
        return bc_errf(e, "allgather of %zu bytes per rank: too large", bytes);
    double t0 = bc_now();
    if (mpi_ok(MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE,
                             MPI_COMM_WORLD),
               "MPI_Allgather", e))
        return -1;
    g_comm += bc_now() - t0;
    return 0;
#else
    return bc_errf(e, "no MPI in this build");
#endif
}

int tr_dist_bor(void *buf, size_t bytes, bc_err *e)
{
    return bytes_collective(buf, bytes, 1, e);
}

/* ---- the fold --------------------------------------------------------------------------
 */

int tr_fold_init(tr_fold *f, float *acc, int64_t n, size_t bucket_bytes, bc_err *e)
{
    memset(f, 0, sizeof *f);
    f->acc = acc;
    f->n = n;
    int64_t b = (int64_t)(bucket_bytes / sizeof(float));
    if (b < g_size)
        b = g_size;
    if (b > ((int64_t)1 << 28)) /* a slice's count must fit an int */
        b = (int64_t)1 << 28;
    f->bucket = b;
    f->bad = -1;
    if (g_size > 1 && !(f->recv = malloc(((size_t)b + (size_t)g_size) * sizeof(float))))
        return bc_errf(e, "out of memory for the gradient buckets");
    return 0;
}

void tr_fold_free(tr_fold *f)
{
    free(f->recv);
    f->recv = NULL;
}

void tr_fold_begin(tr_fold *f)
{
    f->started = 0;
    f->bad = -1;
}

/* Whether the float with these bits is Inf or NaN (all exponent bits set). */
static inline int nonfinite_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* dst = (copy ? x : dst + x), noting the first non-finite sum at base + index. The loops
 * only OR a flag, so that they vectorize; the index is searched for when it is set. */
static void fold_into(tr_fold *f, float *dst, const float *x, int64_t len, int copy,
                      int64_t base)
{
    int any = 0;
    if (copy) {
#pragma omp parallel for schedule(static) reduction(| : any) if (len > 65536)
        for (int64_t j = 0; j < len; j++) {
            dst[j] = x[j];
            any |= nonfinite_bits(x[j]);
        }
    } else {
#pragma omp parallel for schedule(static) reduction(| : any) if (len > 65536)
        for (int64_t j = 0; j < len; j++) {
            float s = dst[j] + x[j];
            dst[j] = s;
            any |= nonfinite_bits(s);
        }
    }
    for (int64_t j = 0; any && j < len; j++)
        if (nonfinite_bits(dst[j])) {
            if (f->bad < 0 || base + j < f->bad)
                f->bad = base + j;
            break;
        }
}

#ifdef BERTCC_HAVE_MPI
/* The slices of a bucket of L elements: rank s owns [dis[s], dis[s] + cnt[s]). */
static void slices(int64_t L, int N, int *cnt, int *dis)
{
    for (int s = 0; s < N; s++) {
        dis[s] = (int)(L * s / N);
        cnt[s] = (int)(L * (s + 1) / N) - dis[s];
    }
}
#endif

int tr_fold_add(tr_fold *f, const float *mine, const unsigned char *present, bc_err *e)
{
    if (g_size == 1) {
        if (present[0]) {
            fold_into(f, f->acc, mine, f->n, !f->started, 0);
            f->started = 1;
        }
        return 0;
    }
#ifdef BERTCC_HAVE_MPI
    int N = g_size, r = g_rank;
    int *sc = malloc(4 * (size_t)N * sizeof *sc);
    if (!sc)
        return bc_errf(e, "out of memory");
    int *sd = sc + N, *rc = sc + 2 * N, *rd = sc + 3 * N;
    int rcv = 0;
    for (int64_t b0 = 0; b0 < f->n; b0 += f->bucket) {
        int64_t L = f->n - b0 < f->bucket ? f->n - b0 : f->bucket;
        slices(L, N, sc, sd);
        int mlen = sc[r], moff = sd[r];
        for (int s = 0; s < N; s++) {
            rc[s] = mlen;
            rd[s] = s * mlen;
        }
        double t0 = bc_now();
        rcv = MPI_Alltoallv(mine + b0, sc, sd, MPI_FLOAT, f->recv, rc, rd, MPI_FLOAT,
                            MPI_COMM_WORLD);
        g_comm += bc_now() - t0;
        if (rcv != MPI_SUCCESS)
            break;
        int copy = !f->started;
        for (int s = 0; s < N; s++)
            if (present[s]) {
                fold_into(f, f->acc + b0 + moff, f->recv + (size_t)s * (size_t)mlen, mlen,
                          copy, b0 + moff);
                copy = 0;
            }
    }
    free(sc);
    if (mpi_ok(rcv, "MPI_Alltoallv", e))
        return -1;
    for (int s = 0; s < N; s++)
        f->started |= present[s];
    return 0;
#else
    (void)mine, (void)present;
    return bc_errf(e, "no MPI in this build");
#endif
}

int tr_fold_finish(tr_fold *f, bc_err *e)
{
    if (g_size == 1)
        return 0;
#ifdef BERTCC_HAVE_MPI
    int N = g_size;
    int *cnt = malloc(2 * (size_t)N * sizeof *cnt);
    if (!cnt)
        return bc_errf(e, "out of memory");
    int *dis = cnt + N, rcv = MPI_SUCCESS;
    for (int64_t b0 = 0; b0 < f->n && rcv == MPI_SUCCESS; b0 += f->bucket) {
        int64_t L = f->n - b0 < f->bucket ? f->n - b0 : f->bucket;
        slices(L, N, cnt, dis);
        double t0 = bc_now();
        rcv = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, f->acc + b0, cnt, dis,
                             MPI_FLOAT, MPI_COMM_WORLD);
        g_comm += bc_now() - t0;
    }
    free(cnt);
    return mpi_ok(rcv, "MPI_Allgatherv", e);
#else
    (void)f;
    return bc_errf(e, "no MPI in this build");
#endif
}
