/* file.c: see file.h. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *bc_read_file(const char *path, size_t *len, bc_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        bc_errf(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 14, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (!buf) {
        bc_errf(e, "%s: out of memory", path);
        return NULL;
    }
    if (err) {
        free(buf);
        bc_errf(e, "%s: cannot read: %s", path, strerror(err));
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
