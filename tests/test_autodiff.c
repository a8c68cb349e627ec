/* test_autodiff.c: the autodiff pass (passes/autodiff.c). Every forward op's VJP against
 * central finite differences in double precision on odd shapes; a VJP row for every
 * differentiable op; the whole model's parameter gradients (five heads, tied word
 * embeddings, padding) against finite differences; gradients against PyTorch autograd on
 * the fixtures; frozen and unused parameters, a value used twice, a graph without a
 * loss; and training-mode dropout (reproducible, p of the elements dropped). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "../train/batch.h"
#include "util.h"

/* A shape literal: SH(3, 5, 7). */
#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- a seeded generator (splitmix64) ----------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double urand(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/* ---- running graphs ---------------------------------------------------------------- */

static void run_graph(const ir_graph *g, const rt_tensor_list *params,
                      const rt_tensor_list *inputs, int f64, int threads,
                      rt_tensor_list *out)
{
    bc_err e = {{0}};
    rt_interp_opts o = {f64, threads};
    rt_list_init(out);
    cr_assert_eq(rt_interp_run(g, params, inputs, &o, out, &e), 0, "running %s: %s",
                 g->name ? g->name : "?", e.msg);
}

static double value_at(const rt_tensor *t, int64_t i)
{
    return t->dtype == RT_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

/* The scalar output `name` of a run. */
static double scalar_out(const rt_tensor_list *out, const char *name)
{
    const rt_tensor *t = rt_list_cfind(out, name);
    cr_assert_not_null(t, "no output %s", name);
    cr_assert_eq(rt_numel(t), 1, "%s is not a scalar", name);
    return value_at(t, 0);
}

/* g's forward part only: the loss, nothing else (so finite differences are cheap). */
static ir_graph *loss_only(const ir_graph *g)
{
    bc_err e = {{0}};
    ir_graph *f = ir_graph_clone(g);
    cr_assert_not_null(f);
    const char *keep[1] = {"loss"};
    cr_assert_eq(pass_keep_outputs(f, keep, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&f, "dce", NULL, &e), 0, "%s", e.msg);
    return f;
}

static double eval_loss(const ir_graph *f, const rt_tensor_list *params,
                        const rt_tensor_list *inputs)
{
    rt_tensor_list out;
    run_graph(f, params, inputs, 1, 1, &out);
    double l = scalar_out(&out, "loss");
    rt_list_free(&out);
    return l;
}

static int is_frozen(const char *name, const char *const *frozen, int nfrozen)
{
    for (int i = 0; i < nfrozen; i++)
        if (!strncmp(name, frozen[i], strlen(frozen[i])))
            return 1;
    return 0;
}

static int count_op(const ir_graph *g, ir_opcode op)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        n += g->nodes[i].op == op;
    return n;
}

/* Differentiates g (which has a scalar output "loss") with `frozen`, optionally
 * followed by the default pipeline. */
