/* tokenizer.c: vocabulary loading and BERT tokenization with offsets (see tokenizer.h).
 *
 * Every character carries the byte span of the original character it came from, through
 * cleaning, lower-casing and decomposition, so each token knows where it was written.
 *
 * Where utf8proc differs from Python's unicodedata, and what we do about it:
 *  - utf8proc_tolower is the simple lower-case mapping; str.lower is the full one. The
 *    only unconditional full mapping that differs is U+0130 (İ -> i + U+0307), and the
 *    only context-dependent one Python applies is final sigma; both are done here.
 *    "Cased" and "case-ignorable" (for final sigma), which utf8proc lacks, come from
 *    text/unicode.h.
 *  - Canonical decomposition is utf8proc_decompose_char per character, followed by the
 *    canonical reordering of combining marks that NFD does over a string.
 *  - The Unicode version is utf8proc's (15.0 for 2.8); characters assigned later are
 *    "unassigned" here and removed as category Cn, as Python of that version would. */
#include "tokenizer.h"
#include "unicode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "../support/file.h"

/* ---- character classes (Hugging Face's BasicTokenizer) ---------------------------- */

/* _is_control: category C* except tab, newline and carriage return (whitespace). */
static int is_control(int32_t cp)
{
    if (cp == '\t' || cp == '\n' || cp == '\r')
        return 0;
    int c = tx_category(cp);
    return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF ||
           c == UTF8PROC_CATEGORY_CS || c == UTF8PROC_CATEGORY_CO ||
           c == UTF8PROC_CATEGORY_CN;
}

/* _is_whitespace (space, \t \n \r, Zs), plus Zl and Zp, which Python's str.split() and
 * the tokenizers library also split on. */
static int is_space(int32_t cp)
{
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r')
        return 1;
    int c = tx_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL ||
           c == UTF8PROC_CATEGORY_ZP;
}

/* _is_punctuation: the ASCII non-alphanumerics, and categories P*. */
static int is_punct(int32_t cp)
{
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
        (cp >= 123 && cp <= 126))
        return 1;
    int c = tx_category(cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

/* _is_chinese_char: BERT's CJK Unified Ideographs blocks, exactly. */
static int is_cjk(int32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* ---- vocabulary --------------------------------------------------------------------- */

struct tx_vocab {
    int n;          /* ids */
    char *pool;     /* the tokens, each NUL-terminated */
    size_t *off;    /* (n + 1): token i is pool[off[i] .. off[i+1] - 1) */
    int32_t *slots; /* open addressing: id + 1, or 0 for empty */
    size_t mask;
    int special[TX_NSPECIAL];
    int dups;
    size_t max_len; /* longest token, in bytes */
};

static const char *const special_names[TX_NSPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                       "[MASK]"};

const char *tx_special_name(tx_special s)
{
    return (unsigned)s < TX_NSPECIAL ? special_names[s] : "?";
}

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t tok_len(const tx_vocab *v, int id)
{
    return v->off[id + 1] - v->off[id] - 1;
}

/* The slot holding tok, or the empty slot where it would go. */
static size_t find_slot(const tx_vocab *v, const char *tok, size_t len)
{
    size_t i = (size_t)hash_bytes(tok, len) & v->mask;
    for (;; i = (i + 1) & v->mask) {
        int32_t s = v->slots[i];
        if (!s)
            return i;
        int id = s - 1;
        if (tok_len(v, id) == len && !memcmp(v->pool + v->off[id], tok, len))
            return i;
    }
}

int tx_vocab_id(const tx_vocab *v, const char *tok, size_t len)
{
    if (len > v->max_len)
        return -1;
    int32_t s = v->slots[find_slot(v, tok, len)];
    return s ? s - 1 : -1;
}

int tx_vocab_size(const tx_vocab *v)
{
    return v->n;
}

const char *tx_vocab_token(const tx_vocab *v, int id)
{
    return id >= 0 && id < v->n ? v->pool + v->off[id] : NULL;
}

int tx_vocab_special(const tx_vocab *v, tx_special s)
{
    return (unsigned)s < TX_NSPECIAL ? v->special[s] : -1;
}

int tx_vocab_duplicates(const tx_vocab *v)
{
    return v->dups;
}

void tx_vocab_free(tx_vocab *v)
{
    if (!v)
        return;
    free(v->pool);
    free(v->off);
    free(v->slots);
    free(v);
}

/* The first invalid byte of s[0..len), or len when it is all valid UTF-8. */
static size_t utf8_bad(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0)
            return i;
        i += (size_t)k;
    }
    return len;
}

