/* chain.h - what a presented certificate chain is (subject, validity, thumbprints, SANs,
 * CDP/AIA URLs) and whether an endpoint accepts it: chain building against the endpoint's
 * trust, classified into the SPEC §3 verify-phase causes and warnings. */
#ifndef FS_CHAIN_H
#define FS_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "probes/causes.h"

#define CHAIN_MAX_CERTS 10

typedef struct chain_cert_s {
    char *subject; /* RFC 2253 style, e.g. "CN=ns.corp.example,O=Corp" */
    char *issuer;
    char *serial; /* upper-case hex, no separators, as Windows shows it */
    int64_t not_before, not_after;
    char sha1[41];   /* thumbprint as Windows shows it (upper-case hex) */
    char sha256[65]; /* lower-case hex */
    char sig_alg[48];
    int is_ca;
    int self_signed;
    char **sans; /* "DNS:name" / "IP:addr" */
    size_t nsans;
    char **cdp; /* CRL distribution point URIs */
    size_t ncdp;
    char **aia; /* AIA caIssuers URIs */
    size_t naia;
} chain_cert_t;

typedef struct chain_info_s {
    chain_cert_t certs[CHAIN_MAX_CERTS];
    size_t n;
    size_t total; /* certificates the server sent (n is capped at CHAIN_MAX_CERTS) */
} chain_info_t;

/* Fills info from the presented chain (leaf first). Frees any previous content. */
void chain_info_capture(chain_info_t *info, STACK_OF(X509) * chain);
void chain_info_free(chain_info_t *info);
/* Thumbprints of one certificate: sha1 upper-case hex (41 bytes), sha256 lower (65). */
void chain_thumbprints(X509 *x, char sha1[41], char sha256[65]);
/* The SHA-1 thumbprint alone (OpenSSL keeps it from the certificate's parse: no hashing). */
void chain_sha1_thumbprint(X509 *x, char sha1[41]);

typedef struct chain_check_s {
    const char *host;              /* name (or IP) the endpoint connects to; NULL: no check */
    int64_t at;                    /* endpoint's time: host time + clock skew */
    int64_t expiring_soon_s;       /* warn when a cert expires within this window */
    const char *expect_thumbprint; /* normalised hex SHA-1 or SHA-256, or NULL */
} chain_check_t;

typedef struct chain_verdict_s {
    fs_cause_t cause;  /* FS_CAUSE_NONE when the endpoint accepts the chain */
    uint32_t warnings; /* FS_WARN_BIT mask: cert_expiring_soon, weak_signature */
    char message[256];
    int issuer_missing_depth; /* depth of the cert whose issuer was not found, or -1 */
    int64_t not_after_min;    /* earliest notAfter in the built chain (0: none) */
    int64_t not_before_max;   /* latest notBefore in the built chain (0: none) */
    /* The chain as built (leaf first), for revocation; owned by the verdict. */
    STACK_OF(X509) * built;
} chain_verdict_t;

/* Verifies presented (leaf first) as an endpoint with this trust would: roots from trust,
 * intermediates from the presented chain, the endpoint's own store (extra, may be NULL)
 * and AIA fetches (also in extra). Every problem is collected and the primary cause is the
 * first in SPEC order. Returns 0 (verdict filled, even when the cause is not NONE) or -1 on
 * an internal error (message in v->message). Call chain_verdict_free() either way. */
int chain_verify(X509_STORE *trust, STACK_OF(X509) * presented, STACK_OF(X509) * extra,
                 const chain_check_t *c, chain_verdict_t *v);
void chain_verdict_free(chain_verdict_t *v);

/* An ASN1_TIME as seconds since the epoch (0 when unparsable). */
int64_t chain_asn1_time(const ASN1_TIME *t);

/* Normalises a thumbprint ("AB:CD ..", any case) to lower-case hex; returns 0 when the result
 * is 40 or 64 hex digits, -1 otherwise. out must hold 65 bytes. */
int chain_normalise_thumbprint(const char *in, char out[65]);

#endif
