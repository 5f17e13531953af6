/* test_api.c - the HTTP API over real sockets: a hand-built snapshot is published and every
 * route is exercised with libcurl (status, filters, paging, auth, errors, metrics through
 * promtool, garbage input, staleness, republishing, stopping with idle connections). */
#include "web/api.h"
#include "web/render.h"

#include "daemon/forecast.h"

#include "probes/util.h"

#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <uv.h>

#define TOKEN "s3cret-token"
#define T0 1764000000

static int g_port;
/* Client timeout of every request: a hang detector, never a speed verdict. */
static atomic_long g_timeout_s = 15;
static atomic_int g_scans;
static atomic_int g_preflights;
static atomic_int g_forecasts;     /* forecast hook calls */
static atomic_int g_forecast_real; /* the hook renders forecast_json (5,000-group test) */

/* While closed, the pre-flight hook blocks (a CDP that never answers); g_pf_blocked counts the
 * hook calls waiting there. */
static pthread_mutex_t g_pf_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_pf_cv = PTHREAD_COND_INITIALIZER;
static int g_pf_closed, g_pf_blocked;

/* ---- the snapshot ---------------------------------------------------------------------- */

typedef struct spec_s {
    uint32_t group;
    int state, cause;
    uint32_t warnings;
} spec_t;

static const char *const group_names[] = {"hq", "branch-eu", "legacy"};

static const spec_t specs[] = {
    {0, SNAP_ONLINE, FS_CAUSE_NONE, 0},
    {0, SNAP_ONLINE, FS_CAUSE_NONE, FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON)},
    {0, SNAP_OFFLINE, FS_CAUSE_DNS_FAILURE, 0},
    {0, SNAP_PENDING, FS_CAUSE_NONE, 0},
    {1, SNAP_OFFLINE, FS_CAUSE_CRL_UNREACHABLE, 0},
    {1, SNAP_OFFLINE, FS_CAUSE_CRL_UNREACHABLE, 0},
    {1, SNAP_ONLINE, FS_CAUSE_NONE,
     FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON) | FS_WARN_BIT(FS_WARN_REVOCATION_SOFT_FAIL)},
    {2, SNAP_OFFLINE, FS_CAUSE_UNTRUSTED_CA, 0},
    {2, SNAP_OFFLINE, FS_CAUSE_UNTRUSTED_CA, 0},
};
#define NSPECS FS_ARRAY_SIZE(specs)

static void count(snap_counts_t *c, const snap_endpoint_t *e)
{
    c->total++;
    if (e->state == SNAP_ONLINE)
        c->online++;
    else if (e->state == SNAP_OFFLINE)
        c->offline++, c->causes[e->cause]++;
    else
        c->pending++;
    for (int w = 0; w < FS_WARN_COUNT; w++)
        if (e->warnings & FS_WARN_BIT(w))
            c->warnings[w]++;
}

static char **strs1(const char *v)
{
    char **a = fs_xmalloc(sizeof(*a));
    a[0] = fs_xstrdup(v);
    return a;
}

/* The reference target: a leaf whose subject needs escaping in JSON and in a label, an
 * unreachable CRL and an AIA retrieval (not a CRL: no gauge, no "crls" line). */
#define REF_SUBJECT "CN=ns.corp.example,O=Corp \"West\"\\Ops\nTeam"
static snap_target_t *build_target(void)
{
    snap_target_t *t = snap_target_new();
    t->name = fs_xstrdup("reference");
    t->url = fs_xstrdup("https://ns.corp.example/");
    t->profile = fs_xstrdup("default");
    t->trust = fs_xstrdup("corp");
    t->checked_at = T0 + 30;
    t->online = 1;
    fs_strlcpy(t->message, "GET /: HTTP 200", sizeof(t->message));
    t->total_ms = 42;
    t->timings_ms[SNAP_PH_TLS] = 12;
    fs_strlcpy(t->addr, "10.0.0.5", sizeof(t->addr));
    t->endpoint_time = T0 + 30;
    fs_strlcpy(t->tls_version, "TLSv1.3", sizeof(t->tls_version));
    fs_strlcpy(t->cipher, "TLS_AES_256_GCM_SHA384", sizeof(t->cipher));
    t->http_status = 200;
    t->chain.n = t->chain.total = 1;
    chain_cert_t *c = &t->chain.certs[0];
    c->subject = fs_xstrdup(REF_SUBJECT);
    c->issuer = fs_xstrdup("CN=Corp Issuing CA");
    c->serial = fs_xstrdup("0A1B");
    c->not_before = T0 - 86400;
    c->not_after = 1767225600;
    fs_strlcpy(c->sha1, "AA11AA11AA11AA11AA11AA11AA11AA11AA11AA11", sizeof(c->sha1));
    c->sans = strs1("DNS:ns.corp.example");
    c->nsans = 1;
    c->cdp = strs1("http://crl.corp.example/root.crl");
    c->ncdp = 1;
    t->nurls = 2;
    t->urls = fs_xcalloc(2, sizeof(*t->urls));
    fs_strlcpy(t->urls[0].url, "http://crl.corp.example/root.crl", sizeof(t->urls[0].url));
    fs_strlcpy(t->urls[0].kind, "crl", sizeof(t->urls[0].kind));
    fs_strlcpy(t->urls[0].error, "connection refused", sizeof(t->urls[0].error));
    fs_strlcpy(t->urls[1].url, "http://crl.corp.example/issuing.der", sizeof(t->urls[1].url));
    fs_strlcpy(t->urls[1].kind, "aia", sizeof(t->urls[1].kind));
    t->urls[1].ok = 1;
    t->urls[1].http_status = 200;
    return t;
}

/* The live check of the reference chain's revocation URLs: the CDP is down, strict group hq
 * (3 endpoints) goes offline when its cached CRL runs out at T0 + 3600, soft-fail branch-eu never;
 * the OCSP responder answers; the AD CS ldap:/// CDP is skipped (no directory). */
#define LDAP_CDP "ldap:///CN=Corp%20CA,CN=CDP?certificateRevocationList"
static snap_revhealth_t *build_health(void)
{
    snap_revhealth_t *h = snap_revhealth_new();
    h->checked_at = T0 + 40;
    h->nurls = 3;
    h->urls = fs_xcalloc(3, sizeof(*h->urls));
    snap_rev_url_t *u = &h->urls[0];
    fs_strlcpy(u->url, "http://crl.corp.example/root.crl", sizeof(u->url));
    fs_strlcpy(u->kind, "crl", sizeof(u->kind));
    fs_strlcpy(u->error, "connection refused", sizeof(u->error));
    u->signature_valid = -1;
    u->latency_ms = 2;
    u->checked_at = T0 + 40;
    u->last_success = T0 - 600;
    u->strict_at_risk = 3;
    u->strict_offline_at = T0 + 3600;
    u->ngroups = 2;
    u->groups = fs_xcalloc(2, sizeof(*u->groups));
    u->groups[0] = (snap_rev_group_t){.name = fs_xstrdup("hq"),
                                      .mode = REV_STRICT,
                                      .endpoints = 3,
                                      .cached_until = T0 + 3600,
                                      .at_risk = 1,
                                      .offline_at = T0 + 3600};
    u->groups[1] = (snap_rev_group_t){.name = fs_xstrdup("branch-eu \"EU\""),
                                      .mode = REV_SOFT_FAIL,
                                      .endpoints = 2,
                                      .cached_until = T0 + 7200};
    u = &h->urls[1];
    fs_strlcpy(u->url, LDAP_CDP, sizeof(u->url));
    fs_strlcpy(u->kind, "crl", sizeof(u->kind));
    fs_strlcpy(u->error, "skipped: no directory in this view", sizeof(u->error));
    u->skipped = 1;
    u->signature_valid = -1;
    u->checked_at = T0 + 40;
    u = &h->urls[2];
    fs_strlcpy(u->url, "http://ocsp.corp.example/", sizeof(u->url));
    fs_strlcpy(u->kind, "ocsp", sizeof(u->kind));
    fs_strlcpy(u->ocsp_status, "good", sizeof(u->ocsp_status));
    u->reachable = 1;
    u->signature_valid = 1;
    u->http_status = 200;
    u->bytes = 1500;
    u->this_update = T0 - 60;
    u->next_update = T0 + 86400;
    u->checked_at = u->last_success = T0 + 40;
    return h;
}

