/* rewrite.c: rebuilding a graph with nodes dropped or replaced, and installing a graph
 * a pass built node by node in the old one's place — how every simplifying pass ends. */
#include "passes.h"

#include <stdlib.h>

/* Gives ng g's outputs; map takes g's values to ng's (NULL: the same numbers). */
static void copy_outputs(const ir_graph *g, ir_graph *ng, const int *map)
{
    for (int k = 0; k < g->nout; k++) {
        int v = g->outs[k].value;
        ir_set_output(ng, g->outs[k].name, map ? map[v] : v);
    }
}

ir_graph *pass_rebuild(const ir_graph *g, const char *keep, const int *repl, bc_err *e)
{
    ir_graph *ng = ir_graph_new(g->name);
    int *map = malloc(sizeof *map * (size_t)(g->n ? g->n : 1)); /* old value -> new */
    if (!ng || !map) {
        ir_graph_free(ng);
        free(map);
        bc_errf(e, "out of memory");
        return NULL;
    }
    for (int i = 0; i < g->n; i++) {
        map[i] = -1;
        if (repl[i] != i) {
            map[i] = map[repl[i]];
            continue;
        }
        if (!keep[i])
            continue;
        const ir_node *n = &g->nodes[i];
        int in[IR_MAX_INPUTS];
        for (int k = 0; k < n->nin; k++)
            in[k] = map[n->in[k]];
        map[i] = ir_add(ng, n->op, in, n->nin, &n->a, n->name, &n->type);
    }
    copy_outputs(g, ng, map);
    free(map);
    if (ng->failed) {
        bc_errf(e, "rebuilding the graph: %s", ng->err.msg);
        ir_graph_free(ng);
        return NULL;
    }
    return ng;
}

/* Swaps *g for the rebuilt graph. */
int pass_replace(ir_graph **g, const char *keep, const int *repl, bc_err *e)
{
    ir_graph *ng = pass_rebuild(*g, keep, repl, e);
    if (!ng)
        return -1;
    ir_graph_free(*g);
    *g = ng;
    return 0;
}

int pass_install(ir_graph **g, ir_graph *ng, const int *map, bc_err *e)
{
    copy_outputs(*g, ng, map);
    if (ng->failed) {
        bc_errf(e, "%s", ng->err.msg);
        ir_graph_free(ng);
        return -1;
    }
    ir_graph_free(*g);
    *g = ng;
    return 0;
}
