/* qa_data.c: SQuAD v1.1 JSON reading and run_squad's feature conversion (see
 * qa_data.h).
 *
 * Where this differs from run_squad.py, on purpose: the context is tokenized whole by
 * tx_tokenize (the basic tokenizer splits on whitespace first, so the tokens are those
 * of run_squad's per-word tokenizing) and every token keeps its byte span, so the
 * answer's tokens are simply those overlapping its bytes (no _improve_answer_span or
 * get_final_text needed) and a predicted span maps back to the original bytes. */
#include "qa_data.h"
#include "../support/file.h"
#include "../text/unicode.h"

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ----------------------------------------------------------------------- */

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static void example_free(tk_qa_example *x)
{
    free(x->id);
    free(x->question);
    free(x->context);
    for (int i = 0; i < x->n_answers; i++)
        free(x->answers[i].text);
    free(x->answers);
    memset(x, 0, sizeof *x);
}

/* Appends x (taking ownership) to s. */
static int set_push(tk_qa_set *s, tk_qa_example *x)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        tk_qa_example *p = realloc(s->ex, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        s->ex = p;
        s->cap = cap;
    }
    s->ex[s->n++] = *x;
    memset(x, 0, sizeof *x);
    return 0;
}

static int example_copy(tk_qa_example *d, const tk_qa_example *x)
{
    memset(d, 0, sizeof *d);
    d->id = strdup(x->id);
    d->question = strdup(x->question);
    d->context = dupn(x->context, (size_t)x->context_len);
    d->context_len = x->context_len;
    d->article = x->article;
    d->paragraph = x->paragraph;
    if (x->n_answers) {
        d->answers = calloc((size_t)x->n_answers, sizeof *d->answers);
        if (!d->answers)
            goto fail;
        for (int i = 0; i < x->n_answers; i++) {
            d->answers[i] = x->answers[i];
            d->answers[i].text = strdup(x->answers[i].text);
            d->n_answers = i + 1;
            if (!d->answers[i].text)
                goto fail;
        }
    }
    if (d->id && d->question && d->context)
        return 0;
fail:
    example_free(d);
    return -1;
}

void tk_qa_set_free(tk_qa_set *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        example_free(&s->ex[i]);
    free(s->ex);
    memset(s, 0, sizeof *s);
}

/* ---- reading ----------------------------------------------------------------------- */

/* Where we are in the file, for messages: "data[3].paragraphs[0].qas[2]". */
typedef struct jpath {
    const char *file;
    int d, p, q, a; /* -1: not that deep */
} jpath;

static const char *where(const jpath *w, char *buf, size_t len)
{
    int k = snprintf(buf, len, "data[%d]", w->d);
    if (w->p >= 0 && k >= 0 && (size_t)k < len)
        k += snprintf(buf + k, len - (size_t)k, ".paragraphs[%d]", w->p);
    if (w->q >= 0 && k >= 0 && (size_t)k < len)
        k += snprintf(buf + k, len - (size_t)k, ".qas[%d]", w->q);
    if (w->a >= 0 && k >= 0 && (size_t)k < len)
        snprintf(buf + k, len - (size_t)k, ".answers[%d]", w->a);
    return buf;
}

static int bad(bc_err *e, const jpath *w, const char *member, const char *what)
{
    char b[128];
    return bc_errf(e, "%s: %s%s%s: %s", w->file, where(w, b, sizeof b), member ? "." : "",
                   member ? member : "", what);
}

/* obj[key] as an array, object or string; NULL after an error. */
static json_t *get(json_t *obj, const char *key, json_type t, const jpath *w, bc_err *e)
{
    json_t *v = json_object_get(obj, key);
    static const char *names[] = {[JSON_OBJECT] = "an object",
                                  [JSON_ARRAY] = "an array",
                                  [JSON_STRING] = "a string",
                                  [JSON_INTEGER] = "an integer"};
    if (!v) {
        bad(e, w, key, "missing");
        return NULL;
    }
    if (json_typeof(v) != t) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected %s", names[t]);
        bad(e, w, key, msg);
        return NULL;
    }
    return v;
}

