/* train_intent_slot.c: the Korean voice-assistant job of tools/demo.sh, written against
 * the library headers alone (no driver code): it writes the bundled data set, learns a
 * cased WordPiece vocabulary from its training split, fine-tunes a bert-tiny-shaped
 * model from scratch for intent + slots with the JIT, scores the test split and answers
 * a sentence. It is the proof that `bertcc` (tools/bertcc/) only parses options and
 * prints: everything it does, a C program does through tasks/, text/ and the layers
 * below.
 *
 *   build/train_intent_slot MODEL.xml WORK_DIR [EPOCHS]
 *
 * WORK_DIR (made if absent) receives data/, vocab.txt and run/; a run already there is
 * refused, as `bertcc train` refuses it.
 *
 * Exit status 0 when every step worked and the sentence "아이유 노래 아무거나 틀어줘"
 * got the intent play_song_by_artist with the artist 아이유 (CI runs it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../tasks/demo_data.h"
#include "../tasks/rundir.h"
#include "../tasks/trainer.h"
#include "../text/tokenizer.h"

static int fail(const char *what, const bc_err *e)
{
    fprintf(stderr, "train_intent_slot: %s: %s\n", what, e->msg);
    return 1;
}

static void note(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "note: %s\n", msg);
}

/* A vocabulary of n pieces learned from one file, cased (Hangul stays syllables). */
static int learn_vocab(const char *corpus, int n, const char *out, bc_err *e)
{
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(n);
    o.tok.lowercase = 0;
    tx_vocab_learner *l = tx_vocab_learner_new(&o, e);
    char **tokens = NULL;
    int ntok = 0, rc = -1;
    tx_vocab_learn_stats st;
    if (l && !tx_vocab_learner_add_file(l, corpus, e) &&
        !tx_vocab_learner_run(l, &tokens, &ntok, &st, e))
        rc = tx_vocab_save(out, (const char *const *)tokens, ntok, e);
    for (int i = 0; i < ntok; i++)
        free(tokens[i]);
    free(tokens);
    tx_vocab_learner_free(l);
    return rc;
}

/* The answer's intent and its first slot's words, or "" when absent. */
static void answer(const json_t *j, const char **intent, const char **artist)
{
    *intent = json_string_value(json_object_get(j, "intent"));
    *artist = "";
    json_t *slots = json_object_get(j, "slots");
    for (size_t i = 0; i < json_array_size(slots); i++) {
        json_t *s = json_array_get(slots, i);
        if (!strcmp(json_string_value(json_object_get(s, "slot")) ?: "", "artist"))
            *artist = json_string_value(json_object_get(s, "text")) ?: "";
    }
    if (!*intent)
        *intent = "";
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.xml WORK_DIR [EPOCHS]\n", argv[0]);
        return 2;
    }
    char data[4096], vocab[4096], run[4096];
    snprintf(data, sizeof data, "%s/data", argv[2]);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", argv[2]);
    snprintf(run, sizeof run, "%s/run", argv[2]);
    if (mkdir(argv[2], 0777) && errno != EEXIST) {
        fprintf(stderr, "train_intent_slot: cannot create %s: %s\n", argv[2],
                strerror(errno));
        return 1;
    }
    bc_err e;
    tk_demo_data_counts n;
    char train_split[4200];
    snprintf(train_split, sizeof train_split, "%s/train/seq.in", data);
    if (tk_demo_data_write(data, 0, 200, &n, &e))
        return fail("demo data", &e);
    if (learn_vocab(train_split, 600, vocab, &e))
        return fail("vocabulary", &e);

    /* Train: the options are `bertcc train`'s, as strings. */
    rundir_train_args a = {.model = argv[1],
                           .task = "intent-slot",
                           .data = data,
                           .vocab = vocab,
                           .no_lower = "1",
                           .out = run,
                           .epochs = argc > 3 ? argv[3] : "6",
                           .batch_size = "16",
                           .lr = "1e-3",
                           .seed = "0",
                           .note = note};
    rundir_train_result r;
    int rc = rundir_train(&a, &r, &e);
    rundir_train_result_free(&r);
    if (rc)
        return fail("training", &e);
    printf("trained %lld updates, final loss %.4f\n", (long long)r.train.step,
           r.train.last_loss);

    /* Score the test split and answer a sentence with the best weights. */
    rundir_model m;
    rundir_model_opts mo = {"best", CG_BACKEND_JIT, 0, note, NULL, 0, NULL};
    tk_metrics s;
    json_t *j = NULL;
    if (rundir_model_open(&m, run, data, &mo, &e) ||
        rundir_evaluate(&m, TK_SPLIT_TEST, 64, &s, &e))
        return fail("evaluation", &e);
    for (int i = 0; i < s.n; i++)
        printf("test %s %.4f\n", s.name[i], s.value[i]);
    if (rundir_predict(&m, "아이유 노래 아무거나 틀어줘", NULL, &j, &e))
        return fail("prediction", &e);
    rundir_print_prediction(&m, j, stdout);
    const char *intent, *artist;
    answer(j, &intent, &artist);
    int ok = !strcmp(intent, "play_song_by_artist") && !strcmp(artist, "아이유");
    json_decref(j);
    rundir_model_close(&m);
    if (!ok)
        fprintf(stderr, "train_intent_slot: wrong answer: intent '%s', artist '%s'\n",
                intent, artist);
    return ok ? 0 : 1;
}
