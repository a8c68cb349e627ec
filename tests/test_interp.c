/* test_interp.c: the reference interpreter (runtime/interp.c) — a kernel row for every
 * op, binding of B and S, F32 mode against F64 mode on run_tiny, small hand-built
 * graphs against values worked out by hand, and its errors naming the tensor. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "../train/batch.h"
#include "util.h"

#define C(n) ir_dconst(n)
#define B IR_DIM_B
#define S IR_DIM_S

static ir_type ty(ir_dtype dt, int rank, ...)
{
    ir_dim d[IR_MAX_RANK];
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        d[i] = va_arg(ap, ir_dim);
    va_end(ap);
    return ir_type_make(dt, rank, d);
}

static void add_f32(rt_tensor_list *l, const char *name, int rank, const int64_t *shape,
                    const float *v)
{
    cr_assert_not_null(rt_list_add(l, name, RT_F32, rank, shape, v));
}

static void add_i64(rt_tensor_list *l, const char *name, int rank, const int64_t *shape,
                    const int64_t *v)
{
    cr_assert_not_null(rt_list_add(l, name, RT_I64, rank, shape, v));
}

/* Runs g in f64 (or f32) mode; asserts success. */
static void run(const ir_graph *g, const rt_tensor_list *params,
                const rt_tensor_list *inputs, int f64, rt_tensor_list *out)
{
    bc_err e = {{0}};
    rt_interp_opts o = {f64, 1};
    rt_list_init(out);
    cr_assert_eq(g->failed, 0, "building: %s", g->err.msg);
    cr_assert_eq(rt_interp_run(g, params, inputs, &o, out, &e), 0, "%s", e.msg);
}

