/* test_render.c - web/render*.c on hand-made probe results: an endpoint's detail and the
 * /api/v1/targets entry are byte for byte what `fleetscan probe --json` writes for the same
 * result (probes/report.c, cJSON), plus their own members, so the API and the CLI cannot drift. */
#include "web/render.h"

#include "probes/report.h"
#include "probes/util.h"

#include "test.h"

#include <stdarg.h>

#include <cjson/cJSON.h>

#define T0 1764000000

static char **strs(int n, ...);

static void cert(chain_cert_t *c, const char *subject, const char *issuer, int64_t nbf, int64_t naf)
{
    c->subject = fs_xstrdup(subject);
    c->issuer = fs_xstrdup(issuer);
    c->serial = fs_xstrdup("3770C9604E0B3942");
    c->not_before = nbf;
    c->not_after = naf;
    fs_strlcpy(c->sha1, "CB58535745F8BD41721DDAD9A30B9A15D9440065", sizeof(c->sha1));
    fs_strlcpy(c->sha256, "c987538be7f7d59c7f5a646353082c9c2b29b6ec28c0cef96bf198f67b563007",
               sizeof(c->sha256));
    fs_strlcpy(c->sig_alg, "sha256WithRSAEncryption", sizeof(c->sig_alg));
}

/* A result with a two-certificate chain (a UTF-8 subject with quotes, an expired issuer: a
 * negative days_left) and three retrievals (a CRL from the cache, a failed AIA fetch, a CRL that
 * answered 200 but did not verify). full 0: nothing past the connect (no TLS, chain, request). */
static void fill(probe_result_t *r, int online, int full)
{
    memset(r, 0, sizeof(*r));
    r->online = online;
    r->cause = online ? FS_CAUSE_NONE : FS_CAUSE_CRL_UNREACHABLE;
    r->warnings = online ? FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON) : 0;
    fs_strlcpy(r->message, online ? "GET /a: HTTP 200" : "revocation server offline for \"CA\"",
               sizeof(r->message));
    for (int i = 0; i < PROBE_PH_COUNT; i++)
        r->timings_ms[i] = (uint32_t)(i * 7);
    r->total_ms = 99;
    r->started_at = T0;
    r->endpoint_time = T0 + 3600;
    fs_strlcpy(r->addr, "10.0.0.5", sizeof(r->addr));
    if (!full)
        return;
    r->tls_version = TLS1_3_VERSION;
    fs_strlcpy(r->cipher, "TLS_AES_256_GCM_SHA384", sizeof(r->cipher));
    r->http_status = online ? 200 : 0;
    r->chain.n = r->chain.total = 2;
    chain_cert_t *leaf = &r->chain.certs[0], *ca = &r->chain.certs[1];
    cert(leaf, "CN=ns.corp.example,O=Caf\xc3\xa9 \"Lab\"\\West", "CN=Corp CA", T0 - 86400,
         T0 + 400 * 86400);
    leaf->sans = strs(2, "DNS:ns.corp.example", "IP:10.0.0.5");
    leaf->nsans = 2;
    leaf->cdp = strs(1, "http://crl.corp.example/ca.crl");
    leaf->ncdp = 1;
    leaf->aia = strs(1, "http://crl.corp.example/ca.der");
    leaf->naia = 1;
    cert(ca, "CN=Corp CA", "CN=Corp Root", T0 - 900 * 86400, T0 - 3 * 86400);
    ca->is_ca = 1;
    r->rev = fs_xcalloc(1, sizeof(*r->rev));
    r->rev->nurls = 5;
    rev_url_result_t *u = r->rev->urls;
    fs_strlcpy(u[0].url, "http://crl.corp.example/ca.crl", sizeof(u[0].url));
    fs_strlcpy(u[0].kind, "crl", sizeof(u[0].kind));
    u[0].ok = u[0].from_cache = 1;
    u[0].http_status = 200;
    u[0].bytes = 479;
    u[0].this_update = T0 - 3600;
    u[0].next_update = T0 + 7 * 86400;
    fs_strlcpy(u[1].url, "http://crl.corp.example/ca.der", sizeof(u[1].url));
    fs_strlcpy(u[1].kind, "aia", sizeof(u[1].kind));
    u[1].cert_depth = 1;
    u[1].time_ms = 15000;
    fs_strlcpy(u[1].error, "timed out after 15000 ms", sizeof(u[1].error));
    fs_strlcpy(u[2].url, "http://crl2.corp.example/ca.crl?x=\"1\"", sizeof(u[2].url));
    fs_strlcpy(u[2].kind, "crl", sizeof(u[2].kind));
    u[2].http_status = 200;
    u[2].bytes = 12;
    fs_strlcpy(u[2].error, "not a CRL", sizeof(u[2].error));
    fs_strlcpy(u[3].url, "http://ocsp.corp.example/", sizeof(u[3].url)); /* OCSP lines */
    fs_strlcpy(u[3].kind, "ocsp", sizeof(u[3].kind));
    u[3].ok = 1;
    u[3].post = 1;
    u[3].timeout_ms = 15000;
    fs_strlcpy(u[3].status, "good", sizeof(u[3].status));
    fs_strlcpy(u[4].url, "ldap:///CN=Corp%20CA,CN=CDP?certificateRevocationList", sizeof(u[4].url));
    fs_strlcpy(u[4].kind, "crl", sizeof(u[4].kind));
    u[4].skipped = 1;
    fs_strlcpy(u[4].error, "skipped: no directory in this view", sizeof(u[4].error));
}

