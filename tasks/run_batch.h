/* run_batch.h: `bertcc run` as a library call — the contract of DESIGN.md §5: one
 * eval-mode forward pass of a model on a batch file, through either backend, giving
 * sequence_output, pooled_output, each head's logits, each loss and loss (with grads:
 * grad.<param> for every parameter too). The batch's labels choose the losses. */
#ifndef BERTCC_TASKS_RUN_BATCH_H
#define BERTCC_TASKS_RUN_BATCH_H

#include <stdint.h>

#include "../codegen/engine.h"
#include "../runtime/tensor.h"
#include "../support/err.h"

typedef struct tk_run_opts {
    const char *model;   /* an XML model description or a Hugging Face config.json */
    const char *batch;   /* the batch file (safetensors): input_ids, ..., labels */
    const char *weights; /* parameters (Hugging Face names); NULL: BERT init from seed */
    uint64_t seed;
    int grads;          /* also grad.<param> (the batch must hold labels) */
    cg_backend backend; /* CG_BACKEND_JIT or CG_BACKEND_REF */
    cg_options cg;      /* the JIT's target (cpu, features) and verbose; prefix unused */
    int threads;        /* 0: all cores */
    const char *fuse;   /* the fusion rules (pass_fuse_parse; NULL: all) */
    bc_note_fn note; /* notes (ignored tensors in the batch or checkpoint); may be NULL */
    void *note_ctx;
} tk_run_opts;

typedef struct tk_run_info {
    char model[128];  /* the model's name */
    int64_t B, S;     /* the batch's rows and columns */
    double compile_s; /* preparing the engine (JIT compilation) */
    double run_s;     /* the forward (and backward) pass */
} tk_run_info;

/* Loads o->model and o->batch, builds the graph for the labels present (optimized; with
 * grads, differentiated and optimized again), takes the parameters from o->weights or
 * initializes them from o->seed, and runs it: the outputs are appended to *outputs (F32,
 * in the graph's order). Errors that come from the batch or the checkpoint are prefixed
 * with that file's name, so they name the file and the tensor. */
int tk_run_batch(const tk_run_opts *o, rt_tensor_list *outputs, tk_run_info *info,
                 bc_err *e);

#endif