/* Builds the table over n tokens held in pool at off[]; takes ownership of both. */
static tx_vocab *vocab_build(char *pool, size_t *off, int n, const char *name, bc_err *e)
{
    tx_vocab *v = calloc(1, sizeof *v);
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap *= 2;
    if (!v || !(v->slots = calloc(cap, sizeof *v->slots))) {
        free(v);
        free(pool);
        free(off);
        bc_errf(e, "%s: out of memory", name);
        return NULL;
    }
    v->pool = pool;
    v->off = off;
    v->n = n;
    v->mask = cap - 1;
    for (int i = 0; i < n; i++) {
        size_t len = tok_len(v, i);
        if (len > v->max_len)
            v->max_len = len;
        size_t s = find_slot(v, pool + off[i], len);
        if (v->slots[s])
            v->dups++; /* the later line wins, as in transformers' load_vocab */
        v->slots[s] = i + 1;
    }
    for (int s = 0; s < TX_NSPECIAL; s++)
        v->special[s] = tx_vocab_id(v, special_names[s], strlen(special_names[s]));
    if (v->special[TX_UNK] < 0) {
        bc_errf(e, "%s: the vocabulary has no [UNK] token", name);
        tx_vocab_free(v);
        return NULL;
    }
    return v;
}

tx_vocab *tx_vocab_from_list(const char *const *tokens, int n, const char *name, bc_err *e)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += strlen(tokens[i]) + 1;
    char *pool = malloc(total ? total : 1);
    size_t *off = malloc(((size_t)n + 1) * sizeof *off);
    if (!pool || !off) {
        free(pool);
        free(off);
        bc_errf(e, "%s: out of memory", name);
        return NULL;
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(tokens[i]);
        if (utf8_bad(tokens[i], len) != len) {
            free(pool);
            free(off);
            bc_errf(e, "%s: token %d is not valid UTF-8", name, i);
            return NULL;
        }
        off[i] = at;
        memcpy(pool + at, tokens[i], len + 1);
        at += len + 1;
    }
    off[n] = at;
    return vocab_build(pool, off, n, name, e);
}

static tx_vocab *vocab_parse_owned(char *buf, size_t len, const char *path, bc_err *e);

tx_vocab *tx_vocab_load(const char *path, bc_err *e)
{
    FILE *f = bc_fopen_read(path, e);
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    int rerr = ferror(f);
    fclose(f);
    if (!buf || rerr) {
        free(buf);
        bc_errf(e, "%s: %s", path, buf ? "read error" : "out of memory");
        return NULL;
    }
    return vocab_parse_owned(buf, len, path, e);
}

tx_vocab *tx_vocab_parse(const char *text, size_t len, const char *name, bc_err *e)
{
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        bc_errf(e, "%s: out of memory", name);
        return NULL;
    }
    memcpy(buf, text, len);
    return vocab_parse_owned(buf, len, name, e);
}