static char **strs(int n, ...)
{
    va_list ap;
    char **v = fs_xmalloc((size_t)n * sizeof(*v));
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        v[i] = fs_xstrdup(va_arg(ap, const char *));
    va_end(ap);
    return v;
}

/* What daemon/aggregate.c hands render_detail for a result whose verdict is its own. */
static render_probe_t view(const probe_result_t *r, const char *url)
{
    return (render_probe_t){
        .url = url,
        .online = r->online,
        .cause = r->cause,
        .warnings = r->warnings,
        .message = r->message,
        .addr = r->addr,
        .endpoint_time = r->endpoint_time,
        .tls_version = r->tls_version != 0 ? tlsc_version_name(r->tls_version) : NULL,
        .cipher = r->cipher,
        .http_status = r->http_status,
        .chain = &r->chain,
        .urls = r->rev != NULL ? r->rev->urls : NULL,
        .nurls = r->rev != NULL ? r->rev->nurls : 0,
    };
}

static char *printed(cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    ASSERT(s != NULL);
    return s;
}

static void test_detail(void)
{
    static const int cases[][2] = {{1, 1}, {0, 1}, {0, 0}};
    const char *url = "https://ns.corp.example/Altiris/NS/Agent/GetClientPolicies.aspx";
    for (size_t i = 0; i < FS_ARRAY_SIZE(cases); i++) {
        probe_result_t r;
        fill(&r, cases[i][0], cases[i][1]);
        /* The CLI's object without timings, plus source: what the API served before. */
        cJSON *want = report_result_json(&r, url);
        cJSON_DeleteItemFromObject(want, "timings_ms");
        cJSON_AddStringToObject(want, "source",
                                "the group's last probe with this endpoint's outcome");
        char *w = printed(want);

        render_probe_t p = view(&r, url);
        wbuf_t b;
        wbuf_init(&b, 64, 1 << 20);
        ASSERT_EQ(render_detail(&p, &b), 0);
        ASSERT_STREQ(b.data, w);
        wbuf_free(&b);
        free(w);
        probe_result_free(&r);
    }
}

/* The reference target as daemon/reference.c records it. */
static snap_target_t *target_of(const probe_result_t *r, const char *url)
{
    snap_target_t *t = snap_target_new();
    t->name = fs_xstrdup("reference");
    t->url = fs_xstrdup(url);
    t->profile = fs_xstrdup("default");
    t->trust = fs_xstrdup("corp \"2025\"");
    t->checked_at = r->started_at;
    t->online = r->online;
    t->cause = (uint8_t)r->cause;
    t->warnings = r->warnings;
    fs_strlcpy(t->message, r->message, sizeof(t->message));
    memcpy(t->timings_ms, r->timings_ms, sizeof(t->timings_ms));
    t->total_ms = r->total_ms;
    fs_strlcpy(t->addr, r->addr, sizeof(t->addr));
    t->endpoint_time = r->endpoint_time;
    if (r->tls_version != 0)
        fs_strlcpy(t->tls_version, tlsc_version_name(r->tls_version), sizeof(t->tls_version));
    fs_strlcpy(t->cipher, r->cipher, sizeof(t->cipher));
    t->http_status = r->http_status;
    t->chain = r->chain; /* taken over: the result's chain is not freed */
    if (r->rev != NULL) {
        t->nurls = r->rev->nurls;
        t->urls = fs_xmalloc(t->nurls * sizeof(*t->urls));
        memcpy(t->urls, r->rev->urls, t->nurls * sizeof(*t->urls));
    }
    return t;
}

