/* bench.c: see bench.h. */
#include "bench.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../runtime/params.h"
#include "../runtime/rng.h"
#include "../support/clock.h"
#include "../train/train.h"
#include "runner.h"

void tk_bench_defaults(tk_bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = TK_BENCH_INFER;
    o->batch_size = 8;
    o->seq_len = 128;
    o->iters = 10;
    o->warmup = 1;
    o->backend = CG_BACKEND_DEFAULT;
}

const char *tk_bench_mode_name(tk_bench_mode mode)
{
    return mode == TK_BENCH_TRAIN ? "train" : "infer";
}

int tk_bench_mode_parse(const char *s, tk_bench_mode *out)
{
    if (!strcmp(s, "infer"))
        *out = TK_BENCH_INFER;
    else if (!strcmp(s, "train"))
        *out = TK_BENCH_TRAIN;
    else
        return -1;
    return 0;
}

ir_graph *tk_bench_graph(const fe_model *m, tk_bench_mode mode, const char *fuse,
                         bc_err *e)
{
    if (mode == TK_BENCH_INFER)
        return rundir_eval_graph(m, NULL, fuse, e);
    /* FE_HEAD_* and FE_LABEL_* use the same bit for the same head. */
    unsigned labels = m->head_mask & FE_LABEL_ALL;
    if (!labels) {
        bc_errf(e,
                "%s has no heads, so there is no loss to train: train mode needs a model "
                "with at least one head (infer mode times its encoder and pooler)",
                m->name);
        return NULL;
    }
    return rundir_train_graph(m, labels, NULL, 0, 0, fuse, e);
}

/* Exclusive upper bound of an input's random values (attention_mask: all ones), or 0
 * for an input bench cannot make. */
static int64_t input_range(const fe_model *m, const char *name, int64_t S)
{
    if (!strcmp(name, "input_ids") || !strcmp(name, "mlm_labels"))
        return m->vocab_size;
    if (!strcmp(name, "token_type_ids"))
        return m->type_vocab_size;
    if (!strcmp(name, "attention_mask"))
        return 1;
    if (!strcmp(name, "nsp_labels"))
        return 2;
    if (!strcmp(name, "intent_labels"))
        return m->intent_classes;
    if (!strcmp(name, "slot_labels"))
        return m->slot_labels;
    if (!strcmp(name, "start_positions") || !strcmp(name, "end_positions"))
        return S;
    return 0;
}

/* Every input of g but dropout_seed (the runner adds it), I64 [B, ...], drawn from seed:
 * ids and labels uniform in their ranges, the attention mask all ones. */
static int random_inputs(const ir_graph *g, const fe_model *m, int64_t B, int64_t S,
                         uint64_t seed, rt_tensor_list *out, bc_err *e)
{
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_INPUT || !strcmp(n->name, "dropout_seed"))
            continue;
        int64_t hi = input_range(m, n->name, S), shape[RT_MAX_RANK];
        if (hi < 1 || n->type.dtype != IR_I64 || n->type.rank < 1)
            return bc_errf(e, "bench cannot make values for the graph's input %s", n->name);
        for (int d = 0; d < n->type.rank; d++)
            shape[d] = ir_dim_eval(n->type.dim[d], B, S);
        rt_tensor *t = rt_list_add(out, n->name, RT_I64, n->type.rank, shape, NULL);
        if (!t)
            return bc_errf(e, "out of memory for the input %s", n->name);
        int64_t *v = t->data; /* [B, ...] */
        for (int64_t k = 0; k < rt_numel(t); k++)
            v[k] = hi == 1 ? 1 : (int64_t)rt_rng_below(&r, (uint64_t)hi);
    }
    return 0;
}

/* ---- timing ------------------------------------------------------------------------- */

