/* test_targets.c - SPEC §4.1 with several servers: each profile belongs to a target, and
 * profile_mismatch is judged against that target's own reference only. The fleet runs in
 * process against the lab's loopback servers (a good binding, a closed port, a stalled
 * server, a reset, an unresolvable name, a binding with an expired certificate). */
#include "daemon/config.h"
#include "daemon/fleet.h"
#include "daemon/forecast.h"
#include "lab/scenarios.h"
#include "probes/util.h"
#include "tests/test.h"
#include "web/render.h"

#include <unistd.h>

static lab_t lab;
static uv_loop_t loop;
static snap_t *latest;

static void on_publish(void *arg, snap_t *s)
{
    (void)arg;
    snap_unref(latest);
    latest = s;
}

static void on_stopped(void *arg)
{
    *(int *)arg = 1;
}

static const snap_group_t *group(const snap_t *s, const char *name)
{
    for (size_t i = 0; i < s->ngroups; i++)
        if (strcmp(s->groups[i].name, name) == 0)
            return &s->groups[i];
    fprintf(stderr, "no group %s\n", name);
    abort();
}

static const char *cause_of(const snap_t *s, const char *name)
{
    const snap_group_t *g = group(s, name);
    if (g->counts.online == g->counts.total)
        return "online";
    for (int c = 1; c < FS_CAUSE_COUNT; c++)
        if (g->counts.causes[c] == g->counts.total)
            return fs_cause_id((fs_cause_t)c);
    return "(mixed or pending)";
}

static int all_probed(const snap_t *s)
{
    return s->totals.pending == 0 && s->totals.total > 0;
}

