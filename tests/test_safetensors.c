/* test_safetensors.c: runtime/tensor.c and runtime/safetensors.c — dtype conversions,
 * tensor lists, round trips of every dtype, a file written by Python, and every class of
 * corrupt file (which must give an error naming the file and tensor, never a crash). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/safetensors.h"
#include "../runtime/tensor.h"
#include "util.h"

#define MEM "mem.safetensors"

/* ---- helpers ---------------------------------------------------------------------- */

/* A file image: header length hlen, the header text, then data_len bytes 0, 1, 2, ... */
static unsigned char *image_hlen(uint64_t hlen, const char *header, size_t data_len,
                                 size_t *len)
{
    size_t n = strlen(header);
    unsigned char *b = malloc(8 + n + data_len + 1);
    cr_assert(b);
    memcpy(b, &hlen, 8);
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++)
        b[8 + n + i] = (unsigned char)i;
    *len = 8 + n + data_len;
    return b;
}

static unsigned char *image(const char *header, size_t data_len, size_t *len)
{
    return image_hlen(strlen(header), header, data_len, len);
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* A list holding one tensor, to check that a failed load leaves it as it was. */
static void sentinel_list(rt_tensor_list *l)
{
    float v = 7.0f;
    int64_t shape[1] = {1};
    rt_list_init(l);
    cr_assert(rt_list_add(l, "keep", RT_F32, 1, shape, &v));
}

static void assert_sentinel_intact(const rt_tensor_list *l)
{
    cr_assert_eq(l->n, 1, "a failed load changed the list (%d tensors)", l->n);
    cr_assert_str_eq(l->t[0].name, "keep");
    cr_assert_eq(*(float *)l->t[0].data, 7.0f);
}

static void assert_error(int rc, const bc_err *e, const char *file, const char *want1,
                         const char *want2)
{
    cr_assert_eq(rc, -1, "expected an error mentioning '%s'", want1);
    size_t n = strlen(file);
    cr_assert(strncmp(e->msg, file, n) == 0 && e->msg[n] == ':',
              "message does not start with the file name: %s", e->msg);
    cr_assert(strstr(e->msg, want1), "'%s' not in: %s", want1, e->msg);
    if (want2)
        cr_assert(strstr(e->msg, want2), "'%s' not in: %s", want2, e->msg);
}

/* The image must be rejected by rt_st_parse and, from a real file, by rt_st_load; both
 * messages must mention want1 and want2 (when non-NULL), and out must be untouched. */
static void expect_rejected(unsigned char *img, size_t len, const char *want1,
                            const char *want2)
{
    rt_tensor_list l;
    bc_err e = {{0}};
    sentinel_list(&l);
    assert_error(rt_st_parse(img, len, MEM, &l, &e), &e, MEM, want1, want2);
    assert_sentinel_intact(&l);

    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "bad.safetensors"));
    write_bytes(path, img, len);
    memset(&e, 0, sizeof e);
    assert_error(rt_st_load(path, &l, &e), &e, path, want1, want2);
    assert_sentinel_intact(&l);
    unlink(path);
    rmdir(dir);
    rt_list_free(&l);
    free(img);
}

static void expect_header_rejected(const char *header, size_t data_len, const char *want1,
                                   const char *want2)
{
    size_t len;
    unsigned char *img = image(header, data_len, &len);
    expect_rejected(img, len, want1, want2);
}

/* Parses an image that must be valid into a fresh list. */
static void parse_ok(const unsigned char *img, size_t len, rt_tensor_list *l)
{
    bc_err e = {{0}};
    rt_list_init(l);
    cr_assert_eq(rt_st_parse(img, len, MEM, l, &e), 0, "unexpected error: %s", e.msg);
}

/* ---- f16 / bf16 conversions ------------------------------------------------------- */

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

