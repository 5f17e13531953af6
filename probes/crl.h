/* crl.h - CRL and certificate-URL helpers without any I/O: parsing, issuer and signature checks,
 * validity at the endpoint's clock, serial lookup; CDP and AIA URLs; AIA issuer payloads. */
#ifndef FS_CRL_H
#define FS_CRL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Error messages are written into char err[CRL_ERR_LEN]. */
#define CRL_ERR_LEN 160

/* A list of URLs in certificate order; owned strings. */
typedef struct crl_urls_s {
    char **v;
    size_t n;
} crl_urls_t;

/* Every URI of the certificate's CRL distribution points (fullName), in order and of any scheme
 * (ldap:// and file:// are kept so they can be reported). Returns the count (0: no CDP). */
size_t crl_cdp_urls(X509 *cert, crl_urls_t *out);
/* Every AIA caIssuers URI of the certificate, in order, any scheme. Returns the count. */
size_t crl_aia_issuer_urls(X509 *cert, crl_urls_t *out);
void crl_urls_free(crl_urls_t *u);
/* 1 when url starts with "http://" (case-insensitive). */
int crl_url_is_http(const char *url);
/* 1 when url starts with scheme followed by "://" (case-insensitive), e.g. "ldap", "file". */
int crl_url_has_scheme(const char *url, const char *scheme);

/* The delta CRL URLs for a base CRL: the URIs of the base's Freshest CRL extension, else of the
 * certificate's freshestCRL extension (either may be NULL), in order. Returns the count. */
size_t crl_freshest_urls(X509_CRL *base, X509 *cert, crl_urls_t *out);

/* Parses a CRL from DER or PEM ("-----BEGIN X509 CRL-----"). The caller enforces the size cap.
 * Returns 0 and a new reference in *out, or -1 with err filled. */
int crl_parse(const unsigned char *buf, size_t len, X509_CRL **out, char err[CRL_ERR_LEN]);

/* Checks that crl can speak for cert: the CRL issuer name equals cert's issuer name, the CRL's
 * authority key identifier (if any) matches issuer's subject key identifier (or cert's AKID),
 * and issuer may sign CRLs (keyUsage cRLSign when keyUsage is present). 0 or -1 with err. */
int crl_check_issuer(X509_CRL *crl, X509 *cert, X509 *issuer, char err[CRL_ERR_LEN]);

/* Verifies the CRL's signature with the issuer's public key. 0 or -1 with err. */
int crl_verify_signature(X509_CRL *crl, EVP_PKEY *issuer_key, char err[CRL_ERR_LEN]);

typedef enum { CRL_TIME_OK, CRL_TIME_NOT_YET_VALID, CRL_TIME_EXPIRED } crl_time_t;

/* thisUpdate and nextUpdate as seconds since the epoch (next is 0 when the CRL has none). */
void crl_times(X509_CRL *crl, int64_t *this_update, int64_t *next_update);
/* Time validity at `at` (the endpoint's clock): thisUpdate after at is NOT_YET_VALID, nextUpdate
 * before at is EXPIRED; a CRL without nextUpdate never expires. */
crl_time_t crl_check_time(X509_CRL *crl, int64_t at);

/* Looks serial up, comparing integers by value (any encoding of the query is accepted).
 * Returns 1 when listed (fills *revoked_at, seconds, and *reason, a CRLReason code or -1 when
 * the entry has none; either may be NULL), 0 when not listed (or removeFromCRL), -1 on error. */
int crl_lookup_serial(X509_CRL *crl, const ASN1_INTEGER *serial, int64_t *revoked_at, int *reason);
/* Compares two ASN1_INTEGERs as integers: <0, 0, >0 (-2 on error). */
int crl_serial_cmp(const ASN1_INTEGER *a, const ASN1_INTEGER *b);

/* Parses an AIA caIssuers payload: a DER certificate, PEM certificates, or a certs-only PKCS#7
 * bundle (DER or PEM). Returns 0 and a new stack (at least one certificate) in *out, or -1. */
int crl_parse_certs(const unsigned char *buf, size_t len, STACK_OF(X509) * *out,
                    char err[CRL_ERR_LEN]);

/* What a parsed CRL holds in memory, in bytes, estimated from its entries and extensions
 * (measured figures in crl.c); encoded_len is the size of the body it was parsed from. */
size_t crl_parsed_cost(const X509_CRL *crl, size_t encoded_len);
/* The same for certificates parsed from an AIA payload of encoded_len bytes. */
size_t crl_certs_cost(const STACK_OF(X509) * certs, size_t encoded_len);

/* 1 when crl carries a Delta CRL Indicator (it is a delta CRL), else 0. */
int crl_is_delta(X509_CRL *crl);
/* Checks that delta can complete base (RFC 5280 5.2.4, 6.3.3): delta has a Delta CRL Indicator,
 * base is a complete CRL with a CRL number at least the delta's BaseCRLNumber, and the delta is
 * newer than the base (its CRL number is greater). Issuer and signature are checked apart
 * (crl_check_issuer, crl_verify_signature). 0, or -1 with err. */
int crl_check_delta(X509_CRL *delta, X509_CRL *base, char err[CRL_ERR_LEN]);

/* Extracts a CRL from what libcurl's LDAP returns for a search such as
 * "ldap://dc/CN=CA,CN=CDP,...?certificateRevocationList;binary?base?objectClass=cRLDistributionPoint"
 * (an LDIF-like text: "DN: <dn>\n" then "\t<attribute>:: <base64>\n" per binary value): the first
 * certificateRevocationList or deltaRevocationList value, decoded. *der is malloc'ed. Returns 0,
 * or -1 with err (no such attribute: the entry or the attribute is missing). */
int crl_from_ldap(const unsigned char *buf, size_t len, unsigned char **der, size_t *der_len,
                  char err[CRL_ERR_LEN]);

/* Seconds since the epoch of an ASN1_TIME; 0 when t is NULL or malformed. */
int64_t crl_asn1_time(const ASN1_TIME *t);

#endif
