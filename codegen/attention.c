/* attention.c: the kernel of an attention region (passes/fuse.c, rule attention): from
 * q, k, v [B, S, H] and the key mask [B, S] to the context [B, S, H] of nh heads of D
 * each, without writing the head-major copies of q, k, v and of the context, nor the
 * [B, nh, S, S] scores and probabilities.
 *
 * A work unit is one (batch entry, head). It packs the head's K^T as (D, Sp) into
 * per-thread scratch by 8 x 8 register transposes (Sp: S rounded up to whole vectors
 * and to 8, zero past S) and the keys' mask addends as one row, then takes the query
 * rows in blocks of BLOCK (so K^T, then V, stays in L1 across a block), up to 4 rows
 * side by side:
 *   - each row's S logits, each score computed as the matmul QK^T computes it (one
 *     chain acc = fma(q[d], k[d], acc) over d = 0..D-1 from 0; the rows share each K^T
 *     load), then scale acc + addend as attn_softmax makes it, and the row's maximum,
 *     while the scores are still in registers; then attn_softmax's own exp and scaling
 *     passes (cg_softmax_finish);
 *   - the context rows as the matmul PV computes them: one chain over keys j = 0..S-1
 *     from 0 per element, the rows' chains side by side.
 * A row of S scores stays in L1 (S <= max-position), so the softmax needs no online
 * rescaling. The region thus gives the bits of its ops run one by one (with the same
 * matmul and softmax kernels), for any thread count. Measured on bert-mini B=32 (`bertcc
 * bench --profile`, znver5, 2 threads): 145 GFLOP/s with scalar K^T packing, one row at
 * a time and four softmax passes; 230-260 GFLOP/s so. */
#include <math.h>
#include <string.h>

#include "cg.h"

typedef struct attn_ops {
    int q, k, v, mask; /* region inputs (kernel argument = 1 + input) */
    int64_t nh, D;     /* heads and head size */
    double scale;
} attn_ops;

/* Region node v is the head split (ir_head_split) of region input x. */
static int head_input(const ir_graph *r, int nin, int v, int *x, int64_t *nh, int64_t *D)
{
    int rs;
    if (!ir_head_split(r, v, &rs, x) || *x >= nin)
        return -1;
    *nh = r->nodes[rs].type.dim[2].c;
    *D = r->nodes[rs].type.dim[3].c;
    return 0;
}

static int read_attention(const ir_graph *r, int nin, attn_ops *a, bc_err *e)
{
    int p = -1, c = -1;
    for (int i = nin; i < r->n; i++)
        if (r->nodes[i].op == IR_OP_ATTN_SOFTMAX)
            p = i;
    for (int i = p + 1; p >= 0 && i < r->n; i++)
        if (r->nodes[i].op == IR_OP_MATMUL && r->nodes[i].in[0] == p)
            c = i;
    const ir_node *sm = &r->nodes[p], *qk = &r->nodes[sm->in[0]];
    int64_t nh[3] = {0}, D[3] = {0};
    int ok = c >= 0 && qk->op == IR_OP_MATMUL && !qk->a.ta && qk->a.tb &&
             !r->nodes[c].a.ta && !r->nodes[c].a.tb && sm->in[1] < nin &&
             !head_input(r, nin, qk->in[0], &a->q, &nh[0], &D[0]) &&
             !head_input(r, nin, qk->in[1], &a->k, &nh[1], &D[1]) &&
             !head_input(r, nin, r->nodes[c].in[1], &a->v, &nh[2], &D[2]);
    const ir_type *qt = ok ? &r->nodes[a->q].type : NULL;
    ok = ok && nh[0] == nh[1] && nh[0] == nh[2] && D[0] == D[1] && D[0] == D[2] &&
         ir_type_eq(&r->nodes[a->k].type, qt) && ir_type_eq(&r->nodes[a->v].type, qt) &&
         ir_dim_eq(r->nodes[sm->in[1]].type.dim[1], qt->dim[1]);
    /* the last two statements: the context back to [B, S, H] */
    const ir_node *last = &r->nodes[r->n - 1], *t = &r->nodes[last->in[0]];
    ok = ok && last->op == IR_OP_RESHAPE && ir_type_eq(&last->type, qt) &&
         ir_is_head_transpose(t) && t->in[0] == c && r->n == nin + 11;
    if (!ok)
        return bc_errf(e, "fused: the code generator lowers an attention region as the "
                          "attention rule makes it; this body is not one");
    a->mask = sm->in[1];
    a->nh = nh[0];
    a->D = D[0];
    a->scale = sm->a.scale;
    return 0;
}

