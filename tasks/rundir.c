/* rundir.c: see rundir.h. */
#include "rundir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "../train/train.h"
#include "runner.h"

/* ---- tokenizer options in JSON ---------------------------------------------------- */

json_t *rundir_tok_json(const tx_tok_opts *o)
{
    return json_pack("{s:b, s:o}", "lowercase", o->lowercase != 0, "strip_accents",
                     o->strip_accents < 0 ? json_null() : json_boolean(o->strip_accents));
}

int rundir_tok_from_json(const json_t *j, tx_tok_opts *o)
{
    json_t *l = json_object_get(j, "lowercase"), *s = json_object_get(j, "strip_accents");
    if (!json_is_object(j) || !json_is_boolean(l) ||
        !(json_is_null(s) || json_is_boolean(s)))
        return -1;
    o->lowercase = json_is_true(l);
    o->strip_accents = json_is_null(s) ? -1 : json_is_true(s);
    return 0;
}

/* ---- a trained run ------------------------------------------------------------------ */

const char *rundir_path(const char *dir, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

void rundir_close(rundir_run *r)
{
    json_decref(r->options);
    tx_vocab_free(r->vocab);
    if (r->task_opt && r->task)
        for (int i = 0; i < tk_task_noptions(r->task); i++)
            free((char *)r->task_opt[i]);
    free(r->task_opt);
    memset(r, 0, sizeof *r);
}

int rundir_open(const char *dir, rundir_run *r, bc_err *e)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    char path[4200];
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return bc_errf(e, "%s: not a run directory (made by bertcc train -o)", dir);
    json_error_t je;
    rundir_path(dir, RUNDIR_OPTIONS, path, sizeof path);
    if (!(r->options = json_load_file(path, 0, &je)) || !json_is_object(r->options)) {
        bc_errf(e, "%s: %s", path, r->options ? "not a JSON object" : je.text);
        goto fail;
    }
    const char *task = json_string_value(json_object_get(r->options, "task"));
    if (!task || !strcmp(task, "batches")) {
        bc_errf(e,
                "%s was trained on batch files (task %s); eval, predict and export need "
                "a run of a task (bertcc train --task NAME)",
                dir, task ? task : "unknown");
        goto fail;
    }
    if (!(r->task = tk_task_find(task))) {
        bc_errf(e, "%s: unknown task '%s'", path, task);
        goto fail;
    }
    if (rundir_tok_from_json(json_object_get(r->options, "tokenizer"), &r->tok)) {
        bc_errf(e,
                "%s: \"tokenizer\" must be {\"lowercase\": bool, \"strip_accents\": "
                "null or bool}",
                path);
        goto fail;
    }
    int no = tk_task_noptions(r->task);
    if (!(r->task_opt = calloc((size_t)no + 1, sizeof *r->task_opt))) {
        bc_errf(e, "out of memory");
        goto fail;
    }
    json_t *to = json_object_get(r->options, "task_options");
    for (int i = 0; i < no; i++) {
        json_t *v = json_object_get(to, r->task->options[i].name);
        char buf[64];
        const char *s = NULL;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_integer(v))
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v)), s = buf;
        else if (json_is_real(v))
            snprintf(buf, sizeof buf, "%.17g", json_real_value(v)), s = buf;
        if (s && !(r->task_opt[i] = strdup(s))) {
            bc_errf(e, "out of memory");
            goto fail;
        }
    }
    if (fe_load(rundir_path(dir, RUNDIR_MODEL, path, sizeof path), &r->model, e))
        goto fail;
    if (!(r->vocab = tx_vocab_load(rundir_path(dir, RUNDIR_VOCAB, path, sizeof path), e)))
        goto fail;
    if (tx_vocab_size(r->vocab) != r->model.vocab_size) {
        bc_errf(e, "%s has %d tokens but %s/%s says vocab-size %lld", path,
                tx_vocab_size(r->vocab), dir, RUNDIR_MODEL, (long long)r->model.vocab_size);
        goto fail;
    }
    return 0;
fail:
    rundir_close(r);
    return -1;
}

