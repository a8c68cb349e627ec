/* test_intent_slot.c: tasks/task_intent_slot.c — BIO tags onto WordPiece sub-tokens
 * (first sub-token labelled, -100 elsewhere), truncation, label lists with UNK, reading
 * the ATIS layout and its errors, the run batch tensors, evaluation and prediction with
 * a hand-written forward function (so that the task is tested apart from any model),
 * and the real ATIS files from ../shared/data when they are there. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tasks/metrics.h"
#include "tasks/task_intent_slot.h"
#include "train/batch.h"
#include "util.h"

/* A small vocabulary where Korean words split into known pieces. */
static const char *const toks[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "아이", "##유", "노래", "틀어", "##줘",
    "그만",  "play",  "some",  "jazz",  "stop",   "new",  "york", "to",   "fly",  "##ing"};
#define NTOK ((int)(sizeof toks / sizeof *toks))

static tx_vocab *small_vocab(void)
{
    bc_err e;
    tx_vocab *v = tx_vocab_from_list(toks, NTOK, "test-vocab", &e);
    cr_assert_not_null(v, "%s", e.msg);
    return v;
}

static int tok_id(const char *t)
{
    for (int i = 0; i < NTOK; i++)
        if (!strcmp(toks[i], t))
            return i;
    cr_assert_fail("no token %s", t);
    return -1;
}

/* ---- alignment ------------------------------------------------------------------- */

Test(intent_slot, tags_go_on_the_first_subtoken_and_minus_100_elsewhere)
{
    tx_vocab *v = small_vocab();
    tx_tok_opts o = {0, 0};
    const char *words[] = {"아이유", "노래", "틀어줘"};
    int tags[] = {7, 2, 2}; /* B-artist, O, O as ids */
    int64_t ids[16], lab[16];
    int pos[3], cut = -1;
    bc_err e;
    int n = tk_is_encode(v, &o, words, 3, tags, 16, ids, lab, pos, &cut, &e);
    cr_assert_eq(n, 7, "%s", e.msg);
    int64_t want_ids[] = {tok_id("[CLS]"), tok_id("아이"), tok_id("##유"), tok_id("노래"),
                          tok_id("틀어"),  tok_id("##줘"), tok_id("[SEP]")};
    int64_t want_lab[] = {-100, 7, -100, 2, 2, -100, -100};
    for (int k = 0; k < 7; k++) {
        cr_expect_eq(ids[k], want_ids[k], "id %d: %lld", k, (long long)ids[k]);
        cr_expect_eq(lab[k], want_lab[k], "label %d: %lld", k, (long long)lab[k]);
    }
    cr_expect_eq(pos[0], 1);
    cr_expect_eq(pos[1], 3);
    cr_expect_eq(pos[2], 4);
    cr_expect_eq(cut, 0);
    tx_vocab_free(v);
}

Test(intent_slot, english_lowercased_with_continuations_and_unknown_words)
{
    tx_vocab *v = small_vocab();
    tx_tok_opts o = TX_TOK_OPTS_DEFAULT;
    /* "Flying" -> fly ##ing; "zzz" -> [UNK]; "New York" is B/I on two words. */
    const char *words[] = {"Flying", "to", "New", "York", "zzz"};
    int tags[] = {2, 2, 3, 4, 2};
    int64_t ids[16], lab[16];
    int pos[5];
    bc_err e;
    int n = tk_is_encode(v, &o, words, 5, tags, 16, ids, lab, pos, NULL, &e);
    cr_assert_eq(n, 8, "%s", e.msg);
    int64_t want_lab[] = {-100, 2, -100, 2, 3, 4, 2, -100};
    for (int k = 0; k < n; k++)
        cr_expect_eq(lab[k], want_lab[k], "label %d: %lld", k, (long long)lab[k]);
    cr_expect_eq(ids[6], tok_id("[UNK]"));
    int want_pos[] = {1, 3, 4, 5, 6};
    for (int w = 0; w < 5; w++)
        cr_expect_eq(pos[w], want_pos[w], "word %d at %d", w, pos[w]);
    tx_vocab_free(v);
}

