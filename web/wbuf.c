/* wbuf.c - the capped output buffer and the escapers every API document goes through: one for
 * JSON strings, one for Prometheus label values (see wbuf.h for what each guarantees). */
#include "web/wbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "probes/util.h"

/* Makes room for n more bytes plus the NUL; 0, or -1 with the buffer marked failed. */
static int room(wbuf_t *b, size_t n)
{
    if (b->failed)
        return -1;
    if (n < b->cap - b->len)
        return 0;
    if (n >= b->max - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t want = b->len + n + 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap); /* output sized by peers' data: fail, never abort */
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void wbuf_init(wbuf_t *b, size_t hint, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
    if (hint >= max)
        hint = max - 1;
    if (room(b, hint) == 0)
        b->data[0] = '\0';
}

char *wbuf_steal(wbuf_t *b, size_t *len)
{
    char *d = NULL;
    if (!b->failed && room(b, 0) == 0) {
        d = b->data;
        if (len != NULL)
            *len = b->len;
        b->data = NULL;
    }
    wbuf_free(b);
    return d;
}

void wbuf_free(wbuf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int wbuf_done(const wbuf_t *b)
{
    return b->failed ? UV_ENOMEM : 0;
}

void wbuf__put_slow(wbuf_t *b, const char *s, size_t n)
{
    if (room(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void wbuf_u64(wbuf_t *b, uint64_t v)
{
    char tmp[20];
    int i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    wbuf_put(b, tmp + i, sizeof(tmp) - i);
}

void wbuf_i64(wbuf_t *b, int64_t v)
{
    if (v < 0) {
        wbuf_putc(b, '-');
        wbuf_u64(b, (uint64_t)0 - (uint64_t)v); /* INT64_MIN too */
    } else {
        wbuf_u64(b, (uint64_t)v);
    }
}

/* ---- JSON ---------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1..4) within n > 0 bytes, or 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

void wbuf_json_strn(wbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
    wbuf_putc(b, '"');
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            p++;
            continue;
        }
        wbuf_put(b, (const char *)run, (size_t)(p - run));
        if (c >= 0x80) {
            size_t l = utf8_len(p, (size_t)(end - p));
            if (l > 0)
                wbuf_put(b, (const char *)p, l);
            else
                wbuf_put(b, "\\ufffd", 6);
            p += l > 0 ? l : 1;
        } else {
            char esc[6] = {'\\', 0, '0', '0', 0, 0};
            switch (c) {
            case '"':
                esc[1] = '"';
                break;
            case '\\':
                esc[1] = '\\';
                break;
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            default:
                esc[1] = 'u';
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
            }
            wbuf_put(b, esc, esc[1] == 'u' ? 6 : 2);
            p++;
        }
        run = p;
    }
    wbuf_put(b, (const char *)run, (size_t)(p - run));
    wbuf_putc(b, '"');
}

void wbuf_json_str(wbuf_t *b, const char *s)
{
    if (s == NULL)
        wbuf_put(b, "null", 4);
    else
        wbuf_json_strn(b, s, strlen(s));
}

void wbuf_json_time(wbuf_t *b, int64_t t)
{
    char tmp[32];
    if (t == 0) {
        wbuf_put(b, "null", 4);
        return;
    }
    wbuf_putc(b, '"');
    wbuf_puts(b, fs_rfc3339(t, tmp, sizeof(tmp)));
    wbuf_putc(b, '"');
}

void wbuf_json_bool(wbuf_t *b, int v)
{
    if (v)
        wbuf_put(b, "true", 4);
    else
        wbuf_put(b, "false", 5);
}

void wbuf_json_key(wbuf_t *b, const char *key, int first)
{
    if (!first)
        wbuf_putc(b, ',');
    wbuf_putc(b, '"');
    wbuf_puts(b, key);
    wbuf_put(b, "\":", 2);
}

/* ---- Prometheus ---------------------------------------------------------------------------- */

void wbuf_prom_label(wbuf_t *b, const char *v)
{
    const char *run = v;
    for (; *v; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        if (esc == NULL)
            continue;
        wbuf_put(b, run, (size_t)(v - run));
        wbuf_put(b, esc, 2);
        run = v + 1;
    }
    wbuf_put(b, run, (size_t)(v - run));
}

void wbuf_prom_double(wbuf_t *b, double v)
{
    char tmp[40];
    if (isnan(v))
        wbuf_puts(b, "NaN");
    else if (isinf(v))
        wbuf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else
        wbuf_put(b, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%.15g", v));
}

void wbuf_prom_family(wbuf_t *b, const char *name, const char *type, const char *help)
{
    wbuf_puts(b, "# HELP ");
    wbuf_puts(b, name);
    wbuf_putc(b, ' ');
    wbuf_puts(b, help);
    wbuf_puts(b, "\n# TYPE ");
    wbuf_puts(b, name);
    wbuf_putc(b, ' ');
    wbuf_puts(b, type);
    wbuf_putc(b, '\n');
}

void wbuf_prom_pair(wbuf_t *b, const char *key, const char *value)
{
    wbuf_putc(b, ',');
    wbuf_puts(b, key);
    wbuf_put(b, "=\"", 2);
    wbuf_prom_label(b, value != NULL ? value : "");
    wbuf_putc(b, '"');
}

void wbuf_prom_u64(wbuf_t *b, const char *name, const wbuf_t *common, const char *l1,
                   const char *v1, const char *l2, const char *v2, uint64_t v)
{
    wbuf_puts(b, name);
    wbuf_putc(b, '{');
    wbuf_put(b, common->data, common->len);
    if (l1 != NULL)
        wbuf_prom_pair(b, l1, v1);
    if (l2 != NULL)
        wbuf_prom_pair(b, l2, v2);
    wbuf_put(b, "} ", 2);
    wbuf_u64(b, v);
    wbuf_putc(b, '\n');
}
