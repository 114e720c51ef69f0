/* bagel-cat — look into a record stream, make one by hand, check one.
 *
 *   bagel-cat [--in EP]...             records -> JSON lines on stdout
 *   bagel-cat --encode [FILE]...       JSON lines -> records on --out
 *   bagel-cat --raw --in EP --out EP   records -> records (a relay)
 *   bagel-cat --count | --check        summaries; --check sets the exit code */
#include "../../ipc/curve.h"
#include "../common/log.h"
#include "../common/stage.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: bagel-cat [options] [INPUT]...\n"
    "Show records as JSON lines, write JSON lines back as records, relay, count or check a stream.\n"
    "Inputs may also be given as arguments; they are endpoints, or JSON files with --encode.\n"
    "      --full              show tensor data as numbers (default: dtype, shape, bytes, checksum)\n"
    "      --encode            read JSON lines (one record a line) and write records to --out\n"
    "      --raw               write the records themselves to --out (relay, file <-> socket)\n"
    "      --head N            stop after N records\n"
    "      --count             print counts per record type and per (source, epoch) as JSON\n"
    "      --check             check the stream: every record valid, every stream's count\n"
    "                          matching its end record; exit 0 when so, 1 otherwise\n"
    "      --curve-keygen NAME write a CURVE key pair to NAME.key and NAME.pub\n";

enum { MODE_JSON, MODE_ENCODE, MODE_RAW };

enum { OPT_FULL = 1, OPT_ENCODE, OPT_RAW, OPT_HEAD, OPT_COUNT, OPT_CHECK, OPT_KEYGEN };

typedef struct {
    uint64_t type[REC_TYPE_COUNT];
    uint64_t bad;
} counts_t;

static int write_json(json_t *j, char *err)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s) {
        snprintf(err, REC_ERR_LEN, "out of memory");
        return -1;
    }
    int rc = puts(s) < 0 ? -1 : 0;
    free(s);
    if (rc)
        snprintf(err, REC_ERR_LEN, "stdout: %s", strerror(errno));
    return rc;
}

static json_t *summary(const acct_t *a, const counts_t *c, bool *ok)
{
    json_t *streams = json_array();
    *ok = c->bad == 0;
    for (int i = 0; i < acct_count(a); i++) {
        const acct_entry_t *e = acct_entry(a, i);
        bool complete = acct_entry_complete(e);
        *ok = *ok && complete;
        json_t *s = json_pack("{s:s,s:I,s:I,s:I,s:b}", "source", e->source, "epoch", (json_int_t)e->epoch, "samples",
                              (json_int_t)e->samples, "rejects", (json_int_t)e->rejects, "complete", complete);
        if (e->end_count >= 0)
            json_object_set_new(s, "end_count", json_integer(e->end_count));
        if (e->ends > 1)
            json_object_set_new(s, "end_records", json_integer((json_int_t)e->ends));
        json_array_append_new(streams, s);
    }
    json_t *types = json_object();
    for (int t = 0; t < REC_TYPE_COUNT; t++)
        json_object_set_new(types, rec_type_name((rec_type_t)t), json_integer((json_int_t)c->type[t]));
    return json_pack("{s:o,s:I,s:o}", "types", types, "bad", (json_int_t)c->bad, "streams", streams);
}

/* Before the reader waits: flush. A failed output is reported by the next
 * wr_put or wr_close, which stop the loop. */
static int fail(const char *err)
{
    log_error("%s", err);
    return EXIT_FATAL;
}

static void flush_out(void *w)
{
    char err[REC_ERR_LEN];
    (void)wr_flush(w, err);
}

