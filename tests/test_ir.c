/* test_ir.c: the IR core — the op table, the builder's and verifier's rejections (each
 * with its message), the printer against hand-written text, print/parse round trips,
 * parse errors with their line numbers, and the parser's robustness on damaged text. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "util.h"

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

#define C(n) ir_dconst(n)
#define B IR_DIM_B
#define S IR_DIM_S

/* print(parse(print(g))) == print(g); returns the parsed graph for further checks. */
static ir_graph *round_trip(const ir_graph *g)
{
    char *text = ir_print_str(g);
    cr_assert_not_null(text);
    bc_err e = {{0}};
    ir_graph *h = ir_parse(text, "rt.ir", &e);
    cr_assert_not_null(h, "parse failed: %s\n%s", e.msg, text);
    char *again = ir_print_str(h);
    cr_assert_not_null(again);
    cr_assert_str_eq(again, text);
    free(text);
    free(again);
    return h;
}

static void expect_parse_error(const char *text, const char *want)
{
    bc_err e = {{0}};
    ir_graph *g = ir_parse(text, "model.ir", &e);
    cr_expect_null(g, "parsed, but expected: %s", want);
    ir_graph_free(g);
    cr_expect_str_eq(e.msg, want, "input:\n%sgot: %s", text, e.msg);
}

/* ---- the op table ---- */

Test(ir_ops, every_op_has_a_name_shape_rule_and_sane_operand_counts)
{
    for (int op = 0; op < IR_OP_COUNT; op++) {
        const ir_op_info *info = &ir_ops[op];
        cr_expect_not_null(info->name, "op %d has no name", op);
        cr_expect_not_null(info->shape, "op %d has no shape rule", op);
        cr_expect(info->min_in >= 0 && info->min_in <= info->max_in &&
                      info->max_in <= IR_MAX_INPUTS,
                  "op %d has bad operand counts", op);
        if (!info->name)
            continue;
        for (int k = 0; k < op; k++)
            cr_expect(!ir_ops[k].name || strcmp(ir_ops[k].name, info->name),
                      "ops %d and %d share the name %s", k, op, info->name);
    }
}

Test(ir_ops, roles_and_kinds_of_code_agree)
{
    /* Leaves are bound by name to tensors from outside and computed by nothing; a view
     * (runtime/plan.c aliases it to operand 0) has that one operand and its own type. */
    for (int op = 0; op < IR_OP_COUNT; op++) {
        const ir_op_info *info = &ir_ops[op];
        cr_expect(info->role == IR_ROLE_LEAF || info->role == IR_ROLE_FWD ||
                      info->role == IR_ROLE_GRAD || info->role == IR_ROLE_REGION,
                  "%s: role %d", info->name, info->role);
        cr_expect(info->code == IR_CODE_NONE || info->code == IR_CODE_VIEW ||
                      info->code == IR_CODE_KERNEL || info->code == IR_CODE_RESULT,
                  "%s: code %d", info->name, info->code);
        if (info->code == IR_CODE_RESULT) /* written by the fused node it reads */
            cr_expect(info->role == IR_ROLE_REGION && info->min_in == 1 &&
                          info->max_in == 1 && (info->attrs & IR_A_TYPE),
                      "%s: a further result reads one fused node and has its own type",
                      info->name);
        int leaf = info->role == IR_ROLE_LEAF;
        cr_expect_eq(leaf, info->code == IR_CODE_NONE,
                     "%s: leaves, and only they, are computed by no code", info->name);
        if (leaf)
            cr_expect(info->max_in == 0 && (info->attrs & IR_A_NAME),
                      "%s: a leaf has no operands and a name", info->name);
        if (info->code == IR_CODE_VIEW)
            cr_expect(info->min_in == 1 && info->max_in == 1 && (info->attrs & IR_A_TYPE),
                      "%s: a view has one operand and its own type", info->name);
    }
}

/* ---- the attribute table ---- */

Test(ir_attrs, every_attribute_bit_an_op_carries_has_one_row)
{
    for (int op = 0; op < IR_OP_COUNT; op++) {
        unsigned valued = ir_ops[op].attrs & ~(unsigned)IR_A_FLAGS;
        for (unsigned bit = 1; bit; bit <<= 1) {
            if (!(valued & bit))
                continue;
            int rows = 0;
            for (int k = 0; k < IR_ATTR_COUNT; k++)
                rows += ir_attr_table[k].bit == bit;
            cr_expect_eq(rows, 1, "%s carries attribute bit 0x%x, which has %d rows",
                         ir_ops[op].name, bit, rows);
        }
    }
}

Test(ir_attrs, rows_are_distinct_bits_in_increasing_order_that_some_op_carries)
{
    for (int k = 0; k < IR_ATTR_COUNT; k++) {
        const ir_attr_info *ai = &ir_attr_table[k];
        cr_assert_not_null(ai->name, "row %d has no name", k);
        cr_expect(ai->bit && !(ai->bit & (ai->bit - 1)), "%s: not a single bit", ai->name);
        cr_expect_not(ai->bit & IR_A_FLAGS, "%s: a flag bit has a row", ai->name);
        if (k)
            cr_expect_gt(ai->bit, ir_attr_table[k - 1].bit, "%s is out of order", ai->name);
        cr_expect_eq(ir_attr_find(ai->name, strlen(ai->name)), ai,
                     "%s is not found by its name", ai->name);
        int carried = 0;
        for (int op = 0; op < IR_OP_COUNT; op++)
            carried |= !!(ir_ops[op].attrs & ai->bit);
        cr_expect(carried, "no op carries %s", ai->name);
    }
    cr_expect_null(ir_attr_find("per", 3));
    cr_expect_null(ir_attr_find("tc", 2));
    cr_expect_null(ir_attr_find("", 0));
}

/* Gives a's attribute of row ai a value other than the zero a missing one defaults to. */
static void set_nonzero(const ir_attr_info *ai, ir_attrs *a)
{
    void *f = (char *)a + ai->offset;
    switch (ai->kind) {
    case IR_ATTR_INT:
        *(int *)f = 1;
        break;
    case IR_ATTR_I64:
        *(int64_t *)f = -3;
        break;
    case IR_ATTR_REAL:
        *(double *)f = 0.1;
        break;
    case IR_ATTR_PERM:
        ((int *)f)[0] = 1;
        break;
    }
}

Test(ir_attrs, print_equality_and_signature_see_each_carried_attribute_and_no_other)
{
    unsigned kinds = 0;
    for (int k = 0; k < IR_ATTR_COUNT; k++) {
        const ir_attr_info *ai = &ir_attr_table[k];
        kinds |= 1u << ai->kind;
        for (int op = 0; op < IR_OP_COUNT; op++) {
            ir_attrs a = {0}, b = {0};
            set_nonzero(ai, &b);
            char pa[256], pb[256], sa[256], sb[256];
            ir_attrs_print((ir_opcode)op, &a, 2, pa, sizeof pa);
            ir_attrs_print((ir_opcode)op, &b, 2, pb, sizeof pb);
            ir_attrs_signature((ir_opcode)op, &a, 2, sa, sizeof sa);
            ir_attrs_signature((ir_opcode)op, &b, 2, sb, sizeof sb);
            int carried = !!(ir_ops[op].attrs & ai->bit);
            cr_expect(ir_attrs_equal((ir_opcode)op, &b, &b));
            cr_expect_eq(!ir_attrs_equal((ir_opcode)op, &a, &b), carried,
                         "%s, %s: equality disagrees with the mask", ir_ops[op].name,
                         ai->name);
            cr_expect_eq(!!strcmp(pa, pb), carried, "%s, %s: text %s vs %s",
                         ir_ops[op].name, ai->name, pa, pb);
            cr_expect_eq(!!strcmp(sa, sb), carried, "%s, %s: signature %s vs %s",
                         ir_ops[op].name, ai->name, sa, sb);
            char named[32];
            snprintf(named, sizeof named, "%s=", ai->name);
            if (carried)
                cr_expect_not_null(strstr(pb, named), "%s: %s", ai->name, pb);
        }
    }
    cr_expect_eq(kinds,
                 (1u << IR_ATTR_INT) | (1u << IR_ATTR_I64) | (1u << IR_ATTR_REAL) |
                     (1u << IR_ATTR_PERM),
                 "a kind no row uses is untested here");
}

