/* crl.c - CRL parsing and checks, serial lookup by value, CDP/AIA URL extraction and AIA
 * payload parsing (see crl.h). Pure functions over OpenSSL objects: no I/O, no globals. */
#include "probes/crl.h"
#include "probes/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

/* Fills err with msg and the newest OpenSSL reason (if any); clears the error queue. */
static int fail(char err[CRL_ERR_LEN], const char *msg)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (reason)
        snprintf(err, CRL_ERR_LEN, "%s (%s)", msg, reason);
    else
        snprintf(err, CRL_ERR_LEN, "%s", msg);
    ERR_clear_error();
    return -1;
}

/* ---- URLs --------------------------------------------------------------------------------- */

static void urls_add(crl_urls_t *u, const ASN1_IA5STRING *s)
{
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (d == NULL || len <= 0 || memchr(d, '\0', (size_t)len) != NULL)
        return; /* an embedded NUL is never a usable URL */
    char *url = fs_xmalloc((size_t)len + 1);
    memcpy(url, d, (size_t)len);
    url[len] = '\0';
    u->v = fs_xrealloc(u->v, (u->n + 1) * sizeof(*u->v));
    u->v[u->n++] = url;
}

static void urls_of_dps(STACK_OF(DIST_POINT) * dps, crl_urls_t *out);

size_t crl_cdp_urls(X509 *cert, crl_urls_t *out)
{
    memset(out, 0, sizeof(*out));
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
    urls_of_dps(dps, out);
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    ERR_clear_error();
    return out->n;
}

size_t crl_aia_issuer_urls(X509 *cert, crl_urls_t *out)
{
    memset(out, 0, sizeof(*out));
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
    for (int i = 0; aia && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (OBJ_obj2nid(ad->method) == NID_ad_ca_issuers && ad->location->type == GEN_URI)
            urls_add(out, ad->location->d.uniformResourceIdentifier);
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    ERR_clear_error();
    return out->n;
}

void crl_urls_free(crl_urls_t *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->v[i]);
    free(u->v);
    u->v = NULL;
    u->n = 0;
}

int crl_url_is_http(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0;
}

int crl_url_has_scheme(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncasecmp(url, scheme, n) == 0 && strncmp(url + n, "://", 3) == 0;
}

/* Appends the fullName URIs of dps to out. */
static void urls_of_dps(STACK_OF(DIST_POINT) * dps, crl_urls_t *out)
{
    for (int i = 0; dps && i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);
        if (dp->distpoint == NULL || dp->distpoint->type != 0)
            continue; /* nameRelativeToCRLIssuer carries no URL */
        GENERAL_NAMES *names = dp->distpoint->name.fullname;
        for (int k = 0; k < sk_GENERAL_NAME_num(names); k++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, k);
            if (gn->type == GEN_URI)
                urls_add(out, gn->d.uniformResourceIdentifier);
        }
    }
}

size_t crl_freshest_urls(X509_CRL *base, X509 *cert, crl_urls_t *out)
{
    memset(out, 0, sizeof(*out));
    STACK_OF(DIST_POINT) *dps =
        base ? X509_CRL_get_ext_d2i(base, NID_freshest_crl, NULL, NULL) : NULL;
    urls_of_dps(dps, out);
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    if (out->n == 0 && cert != NULL) {
        dps = X509_get_ext_d2i(cert, NID_freshest_crl, NULL, NULL);
        urls_of_dps(dps, out);
        sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    }
    ERR_clear_error();
    return out->n;
}

/* ---- CRLs --------------------------------------------------------------------------------- */

static int looks_like_pem(const unsigned char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && isspace(buf[i]))
        i++;
    return len - i >= 10 && memcmp(buf + i, "-----BEGIN", 10) == 0;
}

static int only_space(const unsigned char *p, const unsigned char *end)
{
    for (; p < end; p++)
        if (!isspace(*p))
            return 0;
    return 1;
}

int crl_parse(const unsigned char *buf, size_t len, X509_CRL **out, char err[CRL_ERR_LEN])
{
    X509_CRL *crl = NULL;
    ERR_clear_error();
    if (len == 0) {
        snprintf(err, CRL_ERR_LEN, "empty body");
        return -1;
    }
    if (len > 0x7fffffff) {
        snprintf(err, CRL_ERR_LEN, "CRL too large to parse");
        return -1;
    }
    if (looks_like_pem(buf, len)) {
        BIO *b = BIO_new_mem_buf(buf, (int)len);
        if (b == NULL)
            return fail(err, "out of memory");
        crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
        BIO_free(b);
        if (crl == NULL)
            return fail(err, "not a PEM X509 CRL");
    } else {
        const unsigned char *p = buf;
        crl = d2i_X509_CRL(NULL, &p, (long)len);
        if (crl == NULL)
            return fail(err, "not a DER CRL");
        if (!only_space(p, buf + len)) {
            X509_CRL_free(crl);
            snprintf(err, CRL_ERR_LEN, "%zu bytes of trailing data after the CRL",
                     (size_t)(buf + len - p));
            return -1;
        }
    }
    *out = crl;
    return 0;
}

