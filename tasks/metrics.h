/* metrics.h: evaluation metrics for the fine-tuning tasks, each the same numbers as the
 * script its benchmark is scored with, and QA span decoding as BERT's run_squad does it.
 *
 *  - Intent + slot (ATIS, SNIPS): intent accuracy, slot precision/recall/F1 with the
 *    semantics of the Perl conlleval script (version 2004-01-26) transcribed exactly,
 *    and sentence-level frame accuracy.
 *  - QA: exact match and F1 of the official SQuAD v1.1 evaluation script, or of
 *    KorQuAD v1.0's (character F1), with the scripts' answer normalization.
 *  - QA decoding: the best answer span over the windows of one example.
 *  - Sentence classification: accuracy, per-class precision/recall/F1, macro F1 and the
 *    confusion matrix, as scikit-learn's classification_report computes them.
 *
 * Pure functions over plain arrays and NUL-terminated UTF-8 strings; scores are
 * fractions in [0, 1] (the scripts print 100 times these). Errors (NULL arguments,
 * invalid UTF-8, inconsistent offsets) are returned as values through bc_err. */
#ifndef BERTCC_TASKS_METRICS_H
#define BERTCC_TASKS_METRICS_H

#include <stdint.h>

#include "../support/err.h"

/* The label that an intent or slot tag unseen in training is mapped to. As a gold label
 * it never counts as correct (the unseen label is wrong whatever was predicted). */
#define TK_METRIC_UNK "UNK"

/* ---- intent + slot ----------------------------------------------------------------- */

/* Intent accuracy: the fraction of i < n with strcmp(gold[i], pred[i]) == 0 and
 * gold[i] not TK_METRIC_UNK. *acc = 0 when n == 0. Errors: n < 0, a NULL array or
 * string. */
int tk_intent_accuracy(const char *const *gold, const char *const *pred, int n, double *acc,
                       bc_err *e);

/* conlleval's counters over a corpus fed one sentence at a time. Zero-initialize it
 * (TK_CONLL_INIT), add sentences with tk_conll_add, read it with tk_conll_score. */
typedef struct tk_conll {
    long long tokens;         /* words seen */
    long long gold_chunks;    /* chunks in the gold tags ("phrases") */
    long long pred_chunks;    /* chunks in the predicted tags ("found") */
    long long correct_chunks; /* chunks with the same start, end and type in both;
                                 see tk_conll_score for the one still open */
    long long correct_tags;   /* words whose predicted tag equals the gold one */
    int in_correct;           /* conlleval's $inCorrect, carried between sentences */
} tk_conll;

#define TK_CONLL_INIT ((tk_conll){0, 0, 0, 0, 0, 0})

/* Adds one sentence of n words: gold[i] and pred[i] are its tags as written in
 * seq.out ("O", "B-toloc.city_name", "I-artist", ...). The result is what conlleval
 * reports for a file holding the sentences added so far, each followed by an empty
 * line, with the gold tag and then the predicted tag on each word's line:
 *  - a tag is split at its first hyphen into prefix and type ("B-a-b": "B", "a-b");
 *    with no hyphen the whole tag is the prefix and the type is empty; a type "0" is
 *    empty too (Perl's truth test in the script);
 *  - a chunk starts and ends where conlleval's startOfChunk and endOfChunk say: B
 *    always starts one; I starts one after O, or when the type differs from the
 *    previous word's (so "O I-x" and "B-x I-y" each start a chunk); O ends one; E-, [
 *    ] and . keep the script's IOE rules; the end of a sentence ends every typed chunk;
 *  - a chunk is correct when gold and prediction start it on the same word with the
 *    same type and end it on the same word.
 * A predicted TK_METRIC_UNK (or any tag without a hyphen) is treated as conlleval
 * treats such a string: it belongs to no typed chunk and ends any open one, so a gold
 * chunk there is missed, and it is a wrong tag for correct_tags. (After a typed word
 * the script counts it as starting an untyped chunk; that chunk never matches a gold
 * one, so it lowers precision, as a wrong tag should.) Pass the gold tags as written,
 * not mapped to TK_METRIC_UNK, or their chunks are lost.
 * Errors: n < 0, a NULL array or tag, an empty tag, a tag holding a space, tab or line
 * break (conlleval's input cannot hold one); *c is unchanged then. */