/* When each iteration ended; iteration k took t[k] - t[k - 1] (t[-1]: start). */
typedef struct clock_log {
    double start;
    double *t; /* [n] */
    int64_t n, cap;
    cg_engine *profile; /* switched to profiling once `warmup` iterations have ended */
    int64_t warmup;
    int profile_failed;
} clock_log;

static void tick(clock_log *c)
{
    c->t[c->n++] = bc_now();
    if (c->profile && c->n == c->warmup && cg_engine_profile(c->profile, 1, NULL))
        c->profile_failed = 1;
}

static void on_step(void *ctx, const tr_train_progress *p)
{
    (void)p;
    clock_log *c = ctx;
    if (c->n < c->cap)
        tick(c);
}

/* Full training steps through the training engine, as `bertcc train` runs them: one
 * micro-batch of all B rows per update. */
static int time_train(rundir_runner *run, rt_tensor_list *params, const rt_tensor_list *in,
                      const tk_bench_opts *o, clock_log *c, bc_err *e)
{
    tr_train_opts to;
    tr_train_defaults(&to);
    to.batch_size = o->batch_size;
    to.steps = c->cap;
    to.shuffle = 0;
    to.seed = o->seed;
    to.on_step = on_step;
    to.hook_ctx = c;
    c->start = bc_now();
    if (tr_train(&to, rundir_step, run, params, in, NULL, NULL, e))
        return -1;
    return c->n == c->cap ? 0 : bc_errf(e, "the training engine stopped early");
}

static int time_infer(rundir_runner *run, const rt_tensor_list *params,
                      const rt_tensor_list *in, clock_log *c, bc_err *e)
{
    rt_tensor_list out; /* kept across iterations: generated code writes in place */
    rt_list_init(&out);
    run->params = params;
    int rc = 0;
    c->start = bc_now();
    while (!rc && c->n < c->cap) {
        rc = rundir_forward(run, in, &out, e);
        tick(c);
    }
    rt_list_free(&out);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The timed iterations' median, minimum and maximum, in ms. */
static int summarize(const clock_log *c, int64_t warmup, tk_bench_result *r, bc_err *e)
{
    int64_t k = c->n - warmup;
    double *ms = malloc((size_t)k * sizeof *ms); /* [k] */
    if (!ms)
        return bc_errf(e, "out of memory");
    for (int64_t i = 0; i < k; i++) {
        int64_t j = warmup + i;
        ms[i] = 1e3 * (c->t[j] - (j ? c->t[j - 1] : c->start));
    }
    qsort(ms, (size_t)k, sizeof *ms, cmp_double);
    r->ms_per_iter = k % 2 ? ms[k / 2] : 0.5 * (ms[k / 2 - 1] + ms[k / 2]);
    r->ms_min = ms[0];
    r->ms_max = ms[k - 1];
    free(ms);
    return 0;
}

/* ---- the benchmark ------------------------------------------------------------------- */

static int check_opts(const tk_bench_opts *o, const fe_model *m, bc_err *e)
{
    if (o->batch_size < 1 || o->seq_len < 1 || o->iters < 1 || o->warmup < 0)
        return bc_errf(e, "batch size, sequence length and iterations must be positive");
    if (o->seq_len > m->max_position)
        return bc_errf(e, "sequence length %lld is beyond %s's max-position %lld",
                       (long long)o->seq_len, m->name, (long long)m->max_position);
    return 0;
}

static void describe(const tk_bench_opts *o, const fe_model *m, tk_bench_result *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->model, sizeof r->model, "%s", m->name);
    char features[4096];
    cg_host_target(r->cpu, sizeof r->cpu, features, sizeof features);
    r->mode = o->mode;
    r->backend = o->backend;
    r->batch_size = o->batch_size;
    r->seq_len = o->seq_len;
    r->iters = o->iters;
    r->warmup = o->warmup;
    r->threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    snprintf(r->fuse, sizeof r->fuse, "%s", o->fuse ? o->fuse : "all");
}

