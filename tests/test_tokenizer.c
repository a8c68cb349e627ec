/* test_tokenizer.c: text/tokenizer.c and text/wordpiece_learn.c, and the tokenize
 * and vocab commands. Hand-checked cases over a tiny vocabulary (punctuation, "##"
 * continuations, [UNK], the 100-character limit, offsets through accents and jamo,
 * special tokens in text); Hugging Face's own ids for English and Korean sentences
 * (fixtures made by tests/tokenizer/make_fixture.mjs; the tests that need the real
 * vocabularies in ../shared/data are named shared_data_* and skip without it); and the
 * vocabulary learner (special tokens first, determinism, Korean syllables). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "text/tokenizer.h"
#include "text/unicode.h"
#include "util.h"

#define TINY "tests/fixtures/tokenizer/tiny_vocab.txt"
#define SHARED "../shared/data"
#define BERT_VOCAB SHARED "/bert_vocab/bert-base-uncased-vocab.txt"
#define KRBERT_VOCAB SHARED "/krbert_vocab/vocab_char_16424.txt"

static const tx_tok_opts LOWER = {1, -1}, LOWER_KEEP = {1, 0}, CASED = {0, -1};

/* ---- helpers ---------------------------------------------------------------------- */

static tx_vocab *load(const char *rel)
{
    bc_err e;
    tx_vocab *v = tx_vocab_load(tu_src(rel), &e);
    cr_assert_not_null(v, "%s", e.msg);
    return v;
}

/* "token@start-end token@start-end ..." for text under o. */
static char *show(const tx_vocab *v, tx_tok_opts o, const char *text, size_t len)
{
    tx_token_list l = {0};
    bc_err e;
    cr_assert_eq(tx_tokenize(v, &o, text, len, &l, &e), 0, "%s", e.msg);
    size_t cap = 64, n = 0;
    char *s = malloc(cap);
    s[0] = 0;
    for (int i = 0; i < l.n; i++) {
        char item[512];
        int k = snprintf(item, sizeof item, "%s%s@%d-%d", i ? " " : "",
                         tx_vocab_token(v, l.t[i].id), l.t[i].start, l.t[i].end);
        while (n + (size_t)k + 1 > cap)
            s = realloc(s, cap *= 2);
        memcpy(s + n, item, (size_t)k + 1);
        n += (size_t)k;
    }
    tx_token_list_free(&l);
    return s;
}

static void expect_tokens(const tx_vocab *v, tx_tok_opts o, const char *text,
                          const char *want)
{
    char *got = show(v, o, text, strlen(text));
    cr_expect_str_eq(got, want, "text \"%s\"", text);
    free(got);
}

static int have_shared_data(void)
{
    struct stat st;
    return stat(tu_src(BERT_VOCAB), &st) == 0 && stat(tu_src(KRBERT_VOCAB), &st) == 0;
}

#define SKIP_WITHOUT_SHARED_DATA()                                                         \
    do {                                                                                   \
        TU_NEED_SHARED_DATA(have_shared_data(), "bert_vocab and krbert_vocab");            \
    } while (0)

/* ---- hand-checked: the basic tokenizer and WordPiece ------------------------------- */

Test(tokenizer, splits_punctuation_with_offsets)
{
    tx_vocab *v = load(TINY);
    expect_tokens(v, LOWER, "Hello, world!", "hello@0-5 ,@5-6 world@7-12 !@12-13");
    expect_tokens(v, LOWER, "hello...", "hello@0-5 .@5-6 .@6-7 .@7-8");
    tx_vocab_free(v);
}

Test(tokenizer, continues_words_with_double_hash)
{
    tx_vocab *v = load(TINY);
    expect_tokens(v, LOWER, "unaffable", "un@0-2 ##aff@2-5 ##able@5-9");
    expect_tokens(v, LOWER, "Wanted running", "want@0-4 ##ed@4-6 runn@7-11 ##ing@11-14");
    tx_vocab_free(v);
}

Test(tokenizer, unknown_word_is_one_unk_over_the_whole_word)
{
    tx_vocab *v = load(TINY);
    /* "unaff" has no "##x" to go on with: the whole word, not a prefix, becomes [UNK] */
    expect_tokens(v, LOWER, "the unaffx", "the@0-3 [UNK]@4-10");
    expect_tokens(v, LOWER, "zzz.", "[UNK]@0-3 .@3-4");
    tx_vocab_free(v);
}

