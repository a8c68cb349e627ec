/* test_train.c: train/train.c — the training engine, driven by a hand-written step
 * function (linear regression with analytic gradients and a seeded row dropout), so
 * that it is tested apart from autodiff: over-fitting, gradient accumulation, frozen
 * parameters, non-finite values, the shuffle, checkpoints and exact resumption. The
 * last tests train the real BERT graph (autodiff + interpreter) and `bertcc train`. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "../runtime/params.h"
#include "../runtime/rng.h"
#include "../runtime/safetensors.h"
#include "../train/batch.h"
#include "../train/ckpt.h"
#include "../train/train.h"
#include "util.h"

/* ---- the hand-written model ---------------------------------------------------------
 * pred[r] = x[r] . (lin.weight + enc.weight) + lin.bias, loss = mean_r keep[r] *
 * (pred[r] - y[r])^2, where keep[r] is 1, or with dropout 0 or 1/0.75 drawn from the
 * micro-batch's dropout seed. */

#define D 3
#define MAXREC 4096

typedef struct lin_model {
    int dropout;
    int64_t calls;
    int64_t nan_loss_at, inf_grad_at, fail_at; /* 1-based call numbers, 0: never */
    volatile sig_atomic_t *stop;
    int64_t stop_at;     /* sets *stop during this call */
    int64_t ids[MAXREC]; /* the "id" of every row seen, in order */
    int nids;
    uint64_t seeds[MAXREC]; /* the dropout seed of every call */
    int64_t rows[MAXREC];   /* the rows of every call */
} lin_model;

static const float *tensor_f32(const rt_tensor_list *l, const char *name, int64_t n)
{
    const rt_tensor *t = rt_list_cfind(l, name);
    cr_assert(t && t->dtype == RT_F32 && rt_numel(t) == n, "%s missing or mis-shaped",
              name);
    return t->data;
}

static int lin_step(void *ctx, const rt_tensor_list *params, const rt_tensor_list *batch,
                    uint64_t seed, rt_tensor_list *out, bc_err *e)
{
    lin_model *M = ctx;
    int64_t call = ++M->calls;
    if (M->stop && call == M->stop_at)
        *M->stop = 1;
    if (call == M->fail_at)
        return bc_errf(e, "simulated failure");
    const rt_tensor *xt = rt_list_cfind(batch, "x"), *idt = rt_list_cfind(batch, "id");
    cr_assert(xt && idt && xt->rank == 2 && xt->shape[1] == D);
    int64_t n = xt->shape[0];
    const float *x = xt->data, *y = tensor_f32(batch, "y", n); /* [n, D], [n] */
    const float *w = tensor_f32(params, "lin.weight", D),
                *f = tensor_f32(params, "enc.weight", D);
    const float *b = tensor_f32(params, "lin.bias", 1);
    rt_rng r;
    rt_rng_seed(&r, seed);
    double loss = 0, dw[D] = {0}, db = 0;
    for (int64_t i = 0; i < n; i++) {
        double keep = M->dropout ? (rt_rng_uniform(&r) < 0.25 ? 0.0 : 1 / 0.75) : 1.0;
        double pred = b[0];
        for (int k = 0; k < D; k++)
            pred += (double)x[i * D + k] * ((double)w[k] + f[k]);
        double res = pred - y[i], dres = 2 * keep * res / (double)n;
        loss += keep * res * res / (double)n;
        for (int k = 0; k < D; k++)
            dw[k] += dres * x[i * D + k];
        db += dres;
        if (M->nids < MAXREC)
            M->ids[M->nids++] = ((const int64_t *)idt->data)[i];
    }
    if (call <= MAXREC) {
        M->seeds[call - 1] = seed;
        M->rows[call - 1] = n;
    }
    float fl = call == M->nan_loss_at ? NAN : (float)loss;
    float gw[D], gb = call == M->inf_grad_at ? INFINITY : (float)db;
    for (int k = 0; k < D; k++)
        gw[k] = (float)dw[k];
    int64_t shape[1] = {D}, one[1] = {1};
    cr_assert(rt_list_add(out, "loss", RT_F32, 0, NULL, &fl));
    cr_assert(rt_list_add(out, "grad.lin.weight", RT_F32, 1, shape, gw));
    cr_assert(rt_list_add(out, "grad.enc.weight", RT_F32, 1, shape, gw));
    cr_assert(rt_list_add(out, "grad.lin.bias", RT_F32, 1, one, &gb));
    cr_assert(rt_list_add(out, "prediction_unused", RT_F32, 1, one, &gb));
    return 0;
}

/* N rows: x uniform in [-1, 1), y = x . [1.5, -2, 0.5] + 0.3 exactly realizable, id = row,
 * input_ids [N, 4] (for the token count). */
static void make_data(rt_tensor_list *data, int64_t N)
{
    rt_list_init(data);
    int64_t sx[2] = {N, D}, sn[1] = {N}, si[2] = {N, 4};
    rt_tensor *x = rt_list_add(data, "x", RT_F32, 2, sx, NULL);
    rt_tensor *y = rt_list_add(data, "y", RT_F32, 1, sn, NULL);
    rt_tensor *id = rt_list_add(data, "id", RT_I64, 1, sn, NULL);
    cr_assert(x && y && id && rt_list_add(data, "input_ids", RT_I64, 2, si, NULL));
    rt_rng r;
    rt_rng_seed(&r, 99);
    static const float ws[D] = {1.5f, -2.0f, 0.5f};
    float *xd = x->data, *yd = y->data;
    for (int64_t i = 0; i < N; i++) {
        double s = 0.3;
        for (int k = 0; k < D; k++) {
            xd[i * D + k] = (float)(2 * rt_rng_uniform(&r) - 1);
            s += xd[i * D + k] * ws[k];
        }
        yd[i] = (float)s;
        ((int64_t *)id->data)[i] = i;
    }
}

static void make_params(rt_tensor_list *p)
{
    rt_list_init(p);
    int64_t shape[1] = {D}, one[1] = {1};
    cr_assert(rt_list_add(p, "lin.weight", RT_F32, 1, shape, NULL));
    cr_assert(rt_list_add(p, "enc.weight", RT_F32, 1, shape, (float[]){0.1f, 0.2f, -0.1f}));
    cr_assert(rt_list_add(p, "lin.bias", RT_F32, 1, one, NULL));
}

/* What the on_step hook saw. */
typedef struct rec {
    int n;
    double loss[MAXREC], lr[MAXREC], norm[MAXREC];
    int64_t step[MAXREC];
    volatile sig_atomic_t *stop;
    int64_t stop_after; /* sets *stop after this update */
} rec;

static void on_step(void *ctx, const tr_train_progress *p)
{
    rec *R = ctx;
    if (R->n < MAXREC) {
        R->loss[R->n] = p->loss;
        R->lr[R->n] = p->lr;
        R->norm[R->n] = p->grad_norm;
        R->step[R->n++] = p->step;
    }
    if (R->stop && p->step == R->stop_after)
        *R->stop = 1;
}

static tr_train_opts base_opts(rec *R)
{
    tr_train_opts o;
    tr_train_defaults(&o);
    o.adam.lr = 0.05;
    o.batch_size = 4;
    o.seed = 7;
    o.on_step = on_step;
    o.hook_ctx = R;
    return o;
}