/* The byte offset of code point `chars` in s[0..n), or -1 past the end. */
static long byte_offset(const char *s, size_t n, long long chars)
{
    long long c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80)
            continue;
        if (c == chars)
            return (long)i;
        c++;
    }
    return c == chars ? (long)n : -1;
}

static void notef(bc_note_fn note, void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void notef(bc_note_fn note, void *ctx, const char *fmt, ...)
{
    if (!note)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note(ctx, msg);
}

/* Reads one qas[] entry of a paragraph into *x (answers validated against ctx). */
static int read_question(json_t *qa, const char *ctx, size_t nctx, jpath *w, tk_qa_set *s,
                         tk_qa_example *x, bc_note_fn note, void *note_ctx, bc_err *e)
{
    if (!json_is_object(qa))
        return bad(e, w, NULL, "expected an object");
    json_t *id = json_object_get(qa, "id");
    char idbuf[32];
    const char *ids;
    if (id && json_is_integer(id)) { /* some SQuAD-like files number their questions */
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(id));
        ids = idbuf;
    } else {
        if (!(id = get(qa, "id", JSON_STRING, w, e)))
            return -1;
        ids = json_string_value(id);
    }
    json_t *q = get(qa, "question", JSON_STRING, w, e);
    json_t *ans = q ? get(qa, "answers", JSON_ARRAY, w, e) : NULL;
    if (!ans)
        return -1;
    size_t na = json_array_size(ans);
    x->answers = na ? calloc(na, sizeof *x->answers) : NULL;
    x->id = strdup(ids);
    x->question = strdup(json_string_value(q));
    if ((na && !x->answers) || !x->id || !x->question)
        return bc_errf(e, "%s: out of memory", w->file);
    char b[128];
    for (size_t ai = 0; ai < na; ai++) {
        w->a = (int)ai;
        json_t *a = json_array_get(ans, ai);
        if (!json_is_object(a))
            return bad(e, w, NULL, "expected an object");
        json_t *t = get(a, "text", JSON_STRING, w, e);
        json_t *st = t ? get(a, "answer_start", JSON_INTEGER, w, e) : NULL;
        if (!st)
            return -1;
        json_int_t cs = json_integer_value(st);
        if (cs < 0 || cs > INT_MAX)
            return bad(e, w, "answer_start", "out of range");
        const char *text = json_string_value(t);
        size_t nt = json_string_length(t);
        long bs = byte_offset(ctx, nctx, cs);
        const char *why = NULL;
        if (nt == 0)
            why = "empty answer text";
        else if (bs < 0)
            why = "answer_start past the end of the context";
        else if ((size_t)bs + nt > nctx || memcmp(ctx + bs, text, nt) != 0)
            why = "the text is not at answer_start in the context";
        if (why) {
            notef(note, note_ctx, "%s: %s (id %s): %s; answer skipped", w->file,
                  where(w, b, sizeof b), x->id, why);
            s->skipped_answers++;
            continue;
        }
        tk_qa_answer *r = &x->answers[x->n_answers];
        r->text = dupn(text, nt);
        if (!r->text)
            return bc_errf(e, "%s: out of memory", w->file);
        r->start = (int)bs;
        r->end = (int)(bs + (long)nt);
        r->char_start = (int)cs;
        x->n_answers++;
    }
    w->a = -1;
    return 0;
}