/* The /api/v1/targets document as the daemon built it with cJSON before it carried data. */
static char *targets_as_before(const probe_result_t *r, const char *url)
{
    char ts[32];
    cJSON *root = cJSON_CreateObject();
    cJSON *targets = cJSON_AddArrayToObject(root, "targets");
    cJSON *t = report_result_json(r, url);
    cJSON_AddStringToObject(t, "name", "reference");
    cJSON_AddStringToObject(t, "profile", "default");
    cJSON_AddStringToObject(t, "trust", "corp \"2025\"");
    cJSON_AddStringToObject(t, "checked_at", fs_rfc3339(r->started_at, ts, sizeof(ts)));
    cJSON *crls = cJSON_AddArrayToObject(t, "crls");
    for (size_t i = 0; r->rev != NULL && i < r->rev->nurls; i++) {
        const rev_url_result_t *u = &r->rev->urls[i];
        if (strcmp(u->kind, "crl") != 0)
            continue;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "url", u->url);
        cJSON_AddNumberToObject(c, "cert_depth", u->cert_depth);
        cJSON_AddBoolToObject(c, "reachable", u->ok || u->http_status == 200);
        cJSON_AddNumberToObject(c, "http_status", (double)u->http_status);
        cJSON_AddNumberToObject(c, "bytes", (double)u->bytes);
        if (u->this_update)
            cJSON_AddStringToObject(c, "this_update", fs_rfc3339(u->this_update, ts, sizeof(ts)));
        else
            cJSON_AddNullToObject(c, "this_update");
        if (u->next_update)
            cJSON_AddStringToObject(c, "next_update", fs_rfc3339(u->next_update, ts, sizeof(ts)));
        else
            cJSON_AddNullToObject(c, "next_update");
        if (u->error[0])
            cJSON_AddStringToObject(c, "last_error", u->error);
        else
            cJSON_AddNullToObject(c, "last_error");
        cJSON_AddBoolToObject(c, "skipped", u->skipped);
        cJSON_AddItemToArray(crls, c);
    }
    cJSON_AddArrayToObject(t, "revocation"); /* no live check in this snapshot */
    cJSON_AddArrayToObject(t, "addresses");  /* no address records in this snapshot */
    cJSON_AddNullToObject(t, "backend_inconsistent");
    cJSON_AddItemToArray(targets, t);
    return printed(root);
}

static void test_targets(void)
{
    const char *url = "https://ns.corp.example/";
    snap_t *s = snap_new();
    wbuf_t b;
    wbuf_init(&b, 64, 1 << 20);
    ASSERT_EQ(render_targets(s, &b), 0);
    ASSERT_STREQ(b.data, "{\"targets\":[]}");
    wbuf_free(&b);

    for (int online = 0; online <= 1; online++) {
        probe_result_t r;
        fill(&r, online, 1);
        char *want = targets_as_before(&r, url);
        if (s->targets == NULL) {
            s->ntargets = 1;
            s->targets = fs_xcalloc(1, sizeof(*s->targets));
        }
        snap_target_unref(s->targets[0]);
        s->targets[0] = target_of(&r, url);
        r.chain.n = 0; /* now the target's */
        wbuf_init(&b, 64, 1 << 20);
        ASSERT_EQ(render_targets(s, &b), 0);
        ASSERT_STREQ(b.data, want);
        wbuf_free(&b);
        free(want);
        probe_result_free(&r);
    }
    snap_unref(s);
}

