/* cmd_compile.c: `bertcc MODEL --emit=STAGE [-o FILE]`. */
#include <stdio.h>
#include <string.h>

#include "../../frontend/frontend.h"
#include "../../passes/passes.h"
#include "args.h"
#include "driver.h"

static int emit(ir_graph **g, const char *stage, const char *pipeline, FILE *out,
                int print_after_all)
{
    ir_err e;
    if (!strcmp(stage, "ir"))
        return ir_print(*g, out) ? driver_fail("cannot write the output") : 0;
    if (!strcmp(stage, "opt")) {
        if (pass_run_pipeline(g, pipeline, print_after_all ? out : NULL, &e))
            return driver_fail(e.msg);
        if (!print_after_all && ir_print(*g, out))
            return driver_fail("cannot write the output");
        return 0;
    }
    if (!strcmp(stage, "grad")) {
        pass_grad_opts go = {"loss", NULL, 0};
        if (pass_run_pipeline(g, pipeline, NULL, &e) || pass_autodiff(g, &go, &e) ||
            pass_run_pipeline(g, pipeline, print_after_all ? out : NULL, &e))
            return driver_fail(e.msg);
        if (!print_after_all && ir_print(*g, out))
            return driver_fail("cannot write the output");
        return 0;
    }
    if (!strcmp(stage, "llvm-raw") || !strcmp(stage, "llvm") ||
        !strcmp(stage, "asm")) {
        fprintf(stderr, "bertcc: --emit=%s is not implemented yet (needs LLVM code "
                        "generation)\n",
                stage);
        return 1;
    }
    fprintf(stderr, "bertcc: unknown stage '%s' (expected ir, opt, grad, llvm-raw, llvm or "
                    "asm)\n",
            stage);
    return 1;
}

int cmd_compile(int argc, char **argv)
{
    const char *stage = NULL, *out_path = NULL, *outputs = NULL, *pipeline = NULL;
    const char *pall = NULL, *verbose = NULL, *backend = NULL, *threads = NULL;
    const arg_opt opts[] = {
        {"emit", "STAGE", "ir | opt | grad | llvm-raw | llvm | asm", &stage},
        {"o", "FILE", "write to FILE (default: standard output)", &out_path},
        {"outputs", "LIST", "keep only these graph outputs (comma-separated)", &outputs},
        {"pipeline", "PASSES", "passes for --emit=opt (default " PASS_DEFAULT_PIPELINE ")",
         &pipeline},
        {"print-after-all", NULL, "print the graph after every pass", &pall},
        {"v", NULL, "report what was done, with timings", &verbose},
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
        args_usage("bertcc MODEL.xml --emit=STAGE [-o FILE] [options]",
                   "Compiles a model description and prints one stage of it.", opts);
        return 0;
    }
    if (npos != 1)
        return driver_fail("expected one model description (see --help)");
    if (!stage) {
        if (out_path)
            return driver_fail("shared-library output (-o NAME.so) is not implemented yet; "
                               "use --emit=ir or --emit=opt");
        return driver_fail("nothing to do: give --emit=STAGE (see --help)");
    }
    fe_model m;
    ir_err e;
    if (fe_load(pos[0], &m, &e))
        return driver_fail(e.msg);
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    if (!g)
        return driver_fail(e.msg);
    int rc = 0;
    if (outputs) {
        char buf[1024], *names[32];
        int n = 0;
        snprintf(buf, sizeof buf, "%s", outputs);
        for (char *s = NULL, *t = strtok_r(buf, ",", &s); t && n < 32; t = strtok_r(NULL, ",", &s))
            names[n++] = t;
        if (pass_keep_outputs(g, (const char *const *)names, n, &e))
            rc = driver_fail(e.msg);
    }
    FILE *out = stdout;
    if (!rc && out_path && !(out = fopen(out_path, "w"))) {
        fprintf(stderr, "bertcc: cannot open %s for writing\n", out_path);
        rc = 1;
    }
    if (!rc)
        rc = emit(&g, stage, pipeline ? pipeline : PASS_DEFAULT_PIPELINE, out, pall != NULL);
    if (out && out != stdout && fclose(out) && !rc)
        rc = driver_fail("cannot write the output file");
    ir_graph_free(g);
    return rc;
}
