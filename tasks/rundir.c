/* rundir.c: see rundir.h. */
#include "rundir.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../passes/passes.h"
#include "../train/batch.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "task_intent_slot.h"
#include "task_pretrain.h"
#include "task_qa.h"
#include "../train/train.h"

/* ---- tasks -------------------------------------------------------------------------- */

/* Add a task here. */
const rt_task_ops *const rundir_tasks[] = {&rt_task_intent_slot, &rt_task_qa,
                                           &rt_task_pretrain, NULL};

const rt_task_ops *rundir_task_find(const char *name)
{
    for (int i = 0; rundir_tasks[i]; i++)
        if (!strcmp(rundir_tasks[i]->name, name))
            return rundir_tasks[i];
    return NULL;
}

/* ---- graphs ------------------------------------------------------------------------- */

static int keep_outputs(ir_graph **g, int (*want)(const char *name, const void *ctx),
                        const void *ctx, ir_err *e)
{
    const char **keep = malloc(sizeof *keep * (size_t)((*g)->nout + 1));
    if (!keep)
        return ir_errf(e, "out of memory");
    int nk = 0;
    for (int i = 0; i < (*g)->nout; i++)
        if (want((*g)->outs[i].name, ctx))
            keep[nk++] = (*g)->outs[i].name;
    int rc = pass_keep_outputs(*g, keep, nk, e) ||
             pass_run_pipeline(g, PASS_DEFAULT_PIPELINE, NULL, e);
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
    for (const char *const *o = ctx; *o; o++)
        if (!strcmp(*o, name))
            return 1;
    return 0;
}

ir_graph *rundir_train_graph(const fe_model *m, unsigned labels, const char *const *frozen,
                             int nfrozen, int64_t mlm_gather, ir_err *e)
{
    pass_grad_opts go = {"loss", frozen, nfrozen};
    ir_graph *g = fe_build_bert_mlm_gather(m, labels | FE_BUILD_TRAIN, mlm_gather, e);
    if (!g || pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, e) ||
        pass_autodiff(&g, &go, e) || keep_outputs(&g, want_train, NULL, e)) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

ir_graph *rundir_eval_graph(const fe_model *m, const char *const *outputs, ir_err *e)
{
    ir_graph *g = fe_build_bert(m, 0, e);
    if (!g || pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, e) ||
        keep_outputs(&g, want_listed, outputs, e)) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

/* ---- runners --------------------------------------------------------------------------
 */

int rundir_runner_init(rundir_runner *r, const ir_graph *g, cg_backend backend, int threads,
                       ir_err *e)
{
    memset(r, 0, sizeof *r);
    cg_options co = {NULL, NULL, NULL, 0};
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
static int trimmed(const rt_tensor_list *batch, rt_tensor_list *out, ir_err *e)
{
    const rt_tensor *m = rt_list_cfind(batch, "attention_mask");
    int64_t S = -1, keep = -1;
    if (m && m->rank == 2 && rt_dtype_is_int(m->dtype) && m->shape[1] > 0) {
        S = m->shape[1];
        int64_t n = rt_numel(m);
        int64_t *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v); /* [B, S] */
        if (!v)
            return ir_errf(e, "out of memory");
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
                return ir_errf(e, "out of memory");
            continue;
        }
        int64_t shape[RT_MAX_RANK];
        memcpy(shape, t->shape, sizeof shape);
        shape[1] = keep;
        rt_tensor *d = rt_list_add(out, t->name, t->dtype, t->rank, shape, NULL);
        if (!d)
            return ir_errf(e, "out of memory");
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
                uint64_t dropout_seed, rt_tensor_list *out, ir_err *e)
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
        ir_errf(e, "out of memory");
        goto done;
    }
    rc = cg_engine_run(r->engine, params, &in, r->threads, out, e);
done:
    rt_list_free(&in);
    return rc;
}

int rundir_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out, ir_err *e)
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

/* ---- tokenizer options in JSON ---------------------------------------------------- */

json_t *rundir_tok_json(const rt_tok_opts *o)
{
    return json_pack("{s:b, s:o}", "lowercase", o->lowercase != 0, "strip_accents",
                     o->strip_accents < 0 ? json_null() : json_boolean(o->strip_accents));
}

int rundir_tok_from_json(const json_t *j, rt_tok_opts *o)
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