/* One live-check line for render_metrics. */
static void rev_url(snap_rev_url_t *u, const char *url, const char *kind, int reachable,
                    uint32_t at_risk, int64_t offline_at, const char *group, int64_t cached)
{
    fs_strlcpy(u->url, url, sizeof(u->url));
    fs_strlcpy(u->kind, kind, sizeof(u->kind));
    u->reachable = reachable;
    u->signature_valid = -1;
    u->strict_at_risk = at_risk;
    u->strict_offline_at = offline_at;
    u->ngroups = 1;
    u->groups = fs_xcalloc(1, sizeof(*u->groups));
    u->groups[0] = (snap_rev_group_t){.name = fs_xstrdup(group),
                                      .mode = REV_STRICT,
                                      .endpoints = at_risk,
                                      .cached_until = cached,
                                      .at_risk = at_risk > 0,
                                      .offline_at = offline_at};
}

/* Two targets whose chains share a CDP (the same issuing CA): its gauges are one series, the
 * strict endpoints at risk of both targets' groups summed, the earliest instant kept; each
 * group's cache expiry is its own series. A target without a round yet adds nothing. */
static void test_revocation_metrics_across_targets(void)
{
    snap_t *s = snap_new();
    s->vantage = fs_xstrdup("hq");
    s->ntargets = 3;
    s->targets = fs_xcalloc(3, sizeof(*s->targets));
    s->revocation = fs_xcalloc(3, sizeof(*s->revocation));
    const char *names[] = {"ns", "pkg1", "cmg"};
    for (int i = 0; i < 3; i++) {
        s->targets[i] = snap_target_new();
        s->targets[i]->name = fs_xstrdup(names[i]);
        s->targets[i]->online = 1;
    }
    const char *shared = "http://pki.corp.example/issuing.crl";
    for (int i = 0; i < 2; i++) {
        snap_revhealth_t *h = snap_revhealth_new();
        h->nurls = i == 0 ? 1 : 2;
        h->urls = fs_xcalloc(h->nurls, sizeof(*h->urls));
        rev_url(&h->urls[0], shared, "crl", 0, i == 0 ? 3 : 2, i == 0 ? T0 + 900 : T0 + 600,
                i == 0 ? "hq" : "site", i == 0 ? T0 + 900 : T0 + 600);
        if (i == 1)
            rev_url(&h->urls[1], "http://ocsp.corp.example/", "ocsp", 1, 0, 0, "site", 0);
        s->revocation[i] = h;
    }
    s->rev_hits = 99811;
    s->rev_joined = 170;
    s->rev_fetches = 19;
    s->rev_sig_checks = 12;
    s->rev_entries = 7;
    s->rev_bytes = 48213;
    wbuf_t b;
    wbuf_init(&b, 4096, 1 << 20);
    ASSERT_EQ(render_metrics(s, &b), 0);
    const char *lbl = "vantage=\"hq\",shard=\"0/1\"";
    char want[512];
    /* the probes' retrieval cache */
    const char *cache[][2] = {
        {"fleetscan_revocation_cache_lookups_total", ",result=\"hit\"} 99811\n"},
        {"fleetscan_revocation_cache_lookups_total", ",result=\"joined\"} 170\n"},
        {"fleetscan_revocation_cache_lookups_total", ",result=\"fetched\"} 19\n"},
        {"fleetscan_revocation_signature_checks_total", "} 12\n"},
        {"fleetscan_revocation_cache_entries", "} 7\n"},
        {"fleetscan_revocation_cache_bytes", "} 48213\n"},
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(cache); i++) {
        snprintf(want, sizeof(want), "%s{%s%s", cache[i][0], lbl, cache[i][1]);
        ASSERT_CONTAINS(b.data, want);
    }
    ASSERT_CONTAINS(b.data, "# TYPE fleetscan_revocation_cache_lookups_total counter\n");
    ASSERT_CONTAINS(b.data, "# TYPE fleetscan_revocation_cache_bytes gauge\n");
    snprintf(want, sizeof(want), "fleetscan_crl_reachable{%s,url=\"%s\",kind=\"crl\"} 0\n", lbl,
             shared);
    ASSERT_CONTAINS(b.data, want);
    ASSERT(strstr(strstr(b.data, want) + 1, want) == NULL); /* once */
    snprintf(want, sizeof(want),
             "fleetscan_strict_endpoints_revocation_at_risk{%s,url=\"%s\",kind=\"crl\"} 5\n", lbl,
             shared);
    ASSERT_CONTAINS(b.data, want);
    ASSERT(strstr(strstr(b.data, want) + 1,
                  "fleetscan_strict_endpoints_revocation_at_risk{"
                  "vantage=\"hq\",shard=\"0/1\",url=\"http://pki") == NULL);
    snprintf(want, sizeof(want),
             "fleetscan_strict_endpoints_offline_at_seconds{%s,url=\"%s\",kind=\"crl\"} %d\n", lbl,
             shared, T0 + 600);
    ASSERT_CONTAINS(b.data, want);
    snprintf(want, sizeof(want),
             "fleetscan_revocation_cache_expiry_seconds{%s,url=\"%s\",kind=\"crl\",group=\"hq\"} "
             "%d\n",
             lbl, shared, T0 + 900);
    ASSERT_CONTAINS(b.data, want);
    snprintf(want, sizeof(want),
             "fleetscan_revocation_cache_expiry_seconds{%s,url=\"%s\",kind=\"crl\",group="
             "\"site\"} %d\n",
             lbl, shared, T0 + 600);
    ASSERT_CONTAINS(b.data, want);
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{%s,url=\"http://ocsp.corp.example/\",kind=\"ocsp\"} 1\n",
             lbl);
    ASSERT_CONTAINS(b.data, want);
    wbuf_free(&b);
    snap_unref(s);
}

