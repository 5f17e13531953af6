/* test_crl.c - CRL parsing (DER, PEM), issuer and signature checks, time validity, serial lookup
 * by value, CDP/AIA URL extraction and AIA payload formats, on certificates made by lab/pki. */
#include "probes/crl.h"

#include "lab/pki.h"
#include "probes/util.h"

#include "test.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#define DAY (24 * 3600)

static lab_cert_t root, inter, fake_inter, leaf_good, leaf_revoked;
static unsigned char *crl_der;
static size_t crl_len;

static void issue(lab_cert_t *out, const char *cn, int is_ca, long serial, const lab_cert_t *by)
{
    char err[256];
    lab_cert_opts_t o = {.cn = cn,
                         .is_ca = is_ca,
                         .serial = serial,
                         .key_ec = 1,
                         .crl_url = "http://crl.lab.test/inter.crl",
                         .aia_url = "http://crl.lab.test/inter.der"};
    if (lab_cert_issue(out, &o, by, err) != 0) {
        fprintf(stderr, "%s\n", err);
        ASSERT(0);
    }
}

static X509_CRL *make_crl(const lab_cert_t *by, const X509 *const *revoked, size_t n,
                          int64_t this_off, int64_t next_off)
{
    unsigned char *der;
    size_t len;
    char err[256], perr[CRL_ERR_LEN];
    ASSERT_EQ(lab_crl_make(&der, &len, by, revoked, n, this_off, next_off, NULL, err), 0);
    X509_CRL *crl = NULL;
    ASSERT_EQ(crl_parse(der, len, &crl, perr), 0);
    free(der);
    return crl;
}

static void setup(void)
{
    char err[256];
    issue(&root, "Lab Root CA", 1, 1, NULL);
    issue(&inter, "Lab Issuing CA 1", 1, 2, &root);
    /* Same name as inter, another key: what a CA rebuilt from scratch would sign with. */
    issue(&fake_inter, "Lab Issuing CA 1", 1, 3, &root);
    issue(&leaf_good, "good.lab.test", 0, 0x0123, &inter);
    /* 0x80 has its high bit set: DER pads it to 00 80, a string compare of hex would miss. */
    issue(&leaf_revoked, "revoked.lab.test", 0, 0x80, &inter);
    const X509 *rev[] = {leaf_revoked.cert};
    ASSERT_EQ(lab_crl_make(&crl_der, &crl_len, &inter, rev, 1, -3600, 7 * DAY, NULL, err), 0);
}

static void test_parse_der_pem(void)
{
    char err[CRL_ERR_LEN];
    X509_CRL *crl = NULL;
    ASSERT_EQ(crl_parse(crl_der, crl_len, &crl, err), 0);
    ASSERT(crl != NULL);
    X509_CRL_free(crl);

    char *pem;
    size_t pem_len;
    ASSERT_EQ(lab_der_to_pem(crl_der, crl_len, "X509 CRL", &pem, &pem_len), 0);
    crl = NULL;
    ASSERT_EQ(crl_parse((unsigned char *)pem, pem_len, &crl, err), 0);
    ASSERT(crl != NULL);
    X509_CRL_free(crl);
    free(pem);

    /* Garbage, an HTML error page, a truncated CRL, trailing junk and nothing at all fail. */
    const char *html = "<html><body>Proxy error</body></html>";
    ASSERT_EQ(crl_parse((const unsigned char *)html, strlen(html), &crl, err), -1);
    ASSERT_CONTAINS(err, "not a DER CRL");
    ASSERT_EQ(crl_parse(crl_der, crl_len / 2, &crl, err), -1);
    unsigned char *junk = malloc(crl_len + 4);
    memcpy(junk, crl_der, crl_len);
    memcpy(junk + crl_len, "JUNK", 4);
    ASSERT_EQ(crl_parse(junk, crl_len + 4, &crl, err), -1);
    ASSERT_CONTAINS(err, "trailing");
    free(junk);
    ASSERT_EQ(crl_parse(crl_der, 0, &crl, err), -1);
    ASSERT_CONTAINS(err, "empty");
    const char *badpem = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
    ASSERT_EQ(crl_parse((const unsigned char *)badpem, strlen(badpem), &crl, err), -1);
    ASSERT(ERR_peek_error() == 0); /* the error queue is left clean */
}

