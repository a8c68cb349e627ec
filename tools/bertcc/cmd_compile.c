/* cmd_compile.c: `bertcc MODEL --emit=STAGE [-o FILE]` and `bertcc MODEL -o NAME.so`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../codegen/codegen.h"
#include "../../frontend/frontend.h"
#include "../../passes/passes.h"
#include "args.h"
#include "driver.h"

typedef struct {
    const char *stage, *out, *outputs, *pipeline, *pall, *verbose, *cpu, *features, *prefix;
} compile_args;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The training graph: every head's loss, differentiated, then optimized. */
static int make_train_graph(ir_graph **g, const char *pipeline, FILE *print_after,
                            ir_err *e)
{
    pass_grad_opts go = {"loss", NULL, 0};
    if (ir_find_output(*g, "loss") < 0)
        return ir_errf(e, "the model has no head, so there is no loss to differentiate");
    return pass_run_pipeline(g, pipeline, NULL, e) || pass_autodiff(g, &go, e) ||
                   pass_run_pipeline(g, pipeline, print_after, e)
               ? -1
               : 0;
}

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

static int write_library(const fe_model *m, const compile_args *a, const cg_options *o)
{
    ir_err e;
    char header[1024];
    size_t n = strlen(a->out);
    if (n < 4 || strcmp(a->out + n - 3, ".so"))
        return driver_fail("-o without --emit writes a shared library: name it NAME.so");
    snprintf(header, sizeof header, "%.*s.h", (int)(n - 3), a->out);
    double t0 = now();
    ir_graph *fwd = fe_build_bert(m, 0, &e), *train = NULL;
    int rc = !fwd || pass_run_pipeline(&fwd, PASS_DEFAULT_PIPELINE, NULL, &e);
    if (!rc && m->head_mask) {
        train = fe_build_bert(m, FE_LABEL_ALL, &e);
        rc = !train || make_train_graph(&train, PASS_DEFAULT_PIPELINE, NULL, &e);
    } else if (!rc) {
        /* No head, no loss: the "training" graph is the forward graph. */
        train = ir_graph_clone(fwd);
        rc = !train;
    }
    if (!rc)
        rc = cg_write_library(fwd, train, o, a->out, header, &e);
    ir_graph_free(fwd);
    ir_graph_free(train);
    if (rc)
        return driver_fail(e.msg);
    if (a->verbose)
        fprintf(stderr, "bertcc: wrote %s and %s in %.3f s\n", a->out, header, now() - t0);
    return 0;
}

