/* trainer.c: see trainer.h. One run goes through the phases below in order: take the
 * options a resumed run keeps (options.json) or a Hugging Face directory brings, check
 * the options, load the model and the data (a task's or a batch file's), resolve the
 * parameters (resume, --init, or BERT's initialization), make the run directory, set up
 * the step and dev-evaluation runners, and train. */
#include "trainer.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../passes/passes.h"
#include "../runtime/params.h"
#include "../runtime/safetensors.h"
#include "../support/clock.h"
#include "../support/file.h"
#include "../train/batch.h"
#include "../train/ckpt.h"
#include "../train/dist.h"
#include "curves.h"
#include "mirror.h"
#include "rundir.h"
#include "runner.h"

static void note(const rundir_train_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(const rundir_train_args *a, const char *fmt, ...)
{
    if (!a->note)
        return;
    char msg[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    a->note(a->note_ctx, msg);
}

static int dir_has(const char *dir, const char *name)
{
    char path[4200];
    struct stat st;
    return stat(rundir_path(dir, name, path, sizeof path), &st) == 0;
}

/* ---- options.json ------------------------------------------------------------------- */

/* The options a resumed run takes from options.json when its command line omits them. */
typedef struct persisted {
    const char *key;
    size_t off; /* of the const char * in rundir_train_args */
} persisted;

#define P(key, field)                                                                      \
    {                                                                                      \
        key, offsetof(rundir_train_args, field)                                            \
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
    P("fuse", fuse),
    P("save-every", save_every),
    P("init", init),
    P("log-every", log_every),
    P("eval-batch-size", eval_batch),
};
#undef P

static const char **field(rundir_train_args *a, const persisted *p)
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

/* The flags and lists of options.json that a left unset. */
static void merge_flags(rundir_train_args *a, json_t *j)
{
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
            if (json_is_string(v) && a->nfrozen < RUNDIR_MAX_FREEZE)
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
    tx_tok_opts t;
    if (tok && !a->lower && !a->no_lower && !a->strip && !a->no_strip &&
        !rundir_tok_from_json(tok, &t)) {
        a->lower = t.lowercase ? "1" : NULL;
        a->no_lower = t.lowercase ? NULL : "1";
        a->strip = t.strip_accents == 1 ? "1" : NULL;
        a->no_strip = t.strip_accents == 0 ? "1" : NULL;
    }
}

/* Fills the options a left unset from RUN_DIR/options.json. Strings made here are
 * kept in *keep (freed by the caller). */
static int merge_options(rundir_train_args *a, const char *dir, json_t **keep, bc_err *e)
{
    char path[4200];
    rundir_path(dir, RUNDIR_OPTIONS, path, sizeof path);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return bc_errf(e, "%s: %s", path, j ? "not a JSON object" : je.text);
    }
    *keep = j;
    /* The length of the run is one choice: --epochs or --steps given replaces the
     * stored one. */
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
    merge_flags(a, j);
    return 0;
}

/* ---- the state of one run ----------------------------------------------------------- */

typedef struct trainer {
    rundir_train_args *a;
    rundir_train_result *res;
    bc_err *e;
    const tk_task_ops *ops; /* NULL: batch files */
    const char *task_name, *backend_name;
    cg_backend backend;
    tr_train_opts o;
    long long threads, eval_batch;
    tx_tok_opts tok;
    const char *tvals[RUNDIR_MAX_TASK_OPTS];
    fe_model m;
    tx_vocab *vocab;
    tk_task task;
    unsigned present;      /* label groups trained */
    unsigned build;        /* more FE_BUILD_* flags for the training graph */
    int64_t B, S;          /* rows and their length */
    int64_t mlm_gather;    /* the MLM head's rows per sequence (0: every position) */
    rt_tensor_list data;   /* the training rows */
    rt_tensor_list params; /* the parameters being trained */
    rt_tensor_list state;  /* a resumed run's optimizer.safetensors */
    int have_ckpt;         /* a resumed run has a checkpoint (else it starts at step 0) */
    int lock_fd;           /* RUN/.lock, held while training (-1: not yet) */
    ir_graph *g, *eg;      /* the training graph, the dev graph */
    rundir_runner step_runner, eval_runner;
    json_t *kept;                          /* options.json strings of a resumed run */
    volatile sig_atomic_t *stop, own_stop; /* the caller's flag, or one of our own */
    char model_path[4200], vocab_path[4200], init_path[4200];
    int writer;        /* rank 0 of a data-parallel job, or the only process */
    tk_shard shard;    /* dev evaluation's share of this rank (train/dist.h) */
    char mirror[4200]; /* ranks > 0 resuming: rank 0's copy of the run, read here */
} trainer;

/* ---- phase 1: what a resumed run or a Hugging Face directory brings ------------------ */

/* A tokenizer_config.json boolean v for the pair --NAME / --no-NAME, unless the caller
 * gave either: sets *yes or *no and notes it. */
static void flag_from_config(const rundir_train_args *a, json_t *v, const char *name,
                             const char **yes, const char **no, const char *path)
{
    if (!json_is_boolean(v) || *yes || *no)
        return;
    *(json_is_true(v) ? yes : no) = "";
    note(a, "tokenizer: --%s%s from %s", json_is_true(v) ? "" : "no-", name, path);
}

/* --init DIR: a Hugging Face model directory. The weights are DIR/model.safetensors;
 * DIR/vocab.txt is the vocabulary unless --vocab names one, and the casing recorded in
 * DIR/tokenizer_config.json (do_lower_case, strip_accents) applies unless the command
 * line sets it. */
static int init_from_dir(trainer *t)
{
    rundir_train_args *a = t->a;
    struct stat st;
    if (!a->init || stat(a->init, &st) || !S_ISDIR(st.st_mode))
        return 0;
    const char *dir = a->init;
    if (!dir_has(dir, "model.safetensors"))
        return bc_errf(t->e, "--init %s: no model.safetensors in the directory%s", dir,
                       dir_has(dir, "pytorch_model.bin")
                           ? " (only pytorch_model.bin: convert it first, e.g. with "
                             "safetensors.torch.save_file(torch.load(...)))"
                           : "");
    rundir_path(dir, "model.safetensors", t->init_path, sizeof t->init_path);
    if (!a->vocab && dir_has(dir, "vocab.txt")) {
        a->vocab = rundir_path(dir, "vocab.txt", t->vocab_path, sizeof t->vocab_path);
        note(a, "vocabulary: %s", t->vocab_path);
    }
    char path[4200];
    rundir_path(dir, "tokenizer_config.json", path, sizeof path);
    json_error_t je;
    json_t *tc =
        dir_has(dir, "tokenizer_config.json") ? json_load_file(path, 0, &je) : NULL;
    if (dir_has(dir, "tokenizer_config.json") && !tc)
        return bc_errf(t->e, "%s:%d: %s", path, je.line, je.text);
    flag_from_config(a, json_object_get(tc, "do_lower_case"), "lowercase", &a->lower,
                     &a->no_lower, path);
    flag_from_config(a, json_object_get(tc, "strip_accents"), "strip-accents", &a->strip,
                     &a->no_strip, path);
    json_decref(tc);
    a->init = t->init_path;
    return 0;
}

static int take_stored(trainer *t)
{
    rundir_train_args *a = t->a;
    if (a->resume) {
        if (merge_options(a, a->resume, &t->kept, t->e))
            return -1;
        if (!a->model)
            a->model =
                rundir_path(a->resume, RUNDIR_MODEL, t->model_path, sizeof t->model_path);
        if (!a->out)
            a->out = a->resume;
        if (!a->vocab && dir_has(a->resume, RUNDIR_VOCAB))
            a->vocab =
                rundir_path(a->resume, RUNDIR_VOCAB, t->vocab_path, sizeof t->vocab_path);
        else if (!a->vocab && a->task && strcmp(a->task, "batches"))
            return bc_errf(t->e,
                           "%s/%s is missing: a run keeps the vocabulary it was trained "
                           "with (give --vocab V to continue with that file instead)",
                           a->resume, RUNDIR_VOCAB);
    }
    return init_from_dir(t);
}

/* ---- phase 2: the options ------------------------------------------------------------ */

/* The task options given for ops: values[i] for ops->options[i]; an option of another
 * task is an error. */
static int task_values(trainer *t)
{
    const rundir_train_args *a = t->a;
    for (int k = 0; k < a->ntopt; k++) {
        int found = 0;
        for (int i = 0; t->ops && t->ops->options && t->ops->options[i].name; i++)
            if (!strcmp(t->ops->options[i].name, a->topt_name[k])) {
                t->tvals[i] = a->topt_value[k];
                found = 1;
            }
        if (!found && a->topt_value[k])
            return bc_errf(t->e, "--%s is not an option of --task %s", a->topt_name[k],
                           t->ops ? t->ops->name : "batches");
    }
    return 0;
}

static int engine_opts(trainer *t)
{
    const rundir_train_args *a = t->a;
    tr_train_opts *o = &t->o;
    bc_err *e = t->e;
    long long v;
    tr_train_defaults(o);
#define INT_OPT(str, name, lo, hi, dst)                                                    \
    if (str) {                                                                             \
        if (tk_task_int_opt(str, name, lo, hi, &v, e))                                     \
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
    if (a->dist_bucket_mb) {
        double mb;
        if (tk_task_real_opt(a->dist_bucket_mb, "dist-bucket-mb", 0.001, 1024, &mb, e))
            return -1;
        o->dist_bucket_bytes = (size_t)(mb * 1048576.0);
    }
#undef INT_OPT
    if ((a->lr && tk_task_real_opt(a->lr, "lr", 0, 10, &o->adam.lr, e)) ||
        (a->warmup && tk_task_real_opt(a->warmup, "warmup", 0, 1, &o->adam.warmup, e)) ||
        (a->weight_decay && tk_task_real_opt(a->weight_decay, "weight-decay", 0, 10,
                                             &o->adam.weight_decay, e)) ||
        (a->clip && tk_task_real_opt(a->clip, "clip", 0, 1e30, &o->adam.clip, e)) ||
        (a->eps && tk_task_real_opt(a->eps, "eps", 1e-30, 1, &o->adam.eps, e)))
        return -1;
    o->frozen = a->frozen;
    o->nfrozen = a->nfrozen;
    o->group_by_length = a->group != NULL;
    o->progress = a->progress;
    return 0;
}

static int check_options(trainer *t)
{
    rundir_train_args *a = t->a;
    bc_err *e = t->e;
    if (!a->model || !a->data || !a->out)
        return bc_errf(e, "a model, --data and -o are required (see bertcc train --help)");
    t->task_name = a->task ? a->task : "batches";
    if (strcmp(t->task_name, "batches") && !(t->ops = tk_task_find(t->task_name))) {
        char list[512] = "batches";
        for (int i = 0; tk_tasks[i]; i++) {
            size_t n = strlen(list);
            snprintf(list + n, sizeof list - n, ", %s", tk_tasks[i]->name);
        }
        return bc_errf(e, "unknown --task '%s' (%s)", t->task_name, list);
    }
    t->backend = CG_BACKEND_DEFAULT;
    if (task_values(t) || (a->backend && cg_backend_parse(a->backend, &t->backend) &&
                           bc_errf(e, "--backend expects ref or jit")))
        return -1;
    t->backend_name = t->backend == CG_BACKEND_JIT ? "jit" : "ref";
    unsigned rules;
    if (pass_fuse_parse(a->fuse, &rules, e))
        return bc_err_prefix(e, "--fuse"), -1;
    t->eval_batch = 64;
    if (!a->threads && tr_dist_local_size() > 1) { /* the host's cores shared out */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        t->threads = cores > tr_dist_local_size() ? cores / tr_dist_local_size() : 1;
    }
    if (engine_opts(t) ||
        (a->threads && tk_task_int_opt(a->threads, "threads", 1, 1024, &t->threads, e)) ||
        (a->eval_batch &&
         tk_task_int_opt(a->eval_batch, "eval-batch-size", 1, 1 << 20, &t->eval_batch, e)))
        return -1;
    if (a->lower && a->no_lower)
        return bc_errf(e, "--lowercase and --no-lowercase contradict each other");
    if (a->strip && a->no_strip)
        return bc_errf(e, "--strip-accents and --no-strip-accents contradict each other");
    t->tok = (tx_tok_opts){a->no_lower ? 0 : 1, a->strip ? 1 : a->no_strip ? 0 : -1};
    return 0;
}

/* ---- phase 3: the model and the data ---------------------------------------------------
 */

/* A task's data, and the model sized for it: the vocabulary's size and exactly the
 * task's heads. */
static int task_data(trainer *t)
{
    rundir_train_args *a = t->a;
    bc_err *e = t->e;
    if (!a->vocab)
        return bc_errf(e, "--task needs --vocab VOCAB.txt (see bertcc train --help)");
    if (!(t->vocab = tx_vocab_load(a->vocab, e)))
        return -1;
    tk_task_config tc = {a->data,           a->resume, t->vocab,    t->tok, t->tvals,
                         t->m.max_position, a->note,   a->note_ctx, 0};
    t->task.ops = t->ops;
    if (t->ops->open(&tc, &t->task.state, e))
        return -1;
    tk_task_heads h = {0};
    t->ops->heads(t->task.state, &h);
    t->mlm_gather = h.labels & TR_LABEL_MLM ? h.mlm_predictions : 0;
    if (h.intent_class_weights)
        t->build |= FE_BUILD_INTENT_WEIGHTS; /* augment adds the weights */
    t->m.vocab_size = tx_vocab_size(t->vocab);
    t->m.head_mask = h.labels;
    t->m.intent_classes = h.labels & FE_HEAD_INTENT ? h.intent_classes : 0;
    t->m.slot_labels = h.labels & FE_HEAD_SLOT ? h.slot_labels : 0;
    if (fe_model_check(&t->m, e)) {
        bc_err_prefix(e, "%s sized for %s", a->model, t->ops->name);
        return -1;
    }
    if (t->ops->data(t->task.state, TK_SPLIT_TRAIN, &t->data, e))
        return -1;
    if (!a->no_eval) {
        /* Dev is read now, so that a missing split (or its unseen labels) shows before
         * the first epoch rather than after it. */
        rt_tensor_list dev;
        rt_list_init(&dev);
        int bad = t->ops->data(t->task.state, TK_SPLIT_DEV, &dev, e);
        rt_list_free(&dev);
        if (bad) {
            size_t n = strlen(e->msg);
            snprintf(e->msg + n, sizeof e->msg - n,
                     " (--no-eval trains without dev evaluation)");
            return -1;
        }
    }
    t->present = h.labels;
    t->B = t->data.t[0].shape[0];
    t->S = t->data.t[0].rank > 1 ? t->data.t[0].shape[1] : 1;
    return 0;
}

/* The rows of a batch file. */
static int batch_data(trainer *t)
{
    rundir_train_args *a = t->a;
    bc_err *e = t->e;
    if (a->vocab || a->no_eval || a->eval_batch)
        return bc_errf(e, "--vocab, --no-eval and --eval-batch-size go with --task");
    rt_tensor_list batch;
    rt_list_init(&batch);
    int rc = rt_st_load(a->data, &batch, e);
    if (!rc && (rc = tr_batch_prepare(&batch, t->m.max_position,
                                      t->m.head_mask & FE_LABEL_ALL, &t->data, &t->present,
                                      &t->B, &t->S, a->note, a->note_ctx, e)))
        bc_err_prefix(e, "%s", a->data);
    rt_list_free(&batch);
    if (!rc && !t->present)
        rc = bc_errf(e, "%s has no labels for the heads of %s: nothing to train", a->data,
                     a->model);
    return rc;
}

/* ---- phase 4: the parameters ------------------------------------------------------------
 */

/* A previous run's, a checkpoint's (what it lacks initialized), or BERT's
 * initialization. */
static int resolve_params(trainer *t)
{
    rundir_train_args *a = t->a;
    bc_err *e = t->e;
    rt_tensor_list ckpt;
    rt_list_init(&ckpt);
    int rc = 0;
    char path[4200], opath[4200];
    if (a->resume && (rc = tr_ckpt_find(a->resume, path, opath, sizeof path, a->note,
                                        a->note_ctx, e)) < 0)
        return -1;
    t->have_ckpt = a->resume && rc == 1;
    rc = 0;
    if (a->resume && !t->have_ckpt)
        note(a, "%s has no checkpoint yet: the run starts from step 0", a->resume);
    if (t->have_ckpt) {
        if ((rc = rt_st_load(path, &ckpt, e) ||
                  rt_params_from_checkpoint(t->g, &ckpt, 0, 0, &t->params, a->note,
                                            a->note_ctx, e) ||
                  rt_st_load(opath, &t->state, e)) &&
            strncmp(e->msg, a->resume, strlen(a->resume)))
            bc_err_prefix(e, "%s", a->resume);
    } else if (a->init) {
        if ((rc = rt_st_load(a->init, &ckpt, e) ||
                  rt_params_from_checkpoint(t->g, &ckpt, 1, t->o.seed, &t->params, a->note,
                                            a->note_ctx, e)) &&
            strncmp(e->msg, a->init, strlen(a->init)))
            bc_err_prefix(e, "%s", a->init);
    } else {
        rc = rt_params_init(t->g, t->o.seed, &t->params, e);
    }
    rt_list_free(&ckpt);
    for (int i = 0; !rc && i < a->nfrozen; i++) {
        int hits = 0;
        for (int k = 0; k < t->params.n; k++)
            hits += tr_param_is_frozen(t->params.t[k].name, &a->frozen[i], 1);
        if (!hits)
            rc = bc_errf(e, "--freeze %s matches no parameter of %s", a->frozen[i],
                         a->model);
    }
    return rc ? -1 : 0;
}

/* ---- phase 5: the run directory ---------------------------------------------------------
 */

static int copy_file(const char *from, const char *to, bc_err *e)
{
    FILE *in = bc_fopen_read(from, e);
    if (!in)
        return -1;
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return bc_errf(e, "%s: cannot write: %s", to, strerror(errno));
    }
    char buf[65536];
    size_t n;
    int ok = 1;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ok &= fwrite(buf, 1, n, out) == n;
    ok &= !ferror(in);
    fclose(in);
    if (fclose(out) || !ok)
        return bc_errf(e, "%s: cannot write", to);
    return 0;
}

/* The task's part of options.json. */
static void task_options_json(const trainer *t, json_t *j)
{
    const rundir_train_args *a = t->a;
    json_t *to = json_object();
    for (int i = 0; t->ops->options && t->ops->options[i].name; i++) {
        char v[256];
        t->ops->option_value(t->task.state, i, v, sizeof v);
        json_object_set_new(to, t->ops->options[i].name, json_string(v));
    }
    char *vocab = a->vocab ? realpath(a->vocab, NULL) : NULL;
    json_object_set_new(j, "task_options", to);
    json_object_set_new(j, "tokenizer", rundir_tok_json(&t->tok));
    json_object_set_new(j, "vocab", json_string(vocab ? vocab : a->vocab ? a->vocab : ""));
    json_object_set_new(j, "no-eval", json_boolean(a->no_eval != NULL));
    json_object_set_new(j, "eval-batch-size",
                        a->eval_batch ? json_string(a->eval_batch) : json_null());
    free(vocab);
}

static int write_options(const trainer *t, int64_t total, const char *path, bc_err *e)
{
    const rundir_train_args *a = t->a;
    const tr_train_opts *o = &t->o;
    /* Absolute paths, so that a resumed run finds them from anywhere. */
    char *model = realpath(a->model, NULL), *data = realpath(a->data, NULL);
    char *init = a->init ? realpath(a->init, NULL) : NULL;
    json_t *fr = json_array();
    for (int i = 0; i < a->nfrozen; i++)
        json_array_append_new(fr, json_string(a->frozen[i]));
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:o, s:I, s:o, "
        "s:s, s:I, s:o, s:I, s:I, s:f, s:f}",
        "model", model ? model : a->model, "data", data ? data : a->data, "task",
        t->task_name, "init", a->init ? json_string(init ? init : a->init) : json_null(),
        "epochs", o->steps ? json_null() : json_integer(o->epochs), "steps",
        o->steps ? json_integer(o->steps) : json_null(), "batch-size",
        (json_int_t)o->batch_size, "accum", (json_int_t)o->accum, "lr", o->adam.lr,
        "warmup", o->adam.warmup, "weight-decay", o->adam.weight_decay, "clip",
        o->adam.clip, "eps", o->adam.eps, "freeze", fr, "seed", (json_int_t)o->seed,
        "threads", a->threads ? json_string(a->threads) : json_null(), "backend",
        t->backend_name, "save-every", (json_int_t)o->save_every, "log-every",
        a->log_every ? json_string(a->log_every) : json_null(), "rows", (json_int_t)t->B,
        "total_steps", (json_int_t)total, "beta1", o->adam.beta1, "beta2", o->adam.beta2);
    if (j && t->ops)
        task_options_json(t, j);
    if (j) {
        json_object_set_new(j, "group-by-length", json_boolean(a->group != NULL));
        json_object_set_new(j, "fuse", json_string(a->fuse ? a->fuse : "all"));
    }
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    int rc =
        text ? bc_atomic_write(path, text, strlen(text), e) : bc_errf(e, "out of memory");
    free(text);
    json_decref(j);
    free(model);
    free(data);
    free(init);
    return rc;
}

