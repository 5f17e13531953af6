/* util.h - small helpers shared by every module: aborting allocators for control
 * structures, container_of, wall-clock time and RFC 3339 formatting. */
#ifndef FS_UTIL_H
#define FS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define FS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocators for small control structures: they abort on OOM (h2o_mem_alloc).
 * Never use them for peer-sized data. */
void *fs_xmalloc(size_t n);
void *fs_xcalloc(size_t nmemb, size_t n);
void *fs_xrealloc(void *p, size_t n);
char *fs_xstrdup(const char *s);

/* Wall clock in milliseconds since the epoch. */
int64_t fs_wall_ms(void);
/* Formats t (seconds since the epoch, UTC) as "2026-11-24T19:35:51Z" into buf (>= 21 bytes). */
char *fs_rfc3339(int64_t t, char *buf, size_t len);
/* Parses an RFC 3339 UTC time ("...Z"); returns 0 or -1. */
int fs_parse_rfc3339(const char *s, int64_t *out);

/* FNV-1a of the lower-cased name, for hash tables keyed by names that compare case-insensitively
 * (DNS names, group names); equal names under strcmp or strcasecmp hash equal. */
size_t fs_name_hash(const char *name);

/* Copies src into dst (size n), always NUL-terminated; returns dst. */
char *fs_strlcpy(char *dst, const char *src, size_t n);

/* Names the calling thread (at most 15 characters: `top -H`, `ps -L`, /proc/PID/task/TID/comm),
 * so each of the daemon's threads can be told apart: "fs-store", "fs-api-guard", ... */
void fs_thread_name(const char *name);

#endif
