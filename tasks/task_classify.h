/* task_classify.h: sentence and sentence-pair classification from [CLS] (`--task
 * classify`), as Google's run_classifier.py and Hugging Face's run_glue do it: intent,
 * sentiment or utterance type of one text, or the relation of two (NLI, paraphrase).
 *
 * Data, one example a record, in any of these layouts:
 *  - TSV or CSV with a header naming the columns: `label`, the text as `text`,
 *    `sentence`, `sentence1` or `text_a`, and for pairs the second text as `text_b` or
 *    `sentence2` (other columns are ignored). CSV follows RFC 4180 (fields in double
 *    quotes may hold commas, newlines and "" for a quote); TSV fields are taken as
 *    written (quote characters are text, as run_classifier reads TSV).
 *  - headerless TSV: `label<TAB>text[<TAB>text_b]` (3i4k's layout).
 *  - JSON Lines (.jsonl): one object a line with the same keys; a label may be a string
 *    or an integer.
 * CRLF line ends, a missing final newline and a UTF-8 byte order mark are accepted;
 * blank lines are skipped. An empty label or text, a record with too few fields, an
 * unknown layout or invalid UTF-8 is an error naming FILE:LINE.
 *
 * --data is a directory with train, dev and test files (DIR/train.tsv, dev.csv, ...:
 * extensions tsv, csv, jsonl or txt, one file per split), or one file: then --holdout K
 * makes every K-th record (K-1, 2K-1, ...) dev and leaves it out of training; without
 * --holdout a file has no dev split. `eval --data FILE` scores a whole file as test.
 *
 * Labels are strings; the list comes from the training split: TK_METRIC_UNK first, the
 * others sorted (byte order), written as intent_labels.txt in a run directory (the
 * intent head is the classifier). A dev or test label unseen in training maps to UNK,
 * is reported once per split, and counts as wrong.
 *
 * Rows: [CLS] a [SEP] (token types 0), or [CLS] a [SEP] b [SEP] with token types 0
 * then 1 for b [SEP], truncated to --max-seq positions as run_classifier does (the
 * longer text loses its last token until the pair fits; on a tie, b). Metrics:
 * accuracy, macro F1 (and, in eval, per-class precision/recall/F1 and the confusion
 * matrix); the best checkpoint is picked by macro F1 then accuracy (--select accuracy:
 * the other way round). --class-weights balanced weighs each class's loss by
 * n / (classes × n_class) of the training split (scikit-learn's "balanced"). */
#ifndef BERTCC_TASKS_TASK_CLASSIFY_H
#define BERTCC_TASKS_TASK_CLASSIFY_H

#include <stdint.h>

#include "../text/tokenizer.h"
#include "task.h"

extern const tk_task_ops tk_task_classify;

#define TK_CLS_MAX_SEQ_DEFAULT 128

/* One record: its label and its text(s) as written (b is NULL for one text); line is
 * where it starts in its file. */
typedef struct tk_cls_example {
    char *label, *a, *b;
    int line;
} tk_cls_example;

typedef struct tk_cls_data {
    tk_cls_example *x; /* [n] */
    int n;
    int pairs; /* the file has a second text */
} tk_cls_data;

/* Reads a file in any of the layouts above (chosen by its extension and header). */
int tk_cls_read(const char *path, tk_cls_data *out, bc_err *e);
void tk_cls_data_free(tk_cls_data *d);

/* Encodes one example into at most max_seq positions: ids[0..len) and types[0..len),
 * as above; returns len. *truncated (may be NULL) is set when tokens were cut. Errors:
 * max_seq below 2 (3 for a pair), a vocabulary without [CLS] or [SEP], tokenizer
 * errors. */
int tk_cls_encode(const tx_vocab *v, const tx_tok_opts *o, const char *a, const char *b,
                  int max_seq, int64_t *ids, int64_t *types, int *truncated, bc_err *e);

#endif
