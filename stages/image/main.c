/* bagel-image — BAGEL's ViT and VAE inputs for every image segment.
 *
 *   bagel-image --root DIR [options] [--in EP] [--out EP]
 *       samples -> samples: each image segment's file (relative to --root)
 *       is decoded once and gains "vit" (und) and "vae" (gen or cond), u8
 *       (H, W, 3) tensors sized by BAGEL's rules (img.h). A sample whose image
 *       cannot be used becomes a reject "path: what"; rejects and ends pass
 *       untouched; one record out for each record in. */
#define _GNU_SOURCE
#include "../common/log.h"
#include "../common/stage.h"
#include "../common/transform.h"
#include "img.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

static const char help[] =
    "usage: bagel-image --root DIR [options]\n"
    "Decode every image segment's file once and add \"vit\" (und) and \"vae\" (gen or cond): u8 [H,W,3]\n"
    "tensors sized by BAGEL's MaxLongEdgeMinShortEdgeResize, resampled as Pillow's BICUBIC does.\n"
    "      --root DIR            image paths are relative to DIR and may not leave it\n"
    "      --vae-max N --vae-min N --vae-stride N --vae-max-pixels N\n"
    "                            the VAE rule (default 1024 512 16 1806336)\n"
    "      --vit-max N --vit-min N --vit-stride N --vit-max-pixels N\n"
    "                            the ViT rule (default 980 378 14 2007040)\n"
    "      --vit-img-num auto|1  auto (default): a sample without gen images divides the ViT max pixels\n"
    "                            among its und images, as BAGEL's VLM dataset does; 1: never divide\n"
    "      --max-pixels N        refuse an image whose header says more pixels (default 178956970)\n"
    "      --max-bytes N         refuse a file larger than this (default 256M)\n"
    "      --timeout-ms N        refuse an image that takes longer to decode and resize (default 0: none)\n"
    "      --no-shrink-on-load   always decode JPEGs and WebPs at full size\n"
    "      --shrink-margin X     shrink a JPEG or WebP on load only while the decode stays X times larger than\n"
    "                            every output (default 1; 2 is slower and closer to Pillow: docs/image.md)\n"
    "      --threads N           libvips threads per process (default 1: scale with processes)\n"
    "      --no-simd             resample and unfilter PNGs without SIMD (the same bytes, slower; for tests)\n"
    "      --no-avx512           resample with AVX2 at most (the same bytes; for tests)\n"
    "      --no-png-fast-path    decode every PNG with libvips (the same pixels, slower; for tests)\n";

enum {
    OPT_ROOT = 1,
    OPT_VAE_MAX,
    OPT_VAE_MIN,
    OPT_VAE_STRIDE,
    OPT_VAE_MAXPIX,
    OPT_VIT_MAX,
    OPT_VIT_MIN,
    OPT_VIT_STRIDE,
    OPT_VIT_MAXPIX,
    OPT_VIT_IMG_NUM,
    OPT_MAX_PIXELS,
    OPT_MAX_BYTES,
    OPT_TIMEOUT,
    OPT_NO_SHRINK,
    OPT_SHRINK_MARGIN,
    OPT_THREADS,
    OPT_NO_SIMD,
    OPT_NO_AVX512,
    OPT_NO_PNG_FAST,
};

