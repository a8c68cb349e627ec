/* lower_reduce.c: reductions.
 *
 * Row-wise (unit = one row of the last axis): layernorm, layernorm_dx, attn_softmax,
 * softmax_grad, cross_entropy_grad. A row is processed by an explicit <vec x float>
 * loop over its whole vectors, then a scalar loop over the rest; sums and maxima keep
 * one vector accumulator, reduced across lanes by a fixed tree, then extended over the
 * tail in order. Which elements take which path depends on the row length only, so the
 * bits do not depend on the thread split.
 *
 * cross_entropy writes one scalar, so it is one unit: rows in order, each row's loss
 * vectorized as above, the mean (or the class-weighted mean and its weights' sum)
 * accumulated in double.
 *
 * Column-wise (unit = a block of 4 vectors of output columns): reduce_sum,
 * layernorm_dgamma, scatter_add. Each unit owns its output columns and sums over all
 * rows in increasing row order, so no two threads add into one value; reduce_sum and
 * layernorm_dgamma, which sum every row into each value, do so in double. */
#include <math.h>
#include <string.h>

#include "cg.h"

#define ROW_MASK_NEG CG_MASK_NEG
#define LR_MAX_NODES 40 /* a layernorm region's inputs and statements */

/* ---- vector helpers ---- */

/* i64 values (as many lanes as ty) at index j of base */
static LLVMValueRef ld_i64(cg_ctx *c, LLVMTypeRef ty, LLVMValueRef base, LLVMValueRef j)
{
    LLVMTypeRef it = cg_lanes(ty) ? LLVMVectorType(c->t_i64, cg_lanes(ty)) : c->t_i64;
    LLVMValueRef v = LLVMBuildLoad2(c->b, it, cg_gep(c, c->t_i64, base, j), "");
    LLVMSetAlignment(v, 8);
    return v;
}

static LLVMValueRef to_f32(cg_ctx *c, LLVMValueRef i64)
{
    return LLVMBuildSIToFP(c->b, i64, c->t_f32, "");
}

enum { R_NONE, R_SUM, R_MAX };

static LLVMValueRef combine(cg_ctx *c, int op, LLVMValueRef a, LLVMValueRef b)
{
    return op == R_SUM ? LLVMBuildFAdd(c->b, a, b, "") : cg_fmax(c, a, b);
}

/* Lanes combined by halves (lanes [0, n/2) with [n/2, n), ...): a fixed order. */
static LLVMValueRef hreduce(cg_ctx *c, int op, LLVMValueRef v)
{
    unsigned n = cg_lanes(LLVMTypeOf(v));
    while (n > 1) {
        unsigned h = n / 2;
        v = combine(c, op, LLVMBuildShuffleVector(c->b, v, v, cg_iota(c->t_i32, 0, h), ""),
                    LLVMBuildShuffleVector(c->b, v, v, cg_iota(c->t_i32, h, h), ""));
        n = h;
    }
    return LLVMBuildExtractElement(c->b, v, LLVMConstInt(c->t_i32, 0, 0), "");
}

/* The row being processed: pointers to its data, and scalars computed by earlier passes. */
typedef struct row {
    LLVMValueRef p[4]; /* f32 row pointers (op-specific) */
    LLVMValueRef mask; /* i64 mask row (attn_softmax) */
    LLVMValueRef s[4]; /* f32 scalars (op-specific) */
    const struct ln_region *region; /* a layernorm region's prologue */
} row;

/* Element j (or the vector starting there, ty saying which) of one pass over a row:
 * returns the value to reduce (or NULL), storing whatever the pass writes. */
typedef LLVMValueRef (*row_fn)(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j);

/* One pass over a row of h elements; returns the sum or max (op) of f's values. */
static LLVMValueRef row_pass(cg_ctx *c, LLVMValueRef h, row_fn f, const row *r, int op)
{
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)c->vec);
    double init = op == R_MAX ? -INFINITY : 0.0;
    LLVMValueRef acc = op ? cg_var(c, vt, cg_constf(c, vt, init), "acc") : NULL;
    LLVMValueRef nq = cg_div(c, h, cg_i64(c, c->vec));
    cg_loop q;
    cg_for_begin(c, &q, cg_i64(c, 0), nq, "q");
    LLVMValueRef v = f(c, r, vt, cg_mul(c, q.iv, cg_i64(c, c->vec)));
    if (op)
        LLVMBuildStore(c->b, combine(c, op, LLVMBuildLoad2(c->b, vt, acc, ""), v), acc);
    cg_for_end(c, &q);
    LLVMValueRef sacc = NULL;
    if (op)
        sacc =
            cg_var(c, c->t_f32, hreduce(c, op, LLVMBuildLoad2(c->b, vt, acc, "")), "sacc");
    cg_loop t;
    cg_for_begin(c, &t, cg_mul(c, nq, cg_i64(c, c->vec)), h, "t");
    v = f(c, r, c->t_f32, t.iv);
    if (op)
        LLVMBuildStore(c->b, combine(c, op, LLVMBuildLoad2(c->b, c->t_f32, sacc, ""), v),
                       sacc);
    cg_for_end(c, &t);
    cg_scalar_tail(c, &t);
    return op ? LLVMBuildLoad2(c->b, c->t_f32, sacc, "") : NULL;
}

/* if (cond) { ...then... } : returns the join block; the builder is left in `then`. */
static LLVMBasicBlockRef if_begin(cg_ctx *c, LLVMValueRef cond)
{
    LLVMBasicBlockRef then = cg_block(c, "then"), join = cg_block(c, "join");
    LLVMBuildCondBr(c->b, cond, then, join);
    LLVMPositionBuilderAtEnd(c->b, then);
    return join;
}

static void if_end(cg_ctx *c, LLVMBasicBlockRef join)
{
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
}

/* ---- row passes ---- */

/* p[0] = x */
static LLVMValueRef p_x(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    return cg_vld(c, ty, r->p[0], j);
}

/* (x - s[0])^2 */
static LLVMValueRef p_sqdev(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef d =
        LLVMBuildFSub(c->b, cg_vld(c, ty, r->p[0], j), cg_splat(c, ty, r->s[0]), "");
    return LLVMBuildFMul(c->b, d, d, "");
}

/* mean s[0] and rstd s[1] of the row at p[0] */
static void row_stats(cg_ctx *c, row *r, LLVMValueRef h, double eps)
{
    LLVMValueRef hf = to_f32(c, h);
    r->s[0] = LLVMBuildFDiv(c->b, row_pass(c, h, p_x, r, R_SUM), hf, "mean");
    LLVMValueRef var = LLVMBuildFDiv(c->b, row_pass(c, h, p_sqdev, r, R_SUM), hf, "var");
    r->s[1] =
        LLVMBuildFDiv(c->b, cg_f32(c, 1.0),
                      cg_sqrt(c, LLVMBuildFAdd(c->b, var, cg_f32(c, eps), "")), "rstd");
}

/* xhat = (x - mean) rstd */
static LLVMValueRef xhat(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    return cg_fmul_plain(
        c, cg_fsub_plain(c, cg_vld(c, ty, r->p[0], j), cg_splat(c, ty, r->s[0])),
        cg_splat(c, ty, r->s[1]));
}

