/* model.c: see model.h. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "params.h"
#include "safetensors.h"

typedef struct {
    ir_graph *g;
    rt_plan plan;
    rt_exec *exec;
} compiled;

struct rt_model {
    compiled fwd, train;
    rt_tensor_list params, outputs;
};

static int open_one(compiled *c, const char *text, const char *what, const rt_kernel *k,
                    int nk, bc_err *e)
{
    if (!(c->g = ir_parse(text, what, e)) || rt_plan_build(c->g, &c->plan, e))
        return -1;
    if (c->plan.nkernels != nk)
        return bc_errf(e, "%s: the library holds %d kernels, its graph needs %d", what, nk,
                       c->plan.nkernels);
    return (c->exec = rt_exec_new(c->g, &c->plan, k, e)) ? 0 : -1;
}

static void close_one(compiled *c)
{
    rt_exec_free(c->exec);
    rt_plan_free(&c->plan);
    ir_graph_free(c->g);
}

/* Whether this CPU has feature f (LLVM's spelling, without '+'). __builtin_cpu_supports
 * takes only string literals, hence one line per feature; features it cannot ask
 * about are assumed present. */
static int has(const char *f)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!strcmp(f, "sse4.2"))
        return __builtin_cpu_supports("sse4.2");
    if (!strcmp(f, "avx"))
        return __builtin_cpu_supports("avx");
    if (!strcmp(f, "avx2"))
        return __builtin_cpu_supports("avx2");
    if (!strcmp(f, "fma"))
        return __builtin_cpu_supports("fma");
    if (!strcmp(f, "bmi"))
        return __builtin_cpu_supports("bmi");
    if (!strcmp(f, "bmi2"))
        return __builtin_cpu_supports("bmi2");
    if (!strcmp(f, "avx512f"))
        return __builtin_cpu_supports("avx512f");
    if (!strcmp(f, "avx512bw"))
        return __builtin_cpu_supports("avx512bw");
    if (!strcmp(f, "avx512vl"))
        return __builtin_cpu_supports("avx512vl");
    if (!strcmp(f, "avx512dq"))
        return __builtin_cpu_supports("avx512dq");
    if (!strcmp(f, "avx512cd"))
        return __builtin_cpu_supports("avx512cd");
    if (!strcmp(f, "avx512vnni"))
        return __builtin_cpu_supports("avx512vnni");
    if (!strcmp(f, "avx512bf16"))
        return __builtin_cpu_supports("avx512bf16");
#endif
    return 1;
}

/* Whether the LLVM feature list host ("+a,-b,...") has feature f: 0 when it lists "-f",
 * 1 when it lists "+f" or does not mention f. */
static int listed(const char *f, const void *host)
{
    size_t n = strlen(f);
    for (const char *p = host; *p;) {
        size_t w = strcspn(p, ",");
        if (w == n + 1 && (*p == '+' || *p == '-') && !strncmp(p + 1, f, n))
            return *p == '+';
        p += w + (p[w] == ',');
    }
    return 1;
}

static int this_cpu(const char *f, const void *ctx)
{
    (void)ctx;
    return has(f);
}

/* The check of both entry points: has(f, ctx) says whether the CPU has feature f. */
static int check(const char *features, int (*has_one)(const char *f, const void *ctx),
                 const void *ctx, bc_err *e)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", features ? features : "");
    for (char *s = NULL, *t = strtok_r(buf, ",", &s); t; t = strtok_r(NULL, ",", &s))
        if (t[0] == '+' && !has_one(t + 1, ctx)) {
            bc_errf(e,
                    "this CPU lacks %s, which the library was compiled for (rebuild it "
                    "with --target-cpu, e.g. x86-64-v3 for a portable AVX2 build)",
                    t + 1);
            return 0;
        }
    return 1;
}

int rt_cpu_supports(const char *features, bc_err *e)
{
    return check(features, this_cpu, NULL, e);
}

int rt_features_supported(const char *features, const char *host, bc_err *e)
{
    return check(features, listed, host ? host : "", e);
}

