/* test_passes.c: the pass manager and the simplifying passes — DCE of unrequested
 * heads, CSE of hand-built duplicates, canonicalize's folds, the shape pass catching a
 * tampered type, pass_install, pipelines with unknown passes and --print-after-all
 * blocks, and that the default pipeline leaves the interpreter's outputs on run_tiny bit
 * for bit. */
#include <criterion/criterion.h>
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

static ir_type f32(int rank, ...)
{
    ir_dim d[IR_MAX_RANK];
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        d[i] = va_arg(ap, ir_dim);
    va_end(ap);
    return ir_type_make(IR_F32, rank, d);
}

static int count_op(const ir_graph *g, ir_opcode op)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        n += g->nodes[i].op == op;
    return n;
}

static void expect_valid(const ir_graph *g)
{
    bc_err e = {{0}};
    cr_expect_eq(ir_verify(g, &e), 0, "%s", e.msg);
}

static void run_passes(ir_graph **g, const char *pipeline)
{
    bc_err e = {{0}};
    cr_assert_eq(pass_run_pipeline(g, pipeline, NULL, &e), 0, "%s: %s", pipeline, e.msg);
    expect_valid(*g);
}

/* ---- run_tiny: model, batch, weights ---------------------------------------------- */

static const char *fx(const char *file)
{
    static char buf[4][1024];
    static int k;
    char rel[256], *b = buf[k++ % 4];
    snprintf(rel, sizeof rel, "tests/fixtures/run_tiny/%s", file);
    snprintf(b, 1024, "%s", tu_src(rel));
    return b;
}

static ir_graph *tiny_graph(unsigned labels)
{
    fe_model m;
    bc_err e;
    cr_assert_eq(fe_load(fx("model.xml"), &m, &e), 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, labels, &e);
    cr_assert_not_null(g, "%s", e.msg);
    return g;
}

