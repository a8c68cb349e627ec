/* ref.c: the reference kernels of ref.h, in double precision, each forward kernel next
 * to its backward kernels. Each op is one plain loop nest, written for obviousness
 * rather than speed: these are the oracle the generated kernels are checked against.
 * Only matmul is threaded, over its output rows, and every output element is still
 * summed in increasing k, so results do not depend on the thread count. */
#include "ref.h"

#include <math.h>

#include "tensor.h"

static void zero(double *x, int64_t n)
{
    // x (n)
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.0;
}

/* ---- gather, scatter_add ---- */

void ref_gather(double *out, const double *table, const int64_t *ids, int64_t n, int64_t h)
{
    // out (n, h), table (v, h), ids (n)
    for (int64_t i = 0; i < n; i++) {
        const double *row = table + ids[i] * h; // (h)
        for (int64_t j = 0; j < h; j++)
            out[i * h + j] = row[j];
    }
}

void ref_scatter_add(double *out, const int64_t *ids, const double *dy, int64_t n,
                     int64_t v, int64_t h)
{
    // out (v, h), ids (n), dy (n, h)
    zero(out, v * h);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < h; j++)
            out[ids[i] * h + j] += dy[i * h + j];
}

/* ---- pad_rows (prefix_rows' VJP) ---- */

void ref_pad_rows(double *out, const double *x, int64_t rows_in, int64_t rows_out,
                  int64_t inner)
{
    // out (rows_out, inner), x (rows_in, inner)
    for (int64_t i = 0; i < rows_out * inner; i++)
        out[i] = i < rows_in * inner ? x[i] : 0.0;
}

/* ---- add, mul, reduce_sum ---- */

void ref_add(double *out, const double *a, int64_t na, const double *b, int64_t nb)
{
    // out (na), a (na), b (nb) broadcast over a's leading dims
    for (int64_t i = 0; i < na; i++)
        out[i] = a[i] + b[i % nb];
}

void ref_mul(double *out, const double *a, int64_t na, const double *b, int64_t nb)
{
    // out (na), a (na), b (nb) broadcast over a's leading dims
    for (int64_t i = 0; i < na; i++)
        out[i] = a[i] * b[i % nb];
}

void ref_reduce_sum(double *out, const double *x, int64_t n, int64_t m)
{
    // out (m), x (n / m, m)
    zero(out, m);
    for (int64_t i = 0; i < n / m; i++)
        for (int64_t j = 0; j < m; j++)
            out[j] += x[i * m + j];
}

/* ---- matmul ---- */

void ref_pack_b(double *out, const double *w, int64_t k, int64_t n, int tb, int64_t pw)
{
    for (int64_t j = 0; j < (n + pw - 1) / pw; j++)
        for (int64_t p = 0; p < k; p++)
            for (int64_t l = 0; l < pw; l++) {
                int64_t col = j * pw + l;
                out[(j * k + p) * pw + l] = col >= n ? 0
                                            : tb     ? w[col * k + p]
                                                     : w[p * n + col];
            }
}

void ref_unpack_b(double *b, const double *packed, int64_t k, int64_t n, int64_t pw)
{
    for (int64_t p = 0; p < k; p++)
        for (int64_t col = 0; col < n; col++)
            b[p * n + col] = packed[((col / pw) * k + p) * pw + col % pw];
}

void ref_matmul(double *c, const double *a, const double *b, int64_t batch, int64_t m,
                int64_t n, int64_t k, int ta, int tb, int b_batched)
{
    // c (batch, m, n); a (batch, m, k) or (batch, k, m); b (batch or 1, k, n) or (.., n, k)
#ifdef _OPENMP
#pragma omp parallel for
#endif
    for (int64_t bi = 0; bi < batch * m; bi++) {
        int64_t z = bi / m, i = bi % m;
        const double *az = a + z * m * k;                   // (m, k) or (k, m)
        const double *bz = b + (b_batched ? z : 0) * k * n; // (k, n) or (n, k)
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < k; p++) {
                double av = ta ? az[p * m + i] : az[i * k + p];
                double bv = tb ? bz[j * k + p] : bz[p * n + j];
                s += av * bv;
            }
            c[bi * n + j] = s;
        }
    }
}

