/* test_metrics.c: tasks/metrics.c. conlleval counts on hand-made tag sequences
 * (counted by hand below) and on 400 more whose counts the Perl conlleval script gave
 * (tests/fixtures/metrics/conlleval_cases.txt); intent and frame accuracy; SQuAD v1.1
 * and KorQuAD v1.0 EM/F1 by hand and against the scripts' Python functions
 * (tests/fixtures/metrics/qa_cases.jsonl); QA span decoding over overlapping windows. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/metrics.h"
#include "util.h"

#define EPS 1e-12

/* ---- conlleval by hand ------------------------------------------------------------- */

/* Counts for sentences given as "GOLD/PRED GOLD/PRED ..." strings. */
static tk_prf conll_of(const char *const *sents, int n, tk_conll *raw)
{
    tk_conll c = TK_CONLL_INIT;
    for (int s = 0; s < n; s++) {
        char buf[512], *gold[32], *pred[32], *save = NULL;
        int k = 0;
        snprintf(buf, sizeof buf, "%s", sents[s]);
        for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            char *slash = strchr(w, '/');
            cr_assert_not_null(slash);
            *slash = 0;
            gold[k] = w;
            pred[k++] = slash + 1;
        }
        bc_err e;
        cr_assert_eq(
            tk_conll_add(&c, (const char *const *)gold, (const char *const *)pred, k, &e),
            0, "%s", e.msg);
    }
    tk_prf r;
    tk_conll_score(&c, &r);
    if (raw)
        *raw = c;
    return r;
}

#define CHECK_COUNTS(r, g, p, c)                                                           \
    do {                                                                                   \
        cr_expect_eq((r).gold, g, "gold chunks %lld, expected %d", (r).gold, g);           \
        cr_expect_eq((r).pred, p, "predicted chunks %lld, expected %d", (r).pred, p);      \
        cr_expect_eq((r).correct, c, "correct chunks %lld, expected %d", (r).correct, c);  \
    } while (0)

Test(conlleval, identical_tags_are_all_correct)
{
    const char *s[] = {"B-a/B-a I-a/I-a O/O B-b/B-b"};
    tk_conll raw;
    tk_prf r = conll_of(s, 1, &raw);
    CHECK_COUNTS(r, 2, 2, 2);
    cr_expect_float_eq(r.f1, 1.0, EPS);
    cr_expect_eq(raw.tokens, 4);
    cr_expect_eq(raw.correct_tags, 4);
}

Test(conlleval, i_after_o_starts_a_chunk)
{
    /* gold: a = [1,2]; predicted: "I-a" after O starts a = [0,2], so the chunks differ */
    const char *s[] = {"O/I-a B-a/I-a I-a/I-a"};
    tk_prf r = conll_of(s, 1, NULL);
    CHECK_COUNTS(r, 1, 1, 0);
    cr_expect_float_eq(r.f1, 0.0, EPS);
}

Test(conlleval, type_change_inside_a_chunk_splits_it)
{
    /* gold a = [0,2]; predicted a = [0,0], b = [1,2] */
    const char *s[] = {"B-a/B-a I-a/I-b I-a/I-b O/O"};
    tk_prf r = conll_of(s, 1, NULL);
    CHECK_COUNTS(r, 1, 2, 0);
}

Test(conlleval, chunk_at_sentence_end_is_closed_by_the_boundary)
{
    /* a = [1,2] ends the first sentence; the next sentence's B-a is a new chunk */
    const char *s[] = {"O/O B-a/B-a I-a/I-a", "B-a/B-a"};
    tk_prf r = conll_of(s, 2, NULL);
    CHECK_COUNTS(r, 2, 2, 2);
    cr_expect_float_eq(r.precision, 1.0, EPS);
    cr_expect_float_eq(r.recall, 1.0, EPS);
}

Test(conlleval, chunk_cut_short_is_wrong)
{
    /* gold a = [0,1], predicted a = [0,0]: same start and type, different end */
    const char *s[] = {"B-a/B-a I-a/O O/O"};
    tk_prf r = conll_of(s, 1, NULL);
    CHECK_COUNTS(r, 1, 1, 0);
}

