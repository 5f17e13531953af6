/* test_revhealth.c - revocation-source health end to end: the real `fleetscan run` against the
 * lab, whose server presents a leaf with an AD CS ldap:/// CDP, an http:// CDP and an OCSP URL.
 * The CRL host stops: right after POST /api/v1/scan, /api/v1/targets and /metrics say the CDP is
 * unreachable while strict endpoints stay online on their cached CRL, and the instant they go
 * offline is their cache entry's expiry; the CRL host comes back: reachable again. The ldap:///
 * URL (no directory in any view) is skipped, never a 0 gauge. A second target whose chain names
 * the same CDP lists it with its own groups; the gauges count both targets' groups once. */
#include "lab/ocspd.h"
#include "lab/scenarios.h"
#include "probes/util.h"
#include "tests/daemon_harness.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <signal.h>
#include <unistd.h>

#define MAX_AGE_S 3600 /* cache.crl_max_age_s: the endpoints' copies run out before nextUpdate */
#define LDAP_CDP                                                                                   \
    "ldap:///CN=Lab%20Issuing%20CA%201,CN=ca1,CN=CDP,CN=Public%20Key%20Services,CN=Services,"      \
    "CN=Configuration,DC=lab,DC=test?certificateRevocationList?base?objectClass="                  \
    "cRLDistributionPoint"

static lab_t lab;
static lab_cert_t leaf;
static lab_tls_t *srv;
static char cfg_path[600], err_path[600], tok_path[600];
static dh_daemon_t fsd = {.cfg_path = cfg_path, .err_path = err_path, .out = -1};
static char crl_url[256], ocsp_url[256];
static const char token[] = "revhealth-token-0123456789";

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t rfc3339(const char *s)
{
    int64_t t = 0;
    ASSERT(s != NULL && fs_parse_rfc3339(s, &t) == 0);
    return t;
}

/* The leaf of the reference chain: as AD CS issues it, an ldap:/// CDP before the http:// one,
 * and an OCSP responder. */
static void make_server(void)
{
    char err[256], base[128];
    int port = lab_http_port(lab.http);
    snprintf(base, sizeof(base), "http://%s:%d", LAB_CRL_HOST, port);
    snprintf(crl_url, sizeof(crl_url), "%s/inter.crl", base);
    snprintf(ocsp_url, sizeof(ocsp_url), "%s/ocsp", base);
    const char *dns[] = {LAB_HOST, NULL}, *ips[] = {"127.0.0.1", NULL};
    const char *more[] = {crl_url, NULL};
    lab_cert_opts_t o = {.cn = LAB_HOST,
                         .dns_sans = dns,
                         .ip_sans = ips,
                         .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                         .crl_url = LDAP_CDP,
                         .crl_urls = more,
                         .aia_url = NULL,
                         .ocsp_url = ocsp_url};
    ASSERT(lab_cert_issue(&leaf, &o, &lab.pki.inter, err) == 0);
    lab_ocsp_opts_t oo = {.issuer = &lab.pki.inter, .status = LAB_OCSP_GOOD};
    ASSERT(lab_ocsp_serve(lab.http, "/ocsp", &oo) != NULL);
    X509 *chain[1] = {lab.pki.inter.cert};
    lab_tls_opts_t to = {
        .mode = LAB_TLS_SERVE, .cert = leaf.cert, .key = leaf.key, .chain = chain, .nchain = 1};
    srv = lab_tls_start(&to, err);
    ASSERT(srv != NULL);
}

/* Two targets: ns (the leaf above) and pkg1 (the lab's good binding: the same issuing CA, so the
 * same http:// CDP, and no OCSP URL). On ns three groups depend on the CDP: strict without OCSP
 * (goes offline when its cached CRL runs out), strict with OCSP (the responder answers for it)
 * and soft-fail; on pkg1 one strict group. No view names a directory. The cycle is an hour: only
 * scan requests check again. */
