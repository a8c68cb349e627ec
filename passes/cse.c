/* cse.c: common-subexpression elimination. Two nodes are the same when op, operands
 * (after earlier merges), the attributes the op carries and the type agree; named
 * nodes (params, inputs) are never merged. */
#include "passes.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t node_hash(const ir_node *n, const int *repl)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n->op;
    for (int k = 0; k < n->nin; k++)
        h = (h ^ (uint64_t)repl[n->in[k]]) * 1099511628211ULL;
    return h;
}

int pass_cse(ir_graph **gp, bc_err *e)
{
    ir_graph *g = *gp;
    size_t cap = 16;
    while (cap < (size_t)g->n * 2)
        cap *= 2;
    int *table = malloc(sizeof *table * cap); /* open addressing: node index or -1 */
    int *repl = malloc(sizeof *repl * (size_t)(g->n ? g->n : 1));
    char *keep = malloc((size_t)(g->n ? g->n : 1));
    if (!table || !repl || !keep) {
        free(table);
        free(repl);
        free(keep);
        return bc_errf(e, "out of memory");
    }
    for (size_t i = 0; i < cap; i++)
        table[i] = -1;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        repl[i] = i;
        keep[i] = 1;
        if (n->name)
            continue;
        size_t slot = node_hash(n, repl) & (cap - 1);
        for (; table[slot] >= 0; slot = (slot + 1) & (cap - 1)) {
            const ir_node *m = &g->nodes[table[slot]];
            int same = m->op == n->op && m->nin == n->nin &&
                       ir_type_eq(&m->type, &n->type) &&
                       ir_attrs_equal(n->op, &m->a, &n->a);
            for (int k = 0; same && k < n->nin; k++)
                same = repl[m->in[k]] == repl[n->in[k]];
            if (same) {
                repl[i] = table[slot];
                break;
            }
        }
        if (repl[i] == i)
            table[slot] = i;
    }
    int rc = pass_replace(gp, keep, repl, e);
    free(table);
    free(repl);
    free(keep);
    return rc;
}