/* The vocabulary in buf[0..len) (malloc'd; freed here), named path in messages. */
static tx_vocab *vocab_parse_owned(char *buf, size_t len, const char *path, bc_err *e)
{
    if (!len) {
        free(buf);
        bc_errf(e, "%s: empty vocabulary", path);
        return NULL;
    }
    /* Lines end in \n, \r\n or \r (Python's universal newlines); a final line without
     * an end counts too. Tokens are rewritten NUL-terminated in place. */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' || (buf[i] == '\r' && (i + 1 == len || buf[i + 1] != '\n')))
            lines++;
    if (buf[len - 1] != '\n' && buf[len - 1] != '\r')
        lines++;
    if (lines > 0x7fffffff) {
        free(buf);
        bc_errf(e, "%s: more than 2^31-1 lines", path);
        return NULL;
    }
    size_t *off = malloc((lines + 1) * sizeof *off);
    char *pool = malloc(len + 1);
    if (!off || !pool) {
        free(buf);
        free(off);
        free(pool);
        bc_errf(e, "%s: out of memory", path);
        return NULL;
    }
    size_t at = 0, i = 0;
    int n = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r')
            j++;
        const char *why = memchr(buf + i, 0, j - i)           ? "a NUL byte"
                          : utf8_bad(buf + i, j - i) != j - i ? "invalid UTF-8"
                                                              : NULL;
        if (why) {
            free(buf);
            free(off);
            free(pool);
            bc_errf(e, "%s:%d: %s", path, n + 1, why);
            return NULL;
        }
        off[n++] = at;
        memcpy(pool + at, buf + i, j - i);
        at += j - i;
        pool[at++] = 0;
        if (j < len && buf[j] == '\r' && j + 1 < len && buf[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    off[n] = at;
    free(buf);
    return vocab_build(pool, off, n, path, e);
}

int tx_vocab_save(const char *path, const char *const *tokens, int n, bc_err *e)
{
    char tmp[4200];
    FILE *f = bc_atomic_open(path, tmp, sizeof tmp, e);
    if (!f)
        return -1;
    int ok = 1;
    for (int i = 0; i < n && ok; i++)
        ok = fputs(tokens[i], f) >= 0 && fputc('\n', f) != EOF;
    if (!ok) {
        int err = errno;
        bc_atomic_abort(f, tmp);
        return bc_errf(e, "%s: cannot write: %s", path, strerror(err));
    }
    return bc_atomic_commit(f, tmp, path, e);
}

/* ---- tokenizing --------------------------------------------------------------------- */

int tx_tok_strip_accents(const tx_tok_opts *o)
{
    return o->strip_accents < 0 ? o->lowercase != 0 : o->strip_accents != 0;
}

void tx_token_list_free(tx_token_list *l)
{
    free(l->t);
    l->t = NULL;
    l->n = l->cap = 0;
}

static int push_token(tx_token_list *l, int32_t id, int32_t start, int32_t end)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        tx_token *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t)
            return -1;
        l->t = t;
        l->cap = cap;
    }
    l->t[l->n++] = (tx_token){id, start, end};
    return 0;
}

/* A character and the byte span of the original character it came from. */
typedef struct tchar {
    int32_t cp, start, end;
} tchar;

typedef struct tvec {
    tchar *a;
    int n, cap;
} tvec;

static int tv_push(tvec *v, int32_t cp, int32_t start, int32_t end)
{
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 256;
        tchar *a = realloc(v->a, (size_t)cap * sizeof *a);
        if (!a)
            return -1;
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n++] = (tchar){cp, start, end};
    return 0;
}

/* The state of one call: options, scratch buffers, and where words go. */
typedef struct tk {
    const tx_vocab *v; /* NULL: basic tokenizer only, words go to fn */
    int lower, strip;
    tvec raw;  /* cleaned characters of the current stretch of text */
    tvec low;  /* one word, lower-cased */
    tvec norm; /* one word, normalized */
    char *buf; /* UTF-8 of one basic token, from byte 2 ("##" room) */
    int *bpos; /* (chars + 1) byte positions in buf */
    size_t bcap;
    tx_token_list *out;
    tx_word_fn fn;
    void *ctx;
    int fn_rc;
} tk;

static void tk_free(tk *t)
{
    free(t->raw.a);
    free(t->low.a);
    free(t->norm.a);
    free(t->buf);
    free(t->bpos);
}

/* Writes c[0..n) as UTF-8 into t->buf from byte 2; returns the byte length or -1. */
static int encode(tk *t, const tchar *c, int n)
{
    size_t need = 2 + (size_t)n * 4 + 1;
    if (need > t->bcap) {
        char *b = realloc(t->buf, need);
        if (!b)
            return -1;
        t->buf = b;
        int *p = realloc(t->bpos, (need + 1) * sizeof *p);
        if (!p)
            return -1;
        t->bpos = p;
        t->bcap = need;
    }
    int at = 2;
    for (int i = 0; i < n; i++) {
        t->bpos[i] = at;
        at += (int)utf8proc_encode_char(c[i].cp, (utf8proc_uint8_t *)t->buf + at);
    }
    t->bpos[n] = at;
    t->buf[at] = 0;
    return at - 2;
}

static void span(const tchar *c, int n, int32_t *start, int32_t *end)
{
    *start = c[0].start;
    *end = c[0].end;
    for (int i = 1; i < n; i++) {
        if (c[i].start < *start)
            *start = c[i].start;
        if (c[i].end > *end)
            *end = c[i].end;
    }
}

