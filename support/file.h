/* file.h: reading a whole file, for the parsers of every layer (model descriptions,
 * classification data). */
#ifndef BERTCC_SUPPORT_FILE_H
#define BERTCC_SUPPORT_FILE_H

#include <stddef.h>

#include "err.h"

/* The whole file at path, NUL-terminated (*len bytes before the NUL), to be freed by
 * the caller; NULL with e filled ("PATH: cannot open: ...", "cannot read", "out of
 * memory"). */
char *bc_read_file(const char *path, size_t *len, bc_err *e);

#endif
