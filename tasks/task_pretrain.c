/* task_pretrain.c: the pre-training task (see task_pretrain.h). */
#include "task_pretrain.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "../runtime/rng.h"
#include "../runtime/safetensors.h"
#include "../support/file.h"
#include "../text/unicode.h"
#include "../train/batch.h"
#include "pretrain_data.h"

enum {
    OPT_MAX_SEQ,
    OPT_MAX_PRED,
    OPT_MASK_PROB,
    OPT_SHORT,
    OPT_DUPE,
    OPT_WWM,
    OPT_DYNAMIC,
    OPT_SEED,
    OPT_EVAL,
    OPT_HOLDOUT,
    OPT_STREAM,
    OPT_GATHER,
    OPT_N
};

static const tk_task_option pt_options[] = {
    {"max-seq", "N", "row length of the instances made from a corpus (default 128)", "128"},
    {"max-predictions", "N", "masked tokens per row at most (default 20)", "20"},
    {"mask-prob", "X", "fraction of a row's tokens masked (default 0.15)", "0.15"},
    {"short-seq-prob", "X", "probability of a shorter target length (default 0.1)", "0.1"},
    {"dupe-factor", "N",
     "repetitions of the corpus with fresh pairs and masks (default 1: dynamic masking "
     "gives fresh masks each epoch)",
     "1"},
    {"whole-word", "0|1", "mask whole words (default 0)", "0"},
    {"dynamic-mask", "0|1", "mask every training micro-batch afresh (default 1)", "1"},
    {"data-seed", "N", "instances made from a corpus (default 12345)", "12345"},
    {"eval-data", "PATH", "dev data (as --data); replaces the default holdout", ""},
    {"holdout", "K",
     "dev = every K-th document of a corpus or row of a data file, left out of training "
     "(default 10; 0: none)",
     "10"},
    {"stream-rows", "N",
     "stream the corpus instead of making every instance first: each epoch is the next N "
     "rows, made on the fly (memory: N rows and a window of documents, whatever the "
     "corpus size; passes over the corpus follow each other with fresh pairs and masks); "
     "default 0: off",
     "0"},
    {"mlm-gather", "0|1",
     "training computes MLM logits only at the masked positions, at most "
     "--max-predictions per row (1, the default, for a corpus), or at every position "
     "(0; always so for a data file)",
     "1"},
    {NULL, NULL, NULL, NULL},
};

static const char *const pt_outputs[] = {"mlm_logits", "nsp_logits", NULL};
static const char *const pt_best_by[] = {"mlm_likelihood", "nsp_accuracy", NULL};

typedef struct pt_state {
    const tx_vocab *v;
    tx_tok_opts tok;
    tk_pt_opts po;
    int dynamic;
    uint64_t data_seed;
    int holdout;
    int64_t max_position;
    char *data, *eval_data; /* NULL: none */
    tk_pt_masker *masker;
    bc_note_fn note;
    void *note_ctx;
    rt_tensor_list rows[3];
    int have[3];
    int file_seq; /* S of a data file, once read (0: a corpus or not read yet) */
    /* --stream-rows */
    int mlm_gather;        /* --mlm-gather */
    int64_t stream_rows;   /* rows per epoch (0: off) */
    char stream_tmp[4096]; /* the training documents of a --holdout split ("": none) */
    const char *stream_path;
    tk_pt_stream *stream;
    int64_t stream_epoch; /* the epoch the stream's next rows belong to */
    int64_t stream_pass;  /* the pass over the corpus the stream is in */
} pt_state;

/* Documents a stream keeps to draw NotNext segments from, and rows it shuffles. */
#define PT_STREAM_WINDOW 256
#define PT_STREAM_SHUFFLE 1024

#define note(s, ...) tk_task_note((s)->note, (s)->note_ctx, __VA_ARGS__)

static void pt_close(void *state)
{
    pt_state *s = state;
    if (!s)
        return;
    free(s->data);
    free(s->eval_data);
    tk_pt_stream_free(s->stream);
    if (s->stream_tmp[0])
        remove(s->stream_tmp);
    tk_pt_masker_free(s->masker);
    for (int i = 0; i < 3; i++)
        rt_list_free(&s->rows[i]);
    free(s);
}

int tk_pt_eval_rows(int batch_size, int64_t S, int64_t V)
{
    int64_t per_row = (S > 0 ? S : 1) * (V > 0 ? V : 1) * (int64_t)sizeof(float);
    int64_t rows = ((int64_t)256 << 20) / per_row;
    if (rows > batch_size)
        rows = batch_size;
    return rows < 1 ? 1 : (int)rows;
}

/* ---- options ------------------------------------------------------------------------ */

/* 1 when path starts like a safetensors file (an 8-byte header length, then '{'), 0
 * otherwise (a corpus), -1 when it cannot be read. */
static int is_safetensors(const char *path, bc_err *e)
{
    FILE *f = bc_fopen_read(path, e);
    if (!f)
        return -1;
    unsigned char b[9];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n < 9 || b[8] != '{')
        return 0;
    uint64_t len = 0;
    for (int k = 7; k >= 0; k--)
        len = len << 8 | b[k];
    return len >= 2 && len < ((uint64_t)1 << 40);
}

