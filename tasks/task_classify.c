/* task_classify.c: sentence and sentence-pair classification (see task_classify.h). */
#include "task_classify.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../support/file.h"
#include "../text/unicode.h"
#include "../train/batch.h"
#include "metrics.h"
#include "task_intent_slot.h"

/* ---- records: a file cut into fields ------------------------------------------------- */

typedef struct record {
    char **f; /* [n] fields, each malloc'd */
    int n;
    int line; /* where the record starts */
} record;

typedef struct records {
    record *r;
    int n, cap;
} records;

static void records_free(records *rs)
{
    for (int i = 0; i < rs->n; i++) {
        for (int k = 0; k < rs->r[i].n; k++)
            free(rs->r[i].f[k]);
        free(rs->r[i].f);
    }
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

static record *record_new(records *rs, int line)
{
    if (rs->n == rs->cap) {
        int cap = rs->cap ? 2 * rs->cap : 1024;
        record *nr = realloc(rs->r, (size_t)cap * sizeof *nr);
        if (!nr)
            return NULL;
        rs->r = nr;
        rs->cap = cap;
    }
    record *r = &rs->r[rs->n++];
    *r = (record){NULL, 0, line};
    return r;
}

static int field_add(record *r, const char *s, size_t len)
{
    char **nf = realloc(r->f, ((size_t)r->n + 1) * sizeof *nf);
    if (!nf)
        return -1;
    r->f = nf;
    if (!(r->f[r->n] = malloc(len + 1)))
        return -1;
    memcpy(r->f[r->n], s, len);
    r->f[r->n++][len] = 0;
    return 0;
}

/* The whole file, NUL-terminated, without a UTF-8 byte order mark. */
static char *read_all(const char *path, size_t *len, bc_err *e)
{
    char *buf = bc_read_file(path, len, e);
    if (buf && *len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) {
        memmove(buf, buf + 3, *len - 2);
        *len -= 3;
    }
    return buf;
}

/* Lines cut at tabs (TSV, and the lines of JSON Lines as one field): CR before LF
 * dropped, blank lines skipped. */
static int split_tsv(const char *path, const char *s, size_t len, int tabs, records *rs,
                     bc_err *e)
{
    int line = 0;
    for (size_t at = 0; at < len;) {
        size_t end = at;
        while (end < len && s[end] != '\n')
            end++;
        size_t stop = end > at && s[end - 1] == '\r' ? end - 1 : end;
        line++;
        if (!tx_is_blank_line(s + at, stop - at)) {
            record *r = record_new(rs, line);
            if (!r)
                return bc_errf(e, "%s: out of memory", path);
            for (size_t f = at;;) {
                size_t g = f;
                while (tabs && g < stop && s[g] != '\t')
                    g++;
                if (!tabs)
                    g = stop;
                if (field_add(r, s + f, g - f))
                    return bc_errf(e, "%s: out of memory", path);
                if (g >= stop)
                    break;
                f = g + 1;
            }
        }
        at = end + 1;
    }
    return 0;
}

/* RFC 4180: fields separated by commas; a field in double quotes may hold commas, line
 * breaks and "" for a quote. Records end at LF or CRLF outside quotes. */
static int split_csv(const char *path, const char *s, size_t len, records *rs, bc_err *e)
{
    char *buf = malloc(len + 1); /* the field being read */
    if (!buf)
        return bc_errf(e, "%s: out of memory", path);
    int line = 1, rc = 0;
    size_t at = 0;
    while (at < len && !rc) {
        size_t end = at; /* a blank line is no record */
        while (end < len && (s[end] == ' ' || s[end] == '\t' || s[end] == '\r'))
            end++;
        if (end == len || s[end] == '\n') {
            at = end + 1;
            line++;
            continue;
        }
        record *r = record_new(rs, line);
        for (int done = 0; r && !done && !rc;) {
            size_t n = 0;
            if (at < len && s[at] == '"') {
                int start = line;
                for (at++;; at++) {
                    if (at >= len) {
                        rc = bc_errf(e, "%s:%d: a quoted field is not closed", path, start);
                        break;
                    }
                    if (s[at] == '"' && at + 1 < len && s[at + 1] == '"') {
                        buf[n++] = '"';
                        at++;
                    } else if (s[at] == '"') {
                        at++;
                        break;
                    } else {
                        line += s[at] == '\n';
                        buf[n++] = s[at];
                    }
                }
                if (!rc && at < len && s[at] != ',' && s[at] != '\n' && s[at] != '\r')
                    rc = bc_errf(e, "%s:%d: text after a closing quote", path, line);
            } else {
                while (at < len && s[at] != ',' && s[at] != '\n')
                    buf[n++] = s[at++];
                if (n && buf[n - 1] == '\r' && (at >= len || s[at] == '\n'))
                    n--;
            }
            if (!rc && field_add(r, buf, n))
                rc = bc_errf(e, "%s: out of memory", path);
            if (at < len && s[at] == '\r')
                at++;
            if (at >= len || s[at] == '\n') {
                done = 1;
                line++;
            }
            at++;
        }
        if (!r)
            rc = bc_errf(e, "%s: out of memory", path);
    }
    free(buf);
    return rc;
}

/* ---- examples from records ------------------------------------------------------------
 */

void tk_cls_data_free(tk_cls_data *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->x[i].label);
        free(d->x[i].a);
        free(d->x[i].b);
    }
    free(d->x);
    memset(d, 0, sizeof *d);
}

