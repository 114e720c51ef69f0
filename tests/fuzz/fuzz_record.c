/* fuzz_record — libFuzzer target for the record decoder: the bounded scan,
 * msgpack-c's unpacking, the schema check, and (for what decodes) a second
 * encode/decode round that must give the same tree. */
#include "../../ipc/rec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rec_limits_t lim = rec_default_limits;
    lim.max_message = 1 << 20;
    lim.max_items = 1 << 16;
    char err[REC_ERR_LEN] = "";
    size_t need;
    // as a stream: scan record after record
    size_t off = 0;
    for (;;) {
        long long n = rec_scan(data + off, size - off, &lim, &need, err);
        if (n <= 0)
            break;
        if (need > lim.max_message)
            abort(); // scan must never ask for more than the limit
        off += (size_t)n;
    }
    // as one message
    rec_t *r = NULL;
    err[0] = 0; // a success leaves err as it was
    int rc = rec_decode(data, size, &lim, &r, err);
    if (memchr(err, '\n', strnlen(err, sizeof err)))
        abort(); // error messages are one line
    if (rc == 0 || rc == -2) {
        if (!r)
            abort();
        rec_enc_t *e = rec_enc_new();
        if (rec_encode(e, r, err) == 0) {
            size_t n = rec_enc_size(e);
            char *buf = malloc(n ? n : 1);
            rec_enc_gather(e, buf);
            rec_t *again = NULL;
            int rc2 = rec_decode(buf, n, &lim, &again, err);
            if (rc == 0 && rc2 != 0)
                abort();
            if (rc == 0) {
                /* the same tree: compared as its encoding, since a NaN float
                 * is never equal to itself as a value */
                rec_enc_t *e2 = rec_enc_new();
                if (rec_encode(e2, again, err) != 0 || rec_enc_size(e2) != n)
                    abort();
                char *buf2 = malloc(n ? n : 1);
                rec_enc_gather(e2, buf2);
                if (memcmp(buf, buf2, n) != 0)
                    abort();
                free(buf2);
                rec_enc_destroy(&e2);
            }
            rec_destroy(&again);
            free(buf);
        }
        rec_enc_destroy(&e);
        if (rc == 0) {
            // valid records survive a reject being made of them
            rec_t *rj = rec_new_reject(r, "fuzz", "fuzz");
            if (r->type == REC_SAMPLE && (!rj || rec_validate(rj, &lim, err) != 0))
                abort();
            rec_destroy(&rj);
        }
    } else if (r) {
        abort(); // -1 leaves no record
    }
    rec_destroy(&r);
    return 0;
}
