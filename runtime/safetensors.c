/* safetensors.c: loading and saving safetensors files. A file is an 8-byte
 * little-endian header length N, N bytes of JSON header, then the data section. The
 * header is untrusted: every entry is checked, and the entries must tile the data
 * section exactly (as the reference Rust implementation requires), before any tensor
 * data is allocated or copied. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/file.h"

/* The header length field and the data are little-endian; we read them in place. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "bertcc assumes a little-endian host");

/* The reference implementation's limit; it also bounds what a hostile header costs. */
#define ST_MAX_HEADER 100000000u

/* One header entry, checked against the file but not yet copied. */
typedef struct {
    const char *name; /* owned by the JSON header */
    rt_dtype dtype;
    int rank;
    int64_t shape[RT_MAX_RANK];
    uint64_t begin, end; /* byte range in the data section */
    int index;           /* position in the header, to keep sorting stable */
} st_entry;

/* "FILE: tensor 'NAME': message" */
__attribute__((format(printf, 4, 5))) static int
terr(bc_err *e, const char *file, const char *tname, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bc_verrf(e, fmt, ap);
    va_end(ap);
    bc_err_prefix(e, "%s: tensor '%s'", file, tname);
    return -1;
}

/* ---- header entries --------------------------------------------------------------- */

static int parse_dtype(json_t *v, const char *file, const char *tname, rt_dtype *out,
                       bc_err *e)
{
    if (!v)
        return terr(e, file, tname, "missing 'dtype'");
    if (!json_is_string(v))
        return terr(e, file, tname, "'dtype' must be a string");
    if (rt_dtype_from_name(json_string_value(v), out) < 0)
        return terr(e, file, tname, "unknown dtype '%s'", json_string_value(v));
    return 0;
}