Test(intent_slot, truncation_cuts_tokens_and_their_words)
{
    tx_vocab *v = small_vocab();
    tx_tok_opts o = {0, 0};
    const char *words[] = {"아이유", "노래", "틀어줘"};
    int tags[] = {7, 2, 2};
    int64_t ids[5], lab[5];
    int pos[3], cut = 0;
    bc_err e;
    /* room for 3 tokens: 아이 ##유 노래 */
    int n = tk_is_encode(v, &o, words, 3, tags, 5, ids, lab, pos, &cut, &e);
    cr_assert_eq(n, 5, "%s", e.msg);
    cr_expect_eq(cut, 1);
    cr_expect_eq(ids[4], tok_id("[SEP]"));
    cr_expect_eq(pos[1], 3);
    cr_expect_eq(pos[2], -1);
    cr_expect_eq(lab[3], 2);
    cr_expect_eq(lab[4], -100);
    cr_expect_eq(tk_is_encode(v, &o, words, 3, tags, 1, ids, lab, pos, &cut, &e), -1);
    tx_vocab_free(v);
}

/* ---- label lists ------------------------------------------------------------------ */

Test(intent_slot, label_lists_put_unk_first_then_o_then_sorted)
{
    const char *seen[] = {"I-b", "O", "B-b", "B-a", "O", "B-a", "UNK"};
    tk_is_labels l;
    bc_err e;
    cr_assert_eq(tk_is_labels_build(seen, 7, 1, &l, &e), 0, "%s", e.msg);
    const char *want[] = {"UNK", "O", "B-a", "B-b", "I-b"};
    cr_assert_eq(l.n, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_str_eq(l.name[i], want[i]);
    cr_expect_eq(tk_is_label_id(&l, "B-b"), 3);
    cr_expect_eq(tk_is_label_id(&l, "I-never-seen"), 0);
    cr_expect_eq(tk_is_label_id(&l, "UNK"), 0);

    /* Saved and loaded as it was; a file not starting with UNK is refused. */
    const char *dir = tu_tmpdir();
    const char *p = tu_path(dir, "labels.txt");
    cr_assert_eq(tk_is_labels_save(p, &l, &e), 0, "%s", e.msg);
    tk_is_labels r;
    cr_assert_eq(tk_is_labels_load(p, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r.n, l.n);
    for (int i = 0; i < l.n; i++)
        cr_expect_str_eq(r.name[i], l.name[i]);
    tk_is_labels_free(&r);
    tk_is_labels_free(&l);
    cr_assert_eq(tu_write_file(p, "O\nB-a\n"), 0);
    cr_assert_eq(tk_is_labels_load(p, &r, &e), -1);
    cr_expect(strstr(e.msg, "labels.txt:1") && strstr(e.msg, "UNK"), "%s", e.msg);
}

/* ---- data files ------------------------------------------------------------------- */

static void write_split(const char *root, const char *split, const char *in,
                        const char *out, const char *label)
{
    char d[1024];
    snprintf(d, sizeof d, "%s/%s", root, split);
    mkdir(d, 0777);
    cr_assert_eq(tu_write_file(tu_path(d, "seq.in"), in), 0);
    cr_assert_eq(tu_write_file(tu_path(d, "seq.out"), out), 0);
    cr_assert_eq(tu_write_file(tu_path(d, "label"), label), 0);
}

/* Train knows intents play, stop and tags O, B-genre; dev has an unseen intent "halt"
 * and an unseen tag B-mood. SNIPS-like irregular spaces in train. */
static const char *make_data(void)
{
    const char *root = tu_tmpdir();
    write_split(root, "train", "play  some jazz \nstop\nplay jazz\n",
                "O O B-genre \nO\nO B-genre\n", "play\nstop\nplay\n");
    write_split(root, "dev", "play jazz\nstop\nplay some jazz\n",
                "O B-genre\nO\nO B-mood B-genre\n", "play\nhalt\nplay\n");
    return root;
}

Test(intent_slot, reading_refuses_mismatched_files_naming_the_line)
{
    const char *root = tu_tmpdir();
    write_split(root, "train", "play jazz\nstop it\n", "O B-genre\nO\n", "play\nstop\n");
    tk_is_data d;
    bc_err e;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/train", root);
    cr_assert_eq(tk_is_read(dir, &d, &e), -1);
    cr_expect(strstr(e.msg, "seq.out:2") && strstr(e.msg, "1 tags for 2 words"), "%s",
              e.msg);
    write_split(root, "train", "play jazz\nstop\n", "O B-genre\nO\n", "play\n");
    cr_assert_eq(tk_is_read(dir, &d, &e), -1);
    cr_expect(strstr(e.msg, "label") && strstr(e.msg, "1 lines"), "%s", e.msg);
    write_split(root, "train", "play jazz\n", "O B-genre\n", "play music\n");
    cr_assert_eq(tk_is_read(dir, &d, &e), -1);
    cr_expect(strstr(e.msg, "label:1"), "%s", e.msg);
    cr_assert_eq(tk_is_read("/nonexistent-dir", &d, &e), -1);
    cr_expect(strstr(e.msg, "/nonexistent-dir/seq.in"), "%s", e.msg);
}

static tk_task open_task(const char *data, const char *run_dir, const tx_vocab *v,
                         tu_notes *nt)
{
    tk_task_config c = {data, run_dir, v, {1, -1}, NULL, 512, tu_note, nt, 0};
    tk_task t = {&tk_task_intent_slot, NULL};
    bc_err e;
    cr_assert_eq(t.ops->open(&c, &t.state, &e), 0, "%s", e.msg);
    return t;
}

Test(intent_slot, training_rows_are_run_batches_with_labels)
{
    const char *root = make_data();
    tx_vocab *v = small_vocab();
    tu_notes nt = {0};
    tk_task t = open_task(root, NULL, v, &nt);
    tk_task_heads h;
    t.ops->heads(t.state, &h);
    cr_expect_eq(h.labels, TR_LABEL_INTENT | TR_LABEL_SLOT);
    cr_expect_eq(h.intent_classes, 3); /* UNK play stop */
    cr_expect_eq(h.slot_labels, 3);    /* UNK O B-genre */
    rt_tensor_list l;
    rt_list_init(&l);
    bc_err e;
    cr_assert_eq(t.ops->data(t.state, TK_SPLIT_TRAIN, &l, &e), 0, "%s", e.msg);
    const rt_tensor *ids = rt_list_cfind(&l, "input_ids"),
                    *sl = rt_list_cfind(&l, "slot_labels");
    const rt_tensor *il = rt_list_cfind(&l, "intent_labels"),
                    *m = rt_list_cfind(&l, "attention_mask");
    cr_assert(ids && sl && il && m && rt_list_cfind(&l, "token_type_ids"));
    cr_assert_eq(ids->shape[0], 3);
    cr_assert_eq(ids->shape[1], 5); /* [CLS] play some jazz [SEP] */
    const int64_t *s = sl->data, *in = il->data, *mk = m->data;
    int64_t want0[] = {-100, 1, 1, 2, -100}, want1[] = {-100, 1, -100, -100, -100};
    for (int k = 0; k < 5; k++) {
        cr_expect_eq(s[k], want0[k], "row 0 position %d: %lld", k, (long long)s[k]);
        cr_expect_eq(s[5 + k], want1[k], "row 1 position %d: %lld", k, (long long)s[5 + k]);
    }
    cr_expect_eq(mk[5 + 2], 1); /* [CLS] stop [SEP] then padding */
    cr_expect_eq(mk[5 + 3], 0);
    cr_expect_eq(((int64_t *)ids->data)[5 + 3], 0); /* [PAD] */
    cr_expect_eq(in[0], 1);
    cr_expect_eq(in[1], 2);
    cr_expect_eq(nt.n, 0, "%s", nt.last);

    /* Dev: the unseen intent and tag map to UNK (0), reported once. */
    rt_list_free(&l);
    rt_list_init(&l);
    cr_assert_eq(t.ops->data(t.state, TK_SPLIT_DEV, &l, &e), 0, "%s", e.msg);
    cr_expect_eq(((int64_t *)rt_list_cfind(&l, "intent_labels")->data)[1], 0);
    cr_expect_eq(nt.n, 1);
    cr_expect(strstr(nt.last, "halt (1)") && strstr(nt.last, "B-mood (1)") &&
                  strstr(nt.last, "2 of 3"),
              "%s", nt.last);
    rt_tensor_list l2;
    rt_list_init(&l2);
    cr_assert_eq(t.ops->data(t.state, TK_SPLIT_DEV, &l2, &e), 0, "%s", e.msg);
    cr_expect_eq(nt.n, 1, "reported twice: %s", nt.last);
    cr_assert_eq(t.ops->data(t.state, TK_SPLIT_TEST, &l2, &e), -1);
    cr_expect(strstr(e.msg, "test/seq.in"), "%s", e.msg);
    rt_list_free(&l);
    rt_list_free(&l2);
    t.ops->close(t.state);
    tx_vocab_free(v);
}

/* A forward pass that "knows" the answers: intent from the first word (play or stop),
 * tag B-genre on "jazz", O elsewhere; logits of 5 for the chosen class. */
typedef struct oracle {
    int calls;
    int64_t max_b;
} oracle;

static int oracle_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                          bc_err *e)
{
    (void)e;
    oracle *o = ctx;
    o->calls++;
    const rt_tensor *ids = rt_list_cfind(batch, "input_ids");
    cr_assert(ids && ids->rank == 2);
    int64_t B = ids->shape[0], S = ids->shape[1];
    o->max_b = B > o->max_b ? B : o->max_b;
    int64_t ishape[2] = {B, 3}, sshape[3] = {B, S, 3};
    rt_tensor *il = rt_list_add(out, "intent_logits", RT_F32, 2, ishape, NULL);
    rt_tensor *sl = rt_list_add(out, "slot_logits", RT_F32, 3, sshape, NULL);
    const int64_t *x = ids->data;
    float *li = il->data, *ls = sl->data;
    for (int64_t b = 0; b < B; b++) {
        li[b * 3 + (x[b * S + 1] == tok_id("stop") ? 2 : 1)] = 5;
        for (int64_t s = 0; s < S; s++)
            ls[(b * S + s) * 3 + (x[b * S + s] == tok_id("jazz") ? 2 : 1)] = 5;
    }
    return 0;
}

Test(intent_slot, evaluation_counts_unseen_labels_as_wrong)
{
    const char *root = make_data();
    tx_vocab *v = small_vocab();
    tu_notes nt = {0};
    tk_task t = open_task(root, NULL, v, &nt);
    oracle o = {0, 0};
    tk_metrics m;
    bc_err e;
    cr_assert_eq(
        t.ops->evaluate(t.state, TK_SPLIT_TRAIN, 2, oracle_forward, &o, NULL, &m, &e), 0,
        "%s", e.msg);
    cr_expect_eq(o.calls, 2);
    cr_expect_eq(o.max_b, 2);
    cr_expect_eq(m.examples, 3);
    cr_expect_float_eq(tk_metrics_get(&m, "intent_accuracy"), 1.0, 1e-12);
    cr_expect_float_eq(tk_metrics_get(&m, "slot_f1"), 1.0, 1e-12);
    cr_expect_float_eq(tk_metrics_get(&m, "frame_accuracy"), 1.0, 1e-12);
    /* Dev: "halt" is unseen (intent wrong), "B-mood" on "some" is unseen (its chunk
     * missed): intents 2/3, frames 1/3, chunks: gold 3 (genre, genre, mood), predicted
     * 2, correct 2. */
    cr_assert_eq(
        t.ops->evaluate(t.state, TK_SPLIT_DEV, 64, oracle_forward, &o, NULL, &m, &e), 0,
        "%s", e.msg);
    cr_expect_float_eq(tk_metrics_get(&m, "intent_accuracy"), 2.0 / 3, 1e-12);
    cr_expect_float_eq(tk_metrics_get(&m, "frame_accuracy"), 1.0 / 3, 1e-12);
    cr_expect_float_eq(tk_metrics_get(&m, "slot_precision"), 1.0, 1e-12);
    cr_expect_float_eq(tk_metrics_get(&m, "slot_recall"), 2.0 / 3, 1e-12);
    cr_expect_eq(nt.n, 1);
    /* The task's choice of the best evaluation: frame accuracy first. */
    tk_metrics a = {0}, b = {0};
    tk_metrics_add(&a, "frame_accuracy", 0.5);
    tk_metrics_add(&a, "slot_f1", 0.1);
    tk_metrics_add(&b, "frame_accuracy", 0.5);
    tk_metrics_add(&b, "slot_f1", 0.2);
    cr_expect_lt(tk_task_compare(tk_task_best_by(&t), &a, &b), 0);
    cr_expect_eq(tk_task_compare(tk_task_best_by(&t), &a, &a), 0);
    t.ops->close(t.state);
    tx_vocab_free(v);
}

/* Intent logits with 5 classes for a run with 3. */
static int wrong_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                         bc_err *e)
{
    (void)ctx;
    (void)e;
    const rt_tensor *ids = rt_list_cfind(batch, "input_ids");
    int64_t shape[2] = {ids->shape[0], 5};
    rt_list_add(out, "intent_logits", RT_F32, 2, shape, NULL);
    return 0;
}

