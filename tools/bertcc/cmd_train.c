/* cmd_train.c: `bertcc train` — trains a model with the engine of train/train.h,
 * either on a batch file (the `run` batch format with N rows; --task batches, the
 * default) or on a task's data (--task intent-slot, ...: tasks/task.h), which also
 * sizes the model from the vocabulary and the label sets, evaluates on dev after every
 * epoch, keeps the best weights and draws the curves. The training-mode graph
 * (dropout, driven by a "dropout_seed" input) is differentiated by pass_autodiff and
 * runs through cg_engine (--backend ref or jit). A run directory collects everything
 * (rundir.h); `--resume RUN_DIR` continues it exactly. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../../codegen/engine.h"
#include "../../frontend/frontend.h"
#include "../../passes/passes.h"
#include "../../train/batch.h"
#include "../../runtime/params.h"
#include "../../runtime/safetensors.h"
#include "../../tasks/task.h"
#include "../../train/train.h"
#include "args.h"
#include "driver.h"
#include "../../tasks/rundir.h"

#define MAX_FREEZE 64
#define MAX_TASK_OPTS 32

typedef struct train_args {
    const char *model, *data, *out, *task, *init, *resume, *epochs, *steps, *batch_size;
    const char *accum, *lr, *warmup, *weight_decay, *clip, *eps, *freeze, *seed, *threads;
    const char *backend, *save_every, *log_every, *quiet;
    const char *vocab, *lower, *no_lower, *strip, *no_strip, *no_eval, *eval_batch;
    const char *group;
    const char *frozen[MAX_FREEZE];
    int nfrozen;
    /* Task options, by name (the union over every task's options). */
    const char *topt_name[MAX_TASK_OPTS];
    const char *topt_value[MAX_TASK_OPTS];
    int ntopt;
} train_args;

/* ---- Ctrl-C ----------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- options.json ------------------------------------------------------------------- */

/* The options a resumed run takes from options.json when its command line omits them. */
typedef struct persisted {
    const char *key;
    size_t off; /* of the const char * in train_args */
} persisted;

#define P(key, field)                                                                      \
    {                                                                                      \
        key, offsetof(train_args, field)                                                   \
    }
static const persisted persist[] = {
    P("data", data),
    P("task", task),
    P("epochs", epochs),
    P("steps", steps),
    P("batch-size", batch_size),
    P("accum", accum),
    P("lr", lr),
    P("warmup", warmup),
    P("weight-decay", weight_decay),
    P("clip", clip),
    P("eps", eps),
    P("seed", seed),
    P("threads", threads),
    P("backend", backend),
    P("save-every", save_every),
    P("init", init),
    P("log-every", log_every),
    P("eval-batch-size", eval_batch),
};
#undef P

static const char **field(train_args *a, const persisted *p)
{
    return (const char **)((char *)a + p->off);
}

/* A JSON scalar as a string kept in j (numbers are converted once). */
static const char *json_str(json_t *j, const char *key, json_t *v)
{
    if (json_is_string(v))
        return json_string_value(v);
    char buf[64], k[128];
    if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
    else if (json_is_true(v))
        snprintf(buf, sizeof buf, "1");
    else
        return NULL;
    snprintf(k, sizeof k, "_str.%s", key);
    json_object_set_new(j, k, json_string(buf));
    return json_string_value(json_object_get(j, k));
}

/* Fills the options a left unset from RUN_DIR/options.json. Strings made here are
 * kept in *keep (freed by the caller). */
static int merge_options(train_args *a, const char *dir, json_t **keep)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/options.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        fprintf(stderr, "bertcc train: %s: %s\n", path, j ? "not a JSON object" : je.text);
        return -1;
    }
    *keep = j;
    /* The length of the run is one choice: --epochs or --steps on the command line
     * replaces the stored one. */
    int length_given = a->epochs || a->steps;
    for (size_t i = 0; i < sizeof persist / sizeof *persist; i++) {
        const char **f = field(a, &persist[i]);
        json_t *v = json_object_get(j, persist[i].key);
        if (*f || !v || json_is_null(v))
            continue;
        if (length_given && (f == &a->epochs || f == &a->steps))
            continue;
        *f = json_str(j, persist[i].key, v);
    }
    if (!a->no_eval && json_is_true(json_object_get(j, "no-eval")))
        a->no_eval = "1";
    if (!a->group && json_is_true(json_object_get(j, "group-by-length")))
        a->group = "1";
    json_t *fr = json_object_get(j, "freeze");
    if (!a->nfrozen && json_is_array(fr)) {
        size_t k;
        json_t *v;
        json_array_foreach(fr, k, v)
        {
            if (json_is_string(v) && a->nfrozen < MAX_FREEZE)
                a->frozen[a->nfrozen++] = json_string_value(v);
        }
    }
    json_t *to = json_object_get(j, "task_options");
    for (int i = 0; i < a->ntopt; i++) {
        json_t *v = json_object_get(to, a->topt_name[i]);
        if (!a->topt_value[i] && v && !json_is_null(v)) {
            char key[128];
            snprintf(key, sizeof key, "task.%s", a->topt_name[i]);
            a->topt_value[i] = json_str(j, key, v);
        }
    }
    json_t *tok = json_object_get(j, "tokenizer");
    rt_tok_opts t;
    if (tok && !a->lower && !a->no_lower && !a->strip && !a->no_strip &&
        !rundir_tok_from_json(tok, &t)) {
        a->lower = t.lowercase ? "1" : NULL;
        a->no_lower = t.lowercase ? NULL : "1";
        a->strip = t.strip_accents == 1 ? "1" : NULL;
        a->no_strip = t.strip_accents == 0 ? "1" : NULL;
    }
    return 0;
}

