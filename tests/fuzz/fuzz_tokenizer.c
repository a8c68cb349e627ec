/* fuzz_tokenizer.c: libFuzzer target for the tokenizer on arbitrary bytes (tx_tokenize),
 * with a small Korean and English vocabulary, lower-cased and cased. */
#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

static const char *const tokens[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "아이유", "노래", "##래", "틀어", "##줘",
    "아무", "##거나", "the", "play", "##ing", "a", "##b", "!", ",", "é", "##s"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tx_vocab *v;
    bc_err e;
    if (!v && !(v = tx_vocab_from_list(tokens, (int)(sizeof tokens / sizeof *tokens),
                                       "fuzz", &e)))
        return 0;
    for (int lower = 0; lower <= 1; lower++) {
        tx_tok_opts o = {lower, -1};
        tx_token_list l = {0};
        tx_tokenize(v, &o, (const char *)data, size, &l, &e);
        tx_token_list_free(&l);
    }
    return 0;
}
