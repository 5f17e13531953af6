/* url.c - http(s) URL parsing and the DNS override map (see url.h). */
#include "probes/url.h"
#include "probes/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *fs_url_redact(const char *url, char *out, size_t n)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    /* Up to '?' or '#', not '/': a password with an unencoded '/' is still hidden. A path
     * holding '@' is over-redacted in messages, the safe side. */
    const char *end = auth + strcspn(auth, "?#"), *at = NULL;
    for (const char *c = auth; c < end; c++)
        if (*c == '@')
            at = c;
    if (at == NULL) {
        snprintf(out, n, "%s", url);
        return out;
    }
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    int keep = colon ? (int)(colon - url) + 1 : (int)(auth - url); /* through "user:" */
    snprintf(out, n, "%.*s***%s", keep, url, at);
    return out;
}

int fs_url_parse(fs_url_t *u, const char *url, char err[256])
{
    memset(u, 0, sizeof(*u));
    char shown[256]; /* the URL as messages quote it: never its password */
    fs_url_redact(url, shown, sizeof(shown));
    const char *p = strstr(url, "://");
    if (p == NULL || p == url || (size_t)(p - url) >= sizeof(u->scheme)) {
        snprintf(err, 256, "\"%s\": not a URL (expected https://host[:port][/path])", shown);
        return -1;
    }
    for (size_t i = 0; url + i < p; i++)
        u->scheme[i] = (char)tolower((unsigned char)url[i]);
    if (strcmp(u->scheme, "https") == 0)
        u->port = 443;
    else if (strcmp(u->scheme, "http") == 0)
        u->port = 80;
    else {
        snprintf(err, 256, "\"%s\": unsupported scheme \"%s\" (use https or http)", shown,
                 u->scheme);
        return -1;
    }
    p += 3;
    const char *aend = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(aend - p)) != NULL) {
        snprintf(err, 256, "\"%s\": credentials in the URL are not supported", shown);
        return -1;
    }
    const char *hend;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (hend == NULL) {
            snprintf(err, 256, "\"%s\": unterminated IPv6 literal", shown);
            return -1;
        }
        if ((size_t)(hend - p - 1) >= sizeof(u->host) || hend == p + 1) {
            snprintf(err, 256, "\"%s\": bad host", shown);
            return -1;
        }
        memcpy(u->host, p + 1, (size_t)(hend - p - 1));
        unsigned char a6[16];
        if (inet_pton(AF_INET6, u->host, a6) != 1) {
            snprintf(err, 256, "\"%s\": [%s] is not an IPv6 address", shown, u->host);
            return -1;
        }
        hend++;
    } else {
        hend = p + strcspn(p, ":/?#");
        if (hend == p || (size_t)(hend - p) >= sizeof(u->host)) {
            snprintf(err, 256, "\"%s\": missing or too long host", shown);
            return -1;
        }
        memcpy(u->host, p, (size_t)(hend - p));
        for (char *c = u->host; *c; c++) {
            if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '.' || *c == '_')) {
                snprintf(err, 256, "\"%s\": invalid character in host", shown);
                return -1;
            }
        }
    }
    p = hend;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/' && *end != '?')) {
            snprintf(err, 256, "\"%s\": invalid port", shown);
            return -1;
        }
        u->port = (int)port;
        p = end;
    }
    if (*p && *p != '/' && *p != '?') {
        snprintf(err, 256, "\"%s\": unexpected \"%c\" after host", shown, *p);
        return -1;
    }
    if (strlen(p) + 1 >= sizeof(u->path)) {
        snprintf(err, 256, "\"%.64s...\": path too long", shown);
        return -1;
    }
    for (const char *c = p; *c; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            snprintf(err, 256, "\"%s\": control character or space in path", shown);
            return -1;
        }
    }
    if (*p == '?') /* "https://host?x": the request target is "/?x" */
        snprintf(u->path, sizeof(u->path), "/%s", p);
    else if (strcmp(p, "/") != 0)
        strcpy(u->path, p);
    return 0;
}

/* RFC 3986 userinfo: unreserved / pct-encoded / sub-delims / ":" */
static int userinfo_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\0' && (isalnum(c) || strchr("-._~!$&'()*+,;=:", c) != NULL))
            continue;
        if (c == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            i += 2;
            continue;
        }
        return 0;
    }
    return 1;
}

