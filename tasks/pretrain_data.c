/* pretrain_data.c: BERT's create_pretraining_data.py in C (see pretrain_data.h): a
 * document reader, the in-memory corpus, masking, instance creation, and the streaming
 * variant. Random choices are drawn in the order the Python script draws them. */
#include "pretrain_data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../support/file.h"
#include "../runtime/safetensors.h"
#include "../text/unicode.h"

/* ---- small helpers ----------------------------------------------------------------- */

/* Grows *p (elements of size sz) to hold at least need; 0, or -1 out of memory. */
static int grow(void **p, int64_t *cap, int64_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Python's random.randint(a, b), both ends included. */
static int64_t randint(rt_rng *r, int64_t a, int64_t b)
{
    return a + (int64_t)rt_rng_below(r, (uint64_t)(b - a + 1));
}

/* Python's random.shuffle: Fisher-Yates from the end. */
#define PY_SHUFFLE(T, x, n, r)                                                             \
    do {                                                                                   \
        for (int64_t i_ = (int64_t)(n)-1; i_ > 0; i_--) {                                  \
            int64_t j_ = (int64_t)rt_rng_below((r), (uint64_t)i_ + 1);                     \
            T t_ = (x)[i_];                                                                \
            (x)[i_] = (x)[j_];                                                             \
            (x)[j_] = t_;                                                                  \
        }                                                                                  \
    } while (0)

/* ---- options ----------------------------------------------------------------------- */

int tk_pt_opts_check(const tk_pt_opts *o, bc_err *e)
{
    if (o->max_seq < 5 || o->max_seq > TK_PT_MAX_SEQ_LIMIT)
        return bc_errf(e,
                       "max-seq must be in [5, %d] ([CLS] A [SEP] B [SEP] needs 5), got %d",
                       TK_PT_MAX_SEQ_LIMIT, o->max_seq);
    if (o->max_predictions < 0)
        return bc_errf(e, "max-predictions must be >= 0, got %d", o->max_predictions);
    if (!(o->mask_prob >= 0 && o->mask_prob <= 1))
        return bc_errf(e, "mask-prob must be in [0, 1], got %g", o->mask_prob);
    if (o->dupe_factor < 1)
        return bc_errf(e, "dupe-factor must be >= 1, got %d", o->dupe_factor);
    if (!(o->short_seq_prob >= 0 && o->short_seq_prob <= 1))
        return bc_errf(e, "short-seq-prob must be in [0, 1], got %g", o->short_seq_prob);
    return 0;
}

/* ---- reading documents ----------------------------------------------------------------
 */

struct tk_pt_reader {
    const tx_vocab *v;
    tx_tok_opts t;
    char **paths;
    int npaths, file; /* file: the next to open */
    FILE *f;
    int64_t lineno, lines; /* in the open file; over all files */
    char *line;
    size_t line_cap;
    tx_token_list toks;
    int32_t *ids; /* (cids) the document being read */
    int64_t nids, cids;
    int64_t *seg; /* (cseg) its sentence offsets; nseg + 1 used */
    int64_t nseg, cseg;
};

tk_pt_reader *tk_pt_reader_open(const char *const *paths, int npaths, const tx_vocab *v,
                                const tx_tok_opts *t, bc_err *e)
{
    if (npaths < 1) {
        bc_errf(e, "no corpus files");
        return NULL;
    }
    tk_pt_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->paths = calloc((size_t)npaths, sizeof *r->paths)))
        goto oom;
    r->npaths = npaths;
    for (int i = 0; i < npaths; i++)
        if (!(r->paths[i] = strdup(paths[i])))
            goto oom;
    r->v = v;
    r->t = *t;
    if (grow((void **)&r->seg, &r->cseg, 1, sizeof *r->seg))
        goto oom;
    /* Open the first file now, so a missing file is reported before any work. */
    if (!(r->f = bc_fopen_read(r->paths[0], e))) {
        tk_pt_reader_free(r);
        return NULL;
    }
    r->file = 1;
    return r;
oom:
    bc_errf(e, "out of memory opening the corpus");
    tk_pt_reader_free(r);
    return NULL;
}

static void reader_view(const tk_pt_reader *r, tk_pt_doc *d)
{
    d->ids = r->ids;
    d->seg = r->seg;
    d->nseg = (int)r->nseg;
}