/* layernorm: p = {x, gamma, beta, out} */
static LLVMValueRef p_ln_out(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef y =
        cg_fadd_plain(c, cg_fmul_plain(c, xhat(c, r, ty, j), cg_vld(c, ty, r->p[1], j)),
                      cg_vld(c, ty, r->p[2], j));
    cg_vst(c, y, r->p[3], j);
    return NULL;
}

/* layernorm_dx: p = {x, gamma, dy, dx}; s = {mean, rstd, mean(g), mean(g xhat)} */
static LLVMValueRef p_g(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    return cg_fmul_plain(c, cg_vld(c, ty, r->p[2], j), cg_vld(c, ty, r->p[1], j));
}

static LLVMValueRef p_gx(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    return cg_fmul_plain(c, p_g(c, r, ty, j), xhat(c, r, ty, j));
}

static LLVMValueRef p_ln_dx(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef t = cg_fsub_plain(c, p_g(c, r, ty, j), cg_splat(c, ty, r->s[2]));
    t = cg_fsub_plain(c, t, cg_fmul_plain(c, xhat(c, r, ty, j), cg_splat(c, ty, r->s[3])));
    cg_vst(c, cg_fmul_plain(c, cg_splat(c, ty, r->s[1]), t), r->p[3], j);
    return NULL;
}

/* attn_softmax: p = {x, out}, mask; s = {scale, max, sum, the masked keys' addend} */
static LLVMValueRef p_sm_any(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef m = ld_i64(c, ty, r->mask, j);
    return LLVMBuildSelect(
        c->b, LLVMBuildICmp(c->b, LLVMIntNE, m, LLVMConstNull(LLVMTypeOf(m)), ""),
        cg_constf(c, ty, 1.0), cg_constf(c, ty, 0.0), "");
}

static LLVMValueRef p_sm_logit(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef m = ld_i64(c, ty, r->mask, j);
    LLVMValueRef zero = LLVMConstNull(LLVMTypeOf(m));
    LLVMValueRef add = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, m, zero, ""),
                                       cg_splat(c, ty, r->s[3]), cg_constf(c, ty, 0.0), "");
    LLVMValueRef v = cg_fadd_plain(
        c, cg_fmul_plain(c, cg_splat(c, ty, r->s[0]), cg_vld(c, ty, r->p[0], j)), add);
    cg_vst(c, v, r->p[1], j);
    return v;
}

/* out = exp(out - s[1]) (p[1] = out) */
static LLVMValueRef p_exp_inplace(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef e = cg_exp(
        c, LLVMBuildFSub(c->b, cg_vld(c, ty, r->p[1], j), cg_splat(c, ty, r->s[1]), ""));
    cg_vst(c, e, r->p[1], j);
    return e;
}

/* out *= s[2] (1 / sum: one division per row, the result within 1.5 ulp of out / sum) */
static LLVMValueRef p_scale_inplace(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    cg_vst(c, cg_fmul_plain(c, cg_vld(c, ty, r->p[1], j), cg_splat(c, ty, r->s[2])),
           r->p[1], j);
    return NULL;
}

/* softmax_grad: p = {y, dy, dx}; s = {scale, dot} */
static LLVMValueRef p_dot(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    return cg_fmul_plain(c, cg_vld(c, ty, r->p[1], j), cg_vld(c, ty, r->p[0], j));
}

static LLVMValueRef p_sm_dx(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef y = cg_vld(c, ty, r->p[0], j);
    LLVMValueRef d = cg_fsub_plain(c, cg_vld(c, ty, r->p[1], j), cg_splat(c, ty, r->s[1]));
    cg_vst(c, cg_fmul_plain(c, cg_fmul_plain(c, cg_splat(c, ty, r->s[0]), y), d), r->p[2],
           j);
    return NULL;
}

/* cross-entropy: p = {logits, out}; s = {max, sum, factor, factor / sum} */
static LLVMValueRef p_expdev(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    return cg_exp(
        c, LLVMBuildFSub(c->b, cg_vld(c, ty, r->p[0], j), cg_splat(c, ty, r->s[0]), ""));
}

static LLVMValueRef p_ce_exp(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    LLVMValueRef e = p_expdev(c, r, ty, j);
    cg_vst(c, e, r->p[1], j);
    return e;
}

/* out *= s[3] (factor / sum) */
static LLVMValueRef p_ce_scale(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    cg_vst(c, cg_fmul_plain(c, cg_vld(c, ty, r->p[1], j), cg_splat(c, ty, r->s[3])),
           r->p[1], j);
    return NULL;
}

static LLVMValueRef p_zero(cg_ctx *c, const row *r, LLVMTypeRef ty, LLVMValueRef j)
{
    cg_vst(c, cg_constf(c, ty, 0.0), r->p[1], j);
    return NULL;
}

/* ---- the layernorm rule's region: elementwise ops, then the layernorm of their result
 * ---- */

/* How a prologue op reads one operand. */
typedef enum { LR_BODY, LR_FULL, LR_SUFFIX, LR_SCALAR } lr_kind;

typedef struct ln_region {
    const ir_graph *r; /* the region graph: inputs 0..nin-1, the ops, the layernorm last */
    int nin;
    lr_kind kind[LR_MAX_NODES][IR_MAX_INPUTS];
    LLVMValueRef base[IR_MAX_INPUTS]; /* in the body: each input's pointer */
    LLVMValueRef nb[IR_MAX_INPUTS];   /* LR_SUFFIX: the input's element count */
    LLVMValueRef off;                 /* the current row's flat offset */
} ln_region;

/* Reads region graph r as elementwise ops of the layernorm's shape (no dropout: its
 * stream index is a matmul epilogue's business) whose operands are earlier ops, tensors
 * of that shape, suffixes of it or scalars, then a layernorm of the last op's value with
 * gamma and beta from outside; or says why it is not one. */
static int read_ln_region(const ir_node *n, const ir_graph *r, ln_region *lr, bc_err *e)
{
    int nin = n->nin, last = r->n - 1;
    const ir_node *ln = &r->nodes[last];
    const ir_type *t = &ln->type;
    lr->r = r;
    lr->nin = nin;
    if (ln->op != IR_OP_LAYERNORM || last - nin < 1 || last >= LR_MAX_NODES ||
        ln->in[0] != last - 1 || ln->in[1] >= nin || ln->in[2] >= nin)
        return bc_errf(e, "fused: a layernorm region is elementwise ops (at most %d) and the "
                          "layernorm of the last one's value, gamma and beta from outside",
                       LR_MAX_NODES - 2);
    for (int i = nin; i < last; i++) {
        const ir_node *u = &r->nodes[i];
        if (!cg_map_formula(u->op) || u->op == IR_OP_DROPOUT || !ir_type_eq(&u->type, t))
            return bc_errf(e, "fused: body statement %d (%s) is not an elementwise op of the "
                              "layernorm's shape",
                           i - nin + 1, ir_ops[u->op].name);
        for (int k = 0; k < u->nin; k++) {
            const ir_type *x = &r->nodes[u->in[k]].type;
            int suffix = x->rank >= 1 && x->rank <= t->rank && x->dtype == IR_F32;
            for (int d = 0; suffix && d < x->rank; d++)
                suffix = ir_dim_eq(x->dim[d], t->dim[t->rank - x->rank + d]);
            if (u->in[k] >= nin)
                lr->kind[i][k] = LR_BODY;
            else if (x->dtype == IR_F32 && ir_type_eq(x, t))
                lr->kind[i][k] = LR_FULL;
            else if (x->dtype == IR_F32 && x->rank == 0)
                lr->kind[i][k] = LR_SCALAR;
            else if (suffix)
                lr->kind[i][k] = LR_SUFFIX;
            else
                return bc_errf(e, "fused: body statement %d reads an operand that is neither "
                                  "of the layernorm's shape, a suffix of it nor an f32 scalar",
                               i - nin + 1);
        }
    }
    return 0;
}

