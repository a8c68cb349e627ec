/* file.c: see file.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw's FTW_DEPTH */
#endif
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

int bc_open_read(const char *path, bc_err *e)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return bc_errf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        return bc_errf(e, "%s: cannot open: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bc_errf(e, "%s: %s", path,
                       S_ISDIR(st.st_mode) ? "is a directory, not a file"
                                           : "not a regular file (a FIFO, a device or a "
                                             "socket cannot be read as input)");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int err = errno;
        close(fd);
        return bc_errf(e, "%s: cannot open: %s", path, strerror(err));
    }
    return fd;
}

FILE *bc_fopen_read(const char *path, bc_err *e)
{
    int fd = bc_open_read(path, e);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        bc_errf(e, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

char *bc_read_file(const char *path, size_t *len, bc_err *e)
{
    FILE *f = bc_fopen_read(path, e);
    if (!f)
        return NULL;
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

/* ---- durable, atomic writes ---- */

static long fault_count;

static void report_faults(void)
{
    fprintf(stderr, "bertcc: fault points: %ld\n", fault_count);
}

void bc_fault_point(void)
{
    static long at = -2;
    if (at == -2) {
        const char *s = getenv("BERTCC_FAULT_AT");
        at = s && *s ? strtol(s, NULL, 10) : 0;
        if (at == -1)
            atexit(report_faults);
    }
    if (at && ++fault_count == at)
        kill(getpid(), SIGKILL);
}

int bc_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    bc_fault_point();
    int rc = fsync(fd);
    /* a directory on a filesystem that cannot sync one (EINVAL) is as durable as it gets */
    if (rc && errno == EINVAL)
        rc = 0;
    close(fd);
    return rc;
}

int bc_fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        return bc_fsync_path(".");
    if (slash == path)
        return bc_fsync_path("/");
    size_t n = (size_t)(slash - path);
    if (n >= sizeof dir)
        return errno = ENAMETOOLONG, -1;
    memcpy(dir, path, n);
    dir[n] = 0;
    return bc_fsync_path(dir);
}

int bc_is_special_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

FILE *bc_atomic_open(const char *path, char *tmp, size_t tmplen, bc_err *e)
{
    if (bc_is_special_file(path)) { /* /dev/null, a FIFO: written in place */
        if (tmplen)
            tmp[0] = 0;
        FILE *f = fopen(path, "wb");
        if (!f)
            bc_errf(e, "%s: cannot open: %s", path, strerror(errno));
        return f;
    }
    if ((size_t)snprintf(tmp, tmplen, "%s.tmp.%ld", path, (long)getpid()) >= tmplen) {
        bc_errf(e, "%s: path too long", path);
        return NULL;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f)
        bc_errf(e, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    return f;
}

void bc_atomic_abort(FILE *f, const char *tmp)
{
    if (f)
        fclose(f);
    if (tmp[0])
        unlink(tmp);
}

int bc_atomic_commit(FILE *f, const char *tmp, const char *path, bc_err *e)
{
    int err = 0;
    if (!tmp[0]) { /* a special file, written in place: nothing to sync or rename */
        if (ferror(f) || fflush(f))
            err = errno ? errno : EIO;
        if (fclose(f) && !err)
            err = errno ? errno : EIO;
        return err ? bc_errf(e, "%s: cannot write: %s", path, strerror(err)) : 0;
    }
    if (ferror(f) || fflush(f))
        err = errno ? errno : EIO;
    bc_fault_point();
    if (!err && fsync(fileno(f)))
        err = errno;
    if (fclose(f) && !err)
        err = errno ? errno : EIO;
    bc_fault_point();
    if (!err && rename(tmp, path))
        err = errno;
    if (err) {
        unlink(tmp);
        return bc_errf(e, "%s: cannot write: %s", path, strerror(err));
    }
    if (bc_fsync_parent(path))
        return bc_errf(e, "%s: cannot sync its directory: %s", path, strerror(errno));
    return 0;
}

int bc_atomic_write(const char *path, const void *data, size_t n, bc_err *e)
{
    char tmp[4200];
    FILE *f = bc_atomic_open(path, tmp, sizeof tmp, e);
    if (!f)
        return -1;
    if (fwrite(data, 1, n, f) != n) {
        int err = errno;
        bc_atomic_abort(f, tmp);
        return bc_errf(e, "%s: cannot write: %s", path, strerror(err));
    }
    return bc_atomic_commit(f, tmp, path, e);
}

int bc_is_stale_tmp(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name)
        return 0;
    while (strstr(t + 1, ".tmp."))
        t = strstr(t + 1, ".tmp.");
    const char *d = t + 5;
    if (!*d)
        return 0;
    char *end;
    long pid = strtol(d, &end, 10);
    if (*end || pid <= 0)
        return 0;
    if (pid == (long)getpid())
        return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

uint64_t bc_hash_bytes(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t w;
        memcpy(&w, b + k, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    for (; k < n; k++)
        h = (h ^ b[k]) * 0x100000001b3ULL;
    return h;
}

int bc_file_hash(const char *path, uint64_t *hash, int64_t *size, bc_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return bc_errf(e, "%s: cannot open: %s", path, strerror(errno));
    uint64_t h = 0xcbf29ce484222325ULL;
    int64_t n = 0;
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return bc_errf(e, "%s: out of memory", path);
    }
    size_t r;
    while ((r = fread(buf, 1, CHUNK, f)) > 0) { /* CHUNK: a multiple of 8 */
        h = bc_hash_bytes(h, buf, r);
        n += (int64_t)r;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    free(buf);
    if (err)
        return bc_errf(e, "%s: cannot read: %s", path, strerror(err));
    *hash = h ^ (uint64_t)n;
    *size = n;
    return 0;
}

/* ---- output sets ---- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void bc_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    return flag == FTW_F || flag == FTW_DP ? bc_fsync_path(path) : 0;
}

int bc_fsync_tree(const char *dir, bc_err *e)
{
    if (nftw(dir, fsync_entry, 16, FTW_DEPTH | FTW_PHYS))
        return bc_errf(e, "%s: cannot sync: %s", dir, strerror(errno));
    return 0;
}

/* Moves the entries of tmp into out (existing), recursing into directories out holds
 * too; `last` (a name in tmp itself) after the others. */
static int merge_into(const char *tmp, const char *out, const char *last, bc_err *e)
{
    DIR *d = opendir(tmp);
    if (!d)
        return bc_errf(e, "%s: cannot open: %s", tmp, strerror(errno));
    struct dirent *de;
    char from[4200], to[4200];
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        rewinddir(d);
        while (!rc && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            int is_last = last && !strcmp(de->d_name, last);
            if (is_last != pass)
                continue;
            snprintf(from, sizeof from, "%s/%s", tmp, de->d_name);
            snprintf(to, sizeof to, "%s/%s", out, de->d_name);
            struct stat a, b;
            if (stat(from, &a) == 0 && S_ISDIR(a.st_mode) && stat(to, &b) == 0 &&
                S_ISDIR(b.st_mode)) {
                rc = merge_into(from, to, NULL, e);
                continue;
            }
            bc_fault_point();
            if (rename(from, to))
                rc = bc_errf(e, "cannot move %s to %s: %s", from, to, strerror(errno));
        }
    }
    closedir(d);
    if (!rc && bc_fsync_path(out))
        rc = bc_errf(e, "%s: cannot sync: %s", out, strerror(errno));
    return rc;
}

int bc_publish_dir(const char *tmp, const char *out, const char *last, bc_err *e)
{
    bc_fault_point();
    if (rename(tmp, out) == 0) {
        if (bc_fsync_parent(out))
            return bc_errf(e, "%s: cannot sync its directory: %s", out, strerror(errno));
        return 0;
    }
    if (errno != ENOTEMPTY && errno != EEXIST) {
        int err = errno;
        bc_remove_tree(tmp);
        return bc_errf(e, "cannot create %s: %s", out, strerror(err));
    }
    int rc = merge_into(tmp, out, last, e);
    bc_remove_tree(tmp);
    return rc;
}

void bc_err_untmp(bc_err *e, const char *tmp, const char *out)
{
    char *at = strstr(e->msg, tmp);
    if (!at)
        return;
    char buf[sizeof e->msg];
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - e->msg), e->msg, out, at + strlen(tmp));
    snprintf(e->msg, sizeof e->msg, "%s", buf);
}

size_t bc_drop_nul(char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i])
            s[k++] = s[i];
    s[k] = 0;
    return k;
}
