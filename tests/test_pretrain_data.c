/* test_pretrain_data.c: tasks/pretrain_data.c and `bertcc pretrain-data`. The corpus
 * is made here: documents of numbered sentences whose every word is a distinct
 * vocabulary token (w0, w1, ... in corpus order), so each token tells its document, its
 * sentence and its neighbours. That lets the tests check that A and B are runs of
 * whole segments, that IsNext B really follows A, that NotNext B comes from another
 * document, and the masking statistics over a large sample. The test on BERT's own
 * sample text and vocabulary is named shared_data_* and skips without ../shared/data. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tasks/pretrain_data.h"
#include "runtime/safetensors.h"
#include "util.h"

#define SHARED "../shared/data"
#define SAMPLE_TEXT SHARED "/bert_sample_text/sample_text.txt"
#define BERT_VOCAB SHARED "/bert_vocab/bert-base-uncased-vocab.txt"

enum { PAD = 0, UNK = 1, CLS = 2, SEP = 3, MASK = 4, W0 = 5 };

/* ---- the numbered corpus ------------------------------------------------------------ */

#define NDOCS 12

typedef struct fixture {
    char corpus[1024];
    tx_vocab *v;
    int nwords;  /* words w0 .. w{nwords-1}, id W0 + k */
    int *doc;    /* (nwords) document of word k */
    int *sent;   /* (nwords) sentence (within its document) */
    int *starts; /* (nwords) 1 when word k starts a sentence */
    int *ends;   /* (nwords) 1 when word k ends a sentence */
    int nsent[NDOCS];
} fixture;

static fixture fx;

static int doc_sentences(int d)
{
    return d == 3 ? 1 : 6 + (d * 7) % 25; /* document 3 is a single sentence */
}

static int sentence_words(int d, int s)
{
    return 2 + (d * 7 + s * 3) % 6;
}

static void fixture_setup(void)
{
    memset(&fx, 0, sizeof fx);
    int n = 0;
    for (int d = 0; d < NDOCS; d++)
        for (int s = 0; s < doc_sentences(d); s++)
            n += sentence_words(d, s);
    fx.nwords = n;
    fx.doc = calloc((size_t)n, sizeof(int));
    fx.sent = calloc((size_t)n, sizeof(int));
    fx.starts = calloc((size_t)n, sizeof(int));
    fx.ends = calloc((size_t)n, sizeof(int));
    size_t cap = (size_t)n * 8 + 1024, len = 0;
    char *text = malloc(cap);
    const char **toks = malloc((size_t)(n + W0) * sizeof *toks);
    char **names = malloc((size_t)n * sizeof *names);
    static const char *const special[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < W0; i++)
        toks[i] = special[i];
    int k = 0;
    for (int d = 0; d < NDOCS; d++) {
        fx.nsent[d] = doc_sentences(d);
        for (int s = 0; s < fx.nsent[d]; s++) {
            int L = sentence_words(d, s);
            for (int j = 0; j < L; j++, k++) {
                char w[32];
                snprintf(w, sizeof w, "w%d", k);
                names[k] = strdup(w);
                toks[W0 + k] = names[k];
                fx.doc[k] = d;
                fx.sent[k] = s;
                fx.starts[k] = j == 0;
                fx.ends[k] = j == L - 1;
                len += (size_t)snprintf(text + len, cap - len, j ? " %s" : "%s", w);
            }
            len += (size_t)snprintf(text + len, cap - len, "\n");
        }
        /* Blank lines between documents, some with spaces and an ideographic space. */
        len += (size_t)snprintf(text + len, cap - len,
                                d % 3 == 0   ? "\n"
                                : d % 3 == 1 ? "  \t\n"
                                             : "\xe3\x80\x80\n");
    }
    const char *dir = tu_tmpdir();
    snprintf(fx.corpus, sizeof fx.corpus, "%s/corpus.txt", dir);
    cr_assert_eq(tu_write_file(fx.corpus, text), 0);
    bc_err e;
    fx.v = tx_vocab_from_list(toks, n + W0, "numbered", &e);
    cr_assert_not_null(fx.v, "%s", e.msg);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(toks);
    free(text);
}

static void fixture_teardown(void)
{
    tx_vocab_free(fx.v);
    free(fx.doc);
    free(fx.sent);
    free(fx.starts);
    free(fx.ends);
}

static tk_pt_corpus *load_corpus(void)
{
    bc_err e;
    const char *paths[1] = {fx.corpus};
    tk_pt_corpus *c =
        tk_pt_corpus_load(paths, 1, fx.v, &TX_TOK_OPTS_DEFAULT, NULL, NULL, &e);
    cr_assert_not_null(c, "%s", e.msg);
    return c;
}

static void make(tk_pt_opts o, uint64_t seed, rt_tensor_list *out, tk_pt_stats *st)
{
    tk_pt_corpus *c = load_corpus();
    rt_rng r;
    rt_rng_seed(&r, seed);
    bc_err e;
    rt_list_init(out);
    cr_assert_eq(tk_pt_create(c, fx.v, &o, &r, out, st, NULL, NULL, &e), 0, "%s", e.msg);
    tk_pt_corpus_free(c);
}

/* ---- checking rows ------------------------------------------------------------------ */

typedef struct tally {
    int64_t rows, not_next, chosen, candidates, to_mask, same, other;
} tally;