/* run_tiny's batch as interpreter inputs, and its weights as parameters of g. */
static void tiny_data(const ir_graph *g, rt_tensor_list *inputs, rt_tensor_list *params)
{
    fe_model m;
    bc_err e;
    rt_tensor_list batch, ckpt;
    rt_list_init(&batch);
    rt_list_init(&ckpt);
    rt_list_init(inputs);
    rt_list_init(params);
    cr_assert_eq(fe_load(fx("model.xml"), &m, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_st_load(fx("batch.safetensors"), &batch, &e), 0, "%s", e.msg);
    unsigned present;
    int64_t Bv, Sv;
    cr_assert_eq(tr_batch_prepare(&batch, m.max_position, FE_LABEL_ALL, inputs, &present,
                                  &Bv, &Sv, NULL, NULL, &e),
                 0, "%s", e.msg);
    cr_assert_eq(rt_st_load(fx("weights.safetensors"), &ckpt, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_params_from_checkpoint(g, &ckpt, 0, 0, params, NULL, NULL, &e), 0, "%s",
                 e.msg);
    rt_list_free(&batch);
    rt_list_free(&ckpt);
}

static void interp(const ir_graph *g, const rt_tensor_list *params,
                   const rt_tensor_list *inputs, rt_tensor_list *out)
{
    bc_err e = {{0}};
    rt_interp_opts o = {0, 1};
    rt_list_init(out);
    cr_assert_eq(rt_interp_run(g, params, inputs, &o, out, &e), 0, "%s", e.msg);
}

/* The interpreter's outputs of g on run_tiny's batch and weights. */
static void tiny_run(const ir_graph *g, rt_tensor_list *out)
{
    rt_tensor_list in, p;
    tiny_data(g, &in, &p);
    interp(g, &p, &in, out);
    rt_list_free(&in);
    rt_list_free(&p);
}

/* Runs pipeline on *g and expects the printed graph not to change. */
static void expect_unchanged_by(ir_graph **g, const char *pipeline)
{
    char *before = ir_print_str(*g);
    run_passes(g, pipeline);
    char *after = ir_print_str(*g);
    cr_assert(before && after);
    cr_expect_str_eq(after, before, "%s changed the graph", pipeline);
    free(before);
    free(after);
}

/* Same names in the same order, same shapes, same bits. */
static void expect_identical(const rt_tensor_list *a, const rt_tensor_list *b,
                             const char *what)
{
    cr_assert_eq(a->n, b->n, "%s: %d vs %d outputs", what, a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const rt_tensor *x = &a->t[i], *y = &b->t[i];
        cr_assert_str_eq(x->name, y->name, "%s", what);
        cr_assert(x->dtype == y->dtype && x->rank == y->rank &&
                      !memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->rank),
                  "%s: %s changed dtype or shape", what, x->name);
        cr_expect(!memcmp(x->data, y->data, rt_nbytes(x)), "%s: %s changed", what, x->name);
    }
}

/* ---- DCE --------------------------------------------------------------------------- */

Test(dce, removes_the_heads_when_only_the_encoder_outputs_are_kept)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    bc_err e;
    const char *keep[] = {"sequence_output", "pooled_output"};
    cr_assert_eq(pass_keep_outputs(g, keep, 2, &e), 0, "%s", e.msg);
    cr_expect_eq(g->nout, 2);
    int before = g->n;
    run_passes(&g, "dce");
    cr_expect_lt(g->n, before);
    static const char *const head_prefixes[] = {"cls.", "intent.", "slot.", "qa_outputs."};
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == IR_OP_PARAM)
            for (int k = 0; k < 4; k++)
                cr_expect(strncmp(n->name, head_prefixes[k], strlen(head_prefixes[k])),
                          "head parameter %s survived", n->name);
        if (n->op == IR_OP_INPUT)
            cr_expect(!strcmp(n->name, "input_ids") || !strcmp(n->name, "token_type_ids") ||
                          !strcmp(n->name, "attention_mask"),
                      "label input %s survived", n->name);
        cr_expect_neq(n->op, IR_OP_CROSS_ENTROPY, "%%%d: a loss survived", i);
    }
    /* The encoder is all still there: the outputs are those of the full graph. */
    ir_graph *full = tiny_graph(FE_LABEL_ALL);
    rt_tensor_list o_full, o_dce;
    tiny_run(full, &o_full);
    tiny_run(g, &o_dce);
    cr_assert_eq(o_dce.n, 2);
    rt_tensor_list first2 = {o_full.t, 2, 2};
    expect_identical(&first2, &o_dce, "encoder outputs after dce");
    rt_list_free(&o_full);
    rt_list_free(&o_dce);
    ir_graph_free(full);
    ir_graph_free(g);
}

Test(dce, removes_nothing_that_an_output_needs)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    expect_unchanged_by(&g, "dce");
    ir_graph_free(g);
}

Test(dce, removes_a_dead_chain_and_keeps_the_live_one)
{
    ir_graph *g = ir_graph_new("dead");
    int x = ir_param(g, "x", f32(2, C(2), C(3)));
    int unused = ir_param(g, "unused", f32(1, C(3)));
    int t = ir_unary(g, IR_OP_TANH, x);
    int dead = ir_scale(g, ir_addv(g, t, unused), 3.0);
    (void)dead;
    int live = ir_unary(g, IR_OP_GELU, t);
    ir_set_output(g, "y", live);
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    run_passes(&g, "dce");
    cr_expect_eq(g->n, 3, "%d nodes left, want x, tanh, gelu", g->n);
    cr_expect_eq(ir_find_named(g, IR_OP_PARAM, "unused"), -1);
    cr_expect_eq(count_op(g, IR_OP_SCALE) + count_op(g, IR_OP_ADD), 0);
    int y = ir_find_output(g, "y");
    cr_assert_geq(y, 0);
    cr_expect_eq(g->nodes[y].op, IR_OP_GELU);
    ir_graph_free(g);
}