/* variant 1: hq-00003 has come online (the republish test), no reference probe yet. */
static snap_t *build_snap(int variant)
{
    snap_t *s = snap_new();
    s->generated_at = T0 + 60;
    s->started_at = T0;
    s->vantage = fs_xstrdup("site \"A\"\\1");
    s->shard = fs_xstrdup("2/4");
    s->ngroups = 3;
    s->groups = fs_xcalloc(3, sizeof(*s->groups));
    for (size_t g = 0; g < 3; g++)
        s->groups[g].name = fs_xstrdup(group_names[g]);
    s->groups[0].message = fs_xstrdup("");
    s->groups[1].message = NULL;
    s->groups[2].message = fs_xstrdup("Custom log line");
    /* Per-cause lines and details: an endpoint sees its own kind of outcome. */
    s->groups[2].cause_detail[FS_CAUSE_UNTRUSTED_CA] =
        fs_xstrdup("{\"verdict\":\"offline\",\"chain\":[1,2]}");
    s->groups[0].cause_message[FS_CAUSE_DNS_FAILURE] = fs_xstrdup("cannot resolve \"ns\"");
    s->groups[0].cause_detail[FS_CAUSE_NONE] = fs_xstrdup("{\"verdict\":\"online\"}");

    s->nendpoints = NSPECS;
    s->endpoints = fs_xcalloc(NSPECS, sizeof(*s->endpoints));
    uint32_t idx[3] = {0, 0, 0};
    for (size_t i = 0; i < NSPECS; i++) {
        snap_endpoint_t *e = &s->endpoints[i];
        e->group = specs[i].group;
        e->index = idx[e->group]++;
        e->state = (uint8_t)specs[i].state;
        e->cause = (uint8_t)specs[i].cause;
        e->warnings = specs[i].warnings;
        if (variant == 1 && i == 3)
            e->state = SNAP_ONLINE;
        if (e->state != SNAP_PENDING) {
            e->since = T0 + 5;
            e->last_probe_at = T0 + 50;
            for (int p = 0; p < SNAP_PH_COUNT; p++)
                e->timings_ms[p] = (uint32_t)(10 * (p + 1));
        }
        count(&s->totals, e);
        count(&s->groups[e->group].counts, e);
    }
    s->probes_total = 120;
    s->probes_by_result[SNAP_ONLINE] = 70;
    s->probes_by_result[SNAP_OFFLINE] = 50;
    s->probes_in_flight = 3;
    for (int p = 0; p < SNAP_PH_COUNT; p++) {
        for (int i = 0; i < SNAP_HIST_BUCKETS; i++)
            s->hist_counts[p][i] = (uint64_t)(i + 1);
        s->hist_counts[p][SNAP_HIST_BUCKETS] = 20;
        s->hist_sum[p] = 1.5 * (p + 1);
    }
    s->ntargets = 1;
    s->targets = fs_xcalloc(1, sizeof(*s->targets));
    s->revocation = fs_xcalloc(1, sizeof(*s->revocation));
    if (variant == 0) { /* variant 1: no reference probe yet */
        s->targets[0] = build_target();
        s->revocation[0] = build_health();
    }
    s->nevents = 4;
    s->events = fs_xcalloc(4, sizeof(*s->events));
    const struct {
        const char *subject;
        int old_state, new_state, cause;
    } ev[3] = {{"hq-00002", SNAP_ONLINE, SNAP_OFFLINE, FS_CAUSE_DNS_FAILURE},
               {"group:legacy", SNAP_ONLINE, SNAP_OFFLINE, FS_CAUSE_UNTRUSTED_CA},
               {"branch-eu-00000", SNAP_ONLINE, SNAP_OFFLINE, FS_CAUSE_CRL_UNREACHABLE}};
    for (int i = 0; i < 3; i++) {
        s->events[i].at = T0 + 10 * i;
        s->events[i].seq = (uint64_t)(i + 1);
        fs_strlcpy(s->events[i].subject, ev[i].subject, sizeof(s->events[i].subject));
        s->events[i].old_state = (uint8_t)ev[i].old_state;
        s->events[i].new_state = (uint8_t)ev[i].new_state;
        s->events[i].cause = (uint8_t)ev[i].cause;
    }
    /* A subject filling its whole array, without a NUL. */
    s->events[3].at = T0 + 30;
    s->events[3].seq = 4;
    memset(s->events[3].subject, 'x', sizeof(s->events[3].subject));
    s->events[3].old_state = SNAP_PENDING;
    s->events[3].new_state = SNAP_ONLINE;
    return s;
}

/* ---- HTTP client ----------------------------------------------------------------------- */

typedef struct resp_s {
    long status;
    long connects; /* new connections this request opened: 0 when one was reused */
    CURLcode rc;
    char *body;
    size_t len;
    char *headers;
    size_t hlen;
} resp_t;

typedef struct sink_s {
    char *data;
    size_t len;
} sink_t;

static size_t sink_write(char *p, size_t sz, size_t n, void *ud)
{
    sink_t *s = ud;
    s->data = fs_xrealloc(s->data, s->len + sz * n + 1);
    memcpy(s->data + s->len, p, sz * n);
    s->len += sz * n;
    s->data[s->len] = '\0';
    return sz * n;
}

typedef struct upload_s {
    size_t left;
} upload_t;

static size_t upload_read(char *p, size_t sz, size_t n, void *ud)
{
    upload_t *u = ud;
    size_t k = sz * n < u->left ? sz * n : u->left;
    memset(p, 'A', k);
    u->left -= k;
    return k;
}

/* One request on handle h (NULL: a fresh one). body_len < 0: no body; chunked > 0: stream that
 * many bytes with chunked transfer encoding instead. */
static resp_t request_on(CURL *h, int port, const char *method, const char *path, const char *auth,
                         const char *body, long body_len, size_t chunked)
{
    char url[300000];
    resp_t r;
    sink_t b = {0}, hd = {0};
    upload_t up = {chunked};
    struct curl_slist *hl = NULL;
    int own = h == NULL;

    memset(&r, 0, sizeof(r));
    if (own)
        h = curl_easy_init();
    else
        curl_easy_reset(h);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, atomic_load(&g_timeout_s));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hd);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    if (auth != NULL) {
        char ah[256];
        snprintf(ah, sizeof(ah), "Authorization: %s", auth);
        hl = curl_slist_append(hl, ah);
    }
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (chunked > 0) {
        hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        hl = curl_slist_append(hl, "Expect:");
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, upload_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &up);
    } else if (body_len >= 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    r.rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r.connects);
    curl_slist_free_all(hl);
    if (own)
        curl_easy_cleanup(h);
    r.body = b.data ? b.data : fs_xstrdup("");
    r.len = b.len;
    r.headers = hd.data ? hd.data : fs_xstrdup("");
    r.hlen = hd.len;
    return r;
}

static resp_t request(const char *method, const char *path, const char *auth, const char *body,
                      long body_len)
{
    return request_on(NULL, g_port, method, path, auth, body, body_len, 0);
}

static resp_t get(const char *path)
{
    return request("GET", path, NULL, NULL, -1);
}

static void resp_free(resp_t *r)
{
    free(r->body);
    free(r->headers);
}

/* Asserts a JSON error answer with this status and code. */
static void expect_error(const char *method, const char *path, const char *auth, long status,
                         const char *code)
{
    resp_t r = request(method, path, auth, NULL, strcmp(method, "POST") == 0 ? 0 : -1);
    if (r.status != status)
        fprintf(stderr, "%s %s -> %ld %s\n", method, path, r.status, r.body);
    ASSERT_EQ(r.rc, CURLE_OK);
    ASSERT_EQ(r.status, status);
    ASSERT_CONTAINS(r.headers, "Content-Type: application/json");
    cJSON *j = cJSON_Parse(r.body);
    ASSERT(j != NULL);
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(j, "error")));
    ASSERT_STREQ(cJSON_GetObjectItem(j, "code")->valuestring, code);
    cJSON_Delete(j);
    resp_free(&r);
}

static cJSON *get_json(const char *path)
{
    resp_t r = get(path);
    if (r.status != 200)
        fprintf(stderr, "GET %s -> %ld %s\n", path, r.status, r.body);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.headers, "Content-Type: application/json");
    cJSON *j = cJSON_Parse(r.body);
    ASSERT(j != NULL);
    resp_free(&r);
    return j;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    ASSERT(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    ASSERT(cJSON_IsString(v));
    return v->valuestring;
}

