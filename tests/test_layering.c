/* test_layering.c: the folders' order of dependence (README "Layout"), checked on the
 * source tree: a file may include headers only from its own folder and from folders it
 * may use, and external headers only where their library belongs (LLVM in codegen/,
 * libxml2 in frontend/, utf8proc in text/ and tasks/, MPI in train/). The driver stays
 * thin: at most 2,000 lines in tools/bertcc/, no function there over 80 lines. The checker
 * is run on the real tree and on made-up trees with a deliberately wrong include, so that a
 * check that cannot fail would show. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

/* The folders, and which each may include directly ("may include" is transitive). */
typedef struct layer {
    const char *dir;
    const char *uses[6];
} layer;

static const layer layers[] = {
    {"support", {NULL}},
    {"ir", {"support", NULL}},
    {"frontend", {"ir", NULL}},
    {"passes", {"ir", NULL}},
    {"runtime", {"ir", NULL}},
    {"codegen", {"runtime", NULL}},
    {"train", {"runtime", NULL}},
    {"text", {"support", NULL}},
    {"tasks", {"train", "text", "codegen", "frontend", "passes", NULL}},
    {"tools/bertcc", {"tasks", NULL}},
};
#define NLAYERS ((int)(sizeof layers / sizeof *layers))

/* Headers of a folder that others may not include, even where the folder may be used:
 * tasks/ uses codegen/ through its engine interface only. */
static int private_header(const char *from, const char *path)
{
    return !strcmp(from, "tasks") && !strncmp(path, "codegen/", 8) &&
           strcmp(path, "codegen/engine.h") && strcmp(path, "codegen/codegen.h");
}

/* External headers, by prefix, and the folders that may include them. */
typedef struct external {
    const char *prefix;
    const char *dirs[4];
} external;

static const external externals[] = {
    {"llvm-c/", {"codegen", NULL}},
    {"libxml/", {"frontend", NULL}},
    {"utf8proc.h", {"text", "tasks", NULL}},
    {"mpi.h", {"train", NULL}},
    {"criterion/", {NULL}},
};

static int layer_of(const char *dir)
{
    for (int i = 0; i < NLAYERS; i++)
        if (!strcmp(layers[i].dir, dir))
            return i;
    return -1;
}

/* 1 if folder a may include folder b (itself, or through the transitive closure). */
static int may_use(int a, int b)
{
    if (a == b)
        return 1;
    for (int k = 0; layers[a].uses[k]; k++) {
        int u = layer_of(layers[a].uses[k]);
        if (u >= 0 && may_use(u, b))
            return 1;
    }
    /* Everything may use support/. */
    return !strcmp(layers[b].dir, "support");
}

/* "a/b/../c/d.h" -> "a/c/d.h" in place. */
static void normalize(char *p)
{
    char *parts[64];
    int n = 0;
    for (char *s = NULL, *t = strtok_r(p, "/", &s); t && n < 64;
         t = strtok_r(NULL, "/", &s))
        if (!strcmp(t, ".."))
            n = n > 0 ? n - 1 : 0;
        else if (strcmp(t, "."))
            parts[n++] = t;
    char out[1024] = "";
    for (int i = 0; i < n; i++) {
        strncat(out, parts[i], sizeof out - strlen(out) - 1);
        if (i + 1 < n)
            strncat(out, "/", sizeof out - strlen(out) - 1);
    }
    strcpy(p, out);
}

typedef struct report {
    char text[8192];
    int bad;
} report;

static void complain(report *r, const char *fmt, const char *a, int line, const char *b)
{
    size_t n = strlen(r->text);
    snprintf(r->text + n, sizeof r->text - n, fmt, a, line, b);
    r->bad++;
}

/* Checks every #include of file (its path relative to the tree, in layer li). */
static void check_includes(const char *root, int li, const char *rel, report *r)
{
    char path[2048], line[2048];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "r");
    if (!f) {
        complain(r, "%s:%d: cannot read %s\n", rel, 0, path);
        return;
    }
    for (int no = 1; fgets(line, sizeof line, f); no++) {
        char name[1024];
        const char *s = line;
        while (*s == ' ')
            s++;
        if (sscanf(s, "#include \"%1023[^\"]\"", name) == 1) {
            char target[2048];
            snprintf(target, sizeof target, "%s/%s", layers[li].dir, name);
            normalize(target);
            int to = -1;
            for (int k = 0; k < NLAYERS; k++) {
                size_t n = strlen(layers[k].dir);
                if (!strncmp(target, layers[k].dir, n) && target[n] == '/' &&
                    !strchr(target + n + 1, '/'))
                    to = k;
            }
            if (to < 0)
                complain(r, "%s:%d: includes %s, outside the layered folders\n", rel, no,
                         target);
            else if (!may_use(li, to) || private_header(layers[li].dir, target))
                complain(r, "%s:%d: includes %s, which its folder may not use\n", rel, no,
                         target);
        } else if (sscanf(s, "#include <%1023[^>]>", name) == 1) {
            for (size_t k = 0; k < sizeof externals / sizeof *externals; k++) {
                if (strncmp(name, externals[k].prefix, strlen(externals[k].prefix)))
                    continue;
                int ok = 0;
                for (int d = 0; externals[k].dirs[d]; d++)
                    ok |= !strcmp(externals[k].dirs[d], layers[li].dir);
                if (!ok)
                    complain(r, "%s:%d: includes <%s>, which its folder may not use\n", rel,
                             no, name);
            }
        }
    }
    fclose(f);
}

