/* file.h - the one reader of files a user names (configuration, CA bundles, hashed CA
 * directory entries, the API token, candidate chains): regular files only, size-capped, and
 * never blocking on a FIFO or a device, so a bad path cannot stall the event loop. */
#ifndef FS_FILE_H
#define FS_FILE_H

#include <stddef.h>
#include <sys/stat.h>

/* Reads the regular file at path (symlinks followed) into a new NUL-terminated buffer of
 * *len bytes. A FIFO, socket or device is refused without being read from (it is opened with
 * O_NONBLOCK, if at all, and checked with fstat before any read); a directory too; a file
 * larger than cap bytes, or that grows past cap while read, too. st, when not NULL, receives
 * the file's status (its mode for permission checks). Returns 0, or -1 with why filled
 * with a short reason ("is not a regular file (a FIFO)", "larger than 16 MiB", strerror). */
int fs_read_file(const char *path, size_t cap, char **buf, size_t *len, struct stat *st, char *why,
                 size_t whylen);

/* "16 MiB", "4 KiB", "100 bytes": a cap as a person reads it, into buf. */
char *fs_size_text(size_t n, char *buf, size_t len);

#endif
