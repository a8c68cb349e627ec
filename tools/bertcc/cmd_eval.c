/* cmd_eval.c: `bertcc eval --model RUN_DIR --data PATH` — scores a trained run on a
 * split of a task's data with the task's metrics (rundir_evaluate, tasks/rundir.h),
 * using the run's vocabulary, tokenizer options and label lists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../tasks/rundir.h"
#include "args.h"
#include "driver.h"

static const char *model, *data, *split, *json, *weights, *batch, *threads, *backend, *fuse;
static const arg_opt opts[] = {
    {"model", "RUN_DIR", "a run directory made by bertcc train --task (required)", &model},
    {"data", "PATH",
     "the task's data (intent-slot: DIR/{train,dev,test}; qa: a SQuAD v1.1 JSON file; "
     "pretrain: a corpus or a pretrain-data file; classify: DIR/{train,dev,test}.EXT or "
     "one "
     "file, scored whole; required)",
     &data},
    {"split", "NAME",
     "test (the default; qa and pretrain: all of PATH), dev (qa and pretrain: the "
     "run's --eval-data, or the part of PATH its --holdout K left out of training) or "
     "train",
     &split},
    {"weights", "WHICH", "best (the default: best on dev), last, or a safetensors file",
     &weights},
    {"json", NULL, "print one JSON object (metrics as fractions in [0, 1])", &json},
    {"batch-size", "N", "rows per forward pass (default 64)", &batch},
    {"threads", "N", "number of threads (default: all cores)", &threads},
    {"backend", "NAME",
     "jit (generated code, the default) or ref (the reference interpreter)", &backend},
    {"fuse", "RULES", FUSE_HELP " (default: the run's)", &fuse},
    {NULL, NULL, NULL, NULL},
};

static const char about[] =
    "Evaluates a trained run on a split of a task's data. For intent-slot:\n"
    "intent accuracy, slot precision/recall/F1 (conlleval chunks) and\n"
    "frame accuracy; labels unseen in training count as wrong. For qa:\n"
    "exact_match and f1 (the run's --metric: squad or korquad answer\n"
    "normalization). For pretrain: MLM and NSP accuracy and loss. For\n"
    "classify: accuracy and macro F1, then per-class precision, recall, F1\n"
    "and support, and the confusion matrix (--json: per_class, confusion).";

static int print_json(const rundir_model *m, const tk_metrics *r, tk_split sp)
{
    json_t *j = rundir_eval_details(m);
    if (!j)
        j = json_object();
    for (int i = 0; i < r->n; i++)
        json_object_set_new(j, r->name[i], json_real(r->value[i]));
    json_object_set_new(j, "examples", json_integer(r->examples));
    json_object_set_new(j, "split", json_string(tk_split_name(sp)));
    json_object_set_new(j, "task", json_string(m->run.task->name));
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s)
        return driver_fail("out of memory");
    puts(s);
    free(s);
    return 0;
}

static int evaluate(tk_split sp, const rundir_model_opts *o, int batch_size)
{
    bc_err e;
    rundir_model m;
    tk_metrics r;
    if (rundir_model_open(&m, model, data, o, &e))
        return driver_fail(e.msg);
    int rc = rundir_evaluate(&m, sp, batch_size, &r, &e) ? driver_fail(e.msg) : 0;
    if (!rc && json) {
        rc = print_json(&m, &r, sp);
    } else if (!rc) {
        printf("%s %s, %lld examples (%s)\n", m.run.task->name, tk_split_name(sp),
               (long long)r.examples, data);
        for (int i = 0; i < r.n; i++)
            printf("  %-18s %.4f\n", r.name[i], r.value[i]);
        json_t *d = rundir_eval_details(&m);
        rc = rundir_print_eval_details(&m, d, stdout) ? driver_fail("cannot write") : 0;
        json_decref(d);
    }
    if (!rc && fflush(stdout))
        rc = driver_fail("cannot write to standard output");
    rundir_model_close(&m);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    int help;
    const char *pos[1];
    if (args_parse(argc, argv, 2, opts, pos, 0, &help, "eval") < 0)
        return 1;
    if (help)
        return args_usage(
                   "bertcc eval --model RUN_DIR --data PATH [--split test|dev] [--json]",
                   about, opts),
               0;
    if (!model || !data)
        return driver_fail(
            "eval: --model RUN_DIR and --data PATH are required (see --help)");
    tk_split sp = TK_SPLIT_TEST;
    if (split && !strcmp(split, "dev"))
        sp = TK_SPLIT_DEV;
    else if (split && !strcmp(split, "train"))
        sp = TK_SPLIT_TRAIN;
    else if (split && strcmp(split, "test"))
        return driver_fail("eval: --split expects test, dev or train");
    long long nthreads = 0, bs = 64;
    if ((threads && args_int(threads, "threads", 1, 1024, &nthreads)) ||
        (batch && args_int(batch, "batch-size", 1, 1 << 20, &bs)))
        return 1;
    rundir_model_opts o = {weights, CG_BACKEND_DEFAULT, (int)nthreads, driver_note, NULL,
                           0, fuse};
    if (backend && cg_backend_parse(backend, &o.backend))
        return driver_fail("eval: --backend expects ref or jit");
    return evaluate(sp, &o, (int)bs);
}