static void write_config(void)
{
    char root[600];
    lab_file(&lab, "root.pem", root, sizeof(root));
    lab_file(&lab, "token", tok_path, sizeof(tok_path));
    FILE *t = fopen(tok_path, "w");
    ASSERT(t != NULL);
    fputs(token, t);
    fclose(t);
    lab_file(&lab, "revhealth.json", cfg_path, sizeof(cfg_path));
    FILE *f = fopen(cfg_path, "w");
    ASSERT(f != NULL);
    const char *net = "\"network\": {\"resolve\": {\"" LAB_HOST "\": \"127.0.0.1\", \"" LAB_CRL_HOST
                      "\": \"127.0.0.1\"}}";
    fprintf(f,
            "{\"vantage\": \"lab\", \"listen\": \"127.0.0.1:0\", \"api_token_file\": \"%s\",\n"
            " \"interval_s\": 3600, \"jitter\": 0, \"cache\": {\"crl_max_age_s\": %d},\n"
            " \"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},\n"
            " \"targets\": {\"ns\": {\"url\": \"https://%s:%d/\", \"trust\": \"corp\"},\n"
            "             \"pkg1\": {\"url\": \"https://%s:%d/\", \"trust\": \"corp\"}},\n"
            " \"profiles\": {\"default\": {\"url\": \"https://%s:%d/\", \"target\": \"ns\"},\n"
            "              \"pkg\": {\"url\": \"https://%s:%d/\", \"target\": \"pkg1\"}},\n"
            " \"groups\": [\n"
            "  {\"name\": \"pkg\", \"count\": 2, \"profile\": \"pkg\", \"revocation\": {\"mode\": "
            "\"strict\", \"url_timeout_ms\": 3000}, %s},\n"
            "  {\"name\": \"strict-crl\", \"count\": 3, \"revocation\": {\"mode\": \"strict\", "
            "\"ocsp\": false, \"url_timeout_ms\": 3000}, %s},\n"
            "  {\"name\": \"strict-ocsp\", \"count\": 2, \"revocation\": {\"mode\": \"strict\", "
            "\"ocsp\": true, \"url_timeout_ms\": 3000}, %s},\n"
            "  {\"name\": \"soft\", \"count\": 1, \"revocation\": {\"mode\": \"soft_fail\", "
            "\"ocsp\": false, \"url_timeout_ms\": 3000}, %s}]}\n",
            tok_path, MAX_AGE_S, root, LAB_HOST, lab_tls_port(srv), LAB_HOST,
            lab_port(&lab, LAB_SC_GOOD), LAB_HOST, lab_tls_port(srv), LAB_HOST,
            lab_port(&lab, LAB_SC_GOOD), net, net, net, net);
    fclose(f);
}

/* The "revocation" entry for url of target `target`, from a fresh /api/v1/targets (the caller
 * frees *doc). */
static cJSON *rev_entry_of(const char *target, const char *url, cJSON **doc)
{
    *doc = dh_get_json_ready(&fsd, "/api/v1/targets");
    cJSON *t, *e;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(*doc, "targets"))
    {
        if (strcmp(str(t, "name"), target) != 0)
            continue;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(t, "revocation"))
        {
            if (strcmp(str(e, "url"), url) == 0)
                return e;
        }
    }
    return NULL;
}

static cJSON *rev_entry(const char *url, cJSON **doc)
{
    return rev_entry_of("ns", url, doc);
}

static cJSON *group_of(cJSON *entry, const char *name)
{
    cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(entry, "groups"))
    {
        if (strcmp(str(g, "name"), name) == 0)
            return g;
    }
    return NULL;
}

/* Polls /api/v1/targets until url's live state is `reachable` (30 s at most). */
static void wait_reachable(const char *url, int reachable)
{
    for (int i = 0; i < 300; i++) {
        cJSON *doc;
        cJSON *e = rev_entry(url, &doc);
        int ok = e != NULL && cJSON_IsBool(cJSON_GetObjectItem(e, "reachable")) &&
                 cJSON_IsTrue(cJSON_GetObjectItem(e, "reachable")) == reachable;
        cJSON_Delete(doc);
        if (ok)
            return;
        usleep(100000);
    }
    fprintf(stderr, "%s never became %s\n", url, reachable ? "reachable" : "unreachable");
    abort();
}

typedef struct counts_s {
    double total, online, probes;
} counts_t;

static counts_t status_counts(void)
{
    cJSON *s = dh_get_json_ready(&fsd, "/api/v1/status");
    cJSON *e = cJSON_GetObjectItem(s, "endpoints");
    counts_t c = {dh_num(e, "total"), dh_num(e, "online"),
                  dh_num(cJSON_GetObjectItem(s, "scan"), "probes_total")};
    cJSON_Delete(s);
    return c;
}

/* Waits until every endpoint has a verdict again after `since` probes, and returns the counts. */
static counts_t wait_probed(double since)
{
    for (int i = 0; i < 300; i++) {
        counts_t c = status_counts();
        if (c.total > 0 && c.probes >= since + c.total)
            return c;
        usleep(100000);
    }
    abort();
}

static void scan(void)
{
    dh_resp_t r = dh_http(&fsd, "POST", "/api/v1/scan", token, NULL);
    ASSERT_EQ(r.status, 202);
    free(r.body);
}

static char *metrics(void)
{
    dh_resp_t r = dh_http(&fsd, "GET", "/metrics", NULL, NULL);
    ASSERT_EQ(r.status, 200);
    return r.body;
}

