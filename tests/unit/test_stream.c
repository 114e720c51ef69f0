/* test_stream.c — endpoints, end accounting, and the reader/writer over
 * files, globs, pipes and in-process ZeroMQ. Between processes (pipes, ipc,
 * tcp, fan-in and fan-out) the stage tests in tests/stage/ipc.bats go on. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "../support/tmpdir.h"
#include "../../ipc/endpoint.h"
#include "../../ipc/shm.h"
#include "../../ipc/stream.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    return test_tmpdir_make(dir, sizeof dir, "stream");
}

static int teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(dir);
}

/* ---- endpoints ---- */

static void test_endpoint_parse(void **state)
{
    (void)state;
    ep_t ep;
    char err[REC_ERR_LEN];
    assert_int_equal(ep_parse("-", &ep, err), 0);
    assert_int_equal(ep.kind, EP_STDIO);
    assert_int_equal(ep_parse("cache/part-*.msgpack", &ep, err), 0);
    assert_int_equal(ep.kind, EP_FILE);
    assert_true(ep.glob);
    assert_int_equal(ep_parse("@tcp://*:5555", &ep, err), 0);
    assert_int_equal(ep.kind, EP_ZMQ);
    assert_true(ep.zmq[0].bind);
    assert_string_equal(ep.zmq[0].addr, "tcp://*:5555");
    assert_int_equal(ep_parse("tcp://trainer:5555", &ep, err), 0);
    assert_false(ep.zmq[0].bind);
    assert_int_equal(ep_parse(">ipc:///tmp/x,@tcp://127.0.0.1:6000", &ep, err), 0);
    assert_int_equal(ep.nzmq, 2);
    assert_false(ep.zmq[0].bind);
    assert_true(ep.zmq[1].bind);
    assert_string_equal(ep.zmq[0].addr, "ipc:///tmp/x");
    assert_int_equal(ep_parse("@tcp://[::1]:7000", &ep, err), 0);

    static const struct {
        const char *spec, *needle;
    } bad[] = {
        {"", "empty"},
        {"@tcp://host", "expected tcp://HOST:PORT"},
        {">tcp://host:0", "port must be 1-65535"},
        {">tcp://host:65536", "port must be 1-65535"},
        {">tcp://host:*", "needs a port number"},
        {">tcp://*:5555", "cannot connect to host *"},
        {"@tcp://ho st:1", "bad character"},
        {"@ipc://", "ipc path must be"},
        {"@udp://x:1", "expected tcp://, ipc:// or inproc://"},
        {">ipc:///a,,>ipc:///b", "empty address"},
        {"@inproc://", "inproc needs a name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        int rc = ep_parse(bad[i].spec, &ep, err);
        if (rc != -1 || !strstr(err, bad[i].needle))
            fail_msg("\"%s\": rc %d err \"%s\", want \"%s\"", bad[i].spec, rc, err, bad[i].needle);
    }
    char longpath[200];
    memset(longpath, 'a', sizeof longpath);
    memcpy(longpath, "@ipc:///", 8);
    longpath[sizeof longpath - 1] = 0;
    assert_int_equal(ep_parse(longpath, &ep, err), -1);
    assert_non_null(strstr(err, "ipc path must be"));
}

/* ---- accounting ---- */

static void test_acct_out_of_order(void **state)
{
    (void)state;
    acct_t *a = acct_new();
    rec_t *end = rec_new_end("a.jsonl", 0, 3);
    rec_t *s1 = rec_new_sample("a.jsonl", 0, 0, "t2i"), *s2 = rec_new_sample("a.jsonl", 1, 0, "t2i");
    rec_t *rj = rec_new_reject(s2, "bagel-image", "broken");
    rec_t *other = rec_new_sample("b.jsonl", 0, 0, "t2i");
    // the end arrives first, as it may from another replica
    acct_add(a, end);
    acct_add(a, s1);
    assert_false(acct_complete(a, 0));
    acct_add(a, rj);
    acct_add(a, other);
    assert_false(acct_complete(a, 0));
    rec_t *s3 = rec_new_sample("a.jsonl", 2, 0, "t2i");
    acct_add(a, s3);
    assert_int_equal(acct_count(a), 2);
    const acct_entry_t *e = acct_entry(a, 0);
    assert_string_equal(e->source, "a.jsonl");
    assert_int_equal(e->samples, 2);
    assert_int_equal(e->rejects, 1);
    assert_true(acct_entry_complete(e));
    assert_false(acct_complete(a, 0)); // b.jsonl has no end yet
    rec_t *endb = rec_new_end("b.jsonl", 0, 1);
    acct_add(a, endb);
    assert_true(acct_complete(a, 2));
    assert_false(acct_complete(a, 3));
    // one record too many breaks the stream
    acct_add(a, s3);
    assert_true(acct_entry_broken(acct_entry(a, 0)));
    assert_false(acct_complete(a, 0));
    rec_t *all[] = {end, s1, s2, rj, other, s3, endb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        rec_destroy(&all[i]);
    acct_destroy(&a);
    assert_null(a);
}

static void test_acct_many_sources(void **state)
{
    (void)state;
    acct_t *a = acct_new();
    char src[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(src, sizeof src, "part-%05d", i);
        rec_t *s = rec_new_sample(src, 0, i % 3, NULL), *e = rec_new_end(src, i % 3, 1);
        acct_add(a, s);
        acct_add(a, e);
        rec_destroy(&s);
        rec_destroy(&e);
    }
    assert_int_equal(acct_count(a), 5000);
    assert_true(acct_complete(a, 5000));
    acct_destroy(&a);
}

/* ---- files ---- */

static rec_t *sample_with_pixels(const char *src, int seq, size_t bytes)
{
    rec_t *r = rec_new_sample(src, seq, 0, "t2i");
    unsigned char *px = malloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        px[i] = (unsigned char)(i * 31 + (size_t)seq);
    rec_tensor_t t = {.dtype = REC_U8, .ndim = 3, .shape = {1, (int64_t)(bytes / 3), 3}, .data = px, .nbytes = bytes};
    msgpack_object seg = rec_map(), to;
    char err[REC_ERR_LEN];
    assert_int_equal(rec_tensor_obj(r, &t, true, &to, err), 0);
    free(px);
    rec_set(r, &seg, "kind", rec_str(r, "image"));
    rec_set(r, &seg, "gen", rec_bool(true));
    rec_set(r, &seg, "vae", to);
    rec_push(r, rec_map_getw(&r->root, "segments"), seg);
    return r;
}

/* Write n records (sizes cycling through small and > 1 MiB, so reads cross
 * buffer boundaries and grow buffers), read them back, compare. */
static void test_file_roundtrip_and_atomic_rename(void **state)
{
    (void)state;
    char path[300], err[REC_ERR_LEN];
    snprintf(path, sizeof path, "%s/a.msgpack", dir);
    wr_t *w = wr_open(path, NULL, err);
    assert_non_null(w);
    static const size_t sizes[] = {3, 300, 3000, 1500000, 30, 3 << 20};
    enum { N = 40 };
    for (int i = 0; i < N; i++) {
        rec_t *r = sample_with_pixels("a", i, sizes[i % 6]);
        assert_int_equal(wr_put(w, r, err), 0);
        rec_destroy(&r);
        struct stat st;
        assert_int_equal(stat(path, &st), -1); // not there until closed
    }
    rec_t *e = rec_new_end("a", 0, N);
    assert_int_equal(wr_put(w, e, err), 0);
    rec_destroy(&e);
    assert_int_equal(wr_close(&w, err), 0);
    assert_null(w);

    const char *in[] = {path};
    rd_t *rd = rd_open(in, 1, NULL, err);
    assert_non_null(rd);
    rec_t *r, *keep[N] = {0};
    int n = 0, rc;
    while ((rc = rd_next(rd, &r, err)) == 1) {
        if (r->type == REC_SAMPLE) {
            rec_t *want = sample_with_pixels("a", n, sizes[n % 6]);
            assert_true(msgpack_object_equal(r->root, want->root));
            rec_destroy(&want);
            keep[n++] = r; // records outlive the reader's buffers
        } else {
            rec_destroy(&r);
        }
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, N);
    assert_true(acct_complete(rd_acct(rd), 1));
    rd_close(&rd);
    for (int i = 0; i < N; i++) {
        rec_t *want = sample_with_pixels("a", i, sizes[i % 6]);
        assert_true(msgpack_object_equal(keep[i]->root, want->root));
        rec_destroy(&want);
        rec_destroy(&keep[i]);
    }
}

/* A bad record in the middle: a sample that breaks the schema becomes a
 * reject; garbage ends that file only; the next file is read. */
static void test_bad_records_in_files(void **state)
{
    (void)state;
    char p1[300], p2[300], pg[300], err[REC_ERR_LEN];
    snprintf(p1, sizeof p1, "%s/g-1.msgpack", dir);
    snprintf(p2, sizeof p2, "%s/g-2.msgpack", dir);
    snprintf(pg, sizeof pg, "%s/g-*.msgpack", dir);
    wr_t *w = wr_open(p1, NULL, err);
    rec_t *ok = sample_with_pixels("g", 0, 30);
    wr_put(w, ok, err);
    // the same sample with a tensor whose data is one byte short
    msgpack_object *segs = rec_map_getw(&ok->root, "segments");
    msgpack_object *vae = rec_map_getw(&segs->via.array.ptr[0], "vae");
    rec_map_getw(vae, "data")->via.bin.size -= 1;
    rec_set(ok, &ok->root, "seq", rec_int(1));
    rec_set(ok, &ok->root, "id", rec_str(ok, "g#1"));
    wr_put(w, ok, err);
    rec_destroy(&ok);
    assert_int_equal(wr_close(&w, err), 0);
    // file 1 then ends in garbage
    FILE *f = fopen(p1, "ab");
    fwrite("\x81\xa1x\xc1zzzz", 1, 8, f);
    fclose(f);
    w = wr_open(p2, NULL, err);
    rec_t *e = rec_new_end("g", 0, 2);
    wr_put(w, e, err);
    rec_destroy(&e);
    assert_int_equal(wr_close(&w, err), 0);

    const char *in[] = {pg};
    stream_opts_t o;
    stream_opts_default(&o);
    o.stage = "test";
    rd_t *rd = rd_open(in, 1, &o, err);
    assert_non_null(rd);
    rec_t *r;
    assert_int_equal(rd_next(rd, &r, err), 1);
    assert_int_equal(r->type, REC_SAMPLE);
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), 2);
    assert_int_equal(r->type, REC_REJECT);
    assert_non_null(strstr(err, "g-1.msgpack: record 2 at byte"));
    assert_non_null(strstr(err, "id g#1"));
    assert_non_null(strstr(err, "data is 29 bytes"));
    char buf[64];
    assert_true(rec_get_str(&r->root, "stage", buf, sizeof buf));
    assert_string_equal(buf, "test");
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), -1);
    assert_non_null(strstr(err, "0xc1"));
    assert_non_null(strstr(err, "rest of this input skipped"));
    assert_int_equal(rd_next(rd, &r, err), 1);
    assert_int_equal(r->type, REC_END);
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), 0);
    assert_true(acct_complete(rd_acct(rd), 1));
    rd_stats_t s = rd_stats(rd);
    assert_int_equal(s.bad, 1);
    assert_int_equal(s.made_rejects, 1);
    rd_close(&rd);
}

