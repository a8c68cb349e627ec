/* lower_elementwise.c: elementwise and broadcast ops — add, mul, scale, gelu,
 * gelu_tanh, tanh, their gradients, dropout and fill. Work unit = a block of BLOCK
 * elements. The body is an explicit <vec x float> loop followed by a scalar tail that
 * computes the same formula; blocks start at multiples of BLOCK (a multiple of the
 * vector width), so which elements take the vector path depends on the tensor's size
 * alone, never on how the units are split over threads. */
#include <math.h>

#include <llvm-c/DebugInfo.h>

#include "cg.h"

#define BLOCK 4096 /* elements per work unit */

/* What a formula may need besides its operands' values. */
typedef struct map_env {
    const ir_node *n;
    LLVMValueRef seed; /* dropout: the i64 seed */
} map_env;

/* One element (ty = f32) or one vector of them (ty = <vec x float>) of the result from
 * the operands' values x[]; idx is the flat element index (i64 or <vec x i64>). */
typedef LLVMValueRef (*map_fn)(cg_ctx *c, const map_env *env, LLVMTypeRef ty,
                               LLVMValueRef *x, LLVMValueRef idx);

/* Plain IEEE f32 arithmetic, without the `contract` flag: whether the backend would fuse
 * a multiply and an add could differ between a vectorized and a scalar copy of the same
 * formula, and the bits must not depend on which path an element takes. */
static LLVMValueRef fp_add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFAdd(c->b, a, b, "");
}

static LLVMValueRef fp_sub(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFSub(c->b, a, b, "");
}

static LLVMValueRef fp_mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFMul(c->b, a, b, "");
}

static LLVMValueRef splat_const(LLVMValueRef k, unsigned n)
{
    if (!n)
        return k;
    LLVMValueRef v[64];
    for (unsigned i = 0; i < n; i++)
        v[i] = k;
    return LLVMConstVector(v, n);
}

static LLVMValueRef ki64(cg_ctx *c, LLVMTypeRef ty, uint64_t v)
{
    return splat_const(LLVMConstInt(c->t_i64, v, 0), cg_lanes(ty));
}

static LLVMValueRef imax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, a, b, ""), a, b, "");
}

/* Marks the loop l (after cg_for_end) as neither to vectorize nor to unroll: it is the
 * scalar tail of an explicit vector loop, shorter than a vector. */
static void scalar_tail(cg_ctx *c, cg_loop *l)
{
    LLVMBasicBlockRef latch = LLVMGetIncomingBlock(l->iv, 1);
    LLVMMetadataRef self = LLVMTemporaryMDNode(c->ctx, NULL, 0);
    LLVMMetadataRef vec[2] = {
        LLVMMDStringInContext2(c->ctx, "llvm.loop.vectorize.enable", 26),
        LLVMValueAsMetadata(LLVMConstInt(c->t_i1, 0, 0))};
    LLVMMetadataRef unroll = LLVMMDStringInContext2(c->ctx, "llvm.loop.unroll.disable", 24);
    LLVMMetadataRef ops[3] = {self, LLVMMDNodeInContext2(c->ctx, vec, 2),
                              LLVMMDNodeInContext2(c->ctx, &unroll, 1)};
    LLVMMetadataRef loop = LLVMMDNodeInContext2(c->ctx, ops, 3);
    LLVMMetadataReplaceAllUsesWith(self, loop);
    LLVMSetMetadata(LLVMGetBasicBlockTerminator(latch),
                    LLVMGetMDKindIDInContext(c->ctx, "llvm.loop", 9),
                    LLVMMetadataAsValue(c->ctx, loop));
}