Test(conlleval, sentence_starting_with_i_and_b_after_i)
{
    /* 1st: I-a after the boundary starts a = [1,2] in both. 2nd: gold I-b [0,0], B-b
     * [1,1]; predicted B-b [0,0], B-b [1,1]: all three chunks match */
    const char *s[] = {"O/O I-a/I-a I-a/I-a", "I-b/B-b B-b/B-b"};
    tk_conll raw;
    tk_prf r = conll_of(s, 2, &raw);
    CHECK_COUNTS(r, 3, 3, 3);
    cr_expect_eq(raw.correct_tags, 4); /* I-b vs B-b is a wrong tag, a right chunk */
}

Test(conlleval, predicted_unk_misses_the_chunk_and_costs_precision)
{
    /* gold a = [0,1], b = [2,2]. Predicted: a = [0,0]; UNK after a typed word starts an
     * untyped chunk in the script ([1,1]); b = [2,2]; UNK after b another ([3,3]). */
    const char *s[] = {"B-a/B-a I-a/UNK B-b/B-b O/UNK"};
    tk_conll raw;
    tk_prf r = conll_of(s, 1, &raw);
    CHECK_COUNTS(r, 2, 4, 1);
    cr_expect_float_eq(r.precision, 0.25, EPS);
    cr_expect_float_eq(r.recall, 0.5, EPS);
    cr_expect_float_eq(r.f1, 2 * 0.25 * 0.5 / 0.75, EPS);
    cr_expect_eq(raw.correct_tags, 2);
}

Test(conlleval, unk_after_o_is_no_chunk)
{
    const char *s[] = {"O/UNK B-a/B-a O/UNK"};
    tk_prf r = conll_of(s, 1, NULL);
    CHECK_COUNTS(r, 1, 2, 1); /* the second UNK follows B-a, so the script opens one */
    const char *t[] = {"O/UNK O/UNK B-a/B-a"};
    r = conll_of(t, 1, NULL);
    CHECK_COUNTS(r, 1, 1, 1);
}

Test(conlleval, atis_types_with_dots)
{
    /* gold from = [0,1], to = [2,2]; predicted from = [0,0], to = [1,1], to = [2,2] */
    const char *s[] = {"B-fromloc.city_name/B-fromloc.city_name "
                       "I-fromloc.city_name/I-toloc.city_name "
                       "B-toloc.city_name/B-toloc.city_name"};
    tk_prf r = conll_of(s, 1, NULL);
    CHECK_COUNTS(r, 2, 3, 1);
    cr_expect_float_eq(r.f1, 2 * (1.0 / 3) * 0.5 / (1.0 / 3 + 0.5), EPS);
}

Test(conlleval, b_after_b_is_a_new_chunk)
{
    /* gold: a = [0,0], a = [1,1]; predicted a = [0,1] */
    const char *s[] = {"B-a/B-a B-a/I-a O/O"};
    tk_prf r = conll_of(s, 1, NULL);
    CHECK_COUNTS(r, 2, 1, 0);
}

Test(conlleval, hyphen_in_type_splits_at_the_first_hyphen)
{
    /* types "a-b" and "a-c": the second word changes type */
    const char *s[] = {"B-a-b/B-a-b I-a-b/I-a-c"};
    tk_prf r = conll_of(s, 1, NULL);
    CHECK_COUNTS(r, 1, 2, 0);
}

Test(conlleval, counts_accumulate_over_the_corpus)
{
    /* per sentence: (1,1,1), (1,1,0), (0,1,0): F1 is not the mean of sentence F1s */
    const char *s[] = {"B-a/B-a", "B-a/B-b", "O/B-c"};
    tk_prf r = conll_of(s, 3, NULL);
    CHECK_COUNTS(r, 2, 3, 1);
    cr_expect_float_eq(r.precision, 1.0 / 3, EPS);
    cr_expect_float_eq(r.recall, 0.5, EPS);
    cr_expect_float_eq(r.f1, 0.4, EPS);
}

Test(conlleval, no_chunks_give_zero_f1)
{
    const char *s[] = {"O/O O/O", ""};
    tk_prf r = conll_of(s, 2, NULL);
    CHECK_COUNTS(r, 0, 0, 0);
    cr_expect_eq(r.precision, 0.0);
    cr_expect_eq(r.recall, 0.0);
    cr_expect_eq(r.f1, 0.0);
    tk_conll c = TK_CONLL_INIT;
    tk_conll_score(&c, &r);
    cr_expect_eq(r.f1, 0.0);
}

