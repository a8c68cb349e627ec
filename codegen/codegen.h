/* codegen.h: IR -> LLVM (through the LLVM C API). For now it reports the host target
 * that code generation will use; lowering, the JIT and shared-library output come with
 * the code-generation issue. */
#ifndef BERTCC_CG_H
#define BERTCC_CG_H

#include <stddef.h>

/* Host CPU name and feature string as LLVM detects them ("znver5",
 * "+avx512f,+avx512bw,..."). Truncated to the buffers. */
void cg_host_target(char *cpu, size_t cpu_len, char *features, size_t features_len);

/* "19.1.7" */
const char *cg_llvm_version(void);

#endif
