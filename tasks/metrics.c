/* metrics.c: intent/slot metrics (conlleval), SQuAD/KorQuAD answer scores and QA span
 * decoding (see metrics.h).
 *
 * The conlleval part follows the Perl script line by line (startOfChunk, endOfChunk and
 * the $inCorrect bookkeeping), so that odd inputs (I- after O, type changes inside a
 * chunk, tags without a type) give the script's counts, not a cleaner definition's.
 *
 * The answer normalization works on code points. Where Python's behaviour needs
 * Unicode data that utf8proc lacks, it is derived as in tokenizer.c: str.lower is
 * utf8proc_tolower plus U+0130 and final sigma; re's word characters (for \b) are
 * categories L* and N* and "_"; str.split() whitespace is CPython's list. */
#include "metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "../text/unicode.h"

/* ---- intent + slot ----------------------------------------------------------------- */

static int label_right(const char *gold, const char *pred)
{
    return strcmp(gold, pred) == 0 && strcmp(gold, TK_METRIC_UNK) != 0;
}

int tk_intent_accuracy(const char *const *gold, const char *const *pred, int n, double *acc,
                       bc_err *e)
{
    if (n < 0 || !acc || (n > 0 && (!gold || !pred)))
        return bc_errf(e, "intent accuracy: bad arguments (n = %d)", n);
    long long right = 0;
    for (int i = 0; i < n; i++) {
        if (!gold[i] || !pred[i])
            return bc_errf(e, "intent accuracy: sentence %d: missing label", i);
        right += label_right(gold[i], pred[i]);
    }
    *acc = n ? (double)right / n : 0.0;
    return 0;
}

/* A tag as the script splits it with /^([^-]*)-(.*)$/. */
typedef struct ctag {
    const char *pre, *type;
    size_t npre, ntype;
} ctag;

static ctag parse_tag(const char *s)
{
    ctag c = {s, "", strlen(s), 0};
    const char *h = strchr(s, '-');
    if (h) {
        c.npre = (size_t)(h - s);
        c.type = h + 1;
        c.ntype = strlen(h + 1);
    }
    if (c.ntype == 1 && c.type[0] == '0') { /* `$type ? $type : ""` */
        c.type = "";
        c.ntype = 0;
    }
    return c;
}

static int pre_is(ctag t, const char *p)
{
    return t.npre == strlen(p) && memcmp(t.pre, p, t.npre) == 0;
}

static int type_eq(ctag a, ctag b)
{
    return a.ntype == b.ntype && memcmp(a.type, b.type, a.ntype) == 0;
}

/* conlleval's endOfChunk(prevTag, tag, prevType, type). */
static int end_of_chunk(ctag prev, ctag t)
{
    int end = 0;
    if (pre_is(prev, "B") && pre_is(t, "B"))
        end = 1;
    if (pre_is(prev, "B") && pre_is(t, "O"))
        end = 1;
    if (pre_is(prev, "I") && pre_is(t, "B"))
        end = 1;
    if (pre_is(prev, "I") && pre_is(t, "O"))
        end = 1;
    if (pre_is(prev, "E") && pre_is(t, "E"))
        end = 1;
    if (pre_is(prev, "E") && pre_is(t, "I"))
        end = 1;
    if (pre_is(prev, "E") && pre_is(t, "O"))
        end = 1;
    if (!pre_is(prev, "O") && !pre_is(prev, ".") && !type_eq(prev, t))
        end = 1;
    if (pre_is(prev, "]") || pre_is(prev, "["))
        end = 1;
    return end;
}

/* conlleval's startOfChunk(prevTag, tag, prevType, type). */
static int start_of_chunk(ctag prev, ctag t)
{
    int start = 0;
    if (pre_is(prev, "B") && pre_is(t, "B"))
        start = 1;
    if (pre_is(prev, "I") && pre_is(t, "B"))
        start = 1;
    if (pre_is(prev, "O") && pre_is(t, "B"))
        start = 1;
    if (pre_is(prev, "O") && pre_is(t, "I"))
        start = 1;
    if (pre_is(prev, "E") && pre_is(t, "E"))
        start = 1;
    if (pre_is(prev, "E") && pre_is(t, "I"))
        start = 1;
    if (pre_is(prev, "O") && pre_is(t, "E"))
        start = 1;
    if (!pre_is(t, "O") && !pre_is(t, ".") && !type_eq(prev, t))
        start = 1;
    if (pre_is(t, "[") || pre_is(t, "]"))
        start = 1;
    return start;
}

