/* fuzz_squad.c: libFuzzer target for SQuAD v1.1 JSON (tk_qa_parse). */
#include <stddef.h>
#include <stdint.h>

#include "tasks/qa_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tk_qa_set s = {0};
    bc_err e;
    tk_qa_parse((const char *)data, size, "fuzz.json", &s, NULL, NULL, &e);
    tk_qa_set_free(&s); /* what a failed parse kept, too */
    return 0;
}