static void test_signature(void)
{
    char err[CRL_ERR_LEN];
    X509_CRL *crl = NULL;
    ASSERT_EQ(crl_parse(crl_der, crl_len, &crl, err), 0);
    ASSERT_EQ(crl_verify_signature(crl, X509_get0_pubkey(inter.cert), err), 0);
    ASSERT_EQ(crl_verify_signature(crl, X509_get0_pubkey(root.cert), err), -1);
    ASSERT_CONTAINS(err, "bad CRL signature");
    ASSERT_EQ(crl_verify_signature(crl, NULL, err), -1);
    X509_CRL_free(crl);

    /* Signed by a key with the right name but the wrong key: name matches, AKID and signature
     * do not. */
    crl = make_crl(&fake_inter, NULL, 0, -3600, 7 * DAY);
    ASSERT_EQ(crl_verify_signature(crl, X509_get0_pubkey(inter.cert), err), -1);
    ASSERT_EQ(crl_check_issuer(crl, leaf_good.cert, inter.cert, err), -1);
    ASSERT_CONTAINS(err, "authority key identifier");
    X509_CRL_free(crl);
}

static void test_issuer(void)
{
    char err[CRL_ERR_LEN];
    X509_CRL *crl = make_crl(&inter, NULL, 0, -3600, 7 * DAY);
    ASSERT_EQ(crl_check_issuer(crl, leaf_good.cert, inter.cert, err), 0);
    /* Without the issuer cert the leaf's own AKID is the reference. */
    ASSERT_EQ(crl_check_issuer(crl, leaf_good.cert, NULL, err), 0);
    /* The inter's CRL does not speak for inter itself (issued by root). */
    ASSERT_EQ(crl_check_issuer(crl, inter.cert, root.cert, err), -1);
    ASSERT_CONTAINS(err, "wrong issuer");
    X509_CRL_free(crl);

    /* The root's CRL served for a leaf issued by inter. */
    crl = make_crl(&root, NULL, 0, -3600, 7 * DAY);
    ASSERT_EQ(crl_check_issuer(crl, leaf_good.cert, inter.cert, err), -1);
    ASSERT_CONTAINS(err, "Lab Root CA");
    ASSERT_EQ(crl_check_issuer(crl, inter.cert, root.cert, err), 0);
    X509_CRL_free(crl);

    /* An issuer whose keyUsage lacks cRLSign may not sign CRLs. */
    crl = make_crl(&leaf_good, NULL, 0, -3600, 7 * DAY);
    lab_cert_t sub;
    char e2[256];
    lab_cert_opts_t o = {.cn = "sub.lab.test", .key_ec = 1};
    ASSERT_EQ(lab_cert_issue(&sub, &o, &leaf_good, e2), 0);
    ASSERT_EQ(crl_check_issuer(crl, sub.cert, leaf_good.cert, err), -1);
    ASSERT_CONTAINS(err, "cRLSign");
    lab_cert_free(&sub);
    X509_CRL_free(crl);
}

static void test_times(void)
{
    int64_t now = (int64_t)time(NULL), tu, nu;
    X509_CRL *crl = make_crl(&inter, NULL, 0, -10 * DAY, -DAY);
    crl_times(crl, &tu, &nu);
    ASSERT(tu >= now - 10 * DAY - 5 && tu <= now - 10 * DAY + 5);
    ASSERT(nu >= now - DAY - 5 && nu <= now - DAY + 5);
    ASSERT_EQ(crl_check_time(crl, now), CRL_TIME_EXPIRED);
    ASSERT_EQ(crl_check_time(crl, now - 2 * DAY), CRL_TIME_OK); /* a clock behind */
    ASSERT_EQ(crl_check_time(crl, now - 20 * DAY), CRL_TIME_NOT_YET_VALID);
    X509_CRL_free(crl);
    crl = make_crl(&inter, NULL, 0, -3600, 7 * DAY);
    ASSERT_EQ(crl_check_time(crl, now), CRL_TIME_OK);
    ASSERT_EQ(crl_check_time(crl, now + 8 * DAY), CRL_TIME_EXPIRED); /* forecast */
    X509_CRL_free(crl);
}

static ASN1_INTEGER *raw_integer(const unsigned char *b, int n)
{
    ASN1_INTEGER *a = ASN1_INTEGER_new();
    ASSERT(a != NULL && ASN1_STRING_set(a, b, n));
    return a;
}

