/* test_exec.c: runtime/exec.c's memory — outputs computed in the caller's tensors (the
 * same data pointer across runs, the right values against the reference interpreter,
 * and a copy instead wherever writing in place would be wrong: reshapes, params, a
 * second name for a value, a tensor that overlaps a param), packed weights recomputed
 * or kept (rt_exec_keep_constants), and the training graph's
 * gradients written straight into one arena, bit for bit what the copying path gives. */
#include <criterion/criterion.h>
#include <string.h>

#include "../codegen/engine.h"
#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "../train/batch.h"
#include "tests/util.h"

#define H 5

/* y = x w (output "y", and again as "y2"), z = gelu(y) (a later step reads y), r = z
 * reshaped (an alias of z), and the param w itself as output "w". */
static ir_graph *small_graph(void)
{
    ir_graph *g = ir_graph_new("in_place");
    ir_dim xd[2] = {IR_DIM_B, ir_dconst(H)}, wd[2] = {ir_dconst(H), ir_dconst(H)};
    ir_dim rd[1] = {ir_dim_mul(IR_DIM_B, ir_dconst(H))};
    int x = ir_input(g, "x", ir_type_make(IR_F32, 2, xd));
    int w = ir_param(g, "w", ir_type_make(IR_F32, 2, wd));
    int y = ir_matmul(g, x, w, 0, 0);
    int z = ir_unary(g, IR_OP_GELU, y);
    ir_set_output(g, "y", y);
    ir_set_output(g, "z", z);
    ir_set_output(g, "r", ir_reshape(g, z, 1, rd));
    ir_set_output(g, "w", w);
    ir_set_output(g, "y2", y);
    cr_assert(!g->failed, "%s", g->err.msg);
    return g;
}

/* Every output of ref is in out with values within float rounding of it. */
static void expect_matches(const rt_tensor_list *out, const rt_tensor_list *ref)
{
    for (int i = 0; i < ref->n; i++) {
        const rt_tensor *r = &ref->t[i], *o = rt_list_cfind(out, r->name);
        cr_assert_not_null(o, "%s missing", r->name);
        double mr = 0, err = tu_max_err(o, r, &mr);
        cr_expect(err >= 0 && err <= 1e-5 * mr + 1e-6, "%s: max error %g (max |ref| %g)",
                  r->name, err, mr);
    }
}

static void reference(const ir_graph *g, const rt_tensor_list *p, const rt_tensor_list *in,
                      rt_tensor_list *ref)
{
    bc_err e;
    rt_interp_opts o = {0, 1};
    rt_list_init(ref);
    cr_assert_eq(rt_interp_run(g, p, in, &o, ref, &e), 0, "%s", e.msg);
}

Test(exec, outputs_are_computed_in_the_callers_tensors_run_after_run)
{
    ir_graph *g = small_graph();
    bc_err e;
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(x, "%s", e.msg);
    rt_tensor_list p, in, out, ref;
    rt_list_init(&p);
    rt_list_init(&out);
    int64_t ws[2] = {H, H}, xs[2] = {3, H}, rs[1] = {3 * H};
    tu_add_rand_f32(&p, "w", 2, ws, -1, 1, 1);
    float *wdata = p.t[0].data;
    /* Tensors of each output's name, dtype and shape, filled with junk. */
    const char *names[] = {"y", "z", "r", "w", "y2"};
    for (int i = 0; i < 5; i++) {
        int isw = !strcmp(names[i], "w"), isr = !strcmp(names[i], "r");
        tu_add_rand_f32(&out, names[i], isr ? 1 : 2, isr ? rs : isw ? ws : xs, 50, 60, 9);
    }
    void *y_at = rt_list_cfind(&out, "y")->data, *z_at = rt_list_cfind(&out, "z")->data;
    for (int run = 0; run < 3; run++) {
        void *before[5]; /* replacing a tensor allocates before it frees: a new pointer */
        for (int i = 0; i < 5; i++)
            before[i] = rt_list_cfind(&out, names[i])->data;
        rt_list_init(&in);
        tu_add_rand_f32(&in, "x", 2, xs, -2, 2, 100 + (uint64_t)run);
        reference(g, &p, &in, &ref);
        cr_assert_eq(cg_engine_run(x, &p, &in, 2, &out, &e), 0, "%s", e.msg);
        cr_expect_eq(out.n, 5, "no output appended twice");
        /* Kernel results land where the caller's tensors are, run after run... */
        cr_expect_eq(rt_list_cfind(&out, "y")->data, y_at, "run %d: y moved", run);
        cr_expect_eq(rt_list_cfind(&out, "z")->data, z_at, "run %d: z moved", run);
        /* ...while a reshape, a param and a second name for y are copies. */
        for (int i = 2; i < 5; i++)
            cr_expect_neq(rt_list_cfind(&out, names[i])->data, before[i],
                          "run %d: %s was written in place", run, names[i]);
        cr_expect_neq(rt_list_cfind(&out, "w")->data, (void *)wdata);
        expect_matches(&out, &ref);
        rt_list_free(&ref);
        rt_list_free(&in);
    }
    rt_list_free(&out);
    rt_list_free(&p);
    cg_engine_free(x);
    ir_graph_free(g);
}

