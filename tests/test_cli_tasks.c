/* test_cli_tasks.c: the task commands end to end through the bertcc executable —
 * `demo-data` and `vocab` make the bundled Korean voice-assistant set, a tiny model is
 * fine-tuned on it (`train --task intent-slot`, the JIT backend, or the reference
 * interpreter if the JIT cannot run it), and the run is evaluated (`eval --json`),
 * asked (`predict`) and exported (`export`); and the refusals of these commands. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/safetensors.h"
#include "util.h"

/* H=64, one layer, no dropout: learns the voice set in a few hundred updates. */
static const char tiny_xml[] =
    "<bert name=\"voice-test\">\n"
    "  <encoder vocab-size=\"100\" hidden-size=\"64\" layers=\"1\" heads=\"2\"\n"
    "           intermediate-size=\"128\" max-position=\"32\" hidden-dropout=\"0\"\n"
    "           attention-dropout=\"0\"/>\n"
    "</bert>\n";

/* Makes DIR/data, DIR/vocab.txt and DIR/model.xml. */
static void voice_set(const char *dir, int per_intent)
{
    char *out = NULL;
    cr_assert_eq(tu_bertcc(&out, "demo-data -o %s/data --per-intent %d", dir, per_intent),
                 0, "%s", out);
    free(out);
    cr_assert_eq(
        tu_bertcc(&out,
                  "vocab --corpus %s/data/train/seq.in --size 2000 --no-lowercase -o "
                  "%s/vocab.txt",
                  dir, dir),
        0, "%s", out);
    free(out);
    cr_assert_eq(tu_write_file(tu_path(dir, "model.xml"), tiny_xml), 0);
}

static double get_num(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_number(v), "%s missing or not a number", key);
    return json_number_value(v);
}

Test(cli_tasks, voice_set_fine_tunes_and_answers, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    voice_set(dir, 500);
    char *out = NULL;
    const char *train =
        "train %s/model.xml --task intent-slot --data %s/data --vocab %s/vocab.txt "
        "--no-lowercase -o %s/run --epochs 5 --batch-size 16 --lr 2e-3 --threads 2 --quiet "
        "--backend %s";
    const char *backend = "jit";
    if (tu_bertcc(&out, train, dir, dir, dir, dir, "jit")) {
        cr_log_warn("the JIT backend could not train (%s); using the reference interpreter",
                    out ? out : "?");
        free(out);
        char rm[1100];
        snprintf(rm, sizeof rm, "rm -rf %s/run", dir);
        tu_run(rm, NULL);
        backend = "ref";
        cr_assert_eq(tu_bertcc(&out, train, dir, dir, dir, dir, "ref"), 0, "%s", out);
    }
    free(out);

    /* eval --json: one object, the three scores as fractions. */
    cr_assert_eq(tu_bertcc(&out, "eval --model %s/run --data %s/data --json --backend %s",
                           dir, dir, backend),
                 0, "%s", out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, out);
    static const char *const keys[] = {"intent_accuracy", "slot_f1", "frame_accuracy"};
    for (int i = 0; i < 3; i++) {
        double v = get_num(j, keys[i]);
        cr_expect(v >= 0 && v <= 1, "%s = %g", keys[i], v);
    }
    cr_expect_geq(get_num(j, "intent_accuracy"), 0.9, "%s", out);
    cr_expect_geq(get_num(j, "slot_f1"), 0.8, "%s", out);
    cr_expect_eq(get_num(j, "examples"), 163);
    cr_expect_str_eq(json_string_value(json_object_get(j, "split")), "test");
    json_decref(j);
    free(out);
    cr_assert_eq(tu_bertcc(&out,
                           "eval --model %s/run --data %s/data --split dev --weights last",
                           dir, dir),
                 0, "%s", out);
    cr_expect(strstr(out, "intent-slot dev, 163 examples") && strstr(out, "frame_accuracy"),
              "%s", out);
    free(out);

    /* predict: the README's sentences. */
    cr_assert_eq(
        tu_bertcc(&out,
                  "predict --model %s/run --backend %s '아이유 노래 아무거나 틀어줘' "
                  "'노래 그만 틀어'",
                  dir, backend),
        0, "%s", out);
    cr_expect(strstr(out, "intent: play_song_by_artist (") &&
                  strstr(out, "\nartist: 아이유\n"),
              "%s", out);
    cr_expect(strstr(out, "\n\nintent: stop_music ("), "%s", out);
    free(out);
    char cmd[2048];
    snprintf(
        cmd, sizeof cmd,
        "printf '%%s\\n' '버스커 버스커 벚꽃 엔딩 틀어줘' '소리 좀 키워줘' | %s predict "
        "--model %s/run --json",
        BERTCC_EXE, dir);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    char *nl = strchr(out, '\n');
    cr_assert(nl, "%s", out);
    *nl = 0;
    j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", out);
    cr_expect_str_eq(json_string_value(json_object_get(j, "intent")), "play_song_by_title");
    json_t *slots = json_object_get(j, "slots");
    cr_expect_eq(json_array_size(slots), 2, "%s", out);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(slots, 0), "text")),
                     "버스커 버스커");
    json_decref(j);
    j = json_loads(nl + 1, 0, &je);
    cr_assert_not_null(j, "%s", nl + 1);
    cr_expect_str_eq(json_string_value(json_object_get(j, "intent")), "volume_up");
    json_decref(j);
    free(out);

    /* export: a Hugging Face directory. */
    cr_assert_eq(tu_bertcc(&out, "export --model %s/run -o %s/hf", dir, dir), 0, "%s", out);
    free(out);
    char hf[1100];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    j = json_load_file(tu_path(hf, "config.json"), 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_expect_str_eq(json_string_value(json_object_get(j, "model_type")), "bert");
    cr_expect_eq(get_num(j, "hidden_size"), 64);
    cr_expect_eq(get_num(j, "num_hidden_layers"), 1);
    json_t *id2 = json_object_get(j, "id2label");
    cr_expect_str_eq(json_string_value(json_object_get(id2, "0")), "UNK");
    cr_expect_eq(json_object_size(id2), 7);
    cr_expect_eq(get_num(json_object_get(j, "label2id"), "stop_music"),
                 json_object_size(id2) - 3); /* UNK, then sorted: ... stop, volume x2 */
    cr_expect_eq(json_array_size(json_object_get(j, "slot_labels")), 6);
    json_decref(j);
    cr_expect_eq(access(tu_path(hf, "vocab.txt"), R_OK), 0);
    cr_expect_eq(access(tu_path(hf, "tokenizer_config.json"), R_OK), 0);
    rt_tensor_list w;
    rt_list_init(&w);
    bc_err e;
    cr_assert_eq(rt_st_load(tu_path(hf, "model.safetensors"), &w, &e), 0, "%s", e.msg);
    const rt_tensor *c = rt_list_cfind(&w, "classifier.weight");
    cr_assert(c && c->rank == 2 && c->shape[0] == 7 && c->shape[1] == 64);
    cr_expect(rt_list_cfind(&w, "bert.embeddings.word_embeddings.weight"));
    cr_expect(rt_list_cfind(&w, "slot.classifier.bias"));
    cr_expect_null(rt_list_cfind(&w, "intent.classifier.weight"));
    rt_list_free(&w);
    size_t len;
    char *raw = tu_read_file(tu_path(hf, "model.safetensors"), &len);
    cr_assert(raw && len > 16);
    cr_expect(strstr(raw + 8, "\"__metadata__\":{\"format\":\"pt\"}"), "no pt metadata");
    free(raw);
}

