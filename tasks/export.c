/* export.c: see export.h. A trained run as a Hugging Face model directory:
 *   config.json             BertConfig keys; for an intent head, architectures
 *                           BertForSequenceClassification with id2label / label2id
 *   model.safetensors       the weights with Hugging Face names (our names already are,
 *                           DESIGN.md §3) and the "format": "pt" metadata that
 *                           transformers checks; the intent head is renamed to
 *                           classifier.weight / .bias (BertForSequenceClassification's
 *                           names); other heads keep their names (slot.classifier.*:
 *                           no transformers class has both heads, so they load as
 *                           unused weights, and their labels are listed in config.json
 *                           under "slot_labels"); a qa run is a
 *                           BertForQuestionAnswering (qa_outputs.*), a pretrain run a
 *                           BertForPreTraining (cls.predictions.* with the decoder tied
 *                           to the word embeddings, cls.seq_relationship.*)
 *   vocab.txt, tokenizer_config.json, special_tokens_map.json   for BertTokenizer
 * The run's own tools read the directory too: `bertcc train --init DIR/model.safetensors`
 * (the renamed intent head is then initialized anew). */
#include "export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "../runtime/safetensors.h"
#include "../support/file.h"
#include "../train/train.h"
#include "rundir.h"
#include "task_intent_slot.h"

static int write_json(const char *dir, const char *name, json_t *j, bc_err *e)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = j ? json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : -1;
    return rc ? bc_errf(e, "%s: cannot write", path) : 0;
}

/* A label file as a JSON array, or NULL when the run has none. */
static json_t *labels_json(const char *dir, const char *name, bc_err *e, int *bad)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &st))
        return NULL;
    tk_is_labels l;
    if (tk_is_labels_load(path, &l, e)) {
        *bad = 1;
        return NULL;
    }
    json_t *a = json_array();
    for (int i = 0; i < l.n; i++)
        json_array_append_new(a, json_string(l.name[i]));
    tk_is_labels_free(&l);
    return a;
}

/* The transformers class whose names the exported weights have. */
static const char *architecture(const rundir_run *r, const json_t *intents)
{
    if (intents)
        return "BertForSequenceClassification";
    if (!strcmp(r->task->name, "qa"))
        return "BertForQuestionAnswering"; /* qa_outputs.* */
    if (!strcmp(r->task->name, "pretrain"))
        return "BertForPreTraining"; /* cls.predictions.*, cls.seq_relationship.* */
    return "BertModel";
}

static json_t *config_json(const rundir_run *r, json_t *intents, json_t *slots)
{
    const fe_model *m = &r->model;
    int pad = tx_vocab_special(r->vocab, TX_PAD);
    json_t *j = json_pack(
        "{s:[s], s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:f, s:f, s:I, s:I, s:f, s:f, s:I, "
        "s:s, s:b, s:s, s:s}",
        "architectures", architecture(r, intents), "model_type", "bert", "vocab_size",
        (json_int_t)m->vocab_size, "hidden_size", (json_int_t)m->hidden_size,
        "num_hidden_layers", (json_int_t)m->layers, "num_attention_heads",
        (json_int_t)m->heads, "intermediate_size", (json_int_t)m->intermediate_size,
        "hidden_act", m->activation == FE_ACT_GELU ? "gelu" : "gelu_new",
        "hidden_dropout_prob", m->hidden_dropout, "attention_probs_dropout_prob",
        m->attention_dropout, "max_position_embeddings", (json_int_t)m->max_position,
        "type_vocab_size", (json_int_t)m->type_vocab_size, "initializer_range", 0.02,
        "layer_norm_eps", m->layer_norm_eps, "pad_token_id",
        (json_int_t)(pad >= 0 ? pad : 0), "position_embedding_type", "absolute",
        "use_cache", 1, "torch_dtype", "float32", "tokenizer_class", "BertTokenizer");
    if (!j)
        return NULL;
    if (intents) {
        json_t *id2 = json_object(), *toid = json_object();
        size_t i;
        json_t *v;
        json_array_foreach(intents, i, v)
        {
            char k[32];
            snprintf(k, sizeof k, "%zu", i);
            json_object_set(id2, k, v);
            json_object_set_new(toid, json_string_value(v), json_integer((json_int_t)i));
        }
        json_object_set_new(j, "id2label", id2);
        json_object_set_new(j, "label2id", toid);
        json_object_set_new(j, "problem_type", json_string("single_label_classification"));
    }
    if (slots)
        json_object_set(j, "slot_labels", slots);
    json_object_set_new(j, "bertcc_task", json_string(r->task->name));
    return j;
}

