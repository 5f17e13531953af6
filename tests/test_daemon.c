/* test_daemon.c - `fleetscan run` end to end: the real binary with a generated config against
 * the lab's loopback servers, checked over real HTTP: totals, groups and causes, filters and
 * paging, targets, API errors, metrics through promtool, SIGHUP reload, SIGTERM. */
#include "lab/scenarios.h"
#include "probes/util.h"
#include "tests/daemon_harness.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static lab_t lab;
static char token[] = "test-token-0123456789";
static char cfg_path[600], log_path[600], err_path[600];
static dh_daemon_t fsd = {.cfg_path = cfg_path, .err_path = err_path, .out = -1};

static cJSON *group(cJSON *status, const char *name)
{
    cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(status, "groups"))
    {
        if (strcmp(cJSON_GetObjectItem(g, "name")->valuestring, name) == 0)
            return g;
    }
    return NULL;
}

static void test_first_cycle(void)
{
    cJSON *s = dh_wait_status(&fsd, dh_all_probed, NULL);
    ASSERT_STREQ(cJSON_GetObjectItem(s, "vantage")->valuestring, "lab");
    double total = 0;
    for (size_t i = 0; i < lab_ngroups; i++) {
        const lab_group_t *lg = &lab_groups[i];
        cJSON *g = group(s, lg->name);
        ASSERT(g != NULL);
        double gt = dh_num(g, "total");
        total += gt;
        char key[96];
        if (lg->expect_cause) {
            snprintf(key, sizeof(key), "causes.%s", lg->expect_cause);
            if (dh_num(g, key) != gt)
                fprintf(stderr, "group %s: %s\n", lg->name, cJSON_PrintUnformatted(g));
            ASSERT_EQ(dh_num(g, key), gt);
            ASSERT_EQ(dh_num(g, "offline"), gt);
        } else {
            if (dh_num(g, "online") != gt)
                fprintf(stderr, "group %s: %s\n", lg->name, cJSON_PrintUnformatted(g));
            ASSERT_EQ(dh_num(g, "online"), gt);
        }
        if (lg->expect_warning) {
            snprintf(key, sizeof(key), "warnings.%s", lg->expect_warning);
            ASSERT_EQ(dh_num(g, key), gt);
        }
    }
    ASSERT_EQ(dh_num(s, "endpoints.total"), total);
    ASSERT_EQ(dh_num(s, "endpoints.online") + dh_num(s, "endpoints.offline"), total);
    ASSERT(dh_num(s, "scan.probes_total") >= total);
    ASSERT_EQ(dh_num(s, "causes.untrusted_ca"), dh_num(group(s, "old-trust"), "total"));
    cJSON_Delete(s);
}

static void test_endpoints(void)
{
    cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
    double offline = dh_num(s, "endpoints.offline");
    double mi = dh_num(s, "causes.missing_intermediate");
    cJSON_Delete(s);

    cJSON *j = dh_get_json(&fsd, "/api/v1/endpoints?state=offline&limit=5", 200);
    ASSERT_EQ(dh_num(j, "total"), offline);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 5);
    cJSON *it = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "items"), 0);
    ASSERT_STREQ(cJSON_GetObjectItem(it, "state")->valuestring, "offline");
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(it, "cause")));
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(it, "message")));
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(it, "since")));
    ASSERT(cJSON_IsObject(cJSON_GetObjectItem(it, "timings_ms")));
    cJSON_Delete(j);

    char path[256];
    snprintf(path, sizeof(path), "/api/v1/endpoints?state=offline&limit=1000&offset=%d",
             (int)offline - 2);
    j = dh_get_json(&fsd, path, 200);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 2);
    cJSON_Delete(j);

    j = dh_get_json(&fsd, "/api/v1/endpoints?cause=missing_intermediate&limit=1000", 200);
    ASSERT_EQ(dh_num(j, "total"), mi);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "items"))
    {
        ASSERT_STREQ(cJSON_GetObjectItem(it, "group")->valuestring, "branch-noaia");
    }
    cJSON_Delete(j);

    j = dh_get_json(&fsd, "/api/v1/endpoints?group=hq&state=online&limit=1", 200);
    it = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "items"), 0);
    ASSERT_STREQ(cJSON_GetObjectItem(it, "id")->valuestring, "hq-00000");
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(it, "cause")));
    cJSON_Delete(j);

    j = dh_get_json(&fsd, "/api/v1/endpoints/hq-00000", 200);
    ASSERT_STREQ(cJSON_GetObjectItem(j, "state")->valuestring, "online");
    cJSON *d = cJSON_GetObjectItem(j, "detail");
    ASSERT(cJSON_IsObject(d));
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(d, "chain")), 2);
    ASSERT_EQ(dh_num(d, "http_status"), 200);
    cJSON_Delete(j);

    /* An offline endpoint's detail tells why, with the chain (facts survive failure). */
    j = dh_get_json(&fsd, "/api/v1/endpoints/dmz-expired-00000", 200);
    ASSERT_STREQ(cJSON_GetObjectItem(j, "cause")->valuestring, "cert_expired");
    ASSERT_CONTAINS(cJSON_GetObjectItem(j, "message")->valuestring, "expired");
    cJSON_Delete(j);
    j = dh_get_json(&fsd, "/api/v1/endpoints/http-profile-00000", 200);
    ASSERT_STREQ(cJSON_GetObjectItem(j, "cause")->valuestring, "profile_mismatch");
    cJSON_Delete(j);

    /* Every endpoint with a verdict has a detail, chain or not (plain HTTP, a closed port),
     * telling its own outcome; the timings shown are the endpoint's own, not the detail's. */
    for (size_t i = 0; i < lab_ngroups; i++) {
        snprintf(path, sizeof(path), "/api/v1/endpoints/%s-00000", lab_groups[i].name);
        j = dh_get_json(&fsd, path, 200);
        d = cJSON_GetObjectItem(j, "detail");
        if (!cJSON_IsObject(d))
            fprintf(stderr, "%s: %s\n", path, cJSON_PrintUnformatted(j));
        ASSERT(cJSON_IsObject(d));
        ASSERT_STREQ(cJSON_GetObjectItem(d, "state")->valuestring,
                     cJSON_GetObjectItem(j, "state")->valuestring);
        if (cJSON_IsString(cJSON_GetObjectItem(j, "cause")))
            ASSERT_STREQ(cJSON_GetObjectItem(d, "cause")->valuestring,
                         cJSON_GetObjectItem(j, "cause")->valuestring);
        ASSERT(cJSON_GetObjectItem(d, "timings_ms") == NULL);
        ASSERT(cJSON_IsObject(cJSON_GetObjectItem(j, "timings_ms")));
        cJSON_Delete(j);
    }
}

static void test_targets_and_causes(void)
{
    cJSON *j = dh_get_json(&fsd, "/api/v1/targets", 200);
    cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "targets"), 0);
    ASSERT(t != NULL);
    ASSERT_STREQ(cJSON_GetObjectItem(t, "state")->valuestring, "online");
    cJSON *chain = cJSON_GetObjectItem(t, "chain");
    ASSERT_EQ(cJSON_GetArraySize(chain), 2);
    cJSON *leaf = cJSON_GetArrayItem(chain, 0);
    ASSERT_EQ(strlen(cJSON_GetObjectItem(leaf, "sha1_thumbprint")->valuestring), 40);
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(leaf, "not_after")));
    cJSON *crls = cJSON_GetObjectItem(t, "crls");
    ASSERT(cJSON_GetArraySize(crls) >= 1);
    cJSON *c;
    int inter = 0;
    cJSON_ArrayForEach(c, crls)
    {
        ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(c, "reachable")));
        ASSERT(cJSON_IsString(cJSON_GetObjectItem(c, "next_update")));
        inter += strstr(cJSON_GetObjectItem(c, "url")->valuestring, "/inter.crl") != NULL;
    }
    ASSERT_EQ(inter, 1);
    cJSON_Delete(j);

    j = dh_get_json(&fsd, "/api/v1/causes", 200);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "causes")), 18);
    cJSON_Delete(j);
}

/* Forecast: at day 0 the picture is today's; past the CRL's nextUpdate (7 days) the strict
 * groups that are online today go offline with crl_expired while soft-fail groups stay; past
 * the leaves' notAfter (365 days) every validated chain has expired. */