Test(ir_attrs, print_and_signature_write_each_kind_as_before)
{
    ir_attrs a = {0};
    a.tb = 1;
    a.axis = 2;
    a.index = -3;
    memcpy(a.perm, (int[]){0, 2, 1, 3}, sizeof(int[4]));
    a.eps = 1e-12;
    a.scale = 0.5;
    a.p = 0.1;
    static const struct {
        ir_opcode op;
        const char *text, *sig;
    } want[] = {
        {IR_OP_MATMUL, " {ta=0, tb=1}", "ta=0,tb=1,"},
        {IR_OP_TRANSPOSE, " {perm=[0, 2, 1, 3]}", "p0,p2,p1,p3,"},
        {IR_OP_SELECT, " {axis=2, index=-3}", "axis=2,index=-3,"},
        {IR_OP_LAYERNORM, " {eps=9.9999999999999998e-13}", "eps=9.9999999999999998e-13,"},
        {IR_OP_FILL, " {scale=0.5}", "scale=0.5,"},
        {IR_OP_DROPOUT, " {index=-3, p=0.10000000000000001}",
         "index=-3,p=0.10000000000000001,"},
        {IR_OP_GELU, "", ""},
        {IR_OP_PARAM, "", ""},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char buf[256];
        cr_expect_eq(ir_attrs_print(want[i].op, &a, 4, buf, sizeof buf),
                     strlen(want[i].text));
        cr_expect_str_eq(buf, want[i].text);
        cr_expect_eq(ir_attrs_signature(want[i].op, &a, 4, buf, sizeof buf),
                     strlen(want[i].sig));
        cr_expect_str_eq(buf, want[i].sig);
    }
    /* Like snprintf: cut to the buffer, the whole length returned. */
    char small[6];
    cr_expect_eq(ir_attrs_print(IR_OP_MATMUL, &a, 4, small, sizeof small), 13);
    cr_expect_str_eq(small, " {ta=");
    cr_expect_eq(ir_attrs_signature(IR_OP_TRANSPOSE, &a, 4, small, sizeof small), 12);
    cr_expect_str_eq(small, "p0,p2");
    cr_expect_eq(ir_attrs_signature(IR_OP_TRANSPOSE, &a, 4, NULL, 0), 12);
    /* perm writes as many entries as it is told, none for an impossible rank. */
    cr_expect_eq(ir_attrs_print(IR_OP_TRANSPOSE, &a, 2, small, sizeof small), 14);
    cr_expect_eq(ir_attrs_print(IR_OP_TRANSPOSE, &a, IR_MAX_RANK + 1, small, sizeof small),
                 10);
}

/* ---- builder rejections ---- */

static void expect_build_error(ir_graph *g, int rc, const char *want)
{
    cr_expect_eq(rc, -1);
    cr_expect(g->failed);
    cr_expect_str_eq(g->err.msg, want);
    ir_graph_free(g);
}

Test(ir_builder, rejects_wrong_operand_count)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_param(g, "x", ty(IR_F32, 2, C(4), C(8)));
    int in[2] = {x, x};
    expect_build_error(g, ir_add(g, IR_OP_TANH, in, 2, NULL, NULL, NULL),
                       "%1 (tanh): wrong number of operands");
}

Test(ir_builder, rejects_bad_perm)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(8)));
    int perm[3] = {0, 2, 2};
    expect_build_error(g, ir_transpose(g, x, perm),
                       "%1 (transpose): perm is not a permutation of rank 3");
}

Test(ir_builder, rejects_matmul_contraction_mismatch)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(128)));
    int w = ir_param(g, "w", ty(IR_F32, 2, C(64), C(32)));
    expect_build_error(g, ir_matmul(g, x, w, 0, 0),
                       "%2 (matmul): contraction sizes differ: 128 vs 64");
}

Test(ir_builder, rejects_add_of_a_non_suffix)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(128)));
    int y = ir_input(g, "y", ty(IR_F32, 2, B, C(128)));
    expect_build_error(g, ir_addv(g, x, y),
                       "%2 (add): rhs f32[B, 128] is not a suffix of lhs f32[B, S, 128]");
}

Test(ir_builder, rejects_layernorm_gamma_of_the_wrong_size)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(128)));
    int ga = ir_param(g, "g", ty(IR_F32, 1, C(64)));
    int be = ir_param(g, "b", ty(IR_F32, 1, C(128)));
    expect_build_error(
        g, ir_layernorm(g, x, ga, be, 1e-12),
        "%3 (layernorm): gamma and beta must be vectors of x's last dimension");
}

Test(ir_builder, rejects_attn_softmax_with_a_bad_mask)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 4, B, C(2), S, S));
    int m = ir_input(g, "m", ty(IR_F32, 2, B, S));
    expect_build_error(
        g, ir_attn_softmax(g, x, m, 0.5),
        "%2 (attn_softmax): mask must be i64 [batch, keys] matching the scores");
}

Test(ir_builder, rejects_select_axis_out_of_range)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(8)));
    expect_build_error(g, ir_select(g, x, 3, 0),
                       "%1 (select): axis 3 out of range for rank 3");
}

Test(ir_builder, rejects_cross_entropy_labels_of_the_wrong_rank)
{
    ir_graph *g = ir_graph_new("t");
    int lg = ir_input(g, "logits", ty(IR_F32, 3, B, S, C(10)));
    int lb = ir_input(g, "labels", ty(IR_I64, 1, B));
    expect_build_error(
        g, ir_cross_entropy(g, lg, lb),
        "%2 (cross_entropy): labels must be i64 with the logits' rank minus one");
}

Test(ir_builder, rejects_class_weights_of_the_wrong_type_or_length)
{
    static const struct {
        ir_type w;
        const char *why;
    } bad[] = {
        {{IR_I64, 1, {{10, 0, 0}}}, "i64"},
        {{IR_F32, 2, {{1, 0, 0}, {10, 0, 0}}}, "rank 2"},
        {{IR_F32, 1, {{9, 0, 0}}}, "9 classes of 10"},
        {{IR_F32, 1, {{1, 1, 0}}}, "B classes"},
        {{IR_F32, 0, {{0, 0, 0}}}, "a scalar"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        for (int grad = 0; grad <= 1; grad++) {
            ir_graph *g = ir_graph_new("t");
            int lg = ir_input(g, "logits", ty(IR_F32, 3, B, S, C(10)));
            int lb = ir_input(g, "labels", ty(IR_I64, 2, B, S));
            int dl = ir_input(g, "dloss", ty(IR_F32, 0));
            int w = ir_input(g, "w", bad[k].w);
            int rc = grad ? ir_add(g, IR_OP_CROSS_ENTROPY_GRAD, (int[]){lg, lb, dl, w}, 4,
                                   NULL, NULL, NULL)
                          : ir_cross_entropy_weighted(g, lg, lb, w);
            cr_expect_eq(rc, -1, "%s accepted (grad %d)", bad[k].why, grad);
            char want[160];
            snprintf(want, sizeof want,
                     "%%4 (%s): weights must be f32 [C], C the logits' last dimension",
                     grad ? "cross_entropy_grad" : "cross_entropy");
            cr_expect_str_eq(g->err.msg, want, "%s", bad[k].why);
            ir_graph_free(g);
        }
}

Test(ir_builder, takes_class_weights_only_as_the_last_operand)
{
    ir_graph *g = ir_graph_new("t");
    int lg = ir_input(g, "logits", ty(IR_F32, 2, B, C(7)));
    int lb = ir_input(g, "labels", ty(IR_I64, 1, B));
    int w = ir_input(g, "w", ty(IR_F32, 1, C(7)));
    expect_build_error(
        g, ir_add(g, IR_OP_CROSS_ENTROPY, (int[]){lg, lb, w, w}, 4, NULL, NULL, NULL),
        "%3 (cross_entropy): wrong number of operands");
    g = ir_graph_new("t");
    lg = ir_input(g, "logits", ty(IR_F32, 2, B, C(7)));
    lb = ir_input(g, "labels", ty(IR_I64, 1, B));
    w = ir_input(g, "w", ty(IR_F32, 1, C(7)));
    /* the weights where dloss belongs */
    expect_build_error(
        g, ir_add(g, IR_OP_CROSS_ENTROPY_GRAD, (int[]){lg, lb, w}, 3, NULL, NULL, NULL),
        "%3 (cross_entropy_grad): dloss must be an f32 scalar");
}

Test(ir_builder, rejects_reshape_changing_the_element_count)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(128)));
    ir_dim d[2] = {ir_dim_mul(B, S), C(64)};
    expect_build_error(
        g, ir_reshape(g, x, 2, d),
        "%1 (reshape): element counts differ: f32[B, S, 128] vs f32[B*S, 64]");
}

