/* test_ref.c: checks the reference kernels (runtime/ref.c) against hand-computed values
 * and independently written computations, on odd shapes (1, primes, sizes that are not
 * multiples of 8 or 16) so that no accidental blocking assumption can hide. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "runtime/ref.h"
#include "util.h"

/* Deterministic values in [-1, 1) from a small LCG, so failures reproduce. */
static void fill(double *x, int64_t n, uint64_t seed)
{
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (double)(s >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
    }
}

static double *alloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    cr_assert_not_null(p);
    return p;
}

static void expect_near(double got, double want, double tol, const char *what, int64_t i)
{
    cr_expect(fabs(got - want) <= tol, "%s[%ld]: got %.17g, want %.17g", what, (long)i, got,
              want);
}

/* ---- matmul ---- */

/* Plain (rows, cols) -> (cols, rows) copy, written independently of ref_transpose. */
static void transpose2(double *dst, const double *src, int64_t rows, int64_t cols)
{
    // dst (cols, rows), src (rows, cols)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

/* Builds untransposed copies of a and b, then a plain i-j-p triple loop. */
static void naive_matmul(double *c, const double *a, const double *b, int64_t batch,
                         int64_t m, int64_t n, int64_t k, int ta, int tb, int b_batched)
{
    // c (batch, m, n)
    double *an = alloc(m * k); // (m, k)
    double *bn = alloc(k * n); // (k, n)
    for (int64_t z = 0; z < batch; z++) {
        const double *az = a + z * m * k;
        const double *bz = b + (b_batched ? z * k * n : 0);
        if (ta)
            transpose2(an, az, k, m);
        else
            for (int64_t i = 0; i < m * k; i++)
                an[i] = az[i];
        if (tb)
            transpose2(bn, bz, n, k);
        else
            for (int64_t i = 0; i < k * n; i++)
                bn[i] = bz[i];
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0.0;
                for (int64_t p = 0; p < k; p++)
                    s += an[i * k + p] * bn[p * n + j];
                c[(z * m + i) * n + j] = s;
            }
    }
    free(an);
    free(bn);
}

static void check_matmul(int64_t batch, int64_t m, int64_t n, int64_t k, int ta, int tb,
                         int b_batched)
{
    int64_t nb = b_batched ? batch : 1;
    double *a = alloc(batch * m * k);    // (batch, m, k) or (batch, k, m)
    double *b = alloc(nb * k * n);       // (nb, k, n) or (nb, n, k)
    double *c = alloc(batch * m * n);    // (batch, m, n)
    double *want = alloc(batch * m * n); // (batch, m, n)
    fill(a, batch * m * k, 1 + (uint64_t)(m * 31 + k));
    fill(b, nb * k * n, 2 + (uint64_t)(n * 17 + k));
    ref_matmul(c, a, b, batch, m, n, k, ta, tb, b_batched);
    naive_matmul(want, a, b, batch, m, n, k, ta, tb, b_batched);
    for (int64_t i = 0; i < batch * m * n; i++)
        cr_expect(fabs(c[i] - want[i]) <= 1e-12,
                  "matmul b=%ld m=%ld n=%ld k=%ld ta=%d tb=%d bb=%d: c[%ld] %.17g vs %.17g",
                  (long)batch, (long)m, (long)n, (long)k, ta, tb, b_batched, (long)i, c[i],
                  want[i]);
    free(a);
    free(b);
    free(c);
    free(want);
}

Test(ref, matmul_all_transposes_batched_and_shared)
{
    static const int64_t shapes[][4] = {
        {1, 1, 1, 1},  {1, 3, 5, 7}, {3, 7, 5, 13},
        {2, 13, 1, 3}, {5, 1, 7, 5}, {3, 17, 19, 23},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bb = 0; bb < 2; bb++)
                    check_matmul(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], ta,
                                 tb, bb);
}