Test(dce, keep_outputs_rejects_an_unknown_name_and_changes_nothing)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    int nout = g->nout;
    bc_err e = {{0}};
    const char *keep[] = {"sequence_output", "no_such_output"};
    cr_expect_eq(pass_keep_outputs(g, keep, 2, &e), -1);
    cr_expect(strstr(e.msg, "no_such_output") != NULL, "%s", e.msg);
    cr_expect_eq(g->nout, nout);
    ir_graph_free(g);
}

/* ---- CSE --------------------------------------------------------------------------- */

/* Deterministic values for every param of a hand-built graph, from its name (node
 * indices change under the passes; names do not). */
static void hand_params(const ir_graph *g, rt_tensor_list *p)
{
    rt_list_init(p);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_PARAM)
            continue;
        int64_t shape[IR_MAX_RANK], numel = 1;
        for (int d = 0; d < n->type.rank; d++)
            numel *= shape[d] = n->type.dim[d].c;
        rt_tensor *t = rt_list_add(p, n->name, RT_F32, n->type.rank, shape, NULL);
        cr_assert_not_null(t);
        int64_t salt = (int64_t)strlen(n->name) * 5 + n->name[0];
        for (int64_t k = 0; k < numel; k++)
            ((float *)t->data)[k] = (float)((k * 7 + salt) % 11) * 0.25f - 1.0f;
    }
}

static void hand_run(const ir_graph *g, rt_tensor_list *out)
{
    rt_tensor_list p, in;
    hand_params(g, &p);
    rt_list_init(&in);
    interp(g, &p, &in, out);
    rt_list_free(&p);
}

Test(cse, merges_identical_matmuls_and_keeps_different_attributes_apart)
{
    ir_graph *g = ir_graph_new("cse");
    int a = ir_param(g, "a", f32(2, C(3), C(3)));
    int b = ir_param(g, "b", f32(2, C(3), C(3)));
    int m1 = ir_matmul(g, a, b, 0, 0), m2 = ir_matmul(g, a, b, 0, 0);
    int m3 = ir_matmul(g, a, b, 0, 1), m4 = ir_matmul(g, a, b, 1, 0);
    int m5 = ir_matmul(g, b, a, 0, 0); /* operands swapped */
    int s1 = ir_scale(g, m1, 2.0), s2 = ir_scale(g, m2, 2.0), s3 = ir_scale(g, m2, 3.0);
    ir_set_output(g, "s1", s1);
    ir_set_output(g, "s2", s2);
    ir_set_output(g, "s3", s3);
    ir_set_output(g, "m3", m3);
    ir_set_output(g, "m4", m4);
    ir_set_output(g, "m5", m5);
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    rt_tensor_list before, after;
    hand_run(g, &before);
    run_passes(&g, "cse,dce");
    cr_expect_eq(count_op(g, IR_OP_MATMUL), 4, "matmuls: %d, want 4",
                 count_op(g, IR_OP_MATMUL));
    cr_expect_eq(count_op(g, IR_OP_SCALE), 2, "scales: %d, want 2",
                 count_op(g, IR_OP_SCALE));
    cr_expect_eq(count_op(g, IR_OP_PARAM), 2);
    cr_expect_eq(ir_find_output(g, "s1"), ir_find_output(g, "s2"));
    int vs[] = {ir_find_output(g, "s1"), ir_find_output(g, "s3"), ir_find_output(g, "m3"),
                ir_find_output(g, "m4"), ir_find_output(g, "m5")};
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            cr_expect_neq(vs[i], vs[j], "outputs %d and %d were merged", i, j);
    hand_run(g, &after);
    expect_identical(&before, &after, "cse");
    rt_list_free(&before);
    rt_list_free(&after);
    ir_graph_free(g);
}