Test(convert, f32_to_f16_matches_hand_computed_bits)
{
    cr_assert_eq(rt_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(rt_f32_to_f16(-2.5f), 0xc100);
    cr_assert_eq(rt_f32_to_f16(65504.0f), 0x7bff);          /* largest finite */
    cr_assert_eq(rt_f32_to_f16(ldexpf(1, -24)), 0x0001);    /* smallest subnormal */
    cr_assert_eq(rt_f32_to_f16(ldexpf(1023, -24)), 0x03ff); /* largest subnormal */
    cr_assert_eq(rt_f32_to_f16(ldexpf(1, -14)), 0x0400);    /* smallest normal */
    cr_assert_eq(rt_f32_to_f16(0.0f), 0x0000);
    cr_assert_eq(rt_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(rt_f32_to_f16(INFINITY), 0x7c00);
    cr_assert_eq(rt_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t n = rt_f32_to_f16(NAN);
    cr_assert((n & 0x7c00) == 0x7c00 && (n & 0x03ff) != 0, "NaN became %#x", n);
}

Test(convert, f32_to_f16_rounds_to_nearest_even)
{
    /* 1 + 2^-11 is halfway between 0x3c00 (even) and 0x3c01: goes down. */
    cr_assert_eq(rt_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);
    /* 1 + 3*2^-11 is halfway between 0x3c01 and 0x3c02 (even): goes up. */
    cr_assert_eq(rt_f32_to_f16(1.0f + ldexpf(3, -11)), 0x3c02);
    /* Just above halfway goes up. */
    cr_assert_eq(rt_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01);
    /* 65520 is halfway between 65504 and 65536 (would-be even): overflows to inf. */
    cr_assert_eq(rt_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(rt_f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(rt_f32_to_f16(1e10f), 0x7c00);
    /* Subnormal ties: 2^-25 ties to 0, 3*2^-25 ties to 2 units. */
    cr_assert_eq(rt_f32_to_f16(ldexpf(1, -25)), 0x0000);
    cr_assert_eq(rt_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    cr_assert_eq(rt_f32_to_f16(ldexpf(3, -25)), 0x0002);
    cr_assert_eq(rt_f32_to_f16(ldexpf(5, -25)), 0x0002);
    cr_assert_eq(rt_f32_to_f16(-ldexpf(1, -30)), 0x8000);
    /* Rounding the largest subnormal up carries into the smallest normal. */
    cr_assert_eq(rt_f32_to_f16(ldexpf(2047, -25)), 0x0400);
}

Test(convert, f16_to_f32_decodes_every_class)
{
    cr_assert_eq(rt_f16_to_f32(0x3c00), 1.0f);
    cr_assert_eq(rt_f16_to_f32(0xc100), -2.5f);
    cr_assert_eq(rt_f16_to_f32(0x7bff), 65504.0f);
    cr_assert_eq(rt_f16_to_f32(0x0001), ldexpf(1, -24));
    cr_assert_eq(rt_f16_to_f32(0x83ff), -ldexpf(1023, -24));
    cr_assert_eq(bits(rt_f16_to_f32(0x8000)), 0x80000000u);
    cr_assert_eq(rt_f16_to_f32(0x7c00), INFINITY);
    cr_assert_eq(rt_f16_to_f32(0xfc00), -INFINITY);
    cr_assert(isnan(rt_f16_to_f32(0x7e00)));
    cr_assert(isnan(rt_f16_to_f32(0x7c01)));
}

Test(convert, every_f16_survives_a_round_trip_through_f32)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = rt_f16_to_f32((uint16_t)h);
        if (isnan(f))
            cr_assert(isnan(rt_f16_to_f32(rt_f32_to_f16(f))));
        else
            cr_assert_eq(rt_f32_to_f16(f), h, "f16 %#x -> %g -> %#x", h, f,
                         rt_f32_to_f16(f));
    }
}

Test(convert, f32_to_bf16_matches_hand_computed_bits)
{
    cr_assert_eq(rt_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(rt_f32_to_bf16(-2.5f), 0xc020);
    cr_assert_eq(rt_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(rt_f32_to_bf16(-0.0f), 0x8000);
    /* 1 + 2^-8 ties to even 0x3f80; 1 + 3*2^-8 ties to even 0x3f82. */
    cr_assert_eq(rt_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3f80);
    cr_assert_eq(rt_f32_to_bf16(1.0f + ldexpf(3, -8)), 0x3f82);
    cr_assert_eq(rt_f32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3f81);
    /* FLT_MAX is past the largest finite bf16 by more than half an ulp: inf. */
    cr_assert_eq(rt_f32_to_bf16(3.4028235e38f), 0x7f80);
    /* A NaN whose payload sits only in the low bits must stay NaN. */
    uint32_t nb = 0x7f800001u;
    float n;
    memcpy(&n, &nb, 4);
    uint16_t b = rt_f32_to_bf16(n);
    cr_assert((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0, "NaN became %#x", b);
    cr_assert_eq(rt_bf16_to_f32(0xc020), -2.5f);
    cr_assert(isnan(rt_bf16_to_f32(0x7fc0)));
}

Test(convert, every_bf16_survives_a_round_trip_through_f32)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = rt_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            cr_assert_eq(rt_f32_to_bf16(f), h, "bf16 %#x", h);
    }
}

Test(convert, to_f32_reads_every_float_dtype)
{
    rt_tensor_list l;
    rt_list_init(&l);
    int64_t s[1] = {3};
    double f64[3] = {1.5, -2.25, 1e300};
    uint16_t f16[3] = {0x3c00, 0xc100, 0x0001};
    uint16_t bf16[3] = {0x3f80, 0xc020, 0x7f80};
    float f32[3] = {0.5f, -0.0f, 3.0f}, out[3];
    bc_err e;
    cr_assert_eq(rt_to_f32(rt_list_add(&l, "a", RT_F64, 1, s, f64), out, &e), 0);
    cr_assert(out[0] == 1.5f && out[1] == -2.25f && isinf(out[2]));
    cr_assert_eq(rt_to_f32(rt_list_add(&l, "b", RT_F16, 1, s, f16), out, &e), 0);
    cr_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == ldexpf(1, -24));
    cr_assert_eq(rt_to_f32(rt_list_add(&l, "c", RT_BF16, 1, s, bf16), out, &e), 0);
    cr_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == INFINITY);
    cr_assert_eq(rt_to_f32(rt_list_add(&l, "d", RT_F32, 1, s, f32), out, &e), 0);
    cr_assert_eq(memcmp(out, f32, sizeof f32), 0);
    rt_list_free(&l);
}

Test(convert, to_f32_rejects_integer_tensor_by_name)
{
    rt_tensor_list l;
    rt_list_init(&l);
    int64_t s[1] = {2};
    float out[2];
    bc_err e;
    cr_assert_eq(rt_to_f32(rt_list_add(&l, "input_ids", RT_I32, 1, s, NULL), out, &e), -1);
    cr_assert(strstr(e.msg, "'input_ids'") && strstr(e.msg, "I32"), "%s", e.msg);
    rt_list_free(&l);
}

Test(convert, to_i64_reads_every_integer_dtype)
{
    rt_tensor_list l;
    rt_list_init(&l);
    int64_t s[1] = {3}, out[3];
    int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    int32_t i32[3] = {INT32_MIN, -1, INT32_MAX};
    int16_t i16[3] = {-32768, 5, 32767};
    int8_t i8[3] = {-128, -1, 127};
    uint8_t u8[3] = {0, 128, 255}, b[3] = {1, 0, 1};
    bc_err e;
    cr_assert_eq(rt_to_i64(rt_list_add(&l, "a", RT_I64, 1, s, i64), out, &e), 0);
    cr_assert(out[0] == INT64_MIN && out[1] == 0 && out[2] == INT64_MAX);
    cr_assert_eq(rt_to_i64(rt_list_add(&l, "b", RT_I32, 1, s, i32), out, &e), 0);
    cr_assert(out[0] == INT32_MIN && out[1] == -1 && out[2] == INT32_MAX);
    cr_assert_eq(rt_to_i64(rt_list_add(&l, "c", RT_I16, 1, s, i16), out, &e), 0);
    cr_assert(out[0] == -32768 && out[1] == 5 && out[2] == 32767);
    cr_assert_eq(rt_to_i64(rt_list_add(&l, "d", RT_I8, 1, s, i8), out, &e), 0);
    cr_assert(out[0] == -128 && out[1] == -1 && out[2] == 127);
    cr_assert_eq(rt_to_i64(rt_list_add(&l, "e", RT_U8, 1, s, u8), out, &e), 0);
    cr_assert(out[0] == 0 && out[1] == 128 && out[2] == 255);
    cr_assert_eq(rt_to_i64(rt_list_add(&l, "f", RT_BOOL, 1, s, b), out, &e), 0);
    cr_assert(out[0] == 1 && out[1] == 0 && out[2] == 1);
    cr_assert_eq(rt_to_i64(rt_list_add(&l, "w", RT_BF16, 1, s, NULL), out, &e), -1);
    cr_assert(strstr(e.msg, "'w'") && strstr(e.msg, "BF16"), "%s", e.msg);
    rt_list_free(&l);
}

/* ---- dtypes and lists -------------------------------------------------------------- */

Test(tensor, dtype_names_round_trip_in_safetensors_spelling)
{
    const char *want[] = {"F32", "F64", "F16", "BF16", "I64",
                          "I32", "I16", "I8",  "U8",   "BOOL"};
    size_t sizes[] = {4, 8, 2, 2, 8, 4, 2, 1, 1, 1};
    for (int i = 0; i < RT_DTYPE_COUNT; i++) {
        rt_dtype dt;
        cr_assert_str_eq(rt_dtype_name((rt_dtype)i), want[i]);
        cr_assert_eq(rt_dtype_from_name(want[i], &dt), 0);
        cr_assert_eq(dt, (rt_dtype)i);
        cr_assert_eq(rt_dtype_size(dt), sizes[i]);
        cr_assert_eq(rt_dtype_is_int(dt), i >= RT_I64);
    }
    rt_dtype dt;
    cr_assert_eq(rt_dtype_from_name("f32", &dt), -1);
    cr_assert_eq(rt_dtype_from_name("F8_E4M3", &dt), -1);
}

Test(tensor, shape_str_formats_rank_zero_and_truncates_safely)
{
    char buf[64];
    int64_t s[3] = {2, 3, 4};
    cr_assert_str_eq(rt_shape_str(0, s, buf, sizeof buf), "[]");
    cr_assert_str_eq(rt_shape_str(3, s, buf, sizeof buf), "[2, 3, 4]");
    cr_assert_str_eq(rt_shape_str(3, s, buf, 5), "[2, ");
}

Test(tensor, list_add_replaces_in_place_and_remove_keeps_order)
{
    rt_tensor_list l;
    rt_list_init(&l);
    int64_t s[1] = {2};
    float a[2] = {1, 2}, b[2] = {3, 4};
    rt_list_add(&l, "x", RT_F32, 1, s, a);
    rt_list_add(&l, "y", RT_F32, 1, s, NULL);
    rt_list_add(&l, "z", RT_F32, 1, s, a);
    cr_assert_eq(((float *)rt_list_find(&l, "y")->data)[1], 0.0f); /* zero-filled */
    rt_tensor *x = rt_list_find(&l, "x");
    /* Replacing with the old tensor's own name and data must be safe. */
    cr_assert_eq(rt_list_add(&l, x->name, RT_F32, 1, s, x->data), &l.t[0]);
    rt_list_add(&l, "y", RT_F32, 1, s, b);
    cr_assert_eq(l.n, 3);
    cr_assert_eq(((float *)rt_list_cfind(&l, "y")->data)[0], 3.0f);
    cr_assert_eq(((float *)rt_list_cfind(&l, "x")->data)[1], 2.0f);
    cr_assert_eq(rt_list_remove(&l, "y"), 1);
    cr_assert_eq(rt_list_remove(&l, "y"), 0);
    cr_assert(l.n == 2 && !strcmp(l.t[0].name, "x") && !strcmp(l.t[1].name, "z"));
    cr_assert_null(rt_list_find(&l, "y"));
    rt_list_free(&l);
}

Test(tensor, list_append_moves_and_replaces_existing_names)
{
    rt_tensor_list a, b;
    rt_list_init(&a);
    rt_list_init(&b);
    int64_t s[1] = {1};
    float one = 1, two = 2;
    rt_list_add(&a, "p", RT_F32, 1, s, &one);
    rt_list_add(&a, "q", RT_F32, 1, s, &one);
    rt_list_add(&b, "r", RT_F32, 1, s, &two);
    rt_list_add(&b, "p", RT_F32, 1, s, &two);
    cr_assert_eq(rt_list_append(&a, &b), 0);
    cr_assert(b.n == 0 && b.t == NULL);
    cr_assert_eq(a.n, 3);
    cr_assert(!strcmp(a.t[0].name, "p") && *(float *)a.t[0].data == 2.0f);
    cr_assert(!strcmp(a.t[1].name, "q") && !strcmp(a.t[2].name, "r"));
    rt_list_free(&a);
}

/* ---- round trips --------------------------------------------------------------------- */

/* One tensor of every dtype, a rank-0 scalar, a zero-size dim and an awkward name. */
static void build_every_dtype(rt_tensor_list *l)
{
    rt_list_init(l);
    unsigned char raw[64];
    for (int i = 0; i < 64; i++)
        raw[i] = (unsigned char)(i * 37 + 11);
    raw[0] = raw[1] = raw[2] = 1; /* BOOL values must be 0 or 1 */
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s302[3] = {3, 0, 2};
    for (int dt = RT_DTYPE_COUNT - 1; dt >= 0; dt--) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", rt_dtype_name((rt_dtype)dt));
        int small = rt_dtype_size((rt_dtype)dt) == 1;
        cr_assert(rt_list_add(l, name, (rt_dtype)dt, small ? 1 : 2, small ? s3 : s23, raw));
    }
    double pi = 3.141592653589793;
    cr_assert(rt_list_add(l, "scalar", RT_F64, 0, NULL, &pi));
    cr_assert(rt_list_add(l, "empty", RT_F32, 3, s302, NULL));
    cr_assert(rt_list_add(l, "quote\"\\ é", RT_I8, 1, s3, raw));
}

static void assert_same_lists(const rt_tensor_list *a, const rt_tensor_list *b)
{
    cr_assert_eq(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const rt_tensor *x = &a->t[i], *y = &b->t[i];
        cr_assert_str_eq(x->name, y->name, "tensor %d", i);
        cr_assert_eq(x->dtype, y->dtype, "%s", x->name);
        cr_assert_eq(x->rank, y->rank, "%s", x->name);
        for (int d = 0; d < x->rank; d++)
            cr_assert_eq(x->shape[d], y->shape[d], "%s", x->name);
        cr_assert_eq(rt_nbytes(x), rt_nbytes(y));
        if (rt_nbytes(x))
            cr_assert_eq(memcmp(x->data, y->data, rt_nbytes(x)), 0, "%s", x->name);
    }
}

static int count_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

Test(safetensors, round_trips_every_dtype_rank_zero_and_zero_size_in_list_order)
{
    rt_tensor_list l, back;
    build_every_dtype(&l);
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "all.safetensors"));
    bc_err e = {{0}};
    cr_assert_eq(rt_st_save(path, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(count_dir_entries(dir), 1, "the temporary file was left behind");
    rt_list_init(&back);
    cr_assert_eq(rt_st_load(path, &back, &e), 0, "%s", e.msg);
    assert_same_lists(&l, &back);
    cr_assert_eq(rt_list_find(&back, "scalar")->rank, 0);
    cr_assert_eq(rt_numel(rt_list_find(&back, "scalar")), 1);
    cr_assert_eq(rt_numel(rt_list_find(&back, "empty")), 0);
    rt_list_free(&back);
    rt_list_free(&l);
    unlink(path);
    rmdir(dir);
}

Test(safetensors, writes_padded_header_with_empty_shape_for_scalars)
{
    rt_tensor_list l;
    build_every_dtype(&l);
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "h.safetensors"));
    bc_err e;
    cr_assert_eq(rt_st_save(path, &l, &e), 0, "%s", e.msg);
    size_t len;
    char *buf = tu_read_file(path, &len);
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    cr_assert_eq(hlen % 8, 0);
    cr_assert(hlen <= len - 8);
    cr_assert_eq(buf[8], '{');
    char *hdr = strndup(buf + 8, hlen);
    cr_assert(strstr(hdr, "\"scalar\":{\"dtype\":\"F64\",\"shape\":[],"), "%s", hdr);
    cr_assert(strstr(hdr, "\"__metadata__\":{\"format\":\"pt\"}"), "%s", hdr);
    /* Tensors are packed back to back: the data section is exactly their bytes. */
    size_t total = 0;
    for (int i = 0; i < l.n; i++)
        total += rt_nbytes(&l.t[i]);
    cr_assert_eq(len - 8 - hlen, total);
    free(hdr);
    free(buf);
    rt_list_free(&l);
    unlink(path);
    rmdir(dir);
}