/* The rows of the timed iterations' profile, and the time outside them. */
static int profile(const clock_log *c, const tk_bench_opts *o, tk_bench_result *r,
                   bc_err *e)
{
    int64_t runs;
    if (c->profile_failed)
        return bc_errf(e, "out of memory for the profile");
    if (cg_engine_profile_rows(c->profile, o->batch_size, o->seq_len, &r->prof, &r->nprof,
                               &runs, e))
        return -1;
    double start = o->warmup ? c->t[o->warmup - 1] : c->start, sum = 0;
    r->prof_ms_mean = 1e3 * (c->t[c->n - 1] - start) / (double)o->iters;
    for (int i = 0; i < r->nprof; i++) {
        /* per graph run -> per iteration (a training step runs its graph once) */
        r->prof[i].seconds *= (double)runs / (double)o->iters;
        sum += r->prof[i].seconds;
    }
    r->prof_ms_outside = r->prof_ms_mean - 1e3 * sum;
    return 0;
}

void tk_bench_result_free(tk_bench_result *r)
{
    free(r->prof);
    r->prof = NULL;
    r->nprof = 0;
}

int tk_bench(const tk_bench_opts *o, tk_bench_result *r, bc_err *e)
{
    fe_model m;
    rt_tensor_list params, in;
    rt_list_init(&params);
    rt_list_init(&in);
    rundir_runner run;
    memset(&run, 0, sizeof run);
    clock_log c = {0, NULL, 0, o->warmup + o->iters, NULL, o->warmup, 0};
    ir_graph *g = NULL;
    int rc = -1;
    if (fe_load(o->model, &m, e) || check_opts(o, &m, e))
        goto done;
    describe(o, &m, r);
    double t0 = bc_now();
    if (!(g = tk_bench_graph(&m, o->mode, o->fuse, e)) ||
        rundir_runner_init(&run, g, o->backend, o->threads, e))
        goto done;
    r->compile_s = bc_now() - t0;
    /* inference's weights stay as they are: packed once (the pack rule), in warm-up */
    if (o->mode == TK_BENCH_INFER)
        cg_engine_keep_constants(run.engine, 1);
    if (rt_params_init(g, o->seed, &params, e) ||
        random_inputs(g, &m, o->batch_size, o->seq_len, o->seed, &in, e))
        goto done;
    if (!(c.t = malloc((size_t)c.cap * sizeof *c.t))) {
        bc_errf(e, "out of memory");
        goto done;
    }
    if (o->profile) {
        c.profile = run.engine;
        if (cg_engine_profile(c.profile, !o->warmup, e)) /* no warm-up: from the start */
            goto done;
    }
    if (o->mode == TK_BENCH_TRAIN ? time_train(&run, &params, &in, o, &c, e)
                                  : time_infer(&run, &params, &in, &c, e))
        goto done;
    if (summarize(&c, o->warmup, r, e))
        goto done;
    if (o->profile && profile(&c, o, r, e))
        goto done;
    double s = r->ms_per_iter / 1e3;
    r->tokens_per_s = (double)(o->batch_size * o->seq_len) / s;
    r->gflop_per_iter = ir_matmul_flops(g, o->batch_size, o->seq_len) / 1e9;
    r->gflop_per_s = r->gflop_per_iter / s;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->peak_rss_mb = (double)ru.ru_maxrss / 1024; /* Linux: in KiB */
    rc = 0;
done:
    free(c.t);
    rundir_runner_free(&run);
    rt_list_free(&params);
    rt_list_free(&in);
    ir_graph_free(g);
    return rc;
}

/* ---- reporting ------------------------------------------------------------------------
 */

static const char *backend_name(cg_backend b)
{
    return b == CG_BACKEND_REF ? "ref" : "jit";
}

