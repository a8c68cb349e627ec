/* ir.h: bertcc's tensor IR.
 *
 * A graph is a list of nodes in topological order; each node defines exactly one SSA
 * value, named by its index (%N in the text form). Shapes are static in rank, and each
 * dimension is a monomial c * B^eb * S^es over the two symbolic sizes B (batch) and
 * S (sequence length), so one graph serves every B and every S <= max-position.
 *
 * Ops are declared once in IR_OPS below; every per-op table in every layer (the shape
 * rule in ir/ops.c, the reference kernel in runtime/, the VJP rule in passes/) is
 * indexed by ir_opcode and is checked for completeness by the tests. */
#ifndef BERTCC_IR_H
#define BERTCC_IR_H

#include <stdint.h>
#include <stdio.h>

#include "../support/err.h"

#define IR_MAX_RANK 6
#define IR_MAX_INPUTS 8
/* Nodes of one graph: bert-large's training graph has a few thousand; a description
 * that would make more (layers="999999999") is refused before it is built
 * (fe_model_check), and ir_add refuses the node past it either way. */
#define IR_MAX_NODES (1 << 20)
/* pack_b's panel width: a multiple of every vector width the code generator uses (4, 8,
 * 16 lanes), so a GEMM micro-kernel of any register tile reads whole vectors of it */
#define IR_PACK_W 16

typedef enum { IR_F32, IR_I64 } ir_dtype;

/* One dimension: c * B^eb * S^es. A constant has eb = es = 0. */
typedef struct ir_dim {
    int64_t c;
    uint8_t eb, es;
} ir_dim;

typedef struct ir_type {
    ir_dtype dtype;
    int rank; /* 0 = scalar */
    ir_dim dim[IR_MAX_RANK];
} ir_type;

/* Attribute bits. An op's row in IR_OPS says which it carries. Each bit that stands for
 * a value in ir_attrs has a row in ir_attr_table (below), from which the printer, the
 * parser, CSE and kernel signatures handle it; IR_A_NAME and IR_A_TYPE (IR_A_FLAGS) are
 * not values and have none. */
enum {
    IR_A_TA = 1 << 0,    /* matmul: a is stored transposed */
    IR_A_TB = 1 << 1,    /* matmul: b is stored transposed */
    IR_A_AXIS = 1 << 2,  /* select: axis */
    IR_A_INDEX = 1 << 3, /* select: index along axis */
    IR_A_PERM = 1 << 4,  /* transpose: output dim i is input dim perm[i] */
    IR_A_EPS = 1 << 5,   /* layernorm epsilon */
    IR_A_SCALE = 1 << 6, /* attn_softmax, scale: the constant factor */
    IR_A_P = 1 << 7,     /* dropout probability (its stream is `index`) */
    IR_A_NAME = 1 << 8,  /* param/input/...: a quoted name after the op */
    IR_A_TYPE = 1 << 9,  /* the result type is given, not derived (checked by the rule) */
};
#define IR_A_FLAGS (IR_A_NAME | IR_A_TYPE)

typedef struct ir_attrs {
    int ta, tb;
    int axis;
    int64_t index;
    int perm[IR_MAX_RANK];
    double eps;
    double scale;
    double p;
} ir_attrs;

/* One row per op: X(ENUM, "text name", min inputs, max inputs, attribute mask, role,
 * kind of code, fusion class, shape rule). The shape rules are shape_<rule> in
 * ir/ops.c. The role says which per-layer tables need a row (ir_op_role below); the
 * kind says whether a kernel computes it (ir_op_code). */
