/* test_eval_shard.c: sharded evaluation (tk_shard in tasks/task.h) in the four tasks.
 * Each task evaluates a split once as one process, then as N = 1, 2 and 3 shards of one
 * job simulated in this process: every rank runs evaluate in a thread of its own (with a
 * task state of its own), and merge is a collective over the threads that ORs the
 * ranks' buffers byte by byte and gives every rank the result. Every rank must report
 * the one-process scores bit for bit (and the same notes and details), having run
 * forward on exactly its own batches (k % N == rank), in order. The batch sizes make
 * the last batch partial and the batch count divisible by neither 2 nor 3, and the
 * forward passes answer from their inputs, so that a batch lost or merged wrong
 * changes the scores. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/rng.h"
#include "tasks/task_classify.h"
#include "tasks/task_intent_slot.h"
#include "tasks/task_pretrain.h"
#include "tasks/task_qa.h"
#include "util.h"

#define MAX_RANKS 3
#define MAX_BATCHES 64

/* ---- notes and counted forward passes --------------------------------------------- */

/* A hash of a batch's input_ids and attention_mask (shapes included), to tell batches
 * apart. */
static uint64_t batch_sig(const rt_tensor_list *batch)
{
    static const char *const names[] = {"input_ids", "attention_mask"};
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 2; i++) {
        const rt_tensor *t = rt_list_cfind(batch, names[i]);
        if (!t)
            continue;
        const unsigned char *p = (const unsigned char *)t->shape;
        for (size_t k = 0; k < sizeof t->shape; k++)
            h = (h ^ p[k]) * 1099511628211ULL;
        p = t->data;
        for (size_t k = 0; k < rt_nbytes(t); k++)
            h = (h ^ p[k]) * 1099511628211ULL;
    }
    return h;
}

/* Wraps a forward pass: counts its calls and keeps each batch's hash. Runs in the
 * rank's thread, so nothing here asserts. */
typedef struct counted {
    tk_forward_fn fwd;
    void *ctx;
    int calls;
    uint64_t sig[MAX_BATCHES];
} counted;

static int counted_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                           bc_err *e)
{
    counted *c = ctx;
    if (c->calls < MAX_BATCHES)
        c->sig[c->calls] = batch_sig(batch);
    c->calls++;
    return c->fwd(c->ctx, batch, out, e);
}

/* ---- a job of N ranks in one process ------------------------------------------------
 */

/* A barrier that a rank can leave (when its evaluate returns): a rank waiting for one
 * that left is told so, rather than waiting for ever (a rank that merges fewer times
 * than the others fails the test instead of hanging it). */
typedef struct group {
    int n, arrived, left;
    unsigned gen;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *buf[MAX_RANKS];
    size_t bytes[MAX_RANKS];
} group;

