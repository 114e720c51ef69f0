/* test_fsutil.c — the whole-file helpers (ipc/fsutil.h):
 *   - fs_mkdirs: nested directories made with their mode, an existing one
 *     fine, a file in the way ENOTDIR, an over-long path ENAMETOOLONG;
 *   - fs_read_whole: what fs_write_whole wrote comes back byte for byte (a
 *     NUL inside, an empty file) and NUL-terminated, st filled; a file whose
 *     size says 0 (/proc) read whole all the same; a missing file ENOENT and a
 *     directory EISDIR, the outputs untouched;
 *   - fs_write_whole: the mode (less the umask), a replaced file, and failures
 *     (a missing directory, a directory at the path) that leave no temporary
 *     file behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/tmpdir.h"
#include "../../ipc/fsutil.h"

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    return test_tmpdir_make(tmpdir, sizeof tmpdir, "fsutil");
}

static int teardown_tmp(void **state)
{
    (void)state;
    return test_tmpdir_remove(tmpdir);
}

static const char *tmp_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

/* entries of dir whose name holds ".tmp." */
static int temp_files_in(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int k = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        k += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return k;
}

static void test_mkdirs(void **state)
{
    (void)state;
    mode_t old = umask(022);
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("a/b/c"));
    assert_int_equal(fs_mkdirs(path, 0700), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(tmp_path("a"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    // what exists is fine, and so are a trailing '/' and doubled ones
    assert_int_equal(fs_mkdirs(path, 0700), 0);
    assert_int_equal(fs_mkdirs(tmp_path("a/b/"), 0700), 0);
    assert_int_equal(fs_mkdirs(tmp_path("a//b//d/"), 0755), 0);
    assert_int_equal(stat(tmp_path("a/b/d"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0755);
    assert_int_equal(fs_mkdirs("/", 0755), 0);
    umask(old);
}

static void test_mkdirs_errors(void **state)
{
    (void)state;
    // a file in the way: as the last component and as a parent
    FILE *f = fopen(tmp_path("plain"), "w");
    assert_non_null(f);
    fclose(f);
    errno = 0;
    assert_int_equal(fs_mkdirs(tmp_path("plain"), 0755), -1);
    assert_int_equal(errno, ENOTDIR);
    errno = 0;
    assert_int_equal(fs_mkdirs(tmp_path("plain/sub/dir"), 0755), -1);
    assert_int_equal(errno, ENOTDIR);

    // 4095 bytes is the most; 4096 is refused before anything is made
    char *longp = malloc(4097);
    assert_non_null(longp);
    int n = snprintf(longp, 4097, "%s/long/", tmpdir);
    memset(longp + n, 'x', (size_t)(4096 - n));
    longp[4096] = '\0';
    errno = 0;
    assert_int_equal(fs_mkdirs(longp, 0755), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(access(tmp_path("long"), F_OK), -1);
    free(longp);

    errno = 0;
    assert_int_equal(fs_mkdirs("", 0755), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_round_trip(void **state)
{
    (void)state;
    const unsigned char bytes[] = {'a', 0, 0xff, '\n', 0, 0x80, 'z'};
    const char *path = tmp_path("bin");
    assert_int_equal(fs_write_whole(path, bytes, sizeof bytes, 0644, false), 0);
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    assert_int_equal(fs_read_whole(path, &buf, &len, &st), 0);
    assert_int_equal(len, sizeof bytes);
    assert_memory_equal(buf, bytes, sizeof bytes);
    assert_int_equal(buf[len], '\0');
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, (off_t)sizeof bytes);
    assert_int_equal(st.st_uid, geteuid());
    free(buf);

    // replaced whole, durably this time; len and st may be left out
    const char text[] = "second";
    assert_int_equal(fs_write_whole(path, text, strlen(text), 0644, true), 0);
    assert_int_equal(fs_read_whole(path, &buf, NULL, NULL), 0);
    assert_string_equal(buf, text);
    free(buf);
    assert_int_equal(temp_files_in(tmpdir), 0);

    // an empty file: a buffer all the same, holding the NUL alone
    const char *empty = tmp_path("empty");
    assert_int_equal(fs_write_whole(empty, "", 0, 0644, true), 0);
    buf = NULL;
    len = 1;
    assert_int_equal(fs_read_whole(empty, &buf, &len, &st), 0);
    assert_non_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(st.st_size, 0);
    free(buf);

    // a file that says it is empty and is not: read to its end
    assert_int_equal(fs_read_whole("/proc/self/maps", &buf, &len, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_true(len > 0);
    assert_int_equal(strlen(buf), len);
    free(buf);
}

static void test_read_errors(void **state)
{
    (void)state;
    char *buf = (char *)"untouched";
    size_t len = 7;
    errno = 0;
    assert_int_equal(fs_read_whole(tmp_path("missing"), &buf, &len, NULL), -1);
    assert_int_equal(errno, ENOENT);
    assert_string_equal(buf, "untouched");
    assert_int_equal(len, 7);

    errno = 0;
    assert_int_equal(fs_read_whole(tmpdir, &buf, &len, NULL), -1);
    assert_int_equal(errno, EISDIR);
    assert_string_equal(buf, "untouched");
    assert_int_equal(len, 7);
}

static void test_write_errors(void **state)
{
    (void)state;
    // into a directory that is not there: nothing made, here or there
    errno = 0;
    assert_int_equal(fs_write_whole(tmp_path("nodir/x"), "x", 1, 0644, true), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(access(tmp_path("nodir"), F_OK), -1);
    assert_int_equal(temp_files_in(tmpdir), 0);

    // the rename fails (a directory holds the name): the temporary file goes
    assert_int_equal(mkdir(tmp_path("taken"), 0755), 0);
    errno = 0;
    assert_int_equal(fs_write_whole(tmp_path("taken"), "x", 1, 0644, false), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(temp_files_in(tmpdir), 0);
    struct stat st;
    assert_int_equal(stat(tmp_path("taken"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
}

static void test_write_mode(void **state)
{
    (void)state;
    mode_t old = umask(022);
    struct stat st;
    assert_int_equal(fs_write_whole(tmp_path("private"), "k", 1, 0600, false), 0);
    assert_int_equal(stat(tmp_path("private"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    // the umask still applies
    assert_int_equal(fs_write_whole(tmp_path("shared"), "k", 1, 0666, true), 0);
    assert_int_equal(stat(tmp_path("shared"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    umask(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mkdirs),      cmocka_unit_test(test_mkdirs_errors), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_read_errors), cmocka_unit_test(test_write_errors),  cmocka_unit_test(test_write_mode),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
