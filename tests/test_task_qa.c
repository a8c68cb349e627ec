/* test_task_qa.c: the QA task (tasks/task_qa.c). Through its table of functions with
 * hand-written forward passes: windows as run batch rows with answer positions, the
 * split by article (--holdout), the --metric auto rule, evaluation that decodes spans
 * across windows (an oracle model scores EM = F1 = 1, a model without an answer scores
 * 0), and the refusals. End to end through the bertcc executable: a tiny model overfits
 * a hand-made SQuAD file of Korean and English questions (tests/fixtures/qa_task), then
 * `eval --json` and `predict --question --context` answer from the run directory. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/task_qa.h"
#include "util.h"

#define FIX "tests/fixtures/qa_task/"

static const tx_tok_opts CASED = {0, -1};

/* ---- helpers ---------------------------------------------------------------------- */

static tx_vocab *fixture_vocab(void)
{
    bc_err e;
    tx_vocab *v = tx_vocab_load(tu_src(FIX "vocab.txt"), &e);
    cr_assert_not_null(v, "%s", e.msg);
    return v;
}

/* Option values by name (NULL: the default). */
typedef struct opts {
    const char *v[16];
} opts;

static void set_opt(opts *o, const char *name, const char *value)
{
    for (int i = 0; tk_task_qa.options[i].name; i++)
        if (!strcmp(tk_task_qa.options[i].name, name)) {
            o->v[i] = value;
            return;
        }
    cr_assert_fail("no option %s", name);
}

static int open_task(const char *data, const tx_vocab *v, const opts *o, void **st,
                     bc_err *e)
{
    tk_task_config c = {data, NULL, v, CASED, o ? o->v : NULL, 128, NULL, NULL, 0};
    return tk_task_qa.open(&c, st, e);
}

static void *must_open(const char *data, const tx_vocab *v, const opts *o)
{
    void *st = NULL;
    bc_err e;
    cr_assert_eq(open_task(data, v, o, &st, &e), 0, "%s", e.msg);
    return st;
}

static char *option(void *st, const char *name)
{
    static char buf[4096];
    for (int i = 0; tk_task_qa.options[i].name; i++)
        if (!strcmp(tk_task_qa.options[i].name, name)) {
            tk_task_qa.option_value(st, i, buf, sizeof buf);
            return buf;
        }
    cr_assert_fail("no option %s", name);
    return NULL;
}

/* A model that knows the answers: it finds the row it is given among the rows of a
 * split (by input_ids) and puts a logit of 10 on that row's start and end positions. */
typedef struct oracle {
    rt_tensor_list rows; /* the split's rows, labels included */
    int calls;
} oracle;

static int oracle_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                          bc_err *e)
{
    oracle *o = ctx;
    o->calls++;
    const rt_tensor *in = rt_list_cfind(batch, "input_ids");
    const rt_tensor *all = rt_list_cfind(&o->rows, "input_ids");
    const int64_t *sp = rt_list_cfind(&o->rows, "start_positions")->data;
    const int64_t *ep = rt_list_cfind(&o->rows, "end_positions")->data;
    int64_t B = in->shape[0], S = in->shape[1];
    int64_t shape[2] = {B, S};
    rt_tensor *ts = rt_list_add(out, "start_logits", RT_F32, 2, shape, NULL);
    rt_tensor *te = rt_list_add(out, "end_logits", RT_F32, 2, shape, NULL);
    for (int64_t b = 0; b < B; b++) {
        const int64_t *x = (const int64_t *)in->data + b * S;
        int64_t hit = tu_find_row(all, x, S);
        if (hit < 0)
            return bc_errf(e, "oracle: unknown row");
        ((float *)ts->data)[b * S + sp[hit]] = 10;
        ((float *)te->data)[b * S + ep[hit]] = 10;
    }
    return 0;
}

/* A model without an opinion: every logit 0. */
static int zero_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                        bc_err *e)
{
    (void)ctx;
    (void)e;
    const rt_tensor *in = rt_list_cfind(batch, "input_ids");
    rt_list_add(out, "start_logits", RT_F32, 2, in->shape, NULL);
    rt_list_add(out, "end_logits", RT_F32, 2, in->shape, NULL);
    return 0;
}

/* ---- rows ------------------------------------------------------------------------- */