/* The run's current checkpoint (train/ckpt.h), as `train --resume` finds it. */
static void load_run(const char *dir, rt_tensor_list *params, rt_tensor_list *state)
{
    bc_err e;
    char w[4200], o[4200];
    rt_list_init(params);
    rt_list_init(state);
    cr_assert_eq(tr_ckpt_find(dir, w, o, sizeof w, NULL, NULL, &e), 1, "%s", e.msg);
    cr_assert_eq(rt_st_load(w, params, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_st_load(o, state, &e), 0, "%s", e.msg);
}

static int64_t scalar(const rt_tensor_list *l, const char *name)
{
    const rt_tensor *t = rt_list_cfind(l, name);
    cr_assert(t && t->dtype == RT_I64 && t->rank == 0, "%s missing or not an I64 scalar",
              name);
    return *(const int64_t *)t->data;
}

static void assert_same_bits(const rt_tensor_list *a, const rt_tensor_list *b)
{
    cr_assert_eq(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const rt_tensor *t = rt_list_cfind(b, a->t[i].name);
        cr_assert(t, "%s missing", a->t[i].name);
        cr_assert_eq(rt_nbytes(t), rt_nbytes(&a->t[i]));
        cr_assert_eq(memcmp(t->data, a->t[i].data, rt_nbytes(t)), 0, "%s differs", t->name);
    }
}

/* ---- learning ---------------------------------------------------------------------- */

Test(train, overfits_and_writes_loadable_checkpoints)
{
    static rec R;
    static lin_model M;
    rt_tensor_list data, params, wp, st;
    make_data(&data, 16);
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.adam.lr = 0.1;
    o.steps = 300;
    const char *dir = tu_tmpdir();
    o.out_dir = dir;
    tr_train_result res;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, &res, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(res.step, 300);
    cr_assert_eq(res.total, 300);
    cr_assert_eq(R.n, 300);
    cr_assert(R.loss[0] > 0.1, "start loss %g", R.loss[0]);
    cr_assert(R.loss[299] < 0.01 * R.loss[0], "loss %g -> %g", R.loss[0], R.loss[299]);
    cr_assert_eq(M.calls, 300);

    /* The run directory: weights with every parameter, the optimizer state and position,
     * one log line per update. */
    load_run(dir, &wp, &st);
    assert_same_bits(&params, &wp);
    cr_assert(rt_list_cfind(&st, "adam.m.lin.weight") &&
              rt_list_cfind(&st, "adam.v.lin.bias"));
    cr_assert_eq(scalar(&st, "step"), 300);
    cr_assert_eq(scalar(&st, "adam.step"), 300);
    cr_assert_eq(scalar(&st, "epoch"), 75); /* 4 updates per epoch */
    cr_assert_eq(scalar(&st, "epoch_pos"), 0);
    cr_assert_eq(scalar(&st, "seed"), 7);
    char *log = tu_read_file(tu_path(dir, TR_TRAIN_LOG), NULL);
    cr_assert(log);
    cr_assert(
        !strncmp(log, TR_TRAIN_LOG_HEADER "\n1,0.25,", strlen(TR_TRAIN_LOG_HEADER) + 8),
        "log starts: %.80s", log);
    int lines = 0;
    for (char *c = log; *c; c++)
        lines += *c == '\n';
    cr_assert_eq(lines, 301);
    cr_assert(strstr(log, "\n300,75,"));
    free(log);
    rt_list_free(&data);
    rt_list_free(&params);
    rt_list_free(&wp);
    rt_list_free(&st);
}

Test(train, schedule_reaches_the_optimizer)
{
    /* 10 updates, 10% warm-up: lr 0 for the first (the parameters do not move, so the
     * second update, on the same full batch, sees the same loss), then 0.05 decaying
     * linearly to 0.05 / 9 at the last. */
    static rec R;
    static lin_model M;
    rt_tensor_list data, params;
    make_data(&data, 8);
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.steps = 10;
    o.batch_size = 8;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(R.lr[0], 0.0);
    cr_assert(fabs(R.lr[1] - 0.05) < 1e-15);
    cr_assert(fabs(R.lr[5] - 0.05 * 5 / 9) < 1e-15);
    cr_assert(fabs(R.lr[9] - 0.05 / 9) < 1e-15);
    cr_assert(fabs(R.loss[1] - R.loss[0]) <= 1e-6 * R.loss[0], "%g %g", R.loss[0],
              R.loss[1]);
    cr_assert(R.loss[2] < R.loss[1]);
    rt_list_free(&data);
    rt_list_free(&params);
}

Test(train, accumulation_of_two_halves_equals_the_whole_batch)
{
    /* 10 rows: batch 4 gives micro-batches 4, 4, 2; batch 2 with accum 2 gives updates
     * of (2, 2), (2, 2), (2) over the same shuffled rows. A mean loss makes the averaged
     * gradients equal. */
    static rec R1, R2;
    static lin_model M1, M2;
    rt_tensor_list data, p1, p2;
    make_data(&data, 10);
    make_params(&p1);
    make_params(&p2);
    tr_train_opts o = base_opts(&R1);
    o.epochs = 4;
    bc_err e;
    tr_train_result r1, r2;
    cr_assert_eq(tr_train(&o, lin_step, &M1, &p1, &data, NULL, &r1, &e), 0, "%s", e.msg);
    o.batch_size = 2;
    o.accum = 2;
    o.hook_ctx = &R2;
    cr_assert_eq(tr_train(&o, lin_step, &M2, &p2, &data, NULL, &r2, &e), 0, "%s", e.msg);
    cr_assert_eq(r1.total, 12);
    cr_assert_eq(r2.total, 12);
    cr_assert_eq(M1.calls, 12);
    cr_assert_eq(M2.calls, 20);
    for (int i = 0; i < 12; i++) {
        cr_assert(fabs(R1.loss[i] - R2.loss[i]) <= 1e-5 * fabs(R1.loss[i]),
                  "update %d: loss %.9g vs %.9g", i + 1, R1.loss[i], R2.loss[i]);
        cr_assert(fabs(R1.norm[i] - R2.norm[i]) <= 1e-5 * R1.norm[i]);
    }
    for (int i = 0; i < p1.n; i++) {
        const float *a = p1.t[i].data,
                    *b = tensor_f32(&p2, p1.t[i].name, rt_numel(&p1.t[i]));
        for (int64_t k = 0; k < rt_numel(&p1.t[i]); k++)
            cr_assert(fabs(a[k] - b[k]) <= 1e-5, "%s[%lld]: %.9g vs %.9g", p1.t[i].name,
                      (long long)k, a[k], b[k]);
    }
    rt_list_free(&data);
    rt_list_free(&p1);
    rt_list_free(&p2);
}

/* ---- memory: arenas and gradients computed in place ------------------------------ */

static const char *const gnames[3] = {"grad.lin.weight", "grad.enc.weight",
                                      "grad.lin.bias"};

/* lin_step's model, behaving as the executor does: it writes every gradient into the
 * tensor of its name that out already holds, and records what it found there. */
typedef struct inplace_model {
    lin_model m;
    int64_t calls;
    void *at[MAXREC][3]; /* the data of each gradient view on entry */
    int ok[MAXREC];      /* on entry: three F32 views, of their shapes, and no loss */
} inplace_model;

static int inplace_step(void *ctx, const rt_tensor_list *params,
                        const rt_tensor_list *batch, uint64_t seed, rt_tensor_list *out,
                        bc_err *e)
{
    inplace_model *I = ctx;
    int64_t k = I->calls++;
    int ok = !rt_list_cfind(out, "loss");
    for (int i = 0; i < 3; i++) {
        const rt_tensor *t = rt_list_cfind(out, gnames[i]);
        ok &= t && t->view && t->dtype == RT_F32 && rt_numel(t) == (i == 2 ? 1 : D);
        if (k < MAXREC)
            I->at[k][i] = t ? t->data : NULL;
    }
    if (k < MAXREC)
        I->ok[k] = ok;
    rt_tensor_list mine;
    rt_list_init(&mine);
    int rc = lin_step(&I->m, params, batch, seed, &mine, e);
    for (int i = 0; rc == 0 && i < 3; i++) {
        const rt_tensor *g = rt_list_cfind(&mine, gnames[i]);
        rt_tensor *t = rt_list_find(out, gnames[i]);
        cr_assert(g && t && rt_nbytes(t) == rt_nbytes(g));
        memcpy(t->data, g->data, rt_nbytes(g));
    }
    const rt_tensor *l = rt_list_cfind(&mine, "loss");
    cr_assert(rc || (l && rt_list_add(out, "loss", RT_F32, 0, NULL, l->data)));
    rt_list_free(&mine);
    return rc;
}

Test(train, gradients_computed_in_place_give_the_bits_of_copied_ones)
{
    /* 10 rows, batch 2, accumulation 3: updates of micro-batches (3, 2) per epoch, with
     * dropout. lin_step hands back new tensors (copied into the accumulator); the
     * in-place step writes into the views it is given: the first micro-batch of an
     * update into the accumulator itself, later ones into a second arena that is then
     * added. Both runs must end with the same bits. */
    for (int accum = 1; accum <= 3; accum += 2) {
        static rec R1, R2;
        static lin_model M;
        static inplace_model I;
        memset(&R1, 0, sizeof R1);
        memset(&R2, 0, sizeof R2);
        memset(&M, 0, sizeof M);
        memset(&I, 0, sizeof I);
        M.dropout = I.m.dropout = 1;
        rt_tensor_list data, p1, p2;
        make_data(&data, 10);
        make_params(&p1);
        make_params(&p2);
        tr_train_opts o = base_opts(&R1);
        o.epochs = 3;
        o.batch_size = 2;
        o.accum = accum;
        bc_err e;
        cr_assert_eq(tr_train(&o, lin_step, &M, &p1, &data, NULL, NULL, &e), 0, "%s",
                     e.msg);
        o.hook_ctx = &R2;
        cr_assert_eq(tr_train(&o, inplace_step, &I, &p2, &data, NULL, NULL, &e), 0, "%s",
                     e.msg);
        assert_same_bits(&p1, &p2);
        cr_assert_eq(R1.n, R2.n);
        for (int i = 0; i < R1.n; i++)
            cr_expect(R1.loss[i] == R2.loss[i] && R1.norm[i] == R2.norm[i],
                      "accum %d, update %d: loss %.9g vs %.9g", accum, i + 1, R1.loss[i],
                      R2.loss[i]);
        /* Where the gradients went: one arena for the first micro-batch of every update,
         * another for the later ones; three 64-byte slots, in the params' order. */
        cr_assert_eq(I.calls, 15);
        for (int64_t k = 0; k < I.calls; k++) {
            int first = (k % 5) % accum == 0, ref = first ? 0 : 1;
            cr_expect(I.ok[k], "call %lld: out did not hold the three views", (long long)k);
            for (int i = 0; i < 3; i++) {
                cr_expect_eq(I.at[k][i], I.at[ref][i], "call %lld: %s moved", (long long)k,
                             gnames[i]);
                cr_expect_eq((char *)I.at[k][i], (char *)I.at[k][0] + 64 * i,
                             "call %lld: %s is not in its slot", (long long)k, gnames[i]);
            }
            cr_expect_eq((uintptr_t)I.at[k][0] % 64, 0);
        }
        if (accum > 1)
            cr_expect_neq(I.at[1][0], I.at[0][0],
                          "later micro-batches need their own arena");
        /* The params the engine was given are now one arena too. */
        const rt_arena *a = p2.t[0].arena;
        cr_assert_not_null(a);
        cr_expect_eq(a->refs, 3);
        for (int i = 0; i < p2.n; i++)
            cr_expect_eq(p2.t[i].arena, a, "%s is not in the params' arena", p2.t[i].name);
        rt_list_free(&data);
        rt_list_free(&p1);
        rt_list_free(&p2);
    }
}

Test(train, frozen_parameters_are_untouched_and_have_no_state)
{
    static rec R;
    static lin_model M;
    rt_tensor_list data, params, before, wp, st;
    make_data(&data, 8);
    make_params(&params);
    make_params(&before);
    tr_train_opts o = base_opts(&R);
    const char *frozen[] = {"enc."};
    o.frozen = frozen;
    o.nfrozen = 1;
    o.steps = 20;
    o.adam.weight_decay = 0.5; /* decay would move it too */
    const char *dir = tu_tmpdir();
    o.out_dir = dir;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(memcmp(rt_list_cfind(&params, "enc.weight")->data,
                        rt_list_cfind(&before, "enc.weight")->data, D * sizeof(float)),
                 0);
    cr_assert_neq(memcmp(rt_list_cfind(&params, "lin.weight")->data,
                         rt_list_cfind(&before, "lin.weight")->data, D * sizeof(float)),
                  0);
    load_run(dir, &wp, &st);
    cr_assert(rt_list_cfind(&wp, "enc.weight"), "frozen params are saved with the rest");
    cr_assert_not(rt_list_cfind(&st, "adam.m.enc.weight"));
    cr_assert_not(rt_list_cfind(&st, "adam.v.enc.weight"));
    cr_assert(rt_list_cfind(&st, "adam.m.lin.weight"));
    rt_list_free(&data);
    rt_list_free(&params);
    rt_list_free(&before);
    rt_list_free(&wp);
    rt_list_free(&st);
}

/* ---- refusals ------------------------------------------------------------------------ */

Test(train, non_finite_loss_stops_naming_the_step)
{
    static rec R;
    static lin_model M;
    M.nan_loss_at = 5;
    rt_tensor_list data, params;
    make_data(&data, 8);
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.steps = 10;
    o.batch_size = 8;
    bc_err e;
    tr_train_result r;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, &r, &e), -1);
    cr_assert(strstr(e.msg, "step 5") && strstr(e.msg, "loss") && strstr(e.msg, "nan"),
              "%s", e.msg);
    cr_assert_eq(r.step, 4);
    cr_assert_eq(R.n, 4);
    rt_list_free(&data);
    rt_list_free(&params);
}