Test(cse, merges_through_chains_of_duplicates)
{
    ir_graph *g = ir_graph_new("chain");
    int a = ir_param(g, "a", f32(2, C(3), C(3)));
    int b = ir_param(g, "b", f32(2, C(3), C(3)));
    int t1 = ir_unary(g, IR_OP_TANH, a), t2 = ir_unary(g, IR_OP_TANH, a);
    int m1 = ir_matmul(g, t1, b, 0, 1), m2 = ir_matmul(g, t2, b, 0, 1);
    ir_set_output(g, "y", ir_addv(g, m1, m2));
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    run_passes(&g, "cse,dce");
    cr_expect_eq(count_op(g, IR_OP_TANH), 1);
    cr_expect_eq(count_op(g, IR_OP_MATMUL), 1);
    int y = ir_find_output(g, "y");
    cr_assert_geq(y, 0);
    cr_expect_eq(g->nodes[y].in[0], g->nodes[y].in[1],
                 "add of the merged matmul with itself");
    ir_graph_free(g);
}

Test(cse, never_merges_distinct_params_or_differently_shaped_reshapes)
{
    ir_graph *g = ir_graph_new("named");
    int a = ir_param(g, "a", f32(2, C(2), C(6)));
    int b = ir_param(g, "b", f32(2, C(2), C(6)));
    ir_dim d1[2] = {C(3), C(4)}, d2[2] = {C(4), C(3)};
    ir_set_output(g, "a", ir_unary(g, IR_OP_TANH, a));
    ir_set_output(g, "b", ir_unary(g, IR_OP_TANH, b));
    ir_set_output(g, "r1", ir_reshape(g, a, 2, d1));
    ir_set_output(g, "r2", ir_reshape(g, a, 2, d2));
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    int n = g->n;
    run_passes(&g, "cse");
    cr_expect_eq(g->n, n);
    ir_graph_free(g);
}

/* Cross-entropy with class weights is another value than without, and than with other
 * weights; the same weights twice are one value. */
Test(cse, keeps_weighted_and_unweighted_cross_entropy_apart)
{
    ir_graph *g = ir_graph_new("ce");
    int lg = ir_input(g, "logits", f32(2, B, C(5)));
    int lb = ir_input(g, "labels", ir_type_make(IR_I64, 1, (ir_dim[]){B}));
    int w = ir_input(g, "w", f32(1, C(5))), w2 = ir_input(g, "w2", f32(1, C(5)));
    ir_set_output(g, "plain", ir_cross_entropy(g, lg, lb));
    ir_set_output(g, "w", ir_cross_entropy_weighted(g, lg, lb, w));
    ir_set_output(g, "w_again", ir_cross_entropy_weighted(g, lg, lb, w));
    ir_set_output(g, "w2", ir_cross_entropy_weighted(g, lg, lb, w2));
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    run_passes(&g, "cse,dce");
    cr_expect_eq(count_op(g, IR_OP_CROSS_ENTROPY), 3);
    cr_expect_eq(g->outs[1].value, g->outs[2].value);
    cr_expect_neq(g->outs[0].value, g->outs[1].value);
    cr_expect_neq(g->outs[1].value, g->outs[3].value);
    ir_graph_free(g);
}

/* ---- canonicalize ------------------------------------------------------------------ */

/* One output "y" of a graph whose first node is param "x". Checks that canonicalize
 * (then dce) leaves `want_op_count` nodes of op, keeps y's type, and that y's value is
 * unchanged bit for bit. Returns the simplified graph. */
static ir_graph *canon(ir_graph *g, ir_opcode op, int want_op_count)
{
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    int y0 = ir_find_output(g, "y");
    ir_type ty = g->nodes[y0].type;
    rt_tensor_list before, after;
    hand_run(g, &before);
    run_passes(&g, "canonicalize,dce");
    cr_expect_eq(count_op(g, op), want_op_count, "%d %s nodes left, want %d",
                 count_op(g, op), ir_ops[op].name, want_op_count);
    int y = ir_find_output(g, "y");
    cr_assert_geq(y, 0);
    cr_expect(ir_type_eq(&g->nodes[y].type, &ty), "y's type changed");
    hand_run(g, &after);
    expect_identical(&before, &after, "canonicalize");
    rt_list_free(&before);
    rt_list_free(&after);
    return g;
}