static int emit(const fe_model *m, const compile_args *a, const cg_options *o)
{
    ir_err e;
    const char *pipeline = a->pipeline ? a->pipeline : PASS_DEFAULT_PIPELINE;
    const char *st = a->stage;
    int is_ir = !strcmp(st, "ir"), is_opt = !strcmp(st, "opt"),
        is_grad = !strcmp(st, "grad");
    int is_cg = !strcmp(st, "llvm-raw") || !strcmp(st, "llvm") || !strcmp(st, "asm");
    if (!is_ir && !is_opt && !is_grad && !is_cg) {
        fprintf(stderr,
                "bertcc: unknown stage '%s' (expected ir, opt, grad, llvm-raw, llvm "
                "or asm)\n",
                st);
        return 1;
    }
    double t0 = now();
    ir_graph *g = fe_build_bert(m, FE_LABEL_ALL, &e);
    if (!g)
        return driver_fail(e.msg);
    int rc = 0;
    if (a->outputs) {
        char buf[1024], *names[64];
        int n = 0;
        snprintf(buf, sizeof buf, "%s", a->outputs);
        for (char *s = NULL, *t = strtok_r(buf, ",", &s); t && n < 64;
             t = strtok_r(NULL, ",", &s))
            names[n++] = t;
        if (pass_keep_outputs(g, (const char *const *)names, n, &e))
            rc = driver_fail(e.msg);
    }
    FILE *out = stdout;
    int to_file = a->out && strcmp(a->out, "-");
    if (!rc && !is_cg && to_file && !(out = fopen(a->out, "w"))) {
        fprintf(stderr, "bertcc: cannot open %s for writing\n", a->out);
        rc = 1;
    }
    FILE *pa = a->pall ? out : NULL;
    if (!rc && is_opt && pass_run_pipeline(&g, pipeline, pa, &e))
        rc = driver_fail(e.msg);
    /* The code stages compile forward and backward: the training graph when the model
     * has a loss, else the forward graph. */
    if (!rc && (is_grad || (is_cg && ir_find_output(g, "loss") >= 0)) &&
        make_train_graph(&g, pipeline, is_grad ? pa : NULL, &e))
        rc = driver_fail(e.msg);
    if (!rc && is_cg && ir_find_output(g, "loss") < 0 &&
        pass_run_pipeline(&g, pipeline, NULL, &e))
        rc = driver_fail(e.msg);
    if (!rc && !is_cg && !(pa && !is_ir) && ir_print(g, out))
        rc = driver_fail("cannot write the output");
    if (!rc && is_cg) {
        rt_plan plan;
        if (rt_plan_build(g, &plan, &e) ||
            cg_emit_file(g, &plan, o, st, to_file ? a->out : "-", &e))
            rc = driver_fail(e.msg);
        else if (a->verbose)
            fprintf(stderr,
                    "bertcc: %s: %d nodes, %d steps, %d distinct kernels; wall time "
                    "%.3f s\n",
                    m->name, g->n, plan.nsteps, plan.nkernels, now() - t0);
        rt_plan_free(&plan);
    }
    if (out && out != stdout && fclose(out) && !rc)
        rc = driver_fail("cannot write the output file");
    ir_graph_free(g);
    return rc;
}

int cmd_compile(int argc, char **argv)
{
    compile_args a = {0};
    const char *backend = NULL, *threads = NULL;
    const arg_opt opts[] = {
        {"emit", "STAGE", "ir | opt | grad | llvm-raw | llvm | asm", &a.stage},
        {"o", "FILE", "output file; without --emit, a shared library NAME.so (+ NAME.h)",
         &a.out},
        {"outputs", "LIST", "keep only these graph outputs (comma-separated)", &a.outputs},
        {"pipeline", "PASSES", "passes (default " PASS_DEFAULT_PIPELINE ")", &a.pipeline},
        {"print-after-all", NULL, "print the graph after every pass", &a.pall},
        {"target-cpu", "CPU", "LLVM CPU name (default: this machine's; x86-64-v3 = AVX2)",
         &a.cpu},
        {"target-features", "LIST", "LLVM features, e.g. +avx2,+fma (default: the CPU's)",
         &a.features},
        {"prefix", "NAME", "symbol prefix of the library's C API (default: the model name)",
         &a.prefix},
        {"v", NULL, "report what was compiled and how long it took", &a.verbose},
        {"backend", "NAME", "ref | jit (accepted for uniformity)", &backend},
        {"threads", "N", "threads (accepted for uniformity)", &threads},
        {NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    int help;
    int npos = args_parse(argc, argv, 1, opts, pos, 1, &help, "compile");
    if (npos < 0)
        return 1;
    if (help) {
        args_usage(
            "bertcc MODEL.xml --emit=STAGE [-o FILE] [options]\n"
            "       bertcc MODEL.xml -o NAME.so [options]",
            "Compiles a model description: prints one stage of it, or writes a shared\n"
            "library with forward and backward code and its C header.",
            opts);
        return 0;
    }
    if (npos != 1)
        return driver_fail("expected one model description (see --help)");
    if (!a.stage && !a.out)
        return driver_fail("nothing to do: give --emit=STAGE or -o NAME.so (see --help)");
    fe_model m;
    ir_err e;
    if (fe_load(pos[0], &m, &e))
        return driver_fail(e.msg);
    char prefix[64];
    cg_options o = {a.cpu, a.features,
                    a.prefix ? a.prefix : default_prefix(m.name, prefix, sizeof prefix),
                    a.verbose != NULL};
    return a.stage ? emit(&m, &a, &o) : write_library(&m, &a, &o);
}
