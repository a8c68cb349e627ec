/* mirror.c: see mirror.h. The bundle is a sequence of entries (u32 name length, the
 * name relative to the run, u64 size, the bytes), broadcast after its u64 length. */
#include "mirror.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../support/file.h"
#include "../train/ckpt.h"
#include "../train/dist.h"
#include "../train/train.h"
#include "rundir.h"

typedef struct bundle {
    char *p;
    size_t n, cap;
} bundle;

static int put(bundle *b, const void *x, size_t n, bc_err *e)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return bc_errf(e, "out of memory packing the run for the other ranks");
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
    return 0;
}

static int put_entry(bundle *b, const char *name, const void *data, size_t size, bc_err *e)
{
    uint32_t nl = (uint32_t)strlen(name);
    uint64_t sz = size;
    return put(b, &nl, sizeof nl, e) || put(b, name, nl, e) || put(b, &sz, sizeof sz, e) ||
                   put(b, data, size, e)
               ? -1
               : 0;
}

static int put_file(bundle *b, const char *path, const char *name, bc_err *e)
{
    size_t size;
    char *data = bc_read_file(path, &size, e);
    if (!data)
        return -1;
    int rc = put_entry(b, name, data, size, e);
    free(data);
    return rc;
}

/* What a resume reads that is not a checkpoint: RUN's regular files but the links to
 * weights, the logs and the plot. */
static int skipped(const char *name)
{
    static const char *const skip[] = {TR_TRAIN_WEIGHTS, TR_TRAIN_OPTIM, RUNDIR_BEST,
                                       TR_TRAIN_LOG,     RUNDIR_METRICS, RUNDIR_PLOT};
    if (name[0] == '.' || strstr(name, ".tmp."))
        return 1;
    for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
        if (!strcmp(name, skip[i]))
            return 1;
    return 0;
}

static int pack(const char *run, bundle *b, bc_note_fn note, void *nctx, bc_err *e)
{
    DIR *d = opendir(run);
    if (!d)
        return bc_errf(e, "%s: %s", run, strerror(errno));
    struct dirent *de;
    char path[4400];
    struct stat st;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        snprintf(path, sizeof path, "%s/%s", run, de->d_name);
        if (!skipped(de->d_name) && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = put_file(b, path, de->d_name, e);
    }
    closedir(d);
    char w[4400], o[4400];
    int have = rc ? -1 : tr_ckpt_find(run, w, o, sizeof w, note, nctx, e);
    if (have <= 0)
        return have;
    /* the checkpoint as checkpoints/step-N/ with its manifest, and current naming it
     * (or, in the layout before checkpoints/, the two files at the top) */
    char *slash = strrchr(w, '/');
    *slash = 0;
    const char *step = strrchr(w, '/') ? strrchr(w, '/') + 1 : w;
    if (!strncmp(step, "step-", 5)) {
        char name[200];
        static const char *const files[] = {TR_CKPT_WEIGHTS, TR_CKPT_OPTIM,
                                            TR_CKPT_MANIFEST};
        for (size_t i = 0; !rc && i < sizeof files / sizeof *files; i++) {
            snprintf(path, sizeof path, "%s/%s", w, files[i]);
            snprintf(name, sizeof name, "%s/%s/%s", TR_CKPT_DIR, step, files[i]);
            rc = put_file(b, path, name, e);
        }
        snprintf(name, sizeof name, "%s/%s", TR_CKPT_DIR, TR_CKPT_CURRENT);
        return rc || put_entry(b, name, step, strlen(step), e) ? -1 : 0;
    }
    return put_file(b, o, TR_TRAIN_OPTIM, e) ||
                   put_file(b, strcat(strcat(w, "/"), TR_TRAIN_WEIGHTS), TR_TRAIN_WEIGHTS,
                            e)
               ? -1
               : 0;
}

static int unpack(const char *dir, const char *p, size_t n, bc_err *e)
{
    size_t at = 0;
    while (at < n) {
        uint32_t nl;
        uint64_t sz;
        if (n - at < sizeof nl)
            return bc_errf(e, "the run from rank 0 is cut short");
        memcpy(&nl, p + at, sizeof nl);
        at += sizeof nl;
        if (nl == 0 || nl > 1000 || n - at < nl + sizeof sz)
            return bc_errf(e, "the run from rank 0 is cut short");
        char name[1100], path[5400];
        memcpy(name, p + at, nl);
        name[nl] = 0;
        at += nl;
        memcpy(&sz, p + at, sizeof sz);
        at += sizeof sz;
        if (n - at < sz || strstr(name, ".."))
            return bc_errf(e, "the run from rank 0 is cut short");
        /* the directories on the way */
        for (char *s = strchr(name, '/'); s; s = strchr(s + 1, '/')) {
            *s = 0;
            snprintf(path, sizeof path, "%s/%s", dir, name);
            if (mkdir(path, 0777) && errno != EEXIST)
                return bc_errf(e, "cannot create %s: %s", path, strerror(errno));
            *s = '/';
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(p + at, 1, sz, f) == sz;
        if (f)
            ok &= fclose(f) == 0;
        if (!ok)
            return bc_errf(e, "cannot write %s", path);
        at += sz;
    }
    return 0;
}

int rundir_mirror(const char *run, char *mirror, size_t len, bc_note_fn note, void *nctx,
                  bc_err *e)
{
    bundle b = {NULL, 0, 0};
    uint64_t size = 0;
    int rc = 0;
    if (!mirror) {
        if (pack(run, &b, note, nctx, e)) {
            free(b.p);
            return -1; /* the caller ends the job (tr_dist_fail) */
        }
        size = b.n;
    }
    if (tr_dist_bcast(&size, sizeof size, e))
        rc = -1;
    else if (mirror && !(b.p = malloc(size ? size : 1)))
        rc = bc_errf(e, "out of memory for the run from rank 0");
    if (!rc && tr_dist_bcast(b.p, size, e))
        rc = -1;
    if (!rc && mirror) {
        const char *tmp = getenv("TMPDIR");
        snprintf(mirror, len, "%s/bertcc-resume-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(mirror)) {
            rc = bc_errf(e, "cannot create %s: %s", mirror, strerror(errno));
            mirror[0] = 0;
        } else {
            rc = unpack(mirror, b.p, size, e);
        }
    }
    free(b.p);
    return rc;
}
