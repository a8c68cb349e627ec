/* lower_elementwise.c: elementwise and broadcast ops — add, mul, scale, gelu,
 * gelu_tanh, tanh, their gradients, dropout and fill. Work unit = a block of BLOCK
 * elements. The body is an explicit <vec x float> loop followed by a scalar tail that
 * computes the same formula; blocks start at multiples of BLOCK (a multiple of the
 * vector width), so which elements take the vector path depends on the tensor's size
 * alone, never on how the units are split over threads. */
#include <math.h>

#include "cg.h"

#define BLOCK 4096 /* elements per work unit */


static LLVMValueRef ki64(cg_ctx *c, LLVMTypeRef ty, uint64_t v)
{
    return cg_const_splat(ty, LLVMConstInt(c->t_i64, v, 0));
}

/* out[i] = f(in[0][i], ...) for i in [0, n); element i has flat index first + i. */
static void emit_map(cg_ctx *c, const cg_map_env *env, cg_map_fn f, LLVMValueRef out,
                     LLVMValueRef *in, int nin, LLVMValueRef first, LLVMValueRef n)
{
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)c->vec);
    LLVMValueRef x[IR_MAX_INPUTS];
    LLVMValueRef nq = cg_div(c, n, cg_i64(c, c->vec));
    cg_loop q;
    cg_for_begin(c, &q, cg_i64(c, 0), nq, "q");
    LLVMValueRef j = cg_mul(c, q.iv, cg_i64(c, c->vec));
    for (int i = 0; i < nin; i++)
        x[i] = cg_vld(c, vt, in[i], j);
    LLVMValueRef idx = LLVMBuildAdd(c->b, cg_splat(c, vt, cg_add(c, first, j)),
                                    cg_iota(c->t_i64, 0, (unsigned)c->vec), "");
    cg_vst(c, f(c, env, vt, x, idx), out, j);
    cg_for_end(c, &q);
    cg_loop t;
    cg_for_begin(c, &t, cg_mul(c, nq, cg_i64(c, c->vec)), n, "t");
    for (int i = 0; i < nin; i++)
        x[i] = cg_vld(c, c->t_f32, in[i], t.iv);
    cg_vst(c, f(c, env, c->t_f32, x, cg_add(c, first, t.iv)), out, t.iv);
    cg_for_end(c, &t);
    cg_scalar_tail(c, &t);
}

/* units = ceil(numel / BLOCK); the body's element range [*lo, *hi). */
static void block_range(cg_ctx *c, cg_kernel *k, LLVMValueRef *lo, LLVMValueRef *hi)
{
    cg_units(c, k, ir_type_numel(&k->n->type), BLOCK, NULL);
    cg_unit_range(c, k, BLOCK, cg_numel(c, &k->n->type, k->B, k->S), lo, hi);
}

/* The common lowering: the first nin operands are f32 tensors of the result's shape. */
static void lower_map(cg_ctx *c, cg_kernel *k, int nin, cg_map_fn f)
{
    LLVMValueRef lo, hi, in[IR_MAX_INPUTS];
    block_range(c, k, &lo, &hi);
    cg_map_env env = {k->n, NULL, NULL};
    if (k->n->op == IR_OP_DROPOUT)
        env.seed = LLVMBuildLoad2(c->b, c->t_i64, cg_arg(c, k, 2), "seed");
    for (int i = 0; i < nin; i++)
        in[i] = cg_gep(c, c->t_f32, cg_arg(c, k, 1 + i), lo);
    emit_map(c, &env, f, cg_gep(c, c->t_f32, cg_arg(c, k, 0), lo), in, nin, lo,
             cg_sub(c, hi, lo));
    LLVMBuildRetVoid(c->b);
}

/* ---- formulas ---- */

static LLVMValueRef f_add(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                          LLVMValueRef idx)
{
    (void)env, (void)ty, (void)idx;
    return cg_fadd_plain(c, x[0], x[1]);
}

static LLVMValueRef f_mul(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                          LLVMValueRef idx)
{
    (void)env, (void)ty, (void)idx;
    return cg_fmul_plain(c, x[0], x[1]);
}

static LLVMValueRef f_scale(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                            LLVMValueRef idx)
{
    (void)idx;
    return cg_fmul_plain(c, x[0], cg_constf(c, ty, env->n->a.scale));
}

