/* lower.c: the lowering table — one row per op, the kernel generator for its nodes
 * and, where the generator cannot serve every node, the check that refuses the others.
 * Params, inputs and reshapes need no kernel (runtime/plan.c binds or aliases them). */
#include "cg.h"

void cg_lower_matmul(cg_ctx *c, cg_kernel *k);
void cg_lower_pack_b(cg_ctx *c, cg_kernel *k);
int cg_check_matmul(const cg_ctx *c, const ir_node *n, bc_err *e);
int cg_check_mm_region(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e);
void cg_lower_mm_region(cg_ctx *c, cg_kernel *k, const ir_graph *r);
int cg_check_attention(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e);
void cg_lower_attention(cg_ctx *c, cg_kernel *k, const ir_graph *r);
int cg_check_ln_region(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e);
void cg_lower_ln_region(cg_ctx *c, cg_kernel *k, const ir_graph *r);
int cg_check_lnb_region(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e);
void cg_lower_lnb_region(cg_ctx *c, cg_kernel *k, const ir_graph *r);

/* A fused node: the kernel of the rule that made its region — attention when the body
 * holds a softmax, a layernorm's gradients when it holds layernorm_dx or _dgamma, a
 * layernorm region when it ends in a layernorm, else a matmul and its epilogue (each
 * refuses what it cannot lower). */
enum { REGION_MM, REGION_ATTENTION, REGION_LAYERNORM, REGION_LN_BACKWARD };

static int region_kind(const ir_graph *r)
{
    for (int i = 0; i < r->n; i++) {
        if (r->nodes[i].op == IR_OP_ATTN_SOFTMAX)
            return REGION_ATTENTION;
        if (r->nodes[i].op == IR_OP_LAYERNORM_DX ||
            r->nodes[i].op == IR_OP_LAYERNORM_DGAMMA)
            return REGION_LN_BACKWARD;
    }
    return r->n && r->nodes[r->n - 1].op == IR_OP_LAYERNORM ? REGION_LAYERNORM : REGION_MM;
}

static int cg_check_fused(const cg_ctx *c, const ir_node *n, bc_err *e)
{
    bc_err re;
    ir_graph *r = ir_region_graph(c->g, n, &re);
    if (!r)
        return bc_errf(e, "fused: %s", re.msg);
    int kind = region_kind(r);
    int rc = kind == REGION_ATTENTION     ? cg_check_attention(c, n, r, e)
             : kind == REGION_LAYERNORM   ? cg_check_ln_region(c, n, r, e)
             : kind == REGION_LN_BACKWARD ? cg_check_lnb_region(c, n, r, e)
                                          : cg_check_mm_region(c, n, r, e);
    ir_graph_free(r);
    return rc;
}

