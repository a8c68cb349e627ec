/* test_qa_data.c: tasks/qa_data.c. SQuAD JSON reading (code-point offsets to byte
 * offsets through multi-byte and non-BMP text, answers that do not match skipped with a
 * note, errors that name the entry), the split by article, and run_squad's features over
 * hand-made English and Korean files with a tiny vocabulary (windows and stride, answer
 * positions or [CLS], max-context flags checked by hand, query truncation, the batch
 * tensors) and span decoding back to text. The shared_data_* test runs the whole
 * pipeline over KorQuAD 1.0 dev and XQuAD-en from ../shared/data and skips without
 * them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tasks/qa_data.h"
#include "util.h"

#define FIX "tests/fixtures/qa/"
#define SHARED BERTCC_SOURCE_DIR "/../shared/data"

static const tx_tok_opts CASED = {0, -1};

/* ---- helpers ---------------------------------------------------------------------- */

static tx_vocab *tiny_vocab(void)
{
    bc_err e;
    tx_vocab *v = tx_vocab_load(tu_src(FIX "vocab.txt"), &e);
    cr_assert_not_null(v, "%s", e.msg);
    return v;
}

static void load(const char *rel, tk_qa_set *s, tu_notes *n)
{
    bc_err e;
    memset(s, 0, sizeof *s);
    cr_assert_eq(tk_qa_load(tu_src(rel), s, tu_note, n, &e), 0, "%s", e.msg);
}

static void featurize(const tk_qa_set *s, const tx_vocab *v, tk_qa_feat_opts o,
                      tk_qa_features *f)
{
    bc_err e;
    cr_assert_eq(tk_qa_featurize(s, v, &o, f, &e), 0, "%s", e.msg);
}

/* The tokens of feature i as "tok tok ..." (from a batch of that one feature). */
static char *show_feature(const tk_qa_features *f, const tx_vocab *v, int i)
{
    rt_tensor_list l;
    rt_list_init(&l);
    bc_err e;
    cr_assert_eq(tk_qa_batch(f, &i, 1, TK_QA_BATCH_PAD_LONGEST, &l, &e), 0, "%s", e.msg);
    const rt_tensor *ids = rt_list_cfind(&l, "input_ids");
    static char buf[4096];
    buf[0] = 0;
    for (int64_t j = 0; j < ids->shape[1]; j++) {
        if (j)
            strcat(buf, " ");
        strcat(buf, tx_vocab_token(v, (int)((int64_t *)ids->data)[j]));
    }
    rt_list_free(&l);
    return buf;
}

/* The context bytes that feature i's labelled positions cover (malloc'd), or NULL when
 * its positions are 0. */
static char *labelled_text(const tk_qa_set *s, const tk_qa_features *f, int i)
{
    const tk_qa_feature *x = &f->f[i];
    if (x->start_position == 0)
        return NULL;
    int *ts = malloc((size_t)x->n_tokens * sizeof *ts);
    int *te = malloc((size_t)x->n_tokens * sizeof *te);
    unsigned char *mc = malloc((size_t)x->n_tokens);
    tk_qa_feature_spans(f, i, ts, te, mc);
    cr_assert_geq(ts[x->start_position], 0);
    cr_assert_geq(te[x->end_position], ts[x->start_position]);
    const char *c = s->ex[x->example].context;
    int a = ts[x->start_position], b = te[x->end_position];
    char *out = malloc((size_t)(b - a) + 1);
    memcpy(out, c + a, (size_t)(b - a));
    out[b - a] = 0;
    free(ts);
    free(te);
    free(mc);
    return out;
}

static int feature_of(const tk_qa_features *f, int example, int window)
{
    cr_assert_lt(window, f->first[example + 1] - f->first[example]);
    return f->first[example] + window;
}

/* ---- reading ---------------------------------------------------------------------- */

