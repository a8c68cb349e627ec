/* util.h: small helpers shared by the tests (files, temporary directories, running the
 * bertcc executable). */
#ifndef BERTCC_TESTS_UTIL_H
#define BERTCC_TESTS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Notes that a task or a loader reports (a bc_note_fn with ctx a tu_notes): how many,
 * and the last one. */
typedef struct tu_notes {
    int n;
    char last[2048];
} tu_notes;
void tu_note(void *ctx, const char *msg);

/* Reads a whole file (NUL-terminated); NULL if unreadable. Caller frees. */
char *tu_read_file(const char *path, size_t *len);
/* 1 when both files can be read and hold the same bytes. */
int tu_same_file(const char *a, const char *b);
/* Writes text to path; 0 on success. */
int tu_write_file(const char *path, const char *text);
/* Returns a fresh directory under /tmp (static buffer per call index, caller copies). */
const char *tu_tmpdir(void);
/* Joins dir and name into a static rotating buffer. */
const char *tu_path(const char *dir, const char *name);
/* Runs a shell command, capturing stdout and stderr together into *out (malloc'd, may be
 * NULL). Returns the exit status (or -1 if it did not exit normally). */
int tu_run(const char *cmd, char **out);
/* Runs the bertcc executable from the source tree with printf-formatted arguments, as
 * tu_run does (output into *out). */
int tu_bertcc(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Source-tree path of a file: BERTCC_SOURCE_DIR "/" rel. */
const char *tu_src(const char *rel);

#endif

/* ---- comparing the JIT with the reference interpreter ---- */
#include "../ir/ir.h"
#include "../runtime/tensor.h"

/* Adds an F32 tensor of uniform values in [lo, hi) drawn from seed. */
void tu_add_rand_f32(rt_tensor_list *l, const char *name, int rank, const int64_t *shape,
                     double lo, double hi, uint64_t seed);
/* Adds an I64 tensor of uniform integers in [lo, hi) drawn from seed. */
void tu_add_rand_i64(rt_tensor_list *l, const char *name, int rank, const int64_t *shape,
                     int64_t lo, int64_t hi, uint64_t seed);

/* Runs g with the reference interpreter (f32 mode) and with the JIT (threads given),
 * and checks every output: max|jit - ref| <= rtol * max|ref| + atol. Returns 0 when all
 * match; otherwise 1 with a description in msg (also when either run fails). */
int tu_jit_vs_ref(const ir_graph *g, const rt_tensor_list *params,
                  const rt_tensor_list *inputs, int threads, double rtol, double atol,
                  char *msg, size_t len);

/* max|a - b| and max|b| over two F32 tensors of equal size; -1 if sizes differ. */
/* The first row of ids [N, SA] (i64) whose first min(S, SA) ids are x's, or -1: which
 * row of a split a batch row is, for oracle forward passes. */
int64_t tu_find_row(const rt_tensor *ids, const int64_t *x, int64_t S);

/* A generated pre-training corpus of topics. Vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK],
 * the TU_NCOMMON common words, then topic t's word k ("k" and the letters 'a' + t and
 * 'a' + k), id 5 + TU_NCOMMON + t * TU_TOPIC_WORDS + k, for `topics` topics. The
 * corpus: `docs` documents of `sents` sentences, document d about topic d % ntopics,
 * each sentence four of its words and two common ones then " .", drawn from seed.
 * tu_topic_vocab also saves the vocabulary to save_to (unless NULL); NULL on failure
 * (with e), as tu_topic_corpus returns -1. */
#define TU_TOPIC_WORDS 6
#define TU_NCOMMON 8
struct tx_vocab;
struct tx_vocab *tu_topic_vocab(int topics, const char *save_to, bc_err *e);
int tu_topic_corpus(const char *path, int docs, int sents, uint64_t seed, int ntopics);

double tu_max_err(const rt_tensor *a, const rt_tensor *b, double *max_ref);

/* ---- tests that read ../shared/data ----
 * Such tests have "shared_data" in their name. Without the data they skip, unless
 * BERTCC_REQUIRE_SHARED_DATA is set (.ci/run sets it where ../shared/data exists), in
 * which case a missing file fails the test instead of hiding it. */
#define TU_SHARED_DATA BERTCC_SOURCE_DIR "/../shared/data"
#define TU_NEED_SHARED_DATA(ok, what)                                                      \
    do {                                                                                   \
        if (!(ok)) {                                                                       \
            if (getenv("BERTCC_REQUIRE_SHARED_DATA"))                                      \
                cr_assert_fail("BERTCC_REQUIRE_SHARED_DATA is set but %s is missing",      \
                               what);                                                      \
            cr_skip_test("needs ../shared/data (%s); absent here", what);                  \
        }                                                                                  \
    } while (0)
