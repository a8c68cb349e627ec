/* test_dist.c: data-parallel training with MPI (train/dist.h), through real ranks:
 * `mpirun -np N bertcc train` against one process accumulating the same shards.
 *
 * The promise checked bit for bit: N ranks with --batch-size G give the weights of one
 * process with --batch-size G/N --accum N (and --accum A under N ranks those of --accum
 * N*A), for any bucket size, run after run; dev metrics equal one process's. Then the
 * failures: a rank that fails or is killed ends the job with a non-zero status (a
 * generous `timeout` guards against a hang; nothing is timed), ranks that diverge are
 * caught, SIGTERM stops every rank at one step with one checkpoint, and a 2-rank run
 * killed mid-way resumes to the uninterrupted bits.
 *
 * Without mpirun (or in a build without MPI) the tests skip, unless BERTCC_REQUIRE_MPI
 * is set (.ci/run sets it), which turns that into a failure. Under the ASan build the
 * ranks' leak check uses tests/lsan-mpi.supp for Open MPI's own allocations. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../train/dist.h"
#include "util.h"

/* Shared memory between the ranks of this host, and the point-to-point layers the
 * suppressions file was written against. Each job keeps its session directory in the
 * test's own directory (the shell has cd'd there): jobs started side by side under
 * /tmp can remove each other's just-made session directory (ctest -j2 once failed with
 * "orte_session_dir failed", session_dir.c line 107; open-mpi/ompi#8510). */
#define MPIRUN                                                                             \
    "timeout 600 mpirun --allow-run-as-root --oversubscribe --mca btl self,vader --mca "   \
    "pml ob1 --mca osc pt2pt --mca orte_tmpdir_base \"$PWD\""
#define MODEL BERTCC_SOURCE_DIR "/models/bert-tiny.xml"

static void need_mpi(void)
{
    int ok = tr_dist_built() && system("command -v mpirun > /dev/null 2>&1") == 0;
    if (ok)
        return;
    if (getenv("BERTCC_REQUIRE_MPI"))
        cr_assert_fail("BERTCC_REQUIRE_MPI is set but %s",
                       tr_dist_built() ? "mpirun is missing" : "this build has no MPI");
    cr_skip_test("needs MPI (mpirun and a build with libopenmpi-dev)");
}

/* A work directory with the demo intent-slot data (D/demo), its vocabulary (D/vocab.txt)
 * and a pre-training corpus made of it (D/corpus.txt: documents of 6 sentences). */
static const char *work(void)
{
    static char dir[1024];
    need_mpi();
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    setenv("LSAN_OPTIONS", "suppressions=" BERTCC_SOURCE_DIR "/tests/lsan-mpi.supp", 1);
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "cd %s && %s demo-data -o demo --per-intent 60 && %s vocab --corpus "
             "demo/train/seq.in --size 400 --no-lowercase -o vocab.txt && awk '{print} "
             "NR%%6==0{print \"\"}' demo/train/seq.in > corpus.txt",
             dir, BERTCC_EXE, BERTCC_EXE);
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, 0, "%s", out ? out : "");
    free(out);
    return dir;
}

#define IS_ARGS "--task intent-slot --data demo --vocab vocab.txt --no-lowercase --seed 3 "
#define PT_ARGS                                                                            \
    "--task pretrain --data corpus.txt --vocab vocab.txt --no-lowercase --seed 5 "         \
    "--max-seq 32 "

/* Runs `cd dir && cmd` (printf-formatted); returns its status, output in *out. */
static int vsh(const char *dir, char **out, const char *fmt, va_list ap)
{
    char cmd[6000];
    int n = snprintf(cmd, sizeof cmd, "cd %s || exit 1; ", dir);
    vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    return tu_run(cmd, out);
}

static int sh(const char *dir, char **out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int sh(const char *dir, char **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vsh(dir, out, fmt, ap);
    va_end(ap);
    return rc;
}

/* sh that must succeed; its output is only shown when it does not */
static void sh_ok(const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sh_ok(const char *dir, const char *fmt, ...)
{
    char *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vsh(dir, &out, fmt, ap);
    va_end(ap);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
}

static int same(const char *dir, const char *a, const char *b)
{
    char pa[2048], pb[2048];
    snprintf(pa, sizeof pa, "%s/%s", dir, a);
    snprintf(pb, sizeof pb, "%s/%s", dir, b);
    return tu_same_file(pa, pb);
}

/* N ranks with G = N * 8 rows against one process with 8 rows and --accum N, on a task:
 * the weights, the best weights and metrics.csv (dev under N ranks) are equal. */
static void ranks_vs_accum(const char *dir, const char *args, int N, const char *tag)
{
    char *out = NULL;
    sh_ok(dir, "%s train %s %s --steps 5 --threads 1 -o one%s --batch-size 8 --accum %d",
          BERTCC_EXE, MODEL, args, tag, N);
    int rc =
        sh(dir, &out, MPIRUN " -np %d %s train %s %s --steps 5 -o many%s --batch-size %d",
           N, BERTCC_EXE, MODEL, args, tag, 8 * N);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "ranks; communication"), "no communication summary: %s", out);
    free(out);
    char a[256], b[256];
    static const char *const files[] = {"weights.safetensors", "best.safetensors",
                                        "metrics.csv", "train_log.csv"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(a, sizeof a, "one%s/%s", tag, files[i]);
        snprintf(b, sizeof b, "many%s/%s", tag, files[i]);
        if (!strcmp(files[i], "train_log.csv"))
            continue; /* its tokens_per_s column is a time */
        cr_expect(same(dir, a, b), "%d ranks: %s differs from one process's %s", N, b, a);
    }
}

