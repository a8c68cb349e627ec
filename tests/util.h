/* util.h: small helpers shared by the tests (files, temporary directories, running the
 * bertcc executable). */
#ifndef BERTCC_TESTS_UTIL_H
#define BERTCC_TESTS_UTIL_H

#include <stddef.h>
#include <stdint.h>

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
