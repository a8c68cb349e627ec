/* cmd_train.c: `bertcc train` — trains a model on a batch file (the `run` batch format
 * with N rows) with the engine of runtime/train.h. The training-mode graph (dropout,
 * driven by a "dropout_seed" input) is differentiated by pass_autodiff, and each
 * micro-batch runs through the reference interpreter. A run directory collects
 * model.xml, options.json, weights.safetensors, optimizer.safetensors and
 * train_log.csv; `--resume RUN_DIR` continues it exactly. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../../frontend/frontend.h"
#include "../../passes/passes.h"
#include "../../runtime/batch.h"
#include "../../runtime/interp.h"
#include "../../runtime/params.h"
#include "../../runtime/safetensors.h"
#include "../../runtime/train.h"
#include "args.h"
#include "driver.h"

#define MAX_FREEZE 64

typedef struct train_args {
    const char *model, *data, *out, *task, *init, *resume, *epochs, *steps, *batch_size;
    const char *accum, *lr, *warmup, *weight_decay, *clip, *eps, *freeze, *seed, *threads;
    const char *backend, *save_every, *log_every, *quiet;
    const char *frozen[MAX_FREEZE];
    int nfrozen;
} train_args;

/* ---- the step function: one micro-batch through the interpreter -------------------- */

typedef struct step_ctx {
    const ir_graph *g;
    int threads;
    int has_seed; /* the graph takes a "dropout_seed" input */
} step_ctx;

static int interp_step(void *ctx, const rt_tensor_list *params, const rt_tensor_list *batch,
                       uint64_t dropout_seed, rt_tensor_list *out, ir_err *e)
{
    const step_ctx *c = ctx;
    rt_tensor_list in;
    rt_list_init(&in);
    int rc = -1;
    for (int i = 0; i < batch->n; i++) {
        const rt_tensor *t = &batch->t[i];
        if (!rt_list_add(&in, t->name, t->dtype, t->rank, t->shape, t->data))
            goto oom;
    }
    int64_t seed = (int64_t)dropout_seed;
    if (c->has_seed && !rt_list_add(&in, "dropout_seed", RT_I64, 0, NULL, &seed))
        goto oom;
    rt_interp_opts o = {0, c->threads};
    rc = rt_interp_run(c->g, params, &in, &o, out, e);
    rt_list_free(&in);
    return rc;
oom:
    rt_list_free(&in);
    return ir_errf(e, "out of memory preparing a micro-batch");
}

/* ---- Ctrl-C ----------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
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
};
#undef P

static const char **field(train_args *a, const persisted *p)
{
    return (const char **)((char *)a + p->off);
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
    /* Numbers become strings for the option parsers; they live in the object. */
    for (size_t i = 0; i < sizeof persist / sizeof *persist; i++) {
        const char **f = field(a, &persist[i]);
        json_t *v = json_object_get(j, persist[i].key);
        if (*f || !v || json_is_null(v))
            continue;
        if (length_given && (f == &a->epochs || f == &a->steps))
            continue;
        char buf[64];
        if (json_is_string(v)) {
            *f = json_string_value(v);
            continue;
        }
        if (json_is_integer(v))
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        else
            continue;
        char key[80];
        snprintf(key, sizeof key, "_str.%s", persist[i].key);
        json_object_set_new(j, key, json_string(buf));
        *f = json_string_value(json_object_get(j, key));
    }
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
    return 0;
}

