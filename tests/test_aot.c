/* test_aot.c: shared-library output. A library written by `bertcc MODEL -o bert.so`
 * is used through bert.h alone by examples/aot_demo.c, and must compute what the JIT
 * computes; two libraries load in one process; a library exports its API alone and
 * needs no LLVM; the runtime agrees with LLVM on this CPU's features, and a CPU
 * without a compiled-for feature is refused. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/codegen.h"
#include "../codegen/engine.h"
#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/model.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "tests/util.h"

#define TINY "tests/fixtures/run_tiny/"

static const int64_t ids[] = {2, 5, 7, 11, 3, 0, 36};
#define S ((int64_t)(sizeof ids / sizeof *ids))

/* Builds DIR/NAME.so (prefix) from the run_tiny model, with more options when extra is
 * not NULL; returns DIR. */
static const char *build_library(const char *prefix, const char *name, const char *extra)
{
    const char *dir = tu_tmpdir();
    char cmd[16384], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s %s -o %s/%s.so --prefix %s %s", BERTCC_EXE,
             tu_src(TINY "model.xml"), dir, name, prefix, extra ? extra : "");
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, 0, "%s: %s", cmd, out ? out : "");
    free(out);
    return dir;
}

/* A library's API (bert.h with prefix P: P_create, ...), opened with dlopen. */
typedef struct lib_api {
    void *h;
    void *(*create)(char *, size_t);
    void (*destroy)(void *);
    int (*load)(void *, const char *, char *, size_t);
    int (*init)(void *, uint64_t, char *, size_t);
    void (*threads)(void *, int);
    int (*fwd)(void *, int64_t, int64_t, const int64_t *, const int64_t *, const int64_t *,
               char *, size_t);
    int (*fb)(void *, int64_t, int64_t, const int64_t *, const int64_t *, const int64_t *,
              const void *, char *, size_t);
    const float *(*output)(const void *, const char *, int64_t *, int *);
    int (*count)(const void *);
    const char *(*oname)(const void *, int);
} lib_api;

static void *lib_sym(void *h, const char *prefix, const char *name)
{
    char sym[128];
    snprintf(sym, sizeof sym, "%s_%s", prefix, name);
    void *f = dlsym(h, sym);
    cr_assert(f, "%s missing", sym);
    return f;
}

/* DIR/FILE opened, every function of the API with the prefix found (asserted). */
static lib_api open_lib(const char *dir, const char *file, const char *prefix)
{
    lib_api l;
    l.h = dlopen(tu_path(dir, file), RTLD_NOW | RTLD_LOCAL);
    cr_assert(l.h, "dlopen: %s", dlerror());
#define SYM(f, name) l.f = (__typeof__(l.f))lib_sym(l.h, prefix, name)
    SYM(create, "create");
    SYM(destroy, "destroy");
    SYM(load, "load");
    SYM(init, "init");
    SYM(threads, "set_threads");
    SYM(fwd, "forward");
    SYM(fb, "forward_backward");
    SYM(output, "output");
    SYM(count, "output_count");
    SYM(oname, "output_name");
#undef SYM
    return l;
}

/* The JIT's outputs for ids (B = 1), forward (train = 0) or with every label 0 and the
 * MLM labels = ids (train = 1), as aot_demo computes them. */
static void jit_outputs(int train, rt_tensor_list *out)
{
    fe_model m;
    bc_err e;
    cr_assert(fe_load(tu_src(TINY "model.xml"), &m, &e) == 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, train ? FE_LABEL_ALL : 0, &e);
    cr_assert(g, "%s", e.msg);
    pass_grad_opts go = {"loss", NULL, 0};
    cr_assert(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0, "%s", e.msg);
    if (train)
        cr_assert(pass_autodiff(&g, &go, &e) == 0 &&
                      pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0,
                  "%s", e.msg);
    rt_tensor_list ck, params, in;
    rt_list_init(&ck);
    rt_list_init(&params);
    rt_list_init(&in);
    cr_assert(rt_st_load(tu_src(TINY "weights.safetensors"), &ck, &e) == 0, "%s", e.msg);
    cr_assert(rt_params_from_checkpoint(g, &ck, 0, 0, &params, NULL, NULL, &e) == 0, "%s",
              e.msg);
    int64_t bs[2] = {1, S}, b1 = 1, zero = 0;
    rt_list_add(&in, "input_ids", RT_I64, 2, bs, ids);
    rt_tensor *tt = rt_list_add(&in, "token_type_ids", RT_I64, 2, bs, NULL);
    rt_tensor *mask = rt_list_add(&in, "attention_mask", RT_I64, 2, bs, NULL);
    for (int64_t i = 0; i < S; i++) {
        ((int64_t *)tt->data)[i] = 0;
        ((int64_t *)mask->data)[i] = 1;
    }
    if (train) {
        rt_list_add(&in, "mlm_labels", RT_I64, 2, bs, ids);
        rt_tensor *sl = rt_list_add(&in, "slot_labels", RT_I64, 2, bs, NULL);
        memset(sl->data, 0, sizeof(int64_t) * S);
        static const char *const vec[] = {"nsp_labels", "intent_labels", "start_positions",
                                          "end_positions"};
        for (int i = 0; i < 4; i++)
            rt_list_add(&in, vec[i], RT_I64, 1, &b1, &zero);
    }
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert(x, "%s", e.msg);
    cr_assert(cg_engine_run(x, &params, &in, 2, out, &e) == 0, "%s", e.msg);
    cg_engine_free(x);
    ir_graph_free(g);
    rt_list_free(&ck);
    rt_list_free(&params);
    rt_list_free(&in);
}

