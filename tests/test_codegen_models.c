/* test_codegen_models.c: the whole model, JIT against the reference interpreter, for
 * every model description in models/ small enough for the test budget (bert-base,
 * -medium and -large are left to bench/model_bench): forward (rtol 1e-4) and forward +
 * backward (rtol 1e-3, DESIGN.md §5's tolerances), with 1 and 2 threads, random BERT
 * initialization and a batch with padding and every label. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <string.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../train/batch.h"
#include "../codegen/engine.h"
#include "../runtime/params.h"
#include "../runtime/rng.h"
#include "tests/util.h"

static void batch(const ir_graph *g, const fe_model *m, int64_t B, int64_t S,
                  rt_tensor_list *in)
{
    rt_rng r;
    rt_rng_seed(&r, 99);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_INPUT)
            continue;
        int64_t shape[2] = {B, S};
        rt_tensor *t = rt_list_add(in, n->name, RT_I64, n->type.rank, shape, NULL);
        int64_t *v = t->data;
        for (int64_t k = 0; k < rt_numel(t); k++) {
            int64_t col = n->type.rank == 2 ? k % S : 0,
                    row = n->type.rank == 2 ? k / S : k;
            int64_t hi = 2;
            if (!strcmp(n->name, "input_ids") || !strcmp(n->name, "mlm_labels"))
                hi = m->vocab_size;
            else if (!strcmp(n->name, "token_type_ids"))
                hi = m->type_vocab_size;
            else if (!strcmp(n->name, "intent_labels"))
                hi = m->intent_classes;
            else if (!strcmp(n->name, "slot_labels"))
                hi = m->slot_labels;
            else if (strstr(n->name, "positions"))
                hi = S;
            v[k] = (int64_t)rt_rng_below(&r, (uint64_t)hi);
            if (!strcmp(n->name, "attention_mask"))
                v[k] = row == 1 && col >= S - 3 ? 0 : 1; /* row 1 is padded */
            if ((!strcmp(n->name, "mlm_labels") || !strcmp(n->name, "slot_labels")) &&
                k % 3 == 0)
                v[k] = -100;
        }
    }
}

/* batch() for a training graph: its dropout_seed the scalar seed (batch() makes every
 * input a [B, S] tensor). */
static void train_batch(const ir_graph *g, const fe_model *m, int64_t B, int64_t S,
                        int64_t seed, rt_tensor_list *in)
{
    batch(g, m, B, S, in);
    rt_list_remove(in, "dropout_seed");
    cr_assert(rt_list_add(in, "dropout_seed", RT_I64, 0, NULL, &seed));
}

static void check_model(const char *path, int grads)
{
    fe_model m;
    bc_err e;
    cr_assert(fe_load(path, &m, &e) == 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, grads ? FE_LABEL_ALL : 0, &e);
    cr_assert(g, "%s", e.msg);
    pass_grad_opts go = {"loss", NULL, 0};
    cr_assert(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0, "%s", e.msg);
    if (grads && ir_find_output(g, "loss") >= 0)
        cr_assert(pass_autodiff(&g, &go, &e) == 0 &&
                      pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0,
                  "%s", e.msg);
    rt_tensor_list params, in;
    rt_list_init(&params);
    rt_list_init(&in);
    cr_assert(rt_params_init(g, 5, &params, &e) == 0, "%s", e.msg);
    batch(g, &m, 2, 9, &in);
    char msg[512];
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(tu_jit_vs_ref(g, &params, &in, threads, grads ? 1e-3 : 1e-4, 1e-6, msg,
                                sizeof msg) == 0,
                  "%s (%s, %d threads): %s", path, grads ? "forward+backward" : "forward",
                  threads, msg);
    rt_list_free(&params);
    rt_list_free(&in);
    ir_graph_free(g);
}

/* Calls f on every model description in models/ but the three largest sizes. */
static int each_small_model(void (*f)(const char *, int), int grads)
{
    DIR *d = opendir(tu_src("models"));
    cr_assert(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        const char *s = de->d_name;
        size_t len = strlen(s);
        if (len < 5 || strcmp(s + len - 4, ".xml") || strstr(s, "base") ||
            strstr(s, "large") || strstr(s, "medium"))
            continue;
        char rel[512];
        snprintf(rel, sizeof rel, "models/%s", s);
        f(tu_src(rel), grads);
        n++;
    }
    closedir(d);
    return n;
}

