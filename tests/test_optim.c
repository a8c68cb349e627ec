/* test_optim.c: train/optim.c — AdamW, the linear warm-up/decay schedule and global
 * gradient clipping, against steps computed by hand and against PyTorch
 * (tests/fixtures/optim/make_adamw.py: torch.optim.AdamW, clip_grad_norm_, LambdaLR). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/safetensors.h"
#include "../train/optim.h"
#include "util.h"

/* ---- helpers ---------------------------------------------------------------------- */

static rt_tensor *add_f32(rt_tensor_list *l, const char *name, int64_t n, const float *v)
{
    int64_t shape[1] = {n};
    rt_tensor *t = rt_list_add(l, name, RT_F32, 1, shape, v);
    cr_assert(t, "cannot add %s", name);
    return t;
}

static const float *f32(const rt_tensor_list *l, const char *name)
{
    const rt_tensor *t = rt_list_cfind(l, name);
    cr_assert(t, "%s missing", name);
    cr_assert_eq(t->dtype, RT_F32, "%s is not F32", name);
    return t->data;
}

static void assert_near(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol, "%s: got %.9g, want %.9g (tolerance %g)", what, got,
              want, tol);
}

static tr_adamw_opts hand_opts(void)
{
    tr_adamw_opts o;
    tr_adamw_defaults(&o);
    o.lr = 0.1;
    return o;
}

/* ---- decay groups, frozen prefixes, schedule ---------------------------------------- */

Test(optim, decay_excludes_biases_and_layernorm)
{
    cr_assert(tr_param_decays("bert.encoder.layer.0.attention.self.query.weight"));
    cr_assert(tr_param_decays("bert.embeddings.word_embeddings.weight"));
    cr_assert(tr_param_decays("cls.seq_relationship.weight"));
    cr_assert(!tr_param_decays("bert.encoder.layer.0.attention.self.query.bias"));
    cr_assert(!tr_param_decays("cls.predictions.bias"));
    cr_assert(!tr_param_decays("bert.embeddings.LayerNorm.weight"));
    cr_assert(!tr_param_decays("bert.encoder.layer.1.output.LayerNorm.bias"));
    cr_assert(!tr_param_decays("cls.predictions.transform.LayerNorm.weight"));
}

Test(optim, defaults_are_bert_finetuning)
{
    tr_adamw_opts o;
    tr_adamw_defaults(&o);
    cr_assert_eq(o.beta1, 0.9);
    cr_assert_eq(o.beta2, 0.999);
    cr_assert_eq(o.eps, 1e-6);
    cr_assert_eq(o.weight_decay, 0.01);
    cr_assert_eq(o.clip, 1.0);
    cr_assert_eq(o.warmup, 0.1);
}

Test(optim, frozen_matches_prefixes)
{
    const char *fr[] = {"bert.encoder.", "bert.embeddings."};
    cr_assert(tr_param_is_frozen("bert.encoder.layer.0.output.dense.weight", fr, 2));
    cr_assert(tr_param_is_frozen("bert.embeddings.LayerNorm.bias", fr, 2));
    cr_assert(!tr_param_is_frozen("bert.pooler.dense.weight", fr, 2));
    cr_assert(!tr_param_is_frozen("intent.classifier.weight", fr, 2));
    cr_assert(!tr_param_is_frozen("bert.encoder.layer.0.output.dense.weight", NULL, 0));
}

