/* shape.c: shape inference. Rebuilds the graph letting each op's shape rule compute
 * its type (ops that carry their own type keep it and have it checked), then compares
 * with the types the graph declared, so a graph from the parser or another pass with a
 * wrong type is caught here with the node named. */
#include "passes.h"

int pass_shape(ir_graph **gp, bc_err *e)
{
    ir_graph *g = *gp, *ng = ir_graph_new(g->name);
    if (!ng)
        return bc_errf(e, "out of memory");
    for (int i = 0; i < g->n && !ng->failed; i++) {
        const ir_node *n = &g->nodes[i];
        int v = ir_add(ng, n->op, n->in, n->nin, &n->a, n->name,
                       (ir_ops[n->op].attrs & IR_A_TYPE) ? &n->type : NULL);
        if (v >= 0 && !ir_type_eq(&ng->nodes[v].type, &n->type)) {
            char s1[160], s2[160];
            bc_errf(e, "%%%d (%s): declared %s, inferred %s", i, ir_ops[n->op].name,
                    ir_type_str(&n->type, s1, sizeof s1),
                    ir_type_str(&ng->nodes[v].type, s2, sizeof s2));
            ir_graph_free(ng);
            return -1;
        }
    }
    return pass_install(gp, ng, NULL, e);
}