Test(ref, matmul_hand_2x3_by_3x2)
{
    const double a[6] = {1, 2, 3, 4, 5, 6};     // (2, 3)
    const double b[6] = {7, 8, 9, 10, 11, 12};  // (3, 2)
    const double want[4] = {58, 64, 139, 154};  // (2, 2)
    const double at[6] = {1, 4, 2, 5, 3, 6};    // a^T stored (3, 2)
    const double bt[6] = {7, 9, 11, 8, 10, 12}; // b^T stored (2, 3)
    double c[4];                                // (2, 2)
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            ref_matmul(c, ta ? at : a, tb ? bt : b, 1, 2, 2, 3, ta, tb, 1);
            for (int i = 0; i < 4; i++)
                cr_expect_eq(c[i], want[i], "ta=%d tb=%d c[%d]=%g want %g", ta, tb, i, c[i],
                             want[i]);
        }
}

Test(ref, matmul_identity_leaves_matrix_unchanged)
{
    const int64_t m = 5, n = 13;
    double *x = alloc(3 * m * n); // (3, m, n)
    double *id = alloc(n * n);    // (n, n)
    double *c = alloc(3 * m * n); // (3, m, n)
    fill(x, 3 * m * n, 7);
    for (int64_t i = 0; i < n; i++)
        id[i * n + i] = 1.0;
    ref_matmul(c, x, id, 3, m, n, n, 0, 0, 0);
    for (int64_t i = 0; i < 3 * m * n; i++)
        cr_expect_eq(c[i], x[i], "x·I [%ld]", (long)i);
    ref_matmul(c, x, id, 3, m, n, n, 0, 1, 0);
    for (int64_t i = 0; i < 3 * m * n; i++)
        cr_expect_eq(c[i], x[i], "x·I^T [%ld]", (long)i);
    free(x);
    free(id);
    free(c);
}

Test(ref, matmul_bits_do_not_depend_on_thread_count)
{
#ifdef _OPENMP
    const int64_t batch = 3, m = 37, n = 29, k = 101;
    double *a = alloc(batch * m * k);  // (batch, m, k)
    double *b = alloc(k * n);          // (k, n), shared
    double *c1 = alloc(batch * m * n); // (batch, m, n)
    double *c4 = alloc(batch * m * n); // (batch, m, n)
    fill(a, batch * m * k, 41);
    fill(b, k * n, 43);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    ref_matmul(c1, a, b, batch, m, n, k, 0, 0, 0);
    omp_set_num_threads(5);
    ref_matmul(c4, a, b, batch, m, n, k, 0, 0, 0);
    omp_set_num_threads(saved);
    cr_expect(memcmp(c1, c4, (size_t)(batch * m * n) * sizeof(double)) == 0);
    free(a);
    free(b);
    free(c1);
    free(c4);
#else
    cr_skip_test("built without OpenMP");
#endif
}

/* ---- transpose ---- */

static int64_t numel(int rank, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= shape[d];
    return n;
}

static void check_roundtrip(int rank, const int64_t *shape, const int *perm)
{
    int64_t n = numel(rank, shape);
    int64_t oshape[8];
    int inv[8];
    for (int d = 0; d < rank; d++) {
        oshape[d] = shape[perm[d]];
        inv[perm[d]] = d;
    }
    double *x = alloc(n);    // shape
    double *y = alloc(n);    // oshape
    double *back = alloc(n); // shape
    fill(x, n, (uint64_t)n);
    ref_transpose(y, x, rank, shape, perm);
    ref_transpose(back, y, rank, oshape, inv);
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(back[i], x[i], "rank %d roundtrip [%ld]", rank, (long)i);
    free(x);
    free(y);
    free(back);
}

Test(ref, transpose_then_inverse_is_identity)
{
    const int64_t s2[2] = {3, 7};
    const int p2[][2] = {{0, 1}, {1, 0}};
    for (int i = 0; i < 2; i++)
        check_roundtrip(2, s2, p2[i]);
    const int64_t s3[3] = {3, 5, 7};
    const int p3[][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int i = 0; i < 6; i++)
        check_roundtrip(3, s3, p3[i]);
    const int64_t s4[4] = {2, 3, 5, 7};
    const int p4[][4] = {{0, 2, 1, 3}, {0, 2, 3, 1}, {3, 1, 0, 2}, {1, 3, 2, 0}};
    for (int i = 0; i < 4; i++)
        check_roundtrip(4, s4, p4[i]);
    const int64_t s1[4] = {1, 13, 1, 5};
    check_roundtrip(4, s1, p4[1]);
}