int main(void)
{
    char err[256], dir[] = "/tmp/fleetscan-targets-XXXXXX", path[600], root[600], json[8192];
    ASSERT(lab_start(&lab, err) == 0);
    ASSERT(mkdtemp(dir) != NULL);
    lab_file(&lab, "root.pem", root, sizeof(root));
    int good = lab_port(&lab, LAB_SC_GOOD), expired = lab_port(&lab, LAB_SC_EXPIRED);
    int stall = lab_port(&lab, LAB_SC_STALL), reset = lab_port(&lab, LAB_SC_RESET);
    int plain = lab_port(&lab, LAB_SC_PLAIN_HTTP), closed = lab.closed_port;
    int closed2 = lab_closed_port();
    ASSERT(closed2 > 0);
    /* A farm: two nodes behind one name on one port, one still serving the expired leaf. */
    X509 *inter[] = {lab.pki.inter.cert};
    lab_tls_opts_t n1 = {.mode = LAB_TLS_SERVE,
                         .cert = lab.pki.leaf[LAB_LEAF_GOOD].cert,
                         .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                         .chain = inter,
                         .nchain = 1,
                         .bind_addr = "127.0.0.1"};
    lab_tls_t *node1 = lab_tls_start(&n1, err);
    ASSERT(node1 != NULL);
    lab_tls_opts_t n2 = n1;
    n2.cert = lab.pki.leaf[LAB_LEAF_EXPIRED].cert;
    n2.key = lab.pki.leaf[LAB_LEAF_EXPIRED].key;
    n2.bind_addr = "127.0.0.2";
    n2.port = lab_tls_port(node1);
    lab_tls_t *node2 = lab_tls_start(&n2, err);
    ASSERT(node2 != NULL);
    int farm = lab_tls_port(node1);
    snprintf(json, sizeof(json),
             "{\"interval_s\": 600, \"limits\": {\"probe_timeout_ms\": 4000, \"tls_timeout_ms\": "
             "800, \"connect_timeout_ms\": 800},"
             " \"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}},"
             " \"targets\": {"
             "   \"ns\": {\"url\": \"https://ns.lab.test:%d/\"},"
             "   \"pkg\": {\"url\": \"https://pkg.lab.test:%d/\"},"
             "   \"stalled\": {\"url\": \"https://stall.lab.test:%d/\"},"
             "   \"resetting\": {\"url\": \"https://reset.lab.test:%d/\"},"
             "   \"gone\": {\"url\": \"https://gone.lab.test/\"},"
             "   \"old\": {\"url\": \"https://ns.lab.test:%d/\"},"
             "   \"farm\": {\"url\": \"https://ns.lab.test:%d/\"}},"
             " \"profiles\": {"
             "   \"default\": {\"url\": \"https://ns.lab.test:%d/Altiris\"},"
             "   \"pkg\": {\"url\": \"https://pkg.lab.test:%d/\"},"
             "   \"stalled\": {\"url\": \"https://stall.lab.test:%d/\"},"
             "   \"resetting\": {\"url\": \"https://reset.lab.test:%d/\"},"
             "   \"gone\": {\"url\": \"https://gone.lab.test/\"},"
             "   \"ns-wrong-port\": {\"url\": \"https://ns.lab.test:%d/\", \"target\": \"ns\"},"
             "   \"ns-http\": {\"url\": \"http://ns.lab.test:%d/\", \"target\": \"ns\"},"
             "   \"old-wrong-port\": {\"url\": \"https://ns.lab.test:%d/\", \"target\": \"old\"},"
             "   \"old\": {\"url\": \"https://ns.lab.test:%d/\"},"
             "   \"farm\": {\"url\": \"https://ns.lab.test:%d/\"},"
             "   \"ns-stale-dns\": {\"url\": \"https://ns.lab.test:%d/Altiris\"}},"
             " \"groups\": [",
             root, good, closed, stall, reset, expired, farm, good, closed, stall, reset, closed2,
             plain, closed2, expired, farm, good);
    static const struct {
        const char *group, *cause;
    } want[] = {
        {"default", "online"},
        {"pkg", "connect_refused"},   /* the second server's own failure */
        {"stalled", "probe_timeout"}, /* a stalled target times out, it is no mismatch */
        {"resetting", "connection_closed"},
        {"gone", "dns_failure"},
        {"ns-wrong-port", "profile_mismatch"}, /* its target answers on the right port */
        {"ns-http", "profile_mismatch"},
        {"old-wrong-port", "profile_mismatch"}, /* its target answers, with an expired leaf */
        {"old", "cert_expired"},
        {"farm", "(mixed or pending)"}, /* some endpoints meet the expired node */
        /* the binding of ns, but its DNS view sends the name to an address where nothing
         * listens: its own failure, and no reason to call ns's addresses inconsistent */
        {"ns-stale-dns", "connect_refused"},
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(want); i++) {
        size_t n = strlen(json);
        snprintf(json + n, sizeof(json) - n,
                 "%s{\"name\": \"%s\", \"count\": 2, \"profile\": \"%s\", \"trust\": \"corp\","
                 " \"revocation\": {\"mode\": \"off\"}, \"network\": {\"resolve\": {"
                 "\"ns.lab.test\": %s, \"pkg.lab.test\": \"127.0.0.1\","
                 "\"stall.lab.test\": \"127.0.0.1\", \"reset.lab.test\": \"127.0.0.1\"}}}",
                 i ? "," : "", want[i].group, want[i].group,
                 /* the farm's view: the name has both nodes */
                 strcmp(want[i].group, "farm") == 0           ? "[\"127.0.0.1\", \"127.0.0.2\"]"
                 : strcmp(want[i].group, "ns-stale-dns") == 0 ? "\"127.0.0.2\""
                                                              : "\"127.0.0.1\"");
    }
    strcat(json, "]}");
    snprintf(path, sizeof(path), "%s/fleet.json", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL && fputs(json, f) >= 0 && fclose(f) == 0);
    cfg_t *cfg;
    if (cfg_load(&cfg, path, err) < 0)
        fprintf(stderr, "config: %s\n", err);
    ASSERT(cfg != NULL);
    ASSERT_EQ(cfg->ntargets, 7);
    /* profiles find their targets: by scheme, host and port, else by "target" */
    ASSERT_STREQ(cfg->targets[cfg->profiles[1].target_idx].name, "pkg");
    ASSERT_STREQ(cfg->targets[cfg->profiles[8].target_idx].name, "old");

    ASSERT(uv_loop_init(&loop) == 0);
    fleet_t *fl;
    fleet_opts_t fo = {
        .publish = on_publish, .publish_interval_ms = 50, .dns_override_only = 1, .quiet = 1};
    ASSERT(fleet_new(&fl, &loop, cfg, &fo, err) == 0);
    for (int i = 0; i < 4000 && (latest == NULL || !all_probed(latest)); i++)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT(latest != NULL && all_probed(latest));
    int bad = 0;
    for (size_t i = 0; i < FS_ARRAY_SIZE(want); i++) {
        const char *got = cause_of(latest, want[i].group);
        fprintf(stderr, "   %-16s %-20s (want %s)\n", want[i].group, got, want[i].cause);
        bad |= strcmp(got, want[i].cause) != 0;
    }
    ASSERT(!bad);
    /* The farm: endpoints meet both nodes (online on one, cert_expired on the other) and all
     * of them carry backend_inconsistent; the target lists both addresses and their leaves. */
    const snap_group_t *fg = group(latest, "farm");
    fprintf(stderr, "   farm: %u online, %u cert_expired, %u backend_inconsistent of %u\n",
            fg->counts.online, fg->counts.causes[FS_CAUSE_CERT_EXPIRED],
            fg->counts.warnings[FS_WARN_BACKEND_INCONSISTENT], fg->counts.total);
    ASSERT(fg->counts.online >= 1);
    ASSERT(fg->counts.causes[FS_CAUSE_CERT_EXPIRED] >= 1);
    ASSERT(fg->counts.warnings[FS_WARN_BACKEND_INCONSISTENT] >= 1);
    /* every target has its own reference, by name */
    ASSERT_EQ(latest->ntargets, 7);
    for (size_t i = 0; i < latest->ntargets; i++)
        ASSERT(latest->targets[i] != NULL &&
               strcmp(latest->targets[i]->name, cfg->targets[i].name) == 0);
    /* Each group names its target, and so do its events and its forecast (issue 10): a profile
     * with an explicit "target" belongs to it, whatever its URL. */
    static const char *const group_target[][2] = {{"default", "ns"},
                                                  {"ns-wrong-port", "ns"},
                                                  {"ns-http", "ns"},
                                                  {"old-wrong-port", "old"},
                                                  {"farm", "farm"}};
    char *fc = forecast_json(latest, 0, latest->generated_at);
    wbuf_t eb;
    wbuf_init(&eb, 4096, 1 << 22);
    ASSERT_EQ(render_events(latest, 0, 0, &eb), 0);
    for (size_t i = 0; i < FS_ARRAY_SIZE(group_target); i++) {
        const char *gname = group_target[i][0], *tname = group_target[i][1];
        char subject[96], want_json[160];
        ASSERT_STREQ(group(latest, gname)->target, tname);
        snprintf(subject, sizeof(subject), "group:%s", gname);
        size_t nev = 0;
        for (size_t k = 0; k < latest->nevents; k++) {
            const snap_event_t *ev = &latest->events[k];
            size_t gl = strlen(gname);
            int endpoint_of_group = strncmp(ev->subject, gname, gl) == 0 &&
                                    ev->subject[gl] == '-' &&
                                    strchr(ev->subject + gl + 1, '-') == NULL;
            if (strcmp(ev->subject, subject) == 0 || endpoint_of_group) {
                ASSERT_STREQ(ev->target, tname);
                nev++;
            }
        }
        ASSERT(nev >= 1); /* at least the group's own event */
        snprintf(want_json, sizeof(want_json), "\"subject\":\"%s\",", subject);
        const char *at = strstr(eb.data, want_json);
        ASSERT(at != NULL);
        snprintf(want_json, sizeof(want_json), "\"target\":\"%s\"}", tname);
        ASSERT(strstr(at, want_json) != NULL && strstr(at, want_json) < strstr(at, "}"));
        snprintf(want_json, sizeof(want_json), "{\"name\":\"%s\",\"target\":\"%s\",", gname, tname);
        ASSERT_CONTAINS(fc, want_json);
    }
    wbuf_free(&eb);
    free(fc);

    /* A group of ns whose own DNS view meets another address is no farm node of ns: ns's
     * endpoints carry no backend_inconsistent, and ns lists only the address its view meets. */
    const snap_group_t *dg = group(latest, "default");
    ASSERT_EQ(dg->counts.warnings[FS_WARN_BACKEND_INCONSISTENT], 0);
    ASSERT(latest->targets[0] != NULL && !latest->targets[0]->inconsistent);
    ASSERT_EQ(latest->targets[0]->nbackends, 1);

    const snap_target_t *ft = latest->targets[6];
    ASSERT(ft != NULL && ft->nbackends == 2 && ft->inconsistent);
    ASSERT(strcmp(ft->backends[0].leaf_sha1, ft->backends[1].leaf_sha1) != 0);
    /* /metrics says the same per address: both nodes, one of them down, and the disagreement */
    wbuf_t mb;
    char want_line[256];
    wbuf_init(&mb, 4096, 1 << 22);
    ASSERT_EQ(render_metrics(latest, &mb), 0);
    ASSERT(ft->backends[0].online != ft->backends[1].online); /* one node has the old binding */
    for (size_t k = 0; k < 2; k++) {
        snprintf(want_line, sizeof(want_line), "target=\"%s\",address=\"%s\"} %d\n", ft->name,
                 ft->backends[k].addr, ft->backends[k].online);
        ASSERT_CONTAINS(strstr(mb.data, "\nfleetscan_target_address_up{"), want_line);
    }
    snprintf(want_line, sizeof(want_line), "target=\"%s\"} 1\n", ft->name);
    ASSERT_CONTAINS(strstr(mb.data, "\nfleetscan_target_backend_inconsistent{"), want_line);
    wbuf_free(&mb);

    int stopped = 0;
    fleet_stop(fl, on_stopped, &stopped);
    while (!stopped)
        uv_run(&loop, UV_RUN_ONCE);
    snap_unref(latest);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    unlink(path);
    rmdir(dir);
    lab_tls_stop(node1);
    lab_tls_stop(node2);
    lab_stop(&lab);
    return 0;
}