/* Sends raw bytes and returns what came back before the peer closed or 3 s passed. */
static size_t raw_exchange(const char *data, size_t n, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, data + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t k = recv(fd, out + got, cap - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    out[got] = '\0';
    close(fd);
    return got;
}

/* ---- hooks ----------------------------------------------------------------------------- */

static void on_scan(void *arg)
{
    ASSERT(arg == (void *)&g_scans);
    atomic_fetch_add(&g_scans, 1);
}

static int on_preflight(void *arg, const char *body, size_t len, const char *target,
                        char **json_out, int *status)
{
    (void)target;
    pthread_mutex_lock(&g_pf_mu);
    g_pf_blocked++;
    pthread_cond_broadcast(&g_pf_cv);
    while (g_pf_closed)
        pthread_cond_wait(&g_pf_cv, &g_pf_mu);
    g_pf_blocked--;
    pthread_mutex_unlock(&g_pf_mu);
    atomic_fetch_add(&g_preflights, 1);
    ASSERT_EQ(body[len], '\0');
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "{\"received\":%zu,\"starts\":\"%.5s\"}", len, body);
    *json_out = fs_xstrdup(tmp);
    *status = 200;
    return 0;
}

static int on_forecast(void *arg, const snap_t *s, int days, char **json_out, int *status)
{
    atomic_fetch_add(&g_forecasts, 1);
    if (atomic_load(&g_forecast_real)) {
        usleep(200000); /* a slow render: concurrent requests find it running */
        *json_out = forecast_json(s, days, s->generated_at);
        *status = 200;
        return 0;
    }
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "{\"days\":%d}", days);
    *json_out = fs_xstrdup(tmp);
    *status = 200;
    return 0;
}

static api_t *start(const char *token, int stale_after_s, int hooks)
{
    api_opts_t o = {
        .listen = "127.0.0.1:0", .token = token, .stale_after_s = stale_after_s, .arg = &g_scans};
    if (hooks) {
        o.on_scan = on_scan;
        o.on_post_preflight = on_preflight;
        o.on_forecast = on_forecast;
    }
    char err[256];
    api_t *a = NULL;
    int rc = api_start(&a, &o, err);
    if (rc != 0)
        fprintf(stderr, "api_start: %s\n", err);
    ASSERT_EQ(rc, 0);
    ASSERT(api_port(a) > 0);
    return a;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_status(void)
{
    cJSON *j = get_json("/api/v1/status");
    ASSERT_STREQ(str(j, "vantage"), "site \"A\"\\1");
    ASSERT_STREQ(str(j, "shard"), "2/4");
    ASSERT_STREQ(str(j, "generated_at"), "2025-11-24T16:01:00Z");
    const cJSON *e = cJSON_GetObjectItem(j, "endpoints");
    ASSERT_EQ(num(e, "total"), 9);
    ASSERT_EQ(num(e, "online"), 3);
    ASSERT_EQ(num(e, "offline"), 5);
    ASSERT_EQ(num(e, "pending"), 1);
    const cJSON *c = cJSON_GetObjectItem(j, "causes");
    ASSERT_EQ(cJSON_GetArraySize(c), 3); /* non-zero counts only */
    ASSERT_EQ(num(c, "dns_failure"), 1);
    ASSERT_EQ(num(c, "crl_unreachable"), 2);
    ASSERT_EQ(num(c, "untrusted_ca"), 2);
    const cJSON *w = cJSON_GetObjectItem(j, "warnings");
    ASSERT_EQ(cJSON_GetArraySize(w), 2);
    ASSERT_EQ(num(w, "cert_expiring_soon"), 2);
    ASSERT_EQ(num(w, "revocation_soft_fail"), 1);
    const cJSON *g = cJSON_GetObjectItem(j, "groups");
    ASSERT_EQ(cJSON_GetArraySize(g), 3);
    const cJSON *hq = cJSON_GetArrayItem(g, 0), *legacy = cJSON_GetArrayItem(g, 2);
    ASSERT_STREQ(str(hq, "name"), "hq");
    ASSERT_EQ(num(hq, "total"), 4);
    ASSERT_EQ(num(hq, "online"), 2);
    ASSERT_EQ(num(hq, "offline"), 1);
    ASSERT_EQ(num(hq, "pending"), 1);
    ASSERT_EQ(num(cJSON_GetObjectItem(hq, "causes"), "dns_failure"), 1);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(hq, "causes")), 1);
    ASSERT_STREQ(str(legacy, "name"), "legacy");
    ASSERT_EQ(num(cJSON_GetObjectItem(legacy, "causes"), "untrusted_ca"), 2);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(legacy, "warnings")), 0);
    const cJSON *scan = cJSON_GetObjectItem(j, "scan");
    ASSERT_EQ(num(scan, "probes_total"), 120);
    ASSERT_EQ(num(scan, "probes_in_flight"), 3);
    ASSERT_STREQ(str(scan, "started_at"), "2025-11-24T16:00:00Z");
    cJSON_Delete(j);

    /* HEAD answers the same status without a body. */
    resp_t r = request("HEAD", "/api/v1/status", NULL, NULL, -1);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.len, 0);
    resp_free(&r);
}

static int total_of(const char *path, int *nitems)
{
    cJSON *j = get_json(path);
    int t = (int)num(j, "total");
    *nitems = cJSON_GetArraySize(cJSON_GetObjectItem(j, "items"));
    cJSON_Delete(j);
    return t;
}

static void test_endpoints(void)
{
    int n;
    ASSERT_EQ(total_of("/api/v1/endpoints", &n), 9);
    ASSERT_EQ(n, 9);
    ASSERT_EQ(total_of("/api/v1/endpoints?state=offline", &n), 5);
    ASSERT_EQ(n, 5);
    ASSERT_EQ(total_of("/api/v1/endpoints?state=pending", &n), 1);
    ASSERT_EQ(total_of("/api/v1/endpoints?cause=crl_unreachable", &n), 2);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(total_of("/api/v1/endpoints?group=hq", &n), 4);
    ASSERT_EQ(total_of("/api/v1/endpoints?group=legacy", &n), 2);
    ASSERT_EQ(total_of("/api/v1/endpoints?group=branch-eu&state=online", &n), 1);
    ASSERT_EQ(total_of("/api/v1/endpoints?warning=cert_expiring_soon", &n), 2);
    ASSERT_EQ(total_of("/api/v1/endpoints?limit=0", &n), 9);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(total_of("/api/v1/endpoints?offset=100", &n), 9);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(total_of("/api/v1/endpoints?unknown=1&limit=1000", &n), 9); /* ignored */

    /* Paging: limit/offset walk the matches in order. */
    cJSON *j = get_json("/api/v1/endpoints?state=offline&limit=2&offset=1");
    ASSERT_EQ(num(j, "total"), 5);
    const cJSON *items = cJSON_GetObjectItem(j, "items");
    ASSERT_EQ(cJSON_GetArraySize(items), 2);
    ASSERT_STREQ(str(cJSON_GetArrayItem(items, 0), "id"), "branch-eu-00000");
    ASSERT_STREQ(str(cJSON_GetArrayItem(items, 1), "id"), "branch-eu-00001");
    cJSON_Delete(j);

    /* Item shape. */
    j = get_json("/api/v1/endpoints?group=hq");
    items = cJSON_GetObjectItem(j, "items");
    const cJSON *online = cJSON_GetArrayItem(items, 1), *off = cJSON_GetArrayItem(items, 2),
                *pend = cJSON_GetArrayItem(items, 3);
    ASSERT_STREQ(str(online, "id"), "hq-00001");
    ASSERT_STREQ(str(online, "group"), "hq");
    ASSERT_STREQ(str(online, "state"), "online");
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(online, "cause")));
    const cJSON *w = cJSON_GetObjectItem(online, "warnings");
    ASSERT_EQ(cJSON_GetArraySize(w), 1);
    ASSERT_STREQ(cJSON_GetArrayItem(w, 0)->valuestring, "cert_expiring_soon");
    ASSERT_STREQ(str(online, "since"), "2025-11-24T16:00:05Z");
    ASSERT_STREQ(str(online, "last_probe_at"), "2025-11-24T16:00:50Z");
    const cJSON *t = cJSON_GetObjectItem(online, "timings_ms");
    ASSERT_EQ(num(t, "dns"), 10);
    ASSERT_EQ(num(t, "connect"), 20);
    ASSERT_EQ(num(t, "tls"), 30);
    ASSERT_EQ(num(t, "revocation"), 40);
    ASSERT_EQ(num(t, "request"), 50);
    ASSERT_STREQ(str(off, "cause"), "dns_failure");
    ASSERT_STREQ(str(off, "message"), "cannot resolve \"ns\""); /* its cause's line */
    ASSERT_STREQ(str(pend, "state"), "pending");
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(pend, "since")));
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(pend, "last_probe_at")));
    cJSON_Delete(j);

    /* The group's agent.log line wins over the generic symptom. */
    j = get_json("/api/v1/endpoints?group=legacy&limit=1");
    ASSERT_STREQ(str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "items"), 0), "message"),
                 "Custom log line");
    cJSON_Delete(j);
    j = get_json("/api/v1/endpoints?cause=crl_unreachable&limit=1");
    ASSERT_STREQ(str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "items"), 0), "message"),
                 fs_cause_info(FS_CAUSE_CRL_UNREACHABLE)->symptom);
    cJSON_Delete(j);
}

