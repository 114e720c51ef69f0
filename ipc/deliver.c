/* deliver.c — see deliver.h: the origin's window, the sink's de-duplication,
 * the tag and the acknowledgement frame. No sockets here. */
#include "deliver.h"

#include "le.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the tag ---- */

void dlv_origin_new(char *id)
{
    unsigned char b[DLV_ORIGIN_LEN / 2];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof b) {
        // no urandom: time and pid still differ between the processes of a run
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid();
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)(x >> (8 * i));
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) {
        id[2 * i] = hex[b[i] >> 4];
        id[2 * i + 1] = hex[b[i] & 15];
    }
    id[DLV_ORIGIN_LEN] = 0;
}

static bool is_key(const msgpack_object *k)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == sizeof DLV_KEY - 1 &&
           memcmp(k->via.str.ptr, DLV_KEY, sizeof DLV_KEY - 1) == 0;
}

int dlv_tag_get(const msgpack_object *root, char *origin, uint64_t *seq, char *err)
{
    if (root->type != MSGPACK_OBJECT_MAP)
        return 0;
    const msgpack_object *v = NULL;
    for (uint32_t i = 0; i < root->via.map.size && !v; i++)
        if (is_key(&root->via.map.ptr[i].key))
            v = &root->via.map.ptr[i].val;
    if (!v)
        return 0;
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 2) {
        snprintf(err, REC_ERR_LEN, "\"dlv\": expected [origin, seq]");
        return -1;
    }
    const msgpack_object *o = &v->via.array.ptr[0], *n = &v->via.array.ptr[1];
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size != DLV_ORIGIN_LEN) {
        snprintf(err, REC_ERR_LEN, "\"dlv\"[0]: expected %d hex digits", DLV_ORIGIN_LEN);
        return -1;
    }
    for (int i = 0; i < DLV_ORIGIN_LEN; i++) {
        char c = o->via.str.ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            snprintf(err, REC_ERR_LEN, "\"dlv\"[0]: expected %d lowercase hex digits", DLV_ORIGIN_LEN);
            return -1;
        }
    }
    if (n->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        snprintf(err, REC_ERR_LEN, "\"dlv\"[1]: expected a non-negative integer");
        return -1;
    }
    memcpy(origin, o->via.str.ptr, DLV_ORIGIN_LEN);
    origin[DLV_ORIGIN_LEN] = 0;
    *seq = n->via.u64;
    return 1;
}

void dlv_tag_strip(msgpack_object *map)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return;
    uint32_t k = 0;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (!is_key(&map->via.map.ptr[i].key))
            map->via.map.ptr[k++] = map->via.map.ptr[i];
    map->via.map.size = k;
}

int dlv_encode_tagged(rec_enc_t *e, const rec_t *r, const char *origin, uint64_t seq, char *err)
{
    uint32_t n = r->root.via.map.size;
    msgpack_object_kv local[64], *kv = n + 1 <= 64 ? local : malloc((n + 1) * sizeof *kv);
    if (!kv) {
        snprintf(err, REC_ERR_LEN, "encode: out of memory");
        return -1;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!is_key(&r->root.via.map.ptr[i].key))
            kv[k++] = r->root.via.map.ptr[i];
    msgpack_object tag[2];
    tag[0].type = MSGPACK_OBJECT_STR;
    tag[0].via.str.ptr = origin;
    tag[0].via.str.size = DLV_ORIGIN_LEN;
    tag[1].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    tag[1].via.u64 = seq;
    kv[k].key.type = MSGPACK_OBJECT_STR;
    kv[k].key.via.str.ptr = DLV_KEY;
    kv[k].key.via.str.size = sizeof DLV_KEY - 1;
    kv[k].val.type = MSGPACK_OBJECT_ARRAY;
    kv[k].val.via.array.ptr = tag;
    kv[k].val.via.array.size = 2;
    k++;
    rec_t t = *r;
    t.root.via.map.ptr = kv;
    t.root.via.map.size = k;
    int rc = rec_encode(e, &t, err);
    if (kv != local)
        free(kv);
    return rc;
}

/* ---- acknowledgement frames ---- */

size_t dlv_ack_encode(const uint64_t *seqs, int n, unsigned char *buf)
{
    for (int i = 0; i < n; i++)
        le64_put(buf + 8 * i, seqs[i]);
    return (size_t)n * 8;
}

