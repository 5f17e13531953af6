/* test_policy.c - daemon/policy.c: a group's configuration as probe options (the one mapping the
 * fleet, the reference, `fleetscan probe -c --group` and pre-flight share) and the profile rules
 * of SPEC §4.1 as a verdict. No network: the probes themselves are tested elsewhere. */
#include "daemon/config.h"
#include "daemon/policy.h"
#include "lab/pki.h"
#include "probes/util.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/fleetscan-policy-XXXXXX", ca[600];

static cfg_t *parse(const char *groups)
{
    char json[4096], err[256];
    snprintf(json, sizeof(json),
             "{\"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},"
             " \"profiles\": {\"default\": {\"url\": \"https://ns.corp.example/Agent\"},"
             "   \"http\": {\"url\": \"http://ns.corp.example/\"},"
             "   \"port\": {\"url\": \"https://ns.corp.example:8443/\"},"
             "   \"fqdn\": {\"url\": \"https://ns-old.corp.example/\"},"
             "   \"pinned\": {\"url\": \"https://ns.corp.example/\", \"expect_thumbprint\":"
             "     \"0123456789abcdef0123456789abcdef01234567\"}},"
             " \"reference\": {\"profile\": \"default\", \"trust\": \"corp\"},"
             " \"expiring_soon_days\": 12, \"crl_expiring_soon_hours\": 5,"
             " \"limits\": {\"probe_timeout_ms\": 9000, \"connect_timeout_ms\": 1234},"
             " \"groups\": [%s]}",
             ca, groups);
    cfg_t *c = NULL;
    if (cfg_parse(&c, json, strlen(json), NULL, err) < 0)
        fprintf(stderr, "config: %s\n", err);
    ASSERT(c != NULL);
    return c;
}

/* Every setting of a group lands in the probe options. */
static void test_group_mapping(void)
{
    cfg_t *c = parse(
        "{\"name\": \"a\", \"count\": 1, \"profile\": \"pinned\", \"trust\": \"corp\","
        " \"clock_skew_s\": -60, \"tls\": {\"sni\": false},"
        " \"revocation\": {\"mode\": \"soft_fail\", \"scope\": \"leaf\", \"aia_fetch\": false,"
        "   \"ocsp\": false, \"timeout_mode\": \"accumulative\", \"url_timeout_ms\": 700,"
        "   \"budget_ms\": 900, \"max_crl_bytes\": 4096},"
        " \"network\": {\"resolve\": {\"ns.corp.example\": [\"127.0.0.9\", \"127.0.0.10\"]},"
        "   \"proxy\": \"http://proxy:3128\", \"ldap\": \"dc1.corp.example:3389\"}},"
        "{\"name\": \"b\", \"count\": 1, \"profile\": \"default\", \"trust\": \"corp\"}");
    policy_t pl, b;
    char err[256];
    ASSERT(policy_group_init(&pl, c, 0, NULL, err) == 0);
    ASSERT(pl.tls != NULL);
    ASSERT_EQ(pl.popts.sni, 0);
    ASSERT_EQ(pl.popts.clock_skew_s, -60);
    ASSERT_EQ(pl.popts.expiring_soon_s, 12 * 86400);
    ASSERT_EQ(pl.popts.total_timeout_ms, 9000);
    ASSERT_EQ(pl.popts.connect_timeout_ms, 1234);
    ASSERT_STREQ(pl.popts.expect_thumbprint, "0123456789abcdef0123456789abcdef01234567");
    ASSERT_STREQ(fs_resolve_lookup(pl.popts.resolve, "ns.corp.example"), "127.0.0.9");
    const char *addrs[FS_RESOLVE_MAX_ADDRS]; /* a farm: every address, in order */
    ASSERT_EQ(fs_resolve_lookup_all(pl.popts.resolve, "ns.corp.example", addrs), 2);
    ASSERT_STREQ(addrs[1], "127.0.0.10");
    ASSERT(pl.popts.rev_policy == &pl.rev);
    ASSERT_EQ(pl.rev.mode, REV_SOFT_FAIL);
    ASSERT_EQ(pl.rev.scope, REV_SCOPE_LEAF);
    ASSERT_EQ(pl.rev.aia_fetch, 0);
    ASSERT_EQ(pl.rev.ocsp, 0);
    ASSERT_EQ(pl.rev.timeout_mode, REV_TIMEOUT_ACCUMULATIVE);
    ASSERT_EQ(pl.rev.url_timeout_ms, 700);
    ASSERT_EQ(pl.rev.budget_ms, 900);
    ASSERT_EQ(pl.rev.max_bytes, 4096);
    ASSERT_EQ(pl.rev.crl_expiring_soon_s, 5 * 3600);
    ASSERT_STREQ(pl.rev.proxy, "http://proxy:3128");
    ASSERT_STREQ(pl.rev.ldap_host, "dc1.corp.example:3389");
    ASSERT(pl.rev.view == pl.view);
    /* The defaults are the daemon's, as Windows: strict, AIA on, OCSP first, per-URL timeouts. */
    ASSERT(policy_group_init(&b, c, 1, NULL, err) == 0);
    ASSERT_EQ(b.rev.mode, REV_STRICT);
    ASSERT_EQ(b.rev.aia_fetch, 1);
    ASSERT_EQ(b.rev.ocsp, 1);
    ASSERT_EQ(b.rev.timeout_mode, REV_TIMEOUT_PER_URL);
    ASSERT(b.rev.ldap_host == NULL);
    ASSERT_EQ(b.popts.sni, 1);
    /* A different network view (resolve, proxy, directory) is a different cache view. */
    ASSERT(strcmp(pl.view, b.view) != 0);
    policy_free(&pl);
    policy_free(&b);
    cfg_free(c);
}