/* The value of the sample that starts with prefix (name and labels up to the value), or -1. */
static long long sample(const char *body, const char *prefix)
{
    const char *p = strstr(body, prefix);
    return p ? strtoll(p + strlen(prefix), NULL, 10) : -1;
}

/* Polls until the round records group's cached copy of url (30 s at most). */
static void wait_cached(const char *url, const char *group)
{
    for (int i = 0; i < 300; i++) {
        cJSON *doc;
        cJSON *e = rev_entry(url, &doc);
        int ok = e != NULL && str(group_of(e, group), "cached_until") != NULL;
        cJSON_Delete(doc);
        if (ok)
            return;
        usleep(100000);
    }
    fprintf(stderr, "no cached copy of %s for %s\n", url, group);
    abort();
}

static void test_healthy(void)
{
    counts_t c = wait_probed(0);
    ASSERT_EQ(c.online, c.total);
    /* The first round ran right after the first reference probe, maybe before the endpoints
     * fetched the CRL: a scan request checks again. */
    scan();
    wait_cached(crl_url, "strict-crl");
    wait_reachable(crl_url, 1);
    /* pkg1's chain names the same CDP: its own line there, with its own group */
    cJSON *pdoc;
    cJSON *pe = rev_entry_of("pkg1", crl_url, &pdoc);
    ASSERT(pe != NULL);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(pe, "reachable")));
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(pe, "groups")), 1);
    ASSERT(group_of(pe, "pkg") != NULL);
    cJSON_Delete(pdoc);
    cJSON *doc;
    cJSON *e = rev_entry(crl_url, &doc);
    ASSERT_STREQ(str(e, "kind"), "crl");
    ASSERT_EQ(dh_num(e, "cert_depth"), 0);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(e, "signature_valid")));
    ASSERT_EQ(dh_num(e, "http_status"), 200);
    ASSERT(dh_num(e, "bytes") > 0);
    ASSERT(str(e, "next_update") != NULL && str(e, "last_success") != NULL);
    ASSERT_EQ(dh_num(e, "strict_endpoints_at_risk"), 0);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(e, "groups")), 3); /* ns's groups only */
    ASSERT(group_of(e, "pkg") == NULL);
    ASSERT_STREQ(str(group_of(e, "strict-crl"), "mode"), "strict");
    ASSERT_STREQ(str(group_of(e, "soft"), "mode"), "soft_fail");
    /* the endpoints fetched it: their copy runs out at fetch + max age, before nextUpdate */
    int64_t until = rfc3339(str(group_of(e, "strict-crl"), "cached_until"));
    int64_t checked = rfc3339(str(e, "checked_at"));
    ASSERT(until > checked + MAX_AGE_S - 120 && until <= checked + MAX_AGE_S);
    cJSON_Delete(doc);

    e = rev_entry(ocsp_url, &doc);
    ASSERT(e != NULL);
    ASSERT_STREQ(str(e, "kind"), "ocsp");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(e, "reachable")));
    ASSERT_STREQ(str(e, "ocsp_status"), "good");
    /* only the group that asks OCSP depends on the responder */
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(e, "groups")), 1);
    ASSERT(group_of(e, "strict-ocsp") != NULL);
    cJSON_Delete(doc);

    /* The AD CS ldap:/// URL: skipped (no view names a directory), nobody depends on it. */
    e = rev_entry(LDAP_CDP, &doc);
    ASSERT(e != NULL);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(e, "skipped")));
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(e, "reachable")));
    ASSERT_CONTAINS(str(e, "last_error"), "no directory");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(e, "groups")), 0);
    cJSON_Delete(doc);

    char *m = metrics(), want[1024];
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{vantage=\"lab\",shard=\"0/1\",url=\"%s\","
             "kind=\"crl\"} 1\n",
             crl_url);
    ASSERT_CONTAINS(m, want);
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{vantage=\"lab\",shard=\"0/1\",url=\"%s\","
             "kind=\"ocsp\"} 1\n",
             ocsp_url);
    ASSERT_CONTAINS(m, want);
    /* skipped: no 0 gauge, a skipped one instead */
    ASSERT(strstr(m, "fleetscan_crl_reachable{vantage=\"lab\",shard=\"0/1\",url=\"ldap:") == NULL);
    ASSERT(strstr(m, "fleetscan_strict_endpoints_revocation_at_risk{vantage=\"lab\",shard=\"0/1\","
                     "url=\"ldap:") == NULL);
    ASSERT_CONTAINS(m, "fleetscan_revocation_url_skipped{vantage=\"lab\",shard=\"0/1\","
                       "url=\"ldap:///CN=Lab%20Issuing");
    ASSERT(strstr(m, "fleetscan_strict_endpoints_offline_at_seconds{") == NULL);
    free(m);
}

