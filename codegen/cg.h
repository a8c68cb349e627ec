/* cg.h: what the op lowerings share — the LLVM context of a module being built, the
 * two functions of the kernel being emitted, and small IR-building helpers (dims,
 * loops, loads, stores). Internal to codegen/.
 *
 * Kernel ABI (runtime/plan.h): for kernel K of a model with prefix P,
 *   i64  P_K_OP_units(const i64 *dims, i64 *scratch_bytes)  work units for dims = {B, S}
 *   void P_K_OP(void *const *ptrs, const i64 *dims, i64 u0, i64 u1, void *scratch)
 * ptrs[0] is the result, ptrs[1..] the operands. The body does units [u0, u1); the
 * executor splits units over threads, so a unit's result must not depend on the
 * split. */
#ifndef BERTCC_CG_INTERNAL_H
#define BERTCC_CG_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "../ir/ir.h"
#include "codegen.h"

typedef struct cg_ctx {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTargetMachineRef tm;
    LLVMTypeRef t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_f64, t_ptr;
    LLVMTypeRef units_ty, body_ty;
    int vec; /* f32 lanes of the widest vector: 16 with AVX-512, 8 with AVX2, else 4 */
    int fma; /* the target has FMA */
    const ir_graph *g;
    char prefix[64];
} cg_ctx;

/* The kernel being emitted. The lowering fills both functions: `units` from its entry
 * block (uB, uS: the sizes; scratch_out: where to store the scratch size) and `body`
 * from its entry block (ptrs, dims, u0, u1, scratch; B, S loaded). */
typedef struct cg_kernel {
    const ir_node *n;
    LLVMValueRef units, body;
    LLVMValueRef uB, uS, scratch_out;
    LLVMValueRef ptrs, dims, u0, u1, scratch, B, S;
} cg_kernel;

/* Emits kernel k: a lowering cannot fail. Whatever a node may hold that its kernel
 * cannot compute is refused before, by the row's check. */
typedef void (*cg_lower_fn)(cg_ctx *c, cg_kernel *k);
/* 0 when the op's kernel can compute node n, else -1 with the reason in e. */
typedef int (*cg_check_fn)(const cg_ctx *c, const ir_node *n, bc_err *e);

/* One row per op (codegen/lower.c): lower is NULL for ops that need no kernel, check
 * NULL where the kernel computes every node the IR verifier accepts. */
typedef struct cg_lowering {
    cg_lower_fn lower;
    cg_check_fn check;
} cg_lowering;
extern const cg_lowering cg_lowerings[IR_OP_COUNT];

/* The kernels of plan as object files for a shared library (codegen/aot.c):
 * STEM.0.o .. STEM.(*nobj-1).o, compiled side by side in parts as the JIT's are (and
 * through its object cache), every kernel with hidden visibility, so that the library
 * exports its API alone (codegen/module.c). */
int cg_emit_library_objects(const ir_graph *g, const rt_plan *plan, const cg_options *o,
                            const char *stem, int *nobj, bc_err *e);

/* ---- elementwise formulas (codegen/lower_elementwise.c) ---- */

/* What a formula may need besides its operands' values. */
typedef struct cg_map_env {
    const ir_node *n;
    LLVMValueRef seed; /* dropout: the i64 seed */
    LLVMValueRef tag;  /* dropout: its stream index as an i64 value (NULL: n's own) */
} cg_map_env;

/* One element (ty = f32) or one vector of them (ty = <vec x float>) of the result from
 * the operands' values x[]; idx is the flat element index (i64 or <vec x i64>). */
typedef LLVMValueRef (*cg_map_fn)(cg_ctx *c, const cg_map_env *env, LLVMTypeRef ty,
                                  LLVMValueRef *x, LLVMValueRef idx);

/* The formula of an elementwise or broadcast op (the one its own kernel uses, so a
 * fused region computes the same bits), or NULL. Dropout's operand 1 (the seed) is
 * env->seed, not x[1]. */
cg_map_fn cg_map_formula(ir_opcode op);

/* ---- helpers (codegen/emit.c) ---- */

LLVMValueRef cg_i64(cg_ctx *c, int64_t v);
LLVMValueRef cg_f32(cg_ctx *c, double v);
/* A dimension's value from the sizes B and S (i64). */
LLVMValueRef cg_dim(cg_ctx *c, ir_dim d, LLVMValueRef B, LLVMValueRef S);
/* Product of dims [from, to) of t as a dimension; 1 if empty. */
ir_dim cg_dims(const ir_type *t, int from, int to);
/* Number of elements of a type (i64). */
LLVMValueRef cg_numel(cg_ctx *c, const ir_type *t, LLVMValueRef B, LLVMValueRef S);
/* Product of dims [from, to) of t (i64); 1 if empty. */
LLVMValueRef cg_dims_prod(cg_ctx *c, const ir_type *t, int from, int to, LLVMValueRef B,
                          LLVMValueRef S);