/* Takes ownership of label, a and b (b may be NULL); checks them. */
static int example_add(tk_cls_data *d, const char *path, int line, char *label, char *a,
                       char *b, bc_err *e)
{
    tk_cls_example x = {label, a, b, line};
    const char *bad = !label || !a ? "out of memory"
                      : !*label    ? "empty label"
                      : !*a        ? "empty text"
                      : b && !*b   ? "empty second text"
                                   : NULL;
    if (!bad && (!tx_valid_utf8(label, strlen(label)) || !tx_valid_utf8(a, strlen(a)) ||
                 (b && !tx_valid_utf8(b, strlen(b)))))
        bad = "invalid UTF-8";
    if (!bad && !(d->n & (d->n - 1))) { /* grow at powers of two */
        tk_cls_example *nx = realloc(d->x, (size_t)(d->n ? 2 * d->n : 1) * sizeof *nx);
        if (nx)
            d->x = nx;
        else
            bad = "out of memory";
    }
    if (bad) {
        free(label);
        free(a);
        free(b);
        return bc_errf(e, "%s:%d: %s", path, line, bad);
    }
    d->x[d->n++] = x;
    return 0;
}

static const char *const text_a_names[] = {"text", "sentence", "sentence1", "text_a", NULL};
static const char *const text_b_names[] = {"text_b", "sentence2", NULL};

static int column(const record *h, const char *const *names)
{
    for (int k = 0; k < h->n; k++)
        for (int i = 0; names[i]; i++)
            if (!strcmp(h->f[k], names[i]))
                return k;
    return -1;
}

static char *dup_field(const record *r, int k)
{
    return k >= 0 ? strdup(r->f[k]) : NULL;
}

/* Records with a header (the first record) naming the columns. */
static int from_header(const char *path, const records *rs, tk_cls_data *d, bc_err *e)
{
    const record *h = &rs->r[0];
    int kl = column(h, (const char *const[]){"label", NULL}), ka = column(h, text_a_names),
        kb = column(h, text_b_names);
    if (kl < 0 || ka < 0)
        return bc_errf(e,
                       "%s:%d: the header must name a label column and a text column "
                       "(text, sentence, sentence1 or text_a)",
                       path, h->line);
    d->pairs = kb >= 0;
    for (int i = 1; i < rs->n; i++) {
        const record *r = &rs->r[i];
        if (r->n != h->n)
            return bc_errf(e, "%s:%d: %d fields, but the header has %d", path, r->line,
                           r->n, h->n);
        if (example_add(d, path, r->line, dup_field(r, kl), dup_field(r, ka),
                        kb >= 0 ? dup_field(r, kb) : NULL, e))
            return -1;
    }
    return 0;
}

/* label<TAB>text[<TAB>text_b] records. */
static int headerless(const char *path, const records *rs, tk_cls_data *d, bc_err *e)
{
    int want = rs->r[0].n;
    if (want != 2 && want != 3)
        return bc_errf(e,
                       "%s:%d: expected label<TAB>text or label<TAB>text<TAB>text_b, or a "
                       "header naming the columns (label, text), got %d field%s",
                       path, rs->r[0].line, want, want == 1 ? "" : "s");
    d->pairs = want == 3;
    for (int i = 0; i < rs->n; i++) {
        const record *r = &rs->r[i];
        if (r->n != want)
            return bc_errf(e, "%s:%d: %d tab-separated fields, expected %d as on line %d",
                           path, r->line, r->n, want, rs->r[0].line);
        if (example_add(d, path, r->line, dup_field(r, 0), dup_field(r, 1),
                        want == 3 ? dup_field(r, 2) : NULL, e))
            return -1;
    }
    return 0;
}

/* A JSON value as a label or text: a string, or an integer (labels only). */
static char *json_text(json_t *v, int integer_ok)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (integer_ok && json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return strdup(buf);
    }
    return NULL;
}

static json_t *json_key(json_t *o, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (json_object_get(o, names[i]))
            return json_object_get(o, names[i]);
    return NULL;
}

