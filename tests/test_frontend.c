/* test_frontend.c: model descriptions: XML parsing and its errors, config.json import,
 * writing and reading back, and the model files in models/; the class-weighted intent
 * loss the builder makes with FE_BUILD_INTENT_WEIGHTS. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/interp.h"
#include "../runtime/params.h"
#include "../train/batch.h"
#include "util.h"

/* A valid encoder on one line, and the same with one attribute left out or replaced. */
static const char *const enc_attrs[][2] = {
    {"vocab-size", "100"}, {"hidden-size", "64"},        {"layers", "2"},
    {"heads", "4"},        {"intermediate-size", "256"},
};
#define NENC (sizeof enc_attrs / sizeof enc_attrs[0])
#define ENC                                                                                \
    "<encoder vocab-size=\"100\" hidden-size=\"64\" layers=\"2\" heads=\"4\" "             \
    "intermediate-size=\"256\"/>"

static int parse(const char *xml, fe_model *m, bc_err *e)
{
    return fe_parse_xml(xml, strlen(xml), "m.xml", m, e);
}

/* Asserts that xml is rejected with "m.xml:LINE: ..." mentioning needle. */
static void expect_err_at(const char *xml, long line, const char *needle)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse(xml, &m, &e), -1, "accepted:\n%s", xml);
    char pos[64];
    snprintf(pos, sizeof pos, "m.xml:%ld: ", line);
    cr_assert(strncmp(e.msg, pos, strlen(pos)) == 0, "message '%s' lacks '%s' for:\n%s",
              e.msg, pos, xml);
    cr_assert(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s' for:\n%s", e.msg,
              needle, xml);
}

/* An encoder with attribute `name` set to `value` (or left out when value is NULL), on
 * line 2 of a document, followed by `extra` attributes. */
static char *doc_with(const char *name, const char *value, const char *extra)
{
    static char buf[4096];
    int n = snprintf(buf, sizeof buf, "<bert>\n<encoder");
    for (size_t i = 0; i < NENC; i++) {
        if (strcmp(enc_attrs[i][0], name) == 0)
            continue;
        n += snprintf(buf + n, sizeof buf - n, " %s=\"%s\"", enc_attrs[i][0],
                      enc_attrs[i][1]);
    }
    if (value)
        n += snprintf(buf + n, sizeof buf - n, " %s=\"%s\"", name, value);
    snprintf(buf + n, sizeof buf - n, "%s/>\n</bert>\n", extra ? extra : "");
    return buf;
}

/* ---- valid input ---------------------------------------------------------------- */

Test(frontend, defaults_are_berts)
{
    fe_model m;
    fe_model_defaults(&m);
    cr_assert_str_eq(m.name, "bert");
    cr_assert_eq(m.vocab_size, 0);
    cr_assert_eq(m.hidden_size, 0);
    cr_assert_eq(m.max_position, 512);
    cr_assert_eq(m.type_vocab_size, 2);
    cr_assert_eq(m.activation, FE_ACT_GELU);
    cr_assert_eq(m.layer_norm_eps, 1e-12);
    cr_assert_eq(m.hidden_dropout, 0.1);
    cr_assert_eq(m.attention_dropout, 0.1);
    cr_assert_eq(m.head_mask, 0u);
}

Test(frontend, parses_every_attribute)
{
    const char *xml =
        "<?xml version=\"1.0\"?>\n"
        "<!-- a model -->\n"
        "<bert name=\"my-bert\">\n"
        "  <encoder vocab-size=\"1000\" hidden-size=\"96\" layers=\"3\"\n"
        "           heads=\"6\" intermediate-size=\"384\" max-position=\"128\"\n"
        "           type-vocab-size=\"3\" activation=\"gelu_tanh\"\n"
        "           layer-norm-eps=\"1e-5\" hidden-dropout=\"0.25\"\n"
        "           attention-dropout=\"0\"><!-- inside --></encoder>\n"
        "  <head type=\"qa\"/>\n"
        "  <head type=\"slot\" labels=\"9\"/>\n"
        "  <head type=\"mlm\"> <!-- tied --> </head>\n"
        "  <head type=\"intent\" classes=\"7\"/>\n"
        "  <head type=\"nsp\"/>\n"
        "</bert>\n"
        "<!-- trailing -->\n";
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse(xml, &m, &e), 0, "%s", e.msg);
    cr_assert_str_eq(m.name, "my-bert");
    cr_assert_eq(m.vocab_size, 1000);
    cr_assert_eq(m.hidden_size, 96);
    cr_assert_eq(m.layers, 3);
    cr_assert_eq(m.heads, 6);
    cr_assert_eq(m.intermediate_size, 384);
    cr_assert_eq(m.max_position, 128);
    cr_assert_eq(m.type_vocab_size, 3);
    cr_assert_eq(m.activation, FE_ACT_GELU_TANH);
    cr_assert_eq(m.layer_norm_eps, 1e-5);
    cr_assert_eq(m.hidden_dropout, 0.25);
    cr_assert_eq(m.attention_dropout, 0.0);
    cr_assert_eq(m.head_mask,
                 FE_HEAD_MLM | FE_HEAD_NSP | FE_HEAD_INTENT | FE_HEAD_SLOT | FE_HEAD_QA);
    cr_assert_eq(m.intent_classes, 7);
    cr_assert_eq(m.slot_labels, 9);
    cr_assert_eq(fe_model_check(&m, &e), 0, "%s", e.msg);
}

Test(frontend, applies_defaults)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse("<bert>" ENC "</bert>", &m, &e), 0, "%s", e.msg);
    cr_assert_str_eq(m.name, "bert");
    cr_assert_eq(m.vocab_size, 100);
    cr_assert_eq(m.hidden_size, 64);
    cr_assert_eq(m.layers, 2);
    cr_assert_eq(m.heads, 4);
    cr_assert_eq(m.intermediate_size, 256);
    cr_assert_eq(m.max_position, 512);
    cr_assert_eq(m.type_vocab_size, 2);
    cr_assert_eq(m.activation, FE_ACT_GELU);
    cr_assert_eq(m.layer_norm_eps, 1e-12);
    cr_assert_eq(m.hidden_dropout, 0.1);
    cr_assert_eq(m.attention_dropout, 0.1);
    cr_assert_eq(m.head_mask, 0u);
    cr_assert_eq(m.intent_classes, 0);
    cr_assert_eq(m.slot_labels, 0);
}