static void test_endpoint_by_id(void)
{
    cJSON *j = get_json("/api/v1/endpoints/legacy-00001");
    ASSERT_STREQ(str(j, "id"), "legacy-00001");
    ASSERT_STREQ(str(j, "cause"), "untrusted_ca");
    const cJSON *d = cJSON_GetObjectItem(j, "detail");
    ASSERT(cJSON_IsObject(d));
    ASSERT_STREQ(str(d, "verdict"), "offline");
    cJSON_Delete(j);
    j = get_json("/api/v1/endpoints/hq-00000"); /* online: the group's online detail */
    ASSERT_STREQ(str(cJSON_GetObjectItem(j, "detail"), "verdict"), "online");
    cJSON_Delete(j);
    j = get_json("/api/v1/endpoints/hq-00002"); /* dns_failure: its own line, no other detail */
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "detail")));
    ASSERT_STREQ(str(j, "message"), "cannot resolve \"ns\"");
    cJSON_Delete(j);
    j = get_json("/api/v1/endpoints/branch-eu-00002"); /* no detail for its outcome -> null */
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(j, "detail")));
    cJSON_Delete(j);
    expect_error("GET", "/api/v1/endpoints/hq-99999", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/endpoints/nope-00001", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/endpoints/hq-1", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/endpoints/", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/endpoints/-00001", NULL, 404, "not_found");
}

static void test_bad_parameters(void)
{
    static const char *const bad[] = {
        "/api/v1/endpoints?limit=abc",
        "/api/v1/endpoints?limit=1001",
        "/api/v1/endpoints?limit=-1",
        "/api/v1/endpoints?limit=+5",
        "/api/v1/endpoints?limit=5x",
        "/api/v1/endpoints?limit=%205",
        "/api/v1/endpoints?limit=",
        "/api/v1/endpoints?offset=abc",
        "/api/v1/endpoints?offset=-3",
        "/api/v1/endpoints?offset=99999999999999999999999",
        "/api/v1/endpoints?state=down",
        "/api/v1/endpoints?cause=bogus",
        "/api/v1/endpoints?cause=none",
        "/api/v1/endpoints?warning=bogus",
        "/api/v1/endpoints?group=nope",
        "/api/v1/events?since=yesterday",
        "/api/v1/events?since=-1",
        "/api/v1/forecast?days=abc",
        "/api/v1/forecast",
        "/api/v1/endpoints?state=online%00",
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(bad); i++)
        expect_error("GET", bad[i], NULL, 400, "bad_parameter");
}

static void test_auth(void)
{
    int before = atomic_load(&g_scans);
    expect_error("POST", "/api/v1/scan", NULL, 401, "unauthorized");
    expect_error("POST", "/api/v1/scan", "Bearer wrong-token!", 401, "unauthorized");
    expect_error("POST", "/api/v1/scan", "Bearer s3cret", 401, "unauthorized");
    expect_error("POST", "/api/v1/scan", "Basic " TOKEN, 401, "unauthorized");
    expect_error("POST", "/api/v1/preflight", NULL, 401, "unauthorized");
    ASSERT_EQ(atomic_load(&g_scans), before);

    resp_t r = request("POST", "/api/v1/scan", NULL, NULL, 0);
    ASSERT_CONTAINS(r.headers, "WWW-Authenticate: Bearer");
    resp_free(&r);

    r = request("POST", "/api/v1/scan", "Bearer " TOKEN, NULL, 0);
    ASSERT_EQ(r.status, 202);
    cJSON *j = cJSON_Parse(r.body);
    ASSERT_STREQ(str(j, "status"), "scan scheduled");
    cJSON_Delete(j);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&g_scans), before + 1);
    r = request("POST", "/api/v1/scan", "bearer " TOKEN, "ignored", 7);
    ASSERT_EQ(r.status, 202);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&g_scans), before + 2);
}

static void test_no_token(void)
{
    api_t *a = start(NULL, 0, 1);
    int saved = g_port;
    g_port = api_port(a);
    expect_error("POST", "/api/v1/scan", "Bearer " TOKEN, 403, "forbidden");
    expect_error("POST", "/api/v1/preflight", NULL, 403, "forbidden");
    /* Snapshot routes answer 503 until the first publish. */
    expect_error("GET", "/api/v1/status", NULL, 503, "not_ready");
    expect_error("GET", "/metrics", NULL, 503, "not_ready");
    cJSON *j = get_json("/api/v1/causes"); /* needs no snapshot */
    cJSON_Delete(j);
    g_port = saved;
    api_stop(a);

    /* An empty token is no token. */
    a = start("", 0, 1);
    g_port = api_port(a);
    expect_error("POST", "/api/v1/scan", "Bearer ", 403, "forbidden");
    g_port = saved;
    api_stop(a);
}

static void test_methods_and_routes(void)
{
    resp_t r = request("POST", "/api/v1/status", NULL, NULL, 0);
    ASSERT_EQ(r.status, 405);
    ASSERT_CONTAINS(r.headers, "Allow: GET, HEAD");
    resp_free(&r);
    r = request("GET", "/api/v1/scan", NULL, NULL, -1);
    ASSERT_EQ(r.status, 405);
    ASSERT_CONTAINS(r.headers, "Allow: POST");
    resp_free(&r);
    expect_error("POST", "/api/v1/status", NULL, 405, "method_not_allowed");
    expect_error("GET", "/api/v1/scan", NULL, 405, "method_not_allowed");
    expect_error("DELETE", "/api/v1/status", NULL, 405, "method_not_allowed");
    expect_error("FROB", "/metrics", NULL, 405, "method_not_allowed");
    expect_error("PUT", "/api/v1/preflight", TOKEN, 405, "method_not_allowed");
    expect_error("GET", "/nope", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/statusx", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/status/", NULL, 404, "not_found");
    expect_error("POST", "/nope", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/status%00", NULL, 404, "not_found");
    expect_error("GET", "/api/v1/status%00.json", NULL, 404, "not_found");

    /* Percent-encoding is decoded before routing. */
    cJSON *j = get_json("/api/v1/%73tatus");
    cJSON_Delete(j);

    r = get("/");
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.headers, "Content-Type: text/html");
    ASSERT_CONTAINS(r.body, "<title>fleetscan</title>");
    resp_free(&r);
}