static int from_json_lines(const char *path, const records *rs, tk_cls_data *d, bc_err *e)
{
    for (int i = 0; i < rs->n; i++) {
        const record *r = &rs->r[i];
        json_error_t je;
        json_t *o = json_loads(r->f[0], 0, &je);
        if (!json_is_object(o)) {
            json_decref(o);
            return bc_errf(e, "%s:%d: %s", path, r->line,
                           o ? "expected a JSON object" : je.text);
        }
        json_t *l = json_object_get(o, "label"), *a = json_key(o, text_a_names),
               *b = json_key(o, text_b_names);
        if (i == 0)
            d->pairs = b != NULL;
        const char *bad =
            !l   ? "no \"label\""
            : !a ? "no text (\"text\", \"sentence\", \"sentence1\" or \"text_a\")"
            : d->pairs != (b != NULL) ? "a second text where the first line has "
                                        "none, or none where it has one"
            : (!json_is_string(l) && !json_is_integer(l))     ? "the label is not "
                                                                "a string or an "
                                                                "integer"
            : !json_is_string(a) || (b && !json_is_string(b)) ? "a text is not a string"
                                                              : NULL;
        int rc = bad ? bc_errf(e, "%s:%d: %s", path, r->line, bad)
                     : example_add(d, path, r->line, json_text(l, 1), json_text(a, 0),
                                   b ? json_text(b, 0) : NULL, e);
        json_decref(o);
        if (rc)
            return -1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int tk_cls_read(const char *path, tk_cls_data *out, bc_err *e)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *s = read_all(path, &len, e);
    if (!s)
        return -1;
    records rs = {0};
    int json = ends_with(path, ".jsonl"), csv = ends_with(path, ".csv");
    int rc = csv ? split_csv(path, s, len, &rs, e) : split_tsv(path, s, len, !json, &rs, e);
    free(s);
    if (!rc && !rs.n)
        rc = bc_errf(e, "%s: no examples", path);
    if (!rc) {
        const record *h = &rs.r[0];
        int header = column(h, (const char *const[]){"label", NULL}) >= 0 &&
                     column(h, text_a_names) >= 0;
        rc = json     ? from_json_lines(path, &rs, out, e)
             : header ? from_header(path, &rs, out, e)
             : csv    ? bc_errf(e,
                                "%s:%d: a CSV file needs a header naming its columns (label, "
                                   "text or sentence, and text_b or sentence2 for pairs)",
                                path, h->line)
                      : headerless(path, &rs, out, e);
    }
    if (!rc && !out->n)
        rc = bc_errf(e, "%s: no examples", path);
    records_free(&rs);
    if (rc)
        tk_cls_data_free(out);
    return rc;
}

/* ---- encoding ---------------------------------------------------------------------------
 */

int tk_cls_encode(const tx_vocab *v, const tx_tok_opts *o, const char *a, const char *b,
                  int max_seq, int64_t *ids, int64_t *types, int *truncated, bc_err *e)
{
    int cls = tx_vocab_special(v, TX_CLS), sep = tx_vocab_special(v, TX_SEP);
    if (cls < 0 || sep < 0)
        return bc_errf(e, "the vocabulary has no [CLS] or no [SEP]");
    if (max_seq < (b ? 3 : 2))
        return bc_errf(e, "--max-seq %d leaves no room for the text", max_seq);
    tx_token_list ta = {0}, tb = {0};
    int len = -1;
    if (tx_tokenize(v, o, a, strlen(a), &ta, e) ||
        (b && tx_tokenize(v, o, b, strlen(b), &tb, e)))
        goto done;
    /* run_classifier's _truncate_seq_pair: the longer loses its last token (b on a
     * tie) until both fit. */
    int na = ta.n, nb = tb.n, room = max_seq - (b ? 3 : 2);
    while (na + nb > room) {
        if (na > nb)
            na--;
        else
            nb--;
    }
    if (truncated)
        *truncated = na < ta.n || nb < tb.n;
    len = 0;
    ids[len] = cls;
    types[len++] = 0;
    for (int i = 0; i < na; i++) {
        ids[len] = ta.t[i].id;
        types[len++] = 0;
    }
    ids[len] = sep;
    types[len++] = 0;
    for (int i = 0; b && i < nb; i++) {
        ids[len] = tb.t[i].id;
        types[len++] = 1;
    }
    if (b) {
        ids[len] = sep;
        types[len++] = 1;
    }
done:
    tx_token_list_free(&ta);
    tx_token_list_free(&tb);
    return len;
}

/* ---- the task -------------------------------------------------------------------------
 */

static const tk_task_option cls_options[] = {
    {"max-seq", "N", "tokens per row with [CLS] and [SEP]s; longer texts are truncated",
     "128"},
    {"holdout", "K",
     "with a single --data file: dev = every K-th record, left out of training", "0"},
    {"select", "NAME", "the dev score that picks best.safetensors: macro_f1 or accuracy",
     "macro_f1"},
    {"class-weights", "NAME",
     "none, or balanced: each class's loss weighted by n / (classes * n_class) of train",
     "none"},
    {NULL, NULL, NULL, NULL},
};
enum { OPT_MAX_SEQ, OPT_HOLDOUT, OPT_SELECT, OPT_WEIGHTS };

static const char *const by_macro_f1[] = {"macro_f1", "accuracy", NULL};
static const char *const by_accuracy[] = {"accuracy", "macro_f1", NULL};
static const char *const cls_outputs[] = {"intent_logits", NULL};

typedef struct cls_state {
    const tx_vocab *v;
    tx_tok_opts tok;
    bc_note_fn note;
    void *note_ctx;
    int max_seq, holdout, by_accuracy, balanced, top_k;
    char *data;           /* --data as given, or NULL */
    int is_dir;           /* data is a directory of split files */
    tk_is_labels labels;  /* UNK, then the training labels sorted */
    tk_cls_data split[3]; /* by tk_split, read when first needed */
    int loaded[3], noted[3];
    float *weights;     /* [labels.n]: with balanced, the classes' loss weights */
    tk_cls_scores last; /* the last evaluation's scores */
} cls_state;

#define note(s, ...) tk_task_note((s)->note, (s)->note_ctx, __VA_ARGS__)

static void cls_close(void *state)
{
    cls_state *s = state;
    if (!s)
        return;
    free(s->data);
    tk_is_labels_free(&s->labels);
    for (int i = 0; i < 3; i++)
        tk_cls_data_free(&s->split[i]);
    free(s->weights);
    tk_cls_scores_free(&s->last);
    free(s);
}

/* The file of a split in the data directory: exactly one of SPLIT.{tsv,csv,jsonl,txt}. */
static int split_file(const cls_state *s, tk_split sp, char *path, size_t len, bc_err *e)
{
    static const char *const ext[] = {"tsv", "csv", "jsonl", "txt"};
    int found = 0;
    char p[4200];
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s/%s.%s", s->data, tk_split_name(sp), ext[i]);
        if (stat(p, &st))
            continue;
        if (found++)
            return bc_errf(e, "%s: both %s and %s: keep one file per split", s->data, path,
                           p);
        snprintf(path, len, "%s", p);
    }
    if (!found)
        return bc_errf(e, "%s: no %s split (%s.tsv, %s.csv, %s.jsonl or %s.txt)", s->data,
                       tk_split_name(sp), tk_split_name(sp), tk_split_name(sp),
                       tk_split_name(sp), tk_split_name(sp));
    return 0;
}

