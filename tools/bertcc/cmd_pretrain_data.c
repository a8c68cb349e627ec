/* cmd_pretrain_data.c: `bertcc pretrain-data`, masked-LM + next-sentence pre-training
 * data from plain text, as BERT's create_pretraining_data.py makes it, written in the
 * `run` batch format. Thin: the work is tk_pt_write_file (tasks/pretrain_data.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../tasks/pretrain_data.h"
#include "args.h"
#include "driver.h"

static const char *corpus_dummy, *vocab, *out, *max_seq, *max_pred, *mask_prob, *dupe,
    *short_prob, *whole, *seed, *lower, *no_lower, *strip, *no_strip, *threads, *backend,
    *quiet;
static const arg_opt opts[] = {
    {"corpus", "FILE", "text, a sentence a line, documents apart (repeatable; required)",
     &corpus_dummy},
    {"vocab", "FILE", "vocab.txt: one token per line, id = line number (required)", &vocab},
    {"o", "DATA.safetensors", "where to write the batch (required)", &out},
    {"max-seq", "N", "row length, [CLS] and [SEP]s included (default 128)", &max_seq},
    {"max-predictions", "N", "chosen tokens per row at most (default 20)", &max_pred},
    {"mask-prob", "P", "fraction of tokens chosen for prediction (default 0.15)",
     &mask_prob},
    {"dupe-factor", "N", "passes over the corpus, each with fresh choices (default 10)",
     &dupe},
    {"short-seq-prob", "P", "probability of a shorter random target length (default 0.1)",
     &short_prob},
    {"whole-word", NULL, "choose whole words: \"##\" pieces with their word", &whole},
    {"seed", "N", "seed of every random choice (default 0)", &seed},
    {"lowercase", NULL, "lower-case the text (the default)", &lower},
    {"no-lowercase", NULL, "keep case (for a cased vocabulary)", &no_lower},
    {"strip-accents", NULL, "strip accents even without lower-casing", &strip},
    {"no-strip-accents", NULL, "keep accents (and Hangul syllables) when lower-casing",
     &no_strip},
    {"threads", "N", "accepted for uniformity; this command uses one thread", &threads},
    {"backend", "jit|ref", "accepted for uniformity; unused here", &backend},
    {"quiet", NULL, "no progress or summary on stderr", &quiet},
    {0},
};

static const char usage[] = "bertcc pretrain-data --corpus FILE [--corpus FILE...] --vocab "
                            "VOCAB -o DATA.safetensors [options]";
static const char about[] =
    "Makes masked-LM and next-sentence pre-training data exactly as BERT's\n"
    "create_pretraining_data.py does (short sequences, IsNext/NotNext pairs with\n"
    "unused segments put back, truncation, 80/10/10 masking, optional whole-word\n"
    "masking, dupe-factor passes, a final shuffle) and writes it in the `run`\n"
    "batch format: input_ids, token_type_ids, attention_mask, mlm_labels\n"
    "[N, max-seq] (I64; mlm_labels -100 where not chosen) and nsp_labels [N]\n"
    "(0 = IsNext, 1 = NotNext). Every random choice comes from --seed: the same\n"
    "seed gives the same file. The whole corpus is held in memory (4 bytes a\n"
    "token); training can instead stream it (tasks/pretrain_data.h).";

static int parse_prob(const char *s, const char *opt, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || end == s || *end || !(*v >= 0 && *v <= 1)) {
        fprintf(stderr, "bertcc: --%s expects a number in [0, 1], got '%s'\n", opt, s);
        return -1;
    }
    return 0;
}

/* Progress on stderr, at most once a second and only once a run has taken a second, so
 * small corpora print just the summary. */
typedef struct progress {
    double t0, last;
    int tty, printed;
    const char *phase;
    int64_t total; /* documents to go through in this phase; 0 if unknown */
} progress;

static void on_progress(void *ctx, int64_t documents, int64_t instances)
{
    progress *p = ctx;
    double t = driver_now();
    if (t - p->last < 1.0)
        return;
    p->last = t;
    if (p->total)
        fprintf(stderr,
                "%sbertcc pretrain-data: %s: %lld / %lld documents, %lld instances%s",
                p->tty ? "\r" : "", p->phase, (long long)documents, (long long)p->total,
                (long long)instances, p->tty ? "\033[K" : "\n");
    else
        fprintf(stderr, "%sbertcc pretrain-data: %s: %lld documents%s", p->tty ? "\r" : "",
                p->phase, (long long)documents, p->tty ? "\033[K" : "\n");
    p->printed = 1;
}

/* A phase ends (the progress line gets its newline on a terminal), the next begins. */
static void on_phase(void *ctx, const char *name, int64_t total)
{
    progress *p = ctx;
    if (p->printed && p->tty)
        fputc('\n', stderr);
    p->printed = 0;
    p->phase = name;
    p->total = total;
}