static void test_bodies(void)
{
    int before = atomic_load(&g_preflights);
    const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    resp_t r = request("POST", "/api/v1/preflight", "Bearer " TOKEN, pem, sizeof(pem) - 1);
    ASSERT_EQ(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    ASSERT_EQ(num(j, "received"), sizeof(pem) - 1);
    ASSERT_STREQ(str(j, "starts"), "-----");
    cJSON_Delete(j);
    resp_free(&r);
    ASSERT_EQ(atomic_load(&g_preflights), before + 1);

    expect_error("POST", "/api/v1/preflight", "Bearer " TOKEN, 400, "bad_parameter"); /* empty */

    /* Exactly the cap is accepted. */
    char *big = fs_xmalloc(2 * API_BODY_MAX);
    memset(big, 'A', 2 * API_BODY_MAX);
    r = request("POST", "/api/v1/preflight", "Bearer " TOKEN, big, API_BODY_MAX);
    ASSERT_EQ(r.status, 200);
    j = cJSON_Parse(r.body);
    ASSERT_EQ(num(j, "received"), API_BODY_MAX);
    cJSON_Delete(j);
    resp_free(&r);

    /* Past the cap: 413 from Content-Length, before the body is read. */
    r = request("POST", "/api/v1/preflight", "Bearer " TOKEN, big, 2 * API_BODY_MAX);
    ASSERT_EQ(r.status, 413);
    j = cJSON_Parse(r.body);
    ASSERT_STREQ(str(j, "code"), "body_too_large");
    cJSON_Delete(j);
    resp_free(&r);
    free(big);

    /* Past the cap without a length (chunked): read, discarded, 413. */
    r = request_on(NULL, g_port, "POST", "/api/v1/preflight", "Bearer " TOKEN, NULL, -1,
                   API_BODY_MAX + 4096);
    ASSERT_EQ(r.status, 413);
    ASSERT_CONTAINS(r.body, "body_too_large");
    resp_free(&r);
    ASSERT_EQ(atomic_load(&g_preflights), before + 2);

    /* A chunked body within the cap reaches the hook whole. */
    r = request_on(NULL, g_port, "POST", "/api/v1/preflight", "Bearer " TOKEN, NULL, -1, 300000);
    ASSERT_EQ(r.status, 200);
    j = cJSON_Parse(r.body);
    ASSERT_EQ(num(j, "received"), 300000);
    cJSON_Delete(j);
    resp_free(&r);
}

static void test_hooks_absent(void)
{
    api_t *a = start(TOKEN, 0, 0);
    int saved = g_port;
    g_port = api_port(a);
    expect_error("POST", "/api/v1/scan", "Bearer " TOKEN, 501, "not_implemented");
    expect_error("GET", "/api/v1/forecast?days=30", NULL, 501, "not_implemented");
    g_port = saved;
    api_stop(a);
    cJSON *j = get_json("/api/v1/forecast?days=30");
    ASSERT_EQ(num(j, "days"), 30);
    cJSON_Delete(j);
}

/* The server must survive hostile input and keep answering everyone else. */
static void test_garbage(void)
{
    static char out[65536];
    size_t n;

    /* A URL past the per-connection memory: refused (libmicrohttpd's own 414), never a crash. */
    size_t ulen = 200000;
    char *path = fs_xmalloc(ulen + 1);
    memcpy(path, "/api/v1/endpoints?group=", 24);
    memset(path + 24, 'a', ulen - 24);
    path[ulen] = '\0';
    resp_t r = get(path);
    ASSERT(r.status == 414 || r.status == 431 || r.status == 400 || r.rc != CURLE_OK);
    resp_free(&r);
    /* One that still fits is answered by us, in JSON. */
    path[20000] = '\0';
    expect_error("GET", path, NULL, 414, "uri_too_long");
    path[4000] = '\0';
    expect_error("GET", path, NULL, 400, "bad_parameter");
    free(path);

    static const char *const junk[] = {
        "\x01\x02\x03 garbage\r\n\r\n",
        "GET\r\n\r\n",
        "GET /api/v1/status HTTP/9.9\r\n\r\n",
        "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST /api/v1/scan HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET /%%%%%%%% HTTP/1.1\r\nHost: x\r\n\r\n",
        "G\x00T / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(junk); i++) {
        size_t len = i == FS_ARRAY_SIZE(junk) - 1 ? 18 : strlen(junk[i]);
        n = raw_exchange(junk[i], len, out, sizeof(out));
        (void)n;
    }
    /* A junk method on a real route is a JSON 405. */
    n = raw_exchange("XYZZY /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 61,
                     out, sizeof(out));
    ASSERT_CONTAINS(out, "HTTP/1.1 405");
    ASSERT_CONTAINS(out, "\"code\":\"method_not_allowed\"");
    n = raw_exchange("GET /api/v1/endpoints?limit=1%00 HTTP/1.0\r\n\r\n", 46, out, sizeof(out));
    ASSERT_CONTAINS(out, " 400 ");

    /* Still serving. */
    cJSON *j = get_json("/api/v1/status");
    cJSON_Delete(j);
}

static void test_events_targets_causes(void)
{
    cJSON *j = get_json("/api/v1/events");
    const cJSON *ev = cJSON_GetObjectItem(j, "events");
    ASSERT_EQ(cJSON_GetArraySize(ev), 4);
    ASSERT_EQ(num(j, "last_seq"), 4);
    const cJSON *e0 = cJSON_GetArrayItem(ev, 0), *e1 = cJSON_GetArrayItem(ev, 1);
    ASSERT_EQ(num(e0, "seq"), 1);
    ASSERT_STREQ(str(e0, "at"), "2025-11-24T16:00:00Z");
    ASSERT_STREQ(str(e0, "kind"), "endpoint");
    ASSERT_STREQ(str(e0, "subject"), "hq-00002");
    ASSERT_STREQ(str(e0, "old_state"), "online");
    ASSERT_STREQ(str(e0, "new_state"), "offline");
    ASSERT_STREQ(str(e0, "cause"), "dns_failure");
    ASSERT_STREQ(str(e1, "kind"), "group");
    ASSERT_EQ(strlen(str(cJSON_GetArrayItem(ev, 3), "subject")), 96);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(ev, 3), "cause")));
    cJSON_Delete(j);

    j = get_json("/api/v1/events?since=2");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "events")), 2);
    ASSERT_EQ(num(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "events"), 0), "seq"), 3);
    cJSON_Delete(j);
    j = get_json("/api/v1/events?since=2025-11-24T16:00:10Z");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "events")), 3);
    cJSON_Delete(j);
    j = get_json("/api/v1/events?since=99");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "events")), 0);
    ASSERT_EQ(num(j, "last_seq"), 99);
    cJSON_Delete(j);

    j = get_json("/api/v1/targets");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "targets")), 1);
    const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "targets"), 0);
    ASSERT_STREQ(str(t, "name"), "reference");
    ASSERT_STREQ(str(t, "url"), "https://ns.corp.example/");
    ASSERT_STREQ(str(t, "state"), "online");
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(t, "cause")));
    ASSERT_STREQ(str(t, "profile"), "default");
    ASSERT_STREQ(str(t, "trust"), "corp");
    ASSERT_STREQ(str(t, "checked_at"), "2025-11-24T16:00:30Z");
    ASSERT_EQ(num(cJSON_GetObjectItem(t, "timings_ms"), "tls"), 12);
    ASSERT_EQ(num(cJSON_GetObjectItem(t, "timings_ms"), "total"), 42);
    ASSERT_STREQ(str(cJSON_GetObjectItem(t, "tls"), "version"), "TLSv1.3");
    ASSERT_EQ(num(t, "http_status"), 200);
    const cJSON *leaf = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "chain"), 0);
    ASSERT_STREQ(str(leaf, "subject"), REF_SUBJECT);
    ASSERT_STREQ(str(leaf, "not_after"), "2026-01-01T00:00:00Z");
    ASSERT_EQ(num(leaf, "days_left"), (1767225600 - (T0 + 30)) / 86400);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(t, "retrievals")), 2);
    /* "crls": the live CDP lines (OCSP and AIA are no CRLs); a skipped one is not unreachable */
    const cJSON *crls = cJSON_GetObjectItem(t, "crls");
    ASSERT_EQ(cJSON_GetArraySize(crls), 2);
    ASSERT_STREQ(str(cJSON_GetArrayItem(crls, 0), "url"), "http://crl.corp.example/root.crl");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetArrayItem(crls, 0), "reachable")));
    ASSERT_STREQ(str(cJSON_GetArrayItem(crls, 0), "last_error"), "connection refused");
    ASSERT_STREQ(str(cJSON_GetArrayItem(crls, 1), "url"), LDAP_CDP);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(crls, 1), "skipped")));
    /* "revocation": every URL with its live health and who depends on it */
    const cJSON *rv = cJSON_GetObjectItem(t, "revocation");
    ASSERT_EQ(cJSON_GetArraySize(rv), 3);
    const cJSON *u = cJSON_GetArrayItem(rv, 0);
    ASSERT_STREQ(str(u, "kind"), "crl");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(u, "reachable")));
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(u, "signature_valid")));
    ASSERT_STREQ(str(u, "last_success"), "2025-11-24T15:50:00Z");
    ASSERT_EQ(num(u, "strict_endpoints_at_risk"), 3);
    ASSERT_STREQ(str(u, "strict_offline_at"), "2025-11-24T17:00:00Z");
    const cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(u, "groups"), 0);
    ASSERT_STREQ(str(g, "name"), "hq");
    ASSERT_STREQ(str(g, "mode"), "strict");
    ASSERT_EQ(num(g, "endpoints"), 3);
    ASSERT_STREQ(str(g, "cached_until"), "2025-11-24T17:00:00Z");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(g, "at_risk")));
    ASSERT_STREQ(str(g, "offline_at"), "2025-11-24T17:00:00Z");
    g = cJSON_GetArrayItem(cJSON_GetObjectItem(u, "groups"), 1);
    ASSERT_STREQ(str(g, "name"), "branch-eu \"EU\"");
    ASSERT_STREQ(str(g, "mode"), "soft_fail");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(g, "at_risk")));
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(g, "offline_at")));
    u = cJSON_GetArrayItem(rv, 1);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(u, "skipped")));
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(u, "groups")), 0);
    u = cJSON_GetArrayItem(rv, 2);
    ASSERT_STREQ(str(u, "kind"), "ocsp");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(u, "reachable")));
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(u, "signature_valid")));
    ASSERT_STREQ(str(u, "ocsp_status"), "good");
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(u, "last_error")));
    cJSON_Delete(j);

    j = get_json("/api/v1/causes");
    const cJSON *causes = cJSON_GetObjectItem(j, "causes");
    const cJSON *warnings = cJSON_GetObjectItem(j, "warnings");
    ASSERT_EQ(cJSON_GetArraySize(causes), FS_CAUSE_COUNT - 1);
    ASSERT_EQ(cJSON_GetArraySize(warnings), FS_WARN_COUNT);
    const cJSON *c;
    cJSON_ArrayForEach(c, causes)
    {
        ASSERT(fs_cause_from_id(str(c, "id")) > 0);
        ASSERT(strlen(str(c, "phase")) > 0);
        ASSERT(strlen(str(c, "symptom")) > 0);
        ASSERT(strlen(str(c, "description")) > 0);
        ASSERT(strlen(str(c, "remediation")) > 0);
    }
    cJSON_ArrayForEach(c, warnings) ASSERT(fs_warning_from_id(str(c, "id")) >= 0);
    ASSERT_STREQ(str(cJSON_GetArrayItem(causes, 0), "id"), "dns_failure");
    cJSON_Delete(j);
}