/* A farm of three nodes behind one name, one still on the old binding and one refusing: each
 * address has its outcome and last-seen time, whether its leaf is the one most nodes present (the
 * odd node is 0 even when the reference probe happened to reach it), and the target says its
 * backends disagree. An address where no handshake completed has no leaf sample. */
static void test_address_metrics(void)
{
    const char *newleaf = "2B81E5C6D1A8F03B9F1E2C3D4A5B6C7D8E9F0A1B";
    const char *oldleaf = "E65E0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B";
    snap_t *s = snap_new();
    s->vantage = fs_xstrdup("hq");
    s->ntargets = 2;
    s->targets = fs_xcalloc(2, sizeof(*s->targets)); /* the second is not probed yet */
    snap_target_t *t = s->targets[0] = snap_target_new();
    t->name = fs_xstrdup("ns");
    t->online = 1;
    fs_strlcpy(t->leaf_sha1, oldleaf, sizeof(t->leaf_sha1)); /* it reached the odd node */
    const struct {
        const char *addr, *leaf;
        int online;
        fs_cause_t cause;
        int64_t seen;
    } nodes[] = {{"10.0.0.5", newleaf, 1, FS_CAUSE_NONE, T0},
                 {"10.0.0.6", oldleaf, 1, FS_CAUSE_NONE, T0 + 5},
                 {"10.0.0.7", "", 0, FS_CAUSE_CONNECT_REFUSED, T0 + 7},
                 {"fd00::8", "2b81e5c6d1a8f03b9f1e2c3d4a5b6c7d8e9f0a1b", 1, FS_CAUSE_NONE, T0 + 9}};
    for (size_t i = 0; i < FS_ARRAY_SIZE(nodes); i++) {
        snap_backend_t *k = &t->backends[t->nbackends++];
        fs_strlcpy(k->addr, nodes[i].addr, sizeof(k->addr));
        fs_strlcpy(k->leaf_sha1, nodes[i].leaf, sizeof(k->leaf_sha1));
        k->online = nodes[i].online;
        k->cause = (uint8_t)nodes[i].cause;
        k->last_seen = nodes[i].seen;
    }
    t->inconsistent = 1;
    fs_strlcpy(t->inconsistent_why, "10.0.0.6 presents leaf E65E...", sizeof(t->inconsistent_why));

    wbuf_t b;
    wbuf_init(&b, 4096, 1 << 20);
    ASSERT_EQ(render_metrics(s, &b), 0);
    const char *l = "vantage=\"hq\",shard=\"0/1\",target=\"ns\"";
    char want[512];
    /* Each line is family, then the labels after vantage, shard and target. */
    const char *lines[][2] = {
        {"fleetscan_target_address_up", ",address=\"10.0.0.5\"} 1\n"},
        {"fleetscan_target_address_up", ",address=\"10.0.0.7\"} 0\n"},
        {"fleetscan_target_address_last_seen_seconds", ",address=\"10.0.0.6\"} 1764000005\n"},
        {"fleetscan_target_address_last_seen_seconds", ",address=\"fd00::8\"} 1764000009\n"},
        {"fleetscan_target_address_leaf_agrees",
         ",address=\"10.0.0.5\",sha1=\"2B81E5C6D1A8F03B9F1E2C3D4A5B6C7D8E9F0A1B\"} 1\n"},
        {"fleetscan_target_address_leaf_agrees",
         ",address=\"10.0.0.6\",sha1=\"E65E0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B\"} 0\n"},
        {"fleetscan_target_address_leaf_agrees",
         ",address=\"fd00::8\",sha1=\"2b81e5c6d1a8f03b9f1e2c3d4a5b6c7d8e9f0a1b\"} 1\n"},
        {"fleetscan_target_backend_inconsistent", "} 1\n"},
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(lines); i++) {
        snprintf(want, sizeof(want), "%s{%s%s", lines[i][0], l, lines[i][1]);
        ASSERT_CONTAINS(b.data, want);
    }
    ASSERT(strstr(b.data, "leaf_agrees{vantage=\"hq\",shard=\"0/1\",target=\"ns\",address="
                          "\"10.0.0.7\"") == NULL);
    ASSERT_CONTAINS(b.data, "# TYPE fleetscan_target_address_up gauge\n");
    ASSERT_CONTAINS(b.data, "# TYPE fleetscan_target_backend_inconsistent gauge\n");
    wbuf_free(&b);

    /* 10.0.0.5 left the name's answer 95 s ago: its series stays, its vote does not. Of the
     * addresses still seen, one presents each leaf, and the tie goes to the reference's. */
    t->backend_max_age_s = 95;
    s->generated_at = T0 + 100;
    wbuf_init(&b, 4096, 1 << 20);
    ASSERT_EQ(render_metrics(s, &b), 0);
    const char *vote[][2] = {
        {"10.0.0.5", "2B81E5C6D1A8F03B9F1E2C3D4A5B6C7D8E9F0A1B\"} 0\n"},
        {"10.0.0.6", "E65E0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B\"} 1\n"},
        {"fd00::8", "2b81e5c6d1a8f03b9f1e2c3d4a5b6c7d8e9f0a1b\"} 0\n"},
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(vote); i++) {
        snprintf(want, sizeof(want),
                 "fleetscan_target_address_leaf_agrees{%s,address=\"%s\",sha1=\"%s", l, vote[i][0],
                 vote[i][1]);
        ASSERT_CONTAINS(b.data, want);
    }
    wbuf_free(&b);
    t->backend_max_age_s = 0;

    /* Two nodes, one leaf each: a tie goes to the reference probe's leaf. */
    t->nbackends = 2;
    fs_strlcpy(t->leaf_sha1, newleaf, sizeof(t->leaf_sha1));
    wbuf_init(&b, 4096, 1 << 20);
    ASSERT_EQ(render_metrics(s, &b), 0);
    for (size_t i = 4; i <= 5; i++) {
        snprintf(want, sizeof(want), "%s{%s%s", lines[i][0], l, lines[i][1]);
        ASSERT_CONTAINS(b.data, want);
    }
    wbuf_free(&b);
    snap_unref(s);
}

