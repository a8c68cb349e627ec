/* cmd_pretrain_data.c: `bertcc pretrain-data`, masked-LM + next-sentence pre-training
 * data from plain text, as BERT's create_pretraining_data.py makes it, written in the
 * `run` batch format. Thin: the work is in tasks/pretrain_data.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../runtime/safetensors.h"
#include "../../tasks/pretrain_data.h"
#include "args.h"
#include "driver.h"

int cmd_pretrain_data(int argc, char **argv);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_prob(const char *s, const char *opt, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 1)) {
        fprintf(stderr, "bertcc: --%s expects a number in [0, 1], got '%s'\n", opt, s);
        return -1;
    }
    *out = v;
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
    double t = now();
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

static void progress_end(progress *p)
{
    if (p->printed && p->tty)
        fputc('\n', stderr);
    p->printed = 0;
}

static double pct(int64_t a, int64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

typedef struct pd_args {
    const char **corpus;
    int ncorpus;
    const char *vocab, *out, *max_seq, *max_pred, *mask_prob, *dupe, *short_prob, *whole;
    const char *seed, *lower, *no_lower, *strip, *no_strip, *threads, *backend, *quiet;
} pd_args;

static int pretrain_data(const pd_args *a)
{
    rt_pt_opts o = RT_PT_OPTS_DEFAULT;
    long long x, seed = 0;
    if (a->max_seq) {
        if (args_int(a->max_seq, "max-seq", 5, RT_PT_MAX_SEQ_LIMIT, &x))
            return 1;
        o.max_seq = (int)x;
    }
    if (a->max_pred) {
        if (args_int(a->max_pred, "max-predictions", 0, RT_PT_MAX_SEQ_LIMIT, &x))
            return 1;
        o.max_predictions = (int)x;
    }
    if (a->dupe) {
        if (args_int(a->dupe, "dupe-factor", 1, 1000000, &x))
            return 1;
        o.dupe_factor = (int)x;
    }
    if ((a->mask_prob && parse_prob(a->mask_prob, "mask-prob", &o.mask_prob)) ||
        (a->short_prob && parse_prob(a->short_prob, "short-seq-prob", &o.short_seq_prob)))
        return 1;
    o.whole_word = a->whole != NULL;
    if (a->seed && args_int(a->seed, "seed", 0, (long long)(~0ULL >> 1), &seed))
        return 1;
    if (a->threads && args_int(a->threads, "threads", 1, 1024, &x))
        return 1;
    if (a->backend && strcmp(a->backend, "jit") && strcmp(a->backend, "ref"))
        return driver_fail("--backend must be jit or ref");
    if (a->lower && a->no_lower)
        return driver_fail("--lowercase and --no-lowercase contradict each other");
    if (a->strip && a->no_strip)
        return driver_fail("--strip-accents and --no-strip-accents contradict each other");
    rt_tok_opts t = RT_TOK_OPTS_DEFAULT;
    t.lowercase = a->no_lower ? 0 : 1;
    t.strip_accents = a->strip ? 1 : a->no_strip ? 0 : -1;

    double t0 = now();
    ir_err e;
    rt_vocab *v = rt_vocab_load(a->vocab, &e);
    if (!v)
        return driver_fail(e.msg);
    if (rt_vocab_duplicates(v)) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "%s: %d repeated tokens; each maps to its last line, as in Hugging Face",
                 a->vocab, rt_vocab_duplicates(v));
        driver_note(NULL, msg);
    }
    int rc = 1;
    rt_pt_corpus *c = NULL;
    rt_tensor_list out;
    rt_list_init(&out);
    rt_pt_stats st;
    progress p = {t0, t0, isatty(2), 0, "reading", 0};
    if (!(c = rt_pt_corpus_load(a->corpus, a->ncorpus, v, &t, a->quiet ? NULL : on_progress,
                                &p, &e))) {
        driver_fail(e.msg);
        goto done;
    }
    progress_end(&p);
    if (!rt_pt_corpus_docs(c)) {
        driver_fail("pretrain-data: the corpus has no text (one sentence per line, blank "
                    "lines between documents)");
        goto done;
    }
    p.phase = "making instances";
    p.total = rt_pt_corpus_docs(c) * o.dupe_factor;
    rt_rng r;
    rt_rng_seed(&r, (uint64_t)seed);
    if (rt_pt_create(c, v, &o, &r, &out, &st, a->quiet ? NULL : on_progress, &p, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    progress_end(&p);
    if (rt_st_save(a->out, &out, &e)) {
        driver_fail(e.msg);
        goto done;
    }
    if (!a->quiet) {
        struct stat sb;
        double mb = stat(a->out, &sb) ? 0.0 : (double)sb.st_size / 1e6;
        fprintf(stderr,
                "bertcc pretrain-data: %lld instances [%lld, %d] from %lld documents "
                "(%lld sentences, %lld tokens), dupe factor %d\n"
                "  IsNext %.1f%% (NotNext %.1f%%); truncated %.1f%%\n"
                "  masked %.2f%% of %lld candidate tokens (%.2f per row): %.1f%% [MASK], "
                "%.1f%% random, %.1f%% kept%s\n"
                "  wrote %s (%.1f MB) in %.2f s\n",
                (long long)st.instances, (long long)st.instances, o.max_seq,
                (long long)st.documents, (long long)st.sentences, (long long)st.tokens,
                o.dupe_factor, pct(st.is_next, st.instances),
                pct(st.instances - st.is_next, st.instances),
                pct(st.truncated, st.instances), pct(st.mask.chosen, st.mask.candidates),
                (long long)st.mask.candidates,
                st.instances ? (double)st.mask.chosen / (double)st.instances : 0.0,
                pct(st.mask.to_mask, st.mask.chosen),
                pct(st.mask.to_random, st.mask.chosen), pct(st.mask.kept, st.mask.chosen),
                o.whole_word ? " (whole words)" : "", a->out, mb, now() - t0);
    }
    rc = 0;
done:
    rt_list_free(&out);
    rt_pt_corpus_free(c);
    rt_vocab_free(v);
    return rc;
}

int cmd_pretrain_data(int argc, char **argv)
{
    pd_args a = {0};
    const char *corpus_dummy = NULL;
    const arg_opt opts[] = {
        {"corpus", "FILE",
         "text, a sentence a line, documents apart (repeatable; required)", &corpus_dummy},
        {"vocab", "FILE", "vocab.txt: one token per line, id = line number (required)",
         &a.vocab},
        {"o", "DATA.safetensors", "where to write the batch (required)", &a.out},
        {"max-seq", "N", "row length, [CLS] and [SEP]s included (default 128)", &a.max_seq},
        {"max-predictions", "N", "chosen tokens per row at most (default 20)", &a.max_pred},
        {"mask-prob", "P", "fraction of tokens chosen for prediction (default 0.15)",
         &a.mask_prob},
        {"dupe-factor", "N", "passes over the corpus, each with fresh choices (default 10)",
         &a.dupe},
        {"short-seq-prob", "P",
         "probability of a shorter random target length (default 0.1)", &a.short_prob},
        {"whole-word", NULL, "choose whole words: \"##\" pieces with their word", &a.whole},
        {"seed", "N", "seed of every random choice (default 0)", &a.seed},
        {"lowercase", NULL, "lower-case the text (the default)", &a.lower},
        {"no-lowercase", NULL, "keep case (for a cased vocabulary)", &a.no_lower},
        {"strip-accents", NULL, "strip accents even without lower-casing", &a.strip},
        {"no-strip-accents", NULL, "keep accents (and Hangul syllables) when lower-casing",
         &a.no_strip},
        {"threads", "N", "accepted for uniformity; this command uses one thread",
         &a.threads},
        {"backend", "jit|ref", "accepted for uniformity; unused here", &a.backend},
        {"quiet", NULL, "no progress or summary on stderr", &a.quiet},
        {0},
    };
    /* --corpus may be repeated, which args_parse does not do: take every one out first.
     * Positionals are corpus files too (as in `bertcc vocab --corpus A B`). */
    char **rest = malloc((size_t)argc * sizeof *rest);
    const char **files = malloc((size_t)argc * sizeof *files);
    if (!rest || !files) {
        free(rest);
        free(files);
        return driver_fail("out of memory");
    }
    int nrest = 0, nfiles = 0, rc = 1;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (i >= 2 && (!strcmp(s, "--corpus") || !strcmp(s, "-corpus"))) {
            if (i + 1 == argc) {
                driver_fail("pretrain-data: option '--corpus' needs a value (FILE)");
                goto done;
            }
            files[nfiles++] = argv[++i];
        } else if (i >= 2 && (!strncmp(s, "--corpus=", 9) || !strncmp(s, "-corpus=", 8))) {
            files[nfiles++] = strchr(s, '=') + 1;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    int help;
    int npos = args_parse(nrest, rest, 2, opts, files + nfiles, argc - nfiles, &help,
                          "pretrain-data");
    if (npos < 0)
        goto done;
    if (help) {
        args_usage(
            "bertcc pretrain-data --corpus FILE [--corpus FILE...] --vocab VOCAB "
            "-o DATA.safetensors [options]",
            "Makes masked-LM and next-sentence pre-training data exactly as BERT's\n"
            "create_pretraining_data.py does (short sequences, IsNext/NotNext pairs with\n"
            "unused segments put back, truncation, 80/10/10 masking, optional whole-word\n"
            "masking, dupe-factor passes, a final shuffle) and writes it in the `run`\n"
            "batch format: input_ids, token_type_ids, attention_mask, mlm_labels\n"
            "[N, max-seq] (I64; mlm_labels -100 where not chosen) and nsp_labels [N]\n"
            "(0 = IsNext, 1 = NotNext). Every random choice comes from --seed: the same\n"
            "seed gives the same file. The whole corpus is held in memory (4 bytes a\n"
            "token); training can instead stream it (tasks/pretrain_data.h).",
            opts);
        rc = 0;
        goto done;
    }
    nfiles += npos;
    if (!nfiles || !a.vocab || !a.out) {
        driver_fail("pretrain-data: --corpus, --vocab and -o are required (see --help)");
        goto done;
    }
    a.corpus = files;
    a.ncorpus = nfiles;
    rc = pretrain_data(&a);
done:
    free(rest);
    free(files);
    return rc;
}
