/* driver.h: the bertcc commands. Each returns the process exit status. */
#ifndef BERTCC_TOOLS_DRIVER_H
#define BERTCC_TOOLS_DRIVER_H

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

/* Prints "bertcc: note: MSG" on stderr (an rt_note_fn). */
void driver_note(void *ctx, const char *msg);
/* Prints "bertcc: MSG" on stderr and returns 1. */
int driver_fail(const char *msg);

#endif
