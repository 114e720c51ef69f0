/* test_tb.c — the TensorBoard event writer (stages/train/tb.c) against an
 * independent reader:
 *   - CRC32C against RFC 3720's vectors and a bitwise implementation here;
 *   - the golden file that torch.utils.tensorboard's SummaryWriter wrote with
 *     the same events (tests/unit/data/tb/, make_tb_golden.py): every scalar
 *     and text record equal byte for byte, framing and CRCs included; the
 *     version record equal but for its wall_time (time.time() there) and its
 *     source_metadata.writer (the producer's name);
 *   - our file decoded back by a small TFRecord + protobuf decoder here, every
 *     CRC checked, every field equal to what was written;
 *   - the file name, and errors: bad tags and suffixes, a taken name, a path
 *     that is not a directory, and a full disk (RLIMIT_FSIZE) that leaves the
 *     file a sequence of whole records, named in the message.
 * Run from the repository root (tests/run.sh does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/tmpdir.h"
#include "../../stages/train/tb.h"

#define GOLDEN "tests/unit/data/tb/golden.tfevents"

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    return test_tmpdir_make(tmpdir, sizeof tmpdir, "tb");
}

static int teardown_tmp(void **state)
{
    (void)state;
    return test_tmpdir_remove(tmpdir);
}

/* ---- the events of make_tb_golden.py (SCALARS, then TEXTS), in order.
 * Values are given as doubles and rounded to float as Python's protobuf
 * does; text tags carry the "/text_summary" that add_text appends. */

typedef struct {
    const char *tag; // NULL: the long tag
    int64_t step;
    double wall_time;
    double value;
    const char *text; // non-NULL: a text event
} event_t;

static const event_t EVENTS[] = {
    {"train/loss", 0, 1700000000.0, 2.5},
    {"train/loss", 1, 1700000001.25, 2.25},
    {"train/lr", 1, 1700000001.25, 3e-4},
    {"train/loss", 1000000, 1700000002.5, 0.0},
    {"train/grad_norm", INT64_C(1) << 40, 1700000003.0, -1.5},
    {"eval/ppl", -3, 1700000004.0, INFINITY},
    {"eval/nan", 5, 1700000005.0, NAN},
    {"tiny", 6, 1700000006.0, 1e-40},
    {"ünïcode/損失", 7, 1700000007.0, 123456.789},
    {NULL, 8, 0.0, 1.0},
    {"neg_zero", 9, 1700000009.123456, -0.0},
    {"notes/text_summary", 3, 1700000010.5, 0, "**hello** — ünï\nsecond line"},
    {"empty/text_summary", 4, 1700000011.0, 0, ""},
};
#define N_EVENTS (sizeof EVENTS / sizeof EVENTS[0])

static const char *event_tag(const event_t *e)
{
    static char long_tag[201];
    if (e->tag)
        return e->tag;
    memcpy(long_tag, "long/", 5);
    memset(long_tag + 5, 'x', 195);
    long_tag[200] = '\0';
    return long_tag;
}

