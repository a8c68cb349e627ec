/* engine.h: one interface over both backends — the reference interpreter and
 * JIT-compiled code — for everything that runs graphs (run, train, eval, predict). */
#ifndef BERTCC_CG_ENGINE_H
#define BERTCC_CG_ENGINE_H

#include "../ir/ir.h"
#include "../runtime/tensor.h"
#include "codegen.h"

typedef enum { CG_BACKEND_JIT, CG_BACKEND_REF } cg_backend;
/* What commands use without --backend. */
#define CG_BACKEND_DEFAULT CG_BACKEND_JIT

typedef struct cg_engine cg_engine;

/* Prepares g (which the engine keeps a copy of) for repeated runs: for the JIT, plans
 * and compiles it. Parses "jit" / "ref" with cg_backend_parse. */
cg_engine *cg_engine_new(const ir_graph *g, cg_backend backend, const cg_options *o,
                         bc_err *e);
void cg_engine_free(cg_engine *x);
int cg_backend_parse(const char *s, cg_backend *out);

/* rt_interp_run's contract (F32 outputs), whichever the backend. */
int cg_engine_run(cg_engine *x, const rt_tensor_list *params, const rt_tensor_list *inputs,
                  int threads, rt_tensor_list *out, bc_err *e);

const ir_graph *cg_engine_graph(const cg_engine *x);

#endif