int cg_check_attention(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e)
{
    (void)c;
    attn_ops a;
    return read_attention(r, n->nin, &a, e);
}

/* Score chains run side by side: GROUP vectors of keys for one query row, or half as
 * many for each of two rows where the target has only 16 vector registers. */
#define GROUP 8

/* The logits of query rows qrow[r] (r < R) against keys g V .. (g + G) V: per key one
 * chain over d (kt: K^T as (D, Sp)), the R rows sharing each K^T load; then scale acc +
 * add[j] (add: the keys' mask addends, -inf past S) into buf[r], their maximum into
 * mx[r] (vectors). */
static void scores(cg_ctx *c, int R, int G, LLVMValueRef *qrow, LLVMValueRef kt,
                   LLVMValueRef Sp, const attn_ops *a, LLVMValueRef add, LLVMValueRef g,
                   LLVMValueRef *buf, LLVMValueRef *mx)
{
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)c->vec);
    unsigned al = 4 * (unsigned)c->vec;
    LLVMValueRef acc[4][GROUP];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < G; t++)
            acc[r][t] = cg_var(c, vt, LLVMConstNull(vt), "acc");
    LLVMValueRef j0 = cg_mul(c, g, cg_i64(c, c->vec));
    cg_loop ld;
    cg_for_begin(c, &ld, cg_i64(c, 0), cg_i64(c, a->D), "d");
    LLVMValueRef qd[4];
    for (int r = 0; r < R; r++)
        qd[r] = cg_splat(c, vt, cg_vld_align(c, c->t_f32, qrow[r], ld.iv, 4));
    LLVMValueRef krow = cg_add(c, cg_mul(c, ld.iv, Sp), j0);
    for (int t = 0; t < G; t++) {
        LLVMValueRef kv = cg_vld_align(c, vt, kt, cg_add(c, krow, cg_i64(c, t * c->vec)), al);
        for (int r = 0; r < R; r++)
            LLVMBuildStore(
                c->b, cg_fma_or_muladd(c, qd[r], kv, LLVMBuildLoad2(c->b, vt, acc[r][t], "")),
                acc[r][t]);
    }
    cg_for_end(c, &ld);
    LLVMValueRef scale = cg_splat(c, vt, cg_f32(c, a->scale));
    for (int t = 0; t < G; t++) {
        LLVMValueRef j = cg_add(c, j0, cg_i64(c, t * c->vec));
        LLVMValueRef addv = cg_vld_align(c, vt, add, j, al);
        for (int r = 0; r < R; r++) {
            /* attn_softmax's logit: scale x + addend, a rounded product and sum */
            LLVMValueRef v = cg_fadd_plain(
                c, cg_fmul_plain(c, scale, LLVMBuildLoad2(c->b, vt, acc[r][t], "")), addv);
            cg_vst_align(c, v, buf[r], j, al);
            LLVMBuildStore(c->b, cg_fmax(c, LLVMBuildLoad2(c->b, vt, mx[r], ""), v), mx[r]);
        }
    }
}

/* The softmax rows of query rows qrow[r] (r < R) into buf[r]: the logits and their
 * maximum as attn_softmax makes them (the padding keys past S add -inf, so they do not
 * count), then its exp and scaling passes. */