/* ---- rows from a data file ------------------------------------------------------------
 */

/* Copies the rows r of every tensor of in (leading dimension N) with keep(r) into out. */
static int take_rows(const rt_tensor_list *in, int64_t N, int K, int held,
                     rt_tensor_list *out, bc_err *e)
{
    int64_t n = 0;
    for (int64_t r = 0; r < N; r++)
        n += K == 0 || (r % K == K - 1) == held;
    for (int i = 0; i < in->n; i++) {
        const rt_tensor *t = &in->t[i];
        int64_t shape[RT_MAX_RANK];
        memcpy(shape, t->shape, sizeof shape);
        shape[0] = n;
        rt_tensor *d = rt_list_add(out, t->name, t->dtype, t->rank, shape, NULL);
        if (!d)
            return bc_errf(e, "out of memory");
        size_t row = rt_nbytes(t) / (size_t)(N > 0 ? N : 1);
        int64_t k = 0;
        for (int64_t r = 0; r < N; r++)
            if (K == 0 || (r % K == K - 1) == held)
                memcpy((char *)d->data + (size_t)k++ * row,
                       (const char *)t->data + (size_t)r * row, row);
    }
    return 0;
}

/* The rows of a data file: all (K == 0), or those held out (held) or kept. */
static int file_rows(pt_state *s, const char *path, int K, int held, rt_tensor_list *out,
                     bc_err *e)
{
    rt_tensor_list raw, prep;
    rt_list_init(&raw);
    rt_list_init(&prep);
    unsigned present = 0;
    int64_t B = 0, S = 0;
    int rc = -1;
    if (rt_st_load(path, &raw, e) ||
        tr_batch_prepare(&raw, s->max_position > 0 ? s->max_position : TK_PT_MAX_SEQ_LIMIT,
                         TR_LABEL_MLM | TR_LABEL_NSP, &prep, &present, &B, &S, s->note,
                         s->note_ctx, e)) {
        bc_err_prefix(e, "%s", path);
        goto done;
    }
    if ((present & (TR_LABEL_MLM | TR_LABEL_NSP)) != (TR_LABEL_MLM | TR_LABEL_NSP)) {
        bc_errf(e, "%s: a pre-training data file needs mlm_labels and nsp_labels", path);
        goto done;
    }
    s->file_seq = (int)S;
    if (take_rows(&prep, B, K, held, out, e))
        goto done;
    rc = 0;
done:
    rt_list_free(&raw);
    rt_list_free(&prep);
    return rc;
}

/* ---- rows from a corpus ------------------------------------------------------------- */

/* Copies the documents d of path with (d % K == K - 1) == held into a new temporary
 * file (its name into tmp), each followed by a blank line. *docs receives the number of
 * documents copied. Errors name path:LINE. */
static int split_corpus(const char *path, int K, int held, char *tmp, size_t len,
                        int64_t *docs, bc_err *e)
{
    const char *dir = getenv("TMPDIR");
    snprintf(tmp, len, "%s/bertcc-corpus-XXXXXX", dir && *dir ? dir : "/tmp");
    FILE *in = bc_fopen_read(path, e);
    if (!in)
        return -1;
    int fd = mkstemp(tmp);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!out) {
        if (fd >= 0) {
            close(fd);
            remove(tmp);
        }
        fclose(in);
        return bc_errf(e, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t lineno = 0, doc = -1;
    int in_doc = 0, keep = 0, rc = 0, ok = 1;
    *docs = 0;
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (!tx_valid_utf8(line, (size_t)n)) {
            rc = bc_errf(e, "%s:%lld: invalid UTF-8", path, (long long)lineno);
            break;
        }
        if (tx_is_blank_line(line, (size_t)n)) {
            if (in_doc && keep)
                ok &= fputc('\n', out) != EOF;
            in_doc = 0;
            continue;
        }
        if (!in_doc) {
            in_doc = 1;
            doc++;
            keep = (doc % K == K - 1) == held;
            *docs += keep;
        }
        if (keep)
            ok &= fwrite(line, 1, (size_t)n, out) == (size_t)n &&
                  (line[n - 1] == '\n' || fputc('\n', out) != EOF);
    }
    if (!rc && in_doc && keep)
        ok &= fputc('\n', out) != EOF;
    if (!rc && ferror(in))
        rc = bc_errf(e, "%s: read error", path);
    free(line);
    fclose(in);
    if (fclose(out) || !ok)
        rc = rc ? rc : bc_errf(e, "%s: cannot write", tmp);
    if (rc)
        remove(tmp);
    return rc;
}

static void count_is_next(const rt_tensor_list *rows, int64_t *n, int64_t *is_next)
{
    const rt_tensor *t = rt_list_cfind(rows, "nsp_labels");
    *n = t ? t->shape[0] : 0;
    *is_next = 0;
    for (int64_t i = 0; t && i < *n; i++)
        *is_next += ((const int64_t *)t->data)[i] == 0;
}

