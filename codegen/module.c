/* module.c: building, optimizing, JIT-compiling and emitting the kernels of a plan. */
#include <errno.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cg.h"
#include "../support/clock.h"
#include "../support/file.h"
#include "codegen.h"

static LLVMTargetMachineRef make_tm(const cg_options *o, bc_err *e);

/* 1 when a target machine for o can be made (which initializes LLVM's targets). */
static int make_tm_ready(const cg_options *o, bc_err *e)
{
    LLVMTargetMachineRef tm = make_tm(o, e);
    if (tm)
        LLVMDisposeTargetMachine(tm);
    return tm != NULL;
}

void cg_kernel_names(const char *prefix, int k, const ir_node *n, char *body, char *units,
                     size_t len)
{
    snprintf(body, len, "%s_k%d_%s", prefix, k, ir_ops[n->op].name);
    snprintf(units, len, "%s_k%d_%s_units", prefix, k, ir_ops[n->op].name);
}

/* The target machine for o (host unless overridden). The first call initializes
 * LLVM's native target, so make it before any thread does (make_tm_ready). */
static LLVMTargetMachineRef make_tm(const cg_options *o, bc_err *e)
{
    static int ready;
    if (!ready) {
        LLVMInitializeNativeTarget();
        LLVMInitializeNativeAsmPrinter();
        ready = 1;
    }
    char *triple = LLVMGetDefaultTargetTriple();
    char *cpu = o && o->cpu ? strdup(o->cpu) : LLVMGetHostCPUName();
    char *feat = o && o->features ? strdup(o->features)
                 : o && o->cpu    ? strdup("")
                                  : LLVMGetHostCPUFeatures();
    LLVMTargetRef target;
    char *msg = NULL;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg))
        bc_errf(e, "LLVM has no target for %s: %s", triple, msg ? msg : "");
    else
        tm = LLVMCreateTargetMachine(target, triple, cpu, feat, LLVMCodeGenLevelAggressive,
                                     LLVMRelocPIC, LLVMCodeModelDefault);
    if (!tm && !msg)
        bc_errf(e, "cannot create a target machine for cpu '%s'", cpu);
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    if (o && o->cpu)
        free(cpu);
    else
        LLVMDisposeMessage(cpu);
    if (o && (o->features || o->cpu))
        free(feat);
    else
        LLVMDisposeMessage(feat);
    return tm;
}

void cg_target_features(const cg_options *o, char *buf, size_t len)
{
    bc_err e;
    buf[0] = 0;
    LLVMTargetMachineRef tm = make_tm(o, &e);
    if (!tm)
        return;
    char *f = LLVMGetTargetMachineFeatureString(tm);
    size_t n = 0;
    for (char *s = NULL, *t = strtok_r(f, ",", &s); t; t = strtok_r(NULL, ",", &s))
        if (t[0] == '+' && n + strlen(t) + 2 < len)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "", t);
    LLVMDisposeMessage(f);
    LLVMDisposeTargetMachine(tm);
    /* A named CPU implies features the explicit string does not list. */
    static const struct {
        const char *cpu, *features;
    } implied[] = {
        {"x86-64-v3", "+avx,+avx2,+fma,+bmi,+bmi2"},
        {"x86-64-v4", "+avx,+avx2,+fma,+bmi,+bmi2,+avx512f,+avx512bw,+avx512vl,+avx512dq"},
    };
    for (size_t i = 0; o && o->cpu && i < sizeof implied / sizeof *implied; i++)
        if (!strcmp(o->cpu, implied[i].cpu))
            snprintf(buf + n, len - n, "%s%s", n ? "," : "", implied[i].features);
}