static int write_options(const train_args *a, const rt_train_opts *o, int64_t rows,
                         int64_t total, const char *task, const rt_task_ops *ops,
                         void *task_state, const rt_tok_opts *tok, const char *backend,
                         const char *path)
{
    /* Absolute paths, so that a resumed run finds them from anywhere. */
    char *model = realpath(a->model, NULL), *data = realpath(a->data, NULL);
    char *init = a->init ? realpath(a->init, NULL) : NULL;
    char *vocab = a->vocab ? realpath(a->vocab, NULL) : NULL;
    json_t *fr = json_array();
    for (int i = 0; i < a->nfrozen; i++)
        json_array_append_new(fr, json_string(a->frozen[i]));
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:o, s:I, s:o, "
        "s:s, s:I, s:o, s:I, s:I, s:f, s:f}",
        "model", model ? model : a->model, "data", data ? data : a->data, "task", task,
        "init", a->init ? json_string(init ? init : a->init) : json_null(), "epochs",
        o->steps ? json_null() : json_integer(o->epochs), "steps",
        o->steps ? json_integer(o->steps) : json_null(), "batch-size",
        (json_int_t)o->batch_size, "accum", (json_int_t)o->accum, "lr", o->adam.lr,
        "warmup", o->adam.warmup, "weight-decay", o->adam.weight_decay, "clip",
        o->adam.clip, "eps", o->adam.eps, "freeze", fr, "seed", (json_int_t)o->seed,
        "threads", a->threads ? json_string(a->threads) : json_null(), "backend", backend,
        "save-every", (json_int_t)o->save_every, "log-every",
        a->log_every ? json_string(a->log_every) : json_null(), "rows", (json_int_t)rows,
        "total_steps", (json_int_t)total, "beta1", o->adam.beta1, "beta2", o->adam.beta2);
    if (j && ops) {
        json_t *to = json_object();
        for (int i = 0; ops->options && ops->options[i].name; i++) {
            char v[256];
            ops->option_value(task_state, i, v, sizeof v);
            json_object_set_new(to, ops->options[i].name, json_string(v));
        }
        json_object_set_new(j, "task_options", to);
        json_object_set_new(j, "tokenizer", rundir_tok_json(tok));
        json_object_set_new(j, "vocab",
                            json_string(vocab      ? vocab
                                        : a->vocab ? a->vocab
                                                   : ""));
        json_object_set_new(j, "no-eval", json_boolean(a->no_eval != NULL));
        json_object_set_new(j, "eval-batch-size",
                            a->eval_batch ? json_string(a->eval_batch) : json_null());
    }
    if (j)
        json_object_set_new(j, "group-by-length", json_boolean(a->group != NULL));
    int rc = j ? json_dump_file(j, path, JSON_INDENT(2)) : -1;
    json_decref(j);
    free(model);
    free(data);
    free(init);
    free(vocab);
    return rc;
}

/* ---- dev evaluation at the end of every epoch (the engine's on_step hook) ------------ */

typedef struct eval_hook {
    rt_task task;
    rundir_runner *runner; /* the eval graph, reading the trained params */
    const rt_tensor_list *params;
    const char *dir, *title;
    int64_t upe, total;
    int eval_batch;
    rt_metrics best;
    int have_best;
    int failed;
    ir_err err;
    FILE *progress;
    int tty;
    rt_metrics last;
    int evaluated;
} eval_hook;

static void print_metrics(FILE *f, const rt_metrics *m)
{
    for (int i = 0; i < m->n; i++)
        fprintf(f, "%s%s %.4f", i ? "  " : "", m->name[i], m->value[i]);
}