/* The files a run starts with (model, vocabulary, the task's label lists), then
 * options.json, into dir. */
static int write_run_files(trainer *t, const char *dir, int64_t total)
{
    rundir_train_args *a = t->a;
    bc_err *e = t->e;
    char path[4200];
    rundir_path(dir, RUNDIR_MODEL, path, sizeof path);
    if (strcmp(a->model, path) && fe_write_xml(&t->m, path, e))
        return -1;
    if (t->ops && !a->resume) {
        static const char *const stale[] = {RUNDIR_METRICS, RUNDIR_BEST, RUNDIR_PLOT};
        for (size_t i = 0; i < sizeof stale / sizeof *stale; i++)
            remove(rundir_path(dir, stale[i], path, sizeof path));
        rundir_path(dir, RUNDIR_VOCAB, path, sizeof path);
        if (copy_file(a->vocab, path, e) ||
            (t->ops->save && t->ops->save(t->task.state, dir, e)))
            return -1;
    }
    if (!a->resume && bc_fsync_tree(dir, e))
        return -1;
    /* options.json last: a directory holding it is a run --resume can continue */
    rundir_path(dir, RUNDIR_OPTIONS, path, sizeof path);
    return write_options(t, total, path, e);
}

/* A new run directory is created complete or not at all: filled as RUN.tmp.PID, then
 * renamed. An existing directory (given empty, or a run being resumed) is locked first;
 * a fresh run refuses one that already holds a run. */