Test(dist, two_ranks_give_the_bits_of_one_process_accumulating_two, .timeout = 900)
{
    const char *dir = work();
    ranks_vs_accum(dir, IS_ARGS, 2, "2");
    /* again, and with tiny buckets (many messages): the same bits */
    sh_ok(dir,
          MPIRUN " -np 2 %s train %s " IS_ARGS
                 "--steps 5 -o again --batch-size 16 --dist-bucket-mb 0.001",
          BERTCC_EXE, MODEL);
    cr_expect(same(dir, "many2/weights.safetensors", "again/weights.safetensors"));
}

Test(dist, three_ranks_give_the_bits_of_one_process_accumulating_three, .timeout = 900)
{
    ranks_vs_accum(work(), IS_ARGS, 3, "3");
}

Test(dist, pretraining_on_two_and_three_ranks, .timeout = 900)
{
    const char *dir = work();
    ranks_vs_accum(dir, PT_ARGS, 2, "p2");
    ranks_vs_accum(dir, PT_ARGS, 3, "p3");
}

/* --accum A under N ranks is --accum N*A in one process. */
Test(dist, accumulation_under_ranks, .timeout = 900)
{
    const char *dir = work();
    sh_ok(dir,
          "%s train %s " IS_ARGS "--steps 3 --threads 1 --no-eval -o one "
          "--batch-size 8 --accum 4",
          BERTCC_EXE, MODEL);
    sh_ok(dir,
          MPIRUN " -np 2 %s train %s " IS_ARGS
                 "--steps 3 --no-eval -o two --batch-size 16 --accum 2",
          BERTCC_EXE, MODEL);
    cr_expect(same(dir, "one/weights.safetensors", "two/weights.safetensors"));
}

/* G not divisible by N: uneven shards (5, 5, 6 rows), still the same bits run after run. */
Test(dist, uneven_shards_repeat, .timeout = 900)
{
    const char *dir = work();
    for (int i = 0; i < 2; i++) {
        sh_ok(dir,
              MPIRUN " -np 3 %s train %s " IS_ARGS
                     "--steps 3 --no-eval -o run%d --batch-size 16",
              BERTCC_EXE, MODEL, i);
    }
    cr_expect(same(dir, "run0/weights.safetensors", "run1/weights.safetensors"));
}

/* One rank fails (its data is missing): one `bertcc: rank 1:` line, and the job ends
 * non-zero instead of waiting for that rank. */
Test(dist, a_failing_rank_ends_the_job, .timeout = 900)
{
    const char *dir = work();
    char *out = NULL;
    int rc =
        sh(dir, &out,
           MPIRUN " -np 1 %s train %s " IS_ARGS "--steps 3 -o fail --batch-size 16 : "
                  "-np 1 %s train %s --task intent-slot --data nowhere --vocab "
                  "vocab.txt --no-lowercase --seed 3 --steps 3 -o fail --batch-size 16",
           BERTCC_EXE, MODEL, BERTCC_EXE, MODEL);
    cr_expect_neq(rc, 0, "%s", out);
    cr_expect_neq(rc, 124, "the job hung: %s", out);
    cr_expect(strstr(out, "bertcc: rank 1: ") && strstr(out, "nowhere"), "%s", out);
    free(out);
}

/* Ranks that would train different weights (rank 1 starts from another run's weights,
 * everything else equal) are caught by the weights-hash check before the first update. */