Test(canonicalize, folds_transpose_of_transpose_into_one)
{
    /* Two perms that do not commute, so composing them in the wrong order shows. */
    ir_graph *g = ir_graph_new("tt");
    static const int p[3] = {1, 0, 2}, q[3] = {0, 2, 1};
    int x = ir_param(g, "x", f32(3, C(2), C(3), C(5)));
    ir_set_output(g, "y", ir_transpose(g, ir_transpose(g, x, p), q)); /* [3, 5, 2] */
    g = canon(g, IR_OP_TRANSPOSE, 1);
    const ir_node *y = &g->nodes[ir_find_output(g, "y")];
    cr_assert_eq(y->op, IR_OP_TRANSPOSE);
    cr_expect_eq(g->nodes[y->in[0]].op, IR_OP_PARAM, "the transpose reads x directly");
    /* out dim i = dim q[i] of the first result = x's dim p[q[i]]: {1, 2, 0}. */
    cr_expect(y->a.perm[0] == 1 && y->a.perm[1] == 2 && y->a.perm[2] == 0, "perm %d %d %d",
              y->a.perm[0], y->a.perm[1], y->a.perm[2]);
    ir_graph_free(g);
}

Test(canonicalize, folds_inverse_transposes_into_nothing)
{
    ir_graph *g = ir_graph_new("tinv");
    static const int p[4] = {0, 2, 1, 3}, q[4] = {1, 2, 3, 0}, qinv[4] = {3, 0, 1, 2};
    int x = ir_param(g, "x", f32(4, C(2), C(3), C(4), C(5)));
    ir_set_output(g, "y", ir_transpose(g, ir_transpose(g, x, p), p));
    ir_set_output(g, "z", ir_transpose(g, ir_transpose(g, x, q), qinv));
    g = canon(g, IR_OP_TRANSPOSE, 0);
    cr_expect_eq(ir_find_output(g, "y"), ir_find_named(g, IR_OP_PARAM, "x"));
    cr_expect_eq(ir_find_output(g, "z"), ir_find_named(g, IR_OP_PARAM, "x"));
    ir_graph_free(g);
}

Test(canonicalize, folds_transpose_chains_of_three)
{
    ir_graph *g = ir_graph_new("t3");
    static const int p[3] = {1, 2, 0};
    int x = ir_param(g, "x", f32(3, C(2), C(3), C(5)));
    ir_set_output(g, "y", ir_transpose(g, ir_transpose(g, ir_transpose(g, x, p), p), p));
    g = canon(g, IR_OP_TRANSPOSE, 0);
    ir_graph_free(g);
}

Test(canonicalize, folds_reshape_of_reshape_into_one)
{
    ir_graph *g = ir_graph_new("rr");
    ir_dim d1[3] = {C(3), C(2), C(2)}, d2[2] = {C(4), C(3)};
    int x = ir_param(g, "x", f32(2, C(2), C(6)));
    ir_set_output(g, "y", ir_reshape(g, ir_reshape(g, x, 3, d1), 2, d2));
    g = canon(g, IR_OP_RESHAPE, 1);
    const ir_node *y = &g->nodes[ir_find_output(g, "y")];
    cr_expect_eq(g->nodes[y->in[0]].op, IR_OP_PARAM, "the reshape reads x directly");
    ir_graph_free(g);
}