static int read_root(json_t *root, const char *name, tk_qa_set *tmp, bc_note_fn note,
                     void *note_ctx, bc_err *e)
{
    jpath w = {name, -1, -1, -1, -1};
    if (!json_is_object(root))
        return bc_errf(e, "%s: expected a JSON object with a \"data\" array", name);
    json_t *data = json_object_get(root, "data");
    if (!data || !json_is_array(data))
        return bc_errf(e, "%s: %s \"data\" array", name,
                       data ? "expected a" : "missing the");
    char b[128];
    int para = 0;
    for (size_t di = 0; di < json_array_size(data); di++, tmp->n_articles++) {
        w = (jpath){name, (int)di, -1, -1, -1};
        json_t *art = json_array_get(data, di);
        if (!json_is_object(art))
            return bad(e, &w, NULL, "expected an object");
        json_t *paras = get(art, "paragraphs", JSON_ARRAY, &w, e);
        if (!paras)
            return -1;
        for (size_t pi = 0; pi < json_array_size(paras); pi++, para++) {
            w.p = (int)pi;
            w.q = -1;
            json_t *p = json_array_get(paras, pi);
            if (!json_is_object(p))
                return bad(e, &w, NULL, "expected an object");
            json_t *c = get(p, "context", JSON_STRING, &w, e);
            json_t *qas = c ? get(p, "qas", JSON_ARRAY, &w, e) : NULL;
            if (!qas)
                return -1;
            const char *ctx = json_string_value(c);
            size_t nctx = json_string_length(c);
            if (nctx > INT_MAX)
                return bad(e, &w, "context", "longer than 2^31-1 bytes");
            for (size_t qi = 0; qi < json_array_size(qas); qi++) {
                w.q = (int)qi;
                tk_qa_example x = {0};
                x.article = (int)di;
                x.paragraph = para;
                if (read_question(json_array_get(qas, qi), ctx, nctx, &w, tmp, &x, note,
                                  note_ctx, e) < 0) {
                    example_free(&x);
                    return -1;
                }
                if (x.n_answers == 0) {
                    notef(note, note_ctx,
                          "%s: %s (id %s): no valid answer; question skipped", name,
                          where(&w, b, sizeof b), x.id);
                    tmp->skipped_questions++;
                    example_free(&x);
                    continue;
                }
                x.context = dupn(ctx, nctx);
                x.context_len = (int)nctx;
                if (!x.context || set_push(tmp, &x) < 0) {
                    example_free(&x);
                    return bc_errf(e, "%s: out of memory", name);
                }
            }
        }
    }
    return 0;
}

/* Moves tmp's examples and counts onto the end of out. */
static int set_append(tk_qa_set *out, tk_qa_set *tmp, bc_err *e)
{
    if (out->n + tmp->n > out->cap) {
        int cap = out->n + tmp->n;
        tk_qa_example *p = realloc(out->ex, (size_t)(cap ? cap : 1) * sizeof *p);
        if (!p)
            return bc_errf(e, "out of memory");
        out->ex = p;
        out->cap = cap;
    }
    if (tmp->n)
        memcpy(out->ex + out->n, tmp->ex, (size_t)tmp->n * sizeof *tmp->ex);
    out->n += tmp->n;
    out->n_articles += tmp->n_articles;
    out->skipped_answers += tmp->skipped_answers;
    out->skipped_questions += tmp->skipped_questions;
    free(tmp->ex);
    memset(tmp, 0, sizeof *tmp);
    return 0;
}

static int parse_json(json_t *root, const char *name, tk_qa_set *out, bc_note_fn note,
                      void *note_ctx, bc_err *e)
{
    tk_qa_set tmp = {0};
    int rc = read_root(root, name, &tmp, note, note_ctx, e);
    json_decref(root);
    if (rc == 0)
        rc = set_append(out, &tmp, e);
    tk_qa_set_free(&tmp);
    return rc;
}

int tk_qa_load(const char *path, tk_qa_set *out, bc_note_fn note, void *note_ctx, bc_err *e)
{
    size_t len;
    char *text = bc_read_file(path, &len, e); /* a regular file, checked before reading */
    if (!text)
        return -1;
    int rc = tk_qa_parse(text, len, path, out, note, note_ctx, e);
    free(text);
    return rc;
}

int tk_qa_parse(const char *json, size_t len, const char *name, tk_qa_set *out,
                bc_note_fn note, void *note_ctx, bc_err *e)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root)
        return bc_errf(e, "%s:%d:%d: invalid JSON: %s", name, je.line, je.column, je.text);
    return parse_json(root, name, out, note, note_ctx, e);
}

