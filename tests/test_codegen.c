/* test_codegen.c: every generated kernel against the reference interpreter, on odd
 * shapes (1, primes, sizes that are not multiples of the vector width or tile), with 1
 * and 2 threads, and bit-identical results for 1, 2 and 3 threads. Each case builds a
 * tiny graph around one op; the last test runs a whole model (forward and backward). */
#include <criterion/criterion.h>
#include <string.h>

#include "../codegen/cg.h"
#include "../codegen/codegen.h"
#include "../codegen/engine.h"
#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "../train/batch.h"
#include "tests/util.h"

#define DB IR_DIM_B
#define DS IR_DIM_S
#define DC(c) ir_dconst(c)

/* B and S bound through an i64 input "ids" of shape [B, S]. */
static int ids_input(ir_graph *g)
{
    ir_dim d[2] = {IR_DIM_B, IR_DIM_S};
    return ir_input(g, "ids", ir_type_make(IR_I64, 2, d));
}

/* Same outputs, same bits, whatever the thread count. */
static void expect_thread_invariant(const ir_graph *g, const rt_tensor_list *params,
                                    const rt_tensor_list *inputs)
{
    bc_err e;
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(x, "%s", e.msg);
    rt_tensor_list one;
    rt_list_init(&one);
    cr_assert_eq(cg_engine_run(x, params, inputs, 1, &one, &e), 0, "%s", e.msg);
    for (int threads = 2; threads <= 3; threads++) {
        rt_tensor_list many;
        rt_list_init(&many);
        cr_assert_eq(cg_engine_run(x, params, inputs, threads, &many, &e), 0, "%s", e.msg);
        for (int i = 0; i < one.n; i++) {
            const rt_tensor *a = &one.t[i], *b = rt_list_cfind(&many, a->name);
            cr_assert_not_null(b, "%s", a->name);
            cr_expect(rt_nbytes(a) == rt_nbytes(b) &&
                          !memcmp(a->data, b->data, rt_nbytes(a)),
                      "output %s differs between 1 and %d threads", a->name, threads);
        }
        rt_list_free(&many);
    }
    rt_list_free(&one);
    cg_engine_free(x);
}

static void check(ir_graph *g, rt_tensor_list *params, rt_tensor_list *inputs, double rtol)
{
    char msg[512];
    cr_assert(!g->failed, "building the graph: %s", g->err.msg);
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(tu_jit_vs_ref(g, params, inputs, threads, rtol, 1e-6, msg, sizeof msg) ==
                      0,
                  "threads %d: %s", threads, msg);
    expect_thread_invariant(g, params, inputs);
    ir_graph_free(g);
    rt_list_free(params);
    rt_list_free(inputs);
}

/* ---- a small harness: a graph with inputs and parameters of given shapes ---- */

typedef struct fx {
    ir_graph *g;
    rt_tensor_list p, in;
    int64_t B, S;
    uint64_t seed;
} fx;

static void fx_init(fx *f, int64_t B, int64_t S)
{
    f->g = ir_graph_new("t");
    rt_list_init(&f->p);
    rt_list_init(&f->in);
    f->B = B;
    f->S = S;
    f->seed = 1;
    ids_input(f->g);
    int64_t bs[2] = {B, S};
    tu_add_rand_i64(&f->in, "ids", 2, bs, 0, 1, f->seed++);
}

static void eval_shape(const fx *f, int rank, const ir_dim *d, int64_t *shape)
{
    for (int i = 0; i < rank; i++)
        shape[i] = ir_dim_eval(d[i], f->B, f->S);
}

/* An f32 input (or parameter, if every dim is constant and param is set) of uniform
 * values in [lo, hi). */
static int fx_f32(fx *f, const char *name, int rank, const ir_dim *d, double lo, double hi)
{
    int64_t shape[IR_MAX_RANK] = {0};
    eval_shape(f, rank, d, shape);
    tu_add_rand_f32(&f->in, name, rank, shape, lo, hi, f->seed++);
    return ir_input(f->g, name, ir_type_make(IR_F32, rank, d));
}

