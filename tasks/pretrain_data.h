/* pretrain_data.h: masked-LM + next-sentence pre-training data, made as Google's BERT
 * create_pretraining_data.py makes it, written in the `run` batch format (DESIGN.md §5).
 *
 * The corpus is plain text, one sentence per line, a blank line (only whitespace, as
 * Python's str.isspace sees it) between documents. Each other line is tokenized
 * (text/tokenizer.h) into one segment, unless it gives no token; empty documents are
 * dropped.
 * For every document (after shuffling the documents) and every repetition of
 * dupe_factor, instances are made as BERT makes them:
 *  - target length max_seq - 3, or with probability short_seq_prob a uniform random
 *    length in [2, max_seq - 3];
 *  - segments accumulate into a chunk until it reaches the target (or the document
 *    ends); A is a random number of the chunk's leading segments (at least one); B is
 *    the rest of the chunk (IsNext) with probability 1/2 when the chunk has two or more
 *    segments, otherwise a span of whole segments from a random start in a random other
 *    document, grown until it reaches the target (NotNext), and the chunk's unused
 *    segments are put back to start the next chunk;
 *  - truncate_seq_pair: while A + B exceeds max_seq - 3, drop a token from the longer
 *    (B on a tie), from its front or back with equal probability;
 *  - [CLS] A [SEP] B [SEP], token types 0 up to the first [SEP] and 1 after;
 *  - masking: the candidates are every token but [CLS] and [SEP] (and [PAD]), in words
 *    of "##" pieces with whole-word masking; they are shuffled and taken in order until
 *    num_to_predict = min(max_predictions, max(1, round(len * mask_prob))) tokens are
 *    chosen (len counts [CLS] and [SEP]; round is Python's, half to even; a whole word
 *    that would overshoot is skipped). Each chosen token becomes [MASK] with probability
 *    0.8, stays with 0.1, and becomes a uniform random id of the vocabulary with 0.1.
 * Finally every instance is shuffled. As in BERT, the other document is drawn up to ten
 * times, so a corpus of one document takes its NotNext B from that same document.
 *
 * Deviations from create_pretraining_data.py, all deliberate:
 *  - random numbers come from rt_rng (every choice takes a seeded generator), not
 *    Python's random, so the same seed does not give Google's exact instances; the
 *    choices, their order and their distributions are the same;
 *  - every input file starts a new document (BERT runs the last document of one file
 *    into the first of the next when a file does not end with a blank line);
 *  - with whole-word masking, a "##" piece right after [CLS]/[SEP] (left there by
 *    truncation) starts a word of its own; BERT attaches it to the last word before the
 *    [SEP], masking across the segment boundary;
 *  - [PAD] is never a candidate (it can only come from "[PAD]" written in the text, as
 *    the tokenizer keeps special tokens whole);
 *  - padding uses the vocabulary's [PAD] id (0 in BERT's vocabularies; 0 when absent).
 * The labels follow Hugging Face: mlm_labels holds the original id at chosen positions
 * and -100 elsewhere; nsp_labels is 0 for IsNext and 1 for NotNext. */
#ifndef BERTCC_TASKS_PRETRAIN_DATA_H
#define BERTCC_TASKS_PRETRAIN_DATA_H

#include <stdint.h>

#include "../runtime/rng.h"
#include "../runtime/tensor.h"
#include "../support/err.h"
#include "../text/tokenizer.h"

/* ---- options ----------------------------------------------------------------------- */

typedef struct tk_pt_opts {
    int max_seq;           /* row length S, [CLS] and two [SEP] included (>= 5) */
    int max_predictions;   /* chosen tokens per row at most (>= 0) */
    double mask_prob;      /* fraction of a row's tokens chosen, in [0, 1] */
    int dupe_factor;       /* repetitions of the corpus, each with fresh choices (>= 1) */
    double short_seq_prob; /* probability of a shorter random target length, in [0, 1] */
    int whole_word;        /* 1: choose whole words ("##" pieces with their word) */
} tk_pt_opts;

/* BERT's defaults. */
#define TK_PT_OPTS_DEFAULT ((tk_pt_opts){128, 20, 0.15, 10, 0.1, 0})
#define TK_PT_MAX_SEQ_LIMIT 65536
#define TK_PT_IGNORE (-100) /* mlm_labels at positions not chosen */