static void test_serial_lookup(void)
{
    char err[CRL_ERR_LEN];
    X509_CRL *crl = NULL;
    ASSERT_EQ(crl_parse(crl_der, crl_len, &crl, err), 0);
    int64_t at = 0, now = (int64_t)time(NULL);
    int reason = -2;
    ASSERT_EQ(crl_lookup_serial(crl, X509_get0_serialNumber(leaf_revoked.cert), &at, &reason), 1);
    ASSERT_EQ(reason, 1); /* keyCompromise */
    ASSERT(at >= now - 3600 - 5 && at <= now - 3600 + 5);
    ASSERT_EQ(crl_lookup_serial(crl, X509_get0_serialNumber(leaf_good.cert), NULL, NULL), 0);

    /* The same integers with redundant leading zero octets still match by value. */
    static const unsigned char pad80[] = {0x00, 0x00, 0x80};
    static const unsigned char pad123[] = {0x00, 0x01, 0x23};
    static const unsigned char min123[] = {0x01, 0x23};
    static const unsigned char v8000[] = {0x80, 0x00};
    ASN1_INTEGER *a = raw_integer(pad80, 3), *b = raw_integer(pad123, 3),
                 *c = raw_integer(min123, 2), *d = raw_integer(v8000, 2);
    ASSERT_EQ(crl_lookup_serial(crl, a, NULL, &reason), 1);
    ASSERT_EQ(crl_lookup_serial(crl, b, NULL, NULL), 0);
    ASSERT_EQ(crl_lookup_serial(crl, d, NULL, NULL), 0); /* 0x8000 is not 0x80 */
    ASSERT_EQ(crl_serial_cmp(b, c), 0);
    ASSERT_EQ(crl_serial_cmp(b, X509_get0_serialNumber(leaf_good.cert)), 0);
    ASSERT(crl_serial_cmp(a, d) < 0);
    ASSERT(crl_serial_cmp(d, c) > 0);
    ASN1_INTEGER_free(a);
    ASN1_INTEGER_free(b);
    ASN1_INTEGER_free(c);
    ASN1_INTEGER_free(d);
    X509_CRL_free(crl);
}

static void test_urls(void)
{
    crl_urls_t u;
    ASSERT_EQ(crl_cdp_urls(leaf_good.cert, &u), 1);
    ASSERT_STREQ(u.v[0], "http://crl.lab.test/inter.crl");
    crl_urls_free(&u);
    ASSERT_EQ(crl_aia_issuer_urls(leaf_good.cert, &u), 1);
    ASSERT_STREQ(u.v[0], "http://crl.lab.test/inter.der");
    crl_urls_free(&u);

    /* A legacy certificate: ldap first, then http, in two distribution points. */
    X509 *x = X509_dup(leaf_good.cert);
    int idx = X509_get_ext_by_NID(x, NID_crl_distribution_points, -1);
    X509_EXTENSION_free(X509_delete_ext(x, idx));
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(
        NULL, NULL, NID_crl_distribution_points,
        "URI:ldap://dc.lab.test/CN=Lab%20Issuing%20CA%201?certificateRevocationList,"
        "URI:HTTP://crl2.lab.test/inter.crl");
    ASSERT(ext != NULL);
    ASSERT(X509_add_ext(x, ext, -1));
    X509_EXTENSION_free(ext);
    ASSERT_EQ(crl_cdp_urls(x, &u), 2);
    ASSERT_CONTAINS(u.v[0], "ldap://dc.lab.test/");
    ASSERT_EQ(crl_url_is_http(u.v[0]), 0);
    ASSERT_EQ(crl_url_is_http(u.v[1]), 1);
    crl_urls_free(&u);
    X509_free(x);

    /* No CDP, no AIA. */
    lab_cert_t bare;
    char err[256];
    lab_cert_opts_t o = {.cn = "bare.lab.test", .key_ec = 1};
    ASSERT_EQ(lab_cert_issue(&bare, &o, &inter, err), 0);
    ASSERT_EQ(crl_cdp_urls(bare.cert, &u), 0);
    ASSERT(u.v == NULL);
    ASSERT_EQ(crl_aia_issuer_urls(bare.cert, &u), 0);
    lab_cert_free(&bare);
}