/* Runs g expecting an error that contains needle. */
static void run_fails(const ir_graph *g, const rt_tensor_list *params,
                      const rt_tensor_list *inputs, const char *needle)
{
    bc_err e = {{0}};
    rt_interp_opts o = {0, 1};
    rt_tensor_list out;
    rt_list_init(&out);
    cr_expect_eq(rt_interp_run(g, params, inputs, &o, &out, &e), -1, "accepted (%s)",
                 needle);
    cr_expect(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    rt_list_free(&out);
}

/* Checks output `name`'s shape and values (f64 mode: to 1e-12; f32: to float rounding). */
static void expect_values(const rt_tensor_list *out, const char *name, int rank,
                          const int64_t *shape, const double *want, double tol)
{
    const rt_tensor *t = rt_list_cfind(out, name);
    cr_assert_not_null(t, "no output %s", name);
    cr_assert_eq(t->rank, rank, "%s: rank %d, want %d", name, t->rank, rank);
    for (int d = 0; d < rank; d++)
        cr_assert_eq(t->shape[d], shape[d], "%s: dim %d is %lld, want %lld", name, d,
                     (long long)t->shape[d], (long long)shape[d]);
    for (int64_t i = 0; i < rt_numel(t); i++) {
        double got =
            t->dtype == RT_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
        cr_expect(fabs(got - want[i]) <= tol * (1 + fabs(want[i])),
                  "%s[%lld] = %.17g, want %.17g", name, (long long)i, got, want[i]);
    }
}

/* ---- tables ------------------------------------------------------------------------ */

Test(interp, every_op_has_a_kernel_and_a_shape_rule)
{
    /* Every op, leaves included: the interpreter binds params and inputs through
     * kernels of their own. */
    for (int op = 0; op < IR_OP_COUNT; op++) {
        cr_expect(rt_interp_has_kernel((ir_opcode)op), "no interpreter kernel for %s",
                  ir_ops[op].name);
        cr_expect_not_null(ir_ops[op].shape, "no shape rule for %s", ir_ops[op].name);
    }
    cr_expect_not(rt_interp_has_kernel(IR_OP_COUNT));
    cr_expect_not(rt_interp_has_kernel((ir_opcode)-1));
}

/* ---- binding B and S --------------------------------------------------------------- */

Test(interp, bind_sizes_takes_b_and_s_from_the_inputs)
{
    ir_graph *g = ir_graph_new("bind");
    ir_input(g, "ids", ty(IR_I64, 2, B, S));
    ir_input(g, "labels", ty(IR_I64, 1, B));
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    rt_tensor_list in;
    rt_list_init(&in);
    int64_t s2[2] = {3, 7}, s1[1] = {3};
    add_i64(&in, "ids", 2, s2, NULL);
    add_i64(&in, "labels", 1, s1, NULL);
    int64_t Bv = 0, Sv = 0;
    bc_err e = {{0}};
    cr_assert_eq(rt_bind_sizes(g, &in, &Bv, &Sv, &e), 0, "%s", e.msg);
    cr_expect_eq(Bv, 3);
    cr_expect_eq(Sv, 7);
    /* A missing input is named. */
    rt_list_remove(&in, "labels");
    cr_expect_eq(rt_bind_sizes(g, &in, &Bv, &Sv, &e), -1);
    cr_expect(strstr(e.msg, "labels") != NULL, "%s", e.msg);
    /* So is one of the wrong rank. */
    add_i64(&in, "labels", 2, s2, NULL);
    cr_expect_eq(rt_bind_sizes(g, &in, &Bv, &Sv, &e), -1);
    cr_expect(strstr(e.msg, "labels") != NULL, "%s", e.msg);
    rt_list_free(&in);
    ir_graph_free(g);
}

Test(interp, bind_sizes_on_the_bert_graph)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load(tu_src("tests/fixtures/run_tiny/model.xml"), &m, &e), 0, "%s",
                 e.msg);
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    rt_tensor_list batch;
    rt_list_init(&batch);
    cr_assert_eq(
        rt_st_load(tu_src("tests/fixtures/run_tiny/batch.safetensors"), &batch, &e), 0,
        "%s", e.msg);
    int64_t Bv = 0, Sv = 0;
    cr_assert_eq(rt_bind_sizes(g, &batch, &Bv, &Sv, &e), 0, "%s", e.msg);
    cr_expect_eq(Bv, 3);
    cr_expect_eq(Sv, 7);
    rt_list_free(&batch);
    ir_graph_free(g);
}

/* ---- F32 against F64 on run_tiny -------------------------------------------------- */

static void tiny_run(int f64, rt_tensor_list *out)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load(tu_src("tests/fixtures/run_tiny/model.xml"), &m, &e), 0, "%s",
                 e.msg);
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    rt_tensor_list batch, inputs, ckpt, params;
    rt_list_init(&batch);
    rt_list_init(&inputs);
    rt_list_init(&ckpt);
    rt_list_init(&params);
    cr_assert_eq(
        rt_st_load(tu_src("tests/fixtures/run_tiny/batch.safetensors"), &batch, &e), 0,
        "%s", e.msg);
    unsigned present;
    int64_t Bv, Sv;
    cr_assert_eq(tr_batch_prepare(&batch, m.max_position, FE_LABEL_ALL, &inputs, &present,
                                  &Bv, &Sv, NULL, NULL, &e),
                 0, "%s", e.msg);
    cr_assert_eq(
        rt_st_load(tu_src("tests/fixtures/run_tiny/weights.safetensors"), &ckpt, &e), 0,
        "%s", e.msg);
    cr_assert_eq(rt_params_from_checkpoint(g, &ckpt, 0, 0, &params, NULL, NULL, &e), 0,
                 "%s", e.msg);
    run(g, &params, &inputs, f64, out);
    rt_list_free(&batch);
    rt_list_free(&inputs);
    rt_list_free(&ckpt);
    rt_list_free(&params);
    ir_graph_free(g);
}

