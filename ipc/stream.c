/* stream.c — record readers and writers over stdio, files and ZeroMQ.
 *
 * Readers decode in place: a record's strings and tensor data point into the
 * buffer it arrived in (a reference-counted chunk for files and pipes, the
 * ZeroMQ message itself for sockets), which the record keeps alive. Writers
 * send tensor data from where it lies (writev for files and pipes).
 *
 * ZeroMQ wire protocol (docs/ipc.md): writers and readers are ROUTERs. A
 * message is two frames [seq][records]: seq a u64 (little-endian) counting
 * the writer's messages, then one record, or several small ones back to
 * back. A reader acknowledges a message once its stage has taken every
 * record in it, with one-frame replies of u64 seqs. A writer keeps at most
 * `hwm` messages unacknowledged (its window), and no more than
 * WR_WINDOW_BYTES of them, and closes only when every message is
 * acknowledged. It deals each message to the reader with the fewest
 * unacknowledged (at most PEER_WINDOW each, unless its one reader is one it
 * connects to), so a fast reader takes more than a slow one. A reader that
 * connects to a writer says hello ['H'] on each connection: a ROUTER can
 * address only a peer it has heard from (or one it connected to, by an
 * alias). Why not PUSH/PULL: libzmq drops the bytes still in
 * a receiving socket's kernel buffer when the sender hangs up while the
 * receiver applies back-pressure (its queue at the high-water mark), so
 * records were lost whenever a fast producer finished before a slow consumer.
 * With the window as the back-pressure, the reader's queue needs no limit of
 * its own (it is bounded by the sum of the writers' windows), its input is
 * never stopped, and nothing sent is dropped.
 *
 * Between processes of one host (every address ipc:// or inproc://) the
 * records frame is a descriptor of a slot in the writer's shared-memory pool
 * instead of the bytes (shm.h); the slot is freed by the message's
 * acknowledgement, and a reader that cannot map the pool refuses with
 * ['R' seq], which the writer answers with the bytes through the socket. */
#define _GNU_SOURCE
#include "stream.h"

#include "curve.h"
#include "deliver.h"
#include "endpoint.h"
#include "le.h"
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

void stream_opts_default(stream_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->limits = rec_default_limits;
    o->hwm = 256;
    o->linger_ms = -1;
    o->stage = "bagel";
    o->ack_window = DLV_WINDOW_MAX; // the ceiling: the limit in use follows the rate (deliver.h)
}

/* Small records are gathered into writes (files, pipes) and messages
 * (ZeroMQ) of up to this many bytes; on ZeroMQ a record over half of it
 * travels alone (put_zmq). 1 MiB so that some thirty image records (34 KB)
 * share a message: each message costs both processes' I/O threads a wakeup
 * and the reader an acknowledgement, and at 256 KiB bagel-image fed and
 * read over ZeroMQ switched context 4,500 times for 11,200 records (1,100 at
 * 1 MiB) and used 6% more CPU (docs/ipc.md). */
#define ZBATCH_SIZE ((size_t)1024 << 10)
/* ... and of at most this many records: small records (tokenized text, a
 * few hundred bytes) would otherwise fill a message with seconds of the
 * next stage's work, dealt to one replica, so that at the end of a run
 * some replicas still hold a message's work while others idle. */
#define ZBATCH_RECORDS 256
/* Shared-memory slots hold one message each (shm.h): ZBATCH_SIZE for a
 * writer whose first record is of this size or more (images), else
 * SHM_SLOT_SMALL, and as many as fit the window's bytes cap, at most the
 * window. So a writer of small records (tokenized text, at most 256 to a
 * message of some 160 KB) keeps up to 256 messages in shared memory, where
 * 1 MiB slots would hold 64 of them and send the rest through the socket;
 * its messages are then of at most SHM_SLOT_SMALL. */
#define SHM_LARGE_RECORD ((size_t)16 << 10)
#define SHM_SLOT_SMALL   ((size_t)256 << 10)

/* ---- stop requests ---- */

static volatile sig_atomic_t stop_level;

void ipc_stop_request(void)
{
    if (stop_level < 100)
        stop_level++;
}

int ipc_stop_level(void) { return stop_level; }

/* ---- the process's ZeroMQ context, shared by its sockets ---- */

static void *zctx;
static int zctx_users;

static void *zctx_get(char *err)
{
    if (!zctx) {
        zctx = zmq_ctx_new();
        if (!zctx) {
            snprintf(err, REC_ERR_LEN, "zmq_ctx_new: %s", zmq_strerror(errno));
            return NULL;
        }
        // Two I/O threads by default: a socket's connections are shared out
        // among them, so a reader fed by many writers (a sink behind R
        // replicas) receives on two cores. One sink fed by two writers of
        // 34 KB records over ipc took 36-38k records/s with two, 23-27k with
        // libzmq's default of one (2-core VM, docs/supervisor.md).
        // BAGEL_ZMQ_IO_THREADS=N (1 to 64) sets another count.
        const char *io = getenv("BAGEL_ZMQ_IO_THREADS");
        int n = io ? atoi(io) : 2;
        zmq_ctx_set(zctx, ZMQ_IO_THREADS, n < 1 ? 1 : n > 64 ? 64 : n);
    }
    zctx_users++;
    return zctx;
}

static void zctx_put(void)
{
    if (zctx && --zctx_users == 0) {
        while (zmq_ctx_term(zctx) != 0 && errno == EINTR)
            ;
        zctx = NULL;
    }
}

/* A writer's window: messages sent and not yet acknowledged, a power of
 * two. The default, 256, came from the 16-core benchmark: with 64, sixteen
 * image replicas fanned in to one sink ran 25.7k samples/s and their
 * processes idled; with 512, 30.5k (docs/supervisor.md). The window counts
 * messages, not the span from the oldest unacknowledged one: in a fan-out
 * one reader that is behind would hold a span for everyone. The span may
 * reach WR_SPAN windows (the acknowledgement bitmap's size). The bytes cap
 * keeps large records from making that many messages a memory problem. */
#define WR_WINDOW_BYTES ((uint64_t)64 << 20)
#define WR_SPAN         16
static int zwindow(const stream_opts_t *o)
{
    int w = 2;
    while (w < o->hwm && w < (1 << 20))
        w <<= 1;
    return w;
}

/* Is a tcp address's host the loopback interface? */
static bool tcp_loopback(const char *addr)
{
    const char *h = addr + 6; // after tcp://
    const char *colon = strrchr(h, ':');
    size_t n = colon ? (size_t)(colon - h) : strlen(h);
    if (n >= 4 && strncmp(h, "127.", 4) == 0)
        return true;
    static const char *const names[] = {"localhost", "[::1]", "::1", "lo"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i]) == n && strncmp(h, names[i], n) == 0)
            return true;
    return false;
}

/* zsock_open's flags. ZS_WRITER: a data socket's writing end (queues sized
 * to the window). ZS_ALIAS: each address it connects to gets the routing id
 * peer_alias(i), so that a ROUTER can address that peer before it has heard
 * from it. */
#define ZS_WRITER 1u
#define ZS_ALIAS  2u

/* The routing id a ROUTER gives the peer at its i-th address (ZS_ALIAS),
 * into out[PEER_ALIAS_LEN]; its length. */
#define PEER_ALIAS_LEN 16
static size_t peer_alias(int i, char *out)
{
    return (size_t)snprintf(out, PEER_ALIAS_LEN, "peer%d", i);
}

/* Open a ZeroMQ socket of `type` on every address of ep; rid, when given,
 * is its routing id (set before it connects). */
static void *zsock_open(const ep_t *ep, int type, const stream_opts_t *o, const char *rid, unsigned flags,
                        char *err)
{
    // a socket that listens beyond this machine needs keys, or a stated choice
    for (int i = 0; i < ep->nzmq; i++) {
        const ep_zmq_t *z = &ep->zmq[i];
        if (z->bind && strncmp(z->addr, "tcp://", 6) == 0 && !o->curve_server_key && !o->insecure &&
            !tcp_loopback(z->addr)) {
            snprintf(err, REC_ERR_LEN,
                     "bind %s: listening beyond loopback without CURVE keys: give --curve-server-key "
                     "(bagel-cat --curve-keygen makes keys), or --insecure",
                     z->addr);
            return NULL;
        }
    }
    void *ctx = zctx_get(err);
    if (!ctx)
        return NULL;
    void *s = zmq_socket(ctx, type);
    if (!s) {
        snprintf(err, REC_ERR_LEN, "zmq_socket: %s", zmq_strerror(errno));
        zctx_put();
        return NULL;
    }
    // A writer's window bounds what is in flight; zmq's own queues are
    // sized so that they never hold a record back before the window does.
    int window = zwindow(o), unlimited = 0, linger = o->linger_ms;
    if (type == ZMQ_DEALER || (flags & ZS_WRITER)) {
        zmq_setsockopt(s, ZMQ_SNDHWM, &window, sizeof window);
        zmq_setsockopt(s, ZMQ_RCVHWM, &unlimited, sizeof unlimited);
        // ZMQ_IMMEDIATE stays off: with it, a connection's queue is dropped
        // when the peer hangs up, acknowledgements not yet read included
    } else {
        zmq_setsockopt(s, ZMQ_RCVHWM, &unlimited, sizeof unlimited);
        zmq_setsockopt(s, ZMQ_SNDHWM, &unlimited, sizeof unlimited);
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (rid)
        zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, strlen(rid));
    // a peer host that vanishes without closing its connections is noticed
    // (tcp; a process that dies closes its connections itself)
    int hb_ivl = 2000, hb_timeout = 15000;
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout);
    // a message holds one record, or a batch of small ones
    int64_t maxmsg = (int64_t)(o->limits.max_message > ZBATCH_SIZE ? o->limits.max_message : ZBATCH_SIZE);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    for (int i = 0; i < ep->nzmq; i++) {
        const ep_zmq_t *z = &ep->zmq[i];
        if (strncmp(z->addr, "tcp://", 6) == 0 && o->curve_server_key &&
            curve_apply(ctx, s, z->bind, o->curve_server_key, o->curve_client_keys, err))
            goto fail;
        if (!z->bind && (flags & ZS_ALIAS)) {
            char alias[PEER_ALIAS_LEN];
            zmq_setsockopt(s, ZMQ_CONNECT_ROUTING_ID, alias, peer_alias(i, alias));
        }
        int rc = z->bind ? zmq_bind(s, z->addr) : zmq_connect(s, z->addr);
        if (rc != 0) {
            snprintf(err, REC_ERR_LEN, "%s %s: %s", z->bind ? "bind" : "connect", z->addr, zmq_strerror(errno));
            goto fail;
        }
    }
    return s;