/* One line of the script's main loop: the word's gold and guessed tags. A sentence
 * boundary (the empty line) is gold "O" with the guess forced to "O". */
static void conll_step(tk_conll *c, ctag *last_gold, ctag *last_pred, ctag gold, ctag pred,
                       int boundary)
{
    if (c->in_correct) {
        int eg = end_of_chunk(*last_gold, gold), ep = end_of_chunk(*last_pred, pred);
        if (eg && ep && type_eq(*last_pred, *last_gold)) {
            c->in_correct = 0;
            c->correct_chunks++;
        } else if (eg != ep || !type_eq(pred, gold)) {
            c->in_correct = 0;
        }
    }
    int sg = start_of_chunk(*last_gold, gold), sp = start_of_chunk(*last_pred, pred);
    if (sg && sp && type_eq(pred, gold))
        c->in_correct = 1;
    c->gold_chunks += sg;
    c->pred_chunks += sp;
    if (!boundary) {
        if (gold.npre == pred.npre && memcmp(gold.pre, pred.pre, gold.npre) == 0 &&
            type_eq(pred, gold))
            c->correct_tags++;
        c->tokens++;
    }
    *last_gold = gold;
    *last_pred = pred;
}

static const char *bad_tag(const char *t)
{
    if (!t)
        return "missing";
    if (!*t)
        return "empty";
    if (strpbrk(t, " \t\n\r\v\f"))
        return "holds whitespace";
    return NULL;
}

int tk_conll_add(tk_conll *c, const char *const *gold, const char *const *pred, int n,
                 bc_err *e)
{
    if (!c || n < 0 || (n > 0 && (!gold || !pred)))
        return bc_errf(e, "conlleval: bad arguments (n = %d)", n);
    for (int i = 0; i < n; i++) {
        const char *why = bad_tag(gold[i]);
        if (why)
            return bc_errf(e, "conlleval: word %d: gold tag %s", i, why);
        if ((why = bad_tag(pred[i])))
            return bc_errf(e, "conlleval: word %d: predicted tag %s", i, why);
    }
    /* Every sentence starts as the script's does after an empty line. */
    ctag o = parse_tag("O"), lg = o, lp = o;
    for (int i = 0; i < n; i++)
        conll_step(c, &lg, &lp, parse_tag(gold[i]), parse_tag(pred[i]), 0);
    conll_step(c, &lg, &lp, o, o, 1);
    return 0;
}

tk_prf tk_prf_of(long long gold, long long pred, long long correct)
{
    tk_prf r = {gold, pred, correct, 0, 0, 0};
    if (r.pred > 0)
        r.precision = (double)r.correct / (double)r.pred;
    if (r.gold > 0)
        r.recall = (double)r.correct / (double)r.gold;
    if (r.precision + r.recall > 0)
        r.f1 = 2 * r.precision * r.recall / (r.precision + r.recall);
    return r;
}

void tk_conll_score(const tk_conll *c, tk_prf *out)
{
    *out = tk_prf_of(c->gold_chunks, c->pred_chunks,
                     c->correct_chunks + (c->in_correct != 0));
}

int tk_intent_slot_eval(const tk_is_example *ex, int n, tk_is_scores *out, bc_err *e)
{
    if (n < 0 || !out || (n > 0 && !ex))
        return bc_errf(e, "intent/slot eval: bad arguments (n = %d)", n);
    tk_conll c = TK_CONLL_INIT;
    long long intent_right = 0, frame_right = 0;
    for (int i = 0; i < n; i++) {
        const tk_is_example *x = &ex[i];
        if (!x->gold_intent || !x->pred_intent)
            return bc_errf(e, "intent/slot eval: sentence %d: missing intent", i);
        if (tk_conll_add(&c, x->gold_tags, x->pred_tags, x->n_words, e) < 0) {
            bc_err_prefix(e, "intent/slot eval: sentence %d", i);
            return -1;
        }
        int right = label_right(x->gold_intent, x->pred_intent);
        intent_right += right;
        for (int k = 0; right && k < x->n_words; k++)
            right = label_right(x->gold_tags[k], x->pred_tags[k]);
        frame_right += right;
    }
    tk_is_scores s = {.n = n, .counts = c};
    tk_conll_score(&c, &s.slot);
    if (n > 0) {
        s.intent_accuracy = (double)intent_right / n;
        s.frame_accuracy = (double)frame_right / n;
    }
    *out = s;
    return 0;
}