Test(intent_slot, labels_come_back_from_a_run_dir_and_predictions_name_spans)
{
    const char *root = make_data();
    tx_vocab *v = small_vocab();
    tu_notes nt = {0};
    tk_task t = open_task(root, NULL, v, &nt);
    const char *run = tu_tmpdir();
    bc_err e;
    cr_assert_eq(t.ops->save(t.state, run, &e), 0, "%s", e.msg);
    t.ops->close(t.state);
    char *il = tu_read_file(tu_path(run, TK_IS_INTENT_LABELS), NULL);
    char *sl = tu_read_file(tu_path(run, TK_IS_SLOT_LABELS), NULL);
    cr_expect_str_eq(il, "UNK\nplay\nstop\n");
    cr_expect_str_eq(sl, "UNK\nO\nB-genre\n");
    free(il);
    free(sl);

    /* Prediction only: no data, labels from the run. */
    tk_task p = open_task(NULL, run, v, &nt);
    oracle o = {0, 0};
    json_t *j = NULL;
    cr_assert_eq(
        p.ops->predict(p.state, "  Play jazz  jazz", NULL, oracle_forward, &o, &j, &e), 0,
        "%s", e.msg);
    cr_expect_str_eq(json_string_value(json_object_get(j, "intent")), "play");
    double prob = json_real_value(json_object_get(j, "intent_probability"));
    cr_expect_float_eq(prob, exp(5.0) / (exp(5.0) + 2), 1e-6);
    json_t *slots = json_object_get(j, "slots");
    cr_assert_eq(json_array_size(slots), 2); /* B B: two chunks */
    json_t *c = json_array_get(slots, 1);
    cr_expect_str_eq(json_string_value(json_object_get(c, "slot")), "genre");
    cr_expect_str_eq(json_string_value(json_object_get(c, "text")), "jazz");
    cr_expect_eq(json_integer_value(json_object_get(c, "start")), 13);
    cr_expect_eq(json_integer_value(json_object_get(c, "end")), 17);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(p.ops->print(p.state, j, f), 0);
    fclose(f);
    cr_expect_str_eq(buf, "intent: play (0.99)\ngenre: jazz\ngenre: jazz\n");
    free(buf);
    json_decref(j);
    cr_expect_eq(p.ops->predict(p.state, "a", "b", oracle_forward, &o, &j, &e), -1);
    /* Empty text: an intent all the same, no slots. */
    cr_assert_eq(p.ops->predict(p.state, "", NULL, oracle_forward, &o, &j, &e), 0, "%s",
                 e.msg);
    cr_expect_eq(json_array_size(json_object_get(j, "slots")), 0);
    json_decref(j);
    /* Evaluating needs data. */
    tk_metrics m;
    cr_expect_eq(
        p.ops->evaluate(p.state, TK_SPLIT_DEV, 8, oracle_forward, &o, NULL, &m, &e), -1);
    p.ops->close(p.state);

    /* A model whose head does not match the labels is an error, not a crash. */
    tk_task q = open_task(root, NULL, v, &nt);
    cr_assert_eq(
        q.ops->evaluate(q.state, TK_SPLIT_TRAIN, 8, wrong_forward, NULL, NULL, &m, &e), -1);
    cr_expect(strstr(e.msg, "intent_logits") && strstr(e.msg, "[3, 3]"), "%s", e.msg);
    q.ops->close(q.state);
    tx_vocab_free(v);
}

