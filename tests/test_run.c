/* test_run.c: the `bertcc run` contract of DESIGN.md §5, through the executable and
 * through the library calls the driver makes: the fixtures in tests/fixtures/run_*
 * (computed by the independent PyTorch oracle), every documented input error, BERT
 * initialization without --weights, and the older Hugging Face checkpoint spellings and
 * 16-bit dtypes of DESIGN.md §3. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../train/batch.h"
#include "../runtime/interp.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "util.h"

/* ---- temporary directory, one per test -------------------------------------------- */

static char tmp[128]; /* this test's directory under /tmp */

static void mk_tmp(void)
{
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    cr_assert(strncmp(tmp, "/tmp/bertcc-test-", 17) == 0, "no temporary directory");
}

static void rm_tmp(void)
{
    char cmd[256];
    if (strncmp(tmp, "/tmp/bertcc-test-", 17) != 0)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
}

#define T(suite, name) Test(suite, name, .init = mk_tmp, .fini = rm_tmp)

/* A file in this test's directory (rotating static buffers, copy to keep). */
static const char *tp(const char *name)
{
    static char bufs[16][256];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, 256, "%s/%s", tmp, name);
    return b;
}

/* A fixture file: tests/fixtures/FIXTURE/FILE in the source tree. */
static const char *fx(const char *fixture, const char *file)
{
    static char bufs[16][1024];
    static int k;
    char *b = bufs[k++ % 16];
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/%s/%s", fixture, file);
    snprintf(b, 1024, "%s", tu_src(rel));
    return b;
}

/* ---- running the executable ------------------------------------------------------- */

/* Runs `bertcc ARGS` with stdout discarded (to_stdout 0) or stderr discarded (1); the
 * other stream goes to *text (malloc'd). Returns the exit status, -1 for a signal. */
static int vbertcc(char **text, int to_stdout, const char *fmt, va_list ap)
{
    char args[4096], cmd[8192];
    vsnprintf(args, sizeof args, fmt, ap);
    snprintf(cmd, sizeof cmd, "'%s' %s %s", BERTCC_EXE, args,
             to_stdout ? "2>/dev/null" : ">/dev/null");
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    if (!out)
        out = calloc(1, 1);
    cr_assert_not_null(out);
    *text = out;
    return rc;
}

/* stderr of `bertcc ARGS` into *err; returns the exit status. */
static int bertcc(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bertcc(char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vbertcc(err, 0, fmt, ap);
    va_end(ap);
    return rc;
}

static void expect_no_sanitizer_report(const char *text)
{
    cr_expect(!strstr(text, "Sanitizer") && !strstr(text, "runtime error"),
              "sanitizer report:\n%s", text);
}

/* Asserts that `bertcc ARGS` exits with status 1, says something on stderr that
 * contains needle, writes no output file tp("out.st"), and does not crash. */
static void expect_fail(const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void expect_fail(const char *needle, const char *fmt, ...)
{
    char *err;
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = bertcc(&err, "%s", args);
    cr_expect_eq(rc, 1, "bertcc %s: exit status %d, want 1; stderr:\n%s", args, rc, err);
    cr_expect(strstr(err, needle) != NULL, "bertcc %s: stderr lacks '%s':\n%s", args,
              needle, err);
    expect_no_sanitizer_report(err);
    FILE *f = fopen(tp("out.st"), "rb");
    cr_expect(f == NULL, "bertcc %s failed but wrote its output file", args);
    if (f)
        fclose(f);
    free(err);
}

/* ---- tensors ---------------------------------------------------------------------- */

static void load(const char *path, rt_tensor_list *l)
{
    bc_err e;
    rt_list_init(l);
    cr_assert_eq(rt_st_load(path, l, &e), 0, "%s", e.msg);
}

static void save(const char *path, const rt_tensor_list *l)
{
    bc_err e;
    cr_assert_eq(rt_st_save(path, l, &e), 0, "%s", e.msg);
}

/* Values of a float tensor (F32 or F64) as doubles; caller frees. */
static double *values(const rt_tensor *t)
{
    int64_t n = rt_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert_not_null(v);
    cr_assert(t->dtype == RT_F32 || t->dtype == RT_F64, "%s has dtype %s", t->name,
              rt_dtype_name(t->dtype));
    for (int64_t i = 0; i < n; i++)
        v[i] =
            t->dtype == RT_F32 ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
    return v;
}

static int same_shape(const rt_tensor *a, const rt_tensor *b)
{
    if (a->rank == b->rank &&
        !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->rank))
        return 1;
    /* A scalar may be written as [] or [1]. */
    return a->rank <= 1 && b->rank <= 1 && rt_numel(a) == 1 && rt_numel(b) == 1;
}

/* DESIGN.md §5: every tensor of exp is in out with its shape (a scalar as [] or [1]),
 * max|out - exp| <= rtol * max|exp| + atol, and out holds nothing else. */
static void expect_matches(const rt_tensor_list *exp, const rt_tensor_list *out,
                           double rtol, double atol, const char *what)
{
    for (int i = 0; i < exp->n; i++) {
        const rt_tensor *e = &exp->t[i];
        const rt_tensor *o = rt_list_cfind(out, e->name);
        cr_expect_not_null(o, "%s: output lacks '%s'", what, e->name);
        if (!o)
            continue;
        char s1[96], s2[96];
        cr_expect(same_shape(e, o), "%s: '%s' has shape %s, expected %s", what, e->name,
                  rt_shape_str(o->rank, o->shape, s1, sizeof s1),
                  rt_shape_str(e->rank, e->shape, s2, sizeof s2));
        if (!same_shape(e, o))
            continue;
        cr_expect_eq(o->dtype, RT_F32, "%s: '%s' has dtype %s, expected F32", what, e->name,
                     rt_dtype_name(o->dtype));
        double *ev = values(e), *ov = values(o), err = 0, big = 0;
        for (int64_t k = 0; k < rt_numel(e); k++) {
            double d = fabs(ov[k] - ev[k]);
            err = (d > err || isnan(d)) ? d : err;
            big = fabs(ev[k]) > big ? fabs(ev[k]) : big;
        }
        double tol = rtol * big + atol;
        cr_expect(err <= tol, "%s: '%s' max error %.3g exceeds %.3g", what, e->name, err,
                  tol);
        free(ev);
        free(ov);
    }
    for (int i = 0; i < out->n; i++)
        cr_expect_not_null(rt_list_cfind(exp, out->t[i].name),
                           "%s: unexpected output tensor '%s'", what, out->t[i].name);
}

static void expect_files_match(const char *expected, const char *out, const char *what)
{
    rt_tensor_list e, o;
    load(expected, &e);
    load(out, &o);
    expect_matches(&e, &o, 1e-4, 1e-6, what);
    rt_list_free(&e);
    rt_list_free(&o);
}

/* Same names, dtypes, shapes and bits. */
static void expect_identical(const rt_tensor_list *a, const rt_tensor_list *b,
                             const char *what)
{
    cr_expect_eq(a->n, b->n, "%s: %d vs %d tensors", what, a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const rt_tensor *x = &a->t[i], *y = rt_list_cfind(b, x->name);
        cr_expect_not_null(y, "%s: '%s' missing", what, x->name);
        if (!y)
            continue;
        cr_expect(x->dtype == y->dtype && x->rank == y->rank &&
                      !memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->rank),
                  "%s: '%s' differs in dtype or shape", what, x->name);
        if (rt_nbytes(x) == rt_nbytes(y))
            cr_expect(!memcmp(x->data, y->data, rt_nbytes(x)), "%s: '%s' differs", what,
                      x->name);
    }
}

