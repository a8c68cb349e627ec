/* exec.c: the executor of compiled plans (see exec.h). */
#include "exec.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "interp.h"

struct rt_exec {
    const ir_graph *g;
    const rt_plan *p;
    const rt_kernel *k;
    int64_t B, S;        /* sizes the arena layout was made for (0: none yet) */
    int64_t *offset;     /* (nvalues) arena offset of each temp storage value */
    int64_t arena_bytes; /* total */
    void *arena;
};

rt_exec *rt_exec_new(const ir_graph *g, const rt_plan *plan, const rt_kernel *kernels,
                     ir_err *e)
{
    rt_exec *x = calloc(1, sizeof *x);
    if (x)
        x->offset = calloc((size_t)(plan->nvalues ? plan->nvalues : 1), sizeof *x->offset);
    if (!x || !x->offset) {
        free(x);
        ir_errf(e, "out of memory");
        return NULL;
    }
    x->g = g;
    x->p = plan;
    x->k = kernels;
    return x;
}

void rt_exec_free(rt_exec *x)
{
    if (!x)
        return;
    free(x->offset);
    free(x->arena);
    free(x);
}

int64_t rt_exec_arena_bytes(const rt_exec *x)
{
    return x->arena_bytes;
}

static int64_t value_bytes(const rt_value *v, int64_t B, int64_t S)
{
    int64_t n = ir_dim_eval(ir_type_numel(&v->type), B, S);
    return n * (v->type.dtype == IR_I64 ? 8 : 4);
}

/* Best-fit layout: largest values first, each at the lowest offset (64-byte aligned)
 * free of every placed value whose live range overlaps its own. */
static int layout(rt_exec *x, int64_t B, int64_t S, ir_err *e)
{
    const rt_plan *p = x->p;
    int n = 0;
    int *order = malloc(sizeof *order * (size_t)(p->nvalues ? p->nvalues : 1));
    int64_t *size = malloc(sizeof *size * (size_t)(p->nvalues ? p->nvalues : 1));
    if (!order || !size) {
        free(order);
        free(size);
        return ir_errf(e, "out of memory");
    }
    for (int v = 0; v < p->nvalues; v++) {
        size[v] = (value_bytes(&p->values[v], B, S) + 63) & ~(int64_t)63;
        if (p->values[v].kind == RT_VAL_TEMP && p->values[v].first >= 0)
            order[n++] = v;
    }
    for (int i = 1; i < n; i++) /* insertion sort: by size, then by value number */
        for (int j = i; j > 0 && (size[order[j]] > size[order[j - 1]]); j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const rt_value *a = &p->values[order[i]];
        int64_t off = 0;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int j = 0; j < i; j++) {
                const rt_value *b = &p->values[order[j]];
                int64_t bo = x->offset[order[j]];
                if (a->first > b->last || b->first > a->last)
                    continue;
                if (off < bo + size[order[j]] && bo < off + size[order[i]]) {
                    off = bo + size[order[j]];
                    moved = 1;
                }
            }
        }
        x->offset[order[i]] = off;
        if (off + size[order[i]] > total)
            total = off + size[order[i]];
    }
    free(order);
    free(size);
    if (total > x->arena_bytes || !x->arena) {
        free(x->arena);
        x->arena = aligned_alloc(64, (size_t)(total ? total : 64));
        if (!x->arena) {
            x->arena_bytes = 0;
            return ir_errf(e, "out of memory for a %lld-byte arena", (long long)total);
        }
    }
    x->arena_bytes = total;
    x->B = B;
    x->S = S;
    return 0;
}

/* ---- argument checks: everything a kernel indexes with is checked here first ---- */

static const char *vname(const ir_graph *g, int v, char *buf, size_t len)
{
    if (g->nodes[v].name)
        snprintf(buf, len, "%s", g->nodes[v].name);
    else
        snprintf(buf, len, "%%%d (%s)", v, ir_ops[g->nodes[v].op].name);
    return buf;
}

