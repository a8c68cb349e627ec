/* train.c: the training loop (see train.h). One update = `accum` micro-batches whose
 * gradients are summed into one buffer per trainable parameter, averaged, clipped and
 * applied by AdamW. Updates never span epochs: the last update of an epoch takes the
 * micro-batches left, so the position in the run is a function of the update count.
 *
 * Memory, as llm.c keeps it: the parameters, the summed gradients (acc), the gradients
 * of the second and later micro-batches of an update (cur) and AdamW's two moments are
 * each one arena (tensor.h). The step function receives views of acc (first
 * micro-batch) or cur (later ones) in `out`, so an executor computes the gradients
 * there and nothing is copied; cur is then added to acc in the order a copy would
 * have been. */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/rng.h"
#include "../runtime/safetensors.h"
#include "../support/clock.h"
#include "../support/file.h"
#include "ckpt.h"
#include "dist.h"

void tr_train_defaults(tr_train_opts *o)
{
    memset(o, 0, sizeof *o);
    tr_adamw_defaults(&o->adam);
    o->batch_size = 8;
    o->accum = 1;
    o->epochs = 3;
    o->shuffle = 1;
    o->tokens_from = "input_ids";
}

int64_t tr_train_micro_per_epoch(const tr_train_opts *o, int64_t rows)
{
    int64_t bs = o->batch_size > 0 ? o->batch_size : 1;
    return rows > 0 ? (rows + bs - 1) / bs : 0;
}

int64_t tr_train_updates_per_epoch(const tr_train_opts *o, int64_t rows)
{
    int64_t acc = o->accum > 0 ? o->accum : 1;
    return (tr_train_micro_per_epoch(o, rows) + acc - 1) / acc;
}

int64_t tr_train_total_steps(const tr_train_opts *o, int64_t rows)
{
    if (o->steps > 0)
        return o->steps;
    int64_t upe = tr_train_updates_per_epoch(o, rows), total;
    if (o->epochs <= 0 || __builtin_mul_overflow(o->epochs, upe, &total))
        return 0;
    return total;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t tr_train_dropout_seed(uint64_t seed, int64_t micro_step)
{
    return mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) + (uint64_t)micro_step) >> 1;
}

static uint64_t shuffle_seed(uint64_t seed, int64_t epoch)
{
    return mix64(seed ^ 0xbb67ae8584caa73bULL) + (uint64_t)epoch;
}

