/* util.c - aborting allocators, time helpers and string helpers (see util.h). */
#define _XOPEN_SOURCE 700 /* strptime */
#include "probes/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>

static void oom(size_t n)
{
    fprintf(stderr, "fleetscan: out of memory allocating %zu bytes\n", n);
    abort();
}

void *fs_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *fs_xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (p == NULL)
        oom(nmemb * n);
    return p;
}

void *fs_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *fs_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fs_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int64_t fs_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

char *fs_rfc3339(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && len > 0)
        buf[0] = '\0';
    return buf;
}

int fs_parse_rfc3339(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return -1;
    if (*end == '.') {
        end++;
        while (*end >= '0' && *end <= '9')
            end++;
    }
    if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

char *fs_strlcpy(char *dst, const char *src, size_t n)
{
    if (n == 0)
        return dst;
    size_t l = strlen(src);
    if (l >= n)
        l = n - 1;
    memcpy(dst, src, l);
    dst[l] = '\0';
    return dst;
}

void fs_thread_name(const char *name)
{
    (void)prctl(PR_SET_NAME, name, 0, 0, 0); /* cut to 15 characters; a failure only loses it */
}

size_t fs_name_hash(const char *name)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= (uint64_t)tolower(*p);
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}
