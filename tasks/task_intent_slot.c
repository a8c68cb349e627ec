/* task_intent_slot.c: the intent + slot task (see task_intent_slot.h). */
#include "task_intent_slot.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../support/file.h"
#include "../text/unicode.h"
#include "../train/batch.h"
#include "metrics.h"

/* ---- label lists ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void tk_is_labels_free(tk_is_labels *l)
{
    for (int i = 0; l->name && i < l->n; i++)
        free(l->name[i]);
    free(l->name);
    l->name = NULL;
    l->n = 0;
}

int tk_is_labels_build(const char *const *seen, int n, int o_first, tk_is_labels *out,
                       bc_err *e)
{
    out->name = NULL;
    out->n = 0;
    const char **s = malloc(((size_t)n + 1) * sizeof *s);
    char **names = malloc(((size_t)n + 2) * sizeof *names);
    if (!s || !names)
        goto oom;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(seen[i], TK_METRIC_UNK))
            s[k++] = seen[i];
    qsort(s, (size_t)k, sizeof *s, cmp_str);
    int m = 0, has_o = 0;
    if (!(names[m++] = strdup(TK_METRIC_UNK)))
        goto oom_names;
    for (int i = 0; i < k; i++)
        has_o |= !strcmp(s[i], "O");
    if (o_first && has_o && !(names[m++] = strdup("O")))
        goto oom_names;
    for (int i = 0; i < k; i++) {
        if ((i > 0 && !strcmp(s[i], s[i - 1])) || (o_first && !strcmp(s[i], "O")))
            continue;
        if (!(names[m++] = strdup(s[i])))
            goto oom_names;
    }
    free(s);
    out->name = names;
    out->n = m;
    return 0;
oom_names:
    for (int i = 0; i < m; i++)
        free(names[i]);
oom:
    free(s);
    free(names);
    return bc_errf(e, "out of memory building a label list");
}

int tk_is_label_id(const tk_is_labels *l, const char *name)
{
    for (int i = 1; i < l->n; i++)
        if (!strcmp(l->name[i], name))
            return i;
    return 0;
}

/* Removes a trailing \n, \r\n or \r. */
static ssize_t chomp(char *line, ssize_t n)
{
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    return n;
}

int tk_is_labels_load(const char *path, tk_is_labels *out, bc_err *e)
{
    out->name = NULL;
    out->n = 0;
    FILE *f = bc_fopen_read(path, e);
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0, cap_n = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        len = chomp(line, (ssize_t)bc_drop_nul(line, (size_t)len));
        int lineno = out->n + 1;
        if (len == 0 || strpbrk(line, " \t")) {
            rc = bc_errf(e, "%s:%d: expected one label without spaces", path, lineno);
            break;
        }
        if (out->n == 0 && strcmp(line, TK_METRIC_UNK)) {
            rc = bc_errf(e, "%s:1: the first label must be %s", path, TK_METRIC_UNK);
            break;
        }
        if (out->n == cap_n) {
            cap_n = cap_n ? 2 * cap_n : 64;
            char **nn = realloc(out->name, (size_t)cap_n * sizeof *nn);
            if (!nn) {
                rc = bc_errf(e, "%s: out of memory", path);
                break;
            }
            out->name = nn;
        }
        if (!(out->name[out->n] = strdup(line))) {
            rc = bc_errf(e, "%s: out of memory", path);
            break;
        }
        out->n++;
    }
    free(line);
    fclose(f);
    if (!rc && out->n < 2)
        rc = bc_errf(e, "%s: expected %s and at least one label", path, TK_METRIC_UNK);
    if (rc)
        tk_is_labels_free(out);
    return rc;
}

int tk_is_labels_save(const char *path, const tk_is_labels *l, bc_err *e)
{
    return tx_vocab_save(path, (const char *const *)l->name, l->n, e);
}

/* ---- sentences ---------------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The words of line, with their byte offsets (starts may be NULL). */
static int split_words(const char *line, char ***words, int **starts)
{
    int n = 0, cap = 0;
    char **w = NULL;
    int *st = NULL;
    for (const char *p = line; *p;) {
        while (*p && is_space(*p))
            p++;
        if (!*p)
            break;
        const char *q = p;
        while (*q && !is_space(*q))
            q++;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nw = realloc(w, (size_t)cap * sizeof *nw);
            if (nw)
                w = nw;
            int *ns = starts ? realloc(st, (size_t)cap * sizeof *ns) : NULL;
            if (ns)
                st = ns;
            if (!nw || (starts && !ns))
                goto oom;
        }
        if (!(w[n] = strndup(p, (size_t)(q - p))))
            goto oom;
        if (starts)
            st[n] = (int)(p - line);
        n++;
        p = q;
    }
    *words = w;
    if (starts)
        *starts = st;
    return n;
oom:
    for (int i = 0; i < n; i++)
        free(w[i]);
    free(w);
    free(st);
    return -1;
}

int tk_is_split_words(const char *line, char ***words)
{
    return split_words(line, words, NULL);
}

static void free_words(char **w, int n)
{
    for (int i = 0; w && i < n; i++)
        free(w[i]);
    free(w);
}

void tk_is_data_free(tk_is_data *d)
{
    for (int i = 0; d->s && i < d->n; i++) {
        free_words(d->s[i].words, d->s[i].n_words);
        free_words(d->s[i].tags, d->s[i].n_words);
        free(d->s[i].intent);
    }
    free(d->s);
    d->s = NULL;
    d->n = 0;
}

