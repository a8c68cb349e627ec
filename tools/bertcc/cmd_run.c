/* cmd_run.c: `bertcc run`, the contract of DESIGN.md §5: one eval-mode forward pass of
 * a model on a batch file, outputs written as safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../codegen/engine.h"
#include "../../frontend/frontend.h"
#include "../../passes/passes.h"
#include "../../runtime/interp.h"
#include "../../runtime/params.h"
#include "../../runtime/safetensors.h"
#include "../../train/batch.h"
#include "args.h"
#include "driver.h"

_Static_assert((int)RT_LABEL_MLM == (int)FE_LABEL_MLM &&
                   (int)RT_LABEL_NSP == (int)FE_LABEL_NSP &&
                   (int)RT_LABEL_INTENT == (int)FE_LABEL_INTENT &&
                   (int)RT_LABEL_SLOT == (int)FE_LABEL_SLOT &&
                   (int)RT_LABEL_QA == (int)FE_LABEL_QA,
               "runtime and frontend label groups must agree");

static unsigned heads_to_labels(unsigned heads)
{
    /* FE_HEAD_* and FE_LABEL_* use the same bit for the same head. */
    return heads & FE_LABEL_ALL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *model, *weights, *batch, *out, *grads, *threads, *seed, *backend;
    const char *quiet, *cpu, *features, *verbose;
} run_args;

static int run(const run_args *a)
{
    double t0 = now();
    fe_model m;
    ir_err e;
    rt_tensor_list batch, inputs, params, outputs, ckpt;
    rt_list_init(&batch);
    rt_list_init(&inputs);
    rt_list_init(&params);
    rt_list_init(&outputs);
    rt_list_init(&ckpt);
    ir_graph *g = NULL;
    cg_engine *engine = NULL;
    int rc = 1;
    long long threads = 0, seed = 0;
    unsigned present = 0;
    int64_t B = 0, S = 0;
    if (a->threads && args_int(a->threads, "threads", 1, 1024, &threads))
        goto done;
    if (a->seed && args_int(a->seed, "seed", 0, (long long)(~0ULL >> 1), &seed))
        goto done;
    if (fe_load(a->model, &m, &e) || rt_st_load(a->batch, &batch, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    if (rt_batch_prepare(&batch, m.max_position, heads_to_labels(m.head_mask), &inputs,
                         &present, &B, &S, driver_note, NULL, &e)) {
        fprintf(stderr, "bertcc: %s: %s\n", a->batch, e.msg);
        goto done;
    }
    if (a->grads && !present) {
        driver_fail("--grads needs labels in the batch: without them there is no loss to "
                    "differentiate");
        goto done;
    }
    pass_grad_opts go = {"loss", NULL, 0};
    if (!(g = fe_build_bert(&m, present, &e)) ||
        pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) ||
        (a->grads && (pass_autodiff(&g, &go, &e) ||
                      pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e)))) {
        driver_fail(e.msg);
        goto done;
    }
    if (a->weights) {
        if (rt_st_load(a->weights, &ckpt, &e)) {
            driver_fail(e.msg);
            goto done;
        }
        if (rt_params_from_checkpoint(g, &ckpt, 0, 0, &params, driver_note, NULL, &e)) {
            fprintf(stderr, "bertcc: %s: %s\n", a->weights, e.msg);
            goto done;
        }
    } else if (rt_params_init(g, (uint64_t)seed, &params, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    cg_backend backend = CG_BACKEND_DEFAULT;
    if (a->backend && cg_backend_parse(a->backend, &backend)) {
        driver_fail("run: --backend expects jit or ref");
        goto done;
    }
    cg_options co = {a->cpu, a->features, NULL, a->verbose != NULL};
    double t1 = now();
    if (!(engine = cg_engine_new(g, backend, &co, &e))) {
        driver_fail(e.msg);
        goto done;
    }
    double t2 = now();
    if (cg_engine_run(engine, &params, &inputs, (int)threads, &outputs, &e)) {
        fprintf(stderr, "bertcc: %s: %s\n", a->batch, e.msg);
        goto done;
    }
    double t3 = now();
    if (rt_st_save(a->out, &outputs, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    if (!a->quiet)
        fprintf(
            stderr,
            "bertcc run: %s, B=%lld S=%lld, backend %s: %d tensors to %s (compile %.3f s, "
            "run %.3f s, total %.3f s)\n",
            m.name, (long long)B, (long long)S, backend == CG_BACKEND_JIT ? "jit" : "ref",
            outputs.n, a->out, t2 - t1, t3 - t2, now() - t0);
    rc = 0;
done:
    cg_engine_free(engine);
    ir_graph_free(g);
    rt_list_free(&batch);
    rt_list_free(&inputs);
    rt_list_free(&params);
    rt_list_free(&outputs);
    rt_list_free(&ckpt);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    run_args a = {0};
    const arg_opt opts[] = {
        {"weights", "W.safetensors", "parameters (Hugging Face names); default: BERT init",
         &a.weights},
        {"batch", "B.safetensors", "input_ids, token_type_ids, attention_mask, labels",
         &a.batch},
        {"o", "OUT.safetensors", "where to write the outputs", &a.out},
        {"grads", NULL, "also write grad.<param> for every parameter", &a.grads},
        {"threads", "N", "number of threads (default: all cores)", &a.threads},
        {"seed", "N", "seed for initialization without --weights (default 0)", &a.seed},
        {"backend", "NAME", "jit (generated code) or ref (the reference interpreter)",
         &a.backend},
        {"target-cpu", "CPU", "LLVM CPU for the JIT (default: this machine's)", &a.cpu},
        {"target-features", "LIST", "LLVM features for the JIT", &a.features},
        {"v", NULL, "report compile time", &a.verbose},
        {"quiet", NULL, "no summary line on stderr", &a.quiet},
        {NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    int help;
    int npos = args_parse(argc, argv, 2, opts, pos, 1, &help, "run");
    if (npos < 0)
        return 1;
    if (help) {
        args_usage(
            "bertcc run MODEL.xml --batch B.safetensors -o OUT.safetensors [options]",
            "Runs one eval-mode forward pass (DESIGN.md §5) and writes\n"
            "sequence_output, pooled_output, each head's logits, each loss and loss.",
            opts);
        return 0;
    }
    if (npos != 1)
        return driver_fail("run: expected one model description (see bertcc run --help)");
    if (!a.batch || !a.out)
        return driver_fail("run: --batch and -o are required (see bertcc run --help)");
    a.model = pos[0];
    return run(&a);
}
