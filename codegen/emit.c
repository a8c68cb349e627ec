/* emit.c: small IR-building helpers shared by the lowerings (see cg.h). */
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "cg.h"

LLVMValueRef cg_i64(cg_ctx *c, int64_t v)
{
    return LLVMConstInt(c->t_i64, (unsigned long long)v, 1);
}

LLVMValueRef cg_f32(cg_ctx *c, double v)
{
    return LLVMConstReal(c->t_f32, v);
}

LLVMValueRef cg_add(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildAdd(c->b, a, b, "");
}

LLVMValueRef cg_sub(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSub(c->b, a, b, "");
}

LLVMValueRef cg_mul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildMul(c->b, a, b, "");
}

LLVMValueRef cg_div(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSDiv(c->b, a, b, "");
}

LLVMValueRef cg_rem(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSRem(c->b, a, b, "");
}

LLVMValueRef cg_min(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, a, b, ""), a, b, "");
}

LLVMValueRef cg_max(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, a, b, ""), a, b, "");
}

LLVMBasicBlockRef cg_block(cg_ctx *c, const char *name)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(c->b));
    return LLVMAppendBasicBlockInContext(c->ctx, fn, name);
}

LLVMValueRef cg_dim(cg_ctx *c, ir_dim d, LLVMValueRef B, LLVMValueRef S)
{
    LLVMValueRef v = cg_i64(c, d.c);
    for (int i = 0; i < d.eb; i++)
        v = cg_mul(c, v, B);
    for (int i = 0; i < d.es; i++)
        v = cg_mul(c, v, S);
    return v;
}

ir_dim cg_dims(const ir_type *t, int from, int to)
{
    ir_dim p = ir_dconst(1);
    for (int i = from; i < to; i++)
        p = ir_dim_mul(p, t->dim[i]);
    return p;
}

LLVMValueRef cg_dims_prod(cg_ctx *c, const ir_type *t, int from, int to, LLVMValueRef B,
                          LLVMValueRef S)
{
    return cg_dim(c, cg_dims(t, from, to), B, S);
}

LLVMValueRef cg_numel(cg_ctx *c, const ir_type *t, LLVMValueRef B, LLVMValueRef S)
{
    return cg_dims_prod(c, t, 0, t->rank, B, S);
}

LLVMValueRef cg_arg(cg_ctx *c, cg_kernel *k, int i)
{
    LLVMValueRef p =
        LLVMBuildGEP2(c->b, c->t_ptr, k->ptrs, (LLVMValueRef[]){cg_i64(c, i)}, 1, "");
    LLVMValueRef v = LLVMBuildLoad2(c->b, c->t_ptr, p, i ? "in" : "out");
    return v;
}

const ir_type *cg_operand_type(cg_ctx *c, cg_kernel *k, int i)
{
    return i < 0 ? &k->n->type : &c->g->nodes[k->n->in[i]].type;
}

LLVMValueRef cg_gep(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx)
{
    return LLVMBuildInBoundsGEP2(c->b, elem, base, &idx, 1, "");
}

LLVMValueRef cg_load(cg_ctx *c, LLVMTypeRef elem, LLVMValueRef base, LLVMValueRef idx)
{
    LLVMValueRef v = LLVMBuildLoad2(c->b, elem, cg_gep(c, elem, base, idx), "");
    if (LLVMGetTypeKind(elem) == LLVMVectorTypeKind)
        LLVMSetAlignment(v, 4);
    return v;
}

void cg_store(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx)
{
    LLVMTypeRef t = LLVMTypeOf(v);
    LLVMValueRef s = LLVMBuildStore(c->b, v, cg_gep(c, t, base, idx));
    if (LLVMGetTypeKind(t) == LLVMVectorTypeKind)
        LLVMSetAlignment(s, 4);
}

void cg_for_begin(cg_ctx *c, cg_loop *l, LLVMValueRef from, LLVMValueRef to,
                  const char *name)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
    l->head = cg_block(c, name);
    l->body = cg_block(c, "body");
    l->exit = cg_block(c, "exit");
    LLVMBuildBr(c->b, l->head);
    LLVMPositionBuilderAtEnd(c->b, l->head);
    l->iv = LLVMBuildPhi(c->b, c->t_i64, name);
    LLVMAddIncoming(l->iv, &from, &pre, 1);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, l->iv, to, ""), l->body, l->exit);
    LLVMPositionBuilderAtEnd(c->b, l->body);
}

void cg_for_end(cg_ctx *c, cg_loop *l)
{
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMValueRef next = LLVMBuildAdd(c->b, l->iv, cg_i64(c, 1), "");
    LLVMSetNUW(next, 1);
    LLVMSetNSW(next, 1);
    LLVMBuildBr(c->b, l->head);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(c->b, l->exit);
}

