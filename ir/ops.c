/* ops.c: the op table of the IR — one row per op with its name, operand counts,
 * attributes, role, kind of code, fusion class and shape rule. The other layers keep
 * their own tables indexed by the same enum (reference kernels, VJP rules, lowerings). */
#include "ir.h"

#include <math.h>
#include <string.h>

static const ir_type *in_type(const ir_graph *g, const ir_node *n, int i)
{
    return &g->nodes[n->in[i]].type;
}

static int need_f32(const ir_type *t, const char *what, bc_err *e)
{
    if (t->dtype != IR_F32)
        return bc_errf(e, "%s must be f32", what);
    return 0;
}

static int eps_ok(double eps)
{
    return eps > 0 && isfinite(eps);
}

/* An index along a dim of length len: in range when len is known, at least 0 always. */
static int check_index(int64_t index, ir_dim len, bc_err *e)
{
    if (index < 0 || (ir_dim_is_const(len) && index >= len.c))
        return bc_errf(e, "index %lld out of range", (long long)index);
    return 0;
}

/* Whether suffix's dims are the last of x's. */
static int is_suffix_of(const ir_type *suffix, const ir_type *x)
{
    if (suffix->rank > x->rank)
        return 0;
    int off = x->rank - suffix->rank;
    for (int i = 0; i < suffix->rank; i++)
        if (!ir_dim_eq(suffix->dim[i], x->dim[off + i]))
            return 0;
    return 1;
}

/* Ops with IR_A_TYPE carry their own type. */
static int shape_given(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    (void)g;
    if (n->type.rank < 0 || n->type.rank > IR_MAX_RANK)
        return bc_errf(e, "rank %d out of range", n->type.rank);
    for (int i = 0; i < n->type.rank; i++)
        if (n->type.dim[i].c <= 0)
            return bc_errf(e, "dimension %d is not positive", i);
    *out = n->type;
    return 0;
}

static int shape_param(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    if (shape_given(g, n, out, e))
        return -1;
    if (n->type.dtype != IR_F32)
        return bc_errf(e, "parameters must be f32");
    for (int i = 0; i < n->type.rank; i++)
        if (!ir_dim_is_const(n->type.dim[i]))
            return bc_errf(e, "parameter dimensions must be constants");
    return 0;
}

static int shape_gather(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *tab = in_type(g, n, 0), *ids = in_type(g, n, 1);
    if (need_f32(tab, "table", e))
        return -1;
    if (tab->rank != 2)
        return bc_errf(e, "table must have rank 2, not %d", tab->rank);
    if (ids->dtype != IR_I64)
        return bc_errf(e, "indices must be i64");
    if (ids->rank + 1 > IR_MAX_RANK)
        return bc_errf(e, "indices have too high a rank");
    *out = *ids;
    out->dtype = IR_F32;
    out->dim[out->rank++] = tab->dim[1];
    return 0;
}

/* The node's own type: the operand's with another dim 0 (pad_rows). */
static int shape_other_rows(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    if (shape_given(g, n, out, e))
        return -1;
    if (x->rank < 1 || out->rank != x->rank || out->dtype != x->dtype)
        return bc_errf(e, "result must have the operand's rank and dtype");
    for (int i = 1; i < x->rank; i++)
        if (!ir_dim_eq(x->dim[i], out->dim[i]))
            return bc_errf(e, "only dimension 0 may differ from the operand");
    return 0;
}

/* Another dim 0, and no more rows than the operand has. */
static int shape_prefix_rows(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    if (shape_other_rows(g, n, out, e))
        return -1;
    if (ir_dim_is_const(out->dim[0]) && ir_dim_is_const(x->dim[0]) &&
        out->dim[0].c > x->dim[0].c)
        return bc_errf(e, "takes %lld rows of %lld", (long long)out->dim[0].c,
                       (long long)x->dim[0].c);
    return 0;
}

static int shape_binary(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *a = in_type(g, n, 0), *b = in_type(g, n, 1);
    if (need_f32(a, "lhs", e) || need_f32(b, "rhs", e))
        return -1;
    if (b->rank > a->rank)
        return bc_errf(e, "rhs rank %d exceeds lhs rank %d", b->rank, a->rank);
    if (!is_suffix_of(b, a)) {
        char sa[128], sb[128];
        return bc_errf(e, "rhs %s is not a suffix of lhs %s", ir_type_str(b, sb, sizeof sb),
                       ir_type_str(a, sa, sizeof sa));
    }
    *out = *a;
    return 0;
}

/* pack_b's result: the K x N matrix op(w) in panels of IR_PACK_W columns */
static ir_type panels_type(int64_t k, int64_t n)
{
    ir_dim d[3] = {ir_dconst((n + IR_PACK_W - 1) / IR_PACK_W), ir_dconst(k),
                   ir_dconst(IR_PACK_W)};
    return ir_type_make(IR_F32, 3, d);
}

