/* deliver.h — end-to-end delivery: at-least-once from an origin to a sink,
 * exactly once in effect by de-duplication at the sink (docs/supervisor.md).
 *
 * An origin (a source stage: bagel-read, bagel-cat relaying a cache) stamps
 * every record it writes with a delivery tag
 *
 *     "dlv": ["<16 hex digits: the origin>", N]     N = 0, 1, 2, ... per origin
 *
 * and keeps its bytes until the sink acknowledges N on a separate socket. A
 * record that the sink has not acknowledged in time is sent again (to any
 * worker); the sink drops a tag it has seen and acknowledges it again. The
 * tag is an unknown key to every stage between them, so it travels through
 * untouched, and a reject keeps the tag of its sample.
 *
 * This file is the logic only (no sockets, time passed in), so that it can
 * be tested and fuzzed alone: the origin's window (dlv_win_*), the sink's
 * de-duplication and pending acknowledgements (dlv_sink_*), the tag and the
 * acknowledgement frame. stream.c drives them.
 *
 * The window is a span: the origin never sends N while N - W or lower is
 * unacknowledged. So a sink that remembers the W tags above the highest N
 * below which it has seen everything can tell every duplicate, in 8 KiB an
 * origin (W at most DLV_WINDOW_MAX). Within W the origin lets only the
 * records of DLV_WIN_SECONDS of acknowledgements be in flight, at the rate
 * it measures (dlv_win_full), so that a record's latency stays well under
 * the timeout however wide W is. */
#ifndef BAGEL_DELIVER_H
#define BAGEL_DELIVER_H

#include "rec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DLV_KEY        "dlv"
#define DLV_ORIGIN_LEN 16     // hex digits of an origin id
#define DLV_WINDOW_MAX 65536  // records an origin may have unacknowledged
#define DLV_ACK_MAX    512    // sequence numbers in one acknowledgement frame
#define DLV_ORIGINS_MAX 4096  // origins a sink remembers
/* Records in flight: this many seconds of acknowledgements at the rate
 * measured. More than three times the 0.6 s that 16,384 records lasted at
 * 28k/s, enough to feed 16 replicas (docs/supervisor.md), and a fifth of
 * DLV_RTO_MAX, room for a pipeline that suddenly runs slower. */
#define DLV_WIN_SECONDS 2.0
#define DLV_WIN_MIN     1024 // records in flight at least (the window if smaller), and at first
#define DLV_RATE_BUCKET 1.0  // acknowledgements are counted over intervals of at least this, s

/* ---- the tag ---- */

/* A fresh random origin id: DLV_ORIGIN_LEN lowercase hex digits and a NUL. */
void dlv_origin_new(char *id);
/* The tag of a record: 1 and origin/seq filled; 0 when it has none; -1 when
 * "dlv" is there but is not [16 hex digits, non-negative integer] (err). */
int dlv_tag_get(const msgpack_object *root, char *origin, uint64_t *seq, char *err);
/* Remove "dlv" from a map (in place; nothing is freed). */
void dlv_tag_strip(msgpack_object *map);
/* Encode r with the tag ["origin", seq] in place of any "dlv" it has. */
int dlv_encode_tagged(rec_enc_t *e, const rec_t *r, const char *origin, uint64_t seq, char *err);

/* ---- acknowledgement frames: u64 little-endian sequence numbers ---- */

/* Encode n (<= DLV_ACK_MAX) seqs into buf (8 n bytes); returns the length. */
size_t dlv_ack_encode(const uint64_t *seqs, int n, unsigned char *buf);
/* Decode a frame: the number of seqs (<= DLV_ACK_MAX), or -1 when its length
 * is 0, not a multiple of 8 or over DLV_ACK_MAX seqs. */
int dlv_ack_decode(const void *buf, size_t len, uint64_t *seqs);

/* ---- the origin's window ---- */

typedef struct dlv_win dlv_win_t;

