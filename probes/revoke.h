/* revoke.h - Windows-like revocation checking (OCSP, then CRLs and delta CRLs from the
 * certificates' URLs) and AIA issuer retrieval over the fetcher, with a per (URL, network view)
 * cache and single flight. */
#ifndef FS_REVOKE_H
#define FS_REVOKE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>
#include <uv.h>

#include "probes/causes.h"
#include "probes/url.h"

/* Revocation policy of one endpoint group, checked the way CryptoAPI does (SPEC §4.2).
 *
 * mode: REV_OFF checks nothing. REV_STRICT fails the endpoint on any revocation problem.
 *   REV_SOFT_FAIL forgives what Windows reports as CERT_TRUST_IS_OFFLINE_REVOCATION: revocation
 *   information that could not be had (crl_unreachable: no URL answered usably, an unusable
 *   delta CRL) and a CRL that is expired or not yet valid at the endpoint's time with no fresh one
 *   at another URL (crl_expired). Both become the revocation_soft_fail warning. A revoked
 *   certificate and an invalid CRL (unparsable, bad signature, wrong issuer, over the cap) are
 *   never forgiven.
 * scope, with the chain leaf first (depth 0) and its last certificate at depth n-1:
 *   REV_SCOPE_LEAF: depth 0 only (Schannel END_CERT).
 *   REV_SCOPE_CHAIN: every depth; the last certificate is checked only when it is self-issued
 *   (a root: its CRL must then be signed by itself) and has a CDP, as Windows does (CHAIN).
 *   REV_SCOPE_CHAIN_EXCLUDE_ROOT: depths 0..n-2 (CHAIN_EXCLUDE_ROOT).
 *   Certificates are checked from the root down; a certificate without any CDP or (with ocsp on)
 *   OCSP URL is skipped (no cause, no warning), as is one whose issuer is not in the chain.
 * Per certificate:
 *   1. OCSP first (ocsp on, the certificate has AIA id-ad-ocsp URLs, http:// only): each URL in
 *      order until one gives a usable answer: a successful basic response signed by the issuer or
 *      by a delegated responder certificate it issued with id-kp-OCSPSigning, for this CertID,
 *      thisUpdate/nextUpdate valid at `at` within OCSP_SKEW_S (ocsp.h). `good` ends the
 *      certificate's check; `revoked` is cert_revoked. Anything else (unreachable, HTTP error,
 *      garbage, a responder status other than successful, unknown, a wrong signer, stale) falls
 *      over to the CRLs, Windows' default failover; with no CDP it is revocation offline
 *      (crl_unreachable).
 *   2. CRL distribution points, every URL of every point in certificate order, until one gives
 *      a usable CRL (parsed, issued and signed by the certificate's issuer, valid at `at`).
 *      http:// is fetched. ldap:// is fetched through libcurl's LDAP when ldap_host names a
 *      directory (a host-less "ldap:///CN=..." URL, as AD CS writes them, goes to ldap_host;
 *      an ldap URL naming a host goes to that host); without ldap_host it is skipped at no cost,
 *      as an off-domain client fails it, and reported "skipped: no directory in this view".
 *      file:// is skipped likewise. A skipped URL is never a dead or unreachable one; but a
 *      certificate whose every URL was skipped has no usable revocation source, which is what
 *      Windows off the domain reports for it: revocation offline (crl_unreachable under strict,
 *      revocation_soft_fail under soft_fail). Other schemes (https://, ...) fail as unreachable.
 *   3. Delta CRL: when the usable base CRL carries a Freshest CRL extension (else when the
 *      certificate does), its URLs are tried by the same rules and cache until one gives a
 *      usable delta: same issuer and signature, a Delta CRL Indicator whose BaseCRLNumber is at
 *      most the base CRL's number, valid at `at`. A serial listed on the delta (reason other
 *      than removeFromCRL) is cert_revoked; no usable delta is revocation offline whatever the
 *      delta URLs did. A serial listed on the base CRL is revoked without asking the delta.
 * When a certificate ends without a usable answer, its failure is the most advanced one seen:
 * crl_expired (an authentic but stale CRL) over crl_invalid over crl_unreachable (every OCSP
 * failure and every skipped URL counts as unreachable). The result's cause is cert_revoked if any
 * certificate is listed (checking stops there), else the failure of the first certificate (root
 * down) that the mode does not forgive. When a certificate's check succeeded but one of its
 * OCSP, CDP or delta URLs failed on the way, the result carries revocation_url_dead: each such
 * URL costs a real endpoint its timeout on every uncached check.
 *
 * Timeouts (timeout_mode), Windows' two ways:
 *   REV_TIMEOUT_PER_URL (default, CertGetCertificateChain without flags): each URL retrieval gets
 *     url_timeout_ms (dwUrlRetrievalTimeout, 15 s by default; registry
 *     ChainUrlRetrievalTimeoutMilliseconds); the check as a whole is bounded only by
 *     max_total_ms (the caller's deadline). budget_ms is not used.
 *   REV_TIMEOUT_ACCUMULATIVE (CERT_CHAIN_REVOCATION_ACCUMULATIVE_TIMEOUT, 0x08000000): all
 *     retrievals of the check together get budget_ms (default 20 s, as
 *     CERT_CHAIN_REV_ACCUMULATIVE_URL_RETRIEVAL_TIMEOUT_MILLISECONDS_DEFAULT; registry
 *     ChainRevAccumulativeUrlRetrievalTimeoutMilliseconds) and each URL gets half of what
 *     remains; url_timeout_ms is not used (Windows' one timeout becomes the cumulative one).
 *     max_total_ms still bounds everything.
 *   A URL with no time left is reported "not tried" and counts as unreachable. */