Test(qa_data, converts_code_point_offsets_to_byte_offsets)
{
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "multibyte.json", &s, &n);
    cr_assert_eq(s.n, 2);
    /* "café 𝄞 naïve x y": é and ï are 2 bytes, 𝄞 (a surrogate pair in the JSON) 4. */
    cr_expect_str_eq(s.ex[0].context, "caf\xc3\xa9 \xf0\x9d\x84\x9e na\xc3\xafve x y");
    cr_expect_eq(s.ex[0].context_len, 21);
    const tk_qa_answer *a = &s.ex[0].answers[0];
    cr_expect_eq(a->char_start, 7);
    cr_expect_eq(a->start, 11);
    cr_expect_eq(a->end, 17);
    cr_expect_str_eq(a->text, "na\xc3\xafve");
    /* mb-2: the 𝄞 at code point 5, then "x" (not at 3: skipped), then "y" at 15. */
    cr_assert_eq(s.ex[1].n_answers, 2);
    cr_expect_eq(s.ex[1].answers[0].start, 6);
    cr_expect_eq(s.ex[1].answers[0].end, 10);
    cr_expect_eq(s.ex[1].answers[1].start, 20);
    cr_expect_eq(s.ex[1].answers[1].end, 21);
    for (int i = 0; i < s.n; i++)
        for (int j = 0; j < s.ex[i].n_answers; j++) {
            const tk_qa_answer *x = &s.ex[i].answers[j];
            cr_expect_eq(memcmp(s.ex[i].context + x->start, x->text, strlen(x->text)), 0);
        }
    tk_qa_set_free(&s);
}

Test(qa_data, skips_answers_not_at_their_offset_with_a_note)
{
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "multibyte.json", &s, &n);
    cr_expect_eq(s.skipped_answers, 2);   /* mb-2's "x", mb-3's "x" past the end */
    cr_expect_eq(s.skipped_questions, 1); /* mb-3, left with no answer */
    cr_expect_eq(n.n, 3);
    cr_expect(strstr(n.last, "multibyte.json") && strstr(n.last, "qas[2]") &&
                  strstr(n.last, "mb-3") && strstr(n.last, "question skipped"),
              "%s", n.last);
    cr_expect_str_eq(s.ex[0].id, "mb-1");
    cr_expect_str_eq(s.ex[1].id, "mb-2");
    tk_qa_set_free(&s);
}

Test(qa_data, reads_korean_with_byte_offsets)
{
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "ko.json", &s, &n);
    cr_assert_eq(s.n, 2);
    cr_expect_eq(n.n, 0);
    const tk_qa_answer *a = &s.ex[0].answers[0];
    cr_expect_eq(a->char_start, 5);
    cr_expect_eq(a->start, 13); /* "이순신은 " is 4 syllables of 3 bytes and a space */
    cr_expect_eq(a->end, 13 + (int)strlen("1545년 4월 28일"));
    cr_expect_str_eq(s.ex[0].question, "이순신은 언제 태어났나요?");
    cr_expect_eq(s.ex[1].n_answers, 2);
    cr_expect_eq(s.ex[1].answers[0].start, 32);
    cr_expect_eq(s.ex[1].answers[1].end, 32 + (int)strlen("한성에서"));
    cr_expect_eq(s.ex[0].article, 0);
    cr_expect_eq(s.ex[1].paragraph, 0);
    tk_qa_set_free(&s);
}

static void expect_parse_error(const char *json, const char *want1, const char *want2)
{
    tk_qa_set s = {0};
    bc_err e;
    cr_assert_eq(tk_qa_parse(json, strlen(json), "t.json", &s, NULL, NULL, &e), -1,
                 "parsed: %s", json);
    cr_expect(strstr(e.msg, "t.json") && strstr(e.msg, want1) &&
                  (!want2 || strstr(e.msg, want2)),
              "message \"%s\" lacks \"%s\" / \"%s\"", e.msg, want1, want2 ? want2 : "");
    cr_expect_eq(s.n, 0);
    tk_qa_set_free(&s);
}