static void expect_certs(const void *buf, size_t len, int n)
{
    char err[CRL_ERR_LEN];
    STACK_OF(X509) *sk = NULL;
    ASSERT_EQ(crl_parse_certs(buf, len, &sk, err), 0);
    ASSERT_EQ(sk_X509_num(sk), n);
    ASSERT_EQ(X509_cmp(sk_X509_value(sk, 0), inter.cert), 0);
    sk_X509_pop_free(sk, X509_free);
}

static void test_aia_payloads(void)
{
    unsigned char *der;
    size_t len;
    ASSERT_EQ(lab_cert_der(inter.cert, &der, &len), 0);
    expect_certs(der, len, 1);

    char *pem;
    size_t pem_len;
    ASSERT_EQ(lab_der_to_pem(der, len, "CERTIFICATE", &pem, &pem_len), 0);
    expect_certs(pem, pem_len, 1);
    /* Two PEM certificates in one file. */
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, inter.cert);
    PEM_write_bio_X509(b, root.cert);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    expect_certs(data, (size_t)n, 2);
    BIO_free(b);

    /* A certs-only PKCS#7 (.p7c), DER and PEM. */
    PKCS7 *p7 = PKCS7_new();
    ASSERT(p7 != NULL && PKCS7_set_type(p7, NID_pkcs7_signed));
    ASSERT(PKCS7_content_new(p7, NID_pkcs7_data));
    ASSERT(PKCS7_add_certificate(p7, inter.cert));
    ASSERT(PKCS7_add_certificate(p7, root.cert));
    unsigned char *p7der = NULL;
    int p7len = i2d_PKCS7(p7, &p7der);
    ASSERT(p7len > 0);
    expect_certs(p7der, (size_t)p7len, 2);
    b = BIO_new(BIO_s_mem());
    ASSERT(PEM_write_bio_PKCS7(b, p7));
    n = BIO_get_mem_data(b, &data);
    expect_certs(data, (size_t)n, 2);
    BIO_free(b);
    OPENSSL_free(p7der);
    PKCS7_free(p7);

    char err[CRL_ERR_LEN];
    STACK_OF(X509) *sk = NULL;
    ASSERT_EQ(crl_parse_certs((const unsigned char *)"<html>404</html>", 16, &sk, err), -1);
    ASSERT_CONTAINS(err, "not a certificate");
    ASSERT_EQ(crl_parse_certs(der, len / 2, &sk, err), -1);
    ASSERT_EQ(crl_parse_certs(crl_der, crl_len, &sk, err), -1);
    ASSERT(sk == NULL);
    free(pem);
    free(der);
}

/* ---- memory cost: OpenSSL's allocations counted as glibc hands them out ---------------------- */

/* Live bytes of OpenSSL allocations, each counted as the chunk malloc gives (request + 8 rounded
 * up to 16, 32 at least): what the process holds for them, whatever the allocator underneath. */
static size_t ossl_live;

typedef union {
    size_t n;
    max_align_t align;
} hdr_t;