static int group_wait(group *g)
{
    pthread_mutex_lock(&g->mu);
    unsigned gen = g->gen;
    int rc = 0;
    if (++g->arrived == g->n) {
        g->arrived = 0;
        g->gen++;
        pthread_cond_broadcast(&g->cv);
    } else {
        while (gen == g->gen && !g->left)
            pthread_cond_wait(&g->cv, &g->mu);
        rc = gen == g->gen ? -1 : 0;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static void group_leave(group *g)
{
    pthread_mutex_lock(&g->mu);
    g->left++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* One rank: its task state, forward pass and what its evaluate gave. */
typedef struct rank {
    group *g;
    int rank, merges;
    const tk_task_ops *ops;
    void *state;
    tk_split split;
    int batch;
    counted fc;
    tu_notes nt;
    tk_shard shard;
    tk_metrics m;
    bc_err e;
    int rc;
} rank;

/* The collective: every rank's buffer becomes the OR of all of them. */
static int sim_merge(void *ctx, void *buf, size_t bytes, bc_err *e)
{
    rank *r = ctx;
    group *g = r->g;
    r->merges++;
    g->buf[r->rank] = buf;
    g->bytes[r->rank] = bytes;
    if (group_wait(g))
        return bc_errf(e, "rank %d, merge %d: another rank left the job", r->rank,
                       r->merges);
    int same = 1;
    for (int k = 0; k < g->n; k++)
        same &= g->bytes[k] == bytes;
    unsigned char *acc = calloc(bytes, 1);
    for (int k = 0; acc && same && k < g->n; k++)
        for (size_t i = 0; i < bytes; i++)
            acc[i] |= ((const unsigned char *)g->buf[k])[i];
    int rc = group_wait(g); /* everyone has read every buffer */
    if (!rc && acc && same)
        memcpy(buf, acc, bytes);
    free(acc);
    if (rc)
        return bc_errf(e, "rank %d, merge %d: another rank left the job", r->rank,
                       r->merges);
    if (!same)
        return bc_errf(e, "rank %d, merge %d: the ranks merge buffers of different sizes",
                       r->rank, r->merges);
    return acc ? 0 : bc_errf(e, "out of memory");
}

static void *rank_main(void *p)
{
    rank *r = p;
    r->rc = r->ops->evaluate(r->state, r->split, r->batch, counted_forward, &r->fc,
                             &r->shard, &r->m, &r->e);
    group_leave(r->g);
    return NULL;
}

/* ---- the check ------------------------------------------------------------------------
 */

/* How a task is opened for a test: open(arg, notes) returns a fresh state whose notes go
 * to nt. */
typedef struct task_case {
    const tk_task_ops *ops;
    void *(*open)(const void *arg, tu_notes *nt);
    const void *arg;
    tk_split split;
    int batch;  /* rows per batch given to evaluate */
    int rows;   /* rows per forward pass (the batch size, or pretrain's smaller one) */
    int n_rows; /* rows of the split */
    tk_forward_fn fwd;
    void *fctx; /* shared by the ranks: read only */
} task_case;

/* A batch size for n rows whose last batch is partial and whose batch count (4 or
 * more) neither 2 nor 3 divides. */
static int pick_batch(int n)
{
    for (int b = 2; b < n; b++) {
        int nb = (n + b - 1) / b;
        if (n % b && nb >= 4 && nb % 2 && nb % 3 && nb <= MAX_BATCHES)
            return b;
    }
    cr_assert_fail("no batch size for %d rows", n);
    return 0;
}

static void expect_same_metrics(const tk_metrics *a, const tk_metrics *b, const char *what)
{
    cr_expect_eq(a->n, b->n, "%s: %d scores, not %d", what, a->n, b->n);
    cr_expect_eq(a->examples, b->examples, "%s: %lld examples, not %lld", what,
                 (long long)a->examples, (long long)b->examples);
    for (int i = 0; i < a->n && i < b->n; i++) {
        cr_expect_str_eq(a->name[i], b->name[i], "%s", what);
        cr_expect(a->value[i] == b->value[i], "%s: %s %.17g, one process %.17g", what,
                  a->name[i], a->value[i], b->value[i]);
    }
}

/* Evaluates tc as one process and as 1, 2 and 3 shards; the one-process scores go to
 * *ref. */
static void check_shards(const task_case *tc, tk_metrics *ref)
{
    int nb = (tc->n_rows + tc->rows - 1) / tc->rows;
    cr_assert(tc->n_rows % tc->rows && nb % 2 && nb % 3 && nb >= 4 && nb <= MAX_BATCHES,
              "%s: %d rows in batches of %d", tc->ops->name, tc->n_rows, tc->rows);

    tu_notes nt0 = {0};
    void *st = tc->open(tc->arg, &nt0);
    counted c0 = {tc->fwd, tc->fctx, 0, {0}};
    bc_err e;
    cr_assert_eq(
        tc->ops->evaluate(st, tc->split, tc->batch, counted_forward, &c0, NULL, ref, &e), 0,
        "%s: %s", tc->ops->name, e.msg);
    cr_assert_eq(c0.calls, nb, "%s: %d forward passes, expected %d", tc->ops->name,
                 c0.calls, nb);
    json_t *details = tc->ops->details ? tc->ops->details(st) : NULL;
    tc->ops->close(st);

    for (int N = 1; N <= MAX_RANKS; N++) {
        group g = {.n = N};
        pthread_mutex_init(&g.mu, NULL);
        pthread_cond_init(&g.cv, NULL);
        rank r[MAX_RANKS];
        pthread_t th[MAX_RANKS];
        memset(r, 0, sizeof r);
        for (int k = 0; k < N; k++) {
            r[k] = (rank){.g = &g,
                          .rank = k,
                          .ops = tc->ops,
                          .split = tc->split,
                          .batch = tc->batch,
                          .fc = {tc->fwd, tc->fctx, 0, {0}}};
            r[k].state = tc->open(tc->arg, &r[k].nt);
            r[k].shard = (tk_shard){k, N, sim_merge, &r[k]};
        }
        for (int k = 0; k < N; k++)
            cr_assert_eq(pthread_create(&th[k], NULL, rank_main, &r[k]), 0);
        for (int k = 0; k < N; k++)
            pthread_join(th[k], NULL);
        for (int k = 0; k < N; k++) {
            char what[128];
            snprintf(what, sizeof what, "%s, rank %d of %d", tc->ops->name, k, N);
            cr_expect_eq(r[k].rc, 0, "%s: %s", what, r[k].e.msg);
            if (r[k].rc)
                continue;
            expect_same_metrics(&r[k].m, ref, what);
            cr_expect_eq(r[k].nt.n, nt0.n, "%s: %d notes, one process %d", what, r[k].nt.n,
                         nt0.n);
            cr_expect_str_eq(r[k].nt.last, nt0.last, "%s", what);
            /* Forward ran on batches k, k + N, ... and on nothing else. */
            int mine = 0;
            for (int b = k; b < nb; b += N)
                cr_expect(mine < r[k].fc.calls && r[k].fc.sig[mine++] == c0.sig[b],
                          "%s: forward pass %d is not batch %d", what, mine - 1, b);
            cr_expect_eq(r[k].fc.calls, mine, "%s: %d forward passes, expected %d", what,
                         r[k].fc.calls, mine);
            cr_expect_eq(r[k].merges, r[0].merges, "%s: %d merges, rank 0 %d", what,
                         r[k].merges, r[0].merges);
            cr_expect(N == 1 ? r[k].merges == 0 : r[k].merges > 0, "%s: %d merges", what,
                      r[k].merges);
            if (details) {
                json_t *d = tc->ops->details(r[k].state);
                cr_expect(json_equal(d, details), "%s: the details differ", what);
                json_decref(d);
            }
        }
        for (int k = 0; k < N; k++)
            tc->ops->close(r[k].state);
        pthread_mutex_destroy(&g.mu);
        pthread_cond_destroy(&g.cv);
    }
    json_decref(details);
}

/* Option values by name (NULL: the default). */
typedef struct opts {
    const char *v[16];
} opts;

static void set_opt(const tk_task_ops *t, opts *o, const char *name, const char *value)
{
    for (int i = 0; t->options[i].name; i++)
        if (!strcmp(t->options[i].name, name)) {
            o->v[i] = value;
            return;
        }
    cr_assert_fail("%s has no option %s", t->name, name);
}

/* Task t opened on data with vocabulary v, tokenizer options tok, options o (NULL: the
 * defaults) and the model's max_position; its notes go to nt. */
static void *open_with(const tk_task_ops *t, const char *data, const tx_vocab *v,
                       tx_tok_opts tok, const opts *o, int64_t max_position, tu_notes *nt)
{
    tk_task_config cfg = {.data = data,
                          .vocab = v,
                          .tok = tok,
                          .opt = o ? o->v : NULL,
                          .max_position = max_position,
                          .note = tu_note,
                          .note_ctx = nt};
    void *st = NULL;
    bc_err e;
    cr_assert_eq(t->open(&cfg, &st, &e), 0, "%s: %s", t->name, e.msg);
    return st;
}

/* The batch's input_ids [B, S] for an oracle forward pass named who. */
static const rt_tensor *batch_ids(const rt_tensor_list *batch, const char *who, bc_err *e)
{
    const rt_tensor *ids = rt_list_cfind(batch, "input_ids");
    if (!ids || ids->rank != 2)
        bc_errf(e, "%s: no input_ids [B, S]", who);
    return ids && ids->rank == 2 ? ids : NULL;
}

/* ---- classify -------------------------------------------------------------------------
 */

static const char *const cls_toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                       "x",     "y",     "z",     "w"};

/* 13 examples; with --max-seq 6 (4 tokens) three are truncated, in different
 * batches. */
static const char cls_tsv[] = "a\tx y\n"
                              "a\tx x y z w\n"
                              "b\ty\n"
                              "c\tz w\n"
                              "b\ty y x\n"
                              "a\tw x\n"
                              "c\tz z z z z z\n"
                              "b\tx y\n"
                              "c\tz\n"
                              "a\tx w w\n"
                              "b\ty z w x y\n"
                              "c\tw z\n"
                              "a\tx\n";

typedef struct cls_case {
    const char *path;
    const tx_vocab *v;
} cls_case;

static void *cls_open(const void *arg, tu_notes *nt)
{
    const cls_case *c = arg;
    opts o = {0};
    set_opt(&tk_task_classify, &o, "max-seq", "6");
    return open_with(&tk_task_classify, c->path, c->v, TX_TOK_OPTS_DEFAULT, &o, 64, nt);
}

/* Classes UNK a b c: the first token names the class (x a, y b, z c, w a), with a
 * little of the row's ids on every logit. */
static int cls_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                       bc_err *e)
{
    (void)ctx;
    const rt_tensor *ids = batch_ids(batch, "cls_forward", e);
    if (!ids)
        return -1;
    int64_t B = ids->shape[0], S = ids->shape[1], C = 4, shape[2] = {B, C};
    rt_tensor *t = rt_list_add(out, "intent_logits", RT_F32, 2, shape, NULL);
    if (!t)
        return bc_errf(e, "out of memory");
    const int64_t *x = ids->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t sum = 0;
        for (int64_t s = 0; s < S; s++)
            sum += x[b * S + s];
        float *z = (float *)t->data + b * C;
        for (int64_t c = 0; c < C; c++)
            z[c] = 0.1f * (float)((sum + 3 * c) % 5);
        z[1 + (x[b * S + 1] - 5) % 3] += 2;
    }
    return 0;
}

