/* bagel-read — JSONL training data -> sample records (docs/formats.md).
 *
 *   bagel-read [options] FILE|GLOB...      samples, rejects and end records on --out
 *
 * Each line is parsed by parse.c into one sample or one reject with its
 * reason; nothing is dropped silently. After each epoch, one end record per
 * file closes its (source, epoch) stream with the count of samples and
 * rejects this run emitted for it. */
#include "../common/log.h"
#include "../common/stage.h"
#include "lines.h"
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "usage: bagel-read [options] FILE|GLOB...\n"
    "Read JSONL training data in any of seven formats (docs/formats.md) and write one sample record\n"
    "per line, a reject with its reason for each bad line, and an end record per file and epoch.\n"
    "      --format NAME       auto (default), conversations, sequence, t2i, i2t, edit, interleaved, llava\n"
    "      --root DIR          image paths are relative to DIR and may not escape it\n"
    "      --check-images      reject a sample whose image is not a readable regular file\n"
    "      --epochs N          read everything N times (default 1)\n"
    "      --shuffle           a new order each epoch, from --seed (index: 8 bytes a line)\n"
    "      --seed S            shuffle seed (default 0)\n"
    "      --shard I/N         only every N-th line from the I-th (0 <= I < N), for N readers\n"
    "      --skip K            leave out the first K lines this reader would emit (resume)\n"
    "      --limit K           stop after K lines emitted (samples + rejects)\n"
    "      --max-line-bytes B  longer lines are rejects (default 16M)\n"
    "Without FILE, reads stdin (no --shuffle, one epoch). --strict stops at the first reject.\n";

enum {
    OPT_FORMAT = 1,
    OPT_ROOT,
    OPT_CHECK_IMAGES,
    OPT_EPOCHS,
    OPT_SHUFFLE,
    OPT_SEED,
    OPT_SHARD,
    OPT_SKIP,
    OPT_LIMIT,
    OPT_MAX_LINE,
};

typedef struct {
    const char *path;  // as given (a glob expanded), "-" for stdin
    const char *name;  // in ids: the path, or "stdin"
    char *source;      // the stream its end record closes: name, or name[I/N]
    int fd;            // shuffle: open for pread
    uint64_t first, n; // shuffle: its lines in the index
    uint64_t size;     // shuffle: bytes when indexed
    uint64_t count;    // samples + rejects this epoch
} file_t;

typedef struct {
    stage_t st;
    read_ctx_t ctx;
    file_t *files;
    int nfiles;
    uint64_t epochs, seed, shard_i, shard_n, skip, limit;
    bool shuffle;
    size_t max_line;
    wr_t *out;
    progress_t *prog;
    // totals
    uint64_t lines, skipped, emitted, samples, rejects, reasons[READ_REASON_COUNT];
    char *buf; // shuffle: one line
    size_t bufcap;
} run_t;

/* What a step of the loop says. */
enum { GO = 0, STOP_LIMIT, STOP_SIGNAL, STOP_STRICT, STOP_FATAL };

#define SHOWN_REJECTS 10

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

static int put(run_t *R, rec_t **r)
{
    char err[REC_ERR_LEN];
    int rc = wr_put(R->out, *r, err);
    rec_destroy(r);
    if (rc) {
        log_error("%s", err);
        return STOP_FATAL;
    }
    return GO;
}

/* One line of this reader's share: skip, or parse and emit. line is NULL
 * for an over-long line, too_long its length. */
static int handle(run_t *R, file_t *f, uint64_t lineno, uint64_t epoch, const char *line, size_t len, uint64_t too_long)
{
    if (line && blank(line, len))
        return GO; // no data: not a sample, not counted
    if (R->skipped < R->skip) {
        R->skipped++;
        return GO;
    }
    read_where_t w = {f->name, f->source, (int64_t)lineno, (int64_t)epoch};
    char err[REC_ERR_LEN];
    rec_t *r = NULL;
    int rc;
    R->lines++;
    if (line) {
        rc = read_parse_line(line, len, &R->ctx, &w, &r, err);
    } else {
        snprintf(err, sizeof err, "%s:%llu: line of %llu bytes, over --max-line-bytes %zu", f->name,
                 (unsigned long long)lineno, (unsigned long long)too_long, R->max_line);
        rc = READ_TOO_LONG;
    }
    if (rc < 0) {
        log_error("%s", err);
        return STOP_FATAL;
    }
    if (rc > 0) {
        if (R->st.strict) {
            log_error("%s (--strict)", err);
            return STOP_STRICT;
        }
        if (R->rejects < SHOWN_REJECTS)
            log_info("reject %s", err);
        else if (R->rejects == SHOWN_REJECTS)
            log_info("further rejects are not shown here; they are in the output");
        R->rejects++;
        R->reasons[rc]++;
        if (!(r = read_make_reject(&w, err))) {
            log_error("out of memory");
            return STOP_FATAL;
        }
    } else {
        R->samples++;
    }
    if ((rc = put(R, &r)))
        return rc;
    f->count++;
    R->emitted++;
    progress_update(R->prog, R->emitted, wr_bytes(R->out), R->rejects);
    return R->emitted == R->limit ? STOP_LIMIT : GO;
}

