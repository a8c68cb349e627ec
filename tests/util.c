/* util.c: see util.h. */
#include "util.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int tu_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *fa = tu_read_file(a, &na), *fb = tu_read_file(b, &nb);
    int same = fa && fb && na == nb && !memcmp(fa, fb, na);
    free(fa);
    free(fb);
    return same;
}

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

int tu_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Directories made by tu_tmpdir, removed when the test process exits. */
static char made[64][64];
static int nmade;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_made(void)
{
    for (int i = 0; i < nmade; i++)
        nftw(made[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_tmpdir(void)
{
    static char bufs[8][64];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 64, "/tmp/bertcc-test-XXXXXX");
    if (!mkdtemp(b))
        return "/tmp";
    if (nmade < 64) {
        if (nmade == 0)
            atexit(remove_made);
        snprintf(made[nmade++], 64, "%s", b);
    }
    return b;
}

const char *tu_path(const char *dir, const char *name)
{
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

const char *tu_src(const char *rel)
{
#ifdef BERTCC_SOURCE_DIR
    return tu_path(BERTCC_SOURCE_DIR, rel);
#else
    return tu_path(".", rel);
#endif
}

int tu_run(const char *cmd, char **out)
{
    char full[8192];
    snprintf(full, sizeof full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    char chunk[4096];
    while ((r = fread(chunk, 1, sizeof chunk, p)) > 0) {
        if (buf && n + r + 1 > cap) {
            while (n + r + 1 > cap)
                cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else
                buf = nb;
        }
        if (buf) {
            memcpy(buf + n, chunk, r);
            n += r;
        }
    }
    if (buf)
        buf[n] = 0;
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int tu_bertcc(char **out, const char *fmt, ...)
{
    char args[6000], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s", BERTCC_SOURCE_DIR, BERTCC_EXE, args);
    return tu_run(cmd, out);
}

/* ---- comparing the JIT with the reference interpreter ---- */
#include <math.h>

#include "../codegen/engine.h"
#include "../runtime/interp.h"
#include "../runtime/rng.h"

void tu_add_rand_f32(rt_tensor_list *l, const char *name, int rank, const int64_t *shape,
                     double lo, double hi, uint64_t seed)
{
    rt_tensor *t = rt_list_add(l, name, RT_F32, rank, shape, NULL);
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int64_t i = 0; t && i < rt_numel(t); i++)
        ((float *)t->data)[i] = (float)(lo + (hi - lo) * rt_rng_uniform(&r));
}

void tu_add_rand_i64(rt_tensor_list *l, const char *name, int rank, const int64_t *shape,
                     int64_t lo, int64_t hi, uint64_t seed)
{
    rt_tensor *t = rt_list_add(l, name, RT_I64, rank, shape, NULL);
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int64_t i = 0; t && i < rt_numel(t); i++)
        ((int64_t *)t->data)[i] = lo + (int64_t)rt_rng_below(&r, (uint64_t)(hi - lo));
}

double tu_max_err(const rt_tensor *a, const rt_tensor *b, double *max_ref)
{
    int64_t n = rt_numel(a);
    if (n != rt_numel(b) || a->dtype != RT_F32 || b->dtype != RT_F32)
        return -1;
    double err = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = ((const float *)a->data)[i], y = ((const float *)b->data)[i];
        double d = fabs(x - y);
        if (isnan(x) != isnan(y) || d > err || isnan(d))
            err = isnan(d) ? INFINITY : d > err ? d : err;
        mr = fabs(y) > mr ? fabs(y) : mr;
    }
    if (max_ref)
        *max_ref = mr;
    return err;
}

int tu_jit_vs_ref(const ir_graph *g, const rt_tensor_list *params,
                  const rt_tensor_list *inputs, int threads, double rtol, double atol,
                  char *msg, size_t len)
{
    rt_tensor_list ref, jit;
    rt_list_init(&ref);
    rt_list_init(&jit);
    bc_err e;
    int rc = 0;
    rt_interp_opts o = {0, 1};
    cg_engine *x = NULL;
    if (rt_interp_run(g, params, inputs, &o, &ref, &e)) {
        snprintf(msg, len, "reference run failed: %s", e.msg);
        rc = 1;
    } else if (!(x = cg_engine_new(g, CG_BACKEND_JIT, NULL, &e)) ||
               cg_engine_run(x, params, inputs, threads, &jit, &e)) {
        snprintf(msg, len, "JIT failed: %s", e.msg);
        rc = 1;
    }
    for (int i = 0; !rc && i < ref.n; i++) {
        const rt_tensor *r = &ref.t[i], *j = rt_list_cfind(&jit, r->name);
        double mr = 0, err = j ? tu_max_err(j, r, &mr) : -1;
        if (!j || err < 0 || !(err <= rtol * mr + atol)) {
            snprintf(msg, len, "output %s: max error %g > %g (max |ref| %g)%s", r->name,
                     err, rtol * mr + atol, mr, j ? "" : " (missing)");
            rc = 1;
        }
    }
    cg_engine_free(x);
    rt_list_free(&ref);
    rt_list_free(&jit);
    return rc;
}