static int check_range(const ir_graph *g, int v, const int64_t *data, int64_t n, int64_t lo,
                       int64_t hi, int allow_ignore, ir_err *e)
{
    for (int64_t i = 0; i < n; i++) {
        if (allow_ignore && data[i] == -100)
            continue;
        if (data[i] < lo || data[i] >= hi) {
            char nm[128];
            return ir_errf(
                e, "%s: value %lld at flat index %lld is out of range [%lld, %lld)%s",
                vname(g, v, nm, sizeof nm), (long long)data[i], (long long)i, (long long)lo,
                (long long)hi, allow_ignore ? " (or -100 to ignore)" : "");
        }
    }
    return 0;
}

static int check_step(const rt_exec *x, const rt_step *s, void *const *ptr, ir_err *e)
{
    const ir_graph *g = x->g;
    const ir_node *n = &g->nodes[s->node];
    int64_t B = x->B, S = x->S;
    switch (n->op) {
    case IR_OP_GATHER:
    case IR_OP_SCATTER_ADD: {
        int ids = n->op == IR_OP_GATHER ? n->in[1] : n->in[0];
        int64_t rows =
            n->op == IR_OP_GATHER ? g->nodes[n->in[0]].type.dim[0].c : n->type.dim[0].c;
        return check_range(g, ids, ptr[ids],
                           ir_dim_eval(ir_type_numel(&g->nodes[ids].type), B, S), 0, rows,
                           0, e);
    }
    case IR_OP_ATTN_SOFTMAX: {
        int m = n->in[1];
        return check_range(g, m, ptr[m], B * S, 0, 2, 0, e);
    }
    case IR_OP_CROSS_ENTROPY: {
        int lg = n->in[0], lb = n->in[1];
        const ir_type *t = &g->nodes[lg].type;
        return check_range(g, lb, ptr[lb],
                           ir_dim_eval(ir_type_numel(&g->nodes[lb].type), B, S), 0,
                           ir_dim_eval(t->dim[t->rank - 1], B, S), 1, e);
    }
    case IR_OP_PREFIX_ROWS: {
        int64_t want = ir_dim_eval(n->type.dim[0], B, S);
        int64_t have = ir_dim_eval(g->nodes[n->in[0]].type.dim[0], B, S);
        if (want > have) {
            char nm[128];
            return ir_errf(
                e, "sequence length %lld exceeds the %lld rows of %s (max-position)",
                (long long)want, (long long)have, vname(g, n->in[0], nm, sizeof nm));
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* ---- binding ---- */

static int same_shape(const rt_tensor *t, const ir_type *ty, int64_t B, int64_t S)
{
    if (t->rank != ty->rank)
        return 0;
    for (int i = 0; i < t->rank; i++)
        if (t->shape[i] != ir_dim_eval(ty->dim[i], B, S))
            return 0;
    return 1;
}

/* Points ptr[v] at the tensor's data, converting into a new buffer (kept in *owned)
 * when the dtype is not the one the kernels use. */
static int bind(const rt_tensor *t, const ir_node *n, int64_t B, int64_t S, void **ptr,
                void **owned, ir_err *e)
{
    if (!same_shape(t, &n->type, B, S)) {
        char s1[128];
        return ir_errf(e, "%s '%s' has shape %s, which does not fit %s",
                       n->op == IR_OP_PARAM ? "parameter" : "input", n->name,
                       rt_shape_str(t->rank, t->shape, s1, sizeof s1),
                       ir_type_str(&n->type, (char[160]){0}, 160));
    }
    int want_int = n->type.dtype == IR_I64;
    if ((want_int && t->dtype == RT_I64) || (!want_int && t->dtype == RT_F32)) {
        *ptr = t->data;
        return 0;
    }
    int64_t cnt = rt_numel(t);
    *owned = malloc((size_t)(cnt ? cnt : 1) * 8);
    if (!*owned)
        return ir_errf(e, "out of memory");
    *ptr = *owned;
    return want_int ? rt_to_i64(t, *owned, e) : rt_to_f32(t, *owned, e);
}

int rt_exec_run(rt_exec *x, const rt_tensor_list *params, const rt_tensor_list *inputs,
                int threads, rt_tensor_list *out, ir_err *e)
{
    const rt_plan *p = x->p;
    const ir_graph *g = x->g;
    int64_t B, S;
    if (rt_bind_sizes(g, inputs, &B, &S, e))
        return -1;
    if ((B != x->B || S != x->S) && layout(x, B, S, e))
        return -1;
    size_t nv = (size_t)(p->nvalues ? p->nvalues : 1);
    void **ptr = calloc(nv, sizeof *ptr);
    void **owned = calloc(nv, sizeof *owned);
    int64_t *units = calloc((size_t)(p->nsteps ? p->nsteps : 1), sizeof *units);
    int64_t *next = calloc((size_t)(p->nsteps ? p->nsteps : 1), sizeof *next);
    int rc = 0;
    if (!ptr || !owned || !units || !next)
        rc = ir_errf(e, "out of memory");
    for (int v = 0; v < p->nvalues && !rc; v++) {
        const rt_value *val = &p->values[v];
        const ir_node *n = &g->nodes[v];
        if (val->kind == RT_VAL_PARAM || val->kind == RT_VAL_INPUT) {
            const rt_tensor *t =
                rt_list_cfind(val->kind == RT_VAL_PARAM ? params : inputs, n->name);
            if (!t)
                rc = ir_errf(e, "missing %s '%s'",
                             val->kind == RT_VAL_PARAM ? "parameter" : "input", n->name);
            else
                rc = bind(t, n, B, S, &ptr[v], &owned[v], e);
        } else if (val->kind == RT_VAL_TEMP) {
            ptr[v] = (char *)x->arena + x->offset[v];
        }
    }
    for (int v = 0; v < p->nvalues && !rc; v++)
        if (p->values[v].kind == RT_VAL_ALIAS)
            ptr[v] = ptr[rt_plan_storage(p, v)];
    int64_t scratch = 0;
    const int64_t dims[2] = {B, S};
    for (int i = 0; i < p->nsteps && !rc; i++) {
        int64_t need = 0;
        rc = check_step(x, &p->steps[i], ptr, e);
        units[i] = x->k[p->steps[i].kernel].units(dims, &need);
        scratch = need > scratch ? need : scratch;
    }
    int nth = threads;
#ifdef _OPENMP
    if (nth <= 0)
        nth = omp_get_max_threads();
#else
    nth = 1;
#endif
    char *scratch_all = NULL;
    scratch = (scratch + 63) & ~(int64_t)63;
    if (!rc && scratch && !(scratch_all = aligned_alloc(64, (size_t)(scratch * nth))))
        rc = ir_errf(e, "out of memory for kernel scratch");
    if (!rc) {
#pragma omp parallel num_threads(nth)
        {
            int ith = 0, nt = 1;
#ifdef _OPENMP
            ith = omp_get_thread_num();
            nt = omp_get_num_threads();
#endif
            void *my_scratch = scratch_all ? scratch_all + scratch * ith : NULL;
            void *args[1 + IR_MAX_INPUTS];
            for (int i = 0; i < p->nsteps; i++) {
                const rt_step *s = &p->steps[i];
                /* Threads claim chunks of units from a shared counter, so a thread that
                 * the OS preempts does not hold the others at the barrier; units are
                 * independent, so the bits do not depend on who does which. */
                int64_t n = units[i], chunk = n / (8 * (int64_t)nt);
                chunk = chunk < 1 ? 1 : chunk;
                for (int k = 0; k < s->nptr; k++)
                    args[k] = ptr[s->ptr[k]];
                for (;;) {
                    int64_t u0 = __atomic_fetch_add(&next[i], chunk, __ATOMIC_RELAXED);
                    if (u0 >= n)
                        break;
                    x->k[s->kernel].body(args, dims, u0, u0 + chunk < n ? u0 + chunk : n,
                                         my_scratch);
                }
#pragma omp barrier
            }
        }
    }
    for (int k = 0; k < g->nout && !rc; k++) {
        int v = g->outs[k].value;
        int64_t shape[IR_MAX_RANK];
        const ir_type *t = &g->nodes[v].type;
        for (int d = 0; d < t->rank; d++)
            shape[d] = ir_dim_eval(t->dim[d], B, S);
        rt_tensor *o =
            rt_list_add(out, g->outs[k].name, t->dtype == IR_I64 ? RT_I64 : RT_F32, t->rank,
                        shape, ptr[v]);
        if (!o)
            rc = ir_errf(e, "out of memory");
    }
    for (size_t v = 0; owned && v < nv; v++)
        free(owned[v]);
    free(owned);
    free(ptr);
    free(units);
    free(next);
    free(scratch_all);
    return rc;
}
