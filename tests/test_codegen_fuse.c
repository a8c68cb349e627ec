/* test_codegen_fuse.c: the fusion pass and the kernels of its regions. Each case builds
 * a matmul followed by a chain of elementwise ops, on odd shapes (1, primes, sizes one
 * off the register tile, K past one cache block so that the epilogue must wait for the
 * last one), and checks
 *   - that `fuse` makes one region of the whole chain (and `--fuse=none` none);
 *   - the fused kernel against the reference interpreter on the unfused graph, 1 and 2
 *     threads;
 *   - the fused kernel bit for bit against the unfused kernels (a region computes the
 *     same f32 operations in the same order), and for 1, 2 and 3 threads. */
#include <criterion/criterion.h>
#include <string.h>

#include "../codegen/engine.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "../runtime/plan.h"
#include "../runtime/tensor.h"
#include "tests/util.h"

#define DB IR_DIM_B
#define DS IR_DIM_S
#define DC(c) ir_dconst(c)

/* The epilogues tried: what follows y = matmul(...), with b a bias [N], r a tensor of
 * y's shape, s an f32 scalar and seed the dropout seed. */
typedef enum {
    E_BIAS,           /* y + b */
    E_BIAS_GELU,      /* gelu(y + b) */
    E_BIAS_GELU_TANH, /* gelu_tanh(y + b) */
    E_BIAS_TANH,      /* tanh(y + b) */
    E_SCALE_RESIDUAL, /* r + 0.125 y */
    E_BIAS_DROP_RES,  /* dropout(y + b) + r */
    E_GELU_GRAD,      /* gelu_grad(r, y) */
    E_GELU_TANH_GRAD, /* gelu_tanh_grad(r, y) */
    E_TANH_GRAD,      /* tanh_grad(r, y), r in (-1, 1) */
    E_MUL_SCALAR,     /* y * s */
    E_COUNT
} epi_case;

static const int chain_len[E_COUNT] = {1, 2, 2, 2, 2, 3, 1, 1, 1, 1};

typedef struct built {
    ir_graph *g;
    rt_tensor_list p, in;
} built;

/* An empty graph named name with empty parameter and input lists. */
static built new_built(const char *name)
{
    built b = {ir_graph_new(name), {0}, {0}};
    rt_list_init(&b.p);
    rt_list_init(&b.in);
    return b;
}

static void add_f32(built *b, const char *name, int rank, const ir_dim *d, int64_t B,
                    int64_t S, double lo, double hi, uint64_t seed, int param)
{
    int64_t shape[IR_MAX_RANK];
    for (int i = 0; i < rank; i++)
        shape[i] = ir_dim_eval(d[i], B, S);
    tu_add_rand_f32(param ? &b->p : &b->in, name, rank, shape, lo, hi, seed);
}

/* x [B, S, K] (or [B, K, S] with ta, then b is [B, K, N] batched), w [N, K] (tb) or
 * [K, N]; the epilogue on y = matmul(x, w) of shape [B, S, N] (or [B, S, N] with ta). */
static built build(int64_t B, int64_t S, int64_t K, int64_t N, int ta, int tb, epi_case ec)
{
    built b = new_built("fuse");
    ir_graph *g = b.g;
    ir_dim dids[2] = {DB, DS};
    ir_input(g, "ids", ir_type_make(IR_I64, 2, dids));
    tu_add_rand_i64(&b.in, "ids", 2, (int64_t[]){B, S}, 0, 1, 1);
    ir_dim dx[3] = {DB, ta ? DC(K) : DS, ta ? DS : DC(K)};
    int x = ir_input(g, "x", ir_type_make(IR_F32, 3, dx));
    add_f32(&b, "x", 3, dx, B, S, -1, 1, 2, 0);
    int w;
    if (ta) {
        ir_dim dw[3] = {DB, DC(K), DC(N)};
        w = ir_input(g, "w", ir_type_make(IR_F32, 3, dw));
        add_f32(&b, "w", 3, dw, B, S, -1, 1, 3, 0);
    } else {
        ir_dim dw[2] = {tb ? DC(N) : DC(K), tb ? DC(K) : DC(N)};
        w = ir_param(g, "w", ir_type_make(IR_F32, 2, dw));
        add_f32(&b, "w", 2, dw, B, S, -1, 1, 3, 1);
    }
    int y = ir_matmul(g, x, w, ta, ta ? 0 : tb);
    ir_dim dn[1] = {DC(N)}, dy[3] = {DB, DS, DC(N)};
    int bias = ir_param(g, "b", ir_type_make(IR_F32, 1, dn));
    add_f32(&b, "b", 1, dn, B, S, -1, 1, 4, 1);
    int r = ir_input(g, "r", ir_type_make(IR_F32, 3, dy));
    add_f32(&b, "r", 3, dy, B, S, ec == E_TANH_GRAD ? -0.9 : -3, ec == E_TANH_GRAD ? 0.9 : 3,
            5, 0);
    int s = ir_input(g, "s", ir_type_make(IR_F32, 0, NULL));
    add_f32(&b, "s", 0, NULL, B, S, 0.5, 2, 6, 0);
    int seed = ir_input(g, "seed", ir_type_make(IR_I64, 0, NULL));
    tu_add_rand_i64(&b.in, "seed", 0, NULL, 0, INT64_MAX, 7);
    int out = -1;
    switch (ec) {
    case E_BIAS:
        out = ir_addv(g, y, bias);
        break;
    case E_BIAS_GELU:
        out = ir_unary(g, IR_OP_GELU, ir_addv(g, y, bias));
        break;
    case E_BIAS_GELU_TANH:
        out = ir_unary(g, IR_OP_GELU_TANH, ir_addv(g, y, bias));
        break;
    case E_BIAS_TANH:
        out = ir_unary(g, IR_OP_TANH, ir_addv(g, y, bias));
        break;
    case E_SCALE_RESIDUAL:
        out = ir_addv(g, r, ir_scale(g, y, 0.125));
        break;
    case E_BIAS_DROP_RES: {
        ir_attrs a = {0};
        a.p = 0.3;
        a.index = 5;
        int d = ir_add(g, IR_OP_DROPOUT, (int[]){ir_addv(g, y, bias), seed}, 2, &a, NULL, NULL);
        out = ir_addv(g, d, r);
        break;
    }
    case E_GELU_GRAD:
    case E_GELU_TANH_GRAD:
    case E_TANH_GRAD: {
        ir_opcode op = ec == E_GELU_GRAD        ? IR_OP_GELU_GRAD
                       : ec == E_GELU_TANH_GRAD ? IR_OP_GELU_TANH_GRAD
                                                : IR_OP_TANH_GRAD;
        out = ir_add(g, op, (int[]){r, y}, 2, NULL, NULL, NULL);
        break;
    }
    case E_MUL_SCALAR:
        out = ir_mul(g, y, s);
        break;
    case E_COUNT:
        break;
    }
    ir_set_output(g, "y", out);
    cr_assert(!g->failed, "%s", g->err.msg);
    return b;
}