static int fx_param(fx *f, const char *name, int rank, const ir_dim *d, double lo,
                    double hi)
{
    int64_t shape[IR_MAX_RANK] = {0};
    eval_shape(f, rank, d, shape);
    tu_add_rand_f32(&f->p, name, rank, shape, lo, hi, f->seed++);
    return ir_param(f->g, name, ir_type_make(IR_F32, rank, d));
}

/* An i64 input of uniform integers in [lo, hi); returns its data through *data. */
static int fx_i64(fx *f, const char *name, int rank, const ir_dim *d, int64_t lo,
                  int64_t hi, int64_t **data, int64_t *n)
{
    int64_t shape[IR_MAX_RANK] = {0};
    eval_shape(f, rank, d, shape);
    tu_add_rand_i64(&f->in, name, rank, shape, lo, hi, f->seed++);
    rt_tensor *t = rt_list_find(&f->in, name);
    if (data)
        *data = t->data;
    if (n)
        *n = rt_numel(t);
    return ir_input(f->g, name, ir_type_make(IR_I64, rank, d));
}

static void fx_check(fx *f, double rtol)
{
    check(f->g, &f->p, &f->in, rtol);
}

static int node(fx *f, ir_opcode op, const int *in, int nin, const ir_attrs *a,
                const ir_type *t)
{
    return ir_add(f->g, op, in, nin, a, NULL, t);
}

static const int64_t shapes[][3] = {{1, 1, 1},
                                    {2, 3, 7},
                                    {3, 5, 17},
                                    {1, 13, 33},
                                    {3, 37, 67}}; /* B, S, H; the last has > 2 blocks */
#define NSHAPES (sizeof shapes / sizeof *shapes)

/* ---- the table ---- */

Test(codegen, every_op_computed_by_a_kernel_and_no_other_has_a_lowering)
{
    /* The op table's code column: params and inputs are bound, reshape is a view. */
    for (int op = 0; op < IR_OP_COUNT; op++)
        cr_expect_eq(cg_lowerings[op].lower != NULL, ir_ops[op].code == IR_CODE_KERNEL,
                     "op %s: lowering %s", ir_ops[op].name,
                     cg_lowerings[op].lower ? "present" : "missing");
}

/* A node its kernel cannot compute is refused by the row's check, which names the
 * kernel. The IR verifier refuses such a matmul when it is built, so the operand's type
 * is changed afterwards. */
Test(codegen, a_matmul_on_non_f32_operands_is_refused_naming_the_kernel)
{
    ir_graph *g = ir_graph_new("t");
    ids_input(g);
    ir_dim da[3] = {DB, DS, DC(4)}, db[2] = {DC(4), DC(3)};
    int a = ir_input(g, "a", ir_type_make(IR_F32, 3, da));
    int b = ir_param(g, "w", ir_type_make(IR_F32, 2, db));
    ir_set_output(g, "y", ir_matmul(g, a, b, 0, 0));
    cr_assert(!g->failed, "%s", g->err.msg);
    g->nodes[a].type.dtype = IR_I64;
    rt_plan plan;
    bc_err e;
    cr_assert_eq(rt_plan_build(g, &plan, &e), 0, "%s", e.msg);
    cg_options o = {.prefix = "chk"};
    cr_expect_eq(cg_emit_file(g, &plan, &o, "llvm-raw", "/dev/null", &e), -1);
    cr_expect_str_eq(e.msg, "kernel chk_k0_matmul: matmul: operands must be f32");
    rt_plan_free(&plan);
    ir_graph_free(g);
}

/* ---- elementwise and broadcast ---- */