fail:
    linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s);
    zctx_put();
    return NULL;
}

static void zsock_close(void *s)
{
    if (!s)
        return;
    if (stop_level >= 2) {
        int linger = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    }
    zmq_close(s);
    zctx_put();
}

/* A PAIR socket that receives sock's `events` (a socket monitor), or NULL
 * (err). monitor_close undoes it. */
static void *monitor_open(void *sock, int events, char *err)
{
    char addr[64];
    snprintf(addr, sizeof addr, "inproc://bagel-monitor-%p", sock);
    if (zmq_socket_monitor(sock, addr, events) != 0) {
        snprintf(err, REC_ERR_LEN, "socket monitor: %s", zmq_strerror(errno));
        return NULL;
    }
    void *ctx = zctx_get(err), *mon = ctx ? zmq_socket(ctx, ZMQ_PAIR) : NULL;
    int zero = 0;
    if (mon && (zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero), zmq_connect(mon, addr) == 0))
        return mon;
    if (ctx)
        snprintf(err, REC_ERR_LEN, "socket monitor: %s", zmq_strerror(errno));
    if (mon)
        zmq_close(mon);
    if (ctx)
        zctx_put();
    zmq_socket_monitor(sock, NULL, 0);
    return NULL;
}

static void monitor_close(void *sock, void **mon)
{
    if (!*mon)
        return;
    zmq_socket_monitor(sock, NULL, 0);
    zmq_close(*mon);
    *mon = NULL;
    zctx_put();
}

/* Take the events waiting on a monitor: true if one of them is `event`. */
static bool monitor_saw(void *mon, uint16_t event)
{
    bool saw = false;
    for (;;) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return saw;
        }
        uint16_t id = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&id, zmq_msg_data(&ev), 2);
        saw |= id == event;
        while (zmq_msg_more(&ev)) { // the endpoint's address
            zmq_msg_close(&ev);
            zmq_msg_init(&ev);
            if (zmq_msg_recv(&ev, mon, 0) < 0)
                break;
        }
        zmq_msg_close(&ev);
    }
}

/* ---- reference-counted read buffers ---- */

typedef struct {
    int refs;
    size_t cap;
    char data[];
} chunk_t;

#define CHUNK_SIZE ((size_t)1 << 20)

static chunk_t *chunk_new(size_t cap)
{
    chunk_t *c = malloc(sizeof *c + cap);
    if (c) {
        c->refs = 1;
        c->cap = cap;
    }
    return c;
}

static void chunk_unref(void *p)
{
    chunk_t *c = p;
    if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(c);
}

/* A received ZeroMQ message shared by the records decoded from it. */
typedef struct {
    int refs;
    zmq_msg_t m;
} zbuf_t;

