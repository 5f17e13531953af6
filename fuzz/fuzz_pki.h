/* fuzz_pki.h - the few certificates the fuzz targets need, made once at start-up. Self-contained
 * (no lab/ dependency) so a target links only the module it fuzzes. */
#ifndef FS_FUZZ_PKI_H
#define FS_FUZZ_PKI_H

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Aborts with what when ok is false: set-up failures are not findings. */
static void fuzz_must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz set-up failed: %s\n", what);
        abort();
    }
}

static void fuzz_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    fuzz_must(e != NULL && X509_add_ext(x, e, -1) == 1, value);
    X509_EXTENSION_free(e);
}

/* A P-256 certificate "CN=cn" with serial, signed by issuer/issuer_key (NULL: self-signed).
 * CAs get keyCertSign+cRLSign; every certificate gets SKID and (when issued) AKID. The new key
 * is returned in *key_out (owned by the caller) when key_out is not NULL. */
static X509 *fuzz_make_cert(const char *cn, long serial, int is_ca, X509 *issuer,
                            EVP_PKEY *issuer_key, EVP_PKEY **key_out)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    fuzz_must(k != NULL && x != NULL, "key/cert allocation");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_set_pubkey(x, k);
    fuzz_add_ext(x, issuer, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    fuzz_add_ext(x, issuer, NID_key_usage,
                 is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    fuzz_add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        fuzz_add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    fuzz_must(X509_sign(x, issuer_key ? issuer_key : k, EVP_sha256()) > 0, "X509_sign");
    if (key_out != NULL)
        *key_out = k;
    else
        EVP_PKEY_free(k);
    return x;
}

#endif