static int shape_matmul(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *a = in_type(g, n, 0), *b = in_type(g, n, 1);
    int ta = n->a.ta, tb = n->a.tb;
    if (need_f32(a, "lhs", e) || need_f32(b, "rhs", e))
        return -1;
    if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1))
        return bc_errf(e, "ta and tb must be 0 or 1");
    int r = a->rank;
    if (r < 2)
        return bc_errf(e, "lhs must have rank >= 2");
    if (b->rank != r && b->rank != 2)
        return bc_errf(e, "rhs must have rank 2 or the lhs's rank %d", r);
    if (b->rank != r && ta)
        return bc_errf(e, "ta needs a batched rhs");
    ir_dim m = ta ? a->dim[r - 1] : a->dim[r - 2];
    ir_dim ka = ta ? a->dim[r - 2] : a->dim[r - 1];
    int rb = b->rank;
    ir_dim kb = tb ? b->dim[rb - 1] : b->dim[rb - 2];
    ir_dim nn = tb ? b->dim[rb - 2] : b->dim[rb - 1];
    if (!ir_dim_eq(ka, kb)) {
        char s1[64], s2[64];
        return bc_errf(e, "contraction sizes differ: %s vs %s", ir_dim_str(ka, s1, 64),
                       ir_dim_str(kb, s2, 64));
    }
    if (rb == r)
        for (int i = 0; i < r - 2; i++)
            if (!ir_dim_eq(a->dim[i], b->dim[i]))
                return bc_errf(e, "batch dimension %d differs", i);
    if (n->nin == 3) { /* pack_b(b): b's panels */
        if (rb != 2 || !ir_dim_is_const(kb) || !ir_dim_is_const(nn))
            return bc_errf(e, "a packed rhs needs an unbatched rhs of constant shape");
        ir_type want = panels_type(kb.c, nn.c);
        if (!ir_type_eq(in_type(g, n, 2), &want))
            return bc_errf(e, "the packed rhs is not pack_b of the rhs (f32[%lld,%lld,%d])",
                           (long long)want.dim[0].c, (long long)kb.c, IR_PACK_W);
    }
    *out = *a;
    out->dim[r - 2] = m;
    out->dim[r - 1] = nn;
    return 0;
}

static int shape_pack_b(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *w = in_type(g, n, 0);
    if (need_f32(w, "the operand", e))
        return -1;
    if (n->a.tb != 0 && n->a.tb != 1)
        return bc_errf(e, "tb must be 0 or 1");
    if (w->rank != 2 || !ir_dim_is_const(w->dim[0]) || !ir_dim_is_const(w->dim[1]))
        return bc_errf(e, "the operand must be a matrix of constant shape");
    *out = panels_type(w->dim[n->a.tb ? 1 : 0].c, w->dim[n->a.tb ? 0 : 1].c);
    return 0;
}

static int shape_transpose(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    int seen[IR_MAX_RANK] = {0};
    for (int i = 0; i < x->rank; i++) {
        int p = n->a.perm[i];
        if (p < 0 || p >= x->rank || seen[p]++)
            return bc_errf(e, "perm is not a permutation of rank %d", x->rank);
    }
    *out = *x;
    for (int i = 0; i < x->rank; i++)
        out->dim[i] = x->dim[n->a.perm[i]];
    return 0;
}

static int shape_reshape(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    if (shape_given(g, n, out, e))
        return -1;
    if (out->dtype != x->dtype)
        return bc_errf(e, "reshape cannot change the dtype");
    if (ir_type_numel(out).c <= 0 || ir_type_numel(x).c <= 0)
        return bc_errf(e, "element count too large");
    if (!ir_dim_eq(ir_type_numel(out), ir_type_numel(x))) {
        char s1[128], s2[128];
        return bc_errf(e, "element counts differ: %s vs %s", ir_type_str(x, s1, 128),
                       ir_type_str(out, s2, 128));
    }
    return 0;
}

static int shape_unary(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    if (need_f32(x, "operand", e))
        return -1;
    *out = *x;
    return 0;
}

static int shape_scale(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    if (!isfinite(n->a.scale))
        return bc_errf(e, "scale must be finite");
    return shape_unary(g, n, out, e);
}

static int shape_layernorm(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0), *ga = in_type(g, n, 1), *be = in_type(g, n, 2);
    if (need_f32(x, "x", e) || need_f32(ga, "gamma", e) || need_f32(be, "beta", e))
        return -1;
    if (x->rank < 1)
        return bc_errf(e, "x must have rank >= 1");
    ir_dim h = x->dim[x->rank - 1];
    if (ga->rank != 1 || be->rank != 1 || !ir_dim_eq(ga->dim[0], h) ||
        !ir_dim_eq(be->dim[0], h))
        return bc_errf(e, "gamma and beta must be vectors of x's last dimension");
    if (!eps_ok(n->a.eps))
        return bc_errf(e, "eps must be positive");
    *out = *x;
    return 0;
}

