/* bench_ipc.c — bench-ipc: throughput of the record stream between two
 * processes, next to the raw limit of the transport it runs on.
 *
 *   bench-ipc [--quick] [--repeat K] [--json FILE]
 *
 * For each transport (a pipe on stdin/stdout, ZeroMQ ipc://, ZeroMQ tcp:// on
 * 127.0.0.1) and each record size (a ~1 KiB sample with an i32 "tokens"
 * tensor; a ~3 MiB sample with a u8 "vae" tensor [1024,1024,3]) it forks a
 * producer and measures, in the consumer (each measurement K times, default
 * 3, keeping the fastest: on a small shared machine single runs vary by 2x):
 *
 *   framed  the real ipc API: the producer wr_put()s N samples and an end
 *           record and wr_close()s (on ZeroMQ that waits until the reader
 *           has acknowledged every record; small records travel in batches
 *           of up to 64 KiB); the consumer rd_next()s (expect_ends=1) until
 *           the stream is complete. Every record is decoded and validated by
 *           the reader, as in a stage.
 *   raw     the same bytes with no framing: write()/read() on a pipe, in the
 *           write sizes the framed writer issues (stream.c gathers small
 *           records into 64 KiB writes and writes a large one whole), read
 *           into a buffer as large as the reader's chunk; for ZeroMQ,
 *           zmq_send of N messages of the record's size on PUSH/PULL with the
 *           same high-water mark, received with zmq_msg_recv (no copy out,
 *           as the reader does).
 *
 * Timing is on the consumer side, from a start barrier to the N-th sample:
 * the consumer opens (binds) its input, and when it is first about to wait
 * (the reader's idle hook; for raw, right after bind) it releases the
 * producer, which only then opens its output and starts sending. MB = 10^6
 * bytes. Goals (checked per line, never in the exit status): large records
 * framed >= 70% of raw MB/s; small records >= 300k records/s.
 *
 * Exit status: 0 when every measurement ran (goals met or not), 1 when one
 * failed (an I/O error, a wrong record, a 120 s timeout), 2 on a usage error.
 * Not a test: nothing here checks more than that the records arrive whole. */
#define _GNU_SOURCE
#include "../../ipc/endpoint.h"
#include "../../ipc/rec.h"
#include "../../ipc/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define SMALL_TARGET 1024 // encoded bytes of a small record, at most
#define LARGE_H      1024 // the large record's "vae": u8 [H, W, 3]
#define LARGE_W      1024
#define SMALL_N      300000L // records per measurement (--quick: / 10)
#define LARGE_N      500L
#define WRITER_BATCH ((size_t)64 << 10) // stream.c: small records gathered per write
#define READER_CHUNK ((size_t)1 << 20)  // stream.c: the reader's read buffer
#define GOAL_RATIO   0.70               // large: framed MB/s over raw MB/s
#define GOAL_RECS    300000.0           // small: framed records/s
#define WATCHDOG_S   120                // one measurement longer than this is a failure
/* Sample i carries "seq" SEQ_BASE + i: msgpack packs an integer in the fewest
 * bytes, and every seq from 2^16 to 2^32-1 takes five, so all N records of a
 * run encode to the same size. */
#define SEQ_BASE ((int64_t)1 << 16)

typedef enum { T_PIPE, T_IPC, T_TCP, T_COUNT } transport_t;
static const char *const transport_names[T_COUNT] = {"pipe", "zmq-ipc", "zmq-tcp"};

/* One record size: the record the producer sends, and what the consumer
 * checks the last one against. */
typedef struct {
    const char *name; // "1KiB", "3MiB"
    bool large;
    rec_t *rec;          // built before fork; the producer only changes "seq"
    size_t wire;         // encoded bytes of rec
    long n;              // records per measurement
    uint64_t tensor_fnv; // checksum of the tensor's data
} workload_t;

typedef struct {
    double secs;    // start barrier to the N-th record
    uint64_t bytes; // payload bytes of the N records
} timing_t;

typedef struct {
    transport_t t;
    const workload_t *w;
    timing_t framed, raw;
} result_t;

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    // two requests: every reader ends at once, pipes too (stream.h)
    ipc_stop_request();
    ipc_stop_request();
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the records ---- */

