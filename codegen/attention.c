/* attention.c: the kernel of an attention region (passes/fuse.c, rule attention): from
 * q, k, v [B, S, H] and the key mask [B, S] to the context [B, S, H] of nh heads of D
 * each, without writing the head-major copies of q, k, v and of the context, nor the
 * [B, nh, S, S] scores and probabilities.
 *
 * A work unit is one (batch entry, head). It packs the head's K^T as (D, Sp) into
 * per-thread scratch (Sp: S rounded up to the vector width, zero past S), then, two
 * query rows at a time:
 *   - the row's S scores into scratch, each computed as the matmul QK^T computes it: one
 *     chain acc = fma(q[d], k[d], acc) over d = 0..D-1 from 0, 8 vectors of keys side by
 *     side (8 independent chains);
 *   - its softmax by attn_softmax's own row code (cg_attn_softmax_row), in place;
 *   - the context rows as the matmul PV computes them: one chain over keys j = 0..S-1
 *     from 0 per element, the two rows' chains side by side.
 * A row of S scores stays in L1 (S <= max-position), so the softmax needs no online
 * rescaling. The region thus gives the bits of its ops run one by one (with the same
 * matmul and softmax kernels), for any thread count. */
#include <string.h>

#include "cg.h"

typedef struct attn_ops {
    int q, k, v, mask; /* region inputs (kernel argument = 1 + input) */
    int64_t nh, D;     /* heads and head size */
    double scale;
} attn_ops;

