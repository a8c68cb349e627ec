/* task_qa.h: extractive question answering (SQuAD v1.1 JSON: SQuAD, KorQuAD 1.0,
 * XQuAD), trained and scored as BERT's run_squad.py does it (tasks/qa_data.h for the
 * features and the span decoding, metrics.h for EM/F1).
 *
 * Data: --data FILE.json. The splits of a run:
 *  - train: the examples of --data, less the held-out articles (--holdout K: article a,
 *    its data[] index, is held out when a % K == K - 1, i.e. every K-th article);
 *  - dev:   --eval-data FILE.json when given, else the held-out articles of --data
 *           (with --holdout K); a run with neither has no dev split (train --no-eval);
 *  - test:  every example of --data (`bertcc eval --data F` scores all of F by default;
 *           `--split dev` scores what training scored).
 * --eval-data and --holdout exclude each other. Paths are kept absolute in options.json.
 *
 * Rows: one per window (feature) of each question: [CLS] query [SEP] window [SEP],
 * token types 0 then 1, start_positions / end_positions the answer's tokens in the
 * window or 0 ([CLS]) when the answer is not wholly inside it; the loss is
 * (CE(start) + CE(end)) / 2 over all positions (the frontend's qa head). Options as
 * run_squad's: --max-seq (384; 256 is enough for most KorQuAD paragraphs and half the
 * work on a CPU), --doc-stride 128, --max-query-length 64, --max-answer-length 30 (in
 * tokens, at decoding). The default --max-seq never exceeds the model's max-position.
 *
 * Metrics: exact_match and f1 (fractions) of the predicted spans, with the answer
 * normalization of --metric: squad (evaluate-v1.1.py) or korquad (KorQuAD's script:
 * character F1). The default, auto, is decided once from the training data and stored
 * with the run: korquad when its contexts hold more Hangul syllables than ASCII letters,
 * squad otherwise. best.safetensors is picked by f1, then exact_match.
 *
 * predict(question, context) answers with the best span over the context's windows:
 * {"question", "context", "answer", "found", "start", "end" (code points into the
 * context, end exclusive, as SQuAD's answer_start), "score" (start + end logit) and
 * "probability" (softmax(start)[s] * softmax(end)[e] in the window)}. */
#ifndef BERTCC_TASKS_TASK_QA_H
#define BERTCC_TASKS_TASK_QA_H

#include "task.h"

extern const tk_task_ops tk_task_qa;

#endif
