/* test_task_pretrain.c: the pre-training task (tasks/task_pretrain.c) on a generated
 * corpus whose documents each have a topic of their own words. Through its table of
 * functions: dynamic masking changes the masks of a micro-batch with its seed and keeps
 * labels and unmasked tokens consistent; the holdout keeps documents whole (dev rows
 * only hold the held-out documents' words); a pre-training data file is split by rows;
 * the dev metrics of a hand-written model are computed right; predict fills [MASK].
 * End to end through the bertcc executable: a tiny model's dev MLM loss falls and NSP
 * accuracy rises over a few epochs, and its checkpoint fine-tunes an intent-slot model
 * with --init (the new heads are listed). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/rng.h"
#include "runtime/safetensors.h"
#include "tasks/pretrain_data.h"
#include "tasks/task_pretrain.h"
#include "util.h"

/* ---- the generated corpus ---------------------------------------------------------- */

#define TOPICS 24
#define TOPIC_WORDS TU_TOPIC_WORDS
#define NCOMMON TU_NCOMMON

/* The vocabulary of TOPICS topics (tu_topic_vocab), saved to save_to unless NULL. */
static tx_vocab *corpus_vocab(const char *save_to)
{
    bc_err e;
    tx_vocab *v = tu_topic_vocab(TOPICS, save_to, &e);
    cr_assert_not_null(v, "%s", e.msg);
    return v;
}

static int topic_of(int64_t id)
{
    int64_t k = id - 5 - NCOMMON;
    return k >= 0 && k < TOPICS * TOPIC_WORDS ? (int)(k / TOPIC_WORDS) : -1;
}

/* `docs` documents of `sents` sentences about topic d % ntopics (tu_topic_corpus): every
 * sentence has four of its six words and two common words, so a masked word can be told
 * from its document, and a NotNext segment B (another document) mostly has another
 * topic than A. */
static void write_corpus(const char *path, int docs, int sents, uint64_t seed, int ntopics)
{
    cr_assert_eq(tu_topic_corpus(path, docs, sents, seed, ntopics), 0, "%s", path);
}

/* The vocabulary above lacks "."; the corpus is written with one, which becomes
 * [UNK] — a token like any other. */

/* ---- helpers ------------------------------------------------------------------------- */

typedef struct opts {
    const char *v[16];
} opts;

static void set_opt(opts *o, const char *name, const char *value)
{
    for (int i = 0; tk_task_pretrain.options[i].name; i++)
        if (!strcmp(tk_task_pretrain.options[i].name, name)) {
            o->v[i] = value;
            return;
        }
    cr_assert_fail("no option %s", name);
}

static int open_task(const char *data, const tx_vocab *v, const opts *o, void **st,
                     bc_err *e)
{
    tk_task_config c = {data, NULL, v, TX_TOK_OPTS_DEFAULT, o ? o->v : NULL, 64,
                        NULL, NULL, 0};
    return tk_task_pretrain.open(&c, st, e);
}

static void *must_open(const char *data, const tx_vocab *v, const opts *o)
{
    void *st = NULL;
    bc_err e;
    cr_assert_eq(open_task(data, v, o, &st, &e), 0, "%s", e.msg);
    return st;
}

static const rt_tensor *get(const rt_tensor_list *l, const char *name)
{
    const rt_tensor *t = rt_list_cfind(l, name);
    cr_assert(t && t->dtype == RT_I64, "%s missing or not I64", name);
    return t;
}

/* Rows [r0, r0 + n) of every tensor of l. */
static void rows_of(const rt_tensor_list *l, int64_t r0, int64_t n, rt_tensor_list *out)
{
    for (int i = 0; i < l->n; i++) {
        const rt_tensor *t = &l->t[i];
        int64_t shape[RT_MAX_RANK];
        memcpy(shape, t->shape, sizeof shape);
        shape[0] = n;
        size_t row = rt_nbytes(t) / (size_t)t->shape[0];
        cr_assert(rt_list_add(out, t->name, t->dtype, t->rank, shape,
                              (const char *)t->data + (size_t)r0 * row));
    }
}

/* ---- dynamic masking ----------------------------------------------------------------- */