static void expect_files_identical(const char *a, const char *b, const char *what)
{
    rt_tensor_list x, y;
    load(a, &x);
    load(b, &y);
    expect_identical(&x, &y, what);
    rt_list_free(&x);
    rt_list_free(&y);
}

/* ---- batches for run_tiny (V 37, T 2, P 16, intent 5 classes, slot 7 labels) ------ */

#define TB 2
#define TS 4

static rt_tensor *put(rt_tensor_list *l, const char *name, int rank, int64_t d0, int64_t d1,
                      const int64_t *v)
{
    int64_t shape[2] = {d0, d1};
    rt_tensor *t = rt_list_add(l, name, RT_I64, rank, shape, v);
    cr_assert_not_null(t);
    return t;
}

static void tiny_inputs(rt_tensor_list *l)
{
    static const int64_t ids[TB * TS] = {1, 2, 3, 4, 5, 6, 7, 36};
    static const int64_t tt[TB * TS] = {0, 0, 1, 1, 0, 0, 0, 1};
    static const int64_t mask[TB * TS] = {1, 1, 1, 1, 1, 1, 1, 0};
    rt_list_init(l);
    put(l, "input_ids", 2, TB, TS, ids);
    put(l, "token_type_ids", 2, TB, TS, tt);
    put(l, "attention_mask", 2, TB, TS, mask);
}

static void tiny_labels(rt_tensor_list *l)
{
    static const int64_t mlm[TB * TS] = {-100, 5, -100, 36, 0, -100, -100, -100};
    static const int64_t nsp[TB] = {0, 1};
    static const int64_t intent[TB] = {4, 0};
    static const int64_t slot[TB * TS] = {6, 0, 1, -100, 2, 3, 4, -100};
    static const int64_t start[TB] = {0, 3};
    static const int64_t end[TB] = {3, 1};
    put(l, "mlm_labels", 2, TB, TS, mlm);
    put(l, "nsp_labels", 1, TB, 0, nsp);
    put(l, "intent_labels", 1, TB, 0, intent);
    put(l, "slot_labels", 2, TB, TS, slot);
    put(l, "start_positions", 1, TB, 0, start);
    put(l, "end_positions", 1, TB, 0, end);
}

/* Writes l to tp(name) and frees it; returns the path (static, rotating). */
static const char *save_batch(rt_tensor_list *l, const char *name)
{
    const char *p = tp(name);
    save(p, l);
    rt_list_free(l);
    return p;
}

/* Runs run_tiny with its fixture weights on batch file `batch`, expecting failure
 * that names `needle`. */
static void expect_tiny_fails(const char *batch, const char *needle)
{
    char b[256];
    snprintf(b, sizeof b, "%s", batch);
    expect_fail(needle, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                fx("run_tiny", "model.xml"), fx("run_tiny", "weights.safetensors"), b,
                tp("out.st"));
}

/* ---- the fixtures, through the executable ----------------------------------------- */

static void run_fixture(const char *name)
{
    char *err;
    const char *out = tp("out.st");
    int rc =
        bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s'", fx(name, "model.xml"),
               fx(name, "weights.safetensors"), fx(name, "batch.safetensors"), out);
    cr_assert_eq(rc, 0, "%s: exit status %d:\n%s", name, rc, err);
    expect_no_sanitizer_report(err);
    free(err);
    expect_files_match(fx(name, "expected.safetensors"), out, name);
}

