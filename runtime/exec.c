/* exec.c: the executor of compiled plans (see exec.h). */
#include "exec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "check.h"
#include "interp.h"
#include "../support/clock.h"

struct rt_exec {
    const ir_graph *g;
    const rt_plan *p;
    const rt_kernel *k;
    int64_t B, S;        /* sizes the arena layout was made for (0: none yet) */
    int64_t *offset;     /* (nvalues) arena offset of each temp storage value */
    int64_t arena_bytes; /* total */
    void *arena;
    ir_graph **chk_g;  /* (nsteps) what each step's check takes (rt_check_resolve): a */
    int *chk_v;        /* graph (g, or a region's own), the node in it, and the */
    int *chk_u;        /* value of g holding the indices; chk_g[i] NULL: nothing */
    double *prof;      /* (nsteps) seconds per step summed over profiled runs, or NULL */
    int64_t prof_runs; /* runs since profiling was switched on */
    /* constant values (RT_VAL_CONST) at offset[v] in their own buffer */
    void *consts;
    int keep_consts;   /* rt_exec_keep_constants */
    int consts_valid;  /* they hold what the constant steps computed from ... */
    const void **ckey; /* (nvalues) ... the parameter memory bound then (NULL: none) */
};

rt_exec *rt_exec_new(const ir_graph *g, const rt_plan *plan, const rt_kernel *kernels,
                     bc_err *e)
{
    rt_exec *x = calloc(1, sizeof *x);
    size_t ns = (size_t)(plan->nsteps ? plan->nsteps : 1);
    if (x) {
        x->g = g;
        x->p = plan;
        x->k = kernels;
        x->offset = calloc((size_t)(plan->nvalues ? plan->nvalues : 1), sizeof *x->offset);
        x->chk_g = calloc(ns, sizeof *x->chk_g);
        x->chk_v = calloc(ns, sizeof *x->chk_v);
        x->chk_u = calloc(ns, sizeof *x->chk_u);
    }
    if (!x || !x->offset || !x->chk_g || !x->chk_v || !x->chk_u) {
        rt_exec_free(x);
        bc_errf(e, "out of memory");
        return NULL;
    }
    for (int i = 0; i < plan->nsteps; i++)
        rt_check_resolve(g, plan->steps[i].node, &x->chk_g[i], &x->chk_v[i], &x->chk_u[i]);
    return x;
}

void rt_exec_free(rt_exec *x)
{
    if (!x)
        return;
    for (int i = 0; x->chk_g && i < x->p->nsteps; i++)
        if (x->chk_g[i] != x->g)
            ir_graph_free(x->chk_g[i]);
    free(x->chk_g);
    free(x->chk_v);
    free(x->chk_u);
    free(x->offset);
    free(x->arena);
    free(x->prof);
    free(x->consts);
    free(x->ckey);
    free(x);
}

void rt_exec_keep_constants(rt_exec *x, int on)
{
    x->keep_consts = on;
    x->consts_valid = 0;
}

int64_t rt_exec_arena_bytes(const rt_exec *x)
{
    return x->arena_bytes;
}

int rt_exec_profile(rt_exec *x, int on)
{
    free(x->prof);
    x->prof = NULL;
    x->prof_runs = 0;
    if (on &&
        !(x->prof = calloc((size_t)(x->p->nsteps ? x->p->nsteps : 1), sizeof *x->prof)))
        return -1;
    return 0;
}

const double *rt_exec_profile_seconds(const rt_exec *x, int64_t *runs)
{
    *runs = x->prof_runs;
    return x->prof;
}

static int64_t value_bytes(const rt_value *v, int64_t B, int64_t S)
{
    int64_t n = ir_dim_eval(ir_type_numel(&v->type), B, S);
    return n * (v->type.dtype == IR_I64 ? 8 : 4);
}

/* Best-fit layout: largest values first, each at the lowest offset (64-byte aligned)
 * free of every placed value whose live range overlaps its own. */
static int layout(rt_exec *x, int64_t B, int64_t S, bc_err *e)
{
    const rt_plan *p = x->p;
    int n = 0;
    int *order = malloc(sizeof *order * (size_t)(p->nvalues ? p->nvalues : 1));
    int64_t *size = malloc(sizeof *size * (size_t)(p->nvalues ? p->nvalues : 1));
    if (!order || !size) {
        free(order);
        free(size);
        return bc_errf(e, "out of memory");
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
            return bc_errf(e, "out of memory for a %lld-byte arena", (long long)total);
        }
    }
    x->arena_bytes = total;
    x->B = B;
    x->S = S;
    return 0;
}