Test(ir_builder, rejects_a_declared_type_the_rule_disagrees_with)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 2, B, C(8)));
    ir_type wrong = ty(IR_F32, 2, B, C(9));
    expect_build_error(
        g, ir_add(g, IR_OP_TANH, &x, 1, NULL, NULL, &wrong),
        "%1 (tanh): declared type f32[B, 9], but the shape rule gives f32[B, 8]");
}

Test(ir_builder, failure_is_sticky)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 2, B, C(8)));
    cr_expect_eq(ir_select(g, x, 5, 0), -1);
    cr_expect_eq(ir_unary(g, IR_OP_TANH, x), -1);
    cr_expect_eq(g->n, 1);
    cr_expect_str_eq(g->err.msg, "%1 (select): axis 5 out of range for rank 2");
    ir_graph_free(g);
}

/* ---- verifier rejections on hand-made graphs ---- */

static void expect_verify_error(ir_graph *g, const char *want)
{
    bc_err e = {{0}};
    cr_expect_eq(ir_verify(g, &e), -1);
    cr_expect_str_eq(e.msg, want);
    ir_graph_free(g);
}

Test(ir_verify, rejects_use_before_definition)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 2, B, C(8)));
    int y = ir_unary(g, IR_OP_TANH, x);
    ir_unary(g, IR_OP_GELU, y);
    cr_assert(!g->failed);
    g->nodes[1].in[0] = 2;
    expect_verify_error(g, "%1 (tanh): operand 0 (%2) is not defined before use");
}

/* pack_b: its panels' shape; a matmul's third operand is pack_b of its rhs with its tb;
 * nothing else reads panels. */
Test(ir_verify, pack_b_shapes_and_readers)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 2, B, C(20)));
    int w = ir_param(g, "w", ty(IR_F32, 2, C(33), C(20))); /* [N, K]: tb */
    int w2 = ir_param(g, "w2", ty(IR_F32, 2, C(33), C(20)));
    ir_attrs a = {0};
    a.tb = 1;
    int p = ir_add(g, IR_OP_PACK_B, &w, 1, &a, NULL, NULL);
    cr_assert(!g->failed, "%s", g->err.msg);
    /* N = 33 in three panels of 16, zero past 33 */
    cr_expect(ir_type_eq(&g->nodes[p].type, &(ir_type){IR_F32, 3, {C(3), C(20), C(16)}}));
    int m = ir_add(g, IR_OP_MATMUL, (int[]){x, w, p}, 3, &a, NULL, NULL);
    cr_assert(!g->failed, "%s", g->err.msg);
    cr_expect(ir_type_eq(&g->nodes[m].type, &(ir_type){IR_F32, 2, {B, C(33)}}));
    bc_err e;
    cr_expect_eq(ir_verify(g, &e), 0, "%s", e.msg);
    g->nodes[m].in[1] = w2; /* another weight's panels */
    expect_verify_error(
        g, "%4 (matmul): operand 2 must be pack_b of operand 1 (%2) with tb=1");

    g = ir_graph_new("t");
    x = ir_input(g, "x", ty(IR_F32, 2, B, C(20)));
    w = ir_param(g, "w", ty(IR_F32, 2, C(20), C(16)));
    p = ir_add(g, IR_OP_PACK_B, &w, 1, &(ir_attrs){0}, NULL, NULL);
    ir_add(g, IR_OP_TANH, &p, 1, NULL, NULL, NULL);
    cr_assert(!g->failed, "%s", g->err.msg);
    expect_verify_error(g, "%3 (tanh): operand 0 reads pack_b %2, which only a matmul's "
                           "operand 2 may");
}

Test(ir_verify, rejects_duplicate_param_names)
{
    ir_graph *g = ir_graph_new("t");
    ir_param(g, "w", ty(IR_F32, 1, C(8)));
    ir_param(g, "w", ty(IR_F32, 1, C(8)));
    cr_assert(!g->failed);
    expect_verify_error(g, "%1 (param): name \"w\" already used by %0");
}

Test(ir_verify, rejects_duplicate_output_names)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 1, C(8)));
    ir_set_output(g, "y", x);
    /* ir_set_output replaces an output of the same name, so add the twin by hand. */
    cr_assert(g->outcap >= 2);
    g->outs[1].name = strdup("y");
    g->outs[1].value = x;
    g->nout = 2;
    expect_verify_error(g, "output \"y\" is defined twice");
}

Test(ir_verify, rejects_a_node_whose_type_is_wrong)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 2, B, C(8)));
    ir_unary(g, IR_OP_TANH, x);
    g->nodes[1].type.dim[1] = C(9);
    expect_verify_error(g,
                        "%1 (tanh): type is f32[B, 9], but the shape rule gives f32[B, 8]");
}

Test(ir_verify, rejects_an_output_of_an_undefined_value)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 1, C(8)));
    ir_set_output(g, "y", x);
    g->outs[0].value = 7;
    expect_verify_error(g, "output \"y\": %7 is not defined");
}

/* A region of three statements (%2 tanh, %3 scale, %4 tanh) on x, then `extra`: result
 * nodes reading it, parsed (and so verified); *e says why not. */
static ir_graph *parse_results(const char *extra, bc_err *e)
{
    char text[1024];
    snprintf(
        text, sizeof text,
        "graph \"r\" {\n"
        "  %%0 = input \"x\" : f32[B, 8]\n"
        "  %%1 = fused \"%%1 = tanh %%0 : f32[B, 8]; %%2 = scale %%1 {scale=2} : f32[B, "
        "8]; %%3 = tanh %%2 : f32[B, 8]\" %%0 : f32[B, 8]\n"
        "%s"
        "  output \"y\" = %%1\n"
        "}\n",
        extra);
    return ir_parse(text, "r.ir", e);
}

