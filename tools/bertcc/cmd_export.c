/* cmd_export.c: `bertcc export --model RUN_DIR -o DIR` — writes a trained run as a
 * Hugging Face model directory (rundir_export, tasks/export.h). */
#include <stdio.h>

#include "../../tasks/export.h"
#include "args.h"
#include "driver.h"

static const char *model, *out, *weights, *threads, *backend;
static const arg_opt opts[] = {
    {"model", "RUN_DIR", "a run directory made by bertcc train --task (required)", &model},
    {"o", "DIR", "the Hugging Face directory to write (required)", &out},
    {"weights", "WHICH", "best (the default: best on dev), last, or a safetensors file",
     &weights},
    {"threads", "N", "accepted for uniformity; unused here", &threads},
    {"backend", "NAME", "accepted for uniformity; unused here", &backend},
    {NULL, NULL, NULL, NULL},
};

static const char about[] =
    "Writes a Hugging Face model directory: config.json (BertConfig, with\n"
    "id2label/label2id for an intent head), model.safetensors (the intent\n"
    "head as BertForSequenceClassification's classifier.*; the slot head\n"
    "as slot.classifier.*, its labels in config.json's slot_labels),\n"
    "vocab.txt, tokenizer_config.json and special_tokens_map.json.";

int cmd_export(int argc, char **argv)
{
    int help;
    const char *pos[1];
    if (args_parse(argc, argv, 2, opts, pos, 0, &help, "export") < 0)
        return 1;
    if (help)
        return args_usage("bertcc export --model RUN_DIR -o DIR", about, opts), 0;
    if (!model || !out)
        return driver_fail("export: --model RUN_DIR and -o DIR are required (see --help)");
    bc_err e;
    rundir_export_info info;
    if (rundir_export(model, weights, out, &info, &e))
        return fprintf(stderr, "bertcc export: %s\n", e.msg), 1;
    fprintf(stderr, "bertcc export: %s (%d tensors from %s) -> %s\n", model, info.tensors,
            info.weights, out);
    return 0;
}
