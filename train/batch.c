/* batch.c: validation of `run` batches (see batch.h). */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned group;
    int per_token; /* [B, S] rather than [B] */
} labels[] = {
    {"mlm_labels", TR_LABEL_MLM, 1},       {"nsp_labels", TR_LABEL_NSP, 0},
    {"intent_labels", TR_LABEL_INTENT, 0}, {"slot_labels", TR_LABEL_SLOT, 1},
    {"start_positions", TR_LABEL_QA, 0},   {"end_positions", TR_LABEL_QA, 0},
};
#define NLABELS ((int)(sizeof labels / sizeof *labels))

static void notef(bc_note_fn note, void *ctx, const char *fmt, const char *a)
{
    if (!note)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a);
    note(ctx, msg);
}

/* Appends t converted to I64 under its own name, after checking dtype and shape. */
static int take(const rt_tensor *t, int rank, int64_t B, int64_t S, rt_tensor_list *out,
                bc_err *e)
{
    int64_t want[2] = {B, S};
    char s1[96], s2[96];
    if (!rt_dtype_is_int(t->dtype))
        return bc_errf(e,
                       "batch tensor '%s' has dtype %s; expected an integer dtype (I64 "
                       "or I32)",
                       t->name, rt_dtype_name(t->dtype));
    if (t->rank != rank || memcmp(t->shape, want, sizeof(int64_t) * (size_t)rank))
        return bc_errf(e, "batch tensor '%s' has shape %s; expected %s", t->name,
                       rt_shape_str(t->rank, t->shape, s1, sizeof s1),
                       rt_shape_str(rank, want, s2, sizeof s2));
    rt_tensor *o = rt_list_add(out, t->name, RT_I64, rank, want, NULL);
    if (!o)
        return bc_errf(e, "out of memory");
    return rt_to_i64(t, o->data, e);
}

static int fill(rt_tensor_list *out, const char *name, int64_t B, int64_t S, int64_t value,
                bc_err *e)
{
    int64_t shape[2] = {B, S};
    rt_tensor *o = rt_list_add(out, name, RT_I64, 2, shape, NULL);
    if (!o)
        return bc_errf(e, "out of memory");
    for (int64_t i = 0; i < B * S; i++)
        ((int64_t *)o->data)[i] = value;
    return 0;
}

static int known(const char *name)
{
    if (!strcmp(name, "input_ids") || !strcmp(name, "token_type_ids") ||
        !strcmp(name, "attention_mask"))
        return 1;
    for (int i = 0; i < NLABELS; i++)
        if (!strcmp(name, labels[i].name))
            return 1;
    return 0;
}

int tr_batch_prepare(const rt_tensor_list *batch, int64_t max_position, unsigned accepted,
                     rt_tensor_list *out, unsigned *present, int64_t *Bp, int64_t *Sp,
                     bc_note_fn note, void *note_ctx, bc_err *e)
{
    const rt_tensor *ids = rt_list_cfind(batch, "input_ids");
    if (!ids)
        return bc_errf(e, "the batch has no 'input_ids' tensor");
    if (ids->rank != 2) {
        char s[96];
        return bc_errf(e, "batch tensor 'input_ids' has shape %s; expected [B, S]",
                       rt_shape_str(ids->rank, ids->shape, s, sizeof s));
    }
    int64_t B = ids->shape[0], S = ids->shape[1];
    if (B < 1 || S < 1)
        return bc_errf(e, "batch tensor 'input_ids' is empty (B=%lld, S=%lld)",
                       (long long)B, (long long)S);
    if (S > max_position)
        return bc_errf(e,
                       "batch tensor 'input_ids': sequence length %lld exceeds the "
                       "model's max-position %lld",
                       (long long)S, (long long)max_position);
    if (take(ids, 2, B, S, out, e))
        return -1;
    static const char *const opt[2] = {"token_type_ids", "attention_mask"};
    for (int i = 0; i < 2; i++) {
        const rt_tensor *t = rt_list_cfind(batch, opt[i]);
        if (t ? take(t, 2, B, S, out, e) : fill(out, opt[i], B, S, i, e))
            return -1;
    }
    *present = 0;
    for (int i = 0; i < NLABELS; i++) {
        const rt_tensor *t = rt_list_cfind(batch, labels[i].name);
        if (!t)
            continue;
        if (!(accepted & labels[i].group)) {
            notef(note, note_ctx, "ignored batch tensor '%s': the model has no head for it",
                  labels[i].name);
            continue;
        }
        if (take(t, labels[i].per_token ? 2 : 1, B, S, out, e))
            return -1;
        *present |= labels[i].group;
    }
    if ((*present & TR_LABEL_QA) && (!rt_list_cfind(batch, "start_positions") ||
                                     !rt_list_cfind(batch, "end_positions")))
        return bc_errf(e,
                       "the batch has only one of 'start_positions' and 'end_positions'");
    for (int i = 0; i < batch->n; i++)
        if (!known(batch->t[i].name))
            notef(note, note_ctx, "ignored batch tensor '%s' (not part of the run format)",
                  batch->t[i].name);
    *Bp = B;
    *Sp = S;
    return 0;
}

int rt_batch_mlm_gather(rt_tensor_list *batch, int64_t P, bc_err *e)
{
    const rt_tensor *l = rt_list_cfind(batch, "mlm_labels");
    if (!l)
        return bc_errf(e, "mlm_labels: missing (the MLM head needs them)");
    if (l->dtype != RT_I64 || l->rank != 2)
        return bc_errf(e, "mlm_labels: expected I64 [B, S]");
    if (P < 1)
        return bc_errf(e, "mlm gather rows must be >= 1, got %lld", (long long)P);
    int64_t B = l->shape[0], S = l->shape[1];
    int64_t gs[3] = {B, P, S}, ls[2] = {B, P};
    rt_tensor_list add;
    rt_list_init(&add);
    rt_tensor *g = rt_list_add(&add, "mlm_gather", RT_F32, 3, gs, NULL);
    rt_tensor *y = rt_list_add(&add, "mlm_gathered_labels", RT_I64, 2, ls, NULL);
    if (!g || !y) {
        rt_list_free(&add);
        return bc_errf(e, "out of memory");
    }
    const int64_t *lab = l->data; /* [B, S] */
    float *gd = g->data;          /* [B, P, S] */
    int64_t *yd = y->data;        /* [B, P] */
    for (int64_t k = 0; k < B * P; k++)
        yd[k] = -100;
    for (int64_t b = 0; b < B; b++) {
        int64_t p = 0;
        for (int64_t s = 0; s < S; s++) {
            if (lab[b * S + s] == -100)
                continue;
            if (p == P) {
                rt_list_free(&add);
                return bc_errf(e,
                               "mlm_labels: sequence %lld has more than %lld labelled "
                               "positions (the training graph gathers %lld)",
                               (long long)b, (long long)P, (long long)P);
            }
            gd[(b * P + p) * S + s] = 1.0f;
            yd[b * P + p++] = lab[b * S + s];
        }
    }
    rt_list_remove(batch, "mlm_labels");
    if (rt_list_append(batch, &add)) {
        rt_list_free(&add);
        return bc_errf(e, "out of memory");
    }
    return 0;
}
