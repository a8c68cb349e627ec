/* lower_data.c: data movement — gather, prefix_rows, pad_rows, transpose, select and
 * select_grad. No arithmetic, so any split gives the same bits; the work units are
 * rows (gather: one per id; transpose: one per output row along the last axis; select
 * and select_grad: one per slice before the axis) or element blocks (prefix_rows,
 * pad_rows). Inner loops are contiguous copies that LLVM widens or turns into memcpy. */
#include "cg.h"

#define BLOCK 4096 /* elements per work unit of the block-split ops */

static LLVMTypeRef elem(cg_ctx *c, const ir_type *t)
{
    return t->dtype == IR_I64 ? c->t_i64 : c->t_f32;
}

/* out[o + j] = in[i + j * stride] for j in [0, n) */
static void copy(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef out, LLVMValueRef o,
                 LLVMValueRef in, LLVMValueRef i, LLVMValueRef stride, LLVMValueRef n)
{
    cg_loop l;
    cg_for_begin(c, &l, cg_i64(c, 0), n, "j");
    LLVMValueRef v = cg_load(c, ty, in, cg_add(c, i, cg_mul(c, l.iv, stride)));
    cg_store(c, v, out, cg_add(c, o, l.iv));
    cg_for_end(c, &l);
}

static void zero(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef out, LLVMValueRef from,
                 LLVMValueRef to)
{
    cg_loop l;
    cg_for_begin(c, &l, from, to, "z");
    cg_store(c, LLVMConstNull(ty), out, l.iv);
    cg_for_end(c, &l);
}

/* table (v, h) [ids (n)] -> (n, h); unit = one id */
void cg_lower_gather(cg_ctx *c, cg_kernel *k)
{
    const ir_type *tab = cg_operand_type(c, k, 0), *ids = cg_operand_type(c, k, 1);
    cg_units(c, k, ir_type_numel(ids), 1, NULL);
    LLVMValueRef out = cg_arg(c, k, 0), t = cg_arg(c, k, 1), id = cg_arg(c, k, 2);
    LLVMValueRef h = cg_dim(c, tab->dim[1], k->B, k->S);
    cg_loop i;
    cg_for_begin(c, &i, k->u0, k->u1, "i");
    LLVMValueRef row = cg_load(c, c->t_i64, id, i.iv);
    copy(c, c->t_f32, out, cg_mul(c, i.iv, h), t, cg_mul(c, row, h), cg_i64(c, 1), h);
    cg_for_end(c, &i);
    LLVMBuildRetVoid(c->b);
}

/* The first numel(out) elements of x; unit = a block of elements. */
void cg_lower_prefix_rows(cg_ctx *c, cg_kernel *k)
{
    const ir_type *t = &k->n->type;
    cg_units(c, k, ir_type_numel(t), BLOCK, NULL);
    LLVMValueRef n = cg_numel(c, t, k->B, k->S);
    LLVMValueRef lo, hi;
    cg_unit_range(c, k, BLOCK, n, &lo, &hi);
    copy(c, elem(c, t), cg_arg(c, k, 0), lo, cg_arg(c, k, 1), lo, cg_i64(c, 1),
         cg_sub(c, hi, lo));
    LLVMBuildRetVoid(c->b);
}

/* x's elements, then zeros; unit = a block of elements. */
void cg_lower_pad_rows(cg_ctx *c, cg_kernel *k)
{
    const ir_type *t = &k->n->type;
    cg_units(c, k, ir_type_numel(t), BLOCK, NULL);
    LLVMValueRef n = cg_numel(c, t, k->B, k->S);
    LLVMValueRef nin = cg_numel(c, cg_operand_type(c, k, 0), k->B, k->S);
    LLVMValueRef lo, hi;
    cg_unit_range(c, k, BLOCK, n, &lo, &hi);
    LLVMValueRef mid = cg_min(c, hi, nin);
    LLVMValueRef out = cg_arg(c, k, 0);
    /* copy [lo, mid) (empty when lo >= mid), zero [max(lo, mid), hi) */
    LLVMValueRef ncopy = cg_sub(c, mid, lo);
    copy(c, elem(c, t), out, lo, cg_arg(c, k, 1), lo, cg_i64(c, 1), ncopy);
    zero(c, elem(c, t), out, cg_max(c, lo, mid), hi);
    LLVMBuildRetVoid(c->b);
}