Test(task_qa, rows_are_windows_with_answer_positions)
{
    tx_vocab *v = fixture_vocab();
    opts o = {0};
    set_opt(&o, "max-seq", "40");
    set_opt(&o, "doc-stride", "16");
    set_opt(&o, "eval-data", tu_src(FIX "train.json"));
    void *st = must_open(tu_src(FIX "train.json"), v, &o);
    tk_task_heads h;
    tk_task_qa.heads(st, &h);
    cr_expect_eq(h.labels, 1u << 4); /* TR_LABEL_QA */
    rt_tensor_list rows;
    rt_list_init(&rows);
    bc_err e;
    cr_assert_eq(tk_task_qa.data(st, TK_SPLIT_TRAIN, &rows, &e), 0, "%s", e.msg);
    static const char *const names[] = {"input_ids", "token_type_ids", "attention_mask",
                                        "start_positions", "end_positions"};
    for (int i = 0; i < 5; i++) {
        const rt_tensor *t = rt_list_cfind(&rows, names[i]);
        cr_assert(t && t->dtype == RT_I64, "%s", names[i]);
    }
    const rt_tensor *ids = rt_list_cfind(&rows, "input_ids");
    const rt_tensor *tt = rt_list_cfind(&rows, "token_type_ids");
    int64_t N = ids->shape[0], S = ids->shape[1];
    cr_expect_gt(N, 9, "long contexts must give several windows of 40 tokens");
    cr_expect_leq(S, 40);
    const int64_t *sp = rt_list_cfind(&rows, "start_positions")->data;
    const int64_t *ep = rt_list_cfind(&rows, "end_positions")->data;
    int with_answer = 0, sep = tx_vocab_special(v, TX_SEP);
    for (int64_t r = 0; r < N; r++) {
        const int64_t *x = (const int64_t *)ids->data + r * S;
        const int64_t *y = (const int64_t *)tt->data + r * S;
        cr_expect_eq(x[0], tx_vocab_special(v, TX_CLS));
        int64_t first_sep = 1;
        while (x[first_sep] != sep)
            first_sep++;
        cr_expect_eq(y[first_sep], 0);
        cr_expect_eq(y[first_sep + 1], 1, "the context has token type 1");
        cr_expect_leq(sp[r], ep[r]);
        if (sp[r]) {
            with_answer++;
            cr_expect_gt(sp[r], first_sep, "answers lie in the context");
        }
    }
    cr_expect_geq(with_answer, 9, "each question has a window holding its answer");
    cr_expect_str_eq(option(st, "max-seq"), "40");
    cr_expect_str_eq(option(st, "max-query-length"), "20", "default: half of max-seq");
    rt_list_free(&rows);
    tk_task_qa.close(st);
    tx_vocab_free(v);
}

Test(task_qa, holdout_splits_by_article)
{
    tx_vocab *v = fixture_vocab();
    opts o = {0};
    set_opt(&o, "holdout", "2");
    void *st = must_open(tu_src(FIX "train.json"), v, &o);
    /* Articles 1 (세종) and 3 (Marie Curie) are every 2nd: 2 + 2 questions. */
    oracle orc;
    rt_list_init(&orc.rows);
    orc.calls = 0;
    bc_err e;
    cr_assert_eq(tk_task_qa.data(st, TK_SPLIT_DEV, &orc.rows, &e), 0, "%s", e.msg);
    tk_metrics m;
    cr_assert_eq(
        tk_task_qa.evaluate(st, TK_SPLIT_DEV, 3, oracle_forward, &orc, NULL, &m, &e), 0,
        "%s", e.msg);
    cr_expect_eq(m.examples, 4);
    cr_expect_float_eq(tk_metrics_get(&m, "exact_match"), 1.0, 1e-12);
    cr_expect_float_eq(tk_metrics_get(&m, "f1"), 1.0, 1e-12);
    cr_expect_geq(orc.calls, 2, "batches of at most 3 rows");
    tk_metrics t;
    cr_assert_eq(
        tk_task_qa.evaluate(st, TK_SPLIT_TRAIN, 8, zero_forward, NULL, NULL, &t, &e), 0,
        "%s", e.msg);
    cr_expect_eq(t.examples, 5);
    rt_list_free(&orc.rows);
    tk_task_qa.close(st);

    /* Without a dev source there is no dev split; K must leave both sides non-empty. */
    st = must_open(tu_src(FIX "train.json"), v, NULL);
    rt_tensor_list l;
    rt_list_init(&l);
    cr_expect_neq(tk_task_qa.data(st, TK_SPLIT_DEV, &l, &e), 0);
    cr_expect(strstr(e.msg, "--eval-data") && strstr(e.msg, "--holdout"), "%s", e.msg);
    rt_list_free(&l);
    tk_task_qa.close(st);
    set_opt(&o, "holdout", "9");
    void *bad = NULL;
    cr_expect_neq(open_task(tu_src(FIX "train.json"), v, &o, &bad, &e), 0);
    cr_expect(strstr(e.msg, "--holdout 9"), "%s", e.msg);
    tx_vocab_free(v);
}

