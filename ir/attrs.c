/* attrs.c: the attribute table — one row per attribute that an op's mask can name, with
 * its text name, how it is kept in ir_attrs and how it is written — and what the
 * printer, the parser, CSE and kernel signatures do with it, kind by kind. */
#include "ir.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

const ir_attr_info ir_attr_table[IR_ATTR_COUNT] = {
    {IR_A_TA, "ta", IR_ATTR_INT, offsetof(ir_attrs, ta)},
    {IR_A_TB, "tb", IR_ATTR_INT, offsetof(ir_attrs, tb)},
    {IR_A_AXIS, "axis", IR_ATTR_INT, offsetof(ir_attrs, axis)},
    {IR_A_INDEX, "index", IR_ATTR_I64, offsetof(ir_attrs, index)},
    {IR_A_PERM, "perm", IR_ATTR_PERM, offsetof(ir_attrs, perm)},
    {IR_A_EPS, "eps", IR_ATTR_REAL, offsetof(ir_attrs, eps)},
    {IR_A_SCALE, "scale", IR_ATTR_REAL, offsetof(ir_attrs, scale)},
    {IR_A_P, "p", IR_ATTR_REAL, offsetof(ir_attrs, p)},
};

const ir_attr_info *ir_attr_find(const char *name, size_t len)
{
    for (int k = 0; k < IR_ATTR_COUNT; k++)
        if (strlen(ir_attr_table[k].name) == len &&
            !memcmp(ir_attr_table[k].name, name, len))
            return &ir_attr_table[k];
    return NULL;
}

static unsigned mask_of(ir_opcode op)
{
    return (unsigned)op < IR_OP_COUNT ? ir_ops[op].attrs : 0;
}

static const void *field(const ir_attr_info *ai, const ir_attrs *a)
{
    return (const char *)a + ai->offset;
}

static int attr_equal(const ir_attr_info *ai, const ir_attrs *a, const ir_attrs *b)
{
    const void *x = field(ai, a), *y = field(ai, b);
    switch (ai->kind) {
    case IR_ATTR_INT:
        return *(const int *)x == *(const int *)y;
    case IR_ATTR_I64:
        return *(const int64_t *)x == *(const int64_t *)y;
    case IR_ATTR_REAL:
        return *(const double *)x == *(const double *)y;
    case IR_ATTR_PERM:
        return !memcmp(x, y, sizeof a->perm);
    }
    return 0;
}

int ir_attrs_equal(ir_opcode op, const ir_attrs *a, const ir_attrs *b)
{
    unsigned m = mask_of(op);
    for (int k = 0; k < IR_ATTR_COUNT; k++)
        if ((m & ir_attr_table[k].bit) && !attr_equal(&ir_attr_table[k], a, b))
            return 0;
    return 1;
}

/* snprintf into buf[0..len) after the n bytes already there, counting what does not
 * fit, so that the caller gets snprintf's result for the whole text. */
typedef struct out {
    char *buf;
    size_t len, n;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = o->n < o->len ? vsnprintf(o->buf + o->n, o->len - o->n, fmt, ap)
                          : vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->n += (size_t)k;
}

static void put_scalar(out *o, const ir_attr_info *ai, const ir_attrs *a)
{
    const void *x = field(ai, a);
    switch (ai->kind) {
    case IR_ATTR_INT:
        put(o, "%d", *(const int *)x);
        break;
    case IR_ATTR_I64:
        put(o, "%lld", (long long)*(const int64_t *)x);
        break;
    case IR_ATTR_REAL:
        put(o, "%.17g", *(const double *)x);
        break;
    case IR_ATTR_PERM:
        break;
    }
}

static out out_start(char *buf, size_t len)
{
    if (len)
        buf[0] = 0;
    return (out){buf, len, 0};
}

/* How many perm entries to write: rank, or none for a rank no type can have. */
static int perm_len(int rank)
{
    return rank >= 0 && rank <= IR_MAX_RANK ? rank : 0;
}

size_t ir_attrs_print(ir_opcode op, const ir_attrs *a, int rank, char *buf, size_t len)
{
    out o = out_start(buf, len);
    unsigned m = mask_of(op);
    const char *sep = " {";
    for (int k = 0; k < IR_ATTR_COUNT; k++) {
        const ir_attr_info *ai = &ir_attr_table[k];
        if (!(m & ai->bit))
            continue;
        put(&o, "%s%s=", sep, ai->name);
        sep = ", ";
        if (ai->kind != IR_ATTR_PERM) {
            put_scalar(&o, ai, a);
            continue;
        }
        const int *perm = field(ai, a);
        put(&o, "[");
        for (int i = 0; i < perm_len(rank); i++)
            put(&o, "%s%d", i ? ", " : "", perm[i]);
        put(&o, "]");
    }
    if (o.n)
        put(&o, "}");
    return o.n;
}

size_t ir_attrs_signature(ir_opcode op, const ir_attrs *a, int rank, char *buf, size_t len)
{
    out o = out_start(buf, len);
    unsigned m = mask_of(op);
    for (int k = 0; k < IR_ATTR_COUNT; k++) {
        const ir_attr_info *ai = &ir_attr_table[k];
        if (!(m & ai->bit))
            continue;
        if (ai->kind != IR_ATTR_PERM) {
            put(&o, "%s=", ai->name);
            put_scalar(&o, ai, a);
            put(&o, ",");
            continue;
        }
        const int *perm = field(ai, a);
        for (int i = 0; i < perm_len(rank); i++)
            put(&o, "p%d,", perm[i]);
    }
    return o.n;
}