Test(qa_data, malformed_files_give_errors_naming_the_entry)
{
    expect_parse_error("{\"data\": [", "invalid JSON", NULL);
    expect_parse_error("[1, 2]", "\"data\"", NULL);
    expect_parse_error("{\"version\": \"1.1\"}", "missing the \"data\"", NULL);
    expect_parse_error("{\"data\": [{\"title\": \"x\"}]}", "data[0].paragraphs", "missing");
    expect_parse_error("{\"data\": [{\"paragraphs\": [{\"context\": 3, \"qas\": []}]}]}",
                       "data[0].paragraphs[0].context", "expected a string");
    expect_parse_error(
        "{\"data\": [{\"paragraphs\": [{\"context\": \"a\", \"qas\": [{\"id\": "
        "\"1\", \"answers\": []}]}]}]}",
        "data[0].paragraphs[0].qas[0].question", "missing");
    expect_parse_error("{\"data\": [{\"paragraphs\": [{\"context\": \"a\"}]}, 7]}",
                       "data[0].paragraphs[0].qas", "missing");
    expect_parse_error(
        "{\"data\": [{\"paragraphs\": [{\"context\": \"a\", \"qas\": [{\"id\": \"1\", "
        "\"question\": \"q\", \"answers\": [{\"text\": \"a\", \"answer_start\": "
        "-1}]}]}]}]}",
        "qas[0].answers[0].answer_start", "out of range");
    expect_parse_error(
        "{\"data\": [{\"paragraphs\": [{\"context\": \"a\\u0000b\", \"qas\": "
        "[]}]}]}",
        "invalid JSON", "not allowed");

    /* From a file: the message names it. */
    tk_qa_set s = {0};
    bc_err e;
    cr_assert_eq(tk_qa_load(tu_src(FIX "bad_start.json"), &s, NULL, NULL, &e), -1);
    cr_expect(strstr(e.msg, "bad_start.json: data[0].paragraphs[0].qas[0].answers[0]."
                            "answer_start: expected an integer"),
              "%s", e.msg);
    cr_assert_eq(tk_qa_load("/nonexistent/squad.json", &s, NULL, NULL, &e), -1);
    cr_expect(strstr(e.msg, "/nonexistent/squad.json"), "%s", e.msg);
    cr_expect_eq(s.n, 0);
}

