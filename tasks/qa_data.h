/* qa_data.h: extractive question answering data (SQuAD v1.1 JSON: SQuAD, KorQuAD 1.0,
 * XQuAD) turned into BERT features exactly as BERT's run_squad.py does it.
 *
 *  - Reading: data[].paragraphs[].{context, qas[].{id, question, answers[].{text,
 *    answer_start}}}. answer_start counts code points (Python str indices); it becomes
 *    a byte offset into the UTF-8 context here. An answer whose text is not at its
 *    offset (or is empty) is skipped with a note, and a question left without any
 *    answer is skipped too (SQuAD v2.0's unanswerable questions are not supported).
 *    Malformed structure is an error naming the file and the entry
 *    ("F: data[3].paragraphs[0].qas[2].question: expected a string").
 *  - Features: [CLS] query [SEP] document-window [SEP]; the query truncated to
 *    max_query_len tokens; document windows of at most max_seq_len - query - 3 tokens,
 *    each starting doc_stride tokens after the previous one (run_squad's doc_spans);
 *    token types 0 up to the first [SEP], 1 after; positions of the first answer's
 *    tokens (those overlapping its bytes) in each window, or 0 ([CLS]) when the answer
 *    is not wholly inside the window. Every token keeps its byte span in the context,
 *    and each window knows for which of its tokens it is the max-context window
 *    (run_squad's _check_is_max_context), so predictions map back to the context.
 *  - Output: the `run` batch format (DESIGN.md §5) for any subset of features, and the
 *    per-feature spans that metrics.h's tk_qa_best_span takes.
 *
 * Features are stored compactly (per example: its tokens; per feature: where its window
 * lies), so a large training set costs about as much memory as its tokens; the [N, S]
 * tensors are made a batch at a time. */
#ifndef BERTCC_TASKS_QA_DATA_H
#define BERTCC_TASKS_QA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/params.h"
#include "../runtime/tensor.h"
#include "../support/err.h"
#include "../text/tokenizer.h"
#include "metrics.h"

/* ---- examples ---------------------------------------------------------------------- */

typedef struct tk_qa_answer {
    char *text;     /* as in the file */
    int start, end; /* byte span [start, end) of text in the example's context */
    int char_start; /* answer_start as in the file (code points) */
} tk_qa_answer;

typedef struct tk_qa_example {
    char *id, *question, *context; /* NUL-terminated UTF-8 */
    int context_len;               /* bytes */
    int article;                   /* index of its data[] entry in the file */
    int paragraph;         /* index of its paragraph in the file (over all data[]) */
    int n_answers;         /* >= 1 from a file; 0 for tk_qa_set_add's questions */
    tk_qa_answer *answers; /* [n_answers]; answers[0] gives the training labels */
} tk_qa_example;

typedef struct tk_qa_set {
    tk_qa_example *ex; /* [n] */
    int n, cap;
    int n_articles;        /* data[] entries read (kept by tk_qa_split) */
    int skipped_answers;   /* answers dropped because their text was not at their offset */
    int skipped_questions; /* questions dropped for having no valid answer */
} tk_qa_set;

/* Reads a SQuAD v1.1 JSON file into out (zero-initialized or as left by a previous
 * call: examples are appended). Skipped answers and questions are reported through
 * note (may be NULL), one message each, naming the file, the entry and the id. Errors:
 * unreadable file, invalid JSON (with line and column; jansson also rejects invalid
 * UTF-8 and \u0000), a missing or mistyped member (naming the entry: "id" may also be
 * an integer), answer_start negative or past INT_MAX. On error out is left as it was. */
int tk_qa_load(const char *path, tk_qa_set *out, bc_note_fn note, void *note_ctx,
               bc_err *e);

/* The same from JSON text in memory; name is used in messages. */
int tk_qa_parse(const char *json, size_t len, const char *name, tk_qa_set *out,
                bc_note_fn note, void *note_ctx, bc_err *e);

/* Adds one question without answers (for prediction on raw text); article and
 * paragraph are -1. Errors: NULL strings, invalid UTF-8. */
int tk_qa_set_add(tk_qa_set *s, const char *id, const char *question, const char *context,
                  bc_err *e);

void tk_qa_set_free(tk_qa_set *s);

/* Splits by article so that one file gives a training and a held-out set: the examples
 * of article a (their data[] index) go to held when a % k == r, to rest otherwise.
 * Both outputs are zero-initialized here (deep copies; s is unchanged) and keep
 * n_articles. Errors: k < 2, r outside [0, k). */
int tk_qa_split(const tk_qa_set *s, int k, int r, tk_qa_set *rest, tk_qa_set *held,
                bc_err *e);

/* Exact match and F1 (metrics.h's tk_qa_evaluate) of preds[i] (NULL: unanswered)
 * against the answer texts of s->ex[i]. Errors: a question without answers. */