typedef struct {
    uint64_t sent;      // records added
    uint64_t resent;    // sends after the first
    uint64_t acked;     // records acknowledged
    uint64_t stale;     // acknowledgements for nothing outstanding (duplicates, old)
    uint64_t bad;       // malformed acknowledgement frames
    double srtt, rttvar; // smoothed time from first send to acknowledgement, s
    double lat_max;      // the longest such time lately (decaying), s
    double rate;         // records acknowledged a second, smoothed (0: not measured yet)
    uint32_t limit;      // the span dlv_win_full allows now, records
} dlv_win_stats_t;

/* window: records (2 to DLV_WINDOW_MAX), the most the span may ever hold;
 * max_bytes: bytes held (a record larger than that is still taken when the
 * window is empty). The span allowed starts at DLV_WIN_MIN (or window) and
 * follows the rate: rate x DLV_WIN_SECONDS, between those two. */
dlv_win_t *dlv_win_new(uint32_t window, size_t max_bytes);
void dlv_win_destroy(dlv_win_t **w);
/* Would a record of len bytes have to wait for acknowledgements? Yes when
 * the span has reached the limit that follows the rate, or the bytes held
 * would pass max_bytes. */
bool dlv_win_full(const dlv_win_t *w, size_t len);
/* The sequence number the next record gets (its tag is encoded with it). */
uint64_t dlv_win_next(const dlv_win_t *w);
/* Keep a copy of the record's bytes as sent at time now. 0, or -1 when out
 * of memory or the span holds window records (the limit is dlv_win_full's
 * to keep). */
int dlv_win_add(dlv_win_t *w, const void *bytes, size_t len, double now);
/* Take an acknowledgement of seq at time now: 1 when it was outstanding.
 * Acknowledgements set the rate and with it the limit. */
int dlv_win_ack(dlv_win_t *w, uint64_t seq, double now);
/* Take a whole frame; the number of records it acknowledged, -1 if malformed. */
int dlv_win_ack_frame(dlv_win_t *w, const void *buf, size_t len, double now);
/* Records unacknowledged. */
uint64_t dlv_win_outstanding(const dlv_win_t *w);
/* Send again every record that is due at now, oldest first: fn(arg, bytes,
 * len) for each (a non-zero return stops the scan and is returned); the
 * record's clock restarts and its next wait doubles. A record is due when it
 * has waited rto (1.5 times the longest latency seen lately, at least
 * DLV_RTO_MIN) and a record sent rto after it has been acknowledged (it
 * was overtaken by more than two workers' queues can differ: its worker died
 * or lost it), or when it has waited twice that with nothing overtaking
 * it (the tail of a stream; a stall). Each send again doubles the wait. */
int dlv_win_resend(dlv_win_t *w, double now, int (*fn)(void *arg, const void *bytes, size_t len), void *arg);
/* The current base timeout, s. */
double dlv_win_rto(const dlv_win_t *w);
dlv_win_stats_t dlv_win_stats(const dlv_win_t *w);

#define DLV_RTO_MIN  0.25
#define DLV_RTO_INIT 2.0
#define DLV_RTO_MAX  10.0

/* ---- the sink ---- */

typedef struct dlv_sink dlv_sink_t;

typedef struct {
    uint64_t taken;      // records seen for the first time
    uint64_t duplicates; // records dropped as seen before
    uint64_t unknown;    // tags that could not be remembered (window or origins exceeded): passed on
} dlv_sink_stats_t;

dlv_sink_t *dlv_sink_new(void);
void dlv_sink_destroy(dlv_sink_t **s);
/* A tagged record arrived: 0 first time (pass it on), 1 duplicate (drop it),
 * -1 cannot tell (pass it on), -2 out of memory. An acknowledgement is queued
 * in every case but -2; *flush is set when this origin's queue is full
 * enough to send. */
int dlv_sink_take(dlv_sink_t *s, const char *origin, uint64_t seq, bool *flush);
/* Send the queued acknowledgements: send(arg, origin, frame, len) for each
 * origin with some; 0 from send clears them, non-zero keeps them for the
 * next flush (the origin is not connected yet). Returns the number of
 * origins still holding acknowledgements. */
int dlv_sink_flush(dlv_sink_t *s, int (*send)(void *arg, const char *origin, const void *frame, size_t len), void *arg);
dlv_sink_stats_t dlv_sink_stats(const dlv_sink_t *s);

#endif
