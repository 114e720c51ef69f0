/* fuzz_read_line — libFuzzer target for bagel-read's line parser: any bytes
 * as one JSONL line, under every --format and with --root. A line gives a
 * sample that passes the schema check, or a reason with a one-line printable
 * message naming file:line; a reject record made from it is valid too. */
#include "../../stages/read/parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_err(const char *err)
{
    size_t n = strnlen(err, REC_ERR_LEN);
    if (n == REC_ERR_LEN || strncmp(err, "f.jsonl:7: ", 11) != 0)
        abort(); // bounded, and names file:line
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] >= 0x7f)
            abort(); // one printable line
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // the first byte picks the format and the root; the rest is the line
    if (size < 1)
        return 0;
    read_ctx_t ctx = {.format = (read_format_t)(data[0] % READ_FORMAT_COUNT), .root = (data[0] & 0x80) ? "." : NULL};
    read_where_t w = {"f.jsonl", "f.jsonl", 7, 0};
    char err[REC_ERR_LEN];
    rec_t *r = NULL;
    int rc = read_parse_line((const char *)data + 1, size - 1, &ctx, &w, &r, err);
    if (rc < 0) {
        if (r)
            abort();
        return 0;
    }
    if (rc == READ_OK) {
        if (!r || rec_validate(r, NULL, err) != 0)
            abort();
        rec_destroy(&r);
        return 0;
    }
    if (r || rc >= READ_REASON_COUNT)
        abort();
    check_err(err);
    rec_t *rj = read_make_reject(&w, err);
    if (!rj || rec_validate(rj, NULL, err) != 0)
        abort();
    rec_destroy(&rj);
    return 0;
}
