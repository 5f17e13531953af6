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
    char *addr;  /* an IPv4 or IPv6 literal */
    size_t next; /* index + 1 of the next address of the same name, 0 for its last one */
} fs_resolve_entry_t;

/* A name holds at most this many addresses (a DNS round robin or a farm behind one name). */
#define FS_RESOLVE_MAX_ADDRS 16

/* A DNS override map: names here never reach the system resolver. A name may map to several
 * addresses (up to FS_RESOLVE_MAX_ADDRS), kept in the order they were added. Entries (one per
 * name and address) keep their order, so walking e[] visits every address; past a few entries a
 * hash index makes lookups O(1), so a map of 100,000 names costs linear time to build and
 * compare. Zero-initialise; build only with fs_resolve_add*. */
typedef struct fs_resolve_s {
    fs_resolve_entry_t *e;
    size_t n, cap;
    size_t *slot; /* open addressing: index + 1 of a name's first entry, 0 when empty; NULL while
                     n is small */
    size_t nslot; /* a power of two, at least twice n */
} fs_resolve_t;

/* Adds NAME -> ADDR (ADDR must be an IP literal). Adding a name that is already present appends
 * ADDR to its addresses (until issue 10 the first entry won and later ones were ignored); the
 * same address twice for one name, or more than FS_RESOLVE_MAX_ADDRS of them, is refused.
 * Returns 0 or -1 with err filled. */
int fs_resolve_add(fs_resolve_t *m, const char *name, const char *addr, char err[256]);
/* Parses "NAME:ADDR" (ADDR may be an IPv6 literal, optionally in brackets) and adds it. */
int fs_resolve_add_spec(fs_resolve_t *m, const char *spec, char err[256]);
/* Returns the first address of name (case-insensitive), or NULL. */
const char *fs_resolve_lookup(const fs_resolve_t *m, const char *name);
/* Every address of name, in the order added: fills out (borrowed pointers into the map) and
 * returns their count, 0 when the name is not in the map (or m is NULL). */
size_t fs_resolve_lookup_all(const fs_resolve_t *m, const char *name,
                             const char *out[FS_RESOLVE_MAX_ADDRS]);
/* 1 when both maps hold the same names (case-insensitively, in any order) with the same
 * addresses in the same order (the order decides where round robin starts). */
int fs_resolve_equal(const fs_resolve_t *a, const fs_resolve_t *b);
void fs_resolve_free(fs_resolve_t *m);
/* Returns 1 when s is an IPv4 or IPv6 literal. */
int fs_is_ip_literal(const char *s);

#endif