Test(task_pretrain, dynamic_masking_changes_masks_and_keeps_labels)
{
    const char *dir = tu_tmpdir();
    const char *corpus = tu_path(dir, "corpus.txt");
    write_corpus(corpus, TOPICS, 12, 1, TOPICS);
    tx_vocab *v = corpus_vocab(NULL);
    opts o = {0};
    set_opt(&o, "max-seq", "32");
    void *st = must_open(corpus, v, &o);
    tk_task_heads h;
    tk_task_pretrain.heads(st, &h);
    cr_expect_eq(h.labels, 3u, "mlm and nsp");
    rt_tensor_list data;
    rt_list_init(&data);
    bc_err e;
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &data, &e), 0, "%s", e.msg);
    const rt_tensor *ids0 = get(&data, "input_ids");
    int64_t N = ids0->shape[0], S = ids0->shape[1], B = 16;
    cr_assert_eq(S, 32);
    cr_assert_geq(N, B);
    get(&data, "nsp_labels");
    /* The original rows: masked ids with their labels put back. */
    int64_t *orig = malloc((size_t)(B * S) * sizeof *orig);
    const int64_t *l0 = get(&data, "mlm_labels")->data;
    for (int64_t i = 0; i < B * S; i++)
        orig[i] = l0[i] != TK_PT_IGNORE ? l0[i] : ((const int64_t *)ids0->data)[i];
    int64_t *masked_at[2];
    for (int k = 0; k < 2; k++) {
        rt_tensor_list mb;
        rt_list_init(&mb);
        rows_of(&data, 0, B, &mb);
        cr_assert_eq(tk_task_pretrain.augment(st, &mb, 1000 + (uint64_t)k, &e), 0, "%s",
                     e.msg);
        const int64_t *x = get(&mb, "input_ids")->data, *y = get(&mb, "mlm_labels")->data;
        const int64_t *am = get(&mb, "attention_mask")->data;
        masked_at[k] = calloc((size_t)(B * S), sizeof(int64_t));
        int64_t chosen = 0, real = 0;
        for (int64_t i = 0; i < B * S; i++) {
            if (y[i] != TK_PT_IGNORE) {
                cr_expect_eq(y[i], orig[i], "a label is the original token");
                cr_expect(am[i], "no label on padding");
                masked_at[k][i] = 1;
                chosen++;
            } else {
                cr_expect_eq(x[i], orig[i], "a token not chosen is unchanged");
            }
            real += am[i] != 0;
        }
        cr_expect(chosen > 0.08 * (double)real && chosen < 0.25 * (double)real,
                  "%lld of %lld tokens chosen", (long long)chosen, (long long)real);
        rt_list_free(&mb);
    }
    int differ = 0;
    for (int64_t i = 0; i < B * S; i++)
        differ += masked_at[0][i] != masked_at[1][i];
    cr_expect_gt(differ, 10, "another seed, other masks");
    /* The same seed gives the same masks (a resumed run sees the same batches). */
    rt_tensor_list a, b;
    rt_list_init(&a);
    rt_list_init(&b);
    rows_of(&data, 0, B, &a);
    rows_of(&data, 0, B, &b);
    cr_assert_eq(tk_task_pretrain.augment(st, &a, 7, &e), 0, "%s", e.msg);
    cr_assert_eq(tk_task_pretrain.augment(st, &b, 7, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(get(&a, "input_ids")->data, get(&b, "input_ids")->data,
                        (size_t)(B * S) * sizeof(int64_t)),
                 0);
    rt_list_free(&a);
    rt_list_free(&b);
    free(masked_at[0]);
    free(masked_at[1]);
    free(orig);
    rt_list_free(&data);
    tk_task_pretrain.close(st);

    /* --dynamic-mask 0 leaves batches alone. */
    set_opt(&o, "dynamic-mask", "0");
    st = must_open(corpus, v, &o);
    rt_list_init(&data);
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &data, &e), 0, "%s", e.msg);
    rt_list_init(&a);
    rows_of(&data, 0, 4, &a);
    cr_assert_eq(tk_task_pretrain.augment(st, &a, 7, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(get(&a, "input_ids")->data, get(&data, "input_ids")->data,
                        (size_t)(4 * S) * sizeof(int64_t)),
                 0);
    rt_list_free(&a);
    rt_list_free(&data);
    tk_task_pretrain.close(st);
    tx_vocab_free(v);
}

/* ---- splits -------------------------------------------------------------------------- */