/* Compares aot_demo's printed outputs with the JIT's, tensor by tensor. */
static void compare_demo(const char *text, const rt_tensor_list *want)
{
    int seen = 0;
    for (const char *line = text; line && *line;) {
        char name[256];
        const char *nl = strchr(line, '\n');
        if (sscanf(line, "%255s", name) == 1) {
            const rt_tensor *t = rt_list_cfind(want, name);
            cr_assert(t, "the library wrote '%s', which the JIT does not", name);
            const char *p = strchr(line, ']');
            cr_assert(p);
            p++;
            double maxerr = 0, maxref = 0;
            for (int64_t i = 0; i < rt_numel(t); i++) {
                char *end;
                double v = strtod(p, &end);
                cr_assert(end != p, "%s: value %lld missing", name, (long long)i);
                p = end;
                double r = ((const float *)t->data)[i];
                maxerr = fabs(v - r) > maxerr ? fabs(v - r) : maxerr;
                maxref = fabs(r) > maxref ? fabs(r) : maxref;
            }
            cr_expect(maxerr <= 1e-5 * maxref + 1e-6, "%s: max error %g (max |jit| %g)",
                      name, maxerr, maxref);
            seen++;
        }
        line = nl ? nl + 1 : NULL;
    }
    cr_assert_eq(seen, want->n, "the library wrote %d outputs, the JIT %d", seen, want->n);
}

static char *run_demo(const char *dir, int grad)
{
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "cc -std=gnu11 -Wall -Werror %s -I%s %s %s/bert.so -Wl,-rpath,%s -o %s/demo",
             BERTCC_AOT_FLAGS, dir, tu_src("examples/aot_demo.c"), dir, dir, dir);
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, 0, "%s: %s", cmd, out ? out : "");
    free(out);
    int n = snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s/demo %s%s", dir,
                     tu_src(TINY "weights.safetensors"), grad ? " --grad" : "");
    for (int64_t i = 0; i < S; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %lld", (long long)ids[i]);
    /* Only stdout: the values. */
    strncat(cmd, " 2>/dev/null", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t cap = 1 << 20, len = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0)
        len += r;
    buf[len] = 0;
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    return buf;
}

Test(aot, library_forward_matches_the_jit_through_the_header_alone, .timeout = 120)
{
    const char *dir = build_library("bert", "bert", NULL);
    char *text = run_demo(dir, 0);
    rt_tensor_list want;
    rt_list_init(&want);
    jit_outputs(0, &want);
    compare_demo(text, &want);
    rt_list_free(&want);
    free(text);
}

Test(aot, library_forward_backward_matches_the_jit, .timeout = 120)
{
    const char *dir = build_library("bert", "bert", NULL);
    char *text = run_demo(dir, 1);
    cr_assert(strstr(text, "grad.bert.embeddings.word_embeddings.weight"));
    rt_tensor_list want;
    rt_list_init(&want);
    jit_outputs(1, &want);
    compare_demo(text, &want);
    rt_list_free(&want);
    free(text);
}