static void test_forecast(void)
{
    cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
    cJSON *f0 = dh_get_json(&fsd, "/api/v1/forecast?days=0", 200);
    ASSERT_EQ(dh_num(f0, "endpoints.online"), dh_num(s, "endpoints.online"));
    ASSERT_EQ(dh_num(f0, "endpoints.offline"), dh_num(s, "endpoints.offline"));
    /* The lab's CRLs are weekly: in 8 days the strict groups are still online when the CA
     * republishes (the headline), and offline only in if_crl_not_republished. */
    cJSON *f8 = dh_get_json(&fsd, "/api/v1/forecast?days=8", 200);
    double strict_online = dh_num(group(s, "hq"), "online") +
                           dh_num(group(s, "branch-aia"), "online") +
                           dh_num(group(s, "kiosk-sha1"), "online");
    ASSERT(strict_online > 0);
    ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(f8, "causes"), "crl_expired") == NULL);
    /* ...and the group whose clock is 3 days behind recovers once the leaf's notBefore (a day
     * ago) passes at its clock: time-dependent causes are re-evaluated at the instant. */
    ASSERT_EQ(dh_num(f8, "endpoints.online"),
              dh_num(s, "endpoints.online") + dh_num(group(s, "clock-behind"), "total"));
    ASSERT_EQ(dh_num(f8, "if_crl_not_republished.causes.crl_expired"), strict_online);
    cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(f8, "groups"))
    {
        const char *name = cJSON_GetObjectItem(g, "name")->valuestring;
        if (strcmp(name, "site-nocrl-soft") == 0)
            ASSERT_EQ(dh_num(g, "if_crl_not_republished.endpoints.online"),
                      dh_num(group(s, name), "online"));
        if (strcmp(name, "hq") == 0) {
            ASSERT_STREQ(cJSON_GetObjectItem(g, "offline_cause")->valuestring, "cert_expired");
            ASSERT_STREQ(cJSON_GetObjectItem(g, "crl_offline_cause")->valuestring, "crl_expired");
            ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(g, "offline_now")));
        }
        if (strcmp(name, "dmz-expired") == 0) { /* offline now: said so, no future date */
            ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(g, "offline_now")));
            ASSERT_STREQ(cJSON_GetObjectItem(g, "offline_cause")->valuestring, "cert_expired");
            ASSERT(cJSON_IsNull(cJSON_GetObjectItem(g, "crl_offline_from")));
        }
    }
    cJSON *f400 = dh_get_json(&fsd, "/api/v1/forecast?days=400", 200);
    ASSERT_EQ(dh_num(f400, "endpoints.online"), 0);
    ASSERT(dh_num(f400, "causes.cert_expired") > 0);
    dh_resp_t r = dh_http(&fsd, "GET", "/api/v1/forecast?days=-1", NULL, NULL);
    ASSERT_EQ(r.status, 400);
    free(r.body);
    cJSON_Delete(s);
    cJSON_Delete(f0);
    cJSON_Delete(f8);
    cJSON_Delete(f400);
}

static cJSON *verdict_of(cJSON *doc, const char *group_name)
{
    cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(doc, "groups"))
    {
        if (strcmp(cJSON_GetObjectItem(g, "group")->valuestring, group_name) == 0)
            return g;
    }
    fprintf(stderr, "no verdict for group %s\n", group_name);
    abort();
}

static void expect_verdict(cJSON *doc, const char *group_name, const char *cause)
{
    cJSON *g = verdict_of(doc, group_name);
    if (cause == NULL) {
        ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(g, "accept")));
    } else {
        if (!cJSON_IsString(cJSON_GetObjectItem(g, "cause")) ||
            strcmp(cJSON_GetObjectItem(g, "cause")->valuestring, cause) != 0)
            fprintf(stderr, "%s: %s\n", group_name, cJSON_PrintUnformatted(g));
        ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(g, "accept")));
        ASSERT_STREQ(cJSON_GetObjectItem(g, "cause")->valuestring, cause);
    }
}

static cJSON *preflight_cli(const char *chain_file, int want_exit)
{
    char chain[600], cmd[1600], *out = calloc(1, 1 << 20);
    lab_file(&lab, chain_file, chain, sizeof(chain));
    snprintf(cmd, sizeof(cmd), "FLEETSCAN_DNS_OVERRIDE_ONLY=1 %s preflight -c %s --chain %s --json",
             getenv("FLEETSCAN_BIN"), cfg_path, chain);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, (1 << 20) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), want_exit);
    cJSON *doc = cJSON_Parse(out);
    ASSERT(doc != NULL);
    free(out);
    return doc;
}

/* Pre-flight: a candidate chain judged per group before it is bound. */
static void test_preflight(void)
{
    cJSON *doc = preflight_cli("good-chain.pem", 1);
    expect_verdict(doc, "hq", NULL);
    expect_verdict(doc, "old-trust", "untrusted_ca");
    expect_verdict(doc, "site-nocrl", "crl_unreachable");
    expect_verdict(doc, "site-nocrl-soft", NULL);
    ASSERT_STREQ(
        cJSON_GetArrayItem(cJSON_GetObjectItem(verdict_of(doc, "site-nocrl-soft"), "warnings"), 0)
            ->valuestring,
        "revocation_soft_fail");
    ASSERT(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "chain")) == 2);
    cJSON_Delete(doc);
    doc = preflight_cli("expired-chain.pem", 1);
    expect_verdict(doc, "hq", "cert_expired");
    cJSON_Delete(doc);
    doc = preflight_cli("wronghost-chain.pem", 1);
    expect_verdict(doc, "hq", "hostname_mismatch");
    cJSON_Delete(doc);
    doc = preflight_cli("revoked-chain.pem", 1);
    expect_verdict(doc, "hq", "cert_revoked");
    cJSON_Delete(doc);

    /* A chain that is not a regular file is refused at once (fopen() of a FIFO blocked). */
    char fifo[600], cmd[1600], out[1024];
    lab_file(&lab, "fifo", fifo, sizeof(fifo)); /* made by test_check_command */
    snprintf(cmd, sizeof(cmd), "timeout 10 %s preflight -c %s --chain %s 2>&1",
             getenv("FLEETSCAN_BIN"), cfg_path, fifo);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 2);
    ASSERT_CONTAINS(out, "is not a regular file (a FIFO)");

    /* The same over the API, with the bearer token. */
    char *pem = dh_read_file(lab_file(&lab, "good-chain.pem", (char[600]){0}, 600));
    dh_resp_t r = dh_http(&fsd, "POST", "/api/v1/preflight", NULL, pem);
    ASSERT_EQ(r.status, 401);
    free(r.body);
    r = dh_http(&fsd, "POST", "/api/v1/preflight", token, pem);
    ASSERT_EQ(r.status, 200);
    doc = cJSON_Parse(r.body);
    ASSERT(doc != NULL);
    expect_verdict(doc, "hq", NULL);
    expect_verdict(doc, "old-trust", "untrusted_ca");
    cJSON_Delete(doc);
    free(r.body);
    r = dh_http(&fsd, "POST", "/api/v1/preflight", token, "this is not a certificate");
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "bad_chain");
    free(r.body);
    /* ?target= names the target whose groups judge the chain: an unknown or malformed name is
     * a 400 that says which */
    r = dh_http(&fsd, "POST", "/api/v1/preflight?target=nosuch", token, pem);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "no target is named \\\"nosuch\\\"");
    ASSERT_CONTAINS(r.body, "bad_parameter");
    free(r.body);
    r = dh_http(&fsd, "POST", "/api/v1/preflight?target=a%2Fb", token, pem);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "target: expected a target name");
    free(r.body);
    free(pem);
}

/* SPEC §4.3: for any group and any chain, `fleetscan probe -c FILE --group NAME`, the daemon's
 * verdict for the group, the pre-flight of the chain the group's server presents and the
 * forecast at days=0 agree. Each evaluator judges what it can see, through the one model; the
 * rule per cause and warning of SPEC §3 (test_agreement: the lab fleet; test_agreement_every_cause:
 * the causes and warnings that fleet does not have):
 *
 * - Causes a chain decides (verify: cert_expired, cert_not_yet_valid, hostname_mismatch,
 *   thumbprint_mismatch, missing_intermediate, untrusted_ca; revocation: cert_revoked,
 *   crl_unreachable, crl_expired, crl_invalid): all four give the cause. Pre-flight fetches the
 *   chain's CDPs itself, in the group's view, at the group's clock.
 * - profile_mismatch: all four (the profile rules are part of the model; pre-flight of a plain
 *   HTTP profile says so whatever the chain, and a differing port is the group's present state).
 * - Causes no certificate changes (resolve: dns_failure; connect: connect_refused,
 *   connect_timeout; tls: tls_handshake_failed, connection_closed; request: http_error; and
 *   probe_timeout, which the model reports only for a handshake or a request that never
 *   completes): the daemon and the probe give the cause; the forecast keeps it (offline now: no
 *   certificate or CRL edge changes it); pre-flight through the API, which knows each group's
 *   present state, gives it too, with chain_cause what the chain alone would do (null: accepted);
 *   `fleetscan preflight` without a daemon has no present state and judges the chain alone: it
 *   accepts. A chain is for one binding: the API judges the groups of the target most endpoints
 *   talk to, `fleetscan preflight --target NAME` another target's (without present state).
 * - Online: all four online.
 * - Warnings a chain carries (cert_expiring_soon, weak_signature, aia_fetch_required,
 *   crl_expiring_soon, revocation_soft_fail, revocation_url_dead): the daemon (every endpoint of
 *   the group), the probe and pre-flight show it; the forecast has counts only (online).
 * - weak_protocol: the daemon and the probe (the handshake negotiated it); pre-flight has no
 *   handshake and does not show it.
 * - backend_inconsistent: the daemon only, from the outcomes of the target's addresses across
 *   probes; one probe meets one address and a chain is one node's, so neither shows it. */

static const char *served_chain(lab_scenario_t sc)
{
    switch (sc) {
    case LAB_SC_LEAF_ONLY:
        return "good.pem";
    case LAB_SC_EXPIRED:
        return "expired-chain.pem";
    case LAB_SC_WRONGHOST:
        return "wronghost-chain.pem";
    case LAB_SC_REVOKED:
        return "revoked-chain.pem";
    case LAB_SC_SHA1:
        return "sha1-chain.pem";
    default: /* the good binding, or none (plain HTTP: the profile decides whatever the chain) */
        return "good-chain.pem";
    }
}

static int has_item(cJSON *arr, const char *s)
{
    cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0)
            return 1;
    }
    return 0;
}

static const char *cause_or_online(cJSON *c)
{
    return cJSON_IsString(c) ? c->valuestring : "online";
}