static int make_run_dir(trainer *t, int64_t total)
{
    rundir_train_args *a = t->a;
    bc_err *e = t->e;
    struct stat st;
    if (!a->resume && stat(a->out, &st) && errno == ENOENT) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", a->out, (long)getpid());
        if (mkdir(tmp, 0777))
            return bc_errf(e, "cannot create %s: %s", tmp, strerror(errno));
        if (write_run_files(t, tmp, total)) {
            bc_remove_tree(tmp);
            bc_err_untmp(e, tmp, a->out);
            return -1;
        }
        bc_fault_point();
        if (rename(tmp, a->out)) {
            int err = errno;
            bc_remove_tree(tmp);
            return bc_errf(e, "cannot create %s: %s", a->out, strerror(err));
        }
        if (bc_fsync_parent(a->out))
            return bc_errf(e, "%s: cannot sync its directory: %s", a->out, strerror(errno));
        return (t->lock_fd = tr_run_lock(a->out, e)) < 0 ? -1 : 0;
    }
    if (mkdir(a->out, 0777) && errno != EEXIST)
        return bc_errf(e, "cannot create %s: %s", a->out, strerror(errno));
    if (t->lock_fd < 0 && (t->lock_fd = tr_run_lock(a->out, e)) < 0)
        return -1;
    if (!a->resume &&
        (dir_has(a->out, TR_TRAIN_WEIGHTS) || dir_has(a->out, TR_TRAIN_OPTIM) ||
         dir_has(a->out, RUNDIR_OPTIONS) || dir_has(a->out, TR_CKPT_DIR)))
        return bc_errf(e,
                       "%s already holds a run; continue it with --resume %s or choose "
                       "another directory",
                       a->out, a->out);
    return write_run_files(t, a->out, total);
}