static void on_step(void *ctx, const rt_train_progress *p)
{
    eval_hook *h = ctx;
    if (h->failed || (p->step % h->upe && p->step != h->total))
        return;
    double t0 = now();
    rt_metrics m;
    if (h->task.ops->evaluate(h->task.state, RT_SPLIT_DEV, h->eval_batch, rundir_forward,
                              h->runner, &m, &h->err)) {
        ir_err_prefix(&h->err, "dev evaluation at step %lld", (long long)p->step);
        h->failed = 1;
        interrupted = 1; /* the engine checkpoints and returns */
        return;
    }
    int best = !h->have_best || rt_task_compare(h->task.ops, &m, &h->best) > 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", h->dir, RUNDIR_BEST);
    int64_t from = (p->step - 1) / h->upe * h->upe;
    double loss = rundir_mean_loss(h->dir, from, p->step);
    if ((best && rt_st_save(path, h->params, &h->err)) ||
        rundir_metrics_append(h->dir, p->step, p->epoch, loss, &m, best, &h->err) ||
        rundir_plot(h->dir, h->title, &h->err)) {
        h->failed = 1;
        interrupted = 1;
        return;
    }
    if (best) {
        h->best = m;
        h->have_best = 1;
    }
    h->last = m;
    h->evaluated = 1;
    if (h->progress) {
        fprintf(h->progress, "%sdev @ epoch %.2f: ", h->tty ? "\n" : "", p->epoch);
        print_metrics(h->progress, &m);
        fprintf(h->progress, "%s  (%.1f s)\n", best ? "  [best]" : "", now() - t0);
        fflush(h->progress);
    }
}

/* ---- the command --------------------------------------------------------------------- */

