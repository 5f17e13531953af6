/* http.c - the status of an HTTP/1.x response head (see http.h): interim 1xx responses skipped,
 * bare LF tolerated, a malformed status line reported with the line itself, escaped. */
#include "probes/http.h"

#include <stdio.h>
#include <string.h>

char *http_escape(const void *in, size_t n, char *out, size_t cap)
{
    const unsigned char *s = in;
    size_t o = 0, cut = 0; /* cut: the last escape boundary with room for "..." after it */
    if (cap == 0)
        return out;
    for (size_t i = 0; i < n; i++) {
        char e[5];
        unsigned char c = s[i];
        if (c == '\\' || c == '"')
            snprintf(e, sizeof(e), "\\%c", c);
        else if (c == '\r')
            snprintf(e, sizeof(e), "\\r");
        else if (c == '\n')
            snprintf(e, sizeof(e), "\\n");
        else if (c == '\t')
            snprintf(e, sizeof(e), "\\t");
        else if (c < 0x20 || c > 0x7e)
            snprintf(e, sizeof(e), "\\x%02x", c);
        else
            snprintf(e, sizeof(e), "%c", c);
        size_t len = strlen(e);
        if (o + len + 1 > cap) { /* does not fit: end at the last boundary that leaves "..." room */
            o = cut;
            if (o + 4 <= cap) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, e, len);
        o += len;
        if (o + 4 <= cap)
            cut = o;
    }
    out[o] = '\0';
    return out;
}

static int bad(http_status_t *out, const unsigned char *line, size_t n, const char *why)
{
    char esc[112];
    snprintf(out->error, sizeof(out->error), "%s: \"%s\"", why,
             http_escape(line, n, esc, sizeof(esc)));
    return HTTP_STATUS_BAD;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* One status line, p[0..m) without its line end; complete says whether the LF was seen. Checks
 * what is there so far, so a line that cannot become valid is refused before it ends. */
static int status_line(const unsigned char *p, size_t m, int complete, http_status_t *out)
{
    static const char version[] = "HTTP/1.";
    if (memchr(p, '\0', m) != NULL)
        return bad(out, p, m, "NUL byte in the status line");
    for (size_t i = 0; i < m && i < 7; i++)
        if (p[i] != (unsigned char)version[i])
            return bad(out, p, m, "not an HTTP/1.x status line");
    if ((m > 7 && !is_digit(p[7])) || (m > 8 && p[8] != ' '))
        return bad(out, p, m, "not an HTTP/1.x status line");
    for (size_t i = 9; i < m && i < 12; i++)
        if (!is_digit(p[i]))
            return bad(out, p, m, i == 9 ? "missing status code" : "status code not 3 digits");
    if (m > 12 && p[12] != ' ' && !(p[12] == '\r' && !complete))
        return bad(out, p, m,
                   is_digit(p[12]) ? "status code not 3 digits" : "no space after the status code");
    if (!complete)
        return HTTP_STATUS_MORE;
    if (m < 8)
        return bad(out, p, m, "not an HTTP/1.x status line");
    if (m <= 9)
        return bad(out, p, m, "missing status code");
    if (m < 12)
        return bad(out, p, m, "status code not 3 digits");
    int code = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (code < 100 || code > 599)
        return bad(out, p, m, "status code outside 100..599");
    out->code = code;
    return HTTP_STATUS_DONE;
}

int http_status_parse(const void *buf, size_t len, http_status_t *out)
{
    const unsigned char *p = buf, *end = p + len;
    int in_interim = 0; /* between an interim status line and the empty line ending its head */
    out->code = 0;
    out->interim = 0;
    out->line_end = 0;
    out->error[0] = '\0';
    while (p < end) {
        const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((lf ? lf : end) - p);
        if (in_interim) {
            if (memchr(p, '\0', n) != NULL)
                return bad(out, p, n, "NUL byte in an interim response's header");
            if (lf == NULL)
                return HTTP_STATUS_MORE;
            if (n == 0 || (n == 1 && p[0] == '\r'))
                in_interim = 0;
            p = lf + 1;
            continue;
        }
        size_t m = lf && n > 0 && p[n - 1] == '\r' ? n - 1 : n;
        int rc = status_line(p, m, lf != NULL, out);
        if (rc != HTTP_STATUS_DONE)
            return rc;
        if (out->code >= 200 || out->code == 101) {
            out->line_end = (size_t)(lf + 1 - (const unsigned char *)buf);
            return HTTP_STATUS_DONE;
        }
        out->interim++;
        out->code = 0;
        in_interim = 1;
        p = lf + 1;
    }
    return HTTP_STATUS_MORE;
}