static void score_rows(cg_ctx *c, int R, const attn_ops *a, LLVMValueRef *qrow,
                       LLVMValueRef kt, LLVMValueRef S, LLVMValueRef Sp, LLVMValueRef add,
                       LLVMValueRef *buf)
{
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)c->vec);
    int G = R * GROUP > (c->vec >= 16 ? 16 : 8) ? GROUP / 2 : GROUP;
    LLVMValueRef mx[4];
    for (int r = 0; r < R; r++)
        mx[r] = cg_var(c, vt, cg_splat(c, vt, cg_f32(c, -INFINITY)), "max");
    LLVMValueRef nch = cg_div(c, Sp, cg_i64(c, c->vec));
    LLVMValueRef ng = cg_div(c, nch, cg_i64(c, G));
    cg_loop lg, l1;
    cg_for_begin(c, &lg, cg_i64(c, 0), ng, "kg");
    scores(c, R, G, qrow, kt, Sp, a, add, cg_mul(c, lg.iv, cg_i64(c, G)), buf, mx);
    cg_for_end(c, &lg);
    cg_for_begin(c, &l1, cg_mul(c, ng, cg_i64(c, G)), nch, "k1");
    scores(c, R, 1, qrow, kt, Sp, a, add, l1.iv, buf, mx);
    cg_for_end(c, &l1);
    for (int r = 0; r < R; r++)
        cg_softmax_finish(c, buf[r], S, cg_hmax(c, LLVMBuildLoad2(c->b, vt, mx[r], "")));
}

/* add[j] = the addend of key j's logit as attn_softmax gives it (0 kept, CG_MASK_NEG
 * masked, 0 for all when every key is masked), -inf for the padding j in [S, Sp). */
static void mask_addends(cg_ctx *c, LLVMValueRef mrow, LLVMValueRef S, LLVMValueRef Sp,
                         LLVMValueRef add)
{
    LLVMValueRef any = cg_var(c, c->t_i64, cg_i64(c, 0), "any");
    cg_loop lj, lk;
    cg_for_begin(c, &lj, cg_i64(c, 0), S, "any.j");
    LLVMValueRef nz = LLVMBuildICmp(c->b, LLVMIntNE, cg_load(c, c->t_i64, mrow, lj.iv),
                                    cg_i64(c, 0), "");
    LLVMBuildStore(c->b,
                   LLVMBuildOr(c->b, LLVMBuildLoad2(c->b, c->t_i64, any, ""),
                               LLVMBuildZExt(c->b, nz, c->t_i64, ""), ""),
                   any);
    cg_for_end(c, &lj);
    LLVMValueRef neg = LLVMBuildSelect(
        c->b, LLVMBuildICmp(c->b, LLVMIntNE, LLVMBuildLoad2(c->b, c->t_i64, any, ""),
                            cg_i64(c, 0), ""),
        cg_f32(c, CG_MASK_NEG), cg_f32(c, 0.0), "neg");
    cg_for_begin(c, &lk, cg_i64(c, 0), Sp, "add.j");
    LLVMValueRef in = LLVMBuildICmp(c->b, LLVMIntSLT, lk.iv, S, "");
    LLVMValueRef jc = cg_min(c, lk.iv, cg_sub(c, S, cg_i64(c, 1)));
    LLVMValueRef kept = LLVMBuildICmp(c->b, LLVMIntNE, cg_load(c, c->t_i64, mrow, jc),
                                      cg_i64(c, 0), "");
    LLVMValueRef v = LLVMBuildSelect(c->b, kept, cg_f32(c, 0.0), neg, "");
    cg_store(c, LLVMBuildSelect(c->b, in, v, cg_f32(c, -INFINITY), ""), add, lk.iv);
    cg_for_end(c, &lk);
}

/* Context rows orow[r] (r < R) = sum over keys j of p[r][j] v[j]: per element one chain
 * over j; D in slices of up to 4 vectors, the last one masked past D. */