/* A sample with one text segment carrying `ntok` i32 tokens. */
static rec_t *small_record(int64_t ntok, char *err)
{
    rec_t *r = rec_new_sample("bench", SEQ_BASE, 0, "t2i");
    int32_t *tok = malloc((size_t)(ntok ? ntok : 1) * sizeof *tok);
    if (!r || !tok)
        goto oom;
    for (int64_t i = 0; i < ntok; i++)
        tok[i] = (int32_t)((i * 7919) % 151643); // token ids of a Qwen2-sized vocabulary
    rec_tensor_t t = {.dtype = REC_I32, .ndim = 1, .shape = {ntok}, .data = tok, .nbytes = (size_t)ntok * 4};
    msgpack_object seg = rec_map(), tokens;
    if (rec_tensor_obj(r, &t, true, &tokens, err))
        goto fail;
    if (rec_set(r, &seg, "kind", rec_str(r, "text")) ||
        rec_set(r, &seg, "text", rec_str(r, "a red circle on a blue square, benchmark caption")) ||
        rec_set(r, &seg, "loss", rec_bool(true)) || rec_set(r, &seg, "tokens", tokens) ||
        rec_push(r, rec_map_getw(&r->root, "segments"), seg))
        goto oom;
    free(tok);
    return r;
oom:
    snprintf(err, REC_ERR_LEN, "out of memory");
fail:
    free(tok);
    rec_destroy(&r);
    return NULL;
}

/* A sample with one image segment whose "vae" borrows `pixels` (u8 [H,W,3]). */
static rec_t *large_record(const uint8_t *pixels, char *err)
{
    rec_t *r = rec_new_sample("bench", SEQ_BASE, 0, "t2i");
    if (!r)
        goto oom;
    rec_tensor_t t = {.dtype = REC_U8,
                      .ndim = 3,
                      .shape = {LARGE_H, LARGE_W, 3},
                      .data = pixels,
                      .nbytes = (size_t)LARGE_H * LARGE_W * 3};
    msgpack_object seg = rec_map(), vae;
    if (rec_tensor_obj(r, &t, false, &vae, err)) {
        rec_destroy(&r);
        return NULL;
    }
    if (rec_set(r, &seg, "kind", rec_str(r, "image")) || rec_set(r, &seg, "gen", rec_bool(true)) ||
        rec_set(r, &seg, "und", rec_bool(false)) || rec_set(r, &seg, "loss", rec_bool(true)) ||
        rec_set(r, &seg, "vae", vae) || rec_push(r, rec_map_getw(&r->root, "segments"), seg))
        goto oom;
    return r;
oom:
    rec_destroy(&r);
    snprintf(err, REC_ERR_LEN, "out of memory");
    return NULL;
}

static int encoded_size(const rec_t *r, size_t *size, char *err)
{
    rec_enc_t *e = rec_enc_new();
    if (!e) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    int rc = rec_encode(e, r, err);
    *size = rc ? 0 : rec_enc_size(e);
    rec_enc_destroy(&e);
    return rc;
}

/* The first tensor of segments[0] ("tokens" or "vae"). */
static int first_tensor(const rec_t *r, rec_tensor_t *t, char *err)
{
    const msgpack_object *segs = rec_get(r, "segments");
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY || segs->via.array.size < 1) {
        snprintf(err, REC_ERR_LEN, "no segments");
        return -1;
    }
    const msgpack_object *seg = &segs->via.array.ptr[0], *o = rec_map_get(seg, "tokens");
    if (!o)
        o = rec_map_get(seg, "vae");
    return rec_tensor_get(o, t, err);
}

