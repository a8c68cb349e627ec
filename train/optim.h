/* optim.h: AdamW with the learning-rate schedule and gradient clipping that BERT
 * fine-tuning uses (Hugging Face's Trainer with torch.optim.AdamW and
 * get_linear_schedule_with_warmup).
 *
 * One update, for every trainable parameter p with averaged gradient g (F32 throughout,
 * in the order torch.optim.AdamW applies it, so results match it to rounding):
 *     p <- p * (1 - lr * wd)                       only where tr_param_decays(name)
 *     m <- b1 * m + (1 - b1) * g
 *     v <- b2 * v + (1 - b2) * g * g
 *     p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * where t counts updates from 1. Before that the gradients are clipped to a global
 * L2 norm (computed in double over all trainable gradients), as
 * torch.nn.utils.clip_grad_norm_ does: g <- g * min(1, max_norm / (norm + 1e-6)).
 *
 * Epsilon: 1e-6 by default, the default of transformers.AdamW (the optimizer of the
 * original BERT fine-tuning scripts); torch.optim.AdamW and the Trainer's
 * adam_epsilon default to 1e-8. (The legacy transformers.AdamW also differs in the
 * order of operations: eps is added before the bias correction of v, and the decay
 * uses the updated weights. The difference is O(lr * eps) per step; we follow torch.) */
#ifndef BERTCC_TRAIN_OPTIM_H
#define BERTCC_TRAIN_OPTIM_H

#include <stdint.h>

#include "../runtime/tensor.h"

typedef struct tr_adamw_opts {
    double lr;           /* peak learning rate, reached after warm-up (5e-5) */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-6 (see above) */
    double weight_decay; /* 0.01; decoupled, weights only (tr_param_decays) */
    double clip;         /* max global gradient norm (1.0); 0 disables clipping */
    double warmup;       /* warm-up as a fraction of the total updates (0.1) */
} tr_adamw_opts;

void tr_adamw_defaults(tr_adamw_opts *o);

/* 1 if weight decay applies to the parameter: not to biases (names ending in "bias",
 * cls.predictions.bias included) nor to LayerNorm parameters (names containing
 * "LayerNorm"), as BERT's fine-tuning scripts group them. */
int tr_param_decays(const char *name);

/* 1 if name starts with one of prefixes[0..n). */
int tr_param_is_frozen(const char *name, const char *const *prefixes, int n);

/* Warm-up length in updates: ceil(total * warmup), as the Trainer's warmup_ratio. */
int64_t tr_sched_warmup_steps(double warmup, int64_t total);

/* The learning rate of update number step (0-based) out of total: linear warm-up from
 * 0 over the warm-up updates, then linear decay to 0 at total (LambdaLR with
 * get_linear_schedule_with_warmup: the first update uses lr 0 when there is warm-up). */
double tr_sched_lr(const tr_adamw_opts *o, int64_t step, int64_t total);

/* Global L2 norm of every F32 tensor in grads, accumulated in double in a fixed order
 * (the same bits for every thread count). */
double tr_grad_global_norm(const rt_tensor_list *grads);

/* Scales every tensor of grads by min(1, max_norm / (norm + 1e-6)) and returns the
 * norm before clipping. max_norm 0 only measures. */
double tr_clip_grad_norm(rt_tensor_list *grads, double max_norm);

/* Optimizer state: the moments of each trainable parameter, F32 and shaped like it,
 * named "adam.m.<param>" and "adam.v.<param>" (so they can be saved as they are). Each
 * moment is one allocation: m's tensors are views into one arena, v's into another
 * (rt_list_pack in tensor.h). */
typedef struct tr_adamw {
    tr_adamw_opts o;
    int64_t step;     /* updates applied so far (t of the last update) */
    rt_tensor_list m; /* adam.m.<name>, in the order of the trainable params; one arena */
    rt_tensor_list v; /* adam.v.<name>; one arena */
    char **names;     /* [m.n] parameter names */
} tr_adamw;

/* Zero moments for every F32 parameter of params not matched by a frozen prefix.
 * A trainable parameter that is not F32 is an error naming it. */
int tr_adamw_init(tr_adamw *a, const tr_adamw_opts *o, const rt_tensor_list *params,
                  const char *const *frozen, int nfrozen, bc_err *e);
void tr_adamw_free(tr_adamw *a);

/* One update with learning rate lr. grads holds "grad.<name>" (F32, the parameter's
 * shape) for every trainable parameter; others are ignored. Errors name the tensor. */
int tr_adamw_step(tr_adamw *a, rt_tensor_list *params, const rt_tensor_list *grads,
                  double lr, bc_err *e);

/* Appends copies of the state to out: adam.m.*, adam.v.* and "adam.step" (I64 []). */
int tr_adamw_save(const tr_adamw *a, rt_tensor_list *out, bc_err *e);

/* Restores the state from a list written by tr_adamw_save (the moments of every
 * trainable parameter must be there with its shape; extra tensors are ignored). */
int tr_adamw_load(tr_adamw *a, const rt_tensor_list *state, bc_err *e);

#endif
