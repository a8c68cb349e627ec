/* autodiff.c: reverse-mode automatic differentiation on the IR. The backward graph is
 * appended to the forward one, so later passes (CSE, DCE, fusion, memory planning) see
 * both and decide what the backward pass keeps. One vector-Jacobian rule per op, in
 * the table `vjps` below: given node v, its gradient dy and an operand index k, the
 * rule emits the contribution to operand k's gradient. */
#include "passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*vjp_fn)(ir_graph *g, const ir_node *n, int v, int k, int dy);

static int given(ir_graph *g, ir_opcode op, const int *in, int nin, const ir_attrs *a,
                 const ir_type *t)
{
    return ir_add(g, op, in, nin, a, NULL, t);
}

static const ir_type *type_of(ir_graph *g, int v)
{
    return &g->nodes[v].type;
}

/* Sums dy's leading dims away to the type of value `to` (identity if equal). */
static int reduce_to(ir_graph *g, int dy, int to)
{
    ir_type t = *type_of(g, to);
    if (ir_type_eq(type_of(g, dy), &t))
        return dy;
    int in[1] = {dy};
    return given(g, IR_OP_REDUCE_SUM, in, 1, NULL, &t);
}

/* Flattens every dim but the last into one: [..., M, K] -> [(...)*M, K]. */
static int flatten2(ir_graph *g, int x)
{
    ir_type t = *type_of(g, x);
    ir_dim rows = ir_dconst(1);
    for (int i = 0; i + 1 < t.rank; i++)
        rows = ir_dim_mul(rows, t.dim[i]);
    ir_dim dims[2] = {rows, t.dim[t.rank - 1]};
    return ir_reshape(g, x, 2, dims);
}

static int vjp_gather(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k; /* only the table (operand 0) is differentiable */
    int in[2] = {n->in[1], dy};
    ir_type t = *type_of(g, n->in[0]);
    return given(g, IR_OP_SCATTER_ADD, in, 2, NULL, &t);
}

static int vjp_prefix_rows(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k;
    ir_type t = *type_of(g, n->in[0]);
    return given(g, IR_OP_PAD_ROWS, &dy, 1, NULL, &t);
}

static int vjp_add(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    return reduce_to(g, dy, n->in[k]);
}

static int vjp_mul(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    return reduce_to(g, ir_mul(g, dy, n->in[1 - k]), n->in[k]);
}

static int vjp_matmul(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    int a = n->in[0], b = n->in[1], ta = n->a.ta, tb = n->a.tb;
    int shared_b = type_of(g, b)->rank != type_of(g, a)->rank;
    if (k == 0) {
        /* C = op(A) op(B): dA = dC op(B)^T, or op(B) dC^T when A is stored transposed. */
        if (!ta)
            return ir_matmul(g, dy, b, 0, !tb);
        return tb ? ir_matmul(g, b, dy, 1, 1) : ir_matmul(g, b, dy, 0, 1);
    }
    if (shared_b) {
        /* B is shared by every batch entry: contract over the flattened batch too. */
        int a2 = flatten2(g, a), dy2 = flatten2(g, dy);
        return tb ? ir_matmul(g, dy2, a2, 1, 0) : ir_matmul(g, a2, dy2, 1, 0);
    }
    if (!tb)
        return ta ? ir_matmul(g, a, dy, 0, 0) : ir_matmul(g, a, dy, 1, 0);
    return ta ? ir_matmul(g, dy, a, 1, 1) : ir_matmul(g, dy, a, 1, 0);
}

static int vjp_transpose(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k;
    int inv[IR_MAX_RANK];
    for (int i = 0; i < n->type.rank; i++)
        inv[n->a.perm[i]] = i;
    return ir_transpose(g, dy, inv);
}

static int vjp_reshape(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k;
    const ir_type *t = type_of(g, n->in[0]);
    ir_dim dims[IR_MAX_RANK];
    memcpy(dims, t->dim, sizeof dims);
    return ir_reshape(g, dy, t->rank, dims);
}