/* WordPiece on one basic token: greedy longest match first, "##" continuations. */
static int wordpiece(tk *t, const tchar *c, int n)
{
    const tx_vocab *v = t->v;
    int32_t s, e;
    span(c, n, &s, &e);
    int unk = v->special[TX_UNK];
    if (n > TX_TOK_MAX_WORD_CHARS)
        return push_token(t->out, unk, s, e);
    if (encode(t, c, n) < 0)
        return -1;
    int first = t->out->n;
    for (int start = 0; start < n;) {
        int end = n, id = -1;
        if (start > 0) {
            /* the bytes before start are never looked at again */
            t->buf[t->bpos[start] - 2] = '#';
            t->buf[t->bpos[start] - 1] = '#';
        }
        int from = start > 0 ? t->bpos[start] - 2 : t->bpos[start];
        while (end > start && (size_t)(t->bpos[end] - from) > v->max_len)
            end--;
        for (; end > start; end--)
            if ((id = tx_vocab_id(v, t->buf + from, (size_t)(t->bpos[end] - from))) >= 0)
                break;
        if (id < 0) {
            t->out->n = first;
            return push_token(t->out, unk, s, e);
        }
        int32_t ps, pe;
        span(c + start, end - start, &ps, &pe);
        if (push_token(t->out, id, ps, pe))
            return -1;
        start = end;
    }
    return 0;
}

/* One basic token (normalized characters). */
static int emit(tk *t, const tchar *c, int n)
{
    if (n <= 0)
        return 0;
    if (t->v)
        return wordpiece(t, c, n);
    int len = encode(t, c, n);
    if (len < 0)
        return -1;
    int32_t s, e;
    span(c, n, &s, &e);
    t->fn_rc = t->fn(t->ctx, t->buf + 2, (size_t)len, s, e);
    return t->fn_rc ? -1 : 0;
}

/* NFD over a word, then every Mn removed. */
static int strip_accents(tvec *in, tvec *out)
{
    out->n = 0;
    for (int i = 0; i < in->n; i++) {
        utf8proc_int32_t d[32];
        int bc = 0;
        utf8proc_ssize_t k =
            utf8proc_decompose_char(in->a[i].cp, d, 32, UTF8PROC_DECOMPOSE, &bc);
        if (k < 1 || k > 32) {
            d[0] = in->a[i].cp;
            k = 1;
        }
        for (utf8proc_ssize_t j = 0; j < k; j++)
            if (tv_push(out, d[j], in->a[i].start, in->a[i].end))
                return -1;
    }
    /* canonical ordering: a stable sort by combining class within each run of marks */
    for (int i = 1; i < out->n; i++) {
        int ci = utf8proc_get_property(out->a[i].cp)->combining_class;
        for (int j = i; ci && j > 0; j--) {
            int cj = utf8proc_get_property(out->a[j - 1].cp)->combining_class;
            if (cj <= ci)
                break;
            tchar x = out->a[j];
            out->a[j] = out->a[j - 1];
            out->a[j - 1] = x;
        }
    }
    /* a mark written as a character of its own is covered by the letter it accents */
    int m = 0;
    for (int i = 0; i < out->n; i++)
        if (tx_category(out->a[i].cp) != UTF8PROC_CATEGORY_MN)
            out->a[m++] = out->a[i];
        else if (m > 0 && out->a[i].end > out->a[m - 1].end)
            out->a[m - 1].end = out->a[i].end;
    out->n = m;
    return 0;
}

/* One whitespace-separated word raw[lo..hi): lower-case, strip accents, split off
 * punctuation, and emit the pieces. */
static int word(tk *t, int lo, int hi)
{
    const tchar *r = t->raw.a;
    tvec *w = &t->low;
    w->n = 0;
    for (int k = lo; k < hi; k++) {
        int32_t cp = r[k].cp;
        if (t->lower) {
            if (cp == 0x130) { /* İ: the one unconditional two-character lower case */
                if (tv_push(w, 0x69, r[k].start, r[k].end))
                    return -1;
                cp = 0x307;
            } else if (cp == 0x3A3) {
                cp = tx_final_sigma(&r->cp, sizeof *r / sizeof r->cp, (size_t)lo,
                                    (size_t)hi, (size_t)k)
                         ? 0x3C2
                         : 0x3C3;
            } else {
                cp = utf8proc_tolower(cp);
            }
        }
        if (tv_push(w, cp, r[k].start, r[k].end))
            return -1;
    }
    if (t->strip) {
        if (strip_accents(w, &t->norm))
            return -1;
        w = &t->norm;
    }
    int run = 0;
    for (int k = 0; k < w->n; k++) {
        int32_t cp = w->a[k].cp;
        int p = is_punct(cp);
        if (p || is_space(cp)) {
            if (emit(t, w->a + run, k - run))
                return -1;
            if (p && emit(t, w->a + k, 1))
                return -1;
            run = k + 1;
        }
    }
    return emit(t, w->a + run, w->n - run);
}

