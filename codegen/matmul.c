/* matmul.c: the matmul lowering, a GotoBLAS/BLIS-style GEMM written as LLVM vector IR.
 *
 * Per batch entry z: C (M, N) = op(A) (M, K) x op(B) (K, N), all row-major; op transposes
 * when ta / tb is set. When b is a shared 2-D matrix (and a is [..., M, K]) the batch
 * folds into M. A work unit is one MC x NC tile of C of one batch entry; it walks K in
 * blocks of KC and for each block
 *   - packs op(B)'s KC x NC panel into per-thread scratch as NR-wide micro-panels
 *     (KC, NR), zero-padded past N: NR/V aligned vectors per k (copied rows when tb = 0,
 *     8 x 8 register transposes when tb = 1);
 *   - packs op(A)'s MC x KC block as MR-row micro-panels (KC, MR), zero-padded past M,
 *     except when A is not transposed: its rows are then contiguous along K and the
 *     micro-kernel broadcasts from them in place;
 *   - runs the MR x NR micro-kernel over every (micro-panel of A, micro-panel of B) pair:
 *     MR x NR/V vector accumulators live in registers across the k loop; each k step
 *     loads NR/V vectors of B, broadcasts MR scalars of A and does MR * NR/V FMAs.
 * In a weight gradient (A packed too) the units are grouped: the M blocks of one N block
 * are consecutive, and a thread walks K blocks outside its units of a group, so it packs
 * each K block's B panel once for all of them (GotoBLAS's loop order) instead of once
 * per unit; each unit's C still carries its sums between K blocks.
 * Edge tiles (M, N not multiples of MR, NR) pass through a stack tile copied to and from
 * C with masked row vectors; packing masks or zero-fills the panel edges, so K, M and N
 * need no padding.
 *
 * Blocking (AVX-512): 8 x 48 register tile (24 zmm accumulators), KC = 256, units of
 * 256 x 384: B's packed panel (384 KB) stays in L2, A's micro-panel (8 KB) in L1, and
 * BERT's shapes give an even number of units (2 threads balance). A constant N that 64
 * divides and 48 does not (head size 64, S = 128) takes a 6 x 64 tile (MC 240) instead,
 * except in a weight gradient; a weight gradient (ta = 1, 2-D: A is packed too) takes
 * units of 192 (or 128) x 768. A shape with an odd number of units below 8 has its MC
 * halved (up to twice), so that bert-mini's [256, 256] weight gradients are not one
 * unit; then the M and N blocks are made of equal size (whole register tiles), so that
 * no unit is a sliver. Measured against 12 x
 * 32, 14 x 32, 6 x 64, KC 128 / 384 and larger units in bench/README.md's setting; all
 * within noise of this one or below it.
 *
 * A weight gradient's region (the fusion pass's backward rule) also sums A's columns: dW
 * = dy^T x packs dy as A, and the unit of each M block whose N block is the first adds
 * every value it packs into one double per column (scratch), in row order over its K
 * blocks, then stores the sums as f32: the bias gradient reduce_sum(dy), with the bits of
 * the reduce_sum kernel, without reading dy a second time (pack_a_summed).
 *
 * Determinism: every element of C is one chain c = fma(a[k], b[k], c) over k = 0..K-1
 * in order, started at 0 and carried through C between K blocks (an f32 store and
 * reload is exact). The result therefore depends neither on the tile sizes nor on how
 * units are split over threads. Without FMA the chain is c = c + a[k] * b[k], rounded
 * twice, equally fixed. */
#include <stdint.h>
#include <string.h>

#include "cg.h"

/* Blocking of one target. MR x NR is the register tile (NR = NRV vectors of V lanes),
 * KC the K block, MC x NC the unit tile (multiples of MR and NR); U the k unroll. */
typedef struct mm_cfg {
    int V, MR, NRV, NR, KC, MC, NC, U;
    int a_direct; /* A's rows are read in place (ta = 0), not packed */
    int b_packed; /* B comes packed (pack_b's panels): no B panel in scratch */
} mm_cfg;

/* Sizes of one matmul (i64 values): batch entries with their own A, B and C, and M,
 * N, K after folding a shared b's batch into M. */
typedef struct mm_dims {
    LLVMValueRef batch, M, N, K, mc, nc, mb, nb, units;
} mm_dims;

/* x rounded up to a multiple of m (i64 values) */
static LLVMValueRef round_up(cg_ctx *c, LLVMValueRef x, int64_t m)
{
    return cg_mul(c, cg_div(c, cg_add(c, x, cg_i64(c, m - 1)), cg_i64(c, m)), cg_i64(c, m));
}

/* o: the result type; a constant N that 64 divides but 48 does not (attention's head
 * size 64 and S = 128 in training) gets the 6 x 64 tile, which wastes no lanes there
 * (8 x 48 computes 96 columns for 64). */
#define WG_NC 768
/* A weight gradient's MC: 192, or 128 where that divides M and 192 does not (M = 1024:
 * 0.98x sgemm with 8 units of 128, 0.71-0.80x with 6 of 176). */
static int wg_mc(const ir_type *o)
{
    ir_dim m = o->dim[0];
    return ir_dim_is_const(m) && m.c % 192 && m.c % 128 == 0 ? 128 : 192;
}

static mm_cfg choose_cfg(const cg_ctx *c, int ta, int b_packed, const ir_type *o)
{
    mm_cfg f;
    f.V = c->vec;
    ir_dim n = o->dim[o->rank - 1];
    int weight_grad = ta && o->rank == 2;
    if (c->vec >= 16 && ir_dim_is_const(n) && n.c % 64 == 0 && n.c % 48 && !weight_grad) {
        f.MR = 6;
        f.NRV = 4;
        f.KC = 256;
        f.MC = 240;
        f.NC = 384;
    } else if (c->vec >= 16) {
        /* 32 zmm registers: 24 accumulators, 3 B vectors, 1 broadcast. The unit tile
         * keeps B's packed panel (KC x NC, 384 KB) in L2 and an A micro-panel (8 KB)
         * in L1. A weight gradient (A packed too) takes tiles twice as wide: measured
         * 0.82x sgemm at 256 x 384, 0.97-1.08x at 192 x 768 (bench/run_matmul.sh, 2
         * threads, [768, 768] and [768, 3072] over K = 1024; wg_mc), and K blocks of
         * 192 (B's panel 576 KB) rather than 256 lift one thread from 0.86-0.92x to
         * 0.89-1.00x (alternated twice on bert-base's and bert-mini's shapes). */
        f.MR = 8;
        f.NRV = 3;
        f.KC = weight_grad ? 192 : 256;
        f.MC = weight_grad ? wg_mc(o) : 256;
        f.NC = weight_grad ? WG_NC : 384;
    } else {
        /* 16 registers (AVX2, SSE): the 6 x 2-vector tile, 12 accumulators. */
        f.MR = 6;
        f.NRV = 2;
        f.KC = 256;
        f.MC = 120;
        f.NC = 32 * c->vec;
    }
    f.U = 4;
    f.a_direct = !ta;
    f.b_packed = b_packed;
    f.NR = f.NRV * f.V;
    return f;
}

/* Scratch per thread: the packed B panel, then the packed A block; both 64-byte
 * aligned (the executor aligns the scratch base). */
static int64_t scratch_floats_b(const mm_cfg *f)
{
    return f->b_packed ? 0 : (int64_t)f->KC * f->NC;
}

static int64_t scratch_bytes(const mm_cfg *f)
{
    return 4 * (scratch_floats_b(f) + (f->a_direct ? 0 : (int64_t)f->KC * f->MC));
}

/* Whether b has its own batch dims (else a shared [K, N] / [N, K] matrix). */
static int b_batched(const ir_type *a, const ir_type *b)
{
    return b->rank == a->rank && a->rank > 2;
}

/* The matmul a kernel computes: its node (for ta, tb), its operand and result types, and
 * which kernel arguments hold A and B (ptrs[a_arg], ptrs[b_arg]; C is ptrs[0]). */
typedef struct mm_node {
    const ir_node *n;
    const ir_type *a, *b, *o;
    int a_arg, b_arg;
    int p_arg; /* the kernel argument holding pack_b(b) (ptrs[p_arg]), or 0: none */
    /* the layout rule: an operand read through a head view, or the result written
     * through a head merge, is stored as [B, S, nh D] while the matmul sees [B, nh, S,
     * D] (its type here): a_view, b_view, c_view say so */
    int a_view, b_view, c_view;
    /* where C goes (ptrs[c_arg]: 0, or a further result when the region's last statement
     * is the bias gradient); s_arg: the kernel argument that receives the column sums of
     * A (a weight gradient's bias gradient, reduce_sum of dy = A), or -1 */
    int c_arg, s_arg;
} mm_node;

/* Where batch entry z = (b, h) of a [B, nh, S, D] view (type t) starts in its [B, S,
 * nh D] storage, and its row stride (nh D); or z rows x cols in after another
 * (contiguous, view = 0). */
