/* print.c: the text form of the IR. The printer is the canonical writer; ir/parse.c
 * reads the same grammar, and print(parse(print(g))) == print(g) byte for byte.
 *
 *   graph "bert-tiny" {
 *     %0 = param "bert.embeddings.word_embeddings.weight" : f32[30522, 128]
 *     %1 = input "input_ids" : i64[B, S]
 *     %2 = gather %0, %1 : f32[B, S, 128]
 *     %5 = matmul %3, %4 {ta=0, tb=1} : f32[B, S, 128]
 *     %6 = transpose %5 {perm=[0, 2, 1, 3]} : f32[B, 2, S, 64]
 *     %7 = layernorm %6, %3, %4 {eps=9.9999999999999998e-13} : f32[B, S, 128]
 *     %8 = select %7 {axis=1, index=0} : f32[B, 128]
 *     %9 = reshape %8 : f32[B*S, 128]
 *     %10 = cross_entropy %9, %1 : f32[]
 *     output "sequence_output" = %7
 *   }
 *
 * Grammar (tokens may be separated by any whitespace, newlines included; '#' starts a
 * comment that runs to the end of the line):
 *
 *   file    := 'graph' STRING '{' stmt* '}'
 *   stmt    := VALUE '=' OP [STRING] [VALUE (',' VALUE)*] [attrs] ':' type
 *            | 'output' STRING '=' VALUE
 *   attrs   := '{' [attr (',' attr)*] '}'
 *   attr    := NAME '=' (INT | NUMBER | '[' [INT (',' INT)*] ']')
 *   type    := ('f32' | 'i64') '[' [dim (',' dim)*] ']'
 *   dim     := factor ('*' factor)*        factor := positive INT | 'B' | 'S'
 *
 * - VALUE is %N, and N is the node's index: definitions are numbered 0, 1, 2, ... in
 *   order, and an operand must name an earlier node.
 * - The quoted name follows the op exactly when its row has IR_A_NAME (param, input).
 * - Attributes come from the op's mask in ir_ops[op].attrs, always all of them, in the
 *   order of ir_attr_table (ta, tb, axis, index, perm, eps, scale, p), each written as
 *   its row's kind says (ir/attrs.c). Doubles are written "%.17g" (which reads back to
 *   the same bits); perm lists as many entries as the operand's rank. The parser
 *   defaults a missing attribute to 0.
 * - Dims print as ir_dim_str writes them (12, B, B*S, 4*S); the parser accepts any
 *   product of factors (S*B, 2*3*B) and normalizes it.
 * - Strings escape '"' and '\' with a backslash and non-printable bytes (below 0x20 and
 *   0x7f) as \xHH; bytes from 0x80 up (UTF-8) pass through unchanged.
 * - The type is written for every node, including those whose shape rule derives it;
 *   the parser hands it to ir_add, which rejects it if the rule disagrees. */
#include "ir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing string; on allocation failure it sets oom and stops appending. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

/* Makes room for len more bytes and a NUL; 0 when there is none. */
static int sb_reserve(sbuf *b, size_t len)
{
    if (b->oom)
        return 0;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + len + 1 > cap)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return 0;
        }
        b->s = ns;
        b->cap = cap;
    }
    return 1;
}

static void sb_put(sbuf *b, const char *s, size_t len)
{
    if (!sb_reserve(b, len))
        return;
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0)
        b->oom = 1;
    else
        sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static void put_string(sbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            sb_put(b, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            char esc[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
            sb_put(b, esc, 4);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void put_type(sbuf *b, const ir_type *t)
{
    /* ir_type_str writes each dim through a 64-byte buffer; the parser keeps dims
     * short enough for it (see MAX_DIM_FACTORS in parse.c). */
    char buf[1024];
    sb_puts(b, ir_type_str(t, buf, sizeof buf));
}

/* Perm lists as many entries as the operand's rank (the node's own, for a node without
 * a defined operand). */
static void put_attrs(sbuf *b, const ir_graph *g, const ir_node *n)
{
    int rank = n->type.rank;
    if (n->nin > 0 && n->in[0] >= 0 && n->in[0] < g->n)
        rank = g->nodes[n->in[0]].type.rank;
    size_t len = ir_attrs_print(n->op, &n->a, rank, NULL, 0);
    if (!sb_reserve(b, len))
        return;
    ir_attrs_print(n->op, &n->a, rank, b->s + b->n, len + 1);
    b->n += len;
}

static void put_node(sbuf *b, const ir_graph *g, int i)
{
    const ir_node *n = &g->nodes[i];
    if ((unsigned)n->op < IR_OP_COUNT)
        sb_printf(b, "  %%%d = %s", i, ir_ops[n->op].name);
    else
        sb_printf(b, "  %%%d = <op %d>", i, (int)n->op);
    if (n->name) {
        sb_puts(b, " ");
        put_string(b, n->name);
    }
    for (int k = 0; k < n->nin && k < IR_MAX_INPUTS; k++)
        sb_printf(b, "%s%%%d", k ? ", " : " ", n->in[k]);
    put_attrs(b, g, n);
    sb_puts(b, " : ");
    put_type(b, &n->type);
    sb_puts(b, "\n");
}

char *ir_print_str(const ir_graph *g)
{
    sbuf b = {0};
    sb_puts(&b, "graph ");
    put_string(&b, g->name ? g->name : "");
    sb_puts(&b, " {\n");
    for (int i = 0; i < g->n; i++)
        put_node(&b, g, i);
    for (int k = 0; k < g->nout; k++) {
        sb_puts(&b, "  output ");
        put_string(&b, g->outs[k].name ? g->outs[k].name : "");
        sb_printf(&b, " = %%%d\n", g->outs[k].value);
    }
    sb_puts(&b, "}\n");
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

int ir_print(const ir_graph *g, FILE *f)
{
    char *s = ir_print_str(g);
    if (!s)
        return -1;
    size_t len = strlen(s);
    int ok = fwrite(s, 1, len, f) == len;
    free(s);
    return ok && !ferror(f) ? 0 : -1;
}
