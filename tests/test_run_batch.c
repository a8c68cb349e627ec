/* test_run_batch.c: tk_run_batch (tasks/run_batch.h), `bertcc run` as a library call:
 * the oracle's outputs on the fixtures with either backend, gradients against PyTorch's,
 * the same bits as the executable writes, notes through the caller's function, and
 * errors that name the file and the tensor. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../frontend/frontend.h"
#include "../runtime/safetensors.h"
#include "../tasks/run_batch.h"
#include "util.h"

static const char *fx(const char *fixture, const char *file)
{
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ % 8], rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/%s/%s", fixture, file);
    snprintf(b, 1024, "%s", tu_src(rel));
    return b;
}

static void load(const char *path, rt_tensor_list *l)
{
    bc_err e;
    rt_list_init(l);
    cr_assert_eq(rt_st_load(path, l, &e), 0, "%s", e.msg);
}

/* Every tensor of exp named like prefix ("" for all) is in out with its size, and
 * max|out - exp| <= rtol * max|exp| + atol (test_run.c's rule). */
static void expect_close(const rt_tensor_list *exp, const rt_tensor_list *out,
                         const char *prefix, double rtol, double atol)
{
    int n = 0;
    for (int i = 0; i < exp->n; i++) {
        const rt_tensor *x = &exp->t[i];
        if (strncmp(x->name, prefix, strlen(prefix)))
            continue;
        const rt_tensor *o = rt_list_cfind(out, x->name);
        cr_expect_not_null(o, "no output '%s'", x->name);
        if (!o)
            continue;
        n++;
        double big = 0, err = tu_max_err(o, x, &big);
        cr_expect(err >= 0 && err <= rtol * big + atol, "'%s': max error %.3g", x->name,
                  err);
    }
    cr_expect_gt(n, 0, "nothing named %s* compared", prefix);
}

static tk_run_opts fixture_opts(const char *fixture, cg_backend backend)
{
    tk_run_opts o = {.model = fx(fixture, "model.xml"),
                     .batch = fx(fixture, "batch.safetensors"),
                     .weights = fx(fixture, "weights.safetensors"),
                     .backend = backend};
    return o;
}

static void expect_fixture(const char *fixture, cg_backend backend)
{
    tk_run_opts o = fixture_opts(fixture, backend);
    rt_tensor_list out, exp, batch;
    rt_list_init(&out);
    tk_run_info info;
    bc_err e;
    cr_assert_eq(tk_run_batch(&o, &out, &info, &e), 0, "%s", e.msg);
    load(fx(fixture, "expected.safetensors"), &exp);
    expect_close(&exp, &out, "", 1e-4, 1e-6);
    cr_expect_eq(out.n, exp.n, "%s: %d outputs, expected %d", fixture, out.n, exp.n);
    load(o.batch, &batch);
    const rt_tensor *ids = rt_list_cfind(&batch, "input_ids");
    cr_expect(info.B == ids->shape[0] && info.S == ids->shape[1], "B=%lld S=%lld",
              (long long)info.B, (long long)info.S);
    cr_expect(info.compile_s >= 0 && info.run_s >= 0);
    rt_list_free(&out);
    rt_list_free(&exp);
    rt_list_free(&batch);
}

Test(run_batch, fixtures_match_the_oracle_with_the_jit)
{
    expect_fixture("run_tiny", CG_BACKEND_JIT);
    expect_fixture("run_tanh_noheads", CG_BACKEND_JIT);
    expect_fixture("run_mlm_nsp", CG_BACKEND_JIT);
}

Test(run_batch, fixtures_match_the_oracle_with_the_reference)
{
    expect_fixture("run_tiny", CG_BACKEND_REF);
    expect_fixture("run_mlm_nsp", CG_BACKEND_REF);
}

Test(run_batch, info_names_the_model)
{
    tk_run_opts o = fixture_opts("run_tiny", CG_BACKEND_REF);
    rt_tensor_list out;
    rt_list_init(&out);
    tk_run_info info;
    bc_err e;
    cr_assert_eq(tk_run_batch(&o, &out, &info, &e), 0, "%s", e.msg);
    fe_model m;
    cr_assert_eq(fe_load(o.model, &m, &e), 0, "%s", e.msg);
    cr_expect_str_eq(info.model, m.name);
    rt_list_free(&out);
}