/* Counts the lines of a driver file and reports functions over 80 lines: a function's
 * body is a "{" line at column 0 up to the next "}" at column 0, and its length counts
 * from the line that names it. */
static int check_function_lengths(const char *root, const char *rel, report *r)
{
    char path[2048], line[4096], name[4096] = "";
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int no = 0, start = 0, in_body = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        if (!in_body && line[0] != ' ' && line[0] != '{' && line[0] != '}' &&
            line[0] != '\n' && line[0] != '#' && line[0] != '/' && !start) {
            start = no;
            snprintf(name, sizeof name, "%s", line);
            name[strcspn(name, "\n")] = 0;
        }
        if (!strcmp(line, "{\n") && start)
            in_body = 1;
        if (line[0] == '}') {
            if (in_body && no - start + 1 > 80)
                complain(r, "%s:%d: function over 80 lines: %s\n", rel, start, name);
            in_body = 0;
            start = 0;
        } else if (!in_body && strchr(line, ';') && line[0] != ' ') {
            start = 0; /* a declaration, not a function */
        }
    }
    fclose(f);
    return no;
}

/* Checks the tree at root; returns the number of problems, described in r. */
static int check_tree(const char *root, report *r)
{
    memset(r, 0, sizeof *r);
    int driver_lines = 0;
    for (int li = 0; li < NLAYERS; li++) {
        char dir[2048];
        snprintf(dir, sizeof dir, "%s/%s", root, layers[li].dir);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        for (struct dirent *de; (de = readdir(d));) {
            size_t n = strlen(de->d_name);
            if (n < 3 || de->d_name[n - 2] != '.' ||
                (de->d_name[n - 1] != 'c' && de->d_name[n - 1] != 'h'))
                continue;
            char rel[1024];
            snprintf(rel, sizeof rel, "%s/%s", layers[li].dir, de->d_name);
            check_includes(root, li, rel, r);
            if (!strcmp(layers[li].dir, "tools/bertcc"))
                driver_lines += check_function_lengths(root, rel, r);
        }
        closedir(d);
    }
    if (driver_lines > 2000)
        complain(r, "%s: %d lines, over %s\n", "tools/bertcc", driver_lines, "2,000");
    return r->bad;
}

Test(layering, the_source_tree_keeps_the_order_of_dependence)
{
    report r;
    int bad = check_tree(BERTCC_SOURCE_DIR, &r);
    cr_expect_eq(bad, 0, "%d problems:\n%s", bad, r.text);
}

/* A made-up tree: dir/file holding text. */
static void put(const char *root, const char *rel, const char *text)
{
    char path[2048], dir[2048];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(dir, 0777);
        *s = '/';
    }
    cr_assert_eq(tu_write_file(path, text), 0, "cannot write %s", path);
}

Test(layering, an_upward_include_is_reported_with_file_and_line)
{
    char root[1024];
    snprintf(root, sizeof root, "%s", tu_tmpdir());
    put(root, "ir/ir.h", "#include \"../support/err.h\"\n");
    put(root, "support/err.h", "/* nothing */\n");
    put(root, "runtime/ok.c", "#include \"../ir/ir.h\"\n#include \"../support/err.h\"\n");
    put(root, "tasks/fine.c",
        "#include \"../runtime/ok.h\"\n#include \"../codegen/engine.h\"\n");
    report r;
    cr_expect_eq(check_tree(root, &r), 0, "a correct tree: %s", r.text);

    put(root, "runtime/bad.c",
        "/* x */\n#include \"tensor.h\"\n#include \"../tasks/task.h\"\n");
    cr_expect_eq(check_tree(root, &r), 1, "%s", r.text);
    cr_expect(strstr(r.text, "runtime/bad.c:3: includes tasks/task.h"), "%s", r.text);
    remove(tu_path(root, "runtime/bad.c"));

    put(root, "text/bad.h", "#include \"../ir/ir.h\"\n"); /* text/ uses support/ only */
    put(root, "tasks/bad.c", "#include \"../codegen/cg.h\"\n"); /* codegen's internals */
    put(root, "runtime/llvm.c", "#include <llvm-c/Core.h>\n");
    cr_expect_eq(check_tree(root, &r), 3, "%s", r.text);
    cr_expect(strstr(r.text, "text/bad.h:1: includes ir/ir.h"), "%s", r.text);
    cr_expect(strstr(r.text, "tasks/bad.c:1: includes codegen/cg.h"), "%s", r.text);
    cr_expect(strstr(r.text, "runtime/llvm.c:1: includes <llvm-c/Core.h>"), "%s", r.text);
}

Test(layering, a_long_driver_function_is_reported)
{
    char root[1024];
    snprintf(root, sizeof root, "%s", tu_tmpdir());
    char body[8192] =
        "static int short_one(void)\n{\n    return 0;\n}\n\nint long_one(int x)\n{\n";
    for (int i = 0; i < 80; i++)
        strcat(body, "    x++;\n");
    strcat(body, "    return x;\n}\n");
    put(root, "tools/bertcc/cmd_x.c", body);
    report r;
    cr_expect_eq(check_tree(root, &r), 1, "%s", r.text);
    cr_expect(
        strstr(r.text, "tools/bertcc/cmd_x.c:6: function over 80 lines: int long_one"),
        "%s", r.text);
}
