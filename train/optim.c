/* optim.c: AdamW, the linear warm-up/decay schedule and global gradient clipping
 * (see optim.h for the exact update). */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tr_adamw_defaults(tr_adamw_opts *o)
{
    o->lr = 5e-5;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-6;
    o->weight_decay = 0.01;
    o->clip = 1.0;
    o->warmup = 0.1;
}

int tr_param_decays(const char *name)
{
    size_t n = strlen(name);
    if (n >= 4 && !strcmp(name + n - 4, "bias"))
        return 0;
    return strstr(name, "LayerNorm") == NULL;
}

int tr_param_is_frozen(const char *name, const char *const *prefixes, int n)
{
    for (int i = 0; i < n; i++)
        if (prefixes[i] && !strncmp(name, prefixes[i], strlen(prefixes[i])))
            return 1;
    return 0;
}

int64_t tr_sched_warmup_steps(double warmup, int64_t total)
{
    if (!(warmup > 0) || total <= 0)
        return 0;
    double w = ceil((double)total * warmup);
    return w >= (double)total ? total : (int64_t)w;
}

double tr_sched_lr(const tr_adamw_opts *o, int64_t step, int64_t total)
{
    int64_t warm = tr_sched_warmup_steps(o->warmup, total);
    if (step < warm)
        return o->lr * ((double)step / (double)(warm > 1 ? warm : 1));
    int64_t rest = total - warm;
    double f = (double)(total - step) / (double)(rest > 1 ? rest : 1);
    return o->lr * (f > 0 ? f : 0);
}

/* Sums of squares over fixed chunks, added in order: the result does not depend on
 * how many threads computed the chunks. Within a chunk, element i goes to running sum
 * i mod NORM_LANES, and the sums are added in lane order at the end: a fixed order
 * that vectorizes (one running sum was bound by the latency of its additions: 5 ms of
 * bert-mini's 11M gradients on 2 threads). */
#define NORM_CHUNK 65536
#define NORM_LANES 16

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static double chunk_squares(const float *x, int64_t n)
{
    double s[NORM_LANES] = {0}, total = 0;
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int l = 0; l < NORM_LANES; l++)
            s[l] += (double)x[i + l] * (double)x[i + l];
    for (int l = 0; i + l < n; l++)
        s[l] += (double)x[i + l] * (double)x[i + l];
    for (int l = 0; l < NORM_LANES; l++)
        total += s[l];
    return total;
}

static double sum_squares(const float *x, int64_t n)
{
    int64_t nchunk = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = nchunk > 1 ? malloc((size_t)nchunk * sizeof *part) : NULL;
    double total = 0;
    if (!part) { /* one chunk, or no memory: the same order, serially */
        for (int64_t c = 0; c < nchunk; c++) {
            int64_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
            total += chunk_squares(x + c * NORM_CHUNK, end - c * NORM_CHUNK);
        }
        return total;
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        part[c] = chunk_squares(x + c * NORM_CHUNK, end - c * NORM_CHUNK);
    }
    for (int64_t c = 0; c < nchunk; c++)
        total += part[c];
    free(part);
    return total;
}

double tr_grad_global_norm(const rt_tensor_list *grads)
{
    double total = 0;
    for (int i = 0; i < grads->n; i++)
        if (grads->t[i].dtype == RT_F32)
            total += sum_squares(grads->t[i].data, rt_numel(&grads->t[i]));
    return sqrt(total);
}

double tr_clip_grad_norm(rt_tensor_list *grads, double max_norm)
{
    double norm = tr_grad_global_norm(grads);
    if (!(max_norm > 0))
        return norm;
    double coef = max_norm / (norm + 1e-6);
    if (!(coef < 1.0))
        return norm;
    float c = (float)coef; /* torch multiplies by an F32 coefficient */
    for (int i = 0; i < grads->n; i++) {
        if (grads->t[i].dtype != RT_F32)
            continue;
        float *g = grads->t[i].data; /* [numel] */
        int64_t n = rt_numel(&grads->t[i]);
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t k = 0; k < n; k++)
            g[k] *= c;
    }
    return norm;
}