rt_model *rt_model_open(const char *fwd_ir, const rt_kernel *fwd_kernels, int fwd_nkernels,
                        const char *train_ir, const rt_kernel *train_kernels,
                        int train_nkernels, const char *features, bc_err *e)
{
    if (!rt_cpu_supports(features, e))
        return NULL;
    rt_model *m = calloc(1, sizeof *m);
    if (!m) {
        bc_errf(e, "out of memory");
        return NULL;
    }
    rt_list_init(&m->params);
    rt_list_init(&m->outputs);
    if (open_one(&m->fwd, fwd_ir, "forward graph", fwd_kernels, fwd_nkernels, e) ||
        open_one(&m->train, train_ir, "training graph", train_kernels, train_nkernels, e)) {
        rt_model_close(m);
        return NULL;
    }
    return m;
}

void rt_model_close(rt_model *m)
{
    if (!m)
        return;
    close_one(&m->fwd);
    close_one(&m->train);
    rt_list_free(&m->params);
    rt_list_free(&m->outputs);
    free(m);
}

int rt_model_load(rt_model *m, const char *path, bc_err *e)
{
    rt_tensor_list ck, params;
    rt_list_init(&ck);
    rt_list_init(&params);
    /* The training graph holds every parameter the forward graph does. */
    int rc = rt_st_load(path, &ck, e);
    if (!rc &&
        (rc = rt_params_from_checkpoint(m->train.g, &ck, 0, 0, &params, NULL, NULL, e)))
        bc_err_prefix(e, "%s", path);
    rt_list_free(&ck);
    if (rc) {
        rt_list_free(&params);
        return -1;
    }
    rt_list_free(&m->params);
    m->params = params;
    rt_exec_keep_constants(m->fwd.exec, 1); /* new weights: packed again */
    return 0;
}

int rt_model_init(rt_model *m, uint64_t seed, bc_err *e)
{
    rt_tensor_list params;
    rt_list_init(&params);
    if (rt_params_init(m->train.g, seed, &params, e)) {
        rt_list_free(&params);
        return -1;
    }
    rt_list_free(&m->params);
    m->params = params;
    rt_exec_keep_constants(m->fwd.exec, 1); /* new weights: packed again */
    return 0;
}

static int add_i64(rt_tensor_list *l, const char *name, int rank, const int64_t *shape,
                   const int64_t *data, int64_t fill, bc_err *e)
{
    rt_tensor *t = rt_list_add(l, name, RT_I64, rank, shape, data);
    if (!t)
        return bc_errf(e, "out of memory");
    for (int64_t i = 0; !data && i < rt_numel(t); i++)
        ((int64_t *)t->data)[i] = fill;
    return 0;
}

int rt_model_run(rt_model *m, int train, int64_t B, int64_t S, const int64_t *ids,
                 const int64_t *types, const int64_t *mask, const int64_t *const *labels,
                 const char *const *label_names, int nlabels, int threads, bc_err *e)
{
    if (!m->params.n)
        return bc_errf(e, "no parameters: load a checkpoint or initialize first");
    if (B < 1 || S < 1 || !ids)
        return bc_errf(e, "a batch needs B >= 1, S >= 1 and input ids");
    compiled *c = train ? &m->train : &m->fwd;
    rt_tensor_list in;
    rt_list_init(&in);
    int64_t bs[2] = {B, S};
    int rc = add_i64(&in, "input_ids", 2, bs, ids, 0, e) ||
             add_i64(&in, "token_type_ids", 2, bs, types, 0, e) ||
             add_i64(&in, "attention_mask", 2, bs, mask, 1, e);
    for (int i = 0; !rc && i < c->g->n; i++) {
        const ir_node *n = &c->g->nodes[i];
        if (n->op != IR_OP_INPUT || rt_list_cfind(&in, n->name))
            continue;
        const int64_t *data = NULL;
        for (int k = 0; k < nlabels; k++)
            if (label_names[k] && !strcmp(label_names[k], n->name))
                data = labels[k];
        rc = add_i64(&in, n->name, n->type.rank, bs, data, -100, e);
    }
    rt_tensor_list out;
    rt_list_init(&out);
    if (!rc)
        rc = rt_exec_run(c->exec, &m->params, &in, threads, &out, e);
    rt_list_free(&in);
    if (rc) {
        rt_list_free(&out);
        return -1;
    }
    rt_list_free(&m->outputs);
    m->outputs = out;
    return 0;
}

const rt_tensor *rt_model_output(const rt_model *m, const char *name)
{
    return rt_list_cfind(&m->outputs, name);
}

int rt_model_output_count(const rt_model *m)
{
    return m->outputs.n;
}

const rt_tensor *rt_model_output_at(const rt_model *m, int i)
{
    return i >= 0 && i < m->outputs.n ? &m->outputs.t[i] : NULL;
}