Test(conlleval, rejects_bad_tags_and_leaves_counts_alone)
{
    tk_conll c = TK_CONLL_INIT;
    bc_err e;
    const char *g1[] = {"B-a", "I-a"}, *p1[] = {"B-a", NULL};
    cr_expect_eq(tk_conll_add(&c, g1, p1, 2, &e), -1);
    cr_expect(strstr(e.msg, "word 1"), "%s", e.msg);
    const char *p2[] = {"B-a", ""};
    cr_expect_eq(tk_conll_add(&c, g1, p2, 2, &e), -1);
    const char *p3[] = {"B-a", "I a"};
    cr_expect_eq(tk_conll_add(&c, g1, p3, 2, &e), -1);
    cr_expect(strstr(e.msg, "whitespace"), "%s", e.msg);
    cr_expect_eq(tk_conll_add(&c, g1, g1, -1, &e), -1);
    cr_expect_eq(tk_conll_add(&c, NULL, g1, 2, &e), -1);
    cr_expect_eq(c.tokens, 0);
    cr_expect_eq(c.gold_chunks, 0);
}

/* ---- conlleval against the Perl script --------------------------------------------- */

Test(conlleval, matches_the_perl_script_on_the_fixture)
{
    size_t len;
    char *text = tu_read_file(tu_src("tests/fixtures/metrics/conlleval_cases.txt"), &len);
    cr_assert_not_null(text);
    char *gold[64], *pred[64];
    int ncases = 0, nw = 0, want[4] = {0}, in_case = 0;
    tk_conll c = TK_CONLL_INIT;
    /* strtok would skip the empty lines that end sentences, so split by hand */
    for (char *line = text, *next; line && line < text + len; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (line[0] == '#')
            continue;
        if (strncmp(line, "case ", 5) == 0) {
            cr_assert_eq(
                sscanf(line + 5, "%d %d %d %d", &want[0], &want[1], &want[2], &want[3]), 4);
            c = TK_CONLL_INIT;
            nw = 0;
            in_case = 1;
        } else if (strcmp(line, "end") == 0) {
            cr_assert(in_case);
            tk_prf r;
            tk_conll_score(&c, &r);
            cr_expect_eq(c.tokens, want[0], "case %d: tokens", ncases);
            cr_expect_eq(r.gold, want[1], "case %d: gold %lld, script %d", ncases, r.gold,
                         want[1]);
            cr_expect_eq(r.pred, want[2], "case %d: found %lld, script %d", ncases, r.pred,
                         want[2]);
            cr_expect_eq(r.correct, want[3], "case %d: correct %lld, script %d", ncases,
                         r.correct, want[3]);
            ncases++;
            in_case = 0;
        } else if (line[0] == 0) {
            bc_err e;
            cr_assert_eq(tk_conll_add(&c, (const char *const *)gold,
                                      (const char *const *)pred, nw, &e),
                         0, "%s", e.msg);
            nw = 0;
        } else {
            char *sp = strchr(line, ' ');
            cr_assert_not_null(sp);
            cr_assert_lt(nw, 64);
            *sp = 0;
            gold[nw] = line;
            pred[nw++] = sp + 1;
        }
    }
    cr_expect_geq(ncases, 400);
    free(text);
}

/* ---- intent, frame ------------------------------------------------------------------ */

Test(intent_slot, intent_accuracy_counts_unk_gold_as_wrong)
{
    const char *gold[] = {"play", "stop", TK_METRIC_UNK, "play"};
    const char *pred[] = {"play", "play", TK_METRIC_UNK, "play"};
    double acc;
    bc_err e;
    cr_assert_eq(tk_intent_accuracy(gold, pred, 4, &acc, &e), 0, "%s", e.msg);
    cr_expect_float_eq(acc, 0.5, EPS);
    cr_assert_eq(tk_intent_accuracy(gold, pred, 0, &acc, &e), 0);
    cr_expect_eq(acc, 0.0);
    const char *bad[] = {"play", NULL};
    cr_expect_eq(tk_intent_accuracy(gold, bad, 2, &acc, &e), -1);
}

