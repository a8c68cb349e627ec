/* fuzz_ir_text.c: libFuzzer target for the IR's text form (ir_parse, which verifies),
 * then printing what parsed (ir_print_str). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    bc_err e;
    ir_graph *g = ir_parse(text, "fuzz.ir", &e);
    if (g) {
        free(ir_print_str(g));
        ir_graph_free(g);
    }
    free(text);
    return 0;
}