static LLVMValueRef f_fill(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                           LLVMValueRef idx)
{
    (void)x, (void)idx;
    return cg_constf(c, ty, env->n->a.scale);
}

static LLVMValueRef f_tanh(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                           LLVMValueRef idx)
{
    (void)env, (void)ty, (void)idx;
    return cg_tanh(c, x[0]);
}

/* Phi(x) = 0.5 (1 + erf(x / sqrt 2)) */
static LLVMValueRef gauss_cdf(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef x)
{
    LLVMValueRef e =
        cg_erf(c, cg_fmul_plain(c, x, cg_constf(c, ty, 0.70710678118654752440)));
    return cg_fadd_plain(c, cg_constf(c, ty, 0.5),
                         cg_fmul_plain(c, cg_constf(c, ty, 0.5), e));
}

static LLVMValueRef f_gelu(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty, LLVMValueRef *x,
                           LLVMValueRef idx)
{
    (void)env, (void)idx;
    return cg_fmul_plain(c, x[0], gauss_cdf(c, ty, x[0]));
}

/* tanh(sqrt(2/pi) (x + 0.044715 x^3)) */
static LLVMValueRef gelu_tanh_t(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef x)
{
    LLVMValueRef x3 = cg_fmul_plain(c, cg_fmul_plain(c, x, x), x);
    LLVMValueRef in = cg_fadd_plain(c, x, cg_fmul_plain(c, cg_constf(c, ty, 0.044715), x3));
    return cg_tanh(c, cg_fmul_plain(c, cg_constf(c, ty, 0.79788456080286535588), in));
}

static LLVMValueRef f_gelu_tanh(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty,
                                LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    LLVMValueRef t = gelu_tanh_t(c, ty, x[0]);
    return cg_fmul_plain(c, cg_fmul_plain(c, cg_constf(c, ty, 0.5), x[0]),
                         cg_fadd_plain(c, cg_constf(c, ty, 1.0), t));
}

/* dy (Phi(x) + x phi(x)) */
static LLVMValueRef f_gelu_grad(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty,
                                LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    LLVMValueRef v = x[0];
    LLVMValueRef pdf = cg_fmul_plain(
        c, cg_exp(c, cg_fmul_plain(c, cg_constf(c, ty, -0.5), cg_fmul_plain(c, v, v))),
        cg_constf(c, ty, 0.39894228040143267794)); /* 1 / sqrt(2 pi) */
    return cg_fmul_plain(c, x[1],
                         cg_fadd_plain(c, gauss_cdf(c, ty, v), cg_fmul_plain(c, v, pdf)));
}

/* dy (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)) */
static LLVMValueRef f_gelu_tanh_grad(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty,
                                     LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    LLVMValueRef v = x[0], t = gelu_tanh_t(c, ty, v);
    LLVMValueRef one = cg_constf(c, ty, 1.0), half = cg_constf(c, ty, 0.5);
    LLVMValueRef a = cg_fmul_plain(c, half, cg_fadd_plain(c, one, t));
    LLVMValueRef dt = cg_fsub_plain(c, one, cg_fmul_plain(c, t, t));
    LLVMValueRef poly = cg_fadd_plain(
        c, one, cg_fmul_plain(c, cg_constf(c, ty, 3 * 0.044715), cg_fmul_plain(c, v, v)));
    LLVMValueRef b =
        cg_fmul_plain(c, cg_fmul_plain(c, cg_fmul_plain(c, half, v), dt),
                      cg_fmul_plain(c, cg_constf(c, ty, 0.79788456080286535588), poly));
    return cg_fmul_plain(c, x[1], cg_fadd_plain(c, a, b));
}

/* y = tanh(x): dy (1 - y^2) */
static LLVMValueRef f_tanh_grad(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty,
                                LLVMValueRef *x, LLVMValueRef idx)
{
    (void)env, (void)idx;
    return cg_fmul_plain(
        c, x[1], cg_fsub_plain(c, cg_constf(c, ty, 1.0), cg_fmul_plain(c, x[0], x[0])));
}

/* ref_dropout_keep's hash, on i64 lanes; keep iff (z >> 40) * 2^-24 >= p, which for the
 * 24-bit integer z >> 40 is (z >> 40) >= ceil(p 2^24) exactly. */