Test(qa_data, a_failed_load_leaves_the_set_as_it_was)
{
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "ko.json", &s, &n);
    bc_err e;
    cr_assert_eq(tk_qa_load(tu_src(FIX "bad_start.json"), &s, NULL, NULL, &e), -1);
    cr_expect_eq(s.n, 2);
    cr_assert_eq(tk_qa_load(tu_src(FIX "windows.json"), &s, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_expect_eq(s.n, 8); /* appended */
    cr_expect_eq(s.n_articles, 4);
    tk_qa_set_free(&s);
}

Test(qa_data, splits_by_article)
{
    tk_qa_set s, rest, held;
    tu_notes n = {0};
    load(FIX "windows.json", &s, &n);
    cr_assert_eq(s.n, 6);
    cr_assert_eq(s.n_articles, 3);
    bc_err e;
    cr_assert_eq(tk_qa_split(&s, 2, 1, &rest, &held, &e), 0, "%s", e.msg);
    cr_assert_eq(held.n, 2); /* article 1: x-1 and x-2, from two paragraphs */
    cr_expect_str_eq(held.ex[0].id, "x-1");
    cr_expect_str_eq(held.ex[1].id, "x-2");
    cr_assert_eq(rest.n, 4);
    cr_expect_str_eq(rest.ex[3].id, "t-1");
    cr_expect_str_eq(rest.ex[3].answers[0].text, "end");
    cr_expect_eq(rest.n_articles, 3);
    cr_expect_eq(tk_qa_split(&s, 1, 0, &rest, &held, &e), -1);
    cr_expect_eq(held.n, 2); /* untouched by the failed call */
    tk_qa_set_free(&s);      /* the copies are deep */
    cr_expect_str_eq(held.ex[1].context, "y x");
    tk_qa_set_free(&rest);
    tk_qa_set_free(&held);
}

/* ---- features --------------------------------------------------------------------- */

Test(qa_data, korean_features_cover_the_answer_tokens)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "ko.json", &s, &n);
    tk_qa_feat_opts o = TK_QA_FEAT_OPTS_DEFAULT;
    o.tok = CASED;
    tk_qa_features f;
    featurize(&s, v, o, &f);
    cr_assert_eq(f.n, 2); /* one window each */
    cr_expect_str_eq(show_feature(&f, v, 0),
                     "[CLS] 이순신 ##은 언제 태어 ##났 ##나 ##요 ? [SEP] 이순신 ##은 1545 "
                     "##년 4 ##월 28 ##일 한성 ##에서 태어 ##났 ##다 . [SEP]");
    cr_expect_eq(f.f[0].start_position, 12);
    cr_expect_eq(f.f[0].end_position, 17);
    char *t = labelled_text(&s, &f, 0);
    cr_expect_str_eq(t, "1545년 4월 28일");
    free(t);
    t = labelled_text(&s, &f, 1); /* the first answer, "한성", gives the labels */
    cr_expect_str_eq(t, "한성");
    free(t);
    cr_expect_eq(f.n_docs, 1); /* one paragraph, tokenized once */
    cr_expect_eq(f.answers_in_window, 2);

    /* The batch: [N, 384] with types, mask and padding. */
    rt_tensor_list l;
    rt_list_init(&l);
    bc_err e;
    cr_assert_eq(tk_qa_batch(&f, NULL, 2, TK_QA_BATCH_LABELS, &l, &e), 0, "%s", e.msg);
    const rt_tensor *ids = rt_list_cfind(&l, "input_ids");
    const rt_tensor *ty = rt_list_cfind(&l, "token_type_ids");
    const rt_tensor *m = rt_list_cfind(&l, "attention_mask");
    const rt_tensor *sp = rt_list_cfind(&l, "start_positions");
    const rt_tensor *ep = rt_list_cfind(&l, "end_positions");
    cr_assert(ids && ty && m && sp && ep);
    cr_expect_eq(ids->dtype, RT_I64);
    cr_expect_eq(ids->rank, 2);
    cr_expect_eq(ids->shape[0], 2);
    cr_expect_eq(ids->shape[1], 384);
    cr_expect_eq(sp->rank, 1);
    cr_expect_eq(sp->shape[0], 2);
    const int64_t *I = ids->data, *T = ty->data, *M = m->data;
    int nt = f.f[0].n_tokens; /* 1 + 8 + 1 + 14 + 1 */
    cr_expect_eq(nt, 25);
    for (int j = 0; j < 384; j++) {
        cr_expect_eq(T[j], j >= 10 && j < nt, "type at %d", j);
        cr_expect_eq(M[j], j < nt, "mask at %d", j);
        if (j >= nt)
            cr_expect_eq(I[j], 0);
    }
    cr_expect_eq(((int64_t *)sp->data)[0], 12);
    cr_expect_eq(((int64_t *)ep->data)[1], 19); /* a 9-token question */
    rt_list_free(&l);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

Test(qa_data, multibyte_answers_decode_back)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "multibyte.json", &s, &n);
    tk_qa_feat_opts o = TK_QA_FEAT_OPTS_DEFAULT;
    o.tok = CASED;
    tk_qa_features f;
    featurize(&s, v, o, &f);
    cr_assert_eq(f.n, 2);
    char *t = labelled_text(&s, &f, 0);
    cr_expect_str_eq(t, "na\xc3\xafve");
    free(t);
    t = labelled_text(&s, &f, 1);
    cr_expect_str_eq(t, "\xf0\x9d\x84\x9e");
    free(t);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

/* windows.json's first paragraph, "a b c d e f g h i j", one token per letter. With
 * S = 8 and a one-token question a window holds 4 document tokens. */
