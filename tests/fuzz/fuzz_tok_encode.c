/* fuzz_tok_encode — libFuzzer target for the tokenizer: any bytes in, no
 * crash; valid UTF-8 encodes to ids that are all in range and decode back to
 * its NFC; anything else is refused; the two BPE merge loops (scan and heap)
 * agree on the input taken as one piece.
 *
 * The tokenizer is $BAGEL_FUZZ_TOKENIZER (e.g. the real one that
 * scripts/fetch-tokenizer.sh fetches), else tests/fuzz/tiny-tokenizer.json: a
 * byte-level BPE with the Qwen2 pattern, NFC, a few merges (long runs, CJK,
 * a contraction) and added tokens of both kinds, so every code path runs
 * without the 11 MB file. Run from the repository root (make fuzz does). */
#include "../../stages/tokenize/tok_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tok_t *tk;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *path = getenv("BAGEL_FUZZ_TOKENIZER");
    char err[TOK_ERR_LEN];
    tk = tok_load(path && *path ? path : "tests/fuzz/tiny-tokenizer.json", err);
    if (!tk) {
        fprintf(stderr, "fuzz_tok_encode: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[TOK_ERR_LEN];
    tok_ids_t ids = {0}, a = {0}, b = {0};
    tok_buf_t dec = {0}, nfc = {0};
    bool valid = utf8_valid_prefix(data, size) == size;
    int rc = tok_encode(tk, (const char *)data, size, &ids, err);
    if (rc != (valid ? 0 : -1))
        abort();
    if (valid) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= tok_n_ids(tk))
                abort();
        if (tok_decode(tk, ids.ids, ids.n, &dec, err) || tok_nfc((const char *)data, size, &nfc, err))
            abort();
        if (dec.n != nfc.n || (dec.n && memcmp(dec.p, nfc.p, dec.n) != 0))
            abort();
    }
    if (size > 0 && size <= 4096) {
        if (tok_bpe(tk, data, size, &a, err) || tok_bpe_heap(tk, data, size, &b, err))
            abort();
        if (a.n != b.n || memcmp(a.ids, b.ids, a.n * sizeof *a.ids) != 0)
            abort();
    }
    tok_ids_free(&ids);
    tok_ids_free(&a);
    tok_ids_free(&b);
    tok_buf_free(&dec);
    tok_buf_free(&nfc);
    return 0;
}