Test(interp, f32_mode_agrees_with_f64_mode_on_run_tiny)
{
    rt_tensor_list a, d;
    tiny_run(0, &a);
    tiny_run(1, &d);
    cr_assert_eq(a.n, d.n);
    cr_expect_eq(a.n, 14);
    int some_differ = 0;
    for (int i = 0; i < a.n; i++) {
        const rt_tensor *x = &a.t[i], *y = rt_list_cfind(&d, x->name);
        cr_assert_not_null(y, "%s", x->name);
        cr_expect_eq(x->dtype, RT_F32, "%s", x->name);
        cr_expect_eq(y->dtype, RT_F64, "%s", x->name);
        cr_assert_eq(rt_numel(x), rt_numel(y));
        double err = 0, big = 0;
        for (int64_t k = 0; k < rt_numel(x); k++) {
            double f = ((const float *)x->data)[k], g = ((const double *)y->data)[k];
            err = fmax(err, fabs(f - g));
            big = fmax(big, fabs(g));
            some_differ |= f != g;
        }
        cr_expect(err <= 1e-5 * big + 1e-7, "%s: f32 vs f64 differ by %.3g (max %.3g)",
                  x->name, err, big);
    }
    cr_expect(some_differ, "f32 mode does not round: every value equals the f64 one");
    rt_list_free(&a);
    rt_list_free(&d);
}

/* ---- hand-built graphs ------------------------------------------------------------- */

Test(interp, matmul_with_tb_on_batched_activations)
{
    /* x [B, S, K=3] times w [N=2, K=3] stored transposed: y[b, s, n] = sum_k x w[n, k]. */
    ir_graph *g = ir_graph_new("mm");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(3)));
    int w = ir_param(g, "w", ty(IR_F32, 2, C(2), C(3)));
    ir_set_output(g, "y", ir_matmul(g, x, w, 0, 1));
    static const float xv[2 * 2 * 3] = {1, 2, 3, 0, 1, 0, -1, 0, 2, 4, 5, 6};
    static const float wv[2 * 3] = {1, 0, -1, 0.5f, 2, 1};
    /* rows of x dotted with w[0] = (1, 0, -1) and w[1] = (0.5, 2, 1). */
    static const double want[2 * 2 * 2] = {-2, 7.5, 0, 2, -3, 1.5, -2, 18};
    int64_t xs[3] = {2, 2, 3}, ws[2] = {2, 3}, ys[3] = {2, 2, 2};
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&in, "x", 3, xs, xv);
    add_f32(&p, "w", 2, ws, wv);
    for (int f64 = 0; f64 < 2; f64++) {
        run(g, &p, &in, f64, &out);
        expect_values(&out, "y", 3, ys, want, 1e-12);
        rt_list_free(&out);
    }
    rt_list_free(&in);
    rt_list_free(&p);
    ir_graph_free(g);
}

Test(interp, batched_matmul_of_heads_with_tb_and_ta)
{
    /* q [B, 1, S, 2] k^T: scores [B, 1, S, S]; then ta: q^T q [B, 1, 2, 2]. */
    ir_graph *g = ir_graph_new("bmm");
    int q = ir_input(g, "q", ty(IR_F32, 4, B, C(1), S, C(2)));
    ir_set_output(g, "qqt", ir_matmul(g, q, q, 0, 1));
    ir_set_output(g, "qtq", ir_matmul(g, q, q, 1, 0));
    static const float qv[2 * 2] = {1, 2, 3, -1}; /* B = 1, S = 2 */
    static const double qqt[4] = {5, 1, 1, 10}, qtq[4] = {10, -1, -1, 5};
    int64_t qs[4] = {1, 1, 2, 2}, os[4] = {1, 1, 2, 2};
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&in, "q", 4, qs, qv);
    run(g, &p, &in, 1, &out);
    expect_values(&out, "qqt", 4, os, qqt, 1e-12);
    expect_values(&out, "qtq", 4, os, qtq, 1e-12);
    rt_list_free(&out);
    rt_list_free(&in);
    ir_graph_free(g);
}