static int promtool_present(void)
{
    return system("command -v promtool >/dev/null 2>&1") == 0;
}

static void test_metrics(void)
{
    resp_t r = get("/metrics");
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.headers, "Content-Type: text/plain; version=0.0.4");
    const char *lbl = "vantage=\"site \\\"A\\\"\\\\1\",shard=\"2/4\"";
    char want[512];
    snprintf(want, sizeof(want), "fleetscan_endpoints{%s,state=\"pending\"} 1\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want), "fleetscan_endpoints{%s,state=\"offline\"} 5\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    for (int c = 1; c < FS_CAUSE_COUNT; c++) { /* zeros included */
        snprintf(want, sizeof(want), "fleetscan_endpoints_offline{%s,cause=\"%s\"} ", lbl,
                 fs_cause_id((fs_cause_t)c));
        ASSERT_CONTAINS(r.body, want);
    }
    snprintf(want, sizeof(want), "fleetscan_endpoints_offline{%s,cause=\"untrusted_ca\"} 2\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_endpoints_warning{%s,warning=\"cert_expiring_soon\"} 2\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_group_endpoints{%s,group=\"branch-eu\",state=\"offline\"} 2\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want), "fleetscan_probes_total{%s,result=\"offline\"} 50\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want), "fleetscan_probes_in_flight{%s} 3\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_probe_duration_seconds_bucket{%s,phase=\"tls\",le=\"0.005\"} 1\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_probe_duration_seconds_bucket{%s,phase=\"tls\",le=\"+Inf\"} 20\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want), "fleetscan_probe_duration_seconds_sum{%s,phase=\"tls\"} 4.5\n",
             lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want), "fleetscan_probe_duration_seconds_count{%s,phase=\"dns\"} 20\n",
             lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want), "fleetscan_last_update_timestamp_seconds{%s} %d\n", lbl, T0 + 60);
    ASSERT_CONTAINS(r.body, want);
    /* The reference target's gauges, the subject's backslash, quotes and newline escaped. */
    snprintf(want, sizeof(want),
             "fleetscan_cert_not_after_seconds{%s,target=\"reference\",depth=\"0\","
             "subject=\"CN=ns.corp.example,O=Corp \\\"West\\\"\\\\Ops\\nTeam\","
             "sha1=\"AA11AA11AA11AA11AA11AA11AA11AA11AA11AA11\"} 1767225600\n",
             lbl);
    ASSERT_CONTAINS(r.body, want);
    /* The live revocation gauges: reachability per URL and kind, a skipped URL apart (never a
     * 0), the strict endpoints at risk and when, each group's cache expiry. */
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{%s,url=\"http://crl.corp.example/root.crl\",kind=\"crl\"} "
             "0\n",
             lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_crl_reachable{%s,url=\"http://ocsp.corp.example/\",kind=\"ocsp\"} 1\n",
             lbl);
    ASSERT_CONTAINS(r.body, want);
    ASSERT(strstr(r.body, "issuing.der") == NULL); /* AIA: no revocation gauge */
    snprintf(want, sizeof(want), "fleetscan_crl_reachable{%s,url=\"%s", lbl, LDAP_CDP);
    ASSERT(strstr(r.body, want) == NULL);
    snprintf(want, sizeof(want), "fleetscan_revocation_url_skipped{%s,url=\"%s\",kind=\"crl\"} 1\n",
             lbl, LDAP_CDP);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want), "fleetscan_strict_endpoints_revocation_at_risk{%s,url=\"%s", lbl,
             LDAP_CDP);
    ASSERT(strstr(r.body, want) == NULL);
    snprintf(want, sizeof(want),
             "fleetscan_strict_endpoints_revocation_at_risk{%s,url=\"http://crl.corp.example/"
             "root.crl\",kind=\"crl\"} 3\n",
             lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_strict_endpoints_revocation_at_risk{%s,url=\"http://ocsp.corp.example/\","
             "kind=\"ocsp\"} 0\n",
             lbl);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_strict_endpoints_offline_at_seconds{%s,url=\"http://crl.corp.example/"
             "root.crl\",kind=\"crl\"} %d\n",
             lbl, T0 + 3600);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_revocation_cache_expiry_seconds{%s,url=\"http://crl.corp.example/"
             "root.crl\",kind=\"crl\",group=\"branch-eu \\\"EU\\\"\"} %d\n",
             lbl, T0 + 7200);
    ASSERT_CONTAINS(r.body, want);
    snprintf(want, sizeof(want),
             "fleetscan_crl_next_update_seconds{%s,url=\"http://crl.corp.example/root.crl\"}", lbl);
    ASSERT(strstr(r.body, want) == NULL);                                 /* unknown: no sample */
    ASSERT(strstr(r.body, "fleetscan_crl_next_update_seconds{") == NULL); /* OCSP: not a CRL */
    ASSERT_CONTAINS(r.body, "# TYPE fleetscan_crl_next_update_seconds gauge\n");
    snprintf(want, sizeof(want), "fleetscan_reference_up{%s} 1\n", lbl);
    ASSERT_CONTAINS(r.body, want);
    ASSERT_CONTAINS(r.body, "# TYPE fleetscan_probe_duration_seconds histogram\n");
    ASSERT_CONTAINS(r.body, "# TYPE fleetscan_probes_total counter\n");

    /* Every sample line carries both common labels; every family has HELP and TYPE. */
    int samples = 0;
    for (char *line = r.body; *line;) {
        char *eol = strchr(line, '\n');
        ASSERT(eol != NULL); /* the exposition ends with a newline */
        *eol = '\0';
        if (line[0] != '#') {
            ASSERT_CONTAINS(line, lbl);
            samples++;
        }
        *eol = '\n';
        line = eol + 1;
    }
    ASSERT(samples > 100);

    if (!promtool_present()) {
        fprintf(stderr, "   promtool not installed: skipping `promtool check metrics`\n");
    } else {
        FILE *p = popen("promtool check metrics", "w");
        ASSERT(p != NULL);
        ASSERT_EQ(fwrite(r.body, 1, r.len, p), r.len);
        int st = pclose(p);
        ASSERT_EQ(st, 0);
    }
    resp_free(&r);
}

static void test_republish(api_t *a)
{
    cJSON *j = get_json("/api/v1/status");
    ASSERT_EQ(num(cJSON_GetObjectItem(j, "endpoints"), "pending"), 1);
    cJSON_Delete(j);
    api_publish(a, build_snap(1));
    resp_t r = get("/api/v1/targets"); /* before the first reference probe */
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "{\"targets\":[]}");
    resp_free(&r);
    r = get("/metrics");
    ASSERT(strstr(r.body, "fleetscan_reference_up") == NULL);
    resp_free(&r);
    j = get_json("/api/v1/status");
    ASSERT_EQ(num(cJSON_GetObjectItem(j, "endpoints"), "pending"), 0);
    ASSERT_EQ(num(cJSON_GetObjectItem(j, "endpoints"), "online"), 4);
    cJSON_Delete(j);
    j = get_json("/api/v1/endpoints/hq-00003");
    ASSERT_STREQ(str(j, "state"), "online");
    cJSON_Delete(j);
    api_publish(a, build_snap(0));
}

