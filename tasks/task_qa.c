/* task_qa.c: the extractive QA task (see task_qa.h). */
#include "task_qa.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../text/unicode.h"
#include "../train/batch.h"
#include "metrics.h"
#include "qa_data.h"

enum { OPT_MAX_SEQ, OPT_STRIDE, OPT_QUERY, OPT_ANSWER, OPT_METRIC, OPT_EVAL, OPT_HOLDOUT };

static const tk_task_option qa_options[] = {
    {"max-seq", "N", "tokens per window with [CLS], question and [SEP]s (default 384)",
     "384"},
    {"doc-stride", "N", "tokens between the starts of a context's windows (default 128)",
     "128"},
    {"max-query-length", "N",
     "question tokens kept (default 64, at most half of --max-seq)", "64"},
    {"max-answer-length", "N", "longest answer predicted, in tokens (default 30)", "30"},
    {"metric", "NAME",
     "answer normalization for EM/F1: squad, korquad, or auto (the default: korquad when "
     "the training contexts hold more Hangul syllables than ASCII letters)",
     "auto"},
    {"eval-data", "PATH", "dev data (a file as --data); excludes --holdout", ""},
    {"holdout", "K",
     "dev = every K-th article of --data, left out of training (default 0: none)", "0"},
    {NULL, NULL, NULL, NULL},
};

static const char *const qa_outputs[] = {"start_logits", "end_logits", NULL};
static const char *const qa_best_by[] = {"f1", "exact_match", NULL};

typedef struct qa_state {
    const tx_vocab *v;
    tk_qa_feat_opts fo;
    int max_answer;
    tk_qa_flavor flavor;
    int holdout;
    char *data, *eval_data; /* NULL: none */
    bc_note_fn note;
    void *note_ctx;
    tk_qa_set set[3];
    int have[3];
    tk_qa_features feat[3];
    int have_feat[3];
    int noted_test;
} qa_state;

#define note(s, ...) tk_task_note((s)->note, (s)->note_ctx, __VA_ARGS__)

static void qa_close(void *state)
{
    qa_state *s = state;
    if (!s)
        return;
    free(s->data);
    free(s->eval_data);
    for (int i = 0; i < 3; i++) {
        tk_qa_set_free(&s->set[i]);
        tk_qa_features_free(&s->feat[i]);
    }
    free(s);
}

/* Reads a split once. */
static int ensure_split(qa_state *s, tk_split sp, bc_err *e)
{
    if (s->have[sp])
        return 0;
    if (sp == TK_SPLIT_DEV && s->eval_data) {
        memset(&s->set[sp], 0, sizeof s->set[sp]);
        if (tk_qa_load(s->eval_data, &s->set[sp], s->note, s->note_ctx, e))
            return -1;
    } else if (sp == TK_SPLIT_DEV && !s->holdout) {
        return bc_errf(e, "qa: no dev split: give --eval-data FILE.json or --holdout K");
    } else if (sp == TK_SPLIT_TEST || !s->holdout) {
        if (!s->data)
            return bc_errf(e, "qa: no data file was given (--data FILE.json)");
        memset(&s->set[sp], 0, sizeof s->set[sp]);
        if (tk_qa_load(s->data, &s->set[sp], s->note, s->note_ctx, e))
            return -1;
    } else {
        /* Both halves of the split are kept: training reads the other one too. */
        if (!s->data)
            return bc_errf(e, "qa: no data file was given (--data FILE.json)");
        tk_qa_set all = {0}, rest, held;
        if (tk_qa_load(s->data, &all, s->note, s->note_ctx, e))
            return -1;
        int rc = tk_qa_split(&all, s->holdout, s->holdout - 1, &rest, &held, e);
        int articles = all.n_articles;
        tk_qa_set_free(&all);
        if (rc)
            return -1;
        if (!held.n || !rest.n) {
            tk_qa_set_free(&rest);
            tk_qa_set_free(&held);
            return bc_errf(e, "%s: --holdout %d leaves %s (the file has %d articles)",
                           s->data, s->holdout,
                           held.n ? "nothing to train on" : "no question for dev",
                           articles);
        }
        tk_split other = sp == TK_SPLIT_TRAIN ? TK_SPLIT_DEV : TK_SPLIT_TRAIN;
        s->set[sp] = sp == TK_SPLIT_TRAIN ? rest : held;
        tk_qa_set *theirs = sp == TK_SPLIT_TRAIN ? &held : &rest;
        if (!s->have[other] && !(other == TK_SPLIT_DEV && s->eval_data)) {
            s->set[other] = *theirs;
            s->have[other] = 1;
        } else {
            tk_qa_set_free(theirs);
        }
    }
    s->have[sp] = 1;
    if (s->set[sp].n == 0)
        return bc_errf(e, "%s: no questions with an answer in the %s split",
                       sp == TK_SPLIT_DEV && s->eval_data ? s->eval_data : s->data,
                       tk_split_name(sp));
    return 0;
}