Test(intent_slot, frame_needs_intent_and_every_tag)
{
    const char *g0[] = {"B-artist", "O"}, *p0[] = {"B-artist", "O"};
    const char *g1[] = {"O", "O"}, *p1[] = {"O", "O"};
    const char *g3[] = {"B-artist", "I-artist"}, *p3[] = {"B-artist", "O"};
    const char *g4[] = {TK_METRIC_UNK, "O"}, *p4[] = {TK_METRIC_UNK, "O"};
    tk_is_example ex[] = {
        {"play", "play", 2, g0, p0},               /* frame right */
        {"stop", "play", 2, g1, p1},               /* intent wrong */
        {TK_METRIC_UNK, TK_METRIC_UNK, 2, g1, p1}, /* unseen intent: wrong */
        {"play", "play", 2, g3, p3},               /* a tag wrong */
        {"stop", "stop", 2, g4, p4},               /* unseen gold tag: frame wrong */
    };
    tk_is_scores s;
    bc_err e;
    cr_assert_eq(tk_intent_slot_eval(ex, 5, &s, &e), 0, "%s", e.msg);
    cr_expect_eq(s.n, 5);
    cr_expect_float_eq(s.intent_accuracy, 3.0 / 5, EPS);
    cr_expect_float_eq(s.frame_accuracy, 1.0 / 5, EPS);
    /* chunks: gold artist [0,0] and [0,1]; predicted [0,0] twice; one correct */
    CHECK_COUNTS(s.slot, 2, 2, 1);
    cr_expect_float_eq(s.slot.f1, 0.5, EPS);
    cr_expect_eq(s.counts.tokens, 10);
    cr_expect_eq(s.counts.correct_tags, 9);
}

Test(intent_slot, errors_name_the_sentence)
{
    const char *g[] = {"O"}, *p[] = {"B a"};
    tk_is_example ex[] = {{"x", "x", 1, g, g}, {"x", "x", 1, g, p}};
    tk_is_scores s;
    bc_err e;
    cr_expect_eq(tk_intent_slot_eval(ex, 2, &s, &e), -1);
    cr_expect(strstr(e.msg, "sentence 1"), "%s", e.msg);
    tk_is_example ex2[] = {{"x", NULL, 1, g, g}};
    cr_expect_eq(tk_intent_slot_eval(ex2, 1, &s, &e), -1);
    cr_assert_eq(tk_intent_slot_eval(NULL, 0, &s, &e), 0);
    cr_expect_eq(s.intent_accuracy, 0.0);
    cr_expect_eq(s.slot.f1, 0.0);
}

/* ---- SQuAD / KorQuAD by hand ------------------------------------------------------- */

static void score(const char *pred, const char *const *golds, int n, tk_qa_flavor f,
                  double em, double f1)
{
    double a, b;
    bc_err e;
    cr_assert_eq(tk_qa_score(pred, golds, n, f, &a, &b, &e), 0, "%s", e.msg);
    cr_expect_float_eq(a, em, EPS, "EM of \"%s\": %g, expected %g", pred, a, em);
    cr_expect_float_eq(b, f1, EPS, "F1 of \"%s\": %.17g, expected %.17g", pred, b, f1);
}

static void norm_is(const char *s, tk_qa_flavor f, const char *want)
{
    char *out;
    bc_err e;
    cr_assert_eq(tk_qa_normalize(s, f, &out, &e), 0, "%s", e.msg);
    cr_expect_str_eq(out, want);
    free(out);
}

Test(squad, normalizes_case_punctuation_articles_and_spaces)
{
    norm_is("The  Eiffel\tTower!", TK_QA_SQUAD, "eiffel tower");
    norm_is("an_apple, a-b; A.B.C.", TK_QA_SQUAD, "anapple ab abc");
    norm_is("theory athe the1 The", TK_QA_SQUAD, "theory athe the1");
    norm_is("a", TK_QA_SQUAD, "");
    norm_is("", TK_QA_SQUAD, "");
    norm_is("ΟΔΟΣ", TK_QA_SQUAD, "οδος"); /* Python's final sigma */
    norm_is("《아이유》의 THE 노래", TK_QA_SQUAD, "《아이유》의 노래");
}

