/* test_bench.c: `bertcc bench` — the FLOP count of the graphs it times against counts
 * made by hand from the model's sizes, tk_bench in process (every head's random
 * labels, both backends), and the command's output and refusals. No timing is checked
 * against a threshold: only that the figures are positive and agree with each other. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"
#include "tasks/bench.h"
#include "util.h"

static fe_model load(const char *rel)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load(tu_src(rel), &m, &e), 0, "%s", e.msg);
    return m;
}

/* The forward's matmuls counted from the sizes alone: per layer the Q, K, V and output
 * projections (4 of [T,H]x[H,H]), the feed-forward pair ([T,H]x[H,I], [T,I]x[I,H]),
 * and the attention scores and their weighted sum (2 of B*A [S,dh]x[dh,S] = B*S*S*H
 * terms each); the pooler [B,H]x[H,H]; each head's layers. T = B*S. */
static double forward_flops(const fe_model *m, double B, double S)
{
    double H = (double)m->hidden_size, I = (double)m->intermediate_size, T = B * S;
    double layer = 4 * 2 * T * H * H + 2 * 2 * T * H * I + 2 * 2 * B * S * S * H;
    double f = (double)m->layers * layer + 2 * B * H * H;
    if (m->head_mask & FE_HEAD_MLM) /* transform [H,H], decoder [H,V] */
        f += 2 * T * H * H + 2 * T * H * (double)m->vocab_size;
    if (m->head_mask & FE_HEAD_NSP)
        f += 2 * B * H * 2;
    if (m->head_mask & FE_HEAD_INTENT)
        f += 2 * B * H * (double)m->intent_classes;
    if (m->head_mask & FE_HEAD_SLOT)
        f += 2 * T * H * (double)m->slot_labels;
    if (m->head_mask & FE_HEAD_QA)
        f += 2 * T * H * 2;
    return f;
}

static void expect_flops(const char *rel)
{
    fe_model m = load(rel);
    bc_err e = {{0}};
    ir_graph *inf = tk_bench_graph(&m, TK_BENCH_INFER, NULL, &e);
    cr_assert_not_null(inf, "%s", e.msg);
    ir_graph *tr = tk_bench_graph(&m, TK_BENCH_TRAIN, NULL, &e);
    cr_assert_not_null(tr, "%s", e.msg);
    static const int64_t sizes[][2] = {{1, 128}, {3, 17}};
    for (int i = 0; i < 2; i++) {
        int64_t B = sizes[i][0], S = sizes[i][1];
        double want = forward_flops(&m, (double)B, (double)S);
        double got = ir_matmul_flops(inf, B, S);
        cr_expect_eq(got, want, "%s forward at B=%lld S=%lld: %.17g, by hand %.17g", rel,
                     (long long)B, (long long)S, got, want);
        /* Backward: every matmul's two operand gradients (all depend on parameters, the
         * word embeddings included), so a training step is three forwards. */
        got = ir_matmul_flops(tr, B, S);
        cr_expect_eq(got, 3 * want, "%s training step at B=%lld S=%lld: %.17g, 3x %.17g",
                     rel, (long long)B, (long long)S, got, 3 * want);
    }
    ir_graph_free(inf);
    ir_graph_free(tr);
}

Test(bench_flops, bert_tiny_forward_and_training_step_match_the_hand_count)
{
    expect_flops("models/bert-tiny.xml");
}

Test(bench_flops, every_head_counts)
{
    expect_flops("models/bert-tiny-all-heads.xml");
}