void tr_adamw_free(tr_adamw *a)
{
    if (a->names)
        for (int i = 0; i < a->m.n; i++)
            free(a->names[i]);
    free(a->names);
    a->names = NULL;
    rt_list_free(&a->m);
    rt_list_free(&a->v);
}

static int same_shape(const rt_tensor *a, const rt_tensor *b)
{
    if (a->rank != b->rank)
        return 0;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

int tr_adamw_init(tr_adamw *a, const tr_adamw_opts *o, const rt_tensor_list *params,
                  const char *const *frozen, int nfrozen, bc_err *e)
{
    memset(a, 0, sizeof *a);
    a->o = *o;
    rt_list_init(&a->m);
    rt_list_init(&a->v);
    a->names = calloc((size_t)params->n + 1, sizeof *a->names);
    if (!a->names)
        return bc_errf(e, "out of memory for the optimizer state");
    char buf[1024];
    for (int i = 0; i < params->n; i++) {
        const rt_tensor *p = &params->t[i];
        if (tr_param_is_frozen(p->name, frozen, nfrozen))
            continue;
        if (p->dtype != RT_F32) {
            tr_adamw_free(a);
            return bc_errf(e, "parameter %s: trainable parameters must be F32, not %s",
                           p->name, rt_dtype_name(p->dtype));
        }
        int k = a->m.n;
        snprintf(buf, sizeof buf, "adam.m.%s", p->name);
        if (!rt_list_add(&a->m, buf, RT_F32, p->rank, p->shape, NULL))
            goto oom;
        snprintf(buf, sizeof buf, "adam.v.%s", p->name);
        if (!rt_list_add(&a->v, buf, RT_F32, p->rank, p->shape, NULL))
            goto oom;
        if (!(a->names[k] = strdup(p->name)))
            goto oom;
    }
    /* Each moment in one allocation, tensors as views into it (tensor.h). */
    if (rt_list_pack(&a->m) || rt_list_pack(&a->v))
        goto oom;
    return 0;
oom:
    tr_adamw_free(a);
    return bc_errf(e, "out of memory for the optimizer state");
}

/* The update of n elements, in torch.optim.AdamW's order (F32 elementwise; the scalar
 * coefficients are computed in double and rounded once, as torch does). Compiled for
 * AVX-512, AVX2 and the baseline, picked at load time (GCC's target_clones); this
 * file is built with -ffp-contract=off and -fno-math-errno (CMakeLists.txt), so every
 * clone vectorizes the square root and divisions and rounds each operation as the
 * baseline does: the same bits on every host. Vectorized, bert-mini's 11M parameters
 * take 17-18 -> 6-7 ms (2 threads, AMD EPYC znver5; scalar sqrtss/divss bound it). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void adamw_chunk(float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, int64_t n, float decay, float b1, float b1c,
                        float b2, float b2c, float bc2s, float step_size, float eps)
{
    for (int64_t i = 0; i < n; i++) {
        float pi = decay != 1.0f ? p[i] * decay : p[i];
        float mi = m[i] * b1 + b1c * g[i];
        float vi = v[i] * b2 + b2c * g[i] * g[i];
        float denom = sqrtf(vi) / bc2s + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / denom);
    }
}

#define ADAMW_CHUNK 16384

/* One parameter's update, in chunks over the threads. */
static void adamw_update(float *p, const float *g, float *m, float *v, int64_t n,
                         float decay, float b1, float b1c, float b2, float b2c, float bc2s,
                         float step_size, float eps)
{
    int64_t nchunk = (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
#pragma omp parallel for schedule(static) if (nchunk > 2)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i = c * ADAMW_CHUNK, len = n - i < ADAMW_CHUNK ? n - i : ADAMW_CHUNK;
        adamw_chunk(p + i, g + i, m + i, v + i, len, decay, b1, b1c, b2, b2c, bc2s,
                    step_size, eps);
    }
}

int tr_adamw_step(tr_adamw *a, rt_tensor_list *params, const rt_tensor_list *grads,
                  double lr, bc_err *e)
{
    char buf[1024];
    /* Check everything first, so that an error leaves the state untouched. */
    for (int i = 0; i < a->m.n; i++) {
        rt_tensor *p = rt_list_find(params, a->names[i]);
        snprintf(buf, sizeof buf, "grad.%s", a->names[i]);
        const rt_tensor *g = rt_list_cfind(grads, buf);
        if (!p || !same_shape(p, &a->m.t[i]) || p->dtype != RT_F32)
            return bc_errf(e, "parameter %s: missing, or not F32 of its optimizer shape",
                           a->names[i]);
        if (!g)
            return bc_errf(e, "%s: no gradient for trainable parameter %s", buf,
                           a->names[i]);
        if (g->dtype != RT_F32 || !same_shape(g, p)) {
            char s1[128], s2[128];
            return bc_errf(e, "%s: expected F32 %s, got %s %s", buf,
                           rt_shape_str(p->rank, p->shape, s1, sizeof s1),
                           rt_dtype_name(g->dtype),
                           rt_shape_str(g->rank, g->shape, s2, sizeof s2));
        }
    }
    int64_t t = a->step + 1;
    double bc1 = 1.0 - pow(a->o.beta1, (double)t);
    double bc2 = 1.0 - pow(a->o.beta2, (double)t);
    float step_size = (float)(lr / bc1);
    float bc2s = (float)sqrt(bc2);
    for (int i = 0; i < a->m.n; i++) {
        rt_tensor *p = rt_list_find(params, a->names[i]);
        snprintf(buf, sizeof buf, "grad.%s", a->names[i]);
        const rt_tensor *g = rt_list_cfind(grads, buf);
        float decay =
            tr_param_decays(a->names[i]) ? (float)(1.0 - lr * a->o.weight_decay) : 1.0f;
        adamw_update(p->data, g->data, a->m.t[i].data, a->v.t[i].data, rt_numel(p), decay,
                     (float)a->o.beta1, (float)(1.0 - a->o.beta1), (float)a->o.beta2,
                     (float)(1.0 - a->o.beta2), bc2s, step_size, (float)a->o.eps);
    }
    a->step = t;
    return 0;
}

int tr_adamw_save(const tr_adamw *a, rt_tensor_list *out, bc_err *e)
{
    for (int i = 0; i < a->m.n; i++) {
        const rt_tensor *m = &a->m.t[i], *v = &a->v.t[i];
        if (!rt_list_add(out, m->name, RT_F32, m->rank, m->shape, m->data) ||
            !rt_list_add(out, v->name, RT_F32, v->rank, v->shape, v->data))
            return bc_errf(e, "out of memory saving the optimizer state");
    }
    int64_t step = a->step;
    if (!rt_list_add(out, "adam.step", RT_I64, 0, NULL, &step))
        return bc_errf(e, "out of memory saving the optimizer state");
    return 0;
}

int tr_adamw_load(tr_adamw *a, const rt_tensor_list *state, bc_err *e)
{
    const rt_tensor *st = rt_list_cfind(state, "adam.step");
    if (!st || st->dtype != RT_I64 || rt_numel(st) != 1)
        return bc_errf(e, "adam.step: missing, or not an I64 scalar");
    int64_t step = *(const int64_t *)st->data;
    if (step < 0)
        return bc_errf(e, "adam.step: negative (%lld)", (long long)step);
    for (int pass = 0; pass < 2; pass++) /* check all, then copy all */
        for (int i = 0; i < 2 * a->m.n; i++) {
            rt_tensor *dst = i & 1 ? &a->v.t[i / 2] : &a->m.t[i / 2];
            const rt_tensor *src = rt_list_cfind(state, dst->name);
            if (!pass) {
                if (!src)
                    return bc_errf(e, "%s: missing from the optimizer state", dst->name);
                if (src->dtype != RT_F32 || !same_shape(src, dst)) {
                    char s1[128], s2[128];
                    return bc_errf(e, "%s: expected F32 %s, got %s %s", dst->name,
                                   rt_shape_str(dst->rank, dst->shape, s1, sizeof s1),
                                   rt_dtype_name(src->dtype),
                                   rt_shape_str(src->rank, src->shape, s2, sizeof s2));
                }
            } else if (rt_nbytes(dst)) {
                memcpy(dst->data, src->data, rt_nbytes(dst));
            }
        }
    a->step = step;
    return 0;
}