/* With one file and --holdout K: train is every record but the K-th ones, dev those;
 * test is the whole file. */
static int split_of_file(cls_state *s, tk_split sp, bc_err *e)
{
    if (sp == TK_SPLIT_DEV && !s->holdout)
        return bc_errf(e,
                       "%s: no dev split: give --holdout K (every K-th record) or a "
                       "directory with train, dev and test files",
                       s->data);
    tk_cls_data all;
    if (tk_cls_read(s->data, &all, e))
        return -1;
    tk_cls_data *d = &s->split[sp];
    if (sp == TK_SPLIT_TEST || !s->holdout) {
        *d = all;
        return 0;
    }
    d->pairs = all.pairs;
    d->x = malloc((size_t)all.n * sizeof *d->x);
    if (!d->x) {
        tk_cls_data_free(&all);
        return bc_errf(e, "out of memory");
    }
    for (int i = 0; i < all.n; i++) {
        int held = i % s->holdout == s->holdout - 1;
        if (held == (sp == TK_SPLIT_DEV))
            d->x[d->n++] = all.x[i];
        else {
            free(all.x[i].label);
            free(all.x[i].a);
            free(all.x[i].b);
        }
    }
    free(all.x);
    if (!d->n)
        return bc_errf(e, "%s: --holdout %d leaves no %s record (the file has %d)", s->data,
                       s->holdout, tk_split_name(sp), all.n);
    return 0;
}

/* Reads a split once; for dev and test, reports the labels training never saw. */
static int ensure_split(cls_state *s, tk_split sp, bc_err *e)
{
    if (s->loaded[sp])
        return 0;
    if (!s->data)
        return bc_errf(e, "classify: no data was given");
    char path[4200];
    if (s->is_dir
            ? split_file(s, sp, path, sizeof path, e) || tk_cls_read(path, &s->split[sp], e)
            : split_of_file(s, sp, e))
        return -1;
    s->loaded[sp] = 1;
    if (!s->labels.n)
        return 0; /* the list is being built from this split */
    const tk_cls_data *d = &s->split[sp];
    int unseen = 0;
    const char *first = NULL;
    for (int i = 0; i < d->n; i++)
        if (!tk_is_label_id(&s->labels, d->x[i].label)) {
            first = first ? first : d->x[i].label;
            unseen++;
        }
    if (unseen)
        note(
            s,
            "%s %s: %d of %d examples have labels unseen in training (e.g. '%s'): they map "
            "to %s and count as wrong",
            s->data, tk_split_name(sp), unseen, d->n, first, TK_METRIC_UNK);
    return 0;
}

