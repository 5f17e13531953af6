/* pki.c - issues lab certificates and CRLs with the OpenSSL 3.0 API and assembles the
 * standard rollover scenario PKI on disk (no `openssl` command line involved). */
#include "lab/pki.h"

#include "probes/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#define LAB_DAY (24 * 3600)

const char *const lab_leaf_names[LAB_LEAF_COUNT] = {
    "good", "expired", "notyet", "wronghost", "sha1", "expiring", "revoked", "rogue", "legacy",
};
_Static_assert(FS_ARRAY_SIZE(lab_leaf_names) == LAB_LEAF_COUNT, "leaf names");

/* Formats msg plus the most recent OpenSSL error into err; returns -1. */
static int fail(char err[256], const char *msg)
{
    unsigned long e = ERR_peek_last_error();
    char buf[160] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, 256, "lab pki: %s%s%s", msg, e ? ": " : "", buf);
    ERR_clear_error();
    return -1;
}

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Appends "prefix:item," for each item to buf. */
static void append_list(char *buf, size_t n, const char *prefix, const char *const *items)
{
    for (size_t i = 0; items != NULL && items[i] != NULL; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, "%s%s:%s", used ? "," : "", prefix, items[i]);
    }
}

static int set_serial(X509 *cert, long serial)
{
    ASN1_INTEGER *ai = X509_get_serialNumber(cert);
    if (serial != 0)
        return ASN1_INTEGER_set_int64(ai, serial) ? 0 : -1;
    unsigned char b[8];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[0] &= 0x7f;
    b[0] |= 0x01; /* positive, never zero, always 8 bytes */
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    int rc = bn != NULL && BN_to_ASN1_INTEGER(bn, ai) != NULL ? 0 : -1;
    BN_free(bn);
    return rc;
}

static int set_name(X509_NAME *name, const char *cn)
{
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                    (const unsigned char *)"Fleetscan Lab", -1, -1, 0))
        return -1;
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0))
        return -1;
    return 0;
}

/* A CRL Distribution Points (or Freshest CRL) value: one distribution point whose fullName
 * holds the URIs first, then more (NULL-terminated, may be NULL), in order. Built by hand rather
 * than from a configuration string, which would split AD CS's "ldap:///CN=a,CN=b" at commas. */
static STACK_OF(DIST_POINT) * dps_of(const char *first, const char *const *more)
{
    STACK_OF(DIST_POINT) *dps = sk_DIST_POINT_new_null();
    DIST_POINT *dp = DIST_POINT_new();
    if (dps == NULL || dp == NULL || (dp->distpoint = DIST_POINT_NAME_new()) == NULL ||
        (dp->distpoint->name.fullname = GENERAL_NAMES_new()) == NULL)
        goto fail;
    dp->distpoint->type = 0;
    for (size_t i = 0;; i++) {
        const char *url = i == 0 ? first : more ? more[i - 1] : NULL;
        if (i == 0 && url == NULL)
            continue;
        if (url == NULL)
            break;
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *uri = ASN1_IA5STRING_new();
        if (gn == NULL || uri == NULL || !ASN1_STRING_set(uri, url, -1)) {
            ASN1_IA5STRING_free(uri);
            GENERAL_NAME_free(gn);
            goto fail;
        }
        GENERAL_NAME_set0_value(gn, GEN_URI, uri);
        if (!sk_GENERAL_NAME_push(dp->distpoint->name.fullname, gn)) {
            GENERAL_NAME_free(gn);
            goto fail;
        }
    }
    if (!sk_DIST_POINT_push(dps, dp))
        goto fail;
    return dps;
fail:
    DIST_POINT_free(dp);
    sk_DIST_POINT_free(dps);
    return NULL;
}

/* Adds a CDP-like extension (nid) with the URIs; none: nothing. 0 or -1. */
static int add_dps(X509 *cert, int nid, const char *first, const char *const *more)
{
    if (first == NULL && (more == NULL || more[0] == NULL))
        return 0;
    STACK_OF(DIST_POINT) *dps = dps_of(first, more);
    int ok = dps != NULL && X509_add1_ext_i2d(cert, nid, dps, 0, X509V3_ADD_DEFAULT) == 1;
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    return ok ? 0 : -1;
}