static int workload_init(workload_t *w, bool large, bool quick, const uint8_t *pixels, char *err)
{
    memset(w, 0, sizeof *w);
    w->large = large;
    w->name = large ? "3MiB" : "1KiB";
    w->n = (large ? LARGE_N : SMALL_N) / (quick ? 10 : 1);
    if (large) {
        if (!(w->rec = large_record(pixels, err)) || encoded_size(w->rec, &w->wire, err))
            return -1;
    } else {
        // the most tokens that keep the encoded record within SMALL_TARGET bytes
        size_t base;
        rec_t *r = small_record(0, err);
        if (!r || encoded_size(r, &base, err))
            return -1;
        rec_destroy(&r);
        for (int64_t ntok = (int64_t)(SMALL_TARGET - base) / 4; ntok >= 0; ntok--) {
            if (!(w->rec = small_record(ntok, err)) || encoded_size(w->rec, &w->wire, err))
                return -1;
            if (w->wire <= SMALL_TARGET)
                break;
            rec_destroy(&w->rec);
        }
        if (!w->rec) {
            snprintf(err, REC_ERR_LEN, "an empty sample is already over %d bytes", SMALL_TARGET);
            return -1;
        }
    }
    rec_tensor_t t;
    if (first_tensor(w->rec, &t, err))
        return -1;
    w->tensor_fnv = rec_fnv1a(t.data, t.nbytes);
    return 0;
}

/* ---- endpoints ---- */

/* A TCP port on 127.0.0.1 that is free now (the kernel's pick; closed again
 * before ZeroMQ binds it, so another process could take it in between). */
static int free_port(char *err)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) {
        snprintf(err, REC_ERR_LEN, "finding a free port: %s", strerror(errno));
        if (s >= 0)
            close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}

/* The ZeroMQ address (no @ or >) of measurement number `seq`; an ipc path is
 * per process and measurement, so a leftover socket file never collides. */
static int zmq_addr(transport_t t, int seq, char *addr, size_t size, char *err)
{
    if (t == T_IPC) {
        snprintf(addr, size, "ipc:///tmp/bagel-bench-%ld-%d", (long)getpid(), seq);
        return 0;
    }
    int port = free_port(err);
    if (port < 0)
        return -1;
    snprintf(addr, size, "tcp://127.0.0.1:%d", port);
    return 0;
}

static void zmq_addr_cleanup(const char *addr)
{
    if (strncmp(addr, "ipc://", 6) == 0)
        unlink(addr + 6);
}

/* ---- the two processes ---- */

/* The consumer drives the producer over one pipe: a byte to start, and for
 * ZeroMQ a second byte once it has taken the whole stream. The producer closes
 * its socket only then, because libzmq (4.3.4, and its master as of this
 * writing) drops what is still in the kernel's buffer of an ipc:// connection
 * when the sender closes while the receiver is held back by its high-water
 * mark: the tail of the stream, end record included, never arrives and the
 * reader waits forever (libzmq issue #4660; stream.c has no such wait yet). */
typedef struct {
    int fd;        // write end; -1 once closed
    bool released; // the start byte went out
    double t0;     // when it did
} barrier_t;

/* The reader's idle hook: the first time the consumer is about to wait, it is
 * ready (bound, or reading the pipe), so the clock starts and so does the
 * producer. */
static void release(void *arg)
{
    barrier_t *b = arg;
    if (b->fd < 0 || b->released)
        return;
    b->released = true;
    b->t0 = now_s();
    if (write(b->fd, "g", 1) != 1) {
        // the producer is gone; reaping it reports that
    }
}

/* The consumer is done (or failed: then the producer reads end of file before
 * a start byte and gives up). */
static void barrier_end(barrier_t *b)
{
    if (b->fd < 0)
        return;
    if (b->released && write(b->fd, "d", 1) != 1) {
        // as above
    }
    close(b->fd);
    b->fd = -1;
}

/* Producer side: 0 when the byte came, -1 at end of file. */
static int barrier_wait(int fd)
{
    char c;
    ssize_t k;
    while ((k = read(fd, &c, 1)) < 0 && errno == EINTR)
        ;
    return k == 1 ? 0 : -1;
}

/* Producer of a framed run; returns the child's exit status. */
static int produce_framed(const workload_t *w, const char *spec, int go)
{
    char err[REC_ERR_LEN];
    if (barrier_wait(go))
        return 1;
    stream_opts_t o;
    stream_opts_default(&o);
    wr_t *out = wr_open(spec, &o, err);
    if (!out)
        goto fail;
    msgpack_object *seq = rec_map_getw(&w->rec->root, "seq");
    for (long i = 0; i < w->n; i++) {
        *seq = rec_int(SEQ_BASE + i);
        if (wr_put(out, w->rec, err))
            goto fail;
    }
    rec_t *end = rec_new_end("bench", 0, w->n);
    if (!end) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        goto fail;
    }
    int rc = wr_put(out, end, err);
    rec_destroy(&end);
    if (rc)
        goto fail;
    close(go);
    if (wr_close(&out, err))
        goto fail;
    return 0;
