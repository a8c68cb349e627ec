/* interp.c: the reference interpreter (see interp.h). One kernel row per op, in
 * `kernels` below; each row unpacks concrete shapes and calls the reference kernel. */
#include "interp.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
#include "ref.h"

typedef struct {
    const ir_graph *g;
    const rt_tensor_list *params, *inputs;
    int64_t B, S;
    int64_t (*shape)[IR_MAX_RANK]; /* (n, rank) concrete shapes */
    int64_t *numel;                /* (n) */
    double **f;                    /* (n) f32-typed values, in double */
    int64_t **iv;                  /* (n) i64-typed values */
    int f64;                       /* keep doubles (else round each f32 result) */
} ctx;

static int run_region(ctx *c, int v, bc_err *e);

/* eval_node never calls it: a result's value comes with its fused node's */
static int k_result(ctx *c, int v, bc_err *e)
{
    (void)c;
    return bc_errf(e, "%%%d (result): evaluated apart from its fused node", v);
}

static const ir_node *node(const ctx *c, int v)
{
    return &c->g->nodes[v];
}

static int rank(const ctx *c, int v)
{
    return node(c, v)->type.rank;
}

/* ---- kernel rows ---- */

static int k_param(ctx *c, int v, bc_err *e)
{
    const ir_node *n = node(c, v);
    const rt_tensor *t = rt_list_cfind(c->params, n->name);
    if (!t)
        return bc_errf(e, "missing parameter '%s'", n->name);
    if (t->rank != n->type.rank || memcmp(t->shape, c->shape[v], sizeof(int64_t) * t->rank))
        return bc_errf(e, "parameter '%s' has the wrong shape", n->name);
    double *out = c->f[v];
    if (t->dtype == RT_F64) {
        memcpy(out, t->data, sizeof(double) * (size_t)c->numel[v]);
        return 0;
    }
    float *tmp = malloc(sizeof(float) * (size_t)(c->numel[v] ? c->numel[v] : 1));
    if (!tmp)
        return bc_errf(e, "out of memory");
    int rc = rt_to_f32(t, tmp, e);
    for (int64_t i = 0; rc == 0 && i < c->numel[v]; i++)
        out[i] = tmp[i];
    free(tmp);
    return rc;
}

static int k_input(ctx *c, int v, bc_err *e)
{
    const ir_node *n = node(c, v);
    const rt_tensor *t = rt_list_cfind(c->inputs, n->name);
    if (!t)
        return bc_errf(e, "missing input '%s'", n->name);
    if (t->rank != n->type.rank ||
        memcmp(t->shape, c->shape[v], sizeof(int64_t) * t->rank)) {
        char s1[128], s2[128];
        return bc_errf(e, "input '%s' has shape %s, expected %s", n->name,
                       rt_shape_str(t->rank, t->shape, s1, sizeof s1),
                       rt_shape_str(n->type.rank, c->shape[v], s2, sizeof s2));
    }
    if (n->type.dtype == IR_I64)
        return rt_to_i64(t, c->iv[v], e);
    float *tmp = malloc(sizeof(float) * (size_t)(c->numel[v] ? c->numel[v] : 1));
    if (!tmp)
        return bc_errf(e, "out of memory");
    int rc = rt_to_f32(t, tmp, e);
    for (int64_t i = 0; rc == 0 && i < c->numel[v]; i++)
        c->f[v][i] = tmp[i];
    free(tmp);
    return rc;
}

/* Kernels that index (gather, prefix_rows, attn_softmax, cross_entropy, scatter_add)
 * run after rt_check_node has checked their index operands (check.h). */

static void k_gather(ctx *c, int v)
{
    int tab = node(c, v)->in[0], ids = node(c, v)->in[1];
    ref_gather(c->f[v], c->f[tab], c->iv[ids], c->numel[ids], c->shape[tab][1]);
}

static void k_prefix_rows(ctx *c, int v)
{
    memcpy(c->f[v], c->f[node(c, v)->in[0]], sizeof(double) * (size_t)c->numel[v]);
}

static void k_add(ctx *c, int v)
{
    int a = node(c, v)->in[0], b = node(c, v)->in[1];
    ref_add(c->f[v], c->f[a], c->numel[a], c->f[b], c->numel[b]);
}