T(run_cli, run_tiny_all_heads_matches_the_oracle)
{
    run_fixture("run_tiny");
}

T(run_cli, run_tanh_noheads_i32_without_mask_matches_the_oracle)
{
    run_fixture("run_tanh_noheads");
}

T(run_cli, run_mlm_nsp_with_an_all_ignored_row_matches_the_oracle)
{
    run_fixture("run_mlm_nsp");
}

T(run_cli, thread_counts_give_identical_files)
{
    char *err;
    const char *m = fx("run_mlm_nsp", "model.xml"),
               *w = fx("run_mlm_nsp", "weights.safetensors");
    const char *b = fx("run_mlm_nsp", "batch.safetensors");
    char o1[256], o2[256];
    snprintf(o1, sizeof o1, "%s", tp("t1.st"));
    snprintf(o2, sizeof o2, "%s", tp("t2.st"));
    cr_assert_eq(bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s' --threads 1", m,
                        w, b, o1),
                 0, "%s", err);
    free(err);
    cr_assert_eq(bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s' --threads 2", m,
                        w, b, o2),
                 0, "%s", err);
    free(err);
    expect_files_identical(o1, o2, "--threads 1 vs 2");
}

/* ---- the same through the library ------------------------------------------------- */

/* What `bertcc run` does, with the public headers; outputs appended to out. */
static void api_run(const char *fixture, const char *weights, int threads, int f64,
                    rt_tensor_list *out)
{
    fe_model m;
    bc_err e;
    rt_tensor_list batch, inputs, ckpt, params;
    rt_list_init(&inputs);
    rt_list_init(&params);
    cr_assert_eq(fe_load(fx(fixture, "model.xml"), &m, &e), 0, "%s", e.msg);
    load(fx(fixture, "batch.safetensors"), &batch);
    unsigned present = 0;
    int64_t B = 0, S = 0;
    cr_assert_eq(tr_batch_prepare(&batch, m.max_position, m.head_mask & FE_LABEL_ALL,
                                  &inputs, &present, &B, &S, NULL, NULL, &e),
                 0, "%s", e.msg);
    const rt_tensor *ids = rt_list_cfind(&batch, "input_ids");
    cr_expect(B == ids->shape[0] && S == ids->shape[1], "B=%lld S=%lld", (long long)B,
              (long long)S);
    ir_graph *g = fe_build_bert(&m, present, &e);
    cr_assert_not_null(g, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    load(weights ? weights : fx(fixture, "weights.safetensors"), &ckpt);
    cr_assert_eq(rt_params_from_checkpoint(g, &ckpt, 0, 0, &params, NULL, NULL, &e), 0,
                 "%s", e.msg);
    rt_interp_opts o = {f64, threads};
    cr_assert_eq(rt_interp_run(g, &params, &inputs, &o, out, &e), 0, "%s", e.msg);
    ir_graph_free(g);
    rt_list_free(&batch);
    rt_list_free(&inputs);
    rt_list_free(&ckpt);
    rt_list_free(&params);
}

Test(run_api, library_calls_match_the_oracle_with_identical_bits_for_1_and_2_threads)
{
    static const char *const fixtures[] = {"run_tiny", "run_tanh_noheads", "run_mlm_nsp"};
    for (int i = 0; i < 3; i++) {
        rt_tensor_list o1, o2, exp;
        rt_list_init(&o1);
        rt_list_init(&o2);
        api_run(fixtures[i], NULL, 1, 0, &o1);
        api_run(fixtures[i], NULL, 2, 0, &o2);
        load(fx(fixtures[i], "expected.safetensors"), &exp);
        expect_matches(&exp, &o1, 1e-4, 1e-6, fixtures[i]);
        expect_identical(&o1, &o2, fixtures[i]);
        rt_list_free(&o1);
        rt_list_free(&o2);
        rt_list_free(&exp);
    }
}

/* ---- errors ------------------------------------------------------------------------ */

T(run_errors, missing_model_file_is_named)
{
    rt_tensor_list l;
    tiny_inputs(&l);
    const char *b = save_batch(&l, "b.st");
    expect_fail("/nonexistent-dir/model.xml",
                "run /nonexistent-dir/model.xml --weights '%s' --batch '%s' -o '%s'",
                fx("run_tiny", "weights.safetensors"), b, tp("out.st"));
}

T(run_errors, malformed_model_xml_gives_file_and_line)
{
    char model[256], b[256];
    snprintf(model, sizeof model, "%s", tp("bad.xml"));
    cr_assert_eq(tu_write_file(model, "<bert name=\"bad\">\n"
                                      "  <encoder vocab-size=\"37\" hidden-size=\"12\"\n"
                                      "           layers=\"2\" heads=\"3\" <oops/>\n"
                                      "</bert>\n"),
                 0);
    rt_tensor_list l;
    tiny_inputs(&l);
    snprintf(b, sizeof b, "%s", save_batch(&l, "b.st"));
    char *err;
    int rc = bertcc(&err, "run '%s' --batch '%s' -o '%s'", model, b, tp("out.st"));
    cr_expect_eq(rc, 1, "exit status %d:\n%s", rc, err);
    expect_no_sanitizer_report(err);
    const char *at = strstr(err, model);
    cr_assert_not_null(at, "stderr does not name %s:\n%s", model, err);
    at += strlen(model);
    long line = 0;
    char c = 0;
    cr_expect(sscanf(at, ":%ld%c", &line, &c) == 2 && line >= 1 && line <= 4 && c == ':',
              "no FILE:LINE: in:\n%s", err);
    free(err);
}

T(run_errors, batch_without_input_ids_is_named)
{
    rt_tensor_list l;
    tiny_inputs(&l);
    rt_list_remove(&l, "input_ids");
    expect_tiny_fails(save_batch(&l, "b.st"), "input_ids");
}

T(run_errors, float_input_ids_are_named)
{
    rt_tensor_list l;
    tiny_inputs(&l);
    float f[TB * TS] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t shape[2] = {TB, TS};
    cr_assert(rt_list_add(&l, "input_ids", RT_F32, 2, shape, f));
    expect_tiny_fails(save_batch(&l, "b.st"), "input_ids");
}

T(run_errors, ids_outside_the_vocabulary_are_named)
{
    static const int64_t big[TB * TS] = {1, 2, 3, 4, 5, 6, 7, 37};
    static const int64_t neg[TB * TS] = {1, -1, 3, 4, 5, 6, 7, 8};
    rt_tensor_list l;
    tiny_inputs(&l);
    put(&l, "input_ids", 2, TB, TS, big);
    expect_tiny_fails(save_batch(&l, "b1.st"), "input_ids");
    tiny_inputs(&l);
    put(&l, "input_ids", 2, TB, TS, neg);
    expect_tiny_fails(save_batch(&l, "b2.st"), "input_ids");
}

T(run_errors, token_types_outside_the_type_vocabulary_are_named)
{
    static const int64_t tt[TB * TS] = {0, 0, 1, 2, 0, 0, 0, 0};
    rt_tensor_list l;
    tiny_inputs(&l);
    put(&l, "token_type_ids", 2, TB, TS, tt);
    expect_tiny_fails(save_batch(&l, "b.st"), "token_type_ids");
}

T(run_errors, attention_mask_value_2_is_named)
{
    static const int64_t mask[TB * TS] = {1, 1, 2, 1, 1, 1, 1, 0};
    rt_tensor_list l;
    tiny_inputs(&l);
    put(&l, "attention_mask", 2, TB, TS, mask);
    expect_tiny_fails(save_batch(&l, "b.st"), "attention_mask");
}

T(run_errors, each_label_out_of_range_is_named)
{
    /* One bad value per label tensor: classes are V 37, 2, 5, 7 and S 4 positions. */
    static const struct {
        const char *name;
        int64_t bad;
    } cases[] = {
        {"mlm_labels", 37},     {"mlm_labels", -1},   {"nsp_labels", 2},
        {"intent_labels", 5},   {"slot_labels", 7},   {"slot_labels", -2},
        {"start_positions", 4}, {"end_positions", 4}, {"end_positions", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rt_tensor_list l;
        tiny_inputs(&l);
        tiny_labels(&l);
        rt_tensor *t = rt_list_find(&l, cases[i].name);
        ((int64_t *)t->data)[rt_numel(t) - 1] = cases[i].bad;
        char name[32];
        snprintf(name, sizeof name, "b%zu.st", i);
        expect_tiny_fails(save_batch(&l, name), cases[i].name);
    }
}

/* Reads scalar `name` of an output file. */
static double scalar(const rt_tensor_list *l, const char *name)
{
    const rt_tensor *t = rt_list_cfind(l, name);
    cr_assert_not_null(t, "no '%s' in the output", name);
    cr_assert(t->rank <= 1 && rt_numel(t) == 1, "'%s' is not a scalar", name);
    double *v = values(t), x = v[0];
    free(v);
    return x;
}

T(run_errors, ignored_labels_are_accepted_and_all_ignored_losses_are_zero)
{
    static const char *const losses[] = {"mlm_loss",  "nsp_loss", "intent_loss",
                                         "slot_loss", "qa_loss",  "loss"};
    rt_tensor_list l, o;
    char b[256], *err;
    /* Some -100s (tiny_labels has them in mlm and slot): every loss is written. */
    tiny_inputs(&l);
    tiny_labels(&l);
    snprintf(b, sizeof b, "%s", save_batch(&l, "some.st"));
    int rc = bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                    fx("run_tiny", "model.xml"), fx("run_tiny", "weights.safetensors"), b,
                    tp("o1.st"));
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    load(tp("o1.st"), &o);
    for (int i = 0; i < 6; i++)
        cr_expect(scalar(&o, losses[i]) > 0, "%s is not positive", losses[i]);
    rt_list_free(&o);
    /* Every label -100: accepted, and every loss is 0 (no NaN from 0/0). */
    tiny_inputs(&l);
    tiny_labels(&l);
    for (int i = 0; i < l.n; i++)
        if (strcmp(l.t[i].name, "input_ids") && strcmp(l.t[i].name, "token_type_ids") &&
            strcmp(l.t[i].name, "attention_mask"))
            for (int64_t k = 0; k < rt_numel(&l.t[i]); k++)
                ((int64_t *)l.t[i].data)[k] = -100;
    snprintf(b, sizeof b, "%s", save_batch(&l, "all.st"));
    rc = bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                fx("run_tiny", "model.xml"), fx("run_tiny", "weights.safetensors"), b,
                tp("o2.st"));
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    load(tp("o2.st"), &o);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(scalar(&o, losses[i]), 0.0, "%s = %g, want 0", losses[i],
                     scalar(&o, losses[i]));
    rt_list_free(&o);
}