/* What one group must look like to each evaluator (see the rules above). */
typedef struct agree_s {
    const char *group;
    const char *cause;   /* the verdict, NULL: online */
    const char *warning; /* a warning every endpoint of the group carries, NULL: none */
    const char *chain;   /* lab file: the chain the group's server presents (or would) */
    const char *target;  /* NULL: the target most endpoints talk to (pre-flight by the API) */
    int present;         /* a cause no certificate changes (pre-flight: the present state) */
    int chain_warning;   /* pre-flight shows the warning too (a property of the chain) */
    int probe_warning;   /* the one-shot probe shows it (all but backend_inconsistent) */
    int exact;           /* the daemon's warnings are exactly `warning`, and the CLI pre-flight
                            (no present state) is checked too */
} agree_t;

static cJSON *run_json(const char *cmd, int *exit_code)
{
    char *out = calloc(1, 1 << 20);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t n = fread(out, 1, (1 << 20) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    if (exit_code != NULL)
        *exit_code = WEXITSTATUS(st);
    cJSON *j = cJSON_Parse(out);
    if (j == NULL)
        fprintf(stderr, "%s: not JSON: %.300s\n", cmd, out);
    ASSERT(j != NULL);
    free(out);
    return j;
}

static const char *verdict_cause(cJSON *doc, const char *group_name, const char *member)
{
    return cause_or_online(cJSON_GetObjectItem(verdict_of(doc, group_name), member));
}

static void agree_check(cJSON *status, cJSON *forecast, const agree_t *a)
{
    const char *want = a->cause ? a->cause : "online";
    /* the daemon: every endpoint of the group */
    cJSON *g = group(status, a->group);
    ASSERT(g != NULL);
    char key[96];
    snprintf(key, sizeof(key), "causes.%s", want);
    double total = dh_num(g, "total");
    ASSERT(total > 0);
    const char *daemon =
        (a->cause ? dh_num(g, key) : dh_num(g, "online")) == total ? want : "(mixed)";
    if (a->warning != NULL) {
        snprintf(key, sizeof(key), "warnings.%s", a->warning);
        ASSERT_EQ(dh_num(g, key), total);
    }
    if (a->exact)
        ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(g, "warnings")), a->warning ? 1 : 0);
    /* fleetscan probe -c FILE --group NAME */
    char cmd[2000], chain[600];
    int rc;
    snprintf(cmd, sizeof(cmd), "%s probe -c %s --group %s --json --dns-override-only",
             getenv("FLEETSCAN_BIN"), cfg_path, a->group);
    cJSON *pr = run_json(cmd, &rc);
    const char *cli = cause_or_online(cJSON_GetObjectItem(pr, "cause"));
    ASSERT_EQ(rc, a->cause ? 1 : 0);
    if (a->warning != NULL)
        ASSERT_EQ(has_item(cJSON_GetObjectItem(pr, "warnings"), a->warning), a->probe_warning);
    /* pre-flight of the chain the group's server presents: through the API (the groups of the
     * target most endpoints talk to, or of ?target=, with their present state), and without a
     * daemon */
    lab_file(&lab, a->chain, chain, sizeof(chain));
    const char *pre = "(not judged)", *pre_cli = "(not judged)";
    cJSON *pf = NULL, *pfc = NULL;
    {
        char *pem = dh_read_file(chain), route[160] = "/api/v1/preflight";
        if (a->target != NULL)
            snprintf(route, sizeof(route), "/api/v1/preflight?target=%s", a->target);
        dh_resp_t r = dh_http(&fsd, "POST", route, token, pem);
        ASSERT_EQ(r.status, 200);
        pf = cJSON_Parse(r.body);
        ASSERT(pf != NULL);
        pre = verdict_cause(pf, a->group, "cause");
        if (a->present) /* what the chain alone would do: these chains are acceptable */
            ASSERT_STREQ(verdict_cause(pf, a->group, "chain_cause"), "online");
        if (a->warning != NULL)
            ASSERT_EQ(
                has_item(cJSON_GetObjectItem(verdict_of(pf, a->group), "warnings"), a->warning),
                a->chain_warning);
        free(r.body);
        free(pem);
    }
    if (a->exact || a->target != NULL) {
        char tgt[96] = "";
        if (a->target != NULL)
            snprintf(tgt, sizeof(tgt), " --target %s", a->target);
        snprintf(cmd, sizeof(cmd),
                 "FLEETSCAN_DNS_OVERRIDE_ONLY=1 %s preflight -c %s --chain %s%s --json",
                 getenv("FLEETSCAN_BIN"), cfg_path, chain, tgt);
        pfc = run_json(cmd, NULL);
        pre_cli = verdict_cause(pfc, a->group, "cause");
        if (a->warning != NULL)
            ASSERT_EQ(
                has_item(cJSON_GetObjectItem(verdict_of(pfc, a->group), "warnings"), a->warning),
                a->chain_warning);
    }
    /* the forecast now */
    cJSON *fg = NULL, *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(forecast, "groups"))
    {
        if (strcmp(cJSON_GetObjectItem(it, "name")->valuestring, a->group) == 0)
            fg = it;
    }
    ASSERT(fg != NULL);
    snprintf(key, sizeof(key), "causes.%s", want);
    const char *fc =
        (a->cause ? dh_num(fg, key) : dh_num(fg, "endpoints.online")) == total ? want : "(differs)";
    fprintf(stderr, "   %-16s daemon %-20s probe %-20s preflight %-20s cli %-20s forecast %s%s%s\n",
            a->group, daemon, cli, pre, pre_cli, fc, a->warning ? " +" : "",
            a->warning ? a->warning : "");
    ASSERT_STREQ(daemon, want);
    ASSERT_STREQ(cli, want);
    ASSERT_STREQ(pre, want);
    if (pfc != NULL) /* no present state: the chain alone */
        ASSERT_STREQ(pre_cli, a->present ? "online" : want);
    ASSERT_STREQ(fc, want);
    cJSON_Delete(pf);
    cJSON_Delete(pfc);
    cJSON_Delete(pr);
}

static void test_agreement(void)
{
    cJSON *status = dh_get_json(&fsd, "/api/v1/status", 200);
    cJSON *forecast = dh_get_json(&fsd, "/api/v1/forecast?days=0", 200);
    for (size_t i = 0; i < lab_ngroups; i++) {
        const lab_group_t *lg = &lab_groups[i];
        agree_t a = {.group = lg->name,
                     .cause = lg->expect_cause,
                     .warning = lg->expect_warning,
                     .chain = served_chain(lg->scenario),
                     .chain_warning = 1,
                     .probe_warning = 1};
        agree_check(status, forecast, &a);
    }
    cJSON_Delete(forecast);
    cJSON_Delete(status);
}

/* `fleetscan status`: the picture of this daemon in a terminal, from its API. */
static void test_status_command(void)
{
    char cmd[1024], *out = calloc(1, 1 << 20);
    snprintf(cmd, sizeof(cmd), "%s status --url %s", getenv("FLEETSCAN_BIN"), fsd.api);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, (1 << 20) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 1); /* some endpoints are offline */
    cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
    char line[128];
    snprintf(line, sizeof(line), "%.0f endpoints: %.0f online, %.0f OFFLINE",
             dh_num(s, "endpoints.total"), dh_num(s, "endpoints.online"),
             dh_num(s, "endpoints.offline"));
    ASSERT_CONTAINS(out, line);
    ASSERT_CONTAINS(out, "http-profile (");
    ASSERT_CONTAINS(out, "fix: ");
    cJSON_Delete(s);
    /* an unreachable daemon is a clear error, exit 2 */
    snprintf(cmd, sizeof(cmd), "%s status --url http://127.0.0.1:%d 2>&1", getenv("FLEETSCAN_BIN"),
             lab.closed_port);
    p = popen(cmd, "r");
    n = fread(out, 1, (1 << 20) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 2);
    ASSERT_CONTAINS(out, "fleetscan: status: http://127.0.0.1:");
    free(out);
}

static void test_errors(void)
{
    dh_resp_t r = dh_http(&fsd, "POST", "/api/v1/scan", NULL, NULL);
    ASSERT_EQ(r.status, 401);
    ASSERT_CONTAINS(r.body, "\"code\"");
    free(r.body);
    r = dh_http(&fsd, "POST", "/api/v1/scan", "wrong-token-0123456789", NULL);
    ASSERT_EQ(r.status, 401);
    free(r.body);
    r = dh_http(&fsd, "GET", "/api/v1/scan", token, NULL);
    ASSERT_EQ(r.status, 405);
    free(r.body);
    r = dh_http(&fsd, "POST", "/api/v1/status", NULL, NULL);
    ASSERT_EQ(r.status, 405);
    free(r.body);
    r = dh_http(&fsd, "GET", "/api/v1/endpoints/nobody-00001", NULL, NULL);
    ASSERT_EQ(r.status, 404);
    ASSERT_CONTAINS(r.body, "\"error\"");
    free(r.body);
    r = dh_http(&fsd, "GET", "/api/v1/endpoints?limit=5000", NULL, NULL);
    ASSERT_EQ(r.status, 400);
    free(r.body);
    r = dh_http(&fsd, "GET", "/api/v1/endpoints?cause=bogus", NULL, NULL);
    ASSERT_EQ(r.status, 400);
    free(r.body);
    r = dh_http(&fsd, "GET", "/nope", NULL, NULL);
    ASSERT_EQ(r.status, 404);
    free(r.body);
    /* The scan with the right token: every endpoint is probed again. */
    cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
    double before = dh_num(s, "scan.probes_total"), total = dh_num(s, "endpoints.total");
    cJSON_Delete(s);
    r = dh_http(&fsd, "POST", "/api/v1/scan", token, NULL);
    ASSERT_EQ(r.status, 202);
    free(r.body);
    for (int i = 0; i < 200; i++) {
        s = dh_get_json(&fsd, "/api/v1/status", 200);
        double now = dh_num(s, "scan.probes_total");
        cJSON_Delete(s);
        if (now >= before + total)
            break;
        ASSERT(i < 199);
        usleep(100000);
    }
}

