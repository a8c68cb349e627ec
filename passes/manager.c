/* manager.c: the pass registry and pipeline runner. */
#include "passes.h"

#include <stdlib.h>
#include <string.h>

/* Registry entries: the passes without an argument, and fuse. */
#define NO_ARG(fn)                                                                         \
    static int run_##fn(ir_graph **g, const char *arg, bc_err *e)                          \
    {                                                                                      \
        if (arg)                                                                           \
            return bc_errf(e, "takes no argument");                                        \
        return pass_##fn(g, e);                                                            \
    }
NO_ARG(shape)
NO_ARG(canonicalize)
NO_ARG(cse)
NO_ARG(dce)
NO_ARG(unfuse)
#undef NO_ARG

static int run_fuse(ir_graph **g, const char *arg, bc_err *e)
{
    unsigned rules;
    return pass_fuse_parse(arg, &rules, e) || pass_fuse(g, rules, e) ? -1 : 0;
}

const pass_info pass_registry[] = {
    {"shape", "re-infer every type from the op's shape rule and check it", run_shape},
    {"canonicalize", "fold transpose/reshape chains, identity ops, unit scales",
     run_canonicalize},
    {"cse", "merge nodes with the same op, operands and attributes", run_cse},
    {"dce", "remove nodes that no output depends on", run_dce},
    {"fuse", "group nodes into regions, each one kernel (fuse=RULE+RULE: only those)",
     run_fuse},
    {"unfuse", "expand fused regions back into their ops", run_unfuse},
    {NULL, NULL, NULL},
};

const pass_info *pass_find(const char *name)
{
    for (const pass_info *p = pass_registry; p->name; p++)
        if (!strcmp(p->name, name))
            return p;
    return NULL;
}

int pass_run_pipeline(ir_graph **g, const char *pipeline, FILE *print_after, bc_err *e)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", pipeline);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char *arg = strchr(tok, '=');
        if (arg)
            *arg++ = 0;
        const pass_info *p = pass_find(tok);
        if (!p)
            return bc_errf(e, "unknown pass '%s'", tok);
        if (p->run(g, arg, e)) {
            bc_err_prefix(e, "pass %s", p->name);
            return -1;
        }
        if (ir_verify(*g, e)) {
            bc_err_prefix(e, "after pass %s", p->name);
            return -1;
        }
        if (print_after) {
            fprintf(print_after, "# after %s\n", p->name);
            ir_print(*g, print_after);
        }
    }
    return 0;
}

int pass_keep_outputs(ir_graph *g, const char *const *names, int n, bc_err *e)
{
    for (int i = 0; i < n; i++)
        if (ir_find_output(g, names[i]) < 0)
            return bc_errf(e, "the graph has no output '%s'", names[i]);
    int w = 0;
    for (int k = 0; k < g->nout; k++) {
        int keep = 0;
        for (int i = 0; i < n; i++)
            keep |= !strcmp(g->outs[k].name, names[i]);
        if (keep)
            g->outs[w++] = g->outs[k];
        else
            free(g->outs[k].name);
    }
    g->nout = w;
    return 0;
}
