/* cmd_run.c - `fleetscan run -c FILE`: the daemon. Owns the loop, the signals, the fleet and
 * the API; SIGHUP reloads the configuration, SIGTERM/SIGINT drain and exit 0. */
#include "daemon/cli.h"
#include "daemon/config.h"
#include "daemon/fleet.h"
#include "daemon/forecast.h"
#include "daemon/preflight.h"
#include "daemon/store.h"
#include "probes/fetch.h"
#include "probes/tlsc.h"
#include "probes/util.h"
#include "web/api.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

/* The loop stores its pulse here this often; /healthz reports a loop that stopped ticking
 * (api_opts_t.heartbeat_ms, API_DEFAULT_STALL_MS). */
#define RUN_HEARTBEAT_MS 250

typedef struct run_s run_t;

/* A SIGHUP's reload: the file is parsed and the new generation built on libuv's thread pool,
 * then swapped in on the loop (reload_done). */
typedef struct reload_s {
    uv_work_t req;
    run_t *r;
    fleet_next_t *next;
    int rc;
    char err[256];
} reload_t;

struct run_s {
    uv_loop_t loop;
    uv_signal_t sighup, sigterm, sigint;
    uv_async_t scan;
    uv_timer_t heartbeat;
    _Atomic int64_t heartbeat_ms; /* uv_hrtime() / 1e6 at the last heartbeat tick */
    reload_t *reload;             /* the reload in progress, or NULL */
    int reload_again;             /* a SIGHUP arrived meanwhile: reload once more after it */
    fleet_t *fleet;
    api_t *api;
    store_t *store;        /* the state database, NULL when off */
    uint64_t cache_cursor; /* the retrieval cache's entries handed to the store so far */
    const char *config_path;
    int shard_override;
    uint32_t shard_i, shard_n;
    int stopping;
    uv_timer_t duration;
    const daemon_opts_t *o;
    pthread_mutex_t shared_mu; /* guards api_cfg, latest, scan_open and store (the pointer):
                                  the loop writes, API threads read */
    const cfg_t *api_cfg;      /* the configuration the loop runs, one reference for the API
                                  threads (pre-flight): the same immutable cfg_t, not a re-read */
    snap_t *latest;            /* the newest snapshot, for pre-flight's view of the groups */
    int64_t reload_at;         /* the last SIGHUP reload: when (0: none), applied or refused, */
    int reload_ok;             /* and why not (loop thread only) */
    char reload_message[256];
    snap_reload_t reloads[SNAP_RELOADS_MAX]; /* the newest reloads, oldest first */
    size_t nreloads;
    int scan_open; /* the scan handle accepts sends */
};

static int load(run_t *r, cfg_t **out, char err[256]);

/* Shows API threads the configuration the fleet runs now (a reference to the very cfg_t the
 * loop uses: immutable, so shared without copying or reading the file again). */
static void publish_api_cfg(run_t *r)
{
    const cfg_t *cfg = cfg_ref(fleet_cfg(r->fleet));
    pthread_mutex_lock(&r->shared_mu);
    const cfg_t *old = r->api_cfg;
    r->api_cfg = cfg;
    pthread_mutex_unlock(&r->shared_mu);
    cfg_unref(old);
}

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: fleetscan run -c FILE [--check] [--shard i/n] [--state-db PATH]\n"
            "  -c, --config FILE  configuration (JSON with comments; see docs/CONFIG.md)\n"
            "  --check            validate the configuration and exit (0 valid, 2 invalid)\n"
            "  --shard i/n        probe only shard i of n (overrides \"shard\" in the file)\n"
            "  --state-db PATH    the state database (endpoint states, events, history, CRL\n"
            "                     cache; default: beside FILE, NAME.state.db; \":memory:\": none)\n"
            "signals: SIGHUP reloads the configuration, SIGTERM/SIGINT stop (exit 0)\n");
}

static int load(run_t *r, cfg_t **out, char err[256])
{
    if (cfg_load(out, r->config_path, err) < 0)
        return -1;
    if (r->shard_override) {
        (*out)->shard_index = r->shard_i;
        (*out)->shard_count = r->shard_n;
    }
    return 0;
}

static void on_cache_entry(void *arg, const rev_cache_item_t *it)
{
    store_add_cache(arg, it);
}