/* "balanced": n / (classes * n_c) for the classes of the training split, 0 for UNK. */
static int class_weights(cls_state *s, bc_err *e)
{
    const tk_cls_data *d = &s->split[TK_SPLIT_TRAIN];
    int C = s->labels.n;
    int64_t *count = calloc((size_t)C, sizeof *count);
    if (!count || !(s->weights = calloc((size_t)C, sizeof *s->weights))) {
        free(count);
        return bc_errf(e, "out of memory");
    }
    for (int i = 0; i < d->n; i++)
        count[tk_is_label_id(&s->labels, d->x[i].label)]++;
    int present = 0;
    for (int c = 1; c < C; c++)
        present += count[c] > 0;
    for (int c = 1; c < C; c++)
        s->weights[c] =
            count[c] ? (float)((double)d->n / ((double)present * (double)count[c])) : 0.0f;
    free(count);
    return 0;
}

static int build_labels(cls_state *s, bc_err *e)
{
    if (ensure_split(s, TK_SPLIT_TRAIN, e))
        return -1;
    const tk_cls_data *d = &s->split[TK_SPLIT_TRAIN];
    const char **seen = malloc((size_t)d->n * sizeof *seen);
    if (!seen)
        return bc_errf(e, "out of memory");
    for (int i = 0; i < d->n; i++)
        seen[i] = d->x[i].label;
    int rc = tk_is_labels_build(seen, d->n, 0, &s->labels, e);
    free(seen);
    if (!rc && s->labels.n < 3)
        note(s, "%s: the training split has a single label: every prediction will be it",
             s->data);
    return rc;
}

static int parse_options(cls_state *s, const tk_task_config *c, bc_err *e)
{
    const char *val[4];
    for (int i = 0; i < 4; i++)
        val[i] = c->opt && c->opt[i] ? c->opt[i] : cls_options[i].def;
    long long v, h;
    if (tk_task_int_opt(val[OPT_MAX_SEQ], "max-seq", 3, 65536, &v, e) ||
        tk_task_int_opt(val[OPT_HOLDOUT], "holdout", 0, 1 << 30, &h, e))
        return -1;
    if (!(c->opt && c->opt[OPT_MAX_SEQ]) && c->max_position > 0 && v > c->max_position)
        v = c->max_position; /* the default never exceeds the model */
    if (c->max_position > 0 && v > c->max_position)
        return bc_errf(e, "--max-seq %lld exceeds the model's max-position %lld", v,
                       (long long)c->max_position);
    if (h == 1)
        return bc_errf(e, "--holdout 1 would leave nothing to train on (give K >= 2)");
    if (strcmp(val[OPT_SELECT], "macro_f1") && strcmp(val[OPT_SELECT], "accuracy"))
        return bc_errf(e, "--select expects macro_f1 or accuracy, got '%s'",
                       val[OPT_SELECT]);
    if (strcmp(val[OPT_WEIGHTS], "none") && strcmp(val[OPT_WEIGHTS], "balanced"))
        return bc_errf(e, "--class-weights expects none or balanced, got '%s'",
                       val[OPT_WEIGHTS]);
    s->max_seq = (int)v;
    s->holdout = (int)h;
    s->by_accuracy = !strcmp(val[OPT_SELECT], "accuracy");
    s->balanced = !strcmp(val[OPT_WEIGHTS], "balanced");
    return 0;
}

static int cls_open(const tk_task_config *c, void **state, bc_err *e)
{
    *state = NULL;
    cls_state *s = calloc(1, sizeof *s);
    if (!s)
        return bc_errf(e, "out of memory");
    s->v = c->vocab;
    s->tok = c->tok;
    s->note = c->note;
    s->note_ctx = c->note_ctx;
    s->top_k = c->top_k > 0 ? c->top_k : 1;
    struct stat st;
    if (parse_options(s, c, e))
        goto fail;
    if (c->data && !(s->data = strdup(c->data))) {
        bc_errf(e, "out of memory");
        goto fail;
    }
    s->is_dir = c->data && !stat(c->data, &st) && S_ISDIR(st.st_mode);
    if (s->is_dir && s->holdout) {
        bc_errf(e, "--holdout goes with a single --data file, not a directory (%s)",
                c->data);
        goto fail;
    }
    if (c->run_dir) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", c->run_dir, TK_IS_INTENT_LABELS);
        if (tk_is_labels_load(path, &s->labels, e))
            goto fail;
    } else if (!s->data) {
        bc_errf(e, "classify: --data is required to build the label list");
        goto fail;
    } else if (build_labels(s, e)) {
        goto fail;
    }
    *state = s;
    return 0;
