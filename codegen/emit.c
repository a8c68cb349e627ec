/* emit.c: small IR-building helpers shared by the lowerings (see cg.h). */
#include <string.h>

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

LLVMValueRef cg_dim(cg_ctx *c, ir_dim d, LLVMValueRef B, LLVMValueRef S)
{
    LLVMValueRef v = cg_i64(c, d.c);
    for (int i = 0; i < d.eb; i++)
        v = cg_mul(c, v, B);
    for (int i = 0; i < d.es; i++)
        v = cg_mul(c, v, S);
    return v;
}

LLVMValueRef cg_dims_prod(cg_ctx *c, const ir_type *t, int from, int to, LLVMValueRef B,
                          LLVMValueRef S)
{
    ir_dim p = ir_dconst(1);
    for (int i = from; i < to; i++)
        p = ir_dim_mul(p, t->dim[i]);
    return cg_dim(c, p, B, S);
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
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(c->b));
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
    l->head = LLVMAppendBasicBlockInContext(c->ctx, fn, name);
    l->body = LLVMAppendBasicBlockInContext(c->ctx, fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, fn, "exit");
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

LLVMValueRef cg_intrinsic(cg_ctx *c, const char *name, LLVMTypeRef overload,
                          LLVMValueRef *args, unsigned nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(c->mod, id, &overload, 1);
    LLVMTypeRef ft = LLVMIntrinsicGetType(c->ctx, id, &overload, 1);
    return LLVMBuildCall2(c->b, ft, f, args, nargs, "");
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

unsigned cg_lanes(LLVMTypeRef ty)
{
    return LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMGetVectorSize(ty) : 0;
}

LLVMValueRef cg_constf(cg_ctx *c, LLVMTypeRef ty, double v)
{
    unsigned n = cg_lanes(ty);
    LLVMValueRef k = LLVMConstReal(c->t_f32, v);
    if (!n)
        return k;
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n && i < 64; i++)
        e[i] = k;
    return LLVMConstVector(e, n);
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

LLVMValueRef cg_vld(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base, LLVMValueRef j)
{
    LLVMValueRef v = LLVMBuildLoad2(c->b, ty, cg_gep(c, c->t_f32, base, j), "");
    LLVMSetAlignment(v, 4);
    return v;
}

void cg_vst(cg_ctx *c, LLVMValueRef v, LLVMValueRef base, LLVMValueRef j)
{
    LLVMSetAlignment(LLVMBuildStore(c->b, v, cg_gep(c, c->t_f32, base, j)), 4);
}