static LLVMValueRef f_dropout(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty,
                              LLVMValueRef *x, LLVMValueRef idx)
{
    double p = env->n->a.p;
    uint64_t tag = (uint64_t)env->n->a.index;
    LLVMValueRef mix = ki64(c, ty, tag * 0x9e3779b97f4a7c15ULL);
    if (env->tag) /* the stream index at run time (a fused kernel shared by layers) */
        mix = cg_splat(c, ty, LLVMBuildMul(c->b, env->tag,
                                           LLVMConstInt(c->t_i64, 0x9e3779b97f4a7c15ULL, 0),
                                           ""));
    LLVMValueRef z = LLVMBuildXor(c->b, cg_splat(c, ty, env->seed), mix, "");
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
    LLVMValueRef kept =
        cg_fmul_plain(c, x[0], cg_constf(c, ty, (double)(float)(1.0 / (1.0 - p))));
    return LLVMBuildSelect(c->b, keep, kept, cg_constf(c, ty, 0.0), "");
}

/* ---- lowerings ---- */

/* a (na) op b (nb) [i % nb]: the block is cut at multiples of nb so that the inner loop
 * reads b contiguously. */
static void lower_broadcast(cg_ctx *c, cg_kernel *k, cg_map_fn f)
{
    const ir_type *ta = cg_operand_type(c, k, 0), *tb = cg_operand_type(c, k, 1);
    if (ir_type_eq(ta, tb)) {
        lower_map(c, k, 2, f);
        return;
    }
    LLVMValueRef lo, hi;
    block_range(c, k, &lo, &hi);
    cg_map_env env = {k->n, NULL, NULL};
    LLVMValueRef out = cg_arg(c, k, 0), a = cg_arg(c, k, 1), b = cg_arg(c, k, 2);
    LLVMValueRef nb = cg_numel(c, tb, k->B, k->S);
    LLVMValueRef r0 = cg_div(c, lo, nb);
    LLVMValueRef r1 = cg_div(c, cg_add(c, hi, cg_sub(c, nb, cg_i64(c, 1))), nb);
    cg_loop r;
    cg_for_begin(c, &r, r0, r1, "row");
    LLVMValueRef base = cg_mul(c, r.iv, nb);
    LLVMValueRef s = cg_max(c, lo, base), e = cg_min(c, hi, cg_add(c, base, nb));
    LLVMValueRef in[2] = {cg_gep(c, c->t_f32, a, s),
                          cg_gep(c, c->t_f32, b, cg_sub(c, s, base))};
    emit_map(c, &env, f, cg_gep(c, c->t_f32, out, s), in, 2, s, cg_sub(c, e, s));
    cg_for_end(c, &r);
    LLVMBuildRetVoid(c->b);
}

void cg_lower_add(cg_ctx *c, cg_kernel *k)
{
    lower_broadcast(c, k, f_add);
}

void cg_lower_mul(cg_ctx *c, cg_kernel *k)
{
    lower_broadcast(c, k, f_mul);
}

void cg_lower_scale(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 1, f_scale);
}

void cg_lower_fill(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 0, f_fill);
}

void cg_lower_gelu(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 1, f_gelu);
}

void cg_lower_gelu_tanh(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 1, f_gelu_tanh);
}

void cg_lower_tanh(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 1, f_tanh);
}

void cg_lower_gelu_grad(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 2, f_gelu_grad);
}

void cg_lower_gelu_tanh_grad(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 2, f_gelu_tanh_grad);
}

void cg_lower_tanh_grad(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 2, f_tanh_grad);
}

void cg_lower_dropout(cg_ctx *c, cg_kernel *k)
{
    lower_map(c, k, 1, f_dropout);
}

/* ---- the formulas, for fused regions ---- */

cg_map_fn cg_map_formula(ir_opcode op)
{
    switch (op) {
    case IR_OP_ADD: return f_add;
    case IR_OP_MUL: return f_mul;
    case IR_OP_SCALE: return f_scale;
    case IR_OP_GELU: return f_gelu;
    case IR_OP_GELU_TANH: return f_gelu_tanh;
    case IR_OP_TANH: return f_tanh;
    case IR_OP_GELU_GRAD: return f_gelu_grad;
    case IR_OP_GELU_TANH_GRAD: return f_gelu_tanh_grad;
    case IR_OP_TANH_GRAD: return f_tanh_grad;
    case IR_OP_DROPOUT: return f_dropout;
    default: return NULL;
    }
}