static const char *const is_names[3] = {"seq.in", "seq.out", "label"};

/* The sentences of the three streams f (seq.in, seq.out, label of dir; path: their names
 * in messages). Closes nothing. */
static int read_streams(FILE *f[3], char path[3][4096], const char *dir, tk_is_data *out,
                        bc_err *e)
{
    const char *const *names = is_names;
    char *line[3] = {NULL, NULL, NULL};
    size_t cap[3] = {0, 0, 0};
    int rc = -1, cap_n = 0;
    for (int lineno = 1;; lineno++) {
        ssize_t len[3];
        int got = 0;
        for (int k = 0; k < 3; k++) {
            len[k] = getline(&line[k], &cap[k], f[k]);
            got += len[k] >= 0;
        }
        if (got == 0)
            break;
        if (got < 3) {
            for (int k = 0; k < 3; k++)
                if (len[k] < 0) {
                    bc_errf(e, "%s: %d lines, but %s has more", path[k], lineno - 1,
                            names[k == 0 ? 1 : 0]);
                    goto done;
                }
        }
        for (int k = 0; k < 3; k++) {
            ssize_t n = chomp(line[k], (ssize_t)bc_drop_nul(line[k], (size_t)len[k]));
            if (!tx_valid_utf8(line[k], (size_t)n)) {
                bc_errf(e, "%s:%d: invalid UTF-8 (the data must be UTF-8 text)", path[k],
                        lineno);
                goto done;
            }
        }
        if (out->n == cap_n) {
            cap_n = cap_n ? 2 * cap_n : 1024;
            tk_is_sentence *ns = realloc(out->s, (size_t)cap_n * sizeof *ns);
            if (!ns)
                goto oom;
            out->s = ns;
        }
        tk_is_sentence *s = &out->s[out->n];
        memset(s, 0, sizeof *s);
        char **tags = NULL, **intent = NULL;
        int nw = split_words(line[0], &s->words, NULL);
        int nt = nw < 0 ? -1 : split_words(line[1], &tags, NULL);
        int ni = nt < 0 ? -1 : split_words(line[2], &intent, NULL);
        if (nw < 0 || nt < 0 || ni < 0) {
            free_words(s->words, nw);
            free_words(tags, nt);
            goto oom;
        }
        s->n_words = nw;
        s->tags = tags;
        out->n++; /* owned by out from here on (tk_is_data_free) */
        if (nt != nw) {
            free_words(intent, ni);
            free_words(tags, nt);
            s->tags = NULL;
            s->n_words = 0;
            free_words(s->words, nw);
            s->words = NULL;
            bc_errf(e, "%s:%d: %d tags for %d words in %s", path[1], lineno, nt, nw,
                    names[0]);
            goto done;
        }
        if (ni != 1) {
            free_words(intent, ni);
            bc_errf(e, "%s:%d: expected one intent label, got %d words", path[2], lineno,
                    ni);
            goto done;
        }
        s->intent = intent[0];
        free(intent);
    }
    rc = 0;
    goto done;
oom:
    bc_errf(e, "%s: out of memory", dir);
done:
    for (int k = 0; k < 3; k++)
        free(line[k]);
    if (rc)
        tk_is_data_free(out);
    return rc;
}

/* The sentences of streams f, opened by the caller (a NULL one failed, e says why),
 * which are closed here. */
static int read_and_close(FILE *f[3], char path[3][4096], const char *dir, tk_is_data *out,
                          bc_err *e)
{
    out->s = NULL;
    out->n = 0;
    int rc = f[0] && f[1] && f[2] ? read_streams(f, path, dir, out, e) : -1;
    for (int k = 0; k < 3; k++)
        if (f[k])
            fclose(f[k]);
    return rc;
}

int tk_is_read(const char *dir, tk_is_data *out, bc_err *e)
{
    char path[3][4096];
    FILE *f[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3 && (k == 0 || f[k - 1]); k++) {
        snprintf(path[k], sizeof path[k], "%s/%s", dir, is_names[k]);
        f[k] = bc_fopen_read(path[k], e);
    }
    return read_and_close(f, path, dir, out, e);
}

int tk_is_parse(const char *dir, const char *const text[3], const size_t len[3],
                tk_is_data *out, bc_err *e)
{
    char path[3][4096];
    FILE *f[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3 && (k == 0 || f[k - 1]); k++) {
        snprintf(path[k], sizeof path[k], "%s/%s", dir, is_names[k]);
        /* an empty text reads as an empty stream (fmemopen wants a size above 0) */
        f[k] = len[k] ? fmemopen((void *)text[k], len[k], "r") : fopen("/dev/null", "r");
        if (!f[k])
            bc_errf(e, "%s: cannot read: %s", path[k], strerror(errno));
    }
    return read_and_close(f, path, dir, out, e);
}

/* ---- alignment ------------------------------------------------------------------------
 */