static void k_mul(ctx *c, int v)
{
    int a = node(c, v)->in[0], b = node(c, v)->in[1];
    ref_mul(c->f[v], c->f[a], c->numel[a], c->f[b], c->numel[b]);
}

/* With a packed rhs (operand 2, pack_b of b), b is read from its panels, as compiled
 * code reads it: the two backends compute from the same operand. */
static int k_matmul(ctx *c, int v, bc_err *e)
{
    const ir_node *n = node(c, v);
    int a = n->in[0], b = n->in[1], r = rank(c, v);
    int64_t m = c->shape[v][r - 2], nn = c->shape[v][r - 1];
    int64_t k = n->a.ta ? c->shape[a][r - 2] : c->shape[a][r - 1];
    int64_t batch = c->numel[v] / (m * nn > 0 ? m * nn : 1);
    int b_batched = rank(c, b) == r && r > 2;
    if (n->nin < 3) {
        ref_matmul(c->f[v], c->f[a], c->f[b], batch, m, nn, k, n->a.ta, n->a.tb, b_batched);
        return 0;
    }
    double *bb = malloc(sizeof *bb * (size_t)(k * nn > 0 ? k * nn : 1));
    if (!bb)
        return bc_errf(e, "out of memory");
    ref_unpack_b(bb, c->f[n->in[2]], k, nn, IR_PACK_W);
    ref_matmul(c->f[v], c->f[a], bb, batch, m, nn, k, n->a.ta, 0, 0);
    free(bb);
    return 0;
}

static void k_pack_b(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int w = n->in[0];
    int64_t k = c->shape[w][n->a.tb ? 1 : 0], nn = c->shape[w][n->a.tb ? 0 : 1];
    ref_pack_b(c->f[v], c->f[w], k, nn, n->a.tb, IR_PACK_W);
}

static void k_transpose(ctx *c, int v)
{
    int x = node(c, v)->in[0];
    ref_transpose(c->f[v], c->f[x], rank(c, x), c->shape[x], node(c, v)->a.perm);
}

static void k_copy(ctx *c, int v)
{
    int x = node(c, v)->in[0];
    if (node(c, v)->type.dtype == IR_I64)
        memcpy(c->iv[v], c->iv[x], sizeof(int64_t) * (size_t)c->numel[v]);
    else
        memcpy(c->f[v], c->f[x], sizeof(double) * (size_t)c->numel[v]);
}

static void k_gelu(ctx *c, int v)
{
    ref_gelu(c->f[v], c->f[node(c, v)->in[0]], c->numel[v]);
}

static void k_gelu_tanh(ctx *c, int v)
{
    ref_gelu_tanh(c->f[v], c->f[node(c, v)->in[0]], c->numel[v]);
}

static void k_tanh(ctx *c, int v)
{
    ref_tanh(c->f[v], c->f[node(c, v)->in[0]], c->numel[v]);
}

static void k_scale(ctx *c, int v)
{
    ref_scale(c->f[v], c->f[node(c, v)->in[0]], c->numel[v], node(c, v)->a.scale);
}

static void k_layernorm(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int64_t h = c->shape[v][rank(c, v) - 1];
    ref_layernorm(c->f[v], c->f[n->in[0]], c->f[n->in[1]], c->f[n->in[2]],
                  h ? c->numel[v] / h : 0, h, n->a.eps);
}

static void k_attn_softmax(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int x = n->in[0], mask = n->in[1];
    int64_t batch = c->shape[x][0], t = c->shape[x][rank(c, x) - 1];
    int64_t rows = (batch > 0 && t > 0) ? c->numel[x] / (batch * t) : 0;
    ref_attn_softmax(c->f[v], c->f[x], c->iv[mask], batch, rows, t, n->a.scale);
}