int tk_pt_reader_next(tk_pt_reader *r, tk_pt_doc *doc, bc_err *e)
{
    r->nids = 0;
    r->nseg = 0;
    r->seg[0] = 0;
    for (;;) {
        if (!r->f) {
            if (r->file == r->npaths)
                return 0;
            const char *p = r->paths[r->file];
            if (!(r->f = bc_fopen_read(p, e)))
                return -1;
            r->file++;
            r->lineno = 0;
        }
        const char *path = r->paths[r->file - 1];
        ssize_t n = getline(&r->line, &r->line_cap, r->f);
        if (n < 0) {
            int bad = ferror(r->f);
            fclose(r->f);
            r->f = NULL;
            if (bad)
                return bc_errf(e, "%s: read error", path);
            if (r->nseg) { /* every file ends its last document */
                reader_view(r, doc);
                return 1;
            }
            continue;
        }
        r->lineno++;
        r->lines++;
        if (tx_is_blank_line(r->line, (size_t)n)) {
            if (r->nseg) {
                reader_view(r, doc);
                return 1;
            }
            continue;
        }
        r->toks.n = 0;
        if (tx_tokenize(r->v, &r->t, r->line, (size_t)n, &r->toks, e)) {
            bc_err_prefix(e, "%s:%lld", path, (long long)r->lineno);
            return -1;
        }
        if (!r->toks.n)
            continue; /* BERT skips a line that gives no token */
        if (r->nseg == INT_MAX - 1)
            return bc_errf(e, "%s:%lld: a document of more than %d sentences", path,
                           (long long)r->lineno, INT_MAX - 2);
        if (grow((void **)&r->ids, &r->cids, r->nids + r->toks.n, sizeof *r->ids) ||
            grow((void **)&r->seg, &r->cseg, r->nseg + 2, sizeof *r->seg))
            return bc_errf(e, "%s:%lld: out of memory", path, (long long)r->lineno);
        for (int i = 0; i < r->toks.n; i++)
            r->ids[r->nids++] = r->toks.t[i].id;
        r->seg[++r->nseg] = r->nids;
    }
}

int64_t tk_pt_reader_lines(const tk_pt_reader *r)
{
    return r->lines;
}

void tk_pt_reader_free(tk_pt_reader *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    if (r->paths)
        for (int i = 0; i < r->npaths; i++)
            free(r->paths[i]);
    free(r->paths);
    free(r->line);
    tx_token_list_free(&r->toks);
    free(r->ids);
    free(r->seg);
    free(r);
}

/* ---- the corpus in memory -------------------------------------------------------------
 */

struct tk_pt_corpus {
    int32_t *ids; /* (nids) every token, document after document */
    int64_t nids, cids;
    int64_t *seg; /* (nseg + 1) sentence starts into ids, then the end */
    int64_t nseg, cseg;
    int64_t *first; /* (ndocs + 1) each document's first sentence, then nseg */
    int64_t ndocs, cfirst;
};

tk_pt_corpus *tk_pt_corpus_load(const char *const *paths, int npaths, const tx_vocab *v,
                                const tx_tok_opts *t, tk_pt_progress_fn progress, void *ctx,
                                bc_err *e)
{
    tk_pt_corpus *c = calloc(1, sizeof *c);
    tk_pt_reader *r = NULL;
    if (!c || grow((void **)&c->seg, &c->cseg, 1, sizeof *c->seg) ||
        grow((void **)&c->first, &c->cfirst, 1, sizeof *c->first)) {
        bc_errf(e, "out of memory loading the corpus");
        goto fail;
    }
    c->seg[0] = 0;
    c->first[0] = 0;
    if (!(r = tk_pt_reader_open(paths, npaths, v, t, e)))
        goto fail;
    tk_pt_doc d;
    int rc;
    while ((rc = tk_pt_reader_next(r, &d, e)) == 1) {
        int64_t nt = d.seg[d.nseg];
        if (grow((void **)&c->ids, &c->cids, c->nids + nt, sizeof *c->ids) ||
            grow((void **)&c->seg, &c->cseg, c->nseg + d.nseg + 1, sizeof *c->seg) ||
            grow((void **)&c->first, &c->cfirst, c->ndocs + 2, sizeof *c->first)) {
            bc_errf(e, "out of memory loading the corpus (%lld documents so far)",
                    (long long)c->ndocs);
            goto fail;
        }
        memcpy(c->ids + c->nids, d.ids, (size_t)nt * sizeof *c->ids);
        for (int i = 1; i <= d.nseg; i++)
            c->seg[c->nseg + i] = c->nids + d.seg[i];
        c->nids += nt;
        c->nseg += d.nseg;
        c->first[++c->ndocs] = c->nseg;
        if (progress && c->ndocs % 1000 == 0)
            progress(ctx, c->ndocs, 0);
    }
    if (rc < 0)
        goto fail;
    tk_pt_reader_free(r);
    return c;
fail:
    tk_pt_reader_free(r);
    tk_pt_corpus_free(c);
    return NULL;
}