Test(optim, schedule_warms_up_then_decays_to_zero)
{
    tr_adamw_opts o;
    tr_adamw_defaults(&o);
    o.lr = 1.0;
    /* 10% of 20 = 2 warm-up updates: 0, 1/2, then (20 - s) / 18. */
    cr_assert_eq(tr_sched_warmup_steps(0.1, 20), 2);
    assert_near(tr_sched_lr(&o, 0, 20), 0.0, 0, "lr(0)");
    assert_near(tr_sched_lr(&o, 1, 20), 0.5, 1e-15, "lr(1)");
    assert_near(tr_sched_lr(&o, 2, 20), 1.0, 1e-15, "lr(2)");
    assert_near(tr_sched_lr(&o, 11, 20), 0.5, 1e-15, "lr(11)");
    assert_near(tr_sched_lr(&o, 19, 20), 1.0 / 18, 1e-15, "lr(19)");
    assert_near(tr_sched_lr(&o, 20, 20), 0.0, 0, "lr(20)");
    assert_near(tr_sched_lr(&o, 25, 20), 0.0, 0, "lr(25)");
    /* ceil, as the Trainer's warmup_ratio: 30% of 7 = 2.1 -> 3. */
    cr_assert_eq(tr_sched_warmup_steps(0.3, 7), 3);
    cr_assert_eq(tr_sched_warmup_steps(0.0, 7), 0);
    cr_assert_eq(tr_sched_warmup_steps(1.0, 7), 7);
    /* No warm-up: full rate first, decaying to 1/total at the last update. */
    o.warmup = 0;
    assert_near(tr_sched_lr(&o, 0, 4), 1.0, 0, "no warm-up lr(0)");
    assert_near(tr_sched_lr(&o, 3, 4), 0.25, 0, "no warm-up lr(3)");
}

/* ---- clipping ---------------------------------------------------------------------- */

Test(optim, clip_scales_to_the_global_norm)
{
    rt_tensor_list g;
    rt_list_init(&g);
    /* Two tensors [3] and [4, 0]: global norm sqrt(9 + 16) = 5. */
    add_f32(&g, "grad.a", 1, (float[]){3});
    add_f32(&g, "grad.b", 2, (float[]){4, 0});
    assert_near(tr_grad_global_norm(&g), 5.0, 0, "norm");
    /* Max norm 10 > 5: untouched. */
    cr_assert_eq(tr_clip_grad_norm(&g, 10.0), 5.0);
    cr_assert_eq(f32(&g, "grad.a")[0], 3.0f);
    /* Max norm 0: only measured. */
    cr_assert_eq(tr_clip_grad_norm(&g, 0.0), 5.0);
    cr_assert_eq(f32(&g, "grad.b")[0], 4.0f);
    /* Max norm 1: scaled by 1 / (5 + 1e-6) -> [0.59999988], [0.79999984, 0]. */
    cr_assert_eq(tr_clip_grad_norm(&g, 1.0), 5.0);
    assert_near(f32(&g, "grad.a")[0], 3.0 / (5.0 + 1e-6), 1e-7, "clipped a");
    assert_near(f32(&g, "grad.b")[0], 4.0 / (5.0 + 1e-6), 1e-7, "clipped b");
    cr_assert_eq(f32(&g, "grad.b")[1], 0.0f);
    assert_near(tr_grad_global_norm(&g), 1.0, 1e-6, "norm after clipping");
    rt_list_free(&g);
}

Test(optim, global_norm_of_large_tensors_is_exact_and_ordered)
{
    /* 300001 elements of 0.5 (several chunks, a partial last one): sum of squares
     * 75000.25 exactly in double. */
    rt_tensor_list g;
    rt_list_init(&g);
    int64_t n = 300001;
    rt_tensor *t = add_f32(&g, "grad.big", n, NULL);
    float *d = t->data;
    for (int64_t i = 0; i < n; i++)
        d[i] = 0.5f;
    cr_assert_eq(tr_grad_global_norm(&g), sqrt(75000.25));
    rt_list_free(&g);
}