static void test_truncated_file(void **state)
{
    (void)state;
    char p[300], err[REC_ERR_LEN];
    snprintf(p, sizeof p, "%s/t.msgpack", dir);
    wr_t *w = wr_open(p, NULL, err);
    rec_t *r = sample_with_pixels("t", 0, 3000);
    wr_put(w, r, err);
    wr_put(w, r, err);
    rec_destroy(&r);
    wr_close(&w, err);
    assert_int_equal(truncate(p, 4000), 0);
    const char *in[] = {p};
    rd_t *rd = rd_open(in, 1, NULL, err);
    assert_int_equal(rd_next(rd, &r, err), 1);
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(rd_next(rd, &r, err), 0);
    rd_close(&rd);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[REC_ERR_LEN], p[300];
    snprintf(p, sizeof p, "%s/none-*.msgpack", dir);
    const char *in[] = {p};
    assert_null(rd_open(in, 1, NULL, err));
    assert_non_null(strstr(err, "no file matches"));
    // a missing first input is reported when the reader opens
    snprintf(p, sizeof p, "%s/missing.msgpack", dir);
    assert_null(rd_open(in, 1, NULL, err));
    assert_non_null(strstr(err, "missing.msgpack: No such file"));
    // a missing later one when the reader gets to it
    char ok[300];
    snprintf(ok, sizeof ok, "%s/t.msgpack", dir);
    const char *two[] = {ok, p};
    rd_t *rd = rd_open(two, 2, NULL, err);
    assert_non_null(rd);
    rec_t *r;
    int rc;
    while ((rc = rd_next(rd, &r, err)) > 0 || rc == -1)
        rec_destroy(&r);
    assert_int_equal(rc, -2);
    assert_non_null(strstr(err, "missing.msgpack: No such file"));
    rd_close(&rd);
    assert_null(wr_open("/nonexistent-dir/x.msgpack", NULL, err));
    assert_non_null(strstr(err, "No such file"));
    assert_null(wr_open("out-*.msgpack", NULL, err));
    assert_null(wr_open("@tcp://256.1.1.1:1", NULL, err));
}

