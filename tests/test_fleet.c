/* test_fleet.c - daemon/fleet.c in process, no binary: the lab fleet scheduled on a loop of
 * the test's own, aggregated into snapshots (every group's counts, causes and warnings, the
 * totals, probes counted), a scan, a reload that keeps unchanged groups, a stop that leaves no
 * handle on the loop, and what fleet_restore brings back before the first probe. */
#include "daemon/config.h"
#include "daemon/fleet.h"
#include "daemon/store.h"
#include "lab/scenarios.h"
#include "probes/util.h"
#include "tests/test.h"

#include <unistd.h>

static lab_t lab;
static uv_loop_t loop;
static snap_t *latest;
static int publishes;

static void on_publish(void *arg, snap_t *s)
{
    (void)arg;
    snap_unref(latest);
    latest = s;
    publishes++;
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
    return NULL;
}

/* Runs the loop until the latest snapshot satisfies pred (at most ~20 s of loop time). */
static void run_until(int (*pred)(const snap_t *s, void *arg), void *arg)
{
    for (int i = 0; i < 2000; i++) {
        uv_run(&loop, UV_RUN_ONCE);
        if (latest != NULL && pred(latest, arg))
            return;
    }
    fprintf(stderr, "the fleet never reached the expected state\n");
    abort();
}

static int all_probed(const snap_t *s, void *arg)
{
    (void)arg;
    return s->totals.pending == 0 && s->totals.total > 0;
}

static int probed_beyond(const snap_t *s, void *arg)
{
    return s->probes_total >= *(uint64_t *)arg;
}

static void expect_groups(const snap_t *s)
{
    uint32_t total = 0;
    for (size_t i = 0; i < lab_ngroups; i++) {
        const lab_group_t *lg = &lab_groups[i];
        const snap_group_t *g = group(s, lg->name);
        ASSERT(g != NULL);
        total += g->counts.total;
        int c = lg->expect_cause ? fs_cause_from_id(lg->expect_cause) : 0;
        uint32_t as_expected = lg->expect_cause ? g->counts.causes[c] : g->counts.online;
        if (as_expected != g->counts.total) { /* which group, and what it got instead */
            fprintf(stderr, "group %s: %u of %u %s; online %u, offline %u, pending %u:", lg->name,
                    as_expected, g->counts.total, lg->expect_cause ? lg->expect_cause : "online",
                    g->counts.online, g->counts.offline, g->counts.pending);
            for (int k = 1; k < FS_CAUSE_COUNT; k++)
                if (g->counts.causes[k])
                    fprintf(stderr, " %s %u", fs_cause_id(k), g->counts.causes[k]);
            fprintf(stderr, "\n");
        }
        if (lg->expect_cause) {
            ASSERT(c > 0);
            ASSERT_EQ(g->counts.causes[c], g->counts.total);
        } else {
            ASSERT_EQ(g->counts.online, g->counts.total);
        }
        if (lg->expect_warning) {
            int w = fs_warning_from_id(lg->expect_warning);
            ASSERT(w >= 0);
            ASSERT_EQ(g->counts.warnings[w], g->counts.total);
        }
    }
    ASSERT_EQ(s->totals.total, total);
    ASSERT_EQ(s->totals.online + s->totals.offline, total);
    ASSERT(s->probes_total >= total);
}

static const snap_endpoint_t *endpoint(const snap_t *s, const char *id)
{
    char buf[96];
    for (size_t i = 0; i < s->nendpoints; i++) {
        snap_endpoint_id(s, &s->endpoints[i], buf, sizeof(buf));
        if (strcmp(buf, id) == 0)
            return &s->endpoints[i];
    }
    return NULL;
}

static int none_restored(const snap_t *s, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < s->nendpoints; i++)
        if (s->endpoints[i].restored || s->endpoints[i].state == SNAP_PENDING)
            return 0;
    return 1;
}

/* Saved states come back marked restored, with their since; the first probe clears the mark,
 * keeps since when it agrees and makes an event (numbered after the saved ones) when not. */
