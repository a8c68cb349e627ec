/* test_rundir.c: the run directory of `bertcc train --task` (tasks/rundir.c):
 * that it holds everything eval, predict, export and --resume need (the model as
 * sized, weights last and best, vocabulary, label lists, options, logs, metrics and the
 * plot), and that Ctrl-C then --resume gives the same run as an uninterrupted one. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "runtime/safetensors.h"
#include "util.h"

static int bertcc(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bertcc(char **out, const char *fmt, ...)
{
    char args[6000], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s", BERTCC_SOURCE_DIR, BERTCC_EXE, args);
    return tu_run(cmd, out);
}

static const char micro_xml[] =
    "<bert name=\"micro\">\n"
    "  <encoder vocab-size=\"100\" hidden-size=\"32\" layers=\"1\" heads=\"2\"\n"
    "           intermediate-size=\"64\" max-position=\"32\"/>\n"
    "  <head type=\"mlm\"/>\n"
    "</bert>\n";

/* A small voice set (about 150 training sentences), its vocabulary and the model. */
static void small_set(const char *dir)
{
    char *out = NULL;
    cr_assert_eq(bertcc(&out, "demo-data -o %s/data --per-intent 30", dir), 0, "%s", out);
    free(out);
    cr_assert_eq(bertcc(&out,
                        "vocab --corpus %s/data/train/seq.in --size 500 --no-lowercase -o "
                        "%s/vocab.txt",
                        dir, dir),
                 0, "%s", out);
    free(out);
    cr_assert_eq(tu_write_file(tu_path(dir, "model.xml"), micro_xml), 0);
}

static int count_lines(const char *path)
{
    char *t = tu_read_file(path, NULL);
    int n = 0;
    for (char *c = t; c && *c; c++)
        n += *c == '\n';
    free(t);
    return n;
}

#define TRAIN_ARGS                                                                         \
    "train %s/model.xml --task intent-slot --data %s/data --vocab %s/vocab.txt "           \
    "--no-lowercase --batch-size 16 --lr 3e-3 --threads 1 --backend ref"