static ir_graph *differentiate(const ir_graph *g, const char *const *frozen, int nfrozen,
                               int optimize)
{
    bc_err e = {{0}};
    cr_assert_eq(g->failed, 0, "building: %s", g->err.msg);
    ir_graph *d = ir_graph_clone(g);
    cr_assert_not_null(d);
    pass_grad_opts o = {"loss", frozen, nfrozen};
    cr_assert_eq(pass_autodiff(&d, &o, &e), 0, "autodiff: %s", e.msg);
    cr_assert_eq(ir_verify(d, &e), 0, "the differentiated graph: %s", e.msg);
    if (optimize)
        cr_assert_eq(pass_run_pipeline(&d, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s",
                     e.msg);
    return d;
}

/* Checks every gradient of g's trainable parameters (F64 values in params, which this
 * perturbs and restores) against central differences of the loss with step h: all
 * entries, or `sample` random ones per parameter when it has more. The tolerance is
 * rtol * max|grad of that parameter| + atol. The optimized graph must give the
 * unoptimized one's gradients. Frozen parameters must have no gradient output. */
static void check_fd(const ir_graph *g, rt_tensor_list *params,
                     const rt_tensor_list *inputs, const char *const *frozen, int nfrozen,
                     int sample, double h, double rtol, double atol)
{
    ir_graph *d = differentiate(g, frozen, nfrozen, 0);
    ir_graph *dopt = differentiate(g, frozen, nfrozen, 1);
    ir_graph *f = loss_only(g);
    rt_tensor_list grads, grads_opt;
    run_graph(d, params, inputs, 1, 1, &grads);
    run_graph(dopt, params, inputs, 1, 1, &grads_opt);
    uint64_t rng = 0x5eed;
    int checked = 0;
    for (int v = 0; v < g->n; v++) {
        const ir_node *p = &g->nodes[v];
        if (p->op != IR_OP_PARAM)
            continue;
        char gname[512];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        const rt_tensor *gt = rt_list_cfind(&grads, gname);
        if (is_frozen(p->name, frozen, nfrozen)) {
            cr_expect_null(gt, "frozen %s has a gradient output", p->name);
            continue;
        }
        cr_assert_not_null(gt, "no output %s", gname);
        rt_tensor *pt = rt_list_find(params, p->name);
        cr_assert_not_null(pt, "no value for %s", p->name);
        cr_assert_eq(pt->dtype, RT_F64, "%s: the check needs F64 values", p->name);
        cr_assert_eq(gt->dtype, RT_F64, "%s is not F64 in f64 mode", gname);
        cr_assert_eq(gt->rank, pt->rank, "%s: rank %d, want %d", gname, gt->rank, pt->rank);
        for (int k = 0; k < pt->rank; k++)
            cr_assert_eq(gt->shape[k], pt->shape[k], "%s: dim %d", gname, k);
        int64_t n = rt_numel(pt);
        const double *gv = gt->data;
        double gmax = 0;
        for (int64_t i = 0; i < n; i++)
            gmax = fmax(gmax, fabs(gv[i]));
        const rt_tensor *go = rt_list_cfind(&grads_opt, gname);
        cr_assert_not_null(go, "optimized graph lacks %s", gname);
        for (int64_t i = 0; i < n; i++)
            cr_expect(fabs(value_at(go, i) - gv[i]) <= 1e-10 * gmax + 1e-14,
                      "%s[%lld]: optimized %.17g, unoptimized %.17g", gname, (long long)i,
                      value_at(go, i), gv[i]);
        double *x = pt->data;
        int64_t count = sample > 0 && n > sample ? sample : n;
        for (int64_t j = 0; j < count; j++) {
            int64_t i = count == n ? j : (int64_t)(rng_next(&rng) % (uint64_t)n);
            double x0 = x[i];
            x[i] = x0 + h;
            double lp = eval_loss(f, params, inputs);
            x[i] = x0 - h;
            double lm = eval_loss(f, params, inputs);
            x[i] = x0;
            double fd = (lp - lm) / (2 * h);
            cr_expect(fabs(fd - gv[i]) <= rtol * gmax + atol,
                      "%s[%lld]: autodiff %.12g, finite differences %.12g (max |grad| %g)",
                      gname, (long long)i, gv[i], fd, gmax);
            checked++;
        }
    }
    cr_expect_gt(checked, 0, "nothing was checked");
    /* Nothing but the forward outputs and the gradients of trainable parameters. */
    for (int k = 0; k < d->nout; k++) {
        const char *name = d->outs[k].name;
        if (strncmp(name, "grad.", 5))
            continue;
        int pv = ir_find_named(g, IR_OP_PARAM, name + 5);
        cr_expect(pv >= 0 && !is_frozen(name + 5, frozen, nfrozen), "stray output %s",
                  name);
    }
    rt_list_free(&grads);
    rt_list_free(&grads_opt);
    ir_graph_free(d);
    ir_graph_free(dopt);
    ir_graph_free(f);
}

/* ---- one op at a time -------------------------------------------------------------- */

/* A small graph under test, its F64 parameter values and its integer inputs. */
typedef struct gcase {
    ir_graph *g;
    rt_tensor_list params, inputs;
    uint64_t rng;
} gcase;

static void gc_init(gcase *c, const char *name, uint64_t seed)
{
    c->g = ir_graph_new(name);
    cr_assert_not_null(c->g);
    rt_list_init(&c->params);
    rt_list_init(&c->inputs);
    c->rng = seed;
}

static void gc_free(gcase *c)
{
    ir_graph_free(c->g);
    rt_list_free(&c->params);
    rt_list_free(&c->inputs);
}

static ir_type const_type(ir_dtype dt, int rank, const int64_t *shape)
{
    ir_dim d[IR_MAX_RANK] = {{0}};
    for (int i = 0; i < rank; i++)
        d[i] = ir_dconst(shape[i]);
    return ir_type_make(dt, rank, d);
}

/* A parameter of the given shape with values uniform in [lo, hi). */
static int gc_param(gcase *c, const char *name, int rank, const int64_t *shape, double lo,
                    double hi)
{
    int v = ir_param(c->g, name, const_type(IR_F32, rank, shape));
    rt_tensor *t = rt_list_add(&c->params, name, RT_F64, rank, shape, NULL);
    cr_assert_not_null(t);
    for (int64_t i = 0; i < rt_numel(t); i++)
        ((double *)t->data)[i] = urand(&c->rng, lo, hi);
    return v;
}

static int gc_input(gcase *c, const char *name, int rank, const int64_t *shape,
                    const int64_t *vals)
{
    int v = ir_input(c->g, name, const_type(IR_I64, rank, shape));
    cr_assert_not_null(rt_list_add(&c->inputs, name, RT_I64, rank, shape, vals));
    return v;
}

/* loss = sum(y * W) for a fixed random W (the frozen parameter "proj.w"), built from
 * forward ops only: reshape(y, [1, n]) x W[n, 1] -> [1, 1] -> []. A scalar y is the loss.
 */
static void gc_loss(gcase *c, int y)
{
    ir_graph *g = c->g;
    cr_assert_eq(g->failed, 0, "building: %s", g->err.msg);
    const ir_type *t = &g->nodes[y].type;
    int loss = y;
    if (t->rank > 0) {
        int64_t n = ir_type_numel(t).c;
        ir_dim row[2] = {ir_dconst(1), ir_dconst(n)}, one[1];
        int w = gc_param(c, "proj.w", 2, SH(n, 1), -1, 1);
        int prod = ir_matmul(g, ir_reshape(g, y, 2, row), w, 0, 0);
        loss = ir_reshape(g, prod, 0, one);
    }
    ir_set_output(g, "loss", loss);
    cr_assert_eq(g->failed, 0, "building: %s", g->err.msg);
}

static const char *const proj_frozen[1] = {"proj."};

/* The op tests' finite-difference check: every entry, h = 1e-6, 1e-6 of max|grad|. */
static void gc_check(gcase *c)
{
    check_fd(c->g, &c->params, &c->inputs, proj_frozen, 1, 0, 1e-6, 1e-6, 1e-10);
}

Test(autodiff_vjp, gather_table_gets_each_gathered_row_summed)
{
    gcase c;
    gc_init(&c, "gather", 1);
    /* Repeated ids (0, 3, 6 ...) accumulate; every row of the 7 is gathered here... */
    static const int64_t ids[15] = {0, 3, 3, 6, 1, 2, 3, 0, 0, 5, 6, 6, 1, 4, 3};
    int tab = gc_param(&c, "table", 2, SH(7, 5), -2, 2);
    int id = gc_input(&c, "ids", 2, SH(3, 5), ids);
    gc_loss(&c, ir_gather(c.g, tab, id));
    gc_check(&c);
    gc_free(&c);

    /* ... and here rows 1, 4 and 5 of 7 are never gathered (their gradient is 0). */
    gc_init(&c, "gather_sparse", 2);
    static const int64_t ids2[5] = {6, 0, 6, 3, 2};
    tab = gc_param(&c, "table", 2, SH(7, 3), -2, 2);
    id = gc_input(&c, "ids", 1, SH(5), ids2);
    gc_loss(&c, ir_gather(c.g, tab, id));
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, prefix_rows)
{
    gcase c;
    gc_init(&c, "prefix_rows", 3);
    int x = gc_param(&c, "x", 2, SH(7, 3), -2, 2);
    gc_loss(&c, ir_prefix_rows(c.g, x, ir_dconst(5)));
    gc_check(&c);
    gc_free(&c);
}

/* a (shape_a) op b (shape_b), both operands trainable. */
static void binary_case(ir_opcode op, int ra, const int64_t *sa, int rb, const int64_t *sb,
                        uint64_t seed)
{
    gcase c;
    gc_init(&c, ir_ops[op].name, seed);
    int a = gc_param(&c, "a", ra, sa, -2, 2);
    int b = gc_param(&c, "b", rb, sb, -2, 2);
    gc_loss(&c, op == IR_OP_ADD ? ir_addv(c.g, a, b) : ir_mul(c.g, a, b));
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, add_both_operands_same_shape_and_suffix_broadcast)
{
    binary_case(IR_OP_ADD, 2, SH(3, 5), 2, SH(3, 5), 10);
    binary_case(IR_OP_ADD, 3, SH(3, 5, 7), 2, SH(5, 7), 11);
    binary_case(IR_OP_ADD, 3, SH(3, 5, 7), 1, SH(7), 12);
    binary_case(IR_OP_ADD, 2, SH(5, 3), 0, SH(0), 13); /* a scalar b */
}

Test(autodiff_vjp, mul_both_operands_same_shape_and_suffix_broadcast)
{
    binary_case(IR_OP_MUL, 2, SH(3, 5), 2, SH(3, 5), 20);
    binary_case(IR_OP_MUL, 3, SH(3, 5, 7), 2, SH(5, 7), 21);
    binary_case(IR_OP_MUL, 3, SH(3, 5, 7), 1, SH(7), 22);
    binary_case(IR_OP_MUL, 2, SH(5, 3), 0, SH(0), 23);
}

/* op(a) op(b) with M = 3, K = 5, N = 7 after `batch` leading dims of a (and of b when
 * b_batched; otherwise b is a shared 2-D matrix). */
static void matmul_case(int nbatch, const int64_t *batch, int b_batched, int ta, int tb)
{
    int64_t M = 3, K = 5, N = 7, sa[IR_MAX_RANK], sb[IR_MAX_RANK];
    int ra = nbatch + 2, rb = b_batched ? nbatch + 2 : 2;
    for (int i = 0; i < nbatch; i++)
        sa[i] = sb[i] = batch[i];
    sa[ra - 2] = ta ? K : M;
    sa[ra - 1] = ta ? M : K;
    sb[rb - 2] = tb ? N : K;
    sb[rb - 1] = tb ? K : N;
    gcase c;
    gc_init(&c, "matmul", (uint64_t)(100 + 8 * nbatch + 4 * b_batched + 2 * ta + tb));
    int a = gc_param(&c, "a", ra, sa, -1.5, 1.5);
    int b = gc_param(&c, "b", rb, sb, -1.5, 1.5);
    gc_loss(&c, ir_matmul(c.g, a, b, ta, tb));
    cr_expect_eq(c.g->failed, 0, "ta %d tb %d rank %d: %s", ta, tb, ra, c.g->err.msg);
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, matmul_2d_all_four_transpose_combinations)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            matmul_case(0, NULL, 0, ta, tb);
}

Test(autodiff_vjp, matmul_batched_b_all_four_transpose_combinations)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            matmul_case(1, SH(5), 1, ta, tb);
            matmul_case(2, SH(3, 1), 1, ta, tb);
        }
}

Test(autodiff_vjp, matmul_shared_2d_b_with_batched_a)
{
    /* A shared b cannot be combined with ta (the shape rule refuses it). */
    for (int tb = 0; tb < 2; tb++) {
        matmul_case(1, SH(5), 0, 0, tb);
        matmul_case(2, SH(3, 5), 0, 0, tb);
    }
}

static void transpose_case(int rank, const int64_t *shape, const int *perm, uint64_t seed)
{
    gcase c;
    gc_init(&c, "transpose", seed);
    int x = gc_param(&c, "x", rank, shape, -2, 2);
    gc_loss(&c, ir_transpose(c.g, x, perm));
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, transpose_rank_3_and_4)
{
    /* Permutations that are not their own inverse, and BERT's head split. */
    transpose_case(3, SH(3, 5, 7), (const int[]){2, 0, 1}, 30);
    transpose_case(3, SH(3, 5, 7), (const int[]){1, 2, 0}, 31);
    transpose_case(4, SH(3, 1, 5, 7), (const int[]){0, 2, 1, 3}, 32);
    transpose_case(4, SH(3, 5, 7, 3), (const int[]){3, 1, 0, 2}, 33);
}