static int k_select(ctx *c, int v, bc_err *e)
{
    const ir_node *n = node(c, v);
    int x = n->in[0], ax = n->a.axis;
    int64_t outer = 1, inner = 1, len = c->shape[x][ax];
    for (int i = 0; i < ax; i++)
        outer *= c->shape[x][i];
    for (int i = ax + 1; i < rank(c, x); i++)
        inner *= c->shape[x][i];
    if (n->a.index >= len)
        return bc_errf(e, "%%%d (select): index %lld out of range %lld", v,
                       (long long)n->a.index, (long long)len);
    ref_select(c->f[v], c->f[x], outer, len, inner, n->a.index);
    return 0;
}

static void k_cross_entropy(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int lg = n->in[0], lb = n->in[1];
    int64_t cls = c->shape[lg][rank(c, lg) - 1], rows = c->numel[lb];
    if (n->nin > 2)
        c->f[v][0] =
            ref_cross_entropy_weighted(c->f[lg], c->iv[lb], c->f[n->in[2]], rows, cls);
    else
        c->f[v][0] = ref_cross_entropy(c->f[lg], c->iv[lb], rows, cls);
}

static void k_dropout(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    uint64_t seed = (uint64_t)c->iv[n->in[1]][0];
    ref_dropout(c->f[v], c->f[n->in[0]], c->numel[v], n->a.p, seed, (uint64_t)n->a.index);
}

static void k_fill(ctx *c, int v)
{
    for (int64_t i = 0; i < c->numel[v]; i++)
        c->f[v][i] = node(c, v)->a.scale;
}

static void k_reduce_sum(ctx *c, int v)
{
    int x = node(c, v)->in[0];
    if (c->numel[v] == 0)
        return;
    ref_reduce_sum(c->f[v], c->f[x], c->numel[x], c->numel[v]);
}

static void k_scatter_add(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int ids = n->in[0], dy = n->in[1];
    int64_t rows = c->shape[v][0], h = c->shape[v][1];
    ref_scatter_add(c->f[v], c->iv[ids], c->f[dy], c->numel[ids], rows, h);
}

static int k_pad_rows(ctx *c, int v, bc_err *e)
{
    int x = node(c, v)->in[0];
    int64_t inner = c->shape[v][0] ? c->numel[v] / c->shape[v][0] : 0;
    if (c->shape[x][0] > c->shape[v][0])
        return bc_errf(e, "%%%d (pad_rows): %lld rows do not fit in %lld", v,
                       (long long)c->shape[x][0], (long long)c->shape[v][0]);
    ref_pad_rows(c->f[v], c->f[x], c->shape[x][0], c->shape[v][0], inner);
    return 0;
}

static void k_gelu_grad(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    ref_gelu_grad(c->f[v], c->f[n->in[0]], c->f[n->in[1]], c->numel[v]);
}

static void k_gelu_tanh_grad(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    ref_gelu_tanh_grad(c->f[v], c->f[n->in[0]], c->f[n->in[1]], c->numel[v]);
}

static void k_tanh_grad(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    ref_tanh_grad(c->f[v], c->f[n->in[0]], c->f[n->in[1]], c->numel[v]);
}

static void k_layernorm_dx(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int64_t h = c->shape[v][rank(c, v) - 1];
    ref_layernorm_dx(c->f[v], c->f[n->in[0]], c->f[n->in[1]], c->f[n->in[2]],
                     h ? c->numel[v] / h : 0, h, n->a.eps);
}

static void k_layernorm_dgamma(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int64_t h = c->numel[v];
    ref_layernorm_dgamma(c->f[v], c->f[n->in[0]], c->f[n->in[1]],
                         h ? c->numel[n->in[0]] / h : 0, h, n->a.eps);
}

static void k_softmax_grad(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int64_t t = c->shape[v][rank(c, v) - 1];
    ref_softmax_grad(c->f[v], c->f[n->in[0]], c->f[n->in[1]], t ? c->numel[v] / t : 0, t,
                     n->a.scale);
}

static int k_select_grad(ctx *c, int v, bc_err *e)
{
    const ir_node *n = node(c, v);
    int ax = n->a.axis;
    int64_t outer = 1, inner = 1, len = c->shape[v][ax];
    for (int i = 0; i < ax; i++)
        outer *= c->shape[v][i];
    for (int i = ax + 1; i < rank(c, v); i++)
        inner *= c->shape[v][i];
    if (n->a.index >= len)
        return bc_errf(e, "%%%d (select_grad): index %lld out of range %lld", v,
                       (long long)n->a.index, (long long)len);
    ref_select_grad(c->f[v], c->f[n->in[0]], outer, len, inner, n->a.index);
    return 0;
}

