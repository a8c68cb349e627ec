/* test_codegen_math.c: the inline f32 math of codegen/math.c (cg_exp, cg_tanh, cg_erf,
 * cg_log) against libm in double, over a dense sweep of every binade of both signs and
 * the special values (+-0, subnormals, boundaries, +-inf, NaN). Each function is
 * JIT-compiled twice, as a scalar loop and as a loop over host-width vectors; both must
 * give the same bits, and stay within the error bounds claimed in math.c. */
#include <criterion/criterion.h>
#include <float.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Target.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/cg.h"
#include "../codegen/codegen.h"

typedef LLVMValueRef (*math_fn)(cg_ctx *c, LLVMValueRef x);
typedef void (*map_fn)(float *out, const float *in, int64_t n);

/* void NAME(float *out, const float *in, i64 n): out[i] = f(in[i]); with vec > 0, n
 * must be a multiple of vec and the loop works on <vec x float>. */
static void emit_map(cg_ctx *c, const char *name, math_fn f, int vec)
{
    LLVMTypeRef params[3] = {c->t_ptr, c->t_ptr, c->t_i64};
    LLVMValueRef fn =
        LLVMAddFunction(c->mod, name, LLVMFunctionType(c->t_void, params, 3, 0));
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef out = LLVMGetParam(fn, 0), in = LLVMGetParam(fn, 1),
                 n = LLVMGetParam(fn, 2);
    LLVMTypeRef ty = vec ? LLVMVectorType(c->t_f32, (unsigned)vec) : c->t_f32;
    LLVMValueRef count = vec ? cg_div(c, n, cg_i64(c, vec)) : n;
    cg_loop l;
    cg_for_begin(c, &l, cg_i64(c, 0), count, "i");
    LLVMValueRef idx = vec ? cg_mul(c, l.iv, cg_i64(c, vec)) : l.iv;
    LLVMValueRef x = LLVMBuildLoad2(c->b, ty, cg_gep(c, c->t_f32, in, idx), "");
    LLVMSetAlignment(x, 4);
    LLVMValueRef s = LLVMBuildStore(c->b, f(c, x), cg_gep(c, c->t_f32, out, idx));
    LLVMSetAlignment(s, 4);
    cg_for_end(c, &l);
    LLVMBuildRetVoid(c->b);
}

typedef struct {
    LLVMOrcLLJITRef jit;
    int vec;
} jit_maps;

static const struct {
    const char *name;
    math_fn f;
} fns[] = {{"exp", cg_exp}, {"tanh", cg_tanh}, {"erf", cg_erf}, {"log", cg_log}};

static void fail_on(LLVMErrorRef err, const char *what)
{
    if (err) {
        char *m = LLVMGetErrorMessage(err);
        cr_assert_fail("%s: %s", what, m);
    }
}

/* JIT-compiles NAME_s (scalar) and NAME_v (vector) for every function of fns. */
static jit_maps build(void)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    char cpu[128], feat[4096];
    cg_host_target(cpu, sizeof cpu, feat, sizeof feat);
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    cg_ctx c;
    memset(&c, 0, sizeof c);
    c.ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    c.mod = LLVMModuleCreateWithNameInContext("math", c.ctx);
    c.b = LLVMCreateBuilderInContext(c.ctx);
    c.t_void = LLVMVoidTypeInContext(c.ctx);
    c.t_i1 = LLVMInt1TypeInContext(c.ctx);
    c.t_i8 = LLVMInt8TypeInContext(c.ctx);
    c.t_i32 = LLVMInt32TypeInContext(c.ctx);
    c.t_i64 = LLVMInt64TypeInContext(c.ctx);
    c.t_f32 = LLVMFloatTypeInContext(c.ctx);
    c.t_f64 = LLVMDoubleTypeInContext(c.ctx);
    c.t_ptr = LLVMPointerTypeInContext(c.ctx, 0);
    c.vec = strstr(feat, "+avx512f") ? 16 : strstr(feat, "+avx") ? 8 : 4;
    c.fma = strstr(feat, "+fma") != NULL;
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s_s", fns[i].name);
        emit_map(&c, nm, fns[i].f, 0);
        snprintf(nm, sizeof nm, "%s_v", fns[i].name);
        emit_map(&c, nm, fns[i].f, c.vec);
    }
    LLVMDisposeBuilder(c.b);
    jit_maps j = {NULL, c.vec};
    fail_on(LLVMOrcCreateLLJIT(&j.jit, NULL), "creating the JIT");
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(c.mod, tsc);
    fail_on(LLVMOrcLLJITAddLLVMIRModule(j.jit, LLVMOrcLLJITGetMainJITDylib(j.jit), tsm),
            "adding the module");
    LLVMOrcDisposeThreadSafeContext(tsc);
    return j;
}