int lab_cert_issue(lab_cert_t *out, const lab_cert_opts_t *o, const lab_cert_t *issuer,
                   char err[256])
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    X509V3_CTX ctx;
    char buf[2048];
    int rc = -1;
    time_t now = time(NULL);
    const char *md = o->md ? o->md : "SHA256";
    const EVP_MD *digest = EVP_get_digestbyname(md);

    if (o->cn == NULL) {
        snprintf(err, 256, "lab pki: a certificate needs a CN");
        return -1;
    }
    if (digest == NULL) {
        snprintf(err, 256, "lab pki: unknown digest \"%s\"", md);
        return -1;
    }
    if (o->key != NULL) {
        EVP_PKEY_up_ref(o->key);
        key = o->key;
    } else if (o->key_ec) {
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    } else {
        key = EVP_RSA_gen(2048);
    }
    if (key == NULL) {
        fail(err, "key generation failed");
        goto out;
    }
    cert = X509_new();
    if (cert == NULL || !X509_set_version(cert, 2) || set_serial(cert, o->serial) != 0 ||
        set_name(X509_get_subject_name(cert), o->cn) != 0 ||
        !X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer->cert)
                                           : X509_get_subject_name(cert)) ||
        !X509_set_pubkey(cert, key)) {
        fail(err, "cannot build the certificate");
        goto out;
    }
    if (X509_time_adj_ex(X509_getm_notBefore(cert), 0,
                         o->not_before_off_s ? (long)o->not_before_off_s : -LAB_DAY,
                         &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(cert), 0,
                         o->not_after_off_s ? (long)o->not_after_off_s : 365L * LAB_DAY,
                         &now) == NULL) {
        fail(err, "cannot set the validity");
        goto out;
    }

    /* Issuer for self-signed is the certificate itself, so SKID must precede AKID. */
    X509V3_set_ctx(&ctx, issuer ? issuer->cert : cert, cert, NULL, NULL, 0);
    if (add_ext(cert, &ctx, NID_basic_constraints, o->is_ca ? "critical,CA:TRUE" : "CA:FALSE") ||
        add_ext(cert, &ctx, NID_key_usage,
                o->is_ca                    ? "critical,keyCertSign,cRLSign"
                : EVP_PKEY_is_a(key, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                            : "critical,digitalSignature") ||
        (!o->is_ca && add_ext(cert, &ctx, NID_ext_key_usage,
                              o->ocsp_signing       ? "OCSPSigning"
                              : o->client_auth_only ? "clientAuth"
                                                    : "serverAuth")) ||
        add_ext(cert, &ctx, NID_subject_key_identifier, "hash") ||
        add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always")) {
        fail(err, "cannot add the standard extensions");
        goto out;
    }
    buf[0] = '\0';
    append_list(buf, sizeof(buf), "DNS", o->dns_sans);
    append_list(buf, sizeof(buf), "IP", o->ip_sans);
    if (buf[0] != '\0' && add_ext(cert, &ctx, NID_subject_alt_name, buf)) {
        fail(err, "cannot add subjectAltName");
        goto out;
    }
    if (add_dps(cert, NID_crl_distribution_points, o->crl_url, o->crl_urls)) {
        fail(err, "cannot add the CRL distribution point");
        goto out;
    }
    if (add_dps(cert, NID_freshest_crl, o->freshest_url, NULL)) {
        fail(err, "cannot add freshestCRL");
        goto out;
    }
    buf[0] = '\0';
    if (o->aia_url != NULL)
        snprintf(buf, sizeof(buf), "caIssuers;URI:%s", o->aia_url);
    if (o->ocsp_url != NULL) {
        size_t used = strlen(buf);
        snprintf(buf + used, sizeof(buf) - used, "%sOCSP;URI:%s", used ? "," : "", o->ocsp_url);
    }
    if (buf[0] != '\0' && add_ext(cert, &ctx, NID_info_access, buf)) {
        fail(err, "cannot add authorityInfoAccess");
        goto out;
    }
    if (X509_sign(cert, issuer ? issuer->key : key, digest) <= 0) {
        fail(err, "signing failed");
        goto out;
    }
    out->cert = cert;
    out->key = key;
    cert = NULL;
    key = NULL;
    rc = 0;
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

void lab_cert_free(lab_cert_t *c)
{
    if (c == NULL)
        return;
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    c->cert = NULL;
    c->key = NULL;
}

static FILE *open_mode(const char *path, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "wb");
    if (f == NULL)
        close(fd);
    return f;
}