static void free_built(built *b)
{
    ir_graph_free(b->g);
    rt_list_free(&b->p);
    rt_list_free(&b->in);
}

static int count_op(const ir_graph *g, ir_opcode op)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        n += g->nodes[i].op == op;
    return n;
}

static void run_jit(const ir_graph *g, const built *b, int threads, rt_tensor_list *out)
{
    bc_err e;
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(x, "%s", e.msg);
    rt_list_init(out);
    cr_assert_eq(cg_engine_run(x, &b->p, &b->in, threads, out, &e), 0, "%s", e.msg);
    cg_engine_free(x);
}

static void expect_same_bits(const rt_tensor_list *a, const rt_tensor_list *b,
                             const char *what)
{
    const rt_tensor *ta = rt_list_cfind(a, "y"), *tb = rt_list_cfind(b, "y");
    cr_assert(ta && tb);
    cr_expect(rt_nbytes(ta) == rt_nbytes(tb) && !memcmp(ta->data, tb->data, rt_nbytes(ta)),
              "%s", what);
}

/* The fused graph with 1, 2 and 3 threads gives the unfused graph's bits. */
static void expect_fused_bits(const ir_graph *unfused, const ir_graph *fused, const built *b,
                              const char *what)
{
    rt_tensor_list base;
    run_jit(unfused, b, 1, &base);
    for (int threads = 1; threads <= 3; threads++) {
        rt_tensor_list f;
        run_jit(fused, b, threads, &f);
        char w2[200];
        snprintf(w2, sizeof w2, "%s: fused with %d threads differs from unfused", what,
                 threads);
        expect_same_bits(&f, &base, w2);
        rt_list_free(&f);
    }
    rt_list_free(&base);
}