/* ---- phase 6: dev evaluation at the end of every epoch (the engine's on_step hook) --- */

typedef struct eval_hook {
    trainer *t;
    int64_t upe, total;
    int failed;
    bc_err err;
    int tty;
    int save_request;  /* asks the engine for a checkpoint at this update */
    int64_t best_step; /* the update whose weights became the best (-1: none pending) */
} eval_hook;

static void print_metrics(FILE *f, const tk_metrics *m)
{
    for (int i = 0; i < m->n; i++)
        fprintf(f, "%s%s %.4f", i ? "  " : "", m->name[i], m->value[i]);
}

/* Keeps m as the run's best when it beats the best so far, and a line of metrics.csv
 * either way. A new best asks for a checkpoint of this update; best.safetensors becomes
 * a link to its weights once it is committed (on_saved), so it never runs ahead of the
 * checkpoint a resume reads. Returns 1 when it became the best, -1 on error. */
static int record(eval_hook *h, const tr_train_progress *p, const tk_metrics *m)
{
    trainer *t = h->t;
    rundir_train_result *r = t->res;
    int best = !r->have_best || tk_task_compare(tk_task_best_by(&t->task), m, &r->best) > 0;
    int64_t from = (p->step - 1) / h->upe * h->upe;
    double loss = rundir_mean_loss(t->a->out, from, p->step);
    if (rundir_metrics_append(t->a->out, p->step, p->epoch, loss, m, best, &h->err) ||
        rundir_plot(t->a->out, t->m.name, &h->err))
        return -1;
    if (best) {
        r->best = *m;
        r->have_best = 1;
        h->best_step = p->step;
        h->save_request = 1;
    }
    return best;
}

