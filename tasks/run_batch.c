/* run_batch.c: see run_batch.h. */
#include "run_batch.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "../support/clock.h"
#include "../train/batch.h"

_Static_assert((int)TR_LABEL_MLM == (int)FE_LABEL_MLM &&
                   (int)TR_LABEL_NSP == (int)FE_LABEL_NSP &&
                   (int)TR_LABEL_INTENT == (int)FE_LABEL_INTENT &&
                   (int)TR_LABEL_SLOT == (int)FE_LABEL_SLOT &&
                   (int)TR_LABEL_QA == (int)FE_LABEL_QA,
               "runtime and frontend label groups must agree");

/* The model and the batch's inputs and labels (the groups found into *present). */
static int load_inputs(const tk_run_opts *o, fe_model *m, rt_tensor_list *inputs,
                       unsigned *present, tk_run_info *info, bc_err *e)
{
    rt_tensor_list batch;
    rt_list_init(&batch);
    if (fe_load(o->model, m, e) || rt_st_load(o->batch, &batch, e))
        return -1;
    /* FE_HEAD_* and FE_LABEL_* use the same bit for the same head. */
    int rc = tr_batch_prepare(&batch, m->max_position, m->head_mask & FE_LABEL_ALL, inputs,
                              present, &info->B, &info->S, o->note, o->note_ctx, e);
    if (rc)
        bc_err_prefix(e, "%s", o->batch);
    rt_list_free(&batch);
    return rc ? -1 : 0;
}

/* The eval-mode graph for the labels present, optimized; with grads, differentiated
 * with respect to every parameter and optimized again. */
static ir_graph *build_graph(const fe_model *m, unsigned present, int grads,
                             const char *fuse, bc_err *e)
{
    pass_grad_opts go = {"loss", NULL, 0};
    char pipeline[256];
    if (pass_default_pipeline(fuse, pipeline, sizeof pipeline, e))
        return bc_err_prefix(e, "--fuse"), NULL;
    ir_graph *g = fe_build_bert(m, present, e);
    /* fusion last: after autodiff when there is a backward */
    if (g && (pass_run_pipeline(&g, grads ? PASS_BASE_PIPELINE : pipeline, NULL, e) ||
              (grads && (pass_autodiff(&g, &go, e) ||
                         pass_run_pipeline(&g, pipeline, NULL, e))))) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

static int load_params(const tk_run_opts *o, const ir_graph *g, rt_tensor_list *params,
                       bc_err *e)
{
    if (!o->weights)
        return rt_params_init(g, o->seed, params, e);
    rt_tensor_list ckpt;
    rt_list_init(&ckpt);
    if (rt_st_load(o->weights, &ckpt, e))
        return -1;
    int rc = rt_params_from_checkpoint(g, &ckpt, 0, 0, params, o->note, o->note_ctx, e);
    if (rc)
        bc_err_prefix(e, "%s", o->weights);
    rt_list_free(&ckpt);
    return rc ? -1 : 0;
}

/* Compiles (or prepares) g on the backend and runs it once. */
static int execute(const tk_run_opts *o, const ir_graph *g, const rt_tensor_list *params,
                   const rt_tensor_list *inputs, rt_tensor_list *outputs, tk_run_info *info,
                   bc_err *e)
{
    double t1 = bc_now();
    cg_engine *engine = cg_engine_new(g, o->backend, &o->cg, e);
    if (!engine)
        return -1;
    double t2 = bc_now();
    int rc = cg_engine_run(engine, params, inputs, o->threads, outputs, e);
    if (rc)
        bc_err_prefix(e, "%s", o->batch);
    info->compile_s = t2 - t1;
    info->run_s = bc_now() - t2;
    cg_engine_free(engine);
    return rc ? -1 : 0;
}

int tk_run_batch(const tk_run_opts *o, rt_tensor_list *outputs, tk_run_info *info,
                 bc_err *e)
{
    fe_model m;
    rt_tensor_list inputs, params;
    rt_list_init(&inputs);
    rt_list_init(&params);
    memset(info, 0, sizeof *info);
    unsigned present = 0;
    ir_graph *g = NULL;
    int rc = -1;
    if (load_inputs(o, &m, &inputs, &present, info, e))
        goto done;
    snprintf(info->model, sizeof info->model, "%s", m.name);
    if (o->grads && !present) {
        bc_errf(e, "--grads needs labels in the batch: without them there is no loss to "
                   "differentiate");
        goto done;
    }
    if ((g = build_graph(&m, present, o->grads, o->fuse, e)) && !load_params(o, g, &params, e))
        rc = execute(o, g, &params, &inputs, outputs, info, e);
done:
    ir_graph_free(g);
    rt_list_free(&inputs);
    rt_list_free(&params);
    return rc;
}