typedef struct {
    const char *root;
    char real_root[PATH_MAX];
    int root_fd; // O_PATH handle of real_root for openat2, or -1
    img_opts_t io;
    bool vit_img_num_auto;
    unsigned long long max_bytes;
    uint8_t *buf; // the current file
    size_t cap;
    unsigned long long images, vit, vae, shrunk;
    double decode_s;
} job_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Read root/path into j->buf; 0, or -1 with why. */
static int read_image(job_t *j, const char *path, size_t *len, char *why)
{
    if (path[0] == '/') {
        snprintf(why, REC_ERR_LEN, "an absolute path; image paths are relative to --root");
        return -1;
    }
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            snprintf(why, REC_ERR_LEN, "escapes --root");
            return -1;
        }
        p += n + (p[n] == '/');
    }
    // One openat2 beneath the root opens the file and refuses a way out in
    // the same step; realpath walked every component with a readlink each,
    // about 5% of the stage. What openat2 refuses (EXDEV: a symbolic link
    // that leaves the root, or one with an absolute target that may still
    // land inside it) or cannot do (ENOSYS: kernels before 5.6; EPERM: a
    // seccomp filter) goes the realpath way, which decides as before.
    int fd = -1;
    if (j->root_fd >= 0) {
        struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        fd = (int)syscall(SYS_openat2, j->root_fd, path, &how, sizeof how);
        if (fd < 0 && errno != EXDEV && errno != ENOSYS && errno != EPERM) {
            snprintf(why, REC_ERR_LEN, "%s", strerror(errno));
            return -1;
        }
        // not on this kernel, or refused by a container's seccomp filter
        // (older profiles answer EPERM): realpath from now on
        if (fd < 0 && (errno == ENOSYS || errno == EPERM))
            j->root_fd = -1;
    }
    if (fd < 0) {
        char full[PATH_MAX], real[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", j->root, path) >= (int)sizeof full) {
            snprintf(why, REC_ERR_LEN, "path too long");
            return -1;
        }
        if (!realpath(full, real)) {
            snprintf(why, REC_ERR_LEN, "%s", strerror(errno));
            return -1;
        }
        size_t rl = strlen(j->real_root);
        if (strncmp(real, j->real_root, rl) != 0 || (real[rl] != '/' && real[rl] != 0 && rl > 1)) {
            snprintf(why, REC_ERR_LEN, "escapes --root through a symbolic link");
            return -1;
        }
        fd = open(real, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            snprintf(why, REC_ERR_LEN, "%s", strerror(errno));
            return -1;
        }
    }
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        snprintf(why, REC_ERR_LEN, "not a regular file");
        return -1;
    }
    if ((unsigned long long)sb.st_size > j->max_bytes) {
        close(fd);
        snprintf(why, REC_ERR_LEN, "%lld bytes, over the limit of %llu (--max-bytes)", (long long)sb.st_size,
                 j->max_bytes);
        return -1;
    }
    size_t want = (size_t)sb.st_size;
    if (want + 1 > j->cap) {
        uint8_t *p = realloc(j->buf, want + 1);
        if (!p) {
            close(fd);
            snprintf(why, REC_ERR_LEN, "out of memory for %zu bytes", want);
            return -1;
        }
        j->buf = p, j->cap = want + 1;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = read(fd, j->buf + got, want - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(why, REC_ERR_LEN, "%s", k < 0 ? strerror(errno) : "file shrank while read");
            close(fd);
            return -1;
        }
        got += (size_t)k;
    }
    close(fd);
    *len = got;
    return 0;
}

static void release_pixels(void *p) { g_free(p); }

/* Attach one output as a tensor the record owns. */
static int attach(rec_t *r, msgpack_object *seg, const char *key, img_out_t *o)
{
    rec_tensor_t t = {
        .dtype = REC_U8, .ndim = 3, .shape = {o->h, o->w, 3}, .data = o->data, .nbytes = (size_t)o->w * o->h * 3};
    char err[REC_ERR_LEN];
    msgpack_object obj;
    if (rec_adopt(r, release_pixels, o->data)) {
        o->data = NULL;
        return -1;
    }
    o->data = NULL;
    return rec_tensor_obj(r, &t, false, &obj, err) || rec_set(r, seg, key, obj) ? -1 : 0;
}

static bool flag(const msgpack_object *seg, const char *key)
{
    bool b = false;
    return rec_get_bool(seg, key, &b) && b;
}

/* Decode every image segment of a sample in place. 0; 1 when the sample is
 * to be rejected (why says so); -1 fatal (out of memory). */