/* A resumed run whose checkpoint (update at) is also its best: best.safetensors linked
 * to it, which a kill between the checkpoint's commit and on_saved left undone (a
 * finished run saves nothing more). */
static int relink_best(const char *run, int64_t at, int64_t best_step, bc_err *e)
{
    char dir[4300];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/%s/step-%lld", run, TR_CKPT_DIR, (long long)at);
    if (at <= 0 || best_step != at || stat(dir, &st))
        return 0;
    return tr_ckpt_link_weights(run, at, RUNDIR_BEST, e);
}

/* After a checkpoint is committed: the pending best's weights, when they are its. */
static int on_saved(void *ctx, int64_t step, bc_err *e)
{
    eval_hook *h = ctx;
    if (h->best_step != step)
        return 0;
    h->best_step = -1;
    return tr_ckpt_link_weights(h->t->a->out, step, RUNDIR_BEST, e);
}

static void on_step(void *ctx, const tr_train_progress *p)
{
    eval_hook *h = ctx;
    trainer *t = h->t;
    if (h->failed || (p->step % h->upe && p->step != h->total))
        return;
    double t0 = bc_now();
    tk_metrics m;
    int best = -1;
    /* Every rank scores its share of dev; rank 0 alone records (its save request is
     * the one every rank follows: the engine takes the maximum). */
    if (t->ops->evaluate(t->task.state, TK_SPLIT_DEV, (int)t->eval_batch, rundir_forward,
                         &t->eval_runner, &t->shard, &m, &h->err)) {
        bc_err_prefix(&h->err, "dev evaluation at step %lld", (long long)p->step);
        /* the other ranks wait in this evaluation's merges: end the job now */
        if (tr_dist_size() > 1)
            tr_dist_fail(h->err.msg);
    } else
        best = t->writer ? record(h, p, &m) : 0;
    if (best < 0) {
        h->failed = 1;
        *t->stop = 1; /* the engine checkpoints and returns */
        return;
    }
    FILE *f = t->a->progress;
    if (f && t->writer) {
        fprintf(f, "%sdev @ epoch %.2f: ", h->tty ? "\n" : "", p->epoch);
        print_metrics(f, &m);
        fprintf(f, "%s  (%.1f s)\n", best ? "  [best]" : "", bc_now() - t0);
        fflush(f);
    }
}

