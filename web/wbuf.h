/* wbuf.h - the one output writer of the API: a growable buffer with a hard maximum, and the one
 * JSON string escaper and the one Prometheus label escaper. Every document the daemon serves
 * (web/render.c, daemon/forecast.c, the detail the loop renders once per probe) is written here. */
#ifndef FS_WBUF_H
#define FS_WBUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Growable, NUL-terminated while not failed. Once an append would pass max (or malloc fails)
 * the buffer is marked failed, later appends are ignored and wbuf_done() says UV_ENOMEM. */
typedef struct wbuf_s {
    char *data;
    size_t len, cap, max;
    int failed;
} wbuf_t;

/* hint: the expected size (allocated now); max: the hard cap, > 0. */
void wbuf_init(wbuf_t *b, size_t hint, size_t max);
/* Hands data (malloc'd, NUL-terminated, *len bytes before the NUL) to the caller and resets b;
 * NULL when failed. len may be NULL. */
char *wbuf_steal(wbuf_t *b, size_t *len);
void wbuf_free(wbuf_t *b);
/* 0, or UV_ENOMEM when an append failed. */
int wbuf_done(const wbuf_t *b);

void wbuf__put_slow(wbuf_t *b, const char *s, size_t n);

/* n bytes as they are. Inline: the renderers append a few bytes at a time. */
static inline void wbuf_put(wbuf_t *b, const char *s, size_t n)
{
    if (!b->failed && n < b->cap - b->len) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
    } else {
        wbuf__put_slow(b, s, n);
    }
}

static inline void wbuf_puts(wbuf_t *b, const char *s)
{
    wbuf_put(b, s, strlen(s));
}

static inline void wbuf_putc(wbuf_t *b, char c)
{
    wbuf_put(b, &c, 1);
}

/* Decimal integers (JSON numbers and Prometheus sample values alike). */
void wbuf_u64(wbuf_t *b, uint64_t v);
void wbuf_i64(wbuf_t *b, int64_t v);

/* ---- JSON ---------------------------------------------------------------------------------- */

/* A JSON string of the n bytes at s, quotes included: '"' and '\\' escaped, \n \r \t as such,
 * every other byte below 0x20 as \u00XX; valid UTF-8 is copied as is, and each byte that does
 * not start a valid UTF-8 sequence (overlong forms, surrogates, past U+10FFFF, truncated)
 * becomes \ufffd, so the document always parses. s may hold NUL bytes (written as \u0000). */
void wbuf_json_strn(wbuf_t *b, const char *s, size_t n);
/* The same for a C string; NULL is written as null. */
void wbuf_json_str(wbuf_t *b, const char *s);
/* An RFC 3339 UTC string, or null for 0 ("never", "unknown"). */
void wbuf_json_time(wbuf_t *b, int64_t t);
void wbuf_json_bool(wbuf_t *b, int v);
/* "key": preceded by a comma unless first. Keys are our own literals: never escaped. */
void wbuf_json_key(wbuf_t *b, const char *key, int first);

/* ---- Prometheus text exposition 0.0.4 -------------------------------------------------------- */

/* A label value without its quotes: backslash, double quote and newline escaped as the format
 * requires; every other byte as is. */
void wbuf_prom_label(wbuf_t *b, const char *v);
/* A sample value as Go's strconv reads it: %.15g, NaN, +Inf, -Inf. */
void wbuf_prom_double(wbuf_t *b, double v);
/* A family's "# HELP name help" and "# TYPE name type" lines. */
void wbuf_prom_family(wbuf_t *b, const char *name, const char *type, const char *help);
/* ,key="value" (value escaped; NULL as ""). */
void wbuf_prom_pair(wbuf_t *b, const char *key, const char *value);
/* name{common[,l1="v1"[,l2="v2"]]} v, a label left out when its key is NULL; common holds the
 * labels every sample carries, pre-rendered (vantage="...",shard="..."). */
void wbuf_prom_u64(wbuf_t *b, const char *name, const wbuf_t *common, const char *l1,
                   const char *v1, const char *l2, const char *v2, uint64_t v);

#endif