static LLVMValueRef entry_offset(cg_ctx *c, const ir_type *t, int view, LLVMValueRef z,
                                 LLVMValueRef B, LLVMValueRef S, LLVMValueRef *ld)
{
    LLVMValueRef rows = cg_dim(c, t->dim[t->rank - 2], B, S);
    LLVMValueRef cols = cg_dim(c, t->dim[t->rank - 1], B, S);
    if (!view) {
        *ld = cols;
        return cg_mul(c, z, cg_mul(c, rows, cols));
    }
    LLVMValueRef nh = cg_dim(c, t->dim[1], B, S);
    *ld = cg_mul(c, nh, cols);
    LLVMValueRef b = cg_div(c, z, nh), h = cg_rem(c, z, nh);
    return cg_add(c, cg_mul(c, b, cg_mul(c, rows, *ld)), cg_mul(c, h, cols));
}

static void mm_sizes(cg_ctx *c, const mm_node *mn, const mm_cfg *f, LLVMValueRef B,
                     LLVMValueRef S, mm_dims *d)
{
    const ir_type *a = mn->a, *b = mn->b, *o = mn->o;
    int r = a->rank;
    d->batch = cg_dims_prod(c, a, 0, r - 2, B, S);
    d->M = cg_dim(c, o->dim[r - 2], B, S);
    d->N = cg_dim(c, o->dim[r - 1], B, S);
    d->K = cg_dim(c, mn->n->a.ta ? a->dim[r - 2] : a->dim[r - 1], B, S);
    if (!b_batched(a, b)) {
        d->M = cg_mul(c, d->M, d->batch);
        d->batch = cg_i64(c, 1);
    }
    d->nb = cg_div(c, cg_add(c, d->N, cg_i64(c, f->NC - 1)), cg_i64(c, f->NC));
    /* the nb blocks of equal width (whole micro-panels): 1024 in two blocks of 528 and
     * 496, not 768 and 256 */
    d->nc = round_up(c, cg_div(c, cg_add(c, d->N, cg_sub(c, d->nb, cg_i64(c, 1))), d->nb),
                     f->NR);
    /* MC rows per unit, halved (twice at most) while that leaves an odd number of
     * units below 8: a weight gradient [256, 256] is otherwise one unit, which one
     * thread computes while the others wait (measured: half the GEMM rate on 2
     * threads). Tiles do not change the bits. */
    d->mc = cg_i64(c, f->MC);
    for (int h = f->MC / 2; h >= f->MC / 4 && h % f->MR == 0; h /= 2) {
        LLVMValueRef mb = cg_div(c, cg_add(c, d->M, cg_sub(c, d->mc, cg_i64(c, 1))), d->mc);
        LLVMValueRef u = cg_mul(c, d->batch, cg_mul(c, mb, d->nb));
        LLVMValueRef odd_few =
            LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, u, cg_i64(c, 8), ""),
                         LLVMBuildTrunc(c->b, u, LLVMInt1TypeInContext(c->ctx), ""), "");
        d->mc = LLVMBuildSelect(c->b, odd_few, cg_i64(c, h), d->mc, "mc");
    }
    d->mb = cg_div(c, cg_add(c, d->M, cg_sub(c, d->mc, cg_i64(c, 1))), d->mc);
    d->mc = round_up(c, cg_div(c, cg_add(c, d->M, cg_sub(c, d->mb, cg_i64(c, 1))), d->mb),
                     f->MR); /* equal heights too */
    d->units = cg_mul(c, d->batch, cg_mul(c, d->mb, d->nb));
}

/* ---- small IR helpers ---- */

static LLVMTypeRef vec_t(cg_ctx *c, int n)
{
    return LLVMVectorType(c->t_f32, (unsigned)n);
}

static LLVMValueRef ptr_at(cg_ctx *c, LLVMValueRef base, LLVMValueRef idx)
{
    return cg_gep(c, c->t_f32, base, idx);
}

static LLVMValueRef shuffle(cg_ctx *c, LLVMValueRef x, LLVMValueRef y, const int *m, int n)
{
    LLVMValueRef idx[64];
    for (int i = 0; i < n; i++)
        idx[i] = LLVMConstInt(c->t_i32, (unsigned long long)m[i], 0);
    return LLVMBuildShuffleVector(c->b, x, y, LLVMConstVector(idx, (unsigned)n), "");
}

/* ---- packing: dst (KC, W) from rows w0 .. w0 + wv - 1 of op(src), zero past wv ---- */

/* src is contiguous along W: micro-panel q of dst, (kc, W) at dst + q * KC * W, gets
 * dst[q][p][w] = src[(pc + p) * ld + w0 + q * W + w], zero where w0 + q * W + w >= wend,
 * for q < nq. Each k walks one row of src across all panels, so src is read in order.
 * With sum (doubles, NULL: none), sum[q * W + w] += each value packed, row by row: the
 * columns' sums in row order, as reduce_sum adds them (a zero past wend adds nothing). */
static void pack_copy(cg_ctx *c, const mm_cfg *f, LLVMValueRef dst, int W, LLVMValueRef nq,
                      LLVMValueRef src, LLVMValueRef ld, LLVMValueRef w0, LLVMValueRef wend,
                      LLVMValueRef pc, LLVMValueRef kc, LLVMValueRef sum)
{
    int cw = W % f->V == 0 ? f->V : W % 8 == 0 ? 8 : W % 4 == 0 ? 4 : 1;
    cg_loop lp, lq;
    cg_for_begin(c, &lp, cg_i64(c, 0), kc, "p");
    LLVMValueRef srow = cg_mul(c, cg_add(c, pc, lp.iv), ld);
    LLVMValueRef drow = cg_mul(c, lp.iv, cg_i64(c, W));
    cg_for_begin(c, &lq, cg_i64(c, 0), nq, "q");
    LLVMValueRef wq = cg_add(c, w0, cg_mul(c, lq.iv, cg_i64(c, W)));
    LLVMValueRef wv = cg_sub(c, wend, wq); /* columns of this panel inside src */
    LLVMValueRef s = cg_add(c, srow, wq);
    LLVMValueRef d = cg_add(c, cg_mul(c, lq.iv, cg_i64(c, (int64_t)f->KC * W)), drow);
    LLVMValueRef full = LLVMBuildICmp(c->b, LLVMIntSGE, wv, cg_i64(c, W), "");
    LLVMBasicBlockRef bf = cg_block(c, "pack.full"), be = cg_block(c, "pack.edge"),
                      done = cg_block(c, "pack.done");
    LLVMBuildCondBr(c->b, full, bf, be);
    for (int edge = 0; edge < 2; edge++) {
        LLVMPositionBuilderAtEnd(c->b, edge ? be : bf);
        for (int w = 0; w < W; w += cw) {
            LLVMValueRef v, sw = cg_add(c, s, cg_i64(c, w));
            if (edge && cw == 1) {
                /* the clamped column is always in bounds; zero it past wv */
                LLVMValueRef in = LLVMBuildICmp(c->b, LLVMIntSLT, cg_i64(c, w), wv, "");
                sw = cg_add(c, s, cg_min(c, cg_i64(c, w), cg_sub(c, wv, cg_i64(c, 1))));
                v = LLVMBuildSelect(c->b, in, cg_vld_align(c, c->t_f32, src, sw, 4),
                                    cg_f32(c, 0), "");
            } else if (edge) {
                v = cg_masked_load(c, cw, cg_ptr_raw(c, src, sw),
                                cg_lane_mask(c, cg_sub(c, wv, cg_i64(c, w)), cw));
            } else {
                v = cg_vld_align(c, cw == 1 ? c->t_f32 : vec_t(c, cw), src, sw, 4);
            }
            cg_vst_align(c, v, dst, cg_add(c, d, cg_i64(c, w)),
                         cw == 1 ? 4 : 4 * (unsigned)cw);
            if (sum) {
                LLVMTypeRef dt =
                    cw == 1 ? c->t_f64 : LLVMVectorType(c->t_f64, (unsigned)cw);
                LLVMValueRef at =
                    cg_gep(c, c->t_f64, sum,
                           cg_add(c, cg_mul(c, lq.iv, cg_i64(c, W)), cg_i64(c, w)));
                LLVMValueRef old = LLVMBuildLoad2(c->b, dt, at, "");
                LLVMSetAlignment(old, 8);
                LLVMValueRef x =
                    LLVMBuildFAdd(c->b, old, LLVMBuildFPExt(c->b, v, dt, ""), "");
                LLVMSetAlignment(LLVMBuildStore(c->b, x, at), 8);
            }
        }
        LLVMBuildBr(c->b, done);
    }
    LLVMPositionBuilderAtEnd(c->b, done);
    cg_for_end(c, &lq);
    cg_for_end(c, &lp);
}