static probe_result_t failed(fs_cause_t cause, probe_phase_t ph)
{
    probe_result_t r;
    memset(&r, 0, sizeof(r));
    r.cause = cause;
    r.failed_phase = ph;
    fs_strlcpy(r.message, "what the probe saw", sizeof(r.message));
    return r;
}

/* SPEC §4.1: profile_mismatch only where the profile is to blame. */
static void test_profile_rules(void)
{
    cfg_t *c =
        parse("{\"name\": \"same\", \"count\": 1, \"profile\": \"default\", \"trust\": \"corp\"},"
              "{\"name\": \"http\", \"count\": 1, \"profile\": \"http\", \"trust\": \"corp\"},"
              "{\"name\": \"port\", \"count\": 1, \"profile\": \"port\", \"trust\": \"corp\"},"
              "{\"name\": \"fqdn\", \"count\": 1, \"profile\": \"fqdn\", \"trust\": \"corp\"}");
    policy_t same, http, port, fqdn;
    char err[256], msg[320];
    ASSERT(policy_group_init(&same, c, 0, NULL, err) == 0);
    ASSERT(policy_group_init(&http, c, 1, NULL, err) == 0);
    ASSERT(policy_group_init(&port, c, 2, NULL, err) == 0);
    ASSERT(policy_group_init(&fqdn, c, 3, NULL, err) == 0);
    ASSERT(!same.profile_differs && http.http_vs_https && port.profile_differs);
    probe_result_t refused = failed(FS_CAUSE_CONNECT_REFUSED, PROBE_PH_CONNECT);
    probe_result_t expired = failed(FS_CAUSE_CERT_EXPIRED, PROBE_PH_TLS);
    probe_result_t wrongname = failed(FS_CAUSE_HOSTNAME_MISMATCH, PROBE_PH_TLS);
    probe_result_t online;
    memset(&online, 0, sizeof(online));
    online.online = 1;
    /* the binding's own failure keeps its cause */
    ASSERT_EQ(policy_verdict(&same, &refused, POLICY_REF_UP, msg, sizeof(msg)),
              FS_CAUSE_CONNECT_REFUSED);
    /* plain HTTP to an HTTPS binding: always, even when it answers */
    ASSERT_EQ(policy_verdict(&http, &online, POLICY_REF_DOWN, msg, sizeof(msg)),
              FS_CAUSE_PROFILE_MISMATCH);
    ASSERT_CONTAINS(msg, "plain HTTP");
    /* another port that cannot connect while the binding answers; not when it is down too */
    ASSERT_EQ(policy_verdict(&port, &refused, POLICY_REF_UP, msg, sizeof(msg)),
              FS_CAUSE_PROFILE_MISMATCH);
    ASSERT_EQ(policy_verdict(&port, &refused, POLICY_REF_DOWN, msg, sizeof(msg)),
              FS_CAUSE_CONNECT_REFUSED);
    ASSERT_EQ(policy_verdict(&port, &refused, POLICY_REF_UNKNOWN, msg, sizeof(msg)),
              FS_CAUSE_CONNECT_REFUSED);
    /* past the handshake it is the binding's problem: an expired certificate is one */
    ASSERT_EQ(policy_verdict(&port, &expired, POLICY_REF_UP, msg, sizeof(msg)),
              FS_CAUSE_CERT_EXPIRED);
    /* a host-name mismatch on another FQDN is the profile's; on the same FQDN the binding's */
    ASSERT_EQ(policy_verdict(&fqdn, &wrongname, POLICY_REF_UP, msg, sizeof(msg)),
              FS_CAUSE_PROFILE_MISMATCH);
    ASSERT_EQ(policy_verdict(&port, &wrongname, POLICY_REF_UP, msg, sizeof(msg)),
              FS_CAUSE_HOSTNAME_MISMATCH);
    policy_free(&same);
    policy_free(&http);
    policy_free(&port);
    policy_free(&fqdn);
    cfg_free(c);
}

int main(void)
{
    ASSERT(mkdtemp(dir) != NULL);
    char err[256];
    lab_cert_t root = {0};
    lab_cert_opts_t o = {.cn = "Policy Test Root", .is_ca = 1};
    ASSERT(lab_cert_issue(&root, &o, NULL, err) == 0);
    snprintf(ca, sizeof(ca), "%s/root.pem", dir);
    ASSERT(lab_write_pem(ca, &root.cert, 1) == 0);
    lab_cert_free(&root);
    RUN(test_group_mapping);
    RUN(test_profile_rules);
    unlink(ca);
    rmdir(dir);
    return 0;
}