Test(eval_shard, classify_shards_score_as_one_process, .timeout = 60)
{
    bc_err e;
    tx_vocab *v = tx_vocab_from_list(cls_toks, 9, "cls-vocab", &e);
    cr_assert_not_null(v, "%s", e.msg);
    char path[600];
    snprintf(path, sizeof path, "%s/cls.tsv", tu_tmpdir());
    cr_assert_eq(tu_write_file(path, cls_tsv), 0);
    cls_case cc = {path, v};
    int b = pick_batch(13);
    task_case tc = {&tk_task_classify, cls_open, &cc, TK_SPLIT_TRAIN, b, b, 13,
                    cls_forward,       NULL};
    tk_metrics m;
    check_shards(&tc, &m);
    /* Wrong on rows 7 and 11 (x y labelled b, w z labelled c): 11 of 13. */
    cr_expect_float_eq(tk_metrics_get(&m, "accuracy"), 11.0 / 13, 1e-12);
    cr_expect_eq(m.examples, 13);
    tx_vocab_free(v);
}

/* ---- intent and slots ---------------------------------------------------------------
 */

static const char *const is_toks[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "아이", "##유", "노래", "틀어", "##줘",
    "그만",  "play",  "some",  "jazz",  "stop",   "new",  "york", "to",   "fly",  "##ing"};

