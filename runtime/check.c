/* check.c: the index-operand checks of both backends (see check.h). */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    IX_NONE,
    IX_ROWS,   /* row numbers of a table */
    IX_BINARY, /* 0 or 1 */
    IX_LABELS, /* class numbers, or -100 */
    IX_PREFIX, /* no operand: the result's rows must fit the table's */
} ix_kind;

static const struct {
    ix_kind kind;
    int operand; /* the operand indexed with (IX_PREFIX: the table) */
    int bound;   /* IX_ROWS: the operand whose rows bound it, or -1: the result's;
                    IX_LABELS: the operand whose last dimension counts the classes */
} rules[IR_OP_COUNT] = {
    [IR_OP_GATHER] = {IX_ROWS, 1, 0},         [IR_OP_SCATTER_ADD] = {IX_ROWS, 0, -1},
    [IR_OP_ATTN_SOFTMAX] = {IX_BINARY, 1, 0}, [IR_OP_CROSS_ENTROPY] = {IX_LABELS, 1, 0},
    [IR_OP_PREFIX_ROWS] = {IX_PREFIX, 0, 0},
};

const char *rt_value_name(const ir_graph *g, int v, char *buf, size_t len)
{
    const ir_node *n = &g->nodes[v];
    if (n->name)
        snprintf(buf, len, "%s", n->name);
    else
        snprintf(buf, len, "%%%d (%s)", v, ir_ops[n->op].name);
    return buf;
}

/* A fused node's region when its body holds an op with a rule (found by name first,
 * so that most regions are never parsed here), with *inner set to that op's node and
 * its inputs named as the values they stand for; NULL otherwise. One such op per region
 * (the fusion rules make no more). */
static ir_graph *checked_region(const ir_graph *g, const ir_node *n, int *inner)
{
    int any = 0;
    for (int op = 0; op < IR_OP_COUNT && !any; op++) {
        char pat[64];
        snprintf(pat, sizeof pat, " = %s ", ir_ops[op].name);
        any = rules[op].kind != IX_NONE && strstr(n->name, pat);
    }
    bc_err e;
    ir_graph *r = any ? ir_region_graph(g, n, &e) : NULL;
    if (!r)
        return NULL;
    *inner = -1;
    for (int j = n->nin; j < r->n && *inner < 0; j++)
        if (rules[r->nodes[j].op].kind != IX_NONE)
            *inner = j;
    for (int i = 0; i < n->nin; i++) {
        char nm[128];
        char *s = strdup(rt_value_name(g, n->in[i], nm, sizeof nm));
        if (s) {
            free(r->nodes[i].name);
            r->nodes[i].name = s;
        }
    }
    return r;
}

int rt_check_operand(const ir_graph *g, int v)
{
    const ir_node *n = &g->nodes[v];
    if (n->op == IR_OP_FUSED) {
        int j, u = -1;
        ir_graph *r = checked_region(g, n, &j);
        if (r && j >= 0)
            u = rt_check_operand(r, j);
        ir_graph_free(r);
        return u >= 0 && u < n->nin ? n->in[u] : -1; /* a region input: the operand */
    }
    ix_kind k = rules[n->op].kind;
    return k == IX_NONE || k == IX_PREFIX ? -1 : n->in[rules[n->op].operand];
}

static int64_t numel(const ir_graph *g, int v, int64_t B, int64_t S)
{
    return ir_dim_eval(ir_type_numel(&g->nodes[v].type), B, S);
}

/* "<name>: <noun> <value> at flat index <i> <what>" */
static int bad_value(const ir_graph *g, int u, const char *noun, int64_t value, int64_t i,
                     const char *what, bc_err *e)
{
    char nm[128];
    return bc_errf(e, "%s: %s %lld at flat index %lld %s",
                   rt_value_name(g, u, nm, sizeof nm), noun, (long long)value, (long long)i,
                   what);
}

/* The first of idx[0..n) outside [0, hi) (-100 allowed with ignore), or n. */
static int64_t first_outside(const int64_t *idx, int64_t n, int64_t hi, int ignore)
{
    for (int64_t i = 0; i < n; i++)
        if ((idx[i] < 0 || idx[i] >= hi) && !(ignore && idx[i] == -100))
            return i;
    return n;
}

int rt_check_resolve(const ir_graph *g, int v, ir_graph **cg, int *cv, int *operand)
{
    const ir_node *n = &g->nodes[v];
    *cg = NULL;
    *cv = -1;
    *operand = -1;
    if (n->op != IR_OP_FUSED) {
        if (rules[n->op].kind == IX_NONE)
            return 0;
        *cg = (ir_graph *)g; /* the caller's: not to be freed */
        *cv = v;
        *operand = rt_check_operand(g, v);
        return 1;
    }
    int j;
    ir_graph *r = checked_region(g, n, &j);
    if (!r || j < 0) {
        ir_graph_free(r);
        return 0;
    }
    int u = rt_check_operand(r, j);
    *cg = r;
    *cv = j;
    *operand = u >= 0 && u < n->nin ? n->in[u] : -1;
    return 1;
}

int rt_check_node(const ir_graph *g, int v, const int64_t *idx, int64_t B, int64_t S,
                  rt_check_wording w, bc_err *e)
{
    const ir_node *n = &g->nodes[v];
    if (n->op == IR_OP_FUSED) {
        int j, rc = 0;
        ir_graph *r = checked_region(g, n, &j);
        if (r && j >= 0)
            rc = rt_check_node(r, j, idx, B, S, w, e);
        ir_graph_free(r);
        return rc;
    }
    ix_kind kind = rules[n->op].kind;
    if (kind == IX_NONE)
        return 0;
    int u = n->in[rules[n->op].operand], b = rules[n->op].bound;
    if (kind == IX_PREFIX) {
        int64_t want = ir_dim_eval(n->type.dim[0], B, S);
        int64_t have = ir_dim_eval(g->nodes[u].type.dim[0], B, S);
        char nm[128];
        if (want > have)
            return bc_errf(
                e, "sequence length %lld exceeds the %lld rows of %s (max-position)",
                (long long)want, (long long)have, rt_value_name(g, u, nm, sizeof nm));
        return 0;
    }
    int64_t cnt = numel(g, u, B, S), hi = 2;
    if (kind == IX_ROWS)
        hi = ir_dim_eval((b < 0 ? &n->type : &g->nodes[n->in[b]].type)->dim[0], B, S);
    if (kind == IX_LABELS) {
        const ir_type *t = &g->nodes[n->in[b]].type;
        hi = ir_dim_eval(t->dim[t->rank - 1], B, S);
    }
    int64_t i = first_outside(idx, cnt, hi, kind == IX_LABELS);
    if (i == cnt)
        return 0;
    char what[96];
    if (kind == IX_BINARY && w == RT_CHECK_REF)
        return bad_value(g, u, "value", idx[i], i, "must be 0 or 1", e);
    snprintf(what, sizeof what, "is out of range [0, %lld)%s", (long long)hi,
             kind == IX_LABELS ? " (or -100 to ignore)" : "");
    return bad_value(g, u, kind == IX_LABELS && w == RT_CHECK_REF ? "label" : "value",
                     idx[i], i, what, e);
}