Test(frontend, accepts_gelu_and_each_head_alone)
{
    static const struct {
        const char *head;
        unsigned bit;
    } hs[] = {{"<head type=\"mlm\"/>", FE_HEAD_MLM},
              {"<head type=\"nsp\"/>", FE_HEAD_NSP},
              {"<head classes=\"2\" type=\"intent\"/>", FE_HEAD_INTENT},
              {"<head type=\"slot\" labels=\"1\"/>", FE_HEAD_SLOT},
              {"<head type=\"qa\"/>", FE_HEAD_QA}};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        char xml[1024];
        snprintf(xml, sizeof xml, "<bert>%s" ENC "</bert>", hs[i].head);
        fe_model m;
        bc_err e = {{0}};
        cr_assert_eq(parse(xml, &m, &e), 0, "%s: %s", xml, e.msg);
        cr_assert_eq(m.head_mask, hs[i].bit);
    }
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse(doc_with("activation", "gelu", NULL), &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.activation, FE_ACT_GELU);
}

Test(frontend, accepts_names_up_to_127_bytes_and_escapes)
{
    char xml[1024], name[128];
    memset(name, 'n', 127);
    name[127] = 0;
    snprintf(xml, sizeof xml, "<bert name=\"%s\">" ENC "</bert>", name);
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse(xml, &m, &e), 0, "%s", e.msg);
    cr_assert_str_eq(m.name, name);
    cr_assert_eq(parse("<bert name=\"a&amp;b &lt;c&gt;\">" ENC "</bert>", &m, &e), 0, "%s",
                 e.msg);
    cr_assert_str_eq(m.name, "a&b <c>");
}

/* ---- malformed XML and structure ------------------------------------------------ */

Test(frontend, rejects_malformed_xml_with_line)
{
    expect_err_at("<bert>\n  <encoder vocab-size=\"1\">\n</bert>\n", 3, "encoder");
    expect_err_at("<bert>\n\n<encoder vocab-size=\"1/>\n</bert>\n", 4, "<");
    expect_err_at("<bert>\n" ENC "\n</bert>\n<bert/>\n", 4, "Extra content");
    expect_err_at("", 1, "empty");
    expect_err_at("  \n\n", 3, "");
    expect_err_at("<bert>\n<encoder a=\"1\" a=\"2\"/>\n</bert>", 2, "a");
    expect_err_at("<bert>\n&undefined;\n</bert>", 2, "undefined");
}

Test(frontend, rejects_wrong_root)
{
    expect_err_at("<!-- c -->\n<model>" ENC "</model>", 2, "model");
    expect_err_at("<b:bert xmlns:b=\"urn:x\">" ENC "</b:bert>", 1, "b:bert");
}

Test(frontend, rejects_unknown_elements)
{
    expect_err_at("<bert>\n" ENC "\n<foo/>\n</bert>", 3, "foo");
    expect_err_at("<bert>\n" ENC "\n  <decoder>\n</decoder></bert>", 3, "decoder");
    expect_err_at("<bert xmlns:x=\"urn:x\">\n" ENC "\n<x:head type=\"mlm\"/></bert>", 3,
                  "x:head");
    expect_err_at("<bert>\n<encoder vocab-size=\"100\" hidden-size=\"64\" layers=\"2\" "
                  "heads=\"4\" intermediate-size=\"256\">\n\n <layer/></encoder></bert>",
                  4, "layer");
    expect_err_at("<bert>\n" ENC "\n<head type=\"mlm\">\n<x/></head></bert>", 4, "x");
}

Test(frontend, rejects_unknown_attributes)
{
    expect_err_at("<bert\n  size=\"2\">" ENC "</bert>", 2, "size");
    expect_err_at(doc_with("dropout", "0.1", NULL), 2, "dropout");
    /* The attribute's own line, not the element's. */
    expect_err_at(doc_with("x", NULL, "\n\n   colour=\"red\""), 4, "colour");
    expect_err_at("<bert xmlns:p=\"urn:p\">\n" ENC
                  "\n<head type=\"mlm\" p:type=\"nsp\"/></bert>",
                  3, "p:type");
    expect_err_at("<bert>\n" ENC "\n<head type=\"mlm\"\n   classes=\"3\"/></bert>", 4,
                  "classes");
    expect_err_at("<bert>\n" ENC
                  "\n<head type=\"slot\" labels=\"3\" classes=\"3\"/></bert>",
                  3, "classes");
    expect_err_at("<bert>\n" ENC
                  "\n<head type=\"intent\" classes=\"3\" labels=\"3\"/></bert>",
                  3, "labels");
    expect_err_at("<bert>\n" ENC "\n<head type=\"qa\" labels=\"3\"/></bert>", 3, "labels");
}

Test(frontend, rejects_missing_required_sizes)
{
    for (size_t i = 0; i < NENC; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "'%s'", enc_attrs[i][0]);
        expect_err_at(doc_with(enc_attrs[i][0], NULL, NULL), 2, needle);
    }
}

