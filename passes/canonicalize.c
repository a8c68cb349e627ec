/* canonicalize.c: local simplifications, applied while copying the graph node by
 * node so that each rewrite sees its operands already simplified:
 *   transpose(transpose(x, p), q) -> transpose(x, p o q), or x when that is identity
 *   reshape(reshape(x)) -> reshape(x); reshape to x's own type -> x
 *   scale(scale(x, a), b) -> scale(x, a b); scale(x, 1) -> x
 * Nodes left unused are removed by dce. */
#include "passes.h"

#include <stdlib.h>

static int is_identity(const int *perm, int rank)
{
    for (int i = 0; i < rank; i++)
        if (perm[i] != i)
            return 0;
    return 1;
}

/* Adds old node n to ng with operands in[] (already mapped); returns the new value. */
static int simplify(ir_graph *ng, const ir_node *n, const int *in)
{
    const ir_node *x = n->nin ? &ng->nodes[in[0]] : NULL;
    switch (n->op) {
    case IR_OP_TRANSPOSE: {
        int rank = n->type.rank;
        if (is_identity(n->a.perm, rank))
            return in[0];
        if (x->op == IR_OP_TRANSPOSE) {
            int perm[IR_MAX_RANK];
            for (int i = 0; i < rank; i++)
                perm[i] = x->a.perm[n->a.perm[i]];
            if (is_identity(perm, rank))
                return x->in[0];
            return ir_transpose(ng, x->in[0], perm);
        }
        break;
    }
    case IR_OP_RESHAPE:
        if (ir_type_eq(&x->type, &n->type))
            return in[0];
        if (x->op == IR_OP_RESHAPE) {
            const ir_node *src = &ng->nodes[x->in[0]];
            if (ir_type_eq(&src->type, &n->type))
                return x->in[0];
            return ir_reshape(ng, x->in[0], n->type.rank, n->type.dim);
        }
        break;
    case IR_OP_SCALE:
        if (n->a.scale == 1.0)
            return in[0];
        if (x->op == IR_OP_SCALE) {
            double f = x->a.scale * n->a.scale;
            return f == 1.0 ? x->in[0] : ir_scale(ng, x->in[0], f);
        }
        break;
    default:
        break;
    }
    return ir_add(ng, n->op, in, n->nin, &n->a, n->name, &n->type);
}

int pass_canonicalize(ir_graph **gp, bc_err *e)
{
    ir_graph *g = *gp, *ng = ir_graph_new(g->name);
    int *map = malloc(sizeof *map * (size_t)(g->n ? g->n : 1));
    if (!ng || !map) {
        ir_graph_free(ng);
        free(map);
        return bc_errf(e, "out of memory");
    }
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        int in[IR_MAX_INPUTS];
        for (int k = 0; k < n->nin; k++)
            in[k] = map[n->in[k]];
        map[i] = simplify(ng, n, in);
    }
    int rc = pass_install(gp, ng, map, e);
    free(map);
    return rc;
}