static int grad2(ir_graph *g, ir_opcode op, int x, int dy, const ir_attrs *a)
{
    int in[2] = {x, dy};
    return ir_add(g, op, in, 2, a, NULL, NULL);
}

static int vjp_gelu(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k;
    return grad2(g, IR_OP_GELU_GRAD, n->in[0], dy, NULL);
}

static int vjp_gelu_tanh(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k;
    return grad2(g, IR_OP_GELU_TANH_GRAD, n->in[0], dy, NULL);
}

static int vjp_tanh(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)n;
    (void)k;
    return grad2(g, IR_OP_TANH_GRAD, v, dy, NULL); /* from the output y */
}

static int vjp_scale(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k;
    return ir_scale(g, dy, n->a.scale);
}

static int vjp_layernorm(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    if (k == 0) {
        int in[3] = {n->in[0], n->in[1], dy};
        return ir_add(g, IR_OP_LAYERNORM_DX, in, 3, &n->a, NULL, NULL);
    }
    if (k == 1)
        return grad2(g, IR_OP_LAYERNORM_DGAMMA, n->in[0], dy, &n->a);
    return reduce_to(g, dy, n->in[2]);
}

static int vjp_attn_softmax(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)k; /* the mask is an integer input */
    return grad2(g, IR_OP_SOFTMAX_GRAD, v, dy, &n->a);
}

static int vjp_select(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k;
    ir_type t = *type_of(g, n->in[0]);
    return given(g, IR_OP_SELECT_GRAD, &dy, 1, &n->a, &t);
}

/* The logits' gradient; labels are integers, and class weights (operand 2) have none
 * (as in PyTorch, where the derivative for `weight` is not implemented): weights that
 * depend on a trainable parameter are an error rather than a silently wrong gradient. */
static int vjp_cross_entropy(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    if (k == 2) {
        if (!g->failed) {
            g->failed = 1;
            bc_errf(
                &g->err,
                "%%%d (cross_entropy): the class weights have no gradient; they must not "
                "depend on a trainable parameter",
                v);
        }
        return -1;
    }
    int in[4] = {n->in[0], n->in[1], dy, n->nin > 2 ? n->in[2] : -1};
    return ir_add(g, IR_OP_CROSS_ENTROPY_GRAD, in, n->nin + 1, NULL, NULL, NULL);
}

static int vjp_dropout(ir_graph *g, const ir_node *n, int v, int k, int dy)
{
    (void)v;
    (void)k; /* the same mask, drawn again from the same seed and stream */
    int in[2] = {dy, n->in[1]};
    return ir_add(g, IR_OP_DROPOUT, in, 2, &n->a, NULL, NULL);
}

/* A row for each forward op (ir_ops[op].role == IR_ROLE_FWD) and no other: leaves have
 * no operands, and the ops autodiff introduces none because bertcc differentiates once. */
static const vjp_fn vjps[IR_OP_COUNT] = {
    [IR_OP_GATHER] = vjp_gather,
    [IR_OP_PREFIX_ROWS] = vjp_prefix_rows,
    [IR_OP_ADD] = vjp_add,
    [IR_OP_MUL] = vjp_mul,
    [IR_OP_MATMUL] = vjp_matmul,
    [IR_OP_TRANSPOSE] = vjp_transpose,
    [IR_OP_RESHAPE] = vjp_reshape,
    [IR_OP_GELU] = vjp_gelu,
    [IR_OP_GELU_TANH] = vjp_gelu_tanh,
    [IR_OP_TANH] = vjp_tanh,
    [IR_OP_SCALE] = vjp_scale,
    [IR_OP_LAYERNORM] = vjp_layernorm,
    [IR_OP_ATTN_SOFTMAX] = vjp_attn_softmax,
    [IR_OP_SELECT] = vjp_select,
    [IR_OP_CROSS_ENTROPY] = vjp_cross_entropy,
    [IR_OP_DROPOUT] = vjp_dropout,
};

