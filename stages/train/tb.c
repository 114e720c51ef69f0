/* tb.c — see tb.h. The protobuf encoding is written by hand: the three
 * messages involved are small and fixed, and the bytes follow the encoder
 * that torch.utils.tensorboard uses (Python protobuf: known fields in field
 * number order; proto3 scalars omitted when zero, oneof members always
 * written). */
#include "tb.h"

#include "../../ipc/fsutil.h"
#include "../common/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The source_metadata.writer of the version record. TensorBoard's own writer
 * puts its module name there; it only identifies the producer. */
#define TB_WRITER_NAME "bagelpipe"

/* The largest record payload: a text event with the longest tag and text,
 * plus the fixed fields and their varint lengths (well under 128 bytes). */
#define TB_PAYLOAD_MAX (TB_TAG_MAX + TB_TEXT_MAX + 128)
#define TB_FRAME       (8 + 4 + 4) // length, its CRC, the data's CRC

struct tb_writer {
    int fd;
    bool broken;     // a failed write could not be cut back: the tail is garbage
    uint64_t size;   // bytes of whole records in the file
    char path[4096]; // the event file, for messages
    char err[512];   // the last failure, for tb_error
    uint8_t *buf;    // (TB_FRAME + TB_PAYLOAD_MAX) one framed record
};

/* ---- CRC32C. Our dependencies offer CRC32 (zlib) but not the Castagnoli
 * polynomial that TFRecord uses, so a table of 256 entries is built here. */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1))); // reflected 0x1edc6f41
        crc_table[i] = c;
    }
}

uint32_t tb_crc32c(uint32_t crc, const void *data, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* TFRecord stores CRCs rotated and offset, because a CRC of data that itself
 * holds CRCs is weak. */
uint32_t tb_crc_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- protobuf wire format: the few pieces used */

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80)
        v >>= 7, n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_key(uint8_t *p, unsigned field, unsigned wire)
{
    return put_varint(p, (uint64_t)field << 3 | wire);
}

