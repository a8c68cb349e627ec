/* wordpiece_learn.c: learning a WordPiece vocabulary from a corpus, as Hugging Face's
 * WordPieceTrainer does (it is a BPE trainer whose continuation pieces carry "##").
 *
 * Words come from the basic tokenizer (tokenizer.h) and are counted once each; the
 * alphabet is every character seen, in its word-initial form "c" and its continuation
 * form "##c", most frequent first; then the most frequent adjacent pair of pieces is
 * merged, again and again, until the vocabulary has the size asked for. Merging keeps
 * pair counts up to date incrementally (each pair knows the words it occurs in), and a
 * lazy max-heap picks the next pair, so a corpus of a few megabytes takes seconds.
 *
 * Korean: lower-casing with accent stripping (Hugging Face's default) decomposes every
 * Hangul syllable into jamo, so a vocabulary learned that way is jamo soup. The
 * learner's default is therefore to lower-case but keep accents, which leaves Hangul
 * syllables whole (and English lower-cased); a model using such a vocabulary must be
 * run with --no-strip-accents (or --no-lowercase), so that its text is normalized the
 * same way. */
#define _GNU_SOURCE /* qsort_r */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer.h"
#include "../support/file.h"

/* ---- a string -> index map over a string pool ---------------------------------------- */

typedef struct strmap {
    char *pool; /* strings, each NUL-terminated */
    size_t plen, pcap;
    size_t *off; /* (n): string i starts at pool + off[i] */
    int n, cap;
    int32_t *slots; /* index + 1, or 0 */
    size_t mask;
} strmap;

static uint64_t fnv(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static const char *sm_str(const strmap *m, int i)
{
    return m->pool + m->off[i];
}

static void sm_free(strmap *m)
{
    free(m->pool);
    free(m->off);
    free(m->slots);
}

static size_t sm_slot(const strmap *m, const char *s, size_t len)
{
    for (size_t i = (size_t)fnv(s, len) & m->mask;; i = (i + 1) & m->mask) {
        int32_t k = m->slots[i];
        if (!k)
            return i;
        const char *t = sm_str(m, k - 1);
        if (!strncmp(t, s, len) && !t[len])
            return i;
    }
}

static int sm_find(const strmap *m, const char *s, size_t len)
{
    if (!m->slots)
        return -1;
    int32_t k = m->slots[sm_slot(m, s, len)];
    return k - 1;
}

static int sm_grow(strmap *m)
{
    size_t cap = m->slots ? (m->mask + 1) * 2 : 1024;
    int32_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    for (int i = 0; i < m->n; i++) {
        const char *s = sm_str(m, i);
        m->slots[sm_slot(m, s, strlen(s))] = i + 1;
    }
    return 0;
}

/* The index of s, added if new (*added set); -1 when out of memory. */
static int sm_intern(strmap *m, const char *s, size_t len, int *added)
{
    *added = 0;
    int k = sm_find(m, s, len);
    if (k >= 0)
        return k;
    if ((size_t)(m->n + 1) * 2 > (m->slots ? m->mask + 1 : 0) && sm_grow(m))
        return -1;
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 1024;
        size_t *off = realloc(m->off, (size_t)cap * sizeof *off);
        if (!off)
            return -1;
        m->off = off;
        m->cap = cap;
    }
    if (m->plen + len + 1 > m->pcap) {
        size_t cap = m->pcap ? m->pcap : 1 << 16;
        while (cap < m->plen + len + 1)
            cap *= 2;
        char *p = realloc(m->pool, cap);
        if (!p)
            return -1;
        m->pool = p;
        m->pcap = cap;
    }
    memcpy(m->pool + m->plen, s, len);
    m->pool[m->plen + len] = 0;
    m->off[m->n] = m->plen;
    m->plen += len + 1;
    m->slots[sm_slot(m, s, len)] = m->n + 1;
    *added = 1;
    return m->n++;
}

/* ---- the learner --------------------------------------------------------------------- */

struct tx_vocab_learner {
    tx_vocab_learn_opts o;
    strmap words;      /* distinct words */
    long long *wcount; /* (words.n) occurrences */
    int wcap;
    long long total; /* word occurrences */
};