static void test_restore(const char *path)
{
    char err[256], *groups[] = {"gone", "hq", "old-trust"};
    cfg_t *cfg;
    ASSERT(cfg_load(&cfg, path, err) == 0);
    fleet_t *f;
    fleet_opts_t fo = {
        .publish = on_publish, .publish_interval_ms = 50, .dns_override_only = 1, .quiet = 1};
    ASSERT(fleet_new(&f, &loop, cfg, &fo, err) == 0);
    store_saved_ep_t eps[] = {
        {.group = 0, .index = 0, .state = SNAP_ONLINE, .since = 500}, /* group gone */
        {.group = 1, .index = 0, .state = SNAP_ONLINE, .since = 1000, .last_probe = 1100},
        {.group = 1,
         .index = 1,
         .state = SNAP_OFFLINE,
         .cause = FS_CAUSE_UNTRUSTED_CA,
         .since = 2000},
        {.group = 1, .index = 99999, .state = SNAP_ONLINE, .since = 1}, /* beyond its count */
        {.group = 2,
         .index = 0,
         .state = SNAP_OFFLINE,
         .cause = FS_CAUSE_UNTRUSTED_CA,
         .warnings = FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON),
         .since = 3000},
    };
    snap_event_t evs[] = {{.seq = 7, .at = 2000, .subject = "hq-00001", .new_state = SNAP_OFFLINE},
                          {.seq = 9, .at = 3000, .subject = "old-trust-00000"}};
    store_saved_t sv = {.groups = groups,
                        .ngroups = 3,
                        .eps = eps,
                        .neps = FS_ARRAY_SIZE(eps),
                        .events = evs,
                        .nevents = 2,
                        .event_seq = 109};
    fleet_restored_t c;
    fleet_restore(f, &sv, &c);
    ASSERT_EQ(c.endpoints, 3);
    ASSERT_EQ(c.events, 2);
    ASSERT_EQ(c.cache, 0);
    fleet_publish(f);
    const snap_endpoint_t *e = endpoint(latest, "hq-00000");
    ASSERT(e != NULL && e->restored && e->state == SNAP_ONLINE && e->since == 1000);
    ASSERT_EQ(e->last_probe_at, 1100);
    e = endpoint(latest, "hq-00001");
    ASSERT(e->restored && e->state == SNAP_OFFLINE && e->cause == FS_CAUSE_UNTRUSTED_CA);
    e = endpoint(latest, "old-trust-00000");
    ASSERT(e->restored && e->since == 3000);
    ASSERT_EQ(e->warnings, FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON));
    ASSERT_EQ(endpoint(latest, "hq-00002")->restored, 0);
    ASSERT_EQ(group(latest, "hq")->counts.causes[FS_CAUSE_UNTRUSTED_CA], 1);
    ASSERT_EQ(latest->totals.online, 1);
    ASSERT_EQ(latest->nevents, 2);
    ASSERT_EQ(latest->events[0].seq, 7);
    ASSERT_EQ(latest->events[1].seq, 9);

    run_until(none_restored, NULL);
    e = endpoint(latest, "hq-00000");
    ASSERT(!e->restored && e->state == SNAP_ONLINE && e->since == 1000); /* confirmed */
    ASSERT(e->last_probe_at > 1100);
    e = endpoint(latest, "hq-00001");
    ASSERT(!e->restored && e->state == SNAP_ONLINE && e->since > 2000); /* it changed */
    e = endpoint(latest, "old-trust-00000");
    ASSERT(e->state == SNAP_OFFLINE && e->since == 3000);
    expect_groups(latest);
    int found = 0;
    for (size_t i = 0; i < latest->nevents; i++) {
        ASSERT(i == 0 || latest->events[i].seq > latest->events[i - 1].seq);
        if (strcmp(latest->events[i].subject, "hq-00001") == 0 && latest->events[i].seq > 9) {
            ASSERT_EQ(latest->events[i].old_state, SNAP_OFFLINE);
            ASSERT(latest->events[i].seq > 109);
            found = 1;
        }
    }
    ASSERT(found);
    int stopped = 0;
    fleet_stop(f, on_stopped, &stopped);
    while (!stopped)
        uv_run(&loop, UV_RUN_ONCE);
}

int main(void)
{
    char err[256], dir[] = "/tmp/fleetscan-fleet-XXXXXX", path[600];
    ASSERT(lab_start(&lab, err) == 0);
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/fleet.json", dir);
    lab_fleet_opts_t lo = {.interval_s = 600, .scale = 0.2};
    ASSERT(lab_write_fleet_config(&lab, path, &lo, err) == 0);
    cfg_t *cfg;
    ASSERT(cfg_load(&cfg, path, err) == 0);
    ASSERT(uv_loop_init(&loop) == 0);
    fleet_t *f;
    fleet_opts_t fo = {
        .publish = on_publish, .publish_interval_ms = 50, .dns_override_only = 1, .quiet = 1};
    if (fleet_new(&f, &loop, cfg, &fo, err) < 0)
        fprintf(stderr, "fleet_new: %s\n", err);

    fprintf(stderr, "-- first cycle\n");
    run_until(all_probed, NULL);
    expect_groups(latest);
    /* A group event per group (each lab group is uniform), not one per endpoint: the first
     * cycle reads as a few group lines beside the endpoint events. */
    size_t group_events = 0, endpoint_events = 0;
    for (size_t i = 0; i < latest->nevents; i++) {
        if (strncmp(latest->events[i].subject, "group:", 6) == 0) {
            group_events++;
            ASSERT_EQ(latest->events[i].old_state, SNAP_PENDING);
        } else {
            endpoint_events++;
        }
    }
    fprintf(stderr, "   %zu group events, %zu endpoint events\n", group_events, endpoint_events);
    ASSERT_EQ(group_events, lab_ngroups);
    ASSERT_EQ(endpoint_events, latest->totals.total);

    fprintf(stderr, "-- scan: every endpoint again\n");
    uint64_t want = latest->probes_total + latest->totals.total;
    fleet_scan_now(f);
    run_until(probed_beyond, &want);
    expect_groups(latest);

    fprintf(stderr, "-- reload: unchanged groups keep their state\n");
    const snap_group_t *hq = group(latest, "hq");
    uint32_t online = hq->counts.online;
    cfg_t *again;
    ASSERT(cfg_load(&again, path, err) == 0);
    ASSERT(fleet_reload(f, again, err) == 0);
    fleet_publish(f);
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(group(latest, "hq")->counts.online, online);
    ASSERT_EQ(latest->totals.pending, 0);

    fprintf(stderr, "-- stop\n");
    int stopped = 0;
    fleet_stop(f, on_stopped, &stopped);
    while (!stopped)
        uv_run(&loop, UV_RUN_ONCE);

    fprintf(stderr, "-- restore\n");
    test_restore(path);
    snap_unref(latest);
    latest = NULL;
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ASSERT(publishes > 1);
    unlink(path);
    rmdir(dir);
    lab_stop(&lab);
    return 0;
}