Test(interp, attn_softmax_scales_and_masks_keys)
{
    /* scores [B=2, S=3 queries, S=3 keys], scale 0.5, mask [B, S]. */
    ir_graph *g = ir_graph_new("softmax");
    int x = ir_input(g, "scores", ty(IR_F32, 3, B, S, S));
    int m = ir_input(g, "mask", ty(IR_I64, 2, B, S));
    ir_set_output(g, "p", ir_attn_softmax(g, x, m, 0.5));
    static const float xv[2 * 3 * 3] = {
        0, 2, 4, 2, 2, 100, /* key 2 masked in batch 0: 100 must not matter */
        0, 0, 0, 1, 3, -2,  0, 0, 0, 5, 5, 5, /* batch 1: every key masked */
    };
    static const int64_t mv[2 * 3] = {1, 1, 0, 0, 0, 0};
    double e1 = exp(1.0), want[18];
    /* batch 0: softmax over keys 0, 1 of 0.5 x; key 2 gets exp(-10000) = 0 in double. */
    want[0] = 1 / (1 + e1), want[1] = e1 / (1 + e1), want[2] = 0;
    want[3] = 0.5, want[4] = 0.5, want[5] = 0;
    want[6] = 0.5, want[7] = 0.5, want[8] = 0;
    /* batch 1: all masked, the same -10000 everywhere: softmax of 0.5 x, no NaN. */
    double z = exp(0.5) + exp(1.5) + exp(-1.0);
    want[9] = exp(0.5) / z, want[10] = exp(1.5) / z, want[11] = exp(-1.0) / z;
    for (int i = 12; i < 18; i++)
        want[i] = 1.0 / 3;
    int64_t xs[3] = {2, 3, 3}, ms[2] = {2, 3};
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&in, "scores", 3, xs, xv);
    add_i64(&in, "mask", 2, ms, mv);
    run(g, &p, &in, 1, &out);
    expect_values(&out, "p", 3, xs, want, 1e-12);
    rt_list_free(&out);
    /* A mask value other than 0 and 1 is an error naming the mask. */
    rt_tensor *mt = rt_list_find(&in, "mask");
    ((int64_t *)mt->data)[4] = 2;
    run_fails(g, &p, &in, "mask");
    rt_list_free(&in);
    ir_graph_free(g);
}

Test(interp, select_takes_one_index_of_an_axis)
{
    /* x [B=2, S=3, 2]: select axis 1 index 0 -> [B, 2] (BERT's [CLS]); axis 2 index 1 ->
     * [B, S] (QA's end logits). */
    ir_graph *g = ir_graph_new("select");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(2)));
    ir_set_output(g, "cls", ir_select(g, x, 1, 0));
    ir_set_output(g, "end", ir_select(g, x, 2, 1));
    ir_set_output(g, "last", ir_select(g, x, 1, 2));
    float xv[12];
    for (int i = 0; i < 12; i++)
        xv[i] = (float)(10 * i);
    static const double cls[4] = {0, 10, 60, 70}, end[6] = {10, 30, 50, 70, 90, 110};
    static const double last[4] = {40, 50, 100, 110};
    int64_t xs[3] = {2, 3, 2}, s_cls[2] = {2, 2}, s_end[2] = {2, 3};
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&in, "x", 3, xs, xv);
    run(g, &p, &in, 0, &out);
    expect_values(&out, "cls", 2, s_cls, cls, 0);
    expect_values(&out, "end", 2, s_end, end, 0);
    expect_values(&out, "last", 2, s_cls, last, 0);
    rt_list_free(&out);
    /* With S = 2, index 2 of the S axis does not exist: an error, not a read past. */
    int64_t xs2[3] = {2, 2, 2};
    add_f32(&in, "x", 3, xs2, xv);
    run_fails(g, &p, &in, "select");
    rt_list_free(&in);
    ir_graph_free(g);
}