Test(frontend, rejects_bad_sizes)
{
    static const char *const bad[] = {"",
                                      "abc",
                                      "12x",
                                      " 12",
                                      "12 ",
                                      "0",
                                      "-3",
                                      "-0",
                                      "+5",
                                      "1.5",
                                      "0x10",
                                      "2147483648",
                                      "99999999999999999999999999"};
    static const char *const sizes[] = {
        "vocab-size",        "hidden-size",  "layers",         "heads",
        "intermediate-size", "max-position", "type-vocab-size"};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
            expect_err_at(doc_with(sizes[s], bad[b], NULL), 2, sizes[s]);
    /* The largest size is accepted. */
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse(doc_with("vocab-size", "2147483647", NULL), &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.vocab_size, FE_MAX_SIZE);
    cr_assert_eq(parse(doc_with("layers", "007", NULL), &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.layers, 7);
}

Test(frontend, rejects_bad_eps_and_dropouts)
{
    static const char *const bad_eps[] = {"",      "0",      "-1e-5", "inf",   "nan",
                                          "1e999", "1e-400", "x",     "1e-5x", " 1e-5"};
    for (size_t b = 0; b < sizeof bad_eps / sizeof bad_eps[0]; b++)
        expect_err_at(doc_with("layer-norm-eps", bad_eps[b], NULL), 2, "layer-norm-eps");
    static const char *const bad_p[] = {"",    "1",   "1.5", "-0.1",
                                        "nan", "inf", "abc", "0.1 "};
    for (size_t b = 0; b < sizeof bad_p / sizeof bad_p[0]; b++) {
        expect_err_at(doc_with("hidden-dropout", bad_p[b], NULL), 2, "hidden-dropout");
        expect_err_at(doc_with("attention-dropout", bad_p[b], NULL), 2,
                      "attention-dropout");
    }
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse(doc_with("hidden-dropout", "0.999", NULL), &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.hidden_dropout, 0.999);
}

Test(frontend, rejects_hidden_not_divisible_by_heads)
{
    expect_err_at("<bert>\n\n<encoder vocab-size=\"100\" hidden-size=\"66\" layers=\"2\"\n"
                  " heads=\"4\" intermediate-size=\"256\"/></bert>",
                  3, "hidden-size 66 is not divisible by heads 4");
}

Test(frontend, rejects_unknown_activation_and_head_type)
{
    expect_err_at(doc_with("activation", "relu", NULL), 2, "relu");
    expect_err_at(doc_with("activation", "GELU", NULL), 2, "GELU");
    expect_err_at("<bert>\n" ENC "\n<head\n type=\"ner\"/></bert>", 4, "ner");
    expect_err_at("<bert>\n" ENC "\n<head/></bert>", 3, "type");
}

Test(frontend, rejects_bad_head_sizes)
{
    expect_err_at("<bert>\n" ENC "\n<head type=\"intent\"/></bert>", 3, "classes");
    expect_err_at("<bert>\n" ENC "\n<head type=\"slot\"/></bert>", 3, "labels");
    expect_err_at("<bert>\n" ENC "\n<head type=\"intent\" classes=\"0\"/></bert>", 3,
                  "classes");
    expect_err_at("<bert>\n" ENC "\n<head type=\"intent\" classes=\"\"/></bert>", 3,
                  "classes");
    expect_err_at("<bert>\n" ENC "\n<head type=\"slot\" labels=\"-1\"/></bert>", 3,
                  "labels");
    expect_err_at("<bert>\n" ENC "\n<head type=\"slot\" labels=\"5x\"/></bert>", 3,
                  "labels");
    expect_err_at("<bert>\n" ENC "\n<head type=\"slot\" labels=\"3000000000\"/></bert>", 3,
                  "labels");
}

Test(frontend, rejects_duplicate_heads_at_the_second)
{
    expect_err_at("<bert>\n" ENC "\n<head type=\"mlm\"/>\n<head type=\"nsp\"/>\n"
                  "<head type=\"mlm\"/>\n</bert>",
                  5, "mlm");
    expect_err_at("<bert>\n<head type=\"intent\" classes=\"2\"/>\n" ENC
                  "\n<head type=\"intent\" classes=\"3\"/></bert>",
                  4, "first at line 2");
}

Test(frontend, rejects_missing_or_second_encoder)
{
    expect_err_at("<!-- x -->\n<bert>\n<head type=\"mlm\"/>\n</bert>", 2, "encoder");
    expect_err_at("<bert/>", 1, "encoder");
    expect_err_at("<bert>\n" ENC "\n<head type=\"qa\"/>\n" ENC "\n</bert>", 4, "encoder");
}

Test(frontend, rejects_text_content)
{
    expect_err_at("<bert>\n" ENC "\n\n  hello\n</bert>", 4, "hello");
    expect_err_at("<bert>hi" ENC "</bert>", 1, "hi");
    expect_err_at("<bert>\n<encoder vocab-size=\"100\" hidden-size=\"64\" layers=\"2\" "
                  "heads=\"4\" intermediate-size=\"256\">\n  64\n</encoder></bert>",
                  3, "64");
    expect_err_at("<bert>\n" ENC "\n<head type=\"nsp\">\n\n yes</head></bert>", 5, "yes");
    expect_err_at("<bert>\n" ENC "\n<![CDATA[data]]></bert>", 3, "data");
    expect_err_at("<bert>\n" ENC "\n<?pi x?></bert>", 3, "pi");
    /* Long text arrives in chunks; the line is still that of its first letter. */
    char xml[8192];
    int n = snprintf(xml, sizeof xml, "<bert>\n" ENC "\n");
    for (int i = 0; i < 600; i++)
        xml[n++] = i % 60 == 59 ? '\n' : ' ';
    snprintf(xml + n, sizeof xml - n, "oops\n</bert>");
    expect_err_at(xml, 13, "'oops'");
    /* Blank text, comments and character references to blanks are fine. */
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(
        parse("<bert> \t\r\n<!-- c -->&#32;<![CDATA[  ]]>" ENC "\n</bert>", &m, &e), 0,
        "%s", e.msg);
}

Test(frontend, rejects_bad_names)
{
    char xml[1024], name[129];
    memset(name, 'n', 128);
    name[128] = 0;
    snprintf(xml, sizeof xml, "<bert\n name=\"%s\">" ENC "</bert>", name);
    expect_err_at(xml, 2, "name");
    expect_err_at("<bert name=\"\">" ENC "</bert>", 1, "name");
    expect_err_at("<bert name=\"a&#10;b\">" ENC "</bert>", 1, "name");
}

Test(frontend, rejects_doctype_and_survives_entity_bombs)
{
    expect_err_at("<!-- c -->\n<!DOCTYPE bert>\n<bert>" ENC "</bert>", 2, "DOCTYPE");
    const char *bomb =
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE bert [\n"
        " <!ENTITY a \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\">\n"
        " <!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\n"
        " <!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">\n"
        " <!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">\n"
        " <!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">\n"
        " <!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">\n"
        " <!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">\n"
        "]>\n"
        "<bert name=\"&g;\">&g;" ENC "</bert>\n";
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(parse(bomb, &m, &e), -1);
    cr_assert(strncmp(e.msg, "m.xml:", 6) == 0, "%s", e.msg);
    expect_err_at("<!DOCTYPE bert SYSTEM \"http://example.invalid/bert.dtd\">\n<bert>" ENC
                  "</bert>",
                  1, "DOCTYPE");
}

Test(frontend, reports_lines_past_65535)
{
    size_t n = 70000;
    char *xml = malloc(n + 256);
    cr_assert_not_null(xml);
    strcpy(xml, "<bert>" ENC);
    size_t k = strlen(xml);
    memset(xml + k, '\n', n);
    strcpy(xml + k + n, "<foo/></bert>");
    expect_err_at(xml, 70001, "foo");
    free(xml);
}

Test(frontend, load_xml_reports_missing_file)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load_xml("/nonexistent/bertcc/x.xml", &m, &e), -1);
    cr_assert(strstr(e.msg, "/nonexistent/bertcc/x.xml") != NULL, "%s", e.msg);
    const char *dir = tu_tmpdir();
    cr_assert_eq(fe_load(dir, &m, &e), -1);
    cr_assert(strstr(e.msg, dir) != NULL, "%s", e.msg);
    rmdir(dir);
}

