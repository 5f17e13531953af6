/* test_preflight.c - daemon/preflight.c in process: candidate chains as admins export them
 * (PEM, DER .cer, PKCS#7 .p7b, any order, a PFX refused) and their verdict per group through
 * the one endpoint model (AIA, pins, the profile's own rules), against the lab's servers. */
#include "daemon/config.h"
#include "daemon/preflight.h"
#include "lab/scenarios.h"
#include "probes/chain.h"
#include "probes/util.h"
#include "tests/test.h"

#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>

static lab_t lab;

static unsigned char *der_of(X509 *x, size_t *len)
{
    unsigned char *buf = NULL;
    ASSERT(lab_cert_der(x, &buf, len) == 0);
    return buf;
}

static unsigned char *p7b_of(X509 *const *certs, int n, int pem, size_t *len)
{
    PKCS7 *p7 = PKCS7_new();
    ASSERT(PKCS7_set_type(p7, NID_pkcs7_signed) == 1);
    ASSERT(PKCS7_content_new(p7, NID_pkcs7_data) == 1);
    for (int i = 0; i < n; i++)
        ASSERT(PKCS7_add_certificate(p7, certs[i]) == 1);
    BIO *b = BIO_new(BIO_s_mem());
    ASSERT(pem ? PEM_write_bio_PKCS7(b, p7) == 1 : i2d_PKCS7_bio(b, p7) == 1);
    char *data;
    long l = BIO_get_mem_data(b, &data);
    unsigned char *out = fs_xmalloc((size_t)l);
    memcpy(out, data, (size_t)l);
    *len = (size_t)l;
    BIO_free(b);
    PKCS7_free(p7);
    return out;
}

static char *pem_of(X509 *const *certs, int n, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    for (int i = 0; i < n; i++)
        ASSERT(PEM_write_bio_X509(b, certs[i]) == 1);
    char *data;
    long l = BIO_get_mem_data(b, &data);
    char *out = fs_xmalloc((size_t)l + 1);
    memcpy(out, data, (size_t)l);
    out[l] = '\0';
    *len = (size_t)l;
    BIO_free(b);
    return out;
}

static void expect_path(const unsigned char *buf, size_t len, X509 *leaf, X509 *issuer)
{
    STACK_OF(X509) *sk = NULL;
    char err[256] = "";
    if (preflight_parse_chain(buf, len, &sk, err) < 0)
        fprintf(stderr, "parse: %s\n", err);
    ASSERT(sk != NULL);
    ASSERT_EQ(sk_X509_num(sk), issuer ? 2 : 1);
    ASSERT_EQ(X509_cmp(sk_X509_value(sk, 0), leaf), 0);
    if (issuer)
        ASSERT_EQ(X509_cmp(sk_X509_value(sk, 1), issuer), 0);
    sk_X509_pop_free(sk, X509_free);
}

static void expect_refused(const unsigned char *buf, size_t len, const char *needle)
{
    STACK_OF(X509) *sk = NULL;
    char err[256] = "";
    ASSERT(preflight_parse_chain(buf, len, &sk, err) < 0);
    ASSERT(sk == NULL);
    ASSERT_CONTAINS(err, needle);
}

static void test_formats(void)
{
    X509 *leaf = lab.pki.leaf[LAB_LEAF_GOOD].cert, *inter = lab.pki.inter.cert;
    X509 *fwd[] = {leaf, inter}, *rev[] = {inter, leaf};
    size_t len;
    char *pem = pem_of(fwd, 2, &len);
    expect_path((unsigned char *)pem, len, leaf, inter);
    free(pem);
    /* a chain given in reverse order is built from the certificates, not the file order */
    pem = pem_of(rev, 2, &len);
    expect_path((unsigned char *)pem, len, leaf, inter);
    free(pem);
    unsigned char *der = der_of(leaf, &len); /* MMC's default export: DER .cer */
    expect_path(der, len, leaf, NULL);
    free(der);
    unsigned char *p7 = p7b_of(rev, 2, 0, &len); /* .p7b, DER */
    expect_path(p7, len, leaf, inter);
    free(p7);
    p7 = p7b_of(fwd, 2, 1, &len); /* .p7b, PEM armoured */
    expect_path(p7, len, leaf, inter);
    free(p7);
    /* a PFX holds the key: refused with how to export the public chain */
    STACK_OF(X509) *ca = sk_X509_new_null();
    sk_X509_push(ca, inter);
    PKCS12 *p12 =
        PKCS12_create("pw", NULL, lab.pki.leaf[LAB_LEAF_GOOD].key, leaf, ca, 0, 0, 0, 0, 0);
    sk_X509_free(ca);
    ASSERT(p12 != NULL);
    unsigned char *pb = NULL;
    int pl = i2d_PKCS12(p12, &pb);
    ASSERT(pl > 0);
    expect_refused(pb, (size_t)pl, "-nokeys");
    OPENSSL_free(pb);
    PKCS12_free(p12);
    expect_refused((const unsigned char *)"hello", 5, "no certificate found");
    const char *key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    expect_refused((const unsigned char *)key, strlen(key), "private key");
}

