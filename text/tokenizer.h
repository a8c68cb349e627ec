/* tokenizer.h: BERT's tokenizer, exactly as Hugging Face's BertTokenizer (and the
 * BertNormalizer + BertPreTokenizer + WordPiece of its tokenizers library) does it, with
 * the byte offsets of every token in the original text; and a WordPiece vocabulary
 * learner.
 *
 * The pipeline, in Hugging Face's order:
 *  1. Special tokens written in the text ([PAD] [UNK] [CLS] [SEP] [MASK], those the
 *     vocabulary has) are matched in the raw text, leftmost-longest, and stay whole:
 *     Hugging Face's added tokens with normalized=false. "[mask]" is not special.
 *  2. Each stretch between them is cleaned: NUL, U+FFFD and control characters (every
 *     category C* except tab, newline and carriage return) are removed; whitespace
 *     (space, \t \n \r, categories Zs, Zl, Zp) separates words.
 *  3. CJK ideographs (BERT's code point ranges) become words of their own.
 *  4. Lower-casing (Python's str.lower: full lower-case mapping, final sigma included)
 *     and accent stripping (NFD, then every Mn character removed). strip_accents follows
 *     lowercase unless set, as in Hugging Face: lower-cased Korean therefore becomes
 *     conjoining jamo, because NFD decomposes Hangul syllables; a cased vocabulary, or
 *     strip_accents = 0, keeps syllables.
 *  5. Punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and categories P*) is split off,
 *     one character per token.
 *  6. WordPiece: greedy longest match first, continuations prefixed "##"; a word with
 *     no segmentation, or longer than 100 characters (after normalization), is one
 *     [UNK].
 * Offsets are byte offsets [start, end) into the original text; a token made from part
 * of a character (a jamo of a syllable, a letter whose accent was stripped) spans the
 * whole original character.
 *
 * Text must be valid UTF-8 (an error names the byte offset otherwise). Unicode data
 * comes from utf8proc; see tokenizer.c for the few places where it differs from
 * Python's unicodedata. */
#ifndef BERTCC_TEXT_TOKENIZER_H
#define BERTCC_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../support/err.h"

/* ---- vocabulary ------------------------------------------------------------------ */

typedef struct tx_vocab tx_vocab;

typedef enum tx_special { TX_PAD, TX_UNK, TX_CLS, TX_SEP, TX_MASK, TX_NSPECIAL } tx_special;

/* "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]". */
const char *tx_special_name(tx_special s);

/* Loads a vocab.txt: one token per line, id = line number (from 0); lines end in \n,
 * \r\n or \r. As transformers' load_vocab: a token that appears twice maps to its later
 * line (both ids stay valid for tx_vocab_token), and an empty line is a token too.
 * Errors name the file (and line): unreadable, empty, invalid UTF-8, a NUL byte, more
 * than 2^31-1 lines, or no [UNK] token. */
tx_vocab *tx_vocab_load(const char *path, bc_err *e);
/* The same from text[0..len) in memory (name: for messages). */
tx_vocab *tx_vocab_parse(const char *text, size_t len, const char *name, bc_err *e);

/* The same from a list of n tokens (name is used in messages). */
tx_vocab *tx_vocab_from_list(const char *const *tokens, int n, const char *name, bc_err *e);

void tx_vocab_free(tx_vocab *v);

int tx_vocab_size(const tx_vocab *v);
/* The id of a token, or -1. */
int tx_vocab_id(const tx_vocab *v, const char *tok, size_t len);
/* The token of an id, or NULL when id is out of range. */
const char *tx_vocab_token(const tx_vocab *v, int id);
/* The id of a special token, or -1 when the vocabulary lacks it ([UNK] never does). */
int tx_vocab_special(const tx_vocab *v, tx_special s);
/* How many lines repeated an earlier token (0 for a well-formed vocabulary). */
int tx_vocab_duplicates(const tx_vocab *v);

/* Writes tokens one per line (atomically: PATH.tmp.<pid>, then rename). */
int tx_vocab_save(const char *path, const char *const *tokens, int n, bc_err *e);

/* ---- options ----------------------------------------------------------------------- */

/* Hugging Face's BertTokenizer options (do_lower_case, strip_accents). */
typedef struct tx_tok_opts {
    int lowercase;     /* 1: lower-case (the default); 0: keep case */
    int strip_accents; /* -1: follow lowercase (Hugging Face's None); 0: keep; 1: strip */
} tx_tok_opts;

#define TX_TOK_OPTS_DEFAULT ((tx_tok_opts){1, -1})
/* Words longer than this many characters (after normalization) become [UNK]. */
#define TX_TOK_MAX_WORD_CHARS 100

/* Whether o strips accents. */
int tx_tok_strip_accents(const tx_tok_opts *o);

/* ---- tokenizing -------------------------------------------------------------------- */

typedef struct tx_token {
    int32_t id;         /* vocabulary id */
    int32_t start, end; /* byte offsets [start, end) into the original text */
} tx_token;