/* RFC 2253 text of a name, as the rest of fleetscan shows names. */
static void name_str(const X509_NAME *name, char *buf, size_t n)
{
    BIO *b = BIO_new(BIO_s_mem());
    buf[0] = '\0';
    if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        int len = BIO_read(b, buf, (int)n - 1);
        buf[len > 0 ? len : 0] = '\0';
    }
    BIO_free(b);
}

int crl_check_issuer(X509_CRL *crl, X509 *cert, X509 *issuer, char err[CRL_ERR_LEN])
{
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(cert)) != 0) {
        char got[96], want[96];
        name_str(X509_CRL_get_issuer(crl), got, sizeof(got));
        name_str(X509_get_issuer_name(cert), want, sizeof(want));
        snprintf(err, CRL_ERR_LEN, "wrong issuer: CRL by \"%.56s\", certificate by \"%.56s\"", got,
                 want);
        return -1;
    }
    AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    int rc = 0;
    if (akid && akid->keyid) {
        const ASN1_OCTET_STRING *want = issuer ? X509_get0_subject_key_id(issuer) : NULL;
        if (want == NULL)
            want = X509_get0_authority_key_id(cert);
        if (want && ASN1_OCTET_STRING_cmp(akid->keyid, want) != 0) {
            snprintf(err, CRL_ERR_LEN,
                     "wrong issuer: CRL authority key identifier does not "
                     "match the issuing CA's key");
            rc = -1;
        }
    }
    AUTHORITY_KEYID_free(akid);
    if (rc == 0 && issuer && (X509_get_extension_flags(issuer) & EXFLAG_KUSAGE) &&
        !(X509_get_key_usage(issuer) & KU_CRL_SIGN)) {
        snprintf(err, CRL_ERR_LEN, "the issuing CA's keyUsage lacks cRLSign: it may not sign CRLs");
        rc = -1;
    }
    ERR_clear_error();
    return rc;
}

int crl_verify_signature(X509_CRL *crl, EVP_PKEY *issuer_key, char err[CRL_ERR_LEN])
{
    ERR_clear_error();
    if (issuer_key == NULL) {
        snprintf(err, CRL_ERR_LEN, "no issuer key to verify the CRL signature");
        return -1;
    }
    if (X509_CRL_verify(crl, issuer_key) != 1)
        return fail(err, "bad CRL signature");
    return 0;
}

int crl_is_delta(X509_CRL *crl)
{
    int crit = 0;
    ASN1_INTEGER *base = X509_CRL_get_ext_d2i(crl, NID_delta_crl, &crit, NULL);
    int rc = base != NULL || crit >= 0; /* present, even if malformed */
    ASN1_INTEGER_free(base);
    ERR_clear_error();
    return rc;
}

int crl_check_delta(X509_CRL *delta, X509_CRL *base, char err[CRL_ERR_LEN])
{
    ASN1_INTEGER *want = X509_CRL_get_ext_d2i(delta, NID_delta_crl, NULL, NULL);
    ASN1_INTEGER *dnum = X509_CRL_get_ext_d2i(delta, NID_crl_number, NULL, NULL);
    ASN1_INTEGER *bnum = X509_CRL_get_ext_d2i(base, NID_crl_number, NULL, NULL);
    int rc = -1;
    if (want == NULL) {
        snprintf(err, CRL_ERR_LEN, "not a delta CRL (no Delta CRL Indicator)");
    } else if (crl_is_delta(base)) {
        snprintf(err, CRL_ERR_LEN, "the base CRL is itself a delta CRL");
    } else if (bnum == NULL) {
        snprintf(err, CRL_ERR_LEN, "the base CRL has no CRL number to match a delta against");
    } else if (crl_serial_cmp(bnum, want) < 0) {
        snprintf(err, CRL_ERR_LEN,
                 "delta CRL for a newer base CRL (BaseCRLNumber above the cached base's number): "
                 "the base CRL is out of date");
    } else if (dnum == NULL || crl_serial_cmp(dnum, bnum) <= 0) {
        snprintf(err, CRL_ERR_LEN, "delta CRL not newer than its base CRL (CRL number %s)",
                 dnum ? "not above the base's" : "missing");
    } else {
        rc = 0;
    }
    ASN1_INTEGER_free(want);
    ASN1_INTEGER_free(dnum);
    ASN1_INTEGER_free(bnum);
    ERR_clear_error();
    return rc;
}