static const char *join(const char *dir, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

void rundir_close(rundir_run *r)
{
    json_decref(r->options);
    rt_vocab_free(r->vocab);
    if (r->task_opt && r->task)
        for (int i = 0; i < rt_task_noptions(r->task); i++)
            free((char *)r->task_opt[i]);
    free(r->task_opt);
    memset(r, 0, sizeof *r);
}

int rundir_open(const char *dir, rundir_run *r, ir_err *e)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    char path[4200];
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return ir_errf(e, "%s: not a run directory (made by bertcc train -o)", dir);
    json_error_t je;
    join(dir, RUNDIR_OPTIONS, path, sizeof path);
    if (!(r->options = json_load_file(path, 0, &je)) || !json_is_object(r->options)) {
        ir_errf(e, "%s: %s", path, r->options ? "not a JSON object" : je.text);
        goto fail;
    }
    const char *task = json_string_value(json_object_get(r->options, "task"));
    if (!task || !strcmp(task, "batches")) {
        ir_errf(e,
                "%s was trained on batch files (task %s); eval, predict and export need "
                "a run of a task (bertcc train --task NAME)",
                dir, task ? task : "unknown");
        goto fail;
    }
    if (!(r->task = rundir_task_find(task))) {
        ir_errf(e, "%s: unknown task '%s'", path, task);
        goto fail;
    }
    if (rundir_tok_from_json(json_object_get(r->options, "tokenizer"), &r->tok)) {
        ir_errf(e,
                "%s: \"tokenizer\" must be {\"lowercase\": bool, \"strip_accents\": "
                "null or bool}",
                path);
        goto fail;
    }
    int no = rt_task_noptions(r->task);
    if (!(r->task_opt = calloc((size_t)no + 1, sizeof *r->task_opt))) {
        ir_errf(e, "out of memory");
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
            ir_errf(e, "out of memory");
            goto fail;
        }
    }
    if (fe_load(join(dir, RUNDIR_MODEL, path, sizeof path), &r->model, e))
        goto fail;
    if (!(r->vocab = rt_vocab_load(join(dir, RUNDIR_VOCAB, path, sizeof path), e)))
        goto fail;
    if (rt_vocab_size(r->vocab) != r->model.vocab_size) {
        ir_errf(e, "%s has %d tokens but %s/%s says vocab-size %lld", path,
                rt_vocab_size(r->vocab), dir, RUNDIR_MODEL, (long long)r->model.vocab_size);
        goto fail;
    }
    return 0;
fail:
    rundir_close(r);
    return -1;
}

int rundir_load_weights(const rundir_run *r, const char *which, const ir_graph *g,
                        rt_tensor_list *params, ir_err *e)
{
    char path[4200];
    struct stat st;
    if (!which || !strcmp(which, "best")) {
        join(r->dir, RUNDIR_BEST, path, sizeof path);
        if (stat(path, &st))
            join(r->dir, RT_TRAIN_WEIGHTS, path, sizeof path);
    } else if (!strcmp(which, "last")) {
        join(r->dir, RT_TRAIN_WEIGHTS, path, sizeof path);
    } else {
        snprintf(path, sizeof path, "%s", which);
    }
    rt_tensor_list ckpt;
    rt_list_init(&ckpt);
    int rc = rt_st_load(path, &ckpt, e);
    if (!rc && (rc = rt_params_from_checkpoint(g, &ckpt, 0, 0, params, NULL, NULL, e)))
        ir_err_prefix(e, "%s", path);
    rt_list_free(&ckpt);
    return rc;
}

int rundir_task_open(const rundir_run *r, const char *data, rt_note_fn note, void *note_ctx,
                     rt_task *t, ir_err *e)
{
    rt_task_config c = {data,    r->dir,      r->vocab, r->tok, r->task_opt,
                        r->model.max_position, note, note_ctx};
    t->ops = r->task;
    t->state = NULL;
    return r->task->open(&c, &t->state, e);
}

/* ---- metrics.csv ------------------------------------------------------------------- */

int rundir_metrics_append(const char *dir, int64_t step, double epoch, double train_loss,
                          const rt_metrics *m, int best, ir_err *e)
{
    char path[4200];
    join(dir, RUNDIR_METRICS, path, sizeof path);
    struct stat st;
    int fresh = stat(path, &st) != 0 || st.st_size == 0;
    FILE *f = fopen(path, "a");
    if (!f)
        return ir_errf(e, "%s: cannot write: %s", path, strerror(errno));
    if (fresh) {
        fputs("step,epoch,train_loss", f);
        for (int i = 0; i < m->n; i++)
            fprintf(f, ",%s", m->name[i]);
        fputs(",examples,best\n", f);
    }
    fprintf(f, "%lld,%.6g,%.9g", (long long)step, epoch, train_loss);
    /* %.17g: a resumed run reads the scores back exactly to compare with them. */
    for (int i = 0; i < m->n; i++)
        fprintf(f, ",%.17g", m->value[i]);
    fprintf(f, ",%lld,%d\n", (long long)m->examples, best ? 1 : 0);
    if (fclose(f))
        return ir_errf(e, "%s: cannot write", path);
    return 0;
}