static void test_healthz_stale(void)
{
    cJSON *j = get_json("/healthz");
    ASSERT_STREQ(str(j, "status"), "ok");
    cJSON_Delete(j);

    api_t *a = start(TOKEN, 1, 1);
    int saved = g_port;
    g_port = api_port(a);
    api_publish(a, build_snap(0));
    j = get_json("/healthz");
    ASSERT_STREQ(str(j, "status"), "ok");
    cJSON_Delete(j);
    sleep(2); /* behaviour, not a timing verdict: nothing is published for 2 s > 1 s */
    expect_error("GET", "/healthz", NULL, 503, "stale");
    api_publish(a, build_snap(0));
    j = get_json("/healthz");
    ASSERT_STREQ(str(j, "status"), "ok");
    cJSON_Delete(j);
    g_port = saved;
    api_stop(a);
}

/* The loop's heartbeat, as the daemon's timer stores it: a loop that stops ticking makes
 * /healthz 503 "stalled" however fresh the last snapshot is. */
static void test_healthz_stalled(void)
{
    _Atomic int64_t beat;
    atomic_init(&beat, (int64_t)(uv_hrtime() / 1000000));
    api_opts_t o = {.listen = "127.0.0.1:0", .heartbeat_ms = &beat, .stall_after_ms = 5000};
    char err[256];
    api_t *a = NULL;
    ASSERT_EQ(api_start(&a, &o, err), 0);
    int saved = g_port;
    g_port = api_port(a);
    api_publish(a, build_snap(0));
    cJSON *j = get_json("/healthz");
    ASSERT_STREQ(str(j, "status"), "ok");
    cJSON_Delete(j);

    atomic_store(&beat, (int64_t)(uv_hrtime() / 1000000) - 12000); /* last tick 12 s ago */
    api_publish(a, build_snap(0));                                 /* the snapshot is fresh */
    resp_t r = get("/healthz");
    ASSERT_EQ(r.status, 503);
    ASSERT_CONTAINS(r.headers, "Content-Type: application/json");
    j = cJSON_Parse(r.body);
    ASSERT(j != NULL);
    ASSERT_STREQ(str(j, "status"), "stalled");
    ASSERT_STREQ(str(j, "code"), "stalled");
    ASSERT(num(j, "last_tick_ms_ago") >= 12000);
    cJSON_Delete(j);
    resp_free(&r);

    atomic_store(&beat, (int64_t)(uv_hrtime() / 1000000)); /* ticking again */
    j = get_json("/healthz");
    ASSERT_STREQ(str(j, "status"), "ok");
    cJSON_Delete(j);
    g_port = saved;
    api_stop(a);
}

/* Thousands of query parameters or a 64 KiB target: a prompt JSON 414, never a connection held
 * until the idle timeout and closed without an answer. */
static void test_uri_limits(void)
{
    static const int counts[] = {API_QUERY_ARGS_MAX + 1, 1000, 2000, 5000};
    size_t cap = 70 * 1024;
    char *path = fs_xmalloc(cap);
    long saved = atomic_exchange(&g_timeout_s, 5);
    for (size_t i = 0; i < FS_ARRAY_SIZE(counts); i++) {
        size_t n = (size_t)snprintf(path, cap, "/api/v1/endpoints?limit=1");
        for (int k = 1; k < counts[i] && n + 16 < cap; k++)
            n += (size_t)snprintf(path + n, cap - n, "&a%d=1", k);
        expect_error("GET", path, NULL, 414, "uri_too_long");
        expect_error("POST", path, "Bearer " TOKEN, 414, "uri_too_long");
    }
    /* A 64 KiB target, with and without a query. */
    memcpy(path, "/api/v1/endpoints?group=", 24);
    memset(path + 24, 'a', 64 * 1024 - 24);
    path[64 * 1024] = '\0';
    expect_error("GET", path, NULL, 414, "uri_too_long");
    memset(path, 'b', 64 * 1024);
    path[0] = '/';
    expect_error("GET", path, NULL, 414, "uri_too_long");
    /* At the limits: answered as usual. */
    size_t n = (size_t)snprintf(path, cap, "/api/v1/endpoints?limit=1");
    for (int k = 1; k < API_QUERY_ARGS_MAX; k++)
        n += (size_t)snprintf(path + n, cap - n, "&a%d=1", k);
    cJSON *j = get_json(path);
    ASSERT_EQ(num(j, "total"), NSPECS);
    cJSON_Delete(j);
    n = (size_t)snprintf(path, cap, "/api/v1/endpoints?group=");
    memset(path + n, 'a', API_URI_MAX - n);
    path[API_URI_MAX] = '\0';
    expect_error("GET", path, NULL, 400, "bad_parameter");
    atomic_store(&g_timeout_s, saved);
    free(path);
    j = get_json("/api/v1/status"); /* still serving */
    cJSON_Delete(j);
}

typedef struct pf_call_s {
    pthread_t t;
    resp_t r;
} pf_call_t;

static const char pf_pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

static void *post_preflight(void *arg)
{
    pf_call_t *c = arg;
    c->r = request("POST", "/api/v1/preflight", "Bearer " TOKEN, pf_pem, sizeof(pf_pem) - 1);
    return NULL;
}

static int count_status(pf_call_t *calls, int n, long status)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += calls[i].r.status == status;
    return k;
}

/* Pre-flights that never finish (a CDP that never answers) hold none of the threads that serve
 * connections: /healthz and /api/v1/status answer meanwhile; past the running and waiting
 * limits a pre-flight is refused 429 at once; the admitted ones complete once unblocked. */
static void test_preflight_off_connection_threads(void)
{
    enum { ADMITTED = API_PREFLIGHT_RUNNING + API_PREFLIGHT_WAITING, N = ADMITTED + 3 };
    pf_call_t calls[N];
    memset(calls, 0, sizeof(calls));
    int before = atomic_load(&g_preflights);
    pthread_mutex_lock(&g_pf_mu);
    g_pf_closed = 1;
    pthread_mutex_unlock(&g_pf_mu);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(pthread_create(&calls[i].t, NULL, post_preflight, &calls[i]), 0);

    /* The running ones reach the hook and block there; the others are refused or wait. */
    pthread_mutex_lock(&g_pf_mu);
    while (g_pf_blocked < API_PREFLIGHT_RUNNING)
        pthread_cond_wait(&g_pf_cv, &g_pf_mu);
    pthread_mutex_unlock(&g_pf_mu);
    long saved = atomic_exchange(&g_timeout_s, 2); /* hang detector: all 4 threads busy before */
    for (int i = 0; i < 8; i++) {
        cJSON *j = get_json(i % 2 ? "/healthz" : "/api/v1/status");
        cJSON_Delete(j);
    }
    atomic_store(&g_timeout_s, saved);
    pthread_mutex_lock(&g_pf_mu);
    ASSERT_EQ(g_pf_blocked, API_PREFLIGHT_RUNNING);
    g_pf_closed = 0;
    pthread_cond_broadcast(&g_pf_cv);
    pthread_mutex_unlock(&g_pf_mu);
    for (int i = 0; i < N; i++)
        pthread_join(calls[i].t, NULL);

    /* Nothing finished while the hook was blocked, so exactly the limit was admitted. */
    ASSERT_EQ(count_status(calls, N, 200), ADMITTED);
    ASSERT_EQ(count_status(calls, N, 429), N - ADMITTED);
    ASSERT_EQ(atomic_load(&g_preflights), before + ADMITTED);
    for (int i = 0; i < N; i++) {
        cJSON *j = cJSON_Parse(calls[i].r.body);
        ASSERT(j != NULL);
        if (calls[i].r.status == 429) {
            ASSERT_STREQ(str(j, "code"), "too_many_requests");
            ASSERT_CONTAINS(calls[i].r.headers, "Retry-After: ");
        } else {
            ASSERT_EQ(num(j, "received"), sizeof(pf_pem) - 1);
        }
        cJSON_Delete(j);
        resp_free(&calls[i].r);
    }
}