/* Cleans text[s..e) (offsets are into the whole text) and tokenizes it. */
static int stretch(tk *t, const char *text, int32_t s, int32_t e, bc_err *err)
{
    t->raw.n = 0;
    for (int32_t i = s; i < e;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k;
        if ((unsigned char)text[i] < 0x80) {
            cp = (unsigned char)text[i];
            k = 1;
        } else {
            k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, e - i, &cp);
            if (k <= 0)
                return bc_errf(err, "invalid UTF-8 at byte %ld", (long)i);
        }
        int32_t j = i + (int32_t)k;
        if (cp == 0 || cp == 0xFFFD || is_control(cp)) {
            i = j;
            continue;
        }
        if (tv_push(&t->raw, is_space(cp) ? ' ' : cp, i, j))
            return bc_errf(err, "out of memory");
        i = j;
    }
    const tchar *r = t->raw.a;
    int n = t->raw.n;
    for (int i = 0; i < n;) {
        if (r[i].cp == ' ') {
            i++;
            continue;
        }
        int j = i + 1;
        if (!is_cjk(r[i].cp))
            while (j < n && r[j].cp != ' ' && !is_cjk(r[j].cp))
                j++;
        if (word(t, i, j)) {
            if (!t->fn_rc)
                bc_errf(err, "out of memory");
            return -1;
        }
        r = t->raw.a;
        i = j;
    }
    return 0;
}

/* The longest special token that starts at text[i], or -1. */
static int special_at(const tx_vocab *v, const char *text, size_t len, size_t i,
                      size_t *slen)
{
    int best = -1;
    *slen = 0;
    for (int s = 0; s < TX_NSPECIAL; s++) {
        size_t l = strlen(special_names[s]);
        if (v->special[s] >= 0 && l > *slen && l <= len - i &&
            !memcmp(text + i, special_names[s], l)) {
            best = s;
            *slen = l;
        }
    }
    return best;
}

int tx_tokenize(const tx_vocab *v, const tx_tok_opts *o, const char *text, size_t len,
                tx_token_list *out, bc_err *e)
{
    if (len > 0x7fffffff)
        return bc_errf(e, "text of %zu bytes is too long to tokenize", len);
    tk t = {
        .v = v, .lower = o->lowercase != 0, .strip = tx_tok_strip_accents(o), .out = out};
    int first = out->n, rc = 0;
    size_t seg = 0, i = 0;
    while (i < len && !rc) {
        const char *b = memchr(text + i, '[', len - i);
        if (!b) {
            i = len;
            break;
        }
        i = (size_t)(b - text);
        size_t sl;
        int s = special_at(v, text, len, i, &sl);
        if (s < 0) {
            i++;
            continue;
        }
        rc = stretch(&t, text, (int32_t)seg, (int32_t)i, e);
        if (!rc && push_token(out, v->special[s], (int32_t)i, (int32_t)(i + sl)))
            rc = bc_errf(e, "out of memory");
        i += sl;
        seg = i;
    }
    if (!rc)
        rc = stretch(&t, text, (int32_t)seg, (int32_t)len, e);
    tk_free(&t);
    if (rc)
        out->n = first;
    return rc;
}

int tx_tokenize_words(const tx_vocab *v, const tx_tok_opts *o, const char *const *words,
                      int nwords, tx_token_list *out, int *first, bc_err *e)
{
    int start = out->n;
    for (int w = 0; w < nwords; w++) {
        first[w] = out->n;
        size_t len = strlen(words[w]);
        if (tx_tokenize(v, o, words[w], len, out, e)) {
            bc_err_prefix(e, "word %d", w + 1);
            out->n = start;
            return -1;
        }
        if (out->n == first[w] && push_token(out, v->special[TX_UNK], 0, (int32_t)len)) {
            out->n = start;
            return bc_errf(e, "out of memory");
        }
    }
    first[nwords] = out->n;
    return 0;
}

int tx_basic_tokenize(const tx_tok_opts *o, const char *text, size_t len, tx_word_fn fn,
                      void *ctx, bc_err *e)
{
    if (len > 0x7fffffff)
        return bc_errf(e, "text of %zu bytes is too long to tokenize", len);
    tk t = {
        .lower = o->lowercase != 0, .strip = tx_tok_strip_accents(o), .fn = fn, .ctx = ctx};
    int rc = stretch(&t, text, 0, (int32_t)len, e);
    tk_free(&t);
    return rc && t.fn_rc ? t.fn_rc : rc;
}