Test(task_qa, evaluation_decodes_spans_across_windows)
{
    tx_vocab *v = fixture_vocab();
    opts o = {0};
    set_opt(&o, "max-seq", "32");
    set_opt(&o, "doc-stride", "8");
    set_opt(&o, "eval-data", tu_src(FIX "train.json"));
    void *st = must_open(tu_src(FIX "train.json"), v, &o);
    oracle orc;
    rt_list_init(&orc.rows);
    bc_err e;
    cr_assert_eq(tk_task_qa.data(st, TK_SPLIT_DEV, &orc.rows, &e), 0, "%s", e.msg);
    cr_expect_gt(rt_list_cfind(&orc.rows, "input_ids")->shape[0], 20, "many windows");
    tk_metrics m;
    cr_assert_eq(
        tk_task_qa.evaluate(st, TK_SPLIT_DEV, 5, oracle_forward, &orc, NULL, &m, &e), 0,
        "%s", e.msg);
    cr_expect_eq(m.examples, 9);
    cr_expect_float_eq(tk_metrics_get(&m, "exact_match"), 1.0, 1e-12, "EM %g",
                       tk_metrics_get(&m, "exact_match"));
    cr_expect_float_eq(tk_metrics_get(&m, "f1"), 1.0, 1e-12);
    cr_expect_str_eq(m.name[0], "exact_match");
    cr_expect_str_eq(m.name[1], "f1");
    /* No opinion: the first valid span of the first window, rarely the answer. */
    cr_assert_eq(tk_task_qa.evaluate(st, TK_SPLIT_DEV, 5, zero_forward, NULL, NULL, &m, &e),
                 0, "%s", e.msg);
    cr_expect_lt(tk_metrics_get(&m, "exact_match"), 0.5);
    rt_list_free(&orc.rows);
    tk_task_qa.close(st);
    tx_vocab_free(v);
}

/* ---- options ------------------------------------------------------------------------ */

Test(task_qa, metric_auto_follows_the_script_of_the_contexts)
{
    tx_vocab *v = fixture_vocab();
    void *st = must_open(tu_src("tests/fixtures/qa/ko.json"), v, NULL);
    cr_expect_str_eq(option(st, "metric"), "korquad");
    tk_task_qa.close(st);
    st = must_open(tu_src("tests/fixtures/qa/windows.json"), v, NULL);
    cr_expect_str_eq(option(st, "metric"), "squad");
    tk_task_qa.close(st);
    /* Half Korean, half English: more ASCII letters than Hangul syllables. */
    st = must_open(tu_src(FIX "train.json"), v, NULL);
    cr_expect_str_eq(option(st, "metric"), "squad");
    tk_task_qa.close(st);
    opts o = {0};
    set_opt(&o, "metric", "korquad");
    st = must_open(tu_src(FIX "train.json"), v, &o);
    cr_expect_str_eq(option(st, "metric"), "korquad");
    cr_expect_str_eq(option(st, "max-seq"), "128", "the default stops at max-position");
    cr_expect_str_eq(option(st, "holdout"), "0");
    cr_expect_str_eq(option(st, "eval-data"), "");
    tk_task_qa.close(st);
    tx_vocab_free(v);
}