static int write_options(const train_args *a, const rt_train_opts *o, int64_t rows,
                         int64_t total, const char *path)
{
    /* Absolute paths, so that a resumed run finds them from anywhere. */
    char *model = realpath(a->model, NULL), *data = realpath(a->data, NULL);
    char *init = a->init ? realpath(a->init, NULL) : NULL;
    json_t *fr = json_array();
    for (int i = 0; i < a->nfrozen; i++)
        json_array_append_new(fr, json_string(a->frozen[i]));
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:o, s:I, s:o, "
        "s:s, s:I, s:o, s:I, s:I, s:f, s:f}",
        "model", model ? model : a->model, "data", data ? data : a->data, "task", "batches",
        "init", a->init ? json_string(init ? init : a->init) : json_null(), "epochs",
        o->steps ? json_null() : json_integer(o->epochs), "steps",
        o->steps ? json_integer(o->steps) : json_null(), "batch-size",
        (json_int_t)o->batch_size, "accum", (json_int_t)o->accum, "lr", o->adam.lr,
        "warmup", o->adam.warmup, "weight-decay", o->adam.weight_decay, "clip",
        o->adam.clip, "eps", o->adam.eps, "freeze", fr, "seed", (json_int_t)o->seed,
        "threads", a->threads ? json_string(a->threads) : json_null(), "backend", "ref",
        "save-every", (json_int_t)o->save_every, "log-every",
        a->log_every ? json_string(a->log_every) : json_null(), "rows", (json_int_t)rows,
        "total_steps", (json_int_t)total, "beta1", o->adam.beta1, "beta2", o->adam.beta2);
    int rc = j ? json_dump_file(j, path, JSON_INDENT(2)) : -1;
    json_decref(j);
    free(model);
    free(data);
    free(init);
    return rc;
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
    ir_graph *g = NULL;
    json_t *kept = NULL;
    int rc = 1;
    char path[4096], model_path[4096];
    if (a->resume) {
        if (merge_options(a, a->resume, &kept))
            goto done;
        if (!a->model) {
            snprintf(model_path, sizeof model_path, "%s/model.xml", a->resume);
            a->model = model_path;
        }
        if (!a->out)
            a->out = a->resume;
    }
    if (!a->model || !a->data || !a->out) {
        driver_fail("train: a model, --data and -o are required (see bertcc train --help)");
        goto done;
    }
    if (a->task && strcmp(a->task, "batches")) {
        if (!strcmp(a->task, "pretrain") || !strcmp(a->task, "intent-slot") ||
            !strcmp(a->task, "qa"))
            fprintf(stderr,
                    "bertcc train: --task %s is not implemented yet (its data pipeline "
                    "comes with a later issue); give a batch file with --task batches\n",
                    a->task);
        else
            fprintf(stderr,
                    "bertcc train: unknown --task '%s' (batches, pretrain, "
                    "intent-slot or qa)\n",
                    a->task);
        goto done;
    }
    if (a->backend && strcmp(a->backend, "ref")) {
        driver_fail(!strcmp(a->backend, "jit")
                        ? "train: the JIT backend is not implemented yet; use --backend=ref"
                        : "train: --backend expects ref or jit");
        goto done;
    }
    rt_train_opts o;
    long long threads = 0;
    if (parse_opts(a, &o) ||
        (a->threads && args_int(a->threads, "threads", 1, 1024, &threads)))
        goto done;

    /* The model, the data and the graph. */
    unsigned present = 0;
    int64_t B = 0, S = 0;
    if (fe_load(a->model, &m, &e)) {
        driver_fail(e.msg);
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
    pass_grad_opts go = {"loss", a->frozen, a->nfrozen};
    if (!(g = fe_build_bert(&m, present | FE_BUILD_TRAIN, &e)) ||
        pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e) ||
        pass_autodiff(&g, &go, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    /* Only the loss and the gradients leave the graph; DCE drops what only the others
     * (logits, sequence output) needed. */
    {
        const char **keep = malloc(sizeof *keep * (size_t)(g->nout + 1));
        int nk = 0;
        for (int i = 0; keep && i < g->nout; i++)
            if (!strcmp(g->outs[i].name, "loss") || !strncmp(g->outs[i].name, "grad.", 5))
                keep[nk++] = g->outs[i].name;
        int bad = !keep || pass_keep_outputs(g, keep, nk, &e) ||
                  pass_run_pipeline(&g, PASS_DEFAULT_PIPELINE, NULL, &e);
        free(keep);
        if (bad) {
            driver_fail(keep ? e.msg : "out of memory");
            goto done;
        }
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
    int64_t total = rt_train_total_steps(&o, data.t[0].shape[0]);
    snprintf(path, sizeof path, "%s/model.xml", a->out);
    if (strcmp(a->model, path) && fe_write_xml(&m, path, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    snprintf(path, sizeof path, "%s/options.json", a->out);
    if (write_options(a, &o, data.t[0].shape[0], total, path)) {
        fprintf(stderr, "bertcc train: cannot write %s\n", path);
        goto done;
    }

    /* Train. */
    step_ctx sc = {g, (int)threads, ir_find_named(g, IR_OP_INPUT, "dropout_seed") >= 0};
    o.out_dir = a->out;
    o.stop = &interrupted;
    interrupted = 0;
    void (*old)(int) = signal(SIGINT, on_sigint);
    if (!a->quiet)
        fprintf(stderr,
                "bertcc train: %s, %lld rows of %lld tokens, micro-batches of %lld rows, "
                "%lld per update, %lld updates, backend ref\n",
                m.name, (long long)B, (long long)S, (long long)o.batch_size,
                (long long)o.accum, (long long)total);
    rt_train_result res;
    int trc =
        rt_train(&o, interp_step, &sc, &params, &data, a->resume ? &state : NULL, &res, &e);
    signal(SIGINT, old == SIG_ERR ? SIG_DFL : old);
    if (trc) {
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
    rc = 0;
done:
    ir_graph_free(g);
    json_decref(kept);
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

int cmd_train(int argc, char **argv)
{
    train_args a;
    memset(&a, 0, sizeof a);
    const arg_opt opts[] = {
        {"data", "B.safetensors", "training batches: the run batch format with N rows",
         &a.data},
        {"o", "RUN_DIR", "run directory (weights, optimizer state, log, options)", &a.out},
        {"task", "NAME", "batches (default); pretrain, intent-slot, qa: later", &a.task},
        {"init", "CKPT.safetensors",
         "start from a checkpoint (what it lacks is "
         "initialized and listed)",
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
        {"backend", "NAME", "ref (the reference interpreter) or jit", &a.backend},
        {"save-every", "N", "also checkpoint every N updates (default: at the end)",
         &a.save_every},
        {"log-every", "N", "progress line every N updates when stderr is not a terminal",
         &a.log_every},
        {"quiet", NULL, "no progress or summary on stderr", &a.quiet},
        {NULL, NULL, NULL, NULL},
    };
    const char *pos[1] = {NULL};
    int help;
    int npos = args_parse(argc, argv, 2, opts, pos, 1, &help, "train");
    if (npos < 0)
        return 1;
    if (help) {
        args_usage(
            "bertcc train MODEL.xml --data B.safetensors -o RUN_DIR [options]\n"
            "       bertcc train --resume RUN_DIR [options]",
            "Trains MODEL (AdamW, linear warm-up and decay, gradient clipping) on the\n"
            "rows of a batch file, shuffled every epoch. Ctrl-C writes a checkpoint\n"
            "and stops; --resume continues with the same losses as an uninterrupted\n"
            "run (given the same --threads).",
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