/* The engines: the training graph, and the eval graph for dev with its hook. */
static int setup_runners(trainer *t, eval_hook *hook, int64_t total)
{
    rundir_train_args *a = t->a;
    bc_err *e = t->e;
    if (rundir_runner_init(&t->step_runner, t->g, t->backend, (int)t->threads, e))
        return -1;
    t->step_runner.task = t->ops;
    t->step_runner.task_state = t->task.state;
    if (!t->ops || a->no_eval)
        return 0;
    if (!(t->eg = rundir_eval_graph(&t->m, t->ops->eval_outputs, t->a->fuse, e)) ||
        rundir_runner_init(&t->eval_runner, t->eg, t->backend, (int)t->threads, e))
        return -1;
    t->eval_runner.params = &t->params;
    hook->t = t;
    hook->upe = tr_train_updates_per_epoch(&t->o, t->B);
    hook->total = total;
    hook->tty = a->progress && isatty(fileno(a->progress));
    if (a->resume && t->writer) {
        const rt_tensor *st = rt_list_cfind(&t->state, "step");
        int64_t at = st && st->dtype == RT_I64 ? *(const int64_t *)st->data : 0;
        json_t *names = NULL;
        int64_t best_step;
        int rc = rundir_metrics_resume(a->out, at, tk_task_best_by(&t->task), &t->res->best,
                                       &t->res->have_best, &best_step, &names, e);
        t->res->keep = names;
        if (rc || relink_best(a->out, at, best_step, e))
            return -1;
    }
    t->o.on_step = on_step;
    t->o.hook_ctx = hook;
    hook->best_step = -1;
    t->o.save_request = &hook->save_request;
    t->o.on_saved = on_saved;
    return 0;
}