static int64_t num_to_predict(int n, const tk_pt_opts *o)
{
    double want = nearbyint((double)n * o->mask_prob);
    int64_t k = want < 1 ? 1 : (int64_t)want;
    return k < o->max_predictions ? k : o->max_predictions;
}

static int word(int64_t id)
{
    return (int)id - W0;
}

/* Checks every row of a batch over the numbered corpus and adds up its statistics.
 * exact_count: each row chose exactly num_to_predict tokens (no whole-word skipping). */
static void check_batch(const rt_tensor_list *b, const tk_pt_opts *o, int exact_count,
                        tally *t)
{
    static const char *const names[5] = {"input_ids", "token_type_ids", "attention_mask",
                                         "mlm_labels", "nsp_labels"};
    const rt_tensor *ts[5];
    for (int k = 0; k < 5; k++) {
        ts[k] = rt_list_cfind(b, names[k]);
        cr_assert_not_null(ts[k], "missing %s", names[k]);
        cr_assert_eq(ts[k]->dtype, RT_I64, "%s", names[k]);
        cr_assert_eq(ts[k]->rank, k < 4 ? 2 : 1, "%s", names[k]);
        cr_assert_eq(ts[k]->shape[0], ts[0]->shape[0], "%s", names[k]);
        if (k < 4)
            cr_assert_eq(ts[k]->shape[1], o->max_seq, "%s", names[k]);
    }
    int64_t N = ts[0]->shape[0], S = o->max_seq, max_tok = S - 3;
    const int64_t *ids = ts[0]->data, *tt = ts[1]->data, *am = ts[2]->data,
                  *lab = ts[3]->data, *nsp = ts[4]->data;
    int V = tx_vocab_size(fx.v);
    int64_t *orig = malloc((size_t)S * sizeof *orig);
    for (int64_t r = 0; r < N; r++) {
        const int64_t *x = ids + r * S, *y = lab + r * S, *ty = tt + r * S, *m = am + r * S;
        int n = 0;
        while (n < S && m[n])
            n++;
        for (int64_t i = n; i < S; i++) {
            cr_assert_eq(m[i], 0, "row %lld: attention mask not 1...1 0...0", (long long)r);
            cr_assert_eq(x[i], PAD, "row %lld: padding is not [PAD]", (long long)r);
            cr_assert_eq(ty[i], 0, "row %lld: padding has token type 1", (long long)r);
            cr_assert_eq(y[i], -100, "row %lld: padding chosen", (long long)r);
        }
        int chosen = 0;
        for (int i = 0; i < n; i++) {
            orig[i] = y[i] != -100 ? y[i] : x[i];
            if (y[i] == -100)
                continue;
            chosen++;
            cr_assert(y[i] >= W0 && y[i] < V, "row %lld: label %lld is special",
                      (long long)r, (long long)y[i]);
            cr_assert(x[i] >= 0 && x[i] < V, "row %lld: id out of the vocabulary",
                      (long long)r);
            t->to_mask += x[i] == MASK;
            t->same += x[i] == y[i];
            t->other += x[i] != MASK && x[i] != y[i];
        }
        /* [CLS] A [SEP] B [SEP] */
        cr_assert_eq(orig[0], CLS, "row %lld", (long long)r);
        cr_assert_eq(orig[n - 1], SEP, "row %lld", (long long)r);
        int p1 = 1;
        while (p1 < n - 1 && orig[p1] != SEP)
            p1++;
        cr_assert(p1 > 1 && p1 < n - 2, "row %lld: A or B empty (n %d, [SEP] at %d)",
                  (long long)r, n, p1);
        for (int i = 0; i < n; i++) {
            cr_assert_eq(ty[i], i > p1, "row %lld: token type at %d", (long long)r, i);
            if (i && i != p1 && i != n - 1)
                cr_assert(orig[i] >= W0, "row %lld: special token inside A or B at %d",
                          (long long)r, i);
        }
        int la = p1 - 1, lb = n - 2 - p1;
        cr_assert(la + lb <= max_tok);
        int fit = la + lb < max_tok; /* certainly not truncated */
        /* A and B are runs of consecutive words of one document. */
        const int64_t *A = orig + 1, *B = orig + p1 + 1;
        for (int i = 1; i < la; i++)
            cr_assert(A[i] == A[i - 1] + 1 && fx.doc[word(A[i])] == fx.doc[word(A[0])],
                      "row %lld: A is not consecutive at %d", (long long)r, i);
        for (int i = 1; i < lb; i++)
            cr_assert(B[i] == B[i - 1] + 1 && fx.doc[word(B[i])] == fx.doc[word(B[0])],
                      "row %lld: B is not consecutive at %d", (long long)r, i);
        int a0 = word(A[0]), a1 = word(A[la - 1]), b0 = word(B[0]), b1 = word(B[lb - 1]);
        if (fit)
            cr_assert(fx.starts[a0] && fx.ends[a1] && fx.starts[b0] && fx.ends[b1],
                      "row %lld: untruncated A or B is not whole sentences", (long long)r);
        cr_assert(nsp[r] == 0 || nsp[r] == 1);
        if (nsp[r] == 0) {
            cr_assert_eq(fx.doc[a0], fx.doc[b0], "row %lld: IsNext across documents",
                         (long long)r);
            cr_assert(b0 > a1, "row %lld: IsNext B before A", (long long)r);
            int boundary = 0;
            for (int k = a1 + 1; k <= b0; k++)
                boundary |= fx.starts[k];
            cr_assert(boundary, "row %lld: IsNext A and B within one sentence",
                      (long long)r);
            if (b0 != a1 + 1)
                cr_assert_eq(la + lb, max_tok,
                             "row %lld: a gap between A and B without "
                             "truncation",
                             (long long)r);
        } else {
            cr_assert_neq(fx.doc[a0], fx.doc[b0], "row %lld: NotNext B from A's document",
                          (long long)r);
            t->not_next++;
        }
        if (exact_count)
            cr_assert_eq(chosen, num_to_predict(n, o), "row %lld: %d chosen of %d",
                         (long long)r, chosen, n);
        else
            cr_assert(chosen <= num_to_predict(n, o));
        t->chosen += chosen;
        t->candidates += n - 3;
        t->rows++;
    }
    free(orig);
}