Test(dist, diverging_ranks_are_an_error, .timeout = 900)
{
    const char *dir = work();
    char *out = NULL;
    sh_ok(dir, "%s train %s " IS_ARGS "--steps 2 --warmup 0 --no-eval -o init", BERTCC_EXE,
          MODEL);
    int rc = sh(dir, &out,
                MPIRUN " -np 1 %s train %s " IS_ARGS "--steps 3 -o div --batch-size 16 : "
                       "-np 1 %s train %s " IS_ARGS
                       "--init init/weights.safetensors --steps 3 -o div --batch-size 16",
                BERTCC_EXE, MODEL, BERTCC_EXE, MODEL);
    cr_expect_neq(rc, 0, "%s", out);
    cr_expect_neq(rc, 124, "the job hung: %s", out);
    cr_expect(strstr(out, "the weights of rank 1 differ from rank 0's"), "%s", out);
    free(out);
}

/* Ranks that read other data (rank 1 another --data-seed: other pre-training
 * instances, same shapes) are caught before the first update: weights alone would not
 * show it. */
Test(dist, ranks_with_other_data_are_an_error, .timeout = 900)
{
    const char *dir = work();
    char *out = NULL;
    int rc = sh(dir, &out,
                MPIRUN " -np 1 %s train %s " PT_ARGS "--steps 3 -o other --batch-size 8 : "
                       "-np 1 %s train %s " PT_ARGS
                       "--data-seed 7 --steps 3 -o other --batch-size 8",
                BERTCC_EXE, MODEL, BERTCC_EXE, MODEL);
    cr_expect_neq(rc, 0, "%s", out);
    cr_expect_neq(rc, 124, "the job hung: %s", out);
    cr_expect(strstr(out, "ranks 1 and 0 disagree on the rows of data") ||
                  strstr(out, "ranks 1 and 0 disagree on the data (its bits)"),
              "%s", out);
    free(out);
}

/* A rank killed from outside (SIGKILL to rank 1) ends the job with a non-zero status. */
Test(dist, a_killed_rank_ends_the_job, .timeout = 900)
{
    const char *dir = work();
    char *out = NULL;
    int rc =
        sh(dir, &out,
           MPIRUN
           " -np 2 %s train %s " IS_ARGS
           "--steps 100000 --no-eval --log-every 1 -o killed --batch-size 16 > log 2>&1 & "
           "pid=$!; "
           "for i in $(seq 3000); do grep -q '^step ' log 2>/dev/null && break; sleep 0.1; "
           "done; "
           "for p in $(pgrep -P $(pgrep -P $pid)); do "
           "  tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | "
           "  grep -qx OMPI_COMM_WORLD_RANK=1 && kill -9 $p; "
           "done; wait $pid; echo $?; tail -5 log",
           BERTCC_EXE, MODEL);
    cr_assert_eq(rc, 0, "%s", out);
    int status = atoi(out);
    cr_expect(status != 0 && status != 124, "status %d: %s", status, out);
    cr_expect(strstr(out, "rank 1"), "%s", out);
    free(out);
}

/* Starts a 2-rank run (a fresh one into stopped/, or with resume its continuation),
 * waits for its update `after`, signals it (`to`: "mpirun" or "ranks"), waits for the
 * job, and returns where it stopped: the step of its one "interrupted at step" line,
 * which must also be the checkpoint committed. */
static long long stop_at(const char *dir, int resume, int after, const char *sig,
                         const char *to)
{
    char *out = NULL, args[512];
    if (resume)
        snprintf(args, sizeof args, "--resume stopped --steps 100000 --log-every 1");
    else
        snprintf(args, sizeof args,
                 "%s " IS_ARGS "--steps 100000 --no-eval --log-every 1 -o stopped "
                 "--batch-size 16",
                 MODEL);
    /* timeout is $pid, mpirun its child, the ranks mpirun's children */
    int rc = sh(dir, &out,
                "rm -f log; " MPIRUN " -np 2 %s train %s > log 2>&1 & pid=$!; "
                "for i in $(seq 3000); do grep -q '^step %d/' log 2>/dev/null && break; "
                "sleep 0.1; done; mp=$(pgrep -P $pid); "
                "if [ %s = mpirun ]; then kill -%s $mp; else kill -%s $(pgrep -P $mp); fi; "
                "wait $pid; grep -c 'interrupted at step' log; "
                "sed -n 's/.*interrupted at step \\([0-9]*\\)\\/.*/\\1/p' log; "
                "cat stopped/checkpoints/current; tail -4 log",
                BERTCC_EXE, args, after, to, sig, sig);
    cr_assert_eq(rc, 0, "%s", out);
    int count = 0;
    long long step = 0, cur = -1;
    cr_assert_eq(sscanf(out, "%d %lld step-%lld", &count, &step, &cur), 3, "%s", out);
    cr_expect_eq(count, 1, "%s", out);
    cr_expect(step >= after && cur == step, "%s", out);
    free(out);
    return step;
}

/* SIGUSR1 to mpirun (which forwards it to every rank as it is; SIGINT and SIGTERM make
 * mpirun abort the job itself) and SIGTERM to the ranks (what a scheduler sends): every
 * rank stops at the same update, rank 0 writes one checkpoint, and the run resumes from
 * it under two ranks. */