Test(interp, cross_entropy_means_over_counted_rows)
{
    ir_graph *g = ir_graph_new("ce");
    int lg = ir_input(g, "logits", ty(IR_F32, 2, B, C(3)));
    int lb = ir_input(g, "labels", ty(IR_I64, 1, B));
    ir_set_output(g, "loss", ir_cross_entropy(g, lg, lb));
    /* Row 0: (0, 0, 0), label 1: ln 3. Row 1: (1, 0, 0), label 0: ln(e + 2) - 1.
     * Row 2: ignored, however large its logits. Row 3: (0, 1, 2), label 2:
     * ln(1 + e + e^2) - 2. The loss is the mean over the three counted rows. */
    static const float lv[4 * 3] = {0, 0, 0, 1, 0, 0, 100, -100, 3, 0, 1, 2};
    static const int64_t yv[4] = {1, 0, -100, 2};
    double e1 = exp(1.0);
    double mean = (log(3.0) + (log(e1 + 2) - 1) + (log(1 + e1 + e1 * e1) - 2)) / 3.0;
    int64_t ls[2] = {4, 3}, ys[1] = {4}, scalar[1] = {0};
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&in, "logits", 2, ls, lv);
    add_i64(&in, "labels", 1, ys, yv);
    run(g, &p, &in, 1, &out);
    expect_values(&out, "loss", 0, scalar, &mean, 1e-12);
    rt_list_free(&out);
    /* Every row ignored: 0. */
    int64_t none[4] = {-100, -100, -100, -100};
    add_i64(&in, "labels", 1, ys, none);
    double zero = 0;
    run(g, &p, &in, 0, &out);
    expect_values(&out, "loss", 0, scalar, &zero, 0);
    rt_list_free(&out);
    /* A label out of range, or negative other than -100, is an error naming the tensor. */
    int64_t bad[4] = {1, 3, 0, 0}, neg[4] = {1, -1, 0, 0};
    add_i64(&in, "labels", 1, ys, bad);
    run_fails(g, &p, &in, "labels");
    add_i64(&in, "labels", 1, ys, neg);
    run_fails(g, &p, &in, "labels");
    rt_list_free(&in);
    ir_graph_free(g);
}

/* The rows of the test above with class weights (0.5, 2, 1.5): each counted row's loss
 * times its label's weight, over the sum of those weights; the gradient node with the
 * weights as its 4th operand; labels are still checked. */