Test(train, non_finite_gradient_stops_naming_the_tensor)
{
    static rec R;
    static lin_model M;
    M.inf_grad_at = 6; /* update 3's second micro-batch */
    rt_tensor_list data, params;
    make_data(&data, 8);
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.steps = 10;
    o.batch_size = 2;
    o.accum = 2;
    o.out_dir = tu_tmpdir();
    o.save_every = 1;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), -1);
    cr_assert(strstr(e.msg, "step 3") && strstr(e.msg, "grad.lin.bias") &&
                  strstr(e.msg, "inf"),
              "%s", e.msg);
    /* The last checkpoint (update 2) is kept, not overwritten with the bad state. */
    rt_tensor_list wp, st;
    load_run(o.out_dir, &wp, &st);
    cr_assert_eq(scalar(&st, "step"), 2);
    rt_list_free(&data);
    rt_list_free(&params);
    rt_list_free(&wp);
    rt_list_free(&st);
}

Test(train, step_function_errors_are_prefixed_with_the_step)
{
    static rec R;
    static lin_model M;
    M.fail_at = 3;
    rt_tensor_list data, params;
    make_data(&data, 8);
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.batch_size = 8;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), -1);
    cr_assert(strstr(e.msg, "step 3: simulated failure"), "%s", e.msg);
    rt_list_free(&data);
    rt_list_free(&params);
}

Test(train, data_with_different_row_counts_is_refused)
{
    static rec R;
    static lin_model M;
    rt_tensor_list data, params;
    make_data(&data, 8);
    make_params(&params);
    int64_t s[1] = {7};
    cr_assert(rt_list_add(&data, "labels", RT_I64, 1, s, NULL));
    tr_train_opts o = base_opts(&R);
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), -1);
    cr_assert(strstr(e.msg, "labels") && strstr(e.msg, "7 rows"), "%s", e.msg);
    cr_assert_eq(M.calls, 0);
    rt_list_free(&data);
    rt_list_free(&params);
}

/* ---- the data order and dropout seeds --------------------------------------------------
 */