/* The topics whose words appear in the rows (their original tokens). */
static void topics_in(const rt_tensor_list *rows, int *seen)
{
    const rt_tensor *ids = get(rows, "input_ids");
    const int64_t *x = ids->data, *y = get(rows, "mlm_labels")->data;
    for (int t = 0; t < TOPICS; t++)
        seen[t] = 0;
    for (int64_t i = 0; i < rt_numel(ids); i++) {
        int t = topic_of(y[i] != TK_PT_IGNORE ? y[i] : x[i]);
        if (t >= 0)
            seen[t]++;
    }
}

Test(task_pretrain, holdout_keeps_documents_whole)
{
    const char *dir = tu_tmpdir();
    const char *corpus = tu_path(dir, "corpus.txt");
    write_corpus(corpus, TOPICS, 10, 2, TOPICS);
    tx_vocab *v = corpus_vocab(NULL);
    opts o = {0};
    set_opt(&o, "max-seq", "32");
    set_opt(&o, "holdout", "6");
    set_opt(&o, "dupe-factor", "2");
    void *st = must_open(corpus, v, &o);
    rt_tensor_list train, dev;
    rt_list_init(&train);
    rt_list_init(&dev);
    bc_err e;
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &train, &e), 0, "%s", e.msg);
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_DEV, &dev, &e), 0, "%s", e.msg);
    int seen_train[TOPICS], seen_dev[TOPICS];
    topics_in(&train, seen_train);
    topics_in(&dev, seen_dev);
    for (int t = 0; t < TOPICS; t++) {
        int held = t % 6 == 5; /* documents 5, 11, 17, 23 */
        cr_expect_eq(seen_dev[t] > 0, held, "topic %d in dev: %d", t, seen_dev[t]);
        cr_expect_eq(seen_train[t] > 0, !held, "topic %d in train: %d", t, seen_train[t]);
    }
    /* Two repetitions of 20 documents give about twice the rows of 4 held ones
     * five times over. */
    int64_t nt = get(&train, "input_ids")->shape[0], nd = get(&dev, "input_ids")->shape[0];
    cr_expect(nt > 6 * nd && nt < 14 * nd, "train %lld rows, dev %lld", (long long)nt,
              (long long)nd);
    rt_list_free(&train);
    rt_list_free(&dev);
    tk_task_pretrain.close(st);

    /* Too few documents for K: an error that says so. */
    set_opt(&o, "holdout", "40");
    st = must_open(corpus, v, &o);
    rt_list_init(&dev);
    cr_expect_neq(tk_task_pretrain.data(st, TK_SPLIT_DEV, &dev, &e), 0);
    cr_expect(strstr(e.msg, "holdout"), "%s", e.msg);
    rt_list_free(&dev);
    tk_task_pretrain.close(st);
    /* --eval-data with an explicit --holdout is refused; alone, it replaces it. */
    set_opt(&o, "holdout", "5");
    set_opt(&o, "eval-data", corpus);
    void *bad = NULL;
    cr_expect_neq(open_task(corpus, v, &o, &bad, &e), 0);
    cr_expect(strstr(e.msg, "not both"), "%s", e.msg);
    tx_vocab_free(v);
}

/* Makes a pretrain-data file of corpus (rows of max_seq, one repetition, seed 5), and
 * leaves its rows in rows. */
static void write_data_file(const char *corpus, const tx_vocab *v, int max_seq,
                            const char *file, rt_tensor_list *rows)
{
    bc_err e;
    const char *paths[1] = {corpus};
    tx_tok_opts tok = TX_TOK_OPTS_DEFAULT;
    tk_pt_corpus *c = tk_pt_corpus_load(paths, 1, v, &tok, NULL, NULL, &e);
    cr_assert_not_null(c, "%s", e.msg);
    tk_pt_opts po = TK_PT_OPTS_DEFAULT;
    po.max_seq = max_seq;
    po.dupe_factor = 1;
    rt_rng r;
    rt_rng_seed(&r, 5);
    rt_list_init(rows);
    cr_assert_eq(tk_pt_create(c, v, &po, &r, rows, NULL, NULL, NULL, &e), 0, "%s", e.msg);
    tk_pt_corpus_free(c);
    cr_assert_eq(rt_st_save(file, rows, &e), 0, "%s", e.msg);
}

