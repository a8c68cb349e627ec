/* bert.c: expands a model description into the BERT forward graph, op for op as
 * Hugging Face's modeling_bert computes it in eval mode (DESIGN.md §4). */
#include "frontend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    ir_graph *g;
    const fe_model *m;
    ir_dim B, S, H;
    int seed;     /* the dropout_seed input, or -1 in eval mode */
    int64_t tags; /* dropout streams used so far: each site draws its own */
} builder;

/* Training-mode dropout (identity in eval mode or with p = 0). */
static int dropout(builder *b, int x, double p)
{
    if (b->seed < 0 || p == 0)
        return x;
    ir_attrs a = {0};
    a.p = p;
    a.index = b->tags++;
    int in[2] = {x, b->seed};
    return ir_add(b->g, IR_OP_DROPOUT, in, 2, &a, NULL, NULL);
}

static ir_type f32(int rank, ...)
{
    ir_dim d[IR_MAX_RANK];
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++)
        d[i] = va_arg(ap, ir_dim);
    va_end(ap);
    return ir_type_make(IR_F32, rank, d);
}

static int param1(builder *b, const char *name, int64_t n)
{
    return ir_param(b->g, name, f32(1, ir_dconst(n)));
}

static int param2(builder *b, const char *name, int64_t r, int64_t c)
{
    return ir_param(b->g, name, f32(2, ir_dconst(r), ir_dconst(c)));
}

/* x[..., in] W[out, in]^T + bias[out], with parameters PREFIX.weight / PREFIX.bias. */
static int linear(builder *b, int x, const char *prefix, int64_t out, int64_t in)
{
    char wn[256], bn[256];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    int w = param2(b, wn, out, in), bias = param1(b, bn, out);
    return ir_addv(b->g, ir_matmul(b->g, x, w, 0, 1), bias);
}

static int layernorm(builder *b, int x, const char *prefix)
{
    char wn[256], bn[256];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    int64_t h = b->m->hidden_size;
    int gamma = param1(b, wn, h), beta = param1(b, bn, h);
    return ir_layernorm(b->g, x, gamma, beta, b->m->layer_norm_eps);
}

static int activation(builder *b, int x)
{
    return ir_unary(b->g, b->m->activation == FE_ACT_GELU ? IR_OP_GELU : IR_OP_GELU_TANH,
                    x);
}

/* [B, S, H] -> [B, NH, S, D] */
static int split_heads(builder *b, int x)
{
    int64_t nh = b->m->heads, d = b->m->hidden_size / nh;
    ir_dim dims[4] = {b->B, b->S, ir_dconst(nh), ir_dconst(d)};
    static const int perm[4] = {0, 2, 1, 3};
    return ir_transpose(b->g, ir_reshape(b->g, x, 4, dims), perm);
}

/* [B, NH, S, D] -> [B, S, H] */
static int merge_heads(builder *b, int x)
{
    static const int perm[4] = {0, 2, 1, 3};
    ir_dim dims[3] = {b->B, b->S, b->H};
    return ir_reshape(b->g, ir_transpose(b->g, x, perm), 3, dims);
}

static int encoder_layer(builder *b, int h, int mask, int64_t i)
{
    const fe_model *m = b->m;
    int64_t H = m->hidden_size, I = m->intermediate_size;
    char p[128], n[192];
    snprintf(p, sizeof p, "bert.encoder.layer.%lld", (long long)i);
#define NAME(suffix) (snprintf(n, sizeof n, "%s.%s", p, suffix), n)
    int q = split_heads(b, linear(b, h, NAME("attention.self.query"), H, H));
    int k = split_heads(b, linear(b, h, NAME("attention.self.key"), H, H));
    int v = split_heads(b, linear(b, h, NAME("attention.self.value"), H, H));
    double scale = 1.0 / sqrt((double)(H / m->heads));
    int probs = ir_attn_softmax(b->g, ir_matmul(b->g, q, k, 0, 1), mask, scale);
    probs = dropout(b, probs, m->attention_dropout);
    int ctx = merge_heads(b, ir_matmul(b->g, probs, v, 0, 0));
    int attn =
        dropout(b, linear(b, ctx, NAME("attention.output.dense"), H, H), m->hidden_dropout);
    int h1 = layernorm(b, ir_addv(b->g, attn, h), NAME("attention.output.LayerNorm"));
    int inter = activation(b, linear(b, h1, NAME("intermediate.dense"), I, H));
    int out = dropout(b, linear(b, inter, NAME("output.dense"), H, I), m->hidden_dropout);
    return layernorm(b, ir_addv(b->g, out, h1), NAME("output.LayerNorm"));
#undef NAME
}