static void test_metrics(void)
{
    dh_resp_t r = dh_http(&fsd, "GET", "/metrics", NULL, NULL);
    ASSERT_EQ(r.status, 200);
    ASSERT_CONTAINS(r.body, "fleetscan_endpoints{");
    ASSERT_CONTAINS(r.body, "fleetscan_endpoints_offline{");
    ASSERT_CONTAINS(r.body, "fleetscan_group_endpoints{");
    ASSERT_CONTAINS(r.body, "fleetscan_cert_not_after_seconds{");
    ASSERT_CONTAINS(r.body, "fleetscan_crl_reachable{");
    ASSERT_CONTAINS(r.body, "fleetscan_crl_next_update_seconds{");
    ASSERT_CONTAINS(r.body, "fleetscan_probes_total{");
    ASSERT_CONTAINS(r.body, "fleetscan_probe_duration_seconds_bucket{");
    /* the lab's CRLs and AIA issuer were retrieved, then answered from the cache */
    const char *lookups[] = {"hit", "fetched"};
    for (size_t i = 0; i < FS_ARRAY_SIZE(lookups); i++) {
        char want[160];
        snprintf(want, sizeof(want),
                 "fleetscan_revocation_cache_lookups_total{vantage=\"lab\",shard=\"0/1\","
                 "result=\"%s\"} ",
                 lookups[i]);
        const char *at = strstr(r.body, want);
        ASSERT(at != NULL);
        ASSERT(strtoull(at + strlen(want), NULL, 10) > 0);
    }
    ASSERT_CONTAINS(r.body, "fleetscan_revocation_signature_checks_total{");
    ASSERT_CONTAINS(r.body, "vantage=\"lab\"");
    if (access("/usr/bin/promtool", X_OK) == 0) {
        FILE *p = popen("/usr/bin/promtool check metrics >/tmp/fleetscan-promtool.out 2>&1", "w");
        ASSERT(p != NULL);
        fwrite(r.body, 1, r.len, p);
        int st = pclose(p);
        if (st != 0)
            system("cat /tmp/fleetscan-promtool.out");
        ASSERT_EQ(st, 0);
    } else {
        fprintf(stderr, "   promtool not installed: exposition format not checked\n");
    }
    free(r.body);
}

/* Each of the daemon's own threads says what it is in top -H and /proc (docs/ARCHITECTURE.md). */
static void test_thread_names(void)
{
    const char *want[] = {"fleetscan", "fs-store", "fs-api-guard", "fs-preflight"};
    int seen[FS_ARRAY_SIZE(want)] = {0};
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)fsd.pid);
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[128], name[32] = "";
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* the thread ended meanwhile */
        if (fgets(name, sizeof(name), f) != NULL)
            name[strcspn(name, "\n")] = '\0';
        fclose(f);
        for (size_t i = 0; i < FS_ARRAY_SIZE(want); i++)
            seen[i] |= strcmp(name, want[i]) == 0;
    }
    closedir(d);
    for (size_t i = 0; i < FS_ARRAY_SIZE(want); i++) {
        if (!seen[i])
            fprintf(stderr, "no thread named %s\n", want[i]);
        ASSERT(seen[i]);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static int old_trust_resized(cJSON *s, void *arg)
{
    cJSON *g = group(s, "old-trust");
    return g && dh_num(g, "total") == *(double *)arg;
}

static void test_reload(void)
{
    cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
    double hq = dh_num(group(s, "hq"), "total");
    double old_trust = dh_num(group(s, "old-trust"), "total");
    cJSON_Delete(s);

    /* Grow one group; every other group is unchanged and must keep its state. */
    char *text = dh_read_file(cfg_path);
    char from[128], *at;
    snprintf(from, sizeof(from), "\"name\": \"old-trust\", \"count\": %d,", (int)old_trust);
    at = strstr(text, from);
    ASSERT(at != NULL);
    char *next = malloc(strlen(text) + 64);
    memcpy(next, text, (size_t)(at - text));
    sprintf(next + (at - text), "\"name\": \"old-trust\", \"count\": %d,%s", (int)old_trust + 3,
            at + strlen(from));
    write_file(cfg_path, next);
    ASSERT(kill(fsd.pid, SIGHUP) == 0);
    double want = old_trust + 3;
    s = dh_wait_status(&fsd, old_trust_resized, &want);
    /* Right after the reload: hq kept its state (no pending endpoints there). */
    cJSON *g = group(s, "hq");
    ASSERT_EQ(dh_num(g, "online"), hq);
    ASSERT_EQ(dh_num(g, "pending"), 0);
    cJSON_Delete(s);
    s = dh_wait_status(&fsd, dh_all_probed, NULL);
    ASSERT_EQ(dh_num(group(s, "old-trust"), "causes.untrusted_ca"), want);
    /* /status says the last reload was applied */
    cJSON *lr = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "config"), "last_reload");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(lr, "ok")));
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(lr, "at")));
    cJSON_Delete(s);

    /* A broken file is refused; the running configuration stays. */
    write_file(cfg_path, "{\"groups\": [ {\"name\": \"x\", \"count\": -1 ");
    ASSERT(kill(fsd.pid, SIGHUP) == 0);
    char *errs = NULL;
    for (int i = 0; i < 100; i++) {
        free(errs);
        errs = dh_read_file(err_path);
        if (strstr(errs, "reload refused"))
            break;
        usleep(100000);
    }
    ASSERT_CONTAINS(errs, "reload refused");
    free(errs);
    s = dh_get_json(&fsd, "/api/v1/status", 200);
    ASSERT_EQ(dh_num(group(s, "old-trust"), "total"), want);
    ASSERT_EQ(dh_num(group(s, "hq"), "online"), hq);
    /* ...and /status says so, with why (not only the log) */
    lr = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "config"), "last_reload");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(lr, "ok")));
    ASSERT(strlen(cJSON_GetObjectItem(lr, "message")->valuestring) > 0);
    cJSON_Delete(s);
    /* ...and both reloads are events of kind config, the refused one last */
    int applied = 0, refused = 0;
    cJSON *evs = dh_get_json(&fsd, "/api/v1/events?since=0", 200), *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItem(evs, "events"))
    {
        if (strcmp(cJSON_GetObjectItem(ev, "kind")->valuestring, "config") != 0)
            continue;
        const char *subj = cJSON_GetObjectItem(ev, "subject")->valuestring;
        ASSERT(cJSON_IsNull(cJSON_GetObjectItem(ev, "new_state")));
        applied += strcmp(subj, "config:applied") == 0;
        refused += strcmp(subj, "config:refused") == 0;
        ASSERT(refused == 0 || strcmp(subj, "config:refused") == 0); /* the newest */
    }
    cJSON_Delete(evs);
    ASSERT(applied >= 1);
    ASSERT_EQ(refused, 1);
    write_file(cfg_path, next);
    free(next);
    free(text);
}

/* One well-formed record per line (peer-controlled text is escaped, never raw markup), and
 * nothing else: no fragment, no line glued onto another. Returns the number of records. */
static int event_log_records(char *log)
{
    int lines = 0;
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, "<event date='", 13) != 0 ||
            strstr(line, "</event>") != line + strlen(line) - 8)
            fprintf(stderr, "malformed event log line: %s\n", line);
        ASSERT(strncmp(line, "<event date='", 13) == 0);
        ASSERT(strstr(line, "</event>") == line + strlen(line) - 8);
        int lt = 0;
        for (char *c = line; *c; c++)
            lt += *c == '<';
        ASSERT_EQ(lt, 2);
        lines++;
    }
    return lines;
}

static void test_events_and_log(void)
{
    cJSON *j = dh_get_json(&fsd, "/api/v1/events?since=0", 200);
    cJSON *evs = cJSON_GetObjectItem(j, "events");
    ASSERT(cJSON_GetArraySize(evs) > 0);
    cJSON_Delete(j);
    char *log = dh_read_file(log_path);
    ASSERT_CONTAINS(log, "<event date='");
    ASSERT_CONTAINS(log, "hostName='old-trust-00000'");
    ASSERT_CONTAINS(log, "Could not establish trust relationship");
    /* the success lines an admin greps agent.log for, and the group lines of a rollover */
    ASSERT_CONTAINS(log, "hostName='hq-00000'");
    ASSERT_CONTAINS(log, "Connected to server");
    ASSERT_CONTAINS(log, "hostName='config'");
    ASSERT_CONTAINS(log, "Configuration updated successfully");
    ASSERT_CONTAINS(log, "hostName='group:old-trust'");
    ASSERT(event_log_records(log) > 0);
    free(log);
    cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
    cJSON *el = cJSON_GetObjectItem(s, "event_log");
    ASSERT(cJSON_IsObject(el));
    ASSERT_STREQ(cJSON_GetObjectItem(el, "path")->valuestring, log_path);
    ASSERT_EQ(dh_num(el, "dropped_lines"), 0);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(el, "last_error")));
    cJSON_Delete(s);
}

static void test_stop(void)
{
    dh_stop(&fsd, SIGTERM);
}

/* A configuration of its own for one test: a group probing the lab's good binding, with its
 * CRL host at crl_ip (the lab's CRL server is on 127.0.0.1), strict revocation with short
 * retrieval timeouts, and optionally a second group whose DNS view has `filler` more names. */
