/* fuse.c: the fusion pass. It groups nodes into regions that the code generator emits
 * as one kernel and the plan runs as one step: each region becomes a fused node whose
 * body lists the ops (ir.h). Which nodes may join a region is decided by the op table's
 * fusion class (after TVM's TOpPattern), rule by rule; the code generator then lowers
 * every region a rule makes.
 *
 * epilogue: a matmul (class out_elemwise) takes the chain of elementwise and broadcast
 *   ops (classes elemwise, broadcast) that consume its result — bias, GELU (erf and
 *   tanh), tanh, scale, residual add, dropout, and in backward graphs gelu_grad and
 *   tanh_grad — as long as each link's value has no other use (nor is an output), so
 *   nothing but the chain's end is ever written. Each link keeps the chain's shape;
 *   its other operands are tensors of that shape, suffixes of it (a bias) or scalars
 *   (a dropout seed).
 *
 * attention: one head's attention as one kernel, from the [B, S, H] projections to the
 *   [B, S, H] context: the reshape and transpose of Q, K and V into heads, QK^T, the
 *   scaled and masked softmax, the product with V and the transpose and reshape back.
 *   Neither the head-major copies of Q, K, V and the context nor the [B, heads, S, S]
 *   scores and probabilities are ever written. It applies where the probabilities have
 *   no other reader: inference. A training graph's backward reads them (softmax_grad,
 *   dV), so there they are stored as before (not recomputed; see README).
 *
 * layout: a batched matmul [B, nh, S, *] takes the head views of its operands
 *   (reshape [B, S, H] -> [B, S, nh, D], transpose [0, 2, 1, 3]) and the merge of its
 *   result back to [B, S, H] (transpose, then reshapes), which the kernel turns into
 *   strides: no head-major copy is written. Without a merge, the epilogue rule may
 *   still extend the region. A view may have several readers (training's Q, K, V
 *   heads do): each region copies it, and dce drops the original once none is left.
 *
 * layernorm: a layernorm takes the elementwise and broadcast ops that produce its input
 *   (a residual add, the embeddings' sum) when only the region reads their values: the
 *   kernel computes them row by row into the output row and normalizes it in place, so
 *   the sum is never written. The rule runs after epilogue, which takes a residual add
 *   into the matmul before it (the same traffic: one write of the sum either way), so
 *   with every rule on it fuses what no matmul took: the embeddings' adds in inference.
 *   In training the sum is kept for backward (layernorm_dx reads it), so nothing joins.
 *
 * backward: a layernorm's gradients in one kernel: from x, gamma and dy, dx =
 *   layernorm_dx, gamma's gradient layernorm_dgamma, beta's reduce_sum(dy) and the
 *   gradient of the bias added before the layernorm, reduce_sum(dx), where the graph
 *   has them. x and dy are read once for all four, dx is summed as it is written. And a
 *   weight gradient dW = matmul(dy, x) {ta=1} (dy [B S, M], or a reshape of [B, S, M])
 *   with its bias gradient reduce_sum(dy) [M]: the GEMM packs dy as its A operand, and
 *   sums dy's columns as it packs them (codegen/matmul.c), so dy is read once for both.
 *   The sum is taken where dy is read, not where it is written: the matmul that
 *   produces dy has its columns computed in tiles by different threads, so summing
 *   there would need per-tile partial sums and a second pass to keep the order fixed,
 *   while the weight gradient's packing reads each column in row order in one unit.
 *   These are the rule's regions with several results: the region's value is its last
 *   member's, the others are read through result nodes (ir.h), and every reader
 *   outside must come after the last member. gelu_grad and dropout masks join matmuls
 *   by the epilogue rule.
 *
 * pack (passes/pack.c): in an inference graph a weight is read by its matmuls through
 *   pack_b, the GEMM's panel layout, which the executor computes once per set of weights
 *   instead of on every call. It makes no region; pass_fuse applies it first.
 *
 * Epilogue, layout, layernorm and backward regions compute exactly what their ops
 * computed one by one (the same f32 operations in the same order), so fused and unfused
 * code give the same bits; an attention region computes the same formulas in another
 * order (within rounding of the reference; the same bits for any thread count). */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