int cg_check_ln_region(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e)
{
    (void)c;
    ln_region lr;
    return read_ln_region(n, r, &lr, e);
}

/* The ops' value at column j of the current row (ty: one element or a vector), stored
 * into p[0] (the output row, which the layernorm then reads and overwrites in place). */
static LLVMValueRef p_prologue(cg_ctx *c, const row *rw, LLVMTypeRef ty, LLVMValueRef j)
{
    const ln_region *lr = rw->region;
    const ir_graph *r = lr->r;
    LLVMValueRef val[LR_MAX_NODES], x[IR_MAX_INPUTS];
    int last = r->n - 1;
    for (int i = lr->nin; i < last; i++) {
        const ir_node *u = &r->nodes[i];
        for (int k = 0; k < u->nin; k++) {
            int a = u->in[k];
            switch (lr->kind[i][k]) {
            case LR_BODY: x[k] = val[a]; break;
            case LR_FULL: x[k] = cg_vld(c, ty, lr->base[a], cg_add(c, lr->off, j)); break;
            case LR_SUFFIX:
                x[k] = cg_vld(c, ty, lr->base[a], cg_add(c, cg_rem(c, lr->off, lr->nb[a]), j));
                break;
            case LR_SCALAR:
                x[k] = cg_splat(c, ty, cg_vld(c, c->t_f32, lr->base[a], cg_i64(c, 0)));
                break;
            }
        }
        cg_map_env env = {u, NULL, NULL};
        val[i] = cg_map_formula(u->op)(c, &env, ty, x, NULL);
    }
    cg_vst(c, val[last - 1], rw->p[0], j);
    return NULL;
}

/* unit = one row: the ops' values into the output row, then the layernorm in place (the
 * same passes and so the same bits as the layernorm kernel on the ops' result) */
void cg_lower_ln_region(cg_ctx *c, cg_kernel *k, const ir_graph *r)
{
    ln_region lr;
    bc_err e;
    if (read_ln_region(k->n, r, &lr, &e)) /* cg_check_ln_region accepted it */
        return;
    const ir_type *t = &k->n->type;
    const ir_node *ln = &r->nodes[r->n - 1];
    cg_units(c, k, cg_dims(t, 0, t->rank - 1), 1, NULL);
    LLVMValueRef h = cg_dim(c, t->dim[t->rank - 1], k->B, k->S), out = cg_arg(c, k, 0);
    for (int a = 0; a < lr.nin; a++) {
        lr.base[a] = cg_arg(c, k, 1 + a);
        lr.nb[a] = cg_numel(c, &r->nodes[a].type, k->B, k->S);
    }
    cg_loop i;
    cg_for_begin(c, &i, k->u0, k->u1, "row");
    lr.off = cg_mul(c, i.iv, h);
    LLVMValueRef orow = cg_gep(c, c->t_f32, out, lr.off);
    row rw = {.p = {orow}, .region = &lr};
    row_pass(c, h, p_prologue, &rw, R_NONE);
    rw = (row){.p = {orow, lr.base[ln->in[1]], lr.base[ln->in[2]], orow}};
    row_stats(c, &rw, h, ln->a.eps);
    row_pass(c, h, p_ln_out, &rw, R_NONE);
    cg_for_end(c, &i);
    LLVMBuildRetVoid(c->b);
}

/* ---- row-wise lowerings ---- */

/* x (rows, h), gamma (h), beta (h) -> (rows, h); unit = one row */
void cg_lower_layernorm(cg_ctx *c, cg_kernel *k)
{
    const ir_type *t = &k->n->type;
    cg_units(c, k, cg_dims(t, 0, t->rank - 1), 1, NULL);
    LLVMValueRef h = cg_dim(c, t->dim[t->rank - 1], k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), x = cg_arg(c, k, 1);
    LLVMValueRef gamma = cg_arg(c, k, 2), beta = cg_arg(c, k, 3);
    cg_loop i;
    cg_for_begin(c, &i, k->u0, k->u1, "row");
    LLVMValueRef off = cg_mul(c, i.iv, h);
    row r = {
        .p = {cg_gep(c, c->t_f32, x, off), gamma, beta, cg_gep(c, c->t_f32, out, off)}};
    row_stats(c, &r, h, k->n->a.eps);
    row_pass(c, h, p_ln_out, &r, R_NONE);
    cg_for_end(c, &i);
    LLVMBuildRetVoid(c->b);
}

/* x, gamma, dy -> dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma; unit = row */
void cg_lower_layernorm_dx(cg_ctx *c, cg_kernel *k)
{
    const ir_type *t = &k->n->type;
    cg_units(c, k, cg_dims(t, 0, t->rank - 1), 1, NULL);
    LLVMValueRef h = cg_dim(c, t->dim[t->rank - 1], k->B, k->S), hf = to_f32(c, h);
    LLVMValueRef out = cg_arg(c, k, 0), x = cg_arg(c, k, 1);
    LLVMValueRef gamma = cg_arg(c, k, 2), dy = cg_arg(c, k, 3);
    cg_loop i;
    cg_for_begin(c, &i, k->u0, k->u1, "row");
    LLVMValueRef off = cg_mul(c, i.iv, h);
    row r = {.p = {cg_gep(c, c->t_f32, x, off), gamma, cg_gep(c, c->t_f32, dy, off),
                   cg_gep(c, c->t_f32, out, off)}};
    row_stats(c, &r, h, k->n->a.eps);
    r.s[2] = LLVMBuildFDiv(c->b, row_pass(c, h, p_g, &r, R_SUM), hf, "mg");
    r.s[3] = LLVMBuildFDiv(c->b, row_pass(c, h, p_gx, &r, R_SUM), hf, "mgx");
    row_pass(c, h, p_ln_dx, &r, R_NONE);
    cg_for_end(c, &i);
    LLVMBuildRetVoid(c->b);
}