/* Instances of a corpus: all its documents (K == 0), or those held out (held) or kept;
 * dupe repetitions, from seed. */
static int corpus_rows(pt_state *s, const char *path, int K, int held, int dupe,
                       uint64_t seed, const char *what, rt_tensor_list *out, bc_err *e)
{
    char tmp[4096];
    int64_t docs = 0;
    const char *from = path;
    if (K) {
        if (split_corpus(path, K, held, tmp, sizeof tmp, &docs, e))
            return -1;
        if (docs == 0) {
            remove(tmp);
            return bc_errf(e, "%s: --holdout %d leaves no document %s", path, K,
                           held ? "for dev (the corpus has fewer than K)" : "to train on");
        }
        from = tmp;
    }
    tk_pt_corpus *c = tk_pt_corpus_load(&from, 1, s->v, &s->tok, NULL, NULL, e);
    if (K)
        remove(tmp);
    if (!c)
        return -1;
    tk_pt_opts po = s->po;
    po.dupe_factor = dupe;
    rt_rng r;
    rt_rng_seed(&r, seed);
    tk_pt_stats st;
    memset(&st, 0, sizeof st);
    int rc = tk_pt_create(c, s->v, &po, &r, out, &st, NULL, NULL, e);
    if (!rc) {
        note(s,
             "pretrain %s: %lld documents, %lld sentences, %lld tokens of %s -> %lld rows "
             "of %d tokens (%.0f%% IsNext, %lld truncated, %lld tokens masked)",
             what, (long long)tk_pt_corpus_docs(c), (long long)tk_pt_corpus_sentences(c),
             (long long)tk_pt_corpus_tokens(c), path, (long long)st.instances, po.max_seq,
             st.instances ? 100.0 * (double)st.is_next / (double)st.instances : 0.0,
             (long long)st.truncated, (long long)st.mask.chosen);
        if (st.instances == 0)
            rc = bc_errf(e,
                         "%s: the %s documents give no instance (a document needs a "
                         "sentence with a token)",
                         path, what);
    } else {
        bc_err_prefix(e, "%s", path);
    }
    tk_pt_corpus_free(c);
    return rc;
}

/* ---- rows from a stream ------------------------------------------------------------ */

/* Opens the stream at the start of pass s->stream_pass (each pass its own seed). */
static int stream_open(pt_state *s, bc_err *e)
{
    tk_pt_stream_free(s->stream);
    uint64_t seed = s->data_seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(s->stream_pass + 1));
    s->stream = tk_pt_stream_open(&s->stream_path, 1, s->v, &s->tok, &s->po,
                                  PT_STREAM_WINDOW, PT_STREAM_SHUFFLE, seed, e);
    return s->stream ? 0 : -1;
}

/* The rows of epoch `epoch`: rows [epoch * N, (epoch + 1) * N) of the passes over the
 * corpus one after another. The stream moves forward; an epoch before the stream's
 * position (or far ahead, after a resume) reopens it and skips the rows before. */
static int stream_rows(pt_state *s, int64_t epoch, rt_tensor_list *out, bc_err *e)
{
    if (!s->stream || s->stream_epoch > epoch) {
        s->stream_pass = 0;
        s->stream_epoch = 0;
        if (stream_open(s, e))
            return -1;
    }
    int64_t N = s->stream_rows;
    rt_tensor_list got, skip;
    rt_list_init(&got);
    rt_list_init(&skip);
    int rc = -1;
    for (; s->stream_epoch <= epoch; s->stream_epoch++) {
        rt_tensor_list *dst = s->stream_epoch == epoch ? out : &skip;
        rt_list_free(&skip);
        rt_list_init(&skip);
        int64_t have = 0;
        int empty_passes = 0;
        while (have < N) {
            int want = N - have < 4096 ? (int)(N - have) : 4096;
            int n = tk_pt_stream_next(s->stream, want, &got, e);
            if (n < 0)
                goto done;
            if (n == 0) { /* the pass is over: the next one */
                if (++empty_passes > 1) {
                    bc_errf(e, "%s: the corpus gives no instance", s->stream_path);
                    goto done;
                }
                s->stream_pass++;
                if (stream_open(s, e))
                    goto done;
                continue;
            }
            empty_passes = 0;
            for (int i = 0; i < got.n; i++) {
                const rt_tensor *t = &got.t[i];
                rt_tensor *d = rt_list_find(dst, t->name);
                if (!d) {
                    int64_t shape[RT_MAX_RANK];
                    memcpy(shape, t->shape, sizeof shape);
                    shape[0] = N;
                    if (!(d = rt_list_add(dst, t->name, t->dtype, t->rank, shape, NULL))) {
                        bc_errf(e, "out of memory for %lld streamed rows", (long long)N);
                        goto done;
                    }
                }
                size_t row = rt_nbytes(t) / (size_t)n;
                memcpy((char *)d->data + (size_t)have * row, t->data, (size_t)n * row);
            }
            have += n;
        }
    }
    rc = 0;
done:
    rt_list_free(&got);
    rt_list_free(&skip);
    return rc;
}