Test(train, every_epoch_sees_every_row_once_in_a_seeded_order)
{
    static rec R;
    static lin_model M, M2;
    rt_tensor_list data, params;
    make_data(&data, 10);
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.batch_size = 3; /* 3, 3, 3, 1 */
    o.epochs = 3;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(M.nids, 30);
    cr_assert_eq(M.calls, 12);
    cr_assert_eq(M.rows[3], 1, "the last partial batch is kept");
    for (int ep = 0; ep < 3; ep++) {
        int seen[10] = {0};
        for (int i = 0; i < 10; i++)
            seen[M.ids[ep * 10 + i]]++;
        for (int i = 0; i < 10; i++)
            cr_assert_eq(seen[i], 1, "epoch %d saw row %d %d times", ep, i, seen[i]);
    }
    cr_assert_neq(memcmp(M.ids, M.ids + 10, 10 * sizeof *M.ids), 0,
                  "epochs should be shuffled differently");
    for (int k = 0; k < 12; k++) {
        cr_assert_eq(M.seeds[k], tr_train_dropout_seed(7, k));
        cr_assert((int64_t)M.seeds[k] >= 0);
        for (int j = 0; j < k; j++)
            cr_assert_neq(M.seeds[k], M.seeds[j]);
    }
    /* Another seed, another order; no shuffle, the file's order. */
    rt_list_free(&params);
    make_params(&params);
    o.seed = 8;
    cr_assert_eq(tr_train(&o, lin_step, &M2, &params, &data, NULL, NULL, &e), 0);
    cr_assert_neq(memcmp(M.ids, M2.ids, 30 * sizeof *M.ids), 0);
    memset(&M2, 0, sizeof M2);
    o.shuffle = 0;
    cr_assert_eq(tr_train(&o, lin_step, &M2, &params, &data, NULL, NULL, &e), 0);
    for (int i = 0; i < 30; i++)
        cr_assert_eq(M2.ids[i], i % 10);
    rt_list_free(&data);
    rt_list_free(&params);
}

/* group_by_length: every epoch still sees every row once, in a seeded order; each run
 * of 50 micro-batches is sorted by length and cut into micro-batches of near-equal
 * lengths, so that the padding a micro-batch is trimmed to shrinks, and the run's
 * micro-batches then come in shuffled order (not longest first: where length goes with
 * the label, that order made training fail); a resume with another grouping is refused.
 * Row r's length is 1 + r % 7 (attention_mask ones, then zeros). */
Test(train, group_by_length_sorts_runs_of_micro_batches_and_keeps_every_row)
{
    static rec R;
    static lin_model M, M2;
    rt_tensor_list data, params;
    int64_t N = 1000, S = 8;
    make_data(&data, N);
    int64_t ms[2] = {N, S};
    rt_tensor *mask = rt_list_add(&data, "attention_mask", RT_I64, 2, ms, NULL);
    cr_assert(mask);
    for (int64_t r = 0; r < N; r++)
        for (int64_t j = 0; j <= r % 7; j++)
            ((int64_t *)mask->data)[r * S + j] = 1;
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.batch_size = 4; /* runs of 200 rows */
    o.epochs = 2;
    o.group_by_length = 1;
    o.out_dir = tu_tmpdir();
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(M.nids, 2 * N);
    int64_t padded = 0, padded_plain = 0, rises = 0;
    for (int ep = 0; ep < 2; ep++) {
        static int seen[1000];
        memset(seen, 0, sizeof seen);
        for (int64_t i = 0; i < N; i++)
            seen[M.ids[ep * N + i]]++;
        /* A micro-batch is a slice of its sorted run: at most two adjacent lengths. */
        for (int64_t b = 0; b < N / 4; b++) {
            int64_t lo = 8, hi = 0;
            for (int k = 0; k < 4; k++) {
                int64_t len = 1 + M.ids[ep * N + b * 4 + k] % 7;
                lo = len < lo ? len : lo;
                hi = len > hi ? len : hi;
            }
            cr_assert_leq(hi - lo, 1, "epoch %d micro-batch %lld: lengths %lld to %lld", ep,
                          (long long)b, (long long)lo, (long long)hi);
            if (b % 50 > 0 &&
                1 + M.ids[ep * N + b * 4] % 7 > 1 + M.ids[ep * N + b * 4 - 4] % 7)
                rises++;
        }
        for (int64_t i = 0; i < N; i++)
            cr_assert_eq(seen[i], 1, "epoch %d saw row %lld %d times", ep, (long long)i,
                         seen[i]);
        for (int64_t b = 0; b < N / 4; b++) {
            int64_t mx = 0;
            for (int k = 0; k < 4; k++)
                mx = 1 + M.ids[ep * N + b * 4 + k] % 7 > mx
                         ? 1 + M.ids[ep * N + b * 4 + k] % 7
                         : mx;
            padded += 4 * mx;
        }
    }
    cr_assert_neq(memcmp(M.ids, M.ids + N, (size_t)N * sizeof *M.ids), 0,
                  "epochs are shuffled differently");
    cr_expect_gt(rises, 10, "the micro-batches of a run came longest first");
    /* Without grouping: more padding. */
    rt_tensor_list p2;
    make_params(&p2);
    tr_train_opts o2 = o;
    o2.group_by_length = 0;
    o2.out_dir = NULL;
    cr_assert_eq(tr_train(&o2, lin_step, &M2, &p2, &data, NULL, NULL, &e), 0, "%s", e.msg);
    for (int64_t b = 0; b < 2 * N / 4; b++) {
        int64_t mx = 0;
        for (int k = 0; k < 4; k++)
            mx = 1 + M2.ids[b * 4 + k] % 7 > mx ? 1 + M2.ids[b * 4 + k] % 7 : mx;
        padded_plain += 4 * mx;
    }
    cr_expect_lt(padded * 10, padded_plain * 7, "grouped %lld vs %lld positions",
                 (long long)padded, (long long)padded_plain);
    /* The checkpoint remembers the grouping. */
    rt_list_free(&p2);
    rt_tensor_list st;
    load_run(o.out_dir, &p2, &st);
    o2.out_dir = o.out_dir;
    o2.epochs = 3;
    cr_assert_eq(tr_train(&o2, lin_step, &M2, &p2, &data, &st, NULL, &e), -1);
    cr_expect(strstr(e.msg, "shuffle setting"), "%s", e.msg);
    rt_list_free(&p2);
    rt_list_free(&st);
    rt_list_free(&data);
    rt_list_free(&params);
}

/* Epoch e >= 1's rows come from refill: make_data's rows with id = 100 * e + row. */
typedef struct refiller {
    int64_t calls, epochs[64];
    int64_t rows;      /* rows to give (the engine refuses a different count) */
    const char *error; /* fail with this message */
    int keep;          /* answer 1: epoch 0's rows again */
} refiller;

static int refill(void *ctx, int64_t epoch, rt_tensor_list *chunk, bc_err *e)
{
    refiller *F = ctx;
    if (F->calls < 64)
        F->epochs[F->calls] = epoch;
    F->calls++;
    if (F->error)
        return bc_errf(e, "%s", F->error);
    if (F->keep)
        return 1;
    cr_assert_eq(chunk->n, 0, "the engine passes an empty list");
    make_data(chunk, F->rows);
    rt_tensor *id = rt_list_find(chunk, "id");
    for (int64_t i = 0; i < F->rows; i++)
        ((int64_t *)id->data)[i] = 100 * epoch + i;
    return 0;
}

