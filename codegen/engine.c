/* engine.c: see engine.h. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/exec.h"
#include "../runtime/interp.h"
#include "../runtime/plan.h"

struct cg_engine {
    cg_backend backend;
    ir_graph *g;
    rt_plan plan;
    cg_program *prog;
    rt_exec *exec;
};

int cg_backend_parse(const char *s, cg_backend *out)
{
    if (!strcmp(s, "jit"))
        *out = CG_BACKEND_JIT;
    else if (!strcmp(s, "ref"))
        *out = CG_BACKEND_REF;
    else
        return -1;
    return 0;
}

cg_engine *cg_engine_new(const ir_graph *g, cg_backend backend, const cg_options *o,
                         bc_err *e)
{
    cg_engine *x = calloc(1, sizeof *x);
    if (!x || !(x->g = ir_graph_clone(g))) {
        free(x);
        bc_errf(e, "out of memory");
        return NULL;
    }
    x->backend = backend;
    if (backend == CG_BACKEND_REF)
        return x;
    if (rt_plan_build(x->g, &x->plan, e) || !(x->prog = cg_jit(x->g, &x->plan, o, e)) ||
        !(x->exec = rt_exec_new(x->g, &x->plan, cg_program_kernels(x->prog), e))) {
        cg_engine_free(x);
        return NULL;
    }
    return x;
}

void cg_engine_free(cg_engine *x)
{
    if (!x)
        return;
    rt_exec_free(x->exec);
    cg_program_free(x->prog);
    rt_plan_free(&x->plan);
    ir_graph_free(x->g);
    free(x);
}

int cg_engine_run(cg_engine *x, const rt_tensor_list *params, const rt_tensor_list *inputs,
                  int threads, rt_tensor_list *out, bc_err *e)
{
    if (x->backend == CG_BACKEND_REF) {
        rt_interp_opts o = {0, threads};
        return rt_interp_run(x->g, params, inputs, &o, out, e);
    }
    return rt_exec_run(x->exec, params, inputs, threads, out, e);
}

const ir_graph *cg_engine_graph(const cg_engine *x)
{
    return x->g;
}

void cg_engine_keep_constants(cg_engine *x, int on)
{
    if (x->exec)
        rt_exec_keep_constants(x->exec, on);
}

/* ---- profiling ---- */

int cg_engine_profile(cg_engine *x, int on, bc_err *e)
{
    if (x->backend == CG_BACKEND_REF)
        return bc_errf(e, "profiling needs the jit backend (the reference interpreter has "
                          "no compiled steps)");
    return rt_exec_profile(x->exec, on) ? bc_errf(e, "out of memory") : 0;
}

/* "matmul f32[B,S,768]" or "fused(matmul+add+gelu) f32[B,S,3072]": a region lists each
 * op of its body once, in order, leaving out the views (reshape, transpose) it absorbs. */
static void describe(const ir_graph *g, const ir_node *n, char *buf, size_t len)
{
    char ty[96];
    ir_type_str(&n->type, ty, sizeof ty);
    if (n->op != IR_OP_FUSED) {
        snprintf(buf, len, "%s %s", ir_ops[n->op].name, ty);
        return;
    }
    bc_err e;
    ir_graph *r = ir_region_graph(g, n, &e); /* verified with the graph */
    size_t at = (size_t)snprintf(buf, len, "fused(");
    int seen[IR_OP_COUNT] = {0}, first = 1;
    for (int i = 0; r && i < r->n; i++) {
        ir_opcode op = r->nodes[i].op;
        if (op == IR_OP_INPUT || op == IR_OP_RESHAPE || op == IR_OP_TRANSPOSE || seen[op] ||
            at >= len)
            continue;
        seen[op] = 1;
        at +=
            (size_t)snprintf(buf + at, len - at, "%s%s", first ? "" : "+", ir_ops[op].name);
        first = 0;
    }
    ir_graph_free(r);
    if (at < len)
        snprintf(buf + at, len - at, ") %s", ty);
}

static int slower_first(const void *a, const void *b)
{
    const cg_profile_row *x = a, *y = b;
    if (!x->steps != !y->steps)
        return !x->steps - !y->steps;
    if (x->seconds != y->seconds)
        return x->seconds < y->seconds ? 1 : -1;
    return x->kernel - y->kernel;
}

int cg_engine_profile_rows(const cg_engine *x, int64_t B, int64_t S, cg_profile_row **rows,
                           int *nrows, int64_t *runs, bc_err *e)
{
    *rows = NULL;
    *nrows = 0;
    *runs = 0;
    const double *sec = x->exec ? rt_exec_profile_seconds(x->exec, runs) : NULL;
    if (!sec)
        return bc_errf(e, "profiling is not switched on");
    const rt_plan *p = &x->plan;
    cg_profile_row *r = calloc((size_t)(p->nkernels ? p->nkernels : 1), sizeof *r);
    if (!r)
        return bc_errf(e, "out of memory");
    for (int k = 0; k < p->nkernels; k++) {
        r[k].kernel = k;
        describe(x->g, &x->g->nodes[p->kernel_node[k]], r[k].what, sizeof r[k].what);
    }
    for (int i = 0; i < p->nsteps; i++) {
        cg_profile_row *row = &r[p->steps[i].kernel];
        row->steps++;
        row->seconds += *runs ? sec[i] / (double)*runs : 0;
        row->flops += ir_node_matmul_flops(x->g, &x->g->nodes[p->steps[i].node], B, S);
    }
    qsort(r, (size_t)p->nkernels, sizeof *r, slower_first);
    int n = 0;
    while (n < p->nkernels && r[n].steps)
        n++;
    *rows = r;
    *nrows = n;
    return 0;
}
