/* ocsp.h - OCSP without I/O (RFC 6960, RFC 5019 profile): the certificate's responder URLs, the
 * request and its GET form, response parsing, signer authorization and status at the endpoint's
 * clock. The exchange itself is revoke.c, the cache revcache.c. */
#ifndef FS_OCSP_H
#define FS_OCSP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "probes/crl.h"

/* Clock tolerance on thisUpdate/nextUpdate and on a delegated responder's validity, as the
 * endpoint judges them (Windows allows a few minutes of skew between responder and client). */
#define OCSP_SKEW_S 300
/* RFC 5019 §5: a request whose whole GET URL is at most this long goes as GET, else POST. */
#define OCSP_GET_MAX 255

/* Every AIA id-ad-ocsp URI of the certificate, in order, any scheme. Returns the count. */
size_t ocsp_urls(X509 *cert, crl_urls_t *out);

/* The SHA-1 CertID of cert (the hash Windows and RFC 5019 responders use), or NULL. */
OCSP_CERTID *ocsp_cert_id(X509 *cert, X509 *issuer);
/* Lower-case hex of the CertID's DER into out (size n): the cache key part naming issuer and
 * serial. Returns 0, or -1 when it does not fit. */
int ocsp_cert_id_hex(OCSP_CERTID *id, char *out, size_t n);

/* DER of an unsigned request for id, without nonce (RFC 5019: cacheable). *der is malloc'ed.
 * Returns 0 or -1. */
int ocsp_request_der(OCSP_CERTID *id, unsigned char **der, size_t *len);
/* The GET URL for a request: url, a '/' unless url ends with one, then the base64 of der with
 * '+', '/' and '=' percent-encoded (RFC 6960 A.1). Returns a malloc'ed string when it is at most
 * OCSP_GET_MAX characters long, NULL when the request must be POSTed. */
char *ocsp_get_url(const char *url, const unsigned char *der, size_t len);

/* Parses an OCSPResponse: responseStatus successful with a basic response. Returns 0 and a new
 * basic response in *out, or -1 with err ("responder says tryLater", "not an OCSP response"). */
int ocsp_parse_response(const unsigned char *buf, size_t len, OCSP_BASICRESP **out,
                        char err[CRL_ERR_LEN]);

/* Checks who signed bs: the signature verifies with the signer's key and the signer is either
 * the issuer itself (same key) or a delegated responder certificate (from the response or
 * equal to the issuer) that issuer issued and signed, with extendedKeyUsage id-kp-OCSPSigning,
 * valid at `at` within OCSP_SKEW_S. Returns 0 or -1 with err naming the signer. */
int ocsp_check_signer(OCSP_BASICRESP *bs, X509 *issuer, int64_t at, char err[CRL_ERR_LEN]);

/* ocsp_check_signer in two halves, so that a cached response is verified once per issuer: the
 * half that does not depend on the endpoint's time (the signature, who signed) fills s; the
 * other checks a delegated responder's validity at `at`. Each returns 0 or -1 with err. */
typedef struct ocsp_signer_s {
    char who[64];       /* the signer's CN */
    int delegated;      /* a responder certificate, not the issuing CA itself */
    int64_t not_before; /* the responder certificate's validity, when delegated */
    int64_t not_after;
} ocsp_signer_t;
int ocsp_check_signer_key(OCSP_BASICRESP *bs, X509 *issuer, ocsp_signer_t *s,
                          char err[CRL_ERR_LEN]);
int ocsp_check_signer_time(const ocsp_signer_t *s, int64_t at, char err[CRL_ERR_LEN]);

typedef enum { OCSP_ANSWER_GOOD, OCSP_ANSWER_REVOKED, OCSP_ANSWER_UNKNOWN } ocsp_status_t;

typedef struct ocsp_answer_s {
    ocsp_status_t status;
    int reason;          /* CRLReason when revoked and given, else -1 */
    int64_t revoked_at;  /* when revoked */
    int64_t this_update; /* seconds since the epoch */
    int64_t next_update; /* 0 when the response has none */
} ocsp_answer_t;

/* The single response for id in bs. Returns 0 and fills a, or -1 with err when bs has none. */
int ocsp_find(OCSP_BASICRESP *bs, OCSP_CERTID *id, ocsp_answer_t *a, char err[CRL_ERR_LEN]);
/* thisUpdate not after at + OCSP_SKEW_S, nextUpdate (when present) not before at - OCSP_SKEW_S.
 * Returns 0 or -1 with err. */
int ocsp_check_time(const ocsp_answer_t *a, int64_t at, char err[CRL_ERR_LEN]);

/* Earliest nextUpdate of any single response in bs (0 when none has one): how long a response
 * may be cached. */
int64_t ocsp_min_next_update(OCSP_BASICRESP *bs);

/* "good", "revoked", "unknown". */
const char *ocsp_status_name(ocsp_status_t s);

#endif