/* Two lists hold the same tensors, byte for byte. */
static int same_rows(const rt_tensor_list *a, const rt_tensor_list *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const rt_tensor *t = rt_list_cfind(b, a->t[i].name);
        if (!t || rt_nbytes(t) != rt_nbytes(&a->t[i]) ||
            memcmp(t->data, a->t[i].data, rt_nbytes(t)))
            return 0;
    }
    return 1;
}

/* --stream-rows: every epoch is the next N rows of passes over the corpus (N spans
 * more than one pass here), made on the fly; an epoch asked again, or asked first by a
 * fresh task (a resumed run), gives the same rows; the held-out documents never reach
 * the training rows; a data file cannot be streamed. */
Test(task_pretrain, streaming_gives_each_epoch_its_rows_and_repeats_them)
{
    const char *dir = tu_tmpdir();
    const char *corpus = tu_path(dir, "corpus.txt");
    write_corpus(corpus, 12, 6, 5, 12); /* document d: topic d */
    tx_vocab *v = corpus_vocab(NULL);
    opts o = {0};
    set_opt(&o, "stream-rows", "60");
    set_opt(&o, "max-seq", "32");
    set_opt(&o, "holdout", "4"); /* documents 3, 7, 11 are dev */
    void *st = must_open(corpus, v, &o);
    char buf[32];
    tk_task_pretrain.option_value(st, 10, buf, sizeof buf);
    cr_expect_str_eq(buf, "60");
    bc_err e;
    rt_tensor_list ep[4], again, fresh;
    for (int i = 0; i < 4; i++)
        rt_list_init(&ep[i]);
    rt_list_init(&again);
    rt_list_init(&fresh);
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &ep[0], &e), 0, "%s", e.msg);
    for (int k = 1; k < 4; k++)
        cr_assert_eq(tk_task_pretrain.refill(st, k, &ep[k], &e), 0, "%s", e.msg);
    for (int k = 0; k < 4; k++) {
        const rt_tensor *ids = get(&ep[k], "input_ids"), *lab = get(&ep[k], "mlm_labels");
        const rt_tensor *nsp = get(&ep[k], "nsp_labels");
        cr_assert_eq(ids->shape[0], 60, "epoch %d", k);
        cr_assert_eq(ids->shape[1], 32);
        const int64_t *x = ids->data, *y = lab->data, *z = nsp->data;
        for (int64_t r = 0; r < 60; r++) {
            cr_assert_eq(x[r * 32], 2, "row %lld starts with [CLS]", (long long)r);
            cr_assert(z[r] == 0 || z[r] == 1);
            for (int64_t j = 0; j < 32; j++) {
                int64_t id = y[r * 32 + j] != TK_PT_IGNORE ? y[r * 32 + j] : x[r * 32 + j];
                int t = topic_of(id);
                cr_assert(t < 0 || t % 4 != 3, "epoch %d row %lld: a dev document's word",
                          k, (long long)r);
            }
        }
        if (k)
            cr_expect_not(same_rows(&ep[k], &ep[k - 1]), "epochs %d and %d", k - 1, k);
    }
    cr_assert_eq(tk_task_pretrain.refill(st, 2, &again, &e), 0, "%s", e.msg);
    cr_expect(same_rows(&again, &ep[2]), "epoch 2 asked again");
    tk_task_pretrain.close(st);
    st = must_open(corpus, v, &o);
    cr_assert_eq(tk_task_pretrain.refill(st, 3, &fresh, &e), -1, "refill before data");
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &fresh, &e), 0, "%s", e.msg);
    cr_expect(same_rows(&fresh, &ep[0]));
    rt_list_free(&fresh);
    rt_list_init(&fresh);
    cr_assert_eq(tk_task_pretrain.refill(st, 3, &fresh, &e), 0, "%s", e.msg);
    cr_expect(same_rows(&fresh, &ep[3]), "epoch 3 from a fresh task");
    tk_task_pretrain.close(st);
    for (int i = 0; i < 4; i++)
        rt_list_free(&ep[i]);
    rt_list_free(&again);
    rt_list_free(&fresh);

    /* A data file is not streamed. */
    const char *file = tu_path(dir, "pt.safetensors");
    rt_tensor_list rows;
    write_data_file(corpus, v, 32, file, &rows);
    rt_list_free(&rows);
    st = must_open(file, v, &o);
    rt_list_init(&rows);
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &rows, &e), -1);
    cr_expect(strstr(e.msg, "--stream-rows"), "%s", e.msg);
    rt_list_free(&rows);
    tk_task_pretrain.close(st);
    tx_vocab_free(v);
}