int tk_conll_add(tk_conll *c, const char *const *gold, const char *const *pred, int n,
                 bc_err *e);

/* Precision, recall and F1 from conlleval's counters. */
typedef struct tk_prf {
    long long gold, pred, correct; /* chunks: in gold, predicted, correct */
    double precision;              /* correct / pred, 0 when pred == 0 */
    double recall;                 /* correct / gold, 0 when gold == 0 */
    double f1;                     /* 2PR / (P + R), 0 when P + R == 0 */
} tk_prf;

/* The scores of those counts (any kind of item: chunks, a class's examples). */
tk_prf tk_prf_of(long long gold, long long pred, long long correct);

/* The overall scores conlleval prints (divided by 100). A chunk that was still open
 * and matching at the last sentence counts as correct, as at the script's end of
 * input. */
void tk_conll_score(const tk_conll *c, tk_prf *out);

/* One evaluated sentence. */
typedef struct tk_is_example {
    const char *gold_intent, *pred_intent;
    int n_words;
    const char *const *gold_tags; /* [n_words] */
    const char *const *pred_tags; /* [n_words] */
} tk_is_example;

typedef struct tk_is_scores {
    int n;                  /* sentences */
    double intent_accuracy; /* as tk_intent_accuracy */
    tk_prf slot;            /* conlleval over all sentences, in order */
    double frame_accuracy;  /* intent right and every tag equal to its gold tag, with no
                               gold TK_METRIC_UNK among them */
    tk_conll counts;        /* conlleval's raw counters (token accuracy among them) */
} tk_is_scores;

/* Intent accuracy, slot P/R/F1 and frame accuracy over n sentences (0 for each
 * fraction when n == 0). Errors name the sentence index, as tk_conll_add's. */
int tk_intent_slot_eval(const tk_is_example *ex, int n, tk_is_scores *out, bc_err *e);

/* ---- QA answers -------------------------------------------------------------------- */

typedef enum tk_qa_flavor {
    /* SQuAD v1.1's evaluate-v1.1.py: lower-case (Python's str.lower: full mapping, final
     * sigma), delete every character of Python's string.punctuation (ASCII
     * !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~), replace the whole words a, an, the by a space
     * (re's \b: a word character is a letter, a number or _), split on Python's
     * str.split() whitespace and join with one space. F1 over the multiset of tokens. */
    TK_QA_SQUAD = 0,
    /* KorQuAD v1.0's evaluate script: first replace each of ' " 《 》 < > 〈 〉 ( ) ‘ ’ by
     * a space, then lower-case, delete string.punctuation and split/join as SQuAD;
     * articles are kept. F1 over the multiset of characters (code points) of the
     * tokens, spaces not counted. */
    TK_QA_KORQUAD = 1,
} tk_qa_flavor;

/* The normalized answer (malloc'd UTF-8 into *out; the caller frees). Errors: NULL,
 * invalid UTF-8, an unknown flavor. */
int tk_qa_normalize(const char *s, tk_qa_flavor f, char **out, bc_err *e);

/* Scores one prediction against its gold answers, as the scripts'
 * metric_max_over_ground_truths: *em is 1 when the normalized prediction equals some
 * normalized gold answer, else 0; *f1 the largest F1 over the gold answers. F1 is 0
 * when nothing is shared (so an empty prediction scores 0, and an empty normalized
 * gold only matches by exact match). Either output may be NULL. Errors: n_golds < 1
 * (the script's max() of nothing fails), NULL strings, invalid UTF-8. */
int tk_qa_score(const char *pred, const char *const *golds, int n_golds, tk_qa_flavor f,
                double *em, double *f1, bc_err *e);