static int is_tok(const char *t)
{
    for (int i = 0; i < (int)(sizeof is_toks / sizeof *is_toks); i++)
        if (!strcmp(is_toks[i], t))
            return i;
    return -1;
}

/* 13 sentences; with --max-seq 6 (4 tokens) sentences 5, 7 and 10 lose words. */
static const char is_in[] = "play some jazz\n"
                            "play jazz\n"
                            "stop\n"
                            "fly to new york\n"
                            "fly to york\n"
                            "play some jazz to new york\n"
                            "stop jazz\n"
                            "fly new york new york\n"
                            "play jazz jazz\n"
                            "stop some\n"
                            "fly to new york flying\n"
                            "play\n"
                            "to new york\n";
static const char is_out[] = "O O B-genre\n"
                             "O B-genre\n"
                             "O\n"
                             "O O B-city I-city\n"
                             "O O B-city\n"
                             "O O B-genre O B-city I-city\n"
                             "O B-genre\n"
                             "O B-city I-city B-city I-city\n"
                             "O B-genre B-genre\n"
                             "O O\n"
                             "O O B-city I-city O\n"
                             "O\n"
                             "O B-city I-city\n";
static const char is_label[] =
    "play\nplay\nstop\nfly\nfly\nplay\nstop\nfly\nplay\nstop\nfly\n"
    "play\nfly\n";

typedef struct is_case {
    const char *root;
    const tx_vocab *v;
} is_case;

static void *is_open(const void *arg, tu_notes *nt)
{
    const is_case *c = arg;
    opts o = {0};
    set_opt(&tk_task_intent_slot, &o, "max-seq", "6");
    return open_with(&tk_task_intent_slot, c->root, c->v, TX_TOK_OPTS_DEFAULT, &o, 512, nt);
}

/* Intents UNK fly play stop from the first token; slots UNK O B-city B-genre I-city:
 * jazz B-genre, new B-city, york I-city, and logits from the ids everywhere. */
static int is_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                      bc_err *e)
{
    (void)ctx;
    const rt_tensor *ids = batch_ids(batch, "is_forward", e);
    if (!ids)
        return -1;
    int64_t B = ids->shape[0], S = ids->shape[1], C = 4, L = 5;
    int64_t ishape[2] = {B, C}, sshape[3] = {B, S, L};
    rt_tensor *il = rt_list_add(out, "intent_logits", RT_F32, 2, ishape, NULL);
    rt_tensor *sl = rt_list_add(out, "slot_logits", RT_F32, 3, sshape, NULL);
    if (!il || !sl)
        return bc_errf(e, "out of memory");
    const int64_t *x = ids->data;
    float *li = il->data, *ls = sl->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t first = x[b * S + 1];
        for (int64_t c = 0; c < C; c++)
            li[b * C + c] = 0.1f * (float)((first * 7 + c) % 4);
        li[b * C + (first == is_tok("fly") ? 1 : first == is_tok("stop") ? 3 : 2)] += 2;
        for (int64_t s = 0; s < S; s++) {
            int64_t t = x[b * S + s];
            float *z = ls + (b * S + s) * L;
            for (int64_t l = 0; l < L; l++)
                z[l] = 0.2f * (float)((t * 5 + l * 3 + s) % 7);
            z[t == is_tok("jazz")   ? 3
              : t == is_tok("new")  ? 2
              : t == is_tok("york") ? 4
                                    : 1] += 3;
        }
    }
    return 0;
}

static void is_split(const char *root, const char *split)
{
    char d[1024];
    snprintf(d, sizeof d, "%s/%s", root, split);
    mkdir(d, 0777);
    cr_assert_eq(tu_write_file(tu_path(d, "seq.in"), is_in), 0);
    cr_assert_eq(tu_write_file(tu_path(d, "seq.out"), is_out), 0);
    cr_assert_eq(tu_write_file(tu_path(d, "label"), is_label), 0);
}

Test(eval_shard, intent_slot_shards_score_as_one_process, .timeout = 60)
{
    bc_err e;
    tx_vocab *v = tx_vocab_from_list(is_toks, (int)(sizeof is_toks / sizeof *is_toks),
                                     "is-vocab", &e);
    cr_assert_not_null(v, "%s", e.msg);
    char root[600];
    snprintf(root, sizeof root, "%s", tu_tmpdir());
    is_split(root, "train");
    is_case ic = {root, v};
    int b = pick_batch(13);
    task_case tc = {&tk_task_intent_slot, is_open, &ic, TK_SPLIT_TRAIN, b, b, 13,
                    is_forward,           NULL};
    tk_metrics m;
    check_shards(&tc, &m);
    /* Every intent but the last right (its first word is not the intent's); the tags
     * of the words cut off are missed, so not every frame is. */
    cr_expect_float_eq(tk_metrics_get(&m, "intent_accuracy"), 12.0 / 13, 1e-12);
    double fa = tk_metrics_get(&m, "frame_accuracy"), f1 = tk_metrics_get(&m, "slot_f1");
    cr_expect(fa > 0 && fa < 1, "frame accuracy %g", fa);
    cr_expect(f1 > 0 && f1 < 1, "slot f1 %g", f1);
    tx_vocab_free(v);
}

