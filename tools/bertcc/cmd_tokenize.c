/* cmd_tokenize.c: `bertcc tokenize` (text -> WordPiece tokens, ids and offsets) and
 * `bertcc vocab` (learn a WordPiece vocabulary from a corpus), and the tokenizer helpers
 * of the driver. The work is in text/tokenizer.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../../text/tokenizer.h"
#include "args.h"
#include "driver.h"

int driver_tok_opts(const char *lower, const char *no_lower, const char *strip,
                    const char *no_strip, int lower_default, int strip_default,
                    tx_tok_opts *o)
{
    if (lower && no_lower)
        return driver_fail("--lowercase and --no-lowercase contradict each other");
    if (strip && no_strip)
        return driver_fail("--strip-accents and --no-strip-accents contradict each other");
    o->lowercase = lower ? 1 : no_lower ? 0 : lower_default;
    o->strip_accents = strip ? 1 : no_strip ? 0 : strip_default;
    return 0;
}

tx_vocab *driver_vocab_load(const char *path)
{
    bc_err e;
    tx_vocab *v = tx_vocab_load(path, &e);
    if (!v)
        return driver_fail(e.msg), NULL;
    if (tx_vocab_duplicates(v)) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "%s: %d repeated tokens; each maps to its last line, as in Hugging Face",
                 path, tx_vocab_duplicates(v));
        driver_note(NULL, msg);
    }
    return v;
}

/* ---- tokenize ------------------------------------------------------------------------ */

/* The option values of tokenize and vocab (one command runs per process; the tokenizer
 * flags, --threads and --backend are in both tables). */
static const char *vocab, *lower, *no_lower, *strip, *no_strip, *ids, *threads, *backend;
static const arg_opt tokenize_opts[] = {
    {"vocab", "FILE", "vocab.txt: one token per line, id = line number (required)", &vocab},
    {"lowercase", NULL, "lower-case the text (the default)", &lower},
    {"no-lowercase", NULL, "keep case (for a cased vocabulary)", &no_lower},
    {"strip-accents", NULL, "strip accents even without lower-casing", &strip},
    {"no-strip-accents", NULL, "keep accents (and Hangul syllables) when lower-casing",
     &no_strip},
    {"ids", NULL, "print only the ids, space-separated, one line per text", &ids},
    {"threads", "N", "accepted for uniformity; tokenizing uses one thread", &threads},
    {"backend", "jit|ref", "accepted for uniformity; unused here", &backend},
    {0},
};

static const char tokenize_about[] =
    "Splits text into WordPiece tokens exactly as Hugging Face's BertTokenizer\n"
    "does, and prints one token per line: ID<TAB>TOKEN<TAB>START-END, where\n"
    "START-END are byte offsets into the text. Several TEXT arguments are\n"
    "joined with single spaces. Without TEXT, each line of standard input is\n"
    "tokenized on its own (tables separated by a blank line); with --ids, each\n"
    "input line gives one output line of ids, without [CLS] and [SEP].\n"
    "Lower-casing strips accents unless --no-strip-accents, so lower-cased\n"
    "Korean becomes jamo as in Hugging Face: use --no-lowercase (or\n"
    "--no-strip-accents) with a vocabulary of Hangul syllables.";

static int print_tokens(const tx_vocab *v, const tx_token_list *l)
{
    for (int i = 0; i < l->n; i++) {
        const tx_token *t = &l->t[i];
        if (ids)
            printf(i > 0 ? " %d" : "%d", t->id);
        else
            printf("%d\t%s\t%d-%d\n", t->id, tx_vocab_token(v, t->id), t->start, t->end);
    }
    if (ids)
        putchar('\n');
    return ferror(stdout) ? driver_fail("cannot write to standard output") : 0;
}

/* The TEXT arguments, joined with single spaces, as one text. */
static int tokenize_args(const tx_vocab *v, const tx_tok_opts *o, const char **pos,
                         int npos)
{
    size_t len = 0;
    for (int i = 0; i < npos; i++)
        len += strlen(pos[i]) + 1;
    char *text = malloc(len), *end = text;
    if (!text)
        return driver_fail("out of memory");
    for (int i = 0; i < npos; i++)
        end += sprintf(end, "%s%s", i ? " " : "", pos[i]);
    bc_err e;
    tx_token_list l = {0};
    int rc = tx_tokenize(v, o, text, (size_t)(end - text), &l, &e) ? driver_fail(e.msg)
                                                                   : print_tokens(v, &l);
    tx_token_list_free(&l);
    free(text);
    return rc;
}

/* Each line of standard input on its own. */
static int tokenize_lines(const tx_vocab *v, const tx_tok_opts *o)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long lineno = 0;
    tx_token_list l = {0};
    bc_err e;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n')
            n--;
        l.n = 0;
        if (tx_tokenize(v, o, line, (size_t)n, &l, &e)) {
            fprintf(stderr, "bertcc: stdin:%lld: %s\n", lineno, e.msg);
            rc = 1;
        } else {
            if (!ids && lineno > 1)
                putchar('\n');
            rc = print_tokens(v, &l);
        }
        /* one answer per line as it comes, so a program can talk to us line by line */
        if (!rc && fflush(stdout))
            rc = driver_fail("cannot write to standard output");
    }
    free(line);
    tx_token_list_free(&l);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *pos[64];
    int help;
    int npos = args_parse(argc, argv, 2, tokenize_opts, pos, 64, &help, "tokenize");
    if (npos < 0)
        return 1;
    if (help)
        return args_usage("bertcc tokenize --vocab FILE [options] [TEXT...]",
                          tokenize_about, tokenize_opts),
               0;
    if (!vocab)
        return driver_fail("tokenize: --vocab FILE is required (see --help)");
    tx_tok_opts o;
    if (driver_tok_opts(lower, no_lower, strip, no_strip, 1, -1, &o) ||
        args_unused(threads, backend))
        return 1;
    tx_vocab *v = driver_vocab_load(vocab);
    if (!v)
        return 1;
    int rc = npos > 0 ? tokenize_args(v, &o, pos, npos) : tokenize_lines(v, &o);
    if (fflush(stdout))
        rc = driver_fail("cannot write to standard output");
    tx_vocab_free(v);
    return rc;
}