Test(safetensors, saves_and_loads_an_empty_list)
{
    rt_tensor_list l, back;
    rt_list_init(&l);
    sentinel_list(&back);
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "none.safetensors"));
    bc_err e;
    cr_assert_eq(rt_st_save(path, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(rt_st_load(path, &back, &e), 0, "%s", e.msg);
    assert_sentinel_intact(&back);
    rt_list_free(&back);
    unlink(path);
    rmdir(dir);
}

Test(safetensors, load_appends_and_replaces_existing_names)
{
    size_t len;
    unsigned char *img =
        image("{\"keep\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
              "\"new\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[2,3]}}",
              3, &len);
    rt_tensor_list l;
    bc_err e;
    sentinel_list(&l);
    cr_assert_eq(rt_st_parse(img, len, MEM, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l.n, 2);
    cr_assert(!strcmp(l.t[0].name, "keep") && l.t[0].dtype == RT_U8);
    cr_assert(!strcmp(l.t[1].name, "new") && ((uint8_t *)l.t[1].data)[0] == 2);
    rt_list_free(&l);
    free(img);
}

Test(safetensors, rejects_duplicate_names_on_save)
{
    rt_tensor_list l;
    rt_list_init(&l);
    int64_t s[1] = {1};
    rt_list_add(&l, "a", RT_F32, 1, s, NULL);
    rt_list_add(&l, "b", RT_F32, 1, s, NULL);
    free(l.t[1].name);
    l.t[1].name = strdup("a"); /* rt_list_add would have replaced it */
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "dup.safetensors"));
    bc_err e;
    assert_error(rt_st_save(path, &l, &e), &e, path, "'a'", "more than once");
    cr_assert_eq(count_dir_entries(dir), 0);
    rt_list_free(&l);
    rmdir(dir);
}

