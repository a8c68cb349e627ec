/* parse.c: reads the text form written by ir/print.c (the grammar is described there).
 * A hand-written lexer and recursive descent; every node goes through ir_add with its
 * declared type, so the builder's shape rules check the text, and the result is run
 * through ir_verify. Errors are "FILENAME:LINE: message". */
#include "ir.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many factors of B and S in one dim, so that ir_dim_str's text of any
 * dim fits the 64-byte buffer ir_type_str gives it (19 digits + 2 per factor). */
#define MAX_DIM_FACTORS 16

typedef enum { T_EOF, T_IDENT, T_STRING, T_VALUE, T_NUMBER, T_PUNCT } tok_kind;

typedef struct tok {
    tok_kind kind;
    const char *s; /* the token's text in the source */
    size_t len;
    int line;
    int value; /* T_VALUE: N of %N */
} tok;

typedef struct parser {
    const char *p; /* lexer position */
    const char *file;
    int line; /* lexer line */
    tok t;    /* the current token */
    int prev_line;
    bc_err *e;
    ir_graph *g;
    int *lines; /* source line of each node, for verifier messages */
    int nlines, linecap;
} parser;

static int perr(parser *P, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int perr(parser *P, int line, const char *fmt, ...)
{
    char msg[sizeof P->e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bc_errf(P->e, "%s:%d: %s", P->file, line, msg);
}

/* "expected ..." errors point at the last token consumed, which is on the line of the
 * statement being read even when what follows is missing. */
static int expected(parser *P, const char *what)
{
    return perr(P, P->prev_line, "expected %s", what);
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* ---- lexer ---- */

static int lex(parser *P)
{
    const char *p = P->p;
    for (;;) {
        if (*p == '\n') {
            P->line++;
            p++;
        } else if (*p == ' ' || *p == '\t' || *p == '\r') {
            p++;
        } else if (*p == '#') {
            while (*p && *p != '\n')
                p++;
        } else {
            break;
        }
    }
    tok *t = &P->t;
    t->s = p;
    t->line = P->line;
    t->value = 0;
    unsigned char c = (unsigned char)*p;
    if (!c) {
        t->kind = T_EOF;
    } else if (is_alpha(c)) {
        t->kind = T_IDENT;
        while (is_alpha(*p) || is_digit(*p))
            p++;
    } else if (c == '"') {
        t->kind = T_STRING;
        for (p++; *p != '"'; p++) {
            if (!*p || *p == '\n')
                return perr(P, t->line, "unterminated string");
            if (*p == '\\' && p[1] && p[1] != '\n')
                p++;
        }
        p++;
    } else if (c == '%') {
        t->kind = T_VALUE;
        p++;
        if (!is_digit(*p))
            return perr(P, t->line, "expected a value number after '%%'");
        long long v = 0;
        for (; is_digit(*p); p++) {
            v = v * 10 + (*p - '0');
            if (v > INT_MAX)
                return perr(P, t->line, "value number too large");
        }
        t->value = (int)v;
    } else if (is_digit(c) || (c == '-' && is_digit(p[1]))) {
        t->kind = T_NUMBER;
        p++;
        while (is_digit(*p))
            p++;
        if (*p == '.')
            for (p++; is_digit(*p);)
                p++;
        if ((*p == 'e' || *p == 'E') &&
            (is_digit(p[1]) || ((p[1] == '+' || p[1] == '-') && is_digit(p[2])))) {
            p += 2;
            while (is_digit(*p))
                p++;
        }
    } else if (strchr("=:,[]{}*", c)) {
        t->kind = T_PUNCT;
        p++;
    } else if (c >= 0x20 && c < 0x7f) {
        return perr(P, t->line, "unexpected character '%c'", c);
    } else {
        return perr(P, t->line, "unexpected byte 0x%02x", c);
    }
    t->len = (size_t)(p - t->s);
    P->p = p;
    return 0;
}

/* Consumes the current token. */
static int next(parser *P)
{
    P->prev_line = P->t.line;
    return lex(P);
}

static int is_punct(const parser *P, char c)
{
    return P->t.kind == T_PUNCT && P->t.s[0] == c;
}

static int is_ident(const parser *P, const char *word)
{
    return P->t.kind == T_IDENT && P->t.len == strlen(word) &&
           !memcmp(P->t.s, word, P->t.len);
}

/* Consumes punctuation c, or fails with "expected <what>". */
static int expect(parser *P, char c, const char *what)
{
    if (!is_punct(P, c))
        return expected(P, what);
    return next(P);
}

/* The current token's text for messages, cut short. */
static int tlen(const parser *P)
{
    return P->t.len > 64 ? 64 : (int)P->t.len;
}

static int hexval(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the current T_STRING into a malloc'd string and consumes it. */
static int take_string(parser *P, char **out)
{
    const tok *t = &P->t;
    char *s = malloc(t->len);
    if (!s)
        return perr(P, t->line, "out of memory");
    size_t n = 0;
    for (size_t i = 1; i + 1 < t->len; i++) {
        char c = t->s[i];
        if (c == '\\') {
            char d = t->s[++i];
            if (d == '"' || d == '\\') {
                s[n++] = d;
            } else if (d == 'x' && i + 2 < t->len && hexval(t->s[i + 1]) >= 0 &&
                       hexval(t->s[i + 2]) >= 0) {
                int v = hexval(t->s[i + 1]) * 16 + hexval(t->s[i + 2]);
                if (!v) {
                    free(s);
                    return perr(P, t->line, "\\x00 is not allowed in a string");
                }
                s[n++] = (char)v;
                i += 2;
            } else {
                free(s);
                if (d == 'x')
                    return perr(P, t->line, "expected two hex digits after \\x");
                if ((unsigned char)d >= 0x20 && (unsigned char)d < 0x7f)
                    return perr(P, t->line, "unknown escape '\\%c' in a string", d);
                return perr(P, t->line, "unknown escape in a string");
            }
        } else {
            s[n++] = c;
        }
    }
    s[n] = 0;
    if (next(P)) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static int tok_is_int(const parser *P)
{
    if (P->t.kind != T_NUMBER)
        return 0;
    for (size_t i = 0; i < P->t.len; i++)
        if (P->t.s[i] == '.' || P->t.s[i] == 'e' || P->t.s[i] == 'E')
            return 0;
    return 1;
}

/* Reads the current token as an integer in [lo, hi] and consumes it. */
static int take_int(parser *P, long long lo, long long hi, const char *what, long long *out)
{
    if (!tok_is_int(P))
        return perr(P, P->t.line, "expected an integer for %s", what);
    char buf[32];
    if (P->t.len >= sizeof buf)
        return perr(P, P->t.line, "%s out of range", what);
    memcpy(buf, P->t.s, P->t.len);
    buf[P->t.len] = 0;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == ERANGE || v < lo || v > hi)
        return perr(P, P->t.line, "%s out of range", what);
    *out = v;
    return next(P);
}

static int take_double(parser *P, const char *what, double *out)
{
    if (P->t.kind != T_NUMBER)
        return perr(P, P->t.line, "expected a number for %s", what);
    char buf[512];
    if (P->t.len >= sizeof buf)
        return perr(P, P->t.line, "number for %s is too long", what);
    memcpy(buf, P->t.s, P->t.len);
    buf[P->t.len] = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v))
        return perr(P, P->t.line, "%s must be a finite number", what);
    *out = v;
    return next(P);
}

/* ---- types ---- */

static int parse_dim(parser *P, ir_dim *out)
{
    ir_dim d = ir_dconst(1);
    for (;;) {
        if (P->t.kind == T_NUMBER) {
            long long v;
            if (!tok_is_int(P) || P->t.s[0] == '-' || (P->t.len == 1 && P->t.s[0] == '0'))
                return perr(P, P->t.line, "dimension factors must be positive integers");
            if (take_int(P, 1, INT64_MAX, "dimension", &v))
                return -1;
            if (__builtin_mul_overflow(d.c, (int64_t)v, &d.c))
                return perr(P, P->prev_line, "dimension too large");
        } else if (is_ident(P, "B") || is_ident(P, "S")) {
            if (d.eb + d.es == MAX_DIM_FACTORS)
                return perr(P, P->t.line, "dimension has more than %d factors of B and S",
                            MAX_DIM_FACTORS);
            if (P->t.s[0] == 'B')
                d.eb++;
            else
                d.es++;
            if (next(P))
                return -1;
        } else {
            return expected(P, "a dimension (a positive integer, B or S)");
        }
        if (!is_punct(P, '*'))
            break;
        if (next(P))
            return -1;
    }
    *out = d;
    return 0;
}

static int parse_type(parser *P, ir_type *out)
{
    ir_type t;
    memset(&t, 0, sizeof t);
    if (is_ident(P, "f32"))
        t.dtype = IR_F32;
    else if (is_ident(P, "i64"))
        t.dtype = IR_I64;
    else if (P->t.kind == T_IDENT)
        return perr(P, P->t.line, "unknown dtype '%.*s'", tlen(P), P->t.s);
    else
        return expected(P, "a type");
    if (next(P) || expect(P, '[', "'[' after the dtype"))
        return -1;
    if (!is_punct(P, ']')) {
        for (;;) {
            if (t.rank == IR_MAX_RANK)
                return perr(P, P->t.line, "a type has at most %d dimensions", IR_MAX_RANK);
            if (parse_dim(P, &t.dim[t.rank]))
                return -1;
            t.rank++;
            if (!is_punct(P, ','))
                break;
            if (next(P))
                return -1;
        }
    }
    if (expect(P, ']', "',' or ']' in the type"))
        return -1;
    /* Shape rules multiply dims (ir_type_numel); keep every product representable. */
    int64_t c = 1;
    int eb = 0, es = 0;
    for (int i = 0; i < t.rank; i++) {
        eb += t.dim[i].eb;
        es += t.dim[i].es;
        if (__builtin_mul_overflow(c, t.dim[i].c, &c) || eb > UINT8_MAX || es > UINT8_MAX)
            return perr(P, P->prev_line, "type has too many elements");
    }
    *out = t;
    return 0;
}

/* ---- statements ---- */

static int parse_perm(parser *P, const ir_graph *g, const int *in, int nin, int *perm)
{
    int n = 0;
    if (expect(P, '[', "'[' to start the perm list"))
        return -1;
    if (!is_punct(P, ']')) {
        for (;;) {
            long long v;
            if (n == IR_MAX_RANK)
                return perr(P, P->t.line, "perm has more than %d entries", IR_MAX_RANK);
            if (take_int(P, INT_MIN, INT_MAX, "a perm entry", &v))
                return -1;
            perm[n++] = (int)v;
            if (!is_punct(P, ','))
                break;
            if (next(P))
                return -1;
        }
    }
    if (expect(P, ']', "',' or ']' in the perm list"))
        return -1;
    if (nin > 0 && n != g->nodes[in[0]].type.rank)
        return perr(P, P->prev_line, "perm has %d entries, but the operand has rank %d", n,
                    g->nodes[in[0]].type.rank);
    return 0;
}

static int parse_attrs(parser *P, ir_opcode op, const int *in, int nin, ir_attrs *a)
{
    const ir_op_info *info = &ir_ops[op];
    unsigned seen = 0;
    if (next(P)) /* '{' */
        return -1;
    if (is_punct(P, '}'))
        return next(P);
    for (;;) {
        if (P->t.kind != T_IDENT)
            return expected(P, "an attribute name");
        const ir_attr_info *ai = ir_attr_find(P->t.s, P->t.len);
        if (!ai)
            return perr(P, P->t.line, "unknown attribute '%.*s'", tlen(P), P->t.s);
        if (!(info->attrs & ai->bit))
            return perr(P, P->t.line, "%s has no attribute '%s'", info->name, ai->name);
        if (seen & ai->bit)
            return perr(P, P->t.line, "attribute '%s' given twice", ai->name);
        seen |= ai->bit;
        if (next(P))
            return -1;
        char what[64];
        snprintf(what, sizeof what, "'=' after '%s'", ai->name);
        if (expect(P, '=', what))
            return -1;
        snprintf(what, sizeof what, "'%s'", ai->name);
        void *field = (char *)a + ai->offset;
        long long v;
        int rc = 0;
        switch (ai->kind) {
        case IR_ATTR_INT:
            rc = take_int(P, INT_MIN, INT_MAX, what, &v);
            if (!rc)
                *(int *)field = (int)v;
            break;
        case IR_ATTR_I64:
            rc = take_int(P, INT64_MIN, INT64_MAX, what, &v);
            if (!rc)
                *(int64_t *)field = v;
            break;
        case IR_ATTR_REAL:
            rc = take_double(P, what, field);
            break;
        case IR_ATTR_PERM:
            rc = parse_perm(P, P->g, in, nin, field);
            break;
        }
        if (rc)
            return -1;
        if (is_punct(P, '}'))
            return next(P);
        if (expect(P, ',', "',' or '}' in the attributes"))
            return -1;
    }
}

static int parse_node(parser *P, int line, char **name)
{
    ir_graph *g = P->g;
    if (P->t.value != g->n)
        return perr(P, line, "expected %%%d here, not %%%d (values are numbered in order)",
                    g->n, P->t.value);
    if (next(P))
        return -1;
    char what[64];
    snprintf(what, sizeof what, "'=' after %%%d", g->n);
    if (expect(P, '=', what))
        return -1;
    if (P->t.kind != T_IDENT)
        return expected(P, "an op name after '='");
    int op = 0;
    while (op < IR_OP_COUNT && !(strlen(ir_ops[op].name) == P->t.len &&
                                 !memcmp(ir_ops[op].name, P->t.s, P->t.len)))
        op++;
    if (op == IR_OP_COUNT)
        return perr(P, P->t.line, "unknown op '%.*s'", tlen(P), P->t.s);
    const ir_op_info *info = &ir_ops[op];
    if (next(P))
        return -1;
    if (P->t.kind == T_STRING) {
        if (!(info->attrs & IR_A_NAME))
            return perr(P, P->t.line, "%s takes no name", info->name);
        if (take_string(P, name))
            return -1;
    } else if (info->attrs & IR_A_NAME) {
        snprintf(what, sizeof what, "a quoted name after '%s'", info->name);
        return expected(P, what);
    }
    int in[IR_MAX_INPUTS], nin = 0;
    while (P->t.kind == T_VALUE) {
        if (nin == IR_MAX_INPUTS)
            return perr(P, P->t.line, "%s takes at most %d operands", info->name,
                        info->max_in);
        if (P->t.value >= g->n)
            return perr(P, P->t.line, "%%%d used before it is defined", P->t.value);
        in[nin++] = P->t.value;
        if (next(P))
            return -1;
        if (!is_punct(P, ','))
            break;
        if (next(P))
            return -1;
        if (P->t.kind != T_VALUE)
            return expected(P, "an operand after ','");
    }
    if (nin < info->min_in || nin > info->max_in) {
        if (info->min_in == info->max_in)
            return perr(P, line, "%s takes %d operand%s, not %d", info->name, info->min_in,
                        info->min_in == 1 ? "" : "s", nin);
        return perr(P, line, "%s takes %d to %d operands, not %d", info->name, info->min_in,
                    info->max_in, nin);
    }
    ir_attrs a;
    memset(&a, 0, sizeof a);
    if (is_punct(P, '{') && parse_attrs(P, (ir_opcode)op, in, nin, &a))
        return -1;
    if (expect(P, ':', "':' before the type"))
        return -1;
    ir_type t;
    if (parse_type(P, &t))
        return -1;
    if (*name && info->role == IR_ROLE_LEAF) {
        int prev = ir_find_named(g, (ir_opcode)op, *name);
        if (prev >= 0)
            return perr(P, line, "%%%d (%s): name \"%s\" already used by %%%d", g->n,
                        info->name, *name, prev);
    }
    if (ir_add(g, (ir_opcode)op, in, nin, &a, *name, &t) < 0)
        return perr(P, line, "%s", g->err.msg);
    if (P->nlines == P->linecap) {
        int cap = P->linecap ? P->linecap * 2 : 256;
        int *nl = realloc(P->lines, sizeof *nl * (size_t)cap);
        if (!nl)
            return perr(P, line, "out of memory");
        P->lines = nl;
        P->linecap = cap;
    }
    P->lines[P->nlines++] = line;
    return 0;
}

static int parse_output(parser *P, int line, char **name)
{
    ir_graph *g = P->g;
    if (next(P)) /* 'output' */
        return -1;
    if (P->t.kind != T_STRING)
        return expected(P, "a quoted name after 'output'");
    if (take_string(P, name) || expect(P, '=', "'=' after the output's name"))
        return -1;
    if (P->t.kind != T_VALUE)
        return expected(P, "a value after '='");
    int v = P->t.value;
    if (v >= g->n)
        return perr(P, P->t.line, "%%%d used before it is defined", v);
    if (ir_find_output(g, *name) >= 0)
        return perr(P, line, "output \"%s\" is defined twice", *name);
    if (ir_set_output(g, *name, v))
        return perr(P, line, "%s", g->err.msg);
    return next(P);
}

/* Reads a statement with parse_node or parse_output, giving it the line the statement
 * starts on and a place for the name it reads, which is freed whatever happens. */
static int statement(parser *P, int (*parse)(parser *P, int line, char **name))
{
    char *name = NULL;
    int rc = parse(P, P->t.line, &name);
    free(name);
    return rc;
}

static int parse_file(parser *P)
{
    if (lex(P))
        return -1;
    if (!is_ident(P, "graph"))
        return perr(P, P->t.line, "expected 'graph' at the start");
    if (next(P))
        return -1;
    if (P->t.kind != T_STRING)
        return expected(P, "the graph's quoted name after 'graph'");
    char *name;
    if (take_string(P, &name))
        return -1;
    P->g = ir_graph_new(name);
    free(name);
    if (!P->g)
        return perr(P, P->prev_line, "out of memory");
    if (expect(P, '{', "'{' after the graph's name"))
        return -1;
    while (!is_punct(P, '}')) {
        int rc;
        if (P->t.kind == T_VALUE)
            rc = statement(P, parse_node);
        else if (is_ident(P, "output"))
            rc = statement(P, parse_output);
        else if (P->t.kind == T_EOF)
            return expected(P, "'}' at the end of the graph");
        else
            return perr(P, P->t.line, "expected '%%N = ...', 'output' or '}'");
        if (rc)
            return -1;
    }
    int close_line = P->t.line;
    if (next(P))
        return -1;
    if (P->t.kind != T_EOF)
        return perr(P, P->t.line, "unexpected text after the graph's closing '}'");
    bc_err ve;
    if (ir_verify(P->g, &ve)) {
        /* Messages about a node start with "%N"; point at its line. */
        int line = close_line;
        if (ve.msg[0] == '%') {
            long k = strtol(ve.msg + 1, NULL, 10);
            if (k >= 0 && k < P->nlines)
                line = P->lines[k];
        }
        return perr(P, line, "%s", ve.msg);
    }
    return 0;
}

ir_graph *ir_parse(const char *text, const char *filename, bc_err *e)
{
    bc_err scratch;
    parser P;
    memset(&P, 0, sizeof P);
    P.p = text ? text : "";
    P.file = filename ? filename : "<input>";
    P.line = 1;
    P.prev_line = 1;
    P.e = e ? e : &scratch;
    int rc = parse_file(&P);
    free(P.lines);
    if (rc) {
        ir_graph_free(P.g);
        return NULL;
    }
    return P.g;
}