/* An 8 x 8 transpose of f32 vectors (unpack, shufps, 128-bit lane permute). */
static void transpose8(cg_ctx *c, LLVMValueRef *r)
{
    static const int lo[8] = {0, 8, 1, 9, 4, 12, 5, 13},
                     hi[8] = {2, 10, 3, 11, 6, 14, 7, 15};
    static const int s44[8] = {0, 1, 8, 9, 4, 5, 12, 13},
                     see[8] = {2, 3, 10, 11, 6, 7, 14, 15};
    static const int p20[8] = {0, 1, 2, 3, 8, 9, 10, 11},
                     p31[8] = {4, 5, 6, 7, 12, 13, 14, 15};
    LLVMValueRef t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = shuffle(c, r[2 * i], r[2 * i + 1], lo, 8);
        t[2 * i + 1] = shuffle(c, r[2 * i], r[2 * i + 1], hi, 8);
    }
    for (int h = 0; h < 2; h++) {
        LLVMValueRef *q = t + 4 * h, *o = s + 4 * h;
        o[0] = shuffle(c, q[0], q[2], s44, 8);
        o[1] = shuffle(c, q[0], q[2], see, 8);
        o[2] = shuffle(c, q[1], q[3], s44, 8);
        o[3] = shuffle(c, q[1], q[3], see, 8);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = shuffle(c, s[i], s[i + 4], p20, 8);
        r[i + 4] = shuffle(c, s[i], s[i + 4], p31, 8);
    }
}

/* One 8 x 8 block of pack_transposed: k p .. p + 7 of the 8 rows at src + row[t],
 * stored as 8 column vectors at dst + (p + t) * W + w; lanes off in `m` are zeroed.
 * A tail block (tail: its k count below 8; NULL: a whole block) loads and stores only
 * the k inside it. */
static void transpose_block(cg_ctx *c, LLVMValueRef dst, LLVMValueRef W, LLVMValueRef src,
                            const LLVMValueRef *row, LLVMValueRef p, LLVMValueRef w,
                            LLVMValueRef m, LLVMValueRef tail)
{
    LLVMValueRef r[8], kmask = tail ? cg_lane_mask(c, tail, 8) : NULL;
    for (int t = 0; t < 8; t++) {
        LLVMValueRef at = cg_add(c, row[t], p);
        r[t] = kmask ? cg_masked_load(c, 8, ptr_at(c, src, at), kmask)
                     : cg_vld_align(c, vec_t(c, 8), src, at, 4);
    }
    transpose8(c, r);
    for (int t = 0; t < 8; t++) {
        LLVMValueRef v = LLVMBuildSelect(c->b, m, r[t], LLVMConstNull(vec_t(c, 8)), "");
        LLVMValueRef at = cg_add(c, cg_mul(c, cg_add(c, p, cg_i64(c, t)), W), w);
        if (!tail) {
            cg_vst_align(c, v, dst, at, 32);
            continue;
        }
        /* row t of the tail: all lanes if t < tail, none past it */
        LLVMValueRef in = LLVMBuildICmp(c->b, LLVMIntSLT, cg_i64(c, t), tail, "");
        LLVMValueRef lanes = LLVMBuildSelect(c->b, in, cg_i64(c, 8), cg_i64(c, 0), "");
        cg_masked_store(c, 8, v, ptr_at(c, dst, at), cg_lane_mask(c, lanes, 8));
    }
}

void cg_pack_transposed(cg_ctx *c, LLVMValueRef dst, LLVMValueRef W, LLVMValueRef src,
                        LLVMValueRef ld, LLVMValueRef w0, LLVMValueRef wv, LLVMValueRef pc,
                        LLVMValueRef kc)
{
    LLVMValueRef last = cg_sub(c, wv, cg_i64(c, 1));
    LLVMValueRef k8 = LLVMBuildAnd(c->b, kc, cg_i64(c, ~(int64_t)7), "");
    LLVMValueRef tail = cg_sub(c, kc, k8);
    cg_loop lg, lq;
    cg_for_begin(c, &lg, cg_i64(c, 0), cg_div(c, W, cg_i64(c, 8)), "g");
    LLVMValueRef g8 = cg_mul(c, lg.iv, cg_i64(c, 8)), row[8];
    for (int t = 0; t < 8; t++) {
        LLVMValueRef w = cg_min(c, cg_add(c, g8, cg_i64(c, t)), last);
        row[t] = cg_add(c, cg_mul(c, cg_add(c, w0, w), ld), pc);
    }
    /* lane t of every column vector comes from row 8g + t */
    LLVMValueRef m = cg_lane_mask(c, cg_sub(c, wv, g8), 8);
    cg_for_begin(c, &lq, cg_i64(c, 0), cg_div(c, k8, cg_i64(c, 8)), "p8");
    transpose_block(c, dst, W, src, row, cg_mul(c, lq.iv, cg_i64(c, 8)), g8, m, NULL);
    cg_for_end(c, &lq);
    LLVMBasicBlockRef bt = cg_block(c, "pack.tail"), done = cg_block(c, "pack.tail.done");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, tail, cg_i64(c, 0), ""), bt,
                    done);
    LLVMPositionBuilderAtEnd(c->b, bt);
    transpose_block(c, dst, W, src, row, k8, g8, m, tail);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
    cg_for_end(c, &lg);
}

/* ---- the micro-kernel ---- */

#define MAX_ACC 32

/* Where the micro-kernel reads A: the packed micro-panel pa (kc, MR), or MR row
 * pointers into A (offset by pc) when rows is set. */
typedef struct mm_a {
    LLVMValueRef pa;
    LLVMValueRef rows[MAX_ACC];
    int direct;
} mm_a;

/* Where the micro-kernel reads B: vector v of k step p at base[v] + p * stride (the
 * packed micro-panel (kc, NR) in scratch: base[v] = pb + v V, stride NR; pack_b's
 * panels: each vector in its 16-column panel, stride IR_PACK_W). */
typedef struct mm_b {
    LLVMValueRef base[4];
    int stride;
} mm_b;

/* One k step at index p: acc[r][v] += A(r, p) * B(p, v-th vector). */
static void k_step(cg_ctx *c, const mm_cfg *f, const mm_a *a, const mm_b *b, LLVMValueRef p,
                   LLVMValueRef *acc)
{
    LLVMValueRef bv[8];
    for (int v = 0; v < f->NRV; v++)
        bv[v] = cg_vld_align(c, vec_t(c, f->V), b->base[v],
                             cg_mul(c, p, cg_i64(c, b->stride)), 4 * (unsigned)f->V);
    for (int r = 0; r < f->MR; r++) {
        LLVMValueRef s =
            a->direct
                ? cg_vld_align(c, c->t_f32, a->rows[r], p, 4)
                : cg_vld_align(c, c->t_f32, a->pa,
                               cg_add(c, cg_mul(c, p, cg_i64(c, f->MR)), cg_i64(c, r)), 4);
        LLVMValueRef sv = cg_splat(c, vec_t(c, f->V), s);
        for (int v = 0; v < f->NRV; v++)
            acc[r * f->NRV + v] = cg_fma_or_muladd(c, sv, bv[v], acc[r * f->NRV + v]);
    }
}

/* for (p = p0; p < end; p += U) k steps p .. p + U - 1, accumulators carried in acc.
 * Returns p at the exit. */
static LLVMValueRef k_loop(cg_ctx *c, const mm_cfg *f, int U, LLVMValueRef p0,
                           LLVMValueRef end, const mm_a *a, const mm_b *b,
                           LLVMValueRef *acc)
{
    const int NA = f->MR * f->NRV;
    LLVMTypeRef vt = vec_t(c, f->V);
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b), head = cg_block(c, "k.head"),
                      body = cg_block(c, "k.body"), exit = cg_block(c, "k.exit");
    LLVMBuildBr(c->b, head);
    LLVMPositionBuilderAtEnd(c->b, head);
    LLVMValueRef p = LLVMBuildPhi(c->b, c->t_i64, "p"), ph[MAX_ACC], cur[MAX_ACC];
    LLVMAddIncoming(p, &p0, &pre, 1);
    for (int i = 0; i < NA; i++) {
        ph[i] = LLVMBuildPhi(c->b, vt, "acc");
        LLVMAddIncoming(ph[i], &acc[i], &pre, 1);
        cur[i] = ph[i];
    }
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, p, end, ""), body, exit);
    LLVMPositionBuilderAtEnd(c->b, body);
    for (int u = 0; u < U; u++)
        k_step(c, f, a, b, cg_add(c, p, cg_i64(c, u)), cur);
    LLVMValueRef pn = LLVMBuildAdd(c->b, p, cg_i64(c, U), "");
    LLVMSetNSW(pn, 1);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, head);
    if (U == 1) /* the remainder (< U steps): LLVM would unroll it 3 more times */
        cg_keep_loop(c, latch);
    LLVMAddIncoming(p, &pn, &latch, 1);
    for (int i = 0; i < NA; i++) {
        LLVMAddIncoming(ph[i], &cur[i], &latch, 1);
        acc[i] = ph[i];
    }
    LLVMPositionBuilderAtEnd(c->b, exit);
    return p;
}

/* Copies the mr x nr corner of C at cz + i0 * ldc + j0 to or from the (MR, NR) tile
 * (row by row, NR/V masked vectors a row). */
