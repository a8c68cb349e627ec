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

void tu_note(void *ctx, const char *msg)
{
    tu_notes *n = ctx;
    n->n++;
    snprintf(n->last, sizeof n->last, "%s", msg);
}

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

int64_t tu_find_row(const rt_tensor *ids, const int64_t *x, int64_t S)
{
    int64_t N = ids->shape[0], SA = ids->shape[1], n = S < SA ? S : SA;
    for (int64_t r = 0; r < N; r++) {
        const int64_t *y = (const int64_t *)ids->data + r * SA;
        int same = 1;
        for (int64_t k = 0; k < n && same; k++)
            same = x[k] == y[k];
        if (same)
            return r;
    }
    return -1;
}

/* ---- a generated corpus of topics ---- */
#include "../text/tokenizer.h"

static const char *const common_words[TU_NCOMMON] = {"the", "is", "and", "of",
                                                     "to",  "in", "a",   "it"};

static void topic_word(int t, int k, char *buf)
{
    buf[0] = 'k';
    buf[1] = (char)('a' + t);
    buf[2] = (char)('a' + k);
    buf[3] = 0;
}

tx_vocab *tu_topic_vocab(int topics, const char *save_to, bc_err *e)
{
    int n = 0, size = 5 + TU_NCOMMON + topics * TU_TOPIC_WORDS;
    const char **tok = malloc(sizeof *tok * (size_t)size);
    char(*words)[4] = malloc(sizeof *words * (size_t)(topics * TU_TOPIC_WORDS + 1));
    static const char *const special[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    tx_vocab *v = NULL;
    if (tok && words) {
        for (int i = 0; i < 5; i++)
            tok[n++] = special[i];
        for (int i = 0; i < TU_NCOMMON; i++)
            tok[n++] = common_words[i];
        for (int t = 0; t < topics; t++)
            for (int k = 0; k < TU_TOPIC_WORDS; k++) {
                topic_word(t, k, words[t * TU_TOPIC_WORDS + k]);
                tok[n++] = words[t * TU_TOPIC_WORDS + k];
            }
        if (!save_to || tx_vocab_save(save_to, tok, n, e) == 0)
            v = tx_vocab_from_list(tok, n, "corpus", e);
    } else {
        bc_errf(e, "out of memory");
    }
    free(tok);
    free(words);
    return v;
}

int tu_topic_corpus(const char *path, int docs, int sents, uint64_t seed, int ntopics)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int d = 0; d < docs; d++) {
        for (int s = 0; s < sents; s++) {
            for (int w = 0; w < 6; w++) {
                char buf[4];
                if (w == 1 || w == 4)
                    fprintf(f, "%s%s", w ? " " : "",
                            common_words[rt_rng_below(&r, TU_NCOMMON)]);
                else {
                    topic_word(d % ntopics, (int)rt_rng_below(&r, TU_TOPIC_WORDS), buf);
                    fprintf(f, "%s%s", w ? " " : "", buf);
                }
            }
            fputs(" .\n", f);
        }
        fputs("\n", f);
    }
    return fclose(f) ? -1 : 0;
}
