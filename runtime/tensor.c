/* tensor.c: named host tensors, lists of them, and the dtype conversions used when
 * loading checkpoints and batches (F16/BF16/F64 to float, any integer to int64). */
#include "tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor data is stored and read as raw little-endian bytes (safetensors' byte order). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "bertcc assumes a little-endian host");
_Static_assert(SIZE_MAX >= INT64_MAX, "byte sizes are int64 and must fit size_t");

static const struct {
    const char *name;
    size_t size;
    int is_int;
} dtype_info[RT_DTYPE_COUNT] = {
    [RT_F32] = {"F32", 4, 0},   [RT_F64] = {"F64", 8, 0}, [RT_F16] = {"F16", 2, 0},
    [RT_BF16] = {"BF16", 2, 0}, [RT_I64] = {"I64", 8, 1}, [RT_I32] = {"I32", 4, 1},
    [RT_I16] = {"I16", 2, 1},   [RT_I8] = {"I8", 1, 1},   [RT_U8] = {"U8", 1, 1},
    [RT_BOOL] = {"BOOL", 1, 1},
};

static int dtype_valid(rt_dtype dt)
{
    return (unsigned)dt < RT_DTYPE_COUNT;
}

size_t rt_dtype_size(rt_dtype dt)
{
    return dtype_valid(dt) ? dtype_info[dt].size : 0;
}

const char *rt_dtype_name(rt_dtype dt)
{
    return dtype_valid(dt) ? dtype_info[dt].name : "?";
}

int rt_dtype_from_name(const char *s, rt_dtype *out)
{
    for (int i = 0; i < RT_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (rt_dtype)i;
            return 0;
        }
    }
    return -1;
}

int rt_dtype_is_int(rt_dtype dt)
{
    return dtype_valid(dt) && dtype_info[dt].is_int;
}

int64_t rt_numel(const rt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

size_t rt_nbytes(const rt_tensor *t)
{
    return (size_t)rt_numel(t) * rt_dtype_size(t->dtype);
}

/* ---- lists ---------------------------------------------------------------------- */

void rt_list_init(rt_tensor_list *l)
{
    l->t = NULL;
    l->n = l->cap = 0;
}

static void arena_release(rt_arena *a)
{
    if (a && --a->refs == 0)
        free(a);
}

/* Frees what the tensor owns of its data: its allocation, or its share of an arena. */
static void data_free(rt_tensor *t)
{
    if (!t->view)
        free(t->data);
    else
        arena_release(t->arena);
    t->data = NULL;
    t->view = 0;
    t->arena = NULL;
}

static void tensor_free(rt_tensor *t)
{
    free(t->name);
    data_free(t);
}

void rt_list_free(rt_tensor_list *l)
{
    for (int i = 0; i < l->n; i++)
        tensor_free(&l->t[i]);
    free(l->t);
    rt_list_init(l);
}

/* Byte size of a tensor of this dtype and shape; -1 if the shape is invalid or the
 * size does not fit in memory. */
static int checked_nbytes(rt_dtype dt, int rank, const int64_t *shape, size_t *out)
{
    if (!dtype_valid(dt) || rank < 0 || rank > RT_MAX_RANK)
        return -1;
    size_t n = rt_dtype_size(dt);
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, (size_t)shape[i], &n))
            return -1;
    }
    if (n > (size_t)INT64_MAX)
        return -1;
    *out = n;
    return 0;
}

static int list_reserve(rt_tensor_list *l, int extra)
{
    if (extra <= l->cap - l->n)
        return 0;
    int cap = l->cap ? l->cap : 8;
    while (cap - l->n < extra) {
        if (cap > (1 << 29))
            return -1;
        cap *= 2;
    }
    rt_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
    if (!t)
        return -1;
    l->t = t;
    l->cap = cap;
    return 0;
}

/* Fills *t with copies of name and data (zeros when data is NULL). */
static int tensor_make(rt_tensor *t, const char *name, rt_dtype dt, int rank,
                       const int64_t *shape, const void *data)
{
    size_t nbytes;
    if (checked_nbytes(dt, rank, shape, &nbytes) < 0)
        return -1;
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dtype = dt;
    t->rank = rank;
    if (rank > 0)
        memcpy(t->shape, shape, (size_t)rank * sizeof *shape);
    if (nbytes > 0) {
        t->data = data ? malloc(nbytes) : calloc(1, nbytes);
        if (t->data && data)
            memcpy(t->data, data, nbytes);
    }
    if (!t->name || (nbytes > 0 && !t->data)) {
        tensor_free(t);
        return -1;
    }
    return 0;
}