static int loss_term(int acc, int term, ir_graph *g)
{
    return acc < 0 ? term : ir_addv(g, acc, term);
}

ir_graph *fe_build_bert(const fe_model *m, unsigned label_mask, bc_err *e)
{
    return fe_build_bert_mlm_gather(m, label_mask, 0, e);
}

ir_graph *fe_build_bert_mlm_gather(const fe_model *m, unsigned label_mask, int64_t P,
                                   bc_err *e)
{
    if (fe_model_check(m, e))
        return NULL;
    ir_graph *g = ir_graph_new(m->name);
    if (!g) {
        bc_errf(e, "out of memory");
        return NULL;
    }
    builder b = {g, m, IR_DIM_B, IR_DIM_S, ir_dconst(m->hidden_size), -1, 0};
    int64_t H = m->hidden_size, V = m->vocab_size;
    ir_dim bs[2] = {b.B, b.S}, bvec[1] = {b.B};
    ir_type ids_t = ir_type_make(IR_I64, 2, bs), vec_t = ir_type_make(IR_I64, 1, bvec);
    unsigned heads = m->head_mask;

    /* Inputs first, labels only for heads the model has. */
    int ids = ir_input(g, "input_ids", ids_t);
    int tt = ir_input(g, "token_type_ids", ids_t);
    int mask = ir_input(g, "attention_mask", ids_t);
    int l_mlm = -1, l_nsp = -1, l_int = -1, l_slot = -1, l_start = -1, l_end = -1;
    if (label_mask & FE_BUILD_TRAIN)
        b.seed = ir_input(g, "dropout_seed", ir_type_make(IR_I64, 0, NULL));
    int gather = -1; /* mlm_gather [B, P, S]: one-hot rows of the labelled positions */
    if (P < 0) {
        bc_errf(e, "mlm gather rows must be >= 0, got %lld", (long long)P);
        ir_graph_free(g);
        return NULL;
    }
    if ((heads & FE_HEAD_MLM) && (label_mask & FE_LABEL_MLM) && P > 0) {
        ir_dim bps[3] = {b.B, ir_dconst(P), b.S}, bp[2] = {b.B, ir_dconst(P)};
        gather = ir_input(g, "mlm_gather", ir_type_make(IR_F32, 3, bps));
        l_mlm = ir_input(g, "mlm_gathered_labels", ir_type_make(IR_I64, 2, bp));
    } else if ((heads & FE_HEAD_MLM) && (label_mask & FE_LABEL_MLM)) {
        l_mlm = ir_input(g, "mlm_labels", ids_t);
    }
    if ((heads & FE_HEAD_NSP) && (label_mask & FE_LABEL_NSP))
        l_nsp = ir_input(g, "nsp_labels", vec_t);
    if ((heads & FE_HEAD_INTENT) && (label_mask & FE_LABEL_INTENT))
        l_int = ir_input(g, "intent_labels", vec_t);
    int w_int = -1; /* intent_class_weights [C] */
    if (l_int >= 0 && (label_mask & FE_BUILD_INTENT_WEIGHTS))
        w_int = ir_input(g, "intent_class_weights", f32(1, ir_dconst(m->intent_classes)));
    if ((heads & FE_HEAD_SLOT) && (label_mask & FE_LABEL_SLOT))
        l_slot = ir_input(g, "slot_labels", ids_t);
    if ((heads & FE_HEAD_QA) && (label_mask & FE_LABEL_QA)) {
        l_start = ir_input(g, "start_positions", vec_t);
        l_end = ir_input(g, "end_positions", vec_t);
    }

    /* Embeddings: LayerNorm(word[ids] + position[0..S) + token_type[tt]). */
    int we = param2(&b, "bert.embeddings.word_embeddings.weight", V, H);
    int pe = param2(&b, "bert.embeddings.position_embeddings.weight", m->max_position, H);
    int te =
        param2(&b, "bert.embeddings.token_type_embeddings.weight", m->type_vocab_size, H);
    int x = ir_addv(g, ir_gather(g, we, ids), ir_prefix_rows(g, pe, b.S));
    x = ir_addv(g, x, ir_gather(g, te, tt));
    x = dropout(&b, layernorm(&b, x, "bert.embeddings.LayerNorm"), m->hidden_dropout);
    for (int64_t i = 0; i < m->layers; i++)
        x = encoder_layer(&b, x, mask, i);
    int seq = x;
    ir_set_output(g, "sequence_output", seq);
    int cls = ir_select(g, seq, 1, 0);
    int pooled = ir_unary(g, IR_OP_TANH, linear(&b, cls, "bert.pooler.dense", H, H));
    ir_set_output(g, "pooled_output", pooled);

    int loss = -1;
    if (heads & FE_HEAD_MLM) {
        /* With gather, only the labelled positions: [B, P, S] x [B, S, H]. */
        int rows = gather >= 0 ? ir_matmul(g, gather, seq, 0, 0) : seq;
        int t = activation(&b, linear(&b, rows, "cls.predictions.transform.dense", H, H));
        t = layernorm(&b, t, "cls.predictions.transform.LayerNorm");
        int bias = param1(&b, "cls.predictions.bias", V);
        int logits = ir_addv(g, ir_matmul(g, t, we, 0, 1), bias); /* tied decoder */
        ir_set_output(g, gather >= 0 ? "mlm_gathered_logits" : "mlm_logits", logits);
        if (l_mlm >= 0) {
            int l = ir_cross_entropy(g, logits, l_mlm);
            ir_set_output(g, "mlm_loss", l);
            loss = loss_term(loss, l, g);
        }
    }
    if (heads & FE_HEAD_NSP) {
        int logits = linear(&b, pooled, "cls.seq_relationship", 2, H);
        ir_set_output(g, "nsp_logits", logits);
        if (l_nsp >= 0) {
            int l = ir_cross_entropy(g, logits, l_nsp);
            ir_set_output(g, "nsp_loss", l);
            loss = loss_term(loss, l, g);
        }
    }
    if (heads & FE_HEAD_INTENT) {
        int logits = linear(&b, dropout(&b, pooled, m->hidden_dropout), "intent.classifier",
                            m->intent_classes, H);
        ir_set_output(g, "intent_logits", logits);
        if (l_int >= 0) {
            int l = w_int >= 0 ? ir_cross_entropy_weighted(g, logits, l_int, w_int)
                               : ir_cross_entropy(g, logits, l_int);
            ir_set_output(g, "intent_loss", l);
            loss = loss_term(loss, l, g);
        }
    }
    if (heads & FE_HEAD_SLOT) {
        int logits = linear(&b, dropout(&b, seq, m->hidden_dropout), "slot.classifier",
                            m->slot_labels, H);
        ir_set_output(g, "slot_logits", logits);
        if (l_slot >= 0) {
            int l = ir_cross_entropy(g, logits, l_slot);
            ir_set_output(g, "slot_loss", l);
            loss = loss_term(loss, l, g);
        }
    }
    if (heads & FE_HEAD_QA) {
        int logits = linear(&b, seq, "qa_outputs", 2, H); /* [B, S, 2] */
        int start = ir_select(g, logits, 2, 0), end = ir_select(g, logits, 2, 1);
        ir_set_output(g, "start_logits", start);
        ir_set_output(g, "end_logits", end);
        if (l_start >= 0) {
            int l = ir_addv(g, ir_cross_entropy(g, start, l_start),
                            ir_cross_entropy(g, end, l_end));
            l = ir_scale(g, l, 0.5);
            ir_set_output(g, "qa_loss", l);
            loss = loss_term(loss, l, g);
        }
    }
    if (loss >= 0)
        ir_set_output(g, "loss", loss);
    if (g->failed) {
        bc_errf(e, "building %s: %s", m->name, g->err.msg);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}