static const struct {
    const char *name;
    unsigned bit;
} rules[] = {
    {"epilogue", PASS_FUSE_EPILOGUE}, {"attention", PASS_FUSE_ATTENTION},
    {"layout", PASS_FUSE_LAYOUT},     {"layernorm", PASS_FUSE_LAYERNORM},
    {"backward", PASS_FUSE_BACKWARD}, {"pack", PASS_FUSE_PACK},
};
#define NRULES (int)(sizeof rules / sizeof rules[0])

int pass_fuse_parse(const char *spec, unsigned *out, bc_err *e)
{
    *out = 0;
    if (!spec || !strcmp(spec, "all")) {
        *out = PASS_FUSE_ALL;
        return 0;
    }
    if (!strcmp(spec, "none"))
        return 0;
    const char *s = spec;
    while (*s) {
        size_t len = strcspn(s, ",+");
        int k = 0;
        while (k < NRULES && !(strlen(rules[k].name) == len && !strncmp(rules[k].name, s, len)))
            k++;
        if (k == NRULES) {
            char known[256] = "";
            for (int j = 0; j < NRULES; j++)
                snprintf(known + strlen(known), sizeof known - strlen(known), ", %s",
                         rules[j].name);
            return bc_errf(e, "unknown fusion rule '%.*s' (all, none%s)", (int)len, s, known);
        }
        *out |= rules[k].bit;
        s += len;
        if (*s)
            s++;
    }
    return 0;
}

int pass_default_pipeline(const char *fuse, char *buf, size_t len, bc_err *e)
{
    unsigned rules_on;
    if (pass_fuse_parse(fuse, &rules_on, e))
        return -1;
    if (!rules_on)
        snprintf(buf, len, "%s", PASS_BASE_PIPELINE);
    else if (rules_on == PASS_FUSE_ALL)
        snprintf(buf, len, "%s,fuse", PASS_BASE_PIPELINE);
    else {
        int n = snprintf(buf, len, "%s,fuse=", PASS_BASE_PIPELINE);
        for (int k = 0; k < NRULES; k++)
            if (rules_on & rules[k].bit && n >= 0 && (size_t)n < len)
                n += snprintf(buf + n, len - (size_t)n, "%s%s",
                              buf[n - 1] == '=' ? "" : "+", rules[k].name);
    }
    return 0;
}

/* ---- building regions ---- */

typedef struct fuser {
    const ir_graph *g;
    int *uses;   /* (n) readers of each value, outputs included */
    int *region; /* (n) the region a node joined (its last member), or -1 */
    int *alias;  /* (n) a merge's transpose -> its region's result, or -1 */
} fuser;

static int is_elementwise(ir_opcode op)
{
    ir_fuse_class fc = ir_ops[op].fuse;
    return fc == IR_FUSE_ELEMWISE || fc == IR_FUSE_BROADCAST;
}

/* Whether u may extend a chain whose value is v, of type t: u reads v, keeps t, and
 * reads nothing else but tensors of type t, suffixes of t and scalars. */
static int extends_chain(const fuser *f, const ir_node *u, int v, const ir_type *t)
{
    if (!is_elementwise(u->op) || !ir_type_eq(&u->type, t))
        return 0;
    for (int k = 0; k < u->nin; k++) {
        const ir_type *x = &f->g->nodes[u->in[k]].type;
        if (u->in[k] == v || ir_type_eq(x, t) || x->rank == 0)
            continue;
        int suffix = x->rank <= t->rank && x->dtype == IR_F32;
        for (int d = 0; suffix && d < x->rank; d++)
            suffix = ir_dim_eq(x->dim[d], t->dim[t->rank - x->rank + d]);
        if (!suffix)
            return 0;
    }
    return 1;
}