/* ---- the run ------------------------------------------------------------------------ */

static int shard_merge(void *ctx, void *buf, size_t bytes, bc_err *e)
{
    (void)ctx;
    return tr_dist_bor(buf, bytes, e);
}

static int load(trainer *t)
{
    rundir_train_args *a = t->a;
    if (take_stored(t) || check_options(t) || fe_load(a->model, &t->m, t->e) ||
        (t->ops ? task_data(t) : batch_data(t)))
        return -1;
    if (!(t->g = rundir_train_graph(&t->m, t->present | t->build, a->frozen, a->nfrozen,
                                    t->mlm_gather, a->fuse, t->e)))
        return -1;
    return resolve_params(t);
}

static int run(trainer *t)
{
    rundir_train_args *a = t->a;
    eval_hook hook;
    memset(&hook, 0, sizeof hook);
    if (a->resume && tr_dist_size() > 1) {
        /* rank 0 reads the run; the others read its copy (train/dist.h) */
        if (rundir_mirror(a->resume, t->writer ? NULL : t->mirror, sizeof t->mirror,
                          a->note, a->note_ctx, t->e))
            return -1;
        if (!t->writer) {
            if (!a->out || !strcmp(a->out, a->resume))
                a->out = t->mirror;
            a->resume = t->mirror;
        }
    }
    if (load(t))
        return -1;
    int64_t total = tr_train_total_steps(&t->o, t->B);
    if ((t->writer && make_run_dir(t, total)) || setup_runners(t, &hook, total))
        return -1;
    if (t->ops && t->ops->refill) {
        t->o.refill = t->ops->refill;
        t->o.refill_ctx = t->task.state;
    }
    t->o.out_dir = a->out;
    t->o.stop = t->stop;
    if (a->progress && t->writer) {
        char ranks[96] = "";
        if (tr_dist_size() > 1)
            snprintf(ranks, sizeof ranks, " split over %d ranks", tr_dist_size());
        fprintf(a->progress,
                "bertcc train: %s, %lld rows of %lld tokens, micro-batches of %lld "
                "rows%s, %lld per update, %lld updates, backend %s\n",
                t->m.name, (long long)t->B, (long long)t->S, (long long)t->o.batch_size,
                ranks, (long long)t->o.accum, (long long)total, t->backend_name);
    }
    if (tr_train(&t->o, rundir_step, &t->step_runner, &t->params, &t->data,
                 t->have_ckpt ? &t->state : NULL, &t->res->train, t->e))
        return -1;
    if (hook.failed)
        return bc_errf(t->e,
                       "%s (checkpoint at step %lld in %s; --no-eval trains without dev "
                       "evaluation)",
                       hook.err.msg, (long long)t->res->train.step, a->out);
    return t->ops && t->writer ? rundir_plot(a->out, t->m.name, t->e) : 0;
}

