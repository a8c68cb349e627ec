/* args.c: see args.h. */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const arg_opt *find(const arg_opt *opts, const char *name, size_t len)
{
    for (const arg_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len))
            return o;
    return NULL;
}

int args_parse(int argc, char **argv, int start, const arg_opt *opts, const char **pos,
               int max_pos, int *help, const char *cmd)
{
    int npos = 0;
    *help = 0;
    for (int i = start; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = 1;
            continue;
        }
        if (a[0] != '-' || !a[1]) {
            if (npos == max_pos) {
                fprintf(stderr, "bertcc %s: unexpected argument '%s' (see --help)\n", cmd,
                        a);
                return -1;
            }
            pos[npos++] = a;
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const arg_opt *o = find(opts, name, len);
        if (!o) {
            fprintf(stderr, "bertcc %s: unknown option '%.*s' (see --help)\n", cmd,
                    (int)(len + (size_t)(name - a)), a);
            return -1;
        }
        if (!o->value) {
            if (eq) {
                fprintf(stderr, "bertcc %s: option '--%s' takes no value\n", cmd, o->name);
                return -1;
            }
            *o->out = "1";
        } else if (eq) {
            *o->out = eq + 1;
        } else if (i + 1 < argc) {
            *o->out = argv[++i];
        } else {
            fprintf(stderr, "bertcc %s: option '%s' needs a value (%s)\n", cmd, a,
                    o->value);
            return -1;
        }
    }
    return npos;
}

void args_usage(const char *usage, const char *about, const arg_opt *opts)
{
    printf("usage: %s\n\n%s\n\noptions:\n", usage, about);
    for (const arg_opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s", strlen(o->name) == 1 ? "-" : "--", o->name,
                 o->value ? " " : "", o->value ? o->value : "");
        printf("  %-24s %s\n", left, o->help);
    }
    printf("  %-24s %s\n", "-h, --help", "show this help");
}

int args_int(const char *s, const char *opt, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "bertcc: --%s expects an integer in [%lld, %lld], got '%s'\n", opt,
                min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int args_unused(const char *threads, const char *backend)
{
    long long n;
    if (threads && args_int(threads, "threads", 1, 1024, &n))
        return -1;
    if (backend && strcmp(backend, "jit") && strcmp(backend, "ref")) {
        fprintf(stderr, "bertcc: --backend must be jit or ref\n");
        return -1;
    }
    return 0;
}