Test(safetensors, save_reports_unwritable_path)
{
    rt_tensor_list l;
    rt_list_init(&l);
    bc_err e;
    const char *path = "/nonexistent-dir/x.safetensors";
    assert_error(rt_st_save(path, &l, &e), &e, path, "cannot", NULL);
}

Test(safetensors, load_reports_missing_file)
{
    rt_tensor_list l;
    bc_err e;
    sentinel_list(&l);
    const char *path = "/nonexistent-dir/x.safetensors";
    assert_error(rt_st_load(path, &l, &e), &e, path, "cannot open", NULL);
    assert_sentinel_intact(&l);
    rt_list_free(&l);
}

/* The fixture comes from tests/fixtures/make_py_safetensors.py (Python's layout: data
 * sorted by dtype size, then name; __metadata__ first). Loaded order is file order. */
Test(safetensors, reads_file_written_by_python)
{
    rt_tensor_list l;
    bc_err e;
    rt_list_init(&l);
    const char *path = tu_src("tests/fixtures/py_written.safetensors");
    cr_assert_eq(rt_st_load(path, &l, &e), 0, "%s", e.msg);
    const char *order[] = {"f64", "i64", "empty", "f32",  "i32", "bf16",
                           "f16", "i16", "i8",    "mask", "u8"};
    cr_assert_eq(l.n, 11);
    for (int i = 0; i < 11; i++)
        cr_assert_str_eq(l.t[i].name, order[i]);

    const rt_tensor *t = rt_list_cfind(&l, "f64");
    cr_assert(t->dtype == RT_F64 && t->rank == 0);
    cr_assert_eq(*(double *)t->data, 3.141592653589793);
    t = rt_list_cfind(&l, "f32");
    cr_assert(t->dtype == RT_F32 && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    float f32[6] = {1.0f, -2.5f, 0.1f, 3.0e38f, -0.0f, 1.0e-40f};
    cr_assert_eq(memcmp(t->data, f32, sizeof f32), 0);
    t = rt_list_cfind(&l, "empty");
    cr_assert(t->rank == 2 && t->shape[0] == 0 && t->shape[1] == 4 && rt_nbytes(t) == 0);

    float out[4];
    cr_assert_eq(rt_to_f32(rt_list_cfind(&l, "f16"), out, &e), 0);
    cr_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == 65504.0f &&
              out[3] == ldexpf(1, -24));
    cr_assert_eq(rt_to_f32(rt_list_cfind(&l, "bf16"), out, &e), 0);
    cr_assert(out[0] == 1.0f && out[1] == -2.5f && out[2] == INFINITY);

    int64_t iv[4];
    cr_assert_eq(rt_to_i64(rt_list_cfind(&l, "i64"), iv, &e), 0);
    cr_assert(iv[0] == -1 && iv[1] == (int64_t)1 << 40 && iv[2] == 0 && iv[3] == INT64_MAX);
    cr_assert_eq(rt_to_i64(rt_list_cfind(&l, "i32"), iv, &e), 0);
    cr_assert(iv[0] == -7 && iv[1] == 0 && iv[2] == INT32_MAX);
    cr_assert_eq(rt_to_i64(rt_list_cfind(&l, "i16"), iv, &e), 0);
    cr_assert(iv[0] == -32768 && iv[1] == 32767);
    cr_assert_eq(rt_to_i64(rt_list_cfind(&l, "i8"), iv, &e), 0);
    cr_assert(iv[0] == -128 && iv[1] == 127);
    cr_assert_eq(rt_to_i64(rt_list_cfind(&l, "u8"), iv, &e), 0);
    cr_assert(iv[0] == 0 && iv[1] == 128 && iv[2] == 255);
    cr_assert_eq(rt_to_i64(rt_list_cfind(&l, "mask"), iv, &e), 0);
    cr_assert(iv[0] == 1 && iv[1] == 0 && iv[2] == 1);
    rt_list_free(&l);
}