int64_t tk_pt_corpus_docs(const tk_pt_corpus *c)
{
    return c->ndocs;
}

int64_t tk_pt_corpus_sentences(const tk_pt_corpus *c)
{
    return c->nseg;
}

int64_t tk_pt_corpus_tokens(const tk_pt_corpus *c)
{
    return c->nids;
}

tk_pt_doc tk_pt_corpus_doc(const tk_pt_corpus *c, int64_t k)
{
    tk_pt_doc d = {c->ids, c->seg + c->first[k], (int)(c->first[k + 1] - c->first[k])};
    return d;
}

void tk_pt_corpus_free(tk_pt_corpus *c)
{
    if (!c)
        return;
    free(c->ids);
    free(c->seg);
    free(c->first);
    free(c);
}

/* ---- masking ------------------------------------------------------------------------ */

struct tk_pt_masker {
    int vocab;          /* size: random replacements are uniform in [0, vocab) */
    int cls, sep, mask; /* ids */
    int pad;            /* the padding id: [PAD], or 0 without one */
    int pad_special;    /* [PAD]'s id, never a candidate; -1 without one */
    uint8_t *cont;      /* (vocab) 1 for "##" pieces */
    double mask_prob;
    int max_predictions, whole_word;
};

tk_pt_masker *tk_pt_masker_new(const tx_vocab *v, const tk_pt_opts *o, bc_err *e)
{
    static const tx_special need[] = {TX_CLS, TX_SEP, TX_MASK};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (tx_vocab_special(v, need[i]) < 0) {
            bc_errf(e, "the vocabulary has no %s token, which pre-training data needs",
                    tx_special_name(need[i]));
            return NULL;
        }
    tk_pt_masker *m = calloc(1, sizeof *m);
    int n = tx_vocab_size(v);
    if (!m || !(m->cont = calloc((size_t)n, 1))) {
        free(m);
        bc_errf(e, "out of memory");
        return NULL;
    }
    m->vocab = n;
    m->cls = tx_vocab_special(v, TX_CLS);
    m->sep = tx_vocab_special(v, TX_SEP);
    m->mask = tx_vocab_special(v, TX_MASK);
    m->pad_special = tx_vocab_special(v, TX_PAD);
    m->pad = m->pad_special < 0 ? 0 : m->pad_special;
    for (int i = 0; i < n; i++)
        m->cont[i] = !strncmp(tx_vocab_token(v, i), "##", 2);
    m->mask_prob = o->mask_prob;
    m->max_predictions = o->max_predictions;
    m->whole_word = o->whole_word;
    return m;
}

void tk_pt_masker_free(tk_pt_masker *m)
{
    if (!m)
        return;
    free(m->cont);
    free(m);
}

int tk_pt_masker_pad(const tk_pt_masker *m)
{
    return m->pad;
}

/* create_masked_lm_predictions on ids[0..n). scratch holds 2n ints: the candidate
 * words' first positions and lengths. */
static int mask_core(const tk_pt_masker *m, int64_t *ids, int64_t *labels, int n, rt_rng *r,
                     int *scratch, tk_pt_mask_stats *st)
{
    int *ws = scratch, *wl = scratch + n, nw = 0, prev = 0;
    int64_t ncand = 0;
    for (int i = 0; i < n; i++) {
        labels[i] = TK_PT_IGNORE;
        int64_t id = ids[i];
        if (id == m->cls || id == m->sep || id == m->pad_special) {
            prev = 0;
            continue;
        }
        ncand++;
        if (m->whole_word && prev && id >= 0 && id < m->vocab && m->cont[id]) {
            wl[nw - 1]++;
        } else {
            ws[nw] = i;
            wl[nw++] = 1;
        }
        prev = 1;
    }
    /* Shuffle (start, length) pairs together. */
    for (int i = nw - 1; i > 0; i--) {
        int j = (int)rt_rng_below(r, (uint64_t)i + 1), t = ws[i];
        ws[i] = ws[j];
        ws[j] = t;
        t = wl[i];
        wl[i] = wl[j];
        wl[j] = t;
    }
    double want = nearbyint((double)n * m->mask_prob); /* Python's round: half to even */
    int64_t k = want < 1 ? 1 : (int64_t)want;
    if (k > m->max_predictions)
        k = m->max_predictions;
    int64_t chosen = 0, to_mask = 0, to_random = 0, kept = 0;
    for (int w = 0; w < nw; w++) {
        if (chosen >= k)
            break;
        if (chosen + wl[w] > k)
            continue;
        for (int i = ws[w]; i < ws[w] + wl[w]; i++) {
            labels[i] = ids[i];
            if (rt_rng_uniform(r) < 0.8) {
                ids[i] = m->mask;
                to_mask++;
            } else if (rt_rng_uniform(r) < 0.5) {
                kept++;
            } else {
                ids[i] = (int64_t)rt_rng_below(r, (uint64_t)m->vocab);
                to_random++;
            }
            chosen++;
        }
    }
    if (st) {
        st->candidates += ncand;
        st->chosen += chosen;
        st->to_mask += to_mask;
        st->to_random += to_random;
        st->kept += kept;
    }
    return (int)chosen;
}