Test(squad, exact_match_and_token_f1_by_hand)
{
    const char *g1[] = {"eiffel tower"};
    score("The Eiffel Tower!", g1, 1, TK_QA_SQUAD, 1, 1);
    /* pred {eiffel}; gold {eiffel, tower}: P 1, R 1/2, F1 2/3; "Paris" shares none */
    const char *g2[] = {"the Eiffel Tower", "Paris"};
    score("Eiffel", g2, 2, TK_QA_SQUAD, 0, 2.0 / 3);
    /* same tokens in another order: F1 1, EM 0 */
    const char *g3[] = {"denver broncos"};
    score("Broncos, Denver.", g3, 1, TK_QA_SQUAD, 0, 1);
    /* Counter overlap: cat x1, dog x1 shared; P = R = 2/3 */
    const char *g4[] = {"cat dog dog"};
    score("cat cat dog", g4, 1, TK_QA_SQUAD, 0, 2.0 / 3);
    /* empty prediction */
    const char *g5[] = {"Denver"};
    score("", g5, 1, TK_QA_SQUAD, 0, 0);
    /* both normalize to nothing: EM 1 but F1 0 (nothing shared) */
    const char *g6[] = {"the"};
    score("a", g6, 1, TK_QA_SQUAD, 1, 0);
    /* the best gold decides EM and F1 separately: EM from gold 2, F1 from gold 2 too */
    const char *g7[] = {"Denver Broncos team", "broncos"};
    score("the Broncos", g7, 2, TK_QA_SQUAD, 1, 1);
    /* F1 max comes from a different gold than any EM: pred {denver, broncos}; gold 1
     * {denver}: P 1/2 R 1 F1 2/3; gold 2 {broncos, team, x}: P 1/2 R 1/3 F1 2/5 */
    const char *g8[] = {"Denver", "broncos team x"};
    score("Denver Broncos", g8, 2, TK_QA_SQUAD, 0, 2.0 / 3);
}

Test(korquad, character_f1_by_hand)
{
    /* chars 1 5 4 5 년 vs 1 5 4 5 년 3 월: 5 shared, P 1, R 5/7, F1 10/12 */
    const char *g1[] = {"1545년 3월"};
    score("1545년", g1, 1, TK_QA_KORQUAD, 0, 10.0 / 12);
    const char *g2[] = {"1545년"};
    score("1545년 3월", g2, 1, TK_QA_KORQUAD, 0, 10.0 / 12);
    /* spaces do not count: same characters, F1 1, EM 0 */
    const char *g3[] = {"세종대왕"};
    score("세종 대왕", g3, 1, TK_QA_KORQUAD, 0, 1);
    /* 《 》 become spaces, so the title matches exactly (SQuAD keeps them) */
    const char *g4[] = {"태조실록"};
    score("《태조실록》", g4, 1, TK_QA_KORQUAD, 1, 1);
    score("《태조실록》", g4, 1, TK_QA_SQUAD, 0, 0);
    /* 임진왜란 vs 임진 왜란이: 4 shared of 4 and 5: F1 2*1*0.8/1.8 = 8/9 */
    const char *g5[] = {"임진 왜란이", "1592년"};
    score("임진왜란", g5, 2, TK_QA_KORQUAD, 0, 8.0 / 9);
    /* articles are kept: "the" counts as characters */
    norm_is("The 노래", TK_QA_KORQUAD, "the 노래");
    /* ' becomes a space before punctuation is removed */
    norm_is("don't (주)삼성", TK_QA_KORQUAD, "don t 주 삼성");
    norm_is("don't (주)삼성", TK_QA_SQUAD, "dont 주삼성");
}

Test(squad, dataset_average_counts_unanswered_as_zero)
{
    const char *g0[] = {"Denver Broncos"}, *g1[] = {"the Eiffel Tower", "Paris"},
               *g2[] = {"1545"};
    const char *const *golds[] = {g0, g1, g2};
    const int ng[] = {1, 2, 1};
    const char *preds[] = {"denver broncos", "Eiffel", NULL};
    double em, f1;
    bc_err e;
    cr_assert_eq(tk_qa_evaluate(preds, golds, ng, 3, TK_QA_SQUAD, &em, &f1, &e), 0, "%s",
                 e.msg);
    cr_expect_float_eq(em, 1.0 / 3, EPS);
    cr_expect_float_eq(f1, (1 + 2.0 / 3) / 3, EPS);
    cr_assert_eq(tk_qa_evaluate(NULL, NULL, NULL, 0, TK_QA_SQUAD, &em, &f1, &e), 0);
    cr_expect_eq(em, 0.0);
}