/* The first python3 that has numpy (the one on PATH may lack it), or NULL. */
static const char *numpy_python(void)
{
    static const char *cands[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy'", cands[i]);
        if (tu_run(cmd, NULL) == 0)
            return cands[i];
    }
    return NULL;
}

/* Python reads what we write (json + numpy, the same convention as the fixture). */
Test(safetensors, file_we_write_reads_back_in_python)
{
    char *out = NULL;
    const char *py = numpy_python();
    if (!py)
        cr_skip_test("no python3 with numpy");
    rt_tensor_list l;
    rt_list_init(&l);
    int64_t s[2] = {2, 2};
    float f[4] = {1.0f, -2.5f, 0.5f, 65504.0f};
    int32_t ids[3] = {101, -100, 2};
    uint16_t h[4] = {rt_f32_to_bf16(1.0f), rt_f32_to_bf16(-2.5f), 0, 0x7f80};
    rt_list_add(&l, "w", RT_F32, 2, s, f);
    rt_list_add(&l, "ids", RT_I32, 1, (int64_t[]){3}, ids);
    rt_list_add(&l, "loss", RT_F32, 0, NULL, f);
    rt_list_add(&l, "b", RT_BF16, 2, s, h);
    const char *dir = tu_tmpdir();
    char path[1024], cmd[2048];
    snprintf(path, sizeof path, "%s", tu_path(dir, "py.safetensors"));
    bc_err e;
    cr_assert_eq(rt_st_save(path, &l, &e), 0, "%s", e.msg);
    snprintf(cmd, sizeof cmd, "%s %s --dump %s", py,
             tu_src("tests/fixtures/make_py_safetensors.py"), path);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out ? out : "");
    cr_assert_str_eq(out, "w F32 [2, 2] 1.0 -2.5 0.5 65504.0\n"
                          "ids I32 [3] 101 -100 2\n"
                          "loss F32 [] 1.0\n"
                          "b BF16 [2, 2] 16256 49184 0 32640\n");
    free(out);
    rt_list_free(&l);
    unlink(path);
    rmdir(dir);
}