/* /status: each group names its target and since when its oldest outage lasts; the reloads the
 * dashboard's timeline marks; events name their group's target (null when unknown). */
static void test_status_targets_and_reloads(void)
{
    snap_t *s = snap_new();
    s->ngroups = 2;
    s->groups = fs_xcalloc(2, sizeof(*s->groups));
    s->groups[0] = (snap_group_t){.name = fs_xstrdup("hq"), .target = fs_xstrdup("ns")};
    s->groups[1] = (snap_group_t){.name = fs_xstrdup("pkg-eu"),
                                  .target = fs_xstrdup("pkg1"),
                                  .offline_since = T0 + 60,
                                  .counts = {.total = 3, .offline = 3}};
    s->groups[1].counts.causes[FS_CAUSE_UNTRUSTED_CA] = 3;
    s->nreloads = 2;
    s->reloads[0] = (snap_reload_t){.at = T0, .ok = 1};
    s->reloads[1] = (snap_reload_t){.at = T0 + 120, .ok = 0};
    s->reload_at = T0 + 120;
    fs_strlcpy(s->reload_message, "groups[0].trust: unknown trust store",
               sizeof(s->reload_message));
    s->nevents = 2;
    s->events = fs_xcalloc(2, sizeof(*s->events));
    s->events[0] = (snap_event_t){.seq = 1,
                                  .at = T0 + 60,
                                  .subject = "group:pkg-eu",
                                  .target = "pkg1",
                                  .old_state = SNAP_PENDING,
                                  .new_state = SNAP_OFFLINE,
                                  .cause = FS_CAUSE_UNTRUSTED_CA};
    s->events[1] =
        (snap_event_t){.seq = 2, .at = T0 + 61, .subject = "gone-00001", .new_state = SNAP_ONLINE};

    wbuf_t b;
    wbuf_init(&b, 1024, 1 << 20);
    ASSERT_EQ(render_status(s, &b), 0);
    ASSERT_CONTAINS(b.data, "{\"name\":\"hq\",\"total\":0,");
    ASSERT_CONTAINS(b.data, "\"warnings\":{},\"target\":\"ns\",\"offline_since\":null}");
    ASSERT_CONTAINS(b.data, "\"causes\":{\"untrusted_ca\":3},\"warnings\":{},\"target\":\"pkg1\","
                            "\"offline_since\":\"2025-11-24T16:01:00Z\"}");
    ASSERT_CONTAINS(b.data, "\"reloads\":[{\"at\":\"2025-11-24T16:00:00Z\",\"ok\":true},"
                            "{\"at\":\"2025-11-24T16:02:00Z\",\"ok\":false}]}");
    cJSON *j = cJSON_Parse(b.data);
    ASSERT(j != NULL);
    cJSON_Delete(j);
    wbuf_free(&b);

    wbuf_init(&b, 1024, 1 << 20);
    ASSERT_EQ(render_events(s, 0, 0, &b), 0);
    ASSERT_CONTAINS(b.data,
                    "\"subject\":\"group:pkg-eu\",\"old_state\":\"pending\","
                    "\"new_state\":\"offline\",\"cause\":\"untrusted_ca\",\"target\":\"pkg1\"}");
    ASSERT_CONTAINS(b.data, "\"subject\":\"gone-00001\",\"old_state\":\"pending\","
                            "\"new_state\":\"online\",\"cause\":null,\"target\":null}");
    wbuf_free(&b);
    snap_unref(s);
}

