/* test_task_classify.c: sentence and sentence-pair classification (tasks/task_classify.c):
 * every input layout and its errors, pair encoding and truncation against hand-computed
 * ids, the metrics against hand-computed values, and train -> eval -> predict -> export
 * on a small generated set, in process and through the binary. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/safetensors.h"
#include "tasks/demo_data.h"
#include "tasks/export.h"
#include "tasks/metrics.h"
#include "tasks/rundir.h"
#include "tasks/task_classify.h"
#include "tasks/trainer.h"
#include "util.h"

/* Writes text to a new file named name in a fresh directory; returns its path. */
static const char *file(const char *name, const char *text)
{
    static char path[8][600];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 600, "%s/%s", tu_tmpdir(), name);
    cr_assert_eq(tu_write_file(p, text), 0);
    return p;
}

static void expect_example(const tk_cls_data *d, int i, const char *label, const char *a,
                           const char *b, int line)
{
    cr_assert_lt(i, d->n);
    const tk_cls_example *x = &d->x[i];
    cr_expect_str_eq(x->label, label);
    cr_expect_str_eq(x->a, a);
    if (b)
        cr_expect(x->b && !strcmp(x->b, b), "text_b '%s', want '%s'", x->b, b);
    else
        cr_expect_null(x->b);
    cr_expect_eq(x->line, line, "example %d starts on line %d, not %d", i, x->line, line);
}

/* ---- layouts --------------------------------------------------------------------------
 */

Test(classify_read, headerless_tsv_with_crlf_a_bom_and_no_final_newline)
{
    tk_cls_data d;
    bc_err e;
    const char *p = file("fci.txt", "\xef\xbb\xbf"
                                    "3\t냉장고 온도를 강으로 해줄래\r\n"
                                    "\r\n"
                                    "2\t내일 날씨 \"알려줘\"\r\n"
                                    "0\t음");
    cr_assert_eq(tk_cls_read(p, &d, &e), 0, "%s", e.msg);
    cr_expect_eq(d.n, 3);
    cr_expect_eq(d.pairs, 0);
    expect_example(&d, 0, "3", "냉장고 온도를 강으로 해줄래", NULL, 1);
    expect_example(&d, 1, "2", "내일 날씨 \"알려줘\"", NULL, 3); /* TSV quotes are text */
    expect_example(&d, 2, "0", "음", NULL, 4);
    tk_cls_data_free(&d);

    p = file("pairs.tsv", "entailment\tA man sleeps.\tA person rests.\n"
                          "contradiction\tA man sleeps.\tA man runs.\n");
    cr_assert_eq(tk_cls_read(p, &d, &e), 0, "%s", e.msg);
    cr_expect_eq(d.pairs, 1);
    expect_example(&d, 1, "contradiction", "A man sleeps.", "A man runs.", 2);
    tk_cls_data_free(&d);
}

Test(classify_read, tsv_with_a_header_in_any_column_order)
{
    tk_cls_data d;
    bc_err e;
    const char *p =
        file("train.tsv", "idx\tsentence\tlabel\n0\tit is good\t1\n1\tbad\t0\n");
    cr_assert_eq(tk_cls_read(p, &d, &e), 0, "%s", e.msg);
    cr_expect_eq(d.n, 2);
    expect_example(&d, 0, "1", "it is good", NULL, 2);
    expect_example(&d, 1, "0", "bad", NULL, 3);
    tk_cls_data_free(&d);
    p = file("mnli.tsv", "sentence1\tsentence2\tlabel\na\tb\tneutral\n");
    cr_assert_eq(tk_cls_read(p, &d, &e), 0, "%s", e.msg);
    cr_expect_eq(d.pairs, 1);
    expect_example(&d, 0, "neutral", "a", "b", 2);
    tk_cls_data_free(&d);
}