/* ---- corrupt files: the file as a whole -----------------------------------------------
 */

#define ENTRY(dt, shape, offs)                                                             \
    "{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" offs "}"

Test(safetensors, rejects_file_shorter_than_8_bytes)
{
    for (size_t n = 0; n < 8; n++) {
        unsigned char *img = calloc(1, 8);
        expect_rejected(img, n, "too short", NULL);
    }
}

Test(safetensors, rejects_header_length_past_end_of_file)
{
    size_t len;
    unsigned char *img = image_hlen(3, "{}", 0, &len);
    expect_rejected(img, len, "header length 3", "past the end");
    img = image_hlen(UINT64_MAX, "{}", 0, &len);
    expect_rejected(img, len, "past the end", NULL);
    img = image_hlen(UINT64_MAX - 6, "{}", 0, &len); /* 8 + n would wrap to 1 */
    expect_rejected(img, len, "past the end", NULL);
    img = image_hlen((uint64_t)1 << 63, "{}", 0, &len);
    expect_rejected(img, len, "past the end", NULL);
}

Test(safetensors, accepts_header_length_reaching_exactly_to_end)
{
    size_t len;
    unsigned char *img = image("{}      ", 0, &len); /* space padding is allowed */
    rt_tensor_list l;
    parse_ok(img, len, &l);
    cr_assert_eq(l.n, 0);
    free(img);
}

Test(safetensors, rejects_header_that_is_not_json)
{
    expect_header_rejected("{\"a\":", 0, "not valid JSON", NULL);
    expect_header_rejected("", 0, "not valid JSON", NULL);
    expect_header_rejected("{} x", 0, "not valid JSON", NULL);
    expect_header_rejected("{\"\xff\":1}", 0, "not valid JSON", NULL);
}

Test(safetensors, rejects_header_that_is_not_an_object)
{
    expect_header_rejected("[]", 0, "not a JSON object", NULL);
    expect_header_rejected("\"x\"", 0, "not a JSON object", NULL);
    expect_header_rejected("12", 0, "not a JSON object", NULL);
}

Test(safetensors, rejects_duplicate_keys)
{
    expect_header_rejected("{\"a\":" ENTRY("\"U8\"", "[1]", "[0,1]") ",\"a\":" ENTRY(
                               "\"U8\"", "[1]", "[1,2]") "}",
                           2, "duplicate", NULL);
}

Test(safetensors, accepts_empty_data_section_with_no_tensors)
{
    size_t len;
    unsigned char *img =
        image("{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"}}", 0, &len);
    rt_tensor_list l;
    parse_ok(img, len, &l);
    cr_assert_eq(l.n, 0);
    free(img);
}

Test(safetensors, rejects_metadata_that_is_not_an_object_of_strings)
{
    expect_header_rejected("{\"__metadata__\":[]}", 0, "__metadata__", NULL);
    expect_header_rejected("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__",
                           "'format'");
}