Test(dist, a_signal_stops_every_rank_at_one_step, .timeout = 900)
{
    const char *dir = work();
    long long s1 = stop_at(dir, 0, 3, "USR1", "mpirun");
    long long s2 = stop_at(dir, 1, (int)s1 + 3, "TERM", "ranks");
    cr_expect_gt(s2, s1);
    char *out = NULL;
    int rc = sh(dir, &out, MPIRUN " -np 2 %s train --resume stopped --steps %lld",
                BERTCC_EXE, s2 + 2);
    cr_expect_eq(rc, 0, "%s", out);
    char want[64];
    snprintf(want, sizeof want, "%lld/%lld steps", s2 + 2, s2 + 2);
    cr_expect(strstr(out, want), "%s", out);
    free(out);
}

/* A 2-rank run whose rank 0 is killed after its first checkpoint resumes under 2 ranks
 * to the bits of an uninterrupted run (one process accumulating two), dev metrics and
 * best weights included; under one process it continues too (validly, not the same
 * bits: its micro-batches are whole). */
Test(dist, a_killed_two_rank_run_resumes_exactly, .timeout = 900)
{
    const char *dir = work();
    char *out = NULL;
    sh_ok(dir,
          "%s train %s " IS_ARGS "--steps 12 --save-every 4 --threads 1 -o one "
          "--batch-size 8 --accum 2",
          BERTCC_EXE, MODEL);
    /* the 40th durable step of rank 0 (the writer) comes after the first checkpoint */
    int rc = sh(dir, &out,
                "BERTCC_FAULT_AT=40 " MPIRUN " -np 2 %s train %s " IS_ARGS
                "--steps 12 --save-every 4 -o two --batch-size 16",
                BERTCC_EXE, MODEL);
    cr_assert_neq(rc, 0, "the fault point did not fire: %s", out);
    free(out);
    cr_assert_eq(sh(dir, &out, "cat two/checkpoints/current && cp -a two solo"), 0,
                 "no checkpoint before the kill: %s", out);
    free(out);
    sh_ok(dir, MPIRUN " -np 2 %s train --resume two", BERTCC_EXE);
    cr_expect(same(dir, "one/weights.safetensors", "two/weights.safetensors"));
    cr_expect(same(dir, "one/best.safetensors", "two/best.safetensors"));
    cr_expect(same(dir, "one/metrics.csv", "two/metrics.csv"));
    rc = sh(dir, &out, "%s train --resume solo", BERTCC_EXE);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect(strstr(out, "12/12 steps"), "%s", out);
    cr_expect(strstr(out, "written by 2 processes, this run has 1"), "%s", out);
    free(out);
}

/* The fold in one process (no MPI needed): the first present shard replaces the sum,
 * the next ones add to it, an absent one adds nothing (not even a zero: -0 stays -0),
 * and the first element whose sum overflows is found. */
Test(dist, the_fold_adds_as_accumulation_does)
{
    enum { n = 70001 }; /* past the threads' threshold, not a multiple of a vector */
    static float acc[n], g[n];
    tr_fold f;
    bc_err e;
    cr_assert_eq(tr_fold_init(&f, acc, n, 4096, &e), 0, "%s", e.msg);
    unsigned char yes = 1, no = 0;
    for (int i = 0; i < n; i++)
        g[i] = (float)(i % 7) - 3.0f;
    g[5] = -0.0f;
    tr_fold_begin(&f);
    cr_assert_eq(tr_fold_add(&f, g, &yes, &e), 0);
    cr_assert_eq(tr_fold_add(&f, g, &no, &e), 0);
    cr_expect(signbit(acc[5]) && acc[5] == 0, "an absent shard changed -0");
    cr_assert_eq(tr_fold_add(&f, g, &yes, &e), 0);
    cr_assert_eq(tr_fold_finish(&f, &e), 0);
    for (int i = 0; i < n; i++)
        if (acc[i] != g[i] + g[i])
            cr_assert_fail("element %d: %g, expected %g", i, (double)acc[i],
                           (double)(g[i] + g[i]));
    cr_expect_eq(f.bad, -1);
    g[60000] = FLT_MAX;
    g[65000] = FLT_MAX;
    tr_fold_begin(&f);
    cr_assert_eq(tr_fold_add(&f, g, &yes, &e), 0);
    cr_expect_eq(f.bad, -1);
    cr_assert_eq(tr_fold_add(&f, g, &yes, &e), 0);
    cr_expect_eq(f.bad, 60000, "the first overflow is at 60000, found %lld",
                 (long long)f.bad);
    tr_fold_free(&f);
}