Test(ir_verify, checks_the_results_of_a_region)
{
    bc_err e = {{0}};
    ir_graph *g = parse_results("  %2 = result %1 {index=1} : f32[B, 8]\n"
                                "  %3 = result %1 {index=2} : f32[B, 8]\n",
                                &e);
    cr_assert(g, "%s", e.msg);
    int res[IR_MAX_RESULTS];
    cr_expect_eq(ir_region_results(g, 1, res), 2);
    cr_expect(res[0] == 2 && res[1] == 3);
    ir_graph_free(g);
    static const struct {
        const char *extra, *msg;
    } bad[] = {
        {"  %2 = result %0 {index=1} : f32[B, 8]\n", "reads input, not a fused node"},
        {"  %2 = result %1 {index=0} : f32[B, 8]\n",
         "index 0 is not a statement of the body before its last (%1 .. %2)"},
        {"  %2 = result %1 {index=3} : f32[B, 8]\n", "index 3 is not a statement"},
        {"  %2 = result %1 {index=2} : f32[B, 9]\n",
         "body statement %2 is f32[B, 8], not the node's f32[B, 9]"},
        {"  %2 = result %1 {index=2} : f32[B, 8]\n  %3 = result %1 {index=2} : f32[B, 8]\n",
         "%3 (result): %2 already reads statement %2 of %1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e = (bc_err){{0}};
        g = parse_results(bad[i].extra, &e);
        cr_expect(!g && strstr(e.msg, bad[i].msg), "case %zu: %s", i, e.msg);
        ir_graph_free(g);
    }
}

/* ---- printing ---- */

/* A small graph that uses every op. */
static ir_graph *every_op_graph(void)
{
    ir_graph *g = ir_graph_new("tiny \"every\" op");
    int emb = ir_param(g, "emb", ty(IR_F32, 2, C(100), C(8)));
    int ids = ir_input(g, "ids", ty(IR_I64, 2, B, S));
    int x = ir_gather(g, emb, ids);
    int ga = ir_param(g, "ln.g", ty(IR_F32, 1, C(8)));
    int be = ir_param(g, "ln.b", ty(IR_F32, 1, C(8)));
    int h = ir_layernorm(g, x, ga, be, 1e-12);
    int w = ir_param(g, "w", ty(IR_F32, 2, C(8), C(8)));
    int hw = ir_matmul(g, h, w, 0, 1);
    int y = ir_addv(g, hw, be);
    ir_dim heads[4] = {B, S, C(2), C(4)};
    int q = ir_transpose(g, ir_reshape(g, y, 4, heads), (int[]){0, 2, 1, 3});
    int sc = ir_matmul(g, q, q, 0, 1);
    int mask = ir_input(g, "mask", ty(IR_I64, 2, B, S));
    int pr = ir_attn_softmax(g, sc, mask, 0.5);
    ir_matmul(g, pr, q, 1, 0);
    int cls = ir_select(g, h, 1, 0);
    ir_scale(g, ir_unary(g, IR_OP_TANH, cls), -0.25);
    int ge = ir_unary(g, IR_OP_GELU, y);
    int act = ir_mul(g, ge, ir_unary(g, IR_OP_GELU_TANH, y));
    int dec = ir_prefix_rows(g, emb, C(16));
    int logits = ir_matmul(g, act, dec, 0, 1);
    int labels = ir_input(g, "labels", ty(IR_I64, 2, B, S));
    int loss = ir_cross_entropy(g, logits, labels);
    ir_set_output(g, "loss", loss);
    ir_set_output(g, "hidden", h);
    cr_assert(!g->failed, "%s", g->err.msg);
    return g;
}

static const char every_op_text[] =
    "graph \"tiny \\\"every\\\" op\" {\n"
    "  %0 = param \"emb\" : f32[100, 8]\n"
    "  %1 = input \"ids\" : i64[B, S]\n"
    "  %2 = gather %0, %1 : f32[B, S, 8]\n"
    "  %3 = param \"ln.g\" : f32[8]\n"
    "  %4 = param \"ln.b\" : f32[8]\n"
    "  %5 = layernorm %2, %3, %4 {eps=9.9999999999999998e-13} : f32[B, S, 8]\n"
    "  %6 = param \"w\" : f32[8, 8]\n"
    "  %7 = matmul %5, %6 {ta=0, tb=1} : f32[B, S, 8]\n"
    "  %8 = add %7, %4 : f32[B, S, 8]\n"
    "  %9 = reshape %8 : f32[B, S, 2, 4]\n"
    "  %10 = transpose %9 {perm=[0, 2, 1, 3]} : f32[B, 2, S, 4]\n"
    "  %11 = matmul %10, %10 {ta=0, tb=1} : f32[B, 2, S, S]\n"
    "  %12 = input \"mask\" : i64[B, S]\n"
    "  %13 = attn_softmax %11, %12 {scale=0.5} : f32[B, 2, S, S]\n"
    "  %14 = matmul %13, %10 {ta=1, tb=0} : f32[B, 2, S, 4]\n"
    "  %15 = select %5 {axis=1, index=0} : f32[B, 8]\n"
    "  %16 = tanh %15 : f32[B, 8]\n"
    "  %17 = scale %16 {scale=-0.25} : f32[B, 8]\n"
    "  %18 = gelu %8 : f32[B, S, 8]\n"
    "  %19 = gelu_tanh %8 : f32[B, S, 8]\n"
    "  %20 = mul %18, %19 : f32[B, S, 8]\n"
    "  %21 = prefix_rows %0 : f32[16, 8]\n"
    "  %22 = matmul %20, %21 {ta=0, tb=1} : f32[B, S, 16]\n"
    "  %23 = input \"labels\" : i64[B, S]\n"
    "  %24 = cross_entropy %22, %23 : f32[]\n"
    "  output \"loss\" = %24\n"
    "  output \"hidden\" = %5\n"
    "}\n";

Test(ir_print, writes_a_hand_built_graph_as_expected)
{
    ir_graph *g = every_op_graph();
    char *text = ir_print_str(g);
    cr_assert_not_null(text);
    cr_expect_str_eq(text, every_op_text);
    free(text);
    ir_graph_free(g);
}

Test(ir_print, file_and_string_forms_agree)
{
    ir_graph *g = every_op_graph();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_expect_eq(ir_print(g, f), 0);
    fclose(f);
    cr_expect_str_eq(buf, every_op_text);
    free(buf);
    ir_graph_free(g);
}

Test(ir_print, escapes_names)
{
    ir_graph *g = ir_graph_new("q\"b\\s\n\x01\x7f caf\xc3\xa9");
    ir_param(g, "t\tab", ty(IR_F32, 0));
    char *text = ir_print_str(g);
    cr_expect_str_eq(text, "graph \"q\\\"b\\\\s\\x0a\\x01\\x7f caf\xc3\xa9\" {\n"
                           "  %0 = param \"t\\x09ab\" : f32[]\n"
                           "}\n");
    free(text);
    ir_graph_free(round_trip(g));
    ir_graph_free(g);
}

/* ---- round trips ---- */

static int add(ir_graph *g, ir_opcode op, int nin, const int *in, ir_attrs a, ir_type *t)
{
    return ir_add(g, op, in, nin, &a, NULL, t);
}

/* Every op every_op_graph leaves out: dropout and the ops autodiff introduces. */
static ir_graph *gradient_ops_graph(void)
{
    ir_graph *g = ir_graph_new("grads");
    ir_type bsh = ty(IR_F32, 3, B, S, C(8)), bsc = ty(IR_F32, 3, B, S, C(16));
    ir_type h8 = ty(IR_F32, 1, C(8)), table = ty(IR_F32, 2, C(100), C(8));
    int x = ir_input(g, "x", bsh);
    int dy = ir_input(g, "dy", bsh);
    int seed = ir_input(g, "seed", ty(IR_I64, 0));
    int ids = ir_input(g, "ids", ty(IR_I64, 2, B, S));
    int ga = ir_param(g, "gamma", ty(IR_F32, 1, C(8)));
    int tab = ir_param(g, "table", ty(IR_F32, 2, C(16), C(8)));
    ir_attrs a = {0};
    a.p = 0.1;
    a.index = 3;
    add(g, IR_OP_DROPOUT, 2, (int[]){x, seed}, a, NULL);
    a = (ir_attrs){0};
    a.scale = 1.0;
    add(g, IR_OP_FILL, 0, NULL, a, &bsh);
    add(g, IR_OP_REDUCE_SUM, 1, &dy, (ir_attrs){0}, &h8);
    add(g, IR_OP_SCATTER_ADD, 2, (int[]){ids, dy}, (ir_attrs){0}, &table);
    add(g, IR_OP_PAD_ROWS, 1, &tab, (ir_attrs){0}, &table);
    add(g, IR_OP_GELU_GRAD, 2, (int[]){x, dy}, (ir_attrs){0}, NULL);
    add(g, IR_OP_GELU_TANH_GRAD, 2, (int[]){x, dy}, (ir_attrs){0}, NULL);
    add(g, IR_OP_TANH_GRAD, 2, (int[]){x, dy}, (ir_attrs){0}, NULL);
    a = (ir_attrs){0};
    a.eps = 1e-5;
    add(g, IR_OP_LAYERNORM_DX, 3, (int[]){x, ga, dy}, a, NULL);
    add(g, IR_OP_LAYERNORM_DGAMMA, 2, (int[]){x, dy}, a, NULL);
    int mask = ir_input(g, "mask", ty(IR_I64, 2, B, C(8)));
    int sm = ir_attn_softmax(g, x, mask, 0.35355339059327379);
    a = (ir_attrs){0};
    a.scale = 0.35355339059327379;
    add(g, IR_OP_SOFTMAX_GRAD, 2, (int[]){sm, dy}, a, NULL);
    int cls = ir_select(g, dy, 1, 0);
    a = (ir_attrs){0};
    a.axis = 1;
    add(g, IR_OP_SELECT_GRAD, 1, &cls, a, &bsh);
    int logits = ir_input(g, "logits", bsc);
    int dloss = ir_input(g, "dloss", ty(IR_F32, 0));
    int dl = add(g, IR_OP_CROSS_ENTROPY_GRAD, 3, (int[]){logits, ids, dloss}, (ir_attrs){0},
                 NULL);
    ir_set_output(g, "dlogits", dl);
    /* a region: matmul, bias, gelu, dropout */
    int w = ir_param(g, "w", ty(IR_F32, 2, C(8), C(8)));
    ir_type hh = ty(IR_F32, 3, B, S, C(8));
    int fu = ir_add(g, IR_OP_FUSED, (int[]){x, w, ga, seed}, 4, NULL,
                    "%4 = matmul %0, %1 {ta=0, tb=1} : f32[B, S, 8]; "
                    "%5 = add %4, %2 : f32[B, S, 8]; %6 = gelu %5 : f32[B, S, 8]; "
                    "%7 = dropout %6, %3 {index=2, p=0.25} : f32[B, S, 8]",
                    &hh);
    ir_set_output(g, "fused", fu);
    /* a region with a further result: its matmul's value before the bias */
    a = (ir_attrs){0};
    a.index = 4;
    int mm = ir_add(g, IR_OP_RESULT, &fu, 1, &a, NULL, &hh);
    ir_set_output(g, "fused_mm", mm);
    /* the pack rule: a weight in panels, read as the matmul's third operand */
    a = (ir_attrs){0};
    a.tb = 1;
    int pw = add(g, IR_OP_PACK_B, 1, &w, a, NULL);
    ir_set_output(g, "packed",
                  ir_add(g, IR_OP_MATMUL, (int[]){x, w, pw}, 3, &a, NULL, NULL));
    cr_assert(!g->failed, "%s", g->err.msg);
    return g;
}

/* Every field of ir_attrs equal (doubles bit for bit, every perm entry). Not memcmp of
 * the whole struct: its padding (after axis) is whatever the builder's caller left in
 * the copy it passed, and differs from run to run. */
_Static_assert(sizeof(ir_attrs) == offsetof(ir_attrs, p) + sizeof(double),
               "a field after p: compare it in attrs_same");
static int attrs_same(const ir_attrs *a, const ir_attrs *b)
{
    return a->ta == b->ta && a->tb == b->tb && a->axis == b->axis && a->index == b->index &&
           !memcmp(a->perm, b->perm, sizeof a->perm) && !memcmp(&a->eps, &b->eps, 8) &&
           !memcmp(&a->scale, &b->scale, 8) && !memcmp(&a->p, &b->p, 8);
}

static void expect_same_graph(const ir_graph *h, const ir_graph *g)
{
    cr_assert_eq(h->n, g->n);
    cr_expect_eq(h->nout, g->nout);
    cr_expect_str_eq(h->name, g->name);
    for (int i = 0; i < g->n; i++) {
        const ir_node *a = &g->nodes[i], *b = &h->nodes[i];
        cr_expect_eq(b->op, a->op);
        cr_expect_eq(b->nin, a->nin);
        cr_expect(!memcmp(b->in, a->in, sizeof a->in[0] * (size_t)a->nin), "%%%d", i);
        cr_expect(ir_type_eq(&b->type, &a->type), "%%%d", i);
        cr_expect(attrs_same(&b->a, &a->a), "%%%d attributes differ", i);
        cr_expect((!a->name && !b->name) || !strcmp(a->name, b->name), "%%%d", i);
    }
    for (int k = 0; k < g->nout; k++) {
        cr_expect_str_eq(h->outs[k].name, g->outs[k].name);
        cr_expect_eq(h->outs[k].value, g->outs[k].value);
    }
}

Test(ir_parse, round_trips_graphs_using_every_op)
{
    ir_graph *gs[2] = {every_op_graph(), gradient_ops_graph()};
    int used[IR_OP_COUNT] = {0};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < gs[k]->n; i++)
            used[gs[k]->nodes[i].op] = 1;
        ir_graph *h = round_trip(gs[k]);
        expect_same_graph(h, gs[k]);
        for (int i = 0; i < h->n; i++) {
            const ir_node *a = &gs[k]->nodes[i], *b = &h->nodes[i];
            char sa[256], sb[256];
            ir_attrs_signature(a->op, &a->a, a->type.rank, sa, sizeof sa);
            ir_attrs_signature(b->op, &b->a, b->type.rank, sb, sizeof sb);
            cr_expect(ir_attrs_equal(a->op, &a->a, &b->a), "%%%d: attributes differ", i);
            cr_expect_str_eq(sa, sb, "%%%d", i);
        }
        ir_graph_free(h);
        ir_graph_free(gs[k]);
    }
    for (int op = 0; op < IR_OP_COUNT; op++)
        cr_expect(used[op], "no round-trip graph uses %s; add it to gradient_ops_graph",
                  ir_ops[op].name);
}