Test(tokenizer, words_over_100_characters_are_unk)
{
    tx_vocab *v = load(TINY);
    char text[256];
    memset(text, 'a', 100);
    text[100] = 0;
    char *got = show(v, LOWER, text, 100);
    cr_expect_str_eq(
        got, "aaaaaaaaaa@0-10 ##aaaaaaaaaa@10-20 ##aaaaaaaaaa@20-30 ##aaaaaaaaaa@30-40 "
             "##aaaaaaaaaa@40-50 ##aaaaaaaaaa@50-60 ##aaaaaaaaaa@60-70 "
             "##aaaaaaaaaa@70-80 ##aaaaaaaaaa@80-90 ##aaaaaaaaaa@90-100");
    free(got);
    memset(text, 'a', 101);
    memcpy(text + 101, " a", 3);
    got = show(v, LOWER, text, strlen(text));
    cr_expect_str_eq(got, "[UNK]@0-101 a@102-103");
    free(got);
    /* the limit counts characters after normalization: 60 syllables are 180 jamo */
    char ko[400] = "";
    for (int i = 0; i < 60; i++)
        strcat(ko, "한");
    got = show(v, LOWER, ko, strlen(ko));
    cr_expect_str_eq(got, "[UNK]@0-180");
    free(got);
    tx_vocab_free(v);
}

Test(tokenizer, offsets_follow_accents_back_to_the_original_bytes)
{
    tx_vocab *v = load(TINY);
    /* É is two bytes; a combining accent written apart is covered by its letter */
    expect_tokens(v, LOWER, "CAFÉS", "cafe@0-5 ##s@5-6");
    expect_tokens(v, LOWER, "cafe\xcc\x81s", "cafe@0-6 ##s@6-7");
    expect_tokens(v, LOWER, "xx Café", "[UNK]@0-2 cafe@3-8");
    /* without accent stripping the accented word is looked up as it is */
    expect_tokens(v, LOWER_KEEP, "Café", "café@0-5");
    expect_tokens(v, CASED, "Café", "[UNK]@0-5");
    tx_vocab_free(v);
}

Test(tokenizer, lowercased_korean_becomes_jamo_with_syllable_offsets)
{
    tx_vocab *v = load(TINY);
    expect_tokens(v, LOWER, "한국", "ᄒ@0-3 ##ᅡ@0-3 ##ᆫ@0-3 ##ᄀ@3-6 ##ᅮ@3-6 ##ᆨ@3-6");
    expect_tokens(v, LOWER_KEEP, "한국어", "한국@0-6 ##어@6-9");
    expect_tokens(v, CASED, "한국어 어", "한국@0-6 ##어@6-9 어@10-13");
    tx_vocab_free(v);
}

Test(tokenizer, special_tokens_in_text_stay_whole)
{
    tx_vocab *v = load(TINY);
    expect_tokens(v, LOWER, "the [MASK].", "the@0-3 [MASK]@4-10 .@10-11");
    expect_tokens(v, LOWER, "the[MASK][SEP]the", "the@0-3 [MASK]@3-9 [SEP]@9-14 the@14-17");
    expect_tokens(v, LOWER, "[CLS] a [SEP] [PAD] [UNK]",
                  "[CLS]@0-5 a@6-7 [SEP]@8-13 [PAD]@14-19 [UNK]@20-25");
    /* matched before normalization and case-sensitively, as added tokens with
     * normalized=false: lower-case or broken forms are ordinary text */
    expect_tokens(v, LOWER, "[mask] [Mask]",
                  "[@0-1 mask@1-5 ]@5-6 [@7-8 mask@8-12 ]@12-13");
    expect_tokens(v, LOWER, "[MASK [[MASK]]", "[@0-1 mask@1-5 [@6-7 [MASK]@7-13 ]@13-14");
    tx_vocab_free(v);
}

Test(tokenizer, cleans_control_characters_and_odd_whitespace)
{
    tx_vocab *v = load(TINY);
    /* NUL, U+FFFD, controls and format characters vanish (joining what they split);
     * tabs, no-break and ideographic spaces, line separators separate */
    expect_tokens(v, LOWER,
                  "a\x01"
                  "b",
                  "a@0-1 ##b@2-3");
    const char nul[] = "a\0b the";
    char *got = show(v, LOWER, nul, sizeof nul - 1);
    cr_expect_str_eq(got, "a@0-1 ##b@2-3 the@4-7");
    free(got);
    expect_tokens(v, LOWER,
                  "a\xef\xbf\xbd"
                  "b",
                  "a@0-1 ##b@4-5");
    expect_tokens(v, LOWER,
                  "a\xe2\x80\x8b"
                  "b",
                  "a@0-1 ##b@4-5"); /* zero-width space */
    expect_tokens(v, LOWER, "\tthe\xc2\xa0the\xe3\x80\x80the\xe2\x80\xa8the\r\n",
                  "the@1-4 the@6-9 the@12-15 the@18-21");
    expect_tokens(v, LOWER, "  \t\x7f\n ", "");
    tx_vocab_free(v);
}

Test(tokenizer, cjk_ideographs_are_words_of_their_own)
{
    tx_vocab *v = load(TINY);
    expect_tokens(v, LOWER, "中文", "中@0-3 文@3-6");
    expect_tokens(v, LOWER, "a中a", "a@0-1 中@1-4 a@4-5");
    /* Extension B ideographs too (Python's ranges; Tokenizers.js misses them) */
    expect_tokens(v, LOWER,
                  "a\xf0\xa0\x80\x80"
                  "a",
                  "a@0-1 [UNK]@1-5 a@5-6");
    tx_vocab_free(v);
}

