/* frontend.h: model descriptions (XML, or a Hugging Face config.json) and their
 * expansion into the IR. */
#ifndef BERTCC_FE_H
#define BERTCC_FE_H

#include "../ir/ir.h"

typedef enum { FE_ACT_GELU, FE_ACT_GELU_TANH } fe_activation;

enum {
    FE_HEAD_MLM = 1 << 0,
    FE_HEAD_NSP = 1 << 1,
    FE_HEAD_INTENT = 1 << 2,
    FE_HEAD_SLOT = 1 << 3,
    FE_HEAD_QA = 1 << 4,
};

typedef struct fe_model {
    char name[128];
    int64_t vocab_size, hidden_size, layers, heads, intermediate_size;
    int64_t max_position, type_vocab_size;
    fe_activation activation;
    double layer_norm_eps;
    double hidden_dropout, attention_dropout;
    unsigned head_mask;     /* FE_HEAD_* present */
    int64_t intent_classes; /* when FE_HEAD_INTENT */
    int64_t slot_labels;    /* when FE_HEAD_SLOT */
} fe_model;

/* Upper bound on every size (vocabulary, hidden, layers, heads, ..., head classes), so
 * products of two sizes never overflow int64_t. */
#define FE_MAX_SIZE INT64_C(2147483647)
/* An upper bound on the nodes one encoder layer adds to a training graph (forward,
 * backward, fused or not; bert-base: about 112): fe_model_check refuses more layers
 * than IR_MAX_NODES allows. */
#define FE_NODES_PER_LAYER 400

/* BERT's defaults for everything optional (eps 1e-12, dropouts 0.1, type vocab 2,
 * gelu, max-position 512), sizes 0, no heads, name "bert". */
void fe_model_defaults(fe_model *m);

/* Checks the sizes (all positive, hidden divisible by heads, head sizes); message
 * without a file position. */
int fe_model_check(const fe_model *m, bc_err *e);

/* Parses an XML model description (DESIGN.md §2). Errors are "PATH:LINE: message". */
int fe_load_xml(const char *path, fe_model *m, bc_err *e);
int fe_parse_xml(const char *text, size_t len, const char *path, fe_model *m, bc_err *e);

/* Reads a Hugging Face config.json (BertConfig keys) for the encoder; no heads. */
int fe_load_hf_config(const char *path, fe_model *m, bc_err *e);
int fe_parse_hf_config(const char *text, size_t len, const char *path, fe_model *m,
                       bc_err *e);

/* Either of the above, chosen by content (a file whose first non-blank byte is '{' is
 * JSON, else XML); a directory is read as a Hugging Face model directory (its
 * config.json). */
int fe_load(const char *path, fe_model *m, bc_err *e);

/* Writes m as an XML model description (for run directories). */
int fe_write_xml(const fe_model *m, const char *path, bc_err *e);

/* What the built graph computes. */
enum {
    FE_LABEL_MLM = 1 << 0,    /* mlm_labels [B,S] */
    FE_LABEL_NSP = 1 << 1,    /* nsp_labels [B] */
    FE_LABEL_INTENT = 1 << 2, /* intent_labels [B] */
    FE_LABEL_SLOT = 1 << 3,   /* slot_labels [B,S] */
    FE_LABEL_QA = 1 << 4,     /* start_positions, end_positions [B] */
    FE_LABEL_ALL = 0x1f,
    /* Not a label: build the training-mode graph, with dropout where Hugging Face
     * applies it (embeddings, attention probabilities, after each sublayer's output
     * projection, before the intent and slot classifiers), driven by an extra input
     * "dropout_seed" (i64 scalar) so that a step's masks are reproducible. */
    FE_BUILD_TRAIN = 1 << 8,
    /* Not a label: a class-weighted intent loss (issue 13, skewed data sets). When the
     * intent loss is built (an intent head and FE_LABEL_INTENT), the graph gets the input
     * "intent_class_weights" (f32 [C], C = intent_classes, right after intent_labels)
     * and intent_loss = sum_i w[y_i] CE_i / sum_i w[y_i] over the rows whose label is not
     * -100, as PyTorch's CrossEntropyLoss(weight=w); 0 when no row is labelled or their
     * weights sum to 0. The weights are data, not parameters: they get no gradient, and
     * nothing checks their values (negative ones are the caller's business). Without an
     * intent loss the flag changes nothing; other losses are never weighted. Combines
     * with FE_BUILD_TRAIN and with fe_build_bert_mlm_gather. */
    FE_BUILD_INTENT_WEIGHTS = 1 << 9,
};

/* Expands m into the BERT forward graph: inputs input_ids, token_type_ids,
 * attention_mask (i64 [B,S]) and the labels named in label_mask for heads the model
 * has; outputs sequence_output, pooled_output, each head's logits, each loss whose
 * labels are present, and "loss" (their sum) when any is. Parameters carry the Hugging
 * Face names of DESIGN.md §3. */
ir_graph *fe_build_bert(const fe_model *m, unsigned label_mask, bc_err *e);

/* As fe_build_bert, but when the MLM loss is built (FE_LABEL_MLM and an MLM head) and
 * P > 0, the MLM head runs only on P rows per sequence: the inputs are "mlm_gather"
 * (f32 [B, P, S], row p one-hot at the p-th labelled position, all zero for unused
 * rows) and "mlm_gathered_labels" (i64 [B, P], -100 for unused rows) instead of
 * "mlm_labels", and the output "mlm_gathered_logits" [B, P, V] replaces "mlm_logits".
 * The loss and every gradient are those of the full graph (the same labelled
 * positions); the work of the transform and the [*, V] decoder drops from S to P rows.
 * Training graphs of the pre-training task use it (rt_batch_mlm_gather makes the
 * inputs). */
ir_graph *fe_build_bert_mlm_gather(const fe_model *m, unsigned label_mask, int64_t P,
                                   bc_err *e);

#endif
