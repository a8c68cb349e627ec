/* test_models.c: the model files in models/ expanded into graphs — each verifies and
 * round-trips through the text form, parameter counts equal the published BERT numbers,
 * parameter names and shapes are DESIGN.md §3's, and the outputs are §5's. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "util.h"

static ir_graph *build_file(const char *path, unsigned labels)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load(path, &m, &e), 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, labels, &e);
    cr_assert_not_null(g, "%s: %s", path, e.msg);
    return g;
}

static ir_graph *build_model(const char *name, unsigned labels)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    return build_file(tu_src(rel), labels);
}

/* Sum of the element counts of the params whose names start with prefix. */
static long long param_count(const ir_graph *g, const char *prefix)
{
    long long total = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_PARAM || strncmp(n->name, prefix, strlen(prefix)))
            continue;
        long long k = 1;
        for (int d = 0; d < n->type.rank; d++) {
            cr_assert(ir_dim_is_const(n->type.dim[d]), "%s has a symbolic size", n->name);
            k *= n->type.dim[d].c;
        }
        total += k;
    }
    return total;
}

static int is_xml(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && !strcmp(name + n - 4, ".xml");
}

Test(models, every_model_file_builds_verifies_and_round_trips)
{
    DIR *d = opendir(tu_src("models"));
    cr_assert_not_null(d, "cannot open models/");
    int count = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!is_xml(de->d_name))
            continue;
        count++;
        ir_graph *g = build_model(de->d_name, FE_LABEL_ALL);
        bc_err e = {{0}};
        cr_expect_eq(ir_verify(g, &e), 0, "%s: %s", de->d_name, e.msg);
        char *text = ir_print_str(g);
        cr_assert_not_null(text, "%s: cannot print", de->d_name);
        ir_graph *h = ir_parse(text, de->d_name, &e);
        cr_assert_not_null(h, "%s: the printed graph does not parse: %s", de->d_name,
                           e.msg);
        char *again = ir_print_str(h);
        cr_assert_not_null(again);
        cr_expect(!strcmp(text, again), "%s: print -> parse -> print differs", de->d_name);
        cr_expect_eq(h->n, g->n, "%s", de->d_name);
        cr_expect_eq(h->nout, g->nout, "%s", de->d_name);
        /* And the default pipeline accepts it. */
        cr_expect_eq(pass_run_pipeline(&h, PASS_DEFAULT_PIPELINE, NULL, &e), 0, "%s: %s",
                     de->d_name, e.msg);
        free(text);
        free(again);
        ir_graph_free(h);
        ir_graph_free(g);
    }
    closedir(d);
    cr_expect_geq(count, 6, "only %d model files", count);
}

Test(models, bert_base_has_the_published_parameter_count)
{
    /* BertForPreTraining (bert-base-uncased): 110,106,428 parameters, the MLM decoder
     * tied to the word embeddings; BertModel (encoder + pooler): 109,482,240. */
    ir_graph *g = build_model("bert-base.xml", FE_LABEL_ALL);
    cr_expect_eq(param_count(g, ""), 110106428LL, "total %lld", param_count(g, ""));
    cr_expect_eq(param_count(g, "bert."), 109482240LL, "bert.* %lld",
                 param_count(g, "bert."));
    ir_graph_free(g);
}

Test(models, bert_large_encoder_has_the_published_parameter_count)
{
    /* BertModel (bert-large-uncased): 335,141,888 parameters. */
    ir_graph *g = build_model("bert-large.xml", FE_LABEL_ALL);
    cr_expect_eq(param_count(g, "bert."), 335141888LL, "bert.* %lld",
                 param_count(g, "bert."));
    ir_graph_free(g);
}

/* DESIGN.md §3's names and shapes for a model, written out independently of the
 * frontend. */
typedef struct {
    char name[128];
    int rank;
    long long shape[2];
} want_param;

static int add_want(want_param *w, int n, const char *name, int rank, long long a,
                    long long b)
{
    snprintf(w[n].name, sizeof w[n].name, "%s", name);
    w[n].rank = rank;
    w[n].shape[0] = a;
    w[n].shape[1] = b;
    return n + 1;
}

static int linear_want(want_param *w, int n, const char *p, long long out, long long in)
{
    char nm[128];
    snprintf(nm, sizeof nm, "%s.weight", p);
    n = add_want(w, n, nm, 2, out, in);
    snprintf(nm, sizeof nm, "%s.bias", p);
    return add_want(w, n, nm, 1, out, 0);
}