int tk_pt_mask_row(const tk_pt_masker *m, int64_t *ids, int64_t *labels, int n, rt_rng *r,
                   tk_pt_mask_stats *st)
{
    int *scratch = malloc(2 * (size_t)(n > 0 ? n : 1) * sizeof *scratch);
    if (!scratch)
        return -1;
    int k = mask_core(m, ids, labels, n, r, scratch, st);
    free(scratch);
    return k;
}

void tk_pt_unmask_row(int64_t *ids, const int64_t *labels, int n)
{
    for (int i = 0; i < n; i++)
        if (labels[i] != TK_PT_IGNORE)
            ids[i] = labels[i];
}

int tk_pt_remask_batch(const tk_pt_masker *m, rt_tensor_list *batch, rt_rng *r,
                       tk_pt_mask_stats *st, bc_err *e)
{
    rt_tensor *ids = rt_list_find(batch, "input_ids");
    if (!ids)
        return bc_errf(e, "input_ids: missing");
    if (ids->dtype != RT_I64 || ids->rank != 2)
        return bc_errf(e, "input_ids: expected I64 [B, S], got %s of rank %d",
                       rt_dtype_name(ids->dtype), ids->rank);
    int64_t B = ids->shape[0], S = ids->shape[1];
    if (S > INT_MAX / 2)
        return bc_errf(e, "input_ids: rows of %lld tokens are too long", (long long)S);
    const rt_tensor *am = rt_list_cfind(batch, "attention_mask");
    if (am && (!rt_dtype_is_int(am->dtype) || am->rank != 2 || am->shape[0] != B ||
               am->shape[1] != S))
        return bc_errf(e,
                       "attention_mask: expected an integer tensor shaped like input_ids");
    rt_tensor *lab = rt_list_find(batch, "mlm_labels");
    if (lab && (lab->dtype != RT_I64 || lab->rank != 2 || lab->shape[0] != B ||
                lab->shape[1] != S))
        return bc_errf(e, "mlm_labels: expected I64 [%lld, %lld]", (long long)B,
                       (long long)S);
    int64_t *mask = NULL;
    int *scratch = malloc(2 * (size_t)(S > 0 ? S : 1) * sizeof *scratch);
    if (!scratch)
        return bc_errf(e, "out of memory");
    if (am) {
        int rc = (mask = malloc((size_t)(B * S > 0 ? B * S : 1) * sizeof *mask))
                     ? rt_to_i64(am, mask, e)
                     : bc_errf(e, "out of memory");
        if (rc) {
            free(scratch);
            free(mask);
            return -1;
        }
    }
    if (!lab) {
        int64_t shape[2] = {B, S};
        /* Adding may move the list's array: find input_ids again after. */
        if (!(lab = rt_list_add(batch, "mlm_labels", RT_I64, 2, shape, NULL))) {
            free(scratch);
            free(mask);
            return bc_errf(e, "out of memory");
        }
        ids = rt_list_find(batch, "input_ids");
        int64_t *l = lab->data;
        for (int64_t i = 0; i < B * S; i++)
            l[i] = TK_PT_IGNORE;
    }
    int64_t *x = ids->data, *y = lab->data;
    for (int64_t b = 0; b < B; b++) {
        int n = (int)S;
        if (mask) {
            n = 0;
            for (int64_t s = 0; s < S; s++)
                n += mask[b * S + s] != 0;
        }
        tk_pt_unmask_row(x + b * S, y + b * S, (int)S);
        mask_core(m, x + b * S, y + b * S, n, r, scratch, st);
        for (int64_t s = n; s < S; s++)
            y[b * S + s] = TK_PT_IGNORE;
    }
    free(scratch);
    free(mask);
    return 0;
}