Test(squad, errors)
{
    const char *g[] = {"x"}, *bad[] = {"\xff"};
    double em, f1;
    bc_err e;
    cr_expect_eq(tk_qa_score("x", g, 0, TK_QA_SQUAD, &em, &f1, &e), -1);
    cr_expect_eq(tk_qa_score("ab\xc3", g, 1, TK_QA_SQUAD, &em, &f1, &e), -1);
    cr_expect(strstr(e.msg, "UTF-8"), "%s", e.msg);
    cr_expect_eq(tk_qa_score("x", bad, 1, TK_QA_KORQUAD, &em, &f1, &e), -1);
    cr_expect(strstr(e.msg, "gold answer 0"), "%s", e.msg);
    cr_expect_eq(tk_qa_score("x", g, 1, (tk_qa_flavor)7, &em, &f1, &e), -1);
    const char *const *golds[] = {g, g};
    const int ng[] = {1, 0};
    const char *preds[] = {"x", "x"};
    cr_expect_eq(tk_qa_evaluate(preds, golds, ng, 2, TK_QA_SQUAD, &em, &f1, &e), -1);
    cr_expect(strstr(e.msg, "question 1"), "%s", e.msg);
    char *out;
    cr_expect_eq(tk_qa_normalize(NULL, TK_QA_SQUAD, &out, &e), -1);
}

/* ---- SQuAD / KorQuAD against the scripts' Python ------------------------------------ */

Test(squad, matches_the_official_scripts_on_the_fixture)
{
    char *text = tu_read_file(tu_src("tests/fixtures/metrics/qa_cases.jsonl"), NULL);
    cr_assert_not_null(text);
    int n = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        json_error_t je;
        json_t *row = json_loads(line, 0, &je);
        cr_assert_not_null(row, "line %d: %s", n + 1, je.text);
        const char *pred = json_string_value(json_object_get(row, "pred"));
        json_t *jg = json_object_get(row, "golds");
        int ng = (int)json_array_size(jg);
        const char *golds[8];
        cr_assert(pred && ng >= 1 && ng <= 8);
        for (int i = 0; i < ng; i++)
            golds[i] = json_string_value(json_array_get(jg, i));
        static const char *key[] = {"squad", "korquad"},
                          *nkey[] = {"norm_squad", "norm_korquad"};
        for (int f = 0; f < 2; f++) {
            double em, f1;
            bc_err e;
            char *norm;
            cr_assert_eq(tk_qa_normalize(pred, (tk_qa_flavor)f, &norm, &e), 0, "%s", e.msg);
            cr_expect_str_eq(norm, json_string_value(json_object_get(row, nkey[f])),
                             "line %d (%s): \"%s\"", n + 1, key[f], pred);
            free(norm);
            cr_assert_eq(tk_qa_score(pred, golds, ng, (tk_qa_flavor)f, &em, &f1, &e), 0,
                         "%s", e.msg);
            json_t *want = json_object_get(row, key[f]);
            double wem = json_real_value(json_array_get(want, 0));
            double wf1 = json_real_value(json_array_get(want, 1));
            cr_expect_eq(em, wem, "line %d (%s): EM %g, script %g", n + 1, key[f], em, wem);
            cr_expect_eq(f1, wf1, "line %d (%s): F1 %.17g, script %.17g", n + 1, key[f], f1,
                         wf1);
        }
        json_decref(row);
        n++;
    }
    cr_expect_geq(n, 300);
    free(text);
}

/* ---- span decoding ------------------------------------------------------------------ */

/* Context "aa bb cc dd ee ff gg": word i spans bytes [3i, 3i + 2). Each window is
 * [CLS] q q [SEP] then context words first..first+nctx-1, then [SEP]. */
