/* codegen.h: IR -> LLVM (through the LLVM C API): one kernel per distinct kernel
 * signature of a plan (runtime/plan.h), optimized at O2 for the host (or a chosen)
 * target, then JIT-compiled in process or written out as LLVM IR, assembly or an
 * object file. */
#ifndef BERTCC_CG_H
#define BERTCC_CG_H

#include <stddef.h>

#include "../ir/ir.h"
#include "../runtime/plan.h"

typedef struct cg_options {
    const char *cpu;      /* NULL: the host's (LLVMGetHostCPUName) */
    const char *features; /* NULL: the host's (LLVMGetHostCPUFeatures) when cpu is NULL */
    const char *prefix;   /* symbol prefix, default "bertcc" */
    int verbose;          /* report timings on stderr */
    int compile_parts;    /* JIT: kernels compiled in this many parts side by side, one
                             thread each (0: one part per core, at most 8) */
} cg_options;

/* A JIT-compiled plan: its kernel table stays valid until cg_program_free. */
typedef struct cg_program cg_program;
cg_program *cg_jit(const ir_graph *g, const rt_plan *plan, const cg_options *o, bc_err *e);
const rt_kernel *cg_program_kernels(const cg_program *p);
double cg_program_compile_seconds(const cg_program *p);
void cg_program_free(cg_program *p);

/* Writes one stage of the compiled kernels: "llvm-raw" (before optimization), "llvm",
 * "asm" or "obj", to path ("-" for standard output; not for obj). */
int cg_emit_file(const ir_graph *g, const rt_plan *plan, const cg_options *o,
                 const char *stage, const char *path, bc_err *e);

/* Writes a shared library at so_path and its C header at header_path: the kernels of
 * the forward graph `fwd` and of the training graph `train` (forward + backward), both
 * graphs' text, and the runtime (statically linked), so the library needs nothing of
 * LLVM. It exports its API alone, prefixed with o->prefix (see the header it writes and
 * README.md): the kernels and the runtime are hidden. Uses the system C compiler (cc) to
 * compile the wrapper and link. */
int cg_write_library(const ir_graph *fwd, const ir_graph *train, const cg_options *o,
                     const char *so_path, const char *header_path, bc_err *e);

/* The "+feature,..." list of the target o selects (host unless overridden). */
void cg_target_features(const cg_options *o, char *buf, size_t len);

/* The symbol names of kernel k: "PREFIX_kK_OP" and "PREFIX_kK_OP_units". */
void cg_kernel_names(const char *prefix, int k, const ir_node *n, char *body, char *units,
                     size_t len);

/* Host CPU name and feature string as LLVM detects them ("znver5",
 * "+avx512f,+avx512bw,..."). Truncated to the buffers. */
void cg_host_target(char *cpu, size_t cpu_len, char *features, size_t features_len);

/* "19.1.7" */
const char *cg_llvm_version(void);

#endif