TestSuite(pretrain_data, .init = fixture_setup, .fini = fixture_teardown);

/* ---- reading ------------------------------------------------------------------------ */

Test(pretrain_data, documents_split_on_blank_lines_and_files)
{
    const char *dir = tu_tmpdir();
    char f1[1024], f2[1024];
    snprintf(f1, sizeof f1, "%s/a.txt", dir);
    snprintf(f2, sizeof f2, "%s/b.txt", dir);
    /* A control-character line gives no token and is skipped (not a break); a line of
     * U+3000 is whitespace to str.isspace, so it is a break. */
    cr_assert_eq(tu_write_file(f1, "w0 w1\nw2\n\x01\n\n  \n\nw3\n\xe3\x80\x80\nw4\nw5"), 0);
    cr_assert_eq(tu_write_file(f2, "w6\n\n\n"), 0);
    const char *paths[2] = {f1, f2};
    bc_err e;
    tk_pt_reader *r = tk_pt_reader_open(paths, 2, fx.v, &TX_TOK_OPTS_DEFAULT, &e);
    cr_assert_not_null(r, "%s", e.msg);
    const char *want[] = {"0 1|2", "3", "4|5", "6"};
    tk_pt_doc d;
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(tk_pt_reader_next(r, &d, &e), 1, "document %d: %s", k, e.msg);
        char got[256] = "";
        size_t n = 0;
        for (int s = 0; s < d.nseg; s++)
            for (int64_t i = d.seg[s]; i < d.seg[s + 1]; i++)
                n += (size_t)snprintf(got + n, sizeof got - n, "%s%d",
                                      i == d.seg[s] ? (s ? "|" : "") : " ", d.ids[i] - W0);
        cr_expect_str_eq(got, want[k]);
    }
    cr_assert_eq(tk_pt_reader_next(r, &d, &e), 0);
    cr_assert_eq(tk_pt_reader_next(r, &d, &e), 0);
    cr_expect_eq(tk_pt_reader_lines(r), 13);
    tk_pt_reader_free(r);
}

Test(pretrain_data, reader_errors_name_file_and_line)
{
    const char *dir = tu_tmpdir();
    char f[1024], missing[1024];
    snprintf(f, sizeof f, "%s/bad.txt", dir);
    snprintf(missing, sizeof missing, "%s/missing.txt", dir);
    cr_assert_eq(tu_write_file(f, "w0\nw1 \xff w2\n"), 0);
    bc_err e;
    const char *p1[1] = {missing};
    cr_assert_null(tk_pt_reader_open(p1, 1, fx.v, &TX_TOK_OPTS_DEFAULT, &e));
    cr_expect(strstr(e.msg, "missing.txt") != NULL, "%s", e.msg);
    const char *p2[1] = {f};
    cr_assert_null(tk_pt_corpus_load(p2, 1, fx.v, &TX_TOK_OPTS_DEFAULT, NULL, NULL, &e));
    cr_expect(strstr(e.msg, "bad.txt:2") != NULL, "%s", e.msg);
}

Test(pretrain_data, corpus_holds_every_document)
{
    tk_pt_corpus *c = load_corpus();
    cr_assert_eq(tk_pt_corpus_docs(c), NDOCS);
    cr_assert_eq(tk_pt_corpus_tokens(c), fx.nwords);
    int64_t sents = 0;
    for (int d = 0; d < NDOCS; d++) {
        tk_pt_doc doc = tk_pt_corpus_doc(c, d);
        cr_assert_eq(doc.nseg, fx.nsent[d]);
        cr_assert_eq(fx.doc[word(doc.ids[doc.seg[0]])], d);
        sents += doc.nseg;
    }
    cr_assert_eq(tk_pt_corpus_sentences(c), sents);
    tk_pt_corpus_free(c);
}

/* ---- options ------------------------------------------------------------------------ */

Test(pretrain_data, rejects_bad_options)
{
    bc_err e;
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    cr_assert_eq(tk_pt_opts_check(&o, &e), 0);
    o.max_seq = 4;
    cr_expect_eq(tk_pt_opts_check(&o, &e), -1);
    cr_expect(strstr(e.msg, "max-seq") != NULL, "%s", e.msg);
    o = TK_PT_OPTS_DEFAULT;
    o.mask_prob = 1.5;
    cr_expect_eq(tk_pt_opts_check(&o, &e), -1);
    o = TK_PT_OPTS_DEFAULT;
    o.mask_prob = NAN;
    cr_expect_eq(tk_pt_opts_check(&o, &e), -1);
    o = TK_PT_OPTS_DEFAULT;
    o.dupe_factor = 0;
    cr_expect_eq(tk_pt_opts_check(&o, &e), -1);
    o = TK_PT_OPTS_DEFAULT;
    o.short_seq_prob = -0.1;
    cr_expect_eq(tk_pt_opts_check(&o, &e), -1);
    o = TK_PT_OPTS_DEFAULT;
    o.max_predictions = -1;
    cr_expect_eq(tk_pt_opts_check(&o, &e), -1);
    /* A vocabulary without [MASK] cannot mask. */
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"};
    tx_vocab *v = tx_vocab_from_list(toks, 5, "nomask", &e);
    cr_assert_not_null(v);
    o = TK_PT_OPTS_DEFAULT;
    cr_expect_null(tk_pt_masker_new(v, &o, &e));
    cr_expect(strstr(e.msg, "[MASK]") != NULL, "%s", e.msg);
    tx_vocab_free(v);
}

