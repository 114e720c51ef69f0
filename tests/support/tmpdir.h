/* tmpdir.h — a scratch directory for a unit test: made fresh under /tmp,
 * removed with everything in it. */
#ifndef BAGEL_TEST_TMPDIR_H
#define BAGEL_TEST_TMPDIR_H

#include <stddef.h>

/* /tmp/bagel-test-NAME-XXXXXX, made; its path into buf. 0, or -1. */
int test_tmpdir_make(char *buf, size_t n, const char *name);
/* Removes dir and all it holds (symbolic links are not followed). 0, or -1. */
int test_tmpdir_remove(const char *dir);

#endif