Test(optim, global_norm_of_varied_values_matches_a_long_double_sum)
{
    /* 131101 elements (two full chunks and a part, not a multiple of the 16 running
     * sums), of magnitudes from 1e-3 to 1e3: the norm within double rounding of a long
     * double sum in index order */
    rt_tensor_list g;
    rt_list_init(&g);
    int64_t n = 131101;
    float *d = add_f32(&g, "grad.big", n, NULL)->data;
    long double want = 0;
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        d[i] = (float)((double)(s >> 8) / (1 << 24) - 0.5) * (i % 7 == 0 ? 1e3f : 1e-3f);
        want += (long double)d[i] * d[i];
    }
    double got = tr_grad_global_norm(&g);
    cr_assert(fabs(got - sqrt((double)want)) <= 1e-12 * sqrt((double)want), "%.17g vs %.17g",
              got, sqrt((double)want));
    rt_list_free(&g);
}

/* ---- AdamW by hand ------------------------------------------------------------------- */

/* The update of a long tensor (several chunks and threads, a length that no vector width
 * divides) gives every element the bits of the scalar formula, one rounding per
 * operation in torch.optim.AdamW's order, over three steps of random gradients. */
Test(optim, adamw_on_a_long_tensor_gives_the_scalar_formulas_bits)
{
    tr_adamw_opts o = hand_opts();
    rt_tensor_list p, g;
    rt_list_init(&p);
    rt_list_init(&g);
    int64_t n = 70001;
    float *w = add_f32(&p, "w", n, NULL)->data, *gw = add_f32(&g, "grad.w", n, NULL)->data;
    float *rw = calloc((size_t)n * 3, sizeof(float)), *rm = rw + n, *rv = rm + n;
    cr_assert(rw);
    uint32_t s = 777;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = rw[i] = (float)((double)(s >> 8) / (1 << 24)) * 2.0f - 1.0f;
    }
    tr_adamw a;
    bc_err e;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, NULL, 0, &e), 0, "%s", e.msg);
    float decay = (float)(1.0 - 0.1 * o.weight_decay), b1 = (float)o.beta1,
          b1c = (float)(1.0 - o.beta1), b2 = (float)o.beta2, b2c = (float)(1.0 - o.beta2);
    for (int t = 1; t <= 3; t++) {
        for (int64_t i = 0; i < n; i++) {
            s = s * 1664525u + 1013904223u;
            gw[i] = (float)((double)(s >> 8) / (1 << 24) - 0.5) * (i % 5 ? 1e-2f : 3.0f);
        }
        float step_size = (float)(0.1 / (1.0 - pow(o.beta1, t)));
        float bc2s = (float)sqrt(1.0 - pow(o.beta2, t));
        for (int64_t i = 0; i < n; i++) {
            volatile float pi = rw[i] * decay, m1 = rm[i] * b1, m2 = b1c * gw[i];
            volatile float mi = m1 + m2, v1 = rv[i] * b2, v2 = b2c * gw[i], v3 = v2 * gw[i];
            volatile float vi = v1 + v3, r = sqrtf(vi), q = r / bc2s, den = q + (float)o.eps;
            volatile float u = mi / den, su = step_size * u;
            rm[i] = mi;
            rv[i] = vi;
            rw[i] = pi - su;
        }
        cr_assert_eq(tr_adamw_step(&a, &p, &g, 0.1, &e), 0, "%s", e.msg);
        for (int64_t i = 0; i < n; i++)
            cr_assert(!memcmp(&w[i], &rw[i], sizeof(float)), "step %d: w[%lld] = %.9g, want %.9g",
                      t, (long long)i, w[i], rw[i]);
    }
    free(rw);
    tr_adamw_free(&a);
    rt_list_free(&p);
    rt_list_free(&g);
}

