/* model.c: the model description: defaults, validation, the XML format of DESIGN.md §2
 * (libxml2), Hugging Face config.json import (jansson) and writing XML back out.
 *
 * Every size, eps and dropout is described once, in `fields`, with its XML attribute
 * and its config.json key, so both loaders and fe_model_check agree on names, ranges and
 * defaults. Error positions in XML are the line of the offending attribute, element or
 * text: libxml2 records an element's line where its start tag ends and has no line for
 * attributes, so SAX hooks note the real lines in the nodes' _private fields. */
#include "frontend.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "../support/file.h"

/* ------------------------------------------------------------------------------------ */
/* The fields of the encoder, shared by both formats and by fe_model_check. */

typedef enum { F_SIZE, F_EPS, F_DROPOUT, F_ACT } field_kind;

typedef struct field {
    const char *xml; /* XML attribute on <encoder> */
    const char *hf;  /* config.json key */
    field_kind kind;
    size_t off; /* into fe_model */
    int required;
} field;

static const field fields[] = {
    {"vocab-size", "vocab_size", F_SIZE, offsetof(fe_model, vocab_size), 1},
    {"hidden-size", "hidden_size", F_SIZE, offsetof(fe_model, hidden_size), 1},
    {"layers", "num_hidden_layers", F_SIZE, offsetof(fe_model, layers), 1},
    {"heads", "num_attention_heads", F_SIZE, offsetof(fe_model, heads), 1},
    {"intermediate-size", "intermediate_size", F_SIZE,
     offsetof(fe_model, intermediate_size), 1},
    {"max-position", "max_position_embeddings", F_SIZE, offsetof(fe_model, max_position),
     0},
    {"type-vocab-size", "type_vocab_size", F_SIZE, offsetof(fe_model, type_vocab_size), 0},
    {"activation", "hidden_act", F_ACT, offsetof(fe_model, activation), 0},
    {"layer-norm-eps", "layer_norm_eps", F_EPS, offsetof(fe_model, layer_norm_eps), 0},
    {"hidden-dropout", "hidden_dropout_prob", F_DROPOUT, offsetof(fe_model, hidden_dropout),
     0},
    {"attention-dropout", "attention_probs_dropout_prob", F_DROPOUT,
     offsetof(fe_model, attention_dropout), 0},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static int64_t *field_i64(fe_model *m, const field *f)
{
    return (int64_t *)((char *)m + f->off);
}

static double *field_f64(fe_model *m, const field *f)
{
    return (double *)((char *)m + f->off);
}

static const struct {
    const char *name;
    unsigned bit;
} head_types[] = {
    {"mlm", FE_HEAD_MLM},   {"nsp", FE_HEAD_NSP}, {"intent", FE_HEAD_INTENT},
    {"slot", FE_HEAD_SLOT}, {"qa", FE_HEAD_QA},
};
#define NHEADS (sizeof head_types / sizeof head_types[0])

static const char *const act_names[] = {
    [FE_ACT_GELU] = "gelu", [FE_ACT_GELU_TANH] = "gelu_tanh"};

/* ------------------------------------------------------------------------------------ */
/* Defaults and checks. Messages name the quantity; callers add the position. */

void fe_model_defaults(fe_model *m)
{
    memset(m, 0, sizeof *m);
    strcpy(m->name, "bert");
    m->max_position = 512;
    m->type_vocab_size = 2;
    m->activation = FE_ACT_GELU;
    m->layer_norm_eps = 1e-12;
    m->hidden_dropout = 0.1;
    m->attention_dropout = 0.1;
}

static int check_size(const char *what, int64_t v, bc_err *e)
{
    if (v <= 0)
        return bc_errf(e, "%s must be positive, got %lld", what, (long long)v);
    if (v > FE_MAX_SIZE)
        return bc_errf(e, "%s is too large: %lld (max %lld)", what, (long long)v,
                       (long long)FE_MAX_SIZE);
    return 0;
}

static int check_eps(const char *what, double v, bc_err *e)
{
    if (!(v > 0) || !isfinite(v))
        return bc_errf(e, "%s must be positive and finite, got %g", what, v);
    return 0;
}

static int check_dropout(const char *what, double v, bc_err *e)
{
    if (!(v >= 0 && v < 1))
        return bc_errf(e, "%s must be in [0, 1), got %g", what, v);
    return 0;
}

static int check_name(const char *name, size_t cap, bc_err *e)
{
    const char *nul = memchr(name, 0, cap);
    if (!nul)
        return bc_errf(e, "name is too long (max %zu bytes)", cap - 1);
    if (nul == name)
        return bc_errf(e, "name is empty");
    size_t n = (size_t)(nul - name);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return bc_errf(e, "name contains a control character");
    return 0;
}

/* Checks one field's value under the given name (XML attribute or config.json key). */
static int check_field(const fe_model *m, const field *f, const char *what, bc_err *e)
{
    const void *p = (const char *)m + f->off;
    switch (f->kind) {
    case F_SIZE:
        return check_size(what, *(const int64_t *)p, e);
    case F_EPS:
        return check_eps(what, *(const double *)p, e);
    case F_DROPOUT:
        return check_dropout(what, *(const double *)p, e);
    case F_ACT:
        if (m->activation != FE_ACT_GELU && m->activation != FE_ACT_GELU_TANH)
            return bc_errf(e, "%s: unknown activation %d", what, (int)m->activation);
        return 0;
    }
    return 0;
}

static int check_divisible(const fe_model *m, const char *hidden, const char *heads,
                           bc_err *e)
{
    if (m->hidden_size % m->heads != 0)
        return bc_errf(e, "%s %lld is not divisible by %s %lld", hidden,
                       (long long)m->hidden_size, heads, (long long)m->heads);
    return 0;
}

int fe_model_check(const fe_model *m, bc_err *e)
{
    if (check_name(m->name, sizeof m->name, e))
        return -1;
    for (size_t i = 0; i < NFIELDS; i++)
        if (check_field(m, &fields[i], fields[i].xml, e))
            return -1;
    if (check_divisible(m, "hidden-size", "heads", e))
        return -1;
    /* the graph's size from the description, before anything is built: a layer is
     * under FE_NODES_PER_LAYER nodes forward and backward, the rest under 1000 */
    double nodes = 1000.0 + (double)m->layers * FE_NODES_PER_LAYER;
    if (nodes > IR_MAX_NODES)
        return bc_errf(e,
                       "layers %lld: a graph of about %.0f nodes, more than bertcc's limit "
                       "of %d (bert-large has 24 layers)",
                       (long long)m->layers, nodes, IR_MAX_NODES);
    if (m->head_mask &
        ~(unsigned)(FE_HEAD_MLM | FE_HEAD_NSP | FE_HEAD_INTENT | FE_HEAD_SLOT | FE_HEAD_QA))
        return bc_errf(e, "unknown head bits 0x%x", m->head_mask);
    if ((m->head_mask & FE_HEAD_INTENT) &&
        check_size("intent classes", m->intent_classes, e))
        return -1;
    if ((m->head_mask & FE_HEAD_SLOT) && check_size("slot labels", m->slot_labels, e))
        return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* XML: parsing with line capture. */

typedef struct xml_state {
    char msg[512]; /* first libxml2 error */
    long line;
    int have;
} xml_state;

static void on_xml_error(void *ctx, xmlErrorPtr err)
{
    xmlParserCtxtPtr ctxt = ctx;
    xml_state *st = ctxt->_private;
    if (!err || err->level < XML_ERR_ERROR || st->have)
        return;
    st->have = 1;
    st->line = err->line > 0 ? err->line : 1;
    const char *msg = err->message ? err->message : "malformed XML";
    if (strstr(msg, "not proper UTF-8"))
        msg = "invalid UTF-8 (a model description is UTF-8 text)";
    snprintf(st->msg, sizeof st->msg, "%s", msg);
    st->msg[strcspn(st->msg, "\n")] = 0; /* libxml2 adds a line of bytes: one line only */
    size_t n = strlen(st->msg);
    while (n > 0 && isspace((unsigned char)st->msg[n - 1]))
        st->msg[--n] = 0;
}

static int is_xml_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Does the qualified name in [p, p+n) equal prefix:local (or local)? */
static int qname_is(const char *p, size_t n, const xmlChar *prefix, const xmlChar *local)
{
    size_t lp = prefix ? strlen((const char *)prefix) : 0, ll = strlen((const char *)local);
    if (prefix) {
        if (n != lp + 1 + ll || memcmp(p, prefix, lp) != 0 || p[lp] != ':')
            return 0;
        p += lp + 1;
        n -= lp + 1;
    }
    return n == ll && memcmp(p, local, ll) == 0;
}

/* Called when libxml2 has parsed a start tag up to its '>' or '/>': the raw tag lies just
 * before input->cur. Records the line of the '<' on the element and the line of each
 * attribute on its xmlAttr. Leaves libxml2's own lines if the text is not as expected. */
static void annotate_start_tag(xmlParserCtxtPtr ctxt, xmlNodePtr node)
{
    xmlParserInputPtr in = ctxt->input;
    if (!in || !in->cur || !in->base || !node || node->type != XML_ELEMENT_NODE)
        return;
    const char *base = (const char *)in->base, *end = (const char *)in->cur, *lt = end;
    while (lt > base && lt[-1] != '<')
        lt--;
    if (lt == base)
        return;
    long line = in->line;
    for (const char *p = lt; p < end; p++)
        line -= *p == '\n';
    const char *p = lt;
    const char *name = p;
    while (p < end && !is_xml_space(*p) && *p != '/' && *p != '>')
        p++;
    if (!qname_is(name, (size_t)(p - name), node->ns ? node->ns->prefix : NULL, node->name))
        return;
    node->_private = (void *)(intptr_t)line;
    xmlAttrPtr a = node->properties;
    for (;;) {
        while (p < end && is_xml_space(*p))
            line += *p++ == '\n';
        if (p >= end || *p == '/' || *p == '>')
            break;
        const char *an = p;
        while (p < end && !is_xml_space(*p) && *p != '=')
            p++;
        size_t anl = (size_t)(p - an);
        long aline = line;
        while (p < end && is_xml_space(*p))
            line += *p++ == '\n';
        if (p >= end || *p != '=')
            return;
        p++;
        while (p < end && is_xml_space(*p))
            line += *p++ == '\n';
        if (p >= end || (*p != '"' && *p != '\''))
            return;
        char q = *p++;
        while (p < end && *p != q)
            line += *p++ == '\n';
        if (p >= end)
            return;
        p++;
        /* Namespace declarations are not attributes in the tree. */
        if ((anl == 5 && memcmp(an, "xmlns", 5) == 0) ||
            (anl > 6 && memcmp(an, "xmlns:", 6) == 0))
            continue;
        if (!a || !qname_is(an, anl, a->ns ? a->ns->prefix : NULL, a->name))
            return;
        a->_private = (void *)(intptr_t)aline;
        a = a->next;
    }
}

static void on_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                             const xmlChar *uri, int nb_namespaces,
                             const xmlChar **namespaces, int nb_attributes,
                             int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr ctxt = ctx;
    xmlNodePtr parent = ctxt->node;
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces,
                          nb_attributes, nb_defaulted, attributes);
    if (ctxt->node && ctxt->node != parent)
        annotate_start_tag(ctxt, ctxt->node);
}