Test(classify_read, csv_with_quoted_commas_newlines_and_quotes)
{
    tk_cls_data d;
    bc_err e;
    const char *p = file("train.csv", "label,text,text_b\r\n"
                                      "pos,\"good, very good\",\"b\"\r\n"
                                      "neg,\"two\nlines\",\"he said \"\"no\"\"\"\n"
                                      "neu,plain,\"\"\n"
                                      "pos,last,x");
    bc_err e2;
    int rc = tk_cls_read(p, &d, &e2);
    /* The third record has an empty second text. */
    cr_expect_eq(rc, -1);
    cr_expect(strstr(e2.msg, "train.csv:5: empty second text"), "%s", e2.msg);

    p = file("ok.csv", "label,text,text_b\r\n"
                       "pos,\"good, very good\",\"b\"\r\n"
                       "neg,\"two\nlines\",\"he said \"\"no\"\"\"\n"
                       "pos,last,x");
    cr_assert_eq(tk_cls_read(p, &d, &e), 0, "%s", e.msg);
    cr_expect_eq(d.n, 3);
    expect_example(&d, 0, "pos", "good, very good", "b", 2);
    expect_example(&d, 1, "neg", "two\nlines", "he said \"no\"", 3);
    expect_example(&d, 2, "pos", "last", "x", 5); /* the quoted newline counts as a line */
    tk_cls_data_free(&d);
}

Test(classify_read, json_lines_with_string_and_integer_labels)
{
    tk_cls_data d;
    bc_err e;
    const char *p = file("train.jsonl", "{\"label\": \"question\", \"text\": \"뭐야?\"}\n"
                                        "\n"
                                        "{\"text\": \"해줘\", \"label\": 3, \"id\": 7}\n");
    cr_assert_eq(tk_cls_read(p, &d, &e), 0, "%s", e.msg);
    cr_expect_eq(d.n, 2);
    expect_example(&d, 0, "question", "뭐야?", NULL, 1);
    expect_example(&d, 1, "3", "해줘", NULL, 3);
    tk_cls_data_free(&d);
}

