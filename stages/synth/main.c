/* bagel-synth — make the synthetic "shapes" dataset: images of coloured
 * shapes with exact captions, edits, questions and "how to draw" sequences,
 * in the seven JSONL formats bagel-read accepts (docs/synthetic-data.md).
 *
 *   bagel-synth --out DIR --seed S [--count N] [--size PX] [--formats LIST]
 *               [--jpeg-fraction F] [--threads N]
 *
 * Writes DIR/images/ and DIR/<format>.jsonl; image paths in the JSONL are
 * relative to DIR. The same options give byte-identical files.
 * Exit: 0 ok, 2 usage, 3 fatal (I/O), 128+N stopped by signal N. */
#include "../common/log.h"
#include "../common/stage.h"
#include "batch.h"
#include "formats.h"
#include "out.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

static const char help[] = "usage: bagel-synth --out DIR --seed S [options]\n"
                           "Make the synthetic \"shapes\" dataset: DIR/images/ and one JSONL file per format.\n"
                           "  -o, --out DIR             output directory (created; files in it are overwritten)\n"
                           "      --seed S              the dataset's seed, 0 to 2^64-1 (required)\n"
                           "      --count N             lines per format (default 64)\n"
                           "      --size PX             image side in pixels, 16 to 2048 (default 64)\n"
                           "      --formats LIST        comma-separated, of: t2i,i2t,edit,vqa,conversations,\n"
                           "                            sequence,interleaved (default all)\n"
                           "      --jpeg-fraction F     share of images saved as JPEG, 0 to 1 (default 0.25)\n"
                           "      --threads N           threads making images (default: one per CPU, at most 16);\n"
                           "                            the files do not depend on it\n"
                           "  -q, --quiet               errors only on stderr\n"
                           "  -h, --help                this help;  --version  the version\n"
                           "Exit: 0 ok, 2 usage, 3 fatal, 128+N stopped by signal N.\n";

enum { OPT_SEED = 1, OPT_COUNT, OPT_SIZE, OPT_FORMATS, OPT_JPEG, OPT_THREADS };

#define MAX_COUNT 100000000ull
/* Lines made between writes: enough to keep every thread busy. */
#define BATCH 1024

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Parse "t2i,vqa" into want[]; -1 and a message on an unknown name. */
static int parse_formats(const char *list, int *want)
{
    memset(want, 0, sizeof(int) * (size_t)synth_nformats);
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        int f = synth_format_find(p, (int)len);
        if (f < 0) {
            log_error("--formats: unknown format \"%.*s\", expected t2i, i2t, edit, vqa, conversations, sequence or "
                      "interleaved",
                      (int)len, p);
            return -1;
        }
        want[f] = 1;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

static int parse_fraction(const char *arg, int *permille)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !(v >= 0 && v <= 1)) {
        log_error("--jpeg-fraction: expected a number from 0 to 1, got \"%s\"", arg);
        return -1;
    }
    *permille = (int)(v * 1000 + 0.5);
    return 0;
}

