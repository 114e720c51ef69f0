/* test_deliver.c — end-to-end delivery logic (ipc/deliver.h): the origin's
 * window, the limit that follows the acknowledgement rate (a simulated
 * pipeline on a simulated clock) and when it sends again, the sink's
 * de-duplication and its acknowledgements, the tag and the acknowledgement
 * frame. Over sockets, with workers killed, tests/stage/supervise.bats goes
 * on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../ipc/deliver.h"

/* ---- the tag ---- */

static rec_t *decoded(rec_t *r)
{
    // round trip through bytes, as the sink sees it
    rec_enc_t *e = rec_enc_new();
    char err[REC_ERR_LEN];
    assert_int_equal(dlv_encode_tagged(e, r, "0123456789abcdef", 42, err), 0);
    size_t n = rec_enc_size(e);
    char *buf = malloc(n);
    rec_enc_gather(e, buf);
    rec_t *out = NULL;
    assert_int_equal(rec_decode(buf, n, NULL, &out, err), 0);
    assert_int_equal(rec_adopt(out, free, buf), 0);
    rec_enc_destroy(&e);
    return out;
}

static void test_tag_roundtrip(void **state)
{
    (void)state;
    rec_t *r = rec_new_sample("a.jsonl", 3, 0, "t2i");
    char origin[DLV_ORIGIN_LEN + 1], err[REC_ERR_LEN];
    uint64_t seq = 0;
    assert_int_equal(dlv_tag_get(&r->root, origin, &seq, err), 0);
    rec_t *t = decoded(r);
    assert_int_equal(dlv_tag_get(&t->root, origin, &seq, err), 1);
    assert_string_equal(origin, "0123456789abcdef");
    assert_int_equal(seq, 42);
    // a record that already has a tag gets the new one in its place, once
    rec_t *t2 = decoded(t);
    assert_int_equal(t2->root.via.map.size, t->root.via.map.size);
    // a reject keeps its sample's tag
    rec_t *rj = rec_new_reject(t, "bagel-test", "no");
    assert_int_equal(dlv_tag_get(&rj->root, origin, &seq, err), 1);
    assert_int_equal(seq, 42);
    uint32_t n = t->root.via.map.size;
    dlv_tag_strip(&t->root);
    assert_int_equal(t->root.via.map.size, n - 1);
    assert_int_equal(dlv_tag_get(&t->root, origin, &seq, err), 0);
    rec_destroy(&r);
    rec_destroy(&t);
    rec_destroy(&t2);
    rec_destroy(&rj);
}

static void test_tag_bad(void **state)
{
    (void)state;
    rec_t *r = rec_new_sample("a", 0, 0, "t2i");
    char origin[DLV_ORIGIN_LEN + 1], err[REC_ERR_LEN];
    uint64_t seq;
    assert_int_equal(rec_set(r, &r->root, "dlv", rec_str(r, "x")), 0);
    assert_int_equal(dlv_tag_get(&r->root, origin, &seq, err), -1);
    assert_non_null(strstr(err, "expected [origin, seq]"));
    msgpack_object a = rec_array();
    assert_int_equal(rec_push(r, &a, rec_str(r, "0123456789ABCDEF")), 0);
    assert_int_equal(rec_push(r, &a, rec_int(1)), 0);
    assert_int_equal(rec_set(r, &r->root, "dlv", a), 0);
    assert_int_equal(dlv_tag_get(&r->root, origin, &seq, err), -1);
    assert_non_null(strstr(err, "lowercase hex"));
    a = rec_array();
    assert_int_equal(rec_push(r, &a, rec_str(r, "0123456789abcdef")), 0);
    assert_int_equal(rec_push(r, &a, rec_int(-1)), 0);
    assert_int_equal(rec_set(r, &r->root, "dlv", a), 0);
    assert_int_equal(dlv_tag_get(&r->root, origin, &seq, err), -1);
    assert_non_null(strstr(err, "non-negative integer"));
    rec_destroy(&r);
    char a1[DLV_ORIGIN_LEN + 1], a2[DLV_ORIGIN_LEN + 1];
    dlv_origin_new(a1);
    dlv_origin_new(a2);
    assert_int_equal(strlen(a1), DLV_ORIGIN_LEN);
    assert_string_not_equal(a1, a2);
}