static int shape_attn_softmax(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0), *m = in_type(g, n, 1);
    if (need_f32(x, "scores", e))
        return -1;
    if (x->rank < 2)
        return bc_errf(e, "scores must have rank >= 2");
    if (m->dtype != IR_I64 || m->rank != 2 || !ir_dim_eq(m->dim[0], x->dim[0]) ||
        !ir_dim_eq(m->dim[1], x->dim[x->rank - 1]))
        return bc_errf(e, "mask must be i64 [batch, keys] matching the scores");
    if (!isfinite(n->a.scale) || n->a.scale == 0)
        return bc_errf(e, "scale must be finite and non-zero");
    *out = *x;
    return 0;
}

static int shape_select(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    int ax = n->a.axis;
    if (ax < 0 || ax >= x->rank)
        return bc_errf(e, "axis %d out of range for rank %d", ax, x->rank);
    if (check_index(n->a.index, x->dim[ax], e))
        return -1;
    *out = *x;
    for (int i = ax; i + 1 < x->rank; i++)
        out->dim[i] = x->dim[i + 1];
    out->rank--;
    return 0;
}

/* logits[..., C] and labels[...]: a scalar loss. */
static int shape_ce_labels(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *lg = in_type(g, n, 0), *lb = in_type(g, n, 1);
    if (need_f32(lg, "logits", e))
        return -1;
    if (lg->rank < 1 || lb->dtype != IR_I64 || lb->rank != lg->rank - 1)
        return bc_errf(e, "labels must be i64 with the logits' rank minus one");
    for (int i = 0; i < lb->rank; i++)
        if (!ir_dim_eq(lb->dim[i], lg->dim[i]))
            return bc_errf(e, "labels dimension %d differs from the logits'", i);
    *out = ir_type_make(IR_F32, 0, NULL);
    return 0;
}

/* The optional class weights, operand k: f32[C] for the logits' C classes. */
static int check_class_weights(const ir_graph *g, const ir_node *n, int k, bc_err *e)
{
    if (n->nin <= k)
        return 0;
    const ir_type *lg = in_type(g, n, 0), *w = in_type(g, n, k);
    if (w->dtype != IR_F32 || w->rank != 1 || !ir_dim_eq(w->dim[0], lg->dim[lg->rank - 1]))
        return bc_errf(e, "weights must be f32 [C], C the logits' last dimension");
    return 0;
}

static int shape_cross_entropy(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    if (shape_ce_labels(g, n, out, e))
        return -1;
    return check_class_weights(g, n, 2, e);
}

static int shape_dropout(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *seed = in_type(g, n, 1);
    if (seed->dtype != IR_I64 || seed->rank != 0)
        return bc_errf(e, "the seed must be an i64 scalar");
    if (!(n->a.p >= 0 && n->a.p < 1))
        return bc_errf(e, "p must be in [0, 1)");
    return shape_unary(g, n, out, e);
}

static int shape_fill(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    if (shape_given(g, n, out, e))
        return -1;
    if (out->dtype != IR_F32 || !isfinite(n->a.scale))
        return bc_errf(e, "fill makes a finite f32 constant");
    return 0;
}

static int shape_reduce_sum(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    if (shape_given(g, n, out, e) || need_f32(x, "operand", e) ||
        need_f32(out, "result", e))
        return -1;
    if (!is_suffix_of(out, x))
        return bc_errf(e, "the result's shape must be a suffix of the operand's");
    return 0;
}

static int shape_scatter_add(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *ids = in_type(g, n, 0), *dy = in_type(g, n, 1);
    if (shape_param(g, n, out, e))
        return -1;
    if (out->rank != 2 || ids->dtype != IR_I64 || need_f32(dy, "dy", e))
        return bc_errf(e, "scatter_add takes i64 ids and f32 dy into an f32 [N, H] table");
    if (dy->rank != ids->rank + 1 || !ir_dim_eq(dy->dim[ids->rank], out->dim[1]))
        return bc_errf(e, "dy must be [ids..., H]");
    for (int i = 0; i < ids->rank; i++)
        if (!ir_dim_eq(ids->dim[i], dy->dim[i]))
            return bc_errf(e, "dy must be [ids..., H]");
    return 0;
}

/* Two f32 operands of one type (a forward value and its gradient). */
static int shape_same2(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *a = in_type(g, n, 0), *b = in_type(g, n, 1);
    if (need_f32(a, "operand 0", e) || !ir_type_eq(a, b))
        return bc_errf(e, "both operands must be f32 of the same type");
    *out = *a;
    return 0;
}