/* Character data arrives after libxml2 has counted its newlines, so the line of its first
 * non-blank byte is input->line minus the newlines from there on. */
static void note_text_line(xmlParserCtxtPtr ctxt, const xmlChar *ch, int len)
{
    xmlNodePtr parent = ctxt->node;
    xmlNodePtr t = parent ? parent->last : NULL;
    if (!t || (t->type != XML_TEXT_NODE && t->type != XML_CDATA_SECTION_NODE) ||
        t->_private || !ctxt->input)
        return;
    int i = 0;
    while (i < len && is_xml_space(ch[i]))
        i++;
    if (i == len)
        return;
    long line = ctxt->input->line;
    for (int j = i; j < len; j++)
        line -= ch[j] == '\n';
    t->_private = (void *)(intptr_t)(line > 0 ? line : 1);
}

static void on_characters(void *ctx, const xmlChar *ch, int len)
{
    xmlSAX2Characters(ctx, ch, len);
    note_text_line(ctx, ch, len);
}

static void on_cdata(void *ctx, const xmlChar *ch, int len)
{
    xmlSAX2CDataBlock(ctx, ch, len);
    note_text_line(ctx, ch, len);
}

static long node_line(xmlNodePtr n)
{
    intptr_t l = (intptr_t)n->_private;
    if (l > 0)
        return (long)l;
    long g = xmlGetLineNo(n);
    if (g > 0)
        return g;
    return n->parent && n->parent->type == XML_ELEMENT_NODE ? node_line(n->parent) : 1;
}