static const char *split_source(const qa_state *s, tk_split sp)
{
    return sp == TK_SPLIT_DEV && s->eval_data ? s->eval_data : s->data;
}

static int ensure_features(qa_state *s, tk_split sp, bc_err *e)
{
    if (s->have_feat[sp])
        return 0;
    if (ensure_split(s, sp, e))
        return -1;
    if (tk_qa_featurize(&s->set[sp], s->v, &s->fo, &s->feat[sp], e)) {
        bc_err_prefix(e, "%s", split_source(s, sp));
        return -1;
    }
    s->have_feat[sp] = 1;
    const tk_qa_features *f = &s->feat[sp];
    note(s,
         "qa %s: %d questions of %s, %d windows of at most %d tokens (%d with the answer "
         "inside)%s",
         tk_split_name(sp), s->set[sp].n, split_source(s, sp), f->n, s->fo.max_seq_len,
         f->answers_in_window,
         f->answers_unmapped ? "; some answers cover no token and point at [CLS]" : "");
    if (f->n == 0)
        return bc_errf(e, "%s: the %s split gives no windows (empty contexts?)",
                       split_source(s, sp), tk_split_name(sp));
    return 0;
}

/* The rule of --metric auto: korquad when the contexts of set hold more Hangul
 * syllables than ASCII letters (each paragraph counted once). */
static tk_qa_flavor guess_flavor(const tk_qa_set *set)
{
    long long hangul = 0, latin = 0;
    int last = INT_MIN;
    for (int i = 0; i < set->n; i++) {
        const tk_qa_example *x = &set->ex[i];
        if (x->paragraph == last && x->paragraph >= 0)
            continue;
        last = x->paragraph;
        const unsigned char *p = (const unsigned char *)x->context;
        for (int k = 0; k < x->context_len; k++) {
            unsigned c = p[k];
            if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
                latin++;
            else if (c >= 0xE0 && c < 0xF0 && k + 2 < x->context_len) {
                unsigned cp = (c & 0x0F) << 12 | (p[k + 1] & 0x3F) << 6 | (p[k + 2] & 0x3F);
                hangul += cp >= 0xAC00 && cp <= 0xD7A3;
            }
        }
    }
    return hangul > latin ? TK_QA_KORQUAD : TK_QA_SQUAD;
}