#define IR_OPS(X)                                                                          \
    X(PARAM, "param", 0, 0, IR_A_NAME | IR_A_TYPE, LEAF, NONE, OPAQUE, param)              \
    X(INPUT, "input", 0, 0, IR_A_NAME | IR_A_TYPE, LEAF, NONE, OPAQUE, given)              \
    /* table[N,H], ids[...] -> [..., H] */                                                 \
    X(GATHER, "gather", 2, 2, 0, FWD, KERNEL, INJECTIVE, gather)                           \
    /* x[P,...] -> x[0:n], n = the result's dim 0 */                                       \
    X(PREFIX_ROWS, "prefix_rows", 1, 1, IR_A_TYPE, FWD, KERNEL, INJECTIVE, prefix_rows)    \
    /* suffix broadcast: b's shape is a suffix of a's */                                   \
    X(ADD, "add", 2, 2, 0, FWD, KERNEL, BROADCAST, binary)                                 \
    X(MUL, "mul", 2, 2, 0, FWD, KERNEL, BROADCAST, binary)                                 \
    /* a[*, M, K] (or [*, K, M] if ta) x b[*, K, N] or b[K, N] (or [N, K] if tb); a */     \
    /* third operand, pack_b(b), is b in the GEMM's panel layout, which compiled code */   \
    /* reads instead of b (the value is b's either way) */                                 \
    X(MATMUL, "matmul", 2, 3, IR_A_TA | IR_A_TB, FWD, KERNEL, OUT_ELEMWISE, matmul)        \
    X(TRANSPOSE, "transpose", 1, 1, IR_A_PERM, FWD, KERNEL, INJECTIVE, transpose)          \
    /* to the node's own type */                                                           \
    X(RESHAPE, "reshape", 1, 1, IR_A_TYPE, FWD, VIEW, INJECTIVE, reshape)                  \
    /* erf form */                                                                         \
    X(GELU, "gelu", 1, 1, 0, FWD, KERNEL, ELEMWISE, unary)                                 \
    X(GELU_TANH, "gelu_tanh", 1, 1, 0, FWD, KERNEL, ELEMWISE, unary)                       \
    X(TANH, "tanh", 1, 1, 0, FWD, KERNEL, ELEMWISE, unary)                                 \
    /* x * scale, a constant */                                                            \
    X(SCALE, "scale", 1, 1, IR_A_SCALE, FWD, KERNEL, ELEMWISE, scale)                      \
    /* x[..., H], gamma[H], beta[H] */                                                     \
    X(LAYERNORM, "layernorm", 3, 3, IR_A_EPS, FWD, KERNEL, REDUCE, layernorm)              \
    /* scores[B, ..., T], mask[B, T] -> softmax over T */                                  \
    X(ATTN_SOFTMAX, "attn_softmax", 2, 2, IR_A_SCALE, FWD, KERNEL, REDUCE, attn_softmax)   \
    /* drops the axis, taking one index of it */                                           \
    X(SELECT, "select", 1, 1, IR_A_AXIS | IR_A_INDEX, FWD, KERNEL, INJECTIVE, select)      \
    /* logits[..., C], labels[...] -> mean CE over labels != -100, f32[]; with a 3rd */    \
    /* operand weights[C]: sum(w[y] CE) / sum(w[y]), as PyTorch's weight= */               \
    X(CROSS_ENTROPY, "cross_entropy", 2, 3, 0, FWD, KERNEL, OPAQUE, cross_entropy)         \
    /* x, seed i64[] -> x * keep / (1 - p); keep drawn from (seed, index, element) */      \
    X(DROPOUT, "dropout", 2, 2, IR_A_P | IR_A_INDEX, FWD, KERNEL, ELEMWISE, dropout)       \
    /* ---- ops that autodiff introduces ---- */                                           \
    /* a constant (scale) of the node's own type */                                        \
    X(FILL, "fill", 0, 0, IR_A_SCALE | IR_A_TYPE, GRAD, KERNEL, OPAQUE, fill)              \
    /* sums the leading dims away: x[..., *suffix] -> [*suffix], the node's type */        \
    X(REDUCE_SUM, "reduce_sum", 1, 1, IR_A_TYPE, GRAD, KERNEL, REDUCE, reduce_sum)         \
    /* ids[...], dy[..., H] -> [N, H]: row ids[i] accumulates dy[i] (gather's VJP) */      \
    X(SCATTER_ADD, "scatter_add", 2, 2, IR_A_TYPE, GRAD, KERNEL, OPAQUE, scatter_add)      \
    /* x[n, ...] -> [P, ...] with zero rows after n (prefix_rows' VJP) */                  \
    X(PAD_ROWS, "pad_rows", 1, 1, IR_A_TYPE, GRAD, KERNEL, INJECTIVE, other_rows)          \
    /* x, dy -> dx */                                                                      \
    X(GELU_GRAD, "gelu_grad", 2, 2, 0, GRAD, KERNEL, ELEMWISE, same2)                      \
    X(GELU_TANH_GRAD, "gelu_tanh_grad", 2, 2, 0, GRAD, KERNEL, ELEMWISE, same2)            \
    /* y = tanh(x), dy -> dx */                                                            \
    X(TANH_GRAD, "tanh_grad", 2, 2, 0, GRAD, KERNEL, ELEMWISE, same2)                      \
    /* x, gamma, dy -> dx */                                                               \
    X(LAYERNORM_DX, "layernorm_dx", 3, 3, IR_A_EPS, GRAD, KERNEL, REDUCE, layernorm_dx)    \
    /* x, dy -> dgamma [H] (summed over rows) */                                           \
    X(LAYERNORM_DGAMMA, "layernorm_dgamma", 2, 2, IR_A_EPS, GRAD, KERNEL, REDUCE,          \
      layernorm_dgamma)                                                                    \
    /* y = attn_softmax(x), dy -> dx */                                                    \
    X(SOFTMAX_GRAD, "softmax_grad", 2, 2, IR_A_SCALE, GRAD, KERNEL, REDUCE, same2)         \
    /* dy -> zeros of the node's type with dy placed at index along axis */                \
    X(SELECT_GRAD, "select_grad", 1, 1, IR_A_AXIS | IR_A_INDEX | IR_A_TYPE, GRAD, KERNEL,  \
      INJECTIVE, select_grad)                                                              \
    /* logits, labels, dloss[] [, weights[C]] -> dlogits */                                \
    X(CROSS_ENTROPY_GRAD, "cross_entropy_grad", 3, 4, 0, GRAD, KERNEL, OPAQUE,             \
      cross_entropy_grad)                                                                  \
    /* ---- the ops the fusion pass introduces ---- */                                     \
    /* w[K, N] (or [N, K] if tb) -> [ceil(N / 16), K, 16]: op(w) in panels of 16 */        \
    /* columns, zero past N: [j, k, l] = op(w)[k, 16 j + l] (the pack rule) */             \
    X(PACK_B, "pack_b", 1, 1, IR_A_TB, GRAD, KERNEL, OPAQUE, pack_b)                       \
    /* one kernel for a region of ops: the quoted body lists them (see ir_region_graph) */ \
    X(FUSED, "fused", 1, IR_MAX_INPUTS, IR_A_NAME | IR_A_TYPE, REGION, KERNEL, OPAQUE,     \
      fused)                                                                               \
    /* a further result of a fused node: its body's statement %index, which the */         \
    /* region's kernel writes beside the node's own value (see ir_region_results) */       \
    X(RESULT, "result", 1, 1, IR_A_INDEX | IR_A_TYPE, REGION, RESULT, OPAQUE, result)