fail:
    wr_abort(&out);
    fprintf(stderr, "bench-ipc: producer: %s\n", err);
    return 1;
}

/* Producer of a raw run: `fd` >= 0 is a pipe, else ZeroMQ PUSH to addr. */
static int produce_raw(const workload_t *w, int fd, const char *addr, int go)
{
    if (barrier_wait(go))
        return 1;
    size_t batch = w->wire, nbatch = 1;
    if (fd >= 0 && w->wire < WRITER_BATCH)
        nbatch = WRITER_BATCH / w->wire, batch = nbatch * w->wire;
    char *buf = malloc(batch);
    if (!buf) {
        fprintf(stderr, "bench-ipc: producer: out of memory\n");
        return 1;
    }
    memset(buf, 0xa5, batch);
    if (fd >= 0) {
        uint64_t left = (uint64_t)w->n * w->wire;
        while (left > 0) {
            size_t want = left < batch ? (size_t)left : batch;
            for (size_t off = 0; off < want;) {
                ssize_t k = write(fd, buf + off, want - off);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k < 0) {
                    fprintf(stderr, "bench-ipc: producer: write: %s\n", strerror(errno));
                    free(buf);
                    return 1;
                }
                off += (size_t)k;
            }
            left -= want;
        }
        close(fd);
        close(go);
        free(buf);
        return 0;
    }
    int rc = 1, hwm = 64, linger = -1;
    void *ctx = zmq_ctx_new(), *s = ctx ? zmq_socket(ctx, ZMQ_PUSH) : NULL;
    if (!s || zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(s, addr)) {
        fprintf(stderr, "bench-ipc: producer: %s: %s\n", addr, zmq_strerror(errno));
        goto out;
    }
    for (long i = 0; i < w->n; i++)
        while (zmq_send(s, buf, w->wire, 0) < 0) {
            if (errno != EINTR) {
                fprintf(stderr, "bench-ipc: producer: send: %s\n", zmq_strerror(errno));
                goto out;
            }
        }
    rc = 0;
    barrier_wait(go);
out:
    close(go);
    if (s)
        zmq_close(s);
    if (ctx)
        zmq_ctx_term(ctx);
    free(buf);
    return rc;
}

/* What a forked producer runs. */
typedef struct {
    bool raw;
    const workload_t *w;
    const char *spec; // framed: the output endpoint
    const char *addr; // raw ZeroMQ: the address to connect
    int data_fd;      // pipe runs: the write end (framed: moved onto fd 1)
    int close_fd;     // a descriptor the child must not keep (the read end)
    int go[2];
} producer_t;

/* Fork the producer; returns its pid, or -1 with err. */
static pid_t spawn(producer_t *p, char *err)
{
    if (pipe2(p->go, O_CLOEXEC)) {
        snprintf(err, REC_ERR_LEN, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, REC_ERR_LEN, "fork: %s", strerror(errno));
        close(p->go[0]);
        close(p->go[1]);
        return -1;
    }
    if (pid == 0) {
        close(p->go[1]);
        if (p->close_fd >= 0)
            close(p->close_fd);
        int rc;
        if (p->raw) {
            rc = produce_raw(p->w, p->data_fd, p->addr, p->go[0]);
        } else {
            if (p->data_fd >= 0) {
                // the stage's "-": records go to stdout
                if (dup2(p->data_fd, 1) < 0)
                    _exit(1);
                close(p->data_fd);
            }
            rc = produce_framed(p->w, p->spec, p->go[0]);
        }
        _exit(rc);
    }
    close(p->go[0]);
    if (p->data_fd >= 0)
        close(p->data_fd);
    return pid;
}

