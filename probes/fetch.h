/* fetch.h - HTTP (and, on request, LDAP) retrieval of CRLs, AIA certificates and OCSP responses
 * with libcurl's multi-socket interface driven by the caller's libuv loop: no blocking call. */
#ifndef FS_FETCH_H
#define FS_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "probes/url.h"

typedef struct fetch_s fetch_t;
typedef struct fetch_job_s fetch_job_t;

/* What became of a retrieval. FETCH_OK means an HTTP response was received completely (any
 * status: check http_status); every other value is a failure described in result.error. */
typedef enum {
    FETCH_OK = 0,
    FETCH_ERR_DNS,       /* the name could not be resolved (or is not in a sealed override map) */
    FETCH_ERR_REFUSED,   /* the TCP connection was refused */
    FETCH_ERR_CONNECT,   /* the TCP connection failed otherwise (unreachable, connect timeout) */
    FETCH_ERR_TIMEOUT,   /* connected, but the response did not complete within timeout_ms */
    FETCH_ERR_TOO_BIG,   /* the body exceeded max_bytes; the transfer was aborted */
    FETCH_ERR_REDIRECTS, /* more than max_redirects redirects */
    FETCH_ERR_SCHEME,    /* not an http:// URL (file://, https://, ldap:// unless allow_ldap):
                            never fetched */
    FETCH_ERR_URL,       /* the URL (or a redirect target) is malformed */
    FETCH_ERR_RECV,      /* connection closed or reset, empty or malformed response */
    FETCH_ERR_OTHER,
    FETCH_ERR_COUNT
} fetch_err_t;

/* Stable short names ("ok", "dns", "refused", ...) for logs and JSON. */
extern const char *const fetch_err_names[FETCH_ERR_COUNT];

typedef struct fetch_req_s {
    const char *url;             /* http://host[:port]/path; copied */
    uint32_t timeout_ms;         /* whole retrieval, redirects included; 0 = 15000 */
    size_t max_bytes;            /* hard cap on a response body; 0 = 16 MiB */
    int max_redirects;           /* followed by the fetcher itself, http:// only; default 3 */
    const char *proxy;           /* "http://[user:password@]host:port" or NULL (the environment
                                    is ignored); credentials go as Proxy-Authorization Basic and
                                    never into result.error */
    const fs_resolve_t *resolve; /* DNS overrides, may be NULL; copied */
    int dns_override_only;       /* never ask the system resolver: a name that is neither an IP
                                    literal nor in resolve fails as FETCH_ERR_DNS */
    const char *source_addr;     /* local IP literal to bind, or NULL */
    const void *post_body;       /* NULL: GET. Else POST these post_len bytes (copied) with
                                    Content-Type post_type; a 301/302/303 redirect turns the
                                    request into a GET, a 307/308 one re-sends the POST */
    size_t post_len;
    const char *post_type; /* e.g. "application/ocsp-request"; NULL: no Content-Type */
    int allow_ldap;        /* ldap://host[:port]/dn?attrs URLs are fetched through libcurl's LDAP
                              (anonymous bind, no proxy; the name obeys resolve and
                              dns_override_only). The body is then libcurl's LDIF-like text
                              ("DN: ...\n\tattr:: base64\n"), http_status 0 */
} fetch_req_t;

/* The default of fetch_set_inflight_limit(). */
#define FETCH_DEFAULT_INFLIGHT_BYTES ((size_t)64 << 20)

/* Fills the defaults above (timeout 15 s, 16 MiB, 3 redirects, nothing else). */
void fetch_req_init(fetch_req_t *r);

typedef struct fetch_result_s {
    fetch_err_t err;
    int resolved;     /* the host name resolved (or needed no resolution) */
    int connected;    /* a TCP connection was established (to the proxy when one is used) */
    long http_status; /* final response status, 0 when none was received (and for LDAP) */
    size_t bytes;     /* body bytes received for the final response (<= max_bytes) */
    uint32_t time_ms; /* from fetch_start to completion */
    int redirects;    /* redirects followed */
    const unsigned char *body; /* the body (bytes long); owned by the fetcher, valid only during
                                  the callback; NULL when empty */
    const char *url;           /* the URL requested (valid during the callback) */
    char error[160];           /* "" when err == FETCH_OK, else a readable reason */
} fetch_result_t;

/* Called once per started job, from the loop. The job is freed when it returns. */
typedef void (*fetch_cb)(void *arg, const fetch_result_t *r);

/* Creates a fetcher on loop. Returns 0 or a negative UV_E* code. */
int fetch_new(fetch_t **out, uv_loop_t *loop);

/* Cancels every job (their callbacks are never called), closes all handles and frees f; done
 * (may be NULL) is called after the last close callback. Called from inside a fetch callback,
 * the teardown of the curl handle is deferred until that callback returns. */
void fetch_close(fetch_t *f, void (*done)(void *arg), void *arg);

/* Starts retrieving req->url. Returns 0 and calls cb exactly once, later, from the loop; or
 * returns a negative UV_E* code synchronously and never calls cb (UV_EINVAL: NULL url, a
 * source address that is not an IP literal; UV_ENOMEM; UV_ECANCELED: the fetcher is closing).
 * Everything req points to is copied. Problems of the URL itself are results, not errors: an
 * unsupported scheme (file://...) completes asynchronously with FETCH_ERR_SCHEME and a
 * malformed one with FETCH_ERR_URL, so callers treat every certificate URL the same way.
 * *job (may be NULL) identifies the job until its callback starts. */
int fetch_start(fetch_t *f, const fetch_req_t *req, fetch_cb cb, void *arg, fetch_job_t **job);

/* Stops a job whose callback has not started yet; its callback is never called. */
void fetch_cancel(fetch_job_t *job);

/* Back-pressure: the bytes every fetcher of the process holds for bodies in flight have a
 * budget. A job whose body would pass it pauses (its socket is no longer read, so the server
 * is slowed by TCP, and nothing is dropped) and a new job waits before it connects, in order,
 * until others finish; past its timeout_ms (which counts the wait) it fails with
 * FETCH_ERR_TIMEOUT saying so. One job at a time may go past the budget so that jobs waiting on
 * each other always progress: what is held stays under the budget plus one max_bytes body.
 * Thread-safe; 0 restores the default. */
void fetch_set_inflight_limit(size_t bytes);

typedef struct fetch_inflight_s {
    size_t held;           /* bytes held now by response bodies in flight (buffer capacity) */
    size_t limit;          /* the budget */
    size_t waiting;        /* jobs paused or queued for room now */
    uint64_t waited_total; /* jobs that had to wait, since start */
} fetch_inflight_t;
void fetch_inflight(fetch_inflight_t *out);

#endif