/* The training split of a streamed corpus: epoch 0's rows. */
static int stream_start(pt_state *s, const char *path, int K, bc_err *e)
{
    s->stream_path = path;
    if (K) {
        int64_t docs = 0;
        if (split_corpus(path, K, 0, s->stream_tmp, sizeof s->stream_tmp, &docs, e)) {
            s->stream_tmp[0] = 0;
            return -1;
        }
        if (docs == 0)
            return bc_errf(e, "%s: --holdout %d leaves no document to train on", path, K);
        s->stream_path = s->stream_tmp;
    }
    if (s->po.dupe_factor != 1)
        note(s, "pretrain: --dupe-factor is ignored with --stream-rows (every pass over "
                "the corpus makes fresh pairs and masks)");
    note(s,
         "pretrain train: streaming %s, %lld rows of %d tokens per epoch (window of %d "
         "documents, shuffle buffer of %d rows)",
         path, (long long)s->stream_rows, s->po.max_seq, PT_STREAM_WINDOW,
         PT_STREAM_SHUFFLE);
    return stream_rows(s, 0, &s->rows[TK_SPLIT_TRAIN], e);
}

static int pt_refill(void *state, int64_t epoch, rt_tensor_list *out, bc_err *e)
{
    pt_state *s = state;
    if (!s->stream_rows)
        return 1; /* every instance was made first: the same rows every epoch */
    if (!s->stream && !s->stream_path)
        return bc_errf(e, "pretrain: refill before the training data was read");
    return stream_rows(s, epoch, out, e);
}

/* ---- splits ------------------------------------------------------------------------ */

static int ensure_rows(pt_state *s, tk_split sp, bc_err *e)
{
    if (s->have[sp])
        return 0;
    const char *path = sp == TK_SPLIT_DEV && s->eval_data ? s->eval_data : s->data;
    int K = 0, held = 0;
    if (sp == TK_SPLIT_DEV && !s->eval_data) {
        if (!s->holdout)
            return bc_errf(e,
                           "pretrain: no dev split: give --eval-data PATH or --holdout K");
        K = s->holdout;
        held = 1;
    } else if (sp == TK_SPLIT_TRAIN) {
        K = s->holdout;
    }
    if (!path)
        return bc_errf(
            e, "pretrain: no data was given (--data CORPUS.txt or DATA.safetensors)");
    int kind = is_safetensors(path, e);
    if (kind < 0)
        return -1;
    rt_list_free(&s->rows[sp]);
    rt_list_init(&s->rows[sp]);
    if (s->stream_rows && sp == TK_SPLIT_TRAIN) {
        if (kind)
            return bc_errf(e, "%s: --stream-rows streams a text corpus, not a data file",
                           path);
        if (stream_start(s, path, K, e))
            return -1;
        s->have[sp] = 1;
        return 0;
    }
    int rc =
        kind ? file_rows(s, path, K, held, &s->rows[sp], e)
             : corpus_rows(s, path, K, held, sp == TK_SPLIT_TRAIN ? s->po.dupe_factor : 1,
                           s->data_seed + (uint64_t)sp, tk_split_name(sp), &s->rows[sp], e);
    if (rc)
        return -1;
    int64_t n, nx;
    count_is_next(&s->rows[sp], &n, &nx);
    if (kind)
        note(s, "pretrain %s: %lld rows of %d tokens from %s (%.0f%% IsNext)",
             tk_split_name(sp), (long long)n, s->file_seq, path,
             n ? 100.0 * (double)nx / (double)n : 0.0);
    if (n == 0)
        return bc_errf(e, "%s: the %s split has no rows%s", path, tk_split_name(sp),
                       K ? " (fewer documents or rows than --holdout?)" : "");
    s->have[sp] = 1;
    return 0;
}

/* ---- the task ------------------------------------------------------------------------ */