static int close_checked(FILE *f, int ok)
{
    if (fclose(f) != 0)
        ok = 0;
    if (!ok && errno == 0)
        errno = EIO;
    return ok ? 0 : -1;
}

int lab_write_pem(const char *path, X509 *const *certs, size_t n)
{
    FILE *f = open_mode(path, 0644);
    if (f == NULL)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++)
        ok = PEM_write_X509(f, certs[i]) == 1;
    return close_checked(f, ok);
}

int lab_write_key(const char *path, EVP_PKEY *key)
{
    FILE *f = open_mode(path, 0600);
    if (f == NULL)
        return -1;
    return close_checked(f, PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
}

int lab_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = open_mode(path, 0644);
    if (f == NULL)
        return -1;
    return close_checked(f, fwrite(buf, 1, len, f) == len);
}

int lab_cert_der(X509 *cert, unsigned char **buf, size_t *len)
{
    int n = i2d_X509(cert, NULL);
    if (n <= 0)
        return -1;
    unsigned char *p = fs_xmalloc((size_t)n);
    *buf = p;
    *len = (size_t)i2d_X509(cert, &p);
    return 0;
}

int lab_der_to_pem(const unsigned char *der, size_t len, const char *label, char **pem,
                   size_t *pem_len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    int rc = -1;
    if (b == NULL || PEM_write_bio(b, label, "", der, (long)len) <= 0)
        goto out;
    long n = BIO_get_mem_data(b, &data);
    *pem = fs_xmalloc((size_t)n + 1);
    memcpy(*pem, data, (size_t)n);
    (*pem)[n] = '\0';
    *pem_len = (size_t)n;
    rc = 0;
out:
    BIO_free(b);
    return rc;
}

/* Sets r's serial: the certificate's, or for a synthetic entry i a 16-byte serial as AD CS
 * issues them (0x61 followed by i, big-endian, zero-padded). */
static int revoked_set_serial(X509_REVOKED *r, const X509 *cert, size_t i)
{
    if (cert != NULL)
        return X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)X509_get0_serialNumber(cert));
    unsigned char b[16] = {0x61};
    for (int k = 15; k > 0 && i > 0; k--, i >>= 8)
        b[k] = (unsigned char)(i & 0xff);
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    ASN1_INTEGER *a = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = a != NULL && X509_REVOKED_set_serialNumber(r, a);
    ASN1_INTEGER_free(a);
    BN_free(bn);
    return ok;
}