/* The weights under Hugging Face's names (the intent head's classifier is the model's
 * own where the head is for sequence classification), written by rt_st_save: the same
 * tensors, with only their names changed, in a list that borrows them. */
static int write_safetensors(const char *path, const rt_tensor_list *l, int rename_intent,
                             bc_err *e)
{
    static const char intent[] = "intent.classifier.";
    const size_t ni = sizeof intent - 1;
    rt_tensor *t = malloc(((size_t)l->n + 1) * sizeof *t);
    char **names = calloc((size_t)l->n + 1, sizeof *names);
    int rc = t && names ? 0 : bc_errf(e, "out of memory");
    for (int i = 0; !rc && i < l->n; i++) {
        t[i] = l->t[i];
        if (rename_intent && !strncmp(t[i].name, intent, ni)) {
            if (!(names[i] = malloc(sizeof "classifier." + strlen(t[i].name + ni))))
                rc = bc_errf(e, "out of memory");
            else
                sprintf(names[i], "classifier.%s", t[i].name + ni);
            t[i].name = names[i];
        }
    }
    if (!rc) {
        rt_tensor_list view = {.t = t, .n = l->n, .cap = l->n};
        rc = rt_st_save(path, &view, e);
    }
    for (int i = 0; names && i < l->n; i++)
        free(names[i]);
    free(names);
    free(t);
    return rc;
}

static int write_all(const char *out, const rundir_run *run, const rt_tensor_list *w,
                     json_t *intents, json_t *slots, bc_err *e)
{
    json_t *tokcfg = json_pack(
        "{s:b, s:o, s:b, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "do_lower_case",
        run->tok.lowercase != 0, "strip_accents",
        run->tok.strip_accents < 0 ? json_null() : json_boolean(run->tok.strip_accents),
        "tokenize_chinese_chars", 1, "tokenizer_class", "BertTokenizer", "model_max_length",
        (json_int_t)run->model.max_position, "unk_token", "[UNK]", "sep_token", "[SEP]",
        "pad_token", "[PAD]", "cls_token", "[CLS]", "mask_token", "[MASK]");
    json_t *special =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "unk_token", "[UNK]", "sep_token", "[SEP]",
                  "pad_token", "[PAD]", "cls_token", "[CLS]", "mask_token", "[MASK]");
    char vout[4200], mpath[4200];
    rundir_path(out, "vocab.txt", vout, sizeof vout);
    rundir_path(out, "model.safetensors", mpath, sizeof mpath);
    int n = tx_vocab_size(run->vocab);
    const char **toks = malloc(((size_t)n + 1) * sizeof *toks);
    for (int i = 0; toks && i < n; i++)
        toks[i] = tx_vocab_token(run->vocab, i);
    json_t *cfg = config_json(run, intents, slots);
    int rc =
        write_json(out, "config.json", cfg, e) ||
                write_json(out, "tokenizer_config.json", tokcfg, e) ||
                write_json(out, "special_tokens_map.json", special, e) ||
                (toks ? tx_vocab_save(vout, toks, n, e) : bc_errf(e, "out of memory")) ||
                write_safetensors(mpath, w, intents != NULL, e)
            ? -1
            : 0;
    free(toks);
    json_decref(cfg);
    json_decref(tokcfg);
    json_decref(special);
    return rc;
}

int rundir_export(const char *run_dir, const char *weights, const char *out,
                  rundir_export_info *info, bc_err *e)
{
    rundir_run run;
    if (rundir_open(run_dir, &run, e))
        return -1;
    rt_tensor_list w;
    rt_list_init(&w);
    int rc = -1, bad = 0;
    json_t *intents = NULL, *slots = NULL;
    rundir_weights_path(&run, weights, info->weights, sizeof info->weights);
    if (rt_st_load(info->weights, &w, e))
        goto done;
    intents = labels_json(run_dir, TK_IS_INTENT_LABELS, e, &bad);
    slots = bad ? NULL : labels_json(run_dir, TK_IS_SLOT_LABELS, e, &bad);
    if (bad)
        goto done;
    /* complete or absent: written into OUT.tmp.PID, synced, then published (renamed, or
     * merged into an existing directory with config.json last) */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    bc_remove_tree(tmp);
    if (mkdir(tmp, 0777)) {
        bc_errf(e, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (write_all(tmp, &run, &w, intents, slots, e) || bc_fsync_tree(tmp, e)) {
        bc_remove_tree(tmp);
        bc_err_untmp(e, tmp, out);
        goto done;
    }
    if (bc_publish_dir(tmp, out, "config.json", e))
        goto done;
    info->tensors = w.n;
    rc = 0;
done:
    json_decref(intents);
    json_decref(slots);
    rt_list_free(&w);
    rundir_close(&run);
    return rc;
}