Test(codegen, add_with_suffix_broadcast_on_odd_shapes)
{
    static const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {2, 13, 17}, {1, 37, 33}};
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        int64_t B = sizes[c][0], S = sizes[c][1], H = sizes[c][2];
        ir_graph *g = ir_graph_new("t");
        int ids = ids_input(g);
        ir_dim d3[3] = {IR_DIM_B, IR_DIM_S, ir_dconst(H)};
        int x = ir_input(g, "x", ir_type_make(IR_F32, 3, d3));
        int bias = ir_param(g, "bias", ir_type_make(IR_F32, 1, &d3[2]));
        ir_set_output(g, "y", ir_addv(g, x, bias));
        ir_set_output(g, "z", ir_addv(g, x, x));
        (void)ids;
        rt_tensor_list p, in;
        rt_list_init(&p);
        rt_list_init(&in);
        int64_t bs[2] = {B, S}, bsh[3] = {B, S, H};
        tu_add_rand_i64(&in, "ids", 2, bs, 0, 1, 1);
        tu_add_rand_f32(&in, "x", 3, bsh, -2, 2, 2);
        tu_add_rand_f32(&p, "bias", 1, &H, -2, 2, 3);
        check(g, &p, &in, 1e-6);
    }
}

/* add and mul with b the same shape, [H], [S, H] and a scalar */
Test(codegen, add_and_mul_broadcast_every_suffix)
{
    for (size_t c = 0; c < NSHAPES; c++) {
        fx f;
        fx_init(&f, shapes[c][0], shapes[c][1]);
        ir_dim d[3] = {DB, DS, DC(shapes[c][2])};
        int x = fx_f32(&f, "x", 3, d, -2, 2), y = fx_f32(&f, "y", 3, d, -2, 2);
        int h = fx_param(&f, "h", 1, &d[2], -2, 2), sh = fx_f32(&f, "sh", 2, &d[1], -2, 2);
        int s = fx_f32(&f, "s", 0, NULL, -2, 2);
        ir_set_output(f.g, "add_same", ir_addv(f.g, x, y));
        ir_set_output(f.g, "mul_same", ir_mul(f.g, x, y));
        ir_set_output(f.g, "add_h", ir_addv(f.g, x, h));
        ir_set_output(f.g, "mul_h", ir_mul(f.g, x, h));
        ir_set_output(f.g, "add_sh", ir_addv(f.g, x, sh));
        ir_set_output(f.g, "mul_sh", ir_mul(f.g, x, sh));
        ir_set_output(f.g, "add_s", ir_addv(f.g, x, s));
        ir_set_output(f.g, "mul_s", ir_mul(f.g, x, s));
        fx_check(&f, 1e-6);
    }
}

Test(codegen, scale_and_fill)
{
    for (size_t c = 0; c < NSHAPES; c++) {
        fx f;
        fx_init(&f, shapes[c][0], shapes[c][1]);
        ir_dim d[3] = {DB, DS, DC(shapes[c][2])};
        int x = fx_f32(&f, "x", 3, d, -3, 3);
        ir_set_output(f.g, "scaled", ir_scale(f.g, x, -0.37));
        ir_attrs a = {0};
        a.scale = 2.5;
        ir_type t = ir_type_make(IR_F32, 3, d);
        ir_set_output(f.g, "filled", node(&f, IR_OP_FILL, NULL, 0, &a, &t));
        fx_check(&f, 1e-6);
    }
}

/* gelu, gelu_tanh and tanh over [-10, 10] (both saturations included) */
Test(codegen, gelu_gelu_tanh_and_tanh)
{
    for (size_t c = 0; c < NSHAPES; c++) {
        fx f;
        fx_init(&f, shapes[c][0], shapes[c][1]);
        ir_dim d[3] = {DB, DS, DC(shapes[c][2])};
        int x = fx_f32(&f, "x", 3, d, -10, 10);
        ir_set_output(f.g, "gelu", ir_unary(f.g, IR_OP_GELU, x));
        ir_set_output(f.g, "gelu_tanh", ir_unary(f.g, IR_OP_GELU_TANH, x));
        ir_set_output(f.g, "tanh", ir_unary(f.g, IR_OP_TANH, x));
        fx_check(&f, 1e-5);
    }
}