T(run_errors, float_labels_and_an_empty_batch_are_named)
{
    rt_tensor_list l;
    tiny_inputs(&l);
    tiny_labels(&l);
    float f[TB] = {0, 1};
    int64_t shape[2] = {TB, 0};
    cr_assert(rt_list_add(&l, "nsp_labels", RT_F32, 1, shape, f));
    expect_tiny_fails(save_batch(&l, "b1.st"), "nsp_labels");
    int64_t empty[2] = {0, TS};
    rt_list_init(&l);
    cr_assert(rt_list_add(&l, "input_ids", RT_I64, 2, empty, NULL));
    expect_tiny_fails(save_batch(&l, "b2.st"), "input_ids");
    int64_t flat[1] = {TS};
    rt_list_init(&l);
    cr_assert(rt_list_add(&l, "input_ids", RT_I64, 1, flat, NULL));
    expect_tiny_fails(save_batch(&l, "b3.st"), "input_ids");
}

T(run_cli, an_all_padding_row_gives_finite_outputs)
{
    /* The mask adds a large finite negative, so a row with every key masked is a
     * uniform softmax, not 0/0. */
    static const int64_t mask[TB * TS] = {1, 1, 1, 0, 0, 0, 0, 0};
    rt_tensor_list l, o;
    tiny_inputs(&l);
    tiny_labels(&l);
    put(&l, "attention_mask", 2, TB, TS, mask);
    char b[256], *err;
    snprintf(b, sizeof b, "%s", save_batch(&l, "b.st"));
    int rc = bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                    fx("run_tiny", "model.xml"), fx("run_tiny", "weights.safetensors"), b,
                    tp("out.st"));
    cr_assert_eq(rc, 0, "exit status %d:\n%s", rc, err);
    free(err);
    load(tp("out.st"), &o);
    cr_expect_eq(o.n, 14);
    for (int i = 0; i < o.n; i++) {
        double *v = values(&o.t[i]);
        for (int64_t k = 0; k < rt_numel(&o.t[i]); k++)
            cr_expect(isfinite(v[k]), "%s[%lld] = %g", o.t[i].name, (long long)k, v[k]);
        free(v);
    }
    rt_list_free(&o);
}