static int write_events(tb_writer_t *w)
{
    for (size_t i = 0; i < N_EVENTS; i++) {
        const event_t *e = &EVENTS[i];
        int rc = e->text ? tb_text(w, event_tag(e), e->step, e->wall_time, e->text)
                         : tb_scalar(w, event_tag(e), e->step, e->wall_time, (float)e->value);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- an independent reader: CRC32C bit by bit, TFRecord framing, protobuf */

static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

static uint32_t masked(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

typedef struct {
    const uint8_t *p; // the whole framed record
    size_t n;         // its framed length
    const uint8_t *data;
    size_t data_n;
} record_t;

typedef struct {
    uint8_t *buf;
    size_t n;
    record_t rec[64];
    size_t n_rec;
} file_t;

/* Read a whole file and split it into records, checking both CRCs of each
 * and that nothing is left over. */
static void read_records(const char *path, file_t *f)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc((size_t)n + 1);
    assert_int_equal(fread(f->buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    f->n = (size_t)n;
    f->n_rec = 0;
    size_t off = 0;
    while (off < f->n) {
        assert_true(f->n - off >= 16); // a whole frame
        const uint8_t *p = f->buf + off;
        uint64_t len = le(p, 8);
        assert_int_equal(le(p + 8, 4), masked(crc32c_bitwise(p, 8)));
        assert_true(len <= f->n - off - 16);
        assert_int_equal(le(p + 12 + len, 4), masked(crc32c_bitwise(p + 12, len)));
        assert_true(f->n_rec < 64);
        f->rec[f->n_rec++] = (record_t){p, 16 + len, p + 12, len};
        off += 16 + len;
    }
}

/* one protobuf field; a length-delimited value is (p, n), others v */
typedef struct {
    unsigned field, wire;
    uint64_t v;
    const uint8_t *p;
    size_t n;
} field_t;

static uint64_t get_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        assert_true(*p < end);
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    fail_msg("varint longer than 10 bytes");
    return 0;
}

/* Decode the fields of message (p, n) into out[]; returns how many. */
static size_t decode(const uint8_t *p, size_t n, field_t *out, size_t max)
{
    const uint8_t *end = p + n;
    size_t k = 0;
    while (p < end) {
        assert_true(k < max);
        field_t *f = &out[k++];
        uint64_t key = get_varint(&p, end);
        f->field = (unsigned)(key >> 3), f->wire = (unsigned)(key & 7);
        switch (f->wire) {
        case 0: f->v = get_varint(&p, end); break;
        case 1:
            assert_true(end - p >= 8);
            f->v = le(p, 8), p += 8;
            break;
        case 5:
            assert_true(end - p >= 4);
            f->v = le(p, 4), p += 4;
            break;
        case 2:
            f->n = get_varint(&p, end);
            assert_true(f->n <= (size_t)(end - p));
            f->p = p, p += f->n;
            break;
        default: fail_msg("wire type %u", f->wire);
        }
    }
    return k;
}

static double as_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static void assert_bytes(const field_t *f, unsigned field, const void *s, size_t n)
{
    assert_int_equal(f->field, field);
    assert_int_equal(f->wire, 2);
    assert_int_equal(f->n, n);
    assert_memory_equal(f->p, s, n);
}

/* The version record: Event{wall_time, file_version, source_metadata{writer}}.
 * Returns its wall_time; *writer gets the writer's name. */
static double check_version_record(const record_t *r, char *writer, size_t writer_n)
{
    field_t f[4], sm[2];
    assert_int_equal(decode(r->data, r->data_n, f, 4), 3);
    assert_int_equal(f[0].field, 1);
    assert_int_equal(f[0].wire, 1);
    assert_bytes(&f[1], 3, "brain.Event:2", 13);
    assert_int_equal(f[2].field, 10);
    assert_int_equal(decode(f[2].p, f[2].n, sm, 2), 1);
    assert_int_equal(sm[0].field, 1);
    assert_true(sm[0].n < writer_n);
    memcpy(writer, sm[0].p, sm[0].n);
    writer[sm[0].n] = '\0';
    return as_double(f[0].v);
}

/* Decode event record r and compare it field by field with e. */
static void check_event_record(const record_t *r, const event_t *e)
{
    field_t ev[4], sum[2], val[4], ten[4], md[2], pd[2];
    size_t n = decode(r->data, r->data_n, ev, 4), i = 0;
    uint64_t wall_bits;
    memcpy(&wall_bits, &e->wall_time, sizeof wall_bits);
    if (wall_bits != 0) { // proto3 leaves zero out
        assert_int_equal(ev[i].field, 1);
        assert_int_equal(ev[i].v, wall_bits);
        i++;
    }
    if (e->step != 0) {
        assert_int_equal(ev[i].field, 2);
        assert_int_equal(ev[i].wire, 0);
        assert_int_equal((int64_t)ev[i].v, e->step);
        i++;
    }
    assert_int_equal(n, i + 1);
    assert_int_equal(ev[i].field, 5); // summary
    assert_int_equal(decode(ev[i].p, ev[i].n, sum, 2), 1);
    assert_int_equal(sum[0].field, 1); // one value
    const char *tag = event_tag(e);
    if (!e->text) {
        assert_int_equal(decode(sum[0].p, sum[0].n, val, 4), 2);
        assert_bytes(&val[0], 1, tag, strlen(tag));
        assert_int_equal(val[1].field, 2);
        assert_int_equal(val[1].wire, 5);
        float want = (float)e->value;
        uint32_t want_bits;
        memcpy(&want_bits, &want, 4);
        assert_int_equal(val[1].v, want_bits);
        return;
    }
    assert_int_equal(decode(sum[0].p, sum[0].n, val, 4), 3);
    assert_bytes(&val[0], 1, tag, strlen(tag));
    assert_int_equal(val[1].field, 8); // tensor
    assert_int_equal(decode(val[1].p, val[1].n, ten, 4), 3);
    assert_int_equal(ten[0].field, 1);
    assert_int_equal(ten[0].v, 7);                   // DT_STRING
    assert_bytes(&ten[1], 2, "\x12\x02\x08\x01", 4); // shape [1]
    assert_bytes(&ten[2], 8, e->text, strlen(e->text));
    assert_int_equal(val[2].field, 9); // metadata
    assert_int_equal(decode(val[2].p, val[2].n, md, 2), 1);
    assert_int_equal(decode(md[0].p, md[0].n, pd, 2), 1);
    assert_bytes(&pd[0], 1, "text", 4);
}

/* the one file in dir whose name starts with prefix */
static void find_file(const char *dir, const char *prefix, char *out, size_t out_n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int found = 0;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(out, out_n, "%s/%s", dir, de->d_name);
            found++;
        }
    closedir(d);
    assert_int_equal(found, 1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- tests */

static void test_crc32c(void **state)
{
    (void)state;
    uint8_t buf[32];
    memset(buf, 0, 32); // RFC 3720 B.4
    assert_int_equal(tb_crc32c(0, buf, 32), 0x8a9136aa);
    memset(buf, 0xff, 32);
    assert_int_equal(tb_crc32c(0, buf, 32), 0x62a8ab43);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(tb_crc32c(0, buf, 32), 0x46dd794e);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(tb_crc32c(0, buf, 32), 0x113fdb5c);
    assert_int_equal(tb_crc32c(0, "123456789", 9), 0xe3069283);
    assert_int_equal(crc32c_bitwise((const uint8_t *)"123456789", 9), 0xe3069283);
    assert_int_equal(tb_crc32c(0, "", 0), 0);
    // continuing a CRC over a split buffer, and the table against the bitwise form
    uint8_t r[1000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof r; i++)
        r[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    assert_int_equal(tb_crc32c(tb_crc32c(0, r, 333), r + 333, 667), crc32c_bitwise(r, 1000));
    assert_int_equal(tb_crc_mask(0x12345678), masked(0x12345678));
}

static void test_golden(void **state)
{
    (void)state;
    char dir[300], err[512], path[600], writer[128];
    snprintf(dir, sizeof dir, "%s/golden/run", tmpdir); // parents are created
    double t0 = now_s();
    tb_writer_t *w = tb_open(dir, "golden", err, sizeof err);
    assert_non_null(w);
    double t1 = now_s();
    assert_int_equal(write_events(w), 0);
    assert_int_equal(tb_flush(w), 0);
    tb_close(&w);
    assert_null(w);

    // the name: events.out.tfevents.<10 digits>.<host>.<pid>.golden
    find_file(dir, "events.out.tfevents.", path, sizeof path);
    char host[256] = "", want_tail[400];
    gethostname(host, sizeof host);
    snprintf(want_tail, sizeof want_tail, ".%s.%ld.golden", host, (long)getpid());
    const char *name = strrchr(path, '/') + 1, *digits = name + strlen("events.out.tfevents.");
    assert_int_equal(strspn(digits, "0123456789"), 10);
    long long secs = atoll(digits);
    assert_true(secs >= (long long)t0 && secs <= (long long)t1);
    assert_string_equal(digits + 10, want_tail);

    file_t ours, gold;
    read_records(path, &ours);
    read_records(GOLDEN, &gold);
    assert_int_equal(ours.n_rec, 1 + N_EVENTS);
    assert_int_equal(gold.n_rec, 1 + N_EVENTS);

    // the version record: the reference's wall_time is the time it ran and its
    // writer names tensorboard's module; all else equal
    double wall = check_version_record(&ours.rec[0], writer, sizeof writer);
    assert_true(wall >= t0 - 1e-3 && wall <= t1 + 1e-3);
    assert_string_equal(writer, "bagelpipe");
    check_version_record(&gold.rec[0], writer, sizeof writer);
    assert_string_equal(writer, "tensorboard.summary.writer.event_file_writer");
    assert_int_equal(ours.rec[0].data[0], gold.rec[0].data[0]);              // wall_time's key; its 8 bytes differ
    assert_memory_equal(ours.rec[0].data + 9, gold.rec[0].data + 9, 15 + 1); // file_version, key 10

    // every event record: the same bytes, frame and CRCs included; and decoded
    for (size_t i = 0; i < N_EVENTS; i++) {
        const record_t *a = &ours.rec[1 + i], *b = &gold.rec[1 + i];
        if (a->n != b->n || memcmp(a->p, b->p, a->n) != 0)
            fail_msg("record %zu (%s): %zu bytes, the reference %zu, or different bytes", i + 1, event_tag(&EVENTS[i]),
                     a->n, b->n);
        check_event_record(a, &EVENTS[i]);
        check_event_record(b, &EVENTS[i]);
    }
    free(ours.buf);
    free(gold.buf);
}

static void test_errors(void **state)
{
    (void)state;
    char dir[300], err[512], path[600];
    snprintf(dir, sizeof dir, "%s/errors", tmpdir);
    tb_writer_t *w = tb_open(dir, "a", err, sizeof err);
    assert_non_null(w);
    assert_int_equal(tb_scalar(w, "", 1, 1.0, 1.0f), -1);
    assert_non_null(strstr(tb_error(w), "tag of 0 bytes, expected 1 to 1024"));
    assert_non_null(strstr(tb_error(w), tb_path(w)));
    assert_int_equal(tb_scalar(w, "bad\xff", 1, 1.0, 1.0f), -1);
    assert_non_null(strstr(tb_error(w), "is not valid UTF-8"));
    char *big = malloc(TB_TEXT_MAX + 2);
    memset(big, 'a', TB_TEXT_MAX + 1);
    big[TB_TEXT_MAX + 1] = '\0';
    assert_int_equal(tb_text(w, "t", 1, 1.0, big), -1);
    assert_non_null(strstr(tb_error(w), "text of 1048577 bytes"));
    big[TB_TEXT_MAX] = '\0'; // the largest text fits
    assert_int_equal(tb_text(w, "t", 1, 1.0, big), 0);
    free(big);
    tb_close(&w);

    assert_null(tb_open(dir, "x/y", err, sizeof err));
    assert_non_null(strstr(err, "contains '/'"));

    // a file where the directory should be
    snprintf(path, sizeof path, "%s/plain", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/plain/run", tmpdir);
    assert_null(tb_open(dir, NULL, err, sizeof err));
    assert_non_null(strstr(err, path));

    // a taken name is an error, not an overwrite: take this second's and the next two
    snprintf(dir, sizeof dir, "%s/taken", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    char host[256] = "";
    gethostname(host, sizeof host);
    long long t = (long long)time(NULL);
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/events.out.tfevents.%010lld.%s.%ld.s", dir, t + k, host, (long)getpid());
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("someone else's", f);
        fclose(f);
    }
    assert_null(tb_open(dir, "s", err, sizeof err));
    assert_non_null(strstr(err, "File exists"));
    assert_non_null(strstr(err, dir));
}

/* A full disk, made with RLIMIT_FSIZE in a child (the limit would also bind
 * the test's own log): writes fail with EFBIG part-way through a record;
 * the message names the file, the torn record is cut off, and once space
 * returns the writer goes on. */
static void test_disk_full(void **state)
{
    (void)state;
    char dir[300], path[600];
    snprintf(dir, sizeof dir, "%s/full", tmpdir);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        char err[512];
        tb_writer_t *w = tb_open(dir, "full", err, sizeof err);
        if (!w)
            _exit(10);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl;
        getrlimit(RLIMIT_FSIZE, &rl);
        struct rlimit small = {200, rl.rlim_max};
        if (setrlimit(RLIMIT_FSIZE, &small) != 0)
            _exit(11);
        int ok = 0;
        while (ok < 100 && tb_scalar(w, "train/loss", ok + 1, 1700000000.0, 1.0f) == 0)
            ok++;
        if (ok == 100) // never failed
            _exit(12);
        // the file as the failure left it: its size, then the message
        struct stat st;
        const char *e = tb_error(w);
        if (stat(tb_path(w), &st) != 0 || write(pfd[1], &st.st_size, sizeof st.st_size) < 0 ||
            write(pfd[1], e, strlen(e) + 1) < 0)
            _exit(13);
        setrlimit(RLIMIT_FSIZE, &rl); // space again
        if (tb_scalar(w, "train/loss", 1000, 1700000001.0, 2.0f) != 0 || tb_flush(w) != 0)
            _exit(14);
        tb_close(&w);
        _exit(0);
    }
    close(pfd[1]);
    off_t size_after_failure = -1;
    char msg[512] = "";
    assert_int_equal(read(pfd[0], &size_after_failure, sizeof size_after_failure), sizeof size_after_failure);
    ssize_t n = read(pfd[0], msg, sizeof msg - 1);
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(n > 0);
    find_file(dir, "events.out.tfevents.", path, sizeof path);
    assert_non_null(strstr(msg, path));
    assert_non_null(strstr(msg, "File too large"));
    assert_non_null(strstr(msg, "the record was not written"));

    // whole records only (read_records checks), and the last one is the step after the failure
    file_t f;
    read_records(path, &f);
    assert_true(f.n_rec >= 3);
    event_t last = {"train/loss", 1000, 1700000001.0, 2.0};
    check_event_record(&f.rec[f.n_rec - 1], &last);
    event_t before = {"train/loss", (int64_t)f.n_rec - 2, 1700000000.0, 1.0};
    check_event_record(&f.rec[f.n_rec - 2], &before);
    // right after the failure the file ended with the last whole record: the
    // torn one was cut off, not left for the reader to wait on
    assert_int_equal(size_after_failure, (off_t)(f.n - f.rec[f.n_rec - 1].n));
    assert_true(size_after_failure > 0);
    free(f.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