void cg_attn_softmax_row(cg_ctx *c, LLVMValueRef x, LLVMValueRef out, LLVMValueRef mask,
                         LLVMValueRef t, double scale)
{
    row r = {.p = {x, out}};
    r.mask = mask;
    r.s[0] = cg_f32(c, scale);
    /* Softmax does not change when every logit moves by the same amount, so a row whose
     * keys are all masked is the softmax of scale x alone: adding -1e4 there in f32 would
     * round away the low bits of every logit. */
    LLVMValueRef any = row_pass(c, t, p_sm_any, &r, R_MAX);
    r.s[3] =
        LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, any, cg_f32(c, 0.0), ""),
                        cg_f32(c, ROW_MASK_NEG), cg_f32(c, 0.0), "neg");
    cg_softmax_finish(c, out, t, row_pass(c, t, p_sm_logit, &r, R_MAX));
}

void cg_softmax_finish(cg_ctx *c, LLVMValueRef out, LLVMValueRef t, LLVMValueRef max)
{
    row r = {.p = {out, out}};
    r.s[1] = max;
    r.s[2] = LLVMBuildFDiv(c->b, cg_f32(c, 1.0), row_pass(c, t, p_exp_inplace, &r, R_SUM),
                           "inv");
    row_pass(c, t, p_scale_inplace, &r, R_NONE);
}

LLVMValueRef cg_hmax(cg_ctx *c, LLVMValueRef v)
{
    return hreduce(c, R_MAX, v);
}

/* scores (batch, ..., t), mask (batch, t): softmax over t of scale x + (mask ? 0 : -1e4);
 * unit = one row */
void cg_lower_attn_softmax(cg_ctx *c, cg_kernel *k)
{
    const ir_type *xt = cg_operand_type(c, k, 0);
    int rk = xt->rank;
    cg_units(c, k, cg_dims(xt, 0, rk - 1), 1, NULL);
    LLVMValueRef t = cg_dim(c, xt->dim[rk - 1], k->B, k->S);
    LLVMValueRef per_batch = cg_dims_prod(c, xt, 1, rk - 1, k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), x = cg_arg(c, k, 1), mask = cg_arg(c, k, 2);
    /* the batch entry of row i, i / per_batch, kept as a counter (no division per row) */
    LLVMValueRef bvar = cg_var(c, c->t_i64, cg_div(c, k->u0, per_batch), "b");
    LLVMValueRef rvar = cg_var(c, c->t_i64, cg_rem(c, k->u0, per_batch), "rb");
    cg_loop i;
    cg_for_begin(c, &i, k->u0, k->u1, "row");
    LLVMValueRef off = cg_mul(c, i.iv, t), bi = LLVMBuildLoad2(c->b, c->t_i64, bvar, "");
    cg_attn_softmax_row(c, cg_gep(c, c->t_f32, x, off), cg_gep(c, c->t_f32, out, off),
                        cg_gep(c, c->t_i64, mask, cg_mul(c, bi, t)), t, k->n->a.scale);
    LLVMValueRef rb = cg_add(c, LLVMBuildLoad2(c->b, c->t_i64, rvar, ""), cg_i64(c, 1));
    LLVMValueRef wrap = LLVMBuildICmp(c->b, LLVMIntEQ, rb, per_batch, "");
    LLVMBuildStore(c->b, LLVMBuildSelect(c->b, wrap, cg_i64(c, 0), rb, ""), rvar);
    LLVMBuildStore(c->b, cg_add(c, bi, LLVMBuildZExt(c->b, wrap, c->t_i64, "")), bvar);
    cg_for_end(c, &i);
    LLVMBuildRetVoid(c->b);
}

/* y, dy -> dx = scale y (dy - sum(dy y)); unit = one row */
void cg_lower_softmax_grad(cg_ctx *c, cg_kernel *k)
{
    const ir_type *ty = &k->n->type;
    cg_units(c, k, cg_dims(ty, 0, ty->rank - 1), 1, NULL);
    LLVMValueRef t = cg_dim(c, ty->dim[ty->rank - 1], k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), y = cg_arg(c, k, 1), dy = cg_arg(c, k, 2);
    cg_loop i;
    cg_for_begin(c, &i, k->u0, k->u1, "row");
    LLVMValueRef off = cg_mul(c, i.iv, t);
    row r = {.p = {cg_gep(c, c->t_f32, y, off), cg_gep(c, c->t_f32, dy, off),
                   cg_gep(c, c->t_f32, out, off)}};
    r.s[0] = cg_f32(c, k->n->a.scale);
    r.s[1] = row_pass(c, t, p_dot, &r, R_SUM);
    row_pass(c, t, p_sm_dx, &r, R_NONE);
    cg_for_end(c, &i);
    LLVMBuildRetVoid(c->b);
}

static LLVMValueRef f64_load(cg_ctx *c, LLVMValueRef var)
{
    return LLVMBuildLoad2(c->b, c->t_f64, var, "");
}

/* f32 x widened to double */
static LLVMValueRef ext(cg_ctx *c, LLVMValueRef x)
{
    return LLVMBuildFPExt(c->b, x, c->t_f64, "");
}

/* The class weights' sum over labelled rows, in double in row order: weights (C),
 * labels (n). */
static LLVMValueRef weight_sum(cg_ctx *c, LLVMValueRef weights, LLVMValueRef labels,
                               LLVMValueRef n)
{
    LLVMValueRef wsum = cg_var(c, c->t_f64, LLVMConstReal(c->t_f64, 0.0), "wsum");
    cg_loop i;
    cg_for_begin(c, &i, cg_i64(c, 0), n, "w");
    LLVMValueRef lab = cg_load(c, c->t_i64, labels, i.iv);
    LLVMBasicBlockRef join =
        if_begin(c, LLVMBuildICmp(c->b, LLVMIntNE, lab, cg_i64(c, -100), ""));
    LLVMValueRef w = ext(c, cg_load(c, c->t_f32, weights, lab));
    LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, f64_load(c, wsum), w, ""), wsum);
    if_end(c, join);
    cg_for_end(c, &i);
    return f64_load(c, wsum);
}

/* logits (n, C), labels (n) [, weights (C)] -> the mean over labelled rows of max +
 * log(sum exp(x - max)) - x[label], or 0 when none is labelled; with weights, the
 * weighted mean sum(w[label] loss) / sum(w[label]), 0 when the weights sum to 0. One
 * unit: the losses (and weights) are added in row order, in double. */