/* Checks the ranges above; the error names the option. */
int tk_pt_opts_check(const tk_pt_opts *o, bc_err *e);

/* Called now and then while documents are read or instances made (for progress). */
typedef void (*tk_pt_progress_fn)(void *ctx, int64_t documents, int64_t instances);

/* ---- documents ----------------------------------------------------------------------- */

/* A document: nseg >= 1 tokenized sentences, each with at least one token. */
typedef struct tk_pt_doc {
    const int32_t *ids; /* token ids; sentence i is ids[seg[i] .. seg[i + 1]) */
    const int64_t *seg; /* (nseg + 1) increasing offsets into ids */
    int nseg;
} tk_pt_doc;

/* Reads documents one at a time from files in order, so memory holds one document (and
 * one line) whatever the corpus size. Errors name FILE:LINE (unreadable file, invalid
 * UTF-8, a document of 2^31 sentences or more). The vocabulary must outlive the reader. */
typedef struct tk_pt_reader tk_pt_reader;

tk_pt_reader *tk_pt_reader_open(const char *const *paths, int npaths, const tx_vocab *v,
                                const tx_tok_opts *t, bc_err *e);
/* The next non-empty document into *doc (valid until the next call): 1; 0 at the end of
 * the last file; -1 on error. */
int tk_pt_reader_next(tk_pt_reader *r, tk_pt_doc *doc, bc_err *e);
/* Lines read so far, over all files. */
int64_t tk_pt_reader_lines(const tk_pt_reader *r);
void tk_pt_reader_free(tk_pt_reader *r);

/* A whole corpus in memory, as create_pretraining_data.py holds it: 4 bytes per token
 * and 8 per sentence. */
typedef struct tk_pt_corpus tk_pt_corpus;

tk_pt_corpus *tk_pt_corpus_load(const char *const *paths, int npaths, const tx_vocab *v,
                                const tx_tok_opts *t, tk_pt_progress_fn progress, void *ctx,
                                bc_err *e);
int64_t tk_pt_corpus_docs(const tk_pt_corpus *c);
int64_t tk_pt_corpus_sentences(const tk_pt_corpus *c);
int64_t tk_pt_corpus_tokens(const tk_pt_corpus *c);
tk_pt_doc tk_pt_corpus_doc(const tk_pt_corpus *c, int64_t k); /* k in [0, docs) */
void tk_pt_corpus_free(tk_pt_corpus *c);

/* ---- masking (also for dynamic masking during training) ---------------------------- */

/* What masking needs of a vocabulary ([CLS], [SEP], [MASK] and [PAD] ids, its size,
 * which tokens are "##" pieces) and of the options (mask_prob, max_predictions,
 * whole_word). The vocabulary may be freed afterwards; a masker is only read, so
 * threads may share one. Errors: the vocabulary lacks [CLS], [SEP] or [MASK]. */
typedef struct tk_pt_masker tk_pt_masker;

tk_pt_masker *tk_pt_masker_new(const tx_vocab *v, const tk_pt_opts *o, bc_err *e);
void tk_pt_masker_free(tk_pt_masker *m);
int tk_pt_masker_pad(const tk_pt_masker *m); /* the padding id */

/* Counts of masking decisions. */
typedef struct tk_pt_mask_stats {
    int64_t candidates; /* tokens that could have been chosen */
    int64_t chosen;     /* tokens chosen (labelled) */
    int64_t to_mask;    /* of which replaced by [MASK] */
    int64_t to_random;  /* replaced by a random id (which may be the same id) */
    int64_t kept;       /* left as they were */
} tk_pt_mask_stats;

/* Masks one unmasked row in place: ids[0..n) is [CLS] A [SEP] B [SEP] (n counts real
 * tokens only, not padding); labels[0..n) receives the original id at chosen positions
 * and TK_PT_IGNORE elsewhere. Returns the number chosen, or -1 when out of memory.
 * st (may be NULL) is added to. */
int tk_pt_mask_row(const tk_pt_masker *m, int64_t *ids, int64_t *labels, int n, rt_rng *r,
                   tk_pt_mask_stats *st);