Test(codegen_models, forward_of_every_small_model_matches_the_reference, .timeout = 600)
{
    cr_assert_geq(each_small_model(check_model, 0), 5);
}

Test(codegen_models, gradients_of_every_small_model_match_the_reference, .timeout = 600)
{
    cr_assert_geq(each_small_model(check_model, 1), 5);
}

/* The JIT compiles its kernels in parts, side by side: one part or several give the
 * same bits (a kernel's code does not depend on the part it is in). */
Test(codegen_models, kernels_compiled_in_parts_give_the_same_bits, .timeout = 600)
{
    fe_model m;
    bc_err e;
    cr_assert(fe_load(tu_src("models/bert-tiny-all-heads.xml"), &m, &e) == 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL | FE_BUILD_TRAIN, &e);
    cr_assert(g, "%s", e.msg);
    pass_grad_opts go = {"loss", NULL, 0};
    cr_assert(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0 &&
                  pass_autodiff(&g, &go, &e) == 0 &&
                  pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0,
              "%s", e.msg);
    rt_tensor_list params, in, out[3];
    rt_list_init(&params);
    rt_list_init(&in);
    cr_assert(rt_params_init(g, 5, &params, &e) == 0, "%s", e.msg);
    train_batch(g, &m, 2, 9, 42, &in);
    static const int parts[3] = {1, 3, 8};
    for (int i = 0; i < 3; i++) {
        cg_options o = {0};
        o.compile_parts = parts[i];
        o.prefix = "parts"; /* its own cache entries: not the other tests' objects */
        cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, &o, &e);
        cr_assert(x, "%d parts: %s", parts[i], e.msg);
        rt_list_init(&out[i]);
        cr_assert(cg_engine_run(x, &params, &in, 2, &out[i], &e) == 0, "%s", e.msg);
        cg_engine_free(x);
    }
    cr_assert(out[0].n == g->nout && out[0].n > 10);
    for (int i = 1; i < 3; i++)
        for (int k = 0; k < out[0].n; k++) {
            const rt_tensor *a = &out[0].t[k], *b = rt_list_cfind(&out[i], a->name);
            cr_assert(b && rt_numel(a) == rt_numel(b), "%s", a->name);
            cr_expect(!memcmp(a->data, b->data, (size_t)rt_numel(a) * 4),
                      "%s differs between 1 and %d parts", a->name, parts[i]);
        }
    for (int i = 0; i < 3; i++)
        rt_list_free(&out[i]);
    rt_list_free(&params);
    rt_list_free(&in);
    ir_graph_free(g);
}

/* Pre-training's graph with the MLM head on gathered rows (fe_build_bert_mlm_gather, in
 * training mode with dropout): generated forward + backward against the reference. The
 * batch has 6 labels in each row of 9 (every third -100), gathered into P = 7 rows. */
Test(codegen_models, gathered_mlm_training_graph_matches_the_reference, .timeout = 600)
{
    fe_model m;
    bc_err e;
    cr_assert(fe_load(tu_src("models/bert-tiny-all-heads.xml"), &m, &e) == 0, "%s", e.msg);
    unsigned labels = FE_LABEL_MLM | FE_LABEL_NSP;
    ir_graph *full = fe_build_bert(&m, labels | FE_BUILD_TRAIN, &e);
    ir_graph *g = fe_build_bert_mlm_gather(&m, labels | FE_BUILD_TRAIN, 7, &e);
    cr_assert(full && g, "%s", e.msg);
    pass_grad_opts go = {"loss", NULL, 0};
    cr_assert(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0 &&
                  pass_autodiff(&g, &go, &e) == 0 &&
                  pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) == 0,
              "%s", e.msg);
    cr_assert(ir_find_named(g, IR_OP_INPUT, "mlm_labels") < 0);
    rt_tensor_list params, in;
    rt_list_init(&params);
    rt_list_init(&in);
    cr_assert(rt_params_init(g, 5, &params, &e) == 0, "%s", e.msg);
    train_batch(full, &m, 2, 9, 3, &in);
    cr_assert(rt_batch_mlm_gather(&in, 7, &e) == 0, "%s", e.msg);
    char msg[512];
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(tu_jit_vs_ref(g, &params, &in, threads, 1e-3, 1e-6, msg, sizeof msg) == 0,
                  "%d threads: %s", threads, msg);
    rt_list_free(&params);
    rt_list_free(&in);
    ir_graph_free(g);
    ir_graph_free(full);
}