/* out[i] = f(in[0][i], ...) for i in [0, n); element i has flat index first + i. */
static void emit_map(cg_ctx *c, const map_env *env, map_fn f, LLVMValueRef out,
                     LLVMValueRef *in, int nin, LLVMValueRef first, LLVMValueRef n)
{
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)c->vec);
    LLVMValueRef x[IR_MAX_INPUTS];
    LLVMValueRef iota[64];
    for (int i = 0; i < c->vec; i++)
        iota[i] = LLVMConstInt(c->t_i64, (unsigned long long)i, 0);
    LLVMValueRef nq = cg_div(c, n, cg_i64(c, c->vec));
    cg_loop q;
    cg_for_begin(c, &q, cg_i64(c, 0), nq, "q");
    LLVMValueRef j = cg_mul(c, q.iv, cg_i64(c, c->vec));
    for (int i = 0; i < nin; i++)
        x[i] = cg_vld(c, vt, in[i], j);
    LLVMValueRef idx = LLVMBuildAdd(c->b, cg_splat(c, vt, cg_add(c, first, j)),
                                    LLVMConstVector(iota, (unsigned)c->vec), "");
    cg_vst(c, f(c, env, vt, x, idx), out, j);
    cg_for_end(c, &q);
    cg_loop t;
    cg_for_begin(c, &t, cg_mul(c, nq, cg_i64(c, c->vec)), n, "t");
    for (int i = 0; i < nin; i++)
        x[i] = cg_vld(c, c->t_f32, in[i], t.iv);
    cg_vst(c, f(c, env, c->t_f32, x, cg_add(c, first, t.iv)), out, t.iv);
    cg_for_end(c, &t);
    scalar_tail(c, &t);
}

/* units = ceil(numel / BLOCK); the body's element range [*lo, *hi). */
static void block_range(cg_ctx *c, cg_kernel *k, LLVMValueRef *lo, LLVMValueRef *hi)
{
    LLVMBasicBlockRef body = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(k->units));
    LLVMValueRef n = cg_numel(c, &k->n->type, k->uB, k->uS);
    cg_units_return(c, k, cg_div(c, cg_add(c, n, cg_i64(c, BLOCK - 1)), cg_i64(c, BLOCK)),
                    NULL);
    LLVMPositionBuilderAtEnd(c->b, body);
    LLVMValueRef nb = cg_numel(c, &k->n->type, k->B, k->S);
    *lo = cg_mul(c, k->u0, cg_i64(c, BLOCK));
    *hi = cg_min(c, cg_mul(c, k->u1, cg_i64(c, BLOCK)), nb);
}

/* The common lowering: the first nin operands are f32 tensors of the result's shape. */
static int lower_map(cg_ctx *c, cg_kernel *k, int nin, map_fn f)
{
    LLVMValueRef lo, hi, in[IR_MAX_INPUTS];
    block_range(c, k, &lo, &hi);
    map_env env = {k->n, NULL};
    if (k->n->op == IR_OP_DROPOUT)
        env.seed = LLVMBuildLoad2(c->b, c->t_i64, cg_arg(c, k, 2), "seed");
    for (int i = 0; i < nin; i++)
        in[i] = cg_gep(c, c->t_f32, cg_arg(c, k, 1 + i), lo);
    emit_map(c, &env, f, cg_gep(c, c->t_f32, cg_arg(c, k, 0), lo), in, nin, lo,
             cg_sub(c, hi, lo));
    LLVMBuildRetVoid(c->b);
    return 0;
}

/* ---- formulas ---- */

static LLVMValueRef f_add(cg_ctx *c, const map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                          LLVMValueRef idx)
{
    (void)env, (void)ty, (void)idx;
    return fp_add(c, x[0], x[1]);
}

static LLVMValueRef f_mul(cg_ctx *c, const map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                          LLVMValueRef idx)
{
    (void)env, (void)ty, (void)idx;
    return fp_mul(c, x[0], x[1]);
}

static LLVMValueRef f_scale(cg_ctx *c, const map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                            LLVMValueRef idx)
{
    (void)idx;
    return fp_mul(c, x[0], cg_constf(c, ty, env->n->a.scale));
}

static LLVMValueRef f_fill(cg_ctx *c, const map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                           LLVMValueRef idx)
{
    (void)x, (void)idx;
    return cg_constf(c, ty, env->n->a.scale);
}

static LLVMValueRef f_tanh(cg_ctx *c, const map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                           LLVMValueRef idx)
{
    (void)env, (void)ty, (void)idx;
    return cg_tanh(c, x[0]);
}