typedef enum {
#define X(e, s, lo, hi, am, role, code, fc, rule) IR_OP_##e,
    IR_OPS(X)
#undef X
        IR_OP_COUNT
} ir_opcode;

/* What an op is to the layers that keep per-op tables:
 *   leaf      a value given from outside (param, input): no VJP rule, no kernel;
 *   forward   an op the frontend builds: a VJP rule (passes/autodiff.c), a reference
 *             kernel (runtime/interp.c) and, unless a view, a lowering (codegen/lower.c);
 *   gradient  an op only a pass introduces (autodiff's gradient ops; pack_b, which only
 *             inference graphs hold): a reference kernel and a lowering, no VJP rule
 *             (nothing differentiates a backward graph);
 *   region    fused and result, which the fusion pass introduces: a reference kernel
 *             (the body's ops in turn) and a lowering; autodiff expands them back into
 *             their ops first. */
typedef enum { IR_ROLE_LEAF, IR_ROLE_FWD, IR_ROLE_GRAD, IR_ROLE_REGION } ir_op_role;

/* How an op's value comes to be in compiled code. */
typedef enum {
    IR_CODE_NONE,   /* bound to a tensor from outside (param, input) */
    IR_CODE_VIEW,   /* the operand's memory, seen with another type (reshape) */
    IR_CODE_KERNEL, /* computed by a generated kernel */
    IR_CODE_RESULT, /* written by the kernel of the fused node it reads */
} ir_op_code;