static void edge_copy(cg_ctx *c, const mm_cfg *f, int to_c, LLVMValueRef tile,
                      LLVMValueRef cz, LLVMValueRef ldc, LLVMValueRef i0, LLVMValueRef mr,
                      LLVMValueRef j0, LLVMValueRef nr)
{
    cg_loop lr;
    cg_for_begin(c, &lr, cg_i64(c, 0), mr, "edge.r");
    LLVMValueRef crow = cg_add(c, cg_mul(c, cg_add(c, i0, lr.iv), ldc), j0);
    LLVMValueRef trow = cg_mul(c, lr.iv, cg_i64(c, f->NR));
    for (int v = 0; v < f->NRV; v++) {
        LLVMValueRef cp = cg_ptr_raw(c, cz, cg_add(c, crow, cg_i64(c, v * f->V)));
        LLVMValueRef tv = cg_add(c, trow, cg_i64(c, v * f->V));
        LLVMValueRef m = cg_lane_mask(c, cg_sub(c, nr, cg_i64(c, v * f->V)), f->V);
        if (to_c)
            cg_masked_store(c, f->V,
                         cg_vld_align(c, vec_t(c, f->V), tile, tv, 4 * (unsigned)f->V), cp,
                         m);
        else
            cg_vst_align(c, cg_masked_load(c, f->V, cp, m), tile, tv, 4 * (unsigned)f->V);
    }
    cg_for_end(c, &lr);
}

/* ---- the epilogue of a fused region ---- */

/* How an epilogue op reads an operand that is not the chain's value. */
/* EPI_ROW: a suffix of one dim (a bias [N]), read at the column: an epilogue's C is never a
 * head view, so its rows are contiguous and the flat index modulo N is the column. */
typedef enum { EPI_CHAIN, EPI_FULL, EPI_SUFFIX, EPI_ROW, EPI_SCALAR, EPI_SEED } epi_kind;

typedef struct epi_step {
    const ir_node *n; /* in the region graph */
    cg_map_fn f;
    epi_kind kind[IR_MAX_INPUTS];
    int arg[IR_MAX_INPUTS];           /* the kernel argument it reads */
    const ir_type *type[IR_MAX_INPUTS];
    LLVMValueRef base[IR_MAX_INPUTS]; /* in the body: its pointer */
    LLVMValueRef nb[IR_MAX_INPUTS];   /* EPI_SUFFIX: its element count */
    LLVMValueRef seed;                /* EPI_SEED: the loaded seed */
    LLVMValueRef tag;                 /* the first dropout: its stream index, dims[2] */
} epi_step;

/* The elementwise ops applied to each element of C as the last K block stores it, in
 * order; each reads the previous one's value (the matmul's, first). */
typedef struct mm_epi {
    int n;
    epi_step s[16];
} mm_epi;

/* v (V lanes of C, flat element indices flat .. flat + V - 1 of the result, columns col
 * ..) through the epilogue. mask: the lanes inside C (NULL: all), for the operands'
 * loads. */
static LLVMValueRef epi_apply(cg_ctx *c, const mm_cfg *f, const mm_epi *epi, LLVMValueRef v,
                              LLVMValueRef flat, LLVMValueRef col, LLVMValueRef mask)
{
    LLVMTypeRef vt = vec_t(c, f->V);
    LLVMValueRef idx = LLVMBuildAdd(c->b, cg_splat(c, LLVMVectorType(c->t_i64, (unsigned)f->V), flat),
                                    cg_iota(c->t_i64, 0, (unsigned)f->V), "");
    for (int i = 0; i < epi->n; i++) {
        const epi_step *st = &epi->s[i];
        LLVMValueRef x[IR_MAX_INPUTS];
        for (int k = 0; k < st->n->nin; k++) {
            LLVMValueRef at = flat;
            switch (st->kind[k]) {
            case EPI_CHAIN:
                x[k] = v;
                continue;
            case EPI_SEED:
                x[k] = NULL;
                continue;
            case EPI_SCALAR:
                x[k] = cg_splat(c, vt, cg_vld_align(c, c->t_f32, st->base[k], cg_i64(c, 0), 4));
                continue;
            case EPI_SUFFIX:
                at = cg_rem(c, flat, st->nb[k]);
                break;
            case EPI_ROW:
                at = col;
                break;
            case EPI_FULL:
                break;
            }
            x[k] = mask ? cg_masked_load(c, f->V, cg_ptr_raw(c, st->base[k], at), mask)
                        : cg_vld_align(c, vt, st->base[k], at, 4);
        }
        cg_map_env env = {st->n, st->seed, st->tag};
        v = st->f(c, &env, vt, x, idx);
    }
    return v;
}

/* Whether a full tile's epilogue runs on its accumulators (one copy of the chain per
 * accumulator, MR x NRV of them) rather than on the tile once stored (one copy per
 * vector of a row, in a loop over the rows, as edge tiles do). A chain with a
 * polynomial (GELU, tanh and their gradients: some 40 instructions a vector) takes the
 * loop: 24 copies made bert-base's matmul+gelu_grad kernel 4500 instructions, and the
 * store and reload cost nothing measurable next to the polynomial (bench --profile,
 * alternated twice: matmul+gelu_grad 196/188 -> 185/192 ms, FFN matmul+add+gelu
 * 173/182 -> 172/176 ms). Cheap chains (bias, residual, scale, dropout's hash) stay on
 * the registers: applied to the stored tile, attention's matmul+dropout (K = 64) went
 * 14/12 -> 16/16 ms, and bert-mini's FFN matmul+add lost 10 % before. */
static int epi_on_registers(const mm_epi *epi)
{
    for (int i = 0; i < epi->n; i++)
        switch (epi->s[i].n->op) {
        case IR_OP_GELU:
        case IR_OP_GELU_TANH:
        case IR_OP_TANH:
        case IR_OP_GELU_GRAD:
        case IR_OP_GELU_TANH_GRAD:
        case IR_OP_TANH_GRAD:
            return 0;
        default:
            break;
        }
    return 1;
}

/* The MR x NR tile of C at rows i0.., columns j0.. (mr x nr of it inside C):
 * C = (first ? 0 : C) + sum over p < kc of A(:, p) B(p, :), pb saying where B's
 * (kc, NR) micro-panel is. Full tiles load and store C directly; edge tiles go through
 * `tile`, an (MR, NR) stack buffer. With an epilogue, the last K block (`last`) applies
 * it: a full tile on its accumulators before the one store of C where the chain is
 * cheap (epi_on_registers; measured on bert-mini B=32 inference: the FFN's matmul+add
 * 306 -> 338 GFLOP/s against applying it to the stored tile), else, and for an edge
 * tile, to the tile once in C, row by row; zoff is the flat index of C's batch entry
 * in the result. */
static void micro_kernel(cg_ctx *c, const mm_cfg *f, const mm_a *a, const mm_b *pb,
                         LLVMValueRef kc, LLVMValueRef cz, LLVMValueRef ldc,
                         LLVMValueRef i0, LLVMValueRef mr, LLVMValueRef j0, LLVMValueRef nr,
                         LLVMValueRef first, LLVMValueRef tile, const mm_epi *epi,
                         LLVMValueRef last, LLVMValueRef zoff)
{
    const int MR = f->MR, NRV = f->NRV, V = f->V, NA = MR * NRV;
    LLVMTypeRef vt = vec_t(c, V);
    LLVMValueRef full =
        LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, mr, cg_i64(c, MR), ""),
                     LLVMBuildICmp(c->b, LLVMIntEQ, nr, cg_i64(c, f->NR), ""), "full");
    LLVMValueRef c0 = cg_add(c, cg_mul(c, i0, ldc), j0), zero = LLVMConstNull(vt);