void cg_lower_cross_entropy(cg_ctx *c, cg_kernel *k)
{
    const ir_type *lt = cg_operand_type(c, k, 0), *bt = cg_operand_type(c, k, 1);
    int weighted = k->n->nin > 2;
    cg_units(c, k, ir_dconst(1), 1, NULL);
    LLVMValueRef C = cg_dim(c, lt->dim[lt->rank - 1], k->B, k->S);
    LLVMValueRef n = cg_numel(c, bt, k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), logits = cg_arg(c, k, 1), labels = cg_arg(c, k, 2);
    LLVMValueRef weights = weighted ? cg_arg(c, k, 3) : NULL;
    LLVMValueRef total = cg_var(c, c->t_f64, LLVMConstReal(c->t_f64, 0.0), "total");
    LLVMValueRef count = cg_var(c, c->t_i64, cg_i64(c, 0), "count");
    LLVMValueRef wsum =
        weighted ? cg_var(c, c->t_f64, LLVMConstReal(c->t_f64, 0.0), "wsum") : NULL;
    cg_loop i;
    cg_for_begin(c, &i, cg_i64(c, 0), n, "row");
    LLVMValueRef lab = cg_load(c, c->t_i64, labels, i.iv);
    LLVMBasicBlockRef join =
        if_begin(c, LLVMBuildICmp(c->b, LLVMIntNE, lab, cg_i64(c, -100), ""));
    row r = {.p = {cg_gep(c, c->t_f32, logits, cg_mul(c, i.iv, C))}};
    r.s[0] = row_pass(c, C, p_x, &r, R_MAX);
    LLVMValueRef sum = row_pass(c, C, p_expdev, &r, R_SUM);
    LLVMValueRef loss = LLVMBuildFSub(c->b, r.s[0], cg_load(c, c->t_f32, r.p[0], lab), "");
    loss = LLVMBuildFAdd(c->b, loss, cg_log(c, sum), "loss");
    if (weighted) {
        LLVMValueRef w = ext(c, cg_load(c, c->t_f32, weights, lab));
        LLVMValueRef wl = LLVMBuildFMul(c->b, w, ext(c, loss), "");
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, f64_load(c, total), wl, ""), total);
        LLVMBuildStore(c->b, LLVMBuildFAdd(c->b, f64_load(c, wsum), w, ""), wsum);
    } else {
        LLVMBuildStore(c->b,
                       LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, c->t_f64, total, ""),
                                     LLVMBuildFPExt(c->b, loss, c->t_f64, ""), ""),
                       total);
    }
    LLVMBuildStore(c->b, cg_add(c, LLVMBuildLoad2(c->b, c->t_i64, count, ""), cg_i64(c, 1)),
                   count);
    if_end(c, join);
    cg_for_end(c, &i);
    LLVMValueRef res;
    if (weighted) {
        LLVMValueRef ws = f64_load(c, wsum);
        LLVMValueRef mean = LLVMBuildFDiv(c->b, f64_load(c, total), ws, "");
        res = LLVMBuildSelect(
            c->b, LLVMBuildFCmp(c->b, LLVMRealUNE, ws, LLVMConstReal(c->t_f64, 0.0), ""),
            LLVMBuildFPTrunc(c->b, mean, c->t_f32, ""), cg_f32(c, 0.0), "");
    } else {
        LLVMValueRef cnt = LLVMBuildLoad2(c->b, c->t_i64, count, "");
        LLVMValueRef mean = LLVMBuildFDiv(c->b, LLVMBuildLoad2(c->b, c->t_f64, total, ""),
                                          LLVMBuildSIToFP(c->b, cnt, c->t_f64, ""), "");
        res =
            LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, cnt, cg_i64(c, 0), ""),
                            LLVMBuildFPTrunc(c->b, mean, c->t_f32, ""), cg_f32(c, 0.0), "");
    }
    cg_store(c, res, out, cg_i64(c, 0));
    LLVMBuildRetVoid(c->b);
}

/* logits (n, C), labels (n), dloss [] [, weights (C)] -> dlogits = factor (softmax -
 * onehot) on labelled rows, 0 on the others; factor = dloss / count, or with weights
 * dloss w[label] / sum(w[label]) (0 rows when that sum is 0). Unit = one row; each call
 * first counts the labels (sums the weights, in double in row order). */
void cg_lower_cross_entropy_grad(cg_ctx *c, cg_kernel *k)
{
    const ir_type *lt = cg_operand_type(c, k, 0), *bt = cg_operand_type(c, k, 1);
    int weighted = k->n->nin > 3;
    cg_units(c, k, ir_type_numel(bt), 1, NULL);
    LLVMValueRef C = cg_dim(c, lt->dim[lt->rank - 1], k->B, k->S);
    LLVMValueRef n = cg_numel(c, bt, k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), logits = cg_arg(c, k, 1), labels = cg_arg(c, k, 2);
    LLVMValueRef dloss = cg_load(c, c->t_f32, cg_arg(c, k, 3), cg_i64(c, 0));
    LLVMValueRef weights = weighted ? cg_arg(c, k, 4) : NULL, factor = NULL, wsum = NULL;
    if (weighted) {
        wsum = weight_sum(c, weights, labels, n);
    } else {
        LLVMValueRef count = cg_var(c, c->t_i64, cg_i64(c, 0), "count");
        cg_loop i;
        cg_for_begin(c, &i, cg_i64(c, 0), n, "i");
        LLVMValueRef has = LLVMBuildICmp(
            c->b, LLVMIntNE, cg_load(c, c->t_i64, labels, i.iv), cg_i64(c, -100), "");
        LLVMBuildStore(c->b,
                       cg_add(c, LLVMBuildLoad2(c->b, c->t_i64, count, ""),
                              LLVMBuildZExt(c->b, has, c->t_i64, "")),
                       count);
        cg_for_end(c, &i);
        factor = LLVMBuildFDiv(
            c->b, dloss, to_f32(c, LLVMBuildLoad2(c->b, c->t_i64, count, "")), "factor");
    }
    cg_loop rw;
    cg_for_begin(c, &rw, k->u0, k->u1, "row");
    LLVMValueRef off = cg_mul(c, rw.iv, C);
    row r = {.p = {cg_gep(c, c->t_f32, logits, off), cg_gep(c, c->t_f32, out, off)}};
    LLVMValueRef lab = cg_load(c, c->t_i64, labels, rw.iv);
    LLVMBasicBlockRef yes = cg_block(c, "labelled"), no = cg_block(c, "ignored"),
                      join = cg_block(c, "join");
    LLVMValueRef skip = LLVMBuildICmp(c->b, LLVMIntEQ, lab, cg_i64(c, -100), "");
    if (weighted)
        skip = LLVMBuildOr(
            c->b, skip,
            LLVMBuildFCmp(c->b, LLVMRealOEQ, wsum, LLVMConstReal(c->t_f64, 0.0), ""), "");
    LLVMBuildCondBr(c->b, skip, no, yes);
    LLVMPositionBuilderAtEnd(c->b, no);
    row_pass(c, C, p_zero, &r, R_NONE);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, yes);
    if (weighted) {
        LLVMValueRef w = ext(c, cg_load(c, c->t_f32, weights, lab));
        LLVMValueRef f =
            LLVMBuildFDiv(c->b, LLVMBuildFMul(c->b, ext(c, dloss), w, ""), wsum, "");
        factor = LLVMBuildFPTrunc(c->b, f, c->t_f32, "factor");
    }
    r.s[0] = row_pass(c, C, p_x, &r, R_MAX);
    r.s[1] = row_pass(c, C, p_ce_exp, &r, R_SUM);
    r.s[2] = factor;
    r.s[3] = LLVMBuildFDiv(c->b, factor, r.s[1], "");
    LLVMValueRef el = cg_load(c, c->t_f32, r.p[1], lab);
    row_pass(c, C, p_ce_scale, &r, R_NONE);
    LLVMValueRef pl = LLVMBuildFDiv(c->b, el, r.s[1], "");
    cg_store(c,
             LLVMBuildFMul(c->b, LLVMBuildFSub(c->b, pl, cg_f32(c, 1.0), ""), factor, ""),
             r.p[1], lab);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
    cg_for_end(c, &rw);
    LLVMBuildRetVoid(c->b);
}

