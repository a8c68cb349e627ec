/* dce.c: dead-code elimination. Only what some output needs survives, so a head whose
 * outputs are not requested (see pass_keep_outputs) costs nothing. */
#include "passes.h"

#include <stdlib.h>

int pass_dce(ir_graph **gp, bc_err *e)
{
    ir_graph *g = *gp;
    size_t n = (size_t)(g->n ? g->n : 1);
    char *live = calloc(n, 1);
    int *repl = malloc(sizeof *repl * n);
    if (!live || !repl) {
        free(live);
        free(repl);
        return bc_errf(e, "out of memory");
    }
    for (int k = 0; k < g->nout; k++)
        live[g->outs[k].value] = 1;
    for (int i = g->n - 1; i >= 0; i--) {
        repl[i] = i;
        if (live[i])
            for (int k = 0; k < g->nodes[i].nin; k++)
                live[g->nodes[i].in[k]] = 1;
    }
    int rc = pass_replace(gp, live, repl, e);
    free(live);
    free(repl);
    return rc;
}