int pass_has_vjp(ir_opcode op)
{
    return (unsigned)op < IR_OP_COUNT && vjps[op] != NULL;
}

static int frozen(const pass_grad_opts *o, const char *name)
{
    for (int i = 0; o && i < o->nfrozen; i++)
        if (!strncmp(name, o->frozen[i], strlen(o->frozen[i])))
            return 1;
    return 0;
}

int pass_autodiff(ir_graph **gp, const pass_grad_opts *o, bc_err *e)
{
    const char *loss_name = o && o->loss ? o->loss : "loss";
    int loss = ir_find_output(*gp, loss_name);
    if (loss < 0)
        return bc_errf(e,
                       "the graph has no output '%s' to differentiate (are there labels?)",
                       loss_name);
    if ((*gp)->nodes[loss].type.rank != 0 || (*gp)->nodes[loss].type.dtype != IR_F32)
        return bc_errf(e, "output '%s' is not an f32 scalar", loss_name);
    /* regions have no VJP rule: their ops do (and matmuls read their rhs, not pack_b) */
    if (pass_unfuse(gp, e))
        return -1;
    ir_graph *g = *gp;
    loss = ir_find_output(g, loss_name);
    int nf = g->n;
    char *dep = calloc((size_t)nf, 1);   /* depends on a trainable parameter */
    char *reach = calloc((size_t)nf, 1); /* the loss depends on it */
    int *grad = malloc(sizeof *grad * (size_t)nf);
    if (!dep || !reach || !grad) {
        free(dep);
        free(reach);
        free(grad);
        return bc_errf(e, "out of memory");
    }
    for (int i = 0; i < nf; i++) {
        const ir_node *n = &g->nodes[i];
        grad[i] = -1;
        dep[i] = n->op == IR_OP_PARAM && !frozen(o, n->name);
        for (int k = 0; k < n->nin; k++)
            dep[i] |= dep[n->in[k]];
        dep[i] &= n->type.dtype == IR_F32;
    }
    reach[loss] = 1;
    for (int i = loss; i >= 0; i--)
        if (reach[i])
            for (int k = 0; k < g->nodes[i].nin; k++)
                reach[g->nodes[i].in[k]] = 1;
    ir_type scalar = ir_type_make(IR_F32, 0, NULL);
    ir_attrs one = {0};
    one.scale = 1.0;
    grad[loss] = given(g, IR_OP_FILL, NULL, 0, &one, &scalar);
    int rc = 0;
    for (int v = nf - 1; v >= 0 && !g->failed; v--) {
        if (grad[v] < 0 || !dep[v] || g->nodes[v].op == IR_OP_PARAM)
            continue;
        ir_node n = g->nodes[v]; /* a copy: adding nodes may move g->nodes */
        if (!vjps[n.op]) {
            rc = bc_errf(e, "%%%d: no gradient rule for %s", v, ir_ops[n.op].name);
            break;
        }
        for (int k = 0; k < n.nin; k++) {
            int x = n.in[k];
            if (!dep[x] || !reach[x])
                continue;
            int c = vjps[n.op](g, &n, v, k, grad[v]);
            grad[x] = grad[x] < 0 ? c : ir_addv(g, grad[x], c);
        }
    }
    for (int i = 0; i < nf && !rc && !g->failed; i++) {
        const ir_node *p = &g->nodes[i];
        if (p->op != IR_OP_PARAM || frozen(o, p->name))
            continue;
        char name[512];
        snprintf(name, sizeof name, "grad.%s", p->name);
        int gv = grad[i];
        if (gv < 0) { /* the loss does not depend on it */
            ir_type t = p->type;
            ir_attrs zero = {0};
            gv = given(g, IR_OP_FILL, NULL, 0, &zero, &t);
        }
        ir_set_output(g, name, gv);
    }
    if (!rc && g->failed)
        rc = bc_errf(e, "autodiff: %s", g->err.msg);
    free(dep);
    free(reach);
    free(grad);
    return rc;
}