Test(qa_data, windows_follow_the_stride_and_label_the_answer_or_cls)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "windows.json", &s, &n);
    tk_qa_features f;
    featurize(&s, v, (tk_qa_feat_opts){8, 2, 3, CASED}, &f);
    /* w-de: windows [0,4) [2,6) [4,8) [6,10). */
    cr_assert_eq(f.first[1] - f.first[0], 4);
    for (int w = 0; w < 4; w++) {
        const tk_qa_feature *x = &f.f[feature_of(&f, 0, w)];
        cr_expect_eq(x->example, 0);
        cr_expect_eq(x->window, w);
        cr_expect_eq(x->doc_start, 2 * w);
        cr_expect_eq(x->doc_len, 4);
        cr_expect_eq(x->n_tokens, 8);
    }
    cr_expect_str_eq(show_feature(&f, v, feature_of(&f, 0, 1)),
                     "[CLS] q [SEP] c d e f [SEP]");
    /* "d e" (tokens 3, 4) lies wholly in the second window only. */
    int want_s[4] = {0, 4, 0, 0}, want_e[4] = {0, 5, 0, 0};
    for (int w = 0; w < 4; w++) {
        cr_expect_eq(f.f[feature_of(&f, 0, w)].start_position, want_s[w], "window %d", w);
        cr_expect_eq(f.f[feature_of(&f, 0, w)].end_position, want_e[w], "window %d", w);
    }
    char *t = labelled_text(&s, &f, feature_of(&f, 0, 1));
    cr_expect_str_eq(t, "d e");
    free(t);
    /* w-a: "a" only in the first window, [CLS] in the others. */
    cr_expect_eq(f.f[feature_of(&f, 1, 0)].start_position, 3);
    for (int w = 1; w < 4; w++)
        cr_expect_eq(f.f[feature_of(&f, 1, w)].start_position, 0);
    /* x-1, x-2, t-1: short contexts, one window each, shorter than S. */
    for (int i = 3; i < 6; i++)
        cr_expect_eq(f.first[i + 1] - f.first[i], 1);
    cr_expect_str_eq(show_feature(&f, v, feature_of(&f, 5, 0)),
                     "[CLS] what [SEP] the end . [SEP]");
    cr_expect_eq(f.n_docs, 4);

    /* doc_stride 3: [0,4) [3,7) [6,10), the last one ends the document. */
    tk_qa_features g;
    featurize(&s, v, (tk_qa_feat_opts){8, 3, 3, CASED}, &g);
    cr_assert_eq(g.first[1] - g.first[0], 3);
    cr_expect_eq(g.f[2].doc_start, 6);
    cr_expect_eq(g.f[2].doc_len, 4);
    cr_expect_eq(g.f[1].start_position, 3 + 0); /* "d" is window 1's first doc token */
    cr_expect_eq(g.f[0].start_position, 0);     /* "e" is past window 0 */
    /* S = 9 gives 5 document tokens per window: [0,5) [3,8), and a shorter last one,
     * [6,10). */
    tk_qa_features h;
    featurize(&s, v, (tk_qa_feat_opts){9, 3, 3, CASED}, &h);
    cr_assert_eq(h.first[1] - h.first[0], 3);
    cr_expect_eq(h.f[2].doc_start, 6);
    cr_expect_eq(h.f[2].doc_len, 4);
    cr_expect_eq(h.f[2].n_tokens, 8);
    tk_qa_features_free(&h);
    tk_qa_features_free(&g);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

Test(qa_data, truncates_the_query)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "windows.json", &s, &n);
    tk_qa_features f;
    featurize(&s, v, (tk_qa_feat_opts){8, 2, 3, CASED}, &f);
    /* w-long: "a b c d e" keeps 3 tokens, leaving 2 per window: 5 windows; "j" is the
     * last window's second document token. */
    int ex = 2;
    cr_assert_eq(f.first[ex + 1] - f.first[ex], 5);
    int last = feature_of(&f, ex, 4);
    cr_expect_eq(f.f[last].query_len, 3);
    cr_expect_str_eq(show_feature(&f, v, last), "[CLS] a b c [SEP] i j [SEP]");
    cr_expect_eq(f.f[last].start_position, 6);
    cr_expect_eq(f.f[last].end_position, 6);
    for (int w = 0; w < 4; w++)
        cr_expect_eq(f.f[feature_of(&f, ex, w)].start_position, 0);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