/* lr 0.1, weight decay 0.01, eps 1e-6, betas 0.9/0.999, no schedule, no clipping.
 * w [2] = [1, 1] decays; x.bias [1] = [0.5] does not.
 *
 * Update 1, gw = [0.5, -2], gb = [0.25]; bias corrections bc1 = 0.1, bc2 = 0.001:
 *   w *= 1 - 0.1 * 0.01 = 0.999                      -> [0.999, 0.999]
 *   m = 0.1 g = [0.05, -0.2];  v = 0.001 g^2 = [0.00025, 0.004]
 *   m / bc1 = g;  sqrt(v) / sqrt(bc2) = |g| = [0.5, 2]
 *   w -= 0.1 * g / (|g| + 1e-6)  -> [0.999 - 0.0999998, 0.999 + 0.09999995]
 *                                 = [0.8990002, 1.09899995]
 *   b: m = 0.025, v = 6.25e-5, b = 0.5 - 0.1 * 0.25 / 0.250001 = 0.4000004
 * Update 2, gw = [0.5, 1], gb = [-0.25]; bc1 = 0.19, bc2 = 0.001999:
 *   w *= 0.999 -> [0.89810120, 1.09790095]
 *   m = 0.9 m + 0.1 g = [0.095, -0.08];  v = 0.999 v + 0.001 g^2 = [0.00049975, 0.004996]
 *   m / bc1 = [0.5, -0.42105263];  sqrt(v / bc2) = [0.5, 1.58090152]
 *   w -= 0.1 * [0.5 / 0.500001, -0.42105263 / 1.58090252] = [0.0999998, -0.02663366]
 *     -> [0.79810140, 1.12453464]
 *   b: m = -0.0025, v = 1.249375e-4; m / bc1 = -0.01315789, sqrt(v / bc2) = 0.25
 *     b = 0.4000004 + 0.1 * 0.01315789 / 0.250001 = 0.40526354
 * Update 3, gw = [-1, 0], gb = [0.25]; bc1 = 0.271, bc2 = 0.002997001:
 *   m = [-0.0145, -0.072], v = [0.00149925025, 0.004991004]; m_b = 0.02275,
 *   v_b = 1.873125625e-4 -> w = [0.80486822, 1.14399802], b = 0.37168434 */
Test(optim, adamw_matches_hand_computed_steps)
{
    tr_adamw_opts o = hand_opts();
    rt_tensor_list p, g;
    rt_list_init(&p);
    rt_list_init(&g);
    add_f32(&p, "w", 2, (float[]){1, 1});
    add_f32(&p, "x.bias", 1, (float[]){0.5f});
    tr_adamw a;
    bc_err e;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, NULL, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(a.m.n, 2);
    static const float gw[3][2] = {{0.5f, -2}, {0.5f, 1}, {-1, 0}},
                       gb[3] = {0.25f, -0.25f, 0.25f};
    static const double want_w[3][2] = {{0.8990001999996, 1.098999950000025},
                                        {0.7981013997992011, 1.1245346371689138},
                                        {0.8048682207793308, 1.1439980169365567}};
    static const double want_b[3] = {0.4000003999984, 0.4052635368405894,
                                     0.3716843353640374};
    static const double want_m[3][2] = {{0.05, -0.2}, {0.095, -0.08}, {-0.0145, -0.072}};
    static const double want_v[3][2] = {
        {0.00025, 0.004}, {0.00049975, 0.004996}, {0.00149925025, 0.004991004}};
    for (int s = 0; s < 3; s++) {
        add_f32(&g, "grad.w", 2, gw[s]);
        add_f32(&g, "grad.x.bias", 1, &gb[s]);
        cr_assert_eq(tr_adamw_step(&a, &p, &g, 0.1, &e), 0, "%s", e.msg);
        cr_assert_eq(a.step, s + 1);
        char what[64];
        for (int i = 0; i < 2; i++) {
            snprintf(what, sizeof what, "update %d w[%d]", s + 1, i);
            assert_near(f32(&p, "w")[i], want_w[s][i], 3e-7, what);
            assert_near(f32(&a.m, "adam.m.w")[i], want_m[s][i], 5e-8, what);
            assert_near(f32(&a.v, "adam.v.w")[i], want_v[s][i], 1e-9, what);
        }
        snprintf(what, sizeof what, "update %d x.bias", s + 1);
        assert_near(f32(&p, "x.bias")[0], want_b[s], 3e-7, what);
    }
    tr_adamw_free(&a);
    rt_list_free(&p);
    rt_list_free(&g);
}

