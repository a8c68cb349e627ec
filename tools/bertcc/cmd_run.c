/* cmd_run.c: `bertcc run`, the contract of DESIGN.md §5: one eval-mode forward pass of
 * a model on a batch file (tk_run_batch, tasks/run_batch.h), outputs written as
 * safetensors. */
#include <stdio.h>

#include "../../runtime/safetensors.h"
#include "../../tasks/run_batch.h"
#include "args.h"
#include "driver.h"

static const char *weights, *batch, *out, *grads, *threads, *seed, *backend, *cpu,
    *features, *verbose, *quiet, *fuse;
static const arg_opt opts[] = {
    {"weights", "W.safetensors", "parameters (Hugging Face names); default: BERT init",
     &weights},
    {"batch", "B.safetensors", "input_ids, token_type_ids, attention_mask, labels", &batch},
    {"o", "OUT.safetensors", "where to write the outputs", &out},
    {"grads", NULL, "also write grad.<param> for every parameter", &grads},
    {"threads", "N", "number of threads (default: all cores)", &threads},
    {"seed", "N", "seed for initialization without --weights (default 0)", &seed},
    {"backend", "NAME", "jit (generated code) or ref (the reference interpreter)",
     &backend},
    {"fuse", "RULES", FUSE_HELP, &fuse},
    {"target-cpu", "CPU", "LLVM CPU for the JIT (default: this machine's)", &cpu},
    {"target-features", "LIST", "LLVM features for the JIT", &features},
    {"v", NULL, "report compile time", &verbose},
    {"quiet", NULL, "no summary line on stderr", &quiet},
    {NULL, NULL, NULL, NULL},
};

static const char about[] = "Runs one eval-mode forward pass (DESIGN.md §5) and writes\n"
                            "sequence_output, pooled_output, each head's logits, each "
                            "loss and loss.";

static int run(tk_run_opts *o)
{
    double t0 = driver_now();
    long long nthreads = 0, s = 0;
    if ((threads && args_int(threads, "threads", 1, 1024, &nthreads)) ||
        (seed && args_int(seed, "seed", 0, (long long)(~0ULL >> 1), &s)))
        return 1;
    o->threads = (int)nthreads;
    o->seed = (uint64_t)s;
    if (backend && cg_backend_parse(backend, &o->backend))
        return driver_fail("run: --backend expects jit or ref");
    bc_err e;
    rt_tensor_list outputs;
    tk_run_info info;
    rt_list_init(&outputs);
    int rc = tk_run_batch(o, &outputs, &info, &e) || rt_st_save(out, &outputs, &e)
                 ? driver_fail(e.msg)
                 : 0;
    if (!rc && !quiet)
        fprintf(stderr,
                "bertcc run: %s, B=%lld S=%lld, backend %s: %d tensors to %s (compile "
                "%.3f s, run %.3f s, total %.3f s)\n",
                info.model, (long long)info.B, (long long)info.S,
                o->backend == CG_BACKEND_JIT ? "jit" : "ref", outputs.n, out,
                info.compile_s, info.run_s, driver_now() - t0);
    rt_list_free(&outputs);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    const char *pos[1];
    int help;
    int npos = args_parse(argc, argv, 2, opts, pos, 1, &help, "run");
    if (npos < 0)
        return 1;
    if (help)
        return args_usage("bertcc run MODEL.xml --batch B.safetensors -o OUT.safetensors "
                          "[options]",
                          about, opts),
               0;
    if (npos != 1)
        return driver_fail("run: expected one model description (see bertcc run --help)");
    if (!batch || !out)
        return driver_fail("run: --batch and -o are required (see bertcc run --help)");
    tk_run_opts o = {.model = pos[0],
                     .batch = batch,
                     .weights = weights,
                     .grads = grads != NULL,
                     .backend = CG_BACKEND_DEFAULT,
                     .fuse = fuse,
                     .cg = {cpu, features, NULL, verbose != NULL},
                     .note = driver_note};
    return run(&o);
}