Test(intent_slot, max_seq_option_is_checked_against_the_model)
{
    const char *root = make_data();
    tx_vocab *v = small_vocab();
    const char *opt[] = {"600", NULL};
    tk_task_config c = {root, NULL, v, {1, -1}, opt, 512, NULL, NULL, 0};
    void *st = NULL;
    bc_err e;
    cr_expect_eq(tk_task_intent_slot.open(&c, &st, &e), -1);
    cr_expect(strstr(e.msg, "max-position 512"), "%s", e.msg);
    opt[0] = "x";
    cr_expect_eq(tk_task_intent_slot.open(&c, &st, &e), -1);
    cr_expect(strstr(e.msg, "--max-seq"), "%s", e.msg);
    /* Without the option the default (64) shrinks to a smaller model's max-position. */
    c.opt = NULL;
    c.max_position = 16;
    cr_assert_eq(tk_task_intent_slot.open(&c, &st, &e), 0, "%s", e.msg);
    char buf[32];
    tk_task_intent_slot.option_value(st, 0, buf, sizeof buf);
    cr_expect_str_eq(buf, "16");
    tk_task_intent_slot.close(st);
    tx_vocab_free(v);
}

/* ---- BIO decoding ------------------------------------------------------------------ */

/* Slot labels UNK O B-city B-genre I-city (the order the task gives them: UNK, O, then
 * sorted). The forward pass returns the logits in ctx for every position. */