static int has_feature(const char *features, const char *f)
{
    size_t n = strlen(f);
    for (const char *p = features; (p = strstr(p, f)); p += n)
        if ((p == features || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
            return 1;
    return 0;
}

static void set_types(cg_ctx *c)
{
    c->t_void = LLVMVoidTypeInContext(c->ctx);
    c->t_i1 = LLVMInt1TypeInContext(c->ctx);
    c->t_i8 = LLVMInt8TypeInContext(c->ctx);
    c->t_i32 = LLVMInt32TypeInContext(c->ctx);
    c->t_i64 = LLVMInt64TypeInContext(c->ctx);
    c->t_f32 = LLVMFloatTypeInContext(c->ctx);
    c->t_f64 = LLVMDoubleTypeInContext(c->ctx);
    c->t_ptr = LLVMPointerTypeInContext(c->ctx, 0);
    LLVMTypeRef up[2] = {c->t_ptr, c->t_ptr};
    c->units_ty = LLVMFunctionType(c->t_i64, up, 2, 0);
    LLVMTypeRef bp[5] = {c->t_ptr, c->t_ptr, c->t_i64, c->t_i64, c->t_ptr};
    c->body_ty = LLVMFunctionType(c->t_void, bp, 5, 0);
}

static void add_attr(cg_ctx *c, LLVMValueRef fn, const char *k, const char *v)
{
    LLVMAddAttributeAtIndex(
        fn, LLVMAttributeFunctionIndex,
        LLVMCreateStringAttribute(c->ctx, k, (unsigned)strlen(k), v, (unsigned)strlen(v)));
}

static void add_enum_attr(cg_ctx *c, LLVMValueRef fn, unsigned idx, const char *name)
{
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(c->ctx, kind, 0));
}

static LLVMValueRef new_function(cg_ctx *c, const char *name, LLVMTypeRef ty)
{
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, ty);
    char *cpu = LLVMGetTargetMachineCPU(c->tm),
         *feat = LLVMGetTargetMachineFeatureString(c->tm);
    add_attr(c, fn, "target-cpu", cpu);
    add_attr(c, fn, "target-features", feat);
    if (c->vec == 16)
        add_attr(c, fn, "prefer-vector-width", "512");
    add_enum_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind");
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
    return fn;
}

static int emit_kernel(cg_ctx *c, const rt_plan *p, int k, bc_err *e)
{
    const ir_node *n = &c->g->nodes[p->kernel_node[k]];
    const cg_lowering *row = &cg_lowerings[n->op];
    if (!row->lower)
        return bc_errf(e, "no code generator for op %s", ir_ops[n->op].name);
    char body[128], units[128];
    cg_kernel_names(c->prefix, k, n, body, units, sizeof body);
    if (row->check && row->check(c, n, e)) {
        bc_err_prefix(e, "kernel %s", body);
        return -1;
    }
    cg_kernel kk;
    memset(&kk, 0, sizeof kk);
    kk.n = n;
    kk.units = new_function(c, units, c->units_ty);
    kk.body = new_function(c, body, c->body_ty);
    for (unsigned i = 1; i <= 5; i++)
        if (i != 3 && i != 4)
            add_enum_attr(c, kk.body, i, "noalias");
    /* units entry: B, S and the scratch pointer */
    LLVMPositionBuilderAtEnd(c->b,
                             LLVMAppendBasicBlockInContext(c->ctx, kk.units, "entry"));
    LLVMValueRef ud = LLVMGetParam(kk.units, 0);
    kk.uB = LLVMBuildLoad2(c->b, c->t_i64, ud, "B");
    kk.uS = LLVMBuildLoad2(c->b, c->t_i64, cg_gep(c, c->t_i64, ud, cg_i64(c, 1)), "S");
    kk.scratch_out = LLVMGetParam(kk.units, 1);
    /* body entry */
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, kk.body, "entry"));
    kk.ptrs = LLVMGetParam(kk.body, 0);
    kk.dims = LLVMGetParam(kk.body, 1);
    kk.u0 = LLVMGetParam(kk.body, 2);
    kk.u1 = LLVMGetParam(kk.body, 3);
    kk.scratch = LLVMGetParam(kk.body, 4);
    kk.B = LLVMBuildLoad2(c->b, c->t_i64, kk.dims, "B");
    kk.S = LLVMBuildLoad2(c->b, c->t_i64, cg_gep(c, c->t_i64, kk.dims, cg_i64(c, 1)), "S");
    /* The lowering positions the builder itself: it starts in the body. */
    row->lower(c, &kk);
    return 0;
}