/* Undoes a masking: ids[i] = labels[i] wherever labels[i] != TK_PT_IGNORE. */
void tk_pt_unmask_row(int64_t *ids, const int64_t *labels, int n);
/* Dynamic masking of a batch in the run format: every row of input_ids [B, S] (I64) is
 * unmasked through mlm_labels (I64, when present; it is added otherwise) and masked
 * afresh. A row's length is its number of attention_mask ones (S without the tensor).
 * Errors name the tensor (missing input_ids, a dtype other than I64, a shape that does
 * not match). */
int tk_pt_remask_batch(const tk_pt_masker *m, rt_tensor_list *batch, rt_rng *r,
                       tk_pt_mask_stats *st, bc_err *e);

/* ---- making the data ----------------------------------------------------------------- */

typedef struct tk_pt_stats {
    int64_t documents, sentences, tokens; /* of the corpus (read so far, streaming) */
    int64_t instances;                    /* rows made */
    int64_t is_next;                      /* rows whose B is the actual next segments */
    int64_t truncated;                    /* rows whose A + B had to be truncated */
    tk_pt_mask_stats mask;
} tk_pt_stats;

/* Makes every instance of the corpus, as above, from r, and appends to out the batch
 * [N, max_seq] I64 tensors input_ids, token_type_ids, attention_mask, mlm_labels and
 * nsp_labels [N], in that order (N may be 0 for an empty corpus). st may be NULL.
 * Memory: the corpus, plus 8 bytes per row position while instances are made, plus the
 * 32 bytes per position (and 8 per row) of the output. */
int tk_pt_create(const tk_pt_corpus *c, const tx_vocab *v, const tk_pt_opts *o, rt_rng *r,
                 rt_tensor_list *out, tk_pt_stats *st, tk_pt_progress_fn progress,
                 void *ctx, bc_err *e);

/* `bertcc pretrain-data`: the corpus files loaded (tk_pt_corpus_load), the instances
 * made (tk_pt_create, from a generator seeded with seed) and written to a safetensors
 * file. A corpus without any text is an error, and then nothing is written. */
typedef struct tk_pt_file_opts {
    const char *const *corpus; /* the corpus files, in order */
    int ncorpus;
    tx_tok_opts tok;
    tk_pt_opts pt;
    uint64_t seed;
    /* Progress (both may be NULL): phase(ctx, name, total) when a phase starts ("reading";
     * "making instances", with total = documents x dupe_factor to go through) and
     * phase(ctx, NULL, 0) when the last has ended; progress as above in between. */
    void (*phase)(void *ctx, const char *name, int64_t total);
    tk_pt_progress_fn progress;
    void *ctx;
} tk_pt_file_opts;

int tk_pt_write_file(const tk_pt_file_opts *o, const tx_vocab *v, const char *out,
                     tk_pt_stats *st, bc_err *e);

/* ---- streaming --------------------------------------------------------------------- */

/* The same instances made on the fly from files read one document at a time, for a
 * corpus larger than memory (one pass; open a new stream with a new seed for each
 * epoch, which gives fresh pairs and a fresh masking: dynamic masking). The stream
 * keeps a window of `window` documents (>= 2): it takes a random document of the
 * window, makes its instances (a NotNext B comes from another document of the window),
 * and replaces it with the next document read (once the corpus is over, finished
 * documents stay in the window as NotNext sources until the pass ends, so the last
 * documents too find other documents). Instances wait in a shuffle buffer of
 * `shuffle` rows (>= 1), and each row given out is a random one of the buffer. Memory
 * is bounded by the window's documents, plus 8 bytes per position for the buffered rows
 * (shuffle rows, plus the instances of one document). dupe_factor is ignored: each
 * pass is one repetition. The vocabulary must outlive the stream. */
typedef struct tk_pt_stream tk_pt_stream;

tk_pt_stream *tk_pt_stream_open(const char *const *paths, int npaths, const tx_vocab *v,
                                const tx_tok_opts *t, const tk_pt_opts *o, int window,
                                int shuffle, uint64_t seed, bc_err *e);
/* Replaces out's contents with the next batch of up to `rows` rows (the tensors of
 * tk_pt_create, [n, max_seq]) and returns n: fewer than rows only at the end of the
 * pass, 0 when it is over; -1 on error. */
int tk_pt_stream_next(tk_pt_stream *s, int rows, rt_tensor_list *out, bc_err *e);
void tk_pt_stream_stats(const tk_pt_stream *s, tk_pt_stats *st);
void tk_pt_stream_free(tk_pt_stream *s);

#endif
