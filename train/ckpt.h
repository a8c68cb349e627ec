/* ckpt.h: a run directory's checkpoints, each one atomic unit, and the run's lock.
 *
 *   RUN/checkpoints/step-N/weights.safetensors    the parameters after update N
 *   RUN/checkpoints/step-N/optimizer.safetensors  AdamW's moments and the position
 *   RUN/checkpoints/step-N/manifest.json          each file's size and content hash
 *   RUN/checkpoints/current                       "step-N": the checkpoint to resume
 *   RUN/weights.safetensors                       a hard link to current's weights
 *   RUN/best.safetensors                          one to the best checkpoint's (tasks)
 *   RUN/.lock                                     held (flock) by the training process
 *
 * A checkpoint is written into step-N.tmp.PID/ (each file fsynced), its manifest last;
 * the directory is fsynced and renamed to step-N, checkpoints/ fsynced; then `current`
 * is replaced atomically — the commit point —, RUN/weights.safetensors is replaced by a
 * link to the new weights, and every checkpoint but the current one and the one before
 * it is removed. A kill or a power cut at any instant therefore leaves `current` naming a
 * complete checkpoint, or no `current` (the run has none yet); a file is never changed in
 * place. A reader checks the manifest (sizes and hashes catch a truncated file or a
 * zeroed page that the safetensors reader's structure checks cannot see). */
#ifndef BERTCC_TRAIN_CKPT_H
#define BERTCC_TRAIN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/tensor.h"
#include "../support/err.h"

#define TR_CKPT_DIR "checkpoints"
#define TR_CKPT_CURRENT "current"
#define TR_CKPT_MANIFEST "manifest.json"
#define TR_CKPT_WEIGHTS "weights.safetensors"
#define TR_CKPT_OPTIM "optimizer.safetensors"
#define TR_CKPT_LOCK ".lock"

/* Writes the checkpoint of update `step` of the run in `run` (weights, optim: the two
 * files' tensors) as described above. 0, or -1 with e filled; on failure the previous
 * checkpoint stays current. */
int tr_ckpt_save(const char *run, int64_t step, const rt_tensor_list *weights,
                 const rt_tensor_list *optim, bc_err *e);

/* RUN/name replaced atomically by a hard link to checkpoint step's weights (a copy
 * where links fail): how RUN/best.safetensors follows a committed checkpoint. */
int tr_ckpt_link_weights(const char *run, int64_t step, const char *name, bc_err *e);

/* The checkpoint a resumed run reads: its weights' and optimizer state's paths into
 * wpath and opath (len bytes each). Returns 1 when there is one, 0 when the run has
 * none yet, -1 with e filled. `current` is checked against its manifest; when it is
 * damaged, the other kept checkpoint (when complete) is used, with a note. A run
 * directory of the layout before checkpoints/ (RUN/weights.safetensors beside
 * RUN/optimizer.safetensors) is found too. */
int tr_ckpt_find(const char *run, char *wpath, char *opath, size_t len, bc_note_fn note,
                 void *note_ctx, bc_err *e);

/* Whether the checkpoint directory dir is complete: its manifest lists files whose sizes
 * and hashes match. 0, or -1 with e saying what does not. */
int tr_ckpt_verify(const char *dir, bc_err *e);

/* Takes RUN/.lock (an exclusive flock, released when the process ends or the fd is
 * closed): the fd, or -1 with e filled when another process holds it. Then removes the
 * temporary files and directories that killed writers left in RUN and its checkpoints
 * (names X.tmp.PID of processes that are gone). */
int tr_run_lock(const char *run, bc_err *e);

#endif
