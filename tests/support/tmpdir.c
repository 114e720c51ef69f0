/* tmpdir.c — see tmpdir.h. */
#define _XOPEN_SOURCE 700
#include "tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

int test_tmpdir_make(char *buf, size_t n, const char *name)
{
    if ((size_t)snprintf(buf, n, "/tmp/bagel-test-%s-XXXXXX", name) >= n)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int test_tmpdir_remove(const char *dir) { return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }
