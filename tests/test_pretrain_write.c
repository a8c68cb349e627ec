/* test_pretrain_write.c: tk_pt_write_file (tasks/pretrain_data.h), `bertcc
 * pretrain-data` as a library call: the file holds what tk_pt_corpus_load and
 * tk_pt_create make from the same seed, the executable writes the same bytes, progress
 * phases come in order, and an empty or missing corpus is an error that writes
 * nothing. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../runtime/safetensors.h"
#include "../tasks/pretrain_data.h"
#include "util.h"

static const char *const tokens[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on",  "mat",
    "dog",   "ran",   "far",   "away",  "home",   "a",   "##s", "big", "red", "sun"};
#define NTOK ((int)(sizeof tokens / sizeof *tokens))

typedef struct fixture {
    char dir[256], corpus[512], vocab[512];
    tx_vocab *v;
} fixture;

static void make_fixture(fixture *f)
{
    snprintf(f->dir, sizeof f->dir, "%s", tu_tmpdir());
    snprintf(f->corpus, sizeof f->corpus, "%s/corpus.txt", f->dir);
    snprintf(f->vocab, sizeof f->vocab, "%s/vocab.txt", f->dir);
    char text[8192] = "", vocab[1024] = "";
    for (int d = 0; d < 8; d++) {
        for (int s = 0; s < 4 + d % 3; s++) {
            char line[256];
            snprintf(line, sizeof line, "%s %s %s on the %s\n", tokens[5 + (d + s) % 15],
                     tokens[6 + (d * s) % 13], tokens[7 + s % 12], tokens[9 + d % 10]);
            strcat(text, line);
        }
        strcat(text, "\n");
    }
    for (int i = 0; i < NTOK; i++) {
        strcat(vocab, tokens[i]);
        strcat(vocab, "\n");
    }
    cr_assert_eq(tu_write_file(f->corpus, text), 0);
    cr_assert_eq(tu_write_file(f->vocab, vocab), 0);
    bc_err e;
    f->v = tx_vocab_load(f->vocab, &e);
    cr_assert_not_null(f->v, "%s", e.msg);
}

static tk_pt_file_opts file_opts(const char *const *corpus)
{
    tk_pt_file_opts o = {.corpus = corpus,
                         .ncorpus = 1,
                         .tok = TX_TOK_OPTS_DEFAULT,
                         .pt = TK_PT_OPTS_DEFAULT,
                         .seed = 7};
    o.pt.max_seq = 16;
    o.pt.max_predictions = 3;
    o.pt.dupe_factor = 3;
    return o;
}

static void load(const char *path, rt_tensor_list *l)
{
    bc_err e;
    rt_list_init(l);
    cr_assert_eq(rt_st_load(path, l, &e), 0, "%s", e.msg);
}

Test(pretrain_write, the_file_holds_what_load_and_create_make)
{
    fixture f;
    make_fixture(&f);
    const char *corpus[1] = {f.corpus};
    tk_pt_file_opts o = file_opts(corpus);
    char out[1024];
    snprintf(out, sizeof out, "%s/data.safetensors", f.dir);
    tk_pt_stats st, st2;
    bc_err e;
    cr_assert_eq(tk_pt_write_file(&o, f.v, out, &st, &e), 0, "%s", e.msg);
    tk_pt_corpus *c = tk_pt_corpus_load(corpus, 1, f.v, &o.tok, NULL, NULL, &e);
    cr_assert_not_null(c, "%s", e.msg);
    rt_rng r;
    rt_rng_seed(&r, 7);
    rt_tensor_list want, got;
    rt_list_init(&want);
    cr_assert_eq(tk_pt_create(c, f.v, &o.pt, &r, &want, &st2, NULL, NULL, &e), 0, "%s",
                 e.msg);
    load(out, &got);
    cr_assert_eq(got.n, want.n);
    for (int i = 0; i < want.n; i++) {
        const rt_tensor *w = &want.t[i], *g = rt_list_cfind(&got, w->name);
        cr_assert_not_null(g, "no %s", w->name);
        cr_expect(rt_nbytes(g) == rt_nbytes(w) && !memcmp(g->data, w->data, rt_nbytes(w)),
                  "%s differs", w->name);
    }
    cr_expect(!memcmp(&st, &st2, sizeof st), "stats differ");
    cr_expect_eq(st.documents, 8);
    cr_expect_gt(st.instances, 0);
    rt_list_free(&want);
    rt_list_free(&got);
    tk_pt_corpus_free(c);
    tx_vocab_free(f.v);
}

Test(pretrain_write, the_executable_writes_the_same_bytes)
{
    fixture f;
    make_fixture(&f);
    const char *corpus[1] = {f.corpus};
    tk_pt_file_opts o = file_opts(corpus);
    char lib[1024], cli[1024];
    snprintf(lib, sizeof lib, "%s/lib.safetensors", f.dir);
    snprintf(cli, sizeof cli, "%s/cli.safetensors", f.dir);
    bc_err e;
    cr_assert_eq(tk_pt_write_file(&o, f.v, lib, NULL, &e), 0, "%s", e.msg);
    char *text = NULL;
    int rc = tu_bertcc(&text,
                       "pretrain-data --corpus '%s' --vocab '%s' -o '%s' --max-seq 16 "
                       "--max-predictions 3 --dupe-factor 3 --seed 7 --quiet",
                       f.corpus, f.vocab, cli);
    cr_assert_eq(rc, 0, "%s", text);
    free(text);
    size_t n1, n2;
    char *a = tu_read_file(lib, &n1), *b = tu_read_file(cli, &n2);
    cr_assert(a && b);
    cr_expect(n1 == n2 && !memcmp(a, b, n1), "the files differ");
    free(a);
    free(b);
    tx_vocab_free(f.v);
}

typedef struct phases {
    char seen[256];
    int64_t total;
} phases;

static void on_phase(void *ctx, const char *name, int64_t total)
{
    phases *p = ctx;
    strcat(p->seen, name ? name : "(end)");
    strcat(p->seen, ";");
    if (name && !strcmp(name, "making instances"))
        p->total = total;
}

Test(pretrain_write, phases_come_in_order_with_the_documents_to_go_through)
{
    fixture f;
    make_fixture(&f);
    const char *corpus[1] = {f.corpus};
    tk_pt_file_opts o = file_opts(corpus);
    phases p = {"", 0};
    o.phase = on_phase;
    o.ctx = &p;
    bc_err e;
    cr_assert_eq(tk_pt_write_file(&o, f.v, tu_path(f.dir, "d.safetensors"), NULL, &e), 0,
                 "%s", e.msg);
    cr_expect_str_eq(p.seen, "reading;making instances;(end);");
    cr_expect_eq(p.total, 8 * 3);
    tx_vocab_free(f.v);
}

Test(pretrain_write, an_empty_or_missing_corpus_is_an_error_and_writes_nothing)
{
    fixture f;
    make_fixture(&f);
    char empty[1024], missing[1024], out[1024];
    snprintf(empty, sizeof empty, "%s/empty.txt", f.dir);
    snprintf(missing, sizeof missing, "%s/missing.txt", f.dir);
    snprintf(out, sizeof out, "%s/out.safetensors", f.dir);
    cr_assert_eq(tu_write_file(empty, "\n  \n\n"), 0);
    const char *corpus[1] = {empty};
    tk_pt_file_opts o = file_opts(corpus);
    bc_err e;
    struct stat sb;
    cr_assert_neq(tk_pt_write_file(&o, f.v, out, NULL, &e), 0);
    cr_expect(strstr(e.msg, "no text"), "%s", e.msg);
    cr_expect_neq(stat(out, &sb), 0, "an empty corpus wrote %s", out);
    corpus[0] = missing;
    cr_assert_neq(tk_pt_write_file(&o, f.v, out, NULL, &e), 0);
    cr_expect(strstr(e.msg, missing), "%s", e.msg);
    cr_expect_neq(stat(out, &sb), 0, "a missing corpus wrote %s", out);
    tx_vocab_free(f.v);
}