static long attr_line(xmlAttrPtr a)
{
    intptr_t l = (intptr_t)a->_private;
    return l > 0 ? (long)l : node_line(a->parent);
}

/* ------------------------------------------------------------------------------------ */
/* XML: the model format. */

typedef struct xml_reader {
    const char *path;
    xmlDocPtr doc;
    bc_err *e;
} xml_reader;

static int xerr(xml_reader *r, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int xerr(xml_reader *r, long line, const char *fmt, ...)
{
    char msg[sizeof r->e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bc_errf(r->e, "%s:%ld: %s", r->path, line, msg);
}

static void qname(char *buf, size_t cap, const xmlNs *ns, const xmlChar *name)
{
    if (ns && ns->prefix)
        snprintf(buf, cap, "%s:%s", (const char *)ns->prefix, (const char *)name);
    else
        snprintf(buf, cap, "%s", (const char *)name);
}

/* The value of an attribute, owned by the caller (xmlFree); NULL only if out of memory. */
static char *attr_value(xml_reader *r, xmlAttrPtr a)
{
    xmlChar *v = xmlNodeListGetString(r->doc, a->children, 1);
    if (!v && !a->children)
        v = xmlStrdup((const xmlChar *)"");
    return (char *)v;
}

/* Checks a node that is not an element: comments and blank text are all an element of
 * ours may contain besides its child elements. */
static int check_other(xml_reader *r, xmlNodePtr c, const char *in)
{
    switch (c->type) {
    case XML_COMMENT_NODE:
        return 0;
    case XML_TEXT_NODE:
    case XML_CDATA_SECTION_NODE: {
        const xmlChar *s = c->content ? c->content : (const xmlChar *)"";
        while (*s && is_xml_space(*s))
            s++;
        int n = 0;
        while (s[n] && s[n] != '\n' && s[n] != '\r' && n < 40)
            n++;
        if (*s)
            return xerr(r, node_line(c), "unexpected text '%.*s' in <%s>", n,
                        (const char *)s, in);
        return 0;
    }
    case XML_PI_NODE:
        return xerr(r, node_line(c), "unexpected processing instruction <?%s?> in <%s>",
                    (const char *)c->name, in);
    case XML_ENTITY_REF_NODE:
        return xerr(r, node_line(c), "unexpected entity reference &%s; in <%s>",
                    (const char *)c->name, in);
    default:
        return xerr(r, node_line(c), "unexpected content in <%s>", in);
    }
}

/* Checks that an element has no content but comments and blanks. */
static int check_empty(xml_reader *r, xmlNodePtr el)
{
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) {
            char nm[256];
            qname(nm, sizeof nm, c->ns, c->name);
            return xerr(r, node_line(c), "unknown element <%s> in <%s>", nm,
                        (const char *)el->name);
        }
        if (check_other(r, c, (const char *)el->name))
            return -1;
    }
    return 0;
}