/* ---- QA -------------------------------------------------------------------------------
 */

#define QA_FIX "tests/fixtures/qa_task/"

typedef struct qa_case {
    const tx_vocab *v;
    char data[600];
    opts o;
} qa_case;

static void *qa_open(const void *arg, tu_notes *nt)
{
    const qa_case *c = arg;
    return open_with(&tk_task_qa, c->data, c->v, (tx_tok_opts){0, -1}, &c->o, 128, nt);
}

/* Knows the answer of two rows in three (found among the split's rows by input_ids:
 * logits of 10 on its start and end); every logit also has a little of the ids. */
typedef struct qa_oracle {
    rt_tensor_list rows;
} qa_oracle;

static int qa_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                      bc_err *e)
{
    const qa_oracle *o = ctx;
    const rt_tensor *in = rt_list_cfind(batch, "input_ids");
    const rt_tensor *all = rt_list_cfind(&o->rows, "input_ids");
    const int64_t *sp = rt_list_cfind(&o->rows, "start_positions")->data;
    const int64_t *ep = rt_list_cfind(&o->rows, "end_positions")->data;
    int64_t B = in->shape[0], S = in->shape[1];
    int64_t shape[2] = {B, S};
    rt_tensor *ts = rt_list_add(out, "start_logits", RT_F32, 2, shape, NULL);
    rt_tensor *te = rt_list_add(out, "end_logits", RT_F32, 2, shape, NULL);
    if (!ts || !te)
        return bc_errf(e, "out of memory");
    for (int64_t b = 0; b < B; b++) {
        const int64_t *x = (const int64_t *)in->data + b * S;
        float *zs = (float *)ts->data + b * S, *ze = (float *)te->data + b * S;
        for (int64_t k = 0; k < S; k++) {
            zs[k] = 0.1f * (float)((x[k] * 31 + k * 7) % 13);
            ze[k] = 0.1f * (float)((x[k] * 17 + k * 5) % 11);
        }
        int64_t hit = tu_find_row(all, x, S);
        if (hit < 0)
            return bc_errf(e, "qa_forward: unknown row");
        if (hit % 3) {
            zs[sp[hit]] = 10;
            ze[ep[hit]] = 10;
        }
    }
    return 0;
}

Test(eval_shard, qa_shards_score_as_one_process, .timeout = 60)
{
    bc_err e;
    tx_vocab *v = tx_vocab_load(tu_src(QA_FIX "vocab.txt"), &e);
    cr_assert_not_null(v, "%s", e.msg);
    qa_case qc = {.v = v};
    snprintf(qc.data, sizeof qc.data, "%s", tu_src(QA_FIX "train.json"));
    set_opt(&tk_task_qa, &qc.o, "max-seq", "32");
    set_opt(&tk_task_qa, &qc.o, "doc-stride", "8");
    set_opt(&tk_task_qa, &qc.o, "eval-data", qc.data);
    qa_oracle orc;
    rt_list_init(&orc.rows);
    tu_notes nt = {0};
    void *st = qa_open(&qc, &nt);
    cr_assert_eq(tk_task_qa.data(st, TK_SPLIT_DEV, &orc.rows, &e), 0, "%s", e.msg);
    tk_task_qa.close(st);
    int n = (int)rt_list_cfind(&orc.rows, "input_ids")->shape[0], b = pick_batch(n);
    task_case tc = {&tk_task_qa, qa_open, &qc, TK_SPLIT_DEV, b, b, n, qa_forward, &orc};
    tk_metrics m;
    check_shards(&tc, &m);
    cr_expect_eq(m.examples, 9);
    double em = tk_metrics_get(&m, "exact_match"), f1 = tk_metrics_get(&m, "f1");
    cr_expect(em > 0 && f1 > 0, "EM %g, F1 %g", em, f1);
    rt_list_free(&orc.rows);
    tx_vocab_free(v);
}

/* ---- pre-training ---------------------------------------------------------------------
 */

#define TOPICS 12
#define TOPIC_WORDS TU_TOPIC_WORDS
#define NCOMMON TU_NCOMMON

typedef struct pt_case {
    const char *corpus;
    const tx_vocab *v;
    int64_t V;
} pt_case;