/* ---- transpose ---- */

void ref_transpose(double *out, const double *x, int rank, const int64_t *shape,
                   const int *perm)
{
    // x (shape[0], ..., shape[rank-1]); out (shape[perm[0]], ..., shape[perm[rank-1]]);
    // shape (rank), perm (rank)
    int64_t xstride[RT_MAX_RANK]; // element stride of each of x's dims
    int64_t oshape[RT_MAX_RANK];  // out's shape
    int64_t numel = 1;
    for (int d = rank - 1; d >= 0; d--) {
        xstride[d] = numel;
        numel *= shape[d];
    }
    for (int d = 0; d < rank; d++)
        oshape[d] = shape[perm[d]];
    for (int64_t o = 0; o < numel; o++) {
        // decode out's linear index into coordinates, last dim fastest
        int64_t rem = o, off = 0;
        for (int d = rank - 1; d >= 0; d--) {
            int64_t coord = rem % oshape[d];
            rem /= oshape[d];
            off += coord * xstride[perm[d]];
        }
        out[o] = x[off];
    }
}

/* ---- gelu, gelu_grad ---- */

void ref_gelu(double *out, const double *x, int64_t n)
{
    // out (n), x (n)
    for (int64_t i = 0; i < n; i++)
        out[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
}

void ref_gelu_grad(double *dx, const double *x, const double *dy, int64_t n)
{
    // dx (n), x (n), dy (n)
    for (int64_t i = 0; i < n; i++) {
        double cdf = 0.5 * (1.0 + erf(x[i] / sqrt(2.0)));
        double pdf = exp(-0.5 * x[i] * x[i]) / sqrt(2.0 * M_PI);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
}

/* ---- gelu_tanh, gelu_tanh_grad ---- */

#define GELU_TANH_C 0.044715

/* tanh(sqrt(2/pi) (v + c v^3)), the term both directions share */
static double gelu_tanh_t(double v)
{
    return tanh(sqrt(2.0 / M_PI) * (v + GELU_TANH_C * v * v * v));
}

void ref_gelu_tanh(double *out, const double *x, int64_t n)
{
    // out (n), x (n)
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        out[i] = 0.5 * v * (1.0 + gelu_tanh_t(v));
    }
}

void ref_gelu_tanh_grad(double *dx, const double *x, const double *dy, int64_t n)
{
    // dx (n), x (n), dy (n)
    const double k = sqrt(2.0 / M_PI), c = GELU_TANH_C;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], t = gelu_tanh_t(v);
        double d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * c * v * v);
        dx[i] = dy[i] * d;
    }
}

/* ---- tanh, tanh_grad ---- */

void ref_tanh(double *out, const double *x, int64_t n)
{
    // out (n), x (n)
    for (int64_t i = 0; i < n; i++)
        out[i] = tanh(x[i]);
}

void ref_tanh_grad(double *dx, const double *y, const double *dy, int64_t n)
{
    // dx (n), y (n), dy (n)
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * (1.0 - y[i] * y[i]);
}

/* ---- scale ---- */

void ref_scale(double *out, const double *x, int64_t n, double factor)
{
    // out (n), x (n)
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * factor;
}

/* ---- layernorm, layernorm_dx, layernorm_dgamma ---- */

/* mean and 1/sqrt(var + eps) of one row, biased variance */
static void row_stats(const double *x, int64_t h, double eps, double *mean, double *rstd)
{
    // x (h)
    double m = 0.0, v = 0.0;
    for (int64_t j = 0; j < h; j++)
        m += x[j];
    m /= (double)h;
    for (int64_t j = 0; j < h; j++)
        v += (x[j] - m) * (x[j] - m);
    v /= (double)h;
    *mean = m;
    *rstd = 1.0 / sqrt(v + eps);
}

