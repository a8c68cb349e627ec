/* mirror.h: a resumed run read by rank 0 alone under MPI (train/dist.h). Rank 0 packs
 * what a resume reads of RUN_DIR (options.json, model.xml, the vocabulary, the task's
 * label files and the checkpoint to resume, chosen as tr_ckpt_find chooses it) and
 * broadcasts it; every other rank unpacks it into a private temporary directory and
 * resumes from there, so that only rank 0's host needs to see the run directory. */
#ifndef BERTCC_TASKS_MIRROR_H
#define BERTCC_TASKS_MIRROR_H

#include <stddef.h>

#include "../support/err.h"

/* Collective. Rank 0 passes mirror NULL; the others receive the directory's path in
 * mirror (len bytes; the caller removes it with bc_remove_tree). 0, or -1 with e. */
int rundir_mirror(const char *run, char *mirror, size_t len, bc_note_fn note, void *nctx,
                  bc_err *e);

#endif