Test(run_batch, grads_match_pytorch_and_the_executable_bit_for_bit)
{
    tk_run_opts o = fixture_opts("run_mlm_nsp", CG_BACKEND_JIT);
    o.grads = 1;
    o.threads = 2;
    rt_tensor_list out, exp, cli;
    rt_list_init(&out);
    tk_run_info info;
    bc_err e;
    cr_assert_eq(tk_run_batch(&o, &out, &info, &e), 0, "%s", e.msg);
    load(fx("run_mlm_nsp", "expected_grads.safetensors"), &exp);
    expect_close(&exp, &out, "grad.", 1e-3, 1e-6);
    const char *path = tu_path(tu_tmpdir(), "cli.safetensors");
    char *text = NULL;
    int rc = tu_bertcc(&text,
                       "run '%s' --weights '%s' --batch '%s' -o '%s' --grads "
                       "--threads 2 --quiet",
                       o.model, o.weights, o.batch, path);
    cr_assert_eq(rc, 0, "%s", text);
    free(text);
    load(path, &cli);
    cr_expect_eq(cli.n, out.n);
    for (int i = 0; i < cli.n; i++) {
        const rt_tensor *c = &cli.t[i], *x = rt_list_cfind(&out, c->name);
        cr_expect(x && rt_nbytes(x) == rt_nbytes(c) &&
                      !memcmp(x->data, c->data, rt_nbytes(c)),
                  "'%s' differs from the executable's", c->name);
    }
    rt_list_free(&out);
    rt_list_free(&exp);
    rt_list_free(&cli);
}

/* Fusion changes which kernels run, never a bit of what they compute: forward, every
 * loss and every gradient with --fuse=none equal the default's (all rules). */
Test(run_batch, fusion_off_gives_the_bits_of_fusion_on)
{
    const char *fixtures[] = {"run_mlm_nsp", "run_tiny"};
    for (int f = 0; f < 2; f++) {
        rt_tensor_list on, off;
        rt_list_init(&on);
        rt_list_init(&off);
        tk_run_info info;
        bc_err e;
        tk_run_opts o = fixture_opts(fixtures[f], CG_BACKEND_JIT);
        o.grads = 1;
        o.threads = 2;
        cr_assert_eq(tk_run_batch(&o, &on, &info, &e), 0, "%s", e.msg);
        o.fuse = "none";
        cr_assert_eq(tk_run_batch(&o, &off, &info, &e), 0, "%s", e.msg);
        cr_expect_eq(on.n, off.n);
        for (int i = 0; i < on.n; i++) {
            const rt_tensor *a = &on.t[i], *b = rt_list_cfind(&off, a->name);
            cr_expect(b && rt_nbytes(a) == rt_nbytes(b) &&
                          !memcmp(a->data, b->data, rt_nbytes(a)),
                      "%s: '%s' differs between --fuse=all and --fuse=none", fixtures[f],
                      a->name);
        }
        rt_list_free(&on);
        rt_list_free(&off);
        o.fuse = "epilogue,frob";
        cr_expect_eq(tk_run_batch(&o, &off, &info, &e), -1);
        cr_expect(strstr(e.msg, "unknown fusion rule 'frob'"), "%s", e.msg);
        rt_list_free(&off);
    }
}

Test(run_batch, initialization_follows_the_seed_without_weights)
{
    rt_tensor_list a, b, c;
    rt_list_init(&a);
    rt_list_init(&b);
    rt_list_init(&c);
    tk_run_info info;
    bc_err e;
    tk_run_opts o = fixture_opts("run_tiny", CG_BACKEND_REF);
    o.weights = NULL;
    o.seed = 3;
    cr_assert_eq(tk_run_batch(&o, &a, &info, &e), 0, "%s", e.msg);
    cr_assert_eq(tk_run_batch(&o, &b, &info, &e), 0, "%s", e.msg);
    o.seed = 4;
    cr_assert_eq(tk_run_batch(&o, &c, &info, &e), 0, "%s", e.msg);
    const rt_tensor *x = rt_list_cfind(&a, "pooled_output"),
                    *y = rt_list_cfind(&b, "pooled_output"),
                    *z = rt_list_cfind(&c, "pooled_output");
    cr_assert(x && y && z);
    cr_expect(!memcmp(x->data, y->data, rt_nbytes(x)), "same seed, different outputs");
    cr_expect(memcmp(x->data, z->data, rt_nbytes(x)), "different seeds, same outputs");
    rt_list_free(&a);
    rt_list_free(&b);
    rt_list_free(&c);
}