/* The CRL o describes: the listed certificates, else nsynthetic made-up serials. */
static int crl_make(unsigned char **der, size_t *len, const lab_cert_t *issuer,
                    const lab_crl_opts_t *o, size_t nsynthetic, char err[256])
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_new();
    ASN1_INTEGER *number = ASN1_INTEGER_new(), *base = NULL;
    ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
    X509_EXTENSION *akid = NULL;
    STACK_OF(DIST_POINT) *freshest = NULL;
    X509V3_CTX ctx;
    time_t now = time(NULL);
    int rc = -1;
    const EVP_MD *digest = EVP_get_digestbyname(o->md ? o->md : "SHA256");
    size_t n = o->revoked ? o->nrevoked : nsynthetic;

    if (crl == NULL || t == NULL || number == NULL || reason == NULL || digest == NULL) {
        fail(err, "CRL: out of memory or unknown digest");
        goto out;
    }
    if (!X509_CRL_set_version(crl, 1) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->cert)) ||
        X509_time_adj_ex(t, 0, (long)o->this_update_off_s, &now) == NULL ||
        !X509_CRL_set1_lastUpdate(crl, t) ||
        X509_time_adj_ex(t, 0, (long)o->next_update_off_s, &now) == NULL ||
        !X509_CRL_set1_nextUpdate(crl, t) ||
        !ASN1_INTEGER_set_int64(number, o->crl_number ? o->crl_number
                                                      : (int64_t)now + o->this_update_off_s) ||
        !X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0) ||
        !ASN1_ENUMERATED_set(reason, o->reason ? o->reason : CRL_REASON_KEY_COMPROMISE) ||
        X509_time_adj_ex(t, 0, -3600, &now) == NULL) {
        fail(err, "CRL: cannot set the header");
        goto out;
    }
    if (o->delta_base > 0 &&
        ((base = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set_int64(base, o->delta_base) ||
         !X509_CRL_add1_ext_i2d(crl, NID_delta_crl, base, 1, 0))) {
        fail(err, "CRL: cannot add the Delta CRL Indicator");
        goto out;
    }
    if (o->freshest_url != NULL &&
        ((freshest = dps_of(o->freshest_url, NULL)) == NULL ||
         !X509_CRL_add1_ext_i2d(crl, NID_freshest_crl, freshest, 0, 0))) {
        fail(err, "CRL: cannot add the Freshest CRL extension");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        X509_REVOKED *r = X509_REVOKED_new();
        if (r == NULL || !revoked_set_serial(r, o->revoked ? o->revoked[i] : NULL, i + 1) ||
            !X509_REVOKED_set_revocationDate(r, t) ||
            !X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) ||
            !X509_CRL_add0_revoked(crl, r)) {
            X509_REVOKED_free(r);
            fail(err, "CRL: cannot add a revoked entry");
            goto out;
        }
    }
    X509_CRL_sort(crl);
    X509V3_set_ctx(&ctx, issuer->cert, NULL, NULL, crl, 0);
    akid = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (akid == NULL || !X509_CRL_add_ext(crl, akid, -1)) {
        fail(err, "CRL: cannot add authorityKeyIdentifier");
        goto out;
    }
    if (X509_CRL_sign(crl, issuer->key, digest) <= 0) {
        fail(err, "CRL: signing failed");
        goto out;
    }
    int dlen = i2d_X509_CRL(crl, NULL);
    if (dlen <= 0) {
        fail(err, "CRL: cannot encode");
        goto out;
    }
    unsigned char *p = fs_xmalloc((size_t)dlen);
    *der = p;
    *len = (size_t)i2d_X509_CRL(crl, &p);
    rc = 0;
out:
    sk_DIST_POINT_pop_free(freshest, DIST_POINT_free);
    X509_EXTENSION_free(akid);
    ASN1_ENUMERATED_free(reason);
    ASN1_INTEGER_free(base);
    ASN1_INTEGER_free(number);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return rc;
}

int lab_crl_make(unsigned char **der, size_t *len, const lab_cert_t *issuer,
                 const X509 *const *revoked, size_t nrevoked, int64_t this_update_off_s,
                 int64_t next_update_off_s, const char *md, char err[256])
{
    if (nrevoked > 0 && revoked == NULL) {
        snprintf(err, 256, "CRL: %zu revoked certificates but no list", nrevoked);
        return -1;
    }
    lab_crl_opts_t o = {.revoked = revoked,
                        .nrevoked = nrevoked,
                        .this_update_off_s = this_update_off_s,
                        .next_update_off_s = next_update_off_s,
                        .md = md};
    return crl_make(der, len, issuer, &o, 0, err);
}

int lab_crl_make_ex(unsigned char **der, size_t *len, const lab_cert_t *issuer,
                    const lab_crl_opts_t *o, char err[256])
{
    if (o->nrevoked > 0 && o->revoked == NULL) {
        snprintf(err, 256, "CRL: %zu revoked certificates but no list", o->nrevoked);
        return -1;
    }
    return crl_make(der, len, issuer, o, 0, err);
}

int lab_crl_make_bulk(unsigned char **der, size_t *len, const lab_cert_t *issuer, size_t n,
                      int64_t this_update_off_s, int64_t next_update_off_s, char err[256])
{
    lab_crl_opts_t o = {.this_update_off_s = this_update_off_s,
                        .next_update_off_s = next_update_off_s};
    return crl_make(der, len, issuer, &o, n, err);
}

char *lab_pki_path(const lab_pki_t *p, const char *file, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", p->dir, file);
    return buf;
}

