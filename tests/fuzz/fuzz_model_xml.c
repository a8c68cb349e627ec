/* fuzz_model_xml.c: libFuzzer target for the model description parser (fe_parse_xml). */
#include <stddef.h>
#include <stdint.h>

#include "frontend/frontend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fe_model m;
    bc_err e;
    fe_parse_xml((const char *)data, size, "fuzz.xml", &m, &e);
    return 0;
}
