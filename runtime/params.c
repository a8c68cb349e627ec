/* params.c: parameter initialization and checkpoint loading with Hugging Face's
 * older spellings. */
#include "params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int rt_param_init_one(rt_tensor *t, uint64_t seed)
{
    float *w = t->data; /* (numel) */
    int64_t n = rt_numel(t);
    if (ends_with(t->name, "LayerNorm.weight")) {
        for (int64_t i = 0; i < n; i++)
            w[i] = 1.0f;
    } else if (ends_with(t->name, "bias")) {
        for (int64_t i = 0; i < n; i++)
            w[i] = 0.0f;
    } else {
        rt_rng r;
        rt_rng_seed(&r, seed ^ rt_hash_str(t->name));
        for (int64_t i = 0; i < n; i++)
            w[i] = (float)(0.02 * rt_rng_normal(&r));
    }
    return 0;
}

static rt_tensor *add_param(const ir_node *p, rt_tensor_list *out, bc_err *e)
{
    int64_t shape[IR_MAX_RANK];
    for (int i = 0; i < p->type.rank; i++)
        shape[i] = p->type.dim[i].c;
    rt_tensor *t = rt_list_add(out, p->name, RT_F32, p->type.rank, shape, NULL);
    if (!t)
        bc_errf(e, "out of memory for parameter %s", p->name);
    return t;
}

/* Memory the system can give now (MemAvailable), in bytes; 0 when unknown. */
static double available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024.0;
}

/* The parameters' bytes (F32) against the memory available, before any is allocated:
 * a description of absurd size is refused with both numbers instead of failing (or
 * swapping) part way. */
static int check_param_memory(const ir_graph *g, bc_err *e)
{
    double bytes = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *p = &g->nodes[i];
        if (p->op != IR_OP_PARAM)
            continue;
        double n = 4;
        for (int d = 0; d < p->type.rank; d++)
            n *= (double)p->type.dim[d].c;
        bytes += n;
    }
    double avail = available_bytes();
    if (avail > 0 && bytes > avail)
        return bc_errf(e,
                       "the model's parameters need %.3g GB (%.0f bytes), more than the "
                       "%.3g GB of memory available",
                       bytes / 1e9, bytes, avail / 1e9);
    return 0;
}

int rt_params_init(const ir_graph *g, uint64_t seed, rt_tensor_list *out, bc_err *e)
{
    if (check_param_memory(g, e))
        return -1;
    for (int i = 0; i < g->n; i++) {
        if (g->nodes[i].op != IR_OP_PARAM)
            continue;
        rt_tensor *t = add_param(&g->nodes[i], out, e);
        if (!t)
            return -1;
        rt_param_init_one(t, seed);
    }
    return 0;
}

const char *rt_param_canonical_name(const char *name, char *buf, size_t len)
{
    static const char *const bare[] = {"embeddings.", "encoder.", "pooler."};
    const char *prefix = "";
    for (size_t i = 0; i < sizeof bare / sizeof *bare; i++)
        if (!strncmp(name, bare[i], strlen(bare[i])))
            prefix = "bert.";
    snprintf(buf, len, "%s%s", prefix, name);
    size_t n = strlen(buf);
    if (ends_with(buf, "LayerNorm.gamma"))
        snprintf(buf + n - strlen("gamma"), len - (n - strlen("gamma")), "weight");
    else if (ends_with(buf, "LayerNorm.beta"))
        snprintf(buf + n - strlen("beta"), len - (n - strlen("beta")), "bias");
    return buf;
}

static int same_shape(const rt_tensor *t, const ir_type *ty)
{
    if (t->rank != ty->rank)
        return 0;
    for (int i = 0; i < t->rank; i++)
        if (t->shape[i] != ty->dim[i].c)
            return 0;
    return 1;
}

static void notef(bc_note_fn note, void *ctx, const char *fmt, const char *a, const char *b)
{
    if (!note)
        return;
    char msg[600];
    snprintf(msg, sizeof msg, fmt, a, b);
    note(ctx, msg);
}

/* Index in ckpt of the tensor that provides our parameter `name`, or -1. */
static int find_source(const rt_tensor_list *ckpt, const char *name)
{
    char buf[512];
    for (int i = 0; i < ckpt->n; i++)
        if (!strcmp(rt_param_canonical_name(ckpt->t[i].name, buf, sizeof buf), name))
            return i;
    /* Hugging Face ties cls.predictions.bias to the decoder's bias. */
    if (!strcmp(name, "cls.predictions.bias"))
        for (int i = 0; i < ckpt->n; i++)
            if (!strcmp(ckpt->t[i].name, "cls.predictions.decoder.bias"))
                return i;
    return -1;
}