Test(canonicalize, folds_symbolic_reshapes_and_reshapes_back_to_nothing)
{
    /* [B, S, 6] -> [B, S, 2, 3] -> [B*S, 6] is one reshape; -> [B, S, 6] is none. */
    ir_graph *g = ir_graph_new("rs");
    ir_dim x_dims[3] = {B, S, C(6)};
    ir_dim d1[4] = {B, S, C(2), C(3)}, d2[2] = {ir_dim_mul(B, S), C(6)};
    ir_type xt = ir_type_make(IR_F32, 3, x_dims);
    int x = ir_input(g, "x", xt);
    int r1 = ir_reshape(g, x, 4, d1);
    ir_set_output(g, "y", ir_reshape(g, r1, 2, d2));
    ir_set_output(g, "z", ir_reshape(g, r1, 3, x_dims));
    cr_assert_eq(g->failed, 0, "%s", g->err.msg);
    run_passes(&g, "canonicalize,dce");
    cr_expect_eq(count_op(g, IR_OP_RESHAPE), 1);
    cr_expect_eq(ir_find_output(g, "z"), ir_find_named(g, IR_OP_INPUT, "x"));
    const ir_node *y = &g->nodes[ir_find_output(g, "y")];
    cr_expect_eq(y->op, IR_OP_RESHAPE);
    cr_expect_eq(g->nodes[y->in[0]].op, IR_OP_INPUT);
    ir_graph_free(g);
}

Test(canonicalize, folds_scale_of_scale_into_one)
{
    ir_graph *g = ir_graph_new("ss");
    int x = ir_param(g, "x", f32(2, C(2), C(3)));
    ir_set_output(g, "y", ir_scale(g, ir_scale(g, x, 2.0), 3.0));
    g = canon(g, IR_OP_SCALE, 1);
    const ir_node *y = &g->nodes[ir_find_output(g, "y")];
    cr_expect_eq(y->a.scale, 6.0);
    cr_expect_eq(g->nodes[y->in[0]].op, IR_OP_PARAM);
    ir_graph_free(g);
}

Test(canonicalize, drops_scale_by_one)
{
    ir_graph *g = ir_graph_new("s1");
    int x = ir_param(g, "x", f32(2, C(2), C(3)));
    ir_set_output(g, "y", ir_unary(g, IR_OP_TANH, ir_scale(g, x, 1.0)));
    g = canon(g, IR_OP_SCALE, 0);
    const ir_node *y = &g->nodes[ir_find_output(g, "y")];
    cr_expect_eq(g->nodes[y->in[0]].op, IR_OP_PARAM);
    ir_graph_free(g);
}

Test(canonicalize, scales_whose_product_is_one_fold_into_nothing)
{
    /* scale(scale(x, 2), 0.5) is x, as transpose folds its inverse pairs away. */
    ir_graph *g = ir_graph_new("s2");
    int x = ir_param(g, "x", f32(2, C(2), C(3)));
    ir_set_output(g, "y", ir_scale(g, ir_scale(g, x, 2.0), 0.5));
    g = canon(g, IR_OP_SCALE, 0);
    cr_expect_eq(ir_find_output(g, "y"), ir_find_named(g, IR_OP_PARAM, "x"));
    ir_graph_free(g);
}

Test(canonicalize, leaves_a_single_transpose_reshape_and_scale_alone)
{
    ir_graph *g = ir_graph_new("alone");
    static const int p[2] = {1, 0};
    ir_dim d[1] = {C(6)};
    int x = ir_param(g, "x", f32(2, C(2), C(3)));
    ir_set_output(g, "y", ir_scale(g, ir_reshape(g, ir_transpose(g, x, p), 1, d), 0.5));
    int n = g->n;
    g = canon(g, IR_OP_SCALE, 1);
    cr_expect_eq(g->n, n);
    ir_graph_free(g);
}

/* ---- the shape pass ---------------------------------------------------------------- */

/* The first node of op in g. */
static int first_node(const ir_graph *g, ir_opcode op)
{
    for (int j = 0; j < g->n; j++)
        if (g->nodes[j].op == op)
            return j;
    cr_assert_fail("no %s node", ir_ops[op].name);
    return -1;
}