/* ---- fe_model_check ------------------------------------------------------------- */

static fe_model valid_model(void)
{
    fe_model m;
    fe_model_defaults(&m);
    m.vocab_size = 100;
    m.hidden_size = 64;
    m.layers = 2;
    m.heads = 4;
    m.intermediate_size = 256;
    return m;
}

Test(frontend, model_check_names_the_problem)
{
    bc_err e = {{0}};
    fe_model m = valid_model();
    cr_assert_eq(fe_model_check(&m, &e), 0, "%s", e.msg);
    fe_model d;
    fe_model_defaults(&d);
    cr_assert_eq(fe_model_check(&d, &e), -1); /* sizes are 0 */
    cr_assert(strstr(e.msg, "vocab-size") != NULL, "%s", e.msg);

    m = valid_model();
    m.heads = 5;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "divisible") != NULL, "%s", e.msg);
    m = valid_model();
    m.layers = -1;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "layers") != NULL, "%s", e.msg);
    m = valid_model();
    m.max_position = FE_MAX_SIZE + 1;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "max-position") != NULL, "%s", e.msg);
    m = valid_model();
    m.layer_norm_eps = INFINITY;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "layer-norm-eps") != NULL, "%s", e.msg);
    m = valid_model();
    m.attention_dropout = 1.0;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "attention-dropout") != NULL, "%s", e.msg);
    m = valid_model();
    m.activation = (fe_activation)7;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "activation") != NULL, "%s", e.msg);
    m = valid_model();
    m.head_mask = FE_HEAD_INTENT;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "intent") != NULL, "%s", e.msg);
    m.intent_classes = 3;
    cr_assert_eq(fe_model_check(&m, &e), 0, "%s", e.msg);
    m.head_mask = FE_HEAD_SLOT;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "slot") != NULL, "%s", e.msg);
    m.head_mask = 1u << 7;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "head") != NULL, "%s", e.msg);
    m = valid_model();
    m.name[0] = 0;
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "name") != NULL, "%s", e.msg);
    m = valid_model();
    memset(m.name, 'x', sizeof m.name);
    cr_assert_eq(fe_model_check(&m, &e), -1);
    cr_assert(strstr(e.msg, "name") != NULL, "%s", e.msg);
    cr_assert_eq(fe_model_check(&m, NULL), -1);
}

/* ---- Hugging Face config.json --------------------------------------------------- */

static const char *hf_base = "{\n"
                             "  \"_name_or_path\": \"google/bert_uncased_L-4_H-256_A-4\",\n"
                             "  \"architectures\": [\"BertForMaskedLM\"],\n"
                             "  \"attention_probs_dropout_prob\": 0.05,\n"
                             "  \"classifier_dropout\": null,\n"
                             "  \"hidden_act\": \"gelu\",\n"
                             "  \"hidden_dropout_prob\": 0.2,\n"
                             "  \"hidden_size\": 256,\n"
                             "  \"initializer_range\": 0.02,\n"
                             "  \"intermediate_size\": 1024,\n"
                             "  \"layer_norm_eps\": 1e-07,\n"
                             "  \"max_position_embeddings\": 256,\n"
                             "  \"model_type\": \"bert\",\n"
                             "  \"num_attention_heads\": 4,\n"
                             "  \"num_hidden_layers\": 4,\n"
                             "  \"pad_token_id\": 0,\n"
                             "  \"type_vocab_size\": 3,\n"
                             "  \"vocab_size\": 30522,\n"
                             "  \"id2label\": {\"0\": \"a\", \"1\": \"b\"}\n"
                             "}\n";

static int hf(const char *json, fe_model *m, bc_err *e)
{
    return fe_parse_hf_config(json, strlen(json), "config.json", m, e);
}

/* hf_base with `key`'s line replaced by `line` (or dropped when line is ""). */
static char *hf_with(const char *key, const char *line)
{
    static char buf[4096];
    char pat[64];
    snprintf(pat, sizeof pat, "  \"%s\":", key);
    const char *at = strstr(hf_base, pat);
    cr_assert_not_null(at, "%s", key);
    const char *eol = strchr(at, '\n') + 1;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - hf_base), hf_base, line, eol);
    return buf;
}

static void expect_hf_err(const char *json, const char *prefix, const char *needle)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(hf(json, &m, &e), -1, "accepted:\n%s", json);
    cr_assert(strncmp(e.msg, prefix, strlen(prefix)) == 0, "'%s' lacks '%s'", e.msg,
              prefix);
    cr_assert(strstr(e.msg, needle) != NULL, "'%s' lacks '%s'", e.msg, needle);
}

Test(frontend, imports_hf_config)
{
    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(hf(hf_base, &m, &e), 0, "%s", e.msg);
    cr_assert_str_eq(m.name, "bert_uncased_L-4_H-256_A-4");
    cr_assert_eq(m.vocab_size, 30522);
    cr_assert_eq(m.hidden_size, 256);
    cr_assert_eq(m.layers, 4);
    cr_assert_eq(m.heads, 4);
    cr_assert_eq(m.intermediate_size, 1024);
    cr_assert_eq(m.max_position, 256);
    cr_assert_eq(m.type_vocab_size, 3);
    cr_assert_eq(m.activation, FE_ACT_GELU);
    cr_assert_eq(m.layer_norm_eps, 1e-7);
    cr_assert_eq(m.hidden_dropout, 0.2);
    cr_assert_eq(m.attention_dropout, 0.05);
    cr_assert_eq(m.head_mask, 0u);
}

