/* fuzz_config_json.c: libFuzzer target for Hugging Face config.json (fe_parse_hf_config). */
#include <stddef.h>
#include <stdint.h>

#include "frontend/frontend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fe_model m;
    bc_err e;
    fe_parse_hf_config((const char *)data, size, "config.json", &m, &e);
    return 0;
}