Test(task_pretrain, data_file_rows_are_split_by_row)
{
    const char *dir = tu_tmpdir();
    const char *corpus = tu_path(dir, "corpus.txt"), *file = tu_path(dir, "pt.safetensors");
    write_corpus(corpus, TOPICS, 8, 3, TOPICS);
    tx_vocab *v = corpus_vocab(NULL);
    bc_err e;
    rt_tensor_list rows;
    write_data_file(corpus, v, 24, file, &rows);
    int64_t N = get(&rows, "input_ids")->shape[0];
    cr_assert_geq(N, 8);

    opts o = {0};
    set_opt(&o, "holdout", "4");
    void *st = must_open(file, v, &o);
    rt_tensor_list train, dev;
    rt_list_init(&train);
    rt_list_init(&dev);
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &train, &e), 0, "%s", e.msg);
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_DEV, &dev, &e), 0, "%s", e.msg);
    int64_t nd = get(&dev, "input_ids")->shape[0];
    cr_expect_eq(nd, N / 4);
    cr_expect_eq(get(&train, "input_ids")->shape[0], N - N / 4);
    cr_expect_eq(get(&train, "input_ids")->shape[1], 24);
    /* Dev row i is row 4 i + 3 of the file. */
    for (int64_t i = 0; i < nd; i++)
        cr_expect_eq(
            memcmp((const int64_t *)get(&dev, "mlm_labels")->data + i * 24,
                   (const int64_t *)get(&rows, "mlm_labels")->data + (4 * i + 3) * 24,
                   24 * sizeof(int64_t)),
            0, "dev row %lld", (long long)i);
    char buf[64];
    tk_task_pretrain.option_value(st, 0, buf, sizeof buf);
    cr_expect_str_eq(buf, "24", "max-seq is the file's");
    rt_list_free(&train);
    rt_list_free(&dev);
    tk_task_pretrain.close(st);

    /* A file without nsp_labels is not pre-training data. */
    rt_list_remove(&rows, "nsp_labels");
    cr_assert_eq(rt_st_save(file, &rows, &e), 0, "%s", e.msg);
    st = must_open(file, v, &o);
    rt_list_init(&train);
    cr_expect_neq(tk_task_pretrain.data(st, TK_SPLIT_TRAIN, &train, &e), 0);
    cr_expect(strstr(e.msg, "nsp_labels"), "%s", e.msg);
    rt_list_free(&train);
    tk_task_pretrain.close(st);
    rt_list_free(&rows);
    tx_vocab_free(v);
}

/* ---- evaluation and prediction ----------------------------------------------------------
 */

/* A model whose every logit is 0. */
static int zero_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                        bc_err *e)
{
    (void)e;
    int64_t V = *(const int64_t *)ctx;
    const rt_tensor *in = rt_list_cfind(batch, "input_ids");
    int64_t sm[3] = {in->shape[0], in->shape[1], V}, sn[2] = {in->shape[0], 2};
    rt_list_add(out, "mlm_logits", RT_F32, 3, sm, NULL);
    rt_list_add(out, "nsp_logits", RT_F32, 2, sn, NULL);
    return 0;
}

/* A model sure of one word everywhere (id in ctx), and that B follows A. */
static int sure_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                        bc_err *e)
{
    const int64_t *c = ctx; /* {V, id} */
    if (zero_forward(ctx, batch, out, e))
        return -1;
    rt_tensor *m = rt_list_find(out, "mlm_logits");
    for (int64_t i = 0; i < m->shape[0] * m->shape[1]; i++)
        ((float *)m->data)[i * c[0] + c[1]] = 20;
    ((float *)rt_list_find(out, "nsp_logits")->data)[0] = 3;
    return 0;
}

