/* fsutil.h — whole-file helpers shared by the stages and the models: make a
 * directory and its parents, read a file whole, write a file whole through a
 * temporary name so that a reader sees the old file or the new one, never a
 * part. Each returns 0, or -1 with errno set and nothing left allocated. */
#ifndef BAGEL_FSUTIL_H
#define BAGEL_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* mkdir -p: every missing component made with mode (less the umask); one that
 * exists as a directory is fine. ENAMETOOLONG for a path over 4095 bytes,
 * ENOTDIR when the last component exists and is not a directory. */
int fs_mkdirs(const char *path, mode_t mode);

/* The whole file into a malloc'd buffer in *out, NUL-terminated (the bytes
 * may hold NULs of their own); *len, when len is not NULL, counts the bytes
 * without the terminating NUL. *st, when st is not NULL, is the opened file's
 * fstat. EISDIR for a directory. On failure *out and *len are untouched. */
int fs_read_whole(const char *path, char **out, size_t *len, struct stat *st);

/* Writes path.tmp.PID (mode less the umask), renames it to path; on failure
 * the temporary file is removed and path is as it was. durable: the file is
 * fsynced before the rename and its directory after it, so that the new file
 * survives a crash once this returns 0 (-1 after the rename: the new file is
 * in place but its directory could not be synced). Not for two threads of one
 * process writing the same path at once (they share the temporary name). */
int fs_write_whole(const char *path, const void *buf, size_t len, mode_t mode, bool durable);

#endif