Test(bench_flops, bert_tiny_at_two_sizes_in_numbers)
{
    /* bert-tiny: L=2 H=128 I=512 V=30522; at B=1 S=128 (T=128), per layer
     * 4*2*128*128*128 + 2*2*128*128*512 + 2*2*128*128*128 = 16777216 + 33554432 +
     * 8388608; pooler 2*128*128; MLM 2*128*128*128 + 2*128*128*30522; NSP 2*128*2. */
    fe_model m = load("models/bert-tiny.xml");
    bc_err e = {{0}};
    ir_graph *g = tk_bench_graph(&m, TK_BENCH_INFER, NULL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    cr_expect_eq(ir_matmul_flops(g, 1, 128),
                 2 * 58720256.0 + 32768 + 4194304 + 1000144896 + 512);
    /* B=2 S=64 (T=128 again): the attention terms become 2*2*2*64*64*128 = 4194304, the
     * pooler and NSP double. */
    cr_expect_eq(ir_matmul_flops(g, 2, 64), 2 * (16777216.0 + 33554432 + 4194304) + 65536 +
                                                4194304 + 1000144896 + 1024);
    ir_graph_free(g);
}

/* ---- in process ---- */

/* The options of a bench of rel (a path in the source tree) at B, S. */
static tk_bench_opts opts_for(const char *rel, tk_bench_mode mode, int64_t B, int64_t S)
{
    tk_bench_opts o;
    tk_bench_defaults(&o);
    o.model = tu_src(rel);
    o.mode = mode;
    o.batch_size = B;
    o.seq_len = S;
    return o;
}

static tk_bench_result run_bench(const tk_bench_opts *o)
{
    tk_bench_result r;
    bc_err e = {{0}};
    cr_assert_eq(tk_bench(o, &r, &e), 0, "%s", e.msg);
    return r;
}

static tk_bench_result bench(const char *rel, tk_bench_mode mode, cg_backend backend,
                             int64_t B, int64_t S, int64_t iters)
{
    tk_bench_opts o = opts_for(rel, mode, B, S);
    o.backend = backend;
    o.iters = iters;
    o.threads = 1;
    return run_bench(&o);
}

static void expect_consistent(const tk_bench_result *r, const char *what)
{
    cr_expect(r->ms_per_iter > 0 && r->ms_min > 0 && r->ms_min <= r->ms_per_iter &&
                  r->ms_per_iter <= r->ms_max,
              "%s: ms %g (min %g, max %g)", what, r->ms_per_iter, r->ms_min, r->ms_max);
    double tps = (double)(r->batch_size * r->seq_len) / (r->ms_per_iter / 1e3);
    cr_expect(fabs(r->tokens_per_s - tps) <= 1e-9 * tps, "%s: %g tokens/s, expected %g",
              what, r->tokens_per_s, tps);
    double gfs = r->gflop_per_iter / (r->ms_per_iter / 1e3);
    cr_expect(r->gflop_per_iter > 0 && fabs(r->gflop_per_s - gfs) <= 1e-9 * gfs,
              "%s: %g GFLOP/s, expected %g", what, r->gflop_per_s, gfs);
    cr_expect(r->peak_rss_mb > 1, "%s: peak RSS %g MB", what, r->peak_rss_mb);
    cr_expect(r->compile_s >= 0 && r->cpu[0], "%s", what);
}

Test(bench, train_step_with_every_head_runs_on_both_backends, .timeout = 300)
{
    fe_model m = load("models/bert-tiny-all-heads.xml");
    static const cg_backend backends[] = {CG_BACKEND_JIT, CG_BACKEND_REF};
    for (int i = 0; i < 2; i++) {
        tk_bench_result r =
            bench("models/bert-tiny-all-heads.xml", TK_BENCH_TRAIN, backends[i], 2, 8, 2);
        expect_consistent(&r, backends[i] == CG_BACKEND_JIT ? "jit" : "ref");
        cr_expect_str_eq(r.model, "bert-tiny-all-heads");
        cr_expect(r.mode == TK_BENCH_TRAIN && r.backend == backends[i] && r.threads == 1 &&
                  r.iters == 2 && r.batch_size == 2 && r.seq_len == 8);
        cr_expect_eq(r.gflop_per_iter * 1e9, 3 * forward_flops(&m, 2, 8));
    }
}

Test(bench, infer_counts_the_graph_it_runs)
{
    fe_model m = load("models/bert-tiny.xml");
    tk_bench_result r =
        bench("models/bert-tiny.xml", TK_BENCH_INFER, CG_BACKEND_JIT, 3, 17, 3);
    expect_consistent(&r, "infer");
    cr_expect_eq(r.gflop_per_iter * 1e9, forward_flops(&m, 3, 17));
}

/* bench with --profile: every step of the graph in exactly one row, the rows' matmul
 * FLOPs adding up to the graph's, their time within the iterations' time. */
static tk_bench_result profiled(const char *rel, tk_bench_mode mode, const char *fuse,
                                int64_t B, int64_t S)
{
    tk_bench_opts o = opts_for(rel, mode, B, S);
    o.iters = 2;
    o.threads = 2;
    o.fuse = fuse;
    o.profile = 1;
    return run_bench(&o);
}

static void expect_profile(const tk_bench_result *r, const ir_graph *g, double flops)
{
    rt_plan p;
    bc_err e;
    cr_assert_eq(rt_plan_build(g, &p, &e), 0, "%s", e.msg);
    int steps = 0;
    double f = 0, ms = 0;
    cr_assert(r->nprof > 0 && r->nprof <= p.nkernels, "%d rows, %d kernels", r->nprof,
              p.nkernels);
    for (int i = 0; i < r->nprof; i++) {
        const cg_profile_row *row = &r->prof[i];
        cr_expect(row->steps > 0 && row->seconds >= 0 && row->what[0], "row %d: %s", i,
                  row->what);
        cr_expect(i == 0 || r->prof[i - 1].seconds >= row->seconds, "not slowest first");
        steps += row->steps;
        f += row->flops;
        ms += 1e3 * row->seconds;
    }
    cr_expect_eq(steps, p.nsteps);
    cr_expect(fabs(f - flops) <= 1e-12 * flops, "rows' FLOPs %.17g, the graph's %.17g", f,
              flops);
    cr_expect(ms <= r->prof_ms_mean * (1 + 1e-9) && ms > 0,
              "steps %g ms of a %g ms iteration", ms, r->prof_ms_mean);
    cr_expect(fabs(ms + r->prof_ms_outside - r->prof_ms_mean) <= 1e-9 * r->prof_ms_mean);
    rt_plan_free(&p);
}

static int has_row(const tk_bench_result *r, const char *prefix)
{
    for (int i = 0; i < r->nprof; i++)
        if (!strncmp(r->prof[i].what, prefix, strlen(prefix)))
            return 1;
    return 0;
}

Test(bench, profile_shows_each_kernel_once_and_every_step, .timeout = 300)
{
    fe_model m = load("models/bert-tiny.xml");
    bc_err e;
    for (int fused = 0; fused < 2; fused++) {
        const char *fuse = fused ? "all" : "none";
        tk_bench_result r = profiled("models/bert-tiny.xml", TK_BENCH_INFER, fuse, 3, 17);
        ir_graph *g = tk_bench_graph(&m, TK_BENCH_INFER, fuse, &e);
        cr_assert_not_null(g, "%s", e.msg);
        expect_profile(&r, g, forward_flops(&m, 3, 17));
        cr_expect_eq(has_row(&r, "fused(matmul+add) f32[B, S, 128]"), fused, "%s", fuse);
        cr_expect_eq(has_row(&r, "fused(matmul+attn_softmax) f32[B, S, 128]"), fused);
        cr_expect_eq(has_row(&r, "matmul f32["), !fused, "%s", fuse);
        cr_expect(has_row(&r, "layernorm f32[B, S, 128]"));
        ir_graph_free(g);
        tk_bench_result_free(&r);
        cr_expect(!r.prof && !r.nprof);
    }
    /* a training step: forward and backward, with the optimizer outside the steps */
    tk_bench_result r = profiled("models/bert-tiny.xml", TK_BENCH_TRAIN, NULL, 2, 8);
    ir_graph *g = tk_bench_graph(&m, TK_BENCH_TRAIN, NULL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    expect_profile(&r, g, 3 * forward_flops(&m, 2, 8));
    ir_graph_free(g);
    tk_bench_result_free(&r);
}

Test(bench, profiling_the_reference_interpreter_is_refused)
{
    tk_bench_opts o = opts_for("models/bert-tiny.xml", TK_BENCH_INFER, 1, 4);
    o.backend = CG_BACKEND_REF;
    o.iters = 1;
    o.profile = 1;
    tk_bench_result r;
    bc_err e = {{0}};
    cr_expect_eq(tk_bench(&o, &r, &e), -1);
    cr_expect(strstr(e.msg, "profiling needs the jit backend"), "%s", e.msg);
}

Test(bench, refuses_bad_sizes_and_training_without_heads)
{
    tk_bench_opts o;
    tk_bench_defaults(&o);
    cr_expect(o.batch_size == 8 && o.seq_len == 128 && o.iters == 10 && o.warmup == 1 &&
              o.threads == 0 && o.mode == TK_BENCH_INFER &&
              o.backend == CG_BACKEND_DEFAULT);
    o.model = tu_src("models/bert-tiny.xml");
    tk_bench_result r;
    bc_err e = {{0}};
    o.seq_len = 513;
    cr_expect_eq(tk_bench(&o, &r, &e), -1);
    cr_expect_str_eq(e.msg, "sequence length 513 is beyond bert-tiny's max-position 512");
    o.seq_len = 128;
    o.iters = 0;
    cr_expect_eq(tk_bench(&o, &r, &e), -1);
    cr_expect(strstr(e.msg, "must be positive"), "%s", e.msg);

    fe_model m = load("models/bert-tiny.xml");
    m.head_mask = 0;
    snprintf(m.name, sizeof m.name, "encoder-only");
    cr_expect_null(tk_bench_graph(&m, TK_BENCH_TRAIN, NULL, &e));
    cr_expect(strstr(e.msg, "encoder-only has no heads"), "%s", e.msg);
    ir_graph *g = tk_bench_graph(&m, TK_BENCH_INFER, NULL, &e);
    cr_expect_not_null(g, "%s", e.msg);
    cr_expect(ir_find_output(g, "pooled_output") >= 0 &&
              ir_find_output(g, "sequence_output") >= 0 && g->nout == 2);
    ir_graph_free(g);
}

/* ---- the command ---- */

static json_t *bench_json(const char *args)
{
    char *out = NULL;
    int rc = tu_bertcc(&out, "bench %s --json", args);
    cr_assert_eq(rc, 0, "bench %s: %s", args, out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je); /* one object, nothing else on the output */
    cr_assert_not_null(j, "bench %s: not one JSON object (%s): %s", args, je.text, out);
    free(out);
    return j;
}

static double num(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_number(v), "%s missing or not a number", key);
    return json_number_value(v);
}

static void expect_sane(json_t *j)
{
    static const char *const positive[] = {"ms_per_iter", "tokens_per_s", "gflop_per_s",
                                           "peak_rss_mb", "batch_size",   "seq_len",
                                           "threads",     "iters"};
    for (size_t i = 0; i < sizeof positive / sizeof *positive; i++)
        cr_expect(num(j, positive[i]) > 0, "%s = %g", positive[i], num(j, positive[i]));
    cr_expect(num(j, "compile_s") >= 0);
    double tps = num(j, "batch_size") * num(j, "seq_len") / (num(j, "ms_per_iter") / 1e3);
    cr_expect(fabs(num(j, "tokens_per_s") - tps) <= 1e-6 * tps, "tokens_per_s %g, B*S/t %g",
              num(j, "tokens_per_s"), tps);
    double gfs = num(j, "gflop_per_iter") / (num(j, "ms_per_iter") / 1e3);
    cr_expect(fabs(num(j, "gflop_per_s") - gfs) <= 1e-6 * gfs);
    static const char *const strings[] = {"model", "mode", "cpu", "backend"};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
        const char *s = json_string_value(json_object_get(j, strings[i]));
        cr_expect(s && *s, "%s missing or empty", strings[i]);
    }
}