typedef enum { NUM_OK, NUM_EMPTY, NUM_SYNTAX, NUM_NONPOS, NUM_BIG } num_status;

/* A size: decimal digits only (no sign, no blanks), 1 ..= FE_MAX_SIZE. */
static num_status parse_size(const char *s, int64_t *out)
{
    if (!*s)
        return NUM_EMPTY;
    const char *p = s;
    int neg = *p == '-';
    if (neg)
        p++;
    if (!*p)
        return NUM_SYNTAX;
    int64_t v = 0;
    int big = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return NUM_SYNTAX;
        if (!big)
            v = v * 10 + (*p - '0');
        if (v > FE_MAX_SIZE)
            big = 1;
    }
    if (neg || v == 0)
        return NUM_NONPOS;
    if (big)
        return NUM_BIG;
    *out = v;
    return NUM_OK;
}

/* A real number: what strtod reads, all of it, no surrounding blanks. */
static int parse_real(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int xml_size(xml_reader *r, long line, const char *el, const char *attr,
                    const char *s, int64_t *out)
{
    switch (parse_size(s, out)) {
    case NUM_OK:
        return 0;
    case NUM_EMPTY:
        return xerr(r, line, "%s: %s is empty", el, attr);
    case NUM_SYNTAX:
        return xerr(r, line, "%s: %s must be a positive integer, got '%.40s'", el, attr, s);
    case NUM_NONPOS:
        return xerr(r, line, "%s: %s must be positive, got '%.40s'", el, attr, s);
    case NUM_BIG:
        return xerr(r, line, "%s: %s is too large: '%.40s' (max %lld)", el, attr, s,
                    (long long)FE_MAX_SIZE);
    }
    return -1;
}

static int xml_encoder_attr(xml_reader *r, fe_model *m, const field *f, long line,
                            const char *v)
{
    bc_err sub;
    switch (f->kind) {
    case F_SIZE:
        return xml_size(r, line, "encoder", f->xml, v, field_i64(m, f));
    case F_ACT:
        for (size_t k = 0; k < sizeof act_names / sizeof act_names[0]; k++)
            if (strcmp(v, act_names[k]) == 0) {
                m->activation = (fe_activation)k;
                return 0;
            }
        return xerr(r, line,
                    "encoder: unknown activation '%.40s' (expected gelu or gelu_tanh)", v);
    case F_EPS:
    case F_DROPOUT:
        if (!*v)
            return xerr(r, line, "encoder: %s is empty", f->xml);
        if (parse_real(v, field_f64(m, f)))
            return xerr(r, line, "encoder: %s must be a number, got '%.40s'", f->xml, v);
        if (check_field(m, f, f->xml, &sub))
            return xerr(r, line, "encoder: %s", sub.msg);
        return 0;
    }
    return -1;
}

static int xml_encoder(xml_reader *r, xmlNodePtr el, fe_model *m)
{
    long line = node_line(el);
    int seen[NFIELDS] = {0};
    for (xmlAttrPtr a = el->properties; a; a = a->next) {
        char nm[256];
        qname(nm, sizeof nm, a->ns, a->name);
        size_t i = 0;
        while (i < NFIELDS && (a->ns || strcmp((const char *)a->name, fields[i].xml) != 0))
            i++;
        if (i == NFIELDS)
            return xerr(r, attr_line(a), "encoder: unknown attribute '%s'", nm);
        char *v = attr_value(r, a);
        if (!v)
            return xerr(r, attr_line(a), "out of memory");
        int rc = xml_encoder_attr(r, m, &fields[i], attr_line(a), v);
        xmlFree(v);
        if (rc)
            return -1;
        seen[i] = 1;
    }
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].required && !seen[i])
            return xerr(r, line, "encoder: missing attribute '%s'", fields[i].xml);
    bc_err sub;
    if (check_divisible(m, "hidden-size", "heads", &sub))
        return xerr(r, line, "encoder: %s", sub.msg);
    return check_empty(r, el);
}