static void on_event(void *arg, const snap_event_t *ev, const char *message)
{
    run_t *r = arg;
    if (r->store != NULL)
        store_add_event(r->store, ev, message);
}

static void on_publish(void *arg, snap_t *s)
{
    run_t *r = arg;
    s->reload_at = r->reload_at; /* still the loop's own snapshot: nobody reads it yet */
    s->reload_ok = r->reload_ok;
    fs_strlcpy(s->reload_message, r->reload_message, sizeof(s->reload_message));
    memcpy(s->reloads, r->reloads, r->nreloads * sizeof(*s->reloads));
    s->nreloads = r->nreloads;
    if (r->store != NULL) {
        store_status(r->store, &s->state_db);
        if (r->fleet != NULL)
            fleet_cache_export(r->fleet, &r->cache_cursor, on_cache_entry, r->store);
        store_submit(r->store, s);
    }
    pthread_mutex_lock(&r->shared_mu);
    snap_t *old = r->latest;
    r->latest = snap_ref(s);
    pthread_mutex_unlock(&r->shared_mu);
    snap_unref(old);
    if (r->api != NULL)
        api_publish(r->api, s);
    else
        snap_unref(s);
}

/* Each group's present certificate-independent cause (SPEC §4.5: the profile's own state), by
 * group name from the snapshot: the one cause of a group whose endpoints are all offline. */
static fs_cause_t *current_causes(const snap_t *s, const cfg_t *cfg)
{
    fs_cause_t *c = fs_xcalloc(cfg->ngroups ? cfg->ngroups : 1, sizeof(*c));
    for (size_t i = 0; s != NULL && i < cfg->ngroups; i++)
        for (size_t k = 0; k < s->ngroups; k++) {
            const snap_counts_t *n = &s->groups[k].counts;
            if (strcmp(s->groups[k].name, cfg->groups[i].name) != 0 || n->online > 0 ||
                n->offline == 0)
                continue;
            for (int cause = 1; cause < FS_CAUSE_COUNT; cause++)
                if (n->causes[cause] > n->causes[c[i]])
                    c[i] = (fs_cause_t)cause;
        }
    return c;
}

/* Runs on an API pre-flight thread: a private loop evaluates the chain against the
 * configuration and the groups' present state. */
static int on_preflight(void *arg, const char *body, size_t len, const char *target,
                        char **json_out, int *status)
{
    run_t *r = arg;
    pthread_mutex_lock(&r->shared_mu);
    const cfg_t *h = r->api_cfg ? cfg_ref(r->api_cfg) : NULL;
    snap_t *snap = r->latest ? snap_ref(r->latest) : NULL;
    pthread_mutex_unlock(&r->shared_mu);
    if (h == NULL) {
        snap_unref(snap);
        *json_out = fs_xstrdup("{\"error\":\"not ready\",\"code\":\"not_ready\"}");
        *status = 503;
        return 0;
    }
    long ti = -1;
    if (target != NULL) {
        for (size_t i = 0; i < h->ntargets && ti < 0; i++)
            if (strcmp(h->targets[i].name, target) == 0)
                ti = (long)i;
        if (ti < 0) {
            snap_unref(snap);
            cfg_unref(h);
            cJSON *e = cJSON_CreateObject();
            char msg[160];
            snprintf(msg, sizeof(msg), "target: no target is named \"%s\"", target);
            cJSON_AddStringToObject(e, "error", msg);
            cJSON_AddStringToObject(e, "code", "bad_parameter");
            *json_out = cJSON_PrintUnformatted(e);
            cJSON_Delete(e);
            *status = 400;
            return 0;
        }
    }
    cJSON *doc;
    char err[256];
    fs_cause_t *current = current_causes(snap, h);
    snap_unref(snap);
    int prc = preflight_run(h, (const unsigned char *)body, len, r->o->dns_override_only, ti,
                            current, &doc, err);
    free(current);
    if (prc < 0) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", err);
        cJSON_AddStringToObject(e, "code", "bad_chain");
        *json_out = cJSON_PrintUnformatted(e);
        cJSON_Delete(e);
        *status = 400;
    } else {
        *json_out = cJSON_PrintUnformatted(doc);
        cJSON_Delete(doc);
        *status = 200;
    }
    cfg_unref(h);
    return 0;
}