Test(train, refill_gives_each_epoch_its_own_rows_and_resumes_exactly)
{
    static rec R, R2;
    static lin_model M, M2;
    rt_tensor_list data, params;
    make_data(&data, 10);
    make_params(&params);
    refiller F = {0, {0}, 10, NULL, 0};
    tr_train_opts o = base_opts(&R);
    o.batch_size = 3;
    o.epochs = 3;
    o.refill = refill;
    o.refill_ctx = &F;
    o.out_dir = tu_tmpdir();
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(F.calls, 2);
    cr_assert_eq(F.epochs[0], 1);
    cr_assert_eq(F.epochs[1], 2);
    cr_assert_eq(M.nids, 30);
    for (int ep = 0; ep < 3; ep++) {
        int seen[10] = {0};
        for (int i = 0; i < 10; i++) {
            int64_t id = M.ids[ep * 10 + i];
            cr_assert(id / 100 == ep && id % 100 < 10, "epoch %d saw row id %lld", ep,
                      (long long)id);
            seen[id % 100]++;
        }
        for (int i = 0; i < 10; i++)
            cr_assert_eq(seen[i], 1, "epoch %d saw row %d %d times", ep, i, seen[i]);
    }

    /* Stopped inside the second epoch (4 updates of 3, 3, 3, 1 rows per epoch; stopped
     * after update 6) and resumed: the refill is asked for epoch 1 again, and the run
     * ends with the uninterrupted bits. */
    volatile sig_atomic_t stop = 0;
    rt_tensor_list p2, st;
    make_params(&p2);
    refiller F2 = {0, {0}, 10, NULL, 0};
    tr_train_opts o2 = base_opts(&R2);
    o2.batch_size = 3;
    o2.epochs = 3;
    o2.refill = refill;
    o2.refill_ctx = &F2;
    o2.out_dir = tu_tmpdir();
    o2.stop = &stop;
    R2.stop = &stop;
    R2.stop_after = 6;
    tr_train_result r;
    cr_assert_eq(tr_train(&o2, lin_step, &M2, &p2, &data, NULL, &r, &e), 0, "%s", e.msg);
    cr_assert(r.stopped);
    cr_assert_eq(r.step, 6);
    rt_list_free(&p2);
    load_run(o2.out_dir, &p2, &st);
    F2.calls = 0;
    stop = 0;
    R2.stop = NULL;
    cr_assert_eq(tr_train(&o2, lin_step, &M2, &p2, &data, &st, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r.step, 12);
    cr_assert_eq(F2.calls, 2);
    cr_assert_eq(F2.epochs[0], 1, "the resumed epoch's rows are asked for again");
    cr_assert_eq(F2.epochs[1], 2);
    assert_same_bits(&params, &p2);
    rt_list_free(&p2);
    rt_list_free(&st);

    /* A refill that declines (1) leaves epoch 0's rows for every epoch. */
    static lin_model M3;
    rt_list_free(&params);
    make_params(&params);
    F.keep = 1;
    F.calls = 0;
    cr_assert_eq(tr_train(&o, lin_step, &M3, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(F.calls, 2);
    cr_assert_eq(M3.nids, 30);
    for (int i = 0; i < 30; i++)
        cr_assert_lt(M3.ids[i], 10, "row id %lld", (long long)M3.ids[i]);
    F.keep = 0;

    /* A refill of another row count, or a failing one, stops the run naming the epoch. */
    rt_list_free(&params);
    make_params(&params);
    F.rows = 9;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), -1);
    cr_expect(strstr(e.msg, "epoch 2's data") && strstr(e.msg, "10 rows"), "%s", e.msg);
    F.rows = 10;
    F.error = "the corpus went away";
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), -1);
    cr_expect(strstr(e.msg, "epoch 2's data") && strstr(e.msg, "the corpus went away"),
              "%s", e.msg);
    rt_list_free(&data);
    rt_list_free(&params);
}

/* ---- resumption ------------------------------------------------------------------------
 */

/* 10 rows, batch 3 (3, 3, 3, 1), accum 2: 2 updates per epoch; 9 updates cross epochs
 * and end mid-epoch. Dropout on, so the seeds matter too. */
static tr_train_opts resume_opts(rec *R)
{
    tr_train_opts o = base_opts(R);
    o.batch_size = 3;
    o.accum = 2;
    o.steps = 9;
    return o;
}

/* The uninterrupted reference: losses and final parameters. */
static void reference_run(rec *R, rt_tensor_list *params, const rt_tensor_list *data)
{
    static lin_model M;
    memset(&M, 0, sizeof M);
    M.dropout = 1;
    make_params(params);
    tr_train_opts o = resume_opts(R);
    o.out_dir = tu_tmpdir();
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, params, data, NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(R->n, 9);
}

/* Resumes the run in dir and checks that updates from..9 repeat the reference bits. */
static void resume_and_compare(const char *dir, int64_t from, const rec *ref,
                               const rt_tensor_list *ref_params, const rt_tensor_list *data)
{
    static rec R;
    static lin_model M;
    memset(&R, 0, sizeof R);
    memset(&M, 0, sizeof M);
    M.dropout = 1;
    rt_tensor_list params, st;
    load_run(dir, &params, &st);
    cr_assert_eq(scalar(&st, "step"), from - 1);
    tr_train_opts o = resume_opts(&R);
    o.out_dir = dir;
    tr_train_result r;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, data, &st, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r.start_step, from - 1);
    cr_assert_eq(r.step, 9);
    cr_assert_eq(R.n, 10 - from);
    for (int i = 0; i < R.n; i++) {
        cr_assert_eq(R.step[i], from + i);
        cr_assert(R.loss[i] == ref->loss[from - 1 + i], "update %lld: %.17g != %.17g",
                  (long long)R.step[i], R.loss[i], ref->loss[from - 1 + i]);
        cr_assert(R.lr[i] == ref->lr[from - 1 + i]);
    }
    assert_same_bits(ref_params, &params);
    /* The log holds every update once. */
    char *log = tu_read_file(tu_path(dir, TR_TRAIN_LOG), NULL);
    cr_assert(log);
    int lines = 0;
    for (char *c = log; *c; c++)
        lines += *c == '\n';
    cr_assert_eq(lines, 10, "log:\n%s", log);
    for (int s = 1; s <= 9; s++) {
        char want[32];
        snprintf(want, sizeof want, "\n%d,", s);
        cr_assert(strstr(log, want), "no line for update %d:\n%s", s, log);
    }
    free(log);
    rt_list_free(&params);
    rt_list_free(&st);
}

/* A run of resume_opts stopped (as by SIGINT) after update 4, with dropout: its
 * directory (r may be NULL). */
static const char *stopped_after_4(rec *R, lin_model *M, rt_tensor_list *params,
                                   const rt_tensor_list *data, tr_train_result *r)
{
    static volatile sig_atomic_t stop;
    stop = 0;
    M->dropout = 1;
    make_params(params);
    tr_train_opts o = resume_opts(R);
    o.out_dir = tu_tmpdir();
    o.stop = &stop;
    R->stop = &stop;
    R->stop_after = 4;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, M, params, data, NULL, r, &e), 0, "%s", e.msg);
    return o.out_dir;
}

Test(train, resume_after_a_stop_repeats_the_uninterrupted_bits)
{
    static rec ref, R;
    static lin_model M;
    rt_tensor_list data, ref_params, params;
    make_data(&data, 10);
    reference_run(&ref, &ref_params, &data);

    /* Stopped (as by SIGINT) after update 4: a checkpoint, a clean return. */
    tr_train_result r;
    const char *dir = stopped_after_4(&R, &M, &params, &data, &r);
    cr_assert(r.stopped);
    cr_assert_eq(r.step, 4);
    for (int i = 0; i < 4; i++)
        cr_assert(R.loss[i] == ref.loss[i]);
    resume_and_compare(dir, 5, &ref, &ref_params, &data);
    rt_list_free(&data);
    rt_list_free(&ref_params);
    rt_list_free(&params);
}

Test(train, resume_after_a_stop_inside_an_accumulation)
{
    static rec ref, R;
    static lin_model M;
    rt_tensor_list data, ref_params, params;
    make_data(&data, 10);
    reference_run(&ref, &ref_params, &data);

    /* The stop arrives during update 6's first micro-batch (call 11): its partial
     * gradients are dropped and update 6 is redone on resumption. */
    volatile sig_atomic_t stop = 0;
    M.dropout = 1;
    M.stop = &stop;
    M.stop_at = 11;
    make_params(&params);
    tr_train_opts o = resume_opts(&R);
    o.out_dir = tu_tmpdir();
    o.stop = &stop;
    tr_train_result r;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, &r, &e), 0, "%s", e.msg);
    cr_assert(r.stopped);
    cr_assert_eq(r.step, 5);
    cr_assert_eq(M.calls, 11);
    resume_and_compare(o.out_dir, 6, &ref, &ref_params, &data);
    rt_list_free(&data);
    rt_list_free(&ref_params);
    rt_list_free(&params);
}