static void write_own_config(const char *path, const char *crl_ip, unsigned filler)
{
    char root[600], tok[600];
    lab_file(&lab, "root.pem", root, sizeof(root));
    lab_file(&lab, "token", tok, sizeof(tok));
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fprintf(f,
            "{\"vantage\": \"lab\", \"listen\": \"127.0.0.1:0\", \"api_token_file\": \"%s\",\n"
            " \"interval_s\": 3600, \"limits\": {\"probe_timeout_ms\": 10000},\n"
            " \"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},\n"
            " \"profiles\": {\"default\": {\"url\": \"https://%s:%d/\"}},\n"
            " \"groups\": [{\"name\": \"hq\", \"count\": 4, \"profile\": \"default\",\n"
            "   \"trust\": \"corp\", \"revocation\": {\"mode\": \"strict\", \"url_timeout_ms\": "
            "6000, \"budget_ms\": 8000},\n"
            "   \"network\": {\"resolve\": {\"%s\": \"127.0.0.1\", \"%s\": \"%s\"}}}",
            tok, root, LAB_HOST, lab_port(&lab, LAB_SC_GOOD), LAB_HOST, LAB_CRL_HOST, crl_ip);
    if (filler > 0) {
        fprintf(f,
                ",\n  {\"name\": \"big\", \"count\": 3, \"network\": {\"resolve\": "
                "{\"%s\": \"127.0.0.1\", \"%s\": \"127.0.0.1\"",
                LAB_HOST, LAB_CRL_HOST);
        for (unsigned i = 0; i < filler; i++)
            fprintf(f, ", \"h%06u.example\": \"10.%u.%u.%u\"", i, (i >> 16) & 255, (i >> 8) & 255,
                    i & 255);
        fprintf(f, "}}}");
    }
    fprintf(f, "]}\n");
    fclose(f);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int has_groups(cJSON *s, void *arg)
{
    (void)arg;
    return cJSON_GetArraySize(cJSON_GetObjectItem(s, "groups")) > 0;
}

static int has_big_group(cJSON *s, void *arg)
{
    (void)arg;
    return group(s, "big") != NULL;
}

/* SIGHUP with a 2.8 MB configuration (100,000 DNS overrides): the file is parsed and built off
 * the loop, so probing and publishing go on meanwhile — /healthz says ok, /api/v1/status
 * answers and its generated_at keeps advancing — and the reload is applied. A second SIGHUP
 * during the reload is coalesced, not lost. */
static void test_reload_large_config(void)
{
    char saved[600];
    fs_strlcpy(saved, cfg_path, sizeof(saved));
    lab_file(&lab, "reload-large.json", cfg_path, sizeof(cfg_path));
    write_own_config(cfg_path, "127.0.0.1", 0);
    dh_start(&fsd);
    cJSON *s = dh_wait_status(&fsd, dh_all_probed, NULL);
    cJSON_Delete(s);

    write_own_config(cfg_path, "127.0.0.1", 100000);
    ASSERT(kill(fsd.pid, SIGHUP) == 0);
    ASSERT(kill(fsd.pid, SIGHUP) == 0);
    dh_http_timeout_s = 5; /* hang detector: the loop used to freeze for 30 s and more */
    char last[64] = "";
    int changes = 0, applied = 0;
    int64_t start = mono_ms(), last_change = start, max_gap = 0;
    while (!applied || mono_ms() - start < 3000) {
        ASSERT(mono_ms() - start < 120000);
        cJSON *h = dh_get_json(&fsd, "/healthz", 200);
        ASSERT_STREQ(cJSON_GetObjectItem(h, "status")->valuestring, "ok");
        cJSON_Delete(h);
        s = dh_get_json(&fsd, "/api/v1/status", 200);
        const char *gen = cJSON_GetObjectItem(s, "generated_at")->valuestring;
        int64_t now = mono_ms();
        if (strcmp(gen, last) != 0) {
            if (last[0] != '\0')
                changes++;
            fs_strlcpy(last, gen, sizeof(last));
            last_change = now;
        }
        if (now - last_change > max_gap)
            max_gap = now - last_change;
        applied |= has_big_group(s, NULL);
        cJSON_Delete(s);
        usleep(200000);
    }
    dh_http_timeout_s = 10;
    /* Published every second throughout; 8 s without a new snapshot is a frozen loop. */
    if (max_gap > 8000 || changes < 2)
        fprintf(stderr, "generated_at: %d changes, longest still %lld ms\n", changes,
                (long long)max_gap);
    ASSERT(max_gap <= 8000);
    ASSERT(changes >= 2);
    s = dh_wait_status(&fsd, dh_all_probed, NULL);
    ASSERT_EQ(dh_num(group(s, "big"), "total"), 3);
    ASSERT_EQ(dh_num(group(s, "hq"), "total"), 4);
    cJSON_Delete(s);
    char *errs = dh_read_file(err_path);
    ASSERT_CONTAINS(errs, "configuration reloaded");
    ASSERT(strstr(errs, "reload refused") == NULL);
    free(errs);
    dh_stop(&fsd, SIGTERM);
    fs_strlcpy(cfg_path, saved, sizeof(cfg_path));
}

typedef struct pf_call_s {
    pthread_t t;
    const char *pem;
    dh_resp_t r;
    atomic_int *done;
} pf_call_t;

static void *post_preflight(void *arg)
{
    pf_call_t *c = arg;
    dh_http_timeout_s = 90;
    c->r = dh_http(&fsd, "POST", "/api/v1/preflight", token, c->pem);
    atomic_fetch_add(c->done, 1);
    return NULL;
}

/* Pre-flights against a CDP that accepts and never answers take their whole retrieval budget;
 * eight of them at once leave the API answering /healthz and /api/v1/status meanwhile. Each
 * either completes with its verdict (crl_unreachable under strict revocation) or is refused
 * 429 over the limit; the first four admitted always complete. */
static void test_preflight_stalled_cdp(void)
{
    enum { N = 8 };
    /* 127.0.0.7:<CRL port> listens but never accepts: the kernel completes the handshake, the
     * request is sent, no answer ever comes. */
    int hole = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(hole >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)lab_http_port(lab.http))};
    sa.sin_addr.s_addr = htonl(0x7f000007);
    ASSERT_EQ(bind(hole, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ(listen(hole, 64), 0);

    char saved[600];
    fs_strlcpy(saved, cfg_path, sizeof(saved));
    lab_file(&lab, "preflight-stall.json", cfg_path, sizeof(cfg_path));
    write_own_config(cfg_path, "127.0.0.7", 0);
    dh_start(&fsd);
    cJSON_Delete(dh_wait_status(&fsd, has_groups, NULL)); /* the first snapshot is published */
    char *pem = dh_read_file(lab_file(&lab, "good-chain.pem", (char[600]){0}, 600));
    atomic_int done;
    atomic_init(&done, 0);
    pf_call_t calls[N];
    for (int i = 0; i < N; i++) {
        calls[i] = (pf_call_t){.pem = pem, .done = &done};
        ASSERT_EQ(pthread_create(&calls[i].t, NULL, post_preflight, &calls[i]), 0);
    }
    int polls = 0;
    while (atomic_load(&done) < N || polls < 4) {
        dh_http_timeout_s = 2; /* hang detector: before, all four API threads were held */
        cJSON *j = dh_get_json(&fsd, polls % 2 ? "/healthz" : "/api/v1/status", 200);
        cJSON_Delete(j);
        polls++;
        usleep(200000);
    }
    int ok = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(calls[i].t, NULL);
        cJSON *doc = cJSON_Parse(calls[i].r.body);
        ASSERT(doc != NULL);
        if (calls[i].r.status == 200) {
            expect_verdict(doc, "hq", "crl_unreachable");
            ok++;
        } else {
            if (calls[i].r.status != 429)
                fprintf(stderr, "pre-flight: %ld %s\n", calls[i].r.status, calls[i].r.body);
            ASSERT_EQ(calls[i].r.status, 429);
            ASSERT_STREQ(cJSON_GetObjectItem(doc, "code")->valuestring, "too_many_requests");
            refused++;
        }
        cJSON_Delete(doc);
        free(calls[i].r.body);
    }
    dh_http_timeout_s = 10;
    ASSERT(ok >= 4);
    ASSERT_EQ(ok + refused, N);
    free(pem);
    dh_stop(&fsd, SIGTERM);
    close(hole);
    fs_strlcpy(cfg_path, saved, sizeof(cfg_path));
}

/* `--check --shard i/n` counts the endpoints of each shard: the shards partition the fleet. */
static unsigned long long shard_count(const char *shard, unsigned long long *total)
{
    char cmd[1400], out[1024] = "";
    snprintf(cmd, sizeof(cmd), "%s run --check --shard %s -c %s", getenv("FLEETSCAN_BIN"), shard,
             cfg_path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 0);
    unsigned long long mine = 0;
    char *at = strstr(out, " endpoints, ");
    ASSERT(at != NULL);
    while (at > out && at[-1] >= '0' && at[-1] <= '9')
        at--;
    ASSERT(sscanf(at, "%llu endpoints, %llu in shard", total, &mine) == 2);
    return mine;
}