static int qa_open(const tk_task_config *c, void **state, bc_err *e)
{
    *state = NULL;
    qa_state *s = calloc(1, sizeof *s);
    if (!s)
        return bc_errf(e, "out of memory");
    s->v = c->vocab;
    s->note = c->note;
    s->note_ctx = c->note_ctx;
    s->fo = TK_QA_FEAT_OPTS_DEFAULT;
    s->fo.tok = c->tok;
    const char *val[7];
    for (int i = 0; i < 7; i++)
        val[i] = c->opt && c->opt[i] ? c->opt[i] : qa_options[i].def;
    long long ms = 0, ans = 0, stride = 0, query = 0, hold = 0;
    if (tk_task_int_opt(val[OPT_MAX_SEQ], "max-seq", 8, 65536, &ms, e) ||
        tk_task_int_opt(val[OPT_STRIDE], "doc-stride", 1, 65536, &stride, e) ||
        tk_task_int_opt(val[OPT_QUERY], "max-query-length", 1, 65536, &query, e) ||
        tk_task_int_opt(val[OPT_ANSWER], "max-answer-length", 1, 65536, &ans, e) ||
        tk_task_int_opt(val[OPT_HOLDOUT], "holdout", 0, INT_MAX, &hold, e))
        goto fail;
    s->fo.doc_stride = (int)stride;
    s->fo.max_query_len = (int)query;
    s->holdout = (int)hold;
    if (s->holdout == 1) {
        bc_errf(e, "--holdout expects 0 (none) or K >= 2 (every K-th article to dev)");
        goto fail;
    }
    s->max_answer = (int)ans;
    int given_seq = c->opt && c->opt[OPT_MAX_SEQ];
    if (!given_seq && c->max_position > 0 && ms > c->max_position)
        ms = (int)c->max_position; /* the default never exceeds the model */
    if (c->max_position > 0 && ms > c->max_position) {
        bc_errf(e, "--max-seq %lld exceeds the model's max-position %lld", ms,
                (long long)c->max_position);
        goto fail;
    }
    s->fo.max_seq_len = (int)ms;
    if (!(c->opt && c->opt[OPT_QUERY]) && s->fo.max_query_len > ms / 2)
        s->fo.max_query_len = (int)(ms / 2); /* the default leaves half of a short row */
    if (s->fo.max_query_len + 4 > ms) {
        bc_errf(e, "--max-query-length %d leaves no room for the context in --max-seq %lld",
                s->fo.max_query_len, ms);
        goto fail;
    }
    if (*val[OPT_EVAL] && s->holdout) {
        bc_errf(e, "qa: give --eval-data or --holdout, not both");
        goto fail;
    }
    if ((c->data && !(s->data = tk_task_abs_path(c->data))) ||
        (*val[OPT_EVAL] && !(s->eval_data = tk_task_abs_path(val[OPT_EVAL])))) {
        bc_errf(e, "out of memory");
        goto fail;
    }
    const char *m = val[OPT_METRIC];
    if (!strcmp(m, "squad"))
        s->flavor = TK_QA_SQUAD;
    else if (!strcmp(m, "korquad"))
        s->flavor = TK_QA_KORQUAD;
    else if (!strcmp(m, "auto")) {
        /* Decided from the training data: a new run always has it; a stored run has
         * the decided name in options.json. */
        s->flavor = TK_QA_SQUAD;
        if (s->data) {
            if (ensure_split(s, TK_SPLIT_TRAIN, e))
                goto fail;
            s->flavor = guess_flavor(&s->set[TK_SPLIT_TRAIN]);
            note(s, "qa: --metric auto chose %s (the training contexts are %s)",
                 s->flavor == TK_QA_KORQUAD ? "korquad" : "squad",
                 s->flavor == TK_QA_KORQUAD ? "mostly Hangul" : "not mostly Hangul");
        }
    } else {
        bc_errf(e, "--metric expects squad, korquad or auto, got '%s'", m);
        goto fail;
    }
    if (!c->run_dir && s->data && ensure_split(s, TK_SPLIT_TRAIN, e))
        goto fail;
    *state = s;
    return 0;
fail:
    qa_close(s);
    return -1;
}

static void qa_heads(void *state, tk_task_heads *h)
{
    (void)state;
    memset(h, 0, sizeof *h);
    h->labels = TR_LABEL_QA;
}

static void qa_option_value(void *state, int i, char *buf, size_t len)
{
    const qa_state *s = state;
    switch (i) {
    case OPT_MAX_SEQ:
        snprintf(buf, len, "%d", s->fo.max_seq_len);
        break;
    case OPT_STRIDE:
        snprintf(buf, len, "%d", s->fo.doc_stride);
        break;
    case OPT_QUERY:
        snprintf(buf, len, "%d", s->fo.max_query_len);
        break;
    case OPT_ANSWER:
        snprintf(buf, len, "%d", s->max_answer);
        break;
    case OPT_METRIC:
        snprintf(buf, len, "%s", s->flavor == TK_QA_KORQUAD ? "korquad" : "squad");
        break;
    case OPT_EVAL:
        snprintf(buf, len, "%s", s->eval_data ? s->eval_data : "");
        break;
    case OPT_HOLDOUT:
        snprintf(buf, len, "%d", s->holdout);
        break;
    default:
        snprintf(buf, len, "%s", "");
    }
}

static int qa_data(void *state, tk_split sp, rt_tensor_list *out, bc_err *e)
{
    qa_state *s = state;
    if (ensure_features(s, sp, e))
        return -1;
    return tk_qa_batch(&s->feat[sp], NULL, s->feat[sp].n,
                       TK_QA_BATCH_LABELS | TK_QA_BATCH_PAD_LONGEST, out, e);
}