static int parse_shape(json_t *v, const char *file, const char *tname, st_entry *t,
                       bc_err *e)
{
    if (!v)
        return terr(e, file, tname, "missing 'shape'");
    if (!json_is_array(v))
        return terr(e, file, tname, "'shape' must be an array");
    size_t rank = json_array_size(v);
    if (rank > RT_MAX_RANK)
        return terr(e, file, tname, "shape has %zu dims; at most %d are supported", rank,
                    RT_MAX_RANK);
    for (size_t i = 0; i < rank; i++) {
        json_t *d = json_array_get(v, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return terr(e, file, tname, "shape dim %zu is not a non-negative integer", i);
        t->shape[i] = json_integer_value(d);
    }
    t->rank = (int)rank;
    return 0;
}

static int parse_offsets(json_t *v, const char *file, const char *tname, st_entry *t,
                         bc_err *e)
{
    if (!v)
        return terr(e, file, tname, "missing 'data_offsets'");
    if (!json_is_array(v) || json_array_size(v) != 2)
        return terr(e, file, tname, "'data_offsets' must be an array of 2 integers");
    json_t *b = json_array_get(v, 0), *x = json_array_get(v, 1);
    if (!json_is_integer(b) || !json_is_integer(x) || json_integer_value(b) < 0 ||
        json_integer_value(x) < 0)
        return terr(e, file, tname, "'data_offsets' must be 2 non-negative integers");
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(x);
    return 0;
}

/* Checks the entry's byte range against its dtype, shape and the data section. */
static int check_range(const st_entry *t, uint64_t data_len, const char *file, bc_err *e)
{
    char sh[256];
    rt_shape_str(t->rank, t->shape, sh, sizeof sh);
    uint64_t nbytes = rt_dtype_size(t->dtype);
    for (int i = 0; i < t->rank; i++) {
        if (__builtin_mul_overflow(nbytes, (uint64_t)t->shape[i], &nbytes))
            return terr(e, file, t->name, "shape %s with dtype %s is too large", sh,
                        rt_dtype_name(t->dtype));
    }
    if (t->begin > t->end)
        return terr(e, file, t->name, "data_offsets [%llu, %llu] are reversed",
                    (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_len)
        return terr(e, file, t->name,
                    "data_offsets [%llu, %llu] run past the end of the data section "
                    "(%llu bytes)",
                    (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)data_len);
    if (t->end - t->begin != nbytes)
        return terr(e, file, t->name,
                    "data_offsets [%llu, %llu] do not match dtype %s and shape %s "
                    "(%llu bytes)",
                    (unsigned long long)t->begin, (unsigned long long)t->end,
                    rt_dtype_name(t->dtype), sh, (unsigned long long)nbytes);
    return 0;
}

static int parse_entry(const char *tname, json_t *v, uint64_t data_len, const char *file,
                       st_entry *t, bc_err *e)
{
    if (!json_is_object(v))
        return terr(e, file, tname, "entry is not a JSON object");
    t->name = tname;
    if (parse_dtype(json_object_get(v, "dtype"), file, tname, &t->dtype, e) < 0 ||
        parse_shape(json_object_get(v, "shape"), file, tname, t, e) < 0 ||
        parse_offsets(json_object_get(v, "data_offsets"), file, tname, t, e) < 0)
        return -1;
    return check_range(t, data_len, file, e);
}

/* __metadata__ is free-form, but the format says it maps strings to strings. */
static int check_metadata(json_t *v, const char *file, bc_err *e)
{
    const char *k;
    json_t *x;
    if (!json_is_object(v))
        return bc_errf(e, "%s: __metadata__ is not a JSON object", file);
    json_object_foreach(v, k, x)
    {
        if (!json_is_string(x))
            return bc_errf(e, "%s: __metadata__ value '%s' is not a string", file, k);
    }
    return 0;
}

/* ---- the data section must be tiled exactly ---------------------------------------- */

static int entry_cmp(const void *pa, const void *pb)
{
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* ts is sorted by range; each must start where the previous one ended. */
static int check_tiling(const st_entry *ts, int n, uint64_t data_len, const char *file,
                        bc_err *e)
{
    uint64_t at = 0;
    const st_entry *prev = NULL;
    for (int i = 0; i < n; i++) {
        const st_entry *t = &ts[i];
        if (t->begin < at)
            return terr(e, file, t->name,
                        "data_offsets [%llu, %llu] overlap tensor '%s' "
                        "[%llu, %llu]",
                        (unsigned long long)t->begin, (unsigned long long)t->end,
                        prev->name, (unsigned long long)prev->begin,
                        (unsigned long long)prev->end);
        if (t->begin > at)
            return terr(e, file, t->name,
                        "data_offsets [%llu, %llu] leave a hole after byte %llu of the "
                        "data section",
                        (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)at);
        at = t->end;
        prev = t;
    }
    if (at != data_len)
        return bc_errf(e,
                       "%s: tensors cover %llu of the %llu bytes of the data section "
                       "(trailing bytes are not allowed)",
                       file, (unsigned long long)at, (unsigned long long)data_len);
    return 0;
}

/* ---- parsing --------------------------------------------------------------------- */

/* Splits buf into its JSON header (parsed into *root) and data section. */
static int parse_header(const unsigned char *buf, size_t len, const char *file,
                        json_t **root, size_t *data_at, bc_err *e)
{
    if (len < 8)
        return bc_errf(e, "%s: file is %zu bytes, too short for the 8-byte header length",
                       file, len);
    uint64_t n;
    memcpy(&n, buf, sizeof n);
    /* Compare against len - 8 (no overflow: len >= 8), never n + 8 against len. */
    if (n > len - 8)
        return bc_errf(e,
                       "%s: header length %llu runs past the end of the file (%zu bytes)",
                       file, (unsigned long long)n, len);
    if (n > ST_MAX_HEADER)
        return bc_errf(e, "%s: header length %llu exceeds the limit of %u bytes", file,
                       (unsigned long long)n, ST_MAX_HEADER);
    json_error_t jerr;
    *root = json_loadb((const char *)buf + 8, (size_t)n,
                       JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!*root)
        return bc_errf(e, "%s: header is not valid JSON: %s (line %d, column %d)", file,
                       jerr.text, jerr.line, jerr.column);
    if (!json_is_object(*root)) {
        json_decref(*root);
        return bc_errf(e, "%s: header is not a JSON object", file);
    }
    *data_at = 8 + (size_t)n;
    return 0;
}

/* Checks every entry of the header into ts (sorted by range); returns their count. */
static int collect_entries(json_t *root, uint64_t data_len, const char *file,
                           st_entry **out, bc_err *e)
{
    size_t cap = json_object_size(root);
    st_entry *ts = calloc(cap ? cap : 1, sizeof *ts);
    if (!ts)
        return bc_errf(e, "%s: out of memory", file);
    int n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        int rc = strcmp(k, "__metadata__") == 0
                     ? check_metadata(v, file, e)
                     : parse_entry(k, v, data_len, file, &ts[n], e);
        if (rc < 0) {
            free(ts);
            return -1;
        }
        if (strcmp(k, "__metadata__") != 0) {
            ts[n].index = n;
            n++;
        }
    }
    qsort(ts, (size_t)n, sizeof *ts, entry_cmp);
    *out = ts;
    return n;
}

/* Copies the checked entries' data into the empty list tmp, in file order. The array
 * is filled directly: rt_list_add's name lookup would make a hostile header with
 * millions of entries quadratic. */
static int copy_tensors(const st_entry *ts, int n, const unsigned char *data,
                        const char *file, rt_tensor_list *tmp, bc_err *e)
{
    tmp->t = calloc(n ? (size_t)n : 1, sizeof *tmp->t);
    if (!tmp->t)
        return bc_errf(e, "%s: out of memory", file);
    tmp->cap = n;
    for (int i = 0; i < n; i++) {
        const st_entry *t = &ts[i];
        rt_tensor *d = &tmp->t[tmp->n++]; /* counted now so rt_list_free frees it */
        size_t nb = (size_t)(t->end - t->begin);
        d->name = strdup(t->name);
        d->dtype = t->dtype;
        d->rank = t->rank;
        memcpy(d->shape, t->shape, sizeof d->shape);
        d->data = nb ? malloc(nb) : NULL;
        if (!d->name || (nb && !d->data))
            return terr(e, file, t->name, "out of memory");
        if (nb)
            memcpy(d->data, data + t->begin, nb);
    }
    return 0;
}

int rt_st_parse(const void *buf, size_t len, const char *name, rt_tensor_list *out,
                bc_err *e)
{
    json_t *root = NULL;
    size_t data_at = 0;
    if (parse_header(buf, len, name, &root, &data_at, e) < 0)
        return -1;
    const unsigned char *data = (const unsigned char *)buf + data_at;
    uint64_t data_len = len - data_at;
    st_entry *ts = NULL;
    rt_tensor_list tmp;
    rt_list_init(&tmp);
    int n = collect_entries(root, data_len, name, &ts, e);
    int rc = n < 0 ? -1 : check_tiling(ts, n, data_len, name, e);
    if (rc == 0)
        rc = copy_tensors(ts, n, data, name, &tmp, e);
    if (rc == 0 && rt_list_append(out, &tmp) < 0)
        rc = bc_errf(e, "%s: out of memory", name);
    rt_list_free(&tmp);
    free(ts);
    json_decref(root);
    return rc;
}

int rt_st_load(const char *path, rt_tensor_list *out, bc_err *e)
{
    int fd = bc_open_read(path, e);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return bc_errf(e, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t len = (size_t)st.st_size;
    if (len < 8) { /* mmap cannot map an empty file; parse gives the message */
        unsigned char small[8];
        ssize_t r = read(fd, small, len);
        close(fd);
        if (r < 0)
            return bc_errf(e, "%s: cannot read: %s", path, strerror(errno));
        return rt_st_parse(small, (size_t)r, path, out, e);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return bc_errf(e, "%s: cannot map: %s", path, strerror(errno));
    int rc = rt_st_parse(map, len, path, out, e);
    munmap(map, len);
    return rc;
}

/* ---- saving --------------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_unique_names(const rt_tensor_list *l, const char *path, bc_err *e)
{
    const char **names = malloc((size_t)(l->n ? l->n : 1) * sizeof *names);
    if (!names)
        return bc_errf(e, "%s: out of memory", path);
    for (int i = 0; i < l->n; i++)
        names[i] = l->t[i].name;
    qsort(names, (size_t)l->n, sizeof *names, name_cmp);
    int rc = 0;
    for (int i = 1; i < l->n && rc == 0; i++) {
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = bc_errf(e, "%s: tensor '%s' appears more than once", path, names[i]);
    }
    free(names);
    return rc;
}

static int check_tensor(const rt_tensor *t, const char *path, bc_err *e)
{
    if (strcmp(t->name, "__metadata__") == 0)
        return terr(e, path, t->name, "the name is reserved by the format");
    if ((unsigned)t->dtype >= RT_DTYPE_COUNT || t->rank < 0 || t->rank > RT_MAX_RANK)
        return terr(e, path, t->name, "invalid dtype or rank");
    for (int i = 0; i < t->rank; i++) {
        if (t->shape[i] < 0)
            return terr(e, path, t->name, "negative dim %d", i);
    }
    if (rt_nbytes(t) > 0 && !t->data)
        return terr(e, path, t->name, "has no data");
    return 0;
}

/* {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} */
static json_t *entry_json(const rt_tensor *t, uint64_t begin, uint64_t end)
{
    json_t *shape = json_array(), *offs = json_array(), *o = json_object();
    for (int i = 0; i < t->rank; i++)
        json_array_append_new(shape, json_integer(t->shape[i]));
    json_array_append_new(offs, json_integer((json_int_t)begin));
    json_array_append_new(offs, json_integer((json_int_t)end));
    json_object_set_new(o, "dtype", json_string(rt_dtype_name(t->dtype)));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "data_offsets", offs);
    return o;
}

/* The header as compact JSON, padded with spaces to a multiple of 8 bytes so the data
 * section starts 8-byte aligned. Keys keep list order (jansson keeps insertion order).
 * Tensors are packed back to back: the format allows no gaps between them. */
static char *header_json(const rt_tensor_list *l, const char *path, size_t *len, bc_err *e)
{
    json_t *root = json_object();
    /* Hugging Face transformers checks this key when it loads a checkpoint. */
    json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t at = 0;
    for (int i = 0; i < l->n; i++) {
        const rt_tensor *t = &l->t[i];
        uint64_t nb = rt_nbytes(t);
        if (json_object_set_new(root, t->name, entry_json(t, at, at + nb)) < 0) {
            json_decref(root);
            terr(e, path, t->name, "the name is not valid UTF-8");
            return NULL;
        }
        at += nb;
    }
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t n = s ? strlen(s) : 0, padded = (n + 7) & ~(size_t)7;
    char *out = s ? realloc(s, padded + 1) : NULL;
    if (!out) {
        free(s);
        bc_errf(e, "%s: out of memory", path);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = 0;
    *len = padded;
    return out;
}

static int write_all(FILE *f, const rt_tensor_list *l, const char *hdr, size_t hlen)
{
    uint64_t n = hlen;
    int ok = fwrite(&n, sizeof n, 1, f) == 1 && fwrite(hdr, 1, hlen, f) == hlen;
    for (int i = 0; i < l->n && ok; i++) {
        size_t nb = rt_nbytes(&l->t[i]);
        ok = nb == 0 || fwrite(l->t[i].data, 1, nb, f) == nb;
    }
    /* bc_atomic_commit fsyncs before the rename, so a crash cannot leave a truncated
     * file under the final name */
    return ok ? 0 : -1;
}

int rt_st_save(const char *path, const rt_tensor_list *l, bc_err *e)
{
    for (int i = 0; i < l->n; i++) {
        if (check_tensor(&l->t[i], path, e) < 0)
            return -1;
    }
    if (check_unique_names(l, path, e) < 0)
        return -1;
    size_t hlen;
    char *hdr = header_json(l, path, &hlen, e);
    if (!hdr)
        return -1;
    /* temp + fsync + rename + fsync of the directory (support/file.h) */
    char tmp[4200];
    int rc = 0;
    FILE *f = bc_atomic_open(path, tmp, sizeof tmp, e);
    if (!f) {
        rc = -1;
    } else {
        errno = 0;
        if (write_all(f, l, hdr, hlen) < 0) {
            int werr = errno ? errno : EIO;
            bc_atomic_abort(f, tmp);
            rc = bc_errf(e, "%s: cannot write: %s", path, strerror(werr));
        } else {
            rc = bc_atomic_commit(f, tmp, path, e);
        }
    }
    free(hdr);
    return rc;
}
