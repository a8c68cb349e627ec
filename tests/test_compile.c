/* test_compile.c: tk_compile (tasks/compile.h), `bertcc MODEL --emit=STAGE` and
 * `bertcc MODEL -o NAME.so` as a library call: each stage's text is what the executable
 * prints, --outputs and the pipeline are honoured, and bad stages, outputs, models and
 * library names are errors that name them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../ir/ir.h"
#include "../tasks/compile.h"
#include "util.h"

#define MODEL "models/bert-tiny-all-heads.xml"

/* tk_compile of MODEL at stage (with outputs, may be NULL) into a file; returns its
 * text (malloc'd). */
static char *compile_text(const char *stage, const char *outputs, const char *pipeline,
                          int print_after_all, tk_compile_info *info)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", tu_path(tu_tmpdir(), "out.txt"));
    tk_compile_opts o = {.model = tu_src(MODEL),
                         .stage = stage,
                         .out = path,
                         .outputs = outputs,
                         .pipeline = pipeline,
                         .print_after_all = print_after_all};
    bc_err e;
    cr_assert_eq(tk_compile(&o, info, &e), 0, "%s: %s", stage, e.msg);
    char *text = tu_read_file(path, NULL);
    cr_assert_not_null(text, "%s: nothing written", stage);
    return text;
}

/* What `bertcc MODEL ARGS` prints (stdout and stderr). */
static char *cli_text(const char *args)
{
    char *out = NULL;
    int rc = tu_bertcc(&out, "%s %s", MODEL, args);
    cr_assert_eq(rc, 0, "bertcc %s: %s", args, out ? out : "");
    cr_assert_not_null(out);
    return out;
}

static void expect_same_as_cli(const char *stage, const char *outputs, int pall,
                               const char *args)
{
    tk_compile_info info;
    char *lib = compile_text(stage, outputs, NULL, pall, &info), *cli = cli_text(args);
    cr_expect(strlen(lib) > 100, "%s: only %zu bytes", stage, strlen(lib));
    cr_expect(!strcmp(lib, cli), "--emit=%s differs from the executable's:\n%s\n---\n%s",
              stage, lib, cli);
    cr_expect_eq(info.code, 0);
    free(lib);
    free(cli);
}

Test(compile, ir_opt_and_grad_text_is_what_the_executable_prints)
{
    expect_same_as_cli("ir", NULL, 0, "--emit=ir");
    expect_same_as_cli("opt", NULL, 0, "--emit=opt");
    expect_same_as_cli("grad", NULL, 0, "--emit=grad");
}

Test(compile, outputs_and_print_after_all_are_what_the_executable_prints)
{
    expect_same_as_cli("opt", "pooled_output,intent_logits", 0,
                       "--emit=opt --outputs pooled_output,intent_logits");
    expect_same_as_cli("opt", NULL, 1, "--emit=opt --print-after-all");
}

Test(compile, outputs_keep_only_those_named)
{
    tk_compile_info info;
    char *all = compile_text("opt", NULL, NULL, 0, &info);
    char *one = compile_text("opt", "pooled_output", NULL, 0, &info);
    cr_expect(strstr(all, "mlm_logits"), "%s", all);
    cr_expect(!strstr(one, "mlm_logits") && strstr(one, "pooled_output"), "%s", one);
    cr_expect_lt(strlen(one), strlen(all));
    free(all);
    free(one);
}

Test(compile, a_pipeline_of_no_passes_changes_nothing)
{
    tk_compile_info info;
    char *ir = compile_text("ir", NULL, NULL, 0, &info);
    char *opt = compile_text("opt", NULL, "", 0, &info);
    cr_expect_str_eq(opt, ir);
    free(ir);
    free(opt);
}

Test(compile, code_stages_report_the_plan, .timeout = 120)
{
    tk_compile_info info;
    char *text = compile_text("llvm-raw", "pooled_output", NULL, 0, &info);
    cr_expect(strstr(text, "define"), "no LLVM function:\n%.500s", text);
    cr_expect_eq(info.code, 1);
    cr_expect(info.nodes > 0 && info.steps > 0 && info.kernels > 0 &&
                  info.kernels <= info.steps,
              "nodes %d, steps %d, kernels %d", info.nodes, info.steps, info.kernels);
    cr_expect_str_eq(info.model, "bert-tiny-all-heads");
    free(text);
}