#define C_AT(r, v) cg_add(c, c0, cg_add(c, cg_mul(c, cg_i64(c, r), ldc), cg_i64(c, (v)*V)))
#define T_AT(r, v) cg_i64(c, (r)*f->NR + (v)*V)

    /* accumulators start at 0 (first K block) or at C */
    LLVMBasicBlockRef b0 = LLVMGetInsertBlock(c->b), bl = cg_block(c, "c.load"),
                      blf = cg_block(c, "c.load.full"), ble = cg_block(c, "c.load.edge"),
                      bi = cg_block(c, "k.init");
    LLVMBuildCondBr(c->b, first, bi, bl);
    LLVMPositionBuilderAtEnd(c->b, bl);
    LLVMBuildCondBr(c->b, full, blf, ble);
    LLVMValueRef accf[MAX_ACC], acce[MAX_ACC], acc[MAX_ACC];
    LLVMPositionBuilderAtEnd(c->b, blf);
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NRV; v++)
            accf[r * NRV + v] = cg_vld_align(c, vt, cz, C_AT(r, v), 4);
    LLVMBuildBr(c->b, bi);
    LLVMPositionBuilderAtEnd(c->b, ble);
    /* rows of the tile past mr keep stale values; their results are never stored */
    edge_copy(c, f, 0, tile, cz, ldc, i0, mr, j0, nr);
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NRV; v++)
            acce[r * NRV + v] = cg_vld_align(c, vt, tile, T_AT(r, v), 4 * (unsigned)V);
    LLVMBasicBlockRef ble_end = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, bi);
    LLVMPositionBuilderAtEnd(c->b, bi);
    LLVMBasicBlockRef from[3] = {b0, blf, ble_end};
    for (int i = 0; i < NA; i++) {
        acc[i] = LLVMBuildPhi(c->b, vt, "acc0");
        LLVMValueRef in[3] = {zero, accf[i], acce[i]};
        LLVMAddIncoming(acc[i], in, from, 3);
    }

    /* the epilogue's full-size operands (a residual, gelu_grad's x) are read once, in
     * tiles of MR short rows that the hardware prefetcher does not follow: in the last K
     * block (the one whose epilogue reads them), ask for the tile's lines (16 floats
     * each) now, so that they arrive while the k loop runs */
    int full_operands = 0;
    for (int i = 0; epi && i < epi->n; i++)
        for (int k = 0; k < epi->s[i].n->nin; k++)
            full_operands += epi->s[i].kind[k] == EPI_FULL;
    if (full_operands) {
        LLVMBasicBlockRef bp = cg_block(c, "epi.prefetch"), bk = cg_block(c, "k.start");
        LLVMBuildCondBr(c->b, last, bp, bk);
        LLVMPositionBuilderAtEnd(c->b, bp);
        for (int i = 0; i < epi->n; i++)
            for (int k = 0; k < epi->s[i].n->nin; k++) {
                if (epi->s[i].kind[k] != EPI_FULL)
                    continue;
                for (int r = 0; r < MR; r++)
                    for (int v = 0; v < f->NR; v += 16)
                        cg_prefetch(c, cg_ptr_raw(c, epi->s[i].base[k],
                                                  cg_add(c, zoff, cg_add(c, C_AT(r, 0),
                                                                         cg_i64(c, v)))));
            }
        LLVMBuildBr(c->b, bk);
        LLVMPositionBuilderAtEnd(c->b, bk);
    }

    /* the k loop, unrolled U times, then its remainder */
    LLVMValueRef p =
        k_loop(c, f, f->U, cg_i64(c, 0), cg_sub(c, kc, cg_i64(c, f->U - 1)), a, pb, acc);
    k_loop(c, f, 1, p, kc, a, pb, acc);

    LLVMBasicBlockRef bsf = cg_block(c, "c.store.full"), bse = cg_block(c, "c.store.edge"),
                      bd = cg_block(c, "c.done");
    LLVMBuildCondBr(c->b, full, bsf, bse);
    LLVMPositionBuilderAtEnd(c->b, bsf);
    int regs = epi && epi_on_registers(epi);
    if (regs) {
        /* a full tile after the last K block: the epilogue on the accumulators, so C
         * is written once */
        LLVMBasicBlockRef bfe = cg_block(c, "c.store.epi"), bfp = cg_block(c, "c.store.plain");
        LLVMBuildCondBr(c->b, last, bfe, bfp);
        LLVMPositionBuilderAtEnd(c->b, bfe);
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NRV; v++) {
                LLVMValueRef at = C_AT(r, v);
                LLVMValueRef y = epi_apply(c, f, epi, acc[r * NRV + v], cg_add(c, zoff, at),
                                           cg_add(c, j0, cg_i64(c, v * V)), NULL);
                cg_vst_align(c, y, cz, at, 4);
            }
        LLVMBuildBr(c->b, bd);
        LLVMPositionBuilderAtEnd(c->b, bfp);
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NRV; v++)
            cg_vst_align(c, acc[r * NRV + v], cz, C_AT(r, v), 4);
    LLVMBuildBr(c->b, bd);
    LLVMPositionBuilderAtEnd(c->b, bse);
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NRV; v++)
            cg_vst_align(c, acc[r * NRV + v], tile, T_AT(r, v), 4 * (unsigned)V);
    edge_copy(c, f, 1, tile, cz, ldc, i0, mr, j0, nr);
    LLVMBuildBr(c->b, bd);
    LLVMPositionBuilderAtEnd(c->b, bd);
    if (epi) {
        /* an edge tile after the last K block, or any tile when the chain is not
         * applied on the registers: the epilogue on the tile just stored, row by row
         * while it is in L1 (one copy of the chain per vector of a row keeps the kernel
         * small; an f32 store and reload is exact, so the bits are those of registers) */
        LLVMBasicBlockRef be = cg_block(c, "c.epi"), bdone = cg_block(c, "c.epi.done");
        LLVMValueRef edge = LLVMBuildNot(c->b, full, "");
        LLVMBuildCondBr(c->b, regs ? LLVMBuildAnd(c->b, last, edge, "") : last, be, bdone);
        LLVMPositionBuilderAtEnd(c->b, be);
        LLVMValueRef m[4];
        for (int v = 0; v < NRV; v++)
            m[v] = cg_lane_mask(c, cg_sub(c, nr, cg_i64(c, v * V)), V);
        cg_loop lr;
        cg_for_begin(c, &lr, cg_i64(c, 0), mr, "epi.r");
        LLVMValueRef crow = cg_add(c, cg_mul(c, cg_add(c, i0, lr.iv), ldc), j0);
        for (int v = 0; v < NRV; v++) {
            LLVMValueRef cv = cg_add(c, crow, cg_i64(c, v * V));
            LLVMValueRef x = cg_masked_load(c, V, cg_ptr_raw(c, cz, cv), m[v]);
            LLVMValueRef y = epi_apply(c, f, epi, x, cg_add(c, zoff, cv),
                                       cg_add(c, j0, cg_i64(c, v * V)), m[v]);
            cg_masked_store(c, V, y, cg_ptr_raw(c, cz, cv), m[v]);
        }
        cg_for_end(c, &lr);
        LLVMBuildBr(c->b, bdone);
        LLVMPositionBuilderAtEnd(c->b, bdone);
    }
#undef C_AT
#undef T_AT
}

/* ---- the lowering ---- */

/* What the lowering below assumes of a matmul with operands of types at, bt. */
static int check_mm(const cg_ctx *c, const ir_node *n, const ir_type *at, const ir_type *bt,
                    bc_err *e)
{
    if (at->dtype != IR_F32 || bt->dtype != IR_F32)
        return bc_errf(e, "matmul: operands must be f32");
    if (!b_batched(at, bt) && n->a.ta && at->rank > 2)
        return bc_errf(e, "matmul: ta needs a batched rhs");
    const mm_cfg cfg = choose_cfg(c, n->a.ta, n->nin == 3, &n->type), *f = &cfg;
    if (f->MR * f->NRV > MAX_ACC || f->NRV > 4 || f->NR % 8 || f->KC % 8 ||
        f->MC % f->MR || f->NC % f->NR)
        return bc_errf(e, "matmul: internal error: bad blocking %dx%d, KC %d, %dx%d", f->MR,
                       f->NR, f->KC, f->MC, f->NC);
    return 0;
}

int cg_check_matmul(const cg_ctx *c, const ir_node *n, bc_err *e)
{
    return check_mm(c, n, &c->g->nodes[n->in[0]].type, &c->g->nodes[n->in[1]].type, e);
}

/* What the register tiles of one K block share: the sizes, the unit's first row and
 * column, the block's first k, A (its batch entry, read in place, or its packed block)
 * and B (pack_b's panels, or the block's panel packed in scratch). */
typedef struct mm_blk {
    const mm_cfg *f;
    LLVMValueRef M, N, K, m0, n0, pc;
    LLVMValueRef az, lda, pa;
    LLVMValueRef Pk, pb;
} mm_blk;

/* A micro-panel ix of the block: its first row *i0, its rows *mr and where it is read. */
static mm_a a_panel(cg_ctx *c, const mm_blk *k, LLVMValueRef ix, LLVMValueRef *i0,
                    LLVMValueRef *mr)
{
    const mm_cfg *f = k->f;
    *i0 = cg_add(c, k->m0, cg_mul(c, ix, cg_i64(c, f->MR)));
    *mr = cg_min(c, cg_i64(c, f->MR), cg_sub(c, k->M, *i0));
    mm_a a = {0};
    a.direct = f->a_direct;
    if (a.direct) {
        /* rows past M are clamped to the last one; their results are not stored */
        LLVMValueRef last = cg_sub(c, k->M, cg_i64(c, 1));
        for (int r = 0; r < f->MR; r++) {
            LLVMValueRef row = cg_min(c, cg_add(c, *i0, cg_i64(c, r)), last);
            a.rows[r] = ptr_at(c, k->az, cg_add(c, cg_mul(c, row, k->lda), k->pc));
        }
    } else {
        a.pa = ptr_at(c, k->pa, cg_mul(c, ix, cg_i64(c, (int64_t)f->KC * f->MR)));
    }
    return a;
}

/* B micro-panel jx of the block: its first column *j0, its columns *nr and where each
 * of its vectors is read. */
static mm_b b_panel(cg_ctx *c, const mm_blk *k, LLVMValueRef jx, LLVMValueRef *j0,
                    LLVMValueRef *nr)
{
    const mm_cfg *f = k->f;
    *j0 = cg_add(c, k->n0, cg_mul(c, jx, cg_i64(c, f->NR)));
    *nr = cg_min(c, cg_i64(c, f->NR), cg_sub(c, k->N, *j0));
    mm_b b;
    if (k->Pk) {
        /* vector v: columns j0 + v V .. in panel (j0 + v V) / 16, from row pc; a vector
         * past the last panel (only in an edge tile, whose columns there are never
         * stored) reads the last one */
        LLVMValueRef W = cg_i64(c, IR_PACK_W);
        LLVMValueRef lastp = cg_div(c, cg_sub(c, k->N, cg_i64(c, 1)), W);
        for (int v = 0; v < f->NRV; v++) {
            LLVMValueRef col = cg_add(c, *j0, cg_i64(c, v * f->V));
            LLVMValueRef pj = cg_min(c, cg_div(c, col, W), lastp);
            LLVMValueRef at = cg_add(c, cg_mul(c, cg_add(c, cg_mul(c, pj, k->K), k->pc), W),
                                     cg_rem(c, col, W));
            b.base[v] = ptr_at(c, k->Pk, at);
        }
        b.stride = IR_PACK_W;
    } else {
        LLVMValueRef pbj =
            ptr_at(c, k->pb, cg_mul(c, jx, cg_i64(c, (int64_t)f->KC * f->NR)));
        for (int v = 0; v < f->NRV; v++)
            b.base[v] = ptr_at(c, pbj, cg_i64(c, v * f->V));
        b.stride = f->NR;
    }
    return b;
}