Test(rundir, holds_everything_a_run_needs)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char *out = NULL, run[1100];
    snprintf(run, sizeof run, "%s/run", dir);
    cr_assert_eq(
        bertcc(&out, TRAIN_ARGS " -o %s --epochs 2 --log-every 5", dir, dir, dir, run), 0,
        "%s", out);
    /* dev after each epoch, marked when it is the best so far */
    cr_expect(strstr(out, "dev @ epoch 1.00: intent_accuracy") && strstr(out, "[best]") &&
                  strstr(out, "dev @ epoch 2.00"),
              "%s", out);
    free(out);
    static const char *const files[] = {
        "model.xml",        "weights.safetensors", "optimizer.safetensors",
        "best.safetensors", "vocab.txt",           "intent_labels.txt",
        "slot_labels.txt",  "options.json",        "train_log.csv",
        "metrics.csv",      "curves.svg"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        cr_assert_eq(access(tu_path(run, files[i]), R_OK), 0, "%s missing", files[i]);

    /* The model as sized: the vocabulary's size and exactly the task's heads. */
    fe_model m;
    bc_err e;
    cr_assert_eq(fe_load(tu_path(run, "model.xml"), &m, &e), 0, "%s", e.msg);
    cr_expect_eq(m.vocab_size, count_lines(tu_path(dir, "vocab.txt")));
    cr_expect_eq(m.head_mask, FE_HEAD_INTENT | FE_HEAD_SLOT);
    cr_expect_eq(m.intent_classes, 7); /* UNK + 6 intents */
    cr_expect_eq(m.slot_labels, 6);    /* UNK O B/I-artist B/I-title */
    cr_expect_eq(m.hidden_size, 32);
    char *il = tu_read_file(tu_path(run, "intent_labels.txt"), NULL);
    cr_expect_str_eq(il, "UNK\nnext_song\nplay_song_by_artist\nplay_song_by_title\n"
                         "stop_music\nvolume_down\nvolume_up\n");
    free(il);
    char *vin = tu_read_file(tu_path(dir, "vocab.txt"), NULL),
         *vout = tu_read_file(tu_path(run, "vocab.txt"), NULL);
    cr_expect(vin && vout && !strcmp(vin, vout), "vocab.txt is not a copy");
    free(vin);
    free(vout);

    /* options.json: the task, its options in effect and the tokenizer's. */
    json_error_t je;
    json_t *j = json_load_file(tu_path(run, "options.json"), 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_expect_str_eq(json_string_value(json_object_get(j, "task")), "intent-slot");
    cr_expect_str_eq(
        json_string_value(json_object_get(json_object_get(j, "task_options"), "max-seq")),
        "32"); /* the default 64, bounded by the model's max-position */
    json_t *tok = json_object_get(j, "tokenizer");
    cr_expect(json_is_false(json_object_get(tok, "lowercase")));
    cr_expect(json_is_null(json_object_get(tok, "strip_accents")));
    cr_expect_str_eq(json_string_value(json_object_get(j, "backend")), "ref");
    json_decref(j);

    /* Logs: one line per update (144 rows: 9 per epoch), one per evaluation. */
    cr_expect_eq(count_lines(tu_path(run, "train_log.csv")), 1 + 18);
    cr_expect_eq(count_lines(tu_path(run, "metrics.csv")), 1 + 2);
    char *mt = tu_read_file(tu_path(run, "metrics.csv"), NULL);
    cr_expect(!strncmp(mt,
                       "step,epoch,train_loss,intent_accuracy,slot_precision,slot_recall,"
                       "slot_f1,frame_accuracy,examples,best\n9,1,",
                       89),
              "%s", mt);
    free(mt);
    char *svg = tu_read_file(tu_path(run, "curves.svg"), NULL);
    cr_expect(svg && !strncmp(svg, "<svg ", 5) && strstr(svg, "<polyline") &&
                  strstr(svg, "frame_accuracy") && strstr(svg, "</svg>\n"),
              "%s", svg);
    free(svg);
    rt_tensor_list b;
    rt_list_init(&b);
    cr_assert_eq(rt_st_load(tu_path(run, "best.safetensors"), &b, &e), 0, "%s", e.msg);
    cr_expect(rt_list_cfind(&b, "intent.classifier.weight"));
    cr_expect_null(rt_list_cfind(&b, "cls.predictions.bias")); /* the mlm head is gone */
    rt_list_free(&b);

    /* The same directory again is refused; eval reads it. */
    cr_assert_eq(bertcc(&out, TRAIN_ARGS " -o %s --epochs 2", dir, dir, dir, run), 1);
    cr_expect(strstr(out, "already holds a run"), "%s", out);
    free(out);
    cr_assert_eq(bertcc(&out, "eval --model %s --data %s/data --json", run, dir), 0, "%s",
                 out);
    cr_expect(strstr(out, "\"intent_accuracy\":"), "%s", out);
    free(out);

    /* --resume with more epochs continues the logs. */
    cr_assert_eq(bertcc(&out, "train --resume %s --epochs 3 --quiet", run), 0, "%s", out);
    free(out);
    cr_expect_eq(count_lines(tu_path(run, "metrics.csv")), 1 + 3);
    cr_expect_eq(count_lines(tu_path(run, "train_log.csv")), 1 + 27);
}

Test(rundir, ctrl_c_then_resume_repeats_the_run, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char *out = NULL, a[1100], b[1100];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    cr_assert_eq(bertcc(&out, TRAIN_ARGS " -o %s --epochs 10 --quiet", dir, dir, dir, a), 0,
                 "%s", out);
    free(out);

    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(tu_path(dir, "b.err"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0 || chdir(BERTCC_SOURCE_DIR))
            _exit(99);
        char model[1100], data[1100], vocab[1100];
        snprintf(model, sizeof model, "%s/model.xml", dir);
        snprintf(data, sizeof data, "%s/data", dir);
        snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
        execl(BERTCC_EXE, BERTCC_EXE, "train", model, "--task", "intent-slot", "--data",
              data, "--vocab", vocab, "--no-lowercase", "--batch-size", "16", "--lr",
              "3e-3", "--threads", "1", "--backend", "ref", "-o", b, "--epochs", "10",
              "--quiet", (char *)NULL);
        _exit(98);
    }
    /* Interrupt after the first epoch's evaluation, in the second epoch. */
    const char *log = tu_path(b, "train_log.csv");
    for (int i = 0; i < 12000 && count_lines(log) < 14; i++)
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    kill(pid, SIGINT);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "bertcc did not exit cleanly on SIGINT");
    char *err = tu_read_file(tu_path(dir, "b.err"), NULL);
    if (WEXITSTATUS(status) == 130) {
        cr_expect(err && strstr(err, "interrupted at step"), "%s", err);
        cr_assert_eq(bertcc(&out, "train --resume %s --quiet", b), 0, "%s", out);
        free(out);
    } else {
        cr_assert_eq(WEXITSTATUS(status), 0, "%s", err);
        cr_log_warn("the run finished before the interrupt arrived");
    }
    free(err);
    static const char *const same[] = {"metrics.csv", "weights.safetensors",
                                       "best.safetensors", "intent_labels.txt"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        size_t na, nb;
        char *fa = tu_read_file(tu_path(a, same[i]), &na);
        char *fb = tu_read_file(tu_path(b, same[i]), &nb);
        cr_expect(fa && fb && na == nb && !memcmp(fa, fb, na), "%s differs:\n%s\n---\n%s",
                  same[i], fa, fb);
        free(fa);
        free(fb);
    }
}