/* The constant values' buffer, laid out once (their sizes do not depend on B or S). */
static int const_buffer(rt_exec *x, bc_err *e)
{
    const rt_plan *p = x->p;
    if (x->consts)
        return 0;
    int64_t total = 0;
    for (int v = 0; v < p->nvalues; v++)
        if (p->values[v].kind == RT_VAL_CONST) {
            x->offset[v] = total;
            total += (value_bytes(&p->values[v], 1, 1) + 63) & ~(int64_t)63;
        }
    if (!total)
        return 0;
    x->ckey = calloc((size_t)p->nvalues, sizeof *x->ckey);
    x->consts = aligned_alloc(64, (size_t)total);
    if (!x->ckey || !x->consts) {
        free(x->ckey);
        free(x->consts);
        x->ckey = NULL;
        x->consts = NULL;
        return bc_errf(e, "out of memory for %lld bytes of packed weights",
                       (long long)total);
    }
    return 0;
}

/* ---- one run ---------------------------------------------------------------------- */

/* What a run binds each value to and how it splits each step's work. */
typedef struct run {
    int64_t dims[2];         /* B, S */
    void **ptr;              /* (nvalues) each value's memory */
    void **owned;            /* (nvalues) dtype-converted copies of params and inputs */
    unsigned char *in_place; /* (nout) 1: output k is computed in out's tensor */
    int64_t *units;          /* (nsteps) work units of each step */
    int64_t *next;           /* (nsteps) the first unit no thread has claimed yet */
    char *scratch;           /* (nth, scratch_bytes) per-thread kernel scratch */
    int64_t scratch_bytes;
    int run_consts; /* the constant steps run (else their values are kept) */
} run;

static int run_init(run *r, const rt_plan *p, const ir_graph *g, int64_t B, int64_t S,
                    bc_err *e)
{
    memset(r, 0, sizeof *r);
    r->dims[0] = B;
    r->dims[1] = S;
    size_t nv = (size_t)(p->nvalues ? p->nvalues : 1),
           ns = (size_t)(p->nsteps ? p->nsteps : 1);
    r->ptr = calloc(nv, sizeof *r->ptr);
    r->owned = calloc(nv, sizeof *r->owned);
    r->in_place = calloc((size_t)(g->nout ? g->nout : 1), 1);
    r->units = calloc(ns, sizeof *r->units);
    r->next = calloc(ns, sizeof *r->next);
    if (!r->ptr || !r->owned || !r->in_place || !r->units || !r->next)
        return bc_errf(e, "out of memory");
    return 0;
}

