/* lower_elementwise.c: elementwise and broadcast ops. Work unit = one block of
 * elements; plain scalar loops that LLVM's loop vectorizer widens. */
#include "cg.h"

#define BLOCK 4096 /* elements per work unit */

/* units = ceil(numel / BLOCK); the body loops over its elements. Returns the element
 * range via *lo, *hi, with the builder in the body. */
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

int cg_lower_add(cg_ctx *c, cg_kernel *k, ir_err *e)
{
    (void)e;
    LLVMValueRef lo, hi;
    block_range(c, k, &lo, &hi);
    LLVMValueRef out = cg_arg(c, k, 0), a = cg_arg(c, k, 1), b = cg_arg(c, k, 2);
    LLVMValueRef nb = cg_numel(c, cg_operand_type(c, k, 1), k->B, k->S);
    cg_loop l;
    cg_for_begin(c, &l, lo, hi, "i");
    LLVMValueRef va = cg_load(c, c->t_f32, a, l.iv);
    LLVMValueRef vb = cg_load(c, c->t_f32, b, cg_rem(c, l.iv, nb));
    cg_store(c, cg_fadd(c, va, vb), out, l.iv);
    cg_for_end(c, &l);
    LLVMBuildRetVoid(c->b);
    return 0;
}