Test(classify_read, bad_input_is_refused_naming_file_and_line)
{
    static const struct {
        const char *name, *text, *want;
    } bad[] = {
        {"a.tsv", "1\tgood\n0\n",
         "a.tsv:2: 1 tab-separated fields, expected 2 as on line 1"},
        {"b.tsv", "1\tgood\n0\t\n", "b.tsv:2: empty text"},
        {"c.tsv", "\tgood\n", "c.tsv:1: empty label"},
        {"d.tsv", "just one field\n", "d.tsv:1: expected label<TAB>text"},
        {"e.tsv", "label\ttext\nx\ty\tz\n", "e.tsv:2: 3 fields, but the header has 2"},
        {"f.csv", "a,b\n1,2\n", "f.csv:1: a CSV file needs a header"},
        {"g.csv", "label,text\n1,\"open\n", "g.csv:2: a quoted field is not closed"},
        {"h.csv", "label,text\n1,\"x\"y\n", "h.csv:2: text after a closing quote"},
        {"i.jsonl", "{\"label\": 1}\n", "i.jsonl:1: no text"},
        {"j.jsonl", "{\"text\": \"x\"}\n", "j.jsonl:1: no \"label\""},
        {"k.jsonl", "[1, 2]\n", "k.jsonl:1: expected a JSON object"},
        {"l.jsonl", "{\"label\": 1.5, \"text\": \"x\"}\n", "l.jsonl:1: the label is not"},
        {"m.tsv", "1\tgood \xff\n", "m.tsv:1: invalid UTF-8"},
        {"n.tsv", "\n\r\n", "n.tsv: no examples"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tk_cls_data d;
        bc_err e = {{0}};
        cr_expect_eq(tk_cls_read(file(bad[i].name, bad[i].text), &d, &e), -1, "%s accepted",
                     bad[i].name);
        cr_expect(strstr(e.msg, bad[i].want), "%s: '%s' not in '%s'", bad[i].name,
                  bad[i].want, e.msg);
    }
    tk_cls_data d;
    bc_err e;
    cr_expect_eq(tk_cls_read("/nonexistent.tsv", &d, &e), -1);
    cr_expect(strstr(e.msg, "/nonexistent.tsv: cannot open"), "%s", e.msg);
}

/* ---- encoding ---------------------------------------------------------------------------
 */

Test(classify_encode, pairs_get_token_types_and_longest_first_truncation)
{
    /* ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, a 5, b 6, c 7, d 8, e 9, f 10 */
    const char *vp =
        file("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\nd\ne\nf\n");
    bc_err e;
    tx_vocab *v = tx_vocab_load(vp, &e);
    cr_assert_not_null(v, "%s", e.msg);
    tx_tok_opts o = TX_TOK_OPTS_DEFAULT;
    int64_t ids[16], types[16];
    int cut = -1;
    /* Room for 7 - 3 = 4 tokens of 4 + 2: a loses two (it is the longer both times). */
    int n = tk_cls_encode(v, &o, "a b c d", "e f", 7, ids, types, &cut, &e);
    cr_assert_eq(n, 7, "%s", e.msg);
    int64_t want1[] = {2, 5, 6, 3, 9, 10, 3}, types1[] = {0, 0, 0, 0, 1, 1, 1};
    cr_expect(!memcmp(ids, want1, sizeof want1) && !memcmp(types, types1, sizeof types1));
    cr_expect_eq(cut, 1);
    /* A tie: the second text loses its last token. */
    n = tk_cls_encode(v, &o, "a b", "c d", 6, ids, types, &cut, &e);
    int64_t want2[] = {2, 5, 6, 3, 7, 3}, types2[] = {0, 0, 0, 0, 1, 1};
    cr_assert_eq(n, 6);
    cr_expect(!memcmp(ids, want2, sizeof want2) && !memcmp(types, types2, sizeof types2));
    /* One text: [CLS] a [SEP], cut to max-seq - 2 tokens; nothing cut when it fits. */
    n = tk_cls_encode(v, &o, "a b c d e f", NULL, 5, ids, types, &cut, &e);
    int64_t want3[] = {2, 5, 6, 7, 3}, types3[] = {0, 0, 0, 0, 0};
    cr_assert_eq(n, 5);
    cr_expect(!memcmp(ids, want3, sizeof want3) && !memcmp(types, types3, sizeof types3));
    cr_expect_eq(cut, 1);
    n = tk_cls_encode(v, &o, "f  A", NULL, 16, ids, types, &cut, &e); /* lower-cased */
    int64_t want4[] = {2, 10, 5, 3};
    cr_assert_eq(n, 4);
    cr_expect(!memcmp(ids, want4, sizeof want4));
    cr_expect_eq(cut, 0);
    cr_expect_eq(tk_cls_encode(v, &o, "a", "b", 2, ids, types, NULL, &e), -1);
    tx_vocab_free(v);
}

/* ---- metrics
 * ------------------------------------------------------------------------------ */

Test(classify_metrics, against_hand_computed_values)
{
    /* Classes: 0 = UNK (a label unseen in training), 1, 2, 3 (never seen, never said). */
    const int gold[] = {1, 1, 2, 2, 2, 0}, pred[] = {1, 2, 2, 2, 1, 1};
    tk_cls_scores s;
    bc_err e;
    cr_assert_eq(tk_cls_score(gold, pred, 6, 4, &s, &e), 0, "%s", e.msg);
    cr_expect_eq(s.accuracy, 0.5);
    /* class 1: 1 right of 3 said, of 2 true: P 1/3, R 1/2, F1 0.4; class 2: 2 of 3 and 3:
     * P = R = F1 = 2/3; UNK: true once, never said: 0. Class 3 takes no part. */
    cr_expect(fabs(s.cls[1].precision - 1.0 / 3) < 1e-15 && s.cls[1].recall == 0.5);
    cr_expect(fabs(s.cls[1].f1 - 0.4) < 1e-15, "%.17g", s.cls[1].f1);
    cr_expect(fabs(s.cls[2].f1 - 2.0 / 3) < 1e-15);
    cr_expect_eq(s.cls[0].f1, 0.0);
    cr_expect_eq(s.cls[0].support, 1);
    cr_expect_eq(s.cls[3].support + s.cls[3].predicted, 0);
    cr_expect(fabs(s.macro_f1 - (0.4 + 2.0 / 3 + 0) / 3) < 1e-15, "%.17g", s.macro_f1);
    const int64_t conf[16] = {0, 1, 0, 0, /* UNK */ 0, 1, 1, 0, /* 1 */
                              0, 1, 2, 0, /* 2 */ 0,   0, 0, 0};
    cr_expect(!memcmp(s.confusion, conf, sizeof conf));
    tk_cls_scores_free(&s);
    const int bad[] = {4};
    cr_expect_eq(tk_cls_score(bad, bad, 1, 4, &s, &e), -1);
    cr_expect_eq(tk_cls_score(gold, pred, 0, 4, &s, &e), 0);
    cr_expect_eq(s.accuracy, 0.0);
    cr_expect_eq(s.macro_f1, 0.0);
    tk_cls_scores_free(&s);
}

/* ---- the task, end to end
 * ----------------------------------------------------------------- */

static const char micro_xml[] =
    "<bert name=\"micro\">\n"
    "  <encoder vocab-size=\"100\" hidden-size=\"32\" layers=\"1\" "
    "heads=\"2\"\n"
    "           intermediate-size=\"64\" max-position=\"40\"/>\n"
    "</bert>\n";

/* The demo set as classification data: DIR/{train,dev,test}.tsv (label<TAB>text), a
 * vocabulary and the micro model. */
static void voice_set(char *dir, size_t len)
{
    snprintf(dir, len, "%s", tu_tmpdir());
    char data[700], cmd[4000];
    snprintf(data, sizeof data, "%s/demo", dir);
    tk_demo_data_counts n;
    bc_err e;
    cr_assert_eq(tk_demo_data_write(data, 0, 30, &n, &e), 0, "%s", e.msg);
    snprintf(
        cmd, sizeof cmd,
        "cd %s && for s in train dev test; do paste demo/$s/label demo/$s/seq.in > "
        "$s.tsv; done && %s vocab --corpus demo/train/seq.in --size 400 --no-lowercase -o "
        "vocab.txt 2>/dev/null",
        dir, BERTCC_EXE);
    cr_assert_eq(tu_run(cmd, NULL), 0);
    cr_assert_eq(tu_write_file(tu_path(dir, "model.xml"), micro_xml), 0);
}

Test(classify_task, trains_evaluates_predicts_and_exports, .timeout = 300)
{
    char dir[256], run[600], hf[600];
    voice_set(dir, sizeof dir);
    snprintf(run, sizeof run, "%s/run", dir);
    rundir_train_args a = {.model = tu_path(dir, "model.xml"),
                           .task = "classify",
                           .data = dir,
                           .vocab = tu_path(dir, "vocab.txt"),
                           .no_lower = "1",
                           .out = run,
                           .epochs = "3",
                           .batch_size = "16",
                           .lr = "3e-3",
                           .threads = "1",
                           .backend = "ref"};
    char model[600], vocab[600];
    snprintf(model, sizeof model, "%s", a.model);
    snprintf(vocab, sizeof vocab, "%s", a.vocab);
    a.model = model;
    a.vocab = vocab;
    rundir_train_result r;
    bc_err e;
    cr_assert_eq(rundir_train(&a, &r, &e), 0, "%s", e.msg);
    cr_assert(r.have_best);
    double best_f1 = tk_metrics_get(&r.best, "macro_f1");
    rundir_train_result_free(&r);

    /* Dev, scored again from the run: the best checkpoint's numbers, and the details. */
    rundir_model m;
    rundir_model_opts mo = {"best", CG_BACKEND_REF, 1, NULL, NULL, 3, NULL};
    cr_assert_eq(rundir_model_open(&m, run, dir, &mo, &e), 0, "%s", e.msg);
    tk_metrics dev;
    cr_assert_eq(rundir_evaluate(&m, TK_SPLIT_DEV, 64, &dev, &e), 0, "%s", e.msg);
    cr_expect_eq(tk_metrics_get(&dev, "macro_f1"), best_f1);
    cr_expect_eq(dev.examples, 18);
    json_t *d = rundir_eval_details(&m);
    cr_assert_not_null(d);
    json_t *pc = json_object_get(d, "per_class");
    cr_expect_eq(json_object_size(pc), 6, "six intents, no UNK");
    json_int_t support = 0;
    const char *k;
    json_t *v;
    json_object_foreach(pc, k, v) support +=
        json_integer_value(json_object_get(v, "support"));
    cr_expect_eq(support, 18);
    json_decref(d);

    /* Predict: the three best labels, most likely first. */
    json_t *p = NULL;
    cr_assert_eq(rundir_predict(&m, "아이유 노래 틀어줘", NULL, &p, &e), 0, "%s", e.msg);
    json_t *top = json_object_get(p, "top");
    cr_assert_eq(json_array_size(top), 3);
    double p0 = json_real_value(json_object_get(json_array_get(top, 0), "probability")),
           p2 = json_real_value(json_object_get(json_array_get(top, 2), "probability"));
    cr_expect(p0 >= p2 && p0 <= 1 && p2 >= 0, "%g %g", p0, p2);
    cr_expect_str_eq(json_string_value(json_object_get(p, "label")),
                     json_string_value(json_object_get(json_array_get(top, 0), "label")));
    json_decref(p);
    rundir_model_close(&m);

    /* Export: BertForSequenceClassification with the labels. */
    snprintf(hf, sizeof hf, "%s/hf", dir);
    rundir_export_info info;
    cr_assert_eq(rundir_export(run, NULL, hf, &info, &e), 0, "%s", e.msg);
    json_error_t je;
    json_t *cfg = json_load_file(tu_path(hf, "config.json"), 0, &je);
    cr_assert_not_null(cfg, "%s", je.text);
    cr_expect_str_eq(
        json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
        "BertForSequenceClassification");
    cr_expect_eq(
        json_integer_value(json_object_get(json_object_get(cfg, "label2id"), "volume_up")),
        6);
    cr_expect_str_eq(json_string_value(json_object_get(cfg, "bertcc_task")), "classify");
    json_decref(cfg);

    /* The binary: one line per input line, and --json. */
    char *out = NULL;
    cr_assert_eq(
        tu_bertcc(&out,
                  "predict --model %s --backend ref --top 2 < /dev/null && printf "
                  "'노래 그만\\n소리 키워\\n' | %s predict --model %s --backend ref",
                  run, BERTCC_EXE, run),
        0, "%s", out);
    int lines = 0;
    for (char *c = out; c && *c; c++)
        lines += *c == '\n';
    cr_expect_eq(lines, 2, "%s", out);
    free(out);
    cr_assert_eq(
        tu_bertcc(&out, "eval --model %s --data %s --json --backend ref", run, dir), 0,
        "%s", out);
    cr_expect(strstr(out, "\"per_class\":") && strstr(out, "\"macro_f1\":") &&
                  strstr(out, "\"confusion\":"),
              "%s", out);
    free(out);
}

Test(classify_task, one_file_with_holdout_and_unseen_labels, .timeout = 300)
{
    char dir[256], run[600], one[600];
    voice_set(dir, sizeof dir);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(one, sizeof one, "%s/train.tsv", dir);
    char model[600], vocab[600];
    snprintf(model, sizeof model, "%s", tu_path(dir, "model.xml"));
    snprintf(vocab, sizeof vocab, "%s", tu_path(dir, "vocab.txt"));
    rundir_train_args a = {.model = model,
                           .task = "classify",
                           .data = one,
                           .vocab = vocab,
                           .no_lower = "1",
                           .out = run,
                           .steps = "2",
                           .threads = "1",
                           .backend = "ref"};
    rundir_train_result r;
    bc_err e;
    /* Without --holdout a single file has no dev split. */
    cr_expect_eq(rundir_train(&a, &r, &e), -1);
    cr_expect(strstr(e.msg, "no dev split: give --holdout K"), "%s", e.msg);
    rundir_train_result_free(&r);
    a.topt_name[0] = "holdout";
    a.topt_value[0] = "4";
    a.ntopt = 1;
    cr_assert_eq(rundir_train(&a, &r, &e), 0, "%s", e.msg);
    rundir_train_result_free(&r);

    /* Dev is every 4th record of the 144; a file with a label training never saw scores
     * it as UNK, which counts as wrong. */
    rundir_model m;
    rundir_model_opts mo = {NULL, CG_BACKEND_REF, 1, NULL, NULL, 0, NULL};
    cr_assert_eq(rundir_model_open(&m, run, one, &mo, &e), 0, "%s", e.msg);
    tk_metrics s;
    cr_assert_eq(rundir_evaluate(&m, TK_SPLIT_DEV, 64, &s, &e), 0, "%s", e.msg);
    cr_expect_eq(s.examples, 144 / 4);
    rundir_model_close(&m);
    const char *odd = file("odd.tsv", "no_such_intent\t아이유 노래 틀어줘\n");
    cr_assert_eq(rundir_model_open(&m, run, odd, &mo, &e), 0, "%s", e.msg);
    cr_assert_eq(rundir_evaluate(&m, TK_SPLIT_TEST, 64, &s, &e), 0, "%s", e.msg);
    cr_expect_eq(tk_metrics_get(&s, "accuracy"), 0.0);
    json_t *d = rundir_eval_details(&m);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(d, "per_class"), "UNK"), "support")),
                 1);
    json_decref(d);
    rundir_model_close(&m);

    /* --holdout with a directory, and bad option values, are refused. */
    a.data = dir;
    snprintf(run, sizeof run, "%s/run2", dir);
    cr_expect_eq(rundir_train(&a, &r, &e), -1);
    cr_expect(strstr(e.msg, "--holdout goes with a single --data file"), "%s", e.msg);
    rundir_train_result_free(&r);
    a.topt_name[0] = "select";
    a.topt_value[0] = "recall";
    cr_expect_eq(rundir_train(&a, &r, &e), -1);
    cr_expect(strstr(e.msg, "--select expects macro_f1 or accuracy"), "%s", e.msg);
    rundir_train_result_free(&r);
}

