/* ref.h: the reference kernels, one obviously correct loop nest per op, in double
 * precision. They are the oracle that generated kernels are tested against, and what
 * the reference interpreter (runtime/interp.c) runs. Each forward kernel stands next to
 * the backward kernels of its VJP (passes/autodiff.c), in the op table's order; an op
 * whose VJP is the op again (matmul, transpose, scale, dropout) has the one kernel for
 * both. Shapes are given as flattened extents, and every pointer's comment gives its
 * layout (row-major). Callers validate indices and shapes; kernels do not fail. */
#ifndef BERTCC_RT_REF_H
#define BERTCC_RT_REF_H

#include <stdint.h>

/* ---- gather; its VJP scatter_add ---- */

/* out[i, :] = table[ids[i], :]
 *   out (n, h), table (v, h), ids (n) each in [0, v) */
void ref_gather(double *out, const double *table, const int64_t *ids, int64_t n, int64_t h);

/* out = 0, then out[ids[i], :] += dy[i, :]
 *   out (v, h), ids (n) each in [0, v), dy (n, h) */
void ref_scatter_add(double *out, const int64_t *ids, const double *dy, int64_t n,
                     int64_t v, int64_t h);

/* ---- prefix_rows (a copy the interpreter makes); its VJP pad_rows ---- */

/* x followed by zero rows
 *   out (rows_out, inner), x (rows_in, inner), rows_in <= rows_out */
void ref_pad_rows(double *out, const double *x, int64_t rows_in, int64_t rows_out,
                  int64_t inner);

/* ---- add, mul (suffix broadcast); the VJP sums with reduce_sum ---- */

/* out[i] = a[i] op b[i % nb]
 *   out (na), a (na), b (nb) with na a multiple of nb */
void ref_add(double *out, const double *a, int64_t na, const double *b, int64_t nb);
void ref_mul(double *out, const double *a, int64_t na, const double *b, int64_t nb);

/* out[j] = sum over i of x[i, j]
 *   out (m), x (n / m, m) */
void ref_reduce_sum(double *out, const double *x, int64_t n, int64_t m);

/* ---- matmul (its VJP is two matmuls) ---- */

/* c = op(a) op(b), summed over k
 *   c (batch, m, n)
 *   a (batch, m, k), or (batch, k, m) if ta
 *   b (batch or 1, k, n), or (batch or 1, n, k) if tb; b_batched = 0 means b is shared
 *     by every batch entry */
void ref_matmul(double *c, const double *a, const double *b, int64_t batch, int64_t m,
                int64_t n, int64_t k, int ta, int tb, int b_batched);

/* ---- pack_b: op(w) in panels of w_ columns (the GEMM's layout; ir.h PACK_B) ---- */

/* out[j][p][l] = op(w)[p][j * pw + l], 0 where j * pw + l >= n
 *   out (ceil(n / pw), k, pw), w (k, n), or (n, k) if tb */
void ref_pack_b(double *out, const double *w, int64_t k, int64_t n, int tb, int64_t pw);
/* the inverse: b (k, n) from out above */
void ref_unpack_b(double *b, const double *packed, int64_t k, int64_t n, int64_t pw);

/* ---- transpose (its VJP is the inverse transpose) ---- */

/* out's dim i is x's dim perm[i]
 *   out (shape[perm[0]], ..., shape[perm[rank-1]]), x (shape[0], ..., shape[rank-1]),
 *   shape (rank), perm (rank) */
void ref_transpose(double *out, const double *x, int rank, const int64_t *shape,
                   const int *perm);

/* ---- gelu (erf form) ---- */

/* out = 0.5 x (1 + erf(x / sqrt 2))
 *   out (n), x (n) */
void ref_gelu(double *out, const double *x, int64_t n);

/* dx = dy * gelu'(x)
 *   dx (n), x (n), dy (n) */
void ref_gelu_grad(double *dx, const double *x, const double *dy, int64_t n);

/* ---- gelu (tanh form) ---- */

/* out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *   out (n), x (n) */
void ref_gelu_tanh(double *out, const double *x, int64_t n);

/* dx = dy * gelu_tanh'(x)
 *   dx (n), x (n), dy (n) */
void ref_gelu_tanh_grad(double *dx, const double *x, const double *dy, int64_t n);

/* ---- tanh ---- */

/* out = tanh(x)
 *   out (n), x (n) */
void ref_tanh(double *out, const double *x, int64_t n);

/* dx = dy * (1 - y^2), from the forward output y = tanh(x)
 *   dx (n), y (n), dy (n) */
void ref_tanh_grad(double *dx, const double *y, const double *dy, int64_t n);

/* ---- scale (its VJP is scale) ---- */

/* out = x * factor
 *   out (n), x (n) */
void ref_scale(double *out, const double *x, int64_t n, double factor);

/* ---- layernorm; its VJP layernorm_dx, layernorm_dgamma (and reduce_sum for beta) ---- */