/* In-process ZeroMQ: a PUSH and a PULL in one thread, a few records. */
static void test_zmq_inproc(void **state)
{
    (void)state;
    char err[REC_ERR_LEN];
    stream_opts_t o;
    stream_opts_default(&o);
    o.expect_ends = 1;
    const char *in[] = {"@inproc://t"};
    rd_t *rd = rd_open(in, 1, &o, err);
    assert_non_null(rd);
    wr_t *w = wr_open(">inproc://t", &o, err);
    assert_non_null(w);
    rec_t *r0 = sample_with_pixels("z", 0, 30);
    rec_t *r1 = sample_with_pixels("z", 1, 300000);
    rec_t *e = rec_new_end("z", 0, 2);
    // the reader binds at its first read; until then the records wait in the
    // writer's queue (well under the high-water mark)
    assert_int_equal(wr_put(w, r0, err), 0);
    assert_int_equal(wr_put(w, r1, err), 0);
    assert_int_equal(wr_put(w, e, err), 0);
    // small records wait in the writer's batch until a flush (a stage's
    // idle hook does it before its reader waits)
    assert_int_equal(wr_flush(w, err), 0);
    rec_t *r;
    int n = 0;
    while (rd_next(rd, &r, err) == 1) {
        if (r->type == REC_SAMPLE)
            assert_true(msgpack_object_equal(r->root, (n == 0 ? r0 : r1)->root));
        n++;
        rec_destroy(&r);
    }
    assert_int_equal(n, 3);
    assert_true(acct_complete(rd_acct(rd), 1));
    rec_destroy(&r0);
    rec_destroy(&r1);
    rec_destroy(&e);
    assert_int_equal(wr_close(&w, err), 0);
    rd_close(&rd);
}

/* Messages from a foreign sender over ZeroMQ: a message without the
 * [seq][record] frames and a record that is not msgpack are skipped with an
 * error naming the message, a sample breaking the schema becomes a reject,
 * the good records after them arrive, and every seq is acknowledged. */