static const char weighted_ce_text[] =
    "graph \"weighted\" {\n"
    "  %0 = input \"logits\" : f32[B, S, 7]\n"
    "  %1 = input \"labels\" : i64[B, S]\n"
    "  %2 = input \"class_weights\" : f32[7]\n"
    "  %3 = cross_entropy %0, %1, %2 : f32[]\n"
    "  %4 = input \"dloss\" : f32[]\n"
    "  %5 = cross_entropy_grad %0, %1, %4, %2 : f32[B, S, 7]\n"
    "  %6 = cross_entropy %0, %1 : f32[]\n"
    "  %7 = cross_entropy_grad %0, %1, %4 : f32[B, S, 7]\n"
    "  output \"loss\" = %3\n"
    "  output \"dlogits\" = %5\n"
    "  output \"plain\" = %6\n"
    "  output \"dplain\" = %7\n"
    "}\n";

/* The class weights are an ordinary operand: printed after the others, parsed back. */
Test(ir_parse, round_trips_class_weighted_cross_entropy_and_its_gradient)
{
    ir_graph *g = ir_graph_new("weighted");
    int lg = ir_input(g, "logits", ty(IR_F32, 3, B, S, C(7)));
    int lb = ir_input(g, "labels", ty(IR_I64, 2, B, S));
    int w = ir_input(g, "class_weights", ty(IR_F32, 1, C(7)));
    int loss = ir_cross_entropy_weighted(g, lg, lb, w);
    int dl = ir_input(g, "dloss", ty(IR_F32, 0));
    int d =
        add(g, IR_OP_CROSS_ENTROPY_GRAD, 4, (int[]){lg, lb, dl, w}, (ir_attrs){0}, NULL);
    int plain = ir_cross_entropy(g, lg, lb);
    int dp = add(g, IR_OP_CROSS_ENTROPY_GRAD, 3, (int[]){lg, lb, dl}, (ir_attrs){0}, NULL);
    ir_set_output(g, "loss", loss);
    ir_set_output(g, "dlogits", d);
    ir_set_output(g, "plain", plain);
    ir_set_output(g, "dplain", dp);
    cr_assert(!g->failed, "%s", g->err.msg);
    char *text = ir_print_str(g);
    cr_expect_str_eq(text, weighted_ce_text);
    free(text);
    ir_graph *h = round_trip(g);
    expect_same_graph(h, g);
    cr_expect_eq(h->nodes[3].nin, 3);
    cr_expect_eq(h->nodes[5].nin, 4);
    cr_expect_eq(h->nodes[6].nin, 2);
    ir_graph_free(h);
    ir_graph_free(g);
    /* A fifth operand of the gradient, or a fourth of the loss, is refused by count. */
    expect_parse_error("graph \"g\" {\n"
                       "  %0 = input \"x\" : f32[B, 7]\n"
                       "  %1 = input \"y\" : i64[B]\n"
                       "  %2 = input \"w\" : f32[7]\n"
                       "  %3 = cross_entropy %0, %1, %2, %2 : f32[]\n"
                       "}\n",
                       "model.ir:5: cross_entropy takes 2 to 3 operands, not 4");
    expect_parse_error("graph \"g\" {\n"
                       "  %0 = input \"x\" : f32[B, 7]\n"
                       "  %1 = input \"y\" : i64[B]\n"
                       "  %2 = input \"w\" : f32[5]\n"
                       "  %3 = cross_entropy %0, %1, %2 : f32[]\n"
                       "}\n",
                       "model.ir:5: %3 (cross_entropy): weights must be f32 [C], C the "
                       "logits' last dimension");
}