Test(frontend, hf_config_defaults_names_and_activations)
{
    fe_model m;
    bc_err e = {{0}};
    const char *minimal =
        "{\"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1,"
        " \"num_attention_heads\": 2, \"intermediate_size\": 32}";
    cr_assert_eq(hf(minimal, &m, &e), 0, "%s", e.msg);
    cr_assert_str_eq(m.name, "bert");
    cr_assert_eq(m.max_position, 512);
    cr_assert_eq(m.type_vocab_size, 2);
    cr_assert_eq(m.activation, FE_ACT_GELU);
    cr_assert_eq(m.layer_norm_eps, 1e-12);
    cr_assert_eq(m.hidden_dropout, 0.1);
    cr_assert_eq(m.attention_dropout, 0.1);

    cr_assert_eq(hf(hf_with("_name_or_path", "  \"_name_or_path\": \"\",\n"), &m, &e), 0);
    cr_assert_str_eq(m.name, "bert"); /* from model_type */
    cr_assert_eq(
        hf(hf_with("_name_or_path", "  \"_name_or_path\": \"/x/my-model/\",\n"), &m, &e),
        0);
    cr_assert_str_eq(m.name, "my-model");
    cr_assert_eq(hf(hf_with("model_type", ""), &m, &e), 0);
    cr_assert_str_eq(m.name, "bert_uncased_L-4_H-256_A-4");

    static const struct {
        const char *act;
        fe_activation want;
    } acts[] = {{"gelu", FE_ACT_GELU},
                {"gelu_new", FE_ACT_GELU_TANH},
                {"gelu_pytorch_tanh", FE_ACT_GELU_TANH},
                {"gelu_fast", FE_ACT_GELU_TANH}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "  \"hidden_act\": \"%s\",\n", acts[i].act);
        cr_assert_eq(hf(hf_with("hidden_act", line), &m, &e), 0, "%s", e.msg);
        cr_assert_eq(m.activation, acts[i].want, "%s", acts[i].act);
    }
}