int tk_qa_set_evaluate(const tk_qa_set *s, const char *const *preds, tk_qa_flavor f,
                       double *em, double *f1, bc_err *e);

/* ---- features ---------------------------------------------------------------------- */

typedef struct tk_qa_feat_opts {
    int max_seq_len;   /* S: tokens per window with [CLS], query and [SEP]s (384) */
    int doc_stride;    /* tokens between the starts of consecutive windows (128) */
    int max_query_len; /* query tokens kept (64) */
    tx_tok_opts tok;   /* tokenizer options for questions and contexts */
} tk_qa_feat_opts;

#define TK_QA_FEAT_OPTS_DEFAULT ((tk_qa_feat_opts){384, 128, 64, TX_TOK_OPTS_DEFAULT})

/* One window of one example. Its tokens: [CLS], the q query tokens, [SEP], document
 * tokens doc_start .. doc_start + doc_len - 1 of the example, [SEP]. */
typedef struct tk_qa_feature {
    int example;        /* index into the set's examples */
    int window;         /* 0, 1, ... within the example */
    int query_len;      /* q */
    int doc_start;      /* first document token of the window */
    int doc_len;        /* document tokens in the window (>= 1) */
    int n_tokens;       /* q + doc_len + 3 (<= max_seq_len) */
    int start_position; /* the answer's first token in the window, or 0 ([CLS]) */
    int end_position;   /* its last token, or 0 */
} tk_qa_feature;

typedef struct tk_qa_features {
    tk_qa_feat_opts opts;
    int n;            /* features */
    tk_qa_feature *f; /* [n], in example order, windows in order */
    int n_examples;
    int *first;            /* [n_examples + 1]: example i's features are
                              first[i] .. first[i+1] - 1 (none for a context without
                              tokens, as run_squad) */
    int answers_in_window; /* features whose positions are not 0 */
    int answers_unmapped;  /* examples with an answer that overlaps no token (a span of
                              whitespace, say); their positions are all 0 */
    /* Internal: the tokens of each example (contexts shared by consecutive examples are
     * tokenized once). */
    int cls_id, sep_id, pad_id;
    tx_token_list *query; /* [n_examples], truncated */
    int *doc_of;          /* [n_examples] index into docs */
    tx_token_list *docs;  /* [n_docs] */
    int n_docs;
} tk_qa_features;

/* Makes the features of every example of s. Errors: max_seq_len < max_query_len + 4,
 * doc_stride < 1, max_query_len < 0, a vocabulary without [CLS] or [SEP], tokenizer
 * errors (naming the example id). On error *out is zeroed. */
int tk_qa_featurize(const tk_qa_set *s, const tx_vocab *v, const tk_qa_feat_opts *o,
                    tk_qa_features *out, bc_err *e);

void tk_qa_features_free(tk_qa_features *f);

/* Flags for tk_qa_batch. */
enum {
    TK_QA_BATCH_LABELS = 1 << 0,      /* add start_positions, end_positions [B] */
    TK_QA_BATCH_PAD_LONGEST = 1 << 1, /* S = the longest feature in the batch rather than
                                         max_seq_len (same outputs, less work) */
};

/* Appends the batch of features idx[0..count) (idx NULL: features 0 .. count-1) to out
 * in the run batch format: input_ids, token_type_ids, attention_mask [count, S] I64
 * (padding: [PAD]'s id, or 0 without one; type 0; mask 0), and with
 * TK_QA_BATCH_LABELS start_positions, end_positions [count] I64. Errors: count < 1, an
 * index out of range. */
int tk_qa_batch(const tk_qa_features *f, const int *idx, int count, unsigned flags,
                rt_tensor_list *out, bc_err *e);

/* Feature i's token spans: for each of its n_tokens tokens, the byte span [tok_start,
 * tok_end) in its example's context (-1 for [CLS], query and [SEP] tokens) and whether
 * this window is the token's max-context window (0 for non-context tokens). Each array
 * holds at least f->f[i].n_tokens entries. */
void tk_qa_feature_spans(const tk_qa_features *f, int i, int *tok_start, int *tok_end,
                         unsigned char *max_context);

/* Decodes every example's answer from the logits of its features: start_logits and
 * end_logits are [f->n, stride] (row i for feature i; stride >= each feature's
 * n_tokens, e.g. the S of tk_qa_batch), and metrics.h's tk_qa_best_span picks the span.
 * preds[j] receives a malloc'd copy of the context bytes of example j's answer ("" when
 * no span is valid); spans (may be NULL) receive the spans themselves (spans[j].window
 * counts within the example: feature f->first[j] + window). The caller frees each
 * preds[j]; on error none is left allocated. Errors: s and f disagree on the examples,
 * those of tk_qa_best_span. */
int tk_qa_decode(const tk_qa_set *s, const tk_qa_features *f, const float *start_logits,
                 const float *end_logits, int stride, int n_best, int max_answer_length,
                 char **preds, tk_qa_span *spans, bc_err *e);

#endif
