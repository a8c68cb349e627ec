/* ckpt.c: see ckpt.h. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "../runtime/safetensors.h"
#include "../support/file.h"

#define PATHLEN 4200

static const char *pjoin(char *buf, const char *dir, const char *name)
{
    snprintf(buf, PATHLEN, "%s/%s", dir, name);
    return buf;
}

/* "step-N" -> N, or -1 */
static int64_t step_of(const char *name)
{
    if (strncmp(name, "step-", 5) || !name[5])
        return -1;
    char *end;
    long long v = strtoll(name + 5, &end, 10);
    return *end || v < 0 ? -1 : (int64_t)v;
}

/* The step `current` names, or -1 when there is none (or it cannot be read). */
static int64_t read_current(const char *ck)
{
    char path[PATHLEN], buf[64] = "";
    FILE *f = fopen(pjoin(path, ck, TR_CKPT_CURRENT), "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    return step_of(buf);
}

/* ---- the manifest ---- */

static int write_manifest(const char *dir, int64_t step, bc_err *e)
{
    static const char *const files[] = {TR_CKPT_WEIGHTS, TR_CKPT_OPTIM};
    json_t *j = json_pack("{s:I, s:{}}", "step", (json_int_t)step, "files");
    if (!j)
        return bc_errf(e, "out of memory");
    char path[PATHLEN];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        uint64_t h;
        int64_t size;
        if (bc_file_hash(pjoin(path, dir, files[i]), &h, &size, e)) {
            json_decref(j);
            return -1;
        }
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, h);
        json_object_set_new(json_object_get(j, "files"), files[i],
                            json_pack("{s:I, s:s}", "size", (json_int_t)size, "hash", hex));
    }
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    int rc = text ? bc_atomic_write(pjoin(path, dir, TR_CKPT_MANIFEST), text, strlen(text), e)
                  : bc_errf(e, "out of memory");
    free(text);
    return rc;
}

int tr_ckpt_verify(const char *dir, bc_err *e)
{
    char path[PATHLEN];
    json_error_t je;
    json_t *j = json_load_file(pjoin(path, dir, TR_CKPT_MANIFEST), 0, &je);
    json_t *files = json_object_get(j, "files");
    if (!json_is_object(files) || !json_object_get(files, TR_CKPT_WEIGHTS) ||
        !json_object_get(files, TR_CKPT_OPTIM)) {
        json_decref(j);
        return bc_errf(e, "%s: %s", path,
                       j ? "no list of " TR_CKPT_WEIGHTS " and " TR_CKPT_OPTIM : je.text);
    }
    const char *name;
    json_t *v;
    int rc = 0;
    json_object_foreach(files, name, v)
    {
        json_t *js = json_object_get(v, "size"), *jh = json_object_get(v, "hash");
        uint64_t h;
        int64_t size;
        if (!json_is_integer(js) || !json_is_string(jh) || strchr(name, '/')) {
            rc = bc_errf(e, "%s: entry %s is not {\"size\": N, \"hash\": HEX}", path, name);
            break;
        }
        char fp[PATHLEN];
        if (bc_file_hash(pjoin(fp, dir, name), &h, &size, e)) {
            rc = -1;
            break;
        }
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, h);
        if (size != (int64_t)json_integer_value(js)) {
            rc = bc_errf(e, "%s: %lld bytes, the manifest says %lld", fp, (long long)size,
                         (long long)json_integer_value(js));
            break;
        }
        if (strcmp(hex, json_string_value(jh))) {
            rc = bc_errf(e, "%s: its content hash %s differs from the manifest's %s", fp, hex,
                         json_string_value(jh));
            break;
        }
    }
    json_decref(j);
    return rc;
}

/* ---- writing ---- */

/* dst (in run) replaced by a hard link to src, or by a copy where links do not work. */
static int replace_with_link(const char *src, const char *dst, bc_err *e)
{
    char tmp[PATHLEN + 32];
    struct stat a, b;
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev)
        return 0; /* already that file */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    unlink(tmp);
    bc_fault_point();
    if (link(src, tmp) == 0) {
        bc_fault_point();
        if (rename(tmp, dst)) {
            int err = errno;
            unlink(tmp);
            return bc_errf(e, "%s: cannot replace: %s", dst, strerror(err));
        }
        unlink(tmp); /* rename does nothing when both names are already one file */
        return bc_fsync_parent(dst) ? bc_errf(e, "%s: cannot sync its directory: %s", dst,
                                              strerror(errno))
                                    : 0;
    }
    size_t n;
    char *data = bc_read_file(src, &n, e);
    int rc = data ? bc_atomic_write(dst, data, n, e) : -1;
    free(data);
    return rc;
}