void ref_layernorm(double *out, const double *x, const double *gamma, const double *beta,
                   int64_t rows, int64_t h, double eps)
{
    // out (rows, h), x (rows, h), gamma (h), beta (h)
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * h; // (h)
        double *outr = out + r * h;   // (h)
        double mean, rstd;
        row_stats(xr, h, eps, &mean, &rstd);
        for (int64_t j = 0; j < h; j++)
            outr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
    }
}

void ref_layernorm_dx(double *dx, const double *x, const double *gamma, const double *dy,
                      int64_t rows, int64_t h, double eps)
{
    // dx (rows, h), x (rows, h), gamma (h), dy (rows, h)
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * h, *dyr = dy + r * h; // (h), (h)
        double mean, rstd, mg = 0.0, mgx = 0.0;
        row_stats(xr, h, eps, &mean, &rstd);
        for (int64_t j = 0; j < h; j++) {
            double g = dyr[j] * gamma[j], xhat = (xr[j] - mean) * rstd;
            mg += g;
            mgx += g * xhat;
        }
        mg /= (double)h;
        mgx /= (double)h;
        for (int64_t j = 0; j < h; j++) {
            double g = dyr[j] * gamma[j], xhat = (xr[j] - mean) * rstd;
            dx[r * h + j] = rstd * (g - mg - xhat * mgx);
        }
    }
}

void ref_layernorm_dgamma(double *dgamma, const double *x, const double *dy, int64_t rows,
                          int64_t h, double eps)
{
    // dgamma (h), x (rows, h), dy (rows, h)
    zero(dgamma, h);
    for (int64_t r = 0; r < rows; r++) {
        double mean, rstd;
        row_stats(x + r * h, h, eps, &mean, &rstd);
        for (int64_t j = 0; j < h; j++)
            dgamma[j] += dy[r * h + j] * (x[r * h + j] - mean) * rstd;
    }
}

/* ---- attn_softmax, softmax_grad ---- */

void ref_attn_softmax(double *out, const double *x, const int64_t *mask, int64_t batch,
                      int64_t rows, int64_t t, double scale)
{
    // out (batch, rows, t), x (batch, rows, t), mask (batch, t)
    for (int64_t b = 0; b < batch; b++) {
        const int64_t *mb = mask + b * t; // (t)
        for (int64_t r = 0; r < rows; r++) {
            const double *xr = x + (b * rows + r) * t; // (t)
            double *outr = out + (b * rows + r) * t;   // (t)
            double maxv = -INFINITY;
            for (int64_t j = 0; j < t; j++) {
                outr[j] = scale * xr[j] + (mb[j] == 0 ? RT_MASK_NEG : 0.0);
                if (outr[j] > maxv)
                    maxv = outr[j];
            }
            double sum = 0.0;
            for (int64_t j = 0; j < t; j++) {
                outr[j] = exp(outr[j] - maxv);
                sum += outr[j];
            }
            for (int64_t j = 0; j < t; j++)
                outr[j] /= sum;
        }
    }
}

void ref_softmax_grad(double *dx, const double *y, const double *dy, int64_t rows,
                      int64_t t, double scale)
{
    // dx (rows, t), y (rows, t), dy (rows, t)
    for (int64_t r = 0; r < rows; r++) {
        double dot = 0.0;
        for (int64_t j = 0; j < t; j++)
            dot += dy[r * t + j] * y[r * t + j];
        for (int64_t j = 0; j < t; j++)
            dx[r * t + j] = scale * y[r * t + j] * (dy[r * t + j] - dot);
    }
}

/* ---- select, select_grad ---- */