Test(optim, zero_lr_changes_only_the_moments)
{
    /* The first warm-up update has lr 0: no decay, no step, but m and v move. */
    tr_adamw_opts o = hand_opts();
    rt_tensor_list p, g;
    rt_list_init(&p);
    rt_list_init(&g);
    add_f32(&p, "w", 2, (float[]){1, -3});
    add_f32(&g, "grad.w", 2, (float[]){2, 4});
    tr_adamw a;
    bc_err e;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, NULL, 0, &e), 0);
    cr_assert_eq(tr_adamw_step(&a, &p, &g, 0.0, &e), 0, "%s", e.msg);
    cr_assert_eq(f32(&p, "w")[0], 1.0f);
    cr_assert_eq(f32(&p, "w")[1], -3.0f);
    assert_near(f32(&a.m, "adam.m.w")[1], 0.4, 1e-7, "m");
    assert_near(f32(&a.v, "adam.v.w")[1], 0.016, 1e-9, "v");
    tr_adamw_free(&a);
    rt_list_free(&p);
    rt_list_free(&g);
}

Test(optim, frozen_params_have_no_state_and_need_no_gradient)
{
    tr_adamw_opts o = hand_opts();
    rt_tensor_list p, g;
    rt_list_init(&p);
    rt_list_init(&g);
    add_f32(&p, "bert.encoder.w", 2, (float[]){1, 2});
    add_f32(&p, "head.w", 2, (float[]){3, 4});
    add_f32(&g, "grad.head.w", 2, (float[]){1, 1});
    const char *fr[] = {"bert."};
    tr_adamw a;
    bc_err e;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, fr, 1, &e), 0);
    cr_assert_eq(a.m.n, 1);
    cr_assert_str_eq(a.names[0], "head.w");
    cr_assert_not(rt_list_cfind(&a.m, "adam.m.bert.encoder.w"));
    cr_assert_eq(tr_adamw_step(&a, &p, &g, 0.1, &e), 0, "%s", e.msg);
    cr_assert_eq(f32(&p, "bert.encoder.w")[0], 1.0f);
    cr_assert_eq(f32(&p, "bert.encoder.w")[1], 2.0f);
    cr_assert(f32(&p, "head.w")[0] < 3.0f);
    tr_adamw_free(&a);
    rt_list_free(&p);
    rt_list_free(&g);
}

Test(optim, each_moment_is_one_arena_of_views)
{
    tr_adamw_opts o = hand_opts();
    rt_tensor_list p;
    rt_list_init(&p);
    add_f32(&p, "a.w", 3, (float[]){1, 2, 3});
    add_f32(&p, "frozen.w", 2, (float[]){1, 2});
    add_f32(&p, "b.w", 20, NULL);
    add_f32(&p, "c.bias", 1, (float[]){5});
    const char *fr[] = {"frozen."};
    tr_adamw a;
    bc_err e;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, fr, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(a.m.n, 3);
    const rt_tensor_list *lists[2] = {&a.m, &a.v};
    for (int k = 0; k < 2; k++) {
        const rt_arena *ar = lists[k]->t[0].arena;
        cr_assert_not_null(ar, "moment %d is not in an arena", k);
        cr_expect_eq(ar->refs, 3);
        cr_expect_eq(ar->bytes, (size_t)(64 + 128 + 64), "slots of 12, 80 and 4 bytes");
        for (int i = 0; i < 3; i++) {
            const rt_tensor *t = &lists[k]->t[i];
            cr_expect(t->view && t->arena == ar, "%s is not a view of the arena", t->name);
            cr_expect_eq((uintptr_t)t->data % 64, 0, "%s is not aligned", t->name);
            for (int64_t j = 0; j < rt_numel(t); j++)
                cr_expect_eq(((const float *)t->data)[j], 0.0f, "%s starts at zero",
                             t->name);
        }
    }
    cr_expect_neq(a.m.t[0].arena, a.v.t[0].arena);
    tr_adamw_free(&a); /* each arena freed once: ASan reports a double free or a leak */
    rt_list_free(&p);
}