/* Runs on an API thread, from the snapshot the API serves, never touching the loop. Evaluated
 * at the snapshot's time, so the answer is a function of the snapshot and days: the API keeps
 * it for every client asking the same. */
static int on_forecast(void *arg, const snap_t *s, int days, char **json_out, int *status)
{
    (void)arg;
    *json_out = forecast_json(s, days, s->generated_at);
    *status = *json_out != NULL ? 200 : 500;
    return *json_out != NULL ? 0 : UV_ENOMEM;
}

/* Runs on an API thread: the state database's read-only connection, never the loop. */
static int on_history(void *arg, int64_t since, int64_t until, int64_t step, char **json_out,
                      int *status)
{
    run_t *r = arg;
    char err[256] = "the state database is off (run --state-db, docs/OPERATIONS.md)";
    pthread_mutex_lock(&r->shared_mu); /* set after the API started; closed after it stopped */
    store_t *st = r->store;
    pthread_mutex_unlock(&r->shared_mu);
    if (st != NULL && store_history_json(st, since, until, step, json_out, err) == 0) {
        *status = 200;
        return 0;
    }
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "error", err);
    cJSON_AddStringToObject(e, "code", "unavailable");
    *json_out = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    *status = 503;
    return *json_out != NULL ? 0 : UV_ENOMEM;
}

static void on_scan_async(uv_async_t *a)
{
    run_t *r = a->data;
    if (!r->stopping)
        fleet_scan_now(r->fleet);
}

/* Runs on an API thread: hand over to the loop. */
static void on_scan_request(void *arg)
{
    run_t *r = arg;
    pthread_mutex_lock(&r->shared_mu); /* never send on a handle the loop is closing */
    if (r->scan_open)
        uv_async_send(&r->scan);
    pthread_mutex_unlock(&r->shared_mu);
}

static void on_fleet_stopped(void *arg)
{
    run_t *r = arg;
    r->fleet = NULL;
    pthread_mutex_lock(&r->shared_mu);
    r->scan_open = 0;
    pthread_mutex_unlock(&r->shared_mu);
    uv_close((uv_handle_t *)&r->heartbeat, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->scan, NULL);
    uv_close((uv_handle_t *)&r->duration, NULL);
}

static void on_heartbeat(uv_timer_t *t)
{
    run_t *r = t->data;
    atomic_store(&r->heartbeat_ms, (int64_t)(uv_hrtime() / 1000000));
}

/* On libuv's thread pool: everything that grows with the file (parsing, trust stores, the
 * endpoint array, matching unchanged groups), while the loop keeps probing and publishing. */
static void reload_work(uv_work_t *w)
{
    reload_t *rl = container_of(w, reload_t, req);
    cfg_t *cfg;
    rl->rc = load(rl->r, &cfg, rl->err);
    if (rl->rc < 0)
        return;
    rl->rc = fleet_reload_build(rl->next, cfg, rl->err);
    if (rl->rc < 0)
        cfg_free(cfg);
}

static void start_reload(run_t *r);

/* A reload happened now: the last one for config.last_reload, and one more for config.reloads. */
static void note_reload(run_t *r, int ok, const char *message)
{
    r->reload_at = fs_wall_ms() / 1000;
    r->reload_ok = ok;
    fs_strlcpy(r->reload_message, message, sizeof(r->reload_message));
    if (r->nreloads == SNAP_RELOADS_MAX) {
        memmove(r->reloads, r->reloads + 1, (SNAP_RELOADS_MAX - 1) * sizeof(*r->reloads));
        r->nreloads--;
    }
    r->reloads[r->nreloads++] = (snap_reload_t){.at = r->reload_at, .ok = ok};
}

/* Back on the loop: swap the generation in (or report why not), then run a reload that was
 * asked for meanwhile. */