Test(codegen, gelu_grad_gelu_tanh_grad_and_tanh_grad)
{
    for (size_t c = 0; c < NSHAPES; c++) {
        fx f;
        fx_init(&f, shapes[c][0], shapes[c][1]);
        ir_dim d[3] = {DB, DS, DC(shapes[c][2])};
        int x = fx_f32(&f, "x", 3, d, -6, 6), dy = fx_f32(&f, "dy", 3, d, -2, 2);
        int y = fx_f32(&f, "y", 3, d, -1, 1);
        int in[2] = {x, dy};
        ir_set_output(f.g, "gelu_grad", node(&f, IR_OP_GELU_GRAD, in, 2, NULL, NULL));
        ir_set_output(f.g, "gelu_tanh_grad",
                      node(&f, IR_OP_GELU_TANH_GRAD, in, 2, NULL, NULL));
        int in2[2] = {y, dy};
        ir_set_output(f.g, "tanh_grad", node(&f, IR_OP_TANH_GRAD, in2, 2, NULL, NULL));
        fx_check(&f, 1e-5);
    }
}

/* The keep decisions must match the reference's hash exactly: x is kept away from 0,
 * so one differing decision is an error of at least 1. */
Test(codegen, dropout_keeps_the_reference_elements)
{
    static const double ps[] = {0.0, 0.1, 0.5, 0.9};
    for (size_t c = 0; c < NSHAPES; c++)
        for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
            fx f;
            fx_init(&f, shapes[c][0], shapes[c][1]);
            ir_dim d[3] = {DB, DS, DC(shapes[c][2])};
            int x = fx_f32(&f, "x", 3, d, 1, 2);
            int seed = fx_i64(&f, "seed", 0, NULL, 0, INT64_MAX, NULL, NULL);
            ir_attrs a = {0};
            a.p = ps[k];
            a.index = 3 + (int64_t)k;
            int in[2] = {x, seed};
            ir_set_output(f.g, "y", node(&f, IR_OP_DROPOUT, in, 2, &a, NULL));
            fx_check(&f, 1e-6);
        }
}

/* ---- data movement ---- */

/* ids hit the first and the last row of the table; the table is [11, H] */
Test(codegen, gather_rows_including_first_and_last)
{
    for (size_t c = 0; c < NSHAPES; c++) {
        fx f;
        fx_init(&f, shapes[c][0], shapes[c][1]);
        ir_dim tab[2] = {DC(11), DC(shapes[c][2])}, bs[2] = {DB, DS};
        int t = fx_param(&f, "table", 2, tab, -2, 2);
        int64_t *ids, n;
        int tok = fx_i64(&f, "tok", 2, bs, 0, 11, &ids, &n);
        ids[0] = 0;
        ids[n - 1] = 10;
        ir_set_output(f.g, "y", ir_gather(f.g, t, tok));
        fx_check(&f, 0);
    }
}

/* position embeddings [16, H] -> [S, H], for S = 1, 7 and 16 (max-position) */
Test(codegen, prefix_rows_and_pad_rows_for_s_1_to_max_position)
{
    static const int64_t ss[] = {1, 7, 16};
    for (size_t c = 0; c < sizeof ss / sizeof *ss; c++)
        for (int64_t h = 1; h <= 300; h += 299) {
            fx f;
            fx_init(&f, 2, ss[c]);
            ir_dim pd[2] = {DC(16), DC(h)}, sd[2] = {DS, DC(h)};
            int pos = fx_param(&f, "pos", 2, pd, -2, 2);
            ir_set_output(f.g, "prefix", ir_prefix_rows(f.g, pos, DS));
            int x = fx_f32(&f, "x", 2, sd, -2, 2);
            ir_type t = ir_type_make(IR_F32, 2, pd);
            ir_set_output(f.g, "padded", node(&f, IR_OP_PAD_ROWS, &x, 1, NULL, &t));
            fx_check(&f, 0);
        }
}

Test(codegen, transpose_of_rank_1_to_6)
{
    static const int perms[][IR_MAX_RANK] = {
        {0},          {1, 0},          {2, 0, 1},         {0, 2, 1, 3},
        {3, 1, 2, 0}, {4, 0, 3, 1, 2}, {5, 3, 1, 0, 2, 4}};
    static const int ranks[] = {1, 2, 3, 4, 4, 5, 6};
    for (size_t c = 0; c < NSHAPES; c++)
        for (size_t k = 0; k < sizeof ranks / sizeof *ranks; k++) {
            fx f;
            fx_init(&f, shapes[c][0], shapes[c][1]);
            int r = ranks[k];
            ir_dim d[IR_MAX_RANK] = {DB, DS, DC(shapes[c][2] % 5 + 1), DC(3), DC(2), DC(1)};
            if (r == 1)
                d[0] = DS;
            int x = fx_f32(&f, "x", r, d, -2, 2);
            ir_set_output(f.g, "y", ir_transpose(f.g, x, perms[k]));
            fx_check(&f, 0);
        }
}

