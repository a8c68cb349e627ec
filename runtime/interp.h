/* interp.h: the reference interpreter. It executes an IR graph op by op with the
 * plain-C reference kernels of ref.h. Slow by design; it is the oracle for generated
 * code. Values are held in double precision; in the default F32 mode every op's result
 * is rounded to float, so results match float32 frameworks to rounding, while the F64
 * mode keeps full double precision for gradient checking. */
#ifndef BERTCC_RT_INTERP_H
#define BERTCC_RT_INTERP_H

#include "../ir/ir.h"
#include "tensor.h"

typedef struct rt_interp_opts {
    int f64;     /* 1: keep doubles, write F64 outputs; 0: round to f32, F32 outputs */
    int threads; /* 0: OpenMP's default */
} rt_interp_opts;

/* Binds B and S from the shapes of the input tensors, checks every input and
 * parameter against its declared type, runs g and appends each graph output to out
 * (F32, or F64 in f64 mode; scalars have rank 0). params: F32 (or F64) tensors by
 * param name; inputs: integer tensors by input name. Errors name the tensor: ids,
 * token types, labels or mask values out of range, shape mismatches, S larger than a
 * table it indexes. */
int rt_interp_run(const ir_graph *g, const rt_tensor_list *params,
                  const rt_tensor_list *inputs, const rt_interp_opts *o,
                  rt_tensor_list *out, bc_err *e);

/* 1 if the interpreter has a kernel row for op (tests check every op has one). */
int rt_interp_has_kernel(ir_opcode op);

/* Binds B and S from input tensors against g's input declarations. */
int rt_bind_sizes(const ir_graph *g, const rt_tensor_list *inputs, int64_t *B, int64_t *S,
                  bc_err *e);

#endif