char *tr_train_progress_str(const tr_train_progress *p, char *buf, size_t len)
{
    char eta[32] = "?";
    if (isfinite(p->eta_s) && p->eta_s >= 0 && p->eta_s < 1e8) {
        long long s = (long long)(p->eta_s + 0.5);
        snprintf(eta, sizeof eta, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    }
    snprintf(buf, len,
             "step %lld/%lld  epoch %.2f  loss %.4f  lr %.2e  |g| %.3g  %.0f tok/s  ETA %s",
             (long long)p->step, (long long)p->total, p->epoch, p->loss, p->lr,
             p->grad_norm, p->tokens_per_s, eta);
    size_t n = strlen(buf);
    if (p->ranks > 1 && p->step_s > 0 && n < len)
        snprintf(buf + n, len - n, "  comm %.0f%%", 100 * p->comm_s / p->step_s);
    return buf;
}

/* ---- the run's state ------------------------------------------------------------- */

typedef struct trainer {
    const tr_train_opts *o;
    tr_step_fn fn;
    void *ctx;
    rt_tensor_list *params;
    const rt_tensor_list *data;  /* this epoch's rows: the caller's, or chunk */
    const rt_tensor_list *data0; /* the caller's (epoch 0) */
    rt_tensor_list chunk;        /* o->refill's rows for the current epoch */
    int64_t rows, nmicro, upe, total;
    int64_t tokens_per_row;
    tr_adamw adam;
    char **gname;       /* [adam.m.n] "grad.<param>" */
    rt_tensor_list acc; /* grad.<param>: this update's summed, then averaged, gradients */
    rt_tensor_list cur; /* grad.<param>: a later micro-batch's gradients (accum > 1) */
    rt_tensor_list out; /* what the step function fills: views of acc or cur, its loss */
    int64_t *perm;      /* [rows] this epoch's row order */
    int64_t perm_epoch;
    int64_t step; /* updates done */
    FILE *log;
    int tty;
    int printed; /* a \r progress line is open on the tty */
    /* data parallel (dist.h): this rank of nrank; rank 0 alone writes */
    int rank, nrank, writer;
    int64_t shards;             /* per epoch: non-empty shards of its micro-batches */
    tr_fold fold;               /* sums cur across the ranks into acc */
    float *flat_acc, *flat_cur; /* the two gradient arenas as flat float vectors */
    int64_t flat_n;
    unsigned char *present; /* [nrank] whose shard of a micro-batch has rows */
    double *vals, *allvals; /* this update's losses and tokens: mine, every rank's */
} trainer;

static void trainer_free(trainer *T)
{
    if (T->gname)
        for (int i = 0; i < T->adam.m.n; i++)
            free(T->gname[i]);
    free(T->gname);
    tr_adamw_free(&T->adam);
    rt_list_free(&T->acc);
    rt_list_free(&T->cur);
    rt_list_free(&T->out);
    rt_list_free(&T->chunk);
    free(T->perm);
    tr_fold_free(&T->fold);
    free(T->present);
    free(T->vals);
    free(T->allvals);
    if (T->log)
        fclose(T->log);
}

static int check_data(const rt_tensor_list *data, int64_t *rows, bc_err *e)
{
    if (data->n == 0)
        return bc_errf(e, "training data: no tensors");
    for (int i = 0; i < data->n; i++) {
        const rt_tensor *t = &data->t[i];
        if (t->rank < 1)
            return bc_errf(e,
                           "training data: %s is a scalar; every tensor needs a leading "
                           "dimension of rows",
                           t->name);
        if (i == 0 && t->shape[0] < 1)
            return bc_errf(e, "training data: %s has no rows", t->name);
        if (i > 0 && t->shape[0] != data->t[0].shape[0])
            return bc_errf(e, "training data: %s has %lld rows, %s has %lld", t->name,
                           (long long)t->shape[0], data->t[0].name,
                           (long long)data->t[0].shape[0]);
    }
    *rows = data->t[0].shape[0];
    return 0;
}

/* Points T->data at epoch's rows: the caller's for epoch 0 (or without o->refill),
 * else a refill, which must match the caller's tensors in names, dtypes and shapes. */
static int epoch_data(trainer *T, int64_t epoch, bc_err *e)
{
    const tr_train_opts *o = T->o;
    if (!o->refill || epoch == 0) {
        T->data = T->data0;
        return 0;
    }
    rt_list_free(&T->chunk);
    rt_list_init(&T->chunk);
    T->data = &T->chunk;
    int rc = o->refill(o->refill_ctx, epoch, &T->chunk, e);
    if (rc < 0) {
        bc_err_prefix(e, "epoch %lld's data", (long long)epoch + 1);
        return -1;
    }
    if (rc > 0) { /* no refill: epoch 0's rows again */
        rt_list_free(&T->chunk);
        rt_list_init(&T->chunk);
        T->data = T->data0;
        return 0;
    }
    const rt_tensor_list *a = T->data0, *b = &T->chunk;
    int same = a->n == b->n;
    for (int i = 0; same && i < a->n; i++)
        same =
            !strcmp(a->t[i].name, b->t[i].name) && a->t[i].dtype == b->t[i].dtype &&
            a->t[i].rank == b->t[i].rank &&
            !memcmp(a->t[i].shape, b->t[i].shape, (size_t)a->t[i].rank * sizeof(int64_t));
    if (!same)
        return bc_errf(e,
                       "epoch %lld's data: the refill does not match epoch 1's tensors "
                       "(names, dtypes, %lld rows)",
                       (long long)epoch + 1, (long long)T->rows);
    return 0;
}

typedef struct len_pos {
    int64_t len, pos, row;
} len_pos;

static int by_length(const void *a, const void *b)
{
    const len_pos *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Sorts each run of 50 micro-batches' rows of T->perm by length, longest first (ties
 * keep their shuffled order), then shuffles the order of the run's full micro-batches
 * with r, so that consecutive updates do not go from the longest rows to the shortest:
 * where length goes with the label (short utterances are fragments, say), sorted
 * micro-batches in sorted order made every update see one kind of example and training
 * failed. Lengths are the rows' attention_mask ones; without an integer attention_mask
 * the order stays as it is. */
static void group_by_length(trainer *T, rt_rng *r)
{
    const rt_tensor *m = rt_list_cfind(T->data, "attention_mask");
    if (!m || (m->dtype != RT_I64 && m->dtype != RT_I32) || m->rank != 2)
        return;
    int64_t S = m->shape[1], bs = T->o->batch_size, mega = bs * 50;
    len_pos *lp = malloc((size_t)(mega < T->rows ? mega : T->rows) * sizeof *lp);
    int64_t *block = malloc((size_t)bs * sizeof *block);
    if (!lp || !block) {
        free(lp);
        free(block);
        return; /* an unsorted epoch is still a correct one */
    }
    for (int64_t s0 = 0; s0 < T->rows; s0 += mega) {
        int64_t n = T->rows - s0 < mega ? T->rows - s0 : mega;
        for (int64_t k = 0; k < n; k++) {
            int64_t row = T->perm[s0 + k], len = 0;
            for (int64_t j = 0; j < S; j++)
                len += m->dtype == RT_I64 ? ((const int64_t *)m->data)[row * S + j] != 0
                                          : ((const int32_t *)m->data)[row * S + j] != 0;
            lp[k] = (len_pos){len, k, row};
        }
        qsort(lp, (size_t)n, sizeof *lp, by_length);
        for (int64_t k = 0; k < n; k++)
            T->perm[s0 + k] = lp[k].row;
        int64_t *p = T->perm + s0; /* Fisher-Yates over the run's full micro-batches */
        for (int64_t i = n / bs - 1; i > 0; i--) {
            int64_t j = (int64_t)rt_rng_below(r, (uint64_t)i + 1);
            memcpy(block, p + i * bs, (size_t)bs * sizeof *block);
            memmove(p + i * bs, p + j * bs, (size_t)bs * sizeof *block);
            memcpy(p + j * bs, block, (size_t)bs * sizeof *block);
        }
    }
    free(lp);
    free(block);
}

static void make_perm(trainer *T, int64_t epoch)
{
    for (int64_t i = 0; i < T->rows; i++)
        T->perm[i] = i;
    if (T->o->shuffle) {
        rt_rng r;
        rt_rng_seed(&r, shuffle_seed(T->o->seed, epoch));
        for (int64_t i = T->rows - 1; i > 0; i--) {
            int64_t j = (int64_t)rt_rng_below(&r, (uint64_t)i + 1), t = T->perm[i];
            T->perm[i] = T->perm[j];
            T->perm[j] = t;
        }
        if (T->o->group_by_length)
            group_by_length(T, &r);
    }
    T->perm_epoch = epoch;
}

/* The rows idx[0..n) of every data tensor, into out. */
static int slice_rows(const rt_tensor_list *data, const int64_t *idx, int64_t n,
                      rt_tensor_list *out, bc_err *e)
{
    for (int i = 0; i < data->n; i++) {
        const rt_tensor *t = &data->t[i];
        int64_t shape[RT_MAX_RANK];
        memcpy(shape, t->shape, sizeof shape);
        shape[0] = n;
        rt_tensor *s = rt_list_add(out, t->name, t->dtype, t->rank, shape, NULL);
        if (!s)
            return bc_errf(e, "out of memory slicing %s", t->name);
        size_t rb = rt_nbytes(t) / (size_t)t->shape[0]; /* bytes per row */
        if (rb)
            for (int64_t r = 0; r < n; r++)
                memcpy((char *)s->data + (size_t)r * rb,
                       (const char *)t->data + (size_t)idx[r] * rb, rb);
    }
    return 0;
}

/* A 64-bit fingerprint of a list's tensors (names and bits, in any order): of the
 * parameters, stored with the optimizer state so that weights and state written at
 * different steps are not mixed up, and compared across ranks (as is the data's). */
static uint64_t list_hash(const rt_tensor_list *p)
{
    uint64_t sum = 0;
    for (int i = 0; i < p->n; i++) {
        const rt_tensor *t = &p->t[i];
        sum += mix64(bc_hash_bytes(mix64(rt_hash_str(t->name)), t->data, rt_nbytes(t)));
    }
    return sum;
}

/* ---- checkpoints ------------------------------------------------------------------- */

static const char *const scalar_names[] = {
    "step", "epoch",      "epoch_pos", "micro_step",  "seed",       "shuffle",
    "rows", "batch_size", "accum",     "total_steps", "params_hash"};
enum {
    S_STEP,
    S_EPOCH,
    S_EPOCH_POS,
    S_MICRO,
    S_SEED,
    S_SHUFFLE,
    S_ROWS,
    S_BS,
    S_ACCUM,
    S_TOTAL,
    S_HASH,
    S_COUNT
};

static void position(const trainer *T, int64_t step, int64_t v[S_COUNT])
{
    const tr_train_opts *o = T->o;
    v[S_STEP] = step;
    v[S_EPOCH] = step / T->upe;
    v[S_EPOCH_POS] = step % T->upe * o->accum; /* micro-batches of the epoch consumed */
    v[S_MICRO] = v[S_EPOCH] * T->nmicro + v[S_EPOCH_POS];
    v[S_SEED] = (int64_t)o->seed;
    v[S_SHUFFLE] = o->shuffle ? (o->group_by_length ? 2 : 1) : 0;
    v[S_ROWS] = T->rows;
    v[S_BS] = o->batch_size;
    v[S_ACCUM] = o->accum;
    v[S_TOTAL] = T->total;
    v[S_HASH] = 0;
}

static const char *join(const char *dir, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

/* One checkpoint, the weights and the optimizer state with the position, as one atomic
 * unit of the run directory (ckpt.h). */
static int check_ranks_agree(trainer *T, bc_err *e);

static int save_checkpoint(trainer *T, bc_err *e)
{
    if (T->nrank > 1 && check_ranks_agree(T, e))
        return -1;
    if (!T->writer)
        return 0;
    int64_t v[S_COUNT];
    position(T, T->step, v);
    v[S_HASH] = (int64_t)list_hash(T->params);
    /* The moments are saved through views (the list's tensors share their data), so a
     * checkpoint needs no second copy of them. */
    rt_tensor_list sc;
    rt_list_init(&sc);
    int64_t astep = T->adam.step;
    int rc = -1;
    int64_t ranks = T->nrank; /* a note when resumed under another count */
    if (!rt_list_add(&sc, "adam.step", RT_I64, 0, NULL, &astep) ||
        !rt_list_add(&sc, "ranks", RT_I64, 0, NULL, &ranks))
        goto oom;
    for (int i = 0; i < S_COUNT; i++)
        if (!rt_list_add(&sc, scalar_names[i], RT_I64, 0, NULL, &v[i]))
            goto oom;
    int nm = T->adam.m.n;
    rt_tensor_list all = {malloc(((size_t)2 * nm + (size_t)sc.n) * sizeof(rt_tensor)), 0,
                          0};
    if (!all.t)
        goto oom;
    for (int i = 0; i < nm; i++)
        all.t[all.n++] = T->adam.m.t[i];
    for (int i = 0; i < nm; i++)
        all.t[all.n++] = T->adam.v.t[i];
    for (int i = 0; i < sc.n; i++)
        all.t[all.n++] = sc.t[i];
    all.cap = all.n;
    rc = tr_ckpt_save(T->o->out_dir, T->step, T->params, &all, e);
    free(all.t);
    if (!rc && T->o->on_saved) /* committed: what follows it (best.safetensors) */
        rc = T->o->on_saved(T->o->hook_ctx, T->step, e);
    rt_list_free(&sc);
    return rc;
oom:
    rt_list_free(&sc);
    return bc_errf(e, "out of memory writing the optimizer state");
}

static int get_scalar(const rt_tensor_list *l, const char *name, int64_t *v, bc_err *e)
{
    const rt_tensor *t = rt_list_cfind(l, name);
    if (!t || t->dtype != RT_I64 || rt_numel(t) != 1)
        return bc_errf(e, "optimizer state: %s missing, or not an I64 scalar", name);
    *v = *(const int64_t *)t->data;
    return 0;
}

static int restore(trainer *T, const rt_tensor_list *st, bc_err *e)
{
    int64_t got[S_COUNT], want[S_COUNT];
    for (int i = 0; i < S_COUNT; i++)
        if (get_scalar(st, scalar_names[i], &got[i], e))
            return -1;
    int64_t step = got[S_STEP];
    if (step < 0)
        return bc_errf(e, "optimizer state: negative step %lld", (long long)step);
    position(T, step, want);
    /* Exact resumption needs the same rows in the same micro-batches. */
    static const struct {
        int k;
        const char *what;
    } same[] = {{S_ROWS, "rows of data"},
                {S_BS, "batch size"},
                {S_ACCUM, "accumulation"},
                {S_SEED, "seed"},
                {S_SHUFFLE, "shuffle setting (2: grouped by length)"}};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (got[same[i].k] != want[same[i].k])
            return bc_errf(e,
                           "resume: the checkpoint was written with %s %lld, this run has "
                           "%lld (resuming exactly needs the same data, batch size, "
                           "accumulation and seed)",
                           same[i].what, (long long)got[same[i].k],
                           (long long)want[same[i].k]);
    if (got[S_EPOCH] != want[S_EPOCH] || got[S_EPOCH_POS] != want[S_EPOCH_POS] ||
        got[S_MICRO] != want[S_MICRO])
        return bc_errf(e,
                       "optimizer state: step %lld disagrees with its epoch %lld, "
                       "position %lld and micro-step %lld",
                       (long long)step, (long long)got[S_EPOCH],
                       (long long)got[S_EPOCH_POS], (long long)got[S_MICRO]);
    if ((uint64_t)got[S_HASH] != list_hash(T->params))
        return bc_errf(e,
                       "resume: the weights are not the ones this optimizer state was "
                       "saved with (step %lld); were the files written at different "
                       "steps?",
                       (long long)step);
    if (tr_adamw_load(&T->adam, st, e))
        return -1;
    /* written by another number of ranks (absent before data parallelism: one) */
    const rt_tensor *rk = rt_list_cfind(st, "ranks");
    int64_t was =
        rk && rk->dtype == RT_I64 && rt_numel(rk) == 1 ? *(const int64_t *)rk->data : 1;
    if (was != T->nrank && T->o->progress && T->writer)
        fprintf(T->o->progress,
                "bertcc: note: the checkpoint was written by %lld process%s, this run "
                "has %d: it continues validly, but its micro-batches are split otherwise, "
                "so its bits differ from an uninterrupted run's\n",
                (long long)was, was == 1 ? "" : "es", T->nrank);
    if (T->adam.step != step)
        return bc_errf(e, "optimizer state: adam.step %lld differs from step %lld",
                       (long long)T->adam.step, (long long)step);
    T->step = step;
    return 0;
}

/* ---- the loss log ------------------------------------------------------------------ */

/* Opens the log for appending. A fresh run starts it over; a resumed one keeps the
 * header and the lines of steps up to its checkpoint (a run that died after its last
 * checkpoint has logged steps that will now be redone). */
static int open_log(trainer *T, bc_err *e)
{
    char path[4096], tmp[4200];
    join(T->o->out_dir, TR_TRAIN_LOG, path, sizeof path);
    FILE *old = T->step > 0 ? fopen(path, "r") : NULL;
    if (old) {
        FILE *f = bc_atomic_open(path, tmp, sizeof tmp, e);
        if (!f) {
            fclose(old);
            return -1;
        }
        char line[1024];
        int ok = 1;
        fprintf(f, "%s\n", TR_TRAIN_LOG_HEADER);
        while (fgets(line, sizeof line, old)) {
            char *end;
            long long s = strtoll(line, &end, 10);
            /* a torn last line (a kill during its append) has no newline: dropped */
            if (end != line && *end == ',' && s >= 1 && s <= T->step &&
                line[strlen(line) - 1] == '\n')
                ok &= fputs(line, f) >= 0;
        }
        fclose(old);
        if (!ok) {
            bc_atomic_abort(f, tmp);
            return bc_errf(e, "%s: cannot rewrite", path);
        }
        if (bc_atomic_commit(f, tmp, path, e))
            return -1;
        T->log = fopen(path, "a");
    } else {
        T->log = fopen(path, "w");
        if (T->log)
            fprintf(T->log, "%s\n", TR_TRAIN_LOG_HEADER);
    }
    if (!T->log)
        return bc_errf(e, "%s: cannot write", path);
    return 0;
}

static void report(trainer *T, const tr_train_progress *p, int64_t start)
{
    const tr_train_opts *o = T->o;
    if (o->progress && T->writer) {
        char buf[256];
        tr_train_progress_str(p, buf, sizeof buf);
        int64_t every = o->progress_every > 0 ? o->progress_every : (T->total + 49) / 50;
        if (T->tty) {
            fprintf(o->progress, "\r%s\033[K", buf);
            T->printed = 1;
        } else if (p->step % every == 0 || p->step == T->total || p->step == start + 1) {
            fprintf(o->progress, "%s\n", buf);
        }
        fflush(o->progress);
    }
    if (T->log) {
        fprintf(T->log, "%lld,%.6g,%.9g,%.9g,%.9g,%.1f\n", (long long)p->step, p->epoch,
                p->loss, p->lr, p->grad_norm, p->tokens_per_s);
        fflush(T->log);
    }
    if (o->on_step)
        o->on_step(o->hook_ctx, p);
}

/* ---- one micro-batch ---------------------------------------------------------------- */

/* The tokens of a micro-batch of n rows that are not padding: the ones of its integer
 * attention_mask when it has one, else every element of o->tokens_from, else n. */
static int64_t real_tokens(const tr_train_opts *o, const rt_tensor_list *batch, int64_t n)
{
    const rt_tensor *m = rt_list_cfind(batch, "attention_mask");
    if (m && (m->dtype == RT_I64 || m->dtype == RT_I32)) {
        int64_t cnt = rt_numel(m), ones = 0;
        for (int64_t k = 0; k < cnt; k++)
            ones += m->dtype == RT_I64 ? ((const int64_t *)m->data)[k] != 0
                                       : ((const int32_t *)m->data)[k] != 0;
        return ones;
    }
    const rt_tensor *tk = o->tokens_from ? rt_list_cfind(batch, o->tokens_from) : NULL;
    return tk ? rt_numel(tk) : n;
}

/* Readies T->out for a micro-batch: views "grad.<param>" of the memory its gradients
 * go to (acc for the first micro-batch of an update, else cur), and nothing else but
 * gradients: the last step's loss is dropped, so a step that gives none is caught. A
 * view the last step replaced (by a copy) is put back. */
static int prime_out(trainer *T, int first, bc_err *e)
{
    rt_tensor_list *out = &T->out;
    const rt_tensor_list *to = first ? &T->acc : &T->cur;
    for (int i = out->n - 1; i >= 0; i--)
        if (strncmp(out->t[i].name, "grad.", 5))
            rt_list_remove(out, out->t[i].name);
    for (int i = 0; i < to->n; i++) {
        const rt_tensor *d = &to->t[i];
        rt_tensor *t = rt_list_find(out, d->name);
        if (t && t->view && !t->arena && t->rank == d->rank &&
            !memcmp(t->shape, d->shape, (size_t)d->rank * sizeof *d->shape))
            t->data = d->data;
        else if (!rt_list_add_view(out, d->name, RT_F32, d->rank, d->shape, d->data))
            return bc_errf(e, "out of memory for the gradients");
    }
    return 0;
}

/* What run_micro does with a micro-batch's gradients: they replace T->acc (computed
 * there in place, they are only checked), are added to it, or (data parallel) are only
 * checked and left in T->cur for the fold. */
enum { ACC_FIRST, ACC_ADD, ACC_NONE };

/* Runs micro-batch mi of the current epoch, the n rows from position r0 of its order,
 * with the dropout seed of micro-batch number micro of the run. */
static int run_micro(trainer *T, int64_t epoch, int64_t mi, int64_t r0, int64_t n,
                     int64_t micro, int mode, double *loss, int64_t *tokens, bc_err *e)
{
    const tr_train_opts *o = T->o;
    int first = mode == ACC_FIRST;
    long long stepno = (long long)T->step + 1;
    rt_tensor_list batch, *out = &T->out;
    rt_list_init(&batch);
    int rc = -1;
    if (slice_rows(T->data, T->perm + r0, n, &batch, e) || prime_out(T, first, e))
        goto done;
    if (T->fn(T->ctx, T->params, &batch, tr_train_dropout_seed(o->seed, micro), out, e)) {
        bc_err_prefix(e, "step %lld", stepno);
        goto done;
    }
    const rt_tensor *l = rt_list_cfind(out, "loss");
    if (!l || l->dtype != RT_F32 || rt_numel(l) != 1) {
        bc_errf(e, "step %lld: the step function gave no F32 scalar \"loss\"", stepno);
        goto done;
    }
    float lv = *(const float *)l->data;
    if (!isfinite(lv)) {
        bc_errf(e, "step %lld (epoch %lld, micro-batch %lld): non-finite loss (%g)", stepno,
                (long long)epoch + 1, (long long)mi + 1, (double)lv);
        goto done;
    }
    *loss = lv;
    for (int i = 0; i < T->acc.n; i++) {
        rt_tensor *a = &T->acc.t[i];
        const rt_tensor *g = rt_list_cfind(out, T->gname[i]);
        if (!g) {
            bc_errf(e, "step %lld: the step function gave no %s", stepno, T->gname[i]);
            goto done;
        }
        if (g->dtype != RT_F32 || g->rank != a->rank ||
            memcmp(g->shape, a->shape, (size_t)a->rank * sizeof *a->shape)) {
            char s1[128], s2[128];
            bc_errf(e, "step %lld: %s is %s %s, expected F32 %s", stepno, T->gname[i],
                    rt_dtype_name(g->dtype), rt_shape_str(g->rank, g->shape, s1, sizeof s1),
                    rt_shape_str(a->rank, a->shape, s2, sizeof s2));
            goto done;
        }
        float *acc = a->data;      /* [numel] */
        const float *gd = g->data; /* [numel]; acc itself when computed in place */
        int64_t cnt = rt_numel(a), bad = cnt;
        if (mode == ACC_NONE) { /* checked, and kept in cur for the fold */
#pragma omp parallel for schedule(static) reduction(min : bad) if (cnt > 65536)
            for (int64_t k = 0; k < cnt; k++)
                if (!isfinite(gd[k]) && k < bad)
                    bad = k;
            if (gd != T->cur.t[i].data) /* computed elsewhere (a copy in out) */
                memcpy(T->cur.t[i].data, gd, (size_t)cnt * sizeof *gd);
        } else {
#pragma omp parallel for schedule(static) reduction(min : bad) if (cnt > 65536)
            for (int64_t k = 0; k < cnt; k++) {
                float s = first ? gd[k] : acc[k] + gd[k];
                if (!isfinite(s) && k < bad)
                    bad = k;
                acc[k] = s;
            }
        }
        if (bad < cnt) {
            bc_errf(e,
                    "step %lld (epoch %lld, micro-batch %lld): non-finite gradient %s "
                    "(element %lld is %g)",
                    stepno, (long long)epoch + 1, (long long)mi + 1, T->gname[i],
                    (long long)bad, (double)gd[bad]);
            goto done;
        }
    }
    *tokens += real_tokens(o, &batch, n);
    rc = 0;
done:
    rt_list_free(&batch);
    return rc;
}

/* ---- data parallel (dist.h) --------------------------------------------------------- */

/* Every rank's hash of its weights equals rank 0's, or an error: a rank that went its
 * own way (a fault, a different build or data) is found here rather than trained on. */
static int check_ranks_agree(trainer *T, bc_err *e)
{
    uint64_t mine = list_hash(T->params);
    uint64_t *all = malloc((size_t)T->nrank * sizeof *all);
    if (!all)
        return bc_errf(e, "out of memory");
    int rc = tr_dist_allgather(&mine, all, sizeof mine, e);
    for (int r = 1; !rc && r < T->nrank; r++)
        if (all[r] != all[0])
            rc = bc_errf(e,
                         "after step %lld the weights of rank %d differ from rank 0's "
                         "(hash %016llx, rank 0 %016llx): the ranks diverged (different "
                         "data, options or builds?)",
                         (long long)T->step, r, (unsigned long long)all[r],
                         (unsigned long long)all[0]);
    free(all);
    return rc;
}

/* The shard of micro-batch j that rank r takes: rows [*a, *b) of the epoch's order
 * (empty when *a >= *b). */
static void shard_rows(const trainer *T, int64_t j, int r, int64_t *a, int64_t *b)
{
    int64_t G = T->o->batch_size, base = j * G;
    *a = base + G * r / T->nrank;
    *b = base + G * (r + 1) / T->nrank;
    if (*b > T->rows)
        *b = T->rows;
}

/* Every rank has the same data (rows and bits), batch, accumulation, seed, plan of
 * updates and gradient size as rank 0, or an error naming what differs: the collectives
 * of ranks that disagree on these would not match (a hang or a wrong fold), and the
 * weights hash cannot see different data. */
static int same_run_everywhere(const trainer *T, bc_err *e)
{
    const tr_train_opts *o = T->o;
    uint64_t data = list_hash(T->data);
    enum { K = 8 };
    static const char *const what[K] = {
        "rows of data", "data (its bits)", "batch size",        "accumulation",
        "seed",         "updates planned", "gradient elements", "shuffle setting"};
    uint64_t mine[K] = {(uint64_t)T->rows,
                        data,
                        (uint64_t)o->batch_size,
                        (uint64_t)o->accum,
                        o->seed,
                        (uint64_t)T->total,
                        (uint64_t)T->flat_n,
                        (uint64_t)(o->shuffle * 2 + o->group_by_length)};
    uint64_t *all = malloc((size_t)T->nrank * sizeof mine);
    if (!all)
        return bc_errf(e, "out of memory");
    int rc = tr_dist_allgather(mine, all, sizeof mine, e);
    for (int r = 1; !rc && r < T->nrank; r++)
        for (int k = 0; !rc && k < K; k++)
            if (all[r * K + k] != all[k])
                rc = bc_errf(
                    e,
                    "ranks %d and 0 disagree on the %s (%llu and %llu): every rank must "
                    "read the same data with the same options",
                    r, what[k], (unsigned long long)all[r * K + k],
                    (unsigned long long)all[k]);
    free(all);
    return rc;
}

static int setup_dist(trainer *T, bc_err *e)
{
    const tr_train_opts *o = T->o;
    int N = T->nrank;
    if (o->batch_size < N)
        return bc_errf(e,
                       "--batch-size %lld is fewer rows than the %d ranks (under mpirun it "
                       "counts a micro-batch's rows across every rank)",
                       (long long)o->batch_size, N);
    const rt_tensor *a0 = NULL, *c0 = NULL;
    for (int i = 0; i < T->acc.n && !a0; i++)
        if (T->acc.t[i].arena) {
            a0 = &T->acc.t[i];
            c0 = &T->cur.t[i];
        }
    if (!a0 || !c0->arena || a0->arena->bytes != c0->arena->bytes)
        return bc_errf(e, "data parallel training needs trainable parameters");
    /* The arenas as flat vectors: their alignment padding zeroed, so that the fold
     * reads nothing uninitialized (padding sums to zero). */
    memset(a0->arena->data, 0, a0->arena->bytes);
    memset(c0->arena->data, 0, c0->arena->bytes);
    T->flat_acc = a0->arena->data;
    T->flat_cur = c0->arena->data;
    T->flat_n = (int64_t)(a0->arena->bytes / sizeof(float));
    int64_t a, b, last = 0;
    for (int r = 0; r < N; r++) {
        shard_rows(T, T->nmicro - 1, r, &a, &b);
        last += a < b;
    }
    T->shards = (T->nmicro - 1) * N + last;
    T->present = calloc((size_t)N, 1);
    T->vals = calloc(2 * (size_t)o->accum, sizeof *T->vals);
    T->allvals = calloc(2 * (size_t)o->accum * (size_t)N, sizeof *T->allvals);
    if (!T->present || !T->vals || !T->allvals)
        return bc_errf(e, "out of memory");
    if (same_run_everywhere(T, e))
        return -1;
    return tr_fold_init(&T->fold, T->flat_acc, T->flat_n,
                        o->dist_bucket_bytes ? o->dist_bucket_bytes : (size_t)25 << 20, e);
}

/* The non-finite sum the fold found, by parameter. */
static int nonfinite_sum(const trainer *T, int64_t epoch, int64_t j, bc_err *e)
{
    int64_t at = T->fold.bad;
    for (int i = 0; i < T->acc.n; i++) {
        int64_t off = (const float *)T->acc.t[i].data - T->flat_acc;
        if (at >= off && at < off + rt_numel(&T->acc.t[i]))
            return bc_errf(e,
                           "step %lld (epoch %lld, micro-batch %lld): non-finite gradient "
                           "%s (element %lld of the sum over the ranks is %g)",
                           (long long)T->step + 1, (long long)epoch + 1, (long long)j + 1,
                           T->gname[i], (long long)(at - off), (double)T->flat_acc[at]);
    }
    return bc_errf(e, "step %lld: non-finite gradient sum", (long long)T->step + 1);
}

/* One update's micro-batches [m0, m1) over the ranks: this rank's shards, folded into
 * T->acc in (micro-batch, rank) order, which is one process's accumulation order. Fills
 * the update's loss sum, its tokens and *k, the shards that had rows. */
static int dist_update(trainer *T, int64_t epoch, int64_t m0, int64_t m1, double *loss_sum,
                       int64_t *tokens, int64_t *k, bc_err *e)
{
    int N = T->nrank, r = T->rank;
    int64_t nm = m1 - m0, a, b;
    tr_fold_begin(&T->fold);
    for (int64_t j = m0; j < m1; j++) {
        double l = 0;
        int64_t tok = 0;
        for (int s = 0; s < N; s++) {
            shard_rows(T, j, s, &a, &b);
            T->present[s] = a < b;
        }
        shard_rows(T, j, r, &a, &b);
        if (a < b && run_micro(T, epoch, j, a, b - a, epoch * T->shards + j * N + r,
                               ACC_NONE, &l, &tok, e))
            return -1;
        T->vals[2 * (j - m0)] = l;
        T->vals[2 * (j - m0) + 1] = (double)tok;
        if (tr_fold_add(&T->fold, T->flat_cur, T->present, e))
            return -1;
        if (T->fold.bad >= 0)
            return nonfinite_sum(T, epoch, j, e);
    }
    if (tr_fold_finish(&T->fold, e) ||
        tr_dist_allgather(T->vals, T->allvals, 2 * (size_t)nm * sizeof *T->vals, e))
        return -1;
    *loss_sum = 0;
    *tokens = 0;
    *k = 0;
    for (int64_t j = m0; j < m1; j++)
        for (int s = 0; s < N; s++) {
            shard_rows(T, j, s, &a, &b);
            if (a >= b)
                continue;
            const double *v = T->allvals + (size_t)s * 2 * (size_t)nm + 2 * (j - m0);
            *loss_sum += v[0];
            *tokens += (int64_t)v[1];
            ++*k;
        }
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------ */

static int setup(trainer *T, bc_err *e)
{
    const tr_train_opts *o = T->o;
    if (o->batch_size < 1 || o->accum < 1)
        return bc_errf(e, "batch size and accumulation must be at least 1");
    if (o->steps < 0 || (o->steps == 0 && o->epochs < 1))
        return bc_errf(e, "nothing to train: give a positive number of epochs or steps");
    if (!(o->adam.lr >= 0) || !(o->adam.eps > 0) ||
        !(o->adam.beta1 >= 0 && o->adam.beta1 < 1) ||
        !(o->adam.beta2 >= 0 && o->adam.beta2 < 1) || !(o->adam.weight_decay >= 0) ||
        !(o->adam.clip >= 0) || !(o->adam.warmup >= 0 && o->adam.warmup <= 1))
        return bc_errf(e, "optimizer settings out of range (lr >= 0, eps > 0, betas in "
                          "[0, 1), weight decay >= 0, clip >= 0, warm-up in [0, 1])");
    if (check_data(T->data, &T->rows, e))
        return -1;
    T->nmicro = tr_train_micro_per_epoch(o, T->rows);
    T->upe = tr_train_updates_per_epoch(o, T->rows);
    if (!(T->total = tr_train_total_steps(o, T->rows)))
        return bc_errf(e, "too many epochs");
    if (rt_list_pack(T->params))
        return bc_errf(e, "out of memory for the parameters");
    if (tr_adamw_init(&T->adam, &o->adam, T->params, o->frozen, o->nfrozen, e))
        return -1;
    int n = T->adam.m.n;
    T->gname = calloc((size_t)n + 1, sizeof *T->gname);
    T->perm = malloc((size_t)T->rows * sizeof *T->perm);
    if (!T->gname || !T->perm)
        return bc_errf(e, "out of memory");
    for (int i = 0; i < n; i++) {
        const rt_tensor *m = &T->adam.m.t[i];
        size_t len = strlen(T->adam.names[i]) + 6;
        if (!(T->gname[i] = malloc(len)))
            return bc_errf(e, "out of memory");
        snprintf(T->gname[i], len, "grad.%s", T->adam.names[i]);
        if (!rt_list_add(&T->acc, T->gname[i], RT_F32, m->rank, m->shape, NULL) ||
            ((o->accum > 1 || T->nrank > 1) &&
             !rt_list_add(&T->cur, T->gname[i], RT_F32, m->rank, m->shape, NULL)))
            return bc_errf(e, "out of memory for the gradients");
    }
    if (rt_list_pack(&T->acc) || rt_list_pack(&T->cur))
        return bc_errf(e, "out of memory for the gradients");
    T->perm_epoch = -1;
    T->tty = o->progress && isatty(fileno(o->progress));
    return T->nrank > 1 ? setup_dist(T, e) : 0;
}

int tr_train(const tr_train_opts *o, tr_step_fn fn, void *ctx, rt_tensor_list *params,
             const rt_tensor_list *data, const rt_tensor_list *resume, tr_train_result *r,
             bc_err *e)
{
    trainer T;
    memset(&T, 0, sizeof T);
    T.o = o;
    T.fn = fn;
    T.ctx = ctx;
    T.params = params;
    T.data = T.data0 = data;
    rt_list_init(&T.acc);
    rt_list_init(&T.cur);
    rt_list_init(&T.out);
    rt_list_init(&T.chunk);
    tr_train_result res = {0, 0, 0, 0, NAN, 0, 0};
    int rc = -1;
    double t_start = bc_now(), c_start = tr_dist_comm_seconds();
    T.rank = tr_dist_rank();
    T.nrank = tr_dist_size();
    T.writer = T.rank == 0;
    if (setup(&T, e) || (resume && restore(&T, resume, e)) ||
        (T.nrank > 1 && check_ranks_agree(&T, e)))
        goto done;
    res.start_step = T.step;
    res.total = T.total;
    if (o->out_dir && T.writer && T.step < T.total && open_log(&T, e))
        goto done;
    int64_t saved = resume ? T.step : -1;
    int64_t check_every = o->dist_check_every > 0 ? o->dist_check_every : 100;
    t_start = bc_now();
    c_start = tr_dist_comm_seconds();
    while (T.step < T.total) {
        int64_t halt = o->stop && *o->stop;
        if (T.nrank > 1 && tr_dist_max_i64(&halt, 1, e)) /* every rank stops here */
            goto done;
        if (halt) {
            if (o->stop)
                *o->stop = 1;
            res.stopped = 1;
            break;
        }
        int64_t epoch = T.step / T.upe, g = T.step % T.upe;
        if (T.perm_epoch != epoch) {
            if (epoch_data(&T, epoch, e))
                goto done;
            make_perm(&T, epoch);
        }
        int64_t m0 = g * o->accum, m1 = m0 + o->accum < T.nmicro ? m0 + o->accum : T.nmicro;
        double t0 = bc_now(), c0 = tr_dist_comm_seconds(), loss_sum = 0;
        int64_t tokens = 0, k = m1 - m0;
        if (T.nrank > 1 && dist_update(&T, epoch, m0, m1, &loss_sum, &tokens, &k, e))
            goto done;
        for (int64_t mi = m0; T.nrank == 1 && mi < m1 && !res.stopped; mi++) {
            double l;
            int64_t r0 = mi * o->batch_size;
            int64_t n = T.rows - r0 < o->batch_size ? T.rows - r0 : o->batch_size;
            if (mi > m0 && o->stop && *o->stop)
                res.stopped = 1; /* the partial update is dropped; resume redoes it */
            else if (run_micro(&T, epoch, mi, r0, n, epoch * T.nmicro + mi,
                               mi == m0 ? ACC_FIRST : ACC_ADD, &l, &tokens, e))
                goto done;
            else
                loss_sum += l;
        }
        if (res.stopped)
            break;
        if (k > 1)
            for (int i = 0; i < T.acc.n; i++) {
                float *a = T.acc.t[i].data, inv = (float)k; /* [numel] */
                int64_t cnt = rt_numel(&T.acc.t[i]);
#pragma omp parallel for schedule(static) if (cnt > 65536)
                for (int64_t j = 0; j < cnt; j++)
                    a[j] /= inv;
            }
        tr_train_progress p;
        p.grad_norm = tr_clip_grad_norm(&T.acc, o->adam.clip);
        p.lr = tr_sched_lr(&o->adam, T.step, T.total);
        if (tr_adamw_step(&T.adam, params, &T.acc, p.lr, e)) {
            bc_err_prefix(e, "step %lld", (long long)T.step + 1);
            goto done;
        }
        T.step++;
        double t1 = bc_now();
        p.step = T.step;
        p.total = T.total;
        p.epoch = (double)T.step / (double)T.upe;
        p.loss = loss_sum / (double)k;
        p.tokens_per_s = t1 > t0 ? (double)tokens / (t1 - t0) : 0;
        p.eta_s =
            (t1 - t_start) / (double)(T.step - res.start_step) * (double)(T.total - T.step);
        p.ranks = T.nrank;
        p.step_s = t1 - t0;
        p.comm_s = tr_dist_comm_seconds() - c0;
        res.last_loss = p.loss;
        report(&T, &p, res.start_step);
        int64_t asked = o->save_request && *o->save_request;
        if (T.nrank > 1 && tr_dist_max_i64(&asked, 1, e)) /* the same choice everywhere */
            goto done;
        if (o->out_dir && T.step < T.total &&
            ((o->save_every > 0 && T.step % o->save_every == 0) || asked)) {
            if (save_checkpoint(&T, e))
                goto done;
            saved = T.step;
            if (o->save_request)
                *o->save_request = 0;
        } else if (T.nrank > 1 && T.step % check_every == 0 && check_ranks_agree(&T, e)) {
            goto done;
        }
    }
    if (o->out_dir && saved != T.step && save_checkpoint(&T, e))
        goto done;
    if (!o->out_dir && T.nrank > 1 && check_ranks_agree(&T, e))
        goto done;
    rc = 0;
done:
    res.train_s = bc_now() - t_start;
    res.comm_s = tr_dist_comm_seconds() - c_start;
    if (T.printed)
        fputc('\n', o->progress);
    res.step = T.step;
    if (r)
        *r = res;
    trainer_free(&T);
    return rc;
}