static void context_rows(cg_ctx *c, int R, const attn_ops *a, LLVMValueRef *p,
                         LLVMValueRef vbase, LLVMValueRef H, LLVMValueRef S,
                         LLVMValueRef *orow)
{
    const int V = c->vec;
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)V);
    for (int64_t d0 = 0; d0 < a->D; d0 += 4 * V) {
        int nv = (int)((a->D - d0 + V - 1) / V);
        nv = nv > 4 ? 4 : nv;
        int tail = (int)((a->D - d0) - (int64_t)(nv - 1) * V); /* lanes of the last */
        tail = tail > V ? V : tail;
        LLVMValueRef acc[4][4], m = cg_lane_mask(c, cg_i64(c, tail), V);
        for (int r = 0; r < R; r++)
            for (int t = 0; t < nv; t++)
                acc[r][t] = cg_var(c, vt, LLVMConstNull(vt), "ctx");
        cg_loop lj;
        cg_for_begin(c, &lj, cg_i64(c, 0), S, "j");
        LLVMValueRef vrow = cg_add(c, cg_mul(c, lj.iv, H), cg_i64(c, d0));
        LLVMValueRef vv[4];
        for (int t = 0; t < nv; t++) {
            LLVMValueRef at = cg_add(c, vrow, cg_i64(c, t * V));
            vv[t] = t == nv - 1 && tail < V
                        ? cg_masked_load(c, V, cg_ptr_raw(c, vbase, at), m)
                        : cg_vld_align(c, vt, vbase, at, 4);
        }
        for (int r = 0; r < R; r++) {
            LLVMValueRef pj = cg_splat(c, vt, cg_vld_align(c, c->t_f32, p[r], lj.iv, 4));
            for (int t = 0; t < nv; t++)
                LLVMBuildStore(
                    c->b,
                    cg_fma_or_muladd(c, pj, vv[t], LLVMBuildLoad2(c->b, vt, acc[r][t], "")),
                    acc[r][t]);
        }
        cg_for_end(c, &lj);
        for (int r = 0; r < R; r++)
            for (int t = 0; t < nv; t++) {
                LLVMValueRef v = LLVMBuildLoad2(c->b, vt, acc[r][t], "");
                LLVMValueRef at = cg_i64(c, d0 + t * V);
                if (t == nv - 1 && tail < V)
                    cg_masked_store(c, V, v, cg_ptr_raw(c, orow[r], at), m);
                else
                    cg_vst_align(c, v, orow[r], at, 4);
            }
    }
}

/* Where one unit's rows are: the head's q, context, v (row stride H) and packed K^T,
 * the block's score rows (stride Sp), the batch entry's mask row. */
typedef struct attn_head {
    LLVMValueRef q, o, v, kt, buf, S, Sp, H, add;
} attn_head;

#define BLOCK 8 /* query rows whose scores are made before their contexts */

/* Rows i .. i + R - 1 (R = 1, 2) of the head, whose scores are rows slot .. of the
 * block's buffer: their scores and softmax (ctx = 0), or their context (ctx = 1). */
static void row_step(cg_ctx *c, int R, int ctx, const attn_ops *a, const attn_head *h,
                     LLVMValueRef i, LLVMValueRef slot)
{
    LLVMValueRef q[4], o[4], p[4];
    for (int t = 0; t < R; t++) {
        LLVMValueRef row = cg_add(c, i, cg_i64(c, t)), off = cg_mul(c, row, h->H);
        q[t] = cg_gep(c, c->t_f32, h->q, off);
        o[t] = cg_gep(c, c->t_f32, h->o, off);
        p[t] = cg_gep(c, c->t_f32, h->buf, cg_mul(c, cg_add(c, slot, cg_i64(c, t)), h->Sp));
    }
    if (ctx)
        context_rows(c, R, a, p, h->v, h->H, h->S, o);
    else
        score_rows(c, R, a, q, h->kt, h->S, h->Sp, h->add, p);
}

