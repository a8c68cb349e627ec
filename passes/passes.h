/* passes.h: graph-to-graph passes and the pass manager. A pass takes ownership of
 * *g and may replace it with a new graph. */
#ifndef BERTCC_PASSES_H
#define BERTCC_PASSES_H

#include <stddef.h>
#include <stdio.h>

#include "../ir/ir.h"

typedef int (*pass_fn)(ir_graph **g, bc_err *e);

/* A pipeline entry is NAME or NAME=ARG; arg is NULL without one. Passes that take no
 * argument refuse one. */
typedef struct pass_info {
    const char *name;
    const char *help;
    int (*run)(ir_graph **g, const char *arg, bc_err *e);
} pass_info;

/* Every registered pass, NULL-terminated. */
extern const pass_info pass_registry[];
const pass_info *pass_find(const char *name);

/* Runs a comma-separated pipeline ("shape,canonicalize,cse,dce,fuse=epilogue"); each
 * pass is followed by the verifier. With print_after, the graph is printed after each
 * pass under a "# after NAME" line. */
int pass_run_pipeline(ir_graph **g, const char *pipeline, FILE *print_after, bc_err *e);

/* The pipeline `--emit=opt` and execution use: the simplifying passes, then fusion with
 * every rule (`--fuse=all`). PASS_BASE_PIPELINE is the same without fusion. */
#define PASS_BASE_PIPELINE "shape,canonicalize,cse,dce"
#define PASS_DEFAULT_PIPELINE PASS_BASE_PIPELINE ",fuse"

/* ---- fusion (passes/fuse.c) ---- */

/* The fusion rules, by name in `--fuse` and in the pipeline entry fuse=RULE+RULE. */
enum {
    PASS_FUSE_EPILOGUE = 1 << 0,  /* elementwise consumers into the producing matmul */
    PASS_FUSE_ATTENTION = 1 << 1, /* one kernel from Q, K, V to the context (inference) */
    PASS_FUSE_LAYOUT = 1 << 2,    /* head split/merge views as strided matmul operands */
    PASS_FUSE_LAYERNORM = 1 << 3, /* the elementwise ops before a layernorm into it */
    PASS_FUSE_BACKWARD = 1 << 4,  /* a layernorm's gradients and its bias gradients */
    PASS_FUSE_PACK = 1 << 5, /* weights packed once into the GEMM's panels (inference) */
};
#define PASS_FUSE_ALL                                                                      \
    (PASS_FUSE_EPILOGUE | PASS_FUSE_ATTENTION | PASS_FUSE_LAYOUT | PASS_FUSE_LAYERNORM |   \
     PASS_FUSE_BACKWARD | PASS_FUSE_PACK)

/* Reads a fusion spec: "all" (or NULL), "none", or rule names separated by ',' or '+'. */
int pass_fuse_parse(const char *spec, unsigned *rules, bc_err *e);
/* The default pipeline with the fusion rules of spec (pass_fuse_parse), into buf. */
int pass_default_pipeline(const char *fuse_spec, char *buf, size_t len, bc_err *e);
/* Groups nodes into fused regions by the given rules (see fuse.c). */
int pass_fuse(ir_graph **g, unsigned rules, bc_err *e);
/* The pack rule (passes/pack.c), which pass_fuse runs first: in a graph without a
 * backward, every matmul whose rhs is a parameter matrix reads it through pack_b. */
int pass_pack_weights(ir_graph **g, bc_err *e);
/* Expands every fused node back into the ops of its body, and undoes the pack rule:
 * matmuls read their rhs again and pack_b nodes go (but one that is an output). */
int pass_unfuse(ir_graph **g, bc_err *e);

int pass_shape(ir_graph **g, bc_err *e);        /* re-infers and checks every type */
int pass_canonicalize(ir_graph **g, bc_err *e); /* folds transposes/reshapes/scales */
int pass_cse(ir_graph **g, bc_err *e);          /* merges identical nodes */
int pass_dce(ir_graph **g, bc_err *e);          /* drops what no output needs */

/* Reverse-mode automatic differentiation (passes/autodiff.c). Appends the backward
 * graph of the scalar output `loss` (default "loss") to g and an output
 * "grad.<param name>" for every parameter whose name does not start with one of the
 * frozen prefixes; a parameter the loss does not depend on gets a zero gradient.
 * Gradients of a value used several times are summed (the tied word embeddings get
 * both uses). Fused nodes are expanded first (pass_unfuse). Only values on a path from a trainable parameter to the loss are
 * differentiated. Each op's vector-Jacobian rule is one row of a table indexed by
 * ir_opcode; an op without a row is an error naming it. */
typedef struct pass_grad_opts {
    const char *loss;
    const char *const *frozen; /* parameter name prefixes; may be NULL */
    int nfrozen;
} pass_grad_opts;
int pass_autodiff(ir_graph **g, const pass_grad_opts *o, bc_err *e);
/* 1 if op has a VJP row (tests check every differentiable op has one). */
int pass_has_vjp(ir_opcode op);

/* Keeps only the outputs named in names[0..n) (unknown names are an error), so that a
 * following DCE removes everything only the others needed. */
int pass_keep_outputs(ir_graph *g, const char *const *names, int n, bc_err *e);

/* Rebuilds g: node i is dropped when keep[i] == 0, and every use of value i becomes a
 * use of repl[i] (repl[i] < i, or i itself). Outputs are remapped the same way.
 * Returns the new graph (g is left alone), or NULL. */
ir_graph *pass_rebuild(const ir_graph *g, const char *keep, const int *repl, bc_err *e);

/* pass_rebuild, then frees *g and puts the new graph in its place. */
int pass_replace(ir_graph **g, const char *keep, const int *repl, bc_err *e);

/* For a pass that builds its new graph ng from *g node by node: gives ng *g's outputs
 * (map takes *g's values to ng's; NULL when they kept their numbers), then frees *g and
 * puts ng in its place; or, when building ng failed, frees ng and returns its error. */
int pass_install(ir_graph **g, ir_graph *ng, const int *map, bc_err *e);

#endif
