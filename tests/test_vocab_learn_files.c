/* test_vocab_learn_files.c: tx_vocab_learn_files (text/tokenizer.h), `bertcc vocab` as
 * a library call: the file holds what the learner makes from the same files, the
 * executable writes the same bytes, and a missing file or a bad size is an error that
 * writes nothing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../text/tokenizer.h"
#include "util.h"

static const char *const lines[] = {
    "아이유 노래 아무거나 틀어줘", "노래 그만 틀어",   "블랙핑크 노래 틀어줘",
    "아이유의 좋은 날 틀어줘",     "다음 노래 틀어줘", "Play some music 노래",
    "the cat sat on the mat",      "the dog sat",      "cats and dogs",
};

typedef struct fixture {
    char dir[256], a[512], b[512];
} fixture;

static void make_fixture(fixture *f)
{
    snprintf(f->dir, sizeof f->dir, "%s", tu_tmpdir());
    snprintf(f->a, sizeof f->a, "%s/a.txt", f->dir);
    snprintf(f->b, sizeof f->b, "%s/b.txt", f->dir);
    char text[4096] = "";
    for (int r = 0; r < 3; r++)
        for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
            strcat(text, lines[i]);
            strcat(text, "\n");
        }
    cr_assert_eq(tu_write_file(f->a, text), 0);
    cr_assert_eq(tu_write_file(f->b, "노래 틀어줘\nthe cats sat\n"), 0);
}

Test(vocab_learn_files, writes_what_the_learner_makes_from_the_same_files)
{
    fixture f;
    make_fixture(&f);
    const char *files[2] = {f.a, f.b};
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(60);
    const char *out = tu_path(f.dir, "vocab.txt");
    int n = 0;
    tx_vocab_learn_stats st, st2;
    bc_err e;
    cr_assert_eq(tx_vocab_learn_files(&o, files, 2, out, &n, &st, &e), 0, "%s", e.msg);
    tx_vocab_learner *l = tx_vocab_learner_new(&o, &e);
    cr_assert_not_null(l, "%s", e.msg);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tx_vocab_learner_add_file(l, files[i], &e), 0, "%s", e.msg);
    char **tokens = NULL;
    int m = 0;
    cr_assert_eq(tx_vocab_learner_run(l, &tokens, &m, &st2, &e), 0, "%s", e.msg);
    cr_expect_eq(n, m);
    cr_expect(st.words == st2.words && st.unique_words == st2.unique_words &&
                  st.letters == st2.letters && st.hangul == st2.hangul &&
                  st.alphabet == st2.alphabet &&
                  st.alphabet_dropped == st2.alphabet_dropped && st.merges == st2.merges,
              "stats differ");
    cr_expect(st.hangul > 0 && st.merges > 0, "hangul %lld, merges %d", st.hangul,
              st.merges);
    char *text = tu_read_file(out, NULL);
    cr_assert_not_null(text);
    char *want = calloc(1, 16384);
    cr_assert_not_null(want);
    for (int i = 0; i < m; i++) {
        strcat(want, tokens[i]);
        strcat(want, "\n");
        free(tokens[i]);
    }
    free(tokens);
    cr_expect_str_eq(text, want);
    cr_expect(!strncmp(text, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", 30), "%s", text);
    free(text);
    free(want);
    tx_vocab_learner_free(l);
}

Test(vocab_learn_files, the_executable_writes_the_same_bytes)
{
    fixture f;
    make_fixture(&f);
    const char *files[2] = {f.a, f.b};
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(50);
    o.min_frequency = 3;
    char lib[1024], cli[1024];
    snprintf(lib, sizeof lib, "%s", tu_path(f.dir, "lib.txt"));
    snprintf(cli, sizeof cli, "%s", tu_path(f.dir, "cli.txt"));
    int n;
    bc_err e;
    cr_assert_eq(tx_vocab_learn_files(&o, files, 2, lib, &n, NULL, &e), 0, "%s", e.msg);
    char *out = NULL;
    int rc = tu_bertcc(&out, "vocab --corpus '%s' '%s' --size 50 --min-frequency 3 -o '%s'",
                       f.a, f.b, cli);
    cr_assert_eq(rc, 0, "%s", out);
    char note[64];
    snprintf(note, sizeof note, ": %d tokens (5 special", n);
    cr_expect(strstr(out, note), "the note lacks '%s': %s", note, out);
    free(out);
    char *a = tu_read_file(lib, NULL), *b = tu_read_file(cli, NULL);
    cr_assert(a && b);
    cr_expect_str_eq(a, b);
    free(a);
    free(b);
}

Test(vocab_learn_files, a_missing_file_or_a_bad_size_is_an_error_and_writes_nothing)
{
    fixture f;
    make_fixture(&f);
    char missing[1024], out[1024];
    snprintf(missing, sizeof missing, "%s", tu_path(f.dir, "missing.txt"));
    snprintf(out, sizeof out, "%s", tu_path(f.dir, "vocab.txt"));
    const char *files[2] = {f.a, missing};
    tx_vocab_learn_opts o = TX_VOCAB_LEARN_OPTS_DEFAULT(50);
    int n;
    bc_err e;
    struct stat sb;
    cr_assert_neq(tx_vocab_learn_files(&o, files, 2, out, &n, NULL, &e), 0);
    cr_expect(strstr(e.msg, "missing.txt"), "%s", e.msg);
    cr_expect_neq(stat(out, &sb), 0, "a missing file wrote %s", out);
    o.size = 3;
    cr_assert_neq(tx_vocab_learn_files(&o, files, 1, out, &n, NULL, &e), 0);
    cr_expect_neq(stat(out, &sb), 0, "a bad size wrote %s", out);
}