/* ---- instances -------------------------------------------------------------------- */

/* Instances as fixed rows of S int32 (only the first len used). */
typedef struct pt_set {
    int S;
    int64_t n, cap;
    int32_t *ids, *lab; /* (cap, S) masked input ids; mlm labels */
    int32_t *len, *na;  /* (cap) real tokens; tokens of type 0 ([CLS] A [SEP]) */
    uint8_t *nsp;       /* (cap) 0 IsNext, 1 NotNext */
} pt_set;

static void set_free(pt_set *s)
{
    free(s->ids);
    free(s->lab);
    free(s->len);
    free(s->na);
    free(s->nsp);
    memset(s, 0, sizeof *s);
}

static int set_reserve(pt_set *s, int64_t need)
{
    if (need <= s->cap)
        return 0;
    int64_t c = s->cap ? s->cap : 256;
    while (c < need)
        c *= 2;
    int32_t *ids = realloc(s->ids, (size_t)(c * s->S) * sizeof *ids);
    if (ids)
        s->ids = ids;
    int32_t *lab = realloc(s->lab, (size_t)(c * s->S) * sizeof *lab);
    if (lab)
        s->lab = lab;
    int32_t *len = realloc(s->len, (size_t)c * sizeof *len);
    if (len)
        s->len = len;
    int32_t *na = realloc(s->na, (size_t)c * sizeof *na);
    if (na)
        s->na = na;
    uint8_t *nsp = realloc(s->nsp, (size_t)c);
    if (nsp)
        s->nsp = nsp;
    if (!ids || !lab || !len || !na || !nsp)
        return -1;
    s->cap = c;
    return 0;
}

/* Moves row j to row i (i, j < n). */
static void set_move(pt_set *s, int64_t i, int64_t j)
{
    if (i == j)
        return;
    memcpy(s->ids + i * s->S, s->ids + j * s->S, (size_t)s->len[j] * sizeof *s->ids);
    memcpy(s->lab + i * s->S, s->lab + j * s->S, (size_t)s->len[j] * sizeof *s->lab);
    s->len[i] = s->len[j];
    s->na[i] = s->na[j];
    s->nsp[i] = s->nsp[j];
}

/* What making instances needs besides the documents. */
typedef struct pt_gen {
    const tk_pt_opts *o;
    const tk_pt_masker *m;
    int64_t *row, *lab; /* (S) scratch: one instance */
    int *scratch;       /* (2S) for mask_core */
    tk_pt_stats *st;
} pt_gen;

static int gen_init(pt_gen *g, const tk_pt_opts *o, const tk_pt_masker *m, tk_pt_stats *st)
{
    g->o = o;
    g->m = m;
    g->st = st;
    g->row = malloc((size_t)o->max_seq * sizeof *g->row);
    g->lab = malloc((size_t)o->max_seq * sizeof *g->lab);
    g->scratch = malloc(2 * (size_t)o->max_seq * sizeof *g->scratch);
    return g->row && g->lab && g->scratch ? 0 : -1;
}

static void gen_free(pt_gen *g)
{
    free(g->row);
    free(g->lab);
    free(g->scratch);
}