/* Removes every entry of ck but step-keep1, step-keep2 and `current`. */
static void prune(const char *ck, int64_t keep1, int64_t keep2)
{
    DIR *d = opendir(ck);
    if (!d)
        return;
    struct dirent *de;
    char path[PATHLEN];
    while ((de = readdir(d))) {
        int64_t s = step_of(de->d_name);
        if (s >= 0 ? s == keep1 || s == keep2 : !bc_is_stale_tmp(de->d_name))
            continue;
        bc_remove_tree(pjoin(path, ck, de->d_name));
    }
    closedir(d);
}

int tr_ckpt_save(const char *run, int64_t step, const rt_tensor_list *weights,
                 const rt_tensor_list *optim, bc_err *e)
{
    char ck[PATHLEN], tmpdir[PATHLEN], final[PATHLEN], path[PATHLEN], name[64];
    pjoin(ck, run, TR_CKPT_DIR);
    if (mkdir(ck, 0777) && errno != EEXIST)
        return bc_errf(e, "cannot create %s: %s", ck, strerror(errno));
    snprintf(name, sizeof name, "step-%lld.tmp.%ld", (long long)step, (long)getpid());
    pjoin(tmpdir, ck, name);
    bc_remove_tree(tmpdir);
    if (mkdir(tmpdir, 0777))
        return bc_errf(e, "cannot create %s: %s", tmpdir, strerror(errno));
    if (rt_st_save(pjoin(path, tmpdir, TR_CKPT_WEIGHTS), weights, e) ||
        rt_st_save(pjoin(path, tmpdir, TR_CKPT_OPTIM), optim, e) ||
        write_manifest(tmpdir, step, e))
        goto fail;
    bc_fault_point();
    if (bc_fsync_path(tmpdir)) {
        bc_errf(e, "%s: cannot sync: %s", tmpdir, strerror(errno));
        goto fail;
    }
    snprintf(name, sizeof name, "step-%lld", (long long)step);
    pjoin(final, ck, name);
    int64_t prev = read_current(ck);
    bc_err ve;
    if (prev == step && tr_ckpt_verify(final, &ve) == 0) {
        /* the current checkpoint written again (the same bits): keep it */
        bc_remove_tree(tmpdir);
        return 0;
    }
    /* a complete one that a killed run wrote but never made current, or a damaged
     * current one (resumed from the one before): moved aside, then removed */
    char old[PATHLEN];
    snprintf(old, sizeof old, "%s.old.tmp.%ld", final, (long)getpid());
    bc_remove_tree(old);
    if (rename(final, old) && errno != ENOENT) {
        bc_errf(e, "cannot rename %s: %s", final, strerror(errno));
        goto fail;
    }
    bc_fault_point();
    if (rename(tmpdir, final)) {
        bc_errf(e, "cannot rename %s to %s: %s", tmpdir, final, strerror(errno));
        goto fail;
    }
    bc_remove_tree(old);
    if (bc_fsync_path(ck))
        return bc_errf(e, "%s: cannot sync: %s", ck, strerror(errno));
    /* the commit point */
    char line[80];
    int len = snprintf(line, sizeof line, "%s\n", name);
    if (bc_atomic_write(pjoin(path, ck, TR_CKPT_CURRENT), line, (size_t)len, e))
        return -1;
    /* the last weights where README says, and the layout before checkpoints/ retired */
    char w[PATHLEN];
    if (replace_with_link(pjoin(path, final, TR_CKPT_WEIGHTS), pjoin(w, run, TR_CKPT_WEIGHTS),
                          e))
        return -1;
    unlink(pjoin(path, run, TR_CKPT_OPTIM));
    prune(ck, step, prev);
    return 0;
fail:
    bc_remove_tree(tmpdir);
    return -1;
}