Test(autodiff_vjp, reshape)
{
    ir_dim to1[2] = {ir_dconst(15), ir_dconst(7)},
           to2[3] = {ir_dconst(5), ir_dconst(3), ir_dconst(7)};
    gcase c;
    gc_init(&c, "reshape", 40);
    int x = gc_param(&c, "x", 3, SH(3, 5, 7), -2, 2);
    /* Through two reshapes, so the values are permuted if a VJP gets a shape wrong. */
    int y = ir_reshape(c.g, x, 2, to1);
    int w = gc_param(&c, "w", 1, SH(7), -2, 2);
    gc_loss(&c, ir_reshape(c.g, ir_mul(c.g, y, w), 3, to2));
    gc_check(&c);
    gc_free(&c);
}

static void unary_case(ir_opcode op, uint64_t seed)
{
    gcase c;
    gc_init(&c, ir_ops[op].name, seed);
    int x = gc_param(&c, "x", 3, SH(3, 5, 7), -3, 3);
    gc_loss(&c, ir_unary(c.g, op, x));
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, gelu)
{
    unary_case(IR_OP_GELU, 50);
}

Test(autodiff_vjp, gelu_tanh)
{
    unary_case(IR_OP_GELU_TANH, 51);
}

Test(autodiff_vjp, tanh)
{
    unary_case(IR_OP_TANH, 52);
}

Test(autodiff_vjp, scale)
{
    gcase c;
    gc_init(&c, "scale", 53);
    int x = gc_param(&c, "x", 2, SH(5, 3), -2, 2);
    gc_loss(&c, ir_scale(c.g, x, -0.37));
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, layernorm_x_gamma_and_beta)
{
    static const double eps[2] = {1e-5, 1e-12};
    for (int i = 0; i < 2; i++) {
        gcase c;
        gc_init(&c, "layernorm", 60 + (uint64_t)i);
        int x = gc_param(&c, "x", 3, SH(3, 5, 7), -2, 2);
        int gamma = gc_param(&c, "gamma", 1, SH(7), 0.5, 1.5);
        int beta = gc_param(&c, "beta", 1, SH(7), -0.5, 0.5);
        gc_loss(&c, ir_layernorm(c.g, x, gamma, beta, eps[i]));
        gc_check(&c);
        gc_free(&c);
    }
}

/* scores (shape, rank 3 or 4, dim 0 = 3 and last = 7) with the mask [3, 7]. */
static void softmax_case(int rank, const int64_t *shape, const int64_t *mask, uint64_t seed)
{
    gcase c;
    gc_init(&c, "attn_softmax", seed);
    int x = gc_param(&c, "scores", rank, shape, -2, 2);
    int m = gc_input(&c, "mask", 2, SH(3, 7), mask);
    gc_loss(&c, ir_attn_softmax(c.g, x, m, 0.45));
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, attn_softmax_without_padding)
{
    int64_t ones[21];
    for (int i = 0; i < 21; i++)
        ones[i] = 1;
    softmax_case(3, SH(3, 5, 7), ones, 70);
    softmax_case(4, SH(3, 3, 5, 7), ones, 71);
}

Test(autodiff_vjp, attn_softmax_with_padding_mask)
{
    /* Row 0: one masked key in the middle; row 1: three padded keys at the end; row 2:
     * every key masked (the -10000 offsets cancel, as in Hugging Face). */
    static const int64_t mask[21] = {1,      1, 1, 0, 1, 1, 1, /**/ 1, 1, 1, 1, 0, 0, 0,
                                     /**/ 0, 0, 0, 0, 0, 0, 0};
    softmax_case(3, SH(3, 5, 7), mask, 72);
    softmax_case(4, SH(3, 3, 5, 7), mask, 73);
}

Test(autodiff_vjp, attn_softmax_masked_keys_get_no_gradient)
{
    static const int64_t mask[21] = {1,      1, 1, 0, 1, 1, 1, /**/ 1, 1, 1, 1, 0, 0, 0,
                                     /**/ 1, 1, 1, 1, 1, 1, 1};
    gcase c;
    gc_init(&c, "attn_softmax", 74);
    int x = gc_param(&c, "scores", 3, SH(3, 5, 7), -2, 2);
    int m = gc_input(&c, "mask", 2, SH(3, 7), mask);
    gc_loss(&c, ir_attn_softmax(c.g, x, m, 0.45));
    ir_graph *d = differentiate(c.g, proj_frozen, 1, 0);
    rt_tensor_list out;
    run_graph(d, &c.params, &c.inputs, 1, 1, &out);
    const rt_tensor *gt = rt_list_cfind(&out, "grad.scores");
    cr_assert_not_null(gt);
    for (int b = 0; b < 3; b++)
        for (int r = 0; r < 5; r++)
            for (int k = 0; k < 7; k++) {
                double gv = ((const double *)gt->data)[(b * 5 + r) * 7 + k];
                if (!mask[b * 7 + k])
                    cr_expect(fabs(gv) < 1e-300, "masked key %d of row %d: grad %g", k, b,
                              gv);
                else
                    cr_expect(gv != 0, "key %d of row %d: zero grad", k, b);
            }
    rt_list_free(&out);
    ir_graph_free(d);
    gc_free(&c);
}

Test(autodiff_vjp, select_each_axis)
{
    for (int ax = 0; ax < 3; ax++) {
        gcase c;
        gc_init(&c, "select", 80 + (uint64_t)ax);
        int x = gc_param(&c, "x", 3, SH(3, 5, 7), -2, 2);
        gc_loss(&c, ir_select(c.g, x, ax, 2 * ax + 2)); /* index 2, 4, 6 */
        gc_check(&c);
        gc_free(&c);
    }
}

static void ce_case(int rank, const int64_t *shape, const int64_t *labels, uint64_t seed)
{
    gcase c;
    gc_init(&c, "cross_entropy", seed);
    int x = gc_param(&c, "logits", rank, shape, -3, 3);
    int l = gc_input(&c, "labels", rank - 1, shape, labels);
    gc_loss(&c, ir_cross_entropy(c.g, x, l));
    gc_check(&c);
    gc_free(&c);
}

Test(autodiff_vjp, cross_entropy_with_ignored_labels)
{
    ce_case(2, SH(5, 7), (const int64_t[]){3, -100, 0, 6, -100}, 90);
    ce_case(3, SH(3, 5, 7),
            (const int64_t[]){1, 2, -100, 4, 5, 6, 0, -100, -100, -100, 6, 6, 0, 3, -100},
            91);
}

Test(autodiff_vjp, cross_entropy_with_every_label_ignored_has_zero_gradient)
{
    gcase c;
    gc_init(&c, "cross_entropy", 92);
    int x = gc_param(&c, "logits", 2, SH(3, 5), -3, 3);
    int l = gc_input(&c, "labels", 1, SH(3), (const int64_t[]){-100, -100, -100});
    gc_loss(&c, ir_cross_entropy(c.g, x, l));
    ir_graph *d = differentiate(c.g, NULL, 0, 0);
    rt_tensor_list out;
    run_graph(d, &c.params, &c.inputs, 1, 1, &out);
    cr_expect_eq(scalar_out(&out, "loss"), 0.0);
    const rt_tensor *gt = rt_list_cfind(&out, "grad.logits");
    cr_assert_not_null(gt);
    for (int i = 0; i < 15; i++)
        cr_expect_eq(((const double *)gt->data)[i], 0.0, "grad.logits[%d]", i);
    rt_list_free(&out);
    ir_graph_free(d);
    gc_free(&c);
}

/* An f32 input (not differentiated) of the given shape and values. */
static int gc_input_f32(gcase *c, const char *name, int rank, const int64_t *shape,
                        const double *vals)
{
    int v = ir_input(c->g, name, const_type(IR_F32, rank, shape));
    cr_assert_not_null(rt_list_add(&c->inputs, name, RT_F64, rank, shape, vals));
    return v;
}

/* Class weights (values exact in f32) as an input, as the frontend gives them. */
static void wce_case(int rank, const int64_t *shape, const int64_t *labels,
                     const double *weights, uint64_t seed)
{
    gcase c;
    gc_init(&c, "cross_entropy_weighted", seed);
    int x = gc_param(&c, "logits", rank, shape, -3, 3);
    int l = gc_input(&c, "labels", rank - 1, shape, labels);
    int w = gc_input_f32(&c, "class_weights", 1, &shape[rank - 1], weights);
    gc_loss(&c, ir_cross_entropy_weighted(c.g, x, l, w));
    gc_check(&c);
    /* The gradient op takes the weights as its 4th operand. */
    ir_graph *d = differentiate(c.g, NULL, 0, 0);
    int found = 0;
    for (int i = 0; i < d->n; i++)
        if (d->nodes[i].op == IR_OP_CROSS_ENTROPY_GRAD) {
            cr_expect_eq(d->nodes[i].nin, 4);
            cr_expect_eq(d->nodes[i].in[3], w);
            found++;
        }
    cr_expect_eq(found, 1);
    ir_graph_free(d);
    gc_free(&c);
}