char *tk_bench_line(const tk_bench_result *r, char *buf, size_t len)
{
    snprintf(buf, len,
             "%s %s B=%lld S=%lld: %.2f ms/iter, %.0f tokens/s, %.2f GFLOP/s, peak RSS "
             "%.0f MB (median of %lld; %d thread%s, %s, fuse=%s, %s; compile %.2f s)",
             r->model, tk_bench_mode_name(r->mode), (long long)r->batch_size,
             (long long)r->seq_len, r->ms_per_iter, r->tokens_per_s, r->gflop_per_s,
             r->peak_rss_mb, (long long)r->iters, r->threads, r->threads == 1 ? "" : "s",
             backend_name(r->backend), r->fuse, r->cpu, r->compile_s);
    return buf;
}

static json_t *bench_json(const tk_bench_result *r)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:s, s:s, s:s, s:I, s:I, s:i, s:I, s:I, s:f, "
                     "s:s, s:f, s:f, s:f, s:s}",
                     "ms_per_iter", r->ms_per_iter, "tokens_per_s", r->tokens_per_s,
                     "gflop_per_s", r->gflop_per_s, "peak_rss_mb", r->peak_rss_mb, "model",
                     r->model, "mode", tk_bench_mode_name(r->mode), "backend",
                     backend_name(r->backend), "batch_size", (json_int_t)r->batch_size,
                     "seq_len", (json_int_t)r->seq_len, "threads", r->threads, "iters",
                     (json_int_t)r->iters, "warmup", (json_int_t)r->warmup, "compile_s",
                     r->compile_s, "cpu", r->cpu, "gflop_per_iter", r->gflop_per_iter,
                     "ms_min", r->ms_min, "ms_max", r->ms_max, "fuse", r->fuse);
}

static json_t *profile_json(const tk_bench_result *r)
{
    json_t *a = json_array();
    for (int i = 0; a && i < r->nprof; i++) {
        const cg_profile_row *p = &r->prof[i];
        if (json_array_append_new(
                a, json_pack("{s:s, s:i, s:f, s:f, s:f}", "kernel", p->what, "steps",
                             p->steps, "ms_per_iter", 1e3 * p->seconds, "share",
                             r->prof_ms_mean > 0 ? 1e3 * p->seconds / r->prof_ms_mean : 0,
                             "gflop_per_s", p->seconds > 0 ? p->flops / p->seconds / 1e9 : 0)))
            return json_decref(a), NULL;
    }
    return a;
}

json_t *tk_bench_json(const tk_bench_result *r)
{
    json_t *j = bench_json(r);
    if (j && r->prof) {
        json_t *p = profile_json(r);
        if (!p || json_object_set_new(j, "profile", p) ||
            json_object_set_new(j, "profile_ms_outside", json_real(r->prof_ms_outside)))
            return json_decref(j), NULL;
    }
    return j;
}

void tk_bench_profile_print(const tk_bench_result *r, FILE *f)
{
    fprintf(f, "%9s %6s %8s %5s  %s\n", "ms/iter", "share", "GFLOP/s", "steps", "kernel");
    for (int i = 0; i < r->nprof; i++) {
        const cg_profile_row *p = &r->prof[i];
        char gf[16] = "-";
        if (p->flops > 0 && p->seconds > 0)
            snprintf(gf, sizeof gf, "%.1f", p->flops / p->seconds / 1e9);
        fprintf(f, "%9.3f %5.1f%% %8s %5d  %s\n", 1e3 * p->seconds,
                r->prof_ms_mean > 0 ? 100 * 1e3 * p->seconds / r->prof_ms_mean : 0, gf,
                p->steps, p->what);
    }
    fprintf(f, "%9.3f %5.1f%% %8s %5s  (outside the graph's steps%s)\n", r->prof_ms_outside,
            r->prof_ms_mean > 0 ? 100 * r->prof_ms_outside / r->prof_ms_mean : 0, "-", "-",
            r->mode == TK_BENCH_TRAIN ? ": clipping, AdamW, batching" : ": inputs, outputs");
}

