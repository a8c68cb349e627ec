/* args.h: a small long-option parser shared by the driver's commands. Options are
 * declared in a table; `--name value` and `--name=value` both work; every command
 * answers --help from the same table. */
#ifndef BERTCC_TOOLS_ARGS_H
#define BERTCC_TOOLS_ARGS_H

typedef struct arg_opt {
    const char *name;  /* "weights", or "o" for -o */
    const char *value; /* metavariable ("FILE"), or NULL for a flag */
    const char *help;
    const char **out; /* receives the value, or "1" for a flag */
} arg_opt;

/* Parses argv[start..argc): options from opts, positionals into pos[0..max_pos).
 * Returns the number of positionals, or -1 after printing an error to stderr.
 * Sets *help when --help or -h is given. */
int args_parse(int argc, char **argv, int start, const arg_opt *opts, const char **pos,
               int max_pos, int *help, const char *cmd);

void args_usage(const char *usage, const char *about, const arg_opt *opts);

/* Parses a non-negative integer option; prints an error naming opt and returns -1. */
int args_int(const char *s, const char *opt, long long min, long long max, long long *out);

/* Checks --threads and --backend of a command that accepts them for uniformity only:
 * prints an error and returns -1 unless threads is NULL or in [1, 1024] and backend
 * NULL, "jit" or "ref". */
int args_unused(const char *threads, const char *backend);

#endif