Test(ir_parse, round_trips_awkward_doubles_and_dims)
{
    double vals[] = {1e-12, 1.0 / 3.0, 0.125, 1e300, 5e-324, 0.17677669529663687, 1e-5};
    for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
        ir_graph *g = ir_graph_new("d");
        ir_dim big = ir_dim_mul(ir_dim_mul(C(3), B), ir_dim_mul(B, S));
        int x = ir_input(g, "x", ty(IR_F32, 3, big, C(2), C(6)));
        int ga = ir_param(g, "g", ty(IR_F32, 1, C(6)));
        int ln = ir_layernorm(g, x, ga, ga, vals[k]);
        ir_dim flat[2] = {ir_dim_mul(big, C(2)), C(6)};
        ir_reshape(g, ln, 2, flat);
        cr_assert(!g->failed, "%s", g->err.msg);
        ir_graph *h = round_trip(g);
        cr_expect_eq(h->nodes[2].a.eps, vals[k]);
        ir_graph_free(h);
        ir_graph_free(g);
    }
}

Test(ir_parse, round_trips_an_empty_graph)
{
    ir_graph *g = ir_graph_new("");
    ir_graph *h = round_trip(g);
    cr_expect_eq(h->n, 0);
    ir_graph_free(h);
    ir_graph_free(g);
}

Test(ir_parse, accepts_comments_blank_lines_and_unnormalized_dims)
{
    const char *text = "# a comment\n"
                       "\n"
                       "graph \"g\" {   # trailing comment\n"
                       "  %0 = input \"x\" : f32[S*B*2*3, 007]\n"
                       "\n"
                       "  %1 = tanh %0 : f32[6*B*S, 7]\n"
                       "  %2 = select %1 {index=0} : f32[7]\n"
                       "  output \"y\" = %2\n"
                       "}\n"
                       "# done\n";
    bc_err e = {{0}};
    ir_graph *g = ir_parse(text, "c.ir", &e);
    cr_assert_not_null(g, "%s", e.msg);
    char *out = ir_print_str(g);
    cr_expect_str_eq(out, "graph \"g\" {\n"
                          "  %0 = input \"x\" : f32[6*B*S, 7]\n"
                          "  %1 = tanh %0 : f32[6*B*S, 7]\n"
                          "  %2 = select %1 {axis=0, index=0} : f32[7]\n"
                          "  output \"y\" = %2\n"
                          "}\n");
    free(out);
    ir_graph_free(g);
}

/* ---- parse errors ---- */

#define HEAD "graph \"g\" {\n  %0 = input \"x\" : f32[B, S, 128]\n"

Test(ir_parse, reports_errors_with_file_and_line)
{
    expect_parse_error("", "model.ir:1: expected 'graph' at the start");
    expect_parse_error("graph {\n}\n",
                       "model.ir:1: expected the graph's quoted name after 'graph'");
    expect_parse_error("graph \"g\"\n%0",
                       "model.ir:1: expected '{' after the graph's name");
    expect_parse_error(HEAD, "model.ir:2: expected '}' at the end of the graph");
    expect_parse_error(HEAD "}\n}\n",
                       "model.ir:4: unexpected text after the graph's closing '}'");
    expect_parse_error(HEAD "  %1 = tanh %0 f32[B, S, 128]\n}\n",
                       "model.ir:3: expected ':' before the type");
    expect_parse_error(HEAD "  %1 = tanh %0\n  %2 = tanh %1 : f32[B, S, 128]\n}\n",
                       "model.ir:3: expected ':' before the type");
    expect_parse_error(HEAD "\n\n  %1 = matmull %0, %0 : f32[B, S, 128]\n}\n",
                       "model.ir:5: unknown op 'matmull'");
    expect_parse_error(HEAD "  %1 = tanh %3 : f32[B, S, 128]\n}\n",
                       "model.ir:3: %3 used before it is defined");
    expect_parse_error(HEAD "  %1 = tanh %1 : f32[B, S, 128]\n}\n",
                       "model.ir:3: %1 used before it is defined");
    expect_parse_error(
        HEAD "  %2 = tanh %0 : f32[B, S, 128]\n}\n",
        "model.ir:3: expected %1 here, not %2 (values are numbered in order)");
    expect_parse_error(HEAD "  %1 = param \"w\" : f32[64, 32]\n"
                            "  %2 = matmul %0, %1 {ta=0, tb=0} : f32[B, S, 32]\n}\n",
                       "model.ir:4: %2 (matmul): contraction sizes differ: 128 vs 64");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[B, S, 64]\n}\n",
                       "model.ir:3: %1 (tanh): declared type f32[B, S, 64], but the shape "
                       "rule gives f32[B, S, 128]");
    expect_parse_error(HEAD "  %1 = tanh %0, %0 : f32[B, S, 128]\n}\n",
                       "model.ir:3: tanh takes 1 operand, not 2");
    expect_parse_error(HEAD "  %1 = add %0 : f32[B, S, 128]\n}\n",
                       "model.ir:3: add takes 2 operands, not 1");
    expect_parse_error(HEAD "  %1 = add %0, %0, %0, %0, %0, %0, %0, %0, %0 : f32[B, S, 128]\n}\n",
                       "model.ir:3: add takes at most 2 operands");
    expect_parse_error(HEAD "  %1 = add %0, : f32[B, S, 128]\n}\n",
                       "model.ir:3: expected an operand after ','");
    expect_parse_error(HEAD "  %1 = tanh \"n\" %0 : f32[B, S, 128]\n}\n",
                       "model.ir:3: tanh takes no name");
    expect_parse_error(HEAD "  %1 = param : f32[2]\n}\n",
                       "model.ir:3: expected a quoted name after 'param'");
    expect_parse_error(HEAD "  %1 = param \"x\" : f32[2]\n  %2 = param \"x\" : f32[2]\n}\n",
                       "model.ir:4: %2 (param): name \"x\" already used by %1");
    expect_parse_error(HEAD "  output \"y\" = %0\n  output \"y\" = %0\n}\n",
                       "model.ir:4: output \"y\" is defined twice");
    expect_parse_error(HEAD "  output \"y\" = %1\n}\n",
                       "model.ir:3: %1 used before it is defined");
    expect_parse_error(HEAD "  output y = %0\n}\n",
                       "model.ir:3: expected a quoted name after 'output'");
    expect_parse_error(HEAD "  output \"y\" %0\n}\n",
                       "model.ir:3: expected '=' after the output's name");
    expect_parse_error(HEAD "  tanh %0\n}\n",
                       "model.ir:3: expected '%N = ...', 'output' or '}'");
    expect_parse_error(HEAD "  %1 tanh %0\n}\n", "model.ir:3: expected '=' after %1");
    expect_parse_error(HEAD "  %1 = %0\n}\n", "model.ir:3: expected an op name after '='");
    expect_parse_error(HEAD "  % 1 = tanh %0\n}\n",
                       "model.ir:3: expected a value number after '%'");
    expect_parse_error(HEAD "  %99999999999 = tanh %0\n}\n",
                       "model.ir:3: value number too large");
    expect_parse_error(HEAD "  %1 = tanh %0 : f16[B]\n}\n",
                       "model.ir:3: unknown dtype 'f16'");
    expect_parse_error(HEAD "  %1 = tanh %0 : [B]\n}\n", "model.ir:3: expected a type");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32 B\n}\n",
                       "model.ir:3: expected '[' after the dtype");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[B S]\n}\n",
                       "model.ir:3: expected ',' or ']' in the type");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[B, T]\n}\n",
                       "model.ir:3: expected a dimension (a positive integer, B or S)");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[B, 0]\n}\n",
                       "model.ir:3: dimension factors must be positive integers");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[B, -4]\n}\n",
                       "model.ir:3: dimension factors must be positive integers");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[B, 1.5]\n}\n",
                       "model.ir:3: dimension factors must be positive integers");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[1, 2, 3, 4, 5, 6, 7]\n}\n",
                       "model.ir:3: a type has at most 6 dimensions");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[4294967296*4294967296]\n}\n",
                       "model.ir:3: dimension too large");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[4294967296, 4294967296]\n}\n",
                       "model.ir:3: type has too many elements");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[99999999999999999999]\n}\n",
                       "model.ir:3: dimension out of range");
    expect_parse_error(HEAD "  %1 = tanh %0 : f32[B*B*B*B*B*B*B*B*B*B*B*B*B*B*B*B*B]\n}\n",
                       "model.ir:3: dimension has more than 16 factors of B and S");
}