static int pt_open(const tk_task_config *c, void **state, bc_err *e)
{
    *state = NULL;
    pt_state *s = calloc(1, sizeof *s);
    if (!s)
        return bc_errf(e, "out of memory");
    s->v = c->vocab;
    s->tok = c->tok;
    s->note = c->note;
    s->note_ctx = c->note_ctx;
    s->max_position = c->max_position;
    for (int i = 0; i < 3; i++)
        rt_list_init(&s->rows[i]);
    const char *val[OPT_N];
    for (int i = 0; i < OPT_N; i++)
        val[i] = c->opt && c->opt[i] ? c->opt[i] : pt_options[i].def;
    long long ms = 0, mp = 0, dupe = 0, wwm = 0, dyn = 0, seed = 0, hold = 0, sr = 0,
              gat = 0;
    s->po = TK_PT_OPTS_DEFAULT;
    if (tk_task_int_opt(val[OPT_MAX_SEQ], "max-seq", 5, TK_PT_MAX_SEQ_LIMIT, &ms, e) ||
        tk_task_int_opt(val[OPT_MAX_PRED], "max-predictions", 0, 1 << 20, &mp, e) ||
        tk_task_real_opt(val[OPT_MASK_PROB], "mask-prob", 0, 1, &s->po.mask_prob, e) ||
        tk_task_real_opt(val[OPT_SHORT], "short-seq-prob", 0, 1, &s->po.short_seq_prob,
                         e) ||
        tk_task_int_opt(val[OPT_DUPE], "dupe-factor", 1, 1000, &dupe, e) ||
        tk_task_int_opt(val[OPT_WWM], "whole-word", 0, 1, &wwm, e) ||
        tk_task_int_opt(val[OPT_DYNAMIC], "dynamic-mask", 0, 1, &dyn, e) ||
        tk_task_int_opt(val[OPT_SEED], "data-seed", 0, LLONG_MAX, &seed, e) ||
        tk_task_int_opt(val[OPT_HOLDOUT], "holdout", 0, INT_MAX, &hold, e) ||
        tk_task_int_opt(val[OPT_STREAM], "stream-rows", 0, (long long)1 << 40, &sr, e) ||
        tk_task_int_opt(val[OPT_GATHER], "mlm-gather", 0, 1, &gat, e))
        goto fail;
    s->mlm_gather = (int)gat;
    s->stream_rows = sr;
    if (hold == 1) {
        bc_errf(e, "--holdout expects 0 (none) or K >= 2 (every K-th document to dev)");
        goto fail;
    }
    int given_seq = c->opt && c->opt[OPT_MAX_SEQ];
    if (!given_seq && c->max_position > 0 && ms > c->max_position)
        ms = c->max_position; /* the default never exceeds the model */
    if (c->max_position > 0 && ms > c->max_position) {
        bc_errf(e, "--max-seq %lld exceeds the model's max-position %lld", ms,
                (long long)c->max_position);
        goto fail;
    }
    s->po.max_seq = (int)ms;
    s->po.max_predictions = (int)mp;
    s->po.dupe_factor = (int)dupe;
    s->po.whole_word = (int)wwm;
    s->dynamic = (int)dyn;
    s->data_seed = (uint64_t)seed;
    s->holdout = (int)hold;
    if (*val[OPT_EVAL]) {
        if (c->opt && c->opt[OPT_HOLDOUT] && hold) {
            bc_errf(e, "pretrain: give --eval-data or --holdout, not both");
            goto fail;
        }
        s->holdout = 0; /* dev comes from --eval-data */
    }
    if (tk_pt_opts_check(&s->po, e) || !(s->masker = tk_pt_masker_new(s->v, &s->po, e)))
        goto fail;
    if ((c->data && !(s->data = tk_task_abs_path(c->data))) ||
        (*val[OPT_EVAL] && !(s->eval_data = tk_task_abs_path(val[OPT_EVAL])))) {
        bc_errf(e, "out of memory");
        goto fail;
    }
    *state = s;
    return 0;
fail:
    pt_close(s);
    return -1;
}

static void pt_heads(void *state, tk_task_heads *h)
{
    const pt_state *s = state;
    memset(h, 0, sizeof *h);
    h->labels = TR_LABEL_MLM | TR_LABEL_NSP;
    /* Rows made here (from a corpus, also with dynamic masking) have at most
     * --max-predictions labels; a data file's rows may have any number. */
    bc_err e;
    if (s->mlm_gather && s->data && is_safetensors(s->data, &e) == 0)
        h->mlm_predictions = s->po.max_predictions;
}

static void pt_option_value(void *state, int i, char *buf, size_t len)
{
    const pt_state *s = state;
    switch (i) {
    case OPT_MAX_SEQ:
        snprintf(buf, len, "%d", s->file_seq ? s->file_seq : s->po.max_seq);
        break;
    case OPT_MAX_PRED:
        snprintf(buf, len, "%d", s->po.max_predictions);
        break;
    case OPT_MASK_PROB:
        snprintf(buf, len, "%.17g", s->po.mask_prob);
        break;
    case OPT_SHORT:
        snprintf(buf, len, "%.17g", s->po.short_seq_prob);
        break;
    case OPT_DUPE:
        snprintf(buf, len, "%d", s->po.dupe_factor);
        break;
    case OPT_WWM:
        snprintf(buf, len, "%d", s->po.whole_word);
        break;
    case OPT_DYNAMIC:
        snprintf(buf, len, "%d", s->dynamic);
        break;
    case OPT_SEED:
        snprintf(buf, len, "%llu", (unsigned long long)s->data_seed);
        break;
    case OPT_EVAL:
        snprintf(buf, len, "%s", s->eval_data ? s->eval_data : "");
        break;
    case OPT_HOLDOUT:
        snprintf(buf, len, "%d", s->holdout);
        break;
    case OPT_STREAM:
        snprintf(buf, len, "%lld", (long long)s->stream_rows);
        break;
    case OPT_GATHER:
        snprintf(buf, len, "%d", s->mlm_gather);
        break;
    default:
        snprintf(buf, len, "%s", "");
    }
}

