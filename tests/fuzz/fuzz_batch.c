/* fuzz_batch.c: libFuzzer target for batch files: a safetensors file (rt_st_parse) read
 * as `run` and `train` read one (tr_batch_prepare: the ids, types, mask and every
 * head's labels, their dtypes, shapes and ranges). */
#include <stddef.h>
#include <stdint.h>

#include "frontend/frontend.h"
#include "runtime/safetensors.h"
#include "train/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_tensor_list l, out;
    rt_list_init(&l);
    rt_list_init(&out);
    bc_err e;
    if (rt_st_parse(data, size, "fuzz.safetensors", &l, &e) == 0) {
        unsigned present = 0;
        int64_t B = 0, S = 0;
        tr_batch_prepare(&l, 64, FE_LABEL_ALL, &out, &present, &B, &S, NULL, NULL, &e);
    }
    rt_list_free(&out);
    rt_list_free(&l);
    return 0;
}