int tk_qa_set_add(tk_qa_set *s, const char *id, const char *question, const char *context,
                  bc_err *e)
{
    if (!s || !id || !question || !context)
        return bc_errf(e, "QA question: missing id, question or context");
    size_t nc = strlen(context);
    if (nc > INT_MAX)
        return bc_errf(e, "QA question %s: context longer than 2^31-1 bytes", id);
    if (!tx_valid_utf8(id, strlen(id)) || !tx_valid_utf8(question, strlen(question)) ||
        !tx_valid_utf8(context, nc))
        return bc_errf(e, "QA question %s: invalid UTF-8", id);
    tk_qa_example x = {0};
    x.id = strdup(id);
    x.question = strdup(question);
    x.context = strdup(context);
    x.context_len = (int)nc;
    x.article = x.paragraph = -1;
    if (!x.id || !x.question || !x.context || set_push(s, &x) < 0) {
        example_free(&x);
        return bc_errf(e, "QA question %s: out of memory", id);
    }
    return 0;
}

int tk_qa_split(const tk_qa_set *s, int k, int r, tk_qa_set *rest, tk_qa_set *held,
                bc_err *e)
{
    if (k < 2 || r < 0 || r >= k)
        return bc_errf(e, "QA split: every %d-th article from %d: need k >= 2, 0 <= r < k",
                       k, r);
    memset(rest, 0, sizeof *rest);
    memset(held, 0, sizeof *held);
    for (int i = 0; i < s->n; i++) {
        tk_qa_example x;
        tk_qa_set *d = s->ex[i].article >= 0 && s->ex[i].article % k == r ? held : rest;
        if (example_copy(&x, &s->ex[i]) < 0 || set_push(d, &x) < 0) {
            example_free(&x);
            tk_qa_set_free(rest);
            tk_qa_set_free(held);
            return bc_errf(e, "QA split: out of memory");
        }
    }
    rest->n_articles = held->n_articles = s->n_articles;
    return 0;
}

int tk_qa_set_evaluate(const tk_qa_set *s, const char *const *preds, tk_qa_flavor f,
                       double *em, double *f1, bc_err *e)
{
    int n = s->n;
    const char **golds = NULL;
    const char *const **gp = malloc((size_t)(n ? n : 1) * sizeof *gp);
    int *ng = malloc((size_t)(n ? n : 1) * sizeof *ng);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)s->ex[i].n_answers;
    golds = malloc((total ? total : 1) * sizeof *golds);
    int rc;
    if (!gp || !ng || !golds) {
        rc = bc_errf(e, "QA evaluate: out of memory");
        goto done;
    }
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const tk_qa_example *x = &s->ex[i];
        if (x->n_answers < 1) {
            rc =
                bc_errf(e, "QA evaluate: question %d (id %s) has no gold answer", i, x->id);
            goto done;
        }
        gp[i] = golds + k;
        ng[i] = x->n_answers;
        for (int j = 0; j < x->n_answers; j++)
            golds[k++] = x->answers[j].text;
    }
    rc = tk_qa_evaluate(preds, gp, ng, n, f, em, f1, e);
done:
    free(golds);
    free(gp);
    free(ng);
    return rc;
}

/* ---- features ---------------------------------------------------------------------- */

void tk_qa_features_free(tk_qa_features *f)
{
    if (!f)
        return;
    if (f->query)
        for (int i = 0; i < f->n_examples; i++)
            tx_token_list_free(&f->query[i]);
    if (f->docs)
        for (int i = 0; i < f->n_docs; i++)
            tx_token_list_free(&f->docs[i]);
    free(f->query);
    free(f->docs);
    free(f->doc_of);
    free(f->first);
    free(f->f);
    memset(f, 0, sizeof *f);
}

static int push_feature(tk_qa_features *f, int *cap, const tk_qa_feature *x)
{
    if (f->n == *cap) {
        int c = *cap ? 2 * *cap : 256;
        tk_qa_feature *p = realloc(f->f, (size_t)c * sizeof *p);
        if (!p)
            return -1;
        f->f = p;
        *cap = c;
    }
    f->f[f->n++] = *x;
    return 0;
}