static void zbuf_unref(void *p)
{
    zbuf_t *z = p;
    if (z && __atomic_sub_fetch(&z->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        zmq_msg_close(&z->m);
        free(z);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- reader ---- */

/* A reader acknowledges a writer's records in batches of this many, and
 * whenever it is about to wait for input. Well under the smallest window. */
#define ACK_BATCH 16

/* ... but a reader about to wait first gives the next message this long to
 * come before it acknowledges what it has, unless a writer asked for its
 * acknowledgement at once (SEQ_PROMPT). Each acknowledgement wakes the
 * writer's I/O thread and, for a sink, every origin's: acknowledging every
 * message of a stream that comes in a few milliseconds apart made most of
 * the context switches of a pipeline on two cores (docs/ipc.md). */
#define ACK_DELAY 0.010

/* The high bit of a message's seq frame: the writer has more than half of
 * its window out, so that acknowledging late could hold it up. A seq never
 * reaches it (2^63 messages). */
#define SEQ_PROMPT ((uint64_t)1 << 63)

/* The next bit: acknowledge this message as soon as its records are taken,
 * not with a batch. A writer dealing to several readers sets it once a
 * reader has half of its PEER_WINDOW, so that the reader's next message is
 * on its way while it works on the ones it has. */
#define SEQ_URGENT ((uint64_t)1 << 62)

typedef struct {
    ep_t ep;
    char name[4096]; // for error lines: the file path, "stdin" or the address
} input_t;

/* Acknowledgements owed to one writer (a ROUTER peer identity). */
typedef struct {
    unsigned char id[256];
    size_t idlen;
    uint64_t seqs[ACK_BATCH];
    int n;
} ackq_t;

struct rd {
    stream_opts_t o;
    input_t *inputs;
    int ninputs, cur;
    // the open input
    bool open;
    int fd;
    bool own_fd, pipe, eof;
    void *zsock;
    chunk_t *chunk;
    size_t start, end; // unread bytes are chunk->data[start, end)
    uint64_t base;     // stream offset of chunk->data[0]
    uint64_t msgno;    // messages taken from this input
    ackq_t *acks;      // ZeroMQ: seqs to acknowledge, one queue per writer
    int nacks;
    double ack_since;       // when the oldest acknowledgement not sent was owed (0: none)
    bool ack_prompt;        // a writer asked for its acknowledgement at once
    zbuf_t *zcur;           // ZeroMQ: the message records are being taken from
    size_t zoff;            // next record's offset in it
    uint32_t zrec;          // records taken from it
    uint64_t zseq;          // its seq, acknowledged when all its records are taken
    bool zurgent;           // ... at once (SEQ_URGENT)
    void *mon;              // PAIR: the data socket's connections, when it connects to writers
    unsigned char zid[256]; // its writer
    size_t zidlen;
    // end-to-end delivery, as its sink (deliver.h)
    void *asock; // ROUTER: acknowledgements to the origins, by their routing ids
    dlv_sink_t *dsink;
    // shared memory (shm.h): local writers' pools, mapped as descriptors arrive
    bool shm_ok;      // BAGEL_IPC_SHM allows it
    bool shm_refused; // a refusal was reported (once)
    shm_view_t *shmv;
    // the whole reader
    acct_t *acct;
    rd_stats_t stats;
    bool interrupted;
    void (*idle)(void *);
    void *idle_arg;
};

static int add_input(rd_t *rd, const ep_t *ep, const char *name, char *err)
{
    input_t *in = realloc(rd->inputs, (size_t)(rd->ninputs + 1) * sizeof *in);
    if (!in) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    rd->inputs = in;
    in[rd->ninputs].ep = *ep;
    snprintf(in[rd->ninputs].name, sizeof in[rd->ninputs].name, "%s", name);
    rd->ninputs++;
    return 0;
}

static int open_input(rd_t *rd, char *err);

/* The sink's acknowledgement socket. */
static int sink_open(rd_t *rd, char *err)
{
    ep_t ep;
    char why[REC_ERR_LEN];
    if (ep_parse(rd->o.acks_out, &ep, why) || ep.kind != EP_ZMQ) {
        snprintf(err, REC_ERR_LEN, "--acks-out %s: %s", rd->o.acks_out,
                 ep.kind != EP_ZMQ ? "expected a ZeroMQ endpoint" : why);
        return -1;
    }
    if (!(rd->dsink = dlv_sink_new())) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    if (!(rd->asock = zsock_open(&ep, ZMQ_ROUTER, &rd->o, NULL, 0, err)))
        return -1;
    // an acknowledgement for an origin not connected (yet) fails instead of
    // vanishing, and is kept for the next flush; origins send nothing, so
    // what arrives here is bounded and thrown away
    int one = 1, hwm = 64;
    zmq_setsockopt(rd->asock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(rd->asock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    return 0;
}

static int sink_send(void *arg, const char *origin, const void *frame, size_t len)
{
    rd_t *rd = arg;
    if (zmq_send(rd->asock, origin, DLV_ORIGIN_LEN, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    zmq_send(rd->asock, frame, len, ZMQ_DONTWAIT);
    return 0;
}

static void sink_flush(rd_t *rd)
{
    if (!rd->dsink)
        return;
    char junk[64];
    while (zmq_recv(rd->asock, junk, sizeof junk, ZMQ_DONTWAIT) >= 0)
        ;
    dlv_sink_flush(rd->dsink, sink_send, rd);
}

/* A sink's check of a record's delivery tag: 0 pass it on (tag removed), 1 a
 * duplicate (destroyed here). */
static int sink_filter(rd_t *rd, rec_t *r)
{
    char origin[DLV_ORIGIN_LEN + 1], why[REC_ERR_LEN];
    uint64_t seq;
    if (!rd->dsink || dlv_tag_get(&r->root, origin, &seq, why) != 1)
        return 0;
    bool flush;
    int rc = dlv_sink_take(rd->dsink, origin, seq, &flush);
    if (flush)
        sink_flush(rd);
    if (rc == 1) {
        rec_destroy(&r);
        rd->stats.duplicates++;
        return 1;
    }
    dlv_tag_strip(&r->root);
    msgpack_object *inner = rec_map_getw(&r->root, "sample");
    if (inner)
        dlv_tag_strip(inner);
    return 0;
}

rd_t *rd_open(const char *const *specs, int nspecs, const stream_opts_t *o, char *err)
{
    rd_t *rd = calloc(1, sizeof *rd);
    if (!rd || !(rd->acct = acct_new())) {
        free(rd);
        snprintf(err, REC_ERR_LEN, "out of memory");
        return NULL;
    }
    if (o)
        rd->o = *o;
    else
        stream_opts_default(&rd->o);
    rd->fd = -1;
    rd->shm_ok = shm_enabled();
    static const char *const dash[] = {"-"};
    if (nspecs == 0)
        specs = dash, nspecs = 1;
    for (int i = 0; i < nspecs; i++) {
        ep_t ep;
        if (ep_parse(specs[i], &ep, err))
            goto fail;
        if (ep.kind == EP_FILE && ep.glob) {
            glob_t g;
            int rc = glob(ep.path, 0, NULL, &g);
            if (rc != 0) {
                snprintf(err, REC_ERR_LEN, "%s: %s", ep.path, rc == GLOB_NOMATCH ? "no file matches" : "glob failed");
                if (rc != GLOB_NOMATCH)
                    globfree(&g);
                goto fail;
            }
            for (size_t k = 0; k < g.gl_pathc; k++) {
                ep_t f = ep;
                f.glob = false;
                snprintf(f.path, sizeof f.path, "%s", g.gl_pathv[k]);
                if (add_input(rd, &f, f.path, err)) {
                    globfree(&g);
                    goto fail;
                }
            }
            globfree(&g);
        } else {
            const char *name = ep.kind == EP_STDIO ? "stdin" : specs[i];
            if (add_input(rd, &ep, name, err))
                goto fail;
        }
    }
    if (rd->o.acks_out && sink_open(rd, err))
        goto fail;
    // Open the first input now, so that a missing file or a bad address is
    // reported at start-up and a ZeroMQ input is bound before writers come.
    rd->cur = 0;
    if (rd->ninputs > 0 && open_input(rd, err))
        goto fail;
    return rd;
fail:
    rd_close(&rd);
    return NULL;
}

/* Say hello ['H'] to every writer this reader connects to: a writer is a
 * ROUTER, which sends only to a peer it has heard from. Again at each
 * connection (a writer that started again knows nobody). */
static void peers_hello(rd_t *rd)
{
    const ep_t *ep = &rd->inputs[rd->cur].ep;
    for (int i = 0; i < ep->nzmq; i++)
        if (!ep->zmq[i].bind) {
            char alias[PEER_ALIAS_LEN];
            zmq_send(rd->zsock, alias, peer_alias(i, alias), ZMQ_SNDMORE);
            zmq_send(rd->zsock, "H", 1, 0);
        }
}

/* Connections made since last asked: hello again. */
static void peer_events(rd_t *rd)
{
    if (rd->mon && monitor_saw(rd->mon, ZMQ_EVENT_CONNECTED))
        peers_hello(rd);
}

static int open_input(rd_t *rd, char *err)
{
    input_t *in = &rd->inputs[rd->cur];
    rd->eof = false;
    rd->start = rd->end = 0;
    rd->base = rd->msgno = 0;
    rd->pipe = false;
    if (in->ep.kind == EP_ZMQ) {
        rd->zsock = zsock_open(&in->ep, ZMQ_ROUTER, &rd->o, NULL, ZS_ALIAS, err);
        if (!rd->zsock)
            return -1;
        bool connects = false;
        for (int i = 0; i < in->ep.nzmq; i++)
            connects |= !in->ep.zmq[i].bind;
        if (connects && !(rd->mon = monitor_open(rd->zsock, ZMQ_EVENT_CONNECTED, err))) {
            zsock_close(rd->zsock);
            rd->zsock = NULL;
            return -1;
        }
        peers_hello(rd);
    } else {
        if (in->ep.kind == EP_STDIO) {
            rd->fd = 0;
            rd->own_fd = false;
        } else {
            rd->fd = open(in->ep.path, O_RDONLY | O_CLOEXEC);
            if (rd->fd < 0) {
                snprintf(err, REC_ERR_LEN, "%s: %s", in->name, strerror(errno));
                return -1;
            }
            rd->own_fd = true;
        }
        struct stat st;
        rd->pipe = fstat(rd->fd, &st) == 0 && !S_ISREG(st.st_mode);
        if (!rd->chunk && !(rd->chunk = chunk_new(CHUNK_SIZE))) {
            snprintf(err, REC_ERR_LEN, "out of memory");
            return -1;
        }
    }
    rd->open = true;
    return 0;
}

static void acks_flush(rd_t *rd);
static int ack_add(rd_t *rd, const void *id, size_t n, uint64_t seq, bool now);

static void close_input(rd_t *rd)
{
    if (rd->zsock) {
        if (rd->zcur) {
            // records the stage did not take (--head): acknowledged as dropped
            ack_add(rd, rd->zid, rd->zidlen, rd->zseq, false);
            zbuf_unref(rd->zcur);
            rd->zcur = NULL;
        }
        acks_flush(rd);
        // let the acknowledgements out: writers wait for them to close
        int linger = stop_level >= 2 ? 0 : 2000;
        zmq_setsockopt(rd->zsock, ZMQ_LINGER, &linger, sizeof linger);
        monitor_close(rd->zsock, &rd->mon);
        zsock_close(rd->zsock);
        rd->zsock = NULL;
        free(rd->acks);
        rd->acks = NULL;
        rd->nacks = 0;
    }
    if (rd->fd >= 0 && rd->own_fd)
        close(rd->fd);
    rd->fd = -1;
    rd->open = false;
}

/* Should the reader stop taking input now? */
static bool stopping(rd_t *rd)
{
    if (stop_level == 0)
        return false;
    // a pipe is drained on the first request: its writer is stopping too
    if (stop_level == 1 && rd->pipe)
        return false;
    return true;
}

/* A message that decoded to a map breaking the schema: a reject when it names
 * its sample, else skipped. */
static int schema_error(rd_t *rd, rec_t *bad, const char *where, rec_t **out, char *msg, char *err)
{
    char id[256];
    bool named = rec_get_str(&bad->root, "id", id, sizeof id) && rec_get(bad, "source") &&
                 rec_get(bad, "source")->type == MSGPACK_OBJECT_STR && rec_epoch(bad) >= 0 && bad->type == REC_SAMPLE;
    if (named) {
        rec_t *rj = rec_new_reject(bad, rd->o.stage, msg);
        rec_destroy(&bad);
        if (!rj) {
            snprintf(err, REC_ERR_LEN, "out of memory");
            return -2;
        }
        if (sink_filter(rd, rj))
            return 3;
        snprintf(err, REC_ERR_LEN, "%s: id %s: %s", where, id, msg);
        *out = rj;
        rd->stats.made_rejects++;
        rd->stats.records++;
        acct_add(rd->acct, rj);
        return 2;
    }
    snprintf(err, REC_ERR_LEN, "%s: %s", where, msg);
    rec_destroy(&bad);
    rd->stats.bad++;
    return -1;
}

/* 1, or 3 when r was a duplicate (dropped: the caller reads on). */
static int take(rd_t *rd, rec_t *r, rec_t **out)
{
    if (sink_filter(rd, r))
        return 3;
    rd->stats.records++;
    rd->stats.bytes += r->wire_size;
    acct_add(rd->acct, r);
    *out = r;
    return 1;
}

/* The next record from a file or pipe. 1/2/-1/-2 as rd_next; 0 at the end of
 * this input. */
static int next_fd(rd_t *rd, rec_t **out, char *err)
{
    input_t *in = &rd->inputs[rd->cur];
    for (;;) {
        char msg[REC_ERR_LEN];
        size_t need = 0;
        long long n = rd->end > rd->start
                          ? rec_scan(rd->chunk->data + rd->start, rd->end - rd->start, &rd->o.limits, &need, msg)
                          : 0;
        // where the record starts, named only on the error paths
        char where[REC_ERR_LEN];
#define FD_WHERE()                                                                                                     \
    snprintf(where, sizeof where, "%.200s: record %llu at byte %llu", in->name, (unsigned long long)rd->msgno + 1,     \
             (unsigned long long)(rd->base + rd->start))
        if (n < 0) {
            // The structure is broken: the next record's start cannot be found.
            FD_WHERE();
            snprintf(err, REC_ERR_LEN, "%s: %s (rest of this input skipped)", where, msg);
            rd->stats.bad++;
            rd->start = rd->end;
            rd->eof = true;
            return -1;
        }
        if (n > 0) {
            char *p = rd->chunk->data + rd->start;
            rec_t *r;
            int rc = rec_decode_scanned(p, (size_t)n, &rd->o.limits, &r, msg);
            if (rc != 0)
                FD_WHERE();
#undef FD_WHERE
            rd->start += (size_t)n;
            rd->msgno++;
            if (rc == -1) {
                snprintf(err, REC_ERR_LEN, "%s: %s", where, msg);
                rd->stats.bad++;
                return -1;
            }
            __atomic_add_fetch(&rd->chunk->refs, 1, __ATOMIC_RELAXED);
            if (rec_adopt(r, chunk_unref, rd->chunk)) {
                rec_destroy(&r);
                snprintf(err, REC_ERR_LEN, "out of memory");
                return -2;
            }
            int trc = rc == -2 ? schema_error(rd, r, where, out, msg, err) : take(rd, r, out);
            if (trc == 3)
                continue; // a duplicate
            return trc;
        }
        // need more bytes
        if (rd->eof || stopping(rd)) {
            if (rd->end > rd->start) {
                snprintf(err, REC_ERR_LEN, "%.200s: record %llu at byte %llu: truncated, %zu bytes of at least %zu",
                         in->name, (unsigned long long)rd->msgno + 1, (unsigned long long)(rd->base + rd->start),
                         rd->end - rd->start, need);
                rd->stats.bad++;
                rd->start = rd->end;
                return -1;
            }
            if (!rd->eof)
                rd->interrupted = true;
            return 0;
        }
        size_t have = rd->end - rd->start;
        size_t want = need > have + 4096 ? need : have + 4096;
        if (rd->start + want > rd->chunk->cap) {
            // move the partial record to the front of a buffer that can hold it
            size_t cap = want > CHUNK_SIZE ? want : CHUNK_SIZE;
            chunk_t *c = rd->chunk;
            if (c->refs != 1 || cap > c->cap) {
                c = chunk_new(cap);
                if (!c) {
                    snprintf(err, REC_ERR_LEN, "out of memory for a %zu-byte record", want);
                    return -2;
                }
                memcpy(c->data, rd->chunk->data + rd->start, have);
                chunk_unref(rd->chunk);
            } else {
                memmove(c->data, c->data + rd->start, have);
            }
            rd->base += rd->start;
            rd->chunk = c;
            rd->start = 0;
            rd->end = have;
        }
        if (rd->idle)
            rd->idle(rd->idle_arg);
        ssize_t got = read(rd->fd, rd->chunk->data + rd->end, rd->chunk->cap - rd->end);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, REC_ERR_LEN, "%s: read: %s", in->name, strerror(errno));
            return -2;
        }
        if (got == 0)
            rd->eof = true;
        rd->end += (size_t)got;
    }
}

static void ack_send(rd_t *rd, ackq_t *q)
{
    if (q->n == 0)
        return;
    unsigned char buf[8 * ACK_BATCH];
    size_t len = dlv_ack_encode(q->seqs, q->n, buf); // the same frame a sink sends its origins
    // a ROUTER never blocks; an ack to a writer that has gone is dropped
    zmq_send(rd->zsock, q->id, q->idlen, ZMQ_SNDMORE);
    zmq_send(rd->zsock, buf, len, 0);
    q->n = 0;
}

static void acks_flush(rd_t *rd)
{
    for (int i = 0; i < rd->nacks; i++)
        ack_send(rd, &rd->acks[i]);
    sink_flush(rd);
    rd->ack_since = 0;
    rd->ack_prompt = false;
}

static int ack_add(rd_t *rd, const void *id, size_t n, uint64_t seq, bool now)
{
    ackq_t *q = NULL;
    for (int i = 0; i < rd->nacks && !q; i++)
        if (rd->acks[i].idlen == n && memcmp(rd->acks[i].id, id, n) == 0)
            q = &rd->acks[i];
    if (!q) {
        if (n > sizeof q->id)
            return 0; // not a peer identity libzmq would make
        ackq_t *a = realloc(rd->acks, (size_t)(rd->nacks + 1) * sizeof *a);
        if (!a)
            return -1;
        rd->acks = a;
        q = &a[rd->nacks++];
        memcpy(q->id, id, n);
        q->idlen = n;
        q->n = 0;
    }
    q->seqs[q->n++] = seq;
    if (q->n == ACK_BATCH || now)
        ack_send(rd, q);
    else if (rd->ack_since == 0) // owed from now
        rd->ack_since = now_s();
    return 0;
}

/* Receive one frame into m (initialized). 1: got it; 0: nothing queued and
 * stopping; -1: error in errno. */
static int recv_frame(rd_t *rd, zmq_msg_t *m, bool first)
{
    for (;;) {
        int rc = zmq_msg_recv(m, rd->zsock, first ? ZMQ_DONTWAIT : 0);
        if (rc >= 0)
            return 1;
        if (errno == EINTR && (!first || stop_level < 2))
            continue;
        if (!first || errno != EAGAIN)
            return -1;
        // Nothing queued: give the next message ACK_DELAY from the oldest
        // acknowledgement owed to come, and acknowledge with it
        if (stop_level == 0 && rd->ack_since > 0 && !rd->ack_prompt) {
            double left = rd->ack_since + ACK_DELAY - now_s();
            zmq_pollitem_t it = {.socket = rd->zsock, .events = ZMQ_POLLIN};
            if (left > 0 && zmq_poll(&it, 1, (long)(left * 1000) + 1) != 0)
                continue; // a message, or a signal: look again
        }
        // When stopping, what was queued is all we take; else acknowledge,
        // let the stage flush, then wait.
        acks_flush(rd);
        if (stop_level > 0)
            return 0;
        if (rd->idle)
            rd->idle(rd->idle_arg);
        if (rd->mon) { // wait for a message, or a connection to say hello on
            zmq_pollitem_t it[2] = {{.socket = rd->zsock, .events = ZMQ_POLLIN},
                                    {.socket = rd->mon, .events = ZMQ_POLLIN}};
            if (zmq_poll(it, 2, -1) < 0 && errno != EINTR)
                return -1;
            peer_events(rd);
            continue;
        }
        rc = zmq_msg_recv(m, rd->zsock, 0);
        if (rc >= 0)
            return 1;
        if (errno != EINTR && errno != EAGAIN)
            return -1;
    }
}

static void drain_parts(rd_t *rd, zmq_msg_t *last)
{
    while (zmq_msg_more(last)) {
        zmq_msg_close(last);
        zmq_msg_init(last);
        if (zmq_msg_recv(last, rd->zsock, 0) < 0)
            break;
    }
}

/* The next record of the current message; 0 when it has none left (then it
 * is acknowledged and released). */
static int next_in_batch(rd_t *rd, rec_t **out, char *err)
{
    input_t *in = &rd->inputs[rd->cur];
    zbuf_t *z = rd->zcur;
    size_t size = zmq_msg_size(&z->m);
    if (rd->zoff >= size) {
        rd->zcur = NULL;
        zbuf_unref(z);
        if (ack_add(rd, rd->zid, rd->zidlen, rd->zseq, rd->zurgent)) {
            snprintf(err, REC_ERR_LEN, "out of memory");
            return -2;
        }
        return 0;
    }
    const char *p = (const char *)zmq_msg_data(&z->m) + rd->zoff;
    char where[REC_ERR_LEN], msg[REC_ERR_LEN];
#define ZMQ_WHERE()                                                                                                    \
    snprintf(where, sizeof where, "%.200s: message %llu, record %u at byte %zu", in->name,                             \
             (unsigned long long)rd->msgno, rd->zrec + 1, rd->zoff)
    size_t need;
    long long n = rec_scan(p, size - rd->zoff, &rd->o.limits, &need, msg);
    if (n <= 0) {
        // the rest of this message cannot be split into records
        ZMQ_WHERE();
        if (n == 0)
            snprintf(msg, sizeof msg, "truncated record: %zu bytes, at least %zu needed", size - rd->zoff, need);
        snprintf(err, REC_ERR_LEN, "%s: %s", where, msg);
        rd->zoff = size;
        rd->stats.bad++;
        return -1;
    }
    rec_t *r;
    int drc = rec_decode_scanned(p, (size_t)n, &rd->o.limits, &r, msg);
    if (drc != 0)
        ZMQ_WHERE();
#undef ZMQ_WHERE
    rd->zoff += (size_t)n;
    rd->zrec++;
    if (drc == -1) {
        snprintf(err, REC_ERR_LEN, "%s: %s", where, msg);
        rd->stats.bad++;
        return -1;
    }
    __atomic_add_fetch(&z->refs, 1, __ATOMIC_RELAXED);
    if (rec_adopt(r, zbuf_unref, z)) {
        rec_destroy(&r);
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -2;
    }
    if (drc == -2)
        return schema_error(rd, r, where, out, msg, err);
    return take(rd, r, out);
}

/* A message of the length shm_view_copy asks for, to copy a slot into. */
typedef struct {
    zmq_msg_t m;
    bool have;
} shm_msg_t;

static void *shm_msg_alloc(void *arg, size_t len)
{
    shm_msg_t *b = arg;
    if (zmq_msg_init_size(&b->m, len) != 0)
        return NULL;
    b->have = true;
    return zmq_msg_data(&b->m);
}

/* The message z holds a shared-memory descriptor (shm.h): replace it with
 * the bytes it names. 0: done. 1: refused (this reader may not or cannot map
 * the writer's pool); the writer is told, and sends the bytes again through
 * the socket. -1: a bad message (why). */
static int shm_take(rd_t *rd, zbuf_t *z, uint64_t seq, char *why)
{
    shm_desc_t d;
    if (shm_desc_parse(zmq_msg_data(&z->m), zmq_msg_size(&z->m), &d, why, REC_ERR_LEN))
        return -1;
    int rc = -1;
    shm_msg_t bytes = {.have = false};
    if (!rd->shm_ok)
        snprintf(why, REC_ERR_LEN, "BAGEL_IPC_SHM=off");
    else if (!rd->shmv && !(rd->shmv = shm_view_new()))
        snprintf(why, REC_ERR_LEN, "out of memory");
    else
        rc = shm_view_copy(rd->shmv, &d, shm_msg_alloc, &bytes, why, REC_ERR_LEN);
    if (rc == 0) {
        zmq_msg_move(&z->m, &bytes.m);
        zmq_msg_close(&bytes.m);
        rd->stats.shm++;
        return 0;
    }
    if (bytes.have)
        zmq_msg_close(&bytes.m);
    if (rc == -2)
        return -1;
    // refused: [identity]['R' seq], which the writer answers with the bytes
    unsigned char nak[9] = {'R'};
    le64_put(nak + 1, seq);
    zmq_send(rd->zsock, rd->zid, rd->zidlen, ZMQ_SNDMORE);
    zmq_send(rd->zsock, nak, sizeof nak, 0);
    if (!rd->shm_refused) {
        rd->shm_refused = true;
        fprintf(stderr, "%s: shared memory of a local writer refused (%s): its records come through the socket\n",
                rd->inputs[rd->cur].name, why);
    }
    return 1;
}

static int next_zmq(rd_t *rd, rec_t **out, char *err)
{
    input_t *in = &rd->inputs[rd->cur];
    for (;;) {
        if (rd->zcur) {
            int rc = next_in_batch(rd, out, err);
            if (rc != 0 && rc != 3) // 3: a duplicate, dropped
                return rc;
            continue;
        }
        if (rd->o.expect_ends > 0 && acct_complete(rd->acct, rd->o.expect_ends)) {
            acks_flush(rd);
            return 0;
        }
        zmq_msg_t id, hdr;
        zbuf_t *z = malloc(sizeof *z);
        if (!z) {
            snprintf(err, REC_ERR_LEN, "out of memory");
            return -2;
        }
        z->refs = 1;
        zmq_msg_init(&id);
        zmq_msg_init(&hdr);
        zmq_msg_init(&z->m);
        peer_events(rd);
        int rc = recv_frame(rd, &id, true);
        if (rc <= 0) {
            int e = errno;
            zmq_msg_close(&id);
            zmq_msg_close(&hdr);
            zbuf_unref(z);
            if (rc == 0 || stop_level > 0) {
                rd->interrupted = true;
                return 0;
            }
            snprintf(err, REC_ERR_LEN, "%s: receive: %s", in->name, zmq_strerror(e));
            return -2;
        }
        rd->msgno++;
        // [identity][seq][records]: anything else is not from a bagelpipe writer
        zmq_msg_t *last = &id; // the last frame received, to drain the rest after
        bool ok = zmq_msg_more(&id) && recv_frame(rd, &hdr, false) == 1 && (last = &hdr, zmq_msg_size(&hdr) == 8) &&
                  zmq_msg_more(&hdr) && recv_frame(rd, &z->m, false) == 1 && (last = &z->m, !zmq_msg_more(&z->m));
        bool has_seq = zmq_msg_size(&hdr) == 8;
        uint64_t seq = has_seq ? le64_get(zmq_msg_data(&hdr)) : 0;
        if (seq & SEQ_PROMPT)
            rd->ack_prompt = true;
        bool urgent = (seq & SEQ_URGENT) != 0;
        seq &= ~(SEQ_PROMPT | SEQ_URGENT);
        size_t idlen = zmq_msg_size(&id);
        bool id_ok = idlen <= sizeof rd->zid;
        if (id_ok)
            memcpy(rd->zid, zmq_msg_data(&id), idlen);
        rd->zidlen = id_ok ? idlen : 0;
        zmq_msg_close(&id);
        zmq_msg_close(&hdr);
        if (!ok || !id_ok) {
            drain_parts(rd, last);
            zbuf_unref(z);
            rd->stats.bad++;
            if (id_ok && has_seq && ack_add(rd, rd->zid, rd->zidlen, seq, false)) {
                snprintf(err, REC_ERR_LEN, "out of memory");
                return -2;
            }
            snprintf(err, REC_ERR_LEN, "%.200s: message %llu: expected the frames [seq][records] of a bagelpipe writer",
                     in->name, (unsigned long long)rd->msgno);
            return -1;
        }
        if (shm_is_desc(zmq_msg_data(&z->m), zmq_msg_size(&z->m))) {
            char why[REC_ERR_LEN];
            int src = shm_take(rd, z, seq, why);
            if (src != 0) {
                zbuf_unref(z);
                if (src == 1)
                    continue; // the bytes come again
                rd->stats.bad++;
                if (ack_add(rd, rd->zid, rd->zidlen, seq, false)) {
                    snprintf(err, REC_ERR_LEN, "out of memory");
                    return -2;
                }
                snprintf(err, REC_ERR_LEN, "%.200s: message %llu: %s", in->name, (unsigned long long)rd->msgno, why);
                return -1;
            }
        }
        rd->zcur = z;
        rd->zoff = 0;
        rd->zrec = 0;
        rd->zseq = seq;
        rd->zurgent = urgent;
    }
}

int rd_next(rd_t *rd, rec_t **out, char *err)
{
    *out = NULL;
    while (rd->cur < rd->ninputs) {
        // A stop ends a file at once (it is the source); an open pipe or
        // socket is drained by next_fd / next_zmq; one not yet opened has
        // given us nothing to lose.
        if (stop_level >= 2 || (stop_level == 1 && (!rd->open || (!rd->pipe && !rd->zsock)))) {
            rd->interrupted = true;
            return 0;
        }
        if (!rd->open && open_input(rd, err))
            return -2;
        int rc = rd->zsock ? next_zmq(rd, out, err) : next_fd(rd, out, err);
        if (rc != 0)
            return rc;
        close_input(rd);
        if (rd->interrupted)
            return 0;
        rd->cur++;
    }
    return 0;
}

void rd_set_idle(rd_t *rd, void (*fn)(void *), void *arg)
{
    rd->idle = fn;
    rd->idle_arg = arg;
}

const acct_t *rd_acct(const rd_t *rd) { return rd->acct; }
rd_stats_t rd_stats(const rd_t *rd) { return rd->stats; }
bool rd_interrupted(const rd_t *rd) { return rd->interrupted; }

void rd_close(rd_t **rdp)
{
    if (!rdp || !*rdp)
        return;
    rd_t *rd = *rdp;
    if (rd->open)
        close_input(rd);
    if (rd->asock) {
        // the last acknowledgements: an origin waits for them to finish
        for (int i = 0; i < 40 && stop_level < 2 && dlv_sink_flush(rd->dsink, sink_send, rd) > 0; i++)
            usleep(50000);
        int linger = stop_level >= 2 ? 0 : 2000;
        zmq_setsockopt(rd->asock, ZMQ_LINGER, &linger, sizeof linger);
        zsock_close(rd->asock);
    }
    dlv_sink_destroy(&rd->dsink);
    shm_view_destroy(&rd->shmv);
    chunk_unref(rd->chunk);
    acct_destroy(&rd->acct);
    free(rd->inputs);
    free(rd);
    *rdp = NULL;
}

/* ---- writer ---- */

#define WBUF_SIZE ZBATCH_SIZE
/* How long a stopping writer still waits for acknowledgements. */
#define STOP_GRACE_MS 5000

/* A writer with several readers, or that binds (readers come and say hello,
 * not all at once), gives each at most this many messages unacknowledged.
 * Enough that a reader's next message is there when it finishes one (past
 * half of it the writer asks for prompt acknowledgements, SEQ_URGENT); few,
 * so that what a reader holds is little work: dealing is by
 * acknowledgements, and a fast reader takes more than a slow one. The one
 * reader a writer connects to (a sink) may hold the whole window. */
#define PEER_WINDOW 4
/* ... and deals to at most this many readers at once. */
#define PEERS_MAX 4096

/* A reader of a ZeroMQ writer (one of its ROUTER's peers). */
typedef struct {
    unsigned char id[256];
    size_t idlen;
    uint64_t out; // its messages not acknowledged
    bool dead;    // no longer reachable: not dealt to, unless it says hello again
} peer_t;

struct wr {
    stream_opts_t o;
    ep_t ep;
    char name[4096];
    int fd;
    bool own_fd;
    char tmp[4200]; // temporary name of a file output, renamed at close
    void *zsock;
    rec_enc_t *enc;
    // small records gathered for one write, or for one ZeroMQ message (sent
    // when full, when the stage flushes before its reader waits, or 20 ms
    // after its first record)
    char *buf;
    size_t nbuf;
    unsigned nbuf_recs; // records in the message being gathered (ZeroMQ)
    bool closing;       // wr_close: what is sent now is waited for
    char *bat;          // ZeroMQ: where the batch is gathered: buf, or a shared-memory slot (shm.h)
    unsigned bslot;     // that slot + 1, or 0
    uint64_t bytes;
    // ZeroMQ: records next_seq-1 down to low may be unacknowledged; acked[]
    // marks which are, by seq modulo the span; untagged[] those holding a
    // record without a delivery tag (nothing would send it again)
    uint64_t next_seq, low;
    unsigned char *acked, *untagged;
    uint64_t window;    // messages unacknowledged, at most
    uint64_t span;      // WR_SPAN windows: how far the newest may run ahead of the oldest unacknowledged
    uint64_t *msize;    // each message's size, by seq modulo the span
    uint64_t out_count; // messages unacknowledged
    uint64_t out_bytes; // their sizes (WR_WINDOW_BYTES at most, but for one)
    bool buf_untagged;  // the gathered batch holds such a record
    // the readers messages are dealt to: those at the addresses it connects
    // to (by alias, from the start), and those that said hello
    peer_t *peers;
    unsigned npeers, live, rr; // rr: where the next search for a reader starts
    bool binds;                // readers come by hello: each holds PEER_WINDOW at most
    uint16_t *peer_of;         // by seq modulo the span: the message's reader + 1, or 0
    // readers that disconnect: their messages are no longer waited for
    void *mon;         // PAIR: the data socket's disconnect events
    uint64_t forgiven; // messages with untagged records given up that way
    // end-to-end delivery, as its origin (deliver.h)
    dlv_win_t *dwin;
    void *asock; // DEALER, routing id = origin: the sink's acknowledgements (on their own socket)
    char origin[DLV_ORIGIN_LEN + 1];
    char *gbuf; // one record's bytes
    size_t gcap;
    double last_scan;
    // shared memory (shm.h): a local reader gets each message's bytes from a
    // slot of this pool and a descriptor through the socket
    int shm_state; // 0: not tried yet, 1: in use, -1: off (not local, BAGEL_IPC_SHM, refused, failed)
    size_t zbatch; // ZeroMQ: the gathered message's size limit (ZBATCH_SIZE, or the slot size)
    shm_pool_t *shm;
    uint32_t *slot_of; // by seq modulo the span: the message's slot + 1, or 0
    struct quar {      // slots of messages given up when a reader left: free when acknowledged late, or after a while
        uint64_t seq;
        uint32_t slot;
        double since;
    } *quar;
    unsigned nquar;
    uint64_t *redo; // seqs a reader refused: their bytes go again through the socket
    unsigned nredo;
    unsigned nslots; // the pool's slots: the most quar and redo can hold
    bool redoing;
    // a failed output stays failed: every later call reports the first error
    char failed[REC_ERR_LEN];
    double buf_since; // ZeroMQ: when the first record went into buf
};


/* Become an origin: a window and the socket the sink acknowledges on. */
static int origin_open(wr_t *w, char *err)
{
    ep_t ep;
    char why[REC_ERR_LEN];
    if (ep_parse(w->o.acks_in, &ep, why) || ep.kind != EP_ZMQ) {
        snprintf(err, REC_ERR_LEN, "--acks-in %s: %s", w->o.acks_in,
                 ep.kind != EP_ZMQ ? "expected a ZeroMQ endpoint" : why);
        return -1;
    }
    int win = w->o.ack_window > 0 ? w->o.ack_window : DLV_WINDOW_MAX;
    if (win > DLV_WINDOW_MAX)
        win = DLV_WINDOW_MAX;
    // records are kept until acknowledged: at most the window (of which the
    // rate lets DLV_WIN_SECONDS' worth be used), and 256 MiB
    if (!(w->dwin = dlv_win_new((uint32_t)win, (size_t)256 << 20))) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    dlv_origin_new(w->origin);
    if (!(w->asock = zsock_open(&ep, ZMQ_DEALER, &w->o, w->origin, 0, err)))
        return -1;
    return 0;
}

static int peer_add(wr_t *w, const void *id, size_t n);

wr_t *wr_open(const char *spec, const stream_opts_t *o, char *err)
{
    wr_t *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return NULL;
    }
    if (o)
        w->o = *o;
    else
        stream_opts_default(&w->o);
    w->fd = -1;
    if (!spec)
        spec = "-";
    if (ep_parse(spec, &w->ep, err))
        goto fail;
    if (!(w->enc = rec_enc_new())) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        goto fail;
    }
    snprintf(w->name, sizeof w->name, "%s", w->ep.kind == EP_STDIO ? "stdout" : spec);
    if (w->o.acks_in && w->ep.kind != EP_ZMQ) {
        snprintf(err, REC_ERR_LEN, "--acks-in: end-to-end delivery needs a ZeroMQ --out, not %s", w->name);
        goto fail;
    }
    switch (w->ep.kind) {
    case EP_ZMQ:
        w->window = (uint64_t)zwindow(&w->o);
        w->span = w->window < 65536 ? w->window * WR_SPAN : w->window;
        w->zbatch = ZBATCH_SIZE;
        if (!(w->acked = calloc(w->span, 1)) || !(w->untagged = calloc(w->span, 1)) ||
            !(w->msize = calloc(w->span, sizeof *w->msize)) || !(w->peer_of = calloc(w->span, sizeof *w->peer_of)) ||
            !(w->buf = malloc(WBUF_SIZE))) {
            snprintf(err, REC_ERR_LEN, "out of memory");
            goto fail;
        }
        // shared memory only where every reader is on this host
        w->shm_state = shm_enabled() ? 0 : -1;
        for (int i = 0; i < w->ep.nzmq; i++)
            if (strncmp(w->ep.zmq[i].addr, "ipc://", 6) != 0 && strncmp(w->ep.zmq[i].addr, "inproc://", 9) != 0)
                w->shm_state = -1;
        if (!(w->zsock = zsock_open(&w->ep, ZMQ_ROUTER, &w->o, NULL, ZS_WRITER | ZS_ALIAS, err)) ||
            !(w->mon = monitor_open(w->zsock, ZMQ_EVENT_DISCONNECTED, err)) ||
            (w->o.acks_in && origin_open(w, err)))
            goto fail;
        // a reader found gone is reported (EHOSTUNREACH), not silently dropped
        int one = 1;
        zmq_setsockopt(w->zsock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
        // the readers it connects to are known from the start, by alias
        for (int i = 0; i < w->ep.nzmq; i++)
            if (w->ep.zmq[i].bind) {
                w->binds = true;
            } else {
                char alias[PEER_ALIAS_LEN];
                if (peer_add(w, alias, peer_alias(i, alias)) < 0) {
                    snprintf(err, REC_ERR_LEN, "out of memory");
                    goto fail;
                }
            }
        return w;
    case EP_STDIO: w->fd = 1; break;
    case EP_FILE: {
        if (w->ep.glob) {
            snprintf(err, REC_ERR_LEN, "%s: an output file name cannot hold * ? or [", spec);
            goto fail;
        }
        struct stat st;
        if (stat(w->ep.path, &st) == 0 && !S_ISREG(st.st_mode)) {
            // a device or named pipe: write to it directly
            w->fd = open(w->ep.path, O_WRONLY | O_CLOEXEC);
        } else {
            snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", w->ep.path, (long)getpid());
            w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        }
        if (w->fd < 0) {
            snprintf(err, REC_ERR_LEN, "%s: %s", w->tmp[0] ? w->tmp : w->ep.path, strerror(errno));
            w->tmp[0] = 0;
            goto fail;
        }
        w->own_fd = true;
        break;
    }
    }
    if (!(w->buf = malloc(WBUF_SIZE))) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        goto fail;
    }
    return w;
fail:
    wr_abort(&w);
    return NULL;
}

/* Write all of iov, through partial writes and signals. */
static int write_all(wr_t *w, struct iovec *iov, int n, char *err)
{
    if (w->failed[0]) {
        snprintf(err, REC_ERR_LEN, "%s", w->failed);
        return -1;
    }
    while (n > 0) {
        ssize_t k = writev(w->fd, iov, n > IOV_MAX ? IOV_MAX : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            snprintf(w->failed, sizeof w->failed, "%s: write: %s", w->name,
                     errno == EPIPE ? "the reading side closed (broken pipe)" : strerror(errno));
            snprintf(err, REC_ERR_LEN, "%s", w->failed);
            return -1;
        }
        w->bytes += (uint64_t)k;
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++, n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

static int zflush(wr_t *w, char *err);

int wr_flush(wr_t *w, char *err)
{
    if (w->failed[0]) {
        snprintf(err, REC_ERR_LEN, "%s", w->failed);
        return -1;
    }
    if (w->zsock)
        return zflush(w, err);
    if (w->nbuf == 0)
        return 0;
    struct iovec v = {w->buf, w->nbuf};
    w->nbuf = 0;
    return write_all(w, &v, 1, err);
}

/* Is the shared-memory pool ready for a message of size bytes? It is made
 * at the first message, its slots sized after that message's first record
 * (first); if it cannot be, messages go through the socket. */
static bool shm_ready(wr_t *w, size_t size, size_t first)
{
    if (w->shm_state == 0) {
        size_t slot = first >= SHM_LARGE_RECORD ? ZBATCH_SIZE : SHM_SLOT_SMALL;
        uint64_t n = WR_WINDOW_BYTES / slot; // slots for the window's bytes
        if (w->window < n)
            n = w->window;
        char why[REC_ERR_LEN] = "out of memory";
        w->shm_state = -1;
        if ((w->slot_of = calloc(w->span, sizeof *w->slot_of)) && (w->quar = calloc(n, sizeof *w->quar)) &&
            (w->redo = calloc(n, sizeof *w->redo)) && (w->shm = shm_pool_new((unsigned)n, slot, why, sizeof why)))
            w->shm_state = 1, w->nslots = (unsigned)n, w->zbatch = slot;
        else
            fprintf(stderr, "%s: %s: records go through the socket\n", w->name, why);
    }
    return w->shm_state == 1 && size <= w->zbatch;
}

/* The slot of message seq, taken from it: 0, or the slot + 1. */
static uint32_t slot_take(wr_t *w, uint64_t seq)
{
    if (!w->slot_of)
        return 0;
    uint32_t s = w->slot_of[seq & (w->span - 1)];
    w->slot_of[seq & (w->span - 1)] = 0;
    return s;
}

/* Message seq is acknowledged (or done with): true if it was outstanding.
 * Its slot is freed unless keep_slot; low moves past what is acknowledged. */
static bool ack_seq(wr_t *w, uint64_t seq, bool keep_slot)
{
    uint64_t i = seq & (w->span - 1);
    if (seq < w->low || seq >= w->next_seq || w->acked[i])
        return false;
    w->acked[i] = 1;
    w->out_bytes -= w->msize[i];
    w->out_count--;
    if (w->peer_of[i] && w->peers[w->peer_of[i] - 1].out)
        w->peers[w->peer_of[i] - 1].out--;
    w->peer_of[i] = 0;
    if (!keep_slot) {
        uint32_t s = slot_take(w, seq);
        if (s)
            shm_pool_release(w->shm, s - 1);
    }
    while (w->low < w->next_seq && w->acked[w->low & (w->span - 1)])
        w->low++;
    return true;
}

/* An acknowledgement of a message given up when a reader left: its slot,
 * kept apart since, is free now. */
static void quar_ack(wr_t *w, uint64_t seq)
{
    for (unsigned q = 0; q < w->nquar; q++)
        if (w->quar[q].seq == seq) {
            shm_pool_release(w->shm, w->quar[q].slot);
            w->quar[q] = w->quar[--w->nquar];
            return;
        }
}

/* The reader of routing id `id`, added (or alive again) if new: its index,
 * or -1 when there is no room for it. */
static int peer_add(wr_t *w, const void *id, size_t n)
{
    int free_at = -1;
    for (unsigned i = 0; i < w->npeers; i++) {
        peer_t *p = &w->peers[i];
        if (p->idlen == n && memcmp(p->id, id, n) == 0) {
            if (p->dead)
                p->dead = false, w->live++;
            return (int)i;
        }
        if (p->dead && p->out == 0 && free_at < 0)
            free_at = (int)i;
    }
    if (n > sizeof w->peers->id)
        return -1;
    if (free_at < 0) {
        if (w->npeers == PEERS_MAX)
            return -1;
        peer_t *a = realloc(w->peers, (w->npeers + 1) * sizeof *a);
        if (!a)
            return -1;
        w->peers = a;
        free_at = (int)w->npeers++;
    }
    peer_t *p = &w->peers[free_at];
    memcpy(p->id, id, n);
    p->idlen = n;
    p->out = 0;
    p->dead = false;
    w->live++;
    return free_at;
}

/* Does each reader hold at most PEER_WINDOW: when readers come by hello,
 * or there are several. */
static bool peer_capped(const wr_t *w) { return w->binds || w->live > 1; }

/* The reader the next message goes to: the live one with the fewest
 * unacknowledged (under PEER_WINDOW when capped), the next in turn among
 * equals; -1 when none may take one now. */
static int peer_pick(wr_t *w)
{
    uint64_t cap = peer_capped(w) ? PEER_WINDOW : UINT64_MAX;
    int best = -1;
    for (unsigned k = 0; k < w->npeers; k++) {
        unsigned i = (w->rr + k) % w->npeers;
        const peer_t *p = &w->peers[i];
        if (!p->dead && p->out < cap && (best < 0 || p->out < w->peers[best].out))
            best = (int)i;
    }
    if (best >= 0)
        w->rr = (unsigned)best + 1;
    return best;
}

/* Read what the readers sent: hop acknowledgements (u64 seqs), hellos
 * ['H'], and refusals of shared memory ['R' seq]; each as [id][payload]. */
static void hop_acks(wr_t *w)
{
    unsigned char buf[8 * 64];
    int n;
    for (;;) {
        unsigned char id[256];
        int idn = zmq_recv(w->zsock, id, sizeof id, ZMQ_DONTWAIT);
        if (idn < 0)
            break;
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(w->zsock, ZMQ_RCVMORE, &more, &ml);
        if (!more)
            continue; // not [id][payload]: a ROUTER always gives the id
        n = zmq_recv(w->zsock, buf, sizeof buf, 0);
        zmq_getsockopt(w->zsock, ZMQ_RCVMORE, &more, &ml);
        while (more) { // frames no reader sends
            unsigned char skip[8];
            if (zmq_recv(w->zsock, skip, sizeof skip, 0) < 0)
                break;
            zmq_getsockopt(w->zsock, ZMQ_RCVMORE, &more, &ml);
        }
        if (n < 0)
            break;
        if (n > (int)sizeof buf)
            n = (int)sizeof buf; // longer than any ack a reader sends: truncated by zmq
        if (idn <= (int)sizeof id)
            peer_add(w, id, (size_t)idn); // whatever it sent, it is there
        if (n == 1 && buf[0] == 'H')
            continue;
        if (n == 9 && buf[0] == 'R') {
            uint64_t seq = le64_get(buf + 1);
            // from now on every message goes through the socket; this one's
            // bytes go again from its slot (shm_redo)
            w->shm_state = -1;
            bool known = false;
            for (unsigned q = 0; q < w->nredo && !known; q++)
                known = w->redo[q] == seq;
            if (!known && w->nredo < w->nslots && seq >= w->low && seq < w->next_seq &&
                !w->acked[seq & (w->span - 1)] && w->slot_of && w->slot_of[seq & (w->span - 1)])
                w->redo[w->nredo++] = seq;
            continue;
        }
        for (int i = 0; i + 8 <= n; i += 8) {
            uint64_t seq = le64_get(buf + i);
            if (!ack_seq(w, seq, false) && w->nquar)
                quar_ack(w, seq);
        }
    }
}

/* A reader disconnected (it died, or finished): whatever it held will never
 * be acknowledged, and which reader it was the event does not say (a
 * ROUTER's peers are known by routing ids, a monitor's by sockets). So
 * every message still unacknowledged stops counting against the window
 * (acknowledgements that come later for the others are ignored): the
 * window is over-committed by at most its size once, and the writer goes on
 * instead of waiting forever. Tagged records come again from their origin;
 * untagged ones may be lost, and wr_close says so. */
static void take_events(wr_t *w)
{
    if (!monitor_saw(w->mon, ZMQ_EVENT_DISCONNECTED))
        return;
    hop_acks(w); // what the reader acknowledged before it went
    double t = now_s();
    for (unsigned i = 0; i < w->npeers; i++)
        w->peers[i].out = 0;
    for (uint64_t q = w->low; q < w->next_seq; q++) {
        if (w->acked[q & (w->span - 1)])
            continue;
        w->peer_of[q & (w->span - 1)] = 0;
        if (w->untagged[q & (w->span - 1)])
            w->forgiven++;
        // a live reader may still hold the descriptor: the slot is kept apart
        uint32_t slot = slot_take(w, q);
        if (slot && w->nquar < w->nslots)
            w->quar[w->nquar++] = (struct quar){q, slot - 1, t};
        else if (slot) // no room (cannot happen: a slot is in one place at a time); the generation still guards it
            shm_pool_release(w->shm, slot - 1);
    }
    w->nredo = 0; // refused messages among them: their records come again from their origin, or are counted above
    w->low = w->next_seq;
    w->out_bytes = 0;
    w->out_count = 0;
}

static void take_origin_acks(wr_t *w)
{
    unsigned char buf[8 * DLV_ACK_MAX + 8];
    int n;
    double t = now_s();
    while ((n = zmq_recv(w->asock, buf, sizeof buf, ZMQ_DONTWAIT)) >= 0)
        dlv_win_ack_frame(w->dwin, buf, n > (int)sizeof buf ? sizeof buf : (size_t)n, t);
}

/* Slots kept apart after a reader left are freed after this long even if no
 * acknowledgement came: a reader that still copies one then finds its
 * generation moved on and drops the message (shm.h). */
#define SHM_QUARANTINE_S 30.0

static int shm_redo(wr_t *w, char *err);

/* Take the acknowledgements (and disconnections) that have arrived, waiting
 * up to timeout_ms (-1: until one arrives) for the first. -1 when stopped
 * hard or on error. */
static int take_acks(wr_t *w, long timeout_ms, char *err)
{
    zmq_pollitem_t it[3] = {{.socket = w->zsock, .events = ZMQ_POLLIN},
                            {.socket = w->mon, .events = ZMQ_POLLIN},
                            {.socket = w->asock, .events = ZMQ_POLLIN}};
    int rc = zmq_poll(it, w->asock ? 3 : 2, timeout_ms);
    if (rc < 0) {
        if (errno == EINTR && stop_level < 2)
            return 0;
        snprintf(err, REC_ERR_LEN, "%s: %s with %llu records not acknowledged by a reader", w->name,
                 errno == EINTR ? "stopped" : zmq_strerror(errno), (unsigned long long)w->out_count);
        return -1;
    }
    hop_acks(w);
    if (w->asock)
        take_origin_acks(w);
    take_events(w);
    if (w->nquar) {
        double t = now_s();
        for (unsigned q = 0; q < w->nquar; q++)
            if (t - w->quar[q].since > SHM_QUARANTINE_S) {
                shm_pool_release(w->shm, w->quar[q].slot);
                w->quar[q--] = w->quar[--w->nquar];
            }
    }
    return shm_redo(w, err);
}

/* May a message of size bytes go now: is there room in the window, and a
 * reader to take it? The reader's index, or -1. */
static int send_room(wr_t *w, size_t size)
{
    if (w->out_count >= w->window || w->next_seq - w->low >= w->span ||
        (w->out_bytes && w->out_bytes + size > WR_WINDOW_BYTES))
        return -1;
    return peer_pick(w);
}

/* Send one message [seq][bytes] to a reader: the bytes at from, or (from =
 * NULL) the record in the encoder. filled: from already lies in this
 * shared-memory slot (+ 1; the batch gathered there), or 0. */
static int send_zmq(wr_t *w, const char *from, size_t size, bool untagged, unsigned filled, char *err)
{
    zmq_msg_t m;
    unsigned slot = 0;
    char *dst = NULL;
    bool built = false;
    int p;
again:
    // wait for room and a reader (an acknowledgement, or a hello)
    while ((p = send_room(w, size)) < 0)
        if (take_acks(w, -1, err)) {
            if (built)
                zmq_msg_close(&m);
            if (dst || (filled && !built))
                shm_pool_release(w->shm, dst ? slot : filled - 1);
            return -1;
        }
    if (!built) {
        if (filled && w->shm_state == 1) { // gathered in place
            slot = filled - 1;
            dst = (char *)from;
        } else if (!filled && shm_ready(w, size, size) && (dst = shm_pool_acquire(w->shm, &slot)) != NULL) {
            if (from)
                memcpy(dst, from, size);
            else
                rec_enc_gather(w->enc, dst);
        }
        if (dst) { // the bytes in a slot, its descriptor onto the socket
            zmq_msg_init_size(&m, SHM_DESC_LEN);
            shm_pool_commit(w->shm, slot, size, zmq_msg_data(&m));
        } else {
            // through the socket (a batch gathered in a slot, when a reader
            // has refused shared memory since: the slot is free again)
            int rc = zmq_msg_init_size(&m, size);
            if (rc == 0 && from)
                memcpy(zmq_msg_data(&m), from, size);
            else if (rc == 0)
                rec_enc_gather(w->enc, zmq_msg_data(&m));
            if (filled)
                shm_pool_release(w->shm, filled - 1);
            if (rc) {
                snprintf(err, REC_ERR_LEN, "out of memory for a %zu-byte message", size);
                return -1;
            }
        }
        built = true;
    }
    const peer_t *pr = &w->peers[p];
    // past half its window, or closing, the writer asks for prompt
    // acknowledgements; a reader with half of its PEER_WINDOW, for one as
    // soon as it has taken the message
    bool prompt = w->closing || 2 * (w->out_count + 1) > w->window || 2 * (w->next_seq + 1 - w->low) > w->span ||
                  2 * (w->out_bytes + size) > WR_WINDOW_BYTES;
    bool urgent = peer_capped(w) && 2 * (pr->out + 1) > PEER_WINDOW;
    unsigned char hdr[8];
    le64_put(hdr, w->next_seq | (prompt ? SEQ_PROMPT : 0) | (urgent ? SEQ_URGENT : 0));
    // [reader id][seq][bytes]; a reader found gone is not dealt to again
    for (int frame = 0; frame < 3;) {
        int rc = frame == 0   ? zmq_send(w->zsock, pr->id, pr->idlen, ZMQ_SNDMORE)
                 : frame == 1 ? zmq_send(w->zsock, hdr, sizeof hdr, ZMQ_SNDMORE)
                              : zmq_msg_send(&m, w->zsock, 0);
        if (rc >= 0) {
            frame++;
            continue;
        }
        if (frame == 0 && errno == EHOSTUNREACH) {
            w->peers[p].dead = true;
            w->live--;
            goto again;
        }
        if (errno == EINTR && stop_level < 2)
            continue;
        snprintf(err, REC_ERR_LEN, "%s: send: %s", w->name,
                 errno == EINTR ? "stopped while no reader took records" : zmq_strerror(errno));
        zmq_msg_close(&m);
        if (dst)
            shm_pool_release(w->shm, slot);
        return -1;
    }
    w->peers[p].out++;
    w->peer_of[w->next_seq & (w->span - 1)] = (uint16_t)(p + 1);
    if (w->slot_of)
        w->slot_of[w->next_seq & (w->span - 1)] = dst ? slot + 1 : 0;
    w->acked[w->next_seq & (w->span - 1)] = 0;
    w->untagged[w->next_seq & (w->span - 1)] = untagged;
    w->msize[w->next_seq & (w->span - 1)] = size;
    w->out_bytes += size;
    w->out_count++;
    w->next_seq++;
    w->bytes += size;
    return take_acks(w, 0, err);
}

/* Send again through the socket the messages a reader refused to take from
 * shared memory (hop_acks), each as a new message; the refused seq is done
 * with. */
static int shm_redo(wr_t *w, char *err)
{
    if (w->redoing || w->nredo == 0)
        return 0;
    w->redoing = true;
    int rc = 0;
    while (rc == 0 && w->nredo > 0) {
        uint64_t seq = w->redo[0]; // in the order refused
        memmove(w->redo, w->redo + 1, --w->nredo * sizeof *w->redo);
        uint32_t slot = w->slot_of[seq & (w->span - 1)];
        bool untagged = w->untagged[seq & (w->span - 1)];
        if (!slot || !ack_seq(w, seq, true))
            continue; // given up meanwhile (take_events): its slot is kept apart
        slot_take(w, seq);
        size_t len;
        const void *bytes = shm_pool_bytes(w->shm, slot - 1, &len);
        w->bytes -= len; // counted once, as sent again
        rc = send_zmq(w, bytes, len, untagged, 0, err);
        shm_pool_release(w->shm, slot - 1);
    }
    w->redoing = false;
    return rc;
}

static int zflush(wr_t *w, char *err)
{
    if (w->nbuf == 0)
        return 0;
    size_t n = w->nbuf;
    w->nbuf = 0;
    w->nbuf_recs = 0;
    bool untagged = w->buf_untagged;
    w->buf_untagged = false;
    unsigned filled = w->bslot;
    w->bslot = 0;
    return send_zmq(w, w->bat, n, untagged, filled, err);
}

/* A record bigger than half a batch travels alone; smaller ones are
 * gathered. from: the record's bytes, or NULL for the encoder's. */
static int put_zmq(wr_t *w, const char *from, size_t size, bool untagged, char *err)
{
    if (w->nbuf == 0 && w->shm_state == 0)
        shm_ready(w, 0, size); // the pool first: its slot size is the batch's limit
    if (size > w->zbatch / 2)
        return zflush(w, err) ? -1 : send_zmq(w, from, size, untagged, 0, err);
    if (w->nbuf + size > w->zbatch && zflush(w, err))
        return -1;
    double t = now_s();
    if (w->nbuf == 0) {
        // a new batch: gathered straight into a shared-memory slot when
        // there is one, else into buf
        unsigned slot;
        w->buf_since = t;
        w->bat = shm_ready(w, w->zbatch, size) ? shm_pool_acquire(w->shm, &slot) : NULL;
        w->bslot = w->bat ? slot + 1 : 0;
        if (!w->bat)
            w->bat = w->buf;
    }
    if (from)
        memcpy(w->bat + w->nbuf, from, size);
    else
        rec_enc_gather(w->enc, w->bat + w->nbuf);
    w->nbuf += size;
    w->buf_untagged |= untagged;
    if (++w->nbuf_recs == ZBATCH_RECORDS || t - w->buf_since > 0.020)
        return zflush(w, err);
    return 0;
}

/* ---- the origin: records kept until the sink acknowledges them ---- */

typedef struct {
    wr_t *w;
    char *bytes; // records due again, back to back
    size_t n, cap;
    size_t *lens; // their lengths
    int count, lcap;
} resend_t;

static int collect(void *arg, const void *bytes, size_t len)
{
    resend_t *r = arg;
    if (r->n + len > r->cap) {
        size_t cap = (r->n + len) * 2;
        char *b = realloc(r->bytes, cap);
        if (!b)
            return -1;
        r->bytes = b, r->cap = cap;
    }
    if (r->count == r->lcap) {
        int lcap = r->lcap ? 2 * r->lcap : 64;
        size_t *l = realloc(r->lens, (size_t)lcap * sizeof *l);
        if (!l)
            return -1;
        r->lens = l, r->lcap = lcap;
    }
    memcpy(r->bytes + r->n, bytes, len);
    r->n += len;
    r->lens[r->count++] = len;
    return 0;
}

/* Send again what is due (dlv_win_resend), at most every 50 ms. The records
 * are copied out first: sending may wait and take acknowledgements, which
 * free window slots. */
static int origin_resend(wr_t *w, char *err)
{
    double t = now_s();
    if (t - w->last_scan < 0.05)
        return 0;
    w->last_scan = t;
    resend_t r = {.w = w};
    int rc = dlv_win_resend(w->dwin, t, collect, &r);
    if (rc)
        snprintf(err, REC_ERR_LEN, "out of memory");
    size_t off = 0;
    for (int i = 0; rc == 0 && i < r.count; i++) {
        rc = put_zmq(w, r.bytes + off, r.lens[i], false, err);
        off += r.lens[i];
    }
    if (rc == 0 && r.count)
        rc = zflush(w, err);
    free(r.bytes);
    free(r.lens);
    return rc ? -1 : 0;
}

/* Wait a little for the sink's acknowledgements; send again what is due. */
static int origin_wait(wr_t *w, long timeout_ms, char *err)
{
    if (take_acks(w, timeout_ms, err))
        return -1;
    return origin_resend(w, err);
}

static int put_origin(wr_t *w, const rec_t *r, char *err)
{
    uint64_t seq = dlv_win_next(w->dwin);
    if (dlv_encode_tagged(w->enc, r, w->origin, seq, err))
        return -1;
    size_t size = rec_enc_size(w->enc);
    if (size > w->o.limits.max_message) {
        snprintf(err, REC_ERR_LEN, "%s: record of %zu bytes is over the %zu-byte limit", w->name, size,
                 w->o.limits.max_message);
        return -1;
    }
    if (size > w->gcap) {
        char *g = realloc(w->gbuf, size);
        if (!g) {
            snprintf(err, REC_ERR_LEN, "out of memory for a %zu-byte record", size);
            return -1;
        }
        w->gbuf = g, w->gcap = size;
    }
    rec_enc_gather(w->enc, w->gbuf);
    // the window is the end-to-end back-pressure: wait for the sink
    while (dlv_win_full(w->dwin, size)) {
        if (w->nbuf && zflush(w, err))
            return -1;
        if (stop_level >= 2) {
            snprintf(err, REC_ERR_LEN, "%s: stopped while the sink acknowledged nothing", w->name);
            return -1;
        }
        if (origin_wait(w, 50, err))
            return -1;
    }
    if (dlv_win_add(w->dwin, w->gbuf, size, now_s())) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    if (put_zmq(w, w->gbuf, size, false, err))
        return -1;
    return origin_resend(w, err);
}

int wr_put(wr_t *w, const rec_t *r, char *err)
{
    if (w->dwin)
        return put_origin(w, r, err);
    if (rec_encode(w->enc, r, err))
        return -1;
    size_t size = rec_enc_size(w->enc);
    if (size > w->o.limits.max_message) {
        snprintf(err, REC_ERR_LEN, "%s: record of %zu bytes is over the %zu-byte limit", w->name, size,
                 w->o.limits.max_message);
        return -1;
    }
    if (w->zsock)
        return put_zmq(w, NULL, size, !rec_get(r, DLV_KEY), err);
    if (size <= WBUF_SIZE) {
        if (w->nbuf + size > WBUF_SIZE && wr_flush(w, err))
            return -1;
        rec_enc_gather(w->enc, w->buf + w->nbuf);
        w->nbuf += size;
        return 0;
    }
    if (wr_flush(w, err))
        return -1;
    int n;
    const struct iovec *v = rec_enc_iov(w->enc, &n);
    struct iovec local[64], *iov = n <= 64 ? local : malloc((size_t)n * sizeof *iov);
    if (!iov) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    memcpy(iov, v, (size_t)n * sizeof *iov);
    int rc = write_all(w, iov, n, err);
    if (iov != local)
        free(iov);
    return rc;
}

uint64_t wr_bytes(const wr_t *w) { return w->bytes; }

static void wr_free(wr_t *w)
{
    monitor_close(w->zsock, &w->mon);
    if (w->asock) {
        int zero = 0;
        zmq_setsockopt(w->asock, ZMQ_LINGER, &zero, sizeof zero);
        zsock_close(w->asock);
    }
    if (w->zsock)
        zsock_close(w->zsock);
    if (w->fd >= 0 && w->own_fd)
        close(w->fd);
    rec_enc_destroy(&w->enc);
    dlv_win_destroy(&w->dwin);
    shm_pool_destroy(&w->shm);
    free(w->slot_of);
    free(w->quar);
    free(w->redo);
    free(w->gbuf);
    free(w->buf);
    free(w->acked);
    free(w->untagged);
    free(w->msize);
    free(w->peer_of);
    free(w->peers);
    free(w);
}

/* An origin closes once the sink has acknowledged every record, sending
 * again what is due meanwhile. After a stop request it gives up when no
 * acknowledgement has come for STOP_GRACE_MS. */
static int origin_close(wr_t *w, char *err)
{
    double start = now_s(), progress = start;
    uint64_t left = dlv_win_outstanding(w->dwin);
    while (left > 0) {
        if (stop_level >= 2 || (stop_level > 0 && now_s() - progress > STOP_GRACE_MS / 1000.0) ||
            (w->o.linger_ms >= 0 && now_s() - start > w->o.linger_ms / 1000.0)) {
            snprintf(err, REC_ERR_LEN, "%s: %llu records not acknowledged by the sink", w->name,
                     (unsigned long long)left);
            return -1;
        }
        if (origin_wait(w, 100, err) || zflush(w, err))
            return -1;
        uint64_t now_left = dlv_win_outstanding(w->dwin);
        if (now_left < left)
            progress = now_s();
        left = now_left;
    }
    return 0;
}

int wr_close(wr_t **wp, char *err)
{
    if (!wp || !*wp)
        return 0;
    wr_t *w = *wp;
    *wp = NULL;
    w->closing = true;
    int rc = wr_flush(w, err);
    if (rc == 0 && w->dwin) {
        // the sink has every record: what the readers between still owe
        // acknowledgements for is nothing that matters
        rc = origin_close(w, err);
    } else if (w->zsock) {
        // every record acknowledged, or the linger time spent, or stopped hard
        // A stop request bounds the wait: a reader that is gone for good
        // must not keep a stopping stage alive.
        long waited = 0, linger = w->o.linger_ms, stopped_at = -1;
        while (rc == 0 && w->low < w->next_seq) {
            if (stop_level > 0 && stopped_at < 0)
                stopped_at = waited;
            if ((linger >= 0 && waited >= linger) || (stopped_at >= 0 && waited - stopped_at >= STOP_GRACE_MS)) {
                snprintf(err, REC_ERR_LEN, "%s: %llu records not acknowledged by a reader after %ld ms", w->name,
                         (unsigned long long)w->out_count, linger);
                rc = -1;
                break;
            }
            rc = take_acks(w, 100, err);
            waited += 100;
        }
        if (rc == 0 && w->forgiven) {
            snprintf(err, REC_ERR_LEN,
                     "%s: %llu messages were with a reader that disconnected before acknowledging them: their "
                     "records may be lost (end-to-end delivery, --acks-in, sends such records again)",
                     w->name, (unsigned long long)w->forgiven);
            rc = -1;
        }
    }
    if (w->zsock) {
        int zero = 0;
        zmq_setsockopt(w->zsock, ZMQ_LINGER, &zero, sizeof zero);
    }
    if (rc == 0 && w->tmp[0]) {
        if (fsync(w->fd) != 0) {
            snprintf(err, REC_ERR_LEN, "%s: fsync: %s", w->tmp, strerror(errno));
            rc = -1;
        } else if (rename(w->tmp, w->ep.path) != 0) {
            snprintf(err, REC_ERR_LEN, "rename %s to %s: %s", w->tmp, w->ep.path, strerror(errno));
            rc = -1;
        } else {
            // make the rename itself durable
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", w->ep.path);
            int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            w->tmp[0] = 0;
        }
    }
    if (rc != 0 && w->tmp[0])
        unlink(w->tmp);
    wr_free(w);
    return rc;
}

void wr_abort(wr_t **wp)
{
    if (!wp || !*wp)
        return;
    if ((*wp)->tmp[0])
        unlink((*wp)->tmp);
    wr_free(*wp);
    *wp = NULL;
}
