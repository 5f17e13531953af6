/* revcheck.h - a live check of one revocation URL (a CRL, a delta CRL or an OCSP responder):
 * retrieved now with the fetcher and validated with crl.c and ocsp.c, never through revoke.c's
 * cache, so it tells what the URL serves at this moment (revocation-source health, SPEC §4.2). */
#ifndef FS_REVCHECK_H
#define FS_REVCHECK_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "probes/fetch.h"
#include "probes/url.h"

/* X(ENUM, "name"): the names are rev_url_result_t.kind's. */
#define REVCHECK_KIND_LIST(X) X(CRL, "crl") X(DELTA, "delta") X(OCSP, "ocsp")
typedef enum {
#define X(e, name) REVCHECK_##e,
    REVCHECK_KIND_LIST(X)
#undef X
        REVCHECK_KIND_COUNT
} revcheck_kind_t;
extern const char *const revcheck_kind_names[REVCHECK_KIND_COUNT];

typedef struct revcheck_req_s {
    revcheck_kind_t kind;
    const char *url;             /* as the certificate (or, for a delta, the base CRL) names it */
    X509 *cert;                  /* the certificate the URL speaks for (required) */
    X509 *issuer;                /* cert's issuer: the CRL's issuer and signature, the OCSP CertID
                                    and signer. NULL: not known (an incomplete chain): a CRL is
                                    parsed, of its kind and dated, and usable so far, with
                                    signature_valid -1; an OCSP responder cannot be asked */
    X509_CRL *base;              /* REVCHECK_DELTA: the base CRL the delta must complete, or NULL
                                    (then it only has to be a delta CRL) */
    const char *ldap_host;       /* directory for ldap:// CDP URLs ("host[:port]"; a host-less
                                    "ldap:///CN=..." goes there), NULL: ldap:// is skipped */
    const char *proxy;           /* HTTP proxy for http:// URLs, or NULL */
    const fs_resolve_t *resolve; /* DNS overrides, may be NULL */
    int dns_override_only;
    uint32_t timeout_ms; /* whole retrieval; 0: 15000 */
    size_t max_bytes;    /* body cap; 0: 16 MiB */
    int64_t at;          /* host time (seconds) the answer must be valid at */
} revcheck_req_t;

typedef struct revcheck_result_s {
    /* ldap:// without a directory or file:// for a CRL: not retrieved, at no cost, as revoke.c
     * skips them (error says why); neither usable nor a failure. */
    int skipped;
    /* The URL gave what an endpoint needs: a CRL issued and signed by cert's issuer (when
     * known), of the right kind (a delta completing base), valid at `at`; or an OCSP response
     * signed by the
     * issuer or its delegated responder, for this certificate, fresh at `at`, good or revoked. */
    int usable;
    int signature_valid; /* 1 verified, 0 bad (or, OCSP, an unauthorized signer), -1 not checked */
    long http_status;    /* 0 when no HTTP answer came (and for LDAP) */
    size_t bytes;
    uint32_t time_ms;                 /* the retrieval */
    int64_t this_update, next_update; /* of the answer, 0 when unknown */
    char status[8];                   /* OCSP: "good" | "revoked" | "unknown", else "" */
    char error[160];                  /* "" when usable */
    X509_CRL *crl; /* the CRL received (parsed), borrowed during the callback; NULL if none */
} revcheck_result_t;

/* r is valid during the callback only. */
typedef void (*revcheck_cb)(void *arg, const revcheck_result_t *r);
typedef struct revcheck_job_s revcheck_job_t;

/* Retrieves req->url with f and validates what comes back. Everything req points to is copied
 * or referenced. Returns 0 and calls cb exactly once, later, from the loop (a skipped URL too);
 * or a negative UV_E* code synchronously (UV_EINVAL: no url or cert; fetch_start's errors) and
 * never calls cb. *job (may be NULL) identifies the check until its callback starts. */
int revcheck_start(fetch_t *f, const revcheck_req_t *req, revcheck_cb cb, void *arg,
                   revcheck_job_t **job);
/* Stops a check whose callback has not started; the callback is never called. */
void revcheck_cancel(revcheck_job_t *job);

#endif