/* ---- instances ---------------------------------------------------------------------- */

Test(pretrain_data, shapes_padding_token_types_and_segments)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 32;
    o.dupe_factor = 3;
    rt_tensor_list b;
    tk_pt_stats st;
    make(o, 1, &b, &st);
    cr_assert_eq(b.n, 5);
    static const char *const order[5] = {"input_ids", "token_type_ids", "attention_mask",
                                         "mlm_labels", "nsp_labels"};
    for (int k = 0; k < 5; k++)
        cr_expect_str_eq(b.t[k].name, order[k]);
    tally t = {0};
    check_batch(&b, &o, 1, &t);
    cr_assert_eq(t.rows, st.instances);
    cr_assert(t.rows > 3 * NDOCS, "%lld rows", (long long)t.rows);
    cr_expect_eq(t.not_next, st.instances - st.is_next);
    cr_expect_eq(t.chosen, st.mask.chosen);
    cr_expect_eq(t.candidates, st.mask.candidates);
    cr_expect(st.truncated > 0 && st.truncated < st.instances);
    cr_expect_eq(st.documents, NDOCS);
    cr_expect_eq(st.tokens, fx.nwords);
    rt_list_free(&b);
}

Test(pretrain_data, every_sentence_is_used_in_each_pass)
{
    /* With max_seq large enough that nothing is truncated, one pass (dupe 1) puts every
     * sentence of every document in some A or IsNext B. */
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 512;
    o.dupe_factor = 1;
    o.short_seq_prob = 0.5;
    rt_tensor_list b;
    tk_pt_stats st;
    make(o, 3, &b, &st);
    cr_assert_eq(st.truncated, 0);
    tally t = {0};
    check_batch(&b, &o, 1, &t);
    const rt_tensor *ids = rt_list_cfind(&b, "input_ids"),
                    *lab = rt_list_cfind(&b, "mlm_labels"),
                    *nsp = rt_list_cfind(&b, "nsp_labels");
    int *seen = calloc((size_t)fx.nwords, sizeof(int));
    int64_t N = ids->shape[0], S = o.max_seq;
    for (int64_t r = 0; r < N; r++) {
        const int64_t *x = (int64_t *)ids->data + r * S, *y = (int64_t *)lab->data + r * S;
        int sep = 0;
        for (int i = 1; i < S; i++) {
            int64_t id = y[i] != -100 ? y[i] : x[i];
            if (id == SEP && ++sep == 2)
                break;
            if (id >= W0 && (sep == 0 || ((int64_t *)nsp->data)[r] == 0))
                seen[word(id)]++;
        }
    }
    for (int k = 0; k < fx.nwords; k++)
        cr_assert_eq(seen[k], 1, "word %d used %d times in one pass", k, seen[k]);
    free(seen);
    rt_list_free(&b);
}

Test(pretrain_data, nsp_is_balanced)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 48;
    o.dupe_factor = 100;
    rt_tensor_list b;
    tk_pt_stats st;
    make(o, 2, &b, &st);
    tally t = {0};
    check_batch(&b, &o, 1, &t);
    /* Chunks of one segment (a document's last sentence, say) are always NotNext, as in
     * BERT, so a little above 1/2 on short documents. */
    double f = (double)t.not_next / (double)t.rows;
    cr_expect(f > 0.47 && f < 0.6, "NotNext fraction %.3f over %lld rows", f,
              (long long)t.rows);
    rt_list_free(&b);
}

Test(pretrain_data, masking_statistics)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 64;
    o.dupe_factor = 100;
    rt_tensor_list b;
    tk_pt_stats st;
    make(o, 4, &b, &st);
    tally t = {0};
    check_batch(&b, &o, 1, &t);
    cr_assert(t.chosen > 15000, "only %lld chosen", (long long)t.chosen);
    /* num_to_predict counts [CLS] and the two [SEP]s, as BERT does: a little over 15% of
     * the candidates. */
    double f = (double)t.chosen / (double)t.candidates;
    cr_expect(f > 0.145 && f < 0.175, "chosen fraction %.4f", f);
    double fm = (double)t.to_mask / (double)t.chosen,
           fs = (double)t.same / (double)t.chosen, fo = (double)t.other / (double)t.chosen;
    cr_expect(fabs(fm - 0.8) < 0.015, "[MASK] fraction %.4f", fm);
    cr_expect(fabs(fs - 0.1) < 0.01, "kept fraction %.4f", fs);
    cr_expect(fabs(fo - 0.1) < 0.01, "random fraction %.4f", fo);
    cr_expect_eq(st.mask.to_mask + st.mask.to_random + st.mask.kept, st.mask.chosen);
    rt_list_free(&b);
}