Test(frontend, hf_config_errors)
{
    expect_hf_err("{\n  \"vocab_size\": 3,\n  oops\n}", "config.json:3: ", "");
    expect_hf_err("", "config.json", "");
    expect_hf_err("[1, 2]", "config.json: ", "object");
    expect_hf_err("{\"a\": 1, \"a\": 2}", "config.json:", "");
    static const char *const required[] = {"vocab_size", "hidden_size", "num_hidden_layers",
                                           "num_attention_heads", "intermediate_size"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        expect_hf_err(hf_with(required[i], ""), "config.json: ", required[i]);
    expect_hf_err(hf_with("hidden_act", "  \"hidden_act\": \"relu\",\n"),
                  "config.json: ", "relu");
    expect_hf_err(hf_with("hidden_act", "  \"hidden_act\": 3,\n"),
                  "config.json: ", "hidden_act");
    expect_hf_err(hf_with("hidden_size", "  \"hidden_size\": 255,\n"),
                  "config.json: ", "not divisible");
    expect_hf_err(hf_with("hidden_size", "  \"hidden_size\": \"256\",\n"),
                  "config.json: ", "hidden_size");
    expect_hf_err(hf_with("hidden_size", "  \"hidden_size\": 256.5,\n"),
                  "config.json: ", "hidden_size");
    expect_hf_err(hf_with("num_hidden_layers", "  \"num_hidden_layers\": 0,\n"),
                  "config.json: ", "num_hidden_layers");
    expect_hf_err(hf_with("vocab_size", "  \"vocab_size\": -5,\n"),
                  "config.json: ", "vocab_size");
    expect_hf_err(hf_with("vocab_size", "  \"vocab_size\": 99999999999,\n"),
                  "config.json: ", "vocab_size");
    expect_hf_err(hf_with("layer_norm_eps", "  \"layer_norm_eps\": 0,\n"),
                  "config.json: ", "layer_norm_eps");
    expect_hf_err(hf_with("hidden_dropout_prob", "  \"hidden_dropout_prob\": 1.0,\n"),
                  "config.json: ", "hidden_dropout_prob");
    expect_hf_err(hf_with("attention_probs_dropout_prob",
                          "  \"attention_probs_dropout_prob\": \"0.1\",\n"),
                  "config.json: ", "attention_probs_dropout_prob");
}

Test(frontend, loads_hf_config_files_and_dispatches)
{
    const char *dir = tu_tmpdir();
    char json_path[1024], xml_path[1024];
    snprintf(json_path, sizeof json_path, "%s", tu_path(dir, "config.json"));
    snprintf(xml_path, sizeof xml_path, "%s", tu_path(dir, "model.xml"));
    char buf[4096];
    snprintf(buf, sizeof buf, "\n \t%s", hf_base);
    cr_assert_eq(tu_write_file(json_path, buf), 0);
    cr_assert_eq(tu_write_file(xml_path, "\n  <bert name=\"x\">" ENC "</bert>"), 0);

    fe_model m;
    bc_err e = {{0}};
    cr_assert_eq(fe_load_hf_config(json_path, &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.hidden_size, 256);
    cr_assert_eq(fe_load(json_path, &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m.intermediate_size, 1024);
    cr_assert_eq(fe_load(xml_path, &m, &e), 0, "%s", e.msg);
    cr_assert_str_eq(m.name, "x");
    cr_assert_eq(m.hidden_size, 64);

    /* Errors from fe_load carry the file's own path and line. */
    cr_assert_eq(tu_write_file(json_path, "{\n\"vocab_size\": 1,\n}\n"), 0);
    cr_assert_eq(fe_load(json_path, &m, &e), -1);
    char want[1100];
    snprintf(want, sizeof want, "%s:3: ", json_path);
    cr_assert(strncmp(e.msg, want, strlen(want)) == 0, "%s", e.msg);
    cr_assert_eq(tu_write_file(xml_path, "<bert>\n<encoder/>\n</bert>"), 0);
    cr_assert_eq(fe_load(xml_path, &m, &e), -1);
    snprintf(want, sizeof want, "%s:2: ", xml_path);
    cr_assert(strncmp(e.msg, want, strlen(want)) == 0, "%s", e.msg);
    cr_assert_eq(fe_load_hf_config("/nonexistent/config.json", &m, &e), -1);
    cr_assert(strstr(e.msg, "/nonexistent/config.json") != NULL, "%s", e.msg);

    unlink(json_path);
    unlink(xml_path);
    rmdir(dir);
}

/* ---- writing -------------------------------------------------------------------- */

static void assert_same_model(const fe_model *a, const fe_model *b)
{
    cr_assert_str_eq(a->name, b->name);
    cr_assert_eq(a->vocab_size, b->vocab_size);
    cr_assert_eq(a->hidden_size, b->hidden_size);
    cr_assert_eq(a->layers, b->layers);
    cr_assert_eq(a->heads, b->heads);
    cr_assert_eq(a->intermediate_size, b->intermediate_size);
    cr_assert_eq(a->max_position, b->max_position);
    cr_assert_eq(a->type_vocab_size, b->type_vocab_size);
    cr_assert_eq(a->activation, b->activation);
    cr_assert(memcmp(&a->layer_norm_eps, &b->layer_norm_eps, sizeof(double)) == 0,
              "%.17g vs %.17g", a->layer_norm_eps, b->layer_norm_eps);
    cr_assert(memcmp(&a->hidden_dropout, &b->hidden_dropout, sizeof(double)) == 0);
    cr_assert(memcmp(&a->attention_dropout, &b->attention_dropout, sizeof(double)) == 0);
    cr_assert_eq(a->head_mask, b->head_mask);
    cr_assert_eq(a->intent_classes, b->intent_classes);
    cr_assert_eq(a->slot_labels, b->slot_labels);
}

Test(frontend, write_then_read_is_identity)
{
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "out.xml"));

    fe_model a = valid_model();
    snprintf(a.name, sizeof a.name, "odd \"name\" & <co> 'x' é");
    a.max_position = 77;
    a.type_vocab_size = 1;
    a.activation = FE_ACT_GELU_TANH;
    a.layer_norm_eps = 1.0 / 3e7;
    a.hidden_dropout = 0.1 + 0.2;
    a.attention_dropout = 0.0;
    a.head_mask = FE_HEAD_MLM | FE_HEAD_NSP | FE_HEAD_INTENT | FE_HEAD_SLOT | FE_HEAD_QA;
    a.intent_classes = 11;
    a.slot_labels = 2147483647;

    fe_model b;
    bc_err e = {{0}};
    cr_assert_eq(fe_write_xml(&a, path, &e), 0, "%s", e.msg);
    cr_assert_eq(fe_load_xml(path, &b, &e), 0, "%s", e.msg);
    assert_same_model(&a, &b);

    /* Each head alone, and none; defaults written plainly. */
    for (unsigned bit = 0; bit <= FE_HEAD_QA; bit = bit ? bit << 1 : 1) {
        a = valid_model();
        a.head_mask = bit;
        a.intent_classes = bit == FE_HEAD_INTENT ? 4 : 0;
        a.slot_labels = bit == FE_HEAD_SLOT ? 6 : 0;
        cr_assert_eq(fe_write_xml(&a, path, &e), 0, "%s", e.msg);
        cr_assert_eq(fe_load(path, &b, &e), 0, "%s", e.msg);
        assert_same_model(&a, &b);
    }
    char *text = tu_read_file(path, NULL);
    cr_assert_not_null(text);
    cr_assert(strstr(text, "layer-norm-eps=\"1e-12\"") != NULL, "%s", text);
    cr_assert(strstr(text, "hidden-dropout=\"0.1\"") != NULL, "%s", text);
    free(text);

    /* An invalid model is not written; an unwritable path is an error naming it. */
    a = valid_model();
    a.heads = 3;
    cr_assert_eq(fe_write_xml(&a, path, &e), -1);
    cr_assert(strstr(e.msg, "divisible") != NULL, "%s", e.msg);
    a = valid_model();
    cr_assert_eq(fe_write_xml(&a, "/nonexistent/dir/m.xml", &e), -1);
    cr_assert(strstr(e.msg, "/nonexistent/dir/m.xml") != NULL, "%s", e.msg);

    unlink(path);
    rmdir(dir);
}

Test(frontend, hf_config_written_as_xml_reads_back)
{
    const char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(dir, "from-hf.xml"));
    fe_model a, b;
    bc_err e = {{0}};
    cr_assert_eq(hf(hf_base, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(fe_write_xml(&a, path, &e), 0, "%s", e.msg);
    cr_assert_eq(fe_load_xml(path, &b, &e), 0, "%s", e.msg);
    assert_same_model(&a, &b);
    unlink(path);
    rmdir(dir);
}

/* ---- the repository's models ---------------------------------------------------- */

Test(frontend, every_model_file_parses)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", tu_src("models"));
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int count = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t n = strlen(ent->d_name);
        if (n < 5 || strcmp(ent->d_name + n - 4, ".xml") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        fe_model m;
        bc_err e = {{0}};
        cr_assert_eq(fe_load_xml(path, &m, &e), 0, "%s", e.msg);
        cr_assert_eq(fe_model_check(&m, &e), 0, "%s: %s", path, e.msg);
        cr_assert_eq(strncmp(m.name, ent->d_name, n - 4) == 0 && m.name[n - 4] == 0, 1,
                     "%s: name '%s' is not the file's", path, m.name);
        count++;
    }
    closedir(d);
    cr_assert_geq(count, 1, "no models/*.xml in %s", dir);
}

Test(frontend, model_sizes_are_berts)
{
    static const struct {
        const char *file;
        int64_t layers, hidden, heads;
    } sizes[] = {
        {"models/bert-tiny.xml", 2, 128, 2},   {"models/bert-mini.xml", 4, 256, 4},
        {"models/bert-small.xml", 4, 512, 8},  {"models/bert-medium.xml", 8, 512, 8},
        {"models/bert-base.xml", 12, 768, 12}, {"models/bert-large.xml", 24, 1024, 16}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        fe_model m;
        bc_err e = {{0}};
        cr_assert_eq(fe_load(tu_src(sizes[i].file), &m, &e), 0, "%s", e.msg);
        cr_assert_eq(m.layers, sizes[i].layers, "%s", sizes[i].file);
        cr_assert_eq(m.hidden_size, sizes[i].hidden, "%s", sizes[i].file);
        cr_assert_eq(m.heads, sizes[i].heads, "%s", sizes[i].file);
        cr_assert_eq(m.intermediate_size, 4 * sizes[i].hidden, "%s", sizes[i].file);
        cr_assert_eq(m.vocab_size, 30522);
        cr_assert_eq(m.max_position, 512);
        cr_assert_eq(m.head_mask, (unsigned)(FE_HEAD_MLM | FE_HEAD_NSP), "%s",
                     sizes[i].file);
    }
}

/* ---- the class-weighted intent loss (FE_BUILD_INTENT_WEIGHTS) ----------------------- */

/* An MLM, intent (5 classes: odd) and slot model, small enough to run in double. */
static void weighted_model(fe_model *m)
{
    static const char xml[] =
        "<bert name=\"wce\"><encoder vocab-size=\"50\" hidden-size=\"16\" layers=\"1\" "
        "heads=\"2\" intermediate-size=\"32\" max-position=\"16\"/><head type=\"mlm\"/>"
        "<head type=\"intent\" classes=\"5\"/><head type=\"slot\" labels=\"3\"/></bert>";
    bc_err e = {{0}};
    cr_assert_eq(parse(xml, m, &e), 0, "%s", e.msg);
}

#define WCE_LABELS (FE_LABEL_MLM | FE_LABEL_INTENT | FE_LABEL_SLOT)

static ir_graph *build_wce(const fe_model *m, unsigned labels, int gather)
{
    bc_err e = {{0}};
    ir_graph *g =
        gather ? fe_build_bert_mlm_gather(m, labels, 2, &e) : fe_build_bert(m, labels, &e);
    cr_assert_not_null(g, "%s", e.msg);
    return g;
}

static int count_ce(const ir_graph *g, int nin)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        n += g->nodes[i].op == IR_OP_CROSS_ENTROPY && g->nodes[i].nin == nin;
    return n;
}