typedef struct fixed_logits {
    const float *word; /* [n_words][5], word w at position 1 + w */
} fixed_logits;

static int fixed_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                         bc_err *e)
{
    (void)e;
    const fixed_logits *f = ctx;
    const rt_tensor *ids = rt_list_cfind(batch, "input_ids");
    const rt_tensor *mask = rt_list_cfind(batch, "attention_mask");
    int64_t B = ids->shape[0], S = ids->shape[1];
    cr_assert_eq(B, 1);
    int64_t ishape[2] = {1, 3}, sshape[3] = {1, S, 5};
    rt_tensor *il = rt_list_add(out, "intent_logits", RT_F32, 2, ishape, NULL);
    rt_tensor *sl = rt_list_add(out, "slot_logits", RT_F32, 3, sshape, NULL);
    ((float *)il->data)[1] = 1;
    cr_assert_eq(((const int64_t *)mask->data)[S - 1], 1); /* one row: no padding */
    for (int64_t s = 1; s + 1 < S; s++) /* words at 1 .. S-2, [SEP] last */
        memcpy((float *)sl->data + s * 5, f->word + (s - 1) * 5, 5 * sizeof(float));
    return 0;
}

static tk_task bio_task(const char *decode, const tx_vocab *v)
{
    const char *root = tu_tmpdir();
    write_split(root, "train", "fly to new york\nplay some jazz\n",
                "O O B-city I-city\nO O B-genre\n", "fly\nplay\n");
    const char *opt[] = {NULL, decode};
    tk_task_config c = {root, NULL, v, {1, -1}, opt, 512, NULL, NULL, 0};
    tk_task t = {&tk_task_intent_slot, NULL};
    bc_err e;
    cr_assert_eq(t.ops->open(&c, &t.state, &e), 0, "%s", e.msg);
    rt_tensor_list l; /* builds the label lists */
    rt_list_init(&l);
    cr_assert_eq(t.ops->data(t.state, TK_SPLIT_TRAIN, &l, &e), 0, "%s", e.msg);
    rt_list_free(&l);
    tk_task_heads h;
    t.ops->heads(t.state, &h);
    cr_assert_eq(h.slot_labels, 5);
    return t;
}