/* tk_compile with o; expects an error containing needle (and, given, needle2). */
static void expect_error(const tk_compile_opts *o, const char *needle, const char *needle2)
{
    tk_compile_info info;
    bc_err e;
    cr_assert_neq(tk_compile(o, &info, &e), 0, "no error for '%s'", needle);
    cr_expect(strstr(e.msg, needle) && (!needle2 || strstr(e.msg, needle2)), "%s", e.msg);
}

Test(compile, errors_name_the_stage_the_output_the_model_and_the_library)
{
    const char *dir = tu_tmpdir();
    char out[1024];
    snprintf(out, sizeof out, "%s", tu_path(dir, "out.txt"));
    tk_compile_opts o = {.model = tu_src(MODEL), .stage = "frobnicate", .out = out};
    expect_error(&o, "unknown stage 'frobnicate'", "llvm-raw");
    struct stat sb;
    cr_expect_neq(stat(out, &sb), 0, "a bad stage wrote %s", out);
    o.stage = "ir";
    o.outputs = "pooled_output,no_such_output";
    expect_error(&o, "no_such_output", NULL);
    o.outputs = NULL;
    o.model = "/nonexistent-dir/model.xml";
    expect_error(&o, "/nonexistent-dir/model.xml", NULL);
    o.model = tu_src(MODEL);
    o.out = tu_path(dir, "no-such-dir/out.txt");
    expect_error(&o, "cannot create", "no-such-dir/out.txt");
    o.stage = NULL;
    o.out = tu_path(dir, "lib.dylib");
    expect_error(&o, "NAME.so", NULL);
    o.out = NULL;
    expect_error(&o, "nothing to do", NULL);
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The default pipeline fuses (forward and training graph), --fuse=none does not, and
 * the printed graph with its regions reads back through the parser as the same text. */
Test(compile, fuse_all_and_none_and_the_fused_text_parses_back)
{
    static const char *const stages[] = {"opt", "grad"};
    for (int s = 0; s < 2; s++) {
        char *fused = cli_text(s ? "--emit=grad" : "--emit=opt");
        char *plain = cli_text(s ? "--emit=grad --fuse=none" : "--emit=opt --fuse=none");
        cr_expect_gt(count(fused, "= fused \""), 10, "%s", stages[s]);
        cr_expect_eq(count(plain, "= fused"), 0, "%s", stages[s]);
        bc_err e;
        ir_graph *g = ir_parse(fused, "fused.ir", &e);
        cr_assert_not_null(g, "%s: %s", stages[s], e.msg);
        char *again = ir_print_str(g);
        cr_expect_str_eq(again, fused);
        free(again);
        ir_graph_free(g);
        free(fused);
        free(plain);
    }
    char *out = NULL;
    cr_expect_eq(tu_bertcc(&out, "%s --emit=opt --fuse=epilogue,frob", MODEL), 1);
    cr_expect(out && strstr(out, "unknown fusion rule 'frob'"), "%s", out ? out : "");
    free(out);
    cr_expect_eq(tu_bertcc(&out, "%s --emit=opt --fuse=none --pipeline=dce", MODEL), 1);
    cr_expect(out && strstr(out, "--pipeline"), "%s", out ? out : "");
    free(out);
}

/* An output that exists and is not a regular file (/dev/null, a FIFO) is written in
 * place: renaming a finished temporary over it, as files are replaced, would turn
 * /dev/null into a regular file (root may). A FIFO stands in for the device here: a
 * reader collects what each stage writes, and the FIFO is still one afterwards. */
Test(compile, an_output_that_is_a_fifo_is_written_in_place, .timeout = 120)
{
    const char *dir = tu_tmpdir();
    char fifo[1024], got[1024];
    snprintf(fifo, sizeof fifo, "%s", tu_path(dir, "fifo"));
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    static const char *const stages[] = {"ir", "asm"};
    for (int s = 0; s < 2; s++) {
        snprintf(got, sizeof got, "%s", tu_path(dir, stages[s]));
        char *out = NULL;
        /* without the reader (a regression renames instead), cat gives up after 30 s */
        int rc =
            tu_bertcc(&out, "%s --emit=%s -o '%s' & timeout 30 cat '%s' > '%s'; wait $!",
                      MODEL, stages[s], fifo, fifo, got);
        cr_expect_eq(rc, 0, "%s: %s", stages[s], out ? out : "");
        free(out);
        struct stat sb;
        cr_expect(stat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode), "%s replaced the FIFO",
                  stages[s]);
        char *text = tu_read_file(got, NULL);
        cr_expect(text && strstr(text, s ? ".text" : "graph"), "%s: nothing came through",
                  stages[s]);
        free(text);
    }
}
