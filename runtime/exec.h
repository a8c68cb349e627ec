/* exec.h: runs a plan (plan.h) with a table of generated kernels. A run binds every
 * value to memory, checks every index a kernel will use (check.h), dispatches the steps
 * and collects the outputs. One OpenMP parallel region per run: every thread walks the
 * steps, claims chunks of each step's work units from a shared counter, and meets the
 * others at a barrier.
 *
 * Memory: params and inputs are read where the caller's tensors hold them (converted
 * into a copy only when their dtype is not the kernels'). Temporaries live in one arena
 * laid out from their live ranges (best fit), recomputed only when B or S changes.
 * Outputs are copied out of the arena into new tensors of `out`, except an output that
 * a kernel computes when `out` already holds a tensor of its name, dtype and shape that
 * overlaps no param, input or other such output: that kernel writes the result there
 * directly (training keeps its gradients so, in one arena: train.h). */
#ifndef BERTCC_RT_EXEC_H
#define BERTCC_RT_EXEC_H

#include "plan.h"
#include "tensor.h"

typedef struct rt_exec rt_exec;

/* kernels has plan->nkernels entries. Neither is copied: both must outlive the exec. */
rt_exec *rt_exec_new(const ir_graph *g, const rt_plan *plan, const rt_kernel *kernels,
                     bc_err *e);
void rt_exec_free(rt_exec *x);

/* Same contract as rt_interp_run (interp.h) in F32: binds B and S from the inputs,
 * checks params, inputs and every index a kernel will use (ids, token types, labels,
 * mask values, S against the position table) before any kernel runs, runs, and puts
 * each graph output into out: appended (or replacing the tensor of its name), or
 * computed in place in out's tensor as described above, whose data pointer then stays
 * the same. An error found before any kernel runs leaves out unchanged. threads <= 0
 * means OpenMP's default. */
int rt_exec_run(rt_exec *x, const rt_tensor_list *params, const rt_tensor_list *inputs,
                int threads, rt_tensor_list *out, bc_err *e);

/* Constant steps (pack_b: weights packed for the GEMM; plan.h) read parameters only. By
 * default they run in every run. With keep on, their values are kept between runs and
 * recomputed only when a parameter they read is bound to other memory (or converted
 * from another dtype): the caller promises not to change a parameter's contents in
 * place while it is on — calling this again (on or off) drops what was kept. Inference
 * with fixed weights (predict, bench, serve) turns it on; training's evaluation, whose
 * weights the optimizer updates in place, leaves it off. */
void rt_exec_keep_constants(rt_exec *x, int on);

/* Bytes of arena the last run used (for -v reports and tests of the planner). */
int64_t rt_exec_arena_bytes(const rt_exec *x);

/* Profiling, off by default. Switched on (which clears it), thread 0 reads the clock
 * after every step's barrier, so each plan step's wall time — its slowest thread's,
 * the barrier included — adds up over the runs that follow. -1: out of memory. */
int rt_exec_profile(rt_exec *x, int on);
/* [plan->nsteps] seconds per step summed over *runs runs; NULL while off. */
const double *rt_exec_profile_seconds(const rt_exec *x, int64_t *runs);

#endif
