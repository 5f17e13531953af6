/* dns.h - the resolve cache: the system resolver's whole answer (every A and AAAA record) per
 * (host, network view), kept for the answer's TTL, one lookup in flight per key, and the round
 * robin counter a client keeps per name. Lookups run on the loop through c-ares. */
#ifndef FS_DNS_H
#define FS_DNS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "probes/url.h"

#define DNS_ADDR_LEN 46 /* INET6_ADDRSTRLEN */

/* The addresses behind one name, in the order the resolver (or the override map) gave them. */
typedef struct dns_addrs_s {
    size_t n;
    char a[FS_RESOLVE_MAX_ADDRS][DNS_ADDR_LEN];
} dns_addrs_t;

typedef struct dns_opts_s {
    uint32_t min_ttl_s;      /* an answer is kept at least this long (default 5) */
    uint32_t max_ttl_s;      /* and at most this long, whatever its TTL (default 300) */
    uint32_t negative_ttl_s; /* a failed lookup is remembered this long (default 5) */
    uint32_t timeout_ms;     /* what one lookup gives each name server (default 5000), split
                                over two tries: c-ares waits t/3, then 2t/3 */
    size_t max_entries;      /* cache size (default 4096); when full, expired entries go, then
                                every entry without a lookup in flight */
    const char *servers;     /* "ip[:port],..." asked instead of /etc/resolv.conf's name
                                servers (a per-view DNS server, the lab's); NULL: the system's */
} dns_opts_t;

/* One cache per loop (or per network configuration). Loop thread only. */
typedef struct dns_cache_s dns_cache_t;

/* Creates a cache on loop; o NULL: defaults. The system configuration (/etc/resolv.conf:
 * name servers, search list, ndots; /etc/nsswitch.conf: whether /etc/hosts comes first) is read
 * now and again when /etc/resolv.conf changes, between lookups; /etc/hosts at each lookup.
 * Returns 0 or a negative UV_E* code (UV_EINVAL: servers unparsable). */
int dns_cache_new(dns_cache_t **out, uv_loop_t *loop, const dns_opts_t *o);
/* Cancels every waiting request (no callback fires), stops the lookups, frees the cache; done
 * (may be NULL) runs after the last handle closed. May be called from inside a dns callback:
 * the teardown then waits until the resolver returns. */
void dns_cache_close(dns_cache_t *c, void (*done)(void *arg), void *arg);

typedef struct dns_answer_s {
    int status;        /* 0, or UV_EAI_NONAME (no such name), UV_EAI_NODATA (no A/AAAA record),
                          UV_EAI_AGAIN (no answer in time), UV_ECONNREFUSED (no name server
                          could be reached), UV_EAI_FAIL (server failure, refused, bad answer) */
    char error[160];   /* in words when status < 0 */
    dns_addrs_t addrs; /* when status == 0: at least one address */
    uint32_t ttl_s;    /* how long this answer is kept (clamped TTL, or negative_ttl_s) */
    int from_cache;    /* answered by an earlier lookup (not one started or joined now) */
} dns_answer_t;

typedef struct dns_req_s dns_req_t;
/* a is valid during the callback only. */
typedef void (*dns_cb)(dns_req_t *req, const dns_answer_t *a);

/* A request, embedded by its owner (like uv_getaddrinfo_t); data is the owner's, the rest is
 * private. */
struct dns_req_s {
    void *data;
    dns_cb cb;
    struct dns_entry_s *entry;
    dns_req_t *prev, *next;
};

#define DNS_PENDING 1

/* Resolves host (a name, not an IP literal) in view (a network-view key, NULL = ""): answers
 * from the cache while the last answer for (host, view) is fresh, else starts a lookup or joins
 * the one in flight for that key (single flight). Returns 0 with the answer in *now (a cached
 * success or failure; cb is never called); DNS_PENDING when req waits: cb runs exactly once,
 * later, unless dns_cancel(req) or dns_cache_close comes first; or a negative UV_E* code
 * synchronously (UV_EINVAL: empty or too long host; UV_ECANCELED: the cache is closing). The
 * wait starts now: no queue sits between the request and the lookup (c-ares runs on the loop,
 * not on the thread pool), so a caller's DNS timeout measures the lookup itself. */
int dns_resolve(dns_cache_t *c, dns_req_t *req, const char *host, const char *view,
                dns_answer_t *now, dns_cb cb);
/* Stops waiting: cb will not run. The lookup goes on for the others (and for the cache). A
 * request that is not waiting is left alone. */
void dns_cancel(dns_req_t *req);

/* The round robin of a client: returns the counter for (host, view) and advances it, so
 * successive calls give 0, 1, 2, ...; the caller takes it modulo its address count. */
uint32_t dns_next_index(dns_cache_t *c, const char *host, const char *view);

typedef struct dns_stats_s {
    uint64_t lookups;        /* lookups started */
    uint64_t hits;           /* requests answered from a fresh entry (positive or negative) */
    uint64_t negative_hits;  /* of those, failures remembered */
    uint64_t joined;         /* requests that waited on a lookup another request started */
    uint64_t failures;       /* lookups that failed */
    uint64_t config_reloads; /* times /etc/resolv.conf changed and was read again */
    size_t entries;          /* keys held (answers, failures, round robin counters) */
    size_t in_flight;        /* lookups under way */
} dns_stats_t;
void dns_cache_stats(const dns_cache_t *c, dns_stats_t *s);

#endif