static void predicted_tags(tk_task *t, const char *text, fixed_logits *f, const char **want,
                           int n)
{
    json_t *j = NULL;
    bc_err e;
    cr_assert_eq(t->ops->predict(t->state, text, NULL, fixed_forward, f, &j, &e), 0, "%s",
                 e.msg);
    json_t *tags = json_object_get(j, "tags");
    cr_assert_eq((int)json_array_size(tags), n);
    for (int w = 0; w < n; w++)
        cr_expect_str_eq(json_string_value(json_array_get(tags, (size_t)w)), want[w],
                         "%s: word %d", text, w);
    json_decref(j);
}

static const char *const bio_names[5] = {"UNK", "O", "B-city", "B-genre", "I-city"};

/* "new" leans O (3 against B-city 1), "york" is surely I-city (5): the best tag of each
 * word gives O I-city, a chunk "york" that conlleval would count; the best valid
 * sequence is B-city I-city (1 + 5 > 3 + 0). I-city never starts a sentence. */
Test(intent_slot, bio_decoding_takes_the_best_valid_sequence)
{
    tx_vocab *v = small_vocab();
    static const float lg[] = {0, 3, 1, 0, 0, /* new */ 0, 0, 0, 0, 5 /* york */};
    fixed_logits f = {lg};
    tk_task bio = bio_task(NULL, v), am = bio_task("argmax", v);
    const char *want_bio[] = {"B-city", "I-city"}, *want_am[] = {"O", "I-city"};
    predicted_tags(&bio, "new york", &f, want_bio, 2);
    predicted_tags(&am, "new york", &f, want_am, 2);
    char buf[16];
    bio.ops->option_value(bio.state, 1, buf, sizeof buf);
    cr_expect_str_eq(buf, "bio");
    am.ops->option_value(am.state, 1, buf, sizeof buf);
    cr_expect_str_eq(buf, "argmax");
    /* A lone I-city: B-city under bio (the best allowed start), I-city under argmax. */
    static const float one[] = {0, 0, 1, 0, 4};
    f.word = one;
    const char *b1[] = {"B-city"}, *a1[] = {"I-city"};
    predicted_tags(&bio, "york", &f, b1, 1);
    predicted_tags(&am, "york", &f, a1, 1);
    bio.ops->close(bio.state);
    am.ops->close(am.state);
    /* A bad value is refused by name. */
    const char *opt[] = {NULL, "crf"};
    tk_task_config c = {NULL, tu_tmpdir(), v, {1, -1}, opt, 512, NULL, NULL, 0};
    void *st = NULL;
    bc_err e;
    cr_expect_eq(tk_task_intent_slot.open(&c, &st, &e), -1);
    cr_expect(strstr(e.msg, "--slot-decode"), "%s", e.msg);
    tx_vocab_free(v);
}