/* Puts nt into l: in place of the tensor of the same name, or appended. On failure nt
 * is freed. */
static rt_tensor *list_put(rt_tensor_list *l, rt_tensor nt)
{
    rt_tensor *old = rt_list_find(l, nt.name);
    if (old) {
        tensor_free(old);
        *old = nt;
        return old;
    }
    if (list_reserve(l, 1) < 0) {
        tensor_free(&nt);
        return NULL;
    }
    l->t[l->n] = nt;
    return &l->t[l->n++];
}

rt_tensor *rt_list_add(rt_tensor_list *l, const char *name, rt_dtype dt, int rank,
                       const int64_t *shape, const void *data)
{
    /* Build the new tensor before touching the old one: name or data may point into
     * the tensor being replaced. */
    rt_tensor nt;
    if (tensor_make(&nt, name, dt, rank, shape, data) < 0)
        return NULL;
    return list_put(l, nt);
}

rt_tensor *rt_list_add_view(rt_tensor_list *l, const char *name, rt_dtype dt, int rank,
                            const int64_t *shape, void *data)
{
    rt_tensor nt;
    size_t nbytes;
    if (checked_nbytes(dt, rank, shape, &nbytes) < 0)
        return NULL;
    memset(&nt, 0, sizeof nt);
    if (!(nt.name = strdup(name)))
        return NULL;
    nt.dtype = dt;
    nt.rank = rank;
    if (rank > 0)
        memcpy(nt.shape, shape, (size_t)rank * sizeof *shape);
    nt.data = data;
    nt.view = 1;
    return list_put(l, nt);
}

static size_t align_up(size_t n)
{
    return (n + RT_ARENA_ALIGN - 1) & ~(size_t)(RT_ARENA_ALIGN - 1);
}

int rt_list_pack(rt_tensor_list *l)
{
    size_t total = 0;
    int users = 0;
    for (int i = 0; i < l->n; i++) {
        size_t nb = rt_nbytes(&l->t[i]);
        if (nb && __builtin_add_overflow(total, align_up(nb), &total))
            return -1;
        users += nb > 0;
    }
    if (!users)
        return 0;
    if (total > SIZE_MAX - RT_ARENA_ALIGN)
        return -1;
    _Static_assert(sizeof(rt_arena) <= RT_ARENA_ALIGN, "the arena header fits its slot");
    rt_arena *a = aligned_alloc(RT_ARENA_ALIGN, RT_ARENA_ALIGN + total);
    if (!a)
        return -1;
    a->refs = users;
    a->bytes = total;
    a->data = (char *)a + RT_ARENA_ALIGN;
    size_t at = 0;
    for (int i = 0; i < l->n; i++) {
        rt_tensor *t = &l->t[i];
        size_t nb = rt_nbytes(t);
        if (!nb)
            continue;
        void *dst = (char *)a->data + at;
        memcpy(dst, t->data, nb);
        data_free(t);
        t->data = dst;
        t->view = 1;
        t->arena = a;
        at += align_up(nb);
    }
    return 0;
}

rt_tensor *rt_list_find(const rt_tensor_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++) {
        if (strcmp(l->t[i].name, name) == 0)
            return &l->t[i];
    }
    return NULL;
}

const rt_tensor *rt_list_cfind(const rt_tensor_list *l, const char *name)
{
    return rt_list_find(l, name);
}

int rt_list_remove(rt_tensor_list *l, const char *name)
{
    rt_tensor *t = rt_list_find(l, name);
    if (!t)
        return 0;
    int i = (int)(t - l->t);
    tensor_free(t);
    /* Keep the order: files are written in list order. */
    memmove(&l->t[i], &l->t[i + 1], (size_t)(l->n - i - 1) * sizeof *t);
    l->n--;
    return 1;
}

