/* engine.c: see engine.h. */
#include "engine.h"

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