/* A CSV file of numbers with a header line: columns and rows. */
typedef struct csv {
    char **col; /* [ncol] */
    int ncol;
    double *v; /* [nrow, ncol] */
    int nrow;
} csv;

static void csv_free(csv *c)
{
    for (int i = 0; i < c->ncol; i++)
        free(c->col[i]);
    free(c->col);
    free(c->v);
    memset(c, 0, sizeof *c);
}

static int csv_find(const csv *c, const char *name)
{
    for (int i = 0; i < c->ncol; i++)
        if (!strcmp(c->col[i], name))
            return i;
    return -1;
}

/* Reads path; 1 when it does not exist, -1 on a malformed file. */
static int csv_read(const char *path, csv *c)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0, cap_rows = 0;
    if ((n = getline(&line, &cap, f)) < 0)
        goto done;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    for (char *s = line, *tok; (tok = strsep(&s, ","));) {
        char **nc = realloc(c->col, ((size_t)c->ncol + 1) * sizeof *nc);
        if (!nc || !(nc[c->ncol] = strdup(tok))) {
            if (nc)
                c->col = nc;
            rc = -1;
            goto done;
        }
        c->col = nc;
        c->ncol++;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n <= 1)
            continue;
        if (c->nrow == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 256;
            double *nv = realloc(c->v, (size_t)cap_rows * (size_t)c->ncol * sizeof *nv);
            if (!nv) {
                rc = -1;
                goto done;
            }
            c->v = nv;
        }
        double *row = c->v + (size_t)c->nrow * (size_t)c->ncol;
        char *s = line;
        for (int k = 0; k < c->ncol; k++) {
            char *end;
            row[k] = strtod(s, &end);
            if (end == s)
                row[k] = NAN;
            s = strchr(end, ',');
            if (!s && k + 1 < c->ncol) {
                for (int j = k + 1; j < c->ncol; j++)
                    row[j] = NAN;
                break;
            }
            if (s)
                s++;
        }
        c->nrow++;
    }
done:
    free(line);
    fclose(f);
    if (rc)
        csv_free(c);
    return rc;
}

static int is_bookkeeping(const char *col)
{
    return !strcmp(col, "step") || !strcmp(col, "epoch") || !strcmp(col, "train_loss") ||
           !strcmp(col, "examples") || !strcmp(col, "best");
}

/* A dev metric that is a loss (pretrain's mlm_loss, nsp_loss): drawn with the training
 * loss rather than with the fractions. */
static int is_dev_loss(const char *col)
{
    size_t n = strlen(col);
    return n > 5 && !strcmp(col + n - 5, "_loss") && strcmp(col, "train_loss");
}

int rundir_metrics_resume(const char *dir, int64_t step, const rt_task_ops *t,
                          rt_metrics *best, int *have_best, json_t **keep, ir_err *e)
{
    char path[4200], tmp[4300];
    join(dir, RUNDIR_METRICS, path, sizeof path);
    *have_best = 0;
    *keep = NULL;
    memset(best, 0, sizeof *best);
    FILE *in = fopen(path, "r");
    if (!in)
        return 0;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return ir_errf(e, "%s: cannot write", tmp);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int first = 1, ok = 1;
    while ((n = getline(&line, &cap, in)) >= 0) {
        char *end;
        long long s = strtoll(line, &end, 10);
        if (first || (end != line && *end == ',' && s <= step))
            ok &= fputs(line, out) >= 0;
        first = 0;
    }
    free(line);
    fclose(in);
    if (fclose(out) || !ok || rename(tmp, path)) {
        remove(tmp);
        return ir_errf(e, "%s: cannot rewrite", path);
    }
    csv c;
    if (csv_read(path, &c) < 0)
        return ir_errf(e, "%s: cannot read", path);
    json_t *names = json_array();
    rt_metrics cur;
    for (int r = 0; r < c.nrow; r++) {
        memset(&cur, 0, sizeof cur);
        for (int k = 0; k < c.ncol; k++)
            if (!is_bookkeeping(c.col[k])) {
                json_array_append_new(names, json_string(c.col[k]));
                rt_metrics_add(
                    &cur,
                    json_string_value(json_array_get(names, json_array_size(names) - 1)),
                    c.v[(size_t)r * (size_t)c.ncol + (size_t)k]);
            }
        if (!*have_best || rt_task_compare(t, &cur, best) > 0) {
            *best = cur;
            *have_best = 1;
        }
    }
    csv_free(&c);
    *keep = names;
    return 0;
}