Test(pretrain_data, max_predictions_respected)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 64;
    o.max_predictions = 3;
    o.dupe_factor = 5;
    rt_tensor_list b;
    make(o, 5, &b, NULL);
    tally t = {0};
    check_batch(&b, &o, 1, &t); /* exactly min(3, max(1, round(0.15 n))) each */
    cr_expect(t.chosen <= 3 * t.rows);
    cr_expect(t.chosen > 2 * t.rows);
    rt_list_free(&b);
}

Test(pretrain_data, same_seed_same_bytes_other_seed_differs)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 40;
    o.dupe_factor = 2;
    const char *dir = tu_tmpdir();
    char *bytes[3];
    size_t len[3];
    uint64_t seeds[3] = {7, 7, 8};
    for (int k = 0; k < 3; k++) {
        rt_tensor_list b;
        make(o, seeds[k], &b, NULL);
        bc_err e;
        const char *path = tu_path(dir, k == 0 ? "a.st" : k == 1 ? "b.st" : "c.st");
        cr_assert_eq(rt_st_save(path, &b, &e), 0, "%s", e.msg);
        bytes[k] = tu_read_file(path, &len[k]);
        cr_assert_not_null(bytes[k]);
        rt_list_free(&b);
    }
    cr_expect(len[0] == len[1] && !memcmp(bytes[0], bytes[1], len[0]),
              "same seed, different files");
    cr_expect(len[0] != len[2] || memcmp(bytes[0], bytes[2], len[0]),
              "different seeds, same file");
    for (int k = 0; k < 3; k++)
        free(bytes[k]);
}

/* ---- masking ------------------------------------------------------------------------- */

Test(pretrain_data, mask_row_skips_special_tokens)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.mask_prob = 1.0; /* choose everything it may */
    o.max_predictions = 100;
    bc_err e;
    tk_pt_masker *m = tk_pt_masker_new(fx.v, &o, &e);
    cr_assert_not_null(m, "%s", e.msg);
    cr_expect_eq(tk_pt_masker_pad(m), PAD);
    rt_rng r;
    rt_rng_seed(&r, 9);
    /* [CLS] w0 w1 [SEP] w2 [PAD] w3 [SEP]: "[PAD]" written in the text stays special. */
    int64_t row[8] = {CLS, W0, W0 + 1, SEP, W0 + 2, PAD, W0 + 3, SEP}, lab[8], orig[8];
    memcpy(orig, row, sizeof row);
    tk_pt_mask_stats st = {0};
    cr_assert_eq(tk_pt_mask_row(m, row, lab, 8, &r, &st), 4);
    cr_expect_eq(st.candidates, 4);
    for (int i = 0; i < 8; i++) {
        int special = orig[i] < W0;
        cr_expect_eq(lab[i] == -100, special, "position %d", i);
        if (special)
            cr_expect_eq(row[i], orig[i]);
        else
            cr_expect_eq(lab[i], orig[i]);
    }
    tk_pt_unmask_row(row, lab, 8);
    cr_expect(!memcmp(row, orig, sizeof row));
    /* An empty row of specials chooses nothing. */
    int64_t row2[2] = {CLS, SEP}, lab2[2];
    cr_expect_eq(tk_pt_mask_row(m, row2, lab2, 2, &r, NULL), 0);
    tk_pt_masker_free(m);
}

Test(pretrain_data, dynamic_masking_remasks_a_batch)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 48;
    o.dupe_factor = 2;
    rt_tensor_list b;
    make(o, 6, &b, NULL);
    const rt_tensor *ids = rt_list_cfind(&b, "input_ids"),
                    *lab = rt_list_cfind(&b, "mlm_labels");
    int64_t n = rt_numel(ids);
    int64_t *orig = malloc((size_t)n * sizeof *orig),
            *lab0 = malloc((size_t)n * sizeof *lab0);
    for (int64_t i = 0; i < n; i++) {
        int64_t y = ((int64_t *)lab->data)[i];
        orig[i] = y != -100 ? y : ((int64_t *)ids->data)[i];
        lab0[i] = y;
    }
    bc_err e;
    tk_pt_masker *m = tk_pt_masker_new(fx.v, &o, &e);
    cr_assert_not_null(m, "%s", e.msg);
    rt_rng r;
    rt_rng_seed(&r, 1234);
    tk_pt_mask_stats st = {0};
    cr_assert_eq(tk_pt_remask_batch(m, &b, &r, &st, &e), 0, "%s", e.msg);
    ids = rt_list_cfind(&b, "input_ids");
    lab = rt_list_cfind(&b, "mlm_labels");
    int64_t moved = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t y = ((int64_t *)lab->data)[i];
        cr_assert_eq(y != -100 ? y : ((int64_t *)ids->data)[i], orig[i], "position %lld",
                     (long long)i);
        moved += (y == -100) != (lab0[i] == -100);
    }
    cr_expect(moved > 0, "the new masking chose the same positions");
    tally t = {0};
    check_batch(&b, &o, 1, &t); /* still well formed, same counts per row */
    cr_expect_eq(t.chosen, st.chosen);
    /* A batch without mlm_labels gets them. */
    rt_list_remove(&b, "mlm_labels");
    cr_assert_eq(tk_pt_remask_batch(m, &b, &r, NULL, &e), 0, "%s", e.msg);
    cr_expect_not_null(rt_list_cfind(&b, "mlm_labels"));
    /* A wrong dtype is an error naming the tensor. */
    rt_list_remove(&b, "input_ids");
    int64_t shape[2] = {1, 4};
    rt_list_add(&b, "input_ids", RT_I32, 2, shape, NULL);
    cr_expect_eq(tk_pt_remask_batch(m, &b, &r, NULL, &e), -1);
    cr_expect(strstr(e.msg, "input_ids") != NULL, "%s", e.msg);
    tk_pt_masker_free(m);
    free(orig);
    free(lab0);
    rt_list_free(&b);
}

