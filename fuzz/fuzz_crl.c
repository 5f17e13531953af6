/* fuzz_crl.c - libFuzzer target for the CRL, AIA, OCSP and LDAP payload parsers: the input is a
 * CRL body, a caIssuers payload, an OCSP response or libcurl's LDAP output; whatever parses is
 * run through every check and lookup. */
#include "probes/crl.h"
#include "probes/ocsp.h"

#include "fuzz/fuzz_pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Fixed issuer and a leaf it issued, made once: the CRLs' counterparts in the checks. */
static X509 *issuer, *leaf;
static EVP_PKEY *issuer_key;
/* Serials every parsed CRL is queried for, including encodings that differ only in padding. */
static ASN1_INTEGER *queries[6];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    issuer = fuzz_make_cert("Lab Issuing CA 1", 2, 1, NULL, NULL, &issuer_key);
    leaf = fuzz_make_cert("revoked.lab.test", 0x80, 0, issuer, issuer_key, NULL);
    static const long vals[] = {0, 1, 0x80, 0x0123, -1};
    for (size_t i = 0; i < 5; i++) {
        queries[i] = ASN1_INTEGER_new();
        fuzz_must(queries[i] != NULL && ASN1_INTEGER_set(queries[i], vals[i]) == 1, "serial");
    }
    /* 0x80 with a redundant leading zero byte: the lookup must compare by value. */
    static const unsigned char padded[] = {0x00, 0x00, 0x80};
    queries[5] = ASN1_INTEGER_new();
    fuzz_must(queries[5] != NULL && ASN1_STRING_set(queries[5], padded, sizeof(padded)) == 1,
              "pad");
    ERR_clear_error();
    return 0;
}

/* Count of entries of crl whose serial equals s by value. */
static int count_serial(X509_CRL *crl, const ASN1_INTEGER *s)
{
    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
    int n = 0;
    for (int i = 0; i < sk_X509_REVOKED_num(revs); i++)
        if (crl_serial_cmp(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, i)), s) == 0)
            n++;
    return n;
}

static void exercise_crl(X509_CRL *crl)
{
    char err[CRL_ERR_LEN];
    int64_t tu, nu, at;
    crl_times(crl, &tu, &nu);
    static const int64_t clocks[] = {0, 1700000000, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++)
        (void)crl_check_time(crl, clocks[i]);
    (void)crl_check_time(crl, tu);
    (void)crl_check_time(crl, nu);
    crl_check_issuer(crl, leaf, issuer, err);
    crl_check_issuer(crl, leaf, NULL, err);
    crl_verify_signature(crl, issuer_key, err);
    crl_verify_signature(crl, NULL, err);
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        int reason = -2;
        at = 0;
        int r = crl_lookup_serial(crl, queries[i], &at, &reason);
        if (r < -1 || r > 1)
            abort();
        (void)crl_lookup_serial(crl, queries[i], NULL, NULL);
    }
    /* Every listed serial (listed once, so no duplicate can shadow it) must be found, unless
     * the entry says removeFromCRL. Indirect CRLs (entries naming another certificateIssuer)
     * legitimately hide entries: skip the check for them. The queries above already sorted the
     * entries (X509_CRL_get0_by_serial sorts in place), so the order is stable from here. */
    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
    for (int i = 0; i < sk_X509_REVOKED_num(revs); i++)
        if (X509_REVOKED_get_ext_by_NID(sk_X509_REVOKED_value(revs, i), NID_certificate_issuer,
                                        -1) >= 0)
            return;
    for (int i = 0; i < sk_X509_REVOKED_num(revs) && i < 64; i++) {
        X509_REVOKED *rev = sk_X509_REVOKED_value(revs, i);
        const ASN1_INTEGER *s = X509_REVOKED_get0_serialNumber(rev);
        int reason = -2;
        int r = crl_lookup_serial(crl, s, &at, &reason);
        if (crl_serial_cmp(s, s) == 0 && r == 0 && count_serial(crl, s) == 1) {
            ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
            long code = e ? ASN1_ENUMERATED_get(e) : -1;
            ASN1_ENUMERATED_free(e);
            if (code != CRL_REASON_REMOVE_FROM_CRL && ERR_peek_error() == 0) {
                fprintf(stderr, "fuzz_crl: listed serial %d not found by crl_lookup_serial\n", i);
                abort();
            }
        }
        ERR_clear_error();
    }
}

static void exercise_cert(X509 *cert, X509_CRL *crl)
{
    char err[CRL_ERR_LEN];
    crl_urls_t u;
    crl_cdp_urls(cert, &u);
    for (size_t i = 0; i < u.n; i++)
        if (u.v[i] == NULL || crl_url_is_http(u.v[i]) < 0)
            abort();
    crl_urls_free(&u);
    crl_aia_issuer_urls(cert, &u);
    for (size_t i = 0; i < u.n; i++)
        (void)crl_url_is_http(u.v[i]);
    crl_urls_free(&u);
    (void)crl_asn1_time(X509_get0_notBefore(cert));
    (void)crl_asn1_time(X509_get0_notAfter(cert));
    if (crl != NULL) {
        crl_check_issuer(crl, cert, issuer, err);
        crl_check_issuer(crl, leaf, cert, err);
    }
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char err[CRL_ERR_LEN];
    X509_CRL *crl = NULL;
    STACK_OF(X509) *certs = NULL;
    if (crl_parse(data, size, &crl, err) == 0) {
        if (crl == NULL)
            abort();
        exercise_crl(crl);
    } else if (memchr(err, '\0', sizeof(err)) == NULL) {
        abort();
    }
    if (crl_parse_certs(data, size, &certs, err) == 0) {
        if (certs == NULL || sk_X509_num(certs) < 1)
            abort(); /* the header promises at least one certificate */
        for (int i = 0; i < sk_X509_num(certs) && i < 16; i++)
            exercise_cert(sk_X509_value(certs, i), crl);
        sk_X509_pop_free(certs, X509_free);
    }
    /* A delta CRL checked against the base just parsed, when both parse (the input twice). */
    if (crl != NULL)
        crl_check_delta(crl, crl, err);
    /* An OCSP response: signer, status for the leaf, freshness. */
    OCSP_BASICRESP *bs = NULL;
    if (ocsp_parse_response(data, size, &bs, err) == 0) {
        OCSP_CERTID *id = ocsp_cert_id(leaf, issuer);
        ocsp_answer_t a;
        ocsp_check_signer(bs, issuer, 1700000000, err);
        if (id != NULL && ocsp_find(bs, id, &a, err) == 0)
            ocsp_check_time(&a, 1700000000, err);
        ocsp_min_next_update(bs);
        OCSP_CERTID_free(id);
        OCSP_BASICRESP_free(bs);
    }
    /* libcurl's LDAP output: a CRL value is decoded, then parsed like a body. */
    unsigned char *der = NULL;
    size_t dlen = 0;
    if (crl_from_ldap(data, size, &der, &dlen, err) == 0) {
        X509_CRL *lcrl = NULL;
        if (dlen > 0 && crl_parse(der, dlen, &lcrl, err) == 0)
            exercise_crl(lcrl);
        X509_CRL_free(lcrl);
        free(der);
    }
    X509_CRL_free(crl);
    ERR_clear_error();
    return 0;
}