static map_fn lookup(jit_maps *j, const char *fn, const char *suffix)
{
    char nm[64];
    snprintf(nm, sizeof nm, "%s_%s", fn, suffix);
    LLVMOrcExecutorAddress a = 0;
    fail_on(LLVMOrcLLJITLookup(j->jit, &a, nm), nm);
    return (map_fn)(uintptr_t)a;
}

/* The sweep: every 1021st bit pattern of each sign, every 13th in [0.25, 16) of each
 * sign (where the functions change branch and saturate), plus special values; n is
 * rounded up to a multiple of 64 with copies of 1.0. */
static float *sweep(int64_t *n)
{
    static const float special[] = {
        0.0f,        -0.0f,    FLT_MIN,    -FLT_MIN,  FLT_TRUE_MIN, -FLT_TRUE_MIN,
        FLT_MAX,     -FLT_MAX, INFINITY,   -INFINITY, NAN,          -NAN,
        1.0f,        -1.0f,    0.625f,     -0.625f,   4.0f,         -4.0f,
        9.0f,        -9.0f,    88.0f,      88.72283f, 88.72284f,    88.7229f,
        89.0f,       90.0f,    -87.33654f, -87.3366f, -100.0f,      -103.9720f,
        -103.9721f,  -104.0f,  -105.0f,    0.5f,      2.0f,         0.70710677f,
        0.70710683f, 3.92f,    -3.92f,     1e-30f,    -1e-30f,      1e-10f,
        44.0f,       45.0f};
    int64_t nspecial = (int64_t)(sizeof special / sizeof *special);
    int64_t step = 1021, per_sign = 0x7f800000 / step + 1;
    const int64_t dlo = 0x3e800000, dhi = 0x41800000, dstep = 13; /* [0.25, 16) */
    int64_t total = nspecial + 2 * per_sign + 2 * ((dhi - dlo) / dstep + 1) + 64;
    float *x = malloc(sizeof(float) * (size_t)total);
    cr_assert_not_null(x);
    int64_t k = 0;
    for (int64_t i = 0; i < nspecial; i++)
        x[k++] = special[i];
    for (uint32_t sign = 0; sign <= 1; sign++)
        for (int64_t b = 0; b < 0x7f800000; b += step) {
            uint32_t bits = (uint32_t)b | (sign << 31);
            memcpy(&x[k++], &bits, 4);
        }
    for (uint32_t sign = 0; sign <= 1; sign++)
        for (int64_t b = dlo; b < dhi; b += dstep) {
            uint32_t bits = (uint32_t)b | (sign << 31);
            memcpy(&x[k++], &bits, 4);
        }
    while (k % 64)
        x[k++] = 1.0f;
    *n = k;
    return x;
}

/* Error of y against the exact value r, in units of the last place of r rounded to f32
 * (2^-149 for zero and subnormals). Infinite or NaN expectations must match exactly:
 * the result is 0 if they do and INFINITY otherwise. */
static double ulp_err(float y, double r)
{
    float rf = (float)r;
    if (isnan(r))
        return isnan(y) ? 0 : INFINITY;
    if (isinf(rf))
        return y == rf ? 0 : INFINITY;
    if (isnan(y) || isinf(y))
        return INFINITY;
    int e;
    frexp(rf, &e);
    double ulp = ldexp(1.0, (e - 24) < -149 ? -149 : e - 24);
    return fabs((double)y - r) / ulp;
}

typedef struct {
    double max_ulp, max_abs;
    float worst_x;
} stats;

static void measure(const float *x, const float *y, int64_t n, double (*ref)(double),
                    double lo, double hi, stats *s)
{
    memset(s, 0, sizeof *s);
    for (int64_t i = 0; i < n; i++) {
        if (!(x[i] >= lo && x[i] <= hi) && !(isnan(x[i]) && lo == -INFINITY))
            continue;
        double r = ref((double)x[i]);
        double u = ulp_err(y[i], r);
        double a =
            isfinite(y[i]) && isfinite(r) ? fabs((double)y[i] - r) : (u > 0 ? INFINITY : 0);
        if (u > s->max_ulp || isnan(u)) {
            s->max_ulp = isnan(u) ? INFINITY : u;
            s->worst_x = x[i];
        }
        if (a > s->max_abs)
            s->max_abs = a;
    }
}