/* Whole-word masking over a vocabulary with "##" pieces. */
Test(pretrain_data, whole_word_masks_pieces_with_their_word)
{
    const char *toks[] = {"[PAD]",  "[UNK]", "[CLS]", "[SEP]",  "[MASK]", "un", "##aff",
                          "##able", "cat",   "run",   "##ning", "dog",    "the"};
    bc_err e;
    tx_vocab *v = tx_vocab_from_list(toks, 13, "pieces", &e);
    cr_assert_not_null(v, "%s", e.msg);
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/ww.txt", dir);
    char text[8192];
    size_t len = 0;
    static const char *const words[] = {"unaffable", "cat", "running", "dog", "the"};
    for (int d = 0; d < 6; d++) {
        for (int s = 0; s < 8; s++) {
            for (int j = 0; j < 3 + (d + s) % 4; j++)
                len += (size_t)snprintf(text + len, sizeof text - len, "%s%s", j ? " " : "",
                                        words[(d * 3 + s * 2 + j) % 5]);
            len += (size_t)snprintf(text + len, sizeof text - len, "\n");
        }
        len += (size_t)snprintf(text + len, sizeof text - len, "\n");
    }
    cr_assert_eq(tu_write_file(path, text), 0);
    const char *paths[1] = {path};
    tk_pt_corpus *c = tk_pt_corpus_load(paths, 1, v, &TX_TOK_OPTS_DEFAULT, NULL, NULL, &e);
    cr_assert_not_null(c, "%s", e.msg);
    for (int whole = 0; whole < 2; whole++) {
        tk_pt_opts o = TK_PT_OPTS_DEFAULT;
        o.max_seq = 24;
        o.dupe_factor = 30;
        o.whole_word = whole;
        rt_rng r;
        rt_rng_seed(&r, 11);
        rt_tensor_list b;
        rt_list_init(&b);
        tk_pt_stats st;
        cr_assert_eq(tk_pt_create(c, v, &o, &r, &b, &st, NULL, NULL, &e), 0, "%s", e.msg);
        const rt_tensor *ids = rt_list_cfind(&b, "input_ids"),
                        *lab = rt_list_cfind(&b, "mlm_labels");
        int64_t N = ids->shape[0], S = o.max_seq, split = 0, whole_words = 0;
        for (int64_t row = 0; row < N; row++) {
            const int64_t *x = (int64_t *)ids->data + row * S,
                          *y = (int64_t *)lab->data + row * S;
            /* Words: a token that is not a "##" piece, then the pieces after it. */
            for (int i = 1; i < S; i++) {
                int64_t id = y[i] != -100 ? y[i] : x[i];
                if (id == SEP || id == PAD || id == CLS || !strncmp(toks[id], "##", 2))
                    continue;
                int j = i + 1, nch = y[i] != -100, len2 = 1;
                for (; j < S; j++) {
                    int64_t id2 = y[j] != -100 ? y[j] : x[j];
                    if (id2 < 0 || id2 >= 13 || strncmp(toks[id2], "##", 2))
                        break;
                    nch += y[j] != -100;
                    len2++;
                }
                if (len2 > 1 && nch > 0) {
                    split += nch != len2;
                    whole_words += nch == len2;
                }
            }
        }
        if (whole) {
            cr_expect_eq(split, 0, "%lld words chosen in part", (long long)split);
            cr_expect(whole_words > 100, "%lld whole words", (long long)whole_words);
            /* Skipped words can leave a row short of num_to_predict, never over it. */
            cr_expect(st.mask.chosen <= st.mask.candidates);
        } else {
            cr_expect(split > 100, "token masking never split a word (%lld)",
                      (long long)split);
        }
        rt_list_free(&b);
    }
    tk_pt_corpus_free(c);
    tx_vocab_free(v);
}

/* ---- streaming ------------------------------------------------------------------------
 */