int rundir_train(rundir_train_args *a, rundir_train_result *r, bc_err *e)
{
    trainer *t = calloc(1, sizeof *t);
    memset(r, 0, sizeof *r);
    if (!t)
        return bc_errf(e, "out of memory");
    t->a = a;
    t->stop = a->stop ? a->stop : &t->own_stop;
    t->res = r;
    t->e = e;
    rt_list_init(&t->data);
    rt_list_init(&t->params);
    rt_list_init(&t->state);
    t->lock_fd = -1;
    t->writer = tr_dist_rank() == 0;
    t->shard = (tk_shard){tr_dist_rank(), tr_dist_size(), shard_merge, NULL};
    /* a resumed run is locked before anything of it is read (one that does not exist
     * is left to the reading, which says so); by rank 0 alone under MPI */
    struct stat st;
    int rc = t->writer && a->resume && stat(a->resume, &st) == 0 && S_ISDIR(st.st_mode) &&
                     (t->lock_fd = tr_run_lock(a->resume, e)) < 0
                 ? -1
                 : run(t);
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    if (a->out)
        snprintf(r->out, sizeof r->out, "%s", a->out);
    rundir_runner_free(&t->step_runner);
    rundir_runner_free(&t->eval_runner);
    if (t->task.ops)
        t->task.ops->close(t->task.state);
    tx_vocab_free(t->vocab);
    ir_graph_free(t->g);
    ir_graph_free(t->eg);
    json_decref(t->kept);
    rt_list_free(&t->data);
    rt_list_free(&t->params);
    rt_list_free(&t->state);
    if (t->mirror[0])
        bc_remove_tree(t->mirror);
    free(t);
    return rc;
}

void rundir_train_result_free(rundir_train_result *r)
{
    json_decref(r->keep);
    r->keep = NULL;
}

void rundir_train_task_options(rundir_train_args *a, const char **meta, char help[][1024])
{
    for (int t = 0; tk_tasks[t]; t++)
        for (const tk_task_option *to = tk_tasks[t]->options; to && to->name; to++) {
            int dup = -1;
            for (int k = 0; k < a->ntopt; k++)
                if (!strcmp(a->topt_name[k], to->name))
                    dup = k;
            if (dup >= 0) {
                size_t at = strlen(help[dup]);
                snprintf(help[dup] + at, 1024 - at, "; (%s) %s", tk_tasks[t]->name,
                         to->help);
                continue;
            }
            if (a->ntopt == RUNDIR_MAX_TASK_OPTS)
                continue;
            a->topt_name[a->ntopt] = to->name;
            meta[a->ntopt] = to->value;
            snprintf(help[a->ntopt], 1024, "(%s) %s", tk_tasks[t]->name, to->help);
            a->ntopt++;
        }
}
