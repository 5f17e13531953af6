/* test_vcache.c - the verdict cache answers exactly what chain_verify would, and never reuses a
 * verdict across a different chain, trust, host, pin or minute. */
#include "lab/pki.h"
#include "probes/util.h"
#include "probes/vcache.h"
#include "tests/test.h"

#include <openssl/x509v3.h>
#include <time.h>
#include <unistd.h>

static lab_pki_t pki;
static char dir[] = "/tmp/fleetscan-vcache-XXXXXX";

static STACK_OF(X509) * chain_of(lab_leaf_t leaf)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    sk_X509_push(sk, pki.leaf[leaf].cert);
    sk_X509_push(sk, pki.inter.cert);
    return sk;
}

static fs_cause_t check(vcache_t *c, tlsc_ctx_t *ctx, STACK_OF(X509) * sk, const char *host,
                        int64_t at, const char *pin)
{
    chain_check_t chk = {
        .host = host, .at = at, .expiring_soon_s = 30 * 86400, .expect_thumbprint = pin};
    chain_verdict_t v;
    ASSERT(vcache_verify(c, ctx, sk, &chk, &v) == 0);
    fs_cause_t cause = v.cause;
    chain_verdict_free(&v);
    return cause;
}

int main(void)
{
    char err[256], path[600];
    ASSERT(mkdtemp(dir) != NULL);
    ASSERT(lab_pki_create(&pki, dir, "ns.lab.test", NULL, err) == 0);
    tlsc_ctx_t *corp, *legacy;
    tlsc_ctx_opts_t o = {.ca_file = lab_pki_path(&pki, "root.pem", path, sizeof(path))};
    ASSERT(tlsc_ctx_new(&corp, &o, err) == 0);
    o.ca_file = lab_pki_path(&pki, "old-root.pem", path, sizeof(path));
    ASSERT(tlsc_ctx_new(&legacy, &o, err) == 0);
    ASSERT(corp->id != legacy->id);

    vcache_t *c = vcache_new(0);
    vcache_stats_t st;
    int64_t now = (int64_t)time(NULL);
    STACK_OF(X509) *good = chain_of(LAB_LEAF_GOOD), *expired = chain_of(LAB_LEAF_EXPIRED);

    ASSERT_EQ(check(c, corp, good, "ns.lab.test", now, NULL), FS_CAUSE_NONE);
    ASSERT_EQ(check(c, corp, good, "ns.lab.test", now, NULL), FS_CAUSE_NONE);
    vcache_stats(c, &st);
    ASSERT_EQ(st.misses, 1);
    ASSERT_EQ(st.hits, 1);

    /* Every part of the key matters. */
    ASSERT_EQ(check(c, corp, good, "other.lab.test", now, NULL), FS_CAUSE_HOSTNAME_MISMATCH);
    ASSERT_EQ(check(c, legacy, good, "ns.lab.test", now, NULL), FS_CAUSE_UNTRUSTED_CA);
    ASSERT_EQ(check(c, corp, good, "ns.lab.test", now + 400 * 86400, NULL), FS_CAUSE_CERT_EXPIRED);
    ASSERT_EQ(check(c, corp, good, "ns.lab.test", now, "0000000000000000000000000000000000000000"),
              FS_CAUSE_THUMBPRINT_MISMATCH);
    ASSERT_EQ(check(c, corp, expired, "ns.lab.test", now, NULL), FS_CAUSE_CERT_EXPIRED);
    vcache_stats(c, &st);
    ASSERT_EQ(st.misses, 6);
    ASSERT_EQ(st.hits, 1);
    ASSERT_EQ(st.entries, 6);

    /* A cached verdict's built chain stays valid after the cache is gone. */
    chain_check_t chk = {.host = "ns.lab.test", .at = now, .expiring_soon_s = 86400};
    chain_verdict_t v;
    ASSERT(vcache_verify(c, corp, good, &chk, &v) == 0);
    vcache_free(c);
    ASSERT_EQ(sk_X509_num(v.built), 3);
    ASSERT(X509_check_issued(sk_X509_value(v.built, 1), sk_X509_value(v.built, 0)) == X509_V_OK);
    chain_verdict_free(&v);

    /* Time is part of the answer: the same chain at another instant between the same edges is
     * a hit, across an edge (here the expiring-soon edge 30 days before notAfter) a miss. */
    c = vcache_new(0);
    ASSERT_EQ(check(c, corp, good, "ns.lab.test", now, NULL), FS_CAUSE_NONE);
    ASSERT_EQ(check(c, corp, good, "ns.lab.test", now + 3600, NULL), FS_CAUSE_NONE);
    vcache_stats(c, &st);
    ASSERT_EQ(st.hits, 1);
    chain_check_t late = {
        .host = "ns.lab.test", .at = now + 340 * 86400, .expiring_soon_s = 30 * 86400};
    ASSERT(vcache_verify(c, corp, good, &late, &v) == 0);
    ASSERT(v.warnings & FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON));
    chain_verdict_free(&v);
    vcache_stats(c, &st);
    ASSERT_EQ(st.misses, 2);
    vcache_free(c);

    /* A certificate that became valid a few seconds ago is valid now, even if another
     * endpoint verified the chain just before its notBefore (the rollover instant). */
    lab_cert_t fresh;
    const char *sans[] = {"ns.lab.test", NULL};
    lab_cert_opts_t fo = {.cn = "ns.lab.test",
                          .dns_sans = sans,
                          .not_before_off_s = 5,
                          .not_after_off_s = 86400 * 90,
                          .key = pki.leaf[0].key};
    ASSERT(lab_cert_issue(&fresh, &fo, &pki.inter, err) == 0);
    STACK_OF(X509) *fr = sk_X509_new_null();
    sk_X509_push(fr, fresh.cert);
    sk_X509_push(fr, pki.inter.cert);
    c = vcache_new(0);
    int64_t nb = chain_asn1_time(X509_get0_notBefore(fresh.cert));
    ASSERT_EQ(check(c, corp, fr, "ns.lab.test", nb - 1, NULL), FS_CAUSE_CERT_NOT_YET_VALID);
    ASSERT_EQ(check(c, corp, fr, "ns.lab.test", nb, NULL), FS_CAUSE_NONE);
    ASSERT_EQ(check(c, corp, fr, "ns.lab.test", nb - 1, NULL), FS_CAUSE_CERT_NOT_YET_VALID);
    vcache_free(c);
    sk_X509_free(fr);
    lab_cert_free(&fresh);

    /* A client-authentication certificate bound to 443 is the wrong certificate. */
    lab_cert_t client;
    lab_cert_opts_t co = {
        .cn = "ns.lab.test", .dns_sans = sans, .client_auth_only = 1, .key = pki.leaf[0].key};
    ASSERT(lab_cert_issue(&client, &co, &pki.inter, err) == 0);
    STACK_OF(X509) *cl = sk_X509_new_null();
    sk_X509_push(cl, client.cert);
    sk_X509_push(cl, pki.inter.cert);
    c = vcache_new(0);
    ASSERT_EQ(check(c, corp, cl, "ns.lab.test", now, NULL), FS_CAUSE_HOSTNAME_MISMATCH);
    vcache_free(c);
    sk_X509_free(cl);
    lab_cert_free(&client);

    /* Bounded: a full cache empties itself. */
    c = vcache_new(2);
    const char *hosts[] = {"a.lab.test", "b.lab.test", "c.lab.test", "d.lab.test", "e.lab.test"};
    for (int i = 0; i < 5; i++)
        check(c, corp, good, hosts[i], now, NULL);
    vcache_stats(c, &st);
    ASSERT(st.entries <= 2);
    vcache_free(c);

    sk_X509_free(good);
    sk_X509_free(expired);
    tlsc_ctx_unref(corp);
    tlsc_ctx_unref(legacy);
    lab_pki_free(&pki);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT(system(cmd) == 0);
    return 0;
}