int crl_from_ldap(const unsigned char *buf, size_t len, unsigned char **der, size_t *der_len,
                  char err[CRL_ERR_LEN])
{
    const char *p = (const char *)buf, *end = p + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *a = p;
        while (a < le && (*a == '\t' || *a == ' '))
            a++;
        const char *sep = memchr(a, ':', (size_t)(le - a));
        size_t alen = sep ? (size_t)(sep - a) : 0;
        int crl_attr = (alen >= 25 && strncasecmp(a, "certificateRevocationList", 25) == 0) ||
                       (alen >= 19 && strncasecmp(a, "deltaRevocationList", 19) == 0);
        if (sep && crl_attr && sep + 1 < le && sep[1] == ':') {
            const char *v = sep + 2;
            while (v < le && *v == ' ')
                v++;
            size_t n = (size_t)(le - v);
            while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == ' '))
                n--;
            if (n == 0 || n % 4 != 0 || n > 0x7ffffff0) {
                snprintf(err, CRL_ERR_LEN, "LDAP: malformed base64 value of %.*s", (int)alen, a);
                return -1;
            }
            unsigned char *out = malloc(n / 4 * 3 + 1); /* peer-sized: fail cleanly */
            if (out == NULL) {
                snprintf(err, CRL_ERR_LEN, "out of memory");
                return -1;
            }
            int got = EVP_DecodeBlock(out, (const unsigned char *)v, (int)n);
            if (got < 0) {
                free(out);
                snprintf(err, CRL_ERR_LEN, "LDAP: malformed base64 value of %.*s", (int)alen, a);
                ERR_clear_error();
                return -1;
            }
            /* EVP_DecodeBlock counts the '=' padding as zero bytes. */
            size_t pad = (v[n - 1] == '=') + (v[n - 2] == '=');
            *der = out;
            *der_len = (size_t)got - pad;
            return 0;
        }
        p = eol ? eol + 1 : end;
    }
    snprintf(err, CRL_ERR_LEN,
             len ? "LDAP: the entry has no certificateRevocationList value"
                 : "LDAP: no entry found");
    return -1;
}

int64_t crl_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
        ERR_clear_error();
        return 0;
    }
    return (int64_t)timegm(&tm);
}

void crl_times(X509_CRL *crl, int64_t *this_update, int64_t *next_update)
{
    *this_update = crl_asn1_time(X509_CRL_get0_lastUpdate(crl));
    *next_update = crl_asn1_time(X509_CRL_get0_nextUpdate(crl));
}

crl_time_t crl_check_time(X509_CRL *crl, int64_t at)
{
    int64_t tu, nu;
    crl_times(crl, &tu, &nu);
    if (tu > at)
        return CRL_TIME_NOT_YET_VALID;
    if (X509_CRL_get0_nextUpdate(crl) != NULL && nu < at)
        return CRL_TIME_EXPIRED;
    return CRL_TIME_OK;
}

int crl_serial_cmp(const ASN1_INTEGER *a, const ASN1_INTEGER *b)
{
    BIGNUM *x = ASN1_INTEGER_to_BN(a, NULL), *y = ASN1_INTEGER_to_BN(b, NULL);
    int rc = x && y ? BN_cmp(x, y) : -2;
    BN_free(x);
    BN_free(y);
    ERR_clear_error();
    return rc;
}

int crl_lookup_serial(X509_CRL *crl, const ASN1_INTEGER *serial, int64_t *revoked_at, int *reason)
{
    /* Entries parsed from DER are minimal; bring the query to the same canonical form so the
     * CRL's sorted binary search compares values, whatever padding the query carried. */
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    ASN1_INTEGER *canon = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    X509_REVOKED *rev = NULL;
    int rc = -1;
    BN_free(bn);
    if (canon == NULL)
        goto out;
    int found = X509_CRL_get0_by_serial(crl, &rev, canon);
    if (found != 1) { /* 2: removeFromCRL (delta CRLs) is not a revocation */
        rc = 0;
        goto out;
    }
    if (revoked_at)
        *revoked_at = crl_asn1_time(X509_REVOKED_get0_revocationDate(rev));
    if (reason) {
        ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
        *reason = e ? (int)ASN1_ENUMERATED_get(e) : -1;
        ASN1_ENUMERATED_free(e);
    }
    rc = 1;
out:
    ASN1_INTEGER_free(canon);
    ERR_clear_error();
    return rc;
}