void cg_for_end_outer(cg_ctx *c, cg_loop *l)
{
    cg_for_end(c, l);
    cg_keep_loop(c, LLVMGetIncomingBlock(l->iv, 1));
}

void cg_scalar_tail(cg_ctx *c, cg_loop *l)
{
    cg_keep_loop(c, LLVMGetIncomingBlock(l->iv, 1));
}

void cg_keep_loop(cg_ctx *c, LLVMBasicBlockRef latch)
{
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

LLVMValueRef cg_var(cg_ctx *c, LLVMTypeRef t, LLVMValueRef init, const char *name)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(c->b));
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(fn);
    LLVMBuilderRef tmp = LLVMCreateBuilderInContext(c->ctx);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(tmp, first);
    else
        LLVMPositionBuilderAtEnd(tmp, entry);
    LLVMValueRef a = LLVMBuildAlloca(tmp, t, name);
    LLVMDisposeBuilder(tmp);
    if (init)
        LLVMBuildStore(c->b, init, a);
    return a;
}

static LLVMValueRef contract(LLVMValueRef v)
{
    if (LLVMIsAInstruction(v))
        LLVMSetFastMathFlags(v, LLVMFastMathAllowContract);
    return v;
}

LLVMValueRef cg_fadd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return contract(LLVMBuildFAdd(c->b, a, b, ""));
}

LLVMValueRef cg_fsub(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return contract(LLVMBuildFSub(c->b, a, b, ""));
}

LLVMValueRef cg_fmul(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return contract(LLVMBuildFMul(c->b, a, b, ""));
}

LLVMValueRef cg_fdiv(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFDiv(c->b, a, b, "");
}

LLVMValueRef cg_fadd_plain(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFAdd(c->b, a, b, "");
}

LLVMValueRef cg_fsub_plain(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFSub(c->b, a, b, "");
}

LLVMValueRef cg_fmul_plain(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFMul(c->b, a, b, "");
}

LLVMValueRef cg_intrinsic(cg_ctx *c, const char *name, LLVMTypeRef overload,
                          LLVMValueRef *args, unsigned nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(c->mod, id, &overload, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(c->ctx, id, &overload, 1);
    return LLVMBuildCall2(c->b, ft, f, args, nargs, "");
}

/* A hint to bring the cache line at ptr into L1 for reading (llvm.prefetch; never
 * faults, so ptr may be past a buffer's end). */
void cg_prefetch(cg_ctx *c, LLVMValueRef ptr)
{
    LLVMValueRef args[4] = {ptr, LLVMConstInt(c->t_i32, 0, 0), LLVMConstInt(c->t_i32, 3, 0),
                            LLVMConstInt(c->t_i32, 1, 0)};
    cg_intrinsic(c, "llvm.prefetch", c->t_ptr, args, 4);
}

LLVMValueRef cg_fmax(cg_ctx *c, LLVMValueRef a, LLVMValueRef b)
{
    LLVMValueRef args[2] = {a, b};
    return cg_intrinsic(c, "llvm.maxnum", LLVMTypeOf(a), args, 2);
}

LLVMValueRef cg_fma(cg_ctx *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc)
{
    LLVMValueRef args[3] = {a, b, acc};
    return cg_intrinsic(c, "llvm.fma", LLVMTypeOf(a), args, 3);
}

LLVMValueRef cg_sqrt(cg_ctx *c, LLVMValueRef x)
{
    return cg_intrinsic(c, "llvm.sqrt", LLVMTypeOf(x), &x, 1);
}

void cg_units_return(cg_ctx *c, cg_kernel *k, LLVMValueRef n, LLVMValueRef scratch_bytes)
{
    LLVMBuildStore(c->b, scratch_bytes ? scratch_bytes : cg_i64(c, 0), k->scratch_out);
    LLVMBuildRet(c->b, n);
}

void cg_units(cg_ctx *c, cg_kernel *k, ir_dim n, int64_t block,
              const ir_dim *scratch_floats)
{
    LLVMBasicBlockRef body = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(k->units));
    LLVMValueRef v = cg_dim(c, n, k->uB, k->uS);
    if (block > 1)
        v = cg_div(c, cg_add(c, v, cg_i64(c, block - 1)), cg_i64(c, block));
    LLVMValueRef bytes = NULL;
    if (scratch_floats)
        bytes = cg_mul(c, cg_dim(c, *scratch_floats, k->uB, k->uS), cg_i64(c, 4));
    cg_units_return(c, k, v, bytes);
    LLVMPositionBuilderAtEnd(c->b, body);
}

