/* cmd_show.c: `bertcc show FILE.safetensors` — a summary of every tensor in a file
 * (dtype, shape, min/mean/max and the first values), for looking at run outputs,
 * checkpoints and batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/safetensors.h"
#include "args.h"
#include "driver.h"

static void show_one(const rt_tensor *t, int count)
{
    char shape[128];
    int64_t n = rt_numel(t);
    printf("%-52s %-5s %-16s", t->name, rt_dtype_name(t->dtype),
           rt_shape_str(t->rank, t->shape, shape, sizeof shape));
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    int64_t *iv = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int ok = v && f && iv;
    if (ok && rt_dtype_is_int(t->dtype)) {
        ok = rt_to_i64(t, iv, NULL) == 0;
        for (int64_t i = 0; ok && i < n; i++)
            v[i] = (double)iv[i];
    } else if (ok) {
        ok = rt_to_f32(t, f, NULL) == 0;
        for (int64_t i = 0; ok && i < n; i++)
            v[i] = f[i];
    }
    if (ok && n > 0) {
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
            sum += v[i];
        }
        printf(" min %-11.5g mean %-11.5g max %-11.5g [", lo, sum / (double)n, hi);
        for (int64_t i = 0; i < n && i < count; i++)
            printf("%s%.5g", i ? ", " : "", v[i]);
        printf("%s]", n > count ? ", ..." : "");
    }
    printf("\n");
    free(v);
    free(f);
    free(iv);
}

static const char *count_s;
static const arg_opt opts[] = {
    {"values", "N", "how many leading values to print (default 4)", &count_s},
    {NULL, NULL, NULL, NULL},
};

static const char about[] =
    "Prints each tensor of a safetensors file: dtype, shape, min, mean, max\n"
    "and its first values.";

int cmd_show(int argc, char **argv)
{
    const char *pos[1];
    int help;
    int npos = args_parse(argc, argv, 2, opts, pos, 1, &help, "show");
    if (npos < 0)
        return 1;
    if (help)
        return args_usage("bertcc show FILE.safetensors [--values N]", about, opts), 0;
    if (npos != 1)
        return driver_fail("show: expected one safetensors file");
    long long count = 4;
    if (count_s && args_int(count_s, "values", 0, 1 << 20, &count))
        return 1;
    rt_tensor_list l;
    bc_err e;
    rt_list_init(&l);
    if (rt_st_load(pos[0], &l, &e))
        return driver_fail(e.msg);
    for (int i = 0; i < l.n; i++)
        show_one(&l.t[i], (int)count);
    rt_list_free(&l);
    return 0;
}
