/* probe.h - one endpoint's probe on a libuv loop: resolve, TCP connect, TLS handshake
 * (tlsc), chain validation (chain), AIA and revocation (revoke), optional GET, close.
 * Every phase has a timeout, the whole probe a deadline, and the result one primary cause. */
#ifndef FS_PROBE_H
#define FS_PROBE_H

#include <stdint.h>

#include <uv.h>

#include "probes/causes.h"
#include "probes/chain.h"
#include "probes/dns.h"
#include "probes/revoke.h"
#include "probes/tlsc.h"
#include "probes/url.h"
#include "probes/vcache.h"

typedef enum {
    PROBE_PH_DNS,
    PROBE_PH_CONNECT,
    PROBE_PH_TLS,
    PROBE_PH_REVOCATION, /* AIA and CRL retrieval */
    PROBE_PH_REQUEST,
    PROBE_PH_COUNT
} probe_phase_t;
extern const char *const probe_phase_names[PROBE_PH_COUNT];

typedef struct probe_opts_s {
    const fs_url_t *url;           /* what the endpoint connects to (borrowed) */
    tlsc_ctx_t *tls;               /* endpoint TLS + trust (borrowed; required for https) */
    int sni;                       /* send SNI */
    const fs_resolve_t *resolve;   /* DNS overrides (a name may have several addresses), or NULL */
    int dns_override_only;         /* never ask the system resolver (tests, sealed views) */
    const char *connect_addr;      /* optional: connect here instead of resolving */
    dns_cache_t *dns;              /* the resolve cache and round robin counters (shared, borrowed);
                                      NULL: the probe makes an uncached lookup of its own and
                                      always starts at a name's first address */
    const char *view;              /* network-view key for dns (NULL = ""): answers and round
                                      robin are per (host, view); probes sharing a view must
                                      share their resolve map */
    int64_t clock_skew_s;          /* endpoint clock - host clock */
    int64_t expiring_soon_s;       /* cert_expiring_soon window (default 30 days) */
    const char *expect_thumbprint; /* normalised hex, or NULL */
    uint32_t dns_timeout_ms, connect_timeout_ms, tls_timeout_ms, request_timeout_ms;
    uint32_t total_timeout_ms;      /* the probe's deadline */
    int capture_chain;              /* fill result.chain (costs allocations) */
    vcache_t *vcache;               /* shared verdict cache, or NULL: verify every time */
    rev_ctx_t *rev;                 /* retrieval context; NULL disables AIA and revocation */
    const rev_policy_t *rev_policy; /* borrowed for the probe's lifetime */
    /* Evaluation without a server (pre-flight): when set, no resolve, connect, handshake or
     * request; the probe validates this chain (leaf first, borrowed) as if the server had
     * presented it, with AIA and revocation as configured, and ends there. */
    STACK_OF(X509) * presented;
    int64_t at; /* host time (seconds) to evaluate at instead of now; 0: now */
} probe_opts_t;

/* Fills defaults: timeouts 5 s/5 s/10 s/10 s, deadline 15 s, SNI on, 30-day window. */
void probe_opts_defaults(probe_opts_t *o);

/* One TCP connect of a probe. A name with several addresses is tried the way a client does:
 * the probe starts at the next address of the name's round robin and, when a connect is refused
 * or fails or its share of the connect timeout runs out, falls over to the following address.
 * Each attempt gets what remains of the connect timeout divided by the addresses left. */
typedef struct probe_attempt_s {
    char addr[DNS_ADDR_LEN];
    fs_cause_t cause; /* NONE: connected; CONNECT_REFUSED; CONNECT_TIMEOUT (no answer within
                         its share of the connect timeout, or another connect error) */
    int error;        /* UV_E* of a failed attempt (UV_ETIMEDOUT: its time ran out), else 0 */
    uint32_t ms;
} probe_attempt_t;

typedef struct probe_result_s {
    int online;        /* 1: the endpoint would talk to the server */
    int cancelled;     /* probe_cancel() was called */
    fs_cause_t cause;  /* FS_CAUSE_NONE when online */
    uint32_t warnings; /* FS_WARN_BIT mask */
    char message[320]; /* what went wrong, in words (the agent.log detail) */
    probe_phase_t failed_phase;
    uint32_t timings_ms[PROBE_PH_COUNT];
    uint32_t total_ms;
    int64_t started_at;    /* wall clock, seconds */
    int64_t endpoint_time; /* validation time: host time + skew */
    char addr[64];         /* the address connected to (the last one tried when none answered) */
    size_t naddrs;         /* addresses the name had (override map or DNS answer); 0 before */
    probe_attempt_t attempts[FS_RESOLVE_MAX_ADDRS]; /* the connects, in order: more than one
                                                       means the probe fell over */
    size_t nattempts;
    char leaf_sha1[41]; /* SHA-1 thumbprint of the presented leaf as Windows shows it (upper-case
                           hex), whether or not it validates and whatever capture_chain says;
                           "" when no certificate was presented */
    int tls_version;    /* negotiated, 0 if none */
    char cipher[64];
    int http_status; /* 0 if no request was made */
    int plain_http;  /* the server spoke plain HTTP where TLS was expected */
    int aia_used;
    int64_t chain_not_after;  /* earliest notAfter of the validated chain (0: not reached) */
    int64_t chain_not_before; /* latest notBefore of that chain (0: not reached) */
    int64_t crl_next_update;  /* earliest nextUpdate of the CRLs, deltas and OCSP answers used
                                 (0: none): the forecast's revocation freshness edge */
    chain_info_t chain;       /* presented chain when capture_chain */
    rev_result_t *rev;        /* AIA + CRL retrievals when capture_chain, else NULL */
    STACK_OF(X509) * built;   /* the chain as validation built it (leaf first), borrowed: valid
                                 during the callback only (up-ref to keep); NULL when validation
                                 was not reached */
} probe_result_t;

typedef struct probe_s probe_t;
/* Called exactly once, after every handle of the probe is closed. The result is valid during
 * the callback only; the probe is freed when it returns. */
typedef void (*probe_cb)(probe_t *p, probe_result_t *r, void *arg);

/* Starts a probe. Returns 0 and later calls cb exactly once, or a negative UV_E* code
 * synchronously (cb never called). opts and everything it points to must outlive the probe. */
int probe_start(probe_t **out, uv_loop_t *loop, const probe_opts_t *opts, probe_cb cb, void *arg);
/* Stops the probe; cb still fires once with result.cancelled = 1. */
void probe_cancel(probe_t *p);
void probe_result_free(probe_result_t *r); /* frees the captured chain */

#endif