void cg_unit_range(cg_ctx *c, cg_kernel *k, int64_t block, LLVMValueRef n, LLVMValueRef *lo,
                   LLVMValueRef *hi)
{
    *lo = cg_mul(c, k->u0, cg_i64(c, block));
    *hi = cg_min(c, cg_mul(c, k->u1, cg_i64(c, block)), n);
}

unsigned cg_lanes(LLVMTypeRef ty)
{
    return LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMGetVectorSize(ty) : 0;
}

LLVMValueRef cg_const_splat(LLVMTypeRef ty, LLVMValueRef k)
{
    unsigned n = cg_lanes(ty);
    if (!n)
        return k;
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n && i < 64; i++)
        e[i] = k;
    return LLVMConstVector(e, n < 64 ? n : 64);
}

LLVMValueRef cg_constf(cg_ctx *c, LLVMTypeRef ty, double v)
{
    return cg_const_splat(ty, LLVMConstReal(c->t_f32, v));
}

LLVMValueRef cg_splat(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef s)
{
    unsigned n = cg_lanes(ty);
    if (!n)
        return s;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(s), n);
    LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetPoison(vt), s,
                                            LLVMConstInt(c->t_i32, 0, 0), "");
    return LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(vt),
                                  LLVMConstNull(LLVMVectorType(c->t_i32, n)), "");
}

LLVMValueRef cg_iota(LLVMTypeRef ity, unsigned from, unsigned n)
{
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n && i < 64; i++)
        e[i] = LLVMConstInt(ity, from + i, 0);
    return LLVMConstVector(e, n < 64 ? n : 64);
}

LLVMValueRef cg_vld_align(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base, LLVMValueRef j,
                          unsigned align)
{
    LLVMValueRef v = LLVMBuildLoad2(c->b, ty, cg_gep(c, c->t_f32, base, j), "");
    LLVMSetAlignment(v, align);
    return v;
}

void cg_vst_align(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef j,
                  unsigned align)
{
    LLVMSetAlignment(LLVMBuildStore(c->b, v, cg_gep(c, c->t_f32, base, j)), align);
}

LLVMValueRef cg_vld(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base, LLVMValueRef j)
{
    return cg_vld_align(c, ty, base, j, 4);
}

void cg_vst(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef j)
{
    cg_vst_align(c, v, base, j, 4);
}

/* ---- masked vectors and the multiply-add of the matmuls (shared by matmul.c and attention.c) ---- */

/* Lane mask of an n-lane vector: lane l is on when l < lim (i64, |lim| < 2^31). */
LLVMValueRef cg_lane_mask(cg_ctx *c, LLVMValueRef lim, int n)
{
    LLVMValueRef l = cg_splat(c, LLVMVectorType(c->t_i32, (unsigned)n),
                              LLVMBuildTrunc(c->b, lim, c->t_i32, ""));
    return LLVMBuildICmp(c->b, LLVMIntSLT, cg_iota(c->t_i32, 0, (unsigned)n), l, "");
}

/* &base[idx] without inbounds: a masked access may start past the end of its buffer. */
LLVMValueRef cg_ptr_raw(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx)
{
    return LLVMBuildGEP2(c->b, c->t_f32, base, &idx, 1, "");
}

LLVMValueRef cg_masked_load(cg_ctx *c, int n, LLVMValueRef ptr, LLVMValueRef mask)
{
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)n), ov[2] = {vt, c->t_ptr};
    unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, ov, 2);
    LLVMValueRef args[4] = {ptr, LLVMConstInt(c->t_i32, 4, 0), mask, LLVMConstNull(vt)};
    return LLVMBuildCall2(c->b, LLVMIntrinsicGetType(c->ctx, id, ov, 2), fn, args, 4, "");
}

void cg_masked_store(cg_ctx *c, int n, LLVMValueRef v, LLVMValueRef ptr,
                         LLVMValueRef mask)
{
    LLVMTypeRef ov[2] = {LLVMVectorType(c->t_f32, (unsigned)n), c->t_ptr};
    unsigned id = LLVMLookupIntrinsicID("llvm.masked.store", 17);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, ov, 2);
    LLVMValueRef args[4] = {v, ptr, LLVMConstInt(c->t_i32, 4, 0), mask};
    LLVMBuildCall2(c->b, LLVMIntrinsicGetType(c->ctx, id, ov, 2), fn, args, 4, "");
}

/* acc + a * b: llvm.fma where the target has it, else a rounded multiply and add. */
LLVMValueRef cg_fma_or_muladd(cg_ctx *c, LLVMValueRef a, LLVMValueRef b,
                                  LLVMValueRef acc)
{
    if (c->fma)
        return cg_fma(c, a, b, acc);
    return LLVMBuildFAdd(c->b, acc, LLVMBuildFMul(c->b, a, b, ""), "");
}