fail:
    cls_close(s);
    return -1;
}

static void cls_heads(void *state, tk_task_heads *h)
{
    const cls_state *s = state;
    h->labels = TR_LABEL_INTENT;
    h->intent_classes = s->labels.n;
    h->intent_class_weights = s->balanced;
}

static void cls_option_value(void *state, int i, char *buf, size_t len)
{
    const cls_state *s = state;
    if (i == OPT_MAX_SEQ)
        snprintf(buf, len, "%d", s->max_seq);
    else if (i == OPT_HOLDOUT)
        snprintf(buf, len, "%d", s->holdout);
    else if (i == OPT_SELECT)
        snprintf(buf, len, "%s", s->by_accuracy ? "accuracy" : "macro_f1");
    else if (i == OPT_WEIGHTS)
        snprintf(buf, len, "%s", s->balanced ? "balanced" : "none");
    else
        snprintf(buf, len, "%s", "");
}

static const char *const *cls_select(void *state)
{
    const cls_state *s = state;
    return s->by_accuracy ? by_accuracy : by_macro_f1;
}

static int cls_save(void *state, const char *dir, bc_err *e)
{
    const cls_state *s = state;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, TK_IS_INTENT_LABELS);
    return tk_is_labels_save(path, &s->labels, e);
}

/* Encodes x[0..n) into rows of their longest length: input_ids, token_type_ids and
 * attention_mask [n, S] added to out. *cut counts truncated examples. */