int tk_is_encode(const tx_vocab *v, const tx_tok_opts *o, const char *const *words,
                 int n_words, const int *tag_ids, int max_seq, int64_t *ids,
                 int64_t *labels, int *pos, int *truncated, bc_err *e)
{
    int cls = tx_vocab_special(v, TX_CLS), sep = tx_vocab_special(v, TX_SEP);
    if (max_seq < 2)
        return bc_errf(e, "max-seq %d leaves no room for [CLS] and [SEP]", max_seq);
    if (cls < 0 || sep < 0)
        return bc_errf(e, "the vocabulary has no %s token",
                       cls < 0 ? tx_special_name(TX_CLS) : tx_special_name(TX_SEP));
    tx_token_list tl = {0};
    int *first = malloc(((size_t)n_words + 1) * sizeof *first);
    if (!first)
        return bc_errf(e, "out of memory");
    if (tx_tokenize_words(v, o, words, n_words, &tl, first, e)) {
        free(first);
        tx_token_list_free(&tl);
        return -1;
    }
    int room = max_seq - 2, ntok = tl.n < room ? tl.n : room;
    if (truncated)
        *truncated = tl.n > room;
    ids[0] = cls;
    for (int k = 0; k < ntok; k++)
        ids[1 + k] = tl.t[k].id;
    ids[1 + ntok] = sep;
    int len = ntok + 2;
    if (labels)
        for (int k = 0; k < len; k++)
            labels[k] = TK_IS_IGNORE;
    for (int w = 0; w < n_words; w++) {
        int p = first[w] < ntok ? 1 + first[w] : -1;
        if (pos)
            pos[w] = p;
        if (labels && tag_ids && p >= 0)
            labels[p] = tag_ids[w];
    }
    free(first);
    tx_token_list_free(&tl);
    return len;
}

/* ---- the task -------------------------------------------------------------------------
 */

static const tk_task_option is_options[] = {
    {"max-seq", "N",
     "tokens per row with [CLS] and [SEP]; longer sentences are truncated (default 64)",
     "64"},
    {"slot-decode", "bio|argmax",
     "word tags: the best sequence that is valid BIO, I-X only after B-X or I-X "
     "(bio, the default), or each word's most likely tag (argmax)",
     "bio"},
    {NULL, NULL, NULL, NULL},
};

static const char *const is_outputs[] = {"intent_logits", "slot_logits", NULL};
static const char *const is_best_by[] = {"frame_accuracy", "slot_f1", "intent_accuracy",
                                         NULL};

typedef struct is_state {
    char *data_dir; /* NULL: prediction only */
    const tx_vocab *v;
    tx_tok_opts tok;
    int max_seq;
    int bio;            /* --slot-decode bio */
    unsigned char *may; /* [L+1][L]: may[(p+1)*L+j], tag j may follow p (p = -1: start) */
    bc_note_fn note;
    void *note_ctx;
    tk_is_labels intents, slots;
    tk_is_data split[3];
    int loaded[3];
    int noted_truncation[3];
} is_state;

#define note(s, ...) tk_task_note((s)->note, (s)->note_ctx, __VA_ARGS__)

static void is_close(void *state)
{
    is_state *s = state;
    if (!s)
        return;
    free(s->data_dir);
    free(s->may);
    tk_is_labels_free(&s->intents);
    tk_is_labels_free(&s->slots);
    for (int i = 0; i < 3; i++)
        tk_is_data_free(&s->split[i]);
    free(s);
}

/* Counts of the distinct labels a split has that the lists lack. */
typedef struct unseen {
    const char **name;
    int *count;
    int n, cap;
} unseen;

static int unseen_add(unseen *u, const char *name)
{
    for (int i = 0; i < u->n; i++)
        if (!strcmp(u->name[i], name)) {
            u->count[i]++;
            return 0;
        }
    if (u->n == u->cap) {
        int cap = u->cap ? 2 * u->cap : 16;
        const char **nn = realloc(u->name, (size_t)cap * sizeof *nn);
        if (nn)
            u->name = nn;
        int *nc = realloc(u->count, (size_t)cap * sizeof *nc);
        if (nc)
            u->count = nc;
        if (!nn || !nc)
            return -1;
        u->cap = cap;
    }
    u->name[u->n] = name;
    u->count[u->n++] = 1;
    return 0;
}

static void unseen_str(const unseen *u, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < u->n && at < len; i++) {
        if (i == 8) {
            snprintf(buf + at, len - at, " and %d more", u->n - 8);
            break;
        }
        int k = snprintf(buf + at, len - at, "%s%s (%d)", i ? ", " : "", u->name[i],
                         u->count[i]);
        at += k > 0 ? (size_t)k : 0;
    }
}

/* Reads a split once; for dev and test, reports labels the lists lack. */
static int ensure_split(is_state *s, tk_split sp, bc_err *e)
{
    if (s->loaded[sp])
        return 0;
    if (!s->data_dir)
        return bc_errf(e, "intent-slot: no data directory was given");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", s->data_dir, tk_split_name(sp));
    if (tk_is_read(dir, &s->split[sp], e))
        return -1;
    s->loaded[sp] = 1;
    if (!s->intents.n)
        return 0; /* the lists are being built from this split */
    unseen ui = {0}, us = {0};
    int affected = 0, rc = 0;
    const tk_is_data *d = &s->split[sp];
    for (int i = 0; i < d->n && !rc; i++) {
        int bad = 0;
        if (!tk_is_label_id(&s->intents, d->s[i].intent)) {
            rc |= unseen_add(&ui, d->s[i].intent);
            bad = 1;
        }
        for (int w = 0; w < d->s[i].n_words; w++)
            if (!tk_is_label_id(&s->slots, d->s[i].tags[w])) {
                rc |= unseen_add(&us, d->s[i].tags[w]);
                bad = 1;
            }
        affected += bad;
    }
    if (rc)
        bc_errf(e, "out of memory");
    else if (ui.n || us.n) {
        char a[1024], b[1024];
        unseen_str(&ui, a, sizeof a);
        unseen_str(&us, b, sizeof b);
        note(s,
             "%s: labels unseen in training map to %s and count as wrong (%d of %d "
             "sentences): %s%s%s%s%s",
             dir, TK_METRIC_UNK, affected, d->n, ui.n ? "intents " : "", a,
             ui.n && us.n ? "; " : "", us.n ? "slot tags " : "", b);
    }
    free(ui.name);
    free(ui.count);
    free(us.name);
    free(us.count);
    return rc ? -1 : 0;
}

