/* graph.c: graph storage and the builder. Builder calls have a sticky failure: the
 * first error is kept in g->err and every later call returns -1, so graph-building
 * code reads straight through and checks once at the end. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

ir_graph *ir_graph_new(const char *name)
{
    ir_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->name = strdup(name ? name : "graph");
    if (!g->name) {
        free(g);
        return NULL;
    }
    return g;
}

void ir_graph_free(ir_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n; i++)
        free(g->nodes[i].name);
    for (int i = 0; i < g->nout; i++)
        free(g->outs[i].name);
    free(g->nodes);
    free(g->outs);
    free(g->name);
    free(g);
}

ir_graph *ir_graph_clone(const ir_graph *g)
{
    ir_graph *c = ir_graph_new(g->name);
    if (!c)
        return NULL;
    c->nodes = malloc(sizeof *c->nodes * (size_t)(g->n ? g->n : 1));
    c->outs = malloc(sizeof *c->outs * (size_t)(g->nout ? g->nout : 1));
    if (!c->nodes || !c->outs) {
        ir_graph_free(c);
        return NULL;
    }
    c->cap = g->n ? g->n : 1;
    c->outcap = g->nout ? g->nout : 1;
    for (int i = 0; i < g->n; i++) {
        c->nodes[i] = g->nodes[i];
        c->nodes[i].name = g->nodes[i].name ? strdup(g->nodes[i].name) : NULL;
        c->n++;
    }
    for (int i = 0; i < g->nout; i++) {
        c->outs[i].name = strdup(g->outs[i].name);
        c->outs[i].value = g->outs[i].value;
        c->nout++;
    }
    c->failed = g->failed;
    c->err = g->err;
    return c;
}

static int fail(ir_graph *g, const char *fmt, const char *opname, const char *msg)
{
    if (!g->failed) {
        g->failed = 1;
        bc_errf(&g->err, fmt, g->n, opname, msg);
    }
    return -1;
}

int ir_add(ir_graph *g, ir_opcode op, const int *in, int nin, const ir_attrs *a,
           const char *name, const ir_type *type)
{
    if (g->failed)
        return -1;
    if ((unsigned)op >= IR_OP_COUNT)
        return fail(g, "%%%d (%s): %s", "?", "unknown op");
    const ir_op_info *info = &ir_ops[op];
    if (nin < info->min_in || nin > info->max_in)
        return fail(g, "%%%d (%s): %s", info->name, "wrong number of operands");
    for (int i = 0; i < nin; i++)
        if (in[i] < 0 || in[i] >= g->n)
            return fail(g, "%%%d (%s): %s", info->name, "operand is not a defined value");
    if (!!(info->attrs & IR_A_NAME) != !!name)
        return fail(g, "%%%d (%s): %s", info->name,
                    name ? "op takes no name" : "op needs a name");
    if (g->n >= IR_MAX_NODES)
        return fail(g, "%%%d (%s): %s", info->name,
                    "the graph has reached bertcc's limit of 1048576 nodes");
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 64;
        ir_node *nn = realloc(g->nodes, sizeof *nn * (size_t)cap);
        if (!nn)
            return fail(g, "%%%d (%s): %s", info->name, "out of memory");
        g->nodes = nn;
        g->cap = cap;
    }
    ir_node *n = &g->nodes[g->n];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->nin = nin;
    for (int i = 0; i < nin; i++)
        n->in[i] = in[i];
    if (a)
        n->a = *a;
    if (type)
        n->type = *type;
    /* the shape rule may read the name (a fused node's body) */
    if (name && !(n->name = strdup(name)))
        return fail(g, "%%%d (%s): %s", info->name, "out of memory");
    bc_err e;
    ir_type t;
    char msg[400];
    msg[0] = 0;
    if (ir_infer_type(g, n, &t, &e)) {
        snprintf(msg, sizeof msg, "%s", e.msg);
    } else if (type && !ir_type_eq(&t, type)) {
        char s1[160], s2[160];
        snprintf(msg, sizeof msg, "declared type %s, but the shape rule gives %s",
                 ir_type_str(type, s1, sizeof s1), ir_type_str(&t, s2, sizeof s2));
    }
    if (msg[0]) {
        free(n->name);
        n->name = NULL;
        return fail(g, "%%%d (%s): %s", info->name, msg);
    }
    n->type = t;
    return g->n++;
}

int ir_set_output(ir_graph *g, const char *name, int value)
{
    if (g->failed)
        return -1;
    if (value < 0 || value >= g->n) {
        g->failed = 1;
        return bc_errf(&g->err, "output \"%s\": %%%d is not a defined value", name, value);
    }
    for (int i = 0; i < g->nout; i++)
        if (!strcmp(g->outs[i].name, name)) {
            g->outs[i].value = value;
            return 0;
        }
    if (g->nout == g->outcap) {
        int cap = g->outcap ? g->outcap * 2 : 16;
        ir_output *no = realloc(g->outs, sizeof *no * (size_t)cap);
        if (!no) {
            g->failed = 1;
            return bc_errf(&g->err, "out of memory");
        }
        g->outs = no;
        g->outcap = cap;
    }
    if (!(g->outs[g->nout].name = strdup(name))) {
        g->failed = 1;
        return bc_errf(&g->err, "out of memory");
    }
    g->outs[g->nout++].value = value;
    return 0;
}