tx_vocab_learner *tx_vocab_learner_new(const tx_vocab_learn_opts *o, bc_err *e)
{
    if (o->size < TX_NSPECIAL + 1) {
        bc_errf(e, "vocabulary size %d is too small (at least %d)", o->size,
                TX_NSPECIAL + 1);
        return NULL;
    }
    if (o->min_frequency < 1 || o->limit_alphabet < 0) {
        bc_errf(e, "min_frequency must be at least 1 and limit_alphabet not negative");
        return NULL;
    }
    tx_vocab_learner *l = calloc(1, sizeof *l);
    if (!l) {
        bc_errf(e, "out of memory");
        return NULL;
    }
    l->o = *o;
    return l;
}

void tx_vocab_learner_free(tx_vocab_learner *l)
{
    if (!l)
        return;
    sm_free(&l->words);
    free(l->wcount);
    free(l);
}

static int count_word(void *ctx, const char *w, size_t len, int32_t start, int32_t end)
{
    (void)start;
    (void)end;
    tx_vocab_learner *l = ctx;
    int added;
    int k = sm_intern(&l->words, w, len, &added);
    if (k < 0)
        return -1;
    if (k >= l->wcap) {
        int cap = l->wcap ? l->wcap * 2 : 1024;
        long long *c = realloc(l->wcount, (size_t)cap * sizeof *c);
        if (!c)
            return -1;
        l->wcount = c;
        l->wcap = cap;
    }
    if (added)
        l->wcount[k] = 0;
    l->wcount[k]++;
    l->total++;
    return 0;
}

int tx_vocab_learner_add_text(tx_vocab_learner *l, const char *text, size_t len, bc_err *e)
{
    int rc = tx_basic_tokenize(&l->o.tok, text, len, count_word, l, e);
    if (rc > 0)
        return bc_errf(e, "out of memory");
    return rc;
}

int tx_vocab_learner_add_file(tx_vocab_learner *l, const char *path, bc_err *e)
{
    FILE *f = bc_fopen_read(path, e);
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (tx_vocab_learner_add_text(l, line, (size_t)n, e)) {
            bc_err_prefix(e, "%s:%lld", path, lineno);
            rc = -1;
        }
    }
    if (!rc && ferror(f))
        rc = bc_errf(e, "%s: read error", path);
    free(line);
    fclose(f);
    return rc;
}

/* ---- merging ------------------------------------------------------------------------- */

typedef struct pair {
    uint32_t a, b;   /* symbols */
    long long count; /* occurrences over the corpus */
    uint32_t *w;     /* words it occurs (or occurred) in; may repeat */
    int nw, cw;
    int touched;
} pair;

typedef struct heap_item {
    long long count;
    uint32_t pair;
} heap_item;

typedef struct bpe {
    strmap sym; /* symbols (pieces) */
    pair *p;    /* pairs */
    int np, cp;
    int32_t *pslots; /* pair (a, b) -> index + 1 */
    size_t pmask;
    heap_item *h; /* max-heap */
    int nh, ch;
    char *s1, *s2; /* scratch for merged strings */
    size_t scap;
} bpe;

static uint64_t pair_hash(uint32_t a, uint32_t b)
{
    uint64_t x = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ULL;
    return x ^ (x >> 29);
}

static size_t pair_slot(const bpe *m, uint32_t a, uint32_t b)
{
    for (size_t i = (size_t)pair_hash(a, b) & m->pmask;; i = (i + 1) & m->pmask) {
        int32_t k = m->pslots[i];
        if (!k || (m->p[k - 1].a == a && m->p[k - 1].b == b))
            return i;
    }
}

/* The index of pair (a, b), created with count 0 if new; -1 when out of memory. */
static int pair_get(bpe *m, uint32_t a, uint32_t b)
{
    if (m->pslots) {
        int32_t k = m->pslots[pair_slot(m, a, b)];
        if (k)
            return k - 1;
    }
    if ((size_t)(m->np + 1) * 2 > (m->pslots ? m->pmask + 1 : 0)) {
        size_t cap = m->pslots ? (m->pmask + 1) * 2 : 1 << 16;
        int32_t *s = calloc(cap, sizeof *s);
        if (!s)
            return -1;
        free(m->pslots);
        m->pslots = s;
        m->pmask = cap - 1;
        for (int i = 0; i < m->np; i++)
            m->pslots[pair_slot(m, m->p[i].a, m->p[i].b)] = i + 1;
    }
    if (m->np == m->cp) {
        int cap = m->cp ? m->cp * 2 : 1 << 14;
        pair *p = realloc(m->p, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        m->p = p;
        m->cp = cap;
    }
    m->p[m->np] = (pair){.a = a, .b = b};
    m->pslots[pair_slot(m, a, b)] = m->np + 1;
    return m->np++;
}

static int pair_add_word(pair *p, uint32_t w)
{
    if (p->nw && p->w[p->nw - 1] == w)
        return 0;
    if (p->nw == p->cw) {
        int cap = p->cw ? p->cw * 2 : 4;
        uint32_t *x = realloc(p->w, (size_t)cap * sizeof *x);
        if (!x)
            return -1;
        p->w = x;
        p->cw = cap;
    }
    p->w[p->nw++] = w;
    return 0;
}

/* The merged piece of pair i: left + right without its "##". */
static const char *merged(bpe *m, int i, char *buf)
{
    const char *a = sm_str(&m->sym, (int)m->p[i].a), *b = sm_str(&m->sym, (int)m->p[i].b);
    if (b[0] == '#' && b[1] == '#')
        b += 2;
    size_t la = strlen(a), lb = strlen(b);
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb + 1);
    return buf;
}