static int check_tied_decoder(const rt_tensor_list *ckpt, const rt_tensor_list *out,
                              bc_err *e)
{
    const rt_tensor *dec = NULL;
    for (int i = 0; i < ckpt->n; i++)
        if (!strcmp(ckpt->t[i].name, "cls.predictions.decoder.weight"))
            dec = &ckpt->t[i];
    const rt_tensor *we = rt_list_cfind(out, "bert.embeddings.word_embeddings.weight");
    if (!dec || !we)
        return 0;
    int64_t n = rt_numel(we);
    int ok = dec->rank == we->rank && rt_numel(dec) == n;
    float *tmp = ok ? malloc(sizeof(float) * (size_t)(n ? n : 1)) : NULL;
    if (ok && (!tmp || rt_to_f32(dec, tmp, e))) {
        free(tmp);
        return tmp ? -1 : bc_errf(e, "out of memory");
    }
    for (int64_t i = 0; ok && i < n; i++)
        ok = tmp[i] == ((const float *)we->data)[i];
    free(tmp);
    if (!ok)
        return bc_errf(e, "tensor 'cls.predictions.decoder.weight' differs from the word "
                          "embeddings; bertcc ties the MLM decoder to them");
    return 0;
}

static int used_by_graph(const ir_graph *g, const char *ckpt_name)
{
    char buf[512];
    const char *canon = rt_param_canonical_name(ckpt_name, buf, sizeof buf);
    if (!strcmp(ckpt_name, "cls.predictions.decoder.bias"))
        canon = "cls.predictions.bias";
    return ir_find_named(g, IR_OP_PARAM, canon) >= 0;
}

int rt_params_from_checkpoint(const ir_graph *g, const rt_tensor_list *ckpt,
                              int init_missing, uint64_t seed, rt_tensor_list *out,
                              bc_note_fn note, void *note_ctx, bc_err *e)
{
    if (check_param_memory(g, e))
        return -1;
    for (int i = 0; i < g->n; i++) {
        const ir_node *p = &g->nodes[i];
        if (p->op != IR_OP_PARAM)
            continue;
        int k = find_source(ckpt, p->name);
        if (k < 0 && !init_missing)
            return bc_errf(e, "checkpoint lacks tensor '%s'", p->name);
        rt_tensor *t = add_param(p, out, e);
        if (!t)
            return -1;
        if (k < 0) {
            rt_param_init_one(t, seed);
            notef(note, note_ctx, "initialized '%s' (not in the checkpoint)%s", p->name,
                  "");
            continue;
        }
        const rt_tensor *src = &ckpt->t[k];
        if (!same_shape(src, &p->type)) {
            char s1[128], s2[128];
            int64_t want[IR_MAX_RANK];
            for (int d = 0; d < p->type.rank; d++)
                want[d] = p->type.dim[d].c;
            return bc_errf(e, "tensor '%s' has shape %s, the model needs %s", src->name,
                           rt_shape_str(src->rank, src->shape, s1, sizeof s1),
                           rt_shape_str(p->type.rank, want, s2, sizeof s2));
        }
        if (rt_dtype_is_int(src->dtype))
            return bc_errf(e, "tensor '%s' has dtype %s; parameters must be floating point",
                           src->name, rt_dtype_name(src->dtype));
        if (rt_to_f32(src, t->data, e))
            return -1;
        const float *w = t->data; /* (numel) */
        for (int64_t k = 0, n = rt_numel(t); k < n; k++)
            if (!isfinite(w[k]))
                return bc_errf(e, "tensor '%s' holds %s at flat index %lld: a model with "
                                  "non-finite weights computes nothing meaningful",
                               src->name, isnan(w[k]) ? "NaN" : "an infinity", (long long)k);
    }
    for (int i = 0; i < ckpt->n; i++) {
        const char *n = ckpt->t[i].name;
        if (ends_with(n, "embeddings.position_ids") ||
            !strcmp(n, "cls.predictions.decoder.weight"))
            continue;
        if (!used_by_graph(g, n))
            notef(note, note_ctx, "ignored checkpoint tensor '%s'%s", n,
                  " (not in the model)");
    }
    return check_tied_decoder(ckpt, out, e);
}
