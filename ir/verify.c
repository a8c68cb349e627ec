/* verify.c: the IR verifier. It re-derives everything the builder checks, because
 * graphs also come from the parser and from passes. */
#include "ir.h"

#include <string.h>

int ir_verify(const ir_graph *g, bc_err *e)
{
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if ((unsigned)n->op >= IR_OP_COUNT)
            return bc_errf(e, "%%%d: unknown op %d", i, (int)n->op);
        const ir_op_info *info = &ir_ops[n->op];
        if (n->nin < info->min_in || n->nin > info->max_in)
            return bc_errf(e, "%%%d (%s): takes %d to %d operands, has %d", i, info->name,
                           info->min_in, info->max_in, n->nin);
        for (int k = 0; k < n->nin; k++)
            if (n->in[k] < 0 || n->in[k] >= i)
                return bc_errf(e, "%%%d (%s): operand %d (%%%d) is not defined before use",
                               i, info->name, k, n->in[k]);
        if (!!(info->attrs & IR_A_NAME) != !!n->name)
            return bc_errf(e, "%%%d (%s): %s", i, info->name,
                           n->name ? "takes no name" : "needs a name");
        if (n->name && info->role == IR_ROLE_LEAF) /* leaves are known by name */
            for (int j = 0; j < i; j++)
                if (g->nodes[j].op == n->op && g->nodes[j].name &&
                    !strcmp(g->nodes[j].name, n->name))
                    return bc_errf(e, "%%%d (%s): name \"%s\" already used by %%%d", i,
                                   info->name, n->name, j);
        if (n->op == IR_OP_RESULT) { /* one node per further result, a few at most */
            int count = 1;
            for (int j = n->in[0] + 1; j < i; j++) {
                const ir_node *m = &g->nodes[j];
                if (m->op != IR_OP_RESULT || m->in[0] != n->in[0])
                    continue;
                if (m->a.index == n->a.index)
                    return bc_errf(e,
                                   "%%%d (result): %%%d already reads statement %%%lld of "
                                   "%%%d",
                                   i, j, (long long)n->a.index, n->in[0]);
                if (++count > IR_MAX_RESULTS)
                    return bc_errf(e,
                                   "%%%d (result): %%%d has more than %d further results",
                                   i, n->in[0], IR_MAX_RESULTS);
            }
        }
        /* panels are a GEMM operand, nothing else (a fused node's body: its matmul's) */
        for (int k = 0; k < n->nin; k++)
            if (g->nodes[n->in[k]].op == IR_OP_PACK_B && n->op != IR_OP_FUSED &&
                (n->op != IR_OP_MATMUL || k != 2))
                return bc_errf(e,
                               "%%%d (%s): operand %d reads pack_b %%%d, which only a "
                               "matmul's operand 2 may",
                               i, info->name, k, n->in[k]);
        /* compiled code reads b from the packed operand: it must be b's own panels (in a
         * region's body the operand is a region input, whose producer is outside) */
        if (n->op == IR_OP_MATMUL && n->nin == 3 && g->nodes[n->in[2]].op != IR_OP_INPUT) {
            const ir_node *p = &g->nodes[n->in[2]];
            if (p->op != IR_OP_PACK_B || p->in[0] != n->in[1] || p->a.tb != n->a.tb)
                return bc_errf(
                    e,
                    "%%%d (matmul): operand 2 must be pack_b of operand 1 (%%%d) "
                    "with tb=%d",
                    i, n->in[1], n->a.tb);
        }
        ir_type t;
        bc_err sub;
        if (ir_infer_type(g, n, &t, &sub))
            return bc_errf(e, "%%%d (%s): %s", i, info->name, sub.msg);
        if (!ir_type_eq(&t, &n->type)) {
            char s1[160], s2[160];
            return bc_errf(e, "%%%d (%s): type is %s, but the shape rule gives %s", i,
                           info->name, ir_type_str(&n->type, s1, sizeof s1),
                           ir_type_str(&t, s2, sizeof s2));
        }
    }
    for (int k = 0; k < g->nout; k++) {
        const ir_output *o = &g->outs[k];
        if (o->value < 0 || o->value >= g->n)
            return bc_errf(e, "output \"%s\": %%%d is not defined", o->name, o->value);
        for (int j = 0; j < k; j++)
            if (!strcmp(g->outs[j].name, o->name))
                return bc_errf(e, "output \"%s\" is defined twice", o->name);
    }
    return 0;
}