/* The options after --corpus, --vocab and -o into *f; 1 after an error. */
static int parse_opts(tk_pt_file_opts *f)
{
    tk_pt_opts *o = &f->pt;
    long long x, s = 0;
    *o = TK_PT_OPTS_DEFAULT;
    if (max_seq) {
        if (args_int(max_seq, "max-seq", 5, TK_PT_MAX_SEQ_LIMIT, &x))
            return 1;
        o->max_seq = (int)x;
    }
    if (max_pred) {
        if (args_int(max_pred, "max-predictions", 0, TK_PT_MAX_SEQ_LIMIT, &x))
            return 1;
        o->max_predictions = (int)x;
    }
    if (dupe) {
        if (args_int(dupe, "dupe-factor", 1, 1000000, &x))
            return 1;
        o->dupe_factor = (int)x;
    }
    if ((mask_prob && parse_prob(mask_prob, "mask-prob", &o->mask_prob)) ||
        (short_prob && parse_prob(short_prob, "short-seq-prob", &o->short_seq_prob)))
        return 1;
    o->whole_word = whole != NULL;
    if ((seed && args_int(seed, "seed", 0, (long long)(~0ULL >> 1), &s)) ||
        args_unused(threads, backend))
        return 1;
    f->seed = (uint64_t)s;
    return driver_tok_opts(lower, no_lower, strip, no_strip, 1, -1, &f->tok);
}

static double pct(int64_t a, int64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

static void summary(const tk_pt_stats *st, const tk_pt_opts *o, double secs)
{
    struct stat sb;
    double mb = stat(out, &sb) ? 0.0 : (double)sb.st_size / 1e6;
    fprintf(stderr,
            "bertcc pretrain-data: %lld instances [%lld, %d] from %lld documents "
            "(%lld sentences, %lld tokens), dupe factor %d\n"
            "  IsNext %.1f%% (NotNext %.1f%%); truncated %.1f%%\n"
            "  masked %.2f%% of %lld candidate tokens (%.2f per row): %.1f%% [MASK], "
            "%.1f%% random, %.1f%% kept%s\n"
            "  wrote %s (%.1f MB) in %.2f s\n",
            (long long)st->instances, (long long)st->instances, o->max_seq,
            (long long)st->documents, (long long)st->sentences, (long long)st->tokens,
            o->dupe_factor, pct(st->is_next, st->instances),
            pct(st->instances - st->is_next, st->instances),
            pct(st->truncated, st->instances), pct(st->mask.chosen, st->mask.candidates),
            (long long)st->mask.candidates,
            st->instances ? (double)st->mask.chosen / (double)st->instances : 0.0,
            pct(st->mask.to_mask, st->mask.chosen),
            pct(st->mask.to_random, st->mask.chosen), pct(st->mask.kept, st->mask.chosen),
            o->whole_word ? " (whole words)" : "", out, mb, secs);
}

static int pretrain_data(const char **files, int nfiles)
{
    tk_pt_file_opts f = {.corpus = files, .ncorpus = nfiles};
    if (parse_opts(&f))
        return 1;
    double t0 = driver_now();
    tx_vocab *v = driver_vocab_load(vocab);
    if (!v)
        return 1;
    progress p = {t0, t0, isatty(2), 0, "reading", 0};
    f.progress = quiet ? NULL : on_progress;
    f.phase = on_phase;
    f.ctx = &p;
    bc_err e;
    tk_pt_stats st;
    int rc = tk_pt_write_file(&f, v, out, &st, &e);
    if (rc)
        fprintf(stderr, "bertcc pretrain-data: %s\n", e.msg);
    else if (!quiet)
        summary(&st, &f.pt, driver_now() - t0);
    tx_vocab_free(v);
    return rc ? 1 : 0;
}

/* --corpus may be repeated, which args_parse does not do: every one goes into files,
 * the other arguments into rest. */
static int take_corpus(int argc, char **argv, char **rest, int *nrest, const char **files,
                       int *nfiles)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (i >= 2 && (!strcmp(s, "--corpus") || !strcmp(s, "-corpus"))) {
            if (i + 1 == argc)
                return driver_fail("pretrain-data: option '--corpus' needs a value (FILE)");
            files[(*nfiles)++] = argv[++i];
        } else if (i >= 2 && (!strncmp(s, "--corpus=", 9) || !strncmp(s, "-corpus=", 8))) {
            files[(*nfiles)++] = strchr(s, '=') + 1;
        } else {
            rest[(*nrest)++] = argv[i];
        }
    }
    return 0;
}

int cmd_pretrain_data(int argc, char **argv)
{
    char **rest = malloc((size_t)argc * sizeof *rest);
    const char **files = malloc((size_t)argc * sizeof *files);
    int nrest = 0, nfiles = 0, help, rc = 1;
    if (!rest || !files) {
        rc = driver_fail("out of memory");
        goto done;
    }
    if (take_corpus(argc, argv, rest, &nrest, files, &nfiles))
        goto done;
    /* Positionals are corpus files too (as in `bertcc vocab --corpus A B`). */
    int npos = args_parse(nrest, rest, 2, opts, files + nfiles, argc - nfiles, &help,
                          "pretrain-data");
    if (npos < 0)
        goto done;
    nfiles += npos;
    if (help)
        rc = (args_usage(usage, about, opts), 0);
    else if (!nfiles || !vocab || !out)
        driver_fail("pretrain-data: --corpus, --vocab and -o are required (see --help)");
    else
        rc = pretrain_data(files, nfiles);
done:
    free(rest);
    free(files);
    return rc;
}