Test(aot, two_libraries_load_in_one_process, .timeout = 120)
{
    const char *da = build_library("alpha", "a", NULL);
    char dir_a[64];
    snprintf(dir_a, sizeof dir_a, "%s", da);
    const char *db = build_library("beta", "b", NULL);
    lib_api a = open_lib(dir_a, "a.so", "alpha"), b = open_lib(db, "b.so", "beta");
    cr_assert_null(dlsym(a.h, "rt_exec_run"), "runtime symbols must stay hidden");
    char err[512];
    void *ma = a.create(err, sizeof err), *mb = b.create(err, sizeof err);
    cr_assert(ma && mb, "%s", err);
    a.destroy(ma);
    b.destroy(mb);
    dlclose(a.h);
    dlclose(b.h);
}

/* NULL where the API needs a pointer is an error returned as a value, never a crash
 * (bert_forward(NULL, ...) and bert_output(m, NULL, ...) used to dereference it). */
Test(aot, null_arguments_are_errors_not_crashes, .timeout = 120)
{
    lib_api l = open_lib(build_library("bert", "bert", NULL), "bert.so", "bert");
    char err[512];
    int64_t ids[2] = {1, 2};
    cr_expect_eq(l.fwd(NULL, 1, 2, ids, NULL, NULL, err, sizeof err), -1);
    cr_expect(strstr(err, "the model is NULL"), "%s", err);
    cr_expect_eq(l.fb(NULL, 1, 2, ids, NULL, NULL, NULL, err, sizeof err), -1);
    cr_expect_eq(l.load(NULL, "x", err, sizeof err), -1);
    cr_expect_eq(l.init(NULL, 1, NULL, 0), -1); /* err may be NULL too */
    l.threads(NULL, 2);
    l.destroy(NULL);
    cr_expect_null(l.output(NULL, "pooled_output", NULL, NULL));
    cr_expect_eq(l.count(NULL), 0);
    cr_expect_null(l.oname(NULL, 0));
    void *m = l.create(err, sizeof err);
    cr_assert(m, "%s", err);
    cr_expect_eq(l.load(m, NULL, err, sizeof err), -1);
    cr_expect(strstr(err, "path is NULL"), "%s", err);
    cr_expect_eq(l.init(m, 1, err, sizeof err), 0, "%s", err);
    cr_expect_eq(l.fwd(m, 1, 2, NULL, NULL, NULL, err, sizeof err), -1);
    cr_expect(strstr(err, "input_ids is NULL"), "%s", err);
    cr_expect_eq(l.fwd(m, 1, 2, ids, NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_expect_null(l.output(m, NULL, NULL, NULL));
    cr_expect_not_null(l.output(m, "pooled_output", NULL, NULL));
    l.destroy(m);
    dlclose(l.h);
}

/* The forward graph keeps its packed weights (the pack rule) between runs: after
 * bert_init with another seed, a model gives exactly what a fresh model with that seed
 * gives, and back again. */
Test(aot, new_weights_are_packed_again, .timeout = 120)
{
    lib_api l = open_lib(build_library("bert", "bert", NULL), "bert.so", "bert");
    char err[512];
    const int64_t ids[6] = {2, 5, 7, 11, 3, 1};
    float want[2][64]; /* pooled_output [2, H] of a fresh model per seed (H <= 32) */
    for (int s = 0; s < 2; s++) {
        void *m = l.create(err, sizeof err);
        cr_assert(m && !l.init(m, 10 + (uint64_t)s, err, sizeof err), "%s", err);
        cr_assert_eq(l.fwd(m, 2, 3, ids, NULL, NULL, err, sizeof err), 0, "%s", err);
        int64_t shape[4];
        int rank = 0;
        const float *y = l.output(m, "pooled_output", shape, &rank);
        cr_assert(y && rank == 2 && shape[0] * shape[1] <= 64);
        memcpy(want[s], y, sizeof(float) * (size_t)(shape[0] * shape[1]));
        l.destroy(m);
    }
    cr_expect(memcmp(want[0], want[1], sizeof want[0]), "the seeds give the same output");
    void *m = l.create(err, sizeof err);
    cr_assert(m, "%s", err);
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(l.init(m, 10 + (uint64_t)(k % 2), err, sizeof err), 0, "%s", err);
        for (int r = 0; r < 2; r++) {
            cr_assert_eq(l.fwd(m, 2, 3, ids, NULL, NULL, err, sizeof err), 0, "%s", err);
            int64_t shape[4];
            int rank = 0;
            const float *y = l.output(m, "pooled_output", shape, &rank);
            cr_assert(y);
            cr_expect(
                !memcmp(y, want[k % 2], sizeof(float) * (size_t)(shape[0] * shape[1])),
                "init %d (seed %d), run %d: not a fresh model's output", k, 10 + k % 2, r);
        }
    }
    l.destroy(m);
    dlclose(l.h);
}

/* Runs cmd and returns its standard output (malloc'd); the command must succeed. */
static char *command_output(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p, "%s", cmd);
    size_t cap = 1 << 16, len = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0)
        if ((len += r) + 1 == cap)
            buf = realloc(buf, cap *= 2);
    buf[len] = 0;
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    return buf;
}