static int shape_layernorm_dx(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *x = in_type(g, n, 0), *ga = in_type(g, n, 1), *dy = in_type(g, n, 2);
    if (need_f32(x, "x", e) || x->rank < 1 || !ir_type_eq(x, dy))
        return bc_errf(e, "x and dy must be f32 of the same type");
    if (ga->rank != 1 || !ir_dim_eq(ga->dim[0], x->dim[x->rank - 1]))
        return bc_errf(e, "gamma must be a vector of x's last dimension");
    if (!eps_ok(n->a.eps))
        return bc_errf(e, "eps must be positive");
    *out = *x;
    return 0;
}

static int shape_layernorm_dgamma(const ir_graph *g, const ir_node *n, ir_type *out,
                                  bc_err *e)
{
    const ir_type *x = in_type(g, n, 0);
    if (shape_same2(g, n, out, e))
        return -1;
    if (x->rank < 1 || !eps_ok(n->a.eps))
        return bc_errf(e, "x must have rank >= 1 and eps be positive");
    *out = ir_type_make(IR_F32, 1, &x->dim[x->rank - 1]);
    return 0;
}

static int shape_select_grad(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    const ir_type *dy = in_type(g, n, 0);
    if (shape_given(g, n, out, e))
        return -1;
    int ax = n->a.axis;
    if (out->rank != dy->rank + 1 || ax < 0 || ax >= out->rank || out->dtype != dy->dtype)
        return bc_errf(e, "the result must add axis %d to dy", ax);
    for (int i = 0, j = 0; i < out->rank; i++)
        if (i != ax && !ir_dim_eq(out->dim[i], dy->dim[j++]))
            return bc_errf(e, "the result without axis %d must be dy's type", ax);
    if (check_index(n->a.index, out->dim[ax], e))
        return -1;
    return 0;
}

static int shape_cross_entropy_grad(const ir_graph *g, const ir_node *n, ir_type *out,
                                    bc_err *e)
{
    const ir_type *dy = in_type(g, n, 2);
    if (shape_ce_labels(g, n, out, e))
        return -1;
    if (dy->dtype != IR_F32 || dy->rank != 0)
        return bc_errf(e, "dloss must be an f32 scalar");
    if (check_class_weights(g, n, 3, e))
        return -1;
    *out = *in_type(g, n, 0);
    return 0;
}

/* The region's result has the node's type (the region graph checks the body). */
static int shape_fused(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    if (shape_given(g, n, out, e))
        return -1;
    ir_graph *r = ir_region_graph(g, n, e);
    if (!r)
        return -1;
    const ir_type *rt = &r->nodes[r->n - 1].type;
    int same = ir_type_eq(rt, out);
    char s1[160], s2[160];
    if (!same)
        bc_errf(e, "the body's result is %s, not the node's %s", ir_type_str(rt, s1, 160),
                ir_type_str(out, s2, 160));
    ir_graph_free(r);
    return same ? 0 : -1;
}

/* result %f {index=k}: f a fused node, k one of its body's statements other than the
 * last (the node's own value), whose type the node carries. */
static int shape_result(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    if (shape_given(g, n, out, e))
        return -1;
    const ir_node *f = &g->nodes[n->in[0]];
    if (f->op != IR_OP_FUSED)
        return bc_errf(e, "reads %s, not a fused node", ir_ops[f->op].name);
    ir_graph *r = ir_region_graph(g, f, e);
    if (!r)
        return -1;
    int rc = 0;
    if (n->a.index < f->nin || n->a.index >= r->n - 1) {
        rc = bc_errf(e,
                     "index %lld is not a statement of the body before its last (%%%d .. "
                     "%%%d)",
                     (long long)n->a.index, f->nin, r->n - 2);
    } else if (!ir_type_eq(&r->nodes[n->a.index].type, out)) {
        char s1[160], s2[160];
        rc = bc_errf(
            e, "body statement %%%lld is %s, not the node's %s", (long long)n->a.index,
            ir_type_str(&r->nodes[n->a.index].type, s1, 160), ir_type_str(out, s2, 160));
    }
    ir_graph_free(r);
    return rc;
}

const ir_op_info ir_ops[IR_OP_COUNT] = {
#define X(e, s, lo, hi, am, role, code, fc, rule)                                          \
    [IR_OP_##                                                                              \
        e] = {s, lo, hi, am, IR_ROLE_##role, IR_CODE_##code, IR_FUSE_##fc, shape_##rule},
    IR_OPS(X)
#undef X
};

int ir_infer_type(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e)
{
    if ((unsigned)n->op >= IR_OP_COUNT)
        return bc_errf(e, "unknown op %d", (int)n->op);
    return ir_ops[n->op].shape(g, n, out, e);
}