static void k_cross_entropy_grad(ctx *c, int v)
{
    const ir_node *n = node(c, v);
    int lg = n->in[0], lb = n->in[1];
    int64_t cls = c->shape[lg][rank(c, lg) - 1];
    /* Labels were range-checked by the forward cross_entropy that reads them. */
    if (n->nin > 3)
        ref_cross_entropy_weighted_grad(c->f[v], c->f[lg], c->iv[lb], c->f[n->in[3]],
                                        c->numel[lb], cls, c->f[n->in[2]][0]);
    else
        ref_cross_entropy_grad(c->f[v], c->f[lg], c->iv[lb], c->numel[lb], cls,
                               c->f[n->in[2]][0]);
}

/* One row per op: a kernel that cannot fail, or one that can (binding a tensor, an
 * attribute index past a dimension known only at run time). */
static const struct {
    void (*run)(ctx *c, int v);
    int (*fails)(ctx *c, int v, bc_err *e);
} kernels[IR_OP_COUNT] = {
    [IR_OP_PARAM] = {.fails = k_param},
    [IR_OP_INPUT] = {.fails = k_input},
    [IR_OP_GATHER] = {k_gather},
    [IR_OP_PREFIX_ROWS] = {k_prefix_rows},
    [IR_OP_ADD] = {k_add},
    [IR_OP_MUL] = {k_mul},
    [IR_OP_MATMUL] = {.fails = k_matmul},
    [IR_OP_TRANSPOSE] = {k_transpose},
    [IR_OP_RESHAPE] = {k_copy},
    [IR_OP_GELU] = {k_gelu},
    [IR_OP_GELU_TANH] = {k_gelu_tanh},
    [IR_OP_TANH] = {k_tanh},
    [IR_OP_SCALE] = {k_scale},
    [IR_OP_LAYERNORM] = {k_layernorm},
    [IR_OP_ATTN_SOFTMAX] = {k_attn_softmax},
    [IR_OP_SELECT] = {.fails = k_select},
    [IR_OP_CROSS_ENTROPY] = {k_cross_entropy},
    [IR_OP_DROPOUT] = {k_dropout},
    [IR_OP_FILL] = {k_fill},
    [IR_OP_REDUCE_SUM] = {k_reduce_sum},
    [IR_OP_SCATTER_ADD] = {k_scatter_add},
    [IR_OP_PAD_ROWS] = {.fails = k_pad_rows},
    [IR_OP_GELU_GRAD] = {k_gelu_grad},
    [IR_OP_GELU_TANH_GRAD] = {k_gelu_tanh_grad},
    [IR_OP_TANH_GRAD] = {k_tanh_grad},
    [IR_OP_LAYERNORM_DX] = {k_layernorm_dx},
    [IR_OP_LAYERNORM_DGAMMA] = {k_layernorm_dgamma},
    [IR_OP_SOFTMAX_GRAD] = {k_softmax_grad},
    [IR_OP_SELECT_GRAD] = {.fails = k_select_grad},
    [IR_OP_CROSS_ENTROPY_GRAD] = {k_cross_entropy_grad},
    [IR_OP_PACK_B] = {k_pack_b},
    [IR_OP_FUSED] = {.fails = run_region},
    [IR_OP_RESULT] = {.fails = k_result},
};

int rt_interp_has_kernel(ir_opcode op)
{
    return (unsigned)op < IR_OP_COUNT && (kernels[op].run || kernels[op].fails);
}

/* ---- driver ---- */

static int is_sym(ir_dim d, int eb, int es)
{
    return d.c == 1 && d.eb == eb && d.es == es;
}