Test(interp, cross_entropy_with_class_weights_by_hand)
{
    ir_graph *g = ir_graph_new("wce");
    int lg = ir_input(g, "logits", ty(IR_F32, 2, B, C(3)));
    int lb = ir_input(g, "labels", ty(IR_I64, 1, B));
    int w = ir_input(g, "class_weights", ty(IR_F32, 1, C(3)));
    int dl = ir_input(g, "dloss", ty(IR_F32, 0));
    ir_set_output(g, "loss", ir_cross_entropy_weighted(g, lg, lb, w));
    ir_set_output(
        g, "dlogits",
        ir_add(g, IR_OP_CROSS_ENTROPY_GRAD, (int[]){lg, lb, dl, w}, 4, NULL, NULL, NULL));
    static const float lv[4 * 3] = {0, 0, 0, 1, 0, 0, 100, -100, 3, 0, 1, 2};
    static const float wv[3] = {0.5f, 2.0f, 1.5f}, dv[1] = {2.0f};
    static const int64_t yv[4] = {1, 0, -100, 2};
    double e1 = exp(1.0);
    double rl[4] = {log(3.0), log(e1 + 2) - 1, 0, log(1 + e1 + e1 * e1) - 2};
    double wsum = 2.0 + 0.5 + 1.5;
    double mean = (2.0 * rl[0] + 0.5 * rl[1] + 1.5 * rl[3]) / wsum;
    double dwant[12] = {0};
    for (int i = 0; i < 4; i++) {
        if (yv[i] == -100)
            continue;
        double z = 0;
        for (int j = 0; j < 3; j++)
            z += exp(lv[i * 3 + j]);
        for (int j = 0; j < 3; j++)
            dwant[i * 3 + j] =
                2.0 * wv[yv[i]] / wsum * (exp(lv[i * 3 + j]) / z - (j == yv[i]));
    }
    int64_t ls[2] = {4, 3}, ys[1] = {4}, ws[1] = {3}, scalar[1] = {0};
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&in, "logits", 2, ls, lv);
    add_i64(&in, "labels", 1, ys, yv);
    add_f32(&in, "class_weights", 1, ws, wv);
    add_f32(&in, "dloss", 0, NULL, dv);
    run(g, &p, &in, 1, &out);
    expect_values(&out, "loss", 0, scalar, &mean, 1e-12);
    expect_values(&out, "dlogits", 2, ls, dwant, 1e-12);
    rt_list_free(&out);
    /* Every row ignored: 0, and a zero gradient. */
    int64_t none[4] = {-100, -100, -100, -100};
    add_i64(&in, "labels", 1, ys, none);
    double zeros[12] = {0};
    run(g, &p, &in, 0, &out);
    expect_values(&out, "loss", 0, scalar, zeros, 0);
    expect_values(&out, "dlogits", 2, ls, zeros, 0);
    rt_list_free(&out);
    /* Labels out of range are errors naming the tensor, with weights as without. */
    int64_t bad[4] = {1, 3, 0, 0}, neg[4] = {1, -1, 0, 0};
    add_i64(&in, "labels", 1, ys, bad);
    run_fails(g, &p, &in, "labels: label 3 at flat index 1");
    add_i64(&in, "labels", 1, ys, neg);
    run_fails(g, &p, &in, "labels: label -1 at flat index 1");
    /* Weights of another length than the classes: the input's shape is wrong. */
    add_i64(&in, "labels", 1, ys, yv);
    int64_t ws4[1] = {4};
    static const float wv4[4] = {1, 1, 1, 1};
    add_f32(&in, "class_weights", 1, ws4, wv4);
    run_fails(g, &p, &in, "input 'class_weights' has shape");
    rt_list_free(&in);
    ir_graph_free(g);
}