static void reload_done(uv_work_t *w, int status)
{
    reload_t *rl = container_of(w, reload_t, req);
    run_t *r = rl->r;
    r->reload = NULL;
    if (status != 0 || r->stopping || r->fleet == NULL) {
        fleet_next_free(rl->next);
    } else if (rl->rc < 0) {
        char ts[32];
        fprintf(stderr, "%s fleetscan: reload refused, the running configuration stays: %s\n",
                fs_rfc3339(fs_wall_ms() / 1000, ts, sizeof(ts)), rl->err);
        note_reload(r, 0, rl->err);
        fleet_config_event(r->fleet, 0, rl->err);
        fleet_next_free(rl->next);
        fleet_publish(r->fleet); /* /status says so now */
    } else {
        note_reload(r, 1, "configuration reloaded");
        fleet_reload_apply(r->fleet, rl->next);
        fleet_config_event(r->fleet, 1, "configuration reloaded");
        publish_api_cfg(r);
    }
    free(rl);
    if (r->reload_again && !r->stopping && r->fleet != NULL) {
        r->reload_again = 0;
        start_reload(r);
    }
}

static void start_reload(run_t *r)
{
    reload_t *rl = fs_xcalloc(1, sizeof(*rl));
    rl->r = r;
    rl->next = fleet_reload_begin(r->fleet);
    int rc = uv_queue_work(&r->loop, &rl->req, reload_work, reload_done);
    if (rc != 0) {
        fprintf(stderr, "fleetscan: reload refused: cannot queue it: %s\n", uv_strerror(rc));
        fleet_next_free(rl->next);
        free(rl);
        return;
    }
    r->reload = rl;
}

static void on_signal(uv_signal_t *s, int signum)
{
    run_t *r = s->data;
    if (signum == SIGHUP) {
        if (r->stopping)
            return;
        if (r->reload != NULL) { /* coalesced: one more reload reads the file after this one */
            r->reload_again = 1;
            return;
        }
        start_reload(r);
        return;
    }
    if (r->stopping) {
        /* A second stop signal: an operator does not wait for slow sockets to drain. */
        fprintf(stderr, "fleetscan: second stop signal, exiting now\n");
        _exit(1);
    }
    r->stopping = 1;
    fprintf(stderr, "fleetscan: %s received, stopping (again to exit at once)\n",
            signum == SIGTERM ? "SIGTERM" : "SIGINT");
    fleet_publish(r->fleet); /* the last state, for the API and the state database */
    fleet_stop(r->fleet, on_fleet_stopped, r);
}

static void print_summary(const cfg_t *cfg)
{
    unsigned long long mine = 0;
    for (size_t i = 0; i < cfg->ngroups; i++)
        for (uint32_t k = 0; k < cfg->groups[i].count; k++)
            mine += (unsigned long long)fleet_in_shard(cfg, cfg->groups[i].name, k);
    printf("configuration OK: vantage \"%s\", %zu trust store%s, %zu profile%s, %zu group%s, "
           "%llu endpoints, %llu in shard %u/%u, API on %s:%d\n",
           cfg->vantage, cfg->ntrust, cfg->ntrust == 1 ? "" : "s", cfg->nprofiles,
           cfg->nprofiles == 1 ? "" : "s", cfg->ngroups, cfg->ngroups == 1 ? "" : "s",
           (unsigned long long)cfg->total_endpoints, mine, cfg->shard_index, cfg->shard_count,
           cfg->listen_host, cfg->listen_port);
    cfg_warning_t w[CFG_MAX_WARNINGS];
    for (size_t i = 0, n = cfg_warnings(cfg, w); i < n; i++)
        printf("warning: %s\n", w[i].message);
}

