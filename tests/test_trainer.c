/* test_trainer.c: training, evaluation, prediction and export as library calls
 * (tasks/trainer.h, tasks/rundir.h, tasks/export.h), in process: the calls `bertcc
 * train | eval | predict | export` make, without the driver. Also the bundled data set
 * (tasks/demo_data.h) and a run directory's metrics.csv and plot (tasks/curves.h). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/safetensors.h"
#include "tasks/curves.h"
#include "tasks/demo_data.h"
#include "tasks/export.h"
#include "tasks/rundir.h"
#include "tasks/trainer.h"
#include "text/tokenizer.h"
#include "util.h"

static const char micro_xml[] =
    "<bert name=\"micro\">\n"
    "  <encoder vocab-size=\"100\" hidden-size=\"32\" layers=\"1\" heads=\"2\"\n"
    "           intermediate-size=\"64\" max-position=\"32\"/>\n"
    "</bert>\n";

typedef struct setup {
    char dir[256], data[512], vocab[512], model[512];
} setup;

/* A small voice set (30 sentences an intent), a cased vocabulary learned from its
 * training split, and a micro model, all made through the library. */
static void small_set(setup *s)
{
    bc_err e;
    snprintf(s->dir, sizeof s->dir, "%s", tu_tmpdir());
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->vocab, sizeof s->vocab, "%s/vocab.txt", s->dir);
    snprintf(s->model, sizeof s->model, "%s/model.xml", s->dir);
    tk_demo_data_counts n;
    cr_assert_eq(tk_demo_data_write(s->data, 0, 30, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n.train + n.dev + n.test, 6 * 30);
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(500);
    o.tok.lowercase = 0;
    tx_vocab_learner *l = tx_vocab_learner_new(&o, &e);
    char **tokens = NULL, path[600];
    int ntok = 0;
    tx_vocab_learn_stats st;
    snprintf(path, sizeof path, "%s/train/seq.in", s->data);
    cr_assert(l && !tx_vocab_learner_add_file(l, path, &e) &&
                  !tx_vocab_learner_run(l, &tokens, &ntok, &st, &e) &&
                  !tx_vocab_save(s->vocab, (const char *const *)tokens, ntok, &e),
              "%s", e.msg);
    for (int i = 0; i < ntok; i++)
        free(tokens[i]);
    free(tokens);
    tx_vocab_learner_free(l);
    cr_assert_eq(tu_write_file(s->model, micro_xml), 0);
}

static rundir_train_args train_args(const setup *s, const char *out, const char *epochs)
{
    return (rundir_train_args){.model = s->model,
                               .task = "intent-slot",
                               .data = s->data,
                               .vocab = s->vocab,
                               .no_lower = "1",
                               .out = out,
                               .epochs = epochs,
                               .batch_size = "16",
                               .lr = "3e-3",
                               .threads = "1",
                               .backend = "ref"};
}

Test(trainer, trains_evaluates_predicts_and_exports_in_process, .timeout = 300)
{
    setup s;
    small_set(&s);
    char run[600];
    snprintf(run, sizeof run, "%s/run", s.dir);
    rundir_train_args a = train_args(&s, run, "2");
    rundir_train_result r;
    bc_err e;
    cr_assert_eq(rundir_train(&a, &r, &e), 0, "%s", e.msg);
    /* 144 training rows, 16 a micro-batch: 9 updates an epoch. */
    cr_expect_eq(r.train.step, 18);
    cr_expect_eq(r.train.total, 18);
    cr_expect_not(r.train.stopped);
    cr_assert(r.have_best);
    double best_intent = tk_metrics_get(&r.best, "intent_accuracy");
    rundir_train_result_free(&r);
    cr_expect_eq(access(tu_path(run, "best.safetensors"), R_OK), 0);

    /* The best weights score on dev what training recorded for them. */
    rundir_model m;
    rundir_model_opts mo = {"best", CG_BACKEND_REF, 1, NULL, NULL, 0, NULL};
    cr_assert_eq(rundir_model_open(&m, run, s.data, &mo, &e), 0, "%s", e.msg);
    tk_metrics dev;
    cr_assert_eq(rundir_evaluate(&m, TK_SPLIT_DEV, 64, &dev, &e), 0, "%s", e.msg);
    cr_expect_eq(tk_metrics_get(&dev, "intent_accuracy"), best_intent);
    cr_expect_eq(dev.examples, 18); /* 3 of each intent's 30 */
    json_t *j = NULL;
    cr_assert_eq(rundir_predict(&m, "아이유 노래 틀어줘", NULL, &j, &e), 0, "%s", e.msg);
    const char *intent = json_string_value(json_object_get(j, "intent"));
    cr_expect(intent && strstr("UNK next_song play_song_by_artist play_song_by_title "
                               "stop_music volume_down volume_up",
                               intent),
              "%s", intent);
    json_decref(j);
    rundir_model_close(&m);

    /* Export: a Hugging Face directory with the intent labels in config.json. */
    char hf[600];
    snprintf(hf, sizeof hf, "%s/hf", s.dir);
    rundir_export_info info;
    cr_assert_eq(rundir_export(run, "last", hf, &info, &e), 0, "%s", e.msg);
    cr_expect_str_eq(info.weights, tu_path(run, "weights.safetensors"));
    json_error_t je;
    json_t *cfg = json_load_file(tu_path(hf, "config.json"), 0, &je);
    cr_assert_not_null(cfg, "%s", je.text);
    cr_expect_str_eq(
        json_string_value(json_object_get(json_object_get(cfg, "id2label"), "2")),
        "play_song_by_artist");
    char *v = tu_read_file(s.vocab, NULL);
    int lines = 0;
    for (char *c = v; c && *c; c++)
        lines += *c == '\n';
    free(v);
    cr_expect_eq(json_integer_value(json_object_get(cfg, "vocab_size")), lines);
    json_decref(cfg);
    cr_expect(tu_same_file(tu_path(hf, "vocab.txt"), s.vocab));
    rt_tensor_list w;
    rt_list_init(&w);
    cr_assert_eq(rt_st_load(tu_path(hf, "model.safetensors"), &w, &e), 0, "%s", e.msg);
    cr_expect_eq(w.n, info.tensors);
    cr_expect_not_null(rt_list_cfind(&w, "classifier.weight"));
    cr_expect_null(rt_list_cfind(&w, "intent.classifier.weight"));
    rt_list_free(&w);
}