/* ---- column-wise lowerings ---- */

static int64_t col_block(cg_ctx *c)
{
    return 4 * (int64_t)c->vec;
}

/* Columns per unit when a row of h splits into `parts` blocks of whole vectors (at
 * least col_block; a row of unknown length in col_block units): for kernels whose every
 * call computes all rows' statistics first, so that fewer, wider units repeat it less. */
static int64_t col_parts(cg_ctx *c, ir_dim hd, int parts)
{
    int64_t cols = col_block(c);
    if (ir_dim_is_const(hd)) {
        int64_t q = (hd.c + parts - 1) / parts, v = c->vec;
        q = (q + v - 1) / v * v;
        cols = q > cols ? q : cols;
    }
    return cols;
}

static void zero_cols(cg_ctx *c, LLVMValueRef out, LLVMValueRef rows, LLVMValueRef m,
                      LLVMValueRef c0, LLVMValueRef c1)
{
    cg_loop r, j;
    cg_for_begin(c, &r, cg_i64(c, 0), rows, "zr");
    LLVMValueRef base = cg_mul(c, r.iv, m);
    cg_for_begin(c, &j, c0, c1, "zj");
    cg_store(c, cg_f32(c, 0.0), out, cg_add(c, base, j.iv));
    cg_for_end(c, &j);
    cg_for_end(c, &r);
}

/* acc[j - c0] = 0 for j in [c0, c1) (f64) */
static void zero_acc(cg_ctx *c, LLVMValueRef acc, LLVMValueRef c0, LLVMValueRef c1)
{
    cg_loop j;
    cg_for_begin(c, &j, cg_i64(c, 0), cg_sub(c, c1, c0), "zj");
    cg_store(c, LLVMConstReal(c->t_f64, 0.0), acc, j.iv);
    cg_for_end(c, &j);
}

/* acc[j - c0] += v(j) */
static void acc_add(cg_ctx *c, LLVMValueRef acc, LLVMValueRef c0, LLVMValueRef j,
                    LLVMValueRef v)
{
    LLVMValueRef i = cg_sub(c, j, c0);
    LLVMValueRef s = LLVMBuildFAdd(c->b, cg_load(c, c->t_f64, acc, i),
                                   LLVMBuildFPExt(c->b, v, c->t_f64, ""), "");
    cg_store(c, s, acc, i);
}

/* out[j] = acc[j - c0] rounded to f32 */
static void acc_store(cg_ctx *c, LLVMValueRef out, LLVMValueRef acc, LLVMValueRef c0,
                      LLVMValueRef c1)
{
    cg_loop j;
    cg_for_begin(c, &j, c0, c1, "oj");
    LLVMValueRef v = cg_load(c, c->t_f64, acc, cg_sub(c, j.iv, c0));
    cg_store(c, LLVMBuildFPTrunc(c->b, v, c->t_f32, ""), out, j.iv);
    cg_for_end(c, &j);
}

/* x (rows, m) -> out (m) summed over rows; unit = a block of columns. The sums run in
 * double (in the scratch: m doubles), in increasing row order. */
void cg_lower_reduce_sum(cg_ctx *c, cg_kernel *k)
{
    const ir_type *t = &k->n->type, *xt = cg_operand_type(c, k, 0);
    int64_t cols = col_block(c);
    ir_dim scratch = ir_dim_mul(ir_type_numel(t), ir_dconst(2));
    cg_units(c, k, ir_type_numel(t), cols, &scratch);
    LLVMValueRef m = cg_numel(c, t, k->B, k->S);
    LLVMValueRef rows = cg_dims_prod(c, xt, 0, xt->rank - t->rank, k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), x = cg_arg(c, k, 1), acc = k->scratch, c0, c1;
    cg_unit_range(c, k, cols, m, &c0, &c1);
    zero_acc(c, acc, c0, c1);
    cg_loop r, j;
    cg_for_begin(c, &r, cg_i64(c, 0), rows, "r");
    LLVMValueRef xr = cg_gep(c, c->t_f32, x, cg_mul(c, r.iv, m));
    cg_for_begin(c, &j, c0, c1, "j");
    acc_add(c, acc, c0, j.iv, cg_load(c, c->t_f32, xr, j.iv));
    cg_for_end(c, &j);
    cg_for_end(c, &r);
    acc_store(c, out, acc, c0, c1);
    LLVMBuildRetVoid(c->b);
}

/* x, dy (rows, h) -> dgamma (h) = sum over rows of dy xhat; unit = a block of columns,
 * a quarter of h.
 * The scratch holds the sums (h doubles), then every row's mean and rstd (rows * 2
 * floats), which each call computes first. */
void cg_lower_layernorm_dgamma(cg_ctx *c, cg_kernel *k)
{
    const ir_type *xt = cg_operand_type(c, k, 0);
    ir_dim hd = xt->dim[xt->rank - 1];
    /* Every unit computes all rows' statistics (two passes over x) before its columns,
     * so units of 64 columns made bert-base's h = 768 read x 24 times over: the columns
     * go in 4 blocks instead (whole vectors, at least col_block). */
    int64_t cols = col_parts(c, hd, 4);
    ir_dim scratch = ir_dim_mul(cg_dims(xt, 0, xt->rank - 1), ir_dconst(2));
    ir_dim sums = ir_dim_mul(hd, ir_dconst(2));
    /* (rows + h) * 2 floats: a sum of monomials, so the units function adds them */
    LLVMBasicBlockRef body = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(k->units));
    LLVMValueRef nu = cg_div(c, cg_add(c, cg_dim(c, hd, k->uB, k->uS), cg_i64(c, cols - 1)),
                             cg_i64(c, cols));
    LLVMValueRef bytes = cg_mul(
        c, cg_add(c, cg_dim(c, scratch, k->uB, k->uS), cg_dim(c, sums, k->uB, k->uS)),
        cg_i64(c, 4));
    cg_units_return(c, k, nu, bytes);
    LLVMPositionBuilderAtEnd(c->b, body);
    LLVMValueRef h = cg_dim(c, hd, k->B, k->S);
    LLVMValueRef rows = cg_dims_prod(c, xt, 0, xt->rank - 1, k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), x = cg_arg(c, k, 1), dy = cg_arg(c, k, 2), c0, c1;
    LLVMValueRef acc = k->scratch;                           /* (h) f64 */
    LLVMValueRef stats = cg_gep(c, c->t_f64, k->scratch, h); /* (rows, 2) f32 */
    cg_loop r, j;
    cg_for_begin(c, &r, cg_i64(c, 0), rows, "s");
    row rr = {.p = {cg_gep(c, c->t_f32, x, cg_mul(c, r.iv, h))}};
    row_stats(c, &rr, h, k->n->a.eps);
    LLVMValueRef si = cg_mul(c, r.iv, cg_i64(c, 2));
    cg_store(c, rr.s[0], stats, si);
    cg_store(c, rr.s[1], stats, cg_add(c, si, cg_i64(c, 1)));
    cg_for_end(c, &r);
    cg_unit_range(c, k, cols, h, &c0, &c1);
    zero_acc(c, acc, c0, c1);
    cg_for_begin(c, &r, cg_i64(c, 0), rows, "r");
    si = cg_mul(c, r.iv, cg_i64(c, 2));
    LLVMValueRef mean = cg_load(c, c->t_f32, stats, si);
    LLVMValueRef rstd = cg_load(c, c->t_f32, stats, cg_add(c, si, cg_i64(c, 1)));
    LLVMValueRef off = cg_mul(c, r.iv, h);
    LLVMValueRef xr = cg_gep(c, c->t_f32, x, off), dyr = cg_gep(c, c->t_f32, dy, off);
    cg_for_begin(c, &j, c0, c1, "j");
    LLVMValueRef d = cg_fmul_plain(c, cg_load(c, c->t_f32, dyr, j.iv),
                                   cg_fsub_plain(c, cg_load(c, c->t_f32, xr, j.iv), mean));
    acc_add(c, acc, c0, j.iv, cg_fmul_plain(c, d, rstd));
    cg_for_end(c, &j);
    cg_for_end(c, &r);
    acc_store(c, out, acc, c0, c1);
    LLVMBuildRetVoid(c->b);
}