/* Phi(x) = 0.5 (1 + erf(x / sqrt 2)) */
static LLVMValueRef gauss_cdf(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef x)
{
    LLVMValueRef e = cg_erf(c, fp_mul(c, x, cg_constf(c, ty, 0.70710678118654752440)));
    return fp_add(c, cg_constf(c, ty, 0.5), fp_mul(c, cg_constf(c, ty, 0.5), e));
}

static LLVMValueRef f_gelu(cg_ctx *c, const map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                           LLVMValueRef idx)
{
    (void)env, (void)idx;
    return fp_mul(c, x[0], gauss_cdf(c, ty, x[0]));
}

/* tanh(sqrt(2/pi) (x + 0.044715 x^3)) */
static LLVMValueRef gelu_tanh_t(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef x)
{
    LLVMValueRef x3 = fp_mul(c, fp_mul(c, x, x), x);
    LLVMValueRef in = fp_add(c, x, fp_mul(c, cg_constf(c, ty, 0.044715), x3));
    return cg_tanh(c, fp_mul(c, cg_constf(c, ty, 0.79788456080286535588), in));
}

static LLVMValueRef f_gelu_tanh(cg_ctx *c, const map_env *env, LLVMTypeRef ty,
                                LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    LLVMValueRef t = gelu_tanh_t(c, ty, x[0]);
    return fp_mul(c, fp_mul(c, cg_constf(c, ty, 0.5), x[0]),
                  fp_add(c, cg_constf(c, ty, 1.0), t));
}

/* dy (Phi(x) + x phi(x)) */
static LLVMValueRef f_gelu_grad(cg_ctx *c, const map_env *env, LLVMTypeRef ty,
                                LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    LLVMValueRef v = x[0];
    LLVMValueRef pdf =
        fp_mul(c, cg_exp(c, fp_mul(c, cg_constf(c, ty, -0.5), fp_mul(c, v, v))),
               cg_constf(c, ty, 0.39894228040143267794)); /* 1 / sqrt(2 pi) */
    return fp_mul(c, x[1], fp_add(c, gauss_cdf(c, ty, v), fp_mul(c, v, pdf)));
}

/* dy (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)) */
static LLVMValueRef f_gelu_tanh_grad(cg_ctx *c, const map_env *env, LLVMTypeRef ty,
                                     LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    LLVMValueRef v = x[0], t = gelu_tanh_t(c, ty, v);
    LLVMValueRef one = cg_constf(c, ty, 1.0), half = cg_constf(c, ty, 0.5);
    LLVMValueRef a = fp_mul(c, half, fp_add(c, one, t));
    LLVMValueRef dt = fp_sub(c, one, fp_mul(c, t, t));
    LLVMValueRef poly =
        fp_add(c, one, fp_mul(c, cg_constf(c, ty, 3 * 0.044715), fp_mul(c, v, v)));
    LLVMValueRef b = fp_mul(c, fp_mul(c, fp_mul(c, half, v), dt),
                            fp_mul(c, cg_constf(c, ty, 0.79788456080286535588), poly));
    return fp_mul(c, x[1], fp_add(c, a, b));
}

/* y = tanh(x): dy (1 - y^2) */
static LLVMValueRef f_tanh_grad(cg_ctx *c, const map_env *env, LLVMTypeRef ty,
                                LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    return fp_mul(c, x[1], fp_sub(c, cg_constf(c, ty, 1.0), fp_mul(c, x[0], x[0])));
}

/* ref_dropout_keep's hash, on i64 lanes; keep iff (z >> 40) * 2^-24 >= p, which for the
 * 24-bit integer z >> 40 is (z >> 40) >= ceil(p 2^24) exactly. */