Test(bench_cli, infer_json_has_every_key_and_sane_values, .timeout = 300)
{
    json_t *j = bench_json("models/bert-tiny.xml --mode infer --iters 2");
    expect_sane(j);
    cr_expect_str_eq(json_string_value(json_object_get(j, "model")), "bert-tiny");
    cr_expect_str_eq(json_string_value(json_object_get(j, "mode")), "infer");
    cr_expect_eq(num(j, "batch_size"), 8); /* the defaults */
    cr_expect_eq(num(j, "seq_len"), 128);
    cr_expect_eq(num(j, "iters"), 2);
    fe_model m = load("models/bert-tiny.xml");
    cr_expect_eq(num(j, "gflop_per_iter") * 1e9, forward_flops(&m, 8, 128));
    json_decref(j);
}

Test(bench_cli, train_on_a_model_with_heads, .timeout = 300)
{
    json_t *j = bench_json("models/bert-tiny.xml --mode train --iters 2 --batch-size 2 "
                           "--seq-len 16 --threads 1 --seed 3");
    expect_sane(j);
    cr_expect_str_eq(json_string_value(json_object_get(j, "mode")), "train");
    cr_expect_eq(num(j, "threads"), 1);
    json_decref(j);
    /* DESIGN.md §5 spells the sizes --batch and --seq. */
    j = bench_json("models/bert-tiny.xml --mode=train --iters=1 --batch 1 --seq 8 "
                   "--backend ref");
    cr_expect_eq(num(j, "batch_size"), 1);
    cr_expect_eq(num(j, "seq_len"), 8);
    cr_expect_str_eq(json_string_value(json_object_get(j, "backend")), "ref");
    json_decref(j);
}