/* A growable list of tokens; zero-initialize, free with tx_token_list_free. */
typedef struct tx_token_list {
    tx_token *t;
    int n, cap;
} tx_token_list;

void tx_token_list_free(tx_token_list *l);

/* Tokenizes text[0..len) (no [CLS]/[SEP] added) and appends the tokens to out. Text
 * longer than 2^31-1 bytes, or not valid UTF-8, is an error (out is then as it was).
 * A loaded vocabulary is only read, so threads may tokenize with one at once. */
int tx_tokenize(const tx_vocab *v, const tx_tok_opts *o, const char *text, size_t len,
                tx_token_list *out, bc_err *e);

/* Tokenizes pre-split words (e.g. seq.in words that carry slot labels), each on its own,
 * and appends the tokens to out; first[i] receives the index in out of word i's first
 * token, and first[nwords] = out->n, so word i's tokens are first[i]..first[i+1]. A
 * word that gives no token at all (only control characters, say) gives one [UNK], as
 * the JointBERT recipe does, so every word has a first token. Offsets are into the
 * word. */
int tx_tokenize_words(const tx_vocab *v, const tx_tok_opts *o, const char *const *words,
                      int nwords, tx_token_list *out, int *first, bc_err *e);

/* The basic tokenizer alone (steps 2 to 5; special tokens are not treated apart): calls
 * fn for every word with its normalized UTF-8 text and its byte span in the original.
 * A callback that returns nonzero stops the walk, and that value is returned. */
typedef int (*tx_word_fn)(void *ctx, const char *word, size_t len, int32_t start,
                          int32_t end);
int tx_basic_tokenize(const tx_tok_opts *o, const char *text, size_t len, tx_word_fn fn,
                      void *ctx, bc_err *e);

/* ---- learning a vocabulary (wordpiece_learn.c) -------------------------------------- */

/* WordPiece vocabulary learning as Hugging Face's WordPieceTrainer does it (BPE merges
 * with "##" continuations over basic-tokenized words). The vocabulary is: the five
 * special tokens, then the alphabet (each character seen, in its word-initial form and
 * its "##" form, most frequent first), then merged pieces in the order they were
 * learned, until size tokens. Each step merges the adjacent pair of pieces that is most
 * frequent over the corpus (ties: the smaller merged string, then the smaller left
 * piece, in byte order), so the result is deterministic. A word holding a character
 * form left out of the alphabet would be [UNK] anyway, and is not learned from. */
typedef struct tx_vocab_learn_opts {
    int size;           /* target vocabulary size, special tokens included (>= 6) */
    int min_frequency;  /* pairs seen fewer times are never merged (default 2) */
    int limit_alphabet; /* at most this many alphabet tokens; 0: half the vocabulary */
    tx_tok_opts tok;    /* the basic tokenizer's options on the corpus */
} tx_vocab_learn_opts;

/* Defaults: min_frequency 2, alphabet at most half of size, lower-case but keep accents
 * (so Korean keeps its syllables; see wordpiece_learn.c). */
#define TX_VOCAB_LEARN_OPTS_DEFAULT(n) ((tx_vocab_learn_opts){(n), 2, 0, {1, 0}})

typedef struct tx_vocab_learn_stats {
    long long words;        /* basic-tokenized words in the corpus */
    long long unique_words; /* distinct words */
    long long letters;      /* characters of category L* in the words */
    long long hangul;       /* of which Hangul syllables or jamo */
    int alphabet;           /* single-character tokens kept */
    int alphabet_dropped;   /* single-character forms left out by limit_alphabet */
    int merges;             /* merge steps made */
} tx_vocab_learn_stats;

typedef struct tx_vocab_learner tx_vocab_learner;

tx_vocab_learner *tx_vocab_learner_new(const tx_vocab_learn_opts *o, bc_err *e);
/* Counts the words of a text (valid UTF-8). */
int tx_vocab_learner_add_text(tx_vocab_learner *l, const char *text, size_t len, bc_err *e);
/* Counts the words of a file, line by line; errors name FILE:LINE. */
int tx_vocab_learner_add_file(tx_vocab_learner *l, const char *path, bc_err *e);
/* Learns the vocabulary: *tokens receives n malloc'd strings (free each, then the
 * array). stats may be NULL. */
int tx_vocab_learner_run(tx_vocab_learner *l, char ***tokens, int *n,
                         tx_vocab_learn_stats *stats, bc_err *e);
void tx_vocab_learner_free(tx_vocab_learner *l);
/* The whole of `bertcc vocab`: learns from the files paths[0..npaths) in order (as
 * tx_vocab_learner_add_file reads them) and writes the vocabulary to out
 * (tx_vocab_save); *ntok receives its size. stats may be NULL. */
int tx_vocab_learn_files(const tx_vocab_learn_opts *o, const char *const *paths, int npaths,
                         const char *out, int *ntok, tx_vocab_learn_stats *stats,
                         bc_err *e);

#endif