double rundir_mean_loss(const char *dir, int64_t from, int64_t to)
{
    char path[4200];
    csv c;
    if (csv_read(join(dir, RT_TRAIN_LOG, path, sizeof path), &c))
        return NAN;
    int ks = csv_find(&c, "step"), kl = csv_find(&c, "loss");
    double sum = 0;
    int64_t n = 0;
    for (int r = 0; ks >= 0 && kl >= 0 && r < c.nrow; r++) {
        double s = c.v[(size_t)r * (size_t)c.ncol + (size_t)ks];
        if (s > (double)from && s <= (double)to) {
            sum += c.v[(size_t)r * (size_t)c.ncol + (size_t)kl];
            n++;
        }
    }
    csv_free(&c);
    return n ? sum / (double)n : NAN;
}

/* ---- the plot ---------------------------------------------------------------------- */

/* A "nice" tick spacing for a range split into about n parts: 1, 2 or 5 times 10^k. */
static double nice_step(double range, int n)
{
    if (!(range > 0))
        return 1;
    double raw = range / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef struct panel {
    double x, y, w, h;     /* in pixels */
    double x0, x1, y0, y1; /* data ranges */
} panel;

static double px(const panel *p, double x)
{
    return p->x + (x - p->x0) / (p->x1 - p->x0) * p->w;
}

static double py(const panel *p, double y)
{
    return p->y + p->h - (y - p->y0) / (p->y1 - p->y0) * p->h;
}

static void axes(FILE *f, const panel *p, const char *title, const char *xlabel)
{
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" "
            "stroke=\"#444\"/>\n",
            p->x, p->y, p->w, p->h);
    fprintf(
        f,
        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n",
        p->x + p->w / 2, p->y - 10, title);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
            p->x + p->w / 2, p->y + p->h + 34, xlabel);
    double sx = nice_step(p->x1 - p->x0, 5), sy = nice_step(p->y1 - p->y0, 5);
    for (double t = ceil(p->x0 / sx) * sx; t <= p->x1 + 1e-9 * sx; t += sx)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                px(p, t), p->y, px(p, t), p->y + p->h, px(p, t), p->y + p->h + 16, t);
    for (double t = ceil(p->y0 / sy) * sy; t <= p->y1 + 1e-9 * sy; t += sy)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                p->x, py(p, t), p->x + p->w, py(p, t), p->x - 6, py(p, t) + 4,
                fabs(t) < 1e-12 * sy ? 0.0 : t);
}

/* One series: a polyline, and dots when there are few points. */
static void series(FILE *f, const panel *p, const double *x, const double *y, int n,
                   const char *color, int dots)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
            color);
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            fprintf(f, "%.1f,%.1f ", px(p, x[i]), py(p, y[i]));
    fputs("\"/>\n", f);
    for (int i = 0; dots && i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                    px(p, x[i]), py(p, y[i]), color);
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
}