T(run_errors, sequence_longer_than_max_position_is_rejected)
{
    int64_t ids[17] = {0}, shape[2] = {1, 17};
    rt_tensor_list l;
    rt_list_init(&l);
    cr_assert(rt_list_add(&l, "input_ids", RT_I64, 2, shape, ids));
    expect_tiny_fails(save_batch(&l, "b.st"), "max-position");
}

T(run_errors, token_type_ids_shape_mismatch_is_named)
{
    static const int64_t tt[TB * 3] = {0};
    rt_tensor_list l;
    tiny_inputs(&l);
    put(&l, "token_type_ids", 2, TB, 3, tt);
    expect_tiny_fails(save_batch(&l, "b.st"), "token_type_ids");
}

T(run_errors, start_positions_without_end_positions_is_rejected)
{
    rt_tensor_list l;
    tiny_inputs(&l);
    tiny_labels(&l);
    rt_list_remove(&l, "end_positions");
    expect_tiny_fails(save_batch(&l, "b.st"), "end_positions");
}

/* Writes the run_tiny weights with `edit` applied to tp(name); returns the path. */
static const char *tiny_weights_with(void (*edit)(rt_tensor_list *), const char *name)
{
    rt_tensor_list w;
    load(fx("run_tiny", "weights.safetensors"), &w);
    edit(&w);
    const char *p = tp(name);
    save(p, &w);
    rt_list_free(&w);
    return p;
}

static void drop_output_bias(rt_tensor_list *w)
{
    cr_assert_eq(rt_list_remove(w, "bert.encoder.layer.1.output.dense.bias"), 1);
}

static void misshape_nsp(rt_tensor_list *w)
{
    int64_t shape[2] = {3, 12};
    cr_assert(rt_list_add(w, "cls.seq_relationship.weight", RT_F32, 2, shape, NULL));
}

static void expect_tiny_weights_fail(const char *weights, const char *needle)
{
    char wp[256];
    snprintf(wp, sizeof wp, "%s", weights);
    expect_fail(needle, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                fx("run_tiny", "model.xml"), wp, fx("run_tiny", "batch.safetensors"),
                tp("out.st"));
}

T(run_errors, weights_missing_a_tensor_name_it)
{
    expect_tiny_weights_fail(tiny_weights_with(drop_output_bias, "w.st"),
                             "bert.encoder.layer.1.output.dense.bias");
}

T(run_errors, weights_with_a_misshaped_tensor_name_it)
{
    expect_tiny_weights_fail(tiny_weights_with(misshape_nsp, "w.st"),
                             "cls.seq_relationship.weight");
}

T(run_errors, corrupt_weights_file_is_named)
{
    char wp[256];
    snprintf(wp, sizeof wp, "%s", tp("corrupt.safetensors"));
    cr_assert_eq(tu_write_file(wp, "\x40\0\0\0\0\0\0\0{\"a\": {\"dtype\": \"F32\""), 0);
    expect_tiny_weights_fail(wp, "corrupt.safetensors");
    cr_assert_eq(tu_write_file(wp, "not a safetensors file"), 0);
    expect_tiny_weights_fail(wp, "corrupt.safetensors");
}

T(run_errors, grads_without_labels_is_an_error_about_labels)
{
    expect_fail("labels", "run '%s' --weights '%s' --batch '%s' -o '%s' --grads",
                fx("run_tanh_noheads", "model.xml"),
                fx("run_tanh_noheads", "weights.safetensors"),
                fx("run_tanh_noheads", "batch.safetensors"), tp("out.st"));
}