static void test_ack_frame(void **state)
{
    (void)state;
    uint64_t in[3] = {0, 1ull << 40, 7}, out[DLV_ACK_MAX];
    unsigned char buf[8 * DLV_ACK_MAX];
    size_t n = dlv_ack_encode(in, 3, buf);
    assert_int_equal(n, 24);
    assert_int_equal(dlv_ack_decode(buf, n, out), 3);
    assert_memory_equal(in, out, sizeof in);
    assert_int_equal(dlv_ack_decode(buf, 0, out), -1);
    assert_int_equal(dlv_ack_decode(buf, 23, out), -1);
    static unsigned char big[8 * DLV_ACK_MAX + 8];
    assert_int_equal(dlv_ack_decode(big, sizeof big, out), -1);
}

/* ---- the origin's window ---- */

typedef struct {
    int n;
    char got[64][8];
} sent_t;

static int record_send(void *arg, const void *b, size_t len)
{
    sent_t *s = arg;
    snprintf(s->got[s->n++], 8, "%.*s", (int)len, (const char *)b);
    return 0;
}

static void test_window_span_and_bytes(void **state)
{
    (void)state;
    dlv_win_t *w = dlv_win_new(4, 100);
    for (int i = 0; i < 4; i++) {
        assert_false(dlv_win_full(w, 10));
        assert_int_equal(dlv_win_next(w), (uint64_t)i);
        assert_int_equal(dlv_win_add(w, "0123456789", 10, 0.0), 0);
    }
    assert_true(dlv_win_full(w, 10));
    assert_int_equal(dlv_win_add(w, "x", 1, 0), -1);
    // acknowledging a later record does not move the span: 0 is still out
    assert_int_equal(dlv_win_ack(w, 3, 0.1), 1);
    assert_true(dlv_win_full(w, 10));
    assert_int_equal(dlv_win_ack(w, 3, 0.1), 0); // twice: stale
    assert_int_equal(dlv_win_ack(w, 9, 0.1), 0); // never sent
    assert_int_equal(dlv_win_ack(w, 0, 0.1), 1);
    assert_false(dlv_win_full(w, 10));
    assert_int_equal(dlv_win_outstanding(w), 2);
    assert_int_equal(dlv_win_stats(w).stale, 2);
    // bytes: 20 held, a 90-byte record waits; alone, any size is taken
    assert_true(dlv_win_full(w, 90));
    unsigned char frame[16];
    uint64_t seqs[2] = {1, 2};
    assert_int_equal(dlv_win_ack_frame(w, frame, dlv_ack_encode(seqs, 2, frame), 0.2), 2);
    assert_int_equal(dlv_win_outstanding(w), 0);
    assert_false(dlv_win_full(w, 1000));
    assert_int_equal(dlv_win_ack_frame(w, frame, 5, 0.2), -1);
    assert_int_equal(dlv_win_stats(w).bad, 1);
    dlv_win_destroy(&w);
    assert_null(w);
}

static void test_window_resend_overtaken(void **state)
{
    (void)state;
    dlv_win_t *w = dlv_win_new(64, 1 << 20);
    // a steady latency of 0.1 s: rto is the minimum
    for (int i = 0; i < 20; i++) {
        assert_int_equal(dlv_win_add(w, "r", 1, i * 0.01), 0);
        dlv_win_ack(w, (uint64_t)i, i * 0.01 + 0.1);
    }
    assert_true(dlv_win_rto(w) < 0.3);
    double rto = dlv_win_rto(w);
    // 20 and 21 go to a worker that dies; 22, sent a little later, is
    // acknowledged first: that is two queues, not a loss
    dlv_win_add(w, "a", 1, 1.0);
    dlv_win_add(w, "b", 1, 1.0);
    dlv_win_add(w, "c", 1, 1.01);
    sent_t s = {0};
    assert_int_equal(dlv_win_resend(w, 1.0 + rto / 2, record_send, &s), 0);
    assert_int_equal(s.n, 0); // not yet due
    dlv_win_ack(w, 22, 1.05);
    assert_int_equal(dlv_win_resend(w, 1.0 + rto + 0.01, record_send, &s), 0);
    assert_int_equal(s.n, 0);
    // 23, sent a whole timeout after them, comes back first: they are lost
    dlv_win_add(w, "d", 1, 1.0 + rto + 0.02);
    dlv_win_ack(w, 23, 1.0 + rto + 0.1);
    assert_int_equal(dlv_win_resend(w, 1.0 + rto + 0.11, record_send, &s), 0);
    assert_int_equal(s.n, 2); // overtaken and due: both again
    assert_string_equal(s.got[0], "a");
    assert_string_equal(s.got[1], "b");
    // the next wait doubles, and the overtaking is measured from the resend
    s.n = 0;
    assert_int_equal(dlv_win_resend(w, 1.0 + 2 * rto + 0.05, record_send, &s), 0);
    assert_int_equal(s.n, 0);
    dlv_win_ack(w, 20, 1.5);
    dlv_win_ack(w, 21, 1.5);
    assert_int_equal(dlv_win_outstanding(w), 0);
    assert_int_equal(dlv_win_stats(w).resent, 2);
    dlv_win_destroy(&w);
}