Test(safetensors, skips_metadata_between_tensors)
{
    size_t len;
    unsigned char *img =
        image("{\"a\":" ENTRY("\"U8\"", "[1]", "[0,1]") ",\"__metadata__\":{},\"b\":" ENTRY(
                  "\"U8\"", "[1]", "[1,2]") "}",
              2, &len);
    rt_tensor_list l;
    parse_ok(img, len, &l);
    cr_assert(l.n == 2 && !strcmp(l.t[0].name, "a") && !strcmp(l.t[1].name, "b"));
    rt_list_free(&l);
    free(img);
}

/* ---- corrupt files: one entry -------------------------------------------------------- */

Test(safetensors, rejects_entry_that_is_not_an_object)
{
    expect_header_rejected("{\"bert.x\":[1,2]}", 0, "tensor 'bert.x'", "not a JSON object");
}

Test(safetensors, rejects_missing_fields)
{
    expect_header_rejected("{\"bert.x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                           "tensor 'bert.x'", "missing 'dtype'");
    expect_header_rejected("{\"bert.x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
                           "tensor 'bert.x'", "missing 'shape'");
    expect_header_rejected("{\"bert.x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
                           "tensor 'bert.x'", "missing 'data_offsets'");
}

Test(safetensors, rejects_wrongly_typed_fields)
{
    expect_header_rejected("{\"bert.x\":" ENTRY("32", "[1]", "[0,4]") "}", 4,
                           "tensor 'bert.x'", "'dtype' must be a string");
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "\"1\"", "[0,4]") "}", 4,
                           "tensor 'bert.x'", "'shape' must be an array");
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "[1]", "{}") "}", 4,
                           "tensor 'bert.x'", "'data_offsets'");
}

Test(safetensors, rejects_unknown_dtype)
{
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F8_E4M3\"", "[1]", "[0,1]") "}", 1,
                           "tensor 'bert.x'", "unknown dtype 'F8_E4M3'");
    expect_header_rejected("{\"bert.x\":" ENTRY("\"f32\"", "[1]", "[0,4]") "}", 4,
                           "tensor 'bert.x'", "unknown dtype");
}

Test(safetensors, rejects_negative_or_non_integer_dims)
{
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "[-1]", "[0,4]") "}", 4,
                           "tensor 'bert.x'", "shape dim 0");
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "[1,2.0]", "[0,8]") "}", 8,
                           "tensor 'bert.x'", "shape dim 1");
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "[\"2\"]", "[0,8]") "}", 8,
                           "tensor 'bert.x'", "shape dim 0");
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "[null]", "[0,8]") "}", 8,
                           "tensor 'bert.x'", "shape dim 0");
}

Test(safetensors, rejects_huge_dims_whose_byte_size_overflows)
{
    expect_header_rejected(
        "{\"bert.x\":" ENTRY("\"F32\"", "[4294967296,4294967296,16]", "[0,0]") "}", 0,
        "tensor 'bert.x'", "too large");
    expect_header_rejected(
        "{\"bert.x\":" ENTRY("\"I64\"", "[9223372036854775807,2]", "[0,0]") "}", 0,
        "tensor 'bert.x'", "too large");
    /* Products that fit but exceed the file must fail on the length, not allocate. */
    expect_header_rejected(
        "{\"bert.x\":" ENTRY("\"F32\"", "[1000000000,1000]", "[0,4]") "}", 4,
        "tensor 'bert.x'", "do not match");
    /* Beyond int64: jansson refuses the number itself. */
    expect_header_rejected(
        "{\"bert.x\":" ENTRY("\"F32\"", "[18446744073709551617]", "[0,4]") "}", 4,
        "not valid JSON", NULL);
}

Test(safetensors, rejects_rank_above_max)
{
    expect_header_rejected(
        "{\"bert.x\":" ENTRY("\"U8\"", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1,
        "tensor 'bert.x'", "9 dims");
}

Test(safetensors, accepts_rank_max_and_rank_zero)
{
    size_t len;
    unsigned char *img =
        image("{\"r8\":" ENTRY("\"U8\"", "[1,1,1,1,1,1,2,1]",
                               "[0,2]") ",\"r0\":" ENTRY("\"I16\"", "[]", "[2,4]") "}",
              4, &len);
    rt_tensor_list l;
    parse_ok(img, len, &l);
    cr_assert(l.n == 2 && l.t[0].rank == 8 && l.t[1].rank == 0);
    cr_assert_eq(*(int16_t *)l.t[1].data, 2 | 3 << 8);
    rt_list_free(&l);
    free(img);
}

Test(safetensors, rejects_offsets_that_are_not_two_non_negative_integers)
{
    const char *bad[] = {"[0]",    "[0,4,4]", "[]",        "[-1,3]",
                         "[0,-4]", "[0.0,4]", "[0,\"4\"]", "[0,null]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char hdr[256];
        snprintf(hdr, sizeof hdr,
                 "{\"bert.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":%s}}",
                 bad[i]);
        expect_header_rejected(hdr, 4, "tensor 'bert.x'", "'data_offsets'");
    }
}

Test(safetensors, rejects_reversed_offsets)
{
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "[1]", "[8,4]") "}", 8,
                           "tensor 'bert.x'", "reversed");
}

Test(safetensors, rejects_offsets_past_end)
{
    expect_header_rejected("{\"bert.x\":" ENTRY("\"F32\"", "[2]", "[4,12]") "}", 8,
                           "tensor 'bert.x'", "past the end of the data section (8 bytes)");
    expect_header_rejected(
        "{\"bert.x\":" ENTRY("\"F32\"", "[1]",
                             "[9223372036854775803,9223372036854775807]") "}",
        8, "tensor 'bert.x'", "past the end");
}