static int xml_head(xml_reader *r, xmlNodePtr el, fe_model *m, long head_lines[NHEADS])
{
    long line = node_line(el);
    xmlAttrPtr type = NULL;
    for (xmlAttrPtr a = el->properties; a; a = a->next)
        if (!a->ns && strcmp((const char *)a->name, "type") == 0)
            type = a;
    if (!type)
        return xerr(r, line, "head: missing attribute 'type'");
    char *tv = attr_value(r, type);
    if (!tv)
        return xerr(r, line, "out of memory");
    size_t h = 0;
    while (h < NHEADS && strcmp(tv, head_types[h].name) != 0)
        h++;
    if (h == NHEADS) {
        xerr(r, attr_line(type),
             "head: unknown type '%.40s' (expected mlm, nsp, intent, slot or qa)", tv);
        xmlFree(tv);
        return -1;
    }
    xmlFree(tv);
    const char *tn = head_types[h].name;
    unsigned bit = head_types[h].bit;
    if (m->head_mask & bit)
        return xerr(r, line, "duplicate head '%s' (first at line %ld)", tn, head_lines[h]);
    m->head_mask |= bit;
    head_lines[h] = line;

    /* intent takes classes, slot takes labels; nothing else takes anything. */
    const char *sized = bit == FE_HEAD_INTENT ? "classes"
                        : bit == FE_HEAD_SLOT ? "labels"
                                              : NULL;
    int64_t *dst = bit == FE_HEAD_INTENT ? &m->intent_classes : &m->slot_labels;
    int have = 0;
    for (xmlAttrPtr a = el->properties; a; a = a->next) {
        if (a == type)
            continue;
        char nm[256];
        qname(nm, sizeof nm, a->ns, a->name);
        if (a->ns || !sized || strcmp((const char *)a->name, sized) != 0)
            return xerr(r, attr_line(a), "head type '%s': unknown attribute '%s'", tn, nm);
        char *v = attr_value(r, a);
        if (!v)
            return xerr(r, attr_line(a), "out of memory");
        char where[32];
        snprintf(where, sizeof where, "head type '%s'", tn);
        int rc = xml_size(r, attr_line(a), where, sized, v, dst);
        xmlFree(v);
        if (rc)
            return -1;
        have = 1;
    }
    if (sized && !have)
        return xerr(r, line, "head type '%s': missing attribute '%s'", tn, sized);
    return check_empty(r, el);
}