/* The graph of b through the base pipeline (unfused) and the default one (fused). */
static void both_pipelines(const built *b, ir_graph **unfused, ir_graph **fused)
{
    bc_err e = {{0}};
    *unfused = ir_graph_clone(b->g);
    *fused = ir_graph_clone(b->g);
    cr_assert_eq(pass_run_pipeline(unfused, PASS_BASE_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(fused, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
}

/* Every tensor of a also in b, with the same bytes. */
static void expect_same_outputs(const rt_tensor_list *a, const rt_tensor_list *b,
                                const char *what)
{
    cr_assert_eq(a->n, b->n, "%s", what);
    for (int k = 0; k < a->n; k++) {
        const rt_tensor *x = &a->t[k], *y = rt_list_cfind(b, x->name);
        cr_expect(y && rt_nbytes(x) == rt_nbytes(y) && !memcmp(x->data, y->data, rt_nbytes(x)),
                  "%s: %s differs", what, x->name);
    }
}

static void check_case(int64_t B, int64_t S, int64_t K, int64_t N, int ta, int tb,
                       epi_case ec)
{
    char what[160];
    snprintf(what, sizeof what, "case %d, B=%lld S=%lld K=%lld N=%lld ta=%d tb=%d", (int)ec,
             (long long)B, (long long)S, (long long)K, (long long)N, ta, tb);
    built b = build(B, S, K, N, ta, tb, ec);
    bc_err e = {{0}};
    ir_graph *unfused, *fused;
    both_pipelines(&b, &unfused, &fused);
    /* one region: the matmul and its whole chain */
    cr_expect_eq(count_op(unfused, IR_OP_FUSED), 0, "%s", what);
    cr_expect_eq(count_op(fused, IR_OP_FUSED), 1, "%s", what);
    cr_expect_eq(count_op(fused, IR_OP_MATMUL), 0, "%s", what);
    /* and a weight (w a param: not ta) is read through pack_b (the pack rule), except in
     * a graph with a backward (gradient ops) */
    int packs = count_op(fused, IR_OP_PACK_B);
    int grad = ec == E_GELU_GRAD || ec == E_GELU_TANH_GRAD || ec == E_TANH_GRAD;
    cr_expect_eq(packs, !ta && !grad, "%s", what);
    cr_expect_eq(unfused->n - fused->n + packs, chain_len[ec], "%s: nodes %d -> %d", what,
                 unfused->n, fused->n);
    /* benchmarks count the matmuls inside regions too */
    cr_expect_eq(ir_matmul_flops(fused, B, S), ir_matmul_flops(unfused, B, S), "%s", what);
    cr_expect_gt(ir_matmul_flops(fused, B, S), 0.0, "%s", what);
    /* against the reference (which runs the region's ops in turn) */
    char msg[512];
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(tu_jit_vs_ref(fused, &b.p, &b.in, threads, 1e-5, 1e-5, msg, sizeof msg) == 0,
                  "%s, %d threads: %s", what, threads, msg);
    /* and the reference on the fused graph gives the unfused graph's numbers */
    rt_interp_opts io = {0, 1};
    rt_tensor_list r1, r2;
    rt_list_init(&r1);
    rt_list_init(&r2);
    cr_assert_eq(rt_interp_run(fused, &b.p, &b.in, &io, &r1, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_interp_run(unfused, &b.p, &b.in, &io, &r2, &e), 0, "%s", e.msg);
    expect_same_bits(&r1, &r2, what);
    rt_list_free(&r1);
    rt_list_free(&r2);
    /* bit for bit: fused = unfused, any thread count */
    expect_fused_bits(unfused, fused, &b, what);
    ir_graph_free(unfused);
    ir_graph_free(fused);
    free_built(&b);
}

/* B, S, K, N: ones, primes, one off the 8 x 48 register tile, K past the 256 block, and
 * N = 128 (the 6 x 64 tile) over 26 rows (full tiles, whose epilogue runs on the
 * accumulators, and an edge row block, whose epilogue runs on the stored tile) */
static const int64_t sizes[][4] = {{1, 1, 1, 1},     {2, 3, 5, 7},      {1, 9, 17, 47},
                                   {3, 7, 13, 49},   {1, 17, 257, 97},  {2, 33, 300, 131},
                                   {2, 13, 19, 128}};
#define NSIZES (sizeof sizes / sizeof *sizes)

Test(codegen_fuse, every_epilogue_on_a_linear_layer, .timeout = 300)
{
    for (int ec = 0; ec < E_COUNT; ec++)
        for (size_t c = 0; c < NSIZES; c += (ec % 2 ? 2 : 1))
            check_case(sizes[c][0], sizes[c][1], sizes[c][2], sizes[c][3], 0, 1,
                       (epi_case)ec);
}

Test(codegen_fuse, untransposed_and_batched_transposed_operands, .timeout = 300)
{
    for (size_t c = 0; c < NSIZES; c++) {
        check_case(sizes[c][0], sizes[c][1], sizes[c][2], sizes[c][3], 0, 0, E_BIAS_GELU);
        check_case(sizes[c][0], sizes[c][1], sizes[c][2], sizes[c][3], 1, 0,
                   E_BIAS_DROP_RES);
    }
}

/* A value with a second reader, or an output, is written: the chain stops before it. */
Test(codegen_fuse, a_link_read_twice_or_an_output_ends_the_chain)
{
    built b = build(2, 3, 5, 7, 0, 1, E_BIAS_GELU);
    ir_graph *g = b.g;
    int pre = g->nodes[g->outs[0].value].in[0]; /* y + b */
    ir_set_output(g, "pre", pre);
    bc_err e = {{0}};
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    b.g = g;
    cr_expect_eq(count_op(g, IR_OP_FUSED), 1);
    cr_expect_eq(count_op(g, IR_OP_GELU), 1, "gelu reads an output: not fused");
    int v = ir_find_output(g, "pre");
    cr_assert_eq(g->nodes[v].op, IR_OP_FUSED);
    cr_expect(strstr(g->nodes[v].name, "add") && !strstr(g->nodes[v].name, "gelu"), "%s",
              g->nodes[v].name);
    char msg[512];
    cr_expect(tu_jit_vs_ref(g, &b.p, &b.in, 2, 1e-5, 1e-5, msg, sizeof msg) == 0, "%s", msg);
    free_built(&b);
}

/* Rules are chosen by name; unknown names are errors listing the known ones. */
Test(codegen_fuse, fusion_specs)
{
    unsigned r;
    bc_err e = {{0}};
    cr_expect_eq(pass_fuse_parse("all", &r, &e), 0);
    cr_expect_eq(r, (unsigned)PASS_FUSE_ALL);
    cr_expect_eq(pass_fuse_parse("none", &r, &e), 0);
    cr_expect_eq(r, 0u);
    cr_expect_eq(pass_fuse_parse("epilogue", &r, &e), 0);
    cr_expect_eq(r, (unsigned)PASS_FUSE_EPILOGUE);
    cr_expect_eq(pass_fuse_parse("epilogue,frob", &r, &e), -1);
    cr_expect_str_eq(e.msg,
                     "unknown fusion rule 'frob' (all, none, epilogue, attention, layout, "
                     "layernorm, backward, pack)");
    cr_expect_eq(pass_fuse_parse("attention+epilogue+layout", &r, &e), 0);
    cr_expect_eq(r, (unsigned)(PASS_FUSE_ALL & ~PASS_FUSE_LAYERNORM & ~PASS_FUSE_BACKWARD &
                               ~PASS_FUSE_PACK));
    cr_expect_eq(
        pass_fuse_parse("layernorm+attention+epilogue+layout+backward+pack", &r, &e), 0);
    cr_expect_eq(r, (unsigned)PASS_FUSE_ALL);
    cr_expect_eq(pass_fuse_parse("layout", &r, &e), 0);
    cr_expect_eq(r, (unsigned)PASS_FUSE_LAYOUT);
    char buf[256];
    cr_expect_eq(pass_default_pipeline("none", buf, sizeof buf, &e), 0);
    cr_expect_str_eq(buf, PASS_BASE_PIPELINE);
    cr_expect_eq(pass_default_pipeline(NULL, buf, sizeof buf, &e), 0);
    cr_expect_str_eq(buf, PASS_DEFAULT_PIPELINE);
    cr_expect_eq(pass_default_pipeline("epilogue", buf, sizeof buf, &e), 0);
    cr_expect_str_eq(buf, PASS_BASE_PIPELINE ",fuse=epilogue");
    cr_expect_eq(pass_default_pipeline("attention,epilogue,layout,layernorm,backward,pack",
                                       buf, sizeof buf, &e),
                 0);
    cr_expect_str_eq(buf, PASS_DEFAULT_PIPELINE);
    cr_expect_eq(pass_default_pipeline("layernorm", buf, sizeof buf, &e), 0);
    cr_expect_str_eq(buf, PASS_BASE_PIPELINE ",fuse=layernorm");
    cr_expect_eq(pass_default_pipeline("layout,attention", buf, sizeof buf, &e), 0);
    cr_expect_str_eq(buf, PASS_BASE_PIPELINE ",fuse=attention+layout");
    ir_graph *g = ir_graph_new("g");
    cr_expect_eq(pass_run_pipeline(&g, "fuse=frob", NULL, &e), -1);
    cr_expect_eq(pass_run_pipeline(&g, "dce=1", NULL, &e), -1);
    cr_expect(strstr(e.msg, "takes no argument"), "%s", e.msg);
    ir_graph_free(g);
}

/* unfuse gives back the ops (autodiff runs it first): the same ops, the same numbers. */
Test(codegen_fuse, unfuse_restores_the_unfused_graph)
{
    built b = build(3, 7, 13, 49, 0, 1, E_BIAS_DROP_RES);
    bc_err e = {{0}};
    ir_graph *u = ir_graph_clone(b.g), *f = ir_graph_clone(b.g);
    cr_assert_eq(pass_run_pipeline(&u, PASS_BASE_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&f, PASS_DEFAULT_PIPELINE ",unfuse", NULL, &e), 0, "%s",
                 e.msg);
    cr_expect_eq(f->n, u->n);
    for (int op = 0; op < IR_OP_COUNT; op++)
        cr_expect_eq(count_op(f, (ir_opcode)op), count_op(u, (ir_opcode)op), "%s",
                     ir_ops[op].name);
    rt_interp_opts io = {0, 1};
    rt_tensor_list r1, r2;
    rt_list_init(&r1);
    rt_list_init(&r2);
    cr_assert_eq(rt_interp_run(f, &b.p, &b.in, &io, &r1, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_interp_run(u, &b.p, &b.in, &io, &r2, &e), 0, "%s", e.msg);
    expect_same_bits(&r1, &r2, "unfused again");
    rt_list_free(&r1);
    rt_list_free(&r2);
    ir_graph_free(u);
    ir_graph_free(f);
    free_built(&b);
}

/* ---- attention ---- */

/* q, k, v [B, S, nh D] through BERT's self-attention (split heads, QK^T, softmax with
 * the key mask, PV, merge heads); mask rows of batch entry `masked_b` all 0. */
static built build_attention(int64_t B, int64_t S, int64_t nh, int64_t D, int mask_kind,
                             int probs_out)
{
    built b = new_built("attn");
    ir_graph *g = b.g;
    ir_dim dx[3] = {DB, DS, DC(nh * D)}, dm[2] = {DB, DS};
    int x[3];
    static const char *const names[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        x[i] = ir_input(g, names[i], ir_type_make(IR_F32, 3, dx));
        add_f32(&b, names[i], 3, dx, B, S, -2, 2, 10 + (uint64_t)i, 0);
    }
    int mask = ir_input(g, "attention_mask", ir_type_make(IR_I64, 2, dm));
    tu_add_rand_i64(&b.in, "attention_mask", 2, (int64_t[]){B, S}, 0, 2, 20);
    rt_tensor *mt = rt_list_find(&b.in, "attention_mask");
    int64_t *m = mt->data;
    for (int64_t j = 0; j < B * S; j++) {
        if (mask_kind == 1)
            m[j] = 1;
        if (mask_kind == 2 && j < S) /* batch entry 0: every key masked */
            m[j] = 0;
    }
    ir_dim dh[4] = {DB, DS, DC(nh), DC(D)};
    int perm[4] = {0, 2, 1, 3}, hd[3];
    for (int i = 0; i < 3; i++)
        hd[i] = ir_transpose(g, ir_reshape(g, x[i], 4, dh), perm);
    int p = ir_attn_softmax(g, ir_matmul(g, hd[0], hd[1], 0, 1), mask, 1.0 / (double)(D + 1));
    int ctx = ir_reshape(g, ir_transpose(g, ir_matmul(g, p, hd[2], 0, 0), perm), 3, dx);
    ir_set_output(g, "y", ctx);
    if (probs_out)
        ir_set_output(g, "probs", p);
    cr_assert(!g->failed, "%s", g->err.msg);
    return b;
}

static void check_attention(int64_t B, int64_t S, int64_t nh, int64_t D, int mask_kind)
{
    char what[160];
    snprintf(what, sizeof what, "attention B=%lld S=%lld heads=%lld D=%lld mask %d",
             (long long)B, (long long)S, (long long)nh, (long long)D, mask_kind);
    built b = build_attention(B, S, nh, D, mask_kind, 0);
    ir_graph *unfused, *fused;
    both_pipelines(&b, &unfused, &fused);
    cr_expect_eq(count_op(fused, IR_OP_FUSED), 1, "%s", what);
    cr_expect_eq(count_op(fused, IR_OP_ATTN_SOFTMAX) + count_op(fused, IR_OP_TRANSPOSE) +
                     count_op(fused, IR_OP_MATMUL),
                 0, "%s: everything inside the region", what);
    cr_expect_eq(ir_matmul_flops(fused, B, S), ir_matmul_flops(unfused, B, S), "%s", what);
    char msg[512];
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(tu_jit_vs_ref(fused, &b.p, &b.in, threads, 1e-5, 1e-6, msg, sizeof msg) == 0,
                  "%s, %d threads: %s", what, threads, msg);
    expect_fused_bits(unfused, fused, &b, what);
    ir_graph_free(unfused);
    ir_graph_free(fused);
    free_built(&b);
}

Test(codegen_fuse, attention_on_odd_shapes_gives_the_unfused_bits, .timeout = 300)
{
    /* B, S, heads, D: S 1 and primes, S past one vector and past 8 of them (the key
     * groups), D not a multiple of the vector width and past 4 vectors (D slices) */
    static const int64_t cases[][4] = {{1, 1, 1, 1},  {2, 3, 2, 5},   {1, 7, 3, 17},
                                       {3, 17, 2, 8}, {2, 33, 1, 64}, {1, 131, 2, 33},
                                       {2, 20, 1, 67}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int mk = 0; mk < 3; mk++)
            check_attention(cases[c][0], cases[c][1], cases[c][2], cases[c][3], mk);
}

/* The probabilities read elsewhere (a training graph's backward does): no attention
 * region; the layout rule still takes the head views into the two matmuls. */
Test(codegen_fuse, attention_whose_probabilities_are_read_stays_unfused)
{
    built b = build_attention(2, 5, 2, 3, 0, 1);
    bc_err e = {{0}};
    ir_graph *g = ir_graph_clone(b.g);
    cr_assert_eq(pass_run_pipeline(&g, PASS_BASE_PIPELINE ",fuse=attention+epilogue", NULL, &e),
                 0, "%s", e.msg);
    cr_expect_eq(count_op(g, IR_OP_ATTN_SOFTMAX), 1);
    cr_expect_eq(count_op(g, IR_OP_FUSED), 0);
    ir_graph_free(g);
    cr_assert_eq(pass_run_pipeline(&b.g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_expect_eq(count_op(b.g, IR_OP_ATTN_SOFTMAX), 1);
    cr_expect_eq(count_op(b.g, IR_OP_FUSED), 2);
    cr_expect_eq(count_op(b.g, IR_OP_TRANSPOSE), 0);
    free_built(&b);
}

/* ---- layout: head views as strided operands ---- */

/* q, k, v, g [B, S, nh D] and p [B, nh, S, S], as attention's forward and backward use
 * them: scores = q_h k_h^T (two views), ctx = merge(p v_h) (a view and the merge),
 * dk = merge(p^T q_h) (ta = 1; q_h shared with scores), dp = dropout(g_h v_h^T) (views
 * and an epilogue; v_h shared with ctx). */
static built build_layout(int64_t B, int64_t S, int64_t nh, int64_t D)
{
    built b = new_built("layout");
    ir_graph *g = b.g;
    ir_dim dx[3] = {DB, DS, DC(nh * D)}, dp[4] = {DB, DC(nh), DS, DS};
    ir_dim dh[4] = {DB, DS, DC(nh), DC(D)};
    int perm[4] = {0, 2, 1, 3}, h[4];
    static const char *const names[4] = {"q", "k", "v", "g"};
    for (int i = 0; i < 4; i++) {
        int x = ir_input(g, names[i], ir_type_make(IR_F32, 3, dx));
        add_f32(&b, names[i], 3, dx, B, S, -2, 2, 30 + (uint64_t)i, 0);
        h[i] = ir_transpose(g, ir_reshape(g, x, 4, dh), perm);
    }
    int p = ir_input(g, "p", ir_type_make(IR_F32, 4, dp));
    add_f32(&b, "p", 4, dp, B, S, 0, 1, 40, 0);
    int seed = ir_input(g, "seed", ir_type_make(IR_I64, 0, NULL));
    tu_add_rand_i64(&b.in, "seed", 0, NULL, 0, INT64_MAX, 41);
    ir_set_output(g, "scores", ir_matmul(g, h[0], h[1], 0, 1));
    ir_set_output(g, "ctx", ir_reshape(g, ir_transpose(g, ir_matmul(g, p, h[2], 0, 0), perm),
                                       3, dx));
    ir_set_output(g, "dk", ir_reshape(g, ir_transpose(g, ir_matmul(g, p, h[0], 1, 0), perm),
                                      3, dx));
    ir_attrs a = {0};
    a.p = 0.25;
    a.index = 3;
    ir_set_output(g, "dp",
                  ir_add(g, IR_OP_DROPOUT, (int[]){ir_matmul(g, h[3], h[2], 0, 1), seed}, 2,
                         &a, NULL, NULL));
    cr_assert(!g->failed, "%s", g->err.msg);
    return b;
}

/* Every output of the fused graph, any thread count, bit for bit the unfused graph's. */
static void expect_all_outputs_same(const ir_graph *unfused, const ir_graph *fused,
                                    const built *b, const char *what)
{
    rt_tensor_list base;
    run_jit(unfused, b, 1, &base);
    for (int threads = 1; threads <= 3; threads += 2) {
        rt_tensor_list f;
        run_jit(fused, b, threads, &f);
        char w2[200];
        snprintf(w2, sizeof w2, "%s, %d threads", what, threads);
        expect_same_outputs(&base, &f, w2);
        rt_list_free(&f);
    }
    rt_list_free(&base);
}

Test(codegen_fuse, layout_views_as_strided_operands_give_the_unfused_bits, .timeout = 300)
{
    /* B, S, heads, D: ones, primes, S and D across the register tiles (8 x 48, 6 x 64) */
    static const int64_t cases[][4] = {{1, 1, 1, 1},  {2, 3, 2, 5},   {1, 7, 3, 17},
                                       {3, 17, 2, 8}, {2, 33, 1, 64}, {1, 131, 2, 33},
                                       {2, 49, 2, 64}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t B = cases[c][0], S = cases[c][1], nh = cases[c][2], D = cases[c][3];
        char what[160];
        snprintf(what, sizeof what, "layout B=%lld S=%lld heads=%lld D=%lld", (long long)B,
                 (long long)S, (long long)nh, (long long)D);
        built b = build_layout(B, S, nh, D);
        ir_graph *unfused, *fused;
        both_pipelines(&b, &unfused, &fused);
        /* four regions; the shared views copied into each, none left outside */
        cr_expect_eq(count_op(fused, IR_OP_FUSED), 4, "%s", what);
        cr_expect_eq(count_op(fused, IR_OP_TRANSPOSE) + count_op(fused, IR_OP_RESHAPE) +
                         count_op(fused, IR_OP_MATMUL),
                     0, "%s", what);
        cr_expect_eq(ir_matmul_flops(fused, B, S), ir_matmul_flops(unfused, B, S), "%s", what);
        char msg[512];
        cr_expect(tu_jit_vs_ref(fused, &b.p, &b.in, 2, 1e-5, 1e-6, msg, sizeof msg) == 0,
                  "%s: %s", what, msg);
        expect_all_outputs_same(unfused, fused, &b, what);
        ir_graph_free(unfused);
        ir_graph_free(fused);
        free_built(&b);
    }
}

/* ---- the layernorm rule ---- */

/* y = layernorm(gelu((x + pos + r + bias) * s)) with pos [S, H] (a suffix of two dims),
 * bias [H], s a scalar; with `keep`, x + pos + r is an output too, so only what follows
 * it may join the layernorm. */
static built build_ln(int64_t B, int64_t S, int64_t H, int keep)
{
    built b = new_built("fuse_ln");
    ir_graph *g = b.g;
    ir_dim dx[3] = {DB, DS, DC(H)}, dp[2] = {DS, DC(H)}, dh[1] = {DC(H)};
    int x = ir_input(g, "x", ir_type_make(IR_F32, 3, dx));
    add_f32(&b, "x", 3, dx, B, S, -2, 2, 11, 0);
    int r = ir_input(g, "r", ir_type_make(IR_F32, 3, dx));
    add_f32(&b, "r", 3, dx, B, S, -2, 2, 12, 0);
    int pos = ir_input(g, "pos", ir_type_make(IR_F32, 2, dp));
    add_f32(&b, "pos", 2, dp, B, S, -1, 1, 13, 0);
    int s = ir_input(g, "s", ir_type_make(IR_F32, 0, NULL));
    add_f32(&b, "s", 0, NULL, B, S, 0.5, 2, 14, 0);
    int bias = ir_param(g, "b", ir_type_make(IR_F32, 1, dh));
    add_f32(&b, "b", 1, dh, B, S, -1, 1, 15, 1);
    int gamma = ir_param(g, "gamma", ir_type_make(IR_F32, 1, dh));
    add_f32(&b, "gamma", 1, dh, B, S, 0.5, 1.5, 16, 1);
    int beta = ir_param(g, "beta", ir_type_make(IR_F32, 1, dh));
    add_f32(&b, "beta", 1, dh, B, S, -1, 1, 17, 1);
    int sum = ir_addv(g, ir_addv(g, x, pos), r);
    if (keep)
        ir_set_output(g, "sum", sum);
    int v = ir_unary(g, IR_OP_GELU, ir_mul(g, ir_addv(g, sum, bias), s));
    ir_set_output(g, "y", ir_layernorm(g, v, gamma, beta, 1e-12));
    return b;
}

Test(codegen_fuse, layernorm_takes_the_ops_before_it_on_odd_shapes, .timeout = 300)
{
    /* B, S, H: ones, primes, rows shorter and longer than a vector, BERT's 768 */
    static const int64_t cases[][3] = {{1, 1, 1}, {2, 3, 5}, {3, 7, 17}, {2, 5, 131},
                                       {1, 9, 768}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int keep = 0; keep <= 1; keep++) {
            int64_t B = cases[c][0], S = cases[c][1], H = cases[c][2];
            char what[160];
            snprintf(what, sizeof what, "layernorm region B=%lld S=%lld H=%lld keep=%d",
                     (long long)B, (long long)S, (long long)H, keep);
            built b = build_ln(B, S, H, keep);
            ir_graph *unfused, *fused;
            both_pipelines(&b, &unfused, &fused);
            /* one region; the sum stays outside when it is an output */
            cr_expect_eq(count_op(fused, IR_OP_FUSED), 1, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_LAYERNORM), 0, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_ADD), keep ? 2 : 0, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_GELU), 0, "%s", what);
            char msg[512];
            for (int threads = 1; threads <= 2; threads++)
                cr_expect(tu_jit_vs_ref(fused, &b.p, &b.in, threads, 1e-5, 1e-5, msg,
                                        sizeof msg) == 0,
                          "%s, %d threads: %s", what, threads, msg);
            expect_fused_bits(unfused, fused, &b, what);
            if (keep) {
                rt_tensor_list u, f;
                run_jit(unfused, &b, 1, &u);
                run_jit(fused, &b, 2, &f);
                expect_same_outputs(&f, &u, what);
                rt_list_free(&u);
                rt_list_free(&f);
            }
            ir_graph_free(unfused);
            ir_graph_free(fused);
            free_built(&b);
        }
}

/* The JIT refuses to compile g (which is freed) with an error containing msg. */
static void expect_engine_refuses(ir_graph *g, const char *msg)
{
    cr_assert(!g->failed, "%s", g->err.msg);
    bc_err e = {{0}};
    cg_engine *eng = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_expect(!eng && strstr(e.msg, msg), "%s", e.msg);
    cg_engine_free(eng);
    ir_graph_free(g);
}

/* ---- the backward rule ---- */

enum { LNB_ALL, LNB_NO_BIAS, LNB_READ_BETWEEN };

/* A layernorm's gradients from x, gamma, dy [B, S, H]: dx, dgamma, dbeta = sum(dy) and
 * dbias = sum(dx), each an output; LNB_NO_BIAS has no sum(dx) and dx read by a
 * gelu_grad after them (the pooler's layernorm in a graph); LNB_READ_BETWEEN has that
 * gelu_grad between dgamma and sum(dy), which keeps the rule away (a further result
 * must be written before anything outside reads it). */
static built build_lnb(int64_t B, int64_t S, int64_t H, int variant)
{
    built b = new_built("fuse_lnb");
    ir_graph *g = b.g;
    ir_dim dx3[3] = {DB, DS, DC(H)}, dh[1] = {DC(H)};
    ir_type t3 = ir_type_make(IR_F32, 3, dx3), th = ir_type_make(IR_F32, 1, dh);
    int x = ir_input(g, "x", t3);
    add_f32(&b, "x", 3, dx3, B, S, -2, 2, 21, 0);
    int dy = ir_input(g, "dy", t3);
    add_f32(&b, "dy", 3, dx3, B, S, -1, 1, 22, 0);
    int gamma = ir_param(g, "gamma", th);
    add_f32(&b, "gamma", 1, dh, B, S, 0.5, 1.5, 23, 1);
    ir_attrs a = {0}, none = {0};
    a.eps = 1e-12;
    int dx = ir_add(g, IR_OP_LAYERNORM_DX, (int[]){x, gamma, dy}, 3, &a, NULL, &t3);
    ir_set_output(g, "dx", dx);
    ir_set_output(g, "dgamma",
                  ir_add(g, IR_OP_LAYERNORM_DGAMMA, (int[]){x, dy}, 2, &a, NULL, &th));
    if (variant == LNB_READ_BETWEEN)
        ir_set_output(g, "gg",
                      ir_add(g, IR_OP_GELU_GRAD, (int[]){x, dx}, 2, &none, NULL, &t3));
    ir_set_output(g, "dbeta", ir_add(g, IR_OP_REDUCE_SUM, &dy, 1, &none, NULL, &th));
    if (variant == LNB_ALL)
        ir_set_output(g, "dbias", ir_add(g, IR_OP_REDUCE_SUM, &dx, 1, &none, NULL, &th));
    if (variant == LNB_NO_BIAS)
        ir_set_output(g, "gg",
                      ir_add(g, IR_OP_GELU_GRAD, (int[]){x, dx}, 2, &none, NULL, &t3));
    cr_assert(!g->failed, "%s", g->err.msg);
    return b;
}

/* The checks of a region with several results (the backward rule's): the printed form
 * reads back to the same graph; the fused graph against the reference, 1 and 2
 * threads; every output with the bits of the kernels that compute it alone, 1 and 3
 * threads; and expanding the regions (autodiff does so) gives the ops back, and their
 * bits. */
static void expect_gradient_regions(const ir_graph *unfused, const ir_graph *fused,
                                    const built *b, const char *what)
{
    char *text = ir_print_str(fused);
    bc_err e = {{0}};
    ir_graph *back = text ? ir_parse(text, "fused.ir", &e) : NULL;
    cr_expect(back && back->n == fused->n, "%s: %s", what, e.msg);
    ir_graph_free(back);
    free(text);
    char msg[512];
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(
            tu_jit_vs_ref(fused, &b->p, &b->in, threads, 1e-5, 1e-5, msg, sizeof msg) == 0,
            "%s, %d threads: %s", what, threads, msg);
    expect_all_outputs_same(unfused, fused, b, what);
    ir_graph *expanded = ir_graph_clone(fused);
    cr_assert_eq(pass_unfuse(&expanded, &e), 0, "%s", e.msg);
    cr_expect_eq(count_op(expanded, IR_OP_FUSED) + count_op(expanded, IR_OP_RESULT), 0,
                 "%s", what);
    expect_all_outputs_same(unfused, expanded, b, what);
    ir_graph_free(expanded);
}

Test(codegen_fuse, backward_computes_a_layernorms_gradients_in_one_kernel, .timeout = 300)
{
    /* B, S, H: ones, primes, a row shorter than a vector, two column blocks with a
     * scalar tail, BERT's 768 */
    static const int64_t cases[][3] = {
        {1, 1, 1}, {2, 3, 5}, {3, 7, 17}, {2, 5, 131}, {1, 9, 768}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int variant = LNB_ALL; variant <= LNB_READ_BETWEEN; variant++) {
            int64_t B = cases[c][0], S = cases[c][1], H = cases[c][2];
            char what[160];
            snprintf(what, sizeof what, "backward region B=%lld S=%lld H=%lld variant %d",
                     (long long)B, (long long)S, (long long)H, variant);
            built b = build_lnb(B, S, H, variant);
            ir_graph *unfused, *fused;
            both_pipelines(&b, &unfused, &fused);
            int region = variant != LNB_READ_BETWEEN;
            cr_expect_eq(count_op(fused, IR_OP_FUSED), region, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_RESULT),
                         region ? (variant == LNB_ALL ? 3 : 2) : 0, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_LAYERNORM_DX), !region, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_LAYERNORM_DGAMMA), !region, "%s", what);
            expect_gradient_regions(unfused, fused, &b, what);
            ir_graph_free(unfused);
            ir_graph_free(fused);
            free_built(&b);
        }
}

/* A weight gradient and its bias gradient: dW = matmul(dy, x) {ta=1} over the rows of
 * dy [B, S, M] and x [B, S, N] (each reshaped to [B S, *]) and db = reduce_sum(dy) [M],
 * each an output. BG_AFTER: dy [S, M] and x [S, N] 2-D, read directly, and db computed
 * after dW (so the region's value is db, and dW a further result); BG_EPILOGUE: dW + r
 * (r [M, N], the tied embedding's gradient); BG_READ_BETWEEN: db read by a node between
 * it and dW, which keeps the rule away. */
enum { BG_PLAIN, BG_AFTER, BG_EPILOGUE, BG_READ_BETWEEN };

static built build_bias_grad(int64_t B, int64_t S, int64_t M, int64_t N, int variant)
{
    built b = new_built("fuse_bias_grad");
    ir_graph *g = b.g;
    int flat = variant != BG_AFTER;
    ir_dim ddy[3] = {DB, DS, DC(M)}, dx[3] = {DB, DS, DC(N)}, dm[1] = {DC(M)};
    ir_dim rows[2] = {ir_dim_mul(DB, DS), DC(M)}, rows_x[2] = {rows[0], DC(N)};
    ir_dim *ty = flat ? ddy : ddy + 1, *tx = flat ? dx : dx + 1;
    int rank = flat ? 3 : 2;
    int dy = ir_input(g, "dy", ir_type_make(IR_F32, rank, ty));
    add_f32(&b, "dy", rank, ty, B, S, -1, 1, 41, 0);
    int x = ir_input(g, "x", ir_type_make(IR_F32, rank, tx));
    add_f32(&b, "x", rank, tx, B, S, -2, 2, 42, 0);
    ir_attrs none = {0};
    ir_type tm = ir_type_make(IR_F32, 1, dm);
    int db = -1;
    if (variant != BG_AFTER) {
        db = ir_add(g, IR_OP_REDUCE_SUM, &dy, 1, &none, NULL, &tm);
        ir_set_output(g, "db", db);
    }
    if (variant == BG_READ_BETWEEN)
        ir_set_output(g, "db2", ir_scale(g, db, 2.0));
    int a = flat ? ir_reshape(g, dy, 2, rows) : dy,
        xr = flat ? ir_reshape(g, x, 2, rows_x) : x;
    int dw = ir_matmul(g, a, xr, 1, 0);
    if (variant == BG_EPILOGUE) {
        ir_dim dr[2] = {DC(M), DC(N)};
        int r = ir_input(g, "r", ir_type_make(IR_F32, 2, dr));
        add_f32(&b, "r", 2, dr, B, S, -1, 1, 43, 0);
        dw = ir_addv(g, dw, r);
    }
    ir_set_output(g, "dw", dw);
    if (variant == BG_AFTER)
        ir_set_output(g, "db", ir_add(g, IR_OP_REDUCE_SUM, &dy, 1, &none, NULL, &tm));
    cr_assert(!g->failed, "%s", g->err.msg);
    return b;
}

Test(codegen_fuse, backward_sums_a_bias_gradient_as_the_weight_gradient_packs_dy,
     .timeout = 300)
{
    /* B, S, M, N: ones, primes, rows past the 192-row K block (202, 211), M past the
     * 192-row M block and off the 8-row tile, N past the 768-column N block (769, 800:
     * units with n0 > 0, which must not sum) and off the 48-column tile */
    static const int64_t cases[][4] = {{1, 1, 1, 1},     {2, 3, 5, 7},
                                       {1, 13, 17, 47},  {2, 101, 193, 97},
                                       {1, 211, 9, 769}, {3, 67, 200, 800}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int variant = BG_PLAIN; variant <= BG_READ_BETWEEN; variant++) {
            int64_t B = cases[c][0], S = cases[c][1], M = cases[c][2], N = cases[c][3];
            char what[160];
            snprintf(what, sizeof what,
                     "bias gradient B=%lld S=%lld M=%lld N=%lld variant %d", (long long)B,
                     (long long)S, (long long)M, (long long)N, variant);
            built b = build_bias_grad(B, S, M, N, variant);
            ir_graph *unfused, *fused;
            both_pipelines(&b, &unfused, &fused);
            int region = variant != BG_READ_BETWEEN;
            cr_expect_eq(count_op(fused, IR_OP_FUSED), region, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_RESULT), region, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_REDUCE_SUM), !region, "%s", what);
            cr_expect_eq(count_op(fused, IR_OP_MATMUL), variant == BG_READ_BETWEEN, "%s",
                         what);
            expect_gradient_regions(unfused, fused, &b, what);
            ir_graph_free(unfused);
            ir_graph_free(fused);
            free_built(&b);
        }
}