static void expect_message_names_node(const bc_err *e, int k, ir_opcode op)
{
    char want[64];
    snprintf(want, sizeof want, "%%%d (%s)", k, ir_ops[op].name);
    cr_expect(strstr(e->msg, want) != NULL, "message '%s' does not name '%s'", e->msg,
              want);
}

Test(shape_pass, rejects_a_tampered_node_type_naming_the_node)
{
    static const ir_opcode ops[] = {IR_OP_GELU, IR_OP_MATMUL, IR_OP_LAYERNORM,
                                    IR_OP_SELECT};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        ir_graph *g = tiny_graph(FE_LABEL_ALL);
        int k = first_node(g, ops[i]);
        ir_node *n = &g->nodes[k];
        n->type.dim[n->type.rank - 1].c += 1;
        bc_err e = {{0}};
        cr_expect_eq(pass_shape(&g, &e), -1, "%s: tampered type accepted",
                     ir_ops[ops[i]].name);
        expect_message_names_node(&e, k, ops[i]);
        ir_graph_free(g);
    }
}

Test(shape_pass, rejects_a_tampered_dtype_through_the_pipeline)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    int k = first_node(g, IR_OP_TANH);
    g->nodes[k].type.dtype = IR_I64;
    bc_err e = {{0}};
    cr_expect_eq(pass_run_pipeline(&g, "shape", NULL, &e), -1);
    expect_message_names_node(&e, k, IR_OP_TANH);
    ir_graph_free(g);
}

Test(shape_pass, keeps_a_correct_graph_as_it_was)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    expect_unchanged_by(&g, "shape");
    ir_graph_free(g);
}

/* ---- installing a graph built node by node ----------------------------------------- */

/* x, tanh(x) as "y", gelu(x) as "z". */
static ir_graph *two_heads(void)
{
    ir_graph *g = ir_graph_new("two");
    int x = ir_input(g, "x", f32(2, B, C(8)));
    ir_set_output(g, "y", ir_unary(g, IR_OP_TANH, x));
    ir_set_output(g, "z", ir_unary(g, IR_OP_GELU, x));
    cr_assert(!g->failed, "%s", g->err.msg);
    return g;
}

Test(pass_install, gives_the_new_graph_the_outputs_through_the_map)
{
    ir_graph *g = two_heads(), *old = g;
    ir_graph *ng = ir_graph_new("two");
    int x = ir_input(ng, "x", f32(2, B, C(8)));
    ir_unary(ng, IR_OP_GELU, x);
    ir_unary(ng, IR_OP_TANH, x);
    const int map[3] = {0, 2, 1};
    bc_err e = {{0}};
    cr_assert_eq(pass_install(&g, ng, map, &e), 0, "%s", e.msg);
    cr_expect_eq(g, ng);
    cr_expect_neq(g, old);
    cr_expect_eq(g->nout, 2);
    cr_expect_eq(ir_find_output(g, "y"), 2);
    cr_expect_eq(ir_find_output(g, "z"), 1);
    expect_valid(g);
    ir_graph_free(g);
}

Test(pass_install, without_a_map_keeps_the_value_numbers)
{
    ir_graph *g = two_heads();
    ir_graph *ng = ir_graph_clone(g);
    cr_assert_not_null(ng);
    for (int k = 0; k < ng->nout; k++)
        free(ng->outs[k].name);
    ng->nout = 0;
    bc_err e = {{0}};
    cr_assert_eq(pass_install(&g, ng, NULL, &e), 0, "%s", e.msg);
    cr_expect_eq(g, ng);
    cr_expect_eq(ir_find_output(g, "y"), 1);
    cr_expect_eq(ir_find_output(g, "z"), 2);
    ir_graph_free(g);
}

