/* fuzz_vocab.c: libFuzzer target for vocab.txt (tx_vocab_parse), then tokenizing a fixed
 * Korean and English sentence with what it read. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bc_err e;
    tx_vocab *v = tx_vocab_parse((const char *)data, size, "vocab.txt", &e);
    if (!v)
        return 0;
    static const char text[] = "아이유 노래 아무거나 틀어줘 [MASK] Play it, Sam!";
    tx_token_list l = {0};
    tx_tok_opts o = TX_TOK_OPTS_DEFAULT;
    tx_tokenize(v, &o, text, strlen(text), &l, &e);
    tx_token_list_free(&l);
    tx_vocab_free(v);
    return 0;
}
