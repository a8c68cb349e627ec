/* math.c: elementwise f32 math as inline LLVM IR (no libm calls), so that loops over
 * exp, tanh and erf vectorize. Each function takes an f32 or an <N x f32> value and
 * returns the same type; only fmul/fadd/fdiv, fma, selects and integer bit operations
 * are used, so a lane computes the same bits in a vector as alone.
 *
 * Accuracy, measured by tests/test_codegen_math.c against libm in double over a dense
 * sweep of every binade (the bounds asserted there):
 *   cg_exp   <= 1.5 ulp (subnormal results included; measured 1.01), inf past FLT_MAX
 *   cg_tanh  <= 2 ulp (measured 1.30)
 *   cg_erf   <= 3 ulp and 1.5e-7 absolute (measured 2.44 ulp, 1.35e-7)
 *   cg_log   <= 1 ulp (positive floats, subnormals included; measured 0.83)
 * NaN in gives NaN out; infinities give the limits. */
#include <math.h>

#include "cg.h"

/* f32 constant shaped like x */
static LLVMValueRef kf(cg_ctx *c, LLVMValueRef x, double v)
{
    return cg_constf(c, LLVMTypeOf(x), v);
}

/* i32 constant shaped like x */
static LLVMValueRef ki(cg_ctx *c, LLVMValueRef x, int32_t v)
{
    return cg_const_splat(LLVMTypeOf(x),
                          LLVMConstInt(c->t_i32, (unsigned long long)(int64_t)v, 1));
}

static LLVMTypeRef ity(cg_ctx *c, LLVMValueRef x)
{
    unsigned n = cg_lanes(LLVMTypeOf(x));
    return n ? LLVMVectorType(c->t_i32, n) : c->t_i32;
}

static LLVMValueRef as_int(cg_ctx *c, LLVMValueRef x)
{
    return LLVMBuildBitCast(c->b, x, ity(c, x), "");
}

static LLVMValueRef as_float(cg_ctx *c, LLVMValueRef i)
{
    unsigned n = cg_lanes(LLVMTypeOf(i));
    return LLVMBuildBitCast(c->b, i, n ? LLVMVectorType(c->t_f32, n) : c->t_f32, "");
}

/* a * b + d, fused where the target has FMA */
static LLVMValueRef mad(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef d)
{
    return c->fma ? cg_fma(c, a, b, d) : cg_fadd(c, cg_fmul(c, a, b), d);
}

/* Horner: coef[0] x^(n-1) + ... + coef[n-1] */
static LLVMValueRef horner(cg_ctx *c, LLVMValueRef x, const double *coef, int n)
{
    LLVMValueRef y = kf(c, x, coef[0]);
    for (int i = 1; i < n; i++)
        y = mad(c, y, x, kf(c, x, coef[i]));
    return y;
}

static LLVMValueRef sel(cg_ctx *c, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b,
                        LLVMValueRef then, LLVMValueRef otherwise)
{
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, p, a, b, ""), then, otherwise, "");
}

static LLVMValueRef fabs_(cg_ctx *c, LLVMValueRef x)
{
    return as_float(c, LLVMBuildAnd(c->b, as_int(c, x), ki(c, x, 0x7fffffff), ""));
}

/* exp: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, so n ln2 is exact), exp(r) by Cephes'
 * degree-7 polynomial, times 2^n applied as two factors so that results that are
 * subnormal or overflow round once. Inputs below -104 (exp rounds to 0) are replaced by
 * 0 and their result by 0: a multiply that underflows costs a microcode assist of ~100
 * cycles on x86, and softmax feeds exp many -1e4s (masked keys). The clamp at 89 keeps n
 * at most 129. */
