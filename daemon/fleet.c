/* fleet.c - the fleet's lifecycle (fleet.h): building a generation (one configuration's
 * runtime: groups with their policies, endpoints), starting, scanning and stopping. Scheduling,
 * aggregation, the reference target, the event log and reloads live in their own files. */
#include "daemon/fleet_int.h"
#include "probes/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fleet__log(const fleet_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fleet__log(const fleet_t *f, const char *fmt, ...)
{
    if (f->o.quiet)
        return;
    char ts[32];
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s fleetscan: ", fs_rfc3339(fs_wall_ms() / 1000, ts, sizeof(ts)));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double fleet__rnd(fleet_t *f)
{
    /* xorshift64*: schedule jitter only, no need for quality beyond spreading load */
    f->rng ^= f->rng >> 12;
    f->rng ^= f->rng << 25;
    f->rng ^= f->rng >> 27;
    return (double)((f->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

uint32_t fleet_id_hash(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h;
}

int fleet_in_shard(const cfg_t *cfg, const char *group, uint32_t k)
{
    if (cfg->shard_count <= 1)
        return 1;
    char id[96];
    snprintf(id, sizeof(id), "%s-%05u", group, k);
    return fleet_id_hash(id) % cfg->shard_count == cfg->shard_index;
}

const cfg_t *fleet_cfg(const fleet_t *f)
{
    return f->gen->cfg;
}

void fleet__gen_unref(fleet_gen_t *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    for (size_t i = 0; i < g->ngroups; i++) {
        policy_free(&g->groups[i].pl);
        for (int c = 0; c < FS_CAUSE_COUNT; c++) {
            free(g->groups[i].msg[c]);
            free(g->groups[i].detail[c]);
        }
    }
    for (size_t i = 0; i < g->ntargets; i++) {
        policy_free(&g->targets[i].pl);
        snap_target_unref(g->targets[i].rec);
    }
    free(g->targets);
    free(g->groups);
    free(g->eps);
    free(g->heap);
    cfg_free(g->cfg);
    free(g);
}

/* Contexts are shared by every group with the same trust store and TLS settings. */
static tlsc_ctx_t *find_ctx(const fleet_gen_t *g, size_t gi)
{
    for (size_t i = 0; i < gi; i++)
        if (cfg_tls_ctx_equal(g->cfg, i, g->cfg, gi))
            return g->groups[i].pl.tls;
    return NULL;
}

/* What the fleet adds to a policy: its shared retrieval context, verdict cache and DNS mode. */
static void runtime_opts(const gen_env_t *env, policy_t *pl)
{
    pl->popts.rev = env->rev;
    pl->popts.vcache = env->vcache;
    pl->popts.dns = env->dns;
    pl->popts.view = pl->view; /* probes of one view share answers and a round robin */
    pl->popts.dns_override_only = env->dns_override_only;
    pl->rev.dns_override_only = env->dns_override_only;
}

/* Builds the runtime of cfg: reads nothing of a running fleet but env, so it may run on any
 * thread. Takes cfg on success. */
int fleet__gen_build(const gen_env_t *env, cfg_t *cfg, fleet_gen_t **out, char err[256])
{
    fleet_gen_t *g = fs_xcalloc(1, sizeof(*g));
    g->refs = 1;
    g->cfg = cfg;
    g->ngroups = cfg->ngroups;
    if (cfg->ngroups > UINT16_MAX) {
        snprintf(err, 256, "groups: at most %u groups", UINT16_MAX);
        free(g);
        return -1;
    }
    g->groups = fs_xcalloc(cfg->ngroups, sizeof(*g->groups));
    uint64_t n = 0;
    for (size_t i = 0; i < cfg->ngroups; i++) {
        fleet_group_t *gr = &g->groups[i];
        const cfg_group_t *c = &cfg->groups[i];
        gr->cfg = c;
        if (policy_group_init(&gr->pl, cfg, i, find_ctx(g, i), err) < 0) {
            char e[256];
            snprintf(e, sizeof(e), "groups[%zu].trust: %s", i, err);
            fs_strlcpy(err, e, 256);
            g->cfg = NULL; /* cfg stays the caller's on failure */
            fleet__gen_unref(g);
            return -1;
        }
        runtime_opts(env, &gr->pl);
        for (uint32_t k = 0; k < c->count; k++)
            n += fleet_in_shard(cfg, c->name, k);
    }
    if (n > UINT32_MAX - 1) {
        snprintf(err, 256, "too many endpoints in this shard (%llu)", (unsigned long long)n);
        g->cfg = NULL;
        fleet__gen_unref(g);
        return -1;
    }
    g->neps = (uint32_t)n;
    g->eps = fs_xcalloc(n ? n : 1, sizeof(*g->eps));
    g->heap = fs_xcalloc(n ? n : 1, sizeof(*g->heap));
    uint32_t e = 0;
    for (size_t i = 0; i < cfg->ngroups; i++) {
        const cfg_group_t *c = &cfg->groups[i];
        for (uint32_t k = 0; k < c->count; k++) {
            if (!fleet_in_shard(cfg, c->name, k))
                continue;
            g->eps[e].group = (uint16_t)i;
            g->eps[e].index = k;
            g->eps[e].state = SNAP_PENDING;
            e++;
        }
    }
    g->targets = fs_xcalloc(cfg->ntargets, sizeof(*g->targets));
    g->ntargets = cfg->ntargets;
    for (size_t ti = 0; ti < cfg->ntargets; ti++) {
        fleet_target_t *t = &g->targets[ti];
        if (policy_reference_init(&t->pl, cfg, ti, err) < 0) {
            char why[256];
            snprintf(why, sizeof(why), "targets.%s: %s", cfg->targets[ti].name, err);
            fs_strlcpy(err, why, 256);
            g->cfg = NULL;
            fleet__gen_unref(g);
            return -1;
        }
        runtime_opts(env, &t->pl);
    }

    *out = g;
    return 0;
}

/* daemon.warnings: running as root, the API's address (bound once, at start), and what the
 * current configuration says; those not seen before are logged. */
void fleet__update_warnings(fleet_t *f, const cfg_t *cfg)
{
    snap_warning_t old[FS_ARRAY_SIZE(f->warnings)];
    size_t nold = f->nwarnings;
    cfg_warning_t cw[CFG_MAX_WARNINGS];
    size_t ncw = cfg_warnings(cfg, cw);
    memcpy(old, f->warnings, sizeof(old));
    f->nwarnings = 0;
    if (geteuid() == 0) {
        snap_warning_t *w = &f->warnings[f->nwarnings++];
        fs_strlcpy(w->code, "running_as_root", sizeof(w->code));
        fs_strlcpy(w->message,
                   "running as root: the daemon parses certificates, CRLs and HTTP answers from "
                   "the network; run it as an unprivileged user (deploy/systemd uses "
                   "DynamicUser=yes)",
                   sizeof(w->message));
    }
    for (size_t i = 0; i < ncw + 1 && f->nwarnings < FS_ARRAY_SIZE(f->warnings); i++) {
        /* the listen warning of the address in use, not of a reloaded file's */
        const cfg_warning_t *c = i < ncw ? &cw[i] : &f->listen_warning;
        if (c->code == NULL || (i < ncw && strcmp(c->code, CFG_WARN_LISTEN) == 0))
            continue;
        snap_warning_t *w = &f->warnings[f->nwarnings++];
        fs_strlcpy(w->code, c->code, sizeof(w->code));
        fs_strlcpy(w->message, c->message, sizeof(w->message));
    }
    for (size_t i = 0; i < f->nwarnings; i++) {
        size_t k = 0;
        while (k < nold && strcmp(old[k].message, f->warnings[i].message) != 0)
            k++;
        if (k == nold)
            fleet__log(f, "warning: %s", f->warnings[i].message);
    }
}

int fleet_new(fleet_t **out, uv_loop_t *loop, cfg_t *cfg, const fleet_opts_t *o, char err[256])
{
    fleet_t *f = fs_xcalloc(1, sizeof(*f));
    f->loop = loop;
    f->o = *o;
    f->event_fd = -1;
    if (f->o.publish_interval_ms == 0)
        f->o.publish_interval_ms = 1000;
    f->rng = (uint64_t)fs_wall_ms() * 0x9E3779B97F4A7C15ULL + (uint64_t)getpid();
    if (f->rng == 0)
        f->rng = 1;
    f->started_at = fs_wall_ms() / 1000;
    rev_cache_limits_t lim = {.max_age_s = cfg->cache.crl_max_age_s,
                              .max_bytes_total = (size_t)cfg->cache.crl_max_bytes_total};
    int log, partial;
    if (fleet__open_event_log(cfg, &log, &partial, err) < 0) {
        free(f);
        return -1;
    }
    if (rev_ctx_new(&f->rev, loop, &lim) < 0) {
        snprintf(err, 256, "cannot create the CRL/AIA retrieval context");
        if (log >= 0)
            close(log);
        free(f);
        return -1;
    }
    f->vcache = vcache_new(0);
    if (dns_cache_new(&f->dns, loop, NULL) < 0)
        f->dns = NULL; /* probes then make a lookup of their own */
    gen_env_t env = {.rev = f->rev,
                     .vcache = f->vcache,
                     .dns = f->dns,
                     .dns_override_only = o->dns_override_only};
    if (fleet__gen_build(&env, cfg, &f->gen, err) < 0) {
        vcache_free(f->vcache);
        if (f->dns != NULL)
            dns_cache_close(f->dns, NULL, NULL);
        rev_ctx_close(f->rev, NULL, NULL);
        if (log >= 0)
            close(log);
        free(f);
        return -1;
    }
    f->event_fd = log;
    f->event_partial = partial;
    fleet__recount(f);
    uv_timer_init(loop, &f->tick);
    uv_timer_init(loop, &f->publish_timer);
    uv_timer_init(loop, &f->ref_timer);
    f->tokens = 1;
    f->tokens_at = uv_now(loop);
    fleet__initial_schedule(f, f->gen);
    fleet__schedule_reference(f);
    fleet__tick_soon(f, 0);
    uv_timer_start(&f->publish_timer, fleet__on_publish_timer, 0, f->o.publish_interval_ms);
    fleet__log(f, "vantage %s: %u endpoints in %zu groups (shard %u/%u), interval %.0f s",
               cfg->vantage, f->gen->neps, cfg->ngroups, cfg->shard_index, cfg->shard_count,
               cfg->interval_s);
    cfg_warning_t cw[CFG_MAX_WARNINGS];
    size_t ncw = cfg_warnings(cfg, cw);
    for (size_t i = 0; i < ncw; i++)
        if (strcmp(cw[i].code, CFG_WARN_LISTEN) == 0)
            f->listen_warning = cw[i];
    fleet__update_warnings(f, cfg);
    *out = f;
    return 0;
}

void fleet__cancel_jobs(fleet_t *f, fleet_gen_t *only)
{
    for (fleet_job_t *j = f->jobs; j != NULL; j = j->next)
        if (only == NULL || j->gen == only)
            probe_cancel(j->probe);
}

void fleet_scan_now(fleet_t *f)
{
    fleet_gen_t *g = f->gen;
    int64_t now = (int64_t)uv_now(f->loop);
    for (uint32_t i = 0; i < g->neps; i++)
        if (!g->eps[i].in_flight)
            g->eps[i].next_due = now;
    fleet__heap_rebuild(g);
    for (size_t ti = 0; ti < g->ntargets; ti++)
        fleet__start_reference(f, ti);
    fleet__tick_soon(f, 0);
    fleet__rh_run(f);
    fleet__log(f, "scan requested: %u endpoints due now", g->neps);
}

/* Shutdown: cancel probes, wait for their sockets to close, close the retrieval context,
 * then the timers; the fleet is freed in the last close callback. */
static void closed_one(void *fleet)
{
    fleet_t *f = fleet;
    if (--f->pending_closes > 0)
        return;
    fleet__gen_unref(f->gen);
    vcache_free(f->vcache);
    if (f->event_fd >= 0)
        close(f->event_fd);
    void (*done)(void *) = f->stop_done;
    void *arg = f->stop_arg;
    free(f);
    if (done)
        done(arg);
}

static void on_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void on_dns_closed(void *arg)
{
    fleet_t *f = arg;
    f->dns = NULL;
    uv_close((uv_handle_t *)&f->tick, on_closed);
}

static void on_rev_closed(void *arg)
{
    fleet_t *f = arg;
    f->rev = NULL;
    if (f->dns != NULL)
        dns_cache_close(f->dns, on_dns_closed, f);
    else
        uv_close((uv_handle_t *)&f->tick, on_closed);
}

/* Once the last cancelled probe has returned (its sockets closed), the retrieval context can
 * close; counted down by the jobs themselves, no polling. */
static void close_when_idle(fleet_t *f)
{
    if (f->jobs != NULL || f->rev_closing)
        return;
    f->rev_closing = 1;
    rev_ctx_close(f->rev, on_rev_closed, f);
}

void fleet__job_ended_while_closing(fleet_t *f)
{
    close_when_idle(f);
}

void fleet_stop(fleet_t *f, void (*done)(void *arg), void *arg)
{
    if (f->closing)
        return;
    f->closing = 1;
    f->stop_done = done;
    f->stop_arg = arg;
    fleet__cancel_jobs(f, NULL); /* each cancelled probe ends later, in its close callback */
    uv_timer_stop(&f->tick);
    f->tick.data = f;
    f->publish_timer.data = f;
    f->ref_timer.data = f;
    f->pending_closes = 3 + fleet__rh_close(f, closed_one, f);
    uv_close((uv_handle_t *)&f->publish_timer, on_closed);
    uv_close((uv_handle_t *)&f->ref_timer, on_closed);
    close_when_idle(f);
}