/* Unit u's batch entry *z, M block *mi and N block *ni: the N blocks of one M block
 * consecutive (m_outer), or the M blocks of one N block (which share B's panel). */
static void unit_blocks(cg_ctx *c, const mm_dims *d, int m_outer, LLVMValueRef u,
                        LLVMValueRef *z, LLVMValueRef *mi, LLVMValueRef *ni)
{
    LLVMValueRef mbnb = cg_mul(c, d->mb, d->nb), t = cg_rem(c, u, mbnb);
    *z = cg_div(c, u, mbnb);
    *mi = m_outer ? cg_div(c, t, d->nb) : cg_rem(c, t, d->mb);
    *ni = m_outer ? cg_rem(c, t, d->nb) : cg_div(c, t, d->mb);
}

/* Packs A's block (rows pc .. pc + kc - 1 of A, its columns m0 .. m0 + mc - 1) as
 * pack_copy does, and in the unit of its M block whose N block is the first (n0 = 0: one
 * unit per M block, which packs every row of those columns in order over its K blocks)
 * adds each value to acc, the columns' sums in double: zeroed at the first K block,
 * stored to S[m0 ..] as f32 after the last. Each column is summed in row order from 0,
 * which is how reduce_sum sums it, so the bits are reduce_sum's for any tiling and
 * thread count. */
static void pack_a_summed(cg_ctx *c, const mm_cfg *f, LLVMValueRef pa, LLVMValueRef nip,
                          LLVMValueRef az, LLVMValueRef lda, LLVMValueRef m0,
                          LLVMValueRef mc, LLVMValueRef pc, LLVMValueRef kc,
                          LLVMValueRef acc, LLVMValueRef S, LLVMValueRef n0,
                          LLVMValueRef first, LLVMValueRef last)
{
    LLVMValueRef m1 = cg_add(c, m0, mc);
    LLVMBasicBlockRef bs = cg_block(c, "sum.pack"), bz = cg_block(c, "sum.zero"),
                      bk = cg_block(c, "sum.k"), bo = cg_block(c, "sum.store"),
                      bp = cg_block(c, "plain.pack"), done = cg_block(c, "pack.a.done");
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, n0, cg_i64(c, 0), ""), bs, bp);
    LLVMPositionBuilderAtEnd(c->b, bs);
    LLVMBuildCondBr(c->b, first, bz, bk);
    LLVMPositionBuilderAtEnd(c->b, bz);
    cg_loop lz;
    cg_for_begin(c, &lz, cg_i64(c, 0), cg_mul(c, nip, cg_i64(c, f->MR)), "sum.z");
    cg_store(c, LLVMConstReal(c->t_f64, 0.0), acc, lz.iv);
    cg_for_end(c, &lz);
    LLVMBuildBr(c->b, bk);
    LLVMPositionBuilderAtEnd(c->b, bk);
    pack_copy(c, f, pa, f->MR, nip, az, lda, m0, m1, pc, kc, acc);
    LLVMBuildCondBr(c->b, last, bo, done);
    LLVMPositionBuilderAtEnd(c->b, bo);
    cg_loop ls;
    cg_for_begin(c, &ls, cg_i64(c, 0), mc, "sum.s");
    cg_store(c, LLVMBuildFPTrunc(c->b, cg_load(c, c->t_f64, acc, ls.iv), c->t_f32, ""), S,
             cg_add(c, m0, ls.iv));
    cg_for_end(c, &ls);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, bp);
    pack_copy(c, f, pa, f->MR, nip, az, lda, m0, m1, pc, kc, NULL);
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
}