#define CTX_LEN 20
typedef struct win {
    int n;
    float sl[16], el[16];
    int ts[16], te[16];
    unsigned char mc[16];
} win;

static void make_win(win *w, int first, int nctx, const int *max_ctx_words, int nmax)
{
    memset(w, 0, sizeof *w);
    w->n = 4 + nctx + 1;
    for (int i = 0; i < w->n; i++)
        w->ts[i] = w->te[i] = -1;
    for (int k = 0; k < nctx; k++) {
        int word = first + k;
        w->ts[4 + k] = 3 * word;
        w->te[4 + k] = 3 * word + 2;
        for (int j = 0; j < nmax; j++)
            w->mc[4 + k] |= max_ctx_words[j] == word;
    }
}

static tk_qa_window view(const win *w)
{
    return (tk_qa_window){w->n, w->sl, w->el, w->ts, w->te, w->mc};
}

/* Windows over words 0-3, 2-5 and 4-6, each word's max context in one of them. */
static void three_windows(win w[3])
{
    make_win(&w[0], 0, 4, (int[]){0, 1, 2}, 3);
    make_win(&w[1], 2, 4, (int[]){3, 4}, 2);
    make_win(&w[2], 4, 3, (int[]){5, 6}, 2);
}

static tk_qa_span decode(const win *w, int nw, int n_best, int max_len)
{
    tk_qa_window v[3];
    for (int i = 0; i < nw; i++)
        v[i] = view(&w[i]);
    tk_qa_span s;
    bc_err e;
    cr_assert_eq(tk_qa_best_span(v, nw, n_best, max_len, CTX_LEN, &s, &e), 0, "%s", e.msg);
    return s;
}

Test(qa_decode, best_span_in_the_second_window_by_max_context)
{
    win w[3];
    three_windows(w);
    /* Window 0 scores "dd" (token 7) 6 + 4 = 10, but dd has its max context in window
     * 1, where "dd ee" (tokens 5..6) scores 5 + 4 = 9 and wins. */
    w[0].sl[7] = 6;
    w[0].el[7] = 4;
    w[1].sl[5] = 5;
    w[1].el[6] = 4;
    tk_qa_span s = decode(w, 3, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH);
    cr_assert(s.found);
    cr_expect_eq(s.window, 1);
    cr_expect_eq(s.start_tok, 5);
    cr_expect_eq(s.end_tok, 6);
    cr_expect_eq(s.start, 9); /* "dd ee" */
    cr_expect_eq(s.end, 14);
    cr_expect_float_eq(s.score, 9.0, EPS);
}

Test(qa_decode, end_may_lie_outside_the_max_context)
{
    win w[3];
    three_windows(w);
    /* start "cc" in window 0 (its max context), end "dd" (max context elsewhere): run_squad
     * checks max context for the start only */
    w[0].sl[6] = 3;
    w[0].el[7] = 3;
    tk_qa_span s = decode(w, 3, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH);
    cr_assert(s.found);
    cr_expect_eq(s.window, 0);
    cr_expect_eq(s.start, 6);
    cr_expect_eq(s.end, 11);
}

Test(qa_decode, spans_into_the_question_or_separator_are_rejected)
{
    win w[1];
    make_win(&w[0], 0, 4, (int[]){0, 1, 2, 3}, 4);
    w[0].sl[2] = 10; /* a question token */
    w[0].el[5] = 10; /* "bb" */
    w[0].sl[4] = 1;  /* "aa" */
    w[0].el[8] = 20; /* the final [SEP] */
    w[0].el[0] = 30; /* [CLS] */
    tk_qa_span s = decode(w, 1, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH);
    cr_assert(s.found);
    cr_expect_eq(s.start_tok, 4);
    cr_expect_eq(s.end_tok, 5);
    cr_expect_eq(s.start, 0);
    cr_expect_eq(s.end, 5);
    cr_expect_float_eq(s.score, 11.0, EPS);
}

