/* task_intent_slot.h: joint intent classification and slot tagging (ATIS, SNIPS, the
 * bundled Korean voice-assistant set), as the JointBERT recipe does it.
 *
 * Data: DIR/{train,dev,test}/{seq.in, seq.out, label}, one sentence per line: its
 * words separated by whitespace (runs of spaces and tabs; SNIPS has double and
 * trailing spaces), one BIO tag per word, one intent. Line counts and word/tag counts
 * must agree (an error names FILE:LINE otherwise).
 *
 * Labels: built from the training split, written to a run directory as
 * intent_labels.txt and slot_labels.txt (one label per line, id = line number). Id 0
 * of both lists is TK_METRIC_UNK ("UNK"): a dev or test label unseen in training maps
 * to it (reported once per split, with counts), is never predicted, and counts as wrong
 * in every metric (metrics.h). The rest: intents sorted; slot tags "O" first, then the
 * others sorted (byte order), so the lists do not depend on the order of the data.
 *
 * Rows: [CLS] tokens [SEP], each word's WordPiece tokens (tx_tokenize_words), truncated
 * to max-seq positions (a note says how many sentences were cut; the words cut off get
 * no label, and "O" as their prediction in the metrics). slot_labels holds a word's tag
 * on its first sub-token and -100 on the others, on [CLS], [SEP] and padding;
 * intent_labels the sentence's intent; token types 0. The joint loss is the sum of the
 * intent loss (on the pooled [CLS] output) and the slot loss, as the frontend builds it.
 *
 * Metrics (metrics.h): intent_accuracy, slot_precision, slot_recall, slot_f1
 * (conlleval chunks), frame_accuracy (intent and every tag right). best.safetensors
 * is picked by frame accuracy, then slot F1, then intent accuracy. */
#ifndef BERTCC_TASKS_TASK_INTENT_SLOT_H
#define BERTCC_TASKS_TASK_INTENT_SLOT_H

#include <stdint.h>

#include "../text/tokenizer.h"
#include "task.h"

extern const tk_task_ops tk_task_intent_slot;

#define TK_IS_INTENT_LABELS "intent_labels.txt"
#define TK_IS_SLOT_LABELS "slot_labels.txt"
#define TK_IS_MAX_SEQ_DEFAULT 64
#define TK_IS_IGNORE (-100)

/* ---- label lists ------------------------------------------------------------------ */

typedef struct tk_is_labels {
    char **name; /* [n]; name[0] is TK_METRIC_UNK */
    int n;
} tk_is_labels;

/* Builds a list from the labels seen (any order, repeats allowed): UNK, then (with
 * o_first) "O" when seen, then the others sorted. */
int tk_is_labels_build(const char *const *seen, int n, int o_first, tk_is_labels *out,
                       bc_err *e);
/* The id of name, or 0 (UNK) when the list lacks it. */
int tk_is_label_id(const tk_is_labels *l, const char *name);
/* Reads a label file (one per line; the first must be UNK); errors name FILE:LINE. */
int tk_is_labels_load(const char *path, tk_is_labels *out, bc_err *e);
int tk_is_labels_save(const char *path, const tk_is_labels *l, bc_err *e);
void tk_is_labels_free(tk_is_labels *l);

/* ---- sentences ---------------------------------------------------------------------- */

typedef struct tk_is_sentence {
    int n_words;
    char **words; /* [n_words] */
    char **tags;  /* [n_words] as written in seq.out */
    char *intent; /* as written in label */
} tk_is_sentence;

typedef struct tk_is_data {
    tk_is_sentence *s; /* [n] */
    int n;
} tk_is_data;

/* Reads DIR/seq.in, DIR/seq.out and DIR/label (DIR is a split's folder). */
int tk_is_read(const char *dir, tk_is_data *out, bc_err *e);
/* The same from the three files' texts in memory (seq.in, seq.out, label; dir names them
 * in messages): the fuzzing entry point. */
int tk_is_parse(const char *dir, const char *const text[3], const size_t len[3],
                tk_is_data *out, bc_err *e);
void tk_is_data_free(tk_is_data *d);

/* Splits a line into words at runs of ASCII whitespace: *words receives n malloc'd
 * strings (free each and the array). Returns n, or -1 when out of memory. */
int tk_is_split_words(const char *line, char ***words);

/* ---- alignment ------------------------------------------------------------------------
 */

/* Encodes one sentence into at most max_seq positions: ids[0..len) = [CLS] tokens
 * [SEP] (len is returned; ids and labels need max_seq entries), labels[k] = tag_ids[w]
 * on the first token of word w and TK_IS_IGNORE elsewhere (labels and tag_ids may be
 * NULL), pos[w] = the position of word w's first token, or -1 when truncation cut it
 * off (pos may be NULL). *truncated (may be NULL) is set when tokens were cut. Errors:
 * max_seq < 2, a vocabulary without [CLS] or [SEP], tokenizer errors. */
int tk_is_encode(const tx_vocab *v, const tx_tok_opts *o, const char *const *words,
                 int n_words, const int *tag_ids, int max_seq, int64_t *ids,
                 int64_t *labels, int *pos, int *truncated, bc_err *e);

#endif