static LLVMValueRef f_dropout(cg_ctx *c, const map_env *env, LLVMTypeRef ty,
                              LLVMValueRef *x, LLVMValueRef idx)
{
    double p = env->n->a.p;
    uint64_t tag = (uint64_t)env->n->a.index;
    LLVMValueRef z = LLVMBuildXor(c->b, cg_splat(c, ty, env->seed),
                                  ki64(c, ty, tag * 0x9e3779b97f4a7c15ULL), "");
    z = LLVMBuildXor(c->b, z,
                     LLVMBuildMul(c->b, idx, ki64(c, ty, 0xd1b54a32d192ed03ULL), ""), "");
    z = LLVMBuildMul(c->b,
                     LLVMBuildXor(c->b, z, LLVMBuildLShr(c->b, z, ki64(c, ty, 30), ""), ""),
                     ki64(c, ty, 0xbf58476d1ce4e5b9ULL), "");
    z = LLVMBuildMul(c->b,
                     LLVMBuildXor(c->b, z, LLVMBuildLShr(c->b, z, ki64(c, ty, 27), ""), ""),
                     ki64(c, ty, 0x94d049bb133111ebULL), "");
    z = LLVMBuildXor(c->b, z, LLVMBuildLShr(c->b, z, ki64(c, ty, 31), ""), "");
    uint64_t thresh = (uint64_t)ceil(p * 16777216.0);
    LLVMValueRef keep =
        LLVMBuildICmp(c->b, LLVMIntUGE, LLVMBuildLShr(c->b, z, ki64(c, ty, 40), ""),
                      ki64(c, ty, thresh), "");
    LLVMValueRef kept = fp_mul(c, x[0], cg_constf(c, ty, (double)(float)(1.0 / (1.0 - p))));
    return LLVMBuildSelect(c->b, keep, kept, cg_constf(c, ty, 0.0), "");
}

/* ---- lowerings ---- */

/* a (na) op b (nb) [i % nb]: the block is cut at multiples of nb so that the inner loop
 * reads b contiguously. */
static int lower_broadcast(cg_ctx *c, cg_kernel *k, map_fn f)
{
    const ir_type *ta = cg_operand_type(c, k, 0), *tb = cg_operand_type(c, k, 1);
    if (ir_type_eq(ta, tb))
        return lower_map(c, k, 2, f);
    LLVMValueRef lo, hi;
    block_range(c, k, &lo, &hi);
    map_env env = {k->n, NULL};
    LLVMValueRef out = cg_arg(c, k, 0), a = cg_arg(c, k, 1), b = cg_arg(c, k, 2);
    LLVMValueRef nb = cg_numel(c, tb, k->B, k->S);
    LLVMValueRef r0 = cg_div(c, lo, nb);
    LLVMValueRef r1 = cg_div(c, cg_add(c, hi, cg_sub(c, nb, cg_i64(c, 1))), nb);
    cg_loop r;
    cg_for_begin(c, &r, r0, r1, "row");
    LLVMValueRef base = cg_mul(c, r.iv, nb);
    LLVMValueRef s = imax(c, lo, base), e = cg_min(c, hi, cg_add(c, base, nb));
    LLVMValueRef in[2] = {cg_gep(c, c->t_f32, a, s),
                          cg_gep(c, c->t_f32, b, cg_sub(c, s, base))};
    emit_map(c, &env, f, cg_gep(c, c->t_f32, out, s), in, 2, s, cg_sub(c, e, s));
    cg_for_end(c, &r);
    LLVMBuildRetVoid(c->b);
    return 0;
}

int cg_lower_add(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_broadcast(c, k, f_add);
}

int cg_lower_mul(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_broadcast(c, k, f_mul);
}

int cg_lower_scale(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 1, f_scale);
}

int cg_lower_fill(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 0, f_fill);
}

int cg_lower_gelu(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 1, f_gelu);
}

int cg_lower_gelu_tanh(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 1, f_gelu_tanh);
}

int cg_lower_tanh(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 1, f_tanh);
}

int cg_lower_gelu_grad(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 2, f_gelu_grad);
}

int cg_lower_gelu_tanh_grad(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 2, f_gelu_tanh_grad);
}

int cg_lower_tanh_grad(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 2, f_tanh_grad);
}

int cg_lower_dropout(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    return lower_map(c, k, 1, f_dropout);
}