int rundir_plot(const char *dir, const char *title, ir_err *e)
{
    static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    char path[4200], tmp[4300];
    csv lg, mt;
    int has_log = csv_read(join(dir, RT_TRAIN_LOG, path, sizeof path), &lg) == 0;
    int has_mt = csv_read(join(dir, RUNDIR_METRICS, path, sizeof path), &mt) == 0;
    join(dir, RUNDIR_PLOT, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        if (has_log)
            csv_free(&lg);
        if (has_mt)
            csv_free(&mt);
        return ir_errf(e, "%s: cannot write", tmp);
    }
    fputs("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1000\" height=\"420\" "
          "font-family=\"sans-serif\" font-size=\"11\">\n"
          "<rect width=\"1000\" height=\"420\" fill=\"#fafafa\"/>\n"
          "<text x=\"500\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">",
          f);
    put_escaped(f, title);
    fputs("</text>\n", f);

    /* Training loss against the update, with each epoch's mean as dots. */
    int nl = has_log ? lg.nrow : 0, ks = has_log ? csv_find(&lg, "step") : -1,
        kl = has_log ? csv_find(&lg, "loss") : -1;
    double xmax = 1, ymax = 0;
    double *xs = malloc(((size_t)nl + 1) * sizeof *xs),
           *ys = malloc(((size_t)nl + 1) * sizeof *ys);
    int n = 0;
    for (int r = 0; xs && ys && ks >= 0 && kl >= 0 && r < nl; r++) {
        xs[n] = lg.v[(size_t)r * (size_t)lg.ncol + (size_t)ks];
        ys[n] = lg.v[(size_t)r * (size_t)lg.ncol + (size_t)kl];
        if (isfinite(xs[n]) && isfinite(ys[n])) {
            xmax = xs[n] > xmax ? xs[n] : xmax;
            ymax = ys[n] > ymax ? ys[n] : ymax;
            n++;
        }
    }
    int nm = has_mt ? mt.nrow : 0, ms = has_mt ? csv_find(&mt, "step") : -1;
    for (int r = 0; ms >= 0 && r < nm; r++) {
        double s = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
        xmax = isfinite(s) && s > xmax ? s : xmax;
        for (int k = 0; k < mt.ncol; k++) { /* dev losses share the loss panel */
            double v = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)k];
            if (is_dev_loss(mt.col[k]) && isfinite(v) && v > ymax)
                ymax = v;
        }
    }
    panel pl = {70, 50, 390, 280, 0, xmax, 0, ymax > 0 ? ymax * 1.05 : 1};
    axes(f, &pl, "training loss", "update");
    if (xs && ys)
        series(f, &pl, xs, ys, n, "#999", 0);
    int mtl = has_mt ? csv_find(&mt, "train_loss") : -1;
    if (mtl >= 0 && ms >= 0) {
        double *ex = malloc(((size_t)nm + 1) * sizeof *ex),
               *ey = malloc(((size_t)nm + 1) * sizeof *ey);
        for (int r = 0; ex && ey && r < nm; r++) {
            ex[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
            ey[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)mtl];
        }
        if (ex && ey) {
            series(f, &pl, ex, ey, nm, colors[0], 1);
            fprintf(f,
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"%s\">epoch "
                    "mean</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                    "fill=\"#999\">each update</text>\n",
                    pl.x + pl.w - 8, pl.y + 16, colors[0], pl.x + pl.w - 8, pl.y + 30);
        }
        free(ex);
        free(ey);
    }
    free(xs);
    free(ys);
    xs = malloc(((size_t)nm + 1) * sizeof *xs);
    ys = malloc(((size_t)nm + 1) * sizeof *ys);
    for (int k = 0, shown = 0; xs && ys && ms >= 0 && k < mt.ncol; k++) {
        if (!is_dev_loss(mt.col[k]))
            continue;
        for (int r = 0; r < nm; r++) {
            xs[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
            ys[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)k];
        }
        const char *c = colors[(shown + 1) % 8];
        series(f, &pl, xs, ys, nm, c, 1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"%s\">dev ",
                pl.x + pl.w - 8, pl.y + 44 + 14.0 * shown, c);
        put_escaped(f, mt.col[k]);
        fputs("</text>\n", f);
        shown++;
    }
    free(xs);
    free(ys);

    /* Dev metrics against the update. */
    panel pm = {560, 50, 390, 280, 0, xmax, 0, 1};
    axes(f, &pm, "dev metrics", "update");
    double *ex = malloc(((size_t)nm + 1) * sizeof *ex),
           *ey = malloc(((size_t)nm + 1) * sizeof *ey);
    int shown = 0;
    for (int k = 0; ex && ey && ms >= 0 && k < mt.ncol; k++) {
        if (is_bookkeeping(mt.col[k]) || is_dev_loss(mt.col[k]))
            continue;
        for (int r = 0; r < nm; r++) {
            ex[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
            ey[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)k];
        }
        const char *c = colors[shown % 8];
        series(f, &pm, ex, ey, nm, c, 1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">", 560.0 + 130.0 * (shown % 3),
                pm.y + pm.h + 50 + 14.0 * (shown / 3), c);
        put_escaped(f, mt.col[k]);
        fputs("</text>\n", f);
        shown++;
    }
    free(ex);
    free(ey);
    fputs("</svg>\n", f);
    if (has_log)
        csv_free(&lg);
    if (has_mt)
        csv_free(&mt);
    if (fclose(f) || rename(tmp, path)) {
        remove(tmp);
        return ir_errf(e, "%s: cannot write", path);
    }
    return 0;
}