Test(tokenizer, lowercases_as_python_does)
{
    tx_vocab *v = load(TINY);
    /* final sigma: ς at the end of a word, σ elsewhere and alone */
    expect_tokens(v, LOWER, "ΟΔΟΣ", "ο@0-2 ##δ@2-4 ##ος@4-8");
    expect_tokens(v, LOWER, "Σ", "σ@0-2");
    /* İ lower-cases to i + combining dot: kept without stripping, gone with it */
    expect_tokens(v, LOWER, "İstanbul", "i@0-2 ##stanbul@2-9");
    expect_tokens(v, LOWER_KEEP, "İstanbul", "i̇@0-2 ##stanbul@2-9");
    tx_vocab_free(v);
}

Test(tokenizer, rejects_invalid_utf8_and_leaves_the_list_as_it_was)
{
    tx_vocab *v = load(TINY);
    tx_token_list l = {0};
    bc_err e;
    cr_assert_eq(tx_tokenize(v, &LOWER, "the", 3, &l, &e), 0);
    cr_assert_eq(tx_tokenize(v, &LOWER, "the \xff the", 9, &l, &e), -1);
    cr_expect(strstr(e.msg, "invalid UTF-8 at byte 4"), "%s", e.msg);
    cr_expect_eq(l.n, 1);
    cr_assert_eq(tx_tokenize(v, &LOWER, "\xed\xa0\x80", 3, &l, &e), -1, "a surrogate");
    cr_assert_eq(tx_tokenize(v, &LOWER, "\xc0\xaf", 2, &l, &e), -1, "an overlong form");
    cr_expect_eq(l.n, 1);
    tx_token_list_free(&l);
    tx_vocab_free(v);
}

Test(tokenizer, pre_split_words_give_first_subtoken_indices)
{
    tx_vocab *v = load(TINY);
    const char *words[] = {"unaffable", "the", "\x01", "Wanted", "zzz"};
    int first[6];
    tx_token_list l = {0};
    bc_err e;
    cr_assert_eq(tx_tokenize_words(v, &LOWER, words, 5, &l, first, &e), 0, "%s", e.msg);
    int want_first[6] = {0, 3, 4, 5, 7, 8};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(first[i], want_first[i], "first[%d] = %d", i, first[i]);
    /* a word that gives nothing still has one token, [UNK]; offsets are into each word */
    cr_expect_eq(l.t[4].id, tx_vocab_special(v, TX_UNK));
    cr_expect_eq(l.t[6].start, 4);
    cr_expect_eq(l.t[6].end, 6);
    tx_token_list_free(&l);
    tx_vocab_free(v);
}

static int collect(void *ctx, const char *w, size_t len, int32_t s, int32_t e)
{
    char *buf = ctx;
    size_t n = strlen(buf);
    snprintf(buf + n, 256 - n, "%s%.*s@%d-%d", n ? " " : "", (int)len, w, s, e);
    return 0;
}

static int stop_at_second(void *ctx, const char *w, size_t len, int32_t s, int32_t e)
{
    (void)w;
    (void)len;
    (void)s;
    (void)e;
    return ++*(int *)ctx == 2 ? 7 : 0;
}

Test(tokenizer, basic_tokenizer_alone_gives_normalized_words)
{
    char buf[256] = "";
    bc_err e;
    cr_assert_eq(tx_basic_tokenize(&LOWER, "Ünïcode, [MASK]", 17, collect, buf, &e), 0);
    cr_expect_str_eq(buf, "unicode@0-9 ,@9-10 [@11-12 mask@12-16 ]@16-17");
    int calls = 0;
    cr_expect_eq(tx_basic_tokenize(&LOWER, "a b c", 5, stop_at_second, &calls, &e), 7);
    cr_expect_eq(calls, 2);
}

/* ---- vocabulary files ------------------------------------------------------------- */

static tx_vocab *load_text(const char *text, bc_err *e, const char **path)
{
    const char *p = tu_path(tu_tmpdir(), "vocab.txt");
    cr_assert_eq(tu_write_file(p, text), 0);
    if (path)
        *path = p;
    return tx_vocab_load(p, e);
}

Test(vocab, loads_ids_by_line_and_special_ids)
{
    tx_vocab *v = load(TINY);
    cr_expect_eq(tx_vocab_size(v), 48);
    cr_expect_eq(tx_vocab_special(v, TX_PAD), 0);
    cr_expect_eq(tx_vocab_special(v, TX_MASK), 4);
    cr_expect_eq(tx_vocab_id(v, "##aff", 5), 7);
    cr_expect_eq(tx_vocab_id(v, "##af", 4), -1);
    cr_expect_str_eq(tx_vocab_token(v, 5), "the");
    cr_expect_null(tx_vocab_token(v, 48));
    cr_expect_null(tx_vocab_token(v, -1));
    cr_expect_eq(tx_vocab_duplicates(v), 0);
    tx_vocab_free(v);
}