static int image_sample(job_t *j, rec_t *r, char *why)
{
    msgpack_object *segs = rec_map_getw(&r->root, "segments");
    if (!segs || segs->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(why, REC_ERR_LEN, "segments: missing (an array of segments expected)");
        return 1;
    }
    uint32_t nseg = segs->via.array.size;
    int n_und = 0, n_gen = 0;
    for (uint32_t i = 0; i < nseg; i++) {
        const msgpack_object *seg = &segs->via.array.ptr[i];
        if (seg->type == MSGPACK_OBJECT_MAP && rec_obj_is_str(rec_map_get(seg, "kind"), "image"))
            n_und += flag(seg, "und"), n_gen += flag(seg, "gen") || flag(seg, "cond");
    }
    int vit_num = j->vit_img_num_auto && n_gen == 0 && n_und > 0 ? n_und : 1;
    for (uint32_t i = 0; i < nseg; i++) {
        msgpack_object *seg = &segs->via.array.ptr[i];
        if (seg->type != MSGPACK_OBJECT_MAP || !rec_obj_is_str(rec_map_get(seg, "kind"), "image"))
            continue;
        char path[PATH_MAX], what[REC_ERR_LEN], shown[128];
        if (!rec_get_str(seg, "path", path, sizeof path) || !path[0]) {
            snprintf(why, REC_ERR_LEN, "segments[%u].path: missing (a relative image path expected)", i);
            return 1;
        }
        img_want_t want = {.vit_num = flag(seg, "und") ? vit_num : 0,
                           .vae_num = flag(seg, "gen") || flag(seg, "cond") ? 1 : 0};
        if (!want.vit_num && !want.vae_num)
            continue;
        rec_printable(shown, sizeof shown, path, strlen(path), 80);
        size_t len;
        if (read_image(j, path, &len, what)) {
            snprintf(why, REC_ERR_LEN, "%s: %s", shown, what);
            return 1;
        }
        img_out_t vit, vae;
        double t0 = now();
        int rc = img_decode(j->buf, len, &j->io, want, &vit, &vae, what);
        j->decode_s += now() - t0;
        if (rc) {
            snprintf(why, REC_ERR_LEN, "%s: %s", shown, what);
            return 1;
        }
        j->images++;
        j->shrunk += vit.shrunk > 1 || vae.shrunk > 1;
        j->vit += vit.data != NULL, j->vae += vae.data != NULL;
        if ((vit.data && attach(r, seg, "vit", &vit)) || (vae.data && attach(r, seg, "vae", &vae))) {
            img_out_free(&vit);
            img_out_free(&vae);
            return -1;
        }
    }
    return 0;
}

static int image_one(void *job, rec_t *r, char *why) { return image_sample(job, r, why); }

static int run(stage_t *st, job_t *j)
{
    stage_counts_t n;
    int status = stage_transform(st, image_one, j, &n);
    log_info(
        "samples=%llu rejects=%llu images=%llu vit=%llu vae=%llu shrunk_on_load=%llu decode_s=%.3f images_per_s=%.1f",
        (unsigned long long)n.samples, (unsigned long long)n.rejects, j->images, j->vit, j->vae, j->shrunk, j->decode_s,
        j->decode_s > 0 ? (double)j->images / j->decode_s : 0.0);
    return status;
}

/* A bounded integer option. */
static int int_opt(const char *name, const char *arg, long long lo, long long hi, long long *out)
{
    unsigned long long v;
    if (stage_parse_range(name, arg, (unsigned long long)lo, (unsigned long long)hi, &v))
        return -1;
    *out = (long long)v;
    return 0;
}

/* glib warnings from loaders (a JPEG with junk after its end, ...) are not
 * errors of the stage; errors arrive through the vips error buffer. */
static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
    (void)domain, (void)level, (void)msg, (void)data;
}