static void test_cdp_down(void)
{
    lab_pki_serve_crl(&lab.pki, lab.http, "inter", 0);
    counts_t before = status_counts();
    scan();
    wait_reachable(crl_url, 0);
    /* the scan's probes: every endpoint stays online on its cached CRL (or OCSP) */
    counts_t c = wait_probed(before.probes);
    ASSERT_EQ(c.online, c.total);

    cJSON *doc;
    cJSON *e = rev_entry(crl_url, &doc);
    ASSERT(str(e, "last_error") != NULL);
    ASSERT(str(e, "last_success") != NULL); /* from before */
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(e, "skipped")));
    cJSON *g = group_of(e, "strict-crl");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(g, "at_risk")));
    const char *until = str(g, "cached_until");
    ASSERT(until != NULL);
    int64_t expiry = rfc3339(until);
    ASSERT(expiry > rfc3339(str(e, "checked_at"))); /* not yet: they are online */
    /* the at-risk instant is their cache entry's expiry */
    ASSERT_STREQ(str(g, "offline_at"), until);
    ASSERT_STREQ(str(e, "strict_offline_at"), until);
    ASSERT_EQ(dh_num(e, "strict_endpoints_at_risk"), 3);
    /* OCSP answers for the other strict group; soft-fail never goes offline for it */
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(group_of(e, "strict-ocsp"), "at_risk")));
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(group_of(e, "soft"), "at_risk")));
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(group_of(e, "soft"), "offline_at")));
    /* the CDP view of /targets says so too */
    cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "targets"), 0), *crl;
    ASSERT_STREQ(str(t, "name"), "ns");
    int seen = 0;
    cJSON_ArrayForEach(crl, cJSON_GetObjectItem(t, "crls"))
    {
        if (strcmp(str(crl, "url"), crl_url) == 0) {
            ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(crl, "reachable")));
            seen++;
        }
    }
    ASSERT_EQ(seen, 1);
    cJSON_Delete(doc);

    char *m = metrics(), want[1024];
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{vantage=\"lab\",shard=\"0/1\",url=\"%s\","
             "kind=\"crl\"} 0\n",
             crl_url);
    ASSERT_CONTAINS(m, want);
    snprintf(want, sizeof(want),
             "fleetscan_strict_endpoints_revocation_at_risk{vantage=\"lab\","
             "shard=\"0/1\",url=\"%s\",kind=\"crl\"} ",
             crl_url);
    ASSERT_EQ(sample(m, want), 3 + 2); /* one series: ns's strict-crl and pkg1's pkg */
    snprintf(want, sizeof(want),
             "fleetscan_strict_endpoints_offline_at_seconds{vantage=\"lab\","
             "shard=\"0/1\",url=\"%s\",kind=\"crl\"} ",
             crl_url);
    ASSERT_EQ(sample(m, want), expiry);
    snprintf(want, sizeof(want),
             "fleetscan_revocation_cache_expiry_seconds{vantage=\"lab\","
             "shard=\"0/1\",url=\"%s\",kind=\"crl\",group=\"strict-crl\"} ",
             crl_url);
    ASSERT_EQ(sample(m, want), expiry);
    /* the responder still answers */
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{vantage=\"lab\",shard=\"0/1\",url=\"%s\","
             "kind=\"ocsp\"} 1\n",
             ocsp_url);
    ASSERT_CONTAINS(m, want);
    free(m);
}

static void test_cdp_back(void)
{
    lab_pki_serve_crl(&lab.pki, lab.http, "inter", 1);
    scan();
    wait_reachable(crl_url, 1);
    cJSON *doc;
    cJSON *e = rev_entry(crl_url, &doc);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(e, "last_error")));
    ASSERT_EQ(dh_num(e, "strict_endpoints_at_risk"), 0);
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(group_of(e, "strict-crl"), "at_risk")));
    cJSON_Delete(doc);
    char *m = metrics(), want[1024];
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{vantage=\"lab\",shard=\"0/1\",url=\"%s\","
             "kind=\"crl\"} 1\n",
             crl_url);
    ASSERT_CONTAINS(m, want);
    ASSERT(strstr(m, "fleetscan_strict_endpoints_offline_at_seconds{") == NULL);
    free(m);
}

int main(void)
{
    char err[256];
    ASSERT(getenv("FLEETSCAN_BIN") != NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ASSERT(lab_start(&lab, err) == 0);
    make_server();
    write_config();
    lab_file(&lab, "revhealth.err", err_path, sizeof(err_path));
    dh_start(&fsd);
    RUN(test_healthy);
    RUN(test_cdp_down);
    RUN(test_cdp_back);
    dh_stop(&fsd, SIGTERM);
    lab_tls_stop(srv);
    lab_cert_free(&leaf);
    lab_stop(&lab);
    curl_global_cleanup();
    return 0;
}
