/* test_codegen_matmul.c: the generated matmul (codegen/matmul.c) against the reference
 * interpreter, on odd shapes (1, primes, sizes one off the register and cache tiles),
 * every (ta, tb), batched and shared b, symbolic B and S, 1 and 2 threads; the
 * bit-identity of 1-, 2- and 3-thread results; and weights read from pack_b's panels (the
 * pack rule) against the same matmul unpacked, bit for bit.
 *
 * Tolerance. The reference computes in double and rounds once; the kernel runs one f32
 * fma chain per element over k, each step rounding with relative error <= u = 2^-24.
 * With inputs uniform in [-1, 1) the partial sums grow like sqrt(k / 9), so the
 * accumulated error of an element is about u * K / 7 (random-signed roundings of the
 * partial sums) and its largest value over the output a few times that, while
 * max |ref| is about sqrt(K). Relative to max |ref| that is ~u * sqrt(K) / 2; we allow
 * rtol = 8 u sqrt(K) (about 15x that) plus atol 1e-6 for the tiny sums of K = 1 .. 3.
 * A dropped or doubled term (|a b| ~ 0.3) is > 50x above this bound at every K here. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../codegen/engine.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "tests/util.h"

/* The AVX-512 blocking of codegen/matmul.c (register tile MR x NR, K block KC, unit
 * tile MC x NC); the shapes below straddle each. */
enum { MR = 8, NR = 48, KC = 256, MC = 256, NC = 384 };

static double tol(int64_t K)
{
    return 8.0 * ldexp(1.0, -24) * sqrt((double)(K > 0 ? K : 1));
}

/* b is a weight (a param) when its shape is constant, else an activation (an input). */
static int b_is_param(int br, const ir_dim *bd)
{
    for (int i = 0; i < br; i++)
        if (!ir_dim_is_const(bd[i]))
            return 0;
    return 1;
}

/* A matmul graph: input "ids" [B, S] binds the sizes; "a" and "b" of the given types;
 * output "y". */
static ir_graph *mm_graph(int ar, const ir_dim *ad, int br, const ir_dim *bd, int ta,
                          int tb)
{
    ir_graph *g = ir_graph_new("mm");
    ir_dim bs[2] = {IR_DIM_B, IR_DIM_S};
    ir_input(g, "ids", ir_type_make(IR_I64, 2, bs));
    int a = ir_input(g, "a", ir_type_make(IR_F32, ar, ad));
    ir_type btype = ir_type_make(IR_F32, br, bd);
    int b = b_is_param(br, bd) ? ir_param(g, "b", btype) : ir_input(g, "b", btype);
    ir_set_output(g, "y", ir_matmul(g, a, b, ta, tb));
    return g;
}

static void add_rand(rt_tensor_list *l, const char *name, int r, const ir_dim *d, int64_t B,
                     int64_t S, uint64_t seed)
{
    int64_t shape[IR_MAX_RANK];
    for (int i = 0; i < r; i++)
        shape[i] = ir_dim_eval(d[i], B, S);
    tu_add_rand_f32(l, name, r, shape, -1, 1, seed);
}

/* Checks y = matmul(a, b) at sizes B, S with 1 and 2 threads. K is the contraction
 * size (for the tolerance). */
static void check_mm(int ar, const ir_dim *ad, int br, const ir_dim *bd, int ta, int tb,
                     int64_t B, int64_t S, int64_t K, uint64_t seed)
{
    ir_graph *g = mm_graph(ar, ad, br, bd, ta, tb);
    cr_assert(!g->failed, "building the graph: %s", g->err.msg);
    rt_tensor_list p, in;
    rt_list_init(&p);
    rt_list_init(&in);
    int64_t bs[2] = {B, S};
    tu_add_rand_i64(&in, "ids", 2, bs, 0, 1, seed);
    add_rand(&in, "a", ar, ad, B, S, seed + 1);
    add_rand(b_is_param(br, bd) ? &p : &in, "b", br, bd, B, S, seed + 2);
    char msg[512], ts[160];
    ir_type_str(&g->nodes[g->outs[0].value].type, ts, sizeof ts);
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(tu_jit_vs_ref(g, &p, &in, threads, tol(K), 1e-6, msg, sizeof msg) == 0,
                  "ta=%d tb=%d -> %s at B=%lld S=%lld, threads %d: %s", ta, tb, ts,
                  (long long)B, (long long)S, threads, msg);
    ir_graph_free(g);
    rt_list_free(&p);
    rt_list_free(&in);
}