Test(codegen, select_and_select_grad_on_every_axis)
{
    for (size_t c = 0; c < NSHAPES; c++) {
        fx f;
        fx_init(&f, shapes[c][0], shapes[c][1]);
        int64_t H = shapes[c][2];
        ir_dim d[3] = {DB, DS, DC(H)};
        int x = fx_f32(&f, "x", 3, d, -2, 2);
        ir_set_output(f.g, "s0", ir_select(f.g, x, 0, 0));
        ir_set_output(f.g, "s1", ir_select(f.g, x, 1, 0));
        ir_set_output(f.g, "s2", ir_select(f.g, x, 2, H - 1));
        ir_dim bh[2] = {DB, DC(H)}, bs[2] = {DB, DS};
        int dy = fx_f32(&f, "dy", 2, bh, -2, 2), dz = fx_f32(&f, "dz", 2, bs, -2, 2);
        ir_type t = ir_type_make(IR_F32, 3, d);
        ir_attrs a1 = {0}, a2 = {0};
        a1.axis = 1;
        a2.axis = 2;
        a2.index = H - 1;
        ir_set_output(f.g, "g1", node(&f, IR_OP_SELECT_GRAD, &dy, 1, &a1, &t));
        ir_set_output(f.g, "g2", node(&f, IR_OP_SELECT_GRAD, &dz, 1, &a2, &t));
        fx_check(&f, 0);
    }
}

/* ---- row reductions ---- */

static const int64_t hs[] = {1, 7, 17, 100, 129, 257, 768}; /* 257, 768: dgamma units wider than 64 */
#define NHS (sizeof hs / sizeof *hs)

Test(codegen, layernorm_and_its_gradients)
{
    for (size_t c = 0; c < NSHAPES; c++)
        for (size_t k = 0; k < NHS; k++) {
            fx f;
            fx_init(&f, shapes[c][0], shapes[c][1]);
            ir_dim d[3] = {DB, DS, DC(hs[k])};
            int x = fx_f32(&f, "x", 3, d, -3, 5), dy = fx_f32(&f, "dy", 3, d, -1, 1);
            int gamma = fx_param(&f, "gamma", 1, &d[2], 0.5, 1.5);
            int beta = fx_param(&f, "beta", 1, &d[2], -1, 1);
            double eps = k % 2 ? 1e-12 : 1e-5;
            ir_set_output(f.g, "y", ir_layernorm(f.g, x, gamma, beta, eps));
            ir_attrs a = {0};
            a.eps = eps;
            int in[3] = {x, gamma, dy};
            ir_set_output(f.g, "dx", node(&f, IR_OP_LAYERNORM_DX, in, 3, &a, NULL));
            int in2[2] = {x, dy};
            ir_set_output(f.g, "dgamma",
                          node(&f, IR_OP_LAYERNORM_DGAMMA, in2, 2, &a, NULL));
            fx_check(&f, 1e-5);
        }
}

/* scores [B, 3, S, S] and [B, S] with a mask of ones, or a random mask whose batch 0 is
 * all padding */
Test(codegen, attn_softmax_with_and_without_padding)
{
    for (size_t c = 0; c < NSHAPES; c++)
        for (int masked = 0; masked <= 1; masked++) {
            fx f;
            fx_init(&f, shapes[c][0], shapes[c][1]);
            ir_dim d4[4] = {DB, DC(3), DS, DS}, bs[2] = {DB, DS};
            int x = fx_f32(&f, "x", 4, d4, -8, 8), x2 = fx_f32(&f, "x2", 2, bs, -8, 8);
            int64_t *m, n;
            int mask = fx_i64(&f, "mask", 2, bs, masked ? 0 : 1, 2, &m, &n);
            for (int64_t i = 0; masked && i < f.S; i++)
                m[i] = 0;
            ir_set_output(f.g, "p", ir_attn_softmax(f.g, x, mask, 0.125));
            ir_set_output(f.g, "p2", ir_attn_softmax(f.g, x2, mask, 1.0));
            fx_check(&f, 1e-5);
        }
}

