/* fuzz_url.c - libFuzzer target for the URL parser, the proxy URL parser and the --resolve
 * NAME:ADDR parser: the input (as a C string) is a profile URL, a proxy URL and a DNS override. */
#include "probes/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int terminated(const char *s, size_t n)
{
    return memchr(s, '\0', n) != NULL;
}

static void check_url(const char *s)
{
    fs_url_t u;
    char err[256];
    memset(err, 0, sizeof(err));
    if (fs_url_parse(&u, s, err) != 0) {
        if (err[0] == '\0')
            abort(); /* a failure always says why */
        return;
    }
    if (!terminated(u.scheme, sizeof(u.scheme)) || !terminated(u.host, sizeof(u.host)) ||
        !terminated(u.path, sizeof(u.path)))
        abort();
    if (strcmp(u.scheme, "https") != 0 && strcmp(u.scheme, "http") != 0)
        abort();
    if (u.host[0] == '\0' || u.port < 1 || u.port > 65535)
        abort();
    if (strcmp(u.path, "/") == 0) /* "/" alone is stored as "": handshake only */
        abort();
    /* The path becomes the request-target of "GET <path> HTTP/1.1" (probe.c): origin-form,
     * so it starts with '/' (RFC 9112 3.2.1). */
    if (u.path[0] != '\0' && u.path[0] != '/')
        abort();
    /* The host goes into SNI and the Host header: a bracketed host is an IPv6 literal and no
     * host carries spaces or control characters (CR LF would split the request). */
    for (const char *c = u.host; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            abort();
    int bracketed = strstr(s, "://")[3] == '[';
    if (bracketed && (strchr(u.host, ':') == NULL || !fs_is_ip_literal(u.host)))
        abort();
    if (!bracketed && strchr(u.host, ':') != NULL)
        abort();
}

static void check_resolve(const char *s)
{
    fs_resolve_t m = {0};
    char err[256];
    memset(err, 0, sizeof(err));
    if (fs_resolve_add_spec(&m, s, err) == 0) {
        if (m.n != 1 || !fs_is_ip_literal(m.e[0].addr))
            abort();
        /* The name is everything before the first colon; it must now resolve. */
        const char *addr = fs_resolve_lookup(&m, m.e[0].name);
        if (addr == NULL || strcmp(addr, m.e[0].addr) != 0)
            abort();
        if (strncmp(s, m.e[0].name, strlen(m.e[0].name)) != 0)
            abort();
        /* A second spec for the same map keeps the first entry reachable. */
        if (fs_resolve_add_spec(&m, "second.example:192.0.2.1", err) != 0 ||
            fs_resolve_lookup(&m, "SECOND.example") == NULL ||
            fs_resolve_lookup(&m, m.e[0].name) == NULL)
            abort();
    } else {
        if (m.n != 0 || err[0] == '\0')
            abort();
    }
    fs_resolve_free(&m);
    if (m.n != 0 || m.e != NULL)
        abort();
    (void)fs_is_ip_literal(s);
}

/* As a proxy URL: parsed without its userinfo, and the text messages show has no password. */
static void check_proxy(const char *s)
{
    fs_proxy_t px;
    char err[256], shown[64];
    memset(err, 0, sizeof(err));
    if (fs_proxy_parse(&px, s, err) == 0) {
        if (strcmp(px.u.scheme, "http") != 0 || px.u.path[0] != '\0' || px.u.host[0] == '\0')
            abort();
        if (px.userinfo[0] != '\0') {
            /* "http://" + user + ":***" + "@host...": the password is gone, the rest is kept */
            size_t ul = strlen(px.userinfo);
            const char *colon = strchr(px.userinfo, ':');
            int user = colon ? (int)(colon - px.userinfo) : 0;
            char want[400];
            snprintf(want, sizeof(want), "%.7s%.*s%s***%s", s, user < 64 ? user : 64, px.userinfo,
                     colon ? ":" : "", s + 7 + ul);
            if (s[7 + ul] != '@' || strcmp(want, px.redacted) != 0)
                abort();
        }
    } else if (err[0] == '\0') {
        abort();
    }
    fs_url_redact(s, shown, sizeof(shown));
    if (strnlen(shown, sizeof(shown)) >= sizeof(shown))
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_url(s);
    check_proxy(s);
    check_resolve(s);
    free(s);
    return 0;
}
