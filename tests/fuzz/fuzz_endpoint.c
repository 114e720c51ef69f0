/* fuzz_endpoint — libFuzzer target for endpoint parsing (--in / --out). */
#include "../../ipc/endpoint.h"
#include "../../ipc/rec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1);
    memcpy(spec, data, size);
    spec[size] = 0;
    ep_t ep;
    char err[REC_ERR_LEN];
    err[0] = 0;
    int rc = ep_parse(spec, &ep, err);
    if (rc == 0) {
        // what parses is well formed
        if (ep.kind == EP_ZMQ) {
            if (ep.nzmq < 1 || ep.nzmq > EP_MAX_ZMQ)
                abort();
            for (int i = 0; i < ep.nzmq; i++)
                if (strnlen(ep.zmq[i].addr, EP_ADDR_MAX) == EP_ADDR_MAX)
                    abort();
        } else if (ep.kind == EP_FILE && strnlen(ep.path, sizeof ep.path) == sizeof ep.path) {
            abort();
        }
    } else if (rc != -1 || !err[0] || memchr(err, '\n', strnlen(err, sizeof err))) {
        abort(); // a failure says why, in one line
    }
    free(spec);
    return 0;
}
