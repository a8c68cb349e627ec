/* cmd_eval.c: `bertcc eval --model RUN_DIR --data PATH` — scores a trained run on a
 * split of a task's data with the task's metrics (tasks/task.h), using the run's
 * vocabulary, tokenizer options and label lists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../tasks/curves.h"
#include "../../tasks/rundir.h"
#include "../../tasks/runner.h"
#include "../../tasks/task.h"
#include "args.h"
#include "driver.h"

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *split = NULL, *json = NULL, *weights = NULL,
               *batch = NULL, *threads = NULL, *backend = NULL;
    const arg_opt opts[] = {
        {"model", "RUN_DIR", "a run directory made by bertcc train --task (required)",
         &model},
        {"data", "PATH",
         "the task's data (intent-slot: DIR/{train,dev,test}; qa: a SQuAD v1.1 JSON file; "
         "pretrain: a corpus or a pretrain-data file; required)",
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
        {NULL, NULL, NULL, NULL},
    };
    int help;
    const char *pos[1];
    int npos = args_parse(argc, argv, 2, opts, pos, 0, &help, "eval");
    if (npos < 0)
        return 1;
    if (help) {
        args_usage("bertcc eval --model RUN_DIR --data PATH [--split test|dev] [--json]",
                   "Evaluates a trained run on a split of a task's data. For intent-slot:\n"
                   "intent accuracy, slot precision/recall/F1 (conlleval chunks) and\n"
                   "frame accuracy; labels unseen in training count as wrong. For qa:\n"
                   "exact_match and f1 (the run's --metric: squad or korquad answer\n"
                   "normalization). For pretrain: MLM and NSP accuracy and loss.",
                   opts);
        return 0;
    }
    if (!model || !data)
        return driver_fail(
            "eval: --model RUN_DIR and --data PATH are required (see --help)");
    rt_split sp = RT_SPLIT_TEST;
    if (split && !strcmp(split, "dev"))
        sp = RT_SPLIT_DEV;
    else if (split && !strcmp(split, "train"))
        sp = RT_SPLIT_TRAIN;
    else if (split && strcmp(split, "test"))
        return driver_fail("eval: --split expects test, dev or train");
    long long nthreads = 0, bs = 64;
    if ((threads && args_int(threads, "threads", 1, 1024, &nthreads)) ||
        (batch && args_int(batch, "batch-size", 1, 1 << 20, &bs)))
        return 1;
    cg_backend be = CG_BACKEND_DEFAULT;
    if (backend && cg_backend_parse(backend, &be))
        return driver_fail("eval: --backend expects ref or jit");

    ir_err e;
    rundir_run run;
    rt_task task = {NULL, NULL};
    rundir_runner rr = {0};
    rt_tensor_list params;
    rt_list_init(&params);
    ir_graph *g = NULL;
    int rc = 1;
    if (rundir_open(model, &run, &e)) {
        driver_fail(e.msg);
        return 1;
    }
    rt_metrics m;
    if (!(g = rundir_eval_graph(&run.model, run.task->eval_outputs, &e)) ||
        rundir_load_weights(&run, weights, g, &params, &e) ||
        rundir_task_open(&run, data, driver_note, NULL, &task, &e) ||
        rundir_runner_init(&rr, g, be, (int)nthreads, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    rr.params = &params;
    if (task.ops->evaluate(task.state, sp, (int)bs, rundir_forward, &rr, &m, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    if (json) {
        json_t *j = json_object();
        for (int i = 0; i < m.n; i++)
            json_object_set_new(j, m.name[i], json_real(m.value[i]));
        json_object_set_new(j, "examples", json_integer(m.examples));
        json_object_set_new(j, "split", json_string(rt_split_name(sp)));
        json_object_set_new(j, "task", json_string(run.task->name));
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(j);
        if (!s) {
            driver_fail("out of memory");
            goto done;
        }
        puts(s);
        free(s);
    } else {
        printf("%s %s, %lld examples (%s)\n", run.task->name, rt_split_name(sp),
               (long long)m.examples, data);
        for (int i = 0; i < m.n; i++)
            printf("  %-18s %.4f\n", m.name[i], m.value[i]);
    }
    rc = fflush(stdout) ? driver_fail("cannot write to standard output") : 0;
done:
    if (task.ops)
        task.ops->close(task.state);
    rundir_runner_free(&rr);
    ir_graph_free(g);
    rt_list_free(&params);
    rundir_close(&run);
    return rc;
}