/* ---- vocab --------------------------------------------------------------------------- */

static const char *corpus, *size, *out, *min_freq, *limit;
static const arg_opt vocab_opts[] = {
    {"corpus", "FILE...", "plain text, one or more files (required)", &corpus},
    {"size", "N", "vocabulary size, special tokens included (required)", &size},
    {"o", "FILE", "where to write vocab.txt (required)", &out},
    {"lowercase", NULL, "lower-case the corpus (the default)", &lower},
    {"no-lowercase", NULL, "keep case (a cased vocabulary)", &no_lower},
    {"strip-accents", NULL,
     "strip accents, as Hugging Face does when lower-casing "
     "(turns Hangul into jamo)",
     &strip},
    {"no-strip-accents", NULL, "keep accents and Hangul syllables (the default here)",
     &no_strip},
    {"min-frequency", "K", "never merge a pair seen fewer than K times (default 2)",
     &min_freq},
    {"limit-alphabet", "K", "at most K single-character tokens (default: half of N)",
     &limit},
    {"threads", "N", "accepted for uniformity; learning uses one thread", &threads},
    {"backend", "jit|ref", "accepted for uniformity; unused here", &backend},
    {0},
};

static const char vocab_about[] =
    "Learns a WordPiece vocabulary as Hugging Face's WordPieceTrainer does: the\n"
    "special tokens [PAD] [UNK] [CLS] [SEP] [MASK], then every character seen\n"
    "(word-initial and ## forms, most frequent first), then the most frequent\n"
    "merges of adjacent pieces, until N tokens. Deterministic: ties are broken by\n"
    "the merged string. Words come from BERT's basic tokenizer with the options\n"
    "given. The default lower-cases but keeps accents, so that Korean is learned\n"
    "as syllables and frequent multi-syllable pieces rather than jamo; tokenize\n"
    "and train with the same options: --no-strip-accents (or --no-lowercase for\n"
    "a cased vocabulary).";

/* The options after --corpus, --size and -o into *o; 1 after an error. */
static int learn_opts(tx_vocab_learn_opts *o)
{
    long long n, k;
    *o = TX_VOCAB_LEARN_OPTS_DEFAULT(0);
    if (args_int(size, "size", TX_NSPECIAL + 1, 0x7fffffff, &n))
        return 1;
    o->size = (int)n;
    if (min_freq) {
        if (args_int(min_freq, "min-frequency", 1, 0x7fffffff, &k))
            return 1;
        o->min_frequency = (int)k;
    }
    if (limit) {
        if (args_int(limit, "limit-alphabet", 1, 0x7fffffff, &k))
            return 1;
        o->limit_alphabet = (int)k;
    }
    if (driver_tok_opts(lower, no_lower, strip, no_strip, 1, 0, &o->tok) ||
        args_unused(threads, backend))
        return 1;
    return 0;
}

/* What was learned, and what to watch out for. */
static void learn_notes(const tx_vocab_learn_opts *o, int ntok,
                        const tx_vocab_learn_stats *st, double secs)
{
    char msg[1024];
    snprintf(msg, sizeof msg,
             "%s: %d tokens (5 special, %d characters, %d merges) from %lld words "
             "(%lld distinct) in %.1f s",
             out, ntok, st->alphabet, ntok - TX_NSPECIAL - st->alphabet, st->words,
             st->unique_words, secs);
    driver_note(NULL, msg);
    if (ntok < o->size) {
        snprintf(msg, sizeof msg,
                 "only %d tokens: no pair is seen %d times or more to merge further", ntok,
                 o->min_frequency);
        driver_note(NULL, msg);
    }
    if (st->alphabet_dropped) {
        snprintf(msg, sizeof msg,
                 "%d rare character forms left out (--limit-alphabet); words with them "
                 "become [UNK]",
                 st->alphabet_dropped);
        driver_note(NULL, msg);
    }
    if (st->hangul && st->hangul * 20 >= st->letters)
        driver_note(NULL, tx_tok_strip_accents(&o->tok)
                              ? "Korean text learned with accent stripping: Hangul became "
                                "jamo (--no-strip-accents keeps syllables)"
                              : "Korean text: tokenize and train with --no-strip-accents "
                                "(or --no-lowercase) so that Hangul syllables stay whole");
}

int cmd_vocab(int argc, char **argv)
{
    const char *files[257];
    int help;
    int npos = args_parse(argc, argv, 2, vocab_opts, files + 1, 256, &help, "vocab");
    if (npos < 0)
        return 1;
    if (help)
        return args_usage("bertcc vocab --corpus FILE... --size N -o vocab.txt [options]",
                          vocab_about, vocab_opts),
               0;
    if (!corpus || !size || !out)
        return driver_fail("vocab: --corpus, --size and -o are required (see --help)");
    tx_vocab_learn_opts o;
    if (learn_opts(&o))
        return 1;
    double t0 = driver_now();
    files[0] = corpus;
    int ntok;
    tx_vocab_learn_stats st;
    bc_err e;
    if (tx_vocab_learn_files(&o, files, npos + 1, out, &ntok, &st, &e))
        return driver_fail(e.msg);
    learn_notes(&o, ntok, &st, driver_now() - t0);
    return 0;
}