Test(task_qa, refusals_name_the_option)
{
    tx_vocab *v = fixture_vocab();
    static const struct {
        const char *name, *value, *name2, *value2, *want;
    } bad[] = {
        {"metric", "bleu", NULL, NULL, "--metric"},
        {"max-seq", "200", NULL, NULL, "max-position 128"},
        {"max-seq", "3", NULL, NULL, "--max-seq"},
        {"max-query-length", "61", "max-seq", "64", "--max-query-length 61"},
        {"holdout", "1", NULL, NULL, "--holdout"},
        {"holdout", "3", "eval-data", "x.json", "not both"},
        {"doc-stride", "0", NULL, NULL, "--doc-stride"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        opts o = {0};
        set_opt(&o, bad[i].name, bad[i].value);
        if (bad[i].name2)
            set_opt(&o, bad[i].name2, bad[i].value2);
        void *st = NULL;
        bc_err e;
        cr_expect_neq(open_task(tu_src(FIX "train.json"), v, &o, &st, &e), 0, "%s",
                      bad[i].name);
        cr_expect(strstr(e.msg, bad[i].want), "'%s' not in: %s", bad[i].want, e.msg);
        cr_expect_null(st);
    }
    void *st = NULL;
    bc_err e;
    cr_expect_neq(open_task(tu_src(FIX "missing.json"), v, NULL, &st, &e), 0);
    cr_expect(strstr(e.msg, "missing.json"), "%s", e.msg);
    /* Prediction needs a context. */
    st = must_open(NULL, v, NULL);
    json_t *out = NULL;
    cr_expect_neq(tk_task_qa.predict(st, "question?", NULL, zero_forward, NULL, &out, &e),
                  0);
    cr_expect(strstr(e.msg, "--context"), "%s", e.msg);
    cr_expect_null(out);
    tk_task_qa.close(st);
    tx_vocab_free(v);
}

/* ---- end to end -------------------------------------------------------------------- */

/* H=64, two layers, no dropout: learns the nine questions in about a hundred updates. */
static const char tiny_xml[] =
    "<bert name=\"qa-test\">\n"
    "  <encoder vocab-size=\"100\" hidden-size=\"64\" layers=\"2\" heads=\"2\"\n"
    "           intermediate-size=\"128\" max-position=\"128\" hidden-dropout=\"0\"\n"
    "           attention-dropout=\"0\"/>\n"
    "</bert>\n";

Test(task_qa, overfits_a_small_set_then_evaluates_and_answers, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    cr_assert_eq(tu_write_file(tu_path(dir, "model.xml"), tiny_xml), 0);
    char *out = NULL;
    const char *train = "train %s/model.xml --task qa --data " FIX "train.json --holdout 2 "
                        "--vocab " FIX "vocab.txt --no-lowercase -o %s/run --max-seq 64 "
                        "--epochs 40 --batch-size 4 --lr 3e-3 --threads 1 --quiet "
                        "--backend %s";
    const char *backend = "jit";
    if (tu_bertcc(&out, train, dir, dir, "jit")) {
        cr_log_warn("the JIT backend could not train (%s); using the reference interpreter",
                    out ? out : "?");
        free(out);
        char rm[1100];
        snprintf(rm, sizeof rm, "rm -rf %s/run", dir);
        tu_run(rm, NULL);
        backend = "ref";
        cr_assert_eq(tu_bertcc(&out, train, dir, dir, "ref"), 0, "%s", out);
    }
    free(out);
    /* Training kept every 2nd article for dev: the run remembers it and the metric. */
    json_error_t je;
    json_t *opt = json_load_file(tu_path(tu_path(dir, "run"), "options.json"), 0, &je);
    cr_assert_not_null(opt, "%s", je.text);
    json_t *to = json_object_get(opt, "task_options");
    cr_expect_str_eq(json_string_value(json_object_get(to, "holdout")), "2");
    cr_expect_str_eq(json_string_value(json_object_get(to, "metric")), "squad");
    cr_expect_str_eq(json_string_value(json_object_get(opt, "task")), "qa");
    json_decref(opt);

    /* eval --json on the whole file, last weights (the overfit ones): high EM. */
    cr_assert_eq(tu_bertcc(&out,
                           "eval --model %s/run --data " FIX
                           "train.json --json --weights last "
                           "--backend %s 2>/dev/null",
                           dir, backend),
                 0, "%s", out);
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, out);
    double em = json_number_value(json_object_get(j, "exact_match"));
    double f1 = json_number_value(json_object_get(j, "f1"));
    cr_expect(json_is_number(json_object_get(j, "exact_match")) &&
                  json_is_number(json_object_get(j, "f1")),
              "%s", out);
    cr_expect(em >= 0 && em <= 1 && f1 >= em && f1 <= 1, "%s", out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "task")), "qa");
    cr_expect_str_eq(json_string_value(json_object_get(j, "split")), "test");
    json_decref(j);
    free(out);
    /* The training articles (0 and 2, five questions) are learnt by heart. */
    cr_assert_eq(tu_bertcc(&out,
                           "eval --model %s/run --data " FIX
                           "train.json --split train --json "
                           "--weights last --backend %s 2>/dev/null",
                           dir, backend),
                 0, "%s", out);
    j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", out);
    cr_expect_eq(json_integer_value(json_object_get(j, "examples")), 5, "%s", out);
    cr_expect_geq(json_number_value(json_object_get(j, "exact_match")), 0.8, "%s", out);
    json_decref(j);
    free(out);
    cr_assert_eq(
        tu_bertcc(&out, "eval --model %s/run --data " FIX "train.json --split dev", dir), 0,
        "%s", out);
    cr_expect(strstr(out, "qa dev, 4 examples") && strstr(out, "exact_match") &&
                  strstr(out, "f1"),
              "%s", out);
    free(out);

    /* predict: the span, its score and probability. */
    static const char ctx[] = "이순신은 조선 중기의 무신이다. 그는 1545년 한성 건천동에서 "
                              "태어났다. 임진왜란 때 삼도수군통제사로 수군을 이끌었다.";
    cr_assert_eq(tu_bertcc(&out,
                           "predict --model %s/run --weights last --backend %s --question "
                           "'이순신은 언제 태어났나요?' --context '%s'",
                           dir, backend, ctx),
                 0, "%s", out);
    cr_expect(strstr(out, "answer: 1545년 (score "), "%s", out);
    free(out);
    /* invalid UTF-8 in the context is reported as the context's, not as the question's */
    cr_expect_eq(
        tu_bertcc(&out,
                  "predict --model %s/run --weights last --backend %s --question "
                  "'이순신은 언제 태어났나요?' --context \"$(printf 'abc \\377 def')\"",
                  dir, backend),
        1, "%s", out);
    cr_expect(strstr(out, "the context is not valid UTF-8"), "%s", out);
    free(out);
    cr_expect_eq(tu_bertcc(&out,
                           "predict --model %s/run --weights last --backend %s --question "
                           "\"$(printf 'when \\377?')\" --context '%s'",
                           dir, backend, ctx),
                 1, "%s", out);
    cr_expect(strstr(out, "the question is not valid UTF-8"), "%s", out);
    free(out);
    cr_assert_eq(tu_bertcc(&out,
                           "predict --model %s/run --weights last --backend %s --json "
                           "--context '%s' '이순신은 언제 태어났나요?' "
                           "'임진왜란 때 이순신의 직책은?' 2>/dev/null",
                           dir, backend, ctx),
                 0, "%s", out);
    char *nl = strchr(out, '\n');
    cr_assert(nl, "%s", out);
    *nl = 0;
    j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "answer")), "1545년");
    cr_expect(json_is_true(json_object_get(j, "found")));
    /* Code points, as SQuAD's answer_start: "이순신은 조선 중기의 무신이다. 그는 " */
    cr_expect_eq(json_integer_value(json_object_get(j, "start")), 21);
    cr_expect_eq(json_integer_value(json_object_get(j, "end")), 26);
    double p = json_number_value(json_object_get(j, "probability"));
    cr_expect(p > 0 && p <= 1, "%g", p);
    json_decref(j);
    j = json_loads(nl + 1, 0, &je);
    cr_assert_not_null(j, "%s", nl + 1);
    cr_expect_str_eq(json_string_value(json_object_get(j, "answer")), "삼도수군통제사");
    json_decref(j);
    free(out);
    cr_expect_eq(tu_bertcc(&out, "predict --model %s/run --question 'q?'", dir), 1);
    cr_expect(strstr(out, "--context"), "%s", out);
    free(out);

    /* export: a BertForQuestionAnswering directory. */
    cr_assert_eq(tu_bertcc(&out, "export --model %s/run -o %s/hf", dir, dir), 0, "%s", out);
    free(out);
    char hf[1100];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    j = json_load_file(tu_path(hf, "config.json"), 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_expect_str_eq(
        json_string_value(json_array_get(json_object_get(j, "architectures"), 0)),
        "BertForQuestionAnswering");
    json_decref(j);
}