static int build_labels(is_state *s, bc_err *e)
{
    if (ensure_split(s, TK_SPLIT_TRAIN, e))
        return -1;
    const tk_is_data *d = &s->split[TK_SPLIT_TRAIN];
    if (d->n == 0)
        return bc_errf(e, "%s/train: no sentences", s->data_dir);
    size_t nt = 0;
    for (int i = 0; i < d->n; i++)
        nt += (size_t)d->s[i].n_words;
    const char **in = malloc((size_t)d->n * sizeof *in);
    const char **tg = malloc((nt + 1) * sizeof *tg);
    int rc = -1;
    if (!in || !tg) {
        bc_errf(e, "out of memory");
        goto done;
    }
    nt = 0;
    for (int i = 0; i < d->n; i++) {
        in[i] = d->s[i].intent;
        for (int w = 0; w < d->s[i].n_words; w++)
            tg[nt++] = d->s[i].tags[w];
    }
    if (tk_is_labels_build(in, d->n, 0, &s->intents, e) ||
        tk_is_labels_build(tg, (int)nt, 1, &s->slots, e))
        goto done;
    rc = 0;
done:
    free(in);
    free(tg);
    return rc;
}

static int is_open(const tk_task_config *c, void **state, bc_err *e)
{
    *state = NULL;
    is_state *s = calloc(1, sizeof *s);
    if (!s)
        return bc_errf(e, "out of memory");
    s->v = c->vocab;
    s->tok = c->tok;
    s->note = c->note;
    s->note_ctx = c->note_ctx;
    const char *ms = c->opt && c->opt[0] ? c->opt[0] : is_options[0].def;
    long long v;
    if (tk_task_int_opt(ms, "max-seq", 3, 65536, &v, e))
        goto fail;
    if (!(c->opt && c->opt[0]) && c->max_position > 0 && v > c->max_position)
        v = c->max_position; /* the default never exceeds the model */
    if (c->max_position > 0 && v > c->max_position) {
        bc_errf(e, "--max-seq %lld exceeds the model's max-position %lld", v,
                (long long)c->max_position);
        goto fail;
    }
    s->max_seq = (int)v;
    const char *sd = c->opt && c->opt[1] ? c->opt[1] : is_options[1].def;
    if (strcmp(sd, "bio") && strcmp(sd, "argmax")) {
        bc_errf(e, "--slot-decode expects bio or argmax, got '%s'", sd);
        goto fail;
    }
    s->bio = !strcmp(sd, "bio");
    if (c->data && !(s->data_dir = strdup(c->data))) {
        bc_errf(e, "out of memory");
        goto fail;
    }
    if (c->run_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", c->run_dir, TK_IS_INTENT_LABELS);
        if (tk_is_labels_load(path, &s->intents, e))
            goto fail;
        snprintf(path, sizeof path, "%s/%s", c->run_dir, TK_IS_SLOT_LABELS);
        if (tk_is_labels_load(path, &s->slots, e))
            goto fail;
    } else if (!s->data_dir) {
        bc_errf(e, "intent-slot: --data DIR is required to build the label lists");
        goto fail;
    } else if (build_labels(s, e)) {
        goto fail;
    }
    *state = s;
    return 0;
fail:
    is_close(s);
    return -1;
}

static void is_heads(void *state, tk_task_heads *h)
{
    const is_state *s = state;
    h->labels = TR_LABEL_INTENT | TR_LABEL_SLOT;
    h->intent_classes = s->intents.n;
    h->slot_labels = s->slots.n;
}

static void is_option_value(void *state, int i, char *buf, size_t len)
{
    const is_state *s = state;
    if (i == 0)
        snprintf(buf, len, "%d", s->max_seq);
    else if (i == 1)
        snprintf(buf, len, "%s", s->bio ? "bio" : "argmax");
    else
        snprintf(buf, len, "%s", "");
}

static int is_save(void *state, const char *dir, bc_err *e)
{
    const is_state *s = state;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, TK_IS_INTENT_LABELS);
    if (tk_is_labels_save(path, &s->intents, e))
        return -1;
    snprintf(path, sizeof path, "%s/%s", dir, TK_IS_SLOT_LABELS);
    return tk_is_labels_save(path, &s->slots, e);
}

/* Encodes one sentence into a row of S positions, padded: ids, mask and (may be NULL)
 * labels; pos[w] receives word w's position (may be NULL); *cut counts truncations. */