T(run_errors, unknown_option_is_named)
{
    expect_fail("--frobnicate", "run '%s' --batch '%s' -o '%s' --frobnicate",
                fx("run_tiny", "model.xml"), fx("run_tiny", "batch.safetensors"),
                tp("out.st"));
}

T(run_errors, missing_output_option_is_reported)
{
    expect_fail("-o", "run '%s' --weights '%s' --batch '%s'", fx("run_tiny", "model.xml"),
                fx("run_tiny", "weights.safetensors"), fx("run_tiny", "batch.safetensors"));
}

T(run_errors, bad_thread_count_is_named)
{
    expect_fail("threads", "run '%s' --batch '%s' -o '%s' --threads zero",
                fx("run_tiny", "model.xml"), fx("run_tiny", "batch.safetensors"),
                tp("out.st"));
}

T(run_cli, help_exits_0_and_prints_usage_on_stdout)
{
    char args[4][300];
    snprintf(args[0], 300, "--help");
    snprintf(args[1], 300, "run --help");
    snprintf(args[2], 300, "show --help");
    snprintf(args[3], 300, "'%s' --help", tu_src("models/bert-tiny.xml"));
    for (int i = 0; i < 4; i++) {
        char *out;
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", BERTCC_EXE, args[i]);
        int rc = tu_run(cmd, &out);
        cr_expect_eq(rc, 0, "bertcc %s: exit status %d", args[i], rc);
        cr_expect(out && strstr(out, "usage"), "bertcc %s: no usage on stdout:\n%s",
                  args[i], out ? out : "");
        free(out);
    }
}

/* ---- labels for heads the model lacks --------------------------------------------- */

T(run_cli, labels_for_missing_heads_give_a_note_and_are_ignored)
{
    /* run_tanh_noheads: vocab 11, max-position 8, no heads; I32 batch. */
    int32_t ids[2 * 3] = {1, 2, 3, 4, 5, 10};
    int64_t mlm[2 * 3] = {-100, 3, -100, 4, -100, -100}, nsp[2] = {0, 1};
    int64_t shape[2] = {2, 3};
    rt_tensor_list l;
    rt_list_init(&l);
    cr_assert(rt_list_add(&l, "input_ids", RT_I32, 2, shape, ids));
    put(&l, "mlm_labels", 2, 2, 3, mlm);
    put(&l, "nsp_labels", 1, 2, 0, nsp);
    char b[256], *err;
    snprintf(b, sizeof b, "%s", save_batch(&l, "b.st"));
    int rc = bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                    fx("run_tanh_noheads", "model.xml"),
                    fx("run_tanh_noheads", "weights.safetensors"), b, tp("out.st"));
    cr_assert_eq(rc, 0, "exit status %d:\n%s", rc, err);
    cr_expect(strstr(err, "mlm_labels") && strstr(err, "nsp_labels"),
              "no note naming the ignored labels:\n%s", err);
    expect_no_sanitizer_report(err);
    free(err);
    rt_tensor_list o;
    load(tp("out.st"), &o);
    cr_expect_eq(o.n, 2, "%d outputs, want sequence_output and pooled_output", o.n);
    cr_expect_not_null(rt_list_cfind(&o, "sequence_output"));
    cr_expect_not_null(rt_list_cfind(&o, "pooled_output"));
    rt_list_free(&o);
}

/* ---- initialization without --weights --------------------------------------------- */

T(run_init, same_seed_same_outputs_different_seed_different_outputs)
{
    char *err;
    const char *m = fx("run_tiny", "model.xml"), *b = fx("run_tiny", "batch.safetensors");
    const char *names[3] = {"s7a.st", "s7b.st", "s8.st"};
    const int seeds[3] = {7, 7, 8};
    char paths[3][256];
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "%s", tp(names[i]));
        int rc = bertcc(&err, "run '%s' --batch '%s' -o '%s' --seed %d", m, b, paths[i],
                        seeds[i]);
        cr_assert_eq(rc, 0, "exit status %d:\n%s", rc, err);
        free(err);
    }
    expect_files_identical(paths[0], paths[1], "seed 7 twice");
    rt_tensor_list x, y;
    load(paths[0], &x);
    load(paths[2], &y);
    const rt_tensor *a = rt_list_cfind(&x, "sequence_output"),
                    *c = rt_list_cfind(&y, "sequence_output");
    cr_assert(a && c && rt_nbytes(a) == rt_nbytes(c));
    cr_expect(memcmp(a->data, c->data, rt_nbytes(a)) != 0, "seeds 7 and 8 agree");
    rt_list_free(&x);
    rt_list_free(&y);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static ir_graph *build(const char *model_rel, unsigned heads_keep, int keep_all)
{
    fe_model m;
    bc_err e;
    cr_assert_eq(fe_load(tu_src(model_rel), &m, &e), 0, "%s", e.msg);
    if (!keep_all)
        m.head_mask &= heads_keep;
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    return g;
}