/* a [M, K] (or [K, M]) x b [K, N] (or [N, K]), constant sizes. */
static void check_2d(int64_t M, int64_t N, int64_t K, int ta, int tb, uint64_t seed)
{
    ir_dim ad[2] = {ir_dconst(ta ? K : M), ir_dconst(ta ? M : K)};
    ir_dim bd[2] = {ir_dconst(tb ? N : K), ir_dconst(tb ? K : N)};
    check_mm(2, ad, 2, bd, ta, tb, 1, 1, K, seed);
}

Test(codegen_matmul, all_transposes_on_ones_and_primes)
{
    static const int64_t shapes[][3] = {{1, 1, 1},   {1, 5, 7},    {7, 1, 5},
                                        {5, 7, 1},   {3, 5, 7},    {13, 31, 37},
                                        {97, 3, 13}, {5, 131, 97}, {37, 97, 131}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            check_2d(shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1, 10 * s + t);
}

Test(codegen_matmul, sizes_one_off_the_register_tile)
{
    static const int64_t shapes[][3] = {{MR - 1, NR - 1, 3}, {MR + 1, NR + 1, 5},
                                        {MR, NR, 7},         {2 * MR + 1, 2 * NR - 1, 9},
                                        {MR, 16, 4},         {MR, 17, 8},
                                        {MR + 1, 15, 15}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            check_2d(shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1,
                     100 + 10 * s + t);
}

Test(codegen_matmul, sizes_one_off_the_cache_blocks)
{
    /* K across KC (the chain carried through C), M across MC, N across NC */
    static const int64_t shapes[][3] = {
        {9, 49, KC - 1},  {7, 47, KC + 1}, {3, 5, 2 * KC + 3}, {MC - 1, 5, 3},
        {MC + 1, 13, 17}, {5, NC - 1, 3},  {3, NC + 1, 19},    {MC + 1, NC + 1, KC + 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            check_2d(shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1,
                     200 + 10 * s + t);
}

/* ---- batched b: rank 3 and 4 with symbolic B and S ---- */

static const ir_dim dB = {1, 1, 0}, dS = {1, 0, 1};

static ir_dim dc(int64_t c)
{
    return ir_dconst(c);
}

Test(codegen_matmul, batched_rank3_with_symbolic_batch_and_sequence)
{
    /* a [B, S, K] or [B, K, S] x b [B, K, N] or [B, N, K]: M = S, every (ta, tb) */
    static const int64_t cases[][3] = {
        {1, 1, 1}, {3, 7, 5}, {2, 13, 37}, {3, MR + 1, NR - 1}, {2, 49, 3}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int t = 0; t < 4; t++) {
            int ta = t >> 1, tb = t & 1;
            int64_t B = cases[i][0], S = cases[i][1], N = cases[i][2], K = 2 * N + 1;
            ir_dim ad[3] = {dB, ta ? dc(K) : dS, ta ? dS : dc(K)};
            ir_dim bd[3] = {dB, tb ? dc(N) : dc(K), tb ? dc(K) : dc(N)};
            check_mm(3, ad, 3, bd, ta, tb, B, S, K, 300 + 10 * i + t);
        }
    /* the contraction over S: a [B, M, S] x b [B, S, N] */
    for (int64_t S = 1; S <= 97; S += 48) {
        ir_dim ad[3] = {dB, dc(5), dS}, bd[3] = {dB, dS, dc(NR + 1)};
        check_mm(3, ad, 3, bd, 0, 0, 2, S, S, 390 + S);
    }
}

Test(codegen_matmul, attention_shapes_rank4_forward_and_backward)
{
    /* q, k, v, dctx [B, H, S, D]; p, dp [B, H, S, S] */
    static const int64_t cases[][4] = {
        {1, 1, 1, 1}, {2, 3, 7, 5}, {1, 2, MR + 1, 13}, {2, 2, NR + 1, 16}, {1, 1, 97, 64}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t B = cases[i][0], H = cases[i][1], S = cases[i][2], D = cases[i][3];
        ir_dim x[4] = {dB, dc(H), dS, dc(D)}, p[4] = {dB, dc(H), dS, dS};
        uint64_t sd = 400 + 10 * i;
        check_mm(4, x, 4, x, 0, 1, B, S, D, sd);     /* scores = q k^T */
        check_mm(4, p, 4, x, 0, 0, B, S, S, sd + 1); /* ctx = p v; dq = dscores k */
        check_mm(4, x, 4, x, 0, 1, B, S, D, sd + 2); /* dp = dctx v^T */
        check_mm(4, p, 4, x, 1, 0, B, S, S, sd + 3); /* dv = p^T dctx; dk = dscores^T q */
        check_mm(4, p, 4, p, 1, 1, B, S, S, sd + 4); /* both transposed */
    }
}

/* ---- shared 2-D b: the batch folds into M ---- */

Test(codegen_matmul, shared_weight_linear_layer)
{
    /* x [B, S, K] x W [N, K]^T (BERT's linear layer) and x [B, S, K] x W [K, N] */
    static const int64_t cases[][4] = {{1, 1, 1, 1},        {3, 5, 7, 13},
                                       {2, 37, NR + 1, 31}, {2, 131, 97, KC + 1},
                                       {1, MC + 1, 5, 3},   {3, 43, NC + 1, 17}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t B = cases[i][0], S = cases[i][1], N = cases[i][2], K = cases[i][3];
        ir_dim x[3] = {dB, dS, dc(K)}, wt[2] = {dc(N), dc(K)}, w[2] = {dc(K), dc(N)};
        check_mm(3, x, 2, wt, 0, 1, B, S, K, 500 + 10 * i);
        check_mm(3, x, 2, w, 0, 0, B, S, K, 500 + 10 * i + 1);
        /* rank 4 activations [B, S, 2, K] against the same weight */
        ir_dim x4[4] = {dB, dS, dc(2), dc(K)};
        check_mm(4, x4, 2, wt, 0, 1, B, S, K, 500 + 10 * i + 2);
    }
}

Test(codegen_matmul, weight_gradient_contracts_over_tokens)
{
    /* dW [N, K] = dy [B*S, N]^T x x [B*S, K] (ta = 1), and dx [B*S, K] = dy [B*S, N] x
     * W [N, K] */
    /* [256, 256] and [256, 1024] (bert-mini's): one and three units of MC rows, which
     * the kernel splits into two and six; [768, 77]: MC 192; [50, 1000]: two blocks of
     * the weight gradients' NC, of equal width */
    static const int64_t cases[][4] = {{1, 1, 1, 1},    {3, 5, 7, 13},    {2, 37, NR + 1, 31},
                                       {2, 129, 97, 37}, {3, 43, 9, 49},  {2, 37, 256, 256},
                                       {1, 19, 256, 1024}, {1, 23, 768, 77}, {1, 13, 50, 1000}};
    ir_dim T = {1, 1, 1}; /* B*S */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t B = cases[i][0], S = cases[i][1], N = cases[i][2], K = cases[i][3];
        ir_dim dy[2] = {T, dc(N)}, x[2] = {T, dc(K)}, w[2] = {dc(N), dc(K)};
        check_mm(2, dy, 2, x, 1, 0, B, S, B * S, 600 + 10 * i);
        check_mm(2, dy, 2, w, 0, 0, B, S, N, 600 + 10 * i + 1);
    }
}

/* N a multiple of 64 but not of 48 (attention's head size, S = 128): the 6 x 64 tile,
 * with M across its MC of 240 and K across KC. */
Test(codegen_matmul, the_6x64_tile_where_64_divides_n_and_48_does_not)
{
    static const int64_t shapes[][3] = {{1, 64, 5}, {7, 128, 13}, {241, 64, 3},
                                        {13, 320, KC + 1}, {6, 64, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            check_2d(shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1,
                     800 + 10 * s + t);
    /* the context of 2 heads of 64 (PV) and a weight gradient onto [64, 64] */
    ir_dim p[4] = {dB, dc(2), dS, dS}, v[4] = {dB, dc(2), dS, dc(64)};
    check_mm(4, p, 4, v, 0, 0, 2, 37, 37, 850);
    ir_dim T = {1, 1, 1}, dy[2] = {T, dc(64)};
    check_mm(2, dy, 2, dy, 1, 0, 3, 29, 87, 851);
}

/* ---- determinism ---- */

/* Runs g with `threads` threads through the JIT; the output "y". */
static void jit_run(const ir_graph *g, const rt_tensor_list *p, const rt_tensor_list *in,
                    int threads, rt_tensor_list *out)
{
    bc_err e;
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert(x, "%s", e.msg);
    cr_assert(!cg_engine_run(x, p, in, threads, out, &e), "%s", e.msg);
    cg_engine_free(x);
}

Test(codegen_matmul, one_two_and_three_threads_give_identical_bits)
{
    /* several units (M over MC, N over NC, a batch), K over several K blocks, edges */
    struct {
        int ar, br, ta, tb;
        ir_dim a[4], b[4];
        int64_t B, S;
    } cases[] = {
        {3, 2, 0, 1, {dB, dS, dc(2 * KC + 5)}, {dc(NC + 7), dc(2 * KC + 5)}, 3, MC / 2 + 1},
        {3, 3, 1, 0, {dB, dS, dc(MC + 9)}, {dB, dS, dc(NC + 1)}, 3, KC + 3},
        {4, 4, 0, 0, {dB, dc(3), dS, dS}, {dB, dc(3), dS, dc(NR + 3)}, 2, 67},
        /* one unit of MC rows split in two, then three in six */
        {2, 2, 1, 0, {{1, 1, 1}, dc(256)}, {{1, 1, 1}, dc(256)}, 2, 37},
        {2, 2, 1, 0, {{1, 1, 1}, dc(256)}, {{1, 1, 1}, dc(1024)}, 1, 19},
        /* the 6 x 64 tile */
        {4, 4, 0, 0, {dB, dc(2), dS, dS}, {dB, dc(2), dS, dc(64)}, 3, 41},
        /* a weight gradient whose M blocks (9 of 48 rows after halving) share B's
         * panel, two K blocks: 2 and 3 threads split that group mid-way */
        {2, 2, 1, 0, {{1, 1, 1}, dc(389)}, {{1, 1, 1}, dc(700)}, 1, 300},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ir_graph *g = mm_graph(cases[i].ar, cases[i].a, cases[i].br, cases[i].b,
                               cases[i].ta, cases[i].tb);
        cr_assert(!g->failed, "%s", g->err.msg);
        int64_t B = cases[i].B, S = cases[i].S, bs[2] = {B, S};
        rt_tensor_list p, in, o1, o2;
        rt_list_init(&p);
        rt_list_init(&in);
        rt_list_init(&o1);
        rt_list_init(&o2);
        tu_add_rand_i64(&in, "ids", 2, bs, 0, 1, 700 + i);
        add_rand(&in, "a", cases[i].ar, cases[i].a, B, S, 710 + i);
        add_rand(b_is_param(cases[i].br, cases[i].b) ? &p : &in, "b", cases[i].br,
                 cases[i].b, B, S, 720 + i);
        jit_run(g, &p, &in, 1, &o1);
        for (int threads = 2; threads <= 3; threads++) {
            jit_run(g, &p, &in, threads, &o2);
            const rt_tensor *y1 = rt_list_cfind(&o1, "y"), *y2 = rt_list_cfind(&o2, "y");
            cr_assert(y1 && y2 && rt_numel(y1) == rt_numel(y2));
            cr_expect(!memcmp(y1->data, y2->data, (size_t)rt_numel(y1) * 4),
                      "case %zu: 1- and %d-thread results differ", i, threads);
            rt_list_free(&o2);
        }
        rt_list_free(&o1);
        rt_list_free(&p);
        rt_list_free(&in);
        ir_graph_free(g);
    }
}

/* ---- other targets: AVX2 (8 lanes, the 6 x 16 tile) and SSE2 without FMA ---- */

/* tu_jit_vs_ref with target options. */
static void check_target(const cg_options *o, int ar, const ir_dim *ad, int br,
                         const ir_dim *bd, int ta, int tb, int64_t B, int64_t S, int64_t K,
                         uint64_t seed)
{
    ir_graph *g = mm_graph(ar, ad, br, bd, ta, tb);
    cr_assert(!g->failed, "%s", g->err.msg);
    rt_tensor_list p, in, ref, jit;
    rt_list_init(&p);
    rt_list_init(&in);
    rt_list_init(&ref);
    rt_list_init(&jit);
    int64_t bs[2] = {B, S};
    tu_add_rand_i64(&in, "ids", 2, bs, 0, 1, seed);
    add_rand(&in, "a", ar, ad, B, S, seed + 1);
    add_rand(b_is_param(br, bd) ? &p : &in, "b", br, bd, B, S, seed + 2);
    bc_err e;
    rt_interp_opts io = {0, 1};
    cr_assert(!rt_interp_run(g, &p, &in, &io, &ref, &e), "%s", e.msg);
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, o, &e);
    cr_assert(x, "%s: %s", o->cpu, e.msg);
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert(!cg_engine_run(x, &p, &in, threads, &jit, &e), "%s", e.msg);
        double mr = 0, err = tu_max_err(rt_list_cfind(&jit, "y"), &ref.t[0], &mr);
        cr_expect(err >= 0 && err <= tol(K) * mr + 1e-6,
                  "%s ta=%d tb=%d B=%lld S=%lld threads %d: max error %g (max |ref| %g)",
                  o->cpu, ta, tb, (long long)B, (long long)S, threads, err, mr);
        rt_list_free(&jit);
        rt_list_init(&jit);
    }
    cg_engine_free(x);
    rt_list_free(&ref);
    rt_list_free(&p);
    rt_list_free(&in);
    ir_graph_free(g);
}

Test(codegen_matmul, avx2_and_sse_targets)
{
    const cg_options targets[2] = {{"x86-64-v3", "+avx,+avx2,+fma,+f16c", NULL, 0, 0},
                                   {"x86-64", "+sse2", NULL, 0, 0}};
    for (int t = 0; t < 2; t++)
        for (int tt = 0; tt < 4; tt++) {
            int ta = tt >> 1, tb = tt & 1;
            /* odd sizes around the 6 x 16 and 6 x 8 tiles, K across KC */
            ir_dim ad[3] = {dB, ta ? dc(KC + 3) : dS, ta ? dS : dc(KC + 3)};
            ir_dim bd[3] = {dB, tb ? dc(17) : dc(KC + 3), tb ? dc(KC + 3) : dc(17)};
            check_target(&targets[t], 3, ad, 3, bd, ta, tb, 2, 13, KC + 3,
                         800 + 10 * t + tt);
            ir_dim x[3] = {dB, dS, dc(31)},
                   w[2] = {tb ? dc(7) : dc(31), tb ? dc(31) : dc(7)};
            if (!ta)
                check_target(&targets[t], 3, x, 2, w, 0, tb, 3, 7, 31, 850 + 10 * t + tt);
        }
}

/* ---- the pack rule: weights read from pack_b's panels ---- */

/* The panels themselves (an output here; the rule never makes one): the reference's
 * ref_pack_b bit for bit, N and K off the panel width and the 8-row transposes. */
Test(codegen_matmul, pack_b_panels_match_the_reference)
{
    static const int64_t nk[][2] = {{1, 1}, {15, 7}, {16, 8}, {17, 9}, {33, 20}, {97, 257}};
    for (size_t s = 0; s < sizeof nk / sizeof *nk; s++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t N = nk[s][0], K = nk[s][1];
            ir_graph *g = ir_graph_new("pack");
            ir_dim wd[2] = {dc(tb ? N : K), dc(tb ? K : N)};
            int w = ir_param(g, "w", ir_type_make(IR_F32, 2, wd));
            ir_attrs a = {0};
            a.tb = tb;
            ir_set_output(g, "p", ir_add(g, IR_OP_PACK_B, &w, 1, &a, NULL, NULL));
            cr_assert(!g->failed, "%s", g->err.msg);
            rt_tensor_list p, in;
            rt_list_init(&p);
            rt_list_init(&in);
            add_rand(&p, "w", 2, wd, 1, 1, 900 + s);
            char msg[512];
            for (int threads = 1; threads <= 2; threads++)
                cr_expect(tu_jit_vs_ref(g, &p, &in, threads, 0, 0, msg, sizeof msg) == 0,
                          "N=%lld K=%lld tb=%d, %d threads: %s", (long long)N, (long long)K,
                          tb, threads, msg);
            ir_graph_free(g);
            rt_list_free(&p);
        }
}

/* y = a b with b a weight, unpacked and through the pack rule, on one target: the same
 * bits for 1, 2 and 3 threads, and the reference (which reads the panels too). */
static void check_packed(const cg_options *o, int64_t M, int64_t N, int64_t K, int tb,
                         uint64_t seed)
{
    ir_dim ad[2] = {dc(M), dc(K)}, bd[2] = {dc(tb ? N : K), dc(tb ? K : N)};
    ir_graph *g = mm_graph(2, ad, 2, bd, 0, tb), *pg = ir_graph_clone(g);
    bc_err e;
    cr_assert(!g->failed && pg, "%s", g->err.msg);
    cr_assert_eq(pass_pack_weights(&pg, &e), 0, "%s", e.msg);
    int packs = 0;
    for (int i = 0; i < pg->n; i++)
        packs += pg->nodes[i].op == IR_OP_PACK_B;
    cr_expect_eq(packs, 1);
    rt_tensor_list p, in, base;
    rt_list_init(&p);
    rt_list_init(&in);
    rt_list_init(&base);
    tu_add_rand_i64(&in, "ids", 2, (int64_t[]){1, 1}, 0, 1, seed);
    add_rand(&in, "a", 2, ad, 1, 1, seed + 1);
    add_rand(&p, "b", 2, bd, 1, 1, seed + 2);
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, o, &e);
    cr_assert(x, "%s", e.msg);
    cr_assert(!cg_engine_run(x, &p, &in, 1, &base, &e), "%s", e.msg);
    cg_engine_free(x);
    x = cg_engine_new(pg, CG_BACKEND_JIT, o, &e);
    cr_assert(x, "%s", e.msg);
    const rt_tensor *y0 = rt_list_cfind(&base, "y");
    for (int threads = 1; threads <= 3; threads++) {
        rt_tensor_list out;
        rt_list_init(&out);
        cr_assert(!cg_engine_run(x, &p, &in, threads, &out, &e), "%s", e.msg);
        const rt_tensor *y = rt_list_cfind(&out, "y");
        cr_expect(y && y0 && rt_nbytes(y) == rt_nbytes(y0) &&
                      !memcmp(y->data, y0->data, rt_nbytes(y)),
                  "%s M=%lld N=%lld K=%lld tb=%d, %d threads: packed differs from unpacked",
                  o ? o->cpu : "host", (long long)M, (long long)N, (long long)K, tb,
                  threads);
        rt_list_free(&out);
    }
    cg_engine_free(x);
    char msg[512];
    if (!o)
        cr_expect(tu_jit_vs_ref(pg, &p, &in, 2, tol(K), 1e-6, msg, sizeof msg) == 0,
                  "M=%lld N=%lld K=%lld tb=%d: %s", (long long)M, (long long)N,
                  (long long)K, tb, msg);
    rt_list_free(&base);
    rt_list_free(&p);
    rt_list_free(&in);
    ir_graph_free(g);
    ir_graph_free(pg);
}

/* ones, primes, one off the panel, register tile and cache blocks (N over NC: a unit
 * that starts past column 0; K over KC: panels read from row pc), the 6 x 64 tile */
static const int64_t packed_shapes[][3] = {{1, 1, 1},       {5, 17, 7},
                                           {13, 33, 9},     {MR + 1, NR + 1, KC + 1},
                                           {3, NC + 1, 19}, {MC + 1, NC + 17, 2 * KC + 3},
                                           {26, 128, 19},   {7, 785, 300}};

Test(codegen_matmul, packed_weights_give_the_unpacked_bits, .timeout = 300)
{
    for (size_t s = 0; s < sizeof packed_shapes / sizeof *packed_shapes; s++)
        for (int tb = 0; tb < 2; tb++)
            check_packed(NULL, packed_shapes[s][0], packed_shapes[s][1],
                         packed_shapes[s][2], tb, 1000 + 10 * s + tb);
}

/* AVX2 (8 lanes: two vectors a panel) and SSE2 (4 lanes: four) read panels at offsets
 * inside them */
Test(codegen_matmul, packed_weights_on_avx2_and_sse_targets, .timeout = 300)
{
    const cg_options targets[2] = {{"x86-64-v3", "+avx,+avx2,+fma,+f16c", NULL, 0, 0},
                                   {"x86-64", "+sse2", NULL, 0, 0}};
    for (int t = 0; t < 2; t++)
        for (size_t s = 0; s < 4; s++)
            for (int tb = 0; tb < 2; tb++)
                check_packed(&targets[t], packed_shapes[s][0], packed_shapes[s][1],
                             packed_shapes[s][2], tb, 1100 + 10 * s + tb);
}
