/* url.h - the small URL parser probes and fetches share, and the DNS override map
 * (curl's --resolve NAME:ADDR) every simulated network view carries. */
#ifndef FS_URL_H
#define FS_URL_H

#include <stddef.h>

typedef struct fs_url_s {
    char scheme[8];  /* "https" or "http", lower case */
    char host[256];  /* without brackets for IPv6 literals */
    int port;        /* explicit or the scheme default */
    char path[1024]; /* "" when the URL has no path (or only "/"): handshake only */
} fs_url_t;

/* Parses an http(s) URL. Returns 0, or -1 with a message in err, which quotes the URL with
 * its userinfo redacted (fs_url_redact). A URL with userinfo is refused ("user@host"). */
int fs_url_parse(fs_url_t *u, const char *url, char err[256]);

/* Writes url into out (size n, always terminated, cut if longer) with the password of its
 * userinfo replaced: "http://user:***@host/..."; a userinfo without ':' becomes "***@". The
 * userinfo is taken to be what precedes the last '@' before any '?' or '#' (not only in the
 * authority, so a password with an unencoded '/' is hidden too; a rare path with '@' is then
 * over-redacted). For every message, log line or report that shows a URL. Returns out. */
char *fs_url_redact(const char *url, char *out, size_t n);

/* An HTTP proxy: "http://[user:password@]host[:port]" (port default 80), no path. */
typedef struct fs_proxy_s {
    fs_url_t u;         /* scheme "http", host, port; path "" */
    char userinfo[256]; /* "user:password" as written (percent-encoded), "" when none */
    char redacted[320]; /* the URL to show: "http://user:***@host:port" */
} fs_proxy_t;

/* Parses a proxy URL. The userinfo ends at the last '@' (a proxy URL has no path) and may only
 * hold RFC 3986 userinfo characters (unreserved, sub-delims, ':', %XX): others must be
 * percent-encoded. Returns 0, or -1 with err filled; err never contains the password. */
int fs_proxy_parse(fs_proxy_t *p, const char *url, char err[256]);

typedef struct fs_resolve_entry_s {
    char *name;
    char *addr; /* an IPv4 or IPv6 literal */
} fs_resolve_entry_t;

/* A DNS override map: names here never reach the system resolver. Entries keep their order;
 * past a few entries a hash index makes lookups O(1), so a map of 100,000 names costs linear
 * time to build and compare. Zero-initialise; build only with fs_resolve_add*. */
typedef struct fs_resolve_s {
    fs_resolve_entry_t *e;
    size_t n, cap;
    size_t *slot; /* open addressing: entry index + 1, 0 when empty; NULL while n is small */
    size_t nslot; /* a power of two, at least twice n */
} fs_resolve_t;

/* Adds NAME -> ADDR (ADDR must be an IP literal). Returns 0 or -1 with err filled. */
int fs_resolve_add(fs_resolve_t *m, const char *name, const char *addr, char err[256]);
/* Parses "NAME:ADDR" (ADDR may be an IPv6 literal, optionally in brackets) and adds it. */
int fs_resolve_add_spec(fs_resolve_t *m, const char *spec, char err[256]);
/* Returns the override for name (case-insensitive; the first one added wins), or NULL. */
const char *fs_resolve_lookup(const fs_resolve_t *m, const char *name);
void fs_resolve_free(fs_resolve_t *m);
/* Returns 1 when s is an IPv4 or IPv6 literal. */
int fs_is_ip_literal(const char *s);

#endif