/* A seq as the wire has it, u64 little-endian, by the test's own loops
 * (not ipc/le.h, which the code under test uses). */
static void seq_put(unsigned char *p, uint64_t v)
{
    for (int b = 0; b < 8; b++)
        p[b] = (unsigned char)(v >> (8 * b));
}

static uint64_t seq_get(const unsigned char *p)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = v << 8 | p[b];
    return v;
}

static void send_seq(void *sock, uint64_t seq, const void *p, size_t n)
{
    unsigned char hdr[8];
    seq_put(hdr, seq);
    zmq_send(sock, hdr, 8, ZMQ_SNDMORE);
    zmq_send(sock, p, n, 0);
}

/* A reader bound at ipc://DIR/name, ending after expect_ends complete
 * streams (0: at end of input only), and a foreign sender connected to it:
 * a bare DEALER in a context of its own. */
static rd_t *reader_with_sender(const char *name, int expect_ends, void **ctx, void **dealer)
{
    char ep[300], err[REC_ERR_LEN];
    snprintf(ep, sizeof ep, "@ipc://%s/%s", dir, name);
    stream_opts_t o;
    stream_opts_default(&o);
    o.expect_ends = expect_ends;
    const char *in[] = {ep};
    rd_t *rd = rd_open(in, 1, &o, err);
    assert_non_null(rd);
    *ctx = zmq_ctx_new();
    *dealer = zmq_socket(*ctx, ZMQ_DEALER);
    assert_int_equal(zmq_connect(*dealer, ep + 1), 0);
    return rd;
}

/* The foreign sender's socket and context, closed without waiting. */
static void dealer_close(void *ctx, void *dealer)
{
    int zero = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
}

static void test_zmq_bad_messages(void **state)
{
    (void)state;
    char err[REC_ERR_LEN];
    void *ctx, *dealer;
    rd_t *rd = reader_with_sender("bad", 1, &ctx, &dealer);
    rec_t *r;
    zmq_send(dealer, "\x80", 1, 0);          // no seq frame
    send_seq(dealer, 1, "\x81\xa1x\xc1", 4); // not msgpack
    rec_t *s = sample_with_pixels("z", 0, 30), *e = rec_new_end("z", 0, 2), *good = sample_with_pixels("z", 1, 30);
    msgpack_object *segs = rec_map_getw(&s->root, "segments");
    rec_map_getw(rec_map_getw(&segs->via.array.ptr[0], "vae"), "data")->via.bin.size = 5;
    rec_enc_t *enc = rec_enc_new();
    char buf[4096];
    rec_t *sends[] = {s, e, good};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rec_encode(enc, sends[i], err), 0);
        rec_enc_gather(enc, buf);
        send_seq(dealer, 2 + (uint64_t)i, buf, rec_enc_size(enc));
    }
    assert_int_equal(rd_next(rd, &r, err), -1);
    assert_non_null(strstr(err, "/bad: message 1: expected the frames [seq][records]"));
    assert_int_equal(rd_next(rd, &r, err), -1);
    assert_non_null(strstr(err, "message 2, record 1 at byte 0: byte 3: 0xc1"));
    assert_int_equal(rd_next(rd, &r, err), 2);
    assert_non_null(strstr(err, "message 3, record 1 at byte 0: id z#0"));
    assert_int_equal(r->type, REC_REJECT);
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), 1);
    assert_int_equal(r->type, REC_END);
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), 1);
    assert_true(msgpack_object_equal(r->root, good->root));
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), 0); // z is complete: one end expected
    // seqs 1..4 acknowledged (the frameless message had none to give)
    uint64_t got[8] = {0};
    int ngot = 0;
    zmq_pollitem_t it = {.socket = dealer, .events = ZMQ_POLLIN};
    while (ngot < 4 && zmq_poll(&it, 1, 2000) == 1) {
        unsigned char a[64];
        int n = zmq_recv(dealer, a, sizeof a, 0);
        for (int i = 0; i + 8 <= n && ngot < 8; i += 8)
            got[ngot++] = seq_get(a + i);
    }
    assert_int_equal(ngot, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], (uint64_t)i + 1);
    rd_close(&rd);
    rec_enc_destroy(&enc);
    rec_destroy(&s);
    rec_destroy(&e);
    rec_destroy(&good);
    dealer_close(ctx, dealer);
}

/* One message carrying several records, as a writer batches small ones: all
 * are taken in order, a truncated tail is reported with its record number,
 * and the message is acknowledged once, after its last record. */