static void test_check_command(void)
{
    unsigned long long total = 0, t2 = 0, t3 = 0;
    unsigned long long a = shard_count("0/2", &total), b = shard_count("1/2", &t2);
    ASSERT_EQ(total, t2);
    ASSERT(a > 0 && b > 0);
    ASSERT_EQ(a + b, total);
    unsigned long long s3 =
        shard_count("0/3", &t3) + shard_count("1/3", &t3) + shard_count("2/3", &t3);
    ASSERT_EQ(s3, total);
    ASSERT_EQ(shard_count("0/1", &t3), total);

    char cmd[1400], out[1024] = "";
    snprintf(cmd, sizeof(cmd), "%s run --check -c %s 2>&1", getenv("FLEETSCAN_BIN"), cfg_path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 0);
    ASSERT_CONTAINS(out, "configuration OK");
    ASSERT_CONTAINS(out, "\nwarning: api_token_file: \""); /* the token file is mode 0644 */
    char bad[600];
    lab_file(&lab, "bad.json", bad, sizeof(bad));
    write_file(bad, "{\"groups\": [{\"name\": \"hq\", \"count\": 1, \"trust\": \"legcy\"}],"
                    " \"trust_stores\": {\"legacy\": {\"ca_dir\": \"/etc/ssl/certs\"}},"
                    " \"profiles\": {\"default\": {\"url\": \"https://ns.lab.test\"}}}");
    snprintf(cmd, sizeof(cmd), "%s run --check -c %s 2>&1", getenv("FLEETSCAN_BIN"), bad);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 2);
    ASSERT_CONTAINS(out, "groups[0].trust");
    ASSERT_CONTAINS(out, "legcy");

    /* What is not a regular file is refused at once, never read: a FIFO would block the
     * reader forever, /dev/zero never ends. `timeout` turns a hang into a failure (exit 124). */
    char fifo[600], root[600];
    lab_file(&lab, "fifo", fifo, sizeof(fifo));
    lab_file(&lab, "root.pem", root, sizeof(root));
    ASSERT(mkfifo(fifo, 0600) == 0);
    const char *const specials[] = {fifo, "/dev/zero", lab.dir};
    for (size_t i = 0; i < 3; i++) {
        for (int tf = 0; tf < 2; tf++) {
            char json[2048];
            snprintf(json, sizeof(json),
                     "{%s%s%s\"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},"
                     " \"profiles\": {\"default\": {\"url\": \"https://ns.lab.test\"}},"
                     " \"groups\": [{\"name\": \"hq\", \"count\": 1}]}",
                     tf ? "\"api_token_file\": \"" : "", tf ? specials[i] : "", tf ? "\", " : "",
                     tf ? root : specials[i]);
            write_file(bad, json);
            snprintf(cmd, sizeof(cmd), "timeout 10 %s run --check -c %s 2>&1",
                     getenv("FLEETSCAN_BIN"), bad);
            p = popen(cmd, "r");
            n = fread(out, 1, sizeof(out) - 1, p);
            out[n] = '\0';
            int st = pclose(p);
            fprintf(stderr, "   %s", out);
            ASSERT_EQ(WEXITSTATUS(st), 2);
            ASSERT_CONTAINS(out, tf ? "api_token_file: cannot read" : "ca_file: cannot read");
            ASSERT_CONTAINS(out,
                            specials[i] == lab.dir ? "is a directory" : "is not a regular file");
        }
    }
    snprintf(cmd, sizeof(cmd), "timeout 10 %s run --check -c %s 2>&1", getenv("FLEETSCAN_BIN"),
             fifo);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    ASSERT_EQ(WEXITSTATUS(pclose(p)), 2);
    ASSERT_CONTAINS(out, "is not a regular file (a FIFO)");
}

/* The first occurrence of from in text replaced by to, in a new string. */
static char *replace_once(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    ASSERT(at != NULL);
    char *r = malloc(strlen(text) + strlen(to) + 1);
    memcpy(r, text, (size_t)(at - text));
    sprintf(r + (at - text), "%s%s", to, at + strlen(from));
    return r;
}

static int count_in_file(const char *path, const char *needle)
{
    char *text = dh_read_file(path);
    int n = 0;
    for (const char *q = strstr(text, needle); q != NULL; q = strstr(q + 1, needle))
        n++;
    free(text);
    return n;
}

/* SIGHUP with a FIFO as a CA file or as the token file: the reload is refused at once and the
 * loop keeps serving (open() used to block the event loop forever). */
static void test_reload_fifo(void)
{
    char fifo[600], root[600], tok[600];
    lab_file(&lab, "fifo", fifo, sizeof(fifo)); /* made by test_check_command */
    lab_file(&lab, "root.pem", root, sizeof(root));
    lab_file(&lab, "token", tok, sizeof(tok));
    char *text = dh_read_file(cfg_path);
    const char *const swap[2] = {root, tok};
    for (int i = 0; i < 2; i++) {
        char *next = replace_once(text, swap[i], fifo);
        write_file(cfg_path, next);
        free(next);
        ASSERT(kill(fsd.pid, SIGHUP) == 0);
        int seen = 0;
        for (int k = 0; k < 100 && seen <= i; k++) { /* 10 s: a blocked loop fails, not hangs */
            seen = count_in_file(err_path, "is not a regular file (a FIFO)");
            if (seen <= i)
                usleep(100000);
        }
        ASSERT_EQ(seen, i + 1);
        ASSERT_EQ(count_in_file(err_path, i ? "reload refused, the running configuration stays: "
                                              "api_token_file: cannot read"
                                            : "reload refused, the running configuration stays: "
                                              "trust_stores.corp.ca_file: cannot read"),
                  1);
        dh_resp_t r = dh_http(&fsd, "GET", "/healthz", NULL, NULL);
        ASSERT_EQ(r.status, 200);
        free(r.body);
        cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
        ASSERT(dh_num(s, "endpoints.total") > 0);
        cJSON_Delete(s);
    }
    write_file(cfg_path, text);
    free(text);
}

/* Warnings about how the daemon runs: logged at start with a timestamp and listed in /status.
 * This daemon listens on loopback with a token file of mode 0644, as root when the tests are. */
static void test_daemon_warnings(void)
{
    cJSON *s = dh_get_json(&fsd, "/api/v1/status", 200);
    cJSON *ws = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "daemon"), "warnings"), *w;
    ASSERT(cJSON_IsArray(ws));
    int exposed = 0, root = 0, listen = 0;
    cJSON_ArrayForEach(w, ws)
    {
        const char *code = cJSON_GetObjectItem(w, "code")->valuestring;
        const char *msg = cJSON_GetObjectItem(w, "message")->valuestring;
        fprintf(stderr, "   %s: %s\n", code, msg);
        exposed += strcmp(code, "token_file_exposed") == 0 && strstr(msg, "has mode 0644") != NULL;
        root += strcmp(code, "running_as_root") == 0;
        listen += strcmp(code, "listen_not_loopback") == 0;
    }
    ASSERT_EQ(exposed, 1);
    ASSERT_EQ(root, geteuid() == 0);
    ASSERT_EQ(listen, 0);
    cJSON_Delete(s);
    /* "2025-11-24T16:00:00Z fleetscan: warning: api_token_file: ..." */
    char *errs = dh_read_file(err_path);
    const char *at = strstr(errs, "Z fleetscan: warning: api_token_file: ");
    ASSERT(at != NULL && at - errs >= 19 && at[-9] == 'T' && (at == errs + 19 || at[-20] == '\n'));
    if (geteuid() == 0)
        ASSERT_CONTAINS(errs, "Z fleetscan: warning: running as root");
    free(errs);
}

static char full_dir[600]; /* the tiny tmpfs of test_event_log_disk_full */