Test(pass_install, a_failed_build_leaves_the_old_graph_and_reports_its_error)
{
    ir_graph *g = two_heads(), *old = g;
    ir_graph *ng = ir_graph_new("two");
    int x = ir_input(ng, "x", f32(2, B, C(8)));
    ir_select(ng, x, 5, 0);
    cr_assert(ng->failed);
    bc_err e = {{0}};
    cr_expect_eq(pass_install(&g, ng, NULL, &e), -1);
    cr_expect_str_eq(e.msg, "%1 (select): axis 5 out of range for rank 2");
    cr_expect_eq(g, old);
    cr_expect_eq(ir_find_output(g, "z"), 2);
    ir_graph_free(g);
}

/* ---- the pass manager -------------------------------------------------------------- */

Test(pass_manager, registry_has_the_default_passes_with_help)
{
    int n = 0;
    for (const pass_info *p = pass_registry; p->name; p++, n++) {
        cr_expect(p->help && *p->help, "%s has no help", p->name);
        cr_expect_not_null(p->run);
        cr_expect_eq(pass_find(p->name), p);
    }
    cr_expect_geq(n, 4);
    static const char *const want[] = {"shape", "canonicalize", "cse", "dce"};
    for (int i = 0; i < 4; i++)
        cr_expect_not_null(pass_find(want[i]), "%s is not registered", want[i]);
    cr_expect_null(pass_find("nope"));
}

Test(pass_manager, rejects_an_unknown_pass_by_name)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    bc_err e = {{0}};
    cr_expect_eq(pass_run_pipeline(&g, "shape,frobnicate,dce", NULL, &e), -1);
    cr_expect(strstr(e.msg, "frobnicate") != NULL, "message: %s", e.msg);
    cr_assert_not_null(g);
    expect_valid(g);
    ir_graph_free(g);
}

Test(pass_manager, print_after_prints_one_block_per_pass)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    bc_err e = {{0}};
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, f, &e), 0, "%s", e.msg);
    cr_assert_eq(fclose(f), 0);
    static const char *const names[] = {"shape", "canonicalize", "cse", "dce", "fuse"};
    const char *p = text, *last = NULL;
    int blocks = 0;
    for (const char *h = strstr(p, "# after "); h; h = strstr(h + 1, "# after ")) {
        cr_assert_lt(blocks, 5, "more than 5 blocks:\n%s", text);
        char want[64];
        snprintf(want, sizeof want, "# after %s\n", names[blocks]);
        cr_expect(!strncmp(h, want, strlen(want)), "block %d is not '%.*s'", blocks,
                  (int)strlen(want) - 1, want);
        cr_expect(h == text || h[-1] == '\n', "header not at a line start");
        last = h;
        blocks++;
    }
    cr_expect_eq(blocks, 5, "%d blocks", blocks);
    /* Each block is the graph as that pass left it: the last one is the result. */
    cr_assert_not_null(last);
    char *final = ir_print_str(g);
    cr_assert_not_null(final);
    cr_expect_str_eq(strchr(last, '\n') + 1, final);
    free(final);
    free(text);
    ir_graph_free(g);
}

Test(pass_manager, default_pipeline_keeps_interpreter_outputs_bit_for_bit)
{
    ir_graph *raw = tiny_graph(FE_LABEL_ALL), *opt = tiny_graph(FE_LABEL_ALL);
    run_passes(&opt, PASS_DEFAULT_PIPELINE);
    rt_tensor_list o_raw, o_opt;
    tiny_run(raw, &o_raw);
    tiny_run(opt, &o_opt);
    cr_expect_eq(o_raw.n, 14);
    expect_identical(&o_raw, &o_opt, "default pipeline");
    rt_list_free(&o_raw);
    rt_list_free(&o_opt);
    ir_graph_free(raw);
    ir_graph_free(opt);
}

Test(pass_manager, pipeline_is_idempotent_on_bert)
{
    ir_graph *g = tiny_graph(FE_LABEL_ALL);
    run_passes(&g, PASS_DEFAULT_PIPELINE);
    expect_unchanged_by(&g, PASS_DEFAULT_PIPELINE);
    ir_graph_free(g);
}
