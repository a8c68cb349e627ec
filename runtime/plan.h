/* plan.h: how compiled code runs a graph. The code generator turns each distinct
 * kernel signature (op, attributes, operand and result types) into one kernel; nodes
 * with the same signature — the same projection in layer 0 and layer 11, say — share
 * it, so compile time does not grow with depth. The plan lists the steps (a kernel and
 * the values it reads and writes) and every value's size as a monomial in B and S;
 * the executor (exec.h) places the temporaries in one arena per (B, S) from their live
 * ranges and runs the steps. The plan is derived from the graph alone, so a shared
 * library that embeds its graph's text rebuilds the same plan at load time. */
#ifndef BERTCC_RT_PLAN_H
#define BERTCC_RT_PLAN_H

#include <stdint.h>

#include "../ir/ir.h"

/* A generated kernel: `units` says how many independent work units it has for the
 * given sizes (dims = {B, S, imm}, imm the step's) and how much per-thread scratch it
 * needs; `body` does
 * units [u0, u1). ptrs[0] is the result, ptrs[1..] the operands, in node order, then a
 * multi-output region's further results (rt_step.ptr). Any
 * split of the units over threads gives the same bits. */
typedef int64_t (*rt_units_fn)(const int64_t *dims, int64_t *scratch_bytes);
typedef void (*rt_body_fn)(void *const *ptrs, const int64_t *dims, int64_t u0, int64_t u1,
                           void *scratch);

typedef struct rt_kernel {
    rt_units_fn units;
    rt_body_fn body;
} rt_kernel;

typedef enum {
    RT_VAL_PARAM, /* bound to a parameter tensor (index = its param number) */
    RT_VAL_INPUT, /* bound to an input tensor (index = its input number) */
    RT_VAL_TEMP,  /* placed in the arena */
    RT_VAL_ALIAS, /* same memory as value `index` (a reshape) */
    RT_VAL_CONST, /* computed by a constant step from parameters only (pack_b), kept by the
                     executor between runs, outside the arena */
    /* a fused node's further result (ir.h RESULT) is an RT_VAL_TEMP that its producer's
     * step writes: it has no step of its own */
} rt_val_kind;

typedef struct rt_value {
    rt_val_kind kind;
    int index;
    int output; /* graph output number, or -1 (outputs are copied out at the end) */
    ir_type type;
    int first, last; /* steps that define and last read it (for arena planning) */
} rt_value;

typedef struct rt_step {
    int node;    /* the graph node it computes */
    int kernel;  /* index into the kernel table */
    int64_t imm; /* the kernel's dims[2]: a fused body's first dropout's stream index
                    (ir_region_kernel_body), else 0 */
    int constant; /* a pack_b: reads parameters only, writes an RT_VAL_CONST (exec.h says
                     when it runs) */
    int nptr;
    /* value numbers: the result, the operands, then a fused node's further results
     * (ir_region_results) */
    int ptr[1 + IR_MAX_INPUTS + IR_MAX_RESULTS];
} rt_step;

typedef struct rt_plan {
    int nvalues;
    rt_value *values; /* one per graph node */
    int nsteps;
    rt_step *steps;
    int nkernels;
    int *kernel_node; /* (nkernels) the node each kernel is generated from */
    int nparams, ninputs;
    int *param_node, *input_node; /* (nparams), (ninputs) */
} rt_plan;

/* Builds the plan of g (which must verify). */
int rt_plan_build(const ir_graph *g, rt_plan *p, bc_err *e);
void rt_plan_free(rt_plan *p);

/* Writes the kernel signature of node n ("matmul{ta=0,tb=1}(f32[B,S,128],f32[128,128])
 * ->f32[B,S,128]"); nodes with equal signatures share a kernel. */
void rt_kernel_signature(const ir_graph *g, const ir_node *n, char *buf, size_t len);

/* The value whose memory v uses (following reshape aliases). */
int rt_plan_storage(const rt_plan *p, int v);

#endif