Test(qa_data, max_context_flags_match_run_squad)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "windows.json", &s, &n);
    tk_qa_features f;
    featurize(&s, v, (tk_qa_feat_opts){8, 2, 3, CASED}, &f);
    /* Windows [0,4) [2,6) [4,8) [6,10); score = min(left, right) + 0.01 * length. Token
     * 2: window 0 (min(2,1) = 1) beats window 1 (min(0,3) = 0); token 3: window 1
     * (min(1,2)) beats window 0 (min(3,0)); and so on. Positions 3..6 hold the document
     * tokens; [CLS], q and the [SEP]s are never max-context. */
    const unsigned char want[4][8] = {{0, 0, 0, 1, 1, 1, 0, 0},
                                      {0, 0, 0, 0, 1, 1, 0, 0},
                                      {0, 0, 0, 0, 1, 1, 0, 0},
                                      {0, 0, 0, 0, 1, 1, 1, 0}};
    const int want_start[8] = {-1, -1, -1, 0, 2, 4, 6, -1}; /* window 0's byte offsets */
    for (int w = 0; w < 4; w++) {
        int ts[8], te[8];
        unsigned char mc[8];
        tk_qa_feature_spans(&f, feature_of(&f, 0, w), ts, te, mc);
        for (int j = 0; j < 8; j++) {
            cr_expect_eq(mc[j], want[w][j], "window %d token %d", w, j);
            if (w == 0) {
                cr_expect_eq(ts[j], want_start[j], "token %d", j);
                cr_expect_eq(te[j], want_start[j] < 0 ? -1 : want_start[j] + 1);
            }
        }
    }
    /* A tie (stride 3: token 3 ends window 0 and starts window 1, 0.04 each) goes to the
     * earlier window. */
    tk_qa_features g;
    featurize(&s, v, (tk_qa_feat_opts){8, 3, 3, CASED}, &g);
    int ts[8], te[8];
    unsigned char mc[8];
    tk_qa_feature_spans(&g, 0, ts, te, mc);
    cr_expect_eq(mc[6], 1);
    tk_qa_feature_spans(&g, 1, ts, te, mc);
    cr_expect_eq(mc[3], 0);
    cr_expect_eq(mc[4], 1);
    tk_qa_features_free(&g);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

Test(qa_data, batches_pick_features_and_pad_to_the_longest)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "windows.json", &s, &n);
    tk_qa_features f;
    featurize(&s, v, (tk_qa_feat_opts){8, 2, 3, CASED}, &f);
    int idx[2] = {f.first[3], f.first[5]}; /* "x y" and "the end." */
    rt_tensor_list l;
    rt_list_init(&l);
    bc_err e;
    cr_assert_eq(tk_qa_batch(&f, idx, 2, TK_QA_BATCH_PAD_LONGEST, &l, &e), 0, "%s", e.msg);
    cr_expect_null(rt_list_cfind(&l, "start_positions"));
    const rt_tensor *ids = rt_list_cfind(&l, "input_ids");
    cr_expect_eq(ids->shape[0], 2);
    cr_expect_eq(ids->shape[1], 7); /* [CLS] what [SEP] the end . [SEP] */
    const int64_t *m = rt_list_cfind(&l, "attention_mask")->data;
    cr_expect_eq(m[5], 1); /* [CLS] what [SEP] x y [SEP] */
    cr_expect_eq(m[6], 0);
    cr_expect_eq(m[7 + 6], 1);
    int bad = f.n;
    cr_expect_eq(tk_qa_batch(&f, &bad, 1, 0, &l, &e), -1);
    cr_expect(strstr(e.msg, "out of range"), "%s", e.msg);
    rt_list_free(&l);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

Test(qa_data, rejects_options_without_room_for_the_document)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "ko.json", &s, &n);
    tk_qa_features f;
    bc_err e;
    tk_qa_feat_opts o = {67, 128, 64, CASED};
    cr_expect_eq(tk_qa_featurize(&s, v, &o, &f, &e), -1);
    cr_expect(strstr(e.msg, "max_seq_len 67"), "%s", e.msg);
    o = (tk_qa_feat_opts){384, 0, 64, CASED};
    cr_expect_eq(tk_qa_featurize(&s, v, &o, &f, &e), -1);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

/* ---- decoding --------------------------------------------------------------------- */

