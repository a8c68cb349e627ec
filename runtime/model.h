/* model.h: a compiled model inside a shared library written by `bertcc -o NAME.so`.
 * The library embeds the IR text of its forward graph and of its training graph
 * (forward + backward, every head's labels) and the kernel tables generated for them;
 * at load time the runtime parses the graphs and rebuilds the same plans, so nothing
 * of LLVM is needed to run. The generated NAME.h wraps this with prefixed names. */
#ifndef BERTCC_RT_MODEL_H
#define BERTCC_RT_MODEL_H

#include "plan.h"
#include "tensor.h"

typedef struct rt_model rt_model;

/* features: the comma-separated "+avx512f,+fma,..." list the code was compiled for;
 * a CPU that lacks one of them is an error naming it. */
rt_model *rt_model_open(const char *fwd_ir, const rt_kernel *fwd_kernels, int fwd_nkernels,
                        const char *train_ir, const rt_kernel *train_kernels,
                        int train_nkernels, const char *features, bc_err *e);
void rt_model_close(rt_model *m);

/* Parameters: from a safetensors checkpoint (Hugging Face names, older spellings too),
 * or BERT's initialization from a seed. The model owns them and nothing else changes
 * them, so the forward graph's packed weights (the pack rule) are computed in its first
 * run after each load or init and kept (rt_exec_keep_constants). */
int rt_model_load(rt_model *m, const char *path, bc_err *e);
int rt_model_init(rt_model *m, uint64_t seed, bc_err *e);

/* Runs the forward graph (train = 0) or the training graph (train = 1) on a batch given
 * as arrays: ids, token types and mask are (B, S) int64 (types and mask may be NULL for
 * all 0 / all 1); labels (training graph only) by name, NULL for absent: mlm_labels and
 * slot_labels (B, S), nsp_labels, intent_labels, start_positions, end_positions (B);
 * an absent label is filled with -100 (ignored). Results stay readable through
 * rt_model_output until the next run. */
int rt_model_run(rt_model *m, int train, int64_t B, int64_t S, const int64_t *ids,
                 const int64_t *types, const int64_t *mask, const int64_t *const *labels,
                 const char *const *label_names, int nlabels, int threads, bc_err *e);
const rt_tensor *rt_model_output(const rt_model *m, const char *name);
int rt_model_output_count(const rt_model *m);
const rt_tensor *rt_model_output_at(const rt_model *m, int i);

/* 1 if this CPU has every feature in the list ("+avx2,+fma,..."; unknown ones are
 * assumed present); otherwise 0 with the missing feature named in e. */
int rt_cpu_supports(const char *features, bc_err *e);
/* The same check against a CPU described by host, a feature list as LLVM writes it
 * ("+avx2,-avx512f,..."; a feature host does not mention counts as present), with the
 * same message: so that the refusal is testable on any machine. */
int rt_features_supported(const char *features, const char *host, bc_err *e);

#endif