int cmd_run(int argc, char **argv)
{
    daemon_opts_t o;
    memset(&o, 0, sizeof(o));
    int check = 0;
    const char *v, *shard = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            run_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if ((m = cli_opt_value(argc, argv, &i, "-c", &v)) != 0 ||
                   (m = cli_opt_value(argc, argv, &i, "--config", &v)) != 0) {
            if (m < 0)
                return 2;
            path = v;
        } else if ((m = cli_opt_value(argc, argv, &i, "--shard", &v)) != 0) {
            if (m < 0)
                return 2;
            shard = v;
        } else if ((m = cli_opt_value(argc, argv, &i, "--state-db", &v)) != 0) {
            if (m < 0)
                return 2;
            o.state_db = v;
        } else {
            fprintf(stderr, "fleetscan: run: unexpected argument \"%s\"\n", argv[i]);
            run_usage(stderr);
            return 2;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "fleetscan: run: missing -c FILE\n");
        run_usage(stderr);
        return 2;
    }
    if (shard != NULL) {
        if (cfg_parse_shard(shard, &o.shard_i, &o.shard_n) < 0) {
            fprintf(stderr, "fleetscan: run: --shard \"%s\": expected i/n with 0 <= i < n <= %u\n",
                    shard, CFG_MAX_SHARDS);
            return 2;
        }
        o.shard_override = 1;
    }
    if (check) {
        cfg_t *cfg;
        char err[256];
        if (cfg_load(&cfg, path, err) < 0) {
            fprintf(stderr, "fleetscan: %s: %s\n", path, err);
            return 2;
        }
        if (o.shard_override) {
            cfg->shard_index = o.shard_i;
            cfg->shard_count = o.shard_n;
        }
        print_summary(cfg);
        cfg_free(cfg);
        return 0;
    }
    o.dns_override_only = getenv("FLEETSCAN_DNS_OVERRIDE_ONLY") != NULL;
    /* This process never signs (cmd_demo, which runs the lab's servers beside the daemon,
     * calls daemon_run without it): OpenSSL 3.0 may parse keys its built-in way. */
    (void)tlsc_builtin_keys();
    return daemon_run(path, &o);
}

/* The state database beside the configuration: fleetscan.jsonc -> fleetscan.state.db. */
static char *default_state_db(const char *config_path)
{
    const char *slash = strrchr(config_path, '/');
    const char *base = slash != NULL ? slash + 1 : config_path, *dot = strrchr(base, '.');
    size_t stem = dot != NULL && dot != base ? (size_t)(dot - config_path) : strlen(config_path);
    char *p = fs_xmalloc(stem + sizeof(".state.db"));
    memcpy(p, config_path, stem);
    memcpy(p + stem, ".state.db", sizeof(".state.db"));
    return p;
}

/* Opens the state database and takes back what it holds (SPEC §4.4), before the loop runs:
 * endpoint states, events, the retrieval cache; then the probes confirm them. */
static void open_store(run_t *r)
{
    /* Precedence: --state-db, then the file's "state_db" key (null: off), then the default
     * beside the configuration. */
    const cfg_t *cfg = fleet_cfg(r->fleet);
    char *dflt =
        r->o->state_db == NULL && !cfg->state_db_given ? default_state_db(r->config_path) : NULL;
    const char *path = r->o->state_db != NULL ? r->o->state_db
                       : cfg->state_db_given  ? cfg->state_db
                                              : dflt;
    store_saved_t saved;
    store_t *st = store_open(path, NULL, &saved);
    pthread_mutex_lock(&r->shared_mu);
    r->store = st;
    pthread_mutex_unlock(&r->shared_mu);
    if (r->store != NULL) {
        fleet_restored_t c;
        fleet_restore(r->fleet, &saved, &c);
        store_note_restored(r->store, c.endpoints, c.events, c.cache);
    } else {
        fprintf(stderr, "fleetscan: note: no state database (state_db off): states, events and "
                        "the CRL cache start afresh at each restart\n");
    }
    store_saved_free(&saved);
    free(dflt);
}

static void on_duration(uv_timer_t *t)
{
    run_t *r = t->data;
    if (r->stopping)
        return;
    r->stopping = 1;
    fprintf(stderr, "fleetscan: run time elapsed, stopping\n");
    fleet_publish(r->fleet);
    fleet_stop(r->fleet, on_fleet_stopped, r);
}

