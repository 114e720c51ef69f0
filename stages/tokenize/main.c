/* bagel-tokenize — Qwen2 byte-level BPE ids for every text segment.
 *
 *   bagel-tokenize --tokenizer tokenizer.json [--in EP] [--out EP]
 *       samples -> samples: each text segment gains "tokens", an i32 tensor
 *       of its text's ids (no begin/end tokens: the trainer's packer adds
 *       BAGEL's layout). A sample with a text segment that is missing, empty
 *       or not UTF-8, or over --max-tokens, becomes a reject; rejects and
 *       ends pass untouched; one record out for each record in.
 *   bagel-tokenize --text [--json] [FILE]...    lines of text -> lines of ids
 *   bagel-tokenize --decode [--json] [FILE]...  lines of ids -> lines of text */
#include "../common/log.h"
#include "../common/stage.h"
#include "../common/transform.h"
#include "tok.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char help[] =
    "usage: bagel-tokenize --tokenizer PATH [options]\n"
    "Add \"tokens\" (i32 ids, exactly as HuggingFace tokenizers encodes) to every text segment.\n"
    "      --tokenizer PATH    a HuggingFace tokenizer.json of the Qwen2 family (default $BAGEL_TOKENIZER)\n"
    "      --max-tokens N      most tokens per sample (default 32768); more: a reject\n"
    "      --truncate          cut a sample at --max-tokens instead (later text segments get no ids)\n"
    "      --text [FILE]...    read lines of text, print their ids space-separated, one line each\n"
    "      --decode [FILE]...  read lines of ids, print their text\n"
    "      --json              with --text/--decode: a text line is a JSON string (text may hold newlines)\n";

enum { OPT_TOKENIZER = 1, OPT_MAX_TOKENS, OPT_TRUNCATE, OPT_TEXT, OPT_DECODE, OPT_JSON };

typedef struct {
    unsigned long long max_tokens;
    bool truncate;
    tok_ids_t ids;  // the sample's ids, segment after segment
    size_t *starts; // (nseg + 1) where each segment's ids start in ids; -1: not text
    size_t cap;
    unsigned long long tokens, truncated;
} job_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Tokenize every text segment of a sample in place. 0; 1 when the sample is
 * to be rejected (why says so); -1 fatal (out of memory). */
static int tokenize_sample(tok_t *tk, job_t *j, rec_t *r, char *why)
{
    msgpack_object *segs = rec_map_getw(&r->root, "segments");
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(why, REC_ERR_LEN, "segments: missing (an array of segments expected)");
        return 1;
    }
    uint32_t nseg = segs->via.array.size;
    if (nseg + 1 > j->cap) {
        size_t *p = realloc(j->starts, (nseg + 1) * sizeof *p);
        if (!p)
            return -1;
        j->starts = p, j->cap = nseg + 1;
    }
    j->ids.n = 0;
    char err[TOK_ERR_LEN];
    for (uint32_t i = 0; i < nseg; i++) {
        const msgpack_object *seg = &segs->via.array.ptr[i];
        j->starts[i] = j->ids.n;
        if (seg->type != MSGPACK_OBJECT_MAP || !rec_obj_is_str(rec_map_get(seg, "kind"), "text"))
            continue;
        const msgpack_object *text = rec_map_get(seg, "text");
        if (!text || text->type != MSGPACK_OBJECT_STR) {
            snprintf(why, REC_ERR_LEN, "segments[%u].text: missing (a string expected)", i);
            return 1;
        }
        if (text->via.str.size == 0) {
            snprintf(why, REC_ERR_LEN, "segments[%u].text: empty (text expected)", i);
            return 1;
        }
        if (tok_encode(tk, text->via.str.ptr, text->via.str.size, &j->ids, err)) {
            snprintf(why, REC_ERR_LEN, "segments[%u].text: %s", i, err);
            return strncmp(err, "out of memory", 13) == 0 ? -1 : 1;
        }
    }
    j->starts[nseg] = j->ids.n;
    size_t total = j->ids.n, keep = total;
    if (total > j->max_tokens) {
        if (!j->truncate) {
            snprintf(why, REC_ERR_LEN, "segments: %zu tokens, over the limit of %llu (--max-tokens; or --truncate)",
                     total, j->max_tokens);
            return 1;
        }
        keep = (size_t)j->max_tokens;
        j->truncated++;
        if (rec_set(r, &r->root, "tokens_truncated", rec_int((int64_t)(total - keep))))
            return -1;
        // rec_set may have moved the root's entries: find segments again
        segs = rec_map_getw(&r->root, "segments");
    }
    for (uint32_t i = 0; i < nseg; i++) {
        msgpack_object *seg = &segs->via.array.ptr[i];
        if (seg->type != MSGPACK_OBJECT_MAP || !rec_obj_is_str(rec_map_get(seg, "kind"), "text"))
            continue;
        size_t a = j->starts[i] < keep ? j->starts[i] : keep, b = j->starts[i + 1] < keep ? j->starts[i + 1] : keep;
        rec_tensor_t t = {.dtype = REC_I32,
                          .ndim = 1,
                          .shape = {(int64_t)(b - a)},
                          .data = j->ids.ids + a,
                          .nbytes = 4 * (b - a)}; // little-endian hosts only, as the wire
        msgpack_object o;
        if (rec_tensor_obj(r, &t, true, &o, err) || rec_set(r, seg, "tokens", o))
            return -1;
    }
    j->tokens += keep;
    return 0;
}