int main(int argc, char **argv)
{
    stage_t st;
    stage_init(&st, "bagel-image");
    static const struct option longopts[] = {
        STAGE_LONGOPTS,
        {"root", required_argument, 0, OPT_ROOT},
        {"vae-max", required_argument, 0, OPT_VAE_MAX},
        {"vae-min", required_argument, 0, OPT_VAE_MIN},
        {"vae-stride", required_argument, 0, OPT_VAE_STRIDE},
        {"vae-max-pixels", required_argument, 0, OPT_VAE_MAXPIX},
        {"vit-max", required_argument, 0, OPT_VIT_MAX},
        {"vit-min", required_argument, 0, OPT_VIT_MIN},
        {"vit-stride", required_argument, 0, OPT_VIT_STRIDE},
        {"vit-max-pixels", required_argument, 0, OPT_VIT_MAXPIX},
        {"vit-img-num", required_argument, 0, OPT_VIT_IMG_NUM},
        {"max-pixels", required_argument, 0, OPT_MAX_PIXELS},
        {"max-bytes", required_argument, 0, OPT_MAX_BYTES},
        {"timeout-ms", required_argument, 0, OPT_TIMEOUT},
        {"no-shrink-on-load", no_argument, 0, OPT_NO_SHRINK},
        {"shrink-margin", required_argument, 0, OPT_SHRINK_MARGIN},
        {"threads", required_argument, 0, OPT_THREADS},
        {"no-simd", no_argument, 0, OPT_NO_SIMD},
        {"no-avx512", no_argument, 0, OPT_NO_AVX512},
        {"no-png-fast-path", no_argument, 0, OPT_NO_PNG_FAST},
        {0, 0, 0, 0},
    };
    job_t job = {.vit_img_num_auto = true, .max_bytes = 256ull << 20};
    img_opts_default(&job.io);
    long long v, threads = 1;
    int c;
    while ((c = getopt_long(argc, argv, STAGE_SHORTOPTS, longopts, NULL)) != -1) {
        if (stage_option(&st, c, optarg, help))
            continue;
        int bad = 0;
        switch (c) {
        case OPT_ROOT: job.root = optarg; break;
        case OPT_VAE_MAX: bad = int_opt("vae-max", optarg, 1, 65535, &v), job.io.vae.max_edge = (int)v; break;
        case OPT_VAE_MIN: bad = int_opt("vae-min", optarg, 1, 65535, &v), job.io.vae.min_edge = (int)v; break;
        case OPT_VAE_STRIDE: bad = int_opt("vae-stride", optarg, 1, 4096, &v), job.io.vae.stride = (int)v; break;
        case OPT_VAE_MAXPIX:
            bad = int_opt("vae-max-pixels", optarg, 1, 1ll << 32, &v), job.io.vae.max_pixels = v;
            break;
        case OPT_VIT_MAX: bad = int_opt("vit-max", optarg, 1, 65535, &v), job.io.vit.max_edge = (int)v; break;
        case OPT_VIT_MIN: bad = int_opt("vit-min", optarg, 1, 65535, &v), job.io.vit.min_edge = (int)v; break;
        case OPT_VIT_STRIDE: bad = int_opt("vit-stride", optarg, 1, 4096, &v), job.io.vit.stride = (int)v; break;
        case OPT_VIT_MAXPIX:
            bad = int_opt("vit-max-pixels", optarg, 1, 1ll << 32, &v), job.io.vit.max_pixels = v;
            break;
        case OPT_VIT_IMG_NUM:
            if (strcmp(optarg, "auto") && strcmp(optarg, "1")) {
                log_error("--vit-img-num: %s: expected auto or 1", optarg);
                bad = 1;
            }
            job.vit_img_num_auto = strcmp(optarg, "auto") == 0;
            break;
        case OPT_MAX_PIXELS: bad = int_opt("max-pixels", optarg, 1, 1ll << 40, &v), job.io.max_input_pixels = v; break;
        case OPT_MAX_BYTES:
            bad = int_opt("max-bytes", optarg, 1, 1ll << 40, &v), job.max_bytes = (unsigned long long)v;
            break;
        case OPT_TIMEOUT: bad = int_opt("timeout-ms", optarg, 0, 86400000, &v), job.io.timeout_ms = (int)v; break;
        case OPT_NO_SHRINK: job.io.shrink_on_load = false; break;
        case OPT_SHRINK_MARGIN: {
            char *end;
            double m = strtod(optarg, &end);
            if (*end || !(m >= 1.0 && m <= 64.0)) {
                log_error("--shrink-margin: %s: a number from 1 to 64 expected", optarg);
                bad = 1;
            }
            job.io.shrink_margin = m;
            break;
        }
        case OPT_NO_SIMD: job.io.simd = false; break;
        case OPT_NO_AVX512: job.io.avx512 = false; break;
        case OPT_NO_PNG_FAST: job.io.png_fast_path = false; break;
        case OPT_THREADS: bad = int_opt("threads", optarg, 1, 1024, &threads); break;
        default: return EXIT_USAGE;
        }
        if (bad)
            return EXIT_USAGE;
    }
    for (int i = optind; i < argc; i++)
        stage_option(&st, OPT_IN, argv[i], help);
    if (!job.root) {
        log_error("--root: missing: name the directory image paths are relative to");
        return EXIT_USAGE;
    }
    // Every image allocates the same few multi-megabyte buffers (the decode,
    // the resampler's middle image, the outputs the records own). glibc's
    // defaults give blocks over its dynamic mmap threshold back to the kernel
    // when freed, and a fresh mmap faults in every page again (zeroed): about
    // 1,500 page faults an image on the benchmark's PNGs, a sixth of the run
    // in the kernel. Keeping freed memory in the heap makes the next image
    // reuse it; peak RSS stays what one image needs (docs/image.md, Speed).
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    struct stat sb;
    if (stat(job.root, &sb) || !S_ISDIR(sb.st_mode) || !realpath(job.root, job.real_root)) {
        log_error("--root: %s: not a directory", job.root);
        return EXIT_USAGE;
    }
    job.root_fd = open(job.real_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (VIPS_INIT(argv[0])) {
        log_error("libvips: cannot start: %s", vips_error_buffer());
        return EXIT_FATAL;
    }
    vips_concurrency_set((int)threads);
    job.io.inline_eval = threads == 1; // more threads: libvips' pool decodes one image on several
    vips_cache_set_max(0); // every image is seen once
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, quiet_log, NULL);
    int status = run(&st, &job);
    free(job.buf);
    vips_shutdown();
    return stage_exit(status);
}