/* X(ENUM, "name"): the names are the configuration's values (`groups[].revocation`, docs/CONFIG.md)
 * and the CLI's; the order is the one messages list them in. */
#define REV_MODE_LIST(X) X(STRICT, "strict") X(SOFT_FAIL, "soft_fail") X(OFF, "off")
#define REV_SCOPE_LIST(X)                                                                          \
    X(LEAF, "leaf") X(CHAIN, "chain") X(CHAIN_EXCLUDE_ROOT, "chain_exclude_root")
#define REV_TIMEOUT_LIST(X) X(PER_URL, "per_url") X(ACCUMULATIVE, "accumulative")

typedef enum {
#define X(e, name) REV_##e,
    REV_MODE_LIST(X)
#undef X
        REV_MODE_COUNT
} rev_mode_t;
typedef enum {
#define X(e, name) REV_SCOPE_##e,
    REV_SCOPE_LIST(X)
#undef X
        REV_SCOPE_COUNT
} rev_scope_t;
typedef enum {
#define X(e, name) REV_TIMEOUT_##e,
    REV_TIMEOUT_LIST(X)
#undef X
        REV_TIMEOUT_COUNT
} rev_timeout_t;
extern const char *const rev_mode_names[REV_MODE_COUNT];       /* indexed by rev_mode_t */
extern const char *const rev_scope_names[REV_SCOPE_COUNT];     /* indexed by rev_scope_t */
extern const char *const rev_timeout_names[REV_TIMEOUT_COUNT]; /* indexed by rev_timeout_t */