int main(int argc, char **argv)
{
    stage_t st;
    stage_init(&st, "bagel-synth");
    if (VIPS_INIT(argv[0])) {
        log_error("libvips: %s", vips_error_buffer());
        return EXIT_FATAL;
    }
    // parallel over images, not inside one: a small image's save costs less
    // than handing it between libvips' threads. No operation cache: the
    // images wrap pixel buffers that are reused.
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    static const struct option longopts[] = {
        {"out", required_argument, 0, OPT_OUT},
        {"seed", required_argument, 0, OPT_SEED},
        {"count", required_argument, 0, OPT_COUNT},
        {"size", required_argument, 0, OPT_SIZE},
        {"formats", required_argument, 0, OPT_FORMATS},
        {"jpeg-fraction", required_argument, 0, OPT_JPEG},
        {"threads", required_argument, 0, OPT_THREADS},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"help", no_argument, 0, OPT_HELP},
        {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0},
    };
    const char *dir = NULL;
    unsigned long long seed = 0, count = 64, size = 64, v;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int have_seed = 0, jpeg_permille = 250, want[16], c, threads = ncpu < 1 ? 1 : ncpu > 16 ? 16 : (int)ncpu;
    for (int i = 0; i < synth_nformats; i++)
        want[i] = 1;
    while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_OUT: dir = optarg; break;
        case OPT_SEED:
            if (stage_parse_size("seed", optarg, &seed))
                return EXIT_USAGE;
            have_seed = 1;
            break;
        case OPT_COUNT:
            if (stage_parse_size("count", optarg, &v))
                return EXIT_USAGE;
            if (v > MAX_COUNT) {
                log_error("--count: expected 0 to %llu", MAX_COUNT);
                return EXIT_USAGE;
            }
            count = v;
            break;
        case OPT_SIZE:
            if (stage_parse_size("size", optarg, &v))
                return EXIT_USAGE;
            if (v < 16 || v > 2048) {
                log_error("--size: expected 16 to 2048 pixels, got %llu", v);
                return EXIT_USAGE;
            }
            size = v;
            break;
        case OPT_FORMATS:
            if (parse_formats(optarg, want))
                return EXIT_USAGE;
            break;
        case OPT_JPEG:
            if (parse_fraction(optarg, &jpeg_permille))
                return EXIT_USAGE;
            break;
        case OPT_THREADS:
            if (stage_parse_size("threads", optarg, &v))
                return EXIT_USAGE;
            if (v < 1 || v > SYNTH_MAX_THREADS) {
                log_error("--threads: expected 1 to %d", SYNTH_MAX_THREADS);
                return EXIT_USAGE;
            }
            threads = (int)v;
            break;
        case OPT_QUIET: log_set_quiet(true); break;
        case OPT_HELP: fputs(help, stdout); return EXIT_OK;
        case OPT_VERSION: printf("bagel-synth %s\n", BAGEL_VERSION); return EXIT_OK;
        default: fputs("try bagel-synth --help\n", stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        log_error("unexpected argument \"%s\": options only, see --help", argv[optind]);
        return EXIT_USAGE;
    }
    if (!dir || !have_seed) {
        log_error("%s is required: bagel-synth --out DIR --seed S", !dir ? "--out" : "--seed");
        return EXIT_USAGE;
    }

    char err[SYNTH_ERR_LEN];
    synth_out_t out;
    if (synth_out_open(&out, dir, err)) {
        log_error("%s", err);
        return EXIT_FATAL;
    }
    synth_ctx_t ctx = {&out, seed, (int)size, jpeg_permille, NULL};
    char **lines = malloc(sizeof(char *) * BATCH);
    if (!lines) {
        log_error("out of memory");
        return EXIT_FATAL;
    }
    double t0 = now_s();
    int status = EXIT_OK, stopped = 0;
    uint64_t nlines = 0;
    synth_jsonl_t jl = {0};
    for (int f = 0; f < synth_nformats && status == EXIT_OK && !stopped; f++) {
        if (!want[f])
            continue;
        if (synth_jsonl_open(&jl, &out, synth_formats[f].file, err)) {
            log_error("%s", err);
            status = EXIT_FATAL;
            break;
        }
        for (uint64_t i = 0; i < count && status == EXIT_OK && !stopped; i += BATCH) {
            int n = count - i < BATCH ? (int)(count - i) : BATCH;
            int rc = synth_batch(&ctx, f, i, n, threads, lines, err);
            // a stopped run leaves no JSONL file of the format it was making
            stopped = rc == 1;
            if (rc < 0) {
                log_error("%s", err);
                status = EXIT_FATAL;
            }
            for (int k = 0; k < n && rc == 0; k++) {
                if (status == EXIT_OK && synth_jsonl_put(&jl, lines[k], err)) {
                    log_error("%s", err);
                    status = EXIT_FATAL;
                }
                free(lines[k]);
            }
        }
        if (status == EXIT_OK && !stopped && synth_jsonl_close(&jl, err)) {
            log_error("%s", err);
            status = EXIT_FATAL;
        }
        synth_jsonl_abort(&jl);
        nlines += jl.lines;
    }
    free(lines);
    if (stopped)
        log_error("stopped by a signal: the JSONL files made so far are complete, the rest missing");
    else if (status == EXIT_OK)
        log_info("dir=%s seed=%llu lines=%llu images=%llu bytes=%llu ms=%.0f", out.dir, seed,
                 (unsigned long long)nlines, (unsigned long long)out.images, (unsigned long long)out.bytes,
                 (now_s() - t0) * 1e3);
    vips_shutdown();
    return stage_exit(status);
}