Test(frontend_build, intent_weights_add_one_input_and_weight_only_the_intent_loss)
{
    fe_model m;
    weighted_model(&m);
    for (int gather = 0; gather <= 1; gather++)
        for (int train = 0; train <= 1; train++) {
            unsigned labels = WCE_LABELS | (train ? FE_BUILD_TRAIN : 0);
            ir_graph *g0 = build_wce(&m, labels, gather);
            ir_graph *g1 = build_wce(&m, labels | FE_BUILD_INTENT_WEIGHTS, gather);
            int w = ir_find_named(g1, IR_OP_INPUT, "intent_class_weights");
            cr_assert_geq(w, 0, "gather %d train %d: no input", gather, train);
            ir_type want = ir_type_make(IR_F32, 1, (ir_dim[]){ir_dconst(5)});
            cr_expect(ir_type_eq(&g1->nodes[w].type, &want));
            cr_expect_eq(w, ir_find_named(g1, IR_OP_INPUT, "intent_labels") + 1);
            cr_expect_lt(ir_find_named(g0, IR_OP_INPUT, "intent_class_weights"), 0);
            cr_expect_eq(g1->n, g0->n + 1, "one node more: the input");
            int l = ir_find_output(g1, "intent_loss");
            cr_assert_geq(l, 0);
            cr_expect_eq(g1->nodes[l].op, IR_OP_CROSS_ENTROPY);
            cr_expect_eq(g1->nodes[l].nin, 3);
            cr_expect_eq(g1->nodes[l].in[2], w);
            /* MLM and slot keep their unweighted losses. */
            cr_expect_eq(count_ce(g1, 3), 1);
            cr_expect_eq(count_ce(g1, 2), count_ce(g0, 2) - 1);
            cr_expect_eq(count_ce(g0, 3), 0);
            cr_expect_eq(ir_find_named(g1, IR_OP_INPUT, "dropout_seed") >= 0, train);
            cr_expect_eq(ir_find_named(g1, IR_OP_INPUT, "mlm_gather") >= 0, gather);
            ir_graph_free(g0);
            ir_graph_free(g1);
        }
    /* Without an intent loss (no intent labels, or no intent head) the flag changes
     * nothing. */
    fe_model noint = m;
    noint.head_mask &= ~(unsigned)FE_HEAD_INTENT;
    const struct {
        const fe_model *m;
        unsigned labels;
    } same[] = {{&m, FE_LABEL_MLM | FE_LABEL_SLOT}, {&m, 0}, {&noint, WCE_LABELS}};
    for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
        ir_graph *a = build_wce(same[k].m, same[k].labels, 0);
        ir_graph *b = build_wce(same[k].m, same[k].labels | FE_BUILD_INTENT_WEIGHTS, 0);
        char *ta = ir_print_str(a), *tb = ir_print_str(b);
        cr_expect_str_eq(tb, ta, "case %zu", k);
        free(ta);
        free(tb);
        ir_graph_free(a);
        ir_graph_free(b);
    }
}

/* A batch of B = 4, S = 6 for the model above: intent labels 3, -100, 0, 0; at most two
 * MLM labels per row (mlm_gather's P = 2); a padded key in row 2. */
static void wce_batch(rt_tensor_list *in, int train, int gather, const double *weights)
{
    static const int64_t mask[24] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
    static const int64_t mlm[24] = {-100, 7,    -100, -100, -100, -100, -100, -100,
                                    -100, -100, -100, -100, 3,    -100, -100, 49,
                                    -100, -100, -100, -100, -100, -100, 0,    -100};
    static const int64_t intent[4] = {3, -100, 0, 0};
    int64_t bs[2] = {4, 6}, b[1] = {4}, c[1] = {5};
    rt_list_init(in);
    tu_add_rand_i64(in, "input_ids", 2, bs, 0, 50, 11);
    tu_add_rand_i64(in, "token_type_ids", 2, bs, 0, 2, 12);
    tu_add_rand_i64(in, "slot_labels", 2, bs, 0, 3, 13);
    cr_assert_not_null(rt_list_add(in, "attention_mask", RT_I64, 2, bs, mask));
    cr_assert_not_null(rt_list_add(in, "mlm_labels", RT_I64, 2, bs, mlm));
    cr_assert_not_null(rt_list_add(in, "intent_labels", RT_I64, 1, b, intent));
    if (weights)
        cr_assert_not_null(rt_list_add(in, "intent_class_weights", RT_F64, 1, c, weights));
    if (train) {
        int64_t seed = 12345;
        cr_assert_not_null(rt_list_add(in, "dropout_seed", RT_I64, 0, NULL, &seed));
    }
    bc_err e = {{0}};
    if (gather)
        cr_assert_eq(rt_batch_mlm_gather(in, 2, &e), 0, "%s", e.msg);
}

/* The training graph of g (loss and every gradient), run in double. */
static void run_grads(const ir_graph *g, const rt_tensor_list *params,
                      const rt_tensor_list *in, rt_tensor_list *out)
{
    bc_err e = {{0}};
    ir_graph *d = ir_graph_clone(g);
    cr_assert_not_null(d);
    pass_grad_opts o = {"loss", NULL, 0};
    cr_assert_eq(pass_autodiff(&d, &o, &e), 0, "%s", e.msg);
    rt_interp_opts io = {1, 1};
    rt_list_init(out);
    cr_assert_eq(rt_interp_run(d, params, in, &io, out, &e), 0, "%s", e.msg);
    ir_graph_free(d);
}