static int ln_want(want_param *w, int n, const char *p, long long h)
{
    char nm[128];
    snprintf(nm, sizeof nm, "%s.weight", p);
    n = add_want(w, n, nm, 1, h, 0);
    snprintf(nm, sizeof nm, "%s.bias", p);
    return add_want(w, n, nm, 1, h, 0);
}

Test(models, parameter_names_and_shapes_are_the_hugging_face_ones)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load(tu_src("models/bert-tiny-all-heads.xml"), &m, &e), 0, "%s", e.msg);
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    long long V = m.vocab_size, H = m.hidden_size, I = m.intermediate_size;
    want_param *w = calloc(512, sizeof *w);
    cr_assert_not_null(w);
    int n = 0;
    n = add_want(w, n, "bert.embeddings.word_embeddings.weight", 2, V, H);
    n = add_want(w, n, "bert.embeddings.position_embeddings.weight", 2, m.max_position, H);
    n = add_want(w, n, "bert.embeddings.token_type_embeddings.weight", 2, m.type_vocab_size,
                 H);
    n = ln_want(w, n, "bert.embeddings.LayerNorm", H);
    for (int i = 0; i < m.layers; i++) {
        char p[160];
        static const char *const qkv[] = {"query", "key", "value"};
        for (int k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "bert.encoder.layer.%d.attention.self.%s", i, qkv[k]);
            n = linear_want(w, n, p, H, H);
        }
        snprintf(p, sizeof p, "bert.encoder.layer.%d.attention.output.dense", i);
        n = linear_want(w, n, p, H, H);
        snprintf(p, sizeof p, "bert.encoder.layer.%d.attention.output.LayerNorm", i);
        n = ln_want(w, n, p, H);
        snprintf(p, sizeof p, "bert.encoder.layer.%d.intermediate.dense", i);
        n = linear_want(w, n, p, I, H);
        snprintf(p, sizeof p, "bert.encoder.layer.%d.output.dense", i);
        n = linear_want(w, n, p, H, I);
        snprintf(p, sizeof p, "bert.encoder.layer.%d.output.LayerNorm", i);
        n = ln_want(w, n, p, H);
    }
    n = linear_want(w, n, "bert.pooler.dense", H, H);
    n = linear_want(w, n, "cls.predictions.transform.dense", H, H);
    n = ln_want(w, n, "cls.predictions.transform.LayerNorm", H);
    n = add_want(w, n, "cls.predictions.bias", 1, V, 0);
    n = linear_want(w, n, "cls.seq_relationship", 2, H);
    n = linear_want(w, n, "intent.classifier", m.intent_classes, H);
    n = linear_want(w, n, "slot.classifier", m.slot_labels, H);
    n = linear_want(w, n, "qa_outputs", 2, H);
    int nparams = 0;
    for (int i = 0; i < g->n; i++)
        nparams += g->nodes[i].op == IR_OP_PARAM;
    cr_expect_eq(nparams, n, "%d params, want %d", nparams, n);
    for (int k = 0; k < n; k++) {
        int v = ir_find_named(g, IR_OP_PARAM, w[k].name);
        cr_expect_geq(v, 0, "no parameter %s", w[k].name);
        if (v < 0)
            continue;
        const ir_type *t = &g->nodes[v].type;
        cr_expect(t->rank == w[k].rank && t->dim[0].c == w[k].shape[0] &&
                      (w[k].rank < 2 || t->dim[1].c == w[k].shape[1]),
                  "%s has the wrong shape", w[k].name);
    }
    free(w);
    ir_graph_free(g);
}

/* ---- outputs ---------------------------------------------------------------------- */

static fe_model small_model(unsigned heads)
{
    fe_model m;
    fe_model_defaults(&m);
    m.vocab_size = 50;
    m.hidden_size = 8;
    m.layers = 1;
    m.heads = 2;
    m.intermediate_size = 16;
    m.max_position = 10;
    m.head_mask = heads;
    m.intent_classes = 3;
    m.slot_labels = 4;
    return m;
}

static int count_op(const ir_graph *g, ir_opcode op)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        n += g->nodes[i].op == op;
    return n;
}

Test(models, a_model_without_heads_outputs_sequence_and_pooled_only)
{
    fe_model m = small_model(0);
    bc_err e = {{0}};
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    cr_expect_eq(g->nout, 2, "%d outputs", g->nout);
    cr_expect_geq(ir_find_output(g, "sequence_output"), 0);
    cr_expect_geq(ir_find_output(g, "pooled_output"), 0);
    cr_expect_eq(count_op(g, IR_OP_INPUT), 3, "label inputs without heads");
    cr_expect_eq(count_op(g, IR_OP_CROSS_ENTROPY), 0);
    cr_expect_eq(ir_verify(g, &e), 0, "%s", e.msg);
    ir_graph_free(g);
}