/* Whether heap item x comes before y: higher count, then smaller merged string, then
 * smaller left piece. */
static int before(bpe *m, const heap_item *x, const heap_item *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    int c = strcmp(merged(m, (int)x->pair, m->s1), merged(m, (int)y->pair, m->s2));
    if (c)
        return c < 0;
    return strcmp(sm_str(&m->sym, (int)m->p[x->pair].a),
                  sm_str(&m->sym, (int)m->p[y->pair].a)) < 0;
}

static int heap_push(bpe *m, long long count, uint32_t pair)
{
    if (m->nh == m->ch) {
        int cap = m->ch ? m->ch * 2 : 1 << 14;
        heap_item *h = realloc(m->h, (size_t)cap * sizeof *h);
        if (!h)
            return -1;
        m->h = h;
        m->ch = cap;
    }
    int i = m->nh++;
    m->h[i] = (heap_item){count, pair};
    while (i > 0) {
        int up = (i - 1) / 2;
        if (!before(m, &m->h[i], &m->h[up]))
            break;
        heap_item t = m->h[i];
        m->h[i] = m->h[up];
        m->h[up] = t;
        i = up;
    }
    return 0;
}

static heap_item heap_pop(bpe *m)
{
    heap_item top = m->h[0];
    m->h[0] = m->h[--m->nh];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, best = i;
        if (l < m->nh && before(m, &m->h[l], &m->h[best]))
            best = l;
        if (r < m->nh && before(m, &m->h[r], &m->h[best]))
            best = r;
        if (best == i)
            break;
        heap_item t = m->h[i];
        m->h[i] = m->h[best];
        m->h[best] = t;
        i = best;
    }
    return top;
}

static void bpe_free(bpe *m)
{
    sm_free(&m->sym);
    for (int i = 0; i < m->np; i++)
        free(m->p[i].w);
    free(m->p);
    free(m->pslots);
    free(m->h);
    free(m->s1);
    free(m->s2);
}

/* A character form seen in the corpus ("c" or "##c") and its count. */
typedef struct form {
    int sym;
    long long count;
} form;

static int form_cmp(const void *x, const void *y, void *syms)
{
    const form *a = x, *b = y;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return strcmp(sm_str(syms, a->sym), sm_str(syms, b->sym));
}

static int is_hangul(int32_t cp)
{
    return (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0x1100 && cp <= 0x11FF) ||
           (cp >= 0x3130 && cp <= 0x318F) || (cp >= 0xA960 && cp <= 0xA97F) ||
           (cp >= 0xD7B0 && cp <= 0xD7FF);
}

