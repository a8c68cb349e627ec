/* cmd_predict.c: `bertcc predict --model RUN_DIR [TEXT...]` — answers raw text with a
 * trained run: each TEXT argument, or each line of standard input (one answer per
 * line as it comes, so a program can talk to it). The task formats the answer
 * (intent-slot: "intent: NAME (P)" and one "slot: words" line per slot; qa: "answer:
 * SPAN (score S, p P)"; pretrain: the text with its [MASK]s filled); --json prints one
 * JSON object per text instead. A task that reads a pair of texts (qa: a question about
 * a context; pretrain: segments A and B) takes the second with --context C: each TEXT
 * (or --question Q, or each line of standard input) is then asked about C. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

#include "../../tasks/curves.h"
#include "../../tasks/rundir.h"
#include "../../tasks/runner.h"
#include "../../tasks/task.h"
#include "args.h"
#include "driver.h"

typedef struct predictor {
    rt_task task;
    rundir_runner rr;
    int json;
    const char *pair; /* --context, or NULL */
} predictor;

static int answer(predictor *p, const char *text, const char *where, int blank_before)
{
    ir_err e;
    json_t *out = NULL;
    if (p->task.ops->predict(p->task.state, text, p->pair, rundir_forward, &p->rr, &out,
                             &e)) {
        fprintf(stderr, "bertcc: %s%s%s\n", where ? where : "", where ? ": " : "", e.msg);
        return -1;
    }
    int rc = 0;
    if (p->json) {
        char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
        rc = s ? (puts(s) < 0 ? -1 : 0) : -1;
        free(s);
    } else {
        if (blank_before)
            putchar('\n');
        rc = p->task.ops->print(p->task.state, out, stdout);
    }
    json_decref(out);
    if (rc || fflush(stdout))
        return driver_fail("cannot write to standard output"), -1;
    return 0;
}

int cmd_predict(int argc, char **argv)
{
    const char *model = NULL, *json = NULL, *weights = NULL, *threads = NULL,
               *backend = NULL, *question = NULL, *context = NULL;
    const arg_opt opts[] = {
        {"model", "RUN_DIR", "a run directory made by bertcc train --task (required)",
         &model},
        {"question", "Q", "qa: the question (with --context; or give questions as TEXT)",
         &question},
        {"context", "C",
         "qa: the passage the questions are about; pretrain: segment B (next-sentence "
         "probability)",
         &context},
        {"json", NULL, "one JSON object per text (JSON Lines)", &json},
        {"weights", "WHICH", "best (the default: best on dev), last, or a safetensors file",
         &weights},
        {"threads", "N", "number of threads (default: all cores)", &threads},
        {"backend", "NAME",
         "jit (generated code, the default) or ref (the reference interpreter)", &backend},
        {NULL, NULL, NULL, NULL},
    };
    int help;
    const char *pos[256];
    int npos = args_parse(argc, argv, 2, opts, pos, 256, &help, "predict");
    if (npos < 0)
        return 1;
    if (help) {
        args_usage(
            "bertcc predict --model RUN_DIR [--json] [TEXT...]\n"
            "       bertcc predict --model RUN_DIR --question Q --context C [--json]",
            "Answers each TEXT (or each line of standard input) with a trained run.\n"
            "intent-slot: the intent with its probability, then each slot with its\n"
            "words, e.g.\n"
            "  intent: play_song_by_artist (0.97)\n"
            "  artist: 아이유\n"
            "Words are split at spaces, as in the training data.\n"
            "qa: the answer span in C with its score (start + end logit) and\n"
            "probability, e.g. `answer: 1545년 (score 9.12, p 0.83)`.\n"
            "pretrain: the TEXT with each [MASK] filled, the 5 best tokens of each,\n"
            "and with --context the probability that C follows TEXT.",
            opts);
        return 0;
    }
    if (!model)
        return driver_fail("predict: --model RUN_DIR is required (see --help)");
    if (question && !context)
        return driver_fail("predict: --question goes with --context");
    if (question) { /* asked first, then the TEXTs */
        if (npos == 256)
            return driver_fail("predict: too many texts");
        memmove(pos + 1, pos, (size_t)npos * sizeof *pos);
        pos[0] = question;
        npos++;
    }
    long long nthreads = 0;
    if (threads && args_int(threads, "threads", 1, 1024, &nthreads))
        return 1;
    cg_backend be = CG_BACKEND_DEFAULT;
    if (backend && cg_backend_parse(backend, &be))
        return driver_fail("predict: --backend expects ref or jit");

    ir_err e;
    rundir_run run;
    predictor p;
    memset(&p, 0, sizeof p);
    p.json = json != NULL;
    p.pair = context;
    rt_tensor_list params;
    rt_list_init(&params);
    ir_graph *g = NULL;
    int rc = 1;
    if (rundir_open(model, &run, &e)) {
        driver_fail(e.msg);
        return 1;
    }
    if (!(g = rundir_eval_graph(&run.model, run.task->eval_outputs, &e)) ||
        rundir_load_weights(&run, weights, g, &params, &e) ||
        rundir_task_open(&run, NULL, driver_note, NULL, &p.task, &e) ||
        rundir_runner_init(&p.rr, g, be, (int)nthreads, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    p.rr.params = &params;
    rc = 0;
    if (npos > 0) {
        for (int i = 0; i < npos && !rc; i++)
            rc = answer(&p, pos[i], NULL, i > 0) ? 1 : 0;
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long long lineno = 0;
        while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
            char where[64];
            snprintf(where, sizeof where, "stdin:%lld", lineno);
            rc = answer(&p, line, where, lineno > 1) ? 1 : 0;
        }
        free(line);
    }
done:
    if (p.task.ops)
        p.task.ops->close(p.task.state);
    rundir_runner_free(&p.rr);
    ir_graph_free(g);
    rt_list_free(&params);
    rundir_close(&run);
    return rc;
}
