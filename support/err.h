/* err.h: errors as values. Library code fills an bc_err and returns -1 (or NULL);
 * only the driver prints and exits. Every layer uses it, so it lives in support/, which
 * depends on nothing. */
#ifndef BERTCC_SUPPORT_ERR_H
#define BERTCC_SUPPORT_ERR_H

#include <stdarg.h>

typedef struct bc_err {
    char msg[1024];
} bc_err;

/* Formats a message into *e (if e is non-NULL) and returns -1, so callers can write
 * `return bc_errf(e, "%s:%d: expected ...", file, line);`. */
int bc_errf(bc_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int bc_verrf(bc_err *e, const char *fmt, va_list ap);

/* Prepends "prefix: " to an existing message (used to add context such as a file name). */
void bc_err_prefix(bc_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Receives informational notes ("ignored tensor ...", "3 unseen labels"); library code
 * takes one (and its ctx) where it has something to say that is not an error. May be
 * NULL. */
typedef void (*bc_note_fn)(void *ctx, const char *msg);

#endif
