/* fuzz_safetensors.c: libFuzzer target for the safetensors reader (header and data,
 * rt_st_parse), then the conversion every parameter load does (rt_to_f32). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_tensor_list l;
    rt_list_init(&l);
    bc_err e;
    if (rt_st_parse(data, size, "fuzz.safetensors", &l, &e) == 0)
        for (int i = 0; i < l.n; i++) {
            float *f = malloc(sizeof(float) * (size_t)(rt_numel(&l.t[i]) + 1));
            if (f && !rt_dtype_is_int(l.t[i].dtype))
                rt_to_f32(&l.t[i], f, &e);
            free(f);
        }
    rt_list_free(&l);
    return 0;
}