Test(codegen, softmax_grad)
{
    for (size_t c = 0; c < NSHAPES; c++) {
        fx f;
        fx_init(&f, shapes[c][0], shapes[c][1]);
        ir_dim d4[4] = {DB, DC(3), DS, DS};
        int y = fx_f32(&f, "y", 4, d4, 0, 1), dy = fx_f32(&f, "dy", 4, d4, -1, 1);
        ir_attrs a = {0};
        a.scale = 0.125;
        int in[2] = {y, dy};
        ir_set_output(f.g, "dx", node(&f, IR_OP_SOFTMAX_GRAD, in, 2, &a, NULL));
        fx_check(&f, 1e-5);
    }
}

/* logits [B, S, C] with labels [B, S] (about a third -100), and [B, C] with labels [B];
 * also every label ignored */
Test(codegen, cross_entropy_and_its_gradient)
{
    static const int64_t cs[] = {1, 2, 37, 101};
    for (size_t c = 0; c < NSHAPES; c++)
        for (size_t k = 0; k < sizeof cs / sizeof *cs; k++)
            for (int all_ignored = 0; all_ignored <= 1; all_ignored++) {
                fx f;
                fx_init(&f, shapes[c][0], shapes[c][1]);
                int64_t C = cs[k];
                ir_dim d3[3] = {DB, DS, DC(C)}, bs[2] = {DB, DS}, bc[2] = {DB, DC(C)};
                int lg = fx_f32(&f, "logits", 3, d3, -5, 5),
                    lg2 = fx_f32(&f, "l2", 2, bc, -5, 5);
                int64_t *lab, n, *lab2, n2;
                int lb = fx_i64(&f, "labels", 2, bs, 0, C, &lab, &n);
                int lb2 = fx_i64(&f, "lab2", 1, bs, 0, C, &lab2, &n2);
                for (int64_t i = 0; i < n; i++)
                    if (all_ignored || i % 3 == 1)
                        lab[i] = -100;
                for (int64_t i = 0; i < n2; i++)
                    if (all_ignored)
                        lab2[i] = -100;
                int dloss = fx_f32(&f, "dloss", 0, NULL, 0.5, 2);
                ir_set_output(f.g, "loss", ir_cross_entropy(f.g, lg, lb));
                ir_set_output(f.g, "loss2", ir_cross_entropy(f.g, lg2, lb2));
                int in[3] = {lg, lb, dloss}, in2[3] = {lg2, lb2, dloss};
                ir_set_output(f.g, "dl",
                              node(&f, IR_OP_CROSS_ENTROPY_GRAD, in, 3, NULL, NULL));
                ir_set_output(f.g, "dl2",
                              node(&f, IR_OP_CROSS_ENTROPY_GRAD, in2, 3, NULL, NULL));
                fx_check(&f, 1e-5);
            }
}

/* As above with class weights w[C] in [0, 2): about a third of the labels ignored, every
 * label ignored, or every weight 0 (loss 0, gradient 0); C = 1, primes, and 16 ± 1 (not
 * multiples of the vector width). */