/* Where the bias gradient could join both the layernorm's gradients (summed as dx is
 * written) and the weight gradient that reads dx, the layernorm's region keeps it. */
Test(codegen_fuse, a_bias_gradient_of_a_layernorms_dx_stays_with_the_layernorm)
{
    built b = build_lnb(2, 5, 131, LNB_ALL);
    ir_graph *g = b.g;
    ir_dim rows[2] = {ir_dim_mul(DB, DS), DC(131)};
    int x = ir_find_named(g, IR_OP_INPUT, "x"), dx = -1;
    for (int i = 0; i < g->n; i++)
        dx = g->nodes[i].op == IR_OP_LAYERNORM_DX ? i : dx;
    ir_set_output(
        g, "dw", ir_matmul(g, ir_reshape(g, dx, 2, rows), ir_reshape(g, x, 2, rows), 1, 0));
    cr_assert(!g->failed, "%s", g->err.msg);
    ir_graph *unfused, *fused;
    both_pipelines(&b, &unfused, &fused);
    cr_expect_eq(count_op(fused, IR_OP_FUSED), 1);
    cr_expect_eq(count_op(fused, IR_OP_RESULT), 3);
    cr_expect_eq(count_op(fused, IR_OP_MATMUL), 1);
    expect_all_outputs_same(unfused, fused, &b,
                            "layernorm gradients and a weight gradient");
    ir_graph_free(unfused);
    ir_graph_free(fused);
    free_built(&b);
}