/* Over each row of h, with biased variance:
 * out = (x - mean) / sqrt(var + eps) * gamma + beta
 *   out (rows, h), x (rows, h), gamma (h), beta (h) */
void ref_layernorm(double *out, const double *x, const double *gamma, const double *beta,
                   int64_t rows, int64_t h, double eps);

/* Over each row of h: xhat = (x - mean) * rstd, g = dy * gamma,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 *   dx (rows, h), x (rows, h), gamma (h), dy (rows, h) */
void ref_layernorm_dx(double *dx, const double *x, const double *gamma, const double *dy,
                      int64_t rows, int64_t h, double eps);

/* dgamma = sum over rows of dy * xhat
 *   dgamma (h), x (rows, h), dy (rows, h) */
void ref_layernorm_dgamma(double *dgamma, const double *x, const double *dy, int64_t rows,
                          int64_t h, double eps);

/* ---- attn_softmax; its VJP softmax_grad ---- */

/* The additive mask for keys with attention_mask == 0 (DESIGN.md §4). */
#define RT_MASK_NEG (-10000.0)

/* Softmax over the last axis of scale * x + (mask[b, j] == 0 ? RT_MASK_NEG : 0)
 *   out (batch, rows, t), x (batch, rows, t), mask (batch, t) of 0/1 values */
void ref_attn_softmax(double *out, const double *x, const int64_t *mask, int64_t batch,
                      int64_t rows, int64_t t, double scale);

/* dx = scale * y * (dy - sum_j dy * y), from the forward output y
 *   dx (rows, t), y (rows, t), dy (rows, t) */
void ref_softmax_grad(double *dx, const double *y, const double *dy, int64_t rows,
                      int64_t t, double scale);

/* ---- select; its VJP select_grad ---- */

/* out = x[:, index, :]
 *   out (outer, inner), x (outer, len, inner) */
void ref_select(double *out, const double *x, int64_t outer, int64_t len, int64_t inner,
                int64_t index);

/* dx = 0 except dx[:, index, :] = dy
 *   dx (outer, len, inner), dy (outer, inner) */
void ref_select_grad(double *dx, const double *dy, int64_t outer, int64_t len,
                     int64_t inner, int64_t index);

/* ---- cross_entropy; its VJP cross_entropy_grad ---- */

/* Mean over rows with labels[i] != -100 of -log softmax(logits[i])[labels[i]]; 0 when
 * no row counts.
 *   logits (n, c), labels (n) each -100 or in [0, c) */
double ref_cross_entropy(const double *logits, const int64_t *labels, int64_t n, int64_t c);

/* dlogits = dloss * (softmax(logits) - onehot(label)) / count for rows with a label, 0
 * for ignored rows (count = rows with a label; when it is 0, every row is ignored).
 *   dlogits (n, c), logits (n, c), labels (n) each -100 or in [0, c) */
void ref_cross_entropy_grad(double *dlogits, const double *logits, const int64_t *labels,
                            int64_t n, int64_t c, double dloss);

/* Class-weighted (PyTorch's weight=): sum of weights[labels[i]] * -log
 * softmax(logits[i])[labels[i]] over rows with a label, divided by the sum of their
 * weights; 0 when no row has a label or their weights sum to 0. Weights are not
 * checked (negative ones are the caller's business).
 *   logits (n, c), labels (n) each -100 or in [0, c), weights (c) */
double ref_cross_entropy_weighted(const double *logits, const int64_t *labels,
                                  const double *weights, int64_t n, int64_t c);

/* dlogits = dloss * weights[label] * (softmax(logits) - onehot(label)) / wsum for rows
 * with a label (wsum = the sum of their weights), 0 for ignored rows and everywhere
 * when wsum is 0.
 *   dlogits (n, c), logits (n, c), labels (n) each -100 or in [0, c), weights (c) */
void ref_cross_entropy_weighted_grad(double *dlogits, const double *logits,
                                     const int64_t *labels, const double *weights,
                                     int64_t n, int64_t c, double dloss);

/* ---- dropout (its VJP is dropout with the same mask) ---- */

/* Whether element i of dropout stream `tag` survives under `seed`: a counter-based
 * hash, so forward and backward draw the same mask without storing it, and the mask
 * does not depend on the thread count. Generated code computes the same function. */
static inline int ref_dropout_keep(uint64_t seed, uint64_t tag, uint64_t i, double p)
{
    uint64_t z = seed ^ (tag * 0x9e3779b97f4a7c15ULL) ^ (i * 0xd1b54a32d192ed03ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 40) * 0x1.0p-24 >= p; /* uniform in [0, 1) with 24 bits */
}

/* out = keep ? x / (1 - p) : 0
 *   out (n), x (n) */
void ref_dropout(double *out, const double *x, int64_t n, double p, uint64_t seed,
                 uint64_t tag);

#endif