/* start_logits / end_logits of a forward output: F32 [b, W] with W >= need. */
static const rt_tensor *get_logits(const rt_tensor_list *out, const char *name, int b,
                                   int need, bc_err *e)
{
    const rt_tensor *t = rt_list_cfind(out, name);
    if (!t || t->dtype != RT_F32 || t->rank != 2 || t->shape[0] != b ||
        t->shape[1] < need) {
        char s1[64];
        bc_errf(e, "the model's %s is %s, expected F32 [%d, >= %d]", name,
                t ? rt_shape_str(t->rank, t->shape, s1, sizeof s1) : "missing", b, need);
        return NULL;
    }
    return t;
}

/* Runs forward over every feature of f (with shard, its batches only) and fills start
 * and end ([f->n, stride], stride = max-seq, zeroed by the caller) with their logits. */
static int run_features(qa_state *s, const tk_qa_features *f, int batch_size,
                        tk_forward_fn fwd, void *fctx, const tk_shard *shard, float *start,
                        float *end, bc_err *e)
{
    int stride = s->fo.max_seq_len;
    for (int k = 0, i = 0; i < f->n; k++, i += batch_size) {
        int b = f->n - i < batch_size ? f->n - i : batch_size, need = 0;
        if (!tk_shard_mine(shard, k))
            continue;
        int *idx = malloc((size_t)b * sizeof *idx);
        if (!idx)
            return bc_errf(e, "out of memory");
        for (int j = 0; j < b; j++) {
            idx[j] = i + j;
            need = f->f[i + j].n_tokens > need ? f->f[i + j].n_tokens : need;
        }
        rt_tensor_list in, out;
        rt_list_init(&in);
        rt_list_init(&out);
        int rc = tk_qa_batch(f, idx, b, TK_QA_BATCH_PAD_LONGEST, &in, e);
        free(idx);
        if (!rc)
            rc = fwd(fctx, &in, &out, e);
        const rt_tensor *ts = rc ? NULL : get_logits(&out, "start_logits", b, need, e);
        const rt_tensor *te = ts ? get_logits(&out, "end_logits", b, need, e) : NULL;
        if (te) {
            int64_t W = ts->shape[1];
            for (int j = 0; j < b; j++) {
                size_t n = (size_t)(W < stride ? W : stride) * sizeof(float);
                memcpy(start + (size_t)(i + j) * stride, (const float *)ts->data + j * W,
                       n);
                memcpy(end + (size_t)(i + j) * stride, (const float *)te->data + j * W, n);
            }
        }
        rt_list_free(&in);
        rt_list_free(&out);
        if (!te)
            return -1;
    }
    return 0;
}

static int qa_evaluate(void *state, tk_split sp, int batch_size, tk_forward_fn fwd,
                       void *fctx, const tk_shard *shard, tk_metrics *m, bc_err *e)
{
    qa_state *s = state;
    if (ensure_features(s, sp, e))
        return -1;
    if (sp == TK_SPLIT_TEST && s->holdout && !s->noted_test) {
        s->noted_test = 1;
        note(s,
             "qa: scoring every article of %s; this run held out every %d-th article of "
             "its training file for dev (--split dev scores only those)",
             s->data, s->holdout);
    }
    if (batch_size < 1)
        batch_size = 32;
    const tk_qa_set *set = &s->set[sp];
    const tk_qa_features *f = &s->feat[sp];
    size_t cells = (size_t)f->n * (size_t)s->fo.max_seq_len;
    float *start = calloc(cells, sizeof *start), *end = calloc(cells, sizeof *end);
    char **preds = calloc((size_t)set->n + 1, sizeof *preds);
    int rc = -1;
    double em = 0, f1 = 0;
    if (!start || !end || !preds) {
        bc_errf(e, "out of memory");
        goto done;
    }
    if (run_features(s, f, batch_size, fwd, fctx, shard, start, end, e) ||
        tk_shard_merge(shard, start, cells * sizeof *start, e) ||
        tk_shard_merge(shard, end, cells * sizeof *end, e) ||
        tk_qa_decode(set, f, start, end, s->fo.max_seq_len, TK_QA_N_BEST, s->max_answer,
                     preds, NULL, e) ||
        tk_qa_set_evaluate(set, (const char *const *)preds, s->flavor, &em, &f1, e)) {
        bc_err_prefix(e, "%s (%s)", split_source(s, sp), tk_split_name(sp));
        goto done;
    }
    memset(m, 0, sizeof *m);
    tk_metrics_add(m, "exact_match", em);
    tk_metrics_add(m, "f1", f1);
    m->examples = set->n;
    rc = 0;
done:
    for (int j = 0; preds && j < set->n; j++)
        free(preds[j]);
    free(preds);
    free(start);
    free(end);
    return rc;
}