/* Two tensors hold the same F32 values (exactly: a frozen parameter is never written). */
static int same_f32(const rt_tensor *a, const rt_tensor *b)
{
    if (!a || !b || a->dtype != RT_F32 || b->dtype != RT_F32 || rt_numel(a) != rt_numel(b))
        return 0;
    return memcmp(a->data, b->data, rt_nbytes(a)) == 0;
}

/* A Hugging Face model directory, as the Hub's original BERT checkpoints are laid out
 * (tests/fixtures/make_hf_checkpoint.py: LayerNorm.gamma/.beta spellings, a tied decoder,
 * position_ids, [UNK]/[CLS]/... not at ids 1..4, do_lower_case false), fine-tunes with
 * nothing but the directory: the model, --init, the vocabulary and the casing all come
 * from it. The frozen embedding layer norm and positions come out exactly as Python
 * wrote them (so gamma/beta were read, not initialized), and the fine-tuned model
 * answers the voice set. */
Test(cli_tasks, hugging_face_directory_fine_tunes, .timeout = 300)
{
    const char *dir = tu_tmpdir();
    const char *hf = "tests/fixtures/hf_bert_tiny";
    char *out = NULL;
    cr_assert_eq(tu_bertcc(&out, "demo-data -o %s/data --per-intent 500", dir), 0, "%s",
                 out);
    free(out);
    cr_assert_eq(tu_bertcc(&out,
                           "train %s --task intent-slot --data %s/data --init %s -o %s/run "
                           "--epochs 8 --batch-size 16 --lr 3e-3 --threads 1 --quiet "
                           "--freeze bert.embeddings.LayerNorm --freeze "
                           "bert.embeddings.position",
                           hf, dir, hf, dir),
                 0, "%s", out);
    cr_expect(strstr(out, "note: vocabulary: tests/fixtures/hf_bert_tiny/vocab.txt"), "%s",
              out);
    cr_expect(strstr(out, "note: tokenizer: --no-lowercase from"), "%s", out);
    static const char *const fresh[] = {"intent.classifier.weight",
                                        "intent.classifier.bias", "slot.classifier.weight",
                                        "slot.classifier.bias"};
    for (size_t i = 0; i < 4; i++) {
        char want[128];
        snprintf(want, sizeof want, "initialized '%s'", fresh[i]);
        cr_expect(strstr(out, want), "'%s' not in: %s", want, out);
    }
    cr_expect_null(strstr(out, "initialized 'bert."), "%s", out);
    free(out);

    rt_tensor_list py, run;
    rt_list_init(&py);
    rt_list_init(&run);
    bc_err e;
    cr_assert_eq(rt_st_load(tu_path(BERTCC_SOURCE_DIR "/tests/fixtures/hf_bert_tiny",
                                    "model.safetensors"),
                            &py, &e),
                 0, "%s", e.msg);
    cr_assert_eq(rt_st_load(tu_path(dir, "run/weights.safetensors"), &run, &e), 0, "%s",
                 e.msg);
    static const char *const frozen[][2] = {
        {"bert.embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.weight"},
        {"bert.embeddings.LayerNorm.beta", "bert.embeddings.LayerNorm.bias"},
        {"bert.embeddings.position_embeddings.weight",
         "bert.embeddings.position_embeddings.weight"},
    };
    for (size_t i = 0; i < 3; i++)
        cr_expect(
            same_f32(rt_list_cfind(&py, frozen[i][0]), rt_list_cfind(&run, frozen[i][1])),
            "%s", frozen[i][1]);
    /* Trained ones moved. */
    const rt_tensor *q0 =
        rt_list_cfind(&py, "bert.encoder.layer.0.attention.self.query.weight");
    const rt_tensor *q1 =
        rt_list_cfind(&run, "bert.encoder.layer.0.attention.self.query.weight");
    cr_assert(q0 && q1 && rt_numel(q0) == rt_numel(q1));
    cr_expect_not(same_f32(q0, q1));
    rt_list_free(&py);
    rt_list_free(&run);

    json_error_t je;
    json_t *j = json_load_file(tu_path(dir, "run/options.json"), 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_expect(json_is_false(json_object_get(json_object_get(j, "tokenizer"), "lowercase")),
              "options.json does not record --no-lowercase");
    json_decref(j);

    cr_assert_eq(tu_bertcc(&out, "eval --model %s/run --data %s/data --json", dir, dir), 0,
                 "%s", out);
    j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, out);
    cr_expect_geq(get_num(j, "intent_accuracy"), 0.85, "%s", out);
    cr_expect_geq(get_num(j, "slot_f1"), 0.85, "%s", out);
    json_decref(j);
    free(out);
    cr_assert_eq(tu_bertcc(&out, "predict --model %s/run '노래 그만 틀어'", dir), 0, "%s",
                 out);
    cr_expect(strstr(out, "intent: stop_music ("), "%s", out);
    free(out);
}

