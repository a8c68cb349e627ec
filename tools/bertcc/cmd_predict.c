/* cmd_predict.c: `bertcc predict --model RUN_DIR [TEXT...]` — answers raw text with a
 * trained run (rundir_predict, tasks/rundir.h): each TEXT argument, or each line of
 * standard input (one answer per line as it comes, so a program can talk to it). The
 * task formats the answer (intent-slot: "intent: NAME (P)" and one "slot: words" line
 * per slot; qa: "answer: SPAN (score S, p P)"; pretrain: the text with its [MASK]s
 * filled); --json prints one JSON object per text instead. A task that reads a pair of
 * texts (qa: a question about a context; pretrain: segments A and B) takes the second
 * with --context C: each TEXT (or --question Q, or each line of standard input) is then
 * asked about C. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

#include "../../tasks/rundir.h"
#include "../../support/file.h"
#include "args.h"
#include "driver.h"

static const char *model, *json, *weights, *threads, *backend, *question, *context, *top,
    *fuse;
static const arg_opt opts[] = {
    {"model", "RUN_DIR", "a run directory made by bertcc train --task (required)", &model},
    {"question", "Q", "qa: the question (with --context; or give questions as TEXT)",
     &question},
    {"context", "C",
     "qa: the passage the questions are about; pretrain: segment B (next-sentence "
     "probability)",
     &context},
    {"json", NULL, "one JSON object per text (JSON Lines)", &json},
    {"top", "K", "classify: the K most likely labels of each text (default 1)", &top},
    {"weights", "WHICH", "best (the default: best on dev), last, or a safetensors file",
     &weights},
    {"threads", "N", "number of threads (default: all cores)", &threads},
    {"backend", "NAME",
     "jit (generated code, the default) or ref (the reference interpreter)", &backend},
    {"fuse", "RULES", FUSE_HELP " (default: the run's)", &fuse},
    {NULL, NULL, NULL, NULL},
};

static const char about[] =
    "Answers each TEXT (or each line of standard input) with a trained run.\n"
    "intent-slot: the intent with its probability, then each slot with its\n"
    "words, e.g.\n"
    "  intent: play_song_by_artist (0.97)\n"
    "  artist: 아이유\n"
    "Words are split at spaces, as in the training data.\n"
    "qa: the answer span in C with its score (start + end logit) and\n"
    "probability, e.g. `answer: 1545년 (score 9.12, p 0.83)`.\n"
    "pretrain: the TEXT with each [MASK] filled, the 5 best tokens of each,\n"
    "and with --context the probability that C follows TEXT.\n"
    "classify: the label with its probability, one line per text, e.g.\n"
    "  command (0.93)\n"
    "(--top K: the K most likely, `command (0.93), question (0.05)`; --context C:\n"
    "C is the second text of a pair).";

static int answer(rundir_model *m, const char *text, const char *where, int blank_before)
{
    bc_err e;
    json_t *out = NULL;
    if (rundir_predict(m, text, context, &out, &e)) {
        fprintf(stderr, "bertcc: %s%s%s\n", where ? where : "", where ? ": " : "", e.msg);
        return -1;
    }
    int rc = 0;
    if (json) {
        char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
        rc = s ? (puts(s) < 0 ? -1 : 0) : -1;
        free(s);
    } else {
        if (blank_before && !m->task.ops->one_line)
            putchar('\n');
        rc = rundir_print_prediction(m, out, stdout);
    }
    json_decref(out);
    if (rc || fflush(stdout))
        return driver_fail("cannot write to standard output"), -1;
    return 0;
}

/* Each line of standard input, answered as it comes. */
static int answer_lines(rundir_model *m)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        n = (ssize_t)bc_drop_nul(line, (size_t)n); /* as the tokenizer would: not a cut */
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        char where[64];
        snprintf(where, sizeof where, "stdin:%lld", lineno);
        rc = answer(m, line, where, lineno > 1) ? 1 : 0;
    }
    free(line);
    return rc;
}

static int predict(const char **texts, int n, const rundir_model_opts *o)
{
    bc_err e;
    rundir_model m;
    if (rundir_model_open(&m, model, NULL, o, &e))
        return driver_fail(e.msg);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = answer(&m, texts[i], NULL, i > 0) ? 1 : 0;
    if (!n)
        rc = answer_lines(&m);
    rundir_model_close(&m);
    return rc;
}

int cmd_predict(int argc, char **argv)
{
    int help;
    const char *pos[256];
    int npos = args_parse(argc, argv, 2, opts, pos + 1, 255, &help, "predict");
    if (npos < 0)
        return 1;
    if (help)
        return args_usage("bertcc predict --model RUN_DIR [--json] [TEXT...]\n"
                          "       bertcc predict --model RUN_DIR --question Q --context C "
                          "[--json]",
                          about, opts),
               0;
    if (!model)
        return driver_fail("predict: --model RUN_DIR is required (see --help)");
    if (question && !context)
        return driver_fail("predict: --question goes with --context");
    pos[0] = question; /* asked first, then the TEXTs */
    long long nthreads = 0, k = 0;
    if ((threads && args_int(threads, "threads", 1, 1024, &nthreads)) ||
        (top && args_int(top, "top", 1, 1000, &k)))
        return 1;
    rundir_model_opts o = {weights, CG_BACKEND_DEFAULT, (int)nthreads, driver_note, NULL,
                           (int)k, fuse};
    if (backend && cg_backend_parse(backend, &o.backend))
        return driver_fail("predict: --backend expects ref or jit");
    return question ? predict(pos, npos + 1, &o) : predict(pos + 1, npos, &o);
}