Test(autodiff_vjp, cross_entropy_with_class_weights_and_ignored_labels)
{
    static const double w7[7] = {2.0, 0.5, 0.0, 1.25, 3.0, 1.0, 0.75};
    wce_case(2, SH(5, 7), (const int64_t[]){3, -100, 0, 6, 2}, w7, 93);
    wce_case(3, SH(3, 5, 7),
             (const int64_t[]){1, 2, -100, 4, 5, 6, 0, -100, -100, -100, 6, 6, 0, 3, -100},
             w7, 94);
    static const double w1[1] = {1.5};
    wce_case(2, SH(3, 1), (const int64_t[]){0, -100, 0}, w1, 96);
}

/* Labelled rows whose weights sum to 0: a zero loss and a zero gradient (not 0 / 0). */
Test(autodiff_vjp, cross_entropy_with_zero_class_weights_has_zero_gradient)
{
    gcase c;
    gc_init(&c, "cross_entropy_weighted", 97);
    int x = gc_param(&c, "logits", 2, SH(3, 5), -3, 3);
    int l = gc_input(&c, "labels", 1, SH(3), (const int64_t[]){1, -100, 3});
    int w = gc_input_f32(&c, "class_weights", 1, SH(5), (const double[]){1, 0, 1, 0, 1});
    gc_loss(&c, ir_cross_entropy_weighted(c.g, x, l, w));
    ir_graph *d = differentiate(c.g, NULL, 0, 0);
    rt_tensor_list out;
    run_graph(d, &c.params, &c.inputs, 1, 1, &out);
    cr_expect_eq(scalar_out(&out, "loss"), 0.0);
    const rt_tensor *gt = rt_list_cfind(&out, "grad.logits");
    cr_assert_not_null(gt);
    for (int i = 0; i < 15; i++)
        cr_expect_eq(((const double *)gt->data)[i], 0.0, "grad.logits[%d]", i);
    rt_list_free(&out);
    ir_graph_free(d);
    gc_free(&c);
}

/* Class weights have no gradient (as in PyTorch): weights computed from a trainable
 * parameter are refused by name, not differentiated wrongly; a frozen one is fine. */
Test(autodiff_vjp, class_weights_from_a_trainable_parameter_are_an_error)
{
    for (int freeze = 0; freeze <= 1; freeze++) {
        gcase c;
        gc_init(&c, "cross_entropy_weighted", 98);
        int x = gc_param(&c, "logits", 2, SH(3, 5), -3, 3);
        int l = gc_input(&c, "labels", 1, SH(3), (const int64_t[]){1, -100, 3});
        int w = gc_param(&c, "cw", 1, SH(5), 0.5, 2);
        int ce = ir_cross_entropy_weighted(c.g, x, l, ir_scale(c.g, w, 2.0));
        ir_set_output(c.g, "loss", ce);
        cr_assert_eq(c.g->failed, 0, "%s", c.g->err.msg);
        ir_graph *d = ir_graph_clone(c.g);
        const char *frozen[1] = {"cw"};
        pass_grad_opts o = {"loss", frozen, freeze};
        bc_err e = {{0}};
        int rc = pass_autodiff(&d, &o, &e);
        if (freeze) {
            cr_expect_eq(rc, 0, "%s", e.msg);
        } else {
            cr_expect_eq(rc, -1);
            char want[200];
            snprintf(want, sizeof want,
                     "autodiff: %%%d (cross_entropy): the class weights have no gradient; "
                     "they must not depend on a trainable parameter",
                     ce);
            cr_expect_str_eq(e.msg, want);
        }
        ir_graph_free(d);
        gc_free(&c);
    }
}

Test(autodiff_vjp, dropout_with_a_fixed_seed)
{
    gcase c;
    gc_init(&c, "dropout", 95);
    int x = gc_param(&c, "x", 3, SH(3, 5, 7), -2, 2);
    int64_t seed = 12345;
    int s = gc_input(&c, "seed", 0, NULL, &seed);
    ir_attrs a = {0};
    a.p = 0.3;
    a.index = 4;
    int in[2] = {x, s};
    gc_loss(&c, ir_add(c.g, IR_OP_DROPOUT, in, 2, &a, NULL, NULL));
    gc_check(&c);
    /* The mask is not trivial: some gradient entries are dropped, most are not. */
    ir_graph *d = differentiate(c.g, proj_frozen, 1, 0);
    rt_tensor_list out;
    run_graph(d, &c.params, &c.inputs, 1, 1, &out);
    const rt_tensor *gt = rt_list_cfind(&out, "grad.x");
    cr_assert_not_null(gt);
    int zeros = 0;
    for (int i = 0; i < 105; i++)
        zeros += ((const double *)gt->data)[i] == 0;
    cr_expect(zeros > 10 && zeros < 60, "%d of 105 dropped at p = 0.3", zeros);
    rt_list_free(&out);
    ir_graph_free(d);
    gc_free(&c);
}

/* A chain of several ops, so that gradients flow through VJPs into other VJPs. */
Test(autodiff_vjp, a_small_attention_block_end_to_end)
{
    gcase c;
    gc_init(&c, "attention", 99);
    static const int64_t mask[5] = {1, 1, 1, 0, 0,
                                    /* one row: B = 1 */};
    int x = gc_param(&c, "x", 3, SH(1, 5, 3), -1, 1);
    int wq = gc_param(&c, "wq", 2, SH(3, 3), -1, 1);
    int wk = gc_param(&c, "wk", 2, SH(3, 3), -1, 1);
    int m = gc_input(&c, "mask", 2, SH(1, 5), mask);
    int q = ir_matmul(c.g, x, wq, 0, 1), k = ir_matmul(c.g, x, wk, 0, 0);
    int p = ir_attn_softmax(c.g, ir_matmul(c.g, q, k, 0, 1), m, 0.7);
    int ctx = ir_matmul(c.g, p, x, 0, 0);
    gc_loss(&c, ir_unary(c.g, IR_OP_TANH, ir_addv(c.g, ctx, x)));
    gc_check(&c);
    gc_free(&c);
}

/* ---- the table ---------------------------------------------------------------------- */

Test(autodiff, every_forward_op_and_no_other_has_a_vjp_row)
{
    /* The op table's role column decides: leaves (param, input) and the ops autodiff
     * introduces (bertcc differentiates once) have none. A NULL row would pass a size
     * check of the designated-initializer table, so each row is looked at. */
    for (int op = 0; op < IR_OP_COUNT; op++)
        cr_expect_eq(pass_has_vjp((ir_opcode)op), ir_ops[op].role == IR_ROLE_FWD,
                     "%s: VJP row %s, but its role is %d", ir_ops[op].name,
                     pass_has_vjp((ir_opcode)op) ? "present" : "missing", ir_ops[op].role);
    cr_expect_not(pass_has_vjp(IR_OP_COUNT));
    cr_expect_not(pass_has_vjp((ir_opcode)-1));
}

/* ---- the whole model against finite differences ------------------------------------ */

/* vocab 11, hidden 6, heads 2, layers 2, intermediate 5, max-position 8, all five heads
 * (intent 3 classes, slot 4 labels); activation as given; dropout p as given. */
static void tiny_model(fe_model *m, fe_activation act, double p)
{
    fe_model_defaults(m);
    snprintf(m->name, sizeof m->name, "tiny");
    m->vocab_size = 11;
    m->hidden_size = 6;
    m->heads = 2;
    m->layers = 2;
    m->intermediate_size = 5;
    m->max_position = 8;
    m->type_vocab_size = 2;
    m->activation = act;
    m->layer_norm_eps = 1e-12;
    m->hidden_dropout = m->attention_dropout = p;
    m->head_mask = FE_HEAD_MLM | FE_HEAD_NSP | FE_HEAD_INTENT | FE_HEAD_SLOT | FE_HEAD_QA;
    m->intent_classes = 3;
    m->slot_labels = 4;
    bc_err e = {{0}};
    cr_assert_eq(fe_model_check(m, &e), 0, "%s", e.msg);
}