int ir_find_output(const ir_graph *g, const char *name)
{
    for (int i = 0; i < g->nout; i++)
        if (!strcmp(g->outs[i].name, name))
            return g->outs[i].value;
    return -1;
}

int ir_find_named(const ir_graph *g, ir_opcode op, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == op && g->nodes[i].name && !strcmp(g->nodes[i].name, name))
            return i;
    return -1;
}

/* ---- convenience builders ---- */

int ir_param(ir_graph *g, const char *name, ir_type t)
{
    return ir_add(g, IR_OP_PARAM, NULL, 0, NULL, name, &t);
}

int ir_input(ir_graph *g, const char *name, ir_type t)
{
    return ir_add(g, IR_OP_INPUT, NULL, 0, NULL, name, &t);
}

int ir_gather(ir_graph *g, int table, int ids)
{
    int in[2] = {table, ids};
    return ir_add(g, IR_OP_GATHER, in, 2, NULL, NULL, NULL);
}

int ir_prefix_rows(ir_graph *g, int x, ir_dim rows)
{
    if (g->failed || x < 0 || x >= g->n)
        return ir_add(g, IR_OP_PREFIX_ROWS, &x, 1, NULL, NULL, NULL);
    ir_type t = g->nodes[x].type;
    t.dim[0] = rows;
    return ir_add(g, IR_OP_PREFIX_ROWS, &x, 1, NULL, NULL, &t);
}

static int binary(ir_graph *g, ir_opcode op, int a, int b)
{
    /* Both are commutative; put the higher rank first as the suffix rule wants. */
    if (!g->failed && a >= 0 && b >= 0 && a < g->n && b < g->n &&
        g->nodes[b].type.rank > g->nodes[a].type.rank) {
        int t = a;
        a = b;
        b = t;
    }
    int in[2] = {a, b};
    return ir_add(g, op, in, 2, NULL, NULL, NULL);
}

int ir_addv(ir_graph *g, int a, int b)
{
    return binary(g, IR_OP_ADD, a, b);
}

int ir_mul(ir_graph *g, int a, int b)
{
    return binary(g, IR_OP_MUL, a, b);
}

int ir_matmul(ir_graph *g, int a, int b, int ta, int tb)
{
    ir_attrs at = {0};
    at.ta = ta;
    at.tb = tb;
    int in[2] = {a, b};
    return ir_add(g, IR_OP_MATMUL, in, 2, &at, NULL, NULL);
}

int ir_transpose(ir_graph *g, int x, const int *perm)
{
    ir_attrs at = {0};
    int rank = (x >= 0 && x < g->n) ? g->nodes[x].type.rank : 0;
    for (int i = 0; i < rank; i++)
        at.perm[i] = perm[i];
    return ir_add(g, IR_OP_TRANSPOSE, &x, 1, &at, NULL, NULL);
}

int ir_reshape(ir_graph *g, int x, int rank, const ir_dim *dims)
{
    ir_dtype dt = (x >= 0 && x < g->n) ? g->nodes[x].type.dtype : IR_F32;
    ir_type t = ir_type_make(dt, rank, dims);
    return ir_add(g, IR_OP_RESHAPE, &x, 1, NULL, NULL, &t);
}

int ir_unary(ir_graph *g, ir_opcode op, int x)
{
    return ir_add(g, op, &x, 1, NULL, NULL, NULL);
}

int ir_scale(ir_graph *g, int x, double factor)
{
    ir_attrs at = {0};
    at.scale = factor;
    return ir_add(g, IR_OP_SCALE, &x, 1, &at, NULL, NULL);
}

int ir_layernorm(ir_graph *g, int x, int gamma, int beta, double eps)
{
    ir_attrs at = {0};
    at.eps = eps;
    int in[3] = {x, gamma, beta};
    return ir_add(g, IR_OP_LAYERNORM, in, 3, &at, NULL, NULL);
}

int ir_attn_softmax(ir_graph *g, int scores, int mask, double scale)
{
    ir_attrs at = {0};
    at.scale = scale;
    int in[2] = {scores, mask};
    return ir_add(g, IR_OP_ATTN_SOFTMAX, in, 2, &at, NULL, NULL);
}

int ir_select(ir_graph *g, int x, int axis, int64_t index)
{
    ir_attrs at = {0};
    at.axis = axis;
    at.index = index;
    return ir_add(g, IR_OP_SELECT, &x, 1, &at, NULL, NULL);
}

int ir_cross_entropy(ir_graph *g, int logits, int labels)
{
    int in[2] = {logits, labels};
    return ir_add(g, IR_OP_CROSS_ENTROPY, in, 2, NULL, NULL, NULL);
}

int ir_cross_entropy_weighted(ir_graph *g, int logits, int labels, int weights)
{
    int in[3] = {logits, labels, weights};
    return ir_add(g, IR_OP_CROSS_ENTROPY, in, 3, NULL, NULL, NULL);
}