Test(vocab, repeated_token_maps_to_its_last_line_as_in_hugging_face)
{
    bc_err e;
    tx_vocab *v = load_text("[PAD]\r\n[UNK]\r\nx\r\ny\r\nx\r\n[UNK]", &e, NULL);
    cr_assert_not_null(v, "%s", e.msg);
    cr_expect_eq(tx_vocab_size(v), 6);
    cr_expect_eq(tx_vocab_id(v, "x", 1), 4);
    cr_expect_eq(tx_vocab_special(v, TX_UNK), 5);
    cr_expect_str_eq(tx_vocab_token(v, 2), "x");
    cr_expect_eq(tx_vocab_duplicates(v), 2);
    cr_expect_eq(tx_vocab_special(v, TX_MASK), -1);
    tx_vocab_free(v);
}

Test(vocab, errors_name_the_file_and_line)
{
    bc_err e;
    const char *p;
    cr_expect_null(load_text("[UNK]\nok\nbad\xff\n", &e, &p));
    char want[1200];
    snprintf(want, sizeof want, "%s:3: invalid UTF-8", p);
    cr_expect_str_eq(e.msg, want);
    cr_expect_null(load_text("[PAD]\nthe\n", &e, &p));
    cr_expect(strstr(e.msg, "no [UNK]") && strstr(e.msg, p), "%s", e.msg);
    cr_expect_null(load_text("", &e, &p));
    cr_expect(strstr(e.msg, "empty"), "%s", e.msg);
    cr_expect_null(tx_vocab_load("/nonexistent/vocab.txt", &e));
    cr_expect(strstr(e.msg, "/nonexistent/vocab.txt: cannot open"), "%s", e.msg);
}

Test(vocab, special_tokens_the_vocabulary_lacks_are_plain_text)
{
    bc_err e;
    const char *toks[] = {"[UNK]", "[", "##mask", "m", "##a", "##s", "##k", "]"};
    tx_vocab *v = tx_vocab_from_list(toks, 8, "list", &e);
    cr_assert_not_null(v, "%s", e.msg);
    expect_tokens(v, CASED, "[mask]", "[@0-1 m@1-2 ##a@2-3 ##s@3-4 ##k@4-5 ]@5-6");
    expect_tokens(v, CASED, "[MASK]", "[@0-1 [UNK]@1-5 ]@5-6");
    tx_vocab_free(v);
}

/* ---- Hugging Face's ids for the committed sentences -------------------------------- */

/* Splits text into lines on "\n" only (the text ends with one). */
static int split_lines(char *text, size_t len, char **line, size_t *llen, int max)
{
    int n = 0;
    size_t s = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') {
            cr_assert_lt(n, max);
            line[n] = text + s;
            llen[n++] = i - s;
            text[i] = 0;
            s = i + 1;
        }
    return n;
}

/* A piece's text as the basic tokenizer sees its original span, for the offsets
 * check; final sigma is context-dependent, so σ and ς compare equal. */
static void fold_sigma(char *s)
{
    for (char *p = s; (p = strstr(p, "\xcf\x82"));)
        p[1] = '\x83';
}

static void check_offsets(const tx_vocab *v, tx_tok_opts o, const char *text, size_t len,
                          const tx_token_list *l, int lineno)
{
    int32_t prev = 0;
    for (int i = 0; i < l->n; i++) {
        const tx_token *t = &l->t[i];
        cr_assert(t->start >= prev && t->start < t->end && (size_t)t->end <= len,
                  "line %d token %d: offsets %d-%d", lineno, i, t->start, t->end);
        prev = t->start;
        const char *tok = tx_vocab_token(v, t->id);
        int special = 0;
        for (int s = 0; s < TX_NSPECIAL; s++)
            special |= t->id == tx_vocab_special(v, (tx_special)s);
        if (special) {
            if (t->id != tx_vocab_special(v, TX_UNK))
                cr_expect(!strncmp(text + t->start, tok, strlen(tok)), "line %d token %d",
                          lineno, i);
            continue;
        }
        char words[4096] = "", piece[512];
        bc_err e;
        cr_assert_eq(tx_basic_tokenize(&o, text + t->start, (size_t)(t->end - t->start),
                                       collect, words, &e),
                     0);
        snprintf(piece, sizeof piece, "%s", tok + (strncmp(tok, "##", 2) ? 0 : 2));
        fold_sigma(words);
        fold_sigma(piece);
        cr_expect(strstr(words, piece), "line %d token %d '%s' at %d-%d reads '%s'", lineno,
                  i, tok, t->start, t->end, words);
    }
}

