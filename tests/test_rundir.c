/* test_rundir.c: the run directory of `bertcc train --task` (tasks/rundir.c):
 * that it holds everything eval, predict, export and --resume need (the model as
 * sized, weights last and best, vocabulary, label lists, options, logs, metrics and the
 * plot), and that Ctrl-C then --resume gives the same run as an uninterrupted one. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "runtime/safetensors.h"
#include "train/ckpt.h"
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

static int count_newlines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
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

/* `bertcc train` on dir's small set into run, in the background (intent-slot, one
 * thread, the reference backend, quiet; more: further arguments, NULL-terminated), its
 * stderr into dir/err_name: the process id. */
static pid_t spawn_train(const char *dir, const char *err_name, const char *run,
                         const char *const *more)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid)
        return pid;
    int fd = open(tu_path(dir, err_name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 2) < 0 || chdir(BERTCC_SOURCE_DIR))
        _exit(99);
    char model[1100], data[1100], vocab[1100];
    snprintf(model, sizeof model, "%s/model.xml", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    const char *argv[40] = {BERTCC_EXE, "train",    model,     "--task",  "intent-slot",
                            "--data",   data,       "--vocab", vocab,     "--no-lowercase",
                            "--threads", "1",       "--backend", "ref",   "-o",
                            run,        "--quiet"};
    int n = 17;
    for (int i = 0; more[i] && n < 39; i++)
        argv[n++] = more[i];
    argv[n] = NULL;
    execv(BERTCC_EXE, (char *const *)argv);
    _exit(98);
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
        "model.xml",        "weights.safetensors", "checkpoints/current",
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

    static const char *const more[] = {"--batch-size", "16", "--lr", "3e-3", "--epochs", "10",
                                        NULL};
    pid_t pid = spawn_train(dir, "b.err", b, more);
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

/* ---- crash consistency (train/ckpt.h) ---- */

#define KILL_ARGS TRAIN_ARGS " --steps 3 --save-every 1 --quiet"

/* Entries of dir named X.tmp.PID. */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strstr(de->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* The run's results against the uninterrupted reference's, byte for byte. */
static void expect_same_run(const char *ref, const char *run, const char *what)
{
    static const char *const same[] = {"weights.safetensors", "best.safetensors",
                                       "metrics.csv", "checkpoints/current",
                                       "checkpoints/step-3/optimizer.safetensors"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s", tu_path(ref, same[i]));
        snprintf(b, sizeof b, "%s", tu_path(run, same[i]));
        cr_expect(tu_same_file(a, b), "%s: %s differs from the uninterrupted run's", what,
                  same[i]);
    }
}

/* Killed (SIGKILL, BERTCC_FAULT_AT) at each durable step of creating the run directory,
 * the three checkpoints and the dev evaluation's files, then resumed — or, when the kill
 * came before the run directory existed, started again — the run ends with the bits of
 * an uninterrupted one. */
Test(rundir, a_kill_at_any_durable_step_then_resume_gives_the_uninterrupted_bits,
     .timeout = 900)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char *out = NULL, ref[1100];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    cr_assert_eq(bertcc(&out, KILL_ARGS " -o %s", dir, dir, dir, ref), 0, "%s", out);
    free(out);
    /* how many durable steps the run takes (BERTCC_FAULT_AT=-1 counts them) */
    char args[4000], cmd[8192], cnt[1100];
    snprintf(cnt, sizeof cnt, "%s/count", dir);
    snprintf(args, sizeof args, KILL_ARGS " -o %s", dir, dir, dir, cnt);
    snprintf(cmd, sizeof cmd, "cd %s && BERTCC_FAULT_AT=-1 %s %s", BERTCC_SOURCE_DIR,
             BERTCC_EXE, args);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    const char *at = strstr(out, "fault points: ");
    cr_assert(at, "%s", out);
    int points = atoi(at + 14);
    free(out);
    cr_assert_gt(points, 30, "%d fault points", points);
    /* every one of them (76 at the time of writing: about 70 s under ASan) */
    int tries = points, killed = 0;
    for (int i = 0; i < tries; i++) {
        int n = i + 1;
        char run[1100];
        snprintf(run, sizeof run, "%s/k%d", dir, n);
        snprintf(args, sizeof args, KILL_ARGS " -o %s", dir, dir, dir, run);
        /* exec: no shell is left to print "Killed" */
        snprintf(cmd, sizeof cmd, "cd %s && BERTCC_FAULT_AT=%d exec %s %s",
                 BERTCC_SOURCE_DIR, n, BERTCC_EXE, args);
        int rc = tu_run(cmd, &out);
        free(out);
        cr_assert_eq(rc, 128 + 9, "fault point %d of %d: exit %d, not a SIGKILL", n, points,
                     rc);
        killed++;
        if (access(run, F_OK) == 0)
            rc = bertcc(&out, "train --resume %s --quiet", run);
        else /* not created at all: the run starts again */
            rc = bertcc(&out, KILL_ARGS " -o %s", dir, dir, dir, run);
        cr_assert_eq(rc, 0, "fault point %d, then resumed: %s", n, out);
        free(out);
        char what[64];
        snprintf(what, sizeof what, "killed at fault point %d", n);
        expect_same_run(ref, run, what);
        /* the killed writer's temporary files are gone */
        cr_expect_eq(count_tmp(run), 0, "%s: %s", what, run);
        char ck[1200];
        snprintf(ck, sizeof ck, "%s/checkpoints", run);
        cr_expect_eq(count_tmp(ck), 0, "%s: %s", what, ck);
    }
    cr_expect_eq(killed, tries);
}

/* A run directory holding no checkpoint yet (what a kill before the first one leaves)
 * resumes from step 0 with the uninterrupted run's bits; a second process cannot train
 * into a locked run; a resume removes killed writers' temporary files, not a live one's. */
Test(rundir, resume_without_a_checkpoint_the_lock_and_stale_temporaries, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char *out = NULL, ref[1100], run[1100], cmd[4000];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    cr_assert_eq(bertcc(&out, KILL_ARGS " -o %s", dir, dir, dir, ref), 0, "%s", out);
    free(out);

    /* only what a run starts with: model, vocabulary, labels, options */
    snprintf(cmd, sizeof cmd,
             "cp -r %s %s && cd %s && rm -r checkpoints weights.safetensors best.safetensors "
             "metrics.csv train_log.csv curves.svg",
             ref, run, run);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(bertcc(&out, "train --resume %s", run), 0, "%s", out);
    cr_expect(strstr(out, "no checkpoint yet"), "%s", out);
    free(out);
    expect_same_run(ref, run, "resumed without a checkpoint");

    /* the lock */
    int fd = open(tu_path(run, ".lock"), O_RDWR);
    cr_assert(fd >= 0);
    cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
    cr_assert_eq(bertcc(&out, "train --resume %s --steps 4 --quiet", run), 1, "%s", out);
    cr_expect(strstr(out, "another bertcc process is training into this run directory"), "%s",
              out);
    free(out);
    close(fd);

    /* temporaries: of a process that is gone (removed), of a live one (kept) */
    pid_t gone = fork();
    cr_assert(gone >= 0);
    if (gone == 0)
        _exit(0);
    cr_assert_eq(waitpid(gone, NULL, 0), gone);
    char p1[1300], p2[1300], p3[1300];
    snprintf(p1, sizeof p1, "%s/weights.safetensors.tmp.%ld", run, (long)gone);
    snprintf(p2, sizeof p2, "%s/checkpoints/step-4.tmp.%ld", run, (long)gone);
    snprintf(p3, sizeof p3, "%s/options.json.tmp.%ld", run, (long)getpid());
    cr_assert_eq(tu_write_file(p1, "half"), 0);
    cr_assert_eq(mkdir(p2, 0777), 0);
    cr_assert_eq(tu_write_file(tu_path(p2, "weights.safetensors"), "half"), 0);
    cr_assert_eq(tu_write_file(p3, "live"), 0);
    cr_assert_eq(bertcc(&out, "train --resume %s --steps 4 --quiet", run), 0, "%s", out);
    free(out);
    cr_expect(access(p1, F_OK) != 0 && access(p2, F_OK) != 0, "stale temporaries kept");
    cr_expect(access(p3, F_OK) == 0, "a live process's temporary file was removed");
    unlink(p3);
}

/* A second and third interrupt (SIGINT 20 ms after the first, then SIGTERM) while the
 * update in progress finishes are ignored with a note: the run still writes its
 * checkpoint, exits 130, and resumes. (Before, a second Ctrl-C killed it first.) */
Test(rundir, further_interrupts_wait_for_the_checkpoint, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char run[1100];
    snprintf(run, sizeof run, "%s/run", dir);
    /* the whole set in one micro-batch on the reference backend: slow updates */
    static const char *const more[] = {"--batch-size", "144", "--epochs", "400", "--no-eval",
                                        NULL};
    pid_t pid = spawn_train(dir, "err", run, more);
    const char *log = tu_path(run, "train_log.csv");
    for (int i = 0; i < 12000 && count_lines(log) < 3; i++)
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    kill(pid, SIGINT);
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    kill(pid, SIGINT);
    kill(pid, SIGTERM);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    char *err = tu_read_file(tu_path(dir, "err"), NULL);
    cr_assert(WIFEXITED(status), "killed by signal %d: %s", WTERMSIG(status), err);
    cr_expect_eq(WEXITSTATUS(status), 130, "%s", err);
    cr_expect(err && strstr(err, "interrupted at step") &&
                  strstr(err, "further interrupts are ignored"),
              "%s", err);
    free(err);
    char *cur = tu_read_file(tu_path(run, "checkpoints/current"), NULL);
    cr_assert(cur);
    cur[strcspn(cur, "\n")] = 0;
    char ck[1300];
    snprintf(ck, sizeof ck, "%s/checkpoints/%s", run, cur);
    free(cur);
    bc_err e;
    cr_expect_eq(tr_ckpt_verify(ck, &e), 0, "%s", e.msg);
}

/* ---- a full disk: an output set is complete or absent ---- */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

/* On a 48 KB tmpfs (mounting needs root; skipped where it cannot): demo-data, export, a
 * shared library and training fail with one message and exit 1, leaving no part of
 * their output (a new run directory, whose small files fit, stays resumable). */
Test(rundir, a_full_disk_leaves_outputs_complete_or_absent, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    char mnt[1100], cmd[4000], *out = NULL;
    snprintf(mnt, sizeof mnt, "%s/full", dir);
    cr_assert_eq(mkdir(mnt, 0777), 0);
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=48k tmpfs %s 2>/dev/null", mnt);
    if (system(cmd) != 0) {
        cr_skip_test("cannot mount a tmpfs here (needs root): full-disk test skipped");
        return;
    }
    small_set(dir);
    char run[1100];
    snprintf(run, sizeof run, "%s/run", dir);
    cr_assert_eq(bertcc(&out, KILL_ARGS " -o %s", dir, dir, dir, run), 0, "%s", out);
    free(out);

    cr_expect_eq(bertcc(&out, "demo-data -o %s/demo --per-intent 400", mnt), 1, "%s", out);
    cr_expect(strstr(out, "No space left on device") && !strstr(out, ".tmp."), "%s", out);
    free(out);
    cr_expect_eq(count_entries(mnt), 0, "demo-data left files behind");

    cr_expect_eq(bertcc(&out,
                        "pretrain-data --corpus %s/data/train/seq.in --vocab %s/vocab.txt "
                        "--no-lowercase --dupe-factor 20 -o %s/pt.safetensors",
                        dir, dir, mnt),
                 1, "%s", out);
    cr_expect(strstr(out, "No space left on device"), "%s", out);
    free(out);
    cr_expect_eq(count_entries(mnt), 0, "pretrain-data left files behind");

    cr_expect_eq(bertcc(&out, "export --model %s -o %s/hf", run, mnt), 1, "%s", out);
    cr_expect(strstr(out, "No space left on device"), "%s", out);
    free(out);
    cr_expect_eq(count_entries(mnt), 0, "export left files behind");

    cr_expect_eq(bertcc(&out, "%s/model.xml -o %s/bert.so", dir, mnt), 1, "%s", out);
    int lines = 0;
    for (char *c = out; c && *c; c++)
        lines += *c == '\n';
    cr_expect(lines == 1 && !strncmp(out, "bertcc: ", 8) && strstr(out, "C compiler failed"),
              "one message expected:\n%s", out);
    free(out);
    cr_expect_eq(count_entries(mnt), 0, "the shared library's output left files behind");

    char r2[1200];
    snprintf(r2, sizeof r2, "%s/run", mnt);
    cr_expect_eq(bertcc(&out, KILL_ARGS " -o %s", dir, dir, dir, r2), 1, "%s", out);
    cr_expect(strstr(out, "No space left on device"), "%s", out);
    free(out);
    if (access(r2, F_OK) == 0) {
        cr_expect_eq(access(tu_path(r2, "options.json"), R_OK), 0);
        cr_expect_eq(count_tmp(r2), 0);
        char ck[1300];
        snprintf(ck, sizeof ck, "%s/checkpoints", r2);
        cr_expect_eq(count_tmp(ck), 0);
        cr_expect(access(tu_path(ck, "current"), F_OK) != 0);
    }
    snprintf(cmd, sizeof cmd, "umount %s", mnt);
    cr_expect_eq(system(cmd), 0);
}

/* ---- inputs that used to get a wrong or hanging answer ---- */

/* A NUL inside a line is removed, as the tokenizer removes U+0000 (predict used to cut the
 * line there); a FIFO or a directory given as a file is refused at once. */
Test(rundir, nul_bytes_and_files_that_are_not_regular, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char *out = NULL, run[1100], cmd[4000];
    snprintf(run, sizeof run, "%s/run", dir);
    cr_assert_eq(bertcc(&out, KILL_ARGS " -o %s", dir, dir, dir, run), 0, "%s", out);
    free(out);
    /* predict: "노래\0 틀어줘" reads as "노래 틀어줘", not as "노래" */
    char *with = NULL, *without = NULL, *cut = NULL;
    snprintf(cmd, sizeof cmd,
             "cd %s && printf '아이유 노래\\000 틀어줘\\n' | %s predict --model %s --json",
             BERTCC_SOURCE_DIR, BERTCC_EXE, run);
    cr_assert_eq(tu_run(cmd, &with), 0, "%s", with);
    snprintf(cmd, sizeof cmd,
             "cd %s && printf '아이유 노래 틀어줘\\n' | %s predict --model %s --json",
             BERTCC_SOURCE_DIR, BERTCC_EXE, run);
    cr_assert_eq(tu_run(cmd, &without), 0, "%s", without);
    snprintf(cmd, sizeof cmd, "cd %s && printf '아이유 노래\\n' | %s predict --model %s --json",
             BERTCC_SOURCE_DIR, BERTCC_EXE, run);
    cr_assert_eq(tu_run(cmd, &cut), 0, "%s", cut);
    cr_expect_str_eq(with, without);
    cr_expect(strcmp(with, cut), "the line was cut at the NUL:\n%s", with);
    free(with);
    free(without);
    free(cut);

    /* a FIFO: refused at once (show used to block forever in open) */
    char fifo[1200];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    static const char *const uses[] = {"show %s", "tokenize --vocab %s hello",
                                       "vocab --corpus %s --size 50 -o /dev/null"};
    for (size_t i = 0; i < sizeof uses / sizeof *uses; i++) {
        char args[2000];
        snprintf(args, sizeof args, uses[i], fifo);
        snprintf(cmd, sizeof cmd, "cd %s && timeout 20 %s %s", BERTCC_SOURCE_DIR, BERTCC_EXE,
                 args);
        cr_expect_eq(tu_run(cmd, &out), 1, "%s: %s", args, out);
        cr_expect(strstr(out, "not a regular file"), "%s: %s", args, out);
        free(out);
    }
    /* a directory where a data file belongs */
    char bad[1200];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    snprintf(cmd, sizeof cmd,
             "mkdir %s && cp -r %s/data %s/data && rm %s/data/train/seq.in && "
             "mkdir %s/data/train/seq.in",
             bad, dir, bad, bad, bad);
    cr_assert_eq(system(cmd), 0);
    cr_expect_eq(bertcc(&out, TRAIN_ARGS " --steps 1 -o %s/r2", dir, bad, dir, dir), 1, "%s",
                 out);
    cr_expect(strstr(out, "seq.in: is a directory"), "%s", out);
    free(out);
}

/* A description too large for the graph or the memory is refused before anything is
 * built or allocated, with the numbers (layers="999999999" used to grow memory without
 * bound; 3,000,000 layers took 16 s to fail). */
Test(rundir, descriptions_too_large_are_refused_before_building, .timeout = 120)
{
    const char *dir = tu_tmpdir();
    char *out = NULL, path[1200];
    snprintf(path, sizeof path, "%s/deep.xml", dir);
    cr_assert_eq(tu_write_file(path,
                               "<bert name=\"deep\">\n  <encoder vocab-size=\"100\" "
                               "hidden-size=\"32\" layers=\"999999999\" heads=\"2\"\n"
                               "           intermediate-size=\"64\"/>\n</bert>\n"),
                 0);
    time_t t0 = time(NULL);
    cr_expect_eq(bertcc(&out, "%s --emit=ir", path), 1, "%s", out);
    cr_expect(strstr(out, "layers 999999999") && strstr(out, "limit of 1048576"), "%s", out);
    free(out);
    cr_expect_eq(bertcc(&out, "%s --emit=ir", "models/bert-large.xml"), 0);
    free(out);
    cr_expect_lt(time(NULL) - t0, 30);

    snprintf(path, sizeof path, "%s/wide.xml", dir);
    cr_assert_eq(tu_write_file(path,
                               "<bert name=\"wide\">\n  <encoder vocab-size=\"1000000000\" "
                               "hidden-size=\"64\" layers=\"1\" heads=\"1\"\n"
                               "           intermediate-size=\"64\"/>\n</bert>\n"),
                 0);
    cr_expect_eq(bertcc(&out, "bench %s --mode infer --batch-size 1 --seq-len 2 --iters 1",
                        path),
                 1, "%s", out);
    cr_expect(strstr(out, "parameters need 256 GB") && strstr(out, "memory available"), "%s",
              out);
    free(out);
}

/* Messages that were unclear or wrong, each now one line naming what is wrong. */
Test(rundir, unclear_inputs_get_one_clear_message, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char *out = NULL, run[1100], cmd[4000], p[1200];
    snprintf(run, sizeof run, "%s/run", dir);
    cr_assert_eq(bertcc(&out, KILL_ARGS " -o %s", dir, dir, dir, run), 0, "%s", out);
    free(out);

    /* non-UTF-8 in train/seq.in: the file and the line (was "word 2: invalid UTF-8 at
     * byte 0") */
    snprintf(cmd, sizeof cmd,
             "mkdir %s/u && cp -r %s/data %s/u/data && cd %s/u/data/train && "
             "printf 'abc \\377\\376 def\\n' >> seq.in && echo 'O O O' >> seq.out && "
             "echo next_song >> label",
             dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    int lines = count_lines(tu_path(dir, "data/train/seq.in")) + 1;
    cr_expect_eq(bertcc(&out, TRAIN_ARGS " --steps 1 -o %s/r3", dir, tu_path(dir, "u"), dir,
                        dir),
                 1, "%s", out);
    char want[200];
    snprintf(want, sizeof want, "train/seq.in:%d: invalid UTF-8", lines);
    cr_expect(strstr(out, want), "%s (want %s)", out, want);
    free(out);

    /* an XML file with bad UTF-8: one line (libxml2 added a line of bytes) */
    snprintf(p, sizeof p, "%s/bad.xml", dir);
    cr_assert_eq(tu_write_file(p, "<bert name=\"x\">\n <encoder vocab-size=\"100\" "
                                  "hidden-size=\"32\" layers=\"1\" heads=\"2\" "
                                  "intermediate-size=\"64\"/>\n<!-- \xff\xfe -->\n</bert>\n"),
                 0);
    cr_expect_eq(bertcc(&out, "%s --emit=ir", p), 1);
    cr_expect(strstr(out, "bad.xml:3: invalid UTF-8") && count_newlines(out) == 1, "%s", out);
    free(out);

    /* a mistyped command */
    cr_expect_eq(bertcc(&out, "frobnicate"), 1);
    cr_expect(strstr(out, "unknown command 'frobnicate'"), "%s", out);
    free(out);

    /* config.json: an array is JSON, not XML; keys bertcc does not compute are refused */
    static const struct {
        const char *json, *want;
    } cfgs[] = {
        {"[1, 2]\n", "expected a JSON object (a BertConfig), got an array"},
        {"{\"model_type\": \"roberta\", \"vocab_size\": 100, \"hidden_size\": 32, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 64}",
         "model_type is \"roberta\""},
        {"{\"position_embedding_type\": \"relative_key\", \"vocab_size\": 100, "
         "\"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
         "\"intermediate_size\": 64}",
         "position_embedding_type is \"relative_key\""},
        {"{\"is_decoder\": true, \"vocab_size\": 100, \"hidden_size\": 32, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 64}",
         "is_decoder must be false or absent"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
        snprintf(p, sizeof p, "%s/config.json", dir);
        cr_assert_eq(tu_write_file(p, cfgs[i].json), 0);
        cr_expect_eq(bertcc(&out, "%s --emit=ir", p), 1, "%s", out);
        cr_expect(strstr(out, cfgs[i].want), "%s (want %s)", out, cfgs[i].want);
        free(out);
    }

    /* non-finite weights: refused where the model runs, named; show still shows them */
    rt_tensor_list w;
    rt_list_init(&w);
    bc_err e;
    char best[1200];
    snprintf(best, sizeof best, "%s/best.safetensors", run);
    cr_assert_eq(rt_st_load(best, &w, &e), 0, "%s", e.msg);
    rt_tensor *t = rt_list_find(&w, "intent.classifier.weight");
    cr_assert(t);
    ((float *)t->data)[3] = NAN;
    unlink(best); /* a hard link to nothing else, but written anew all the same */
    cr_assert_eq(rt_st_save(best, &w, &e), 0, "%s", e.msg);
    rt_list_free(&w);
    cr_expect_eq(bertcc(&out, "predict --model %s '아이유 노래 틀어줘'", run), 1, "%s", out);
    cr_expect(strstr(out, "'intent.classifier.weight' holds NaN at flat index 3"), "%s", out);
    free(out);
    cr_expect_eq(bertcc(&out, "show %s", best), 0, "%s", out);
    free(out);

    /* a resumed run whose vocabulary was deleted (was "--task needs --vocab") */
    unlink(tu_path(run, "vocab.txt"));
    cr_expect_eq(bertcc(&out, "train --resume %s --steps 4", run), 1, "%s", out);
    cr_expect(strstr(out, "vocab.txt is missing"), "%s", out);
    free(out);
}

/* A resume killed while it rewrites options.json (its first durable steps) leaves the old
 * file whole (it used to be rewritten in place: an empty file made the run unusable); a
 * torn last line of train_log.csv is dropped, not read as an update. */
Test(rundir, a_resume_killed_while_rewriting_options_and_a_torn_log_line, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    small_set(dir);
    char *out = NULL, base[1100], ref[1100], cmd[8192];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(ref, sizeof ref, "%s/ref", dir);
    cr_assert_eq(bertcc(&out, TRAIN_ARGS " --steps 2 --save-every 1 --quiet -o %s", dir, dir,
                        dir, base),
                 0, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "cp -r %s %s", base, ref);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(bertcc(&out, "train --resume %s --steps 3 --quiet", ref), 0, "%s", out);
    free(out);
    for (int n = 1; n <= 3; n++) {
        char run[1200];
        snprintf(run, sizeof run, "%s/k%d", dir, n);
        snprintf(cmd, sizeof cmd,
                 "cp -r %s %s && cd %s && BERTCC_FAULT_AT=%d exec %s train --resume %s "
                 "--steps 3 --quiet",
                 base, run, BERTCC_SOURCE_DIR, n, BERTCC_EXE, run);
        cr_assert_eq(tu_run(cmd, &out), 128 + 9, "fault point %d: %s", n, out);
        free(out);
        json_error_t je;
        json_t *j = json_load_file(tu_path(run, "options.json"), 0, &je);
        cr_expect(j != NULL, "fault point %d: options.json: %s", n, je.text);
        json_decref(j);
        cr_assert_eq(bertcc(&out, "train --resume %s --steps 3 --quiet", run), 0, "%s", out);
        free(out);
        char a[1300], b[1300];
        snprintf(a, sizeof a, "%s/weights.safetensors", ref);
        snprintf(b, sizeof b, "%s/weights.safetensors", run);
        cr_expect(tu_same_file(a, b), "fault point %d: weights differ", n);
    }
    /* a torn line: an append cut by a kill */
    char torn[1200];
    snprintf(torn, sizeof torn, "%s/torn", dir);
    snprintf(cmd, sizeof cmd, "cp -r %s %s && printf '3,0.4,2.5' >> %s/train_log.csv", base,
             torn, torn);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(bertcc(&out, "train --resume %s --steps 3 --quiet", torn), 0, "%s", out);
    free(out);
    char *log = tu_read_file(tu_path(torn, "train_log.csv"), NULL);
    cr_assert(log);
    cr_expect(!strstr(log, "3,0.4,2.5"), "the torn line was kept:\n%s", log);
    cr_expect_eq(count_newlines(log), 4, "%s", log);
    free(log);
}
