/* fuzz_tok_cache — libFuzzer target for the tokenizer's cache file
 * (stages/tokenize/tok_cache.c): any bytes in, no crash; a file that
 * tok_cache_decode takes builds a tokenizer or is refused by tok_build, and a
 * built one encodes and decodes text with every id in range.
 *
 * The checksum at the end of the input is set right before decoding, so
 * that mutations reach the checks behind it; inputs of fewer than 8 bytes
 * go in as they are. The corpus holds the cache file of
 * tests/fuzz/tiny-tokenizer.json. */
#include "../../stages/tokenize/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[TOK_ERR_LEN];
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (size >= 8) {
        uint64_t h = tok_hash(buf, size - 8);
        memcpy(buf + size - 8, &h, 8);
    }
    tok_spec_t sp;
    if (tok_cache_decode(buf, size, 0, 0, true, &sp, err)) {
        free(buf);
        return 0;
    }
    tok_t *t = tok_build(&sp, err);
    tok_spec_free(&sp);
    free(buf);
    if (!t)
        return 0;
    static const char text[] = "the and aaaaaaa \xe4\xb8\xad\xe4\xb8\xad ok! <|im_start|>x\n";
    tok_ids_t ids = {0};
    tok_buf_t back = {0};
    if (tok_encode(t, text, sizeof text - 1, &ids, err) == 0) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= tok_n_ids(t))
                abort();
        if (tok_decode(t, ids.ids, ids.n, &back, err))
            abort();
    }
    tok_ids_free(&ids);
    tok_buf_free(&back);
    tok_destroy(&t);
    return 0;
}