/* pack_b by hand: op(w) = [[1, 2, 3], [4, 5, 6]] (K = 2, N = 3) in panels of 2 columns:
 * panel 0 = columns 0, 1 row by row, panel 1 = column 2 and a zero; w given as [K, N]
 * and transposed ([N, K], tb); unpack gives op(w) back. */
Test(ref, pack_b_hand_2x3_in_panels_of_2)
{
    const double w[6] = {1, 2, 3, 4, 5, 6}, wt[6] = {1, 4, 2, 5, 3, 6};
    const double want[8] = {1, 2, 4, 5, 3, 0, 6, 0};
    for (int tb = 0; tb < 2; tb++) {
        double out[8] = {9, 9, 9, 9, 9, 9, 9, 9}, back[6] = {0};
        ref_pack_b(out, tb ? wt : w, 2, 3, tb, 2);
        for (int i = 0; i < 8; i++)
            cr_expect_eq(out[i], want[i], "tb=%d: [%d] = %g, want %g", tb, i, out[i],
                         want[i]);
        ref_unpack_b(back, out, 2, 3, 2);
        for (int i = 0; i < 6; i++)
            cr_expect_eq(back[i], w[i], "tb=%d: unpacked [%d]", tb, i);
    }
}

Test(ref, transpose_hand_2x3)
{
    const double x[6] = {1, 2, 3, 4, 5, 6};    // (2, 3)
    const double want[6] = {1, 4, 2, 5, 3, 6}; // (3, 2)
    const int64_t shape[2] = {2, 3};
    const int perm[2] = {1, 0};
    double y[6];
    ref_transpose(y, x, 2, shape, perm);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(y[i], want[i], "y[%d]", i);
}

Test(ref, transpose_rank4_matches_index_formula)
{
    // out[i0,i1,i2,i3] = x[i_{perm^-1}...]: check the BERT head split (B,S,H,D)->(B,H,S,D)
    // and the key transpose (B,H,S,D)->(B,H,D,S) element by element.
    const int64_t B = 2, S = 5, H = 3, D = 7;
    const int64_t shape[4] = {B, S, H, D};
    double *x = alloc(B * S * H * D); // (B, S, H, D)
    double *y = alloc(B * S * H * D);
    fill(x, B * S * H * D, 11);
    const int heads[4] = {0, 2, 1, 3};
    ref_transpose(y, x, 4, shape, heads); // (B, H, S, D)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t s = 0; s < S; s++)
                for (int64_t d = 0; d < D; d++)
                    cr_expect_eq(y[((b * H + h) * S + s) * D + d],
                                 x[((b * S + s) * H + h) * D + d]);
    const int keys[4] = {0, 2, 3, 1};
    ref_transpose(y, x, 4, shape, keys); // (B, H, D, S)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t s = 0; s < S; s++)
                    cr_expect_eq(y[((b * H + h) * D + d) * S + s],
                                 x[((b * S + s) * H + h) * D + d]);
    free(x);
    free(y);
}

/* ---- elementwise activations ---- */

Test(ref, gelu_hand_values)
{
    const double x[5] = {0.0, 1.0, -1.0, 40.0, -40.0};
    const double want[5] = {0.0, 0.8413447460685429, -0.15865525393145707, 40.0, 0.0};
    double y[5];
    ref_gelu(y, x, 5);
    for (int i = 0; i < 5; i++)
        expect_near(y[i], want[i], 1e-15, "gelu", i);
}