Test(bench_cli, prints_one_line_without_json, .timeout = 300)
{
    char *out = NULL;
    cr_assert_eq(tu_bertcc(&out, "bench models/bert-tiny.xml --mode infer --iters 1 "
                                 "--batch-size 1 --seq-len 8 --threads 1"),
                 0, "%s", out);
    cr_expect(!strncmp(out, "bert-tiny infer B=1 S=8: ", 25), "%s", out);
    cr_expect(strstr(out, " ms/iter, ") && strstr(out, " tokens/s, ") &&
                  strstr(out, " GFLOP/s, peak RSS ") &&
                  strstr(out, "median of 1; 1 thread,"),
              "%s", out);
    char *nl = strchr(out, '\n');
    cr_expect(nl && !nl[1], "not one line: %s", out);
    free(out);
}

Test(bench_cli, profile_prints_a_table_after_the_line, .timeout = 300)
{
    char *out = NULL;
    cr_assert_eq(tu_bertcc(&out, "bench models/bert-tiny.xml --mode infer --iters 1 "
                                 "--batch-size 2 --seq-len 9 --threads 1 --profile"),
                 0, "%s", out);
    char *l2 = strchr(out, '\n');
    cr_assert(l2, "%s", out);
    cr_expect(!strncmp(out, "bert-tiny infer B=2 S=9: ", 25), "%s", out);
    cr_expect(strstr(l2, "ms/iter") && strstr(l2, "share") && strstr(l2, "GFLOP/s") &&
                  strstr(l2, "kernel\n") &&
                  strstr(l2, "fused(matmul+add+gelu) f32[B, S, 512]") &&
                  strstr(l2, "(outside the graph's steps: inputs, outputs)\n"),
              "%s", out);
    free(out);
    json_t *j = bench_json("models/bert-tiny.xml --mode infer --iters 1 --batch-size 2 "
                           "--seq-len 9 --threads 1 --profile");
    json_t *a = json_object_get(j, "profile");
    cr_assert(json_is_array(a) && json_array_size(a) > 0);
    /* no timing is asserted: only that the rows and the time outside them add up */
    double share = 0, ms = 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *row = json_array_get(a, i);
        cr_expect(json_string_value(json_object_get(row, "kernel")) &&
                  num(row, "steps") >= 1 && num(row, "ms_per_iter") >= 0 &&
                  num(row, "share") >= 0 && num(row, "gflop_per_s") >= 0);
        share += num(row, "share");
        ms += num(row, "ms_per_iter");
    }
    double outside = num(j, "profile_ms_outside");
    cr_expect(share <= 1 + 1e-9, "shares add up to %g", share);
    cr_expect(share == 0 || fabs(ms + outside - ms / share) <= 1e-6 * (ms / share),
              "rows %g ms + outside %g ms against a mean of %g ms", ms, outside,
              share > 0 ? ms / share : 0);
    json_decref(j);
}