/* Builds, in a new context (owned by the caller), the module of the kernels k of p with
 * part_of[k] == part, or of every kernel when part_of is NULL. */
static int build_part(cg_ctx *c, LLVMContextRef ctx, const ir_graph *g, const rt_plan *p,
                      const cg_options *o, const int *part_of, int part, bc_err *e)
{
    memset(c, 0, sizeof *c);
    c->ctx = ctx;
    c->g = g;
    snprintf(c->prefix, sizeof c->prefix, "%s", o && o->prefix ? o->prefix : "bertcc");
    if (!(c->tm = make_tm(o, e)))
        return -1;
    char *feat = LLVMGetTargetMachineFeatureString(c->tm);
    c->vec = has_feature(feat, "+avx512f") ? 16 : has_feature(feat, "+avx") ? 8 : 4;
    c->fma = has_feature(feat, "+fma");
    LLVMDisposeMessage(feat);
    set_types(c);
    c->mod = LLVMModuleCreateWithNameInContext(g->name, ctx);
    char *triple = LLVMGetTargetMachineTriple(c->tm);
    LLVMSetTarget(c->mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(c->tm);
    char *layout = LLVMCopyStringRepOfTargetData(td);
    LLVMSetDataLayout(c->mod, layout);
    LLVMDisposeMessage(layout);
    LLVMDisposeTargetData(td);
    c->b = LLVMCreateBuilderInContext(ctx);
    for (int k = 0; k < p->nkernels; k++)
        if ((!part_of || part_of[k] == part) && emit_kernel(c, p, k, e))
            return -1;
    char *msg = NULL;
    if (LLVMVerifyModule(c->mod, LLVMReturnStatusAction, &msg)) {
        bc_errf(e, "internal error: generated LLVM IR does not verify: %.800s", msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMDisposeMessage(msg);
    return 0;
}

static int build(cg_ctx *c, LLVMContextRef ctx, const ir_graph *g, const rt_plan *p,
                 const cg_options *o, bc_err *e)
{
    return build_part(c, ctx, g, p, o, NULL, 0, e);
}

static void release(cg_ctx *c)
{
    if (c->b)
        LLVMDisposeBuilder(c->b);
    if (c->tm)
        LLVMDisposeTargetMachine(c->tm);
    c->b = NULL;
    c->tm = NULL;
}

/* LLVM's pipeline for the kernels. O2 with the loop and SLP vectorizers and unrolling
 * on: the kernels are vectorized and register-tiled by the code generator already, and
 * what O3 adds (a higher unrolling threshold, non-trivial unswitching, argument
 * promotion) only cost time. bert-base forward + backward as one module, counted with
 * callgrind for the host target: 22.01 G instructions at O3, 18.97 G at O2 (-14 %); bench
 * alternated three times (bert-base inference B=1 and 8 and training B=8, bert-mini
 * intent+slot inference and training) measured no difference, and the run fixture's outputs
 * and gradients are the same bytes (nothing here reassociates, so the level cannot change a
 * result). */
#define CG_PIPELINE "default<O2>"

static int optimize(cg_ctx *c, bc_err *e)
{
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
    LLVMErrorRef err = LLVMRunPasses(c->mod, CG_PIPELINE, c->tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (err) {
        char *m = LLVMGetErrorMessage(err);
        bc_errf(e, "LLVM optimization failed: %s", m);
        LLVMDisposeErrorMessage(m);
        return -1;
    }
    return 0;
}

/* ---- JIT ---- */

struct cg_program {
    LLVMOrcLLJITRef jit;
    rt_kernel *kernels;
    double seconds;
};

const rt_kernel *cg_program_kernels(const cg_program *p)
{
    return p->kernels;
}

double cg_program_compile_seconds(const cg_program *p)
{
    return p->seconds;
}

void cg_program_free(cg_program *p)
{
    if (!p)
        return;
    if (p->jit)
        LLVMOrcDisposeLLJIT(p->jit);
    free(p->kernels);
    free(p);
}

static int orc_fail(LLVMErrorRef err, const char *what, bc_err *e)
{
    char *m = LLVMGetErrorMessage(err);
    bc_errf(e, "LLVM JIT: %s: %s", what, m);
    LLVMDisposeErrorMessage(m);
    return -1;
}

/* ---- the object cache ----
 * Compiling bert-base takes seconds; the same module for the same target compiles to
 * the same object, so objects are kept in $BERTCC_CACHE_DIR (default
 * $XDG_CACHE_HOME/bertcc or ~/.cache/bertcc), keyed by a hash of the module's
 * unoptimized LLVM IR, the target, the LLVM version and the pipeline: building that IR
 * takes milliseconds, optimizing and emitting it the seconds saved, and any change to a
 * lowering changes the key. BERTCC_CACHE_DIR=off disables the cache. Entries are
 * written atomically (temporary file + rename). */

static int cache_dir(char *buf, size_t len)
{
    const char *d = getenv("BERTCC_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (d && !strcmp(d, "off"))
        return -1;
    if (d && *d)
        snprintf(buf, len, "%s", d);
    else if (x && *x)
        snprintf(buf, len, "%s/bertcc", x);
    else if (home && *home)
        snprintf(buf, len, "%s/.cache/bertcc", home);
    else
        return -1;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", buf);
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(tmp, 0755);
            *s = '/';
        }
    mkdir(tmp, 0755);
    return 0;
}

static uint64_t fnv(const char *s, uint64_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* The cache file of the module in c, or -1 when there is no cache. */
static int cache_path(cg_ctx *c, char *path, size_t len)
{
    char dir[900], feat[8192];
    if (cache_dir(dir, sizeof dir))
        return -1;
    char *text = LLVMPrintModuleToString(c->mod);
    char *cpu = LLVMGetTargetMachineCPU(c->tm),
         *f = LLVMGetTargetMachineFeatureString(c->tm);
    snprintf(feat, sizeof feat, "%s|%s|%s|%s", cpu, f, cg_llvm_version(), CG_PIPELINE);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(f);
    uint64_t h1 = fnv(feat, fnv(text, 0xcbf29ce484222325ULL));
    uint64_t h2 = fnv(text, fnv(feat, 0x84222325cbf29ce4ULL));
    LLVMDisposeMessage(text);
    snprintf(path, len, "%s/%016llx%016llx.o", dir, (unsigned long long)h1,
             (unsigned long long)h2);
    return 0;
}

static LLVMMemoryBufferRef read_cached(const char *path)
{
    LLVMMemoryBufferRef buf = NULL;
    char *msg = NULL;
    if (access(path, R_OK) || LLVMCreateMemoryBufferWithContentsOfFile(path, &buf, &msg))
        buf = NULL;
    LLVMDisposeMessage(msg);
    return buf;
}

/* buf written to path whole: 0, or -1 with errno set. */
static int write_buffer(const char *path, LLVMMemoryBufferRef buf)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = LLVMGetBufferSize(buf);
    int ok = fwrite(LLVMGetBufferStart(buf), 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void write_cached(const char *path, LLVMMemoryBufferRef buf)
{
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (write_buffer(tmp, buf) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
}

/* Gives every function defined in the module hidden visibility: the kernels of an
 * object linked into a library are called through its kernel tables, never by name
 * from outside. Machine code stays the same (no kernel calls another). */
static void hide_functions(cg_ctx *c)
{
    for (LLVMValueRef f = LLVMGetFirstFunction(c->mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f))
            LLVMSetVisibility(f, LLVMHiddenVisibility);
}

/* One part's kernels as an object in memory: from the cache when the same module was
 * compiled before (*hit set), else compiled (and cached). Each part has its own LLVM
 * context, so parts compile on threads of their own. hidden: every function hidden, for
 * a library (the cache key, the module's text, tells the two apart). */
static LLVMMemoryBufferRef compile_object(const ir_graph *g, const rt_plan *plan,
                                          const cg_options *o, const int *part_of, int part,
                                          int hidden, int *hit, double *t_ir, double *t_opt,
                                          bc_err *e)
{
    double t0 = bc_now();
    LLVMContextRef ctx = LLVMContextCreate();
    cg_ctx c;
    int rc = build_part(&c, ctx, g, plan, o, part_of, part, e);
    if (!rc && hidden)
        hide_functions(&c);
    *t_ir = bc_now() - t0;
    char path[1200];
    int cached = !rc && cache_path(&c, path, sizeof path) == 0;
    LLVMMemoryBufferRef buf = cached ? read_cached(path) : NULL;
    *hit = buf != NULL;
    if (!rc && !buf) {
        rc = optimize(&c, e);
        *t_opt = bc_now() - t0 - *t_ir;
        char *msg = NULL;
        if (!rc &&
            LLVMTargetMachineEmitToMemoryBuffer(c.tm, c.mod, LLVMObjectFile, &msg, &buf)) {
            bc_errf(e, "LLVM code generation failed: %s", msg ? msg : "");
            buf = NULL;
        }
        LLVMDisposeMessage(msg);
        if (buf && cached)
            write_cached(path, buf);
    }
    if (c.mod)
        LLVMDisposeModule(c.mod);
    release(&c);
    LLVMContextDispose(ctx);
    return buf;
}

/* ---- parallel compilation ----
 * The kernels are split into parts of about equal work, compiled side by side (bert-base
 * training's 170-odd kernels: 3.3 s on one thread, see README "Performance"). A
 * kernel's code does not depend on its part: kernels never call one another. */
#define MAX_PARTS 8

/* A guess at the optimizer's work for kernel k: a GEMM (alone or with its epilogue) or
 * an attention region is far the largest; other kernels grow with their ops. */
static int kernel_weight(const ir_graph *g, const rt_plan *plan, int k)
{
    const ir_node *n = &g->nodes[plan->kernel_node[k]];
    if (n->op == IR_OP_MATMUL)
        return 12;
    if (n->op != IR_OP_FUSED)
        return 2;
    bc_err e;
    ir_graph *r = ir_region_graph(g, n, &e);
    int w = 2;
    for (int i = 0; r && i < r->n; i++)
        w += r->nodes[i].op == IR_OP_MATMUL ? 12 : r->nodes[i].op != IR_OP_INPUT;
    ir_graph_free(r);
    return w;
}

/* part_of[k] for every kernel: heaviest first, each to the lightest part so far. */
static void partition(const ir_graph *g, const rt_plan *plan, int nparts, int *part_of)
{
    int load[MAX_PARTS] = {0}, weight[plan->nkernels + 1];
    for (int k = 0; k < plan->nkernels; k++)
        weight[k] = kernel_weight(g, plan, k), part_of[k] = -1;
    for (int done = 0; done < plan->nkernels; done++) {
        int best = -1;
        for (int k = 0; k < plan->nkernels; k++)
            if (part_of[k] < 0 && (best < 0 || weight[k] > weight[best]))
                best = k;
        int light = 0;
        for (int q = 1; q < nparts; q++)
            if (load[q] < load[light])
                light = q;
        part_of[best] = light;
        load[light] += weight[best];
    }
}

/* How many parts: o's, or one per core (at most MAX_PARTS); one for a handful of
 * kernels. */
static int count_parts(const rt_plan *plan, const cg_options *o)
{
    int n = 1;
#ifdef _OPENMP
    n = omp_get_num_procs();
#endif
    if (o && o->compile_parts > 0)
        n = o->compile_parts;
    else if (plan->nkernels < 8)
        n = 1;
    n = n > MAX_PARTS ? MAX_PARTS : n < 1 ? 1 : n;
    return n > plan->nkernels ? (plan->nkernels > 0 ? plan->nkernels : 1) : n;
}

static void dispose_objects(LLVMMemoryBufferRef *obj, int n)
{
    for (int i = 0; i < n; i++)
        if (obj[i])
            LLVMDisposeMemoryBuffer(obj[i]);
}

/* A JIT holding obj[0..n) (consumed); symbols of the process resolve too. */
static int make_jit(cg_program *prog, const cg_options *o, LLVMMemoryBufferRef *obj, int n,
                    bc_err *e)
{
    LLVMTargetMachineRef jtm = make_tm(o, e);
    if (!jtm) {
        dispose_objects(obj, n);
        return -1;
    }
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
    LLVMErrorRef err = LLVMOrcCreateLLJIT(&prog->jit, jb);
    if (err) {
        dispose_objects(obj, n);
        return orc_fail(err, "creating the JIT", e);
    }
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(prog->jit);
    LLVMOrcDefinitionGeneratorRef gen;
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        &gen, LLVMOrcLLJITGetGlobalPrefix(prog->jit), NULL, NULL);
    if (err) {
        dispose_objects(obj, n);
        return orc_fail(err, "process symbols", e);
    }
    LLVMOrcJITDylibAddGenerator(jd, gen);
    for (int i = 0; i < n; i++) {
        LLVMMemoryBufferRef b = obj[i];
        obj[i] = NULL;
        if ((err = LLVMOrcLLJITAddObjectFile(prog->jit, jd, b))) {
            dispose_objects(obj, n);
            return orc_fail(err, "adding an object", e);
        }
    }
    return 0;
}

static int lookup_kernels(cg_program *prog, const ir_graph *g, const rt_plan *plan,
                          const char *prefix, bc_err *e)
{
    for (int k = 0; k < plan->nkernels; k++) {
        char body[128], units[128];
        cg_kernel_names(prefix, k, &g->nodes[plan->kernel_node[k]], body, units,
                        sizeof body);
        LLVMOrcExecutorAddress a1 = 0, a2 = 0;
        LLVMErrorRef err = LLVMOrcLLJITLookup(prog->jit, &a1, body);
        if (!err)
            err = LLVMOrcLLJITLookup(prog->jit, &a2, units);
        if (err)
            return orc_fail(err, body, e);
        prog->kernels[k].body = (rt_body_fn)(uintptr_t)a1;
        prog->kernels[k].units = (rt_units_fn)(uintptr_t)a2;
    }
    return 0;
}

/* The kernels of plan compiled side by side in count_parts parts (*nparts of them,
 * obj[0..*nparts), each from the cache or compiled); *hits from the cache, the slowest
 * part's IR and optimization seconds in *t_ir, *t_opt. On an error nothing is kept. */
static int compile_parts(const ir_graph *g, const rt_plan *plan, const cg_options *o,
                         int hidden, LLVMMemoryBufferRef *obj, int *nparts, int *hits,
                         double *t_ir, double *t_opt, bc_err *e)
{
    int n = count_parts(plan, o), part_of[plan->nkernels + 1];
    partition(g, plan, n, part_of);
    int hit[MAX_PARTS] = {0};
    double t_irs[MAX_PARTS] = {0}, t_opts[MAX_PARTS] = {0};
    bc_err pe[MAX_PARTS];
    *nparts = n;
    *hits = 0;
    *t_ir = *t_opt = 0;
    if (!make_tm_ready(o, e)) /* LLVM's targets initialized before the threads */
        return -1;
#pragma omp parallel for num_threads(n) schedule(dynamic, 1) if (n > 1)
    for (int q = 0; q < n; q++)
        obj[q] = compile_object(g, plan, o, part_of, q, hidden, &hit[q], &t_irs[q],
                                &t_opts[q], &pe[q]);
    int rc = 0;
    for (int q = 0; q < n; q++) {
        if (!obj[q] && !rc)
            rc = -1, *e = pe[q];
        *hits += hit[q];
        *t_ir = t_irs[q] > *t_ir ? t_irs[q] : *t_ir;
        *t_opt = t_opts[q] > *t_opt ? t_opts[q] : *t_opt;
    }
    if (rc)
        dispose_objects(obj, n);
    return rc;
}

/* -v's line for a compilation in parts (the JIT's or a library's). */
static void report_parts(const cg_options *o, const rt_plan *plan, int nparts, int hits,
                         double seconds, double t_ir, double t_opt)
{
    if (o && o->verbose)
        fprintf(stderr,
                "bertcc: %d kernels for %d steps in %d part%s, %d from the cache: %.3f s "
                "(slowest part: IR %.3f s, O2 %.3f s)\n",
                plan->nkernels, plan->nsteps, nparts, nparts == 1 ? "" : "s", hits, seconds,
                t_ir, t_opt);
}

cg_program *cg_jit(const ir_graph *g, const rt_plan *plan, const cg_options *o, bc_err *e)
{
    double t0 = bc_now(), t_ir, t_opt;
    const char *prefix = o && o->prefix ? o->prefix : "bertcc";
    cg_program *prog = calloc(1, sizeof *prog);
    if (!prog ||
        !(prog->kernels = calloc((size_t)(plan->nkernels + 1), sizeof(rt_kernel)))) {
        free(prog);
        bc_errf(e, "out of memory");
        return NULL;
    }
    LLVMMemoryBufferRef obj[MAX_PARTS] = {0};
    int nparts, hits;
    int rc = compile_parts(g, plan, o, 0, obj, &nparts, &hits, &t_ir, &t_opt, e) ||
             make_jit(prog, o, obj, nparts, e) || lookup_kernels(prog, g, plan, prefix, e);
    prog->seconds = bc_now() - t0;
    if (!rc)
        report_parts(o, plan, nparts, hits, prog->seconds, t_ir, t_opt);
    if (rc) {
        cg_program_free(prog);
        return NULL;
    }
    return prog;
}

/* ---- emission to files ---- */

/* Which graph nodes each kernel computes, as comments, so a reader of --emit=llvm can
 * find the kernel of a given op: "; PREFIX_k12_matmul: %18 %24 %30 ...". */
static void write_kernel_map(FILE *f, const ir_graph *g, const rt_plan *p,
                             const char *prefix, const char *comment)
{
    fprintf(f, "%s %d kernels for %d steps of graph \"%s\"\n", comment, p->nkernels,
            p->nsteps, g->name);
    for (int k = 0; k < p->nkernels; k++) {
        char body[128], units[128];
        cg_kernel_names(prefix, k, &g->nodes[p->kernel_node[k]], body, units, sizeof body);
        fprintf(f, "%s %s:", comment, body);
        for (int s = 0; s < p->nsteps; s++)
            if (p->steps[s].kernel == k)
                fprintf(f, " %%%d", p->steps[s].node);
        fputc('\n', f);
    }
}

static int emit_file(const ir_graph *g, const rt_plan *plan, const cg_options *o,
                     const char *stage, const char *path, bc_err *e)
{
    double t0 = bc_now();
    LLVMContextRef ctx = LLVMContextCreate();
    cg_ctx c;
    int rc = build(&c, ctx, g, plan, o, e);
    double t1 = bc_now();
    int raw = !strcmp(stage, "llvm-raw");
    if (!rc && !raw)
        rc = optimize(&c, e);
    double t2 = bc_now();
    char *msg = NULL;
    char tmp[4200];
    if (!rc && (raw || !strcmp(stage, "llvm"))) {
        /* a file is written whole or not at all (temp, fsync, rename) */
        FILE *f = strcmp(path, "-") ? bc_atomic_open(path, tmp, sizeof tmp, e) : stdout;
        if (!f) {
            rc = -1;
        } else {
            write_kernel_map(f, g, plan, c.prefix, ";");
            char *s = LLVMPrintModuleToString(c.mod);
            fputs(s, f);
            LLVMDisposeMessage(s);
            if (f != stdout)
                rc = bc_atomic_commit(f, tmp, path, e);
        }
    } else if (!rc && (!strcmp(stage, "asm") || !strcmp(stage, "obj"))) {
        LLVMCodeGenFileType ft = stage[0] == 'a' ? LLVMAssemblyFile : LLVMObjectFile;
        if (!strcmp(path, "-")) {
            LLVMMemoryBufferRef buf;
            if (LLVMTargetMachineEmitToMemoryBuffer(c.tm, c.mod, ft, &msg, &buf)) {
                rc = bc_errf(e, "LLVM code generation failed: %s", msg);
            } else {
                fwrite(LLVMGetBufferStart(buf), 1, LLVMGetBufferSize(buf), stdout);
                LLVMDisposeMemoryBuffer(buf);
            }
        } else if (bc_is_special_file(path)) { /* /dev/null: in place (support/file.h) */
            if (LLVMTargetMachineEmitToFile(c.tm, c.mod, path, ft, &msg))
                rc = bc_errf(e, "cannot write %s: %s", path, msg);
        } else {
            snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
            if (LLVMTargetMachineEmitToFile(c.tm, c.mod, tmp, ft, &msg)) {
                rc = bc_errf(e, "cannot write %s: %s", path, msg);
                unlink(tmp);
            } else if (bc_fsync_path(tmp) || rename(tmp, path) || bc_fsync_parent(path)) {
                rc = bc_errf(e, "cannot write %s: %s", path, strerror(errno));
                unlink(tmp);
            }
        }
    } else if (!rc) {
        rc = bc_errf(e, "unknown stage '%s'", stage);
    }
    LLVMDisposeMessage(msg);
    if (!rc && o && o->verbose)
        fprintf(stderr,
                "bertcc: %d kernels for %d steps: IR %.3f s, O2 %.3f s, %s %.3f s, total "
                "%.3f s\n",
                plan->nkernels, plan->nsteps, t1 - t0, t2 - t1, stage, bc_now() - t2,
                bc_now() - t0);
    if (c.mod)
        LLVMDisposeModule(c.mod);
    release(&c);
    LLVMContextDispose(ctx);
    return rc;
}

int cg_emit_file(const ir_graph *g, const rt_plan *plan, const cg_options *o,
                 const char *stage, const char *path, bc_err *e)
{
    return emit_file(g, plan, o, stage, path, e);
}

int cg_emit_library_objects(const ir_graph *g, const rt_plan *plan, const cg_options *o,
                            const char *stem, int *nobj, bc_err *e)
{
    double t0 = bc_now(), t_ir, t_opt;
    LLVMMemoryBufferRef obj[MAX_PARTS] = {0};
    int hits;
    *nobj = 0;
    if (compile_parts(g, plan, o, 1, obj, nobj, &hits, &t_ir, &t_opt, e))
        return -1;
    int rc = 0;
    for (int q = 0; q < *nobj; q++) {
        char path[1200];
        snprintf(path, sizeof path, "%s.%d.o", stem, q);
        if (!rc && write_buffer(path, obj[q]))
            rc = bc_errf(e, "cannot write %s: %s", path, strerror(errno));
        LLVMDisposeMemoryBuffer(obj[q]);
    }
    if (!rc)
        report_parts(o, plan, *nobj, hits, bc_now() - t0, t_ir, t_opt);
    return rc;
}