Test(cli_tasks, refusals_are_clear)
{
    const char *dir = tu_tmpdir();
    voice_set(dir, 20);
    char *out = NULL;
    static const struct {
        const char *args, *want;
    } bad[] = {
        {"train %s/model.xml --task intent-slot --data %s/data -o %s/r1", "--vocab"},
        {"train %s/model.xml --task intent-slot --data %s/nothing --vocab %s/vocab.txt -o "
         "%s/r2",
         "nothing/train/seq.in"},
        {"train %s/model.xml --task intent-slot --data %s/data --vocab %s/vocab.txt -o "
         "%s/r3 "
         "--max-seq 100",
         "max-position 32"},
        {"train %s/model.xml --data %s/data --vocab %s/vocab.txt -o %s/r4 --max-seq 10",
         "not an option of --task batches"},
        {"train %s/model.xml --task intent-slot --data %s/data --vocab %s/vocab.txt -o "
         "%s/r5 "
         "--backend gpu",
         "--backend"},
        {"train %s/model.xml --task intent-slot --data %s/data --vocab %s/vocab.txt -o "
         "%s/r6 --init tests",
         "--init tests: no model.safetensors"},
        {"train %s/data --task intent-slot --data %s/data --vocab %s/vocab.txt -o %s/r7",
         "data: a directory without config.json"},
        {"eval --model %s/none --data %s/data", "not a run directory"},
        {"eval --data %s/data", "--model"},
        {"predict", "--model"},
        {"export --model %s/none -o %s/hf", "not a run directory"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(tu_bertcc(&out, bad[i].args, dir, dir, dir, dir), 1, "%s: %s",
                     bad[i].args, out);
        cr_expect(strstr(out, bad[i].want), "%s: '%s' not in: %s", bad[i].args, bad[i].want,
                  out);
        free(out);
    }
    /* A run of batch files is not a task run. */
    cr_assert_eq(
        tu_bertcc(&out,
                  "train tests/fixtures/run_tiny/model.xml --data "
                  "tests/fixtures/run_tiny/batch.safetensors -o %s/b --steps 1 --quiet",
                  dir),
        0, "%s", out);
    free(out);
    cr_assert_eq(tu_bertcc(&out, "eval --model %s/b --data %s/data --split dev", dir, dir),
                 1);
    cr_expect(strstr(out, "trained on batch files"), "%s", out);
    free(out);
    cr_assert_eq(tu_bertcc(&out, "eval --model %s/b --data %s/data --split nope", dir, dir),
                 1);
    cr_expect(strstr(out, "--split"), "%s", out);
    free(out);
}