/* One message on stderr (nothing on stdout) and exit status 1. */
static void expect_refused(const char *args, const char *want)
{
    char *out = NULL;
    int rc = tu_bertcc(&out, "bench %s", args);
    cr_expect_eq(rc, 1, "bench %s: exit %d: %s", args, rc, out);
    cr_expect(out && strstr(out, want), "bench %s: %s, expected '%s'", args, out, want);
    char *nl = out ? strchr(out, '\n') : NULL;
    cr_expect(out && !strncmp(out, "bertcc", 6) && nl && !nl[1],
              "bench %s: not one message: %s", args, out);
    free(out);
}

Test(bench_cli, train_without_heads_is_refused)
{
    const char *dir = tu_tmpdir();
    const char *path = tu_path(dir, "encoder.xml");
    cr_assert_eq(tu_write_file(path, "<bert name=\"encoder\">\n"
                                     "  <encoder vocab-size=\"50\" hidden-size=\"16\" "
                                     "layers=\"1\" heads=\"2\" intermediate-size=\"32\"/>\n"
                                     "</bert>\n"),
                 0);
    char args[1200];
    snprintf(args, sizeof args, "%s --mode train --iters 1", path);
    expect_refused(args, "encoder has no heads, so there is no loss to train");
    snprintf(args, sizeof args,
             "%s --mode infer --iters 1 --batch-size 1 --seq-len 4 --json", path);
    json_t *j = bench_json(args);
    expect_sane(j);
    json_decref(j);
}