Test(ref, gelu_tanh_hand_values)
{
    const double x[5] = {0.0, 1.0, -1.0, 40.0, -40.0};
    const double want[5] = {0.0, 0.8411919906082768, 0.8411919906082768 - 1.0, 40.0, 0.0};
    double y[5];
    ref_gelu_tanh(y, x, 5);
    for (int i = 0; i < 5; i++)
        expect_near(y[i], want[i], 1e-12, "gelu_tanh", i);
}

Test(ref, tanh_hand_values)
{
    const double x[4] = {0.0, 1.0, -2.0, 50.0};
    const double want[4] = {0.0, 0.7615941559557649, -0.9640275800758169, 1.0};
    double y[4];
    ref_tanh(y, x, 4);
    for (int i = 0; i < 4; i++)
        expect_near(y[i], want[i], 1e-15, "tanh", i);
}

/* ---- layernorm ---- */

Test(ref, layernorm_rows_have_zero_mean_unit_variance)
{
    const int64_t rows = 7, h = 13;
    const double eps = 1e-5;
    double *x = alloc(rows * h); // (rows, h)
    double *y = alloc(rows * h); // (rows, h)
    double *one = alloc(h);      // (h)
    double *zero = alloc(h);     // (h)
    fill(x, rows * h, 3);
    for (int64_t j = 0; j < h; j++)
        one[j] = 1.0;
    ref_layernorm(y, x, one, zero, rows, h, eps);
    for (int64_t r = 0; r < rows; r++) {
        double mx = 0, vx = 0, my = 0, vy = 0;
        for (int64_t j = 0; j < h; j++) {
            mx += x[r * h + j] / h;
            my += y[r * h + j] / h;
        }
        for (int64_t j = 0; j < h; j++) {
            vx += (x[r * h + j] - mx) * (x[r * h + j] - mx) / h;
            vy += (y[r * h + j] - my) * (y[r * h + j] - my) / h;
        }
        expect_near(my, 0.0, 1e-14, "mean", r);
        expect_near(vy, 1.0 / (1.0 + eps / vx), 1e-12, "var", r);
    }
    free(x);
    free(y);
    free(one);
    free(zero);
}

Test(ref, layernorm_hand_1x4_with_gamma_beta)
{
    // x = [1, 2, 3, 4]: mean 2.5, biased var 1.25; eps = 0 for exact values.
    const double x[4] = {1, 2, 3, 4};
    const double one[4] = {1, 1, 1, 1}, zero[4] = {0, 0, 0, 0};
    const double gamma[4] = {2, -1, 0.5, 3}, beta[4] = {0.5, 1, -1, 0};
    const double r = 1.0 / sqrt(1.25);
    const double norm[4] = {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r};
    double y[4];
    ref_layernorm(y, x, one, zero, 1, 4, 0.0);
    for (int i = 0; i < 4; i++)
        expect_near(y[i], norm[i], 1e-15, "ln", i);
    ref_layernorm(y, x, gamma, beta, 1, 4, 0.0);
    for (int i = 0; i < 4; i++)
        expect_near(y[i], norm[i] * gamma[i] + beta[i], 1e-15, "ln affine", i);
    // eps enters under the square root: var 1.25 + eps 0.75 = 2.
    ref_layernorm(y, x, one, zero, 1, 4, 0.75);
    expect_near(y[0], -1.5 / sqrt(2.0), 1e-15, "ln eps", 0);
}

Test(ref, layernorm_constant_row_is_beta)
{
    const double x[5] = {3, 3, 3, 3, 3};
    const double gamma[5] = {1, 2, 3, 4, 5}, beta[5] = {-2, -1, 0, 1, 2};
    double y[5];
    ref_layernorm(y, x, gamma, beta, 1, 5, 1e-12);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(y[i], beta[i]);
}

/* ---- attention softmax ---- */