static int pt_data(void *state, tk_split sp, rt_tensor_list *out, bc_err *e)
{
    pt_state *s = state;
    if (ensure_rows(s, sp, e))
        return -1;
    const rt_tensor_list *r = &s->rows[sp];
    for (int i = 0; i < r->n; i++)
        if (!rt_list_add(out, r->t[i].name, r->t[i].dtype, r->t[i].rank, r->t[i].shape,
                         r->t[i].data))
            return bc_errf(e, "out of memory");
    if (sp != TK_SPLIT_TRAIN) {
        /* Dev is read once at the start and kept for evaluation; the training rows
         * live on in the engine's copy. */
    } else {
        rt_list_free(&s->rows[sp]);
        rt_list_init(&s->rows[sp]);
        s->have[sp] = 0;
    }
    return 0;
}

static int pt_augment(void *state, rt_tensor_list *batch, uint64_t seed, bc_err *e)
{
    pt_state *s = state;
    if (!s->dynamic)
        return 0;
    rt_rng r;
    /* Its own stream: the dropout seed also drives dropout in the graph. */
    rt_rng_seed(&r, seed ^ 0x6d61736b696e6721ULL);
    return tk_pt_remask_batch(s->masker, batch, &r, NULL, e);
}

/* Copies rows [r0, r0 + b) of the named [N, S] tensor into in. */
static int slice(const rt_tensor_list *rows, const char *name, int64_t r0, int64_t b,
                 rt_tensor_list *in, bc_err *e)
{
    const rt_tensor *t = rt_list_cfind(rows, name);
    if (!t)
        return bc_errf(e, "%s: missing", name);
    int64_t shape[RT_MAX_RANK];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = b;
    size_t row = rt_nbytes(t) / (size_t)(t->shape[0] > 0 ? t->shape[0] : 1);
    if (!rt_list_add(in, name, t->dtype, t->rank, shape,
                     (const char *)t->data + (size_t)r0 * row))
        return bc_errf(e, "out of memory");
    return 0;
}

static const rt_tensor *get_out(const rt_tensor_list *out, const char *name, int rank,
                                const int64_t *want, bc_err *e)
{
    const rt_tensor *t = rt_list_cfind(out, name);
    int ok = t && t->dtype == RT_F32 && t->rank == rank;
    for (int k = 0; ok && k < rank; k++)
        ok = want[k] < 0 ? t->shape[k] >= -want[k] : t->shape[k] == want[k];
    if (!ok) {
        char s1[64];
        bc_errf(e, "the model's %s is %s, expected F32 of rank %d", name,
                t ? rt_shape_str(t->rank, t->shape, s1, sizeof s1) : "missing", rank);
        return NULL;
    }
    return t;
}

/* log(sum(exp(x[0..n)))) */
static int64_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* What evaluation keeps of one row: its MLM loss terms summed in position order, its
 * labelled positions and how many the model got right, its NSP loss term and whether
 * NSP was right. Rows, not running sums, so that shards merge them exactly (tk_shard). */
typedef struct row_score {
    double mlm_loss, nsp_loss;
    int64_t masked, mlm_right, nsp_right;
} row_score;

