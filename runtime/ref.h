/* ref.h: the reference kernels, one obviously correct loop nest per op, in double
 * precision. They are the oracle that generated kernels are tested against, and what
 * the reference interpreter (runtime/interp.c) runs. Shapes are given as flattened
 * extents; each pointer's comment gives its layout (row-major). Callers validate
 * indices and shapes; kernels do not fail. */
#ifndef BERTCC_RT_REF_H
#define BERTCC_RT_REF_H

#include <stdint.h>

/* The additive mask for keys with attention_mask == 0 (DESIGN.md §4). */
#define RT_MASK_NEG (-10000.0)

/* out (n, h) = table (v, h) [ids (n)] */
void ref_gather(double *out, const double *table, const int64_t *ids, int64_t n, int64_t h);

/* Suffix broadcast: out (na) = a (na) op b (nb) [i % nb]; na is a multiple of nb. */
void ref_add(double *out, const double *a, int64_t na, const double *b, int64_t nb);
void ref_mul(double *out, const double *a, int64_t na, const double *b, int64_t nb);

/* c (batch, m, n) = op(a) op(b), summed over k.
 *   a: (batch, m, k), or (batch, k, m) if ta
 *   b: (batch or 1, k, n), or (batch or 1, n, k) if tb; b_batched = 0 means b is shared
 *      by every batch entry. */
void ref_matmul(double *c, const double *a, const double *b, int64_t batch, int64_t m,
                int64_t n, int64_t k, int ta, int tb, int b_batched);

/* out = x permuted: out's dim i is x's dim perm[i]; shape is x's shape (rank dims). */
void ref_transpose(double *out, const double *x, int rank, const int64_t *shape,
                   const int *perm);

/* Elementwise, n elements. gelu: 0.5 x (1 + erf(x / sqrt 2));
 * gelu_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void ref_gelu(double *out, const double *x, int64_t n);
void ref_gelu_tanh(double *out, const double *x, int64_t n);
void ref_tanh(double *out, const double *x, int64_t n);
/* out (n) = x (n) * factor */
void ref_scale(double *out, const double *x, int64_t n, double factor);

/* out (rows, h) = (x - mean) / sqrt(var + eps) * gamma (h) + beta (h), biased variance. */
void ref_layernorm(double *out, const double *x, const double *gamma, const double *beta,
                   int64_t rows, int64_t h, double eps);

/* Row softmax of scale * x + (mask[b, j] == 0 ? RT_MASK_NEG : 0) over the last axis.
 * x, out: (batch, rows, t); mask: (batch, t) of 0/1 values. */
void ref_attn_softmax(double *out, const double *x, const int64_t *mask, int64_t batch,
                      int64_t rows, int64_t t, double scale);

/* out (outer, inner) = x (outer, len, inner) [:, index, :] */
void ref_select(double *out, const double *x, int64_t outer, int64_t len, int64_t inner,
                int64_t index);

/* Mean over rows with labels[i] != -100 of -log softmax(logits[i])[labels[i]];
 * 0 when no row counts. logits (n, c); labels (n), each -100 or in [0, c). */
double ref_cross_entropy(const double *logits, const int64_t *labels, int64_t n, int64_t c);

/* ---- dropout ---- */

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

/* out (n) = keep ? x / (1 - p) : 0 */
void ref_dropout(double *out, const double *x, int64_t n, double p, uint64_t seed,
                 uint64_t tag);

/* ---- backward kernels (the VJPs that passes/autodiff.c emits) ---- */

/* out (m) = sum over i of x (n / m, m) [i, :] */
void ref_reduce_sum(double *out, const double *x, int64_t n, int64_t m);

/* out (v, h) = 0, then out[ids[i], :] += dy (n, h) [i, :] */
void ref_scatter_add(double *out, const int64_t *ids, const double *dy, int64_t n,
                     int64_t v, int64_t h);

/* out (rows_out, inner) = x (rows_in, inner) followed by zero rows */
void ref_pad_rows(double *out, const double *x, int64_t rows_in, int64_t rows_out,
                  int64_t inner);

/* dx (n) = dy * gelu'(x), for the erf and the tanh forms */
void ref_gelu_grad(double *dx, const double *x, const double *dy, int64_t n);
void ref_gelu_tanh_grad(double *dx, const double *x, const double *dy, int64_t n);
/* dx (n) = dy * (1 - y^2), y = tanh(x) */
void ref_tanh_grad(double *dx, const double *y, const double *dy, int64_t n);

/* LayerNorm backward over rows of h: xhat = (x - mean) * rstd, g = dy * gamma,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); dgamma (h) = sum_rows dy * xhat. */
void ref_layernorm_dx(double *dx, const double *x, const double *gamma, const double *dy,
                      int64_t rows, int64_t h, double eps);
void ref_layernorm_dgamma(double *dgamma, const double *x, const double *dy, int64_t rows,
                          int64_t h, double eps);

/* dx (rows, t) = scale * y * (dy - sum_j dy * y) for y = softmax(scale * x + mask) */
void ref_softmax_grad(double *dx, const double *y, const double *dy, int64_t rows,
                      int64_t t, double scale);

/* dx (outer, len, inner) = 0 except dx[:, index, :] = dy (outer, inner) */
void ref_select_grad(double *dx, const double *dy, int64_t outer, int64_t len,
                     int64_t inner, int64_t index);

/* dlogits (n, c) = dloss * (softmax(logits) - onehot(label)) / count for rows with a
 * label, 0 for ignored rows (count = rows with a label; nothing when count = 0). */
void ref_cross_entropy_grad(double *dlogits, const double *logits, const int64_t *labels,
                            int64_t n, int64_t c, double dloss);

#endif