static int parse_real(const char *s, const char *opt, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "bertcc: --%s expects a number in [%g, %g], got '%s'\n", opt, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_opts(const train_args *a, rt_train_opts *o)
{
    long long v;
    rt_train_defaults(o);
#define INT_OPT(str, name, lo, hi, dst)                                                    \
    if (str) {                                                                             \
        if (args_int(str, name, lo, hi, &v))                                               \
            return -1;                                                                     \
        dst = v;                                                                           \
    }
    INT_OPT(a->epochs, "epochs", 1, 1000000, o->epochs)
    INT_OPT(a->steps, "steps", 1, (long long)1 << 40, o->steps)
    INT_OPT(a->batch_size, "batch-size", 1, (long long)1 << 30, o->batch_size)
    INT_OPT(a->accum, "accum", 1, 1 << 20, o->accum)
    INT_OPT(a->seed, "seed", 0, (long long)(~0ULL >> 1), o->seed)
    INT_OPT(a->save_every, "save-every", 0, (long long)1 << 40, o->save_every)
    INT_OPT(a->log_every, "log-every", 1, (long long)1 << 40, o->progress_every)
#undef INT_OPT
    if ((a->lr && parse_real(a->lr, "lr", 0, 10, &o->adam.lr)) ||
        (a->warmup && parse_real(a->warmup, "warmup", 0, 1, &o->adam.warmup)) ||
        (a->weight_decay &&
         parse_real(a->weight_decay, "weight-decay", 0, 10, &o->adam.weight_decay)) ||
        (a->clip && parse_real(a->clip, "clip", 0, 1e30, &o->adam.clip)) ||
        (a->eps && parse_real(a->eps, "eps", 1e-30, 1, &o->adam.eps)))
        return -1;
    o->frozen = a->frozen;
    o->nfrozen = a->nfrozen;
    o->group_by_length = a->group != NULL;
    o->progress = a->quiet ? NULL : stderr;
    return 0;
}

static int dir_has(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* A tokenizer_config.json boolean v for the pair --NAME / --no-NAME, unless the
 * command line gave either: sets *yes or *no and notes it. */
static void flag_from_config(json_t *v, const char *name, const char **yes, const char **no,
                             const char *path)
{
    if (!json_is_boolean(v) || *yes || *no)
        return;
    *(json_is_true(v) ? yes : no) = "";
    char msg[4200];
    snprintf(msg, sizeof msg, "tokenizer: --%s%s from %s", json_is_true(v) ? "" : "no-",
             name, path);
    driver_note(NULL, msg);
}

/* --init DIR: a Hugging Face model directory. The weights are DIR/model.safetensors;
 * DIR/vocab.txt is the vocabulary unless --vocab names one, and the casing recorded in
 * DIR/tokenizer_config.json (do_lower_case, strip_accents) applies unless the command
 * line sets it. init_path and vocab_path receive the paths. */
static int init_from_dir(train_args *a, char *init_path, size_t cap, char *vocab_path,
                         size_t vcap)
{
    struct stat st;
    if (!a->init || stat(a->init, &st) || !S_ISDIR(st.st_mode))
        return 0;
    const char *dir = a->init;
    if (!dir_has(dir, "model.safetensors")) {
        fprintf(stderr,
                "bertcc train: --init %s: no model.safetensors in the directory%s\n", dir,
                dir_has(dir, "pytorch_model.bin")
                    ? " (only pytorch_model.bin: convert it first, e.g. with "
                      "safetensors.torch.save_file(torch.load(...)))"
                    : "");
        return -1;
    }
    snprintf(init_path, cap, "%s/model.safetensors", dir);
    if (!a->vocab && dir_has(dir, "vocab.txt")) {
        snprintf(vocab_path, vcap, "%s/vocab.txt", dir);
        a->vocab = vocab_path;
        char msg[4200];
        snprintf(msg, sizeof msg, "vocabulary: %s", vocab_path);
        driver_note(NULL, msg);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_error_t je;
    json_t *tc =
        dir_has(dir, "tokenizer_config.json") ? json_load_file(path, 0, &je) : NULL;
    if (dir_has(dir, "tokenizer_config.json") && !tc) {
        fprintf(stderr, "bertcc train: %s:%d: %s\n", path, je.line, je.text);
        return -1;
    }
    flag_from_config(json_object_get(tc, "do_lower_case"), "lowercase", &a->lower,
                     &a->no_lower, path);
    flag_from_config(json_object_get(tc, "strip_accents"), "strip-accents", &a->strip,
                     &a->no_strip, path);
    json_decref(tc);
    a->init = init_path;
    return 0;
}

static int copy_file(const char *from, const char *to, ir_err *e)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return ir_errf(e, "%s: cannot read: %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return ir_errf(e, "%s: cannot write: %s", to, strerror(errno));
    }
    char buf[65536];
    size_t n;
    int ok = 1;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ok &= fwrite(buf, 1, n, out) == n;
    ok &= !ferror(in);
    fclose(in);
    if (fclose(out) || !ok)
        return ir_errf(e, "%s: cannot write", to);
    return 0;
}

/* The task options given for ops: values[i] for ops->options[i]; an option of another
 * task is an error. */
static int task_values(const train_args *a, const rt_task_ops *ops, const char **values)
{
    for (int k = 0; k < a->ntopt; k++) {
        int found = 0;
        for (int i = 0; ops && ops->options && ops->options[i].name; i++)
            if (!strcmp(ops->options[i].name, a->topt_name[k])) {
                values[i] = a->topt_value[k];
                found = 1;
            }
        if (!found && a->topt_value[k]) {
            fprintf(stderr, "bertcc train: --%s is not an option of --task %s\n",
                    a->topt_name[k], ops ? ops->name : "batches");
            return -1;
        }
    }
    return 0;
}

static int train(train_args *a)
{
    fe_model m;
    ir_err e;
    rt_tensor_list batch, data, params, ckpt, state;
    rt_list_init(&batch);
    rt_list_init(&data);
    rt_list_init(&params);
    rt_list_init(&ckpt);
    rt_list_init(&state);
    ir_graph *g = NULL, *eg = NULL;
    json_t *kept = NULL, *metric_names = NULL;
    rt_vocab *vocab = NULL;
    rt_task task = {NULL, NULL};
    rundir_runner step_runner = {0}, eval_runner = {0};
    int rc = 1;
    char path[4096], model_path[4096], vocab_path[4096], init_path[4096];
    const char *tvals[MAX_TASK_OPTS] = {NULL};
    if (a->resume) {
        if (merge_options(a, a->resume, &kept))
            goto done;
        if (!a->model) {
            snprintf(model_path, sizeof model_path, "%s/model.xml", a->resume);
            a->model = model_path;
        }
        if (!a->out)
            a->out = a->resume;
        if (!a->vocab && dir_has(a->resume, RUNDIR_VOCAB)) {
            snprintf(vocab_path, sizeof vocab_path, "%s/%s", a->resume, RUNDIR_VOCAB);
            a->vocab = vocab_path;
        }
    }
    if (init_from_dir(a, init_path, sizeof init_path, vocab_path, sizeof vocab_path))
        goto done;
    if (!a->model || !a->data || !a->out) {
        driver_fail("train: a model, --data and -o are required (see bertcc train --help)");
        goto done;
    }
    const char *task_name = a->task ? a->task : "batches";
    const rt_task_ops *ops = NULL;
    if (strcmp(task_name, "batches") && !(ops = rundir_task_find(task_name))) {
        fprintf(stderr, "bertcc train: unknown --task '%s' (batches", task_name);
        for (int i = 0; rundir_tasks[i]; i++)
            fprintf(stderr, ", %s", rundir_tasks[i]->name);
        fprintf(stderr, ")\n");
        goto done;
    }
    if (task_values(a, ops, tvals))
        goto done;
    cg_backend backend = CG_BACKEND_DEFAULT;
    if (a->backend && cg_backend_parse(a->backend, &backend)) {
        driver_fail("train: --backend expects ref or jit");
        goto done;
    }
    const char *backend_name = backend == CG_BACKEND_JIT ? "jit" : "ref";
    rt_train_opts o;
    long long threads = 0, eval_batch = 64;
    if (parse_opts(a, &o) ||
        (a->threads && args_int(a->threads, "threads", 1, 1024, &threads)) ||
        (a->eval_batch &&
         args_int(a->eval_batch, "eval-batch-size", 1, 1 << 20, &eval_batch)))
        goto done;
    if (a->lower && a->no_lower) {
        driver_fail("--lowercase and --no-lowercase contradict each other");
        goto done;
    }
    if (a->strip && a->no_strip) {
        driver_fail("--strip-accents and --no-strip-accents contradict each other");
        goto done;
    }
    rt_tok_opts tok = {a->no_lower ? 0 : 1, a->strip ? 1 : a->no_strip ? 0 : -1};

    /* The model and the data. */
    unsigned present = 0;
    int64_t B = 0, S = 0, mlm_gather = 0;
    if (fe_load(a->model, &m, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    if (ops) {
        if (!a->vocab) {
            driver_fail("train: --task needs --vocab VOCAB.txt (see bertcc train --help)");
            goto done;
        }
        if (!(vocab = rt_vocab_load(a->vocab, &e))) {
            driver_fail(e.msg);
            goto done;
        }
        rt_task_config tc = {a->data, a->resume,      vocab,       tok,
                             tvals,   m.max_position, driver_note, NULL};
        task.ops = ops;
        if (ops->open(&tc, &task.state, &e)) {
            driver_fail(e.msg);
            goto done;
        }
        /* The sized copy: the vocabulary's size and exactly the task's heads. */
        rt_task_heads h = {0};
        ops->heads(task.state, &h);
        mlm_gather = h.labels & RT_LABEL_MLM ? h.mlm_predictions : 0;
        m.vocab_size = rt_vocab_size(vocab);
        m.head_mask = h.labels;
        m.intent_classes = h.labels & FE_HEAD_INTENT ? h.intent_classes : 0;
        m.slot_labels = h.labels & FE_HEAD_SLOT ? h.slot_labels : 0;
        if (fe_model_check(&m, &e)) {
            fprintf(stderr, "bertcc train: %s sized for %s: %s\n", a->model, ops->name,
                    e.msg);
            goto done;
        }
        if (ops->data(task.state, RT_SPLIT_TRAIN, &data, &e)) {
            driver_fail(e.msg);
            goto done;
        }
        if (!a->no_eval) {
            /* Dev is read now, so that a missing split (or its unseen labels) shows
             * before the first epoch rather than after it. */
            rt_tensor_list dev;
            rt_list_init(&dev);
            int bad = ops->data(task.state, RT_SPLIT_DEV, &dev, &e);
            rt_list_free(&dev);
            if (bad) {
                fprintf(stderr,
                        "bertcc train: %s (--no-eval trains without dev evaluation)\n",
                        e.msg);
                goto done;
            }
        }
        present = h.labels;
        B = data.t[0].shape[0];
        S = data.t[0].rank > 1 ? data.t[0].shape[1] : 1;
    } else {
        if (a->vocab || a->no_eval || a->eval_batch) {
            driver_fail("train: --vocab, --no-eval and --eval-batch-size go with --task");
            goto done;
        }
        if (rt_st_load(a->data, &batch, &e)) {
            driver_fail(e.msg);
            goto done;
        }
        if (rt_batch_prepare(&batch, m.max_position, m.head_mask & FE_LABEL_ALL, &data,
                             &present, &B, &S, driver_note, NULL, &e)) {
            fprintf(stderr, "bertcc: %s: %s\n", a->data, e.msg);
            goto done;
        }
        if (!present) {
            fprintf(stderr,
                    "bertcc train: %s has no labels for the heads of %s: nothing to "
                    "train\n",
                    a->data, a->model);
            goto done;
        }
    }
    if (!(g = rundir_train_graph(&m, present, a->frozen, a->nfrozen, mlm_gather, &e))) {
        driver_fail(e.msg);
        goto done;
    }

    /* The parameters: a previous run's, a checkpoint's (what it lacks initialized), or
     * BERT's initialization. */
    if (a->resume) {
        snprintf(path, sizeof path, "%s/%s", a->resume, RT_TRAIN_WEIGHTS);
        char opath[4096];
        snprintf(opath, sizeof opath, "%s/%s", a->resume, RT_TRAIN_OPTIM);
        if (rt_st_load(path, &ckpt, &e) ||
            rt_params_from_checkpoint(g, &ckpt, 0, 0, &params, driver_note, NULL, &e) ||
            rt_st_load(opath, &state, &e)) {
            if (strncmp(e.msg, a->resume, strlen(a->resume)))
                ir_err_prefix(&e, "%s", a->resume);
            driver_fail(e.msg);
            goto done;
        }
    } else if (a->init) {
        if (rt_st_load(a->init, &ckpt, &e) ||
            rt_params_from_checkpoint(g, &ckpt, 1, o.seed, &params, driver_note, NULL,
                                      &e)) {
            if (strncmp(e.msg, a->init, strlen(a->init)))
                ir_err_prefix(&e, "%s", a->init);
            driver_fail(e.msg);
            goto done;
        }
    } else if (rt_params_init(g, o.seed, &params, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    rt_list_free(&ckpt);
    for (int i = 0; i < a->nfrozen; i++) {
        int hits = 0;
        for (int k = 0; k < params.n; k++)
            hits += rt_param_is_frozen(params.t[k].name, &a->frozen[i], 1);
        if (!hits) {
            fprintf(stderr, "bertcc train: --freeze %s matches no parameter of %s\n",
                    a->frozen[i], a->model);
            goto done;
        }
    }

    /* The run directory. */
    if (mkdir(a->out, 0777) && errno != EEXIST) {
        fprintf(stderr, "bertcc train: cannot create %s: %s\n", a->out, strerror(errno));
        goto done;
    }
    if (!a->resume &&
        (dir_has(a->out, RT_TRAIN_WEIGHTS) || dir_has(a->out, RT_TRAIN_OPTIM))) {
        fprintf(stderr,
                "bertcc train: %s already holds a run; continue it with --resume %s "
                "or choose another directory\n",
                a->out, a->out);
        goto done;
    }
    int64_t total = rt_train_total_steps(&o, B);
    snprintf(path, sizeof path, "%s/model.xml", a->out);
    if (strcmp(a->model, path) && fe_write_xml(&m, path, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    if (ops && !a->resume) {
        static const char *const stale[] = {RUNDIR_METRICS, RUNDIR_BEST, RUNDIR_PLOT};
        for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) {
            snprintf(path, sizeof path, "%s/%s", a->out, stale[i]);
            remove(path);
        }
        snprintf(path, sizeof path, "%s/%s", a->out, RUNDIR_VOCAB);
        if (copy_file(a->vocab, path, &e) || ops->save(task.state, a->out, &e)) {
            driver_fail(e.msg);
            goto done;
        }
    }
    snprintf(path, sizeof path, "%s/options.json", a->out);
    if (write_options(a, &o, B, total, task_name, ops, task.state, &tok, backend_name,
                      path)) {
        fprintf(stderr, "bertcc train: cannot write %s\n", path);
        goto done;
    }

    /* The engines: the training graph, and the eval graph for dev. */
    if (rundir_runner_init(&step_runner, g, backend, (int)threads, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    step_runner.task = ops;
    step_runner.task_state = task.state;
    eval_hook hook;
    memset(&hook, 0, sizeof hook);
    if (ops && !a->no_eval) {
        if (!(eg = rundir_eval_graph(&m, ops->eval_outputs, &e)) ||
            rundir_runner_init(&eval_runner, eg, backend, (int)threads, &e)) {
            driver_fail(e.msg);
            goto done;
        }
        eval_runner.params = &params;
        hook.task = task;
        hook.runner = &eval_runner;
        hook.params = &params;
        hook.dir = a->out;
        hook.title = m.name;
        hook.upe = rt_train_updates_per_epoch(&o, B);
        hook.total = total;
        hook.eval_batch = (int)eval_batch;
        hook.progress = o.progress;
        hook.tty = o.progress && isatty(fileno(o.progress));
        if (a->resume) {
            const rt_tensor *st = rt_list_cfind(&state, "step");
            int64_t at = st && st->dtype == RT_I64 ? *(const int64_t *)st->data : 0;
            if (rundir_metrics_resume(a->out, at, ops, &hook.best, &hook.have_best,
                                      &metric_names, &e)) {
                driver_fail(e.msg);
                goto done;
            }
        }
        o.on_step = on_step;
        o.hook_ctx = &hook;
    }

    /* Train. */
    if (ops && ops->refill) {
        o.refill = ops->refill;
        o.refill_ctx = task.state;
    }
    o.out_dir = a->out;
    o.stop = &interrupted;
    interrupted = 0;
    void (*old)(int) = signal(SIGINT, on_sigint);
    if (!a->quiet)
        fprintf(stderr,
                "bertcc train: %s, %lld rows of %lld tokens, micro-batches of %lld rows, "
                "%lld per update, %lld updates, backend %s\n",
                m.name, (long long)B, (long long)S, (long long)o.batch_size,
                (long long)o.accum, (long long)total, backend_name);
    rt_train_result res;
    int trc = rt_train(&o, rundir_step, &step_runner, &params, &data,
                       a->resume ? &state : NULL, &res, &e);
    signal(SIGINT, old == SIG_ERR ? SIG_DFL : old);
    if (trc) {
        driver_fail(e.msg);
        goto done;
    }
    if (hook.failed) {
        fprintf(stderr,
                "bertcc train: %s (checkpoint at step %lld in %s; --no-eval trains "
                "without dev evaluation)\n",
                hook.err.msg, (long long)res.step, a->out);
        goto done;
    }
    if (ops && rundir_plot(a->out, m.name, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    if (res.stopped) {
        fprintf(stderr,
                "bertcc train: interrupted at step %lld/%lld; checkpoint in %s (continue "
                "with: bertcc train --resume %s)\n",
                (long long)res.step, (long long)res.total, a->out, a->out);
        rc = 130;
        goto done;
    }
    if (!a->quiet && res.step == res.start_step)
        fprintf(stderr,
                "bertcc train: %s is complete (%lld/%lld steps); give a larger "
                "--steps or --epochs to train further\n",
                a->out, (long long)res.step, (long long)res.total);
    else if (!a->quiet)
        fprintf(stderr,
                "bertcc train: %lld/%lld steps, final loss %.6g; weights in %s/%s\n",
                (long long)res.step, (long long)res.total, res.last_loss, a->out,
                RT_TRAIN_WEIGHTS);
    if (!a->quiet && hook.have_best) {
        fprintf(stderr, "bertcc train: best on dev (%s): ", RUNDIR_BEST);
        print_metrics(stderr, &hook.best);
        fputc('\n', stderr);
    }
    rc = 0;
done:
    rundir_runner_free(&step_runner);
    rundir_runner_free(&eval_runner);
    if (task.ops)
        task.ops->close(task.state);
    rt_vocab_free(vocab);
    ir_graph_free(g);
    ir_graph_free(eg);
    json_decref(kept);
    json_decref(metric_names);
    rt_list_free(&batch);
    rt_list_free(&data);
    rt_list_free(&params);
    rt_list_free(&ckpt);
    rt_list_free(&state);
    return rc;
}

/* Every --freeze PREFIX (the option parser keeps only the last of a repeated option),
 * each possibly a comma-separated list. */
static int collect_freeze(int argc, char **argv, train_args *a, char **copies)
{
    int nc = 0;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--freeze") && i + 1 < argc)
            v = argv[++i];
        else if (!strncmp(argv[i], "--freeze=", 9))
            v = argv[i] + 9;
        if (!v)
            continue;
        if (nc == MAX_FREEZE)
            return driver_fail("train: too many --freeze options"), -1;
        char *c = copies[nc++] = strdup(v);
        for (char *tok = c ? strtok(c, ",") : NULL; tok; tok = strtok(NULL, ",")) {
            if (a->nfrozen == MAX_FREEZE)
                return driver_fail("train: too many --freeze prefixes"), -1;
            a->frozen[a->nfrozen++] = tok;
        }
    }
    return 0;
}

#define BASE_OPTS 30

int cmd_train(int argc, char **argv)
{
    train_args a;
    memset(&a, 0, sizeof a);
    arg_opt opts[BASE_OPTS + MAX_TASK_OPTS + 1] = {
        {"data", "PATH",
         "a batch file (the run batch format, N rows), or the task's data "
         "(intent-slot: DIR/{train,dev,test}/{seq.in,seq.out,label}; qa: a SQuAD v1.1 "
         "JSON file; pretrain: a corpus, one sentence per line and a blank line between "
         "documents, or a pretrain-data file)",
         &a.data},
        {"o", "RUN_DIR", "run directory (weights, optimizer state, logs, options)", &a.out},
        {"task", "NAME", "batches (default), intent-slot, qa or pretrain", &a.task},
        {"vocab", "VOCAB.txt", "the vocabulary (with --task; sets the model's vocab-size)",
         &a.vocab},
        {"lowercase", NULL, "lower-case the text (the default)", &a.lower},
        {"no-lowercase", NULL, "keep case (for a cased vocabulary)", &a.no_lower},
        {"strip-accents", NULL, "strip accents even without lower-casing", &a.strip},
        {"no-strip-accents", NULL, "keep accents (and Hangul syllables) when lower-casing",
         &a.no_strip},
        {"init", "CKPT",
         "start from a checkpoint: a .safetensors file or a Hugging Face model "
         "directory (model.safetensors; its vocab.txt and tokenizer_config.json casing "
         "unless given); what it lacks is initialized and listed",
         &a.init},
        {"resume", "RUN_DIR",
         "continue a stopped run exactly (its options are the "
         "defaults)",
         &a.resume},
        {"epochs", "N", "passes over the data (default 3)", &a.epochs},
        {"steps", "N", "total optimizer updates instead of --epochs", &a.steps},
        {"batch-size", "N", "rows per micro-batch (default 8)", &a.batch_size},
        {"accum", "N", "micro-batches per update, gradients averaged (default 1)",
         &a.accum},
        {"lr", "X", "peak learning rate (default 5e-5)", &a.lr},
        {"warmup", "F", "linear warm-up, fraction of the updates (default 0.1)", &a.warmup},
        {"weight-decay", "X",
         "AdamW decoupled weight decay, not on biases and LayerNorm "
         "(default 0.01)",
         &a.weight_decay},
        {"clip", "X", "max global gradient norm, 0: off (default 1.0)", &a.clip},
        {"eps", "X", "AdamW epsilon (default 1e-6 as transformers.AdamW; torch: 1e-8)",
         &a.eps},
        {"freeze", "PREFIX",
         "never update parameters whose name starts with PREFIX "
         "(repeatable)",
         &a.freeze},
        {"seed", "N", "initialization, shuffling and dropout (default 0)", &a.seed},
        {"threads", "N", "number of threads (default: all cores)", &a.threads},
        {"backend", "NAME",
         "jit (generated code, the default) or ref (the reference interpreter)",
         &a.backend},
        {"save-every", "N", "also checkpoint every N updates (default: at the end)",
         &a.save_every},
        {"log-every", "N", "progress line every N updates when stderr is not a terminal",
         &a.log_every},
        {"no-eval", NULL, "with --task: no dev evaluation after each epoch", &a.no_eval},
        {"group-by-length", NULL,
         "micro-batches of rows of similar length (sorted within runs of 50 "
         "micro-batches after shuffling): less padding, faster epochs",
         &a.group},
        {"eval-batch-size", "N", "with --task: rows per dev batch (default 64)",
         &a.eval_batch},
        {"quiet", NULL, "no progress or summary on stderr", &a.quiet},
        {NULL, NULL, NULL, NULL},
    };
    /* The tasks' own options, each name once; an option of several tasks shows each
     * task's help. */
    static char task_help[MAX_TASK_OPTS][1024];
    int n = 0;
    while (opts[n].name)
        n++;
    for (int t = 0; rundir_tasks[t]; t++)
        for (const rt_task_option *to = rundir_tasks[t]->options; to && to->name; to++) {
            int dup = -1;
            for (int k = 0; k < a.ntopt; k++)
                if (!strcmp(a.topt_name[k], to->name))
                    dup = k;
            if (dup >= 0) {
                size_t at = strlen(task_help[dup]);
                snprintf(task_help[dup] + at, sizeof task_help[dup] - at, "; (%s) %s",
                         rundir_tasks[t]->name, to->help);
                continue;
            }
            if (a.ntopt == MAX_TASK_OPTS)
                continue;
            a.topt_name[a.ntopt] = to->name;
            snprintf(task_help[a.ntopt], sizeof task_help[a.ntopt], "(%s) %s",
                     rundir_tasks[t]->name, to->help);
            opts[n++] =
                (arg_opt){to->name, to->value, task_help[a.ntopt], &a.topt_value[a.ntopt]};
            a.ntopt++;
        }
    opts[n] = (arg_opt){NULL, NULL, NULL, NULL};
    const char *pos[1] = {NULL};
    int help;
    int npos = args_parse(argc, argv, 2, opts, pos, 1, &help, "train");
    if (npos < 0)
        return 1;
    if (help) {
        args_usage(
            "bertcc train MODEL.xml --data B.safetensors -o RUN_DIR [options]\n"
            "       bertcc train MODEL.xml --task intent-slot --data DIR --vocab V -o "
            "RUN_DIR [options]\n"
            "       bertcc train MODEL.xml --task qa --data F.json (--eval-data D.json | "
            "--holdout K) --vocab V -o RUN_DIR\n"
            "       bertcc train MODEL.xml --task pretrain --data "
            "CORPUS.txt|DATA.safetensors "
            "--vocab V -o RUN_DIR\n"
            "       bertcc train --resume RUN_DIR [options]",
            "Trains MODEL (AdamW, linear warm-up and decay, gradient clipping) on the\n"
            "rows of a batch file, or on a task's data, shuffled every epoch. With\n"
            "--task, the model description gives the encoder; the vocabulary and the\n"
            "label sets size it (RUN_DIR/model.xml), dev is evaluated after each epoch\n"
            "(RUN_DIR/metrics.csv, curves.svg) and the best weights are kept\n"
            "(RUN_DIR/best.safetensors). Ctrl-C writes a checkpoint and stops; --resume\n"
            "continues with the same losses as an uninterrupted run (given the same\n"
            "--threads and backend). The options marked (TASK) belong to that task.",
            opts);
        return 0;
    }
    if (a.epochs && a.steps)
        return driver_fail("train: give --epochs or --steps, not both");
    a.model = npos ? pos[0] : NULL;
    if (!a.model && !a.resume)
        return driver_fail(
            "train: expected one model description (see bertcc train --help)");
    char *copies[MAX_FREEZE] = {NULL};
    int rc = collect_freeze(argc, argv, &a, copies) ? 1 : train(&a);
    for (int i = 0; i < MAX_FREEZE; i++)
        free(copies[i]);
    return rc;
}
