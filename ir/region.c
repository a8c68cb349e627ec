/* region.c: the bodies of fused nodes (see ir.h). A body is written in the text form's
 * own statement syntax, so one parser reads graphs and regions alike: the region graph
 * is the body wrapped in a graph whose inputs stand for the fused node's operands. */
#define _GNU_SOURCE /* open_memstream */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every op a kernel computes, or a view, except the opaque ones (the fusion class
 * says they never fuse) and fused itself. */
int ir_region_op_ok(ir_opcode op)
{
    if ((unsigned)op >= IR_OP_COUNT || ir_ops[op].code == IR_CODE_NONE ||
        ir_ops[op].role == IR_ROLE_REGION)
        return 0;
    return ir_ops[op].fuse != IR_FUSE_OPAQUE;
}

ir_graph *ir_region_graph(const ir_graph *g, const ir_node *n, bc_err *e)
{
    if (!n->name || !*n->name)
        return bc_errf(e, "a fused node needs a body"), NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return bc_errf(e, "out of memory"), NULL;
    fputs("graph \"region\" {\n", f);
    for (int i = 0; i < n->nin; i++) {
        char t[1024];
        fprintf(f, "%%%d = input \"%d\" : %s\n", i, i,
                ir_type_str(&g->nodes[n->in[i]].type, t, sizeof t));
    }
    /* statements are separated by ';', which the text form uses nowhere else */
    int last = -1;
    for (const char *s = n->name; *s; s++)
        fputc(*s == ';' ? '\n' : *s, f);
    fputs("\n}\n", f);
    fclose(f);
    if (!text)
        return bc_errf(e, "out of memory"), NULL;
    bc_err pe;
    ir_graph *r = ir_parse(text, "body", &pe);
    if (r && r->n <= n->nin) {
        ir_graph_free(r);
        r = NULL;
        bc_errf(&pe, "the body computes nothing");
    }
    if (!r) {
        /* "body:LINE: msg": the body's statement k is on line n->nin + 1 + k */
        const char *m = pe.msg;
        long line = strncmp(m, "body:", 5) ? 0 : strtol(m + 5, NULL, 10);
        const char *colon = line ? strchr(m + 5, ':') : NULL;
        if (colon && line > n->nin + 1)
            bc_errf(e, "body statement %ld: %s", line - n->nin - 1, colon + 2);
        else
            bc_errf(e, "body: %s", colon ? colon + 2 : m);
        free(text);
        return NULL;
    }
    free(text);
    last = r->n - 1;
    for (int i = n->nin; i < r->n; i++)
        if (!ir_region_op_ok(r->nodes[i].op)) {
            bc_errf(e, "body statement %d: %s cannot be fused", i - n->nin + 1,
                    ir_ops[r->nodes[i].op].name);
            ir_graph_free(r);
            return NULL;
        }
    if (ir_set_output(r, "out", last)) {
        *e = r->err;
        ir_graph_free(r);
        return NULL;
    }
    return r;
}

int ir_region_results(const ir_graph *g, int v, int out[IR_MAX_RESULTS])
{
    int n = 0;
    for (int w = v + 1; w < g->n; w++) {
        const ir_node *m = &g->nodes[w];
        if (m->op != IR_OP_RESULT || m->in[0] != v)
            continue;
        int at = n < IR_MAX_RESULTS ? n++ : IR_MAX_RESULTS - 1;
        /* insertion by index; past the limit the last is replaced (the verifier refuses
         * such a graph before anything relies on the list) */
        while (at > 0 && g->nodes[out[at - 1]].a.index > m->a.index) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = w;
    }
    return n;
}

char *ir_region_body(const ir_graph *g, const int *nodes, int nn, const int *operands,
                     int nop)
{
    int *num = malloc(sizeof *num * (size_t)(g->n ? g->n : 1));
    char *text = NULL;
    size_t len = 0;
    FILE *f = num ? open_memstream(&text, &len) : NULL;
    if (!f) {
        free(num);
        return NULL;
    }
    for (int i = 0; i < g->n; i++)
        num[i] = -1;
    for (int i = 0; i < nop; i++)
        num[operands[i]] = i;
    for (int j = 0; j < nn; j++) {
        const ir_node *m = &g->nodes[nodes[j]];
        num[nodes[j]] = nop + j;
        fprintf(f, "%s%%%d = %s", j ? "; " : "", nop + j, ir_ops[m->op].name);
        for (int k = 0; k < m->nin; k++)
            fprintf(f, "%s%%%d", k ? ", " : " ", num[m->in[k]]);
        int rank = m->nin ? g->nodes[m->in[0]].type.rank : m->type.rank;
        char a[512], t[1024];
        ir_attrs_print(m->op, &m->a, rank, a, sizeof a);
        fprintf(f, "%s : %s", a, ir_type_str(&m->type, t, sizeof t));
    }
    fclose(f);
    free(num);
    return text;
}

int ir_region_kernel_body(const ir_graph *g, const ir_node *n, char *buf, size_t len,
                          int64_t *index)
{
    *index = 0;
    if (!strstr(n->name, " = dropout ")) {
        snprintf(buf, len, "%s", n->name);
        return 0;
    }
    bc_err e;
    ir_graph *r = ir_region_graph(g, n, &e);
    if (!r)
        return -1;
    for (int i = n->nin; i < r->n; i++)
        if (r->nodes[i].op == IR_OP_DROPOUT) {
            *index = r->nodes[i].a.index;
            r->nodes[i].a.index = 0;
            break;
        }
    int nb = r->n - n->nin, *ids = malloc(sizeof *ids * (size_t)(r->n));
    char *body = NULL;
    if (ids) {
        for (int i = 0; i < r->n; i++)
            ids[i] = i;
        body = ir_region_body(r, ids + n->nin, nb, ids, n->nin);
    }
    free(ids);
    ir_graph_free(r);
    if (!body)
        return -1;
    snprintf(buf, len, "%s", body);
    free(body);
    return 0;
}

/* ---- multi-head attention's layout ---- */

const int ir_head_perm[4] = {0, 2, 1, 3};

int ir_is_head_transpose(const ir_node *n)
{
    return n->op == IR_OP_TRANSPOSE && n->type.rank == 4 &&
           !memcmp(n->a.perm, ir_head_perm, sizeof ir_head_perm);
}

int ir_head_split(const ir_graph *g, int v, int *reshape, int *x)
{
    if (!ir_is_head_transpose(&g->nodes[v]))
        return 0;
    int r = g->nodes[v].in[0];
    const ir_node *rs = &g->nodes[r];
    if (rs->op != IR_OP_RESHAPE)
        return 0;
    const ir_type *xt = &g->nodes[rs->in[0]].type;
    if (xt->rank != 3 || xt->dtype != IR_F32 || !ir_dim_eq(xt->dim[0], rs->type.dim[0]) ||
        !ir_dim_eq(xt->dim[1], rs->type.dim[1]) || !ir_dim_is_const(rs->type.dim[2]) ||
        !ir_dim_is_const(rs->type.dim[3]))
        return 0;
    *reshape = r;
    *x = rs->in[0];
    return 1;
}