Test(task_pretrain, dev_metrics_of_a_model_without_an_opinion)
{
    const char *dir = tu_tmpdir();
    const char *corpus = tu_path(dir, "corpus.txt");
    write_corpus(corpus, TOPICS, 10, 4, TOPICS);
    tx_vocab *v = corpus_vocab(NULL);
    opts o = {0};
    set_opt(&o, "max-seq", "32");
    set_opt(&o, "holdout", "4");
    void *st = must_open(corpus, v, &o);
    int64_t V = tx_vocab_size(v);
    tk_metrics m;
    bc_err e;
    cr_assert_eq(
        tk_task_pretrain.evaluate(st, TK_SPLIT_DEV, 5, zero_forward, &V, NULL, &m, &e), 0,
        "%s", e.msg);
    /* Uniform logits: the loss is log V, the likelihood 1 / V; argmax is id 0 ([PAD]),
     * never a label; NSP predicts IsNext (ties go to class 0), right on IsNext rows. */
    cr_expect_float_eq(tk_metrics_get(&m, "mlm_loss"), log((double)V), 1e-9);
    cr_expect_float_eq(tk_metrics_get(&m, "mlm_likelihood"), 1.0 / (double)V, 1e-9);
    cr_expect_float_eq(tk_metrics_get(&m, "nsp_loss"), log(2.0), 1e-9);
    cr_expect_eq(tk_metrics_get(&m, "mlm_accuracy"), 0);
    rt_tensor_list dev;
    rt_list_init(&dev);
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_DEV, &dev, &e), 0, "%s", e.msg);
    const rt_tensor *nsp = get(&dev, "nsp_labels");
    int64_t is_next = 0;
    for (int64_t i = 0; i < nsp->shape[0]; i++)
        is_next += ((const int64_t *)nsp->data)[i] == 0;
    cr_expect_eq(m.examples, nsp->shape[0]);
    cr_expect_float_eq(tk_metrics_get(&m, "nsp_accuracy"),
                       (double)is_next / (double)nsp->shape[0], 1e-12);
    cr_expect(is_next > 0 && is_next < nsp->shape[0], "both kinds of pairs");
    rt_list_free(&dev);
    cr_expect_leq(tk_pt_eval_rows(64, 128, 30522), 17, "mlm_logits kept under 256 MiB");
    cr_expect_eq(tk_pt_eval_rows(64, 32, 100), 64);
    cr_expect_eq(tk_pt_eval_rows(4, 1 << 20, 1 << 20), 1);

    /* predict: each [MASK] filled with the model's word, and IsNext for a pair. */
    int64_t ctx[2] = {V, 5 + NCOMMON + 3}; /* "kad" */
    json_t *p = NULL;
    cr_assert_eq(tk_task_pretrain.predict(st, "kaa [MASK] kab [MASK] .", "the kac",
                                          sure_forward, ctx, &p, &e),
                 0, "%s", e.msg);
    cr_expect_str_eq(json_string_value(json_object_get(p, "filled")), "kaa kad kab kad .");
    json_t *masks = json_object_get(p, "masks");
    cr_assert_eq(json_array_size(masks), 2);
    json_t *best =
        json_array_get(json_object_get(json_array_get(masks, 0), "predictions"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(best, "token")), "kad");
    cr_expect_gt(json_real_value(json_object_get(best, "probability")), 0.99);
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(masks, 1), "position")),
                 4);
    cr_expect_gt(json_real_value(json_object_get(p, "is_next_probability")), 0.9);
    json_decref(p);
    tk_task_pretrain.close(st);
    tx_vocab_free(v);
}

/* ---- end to end ------------------------------------------------------------------------
 */

/* H=64, two layers, no dropout: NSP takes off after about ten epochs (one layer's
 * [CLS] learns it far less reliably). */
static const char tiny_xml[] =
    "<bert name=\"pt-test\">\n"
    "  <encoder vocab-size=\"100\" hidden-size=\"64\" layers=\"2\" heads=\"2\"\n"
    "           intermediate-size=\"128\" max-position=\"32\" hidden-dropout=\"0\"\n"
    "           attention-dropout=\"0\"/>\n"
    "</bert>\n";

/* The values of one column of metrics.csv. */
static int column(const char *csv, const char *name, double *v, int max)
{
    char *text = strdup(csv), *save = NULL;
    int col = -1, n = 0, row = 0;
    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        int k = 0;
        for (char *p = line, *f; (f = strsep(&p, ",")); k++) {
            if (row == 0 && !strcmp(f, name))
                col = k;
            else if (row > 0 && k == col && n < max)
                v[n++] = atof(f);
        }
        row++;
    }
    free(text);
    return n;
}

