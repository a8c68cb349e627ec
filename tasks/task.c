/* task.c: the registry of tasks and what the task implementations share (see task.h). */
#include "task.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task_classify.h"
#include "task_intent_slot.h"
#include "task_pretrain.h"
#include "task_qa.h"

void tk_task_note(bc_note_fn note, void *ctx, const char *fmt, ...)
{
    if (!note)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note(ctx, msg);
}

int tk_task_int_opt(const char *v, const char *name, long long lo, long long hi,
                    long long *out, bc_err *e)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return bc_errf(e, "--%s expects an integer in [%lld, %lld], got '%s'", name, lo, hi,
                       v);
    *out = x;
    return 0;
}

int tk_task_real_opt(const char *v, const char *name, double lo, double hi, double *out,
                     bc_err *e)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return bc_errf(e, "--%s expects a number in [%g, %g], got '%s'", name, lo, hi, v);
    *out = x;
    return 0;
}

double tk_log_sum_exp(const float *x, int64_t n)
{
    double mx = x[0], sum = 0;
    for (int64_t i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    return mx + log(sum);
}

char *tk_task_abs_path(const char *p)
{
    char *r = realpath(p, NULL);
    return r ? r : strdup(p);
}

/* ---- tasks -------------------------------------------------------------------------- */

/* Every task, in the order --help lists them. Add a task here. */
const tk_task_ops *const tk_tasks[] = {&tk_task_intent_slot, &tk_task_qa, &tk_task_pretrain,
                                       &tk_task_classify, NULL};

const tk_task_ops *tk_task_find(const char *name)
{
    for (int i = 0; tk_tasks[i]; i++)
        if (!strcmp(tk_tasks[i]->name, name))
            return tk_tasks[i];
    return NULL;
}
