/* params.h: the parameter store. Parameters are F32 tensors named as Hugging Face
 * names them (DESIGN.md §3), one per param node of a graph. */
#ifndef BERTCC_RT_PARAMS_H
#define BERTCC_RT_PARAMS_H

#include <stdint.h>

#include "../ir/ir.h"
#include "tensor.h"

/* BERT's initialization of one parameter: normal(0, 0.02) for weights and embeddings,
 * 1 for LayerNorm weights, 0 for biases. Each parameter draws from its own stream,
 * seeded from seed and its name, so adding a head does not change the encoder's
 * initial values. */
int rt_param_init_one(rt_tensor *t, uint64_t seed);

/* Adds every param of g to out, initialized. */
int rt_params_init(const ir_graph *g, uint64_t seed, rt_tensor_list *out, bc_err *e);

/* Hugging Face spelling of a checkpoint name mapped to ours (LayerNorm.gamma/.beta ->
 * .weight/.bias, names without "bert."); writes into buf and returns it. */
const char *rt_param_canonical_name(const char *name, char *buf, size_t len);

/* Takes the params of g from a checkpoint (as loaded from safetensors): aliases as
 * above, F16/BF16/F64 converted to F32, extra tensors ignored with a note,
 * embeddings.position_ids ignored, cls.predictions.decoder.weight checked to equal the
 * word embeddings. A missing or mis-shaped tensor is an error naming it, unless
 * init_missing is set: then it is initialized from seed and listed in a note. */
int rt_params_from_checkpoint(const ir_graph *g, const rt_tensor_list *ckpt,
                              int init_missing, uint64_t seed, rt_tensor_list *out,
                              bc_note_fn note, void *note_ctx, bc_err *e);

#endif