/* /api/v1/events keeps a window: a client asking from before it is told what it missed. */
static void test_events_dropped(void)
{
    snap_t *s = snap_new();
    s->nevents = 3;
    s->events = fs_xcalloc(3, sizeof(*s->events));
    for (int i = 0; i < 3; i++) {
        s->events[i].seq = 10 + (uint64_t)i;
        s->events[i].at = 1800000000 + i;
        snprintf(s->events[i].subject, sizeof(s->events[i].subject), "group:g%d", i);
        s->events[i].new_state = SNAP_ONLINE;
    }
    wbuf_t b;
    wbuf_init(&b, 64, 1 << 16);
    ASSERT_EQ(render_events(s, 0, 0, &b), 0);
    ASSERT_CONTAINS(b.data, "\"kind\":\"group\",\"subject\":\"group:g0\"");
    ASSERT_CONTAINS(b.data, "\"last_seq\":12,\"oldest_seq\":10,\"dropped\":9}");
    wbuf_free(&b);
    wbuf_init(&b, 64, 1 << 16);
    ASSERT_EQ(render_events(s, 10, 0, &b), 0); /* nothing missed from 10 on */
    ASSERT_CONTAINS(b.data, "\"dropped\":0}");
    wbuf_free(&b);
    snap_unref(s);
}

int main(void)
{
    RUN(test_events_dropped);
    RUN(test_detail);
    RUN(test_targets);
    RUN(test_revocation_metrics_across_targets);
    RUN(test_address_metrics);
    RUN(test_status_targets_and_reloads);
    return 0;
}