Test(ref, attn_softmax_rows_sum_to_one_and_mask_keys)
{
    const int64_t batch = 3, rows = 5, t = 7;
    double *x = alloc(batch * rows * t); // (batch, rows, t)
    double *y = alloc(batch * rows * t); // (batch, rows, t)
    int64_t mask[3 * 7];                 // (batch, t)
    fill(x, batch * rows * t, 5);
    for (int64_t i = 0; i < batch * t; i++)
        mask[i] = (i % 3) != 1;
    ref_attn_softmax(y, x, mask, batch, rows, t, 0.37);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0.0;
            for (int64_t j = 0; j < t; j++) {
                double v = y[(b * rows + r) * t + j];
                cr_expect(v >= 0.0 && v <= 1.0);
                if (mask[b * t + j] == 0)
                    cr_expect(v <= 1e-300, "masked weight %g", v);
                s += v;
            }
            expect_near(s, 1.0, 1e-14, "row sum", b * rows + r);
        }
    free(x);
    free(y);
}

Test(ref, attn_softmax_hand_values_with_scale)
{
    // scores [0, ln 2, ln 5] at scale 0.5 are [0, ln 2, ln 5] / 2: weights ∝ [1, √2, √5].
    const double x[3] = {0.0, log(2.0), log(5.0)}; // (1, 1, 3)
    const int64_t mask[3] = {1, 1, 1};             // (1, 3)
    const double z = 1.0 + sqrt(2.0) + sqrt(5.0);
    const double want[3] = {1.0 / z, sqrt(2.0) / z, sqrt(5.0) / z};
    double y[3];
    ref_attn_softmax(y, x, mask, 1, 1, 3, 0.5);
    for (int i = 0; i < 3; i++)
        expect_near(y[i], want[i], 1e-15, "softmax", i);
    // masking the last key: its weight is exp(-10000) relative, i.e. 0 in double.
    const int64_t mask2[3] = {1, 1, 0};
    ref_attn_softmax(y, x, mask2, 1, 1, 3, 0.5);
    const double z2 = 1.0 + sqrt(2.0);
    expect_near(y[0], 1.0 / z2, 1e-15, "masked softmax", 0);
    expect_near(y[1], sqrt(2.0) / z2, 1e-15, "masked softmax", 1);
    cr_expect_eq(y[2], 0.0);
}

Test(ref, attn_softmax_all_masked_row_equals_unmasked)
{
    const int64_t rows = 3, t = 13;
    double *x = alloc(rows * t);     // (1, rows, t)
    double *y = alloc(rows * t);     // (1, rows, t)
    double *want = alloc(rows * t);  // (1, rows, t)
    int64_t none[13] = {0}, all[13]; // (1, t)
    for (int i = 0; i < 13; i++)
        all[i] = 1;
    fill(x, rows * t, 9);
    ref_attn_softmax(y, x, none, 1, rows, t, 0.125);
    ref_attn_softmax(want, x, all, 1, rows, t, 0.125);
    for (int64_t i = 0; i < rows * t; i++) {
        cr_expect(isfinite(y[i]), "y[%ld] not finite", (long)i);
        expect_near(y[i], want[i], 1e-12, "all masked", i);
    }
    free(x);
    free(y);
    free(want);
}

Test(ref, attn_softmax_shift_invariant_and_large_inputs_stable)
{
    const int64_t t = 5;
    double x[5], xs[5], y[5], ys[5];
    const int64_t mask[5] = {1, 0, 1, 1, 1};
    fill(x, t, 13);
    for (int i = 0; i < 5; i++)
        xs[i] = x[i] + 1000.0;
    ref_attn_softmax(y, x, mask, 1, 1, t, 1.0);
    ref_attn_softmax(ys, xs, mask, 1, 1, t, 1.0);
    for (int i = 0; i < 5; i++) {
        cr_expect(isfinite(ys[i]));
        expect_near(ys[i], y[i], 1e-12, "shifted", i);
    }
}

/* ---- select, gather, add, mul ---- */