/* Appends s (copied) to the output list. */
static int out_push(char ***out, int *n, const char *s)
{
    char **o = realloc(*out, ((size_t)*n + 1) * sizeof *o);
    if (!o)
        return -1;
    *out = o;
    if (!(o[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

#define NOMEM()                                                                            \
    do {                                                                                   \
        rc = bc_errf(e, "out of memory");                                                  \
        goto done;                                                                         \
    } while (0)

int tx_vocab_learner_run(tx_vocab_learner *l, char ***tokens, int *ntok,
                         tx_vocab_learn_stats *stats, bc_err *e)
{
    const tx_vocab_learn_opts *o = &l->o;
    tx_vocab_learn_stats st = {.words = l->total, .unique_words = l->words.n};
    bpe m = {0};
    form *forms = NULL;
    uint32_t *syms = NULL, *stamp = NULL;
    size_t *wofs = NULL;
    int *wlen = NULL, *keep = NULL, *touched = NULL, ntouched = 0;
    long long *fcount = NULL;
    int nw = l->words.n, rc = 0, added;
    char **out = NULL;
    int nout = 0;
    size_t maxlen = 8;

    for (int s = 0; s < TX_NSPECIAL; s++)
        if (out_push(&out, &nout, tx_special_name((tx_special)s)))
            NOMEM();

    /* 1. character forms and their counts; the words as symbol sequences */
    size_t nsym_total = 0;
    for (int w = 0; w < nw; w++) {
        const char *s = sm_str(&l->words, w);
        size_t len = strlen(s);
        if (len > maxlen)
            maxlen = len;
        nsym_total += len; /* an upper bound on characters */
    }
    if (!(syms = malloc((nsym_total + 1) * sizeof *syms)) ||
        !(wofs = malloc(((size_t)nw + 1) * sizeof *wofs)) ||
        !(wlen = malloc(((size_t)nw + 1) * sizeof *wlen)))
        NOMEM();
    size_t at = 0;
    int fcap = 0;
    for (int w = 0; w < nw; w++) {
        const char *s = sm_str(&l->words, w);
        size_t len = strlen(s), i = 0;
        wofs[w] = at;
        char form_buf[8];
        while (i < len) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                                  (utf8proc_ssize_t)(len - i), &cp);
            if (k <= 0) /* words come from the tokenizer, which checked them */
                k = 1;
            int c = utf8proc_category(cp);
            if (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) {
                st.letters += l->wcount[w];
                st.hangul += is_hangul(cp) ? l->wcount[w] : 0;
            }
            size_t fl = 0;
            if (i > 0) {
                form_buf[0] = form_buf[1] = '#';
                fl = 2;
            }
            memcpy(form_buf + fl, s + i, (size_t)k);
            fl += (size_t)k;
            int id = sm_intern(&m.sym, form_buf, fl, &added);
            if (id < 0)
                NOMEM();
            if (id >= fcap) {
                int cap = fcap ? fcap * 2 : 1024;
                long long *fc = realloc(fcount, (size_t)cap * sizeof *fc);
                if (!fc)
                    NOMEM();
                memset(fc + fcap, 0, (size_t)(cap - fcap) * sizeof *fc);
                fcount = fc;
                fcap = cap;
            }
            fcount[id] += l->wcount[w];
            syms[at++] = (uint32_t)id;
            i += (size_t)k;
        }
        wlen[w] = (int)(at - wofs[w]);
    }

    /* 2. the alphabet: most frequent forms first, as many as allowed */
    int nforms = m.sym.n;
    int limit = o->limit_alphabet ? o->limit_alphabet : (o->size - TX_NSPECIAL) / 2;
    if (limit > o->size - TX_NSPECIAL)
        limit = o->size - TX_NSPECIAL;
    if (!(forms = malloc(((size_t)nforms + 1) * sizeof *forms)) ||
        !(keep = calloc((size_t)nforms + 1, sizeof *keep)))
        NOMEM();
    for (int i = 0; i < nforms; i++)
        forms[i] = (form){i, fcount[i]};
    qsort_r(forms, (size_t)nforms, sizeof *forms, form_cmp, &m.sym);
    for (int i = 0; i < nforms; i++) {
        const char *f = sm_str(&m.sym, forms[i].sym);
        if (i >= limit) {
            st.alphabet_dropped++;
            continue;
        }
        keep[forms[i].sym] = 1;
        if (out_push(&out, &nout, f))
            NOMEM();
        st.alphabet++;
    }

    /* 3. pairs over the words made only of kept forms */
    maxlen = maxlen * 2 + 8;
    if (!(m.s1 = malloc(maxlen)) || !(m.s2 = malloc(maxlen)) ||
        !(stamp = calloc((size_t)nw + 1, sizeof *stamp)))
        NOMEM();
    for (int w = 0; w < nw; w++) {
        uint32_t *s = syms + wofs[w];
        int ok = 1;
        for (int i = 0; i < wlen[w] && ok; i++)
            ok = keep[s[i]];
        if (!ok) {
            wlen[w] = 0; /* it would tokenize as [UNK]: it teaches nothing */
            continue;
        }
        for (int i = 0; i + 1 < wlen[w]; i++) {
            int p = pair_get(&m, s[i], s[i + 1]);
            if (p < 0 || pair_add_word(&m.p[p], (uint32_t)w))
                NOMEM();
            m.p[p].count += l->wcount[w];
        }
    }
    for (int p = 0; p < m.np; p++)
        if (m.p[p].count >= o->min_frequency && heap_push(&m, m.p[p].count, (uint32_t)p))
            NOMEM();

    /* 4. merges */
    uint32_t round = 0;
    while (nout < o->size && m.nh > 0) {
        heap_item top = heap_pop(&m);
        pair *pp = &m.p[top.pair];
        if (top.count != pp->count) {
            if (pp->count >= o->min_frequency && heap_push(&m, pp->count, top.pair))
                NOMEM();
            continue;
        }
        uint32_t a = pp->a, b = pp->b;
        char *name = m.s1;
        merged(&m, (int)top.pair, name);
        int c = sm_intern(&m.sym, name, strlen(name), &added);
        if (c < 0)
            NOMEM();
        if (added && out_push(&out, &nout, sm_str(&m.sym, c)))
            NOMEM();
        st.merges++;
        round++;
        uint32_t *where = m.p[top.pair].w;
        int nwhere = m.p[top.pair].nw;
        m.p[top.pair].w = NULL;
        m.p[top.pair].nw = m.p[top.pair].cw = 0;
        for (int k = 0; k < nwhere; k++) {
            uint32_t w = where[k];
            if (stamp[w] == round)
                continue;
            stamp[w] = round;
            uint32_t *s = syms + wofs[w];
            int n = wlen[w], has = 0;
            for (int i = 0; i + 1 < n && !has; i++)
                has = s[i] == a && s[i + 1] == b;
            if (!has)
                continue;
            long long wc = l->wcount[w];
            for (int i = 0; i + 1 < n; i++)
                m.p[pair_get(&m, s[i], s[i + 1])].count -= wc; /* exists: no allocation */
            int j = 0;
            for (int i = 0; i < n; i++) {
                if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                    s[j++] = (uint32_t)c;
                    i++;
                } else {
                    s[j++] = s[i];
                }
            }
            wlen[w] = n = j;
            for (int i = 0; i + 1 < n; i++) {
                int p = pair_get(&m, s[i], s[i + 1]);
                if (p < 0)
                    NOMEM();
                m.p[p].count += wc;
                if (s[i] == (uint32_t)c || s[i + 1] == (uint32_t)c) {
                    if (pair_add_word(&m.p[p], w))
                        NOMEM();
                    if (!m.p[p].touched) {
                        int *t = realloc(touched, ((size_t)ntouched + 1) * sizeof *t);
                        if (!t)
                            NOMEM();
                        touched = t;
                        touched[ntouched++] = p;
                        m.p[p].touched = 1;
                    }
                }
            }
        }
        free(where);
        for (int k = 0; k < ntouched; k++) {
            pair *q = &m.p[touched[k]];
            q->touched = 0;
            if (q->count >= o->min_frequency &&
                heap_push(&m, q->count, (uint32_t)touched[k]))
                NOMEM();
        }
        ntouched = 0;
    }

done:
    bpe_free(&m);
    free(forms);
    free(syms);
    free(stamp);
    free(wofs);
    free(wlen);
    free(keep);
    free(touched);
    free(fcount);
    if (rc) {
        for (int i = 0; i < nout; i++)
            free(out[i]);
        free(out);
        return rc;
    }
    *tokens = out;
    *ntok = nout;
    if (stats)
        *stats = st;
    return 0;
}

int tx_vocab_learn_files(const tx_vocab_learn_opts *o, const char *const *paths, int npaths,
                         const char *out, int *ntok, tx_vocab_learn_stats *stats, bc_err *e)
{
    tx_vocab_learner *l = tx_vocab_learner_new(o, e);
    if (!l)
        return -1;
    int rc = 0;
    for (int i = 0; i < npaths && !rc; i++)
        rc = tx_vocab_learner_add_file(l, paths[i], e);
    char **tokens = NULL;
    int n = 0;
    if (!rc)
        rc = tx_vocab_learner_run(l, &tokens, &n, stats, e);
    if (!rc)
        rc = tx_vocab_save(out, (const char *const *)tokens, n, e);
    for (int i = 0; i < n; i++)
        free(tokens[i]);
    free(tokens);
    tx_vocab_learner_free(l);
    *ntok = n;
    return rc ? -1 : 0;
}