void ref_select(double *out, const double *x, int64_t outer, int64_t len, int64_t inner,
                int64_t index)
{
    // out (outer, inner), x (outer, len, inner)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            out[o * inner + i] = x[(o * len + index) * inner + i];
}

void ref_select_grad(double *dx, const double *dy, int64_t outer, int64_t len,
                     int64_t inner, int64_t index)
{
    // dx (outer, len, inner), dy (outer, inner)
    zero(dx, outer * len * inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++)
            dx[(o * len + index) * inner + j] = dy[o * inner + j];
}

/* ---- cross_entropy, cross_entropy_grad ---- */

/* The row's largest logit, and the sum of exp(logit - largest) into *sum. */
static double row_max_sumexp(const double *row, int64_t c, double *sum)
{
    // row (c)
    double maxv = row[0];
    for (int64_t j = 1; j < c; j++)
        if (row[j] > maxv)
            maxv = row[j];
    double s = 0.0;
    for (int64_t j = 0; j < c; j++)
        s += exp(row[j] - maxv);
    *sum = s;
    return maxv;
}

double ref_cross_entropy(const double *logits, const int64_t *labels, int64_t n, int64_t c)
{
    // logits (n, c), labels (n)
    double total = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == -100)
            continue;
        const double *row = logits + i * c; // (c)
        double sum, maxv = row_max_sumexp(row, c, &sum);
        total += maxv + log(sum) - row[labels[i]];
        count++;
    }
    return count ? total / (double)count : 0.0;
}

void ref_cross_entropy_grad(double *dlogits, const double *logits, const int64_t *labels,
                            int64_t n, int64_t c, double dloss)
{
    // dlogits (n, c), logits (n, c), labels (n)
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        count += labels[i] != -100;
    for (int64_t i = 0; i < n; i++) {
        double *d = dlogits + i * c;      // (c)
        const double *l = logits + i * c; // (c)
        if (labels[i] == -100) {
            zero(d, c);
            continue;
        }
        double sum, mx = row_max_sumexp(l, c, &sum);
        for (int64_t j = 0; j < c; j++)
            d[j] = dloss * (exp(l[j] - mx) / sum - (j == labels[i])) / (double)count;
    }
}

double ref_cross_entropy_weighted(const double *logits, const int64_t *labels,
                                  const double *weights, int64_t n, int64_t c)
{
    // logits (n, c), labels (n), weights (c)
    double total = 0.0, wsum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == -100)
            continue;
        const double *row = logits + i * c; // (c)
        double sum, maxv = row_max_sumexp(row, c, &sum);
        double w = weights[labels[i]];
        total += w * (maxv + log(sum) - row[labels[i]]);
        wsum += w;
    }
    return wsum != 0.0 ? total / wsum : 0.0;
}

void ref_cross_entropy_weighted_grad(double *dlogits, const double *logits,
                                     const int64_t *labels, const double *weights,
                                     int64_t n, int64_t c, double dloss)
{
    // dlogits (n, c), logits (n, c), labels (n), weights (c)
    double wsum = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != -100)
            wsum += weights[labels[i]];
    for (int64_t i = 0; i < n; i++) {
        double *d = dlogits + i * c;      // (c)
        const double *l = logits + i * c; // (c)
        if (labels[i] == -100 || wsum == 0.0) {
            zero(d, c);
            continue;
        }
        double sum, mx = row_max_sumexp(l, c, &sum);
        double f = dloss * weights[labels[i]] / wsum;
        for (int64_t j = 0; j < c; j++)
            d[j] = f * (exp(l[j] - mx) / sum - (j == labels[i]));
    }
}

/* ---- dropout ---- */

void ref_dropout(double *out, const double *x, int64_t n, double p, uint64_t seed,
                 uint64_t tag)
{
    // out (n), x (n)
    for (int64_t i = 0; i < n; i++)
        out[i] = ref_dropout_keep(seed, tag, (uint64_t)i, p) ? x[i] / (1.0 - p) : 0.0;
}