static int xml_root(xml_reader *r, xmlNodePtr root, fe_model *m)
{
    char nm[256];
    bc_err sub;
    long line = node_line(root);
    qname(nm, sizeof nm, root->ns, root->name);
    if (root->ns || strcmp((const char *)root->name, "bert") != 0)
        return xerr(r, line, "expected root element <bert>, got <%s>", nm);
    for (xmlAttrPtr a = root->properties; a; a = a->next) {
        qname(nm, sizeof nm, a->ns, a->name);
        if (a->ns || strcmp((const char *)a->name, "name") != 0)
            return xerr(r, attr_line(a), "bert: unknown attribute '%s'", nm);
        char *v = attr_value(r, a);
        if (!v)
            return xerr(r, attr_line(a), "out of memory");
        size_t n = strlen(v);
        if (n < sizeof m->name)
            memcpy(m->name, v, n + 1);
        xmlFree(v);
        if (n >= sizeof m->name)
            return xerr(r, attr_line(a), "bert: name is too long (%zu bytes, max %zu)", n,
                        sizeof m->name - 1);
        if (check_name(m->name, sizeof m->name, &sub))
            return xerr(r, attr_line(a), "bert: %s", sub.msg);
    }

    long enc_line = 0, head_lines[NHEADS] = {0};
    for (xmlNodePtr c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) {
            if (check_other(r, c, "bert"))
                return -1;
            continue;
        }
        qname(nm, sizeof nm, c->ns, c->name);
        if (!c->ns && strcmp((const char *)c->name, "encoder") == 0) {
            if (enc_line)
                return xerr(r, node_line(c), "second <encoder> (first at line %ld)",
                            enc_line);
            enc_line = node_line(c);
            if (xml_encoder(r, c, m))
                return -1;
        } else if (!c->ns && strcmp((const char *)c->name, "head") == 0) {
            if (xml_head(r, c, m, head_lines))
                return -1;
        } else {
            return xerr(r, node_line(c), "unknown element <%s>", nm);
        }
    }
    if (!enc_line)
        return xerr(r, line, "bert: missing <encoder>");
    if (fe_model_check(m, &sub))
        return xerr(r, enc_line, "%s", sub.msg);
    return 0;
}

/* Line of the first "<!DOCTYPE" in the text (for the error; libxml2 keeps none). */
static long doctype_line(const char *text, size_t len)
{
    long line = 1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n')
            line++;
        else if (text[i] == '<' && len - i >= 9 && memcmp(text + i, "<!DOCTYPE", 9) == 0)
            return line;
    }
    return 1;
}

int fe_parse_xml(const char *text, size_t len, const char *path, fe_model *m, bc_err *e)
{
    if (!path)
        path = "<memory>";
    if (len > INT_MAX)
        return bc_errf(e, "%s: file too large", path);
    xml_state st = {0};
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return bc_errf(e, "%s: out of memory", path);
    ctxt->_private = &st;
    ctxt->sax->serror = on_xml_error;
    ctxt->sax->startElementNs = on_start_element;
    ctxt->sax->characters = on_characters;
    ctxt->sax->cdataBlock = on_cdata;
    /* No network, no DTD loading, no entity substitution; errors come to on_xml_error
     * only. */
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, text, (int)len, path, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR |
                                          XML_PARSE_NOWARNING | XML_PARSE_BIG_LINES);
    int wellformed = ctxt->wellFormed;
    xmlFreeParserCtxt(ctxt);
    xmlResetLastError();
    int rc;
    if (!doc || !wellformed || st.have) {
        rc = st.have ? bc_errf(e, "%s:%ld: %s", path, st.line, st.msg)
                     : bc_errf(e, "%s:1: malformed XML", path);
    } else if (doc->intSubset || doc->extSubset) {
        rc = bc_errf(e, "%s:%ld: <!DOCTYPE> is not allowed", path, doctype_line(text, len));
    } else {
        xmlNodePtr root = xmlDocGetRootElement(doc);
        xml_reader r = {path, doc, e};
        fe_model tmp;
        fe_model_defaults(&tmp);
        rc = root ? xml_root(&r, root, &tmp) : bc_errf(e, "%s:1: no root element", path);
        if (rc == 0)
            *m = tmp;
    }
    if (doc)
        xmlFreeDoc(doc);
    return rc;
}

