/* pack.c: the fusion pass's pack rule. In an inference graph, a matmul whose rhs is a
 * parameter matrix (a weight: b[K, N], or [N, K] with tb) reads it through pack_b(b),
 * b in the GEMM's panel layout (ir.h PACK_B), as a third operand. The executor runs
 * pack_b steps, which read parameters only, once for a set of bound weights (rt_exec_keep
 * _constants) instead of the GEMM packing its B panels on every call: at B = 1 the
 * panels are packed as often as they are used, and bert-base's weights (440 MB) come
 * from memory once per inference either way.
 *
 * A graph with a backward is left alone: there the weights change every step, and the
 * backward reads each one again in the other orientation (dx = dy W). Each (b, tb) is
 * packed once, whatever the number of its matmuls. The matmul's value does not change:
 * every element is the same FMA chain over k in order, from the same operands. */
#include <stdlib.h>

#include "passes.h"

static int packable(const ir_graph *g, const ir_node *n)
{
    if (n->op != IR_OP_MATMUL || n->nin != 2 || n->a.ta)
        return 0;
    const ir_node *b = &g->nodes[n->in[1]]; /* a param: f32, constant shape (its rule) */
    return b->op == IR_OP_PARAM && b->type.rank == 2;
}

int pass_pack_weights(ir_graph **gp, bc_err *e)
{
    const ir_graph *g = *gp;
    int any = 0;
    for (int i = 0; i < g->n; i++) {
        if (ir_ops[g->nodes[i].op].role == IR_ROLE_GRAD)
            return 0; /* a backward graph (autodiff's ops) */
        any |= packable(g, &g->nodes[i]);
    }
    if (!any)
        return 0;
    size_t n = (size_t)g->n;
    int *map = malloc(sizeof *map * n);
    int *packed = malloc(sizeof *packed * 2 * n); /* (value, tb) -> its pack_b, or -1 */
    ir_graph *ng = ir_graph_new(g->name);
    if (!map || !packed || !ng) {
        free(map);
        free(packed);
        ir_graph_free(ng);
        return bc_errf(e, "out of memory");
    }
    for (size_t i = 0; i < 2 * n; i++)
        packed[i] = -1;
    for (int i = 0; i < g->n && !ng->failed; i++) {
        const ir_node *nd = &g->nodes[i];
        int in[IR_MAX_INPUTS];
        for (int k = 0; k < nd->nin; k++)
            in[k] = map[nd->in[k]];
        if (!packable(g, nd)) {
            map[i] = ir_add(ng, nd->op, in, nd->nin, &nd->a, nd->name, &nd->type);
            continue;
        }
        int *p = &packed[2 * nd->in[1] + nd->a.tb];
        if (*p < 0) {
            ir_attrs a = {0};
            a.tb = nd->a.tb;
            *p = ir_add(ng, IR_OP_PACK_B, &in[1], 1, &a, NULL, NULL);
        }
        in[2] = *p;
        map[i] = ir_add(ng, IR_OP_MATMUL, in, 3, &nd->a, NULL, &nd->type);
    }
    free(packed);
    int rc = pass_install(gp, ng, map, e);
    free(map);
    return rc;
}