LLVMValueRef cg_exp(cg_ctx *c, LLVMValueRef x)
{
    static const double p[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                               4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
    const double magic = 12582912.0; /* 1.5 * 2^23: adding it rounds to an integer */
    LLVMValueRef tiny = LLVMBuildFCmp(c->b, LLVMRealOLT, x, kf(c, x, -104.0), "");
    LLVMValueRef xc = LLVMBuildSelect(c->b, tiny, kf(c, x, 0.0), x, "");
    xc = sel(c, LLVMRealOGT, xc, kf(c, x, 89.0), kf(c, x, 89.0), xc); /* NaN stays */
    LLVMValueRef t = mad(c, xc, kf(c, x, 1.44269504088896341), kf(c, x, magic));
    LLVMValueRef nf = LLVMBuildFSub(c->b, t, kf(c, x, magic), "");
    LLVMValueRef ni = LLVMBuildSub(c->b, as_int(c, t), as_int(c, kf(c, x, magic)), "");
    LLVMValueRef r = mad(c, nf, kf(c, x, -0.693359375), xc);
    r = mad(c, nf, kf(c, x, 2.12194440e-4), r);
    LLVMValueRef z = LLVMBuildFMul(c->b, r, r, "");
    LLVMValueRef y = horner(c, r, p, 6);
    y = mad(c, y, z, r);
    y = LLVMBuildFAdd(c->b, y, kf(c, x, 1.0), "");
    LLVMValueRef n1 = LLVMBuildAShr(c->b, ni, ki(c, x, 1), "");
    LLVMValueRef n2 = LLVMBuildSub(c->b, ni, n1, "");
    LLVMValueRef s1 = as_float(
        c, LLVMBuildShl(c->b, LLVMBuildAdd(c->b, n1, ki(c, x, 127), ""), ki(c, x, 23), ""));
    LLVMValueRef s2 = as_float(
        c, LLVMBuildShl(c->b, LLVMBuildAdd(c->b, n2, ki(c, x, 127), ""), ki(c, x, 23), ""));
    LLVMValueRef e = LLVMBuildFMul(c->b, LLVMBuildFMul(c->b, y, s1, ""), s2, "");
    return LLVMBuildSelect(c->b, tiny, kf(c, x, 0.0), e, "");
}

/* tanh: odd, so computed on |x| and given x's sign. Below 0.625 Cephes' polynomial
 * a + a^3 P(a^2); above, 1 - 2 / (exp(2a) + 1), which saturates to 1 (exp gives inf
 * past 44; tanh rounds to 1 past 9.01). */
LLVMValueRef cg_tanh(cg_ctx *c, LLVMValueRef x)
{
    static const double p[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2,
                               1.33314422036E-1, -3.33332819422E-1};
    LLVMValueRef a = fabs_(c, x);
    LLVMValueRef z = LLVMBuildFMul(c->b, a, a, "");
    LLVMValueRef small = mad(c, LLVMBuildFMul(c->b, a, z, ""), horner(c, z, p, 5), a);
    LLVMValueRef e = cg_exp(c, LLVMBuildFAdd(c->b, a, a, ""));
    LLVMValueRef large = LLVMBuildFSub(
        c->b, kf(c, x, 1.0),
        LLVMBuildFDiv(c->b, kf(c, x, 2.0), LLVMBuildFAdd(c->b, e, kf(c, x, 1.0), ""), ""),
        "");
    LLVMValueRef r = sel(c, LLVMRealOLT, a, kf(c, x, 0.625), small, large);
    LLVMValueRef sign = LLVMBuildAnd(c->b, as_int(c, x), ki(c, x, INT32_MIN), "");
    return as_float(c, LLVMBuildOr(c->b, as_int(c, r), sign, ""));
}

/* erf: Cephes' erff. For |x| <= 1, x T(x^2); above, 1 - erfc(|x|) with
 * erfc(a) = exp(-a^2) / a * P(1/a^2) (one polynomial below 2, another above), a clamped
 * to 4 where erf rounds to 1 in f32; then x's sign. Both branches are computed and one
 * is selected, so that the code stays straight-line. */
LLVMValueRef cg_erf(cg_ctx *c, LLVMValueRef x)
{
    static const double t[] = {7.853861353153693E-5, -8.010193625184903E-4,
                               5.188327685732524E-3, -2.685381193529856E-2,
                               1.128358514861418E-1, -3.761262582423300E-1,
                               1.128379165726710E+0};
    static const double p[] = {
        2.326819970068386E-2,  -1.387039388740657E-1, 3.687424674597105E-1,
        -5.824733027278666E-1, 6.210004621745983E-1,  -4.944515323274145E-1,
        3.404879937665872E-1,  -2.741127028184656E-1, 5.638259427386472E-1};
    static const double r[] = {-1.047766399936249E+1, 1.297719955372516E+1,
                               -7.495518717768503E+0, 2.921019019210786E+0,
                               -1.015265279202700E+0, 4.218463358204948E-1,
                               -2.820767439740514E-1, 5.641895067754075E-1};
    LLVMValueRef a = fabs_(c, x);
    LLVMValueRef small =
        LLVMBuildFMul(c->b, x, horner(c, LLVMBuildFMul(c->b, x, x, ""), t, 7), "");
    LLVMValueRef ac = sel(c, LLVMRealOGT, a, kf(c, x, 4.0), kf(c, x, 4.0), a);
    LLVMValueRef z = cg_exp(c, LLVMBuildFNeg(c->b, LLVMBuildFMul(c->b, ac, ac, ""), ""));
    LLVMValueRef q = LLVMBuildFDiv(c->b, kf(c, x, 1.0), ac, "");
    LLVMValueRef y = LLVMBuildFMul(c->b, q, q, "");
    LLVMValueRef poly =
        sel(c, LLVMRealOLT, ac, kf(c, x, 2.0), horner(c, y, p, 9), horner(c, y, r, 8));
    LLVMValueRef erfc = LLVMBuildFMul(c->b, LLVMBuildFMul(c->b, z, q, ""), poly, "");
    LLVMValueRef big = LLVMBuildFSub(c->b, kf(c, x, 1.0), erfc, "");
    LLVMValueRef sign = LLVMBuildAnd(c->b, as_int(c, x), ki(c, x, INT32_MIN), "");
    big = as_float(c, LLVMBuildOr(c->b, as_int(c, big), sign, ""));
    return sel(c, LLVMRealOLE, a, kf(c, x, 1.0), small, big);
}

/* log: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by Cephes' polynomial in m - 1,
 * e ln2 added in two parts. Subnormals are scaled up first; 0 gives -inf, negatives
 * NaN, inf inf. */
LLVMValueRef cg_log(cg_ctx *c, LLVMValueRef x)
{
    static const double p[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                               -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                               2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
    LLVMValueRef tiny = LLVMBuildFCmp(c->b, LLVMRealOLT, x, kf(c, x, 0x1p-126), "");
    LLVMValueRef xs =
        LLVMBuildSelect(c->b, tiny, LLVMBuildFMul(c->b, x, kf(c, x, 0x1p23), ""), x, "");
    LLVMValueRef bits = as_int(c, xs);
    LLVMValueRef e = LLVMBuildSub(
        c->b, LLVMBuildLShr(c->b, bits, ki(c, x, 23), ""),
        LLVMBuildSelect(c->b, tiny, ki(c, x, 126 + 23), ki(c, x, 126), ""), "");
    LLVMValueRef m =
        as_float(c, LLVMBuildOr(c->b, LLVMBuildAnd(c->b, bits, ki(c, x, 0x007fffff), ""),
                                ki(c, x, 0x3f000000), "")); /* [0.5, 1) */
    LLVMValueRef lo =
        LLVMBuildFCmp(c->b, LLVMRealOLT, m, kf(c, x, 0.707106781186547524), "");
    e = LLVMBuildSub(c->b, e, LLVMBuildZExt(c->b, lo, ity(c, x), ""), "");
    m = LLVMBuildFSub(c->b, LLVMBuildSelect(c->b, lo, LLVMBuildFAdd(c->b, m, m, ""), m, ""),
                      kf(c, x, 1.0), "");
    LLVMValueRef ef = LLVMBuildSIToFP(c->b, e, LLVMTypeOf(x), "");
    LLVMValueRef z = LLVMBuildFMul(c->b, m, m, "");
    LLVMValueRef y =
        LLVMBuildFMul(c->b, LLVMBuildFMul(c->b, horner(c, m, p, 9), m, ""), z, "");
    y = mad(c, ef, kf(c, x, -2.12194440e-4), y);
    y = mad(c, z, kf(c, x, -0.5), y);
    LLVMValueRef r = LLVMBuildFAdd(c->b, m, y, "");
    r = mad(c, ef, kf(c, x, 0.693359375), r);
    r = sel(c, LLVMRealOEQ, x, kf(c, x, INFINITY), x, r);
    r = sel(c, LLVMRealOEQ, x, kf(c, x, 0.0), kf(c, x, -INFINITY), r);
    r = sel(c, LLVMRealOLT, x, kf(c, x, 0.0), kf(c, x, NAN), r);
    return sel(c, LLVMRealUNO, x, x, x, r);
}