static void test_zmq_batch(void **state)
{
    (void)state;
    char err[REC_ERR_LEN];
    void *ctx, *dealer;
    rd_t *rd = reader_with_sender("batch", 0, &ctx, &dealer);
    rec_enc_t *enc = rec_enc_new();
    char buf[8192];
    size_t n = 0;
    rec_t *recs[3];
    for (int i = 0; i < 3; i++) {
        recs[i] = sample_with_pixels("b", i, 30 * (i + 1));
        assert_int_equal(rec_encode(enc, recs[i], err), 0);
        rec_enc_gather(enc, buf + n);
        n += rec_enc_size(enc);
    }
    send_seq(dealer, 7, buf, n - 5); // the third record cut short
    rec_t *r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd_next(rd, &r, err), 1);
        assert_true(msgpack_object_equal(r->root, recs[i]->root));
        rec_destroy(&r);
    }
    // no acknowledgement while records of the message are still to be taken
    zmq_pollitem_t it = {.socket = dealer, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 100), 0);
    assert_int_equal(rd_next(rd, &r, err), -1);
    assert_non_null(strstr(err, "message 1, record 3 at byte"));
    assert_non_null(strstr(err, "truncated"));
    // every record of seq 7 is taken or failed: closing acknowledges it
    rd_close(&rd);
    assert_int_equal(zmq_poll(&it, 1, 2000), 1);
    unsigned char a[64];
    assert_int_equal(zmq_recv(dealer, a, sizeof a, 0), 8);
    assert_int_equal(a[0], 7);
    for (int i = 0; i < 3; i++)
        rec_destroy(&recs[i]);
    rec_enc_destroy(&enc);
    dealer_close(ctx, dealer);
}

/* ---- shared memory between local processes (shm.h) ---- */

/* Image-sized records (34 KB, some thirty gathered to a message) and a few
 * of 600 KB (over half a batch: alone in a slot) and 1.2 MB (too large for
 * a slot: through the socket), many more than the pool's slots, from a
 * writer thread to a reader over ipc: each arrives once, in order, byte for
 * byte. With small records first (tokenized text), the writer's slots are
 * of 256 KiB: 501-byte records, 200 KB ones alone in a slot and 300 KB ones
 * through the socket. */
#define SHM_N 1500

static bool shm_small; // the second form

static size_t shm_size(int i)
{
    if (shm_small)
        return i % 97 == 5 ? 300000 : i % 31 == 3 ? 199998 : 501;
    return i % 97 == 5 ? 1200000 : i % 31 == 3 ? 600000 : 34002;
}

/* Messages through slots at least: one per record alone in a slot, and for
 * the gathered records their bytes over the slot size, or their count over
 * the 256 a message holds. */
static uint64_t shm_messages_least(void)
{
    uint64_t alone = 0, bytes = 0, count = 0, slot = shm_small ? 256 << 10 : 1 << 20;
    size_t alone_size = shm_small ? 199998 : 600000;
    for (int i = 0; i < SHM_N; i++)
        if (shm_size(i) == alone_size)
            alone++;
        else if (shm_size(i) < alone_size)
            bytes += shm_size(i), count++;
    return alone + (bytes / slot > count / 256 ? bytes / slot : count / 256);
}

/* A writer in a thread: samples first..first+n-1 of src (with pixels(i)
 * bytes of pixels, or none), one message each when flush_each, then an end
 * record counting `end` when it is over 0; waits delay_ms first. rc: what
 * wr_close said (-1 when something before failed), err its line. */
typedef struct {
    const char *ep, *src;
    int first, n, end, delay_ms;
    size_t (*pixels)(int i);
    bool flush_each;
    int rc;
    char err[REC_ERR_LEN];
} writer_arg_t;

static void *writer_thread(void *arg)
{
    writer_arg_t *a = arg;
    wr_t *w = wr_open(a->ep, NULL, a->err);
    a->rc = -1;
    if (!w)
        return NULL;
    if (a->delay_ms)
        usleep((useconds_t)a->delay_ms * 1000);
    for (int i = a->first; i < a->first + a->n; i++) {
        rec_t *r = a->pixels ? sample_with_pixels(a->src, i, a->pixels(i)) : rec_new_sample(a->src, i, 0, "t2i");
        int rc = wr_put(w, r, a->err);
        rec_destroy(&r);
        if (rc || (a->flush_each && wr_flush(w, a->err))) {
            wr_abort(&w);
            return NULL;
        }
    }
    if (a->end > 0) {
        rec_t *e = rec_new_end(a->src, 0, a->end);
        int rc = wr_put(w, e, a->err);
        rec_destroy(&e);
        if (rc) {
            wr_abort(&w);
            return NULL;
        }
    }
    a->rc = wr_close(&w, a->err);
    return NULL;
}

static void shm_roundtrip(const char *name, bool reader_refuses)
{
    char ep[300], err[REC_ERR_LEN];
    snprintf(ep, sizeof ep, "@ipc://%s/%s", dir, name);
    stream_opts_t o;
    stream_opts_default(&o);
    o.expect_ends = 1;
    o.hwm = 16; // a small window, so that slots are used again and again
    const char *in[] = {ep};
    if (reader_refuses)
        setenv("BAGEL_IPC_SHM", "off", 1);
    rd_t *rd = rd_open(in, 1, &o, err);
    unsetenv("BAGEL_IPC_SHM");
    assert_non_null(rd);
    writer_arg_t a = {.ep = ep + 1, .src = "m", .n = SHM_N, .end = SHM_N, .pixels = shm_size};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_thread, &a), 0);
    rec_t *r;
    int n = 0, rc;
    static bool seen[SHM_N];
    memset(seen, 0, sizeof seen);
    while ((rc = rd_next(rd, &r, err)) == 1) {
        if (r->type == REC_SAMPLE) {
            // in order through shared memory; the refused messages come
            // again after some sent later
            int64_t seq = rec_get(r, "seq")->via.i64;
            assert_true(seq >= 0 && seq < SHM_N && !seen[seq]);
            if (!reader_refuses)
                assert_int_equal(seq, n);
            seen[seq] = true;
            rec_t *want = sample_with_pixels("m", (int)seq, shm_size((int)seq));
            assert_true(msgpack_object_equal(r->root, want->root));
            rec_destroy(&want);
            n++;
        }
        rec_destroy(&r);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, SHM_N);
    assert_true(acct_complete(rd_acct(rd), 1));
    pthread_join(th, NULL);
    if (a.rc != 0)
        fail_msg("writer: %s", a.err);
    rd_stats_t st = rd_stats(rd);
    assert_int_equal(st.bad, 0);
    if (reader_refuses)
        assert_int_equal(st.shm, 0);
    else // every message but the largest records' went through a slot
        assert_true(st.shm >= shm_messages_least());
    rd_close(&rd);
}