int rt_bind_sizes(const ir_graph *g, const rt_tensor_list *inputs, int64_t *B, int64_t *S,
                  bc_err *e)
{
    *B = *S = -1;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_INPUT)
            continue;
        const rt_tensor *t = rt_list_cfind(inputs, n->name);
        if (!t)
            return bc_errf(e, "missing input '%s'", n->name);
        if (t->rank != n->type.rank) {
            char s[128];
            return bc_errf(e, "input '%s' has rank %d (shape %s), expected %d", n->name,
                           t->rank, rt_shape_str(t->rank, t->shape, s, sizeof s),
                           n->type.rank);
        }
        for (int d = 0; d < t->rank; d++) {
            int64_t *slot = is_sym(n->type.dim[d], 1, 0)   ? B
                            : is_sym(n->type.dim[d], 0, 1) ? S
                                                           : NULL;
            if (slot && *slot < 0)
                *slot = t->shape[d];
        }
    }
    if (*B < 0)
        *B = 1;
    if (*S < 0)
        *S = 1;
    if (*B < 1 || *S < 1)
        return bc_errf(e,
                       "batch size and sequence length must be positive (got B=%lld, "
                       "S=%lld)",
                       (long long)*B, (long long)*S);
    return 0;
}

static void free_ctx(ctx *c)
{
    for (int i = 0; c->f && i < c->g->n; i++) {
        free(c->f[i]);
        free(c->iv[i]);
    }
    free(c->f);
    free(c->iv);
    free(c->shape);
    free(c->numel);
}

static int alloc_value(ctx *c, int v)
{
    size_t n = (size_t)(c->numel[v] ? c->numel[v] : 1);
    if (node(c, v)->type.dtype == IR_I64)
        return (c->iv[v] = calloc(n, sizeof(int64_t))) ? 0 : -1;
    return (c->f[v] = calloc(n, sizeof(double))) ? 0 : -1;
}

static void release(ctx *c, int v)
{
    free(c->f[v]);
    free(c->iv[v]);
    c->f[v] = NULL;
    c->iv[v] = NULL;
}

static int write_outputs(ctx *c, const rt_interp_opts *o, rt_tensor_list *out, bc_err *e)
{
    for (int k = 0; k < c->g->nout; k++) {
        int v = c->g->outs[k].value;
        int is_int = node(c, v)->type.dtype == IR_I64;
        rt_dtype dt = is_int ? RT_I64 : o->f64 ? RT_F64 : RT_F32;
        rt_tensor *t =
            rt_list_add(out, c->g->outs[k].name, dt, rank(c, v), c->shape[v], NULL);
        if (!t)
            return bc_errf(e, "out of memory");
        for (int64_t i = 0; i < c->numel[v]; i++) {
            if (is_int)
                ((int64_t *)t->data)[i] = c->iv[v][i];
            else if (o->f64)
                ((double *)t->data)[i] = c->f[v][i];
            else
                ((float *)t->data)[i] = (float)c->f[v][i];
        }
    }
    return 0;
}

/* Checks node v's index operands (check.h), then runs its kernel. */
static int run_node(ctx *c, int v, bc_err *e)
{
    int op = node(c, v)->op, u = rt_check_operand(c->g, v);
    if (rt_check_node(c->g, v, u >= 0 ? c->iv[u] : NULL, c->B, c->S, RT_CHECK_REF, e))
        return -1;
    if (kernels[op].fails)
        return kernels[op].fails(c, v, e);
    kernels[op].run(c, v);
    return 0;
}

/* Computes value v: its shape, its memory, its kernel, and (unless f64) the rounding
 * of an f32 result to float. */
static int eval_node(ctx *c, int v, bc_err *e)
{
    const ir_node *nd = node(c, v);
    c->numel[v] = 1;
    for (int d = 0; d < nd->type.rank; d++) {
        c->shape[v][d] = ir_dim_eval(nd->type.dim[d], c->B, c->S);
        c->numel[v] *= c->shape[v][d];
    }
    if (nd->op == IR_OP_RESULT) /* its fused node left the value (run_region) */
        return c->f[v] || c->iv[v] ? 0 : bc_errf(e, "%%%d (result): no value", v);
    if (alloc_value(c, v))
        return bc_errf(e, "out of memory");
    if (!rt_interp_has_kernel(nd->op))
        return bc_errf(e, "%%%d: the reference interpreter has no kernel for %s", v,
                       ir_ops[nd->op].name);
    if (run_node(c, v, e))
        return -1;
    if (!c->f64 && nd->type.dtype == IR_F32)
        for (int64_t i = 0; i < c->numel[v]; i++)
            c->f[v][i] = (double)(float)c->f[v][i];
    return 0;
}