static void check_fixture(const char *sentences, const char *vocab, tx_tok_opts o,
                          const char *ids)
{
    size_t slen, ilen;
    char *stext = tu_read_file(tu_src(sentences), &slen);
    char *itext = tu_read_file(tu_src(ids), &ilen);
    cr_assert(stext && itext, "cannot read %s or %s", sentences, ids);
    static char *sl[1000], *il[1000];
    static size_t sll[1000], ill[1000];
    int ns = split_lines(stext, slen, sl, sll, 1000);
    int ni = split_lines(itext, ilen, il, ill, 1000);
    cr_assert_eq(ns, ni, "%d sentences, %d lines of ids", ns, ni);
    cr_assert_geq(ns, 60);
    tx_vocab *v = load(vocab);
    tx_token_list l = {0};
    bc_err e;
    int bad = 0;
    for (int i = 0; i < ns; i++) {
        l.n = 0;
        cr_assert_eq(tx_tokenize(v, &o, sl[i], sll[i], &l, &e), 0, "line %d: %s", i + 1,
                     e.msg);
        char got[8192] = "";
        size_t n = 0;
        for (int k = 0; k < l.n; k++)
            n += (size_t)snprintf(got + n, sizeof got - n, k ? " %d" : "%d", l.t[k].id);
        if (strcmp(got, il[i])) {
            if (bad++ < 5)
                cr_expect_fail("%s line %d \"%s\":\n  want %s\n  got  %s", sentences, i + 1,
                               sl[i], il[i], got);
        }
        check_offsets(v, o, sl[i], sll[i], &l, i + 1);
    }
    cr_expect_eq(bad, 0, "%d of %d sentences differ from Hugging Face", bad, ns);
    tx_token_list_free(&l);
    tx_vocab_free(v);
    free(stext);
    free(itext);
}

#define FIX "tests/fixtures/tokenizer/"

Test(tokenizer, shared_data_english_uncased_matches_hugging_face)
{
    SKIP_WITHOUT_SHARED_DATA();
    check_fixture(FIX "sentences_en.txt", BERT_VOCAB, LOWER,
                  FIX "hf_en.bert_uncased.lower.ids");
}

Test(tokenizer, shared_data_english_uncased_keeping_accents_matches_hugging_face)
{
    SKIP_WITHOUT_SHARED_DATA();
    check_fixture(FIX "sentences_en.txt", BERT_VOCAB, LOWER_KEEP,
                  FIX "hf_en.bert_uncased.lower_keep_accents.ids");
}

Test(tokenizer, shared_data_korean_cased_krbert_matches_hugging_face)
{
    SKIP_WITHOUT_SHARED_DATA();
    check_fixture(FIX "sentences_ko.txt", KRBERT_VOCAB, CASED,
                  FIX "hf_ko.krbert.cased.ids");
}

Test(tokenizer, shared_data_korean_lowercased_to_jamo_matches_hugging_face)
{
    SKIP_WITHOUT_SHARED_DATA();
    check_fixture(FIX "sentences_ko.txt", BERT_VOCAB, LOWER,
                  FIX "hf_ko.bert_uncased.lower.ids");
}

Test(tokenizer, shared_data_english_with_cased_krbert_matches_hugging_face)
{
    SKIP_WITHOUT_SHARED_DATA();
    check_fixture(FIX "sentences_en.txt", KRBERT_VOCAB, CASED,
                  FIX "hf_en.krbert.cased.ids");
}

/* ---- learning a vocabulary --------------------------------------------------------- */

static char **learn(const char *corpus, tx_vocab_learn_opts o, int *n,
                    tx_vocab_learn_stats *st)
{
    bc_err e;
    tx_vocab_learner *l = tx_vocab_learner_new(&o, &e);
    cr_assert_not_null(l, "%s", e.msg);
    cr_assert_eq(tx_vocab_learner_add_text(l, corpus, strlen(corpus), &e), 0, "%s", e.msg);
    char **toks;
    cr_assert_eq(tx_vocab_learner_run(l, &toks, n, st, &e), 0, "%s", e.msg);
    tx_vocab_learner_free(l);
    return toks;
}

static void free_tokens(char **t, int n)
{
    for (int i = 0; i < n; i++)
        free(t[i]);
    free(t);
}

static int find_token(char **t, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i], s))
            return i;
    return -1;
}

Test(vocab_learn, specials_then_alphabet_then_merges_ties_by_string)
{
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(11);
    o.min_frequency = 1;
    o.limit_alphabet = 4; /* the default, half of 6, would leave out a character */
    int n;
    tx_vocab_learn_stats st;
    char **t = learn("cd ab CD ab", o, &n, &st);
    const char *want[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##b",
                          "##d",   "a",     "c",     "ab",    "cd"};
    cr_assert_eq(n, 11);
    for (int i = 0; i < n; i++)
        cr_expect_str_eq(t[i], want[i], "token %d", i);
    cr_expect_eq(st.words, 4);
    cr_expect_eq(st.unique_words, 2);
    cr_expect_eq(st.alphabet, 4);
    free_tokens(t, n);
}

