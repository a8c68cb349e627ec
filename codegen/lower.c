/* lower.c: the lowering table — one row per op, the kernel generator for its nodes.
 * Params, inputs and reshapes need no kernel (runtime/plan.c binds or aliases them). */
#include "cg.h"

int cg_lower_matmul(cg_ctx *c, cg_kernel *k, ir_err *e);
int cg_lower_add(cg_ctx *c, cg_kernel *k, ir_err *e);

const cg_lower_fn cg_lowerings[IR_OP_COUNT] = {
    [IR_OP_ADD] = cg_lower_add,
};