/* Asserts that output `name` has type f32 with the given dims. */
static void expect_output_type(const ir_graph *g, const char *name, int rank, ...)
{
    int v = ir_find_output(g, name);
    cr_assert_geq(v, 0, "no output %s", name);
    ir_type want;
    ir_dim d[IR_MAX_RANK];
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        d[i] = va_arg(ap, ir_dim);
    va_end(ap);
    want = ir_type_make(IR_F32, rank, d);
    char s1[128], s2[128];
    cr_expect(ir_type_eq(&g->nodes[v].type, &want), "%s: %s, want %s", name,
              ir_type_str(&g->nodes[v].type, s1, sizeof s1),
              ir_type_str(&want, s2, sizeof s2));
}

Test(models, all_heads_with_all_labels_output_everything_in_design_5)
{
    fe_model m =
        small_model(FE_HEAD_MLM | FE_HEAD_NSP | FE_HEAD_INTENT | FE_HEAD_SLOT | FE_HEAD_QA);
    bc_err e = {{0}};
    ir_graph *g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    ir_dim B = IR_DIM_B, S = IR_DIM_S;
    expect_output_type(g, "sequence_output", 3, B, S, ir_dconst(8));
    expect_output_type(g, "pooled_output", 2, B, ir_dconst(8));
    expect_output_type(g, "mlm_logits", 3, B, S, ir_dconst(50));
    expect_output_type(g, "nsp_logits", 2, B, ir_dconst(2));
    expect_output_type(g, "intent_logits", 2, B, ir_dconst(3));
    expect_output_type(g, "slot_logits", 3, B, S, ir_dconst(4));
    expect_output_type(g, "start_logits", 2, B, S);
    expect_output_type(g, "end_logits", 2, B, S);
    static const char *const losses[] = {"mlm_loss",  "nsp_loss", "intent_loss",
                                         "slot_loss", "qa_loss",  "loss"};
    for (int i = 0; i < 6; i++)
        expect_output_type(g, losses[i], 0);
    cr_expect_eq(g->nout, 14, "%d outputs, want 8 tensors, 5 losses and loss", g->nout);
    /* The label inputs: mlm and slot [B, S], the others [B]. */
    static const char *const labels[] = {"mlm_labels",  "nsp_labels",      "intent_labels",
                                         "slot_labels", "start_positions", "end_positions"};
    for (int i = 0; i < 6; i++) {
        int v = ir_find_named(g, IR_OP_INPUT, labels[i]);
        cr_assert_geq(v, 0, "no input %s", labels[i]);
        int per_token = i == 0 || i == 3;
        cr_expect_eq(g->nodes[v].type.dtype, IR_I64, "%s", labels[i]);
        cr_expect_eq(g->nodes[v].type.rank, per_token ? 2 : 1, "%s", labels[i]);
    }
    cr_expect_eq(ir_verify(g, &e), 0, "%s", e.msg);
    ir_graph_free(g);
}

Test(models, losses_follow_the_labels_present)
{
    fe_model m =
        small_model(FE_HEAD_MLM | FE_HEAD_NSP | FE_HEAD_INTENT | FE_HEAD_SLOT | FE_HEAD_QA);
    bc_err e = {{0}};
    /* No labels: logits but no loss. */
    ir_graph *g = fe_build_bert(&m, 0, &e);
    cr_assert_not_null(g, "%s", e.msg);
    cr_expect_eq(g->nout, 8);
    cr_expect_eq(ir_find_output(g, "loss"), -1);
    ir_graph_free(g);
    /* Only NSP and QA labels: their losses and loss. */
    g = fe_build_bert(&m, FE_LABEL_NSP | FE_LABEL_QA, &e);
    cr_assert_not_null(g, "%s", e.msg);
    cr_expect_eq(g->nout, 11);
    cr_expect_geq(ir_find_output(g, "nsp_loss"), 0);
    cr_expect_geq(ir_find_output(g, "qa_loss"), 0);
    cr_expect_geq(ir_find_output(g, "loss"), 0);
    cr_expect_eq(ir_find_output(g, "mlm_loss"), -1);
    ir_graph_free(g);
    /* Labels for heads the model lacks add nothing. */
    m.head_mask = FE_HEAD_INTENT;
    g = fe_build_bert(&m, FE_LABEL_ALL, &e);
    cr_assert_not_null(g, "%s", e.msg);
    cr_expect_eq(g->nout, 5, "sequence, pooled, intent logits, intent loss, loss");
    cr_expect_eq(count_op(g, IR_OP_INPUT), 4);
    ir_graph_free(g);
}