int fs_proxy_parse(fs_proxy_t *p, const char *url, char err[256])
{
    memset(p, 0, sizeof(*p));
    if (strlen(url) >= 300) {
        snprintf(err, 256, "proxy URL too long (%zu bytes)", strlen(url));
        return -1;
    }
    /* A proxy URL has no path, so its last '@' ends the userinfo even when a password holds
     * '/', '?' or '#' unencoded: nothing before it is ever quoted. */
    const char *sep = strstr(url, "://"), *at = strrchr(url, '@');
    const char *user = sep ? sep + 3 : url;
    char bare[300], uerr[256];
    if (at != NULL && at >= user) {
        size_t ulen = (size_t)(at - user);
        const char *colon = memchr(user, ':', ulen);
        int shown_user = colon ? (int)(colon - user) : 0;
        snprintf(p->redacted, sizeof(p->redacted), "%.*s%.*s%s***%s", (int)(user - url), url,
                 shown_user < 64 ? shown_user : 64, user, colon ? ":" : "", at);
        if (ulen == 0 || ulen >= sizeof(p->userinfo) || !userinfo_ok(user, ulen)) {
            snprintf(err, 256,
                     "\"%.160s\": the credentials are empty, too long or hold a character that "
                     "must be percent-encoded (e.g. @ as %%40, / as %%2F)",
                     p->redacted);
            return -1;
        }
        memcpy(p->userinfo, user, ulen);
        snprintf(bare, sizeof(bare), "%.*s%s", (int)(user - url), url, at + 1);
    } else {
        snprintf(p->redacted, sizeof(p->redacted), "%s", url);
        snprintf(bare, sizeof(bare), "%s", url);
    }
    /* From here on: the URL without its userinfo, quoted in its redacted form. */
    if (strncasecmp(bare, "http://", 7) != 0) {
        snprintf(err, 256, "\"%.200s\": expected http://host:port", p->redacted);
        return -1;
    }
    if (fs_url_parse(&p->u, bare, uerr) != 0) {
        const char *why = strstr(uerr, "\": ");
        snprintf(err, 256, "\"%.200s\": %s", p->redacted, why ? why + 3 : uerr);
        return -1;
    }
    if (p->u.path[0] != '\0') {
        snprintf(err, 256, "\"%.200s\": expected http://host:port (no path)", p->redacted);
        return -1;
    }
    return 0;
}

int fs_is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Below this many entries a linear scan is as fast as hashing. */
#define RESOLVE_INDEX_MIN 16

/* Indexes entry i unless an earlier entry has the same name (the name's first entry is the one
 * indexed; the others hang off it through next). */
static void index_insert(fs_resolve_t *m, size_t i)
{
    size_t mask = m->nslot - 1;
    for (size_t s = fs_name_hash(m->e[i].name) & mask;; s = (s + 1) & mask) {
        if (m->slot[s] == 0) {
            m->slot[s] = i + 1;
            return;
        }
        if (strcasecmp(m->e[m->slot[s] - 1].name, m->e[i].name) == 0)
            return;
    }
}

static void index_rebuild(fs_resolve_t *m, size_t nslot)
{
    free(m->slot);
    m->slot = fs_xcalloc(nslot, sizeof(*m->slot));
    m->nslot = nslot;
    for (size_t i = 0; i < m->n; i++)
        index_insert(m, i);
}

/* Index + 1 of the first entry of name, 0 when absent. */
static size_t first_entry(const fs_resolve_t *m, const char *name)
{
    if (m == NULL || m->n == 0)
        return 0;
    if (m->slot == NULL) {
        for (size_t i = 0; i < m->n; i++)
            if (strcasecmp(m->e[i].name, name) == 0)
                return i + 1;
        return 0;
    }
    size_t mask = m->nslot - 1;
    for (size_t s = fs_name_hash(name) & mask; m->slot[s] != 0; s = (s + 1) & mask)
        if (strcasecmp(m->e[m->slot[s] - 1].name, name) == 0)
            return m->slot[s];
    return 0;
}

/* Same address, whatever its spelling ("::1" and "0::1"). */
static int same_addr(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    if (inet_pton(AF_INET, a, x) == 1)
        return inet_pton(AF_INET, b, y) == 1 && memcmp(x, y, 4) == 0;
    return inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1 &&
           memcmp(x, y, 16) == 0;
}

