/* stream.h — read and write records over any endpoint (endpoint.h).
 *
 * A stage's whole I/O:
 *
 *     rd_t *in = rd_open(inputs, n_inputs, &opts, err);
 *     wr_t *out = wr_open(output, &opts, err);
 *     rec_t *r;
 *     while ((rc = rd_next(in, &r, err)) > 0) { ...; wr_put(out, r, err); rec_destroy(&r); }
 *     wr_close(&out, err); rd_close(&in);
 *
 * Files are written to a temporary name, fsynced and renamed at wr_close, so
 * a cache file is whole or absent. ZeroMQ writers and readers are ROUTERs
 * with acknowledgements and a send window, so a slow consumer blocks its
 * producers instead of growing their memory, and a writer deals each message
 * to the reader with the fewest unacknowledged, so a fast reader takes more
 * than a slow one (docs/ipc.md).
 *
 * End-to-end delivery (deliver.h): a writer with acks_in is an origin that
 * tags its records and sends again what the sink has not acknowledged; a
 * reader with acks_out is a sink that acknowledges tags and drops the ones
 * it has seen. Stages in between need nothing.
 *
 * Stopping: ipc_stop_request() (called from a signal handler) makes readers
 * finish gracefully: a file input ends at the next record; a pipe is drained
 * to its end, so records an upstream stage flushes while stopping are not
 * lost; a ZeroMQ input takes what is already queued and ends. A second
 * request ends every input at once. Writers deliver what they were given
 * before they close; a ZeroMQ writer waits for its readers' acknowledgements,
 * for up to 5 s once a stop was requested (then it reports what was not
 * acknowledged), and not at all after a second request. */
#ifndef BAGEL_STREAM_H
#define BAGEL_STREAM_H

#include "acct.h"
#include "rec.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    rec_limits_t limits;
    int hwm;           // ZeroMQ send window: messages unacknowledged, at most 64 MiB of them (default 256)
    int linger_ms;     // ZeroMQ: how long closing waits to deliver (-1: until delivered)
    int expect_ends;   // reader: end after this many complete (source, epoch) streams; 0: at end of input only
    const char *stage; // names the stage in rejects the reader makes
    const char *curve_server_key;  // ZeroMQ tcp: key file (see ipc/curve.h); none: plain
    const char *curve_client_keys; // bind side: file of allowed client public keys
    // end-to-end delivery (deliver.h, docs/supervisor.md)
    const char *acks_in;  // writer: be an origin; the sink's acknowledgement endpoint (ZeroMQ)
    const char *acks_out; // reader: be a sink; where acknowledgements go to the origins (ZeroMQ)
    int ack_window;       // origin: records the sink has not acknowledged, at most (default 65536; deliver.h)
    bool insecure;        // allow a tcp bind beyond loopback without CURVE keys
} stream_opts_t;

void stream_opts_default(stream_opts_t *o);

/* Asynchronous-signal-safe stop request; each call raises the level. */
void ipc_stop_request(void);
int ipc_stop_level(void);

typedef struct rd rd_t;
typedef struct wr wr_t;

typedef struct {
    uint64_t records;      // records returned
    uint64_t bytes;        // encoded bytes of those records
    uint64_t bad;          // messages skipped as unreadable
    uint64_t made_rejects; // records returned as rejects because they broke the schema
    uint64_t duplicates;   // sink: records dropped because their delivery tag was seen before
    uint64_t shm;          // ZeroMQ messages whose bytes came through shared memory (shm.h)
} rd_stats_t;

/* specs: endpoints read one after the other (files, globs, "-", ZeroMQ). */
rd_t *rd_open(const char *const *specs, int nspecs, const stream_opts_t *o, char *err);
/* 1: *out is a record the caller owns. 2: the same, but the message broke the
 * schema and *out is a reject made from it (err says why). 0: end of input.
 * -1: a message could not be read and was skipped (err names it; reading goes
 * on). -2: fatal I/O error (err). */
int rd_next(rd_t *rd, rec_t **out, char *err);
/* Called each time the reader is about to wait for input, so a stage can
 * flush what it has buffered. */
void rd_set_idle(rd_t *rd, void (*fn)(void *), void *arg);
/* Accounting of every record returned so far. */
const acct_t *rd_acct(const rd_t *rd);
rd_stats_t rd_stats(const rd_t *rd);
/* Did input end because of a stop request? */
bool rd_interrupted(const rd_t *rd);
void rd_close(rd_t **rd);

wr_t *wr_open(const char *spec, const stream_opts_t *o, char *err);
/* 0, or -1 when the output failed (a closed pipe, a full disk): fatal. */
int wr_put(wr_t *w, const rec_t *r, char *err);
int wr_flush(wr_t *w, char *err);
/* Flush and close; a file is fsynced and renamed into place. */
int wr_close(wr_t **w, char *err);
/* Close without keeping a partial file. */
void wr_abort(wr_t **w);
uint64_t wr_bytes(const wr_t *w);

#endif