Test(optim, missing_or_misshaped_gradient_is_an_error_naming_it)
{
    tr_adamw_opts o = hand_opts();
    rt_tensor_list p, g;
    rt_list_init(&p);
    rt_list_init(&g);
    add_f32(&p, "a.weight", 2, (float[]){1, 2});
    add_f32(&p, "b.weight", 1, (float[]){3});
    add_f32(&g, "grad.a.weight", 2, (float[]){1, 1});
    tr_adamw a;
    bc_err e;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, NULL, 0, &e), 0);
    cr_assert_eq(tr_adamw_step(&a, &p, &g, 0.1, &e), -1);
    cr_assert(strstr(e.msg, "grad.b.weight"), "%s", e.msg);
    /* Nothing was applied, not even to a.weight. */
    cr_assert_eq(f32(&p, "a.weight")[0], 1.0f);
    cr_assert_eq(a.step, 0);
    add_f32(&g, "grad.b.weight", 2, (float[]){1, 1});
    cr_assert_eq(tr_adamw_step(&a, &p, &g, 0.1, &e), -1);
    cr_assert(strstr(e.msg, "grad.b.weight") && strstr(e.msg, "[1]"), "%s", e.msg);
    tr_adamw_free(&a);
    rt_list_free(&p);
    rt_list_free(&g);
}

Test(optim, state_round_trips_through_a_file)
{
    tr_adamw_opts o = hand_opts();
    rt_tensor_list p, g, saved, loaded;
    rt_list_init(&p);
    rt_list_init(&g);
    rt_list_init(&saved);
    rt_list_init(&loaded);
    add_f32(&p, "w", 2, (float[]){1, 1});
    add_f32(&g, "grad.w", 2, (float[]){0.5f, -2});
    tr_adamw a, b;
    bc_err e;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, NULL, 0, &e), 0);
    cr_assert_eq(tr_adamw_step(&a, &p, &g, 0.1, &e), 0);
    cr_assert_eq(tr_adamw_save(&a, &saved, &e), 0);
    const char *path = tu_path(tu_tmpdir(), "adam.safetensors");
    cr_assert_eq(rt_st_save(path, &saved, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_st_load(path, &loaded, &e), 0, "%s", e.msg);
    cr_assert_eq(tr_adamw_init(&b, &o, &p, NULL, 0, &e), 0);
    cr_assert_eq(tr_adamw_load(&b, &loaded, &e), 0, "%s", e.msg);
    cr_assert_eq(b.step, 1);
    cr_assert_eq(memcmp(a.m.t[0].data, b.m.t[0].data, 8), 0);
    cr_assert_eq(memcmp(a.v.t[0].data, b.v.t[0].data, 8), 0);
    /* A state without this parameter's moments is refused, naming them. */
    rt_list_remove(&loaded, "adam.v.w");
    cr_assert_eq(tr_adamw_load(&b, &loaded, &e), -1);
    cr_assert(strstr(e.msg, "adam.v.w"), "%s", e.msg);
    tr_adamw_free(&a);
    tr_adamw_free(&b);
    rt_list_free(&p);
    rt_list_free(&g);
    rt_list_free(&saved);
    rt_list_free(&loaded);
}

/* ---- against PyTorch ------------------------------------------------------------------
 */

static const char *const torch_names[] = {"enc.dense.weight", "enc.dense.bias",
                                          "enc.LayerNorm.weight", "head.weight",
                                          "cls.predictions.bias"};
#define NTORCH 5

static const double *f64(const rt_tensor_list *l, const char *name)
{
    const rt_tensor *t = rt_list_cfind(l, name);
    cr_assert(t && t->dtype == RT_F64, "%s missing or not F64", name);
    return t->data;
}