static bool mine(const run_t *R, uint64_t pos) { return pos % R->shard_n == R->shard_i; }

/* One epoch in file order. */
static int epoch_in_order(run_t *R, uint64_t epoch)
{
    uint64_t pos = 0;
    for (int i = 0; i < R->nfiles; i++) {
        file_t *f = &R->files[i];
        bool std = strcmp(f->path, "-") == 0;
        int fd = std ? STDIN_FILENO : open(f->path, O_RDONLY | O_CLOEXEC);
        char err[REC_ERR_LEN];
        lines_t l;
        if (fd < 0) {
            log_error("%s: %s", f->path, strerror(errno));
            return STOP_FATAL;
        }
        if (lines_open(&l, fd, !std, R->max_line, err, sizeof err)) {
            log_error("%s", err);
            if (!std)
                close(fd);
            return STOP_FATAL;
        }
        const char *line;
        size_t len;
        uint64_t tl, lineno = 0;
        int rc = GO, lr;
        while (rc == GO && (lr = lines_next(&l, &line, &len, &tl, NULL, err, sizeof err)) > 0) {
            lineno++;
            if (ipc_stop_level() > 0)
                rc = STOP_SIGNAL;
            else if (mine(R, pos++))
                rc = handle(R, f, lineno, epoch, line, len, tl);
        }
        if (rc == GO && lr < 0) {
            log_error("%s: %s", f->path, err);
            rc = STOP_FATAL;
        }
        lines_close(&l);
        if (rc != GO)
            return rc;
    }
    return GO;
}