static uint8_t *put_le(uint8_t *p, uint64_t v, int nbytes)
{
    for (int i = 0; i < nbytes; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* a length-delimited field's key and length; the caller writes the bytes */
static uint8_t *put_len(uint8_t *p, unsigned field, size_t n) { return put_varint(put_key(p, field, WT_LEN), n); }

static uint8_t *put_bytes(uint8_t *p, unsigned field, const void *s, size_t n)
{
    p = put_len(p, field, n);
    memcpy(p, s, n);
    return p + n;
}

/* size of a length-delimited field with a one-byte key (fields 1 to 15) */
static size_t len_field(size_t n) { return 1 + varint_len(n) + n; }

/* Event fields 1 (wall_time) and 2 (step): proto3 scalars, left out when zero
 * (a double by its bits, so -0.0 is written, as protobuf does) */
static uint8_t *put_event_head(uint8_t *p, double wall_time, int64_t step)
{
    uint64_t bits;
    memcpy(&bits, &wall_time, sizeof bits);
    if (bits != 0)
        p = put_le(put_key(p, 1, WT_FIXED64), bits, 8);
    if (step != 0)
        p = put_varint(put_key(p, 2, WT_VARINT), (uint64_t)step); // int64: negative is 10 bytes
    return p;
}

/* ---- records */

/* Frame the payload at w->buf + 12 (n bytes) and append it to the file. */
static int append_record(tb_writer_t *w, size_t n)
{
    uint8_t *b = w->buf;
    put_le(b, n, 8);
    put_le(b + 8, tb_crc_mask(tb_crc32c(0, b, 8)), 4);
    put_le(b + 12 + n, tb_crc_mask(tb_crc32c(0, b + 12, n)), 4);
    size_t total = n + TB_FRAME, done = 0;
    while (done < total) {
        ssize_t k = pwrite(w->fd, b + done, total - done, (off_t)(w->size + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : ENOSPC; // a zero-byte write of a regular file: out of space
            // A reader stops at a torn record and waits for the rest, so cut
            // it off: the next record must start where this one did.
            if (done > 0 && ftruncate(w->fd, (off_t)w->size) != 0) {
                w->broken = true;
                snprintf(w->err, sizeof w->err,
                         "%s: write: %s, and cutting off the torn record failed (%s): "
                         "the file ends in a partial record; open a new one",
                         w->path, strerror(e), strerror(errno));
                return -1;
            }
            snprintf(w->err, sizeof w->err, "%s: write of a %zu-byte record: %s (the record was not written)", w->path,
                     total, strerror(e));
            return -1;
        }
        done += (size_t)k;
    }
    w->size += total;
    return 0;
}

static int check_call(tb_writer_t *w, const char *tag)
{
    if (w->broken) // keep the first message: it says what went wrong
        return -1;
    size_t n = tag ? strlen(tag) : 0;
    if (n == 0 || n > TB_TAG_MAX) {
        snprintf(w->err, sizeof w->err, "%s: tag of %zu bytes, expected 1 to %d", w->path, n, TB_TAG_MAX);
        return -1;
    }
    // TensorBoard's protobuf parser refuses a whole event whose string field is not UTF-8
    if (utf8_valid_prefix(tag, n) != n) {
        snprintf(w->err, sizeof w->err, "%s: tag \"%.64s\" is not valid UTF-8", w->path, tag);
        return -1;
    }
    return 0;
}

int tb_scalar(tb_writer_t *w, const char *tag, int64_t step, double wall_time, float value)
{
    if (check_call(w, tag) != 0)
        return -1;
    size_t tag_n = strlen(tag);
    size_t value_n = len_field(tag_n) + 5; // Value{tag = 1, simple_value = 2}
    size_t summary_n = len_field(value_n); // Summary{value = 1}
    uint8_t *p0 = w->buf + 12, *p = p0;
    p = put_event_head(p, wall_time, step);
    p = put_len(p, 5, summary_n);    // Event.summary
    p = put_len(p, 1, value_n);      // Summary.value
    p = put_bytes(p, 1, tag, tag_n); // Value.tag
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    p = put_le(put_key(p, 2, WT_FIXED32), bits, 4); // Value.simple_value (oneof: written even when 0)
    return append_record(w, (size_t)(p - p0));
}

int tb_text(tb_writer_t *w, const char *tag, int64_t step, double wall_time, const char *text)
{
    if (check_call(w, tag) != 0)
        return -1;
    size_t text_n = text ? strlen(text) : 0;
    if (text_n > TB_TEXT_MAX) {
        snprintf(w->err, sizeof w->err, "%s: text of %zu bytes for \"%.64s\", expected at most %d", w->path, text_n,
                 tag, TB_TEXT_MAX);
        return -1;
    }
    size_t tag_n = strlen(tag);
    // TensorProto{dtype = 1: DT_STRING (7), tensor_shape = 2: {dim = 2: {size = 1: 1}}, string_val = 8}
    static const uint8_t tensor_head[] = {0x08, 0x07, 0x12, 0x04, 0x12, 0x02, 0x08, 0x01};
    // SummaryMetadata{plugin_data = 1: {plugin_name = 1: "text"}}; the plugin's
    // content, TextPluginData{version: 0}, serializes to nothing and is left out
    static const uint8_t metadata[] = {0x0a, 0x06, 0x0a, 0x04, 't', 'e', 'x', 't'};
    size_t tensor_n = sizeof tensor_head + len_field(text_n);
    size_t value_n = len_field(tag_n) + len_field(tensor_n) + len_field(sizeof metadata);
    size_t summary_n = len_field(value_n);
    uint8_t *p0 = w->buf + 12, *p = p0;
    p = put_event_head(p, wall_time, step);
    p = put_len(p, 5, summary_n);    // Event.summary
    p = put_len(p, 1, value_n);      // Summary.value
    p = put_bytes(p, 1, tag, tag_n); // Value.tag
    p = put_len(p, 8, tensor_n);     // Value.tensor
    memcpy(p, tensor_head, sizeof tensor_head);
    p += sizeof tensor_head;
    p = put_bytes(p, 8, text, text_n);              // TensorProto.string_val
    p = put_bytes(p, 9, metadata, sizeof metadata); // Value.metadata
    return append_record(w, (size_t)(p - p0));
}

int tb_flush(tb_writer_t *w)
{
    if (fsync(w->fd) != 0) {
        snprintf(w->err, sizeof w->err, "%s: fsync: %s", w->path, strerror(errno));
        return -1;
    }
    return 0;
}

const char *tb_error(const tb_writer_t *w) { return w ? w->err : "no writer"; }

const char *tb_path(const tb_writer_t *w) { return w->path; }

void tb_close(tb_writer_t **wp)
{
    if (!wp || !*wp)
        return;
    tb_writer_t *w = *wp;
    if (w->fd >= 0) {
        (void)fsync(w->fd);
        close(w->fd);
    }
    free(w->buf);
    free(w);
    *wp = NULL;
}

tb_writer_t *tb_open(const char *dir, const char *suffix, char *err, size_t errlen)
{
    if (suffix && strchr(suffix, '/')) {
        snprintf(err, errlen, "tensorboard file suffix \"%s\" contains '/', expected a plain name", suffix);
        return NULL;
    }
    size_t dlen = strlen(dir);
    if (dlen == 0 || dlen > 4095) { // fs_mkdirs' limit, said here in the caller's words
        snprintf(err, errlen, "tensorboard directory of %zu bytes, expected 1 to 4095", dlen);
        return NULL;
    }
    if (fs_mkdirs(dir, 0777) != 0) {
        if (errno == ENOTDIR)
            snprintf(err, errlen, "%s: not a directory", dir);
        else
            snprintf(err, errlen, "%s: mkdir: %s", dir, strerror(errno));
        return NULL;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++) // a host name is one path component
        if (*c == '/')
            *c = '_';
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);

    tb_writer_t *w = calloc(1, sizeof *w);
    if (!w || !(w->buf = malloc(TB_FRAME + TB_PAYLOAD_MAX))) {
        snprintf(err, errlen, "%s: out of memory for the tensorboard writer", dir);
        free(w);
        return NULL;
    }
    w->fd = -1;
    int n = snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%s.%ld%s%s", dir, (long long)now.tv_sec,
                     host, (long)getpid(), suffix && *suffix ? "." : "", suffix ? suffix : "");
    if (n < 0 || (size_t)n >= sizeof w->path) {
        snprintf(err, errlen, "%s: tensorboard file path too long", dir);
        tb_close(&w);
        return NULL;
    }
    // O_EXCL: a name taken by another writer is an error, never a truncation
    // of its records. The file is written in place, not renamed into place:
    // TensorBoard reads it while it grows, and every record is whole on disk
    // before the next is written (append_record).
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        snprintf(err, errlen, "%s: create: %s", w->path, strerror(errno));
        tb_close(&w);
        return NULL;
    }
    // Event{wall_time = 1, file_version = 3: "brain.Event:2", source_metadata = 10: {writer = 1}}
    static const char version[] = "brain.Event:2";
    uint8_t *p0 = w->buf + 12, *p = p0;
    p = put_event_head(p, (double)now.tv_sec + 1e-9 * (double)now.tv_nsec, 0);
    p = put_bytes(p, 3, version, sizeof version - 1);
    p = put_len(p, 10, len_field(sizeof TB_WRITER_NAME - 1));
    p = put_bytes(p, 1, TB_WRITER_NAME, sizeof TB_WRITER_NAME - 1);
    if (append_record(w, (size_t)(p - p0)) != 0 || tb_flush(w) != 0) {
        snprintf(err, errlen, "%s", w->err);
        unlink(w->path);
        tb_close(&w);
        return NULL;
    }
    // the new name itself must survive a crash, or the fsynced records are lost with it
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        snprintf(err, errlen, "%s: fsync of the directory: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        unlink(w->path);
        tb_close(&w);
        return NULL;
    }
    close(dfd);
    return w;
}
