/* curves.h: a run directory's record of its dev evaluations (metrics.csv) and the SVG
 * plot of its training loss and dev metrics (curves.svg). */
#ifndef BERTCC_TASKS_CURVES_H
#define BERTCC_TASKS_CURVES_H

#include <jansson.h>
#include <stdint.h>

#include "../support/err.h"
#include "task.h"

/* Appends one evaluation to RUN_DIR/metrics.csv (written with its header first when
 * absent): step, epoch, train_loss, the metrics, examples, best (1 when it became the
 * best so far). */
int rundir_metrics_append(const char *dir, int64_t step, double epoch, double train_loss,
                          const tk_metrics *m, int best, bc_err *e);
/* For a resumed run: drops lines past step, and returns in *best the best kept line by
 * best_by (tk_task_best_by; *have_best 0 when none) and in *best_step (may be NULL) its
 * update (-1: none). Names in *best point into *keep (a json_t the caller decrefs). No
 * file: nothing kept. */
int rundir_metrics_resume(const char *dir, int64_t step, const char *const *best_by,
                          tk_metrics *best, int *have_best, int64_t *best_step,
                          json_t **keep, bc_err *e);
/* The mean loss of the updates (from, to] from train_log.csv (NaN when none). */
double rundir_mean_loss(const char *dir, int64_t from, int64_t to);
/* Draws train_log.csv and metrics.csv into RUN_DIR/curves.svg. */
int rundir_plot(const char *dir, const char *title, bc_err *e);

#endif