/* Dataset averages over n questions: preds[i] (NULL: unanswered, scores 0 as in the
 * script) against golds[i][0..n_golds[i]). *em and *f1 are 0 when n == 0. Errors name
 * the question index. */
int tk_qa_evaluate(const char *const *preds, const char *const *const *golds,
                   const int *n_golds, int n, tk_qa_flavor f, double *em, double *f1,
                   bc_err *e);

/* ---- QA span decoding -------------------------------------------------------------- */

#define TK_QA_N_BEST 20            /* run_squad's n_best_size */
#define TK_QA_MAX_ANSWER_LENGTH 30 /* run_squad's max_answer_length, in tokens */

/* One window (document-stride feature) of an example. */
typedef struct tk_qa_window {
    int n_tokens;                     /* tokens in the window, [CLS] and [SEP]s included */
    const float *start_logits;        /* [n_tokens] */
    const float *end_logits;          /* [n_tokens] */
    const int *tok_start, *tok_end;   /* [n_tokens] byte span [start, end) of each token
                                         in the original context; -1 for question and
                                         special tokens */
    const unsigned char *max_context; /* [n_tokens] run_squad's token_is_max_context
                                         (nonzero: this window is the token's best) */
} tk_qa_window;

typedef struct tk_qa_span {
    int found;              /* 0: no valid span in any window (run_squad's "empty") */
    int window;             /* the window it came from */
    int start_tok, end_tok; /* token indices in that window, inclusive */
    int start, end;         /* byte span [start, end) in the context */
    double score;           /* start_logit + end_logit */
} tk_qa_span;

/* The best answer span of one example, as run_squad's write_predictions picks it: in
 * each window, the n_best highest start logits and the n_best highest end logits (ties:
 * the lower index first) are paired, and a pair (s, e) is valid when both tokens are
 * in the context (offset >= 0), s has max context, s <= e and e - s + 1 <=
 * max_answer_length; the valid pair with the highest start_logit + end_logit (in
 * double) wins, ties going to the earlier window, then the earlier start candidate,
 * then the earlier end candidate. The answer is context bytes
 * [tok_start[s], tok_end[e]) (a pair whose bytes would run backwards, possible only
 * with offsets out of order, is skipped). out->found = 0 (not an error) when no pair is
 * valid. Errors: n_windows < 0, n_best or max_answer_length < 1, a NULL array, a NaN logit,
 * a context token whose span is not within [0, context_len] or has end < start, or an
 * offset of -1 on one side only; errors name the window and token. */
int tk_qa_best_span(const tk_qa_window *w, int n_windows, int n_best, int max_answer_length,
                    int context_len, tk_qa_span *out, bc_err *e);

/* ---- sentence classification --------------------------------------------------------- */

/* One class's counts and scores; a score whose denominator is 0 is 0 (scikit-learn's
 * zero_division=0). */
typedef struct tk_cls_class {
    int64_t support;   /* gold examples of the class */
    int64_t predicted; /* examples predicted as the class */
    int64_t correct;   /* both */
    double precision, recall, f1;
} tk_cls_class;

typedef struct tk_cls_scores {
    int64_t n;       /* examples */
    double accuracy; /* correct / n (0 when n == 0) */
    double macro_f1; /* the mean F1 over the classes that occur as a gold label or a
                        prediction (scikit-learn's average='macro'); 0 when none */
    int nclass;
    tk_cls_class *cls;  /* [nclass] */
    int64_t *confusion; /* [nclass, nclass]: row = gold class, column = predicted class */
} tk_cls_scores;

/* Scores n predictions of class ids in [0, nclass): gold[i] against pred[i]. A gold id
 * that stands for labels unseen in training (TK_METRIC_UNK, which is never predicted)
 * is a class like the others, so it counts as wrong and, when present, lowers the macro
 * F1. Errors: n < 0, nclass < 1, an id out of range. */
int tk_cls_score(const int *gold, const int *pred, int64_t n, int nclass,
                 tk_cls_scores *out, bc_err *e);
void tk_cls_scores_free(tk_cls_scores *s);

#endif