static void test_window_resend_tail(void **state)
{
    (void)state;
    dlv_win_t *w = dlv_win_new(8, 1 << 20);
    // no latency known yet: the initial timeout; the last record of a
    // stream is overtaken by nothing, so it waits two timeouts
    dlv_win_add(w, "end", 3, 0.0);
    sent_t s = {0};
    dlv_win_resend(w, DLV_RTO_INIT * 1.5, record_send, &s);
    assert_int_equal(s.n, 0);
    double t = DLV_RTO_INIT * 2 + 0.01;
    dlv_win_resend(w, t, record_send, &s);
    assert_int_equal(s.n, 1);
    // backed off: the next try is twice as far
    dlv_win_resend(w, t + DLV_RTO_INIT * 2 + 0.01, record_send, &s);
    assert_int_equal(s.n, 1);
    dlv_win_resend(w, t + DLV_RTO_INIT * 4 + 0.02, record_send, &s);
    assert_int_equal(s.n, 2);
    // an acknowledgement of a resent record does not change the latency
    dlv_win_ack(w, 0, 100);
    assert_true(dlv_win_stats(w).srtt <= 0);
    dlv_win_destroy(&w);
}

/* ---- the limit that follows the acknowledgement rate ---- */

static int send_nothing(void *arg, const void *b, size_t len)
{
    (void)arg, (void)b, (void)len;
    return 0;
}

/* A simulated pipeline: it takes the origin's records as fast as the window
 * lets it send them, holds each at least `floor` seconds (the latency with
 * empty queues), finishes `rate` a second oldest first, and acknowledges them
 * in frames of 64, as the sink does. The origin looks for what is due every
 * 50 ms, as stream.c does. */
typedef struct {
    dlv_win_t *w;
    double t;
    double sent[DLV_WINDOW_MAX]; // by seq modulo
    uint64_t acked;              // every seq below this is acknowledged
    double lat_max;              // the longest latency of any record, s
} pipe_t;

static void pipe_run(pipe_t *p, double rate, double floor, double secs)
{
    double end = p->t + secs, step = 64 / rate, scan = p->t;
    for (; p->t < end; p->t += step) {
        while (!dlv_win_full(p->w, 1)) {
            p->sent[dlv_win_next(p->w) % DLV_WINDOW_MAX] = p->t;
            assert_int_equal(dlv_win_add(p->w, "r", 1, p->t), 0);
        }
        uint64_t seqs[64];
        int n = 0;
        while (n < 64 && p->acked < dlv_win_next(p->w) && p->sent[p->acked % DLV_WINDOW_MAX] <= p->t - floor) {
            double lat = p->t - p->sent[p->acked % DLV_WINDOW_MAX];
            if (lat > p->lat_max)
                p->lat_max = lat;
            seqs[n++] = p->acked++;
        }
        if (n) {
            unsigned char frame[8 * 64];
            dlv_win_ack_frame(p->w, frame, dlv_ack_encode(seqs, n, frame), p->t);
        }
        if (p->t - scan >= 0.05) {
            dlv_win_resend(p->w, p->t, send_nothing, NULL);
            scan = p->t;
        }
    }
}

static pipe_t *pipe_new(uint32_t window)
{
    pipe_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->w = dlv_win_new(window, (size_t)1 << 30);
    assert_non_null(p->w);
    p->t = 100;
    return p;
}

static void pipe_destroy(pipe_t **p)
{
    dlv_win_destroy(&(*p)->w);
    free(*p);
    *p = NULL;
}

