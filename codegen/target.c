/* target.c: host target detection through LLVM. */
#include "codegen.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>

void cg_host_target(char *cpu, size_t cpu_len, char *features, size_t features_len)
{
    char *c = LLVMGetHostCPUName(), *f = LLVMGetHostCPUFeatures();
    snprintf(cpu, cpu_len, "%s", c ? c : "");
    snprintf(features, features_len, "%s", f ? f : "");
    LLVMDisposeMessage(c);
    LLVMDisposeMessage(f);
}

const char *cg_llvm_version(void)
{
    static char buf[32];
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(buf, sizeof buf, "%u.%u.%u", major, minor, patch);
    return buf;
}