Test(safetensors, rejects_length_that_differs_from_dtype_and_shape)
{
    const char *hdr = "{\"bert.x\":" ENTRY("\"F32\"", "[2,2]", "[0,12]") "}";
    expect_header_rejected(hdr, 12, "tensor 'bert.x': data_offsets [0, 12] do not match",
                           NULL);
    size_t len;
    unsigned char *img = image(hdr, 12, &len);
    rt_tensor_list l;
    bc_err e;
    rt_list_init(&l);
    cr_assert_eq(rt_st_parse(img, len, MEM, &l, &e), -1);
    cr_assert_str_eq(e.msg, "mem.safetensors: tensor 'bert.x': data_offsets [0, 12] do not "
                            "match dtype F32 and shape [2, 2] (16 bytes)");
    free(img);
}

/* ---- corrupt files: the tiling of the data section ---------------------------------- */

Test(safetensors, rejects_overlapping_offsets)
{
    expect_header_rejected("{\"a\":" ENTRY("\"F32\"", "[3]", "[0,12]") ",\"b\":" ENTRY(
                               "\"F32\"", "[2]", "[8,16]") "}",
                           16, "tensor 'b'", "overlap tensor 'a'");
    /* Same range twice. */
    expect_header_rejected("{\"a\":" ENTRY("\"F32\"", "[1]", "[0,4]") ",\"b\":" ENTRY(
                               "\"F32\"", "[1]", "[0,4]") "}",
                           4, "tensor 'b'", "overlap tensor 'a'");
    /* A zero-size tensor inside another one. */
    expect_header_rejected("{\"a\":" ENTRY("\"F32\"", "[2]", "[0,8]") ",\"z\":" ENTRY(
                               "\"F32\"", "[0]", "[4,4]") "}",
                           8, "tensor 'z'", "overlap tensor 'a'");
}

Test(safetensors, rejects_holes_between_tensors)
{
    expect_header_rejected("{\"a\":" ENTRY("\"F32\"", "[1]", "[0,4]") ",\"b\":" ENTRY(
                               "\"F32\"", "[1]", "[8,12]") "}",
                           12, "tensor 'b'", "hole");
    expect_header_rejected("{\"a\":" ENTRY("\"F32\"", "[1]", "[4,8]") "}", 8, "tensor 'a'",
                           "hole");
}

Test(safetensors, rejects_trailing_bytes_after_last_tensor)
{
    expect_header_rejected("{\"a\":" ENTRY("\"F32\"", "[1]", "[0,4]") "}", 5,
                           "cover 4 of the 5 bytes", NULL);
    expect_header_rejected("{}", 3, "cover 0 of the 3 bytes", NULL);
}

Test(safetensors, accepts_zero_size_tensors_at_boundaries_in_any_header_order)
{
    size_t len;
    unsigned char *img =
        image("{\"b\":" ENTRY("\"U8\"", "[2]", "[2,4]") ",\"z\":" ENTRY(
                  "\"F32\"", "[0,3]",
                  "[4,4]") ",\"a\":" ENTRY("\"U8\"", "[2]",
                                           "[0,2]") ",\"y\":" ENTRY("\"F32\"", "[0]",
                                                                    "[0,0]") "}",
              4, &len);
    rt_tensor_list l;
    parse_ok(img, len, &l);
    const char *order = "yabz";
    cr_assert_eq(l.n, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(l.t[i].name[0], order[i]);
    cr_assert_eq(((uint8_t *)rt_list_find(&l, "b")->data)[1], 3);
    cr_assert_null(rt_list_find(&l, "z")->data);
    rt_list_free(&l);
    free(img);
}

/* ---- no crash on arbitrary damage ------------------------------------------------------
 */

static void parse_anything(const unsigned char *img, size_t len)
{
    rt_tensor_list l;
    bc_err e;
    rt_list_init(&l);
    if (rt_st_parse(img, len, MEM, &l, &e) < 0) {
        cr_assert_eq(l.n, 0);
        cr_assert(strncmp(e.msg, MEM ": ", strlen(MEM) + 2) == 0, "%s", e.msg);
    }
    rt_list_free(&l);
}

Test(safetensors, survives_every_truncation_and_single_byte_corruption)
{
    rt_tensor_list l;
    build_every_dtype(&l);
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "f.safetensors"));
    bc_err e;
    cr_assert_eq(rt_st_save(path, &l, &e), 0, "%s", e.msg);
    size_t len;
    unsigned char *img = (unsigned char *)tu_read_file(path, &len);
    /* Every strict prefix is invalid. Copies are exact-size so ASan sees over-reads. */
    for (size_t n = 0; n < len; n++) {
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, img, n);
        rt_tensor_list tmp;
        rt_list_init(&tmp);
        cr_assert_eq(rt_st_parse(cut, n, MEM, &tmp, &e), -1, "prefix %zu accepted", n);
        free(cut);
    }
    const unsigned char subst[] = {0x00, 0xff, '"', '9', '-', '[', '}', ' '};
    unsigned char *bad = malloc(len);
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(bad, img, len);
            bad[i] = subst[k];
            parse_anything(bad, len);
        }
    }
    free(bad);
    free(img);
    rt_list_free(&l);
    unlink(path);
    rmdir(dir);
}