static int encode_row(is_state *s, const tk_is_sentence *x, int S, int64_t *ids,
                      int64_t *mask, int64_t *labels, int *pos, int *cut, bc_err *e)
{
    int *tag_ids = NULL;
    if (labels) {
        tag_ids = malloc(((size_t)x->n_words + 1) * sizeof *tag_ids);
        if (!tag_ids)
            return bc_errf(e, "out of memory");
        for (int w = 0; w < x->n_words; w++)
            tag_ids[w] = tk_is_label_id(&s->slots, x->tags[w]);
    }
    int64_t *row = malloc((size_t)s->max_seq * sizeof *row);
    int64_t *lab = labels ? malloc((size_t)s->max_seq * sizeof *lab) : NULL;
    int len = -1, tr = 0;
    if (!row || (labels && !lab))
        bc_errf(e, "out of memory");
    else
        len = tk_is_encode(s->v, &s->tok, (const char *const *)x->words, x->n_words,
                           tag_ids, s->max_seq, row, lab, pos, &tr, e);
    if (len >= 0) {
        int pad = tx_vocab_special(s->v, TX_PAD);
        for (int k = 0; k < S; k++) {
            ids[k] = k < len ? row[k] : (pad >= 0 ? pad : 0);
            mask[k] = k < len;
            if (labels)
                labels[k] = k < len ? lab[k] : TK_IS_IGNORE;
        }
        *cut += tr;
    }
    free(tag_ids);
    free(row);
    free(lab);
    return len < 0 ? -1 : 0;
}

/* The encoded length of every sentence (for the width of the rows). */
static int encoded_lengths(is_state *s, const tk_is_data *d, int *len, bc_err *e)
{
    int64_t *row = malloc((size_t)s->max_seq * sizeof *row);
    if (!row)
        return bc_errf(e, "out of memory");
    for (int i = 0; i < d->n; i++) {
        len[i] = tk_is_encode(s->v, &s->tok, (const char *const *)d->s[i].words,
                              d->s[i].n_words, NULL, s->max_seq, row, NULL, NULL, NULL, e);
        if (len[i] < 0) {
            free(row);
            return -1;
        }
    }
    free(row);
    return 0;
}

static void note_truncation(is_state *s, tk_split sp, int cut)
{
    if (cut && !s->noted_truncation[sp]) {
        s->noted_truncation[sp] = 1;
        note(s,
             "%s/%s: %d sentence%s longer than --max-seq %d tokens were truncated (the "
             "words cut off get no label)",
             s->data_dir, tk_split_name(sp), cut, cut == 1 ? "" : "s", s->max_seq);
    }
}