static cJSON *group_verdict(cJSON *doc, const char *name)
{
    cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(doc, "groups"))
    {
        if (strcmp(cJSON_GetObjectItem(g, "group")->valuestring, name) == 0)
            return g;
    }
    abort();
}

static const char *cause_of(cJSON *doc, const char *name)
{
    cJSON *c = cJSON_GetObjectItem(group_verdict(doc, name), "cause");
    return cJSON_IsString(c) ? c->valuestring : "accept";
}

/* The verdict goes through the group's model: AIA completes a leaf-only candidate, a pin is
 * checked, a plain-HTTP profile is profile_mismatch whatever the chain, and a group offline now
 * for a certificate-independent cause is not counted as accepting. */
static void test_verdicts(void)
{
    char root[600], json[4096], err[256];
    lab_file(&lab, "root.pem", root, sizeof(root));
    char sha1[41], sha256[65];
    chain_thumbprints(lab.pki.leaf[LAB_LEAF_GOOD].cert, sha1, sha256);
    snprintf(json, sizeof(json),
             "{\"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},"
             " \"profiles\": {\"default\": {\"url\": \"https://%s/\"},"
             "   \"pinned-old\": {\"url\": \"https://%s/\", \"expect_thumbprint\": \"%040d\"},"
             "   \"pinned-new\": {\"url\": \"https://%s/\", \"expect_thumbprint\": \"%s\"},"
             "   \"http\": {\"url\": \"http://%s/\"}},"
             " \"groups\": ["
             "  {\"name\": \"aia\", \"count\": 1, \"profile\": \"default\", \"trust\": \"corp\","
             "   \"revocation\": {\"mode\": \"off\"},"
             "   \"network\": {\"resolve\": {\"%s\": \"127.0.0.1\"}}},"
             "  {\"name\": \"noaia\", \"count\": 2, \"profile\": \"default\", \"trust\": \"corp\","
             "   \"revocation\": {\"mode\": \"off\", \"aia_fetch\": false}},"
             "  {\"name\": \"pin-old\", \"count\": 3, \"profile\": \"pinned-old\", \"trust\": "
             "\"corp\", \"revocation\": {\"mode\": \"off\"}},"
             "  {\"name\": \"pin-new\", \"count\": 4, \"profile\": \"pinned-new\", \"trust\": "
             "\"corp\", \"revocation\": {\"mode\": \"off\"}},"
             "  {\"name\": \"http\", \"count\": 5, \"profile\": \"http\", \"trust\": \"corp\","
             "   \"revocation\": {\"mode\": \"off\"}},"
             "  {\"name\": \"down\", \"count\": 6, \"profile\": \"default\", \"trust\": \"corp\","
             "   \"revocation\": {\"mode\": \"off\"}}]}",
             root, LAB_HOST, LAB_HOST, 0, LAB_HOST, sha1, LAB_HOST, LAB_CRL_HOST);
    cfg_t *cfg;
    if (cfg_parse(&cfg, json, strlen(json), NULL, err) < 0)
        fprintf(stderr, "config: %s\n", err);
    ASSERT(cfg != NULL);
    size_t len;
    X509 *leaf_only[] = {lab.pki.leaf[LAB_LEAF_GOOD].cert};
    char *pem = pem_of(leaf_only, 1, &len);
    fs_cause_t current[6] = {0};
    current[5] = FS_CAUSE_CONNECT_REFUSED;
    cJSON *doc;
    ASSERT(preflight_run(cfg, (unsigned char *)pem, len, 1, -1, current, &doc, err) == 0);
    ASSERT_STREQ(cause_of(doc, "aia"), "accept");
    cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(group_verdict(doc, "aia"), "warnings"), 0);
    ASSERT_STREQ(w->valuestring, "aia_fetch_required");
    ASSERT_STREQ(cause_of(doc, "noaia"), "missing_intermediate");
    ASSERT_STREQ(cause_of(doc, "pin-old"), "thumbprint_mismatch");
    ASSERT_STREQ(cause_of(doc, "http"), "profile_mismatch");
    ASSERT_STREQ(cause_of(doc, "down"), "connect_refused");
    cJSON *sum = cJSON_GetObjectItem(doc, "summary");
    ASSERT_EQ(cJSON_GetObjectItem(sum, "groups_accepting")->valueint, 1);
    ASSERT_EQ(cJSON_GetObjectItem(sum, "endpoints_accepting")->valueint, 1);
    cJSON_Delete(doc);
    free(pem);
    /* the full chain satisfies the pin too, in any order */
    X509 *rev[] = {lab.pki.inter.cert, lab.pki.leaf[LAB_LEAF_GOOD].cert};
    pem = pem_of(rev, 2, &len);
    ASSERT(preflight_run(cfg, (unsigned char *)pem, len, 1, -1, NULL, &doc, err) == 0);
    ASSERT_STREQ(cause_of(doc, "noaia"), "accept");
    ASSERT_STREQ(cause_of(doc, "pin-new"), "accept");
    ASSERT_STREQ(cause_of(doc, "down"), "accept"); /* no present state given: the CLI's case */
    cJSON_Delete(doc);
    free(pem);
    cfg_free(cfg);
}