Test(interp, gather_layernorm_and_prefix_rows_by_hand)
{
    /* Embedding-like: table [4, 2] gathered by ids [B, S], plus position rows [0, S) of a
     * [5, 2] table, then layernorm with gamma (2, 1) and beta (0, 1). */
    ir_graph *g = ir_graph_new("emb");
    int ids = ir_input(g, "ids", ty(IR_I64, 2, B, S));
    int tab = ir_param(g, "tab", ty(IR_F32, 2, C(4), C(2)));
    int pos = ir_param(g, "pos", ty(IR_F32, 2, C(5), C(2)));
    int ga = ir_param(g, "gamma", ty(IR_F32, 1, C(2)));
    int be = ir_param(g, "beta", ty(IR_F32, 1, C(2)));
    int x = ir_addv(g, ir_gather(g, tab, ids), ir_prefix_rows(g, pos, S));
    ir_set_output(g, "x", x);
    ir_set_output(g, "y", ir_layernorm(g, x, ga, be, 1e-12));
    static const float tv[8] = {0, 1, 10, 20, 3, 3, -1, -2};
    static const float pv[10] = {1, 0, 0, 2, 7, 7, 7, 7, 7, 7};
    static const float gv[2] = {2, 1}, bv[2] = {0, 1};
    static const int64_t iv[4] = {1, 3, 2, 0}; /* B = 2, S = 2 */
    static const double xw[8] = {11, 20, -1, 0, 4, 3, 0, 3};
    /* A row (a, b) normalizes to (-1, 1) if a < b, (1, -1) if a > b. */
    static const double yw[8] = {-2, 2, -2, 2, 2, 0, -2, 2};
    int64_t ts[2] = {4, 2}, ps[2] = {5, 2}, vs[1] = {2}, is[2] = {2, 2}, xs[3] = {2, 2, 2};
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&p, "tab", 2, ts, tv);
    add_f32(&p, "pos", 2, ps, pv);
    add_f32(&p, "gamma", 1, vs, gv);
    add_f32(&p, "beta", 1, vs, bv);
    add_i64(&in, "ids", 2, is, iv);
    run(g, &p, &in, 1, &out);
    expect_values(&out, "x", 3, xs, xw, 1e-12);
    expect_values(&out, "y", 3, xs, yw, 1e-9);
    rt_list_free(&out);
    /* An id outside the table is an error naming the ids. */
    static const int64_t bad[4] = {1, 4, 2, 0};
    add_i64(&in, "ids", 2, is, bad);
    run_fails(g, &p, &in, "ids");
    /* S = 6 is more rows than pos has: an error, not a read past the table. */
    int64_t is6[2] = {1, 6};
    static const int64_t six[6] = {0, 1, 2, 3, 0, 1};
    add_i64(&in, "ids", 2, is6, six);
    run_fails(g, &p, &in, "pos");
    rt_list_free(&in);
    /* A missing or mis-shaped parameter is named. */
    rt_list_init(&in);
    add_i64(&in, "ids", 2, is, iv);
    rt_list_remove(&p, "beta");
    run_fails(g, &p, &in, "beta");
    add_f32(&p, "beta", 1, ts, NULL); /* [4] instead of [2] */
    run_fails(g, &p, &in, "beta");
    rt_list_free(&in);
    rt_list_free(&p);
    ir_graph_free(g);
}

Test(interp, elementwise_ops_by_hand)
{
    ir_graph *g = ir_graph_new("elem");
    int x = ir_input(g, "x", ty(IR_F32, 2, B, C(3)));
    int v = ir_param(g, "v", ty(IR_F32, 1, C(3)));
    ir_set_output(g, "tanh", ir_unary(g, IR_OP_TANH, x));
    ir_set_output(g, "gelu", ir_unary(g, IR_OP_GELU, x));
    ir_set_output(g, "gelu_tanh", ir_unary(g, IR_OP_GELU_TANH, x));
    ir_set_output(g, "mul", ir_mul(g, x, v));
    ir_set_output(g, "scale", ir_scale(g, x, -0.25));
    static const float xv[3] = {-1, 0, 2}, vv[3] = {3, 4, 0.5f};
    int64_t xs[2] = {1, 3}, vs[1] = {3};
    double th[3], ge[3], gt[3], mu[3] = {-3, 0, 1}, sc[3] = {0.25, 0, -0.5};
    for (int i = 0; i < 3; i++) {
        double a = xv[i];
        th[i] = tanh(a);
        ge[i] = 0.5 * a * (1 + erf(a / sqrt(2.0)));
        gt[i] = 0.5 * a * (1 + tanh(sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
    }
    rt_tensor_list in, p, out;
    rt_list_init(&in);
    rt_list_init(&p);
    add_f32(&in, "x", 2, xs, xv);
    add_f32(&p, "v", 1, vs, vv);
    run(g, &p, &in, 1, &out);
    expect_values(&out, "tanh", 2, xs, th, 1e-12);
    expect_values(&out, "gelu", 2, xs, ge, 1e-12);
    expect_values(&out, "gelu_tanh", 2, xs, gt, 1e-12);
    expect_values(&out, "mul", 2, xs, mu, 0);
    expect_values(&out, "scale", 2, xs, sc, 0);
    /* gelu and its tanh form are different functions. */
    cr_expect_neq(ge[0], gt[0]);
    rt_list_free(&out);
    rt_list_free(&in);
    rt_list_free(&p);
    ir_graph_free(g);
}