static int pt_evaluate(void *state, tk_split sp, int batch_size, tk_forward_fn fwd,
                       void *fctx, const tk_shard *shard, tk_metrics *m, bc_err *e)
{
    pt_state *s = state;
    if (ensure_rows(s, sp, e))
        return -1;
    const rt_tensor_list *rows = &s->rows[sp];
    const rt_tensor *ids = rt_list_cfind(rows, "input_ids");
    const rt_tensor *lab = rt_list_cfind(rows, "mlm_labels");
    const rt_tensor *nsp = rt_list_cfind(rows, "nsp_labels");
    if (!ids || !lab || !nsp)
        return bc_errf(e, "pretrain: the %s rows lack input_ids, mlm_labels or nsp_labels",
                       tk_split_name(sp));
    int64_t N = ids->shape[0], S = ids->shape[1], V = tx_vocab_size(s->v);
    int rows_per = tk_pt_eval_rows(batch_size < 1 ? 64 : batch_size, S, V);
    row_score *rs = calloc((size_t)N + 1, sizeof *rs); /* [N], zero until merged */
    if (!rs)
        return bc_errf(e, "out of memory");
    int rc = 0;
    for (int64_t k = 0, r0 = 0; r0 < N && !rc; k++, r0 += rows_per) {
        int64_t b = N - r0 < rows_per ? N - r0 : rows_per;
        if (!tk_shard_mine(shard, k))
            continue;
        rt_tensor_list in, out;
        rt_list_init(&in);
        rt_list_init(&out);
        rc = slice(rows, "input_ids", r0, b, &in, e) ||
             slice(rows, "token_type_ids", r0, b, &in, e) ||
             slice(rows, "attention_mask", r0, b, &in, e) || fwd(fctx, &in, &out, e);
        int64_t want_m[3] = {b, -1, V}, want_n[2] = {b, 2};
        const rt_tensor *ml = rc ? NULL : get_out(&out, "mlm_logits", 3, want_m, e);
        const rt_tensor *nl = ml ? get_out(&out, "nsp_logits", 2, want_n, e) : NULL;
        if (nl) {
            int64_t W = ml->shape[1];
            for (int64_t i = 0; i < b && !rc; i++) {
                row_score *r = &rs[r0 + i];
                const int64_t *y = (const int64_t *)lab->data + (size_t)(r0 + i) * S;
                for (int64_t p = 0; p < S; p++) {
                    if (y[p] == TK_PT_IGNORE)
                        continue;
                    if (p >= W || y[p] < 0 || y[p] >= V) {
                        rc = bc_errf(e,
                                     "mlm_labels of row %lld: %lld at position %lld is "
                                     "outside the vocabulary or the row",
                                     (long long)(r0 + i), (long long)y[p], (long long)p);
                        break;
                    }
                    const float *x = (const float *)ml->data + ((size_t)i * W + p) * V;
                    r->mlm_loss += tk_log_sum_exp(x, V) - (double)x[y[p]];
                    r->mlm_right += argmax(x, V) == y[p];
                    r->masked++;
                }
                const float *z = (const float *)nl->data + (size_t)i * 2;
                int64_t t = ((const int64_t *)nsp->data)[r0 + i];
                if (!rc && t != 0 && t != 1)
                    rc = bc_errf(e, "nsp_labels of row %lld: %lld is not 0 or 1",
                                 (long long)(r0 + i), (long long)t);
                if (!rc) {
                    r->nsp_loss = tk_log_sum_exp(z, 2) - (double)z[t];
                    r->nsp_right = (z[1] > z[0]) == (t == 1);
                }
            }
        } else {
            rc = -1;
        }
        rt_list_free(&in);
        rt_list_free(&out);
    }
    if (rc || tk_shard_merge(shard, rs, (size_t)N * sizeof *rs, e)) {
        free(rs);
        return -1;
    }
    double mlm_loss = 0, nsp_loss = 0;
    int64_t masked = 0, mlm_right = 0, nsp_right = 0;
    for (int64_t i = 0; i < N; i++) {
        mlm_loss += rs[i].mlm_loss;
        nsp_loss += rs[i].nsp_loss;
        masked += rs[i].masked;
        mlm_right += rs[i].mlm_right;
        nsp_right += rs[i].nsp_right;
    }
    free(rs);
    memset(m, 0, sizeof *m);
    tk_metrics_add(m, "mlm_accuracy", masked ? (double)mlm_right / (double)masked : 0);
    tk_metrics_add(m, "nsp_accuracy", N ? (double)nsp_right / (double)N : 0);
    tk_metrics_add(m, "mlm_likelihood", masked ? exp(-mlm_loss / (double)masked) : 0);
    tk_metrics_add(m, "mlm_loss", masked ? mlm_loss / (double)masked : 0);
    tk_metrics_add(m, "nsp_loss", N ? nsp_loss / (double)N : 0);
    m->examples = N;
    return 0;
}

/* ---- predict --------------------------------------------------------------------------
 */

typedef struct cand {
    int id;
    double p;
} cand;