/* A weight gradient's region whose reduce_sum sums something other than the matmul's
 * lhs is refused with a reason. */
Test(codegen_fuse, a_bias_sum_of_another_value_is_refused)
{
    ir_graph *g = ir_graph_new("bad_bias_grad");
    ir_dim d8[2] = {DS, DC(8)}, d5[2] = {DS, DC(5)}, dm[1] = {DC(8)},
           dw[2] = {DC(8), DC(5)};
    int dy = ir_input(g, "dy", ir_type_make(IR_F32, 2, d8));
    int x = ir_input(g, "x", ir_type_make(IR_F32, 2, d5));
    int other = ir_input(g, "other", ir_type_make(IR_F32, 2, d8));
    char body[] =
        "%3 = reduce_sum %2 : f32[8]; %4 = matmul %0, %1 {ta=1, tb=0} : f32[8, 5]";
    ir_type t = ir_type_make(IR_F32, 2, dw), tm = ir_type_make(IR_F32, 1, dm);
    int v = ir_add(g, IR_OP_FUSED, (int[]){dy, x, other}, 3, NULL, body, &t);
    ir_attrs a = {0};
    a.index = 3;
    ir_set_output(g, "dw", v);
    ir_set_output(g, "db", ir_add(g, IR_OP_RESULT, &v, 1, &a, NULL, &tm));
    expect_engine_refuses(g, "must sum the matmul's lhs");
}