static void lower_mm(cg_ctx *c, cg_kernel *k, const mm_node *mn, mm_epi *epi)
{
    const ir_type *at = mn->a, *bt = mn->b;
    const int ta = mn->n->a.ta, tb = mn->n->a.tb;
    const mm_cfg cfg = choose_cfg(c, ta, mn->p_arg > 0, mn->o), *f = &cfg;

    /* units: batch x M blocks x N blocks */
    LLVMBasicBlockRef body_bb = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(k->units));
    mm_dims d;
    mm_sizes(c, mn, f, k->uB, k->uS, &d);
    /* the column sums of A (M doubles, and a tile's rows past M) after the packed
     * panels: a thread's units of one group are summed side by side */
    LLVMValueRef sum_bytes = mn->s_arg >= 0
                                 ? cg_mul(c, cg_i64(c, 8), cg_add(c, d.M, cg_i64(c, f->MR)))
                                 : cg_i64(c, 0);
    cg_units_return(c, k, d.units, cg_add(c, cg_i64(c, scratch_bytes(f)), sum_bytes));
    LLVMPositionBuilderAtEnd(c->b, body_bb);

    mm_sizes(c, mn, f, k->B, k->S, &d);
    LLVMValueRef C = cg_arg(c, k, mn->c_arg), A = cg_arg(c, k, mn->a_arg),
                 Bm = cg_arg(c, k, mn->b_arg);
    LLVMValueRef Sv = mn->s_arg >= 0 ? cg_arg(c, k, mn->s_arg) : NULL; /* A's column sums */
    LLVMValueRef Pk = mn->p_arg ? cg_arg(c, k, mn->p_arg) : NULL; /* pack_b(b) */
    int dropouts = 0;
    for (int i = 0; epi && i < epi->n; i++) {
        epi_step *st = &epi->s[i];
        /* the plan passes the first dropout's stream index (rt_step.imm) */
        if (st->n->op == IR_OP_DROPOUT && !dropouts++)
            st->tag = LLVMBuildLoad2(c->b, c->t_i64,
                                     LLVMBuildGEP2(c->b, c->t_i64, k->dims,
                                                   (LLVMValueRef[]){cg_i64(c, 2)}, 1, ""),
                                     "tag");
        for (int j = 0; j < st->n->nin; j++) {
            if (st->kind[j] == EPI_CHAIN)
                continue;
            st->base[j] = cg_arg(c, k, st->arg[j]);
            if (st->kind[j] == EPI_SEED)
                st->seed = LLVMBuildLoad2(c->b, c->t_i64, st->base[j], "seed");
            if (st->kind[j] == EPI_SUFFIX)
                st->nb[j] = cg_numel(c, st->type[j], k->B, k->S);
        }
    }
    LLVMValueRef pb = k->scratch; /* (NC/NR, KC, NR) */
    LLVMValueRef pa =
        ptr_at(c, k->scratch, cg_i64(c, scratch_floats_b(f))); /* (MC/MR, KC, MR) */
    LLVMValueRef acc = ptr_at(c, pa, cg_i64(c, (int64_t)f->KC * f->MC)); /* (M) doubles */
    LLVMValueRef tile = cg_var(c, LLVMArrayType(c->t_f32, (unsigned)(f->MR * f->NR)), NULL,
                               "tile"); /* (MR, NR): edge tiles of C */
    LLVMSetAlignment(tile, 64);
    LLVMValueRef one = cg_i64(c, 1), MN = cg_mul(c, d.M, d.N);
    LLVMValueRef npc = cg_div(c, cg_add(c, d.K, cg_i64(c, f->KC - 1)), cg_i64(c, f->KC));
    npc = LLVMBuildSelect(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, npc, one, ""), one, npc,
                          "npc");

    /* Units in groups that share B's panel. Where both operands are packed here (a
     * weight gradient), the M blocks of one N block (and batch entry) are consecutive
     * units, and a thread packs each K block's panel once for all of its units of a
     * group, then runs them against it (GotoBLAS's loop order); C carries each unit's
     * sums from one K block to the next as before. bench/run_matmul.sh, alternated
     * twice: the dW rows 0.95-1.02x OpenBLAS -> 0.98-1.09x. Elsewhere every unit is its
     * own group, M blocks outer: with A read in place (forward, dx) the grouped order
     * lost up to 8 % on 2 threads at N = 768 (each thread then reads all of A, and its
     * C tiles leave L2 between K blocks), and with pack_b's panels nothing is packed. */
    int grouped = !Pk && !f->a_direct;
    cg_loop lg, lu;
    LLVMValueRef ua, ub = NULL; /* the thread's units of the group */
    if (grouped) {
        LLVMValueRef g0 = cg_div(c, k->u0, d.mb);
        LLVMValueRef g1 = cg_div(c, cg_add(c, k->u1, cg_sub(c, d.mb, one)), d.mb);
        cg_for_begin(c, &lg, g0, g1, "group");
        LLVMValueRef ug = cg_mul(c, lg.iv, d.mb);
        ua = cg_max(c, k->u0, ug);
        ub = cg_min(c, k->u1, cg_add(c, ug, d.mb));
    } else { /* one unit at a time, K blocks inside it (no group loop: it compiles faster)
              */
        cg_for_begin(c, &lu, k->u0, k->u1, "unit");
        ua = lu.iv;
    }
    LLVMValueRef z, mi, ni;
    unit_blocks(c, &d, !grouped, ua, &z, &mi, &ni);
    LLVMValueRef n0 = cg_mul(c, ni, d.nc);
    LLVMValueRef nc = cg_min(c, d.nc, cg_sub(c, d.N, n0));
    LLVMValueRef njp = cg_div(c, cg_add(c, nc, cg_i64(c, f->NR - 1)), cg_i64(c, f->NR));
    LLVMValueRef lda, ldb, ldc;
    LLVMValueRef az = ptr_at(c, A, entry_offset(c, at, mn->a_view, z, k->B, k->S, &lda));
    LLVMValueRef cz = ptr_at(c, C, entry_offset(c, mn->o, mn->c_view, z, k->B, k->S, &ldc));
    LLVMValueRef bz = Bm;
    if (b_batched(at, bt))
        bz = ptr_at(c, Bm, entry_offset(c, bt, mn->b_view, z, k->B, k->S, &ldb));
    else
        ldb = cg_dim(c, bt->dim[1], k->B, k->S);

    cg_loop lk;
    cg_for_begin(c, &lk, cg_i64(c, 0), npc, "kblock");
    LLVMValueRef pc = cg_mul(c, lk.iv, cg_i64(c, f->KC));
    LLVMValueRef kc = cg_min(c, cg_i64(c, f->KC), cg_sub(c, d.K, pc));
    LLVMValueRef first = LLVMBuildICmp(c->b, LLVMIntEQ, lk.iv, cg_i64(c, 0), "first");
    LLVMValueRef last = LLVMBuildICmp(c->b, LLVMIntEQ, lk.iv, cg_sub(c, npc, one), "last");

    /* pack B's panel: micro-panel jp holds columns n0 + jp*NR .. (unless pack_b did) */
    LLVMValueRef nend = cg_add(c, n0, nc);
    if (!Pk && tb) {
        cg_loop lj;
        cg_for_begin(c, &lj, cg_i64(c, 0), njp, "packb");
        LLVMValueRef j0 = cg_add(c, n0, cg_mul(c, lj.iv, cg_i64(c, f->NR)));
        LLVMValueRef dst =
            ptr_at(c, pb, cg_mul(c, lj.iv, cg_i64(c, (int64_t)f->KC * f->NR)));
        cg_pack_transposed(c, dst, cg_i64(c, f->NR), bz, ldb, j0, cg_sub(c, nend, j0), pc, kc);
        cg_for_end_outer(c, &lj);
    } else if (!Pk) {
        pack_copy(c, f, pb, f->NR, njp, bz, ldb, n0, nend, pc, kc, NULL);
    }

    if (grouped) { /* the group's units: one M block each */
        cg_for_begin(c, &lu, ua, ub, "unit");
        unit_blocks(c, &d, 0, lu.iv, &z, &mi, &ni);
    }
    LLVMValueRef m0 = cg_mul(c, mi, d.mc);
    LLVMValueRef mc = cg_min(c, d.mc, cg_sub(c, d.M, m0));
    LLVMValueRef nip = cg_div(c, cg_add(c, mc, cg_i64(c, f->MR - 1)), cg_i64(c, f->MR));

    /* pack A's block unless its rows are read in place */
    if (!f->a_direct && Sv)
        pack_a_summed(c, f, pa, nip, az, lda, m0, mc, pc, kc, cg_gep(c, c->t_f64, acc, m0),
                      Sv, n0, first, last);
    else if (!f->a_direct)
        pack_copy(c, f, pa, f->MR, nip, az, lda, m0, cg_add(c, m0, mc), pc, kc, NULL);

    /* the register tiles. B packed here (KC x NC in scratch, in L2): an A micro-panel
     * (in L1) against every B micro-panel. B in pack_b's panels (read from memory once
     * per M block): a B micro-panel against every A micro-panel, so that the weights
     * stream in at an even rate over the unit rather than in a burst at its first row of
     * tiles. Each tile computes the same whichever way round. */
    const mm_blk blk = {f, d.M, d.N, d.K, m0, n0, pc, az, lda, pa, Pk, pb};
    LLVMValueRef i0, mr, j0, nr;
    mm_a a;
    mm_b bj;
    cg_loop lo, lin;
    if (Pk) {
        cg_for_begin(c, &lo, cg_i64(c, 0), njp, "tile.j");
        bj = b_panel(c, &blk, lo.iv, &j0, &nr);
        cg_for_begin(c, &lin, cg_i64(c, 0), nip, "tile.i");
        a = a_panel(c, &blk, lin.iv, &i0, &mr);
    } else {
        cg_for_begin(c, &lo, cg_i64(c, 0), nip, "tile.i");
        a = a_panel(c, &blk, lo.iv, &i0, &mr);
        cg_for_begin(c, &lin, cg_i64(c, 0), njp, "tile.j");
        bj = b_panel(c, &blk, lin.iv, &j0, &nr);
    }
    micro_kernel(c, f, &a, &bj, kc, cz, ldc, i0, mr, j0, nr, first, tile, epi, last,
                 cg_mul(c, z, MN));
    cg_for_end_outer(c, &lin);
    cg_for_end_outer(c, &lo);

    if (grouped) {
        cg_for_end_outer(c, &lu);
        cg_for_end_outer(c, &lk);
        cg_for_end_outer(c, &lg);
    } else {
        cg_for_end_outer(c, &lk);
        cg_for_end_outer(c, &lu);
    }
    LLVMBuildRetVoid(c->b);
}

void cg_lower_matmul(cg_ctx *c, cg_kernel *k)
{
    mm_node mn = {.n = k->n,
                  .a = cg_operand_type(c, k, 0),
                  .b = cg_operand_type(c, k, 1),
                  .o = &k->n->type,
                  .a_arg = 1,
                  .b_arg = 2,
                  .p_arg = k->n->nin == 3 ? 3 : 0,
                  .c_arg = 0,
                  .s_arg = -1};
    lower_mm(c, k, &mn, NULL);
}

/* pack_b: one unit per 16-column panel j of op(w), the panel's K rows of 16 floats
 * (zero past N), by the GEMM's own packing: 8 x 8 register transposes when tb, row
 * copies otherwise. */
void cg_lower_pack_b(cg_ctx *c, cg_kernel *k)
{
    const ir_type *o = &k->n->type; /* [NP, K, 16] */
    const ir_type *w = cg_operand_type(c, k, 0);
    const int tb = k->n->a.tb;
    LLVMValueRef np = cg_i64(c, o->dim[0].c), K = cg_i64(c, o->dim[1].c);
    LLVMValueRef N = cg_i64(c, w->dim[tb ? 0 : 1].c), W = cg_i64(c, IR_PACK_W);
    LLVMBasicBlockRef body_bb = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, LLVMGetEntryBasicBlock(k->units));
    cg_units_return(c, k, np, cg_i64(c, 0));
    LLVMPositionBuilderAtEnd(c->b, body_bb);

    LLVMValueRef P = cg_arg(c, k, 0), src = cg_arg(c, k, 1);
    mm_cfg f = {0};
    f.V = c->vec;
    cg_loop lj;
    cg_for_begin(c, &lj, k->u0, k->u1, "panel");
    LLVMValueRef dst = ptr_at(c, P, cg_mul(c, lj.iv, cg_mul(c, K, W)));
    LLVMValueRef w0 = cg_mul(c, lj.iv, W);
    if (tb)
        cg_pack_transposed(c, dst, W, src, K, w0, cg_sub(c, N, w0), cg_i64(c, 0), K);
    else
        pack_copy(c, &f, dst, IR_PACK_W, cg_i64(c, 1), src, N, w0, N, cg_i64(c, 0), K,
                  NULL);
    cg_for_end_outer(c, &lj);
    LLVMBuildRetVoid(c->b);
}

/* ---- fused regions: a matmul and its epilogue ---- */

/* Region node v is the head split (ir_head_split) of region input x (< nin): x, else
 * -1. */
static int view_source(const ir_graph *r, int nin, int v)
{
    int rs, x;
    return v >= nin && ir_head_split(r, v, &rs, &x) && x < nin ? x : -1;
}

#define MM_MAX_STMTS                                                                       \
    32 /* a matmul region's statements: views, the matmul, its epilogue                    \
        */

/* The kernel argument that receives body statement i of fused node n (region graph r):
 * 0 for the last statement, 1 + nin + j for the region's further result j, else -1. */
static int stmt_arg(const cg_ctx *c, const ir_node *n, const ir_graph *r, int i)
{
    if (i == r->n - 1)
        return 0;
    int res[IR_MAX_RESULTS], nres = ir_region_results(c->g, (int)(n - c->g->nodes), res);
    for (int j = 0; j < nres; j++)
        if (c->g->nodes[res[j]].a.index == i)
            return 1 + n->nin + j;
    return -1;
}