/* create_instances_from_document for pool[di]; NotNext segments come from the pool. */
static int from_document(pt_gen *g, const tk_pt_doc *pool, int64_t npool, int64_t di,
                         rt_rng *r, pt_set *out)
{
    const tk_pt_doc *d = &pool[di];
    const int max_tok = g->o->max_seq - 3;
    int64_t target = max_tok;
    if (rt_rng_uniform(r) < g->o->short_seq_prob)
        target = randint(r, 2, max_tok);
    int first = 0, nchunk = 0;
    int64_t cur = 0;
    for (int i = 0; i < d->nseg; i++) {
        if (!nchunk)
            first = i;
        nchunk++;
        cur += d->seg[i + 1] - d->seg[i];
        if (i < d->nseg - 1 && cur < target)
            continue;
        int a_end = nchunk >= 2 ? (int)randint(r, 1, nchunk - 1) : 1;
        const int32_t *a = d->ids, *b;
        int64_t a_lo = d->seg[first], a_hi = d->seg[first + a_end], b_lo, b_hi;
        int random_next = nchunk == 1 || rt_rng_uniform(r) < 0.5;
        if (random_next) {
            int64_t target_b = target - (a_hi - a_lo), rdi = 0;
            for (int t = 0; t < 10; t++) /* BERT's ten tries at another document */
                if ((rdi = randint(r, 0, npool - 1)) != di)
                    break;
            const tk_pt_doc *rd = &pool[rdi];
            int start = (int)randint(r, 0, rd->nseg - 1);
            b = rd->ids;
            b_lo = b_hi = rd->seg[start];
            for (int j = start; j < rd->nseg; j++) {
                b_hi = rd->seg[j + 1];
                if (b_hi - b_lo >= target_b)
                    break;
            }
            i -= nchunk - a_end; /* put the unused segments back */
        } else {
            b = d->ids;
            b_lo = d->seg[first + a_end];
            b_hi = d->seg[first + nchunk];
        }
        nchunk = 0;
        cur = 0;
        /* truncate_seq_pair */
        int truncated = 0;
        while ((a_hi - a_lo) + (b_hi - b_lo) > max_tok) {
            truncated = 1;
            int64_t *lo = &b_lo, *hi = &b_hi;
            if (a_hi - a_lo > b_hi - b_lo) {
                lo = &a_lo;
                hi = &a_hi;
            }
            if (rt_rng_uniform(r) < 0.5)
                ++*lo;
            else
                --*hi;
        }
        int la = (int)(a_hi - a_lo), n = 0;
        int64_t *row = g->row;
        row[n++] = g->m->cls;
        for (int64_t k = a_lo; k < a_hi; k++)
            row[n++] = a[k];
        row[n++] = g->m->sep;
        for (int64_t k = b_lo; k < b_hi; k++)
            row[n++] = b[k];
        row[n++] = g->m->sep;
        mask_core(g->m, row, g->lab, n, r, g->scratch, &g->st->mask);
        if (set_reserve(out, out->n + 1))
            return -1;
        int64_t at = out->n++;
        for (int k = 0; k < n; k++) {
            out->ids[at * out->S + k] = (int32_t)row[k];
            out->lab[at * out->S + k] = (int32_t)g->lab[k];
        }
        out->len[at] = n;
        out->na[at] = la + 2;
        out->nsp[at] = (uint8_t)random_next;
        g->st->instances++;
        g->st->is_next += !random_next;
        g->st->truncated += truncated;
    }
    return 0;
}

/* The five batch tensors [n, S] (nsp_labels [n]) appended to out; their data in t[5]. */
static int batch_alloc(rt_tensor_list *out, int64_t n, int S, int64_t *t[5], bc_err *e)
{
    static const char *const names[5] = {"input_ids", "token_type_ids", "attention_mask",
                                         "mlm_labels", "nsp_labels"};
    int64_t shape[2] = {n, S};
    for (int k = 0; k < 5; k++)
        if (!rt_list_add(out, names[k], RT_I64, k < 4 ? 2 : 1, shape, NULL))
            return bc_errf(e, "out of memory for %lld rows of %d", (long long)n, S);
    for (int k = 0; k < 5; k++)
        t[k] = rt_list_find(out, names[k])->data;
    return 0;
}

/* Row j of s into row i of the batch t. */
static void batch_fill(int64_t *t[5], int64_t i, const pt_set *s, int64_t j, int pad)
{
    int S = s->S, n = s->len[j];
    const int32_t *ids = s->ids + j * S, *lab = s->lab + j * S;
    int64_t *x = t[0] + i * S, *tt = t[1] + i * S, *am = t[2] + i * S, *y = t[3] + i * S;
    for (int k = 0; k < S; k++) {
        x[k] = k < n ? ids[k] : pad;
        tt[k] = k < n && k >= s->na[j];
        am[k] = k < n;
        y[k] = k < n ? lab[k] : TK_PT_IGNORE;
    }
    t[4][i] = s->nsp[j];
}