/* A progress stream that raises the stop flag when it sees text, as Ctrl-C would. */
typedef struct tripwire {
    const char *when;
    volatile sig_atomic_t *stop;
} tripwire;

static ssize_t trip(void *c, const char *buf, size_t n)
{
    tripwire *t = c;
    if (memmem(buf, n, t->when, strlen(t->when)))
        *t->stop = 1;
    return (ssize_t)n;
}

Test(trainer, a_stopped_run_resumes_to_the_same_bits, .timeout = 300)
{
    setup s;
    small_set(&s);
    char a_dir[600], b_dir[600];
    snprintf(a_dir, sizeof a_dir, "%s/a", s.dir);
    snprintf(b_dir, sizeof b_dir, "%s/b", s.dir);
    bc_err e;
    rundir_train_result r;
    rundir_train_args a = train_args(&s, a_dir, "3");
    cr_assert_eq(rundir_train(&a, &r, &e), 0, "%s", e.msg);
    rundir_train_result_free(&r);

    /* The same run, stopped once epoch 1 was evaluated, then resumed. */
    volatile sig_atomic_t stop = 0;
    tripwire tw = {"dev @ epoch 1.00", &stop};
    FILE *progress = fopencookie(&tw, "w", (cookie_io_functions_t){NULL, trip, NULL, NULL});
    cr_assert_not_null(progress);
    setvbuf(progress, NULL, _IONBF, 0);
    rundir_train_args b = train_args(&s, b_dir, "3");
    b.progress = progress;
    b.stop = &stop;
    cr_assert_eq(rundir_train(&b, &r, &e), 0, "%s", e.msg);
    fclose(progress);
    cr_expect(r.train.stopped);
    cr_expect(r.train.step >= 9 && r.train.step < 27, "stopped at %lld",
              (long long)r.train.step);
    rundir_train_result_free(&r);
    rundir_train_args c = {.resume = b_dir};
    cr_assert_eq(rundir_train(&c, &r, &e), 0, "%s", e.msg);
    cr_expect_eq(r.train.step, 27);
    rundir_train_result_free(&r);
    static const char *const same[] = {"metrics.csv", "weights.safetensors",
                                       "best.safetensors",
                                       "checkpoints/step-27/optimizer.safetensors"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        cr_expect(tu_same_file(tu_path(a_dir, same[i]), tu_path(b_dir, same[i])), "%s differs",
                  same[i]);
}

Test(trainer, errors_come_back_as_values)
{
    setup s;
    small_set(&s);
    char out[600];
    snprintf(out, sizeof out, "%s/run", s.dir);
    static const struct {
        const char *field, *value, *want;
    } bad[] = {
        {"task", "nonsense",
         "unknown --task 'nonsense' (batches, intent-slot, qa, pretrain, classify)"},
        {"lr", "x", "--lr expects a number in [0, 10], got 'x'"},
        {"data", "/nonexistent", "/nonexistent"},
        {"freeze", "nothing.like.this", "--freeze nothing.like.this matches no parameter"},
        {"vocab", NULL, "--task needs --vocab"},
        {"max-seq", "1", "--max-seq"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rundir_train_args a = train_args(&s, out, "1");
        if (!strcmp(bad[i].field, "task"))
            a.task = bad[i].value;
        else if (!strcmp(bad[i].field, "lr"))
            a.lr = bad[i].value;
        else if (!strcmp(bad[i].field, "data"))
            a.data = bad[i].value;
        else if (!strcmp(bad[i].field, "vocab"))
            a.vocab = bad[i].value;
        else if (!strcmp(bad[i].field, "freeze"))
            a.frozen[a.nfrozen++] = bad[i].value;
        else {
            a.topt_name[0] = bad[i].field;
            a.topt_value[0] = bad[i].value;
            a.ntopt = 1;
        }
        rundir_train_result r;
        bc_err e = {{0}};
        cr_expect_eq(rundir_train(&a, &r, &e), -1, "%s=%s was accepted", bad[i].field,
                     bad[i].value);
        cr_expect(strstr(e.msg, bad[i].want), "%s: '%s' not in '%s'", bad[i].field,
                  bad[i].want, e.msg);
        rundir_train_result_free(&r);
    }
    /* Nothing was left behind that a later run would take for a run. */
    cr_expect_neq(access(tu_path(out, "weights.safetensors"), F_OK), 0);
}

Test(demo_data, the_same_seed_writes_the_same_files)
{
    char a[512], b[512], c[512];
    snprintf(a, sizeof a, "%s/a", tu_tmpdir());
    snprintf(b, sizeof b, "%s/b", tu_tmpdir());
    snprintf(c, sizeof c, "%s/c", tu_tmpdir());
    tk_demo_data_counts na, nb, nc;
    bc_err e;
    cr_assert_eq(tk_demo_data_write(a, 7, 40, &na, &e), 0, "%s", e.msg);
    cr_assert_eq(tk_demo_data_write(b, 7, 40, &nb, &e), 0, "%s", e.msg);
    cr_assert_eq(tk_demo_data_write(c, 8, 40, &nc, &e), 0, "%s", e.msg);
    /* 40 of each of 6 intents, split 32/4/4 per intent. */
    cr_expect_eq(na.intents, 6);
    cr_expect_eq(na.train, 6 * 32);
    cr_expect_eq(na.dev, 6 * 4);
    cr_expect_eq(na.test, 6 * 4);
    char pa[600], pb[600], pc[600];
    snprintf(pa, sizeof pa, "%s/train/seq.in", a);
    snprintf(pb, sizeof pb, "%s/train/seq.in", b);
    snprintf(pc, sizeof pc, "%s/train/seq.in", c);
    cr_expect(tu_same_file(pa, pb));
    cr_expect_not(tu_same_file(pa, pc), "another seed gave the same sentences");
    /* Every sentence has one tag per word. */
    char *in = tu_read_file(pa, NULL), *tags = NULL;
    snprintf(pa, sizeof pa, "%s/train/seq.out", a);
    tags = tu_read_file(pa, NULL);
    cr_assert(in && tags);
    char *si = NULL, *st = NULL;
    for (char *l = strtok_r(in, "\n", &si), *t = strtok_r(tags, "\n", &st); l || t;
         l = strtok_r(NULL, "\n", &si), t = strtok_r(NULL, "\n", &st)) {
        cr_assert(l && t, "seq.in and seq.out differ in length");
        int wl = 1, wt = 1;
        for (char *p = l; *p; p++)
            wl += *p == ' ';
        for (char *p = t; *p; p++)
            wt += *p == ' ';
        cr_expect_eq(wl, wt, "'%s' / '%s'", l, t);
    }
    free(in);
    free(tags);
}

Test(curves, metrics_csv_resumes_at_a_step_and_finds_the_best)
{
    const char *dir = tu_tmpdir();
    bc_err e;
    static const char *const best_by[] = {"f1", "acc", NULL};
    const double f1[] = {0.5, 0.7, 0.7, 0.9}, acc[] = {0.1, 0.2, 0.3, 0.1};
    for (int i = 0; i < 4; i++) {
        tk_metrics m = {0};
        tk_metrics_add(&m, "acc", acc[i]);
        tk_metrics_add(&m, "f1", f1[i]);
        m.examples = 10;
        cr_assert_eq(
            rundir_metrics_append(dir, 10 * (i + 1), i + 1, 1.0 / (i + 1), &m, 0, &e), 0,
            "%s", e.msg);
    }
    /* Resuming at step 30 drops the line of step 40, and the best kept is step 30's
     * (f1 ties with step 20's, acc decides). */
    tk_metrics best;
    int have = 0;
    json_t *keep = NULL;
    cr_assert_eq(rundir_metrics_resume(dir, 30, best_by, &best, &have, NULL, &keep, &e), 0, "%s",
                 e.msg);
    cr_assert(have);
    cr_expect_eq(tk_metrics_get(&best, "f1"), 0.7);
    cr_expect_eq(tk_metrics_get(&best, "acc"), 0.3);
    json_decref(keep);
    char *csv = tu_read_file(tu_path(dir, "metrics.csv"), NULL);
    cr_assert_not_null(csv);
    static const char head[] = "step,epoch,train_loss,acc,f1,examples,best\n10,1,1,0.1";
    cr_expect(!strncmp(csv, head, strlen(head)), "%s", csv);
    cr_expect(strstr(csv, "\n30,3,") && !strstr(csv, "\n40,"), "%s", csv);
    free(csv);
    cr_assert_eq(rundir_plot(dir, "a <title>", &e), 0, "%s", e.msg);
    char *svg = tu_read_file(tu_path(dir, "curves.svg"), NULL);
    cr_expect(svg && strstr(svg, "a &lt;title&gt;") && strstr(svg, ">f1</text>"), "%s",
              svg);
    free(svg);
}