/* ---- answer normalization ---------------------------------------------------------- */

typedef struct cpvec {
    int32_t *a;
    size_t n;
} cpvec;

static int decode(const char *s, cpvec *v, bc_err *e, const char *what)
{
    size_t len = strlen(s);
    v->n = 0;
    v->a = malloc((len + 1) * sizeof *v->a);
    if (!v->a)
        return bc_errf(e, "%s: out of memory", what);
    size_t pos = 0;
    while (pos < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + pos,
                                              (utf8proc_ssize_t)(len - pos), &cp);
        if (k < 1) {
            free(v->a);
            v->a = NULL;
            return bc_errf(e, "%s: invalid UTF-8 at byte %zu", what, pos);
        }
        v->a[v->n++] = cp;
        pos += (size_t)k;
    }
    return 0;
}

/* str.lower(); v->a becomes NULL when out of memory. */
static void py_lower(cpvec *v)
{
    size_t extra = 0;
    for (size_t i = 0; i < v->n; i++)
        extra += v->a[i] == 0x130;
    int32_t *out = malloc((v->n + extra + 1) * sizeof *out);
    if (!out) {
        free(v->a);
        v->a = NULL;
        v->n = 0;
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < v->n; i++) {
        int32_t cp = v->a[i];
        if (cp == 0x130) {
            out[m++] = 0x69;
            out[m++] = 0x307;
        } else if (cp == 0x3A3) {
            out[m++] = tx_final_sigma(v->a, 1, 0, v->n, i) ? 0x3C2 : 0x3C3;
        } else {
            out[m++] = utf8proc_tolower(cp);
        }
    }
    free(v->a);
    v->a = out;
    v->n = m;
}

static int is_py_punct(int32_t cp)
{
    return cp < 128 && cp > 32 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", (int)cp);
}