/* In the body: pointer i of ptrs (0 = result). */
LLVMValueRef cg_arg(cg_ctx *c, cg_kernel *k, int i);
/* The type of operand i of the node (or of the result for i = -1). */
const ir_type *cg_operand_type(cg_ctx *c, cg_kernel *k, int i);

/* &base[idx] for f32, i64 and f32-vector (unaligned) element types. */
LLVMValueRef cg_gep(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx);
LLVMValueRef cg_load(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx);
void cg_store(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx);

/* Integer arithmetic shorthands (i64, no wrap flags). */
LLVMValueRef cg_add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_sub(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_div(cg_ctx *c, LLVMValueRef a, LLVMValueRef b); /* signed */
LLVMValueRef cg_rem(cg_ctx *c, LLVMValueRef a, LLVMValueRef b); /* signed */
LLVMValueRef cg_min(cg_ctx *c, LLVMValueRef a, LLVMValueRef b); /* signed */
LLVMValueRef cg_max(cg_ctx *c, LLVMValueRef a, LLVMValueRef b); /* signed */

/* A new basic block at the end of the function being built. */
LLVMBasicBlockRef cg_block(cg_ctx *c, const char *name);

/* A counted loop: for (iv = from; iv < to; iv++). After cg_for_begin the builder is in
 * the body; cg_for_end closes it and leaves the builder after the loop. Loops nest. */
typedef struct cg_loop {
    LLVMValueRef iv;
    LLVMBasicBlockRef head, body, exit;
} cg_loop;
void cg_for_begin(cg_ctx *c, cg_loop *l, LLVMValueRef from, LLVMValueRef to,
                  const char *name);
void cg_for_end(cg_ctx *c, cg_loop *l);
/* cg_for_end of a loop around other loops, marked to be kept as written (cg_keep_loop):
 * LLVM's unrollers never unroll such a loop, but costing it walks every block of every
 * loop inside it, once per loop level and pass. */
void cg_for_end_outer(cg_ctx *c, cg_loop *l);
/* Marks the loop l (after cg_for_end) as neither to vectorize nor to unroll: it is the
 * scalar tail of an explicit vector loop, shorter than a vector. */
void cg_scalar_tail(cg_ctx *c, cg_loop *l);
/* Marks the loop whose latch (the block branching back to its head) is latch as
 * neither to vectorize nor to unroll: code already written as it should run. */
void cg_keep_loop(cg_ctx *c, LLVMBasicBlockRef latch);

/* A mutable scalar (an alloca in the entry block, promoted to SSA by mem2reg). */
LLVMValueRef cg_var(cg_ctx *c, LLVMTypeRef t, LLVMValueRef init, const char *name);

/* f32 helpers; fmul/fadd carry the `contract` flag only (FMA contraction, nothing
 * that reassociates). */
LLVMValueRef cg_fadd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fsub(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fdiv(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
/* Plain IEEE f32 arithmetic, without the `contract` flag: whether the backend would
 * fuse a multiply and an add could differ between a vectorized and a scalar copy of the
 * same formula, and the bits must not depend on which path an element takes. */
LLVMValueRef cg_fadd_plain(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fsub_plain(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmul_plain(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fmax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_fma(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc);
LLVMValueRef cg_sqrt(cg_ctx *c, LLVMValueRef x);
/* Calls an LLVM intrinsic by name on operands of one overloaded type. */
LLVMValueRef cg_intrinsic(cg_ctx *c, const char *name, LLVMTypeRef overload,
                          LLVMValueRef *args, unsigned nargs);

/* Vectorizable elementwise math on f32 (scalar or vector values), inline polynomials
 * with no libm calls (codegen/math.c): max error a few ulp of f32. */
LLVMValueRef cg_exp(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_tanh(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_erf(cg_ctx *c, LLVMValueRef x);
LLVMValueRef cg_log(cg_ctx *c, LLVMValueRef x);

/* Vector helpers shared by the lowerings: lanes of ty (0 for a scalar); the scalar
 * constant k repeated over ty's lanes (k itself for a scalar ty), an f32 constant shaped
 * like ty; a scalar value broadcast to ty's lanes (of the scalar's type); the constant
 * vector <from, from + 1, ..., from + n - 1> of integer type ity; loads/stores of ty
 * (f32 or a vector of f32) at float index j of base, 4-byte aligned or `align`. */
unsigned cg_lanes(LLVMTypeRef ty);
LLVMValueRef cg_const_splat(LLVMTypeRef ty, LLVMValueRef k);
LLVMValueRef cg_constf(cg_ctx *c, LLVMTypeRef ty, double v);
LLVMValueRef cg_splat(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef s);
LLVMValueRef cg_iota(LLVMTypeRef ity, unsigned from, unsigned n);
LLVMValueRef cg_vld(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base, LLVMValueRef j);
void cg_vst(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef j);
LLVMValueRef cg_vld_align(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base, LLVMValueRef j,
                          unsigned align);
void cg_vst_align(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef j,
                  unsigned align);

/* Masked vector access and the matmuls' multiply-add: an n-lane mask with lanes l < lim
 * on (i64 lim, |lim| < 2^31); &base[idx] of f32 without inbounds (a masked access may
 * start past its buffer's end); masked load (off lanes 0) and store of n f32 lanes;
 * acc + a b as llvm.fma where the target has FMA, else a rounded multiply and add (the
 * one chain every matmul element is, so fused kernels reproduce its bits). */
LLVMValueRef cg_lane_mask(cg_ctx *c, LLVMValueRef lim, int n);
LLVMValueRef cg_ptr_raw(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx);
LLVMValueRef cg_masked_load(cg_ctx *c, int n, LLVMValueRef ptr, LLVMValueRef mask);
void cg_prefetch(cg_ctx *c, LLVMValueRef ptr);
void cg_masked_store(cg_ctx *c, int n, LLVMValueRef v, LLVMValueRef ptr, LLVMValueRef mask);
LLVMValueRef cg_fma_or_muladd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc);

/* Packs a transposed block (codegen/matmul.c): dst[p][w] (row stride W, a multiple of
 * 8; dst 32-byte aligned) = src[(w0 + w) * ld + pc + p] for p < kc, w < W, zero for w >=
 * wv, in 8 x 8 register transposes; rows p >= kc are not written. */
void cg_pack_transposed(cg_ctx *c, LLVMValueRef dst, LLVMValueRef W, LLVMValueRef src,
                        LLVMValueRef ld, LLVMValueRef w0, LLVMValueRef wv, LLVMValueRef pc,
                        LLVMValueRef kc);

/* One row of attn_softmax as its own kernel computes it (codegen/lower_reduce.c):
 * out[0..t) = softmax(scale x + (mask ? 0 : -1e4)) with mask the row's i64 keys; out may
 * be x. Fused attention calls it so that its probabilities have the same bits. */
void cg_attn_softmax_row(cg_ctx *c, LLVMValueRef x, LLVMValueRef out, LLVMValueRef mask,
                         LLVMValueRef t, double scale);
/* Its end, once out[0..t) holds the logits scale x + addend (the addend: 0 for a kept
 * key, CG_MASK_NEG for a masked one, or 0 for every key of a row whose keys are all
 * masked) and max is their maximum: out = exp(out - max) / their sum, by the same
 * passes. cg_hmax: the maximum of a vector's lanes. */
#define CG_MASK_NEG (-10000.0) /* runtime/ref.h RT_MASK_NEG */
void cg_softmax_finish(cg_ctx *c, LLVMValueRef out, LLVMValueRef t, LLVMValueRef max);
LLVMValueRef cg_hmax(cg_ctx *c, LLVMValueRef v);

/* The units function's common case: stores 0 scratch bytes and returns n. Call with
 * the builder at the units entry block. */
void cg_units_return(cg_ctx *c, cg_kernel *k, LLVMValueRef n, LLVMValueRef scratch_bytes);
/* Emits the whole units function from the body: n(uB, uS) units (the dimension n, or
 * its ceiling over `block` when block > 1) and scratch_floats(uB, uS) * 4 bytes of
 * scratch (none when NULL); the builder is back where it was in the body. */
void cg_units(cg_ctx *c, cg_kernel *k, ir_dim n, int64_t block,
              const ir_dim *scratch_floats);
/* In the body, for units of `block` elements each out of n: the elements [*lo, *hi)
 * of units [u0, u1). */
void cg_unit_range(cg_ctx *c, cg_kernel *k, int64_t block, LLVMValueRef n, LLVMValueRef *lo,
                   LLVMValueRef *hi);

#endif