Test(exec, a_tensor_that_is_not_a_fit_or_overlaps_a_param_is_replaced)
{
    ir_graph *g = small_graph();
    bc_err e;
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(x, "%s", e.msg);
    rt_tensor_list p, in, out, ref;
    rt_list_init(&p);
    rt_list_init(&in);
    rt_list_init(&out);
    /* B = H: y has w's shape, so a view of w's memory fits y in all but memory. */
    int64_t ws[2] = {H, H}, wrong[2] = {H, H + 1};
    tu_add_rand_f32(&p, "w", 2, ws, -1, 1, 1);
    tu_add_rand_f32(&in, "x", 2, ws, -2, 2, 2);
    float w0[H * H];
    memcpy(w0, p.t[0].data, sizeof w0);
    cr_assert(rt_list_add_view(&out, "y", RT_F32, 2, ws, p.t[0].data));
    cr_assert(rt_list_add(&out, "z", RT_F32, 2, wrong, NULL));
    cr_assert(rt_list_add(&out, "r", RT_I64, 1, (int64_t[]){H * H}, NULL));
    reference(g, &p, &in, &ref);
    cr_assert_eq(cg_engine_run(x, &p, &in, 1, &out, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(p.t[0].data, w0, sizeof w0), 0, "the param was written");
    cr_expect_neq(rt_list_cfind(&out, "y")->data, p.t[0].data);
    cr_expect_eq(rt_list_cfind(&out, "z")->shape[1], H);
    cr_expect_eq(rt_list_cfind(&out, "r")->dtype, RT_F32);
    expect_matches(&out, &ref);
    rt_list_free(&ref);
    rt_list_free(&out);
    rt_list_free(&in);
    rt_list_free(&p);
    cg_engine_free(x);
    ir_graph_free(g);
}

/* One run of eng matches ref. */
static void run_matches(cg_engine *eng, const rt_tensor_list *params,
                        const rt_tensor_list *in, const rt_tensor_list *ref)
{
    bc_err e;
    rt_tensor_list out;
    rt_list_init(&out);
    cr_assert_eq(cg_engine_run(eng, params, in, 2, &out, &e), 0, "%s", e.msg);
    expect_matches(&out, ref);
    rt_list_free(&out);
}

/* Packed weights (the pack rule's pack_b steps): recomputed in every run by default, so a
 * weight changed in place is seen; kept with rt_exec_keep_constants — then a weight
 * changed in place is not seen (the caller's promise) until it is called again, and
 * one bound to other memory is seen at once. */
Test(exec, packed_weights_are_kept_only_when_asked)
{
    ir_graph *g = ir_graph_new("packed");
    ir_dim xd[2] = {IR_DIM_B, ir_dconst(H)}, wd[2] = {ir_dconst(7), ir_dconst(H)};
    int x = ir_input(g, "x", ir_type_make(IR_F32, 2, xd));
    int w = ir_param(g, "w", ir_type_make(IR_F32, 2, wd));
    ir_set_output(g, "y", ir_matmul(g, x, w, 0, 1));
    bc_err e;
    cr_assert(!g->failed && pass_pack_weights(&g, &e) == 0, "%s", e.msg);
    cr_assert_eq(g->nodes[g->nodes[g->outs[0].value].in[2]].op, IR_OP_PACK_B);
    cg_engine *eng = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(eng, "%s", e.msg);
    rt_tensor_list p1, p2, in, ref1, ref2;
    rt_list_init(&p1);
    rt_list_init(&p2);
    rt_list_init(&in);
    tu_add_rand_f32(&p1, "w", 2, (int64_t[]){7, H}, -1, 1, 11);
    tu_add_rand_f32(&p2, "w", 2, (int64_t[]){7, H}, -1, 1, 12);
    tu_add_rand_f32(&in, "x", 2, (int64_t[]){3, H}, -1, 1, 13);
    float saved[7 * H], *w1 = p1.t[0].data;
    memcpy(saved, w1, sizeof saved);
    reference(g, &p1, &in, &ref1);
    reference(g, &p2, &in, &ref2);
    run_matches(eng, &p1, &in, &ref1);      /* by default, packed in every run */
    memcpy(w1, p2.t[0].data, sizeof saved); /* w1 now holds w2's values */
    run_matches(eng, &p1, &in, &ref2);
    memcpy(w1, saved, sizeof saved);
    cg_engine_keep_constants(eng, 1);
    run_matches(eng, &p1, &in, &ref1); /* kept: the first run packs */
    memcpy(w1, p2.t[0].data, sizeof saved);
    run_matches(eng, &p1, &in, &ref1); /* changed in place: not seen */
    cg_engine_keep_constants(eng, 1);
    run_matches(eng, &p1, &in, &ref2); /* asked again: packed again */
    memcpy(w1, saved, sizeof saved);
    run_matches(eng, &p2, &in, &ref2); /* other memory: packed */
    run_matches(eng, &p1, &in, &ref1); /* and back */
    rt_list_free(&ref1);
    rt_list_free(&ref2);
    rt_list_free(&in);
    rt_list_free(&p1);
    rt_list_free(&p2);
    cg_engine_free(eng);
    ir_graph_free(g);
}

static const char *fixture(const char *file)
{
    static char buf[4][1024];
    static int k;
    char rel[256], *b = buf[k++ % 4];
    snprintf(rel, sizeof rel, "tests/fixtures/run_tiny/%s", file);
    snprintf(b, 1024, "%s", tu_src(rel));
    return b;
}

/* The training graph of run_tiny (loss and every gradient), its params and inputs. */
static ir_graph *train_graph(rt_tensor_list *params, rt_tensor_list *inputs)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load(fixture("model.xml"), &m, &e), 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    pass_grad_opts go = {"loss", NULL, 0};
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_autodiff(&g, &go, &e), 0, "%s", e.msg);
    cr_assert_eq(pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s", e.msg);
    rt_tensor_list batch, ckpt;
    rt_list_init(&batch);
    rt_list_init(&ckpt);
    rt_list_init(params);
    rt_list_init(inputs);
    cr_assert_eq(rt_st_load(fixture("batch.safetensors"), &batch, &e), 0, "%s", e.msg);
    unsigned present;
    int64_t B, S;
    cr_assert_eq(tr_batch_prepare(&batch, m.max_position, FE_LABEL_ALL, inputs, &present,
                                  &B, &S, NULL, NULL, &e),
                 0, "%s", e.msg);
    cr_assert_eq(rt_st_load(fixture("weights.safetensors"), &ckpt, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_params_from_checkpoint(g, &ckpt, 0, 0, params, NULL, NULL, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(rt_list_pack(params), 0);
    rt_list_free(&batch);
    rt_list_free(&ckpt);
    return g;
}

Test(exec, training_gradients_are_written_straight_into_one_arena, .timeout = 120)
{
    rt_tensor_list params, inputs, copied, grads, out, ref;
    ir_graph *g = train_graph(&params, &inputs);
    bc_err e;
    cg_engine *x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(x, "%s", e.msg);
    /* The copying path: out starts empty. */
    rt_list_init(&copied);
    cr_assert_eq(cg_engine_run(x, &params, &inputs, 2, &copied, &e), 0, "%s", e.msg);
    /* One arena of gradients, and out holding views of it. */
    rt_list_init(&grads);
    rt_list_init(&out);
    for (int i = 0; i < copied.n; i++) {
        const rt_tensor *t = &copied.t[i];
        if (!strncmp(t->name, "grad.", 5))
            cr_assert(rt_list_add(&grads, t->name, RT_F32, t->rank, t->shape, NULL));
    }
    cr_assert_gt(grads.n, 10);
    cr_assert_eq(rt_list_pack(&grads), 0);
    for (int i = 0; i < grads.n; i++) {
        const rt_tensor *t = &grads.t[i];
        cr_assert(rt_list_add_view(&out, t->name, RT_F32, t->rank, t->shape, t->data));
    }
    reference(g, &params, &inputs, &ref);
    for (int run = 0; run < 2; run++) {
        cr_assert_eq(cg_engine_run(x, &params, &inputs, 2, &out, &e), 0, "%s", e.msg);
        int in_arena = 0;
        for (int i = 0; i < grads.n; i++) {
            const rt_tensor *o = rt_list_cfind(&out, grads.t[i].name);
            cr_assert_not_null(o);
            in_arena += o->data == grads.t[i].data;
        }
        /* A gradient that is a reshape or a param's own value would be copied; in BERT
         * every gradient is a kernel's result. */
        cr_expect_eq(in_arena, grads.n, "run %d: %d of %d gradients in the arena", run,
                     in_arena, grads.n);
        for (int i = 0; i < copied.n; i++) {
            const rt_tensor *c = &copied.t[i], *o = rt_list_cfind(&out, c->name);
            cr_assert_not_null(o, "%s missing", c->name);
            cr_expect(rt_nbytes(o) == rt_nbytes(c) &&
                          !memcmp(o->data, c->data, rt_nbytes(c)),
                      "run %d: %s differs from the copying path", run, c->name);
        }
    }
    double mr;
    for (int i = 0; i < ref.n;
         i++) { /* and against the interpreter, as test_codegen does */
        const rt_tensor *r = &ref.t[i], *o = rt_list_cfind(&out, r->name);
        cr_assert_not_null(o, "%s missing", r->name);
        double err = tu_max_err(o, r, &mr);
        cr_expect(err >= 0 && err <= 1e-3 * mr + 1e-6, "%s: max error %g", r->name, err);
    }
    rt_list_free(&ref);
    rt_list_free(&out);
    rt_list_free(&grads);
    rt_list_free(&copied);
    rt_list_free(&inputs);
    rt_list_free(&params);
    cg_engine_free(x);
    ir_graph_free(g);
}

/* ---- index checks: one table, each backend's wording kept ---------------------------- */

/* ids [B, S] into a [4, 3] table plus rows [0, S) of a [5, 3] one; a softmax of scores
 * [B, S] under mask [B, S]; cross-entropy of logits [B, 3] against labels [B]. */
static ir_graph *index_graph(void)
{
    ir_graph *g = ir_graph_new("indices");
    ir_dim bs[2] = {IR_DIM_B, IR_DIM_S}, b3[2] = {IR_DIM_B, ir_dconst(3)};
    ir_dim t4[2] = {ir_dconst(4), ir_dconst(3)}, t5[2] = {ir_dconst(5), ir_dconst(3)};
    int ids = ir_input(g, "ids", ir_type_make(IR_I64, 2, bs));
    int mask = ir_input(g, "mask", ir_type_make(IR_I64, 2, bs));
    int scores = ir_input(g, "scores", ir_type_make(IR_F32, 2, bs));
    int logits = ir_input(g, "logits", ir_type_make(IR_F32, 2, b3));
    int labels = ir_input(g, "labels", ir_type_make(IR_I64, 1, bs)); /* [B] */
    int tab = ir_param(g, "tab", ir_type_make(IR_F32, 2, t4));
    int pos = ir_param(g, "pos", ir_type_make(IR_F32, 2, t5));
    ir_set_output(g, "x",
                  ir_addv(g, ir_gather(g, tab, ids), ir_prefix_rows(g, pos, IR_DIM_S)));
    ir_set_output(g, "p", ir_attn_softmax(g, scores, mask, 1.0));
    ir_set_output(g, "loss", ir_cross_entropy(g, logits, labels));
    cr_assert(!g->failed, "%s", g->err.msg);
    return g;
}

/* Inputs for B = 2 and S, all valid; then element `at` of `bad` set to `value`. */
static void index_inputs(rt_tensor_list *in, int64_t S, const char *bad, int64_t at,
                         int64_t value)
{
    rt_list_init(in);
    int64_t bs[2] = {2, S}, b3[2] = {2, 3}, b[1] = {2};
    tu_add_rand_i64(in, "ids", 2, bs, 0, 4, 1);
    tu_add_rand_i64(in, "mask", 2, bs, 0, 2, 2);
    tu_add_rand_f32(in, "scores", 2, bs, -1, 1, 3);
    tu_add_rand_f32(in, "logits", 2, b3, -1, 1, 4);
    tu_add_rand_i64(in, "labels", 1, b, 0, 3, 5);
    if (bad)
        ((int64_t *)rt_list_find(in, bad)->data)[at] = value;
}

Test(exec, index_errors_read_as_each_backend_always_wrote_them)
{
    static const struct {
        const char *tensor;
        int64_t S, at, value;
        const char *jit, *ref;
    } cases[] = {
        {"ids", 3, 4, 4, "ids: value 4 at flat index 4 is out of range [0, 4)",
         "ids: value 4 at flat index 4 is out of range [0, 4)"},
        {"ids", 3, 0, -1, "ids: value -1 at flat index 0 is out of range [0, 4)",
         "ids: value -1 at flat index 0 is out of range [0, 4)"},
        {NULL, 6, 0, 0, "sequence length 6 exceeds the 5 rows of pos (max-position)",
         "sequence length 6 exceeds the 5 rows of pos (max-position)"},
        {"mask", 3, 1, 2, "mask: value 2 at flat index 1 is out of range [0, 2)",
         "mask: value 2 at flat index 1 must be 0 or 1"},
        {"labels", 3, 1, 3,
         "labels: value 3 at flat index 1 is out of range [0, 3) (or -100 to ignore)",
         "labels: label 3 at flat index 1 is out of range [0, 3) (or -100 to ignore)"},
        {"labels", 3, 0, -2,
         "labels: value -2 at flat index 0 is out of range [0, 3) (or -100 to ignore)",
         "labels: label -2 at flat index 0 is out of range [0, 3) (or -100 to ignore)"},
    };
    ir_graph *g = index_graph();
    bc_err e;
    cg_engine *jit = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e);
    cr_assert_not_null(jit, "%s", e.msg);
    cg_engine *ref = cg_engine_new(g, CG_BACKEND_REF, NULL, &e);
    cr_assert_not_null(ref, "%s", e.msg);
    rt_tensor_list p, in, out;
    rt_list_init(&p);
    tu_add_rand_f32(&p, "tab", 2, (int64_t[]){4, 3}, -1, 1, 6);
    tu_add_rand_f32(&p, "pos", 2, (int64_t[]){5, 3}, -1, 1, 7);
    /* Valid inputs (an ignored label included) run on both. */
    index_inputs(&in, 3, "labels", 1, -100);
    rt_list_init(&out);
    cr_assert_eq(cg_engine_run(jit, &p, &in, 1, &out, &e), 0, "%s", e.msg);
    cr_assert_eq(cg_engine_run(ref, &p, &in, 1, &out, &e), 0, "%s", e.msg);
    rt_list_free(&out);
    rt_list_free(&in);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        index_inputs(&in, cases[i].S, cases[i].tensor, cases[i].at, cases[i].value);
        rt_list_init(&out);
        cr_expect_eq(cg_engine_run(jit, &p, &in, 1, &out, &e), -1, "case %zu: accepted", i);
        cr_expect_str_eq(e.msg, cases[i].jit, "case %zu (jit)", i);
        cr_expect_eq(out.n, 0, "case %zu: outputs despite the error", i);
        cr_expect_eq(cg_engine_run(ref, &p, &in, 1, &out, &e), -1, "case %zu: accepted", i);
        cr_expect_str_eq(e.msg, cases[i].ref, "case %zu (ref)", i);
        rt_list_free(&out);
        rt_list_free(&in);
    }
    rt_list_free(&p);
    cg_engine_free(jit);
    cg_engine_free(ref);
    ir_graph_free(g);
}