/* A snapshot of n groups, each with online endpoints whose chain expires at a different day. */
static snap_t *build_big_snap(size_t n)
{
    snap_t *s = snap_new();
    s->generated_at = T0;
    s->started_at = T0;
    s->vantage = fs_xstrdup("big");
    s->shard = fs_xstrdup("0/1");
    s->ngroups = n;
    s->groups = fs_xcalloc(n, sizeof(*s->groups));
    for (size_t g = 0; g < n; g++) {
        char name[32];
        snprintf(name, sizeof(name), "group-%05zu", g);
        s->groups[g].name = fs_xstrdup(name);
        s->groups[g].counts.total = s->groups[g].counts.online = 20;
        s->groups[g].chain_not_after = T0 + (int64_t)(g % 60) * 86400;
        s->totals.total += 20;
        s->totals.online += 20;
    }
    return s;
}

typedef struct fc_call_s {
    pthread_t t;
    resp_t r;
} fc_call_t;

static void *get_forecast(void *arg)
{
    fc_call_t *c = arg;
    c->r = get("/api/v1/forecast?days=30");
    return NULL;
}

/* Eight clients asking for the same forecast of 5,000 groups cost one render: the API keeps it
 * for that snapshot and days. A new snapshot or another days value renders again. */
static void test_forecast_rendered_once(void)
{
    api_t *a = start(TOKEN, 0, 1);
    int saved = g_port;
    g_port = api_port(a);
    api_publish(a, build_big_snap(5000));
    atomic_store(&g_forecast_real, 1);
    int before = atomic_load(&g_forecasts);
    fc_call_t calls[8];
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(pthread_create(&calls[i].t, NULL, get_forecast, &calls[i]), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(calls[i].t, NULL);
    ASSERT_EQ(atomic_load(&g_forecasts), before + 1);
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(calls[i].r.status, 200);
        ASSERT_EQ(calls[i].r.len, calls[0].r.len);
        ASSERT(memcmp(calls[i].r.body, calls[0].r.body, calls[0].r.len) == 0);
    }
    cJSON *j = cJSON_Parse(calls[0].r.body);
    ASSERT(j != NULL);
    ASSERT_EQ(num(j, "days"), 30);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "groups")), 5000);
    /* Groups whose chain expires within 30 days (g % 60 <= 30) are offline by then. */
    ASSERT_EQ(num(cJSON_GetObjectItem(j, "endpoints"), "offline"), 20 * (5000 / 60 * 31 + 20));
    ASSERT_EQ(num(cJSON_GetObjectItem(j, "causes"), "cert_expired"), 20 * (5000 / 60 * 31 + 20));
    cJSON_Delete(j);
    for (int i = 0; i < 8; i++)
        resp_free(&calls[i].r);

    j = get_json("/api/v1/forecast?days=31");
    ASSERT_EQ(atomic_load(&g_forecasts), before + 2);
    cJSON_Delete(j);
    j = get_json("/api/v1/forecast?days=30");
    ASSERT_EQ(atomic_load(&g_forecasts), before + 2); /* still kept */
    cJSON_Delete(j);
    api_publish(a, build_big_snap(5000));
    j = get_json("/api/v1/forecast?days=30");
    ASSERT_EQ(atomic_load(&g_forecasts), before + 3); /* a new snapshot, a new render */
    cJSON_Delete(j);
    atomic_store(&g_forecast_real, 0);
    g_port = saved;
    api_stop(a);
}

static void test_listen_errors(void)
{
    static const char *const bad[] = {
        "nonsense", "127.0.0.1:99999", "::1:80", "127.0.0.1:", "[::1]80", ":80", "127.0.0.1:8x"};
    for (size_t i = 0; i < FS_ARRAY_SIZE(bad); i++) {
        api_opts_t o = {.listen = bad[i]};
        char err[256];
        api_t *a = (api_t *)&o;
        ASSERT(api_start(&a, &o, err) < 0);
        ASSERT(a == NULL);
        ASSERT_CONTAINS(err, "listen");
    }
    /* Port in use. */
    char addr[64], err[256];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", g_port);
    api_opts_t o = {.listen = addr};
    api_t *a;
    ASSERT(api_start(&a, &o, err) < 0);
    ASSERT_CONTAINS(err, "in use");

    /* IPv6 loopback, where the host has it. */
    o.listen = "[::1]:0";
    if (api_start(&a, &o, err) == 0) {
        ASSERT(api_port(a) > 0);
        api_stop(a);
    } else {
        fprintf(stderr, "   no IPv6 loopback here (%s): skipped\n", err);
    }
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    ASSERT(d != NULL);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* An idle client is dropped after idle_timeout_s, so it cannot hold a slot forever. */
static void test_idle_client_dropped(void)
{
    api_opts_t o = {.listen = "127.0.0.1:0", .idle_timeout_s = 1};
    char err[256], c;
    api_t *a;
    ASSERT_EQ(api_start(&a, &o, err), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)api_port(a))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ASSERT_EQ(recv(fd, &c, 1, 0), 0); /* closed by the server, not our timeout */
    close(fd);
    api_stop(a);
}

/* api_stop returns while clients hold idle keep-alive connections (and one that never sent a
 * byte); the alarm turns a hang into a failure. */
static void test_stop_with_idle_connections(void)
{
    int fds_before = count_fds();
    api_t *a = start(TOKEN, 0, 1);
    int port = api_port(a);
    api_publish(a, build_snap(0));
    CURL *h[3];
    for (int i = 0; i < 3; i++) {
        h[i] = curl_easy_init();
        for (int k = 0; k < 2; k++) { /* the second request reuses the kept-alive connection */
            resp_t r = request_on(h[i], port, "GET", "/api/v1/status", NULL, NULL, -1, 0);
            ASSERT_EQ(r.status, 200);
            ASSERT_EQ(r.connects, k == 0 ? 1 : 0);
            resp_free(&r);
        }
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ(send(fd, "GET /api/v1/sta", 15, 0), 15); /* a half-sent request, too */
    usleep(100000);
    alarm(10);
    api_stop(a);
    alarm(0);
    close(fd);
    for (int i = 0; i < 3; i++)
        curl_easy_cleanup(h[i]);
    ASSERT_EQ(count_fds(), fds_before); /* the listen socket and every connection are closed */
}

/* Many clients at once on the thread pool, each on a keep-alive connection. */
static void *hammer(void *arg)
{
    CURL *h = curl_easy_init();
    for (int i = 0; i < 50; i++) {
        resp_t r =
            request_on(h, g_port, "GET", i % 2 ? "/metrics" : "/api/v1/status", NULL, NULL, -1, 0);
        ASSERT_EQ(r.status, 200);
        resp_free(&r);
    }
    curl_easy_cleanup(h);
    return arg;
}

static void test_concurrent_with_republish(api_t *a)
{
    pthread_t t[6];
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 200; i++) {
        api_publish(a, build_snap(i % 2));
        usleep(1000);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    api_publish(a, build_snap(0));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(150);
    ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), 0);

    api_t *a = start(TOKEN, 0, 1);
    g_port = api_port(a);
    api_publish(a, build_snap(0));

    RUN(test_status);
    RUN(test_endpoints);
    RUN(test_endpoint_by_id);
    RUN(test_bad_parameters);
    RUN(test_auth);
    RUN(test_no_token);
    RUN(test_methods_and_routes);
    RUN(test_bodies);
    RUN(test_hooks_absent);
    RUN(test_garbage);
    RUN(test_events_targets_causes);
    RUN(test_metrics);
    fprintf(stderr, "-- test_republish\n");
    test_republish(a);
    fprintf(stderr, "-- test_concurrent_with_republish\n");
    test_concurrent_with_republish(a);
    RUN(test_healthz_stale);
    RUN(test_healthz_stalled);
    RUN(test_uri_limits);
    RUN(test_preflight_off_connection_threads);
    RUN(test_forecast_rendered_once);
    RUN(test_listen_errors);
    RUN(test_idle_client_dropped);
    RUN(test_stop_with_idle_connections);

    api_stop(a);
    curl_global_cleanup();
    fprintf(stderr, "test_api: ok\n");
    return 0;
}