static int is_data(void *state, tk_split sp, rt_tensor_list *out, bc_err *e)
{
    is_state *s = state;
    if (ensure_split(s, sp, e))
        return -1;
    const tk_is_data *d = &s->split[sp];
    if (d->n == 0)
        return bc_errf(e, "%s/%s: no sentences", s->data_dir, tk_split_name(sp));
    int *len = malloc((size_t)d->n * sizeof *len);
    if (!len)
        return bc_errf(e, "out of memory");
    int rc = -1, S = 2, cut = 0;
    if (encoded_lengths(s, d, len, e))
        goto done;
    for (int i = 0; i < d->n; i++)
        S = len[i] > S ? len[i] : S;
    int64_t N = d->n, shape[2] = {N, S};
    rt_tensor *ids = rt_list_add(out, "input_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tt = rt_list_add(out, "token_type_ids", RT_I64, 2, shape, NULL);
    rt_tensor *mask = rt_list_add(out, "attention_mask", RT_I64, 2, shape, NULL);
    rt_tensor *il = rt_list_add(out, "intent_labels", RT_I64, 1, shape, NULL);
    rt_tensor *sl = rt_list_add(out, "slot_labels", RT_I64, 2, shape, NULL);
    if (!ids || !tt || !mask || !il || !sl) {
        bc_errf(e, "out of memory");
        goto done;
    }
    (void)tt; /* token types stay 0 */
    for (int i = 0; i < d->n; i++) {
        int64_t *r_ids = (int64_t *)ids->data + (size_t)i * (size_t)S;
        int64_t *r_mask = (int64_t *)mask->data + (size_t)i * (size_t)S;
        int64_t *r_lab = (int64_t *)sl->data + (size_t)i * (size_t)S;
        if (encode_row(s, &d->s[i], S, r_ids, r_mask, r_lab, NULL, &cut, e)) {
            bc_err_prefix(e, "%s/%s/seq.in:%d", s->data_dir, tk_split_name(sp), i + 1);
            goto done;
        }
        ((int64_t *)il->data)[i] = tk_is_label_id(&s->intents, d->s[i].intent);
    }
    note_truncation(s, sp, cut);
    rc = 0;
done:
    free(len);
    return rc;
}

/* Checks a forward output: F32 of rank `rank` with the given leading dims. */
static const rt_tensor *get_out(const rt_tensor_list *out, const char *name, int rank,
                                int64_t d0, int64_t d1, int64_t d2, bc_err *e)
{
    const rt_tensor *t = rt_list_cfind(out, name);
    int64_t want[3] = {d0, d1, d2};
    int ok = t && t->dtype == RT_F32 && t->rank == rank;
    for (int k = 0; ok && k < rank; k++)
        ok = t->shape[k] == want[k];
    if (!ok) {
        char s1[64], s2[64];
        bc_errf(e, "the model's %s is %s, expected F32 %s", name,
                t ? rt_shape_str(t->rank, t->shape, s1, sizeof s1) : "missing",
                rt_shape_str(rank, want, s2, sizeof s2));
        return NULL;
    }
    return t;
}

/* The best class of logits[0..n) other than UNK (id 0). */
static int argmax_known(const float *logits, int n)
{
    int best = n > 1 ? 1 : 0;
    for (int k = 2; k < n; k++)
        if (logits[k] > logits[best])
            best = k;
    return best;
}

/* softmax(logits)[k] */
static double softmax_at(const float *logits, int n, int k)
{
    double mx = logits[0], sum = 0;
    for (int j = 1; j < n; j++)
        mx = logits[j] > mx ? logits[j] : mx;
    for (int j = 0; j < n; j++)
        sum += exp((double)logits[j] - mx);
    return exp((double)logits[k] - mx) / sum;
}

/* out[0..n) = log softmax(logits[0..n)) */
static void log_softmax(const float *logits, int n, double *out)
{
    double mx = logits[0], sum = 0;
    for (int j = 1; j < n; j++)
        mx = logits[j] > mx ? logits[j] : mx;
    for (int j = 0; j < n; j++)
        sum += exp((double)logits[j] - mx);
    double lse = mx + log(sum);
    for (int j = 0; j < n; j++)
        out[j] = (double)logits[j] - lse;
}

/* The BIO transitions of the slot labels: I-X may follow only B-X or I-X (and so never
 * starts a sentence); everything else may follow anything. UNK (id 0) is never chosen. */
static int bio_table(is_state *s, bc_err *e)
{
    if (s->may)
        return 0;
    int L = s->slots.n;
    if (!(s->may = calloc((size_t)(L + 1) * (size_t)L, 1)))
        return bc_errf(e, "out of memory");
    for (int p = -1; p < L; p++) {
        const char *pt = p >= 0 ? s->slots.name[p] : "O";
        for (int j = 1; j < L; j++) {
            const char *jt = s->slots.name[j];
            int ok = 1;
            if (jt[0] == 'I' && jt[1] == '-')
                ok = (pt[0] == 'B' || pt[0] == 'I') && pt[1] == '-' &&
                     !strcmp(pt + 2, jt + 2);
            s->may[(size_t)(p + 1) * (size_t)L + (size_t)j] = (unsigned char)ok;
        }
    }
    return 0;
}

/* Viterbi over n words: lp[w*L + j] is log p(tag j | word w); writes the most likely
 * sequence allowed by s->may into tags[0..n). A label list with no allowed path (one
 * without O and B- tags) leaves tags as they are. */
static int bio_decode(const is_state *s, const double *lp, int n, int *tags, bc_err *e)
{
    int L = s->slots.n;
    double *score = malloc((size_t)n * (size_t)L * sizeof *score);
    int *back = malloc((size_t)n * (size_t)L * sizeof *back);
    if (!score || !back) {
        free(score);
        free(back);
        return bc_errf(e, "out of memory");
    }
    for (int w = 0; w < n; w++)
        for (int j = 1; j < L; j++) {
            double best = -INFINITY;
            int arg = -1;
            if (w == 0) {
                if (s->may[j])
                    best = 0;
            } else {
                for (int p = 1; p < L; p++) {
                    double v = score[(size_t)(w - 1) * L + p];
                    if (v > best && s->may[(size_t)(p + 1) * L + j])
                        best = v, arg = p;
                }
            }
            score[(size_t)w * L + j] = best + lp[(size_t)w * L + j];
            back[(size_t)w * L + j] = arg;
        }
    int j = 1;
    for (int k = 2; k < L; k++)
        if (score[(size_t)(n - 1) * L + k] > score[(size_t)(n - 1) * L + j])
            j = k;
    for (int w = n - 1; w >= 0 && isfinite(score[(size_t)(n - 1) * L + j]); w--) {
        tags[w] = j;
        j = back[(size_t)w * L + j];
    }
    free(score);
    free(back);
    return 0;
}

/* Runs forward on sentences x[0..b) and writes each one's intent id, and the tag id of
 * every word (-1 for words cut off) into tags (sentence i's at toff[i]). Probabilities
 * (may be NULL) likewise. */
static int run_batch(is_state *s, const tk_is_sentence *x, int b, tk_forward_fn fwd,
                     void *fctx, int *intent, double *intent_p, int *tags, double *tag_p,
                     const int *toff, int *cut, bc_err *e)
{
    int S = 2; /* the longest row of the batch */
    int *len = malloc((size_t)b * sizeof *len);
    if (!len)
        return bc_errf(e, "out of memory");
    tk_is_data d = {(tk_is_sentence *)x, b};
    if (encoded_lengths(s, &d, len, e)) {
        free(len);
        return -1;
    }
    for (int i = 0; i < b; i++)
        S = len[i] > S ? len[i] : S;
    free(len);
    int64_t shape[2] = {b, S};
    rt_tensor_list in, out;
    rt_list_init(&in);
    rt_list_init(&out);
    int rc = -1, nw = 0;
    for (int i = 0; i < b; i++)
        nw += x[i].n_words;
    int *pos = malloc(((size_t)nw + 1) * sizeof *pos);
    rt_tensor *ids = rt_list_add(&in, "input_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tt = rt_list_add(&in, "token_type_ids", RT_I64, 2, shape, NULL);
    rt_tensor *mask = rt_list_add(&in, "attention_mask", RT_I64, 2, shape, NULL);
    if (!pos || !ids || !tt || !mask) {
        bc_errf(e, "out of memory");
        goto done;
    }
    for (int i = 0, at = 0; i < b; i++) {
        if (encode_row(s, &x[i], S, (int64_t *)ids->data + (size_t)i * (size_t)S,
                       (int64_t *)mask->data + (size_t)i * (size_t)S, NULL, pos + at, cut,
                       e))
            goto done;
        at += x[i].n_words;
    }
    if (fwd(fctx, &in, &out, e))
        goto done;
    int C = s->intents.n, L = s->slots.n;
    const rt_tensor *il = get_out(&out, "intent_logits", 2, b, C, 0, e);
    const rt_tensor *sl = il ? get_out(&out, "slot_logits", 3, b, S, L, e) : NULL;
    if (!sl)
        goto done;
    for (int i = 0, at = 0; i < b; i++) {
        const float *li = (const float *)il->data + (size_t)i * (size_t)C; /* [C] */
        intent[i] = argmax_known(li, C);
        if (intent_p)
            intent_p[i] = softmax_at(li, C, intent[i]);
        for (int w = 0; w < x[i].n_words; w++, at++) {
            int p = pos[at], k = toff[i] + w;
            if (p < 0) {
                tags[k] = -1;
                if (tag_p)
                    tag_p[k] = 0;
                continue;
            }
            const float *ls = (const float *)sl->data +
                              ((size_t)i * (size_t)S + (size_t)p) * (size_t)L; /* [L] */
            tags[k] = argmax_known(ls, L);
            if (tag_p)
                tag_p[k] = softmax_at(ls, L, tags[k]);
        }
        if (s->bio && L > 1) {
            /* The words that were not cut off are a prefix of the sentence. */
            int n = 0, k0 = toff[i];
            while (n < x[i].n_words && pos[at - x[i].n_words + n] >= 0)
                n++;
            if (n == 0)
                continue;
            double *lp = malloc((size_t)n * (size_t)L * sizeof *lp);
            if (!lp) {
                bc_errf(e, "out of memory");
                goto done;
            }
            for (int w = 0; w < n; w++) {
                const float *ls =
                    (const float *)sl->data +
                    ((size_t)i * (size_t)S + (size_t)pos[at - x[i].n_words + w]) *
                        (size_t)L;
                log_softmax(ls, L, lp + (size_t)w * L);
            }
            int bad = bio_table(s, e) || bio_decode(s, lp, n, tags + k0, e);
            if (!bad && tag_p)
                for (int w = 0; w < n; w++)
                    tag_p[k0 + w] = exp(lp[(size_t)w * L + tags[k0 + w]]);
            free(lp);
            if (bad)
                goto done;
        }
    }
    rc = 0;
done:
    free(pos);
    rt_list_free(&in);
    rt_list_free(&out);
    return rc;
}

static const char *tag_name(const is_state *s, int id)
{
    return id < 0 ? "O" : s->slots.name[id];
}

static int is_evaluate(void *state, tk_split sp, int batch_size, tk_forward_fn fwd,
                       void *fctx, const tk_shard *shard, tk_metrics *m, bc_err *e)
{
    is_state *s = state;
    if (ensure_split(s, sp, e))
        return -1;
    const tk_is_data *d = &s->split[sp];
    if (batch_size < 1)
        batch_size = 32;
    int n = d->n, rc = -1, cut = 0, nb = (n + batch_size - 1) / batch_size;
    /* What the batches give (zero where another shard ran them, until merged): intent
     * [n], tags [words] (-1 for words cut off), cuts [nb] (truncated sentences per
     * batch). */
    int *toff = malloc(((size_t)n + 1) * sizeof *toff);
    int *intent = calloc((size_t)n + 1, sizeof *intent);
    int *cuts = calloc((size_t)nb + 1, sizeof *cuts);
    tk_is_example *ex = malloc(((size_t)n + 1) * sizeof *ex);
    int *tags = NULL;
    const char **pred = NULL;
    if (!toff || !intent || !cuts || !ex)
        goto oom;
    toff[0] = 0;
    for (int i = 0; i < n; i++)
        toff[i + 1] = toff[i] + d->s[i].n_words;
    tags = calloc((size_t)toff[n] + 1, sizeof *tags);
    pred = malloc(((size_t)toff[n] + 1) * sizeof *pred);
    if (!tags || !pred)
        goto oom;
    for (int k = 0, i = 0; i < n; k++, i += batch_size) {
        int b = n - i < batch_size ? n - i : batch_size;
        if (!tk_shard_mine(shard, k))
            continue;
        if (run_batch(s, d->s + i, b, fwd, fctx, intent + i, NULL, tags, NULL, toff + i,
                      &cuts[k], e)) {
            bc_err_prefix(e, "%s/%s, sentences %d-%d", s->data_dir, tk_split_name(sp),
                          i + 1, i + b);
            goto done;
        }
    }
    if (tk_shard_merge(shard, intent, (size_t)n * sizeof *intent, e) ||
        tk_shard_merge(shard, tags, (size_t)toff[n] * sizeof *tags, e) ||
        tk_shard_merge(shard, cuts, (size_t)nb * sizeof *cuts, e))
        goto done;
    for (int k = 0; k < nb; k++)
        cut += cuts[k];
    note_truncation(s, sp, cut);
    for (int i = 0; i < n; i++) {
        for (int w = 0; w < d->s[i].n_words; w++)
            pred[toff[i] + w] = tag_name(s, tags[toff[i] + w]);
        ex[i] = (tk_is_example){d->s[i].intent, s->intents.name[intent[i]], d->s[i].n_words,
                                (const char *const *)d->s[i].tags, pred + toff[i]};
    }
    tk_is_scores sc;
    if (tk_intent_slot_eval(ex, n, &sc, e))
        goto done;
    memset(m, 0, sizeof *m);
    tk_metrics_add(m, "intent_accuracy", sc.intent_accuracy);
    tk_metrics_add(m, "slot_precision", sc.slot.precision);
    tk_metrics_add(m, "slot_recall", sc.slot.recall);
    tk_metrics_add(m, "slot_f1", sc.slot.f1);
    tk_metrics_add(m, "frame_accuracy", sc.frame_accuracy);
    m->examples = n;
    rc = 0;
    goto done;
oom:
    bc_errf(e, "out of memory");
done:
    free(toff);
    free(intent);
    free(cuts);
    free(ex);
    free(tags);
    free(pred);
    return rc;
}

/* The type of a BIO tag ("B-artist" -> "artist"), or NULL for O and untyped tags. */
static const char *tag_type(const char *tag)
{
    const char *h = strchr(tag, '-');
    return h && h[1] ? h + 1 : NULL;
}

static int is_predict(void *state, const char *text, const char *pair, tk_forward_fn fwd,
                      void *fctx, json_t **out, bc_err *e)
{
    is_state *s = state;
    *out = NULL;
    if (pair)
        return bc_errf(e, "intent-slot takes one text, not a pair");
    tk_is_sentence x = {0};
    int *starts = NULL, rc = -1, cut = 0, intent = 0;
    double ip = 0;
    int nw = split_words(text, &x.words, &starts);
    if (nw < 0)
        return bc_errf(e, "out of memory");
    x.n_words = nw;
    int *tags = malloc(((size_t)nw + 1) * sizeof *tags);
    double *tp = malloc(((size_t)nw + 1) * sizeof *tp);
    json_t *j = NULL;
    int toff = 0;
    if (!tags || !tp) {
        bc_errf(e, "out of memory");
        goto done;
    }
    if (run_batch(s, &x, 1, fwd, fctx, &intent, &ip, tags, tp, &toff, &cut, e))
        goto done;
    if (cut)
        note(s, "the text is longer than --max-seq %d tokens: its last words were cut off",
             s->max_seq);
    json_t *slots = json_array(), *tg = json_array();
    j = json_pack("{s:s, s:s, s:f, s:o, s:o}", "text", text, "intent",
                  s->intents.name[intent], "intent_probability", ip, "slots", slots, "tags",
                  tg);
    if (!j) {
        bc_errf(e, "out of memory (or the text is not valid UTF-8)");
        goto done;
    }
    /* Chunks as conlleval sees them: B- starts one, I- continues one of its type (and
     * starts one otherwise), O and the end of the text end it. */
    const char *open_type = NULL;
    int c0 = 0;
    double cp = 1;
    for (int w = 0; w <= nw; w++) {
        const char *tag = w < nw ? tag_name(s, tags[w]) : "O";
        const char *ty = tag_type(tag);
        int cont = ty && open_type && tag[0] == 'I' && !strcmp(ty, open_type);
        if (open_type && !cont) {
            int b = starts[c0], end = starts[w - 1] + (int)strlen(x.words[w - 1]);
            json_t *c =
                json_pack("{s:s, s:s%, s:i, s:i, s:f}", "slot", open_type, "text", text + b,
                          (size_t)(end - b), "start", b, "end", end, "probability", cp);
            if (!c || json_array_append_new(slots, c)) {
                bc_errf(e, "out of memory");
                goto done;
            }
            open_type = NULL;
        }
        if (w == nw)
            break;
        json_array_append_new(tg, json_string(tag));
        if (ty && !cont) {
            open_type = ty;
            c0 = w;
            cp = tp[w];
        } else if (cont) {
            cp = tp[w] < cp ? tp[w] : cp;
        }
    }
    *out = j;
    j = NULL;
    rc = 0;
done:
    json_decref(j);
    free_words(x.words, nw);
    free(starts);
    free(tags);
    free(tp);
    return rc;
}

static int is_print(void *state, const json_t *p, FILE *f)
{
    (void)state;
    fprintf(f, "intent: %s (%.2f)\n", json_string_value(json_object_get(p, "intent")),
            json_real_value(json_object_get(p, "intent_probability")));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(p, "slots"), i, c)
    {
        fprintf(f, "%s: %s\n", json_string_value(json_object_get(c, "slot")),
                json_string_value(json_object_get(c, "text")));
    }
    return ferror(f) ? -1 : 0;
}

const tk_task_ops tk_task_intent_slot = {
    .name = "intent-slot",
    .about = "joint intent classification and BIO slot tagging "
             "(DIR/{train,dev,test}/{seq.in,seq.out,label})",
    .options = is_options,
    .best_by = is_best_by,
    .eval_outputs = is_outputs,
    .open = is_open,
    .close = is_close,
    .heads = is_heads,
    .option_value = is_option_value,
    .save = is_save,
    .data = is_data,
    .augment = NULL,
    .evaluate = is_evaluate,
    .predict = is_predict,
    .print = is_print,
};