/* The node that reads v, when exactly one node reads it once (and it is no output). */
static int single_reader(const fuser *f, int v)
{
    if (f->uses[v] != 1)
        return -1;
    for (int u = v + 1; u < f->g->n; u++)
        for (int k = 0; k < f->g->nodes[u].nin; k++)
            if (f->g->nodes[u].in[k] == v)
                return u;
    return -1;
}

/* Operands of members[0..nm) from outside, in order of first use; -1 if too many. */
static int region_operands(const fuser *f, const int *members, int nm, int *ops)
{
    int nop = 0;
    for (int j = 0; j < nm; j++) {
        const ir_node *m = &f->g->nodes[members[j]];
        for (int k = 0; k < m->nin; k++) {
            int x = m->in[k], inside = 0, seen = 0;
            for (int i = 0; i < j; i++)
                inside |= members[i] == x;
            for (int i = 0; i < nop; i++)
                seen |= ops[i] == x;
            if (inside || seen)
                continue;
            if (nop == IR_MAX_INPUTS)
                return -1;
            ops[nop++] = x;
        }
    }
    return nop;
}

#define MAX_MEMBERS 16

/* The epilogue rule from matmul node i, whose region already has members[0..nm) (i
 * last): the chain that joins it appended; the new count. */
static int epilogue_members(const fuser *f, int i, int *members, int nm)
{
    const ir_type *t = &f->g->nodes[i].type;
    int ops[IR_MAX_INPUTS];
    for (int v = i, u; nm < MAX_MEMBERS && (u = single_reader(f, v)) >= 0; v = u) {
        if (f->region[u] >= 0 || !extends_chain(f, &f->g->nodes[u], v, t))
            break;
        members[nm] = u;
        if (region_operands(f, members, nm + 1, ops) < 0)
            break;
        nm++;
    }
    return nm;
}

/* v is a head split (ir_head_split) with neither node in a region: the two nodes into
 * m, 1. Readers other than the one asking do not matter: such views are copied into
 * every region that reads them (the layout rule), and dce drops them when none is
 * left. */
static int head_view(const fuser *f, int v, int *m)
{
    int r, x;
    if (!ir_head_split(f->g, v, &r, &x) || f->region[v] >= 0 || f->region[r] >= 0)
        return 0;
    m[0] = r;
    m[1] = v;
    return 1;
}

/* The matmul i's result merged back from heads: its single reader a transpose [B, nh,
 * S, D] -> [B, S, nh, D] read only by reshapes (to [B, S, nh D], or [B S, nh D] for a
 * weight gradient): the transpose and its first reshape into m, 1. The other reshapes
 * read the region's result instead (pass_fuse). */
static int head_merge(const fuser *f, int i, int *m)
{
    const ir_graph *g = f->g;
    int t = single_reader(f, i), r = -1, readers = 0;
    if (t < 0 || !ir_is_head_transpose(&g->nodes[t]) || f->region[t] >= 0)
        return 0;
    for (int u = t + 1; u < g->n; u++)
        for (int k = 0; k < g->nodes[u].nin; k++) {
            if (g->nodes[u].in[k] != t)
                continue;
            if (g->nodes[u].op != IR_OP_RESHAPE || f->region[u] >= 0)
                return 0;
            r = r < 0 ? u : r;
            readers++;
        }
    if (r < 0 || readers != f->uses[t]) /* an output, or read by something else */
        return 0;
    m[0] = t;
    m[1] = r;
    return 1;
}

/* The layout rule from matmul node i (batched, rank 4): the head views of its operands
 * before it in members, i, then the merge of its result after it. *nviews: how many
 * members are shared views. The count, or 0 when no view joins. */
