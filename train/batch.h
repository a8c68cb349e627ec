/* batch.h: the `run` batch format (DESIGN.md §5): integer tensors input_ids,
 * token_type_ids, attention_mask [B, S] and optional labels. This turns a batch as
 * loaded from safetensors into the interpreter's (or generated code's) inputs. */
#ifndef BERTCC_TRAIN_BATCH_H
#define BERTCC_TRAIN_BATCH_H

#include "../runtime/params.h"
#include "../runtime/tensor.h"

/* Label groups; the same bits as the frontend's FE_LABEL_* (checked in tasks/run_batch.c). */
enum {
    TR_LABEL_MLM = 1 << 0,    /* mlm_labels [B, S] */
    TR_LABEL_NSP = 1 << 1,    /* nsp_labels [B] */
    TR_LABEL_INTENT = 1 << 2, /* intent_labels [B] */
    TR_LABEL_SLOT = 1 << 3,   /* slot_labels [B, S] */
    TR_LABEL_QA = 1 << 4,     /* start_positions, end_positions [B] */
};

/* Checks batch and appends I64 inputs to out: input_ids, token_type_ids (zeros when
 * absent), attention_mask (ones when absent) and the labels of groups in `accepted`
 * (the heads the model has). Labels of other groups and unknown tensors are ignored
 * with a note. *present receives the label groups found. Errors name the tensor:
 * missing input_ids, non-integer dtype, wrong rank or shape, S > max_position, an
 * empty batch, only one of start/end positions. Value ranges are checked where the
 * values are used (ids against the vocabulary, labels against the classes). */
int tr_batch_prepare(const rt_tensor_list *batch, int64_t max_position, unsigned accepted,
                     rt_tensor_list *out, unsigned *present, int64_t *B, int64_t *S,
                     bc_note_fn note, void *note_ctx, bc_err *e);

/* Replaces mlm_labels (I64 [B, S]) in batch by the inputs of a graph whose MLM head runs
 * on P rows per sequence (fe_build_bert_mlm_gather): mlm_gather (F32 [B, P, S], row p
 * one-hot at the p-th position whose label is not -100, in order; zero rows after the
 * last) and mlm_gathered_labels (I64 [B, P], those labels, -100 after). A sequence with
 * more than P labelled positions is an error naming it. */
int rt_batch_mlm_gather(rt_tensor_list *batch, int64_t P, bc_err *e);

#endif
