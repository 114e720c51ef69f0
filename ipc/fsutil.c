/* fsutil.c — see fsutil.h. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fs_mkdirs(const char *path, mode_t mode)
{
    char p[4096];
    size_t n = strlen(path);
    if (n >= sizeof p)
        return errno = ENAMETOOLONG, -1;
    if (n == 0)
        return errno = ENOENT, -1; // what mkdir("") says
    memcpy(p, path, n + 1);
    // each prefix that ends a component ("a//b" and a trailing '/' add none)
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] != '/' && p[i] != '\0') || p[i - 1] == '/')
            continue;
        p[i] = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            // a read-only or unreadable parent may answer EROFS or EACCES for a
            // directory that is already there: that one is fine
            int e = errno;
            struct stat st;
            if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
                return errno = e, -1;
        }
        p[i] = i < n ? '/' : '\0';
    }
    // EEXIST above says only that something is there
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return errno = ENOTDIR, -1;
    return 0;
}

int fs_read_whole(const char *path, char **out, size_t *len, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat sb;
    char *buf = NULL;
    if (fstat(fd, &sb) != 0)
        goto fail;
    if (S_ISDIR(sb.st_mode)) {
        errno = EISDIR;
        goto fail;
    }
    // the size and the NUL when the size is known, so that a file read at
    // that size needs no second buffer; files that say 0 (/proc) grow as read
    size_t cap = sb.st_size > 0 && (uintmax_t)sb.st_size < SIZE_MAX ? (size_t)sb.st_size + 1 : 4096, n = 0;
    if (!(buf = malloc(cap)))
        goto fail;
    for (;;) {
        if (n == cap) {
            char *b = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!b) {
                errno = ENOMEM;
                goto fail;
            }
            buf = b, cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0'; // n < cap: the loop grows the buffer before every read
    close(fd);
    *out = buf;
    if (len)
        *len = n;
    if (st)
        *st = sb;
    return 0;
fail:;
    int e = errno;
    free(buf);
    close(fd);
    errno = e;
    return -1;
}

/* fsync the directory that holds path, so that a rename into it lasts. */
static int sync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    // EINVAL: a filesystem that has no way to sync a directory; nothing more can be done there
    if (rc != 0 && errno == EINVAL)
        rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc != 0 ? -1 : 0;
}

int fs_write_whole(const char *path, const void *buf, size_t len, mode_t mode, bool durable)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return errno = ENAMETOOLONG, -1;
    // O_NOFOLLOW: a link left at the temporary name is refused, not written through
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0) // a regular file takes no more: call it what it is
                errno = ENOSPC;
            goto fail;
        }
        done += (size_t)w;
    }
    if (durable && fsync(fd) != 0)
        goto fail;
    int rc = close(fd);
    fd = -1;
    if (rc != 0 || rename(tmp, path) != 0)
        goto fail;
    return durable ? sync_dir_of(path) : 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
    return -1;
}