Test(classify_task, balanced_class_weights_follow_the_training_counts)
{
    /* 6 examples: a x3, b x2, c x1 -> n / (classes * n_c) = 6/9, 6/6, 6/3; UNK 0. */
    const char *p = file("skew.tsv", "a\tx\na\ty\na\tz\nb\tx\nb\ty\nc\tz\n");
    const char *vp = file("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nx\ny\nz\n");
    bc_err e;
    tx_vocab *v = tx_vocab_load(vp, &e);
    cr_assert_not_null(v, "%s", e.msg);
    const char *opt[4] = {NULL, NULL, NULL, "balanced"};
    tk_task_config c = {.data = p, .vocab = v, .tok = TX_TOK_OPTS_DEFAULT, .opt = opt};
    void *st = NULL;
    cr_assert_eq(tk_task_classify.open(&c, &st, &e), 0, "%s", e.msg);
    tk_task_heads h = {0};
    tk_task_classify.heads(st, &h);
    cr_expect_eq(h.intent_classes, 4);
    cr_expect(h.intent_class_weights);
    rt_tensor_list b;
    rt_list_init(&b);
    cr_assert_eq(tk_task_classify.augment(st, &b, 0, &e), 0, "%s", e.msg);
    const rt_tensor *w = rt_list_cfind(&b, "intent_class_weights");
    cr_assert(w && w->dtype == RT_F32 && w->rank == 1 && w->shape[0] == 4);
    const float want[4] = {0.0f, (float)(6.0 / 9), 1.0f, 2.0f};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(((const float *)w->data)[i], want[i], "class %d: %g", i,
                     ((const float *)w->data)[i]);
    rt_list_free(&b);
    tk_task_classify.close(st);

    /* Without the option: no weights, no input. */
    opt[3] = NULL;
    cr_assert_eq(tk_task_classify.open(&c, &st, &e), 0, "%s", e.msg);
    tk_task_classify.heads(st, &h);
    cr_expect_not(h.intent_class_weights);
    rt_list_init(&b);
    cr_assert_eq(tk_task_classify.augment(st, &b, 0, &e), 0, "%s", e.msg);
    cr_expect_eq(b.n, 0);
    tk_task_classify.close(st);
    opt[3] = "heavy";
    cr_expect_eq(tk_task_classify.open(&c, &st, &e), -1);
    cr_expect(strstr(e.msg, "--class-weights expects none or balanced"), "%s", e.msg);
    tx_vocab_free(v);
}