Test(qa_decode, length_limit_and_order)
{
    win w[1];
    make_win(&w[0], 0, 4, (int[]){0, 1, 2, 3}, 4);
    w[0].sl[4] = 5; /* "aa" */
    w[0].el[7] = 5; /* "dd": 4 tokens from aa */
    w[0].sl[6] = 2; /* "cc" */
    w[0].el[5] = 6; /* "bb": before cc, so only aa..bb is in order */
    tk_qa_span s = decode(w, 1, TK_QA_N_BEST, 4);
    cr_expect_eq(s.start_tok, 4);
    cr_expect_eq(s.end_tok, 5); /* aa..bb 11 beats aa..dd 10 */
    w[0].el[5] = 0;
    s = decode(w, 1, TK_QA_N_BEST, 4);
    cr_expect_eq(s.end_tok, 7); /* aa..dd, 4 tokens, is allowed */
    cr_expect_float_eq(s.score, 10.0, EPS);
    s = decode(w, 1, TK_QA_N_BEST, 3);
    cr_expect_eq(s.start_tok, 6); /* too long now; cc..dd (7) wins */
    cr_expect_eq(s.end_tok, 7);
    cr_expect_float_eq(s.score, 7.0, EPS);
}

Test(qa_decode, only_the_top_n_best_candidates_are_paired)
{
    win w[1];
    make_win(&w[0], 0, 4, (int[]){0, 1, 2, 3}, 4);
    w[0].sl[1] = 9; /* the best start is a question token */
    w[0].sl[4] = 1;
    w[0].el[4] = 1;
    for (int i = 0; i < w[0].n; i++) /* every other start below zero */
        if (i != 1 && i != 4)
            w[0].sl[i] = -1;
    tk_qa_span s = decode(w, 1, 1, TK_QA_MAX_ANSWER_LENGTH);
    cr_expect_not(s.found);
    s = decode(w, 1, 2, TK_QA_MAX_ANSWER_LENGTH);
    cr_expect(s.found);
    cr_expect_eq(s.start_tok, 4);
}

Test(qa_decode, ties_go_to_the_earlier_window_and_nothing_valid_is_not_found)
{
    win w[3];
    three_windows(w);
    w[0].sl[5] = 2; /* bb in window 0 */
    w[0].el[5] = 2;
    w[2].sl[6] = 2; /* gg in window 2 */
    w[2].el[6] = 2;
    tk_qa_span s = decode(w, 3, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH);
    cr_expect_eq(s.window, 0);
    cr_expect_eq(s.start, 3);
    win none[1];
    make_win(&none[0], 0, 4, NULL, 0); /* no token has its max context here */
    s = decode(none, 1, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH);
    cr_expect_not(s.found);
    s = decode(none, 0, TK_QA_N_BEST, TK_QA_MAX_ANSWER_LENGTH);
    cr_expect_not(s.found);
}

Test(qa_decode, rejects_bad_input)
{
    win w[2];
    make_win(&w[0], 0, 4, (int[]){0}, 1);
    make_win(&w[1], 2, 4, (int[]){0}, 1);
    tk_qa_window v[2] = {view(&w[0]), view(&w[1])};
    tk_qa_span s;
    bc_err e;
    w[1].sl[3] = NAN;
    cr_expect_eq(tk_qa_best_span(v, 2, 20, 30, CTX_LEN, &s, &e), -1);
    cr_expect(strstr(e.msg, "window 1 token 3"), "%s", e.msg);
    w[1].sl[3] = 0;
    w[1].te[5] = 99; /* past the context */
    cr_expect_eq(tk_qa_best_span(v, 2, 20, 30, CTX_LEN, &s, &e), -1);
    w[1].te[5] = -1; /* -1 on one side only */
    cr_expect_eq(tk_qa_best_span(v, 2, 20, 30, CTX_LEN, &s, &e), -1);
    w[1].te[5] = 11;
    cr_expect_eq(tk_qa_best_span(v, 2, 20, 30, CTX_LEN, &s, &e), 0, "%s", e.msg);
    cr_expect_eq(tk_qa_best_span(v, 2, 0, 30, CTX_LEN, &s, &e), -1);
    cr_expect_eq(tk_qa_best_span(v, 2, 20, 0, CTX_LEN, &s, &e), -1);
    cr_expect_eq(tk_qa_best_span(NULL, 2, 20, 30, CTX_LEN, &s, &e), -1);
    v[0].end_logits = NULL;
    cr_expect_eq(tk_qa_best_span(v, 2, 20, 30, CTX_LEN, &s, &e), -1);
}