/* Wait for the producer; kill it first when the consumer failed. */
static int reap(pid_t pid, bool kill_it, char *err)
{
    int st;
    if (kill_it)
        kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, REC_ERR_LEN, "waitpid: %s", strerror(errno));
            return -1;
        }
    if (kill_it)
        return -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, REC_ERR_LEN, "the producer failed (%s %d)", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -1;
    }
    return 0;
}

static void watchdog_arm(void)
{
    timed_out = 0;
    alarm(WATCHDOG_S);
}

static int watchdog_disarm(char *err)
{
    alarm(0);
    if (timed_out) {
        snprintf(err, REC_ERR_LEN, "no result after %d s", WATCHDOG_S);
        return -1;
    }
    return 0;
}

/* Check the last sample against the one sent. */
static int check_last(const workload_t *w, const rec_t *r, long seq, char *err)
{
    rec_tensor_t t;
    if (rec_seq(r) != SEQ_BASE + seq) {
        snprintf(err, REC_ERR_LEN, "last sample has seq %lld, expected %lld", (long long)rec_seq(r),
                 (long long)(SEQ_BASE + seq));
        return -1;
    }
    if (first_tensor(r, &t, err))
        return -1;
    if (rec_fnv1a(t.data, t.nbytes) != w->tensor_fnv) {
        snprintf(err, REC_ERR_LEN, "last sample's tensor data differs from what was sent");
        return -1;
    }
    return 0;
}

/* The framed run: the real reader and writer. */
/* The end of a run: reap the producer (killing it when the consumer failed),
 * remove a ZeroMQ ipc address, fill the timing. Returns the run's status. */
static int finish_run(pid_t pid, int rc, const char *addr, const workload_t *w, double secs, timing_t *out, char *err)
{
    char perr[REC_ERR_LEN];
    if (reap(pid, rc != 0, perr) && rc == 0) {
        snprintf(err, REC_ERR_LEN, "%s", perr);
        rc = -1;
    }
    if (addr[0])
        zmq_addr_cleanup(addr);
    out->secs = secs;
    out->bytes = (uint64_t)w->n * w->wire;
    return rc;
}

static int run_framed(transport_t tr, const workload_t *w, int seq, timing_t *out, char *err)
{
    char addr[EP_ADDR_MAX], in_spec[EP_ADDR_MAX + 2], out_spec[EP_ADDR_MAX + 2];
    int data[2] = {-1, -1}, saved_stdin = -1;
    producer_t p = {.raw = false, .w = w, .data_fd = -1, .close_fd = -1};
    addr[0] = 0;
    if (tr == T_PIPE) {
        if (pipe2(data, O_CLOEXEC)) {
            snprintf(err, REC_ERR_LEN, "pipe: %s", strerror(errno));
            return -1;
        }
        snprintf(in_spec, sizeof in_spec, "-");
        snprintf(out_spec, sizeof out_spec, "-");
        p.data_fd = data[1];
        p.close_fd = data[0];
    } else {
        if (zmq_addr(tr, seq, addr, sizeof addr, err))
            return -1;
        snprintf(in_spec, sizeof in_spec, "@%s", addr);
        snprintf(out_spec, sizeof out_spec, ">%s", addr);
    }
    p.spec = out_spec;
    pid_t pid = spawn(&p, err);
    if (pid < 0) {
        if (data[0] >= 0)
            close(data[0]), close(data[1]);
        return -1;
    }
    barrier_t bar = {.fd = p.go[1]};
    if (tr == T_PIPE) {
        // the stage's "-": records come on stdin
        saved_stdin = dup(0);
        if (saved_stdin < 0 || dup2(data[0], 0) < 0) {
            snprintf(err, REC_ERR_LEN, "dup2: %s", strerror(errno));
            close(data[0]);
            barrier_end(&bar);
            reap(pid, true, err);
            return -1;
        }
        close(data[0]);
    }
    stream_opts_t o;
    stream_opts_default(&o);
    o.expect_ends = 1;
    o.stage = "bench-ipc";
    const char *specs[] = {in_spec};
    int rc = -1;
    long got = 0;
    double t1 = 0;
    watchdog_arm();
    rd_t *rd = rd_open(specs, 1, &o, err);
    if (rd) {
        rd_set_idle(rd, release, &bar);
        rec_t *r;
        int k;
        char msg[REC_ERR_LEN];
        while ((k = rd_next(rd, &r, msg)) == 1) {
            if (r->type == REC_SAMPLE) {
                if (r->wire_size != w->wire) {
                    snprintf(err, REC_ERR_LEN, "sample %ld: %zu bytes, sent %zu", got, r->wire_size, w->wire);
                    rec_destroy(&r);
                    break;
                }
                if (++got == w->n) {
                    t1 = now_s();
                    if (check_last(w, r, got - 1, err)) {
                        rec_destroy(&r);
                        break;
                    }
                }
            }
            rec_destroy(&r);
        }
        if (k < 0 || k == 2)
            snprintf(err, REC_ERR_LEN, "%s", msg);
        else if (k == 0 && got != w->n)
            snprintf(err, REC_ERR_LEN, "%ld samples arrived, %ld sent", got, w->n);
        else if (k == 0 && rd_stats(rd).records != (uint64_t)w->n + 1)
            snprintf(err, REC_ERR_LEN, "%llu records arrived, %ld sent", (unsigned long long)rd_stats(rd).records,
                     w->n + 1);
        else if (k == 0 && !rd_interrupted(rd))
            rc = 0;
        rd_close(&rd);
    }
    if (watchdog_disarm(err))
        rc = -1;
    barrier_end(&bar);
    if (saved_stdin >= 0) {
        dup2(saved_stdin, 0);
        close(saved_stdin);
    }
    return finish_run(pid, rc, addr, w, t1 - bar.t0, out, err);
}

