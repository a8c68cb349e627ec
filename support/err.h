/* err.h: errors as values. Library code fills an ir_err and returns -1 (or NULL);
 * only the driver prints and exits. Every layer uses it, so it lives in support/, which
 * depends on nothing. */
#ifndef BERTCC_SUPPORT_ERR_H
#define BERTCC_SUPPORT_ERR_H

#include <stdarg.h>

typedef struct ir_err {
    char msg[1024];
} ir_err;

/* Formats a message into *e (if e is non-NULL) and returns -1, so callers can write
 * `return ir_errf(e, "%s:%d: expected ...", file, line);`. */
int ir_errf(ir_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ir_verrf(ir_err *e, const char *fmt, va_list ap);

/* Prepends "prefix: " to an existing message (used to add context such as a file name). */
void ir_err_prefix(ir_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Receives informational notes ("ignored tensor ...", "3 unseen labels"); library code
 * takes one (and its ctx) where it has something to say that is not an error. May be
 * NULL. */
typedef void (*rt_note_fn)(void *ctx, const char *msg);

#endif