int dlv_ack_decode(const void *buf, size_t len, uint64_t *seqs)
{
    if (len == 0 || len % 8 || len / 8 > DLV_ACK_MAX)
        return -1;
    const unsigned char *p = buf;
    int n = (int)(len / 8);
    for (int i = 0; i < n; i++)
        seqs[i] = le64_get(p + 8 * i);
    return n;
}

/* ---- the origin's window ---- */

typedef struct {
    unsigned char *buf; // the record as sent, tag included; NULL when acknowledged
    size_t len;
    double first, sent; // first and last send
    uint32_t tries;     // sends so far
} slot_t;

struct dlv_win {
    slot_t *slots; // by seq modulo window
    uint32_t window;
    size_t max_bytes, bytes;
    uint64_t low, next; // every seq below low is acknowledged; next is the next to send
    uint64_t outstanding;
    double overtake;  // the latest send time of any acknowledged record
    double lat_at;    // when lat_max was last set
    double count_at;  // when the interval that counts acknowledgements began
    uint64_t counted; // acknowledgements in it
    dlv_win_stats_t st;
};

dlv_win_t *dlv_win_new(uint32_t window, size_t max_bytes)
{
    if (window < 2)
        window = 2;
    if (window > DLV_WINDOW_MAX)
        window = DLV_WINDOW_MAX;
    dlv_win_t *w = calloc(1, sizeof *w);
    if (!w || !(w->slots = calloc(window, sizeof *w->slots))) {
        free(w);
        return NULL;
    }
    w->window = window;
    w->max_bytes = max_bytes;
    w->overtake = -1e300;
    w->st.limit = window < DLV_WIN_MIN ? window : DLV_WIN_MIN;
    return w;
}

void dlv_win_destroy(dlv_win_t **wp)
{
    if (!wp || !*wp)
        return;
    dlv_win_t *w = *wp;
    for (uint32_t i = 0; i < w->window; i++)
        free(w->slots[i].buf);
    free(w->slots);
    free(w);
    *wp = NULL;
}

bool dlv_win_full(const dlv_win_t *w, size_t len)
{
    if (w->next - w->low >= w->st.limit)
        return true;
    return w->outstanding > 0 && w->bytes + len > w->max_bytes;
}

uint64_t dlv_win_next(const dlv_win_t *w) { return w->next; }
uint64_t dlv_win_outstanding(const dlv_win_t *w) { return w->outstanding; }
dlv_win_stats_t dlv_win_stats(const dlv_win_t *w) { return w->st; }

int dlv_win_add(dlv_win_t *w, const void *bytes, size_t len, double now)
{
    if (w->next - w->low >= w->window)
        return -1;
    slot_t *s = &w->slots[w->next % w->window];
    s->buf = malloc(len ? len : 1);
    if (!s->buf)
        return -1;
    memcpy(s->buf, bytes, len);
    s->len = len;
    s->first = s->sent = now;
    s->tries = 1;
    w->bytes += len;
    w->next++;
    w->outstanding++;
    w->st.sent++;
    return 0;
}

/* Latencies are not one bell curve: a record's depends on which worker's
 * queue it waits in, and most records take the short way. A mean and
 * deviation (as TCP keeps them) then call the long way a loss. So the
 * timeout follows the longest latency seen lately, decaying over ~10 s. */
double dlv_win_rto(const dlv_win_t *w)
{
    if (w->st.lat_max <= 0)
        return DLV_RTO_INIT;
    double rto = 1.5 * w->st.lat_max;
    return rto < DLV_RTO_MIN ? DLV_RTO_MIN : rto > DLV_RTO_MAX ? DLV_RTO_MAX : rto;
}

/* How many records may be in flight: as TCP sizes its window to the
 * bandwidth-delay product, the acknowledgements of DLV_WIN_SECONDS at the
 * rate measured. When the workers set the pace, the rate is theirs and the
 * queues hold that many seconds of work. When the limit does, the rate is
 * the limit over the latency, so rate x DLV_WIN_SECONDS grows the limit
 * while the latency is shorter and settles where it is DLV_WIN_SECONDS:
 * the workers' queues full, and the timeout (1.5 times the latency) far
 * under DLV_RTO_MAX at any width. No fixed window does both: 4,096 starved
 * 16 replicas on 16 cores, and 65,536 at ~900 records/s on 2 cores made the
 * latency ~70 s, seven times DLV_RTO_MAX: records were sent again en masse.
 *
 * The rate is counted over intervals that end at the first acknowledgement
 * DLV_RATE_BUCKET or more after they began, and smoothed: up by half the
 * difference, down by a quarter. A stall (the trainer writing a checkpoint)
 * ends one interval, so however long it is it costs the limit a quarter at
 * most, and the queues it filled drain at the full rate after it. */