/* A gradient region that computes something it writes nowhere is refused with a reason. */
Test(codegen_fuse, a_backward_region_with_an_unread_statement_is_refused)
{
    ir_graph *g = ir_graph_new("bad_lnb");
    ir_dim dx[2] = {DS, DC(8)}, dh[1] = {DC(8)};
    int x = ir_input(g, "x", ir_type_make(IR_F32, 2, dx));
    int dy = ir_input(g, "dy", ir_type_make(IR_F32, 2, dx));
    int gamma = ir_param(g, "gamma", ir_type_make(IR_F32, 1, dh));
    char body[] = "%3 = layernorm_dx %0, %1, %2 {eps=1e-12} : f32[S, 8]; "
                  "%4 = layernorm_dgamma %0, %2 {eps=1e-12} : f32[8]";
    ir_type t = ir_type_make(IR_F32, 1, dh);
    ir_set_output(g, "y", ir_add(g, IR_OP_FUSED, (int[]){x, gamma, dy}, 3, NULL, body, &t));
    expect_engine_refuses(g, "body statement 1 (layernorm_dx) is computed for nothing");
}

/* A region that is not elementwise ops before a layernorm is refused with a reason. */
Test(codegen_fuse, a_layernorm_region_reading_a_non_elementwise_op_is_refused)
{
    ir_graph *g = ir_graph_new("bad_ln");
    ir_dim dx[2] = {DS, DC(8)}, dh[1] = {DC(8)};
    int x = ir_input(g, "x", ir_type_make(IR_F32, 2, dx));
    int gamma = ir_param(g, "gamma", ir_type_make(IR_F32, 1, dh));
    int beta = ir_param(g, "beta", ir_type_make(IR_F32, 1, dh));
    char body[] = "%3 = transpose %0 {perm=[1, 0]} : f32[8, S]; %4 = reshape %3 : f32[S, 8]; "
                  "%5 = layernorm %4, %1, %2 {eps=1e-12} : f32[S, 8]";
    int in[3] = {x, gamma, beta};
    ir_type t = ir_type_make(IR_F32, 2, dx);
    ir_set_output(g, "y", ir_add(g, IR_OP_FUSED, in, 3, NULL, body, &t));
    expect_engine_refuses(g, "(transpose) is not an elementwise op of the layernorm");
}