static void assert_near(double got, double want, double tol)
{
    if (got < want * (1 - tol) || got > want * (1 + tol))
        fail_msg("%.0f, expected %.0f within %.0f%%", got, want, tol * 100);
}

static void test_limit_follows_rate(void **state)
{
    (void)state;
    // before any acknowledgement: the minimum, or the window if smaller
    pipe_t *p = pipe_new(DLV_WINDOW_MAX);
    assert_int_equal(dlv_win_stats(p->w).limit, DLV_WIN_MIN);
    dlv_win_t *small = dlv_win_new(500, 1 << 20);
    assert_int_equal(dlv_win_stats(small).limit, 500);
    for (int i = 0; i < 500; i++)
        assert_int_equal(dlv_win_add(small, "r", 1, 0), 0);
    assert_true(dlv_win_full(small, 1));
    dlv_win_destroy(&small);
    // the workers set the pace (28,500 a second, 16 replicas on 16 cores):
    // from the minimum the limit grows to the rate's DLV_WIN_SECONDS, since
    // the latency with empty queues (50 ms) is far shorter
    pipe_run(p, 28500, 0.05, 20);
    dlv_win_stats_t st = dlv_win_stats(p->w);
    assert_near(st.rate, 28500, 0.1);
    assert_near(st.limit, 28500 * DLV_WIN_SECONDS, 0.1);
    // and the latency is what the limit holds: DLV_WIN_SECONDS, not more
    p->lat_max = 0;
    pipe_run(p, 28500, 0.05, 5);
    assert_true(p->lat_max < DLV_WIN_SECONDS * 1.2);
    assert_int_equal(dlv_win_stats(p->w).resent, 0);
    // faster than the window can hold: the window, never more
    pipe_run(p, 60000, 0.05, 10);
    assert_int_equal(dlv_win_stats(p->w).limit, DLV_WINDOW_MAX);
    // much slower: down to the minimum, never less
    pipe_run(p, 200, 0.05, 60);
    assert_int_equal(dlv_win_stats(p->w).limit, DLV_WIN_MIN);
    pipe_destroy(&p);
}

static void test_limit_slow_pipeline(void **state)
{
    (void)state;
    // 4 + 4 replicas on 2 cores: ~900 samples a second. A fixed window of
    // 65,536 would hold each record ~70 s, seven times DLV_RTO_MAX, and send
    // nearly every one again; the limit stays near 1,800 records, 2 s.
    pipe_t *p = pipe_new(DLV_WINDOW_MAX);
    pipe_run(p, 900, 0.05, 60);
    dlv_win_stats_t st = dlv_win_stats(p->w);
    assert_near(st.limit, 900 * DLV_WIN_SECONDS, 0.1);
    assert_true(p->lat_max < DLV_WIN_SECONDS * 1.5);
    assert_true(dlv_win_rto(p->w) < DLV_RTO_MAX / 2);
    assert_int_equal(st.resent, 0);
    pipe_destroy(&p);
}

static void test_limit_survives_stall(void **state)
{
    (void)state;
    // the trainer writes a checkpoint: nothing is acknowledged for 20 s
    pipe_t *p = pipe_new(DLV_WINDOW_MAX);
    pipe_run(p, 10000, 0.05, 20);
    double before = dlv_win_stats(p->w).limit;
    assert_near(before, 10000 * DLV_WIN_SECONDS, 0.1);
    for (double end = p->t + 20; p->t < end; p->t += 0.05)
        dlv_win_resend(p->w, p->t, send_nothing, NULL);
    // the first frame after it ends an interval of 20 s with 64 records in
    // it: that costs a quarter at most
    pipe_run(p, 10000, 0.05, 0.001);
    assert_true(dlv_win_stats(p->w).rate > 0.74 * 10000);
    assert_true(dlv_win_stats(p->w).limit >= 0.74 * before);
    // and the rate after it brings it back within seconds
    pipe_run(p, 10000, 0.05, 5);
    assert_near(dlv_win_stats(p->w).limit, before, 0.1);
    pipe_destroy(&p);
}

/* ---- the sink ---- */

typedef struct {
    int calls, refuse;
    char origin[DLV_ORIGIN_LEN + 1];
    uint64_t seqs[DLV_ACK_MAX];
    int n;
} acks_t;

