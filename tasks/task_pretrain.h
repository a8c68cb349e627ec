/* task_pretrain.h: BERT pre-training (masked LM + next-sentence prediction) as a task,
 * so that `bertcc train --task pretrain` shares the run directories, dev evaluation,
 * checkpoints and resumption of the fine-tuning tasks, and its weights fine-tune with
 * `train --task intent-slot|qa --init RUN/weights.safetensors` (the heads the
 * checkpoint lacks are initialized and listed).
 *
 * Data (--data PATH), recognized by its contents:
 *  - a pre-training data file (safetensors in the `run` batch format, e.g. from
 *    `bertcc pretrain-data`): input_ids, token_type_ids, attention_mask, mlm_labels
 *    [N, S] and nsp_labels [N]; its rows are used as they are;
 *  - a plain-text corpus as BERT reads it (one sentence per line, a blank line between
 *    documents): instances are made once at the start with tk_pt_create
 *    (tasks/pretrain_data.h) from --max-seq, --max-predictions, --mask-prob,
 *    --short-seq-prob, --dupe-factor, --whole-word and --data-seed (the dev and test
 *    rows with seeds data-seed + 1 and + 2, dupe factor 1).
 * Splits: train = --data less its held-out part; dev = --eval-data when given, else the
 * held-out part of --data: every K-th document of a corpus (the blank-line separated
 * documents counted from 0; document d is held out when d % K == K - 1), or every K-th
 * row of a data file (--holdout K, default 10; 0: no dev split); test = all of --data.
 * Documents are held out whole, so dev sentences are never trained on. Rows of a data
 * file made with --dupe-factor > 1 repeat their text with other masks, so its held-out
 * rows share text with training rows: give such a run --eval-data (a file made from
 * other documents) for a clean dev score.
 *
 * Dynamic masking (--dynamic-mask 1, the default): every training micro-batch is
 * unmasked through its mlm_labels and masked afresh (tk_pt_remask_batch, with
 * --mask-prob, --max-predictions and --whole-word) from the micro-batch's dropout seed,
 * so each epoch sees new masks of the same pairs, and a resumed run the same masks as
 * an uninterrupted one. Dev and test keep the masks they were made with.
 *
 * Metrics on dev, from the eval-mode logits: mlm_accuracy (argmax = the original token,
 * over the masked positions), nsp_accuracy, mlm_likelihood = exp(-mlm_loss) (the
 * geometric mean of the probabilities given to the masked tokens: 1 / perplexity, a
 * fraction where higher is better), mlm_loss (mean cross-entropy over the masked
 * positions) and nsp_loss. best.safetensors is picked by mlm_likelihood (that is, the
 * lowest mlm_loss), then nsp_accuracy.
 *
 * predict(text[, pair]) fills each [MASK] written in the text: {"text", "filled" (the
 * text with each [MASK] replaced by its best token), "masks": [{"position" (token
 * index in the row), "predictions": [{"token", "probability"} x 5]}], and with a pair,
 * "is_next_probability"}. */
#ifndef BERTCC_TASKS_TASK_PRETRAIN_H
#define BERTCC_TASKS_TASK_PRETRAIN_H

#include "task.h"

extern const tk_task_ops tk_task_pretrain;

/* Rows per forward pass that keep mlm_logits ([rows, S, V] F32) under about 256 MiB,
 * at least 1 and at most batch_size. */
int tk_pt_eval_rows(int batch_size, int64_t S, int64_t V);

#endif