Test(bench_cli, bad_options_are_refused)
{
    const char *m = "models/bert-tiny.xml";
    char a[256];
#define REFUSED(want, ...) (snprintf(a, sizeof a, __VA_ARGS__), expect_refused(a, want))
    REFUSED("--mode expects infer or train", "%s --mode fast", m);
    REFUSED("--mode infer|train is required", "%s --iters 1", m);
    REFUSED("--batch-size expects an integer", "%s --mode infer --batch-size 0", m);
    REFUSED("--batch-size expects an integer", "%s --mode infer --batch 2x", m);
    REFUSED("--seq-len expects an integer", "%s --mode infer --seq-len -5", m);
    REFUSED("--iters expects an integer", "%s --mode infer --iters many", m);
    REFUSED("--threads expects an integer", "%s --mode infer --threads 0", m);
    REFUSED("--seed expects an integer", "%s --mode infer --seed -1", m);
    REFUSED("--backend expects jit or ref", "%s --mode infer --backend gpu", m);
    REFUSED("sequence length 513 is beyond bert-tiny's max-position 512",
            "%s --mode infer --seq-len 513", m);
    REFUSED("unknown option '--turbo'", "%s --mode infer --turbo", m);
    REFUSED("expected one model description", "--mode infer");
    REFUSED("cannot open", "models/no-such-model.xml --mode infer");
#undef REFUSED
}

Test(bench_cli, help_names_the_defaults)
{
    char *out = NULL;
    cr_assert_eq(tu_bertcc(&out, "bench --help"), 0, "%s", out);
    cr_expect(strstr(out, "usage: bertcc bench MODEL.xml --mode infer|train") &&
                  strstr(out, "(default 8)") && strstr(out, "(default 128)") &&
                  strstr(out, "(default 10)") && strstr(out, "all cores") &&
                  strstr(out, "ms_per_iter"),
              "%s", out);
    free(out);
}