static void cg_lower_fused(cg_ctx *c, cg_kernel *k)
{
    bc_err e;
    ir_graph *r = ir_region_graph(c->g, k->n, &e); /* cg_check_fused accepted it */
    if (!r)
        return;
    int kind = region_kind(r);
    if (kind == REGION_ATTENTION)
        cg_lower_attention(c, k, r);
    else if (kind == REGION_LAYERNORM)
        cg_lower_ln_region(c, k, r);
    else if (kind == REGION_LN_BACKWARD)
        cg_lower_lnb_region(c, k, r);
    else
        cg_lower_mm_region(c, k, r);
    ir_graph_free(r);
}
void cg_lower_gather(cg_ctx *c, cg_kernel *k);
void cg_lower_prefix_rows(cg_ctx *c, cg_kernel *k);
void cg_lower_add(cg_ctx *c, cg_kernel *k);
void cg_lower_mul(cg_ctx *c, cg_kernel *k);
void cg_lower_transpose(cg_ctx *c, cg_kernel *k);
void cg_lower_gelu(cg_ctx *c, cg_kernel *k);
void cg_lower_gelu_tanh(cg_ctx *c, cg_kernel *k);
void cg_lower_tanh(cg_ctx *c, cg_kernel *k);
void cg_lower_scale(cg_ctx *c, cg_kernel *k);
void cg_lower_layernorm(cg_ctx *c, cg_kernel *k);
void cg_lower_attn_softmax(cg_ctx *c, cg_kernel *k);
void cg_lower_select(cg_ctx *c, cg_kernel *k);
void cg_lower_cross_entropy(cg_ctx *c, cg_kernel *k);
void cg_lower_dropout(cg_ctx *c, cg_kernel *k);
void cg_lower_fill(cg_ctx *c, cg_kernel *k);
void cg_lower_reduce_sum(cg_ctx *c, cg_kernel *k);
void cg_lower_scatter_add(cg_ctx *c, cg_kernel *k);
void cg_lower_pad_rows(cg_ctx *c, cg_kernel *k);
void cg_lower_gelu_grad(cg_ctx *c, cg_kernel *k);
void cg_lower_gelu_tanh_grad(cg_ctx *c, cg_kernel *k);
void cg_lower_tanh_grad(cg_ctx *c, cg_kernel *k);
void cg_lower_layernorm_dx(cg_ctx *c, cg_kernel *k);
void cg_lower_layernorm_dgamma(cg_ctx *c, cg_kernel *k);
void cg_lower_softmax_grad(cg_ctx *c, cg_kernel *k);
void cg_lower_select_grad(cg_ctx *c, cg_kernel *k);
void cg_lower_cross_entropy_grad(cg_ctx *c, cg_kernel *k);

const cg_lowering cg_lowerings[IR_OP_COUNT] = {
    [IR_OP_GATHER] = {cg_lower_gather},
    [IR_OP_PREFIX_ROWS] = {cg_lower_prefix_rows},
    [IR_OP_ADD] = {cg_lower_add},
    [IR_OP_MUL] = {cg_lower_mul},
    [IR_OP_TRANSPOSE] = {cg_lower_transpose},
    [IR_OP_GELU] = {cg_lower_gelu},
    [IR_OP_GELU_TANH] = {cg_lower_gelu_tanh},
    [IR_OP_TANH] = {cg_lower_tanh},
    [IR_OP_SCALE] = {cg_lower_scale},
    [IR_OP_LAYERNORM] = {cg_lower_layernorm},
    [IR_OP_ATTN_SOFTMAX] = {cg_lower_attn_softmax},
    [IR_OP_SELECT] = {cg_lower_select},
    [IR_OP_CROSS_ENTROPY] = {cg_lower_cross_entropy},
    [IR_OP_DROPOUT] = {cg_lower_dropout},
    [IR_OP_FILL] = {cg_lower_fill},
    [IR_OP_REDUCE_SUM] = {cg_lower_reduce_sum},
    [IR_OP_SCATTER_ADD] = {cg_lower_scatter_add},
    [IR_OP_PAD_ROWS] = {cg_lower_pad_rows},
    [IR_OP_GELU_GRAD] = {cg_lower_gelu_grad},
    [IR_OP_GELU_TANH_GRAD] = {cg_lower_gelu_tanh_grad},
    [IR_OP_TANH_GRAD] = {cg_lower_tanh_grad},
    [IR_OP_LAYERNORM_DX] = {cg_lower_layernorm_dx},
    [IR_OP_LAYERNORM_DGAMMA] = {cg_lower_layernorm_dgamma},
    [IR_OP_SOFTMAX_GRAD] = {cg_lower_softmax_grad},
    [IR_OP_SELECT_GRAD] = {cg_lower_select_grad},
    [IR_OP_CROSS_ENTROPY_GRAD] = {cg_lower_cross_entropy_grad},
    [IR_OP_MATMUL] = {cg_lower_matmul, cg_check_matmul},
    [IR_OP_PACK_B] = {cg_lower_pack_b},
    [IR_OP_FUSED] = {cg_lower_fused, cg_check_fused},
};