Test(qa_data, decodes_the_best_max_context_span)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s;
    tu_notes n = {0};
    load(FIX "windows.json", &s, &n);
    tk_qa_features f;
    featurize(&s, v, (tk_qa_feat_opts){8, 2, 3, CASED}, &f);
    int S = 8;
    float *sl = calloc((size_t)f.n * S, sizeof *sl),
          *el = calloc((size_t)f.n * S, sizeof *el);
    /* Window 0 says "d" (position 6) with 10 + 10, but window 0 is not d's max-context
     * window, so window 1's "d e" (8 + 8) wins (over window 0's "a b c d", 0 + 10). */
    sl[feature_of(&f, 0, 0) * S + 6] = 10;
    el[feature_of(&f, 0, 0) * S + 6] = 10;
    sl[feature_of(&f, 0, 1) * S + 4] = 8;
    el[feature_of(&f, 0, 1) * S + 5] = 8;
    /* t-1: "end" from its labels. */
    sl[f.first[5] * S + f.f[f.first[5]].start_position] = 3;
    el[f.first[5] * S + f.f[f.first[5]].end_position] = 3;
    char *preds[6];
    tk_qa_span spans[6];
    bc_err e;
    cr_assert_eq(tk_qa_decode(&s, &f, sl, el, S, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH,
                              preds, spans, &e),
                 0, "%s", e.msg);
    cr_expect_str_eq(preds[0], "d e");
    cr_expect_eq(spans[0].window, 1);
    cr_expect_eq(spans[0].start, 6);
    cr_expect_eq(spans[0].end, 9);
    cr_expect_str_eq(preds[5], "end");
    double em, f1;
    cr_assert_eq(
        tk_qa_set_evaluate(&s, (const char *const *)preds, TK_QA_SQUAD, &em, &f1, &e), 0,
        "%s", e.msg);
    cr_expect_geq(em, 2.0 / 6 - 1e-9); /* d e, end; the others are whatever ties give */
    for (int i = 0; i < 6; i++)
        free(preds[i]);
    cr_expect_eq(tk_qa_decode(&s, &f, sl, el, 7, 20, 30, preds, NULL, &e), -1);
    free(sl);
    free(el);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