static void test_zmq_shm(void **state)
{
    (void)state;
    shm_roundtrip("shm", false);
    shm_small = true;
    shm_roundtrip("shm-small", false);
    shm_small = false;
}

/* A reader that may not map the writer's pool (here BAGEL_IPC_SHM=off; in
 * life another user or PID namespace) refuses the first descriptors: the
 * writer sends those messages again through the socket, and every later
 * one. Nothing is lost or doubled. */
static void test_zmq_shm_refused(void **state)
{
    (void)state;
    shm_roundtrip("shm-refused", true);
}

/* Descriptors from a foreign sender: a slot outside the pool, a length over
 * a slot, a generation that moved on, a frame of the wrong size, a slot
 * never written (generation 0): each a bad message, named and acknowledged.
 * One naming a file that is not the pool it claims is refused ('R' seq back
 * to the sender). A good one arrives. */
static void test_zmq_shm_bad_descriptors(void **state)
{
    (void)state;
    char err[REC_ERR_LEN], why[200];
    void *ctx, *dealer;
    rd_t *rd = reader_with_sender("shmbad", 1, &ctx, &dealer);
    shm_pool_t *pool = shm_pool_new(4, 65536, why, sizeof why);
    assert_non_null(pool);
    rec_enc_t *enc = rec_enc_new();
    rec_t *good = sample_with_pixels("d", 0, 3000), *e = rec_new_end("d", 0, 1);
    unsigned slot;
    char *dst = shm_pool_acquire(pool, &slot);
    assert_non_null(dst);
    assert_int_equal(rec_encode(enc, good, err), 0);
    rec_enc_gather(enc, dst);
    unsigned char desc[SHM_DESC_LEN], bad[SHM_DESC_LEN];
    shm_pool_commit(pool, slot, rec_enc_size(enc), desc);
    // fields at: pid 8, fd 12, dev 16, ino 24, slot 32, len 36, gen 40
    memcpy(bad, desc, sizeof bad), bad[32] = 4;               // slot 4 of 4
    send_seq(dealer, 1, bad, sizeof bad);
    memcpy(bad, desc, sizeof bad), bad[36] = 1, bad[37] = 0, bad[38] = 1, bad[39] = 0; // 65537 bytes
    send_seq(dealer, 2, bad, sizeof bad);
    memcpy(bad, desc, sizeof bad), bad[40] ^= 2;             // another generation
    send_seq(dealer, 3, bad, sizeof bad);
    send_seq(dealer, 4, desc, SHM_DESC_LEN - 1);
    memcpy(bad, desc, sizeof bad), bad[24] ^= 1; // another file
    send_seq(dealer, 5, bad, sizeof bad);
    send_seq(dealer, 6, desc, sizeof desc);
    char buf[256];
    assert_int_equal(rec_encode(enc, e, err), 0);
    rec_enc_gather(enc, buf);
    // a slot never written: its generation line reads 0
    memcpy(bad, desc, sizeof bad), bad[32] = (unsigned char)(slot + 1) % 4, memset(bad + 40, 0, 8);
    send_seq(dealer, 7, bad, sizeof bad);
    send_seq(dealer, 8, buf, rec_enc_size(enc));
    rec_t *r;
    const char *want[] = {"message 1: shared-memory descriptor: slot 4 of 4",
                          "message 2: shared-memory descriptor: slot 0 of 4, 65537 bytes",
                          "message 3: shared-memory slot 0 was reused", "message 4: not a shared-memory descriptor"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rd_next(rd, &r, err), -1);
        if (!strstr(err, want[i]))
            fail_msg("got \"%s\", expected \"%s\"", err, want[i]);
    }
    assert_int_equal(rd_next(rd, &r, err), 1); // 5 refused, 6 taken
    assert_true(msgpack_object_equal(r->root, good->root));
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), -1);
    if (!strstr(err, "message 7: shared-memory descriptor names generation 0"))
        fail_msg("got \"%s\"", err);
    assert_int_equal(rd_next(rd, &r, err), 1);
    assert_int_equal(r->type, REC_END);
    rec_destroy(&r);
    assert_int_equal(rd_next(rd, &r, err), 0);
    assert_int_equal(rd_stats(rd).shm, 1);
    assert_int_equal(rd_stats(rd).bad, 5);
    // acknowledged: 1-4, 6-8; refused: 5
    bool acked[9] = {0}, refused = false;
    zmq_pollitem_t it = {.socket = dealer, .events = ZMQ_POLLIN};
    int got = 0;
    while (got < 8 && zmq_poll(&it, 1, 2000) == 1) {
        unsigned char a[64];
        int n = zmq_recv(dealer, a, sizeof a, 0);
        if (n == 9 && a[0] == 'R') {
            assert_int_equal(a[1], 5);
            refused = true, got++;
            continue;
        }
        for (int i = 0; i + 8 <= n; i += 8)
            if (a[i] < 9)
                acked[a[i]] = true, got++;
    }
    assert_true(refused);
    for (int i = 1; i <= 8; i++)
        assert_true(acked[i] == (i != 5));
    rd_close(&rd);
    shm_pool_destroy(&pool);
    rec_enc_destroy(&enc);
    rec_destroy(&good);
    rec_destroy(&e);
    dealer_close(ctx, dealer);
}