/* Against brute force: for random logits over 1..6 words, the decoded sequence is the
 * valid one (I-city only after B-city or I-city, UNK never) with the largest sum of
 * log-softmax scores, found by trying all 4^n sequences. */
Test(intent_slot, bio_decoding_agrees_with_brute_force)
{
    tx_vocab *v = small_vocab();
    tk_task t = bio_task(NULL, v);
    static const char *const words[] = {"fly", "to", "new", "york", "play", "jazz"};
    uint64_t seed = 12345;
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + trial % 6;
        float lg[6 * 5];
        for (int k = 0; k < n * 5; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            lg[k] = (float)((double)(seed >> 40) / (double)(1 << 24) * 6.0 - 3.0);
        }
        double lp[6][5];
        for (int w = 0; w < n; w++) {
            double z = 0;
            for (int j = 0; j < 5; j++)
                z += exp(lg[w * 5 + j]);
            for (int j = 0; j < 5; j++)
                lp[w][j] = lg[w * 5 + j] - log(z);
        }
        double best = -INFINITY;
        int best_seq[6] = {0}, seq[6];
        int total = 1;
        for (int w = 0; w < n; w++)
            total *= 4;
        for (int code = 0; code < total; code++) {
            int c = code, ok = 1;
            double sc = 0;
            for (int w = 0; w < n; w++, c /= 4) {
                seq[w] = 1 + c % 4; /* O B-city B-genre I-city */
                if (seq[w] == 4 && (w == 0 || (seq[w - 1] != 2 && seq[w - 1] != 4)))
                    ok = 0;
                sc += lp[w][seq[w]];
            }
            if (ok && sc > best) {
                best = sc;
                memcpy(best_seq, seq, sizeof seq);
            }
        }
        char text[128] = "";
        const char *want[6];
        for (int w = 0; w < n; w++) {
            strcat(text, w ? " " : "");
            strcat(text, words[w]);
            want[w] = bio_names[best_seq[w]];
        }
        fixed_logits f = {lg};
        predicted_tags(&t, text, &f, want, n);
    }
    t.ops->close(t.state);
    tx_vocab_free(v);
}