const char *rundir_weights_path(const rundir_run *r, const char *which, char *buf,
                                size_t len)
{
    struct stat st;
    if (!which || !strcmp(which, "best")) {
        rundir_path(r->dir, RUNDIR_BEST, buf, len);
        if (stat(buf, &st))
            rundir_path(r->dir, TR_TRAIN_WEIGHTS, buf, len);
    } else if (!strcmp(which, "last")) {
        rundir_path(r->dir, TR_TRAIN_WEIGHTS, buf, len);
    } else {
        snprintf(buf, len, "%s", which);
    }
    return buf;
}

int rundir_load_weights(const rundir_run *r, const char *which, const ir_graph *g,
                        rt_tensor_list *params, bc_err *e)
{
    char path[4200];
    rundir_weights_path(r, which, path, sizeof path);
    rt_tensor_list ckpt;
    rt_list_init(&ckpt);
    int rc = rt_st_load(path, &ckpt, e);
    if (!rc && (rc = rt_params_from_checkpoint(g, &ckpt, 0, 0, params, NULL, NULL, e)))
        bc_err_prefix(e, "%s", path);
    rt_list_free(&ckpt);
    return rc;
}

int rundir_task_open(const rundir_run *r, const char *data, bc_note_fn note, void *note_ctx,
                     int top_k, tk_task *t, bc_err *e)
{
    tk_task_config c = {.data = data,
                        .run_dir = r->dir,
                        .vocab = r->vocab,
                        .tok = r->tok,
                        .opt = r->task_opt,
                        .max_position = r->model.max_position,
                        .note = note,
                        .note_ctx = note_ctx,
                        .top_k = top_k};
    t->ops = r->task;
    t->state = NULL;
    return r->task->open(&c, &t->state, e);
}

/* ---- a trained model: evaluation and prediction ------------------------------------- */

int rundir_model_open(rundir_model *m, const char *dir, const char *data,
                      const rundir_model_opts *o, bc_err *e)
{
    memset(m, 0, sizeof *m);
    rt_list_init(&m->params);
    if (rundir_open(dir, &m->run, e))
        return -1;
    m->opened = 1;
    const char *fuse = o->fuse;
    if (!fuse) /* as the run was trained; runs from before fusion: all */
        fuse = json_string_value(json_object_get(m->run.options, "fuse"));
    if (!(m->g = rundir_eval_graph(&m->run.model, m->run.task->eval_outputs, fuse, e)) ||
        rundir_load_weights(&m->run, o->weights, m->g, &m->params, e) ||
        rundir_task_open(&m->run, data, o->note, o->note_ctx, o->top_k, &m->task, e) ||
        rundir_runner_init(&m->runner, m->g, o->backend, o->threads, e)) {
        rundir_model_close(m);
        return -1;
    }
    m->runner.params = &m->params;
    /* the loaded weights never change: pack them once (the pack rule) */
    cg_engine_keep_constants(m->runner.engine, 1);
    return 0;
}

void rundir_model_close(rundir_model *m)
{
    if (m->task.ops)
        m->task.ops->close(m->task.state);
    rundir_runner_free(&m->runner);
    ir_graph_free(m->g);
    rt_list_free(&m->params);
    if (m->opened)
        rundir_close(&m->run);
    memset(m, 0, sizeof *m);
}

int rundir_evaluate(rundir_model *m, tk_split split, int batch_size, tk_metrics *out,
                    bc_err *e)
{
    return m->task.ops->evaluate(m->task.state, split, batch_size, rundir_forward,
                                 &m->runner, NULL, out, e);
}

int rundir_predict(rundir_model *m, const char *text, const char *text_pair, json_t **out,
                   bc_err *e)
{
    return m->task.ops->predict(m->task.state, text, text_pair, rundir_forward, &m->runner,
                                out, e);
}

int rundir_print_prediction(const rundir_model *m, const json_t *prediction, FILE *f)
{
    return m->task.ops->print(m->task.state, prediction, f);
}

json_t *rundir_eval_details(const rundir_model *m)
{
    return m->task.ops->details ? m->task.ops->details(m->task.state) : NULL;
}

int rundir_print_eval_details(const rundir_model *m, const json_t *details, FILE *f)
{
    return m->task.ops->print_details && details
               ? m->task.ops->print_details(m->task.state, details, f)
               : 0;
}