static int64_t stream_all(int window, int shuffle, uint64_t seed, tk_pt_opts o,
                          rt_tensor_list *all, int *docs_seen, tk_pt_stats *st)
{
    bc_err e;
    const char *paths[1] = {fx.corpus};
    tk_pt_stream *s = tk_pt_stream_open(paths, 1, fx.v, &TX_TOK_OPTS_DEFAULT, &o, window,
                                        shuffle, seed, &e);
    cr_assert_not_null(s, "%s", e.msg);
    int64_t rows = 0, S = o.max_seq;
    int64_t cap = 4096;
    int64_t *ids = malloc((size_t)(cap * S) * sizeof *ids),
            *tt = malloc((size_t)(cap * S) * 8), *am = malloc((size_t)(cap * S) * 8),
            *lab = malloc((size_t)(cap * S) * 8), *nsp = malloc((size_t)cap * 8);
    rt_tensor_list b;
    rt_list_init(&b);
    int n;
    while ((n = tk_pt_stream_next(s, 16, &b, &e)) > 0) {
        cr_assert(rows + n <= cap);
        cr_assert_eq(rt_list_cfind(&b, "input_ids")->shape[0], n);
        memcpy(ids + rows * S, rt_list_cfind(&b, "input_ids")->data, (size_t)(n * S) * 8);
        memcpy(tt + rows * S, rt_list_cfind(&b, "token_type_ids")->data,
               (size_t)(n * S) * 8);
        memcpy(am + rows * S, rt_list_cfind(&b, "attention_mask")->data,
               (size_t)(n * S) * 8);
        memcpy(lab + rows * S, rt_list_cfind(&b, "mlm_labels")->data, (size_t)(n * S) * 8);
        memcpy(nsp + rows, rt_list_cfind(&b, "nsp_labels")->data, (size_t)n * 8);
        rows += n;
    }
    cr_assert_eq(n, 0, "%s", e.msg);
    cr_assert_eq(tk_pt_stream_next(s, 16, &b, &e), 0); /* stays over */
    tk_pt_stream_stats(s, st);
    tk_pt_stream_free(s);
    rt_list_free(&b);
    rt_list_init(all);
    int64_t shape[2] = {rows, S};
    rt_list_add(all, "input_ids", RT_I64, 2, shape, ids);
    rt_list_add(all, "token_type_ids", RT_I64, 2, shape, tt);
    rt_list_add(all, "attention_mask", RT_I64, 2, shape, am);
    rt_list_add(all, "mlm_labels", RT_I64, 2, shape, lab);
    rt_list_add(all, "nsp_labels", RT_I64, 1, shape, nsp);
    for (int64_t r = 0; r < rows; r++)
        for (int i = 1; i < S; i++) {
            int64_t id = lab[r * S + i] != -100 ? lab[r * S + i] : ids[r * S + i];
            if (id == SEP)
                break;
            docs_seen[fx.doc[word(id)]] = 1;
        }
    free(ids);
    free(tt);
    free(am);
    free(lab);
    free(nsp);
    return rows;
}

Test(pretrain_data, stream_yields_well_formed_instances_of_every_document)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 32;
    for (int window = 2; window <= 16; window *= 2) {
        rt_tensor_list all;
        int seen[NDOCS] = {0};
        tk_pt_stats st;
        int64_t rows = stream_all(window, 8, 21, o, &all, seen, &st);
        cr_assert(rows > NDOCS);
        cr_expect_eq(st.instances, rows);
        cr_expect_eq(st.documents, NDOCS);
        cr_expect_eq(st.tokens, fx.nwords);
        tally t = {0};
        check_batch(&all, &o, 1, &t); /* NotNext B from another document of the window */
        for (int d = 0; d < NDOCS; d++)
            cr_expect(seen[d], "window %d: document %d never in A", window, d);
        rt_list_free(&all);
    }
}

Test(pretrain_data, stream_is_deterministic_and_seeds_differ)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 32;
    rt_tensor_list a, b, c;
    int seen[NDOCS];
    tk_pt_stats st;
    stream_all(4, 32, 5, o, &a, seen, &st);
    stream_all(4, 32, 5, o, &b, seen, &st);
    stream_all(4, 32, 6, o, &c, seen, &st);
    const rt_tensor *x = rt_list_cfind(&a, "input_ids"),
                    *y = rt_list_cfind(&b, "input_ids"),
                    *z = rt_list_cfind(&c, "input_ids");
    cr_expect(rt_nbytes(x) == rt_nbytes(y) && !memcmp(x->data, y->data, rt_nbytes(x)));
    cr_expect(rt_nbytes(x) != rt_nbytes(z) || memcmp(x->data, z->data, rt_nbytes(x)));
    rt_list_free(&a);
    rt_list_free(&b);
    rt_list_free(&c);
}

Test(pretrain_data, stream_rejects_a_window_of_one)
{
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    bc_err e;
    const char *paths[1] = {fx.corpus};
    cr_expect_null(
        tk_pt_stream_open(paths, 1, fx.v, &TX_TOK_OPTS_DEFAULT, &o, 1, 8, 0, &e));
    cr_expect(strstr(e.msg, "window") != NULL, "%s", e.msg);
}

/* ---- the command ------------------------------------------------------------------- */

/* Skips when the executable predates the command (it says "not implemented yet"). */
static int run_cli(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' pretrain-data %s", BERTCC_EXE, args);
    return tu_run(cmd, out);
}

static void skip_without_cli(void)
{
    char *out = NULL;
    int rc = run_cli("--help", &out);
    int missing =
        rc != 0 || !out || strstr(out, "not implemented") || !strstr(out, "--corpus");
    free(out);
    cr_assert(!missing, "bertcc at %s has no pretrain-data command", BERTCC_EXE);
}