/* The API of a library, without its prefix: README.md "Shared libraries" and the
 * header the library comes with. */
static const char *const api[] = {
    "create",  "destroy",          "load",   "init",         "set_threads",
    "forward", "forward_backward", "output", "output_count", "output_name"};
#define NAPI (sizeof api / sizeof *api)

Test(aot, a_library_exports_its_documented_api_alone, .timeout = 120)
{
    const char *dir = build_library("gamma", "g", NULL);
    char cmd[1024], name[512], type;
    char *header = tu_read_file(tu_path(dir, "g.h"), NULL);
    cr_assert(header);
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s/g.so'", dir);
    char *syms = command_output(cmd);
    int seen[NAPI] = {0};
    for (char *line = strtok(syms, "\n"); line; line = strtok(NULL, "\n")) {
        cr_assert(sscanf(line, "%*s %c %511s", &type, name) == 2, "nm wrote '%s'", line);
        size_t i = 0;
        while (i < NAPI && (strncmp(name, "gamma_", 6) || strcmp(name + 6, api[i])))
            i++;
        cr_expect(i < NAPI, "the library exports %s (type %c), which is not in its API",
                  name, type);
        if (i < NAPI) {
            cr_expect_eq(type, 'T', "%s has type %c, not a function", name, type);
            seen[i]++;
        }
    }
    for (size_t i = 0; i < NAPI; i++) {
        snprintf(name, sizeof name, "gamma_%s(", api[i]);
        cr_expect(strstr(header, name), "g.h does not declare %s", name);
        cr_expect_eq(seen[i], 1, "gamma_%s exported %d times", api[i], seen[i]);
    }
    free(syms);
    free(header);
}

Test(aot, a_library_needs_neither_llvm_nor_utf8proc, .timeout = 120)
{
    const char *dir = build_library("delta", "d", NULL);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "readelf -d '%s/d.so'", dir);
    char *dyn = command_output(cmd);
    int needed = 0;
    for (char *line = strtok(dyn, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "(NEEDED)"))
            continue;
        needed++;
        cr_expect(!strstr(line, "LLVM") && !strstr(line, "utf8proc"), "%s", line);
    }
    cr_expect(needed > 0, "readelf -d listed no NEEDED entry");
    free(dyn);
}

/* The features runtime/model.c can ask this CPU about; it takes any other as present. */
static const char *const runtime_features[] = {
    "sse4.2",   "avx",      "avx2",     "fma",      "bmi",        "bmi2",      "avx512f",
    "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512vnni", "avx512bf16"};
#define NRTF (sizeof runtime_features / sizeof *runtime_features)

/* Whether the LLVM feature string s ("+a,-b,...") lists f with the sign sign. */
static int lists(const char *s, char sign, const char *f)
{
    size_t n = strlen(f);
    for (const char *p = s; (p = strchr(p, sign)); p++)
        if ((p == s || p[-1] == ',') && !strncmp(p + 1, f, n) &&
            (!p[n + 1] || p[n + 1] == ','))
            return 1;
    return 0;
}

/* The features s ("+a,-b,...") lists as present, "+a,..." into buf. */
static void present(const char *s, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (const char *p = s; *p;) {
        size_t w = strcspn(p, ",");
        if (*p == '+') {
            cr_assert(n + w + 2 < len, "the host's feature list is too long");
            n += (size_t)snprintf(buf + n, len - n, "%s%.*s", n ? "," : "", (int)w, p);
        }
        p += w + (p[w] == ',');
    }
}

/* host: the host's features as LLVM reports them ("+avx2,-avx512f,..."). The runtime
 * agrees with it on every feature it can ask about, and takes a library compiled for
 * the host's own features. */
static void check_host_features(const char *host)
{
    char plus[8192];
    bc_err e;
    for (size_t i = 0; i < NRTF; i++) {
        char one[64];
        snprintf(one, sizeof one, "+%s", runtime_features[i]);
        cr_expect_eq(rt_cpu_supports(one, &e), lists(host, '+', runtime_features[i]),
                     "the runtime and LLVM disagree on whether this CPU has %s",
                     runtime_features[i]);
    }
    present(host, plus, sizeof plus);
    cr_expect(rt_cpu_supports(plus, &e), "%s", e.msg);
}