int tk_pt_create(const tk_pt_corpus *c, const tx_vocab *v, const tk_pt_opts *o, rt_rng *r,
                 rt_tensor_list *out, tk_pt_stats *st, tk_pt_progress_fn progress,
                 void *ctx, bc_err *e)
{
    if (tk_pt_opts_check(o, e))
        return -1;
    tk_pt_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    st->documents = c->ndocs;
    st->sentences = c->nseg;
    st->tokens = c->nids;
    tk_pt_masker *m = tk_pt_masker_new(v, o, e);
    if (!m)
        return -1;
    int rc = -1;
    pt_set set = {.S = o->max_seq};
    pt_gen g = {0};
    int64_t *order = NULL;
    tk_pt_doc *docs = malloc((size_t)(c->ndocs ? c->ndocs : 1) * sizeof *docs);
    if (!docs || gen_init(&g, o, m, st))
        goto oom;
    for (int64_t k = 0; k < c->ndocs; k++)
        docs[k] = tk_pt_corpus_doc(c, k);
    PY_SHUFFLE(tk_pt_doc, docs, c->ndocs, r);
    for (int dupe = 0; dupe < o->dupe_factor; dupe++)
        for (int64_t k = 0; k < c->ndocs; k++) {
            if (from_document(&g, docs, c->ndocs, k, r, &set))
                goto oom;
            int64_t done = (int64_t)dupe * c->ndocs + k + 1;
            if (progress && done % 1000 == 0)
                progress(ctx, done, set.n);
        }
    if (!(order = malloc((size_t)(set.n ? set.n : 1) * sizeof *order)))
        goto oom;
    for (int64_t k = 0; k < set.n; k++)
        order[k] = k;
    PY_SHUFFLE(int64_t, order, set.n, r);
    int64_t *t[5];
    if (batch_alloc(out, set.n, o->max_seq, t, e))
        goto done;
    for (int64_t k = 0; k < set.n; k++)
        batch_fill(t, k, &set, order[k], m->pad);
    rc = 0;
    goto done;
oom:
    bc_errf(e, "out of memory making pre-training instances (%lld so far)",
            (long long)set.n);
done:
    free(order);
    free(docs);
    gen_free(&g);
    set_free(&set);
    tk_pt_masker_free(m);
    return rc;
}

/* ---- a data file ------------------------------------------------------------------ */

int tk_pt_write_file(const tk_pt_file_opts *o, const tx_vocab *v, const char *out,
                     tk_pt_stats *st, bc_err *e)
{
    if (o->phase)
        o->phase(o->ctx, "reading", 0);
    tk_pt_corpus *c =
        tk_pt_corpus_load(o->corpus, o->ncorpus, v, &o->tok, o->progress, o->ctx, e);
    if (!c)
        return -1;
    rt_tensor_list batch;
    rt_list_init(&batch);
    int rc = -1;
    if (!tk_pt_corpus_docs(c)) {
        bc_errf(e, "the corpus has no text (one sentence per line, blank lines between "
                   "documents)");
        goto done;
    }
    if (o->phase)
        o->phase(o->ctx, "making instances", tk_pt_corpus_docs(c) * o->pt.dupe_factor);
    rt_rng r;
    rt_rng_seed(&r, o->seed);
    if (tk_pt_create(c, v, &o->pt, &r, &batch, st, o->progress, o->ctx, e))
        goto done;
    if (o->phase)
        o->phase(o->ctx, NULL, 0);
    rc = rt_st_save(out, &batch, e) ? -1 : 0;
done:
    rt_list_free(&batch);
    tk_pt_corpus_free(c);
    return rc;
}

/* ---- streaming ---------------------------------------------------------------------- */

typedef struct pt_wdoc { /* a document of the window, owning its arrays */
    int32_t *ids;
    int64_t *seg;
    int64_t cids, cseg;
} pt_wdoc;

struct tk_pt_stream {
    tk_pt_reader *rd;
    tk_pt_opts o;
    tk_pt_masker *m;
    rt_rng rng;
    int window, shuffle;
    pt_wdoc *w;      /* (window) documents; the first nw are live */
    tk_pt_doc *pool; /* (window) views of them */
    int nw;          /* documents still to make instances of: slots [0, nw) */
    int npool;       /* slots filled; [nw, npool) are done, kept as NotNext sources */
    pt_set buf;      /* the shuffle buffer */
    pt_gen g;
    tk_pt_stats st;
};

/* Copies the reader's document into window slot k. */
static int wdoc_set(tk_pt_stream *s, int k, const tk_pt_doc *d)
{
    pt_wdoc *w = &s->w[k];
    int64_t nt = d->seg[d->nseg];
    if (grow((void **)&w->ids, &w->cids, nt, sizeof *w->ids) ||
        grow((void **)&w->seg, &w->cseg, d->nseg + 1, sizeof *w->seg))
        return -1;
    memcpy(w->ids, d->ids, (size_t)nt * sizeof *w->ids);
    memcpy(w->seg, d->seg, (size_t)(d->nseg + 1) * sizeof *w->seg);
    s->pool[k] = (tk_pt_doc){w->ids, w->seg, d->nseg};
    s->st.documents++;
    s->st.sentences += d->nseg;
    s->st.tokens += nt;
    return 0;
}