Test(codegen, class_weighted_cross_entropy_and_its_gradient)
{
    static const int64_t cs[] = {1, 3, 15, 17, 101};
    for (size_t c = 0; c < NSHAPES; c++)
        for (size_t k = 0; k < sizeof cs / sizeof *cs; k++)
            for (int mode = 0; mode <= 2; mode++) {
                fx f;
                fx_init(&f, shapes[c][0], shapes[c][1]);
                int64_t C = cs[k];
                ir_dim d3[3] = {DB, DS, DC(C)}, bs[2] = {DB, DS}, bc[2] = {DB, DC(C)};
                ir_dim dc[1] = {DC(C)};
                int lg = fx_f32(&f, "logits", 3, d3, -5, 5),
                    lg2 = fx_f32(&f, "l2", 2, bc, -5, 5);
                int w = fx_f32(&f, "w", 1, dc, 0, 2);
                int64_t *lab, n, *lab2, n2;
                int lb = fx_i64(&f, "labels", 2, bs, 0, C, &lab, &n);
                int lb2 = fx_i64(&f, "lab2", 1, bs, 0, C, &lab2, &n2);
                for (int64_t i = 0; i < n; i++)
                    if (mode == 1 || i % 3 == 1)
                        lab[i] = -100;
                for (int64_t i = 0; i < n2; i++)
                    if (mode == 1)
                        lab2[i] = -100;
                if (mode == 2)
                    memset(rt_list_find(&f.in, "w")->data, 0, sizeof(float) * (size_t)C);
                int dloss = fx_f32(&f, "dloss", 0, NULL, 0.5, 2);
                ir_set_output(f.g, "loss", ir_cross_entropy_weighted(f.g, lg, lb, w));
                ir_set_output(f.g, "loss2", ir_cross_entropy_weighted(f.g, lg2, lb2, w));
                int in[4] = {lg, lb, dloss, w}, in2[4] = {lg2, lb2, dloss, w};
                ir_set_output(f.g, "dl",
                              node(&f, IR_OP_CROSS_ENTROPY_GRAD, in, 4, NULL, NULL));
                ir_set_output(f.g, "dl2",
                              node(&f, IR_OP_CROSS_ENTROPY_GRAD, in2, 4, NULL, NULL));
                fx_check(&f, 1e-5);
            }
}

/* ---- column reductions ---- */

/* [B, S, H] -> [H], [S, H] and [] */
Test(codegen, reduce_sum_over_leading_dims)
{
    for (size_t c = 0; c < NSHAPES; c++)
        for (size_t k = 0; k < NHS; k++) {
            fx f;
            fx_init(&f, shapes[c][0], shapes[c][1]);
            ir_dim d[3] = {DB, DS, DC(hs[k])};
            int x = fx_f32(&f, "x", 3, d, -2, 2);
            ir_type th = ir_type_make(IR_F32, 1, &d[2]),
                    tsh = ir_type_make(IR_F32, 2, &d[1]);
            ir_type t0 = ir_type_make(IR_F32, 0, NULL);
            ir_set_output(f.g, "h", node(&f, IR_OP_REDUCE_SUM, &x, 1, NULL, &th));
            ir_set_output(f.g, "sh", node(&f, IR_OP_REDUCE_SUM, &x, 1, NULL, &tsh));
            ir_set_output(f.g, "all", node(&f, IR_OP_REDUCE_SUM, &x, 1, NULL, &t0));
            fx_check(&f, 1e-5);
        }
}

/* ids [B, S] in [0, V) hitting rows 0 and V - 1, with repeats */
Test(codegen, scatter_add_including_first_and_last_rows)
{
    static const int64_t vs[] = {1, 11};
    for (size_t c = 0; c < NSHAPES; c++)
        for (size_t k = 0; k < NHS; k++)
            for (size_t v = 0; v < 2; v++) {
                fx f;
                fx_init(&f, shapes[c][0], shapes[c][1]);
                int64_t V = vs[v];
                ir_dim d[3] = {DB, DS, DC(hs[k])}, vh[2] = {DC(V), DC(hs[k])};
                int64_t *ids, n;
                int tok = fx_i64(&f, "tok", 2, d, 0, V, &ids, &n); /* [B, S] */
                ids[0] = 0;
                ids[n - 1] = V - 1;
                int dy = fx_f32(&f, "dy", 3, d, -2, 2);
                ir_type t = ir_type_make(IR_F32, 2, vh);
                int in[2] = {tok, dy};
                ir_set_output(f.g, "table", node(&f, IR_OP_SCATTER_ADD, in, 2, NULL, &t));
                fx_check(&f, 1e-5);
            }
}