/* Fusion classes, after TVM's TOpPattern. */
typedef enum {
    IR_FUSE_OPAQUE,      /* never fused (param, input, cross_entropy) */
    IR_FUSE_ELEMWISE,    /* out[i] = f(in[i]) */
    IR_FUSE_BROADCAST,   /* elementwise with a broadcast operand */
    IR_FUSE_INJECTIVE,   /* pure data movement: transpose, reshape, select, gather */
    IR_FUSE_REDUCE,      /* row reductions: layernorm, softmax */
    IR_FUSE_OUT_ELEMWISE /* matmul: an elementwise epilogue may be fused into it */
} ir_fuse_class;

typedef struct ir_graph ir_graph;
typedef struct ir_node ir_node;

/* Shape rule: computes the output type of n from its inputs and attributes. Ops whose
 * output shape is not determined by their inputs (their row has IR_A_TYPE) check
 * n->type instead and copy it. */
typedef int (*ir_shape_fn)(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e);

typedef struct ir_op_info {
    const char *name;
    int min_in, max_in;
    unsigned attrs;
    ir_op_role role;
    ir_op_code code;
    ir_fuse_class fuse;
    ir_shape_fn shape;
} ir_op_info;

extern const ir_op_info ir_ops[IR_OP_COUNT];

/* ---- attributes (ir/attrs.c) ---- */

/* How an attribute is kept in ir_attrs and written. */
typedef enum {
    IR_ATTR_INT,  /* int, "%d" */
    IR_ATTR_I64,  /* int64_t, "%lld" */
    IR_ATTR_REAL, /* double, "%.17g" (which reads back to the same bits) */
    IR_ATTR_PERM, /* int[IR_MAX_RANK], of which the operand's rank are written */
} ir_attr_kind;

/* One row per valued attribute bit, in increasing bit order: the order in which the
 * text form and kernel signatures write them. */
typedef struct ir_attr_info {
    unsigned bit;
    const char *name; /* "name=value" in the text form */
    ir_attr_kind kind;
    size_t offset; /* of its field in ir_attrs */
} ir_attr_info;

#define IR_ATTR_COUNT 8
extern const ir_attr_info ir_attr_table[IR_ATTR_COUNT];

/* The row whose name is name[0..len), or NULL. */
const ir_attr_info *ir_attr_find(const char *name, size_t len);

/* 1 when a and b agree on every attribute op carries: integers and doubles by ==, perm
 * on all IR_MAX_RANK entries. */
int ir_attrs_equal(ir_opcode op, const ir_attrs *a, const ir_attrs *b);

/* The text form of op's attributes, " {ta=0, tb=1}", or "" when op carries none; perm
 * lists its first `rank` entries. Like snprintf: writes at most len bytes with the NUL
 * (buf may be NULL when len is 0) and returns the length of the whole text. */
size_t ir_attrs_print(ir_opcode op, const ir_attrs *a, int rank, char *buf, size_t len);

/* The attributes' part of a kernel signature (runtime/plan.h), "ta=0,tb=1," and for
 * perm "p0,p2,p1,p3,"; written like ir_attrs_print. */
size_t ir_attrs_signature(ir_opcode op, const ir_attrs *a, int rank, char *buf, size_t len);

struct ir_node {
    ir_opcode op;
    ir_type type;
    int nin;
    int in[IR_MAX_INPUTS];
    ir_attrs a;
    char *name; /* for ops with IR_A_NAME, else NULL */
};

typedef struct ir_output {
    char *name;
    int value;
} ir_output;

struct ir_graph {
    char *name;
    ir_node *nodes; /* topological: every input index is smaller than the node's */
    int n, cap;
    ir_output *outs;
    int nout, outcap;
    int failed; /* builder: set by the first failing call; later calls return -1 */
    bc_err err; /* builder: the first failure */
};