static size_t chunk(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static void *count_malloc(size_t n, const char *file, int line)
{
    hdr_t *h = malloc(sizeof(*h) + n);
    if (h == NULL)
        return NULL;
    h->n = n;
    ossl_live += chunk(n);
    return h + 1;
}

static void count_free(void *p, const char *file, int line)
{
    if (p == NULL)
        return;
    hdr_t *h = (hdr_t *)p - 1;
    ossl_live -= chunk(h->n);
    free(h);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    if (p == NULL)
        return count_malloc(n, file, line);
    hdr_t *h = (hdr_t *)p - 1;
    size_t was = h->n;
    hdr_t *nh = realloc(h, sizeof(*nh) + n);
    if (nh == NULL)
        return NULL;
    nh->n = n;
    ossl_live += chunk(n) - chunk(was);
    return nh + 1;
}

/* crl_parsed_cost and crl_certs_cost against what parsing and using the objects really holds:
 * the cache's budget is only as good as this estimate. */
static void test_memory_cost(void)
{
    char err[256], perr[CRL_ERR_LEN];
    const size_t sizes[] = {0, 50, 3000};
    for (size_t k = 0; k < FS_ARRAY_SIZE(sizes); k++) {
        unsigned char *der;
        size_t len;
        ASSERT_EQ(lab_crl_make_bulk(&der, &len, &inter, sizes[k], -3600, 7 * DAY, err), 0);
        size_t before = ossl_live;
        X509_CRL *crl = NULL;
        ASSERT_EQ(crl_parse(der, len, &crl, perr), 0);
        /* What the cache does with an entry: dates, issuer, signature, lookups. */
        int64_t tu, nu;
        crl_times(crl, &tu, &nu);
        ASSERT_EQ(crl_check_issuer(crl, leaf_good.cert, inter.cert, perr), 0);
        ASSERT_EQ(crl_verify_signature(crl, X509_get0_pubkey(inter.cert), perr), 0);
        ASSERT_EQ(crl_lookup_serial(crl, X509_get0_serialNumber(leaf_good.cert), NULL, NULL), 0);
        size_t real = ossl_live - before, est = crl_parsed_cost(crl, len);
        fprintf(stderr, "   CRL of %zu entries, %zu bytes: holds %zu, estimated %zu\n", sizes[k],
                len, real, est);
        ASSERT(est * 10 >= real * 8 && est * 10 <= real * 12);
        X509_CRL_free(crl);
        free(der);
    }
    unsigned char *der;
    size_t len;
    ASSERT_EQ(lab_cert_der(inter.cert, &der, &len), 0);
    size_t before = ossl_live;
    STACK_OF(X509) *sk = NULL;
    ASSERT_EQ(crl_parse_certs(der, len, &sk, perr), 0);
    ASSERT_EQ(X509_check_issued(sk_X509_value(sk, 0), leaf_good.cert), X509_V_OK);
    size_t real = ossl_live - before, est = crl_certs_cost(sk, len);
    fprintf(stderr, "   certificate of %zu bytes: holds %zu, estimated %zu\n", len, real, est);
    ASSERT(est * 10 >= real * 7 && est * 10 <= real * 14);
    sk_X509_pop_free(sk, X509_free);
    free(der);
}

static X509_CRL *make_crl_ex(const lab_crl_opts_t *o)
{
    unsigned char *der;
    size_t len;
    char err[256], perr[CRL_ERR_LEN];
    ASSERT_EQ(lab_crl_make_ex(&der, &len, &inter, o, err), 0);
    X509_CRL *crl = NULL;
    ASSERT_EQ(crl_parse(der, len, &crl, perr), 0);
    free(der);
    return crl;
}

/* Base and delta CRLs as AD CS publishes them: the base names its delta (Freshest CRL), the delta
 * carries a critical Delta CRL Indicator with the base's number. */
static void test_delta(void)
{
    char err[CRL_ERR_LEN];
    const X509 *rev[] = {leaf_revoked.cert};
    lab_crl_opts_t bo = {.this_update_off_s = -3600,
                         .next_update_off_s = 7 * DAY,
                         .crl_number = 10,
                         .freshest_url = "http://crl.lab.test/inter+.crl"};
    X509_CRL *base = make_crl_ex(&bo);
    lab_crl_opts_t dopt = {.revoked = rev,
                           .nrevoked = 1,
                           .this_update_off_s = -60,
                           .next_update_off_s = DAY,
                           .crl_number = 11,
                           .delta_base = 10};
    X509_CRL *delta = make_crl_ex(&dopt);
    ASSERT_EQ(crl_is_delta(base), 0);
    ASSERT_EQ(crl_is_delta(delta), 1);
    ASSERT_EQ(crl_check_delta(delta, base, err), 0);
    ASSERT_EQ(crl_lookup_serial(delta, X509_get0_serialNumber(leaf_revoked.cert), NULL, NULL), 1);
    ASSERT_EQ(crl_check_issuer(delta, leaf_revoked.cert, inter.cert, err), 0);

    /* The base names its delta; without that, the certificate's freshestCRL does. */
    crl_urls_t u;
    ASSERT_EQ(crl_freshest_urls(base, leaf_good.cert, &u), 1);
    ASSERT_STREQ(u.v[0], "http://crl.lab.test/inter+.crl");
    crl_urls_free(&u);
    ASSERT_EQ(crl_freshest_urls(delta, NULL, &u), 0);
    lab_cert_t withfresh;
    char lerr[256];
    lab_cert_opts_t co = {.cn = "fresh.lab.test", .key_ec = 1, .freshest_url = "ldap:///CN=d"};
    ASSERT_EQ(lab_cert_issue(&withfresh, &co, &inter, lerr), 0);
    ASSERT_EQ(crl_freshest_urls(delta, withfresh.cert, &u), 1);
    ASSERT_STREQ(u.v[0], "ldap:///CN=d");
    crl_urls_free(&u);
    lab_cert_free(&withfresh);

    /* A delta for a newer base than the one held: the base is out of date. */
    dopt.delta_base = 12;
    dopt.crl_number = 13;
    X509_CRL *ahead = make_crl_ex(&dopt);
    ASSERT_EQ(crl_check_delta(ahead, base, err), -1);
    ASSERT_CONTAINS(err, "newer base");
    /* A delta older than its base. */
    dopt.delta_base = 9;
    dopt.crl_number = 9;
    X509_CRL *old = make_crl_ex(&dopt);
    ASSERT_EQ(crl_check_delta(old, base, err), -1);
    ASSERT_CONTAINS(err, "not newer");
    /* A complete CRL where a delta belongs, and a delta as base. */
    ASSERT_EQ(crl_check_delta(base, base, err), -1);
    ASSERT_CONTAINS(err, "no Delta CRL Indicator");
    ASSERT_EQ(crl_check_delta(delta, delta, err), -1);
    ASSERT_CONTAINS(err, "itself a delta");
    X509_CRL_free(old);
    X509_CRL_free(ahead);
    X509_CRL_free(delta);
    X509_CRL_free(base);
}

/* What libcurl's LDAP prints for a certificateRevocationList search (seen from Debian's
 * libcurl 7.88 against slapd): "DN: ...", then a tab, the attribute, ":: " and base64. */
static void test_from_ldap(void)
{
    char err[CRL_ERR_LEN];
    unsigned char *der = NULL;
    size_t len = 0;
    char *b64 = fs_xmalloc(crl_len * 2 + 8);
    int n = EVP_EncodeBlock((unsigned char *)b64, crl_der, (int)crl_len);
    size_t cap = (size_t)n + 256;
    char *text = fs_xmalloc(cap);
    snprintf(text, cap,
             "DN: cn=Lab Issuing CA 1,cn=dc1,cn=CDP,dc=lab,dc=test\n"
             "\tcertificateRevocationList;binary:: %s\n\n",
             b64);
    ASSERT_EQ(crl_from_ldap((unsigned char *)text, strlen(text), &der, &len, err), 0);
    ASSERT_EQ(len, crl_len);
    ASSERT(memcmp(der, crl_der, len) == 0);
    free(der);
    /* A delta attribute is a CRL too; other attributes are not. */
    snprintf(text, cap, "DN: cn=x\n\tcn: x\n\tdeltaRevocationList;binary:: %s\n", b64);
    ASSERT_EQ(crl_from_ldap((unsigned char *)text, strlen(text), &der, &len, err), 0);
    ASSERT_EQ(len, crl_len);
    free(der);
    snprintf(text, cap, "DN: cn=x\n\tcn: x\n");
    ASSERT_EQ(crl_from_ldap((unsigned char *)text, strlen(text), &der, &len, err), -1);
    ASSERT_CONTAINS(err, "no certificateRevocationList");
    snprintf(text, cap, "DN: cn=x\n\tcertificateRevocationList;binary:: ab$\n");
    ASSERT_EQ(crl_from_ldap((unsigned char *)text, strlen(text), &der, &len, err), -1);
    ASSERT_EQ(crl_from_ldap((unsigned char *)"", 0, &der, &len, err), -1);
    free(text);
    free(b64);
}

int main(void)
{
    /* Before OpenSSL allocates anything: count its allocations for test_memory_cost. */
    ASSERT(CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free));
    setup();
    RUN(test_parse_der_pem);
    RUN(test_signature);
    RUN(test_issuer);
    RUN(test_times);
    RUN(test_serial_lookup);
    RUN(test_urls);
    RUN(test_aia_payloads);
    RUN(test_memory_cost);
    RUN(test_delta);
    RUN(test_from_ldap);
    free(crl_der);
    lab_cert_free(&root);
    lab_cert_free(&inter);
    lab_cert_free(&fake_inter);
    lab_cert_free(&leaf_good);
    lab_cert_free(&leaf_revoked);
    return 0;
}
