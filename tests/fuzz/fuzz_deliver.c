/* fuzz_deliver — libFuzzer target for what end-to-end delivery takes from
 * the wire (ipc/deliver.h): acknowledgement frames at an origin, and the
 * "dlv" tag of a record at a sink.
 *
 * The first byte picks the case. Acknowledgements: the rest is cut into
 * frames (a length byte, then that many bytes) fed to a window holding a few
 * records; a frame either decodes to at most DLV_ACK_MAX seqs or is refused,
 * and the window's counts stay consistent. Tags: the rest is one record; its
 * tag is read, taken by a sink twice (the second time is a duplicate) and
 * stripped; a failure says why in one line. */
#include "../../ipc/deliver.h"
#include "../../ipc/rec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int nothing(void *arg, const void *b, size_t n)
{
    (void)arg, (void)b, (void)n;
    return 0;
}

static int accept_all(void *arg, const char *o, const void *f, size_t n)
{
    (void)arg, (void)o, (void)f, (void)n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        dlv_win_t *w = dlv_win_new(8, 1 << 20);
        for (int i = 0; i < 6; i++)
            dlv_win_add(w, "rec", 3, 0.0);
        size_t p = 1;
        double t = 0;
        while (p < size) {
            size_t n = data[p++];
            if (n > size - p)
                n = size - p;
            uint64_t seqs[DLV_ACK_MAX];
            int k = dlv_ack_decode(data + p, n, seqs);
            if (k > DLV_ACK_MAX || (k < 0 && n % 8 == 0 && n && n / 8 <= DLV_ACK_MAX))
                abort();
            int acked = dlv_win_ack_frame(w, data + p, n, t += 0.01);
            if (acked > 6)
                abort();
            dlv_win_resend(w, t + 100, nothing, NULL);
            p += n;
        }
        dlv_win_stats_t st = dlv_win_stats(w);
        if (st.acked + dlv_win_outstanding(w) != st.sent || st.acked > 6)
            abort();
        dlv_win_destroy(&w);
        return 0;
    }
    rec_t *r = NULL;
    char err[REC_ERR_LEN];
    int rc = rec_decode(data + 1, size - 1, NULL, &r, err);
    if (rc == -1 || !r)
        return 0;
    char origin[DLV_ORIGIN_LEN + 1];
    uint64_t seq;
    err[0] = 0;
    int t = dlv_tag_get(&r->root, origin, &seq, err);
    if (t == -1 && (!err[0] || memchr(err, '\n', strnlen(err, sizeof err))))
        abort();
    if (t == 1) {
        if (strlen(origin) != DLV_ORIGIN_LEN)
            abort();
        dlv_sink_t *s = dlv_sink_new();
        bool flush;
        int first = dlv_sink_take(s, origin, seq, &flush), again = dlv_sink_take(s, origin, seq, &flush);
        if (first != 0 && first != -1)
            abort();
        if (first == 0 && again != 1)
            abort();
        dlv_sink_flush(s, accept_all, NULL);
        dlv_sink_destroy(&s);
        dlv_tag_strip(&r->root);
        if (dlv_tag_get(&r->root, origin, &seq, err) != 0)
            abort();
    }
    rec_destroy(&r);
    return 0;
}