/* ---- a whole model ---- */

static const char *fixture(const char *file)
{
    static char buf[4][1024];
    static int k;
    char rel[256], *b = buf[k++ % 4];
    snprintf(rel, sizeof rel, "tests/fixtures/run_tiny/%s", file);
    snprintf(b, 1024, "%s", tu_src(rel));
    return b;
}

/* run_tiny with every head and label, forward and backward (the graph `run --grads`
 * executes): JIT against the reference interpreter with the outside check's tolerances
 * (forward rtol 1e-4, gradients 1e-3, atol 1e-6), and the same bits for 1, 2 and 3
 * threads. */
static void run_tiny_case(unsigned build, const float *intent_weights)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load(fixture("model.xml"), &m, &e), 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL | build, &e);
    cr_assert_not_null(g, "%s", e.msg);
    pass_grad_opts go = {0};
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_autodiff(&g, &go, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    rt_tensor_list batch, inputs, ckpt, params, ref, jit;
    rt_list_init(&batch);
    rt_list_init(&inputs);
    rt_list_init(&ckpt);
    rt_list_init(&params);
    cr_assert_eq(rt_st_load(fixture("batch.safetensors"), &batch, &e), 0, "%s", e.msg);
    unsigned present;
    int64_t Bv, Sv;
    cr_assert_eq(tr_batch_prepare(&batch, m.max_position, FE_LABEL_ALL, &inputs, &present,
                                  &Bv, &Sv, NULL, NULL, &e),
                 0, "%s", e.msg);
    if (intent_weights)
        cr_assert_not_null(rt_list_add(&inputs, "intent_class_weights", RT_F32, 1,
                                       (int64_t[]){m.intent_classes}, intent_weights));
    cr_assert_eq(rt_st_load(fixture("weights.safetensors"), &ckpt, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_params_from_checkpoint(g, &ckpt, 0, 0, &params, NULL, NULL, &e), 0,
                 "%s", e.msg);
    rt_list_init(&ref);
    rt_interp_opts o = {0, 1};
    cr_assert_eq(rt_interp_run(g, &params, &inputs, &o, &ref, &e), 0, "%s", e.msg);
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(x, "%s", e.msg);
    for (int threads = 1; threads <= 2; threads++) {
        rt_list_init(&jit);
        cr_assert_eq(cg_engine_run(x, &params, &inputs, threads, &jit, &e), 0, "%s", e.msg);
        cr_expect_eq(jit.n, ref.n);
        int grads = 0;
        for (int i = 0; i < ref.n; i++) {
            const rt_tensor *r = &ref.t[i], *j = rt_list_cfind(&jit, r->name);
            cr_assert_not_null(j, "%s missing from the JIT's outputs", r->name);
            int is_grad = !strncmp(r->name, "grad.", 5);
            grads += is_grad;
            double mr = 0, err = tu_max_err(j, r, &mr),
                   tol = (is_grad ? 1e-3 : 1e-4) * mr + 1e-6;
            cr_expect(err >= 0 && err <= tol,
                      "threads %d: %s: max error %g > %g (max |ref| %g)", threads, r->name,
                      err, tol, mr);
        }
        cr_expect_gt(grads, 10, "the backward graph's gradients are among the outputs");
        rt_list_free(&jit);
    }
    cg_engine_free(x);
    expect_thread_invariant(g, &params, &inputs);
    rt_list_free(&ref);
    rt_list_free(&batch);
    rt_list_free(&inputs);
    rt_list_free(&ckpt);
    rt_list_free(&params);
    ir_graph_free(g);
}

Test(codegen, run_tiny_forward_and_backward_match_the_reference, .timeout = 120)
{
    run_tiny_case(0, NULL);
}

/* The same with the class-weighted intent loss (FE_BUILD_INTENT_WEIGHTS). */
Test(codegen, run_tiny_with_intent_class_weights_matches_the_reference, .timeout = 120)
{
    static const float w[5] = {2.0f, 0.5f, 1.0f, 3.0f, 0.25f};
    run_tiny_case(FE_BUILD_INTENT_WEIGHTS, w);
}
