/* cmd_compile.c: `bertcc MODEL --emit=STAGE [-o FILE]` and `bertcc MODEL -o NAME.so`
 * (tk_compile, tasks/compile.h). */
#include <stdio.h>

#include "../../passes/passes.h"
#include "../../tasks/compile.h"
#include "args.h"
#include "driver.h"

static const char *stage, *out, *outputs, *pipeline, *pall, *verbose, *cpu, *features,
    *prefix, *backend, *threads, *fuse;
static const arg_opt opts[] = {
    {"emit", "STAGE", "ir | opt | grad | llvm-raw | llvm | asm", &stage},
    {"o", "FILE", "output file; without --emit, a shared library NAME.so (+ NAME.h)", &out},
    {"outputs", "LIST", "keep only these graph outputs (comma-separated)", &outputs},
    {"pipeline", "PASSES", "passes (default " PASS_DEFAULT_PIPELINE ")", &pipeline},
    {"print-after-all", NULL, "print the graph after every pass", &pall},
    {"fuse", "RULES", FUSE_HELP, &fuse},
    {"target-cpu", "CPU", "LLVM CPU name (default: this machine's; x86-64-v3 = AVX2)",
     &cpu},
    {"target-features", "LIST", "LLVM features, e.g. +avx2,+fma (default: the CPU's)",
     &features},
    {"prefix", "NAME", "symbol prefix of the library's C API (default: the model name)",
     &prefix},
    {"v", NULL, "report what was compiled and how long it took", &verbose},
    {"backend", "NAME", "ref | jit (accepted for uniformity)", &backend},
    {"threads", "N", "threads (accepted for uniformity)", &threads},
    {NULL, NULL, NULL, NULL},
};

static const char usage[] = "bertcc MODEL.xml --emit=STAGE [-o FILE] [options]\n"
                            "       bertcc MODEL.xml -o NAME.so [options]";
static const char about[] =
    "Compiles a model description: prints one stage of it, or writes a shared\n"
    "library with forward and backward code and its C header.";

int cmd_compile(int argc, char **argv)
{
    const char *pos[1];
    int help;
    int npos = args_parse(argc, argv, 1, opts, pos, 1, &help, "compile");
    if (npos < 0)
        return 1;
    if (help)
        return args_usage(usage, about, opts), 0;
    if (npos != 1)
        return driver_fail("expected one model description (see --help)");
    if (!stage && !out)
        return driver_fail("nothing to do: give --emit=STAGE or -o NAME.so (see --help)");
    tk_compile_opts o = {pos[0],
                         stage,
                         out,
                         outputs,
                         pipeline,
                         fuse,
                         pall != NULL,
                         {cpu, features, prefix, verbose != NULL, 0}};
    tk_compile_info info;
    bc_err e;
    if (tk_compile(&o, &info, &e))
        return driver_fail(e.msg);
    if (verbose && !stage)
        fprintf(stderr, "bertcc: wrote %s and %s in %.3f s\n", out, info.header,
                info.seconds);
    else if (verbose && info.code)
        fprintf(stderr,
                "bertcc: %s: %d nodes, %d steps, %d distinct kernels; wall time %.3f s\n",
                info.model, info.nodes, info.steps, info.kernels, info.seconds);
    return 0;
}