/* The answer's first and last tokens in doc (those overlapping bytes [bs, be)), or -1
 * when no token overlaps. */
static void answer_tokens(const tx_token_list *doc, int bs, int be, int *ts, int *te)
{
    *ts = *te = -1;
    int a = 0;
    while (a < doc->n && doc->t[a].end <= bs)
        a++;
    if (a == doc->n || doc->t[a].start >= be)
        return;
    int b = a;
    while (b + 1 < doc->n && doc->t[b + 1].start < be)
        b++;
    *ts = a;
    *te = b;
}

int tk_qa_featurize(const tk_qa_set *s, const tx_vocab *v, const tk_qa_feat_opts *o,
                    tk_qa_features *out, bc_err *e)
{
    memset(out, 0, sizeof *out);
    if (o->max_query_len < 0 || o->doc_stride < 1 || o->max_seq_len < o->max_query_len + 4)
        return bc_errf(e,
                       "QA features: max_seq_len %d, doc_stride %d, max_query_len %d: need "
                       "max_query_len >= 0, doc_stride >= 1 and max_seq_len >= "
                       "max_query_len + 4",
                       o->max_seq_len, o->doc_stride, o->max_query_len);
    int cls = tx_vocab_special(v, TX_CLS), sep = tx_vocab_special(v, TX_SEP);
    if (cls < 0 || sep < 0)
        return bc_errf(e, "QA features: the vocabulary has no %s token",
                       cls < 0 ? "[CLS]" : "[SEP]");
    int pad = tx_vocab_special(v, TX_PAD);
    tk_qa_features f = {0};
    f.opts = *o;
    f.cls_id = cls;
    f.sep_id = sep;
    f.pad_id = pad < 0 ? 0 : pad;
    f.n_examples = s->n;
    size_t ne = (size_t)(s->n ? s->n : 1);
    f.first = calloc(ne + 1, sizeof *f.first);
    f.query = calloc(ne, sizeof *f.query);
    f.doc_of = calloc(ne, sizeof *f.doc_of);
    f.docs = calloc(ne, sizeof *f.docs);
    int cap = 0;
    if (!f.first || !f.query || !f.doc_of || !f.docs) {
        tk_qa_features_free(&f);
        return bc_errf(e, "QA features: out of memory");
    }
    int bad_i = 0;
    for (int i = 0; i < s->n; i++) {
        const tk_qa_example *x = &s->ex[i];
        bad_i = i;
        f.first[i] = f.n;
        tx_token_list *q = &f.query[i];
        if (tx_tokenize(v, &o->tok, x->question, strlen(x->question), q, e) < 0)
            goto fail_tok;
        if (q->n > o->max_query_len)
            q->n = o->max_query_len;
        /* Questions on one paragraph follow each other: tokenize its context once. */
        const tk_qa_example *prev = i ? &s->ex[i - 1] : NULL;
        if (prev && prev->context_len == x->context_len &&
            memcmp(prev->context, x->context, (size_t)x->context_len) == 0) {
            f.doc_of[i] = f.doc_of[i - 1];
        } else {
            f.doc_of[i] = f.n_docs++;
            if (tx_tokenize(v, &o->tok, x->context, (size_t)x->context_len,
                            &f.docs[f.doc_of[i]], e) < 0)
                goto fail_tok;
        }
        const tx_token_list *doc = &f.docs[f.doc_of[i]];
        int ts = -1, te = -1;
        if (x->n_answers > 0) {
            answer_tokens(doc, x->answers[0].start, x->answers[0].end, &ts, &te);
            if (ts < 0)
                f.answers_unmapped++;
        }
        /* run_squad's doc_spans. */
        int max_doc = o->max_seq_len - q->n - 3;
        for (int start = 0, w = 0; start < doc->n; w++) {
            int len = doc->n - start < max_doc ? doc->n - start : max_doc;
            tk_qa_feature ft = {i, w, q->n, start, len, q->n + len + 3, 0, 0};
            if (ts >= 0 && ts >= start && te <= start + len - 1) {
                ft.start_position = ts - start + q->n + 2;
                ft.end_position = te - start + q->n + 2;
                f.answers_in_window++;
            }
            if (push_feature(&f, &cap, &ft) < 0) {
                tk_qa_features_free(&f);
                return bc_errf(e, "QA features: out of memory");
            }
            if (start + len == doc->n)
                break;
            start += len < o->doc_stride ? len : o->doc_stride;
        }
    }
    f.first[s->n] = f.n;
    *out = f;
    return 0;
fail_tok:
    bc_err_prefix(e, "QA features: question %d (id %s)", bad_i, s->ex[bad_i].id);
    tk_qa_features_free(&f);
    return -1;
}