int fe_load_xml(const char *path, fe_model *m, bc_err *e)
{
    size_t len;
    char *text = bc_read_file(path, &len, e);
    if (!text)
        return -1;
    int rc = fe_parse_xml(text, len, path, m, e);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Hugging Face config.json. */

static const struct {
    const char *hf;
    fe_activation act;
} hf_acts[] = {
    {"gelu", FE_ACT_GELU},           {"gelu_python", FE_ACT_GELU},
    {"gelu_new", FE_ACT_GELU_TANH},  {"gelu_pytorch_tanh", FE_ACT_GELU_TANH},
    {"gelu_fast", FE_ACT_GELU_TANH},
};

/* A config's name: the last component of a path such as "google/bert_uncased_L-2_H-128",
 * cut to fit at a UTF-8 boundary, control characters replaced. 0 if nothing is left. */
static int hf_name(fe_model *m, const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && s[start - 1] != '/')
        start--;
    s += start;
    n -= start;
    if (n >= sizeof m->name) {
        n = sizeof m->name - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    if (n == 0)
        return 0;
    memcpy(m->name, s, n);
    memset(m->name + n, 0, sizeof m->name - n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)m->name[i] < 0x20 || m->name[i] == 0x7f)
            m->name[i] = '_';
    return 1;
}

static int hf_field(const char *path, json_t *v, const field *f, fe_model *m, bc_err *e)
{
    switch (f->kind) {
    case F_SIZE:
        if (!json_is_integer(v))
            return bc_errf(e, "%s: %s must be an integer", path, f->hf);
        *field_i64(m, f) = json_integer_value(v);
        break;
    case F_EPS:
    case F_DROPOUT:
        if (!json_is_number(v))
            return bc_errf(e, "%s: %s must be a number", path, f->hf);
        *field_f64(m, f) = json_number_value(v);
        break;
    case F_ACT: {
        if (!json_is_string(v))
            return bc_errf(e, "%s: %s must be a string", path, f->hf);
        const char *s = json_string_value(v);
        size_t k = 0;
        while (k < sizeof hf_acts / sizeof hf_acts[0] && strcmp(s, hf_acts[k].hf) != 0)
            k++;
        if (k == sizeof hf_acts / sizeof hf_acts[0])
            return bc_errf(e,
                           "%s: %s '%.40s' is not supported (gelu, gelu_python, gelu_new, "
                           "gelu_pytorch_tanh, gelu_fast)",
                           path, f->hf, s);
        m->activation = hf_acts[k].act;
        break;
    }
    }
    if (check_field(m, f, f->hf, e)) {
        bc_err_prefix(e, "%s", path);
        return -1;
    }
    return 0;
}

int fe_parse_hf_config(const char *text, size_t len, const char *path, fe_model *m,
                       bc_err *e)
{
    if (!path)
        path = "<memory>";
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line > 0)
            return bc_errf(e, "%s:%d: %s", path, je.line, je.text);
        return bc_errf(e, "%s: %s", path, je.text);
    }
    int rc = 0;
    fe_model tmp;
    fe_model_defaults(&tmp);
    if (!json_is_object(root)) {
        rc = bc_errf(e, "%s: expected a JSON object (a BertConfig), got %s", path,
                     json_is_array(root) ? "an array" : "a JSON scalar");
        goto done;
    }
    /* what bertcc computes: BERT's encoder with absolute positions, not a decoder */
    static const struct {
        const char *key, *want;
    } must[] = {{"model_type", "bert"}, {"position_embedding_type", "absolute"}};
    for (size_t k = 0; k < sizeof must / sizeof *must; k++) {
        json_t *v = json_object_get(root, must[k].key);
        if (v && !(json_is_string(v) && !strcmp(json_string_value(v), must[k].want))) {
            char *got = json_dumps(v, JSON_ENCODE_ANY);
            rc = bc_errf(e, "%s: %s is %.60s; bertcc computes only \"%s\" (absent means it)",
                         path, must[k].key, got ? got : "?", must[k].want);
            free(got);
            goto done;
        }
    }
    static const char *const off[] = {"is_decoder", "add_cross_attention"};
    for (size_t k = 0; k < sizeof off / sizeof *off; k++) {
        json_t *v = json_object_get(root, off[k]);
        if (v && !json_is_false(v)) {
            rc = bc_errf(e, "%s: %s must be false or absent: bertcc computes BERT's encoder",
                         path, off[k]);
            goto done;
        }
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        json_t *v = json_object_get(root, fields[i].hf);
        if (!v) {
            if (fields[i].required) {
                rc = bc_errf(e, "%s: missing key '%s'", path, fields[i].hf);
                goto done;
            }
            continue;
        }
        if ((rc = hf_field(path, v, &fields[i], &tmp, e)))
            goto done;
    }
    if ((rc = check_divisible(&tmp, "hidden_size", "num_attention_heads", e))) {
        bc_err_prefix(e, "%s", path);
        goto done;
    }
    const char *keys[] = {"_name_or_path", "model_type"};
    for (size_t k = 0; k < 2; k++) {
        json_t *v = json_object_get(root, keys[k]);
        if (json_is_string(v) && hf_name(&tmp, json_string_value(v)))
            break;
    }
    if ((rc = fe_model_check(&tmp, e))) {
        bc_err_prefix(e, "%s", path);
        goto done;
    }
    *m = tmp;
