/* test_fleet.c - daemon/fleet.c in process, no binary: the lab fleet scheduled on a loop of
 * the test's own, aggregated into snapshots (every group's counts, causes and warnings, the
 * totals, probes counted), a scan, a reload that keeps unchanged groups, and a stop that
 * leaves no handle on the loop. */
#include "daemon/config.h"
#include "daemon/fleet.h"
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
        if (lg->expect_cause) {
            int c = fs_cause_from_id(lg->expect_cause);
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