/* The backward rule's bias gradient in a weight gradient's region: body statement s, a
 * reduce_sum to [M] of region input dy, where the matmul (dW = A^T B, ta = 1, 2-D, A a
 * region input) reads A = dy or a reshape of it (the same storage: runtime/plan.c
 * aliases reshapes), so the sums are taken as A is packed. Sets mn->s_arg. */
static int read_bias_sum(const cg_ctx *c, const ir_node *n, const ir_graph *r, int s,
                         mm_node *mn, bc_err *e)
{
    const ir_node *u = &r->nodes[s], *m = mn->n;
    int x = u->in[0], a = m->in[0];
    if (!m->a.ta || m->type.rank != 2 || mn->a->rank != 2 || m->nin != 2 || mn->a_view ||
        mn->b_view || mn->c_view || a >= n->nin)
        return bc_errf(e,
                       "fused: body statement %d (reduce_sum) needs a weight gradient: a "
                       "2-D matmul {ta=1} of region inputs",
                       s - n->nin + 1);
    const ir_node *outer_a = &c->g->nodes[n->in[a]];
    int same = x == a || (outer_a->op == IR_OP_RESHAPE && outer_a->in[0] == n->in[x]);
    if (x >= n->nin || !same || u->type.rank != 1 ||
        !ir_dim_eq(u->type.dim[0], m->type.dim[0]))
        return bc_errf(e,
                       "fused: body statement %d (reduce_sum) must sum the matmul's lhs "
                       "(or what it is a reshape of) to its columns [M]",
                       s - n->nin + 1);
    if ((mn->s_arg = stmt_arg(c, n, r, s)) < 0)
        return bc_errf(e,
                       "fused: body statement %d (reduce_sum) is computed for nothing: "
                       "neither the region's value nor a result",
                       s - n->nin + 1);
    return 0;
}

/* Reads the region of fused node n (region graph r) as a matmul (its operands possibly
 * through head views) and an epilogue or a head merge, and in a weight gradient's region
 * the bias gradient beside them (read_bias_sum), or says why it is not one. */
static int read_region(const cg_ctx *c, const ir_node *n, const ir_graph *r, mm_node *mn,
                       mm_epi *epi, bc_err *e)
{
    /* the body's statements but the bias gradient's reduce_sum (sum), in order */
    int k0 = n->nin, st[MM_MAX_STMTS], ns = 0, sum = -1;
    for (int i = k0; i < r->n; i++) {
        if (r->nodes[i].op == IR_OP_REDUCE_SUM && sum < 0)
            sum = i;
        else if (ns < MM_MAX_STMTS)
            st[ns++] = i;
        else
            return bc_errf(e, "fused: more than %d statements", MM_MAX_STMTS);
    }
    int p = 0; /* st[p]: the matmul */
    while (p < ns &&
           (r->nodes[st[p]].op == IR_OP_RESHAPE || r->nodes[st[p]].op == IR_OP_TRANSPOSE))
        p++;
    const ir_node *m = p < ns ? &r->nodes[st[p]] : NULL;
    if (!m || m->op != IR_OP_MATMUL)
        return bc_errf(e, "fused: the code generator lowers a matmul, with head views of "
                          "its operands and the elementwise ops or the head merge that "
                          "follow it; this body has %s where the matmul should be",
                       m ? ir_ops[m->op].name : "nothing");
    int xa = m->in[0] < k0 ? -1 : view_source(r, k0, m->in[0]);
    int xb = m->in[1] < k0 ? -1 : view_source(r, k0, m->in[1]);
    int views = (xa >= 0) + (xb >= 0 && m->in[1] != m->in[0]);
    if ((m->in[0] >= k0 && xa < 0) || (m->in[1] >= k0 && xb < 0) || p != 2 * views)
        return bc_errf(e, "fused: the statements before the matmul are not head views "
                          "(reshape [B, S, H] -> [B, S, nh, D], transpose [0, 2, 1, 3]) of "
                          "its operands");
    if (m->nin == 3 && (m->in[2] >= k0 || xb >= 0))
        return bc_errf(e, "fused: the matmul's packed rhs must be a region input");
    *mn = (mm_node){m,
                    &r->nodes[m->in[0]].type,
                    &r->nodes[m->in[1]].type,
                    &m->type,
                    1 + (xa >= 0 ? xa : m->in[0]),
                    1 + (xb >= 0 ? xb : m->in[1]),
                    m->nin == 3 ? 1 + m->in[2] : 0,
                    xa >= 0,
                    xb >= 0,
                    0,
                    0,
                    -1};
    if (check_mm(c, m, mn->a, mn->b, e))
        return -1;
    /* C: the last statement but the sum, written where the plan wants it */
    if ((mn->c_arg = stmt_arg(c, n, r, st[ns - 1])) < 0)
        return bc_errf(e,
                       "fused: body statement %d (%s) is computed for nothing: neither "
                       "the region's value nor a result",
                       st[ns - 1] - k0 + 1, ir_ops[r->nodes[st[ns - 1]].op].name);
    int res[IR_MAX_RESULTS], nres = ir_region_results(c->g, (int)(n - c->g->nodes), res);
    for (int j = 0; j < nres; j++) {
        int i = (int)c->g->nodes[res[j]].a.index;
        if (i != st[ns - 1] && i != sum)
            return bc_errf(e,
                           "fused: result %%%d reads body statement %d, which the matmul's "
                           "kernel does not write (only the matmul's chain and a bias "
                           "gradient leave it)",
                           res[j], i - k0 + 1);
    }
    epi->n = 0;
    /* the result merged back from heads: transpose [0, 2, 1, 3], reshape to [B, S, H] (or
     * [B S, H]: the same storage) */
    const ir_node *t = ns == p + 3 ? &r->nodes[st[p + 1]] : NULL;
    const ir_node *rs = ns == p + 3 ? &r->nodes[st[p + 2]] : NULL;
    if (t && ir_is_head_transpose(t) && t->in[0] == st[p] && rs->op == IR_OP_RESHAPE &&
        rs->in[0] == st[p + 1] && (rs->type.rank == 3 || rs->type.rank == 2) &&
        m->type.rank == 4) {
        mn->c_view = 1;
        return sum >= 0 ? read_bias_sum(c, n, r, sum, mn, e) : 0;
    }
    for (int q = p + 1; q < ns; q++) {
        int i = st[q];
        const ir_node *u = &r->nodes[i];
        epi_step *es = &epi->s[epi->n];
        if (epi->n == (int)(sizeof epi->s / sizeof epi->s[0]))
            return bc_errf(e, "fused: more than %d ops after the matmul", epi->n);
        memset(es, 0, sizeof *es);
        es->n = u;
        es->f = cg_map_formula(u->op);
        if (!es->f || !ir_type_eq(&u->type, &m->type))
            return bc_errf(e, "fused: body statement %d (%s) is not an elementwise op of the "
                              "matmul's shape",
                           i - k0 + 1, ir_ops[u->op].name);
        int chained = 0;
        for (int j = 0; j < u->nin; j++) {
            int x = u->in[j];
            const ir_type *xt = &r->nodes[x].type;
            es->arg[j] = 1 + x;
            es->type[j] = xt;
            if (x == st[q - 1]) {
                es->kind[j] = EPI_CHAIN;
                chained = 1;
            } else if (x >= k0) {
                return bc_errf(e, "fused: body statement %d reads %%%d, not the value before it",
                               i - k0 + 1, x);
            } else if (u->op == IR_OP_DROPOUT && j == 1) {
                es->kind[j] = EPI_SEED;
            } else if (xt->dtype != IR_F32) {
                return bc_errf(e, "fused: body statement %d reads an i64 operand",
                               i - k0 + 1);
            } else if (ir_type_eq(xt, &m->type)) {
                es->kind[j] = EPI_FULL;
            } else if (xt->rank == 0) {
                es->kind[j] = EPI_SCALAR;
            } else {
                /* a suffix of the shape (the shape rule) */
                es->kind[j] = xt->rank == 1 ? EPI_ROW : EPI_SUFFIX;
                if (j != 1 || !ir_dim_eq(xt->dim[xt->rank - 1], m->type.dim[m->type.rank - 1]))
                    return bc_errf(e, "fused: body statement %d broadcasts an operand that "
                                      "is not a suffix of the matmul's shape",
                                   i - k0 + 1);
            }
        }
        if (!chained)
            return bc_errf(e, "fused: body statement %d does not read the value before it",
                           i - k0 + 1);
        epi->n++;
    }
    return sum >= 0 ? read_bias_sum(c, n, r, sum, mn, e) : 0;
}

int cg_check_mm_region(const cg_ctx *c, const ir_node *n, const ir_graph *r, bc_err *e)
{
    mm_node mn;
    mm_epi epi;
    return read_region(c, n, r, &mn, &epi, e);
}

void cg_lower_mm_region(cg_ctx *c, cg_kernel *k, const ir_graph *r)
{
    bc_err e;
    mm_node mn;
    mm_epi epi;
    if (read_region(c, k->n, r, &mn, &epi, &e) == 0) /* cg_check_mm_region accepted it */
        lower_mm(c, k, &mn, &epi);
}