Test(ir_parse, reports_attribute_errors)
{
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {tc=1} : f32[B, S, S]\n}\n",
                       "model.ir:3: unknown attribute 'tc'");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {eps=1} : f32[B, S, S]\n}\n",
                       "model.ir:3: matmul has no attribute 'eps'");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {tb=1, tb=1} : f32[B, S, S]\n}\n",
                       "model.ir:3: attribute 'tb' given twice");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {tb 1} : f32[B, S, S]\n}\n",
                       "model.ir:3: expected '=' after 'tb'");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {tb=1 ta=0} : f32[B, S, S]\n}\n",
                       "model.ir:3: expected ',' or '}' in the attributes");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {tb=0.5} : f32[B, S, S]\n}\n",
                       "model.ir:3: expected an integer for 'tb'");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {tb=4294967296} : f32[B, S, S]\n}\n",
                       "model.ir:3: 'tb' out of range");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {tb=2} : f32[B, S, S]\n}\n",
                       "model.ir:3: %1 (matmul): ta and tb must be 0 or 1");
    expect_parse_error(HEAD "  %1 = matmul %0, %0 {, } : f32[B, S, S]\n}\n",
                       "model.ir:3: expected an attribute name");
    expect_parse_error(HEAD "  %1 = transpose %0 {perm=[0, 2]} : f32[B, 128, S]\n}\n",
                       "model.ir:3: perm has 2 entries, but the operand has rank 3");
    expect_parse_error(HEAD
                       "  %1 = transpose %0 {perm=[0, 2, 1, 3, 4, 5, 6]} : f32[B]\n}\n",
                       "model.ir:3: perm has more than 6 entries");
    expect_parse_error(HEAD "  %1 = transpose %0 {perm=[0, 2, 2]} : f32[B, 128, 128]\n}\n",
                       "model.ir:3: %1 (transpose): perm is not a permutation of rank 3");
    expect_parse_error(HEAD "  %1 = transpose %0 {perm=0} : f32[B, S, 128]\n}\n",
                       "model.ir:3: expected '[' to start the perm list");
    expect_parse_error(HEAD "  %1 = transpose %0 {perm=[0 1]} : f32[B, S, 128]\n}\n",
                       "model.ir:3: expected ',' or ']' in the perm list");
    expect_parse_error(HEAD "  %1 = param \"g\" : f32[128]\n"
                            "  %2 = layernorm %0, %1, %1 {eps=1e999} : f32[B, S, 128]\n}\n",
                       "model.ir:4: 'eps' must be a finite number");
    expect_parse_error(HEAD "  %1 = param \"g\" : f32[128]\n"
                            "  %2 = layernorm %0, %1, %1 {eps=inf} : f32[B, S, 128]\n}\n",
                       "model.ir:4: expected a number for 'eps'");
    /* A missing attribute defaults to 0, which layernorm's rule rejects. */
    expect_parse_error(HEAD "  %1 = param \"g\" : f32[128]\n"
                            "  %2 = layernorm %0, %1, %1 : f32[B, S, 128]\n}\n",
                       "model.ir:4: %2 (layernorm): eps must be positive");
    expect_parse_error(HEAD "  %1 = select %0 {axis=-1, index=0} : f32[B, 128]\n}\n",
                       "model.ir:3: %1 (select): axis -1 out of range for rank 3");
}

Test(ir_parse, reports_string_and_character_errors)
{
    expect_parse_error("graph \"g\n\" {\n}\n", "model.ir:1: unterminated string");
    expect_parse_error("graph \"g", "model.ir:1: unterminated string");
    expect_parse_error("graph \"g\\q\" {\n}\n",
                       "model.ir:1: unknown escape '\\q' in a string");
    expect_parse_error("graph \"g\\x4\" {\n}\n",
                       "model.ir:1: expected two hex digits after \\x");
    expect_parse_error("graph \"g\\x00\" {\n}\n",
                       "model.ir:1: \\x00 is not allowed in a string");
    expect_parse_error("graph \"g\" {\n  @\n}\n", "model.ir:2: unexpected character '@'");
    expect_parse_error("graph \"g\" {\n  \x01\n}\n", "model.ir:2: unexpected byte 0x01");
}

Test(ir_parse, null_filename_and_null_err_are_allowed)
{
    bc_err e = {{0}};
    cr_expect_null(ir_parse("graph", NULL, &e));
    cr_expect_str_eq(e.msg, "<input>:1: expected the graph's quoted name after 'graph'");
    cr_expect_null(ir_parse("nonsense", "x.ir", NULL));
}

/* ---- robustness ---- */

/* Parses text; a success must verify and print stably, a failure must name the file. */
static void parse_any(const char *text)
{
    bc_err e = {{0}};
    ir_graph *g = ir_parse(text, "fuzz.ir", &e);
    if (!g) {
        cr_assert(!strncmp(e.msg, "fuzz.ir:", 8), "bad message: %s", e.msg);
        return;
    }
    cr_assert_eq(ir_verify(g, &e), 0, "%s", e.msg);
    ir_graph_free(round_trip(g));
    ir_graph_free(g);
}

Test(ir_parse, survives_truncation_at_every_offset)
{
    ir_graph *g = every_op_graph();
    char *text = ir_print_str(g);
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    for (size_t k = 0; k <= len; k++) {
        memcpy(buf, text, k);
        buf[k] = 0;
        parse_any(buf);
    }
    free(buf);
    free(text);
    ir_graph_free(g);
}

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

