/* fuzz_atis.c: libFuzzer target for the ATIS/SNIPS folder reader (tk_is_parse: seq.in,
 * seq.out and label in memory). The input is split into the three texts at its first two
 * 0xff bytes (which valid UTF-8 never holds). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tasks/task_intent_slot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text[3] = {(const char *)data, "", ""};
    size_t len[3] = {size, 0, 0};
    const uint8_t *a = memchr(data, 0xff, size);
    if (a) {
        len[0] = (size_t)(a - data);
        text[1] = (const char *)a + 1;
        len[1] = size - len[0] - 1;
        const uint8_t *b = memchr(a + 1, 0xff, len[1]);
        if (b) {
            len[1] = (size_t)(b - (a + 1));
            text[2] = (const char *)b + 1;
            len[2] = size - len[0] - len[1] - 2;
        }
    }
    tk_is_data d;
    bc_err e;
    if (tk_is_parse("fuzz", text, len, &d, &e) == 0)
        tk_is_data_free(&d);
    return 0;
}
