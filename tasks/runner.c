/* runner.c: see runner.h. */
#include "runner.h"

#include <stdlib.h>
#include <string.h>

#include "../passes/passes.h"
#include "../train/batch.h"

/* ---- graphs ------------------------------------------------------------------------- */

static int keep_outputs(ir_graph **g, int (*want)(const char *name, const void *ctx),
                        const void *ctx, const char *fuse, bc_err *e)
{
    char pipeline[256];
    if (pass_default_pipeline(fuse, pipeline, sizeof pipeline, e))
        return -1;
    const char **keep = malloc(sizeof *keep * (size_t)((*g)->nout + 1));
    if (!keep)
        return bc_errf(e, "out of memory");
    int nk = 0;
    for (int i = 0; i < (*g)->nout; i++)
        if (want((*g)->outs[i].name, ctx))
            keep[nk++] = (*g)->outs[i].name;
    int rc = pass_keep_outputs(*g, keep, nk, e) || pass_run_pipeline(g, pipeline, NULL, e);
    free(keep);
    return rc ? -1 : 0;
}

static int want_train(const char *name, const void *ctx)
{
    (void)ctx;
    return !strcmp(name, "loss") || !strncmp(name, "grad.", 5);
}

static int want_listed(const char *name, const void *ctx)
{
    if (!ctx)
        return 1;
    for (const char *const *o = ctx; *o; o++)
        if (!strcmp(*o, name))
            return 1;
    return 0;
}

ir_graph *rundir_train_graph(const fe_model *m, unsigned labels, const char *const *frozen,
                             int nfrozen, int64_t mlm_gather, const char *fuse, bc_err *e)
{
    pass_grad_opts go = {"loss", frozen, nfrozen};
    ir_graph *g = fe_build_bert_mlm_gather(m, labels | FE_BUILD_TRAIN, mlm_gather, e);
    /* fusion comes after autodiff, on the whole training graph */
    if (!g || pass_run_pipeline(&g, PASS_BASE_PIPELINE, NULL, e) ||
        pass_autodiff(&g, &go, e) || keep_outputs(&g, want_train, NULL, fuse, e)) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

ir_graph *rundir_eval_graph(const fe_model *m, const char *const *outputs, const char *fuse,
                            bc_err *e)
{
    ir_graph *g = fe_build_bert(m, 0, e);
    if (!g || pass_run_pipeline(&g, PASS_BASE_PIPELINE, NULL, e) ||
        keep_outputs(&g, want_listed, outputs, fuse, e)) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

/* ---- runners --------------------------------------------------------------------------
 */

int rundir_runner_init(rundir_runner *r, const ir_graph *g, cg_backend backend, int threads,
                       bc_err *e)
{
    memset(r, 0, sizeof *r);
    cg_options co = {NULL, NULL, NULL, 0, 0};
    if (!(r->engine = cg_engine_new(g, backend, &co, e)))
        return -1;
    r->threads = threads;
    r->has_seed = ir_find_named(g, IR_OP_INPUT, "dropout_seed") >= 0;
    int mg = ir_find_named(g, IR_OP_INPUT, "mlm_gather");
    r->mlm_gather = mg >= 0 ? g->nodes[mg].type.dim[1].c : 0;
    return 0;
}

void rundir_runner_free(rundir_runner *r)
{
    cg_engine_free(r->engine);
    r->engine = NULL;
}

/* Copies batch into out without its trailing columns of padding: every tensor whose
 * second dimension is the attention mask's S keeps the columns up to the last one
 * with a nonzero mask in some row. */
static int trimmed(const rt_tensor_list *batch, rt_tensor_list *out, bc_err *e)
{
    const rt_tensor *m = rt_list_cfind(batch, "attention_mask");
    int64_t S = -1, keep = -1;
    if (m && m->rank == 2 && rt_dtype_is_int(m->dtype) && m->shape[1] > 0) {
        S = m->shape[1];
        int64_t n = rt_numel(m);
        int64_t *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v); /* [B, S] */
        if (!v)
            return bc_errf(e, "out of memory");
        if (rt_to_i64(m, v, e)) {
            free(v);
            return -1;
        }
        keep = 1;
        for (int64_t i = 0; i < n; i++)
            if (v[i] && i % S + 1 > keep)
                keep = i % S + 1;
        free(v);
    }
    for (int i = 0; i < batch->n; i++) {
        const rt_tensor *t = &batch->t[i];
        if (keep < 0 || keep == S || t->rank < 2 || t->shape[1] != S) {
            if (!rt_list_add(out, t->name, t->dtype, t->rank, t->shape, t->data))
                return bc_errf(e, "out of memory");
            continue;
        }
        int64_t shape[RT_MAX_RANK];
        memcpy(shape, t->shape, sizeof shape);
        shape[1] = keep;
        rt_tensor *d = rt_list_add(out, t->name, t->dtype, t->rank, shape, NULL);
        if (!d)
            return bc_errf(e, "out of memory");
        size_t inner = rt_dtype_size(t->dtype); /* bytes per column */
        for (int k = 2; k < t->rank; k++)
            inner *= (size_t)t->shape[k];
        for (int64_t r = 0; r < t->shape[0]; r++)
            memcpy((char *)d->data + (size_t)r * (size_t)keep * inner,
                   (const char *)t->data + (size_t)r * (size_t)S * inner,
                   (size_t)keep * inner);
    }
    return 0;
}

int rundir_step(void *ctx, const rt_tensor_list *params, const rt_tensor_list *batch,
                uint64_t dropout_seed, rt_tensor_list *out, bc_err *e)
{
    rundir_runner *r = ctx;
    rt_tensor_list in;
    rt_list_init(&in);
    int rc = -1;
    int64_t seed = (int64_t)dropout_seed;
    if (trimmed(batch, &in, e))
        goto done;
    if (r->task && r->task->augment &&
        r->task->augment(r->task_state, &in, dropout_seed, e))
        goto done;
    if (r->mlm_gather > 0 && rt_batch_mlm_gather(&in, r->mlm_gather, e))
        goto done;
    if (r->has_seed && !rt_list_add(&in, "dropout_seed", RT_I64, 0, NULL, &seed)) {
        bc_errf(e, "out of memory");
        goto done;
    }
    rc = cg_engine_run(r->engine, params, &in, r->threads, out, e);
done:
    rt_list_free(&in);
    return rc;
}

int rundir_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out, bc_err *e)
{
    rundir_runner *r = ctx;
    rt_tensor_list in;
    rt_list_init(&in);
    int rc = trimmed(batch, &in, e)
                 ? -1
                 : cg_engine_run(r->engine, r->params, &in, r->threads, out, e);
    rt_list_free(&in);
    return rc;
}
