/* cmd_bench.c: `bertcc bench MODEL --mode infer|train` — how fast a model runs here
 * (tk_bench, tasks/bench.h): one line, or one JSON object with --json. */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "../../tasks/bench.h"
#include "args.h"
#include "driver.h"

static const char *mode, *batch, *seq, *threads, *iters, *json, *backend, *seed, *fuse,
    *prof;
static const arg_opt opts[] = {
    {"mode", "MODE",
     "infer (the eval-mode forward) or train (a full training step: forward, backward, "
     "clipping, AdamW; needs a head); required",
     &mode},
    {"batch-size", "B", "rows per iteration (default 8)", &batch},
    {"seq-len", "S", "tokens per row, at most the model's max-position (default 128)",
     &seq},
    {"batch", "B", "same as --batch-size", &batch},
    {"seq", "S", "same as --seq-len", &seq},
    {"iters", "K", "timed iterations, after one untimed warm-up (default 10)", &iters},
    {"threads", "N", "number of threads (default: all cores)", &threads},
    {"json", NULL, "print one JSON object instead of the line", &json},
    {"backend", "NAME",
     "jit (generated code, the default) or ref (the reference interpreter)", &backend},
    {"seed", "N", "parameters, random ids and labels, dropout (default 0)", &seed},
    {"fuse", "RULES", FUSE_HELP, &fuse},
    {"profile", NULL,
     "after the line, where the timed iterations' time went: one row per generated "
     "kernel (ms per iteration, share, GFLOP/s of its matmuls, steps, what it computes), "
     "slowest first, and the time outside the graph; with --json a \"profile\" array "
     "(jit only)",
     &prof},
    {NULL, NULL, NULL, NULL},
};

static const char about[] =
    "Compiles the model once, runs one untimed iteration, then K timed ones on random\n"
    "ids (train: random labels for every head, MLM at every position), and prints the\n"
    "median time per iteration, tokens/s (B*S per iteration), GFLOP/s (2*M*N*K of\n"
    "every matmul of the graph at B and S, backward included in train mode) and the\n"
    "process's peak resident memory (ru_maxrss). --json keys: ms_per_iter,\n"
    "tokens_per_s, gflop_per_s, peak_rss_mb, model, mode, backend, batch_size, seq_len,\n"
    "threads, iters, warmup, compile_s, cpu, gflop_per_iter, ms_min, ms_max.\n"
    "Compiled code is cached (BERTCC_CACHE_DIR=off measures a cold compile_s).";

static int report(const tk_bench_result *r)
{
    if (json) {
        json_t *j = tk_bench_json(r);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(j);
        if (!s)
            return driver_fail("out of memory");
        puts(s);
        free(s);
    } else {
        char line[512];
        puts(tk_bench_line(r, line, sizeof line));
        if (r->prof)
            tk_bench_profile_print(r, stdout);
    }
    return fflush(stdout) ? driver_fail("cannot write to standard output") : 0;
}

int cmd_bench(int argc, char **argv)
{
    const char *pos[1];
    int help;
    int npos = args_parse(argc, argv, 2, opts, pos, 1, &help, "bench");
    if (npos < 0)
        return 1;
    if (help)
        return args_usage("bertcc bench MODEL.xml --mode infer|train [--batch-size B] "
                          "[--seq-len S] [--iters K] [--threads N] [--fuse RULES] "
                          "[--profile] [--json]",
                          about, opts),
               0;
    if (npos != 1)
        return driver_fail(
            "bench: expected one model description (see bertcc bench --help)");
    tk_bench_opts o;
    tk_bench_defaults(&o);
    o.model = pos[0];
    o.fuse = fuse;
    o.profile = prof != NULL;
    if (!mode)
        return driver_fail("bench: --mode infer|train is required");
    if (tk_bench_mode_parse(mode, &o.mode))
        return driver_fail("bench: --mode expects infer or train");
    if (backend && cg_backend_parse(backend, &o.backend))
        return driver_fail("bench: --backend expects jit or ref");
    long long b = o.batch_size, s = o.seq_len, k = o.iters, n = 0, sd = 0;
    if ((batch && args_int(batch, "batch-size", 1, 1 << 20, &b)) ||
        (seq && args_int(seq, "seq-len", 1, 1 << 20, &s)) ||
        (iters && args_int(iters, "iters", 1, 1000000, &k)) ||
        (threads && args_int(threads, "threads", 1, 1024, &n)) ||
        (seed && args_int(seed, "seed", 0, (long long)(~0ULL >> 1), &sd)))
        return 1;
    o.batch_size = b;
    o.seq_len = s;
    o.iters = k;
    o.threads = (int)n;
    o.seed = (uint64_t)sd;
    bc_err e;
    tk_bench_result r;
    if (tk_bench(&o, &r, &e))
        return driver_fail(e.msg);
    int rc = report(&r);
    tk_bench_result_free(&r);
    return rc;
}