Test(run_init, params_follow_bert_initialization)
{
    ir_graph *g = build("models/bert-tiny-all-heads.xml", 0, 1);
    rt_tensor_list p;
    bc_err e;
    rt_list_init(&p);
    cr_assert_eq(rt_params_init(g, 42, &p, &e), 0, "%s", e.msg);
    int nparams = 0, nbig = 0;
    for (int i = 0; i < g->n; i++)
        nparams += g->nodes[i].op == IR_OP_PARAM;
    cr_expect_eq(p.n, nparams, "%d params initialized of %d", p.n, nparams);
    for (int i = 0; i < p.n; i++) {
        const rt_tensor *t = &p.t[i];
        const float *w = t->data;
        int64_t n = rt_numel(t);
        cr_assert_eq(t->dtype, RT_F32, "%s", t->name);
        if (ends_with(t->name, "LayerNorm.weight")) {
            for (int64_t k = 0; k < n; k++)
                cr_assert_eq(w[k], 1.0f, "%s[%lld] = %g", t->name, (long long)k, w[k]);
            continue;
        }
        if (ends_with(t->name, "bias")) {
            for (int64_t k = 0; k < n; k++)
                cr_assert_eq(w[k], 0.0f, "%s[%lld] = %g", t->name, (long long)k, w[k]);
            continue;
        }
        double sum = 0, sq = 0, mx = 0;
        for (int64_t k = 0; k < n; k++) {
            sum += w[k];
            sq += (double)w[k] * w[k];
            mx = fabs(w[k]) > mx ? fabs(w[k]) : mx;
        }
        double mean = sum / (double)n, sd = sqrt(sq / (double)n - mean * mean);
        cr_expect(isfinite(sd) && mx < 0.02 * 10, "%s: max |w| %g", t->name, mx);
        if (n < 10000)
            continue;
        nbig++;
        /* Standard errors are 0.02/sqrt(n) for the mean and ~0.02/sqrt(2n) for sd. */
        cr_expect(fabs(sd - 0.02) <= 0.002, "%s: std %g, want 0.02", t->name, sd);
        cr_expect(fabs(mean) <= 6 * 0.02 / sqrt((double)n), "%s: mean %g, want 0", t->name,
                  mean);
    }
    cr_expect(nbig >= 10, "only %d big weight tensors", nbig);
    /* Each parameter has its own stream. */
    const rt_tensor *q =
        rt_list_cfind(&p, "bert.encoder.layer.0.attention.self.query.weight");
    const rt_tensor *k =
        rt_list_cfind(&p, "bert.encoder.layer.0.attention.self.key.weight");
    cr_assert(q && k);
    cr_expect(memcmp(q->data, k->data, rt_nbytes(q)) != 0, "query and key weights agree");
    rt_list_free(&p);
    ir_graph_free(g);
}