/* ---- notes and errors -------------------------------------------------------------- */

typedef struct notes {
    char text[4096];
    int n;
} notes;

static void collect(void *ctx, const char *msg)
{
    notes *s = ctx;
    size_t at = strlen(s->text);
    snprintf(s->text + at, sizeof s->text - at, "%s\n", msg);
    s->n++;
}

/* run_tiny's batch with edit applied, saved in a fresh directory; returns its path. */
static const char *tiny_batch_with(void (*edit)(rt_tensor_list *))
{
    rt_tensor_list l;
    load(fx("run_tiny", "batch.safetensors"), &l);
    edit(&l);
    const char *p = tu_path(tu_tmpdir(), "batch.safetensors");
    bc_err e;
    cr_assert_eq(rt_st_save(p, &l, &e), 0, "%s", e.msg);
    rt_list_free(&l);
    return p;
}

static void add_extra(rt_tensor_list *l)
{
    int64_t shape[1] = {2};
    cr_assert_not_null(rt_list_add(l, "my_extra_tensor", RT_I64, 1, shape, NULL));
}

static void drop_input_ids(rt_tensor_list *l)
{
    cr_assert_eq(rt_list_remove(l, "input_ids"), 1);
}

Test(run_batch, notes_go_to_the_callers_function)
{
    notes s = {{0}, 0};
    tk_run_opts o = fixture_opts("run_tiny", CG_BACKEND_REF);
    char batch[1024];
    snprintf(batch, sizeof batch, "%s", tiny_batch_with(add_extra));
    o.batch = batch;
    o.note = collect;
    o.note_ctx = &s;
    rt_tensor_list out;
    rt_list_init(&out);
    tk_run_info info;
    bc_err e;
    cr_assert_eq(tk_run_batch(&o, &out, &info, &e), 0, "%s", e.msg);
    cr_expect(s.n >= 1 && strstr(s.text, "my_extra_tensor"), "notes: %s", s.text);
    rt_list_free(&out);
}

Test(run_batch, a_batch_error_names_the_file_and_the_tensor)
{
    tk_run_opts o = fixture_opts("run_tiny", CG_BACKEND_REF);
    char batch[1024];
    snprintf(batch, sizeof batch, "%s", tiny_batch_with(drop_input_ids));
    o.batch = batch;
    rt_tensor_list out;
    rt_list_init(&out);
    tk_run_info info;
    bc_err e;
    cr_assert_neq(tk_run_batch(&o, &out, &info, &e), 0);
    cr_expect(strstr(e.msg, batch) && strstr(e.msg, "input_ids"), "%s", e.msg);
    cr_expect_eq(out.n, 0);
}

Test(run_batch, a_weights_error_names_the_file_and_the_tensor)
{
    rt_tensor_list w;
    load(fx("run_tiny", "weights.safetensors"), &w);
    cr_assert_eq(rt_list_remove(&w, "bert.encoder.layer.1.output.dense.bias"), 1);
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(tu_tmpdir(), "w.safetensors"));
    bc_err e;
    cr_assert_eq(rt_st_save(path, &w, &e), 0, "%s", e.msg);
    rt_list_free(&w);
    tk_run_opts o = fixture_opts("run_tiny", CG_BACKEND_REF);
    o.weights = path;
    rt_tensor_list out;
    rt_list_init(&out);
    tk_run_info info;
    cr_assert_neq(tk_run_batch(&o, &out, &info, &e), 0);
    cr_expect(strstr(e.msg, path) &&
                  strstr(e.msg, "bert.encoder.layer.1.output.dense.bias"),
              "%s", e.msg);
}

Test(run_batch, grads_without_labels_and_a_missing_model_are_errors)
{
    tk_run_opts o = fixture_opts("run_tanh_noheads", CG_BACKEND_REF);
    o.grads = 1;
    rt_tensor_list out;
    rt_list_init(&out);
    tk_run_info info;
    bc_err e;
    cr_assert_neq(tk_run_batch(&o, &out, &info, &e), 0);
    cr_expect(strstr(e.msg, "labels"), "%s", e.msg);
    o.grads = 0;
    o.model = "/nonexistent-dir/model.xml";
    cr_assert_neq(tk_run_batch(&o, &out, &info, &e), 0);
    cr_expect(strstr(e.msg, "/nonexistent-dir/model.xml"), "%s", e.msg);
    cr_expect_eq(out.n, 0);
}