static int encode_rows(cls_state *s, const tk_cls_example *x, int n, rt_tensor_list *out,
                       int *cut, bc_err *e)
{
    int64_t *ids = malloc((size_t)n * (size_t)s->max_seq * sizeof *ids);
    int64_t *types = malloc((size_t)n * (size_t)s->max_seq * sizeof *types);
    int *len = malloc((size_t)n * sizeof *len);
    int rc = -1, S = 2;
    if (!ids || !types || !len) {
        bc_errf(e, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int tr = 0;
        size_t at = (size_t)i * (size_t)s->max_seq;
        if ((len[i] = tk_cls_encode(s->v, &s->tok, x[i].a, x[i].b, s->max_seq, ids + at,
                                    types + at, &tr, e)) < 0)
            goto done;
        *cut += tr;
        S = len[i] > S ? len[i] : S;
    }
    int64_t shape[2] = {n, S};
    rt_tensor *ti = rt_list_add(out, "input_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tt = rt_list_add(out, "token_type_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tm = rt_list_add(out, "attention_mask", RT_I64, 2, shape, NULL);
    if (!ti || !tt || !tm) {
        bc_errf(e, "out of memory");
        goto done;
    }
    int pad = tx_vocab_special(s->v, TX_PAD);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < S; k++) {
            size_t o = (size_t)i * (size_t)S + (size_t)k,
                   at = (size_t)i * (size_t)s->max_seq;
            ((int64_t *)ti->data)[o] = k < len[i] ? ids[at + k] : (pad >= 0 ? pad : 0);
            ((int64_t *)tt->data)[o] = k < len[i] ? types[at + k] : 0;
            ((int64_t *)tm->data)[o] = k < len[i];
        }
    rc = 0;
done:
    free(ids);
    free(types);
    free(len);
    return rc;
}

static void note_truncation(cls_state *s, tk_split sp, int cut)
{
    if (cut && !s->noted[sp]) {
        s->noted[sp] = 1;
        note(s, "%s %s: %d example%s longer than --max-seq %d tokens were truncated",
             s->data, tk_split_name(sp), cut, cut == 1 ? "" : "s", s->max_seq);
    }
}

static int cls_data(void *state, tk_split sp, rt_tensor_list *out, bc_err *e)
{
    cls_state *s = state;
    if (ensure_split(s, sp, e))
        return -1;
    const tk_cls_data *d = &s->split[sp];
    int cut = 0;
    if (encode_rows(s, d->x, d->n, out, &cut, e)) {
        bc_err_prefix(e, "%s %s", s->data, tk_split_name(sp));
        return -1;
    }
    int64_t shape[1] = {d->n};
    rt_tensor *l = rt_list_add(out, "intent_labels", RT_I64, 1, shape, NULL);
    if (!l)
        return bc_errf(e, "out of memory");
    for (int i = 0; i < d->n; i++)
        ((int64_t *)l->data)[i] = tk_is_label_id(&s->labels, d->x[i].label);
    note_truncation(s, sp, cut);
    return 0;
}

/* With --class-weights balanced, every training micro-batch carries the weights. */
static int cls_augment(void *state, rt_tensor_list *batch, uint64_t seed, bc_err *e)
{
    (void)seed;
    cls_state *s = state;
    if (!s->balanced)
        return 0;
    if (!s->weights && (ensure_split(s, TK_SPLIT_TRAIN, e) || class_weights(s, e)))
        return -1;
    int64_t shape[1] = {s->labels.n};
    if (!rt_list_add(batch, "intent_class_weights", RT_F32, 1, shape, s->weights))
        return bc_errf(e, "out of memory");
    return 0;
}

/* The classes of x[0..n) by the model: pred[i], and (may be NULL) the softmax over the
 * classes, prob[i * C + c]. */
static int run_batch(cls_state *s, const tk_cls_example *x, int n, tk_forward_fn fwd,
                     void *fctx, int *pred, double *prob, int *cut, bc_err *e)
{
    rt_tensor_list in, out;
    rt_list_init(&in);
    rt_list_init(&out);
    int rc = -1, C = s->labels.n;
    if (encode_rows(s, x, n, &in, cut, e) || fwd(fctx, &in, &out, e))
        goto done;
    const rt_tensor *t = rt_list_cfind(&out, "intent_logits");
    if (!t || t->dtype != RT_F32 || t->rank != 2 || t->shape[0] != n || t->shape[1] != C) {
        bc_errf(e, "the model's intent_logits is not F32 [%d, %d]", n, C);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const float *z = (const float *)t->data + (size_t)i * (size_t)C; /* [C] */
        int best = C > 1 ? 1 : 0;                                        /* never UNK */
        for (int c = 2; c < C; c++)
            if (z[c] > z[best])
                best = c;
        pred[i] = best;
        double lse = prob ? tk_log_sum_exp(z, C) : 0;
        for (int c = 0; prob && c < C; c++)
            prob[(size_t)i * (size_t)C + (size_t)c] = exp((double)z[c] - lse);
    }
    rc = 0;
done:
    rt_list_free(&in);
    rt_list_free(&out);
    return rc;
}

static int cls_evaluate(void *state, tk_split sp, int batch_size, tk_forward_fn fwd,
                        void *fctx, const tk_shard *shard, tk_metrics *m, bc_err *e)
{
    cls_state *s = state;
    if (ensure_split(s, sp, e))
        return -1;
    const tk_cls_data *d = &s->split[sp];
    batch_size = batch_size < 1 ? 64 : batch_size;
    int nb = (d->n + batch_size - 1) / batch_size;
    /* What the batches give (zero where another shard ran them, until merged):
     * pred [n], cuts [nb] (truncated examples per batch). */
    int *gold = malloc(((size_t)d->n + 1) * sizeof *gold),
        *pred = calloc((size_t)d->n + 1, sizeof *pred),
        *cuts = calloc((size_t)nb + 1, sizeof *cuts);
    int rc = -1, cut = 0;
    if (!gold || !pred || !cuts) {
        bc_errf(e, "out of memory");
        goto done;
    }
    for (int k = 0, i = 0; i < d->n; k++, i += batch_size) {
        int b = d->n - i < batch_size ? d->n - i : batch_size;
        if (!tk_shard_mine(shard, k))
            continue;
        if (run_batch(s, d->x + i, b, fwd, fctx, pred + i, NULL, &cuts[k], e)) {
            bc_err_prefix(e, "%s %s, examples %d-%d", s->data, tk_split_name(sp), i + 1,
                          i + b);
            goto done;
        }
    }
    if (tk_shard_merge(shard, pred, (size_t)d->n * sizeof *pred, e) ||
        tk_shard_merge(shard, cuts, (size_t)nb * sizeof *cuts, e))
        goto done;
    for (int k = 0; k < nb; k++)
        cut += cuts[k];
    note_truncation(s, sp, cut);
    for (int i = 0; i < d->n; i++)
        gold[i] = tk_is_label_id(&s->labels, d->x[i].label);
    tk_cls_scores_free(&s->last);
    if (tk_cls_score(gold, pred, d->n, s->labels.n, &s->last, e))
        goto done;
    memset(m, 0, sizeof *m);
    tk_metrics_add(m, "accuracy", s->last.accuracy);
    tk_metrics_add(m, "macro_f1", s->last.macro_f1);
    m->examples = d->n;
    rc = 0;
done:
    free(gold);
    free(pred);
    free(cuts);
    return rc;
}

/* Whether class c takes part in the last evaluation's report: a training label, or UNK
 * when unseen labels occurred. */
static int reported(const cls_state *s, int c)
{
    return c > 0 || s->last.cls[0].support > 0;
}

static json_t *cls_details(void *state)
{
    const cls_state *s = state;
    const tk_cls_scores *r = &s->last;
    json_t *pc = json_object(), *names = json_array(), *matrix = json_array();
    for (int c = 0; c < r->nclass; c++) {
        if (!reported(s, c))
            continue;
        const tk_cls_class *k = &r->cls[c];
        json_object_set_new(pc, s->labels.name[c],
                            json_pack("{s:f, s:f, s:f, s:I}", "precision", k->precision,
                                      "recall", k->recall, "f1", k->f1, "support",
                                      (json_int_t)k->support));
        json_array_append_new(names, json_string(s->labels.name[c]));
        json_t *row = json_array();
        for (int p = 0; p < r->nclass; p++)
            if (reported(s, p))
                json_array_append_new(
                    row,
                    json_integer(r->confusion[(size_t)c * (size_t)r->nclass + (size_t)p]));
        json_array_append_new(matrix, row);
    }
    return json_pack("{s:o, s:{s:o, s:o}}", "per_class", pc, "confusion", "labels", names,
                     "matrix", matrix);
}

static int cls_print_details(void *state, const json_t *d, FILE *f)
{
    (void)state;
    json_t *pc = json_object_get(d, "per_class"), *cf = json_object_get(d, "confusion");
    json_t *names = json_object_get(cf, "labels"), *matrix = json_object_get(cf, "matrix");
    fprintf(f, "  %-24s %9s %9s %9s %9s\n", "class", "precision", "recall", "f1",
            "support");
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name)
    {
        json_t *k = json_object_get(pc, json_string_value(name));
        fprintf(f, "  %-24s %9.4f %9.4f %9.4f %9lld\n", json_string_value(name),
                json_real_value(json_object_get(k, "precision")),
                json_real_value(json_object_get(k, "recall")),
                json_real_value(json_object_get(k, "f1")),
                (long long)json_integer_value(json_object_get(k, "support")));
    }
    fputs("  confusion matrix (rows: true class, columns: predicted, in the order above)\n",
          f);
    json_t *row;
    json_array_foreach(matrix, i, row)
    {
        fprintf(f, "  %-24s", json_string_value(json_array_get(names, i)));
        size_t j;
        json_t *v;
        json_array_foreach(row, j, v)
            fprintf(f, " %6lld", (long long)json_integer_value(v));
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}

static int cls_predict(void *state, const char *text, const char *pair, tk_forward_fn fwd,
                       void *fctx, json_t **out, bc_err *e)
{
    cls_state *s = state;
    int C = s->labels.n, pred, cut = 0;
    tk_cls_example x = {NULL, (char *)text, (char *)pair, 0};
    double *p = malloc((size_t)C * sizeof *p);
    int *order = malloc((size_t)C * sizeof *order);
    int rc = -1;
    if (!p || !order) {
        bc_errf(e, "out of memory");
        goto done;
    }
    if (!*text || (pair && !*pair)) {
        bc_errf(e, "empty text");
        goto done;
    }
    if (run_batch(s, &x, 1, fwd, fctx, &pred, p, &cut, e))
        goto done;
    if (cut)
        note(s, "the text is longer than --max-seq %d tokens: its end was cut off",
             s->max_seq);
    int n = 0; /* the known classes by probability, highest first (ties: lower id) */
    for (int c = 1; c < C; c++) {
        int k = n++;
        while (k > 0 && p[order[k - 1]] < p[c]) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = c;
    }
    json_t *top = json_array();
    for (int k = 0; k < n && k < s->top_k; k++)
        json_array_append_new(top,
                              json_pack("{s:s, s:f}", "label", s->labels.name[order[k]],
                                        "probability", p[order[k]]));
    *out = json_pack("{s:s, s:o, s:s, s:f, s:o}", "text", text, "text_b",
                     pair ? json_string(pair) : json_null(), "label", s->labels.name[pred],
                     "probability", p[pred], "top", top);
    rc = *out ? 0 : bc_errf(e, "out of memory (or the text is not valid UTF-8)");
done:
    free(p);
    free(order);
    return rc;
}

static int cls_print(void *state, const json_t *p, FILE *f)
{
    (void)state;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(p, "top"), i, t)
    {
        fprintf(f, "%s%s (%.2f)", i ? ", " : "",
                json_string_value(json_object_get(t, "label")),
                json_real_value(json_object_get(t, "probability")));
    }
    fputc('\n', f);
    return ferror(f) ? -1 : 0;
}

const tk_task_ops tk_task_classify = {
    .name = "classify",
    .about = "sentence and sentence-pair classification from [CLS] (TSV, CSV, JSON Lines)",
    .options = cls_options,
    .best_by = by_macro_f1,
    .eval_outputs = cls_outputs,
    .open = cls_open,
    .close = cls_close,
    .heads = cls_heads,
    .option_value = cls_option_value,
    .save = cls_save,
    .data = cls_data,
    .augment = cls_augment,
    .evaluate = cls_evaluate,
    .predict = cls_predict,
    .print = cls_print,
    .one_line = 1,
    .select = cls_select,
    .details = cls_details,
    .print_details = cls_print_details,
};