typedef struct rev_policy_s {
    rev_mode_t mode;
    rev_scope_t scope;
    int aia_fetch; /* for the caller (chain building); rev_aia_start does not look at it */
    int ocsp;      /* ask the certificates' OCSP responders first, default 1 (as Windows) */
    rev_timeout_t timeout_mode;  /* default REV_TIMEOUT_PER_URL */
    uint32_t url_timeout_ms;     /* per URL (per_url mode), default 15000 */
    uint32_t budget_ms;          /* all retrievals of a check (accumulative mode), default 20000 */
    uint32_t max_total_ms;       /* hard bound on one check in every mode, 0 = none: the caller's
                                    deadline (the probe sets it), not a group setting */
    size_t max_bytes;            /* per body, default 16 MiB */
    int64_t crl_expiring_soon_s; /* warning window, default 86400 */
    const fs_resolve_t *resolve; /* DNS overrides, may be NULL */
    const char *proxy;           /* HTTP proxy URL or NULL (never used for LDAP) */
    const char *ldap_host;       /* directory server "host[:port]" (port 389 by default) for
                                    ldap:// CDP URLs, NULL (default): no directory in this view,
                                    ldap:// URLs are skipped */
    const char *view;            /* network-view key: the cache is per (url, view); NULL = "".
                                    It must name resolve, proxy and ldap_host */
    int dns_override_only;       /* tests: never query system DNS */
} rev_policy_t;

/* Defaults: strict, chain_exclude_root (Windows' usual scope), aia_fetch on, ocsp on, per_url
 * timeouts, no directory, the values above. */
void rev_policy_defaults(rev_policy_t *p);

/* Cache bounds. An entry is fresh until min(nextUpdate, fetch time + max_age_s) by the host's
 * clock (AIA entries: fetch time + max_age_s). OCSP entries are per (URL, CertID: issuer and
 * serial, view), fresh until the response's earliest nextUpdate bounded the same way; a response
 * without nextUpdate (the responder always has newer information) is kept REV_NEGATIVE_TTL_S
 * seconds. A failed retrieval (unreachable, HTTP error, invalid payload, an OCSP responder status
 * other than successful) and a CRL or OCSP response already past nextUpdate when fetched are kept
 * REV_NEGATIVE_TTL_S seconds, so a fleet does not hammer a dead or stale URL. Entries are charged
 * what they hold in memory (bookkeeping and the parsed CRL or certificates, crl_parsed_cost);
 * beyond max_bytes_total the least recently used entries go. An entry that alone costs more than
 * max_bytes_total is kept anyway, outside the budget and evicting nothing, as the only such
 * entry: memory stays within max_bytes_total plus one oversized entry (a CRL at the default
 * 16 MiB body cap parses to at most ~160 MiB). A second oversized entry while the first is fresh is
 * refused: the jobs that waited for its retrieval use it, then its payload goes and a failure
 * ("CRL not kept ...", crl_invalid like the size cap) stays REV_NEGATIVE_TTL_S seconds, so a URL
 * is never retrieved more often than that, kept or not. While a URL is retrieved every job that
 * needs it in the same view waits on that one retrieval (single flight), which runs with the first
 * job's URL timeout, size cap, proxy and resolve map: the view key must name those network
 * settings. Each waiter keeps its own deadline. A cached CRL that is stale at a skewed or forecast
 * `at` but fresh by the host's clock is used as is (crl_expired), not refetched: the CDP served it
 * recently. */
#define REV_NEGATIVE_TTL_S 30
typedef struct rev_cache_limits_s {
    int64_t max_age_s;      /* default 86400 */
    size_t max_bytes_total; /* default 64 MiB */
} rev_cache_limits_t;

typedef struct rev_ctx_s
    rev_ctx_t; /* one per loop: fetcher + CRL cache + AIA cache + single flight */

/* Creates a context on loop. lim NULL: defaults. Returns 0 or a negative UV_E* code. */
int rev_ctx_new(rev_ctx_t **out, uv_loop_t *loop, const rev_cache_limits_t *lim);
/* Cancels every job (no callback fires; their handles become invalid), stops retrievals, frees
 * the cache; done (may be NULL) runs after the last handle closed. May be called from inside a
 * rev callback: the teardown then waits until that callback returns. */
void rev_ctx_close(rev_ctx_t *ctx, void (*done)(void *arg), void *arg);