Test(vocab_learn, merges_the_most_frequent_pair_first)
{
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(30);
    int n;
    char **t = learn("hug hug hug hug pug pug pun pun pun bun bun hugs", o, &n, NULL);
    /* alphabet: ##u 12, ##g 7, ##n h p 5, b 2, ##s 1; merges: ##u ##g -> ##ug (7), then
     * ##u ##n -> ##un and h ##ug -> hug (5 each: "##un" < "hug"), pun 3, then pug, bun */
    const char *want[] = {"##u",  "##g",  "##n", "h",   "p",   "b",  "##s",
                          "##ug", "##un", "hug", "pun", "bun", "pug"};
    cr_assert_eq(n, TX_NSPECIAL + 13);
    for (int i = 0; i < 13; i++)
        cr_expect_str_eq(t[TX_NSPECIAL + i], want[i], "token %d", TX_NSPECIAL + i);
    cr_expect_str_eq(t[5], "##u");
    /* min_frequency 2: "hugs" (seen once) is never merged whole */
    cr_expect_eq(find_token(t, n, "hugs"), -1);
    cr_expect_lt(n, 30, "stops when no pair is frequent enough");
    free_tokens(t, n);
}

Test(vocab_learn, is_deterministic_and_independent_of_line_order)
{
    const char *a = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog\n";
    const char *b = "a cat and a dog\nthe dog sat on the log\nthe cat sat on the mat\n";
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(40);
    o.min_frequency = 1;
    int n1, n2, n3;
    char **t1 = learn(a, o, &n1, NULL), **t2 = learn(a, o, &n2, NULL),
         **t3 = learn(b, o, &n3, NULL);
    cr_assert_eq(n1, n2);
    cr_assert_eq(n1, n3);
    for (int i = 0; i < n1; i++) {
        cr_expect_str_eq(t1[i], t2[i]);
        cr_expect_str_eq(t1[i], t3[i]);
    }
    free_tokens(t1, n1);
    free_tokens(t2, n2);
    free_tokens(t3, n3);
}

/* Whether s holds a conjoining jamo (U+1100..U+11FF: E1 84..E1 87). */
static int has_jamo(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (p[0] == 0xE1 && p[1] >= 0x84 && p[1] <= 0x87)
            return 1;
    return 0;
}

static const char *const ko_lines[] = {
    "아이유 노래 아무거나 틀어줘", "노래 그만 틀어",       "블랙핑크 노래 틀어줘",
    "아이유의 좋은 날 틀어줘",     "잔나비 노래 틀어줄래", "노래 좀 꺼줘",
    "음악 볼륨 좀 올려줘",         "다음 노래 틀어줘",     "방탄소년단 노래 아무거나",
    "Play some music 노래",
};

Test(vocab_learn, korean_keeps_syllables_and_learns_multi_syllable_pieces)
{
    char corpus[8192] = "";
    for (int r = 0; r < 5; r++)
        for (size_t i = 0; i < sizeof ko_lines / sizeof *ko_lines; i++) {
            strcat(corpus, ko_lines[i]);
            strcat(corpus, "\n");
        }
    int n;
    tx_vocab_learn_stats st;
    char **t = learn(corpus, TX_VOCAB_LEARN_OPTS_DEFAULT(120), &n, &st);
    for (int i = 0; i < n; i++)
        cr_expect(!has_jamo(t[i]), "token %d '%s' is jamo", i, t[i]);
    cr_expect_geq(find_token(t, n, "노래"), 0, "노래 is learned whole");
    cr_expect_geq(find_token(t, n, "틀어줘"), 0, "틀어줘 is learned");
    cr_expect_geq(find_token(t, n, "##무거나"), 0, "##무거나 is learned");
    cr_expect_geq(find_token(t, n, "play"), 0, "English is lower-cased");
    cr_expect(st.hangul * 2 > st.letters);
    /* the corpus tokenizes with it (same options) without [UNK] */
    bc_err e;
    tx_vocab *v = tx_vocab_from_list((const char *const *)t, n, "learned", &e);
    cr_assert_not_null(v, "%s", e.msg);
    tx_token_list l = {0};
    tx_tok_opts keep = {1, 0};
    cr_assert_eq(tx_tokenize(v, &keep, corpus, strlen(corpus), &l, &e), 0);
    for (int i = 0; i < l.n; i++)
        cr_expect_neq(l.t[i].id, tx_vocab_special(v, TX_UNK), "token %d is [UNK]", i);
    tx_token_list_free(&l);
    tx_vocab_free(v);
    free_tokens(t, n);
    /* with Hugging Face's accent stripping it would be jamo */
    tx_vocab_learn_opts strip = TX_VOCAB_LEARN_OPTS_DEFAULT(120);
    strip.tok.strip_accents = 1;
    t = learn(corpus, strip, &n, NULL);
    cr_expect(has_jamo(t[TX_NSPECIAL]), "'%s'", t[TX_NSPECIAL]);
    free_tokens(t, n);
}

