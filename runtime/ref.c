/* ref.c: the reference kernels of ref.h, in double precision. Each op is one plain loop
 * nest, written for obviousness rather than speed: these are the oracle the generated
 * kernels are checked against. Only matmul is threaded, over its output rows, and every
 * output element is still summed in increasing k, so results do not depend on the
 * thread count. */
#include "ref.h"

#include <math.h>

#include "tensor.h"

void ref_gather(double *out, const double *table, const int64_t *ids, int64_t n, int64_t h)
{
    // out (n, h), table (v, h), ids (n)
    for (int64_t i = 0; i < n; i++) {
        const double *row = table + ids[i] * h; // (h)
        for (int64_t j = 0; j < h; j++)
            out[i * h + j] = row[j];
    }
}

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

void ref_transpose(double *out, const double *x, int rank, const int64_t *shape,
                   const int *perm)
{
    // x (shape[0], ..., shape[rank-1]); out (shape[perm[0]], ..., shape[perm[rank-1]])
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

void ref_gelu(double *out, const double *x, int64_t n)
{
    // out (n), x (n)
    for (int64_t i = 0; i < n; i++)
        out[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
}

void ref_gelu_tanh(double *out, const double *x, int64_t n)
{
    // out (n), x (n)
    const double c = sqrt(2.0 / M_PI);
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        out[i] = 0.5 * v * (1.0 + tanh(c * (v + 0.044715 * v * v * v)));
    }
}

void ref_tanh(double *out, const double *x, int64_t n)
{
    // out (n), x (n)
    for (int64_t i = 0; i < n; i++)
        out[i] = tanh(x[i]);
}

void ref_layernorm(double *out, const double *x, const double *gamma, const double *beta,
                   int64_t rows, int64_t h, double eps)
{
    // out (rows, h), x (rows, h), gamma (h), beta (h)
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * h; // (h)
        double *outr = out + r * h;   // (h)
        double mean = 0.0;
        for (int64_t j = 0; j < h; j++)
            mean += xr[j];
        mean /= (double)h;
        double var = 0.0;
        for (int64_t j = 0; j < h; j++) {
            double d = xr[j] - mean;
            var += d * d;
        }
        var /= (double)h;
        double rstd = 1.0 / sqrt(var + eps);
        for (int64_t j = 0; j < h; j++)
            outr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
    }
}

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

void ref_select(double *out, const double *x, int64_t outer, int64_t len, int64_t inner,
                int64_t index)
{
    // out (outer, inner), x (outer, len, inner)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            out[o * inner + i] = x[(o * len + index) * inner + i];
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
        double maxv = row[0];
        for (int64_t j = 1; j < c; j++)
            if (row[j] > maxv)
                maxv = row[j];
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++)
            sum += exp(row[j] - maxv);
        total += maxv + log(sum) - row[labels[i]];
        count++;
    }
    return count ? total / (double)count : 0.0;
}

/* out (n) = x (n) * factor */
void ref_scale(double *out, const double *x, int64_t n, double factor)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * factor;
}

/* ---- dropout ---- */

void ref_dropout(double *out, const double *x, int64_t n, double p, uint64_t seed,
                 uint64_t tag)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = ref_dropout_keep(seed, tag, (uint64_t)i, p) ? x[i] / (1.0 - p) : 0.0;
}

/* ---- backward kernels ---- */

void ref_reduce_sum(double *out, const double *x, int64_t n, int64_t m)
{
    for (int64_t j = 0; j < m; j++)
        out[j] = 0.0;
    for (int64_t i = 0; i < n / m; i++)
        for (int64_t j = 0; j < m; j++)
            out[j] += x[i * m + j];
}

void ref_scatter_add(double *out, const int64_t *ids, const double *dy, int64_t n,
                     int64_t v, int64_t h)
{
    for (int64_t i = 0; i < v * h; i++)
        out[i] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < h; j++)
            out[ids[i] * h + j] += dy[i * h + j];
}

void ref_pad_rows(double *out, const double *x, int64_t rows_in, int64_t rows_out,
                  int64_t inner)
{
    for (int64_t i = 0; i < rows_out * inner; i++)
        out[i] = i < rows_in * inner ? x[i] : 0.0;
}

void ref_gelu_grad(double *dx, const double *x, const double *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double cdf = 0.5 * (1.0 + erf(x[i] / sqrt(2.0)));
        double pdf = exp(-0.5 * x[i] * x[i]) / sqrt(2.0 * M_PI);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
}

void ref_gelu_tanh_grad(double *dx, const double *x, const double *dy, int64_t n)
{
    const double k = sqrt(2.0 / M_PI), c = 0.044715;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], t = tanh(k * (v + c * v * v * v));
        double d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * c * v * v);
        dx[i] = dy[i] * d;
    }
}

void ref_tanh_grad(double *dx, const double *y, const double *dy, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * (1.0 - y[i] * y[i]);
}

/* mean and 1/sqrt(var + eps) of one row (x (h)) */
static void row_stats(const double *x, int64_t h, double eps, double *mean, double *rstd)
{
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

void ref_layernorm_dx(double *dx, const double *x, const double *gamma, const double *dy,
                      int64_t rows, int64_t h, double eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * h, *dyr = dy + r * h;
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
    for (int64_t j = 0; j < h; j++)
        dgamma[j] = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        double mean, rstd;
        row_stats(x + r * h, h, eps, &mean, &rstd);
        for (int64_t j = 0; j < h; j++)
            dgamma[j] += dy[r * h + j] * (x[r * h + j] - mean) * rstd;
    }
}

void ref_softmax_grad(double *dx, const double *y, const double *dy, int64_t rows,
                      int64_t t, double scale)
{
    for (int64_t r = 0; r < rows; r++) {
        double dot = 0.0;
        for (int64_t j = 0; j < t; j++)
            dot += dy[r * t + j] * y[r * t + j];
        for (int64_t j = 0; j < t; j++)
            dx[r * t + j] = scale * y[r * t + j] * (dy[r * t + j] - dot);
    }
}

void ref_select_grad(double *dx, const double *dy, int64_t outer, int64_t len,
                     int64_t inner, int64_t index)
{
    for (int64_t i = 0; i < outer * len * inner; i++)
        dx[i] = 0.0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++)
            dx[(o * len + index) * inner + j] = dy[o * inner + j];
}

void ref_cross_entropy_grad(double *dlogits, const double *logits, const int64_t *labels,
                            int64_t n, int64_t c, double dloss)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        count += labels[i] != -100;
    for (int64_t i = 0; i < n; i++) {
        double *d = dlogits + i * c;
        const double *l = logits + i * c;
        if (labels[i] == -100) {
            for (int64_t j = 0; j < c; j++)
                d[j] = 0.0;
            continue;
        }
        double mx = l[0], sum = 0.0;
        for (int64_t j = 1; j < c; j++)
            mx = l[j] > mx ? l[j] : mx;
        for (int64_t j = 0; j < c; j++)
            sum += exp(l[j] - mx);
        for (int64_t j = 0; j < c; j++)
            d[j] = dloss * (exp(l[j] - mx) / sum - (j == labels[i])) / (double)count;
    }
}