Test(train, resume_after_a_crash_from_the_last_periodic_checkpoint)
{
    static rec ref, R;
    static lin_model M;
    rt_tensor_list data, ref_params, params;
    make_data(&data, 10);
    reference_run(&ref, &ref_params, &data);

    /* Checkpoints every 3 updates; the step function fails in update 8 (call 15), after
     * updates 7 was logged: the run resumes from update 6 and the log is cut back. */
    M.dropout = 1;
    M.fail_at = 15;
    make_params(&params);
    tr_train_opts o = resume_opts(&R);
    o.out_dir = tu_tmpdir();
    o.save_every = 3;
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), -1);
    cr_assert(strstr(e.msg, "step 8"), "%s", e.msg);
    cr_assert_eq(R.n, 7);
    resume_and_compare(o.out_dir, 7, &ref, &ref_params, &data);
    rt_list_free(&data);
    rt_list_free(&ref_params);
    rt_list_free(&params);
}

static void note_into(void *ctx, const char *msg)
{
    snprintf(ctx, 600, "%s", msg);
}

/* Overwrites 8 bytes at offset from the end of path (a zeroed page, as a crash may leave). */
static void zero_near_end(const char *path, long from_end)
{
    FILE *f = fopen(path, "r+b");
    cr_assert(f, "%s", path);
    cr_assert_eq(fseek(f, -from_end, SEEK_END), 0);
    cr_assert_eq(fwrite("\0\0\0\0\0\0\0\0", 1, 8, f), 8u);
    fclose(f);
}