Test(ir_parse, survives_random_mutations)
{
    static const char *frags[] = {"%",   "%0",  "%99",  "\"",  "\\",     "{",   "}",
                                  "[",   "]",   ",",    "*",   "=",      ":",   "B",
                                  "S",   "-",   "0",    "1e9", "1e999",  "#",   "\n",
                                  "f32", "i64", "perm", "eps", "matmul", "\\x", "\x80"};
    ir_graph *g = every_op_graph();
    char *text = ir_print_str(g);
    size_t len = strlen(text);
    char *buf = malloc(len * 2 + 64);
    uint64_t seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, text, len + 1);
        size_t n = len;
        int edits = 1 + (int)(rng_next(&seed) % 4);
        for (int k = 0; k < edits; k++) {
            size_t at = rng_next(&seed) % (n + 1);
            switch (rng_next(&seed) % 4) {
            case 0: /* delete a span */ {
                size_t d = rng_next(&seed) % 8;
                if (at + d > n)
                    d = n - at;
                memmove(buf + at, buf + at + d, n - at - d + 1);
                n -= d;
                break;
            }
            case 1: /* replace a byte */
                if (at < n)
                    buf[at] = (char)(1 + rng_next(&seed) % 255);
                break;
            case 2: /* insert a fragment */ {
                const char *f = frags[rng_next(&seed) % (sizeof frags / sizeof frags[0])];
                size_t fl = strlen(f);
                if (n + fl < len * 2 + 32) {
                    memmove(buf + at + fl, buf + at, n - at + 1);
                    memcpy(buf + at, f, fl);
                    n += fl;
                }
                break;
            }
            default: /* duplicate a line-sized span */ {
                size_t d = rng_next(&seed) % 40;
                if (at + d > n)
                    d = n - at;
                if (n + d < len * 2 + 32) {
                    memmove(buf + at + d, buf + at, n - at + 1);
                    n += d;
                }
                break;
            }
            }
        }
        parse_any(buf);
    }
    free(buf);
    free(text);
    ir_graph_free(g);
}

/* ---- fused regions ---- */

#define FHEAD                                                                              \
    "graph \"g\" {\n  %0 = input \"x\" : f32[B, S, 8]\n  %1 = param \"w\" : f32[4, 8]\n"   \
    "  %2 = param \"b\" : f32[4]\n"

Test(ir_region, the_region_graph_has_one_input_per_operand_and_the_body)
{
    bc_err e = {{0}};
    ir_graph *g = ir_parse(FHEAD "  %3 = fused \"%3 = matmul %0, %1 {ta=0, tb=1} : f32[B, S, "
                                 "4]; %4 = add %3, %2 : f32[B, S, 4]; %5 = tanh %4 : f32[B, S, "
                                 "4]\" %0, %1, %2 : f32[B, S, 4]\n"
                                 "  %4 = fused \"%3 = matmul %0, %1 {ta=0, tb=1} : f32[B, S, "
                                 "4]; %4 = add %3, %2 : f32[B, S, 4]; %5 = tanh %4 : f32[B, S, "
                                 "4]\" %0, %1, %2 : f32[B, S, 4]\n"
                                 "  output \"y\" = %4\n}\n",
                           "f.ir", &e);
    cr_assert_not_null(g, "%s", e.msg); /* two equal bodies: names of leaves only are unique */
    ir_graph *r = ir_region_graph(g, &g->nodes[3], &e);
    cr_assert_not_null(r, "%s", e.msg);
    cr_expect_eq(r->n, 6);
    static const ir_opcode want[] = {IR_OP_INPUT, IR_OP_INPUT, IR_OP_INPUT,
                                     IR_OP_MATMUL, IR_OP_ADD, IR_OP_TANH};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(r->nodes[i].op, want[i], "%%%d", i);
    for (int i = 0; i < 3; i++)
        cr_expect(ir_type_eq(&r->nodes[i].type, &g->nodes[i].type), "%%%d", i);
    cr_expect_eq(ir_find_output(r, "out"), 5);
    /* and the body a pass would write for those nodes reads back the same */
    ir_graph_free(r);
    ir_graph_free(g);
}

Test(ir_region, ir_region_body_writes_statements_the_parser_reads)
{
    ir_graph *g = ir_graph_new("g");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(8)));
    int w = ir_param(g, "w", ty(IR_F32, 2, C(4), C(8)));
    int b = ir_param(g, "b", ty(IR_F32, 1, C(4)));
    int m = ir_matmul(g, x, w, 0, 1), a = ir_addv(g, m, b), t = ir_scale(g, a, 0.5);
    cr_assert(!g->failed, "%s", g->err.msg);
    char *body = ir_region_body(g, (int[]){m, a, t}, 3, (int[]){x, w, b}, 3);
    cr_assert_not_null(body);
    cr_expect_str_eq(body, "%3 = matmul %0, %1 {ta=0, tb=1} : f32[B, S, 4]; "
                           "%4 = add %3, %2 : f32[B, S, 4]; "
                           "%5 = scale %4 {scale=0.5} : f32[B, S, 4]");
    int f = ir_add(g, IR_OP_FUSED, (int[]){x, w, b}, 3, NULL, body,
                   &g->nodes[t].type);
    cr_expect_geq(f, 0, "%s", g->err.msg);
    free(body);
    ir_graph_free(g);
}

Test(ir_region, bad_bodies_are_errors_naming_the_statement)
{
    expect_parse_error(FHEAD "  %3 = fused \"%2 = matmul %0, %1 {ta=0, tb=1} : f32[B, S, 4]; "
                             "%3 = frob %2 : f32[B, S, 4]\" %0, %1 : f32[B, S, 4]\n}\n",
                       "model.ir:5: %3 (fused): body statement 2: unknown op 'frob'");
    expect_parse_error(FHEAD "  %3 = fused \"%2 = matmul %0, %1 {ta=0, tb=1} : f32[B, S, 4]\" "
                             "%0, %1 : f32[B, S, 5]\n}\n",
                       "model.ir:5: %3 (fused): the body's result is f32[B, S, 4], not the "
                       "node's f32[B, S, 5]");
    expect_parse_error(FHEAD "  %3 = fused \"%3 = tanh %0 : f32[B, S, 8]\" %0, %1 : f32[B, S, "
                             "8]\n}\n",
                       "model.ir:5: %3 (fused): body statement 1: expected %2 here, not %3 "
                       "(values are numbered in order)");
    expect_parse_error(FHEAD "  %3 = fused \"%1 = fill {scale=1} : f32[B, S, 8]\" %0 : f32[B, S, "
                             "8]\n}\n",
                       "model.ir:5: %3 (fused): body statement 1: fill cannot be fused");
    expect_parse_error(FHEAD "  %3 = fused \"\" %0 : f32[B, S, 8]\n}\n",
                       "model.ir:5: %3 (fused): a fused node needs a body");
    expect_parse_error(FHEAD "  %3 = fused \"%1 = tanh %0 : f32[B, S, 8]\" : f32[B, S, 8]\n}\n",
                       "model.ir:5: fused takes 1 to 8 operands, not 0");
}

/* ---- cost ---- */

Test(ir_flops, counts_2mnk_of_every_matmul_form_and_nothing_else)
{
    ir_graph *g = ir_graph_new("t");
    int x = ir_input(g, "x", ty(IR_F32, 3, B, S, C(4)));
    int w = ir_param(g, "w", ty(IR_F32, 2, C(4), C(3)));
    int q = ir_input(g, "q", ty(IR_F32, 4, B, C(2), S, C(5)));
    int v = ir_input(g, "v", ty(IR_F32, 3, B, S, C(6)));
    int y = ir_matmul(g, x, w, 0, 0); /* [B,S,4] x [4,3]: M=B*S (shared rhs), N=3, K=4 */
    int s = ir_matmul(g, q, q, 0, 1); /* [B,2,S,5] x [B,2,S,5]^T: [B,2,S,S], K=5 */
    int t = ir_matmul(g, y, v, 1, 0); /* [B,S,3]^T x [B,S,6]: [B,3,6], K=S */
    int z = ir_addv(g, y, y);         /* not a matmul: not counted */
    int u = ir_unary(g, IR_OP_TANH, s);
    cr_assert(z >= 0 && u >= 0 && t >= 0, "%s", g->err.msg);
    for (int64_t b = 1; b <= 3; b += 2)
        for (int64_t n = 1; n <= 7; n += 3) {
            double want =
                2.0 * b * n * 3 * 4 + 2.0 * b * 2 * n * n * 5 + 2.0 * b * 3 * 6 * n;
            cr_expect_eq(ir_matmul_flops(g, b, n), want,
                         "B=%lld S=%lld: %.17g, expected %.17g", (long long)b, (long long)n,
                         ir_matmul_flops(g, b, n), want);
        }
    ir_graph_free(g);
    ir_graph *empty = ir_graph_new("e");
    cr_expect_eq(ir_matmul_flops(empty, 8, 128), 0.0);
    ir_graph_free(empty);
}