Test(pretrain_data, cli_writes_the_batch_with_a_summary)
{
    skip_without_cli();
    const char *dir = tu_tmpdir();
    char vocab[1024], args[4096];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    FILE *f = fopen(vocab, "w");
    for (int i = 0; i < tx_vocab_size(fx.v); i++)
        fprintf(f, "%s\n", tx_vocab_token(fx.v, i));
    fclose(f);
    char *bytes[3];
    size_t len[3];
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args,
                 "--corpus '%s' --vocab '%s' -o '%s/out%d.safetensors' --max-seq 40 "
                 "--dupe-factor 3 --seed %d",
                 fx.corpus, vocab, dir, k, k < 2 ? 5 : 6);
        char *out = NULL;
        int rc = run_cli(args, &out);
        cr_assert_eq(rc, 0, "%s", out);
        cr_expect(strstr(out, "instances") && strstr(out, "IsNext") &&
                      strstr(out, "masked"),
                  "%s", out);
        free(out);
        bytes[k] = tu_read_file(tu_path(dir, k == 0   ? "out0.safetensors"
                                             : k == 1 ? "out1.safetensors"
                                                      : "out2.safetensors"),
                                &len[k]);
        cr_assert_not_null(bytes[k]);
    }
    cr_expect(len[0] == len[1] && !memcmp(bytes[0], bytes[1], len[0]));
    cr_expect(len[0] != len[2] || memcmp(bytes[0], bytes[2], len[0]));
    for (int k = 0; k < 3; k++)
        free(bytes[k]);
    rt_tensor_list b;
    rt_list_init(&b);
    bc_err e;
    cr_assert_eq(rt_st_load(tu_path(dir, "out0.safetensors"), &b, &e), 0, "%s", e.msg);
    tk_pt_opts o = TK_PT_OPTS_DEFAULT;
    o.max_seq = 40;
    tally t = {0};
    check_batch(&b, &o, 1, &t);
    rt_list_free(&b);
    /* Errors: a missing corpus file, a missing vocabulary option. */
    char *out = NULL;
    snprintf(args, sizeof args, "--corpus '%s/none.txt' --vocab '%s' -o '%s/x.st'", dir,
             vocab, dir);
    cr_expect_eq(run_cli(args, &out), 1);
    cr_expect(out && strstr(out, "none.txt"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "--corpus '%s' -o '%s/x.st'", fx.corpus, dir);
    cr_expect_eq(run_cli(args, &out), 1);
    free(out);
}

/* ---- BERT's sample text ----------------------------------------------------------------
 */

Test(pretrain_data, shared_data_sample_text_with_bert_vocab)
{
    struct stat sb;
    if (stat(tu_src(SAMPLE_TEXT), &sb) || stat(tu_src(BERT_VOCAB), &sb))
        TU_NEED_SHARED_DATA(0, "bert_sample_text and bert_vocab");
    bc_err e;
    tx_vocab *v = tx_vocab_load(tu_src(BERT_VOCAB), &e);
    cr_assert_not_null(v, "%s", e.msg);
    const char *paths[1] = {tu_src(SAMPLE_TEXT)};
    tk_pt_corpus *c = tk_pt_corpus_load(paths, 1, v, &TX_TOK_OPTS_DEFAULT, NULL, NULL, &e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_expect(tk_pt_corpus_docs(c) >= 3, "%lld documents", (long long)tk_pt_corpus_docs(c));
    tk_pt_opts o = TK_PT_OPTS_DEFAULT; /* BERT's README: max_seq 128, 20 predictions */
    o.dupe_factor = 5;
    for (int whole = 0; whole < 2; whole++) {
        o.whole_word = whole;
        rt_rng r;
        rt_rng_seed(&r, 12345);
        rt_tensor_list b;
        rt_list_init(&b);
        tk_pt_stats st;
        cr_assert_eq(tk_pt_create(c, v, &o, &r, &b, &st, NULL, NULL, &e), 0, "%s", e.msg);
        const rt_tensor *ids = rt_list_cfind(&b, "input_ids"),
                        *tt = rt_list_cfind(&b, "token_type_ids"),
                        *am = rt_list_cfind(&b, "attention_mask"),
                        *lab = rt_list_cfind(&b, "mlm_labels");
        int64_t N = ids->shape[0], S = o.max_seq;
        cr_assert(N > 10 && N == st.instances, "%lld rows", (long long)N);
        cr_assert_eq(ids->shape[1], 128);
        int cls = tx_vocab_special(v, TX_CLS), sep = tx_vocab_special(v, TX_SEP);
        for (int64_t row = 0; row < N; row++) {
            const int64_t *x = (int64_t *)ids->data + row * S,
                          *y = (int64_t *)lab->data + row * S,
                          *ty = (int64_t *)tt->data + row * S,
                          *m = (int64_t *)am->data + row * S;
            int n = 0, seps = 0, chosen = 0;
            while (n < S && m[n])
                n++;
            cr_assert(n >= 5);
            cr_assert_eq(x[0], cls);
            cr_assert_eq(x[n - 1], sep);
            for (int i = 0; i < S; i++) {
                if (i >= n) {
                    cr_assert(x[i] == 0 && m[i] == 0 && y[i] == -100 && ty[i] == 0);
                    continue;
                }
                int is_sep = x[i] == sep && y[i] == -100; /* a [SEP] is never chosen */
                cr_assert_eq(ty[i], seps >= 1, "row %lld position %d", (long long)row, i);
                seps += is_sep;
                if (y[i] != -100) {
                    chosen++;
                    cr_assert(y[i] != cls && y[i] != sep && y[i] != 0);
                }
            }
            cr_assert_eq(seps, 2);
            cr_assert(chosen <= 20 && chosen >= 1);
            if (!whole)
                cr_assert_eq(chosen, num_to_predict(n, &o));
        }
        double f = (double)st.mask.chosen / (double)st.mask.candidates;
        double nn = (double)(st.instances - st.is_next) / (double)st.instances;
        cr_expect(f > 0.13 && f < 0.17, "chosen fraction %.4f", f);
        cr_expect(nn > 0.3 && nn < 0.7, "NotNext fraction %.3f", nn);
        cr_expect(fabs((double)st.mask.to_mask / (double)st.mask.chosen - 0.8) < 0.04);
        rt_list_free(&b);
    }
    tk_pt_corpus_free(c);
    tx_vocab_free(v);
}
