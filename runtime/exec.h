/* exec.h: runs a plan (plan.h) with a table of generated kernels. One OpenMP parallel
 * region per run: every thread walks the steps, claims chunks of each step's work units
 * from a shared counter, and meets the others at a barrier. Temporaries live in one arena
 * laid out from their live ranges (best fit), recomputed only when B or S changes. */
#ifndef BERTCC_RT_EXEC_H
#define BERTCC_RT_EXEC_H

#include "plan.h"
#include "tensor.h"

typedef struct rt_exec rt_exec;

/* kernels has plan->nkernels entries. Neither is copied: both must outlive the exec. */
rt_exec *rt_exec_new(const ir_graph *g, const rt_plan *plan, const rt_kernel *kernels,
                     ir_err *e);
void rt_exec_free(rt_exec *x);

/* Same contract as rt_interp_run (interp.h) in F32: binds B and S from the inputs,
 * checks params, inputs and every index a kernel will use (ids, token types, labels,
 * mask values, S against the position table) before any kernel runs, runs, and appends
 * each graph output to out. threads <= 0 means OpenMP's default. */
int rt_exec_run(rt_exec *x, const rt_tensor_list *params, const rt_tensor_list *inputs,
                int threads, rt_tensor_list *out, ir_err *e);

/* Bytes of arena the last run used (for -v reports and tests of the planner). */
int64_t rt_exec_arena_bytes(const rt_exec *x);

#endif
