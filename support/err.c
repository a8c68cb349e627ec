/* err.c: formatting helpers for bc_err. */
#include "err.h"

#include <stdio.h>
#include <string.h>

int bc_verrf(bc_err *e, const char *fmt, va_list ap)
{
    if (e)
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return -1;
}

int bc_errf(bc_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bc_verrf(e, fmt, ap);
    va_end(ap);
    return -1;
}

void bc_err_prefix(bc_err *e, const char *fmt, ...)
{
    if (!e)
        return;
    char pre[512], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
}