Test(run_init, encoder_init_does_not_depend_on_the_heads_and_follows_the_seed)
{
    ir_graph *all = build("models/bert-tiny-all-heads.xml", 0, 1);
    ir_graph *none = build("models/bert-tiny-all-heads.xml", 0, 0);
    rt_tensor_list a, b, c;
    bc_err e;
    rt_list_init(&a);
    rt_list_init(&b);
    rt_list_init(&c);
    cr_assert_eq(rt_params_init(all, 5, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_params_init(none, 5, &b, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_params_init(none, 6, &c, &e), 0, "%s", e.msg);
    cr_expect_lt(b.n, a.n);
    int differ = 0;
    for (int i = 0; i < b.n; i++) {
        const rt_tensor *x = &b.t[i], *y = rt_list_cfind(&a, x->name), *z = &c.t[i];
        cr_assert_not_null(y, "%s", x->name);
        cr_expect(!memcmp(x->data, y->data, rt_nbytes(x)), "%s depends on the heads",
                  x->name);
        differ |= memcmp(x->data, z->data, rt_nbytes(x)) != 0;
    }
    cr_expect(differ, "seeds 5 and 6 give the same parameters");
    rt_list_free(&a);
    rt_list_free(&b);
    rt_list_free(&c);
    ir_graph_free(all);
    ir_graph_free(none);
}

/* ---- checkpoints: older spellings, tied decoder, 16-bit dtypes -------------------- */

/* Hugging Face's older spelling of one of our names. */
static void old_name(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s", strncmp(name, "bert.", 5) ? name : name + 5);
    size_t n = strlen(buf);
    if (ends_with(buf, "LayerNorm.weight"))
        snprintf(buf + n - 6, len - (n - 6), "gamma");
    else if (ends_with(buf, "LayerNorm.bias"))
        snprintf(buf + n - 4, len - (n - 4), "beta");
}

/* run_tiny's weights in the old spelling with position_ids and a decoder weight
 * (equal to the word embeddings, or with one value changed when perturb). */
static const char *old_style_weights(int perturb, const char *file)
{
    rt_tensor_list w, o;
    load(fx("run_tiny", "weights.safetensors"), &w);
    rt_list_init(&o);
    int renamed = 0;
    for (int i = 0; i < w.n; i++) {
        char nm[256];
        old_name(w.t[i].name, nm, sizeof nm);
        renamed += strcmp(nm, w.t[i].name) != 0;
        cr_assert(
            rt_list_add(&o, nm, w.t[i].dtype, w.t[i].rank, w.t[i].shape, w.t[i].data));
    }
    cr_assert_gt(renamed, 20);
    cr_assert_not_null(rt_list_cfind(&o, "encoder.layer.0.output.LayerNorm.gamma"));
    cr_assert_not_null(rt_list_cfind(&o, "cls.predictions.transform.LayerNorm.beta"));
    int64_t pos[16], pshape[2] = {1, 16};
    for (int i = 0; i < 16; i++)
        pos[i] = i;
    cr_assert(rt_list_add(&o, "embeddings.position_ids", RT_I64, 2, pshape, pos));
    const rt_tensor *we = rt_list_cfind(&w, "bert.embeddings.word_embeddings.weight");
    cr_assert_not_null(we);
    rt_tensor *dec =
        rt_list_add(&o, "cls.predictions.decoder.weight", RT_F32, 2, we->shape, we->data);
    cr_assert_not_null(dec);
    if (perturb)
        ((float *)dec->data)[17] += 1e-3f;
    const char *p = tp(file);
    save(p, &o);
    rt_list_free(&w);
    rt_list_free(&o);
    return p;
}

/* Runs run_tiny's batch with weights W into tp(out); asserts success. */
static void run_tiny_with(const char *weights, const char *out)
{
    char w[256], o[256], *err;
    snprintf(w, sizeof w, "%s", weights);
    snprintf(o, sizeof o, "%s", out);
    int rc = bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                    fx("run_tiny", "model.xml"), w, fx("run_tiny", "batch.safetensors"), o);
    cr_assert_eq(rc, 0, "exit status %d:\n%s", rc, err);
    expect_no_sanitizer_report(err);
    free(err);
}

T(run_weights, older_hf_spellings_give_the_same_outputs)
{
    char ref[256], old[256];
    snprintf(ref, sizeof ref, "%s", tp("ref.st"));
    snprintf(old, sizeof old, "%s", tp("old.st"));
    run_tiny_with(fx("run_tiny", "weights.safetensors"), ref);
    run_tiny_with(old_style_weights(0, "w_old.st"), old);
    expect_files_match(fx("run_tiny", "expected.safetensors"), old, "old spellings");
    expect_files_identical(ref, old, "old spellings vs current");
}

T(run_weights, a_decoder_weight_that_differs_from_the_embeddings_is_an_error)
{
    expect_tiny_weights_fail(old_style_weights(1, "w_bad.st"),
                             "cls.predictions.decoder.weight");
}

T(run_weights, extra_tensors_are_ignored_with_a_note)
{
    rt_tensor_list w;
    load(fx("run_tiny", "weights.safetensors"), &w);
    int64_t shape[1] = {3};
    cr_assert(rt_list_add(&w, "something.else.entirely", RT_F32, 1, shape, NULL));
    char wp[256], *err;
    snprintf(wp, sizeof wp, "%s", tp("w.st"));
    save(wp, &w);
    rt_list_free(&w);
    int rc = bertcc(&err, "run '%s' --weights '%s' --batch '%s' -o '%s'",
                    fx("run_tiny", "model.xml"), wp, fx("run_tiny", "batch.safetensors"),
                    tp("out.st"));
    cr_assert_eq(rc, 0, "exit status %d:\n%s", rc, err);
    cr_expect(strstr(err, "something.else.entirely") != NULL, "no note:\n%s", err);
    free(err);
    expect_files_match(fx("run_tiny", "expected.safetensors"), tp("out.st"),
                       "extra tensors");
}

/* Converts run_tiny's weights to dtype dt (F16 or BF16) into tp(half), and writes the
 * same values rounded but stored as F32 into tp(rounded). */
static void half_weights(rt_dtype dt, const char *half, const char *rounded)
{
    rt_tensor_list w, h, r;
    load(fx("run_tiny", "weights.safetensors"), &w);
    rt_list_init(&h);
    rt_list_init(&r);
    for (int i = 0; i < w.n; i++) {
        const rt_tensor *t = &w.t[i];
        cr_assert_eq(t->dtype, RT_F32);
        rt_tensor *a = rt_list_add(&h, t->name, dt, t->rank, t->shape, NULL);
        rt_tensor *b = rt_list_add(&r, t->name, RT_F32, t->rank, t->shape, NULL);
        cr_assert(a && b);
        for (int64_t k = 0; k < rt_numel(t); k++) {
            float x = ((const float *)t->data)[k];
            uint16_t bits = dt == RT_BF16 ? rt_f32_to_bf16(x) : rt_f32_to_f16(x);
            ((uint16_t *)a->data)[k] = bits;
            ((float *)b->data)[k] =
                dt == RT_BF16 ? rt_bf16_to_f32(bits) : rt_f16_to_f32(bits);
        }
    }
    save(half, &h);
    save(rounded, &r);
    rt_list_free(&w);
    rt_list_free(&h);
    rt_list_free(&r);
}

static void check_half(rt_dtype dt, double rtol)
{
    char wh[256], wr[256], oh[256], orr[256];
    snprintf(wh, sizeof wh, "%s", tp("w_half.st"));
    snprintf(wr, sizeof wr, "%s", tp("w_rounded.st"));
    snprintf(oh, sizeof oh, "%s", tp("o_half.st"));
    snprintf(orr, sizeof orr, "%s", tp("o_rounded.st"));
    half_weights(dt, wh, wr);
    run_tiny_with(wh, oh);
    run_tiny_with(wr, orr);
    /* Conversion on load is exact: the same bits as F32 weights holding those values. */
    expect_files_identical(oh, orr, rt_dtype_name(dt));
    /* And those values are the weights, to the dtype's precision. */
    rt_tensor_list e, o;
    load(fx("run_tiny", "expected.safetensors"), &e);
    load(oh, &o);
    expect_matches(&e, &o, rtol, 1e-6, rt_dtype_name(dt));
    rt_list_free(&e);
    rt_list_free(&o);
}

T(run_weights, bf16_weights_load_by_conversion)
{
    /* bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 2e-3); through two
     * layers and the heads that grows to a few times that. */
    check_half(RT_BF16, 0.05);
}

T(run_weights, f16_weights_load_by_conversion)
{
    /* f16 keeps 11 bits: 8 times finer than bf16 (measured: 4 to 5 times closer). */
    check_half(RT_F16, 0.01);
}