static double out_at(const rt_tensor_list *out, const char *name, int64_t i)
{
    const rt_tensor *t = rt_list_cfind(out, name);
    cr_assert_not_null(t, "no output %s", name);
    cr_assert_eq(t->dtype, RT_F64);
    cr_assert_lt(i, rt_numel(t));
    return ((const double *)t->data)[i];
}

/* max |a - b| over two F64 tensors of one size (infinite when they differ in size or
 * where one is NaN), and max |b| into *max_ref. */
static double max_err_f64(const rt_tensor *a, const rt_tensor *b, double *max_ref)
{
    cr_assert_eq(a->dtype, RT_F64, "%s", a->name);
    cr_assert_eq(b->dtype, RT_F64, "%s", b->name);
    if (rt_numel(a) != rt_numel(b))
        return INFINITY;
    double err = 0, mr = 0;
    for (int64_t i = 0; i < rt_numel(a); i++) {
        double x = ((const double *)a->data)[i], y = ((const double *)b->data)[i];
        double d = fabs(x - y);
        err = isnan(d) ? INFINITY : fmax(err, d);
        mr = fmax(mr, fabs(y));
    }
    *max_ref = mr;
    return err;
}

/* With every weight 1 the weighted graph gives the unweighted one's losses bit for bit
 * and its gradients (to rounding), in eval and training mode, with and without
 * mlm_gather. */
Test(frontend_build, intent_weights_of_one_give_the_unweighted_loss_and_gradients)
{
    fe_model m;
    weighted_model(&m);
    static const double ones[5] = {1, 1, 1, 1, 1};
    for (int gather = 0; gather <= 1; gather++)
        for (int train = 0; train <= 1; train++) {
            unsigned labels = WCE_LABELS | (train ? FE_BUILD_TRAIN : 0);
            ir_graph *g0 = build_wce(&m, labels, gather);
            ir_graph *g1 = build_wce(&m, labels | FE_BUILD_INTENT_WEIGHTS, gather);
            rt_tensor_list params, in, o0, o1;
            bc_err e = {{0}};
            rt_list_init(&params);
            cr_assert_eq(rt_params_init(g0, 3, &params, &e), 0, "%s", e.msg);
            wce_batch(&in, train, gather, ones);
            run_grads(g0, &params, &in, &o0);
            run_grads(g1, &params, &in, &o1);
            cr_expect_eq(out_at(&o1, "intent_loss", 0), out_at(&o0, "intent_loss", 0),
                         "gather %d train %d", gather, train);
            cr_expect_eq(out_at(&o1, "loss", 0), out_at(&o0, "loss", 0));
            cr_expect_gt(out_at(&o0, "intent_loss", 0), 0.1);
            int ngrad = 0;
            for (int i = 0; i < o0.n; i++) {
                const rt_tensor *a = &o0.t[i], *b = rt_list_cfind(&o1, a->name);
                cr_assert_not_null(b, "%s", a->name);
                double mr = 0, err = max_err_f64(b, a, &mr);
                cr_expect(err <= 1e-12 * mr + 1e-15,
                          "gather %d train %d: %s differs by %g (max %g)", gather, train,
                          a->name, err, mr);
                ngrad += !strncmp(a->name, "grad.", 5);
            }
            cr_expect_eq(o1.n, o0.n);
            cr_expect_gt(ngrad, 10);
            rt_list_free(&o0);
            rt_list_free(&o1);
            rt_list_free(&in);
            rt_list_free(&params);
            ir_graph_free(g0);
            ir_graph_free(g1);
        }
}

/* With weights (2, 1, 1, 1, 1) the intent loss is sum w[y] CE / sum w[y] over the
 * labelled rows, and the classifier bias's gradient sum w[y] (softmax - onehot) /
 * sum w[y], both computed here from the intent logits the graph outputs. */
Test(frontend_build, intent_weights_2_1_1_match_a_hand_computation)
{
    fe_model m;
    weighted_model(&m);
    static const double w[5] = {2, 1, 1, 1, 1};
    static const int64_t intent[4] = {3, -100, 0, 0};
    for (int gather = 0; gather <= 1; gather++)
        for (int train = 0; train <= 1; train++) {
            unsigned labels = WCE_LABELS | (train ? FE_BUILD_TRAIN : 0);
            ir_graph *g = build_wce(&m, labels | FE_BUILD_INTENT_WEIGHTS, gather);
            rt_tensor_list params, in, out;
            bc_err e = {{0}};
            rt_list_init(&params);
            cr_assert_eq(rt_params_init(g, 4, &params, &e), 0, "%s", e.msg);
            wce_batch(&in, train, gather, w);
            run_grads(g, &params, &in, &out);
            double total = 0, wsum = 0, count = 0, plain = 0, dbias[5] = {0};
            for (int i = 0; i < 4; i++) {
                if (intent[i] == -100)
                    continue;
                double x[5], mx = -INFINITY, z = 0;
                for (int j = 0; j < 5; j++) {
                    x[j] = out_at(&out, "intent_logits", i * 5 + j);
                    mx = fmax(mx, x[j]);
                }
                for (int j = 0; j < 5; j++)
                    z += exp(x[j] - mx);
                double ce = mx + log(z) - x[intent[i]], wi = w[intent[i]];
                total += wi * ce;
                wsum += wi;
                plain += ce;
                count++;
                for (int j = 0; j < 5; j++)
                    dbias[j] += wi * (exp(x[j] - mx) / z - (j == intent[i]));
            }
            double want = total / wsum, got = out_at(&out, "intent_loss", 0);
            cr_expect(fabs(got - want) <= 1e-13 * want,
                      "gather %d train %d: %.17g vs %.17g", gather, train, got, want);
            cr_expect_gt(fabs(want - plain / count), 1e-4, "the weights change the loss");
            for (int j = 0; j < 5; j++) {
                double gb = out_at(&out, "grad.intent.classifier.bias", j);
                cr_expect(fabs(gb - dbias[j] / wsum) <= 1e-13,
                          "gather %d train %d: dbias[%d] %.17g vs %.17g", gather, train, j,
                          gb, dbias[j] / wsum);
            }
            double sum = out_at(&out, "mlm_loss", 0) + got + out_at(&out, "slot_loss", 0);
            cr_expect(fabs(out_at(&out, "loss", 0) - sum) <= 1e-13 * sum);
            rt_list_free(&out);
            rt_list_free(&in);
            rt_list_free(&params);
            ir_graph_free(g);
        }
}