/* Consumer of a raw pipe run. */
static int consume_raw_pipe(const workload_t *w, int fd, barrier_t *bar, double *t1, char *err)
{
    size_t cap = w->wire > READER_CHUNK ? w->wire : READER_CHUNK;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    uint64_t want = (uint64_t)w->n * w->wire, got = 0;
    release(bar);
    while (got < want) {
        ssize_t k = read(fd, buf, cap);
        if (k < 0 && errno == EINTR && !timed_out)
            continue;
        if (k <= 0) {
            snprintf(err, REC_ERR_LEN, "read: %s after %llu of %llu bytes", k < 0 ? strerror(errno) : "end of input",
                     (unsigned long long)got, (unsigned long long)want);
            free(buf);
            return -1;
        }
        got += (uint64_t)k;
    }
    *t1 = now_s();
    free(buf);
    return 0;
}

/* Consumer of a raw ZeroMQ run: bind, release, take N messages. */
static int consume_raw_zmq(const workload_t *w, const char *addr, barrier_t *bar, double *t1, char *err)
{
    int rc = -1, hwm = 64, linger = 0;
    void *ctx = zmq_ctx_new(), *s = ctx ? zmq_socket(ctx, ZMQ_PULL) : NULL;
    if (!s || zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) || zmq_bind(s, addr)) {
        snprintf(err, REC_ERR_LEN, "%s: %s", addr, zmq_strerror(errno));
        goto out;
    }
    release(bar);
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (long i = 0; i < w->n; i++) {
        int k;
        while ((k = zmq_msg_recv(&m, s, 0)) < 0 && errno == EINTR && !timed_out)
            ;
        if (k < 0) {
            snprintf(err, REC_ERR_LEN, "receive: %s after %ld messages", zmq_strerror(errno), i);
            zmq_msg_close(&m);
            goto out;
        }
        if ((size_t)k != w->wire) {
            snprintf(err, REC_ERR_LEN, "message %ld: %d bytes, sent %zu", i, k, w->wire);
            zmq_msg_close(&m);
            goto out;
        }
    }
    *t1 = now_s();
    zmq_msg_close(&m);
    rc = 0;
out:
    if (s)
        zmq_close(s);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}