static int write_pem1(const lab_pki_t *p, const char *file, X509 *a, X509 *b, char err[256])
{
    char path[1024];
    X509 *certs[2] = {a, b};
    if (lab_write_pem(lab_pki_path(p, file, path, sizeof(path)), certs, b ? 2 : 1) != 0) {
        snprintf(err, 256, "lab pki: cannot write %.160s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_der(const lab_pki_t *p, const char *file, const void *buf, size_t len,
                     char err[256])
{
    char path[1024];
    if (lab_write_file(lab_pki_path(p, file, path, sizeof(path)), buf, len) != 0) {
        snprintf(err, 256, "lab pki: cannot write %.160s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Issues the CAs of the scenario. */
static int create_cas(lab_pki_t *p, const char *base, char err[256])
{
    char crl[600], aia[600];
    lab_cert_opts_t o = {.cn = "Lab Root CA", .is_ca = 1, .not_after_off_s = 20L * 365 * LAB_DAY};
    if (lab_cert_issue(&p->root, &o, NULL, err) != 0)
        return -1;

    o = (lab_cert_opts_t){
        .cn = "Lab Issuing CA 1", .is_ca = 1, .not_after_off_s = 5L * 365 * LAB_DAY};
    if (base != NULL) {
        snprintf(crl, sizeof(crl), "%s/root.crl", base);
        snprintf(aia, sizeof(aia), "%s/root.der", base);
        o.crl_url = crl;
        o.aia_url = aia;
    }
    if (lab_cert_issue(&p->inter, &o, &p->root, err) != 0)
        return -1;

    o = (lab_cert_opts_t){.cn = "Lab Legacy Root CA",
                          .is_ca = 1,
                          .key_ec = 1,
                          .not_after_off_s = 10L * 365 * LAB_DAY};
    if (lab_cert_issue(&p->old_root, &o, NULL, err) != 0)
        return -1;
    o.cn = "Rogue Root CA";
    return lab_cert_issue(&p->rogue_root, &o, NULL, err);
}

static int create_leaves(lab_pki_t *p, const char *base, char err[256])
{
    char crl[600], aia[600];
    const char *sans[] = {p->host, NULL};
    const char *other[] = {"other.lab.test", NULL};
    const char *ips[] = {"127.0.0.1", NULL};
    EVP_PKEY *key = EVP_RSA_gen(2048);
    int rc = -1;

    if (key == NULL)
        return fail(err, "leaf key generation failed");
    if (base != NULL) {
        snprintf(crl, sizeof(crl), "%s/inter.crl", base);
        snprintf(aia, sizeof(aia), "%s/inter.der", base);
    }
    for (int i = 0; i < LAB_LEAF_COUNT; i++) {
        lab_cert_opts_t o = {.cn = p->host, .dns_sans = sans, .ip_sans = ips, .key = key};
        const lab_cert_t *issuer = &p->inter;
        if (base != NULL) {
            o.crl_url = crl;
            o.aia_url = aia;
        }
        switch ((lab_leaf_t)i) {
        case LAB_LEAF_EXPIRED:
            o.not_before_off_s = -30L * LAB_DAY;
            o.not_after_off_s = -2L * LAB_DAY;
            break;
        case LAB_LEAF_NOTYET:
            o.not_before_off_s = 2L * LAB_DAY;
            break;
        case LAB_LEAF_WRONGHOST:
            o.cn = "other.lab.test";
            o.dns_sans = other;
            o.ip_sans = NULL;
            break;
        case LAB_LEAF_SHA1:
            o.md = "SHA1";
            break;
        case LAB_LEAF_EXPIRING:
            o.not_after_off_s = 5L * LAB_DAY;
            break;
        case LAB_LEAF_ROGUE:
            issuer = &p->rogue_root;
            o.crl_url = o.aia_url = NULL;
            break;
        case LAB_LEAF_LEGACY:
            issuer = &p->old_root;
            o.crl_url = o.aia_url = NULL;
            break;
        default:
            break;
        }
        if (lab_cert_issue(&p->leaf[i], &o, issuer, err) != 0)
            goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(key);
    return rc;
}

static int write_files(lab_pki_t *p, char err[256])
{
    char file[300], path[1024];
    if (write_pem1(p, "root.pem", p->root.cert, NULL, err) ||
        write_pem1(p, "inter.pem", p->inter.cert, NULL, err) ||
        write_pem1(p, "old-root.pem", p->old_root.cert, NULL, err) ||
        write_pem1(p, "rogue-root.pem", p->rogue_root.cert, NULL, err) ||
        write_der(p, "inter.crl", p->inter_crl, p->inter_crl_len, err) ||
        write_der(p, "root.crl", p->root_crl, p->root_crl_len, err) ||
        write_der(p, "inter.der", p->inter_der, p->inter_der_len, err) ||
        write_der(p, "root.der", p->root_der, p->root_der_len, err))
        return -1;
    for (int i = 0; i < LAB_LEAF_COUNT; i++) {
        int by_inter = i != LAB_LEAF_ROGUE && i != LAB_LEAF_LEGACY;
        snprintf(file, sizeof(file), "%s.pem", lab_leaf_names[i]);
        if (write_pem1(p, file, p->leaf[i].cert, NULL, err))
            return -1;
        snprintf(file, sizeof(file), "%s-chain.pem", lab_leaf_names[i]);
        if (write_pem1(p, file, p->leaf[i].cert, by_inter ? p->inter.cert : NULL, err))
            return -1;
        snprintf(file, sizeof(file), "%s-key.pem", lab_leaf_names[i]);
        if (lab_write_key(lab_pki_path(p, file, path, sizeof(path)), p->leaf[i].key) != 0) {
            snprintf(err, 256, "lab pki: cannot write %.160s: %s", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

int lab_pki_create(lab_pki_t *p, const char *dir, const char *host, const char *crl_base_url,
                   char err[256])
{
    const X509 *revoked[1];
    memset(p, 0, sizeof(*p));
    if (strlen(dir) >= sizeof(p->dir) || strlen(host) >= sizeof(p->host)) {
        snprintf(err, 256, "lab pki: directory or host name too long");
        return -1;
    }
    fs_strlcpy(p->dir, dir, sizeof(p->dir));
    fs_strlcpy(p->host, host, sizeof(p->host));
    if (create_cas(p, crl_base_url, err) || create_leaves(p, crl_base_url, err))
        goto fail;
    revoked[0] = p->leaf[LAB_LEAF_REVOKED].cert;
    if (lab_crl_make(&p->inter_crl, &p->inter_crl_len, &p->inter, revoked, 1, -3600, 7L * LAB_DAY,
                     NULL, err) ||
        lab_crl_make(&p->root_crl, &p->root_crl_len, &p->root, NULL, 0, -3600, 30L * LAB_DAY, NULL,
                     err))
        goto fail;
    if (lab_cert_der(p->inter.cert, &p->inter_der, &p->inter_der_len) ||
        lab_cert_der(p->root.cert, &p->root_der, &p->root_der_len)) {
        fail(err, "cannot DER-encode the CAs");
        goto fail;
    }
    if (write_files(p, err) != 0)
        goto fail;
    return 0;
fail:
    lab_pki_free(p);
    return -1;
}

void lab_pki_free(lab_pki_t *p)
{
    lab_cert_free(&p->root);
    lab_cert_free(&p->inter);
    lab_cert_free(&p->old_root);
    lab_cert_free(&p->rogue_root);
    for (int i = 0; i < LAB_LEAF_COUNT; i++)
        lab_cert_free(&p->leaf[i]);
    free(p->inter_crl);
    free(p->root_crl);
    free(p->inter_der);
    free(p->root_der);
    memset(p, 0, sizeof(*p));
}

void lab_pki_publish(const lab_pki_t *p, lab_http_t *h)
{
    lab_http_set(h, "/inter.crl", 200, p->inter_crl, p->inter_crl_len, "application/pkix-crl");
    lab_http_set(h, "/root.crl", 200, p->root_crl, p->root_crl_len, "application/pkix-crl");
    lab_http_set(h, "/inter.der", 200, p->inter_der, p->inter_der_len, "application/pkix-cert");
    lab_http_set(h, "/root.der", 200, p->root_der, p->root_der_len, "application/pkix-cert");
}

void lab_pki_serve_crl(const lab_pki_t *p, lab_http_t *h, const char *which, int served)
{
    int root = strcmp(which, "root") == 0;
    const char *path = root ? "/root.crl" : "/inter.crl";
    if (!served)
        lab_http_set_special(h, path, LAB_HTTP_RESET);
    else if (root)
        lab_http_set(h, path, 200, p->root_crl, p->root_crl_len, "application/pkix-crl");
    else
        lab_http_set(h, path, 200, p->inter_crl, p->inter_crl_len, "application/pkix-crl");
}