/* host as above: a library compiled for the host's features and one it lacks is
 * refused when it loads, naming that feature. The feature must be one the runtime can
 * ask about; returns 0 when the host has them all, so nothing can be refused. */
static int check_refusal(const char *host)
{
    const char *lack = NULL;
    for (size_t i = 0; i < NRTF && !lack; i++)
        if (lists(host, '-', runtime_features[i]))
            lack = runtime_features[i];
    if (!lack)
        return 0;
    char plus[8192], opt[8400], want[128], err[512];
    present(host, plus, sizeof plus);
    snprintf(opt, sizeof opt, "--target-features '%s,+%s'", plus, lack);
    const char *dir = build_library("eps", "e", opt);
    char *header = tu_read_file(tu_path(dir, "e.h"), NULL);
    char *line = header ? strstr(header, "features: ") : NULL;
    cr_assert(line, "e.h has no features line");
    line[strcspn(line, "\n")] = 0;
    snprintf(want, sizeof want, "+%s", lack);
    cr_assert(lists(line + 10, '+', lack), "e.h does not list %s: %s", want, line);
    free(header);
    lib_api l = open_lib(dir, "e.so", "eps");
    err[0] = 0;
    void *m = l.create(err, sizeof err);
    cr_expect_null(m, "a library compiled for %s loaded", want);
    l.destroy(m);
    snprintf(want, sizeof want, "this CPU lacks %s, which", lack);
    cr_expect(strstr(err, want), "%s", err);
    dlclose(l.h);
    return 1;
}

Test(aot, the_runtime_agrees_with_llvm_on_the_cpu_features)
{
    char cpu[128], host[8192];
    bc_err e;
    cr_assert(rt_cpu_supports("+avx2", &e) == !!__builtin_cpu_supports("avx2"));
    cg_host_target(cpu, sizeof cpu, host, sizeof host);
    check_host_features(host);
}

/* host with feature f turned off ("+f" becomes "-f"), into buf. */
static void without(const char *host, const char *f, char *buf, size_t len)
{
    size_t n = 0, k = strlen(f);
    buf[0] = 0;
    for (const char *p = host; *p;) {
        size_t w = strcspn(p, ",");
        int it = w == k + 1 && *p == '+' && !strncmp(p + 1, f, k);
        n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%c%.*s", n ? "," : "",
                              it ? '-' : *p, (int)w - 1, p + 1);
        p += w + (p[w] == ',');
    }
}

Test(aot, a_cpu_without_a_compiled_for_feature_is_refused, .timeout = 120)
{
    /* A library compiled for this host's features, checked against this host's feature
     * list with one feature turned off: refused, naming it. That runs on every machine;
     * where the host itself lacks a feature the runtime asks the CPU about, the library
     * is also built for it and refused when it loads (check_refusal). */
    char cpu[128], host[8192], plus[8192], opt[8400], fake[8192];
    cg_host_target(cpu, sizeof cpu, host, sizeof host);
    present(host, plus, sizeof plus);
    snprintf(opt, sizeof opt, "--target-features '%s'", plus);
    const char *dir = build_library("hf", "h", opt);
    char *header = tu_read_file(tu_path(dir, "h.h"), NULL);
    char *line = header ? strstr(header, "features: ") : NULL;
    cr_assert(line, "h.h has no features line");
    line += 10;
    line[strcspn(line, "\n")] = 0;
    bc_err e;
    cr_expect(rt_features_supported(line, host, &e), "%s", e.msg);
    int tried = 0;
    for (size_t i = 0; i < NRTF; i++) {
        if (!lists(line, '+', runtime_features[i]))
            continue;
        without(host, runtime_features[i], fake, sizeof fake);
        char want[128];
        snprintf(want, sizeof want, "this CPU lacks %s, which", runtime_features[i]);
        e.msg[0] = 0;
        cr_expect_not(rt_features_supported(line, fake, &e), "%s was not missed",
                      runtime_features[i]);
        cr_expect(strstr(e.msg, want), "%s", e.msg);
        tried++;
    }
    cr_expect(tried > 0, "the library lists none of the features the runtime checks: %s",
              line);
    free(header);
    check_refusal(host);
}

Test(aot, bad_output_names_are_refused)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s %s -o /tmp/x.dylib", BERTCC_EXE,
             tu_src(TINY "model.xml"));
    cr_assert_eq(tu_run(cmd, &out), 1, "%s", out);
    cr_assert(strstr(out, "NAME.so"), "%s", out);
    free(out);
}