/* A candidate chain is for one binding: with several targets the groups of the target most
 * endpoints talk to are judged by default, the others' groups only when that target is named. */
static void test_targets(void)
{
    char root[600], json[2048], err[256];
    lab_file(&lab, "root.pem", root, sizeof(root));
    snprintf(json, sizeof(json),
             "{\"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},"
             " \"targets\": {\"ns\": {\"url\": \"https://%s/\"},"
             "   \"pkg\": {\"url\": \"https://pkg.lab.test/\"}},"
             " \"profiles\": {\"default\": {\"url\": \"https://%s/\"},"
             "   \"pkg\": {\"url\": \"https://pkg.lab.test/\"}},"
             " \"groups\": ["
             "  {\"name\": \"hq\", \"count\": 50, \"revocation\": {\"mode\": \"off\"}},"
             "  {\"name\": \"depot\", \"count\": 5, \"profile\": \"pkg\","
             "   \"revocation\": {\"mode\": \"off\"}}]}",
             root, LAB_HOST, LAB_HOST);
    cfg_t *cfg;
    if (cfg_parse(&cfg, json, strlen(json), NULL, err) < 0)
        fprintf(stderr, "config: %s\n", err);
    ASSERT(cfg != NULL);
    ASSERT_EQ(preflight_default_target(cfg), 0);
    size_t len;
    X509 *chain[] = {lab.pki.leaf[LAB_LEAF_GOOD].cert, lab.pki.inter.cert};
    char *pem = pem_of(chain, 2, &len);
    cJSON *doc;
    ASSERT(preflight_run(cfg, (unsigned char *)pem, len, 1, -1, NULL, &doc, err) == 0);
    ASSERT_STREQ(cJSON_GetObjectItem(doc, "target")->valuestring, "ns");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "groups")), 1);
    ASSERT_STREQ(cause_of(doc, "hq"), "accept");
    cJSON_Delete(doc);
    ASSERT(preflight_run(cfg, (unsigned char *)pem, len, 1, 1, NULL, &doc, err) == 0);
    ASSERT_STREQ(cJSON_GetObjectItem(doc, "target")->valuestring, "pkg");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "groups")), 1);
    ASSERT_STREQ(cause_of(doc, "depot"), "hostname_mismatch"); /* ns's leaf on pkg */
    cJSON_Delete(doc);
    free(pem);
    cfg_free(cfg);
}

int main(void)
{
    char err[256];
    ASSERT(lab_start(&lab, err) == 0);
    RUN(test_formats);
    RUN(test_verdicts);
    RUN(test_targets);
    lab_stop(&lab);
    return 0;
}
