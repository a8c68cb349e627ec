/* driver.h: the bertcc commands. Each returns the process exit status. */
#ifndef BERTCC_TOOLS_DRIVER_H
#define BERTCC_TOOLS_DRIVER_H

#include "../../text/tokenizer.h"

int cmd_compile(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_pretrain_data(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_vocab(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_demo_data(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* The help line of --fuse, which every compiling command takes. */
#define FUSE_HELP                                                                          \
    "fusion rules: all (default), none, or a list of: epilogue, attention, layout, "       \
    "layernorm, backward, pack"

/* Prints "bertcc: note: MSG" on stderr (an bc_note_fn). */
void driver_note(void *ctx, const char *msg);
/* Prints "bertcc: MSG" on stderr and returns 1. */
int driver_fail(const char *msg);
/* Seconds on a monotonic clock, for the summaries' timings. */
double driver_now(void);

/* The tokenizer flags of a command (non-NULL: given): lowercase and no_lowercase,
 * strip_accents and no_strip_accents, with the command's defaults for each pair (see
 * tx_tok_opts). Prints an error and returns 1 when a pair contradicts itself. */
int driver_tok_opts(const char *lower, const char *no_lower, const char *strip,
                    const char *no_strip, int lower_default, int strip_default,
                    tx_tok_opts *o);
/* Loads a vocab.txt, with a note when it repeats tokens; prints the error and returns
 * NULL when it cannot. */
tx_vocab *driver_vocab_load(const char *path);

#endif