/* JSON lines in, records out. Returns the number of bad lines, -1 if fatal. */
static long long encode(stage_t *st, wr_t *w, acct_t *acct, counts_t *c, long long head, progress_t *prog, char *err)
{
    static const char *const dash[] = {"-"};
    const char *const *files = st->ninputs ? st->inputs : dash;
    int nfiles = st->ninputs ? st->ninputs : 1;
    long long bad = 0, n = 0;
    char *line = NULL;
    size_t cap = 0;
    for (int f = 0; f < nfiles; f++) {
        bool std = strcmp(files[f], "-") == 0;
        FILE *in = std ? stdin : fopen(files[f], "r");
        if (!in) {
            snprintf(err, REC_ERR_LEN, "%s: %s", files[f], strerror(errno));
            free(line);
            return -1;
        }
        ssize_t len;
        long lineno = 0;
        while ((head < 0 || n < head) && ipc_stop_level() == 0 && (len = getline(&line, &cap, in)) >= 0) {
            lineno++;
            if (len == 0 || line[strspn(line, " \t\r\n")] == 0)
                continue;
            json_error_t je;
            json_t *j = json_loadb(line, (size_t)len, 0, &je);
            rec_t *r = NULL;
            char msg[REC_ERR_LEN];
            if (!j)
                snprintf(msg, sizeof msg, "column %d: %s", je.column, je.text);
            if (!j || json_to_rec(j, &st->so.limits, &r, msg)) {
                log_error("%s:%ld: %s", std ? "stdin" : files[f], lineno, msg);
                c->bad++, bad++;
                json_decref(j);
                continue;
            }
            json_decref(j);
            c->type[r->type]++;
            acct_add(acct, r);
            int rc = wr_put(w, r, err);
            rec_destroy(&r);
            if (rc) {
                free(line);
                if (!std)
                    fclose(in);
                return -1;
            }
            n++;
            progress_update(prog, (uint64_t)n, wr_bytes(w), c->type[REC_REJECT]);
        }
        if (!std)
            fclose(in);
    }
    free(line);
    return bad;
}