static void run_free(run *r, const rt_plan *p)
{
    for (int v = 0; r->owned && v < p->nvalues; v++)
        free(r->owned[v]);
    free(r->owned);
    free(r->ptr);
    free(r->in_place);
    free(r->units);
    free(r->next);
    free(r->scratch);
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
static int bind_tensor(const rt_tensor *t, const ir_node *n, int64_t B, int64_t S,
                       void **ptr, void **owned, bc_err *e)
{
    if (!same_shape(t, &n->type, B, S)) {
        char s1[128];
        return bc_errf(e, "%s '%s' has shape %s, which does not fit %s",
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
        return bc_errf(e, "out of memory");
    *ptr = *owned;
    return want_int ? rt_to_i64(t, *owned, e) : rt_to_f32(t, *owned, e);
}

/* Params and inputs to their tensors, temporaries to their arena slots. */
static int bind_leaves(const rt_exec *x, run *r, const rt_tensor_list *params,
                       const rt_tensor_list *inputs, bc_err *e)
{
    const rt_plan *p = x->p;
    for (int v = 0; v < p->nvalues; v++) {
        const rt_value *val = &p->values[v];
        const ir_node *n = &x->g->nodes[v];
        if (val->kind == RT_VAL_TEMP)
            r->ptr[v] = (char *)x->arena + x->offset[v];
        if (val->kind == RT_VAL_CONST)
            r->ptr[v] = (char *)x->consts + x->offset[v];
        if (val->kind != RT_VAL_PARAM && val->kind != RT_VAL_INPUT)
            continue;
        int is_param = val->kind == RT_VAL_PARAM;
        const rt_tensor *t = rt_list_cfind(is_param ? params : inputs, n->name);
        if (!t)
            return bc_errf(e, "missing %s '%s'", is_param ? "parameter" : "input", n->name);
        if (bind_tensor(t, n, x->B, x->S, &r->ptr[v], &r->owned[v], e))
            return -1;
    }
    return 0;
}

static int overlap(const void *a, int64_t na, const void *b, int64_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + (uintptr_t)nb && y < x + (uintptr_t)na;
}

/* 1 if [data, data + bytes) overlaps the memory of a param, an input or an output
 * already bound to out: writing there could change what another value reads. */
static int shares_memory(const rt_exec *x, const run *r, const void *data, int64_t bytes)
{
    const rt_plan *p = x->p;
    for (int v = 0; v < p->nvalues; v++) {
        rt_val_kind k = p->values[v].kind;
        if (k == RT_VAL_PARAM || k == RT_VAL_INPUT)
            if (overlap(data, bytes, r->ptr[v], value_bytes(&p->values[v], x->B, x->S)))
                return 1;
    }
    for (int k = 0; k < x->g->nout; k++) {
        int v = x->g->outs[k].value;
        if (r->in_place[k] &&
            overlap(data, bytes, r->ptr[v], value_bytes(&p->values[v], x->B, x->S)))
            return 1;
    }
    return 0;
}

/* Outputs computed where the caller wants them: an output that a kernel computes (a
 * temporary: not a reshape, param or input) is bound to the tensor of its name in out
 * when that has its dtype and shape and shares memory with nothing else of the run.
 * Its kernel then writes there, later steps read it there, and collect copies nothing;
 * the tensor's data pointer stays the same. */
static void bind_outputs(const rt_exec *x, run *r, rt_tensor_list *out)
{
    const ir_graph *g = x->g;
    for (int k = 0; k < g->nout; k++) {
        int v = g->outs[k].value, taken = 0;
        for (int j = 0; j < k; j++) /* a value two outputs name is bound once */
            taken |= r->in_place[j] && g->outs[j].value == v;
        const rt_tensor *t = rt_list_cfind(out, g->outs[k].name);
        const ir_type *ty = &g->nodes[v].type;
        if (taken || x->p->values[v].kind != RT_VAL_TEMP || !t ||
            t->dtype != (ty->dtype == IR_I64 ? RT_I64 : RT_F32) ||
            !same_shape(t, ty, x->B, x->S) || !rt_nbytes(t) ||
            shares_memory(x, r, t->data, (int64_t)rt_nbytes(t)))
            continue;
        r->ptr[v] = t->data;
        r->in_place[k] = 1;
    }
}

/* Whether the constant steps must run: always, unless their values are kept and were
 * computed from the parameter memory bound now (not from a converted copy, whose
 * address says nothing of its contents). */
static int consts_stale(const rt_exec *x, const run *r)
{
    if (!x->keep_consts || !x->consts_valid)
        return 1;
    for (int i = 0; i < x->p->nsteps; i++) {
        const rt_step *s = &x->p->steps[i];
        for (int k = 1; s->constant && k < s->nptr; k++)
            if (r->owned[s->ptr[k]] || x->ckey[s->ptr[k]] != r->ptr[s->ptr[k]])
                return 1;
    }
    return 0;
}

static int bind(const rt_exec *x, run *r, const rt_tensor_list *params,
                const rt_tensor_list *inputs, rt_tensor_list *out, bc_err *e)
{
    if (bind_leaves(x, r, params, inputs, e))
        return -1;
    r->run_consts = consts_stale(x, r);
    bind_outputs(x, r, out);
    for (int v = 0; v < x->p->nvalues; v++) /* after the outputs: a reshape of one too */
        if (x->p->values[v].kind == RT_VAL_ALIAS)
            r->ptr[v] = r->ptr[rt_plan_storage(x->p, v)];
    return 0;
}

/* ---- checks: everything a kernel indexes with, before any kernel runs ---- */

static int check(const rt_exec *x, const run *r, bc_err *e)
{
    for (int i = 0; i < x->p->nsteps; i++) {
        int u = x->chk_u[i];
        if (x->chk_g[i] && rt_check_node(x->chk_g[i], x->chk_v[i], u >= 0 ? r->ptr[u] : NULL,
                                         x->B, x->S, RT_CHECK_EXEC, e))
            return -1;
    }
    return 0;
}

/* ---- dispatch: one parallel region for all steps ---- */

/* Thread ith of nt: walks the steps, claiming chunks of each step's units from a
 * shared counter, so a thread that the OS preempts does not hold the others at the
 * barrier; units are independent, so the bits do not depend on who does which. */
static void run_steps(const rt_exec *x, run *r, int ith, int nt)
{
    const rt_plan *p = x->p;
    void *scratch = r->scratch ? r->scratch + r->scratch_bytes * ith : NULL;
    void *args[1 + IR_MAX_INPUTS + IR_MAX_RESULTS];
    double *prof = ith == 0 ? x->prof : NULL, t = prof ? bc_now() : 0;
    for (int i = 0; i < p->nsteps; i++) {
        const rt_step *s = &p->steps[i];
        if (s->constant && !r->run_consts)
            continue; /* every thread skips it: no barrier */
        const int64_t dims[3] = {r->dims[0], r->dims[1], s->imm};
        int64_t n = r->units[i], chunk = n / (8 * (int64_t)nt);
        chunk = chunk < 1 ? 1 : chunk;
        for (int k = 0; k < s->nptr; k++)
            args[k] = r->ptr[s->ptr[k]];
        for (;;) {
            int64_t u0 = __atomic_fetch_add(&r->next[i], chunk, __ATOMIC_RELAXED);
            if (u0 >= n)
                break;
            x->k[s->kernel].body(args, dims, u0, u0 + chunk < n ? u0 + chunk : n, scratch);
        }
#pragma omp barrier
        if (prof) { /* after the barrier: the step's time is its slowest thread's */
            double t1 = bc_now();
            prof[i] += t1 - t;
            t = t1;
        }
    }
}

static int dispatch(rt_exec *x, run *r, int threads, bc_err *e)
{
    const rt_plan *p = x->p;
    int64_t scratch = 0;
    for (int i = 0; i < p->nsteps; i++) {
        int64_t need = 0;
        const int64_t dims[3] = {r->dims[0], r->dims[1], p->steps[i].imm};
        r->units[i] = x->k[p->steps[i].kernel].units(dims, &need);
        scratch = need > scratch ? need : scratch;
    }
    int nth = threads;
#ifdef _OPENMP
    if (nth <= 0)
        nth = omp_get_max_threads();
#else
    nth = 1;
#endif
    r->scratch_bytes = (scratch + 63) & ~(int64_t)63;
    if (r->scratch_bytes &&
        !(r->scratch = aligned_alloc(64, (size_t)(r->scratch_bytes * nth))))
        return bc_errf(e, "out of memory for kernel scratch");
#pragma omp parallel num_threads(nth)
    {
        int ith = 0, nt = 1;
#ifdef _OPENMP
        ith = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        run_steps(x, r, ith, nt);
    }
    x->prof_runs += x->prof != NULL;
    if (r->run_consts && x->ckey) { /* what the constant values now hold */
        for (int i = 0; i < p->nsteps; i++)
            for (int k = 1; p->steps[i].constant && k < p->steps[i].nptr; k++)
                x->ckey[p->steps[i].ptr[k]] = r->ptr[p->steps[i].ptr[k]];
        x->consts_valid = 1;
    }
    return 0;
}

/* ---- collect: copies of the outputs not computed in place ---- */

static int collect(const rt_exec *x, const run *r, rt_tensor_list *out, bc_err *e)
{
    const ir_graph *g = x->g;
    for (int k = 0; k < g->nout; k++) {
        if (r->in_place[k])
            continue;
        int v = g->outs[k].value;
        int64_t shape[IR_MAX_RANK];
        const ir_type *t = &g->nodes[v].type;
        for (int d = 0; d < t->rank; d++)
            shape[d] = ir_dim_eval(t->dim[d], x->B, x->S);
        if (!rt_list_add(out, g->outs[k].name, t->dtype == IR_I64 ? RT_I64 : RT_F32,
                         t->rank, shape, r->ptr[v]))
            return bc_errf(e, "out of memory");
    }
    return 0;
}

int rt_exec_run(rt_exec *x, const rt_tensor_list *params, const rt_tensor_list *inputs,
                int threads, rt_tensor_list *out, bc_err *e)
{
    int64_t B, S;
    if (rt_bind_sizes(x->g, inputs, &B, &S, e) ||
        ((B != x->B || S != x->S) && layout(x, B, S, e)) || const_buffer(x, e))
        return -1;
    run r;
    int rc = run_init(&r, x->p, x->g, B, S, e);
    if (!rc)
        rc = bind(x, &r, params, inputs, out, e);
    if (!rc)
        rc = check(x, &r, e);
    if (!rc)
        rc = dispatch(x, &r, threads, e);
    if (!rc)
        rc = collect(x, &r, out, e);
    run_free(&r, x->p);
    return rc;
}