typedef struct rev_cache_stats_s {
    size_t entries;      /* cached and in-flight URLs */
    size_t bytes;        /* charged bytes of cached entries */
    uint64_t fetches;    /* retrievals started since creation */
    uint64_t hits;       /* URL lookups answered from the cache */
    uint64_t joined;     /* URL lookups that waited on another job's retrieval */
    uint64_t refused;    /* entries too big for the budget that could not be kept (see above) */
    uint64_t sig_checks; /* signatures of cached CRLs and OCSP responses verified; a check of
                            an entry already verified for that issuer is remembered, not counted */
} rev_cache_stats_t;
void rev_cache_stats(const rev_ctx_t *ctx, rev_cache_stats_t *s);

/* A cached retrieval as a disk cache keeps it (Windows' CryptnetUrlCache), so that a restart
 * does not refetch every CRL (daemon/store.c persists these). Only successful retrievals. */
typedef struct rev_cache_item_s {
    char kind;           /* 'C' a CRL or delta CRL (body: DER), 'A' AIA issuer certificates
                            (body: PEM, one or more), 'O' an OCSP response (body: DER
                            OCSPResponse, status successful) */
    const char *url;     /* the URL as retrieved (ldap://: with the view's directory) */
    const char *certid;  /* 'O': the CertID's DER in hex; "" otherwise */
    const char *view;    /* the network view (rev_policy_t.view), "" for none */
    int64_t fetched_at;  /* when it was retrieved, seconds since the epoch (host clock) */
    int64_t next_update; /* the CRL's or response's nextUpdate, 0 when none or 'A' */
    int64_t expires_at;  /* when the cache drops it (host clock), see "Cache bounds" */
    long http_status;    /* 0 for ldap:// */
    const unsigned char *body;
    size_t len;
} rev_cache_item_t;

/* Calls fn (on the loop, synchronously) for each cached entry that settled successfully after
 * *cursor (0: every fresh entry) and is still fresh, then moves *cursor past them: called once
 * per snapshot tick it costs one comparison when nothing was retrieved. Entries that came from
 * rev_cache_import are not exported again. it and its strings are valid during fn only. Returns
 * the number of entries passed to fn. */
size_t rev_cache_export(rev_ctx_t *ctx, uint64_t *cursor,
                        void (*fn)(void *arg, const rev_cache_item_t *it), void *arg);
/* Adds it to the cache as if retrieved at it->fetched_at: the body is parsed again and kept until
 * min(it->expires_at, fetched_at + max_age_s, nextUpdate) by the host's clock, under the same
 * memory bounds (least recently used entries go). Returns 0; UV_EEXIST when the key is cached or
 * being retrieved (the live entry wins); UV_ETIMEDOUT when it is no longer fresh; UV_EINVAL when
 * the body does not parse or kind is unknown; UV_ECANCELED while the context closes. */
int rev_cache_import(rev_ctx_t *ctx, const rev_cache_item_t *it);

typedef struct rev_url_result_s {
    char url[512];  /* as the certificate or CRL names it, password redacted */
    char kind[8];   /* "ocsp" | "crl" | "delta" (a delta CRL) | "aia" */
    int cert_depth; /* which cert of the chain (0 = leaf; AIA: 0) */
    int ok;         /* a usable OCSP answer / CRL / delta / issuer certificate came from here */
    int skipped;    /* not retrieved, at no cost (ldap:// without a directory, file://): error
                       says why; never a failure by itself */
    int post;       /* OCSP: the request went as POST (too long for GET) */
    char status[8]; /* OCSP: "good" | "revoked" | "unknown" when a signed answer came, else "" */
    int from_cache; /* answered from the cache (a joined in-flight retrieval is not) */
    long http_status;
    size_t bytes;
    uint32_t time_ms;                 /* retrieval or wait time; 0 from the cache */
    uint32_t timeout_ms;              /* the time this URL was given (timeout_mode); 0 when it
                                         was not retrieved (cache, skipped, not tried) */
    int64_t this_update, next_update; /* 0 if unknown */
    char error[160];                  /* "" when ok */
} rev_url_result_t;