/* ---- dimensions and types (ir/type.c) ---- */
ir_dim ir_dconst(int64_t c);
extern const ir_dim IR_DIM_B, IR_DIM_S;
ir_dim ir_dim_mul(ir_dim a, ir_dim b);
int ir_dim_eq(ir_dim a, ir_dim b);
int ir_dim_is_const(ir_dim d);
int64_t ir_dim_eval(ir_dim d, int64_t B, int64_t S);
/* Writes "B*S", "12", "4*S"... into buf; returns buf. */
char *ir_dim_str(ir_dim d, char *buf, size_t len);

ir_type ir_type_make(ir_dtype dt, int rank, const ir_dim *dims);
int ir_type_eq(const ir_type *a, const ir_type *b);
/* Product of all dims, as a monomial. */
ir_dim ir_type_numel(const ir_type *t);
/* Writes "f32[B, S, 768]"; returns buf. */
char *ir_type_str(const ir_type *t, char *buf, size_t len);
const char *ir_dtype_name(ir_dtype dt);

/* ---- graphs and the builder (ir/graph.c, ir/builder.c) ---- */
ir_graph *ir_graph_new(const char *name);
void ir_graph_free(ir_graph *g);
ir_graph *ir_graph_clone(const ir_graph *g);

/* Appends a node. type may be NULL for ops whose shape rule computes it; it is
 * required for ops whose row has IR_A_TYPE. Returns the new value's index, or -1 with
 * g->failed set and g->err filled (and -1 at once if g->failed). */
int ir_add(ir_graph *g, ir_opcode op, const int *in, int nin, const ir_attrs *a,
           const char *name, const ir_type *type);
int ir_set_output(ir_graph *g, const char *name, int value);
int ir_find_output(const ir_graph *g, const char *name);              /* value, or -1 */
int ir_find_named(const ir_graph *g, ir_opcode op, const char *name); /* value or -1 */

/* Convenience builders; each returns the value or -1 (sticky failure). */
int ir_param(ir_graph *g, const char *name, ir_type t);
int ir_input(ir_graph *g, const char *name, ir_type t);
int ir_gather(ir_graph *g, int table, int ids);
int ir_prefix_rows(ir_graph *g, int x, ir_dim rows);
int ir_addv(ir_graph *g, int a, int b);
int ir_mul(ir_graph *g, int a, int b);
int ir_matmul(ir_graph *g, int a, int b, int ta, int tb);
int ir_transpose(ir_graph *g, int x, const int *perm);
int ir_reshape(ir_graph *g, int x, int rank, const ir_dim *dims);
int ir_unary(ir_graph *g, ir_opcode op, int x); /* gelu, gelu_tanh, tanh */
int ir_scale(ir_graph *g, int x, double factor);
int ir_layernorm(ir_graph *g, int x, int gamma, int beta, double eps);
int ir_attn_softmax(ir_graph *g, int scores, int mask, double scale);
int ir_select(ir_graph *g, int x, int axis, int64_t index);
int ir_cross_entropy(ir_graph *g, int logits, int labels);
/* Class-weighted: weights f32[C], C the logits' last dimension. Rows with label -100 do
 * not count; the loss is 0 when no row counts or their weights sum to 0. Negative
 * weights are the caller's business (nothing checks them). */
int ir_cross_entropy_weighted(ir_graph *g, int logits, int labels, int weights);

/* Shape rule of node n (dispatches through ir_ops). */
int ir_infer_type(const ir_graph *g, const ir_node *n, ir_type *out, bc_err *e);

/* ---- fused regions (ir/region.c) ----
 * A fused node stands for a region: ops the code generator emits as one kernel. Its
 * quoted body lists them as statements in the text form, separated by "; ", numbered
 * on from the node's operands (%0 .. %k-1 are the operands), the last being the result:
 *   %5 = fused "%3 = matmul %0, %1 {ta=0, tb=1} : f32[B, S, 512]; %4 = add %3, %2 :
 *               f32[B, S, 512]; %5 = gelu %4 : f32[B, S, 512]" %46, %47, %48 : ...
 * A body holds no leaves, no fused node and no opaque op (ir_region_op_ok). */

