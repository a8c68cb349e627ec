/* flops.c: the arithmetic a graph does, as benchmarks count it: matmuls only, those
 * inside fused regions included. */
#include "ir.h"

double ir_node_matmul_flops(const ir_graph *g, const ir_node *n, int64_t B, int64_t S)
{
    if (n->op == IR_OP_FUSED) {
        bc_err e;
        ir_graph *r = ir_region_graph(g, n, &e); /* verified with the graph */
        double sum = r ? ir_matmul_flops(r, B, S) : 0;
        ir_graph_free(r);
        return sum;
    }
    if (n->op != IR_OP_MATMUL)
        return 0;
    /* result [*, M, N]: every element is a K-term dot product, K being the lhs's
     * contracted dimension (its last, or second-to-last when stored transposed). */
    const ir_type *a = &g->nodes[n->in[0]].type;
    ir_dim k = n->a.ta ? a->dim[a->rank - 2] : a->dim[a->rank - 1];
    double terms = (double)ir_dim_eval(k, B, S);
    for (int d = 0; d < n->type.rank; d++)
        terms *= (double)ir_dim_eval(n->type.dim[d], B, S);
    return 2 * terms;
}

double ir_matmul_flops(const ir_graph *g, int64_t B, int64_t S)
{
    double sum = 0;
    for (int i = 0; i < g->n; i++)
        sum += ir_node_matmul_flops(g, &g->nodes[i], B, S);
    return sum;
}
