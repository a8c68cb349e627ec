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

#endif