/* out's dim i is x's dim perm[i]. Unit = one output row along the last axis: its
 * coordinates are decoded once, then the row is read with x's stride of that axis
 * (contiguous when the last axis stays last, as in BERT's head split). */
void cg_lower_transpose(cg_ctx *c, cg_kernel *k)
{
    const ir_type *xt = cg_operand_type(c, k, 0), *ot = &k->n->type;
    const int *perm = k->n->a.perm;
    int r = ot->rank;
    if (r == 0) {
        cg_units(c, k, ir_dconst(1), 1, NULL);
        copy(c, elem(c, ot), cg_arg(c, k, 0), cg_i64(c, 0), cg_arg(c, k, 1), cg_i64(c, 0),
             cg_i64(c, 1), cg_i64(c, 1));
        LLVMBuildRetVoid(c->b);
        return;
    }
    cg_units(c, k, cg_dims(ot, 0, r - 1), 1, NULL);
    LLVMValueRef out = cg_arg(c, k, 0), x = cg_arg(c, k, 1);
    LLVMValueRef od[IR_MAX_RANK], xs[IR_MAX_RANK];
    for (int d = 0; d < r; d++) {
        od[d] = cg_dim(c, ot->dim[d], k->B, k->S);
        xs[d] = cg_dims_prod(c, xt, d + 1, r, k->B, k->S);
    }
    cg_loop row;
    cg_for_begin(c, &row, k->u0, k->u1, "row");
    LLVMValueRef rem = row.iv, off = cg_i64(c, 0);
    for (int d = r - 2; d >= 0; d--) {
        off = cg_add(c, off, cg_mul(c, cg_rem(c, rem, od[d]), xs[perm[d]]));
        rem = cg_div(c, rem, od[d]);
    }
    copy(c, elem(c, ot), out, cg_mul(c, row.iv, od[r - 1]), x, off, xs[perm[r - 1]],
         od[r - 1]);
    cg_for_end(c, &row);
    LLVMBuildRetVoid(c->b);
}

/* x (outer, len, inner) [:, index, :] -> (outer, inner); unit = one outer slice. */
void cg_lower_select(cg_ctx *c, cg_kernel *k)
{
    const ir_type *xt = cg_operand_type(c, k, 0);
    int ax = k->n->a.axis;
    cg_units(c, k, cg_dims(xt, 0, ax), 1, NULL);
    LLVMValueRef len = cg_dim(c, xt->dim[ax], k->B, k->S);
    LLVMValueRef inner = cg_dims_prod(c, xt, ax + 1, xt->rank, k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), x = cg_arg(c, k, 1);
    cg_loop o;
    cg_for_begin(c, &o, k->u0, k->u1, "o");
    LLVMValueRef src =
        cg_mul(c, cg_add(c, cg_mul(c, o.iv, len), cg_i64(c, k->n->a.index)), inner);
    copy(c, elem(c, xt), out, cg_mul(c, o.iv, inner), x, src, cg_i64(c, 1), inner);
    cg_for_end(c, &o);
    LLVMBuildRetVoid(c->b);
}

/* dy (outer, inner) -> dx (outer, len, inner), zero except [:, index, :]; unit = one
 * outer slice. */
void cg_lower_select_grad(cg_ctx *c, cg_kernel *k)
{
    const ir_type *t = &k->n->type;
    int ax = k->n->a.axis;
    cg_units(c, k, cg_dims(t, 0, ax), 1, NULL);
    LLVMValueRef len = cg_dim(c, t->dim[ax], k->B, k->S);
    LLVMValueRef inner = cg_dims_prod(c, t, ax + 1, t->rank, k->B, k->S);
    LLVMValueRef slice = cg_mul(c, len, inner);
    LLVMValueRef out = cg_arg(c, k, 0), dy = cg_arg(c, k, 1);
    cg_loop o;
    cg_for_begin(c, &o, k->u0, k->u1, "o");
    LLVMValueRef base = cg_mul(c, o.iv, slice);
    zero(c, elem(c, t), out, base, cg_add(c, base, slice));
    LLVMValueRef dst = cg_add(c, base, cg_mul(c, cg_i64(c, k->n->a.index), inner));
    copy(c, elem(c, t), out, dst, dy, cg_mul(c, o.iv, inner), cg_i64(c, 1), inner);
    cg_for_end(c, &o);
    LLVMBuildRetVoid(c->b);
}