Test(ref, select_picks_one_index_of_middle_axis)
{
    const int64_t outer = 3, len = 5, inner = 7;
    double *x = alloc(outer * len * inner); // (outer, len, inner)
    double y[3 * 7];                        // (outer, inner)
    for (int64_t i = 0; i < outer * len * inner; i++)
        x[i] = (double)i;
    for (int64_t idx = 0; idx < len; idx++) {
        ref_select(y, x, outer, len, inner, idx);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++)
                cr_expect_eq(y[o * inner + i], (double)(o * len * inner + idx * inner + i));
    }
    // the pooler's case: CLS token of (B, S, H) with inner = H, index 0.
    const double seq[2 * 3 * 2] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; // (2, 3, 2)
    double cls[4];
    ref_select(cls, seq, 2, 3, 2, 0);
    const double want[4] = {1, 2, 7, 8};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(cls[i], want[i]);
    free(x);
}

Test(ref, gather_copies_table_rows)
{
    const double table[4 * 3] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32}; // (4, 3)
    const int64_t ids[5] = {3, 0, 3, 2, 1};                                    // (5)
    double out[5 * 3];                                                         // (5, 3)
    ref_gather(out, table, ids, 5, 3);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++)
            cr_expect_eq(out[i * 3 + j], 10.0 * ids[i] + j);
}

Test(ref, add_and_mul_broadcast_suffix)
{
    const double a[6] = {1, 2, 3, 4, 5, 6};         // (2, 3)
    const double b[3] = {10, 20, 30};               // (3)
    const double s[1] = {-2};                       // (1)
    const double sum[6] = {11, 22, 33, 14, 25, 36}; // a + b
    const double prod[6] = {10, 40, 90, 40, 100, 180};
    double y[6];
    ref_add(y, a, 6, b, 3);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(y[i], sum[i]);
    ref_mul(y, a, 6, b, 3);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(y[i], prod[i]);
    ref_add(y, a, 6, a, 6);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(y[i], 2 * a[i]);
    ref_mul(y, a, 6, s, 1);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(y[i], -2 * a[i]);
    // in place is allowed: out may alias a.
    double z[6] = {1, 2, 3, 4, 5, 6};
    ref_add(z, z, 6, b, 3);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(z[i], sum[i]);
}

/* ---- cross-entropy ---- */

Test(ref, cross_entropy_hand_two_classes)
{
    // softmax([0, ln 3]) = [1/4, 3/4]: label 1 costs -ln(3/4), label 0 costs ln 4.
    const double logits[2 * 2] = {0.0, log(3.0), 0.0, log(3.0)}; // (2, 2)
    const int64_t l1[1] = {1}, l0[1] = {0};
    expect_near(ref_cross_entropy(logits, l1, 1, 2), -log(0.75), 1e-15, "ce", 1);
    expect_near(ref_cross_entropy(logits, l0, 1, 2), log(4.0), 1e-15, "ce", 0);
    const int64_t both[2] = {1, 0};
    expect_near(ref_cross_entropy(logits, both, 2, 2), (log(4.0) - log(0.75)) / 2, 1e-15,
                "ce mean", 2);
}

Test(ref, cross_entropy_all_ignored_is_zero)
{
    const double logits[3 * 5] = {0}; // (3, 5)
    const int64_t labels[3] = {-100, -100, -100};
    cr_expect_eq(ref_cross_entropy(logits, labels, 3, 5), 0.0);
    cr_expect_eq(ref_cross_entropy(logits, labels, 0, 5), 0.0);
}

Test(ref, cross_entropy_large_logits_stable)
{
    // [1000, 1000 + ln 3]: same as [0, ln 3] after the shift.
    const double logits[2] = {1000.0, 1000.0 + log(3.0)}; // (1, 2)
    const int64_t l1[1] = {1};
    double v = ref_cross_entropy(logits, l1, 1, 2);
    cr_expect(isfinite(v));
    expect_near(v, -log(0.75), 1e-12, "ce large", 0);
    const double neg[3] = {-1000.0, 0.0, -1000.0}; // (1, 3)
    const int64_t l0[1] = {0};
    expect_near(ref_cross_entropy(neg, l0, 1, 3), 1000.0, 1e-9, "ce neg", 0);
}