typedef struct {
    tok_t *tk;
    job_t *j;
} one_t;

static int tokenize_one(void *arg, rec_t *r, char *why)
{
    one_t *o = arg;
    return tokenize_sample(o->tk, o->j, r, why);
}

static int run_records(stage_t *st, tok_t *tk, job_t *j)
{
    stage_counts_t n;
    one_t o = {tk, j};
    int status = stage_transform(st, tokenize_one, &o, &n);
    log_info("samples=%llu rejects=%llu tokens=%llu truncated=%llu", (unsigned long long)n.samples,
             (unsigned long long)n.rejects, j->tokens, j->truncated);
    return status;
}

/* One line of --text or --decode input: the text it stands for. */
static int line_text(bool json, char *line, size_t len, const char **s, size_t *n, json_t **keep, char *err)
{
    if (!json) {
        *s = line, *n = len;
        return 0;
    }
    json_error_t je;
    *keep = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!*keep || !json_is_string(*keep)) {
        snprintf(err, TOK_ERR_LEN, "%s", *keep ? "a JSON string expected" : je.text);
        json_decref(*keep);
        *keep = NULL;
        return -1;
    }
    *s = json_string_value(*keep), *n = json_string_length(*keep);
    return 0;
}

/* Plain modes: text lines -> id lines (--text) or back (--decode). A bad
 * line prints an error naming it and an empty line, so lines stay aligned. */