static int take_acks(void *arg, const char *origin, const void *frame, size_t len)
{
    acks_t *a = arg;
    a->calls++;
    if (a->refuse)
        return -1;
    memcpy(a->origin, origin, DLV_ORIGIN_LEN);
    a->n = dlv_ack_decode(frame, len, a->seqs);
    return 0;
}

static void test_sink_dedup(void **state)
{
    (void)state;
    dlv_sink_t *s = dlv_sink_new();
    const char *o1 = "1111111111111111", *o2 = "2222222222222222";
    bool flush;
    assert_int_equal(dlv_sink_take(s, o1, 1, &flush), 0);
    assert_int_equal(dlv_sink_take(s, o1, 0, &flush), 0);
    assert_int_equal(dlv_sink_take(s, o1, 1, &flush), 1); // below low now
    assert_int_equal(dlv_sink_take(s, o1, 5, &flush), 0);
    assert_int_equal(dlv_sink_take(s, o1, 5, &flush), 1); // above low, remembered
    assert_int_equal(dlv_sink_take(s, o2, 1, &flush), 0); // another origin's 1
    assert_int_equal(dlv_sink_take(s, o1, 5 + DLV_WINDOW_MAX, &flush), -1);
    dlv_sink_stats_t st = dlv_sink_stats(s);
    assert_int_equal(st.taken, 4);
    assert_int_equal(st.duplicates, 2);
    assert_int_equal(st.unknown, 1);
    // every arrival is acknowledged, duplicates too (their ack may be lost)
    acks_t a = {0};
    assert_int_equal(dlv_sink_flush(s, take_acks, &a), 0);
    assert_int_equal(a.calls, 2);
    a = (acks_t){0};
    assert_int_equal(dlv_sink_flush(s, take_acks, &a), 0);
    assert_int_equal(a.calls, 0);
    // an origin not connected keeps its acknowledgements, bounded
    a.refuse = 1;
    for (uint64_t q = 10; q < 10 + DLV_ACK_MAX + 5; q++)
        dlv_sink_take(s, o2, q, &flush);
    assert_true(flush);
    assert_int_equal(dlv_sink_flush(s, take_acks, &a), 1);
    a.refuse = 0;
    assert_int_equal(dlv_sink_flush(s, take_acks, &a), 0);
    assert_string_equal(a.origin, o2);
    assert_int_equal(a.n, DLV_ACK_MAX);
    assert_int_equal(a.seqs[0], 15); // the oldest went
    dlv_sink_destroy(&s);
    assert_null(s);
}

static void test_sink_sliding(void **state)
{
    (void)state;
    // an origin's whole life, in a shuffled order within its window, each
    // record twice: every one passes exactly once
    dlv_sink_t *s = dlv_sink_new();
    const char *o = "abcdefabcdefabcd";
    enum { N = 200000, W = 4096 };
    unsigned x = 1;
    uint64_t passed = 0;
    bool flush;
    acks_t a = {0};
    for (uint64_t base = 0; base < N; base += W) {
        static uint64_t order[2 * W];
        for (int i = 0; i < 2 * W; i++)
            order[i] = base + (uint64_t)(i % W);
        for (int i = 2 * W - 1; i > 0; i--) {
            x = x * 1103515245u + 12345u;
            int j = (int)((x >> 8) % (unsigned)(i + 1));
            uint64_t t = order[i];
            order[i] = order[j], order[j] = t;
        }
        for (int i = 0; i < 2 * W; i++)
            if (dlv_sink_take(s, o, order[i], &flush) == 0)
                passed++;
        dlv_sink_flush(s, take_acks, &a);
    }
    assert_int_equal(passed, (N + W - 1) / W * W);
    assert_int_equal(dlv_sink_stats(s).unknown, 0);
    dlv_sink_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tag_roundtrip),          cmocka_unit_test(test_tag_bad),
        cmocka_unit_test(test_ack_frame),              cmocka_unit_test(test_window_span_and_bytes),
        cmocka_unit_test(test_window_resend_overtaken), cmocka_unit_test(test_window_resend_tail),
        cmocka_unit_test(test_limit_follows_rate),     cmocka_unit_test(test_limit_slow_pipeline),
        cmocka_unit_test(test_limit_survives_stall),   cmocka_unit_test(test_sink_dedup),
        cmocka_unit_test(test_sink_sliding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