Test(ref, cross_entropy_means_over_counted_rows_only)
{
    const int64_t n = 7, c = 13;
    double *logits = alloc(n * c); // (n, c)
    fill(logits, n * c, 21);
    const int64_t labels[7] = {3, -100, 12, 0, -100, 7, -100};
    // independent per-row value: -log(exp(l_y) / sum exp(l_j)), no shift needed for |l|<=1
    double total = 0.0;
    int count = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == -100)
            continue;
        double z = 0.0;
        for (int64_t j = 0; j < c; j++)
            z += exp(logits[i * c + j]);
        total += -log(exp(logits[i * c + labels[i]]) / z);
        count++;
    }
    expect_near(ref_cross_entropy(logits, labels, n, c), total / count, 1e-13, "ce mean",
                0);
    // ignored rows do not matter, whatever they hold.
    for (int64_t j = 0; j < c; j++)
        logits[1 * c + j] = 1e300;
    expect_near(ref_cross_entropy(logits, labels, n, c), total / count, 1e-13, "ce ignored",
                1);
    free(logits);
}

/* ---- class-weighted cross-entropy (PyTorch's weight=) ---- */

/* Three classes (odd C), an ignored row between two labelled ones:
 *   row 0: [0, 0, 0], label 2    -> loss ln 3,      weight w[2] = 0.5
 *   row 1: ignored (any values)
 *   row 2: [0, ln 2, ln 3], label 0 -> loss ln 6,   weight w[0] = 2
 * weighted mean = (0.5 ln 3 + 2 ln 6) / 2.5 */
Test(ref, cross_entropy_weighted_hand_three_classes)
{
    const double logits[3 * 3] = {0, 0, 0, 7, -7, 1e300, 0, log(2.0), log(3.0)}; // (3, 3)
    const int64_t labels[3] = {2, -100, 0};
    const double w[3] = {2.0, 1.0, 0.5}; // (3)
    double want = (0.5 * log(3.0) + 2.0 * log(6.0)) / 2.5;
    expect_near(ref_cross_entropy_weighted(logits, labels, w, 3, 3), want, 1e-15, "wce", 0);
    // the unweighted mean differs, so the weights are used
    cr_expect(fabs(ref_cross_entropy(logits, labels, 3, 3) - want) > 1e-3);
    // one labelled row alone: its own loss, whatever its weight
    const int64_t one[3] = {-100, -100, 0};
    expect_near(ref_cross_entropy_weighted(logits, one, w, 3, 3), log(6.0), 1e-15, "wce",
                1);

    /* dlogits = dloss w[y] (softmax - onehot) / 2.5; dloss = 3:
     *   row 0: 3 * 0.5 / 2.5 * ([1/3, 1/3, 1/3] - [0, 0, 1])
     *   row 2: 3 * 2 / 2.5 * ([1/6, 2/6, 3/6] - [1, 0, 0]) */
    double d[9];
    ref_cross_entropy_weighted_grad(d, logits, labels, w, 3, 3, 3.0);
    const double f0 = 3.0 * 0.5 / 2.5, f2 = 3.0 * 2.0 / 2.5;
    const double want_d[9] = {f0 / 3,    f0 / 3, f0 * (1.0 / 3 - 1), 0,
                              0,         0,      f2 * (1.0 / 6 - 1), f2 * 2 / 6,
                              f2 * 3 / 6};
    for (int i = 0; i < 9; i++)
        expect_near(d[i], want_d[i], 1e-15, "dwce", i);
}

/* All weights 1 give the unweighted loss, bit for bit (1 * loss, and a weight sum that
 * counts exactly); scaling every weight by 3 changes nothing but rounding. */