/* Acknowledgements: a message without the prompt bit is acknowledged while
 * the reader waits for the next (after its short delay, not never); one
 * with it, as its seq without the bit. */
typedef struct {
    rd_t *rd;
    int rc;
    rec_type_t type;
    int samples; // take_all: the samples taken
} next_arg_t;

static void *next_in_thread(void *arg)
{
    next_arg_t *a = arg;
    char err[REC_ERR_LEN];
    rec_t *r = NULL;
    a->rc = rd_next(a->rd, &r, err);
    if (r)
        a->type = r->type;
    rec_destroy(&r);
    return NULL;
}

static uint64_t recv_ack(void *dealer)
{
    zmq_pollitem_t it = {.socket = dealer, .events = ZMQ_POLLIN};
    unsigned char a[64];
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    assert_int_equal(zmq_recv(dealer, a, sizeof a, 0), 8);
    return seq_get(a);
}

static void test_zmq_ack_prompt(void **state)
{
    (void)state;
    char err[REC_ERR_LEN], buf[4096];
    void *ctx, *dealer;
    rd_t *rd = reader_with_sender("prompt", 1, &ctx, &dealer);
    rec_enc_t *enc = rec_enc_new();
    rec_t *r = rec_new_sample("p", 0, 0, "t2i"), *e = rec_new_end("p", 0, 1);
    assert_int_equal(rec_encode(enc, r, err), 0);
    rec_enc_gather(enc, buf);
    send_seq(dealer, 1, buf, rec_enc_size(enc));
    rec_t *got;
    assert_int_equal(rd_next(rd, &got, err), 1);
    rec_destroy(&got);
    // the reader waits for more in a thread; the acknowledgement comes meanwhile
    next_arg_t a = {.rd = rd};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, next_in_thread, &a), 0);
    assert_int_equal(recv_ack(dealer), 1);
    assert_int_equal(rec_encode(enc, e, err), 0);
    rec_enc_gather(enc, buf);
    send_seq(dealer, 2 | (uint64_t)1 << 63, buf, rec_enc_size(enc));
    pthread_join(th, NULL);
    assert_int_equal(a.rc, 1);
    assert_int_equal(a.type, REC_END);
    assert_int_equal(rd_next(rd, &got, err), 0);
    assert_int_equal(recv_ack(dealer), 2);
    rd_close(&rd);
    rec_enc_destroy(&enc);
    rec_destroy(&r);
    rec_destroy(&e);
    dealer_close(ctx, dealer);
}

/* Dealing by acknowledgements: a writer bound at an address deals each
 * message to the reader with the fewest unacknowledged, at most PEER_WINDOW
 * (4) each when it has several. Two bare readers (ROUTERs that say hello, as
 * bagelpipe's readers do) stall at first: each gets 4 messages, the third
 * and fourth asking for an acknowledgement at once (bit 62), and then the
 * writer waits. Then B acknowledges what it has and whatever comes, A
 * nothing: B takes every other message.
 * Round-robin dealing (a DEALER) would give A half. */
#define DEAL_N 100

/* A bare reader connected to ep, the writer's routing id "w", said hello. */
static void *deal_reader(void *ctx, const char *ep)
{
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_CONNECT_ROUTING_ID, "w", 1);
    assert_int_equal(zmq_connect(s, ep), 0);
    zmq_send(s, "w", 1, ZMQ_SNDMORE);
    zmq_send(s, "H", 1, 0);
    return s;
}

/* The next message's seq frame (with its flag bits), or -1 after timeout_ms. */
static int64_t deal_recv(void *s, long timeout_ms)
{
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) != 1)
        return -1;
    unsigned char id[16], hdr[8], body[256];
    assert_int_equal(zmq_recv(s, id, sizeof id, 0), 1);
    assert_int_equal(zmq_recv(s, hdr, sizeof hdr, 0), 8);
    assert_true(zmq_recv(s, body, sizeof body, 0) > 0);
    return (int64_t)seq_get(hdr);
}

static void deal_ack(void *s, uint64_t seq)
{
    unsigned char a[8];
    seq_put(a, seq & ~((uint64_t)3 << 62));
    zmq_send(s, "w", 1, ZMQ_SNDMORE);
    zmq_send(s, a, 8, 0);
}