int daemon_run(const char *config_path, const daemon_opts_t *o)
{
    run_t r;
    memset(&r, 0, sizeof(r));
    r.o = o;
    r.config_path = config_path;
    r.shard_override = o->shard_override;
    r.shard_i = o->shard_i;
    r.shard_n = o->shard_n;
    cfg_t *cfg;
    char err[256];
    if (load(&r, &cfg, err) < 0) {
        fprintf(stderr, "fleetscan: %s: %s\n", r.config_path, err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    fetch_set_inflight_limit((size_t)cfg->limits.fetch_inflight_bytes);
    uv_loop_init(&r.loop);
    char listen[96];
    snprintf(listen, sizeof(listen), strchr(cfg->listen_host, ':') ? "[%s]:%d" : "%s:%d",
             cfg->listen_host, cfg->listen_port);
    pthread_mutex_init(&r.shared_mu, NULL);
    atomic_init(&r.heartbeat_ms, (int64_t)(uv_hrtime() / 1000000));
    api_opts_t ao = {.listen = listen,
                     .token = cfg->api_token,
                     .threads = (int)cfg->api.threads,
                     .idle_timeout_s = (int)cfg->api.idle_timeout_s,
                     .max_connections = (int)cfg->api.max_connections,
                     .max_connections_per_ip = (int)cfg->api.max_connections_per_ip,
                     .health_reserve =
                         cfg->api.health_reserve > 0 ? (int)cfg->api.health_reserve : -1,
                     .header_timeout_s = (int)cfg->api.header_timeout_s,
                     .body_timeout_s = (int)cfg->api.body_timeout_s,
                     .send_timeout_s = (int)cfg->api.send_timeout_s,
                     .heartbeat_ms = &r.heartbeat_ms,
                     .arg = &r,
                     .on_scan = on_scan_request,
                     .on_forecast = on_forecast,
                     .on_history = on_history,
                     .on_post_preflight = on_preflight};
    r.api_cfg = cfg_ref(cfg); /* the fleet takes cfg itself below: the same object */
    uv_async_init(&r.loop, &r.scan, on_scan_async);
    r.scan.data = &r;
    r.scan_open = 1;
    if (api_start(&r.api, &ao, err) < 0) {
        fprintf(stderr, "fleetscan: API on %s: %s\n", listen, err);
        cfg_free(cfg);
        cfg_unref(r.api_cfg);
        uv_close((uv_handle_t *)&r.scan, NULL);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
        pthread_mutex_destroy(&r.shared_mu);
        return 1;
    }
    /* The API threads exist now; the loop thread (and the resolver threads it starts later)
     * yields to them: when probing saturates the CPU, /api/v1/status still answers at once. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5) != 0)
        fprintf(stderr, "fleetscan: note: cannot lower the probe loop's priority\n");
    fleet_opts_t fo = {.publish = on_publish,
                       .on_event = on_event,
                       .arg = &r,
                       .dns_override_only = o->dns_override_only};
    if (fleet_new(&r.fleet, &r.loop, cfg, &fo, err) < 0) {
        fprintf(stderr, "fleetscan: %s: %s\n", r.config_path, err);
        cfg_free(cfg);
        api_stop(r.api);
        cfg_unref(r.api_cfg);
        uv_close((uv_handle_t *)&r.scan, NULL);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
        pthread_mutex_destroy(&r.shared_mu);
        return 2;
    }
    open_store(&r);
    uv_signal_init(&r.loop, &r.sighup);
    uv_signal_init(&r.loop, &r.sigterm);
    uv_signal_init(&r.loop, &r.sigint);
    r.sighup.data = r.sigterm.data = r.sigint.data = &r;
    uv_signal_start(&r.sighup, on_signal, SIGHUP);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_timer_init(&r.loop, &r.duration);
    r.duration.data = &r;
    uv_timer_init(&r.loop, &r.heartbeat);
    r.heartbeat.data = &r;
    uv_timer_start(&r.heartbeat, on_heartbeat, 0, RUN_HEARTBEAT_MS);
    if (o->duration_s > 0)
        uv_timer_start(&r.duration, on_duration, (uint64_t)o->duration_s * 1000, 0);
    char url[128];
    snprintf(url, sizeof(url), strchr(cfg->listen_host, ':') ? "http://[%s]:%d" : "http://%s:%d",
             cfg->listen_host, api_port(r.api));
    if (o->on_ready)
        o->on_ready(o->arg, url);
    else
        printf("fleetscan: API listening on %s/\n", url);
    fflush(stdout);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    api_stop(r.api);
    store_close(r.store); /* after the API: no history read runs any more */
    cfg_unref(r.api_cfg);
    snap_unref(r.latest);
    pthread_mutex_destroy(&r.shared_mu);
    int rc = uv_loop_close(&r.loop);
    if (rc != 0)
        fprintf(stderr, "fleetscan: warning: event loop closed with handles open\n");
    fprintf(stderr, "fleetscan: stopped\n");
    return 0;
}