/* ---- AIA payloads ------------------------------------------------------------------------- */

static int push_certs_of_pkcs7(PKCS7 *p7, STACK_OF(X509) * out)
{
    if (p7 == NULL || !PKCS7_type_is_signed(p7) || p7->d.sign == NULL)
        return -1;
    STACK_OF(X509) *certs = p7->d.sign->cert;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (!X509_up_ref(x))
            return -1;
        if (!sk_X509_push(out, x)) {
            X509_free(x);
            return -1;
        }
    }
    return 0;
}

static int parse_pem_certs(const unsigned char *buf, size_t len, STACK_OF(X509) * out)
{
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    if (b == NULL)
        return -1;
    int rc = 0;
    if (strstr((const char *)buf, "-----BEGIN PKCS7-----") != NULL) {
        PKCS7 *p7 = PEM_read_bio_PKCS7(b, NULL, NULL, NULL);
        rc = push_certs_of_pkcs7(p7, out);
        PKCS7_free(p7);
    } else {
        X509 *x;
        while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (!sk_X509_push(out, x)) {
                X509_free(x);
                rc = -1;
                break;
            }
        }
    }
    BIO_free(b);
    return rc;
}

int crl_parse_certs(const unsigned char *buf, size_t len, STACK_OF(X509) * *out,
                    char err[CRL_ERR_LEN])
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    ERR_clear_error();
    if (sk == NULL)
        return fail(err, "out of memory");
    if (len == 0 || len > 0x7fffffff) {
        sk_X509_free(sk);
        snprintf(err, CRL_ERR_LEN, len ? "payload too large to parse" : "empty body");
        return -1;
    }
    if (looks_like_pem(buf, len)) {
        /* PEM needs a terminated string for the label search: copy (the caller capped len). */
        char *txt = malloc(len + 1);
        if (txt == NULL) {
            sk_X509_free(sk);
            return fail(err, "out of memory");
        }
        memcpy(txt, buf, len);
        txt[len] = '\0';
        parse_pem_certs((const unsigned char *)txt, len, sk);
        free(txt);
    } else {
        const unsigned char *p = buf;
        X509 *x = d2i_X509(NULL, &p, (long)len);
        if (x != NULL) {
            if (!sk_X509_push(sk, x))
                X509_free(x);
        } else {
            ERR_clear_error();
            p = buf;
            PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
            push_certs_of_pkcs7(p7, sk);
            PKCS7_free(p7);
        }
    }
    if (sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        return fail(err, "not a certificate (DER, PEM) or PKCS#7 certificate bundle");
    }
    ERR_clear_error();
    *out = sk;
    return 0;
}

/* ---- memory cost -------------------------------------------------------------------------- */

/* Measured with OpenSSL 3.0 on 64-bit glibc, counting every allocation of d2i_X509_CRL and of
 * the later lookups as the chunk malloc hands out (request + 8, 16-byte granules, 32 at least):
 * a parsed CRL keeps its DER encoding (the signed part, for the signature check) plus ~1.5 KiB
 * of header objects, and per entry 170 bytes (X509_REVOKED, serial, revocationDate), 96 more
 * when it has extensions (their stack) and 80 per extension (reasonCode, invalidityDate...).
 * tests/test_crl.c measures the same way and holds the estimate within 20 % of reality. */
#define CRL_COST_BASE 1536
#define CRL_COST_ENTRY 170
#define CRL_COST_EXT_STACK 96
#define CRL_COST_EXT 80
/* A parsed certificate: ~6 KiB for a 0.5-1 KiB DER one (names, extensions cached by OpenSSL,
 * the public key); the payload's bytes come on top. */
#define CRL_COST_CERT 6144

size_t crl_parsed_cost(const X509_CRL *crl, size_t encoded_len)
{
    const STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED((X509_CRL *)crl);
    size_t cost = CRL_COST_BASE + encoded_len;
    for (int i = 0; i < sk_X509_REVOKED_num(rev); i++) {
        int next = X509_REVOKED_get_ext_count(sk_X509_REVOKED_value(rev, i));
        cost += CRL_COST_ENTRY + (next > 0 ? CRL_COST_EXT_STACK + (size_t)next * CRL_COST_EXT : 0);
    }
    return cost;
}

size_t crl_certs_cost(const STACK_OF(X509) * certs, size_t encoded_len)
{
    int n = sk_X509_num(certs); /* -1 for NULL: an OCSP response without certificates */
    return encoded_len + (n > 0 ? (size_t)n * CRL_COST_CERT : 0);
}