/* ids (n), dy (n, h) -> out (v, h): zero, then row ids[i] += dy[i] in increasing i;
 * unit = a block of columns */
void cg_lower_scatter_add(cg_ctx *c, cg_kernel *k)
{
    const ir_type *t = &k->n->type, *it = cg_operand_type(c, k, 0);
    int64_t cols = col_block(c);
    cg_units(c, k, t->dim[1], cols, NULL);
    LLVMValueRef v = cg_dim(c, t->dim[0], k->B, k->S), h = cg_dim(c, t->dim[1], k->B, k->S);
    LLVMValueRef n = cg_numel(c, it, k->B, k->S);
    LLVMValueRef out = cg_arg(c, k, 0), ids = cg_arg(c, k, 1), dy = cg_arg(c, k, 2), c0, c1;
    cg_unit_range(c, k, cols, h, &c0, &c1);
    zero_cols(c, out, v, h, c0, c1);
    cg_loop i, j;
    cg_for_begin(c, &i, cg_i64(c, 0), n, "i");
    LLVMValueRef orow =
        cg_gep(c, c->t_f32, out, cg_mul(c, cg_load(c, c->t_i64, ids, i.iv), h));
    LLVMValueRef drow = cg_gep(c, c->t_f32, dy, cg_mul(c, i.iv, h));
    cg_for_begin(c, &j, c0, c1, "j");
    LLVMValueRef s = cg_fadd_plain(c, cg_load(c, c->t_f32, orow, j.iv),
                                   cg_load(c, c->t_f32, drow, j.iv));
    cg_store(c, s, orow, j.iv);
    cg_for_end(c, &j);
    cg_for_end(c, &i);
    LLVMBuildRetVoid(c->b);
}

/* ---- the backward rule's region: a layernorm's gradients in one kernel ---- */

enum { LB_DX, LB_DGAMMA, LB_DBETA, LB_DBIAS, LB_N };

/* The region's statements by role (-1: absent), its operands x, gamma, dy, and the
 * kernel argument each statement's value goes to (ptrs[0] the last statement's, then
 * the further results after the operands, ir_region_results). */
typedef struct lnb_region {
    int x, gamma, dy;
    int stmt[LB_N], arg[LB_N];
    double eps;
} lnb_region;

static int read_lnb_region(const cg_ctx *c, const ir_node *n, const ir_graph *r,
                           lnb_region *b, bc_err *e)
{
    int nin = n->nin, v = (int)(n - c->g->nodes);
    for (int q = 0; q < LB_N; q++)
        b->stmt[q] = b->arg[q] = -1;
    b->x = b->gamma = b->dy = -1;
    for (int i = nin; i < r->n; i++) {
        const ir_node *u = &r->nodes[i];
        int role = -1;
        if (u->op == IR_OP_LAYERNORM_DX && b->stmt[LB_DX] < 0 && u->in[0] < nin &&
            u->in[1] < nin && u->in[2] < nin) {
            role = LB_DX;
            b->x = u->in[0], b->gamma = u->in[1], b->dy = u->in[2], b->eps = u->a.eps;
        } else if (u->op == IR_OP_LAYERNORM_DGAMMA && b->stmt[LB_DGAMMA] < 0) {
            role = LB_DGAMMA;
        } else if (u->op == IR_OP_REDUCE_SUM && u->type.rank == 1) {
            role = u->in[0] < nin ? LB_DBETA : LB_DBIAS;
            role = b->stmt[role] < 0 ? role : -1;
        }
        if (role < 0)
            return bc_errf(e,
                           "fused: body statement %d (%s) is not one of a layernorm's "
                           "gradients (layernorm_dx, layernorm_dgamma, reduce_sum of dy "
                           "or of dx, each once)",
                           i - nin + 1, ir_ops[u->op].name);
        b->stmt[role] = i;
    }
    const int *s = b->stmt;
    if (s[LB_DX] < 0 || s[LB_DGAMMA] < 0)
        return bc_errf(e, "fused: a layernorm gradient region needs layernorm_dx and "
                          "layernorm_dgamma");
    const ir_node *dg = &r->nodes[s[LB_DGAMMA]];
    const ir_type *xt = &r->nodes[b->x].type;
    if (dg->in[0] != b->x || dg->in[1] != b->dy || dg->a.eps != b->eps ||
        (s[LB_DBETA] >= 0 && r->nodes[s[LB_DBETA]].in[0] != b->dy) ||
        (s[LB_DBIAS] >= 0 && r->nodes[s[LB_DBIAS]].in[0] != s[LB_DX]))
        return bc_errf(e, "fused: layernorm_dgamma and the reduce_sums must read the "
                          "layernorm_dx's x and dy (and eps), or its dx");
    for (int q = LB_DGAMMA; q < LB_N; q++)
        if (s[q] >= 0 && (r->nodes[s[q]].type.rank != 1 ||
                          !ir_dim_eq(r->nodes[s[q]].type.dim[0], xt->dim[xt->rank - 1])))
            return bc_errf(e, "fused: body statement %d must be of the rows' length",
                           s[q] - nin + 1);
    int res[IR_MAX_RESULTS], nres = ir_region_results(c->g, v, res);
    for (int q = 0; q < LB_N; q++) {
        if (s[q] == r->n - 1)
            b->arg[q] = 0;
        for (int j = 0; j < nres; j++)
            if (c->g->nodes[res[j]].a.index == s[q])
                b->arg[q] = 1 + nin + j;
        if (s[q] >= 0 && b->arg[q] < 0)
            return bc_errf(e,
                           "fused: body statement %d (%s) is computed for nothing: "
                           "neither the region's value nor a result",
                           s[q] - nin + 1, ir_ops[r->nodes[s[q]].op].name);
    }
    return 0;
}

int cg_check_lnb_region(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e)
{
    lnb_region b;
    return read_lnb_region(c, n, r, &b, e);
}

/* A layernorm gradient region's kernel: its pointers, the rows' statistics (rows x 4
 * floats: mean, rstd, mean(dy gamma), mean(dy gamma xhat)) and the running sums (one
 * double vector, or scalar, per sum the region has; NULL: absent). */