static int pt_predict(void *state, const char *text, const char *pair, tk_forward_fn fwd,
                      void *fctx, json_t **out, bc_err *e)
{
    pt_state *s = state;
    *out = NULL;
    int cls = tx_vocab_special(s->v, TX_CLS), sep = tx_vocab_special(s->v, TX_SEP);
    int msk = tx_vocab_special(s->v, TX_MASK);
    if (cls < 0 || sep < 0 || msk < 0)
        return bc_errf(e, "the vocabulary lacks [CLS], [SEP] or [MASK]");
    tx_token_list a = {0}, b = {0};
    rt_tensor_list in, o;
    rt_list_init(&in);
    rt_list_init(&o);
    json_t *j = NULL;
    char *filled = NULL;
    int rc = -1;
    if (tx_tokenize(s->v, &s->tok, text, strlen(text), &a, e) ||
        (pair && tx_tokenize(s->v, &s->tok, pair, strlen(pair), &b, e)))
        goto done;
    int room = s->po.max_seq - (pair ? 3 : 2), na = a.n, nb = pair ? b.n : 0;
    while (na + nb > room) { /* truncate the longer, from its end */
        if (na > nb)
            na--;
        else
            nb--;
    }
    if (na < a.n || nb < b.n)
        note(s, "the text is longer than --max-seq %d tokens: its end was cut off",
             s->po.max_seq);
    int64_t S = na + nb + (pair ? 3 : 2), shape[2] = {1, S};
    rt_tensor *ti = rt_list_add(&in, "input_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tt = rt_list_add(&in, "token_type_ids", RT_I64, 2, shape, NULL);
    rt_tensor *tm = rt_list_add(&in, "attention_mask", RT_I64, 2, shape, NULL);
    if (!ti || !tt || !tm) {
        bc_errf(e, "out of memory");
        goto done;
    }
    int64_t *x = ti->data, *ty = tt->data, *mk = tm->data;
    int k = 0;
    x[k++] = cls;
    for (int i = 0; i < na; i++)
        x[k++] = a.t[i].id;
    x[k++] = sep;
    for (int i = 0; i < nb; i++)
        x[k++] = b.t[i].id;
    if (pair)
        x[k++] = sep;
    for (int64_t p = 0; p < S; p++) {
        ty[p] = p > na + 1;
        mk[p] = 1;
    }
    if (fwd(fctx, &in, &o, e))
        goto done;
    int64_t V = tx_vocab_size(s->v), want_m[3] = {1, S, V}, want_n[2] = {1, 2};
    const rt_tensor *ml = get_out(&o, "mlm_logits", 3, want_m, e);
    const rt_tensor *nl = ml ? get_out(&o, "nsp_logits", 2, want_n, e) : NULL;
    if (!nl)
        goto done;
    json_t *masks = json_array();
    j = json_pack("{s:s, s:o}", "text", text, "masks", masks);
    if (!j) {
        bc_errf(e, "out of memory (or the text is not valid UTF-8)");
        goto done;
    }
    if (pair) {
        const float *z = nl->data;
        json_object_set_new(j, "pair", json_string(pair));
        json_object_set_new(j, "is_next_probability",
                            json_real(exp((double)z[0] - tk_log_sum_exp(z, 2))));
    }
    /* The text with each [MASK] of segment A replaced by its best token. */
    size_t tl = strlen(text), cap = tl + 1, at = 0, from = 0;
    filled = malloc(cap);
    for (int64_t p = 0; filled && p < S; p++) {
        if (x[p] != msk)
            continue;
        const float *lg = (const float *)ml->data + (size_t)p * V;
        double lse = tk_log_sum_exp(lg, V);
        cand top[5];
        int nt = 0;
        for (int64_t v = 0; v < V; v++) {
            double pv = exp((double)lg[v] - lse);
            if (nt < 5 || pv > top[nt - 1].p) {
                int q = nt < 5 ? nt++ : 4;
                while (q > 0 && top[q - 1].p < pv) {
                    top[q] = top[q - 1];
                    q--;
                }
                top[q] = (cand){(int)v, pv};
            }
        }
        json_t *preds = json_array();
        for (int q = 0; q < nt; q++)
            json_array_append_new(preds, json_pack("{s:s, s:f}", "token",
                                                   tx_vocab_token(s->v, top[q].id),
                                                   "probability", top[q].p));
        json_array_append_new(masks, json_pack("{s:I, s:o}", "position", (json_int_t)p,
                                               "predictions", preds));
        if (p >= 1 && p <= na) {
            const tx_token *t = &a.t[p - 1];
            const char *w = tx_vocab_token(s->v, top[0].id);
            if (!strncmp(w, "##", 2))
                w += 2;
            size_t need =
                at + ((size_t)t->start - from) + strlen(w) + (tl - (size_t)t->end) + 1;
            if (need > cap) {
                char *nf = realloc(filled, need);
                if (!nf) {
                    free(filled);
                    filled = NULL;
                    break;
                }
                filled = nf;
                cap = need;
            }
            memcpy(filled + at, text + from, (size_t)t->start - from);
            at += (size_t)t->start - from;
            memcpy(filled + at, w, strlen(w));
            at += strlen(w);
            from = (size_t)t->end;
        }
    }
    if (!filled) {
        bc_errf(e, "out of memory");
        goto done;
    }
    memcpy(filled + at, text + from, tl - from);
    filled[at + tl - from] = 0;
    json_object_set_new(j, "filled", json_string(filled));
    *out = j;
    j = NULL;
    rc = 0;
done:
    json_decref(j);
    free(filled);
    tx_token_list_free(&a);
    tx_token_list_free(&b);
    rt_list_free(&in);
    rt_list_free(&o);
    return rc;
}

static int pt_print(void *state, const json_t *p, FILE *f)
{
    (void)state;
    fprintf(f, "filled: %s\n", json_string_value(json_object_get(p, "filled")));
    size_t i, k;
    json_t *m, *c;
    json_array_foreach(json_object_get(p, "masks"), i, m)
    {
        fprintf(f, "[MASK] %zu:", i + 1);
        json_array_foreach(json_object_get(m, "predictions"), k, c)
        {
            fprintf(f, "%s %s (%.2f)", k ? "," : "",
                    json_string_value(json_object_get(c, "token")),
                    json_real_value(json_object_get(c, "probability")));
        }
        fputc('\n', f);
    }
    json_t *nx = json_object_get(p, "is_next_probability");
    if (nx)
        fprintf(f, "is next: %.2f\n", json_real_value(nx));
    return ferror(f) ? -1 : 0;
}

const tk_task_ops tk_task_pretrain = {
    .name = "pretrain",
    .about = "BERT pre-training: masked LM + next-sentence prediction (a corpus, or a "
             "pretrain-data file)",
    .options = pt_options,
    .best_by = pt_best_by,
    .eval_outputs = pt_outputs,
    .open = pt_open,
    .close = pt_close,
    .heads = pt_heads,
    .option_value = pt_option_value,
    .save = NULL, /* no label lists: everything lives in options.json */
    .data = pt_data,
    .refill = pt_refill,
    .augment = pt_augment,
    .evaluate = pt_evaluate,
    .predict = pt_predict,
    .print = pt_print,
};