void tk_pt_stream_free(tk_pt_stream *s)
{
    if (!s)
        return;
    tk_pt_reader_free(s->rd);
    tk_pt_masker_free(s->m);
    if (s->w)
        for (int k = 0; k < s->window; k++) {
            free(s->w[k].ids);
            free(s->w[k].seg);
        }
    free(s->w);
    free(s->pool);
    set_free(&s->buf);
    gen_free(&s->g);
    free(s);
}

tk_pt_stream *tk_pt_stream_open(const char *const *paths, int npaths, const tx_vocab *v,
                                const tx_tok_opts *t, const tk_pt_opts *o, int window,
                                int shuffle, uint64_t seed, bc_err *e)
{
    if (tk_pt_opts_check(o, e))
        return NULL;
    if (window < 2 || shuffle < 1) {
        bc_errf(e,
                "a stream needs a window of >= 2 documents and a shuffle buffer of >= 1 "
                "rows, got %d and %d",
                window, shuffle);
        return NULL;
    }
    tk_pt_stream *s = calloc(1, sizeof *s);
    if (!s) {
        bc_errf(e, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->window = window;
    s->shuffle = shuffle;
    s->buf.S = o->max_seq;
    rt_rng_seed(&s->rng, seed);
    if (!(s->m = tk_pt_masker_new(v, o, e)) ||
        !(s->rd = tk_pt_reader_open(paths, npaths, v, t, e)))
        goto fail;
    if (!(s->w = calloc((size_t)window, sizeof *s->w)) ||
        !(s->pool = calloc((size_t)window, sizeof *s->pool)) ||
        gen_init(&s->g, &s->o, s->m, &s->st)) {
        bc_errf(e, "out of memory");
        goto fail;
    }
    tk_pt_doc d;
    int rc = 0;
    while (s->nw < window && (rc = tk_pt_reader_next(s->rd, &d, e)) == 1) {
        if (wdoc_set(s, s->nw, &d)) {
            bc_errf(e, "out of memory");
            goto fail;
        }
        s->nw++;
    }
    s->npool = s->nw;
    if (rc < 0)
        goto fail;
    return s;
fail:
    tk_pt_stream_free(s);
    return NULL;
}

/* Makes the instances of a random document of the window and replaces it. */
static int stream_step(tk_pt_stream *s, bc_err *e)
{
    int k = (int)rt_rng_below(&s->rng, (uint64_t)s->nw);
    if (from_document(&s->g, s->pool, s->npool, k, &s->rng, &s->buf))
        return bc_errf(e, "out of memory");
    tk_pt_doc d;
    int rc = tk_pt_reader_next(s->rd, &d, e);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return wdoc_set(s, k, &d) ? bc_errf(e, "out of memory") : 0;
    /* The corpus is over: document k is done but stays a NotNext source, so the last
     * documents still find others; the last live one takes its slot. */
    s->nw--;
    pt_wdoc t = s->w[k];
    s->w[k] = s->w[s->nw];
    s->w[s->nw] = t;
    tk_pt_doc v = s->pool[k];
    s->pool[k] = s->pool[s->nw];
    s->pool[s->nw] = v;
    return 0;
}

int tk_pt_stream_next(tk_pt_stream *s, int rows, rt_tensor_list *out, bc_err *e)
{
    if (rows < 1)
        return bc_errf(e, "a batch needs at least one row, got %d", rows);
    rt_list_free(out);
    rt_list_init(out);
    int64_t *t[5];
    if (batch_alloc(out, rows, s->o.max_seq, t, e))
        return -1;
    int n = 0;
    while (n < rows) {
        while (s->buf.n < s->shuffle && s->nw > 0)
            if (stream_step(s, e))
                return -1;
        if (!s->buf.n)
            break;
        int64_t j = (int64_t)rt_rng_below(&s->rng, (uint64_t)s->buf.n);
        batch_fill(t, n++, &s->buf, j, s->m->pad);
        set_move(&s->buf, j, --s->buf.n);
    }
    if (n < rows) { /* shrink to the rows made; the data stays allocated at its size */
        for (int k = 0; k < out->n; k++)
            out->t[k].shape[0] = n;
    }
    return n;
}

void tk_pt_stream_stats(const tk_pt_stream *s, tk_pt_stats *st)
{
    *st = s->st;
}
