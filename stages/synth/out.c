/* out.c — see out.h. */
#define _GNU_SOURCE
#include "out.h"

#include "../../ipc/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

/* JPEG quality: high enough that colours stay near their palette values. */
#define JPEG_Q 90

int synth_out_open(synth_out_t *o, const char *dir, char *err)
{
    memset(o, 0, sizeof *o);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 0 || n + 64 >= sizeof o->dir) {
        snprintf(err, SYNTH_ERR_LEN, "--out: expected a directory path of 1 to %zu bytes", sizeof o->dir - 64);
        return -1;
    }
    memcpy(o->dir, dir, n);
    o->dir[n] = 0;
    char images[SYNTH_PATH_LEN];
    snprintf(images, sizeof images, "%s/images", o->dir);
    // each one writable too, so that a read-only --out fails here and not at the first image
    const char *dirs[] = {o->dir, images};
    for (int i = 0; i < 2; i++) {
        if (fs_mkdirs(dirs[i], 0777) || access(dirs[i], W_OK)) {
            snprintf(err, SYNTH_ERR_LEN, "%s: %s", dirs[i], errno == ENOTDIR ? "not a directory" : strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

int synth_out_image(synth_out_t *o, const char *rel, const uint8_t *rgb, int px, int jpeg, char *err)
{
    char path[SYNTH_PATH_LEN], tmp[SYNTH_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/%s", o->dir, rel);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    VipsImage *im = vips_image_new_from_memory(rgb, (size_t)px * px * 3, px, px, 3, VIPS_FORMAT_UCHAR);
    if (!im) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", rel, vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    void *buf = NULL;
    size_t len = 0;
    // no metadata: the file's bytes are a function of the pixels alone
#if VIPS_MAJOR_VERSION > 8 || (VIPS_MAJOR_VERSION == 8 && VIPS_MINOR_VERSION >= 15)
    int rc = jpeg ? vips_jpegsave_buffer(im, &buf, &len, "Q", JPEG_Q, "keep", VIPS_FOREIGN_KEEP_NONE, NULL)
                  : vips_pngsave_buffer(im, &buf, &len, "keep", VIPS_FOREIGN_KEEP_NONE, NULL);
#else
    int rc = jpeg ? vips_jpegsave_buffer(im, &buf, &len, "Q", JPEG_Q, "strip", TRUE, NULL)
                  : vips_pngsave_buffer(im, &buf, &len, "strip", TRUE, NULL);
#endif
    g_object_unref(im);
    if (rc) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", rel, vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", tmp, strerror(errno));
        g_free(buf);
        return -1;
    }
    int bad = write_all(fd, buf, len);
    bad = close(fd) || bad;
    if (bad || rename(tmp, path)) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", bad ? tmp : path, strerror(errno));
        unlink(tmp);
        g_free(buf);
        return -1;
    }
    g_free(buf);
    __atomic_fetch_add(&o->images, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o->bytes, (uint64_t)len, __ATOMIC_RELAXED);
    return 0;
}

int synth_jsonl_open(synth_jsonl_t *j, const synth_out_t *o, const char *name, char *err)
{
    memset(j, 0, sizeof *j);
    snprintf(j->path, sizeof j->path, "%s/%s", o->dir, name);
    snprintf(j->tmp, sizeof j->tmp, "%s/.%s.tmp", o->dir, name);
    if (!(j->f = fopen(j->tmp, "w"))) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", j->tmp, strerror(errno));
        j->tmp[0] = 0;
        return -1;
    }
    return 0;
}

int synth_jsonl_put(synth_jsonl_t *j, const char *line, char *err)
{
    if (fputs(line, j->f) < 0 || putc('\n', j->f) == EOF) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", j->tmp, strerror(errno));
        return -1;
    }
    j->lines++;
    return 0;
}

int synth_jsonl_close(synth_jsonl_t *j, char *err)
{
    FILE *f = j->f;
    j->f = NULL;
    // syncfs covers the images written so far and this file
    if (fflush(f) || syncfs(fileno(f)) || fsync(fileno(f))) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", j->tmp, strerror(errno));
        fclose(f);
        return -1;
    }
    if (fclose(f) || rename(j->tmp, j->path)) {
        snprintf(err, SYNTH_ERR_LEN, "%s: %s", j->path, strerror(errno));
        return -1;
    }
    j->tmp[0] = 0;
    return 0;
}

void synth_jsonl_abort(synth_jsonl_t *j)
{
    if (j->f)
        fclose(j->f);
    j->f = NULL;
    if (j->tmp[0])
        unlink(j->tmp);
    j->tmp[0] = 0;
}
