/* type.c: symbolic dimensions (monomials over B and S) and tensor types. */
#include "ir.h"

#include <stdio.h>
#include <string.h>

const ir_dim IR_DIM_B = {1, 1, 0};
const ir_dim IR_DIM_S = {1, 0, 1};

ir_dim ir_dconst(int64_t c)
{
    ir_dim d = {c, 0, 0};
    return d;
}

ir_dim ir_dim_mul(ir_dim a, ir_dim b)
{
    /* An overflowing product becomes c = -1, which every shape rule rejects. */
    ir_dim d = {-1, 0, 0};
    int64_t c;
    if (a.c < 0 || b.c < 0 || __builtin_mul_overflow(a.c, b.c, &c) || a.eb + b.eb > 255 ||
        a.es + b.es > 255)
        return d;
    d.c = c;
    d.eb = (uint8_t)(a.eb + b.eb);
    d.es = (uint8_t)(a.es + b.es);
    return d;
}

int ir_dim_eq(ir_dim a, ir_dim b)
{
    return a.c == b.c && a.eb == b.eb && a.es == b.es;
}

int ir_dim_is_const(ir_dim d)
{
    return d.eb == 0 && d.es == 0;
}

int64_t ir_dim_eval(ir_dim d, int64_t B, int64_t S)
{
    int64_t v = d.c;
    for (int i = 0; i < d.eb; i++)
        v *= B;
    for (int i = 0; i < d.es; i++)
        v *= S;
    return v;
}

char *ir_dim_str(ir_dim d, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    if (d.c != 1 || ir_dim_is_const(d))
        n += snprintf(buf + n, len - n, "%lld", (long long)d.c);
    for (int i = 0; i < d.eb + d.es && n < len; i++)
        n += snprintf(buf + n, len - n, "%s%c", n ? "*" : "", i < d.eb ? 'B' : 'S');
    return buf;
}

ir_type ir_type_make(ir_dtype dt, int rank, const ir_dim *dims)
{
    ir_type t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dim[i] = dims[i];
    return t;
}

int ir_type_eq(const ir_type *a, const ir_type *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (!ir_dim_eq(a->dim[i], b->dim[i]))
            return 0;
    return 1;
}

ir_dim ir_type_numel(const ir_type *t)
{
    ir_dim n = ir_dconst(1);
    for (int i = 0; i < t->rank; i++)
        n = ir_dim_mul(n, t->dim[i]);
    return n;
}

const char *ir_dtype_name(ir_dtype dt)
{
    return dt == IR_F32 ? "f32" : "i64";
}

char *ir_type_str(const ir_type *t, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "%s[", ir_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && n < len; i++) {
        char d[64];
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "",
                              ir_dim_str(t->dim[i], d, sizeof d));
    }
    if (n < len)
        snprintf(buf + n, len - n, "]");
    return buf;
}