/* Index every file once, for the shuffled epochs. */
static int index_files(run_t *R, lines_index_t *x)
{
    char err[REC_ERR_LEN];
    for (int i = 0; i < R->nfiles; i++) {
        file_t *f = &R->files[i];
        struct stat sb;
        if ((f->fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(f->fd, &sb)) {
            log_error("%s: %s", f->path, strerror(errno));
            return STOP_FATAL;
        }
        f->first = x->n;
        if (lines_index_add(x, f->fd, SIZE_MAX - 2, err, sizeof err)) {
            log_error("%s: %s", f->path, err);
            return STOP_FATAL;
        }
        f->n = x->n - f->first;
        f->size = (uint64_t)sb.st_size;
    }
    log_info("indexed lines=%llu index_bytes=%llu", (unsigned long long)x->n,
             (unsigned long long)(x->n * sizeof(uint64_t)));
    return GO;
}

static file_t *file_of(run_t *R, uint64_t i)
{
    int lo = 0, hi = R->nfiles - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (R->files[mid].first <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    // files with no lines share their first with the next; pick the one holding i
    while (R->files[lo].n == 0 || i >= R->files[lo].first + R->files[lo].n)
        lo++;
    return &R->files[lo];
}

/* One epoch in the order of the permutation for (seed, epoch). */
static int epoch_shuffled(run_t *R, const lines_index_t *x, uint64_t epoch)
{
    lines_perm_t perm;
    lines_perm_init(&perm, x->n, R->seed, epoch);
    for (uint64_t pos = R->shard_i; pos < x->n; pos += R->shard_n) {
        if (ipc_stop_level() > 0)
            return STOP_SIGNAL;
        uint64_t i = lines_perm_at(&perm, pos);
        file_t *f = file_of(R, i);
        uint64_t end = i + 1 < f->first + f->n ? x->start[i + 1] : f->size;
        uint64_t raw = end - x->start[i];
        uint64_t lineno = i - f->first + 1;
        // the line's length without its newline, as the in-order reader
        // measures it: only the last line of a file may lack one
        char last = '\n';
        if (i + 1 == f->first + f->n && raw && pread(f->fd, &last, 1, (off_t)(end - 1)) != 1) {
            log_error("%s: line %llu: %s", f->path, (unsigned long long)lineno, strerror(errno));
            return STOP_FATAL;
        }
        uint64_t len = raw && last == '\n' ? raw - 1 : raw;
        int rc;
        if (len > R->max_line) {
            rc = handle(R, f, lineno, epoch, NULL, 0, len);
        } else {
            if (len + 1 > R->bufcap) {
                char *b = realloc(R->buf, len + 1);
                if (!b) {
                    log_error("out of memory");
                    return STOP_FATAL;
                }
                R->buf = b, R->bufcap = len + 1;
            }
            ssize_t got = pread(f->fd, R->buf, len, (off_t)x->start[i]);
            if (got != (ssize_t)len || memchr(R->buf, '\n', len)) {
                log_error("%s: line %llu: %s", f->path, (unsigned long long)lineno,
                          got < 0 ? strerror(errno) : "the file changed after it was indexed");
                return STOP_FATAL;
            }
            rc = handle(R, f, lineno, epoch, R->buf, len && R->buf[len - 1] == '\r' ? len - 1 : len, 0);
        }
        if (rc != GO)
            return rc;
    }
    return GO;
}

static int put_ends(run_t *R, uint64_t epoch)
{
    for (int i = 0; i < R->nfiles; i++) {
        rec_t *r = rec_new_end(R->files[i].source, (int64_t)epoch, (int64_t)R->files[i].count);
        if (!r) {
            log_error("out of memory");
            return STOP_FATAL;
        }
        int rc = put(R, &r);
        if (rc)
            return rc;
        R->files[i].count = 0;
    }
    return GO;
}

static bool has_glob(const char *s) { return strpbrk(s, "*?[") != NULL; }

/* Inputs -> files: globs expanded in sorted order, "-" for stdin. */
static int add_files(run_t *R)
{
    static const char *const dash[] = {"-"};
    const char *const *in = R->st.ninputs ? R->st.inputs : dash;
    int nin = R->st.ninputs ? R->st.ninputs : 1;
    int cap = 0;
    for (int i = 0; i < nin; i++) {
        glob_t g = {0};
        const char *one[1] = {in[i]};
        const char *const *paths = one;
        size_t n = 1;
        if (strcmp(in[i], "-") != 0 && has_glob(in[i])) {
            int rc = glob(in[i], 0, NULL, &g);
            if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
                log_error("%s: no file matches", in[i]);
                globfree(&g);
                return -1;
            }
            if (rc) {
                log_error("%s: cannot expand the pattern", in[i]);
                globfree(&g);
                return -1;
            }
            paths = (const char *const *)g.gl_pathv;
            n = g.gl_pathc;
        }
        for (size_t k = 0; k < n; k++) {
            if (R->nfiles == cap) {
                cap = cap ? 2 * cap : 16;
                file_t *f = realloc(R->files, (size_t)cap * sizeof *f);
                if (!f) {
                    globfree(&g);
                    return -1;
                }
                R->files = f;
            }
            file_t *f = &R->files[R->nfiles++];
            memset(f, 0, sizeof *f);
            f->fd = -1;
            f->path = strdup(paths[k]);
            f->name = strcmp(paths[k], "-") == 0 ? "stdin" : f->path;
            size_t sl = strlen(f->name) + 48;
            if (!f->path || !(f->source = malloc(sl))) {
                globfree(&g);
                return -1;
            }
            if (R->shard_n > 1)
                snprintf(f->source, sl, "%s[%llu/%llu]", f->name, (unsigned long long)R->shard_i,
                         (unsigned long long)R->shard_n);
            else
                snprintf(f->source, sl, "%s", f->name);
        }
        globfree(&g);
    }
    return 0;
}

static int parse_shard(const char *arg, uint64_t *i, uint64_t *n)
{
    char *end;
    errno = 0;
    unsigned long long a = strtoull(arg, &end, 10);
    if (errno || end == arg || *end != '/' || arg[0] == '-')
        return -1;
    const char *b = end + 1;
    unsigned long long c = strtoull(b, &end, 10);
    if (errno || end == b || *end || b[0] == '-' || c == 0 || a >= c)
        return -1;
    *i = a, *n = c;
    return 0;
}

int main(int argc, char **argv)
{
    run_t R = {.epochs = 1, .shard_n = 1, .limit = UINT64_MAX, .max_line = 16u << 20};
    stage_init(&R.st, "bagel-read");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"format", required_argument, 0, OPT_FORMAT},
        {"root", required_argument, 0, OPT_ROOT},
        {"check-images", no_argument, 0, OPT_CHECK_IMAGES},
        {"epochs", required_argument, 0, OPT_EPOCHS},
        {"shuffle", no_argument, 0, OPT_SHUFFLE},
        {"seed", required_argument, 0, OPT_SEED},
        {"shard", required_argument, 0, OPT_SHARD},
        {"skip", required_argument, 0, OPT_SKIP},
        {"limit", required_argument, 0, OPT_LIMIT},
        {"max-line-bytes", required_argument, 0, OPT_MAX_LINE},
        {0, 0, 0, 0},
    };
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&R.st, c, optarg, help))
            continue;
        switch (c) {
        case OPT_FORMAT:
            if (read_format_parse(optarg, &R.ctx.format)) {
                log_error("--format: \"%s\": expected auto, conversations, sequence, t2i, i2t, edit, interleaved "
                          "or llava",
                          optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_ROOT: R.ctx.root = optarg; break;
        case OPT_CHECK_IMAGES: R.ctx.check_images = true; break;
        case OPT_SHUFFLE: R.shuffle = true; break;
        case OPT_EPOCHS:
            if (stage_parse_range("epochs", optarg, 1, 1000000, &v))
                return EXIT_USAGE;
            R.epochs = v;
            break;
        case OPT_SEED:
            if (stage_parse_size("seed", optarg, &v))
                return EXIT_USAGE;
            R.seed = v;
            break;
        case OPT_SKIP:
            if (stage_parse_size("skip", optarg, &v))
                return EXIT_USAGE;
            R.skip = v;
            break;
        case OPT_LIMIT:
            if (stage_parse_size("limit", optarg, &v))
                return EXIT_USAGE;
            R.limit = v;
            break;
        case OPT_MAX_LINE:
            if (stage_parse_range("max-line-bytes", optarg, 1, 4ull << 30, &v))
                return EXIT_USAGE;
            R.max_line = (size_t)v;
            break;
        case OPT_SHARD:
            if (parse_shard(optarg, &R.shard_i, &R.shard_n)) {
                log_error("--shard: \"%s\": expected I/N with 0 <= I < N", optarg);
                return EXIT_USAGE;
            }
            break;
        default: log_error("see --help"); return EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc; i++)
        stage_option(&R.st, OPT_IN, argv[i], help);
    int status = EXIT_OK;
    char err[REC_ERR_LEN], real_root[PATH_MAX];
    lines_index_t index = {0};
    if (add_files(&R)) {
        status = EXIT_USAGE;
        goto done;
    }
    for (int i = 0; i < R.nfiles; i++)
        if (strcmp(R.files[i].path, "-") == 0 && (R.shuffle || R.epochs > 1 || R.nfiles > 1)) {
            log_error("stdin: read once and in order only: no --shuffle, --epochs or other files with it");
            status = EXIT_USAGE;
            goto done;
        }
    if (R.ctx.root) {
        struct stat sb;
        if (stat(R.ctx.root, &sb) || !S_ISDIR(sb.st_mode) || !realpath(R.ctx.root, real_root)) {
            log_error("--root: %s: not a directory", R.ctx.root);
            status = EXIT_USAGE;
            goto done;
        }
        R.ctx.real_root = real_root;
    }
    if (!(R.out = wr_open(R.st.output, &R.st.so, err))) {
        log_error("%s", err);
        status = EXIT_FATAL;
        goto done;
    }
    R.prog = progress_new(R.st.progress);
    int rc = R.shuffle ? index_files(&R, &index) : GO;
    for (uint64_t e = 0; rc == GO && e < R.epochs; e++) {
        if (R.emitted == R.limit)
            break;
        rc = R.shuffle ? epoch_shuffled(&R, &index, e) : epoch_in_order(&R, e);
        // a stream that ran to its end or to --limit is complete; one cut by
        // a signal or an error gets no end record, so no sink takes it for whole
        if (rc == GO || rc == STOP_LIMIT) {
            int erc = put_ends(&R, e);
            rc = erc ? erc : rc;
        }
    }
    for (int i = 1; i < READ_REASON_COUNT; i++)
        if (R.reasons[i])
            log_info("rejects reason=%s count=%llu", read_reason_name((read_reason_t)i),
                     (unsigned long long)R.reasons[i]);
    log_info("lines=%llu samples=%llu rejects=%llu skipped=%llu", (unsigned long long)R.lines,
             (unsigned long long)R.samples, (unsigned long long)R.rejects, (unsigned long long)R.skipped);
    status = rc == STOP_FATAL ? EXIT_FATAL : rc == STOP_STRICT ? EXIT_CHECK : EXIT_OK;
done:
    if (status == EXIT_FATAL)
        wr_abort(&R.out);
    else if (R.out && wr_close(&R.out, err)) {
        log_error("%s", err);
        status = EXIT_FATAL;
    }
    progress_done(&R.prog);
    lines_index_free(&index);
    for (int i = 0; i < R.nfiles; i++) {
        if (R.files[i].fd >= 0)
            close(R.files[i].fd);
        free((char *)R.files[i].path);
        free(R.files[i].source);
    }
    free(R.files);
    free(R.buf);
    return stage_exit(status);
}