/* A fused node: the ops of its body in turn, each as if it stood alone in the graph,
 * on the node's operands (borrowed, not copied); the last one's value is the node's. */
static int run_region(ctx *c, int v, bc_err *e)
{
    const ir_node *nd = node(c, v);
    bc_err re;
    ir_graph *r = ir_region_graph(c->g, nd, &re);
    if (!r)
        return bc_errf(e, "%%%d (fused): %s", v, re.msg);
    size_t n = (size_t)r->n;
    ctx s = {r, c->params, c->inputs, c->B, c->S, calloc(n, sizeof *s.shape),
             calloc(n, sizeof *s.numel), calloc(n, sizeof *s.f), calloc(n, sizeof *s.iv),
             c->f64};
    int rc = !s.shape || !s.numel || !s.f || !s.iv ? bc_errf(e, "out of memory") : 0;
    for (int i = 0; rc == 0 && i < nd->nin; i++) {
        int x = nd->in[i];
        memcpy(s.shape[i], c->shape[x], sizeof s.shape[i]);
        s.numel[i] = c->numel[x];
        s.f[i] = c->f[x];
        s.iv[i] = c->iv[x];
    }
    for (int i = nd->nin; rc == 0 && i < r->n; i++)
        rc = eval_node(&s, i, e);
    if (rc == 0) {
        double *res = s.f[r->n - 1];
        s.f[r->n - 1] = NULL;
        free(c->f[v]);
        c->f[v] = res;
        /* further results: their nodes (which come later) find their values in place */
        int w[IR_MAX_RESULTS], nw = ir_region_results(c->g, v, w);
        for (int i = 0; i < nw; i++) {
            int64_t j = node(c, w[i])->a.index;
            c->f[w[i]] = s.f[j], c->iv[w[i]] = s.iv[j];
            s.f[j] = NULL, s.iv[j] = NULL;
        }
    }
    for (int i = 0; s.f && s.iv && i < nd->nin; i++)
        s.f[i] = NULL, s.iv[i] = NULL;
    free_ctx(&s);
    ir_graph_free(r);
    return rc;
}

int rt_interp_run(const ir_graph *g, const rt_tensor_list *params,
                  const rt_tensor_list *inputs, const rt_interp_opts *o,
                  rt_tensor_list *out, bc_err *e)
{
    ctx c = {g, params, inputs, 0, 0, NULL, NULL, NULL, NULL, o->f64};
    if (rt_bind_sizes(g, inputs, &c.B, &c.S, e))
        return -1;
#ifdef _OPENMP
    if (o->threads > 0)
        omp_set_num_threads(o->threads);
#endif
    size_t n = (size_t)(g->n ? g->n : 1);
    c.shape = calloc(n, sizeof *c.shape);
    c.numel = calloc(n, sizeof *c.numel);
    c.f = calloc(n, sizeof *c.f);
    c.iv = calloc(n, sizeof *c.iv);
    int *last = calloc(n, sizeof *last); /* (n) last node that reads each value */
    if (!c.shape || !c.numel || !c.f || !c.iv || !last) {
        free(last);
        free_ctx(&c);
        return bc_errf(e, "out of memory");
    }
    for (int v = 0; v < g->n; v++) {
        last[v] = v;
        for (int k = 0; k < g->nodes[v].nin; k++)
            last[g->nodes[v].in[k]] = v;
    }
    for (int k = 0; k < g->nout; k++)
        last[g->outs[k].value] = g->n; /* outputs live to the end */
    int rc = 0;
    for (int v = 0; v < g->n && rc == 0; v++) {
        const ir_node *nd = &g->nodes[v];
        rc = eval_node(&c, v, e);
        for (int k = 0; k < nd->nin; k++)
            if (last[nd->in[k]] == v)
                release(&c, nd->in[k]);
    }
    if (rc == 0)
        rc = write_outputs(&c, o, out, e);
    free(last);
    free_ctx(&c);
    return rc;
}