done:
    json_decref(root);
    return rc;
}

int fe_load_hf_config(const char *path, fe_model *m, bc_err *e)
{
    size_t len;
    char *text = bc_read_file(path, &len, e);
    if (!text)
        return -1;
    int rc = fe_parse_hf_config(text, len, path, m, e);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Dispatch and writing. */

int fe_load(const char *path, fe_model *m, bc_err *e)
{
    /* A Hugging Face model directory stands for its config.json. */
    struct stat sb;
    char cfg[4096];
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
            n--;
        if ((size_t)snprintf(cfg, sizeof cfg, "%.*s/config.json", (int)n, path) >=
            sizeof cfg)
            return bc_errf(e, "%s: path too long", path);
        if (access(cfg, F_OK))
            return bc_errf(e,
                           "%s: a directory without config.json (expected a model "
                           "description, a config.json, or a Hugging Face model "
                           "directory)",
                           path);
        path = cfg;
    }
    size_t len;
    char *text = bc_read_file(path, &len, e);
    if (!text)
        return -1;
    size_t i = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    size_t bom = i;
    while (i < len && is_xml_space(text[i]))
        i++;
    size_t pl = strlen(path);
    int json = (i < len && (text[i] == '{' || text[i] == '[')) ||
               (pl >= 5 && !strcmp(path + pl - 5, ".json"));
    int rc = json ? fe_parse_hf_config(text + bom, len - bom, path, m, e)
                  : fe_parse_xml(text, len, path, m, e);
    free(text);
    return rc;
}

/* The shortest %g form that reads back as exactly v. */
static void fmt_real(char *buf, size_t cap, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

int fe_write_xml(const fe_model *m, const char *path, bc_err *e)
{
    if (fe_model_check(m, e)) {
        bc_err_prefix(e, "%s: cannot write model", path);
        return -1;
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return bc_errf(e, "%s: cannot open for writing: %s", path, strerror(errno));
    char eps[32], hd[32], ad[32];
    fmt_real(eps, sizeof eps, m->layer_norm_eps);
    fmt_real(hd, sizeof hd, m->hidden_dropout);
    fmt_real(ad, sizeof ad, m->attention_dropout);
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<bert name=\"", f);
    put_escaped(f, m->name);
    fprintf(f,
            "\">\n"
            "  <encoder vocab-size=\"%lld\" hidden-size=\"%lld\" layers=\"%lld\" "
            "heads=\"%lld\"\n"
            "           intermediate-size=\"%lld\" max-position=\"%lld\" "
            "type-vocab-size=\"%lld\"\n"
            "           activation=\"%s\" layer-norm-eps=\"%s\"\n"
            "           hidden-dropout=\"%s\" attention-dropout=\"%s\"/>\n",
            (long long)m->vocab_size, (long long)m->hidden_size, (long long)m->layers,
            (long long)m->heads, (long long)m->intermediate_size,
            (long long)m->max_position, (long long)m->type_vocab_size,
            act_names[m->activation], eps, hd, ad);
    for (size_t h = 0; h < NHEADS; h++) {
        unsigned bit = head_types[h].bit;
        if (!(m->head_mask & bit))
            continue;
        fprintf(f, "  <head type=\"%s\"", head_types[h].name);
        if (bit == FE_HEAD_INTENT)
            fprintf(f, " classes=\"%lld\"", (long long)m->intent_classes);
        if (bit == FE_HEAD_SLOT)
            fprintf(f, " labels=\"%lld\"", (long long)m->slot_labels);
        fputs("/>\n", f);
    }
    fputs("</bert>\n", f);
    int bad = ferror(f);
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad)
        return bc_errf(e, "%s: cannot write: %s", path, strerror(err));
    return 0;
}