int tk_qa_batch(const tk_qa_features *f, const int *idx, int count, unsigned flags,
                rt_tensor_list *out, bc_err *e)
{
    if (count < 1)
        return bc_errf(e, "QA batch: %d features", count);
    int S = 0;
    for (int b = 0; b < count; b++) {
        int i = idx ? idx[b] : b;
        if (i < 0 || i >= f->n)
            return bc_errf(e, "QA batch: feature %d out of range (%d features)", i, f->n);
        if (f->f[i].n_tokens > S)
            S = f->f[i].n_tokens;
    }
    if (!(flags & TK_QA_BATCH_PAD_LONGEST))
        S = f->opts.max_seq_len;
    int64_t shape[2] = {count, S};
    rt_tensor_list tmp;
    rt_list_init(&tmp);
    rt_tensor *ti = rt_list_add(&tmp, "input_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tt = rt_list_add(&tmp, "token_type_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tm = rt_list_add(&tmp, "attention_mask", RT_I64, 2, shape, NULL);
    rt_tensor *ts = NULL, *te = NULL;
    if (flags & TK_QA_BATCH_LABELS) {
        ts = rt_list_add(&tmp, "start_positions", RT_I64, 1, shape, NULL);
        te = rt_list_add(&tmp, "end_positions", RT_I64, 1, shape, NULL);
    }
    if (!ti || !tt || !tm || ((flags & TK_QA_BATCH_LABELS) && (!ts || !te))) {
        rt_list_free(&tmp);
        return bc_errf(e, "QA batch: out of memory");
    }
    for (int b = 0; b < count; b++) {
        const tk_qa_feature *x = &f->f[idx ? idx[b] : b];
        const tx_token_list *q = &f->query[x->example];
        const tx_token_list *d = &f->docs[f->doc_of[x->example]];
        int64_t *ids = (int64_t *)ti->data + (size_t)b * S;  /* [S] */
        int64_t *typ = (int64_t *)tt->data + (size_t)b * S;  /* [S] */
        int64_t *mask = (int64_t *)tm->data + (size_t)b * S; /* [S] */
        int k = 0;
        ids[k++] = f->cls_id;
        for (int j = 0; j < x->query_len; j++)
            ids[k++] = q->t[j].id;
        ids[k++] = f->sep_id;
        int doc_at = k;
        for (int j = 0; j < x->doc_len; j++)
            ids[k++] = d->t[x->doc_start + j].id;
        ids[k++] = f->sep_id;
        for (int j = 0; j < k; j++) {
            typ[j] = j >= doc_at;
            mask[j] = 1;
        }
        for (int j = k; j < S; j++)
            ids[j] = f->pad_id;
        if (ts) {
            ((int64_t *)ts->data)[b] = x->start_position;
            ((int64_t *)te->data)[b] = x->end_position;
        }
    }
    if (rt_list_append(out, &tmp) < 0) {
        rt_list_free(&tmp);
        return bc_errf(e, "QA batch: out of memory");
    }
    rt_list_free(&tmp);
    return 0;
}

/* run_squad's _check_is_max_context: whether window i is the best of its example's
 * windows for document token pos (the score in double, as Python computes it). */
static int is_max_context(const tk_qa_features *f, int i, int pos)
{
    int ex = f->f[i].example, best = -1;
    double best_score = 0;
    for (int w = f->first[ex]; w < f->first[ex + 1]; w++) {
        const tk_qa_feature *x = &f->f[w];
        int end = x->doc_start + x->doc_len - 1;
        if (pos < x->doc_start || pos > end)
            continue;
        int left = pos - x->doc_start, right = end - pos;
        double score = (double)(left < right ? left : right) + 0.01 * (double)x->doc_len;
        if (best < 0 || score > best_score) {
            best = w;
            best_score = score;
        }
    }
    return best == i;
}

void tk_qa_feature_spans(const tk_qa_features *f, int i, int *tok_start, int *tok_end,
                         unsigned char *max_context)
{
    const tk_qa_feature *x = &f->f[i];
    const tx_token_list *d = &f->docs[f->doc_of[x->example]];
    int doc_at = x->query_len + 2;
    for (int j = 0; j < x->n_tokens; j++) {
        int k = j - doc_at;
        if (k < 0 || k >= x->doc_len) {
            tok_start[j] = tok_end[j] = -1;
            max_context[j] = 0;
            continue;
        }
        tok_start[j] = d->t[x->doc_start + k].start;
        tok_end[j] = d->t[x->doc_start + k].end;
        max_context[j] = (unsigned char)is_max_context(f, i, x->doc_start + k);
    }
}

int tk_qa_decode(const tk_qa_set *s, const tk_qa_features *f, const float *start_logits,
                 const float *end_logits, int stride, int n_best, int max_answer_length,
                 char **preds, tk_qa_span *spans, bc_err *e)
{
    if (s->n != f->n_examples)
        return bc_errf(e, "QA decode: %d examples but features for %d", s->n,
                       f->n_examples);
    for (int i = 0; i < f->n; i++)
        if (f->f[i].n_tokens > stride)
            return bc_errf(e,
                           "QA decode: feature %d has %d tokens, more than the stride %d",
                           i, f->f[i].n_tokens, stride);
    for (int j = 0; j < s->n; j++)
        preds[j] = NULL;
    int most = 0;
    for (int j = 0; j < s->n; j++)
        if (f->first[j + 1] - f->first[j] > most)
            most = f->first[j + 1] - f->first[j];
    size_t cells = (size_t)(most ? most : 1) * (size_t)stride;
    int *ts = malloc(cells * sizeof *ts), *te = malloc(cells * sizeof *te);
    unsigned char *mc = malloc(cells);
    tk_qa_window *w = malloc((size_t)(most ? most : 1) * sizeof *w);
    int rc = 0;
    if (!ts || !te || !mc || !w) {
        rc = bc_errf(e, "QA decode: out of memory");
        goto done;
    }
    for (int j = 0; j < s->n && rc == 0; j++) {
        const tk_qa_example *x = &s->ex[j];
        int nw = f->first[j + 1] - f->first[j];
        for (int k = 0; k < nw; k++) {
            int i = f->first[j] + k;
            size_t at = (size_t)k * (size_t)stride;
            tk_qa_feature_spans(f, i, ts + at, te + at, mc + at);
            w[k] = (tk_qa_window){f->f[i].n_tokens,
                                  start_logits + (size_t)i * stride,
                                  end_logits + (size_t)i * stride,
                                  ts + at,
                                  te + at,
                                  mc + at};
        }
        tk_qa_span sp;
        if (tk_qa_best_span(w, nw, n_best, max_answer_length, x->context_len, &sp, e) < 0) {
            bc_err_prefix(e, "question %d (id %s)", j, x->id);
            rc = -1;
            break;
        }
        preds[j] = sp.found ? dupn(x->context + sp.start, (size_t)(sp.end - sp.start))
                            : dupn("", 0);
        if (!preds[j])
            rc = bc_errf(e, "QA decode: out of memory");
        if (spans)
            spans[j] = sp;
    }
done:
    if (rc < 0)
        for (int j = 0; j < s->n; j++) {
            free(preds[j]);
            preds[j] = NULL;
        }
    free(ts);
    free(te);
    free(mc);
    free(w);
    return rc;
}