/* Python re's \w for str patterns. */
static int is_word(int32_t cp)
{
    if (cp == '_')
        return 1;
    switch (tx_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

/* Python's str.split() separators (Py_UNICODE_ISSPACE). */
static int is_py_space(int32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 ||
           cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static void remove_punct(cpvec *v)
{
    size_t m = 0;
    for (size_t i = 0; i < v->n; i++)
        if (!is_py_punct(v->a[i]))
            v->a[m++] = v->a[i];
    v->n = m;
}

/* Whether the ASCII word w occurs at v[i] followed by a \b. */
static int word_at(const cpvec *v, size_t i, const char *w)
{
    size_t k = strlen(w);
    if (i + k > v->n)
        return 0;
    for (size_t j = 0; j < k; j++)
        if (v->a[i + j] != (unsigned char)w[j])
            return 0;
    return i + k == v->n || !is_word(v->a[i + k]);
}

/* re.sub(r'\b(a|an|the)\b', ' ', text), matches taken left to right. */
static void remove_articles(cpvec *v)
{
    static const char *const arts[] = {"a", "an", "the"};
    size_t m = 0, i = 0;
    while (i < v->n) {
        size_t k = 0;
        if (i == 0 || !is_word(v->a[i - 1]))
            for (int a = 0; a < 3 && !k; a++)
                if (word_at(v, i, arts[a]))
                    k = strlen(arts[a]);
        if (k) {
            v->a[m++] = ' ';
            i += k;
        } else {
            v->a[m++] = v->a[i++];
        }
    }
    v->n = m;
}

/* KorQuAD's remove_: each of these becomes a space. */
static void korquad_remove(cpvec *v)
{
    static const int32_t sym[] = {'\'',   '"',    0x300A, 0x300B, '<',    '>',
                                  0x3008, 0x3009, '(',    ')',    0x2018, 0x2019};
    for (size_t i = 0; i < v->n; i++)
        for (size_t j = 0; j < sizeof sym / sizeof *sym; j++)
            if (v->a[i] == sym[j])
                v->a[i] = ' ';
}

/* A normalized answer: its code points with the whitespace squeezed out, and where
 * each token starts (tok[ntok] = n). */
typedef struct norm {
    cpvec cp;
    size_t *tok, ntok;
} norm;

static void norm_free(norm *x)
{
    free(x->cp.a);
    free(x->tok);
}

static int normalize(const char *s, tk_qa_flavor f, norm *x, bc_err *e)
{
    memset(x, 0, sizeof *x);
    if (!s)
        return bc_errf(e, "missing answer text");
    if (f != TK_QA_SQUAD && f != TK_QA_KORQUAD)
        return bc_errf(e, "unknown QA metric flavor %d", (int)f);
    if (decode(s, &x->cp, e, "answer") < 0)
        return -1;
    if (f == TK_QA_KORQUAD)
        korquad_remove(&x->cp);
    py_lower(&x->cp);
    if (!x->cp.a)
        return bc_errf(e, "answer: out of memory");
    remove_punct(&x->cp);
    if (f == TK_QA_SQUAD)
        remove_articles(&x->cp);
    x->tok = malloc((x->cp.n / 2 + 2) * sizeof *x->tok);
    if (!x->tok) {
        norm_free(x);
        return bc_errf(e, "answer: out of memory");
    }
    size_t m = 0;
    for (size_t i = 0; i < x->cp.n;) {
        if (is_py_space(x->cp.a[i])) {
            i++;
            continue;
        }
        x->tok[x->ntok++] = m;
        while (i < x->cp.n && !is_py_space(x->cp.a[i]))
            x->cp.a[m++] = x->cp.a[i++];
    }
    x->cp.n = m;
    x->tok[x->ntok] = m;
    return 0;
}

int tk_qa_normalize(const char *s, tk_qa_flavor f, char **out, bc_err *e)
{
    norm x;
    if (!out)
        return bc_errf(e, "tk_qa_normalize: no output");
    if (normalize(s, f, &x, e) < 0)
        return -1;
    char *buf = malloc(4 * x.cp.n + x.ntok + 1), *p = buf;
    if (!buf) {
        norm_free(&x);
        return bc_errf(e, "answer: out of memory");
    }
    for (size_t t = 0; t < x.ntok; t++) {
        if (t)
            *p++ = ' ';
        for (size_t i = x.tok[t]; i < x.tok[t + 1]; i++)
            p += utf8proc_encode_char(x.cp.a[i], (utf8proc_uint8_t *)p);
    }
    *p = 0;
    norm_free(&x);
    *out = buf;
    return 0;
}

/* An item of a Counter: a run of code points. */
typedef struct item {
    const int32_t *a;
    size_t n;
} item;

static int item_cmp(const void *pa, const void *pb)
{
    const item *x = pa, *y = pb;
    size_t k = x->n < y->n ? x->n : y->n;
    for (size_t i = 0; i < k; i++)
        if (x->a[i] != y->a[i])
            return x->a[i] < y->a[i] ? -1 : 1;
    return (x->n > y->n) - (x->n < y->n);
}

/* The items F1 counts: tokens (SQuAD) or the characters of the tokens (KorQuAD);
 * sorted, so that Counter & Counter becomes a merge. */
static item *items_of(const norm *x, tk_qa_flavor f, size_t *n)
{
    size_t k = f == TK_QA_KORQUAD ? x->cp.n : x->ntok;
    item *it = malloc((k + 1) * sizeof *it);
    if (!it)
        return NULL;
    for (size_t i = 0; i < k; i++)
        it[i] = f == TK_QA_KORQUAD ? (item){x->cp.a + i, 1}
                                   : (item){x->cp.a + x->tok[i], x->tok[i + 1] - x->tok[i]};
    qsort(it, k, sizeof *it, item_cmp);
    *n = k;
    return it;
}

static int same_tokens(const norm *a, const norm *b)
{
    return a->ntok == b->ntok && a->cp.n == b->cp.n &&
           memcmp(a->tok, b->tok, (a->ntok + 1) * sizeof *a->tok) == 0 &&
           memcmp(a->cp.a, b->cp.a, a->cp.n * sizeof *a->cp.a) == 0;
}

/* The scripts' f1_score for one gold answer. */
static int f1_one(const norm *p, const norm *g, tk_qa_flavor f, double *f1)
{
    size_t np, ng;
    item *ip = items_of(p, f, &np), *ig = items_of(g, f, &ng);
    if (!ip || !ig) {
        free(ip);
        free(ig);
        return -1;
    }
    size_t same = 0;
    for (size_t i = 0, j = 0; i < np && j < ng;) {
        int c = item_cmp(&ip[i], &ig[j]);
        if (c == 0) {
            same++;
            i++;
            j++;
        } else if (c < 0) {
            i++;
        } else {
            j++;
        }
    }
    free(ip);
    free(ig);
    *f1 = 0;
    if (same == 0)
        return 0;
    double precision = 1.0 * (double)same / (double)np;
    double recall = 1.0 * (double)same / (double)ng;
    *f1 = (2 * precision * recall) / (precision + recall);
    return 0;
}

int tk_qa_score(const char *pred, const char *const *golds, int n_golds, tk_qa_flavor f,
                double *em, double *f1, bc_err *e)
{
    if (n_golds < 1 || !golds)
        return bc_errf(e, "QA score: no gold answer");
    norm p;
    if (normalize(pred, f, &p, e) < 0) {
        bc_err_prefix(e, "prediction");
        return -1;
    }
    double best_em = 0, best_f1 = 0;
    for (int i = 0; i < n_golds; i++) {
        norm g;
        if (normalize(golds[i], f, &g, e) < 0) {
            norm_free(&p);
            bc_err_prefix(e, "gold answer %d", i);
            return -1;
        }
        double s;
        int rc = f1_one(&p, &g, f, &s);
        if (same_tokens(&p, &g))
            best_em = 1;
        norm_free(&g);
        if (rc < 0) {
            norm_free(&p);
            return bc_errf(e, "QA score: out of memory");
        }
        if (s > best_f1)
            best_f1 = s;
    }
    norm_free(&p);
    if (em)
        *em = best_em;
    if (f1)
        *f1 = best_f1;
    return 0;
}

int tk_qa_evaluate(const char *const *preds, const char *const *const *golds,
                   const int *n_golds, int n, tk_qa_flavor f, double *em, double *f1,
                   bc_err *e)
{
    if (n < 0 || !em || !f1 || (n > 0 && (!preds || !golds || !n_golds)))
        return bc_errf(e, "QA evaluate: bad arguments (n = %d)", n);
    double sum_em = 0, sum_f1 = 0;
    for (int i = 0; i < n; i++) {
        double a, b;
        if (n_golds[i] < 1)
            return bc_errf(e, "QA evaluate: question %d: no gold answer", i);
        if (!preds[i])
            continue;
        if (tk_qa_score(preds[i], golds[i], n_golds[i], f, &a, &b, e) < 0) {
            bc_err_prefix(e, "QA evaluate: question %d", i);
            return -1;
        }
        sum_em += a;
        sum_f1 += b;
    }
    *em = n ? sum_em / n : 0;
    *f1 = n ? sum_f1 / n : 0;
    return 0;
}

/* ---- span decoding ----------------------------------------------------------------- */

/* _get_best_indexes: the k largest, ties to the lower index (a stable sort). */
static int best_indexes(const float *x, int n, int k, int *out)
{
    int m = 0;
    for (; m < k && m < n; m++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int j = 0; j < m && !taken; j++)
                taken = out[j] == i;
            if (!taken && (best < 0 || x[i] > x[best]))
                best = i;
        }
        out[m] = best;
    }
    return m;
}

static int check_window(const tk_qa_window *w, int wi, int context_len, bc_err *e)
{
    if (w->n_tokens < 0 ||
        (w->n_tokens > 0 && (!w->start_logits || !w->end_logits || !w->tok_start ||
                             !w->tok_end || !w->max_context)))
        return bc_errf(e, "QA decode: window %d: missing arrays or n_tokens < 0", wi);
    for (int i = 0; i < w->n_tokens; i++) {
        if (isnan(w->start_logits[i]) || isnan(w->end_logits[i]))
            return bc_errf(e, "QA decode: window %d token %d: NaN logit", wi, i);
        int s = w->tok_start[i], t = w->tok_end[i];
        if (s == -1 && t == -1)
            continue;
        if (s < 0 || t < s || t > context_len)
            return bc_errf(e,
                           "QA decode: window %d token %d: span [%d, %d) not in the "
                           "context (%d bytes)",
                           wi, i, s, t, context_len);
    }
    return 0;
}

int tk_qa_best_span(const tk_qa_window *w, int n_windows, int n_best, int max_answer_length,
                    int context_len, tk_qa_span *out, bc_err *e)
{
    if (n_windows < 0 || (n_windows > 0 && !w) || n_best < 1 || max_answer_length < 1 ||
        context_len < 0 || !out)
        return bc_errf(e,
                       "QA decode: bad arguments (windows %d, n_best %d, max answer "
                       "length %d, context %d bytes)",
                       n_windows, n_best, max_answer_length, context_len);
    for (int wi = 0; wi < n_windows; wi++)
        if (check_window(&w[wi], wi, context_len, e) < 0)
            return -1;
    int *starts = malloc(2 * (size_t)n_best * sizeof *starts), *ends = starts + n_best;
    if (!starts)
        return bc_errf(e, "QA decode: out of memory");
    tk_qa_span best = {0};
    for (int wi = 0; wi < n_windows; wi++) {
        const tk_qa_window *x = &w[wi];
        int ns = best_indexes(x->start_logits, x->n_tokens, n_best, starts);
        int ne = best_indexes(x->end_logits, x->n_tokens, n_best, ends);
        for (int a = 0; a < ns; a++) {
            int s = starts[a];
            if (x->tok_start[s] < 0 || !x->max_context[s])
                continue;
            for (int b = 0; b < ne; b++) {
                int t = ends[b];
                if (x->tok_start[t] < 0 || t < s || t - s + 1 > max_answer_length ||
                    x->tok_end[t] < x->tok_start[s])
                    continue;
                double score = (double)x->start_logits[s] + (double)x->end_logits[t];
                if (best.found && !(score > best.score))
                    continue;
                best = (tk_qa_span){1, wi, s, t, x->tok_start[s], x->tok_end[t], score};
            }
        }
    }
    free(starts);
    *out = best;
    return 0;
}

/* ---- sentence classification --------------------------------------------------------- */

void tk_cls_scores_free(tk_cls_scores *s)
{
    free(s->cls);
    free(s->confusion);
    memset(s, 0, sizeof *s);
}

int tk_cls_score(const int *gold, const int *pred, int64_t n, int nclass,
                 tk_cls_scores *out, bc_err *e)
{
    memset(out, 0, sizeof *out);
    if (n < 0 || nclass < 1 || (n > 0 && (!gold || !pred)))
        return bc_errf(e, "classification scores: bad arguments");
    for (int64_t i = 0; i < n; i++)
        if (gold[i] < 0 || gold[i] >= nclass || pred[i] < 0 || pred[i] >= nclass)
            return bc_errf(e,
                           "classification scores: example %lld has a class out of [0, %d)",
                           (long long)i, nclass);
    out->cls = calloc((size_t)nclass, sizeof *out->cls);
    out->confusion = calloc((size_t)nclass * (size_t)nclass, sizeof *out->confusion);
    if (!out->cls || !out->confusion) {
        tk_cls_scores_free(out);
        return bc_errf(e, "out of memory");
    }
    out->n = n;
    out->nclass = nclass;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        out->cls[gold[i]].support++;
        out->cls[pred[i]].predicted++;
        out->confusion[(size_t)gold[i] * (size_t)nclass + (size_t)pred[i]]++;
        if (gold[i] == pred[i]) {
            out->cls[gold[i]].correct++;
            correct++;
        }
    }
    out->accuracy = n ? (double)correct / (double)n : 0.0;
    double sum = 0;
    int used = 0;
    for (int c = 0; c < nclass; c++) {
        tk_cls_class *k = &out->cls[c];
        tk_prf prf = tk_prf_of(k->support, k->predicted, k->correct);
        k->precision = prf.precision;
        k->recall = prf.recall;
        k->f1 = prf.f1;
        if (k->support || k->predicted) {
            sum += k->f1;
            used++;
        }
    }
    out->macro_f1 = used ? sum / used : 0.0;
    return 0;
}