int fs_resolve_add(fs_resolve_t *m, const char *name, const char *addr, char err[256])
{
    if (*name == '\0') {
        snprintf(err, 256, "empty host name in resolve override");
        return -1;
    }
    for (const char *c = name; *c; c++) {
        if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '.' || *c == '_')) {
            snprintf(err, 256, "resolve override: \"%.64s\" is not a host name", name);
            return -1;
        }
    }
    if (!fs_is_ip_literal(addr)) {
        snprintf(err, 256, "resolve override for \"%s\": \"%s\" is not an IP address", name, addr);
        return -1;
    }
    size_t last = first_entry(m, name), count = 0; /* index + 1 of the name's last entry */
    for (size_t i = last; i != 0; i = m->e[i - 1].next) {
        if (same_addr(m->e[i - 1].addr, addr)) {
            snprintf(err, 256, "resolve override for \"%s\": \"%s\" is listed twice", name, addr);
            return -1;
        }
        last = i;
        count++;
    }
    if (count >= FS_RESOLVE_MAX_ADDRS) {
        snprintf(err, 256, "resolve override for \"%s\": more than %d addresses", name,
                 FS_RESOLVE_MAX_ADDRS);
        return -1;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 4;
        m->e = fs_xrealloc(m->e, m->cap * sizeof(*m->e));
    }
    m->e[m->n].name = fs_xstrdup(name);
    m->e[m->n].addr = fs_xstrdup(addr);
    m->e[m->n].next = 0;
    if (last != 0)
        m->e[last - 1].next = m->n + 1;
    m->n++;
    if (m->n >= RESOLVE_INDEX_MIN && m->n * 2 > m->nslot)
        index_rebuild(m, m->nslot ? m->nslot * 2 : 2 * RESOLVE_INDEX_MIN);
    else if (m->slot != NULL)
        index_insert(m, m->n - 1);
    return 0;
}

int fs_resolve_add_spec(fs_resolve_t *m, const char *spec, char err[256])
{
    const char *colon = strchr(spec, ':');
    if (colon == NULL) {
        snprintf(err, 256, "--resolve \"%s\": expected NAME:ADDR", spec);
        return -1;
    }
    char name[256];
    if ((size_t)(colon - spec) >= sizeof(name)) {
        snprintf(err, 256, "--resolve: name too long");
        return -1;
    }
    memcpy(name, spec, (size_t)(colon - spec));
    name[colon - spec] = '\0';
    char addr[64];
    const char *a = colon + 1;
    size_t al = strlen(a);
    if (al >= 2 && a[0] == '[' && a[al - 1] == ']') {
        a++;
        al -= 2;
    }
    if (al >= sizeof(addr)) {
        snprintf(err, 256, "--resolve \"%s\": address too long", spec);
        return -1;
    }
    memcpy(addr, a, al);
    addr[al] = '\0';
    return fs_resolve_add(m, name, addr, err);
}

const char *fs_resolve_lookup(const fs_resolve_t *m, const char *name)
{
    size_t i = first_entry(m, name);
    return i ? m->e[i - 1].addr : NULL;
}

size_t fs_resolve_lookup_all(const fs_resolve_t *m, const char *name,
                             const char *out[FS_RESOLVE_MAX_ADDRS])
{
    size_t n = 0;
    for (size_t i = first_entry(m, name); i != 0 && n < FS_RESOLVE_MAX_ADDRS; i = m->e[i - 1].next)
        out[n++] = m->e[i - 1].addr;
    return n;
}

int fs_resolve_equal(const fs_resolve_t *a, const fs_resolve_t *b)
{
    if (a->n != b->n)
        return 0;
    /* Same entry count, and every name of a has the same list in b: then b has no other name. */
    for (size_t i = 0; i < a->n; i++) {
        if (first_entry(a, a->e[i].name) != i + 1)
            continue; /* a later address of a name already compared */
        const char *x[FS_RESOLVE_MAX_ADDRS], *y[FS_RESOLVE_MAX_ADDRS];
        size_t nx = fs_resolve_lookup_all(a, a->e[i].name, x);
        size_t ny = fs_resolve_lookup_all(b, a->e[i].name, y);
        if (nx != ny)
            return 0;
        for (size_t k = 0; k < nx; k++)
            if (strcmp(x[k], y[k]) != 0)
                return 0;
    }
    return 1;
}

void fs_resolve_free(fs_resolve_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].name);
        free(m->e[i].addr);
    }
    free(m->e);
    free(m->slot);
    memset(m, 0, sizeof(*m));
}