Test(ref, cross_entropy_weighted_by_ones_is_the_unweighted_and_scale_free)
{
    const int64_t n = 11, c = 7;
    double *logits = alloc(n * c), *w = alloc(c), *w3 = alloc(c); // (n, c), (c), (c)
    double *d = alloc(n * c), *d1 = alloc(n * c);                 // (n, c)
    fill(logits, n * c, 5);
    const int64_t labels[11] = {6, 0, -100, 3, 3, -100, 1, 5, 2, -100, 4};
    for (int64_t j = 0; j < c; j++)
        w[j] = 1.0;
    cr_expect_eq(ref_cross_entropy_weighted(logits, labels, w, n, c),
                 ref_cross_entropy(logits, labels, n, c));
    ref_cross_entropy_weighted_grad(d, logits, labels, w, n, c, 0.7);
    ref_cross_entropy_grad(d1, logits, labels, n, c, 0.7);
    for (int64_t i = 0; i < n * c; i++)
        expect_near(d[i], d1[i], 1e-16, "grad by ones", i);
    fill(w, c, 6);
    for (int64_t j = 0; j < c; j++) {
        w[j] = 1.5 + w[j]; // in [0.5, 2.5)
        w3[j] = 3 * w[j];
    }
    double l = ref_cross_entropy_weighted(logits, labels, w, n, c);
    expect_near(ref_cross_entropy_weighted(logits, labels, w3, n, c), l, 1e-14, "scaled",
                0);
    cr_expect(fabs(l - ref_cross_entropy(logits, labels, n, c)) > 1e-6);
    free(logits);
    free(w);
    free(w3);
    free(d);
    free(d1);
}

/* No labelled row, or labelled rows whose weights sum to 0: loss 0 and gradient 0 (where
 * PyTorch would divide 0 by 0). A zero weight drops its rows from the mean. */
Test(ref, cross_entropy_weighted_zero_cases)
{
    const int64_t c = 5;
    double logits[3 * 5]; // (3, 5)
    fill(logits, 15, 9);
    const double w[5] = {0.0, 2.0, 0.0, 1.0, 0.25};
    const int64_t ignored[3] = {-100, -100, -100}, zero_w[3] = {0, -100, 2};
    double d[15];
    for (int k = 0; k < 2; k++) {
        const int64_t *lab = k ? zero_w : ignored;
        cr_expect_eq(ref_cross_entropy_weighted(logits, lab, w, 3, c), 0.0, "case %d", k);
        for (int i = 0; i < 15; i++)
            d[i] = 1.0;
        ref_cross_entropy_weighted_grad(d, logits, lab, w, 3, c, 1.0);
        for (int i = 0; i < 15; i++)
            cr_expect_eq(d[i], 0.0, "case %d: d[%d] = %g", k, i, d[i]);
    }
    cr_expect_eq(ref_cross_entropy_weighted(logits, ignored, w, 0, c), 0.0);
    // rows 0 (class 0, weight 0) and 2 (class 3) count; row 0 adds nothing
    const int64_t mixed[3] = {0, -100, 3}, only2[3] = {-100, -100, 3};
    expect_near(ref_cross_entropy_weighted(logits, mixed, w, 3, c),
                ref_cross_entropy(logits, only2, 3, c), 1e-15, "zero weight", 0);
    ref_cross_entropy_weighted_grad(d, logits, mixed, w, 3, c, 1.0);
    for (int i = 0; i < 10; i++)
        cr_expect_eq(d[i], 0.0, "d[%d] = %g", i, d[i]);
    cr_expect_neq(d[10], 0.0);
}

/* The weighted gradient is the derivative of the weighted loss (central differences). */
Test(ref, cross_entropy_weighted_grad_is_the_derivative)
{
    const int64_t n = 5, c = 3;
    double logits[15], d[15];
    fill(logits, 15, 13);
    const int64_t labels[5] = {1, -100, 2, 0, 2};
    const double w[3] = {0.3, 1.7, 2.9};
    ref_cross_entropy_weighted_grad(d, logits, labels, w, n, c, 1.25);
    for (int i = 0; i < 15; i++) {
        double x0 = logits[i], h = 1e-6;
        logits[i] = x0 + h;
        double lp = ref_cross_entropy_weighted(logits, labels, w, n, c);
        logits[i] = x0 - h;
        double lm = ref_cross_entropy_weighted(logits, labels, w, n, c);
        logits[i] = x0;
        expect_near(d[i], 1.25 * (lp - lm) / (2 * h), 1e-9, "fd", i);
    }
}
