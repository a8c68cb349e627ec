/* compile.c: see compile.h. */
#include "compile.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/plan.h"
#include "../support/clock.h"
#include "../support/file.h"

enum stage { ST_IR, ST_OPT, ST_GRAD, ST_CODE };

static int stage_of(const char *s)
{
    if (!strcmp(s, "ir"))
        return ST_IR;
    if (!strcmp(s, "opt"))
        return ST_OPT;
    if (!strcmp(s, "grad"))
        return ST_GRAD;
    if (!strcmp(s, "llvm-raw") || !strcmp(s, "llvm") || !strcmp(s, "asm"))
        return ST_CODE;
    return -1;
}

/* The training graph: every head's loss, differentiated, then optimized. */
static int make_train_graph(ir_graph **g, const char *pipeline, FILE *print_after,
                            bc_err *e)
{
    pass_grad_opts go = {"loss", NULL, 0};
    if (ir_find_output(*g, "loss") < 0)
        return bc_errf(e, "the model has no head, so there is no loss to differentiate");
    return pass_run_pipeline(g, pipeline, NULL, e) || pass_autodiff(g, &go, e) ||
                   pass_run_pipeline(g, pipeline, print_after, e)
               ? -1
               : 0;
}

/* The model's name as a C identifier, for the library's symbols. */
static const char *default_prefix(const char *name, char *buf, size_t len)
{
    size_t n = 0;
    for (const char *s = name; *s && n + 1 < len; s++) {
        int ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                 (*s >= '0' && *s <= '9' && n > 0);
        buf[n] = ok ? *s : '_';
        n++;
    }
    buf[n] = 0;
    return n ? buf : "bertcc";
}

static int write_library(const fe_model *m, const char *so, const char *pipeline,
                         const cg_options *cg, tk_compile_info *info, bc_err *e)
{
    size_t n = strlen(so);
    if (n < 4 || strcmp(so + n - 3, ".so"))
        return bc_errf(e, "-o without --emit writes a shared library: name it NAME.so");
    snprintf(info->header, sizeof info->header, "%.*s.h", (int)(n - 3), so);
    double t0 = bc_now();
    ir_graph *fwd = fe_build_bert(m, 0, e), *train = NULL;
    int rc = !fwd || pass_run_pipeline(&fwd, pipeline, NULL, e);
    if (!rc && m->head_mask) {
        train = fe_build_bert(m, FE_LABEL_ALL, e);
        rc = !train || make_train_graph(&train, pipeline, NULL, e);
    } else if (!rc) {
        /* No head, no loss: the "training" graph is the forward graph. */
        train = ir_graph_clone(fwd);
        rc = !train;
    }
    if (!rc)
        rc = cg_write_library(fwd, train, cg, so, info->header, e);
    ir_graph_free(fwd);
    ir_graph_free(train);
    info->seconds = bc_now() - t0;
    return rc ? -1 : 0;
}

static int keep_outputs(ir_graph *g, const char *list, bc_err *e)
{
    char buf[1024], *names[64];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", list);
    for (char *s = NULL, *t = strtok_r(buf, ",", &s); t && n < 64;
         t = strtok_r(NULL, ",", &s))
        names[n++] = t;
    return pass_keep_outputs(g, (const char *const *)names, n, e);
}

/* ir, opt and grad: the graph as text on out (with print_after_all, after every pass
 * of opt and grad instead of at the end). */
static int emit_text(ir_graph **g, int st, const tk_compile_opts *o, const char *pipeline,
                     FILE *out, bc_err *e)
{
    FILE *pa = o->print_after_all ? out : NULL;
    if (st == ST_OPT && pass_run_pipeline(g, pipeline, pa, e))
        return -1;
    if (st == ST_GRAD && make_train_graph(g, pipeline, pa, e))
        return -1;
    if (!(pa && st != ST_IR) && ir_print(*g, out))
        return bc_errf(e, "cannot write the output");
    return 0;
}

/* The code stages compile forward and backward: the training graph when the model has
 * a loss, else the forward graph. */
static int emit_code(ir_graph **g, const tk_compile_opts *o, const char *pipeline,
                     const cg_options *cg, const char *path, tk_compile_info *info,
                     bc_err *e)
{
    if (ir_find_output(*g, "loss") >= 0 ? make_train_graph(g, pipeline, NULL, e)
                                        : pass_run_pipeline(g, pipeline, NULL, e))
        return -1;
    rt_plan plan;
    int rc = rt_plan_build(*g, &plan, e) || cg_emit_file(*g, &plan, cg, o->stage, path, e);
    info->code = 1;
    info->nodes = (*g)->n;
    info->steps = plan.nsteps;
    info->kernels = plan.nkernels;
    rt_plan_free(&plan);
    return rc ? -1 : 0;
}

static int emit(const fe_model *m, const tk_compile_opts *o, const char *pipeline,
                const cg_options *cg, tk_compile_info *info, bc_err *e)
{
    int st = stage_of(o->stage);
    if (st < 0)
        return bc_errf(e,
                       "unknown stage '%s' (expected ir, opt, grad, llvm-raw, llvm or asm)",
                       o->stage);
    double t0 = bc_now();
    ir_graph *g = fe_build_bert(m, FE_LABEL_ALL, e);
    if (!g)
        return -1;
    int rc = o->outputs ? keep_outputs(g, o->outputs, e) : 0;
    FILE *out = stdout;
    int to_file = o->out && strcmp(o->out, "-");
    char tmp[4200];
    /* a file is written whole or not at all (temp, fsync, rename) */
    if (!rc && st != ST_CODE && to_file && !(out = bc_atomic_open(o->out, tmp, sizeof tmp, e)))
        rc = -1;
    if (!rc && st != ST_CODE)
        rc = emit_text(&g, st, o, pipeline, out, e);
    else if (!rc)
        rc = emit_code(&g, o, pipeline, cg, to_file ? o->out : "-", info, e);
    info->seconds = bc_now() - t0;
    if (out && out != stdout) {
        if (rc)
            bc_atomic_abort(out, tmp);
        else
            rc = bc_atomic_commit(out, tmp, o->out, e);
    }
    ir_graph_free(g);
    return rc ? -1 : 0;
}

int tk_compile(const tk_compile_opts *o, tk_compile_info *info, bc_err *e)
{
    memset(info, 0, sizeof *info);
    if (!o->stage && !o->out)
        return bc_errf(e, "nothing to do: give a stage or a shared library to write");
    char pipeline[256];
    if (o->pipeline && o->fuse)
        return bc_errf(e, "--fuse chooses the fusion rules of the default pipeline; with "
                          "--pipeline, name them there (fuse=RULE+RULE)");
    if (pass_default_pipeline(o->fuse, pipeline, sizeof pipeline, e))
        return bc_err_prefix(e, "--fuse"), -1;
    if (o->pipeline)
        snprintf(pipeline, sizeof pipeline, "%s", o->pipeline);
    if (o->pipeline && strlen(o->pipeline) >= sizeof pipeline)
        return bc_errf(e, "--pipeline is too long");
    fe_model m;
    if (fe_load(o->model, &m, e))
        return -1;
    snprintf(info->model, sizeof info->model, "%s", m.name);
    char prefix[64];
    cg_options cg = o->cg;
    if (!cg.prefix)
        cg.prefix = default_prefix(m.name, prefix, sizeof prefix);
    return o->stage ? emit(&m, o, pipeline, &cg, info, e)
                    : write_library(&m, o->out, pipeline, &cg, info, e);
}