/* B = 2, S = 5; row 1 has 3 valid tokens; every label, -100 at padding and elsewhere. */
static void tiny_batch(rt_tensor_list *in)
{
    static const int64_t ids[10] = {2, 7, 10, 4, 3, /**/ 2, 9, 3, 0, 0};
    static const int64_t tt[10] = {0, 0, 0, 1, 1, /**/ 0, 1, 1, 0, 0};
    static const int64_t mask[10] = {1, 1, 1, 1, 1, /**/ 1, 1, 1, 0, 0};
    static const int64_t mlm[10] = {-100, 5, -100, 8, 1, /**/ 0, -100, 10, -100, -100};
    static const int64_t slot[10] = {0, 3, 2, -100, 1, /**/ -100, 2, 3, -100, -100};
    static const int64_t nsp[2] = {1, 0}, intent[2] = {2, 0}, start[2] = {1, 0},
                         end[2] = {3, 2};
    rt_list_init(in);
    cr_assert(rt_list_add(in, "input_ids", RT_I64, 2, SH(2, 5), ids));
    cr_assert(rt_list_add(in, "token_type_ids", RT_I64, 2, SH(2, 5), tt));
    cr_assert(rt_list_add(in, "attention_mask", RT_I64, 2, SH(2, 5), mask));
    cr_assert(rt_list_add(in, "mlm_labels", RT_I64, 2, SH(2, 5), mlm));
    cr_assert(rt_list_add(in, "slot_labels", RT_I64, 2, SH(2, 5), slot));
    cr_assert(rt_list_add(in, "nsp_labels", RT_I64, 1, SH(2), nsp));
    cr_assert(rt_list_add(in, "intent_labels", RT_I64, 1, SH(2), intent));
    cr_assert(rt_list_add(in, "start_positions", RT_I64, 1, SH(2), start));
    cr_assert(rt_list_add(in, "end_positions", RT_I64, 1, SH(2), end));
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* F64 values for every parameter of g, as the fixtures draw them (weights of a few
 * tenths, LayerNorm gamma near 1), so that activations are not trivial. */
static void tiny_params(const ir_graph *g, uint64_t seed, rt_tensor_list *params)
{
    rt_list_init(params);
    uint64_t rng = seed;
    for (int v = 0; v < g->n; v++) {
        const ir_node *p = &g->nodes[v];
        if (p->op != IR_OP_PARAM)
            continue;
        int64_t shape[IR_MAX_RANK];
        for (int i = 0; i < p->type.rank; i++)
            shape[i] = p->type.dim[i].c;
        rt_tensor *t = rt_list_add(params, p->name, RT_F64, p->type.rank, shape, NULL);
        cr_assert_not_null(t);
        int ln = strstr(p->name, "LayerNorm") != NULL;
        for (int64_t i = 0; i < rt_numel(t); i++)
            ((double *)t->data)[i] = ln && ends_with(p->name, ".weight")
                                         ? urand(&rng, 0.8, 1.2)
                                     : ends_with(p->name, ".bias") ? urand(&rng, -0.3, 0.3)
                                                                   : urand(&rng, -0.7, 0.7);
    }
}

static ir_graph *tiny_graph(const fe_model *m, unsigned labels)
{
    bc_err e = {{0}};
    ir_graph *g = fe_build_bert(m, labels, &e);
    cr_assert_not_null(g, "%s", e.msg);
    /* unfused: the tests below look for the decoder's matmul */
    cr_assert_eq(pass_run_pipeline(&g, PASS_BASE_PIPELINE, NULL, &e), 0, "%s", e.msg);
    return g;
}

Test(autodiff_model, every_parameter_gradient_matches_finite_differences)
{
    fe_model m;
    tiny_model(&m, FE_ACT_GELU, 0.1);
    ir_graph *g = tiny_graph(&m, FE_LABEL_ALL);
    rt_tensor_list params, inputs;
    tiny_params(g, 7, &params);
    tiny_batch(&inputs);
    /* 3 embeddings, 2 LayerNorm, 16 per layer, pooler 2, MLM 5, NSP/intent/slot/QA 2. */
    cr_expect_eq(count_op(g, IR_OP_PARAM), 52);
    /* h = 1e-5 keeps round-off (~1e-16 / h) and truncation (~h^2) well under 1e-8. The
     * key biases' and the QA bias's gradients are 0 in exact arithmetic: atol. */
    check_fd(g, &params, &inputs, NULL, 0, 0, 1e-5, 1e-5, 1e-8);
    rt_list_free(&params);
    rt_list_free(&inputs);
    ir_graph_free(g);
}

/* g with a new parameter `name` (a copy of `param`'s type) first, and the input use
 * (use_node, use_k) of `param` re-pointed to it. */
static ir_graph *untie(const ir_graph *g, int param, int use_node, int use_k,
                       const char *name)
{
    ir_graph *s = ir_graph_new("untied");
    cr_assert_not_null(s);
    int copy = ir_param(s, name, g->nodes[param].type);
    cr_assert_eq(copy, 0);
    for (int v = 0; v < g->n; v++) {
        const ir_node *n = &g->nodes[v];
        int in[IR_MAX_INPUTS];
        for (int k = 0; k < n->nin; k++)
            in[k] = v == use_node && k == use_k ? copy : n->in[k] + 1;
        int nv = ir_add(s, n->op, in, n->nin, &n->a, n->name, &n->type);
        cr_assert_eq(nv, v + 1, "copying %%%d: %s", v, s->err.msg);
    }
    for (int k = 0; k < g->nout; k++)
        ir_set_output(s, g->outs[k].name, g->outs[k].value + 1);
    cr_assert_eq(s->failed, 0, "%s", s->err.msg);
    return s;
}

Test(autodiff_model, tied_word_embeddings_sum_the_embedding_and_decoder_gradients)
{
    fe_model m;
    tiny_model(&m, FE_ACT_GELU_TANH, 0.1);
    ir_graph *g = tiny_graph(&m, FE_LABEL_ALL);
    rt_tensor_list params, inputs;
    tiny_params(g, 8, &params);
    tiny_batch(&inputs);
    const char *wname = "bert.embeddings.word_embeddings.weight";
    int we = ir_find_named(g, IR_OP_PARAM, wname);
    cr_assert(we >= 0);
    int gather = -1, decoder = -1, uses = 0;
    for (int v = 0; v < g->n; v++)
        for (int k = 0; k < g->nodes[v].nin; k++)
            if (g->nodes[v].in[k] == we) {
                uses++;
                if (g->nodes[v].op == IR_OP_GATHER)
                    gather = v;
                if (g->nodes[v].op == IR_OP_MATMUL)
                    decoder = v;
            }
    cr_assert(uses == 2 && gather >= 0 && decoder >= 0,
              "the word embeddings should feed one gather and the decoder matmul");
    int dk = g->nodes[decoder].in[0] == we ? 0 : 1;
    /* The same model with the decoder reading an untied copy of the same values. */
    ir_graph *s = untie(g, we, decoder, dk, "decoder.copy");
    const rt_tensor *wt = rt_list_cfind(&params, wname);
    cr_assert(rt_list_add(&params, "decoder.copy", RT_F64, wt->rank, wt->shape, wt->data));

    ir_graph *d = differentiate(g, NULL, 0, 1), *ds = differentiate(s, NULL, 0, 1);
    rt_tensor_list out, outs;
    run_graph(d, &params, &inputs, 1, 1, &out);
    run_graph(ds, &params, &inputs, 1, 1, &outs);
    cr_expect_float_eq(scalar_out(&out, "loss"), scalar_out(&outs, "loss"), 1e-12);
    char gname[256];
    snprintf(gname, sizeof gname, "grad.%s", wname);
    const rt_tensor *tied = rt_list_cfind(&out, gname), *emb = rt_list_cfind(&outs, gname),
                    *dec = rt_list_cfind(&outs, "grad.decoder.copy");
    cr_assert(tied && emb && dec);
    const double *t = tied->data, *a = emb->data, *b = dec->data;
    double amax = 0, bmax = 0, tmax = 0;
    for (int i = 0; i < 66; i++) {
        amax = fmax(amax, fabs(a[i]));
        bmax = fmax(bmax, fabs(b[i]));
        tmax = fmax(tmax, fabs(t[i]));
    }
    cr_expect_gt(amax, 1e-3, "the embedding use contributes nothing");
    cr_expect_gt(bmax, 1e-3, "the decoder use contributes nothing");
    for (int i = 0; i < 66; i++)
        cr_expect(fabs(t[i] - (a[i] + b[i])) <= 1e-12 * tmax,
                  "%s[%d] = %.17g, the two uses sum to %.17g", gname, i, t[i], a[i] + b[i]);
    /* Rows of ids absent from the batch (1, 5, 6, 8) have only the decoder's part. */
    for (int j = 0; j < 6; j++)
        cr_expect_eq(a[1 * 6 + j], 0.0, "row 1 is not an input id");
    rt_list_free(&out);
    rt_list_free(&outs);
    ir_graph_free(d);
    ir_graph_free(ds);
    ir_graph_free(s);
    rt_list_free(&params);
    rt_list_free(&inputs);
    ir_graph_free(g);
}

/* ---- against PyTorch autograd (the fixtures' expected_grads.safetensors) ----------- */

/* `bertcc run --grads` through the library: the model, batch and weights of a fixture,
 * the default pipeline, autodiff, the pipeline again, the interpreter in f32. Every
 * grad.* of the expected file must be written and match by the DESIGN.md §5 rule
 * (max|out - exp| <= 1e-3 max|exp| + 1e-6), and no other grad.* may be written. */
static void grads_match_pytorch_p(const char *dir, int64_t gather_extra)
{
    char path[512];
    fe_model m;
    bc_err e = {{0}};
    rt_tensor_list batch, inputs, ckpt, params, out, want;
    rt_list_init(&batch);
    rt_list_init(&inputs);
    rt_list_init(&ckpt);
    rt_list_init(&params);
    rt_list_init(&want);
    snprintf(path, sizeof path, "%s/model.xml", dir);
    cr_assert_eq(fe_load(tu_src(path), &m, &e), 0, "%s", e.msg);
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    cr_assert_eq(rt_st_load(tu_src(path), &batch, &e), 0, "%s", e.msg);
    unsigned present = 0;
    int64_t Bv, Sv;
    cr_assert_eq(tr_batch_prepare(&batch, m.max_position, m.head_mask & FE_LABEL_ALL,
                                  &inputs, &present, &Bv, &Sv, NULL, NULL, &e),
                 0, "%s", e.msg);
    cr_assert_neq(present, 0u, "%s has no labels", dir);
    int64_t P = 0;
    if (gather_extra) {
        /* The MLM head on gathered rows: P = the most labels of a row, plus unused rows. */
        const rt_tensor *l = rt_list_cfind(&inputs, "mlm_labels");
        cr_assert(l && l->dtype == RT_I64, "%s has no mlm_labels", dir);
        for (int64_t b = 0; b < l->shape[0]; b++) {
            int64_t n = 0;
            for (int64_t k = 0; k < l->shape[1]; k++)
                n += ((const int64_t *)l->data)[b * l->shape[1] + k] != -100;
            P = n > P ? n : P;
        }
        P += gather_extra;
        cr_assert_eq(rt_batch_mlm_gather(&inputs, P, &e), 0, "%s", e.msg);
        cr_assert_null(rt_list_cfind(&inputs, "mlm_labels"));
        cr_assert_eq(rt_batch_mlm_gather(&inputs, P, &e), -1, "labels gathered twice");
    }
    ir_graph *g = fe_build_bert_mlm_gather(&m, present, P, &e);
    cr_assert_not_null(g, "%s", e.msg);
    pass_grad_opts go = {"loss", NULL, 0};
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_autodiff(&g, &go, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    cr_assert_eq(rt_st_load(tu_src(path), &ckpt, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_params_from_checkpoint(g, &ckpt, 0, 0, &params, NULL, NULL, &e), 0,
                 "%s", e.msg);
    run_graph(g, &params, &inputs, 0, 0, &out);
    snprintf(path, sizeof path, "%s/expected_grads.safetensors", dir);
    cr_assert_eq(rt_st_load(tu_src(path), &want, &e), 0, "%s", e.msg);
    int ngrad = 0;
    for (int i = 0; i < want.n; i++) {
        const rt_tensor *w = &want.t[i];
        if (strncmp(w->name, "grad.", 5) && strcmp(w->name, "loss"))
            continue;
        ngrad += w->name[0] == 'g';
        const rt_tensor *o = rt_list_cfind(&out, w->name);
        cr_expect_not_null(o, "%s: no output %s", dir, w->name);
        if (!o)
            continue;
        cr_assert_eq(w->dtype, RT_F32, "%s: %s is not F32", dir, w->name);
        cr_expect_eq(o->rank, w->rank, "%s: %s rank", dir, w->name);
        for (int k = 0; k < w->rank && k < o->rank; k++)
            cr_expect_eq(o->shape[k], w->shape[k], "%s: %s dim %d", dir, w->name, k);
        double mr = 0, err = tu_max_err(o, w, &mr);
        double tol = (w->name[0] == 'g' ? 1e-3 : 1e-4) * mr + 1e-6; /* gradients, loss */
        cr_expect(err >= 0 && err <= tol, "%s: %s max error %g > %g (max |exp| %g)", dir,
                  w->name, err, tol, mr);
    }
    cr_expect_eq(ngrad, count_op(g, IR_OP_PARAM),
                 "%s: %d expected gradients for %d parameters", dir, ngrad,
                 count_op(g, IR_OP_PARAM));
    for (int i = 0; i < out.n; i++)
        if (!strncmp(out.t[i].name, "grad.", 5))
            cr_expect_not_null(rt_list_cfind(&want, out.t[i].name),
                               "%s: unexpected output %s", dir, out.t[i].name);
    ir_graph_free(g);
    rt_list_free(&batch);
    rt_list_free(&inputs);
    rt_list_free(&ckpt);
    rt_list_free(&params);
    rt_list_free(&out);
    rt_list_free(&want);
}

static void grads_match_pytorch(const char *dir)
{
    grads_match_pytorch_p(dir, 0);
}

Test(autodiff_pytorch, run_tiny_gradients_match_autograd)
{
    grads_match_pytorch("tests/fixtures/run_tiny");
}

Test(autodiff_pytorch, run_mlm_nsp_gradients_match_autograd)
{
    grads_match_pytorch("tests/fixtures/run_mlm_nsp");
}

/* The training graph of pre-training runs the MLM head on the labelled positions only
 * (fe_build_bert_mlm_gather): the same loss and gradients as autograd over the full
 * head, with 1 and 3 unused gathered rows per sequence. */
Test(autodiff_pytorch, mlm_head_on_gathered_rows_matches_autograd)
{
    grads_match_pytorch_p("tests/fixtures/run_mlm_nsp", 1);
    grads_match_pytorch_p("tests/fixtures/run_tiny", 3);
}

/* ---- what is differentiated --------------------------------------------------------- */

/* The model of fixture `dir`, built for `labels`, pipeline applied. */
static ir_graph *fixture_graph(const char *dir, unsigned labels, fe_model *m)
{
    char path[512];
    bc_err e = {{0}};
    snprintf(path, sizeof path, "%s/model.xml", dir);
    cr_assert_eq(fe_load(tu_src(path), m, &e), 0, "%s", e.msg);
    return tiny_graph(m, labels);
}

Test(autodiff, frozen_parameters_get_no_gradient_and_their_subgraph_is_not_differentiated)
{
    fe_model m;
    tiny_model(&m, FE_ACT_GELU, 0.1);
    ir_graph *g = tiny_graph(&m, FE_LABEL_ALL);
    const char *const emb[1] = {"bert.embeddings."};
    /* Unoptimized: what autodiff emits, before DCE could hide needless VJPs. */
    ir_graph *all = differentiate(g, NULL, 0, 0), *fr = differentiate(g, emb, 1, 0);
    /* Every parameter has a gradient unless frozen. */
    for (int v = 0; v < g->n; v++) {
        if (g->nodes[v].op != IR_OP_PARAM)
            continue;
        char gname[512];
        snprintf(gname, sizeof gname, "grad.%s", g->nodes[v].name);
        cr_expect(ir_find_output(all, gname) >= 0, "no %s", gname);
        int frozen = !strncmp(g->nodes[v].name, "bert.embeddings.", 16);
        cr_expect_eq(ir_find_output(fr, gname) >= 0, !frozen, "%s %s", gname,
                     frozen ? "written for a frozen parameter" : "missing");
    }
    /* No embedding VJPs: no scatter_add (word and token-type gathers), no pad_rows
     * (positions), and one layernorm_dx fewer (the embeddings' LayerNorm). */
    cr_expect_geq(count_op(all, IR_OP_SCATTER_ADD), 2);
    cr_expect_eq(count_op(all, IR_OP_PAD_ROWS), 1);
    cr_expect_eq(count_op(fr, IR_OP_SCATTER_ADD), 0);
    cr_expect_eq(count_op(fr, IR_OP_PAD_ROWS), 0);
    cr_expect_eq(count_op(fr, IR_OP_LAYERNORM_DX), count_op(all, IR_OP_LAYERNORM_DX) - 1);
    /* Freezing the whole encoder leaves only the heads' VJPs: the MLM transform's
     * LayerNorm is the one layernorm_dx left, and no softmax_grad. */
    const char *const bert[1] = {"bert."};
    ir_graph *heads = differentiate(g, bert, 1, 0);
    cr_expect_eq(count_op(heads, IR_OP_LAYERNORM_DX), 1);
    cr_expect_eq(count_op(heads, IR_OP_SOFTMAX_GRAD), 0);
    cr_expect_eq(count_op(heads, IR_OP_SCATTER_ADD), 0);

    /* The trainable parameters' gradients do not change when others are frozen. */
    rt_tensor_list params, inputs, oa, of;
    tiny_params(g, 9, &params);
    tiny_batch(&inputs);
    run_graph(all, &params, &inputs, 1, 1, &oa);
    run_graph(fr, &params, &inputs, 1, 1, &of);
    int compared = 0;
    for (int i = 0; i < of.n; i++) {
        if (strncmp(of.t[i].name, "grad.", 5))
            continue;
        const rt_tensor *a = rt_list_cfind(&oa, of.t[i].name);
        cr_assert_not_null(a);
        for (int64_t j = 0; j < rt_numel(a); j++)
            cr_expect(fabs(value_at(a, j) - value_at(&of.t[i], j)) <=
                          1e-12 * (1 + fabs(value_at(a, j))),
                      "%s[%lld] changed when the embeddings were frozen", of.t[i].name,
                      (long long)j);
        compared++;
    }
    cr_expect_eq(compared, count_op(g, IR_OP_PARAM) - 5);
    rt_list_free(&params);
    rt_list_free(&inputs);
    rt_list_free(&oa);
    rt_list_free(&of);
    ir_graph_free(all);
    ir_graph_free(fr);
    ir_graph_free(heads);
    ir_graph_free(g);
}

Test(autodiff, a_parameter_the_loss_does_not_use_gets_a_zero_gradient)
{
    /* run_mlm_nsp's model with MLM labels only: the pooler and the NSP classifier feed
     * outputs but not the loss. */
    fe_model m;
    ir_graph *g = fixture_graph("tests/fixtures/run_mlm_nsp", FE_LABEL_MLM, &m);
    cr_assert(ir_find_output(g, "nsp_loss") < 0);
    rt_tensor_list params, inputs, out;
    tiny_params(g, 10, &params);
    rt_list_init(&inputs);
    int64_t Bv = 2, Sv = 5;
    int64_t ids[10] = {2, 7, 10, 4, 3, 2, 9, 3, 0, 0}, zeros[10] = {0},
            mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0},
            mlm[10] = {-100, 5, -100, 8, 1, 0, -100, 10, -100, -100};
    cr_assert(rt_list_add(&inputs, "input_ids", RT_I64, 2, SH(Bv, Sv), ids));
    cr_assert(rt_list_add(&inputs, "token_type_ids", RT_I64, 2, SH(Bv, Sv), zeros));
    cr_assert(rt_list_add(&inputs, "attention_mask", RT_I64, 2, SH(Bv, Sv), mask));
    cr_assert(rt_list_add(&inputs, "mlm_labels", RT_I64, 2, SH(Bv, Sv), mlm));
    /* Nothing off the loss's path is differentiated: no tanh_grad (the pooler), one
     * cross_entropy_grad (MLM's). */
    ir_graph *raw = differentiate(g, NULL, 0, 0);
    cr_expect_eq(count_op(raw, IR_OP_TANH_GRAD), 0);
    cr_expect_eq(count_op(raw, IR_OP_CROSS_ENTROPY_GRAD), 1);
    ir_graph_free(raw);
    ir_graph *d = differentiate(g, NULL, 0, 1);
    run_graph(d, &params, &inputs, 1, 1, &out);
    static const char *const unused[] = {
        "grad.bert.pooler.dense.weight", "grad.bert.pooler.dense.bias",
        "grad.cls.seq_relationship.weight", "grad.cls.seq_relationship.bias"};
    for (int i = 0; i < NELEM(unused); i++) {
        const rt_tensor *t = rt_list_cfind(&out, unused[i]);
        cr_expect_not_null(t, "no %s", unused[i]);
        if (!t)
            continue;
        int64_t want[2] = {0, 0};
        const ir_node *p = &g->nodes[ir_find_named(g, IR_OP_PARAM, unused[i] + 5)];
        for (int k = 0; k < p->type.rank; k++)
            want[k] = p->type.dim[k].c;
        cr_expect(t->rank == p->type.rank && t->shape[0] == want[0] &&
                      (t->rank < 2 || t->shape[1] == want[1]),
                  "%s has the wrong shape", unused[i]);
        for (int64_t j = 0; j < rt_numel(t); j++)
            cr_expect(value_at(t, j) == 0.0, "%s[%lld] = %g", unused[i], (long long)j,
                      value_at(t, j));
    }
    /* The encoder's gradients are not zero. */
    const rt_tensor *q =
        rt_list_cfind(&out, "grad.bert.encoder.layer.0.attention.self.query.weight");
    cr_assert_not_null(q);
    double s = 0;
    for (int64_t j = 0; j < rt_numel(q); j++)
        s += fabs(value_at(q, j));
    cr_expect_gt(s, 0);
    rt_list_free(&params);
    rt_list_free(&inputs);
    rt_list_free(&out);
    ir_graph_free(d);
    ir_graph_free(g);
}

Test(autodiff, a_graph_without_a_loss_is_an_error)
{
    fe_model m;
    bc_err e = {{0}};
    ir_graph *g = fixture_graph("tests/fixtures/run_tiny", 0, &m); /* no labels: no loss */
    cr_assert(ir_find_output(g, "loss") < 0);
    int n = g->n, nout = g->nout;
    cr_expect_eq(pass_autodiff(&g, NULL, &e), -1);
    cr_expect(strstr(e.msg, "'loss'") != NULL, "message: %s", e.msg);
    cr_expect_eq(g->n, n, "a failed autodiff changed the graph");
    cr_expect_eq(g->nout, nout);
    /* A named loss that is missing, and one that is not a scalar. */
    pass_grad_opts o = {"total", NULL, 0};
    memset(&e, 0, sizeof e);
    cr_expect_eq(pass_autodiff(&g, &o, &e), -1);
    cr_expect(strstr(e.msg, "'total'") != NULL, "message: %s", e.msg);
    o.loss = "mlm_logits";
    memset(&e, 0, sizeof e);
    cr_expect_eq(pass_autodiff(&g, &o, &e), -1);
    cr_expect(strstr(e.msg, "mlm_logits") != NULL && strstr(e.msg, "scalar") != NULL,
              "message: %s", e.msg);
    ir_graph_free(g);
}

Test(autodiff, an_op_without_a_vjp_row_is_an_error_naming_it)
{
    /* reduce_sum is an op autodiff introduces (no row); a forward graph that uses it
     * cannot be differentiated, and the message says which op is missing. */
    gcase c;
    gc_init(&c, "no_rule", 113);
    int x = gc_param(&c, "x", 2, SH(3, 5), -1, 1);
    ir_type scalar = ir_type_make(IR_F32, 0, NULL);
    int s = ir_add(c.g, IR_OP_REDUCE_SUM, &x, 1, NULL, NULL, &scalar);
    ir_set_output(c.g, "loss", ir_unary(c.g, IR_OP_TANH, s));
    cr_assert_eq(c.g->failed, 0, "%s", c.g->err.msg);
    bc_err e = {{0}};
    cr_expect_eq(pass_autodiff(&c.g, NULL, &e), -1);
    cr_expect(strstr(e.msg, "reduce_sum") != NULL, "message: %s", e.msg);
    gc_free(&c);
}

Test(autodiff, the_gradient_of_a_value_used_twice_is_summed)
{
    /* loss = sum(x * x * w): d/dx = 2 x w exactly, both uses counted. */
    gcase c;
    gc_init(&c, "square", 111);
    int x = gc_param(&c, "x", 2, SH(3, 5), -2, 2);
    gc_loss(&c, ir_mul(c.g, x, x));
    ir_graph *d = differentiate(c.g, proj_frozen, 1, 0);
    rt_tensor_list out;
    run_graph(d, &c.params, &c.inputs, 1, 1, &out);
    const rt_tensor *gt = rt_list_cfind(&out, "grad.x");
    const rt_tensor *xt = rt_list_cfind(&c.params, "x"),
                    *wt = rt_list_cfind(&c.params, "proj.w");
    cr_assert(gt && xt && wt);
    for (int i = 0; i < 15; i++) {
        double want = 2 * ((const double *)xt->data)[i] * ((const double *)wt->data)[i];
        cr_expect(fabs(((const double *)gt->data)[i] - want) <= 1e-15 * (1 + fabs(want)),
                  "grad.x[%d] = %.17g, want 2 x w = %.17g", i,
                  ((const double *)gt->data)[i], want);
    }
    rt_list_free(&out);
    ir_graph_free(d);
    gc_check(&c);
    gc_free(&c);

    /* Both operands of one matmul: x x^T. */
    gc_init(&c, "gram", 114);
    x = gc_param(&c, "x", 2, SH(3, 5), -2, 2);
    gc_loss(&c, ir_matmul(c.g, x, x, 0, 1));
    gc_check(&c);
    gc_free(&c);

    /* A value feeding two different ops (tanh(y) + y*w, y = x + b): still summed. */
    gc_init(&c, "fanout", 112);
    x = gc_param(&c, "x", 2, SH(5, 3), -2, 2);
    int b = gc_param(&c, "b", 1, SH(3), -1, 1);
    int w = gc_param(&c, "w", 1, SH(3), -1, 1);
    int y = ir_addv(c.g, x, b);
    gc_loss(&c, ir_addv(c.g, ir_unary(c.g, IR_OP_TANH, y), ir_mul(c.g, y, w)));
    gc_check(&c);
    gc_free(&c);
}

/* ---- training-mode dropout ----------------------------------------------------------- */

static void add_seed(rt_tensor_list *inputs, int64_t seed)
{
    cr_assert(rt_list_add(inputs, "dropout_seed", RT_I64, 0, NULL, &seed));
}

/* Runs the training graph d (f32, two threads) with seed; returns the outputs. */
static void train_run(const ir_graph *d, const rt_tensor_list *params,
                      rt_tensor_list *inputs, int64_t seed, rt_tensor_list *out)
{
    add_seed(inputs, seed);
    run_graph(d, params, inputs, 0, 2, out);
}

static int same_bits(const rt_tensor *a, const rt_tensor *b)
{
    return a->dtype == b->dtype && rt_nbytes(a) == rt_nbytes(b) &&
           !memcmp(a->data, b->data, rt_nbytes(a));
}

Test(autodiff_dropout, the_same_seed_repeats_the_bits_and_another_seed_differs)
{
    fe_model m;
    tiny_model(&m, FE_ACT_GELU, 0.2);
    ir_graph *g = tiny_graph(&m, FE_LABEL_ALL | FE_BUILD_TRAIN);
    cr_assert(ir_find_named(g, IR_OP_INPUT, "dropout_seed") >= 0);
    cr_expect_gt(count_op(g, IR_OP_DROPOUT), 0);
    ir_graph *d = differentiate(g, NULL, 0, 1);
    rt_tensor_list params, inputs, o1, o2, o3;
    tiny_params(g, 11, &params);
    tiny_batch(&inputs);
    train_run(d, &params, &inputs, 42, &o1);
    train_run(d, &params, &inputs, 42, &o2);
    train_run(d, &params, &inputs, 43, &o3);
    cr_assert_eq(o1.n, o2.n);
    int differ = 0;
    for (int i = 0; i < o1.n; i++) {
        const rt_tensor *b = rt_list_cfind(&o2, o1.t[i].name);
        cr_assert_not_null(b);
        cr_expect(same_bits(&o1.t[i], b), "%s differs between two runs with seed 42",
                  o1.t[i].name);
        const rt_tensor *c = rt_list_cfind(&o3, o1.t[i].name);
        cr_assert_not_null(c);
        differ += !same_bits(&o1.t[i], c);
    }
    cr_expect_neq(scalar_out(&o1, "loss"), scalar_out(&o3, "loss"),
                  "seeds 42 and 43 give the same loss");
    cr_expect_gt(differ, o1.n / 2, "only %d of %d outputs differ between seeds", differ,
                 o1.n);
    /* The eval-mode graph gives yet another loss (dropout is really applied). */
    ir_graph *ev = tiny_graph(&m, FE_LABEL_ALL);
    rt_tensor_list oe;
    run_graph(ev, &params, &inputs, 0, 2, &oe);
    cr_expect_neq(scalar_out(&oe, "loss"), scalar_out(&o1, "loss"));
    rt_list_free(&oe);
    ir_graph_free(ev);
    rt_list_free(&params);
    rt_list_free(&inputs);
    rt_list_free(&o1);
    rt_list_free(&o2);
    rt_list_free(&o3);
    ir_graph_free(d);
    ir_graph_free(g);
}

Test(autodiff_dropout, drops_a_fraction_p_and_the_backward_mask_is_the_forward_one)
{
    /* y = dropout(x) on 99 x 1011 elements; the gradient of sum(y * w) is w * keep / (1-p),
     * so it is zero exactly where y is. */
    static const double ps[2] = {0.1, 0.5};
    for (int t = 0; t < 2; t++) {
        double p = ps[t];
        gcase c;
        gc_init(&c, "dropout_fraction", 120 + (uint64_t)t);
        int x = gc_param(&c, "x", 2, SH(99, 1011), 0.5, 1.5);
        int64_t seed = 777;
        int s = gc_input(&c, "seed", 0, NULL, &seed);
        ir_attrs a = {0};
        a.p = p;
        a.index = 3;
        int in[2] = {x, s};
        int y = ir_add(c.g, IR_OP_DROPOUT, in, 2, &a, NULL, NULL);
        ir_set_output(c.g, "y", y);
        gc_loss(&c, y);
        ir_graph *d = differentiate(c.g, proj_frozen, 1, 1);
        rt_tensor_list out;
        run_graph(d, &c.params, &c.inputs, 1, 1, &out);
        const rt_tensor *yt = rt_list_cfind(&out, "y"), *gt = rt_list_cfind(&out, "grad.x");
        const rt_tensor *xt = rt_list_cfind(&c.params, "x"),
                        *wt = rt_list_cfind(&c.params, "proj.w");
        cr_assert(yt && gt && xt && wt);
        int64_t n = rt_numel(yt), dropped = 0, bad = 0;
        for (int64_t i = 0; i < n; i++) {
            double yv = value_at(yt, i), gv = value_at(gt, i);
            double xv = ((const double *)xt->data)[i], wv = ((const double *)wt->data)[i];
            int keep = yv != 0;
            dropped += !keep;
            bad += keep ? fabs(yv - xv / (1 - p)) > 1e-12 || fabs(gv - wv / (1 - p)) > 1e-12
                        : gv != 0;
        }
        double frac = (double)dropped / (double)n, sd = sqrt(p * (1 - p) / (double)n);
        cr_expect(fabs(frac - p) < 5 * sd, "p = %g: dropped %g of %lld", p, frac,
                  (long long)n);
        cr_expect_eq(bad, 0,
                     "p = %g: %lld elements where y or its gradient disagree with "
                     "the mask",
                     p, (long long)bad);
        rt_list_free(&out);
        ir_graph_free(d);
        gc_free(&c);
    }
}

Test(autodiff_dropout, finite_differences_match_with_a_fixed_seed)
{
    fe_model m;
    tiny_model(&m, FE_ACT_GELU, 0.3);
    ir_graph *g = tiny_graph(&m, FE_LABEL_ALL | FE_BUILD_TRAIN);
    rt_tensor_list params, inputs;
    tiny_params(g, 12, &params);
    tiny_batch(&inputs);
    add_seed(&inputs, 2024);
    check_fd(g, &params, &inputs, NULL, 0, 0, 1e-5, 1e-5, 1e-8);
    rt_list_free(&params);
    rt_list_free(&inputs);
    ir_graph_free(g);
}