static int run_raw(transport_t tr, const workload_t *w, int seq, timing_t *out, char *err)
{
    char addr[EP_ADDR_MAX];
    int data[2] = {-1, -1};
    producer_t p = {.raw = true, .w = w, .data_fd = -1, .close_fd = -1};
    addr[0] = 0;
    if (tr == T_PIPE) {
        if (pipe2(data, O_CLOEXEC)) {
            snprintf(err, REC_ERR_LEN, "pipe: %s", strerror(errno));
            return -1;
        }
        p.data_fd = data[1];
        p.close_fd = data[0];
    } else {
        if (zmq_addr(tr, seq, addr, sizeof addr, err))
            return -1;
        p.addr = addr;
    }
    pid_t pid = spawn(&p, err);
    if (pid < 0) {
        if (data[0] >= 0)
            close(data[0]), close(data[1]);
        return -1;
    }
    barrier_t bar = {.fd = p.go[1]};
    double t1 = 0;
    watchdog_arm();
    int rc = tr == T_PIPE ? consume_raw_pipe(w, data[0], &bar, &t1, err) : consume_raw_zmq(w, addr, &bar, &t1, err);
    if (watchdog_disarm(err))
        rc = -1;
    barrier_end(&bar);
    if (data[0] >= 0)
        close(data[0]);
    return finish_run(pid, rc, addr, w, t1 - bar.t0, out, err);
}

/* ---- results ---- */

static double mb_s(const timing_t *t) { return t->secs > 0 ? (double)t->bytes / t->secs / 1e6 : 0; }
static double rec_s(const timing_t *t, long n) { return t->secs > 0 ? (double)n / t->secs : 0; }
static double ratio(const result_t *r) { return mb_s(&r->raw) > 0 ? mb_s(&r->framed) / mb_s(&r->raw) : 0; }

static bool goal_met(const result_t *r)
{
    return r->w->large ? ratio(r) >= GOAL_RATIO : rec_s(&r->framed, r->w->n) >= GOAL_RECS;
}

static void goal_text(const result_t *r, char *buf, size_t size)
{
    if (r->w->large)
        snprintf(buf, size, "framed/raw >= %.0f%%", 100 * GOAL_RATIO);
    else
        snprintf(buf, size, ">= %.0fk rec/s", GOAL_RECS / 1000);
}

static void print_table(const result_t *res, int nres)
{
    printf("raw: the same bytes unframed; pipe in 64 KiB writes (1KiB) or whole records (3MiB), ZeroMQ one\n"
           "message a record. ratio = framed MB/s / raw MB/s.\n");
    printf("%-8s %-6s %8s %8s %13s %12s %10s %7s  %-20s %s\n", "transpt", "record", "bytes", "N", "framed rec/s",
           "framed MB/s", "raw MB/s", "ratio", "goal", "result");
    for (int i = 0; i < nres; i++) {
        const result_t *r = &res[i];
        char goal[64];
        goal_text(r, goal, sizeof goal);
        printf("%-8s %-6s %8zu %8ld %13.0f %12.1f %10.1f %6.0f%%  %-20s %s\n", transport_names[r->t], r->w->name,
               r->w->wire, r->w->n, rec_s(&r->framed, r->w->n), mb_s(&r->framed), mb_s(&r->raw), 100 * ratio(r), goal,
               goal_met(r) ? "goal met" : "goal missed");
    }
}