static void write_intent_slot(const char *dir)
{
    static const char *const splits[] = {"train", "dev", "test"};
    cr_assert_eq(mkdir(dir, 0777), 0);
    for (int s = 0; s < 3; s++) {
        char sub[1100];
        snprintf(sub, sizeof sub, "%s/%s", dir, splits[s]);
        mkdir(sub, 0777);
        cr_assert_eq(tu_write_file(tu_path(sub, "seq.in"), "the kaa kab\nkba is kbb\n"), 0);
        cr_assert_eq(tu_write_file(tu_path(sub, "seq.out"), "O B-x I-x\nB-y O B-y\n"), 0);
        cr_assert_eq(tu_write_file(tu_path(sub, "label"), "a\nb\n"), 0);
    }
}

Test(task_pretrain, mlm_loss_falls_nsp_rises_and_the_checkpoint_fine_tunes, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    char d[1024];
    snprintf(d, sizeof d, "%s", dir);
    write_corpus(tu_path(d, "corpus.txt"), 60, 16, 6, 12);
    tx_vocab_free(corpus_vocab(tu_path(d, "vocab.txt")));
    cr_assert_eq(tu_write_file(tu_path(d, "model.xml"), tiny_xml), 0);
    char *out = NULL;
    const char *train = "train %s/model.xml --task pretrain --data %s/corpus.txt --vocab "
                        "%s/vocab.txt -o %s/pt --max-seq 32 --dupe-factor 2 --holdout 5 "
                        "--epochs 30 --batch-size 16 --lr 3e-3 --threads 1 --quiet "
                        "--backend %s";
    const char *backend = "jit";
    if (tu_bertcc(&out, train, d, d, d, d, "jit")) {
        cr_log_warn("the JIT backend could not train (%s); using the reference interpreter",
                    out ? out : "?");
        free(out);
        char rm[1100];
        snprintf(rm, sizeof rm, "rm -rf %s/pt", d);
        tu_run(rm, NULL);
        backend = "ref";
        cr_assert_eq(tu_bertcc(&out, train, d, d, d, d, "ref"), 0, "%s", out);
    }
    free(out);
    char pt[1100];
    snprintf(pt, sizeof pt, "%s/pt", d);
    char *csv = tu_read_file(tu_path(pt, "metrics.csv"), NULL);
    cr_assert_not_null(csv);
    /* Held out: 12 documents (every 5th), about a quarter of their rows IsNext, so an
     * untrained model (always NotNext) starts near 0.73. */
    double loss[64], nsp[64], acc[64];
    int n = column(csv, "mlm_loss", loss, 64);
    cr_assert_eq(n, 30, "%s", csv);
    cr_assert_eq(column(csv, "nsp_accuracy", nsp, 64), 30);
    cr_assert_eq(column(csv, "mlm_accuracy", acc, 64), 30);
    cr_expect_lt(loss[n - 1], loss[0] - 1.5, "dev MLM loss falls:\n%s", csv);
    cr_expect_lt(loss[n - 1], 0.5 * log(5.0 + NCOMMON + TOPICS * TOPIC_WORDS),
                 "far better than uniform:\n%s", csv);
    cr_expect_gt(acc[n - 1], acc[0] + 0.05, "dev MLM accuracy rises:\n%s", csv);
    cr_expect_geq(nsp[n - 1], nsp[0] + 0.05, "dev NSP accuracy rises:\n%s", csv);
    cr_expect_geq(nsp[n - 1], 0.78, "%s", csv);
    free(csv);

    /* eval on dev agrees with the run's last line (best weights: the lowest loss). */
    cr_assert_eq(
        tu_bertcc(&out,
                  "eval --model %s --data %s/corpus.txt --split dev --json --backend %s "
                  "2>/dev/null",
                  pt, d, backend),
        0, "%s", out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", out);
    static const char *const keys[] = {"mlm_accuracy", "nsp_accuracy", "mlm_likelihood",
                                       "mlm_loss", "nsp_loss"};
    for (int i = 0; i < 5; i++)
        cr_expect(json_is_number(json_object_get(j, keys[i])), "%s: %s", keys[i], out);
    json_decref(j);
    free(out);

    /* The checkpoint fine-tunes: the intent and slot heads are new, MLM and NSP left. */
    char is[1100];
    snprintf(is, sizeof is, "%s/is", d);
    write_intent_slot(is);
    cr_assert_eq(tu_bertcc(&out,
                           "train %s/model.xml --task intent-slot --data %s/is --vocab "
                           "%s/vocab.txt --init %s/weights.safetensors -o %s/ft --epochs 2 "
                           "--batch-size 2 --threads 1 --backend %s",
                           d, d, d, pt, d, backend),
                 0, "%s", out);
    cr_expect(strstr(out, "initialized 'intent.classifier.weight'"), "%s", out);
    cr_expect(strstr(out, "initialized 'slot.classifier.bias'"), "%s", out);
    cr_expect(strstr(out, "ignored checkpoint tensor 'cls.seq_relationship.weight'"), "%s",
              out);
    cr_expect_null(strstr(out, "initialized 'bert."),
                   "the encoder comes from pre-training");
    free(out);
    char ft[1100];
    snprintf(ft, sizeof ft, "%s/ft", d);
    cr_expect_eq(access(tu_path(ft, "best.safetensors"), R_OK), 0);
}

/* The driver streams: `train --stream-rows` trains epoch after epoch on new rows. */
Test(task_pretrain, cli_streams_a_corpus, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    char d[1024];
    snprintf(d, sizeof d, "%s", dir);
    write_corpus(tu_path(d, "corpus.txt"), 20, 8, 6, 12);
    tx_vocab_free(corpus_vocab(tu_path(d, "vocab.txt")));
    cr_assert_eq(tu_write_file(tu_path(d, "model.xml"), tiny_xml), 0);
    char *out = NULL;
    cr_assert_eq(
        tu_bertcc(&out,
                  "train %s/model.xml --task pretrain --data %s/corpus.txt --vocab "
                  "%s/vocab.txt -o %s/pt --max-seq 32 --stream-rows 48 --epochs 3 "
                  "--batch-size 16 --threads 1",
                  d, d, d, d),
        0, "%s", out);
    cr_expect(strstr(out, "streaming") && strstr(out, "48 rows of 32 tokens per epoch"),
              "%s", out);
    cr_expect(strstr(out, "48 rows of 32 tokens, micro-batches of 16 rows, 1 per update, 9 "
                          "updates"),
              "%s", out);
    free(out);
    char pt[1100];
    snprintf(pt, sizeof pt, "%s/pt", d);
    char *csv = tu_read_file(tu_path(pt, "metrics.csv"), NULL);
    cr_assert_not_null(csv);
    double loss[8];
    cr_expect_eq(column(csv, "mlm_loss", loss, 8), 3, "%s", csv);
    free(csv);
    char *opt = tu_read_file(tu_path(pt, "options.json"), NULL);
    cr_assert_not_null(opt);
    cr_expect(strstr(opt, "\"stream-rows\": \"48\""), "%s", opt);
    free(opt);
}

/* The training graph gathers the MLM head's rows for rows made here (a corpus: at most
 * --max-predictions labels), not for a data file's rows, nor with --mlm-gather 0. */
Test(task_pretrain, mlm_gather_rows_follow_the_data_and_the_option)
{
    const char *dir = tu_tmpdir();
    const char *corpus = tu_path(dir, "corpus.txt"), *file = tu_path(dir, "pt.safetensors");
    write_corpus(corpus, 6, 4, 5, 6);
    tx_vocab *v = corpus_vocab(NULL);
    rt_tensor_list rows;
    write_data_file(corpus, v, 24, file, &rows);
    rt_list_free(&rows);
    static const struct {
        const char *data, *gather, *maxp;
        int64_t want;
    } cases[] = {
        {"corpus", NULL, NULL, 20}, {"corpus", NULL, "7", 7}, {"corpus", "0", NULL, 0},
        {"file", NULL, NULL, 0},    {"file", "1", NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        opts o = {0};
        if (cases[i].gather)
            set_opt(&o, "mlm-gather", cases[i].gather);
        if (cases[i].maxp)
            set_opt(&o, "max-predictions", cases[i].maxp);
        void *st = must_open(!strcmp(cases[i].data, "file") ? file : corpus, v, &o);
        tk_task_heads h;
        tk_task_pretrain.heads(st, &h);
        cr_expect_eq(h.mlm_predictions, cases[i].want, "case %zu: %lld", i,
                     (long long)h.mlm_predictions);
        tk_task_pretrain.close(st);
    }
    tx_vocab_free(v);
}