Test(qa_data, raw_questions_have_no_labels)
{
    tx_vocab *v = tiny_vocab();
    tk_qa_set s = {0};
    bc_err e;
    cr_assert_eq(tk_qa_set_add(&s, "p1", "이순신은 언제 태어났나요?",
                               "이순신은 1545년 4월 28일 한성에서 태어났다.", &e),
                 0, "%s", e.msg);
    cr_expect_eq(tk_qa_set_add(&s, "p2", "q", "\xff", &e), -1);
    cr_assert_eq(s.n, 1);
    tk_qa_features f;
    featurize(&s, v, (tk_qa_feat_opts){384, 128, 64, CASED}, &f);
    cr_assert_eq(f.n, 1);
    cr_expect_eq(f.f[0].start_position, 0);
    cr_expect_eq(f.answers_in_window, 0);
    cr_expect_eq(tk_qa_set_evaluate(&s, NULL, TK_QA_SQUAD, NULL, NULL, &e), -1);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

/* ---- the real files ----------------------------------------------------------------- */

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Whether feature i's labels are the answer's tokens: the first overlaps the answer's
 * first byte, the last its last byte. *exact: their bytes are the answer's text. */
static int labels_cover(const tk_qa_set *s, const tk_qa_features *f, int i, int *exact)
{
    const tk_qa_feature *x = &f->f[i];
    const tk_qa_answer *a = &s->ex[x->example].answers[0];
    *exact = 0;
    if (x->start_position == 0)
        return 0;
    int *ts = malloc((size_t)x->n_tokens * sizeof *ts);
    int *te = malloc((size_t)x->n_tokens * sizeof *te);
    unsigned char *mc = malloc((size_t)x->n_tokens);
    tk_qa_feature_spans(f, i, ts, te, mc);
    int sp = x->start_position, ep = x->end_position;
    int ok = ts[sp] >= 0 && ts[sp] <= a->start && a->start < te[sp] && ts[ep] < a->end &&
             a->end <= te[ep];
    *exact = ok && ts[sp] == a->start && te[ep] == a->end;
    free(ts);
    free(te);
    free(mc);
    return ok;
}

/* Loads file and makes features (S 384, stride 128). Checks that >= 99% of first
 * answers are labelled by their own tokens in some window, that at least min_exact of
 * them are exactly those tokens' bytes, and that decoding logits made from the labels
 * scores EM >= min_em (and F1 >= 0.98). */
static void roundtrip(const char *file, const char *vocab, tx_tok_opts tok, int want_n,
                      tk_qa_flavor flavor, double min_exact, double min_em)
{
    bc_err e;
    tx_vocab *v = tx_vocab_load(vocab, &e);
    cr_assert_not_null(v, "%s", e.msg);
    tk_qa_set s = {0};
    tu_notes n = {0};
    cr_assert_eq(tk_qa_load(file, &s, tu_note, &n, &e), 0, "%s", e.msg);
    cr_expect_eq(s.n, want_n, "%s", file);
    cr_expect_eq(n.n, 0, "%s: %s", file, n.last);
    tk_qa_features f;
    tk_qa_feat_opts o = TK_QA_FEAT_OPTS_DEFAULT;
    o.tok = tok;
    featurize(&s, v, o, &f);
    int covered = 0, exact = 0;
    for (int j = 0; j < s.n; j++) {
        int c = 0, x = 0;
        for (int i = f.first[j]; i < f.first[j + 1]; i++) {
            int xi;
            c |= labels_cover(&s, &f, i, &xi);
            x |= xi;
        }
        covered += c;
        exact += x;
    }
    /* Logits that say the labels in every window holding the answer. */
    int S = f.opts.max_seq_len;
    float *sl = calloc((size_t)f.n * S, sizeof *sl),
          *el = calloc((size_t)f.n * S, sizeof *el);
    for (int i = 0; i < f.n; i++)
        if (f.f[i].start_position) {
            sl[(size_t)i * S + f.f[i].start_position] = 10;
            el[(size_t)i * S + f.f[i].end_position] = 10;
        }
    char **preds = calloc((size_t)s.n, sizeof *preds);
    cr_assert_eq(tk_qa_decode(&s, &f, sl, el, S, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH,
                              preds, NULL, &e),
                 0, "%s", e.msg);
    double em, f1;
    cr_assert_eq(tk_qa_set_evaluate(&s, (const char *const *)preds, flavor, &em, &f1, &e),
                 0, "%s", e.msg);
    cr_log_info("%s: %d questions, %d features; answers labelled by their tokens %d, "
                "exactly %d; decoded from the labels EM %.4f F1 %.4f",
                file, s.n, f.n, covered, exact, em, f1);
    cr_expect_geq(covered, 0.99 * s.n, "%s: %d of %d answers labelled", file, covered, s.n);
    cr_expect_geq(exact, min_exact * s.n, "%s: %d of %d answers exact", file, exact, s.n);
    cr_expect_geq(em, min_em, "%s: EM %.4f", file, em);
    cr_expect_geq(f1, 0.98, "%s: F1 %.4f", file, f1);
    for (int j = 0; j < s.n; j++)
        free(preds[j]);
    free(preds);
    free(sl);
    free(el);
    tk_qa_features_free(&f);
    tk_qa_set_free(&s);
    tx_vocab_free(v);
}

/* XQuAD-en with bert-base-uncased: 99% of answers come back exactly. KorQuAD with
 * KR-BERT's vocabulary cannot: greedy WordPiece glues particles onto the last syllable
 * of the answer ("계단을" is 계 ##단을, for the answer "계단"), so about 13% of answers
 * end inside a token; labels still cover them, and character F1 stays near 1. */
Test(qa_data, shared_data_korquad_and_xquad_map_back, .timeout = 600)
{
    const char *ko = SHARED "/korquad1/KorQuAD_v1.0_dev.json";
    const char *en = SHARED "/squad_xquad_en/xquad.en.json";
    const char *kv = SHARED "/krbert_vocab/vocab_char_16424.txt";
    const char *ev = SHARED "/bert_vocab/bert-base-uncased-vocab.txt";
    if (!exists(ko) || !exists(en) || !exists(kv) || !exists(ev))
        TU_NEED_SHARED_DATA(0, "korquad1, squad_xquad_en and the vocabs");
    roundtrip(ko, kv, CASED, 5774, TK_QA_KORQUAD, 0.85, 0.85);
    roundtrip(en, ev, TX_TOK_OPTS_DEFAULT, 1190, TK_QA_SQUAD, 0.99, 0.99);
}