static int write_json(const char *path, const result_t *res, int nres, bool quick, int repeat, char *err)
{
    struct utsname u;
    char date[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (uname(&u))
        snprintf(u.release, sizeof u.release, "?");
    json_t *rows = json_array();
    for (int i = 0; i < nres; i++) {
        const result_t *r = &res[i];
        char goal[64];
        goal_text(r, goal, sizeof goal);
        json_array_append_new(rows, json_pack("{s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:s,s:b}", "transport",
                                              transport_names[r->t], "record", r->w->name, "record_bytes",
                                              (json_int_t)r->w->wire, "n", (json_int_t)r->w->n, "framed_s",
                                              r->framed.secs, "framed_rec_s", rec_s(&r->framed, r->w->n), "framed_mb_s",
                                              mb_s(&r->framed), "raw_s", r->raw.secs, "raw_mb_s", mb_s(&r->raw),
                                              "ratio", ratio(r), "goal", goal, "goal_met", goal_met(r)));
    }
    json_t *doc = json_pack("{s:s,s:s,s:I,s:s,s:b,s:i,s:s,s:o}", "benchmark", "bench-ipc", "date", date, "nproc",
                            (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "kernel", u.release, "quick", quick, "repeat",
                            repeat, "mb", "10^6 bytes", "results", rows);
    int rc = doc ? json_dump_file(doc, path, JSON_INDENT(2)) : -1;
    json_decref(doc);
    if (rc)
        snprintf(err, REC_ERR_LEN, "%s: could not write the results", path);
    return rc;
}

static const char help[] =
    "usage: bench-ipc [--quick] [--repeat K] [--json FILE]\n"
    "Records/s and MB/s of the record stream between two processes (pipe, ZeroMQ ipc, ZeroMQ tcp),\n"
    "framed (wr_put / rd_next) next to the raw transport moving the same bytes.\n"
    "      --quick      a tenth of the records (a quick look; numbers are noisier)\n"
    "      --repeat K   run each measurement K times and keep the fastest (default 3)\n"
    "      --json FILE  also write the results as JSON to FILE\n"
    "Exit status: 0 when every measurement ran (goals met or not), 1 when one failed, 2 on usage.\n";

int main(int argc, char **argv)
{
    bool quick = false;
    int repeat = 3;
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            char *end;
            long k = strtol(argv[++i], &end, 10);
            if (*end || k < 1 || k > 100) {
                fprintf(stderr, "bench-ipc: --repeat: \"%s\", expected a count from 1 to 100\n", argv[i]);
                return 2;
            }
            repeat = (int)k;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(help, stdout);
            return 0;
        } else {
            fprintf(stderr, "bench-ipc: unknown argument \"%s\"\n%s", argv[i], help);
            return 2;
        }
    }
    struct sigaction sa = {.sa_handler = on_alarm}; // no SA_RESTART: a blocked read returns
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); // a failed peer is an error return, not a death

    char err[REC_ERR_LEN];
    size_t npix = (size_t)LARGE_H * LARGE_W * 3;
    uint8_t *pixels = malloc(npix);
    if (!pixels) {
        fprintf(stderr, "bench-ipc: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < npix; i++)
        pixels[i] = (uint8_t)(i * 31 + (i >> 12));
    workload_t wl[2];
    if (workload_init(&wl[0], false, quick, NULL, err) || workload_init(&wl[1], true, quick, pixels, err)) {
        fprintf(stderr, "bench-ipc: building the records: %s\n", err);
        return 1;
    }
    printf("bench-ipc: producer and consumer processes; small = %zu-byte sample (text, i32 tokens), "
           "large = %zu-byte sample (image, u8 vae [%d,%d,3]); hwm 64; MB = 10^6 bytes; best of %d%s\n",
           wl[0].wire, wl[1].wire, LARGE_H, LARGE_W, repeat, quick ? "; --quick (N / 10)" : "");
    fflush(stdout);

    result_t res[T_COUNT * 2];
    int nres = 0, seq = 0, status = 0;
    for (int t = 0; t < T_COUNT; t++)
        for (int k = 0; k < 2; k++) {
            result_t *r = &res[nres];
            memset(r, 0, sizeof *r);
            r->t = (transport_t)t;
            r->w = &wl[k];
            bool ok = true;
            for (int rep = 0; rep < repeat && ok; rep++) {
                timing_t f, w;
                if (run_framed(r->t, r->w, seq++, &f, err)) {
                    fprintf(stderr, "bench-ipc: %s %s framed: %s\n", transport_names[t], wl[k].name, err);
                    ok = false;
                } else if (run_raw(r->t, r->w, seq++, &w, err)) {
                    fprintf(stderr, "bench-ipc: %s %s raw: %s\n", transport_names[t], wl[k].name, err);
                    ok = false;
                } else {
                    if (rep == 0 || f.secs < r->framed.secs)
                        r->framed = f;
                    if (rep == 0 || w.secs < r->raw.secs)
                        r->raw = w;
                }
            }
            if (!ok) {
                status = 1;
                if (timed_out)
                    goto done; // the stop request cannot be taken back: later runs would end at once
                continue;
            }
            nres++;
        }
done:
    print_table(res, nres);
    if (json_path && write_json(json_path, res, nres, quick, repeat, err)) {
        fprintf(stderr, "bench-ipc: %s\n", err);
        status = 1;
    }
    for (int k = 0; k < 2; k++)
        rec_destroy(&wl[k].rec);
    free(pixels);
    return status;
}
