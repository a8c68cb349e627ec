/* check.h: the range checks on the operands a kernel indexes with, in one table that
 * both backends use: the executor (exec.h) checks every step before any kernel runs,
 * the reference interpreter (interp.h) each node before its kernel. A kernel may then
 * index memory with these values unchecked.
 *     gather           ids in [0, rows of the table)
 *     scatter_add      ids in [0, rows of the result)
 *     attn_softmax     mask values 0 or 1
 *     cross_entropy    labels in [0, classes) or -100 (ignored); class weights, which
 *                      the labels index, have the classes' length by the shape rule
 *                      and their values are not checked (negative ones are the
 *                      caller's business)
 *     prefix_rows      S (the rows taken) at most the rows of the table */
#ifndef BERTCC_RT_CHECK_H
#define BERTCC_RT_CHECK_H

#include <stdint.h>

#include "../ir/ir.h"

/* The two backends have always worded two of these errors differently (a mask value:
 * "out of range [0, 2)" / "must be 0 or 1"; a label: "value" / "label"). Error messages
 * are user-visible, so each keeps its own. */
typedef enum { RT_CHECK_EXEC, RT_CHECK_REF } rt_check_wording;

/* The operand of node v that its kernel indexes with (ids, mask, labels), or -1. */
int rt_check_operand(const ir_graph *g, int v);

/* Checks node v for sizes B and S. idx: the int64 values of operand
 * rt_check_operand(g, v) (NULL when it is -1). Returns 0, or -1 with an error naming
 * the tensor, the value and its flat index. */
int rt_check_node(const ir_graph *g, int v, const int64_t *idx, int64_t B, int64_t S,
                  rt_check_wording w, bc_err *e);

/* What checking node v takes, resolved once (a fused node's region is parsed here, not
 * on every run): the graph and node to pass to rt_check_node (*cg and *cv: g and v, or
 * for a region its own graph, which the caller frees with ir_graph_free when it is not
 * g, and the checked op in it) and the operand of v in g that holds the indices (or
 * -1). Returns 0 when the node has nothing to check (*cg NULL), 1 when it has. */
int rt_check_resolve(const ir_graph *g, int v, ir_graph **cg, int *cv, int *operand);

/* How errors name value v: by its name, else "%<v> (<op>)". */
const char *rt_value_name(const ir_graph *g, int v, char *buf, size_t len);

#endif
