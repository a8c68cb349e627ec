/* export.h: a trained run as a Hugging Face model directory (`bertcc export`):
 * config.json (BertConfig keys, the transformers class the weights' names fit, id2label
 * and label2id for an intent head), model.safetensors (with the "format": "pt" metadata
 * transformers checks), vocab.txt, tokenizer_config.json and special_tokens_map.json.
 * export.c says how each head's tensors are named. */
#ifndef BERTCC_TASKS_EXPORT_H
#define BERTCC_TASKS_EXPORT_H

#include "../support/err.h"

typedef struct rundir_export_info {
    char weights[4200]; /* the checkpoint exported */
    int tensors;        /* how many tensors it holds */
} rundir_export_info;

/* Writes RUN_DIR's weights `weights` ("best" or NULL, "last", or a file, as
 * rundir_load_weights takes them) into the directory out (made if absent). */
int rundir_export(const char *run_dir, const char *weights, const char *out,
                  rundir_export_info *info, bc_err *e);

#endif