int main(int argc, char **argv)
{
    stage_t st;
    stage_init(&st, "bagel-cat");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"full", no_argument, 0, OPT_FULL},
        {"encode", no_argument, 0, OPT_ENCODE},
        {"raw", no_argument, 0, OPT_RAW},
        {"head", required_argument, 0, OPT_HEAD},
        {"count", no_argument, 0, OPT_COUNT},
        {"check", no_argument, 0, OPT_CHECK},
        {"curve-keygen", required_argument, 0, OPT_KEYGEN},
        {0, 0, 0, 0},
    };
    int mode = MODE_JSON, c;
    bool full = false, count = false, check = false;
    long long head = -1;
    char err[REC_ERR_LEN];
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&st, c, optarg, help))
            continue;
        unsigned long long v;
        switch (c) {
        case OPT_FULL: full = true; break;
        case OPT_ENCODE: mode = MODE_ENCODE; break;
        case OPT_RAW: mode = MODE_RAW; break;
        case OPT_COUNT: count = true; break;
        case OPT_CHECK: check = true; break;
        case OPT_HEAD:
            if (stage_parse_size("head", optarg, &v))
                return EXIT_USAGE;
            head = (long long)v;
            break;
        case OPT_KEYGEN:
            if (curve_keygen(optarg, err)) {
                log_error("%s", err);
                return EXIT_FATAL;
            }
            return EXIT_OK;
        }
    }
    for (int i = optind; i < argc; i++)
        stage_option(&st, OPT_IN, argv[i], help);
    if (st.output && mode == MODE_JSON && !count && !check) {
        log_error("--out: JSON goes to stdout; use --raw to write records to an endpoint");
        return EXIT_USAGE;
    }
    // --count and --check print their summary on stdout, so records go
    // nowhere unless --out names a place for them
    bool emit = mode != MODE_JSON ? (!(count || check) || st.output) : !(count || check);

    counts_t cnt = {0};
    wr_t *w = NULL;
    // JSON on stdout is for reading: no progress lines beside it
    progress_t *prog = progress_new(mode == MODE_JSON ? PROGRESS_OFF : st.progress);
    int status = EXIT_OK;
    acct_t *enc_acct = NULL;
    const acct_t *acct = NULL;
    rd_t *rd = NULL;
    if (emit && mode != MODE_JSON && !(w = wr_open(st.output, &st.so, err))) {
        status = fail(err);
        goto done;
    }
    if (mode == MODE_ENCODE) {
        enc_acct = acct_new();
        if (!w && !(w = wr_open("/dev/null", &st.so, err))) {
            status = fail(err);
            goto done;
        }
        long long bad = encode(&st, w, enc_acct, &cnt, head, prog, err);
        if (bad < 0) {
            status = fail(err);
            goto done;
        }
        if (bad && st.strict)
            status = EXIT_CHECK;
        acct = enc_acct;
    } else {
        if (!(rd = rd_open(st.inputs, st.ninputs, &st.so, err))) {
            status = fail(err);
            goto done;
        }
        if (w)
            rd_set_idle(rd, flush_out, w);
        rec_t *r;
        long long n = 0;
        int rc;
        while ((head < 0 || n < head) && (rc = rd_next(rd, &r, err)) != 0) {
            if (rc == -2) {
                log_error("%s", err);
                status = EXIT_FATAL;
                break;
            }
            if (rc == -1 || rc == 2) {
                log_error("%s", err);
                cnt.bad++;
                if (st.strict) {
                    rec_destroy(&r);
                    status = EXIT_CHECK;
                    break;
                }
                if (rc == -1)
                    continue;
            }
            cnt.type[r->type]++;
            n++;
            if (emit) {
                int wrc = 0;
                if (w) {
                    wrc = wr_put(w, r, err);
                } else {
                    json_t *j = rec_to_json(r, full);
                    wrc = j ? write_json(j, err) : (snprintf(err, REC_ERR_LEN, "out of memory"), -1);
                    json_decref(j);
                }
                if (wrc) {
                    log_error("%s", err);
                    rec_destroy(&r);
                    status = EXIT_FATAL;
                    break;
                }
            }
            rec_destroy(&r);
            rd_stats_t s = rd_stats(rd);
            progress_update(prog, s.records, s.bytes, cnt.type[REC_REJECT]);
        }
        acct = rd_acct(rd);
        rd_stats_t s = rd_stats(rd);
        if (s.duplicates)
            log_info("duplicates=%llu (records delivered again after a worker died, dropped)",
                     (unsigned long long)s.duplicates);
    }
    if (status != EXIT_FATAL && (count || check)) {
        bool ok;
        json_t *j = summary(acct, &cnt, &ok);
        if (write_json(j, err)) {
            log_error("%s", err);
            status = EXIT_FATAL;
        }
        json_decref(j);
        if (check && !ok && status == EXIT_OK) {
            for (int i = 0; i < acct_count(acct); i++) {
                const acct_entry_t *e = acct_entry(acct, i);
                if (!acct_entry_complete(e))
                    log_error("check: source %s epoch %lld: %llu samples + %llu rejects, end %s%lld", e->source,
                              (long long)e->epoch, (unsigned long long)e->samples, (unsigned long long)e->rejects,
                              e->ends > 1 ? "records disagree, count " : "count ", (long long)e->end_count);
            }
            if (cnt.bad)
                log_error("check: %llu bad records", (unsigned long long)cnt.bad);
            status = EXIT_CHECK;
        }
    }
    if (fflush(stdout) != 0) {
        log_error("stdout: %s", strerror(errno));
        status = EXIT_FATAL;
    }
done:
    // a failed run leaves no partial output file behind
    if (status == EXIT_FATAL)
        wr_abort(&w);
    else if (w && wr_close(&w, err)) {
        log_error("%s", err);
        status = EXIT_FATAL;
    }
    progress_done(&prog);
    acct_destroy(&enc_acct);
    rd_close(&rd);
    return stage_exit(status);
}