static void count_ack(dlv_win_t *w, double now)
{
    if (w->st.acked == 1) {
        w->count_at = now;
        return;
    }
    w->counted++;
    double dt = now - w->count_at;
    if (dt < DLV_RATE_BUCKET)
        return;
    double r = (double)w->counted / dt;
    if (w->st.rate <= 0)
        w->st.rate = r;
    else
        w->st.rate += (r > w->st.rate ? 0.5 : 0.25) * (r - w->st.rate);
    w->count_at = now;
    w->counted = 0;
    double lo = w->window < DLV_WIN_MIN ? w->window : DLV_WIN_MIN, l = w->st.rate * DLV_WIN_SECONDS;
    w->st.limit = (uint32_t)(l < lo ? lo : l > w->window ? w->window : l);
}

int dlv_win_ack(dlv_win_t *w, uint64_t seq, double now)
{
    if (seq < w->low || seq >= w->next || !w->slots[seq % w->window].buf) {
        w->st.stale++;
        return 0;
    }
    slot_t *s = &w->slots[seq % w->window];
    // Karn: only a record sent once tells how long delivery takes
    if (s->tries == 1) {
        double sample = now - s->first;
        if (sample < 0)
            sample = 0;
        if (w->st.srtt <= 0) {
            w->st.srtt = sample > 1e-6 ? sample : 1e-6;
            w->st.rttvar = sample / 2;
        } else {
            double d = w->st.srtt - sample;
            w->st.rttvar = 0.75 * w->st.rttvar + 0.25 * (d < 0 ? -d : d);
            w->st.srtt = 0.875 * w->st.srtt + 0.125 * sample;
        }
        double decayed = w->st.lat_max * exp(-(now - w->lat_at) / 10.0);
        w->st.lat_max = sample > decayed ? sample : decayed;
        w->lat_at = now;
    }
    if (s->sent > w->overtake)
        w->overtake = s->sent;
    free(s->buf);
    s->buf = NULL;
    w->bytes -= s->len;
    w->outstanding--;
    w->st.acked++;
    count_ack(w, now);
    while (w->low < w->next && !w->slots[w->low % w->window].buf)
        w->low++;
    return 1;
}