typedef struct lnb_k {
    LLVMValueRef x, dy, gamma, out[LB_N], stats, h;
} lnb_k;

/* Columns j.. (ty: one element or a vector of them) over every row in order: dx as
 * p_ln_dx computes it, stored, and the terms of layernorm_dgamma and the reduce_sums
 * added in double, in registers; then the sums stored. Elementwise per column, so a
 * vector and a scalar give the same bits. */
#define LNB_AHEAD 8 /* rows */

static void lnb_columns(cg_ctx *c, const lnb_k *w, LLVMValueRef rows, LLVMTypeRef ty,
                        LLVMValueRef j)
{
    unsigned n = cg_lanes(ty);
    LLVMTypeRef dt = n ? LLVMVectorType(c->t_f64, n) : c->t_f64;
    LLVMValueRef sum[LB_N] = {0};
    for (int q = LB_DGAMMA; q < LB_N; q++)
        if (w->out[q])
            sum[q] = cg_var(c, dt, LLVMConstNull(dt), "sum");
    LLVMValueRef g = cg_vld(c, ty, w->gamma, j);
    cg_loop r;
    cg_for_begin(c, &r, cg_i64(c, 0), rows, "r");
    LLVMValueRef at = cg_add(c, cg_mul(c, r.iv, w->h), j), st[4];
    for (int i = 0; i < 4; i++)
        st[i] = cg_splat(c, ty,
                         cg_load(c, c->t_f32, w->stats,
                                 cg_add(c, cg_mul(c, r.iv, cg_i64(c, 4)), cg_i64(c, i))));
    if (n) { /* the walk down a column strides across pages: ask for rows ahead */
        LLVMValueRef ahead = cg_add(c, at, cg_mul(c, w->h, cg_i64(c, LNB_AHEAD)));
        cg_prefetch(c, cg_ptr_raw(c, w->x, ahead));
        cg_prefetch(c, cg_ptr_raw(c, w->dy, ahead));
    }
    LLVMValueRef xv = cg_vld(c, ty, w->x, at), dyv = cg_vld(c, ty, w->dy, at);
    LLVMValueRef dev = cg_fsub_plain(c, xv, st[0]);
    LLVMValueRef t = cg_fsub_plain(c, cg_fmul_plain(c, dyv, g), st[2]);
    t = cg_fsub_plain(c, t, cg_fmul_plain(c, cg_fmul_plain(c, dev, st[1]), st[3]));
    LLVMValueRef dxv = cg_fmul_plain(c, st[1], t);
    cg_vst(c, dxv, w->out[LB_DX], at);
    LLVMValueRef term[LB_N] = {NULL, cg_fmul_plain(c, cg_fmul_plain(c, dyv, dev), st[1]),
                               dyv, dxv};
    for (int q = LB_DGAMMA; q < LB_N; q++)
        if (sum[q])
            LLVMBuildStore(c->b,
                           LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, dt, sum[q], ""),
                                         LLVMBuildFPExt(c->b, term[q], dt, ""), ""),
                           sum[q]);
    cg_for_end(c, &r);
    for (int q = LB_DGAMMA; q < LB_N; q++)
        if (sum[q])
            cg_vst(c,
                   LLVMBuildFPTrunc(c->b, LLVMBuildLoad2(c->b, dt, sum[q], ""),
                                    n ? LLVMVectorType(c->t_f32, n) : c->t_f32, ""),
                   w->out[q], j);
}

/* x, gamma, dy (rows, h) -> dx (rows, h) and the column sums dgamma = sum dy xhat,
 * dbeta = sum dy, dbias = sum dx (h) of those the region has. Each call first computes
 * every row's mean, rstd and dx's two row means (into the scratch, as layernorm_dx does
 * them), then for its units (blocks of columns; two for a BERT row, so that two threads
 * compute the statistics once each) walks each column vector down the rows: x and dy
 * are read once from memory, the sums stay in registers (double, in row order). Each
 * value is computed as layernorm_dx, layernorm_dgamma and reduce_sum compute it alone,
 * so the bits are theirs. */
void cg_lower_lnb_region(cg_ctx *c, cg_kernel *k, const ir_graph *r)
{
    lnb_region b;
    bc_err e;
    if (read_lnb_region(c, k->n, r, &b, &e))
        return; /* cg_check_lnb_region refused it */
    const ir_type *xt = &r->nodes[b.x].type;
    ir_dim hd = xt->dim[xt->rank - 1];
    int64_t cols = col_parts(c, hd, 2);
    ir_dim scratch = ir_dim_mul(cg_dims(xt, 0, xt->rank - 1), ir_dconst(4));
    cg_units(c, k, hd, cols, &scratch);
    LLVMValueRef h = cg_dim(c, hd, k->B, k->S), hf = to_f32(c, h);
    LLVMValueRef rows = cg_dims_prod(c, xt, 0, xt->rank - 1, k->B, k->S);
    lnb_k w = {cg_arg(c, k, 1 + b.x),
               cg_arg(c, k, 1 + b.dy),
               cg_arg(c, k, 1 + b.gamma),
               {0},
               k->scratch,
               h};
    for (int q = 0; q < LB_N; q++)
        if (b.stmt[q] >= 0)
            w.out[q] = cg_arg(c, k, b.arg[q]);
    cg_loop i;
    cg_for_begin(c, &i, cg_i64(c, 0), rows, "row");
    LLVMValueRef off = cg_mul(c, i.iv, h);
    row rr = {
        .p = {cg_gep(c, c->t_f32, w.x, off), w.gamma, cg_gep(c, c->t_f32, w.dy, off)}};
    row_stats(c, &rr, h, b.eps);
    rr.s[2] = LLVMBuildFDiv(c->b, row_pass(c, h, p_g, &rr, R_SUM), hf, "mg");
    rr.s[3] = LLVMBuildFDiv(c->b, row_pass(c, h, p_gx, &rr, R_SUM), hf, "mgx");
    for (int q = 0; q < 4; q++)
        cg_store(c, rr.s[q], w.stats,
                 cg_add(c, cg_mul(c, i.iv, cg_i64(c, 4)), cg_i64(c, q)));
    cg_for_end(c, &i);
    LLVMValueRef c0, c1;
    cg_unit_range(c, k, cols, h, &c0, &c1); /* the call's units: one range of columns */
    LLVMValueRef nv = cg_div(c, cg_sub(c, c1, c0), cg_i64(c, c->vec));
    cg_loop q, j;
    cg_for_begin(c, &q, cg_i64(c, 0), nv, "jv");
    lnb_columns(c, &w, rows, LLVMVectorType(c->t_f32, (unsigned)c->vec),
                cg_add(c, c0, cg_mul(c, q.iv, cg_i64(c, c->vec))));
    cg_for_end(c, &q);
    cg_for_begin(c, &j, cg_add(c, c0, cg_mul(c, nv, cg_i64(c, c->vec))), c1, "j");
    lnb_columns(c, &w, rows, c->t_f32, j.iv);
    cg_for_end(c, &j);
    cg_scalar_tail(c, &j);
    LLVMBuildRetVoid(c->b);
}