static void *pt_open(const void *arg, tu_notes *nt)
{
    const pt_case *c = arg;
    opts o = {0};
    set_opt(&tk_task_pretrain, &o, "max-seq", "32");
    set_opt(&tk_task_pretrain, &o, "holdout", "3");
    return open_with(&tk_task_pretrain, c->corpus, c->v, TX_TOK_OPTS_DEFAULT, &o, 64, nt);
}

/* MLM logits from the ids around, with a preference for the topic of the row's second
 * token; NSP from the row's ids. */
static int pt_forward(void *ctx, const rt_tensor_list *batch, rt_tensor_list *out,
                      bc_err *e)
{
    int64_t V = *(const int64_t *)ctx;
    const rt_tensor *in = batch_ids(batch, "pt_forward", e);
    if (!in)
        return -1;
    int64_t B = in->shape[0], S = in->shape[1];
    int64_t sm[3] = {B, S, V}, sn[2] = {B, 2};
    rt_tensor *ml = rt_list_add(out, "mlm_logits", RT_F32, 3, sm, NULL);
    rt_tensor *nl = rt_list_add(out, "nsp_logits", RT_F32, 2, sn, NULL);
    if (!ml || !nl)
        return bc_errf(e, "out of memory");
    const int64_t *x = in->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t sum = 0, t1 = x[b * S + 1] - 5 - NCOMMON;
        int64_t topic = t1 >= 0 ? t1 / TOPIC_WORDS : -1;
        for (int64_t k = 0; k < S; k++) {
            sum += x[b * S + k];
            float *z = (float *)ml->data + (b * S + k) * V;
            for (int64_t v = 0; v < V; v++) {
                z[v] = 0.05f * (float)((x[b * S + k] * 13 + v * 7 + k * 3) % 17);
                if (topic >= 0 && v >= 5 + NCOMMON &&
                    (v - 5 - NCOMMON) / TOPIC_WORDS == topic)
                    z[v] += 2;
            }
        }
        float *z = (float *)nl->data + b * 2;
        z[0] = 0.1f * (float)(sum % 7);
        z[1] = 0.3f;
    }
    return 0;
}

Test(eval_shard, pretrain_shards_score_as_one_process, .timeout = 120)
{
    const char *corpus = tu_path(tu_tmpdir(), "corpus.txt");
    char path[600];
    snprintf(path, sizeof path, "%s", corpus);
    cr_assert_eq(tu_topic_corpus(path, TOPICS, 16, 7, TOPICS), 0);
    bc_err ve;
    tx_vocab *v = tu_topic_vocab(TOPICS, NULL, &ve);
    cr_assert_not_null(v, "%s", ve.msg);
    pt_case pc = {path, v, tx_vocab_size(v)};
    tu_notes nt = {0};
    void *st = pt_open(&pc, &nt);
    rt_tensor_list dev;
    rt_list_init(&dev);
    bc_err e;
    cr_assert_eq(tk_task_pretrain.data(st, TK_SPLIT_DEV, &dev, &e), 0, "%s", e.msg);
    const rt_tensor *ids = rt_list_cfind(&dev, "input_ids");
    int n = (int)ids->shape[0], b = pick_batch(n);
    int rows = tk_pt_eval_rows(b, ids->shape[1], pc.V);
    cr_assert_eq(rows, b, "small rows: one forward pass per batch");
    rt_list_free(&dev);
    tk_task_pretrain.close(st);
    task_case tc = {&tk_task_pretrain, pt_open, &pc, TK_SPLIT_DEV, b, rows, n,
                    pt_forward,        &pc.V};
    tk_metrics m;
    check_shards(&tc, &m);
    cr_expect_eq(m.examples, n);
    double acc = tk_metrics_get(&m, "mlm_accuracy"),
           nsp = tk_metrics_get(&m, "nsp_accuracy");
    double loss = tk_metrics_get(&m, "mlm_loss");
    cr_expect(acc > 0 && acc < 1, "mlm accuracy %g", acc);
    cr_expect(nsp > 0 && nsp < 1, "nsp accuracy %g", nsp);
    cr_expect(loss > 0 && fabs(loss - log((double)pc.V)) > 0.1, "mlm loss %g", loss);
    tx_vocab_free(v);
}