/* ---- the real ATIS files (../shared/data/atis) ------------------------------------- */

Test(shared_data, atis_label_counts_and_alignment)
{
    char atis[1024], vocab[1024];
    snprintf(atis, sizeof atis, "%s", BERTCC_SOURCE_DIR "/../shared/data/atis");
    snprintf(vocab, sizeof vocab, "%s",
             BERTCC_SOURCE_DIR "/../shared/data/bert_vocab/bert-base-uncased-vocab.txt");
    if (access(tu_path(atis, "train/seq.in"), R_OK) || access(vocab, R_OK))
        TU_NEED_SHARED_DATA(0, "atis and bert_vocab");
    bc_err e;
    tx_vocab *v = tx_vocab_load(vocab, &e);
    cr_assert_not_null(v, "%s", e.msg);
    tu_notes nt = {0};
    tk_task t = open_task(atis, NULL, v, &nt);
    tk_task_heads h;
    t.ops->heads(t.state, &h);
    /* SOURCE.md: 21 intents and 120 slot labels seen in train, plus our UNK. */
    cr_expect_eq(h.intent_classes, 22);
    cr_expect_eq(h.slot_labels, 121);
    rt_tensor_list l;
    rt_list_init(&l);
    cr_assert_eq(t.ops->data(t.state, TK_SPLIT_TRAIN, &l, &e), 0, "%s", e.msg);
    const rt_tensor *sl = rt_list_cfind(&l, "slot_labels");
    cr_assert_eq(sl->shape[0], 4478);
    int64_t S = sl->shape[1];
    cr_expect_leq(S, 64);
    /* Every word's tag lands on exactly one position, in order. */
    tk_is_data d;
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/train", atis);
    cr_assert_eq(tk_is_read(dir, &d, &e), 0, "%s", e.msg);
    tk_is_labels slots;
    char run[1100];
    snprintf(run, sizeof run, "%s", tu_tmpdir());
    cr_assert_eq(t.ops->save(t.state, run, &e), 0, "%s", e.msg);
    cr_assert_eq(tk_is_labels_load(tu_path(run, TK_IS_SLOT_LABELS), &slots, &e), 0, "%s",
                 e.msg);
    long long words = 0, labelled = 0;
    for (int i = 0; i < d.n; i++) {
        const int64_t *row = (const int64_t *)sl->data + (size_t)i * (size_t)S;
        int w = 0;
        for (int64_t k = 0; k < S; k++)
            if (row[k] != -100) {
                cr_assert_lt(w, d.s[i].n_words, "sentence %d", i + 1);
                cr_assert_str_eq(slots.name[row[k]], d.s[i].tags[w], "sentence %d word %d",
                                 i + 1, w + 1);
                w++;
            }
        cr_assert_eq(w, d.s[i].n_words, "sentence %d", i + 1);
        words += d.s[i].n_words;
        labelled += w;
    }
    cr_expect_eq(words, labelled);
    cr_expect_eq(nt.n, 0, "%s", nt.last);
    /* Dev: one unseen intent and one unseen tag, reported (SOURCE.md's caveats). */
    rt_tensor_list dl;
    rt_list_init(&dl);
    cr_assert_eq(t.ops->data(t.state, TK_SPLIT_DEV, &dl, &e), 0, "%s", e.msg);
    cr_expect(strstr(nt.last, "atis_airfare#atis_flight_time") &&
                  strstr(nt.last, "I-return_date.day_number"),
              "%s", nt.last);
    rt_list_free(&dl);
    tk_is_labels_free(&slots);
    tk_is_data_free(&d);
    rt_list_free(&l);
    t.ops->close(t.state);
    tx_vocab_free(v);
}
