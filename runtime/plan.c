/* plan.c: building execution plans (see plan.h). */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The signature, and the step's immediate (rt_step.imm): a fused node's kernel is its
 * body's, the first dropout's stream index aside, which the step passes instead. -1
 * when a fused body cannot be read (out of memory: g verifies). */
static int signature(const ir_graph *g, const ir_node *n, char *buf, size_t len,
                     int64_t *imm)
{
    char body[6144] = "";
    *imm = 0;
    int rc = n->op == IR_OP_FUSED ? ir_region_kernel_body(g, n, body, sizeof body, imm) : 0;
    size_t k = (size_t)snprintf(buf, len, "%s%s%s{", ir_ops[n->op].name,
                                n->op == IR_OP_FUSED ? ":" : "", body);
    /* Perm has as many entries as the transpose's own rank (its operand's). */
    k += ir_attrs_signature(n->op, &n->a, n->type.rank, k < len ? buf + k : NULL,
                            k < len ? len - k : 0);
    k += (size_t)snprintf(buf + k, k < len ? len - k : 0, "}(");
    for (int i = 0; i < n->nin; i++) {
        char t[160];
        k += (size_t)snprintf(buf + k, k < len ? len - k : 0, "%s%s", i ? "," : "",
                              ir_type_str(&g->nodes[n->in[i]].type, t, sizeof t));
    }
    char t[160];
    k += (size_t)snprintf(buf + k, k < len ? len - k : 0, ")->%s",
                          ir_type_str(&n->type, t, sizeof t));
    /* a multi-output region's further results: which statements, of which types */
    int res[IR_MAX_RESULTS],
        nres = n->op == IR_OP_FUSED ? ir_region_results(g, (int)(n - g->nodes), res) : 0;
    for (int i = 0; i < nres; i++) {
        const ir_node *m = &g->nodes[res[i]];
        k += (size_t)snprintf(buf + k, k < len ? len - k : 0, ",%%%lld:%s",
                              (long long)m->a.index, ir_type_str(&m->type, t, sizeof t));
    }
    return rc;
}

void rt_kernel_signature(const ir_graph *g, const ir_node *n, char *buf, size_t len)
{
    int64_t imm;
    signature(g, n, buf, len, &imm);
}

void rt_plan_free(rt_plan *p)
{
    free(p->values);
    free(p->steps);
    free(p->kernel_node);
    free(p->param_node);
    free(p->input_node);
    memset(p, 0, sizeof *p);
}

int rt_plan_storage(const rt_plan *p, int v)
{
    while (p->values[v].kind == RT_VAL_ALIAS)
        v = p->values[v].index;
    return v;
}

static void free_sigs(char **sigs, int n)
{
    for (int i = 0; i < n; i++)
        free(sigs[i]);
    free(sigs);
}

int rt_plan_build(const ir_graph *g, rt_plan *p, bc_err *e)
{
    memset(p, 0, sizeof *p);
    size_t n = (size_t)(g->n ? g->n : 1);
    p->values = calloc(n, sizeof *p->values);
    p->steps = calloc(n, sizeof *p->steps);
    p->kernel_node = calloc(n, sizeof *p->kernel_node);
    p->param_node = calloc(n, sizeof *p->param_node);
    p->input_node = calloc(n, sizeof *p->input_node);
    char **sigs = calloc(n, sizeof *sigs);
    if (!p->values || !p->steps || !p->kernel_node || !p->param_node || !p->input_node ||
        !sigs) {
        free(sigs);
        rt_plan_free(p);
        return bc_errf(e, "out of memory");
    }
    p->nvalues = g->n;
    for (int v = 0; v < g->n; v++) {
        const ir_node *nd = &g->nodes[v];
        rt_value *val = &p->values[v];
        val->type = nd->type;
        val->output = -1;
        val->first = val->last = -1;
        if (nd->op == IR_OP_PARAM) {
            val->kind = RT_VAL_PARAM;
            val->index = p->nparams;
            p->param_node[p->nparams++] = v;
        } else if (nd->op == IR_OP_INPUT) {
            val->kind = RT_VAL_INPUT;
            val->index = p->ninputs;
            p->input_node[p->ninputs++] = v;
        } else if (nd->op == IR_OP_PACK_B && g->nodes[nd->in[0]].op == IR_OP_PARAM) {
            val->kind = RT_VAL_CONST; /* constant shape: pack_b's rule */
        } else if (ir_ops[nd->op].code == IR_CODE_VIEW) {
            val->kind = RT_VAL_ALIAS;
            val->index = nd->in[0];
        } else {
            val->kind = RT_VAL_TEMP;
        }
    }
    for (int k = 0; k < g->nout; k++) {
        int v = g->outs[k].value;
        p->values[v].output = k;
    }
    char sig[8192];
    for (int v = 0; v < g->n; v++) {
        const ir_node *nd = &g->nodes[v];
        if (ir_ops[nd->op].code != IR_CODE_KERNEL)
            continue;
        int64_t imm;
        if (signature(g, nd, sig, sizeof sig, &imm)) {
            free_sigs(sigs, p->nkernels);
            rt_plan_free(p);
            return bc_errf(e, "%%%d (fused): out of memory reading its body", v);
        }
        int k = 0;
        while (k < p->nkernels && strcmp(sigs[k], sig))
            k++;
        if (k == p->nkernels) {
            if (!(sigs[k] = strdup(sig))) {
                free_sigs(sigs, p->nkernels);
                rt_plan_free(p);
                return bc_errf(e, "out of memory");
            }
            p->kernel_node[p->nkernels++] = v;
        }
        rt_step *s = &p->steps[p->nsteps];
        s->node = v;
        s->kernel = k;
        s->imm = imm;
        s->constant = p->values[v].kind == RT_VAL_CONST;
        s->nptr = 1 + nd->nin;
        s->ptr[0] = v;
        for (int i = 0; i < nd->nin; i++)
            s->ptr[1 + i] = nd->in[i];
        if (nd->op == IR_OP_FUSED) /* written here, so live from this step on */
            s->nptr += ir_region_results(g, v, s->ptr + s->nptr);
        /* Live ranges are kept on the storage value so aliases extend them. */
        for (int i = 0; i < s->nptr; i++) {
            rt_value *st = &p->values[rt_plan_storage(p, s->ptr[i])];
            if (st->first < 0)
                st->first = p->nsteps;
            st->last = p->nsteps;
        }
        p->nsteps++;
    }
    /* Outputs are read after the last step. */
    for (int k = 0; k < g->nout; k++) {
        rt_value *st = &p->values[rt_plan_storage(p, g->outs[k].value)];
        if (st->first < 0)
            st->first = 0;
        st->last = p->nsteps;
    }
    free_sigs(sigs, p->nkernels);
    return 0;
}