int dlv_win_ack_frame(dlv_win_t *w, const void *buf, size_t len, double now)
{
    uint64_t seqs[DLV_ACK_MAX];
    int n = dlv_ack_decode(buf, len, seqs);
    if (n < 0) {
        w->st.bad++;
        return -1;
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        k += dlv_win_ack(w, seqs[i], now);
    return k;
}

int dlv_win_resend(dlv_win_t *w, double now, int (*fn)(void *, const void *, size_t), void *arg)
{
    double rto = dlv_win_rto(w);
    for (uint64_t q = w->low; q < w->next; q++) {
        slot_t *s = &w->slots[q % w->window];
        if (!s->buf)
            continue;
        double wait = rto;
        for (uint32_t t = 1; t < s->tries && wait < DLV_RTO_MAX; t++)
            wait *= 2;
        if (wait > DLV_RTO_MAX)
            wait = DLV_RTO_MAX;
        // overtaken by a record sent a whole timeout later: more than any
        // difference between the queues of two workers (in the steady state
        // the window's worth of queueing is what the latency measures)
        double age = now - s->sent;
        bool overtaken = w->overtake > s->sent + rto;
        if (age < wait || (!overtaken && age < 2 * wait))
            continue;
        int rc = fn(arg, s->buf, s->len);
        if (rc)
            return rc;
        s->sent = now;
        s->tries++;
        w->st.resent++;
    }
    return 0;
}

/* ---- the sink ---- */

#define SEEN_WORDS (DLV_WINDOW_MAX / 64)
/* Acknowledgements owed to one origin are sent once this many are queued. */
#define ACK_SEND_AT 64

typedef struct {
    char id[DLV_ORIGIN_LEN + 1];
    uint64_t low;               // every seq below low has been seen
    uint64_t seen[SEEN_WORDS];  // seqs low .. low + DLV_WINDOW_MAX - 1, by seq modulo
    uint64_t pend[DLV_ACK_MAX]; // acknowledgements not yet sent
    int npend;
} origin_t;

struct dlv_sink {
    origin_t **o;
    int n, last;
    dlv_sink_stats_t st;
};

dlv_sink_t *dlv_sink_new(void) { return calloc(1, sizeof(dlv_sink_t)); }

void dlv_sink_destroy(dlv_sink_t **sp)
{
    if (!sp || !*sp)
        return;
    for (int i = 0; i < (*sp)->n; i++)
        free((*sp)->o[i]);
    free((*sp)->o);
    free(*sp);
    *sp = NULL;
}

dlv_sink_stats_t dlv_sink_stats(const dlv_sink_t *s) { return s->st; }

/* The origin's entry, made on first sight. NULL: too many origins (*oom
 * false) or out of memory (*oom true). */
static origin_t *origin_of(dlv_sink_t *s, const char *id, bool *oom)
{
    *oom = false;
    if (s->last < s->n && memcmp(s->o[s->last]->id, id, DLV_ORIGIN_LEN) == 0)
        return s->o[s->last];
    for (int i = 0; i < s->n; i++)
        if (memcmp(s->o[i]->id, id, DLV_ORIGIN_LEN) == 0)
            return s->o[s->last = i];
    if (s->n == DLV_ORIGINS_MAX)
        return NULL;
    origin_t **a = realloc(s->o, (size_t)(s->n + 1) * sizeof *a);
    if (!a) {
        *oom = true;
        return NULL;
    }
    s->o = a;
    origin_t *o = calloc(1, sizeof *o);
    if (!o) {
        *oom = true;
        return NULL;
    }
    memcpy(o->id, id, DLV_ORIGIN_LEN);
    s->o[s->n] = o;
    s->last = s->n++;
    return o;
}

static bool bit(const origin_t *o, uint64_t q) { return o->seen[(q % DLV_WINDOW_MAX) / 64] >> (q % 64) & 1; }

static void queue_ack(origin_t *o, uint64_t seq, bool *flush)
{
    if (o->npend == DLV_ACK_MAX) {
        // the origin has not been reachable for a while: the oldest goes
        // (the origin sends that record again and gets a fresh ack)
        memmove(o->pend, o->pend + 1, (DLV_ACK_MAX - 1) * sizeof *o->pend);
        o->npend--;
    }
    o->pend[o->npend++] = seq;
    if (o->npend >= ACK_SEND_AT)
        *flush = true;
}

int dlv_sink_take(dlv_sink_t *s, const char *origin, uint64_t seq, bool *flush)
{
    *flush = false;
    bool oom;
    origin_t *o = origin_of(s, origin, &oom);
    if (!o) {
        if (oom)
            return -2;
        s->st.unknown++;
        return -1;
    }
    queue_ack(o, seq, flush);
    if (seq < o->low || (seq - o->low < DLV_WINDOW_MAX && bit(o, seq))) {
        s->st.duplicates++;
        return 1;
    }
    if (seq - o->low >= DLV_WINDOW_MAX) {
        // beyond any window an origin may use: pass it on, unremembered
        s->st.unknown++;
        return -1;
    }
    o->seen[(seq % DLV_WINDOW_MAX) / 64] |= 1ull << (seq % 64);
    while (bit(o, o->low)) {
        o->seen[(o->low % DLV_WINDOW_MAX) / 64] &= ~(1ull << (o->low % 64));
        o->low++;
    }
    s->st.taken++;
    return 0;
}

int dlv_sink_flush(dlv_sink_t *s, int (*send)(void *, const char *, const void *, size_t), void *arg)
{
    int left = 0;
    unsigned char frame[8 * DLV_ACK_MAX];
    for (int i = 0; i < s->n; i++) {
        origin_t *o = s->o[i];
        if (o->npend == 0)
            continue;
        size_t len = dlv_ack_encode(o->pend, o->npend, frame);
        if (send(arg, o->id, frame, len) == 0)
            o->npend = 0;
        else
            left++;
    }
    return left;
}
