/* compile.h: `bertcc MODEL --emit=STAGE` and `bertcc MODEL -o NAME.so` as a library
 * call: a model description through the frontend, the passes (and autodiff for the
 * training graph) and code generation, printed at one stage or written as a shared
 * library with its C header.
 *
 * The stages: ir (the graph as the frontend built it, every head and every loss), opt
 * (after the pipeline), grad (the training graph: forward, the backward of "loss", and
 * grad.<param> outputs, optimized), llvm-raw, llvm and asm (the generated kernels before
 * and after LLVM's O3, or assembly, for the training graph when the model has a loss,
 * else for the forward graph). */
#ifndef BERTCC_TASKS_COMPILE_H
#define BERTCC_TASKS_COMPILE_H

#include "../codegen/codegen.h"
#include "../support/err.h"

typedef struct tk_compile_opts {
    const char *model;    /* an XML model description or a Hugging Face config.json */
    const char *stage;    /* one of the stages above; NULL: write a shared library */
    const char *out;      /* with a stage: its file (NULL or "-": standard output);
                             without: the library NAME.so (NAME.h is written beside it) */
    const char *outputs;  /* with a stage: keep only these outputs (comma-separated, at
                             most 64; NULL: all) */
    const char *pipeline; /* with a stage: the passes (NULL: the default pipeline with
                             the fuse rules) */
    const char *fuse;     /* the fusion rules (pass_fuse_parse; NULL: all) */
    int print_after_all;  /* with a stage: print the graph after every pass instead */
    cg_options cg;        /* the target and verbose; prefix NULL: the model's name, made
                             a C identifier */
} tk_compile_opts;

typedef struct tk_compile_info {
    char model[128];           /* the model's name */
    int code;                  /* a code stage was emitted: the next three are set */
    int nodes, steps, kernels; /* graph nodes, plan steps, distinct kernels */
    char header[1024];         /* shared library: the header written */
    double seconds;            /* from the model loaded to the output written */
} tk_compile_info;

/* Compiles as the command line does. Errors: the model's (file and line), an unknown
 * stage, a library not named NAME.so, an output not in the graph, a pass, code
 * generation or an output file that cannot be written. */
int tk_compile(const tk_compile_opts *o, tk_compile_info *info, bc_err *e);

#endif