int tr_ckpt_link_weights(const char *run, int64_t step, const char *name, bc_err *e)
{
    char src[PATHLEN], dst[PATHLEN];
    snprintf(src, sizeof src, "%s/%s/step-%lld/%s", run, TR_CKPT_DIR, (long long)step,
             TR_CKPT_WEIGHTS);
    return replace_with_link(src, pjoin(dst, run, name), e);
}

/* ---- reading ---- */

static int paths_in(const char *dir, char *wpath, char *opath, size_t len)
{
    snprintf(wpath, len, "%s/%s", dir, TR_CKPT_WEIGHTS);
    snprintf(opath, len, "%s/%s", dir, TR_CKPT_OPTIM);
    return 1;
}

int tr_ckpt_find(const char *run, char *wpath, char *opath, size_t len, bc_note_fn note,
                 void *note_ctx, bc_err *e)
{
    char ck[PATHLEN], dir[PATHLEN], name[64];
    struct stat st;
    pjoin(ck, run, TR_CKPT_DIR);
    int64_t cur = read_current(ck);
    if (cur < 0) {
        /* no checkpoint yet, or the layout before checkpoints/ */
        char w[PATHLEN], o[PATHLEN];
        if (stat(pjoin(w, run, TR_CKPT_WEIGHTS), &st) == 0 &&
            stat(pjoin(o, run, TR_CKPT_OPTIM), &st) == 0) {
            snprintf(wpath, len, "%s", w);
            snprintf(opath, len, "%s", o);
            return 1;
        }
        return 0;
    }
    snprintf(name, sizeof name, "step-%lld", (long long)cur);
    pjoin(dir, ck, name);
    bc_err ve;
    if (tr_ckpt_verify(dir, &ve) == 0) {
        /* a kill after the commit point, before RUN/weights.safetensors followed it:
         * finish that step now (a run at its last step trains no more and saves nothing) */
        char w[PATHLEN], cw[PATHLEN];
        struct stat a, b;
        pjoin(w, run, TR_CKPT_WEIGHTS);
        pjoin(cw, dir, TR_CKPT_WEIGHTS);
        if ((stat(w, &a) || stat(cw, &b) || a.st_ino != b.st_ino || a.st_dev != b.st_dev) &&
            replace_with_link(cw, w, e))
            return -1;
        return paths_in(dir, wpath, opath, len);
    }
    /* damaged: the newest other complete checkpoint */
    DIR *d = opendir(ck);
    int64_t best = -1;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        int64_t s = step_of(de->d_name);
        bc_err ie;
        char p[PATHLEN];
        if (s >= 0 && s != cur && s > best && tr_ckpt_verify(pjoin(p, ck, de->d_name), &ie) == 0)
            best = s;
    }
    if (d)
        closedir(d);
    if (best < 0)
        return bc_errf(e, "%s: the current checkpoint is damaged (%s) and no other complete "
                          "one is left",
                       run, ve.msg);
    if (note) {
        char msg[5000];
        snprintf(msg, sizeof msg,
                 "the current checkpoint (step %lld) is damaged (%s); resuming from step %lld",
                 (long long)cur, ve.msg, (long long)best);
        note(note_ctx, msg);
    }
    snprintf(name, sizeof name, "step-%lld", (long long)best);
    return paths_in(pjoin(dir, ck, name), wpath, opath, len);
}

/* ---- the lock ---- */

static void remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char path[PATHLEN];
    while ((de = readdir(d)))
        if (bc_is_stale_tmp(de->d_name))
            bc_remove_tree(pjoin(path, dir, de->d_name));
    closedir(d);
}

int tr_run_lock(const char *run, bc_err *e)
{
    char path[PATHLEN];
    int fd = open(pjoin(path, run, TR_CKPT_LOCK), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return bc_errf(e, "%s: cannot create: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int err = errno;
        close(fd);
        if (err == EWOULDBLOCK)
            return bc_errf(e, "%s: another bertcc process is training into this run "
                              "directory (it holds %s)",
                           run, TR_CKPT_LOCK);
        return bc_errf(e, "%s: cannot lock: %s", path, strerror(err));
    }
    remove_stale(run);
    remove_stale(pjoin(path, run, TR_CKPT_DIR));
    return fd;
}