/* Code points in p[0..n). */
static int code_points(const char *p, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += ((unsigned char)p[i] & 0xC0) != 0x80;
    return k;
}

/* log(sum(exp(x[0..n)))) */
static int qa_predict(void *state, const char *text, const char *pair, tk_forward_fn fwd,
                      void *fctx, json_t **out, bc_err *e)
{
    qa_state *s = state;
    *out = NULL;
    if (!text || !pair)
        return bc_errf(e, "qa answers a question about a context (predict --question Q "
                          "--context C)");
    if (!tx_valid_utf8(text, strlen(text)))
        return bc_errf(e, "the question is not valid UTF-8");
    if (!tx_valid_utf8(pair, strlen(pair)))
        return bc_errf(e, "the context is not valid UTF-8");
    tk_qa_set set = {0};
    tk_qa_features f;
    memset(&f, 0, sizeof f);
    char *pred = NULL;
    float *start = NULL, *end = NULL;
    int rc = -1;
    if (tk_qa_set_add(&set, "0", text, pair, e) ||
        tk_qa_featurize(&set, s->v, &s->fo, &f, e))
        goto done;
    size_t cells = (size_t)(f.n ? f.n : 1) * (size_t)s->fo.max_seq_len;
    start = calloc(cells, sizeof *start);
    end = calloc(cells, sizeof *end);
    if (!start || !end) {
        bc_errf(e, "out of memory");
        goto done;
    }
    tk_qa_span sp;
    memset(&sp, 0, sizeof sp);
    if (run_features(s, &f, 16, fwd, fctx, NULL, start, end, e) ||
        tk_qa_decode(&set, &f, start, end, s->fo.max_seq_len, TK_QA_N_BEST, s->max_answer,
                     &pred, &sp, e))
        goto done;
    double p = 0;
    int cs = 0, ce = 0;
    if (sp.found) {
        int i = f.first[0] + sp.window, n = f.f[i].n_tokens;
        const float *ls = start + (size_t)i * s->fo.max_seq_len;
        const float *le = end + (size_t)i * s->fo.max_seq_len;
        /* The softmax runs over all the window's positions, as the loss does. */
        p = exp((double)ls[sp.start_tok] - tk_log_sum_exp(ls, n) + (double)le[sp.end_tok] -
                tk_log_sum_exp(le, n));
        cs = code_points(pair, sp.start);
        ce = cs + code_points(pair + sp.start, sp.end - sp.start);
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:i, s:i, s:f, s:f}", "question", text,
                          "context", pair, "answer", pred, "found", sp.found, "start", cs,
                          "end", ce, "score", sp.found ? sp.score : 0.0, "probability", p);
    if (!j) {
        bc_errf(e, "out of memory (or the text is not valid UTF-8)");
        goto done;
    }
    if (f.n > 1)
        note(s, "qa: the context was read in %d windows of --max-seq %d", f.n,
             s->fo.max_seq_len);
    *out = j;
    rc = 0;
done:
    free(pred);
    free(start);
    free(end);
    tk_qa_features_free(&f);
    tk_qa_set_free(&set);
    return rc;
}

static int qa_print(void *state, const json_t *p, FILE *f)
{
    (void)state;
    if (!json_is_true(json_object_get(p, "found")))
        fprintf(f, "answer: (none)\n");
    else
        fprintf(f, "answer: %s (score %.2f, p %.2f)\n",
                json_string_value(json_object_get(p, "answer")),
                json_real_value(json_object_get(p, "score")),
                json_real_value(json_object_get(p, "probability")));
    return ferror(f) ? -1 : 0;
}

const tk_task_ops tk_task_qa = {
    .name = "qa",
    .about = "extractive question answering (SQuAD v1.1 JSON: SQuAD, KorQuAD, XQuAD)",
    .options = qa_options,
    .best_by = qa_best_by,
    .eval_outputs = qa_outputs,
    .open = qa_open,
    .close = qa_close,
    .heads = qa_heads,
    .option_value = qa_option_value,
    .save = NULL, /* no label lists: everything lives in options.json */
    .data = qa_data,
    .augment = NULL,
    .evaluate = qa_evaluate,
    .predict = qa_predict,
    .print = qa_print,
};