Test(vocab_learn, alphabet_limit_keeps_the_most_frequent_forms)
{
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(100);
    o.limit_alphabet = 3;
    int n;
    tx_vocab_learn_stats st;
    char **t = learn("aab aab aab ac x", o, &n, &st);
    /* forms: a 4, ##a 3, ##b 3, ##c 1, x 1 */
    cr_expect_str_eq(t[5], "a");
    cr_expect_str_eq(t[6], "##a");
    cr_expect_str_eq(t[7], "##b");
    cr_expect_eq(st.alphabet, 3);
    cr_expect_eq(st.alphabet_dropped, 2);
    cr_expect_geq(find_token(t, n, "aab"), 0);
    free_tokens(t, n);
}

Test(vocab_learn, corpus_errors_name_file_and_line)
{
    const char *p = tu_path(tu_tmpdir(), "corpus.txt");
    cr_assert_eq(tu_write_file(p, "fine\nbad \xc3\n"), 0);
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(50);
    bc_err e;
    tx_vocab_learner *l = tx_vocab_learner_new(&o, &e);
    cr_assert_eq(tx_vocab_learner_add_file(l, p, &e), -1);
    char want[1200];
    snprintf(want, sizeof want, "%s:2: invalid UTF-8 at byte 4", p);
    cr_expect_str_eq(e.msg, want);
    tx_vocab_learner_free(l);
    o.size = 5;
    cr_expect_null(tx_vocab_learner_new(&o, &e));
}

/* ---- the commands -------------------------------------------------------------------- */

/* Runs bertcc with args; skips the test while main.c does not dispatch the command. */
static int bertcc(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s", BERTCC_EXE, args);
    int rc = tu_run(cmd, out);
    cr_assert(!(*out && strstr(*out, "not implemented yet")),
              "bertcc does not dispatch this command");
    return rc;
}

Test(cli, tokenize_prints_id_token_and_offsets)
{
    char *out, args[2048];
    snprintf(args, sizeof args, "tokenize --vocab '%s' 'Hello, [MASK] CAFÉS' 2>&1",
             tu_src(TINY));
    cr_assert_eq(bertcc(args, &out), 0, "%s", out);
    cr_expect_str_eq(out, "13\thello\t0-5\n15\t,\t5-6\n4\t[MASK]\t7-13\n20\tcafe\t14-19\n"
                          "21\t##s\t19-20\n");
    free(out);
    snprintf(args, sizeof args, "tokenize --vocab '%s' --no-lowercase 'Café' --ids",
             tu_src(TINY));
    cr_assert_eq(bertcc(args, &out), 0, "%s", out);
    cr_expect_str_eq(out, "1\n");
    free(out);
}

Test(cli, tokenize_ids_reads_lines_from_stdin)
{
    char *out, args[2048];
    snprintf(args, sizeof args, "tokenize --vocab '%s' --ids < '%s'", tu_src(TINY),
             tu_src("tests/fixtures/tokenizer/tiny_vocab.txt"));
    /* each vocabulary line tokenized as text: one output line per input line */
    cr_assert_eq(bertcc(args, &out), 0, "%s", out);
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 48);
    cr_expect(!strncmp(out, "0\n1\n2\n3\n4\n5\n6\n1 1 1\n", 20), "%.60s", out);
    free(out);
    snprintf(args, sizeof args, "tokenize --vocab '%s' --ids < /dev/null", tu_src(TINY));
    cr_assert_eq(bertcc(args, &out), 0);
    cr_expect_str_eq(out, "");
    free(out);
}