static void unmount_on_abort(int sig)
{
    umount2(full_dir, MNT_DETACH);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int dropped_and_probed(cJSON *s, void *arg)
{
    (void)arg;
    return dh_all_probed(s, NULL) && dh_num(s, "event_log.dropped_lines") > 0;
}

/* The event log on a full disk: lines are dropped and counted (/status, /metrics), never cut
 * short or glued onto the next one, and writing resumes on a fresh line once there is room.
 * A second daemon, on a 64 KiB tmpfs, listening on 0.0.0.0 (its listen warning is checked). */
static void test_event_log_disk_full(void)
{
    char err[256], filler[700], token_path[600];
    lab_file(&lab, "full", full_dir, sizeof(full_dir));
    ASSERT(mkdir(full_dir, 0755) == 0);
    if (mount("fleetscan-test", full_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") != 0) {
        fprintf(stderr, "   SKIPPED: cannot mount a tmpfs on %s (%s); run the tests as root\n",
                full_dir, strerror(errno));
        rmdir(full_dir);
        return;
    }
    signal(SIGABRT, unmount_on_abort);
    snprintf(log_path, sizeof(log_path), "%s/events.log", full_dir);
    snprintf(filler, sizeof(filler), "%s/filler", full_dir);
    lab_file(&lab, "fleetscan-full.json", cfg_path, sizeof(cfg_path));
    lab_file(&lab, "daemon-full.err", err_path, sizeof(err_path));
    lab_file(&lab, "token", token_path, sizeof(token_path));
    lab_fleet_opts_t fo = {.listen = "0.0.0.0:0",
                           .interval_s = 3600,
                           .scale = 0.05,
                           .token_file = token_path,
                           .event_log = log_path};
    ASSERT(lab_write_fleet_config(&lab, cfg_path, &fo, err) == 0);
    dh_start(&fsd);
    char port[16];
    ASSERT(strncmp(fsd.api, "http://0.0.0.0:", 15) == 0);
    fs_strlcpy(port, fsd.api + 14, sizeof(port)); /* ":PORT": talk to it over loopback */
    snprintf(fsd.api, sizeof(fsd.api), "http://127.0.0.1%s", port);
    cJSON *s = dh_wait_status(&fsd, dh_all_probed, NULL);
    cJSON_Delete(s);

    /* Fill the disk: the log's last page keeps what room it had, then nothing is left. */
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    static char block[4096];
    memset(block, 'f', sizeof(block));
    while (write(fd, block, sizeof(block)) > 0)
        ;
    ASSERT(errno == ENOSPC);
    close(fd);

    /* A reload that changes every group: ~100 state changes, far more than the room left. */
    fo.scale = 0.1;
    ASSERT(lab_write_fleet_config(&lab, cfg_path, &fo, err) == 0);
    ASSERT(kill(fsd.pid, SIGHUP) == 0);
    s = dh_wait_status(&fsd, dropped_and_probed, NULL);
    cJSON *el = cJSON_GetObjectItem(s, "event_log");
    char *shown = cJSON_PrintUnformatted(el);
    fprintf(stderr, "   %s\n", shown);
    free(shown);
    ASSERT_STREQ(cJSON_GetObjectItem(el, "path")->valuestring, log_path);
    ASSERT_CONTAINS(cJSON_GetObjectItem(el, "last_error")->valuestring, "No space left");
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(el, "last_error_at")));
    double dropped = dh_num(el, "dropped_lines");
    cJSON *ws = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "daemon"), "warnings"), *w;
    int listen = 0;
    cJSON_ArrayForEach(w, ws)
    {
        listen += strcmp(cJSON_GetObjectItem(w, "code")->valuestring, "listen_not_loopback") == 0 &&
                  strstr(cJSON_GetObjectItem(w, "message")->valuestring, "listen: 0.0.0.0:0 ");
    }
    ASSERT_EQ(listen, 1);
    cJSON_Delete(s);
    dh_resp_t r = dh_http(&fsd, "GET", "/metrics", NULL, NULL);
    const char *m = strstr(r.body, "\nfleetscan_event_log_dropped_lines_total{vantage=\"lab\"");
    ASSERT(m != NULL);
    ASSERT(strtod(strchr(m, '}') + 2, NULL) >= dropped);
    free(r.body);
    ASSERT(count_in_file(err_path, "event_log: cannot write") >= 1);

    /* Room again: the next changes are written, each on a line of its own, and every event is
     * either in the file or counted as dropped: records + dropped_lines == last_seq. */
    ASSERT(unlink(filler) == 0);
    fo.scale = 0.05;
    ASSERT(lab_write_fleet_config(&lab, cfg_path, &fo, err) == 0);
    ASSERT(kill(fsd.pid, SIGHUP) == 0);
    double last = -1, records = -2;
    /* each of the 2 reloads also wrote (or dropped) its "Configuration updated successfully"
     * line, which is no event, and added its config event, which has no line: they cancel */
    const double notes = 0;
    for (int i = 0; i < 300 && records + dropped != last + notes; i++) {
        usleep(100000);
        s = dh_wait_status(&fsd, dh_all_probed, NULL);
        dropped = dh_num(s, "event_log.dropped_lines");
        cJSON_Delete(s);
        cJSON *ev = dh_get_json(&fsd, "/api/v1/events?since=0", 200);
        last = dh_num(ev, "last_seq");
        cJSON_Delete(ev);
        char *log = dh_read_file(log_path);
        records = 0;
        for (const char *c = log; *c; c++)
            records += *c == '\n';
        free(log);
    }
    fprintf(stderr, "   %.0f records written, %.0f dropped, %.0f events\n", records, dropped, last);
    ASSERT_EQ(records + dropped, last + notes);
    char *log = dh_read_file(log_path);
    ASSERT(log[0] != '\0' && log[strlen(log) - 1] == '\n');
    ASSERT_EQ(event_log_records(log), records);
    free(log);
    test_stop();
    signal(SIGABRT, SIG_DFL);
    ASSERT(umount2(full_dir, 0) == 0);
    ASSERT(rmdir(full_dir) == 0);
}

/* A leaf of the lab's issuing CA for the lab host with CDP base + crl (then more, NULL-ended),
 * written with its issuer as <name>-chain.pem, served by a binding of its own (started into
 * *srv) unless srv is NULL. */
static void every_leaf(lab_cert_t *leaf, const char *name, const char *crl, const char *const *more,
                       lab_tls_t **srv)
{
    char err[256], base[128], cdp[200], aia[200], path[600];
    snprintf(base, sizeof(base), "http://%s:%d", LAB_CRL_HOST, lab_http_port(lab.http));
    snprintf(cdp, sizeof(cdp), "%s/%s", base, crl);
    snprintf(aia, sizeof(aia), "%s/inter.der", base);
    lab_cert_opts_t o = {.cn = LAB_HOST,
                         .dns_sans = (const char *const[]){LAB_HOST, NULL},
                         .ip_sans = (const char *const[]){"127.0.0.1", NULL},
                         .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                         .crl_url = cdp,
                         .crl_urls = more,
                         .aia_url = aia};
    ASSERT(lab_cert_issue(leaf, &o, &lab.pki.inter, err) == 0);
    X509 *chain[] = {leaf->cert, lab.pki.inter.cert};
    snprintf(path, sizeof(path), "%s-chain.pem", name);
    ASSERT(lab_write_pem(lab_file(&lab, path, (char[600]){0}, 600), chain, 2) == 0);
    if (srv != NULL) {
        lab_tls_opts_t so = {.mode = LAB_TLS_SERVE,
                             .cert = leaf->cert,
                             .key = leaf->key,
                             .chain = &lab.pki.inter.cert,
                             .nchain = 1};
        *srv = lab_tls_start(&so, err);
        ASSERT(*srv != NULL);
    }
}

static void serve_crl(const char *path, int64_t this_off_s, int64_t next_off_s)
{
    unsigned char *der;
    size_t len;
    char err[256];
    ASSERT(lab_crl_make(&der, &len, &lab.pki.inter, NULL, 0, this_off_s, next_off_s, NULL, err) ==
           0);
    lab_http_set(lab.http, path, 200, der, len, "application/pkix-crl");
    free(der);
}

static int farm_inconsistent(cJSON *s, void *arg)
{
    (void)arg;
    cJSON *g = group(s, "farm");
    return dh_all_probed(s, NULL) && g != NULL &&
           dh_num(g, "warnings.backend_inconsistent") == dh_num(g, "total");
}

/* The causes and warnings of SPEC §3 the lab fleet has no group for, each in a group of its own
 * on a second daemon, under the rules above. Its "ns" target (most endpoints) holds the groups
 * pre-flight judges through the API: a view without the server's name (dns_failure), an agent
 * URL that never answers (probe_timeout after the handshake), CDPs serving a stale CRL, the
 * root's CRL for a leaf of the issuing CA, a CRL that runs out in 2 h, a dead CDP URL before a
 * live one, a leaf expiring in 5 days. Servers that fail before any certificate are targets of
 * their own (a closed port, a full accept queue, non-TLS bytes, a reset, a close, a stalled
 * handshake, a TLS 1.0-only binding), as is a farm whose second node serves another valid leaf:
 * a profile that differs from a binding that answers would be profile_mismatch instead. */