/* Replays case `key` of the fixture: clip, schedule and AdamW, update by update; every
 * parameter must match torch to float rounding (relative to its largest magnitude). */
static void replay_torch_case(const char *key)
{
    rt_tensor_list fx, p, g;
    rt_list_init(&fx);
    rt_list_init(&p);
    rt_list_init(&g);
    bc_err e;
    cr_assert_eq(rt_st_load(tu_src("tests/fixtures/optim/adamw.safetensors"), &fx, &e), 0,
                 "%s", e.msg);
    char name[256];
    snprintf(name, sizeof name, "%s.hparams", key);
    const double *hp = f64(&fx, name);
    tr_adamw_opts o;
    tr_adamw_defaults(&o);
    o.lr = hp[0];
    o.eps = hp[1];
    o.weight_decay = hp[2];
    o.clip = hp[3];
    o.warmup = hp[4];
    int64_t steps = (int64_t)hp[5];
    snprintf(name, sizeof name, "%s.lr", key);
    const double *lrs = f64(&fx, name);
    snprintf(name, sizeof name, "%s.norm", key);
    const double *norms = f64(&fx, name);
    for (int i = 0; i < NTORCH; i++) {
        snprintf(name, sizeof name, "%s.init.%s", key, torch_names[i]);
        const rt_tensor *t = rt_list_cfind(&fx, name);
        cr_assert(t, "%s missing", name);
        cr_assert(rt_list_add(&p, torch_names[i], RT_F32, t->rank, t->shape, t->data));
    }
    tr_adamw a;
    cr_assert_eq(tr_adamw_init(&a, &o, &p, NULL, 0, &e), 0, "%s", e.msg);
    for (int64_t s = 0; s < steps; s++) {
        for (int i = 0; i < NTORCH; i++) {
            snprintf(name, sizeof name, "%s.grad.%lld.%s", key, (long long)s,
                     torch_names[i]);
            const rt_tensor *t = rt_list_cfind(&fx, name);
            cr_assert(t, "%s missing", name);
            char gname[128];
            snprintf(gname, sizeof gname, "grad.%s", torch_names[i]);
            cr_assert(rt_list_add(&g, gname, RT_F32, t->rank, t->shape, t->data));
        }
        double norm = tr_clip_grad_norm(&g, o.clip);
        assert_near(norm, norms[s], 1e-6 * norms[s], "gradient norm");
        double lr = tr_sched_lr(&o, s, steps);
        assert_near(lr, lrs[s], 1e-15, "learning rate");
        cr_assert_eq(tr_adamw_step(&a, &p, &g, lr, &e), 0, "%s", e.msg);
        for (int i = 0; i < NTORCH; i++) {
            snprintf(name, sizeof name, "%s.param.%lld.%s", key, (long long)s,
                     torch_names[i]);
            const rt_tensor *want = rt_list_cfind(&fx, name);
            const rt_tensor *got = rt_list_cfind(&p, torch_names[i]);
            cr_assert(want, "%s missing", name);
            int64_t n = rt_numel(want);
            const float *w = want->data, *gt = got->data;
            double mx = 0, err = 0;
            for (int64_t k = 0; k < n; k++) {
                mx = fmax(mx, fabs(w[k]));
                err = fmax(err, fabs((double)gt[k] - w[k]));
            }
            cr_assert(err <= 2e-6 * mx + 1e-7,
                      "case %s update %lld %s: max error %.3g (max |expected| %.3g)", key,
                      (long long)s, torch_names[i], err, mx);
        }
    }
    tr_adamw_free(&a);
    rt_list_free(&fx);
    rt_list_free(&p);
    rt_list_free(&g);
}

Test(optim, matches_torch_with_warmup_and_clipping)
{
    replay_torch_case("a");
}

Test(optim, matches_torch_with_strong_decay_and_no_clipping)
{
    replay_torch_case("b");
}