static void test_zmq_deal_by_acks(void **state)
{
    (void)state;
    char ep[300];
    snprintf(ep, sizeof ep, "@ipc://%s/deal", dir);
    // a message each; the readers' hellos are in before the first
    writer_arg_t wa = {.ep = ep, .src = "d", .n = DEAL_N, .delay_ms = 200, .flush_each = true};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_thread, &wa), 0);
    usleep(50 * 1000); // bound
    void *ctx = zmq_ctx_new();
    void *ra = deal_reader(ctx, ep + 1), *rb = deal_reader(ctx, ep + 1);
    const uint64_t urgent = (uint64_t)1 << 62;
    int64_t held[4], held_b[4];
    for (int i = 0; i < 4; i++) {
        held[i] = deal_recv(ra, 5000);
        held_b[i] = deal_recv(rb, 5000);
        assert_true(held[i] >= 0 && held_b[i] >= 0);
        // the third and fourth a reader holds ask for a prompt acknowledgement
        assert_int_equal(((uint64_t)held[i] & urgent) != 0, i >= 2);
        assert_int_equal(((uint64_t)held_b[i] & urgent) != 0, i >= 2);
    }
    // both have 4, the writer waits; B acknowledges its 4, then whatever
    // comes; nothing more for A while it acknowledges nothing
    assert_int_equal(deal_recv(ra, 200), -1);
    for (int i = 0; i < 4; i++)
        deal_ack(rb, (uint64_t)held_b[i]);
    int got_b = 4;
    int64_t b;
    while ((b = deal_recv(rb, 2000)) >= 0) {
        deal_ack(rb, (uint64_t)b);
        got_b++;
    }
    assert_int_equal(got_b, DEAL_N - 4);
    assert_int_equal(deal_recv(ra, 0), -1);
    for (int i = 0; i < 4; i++)
        deal_ack(ra, (uint64_t)held[i]);
    pthread_join(th, NULL);
    if (wa.rc != 0)
        fail_msg("writer: %s", wa.err);
    zmq_close(ra);
    zmq_close(rb);
    zmq_ctx_term(ctx);
}

/* every record a reader gives until it ends, the samples counted */
static void *take_all(void *arg)
{
    next_arg_t *a = arg;
    char err[REC_ERR_LEN];
    rec_t *r = NULL;
    int n = 0;
    while ((a->rc = rd_next(a->rd, &r, err)) == 1) {
        n += r->type == REC_SAMPLE;
        rec_destroy(&r);
    }
    a->samples = n;
    return NULL;
}

/* Join th within seconds, or fail (a writer no reader takes from). */
static void join_within(pthread_t th, int seconds, const char *what)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += seconds;
    if (pthread_timedjoin_np(th, NULL, &t) != 0)
        fail_msg("%s: not done after %d s", what, seconds);
}

/* A writer that starts again at the same address knows no reader: the
 * reader says hello again on the new connection, and takes the second
 * writer's records as it took the first's. */
static void test_zmq_writer_again(void **state)
{
    (void)state;
    char ep[300], err[REC_ERR_LEN];
    snprintf(ep, sizeof ep, "@ipc://%s/again", dir);
    stream_opts_t o;
    stream_opts_default(&o);
    o.expect_ends = 1;
    const char *in[] = {ep + 1}; // the reader connects
    rd_t *rd = rd_open(in, 1, &o, err);
    assert_non_null(rd);
    next_arg_t ra = {.rd = rd};
    pthread_t rt, wt;
    assert_int_equal(pthread_create(&rt, NULL, take_all, &ra), 0);
    writer_arg_t w1 = {.ep = ep, .src = "g", .first = 0, .n = 5};
    assert_int_equal(pthread_create(&wt, NULL, writer_thread, &w1), 0);
    join_within(wt, 10, "the first writer");
    if (w1.rc != 0)
        fail_msg("first writer: %s", w1.err);
    writer_arg_t w2 = {.ep = ep, .src = "g", .first = 5, .n = 5, .end = 10};
    assert_int_equal(pthread_create(&wt, NULL, writer_thread, &w2), 0);
    join_within(wt, 10, "the second writer");
    if (w2.rc != 0)
        fail_msg("second writer: %s", w2.err);
    join_within(rt, 10, "the reader");
    assert_int_equal(ra.rc, 0);
    assert_int_equal(ra.samples, 10);
    assert_true(acct_complete(rd_acct(rd), 1));
    rd_close(&rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_parse),       cmocka_unit_test(test_acct_out_of_order),
        cmocka_unit_test(test_acct_many_sources),    cmocka_unit_test(test_file_roundtrip_and_atomic_rename),
        cmocka_unit_test(test_bad_records_in_files), cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_open_errors),          cmocka_unit_test(test_zmq_inproc),
        cmocka_unit_test(test_zmq_bad_messages),     cmocka_unit_test(test_zmq_batch),
        cmocka_unit_test(test_zmq_shm),              cmocka_unit_test(test_zmq_shm_refused),
        cmocka_unit_test(test_zmq_shm_bad_descriptors), cmocka_unit_test(test_zmq_ack_prompt),
        cmocka_unit_test(test_zmq_deal_by_acks),     cmocka_unit_test(test_zmq_writer_again),
    };
    return cmocka_run_group_tests_name("stream", tests, setup, teardown);
}
