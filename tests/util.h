/* util.h: small helpers shared by the tests (files, temporary directories, running the
 * bertcc executable). */
#ifndef BERTCC_TESTS_UTIL_H
#define BERTCC_TESTS_UTIL_H

#include <stddef.h>

/* Reads a whole file (NUL-terminated); NULL if unreadable. Caller frees. */
char *tu_read_file(const char *path, size_t *len);
/* Writes text to path; 0 on success. */
int tu_write_file(const char *path, const char *text);
/* Returns a fresh directory under /tmp (static buffer per call index, caller copies). */
const char *tu_tmpdir(void);
/* Joins dir and name into a static rotating buffer. */
const char *tu_path(const char *dir, const char *name);
/* Runs a shell command, capturing stdout and stderr together into *out (malloc'd, may be
 * NULL). Returns the exit status (or -1 if it did not exit normally). */
int tu_run(const char *cmd, char **out);
/* Source-tree path of a file: BERTCC_SOURCE_DIR "/" rel. */
const char *tu_src(const char *rel);

#endif