Test(cli, tokenize_errors_exit_1_with_a_message)
{
    char *out, args[2048];
    cr_expect_eq(bertcc("tokenize 'text'", &out), 1);
    cr_expect(strstr(out, "--vocab"), "%s", out);
    free(out);
    cr_expect_eq(bertcc("tokenize --vocab /nonexistent/v.txt x", &out), 1);
    cr_expect(strstr(out, "/nonexistent/v.txt"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "tokenize --vocab '%s' --lowercase --no-lowercase x",
             tu_src(TINY));
    cr_expect_eq(bertcc(args, &out), 1);
    free(out);
    const char *bad = tu_path(tu_tmpdir(), "bad.txt");
    cr_assert_eq(tu_write_file(bad, "the\nthe \xff\n"), 0);
    snprintf(args, sizeof args, "tokenize --vocab '%s' --ids < '%s'", tu_src(TINY), bad);
    cr_expect_eq(bertcc(args, &out), 1);
    cr_expect(strstr(out, "5\n") && strstr(out, "bertcc: stdin:2: invalid UTF-8 at byte 4"),
              "%s", out);
    free(out);
    cr_expect_eq(bertcc("tokenize --help", &out), 0);
    cr_expect(strstr(out, "--no-strip-accents"), "%s", out);
    free(out);
}

Test(cli, vocab_learns_and_writes_a_vocabulary)
{
    const char *dir = tu_tmpdir();
    char a[256], b[256], v[256], args[2048];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    snprintf(v, sizeof v, "%s/vocab.txt", dir);
    char corpus[4096] = "";
    for (size_t i = 0; i < sizeof ko_lines / sizeof *ko_lines; i++) {
        strcat(corpus, ko_lines[i]);
        strcat(corpus, "\n");
    }
    cr_assert_eq(tu_write_file(a, corpus), 0);
    cr_assert_eq(tu_write_file(b, corpus), 0);
    char *out;
    snprintf(args, sizeof args, "vocab --corpus '%s' '%s' --size 80 -o '%s'", a, b, v);
    cr_assert_eq(bertcc(args, &out), 0, "%s", out);
    cr_expect(strstr(out, "--no-strip-accents"), "a note on Korean options: %s", out);
    free(out);
    size_t len;
    char *text = tu_read_file(v, &len);
    cr_assert_not_null(text);
    cr_expect(!strncmp(text, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", 30));
    cr_expect(strstr(text, "\n노래\n"), "%s", text);
    free(text);
    snprintf(args, sizeof args, "tokenize --vocab '%s' --no-strip-accents '노래 틀어줘'",
             v);
    cr_assert_eq(bertcc(args, &out), 0, "%s", out);
    cr_expect(strstr(out, "\t노래\t0-6\n"), "%s", out);
    free(out);
    cr_expect_eq(bertcc("vocab --size 100 -o /tmp/x.txt", &out), 1);
    free(out);
    snprintf(args, sizeof args, "vocab --corpus '%s' --size 3 -o '%s'", a, v);
    cr_expect_eq(bertcc(args, &out), 1);
    free(out);
    cr_expect_eq(bertcc("vocab --help", &out), 0);
    free(out);
}

/* ---- text/unicode.h: the case properties str.lower() needs ----------------------------
 */

Test(unicode, final_sigma_follows_python)
{
    /* Python: "ΑΣ".lower() == "ας", "Σ".lower() == "σ", "ΑΣΒ".lower() == "ασβ",
     * "ΑΣ'".lower() == "ας'" (the apostrophe is case-ignorable), "Α'Σ".lower() == "α'ς". */
    static const int32_t alone[] = {0x3A3}, end[] = {0x391, 0x3A3},
                         mid[] = {0x391, 0x3A3, 0x392}, quote[] = {0x391, 0x3A3, 0x27},
                         before[] = {0x391, 0x27, 0x3A3};
    cr_expect_eq(tx_final_sigma(alone, 1, 0, 1, 0), 0);
    cr_expect_eq(tx_final_sigma(end, 1, 0, 2, 1), 1);
    cr_expect_eq(tx_final_sigma(mid, 1, 0, 3, 1), 0);
    cr_expect_eq(tx_final_sigma(quote, 1, 0, 3, 1), 1);
    cr_expect_eq(tx_final_sigma(before, 1, 0, 3, 2), 1);
    /* Bounds: a word boundary at lo hides the cased letter before it. */
    cr_expect_eq(tx_final_sigma(end, 1, 1, 2, 1), 0);
    /* A stride: code points every third int32 (as in a {cp, start, end} array). */
    static const int32_t strided[] = {0x391, 0, 2, 0x3A3, 2, 4, 0x392, 4, 6};
    cr_expect_eq(tx_final_sigma(strided, 3, 0, 2, 1), 1);
    cr_expect_eq(tx_final_sigma(strided, 3, 0, 3, 1), 0);
}

Test(unicode, cased_and_case_ignorable)
{
    cr_expect(tx_is_cased('a') && tx_is_cased('Z') && tx_is_cased(0x3A3));
    cr_expect(tx_is_cased(0xAA)); /* ª: Other_Lowercase without a mapping */
    cr_expect_not(tx_is_cased('1') || tx_is_cased(0xAC00) || tx_is_cased(' '));
    cr_expect(tx_is_case_ignorable('\'') && tx_is_case_ignorable('.') &&
              tx_is_case_ignorable(0x301)); /* a combining acute accent (Mn) */
    cr_expect_not(tx_is_case_ignorable('a') || tx_is_case_ignorable(','));
}

Test(unicode, blank_lines_and_valid_utf8)
{
    /* Python: " \t\u3000\u00a0\x1c".isspace() is True, "\u200b".isspace() False. */
    static const char spaces[] = " \t\xe3\x80\x80\xc2\xa0\x1c", zwsp[] = "\xe2\x80\x8b";
    cr_expect(tx_is_blank_line("", 0));
    cr_expect(tx_is_blank_line(spaces, sizeof spaces - 1));
    cr_expect_not(tx_is_blank_line(zwsp, sizeof zwsp - 1));
    cr_expect_not(tx_is_blank_line(" a ", 3));
    cr_expect_not(tx_is_blank_line("\xff", 1)); /* invalid: not blank */
    cr_expect(tx_valid_utf8("\xea\xb0\x80 ok", 6));
    cr_expect_not(tx_valid_utf8("\xea\xb0", 2)); /* cut in the middle of a character */
    cr_expect_not(tx_valid_utf8("\xc0\x80", 2)); /* overlong */
}