/* Region node v is transpose(reshape(input x)) splitting [B, S, H] into [B, nh, S, D]. */
static int head_input(const ir_graph *r, int nin, int v, int *x, int64_t *nh, int64_t *D)
{
    static const int perm[4] = {0, 2, 1, 3};
    const ir_node *t = &r->nodes[v];
    if (t->op != IR_OP_TRANSPOSE || t->type.rank != 4 || memcmp(t->a.perm, perm, sizeof perm))
        return -1;
    const ir_node *rs = &r->nodes[t->in[0]];
    if (rs->op != IR_OP_RESHAPE || rs->in[0] >= nin)
        return -1;
    const ir_type *xt = &r->nodes[rs->in[0]].type;
    if (xt->rank != 3 || !ir_dim_is_const(rs->type.dim[2]) || !ir_dim_is_const(rs->type.dim[3]) ||
        !ir_dim_eq(xt->dim[0], rs->type.dim[0]) || !ir_dim_eq(xt->dim[1], rs->type.dim[1]))
        return -1;
    *x = rs->in[0];
    *nh = rs->type.dim[2].c;
    *D = rs->type.dim[3].c;
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
    static const int perm[4] = {0, 2, 1, 3};
    ok = ok && last->op == IR_OP_RESHAPE && ir_type_eq(&last->type, qt) &&
         t->op == IR_OP_TRANSPOSE && !memcmp(t->a.perm, perm, sizeof perm) &&
         t->in[0] == c && r->n == nin + 11;
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

#define GROUP 8 /* vectors of keys whose score chains run side by side */

/* buf[g V .. (g + G) V) = scores of query row q against keys g V ..: per key one chain
 * over d (kt: K^T as (D, Sp)). */
static void scores(cg_ctx *c, int G, LLVMValueRef qrow, LLVMValueRef kt, LLVMValueRef Sp,
                   int64_t D, LLVMValueRef g, LLVMValueRef buf)
{
    LLVMTypeRef vt = LLVMVectorType(c->t_f32, (unsigned)c->vec);
    unsigned al = 4 * (unsigned)c->vec;
    LLVMValueRef acc[GROUP];
    for (int t = 0; t < G; t++)
        acc[t] = cg_var(c, vt, LLVMConstNull(vt), "acc");
    LLVMValueRef j0 = cg_mul(c, g, cg_i64(c, c->vec));
    cg_loop ld;
    cg_for_begin(c, &ld, cg_i64(c, 0), cg_i64(c, D), "d");
    LLVMValueRef qd = cg_splat(c, vt, cg_vld_align(c, c->t_f32, qrow, ld.iv, 4));
    LLVMValueRef krow = cg_add(c, cg_mul(c, ld.iv, Sp), j0);
    for (int t = 0; t < G; t++) {
        LLVMValueRef kv = cg_vld_align(c, vt, kt, cg_add(c, krow, cg_i64(c, t * c->vec)), al);
        LLVMBuildStore(c->b,
                       cg_fma_or_muladd(c, qd, kv, LLVMBuildLoad2(c->b, vt, acc[t], "")),
                       acc[t]);
    }
    cg_for_end(c, &ld);
    for (int t = 0; t < G; t++)
        cg_vst_align(c, LLVMBuildLoad2(c->b, vt, acc[t], ""), buf,
                     cg_add(c, j0, cg_i64(c, t * c->vec)), al);
}

/* The S scores of query row qrow into buf, then their softmax in place. */
static void score_row(cg_ctx *c, const attn_ops *a, LLVMValueRef qrow, LLVMValueRef kt,
                      LLVMValueRef S, LLVMValueRef Sp, LLVMValueRef mrow, LLVMValueRef buf)
{
    LLVMValueRef nch = cg_div(c, Sp, cg_i64(c, c->vec));
    LLVMValueRef ng = cg_div(c, nch, cg_i64(c, GROUP));
    cg_loop lg, l1;
    cg_for_begin(c, &lg, cg_i64(c, 0), ng, "kg");
    scores(c, GROUP, qrow, kt, Sp, a->D, cg_mul(c, lg.iv, cg_i64(c, GROUP)), buf);
    cg_for_end(c, &lg);
    cg_for_begin(c, &l1, cg_mul(c, ng, cg_i64(c, GROUP)), nch, "k1");
    scores(c, 1, qrow, kt, Sp, a->D, l1.iv, buf);
    cg_for_end(c, &l1);
    cg_attn_softmax_row(c, buf, buf, mrow, S, a->scale);
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
        LLVMValueRef acc[2][4], m = cg_lane_mask(c, cg_i64(c, tail), V);
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

void cg_lower_attention(cg_ctx *c, cg_kernel *k, const ir_graph *r)
{
    attn_ops a;
    bc_err e;
    if (read_attention(r, k->n->nin, &a, &e)) /* cg_check_attention accepted it */
        return;
    const ir_type *qt = &r->nodes[a.q].type;
    const int64_t V = c->vec, D = a.D, H = a.nh * a.D;

    /* units: batch entries x heads; scratch: K^T (D, Sp) and two score rows */
    LLVMBasicBlockRef body_bb = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(k->units));
    LLVMValueRef uS = cg_dim(c, qt->dim[1], k->uB, k->uS);
    LLVMValueRef uSp = cg_mul(c, cg_div(c, cg_add(c, uS, cg_i64(c, V - 1)), cg_i64(c, V)),
                              cg_i64(c, V));
    cg_units_return(c, k, cg_mul(c, cg_dim(c, qt->dim[0], k->uB, k->uS), cg_i64(c, a.nh)),
                    cg_mul(c, cg_i64(c, 4 * (D + 2)), uSp));
    LLVMPositionBuilderAtEnd(c->b, body_bb);

    LLVMValueRef S = cg_dim(c, qt->dim[1], k->B, k->S);
    LLVMValueRef Sp =
        cg_mul(c, cg_div(c, cg_add(c, S, cg_i64(c, V - 1)), cg_i64(c, V)), cg_i64(c, V));
    LLVMValueRef Hv = cg_i64(c, H), one = cg_i64(c, 1);
    LLVMValueRef O = cg_arg(c, k, 0), Q = cg_arg(c, k, 1 + a.q), K = cg_arg(c, k, 1 + a.k),
                 Vm = cg_arg(c, k, 1 + a.v), M = cg_arg(c, k, 1 + a.mask);
    LLVMValueRef kt = k->scratch;
    LLVMValueRef buf[2] = {cg_gep(c, c->t_f32, kt, cg_mul(c, cg_i64(c, D), Sp)), NULL};
    buf[1] = cg_gep(c, c->t_f32, buf[0], Sp);

    cg_loop lu;
    cg_for_begin(c, &lu, k->u0, k->u1, "unit");
    LLVMValueRef b = cg_div(c, lu.iv, cg_i64(c, a.nh)), h = cg_rem(c, lu.iv, cg_i64(c, a.nh));
    LLVMValueRef head = cg_add(c, cg_mul(c, cg_mul(c, b, S), Hv), cg_mul(c, h, cg_i64(c, D)));
    LLVMValueRef qb = cg_gep(c, c->t_f32, Q, head), kb = cg_gep(c, c->t_f32, K, head),
                 vb = cg_gep(c, c->t_f32, Vm, head), ob = cg_gep(c, c->t_f32, O, head);
    LLVMValueRef mrow = cg_gep(c, c->t_i64, M, cg_mul(c, b, S));

    /* K^T of the head, zero past S */
    cg_loop lj, ld;
    cg_for_begin(c, &lj, cg_i64(c, 0), Sp, "pack.j");
    LLVMValueRef in = LLVMBuildICmp(c->b, LLVMIntSLT, lj.iv, S, "");
    LLVMValueRef jc = cg_min(c, lj.iv, cg_sub(c, S, one)); /* in bounds; zeroed past S */
    cg_for_begin(c, &ld, cg_i64(c, 0), cg_i64(c, D), "pack.d");
    LLVMValueRef x = cg_vld_align(c, c->t_f32, kb, cg_add(c, cg_mul(c, jc, Hv), ld.iv), 4);
    cg_vst_align(c, LLVMBuildSelect(c->b, in, x, cg_f32(c, 0.0), ""), kt,
                 cg_add(c, cg_mul(c, ld.iv, Sp), lj.iv), 4);
    cg_for_end(c, &ld);
    cg_for_end(c, &lj);

    /* query rows in pairs, then the odd one */
    cg_loop li;
    cg_for_begin(c, &li, cg_i64(c, 0), cg_div(c, S, cg_i64(c, 2)), "pair");
    LLVMValueRef i0 = cg_mul(c, li.iv, cg_i64(c, 2)), orow[2];
    for (int t = 0; t < 2; t++) {
        LLVMValueRef off = cg_mul(c, cg_add(c, i0, cg_i64(c, t)), Hv);
        score_row(c, &a, cg_gep(c, c->t_f32, qb, off), kt, S, Sp, mrow, buf[t]);
        orow[t] = cg_gep(c, c->t_f32, ob, off);
    }
    context_rows(c, 2, &a, buf, vb, Hv, S, orow);
    cg_for_end(c, &li);
    LLVMBasicBlockRef odd = cg_block(c, "odd"), done = cg_block(c, "odd.done");
    LLVMBuildCondBr(c->b,
                    LLVMBuildICmp(c->b, LLVMIntEQ, cg_rem(c, S, cg_i64(c, 2)), one, ""), odd,
                    done);
    LLVMPositionBuilderAtEnd(c->b, odd);
    LLVMValueRef off = cg_mul(c, cg_sub(c, S, one), Hv);
    score_row(c, &a, cg_gep(c, c->t_f32, qb, off), kt, S, Sp, mrow, buf[0]);
    orow[0] = cg_gep(c, c->t_f32, ob, off);
    context_rows(c, 1, &a, buf, vb, Hv, S, orow);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
    cg_for_end(c, &lu);
    LLVMBuildRetVoid(c->b);
}