Test(train, checkpoints_are_units_the_last_two_kept_and_a_damaged_one_is_skipped)
{
    static rec R;
    static lin_model M;
    rt_tensor_list data, params;
    make_data(&data, 10);
    make_params(&params);
    M.dropout = 1;
    tr_train_opts o = resume_opts(&R);
    o.out_dir = tu_tmpdir();
    o.save_every = 2; /* checkpoints at 2, 4, 6, 8 and the last, 9 */
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s", e.msg);
    const char *ck = tu_path(o.out_dir, TR_CKPT_DIR);
    char ckb[1100];
    snprintf(ckb, sizeof ckb, "%s", ck);
    /* exactly current, step-8 and step-9, each complete */
    DIR *d = opendir(ckb);
    cr_assert(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            n++;
            cr_expect(!strcmp(de->d_name, "current") || !strcmp(de->d_name, "step-8") ||
                          !strcmp(de->d_name, "step-9"),
                      "unexpected %s", de->d_name);
        }
    closedir(d);
    cr_expect_eq(n, 3);
    char *cur = tu_read_file(tu_path(ckb, "current"), NULL);
    cr_expect_str_eq(cur, "step-9\n");
    free(cur);
    char s8[1200], s9[1200];
    snprintf(s8, sizeof s8, "%s/step-8", ckb);
    snprintf(s9, sizeof s9, "%s/step-9", ckb);
    cr_expect_eq(tr_ckpt_verify(s8, &e), 0, "%s", e.msg);
    cr_expect_eq(tr_ckpt_verify(s9, &e), 0, "%s", e.msg);
    /* RUN/weights.safetensors is current's weights (a link to the same file) */
    struct stat a, b;
    cr_assert_eq(stat(tu_path(o.out_dir, TR_TRAIN_WEIGHTS), &a), 0);
    cr_assert_eq(stat(tu_path(s9, TR_CKPT_WEIGHTS), &b), 0);
    cr_expect(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    char w[4200], op[4200], msg[600] = "";
    cr_assert_eq(tr_ckpt_find(o.out_dir, w, op, sizeof w, note_into, msg, &e), 1, "%s", e.msg);
    cr_expect(strstr(w, "step-9/"), "%s", w);
    /* a zeroed stretch of step 9's weights: the safetensors reader still parses the
     * file, the manifest's hash does not match, and step 8 is used with a note */
    rt_tensor_list t;
    rt_list_init(&t);
    zero_near_end(tu_path(s9, TR_CKPT_WEIGHTS), 12);
    cr_assert_eq(rt_st_load(tu_path(s9, TR_CKPT_WEIGHTS), &t, &e), 0, "%s", e.msg);
    rt_list_free(&t);
    cr_expect_eq(tr_ckpt_verify(s9, &e), -1);
    cr_expect(strstr(e.msg, "content hash"), "%s", e.msg);
    cr_assert_eq(tr_ckpt_find(o.out_dir, w, op, sizeof w, note_into, msg, &e), 1, "%s", e.msg);
    cr_expect(strstr(w, "step-8/") && strstr(op, "step-8/"), "%s %s", w, op);
    cr_expect(strstr(msg, "step 9") && strstr(msg, "damaged") && strstr(msg, "step 8"), "%s",
              msg);
    /* both damaged: an error naming the run, never a silent wrong resume */
    FILE *f = fopen(tu_path(s8, TR_CKPT_OPTIM), "ab");
    cr_assert(f);
    fputc('x', f);
    fclose(f);
    cr_expect_eq(tr_ckpt_find(o.out_dir, w, op, sizeof w, NULL, NULL, &e), -1);
    cr_expect(strstr(e.msg, "damaged") && strstr(e.msg, "no other complete"), "%s", e.msg);
    rt_list_free(&data);
    rt_list_free(&params);
}

/* A run directory of the layout before checkpoints/ (weights and optimizer state side by
 * side) still resumes with the same bits; a directory without either has no checkpoint. */
Test(train, the_layout_before_checkpoints_still_resumes)
{
    static rec ref, R;
    static lin_model M;
    rt_tensor_list data, ref_params, params;
    make_data(&data, 10);
    reference_run(&ref, &ref_params, &data);
    const char *dir = stopped_after_4(&R, &M, &params, &data, NULL);
    bc_err e;
    /* the old layout: optimizer.safetensors beside the weights, no checkpoints/ */
    char from[1200], cmd[3000];
    snprintf(from, sizeof from, "%s/" TR_CKPT_DIR "/step-4/" TR_CKPT_OPTIM, dir);
    snprintf(cmd, sizeof cmd, "cp %s %s/" TR_TRAIN_OPTIM " && rm -r %s/" TR_CKPT_DIR, from,
             dir, dir);
    cr_assert_eq(system(cmd), 0);
    resume_and_compare(dir, 5, &ref, &ref_params, &data);
    /* resuming wrote the new layout and retired the old file */
    cr_expect(access(tu_path(dir, TR_TRAIN_OPTIM), F_OK) != 0);
    char w[4200], op[4200];
    cr_expect_eq(tr_ckpt_find(tu_tmpdir(), w, op, sizeof w, NULL, NULL, &e), 0);
    rt_list_free(&data);
    rt_list_free(&ref_params);
    rt_list_free(&params);
}

Test(train, resume_refuses_other_settings_and_mismatched_weights)
{
    static rec R;
    static lin_model M;
    rt_tensor_list data, params, wp, st;
    make_data(&data, 10);
    make_params(&params);
    tr_train_opts o = resume_opts(&R);
    o.steps = 3;
    o.out_dir = tu_tmpdir();
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    load_run(o.out_dir, &wp, &st);
    o.steps = 9;
    o.batch_size = 2;
    cr_assert_eq(tr_train(&o, lin_step, &M, &wp, &data, &st, NULL, &e), -1);
    cr_assert(strstr(e.msg, "batch size 3") && strstr(e.msg, "has 2"), "%s", e.msg);
    o.batch_size = 3;
    o.seed = 1;
    cr_assert_eq(tr_train(&o, lin_step, &M, &wp, &data, &st, NULL, &e), -1);
    cr_assert(strstr(e.msg, "seed"), "%s", e.msg);
    o.seed = 7;
    ((float *)rt_list_find(&wp, "lin.bias")->data)[0] += 1.0f;
    cr_assert_eq(tr_train(&o, lin_step, &M, &wp, &data, &st, NULL, &e), -1);
    cr_assert(strstr(e.msg, "weights are not the ones"), "%s", e.msg);
    rt_list_free(&data);
    rt_list_free(&params);
    rt_list_free(&wp);
    rt_list_free(&st);
}

/* ---- progress --------------------------------------------------------------------------
 */

Test(train, progress_lines_name_step_loss_lr_throughput_and_eta)
{
    static rec R;
    static lin_model M;
    rt_tensor_list data, params;
    make_data(&data, 8);
    make_params(&params);
    tr_train_opts o = base_opts(&R);
    o.steps = 6;
    o.progress_every = 2;
    const char *path = tu_path(tu_tmpdir(), "progress.txt");
    o.progress = fopen(path, "w");
    cr_assert(o.progress);
    bc_err e;
    cr_assert_eq(tr_train(&o, lin_step, &M, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    fclose(o.progress);
    char *txt = tu_read_file(path, NULL);
    cr_assert(txt);
    /* Not a tty: update 1, then every 2nd, and the last; no carriage returns. */
    cr_assert(strstr(txt, "step 1/6 ") && strstr(txt, "step 2/6 ") &&
                  strstr(txt, "step 6/6 "),
              "%s", txt);
    cr_assert_not(strstr(txt, "step 3/6 "), "%s", txt);
    cr_assert(strstr(txt, "loss ") && strstr(txt, "lr ") && strstr(txt, "tok/s") &&
                  strstr(txt, "ETA "),
              "%s", txt);
    cr_assert_not(strchr(txt, '\r'));
    free(txt);
    rt_list_free(&data);
    rt_list_free(&params);
}

/* ---- the real graph: autodiff + the reference interpreter --------------------------- */

typedef struct real_ctx {
    ir_graph *g;
    int has_seed;
} real_ctx;

static int real_step(void *ctx, const rt_tensor_list *params, const rt_tensor_list *batch,
                     uint64_t dropout_seed, rt_tensor_list *out, bc_err *e)
{
    const real_ctx *c = ctx;
    rt_tensor_list in;
    rt_list_init(&in);
    for (int i = 0; i < batch->n; i++) {
        const rt_tensor *t = &batch->t[i];
        cr_assert(rt_list_add(&in, t->name, t->dtype, t->rank, t->shape, t->data));
    }
    int64_t seed = (int64_t)dropout_seed;
    if (c->has_seed)
        cr_assert(rt_list_add(&in, "dropout_seed", RT_I64, 0, NULL, &seed));
    rt_interp_opts o = {0, 1}; /* tests run two at a time */
    int rc = rt_interp_run(c->g, params, &in, &o, out, e);
    rt_list_free(&in);
    return rc;
}

/* run_tiny (all five heads, dropout 0.1) in training mode, differentiated, keeping only
 * the loss and the gradients; its batch as data and BERT's initialization. */
static void real_setup(real_ctx *c, rt_tensor_list *data, rt_tensor_list *params)
{
    fe_model m;
    bc_err e;
    rt_tensor_list batch;
    rt_list_init(&batch);
    rt_list_init(data);
    rt_list_init(params);
    unsigned present;
    int64_t B, S;
    cr_assert_eq(fe_load(tu_src("tests/fixtures/run_tiny/model.xml"), &m, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(
        rt_st_load(tu_src("tests/fixtures/run_tiny/batch.safetensors"), &batch, &e), 0,
        "%s", e.msg);
    cr_assert_eq(tr_batch_prepare(&batch, m.max_position, m.head_mask & FE_LABEL_ALL, data,
                                  &present, &B, &S, NULL, NULL, &e),
                 0, "%s", e.msg);
    cr_assert_eq(present, FE_LABEL_ALL);
    pass_grad_opts go = {"loss", NULL, 0};
    ir_graph *g = fe_build_bert(&m, present | FE_BUILD_TRAIN, &e);
    cr_assert(g, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_autodiff(&g, &go, &e), 0, "%s", e.msg);
    const char *keep[256];
    int nk = 0;
    for (int i = 0; i < g->nout && nk < 256; i++)
        if (!strcmp(g->outs[i].name, "loss") || !strncmp(g->outs[i].name, "grad.", 5))
            keep[nk++] = g->outs[i].name;
    cr_assert_eq(pass_keep_outputs(g, keep, nk, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_params_init(g, 0, params, &e), 0, "%s", e.msg);
    c->g = g;
    c->has_seed = ir_find_named(g, IR_OP_INPUT, "dropout_seed") >= 0;
    cr_assert(c->has_seed, "the training graph should take a dropout seed");
    rt_list_free(&batch);
}

Test(train, real_bert_overfits_a_fixed_batch)
{
    static rec R;
    real_ctx c;
    rt_tensor_list data, params;
    real_setup(&c, &data, &params);
    tr_train_opts o = base_opts(&R);
    o.adam.lr = 3e-2;
    o.batch_size = 3;
    o.steps = 100;
    bc_err e;
    cr_assert_eq(tr_train(&o, real_step, &c, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(R.n, 100);
    cr_assert(R.loss[99] < 0.01 * R.loss[0], "loss %g -> %g", R.loss[0], R.loss[99]);
    ir_graph_free(c.g);
    rt_list_free(&data);
    rt_list_free(&params);
}

Test(train, real_bert_resume_with_dropout_repeats_the_bits)
{
    /* Batch 2 of 3 rows (2, 1), accum 1; stopped after update 5 of 10 and resumed. */
    static rec ref, R1, R2;
    real_ctx c;
    rt_tensor_list data, params, p2;
    real_setup(&c, &data, &params);
    tr_train_opts o = base_opts(&ref);
    o.adam.lr = 1e-2;
    o.batch_size = 2;
    o.steps = 10;
    bc_err e;
    cr_assert_eq(tr_train(&o, real_step, &c, &params, &data, NULL, NULL, &e), 0, "%s",
                 e.msg);

    rt_list_init(&p2);
    cr_assert_eq(rt_params_init(c.g, 0, &p2, &e), 0);
    volatile sig_atomic_t stop = 0;
    o.hook_ctx = &R1;
    o.out_dir = tu_tmpdir();
    o.stop = &stop;
    R1.stop = &stop;
    R1.stop_after = 5;
    tr_train_result r;
    cr_assert_eq(tr_train(&o, real_step, &c, &p2, &data, NULL, &r, &e), 0, "%s", e.msg);
    cr_assert(r.stopped && r.step == 5);
    rt_tensor_list wp, st;
    load_run(o.out_dir, &wp, &st);
    o.hook_ctx = &R2;
    o.stop = NULL;
    cr_assert_eq(tr_train(&o, real_step, &c, &wp, &data, &st, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(R2.n, 5);
    for (int i = 0; i < 5; i++) {
        cr_assert(R1.loss[i] == ref.loss[i], "update %d", i + 1);
        cr_assert(R2.loss[i] == ref.loss[5 + i], "update %d: %.17g != %.17g", 6 + i,
                  R2.loss[i], ref.loss[5 + i]);
    }
    assert_same_bits(&params, &wp);
    ir_graph_free(c.g);
    rt_list_free(&data);
    rt_list_free(&params);
    rt_list_free(&p2);
    rt_list_free(&wp);
    rt_list_free(&st);
}

/* ---- bertcc train ------------------------------------------------------------------- */

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TINY "tests/fixtures/run_tiny/"

static int cli_hooked(void)
{
    char *out = NULL;
    int rc = tu_run(BERTCC_EXE " train --help", &out);
    int ok = rc == 0 && out && strstr(out, "--resume");
    free(out);
    return ok;
}

static int count_lines(const char *path)
{
    char *t = tu_read_file(path, NULL);
    int n = 0;
    for (char *c = t; c && *c; c++)
        n += *c == '\n';
    free(t);
    return n;
}

/* The log without its last column (throughput differs from run to run). */
static char *log_without_speed(const char *path)
{
    char *t = tu_read_file(path, NULL);
    cr_assert(t, "cannot read %s", path);
    char *o = t, *line = t;
    for (char *c = t; *c; c++)
        if (*c == '\n') {
            char *comma = NULL;
            for (char *k = line; k < c; k++)
                if (*k == ',')
                    comma = k;
            size_t n = (size_t)((comma ? comma : c) - line);
            memmove(o, line, n);
            o += n;
            *o++ = '\n';
            line = c + 1;
        }
    *o = 0;
    return t;
}

static int run_cli(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && %s train %s", BERTCC_SOURCE_DIR, BERTCC_EXE, args);
    return tu_run(cmd, out);
}

Test(train, cli_trains_resumes_and_refuses_clearly)
{
    cr_assert(cli_hooked(), "bertcc train is not dispatched by tools/bertcc/main.c");
    const char *dir = tu_tmpdir();
    char run[512], args[2048];
    char *out = NULL;
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args,
             TINY "model.xml --data " TINY
                  "batch.safetensors -o %s --steps 12 --batch-size 2 "
                  "--lr 1e-2 --threads 1 --save-every 5 --log-every 4",
             run);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    cr_assert(strstr(out, "step 12/12") && strstr(out, "final loss"), "%s", out);
    free(out);
    static const char *const files[] = {"model.xml", "options.json", TR_TRAIN_WEIGHTS,
                                        TR_CKPT_DIR "/" TR_CKPT_CURRENT, TR_TRAIN_LOG};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        cr_assert(access(tu_path(run, files[i]), R_OK) == 0, "%s missing", files[i]);
    cr_assert_eq(count_lines(tu_path(run, TR_TRAIN_LOG)), 13);
    rt_tensor_list wp, st;
    load_run(run, &wp, &st);
    cr_assert(rt_list_cfind(&wp, "bert.embeddings.word_embeddings.weight"));
    cr_assert(rt_list_cfind(&st, "adam.m.qa_outputs.weight"));
    cr_assert_eq(scalar(&st, "step"), 12);
    rt_list_free(&wp);
    rt_list_free(&st);

    /* The same directory again is refused; --resume of a finished run has nothing to
     * do; with more steps it continues the log. */
    cr_assert_eq(run_cli(args, &out), 1);
    cr_assert(strstr(out, "already holds a run") && strstr(out, "--resume"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "--resume %s", run);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    cr_assert(strstr(out, "complete"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "--resume %s --steps 15 --quiet", run);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    free(out);
    cr_assert_eq(count_lines(tu_path(run, TR_TRAIN_LOG)), 16);

    /* Refusals. */
    static const struct {
        const char *args, *want;
    } bad[] = {
        {TINY "model.xml --data " TINY "batch.safetensors -o %s/x --task pretrain",
         "--vocab"},
        {TINY "model.xml --data " TINY "batch.safetensors -o %s/x --task nope",
         "unknown --task"},
        {TINY "model.xml --data " TINY "batch.safetensors -o %s/x --epochs 2 --steps 3",
         "not both"},
        {TINY "model.xml --data " TINY "batch.safetensors -o %s/x --freeze nothing.",
         "matches no parameter"},
        {TINY "model.xml --data " TINY "batch.safetensors -o %s/x --lr -1", "--lr"},
        {TINY "model.xml --data " TINY "batch.safetensors -o %s/x --backend gpu",
         "--backend"},
        {TINY "model.xml --data tests/fixtures/run_tanh_noheads/batch.safetensors -o %s/x",
         "nothing to train"},
        {TINY "model.xml -o %s/x", "--data"},
        {TINY "model.xml --data " TINY "batch.safetensors -o %s/x --fuse=frob",
         "unknown fusion rule 'frob'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(args, sizeof args, bad[i].args, dir);
        cr_assert_eq(run_cli(args, &out), 1, "%s: %s", args, out);
        cr_assert(strstr(out, bad[i].want), "%s: '%s' not in: %s", args, bad[i].want, out);
        free(out);
    }
}

/* --fuse: recorded in options.json, kept by --resume; fused and unfused training give
 * the same weights, bit for bit. */
Test(train, cli_fuse_is_recorded_kept_by_resume_and_changes_no_bit)
{
    const char *dir = tu_tmpdir();
    char args[2048], on[512], off[512];
    char *out = NULL;
    snprintf(on, sizeof on, "%s/on", dir);
    snprintf(off, sizeof off, "%s/off", dir);
    const char *common = TINY "model.xml --data " TINY
                              "batch.safetensors --steps 4 --batch-size 2 --lr 1e-2 "
                              "--threads 2 --quiet";
    snprintf(args, sizeof args, "%s -o %s", common, on);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    free(out);
    snprintf(args, sizeof args, "%s -o %s --fuse=none", common, off);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    free(out);
    char *opt_on = tu_read_file(tu_path(on, "options.json"), NULL);
    char *opt_off = tu_read_file(tu_path(off, "options.json"), NULL);
    cr_assert(opt_on && opt_off);
    cr_expect(strstr(opt_on, "\"fuse\": \"all\""), "%s", opt_on);
    cr_expect(strstr(opt_off, "\"fuse\": \"none\""), "%s", opt_off);
    free(opt_on);
    free(opt_off);
    rt_tensor_list w1, s1, w2, s2;
    load_run(on, &w1, &s1);
    load_run(off, &w2, &s2);
    cr_assert_eq(w1.n, w2.n);
    for (int i = 0; i < w1.n; i++) {
        const rt_tensor *a = &w1.t[i], *b = rt_list_cfind(&w2, a->name);
        cr_expect(b && rt_nbytes(a) == rt_nbytes(b) && !memcmp(a->data, b->data, rt_nbytes(a)),
                  "%s differs between fused and unfused training", a->name);
    }
    rt_list_free(&w1);
    rt_list_free(&s1);
    rt_list_free(&w2);
    rt_list_free(&s2);
    snprintf(args, sizeof args, "--resume %s --steps 6 --quiet", off);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    free(out);
    opt_off = tu_read_file(tu_path(off, "options.json"), NULL);
    cr_assert_not_null(opt_off);
    cr_expect(strstr(opt_off, "\"fuse\": \"none\""), "resume changed it: %s", opt_off);
    free(opt_off);
}

Test(train, cli_ctrl_c_checkpoints_and_resume_repeats_the_run)
{
    cr_assert(cli_hooked(), "bertcc train is not dispatched by tools/bertcc/main.c");
    const char *dir = tu_tmpdir();
    char a[512], b[512], args[2048];
    char *out = NULL;
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    const char *common = TINY "model.xml --data " TINY "batch.safetensors --steps 200 "
                              "--batch-size 2 --lr 1e-2 --threads 1 --quiet";
    snprintf(args, sizeof args, "%s -o %s", common, a);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    free(out);

    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(tu_path(dir, "b.err"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0 || chdir(BERTCC_SOURCE_DIR))
            _exit(99);
        execl(BERTCC_EXE, BERTCC_EXE, "train", TINY "model.xml", "--data",
              TINY "batch.safetensors", "--steps", "200", "--batch-size", "2", "--lr",
              "1e-2", "--threads", "1", "--quiet", "-o", b, (char *)NULL);
        _exit(98);
    }
    /* Interrupt once a few updates are logged. */
    const char *log = tu_path(b, TR_TRAIN_LOG);
    for (int i = 0; i < 6000 && count_lines(log) < 4; i++)
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    kill(pid, SIGINT);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "bertcc did not exit cleanly on SIGINT");
    char *err = tu_read_file(tu_path(dir, "b.err"), NULL);
    if (WEXITSTATUS(status) == 0) {
        free(err);
        cr_skip_test("the run finished before the interrupt arrived");
    }
    cr_assert_eq(WEXITSTATUS(status), 130, "%s", err);
    cr_assert(err && strstr(err, "interrupted at step") && strstr(err, "--resume"), "%s",
              err);
    free(err);
    rt_tensor_list wp, st;
    load_run(b, &wp, &st);
    cr_assert(scalar(&st, "step") < 200);
    rt_list_free(&wp);
    rt_list_free(&st);

    snprintf(args, sizeof args, "--resume %s --quiet", b);
    cr_assert_eq(run_cli(args, &out), 0, "%s", out);
    free(out);
    char *la = log_without_speed(tu_path(a, TR_TRAIN_LOG));
    char *lb = log_without_speed(tu_path(b, TR_TRAIN_LOG));
    cr_assert_str_eq(lb, la);
    free(la);
    free(lb);
    size_t na, nb;
    char *wa = tu_read_file(tu_path(a, TR_TRAIN_WEIGHTS), &na);
    char *wb = tu_read_file(tu_path(b, TR_TRAIN_WEIGHTS), &nb);
    cr_assert(wa && wb && na == nb && !memcmp(wa, wb, na), "final weights differ");
    free(wa);
    free(wb);
}