Test(classify_task, weighted_training_runs_and_differs_from_unweighted, .timeout = 300)
{
    char dir[256], run[600], model[600], vocab[600];
    voice_set(dir, sizeof dir);
    snprintf(model, sizeof model, "%s", tu_path(dir, "model.xml"));
    snprintf(vocab, sizeof vocab, "%s", tu_path(dir, "vocab.txt"));
    /* The training split made skewed: every sentence of one intent four times. */
    char cmd[2000];
    snprintf(
        cmd, sizeof cmd,
        "cd %s && grep '^stop_music' train.tsv > more && cat more more more >> train.tsv",
        dir);
    cr_assert_eq(tu_run(cmd, NULL), 0);
    double loss[2];
    for (int k = 0; k < 2; k++) {
        snprintf(run, sizeof run, "%s/run%d", dir, k);
        rundir_train_args a = {.model = model,
                               .task = "classify",
                               .data = dir,
                               .vocab = vocab,
                               .no_lower = "1",
                               .out = run,
                               .steps = "3",
                               .no_eval = "1",
                               .threads = "1",
                               .backend = "ref"};
        a.topt_name[0] = "class-weights";
        a.topt_value[0] = "balanced";
        a.ntopt = k;
        rundir_train_result r;
        bc_err e;
        cr_assert_eq(rundir_train(&a, &r, &e), 0, "%s", e.msg);
        loss[k] = r.train.last_loss;
        rundir_train_result_free(&r);
        cr_expect(isfinite(loss[k]));
    }
    cr_expect_neq(loss[0], loss[1], "the weights changed nothing");
}