static void run_both(const char *fn, float **ys, float **yv, const float *x, int64_t n)
{
    jit_maps j = build();
    *ys = malloc(sizeof(float) * (size_t)n);
    *yv = malloc(sizeof(float) * (size_t)n);
    cr_assert(*ys && *yv);
    lookup(&j, fn, "s")(*ys, x, n);
    lookup(&j, fn, "v")(*yv, x, n);
    LLVMOrcDisposeLLJIT(j.jit);
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &(*ys)[i], 4);
        memcpy(&b, &(*yv)[i], 4);
        if (a != b && !(isnan((*ys)[i]) && isnan((*yv)[i])))
            cr_assert_fail("%s(%a): scalar %a, vector %a", fn, (double)x[i],
                           (double)(*ys)[i], (double)(*yv)[i]);
    }
}

static void report(const char *fn, const char *range, const stats *s)
{
    cr_log_info("%s on %s: max %.3f ulp (at %a), max abs %.3g", fn, range, s->max_ulp,
                (double)s->worst_x, s->max_abs);
}

Test(codegen_math, exp_is_within_1_5_ulp_and_saturates)
{
    int64_t n;
    float *x = sweep(&n), *ys, *yv;
    run_both("exp", &ys, &yv, x, n);
    stats s;
    measure(x, ys, n, exp, -INFINITY, INFINITY, &s);
    report("exp", "all floats", &s);
    cr_expect_leq(s.max_ulp, 1.5, "exp: %.3f ulp at %a", s.max_ulp, (double)s.worst_x);
    float spec[] = {INFINITY, -INFINITY, 89.0f, -104.0f, -1000.0f, 0.0f, -0.0f};
    float want[] = {INFINITY, 0.0f, INFINITY, 0.0f, 0.0f, 1.0f, 1.0f};
    for (int64_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof spec / sizeof *spec; k++)
            if (x[i] == spec[k] && signbit(x[i]) == signbit(spec[k]))
                cr_expect_eq(ys[i], want[k], "exp(%a) = %a", (double)x[i], (double)ys[i]);
    free(x);
    free(ys);
    free(yv);
}

Test(codegen_math, tanh_is_within_2_ulp_and_odd)
{
    int64_t n;
    float *x = sweep(&n), *ys, *yv;
    run_both("tanh", &ys, &yv, x, n);
    stats s;
    measure(x, ys, n, tanh, -INFINITY, INFINITY, &s);
    report("tanh", "all floats", &s);
    cr_expect_leq(s.max_ulp, 2.0, "tanh: %.3f ulp at %a", s.max_ulp, (double)s.worst_x);
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i]))
            cr_assert(signbit(ys[i]) == signbit(x[i]), "tanh(%a) = %a", (double)x[i],
                      (double)ys[i]);
    free(x);
    free(ys);
    free(yv);
}

Test(codegen_math, erf_is_within_3_ulp)
{
    int64_t n;
    float *x = sweep(&n), *ys, *yv;
    run_both("erf", &ys, &yv, x, n);
    stats s;
    measure(x, ys, n, erf, -INFINITY, INFINITY, &s);
    report("erf", "all floats", &s);
    cr_expect_leq(s.max_ulp, 3.0, "erf: %.3f ulp at %a", s.max_ulp, (double)s.worst_x);
    cr_expect_leq(s.max_abs, 1.5e-7, "erf: abs error %.3g", s.max_abs);
    free(x);
    free(ys);
    free(yv);
}

Test(codegen_math, log_is_within_1_ulp)
{
    int64_t n;
    float *x = sweep(&n), *ys, *yv;
    run_both("log", &ys, &yv, x, n);
    stats s;
    measure(x, ys, n, log, -INFINITY, INFINITY, &s);
    report("log", "all floats", &s);
    cr_expect_leq(s.max_ulp, 1.0, "log: %.3f ulp at %a", s.max_ulp, (double)s.worst_x);
    free(x);
    free(ys);
    free(yv);
}