static int layout_members(const fuser *f, int i, int *members, int *nviews, int *merged)
{
    const ir_node *m = &f->g->nodes[i];
    int nm = 0;
    *nviews = *merged = 0;
    if (m->op != IR_OP_MATMUL || m->type.rank != 4)
        return 0;
    for (int k = 0; k < 2; k++)
        if ((k == 0 || m->in[1] != m->in[0]) && head_view(f, m->in[k], members + nm))
            nm += 2;
    *nviews = nm;
    members[nm++] = i;
    if (head_merge(f, i, members + nm)) {
        nm += 2;
        *merged = 1;
    }
    int ops[IR_MAX_INPUTS];
    if (region_operands(f, members, nm, ops) < 0)
        return 0;
    return nm > 1 ? nm : 0;
}

/* v = transpose(reshape(x)) with perm [0, 2, 1, 3], reshape [B, S, H] -> [B, S, nh, D],
 * both single-reader: x through *x, the two nodes into m. */
static int split_heads_of(const fuser *f, int v, int *x, int *m)
{
    if (f->uses[v] != 1 || !head_view(f, v, m) || f->uses[m[0]] != 1)
        return 0;
    *x = f->g->nodes[m[0]].in[0];
    return 1;
}

static int by_index(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* The attention rule from attn_softmax node p: its members in order, or 0. */
static int attention_members(const fuser *f, int p, int *members)
{
    const ir_graph *g = f->g;
    const ir_node *sm = &g->nodes[p];
    int s = sm->in[0], c = single_reader(f, p), x[3], nm = 0;
    if (c < 0 || f->region[s] >= 0 || f->uses[s] != 1)
        return 0;
    const ir_node *qk = &g->nodes[s], *pv = &g->nodes[c];
    if (qk->op != IR_OP_MATMUL || qk->a.ta || !qk->a.tb || pv->op != IR_OP_MATMUL ||
        pv->a.ta || pv->a.tb || pv->in[0] != p || pv->in[1] == p)
        return 0;
    if (!split_heads_of(f, qk->in[0], &x[0], members) ||
        !split_heads_of(f, qk->in[1], &x[1], members + 2) ||
        !split_heads_of(f, pv->in[1], &x[2], members + 4))
        return 0;
    nm = 6;
    members[nm++] = s;
    members[nm++] = p;
    members[nm++] = c;
    /* the context back to [B, S, H] */
    int t = single_reader(f, c), r = t >= 0 ? single_reader(f, t) : -1;
    if (r < 0 || !ir_is_head_transpose(&g->nodes[t]) || g->nodes[r].op != IR_OP_RESHAPE ||
        !ir_type_eq(&g->nodes[r].type, &g->nodes[x[0]].type) || f->region[t] >= 0 ||
        f->region[r] >= 0)
        return 0;
    members[nm++] = t;
    members[nm++] = r;
    /* q, k and v of one shape; the mask [B, S] of the keys */
    if (!ir_type_eq(&g->nodes[x[1]].type, &g->nodes[x[0]].type) ||
        !ir_type_eq(&g->nodes[x[2]].type, &g->nodes[x[0]].type))
        return 0;
    qsort(members, (size_t)nm, sizeof *members, by_index);
    return nm;
}

/* Whether u may join the prologue of a layernorm of type t: an elementwise op (no
 * dropout) of type t, in no region, read only inside the region, whose operands are
 * tensors of type t, suffixes of it or scalars. */
static int prologue_op(const fuser *f, int u, const ir_type *t)
{
    const ir_node *n = &f->g->nodes[u];
    return f->region[u] < 0 && f->uses[u] == 1 && n->op != IR_OP_DROPOUT &&
           extends_chain(f, n, -1, t);
}

/* The layernorm rule from layernorm node i: the ops that produce its input, found from
 * it backwards (each read once, by a member), then i; the count, or 0. */
static int layernorm_members(const fuser *f, int i, int *members)
{
    const ir_graph *g = f->g;
    const ir_type *t = &g->nodes[i].type;
    int nm = 0, todo[MAX_MEMBERS], ntodo = 0, ops[IR_MAX_INPUTS];
    if (f->region[i] >= 0 || !prologue_op(f, g->nodes[i].in[0], t))
        return 0;
    todo[ntodo++] = g->nodes[i].in[0];
    while (ntodo && nm < MAX_MEMBERS - 1) {
        int u = todo[--ntodo];
        members[nm++] = u;
        for (int k = 0; k < g->nodes[u].nin; k++) {
            int x = g->nodes[u].in[k], seen = 0;
            for (int j = 0; j < nm; j++)
                seen |= members[j] == x;
            for (int j = 0; j < ntodo; j++)
                seen |= todo[j] == x;
            if (!seen && ntodo < MAX_MEMBERS && prologue_op(f, x, t))
                todo[ntodo++] = x;
        }
    }
    if (ntodo) /* more than a region holds: the nearest ones are taken, the rest stay */
        return 0;
    members[nm++] = i;
    qsort(members, (size_t)nm, sizeof *members, by_index);
    /* operands: the layernorm's gamma and beta, the ops' own; a member whose value leaves
     * the region other than through the layernorm cannot be (uses == 1 says so) */
    return region_operands(f, members, nm, ops) < 0 ? 0 : nm;
}

/* Whether every node outside members[0..nm) (sorted) that reads a member comes after
 * the last one: a region with several results writes them all in its one step. */
static int read_after_last(const fuser *f, const int *members, int nm)
{
    const ir_graph *g = f->g;
    for (int u = members[0] + 1; u < members[nm - 1]; u++) {
        int inside = 0;
        for (int j = 0; j < nm; j++)
            inside |= members[j] == u;
        for (int k = 0; !inside && k < g->nodes[u].nin; k++)
            for (int j = 0; j < nm; j++)
                if (g->nodes[u].in[k] == members[j])
                    return 0;
    }
    return 1;
}

/* The backward rule from layernorm_dgamma node i (x, dy): the layernorm_dx of the same
 * x, dy and eps, and the reduce_sums to the gradient's shape [H] of dy (beta's gradient)
 * and of dx (the gradient of the bias added before the layernorm), where they exist;
 * the count, or 0. Several members' values leave the region (the kernel writes each:
 * result nodes), so every reader outside it must come after its last member. */
static int backward_members(const fuser *f, int i, int *members)
{
    const ir_graph *g = f->g;
    const ir_node *gd = &g->nodes[i];
    int x = gd->in[0], dy = gd->in[1], dx = -1, nm = 0;
    if (f->region[i] >= 0)
        return 0;
    for (int u = 0; u < g->n && dx < 0; u++) {
        const ir_node *m = &g->nodes[u];
        if (m->op == IR_OP_LAYERNORM_DX && m->in[0] == x && m->in[2] == dy &&
            m->a.eps == gd->a.eps && f->region[u] < 0)
            dx = u;
    }
    if (dx < 0)
        return 0;
    members[nm++] = i;
    members[nm++] = dx;
    for (int want = 0; want < 2; want++) /* sum(dy), then sum(dx) */
        for (int u = 0; u < g->n; u++) {
            const ir_node *m = &g->nodes[u];
            if (m->op == IR_OP_REDUCE_SUM && m->in[0] == (want ? dx : dy) &&
                f->region[u] < 0 && ir_type_eq(&m->type, &gd->type)) {
                members[nm++] = u;
                break;
            }
        }
    qsort(members, (size_t)nm, sizeof *members, by_index);
    return read_after_last(f, members, nm) ? nm : 0;
}

/* The backward rule from weight gradient i, dW = matmul(dy, x) {ta=1} with dy [K, M]
 * and members[0..nm) its region so far (i, and its epilogue): the bias gradient
 * reduce_sum to [M] of dy, or of what dy is a reshape of (a merged head view's region,
 * through alias), appended; the new count, or nm when there is none or it cannot join.
 * The reshape stays a view outside (the same storage): the kernel sums dy's columns as
 * it packs them (codegen/matmul.c), so dy is read once for both. */
static int bias_grad_members(const fuser *f, int i, int *members, int nm)
{
    const ir_graph *g = f->g;
    const ir_node *m = &g->nodes[i];
    int dy = m->in[0], ops[IR_MAX_INPUTS];
    if (m->op != IR_OP_MATMUL || !m->a.ta || m->nin != 2 || m->type.rank != 2 ||
        g->nodes[dy].type.rank != 2 || nm == MAX_MEMBERS)
        return nm;
    if (g->nodes[dy].op == IR_OP_RESHAPE) {
        int x = g->nodes[dy].in[0];
        dy = f->alias[x] >= 0 ? f->alias[x] : x;
    }
    const ir_type *t = &g->nodes[dy].type;
    if (!ir_dim_eq(t->dim[t->rank - 1], m->type.dim[0]))
        return nm; /* not [..., M]: the reshape moved the columns */
    for (int u = 0; u < g->n; u++) {
        const ir_node *s = &g->nodes[u];
        if (s->op != IR_OP_REDUCE_SUM || (s->in[0] != dy && s->in[0] != m->in[0]) ||
            f->region[u] >= 0 || s->type.rank != 1 ||
            !ir_dim_eq(s->type.dim[0], m->type.dim[0]))
            continue;
        int with[MAX_MEMBERS];
        memcpy(with, members, sizeof(int) * (size_t)nm);
        with[nm] = u;
        qsort(with, (size_t)nm + 1, sizeof *with, by_index);
        if (region_operands(f, with, nm + 1, ops) < 0 || !read_after_last(f, with, nm + 1))
            return nm;
        memcpy(members, with, sizeof(int) * (size_t)(nm + 1));
        return nm + 1;
    }
    return nm;
}

/* Records a region: its members (in order) under its last one, and every member's
 * region but the first nshared (views that other regions may copy too). */
static int add_region(fuser *f, int **mem, int *nmem, int *members, int nm, int nshared,
                      bc_err *e)
{
    for (int j = 0; j < nshared; j++)
        f->region[members[j]] = -2; /* mark, so as to tell them after sorting */
    qsort(members, (size_t)nm, sizeof *members, by_index);
    int last = members[nm - 1];
    if (!(mem[last] = malloc(sizeof(int) * (size_t)nm)))
        return bc_errf(e, "out of memory");
    memcpy(mem[last], members, sizeof(int) * (size_t)nm);
    nmem[last] = nm;
    for (int j = 0; j < nm; j++)
        f->region[members[j]] = f->region[members[j]] == -2 ? -1 : last;
    return 0;
}

/* A rule that grows a region from each node of op anchor: members(f, i, out) gives the
 * region's members (in any order) or 0. */
typedef int (*members_fn)(const fuser *f, int i, int *members);

static int anchored_rule(fuser *f, int **mem, int *nmem, ir_opcode anchor, members_fn members,
                         bc_err *e)
{
    for (int i = 0; i < f->g->n; i++) {
        if (f->g->nodes[i].op != anchor)
            continue;
        int m[MAX_MEMBERS], nm = members(f, i, m);
        if (nm && add_region(f, mem, nmem, m, nm, 0, e))
            return -1;
    }
    return 0;
}

int pass_fuse(ir_graph **gp, unsigned rules_on, bc_err *e)
{
    /* pack first: the regions then take the packed operand as an input */
    if ((rules_on & PASS_FUSE_PACK) && pass_pack_weights(gp, e))
        return -1;
    const ir_graph *g = *gp;
    size_t n = (size_t)(g->n ? g->n : 1);
    fuser f = {g, calloc(n, sizeof(int)), malloc(n * sizeof(int)), malloc(n * sizeof(int))};
    int *map = malloc(n * sizeof(int));
    int **mem = calloc(n, sizeof *mem); /* members of the region ending at a node */
    int *nmem = calloc(n, sizeof(int));
    int rc = 0;
    if (!f.uses || !f.region || !map || !mem || !nmem || !f.alias) {
        rc = bc_errf(e, "out of memory");
        goto done;
    }
    for (int i = 0; i < g->n; i++) {
        f.region[i] = f.alias[i] = -1;
        for (int k = 0; k < g->nodes[i].nin; k++)
            f.uses[g->nodes[i].in[k]]++;
    }
    for (int k = 0; k < g->nout; k++)
        f.uses[g->outs[k].value]++;

    /* attention first: its projections' bias adds then end their own epilogues */
    if ((rules_on & PASS_FUSE_ATTENTION) &&
        (rc = anchored_rule(&f, mem, nmem, IR_OP_ATTN_SOFTMAX, attention_members, e)))
        goto done;
    /* a layernorm's gradients and the bias gradient beside them (backward), before a
     * weight gradient can take that bias gradient: summed as dx is written, it costs
     * nothing more */
    if ((rules_on & PASS_FUSE_BACKWARD) &&
        (rc = anchored_rule(&f, mem, nmem, IR_OP_LAYERNORM_DGAMMA, backward_members, e)))
        goto done;
    /* a matmul with its operands' head views and its result's merge (layout), or else
     * its elementwise consumers (epilogue); a weight gradient with its bias gradient
     * (backward) */
    for (int i = 0;
         i < g->n &&
         (rules_on & (PASS_FUSE_EPILOGUE | PASS_FUSE_LAYOUT | PASS_FUSE_BACKWARD));
         i++) {
        if (ir_ops[g->nodes[i].op].fuse != IR_FUSE_OUT_ELEMWISE || f.region[i] >= 0)
            continue;
        int members[MAX_MEMBERS], nv = 0, merged = 0, nm = 0;
        if (rules_on & PASS_FUSE_LAYOUT)
            nm = layout_members(&f, i, members, &nv, &merged);
        if (!nm)
            members[nm++] = i, nv = 0;
        if ((rules_on & PASS_FUSE_EPILOGUE) && !merged)
            nm = epilogue_members(&f, i, members, nm);
        if (merged) /* the merge's transpose and first reshape end the members */
            f.alias[members[nm - 2]] = members[nm - 1];
        else if ((rules_on & PASS_FUSE_BACKWARD) && !nv) /* a weight gradient's bias's */
            nm = bias_grad_members(&f, i, members, nm);
        if (nm >= 2 && (rc = add_region(&f, mem, nmem, members, nm, nv, e)))
            goto done;
    }

    /* the ops no matmul took before a layernorm (layernorm) */
    if ((rules_on & PASS_FUSE_LAYERNORM) &&
        (rc = anchored_rule(&f, mem, nmem, IR_OP_LAYERNORM, layernorm_members, e)))
        goto done;

    ir_graph *ng = ir_graph_new(g->name);
    if (!ng) {
        rc = bc_errf(e, "out of memory");
        goto done;
    }
    for (int i = 0; i < g->n; i++) {
        const ir_node *nd = &g->nodes[i];
        int in[IR_MAX_INPUTS];
        map[i] = -1;
        if (f.region[i] >= 0 && f.region[i] != i)
            continue; /* an inner member: computed inside its region's kernel */
        if (f.region[i] < 0) {
            /* a further reshape of a merge reads the merge's region */
            for (int k = 0; k < nd->nin; k++)
                in[k] = map[f.alias[nd->in[k]] >= 0 ? f.alias[nd->in[k]] : nd->in[k]];
            map[i] = ir_add(ng, nd->op, in, nd->nin, &nd->a, nd->name, &nd->type);
            continue;
        }
        int ops[IR_MAX_INPUTS], nop = region_operands(&f, mem[i], nmem[i], ops);
        char *body = ir_region_body(g, mem[i], nmem[i], ops, nop);
        if (!body) {
            ir_graph_free(ng);
            rc = bc_errf(e, "out of memory");
            goto done;
        }
        for (int k = 0; k < nop; k++)
            in[k] = map[ops[k]];
        map[i] = ir_add(ng, IR_OP_FUSED, in, nop, NULL, body, &nd->type);
        free(body);
        /* a member read from outside (the backward rule's) is a further result */
        for (int j = 0; j + 1 < nmem[i]; j++) {
            int m = mem[i][j], inner = 0;
            for (int q = j + 1; q < nmem[i]; q++)
                for (int k = 0; k < g->nodes[mem[i][q]].nin; k++)
                    inner += g->nodes[mem[i][q]].in[k] == m;
            if (f.uses[m] == inner || f.region[m] != i) /* or a view others copy too */
                continue;
            ir_attrs a;
            memset(&a, 0, sizeof a);
            a.index = nop + j;
            map[m] = ir_add(ng, IR_OP_RESULT, &map[i], 1, &a, NULL, &g->nodes[m].type);
        }
    }
    rc = pass_install(gp, ng, map, e);
    if (!rc && (rules_on & PASS_FUSE_LAYOUT))
        rc = pass_dce(gp, e); /* the views every reader of which copied them */
done:
    for (size_t i = 0; mem && i < n; i++)
        free(mem[i]);
    free(mem);
    free(nmem);
    free(f.alias);
    free(map);
    free(f.uses);
    free(f.region);
    return rc;
}

static int is_output(const ir_graph *g, int v)
{
    for (int k = 0; k < g->nout; k++)
        if (g->outs[k].value == v)
            return 1;
    return 0;
}

int pass_unfuse(ir_graph **gp, bc_err *e)
{
    const ir_graph *g = *gp;
    int fused = 0;
    for (int i = 0; i < g->n; i++) /* a result reads a fused node */
        fused |= g->nodes[i].op == IR_OP_FUSED || g->nodes[i].op == IR_OP_PACK_B;
    if (!fused)
        return 0;
    int *map = malloc(sizeof *map * (size_t)g->n);
    ir_graph *ng = ir_graph_new(g->name);
    if (!map || !ng) {
        free(map);
        ir_graph_free(ng);
        return bc_errf(e, "out of memory");
    }
    for (int i = 0; i < g->n && !ng->failed; i++) {
        const ir_node *nd = &g->nodes[i];
        int in[IR_MAX_INPUTS];
        if (nd->op == IR_OP_RESULT)
            continue; /* mapped with its fused node */
        if (nd->op == IR_OP_PACK_B && !is_output(g, i)) {
            map[i] = -1; /* only matmuls' third operands read it (verifier) */
            continue;
        }
        if (nd->op != IR_OP_FUSED) {
            for (int k = 0; k < nd->nin; k++)
                in[k] = map[nd->in[k]];
            int nin = nd->op == IR_OP_MATMUL ? 2 : nd->nin; /* the pack rule undone */
            map[i] = ir_add(ng, nd->op, in, nin, &nd->a, nd->name, &nd->type);
            continue;
        }
        bc_err re;
        ir_graph *r = ir_region_graph(g, nd, &re);
        if (!r) {
            ir_graph_free(ng);
            free(map);
            return bc_errf(e, "%%%d (fused): %s", i, re.msg);
        }
        int *rmap = malloc(sizeof *rmap * (size_t)r->n);
        if (!rmap) {
            ir_graph_free(r);
            ir_graph_free(ng);
            free(map);
            return bc_errf(e, "out of memory");
        }
        for (int j = 0; j < r->n; j++) {
            const ir_node *m = &r->nodes[j];
            if (j < nd->nin) {
                rmap[j] = map[nd->in[j]];
                continue;
            }
            for (int k = 0; k < m->nin; k++)
                in[k] = rmap[m->in[k]];
            int nin = m->op == IR_OP_MATMUL ? 2 : m->nin;
            rmap[j] = ir_add(ng, m->op, in, nin, &m->a, NULL, &m->type);
        }
        map[i] = rmap[r->n - 1];
        int res[IR_MAX_RESULTS], nres = ir_region_results(g, i, res);
        for (int k = 0; k < nres; k++)
            map[res[k]] = rmap[g->nodes[res[k]].a.index];
        free(rmap);
        ir_graph_free(r);
    }
    int rc = pass_install(gp, ng, map, e);
    free(map);
    return rc;
}