/* The mask's values are checked inside a region as outside: 2 is an error naming it. */
Test(codegen_fuse, a_bad_mask_value_inside_a_region_is_refused)
{
    built b = build_attention(2, 5, 2, 3, 1, 0);
    bc_err e = {{0}};
    cr_assert_eq(pass_run_pipeline(&b.g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(count_op(b.g, IR_OP_FUSED), 1);
    ((int64_t *)rt_list_find(&b.in, "attention_mask")->data)[7] = 2;
    cg_engine *x = cg_engine_new(b.g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(x, "%s", e.msg);
    rt_tensor_list out;
    rt_list_init(&out);
    cr_expect_eq(cg_engine_run(x, &b.p, &b.in, 1, &out, &e), -1);
    cr_expect(strstr(e.msg, "attention_mask") && strstr(e.msg, "value 2 at flat index 7"),
              "%s", e.msg);
    rt_list_free(&out);
    cg_engine_free(x);
    rt_interp_opts io = {0, 1};
    cr_expect_eq(rt_interp_run(b.g, &b.p, &b.in, &io, &out, &e), -1);
    cr_expect(strstr(e.msg, "value 2 at flat index 7"), "%s", e.msg);
    rt_list_free(&out);
    free_built(&b);
}

/* Two layers' regions that differ only in their dropout stream share one kernel (the
 * index comes at run time), and each keeps its own stream: the unfused bits. */
Test(codegen_fuse, regions_differing_in_the_dropout_stream_share_a_kernel)
{
    built b = build(2, 9, 33, 33, 0, 1, E_BIAS_DROP_RES); /* K = N: the same shapes */
    ir_graph *g = b.g;
    int y = g->outs[0].value;
    /* a second layer on the first one's output, with its own stream */
    ir_dim dw[2] = {DC(33), DC(33)};
    int w2 = ir_param(g, "w2", ir_type_make(IR_F32, 2, dw));
    add_f32(&b, "w2", 2, dw, 2, 9, -1, 1, 30, 1);
    int bias2 = ir_param(g, "b2", ir_type_make(IR_F32, 1, (ir_dim[]){DC(33)}));
    add_f32(&b, "b2", 1, (ir_dim[]){DC(33)}, 2, 9, -1, 1, 31, 1);
    ir_attrs a = {0};
    a.p = 0.3;
    a.index = 9;
    int seed = ir_find_named(g, IR_OP_INPUT, "seed");
    int d = ir_add(g, IR_OP_DROPOUT, (int[]){ir_addv(g, ir_matmul(g, y, w2, 0, 1), bias2), seed},
                   2, &a, NULL, NULL);
    ir_set_output(g, "y", ir_addv(g, d, ir_find_named(g, IR_OP_INPUT, "r")));
    cr_assert(!g->failed, "%s", g->err.msg);
    bc_err e = {{0}};
    ir_graph *unfused = ir_graph_clone(g), *fused = ir_graph_clone(g);
    cr_assert_eq(pass_run_pipeline(&unfused, PASS_BASE_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&fused, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(count_op(fused, IR_OP_FUSED), 2);
    rt_plan plan;
    cr_assert_eq(rt_plan_build(fused, &plan, &e), 0, "%s", e.msg);
    int k[2], nk = 0;
    int64_t imm[2];
    for (int i = 0; i < plan.nsteps; i++)
        if (fused->nodes[plan.steps[i].node].op == IR_OP_FUSED && nk < 2) {
            k[nk] = plan.steps[i].kernel;
            imm[nk++] = plan.steps[i].imm;
        }
    cr_expect_eq(k[0], k[1], "one kernel for both regions");
    cr_expect(imm[0] == 5 && imm[1] == 9, "streams %lld, %lld", (long long)imm[0],
              (long long)imm[1]);
    rt_plan_free(&plan);
    rt_tensor_list base, f;
    run_jit(unfused, &b, 1, &base);
    run_jit(fused, &b, 2, &f);
    expect_same_bits(&f, &base, "two layers with their own dropout streams");
    rt_list_free(&base);
    rt_list_free(&f);
    ir_graph_free(unfused);
    ir_graph_free(fused);
    free_built(&b);
}

/* The epilogue, attention, layout and bias-gradient kernels on AVX2 (6 x 16 tiles, 8
 * lanes) and SSE (4 lanes): the fused graph against the unfused one on the same target,
 * bit for bit. */
Test(codegen_fuse, avx2_and_sse_targets_give_the_unfused_bits, .timeout = 300)
{
    const cg_options targets[2] = {{"x86-64-v3", "+avx,+avx2,+fma,+f16c", NULL, 0, 0},
                                   {"x86-64", "+sse2", NULL, 0, 0}};
    for (int t = 0; t < 2; t++)
        for (int c = 0; c < 4; c++) {
            built b = c == 3   ? build_bias_grad(2, 101, 13, 23, BG_EPILOGUE)
                      : c == 2 ? build_layout(2, 13, 2, 11)
                      : c == 1 ? build_attention(2, 13, 2, 11, 2, 0)
                               : build(2, 7, 300, 23, 0, 1, E_BIAS_DROP_RES);
            bc_err e = {{0}};
            ir_graph *u, *f;
            both_pipelines(&b, &u, &f);
            cr_assert_eq(count_op(f, IR_OP_FUSED), c == 2 ? 4 : 1);
            rt_tensor_list out[2];
            for (int k = 0; k < 2; k++) {
                cg_engine *x = cg_engine_new(k ? f : u, CG_BACKEND_JIT, &targets[t], &e);
                cr_assert_not_null(x, "%s", e.msg);
                rt_list_init(&out[k]);
                cr_assert_eq(cg_engine_run(x, &b.p, &b.in, 2, &out[k], &e), 0, "%s", e.msg);
                cg_engine_free(x);
            }
            expect_same_outputs(&out[0], &out[1], targets[t].cpu);
            rt_list_free(&out[0]);
            rt_list_free(&out[1]);
            ir_graph_free(u);
            ir_graph_free(f);
            free_built(&b);
        }
}