int rt_list_append(rt_tensor_list *dst, rt_tensor_list *src)
{
    if (list_reserve(dst, src->n) < 0)
        return -1;
    /* Only dst's original tensors can clash: src's names are unique. */
    int n0 = dst->n;
    for (int i = 0; i < src->n; i++) {
        rt_tensor *old = NULL;
        for (int j = 0; j < n0 && !old; j++)
            old = strcmp(dst->t[j].name, src->t[i].name) == 0 ? &dst->t[j] : NULL;
        if (old) {
            tensor_free(old);
            *old = src->t[i];
        } else {
            dst->t[dst->n++] = src->t[i];
        }
    }
    free(src->t);
    rt_list_init(src);
    return 0;
}

/* ---- half-precision bit conversions --------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float rt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        /* Zero or subnormal: mant units of 2^-24, exact in float. */
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    if (exp == 31) /* inf, or NaN with its payload kept */
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

float rt_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

/* Drops the low `shift` bits of m, rounding to nearest, ties to even. */
static uint32_t round_shift_rne(uint32_t m, int shift)
{
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++;
    return q;
}

uint16_t rt_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep it quiet and keep the top payload bits */
        return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff);
    if (ax >= 0x477ff000u) /* >= 65520 (halfway past 65504) rounds to inf */
        return sign | 0x7c00;
    if (ax >= 0x38800000u) /* normal in f16 (>= 2^-14); a mantissa carry bumps exp */
        return sign | (uint16_t)round_shift_rne(ax - 0x38000000u, 13);
    if (ax <= 0x33000000u) /* <= 2^-25: half the smallest subnormal ties to 0 */
        return sign;
    /* Subnormal: value = m * 2^(e-150); in units of 2^-24 that is m >> (126 - e). */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    return sign | (uint16_t)round_shift_rne(m, (int)(126 - e));
}

uint16_t rt_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncation could make it inf */
        return (uint16_t)((x >> 16) | 0x40);
    /* Overflow past the largest finite bf16 correctly carries into inf. */
    return (uint16_t)round_shift_rne(x, 16);
}

/* ---- tensor conversions ---------------------------------------------------------- */

int rt_to_f32(const rt_tensor *t, float *dst, bc_err *e)
{
    int64_t n = rt_numel(t);
    switch (t->dtype) {
    case RT_F32:
        if (n > 0)
            memcpy(dst, t->data, (size_t)n * sizeof *dst);
        return 0;
    case RT_F64:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)((const double *)t->data)[i];
        return 0;
    case RT_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = rt_f16_to_f32(((const uint16_t *)t->data)[i]);
        return 0;
    case RT_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = rt_bf16_to_f32(((const uint16_t *)t->data)[i]);
        return 0;
    default:
        return bc_errf(e,
                       "tensor '%s': dtype %s is not a float dtype (F32, F64, F16, BF16)",
                       t->name, rt_dtype_name(t->dtype));
    }
}

int rt_to_i64(const rt_tensor *t, int64_t *dst, bc_err *e)
{
    int64_t n = rt_numel(t);
    switch (t->dtype) {
    case RT_I64:
        if (n > 0)
            memcpy(dst, t->data, (size_t)n * sizeof *dst);
        return 0;
    case RT_I32:
        for (int64_t i = 0; i < n; i++)
            dst[i] = ((const int32_t *)t->data)[i];
        return 0;
    case RT_I16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = ((const int16_t *)t->data)[i];
        return 0;
    case RT_I8:
        for (int64_t i = 0; i < n; i++)
            dst[i] = ((const int8_t *)t->data)[i];
        return 0;
    case RT_U8:
        for (int64_t i = 0; i < n; i++)
            dst[i] = ((const uint8_t *)t->data)[i];
        return 0;
    case RT_BOOL: /* any nonzero byte is true */
        for (int64_t i = 0; i < n; i++)
            dst[i] = ((const uint8_t *)t->data)[i] != 0;
        return 0;
    default:
        return bc_errf(e, "tensor '%s': dtype %s is not an integer dtype", t->name,
                       rt_dtype_name(t->dtype));
    }
}

/* Appends to buf at *at, clamped to len; later appends after truncation do nothing. */
static void appendf(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
    if (*at >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *at, len - *at, fmt, ap);
    va_end(ap);
    if (w > 0)
        *at += (size_t)w;
}

char *rt_shape_str(int rank, const int64_t *shape, char *buf, size_t len)
{
    size_t at = 0;
    if (len > 0)
        buf[0] = 0;
    appendf(buf, len, &at, "[");
    for (int i = 0; i < rank; i++)
        appendf(buf, len, &at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    appendf(buf, len, &at, "]");
    return buf;
}