static int run_lines(stage_t *st, tok_t *tk, bool decode, bool json)
{
    static const char *const dash[] = {"-"};
    const char *const *files = st->ninputs ? st->inputs : dash;
    int nfiles = st->ninputs ? st->ninputs : 1, status = EXIT_OK;
    char *line = NULL, err[TOK_ERR_LEN], num[16];
    size_t cap = 0;
    tok_ids_t ids = {0};
    tok_buf_t out = {0};
    unsigned long long nlines = 0, ntok = 0, nbytes = 0, bad = 0;
    double t_enc = 0;
    for (int f = 0; f < nfiles && status != EXIT_FATAL; f++) {
        bool std = strcmp(files[f], "-") == 0;
        FILE *in = std ? stdin : fopen(files[f], "r");
        if (!in) {
            log_error("%s: %s", files[f], strerror(errno));
            status = EXIT_FATAL;
            break;
        }
        ssize_t len;
        while ((len = getline(&line, &cap, in)) >= 0) {
            nlines++;
            if (len > 0 && line[len - 1] == '\n')
                line[--len] = 0;
            const char *s;
            size_t n;
            json_t *keep = NULL;
            out.n = 0, ids.n = 0;
            int rc = decode ? 0 : line_text(json, line, (size_t)len, &s, &n, &keep, err);
            if (!rc && !decode) {
                double t0 = now();
                rc = tok_encode(tk, s, n, &ids, err);
                t_enc += now() - t0;
                nbytes += n;
                ntok += ids.n;
                for (size_t i = 0; !rc && i < ids.n; i++) {
                    int k = snprintf(num, sizeof num, i ? " %d" : "%d", ids.ids[i]);
                    rc = tok_buf_put(&out, num, (size_t)k);
                }
            } else if (!rc) {
                char *p = line, *e;
                while (!rc && *p) {
                    errno = 0;
                    long v = strtol(p, &e, 10);
                    if (e == p || errno || v < 0 || v > INT32_MAX) {
                        snprintf(err, TOK_ERR_LEN, "column %zu: an id expected", (size_t)(p - line) + 1);
                        rc = -1;
                        break;
                    }
                    int32_t id = (int32_t)v;
                    rc = tok_ids_push(&ids, id);
                    p = e + strspn(e, " \t\r");
                }
                if (!rc)
                    rc = tok_decode(tk, ids.ids, ids.n, &out, err);
                if (!rc && json) {
                    json_t *js = json_stringn_nocheck(out.p ? out.p : "", out.n);
                    char *d = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
                    out.n = 0;
                    rc = d ? tok_buf_put(&out, d, strlen(d)) : (snprintf(err, TOK_ERR_LEN, "out of memory"), -1);
                    free(d);
                    json_decref(js);
                }
            }
            json_decref(keep);
            if (rc) {
                log_error("%s:%llu: %s", std ? "stdin" : files[f], nlines, err);
                bad++;
                out.n = 0;
            }
            if ((out.n && fwrite(out.p, 1, out.n, stdout) != out.n) || putchar('\n') == EOF) {
                log_error("stdout: %s", strerror(errno));
                status = EXIT_FATAL;
                break;
            }
        }
        if (!std)
            fclose(in);
    }
    if (fflush(stdout) != 0) {
        log_error("stdout: %s", strerror(errno));
        status = EXIT_FATAL;
    }
    if (!decode)
        log_info("lines=%llu bytes=%llu tokens=%llu encode_s=%.3f tokens_per_s=%.0f bad=%llu", nlines, nbytes, ntok,
                 t_enc, t_enc > 0 ? (double)ntok / t_enc : 0.0, bad);
    free(line);
    tok_ids_free(&ids);
    tok_buf_free(&out);
    return status == EXIT_OK && bad ? EXIT_CHECK : status;
}

int main(int argc, char **argv)
{
    stage_t st;
    stage_init(&st, "bagel-tokenize");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"truncate", no_argument, 0, OPT_TRUNCATE},
        {"text", no_argument, 0, OPT_TEXT},
        {"decode", no_argument, 0, OPT_DECODE},
        {"json", no_argument, 0, OPT_JSON},
        {0, 0, 0, 0},
    };
    job_t job = {.max_tokens = 32768};
    const char *path = getenv("BAGEL_TOKENIZER");
    bool text = false, decode = false, json = false;
    int c;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&st, c, optarg, help))
            continue;
        switch (c) {
        case OPT_TOKENIZER: path = optarg; break;
        case OPT_MAX_TOKENS:
            if (stage_parse_size("max-tokens", optarg, &job.max_tokens))
                return EXIT_USAGE;
            if (job.max_tokens == 0) {
                log_error("--max-tokens: 0: a positive number expected");
                return EXIT_USAGE;
            }
            break;
        case OPT_TRUNCATE: job.truncate = true; break;
        case OPT_TEXT: text = true; break;
        case OPT_DECODE: decode = true; break;
        case OPT_JSON: json = true; break;
        default: return EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc; i++)
        stage_option(&st, OPT_IN, argv[i], help);
    if (!path || !*path) {
        log_error("--tokenizer: missing: name a HuggingFace tokenizer.json (scripts/fetch-tokenizer.sh fetches one)");
        return EXIT_USAGE;
    }
    if (text && decode) {
        log_error("--text and --decode: choose one");
        return EXIT_USAGE;
    }
    char err[TOK_ERR_LEN];
    tok_load_info_t li;
    tok_t *tk = tok_load_cached(path, NULL, &li, err);
    if (!tk) {
        log_error("tokenizer: %s", err);
        return EXIT_FATAL;
    }
    if (li.cache_note[0])
        log_info("tokenizer cache: %s", li.cache_note);
    log_info("tokenizer=%s ids=%d load_ms=%.0f from=%s", path, tok_n_ids(tk), li.ms,
             li.from_cache ? li.cache : "json");
    int status = text || decode ? run_lines(&st, tk, decode, json) : run_records(&st, tk, &job);
    tok_destroy(&tk);
    tok_ids_free(&job.ids);
    free(job.starts);
    return stage_exit(status);
}
