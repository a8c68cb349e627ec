/* dist.h: data-parallel training across processes with MPI (README "Training on several
 * processes and machines").
 *
 * `mpirun -np N bertcc train ...` starts N ranks. Each holds the whole model and runs
 * forward and backward on its shard of every micro-batch; the gradients are combined
 * here, and every rank applies the same AdamW step, so the weights stay identical.
 *
 * The combination is a fold in rank order, not MPI_Allreduce: an allreduce's summation
 * order depends on its algorithm (and so on N, the message size and the library), and
 * the engine promises that N ranks give the same bits as one process accumulating the
 * same N shards one after another. So a reduce-scatter (MPI_Alltoallv over buckets of
 * the gradient, each rank owning a slice of each bucket) brings every rank's copy of a
 * slice to its owner, which adds them in rank order exactly as accumulation adds
 * micro-batches (the first present shard's value, then + each next one), and an
 * allgather hands the sums back. Element by element this is the one-process order, so
 * the bucket size changes nothing but the messages. Its cost is that of a ring
 * allreduce: each rank sends and receives 2 (N-1)/N of the gradient per update.
 *
 * Built without MPI (no find_package(MPI) at configure time), every function works for
 * one process (rank 0 of 1). MPI is started only when an MPI launcher started this
 * process (mpirun sets OMPI_COMM_WORLD_SIZE, Slurm and MPICH PMI_SIZE), so a plain
 * `bertcc train` never needs one. */
#ifndef BERTCC_TRAIN_DIST_H
#define BERTCC_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "../support/err.h"

/* 1 when this build has MPI. */
int tr_dist_built(void);
/* Starts MPI when an MPI launcher started the process (else nothing): 0, or -1 with e
 * filled. Safe to call more than once. */
int tr_dist_init(bc_err *e);
/* Ends MPI when tr_dist_init started it. */
void tr_dist_finalize(void);
int tr_dist_rank(void); /* 0 when MPI is not running */
int tr_dist_size(void); /* 1 when MPI is not running */
/* The ranks on this host (1 when MPI is not running). */
int tr_dist_local_size(void);
/* Prints "bertcc: rank R: msg" on stderr and ends the whole job (MPI_Abort with status
 * 1), so that mpirun ends every rank instead of leaving them waiting for this one. Without
 * MPI running, prints "bertcc: msg" and exits with 1. */
_Noreturn void tr_dist_fail(const char *msg);

/* Collectives over every rank; each returns 0, or -1 with e filled. Their time is
 * counted in tr_dist_comm_seconds. */
int tr_dist_bcast(void *buf, size_t bytes, bc_err *e); /* from rank 0 */
int tr_dist_max_i64(int64_t *v, int n, bc_err *e);     /* in place */
int tr_dist_allgather(const void *mine, void *all, size_t bytes,
                      bc_err *e);                    /* rank order */
int tr_dist_bor(void *buf, size_t bytes, bc_err *e); /* bitwise OR of every rank's bytes */
/* Seconds spent in the collectives above and in the fold so far. */
double tr_dist_comm_seconds(void);

/* The fold over one float vector of n elements (the gradient arena; acc and every
 * `mine` passed to tr_fold_add have the same length). */
typedef struct tr_fold {
    float *acc;     /* [n] the update's sum: owned slices during it, all of it at finish */
    int64_t n;      /* elements */
    int64_t bucket; /* elements per bucket */
    float *recv;    /* [bucket] the owned slice of a bucket from every rank */
    int started;    /* the update's first present shard has been taken */
    int64_t bad;    /* the first element whose sum is not finite (-1: none) */
} tr_fold;

/* bucket_bytes: the message size of a bucket (--dist-bucket-mb). */
int tr_fold_init(tr_fold *f, float *acc, int64_t n, size_t bucket_bytes, bc_err *e);
void tr_fold_free(tr_fold *f);
/* Starts an update: the next present shard's gradient replaces the sum. */
void tr_fold_begin(tr_fold *f);
/* Adds one micro-batch: mine is this rank's gradient, present[r] whether rank r's shard
 * had rows (an absent shard adds nothing, not even zeros: -0 + 0 would change a bit).
 * Afterwards f->bad is the first element of this rank's slices whose sum is not finite. */
int tr_fold_add(tr_fold *f, const float *mine, const unsigned char *present, bc_err *e);
/* Ends an update: every rank's acc holds the whole sum. */
int tr_fold_finish(tr_fold *f, bc_err *e);

#endif