void cg_lower_attention(cg_ctx *c, cg_kernel *k, const ir_graph *r)
{
    attn_ops a;
    bc_err e;
    if (read_attention(r, k->n->nin, &a, &e)) /* cg_check_attention accepted it */
        return;
    const ir_type *qt = &r->nodes[a.q].type;
    const int64_t V = c->vec, D = a.D, H = a.nh * a.D;

    /* units: batch entries x heads; scratch: K^T (D, Sp) and BLOCK score rows, Sp being S
     * rounded up to whole vectors and to 8 (the transposes' block) */
    const int64_t W = V > 8 ? V : 8;
    LLVMBasicBlockRef body_bb = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(k->units));
    LLVMValueRef uS = cg_dim(c, qt->dim[1], k->uB, k->uS);
    LLVMValueRef uSp = cg_mul(c, cg_div(c, cg_add(c, uS, cg_i64(c, W - 1)), cg_i64(c, W)),
                              cg_i64(c, W));
    cg_units_return(c, k, cg_mul(c, cg_dim(c, qt->dim[0], k->uB, k->uS), cg_i64(c, a.nh)),
                    cg_mul(c, cg_i64(c, 4 * (D + BLOCK + 1)), uSp));
    LLVMPositionBuilderAtEnd(c->b, body_bb);

    LLVMValueRef S = cg_dim(c, qt->dim[1], k->B, k->S);
    LLVMValueRef Sp =
        cg_mul(c, cg_div(c, cg_add(c, S, cg_i64(c, W - 1)), cg_i64(c, W)), cg_i64(c, W));
    LLVMValueRef Hv = cg_i64(c, H);
    LLVMValueRef O = cg_arg(c, k, 0), Q = cg_arg(c, k, 1 + a.q), K = cg_arg(c, k, 1 + a.k),
                 Vm = cg_arg(c, k, 1 + a.v), M = cg_arg(c, k, 1 + a.mask);
    LLVMValueRef kt = k->scratch;
    LLVMValueRef buf0 = cg_gep(c, c->t_f32, kt, cg_mul(c, cg_i64(c, D), Sp));
    LLVMValueRef add = cg_gep(c, c->t_f32, buf0, cg_mul(c, cg_i64(c, BLOCK), Sp));

    cg_loop lu;
    cg_for_begin(c, &lu, k->u0, k->u1, "unit");
    LLVMValueRef b = cg_div(c, lu.iv, cg_i64(c, a.nh)), h = cg_rem(c, lu.iv, cg_i64(c, a.nh));
    LLVMValueRef head = cg_add(c, cg_mul(c, cg_mul(c, b, S), Hv), cg_mul(c, h, cg_i64(c, D)));
    LLVMValueRef qb = cg_gep(c, c->t_f32, Q, head), kb = cg_gep(c, c->t_f32, K, head),
                 vb = cg_gep(c, c->t_f32, Vm, head), ob = cg_gep(c, c->t_f32, O, head);
    LLVMValueRef mrow = cg_gep(c, c->t_i64, M, cg_mul(c, b, S));

    /* K^T of the head, zero past S */
    cg_pack_transposed(c, kt, Sp, kb, Hv, cg_i64(c, 0), S, cg_i64(c, 0), cg_i64(c, D));

    /* query rows in blocks of BLOCK: first every row's scores and softmax (K^T stays in
     * L1 across the block), then every row's context (V does) */
    mask_addends(c, mrow, S, Sp, add);
    attn_head hd = {qb, ob, vb, kt, buf0, S, Sp, Hv, add};
    cg_loop lb;
    LLVMValueRef nblk = cg_div(c, cg_add(c, S, cg_i64(c, BLOCK - 1)), cg_i64(c, BLOCK));
    cg_for_begin(c, &lb, cg_i64(c, 0), nblk, "block");
    LLVMValueRef i0 = cg_mul(c, lb.iv, cg_i64(c, BLOCK));
    LLVMValueRef nr = cg_min(c, cg_i64(c, BLOCK), cg_sub(c, S, i0));
    const int RM = c->vec >= 16 ? 4 : 2; /* rows side by side (registers allowing) */
    for (int ctx = 0; ctx < 2; ctx++) {
        cg_loop lp, l1;
        LLVMValueRef nm = cg_div(c, nr, cg_i64(c, RM));
        cg_for_begin(c, &lp, cg_i64(c, 0), nm, "rows");
        LLVMValueRef slot = cg_mul(c, lp.iv, cg_i64(c, RM));
        row_step(c, RM, ctx, &a, &hd, cg_add(c, i0, slot), slot);
        cg_for_end(c, &lp);
        cg_for_begin(c, &l1, cg_mul(c, nm, cg_i64(c, RM)), nr, "row1");
        row_step(c, 1, ctx, &a, &hd, cg_add(c, i0, l1.iv), l1.iv);
        cg_for_end(c, &l1);
    }
    cg_for_end(c, &lb);
    cg_for_end(c, &lu);
    LLVMBuildRetVoid(c->b);
}