static void test_agreement_every_cause(void)
{
    char err[256], base_cfg[600], saved[600];
    lab_cert_t leaf[5];
    lab_tls_t *srv[8] = {0};
    int bh[4] = {-1, -1, -1, -1};
    serve_crl("/stale.crl", -8 * 86400, -86400); /* the CA stopped publishing a day ago */
    serve_crl("/soon.crl", -3600, 2 * 3600);
    every_leaf(&leaf[0], "x-stale", "stale.crl", NULL, &srv[0]);
    every_leaf(&leaf[1], "x-wrongcrl", "root.crl", NULL, &srv[1]); /* the root's CRL */
    every_leaf(&leaf[2], "x-soon", "soon.crl", NULL, &srv[2]);
    char live[200];
    snprintf(live, sizeof(live), "http://%s:%d/inter.crl", LAB_CRL_HOST, lab_http_port(lab.http));
    every_leaf(&leaf[3], "x-deadcdp", "gone.crl", (const char *const[]){live, NULL}, &srv[3]);
    every_leaf(&leaf[4], "x-renewed", "inter.crl", NULL, NULL);
    X509 *inter[] = {lab.pki.inter.cert};
    lab_tls_opts_t so = {.mode = LAB_TLS_SERVE,
                         .cert = lab.pki.leaf[LAB_LEAF_GOOD].cert,
                         .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                         .chain = inter,
                         .nchain = 1,
                         .no_answer = 1};
    srv[4] = lab_tls_start(&so, err); /* the agent URL hangs */
    so.no_answer = 0;
    srv[5] = lab_tls_start(&so, err); /* the farm's first node */
    ASSERT(srv[4] != NULL && srv[5] != NULL);
    so.cert = leaf[4].cert; /* its second node, same port, another (valid) leaf */
    so.bind_addr = "127.0.0.2";
    so.port = lab_tls_port(srv[5]);
    srv[6] = lab_tls_start(&so, err);
    ASSERT(srv[6] != NULL);
    int blackhole = lab_blackhole("127.0.0.1", 0, bh);
    ASSERT(blackhole > 0);
    int tls10 = lab_port(&lab, LAB_SC_TLS10);

    static const char path[] = "/Altiris/NS/Agent/GetClientPolicies.aspx",
                      good[] = "good-chain.pem";
    int good_port = lab_port(&lab, LAB_SC_GOOD);
    /* clang-format off */
    const struct {
        agree_t a; /* group, cause, warning, chain, target (NULL: "ns"), present, chain_warning,
                      probe_warning, exact (set below) */
        int port;
        const char *path, *resolve; /* the view's addresses for the server's name ("": none) */
    } rows[] = {
        {{"base", NULL, NULL, good, NULL, 0, 0, 0, 0}, good_port, "", NULL},
        {{"no-dns", "dns_failure", NULL, good, NULL, 1, 0, 0, 0}, good_port, "", ""},
        {{"hang", "probe_timeout", NULL, good, NULL, 1, 0, 0, 0}, lab_tls_port(srv[4]), path, NULL},
        {{"crl-stale", "crl_expired", NULL, "x-stale-chain.pem", NULL, 0, 0, 0, 0},
         lab_tls_port(srv[0]), "", NULL},
        {{"crl-wrong", "crl_invalid", NULL, "x-wrongcrl-chain.pem", NULL, 0, 0, 0, 0},
         lab_tls_port(srv[1]), "", NULL},
        {{"crl-soon", NULL, "crl_expiring_soon", "x-soon-chain.pem", NULL, 0, 1, 1, 0},
         lab_tls_port(srv[2]), "", NULL},
        {{"url-dead", NULL, "revocation_url_dead", "x-deadcdp-chain.pem", NULL, 0, 1, 1, 0},
         lab_tls_port(srv[3]), "", NULL},
        {{"expiring", NULL, "cert_expiring_soon", "expiring-chain.pem", NULL, 0, 1, 1, 0},
         lab_port(&lab, LAB_SC_EXPIRING), "", NULL},
        {{"refused", "connect_refused", NULL, good, "down", 1, 0, 0, 0}, lab.closed_port, "", NULL},
        {{"blackholed", "connect_timeout", NULL, good, "blackhole", 1, 0, 0, 0}, blackhole, "", NULL},
        {{"not-tls", "tls_handshake_failed", NULL, good, "garbage", 1, 0, 0, 0},
         lab_port(&lab, LAB_SC_GARBAGE), "", NULL},
        {{"reset", "connection_closed", NULL, good, "reset", 1, 0, 0, 0},
         lab_port(&lab, LAB_SC_RESET), "", NULL},
        {{"closed", "connection_closed", NULL, good, "close", 1, 0, 0, 0},
         lab_port(&lab, LAB_SC_CLOSE), "", NULL},
        {{"stalled", "probe_timeout", NULL, good, "stall", 1, 0, 0, 0},
         lab_port(&lab, LAB_SC_STALL), "", NULL},
        {{"farm", NULL, "backend_inconsistent", good, "farm", 0, 0, 0, 0},
         lab_tls_port(srv[5]), "", "[\"127.0.0.1\", \"127.0.0.2\"]"},
        /* the endpoints allow TLS 1.0; then TLS 1.2 at least, the default */
        {{"tls10-weak", NULL, "weak_protocol", good, "tls10", 0, 0, 1, 0}, tls10, "", NULL},
        {{"tls10-strict", "tls_handshake_failed", NULL, good, "tls10", 1, 0, 0, 0}, tls10, "", NULL},
    };
    /* clang-format on */
    char root[600], tok[600];
    lab_file(&lab, "root.pem", root, sizeof(root));
    lab_file(&lab, "token", tok, sizeof(tok));
    lab_file(&lab, "every-cause.json", base_cfg, sizeof(base_cfg));
    FILE *f = fopen(base_cfg, "w");
    ASSERT(f != NULL);
    fprintf(
        f,
        "{\"vantage\": \"lab\", \"listen\": \"127.0.0.1:0\", \"api_token_file\": \"%s\",\n"
        " \"interval_s\": 3600, \"limits\": {\"max_in_flight\": 64, \"probe_timeout_ms\": 8000,"
        " \"connect_timeout_ms\": 2000, \"tls_timeout_ms\": 4000, \"request_timeout_ms\": 3000},\n"
        " \"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},\n"
        " \"reference\": {\"profile\": \"base\", \"trust\": \"corp\"},\n \"targets\": {\n"
        "  \"ns\": {\"url\": \"https://%s:%d/\"}",
        tok, root, LAB_HOST, lab_port(&lab, LAB_SC_GOOD));
    for (size_t i = 0; i < FS_ARRAY_SIZE(rows); i++)
        if (rows[i].a.target && rows[i].port > 0 &&
            (rows[i - 1].a.target == NULL || strcmp(rows[i - 1].a.target, rows[i].a.target) != 0))
            fprintf(f, ",\n  \"%s\": {\"url\": \"https://%s:%d/\"}", rows[i].a.target, LAB_HOST,
                    rows[i].port);
    fprintf(f, "},\n \"profiles\": {");
    for (size_t i = 0; i < FS_ARRAY_SIZE(rows); i++)
        if (rows[i].port > 0)
            fprintf(f, "%s\n  \"%s\": {\"url\": \"https://%s:%d%s\", \"target\": \"%s\"}",
                    i ? "," : "", rows[i].a.group, LAB_HOST, rows[i].port, rows[i].path,
                    rows[i].a.target ? rows[i].a.target : "ns");
    fprintf(f, "},\n \"groups\": [");
    size_t n = 0;
    agree_t want[FS_ARRAY_SIZE(rows)];
    for (size_t i = 0; i < FS_ARRAY_SIZE(rows); i++) {
        if (rows[i].port <= 0) { /* TLS 1.0 where the local OpenSSL cannot serve it */
            fprintf(stderr, "   %-16s skipped: %s\n", rows[i].a.group,
                    "this OpenSSL does not serve TLS 1.0");
            continue;
        }
        const char *res = rows[i].resolve;
        char view[200];
        if (res != NULL && res[0] == '\0')
            snprintf(view, sizeof(view), "\"%s\": \"127.0.0.1\"", LAB_CRL_HOST);
        else
            snprintf(view, sizeof(view), "\"%s\": %s, \"%s\": \"127.0.0.1\"", LAB_HOST,
                     res ? res : "\"127.0.0.1\"", LAB_CRL_HOST);
        fprintf(f,
                "%s\n  {\"name\": \"%s\", \"count\": %d, \"profile\": \"%s\", \"trust\": \"corp\","
                " \"revocation\": {\"mode\": \"strict\", \"url_timeout_ms\": 2000, \"budget_ms\": "
                "3000},%s \"network\": {\"resolve\": {%s}}}",
                n ? "," : "", rows[i].a.group, rows[i].a.target ? 2 : 6, rows[i].a.group,
                strcmp(rows[i].a.group, "tls10-weak") == 0 ? " \"tls\": {\"min_version\": \"1.0\"},"
                                                           : "",
                view);
        want[n] = rows[i].a;
        want[n].exact = 1;
        n++;
    }
    fprintf(f, "]}\n");
    ASSERT(fclose(f) == 0);

    fs_strlcpy(saved, cfg_path, sizeof(saved));
    fs_strlcpy(cfg_path, base_cfg, sizeof(cfg_path));
    dh_start(&fsd);
    cJSON *s = dh_wait_status(&fsd, dh_all_probed, NULL);
    cJSON_Delete(s);
    /* The farm's endpoints carry backend_inconsistent once both nodes were met: probe again. */
    dh_resp_t r = dh_http(&fsd, "POST", "/api/v1/scan", token, NULL);
    ASSERT_EQ(r.status, 202);
    free(r.body);
    cJSON *status = dh_wait_status(&fsd, farm_inconsistent, NULL);
    cJSON *forecast = dh_get_json(&fsd, "/api/v1/forecast?days=0", 200);
    for (size_t i = 0; i < n; i++)
        agree_check(status, forecast, &want[i]);
    cJSON_Delete(forecast);
    cJSON_Delete(status);
    dh_stop(&fsd, SIGTERM);
    for (size_t i = 0; i < FS_ARRAY_SIZE(srv); i++)
        lab_tls_stop(srv[i]);
    for (int i = 0; i < 4; i++)
        if (bh[i] >= 0)
            close(bh[i]);
    for (size_t i = 0; i < FS_ARRAY_SIZE(leaf); i++)
        lab_cert_free(&leaf[i]);
    fs_strlcpy(cfg_path, saved, sizeof(cfg_path));
}

int main(void)
{
    char err[256], token_path[600];
    ASSERT(getenv("FLEETSCAN_BIN") != NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ASSERT(lab_start(&lab, err) == 0);
    lab_file(&lab, "fleetscan.json", cfg_path, sizeof(cfg_path));
    lab_file(&lab, "events.log", log_path, sizeof(log_path));
    lab_file(&lab, "daemon.err", err_path, sizeof(err_path));
    lab_file(&lab, "token", token_path, sizeof(token_path));
    write_file(token_path, token);
    ASSERT(chmod(token_path, 0644) == 0); /* exposed: test_daemon_warnings expects the warning */
    lab_fleet_opts_t fo = {.listen = "127.0.0.1:0",
                           .interval_s = 3600,
                           .scale = 0.05,
                           .token_file = token_path,
                           .event_log = log_path};
    ASSERT(lab_write_fleet_config(&lab, cfg_path, &fo, err) == 0);
    RUN(test_check_command);
    dh_start(&fsd);
    RUN(test_first_cycle);
    RUN(test_daemon_warnings);
    RUN(test_endpoints);
    RUN(test_targets_and_causes);
    RUN(test_forecast);
    RUN(test_preflight);
    RUN(test_agreement);
    RUN(test_status_command);
    RUN(test_errors);
    RUN(test_metrics);
    RUN(test_thread_names);
    RUN(test_reload);
    RUN(test_reload_fifo);
    RUN(test_events_and_log);
    RUN(test_stop);
    RUN(test_event_log_disk_full);
    RUN(test_reload_large_config);
    RUN(test_preflight_stalled_cdp);
    RUN(test_agreement_every_cause);
    lab_stop(&lab);
    curl_global_cleanup();
    return 0;
}