/* A region may have further results (a multi-output region: the backward rule's
 * layernorm gradients): values of body statements other than the last that nodes
 *   %9 = result %7 {index=5} : f32[768]
 * read (index: the statement's number in the body, %5 there). The region's kernel writes
 * them beside the node's value; nothing else reads a body's inner values.
 * ir_region_results lists the result nodes of fused node v (at most IR_MAX_RESULTS, in
 * increasing index; duplicates are refused by the verifier) into out: their count. The
 * kernel's pointers are its value, its operands, then these in that order. */
#define IR_MAX_RESULTS 4
int ir_region_results(const ir_graph *g, int v, int out[IR_MAX_RESULTS]);

/* 1 when op may appear in a region's body. */
int ir_region_op_ok(ir_opcode op);

/* The region of fused node n of g as a graph of its own: one input per operand
 * (named "0", "1", ..., typed as the operands), the body's nodes, and the output
 * "out", the last of them. Checks the body (parsed and verified; its result has n's
 * type). The caller frees it. */
ir_graph *ir_region_graph(const ir_graph *g, const ir_node *n, bc_err *e);

/* The body of a region made of nodes[0..nn) of g (in topological order; the last is
 * the result), whose values from outside the region are operands[0..nop) in that
 * order (every operand of a member that is not a member must be listed). malloc'd;
 * NULL when out of memory. */
char *ir_region_body(const ir_graph *g, const int *nodes, int nn, const int *operands,
                     int nop);

/* Multi-head attention's layout, which the fusion rules and their kernels match:
 * ir_head_perm is the transpose between [B, S, nh, D] and [B, nh, S, D];
 * ir_head_split says whether v is the head split of a value, transpose ir_head_perm of
 * a reshape of a rank-3 f32 x [B, S, nh D] into [B, S, nh, D] (nh, D constant): 1 with
 * *reshape and *x set, else 0; ir_is_head_transpose whether node n is a rank-4
 * transpose by ir_head_perm (the first step of merging heads back). */
extern const int ir_head_perm[4];
int ir_head_split(const ir_graph *g, int v, int *reshape, int *x);
int ir_is_head_transpose(const ir_node *n);

/* A fused node's kernel with its first dropout's stream index taken out, so that the
 * same region of every layer is one kernel (the index comes at run time): into buf
 * (len bytes) the body with that index written as 0, and *index the index; or 0 with
 * buf holding the body as it is when the body has no dropout. -1 when out of memory
 * or the body does not read. */
int ir_region_kernel_body(const ir_graph *g, const ir_node *n, char *buf, size_t len,
                          int64_t *index);

/* ---- verifier (ir/verify.c) ---- */
/* Checks structure (topological order, input counts, attributes, names, outputs) and
 * that every node's type equals its shape rule's. Messages name the node: "%12 (add): ...".
 */
int ir_verify(const ir_graph *g, bc_err *e);

/* ---- text form (ir/print.c, ir/parse.c) ---- */
int ir_print(const ir_graph *g, FILE *f);
char *ir_print_str(const ir_graph *g); /* malloc'd */
/* Parses the text form; errors are "FILENAME:LINE: message". The result is verified. */
ir_graph *ir_parse(const char *text, const char *filename, bc_err *e);

/* ---- cost (ir/flops.c) ---- */
/* The floating-point operations of g's matmuls at batch size B and sequence length S:
 * 2 * M * N * K (a multiply and an add per term) times the batch dimensions, summed over
 * every matmul node; other ops are not counted (they are O(elements), matmuls are what
 * GFLOP/s figures of BERT count). In double: exact below 2^53, never overflowing. */
double ir_matmul_flops(const ir_graph *g, int64_t B, int64_t S);
/* The same for one node of g: a matmul's, a fused region's matmuls', else 0. */
double ir_node_matmul_flops(const ir_graph *g, const ir_node *n, int64_t B, int64_t S);

#endif
