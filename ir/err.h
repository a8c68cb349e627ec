/* err.h: errors as values. Library code fills an ir_err and returns -1 (or NULL);
 * only the driver prints and exits. Every module depends on ir/, so this lives here. */
#ifndef BERTCC_IR_ERR_H
#define BERTCC_IR_ERR_H

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

#endif