#define REV_MAX_URLS 16 /* further URLs are still tried, not reported */
typedef struct rev_result_s {
    fs_cause_t cause;  /* NONE, CERT_REVOKED, CRL_UNREACHABLE, CRL_EXPIRED or CRL_INVALID */
    uint32_t warnings; /* FS_WARN_BIT: REVOCATION_SOFT_FAIL, CRL_EXPIRING_SOON (a CRL or delta
                          in use reaches nextUpdate within crl_expiring_soon_s of at),
                          REVOCATION_URL_DEAD (see above), AIA_FETCH_REQUIRED (rev_aia_start
                          success) */
    char message[256]; /* what happened, in words; "" when nothing to say */
    int revoked_depth; /* when cert_revoked; else -1 */
    int64_t revoked_at;
    int revoked_reason; /* CRLReason code, -1 when the entry has none */
    rev_url_result_t urls[REV_MAX_URLS];
    size_t nurls;
} rev_result_t;

typedef struct rev_job_s rev_job_t;
/* r is valid during the callback only; the job is freed after it returns. */
typedef void (*rev_cb)(void *arg, const rev_result_t *r);

/* chain: verified chain, leaf first, root last (as X509_STORE_CTX_get1_chain gives); the job
 * takes its own references. at: endpoint time (seconds). p is copied (strings and the resolve
 * map too). Returns 0 and calls cb exactly once later, or <0 synchronously (UV_EINVAL: empty
 * chain or NULL argument; UV_ECANCELED: the context is closing). *job may be NULL. */
int rev_check_start(rev_ctx_t *ctx, rev_job_t **job, STACK_OF(X509) * chain, const rev_policy_t *p,
                    int64_t at, rev_cb cb, void *arg);

/* issuers: the certificates from the first AIA URL that yields one issuing cert (name and key
 * identifier match, X509_check_issued), NULL on failure; borrowed during cb (up-ref to keep).
 * r: URL results and a message; cause is always NONE (the caller decides what a missing issuer
 * means); warnings has AIA_FETCH_REQUIRED on success. */
typedef void (*rev_aia_cb)(void *arg, STACK_OF(X509) * issuers, const rev_result_t *r);

/* Fetches the issuer(s) of cert from its AIA caIssuers URLs (cached per url+view; payloads:
 * DER or PEM certificate, PKCS#7 bundle). Same contract as rev_check_start. */
int rev_aia_start(rev_ctx_t *ctx, rev_job_t **job, X509 *cert, const rev_policy_t *p, rev_aia_cb cb,
                  void *arg);

/* The callback of job is never called after this; a retrieval shared with other jobs goes on
 * for them (one nobody waits for any more is stopped). Only before the callback started. */
void rev_job_cancel(rev_job_t *job);

/* What the cache holds for one URL in one network view, read without touching it (no LRU move,
 * no eviction, no retrieval): the entry a check with policy p would use for `url` as the
 * certificate (or base CRL) names it, of kind "crl", "delta", "ocsp" (cert and issuer then name
 * the CertID; otherwise they may be NULL) or "aia". An ldap:// URL is looked up where a check
 * routes it (p->ldap_host). Returns 0 and fills *out when a completed entry is fresh by the
 * host's clock; UV_ENOENT when there is none (never retrieved, in flight, stale, evicted, or a
 * URL this view never retrieves); UV_EINVAL on a bad argument. For revocation-source health:
 * when an endpoint's cached copy runs out. */
typedef struct rev_cache_entry_s {
    int ok;              /* it holds a payload (a parsed CRL, an OCSP response, certificates);
                            0: a failure kept for REV_NEGATIVE_TTL_S */
    int64_t expires_ms;  /* when the cache drops it, host wall clock in ms: min(nextUpdate,
                            retrieval + max_age_s) for a payload (see "Cache bounds") */
    int64_t next_update; /* the payload's nextUpdate (seconds), 0 when none */
} rev_cache_entry_t;
int rev_cache_peek(const rev_ctx_t *ctx, const char *kind, const char *url, X509 *cert,
                   X509 *issuer, const rev_policy_t *p, rev_cache_entry_t *out);

#endif
