/* reload.c - SIGHUP: a new generation built off the loop, swapped in on it; groups whose
 * settings did not change keep their endpoints' state and schedule. */
#include "daemon/fleet_int.h"
#include "probes/util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* start[g] = index of group g's first endpoint; start[ngroups] = neps. */
static uint32_t *group_starts(const fleet_gen_t *g)
{
    uint32_t *start = fs_xcalloc(g->ngroups + 1, sizeof(uint32_t));
    uint32_t pos = 0;
    for (size_t gi = 0; gi < g->ngroups; gi++) {
        start[gi] = pos;
        while (pos < g->neps && g->eps[pos].group == gi)
            pos++;
    }
    start[g->ngroups] = pos;
    return start;
}

/* For each group of nc, the group of oc it continues (same name, cfg_group_equal), or -1.
 * Names are unique within a configuration, so one hash lookup per group: linear in the number
 * of groups, where comparing every pair would be quadratic. */
static int32_t *match_groups(const cfg_t *oc, const cfg_t *nc)
{
    int32_t *match = fs_xmalloc((nc->ngroups ? nc->ngroups : 1) * sizeof(*match));
    for (size_t gi = 0; gi < nc->ngroups; gi++)
        match[gi] = -1;
    if (nc->shard_index != oc->shard_index || nc->shard_count != oc->shard_count)
        return match;
    size_t nslot = 16;
    while (nslot < 2 * oc->ngroups)
        nslot *= 2;
    size_t *slot = fs_xcalloc(nslot, sizeof(*slot)), mask = nslot - 1;
    for (size_t oi = 0; oi < oc->ngroups; oi++) {
        size_t k = fs_name_hash(oc->groups[oi].name) & mask;
        while (slot[k] != 0)
            k = (k + 1) & mask;
        slot[k] = oi + 1;
    }
    for (size_t gi = 0; gi < nc->ngroups; gi++) {
        for (size_t k = fs_name_hash(nc->groups[gi].name) & mask; slot[k] != 0;
             k = (k + 1) & mask) {
            size_t oi = slot[k] - 1;
            if (strcmp(oc->groups[oi].name, nc->groups[gi].name) == 0) {
                if (cfg_group_equal(oc, oi, nc, gi))
                    match[gi] = (int32_t)oi;
                break;
            }
        }
    }
    free(slot);
    return match;
}

fleet_next_t *fleet_reload_begin(fleet_t *f)
{
    fleet_next_t *n = fs_xcalloc(1, sizeof(*n));
    n->event_fd = -1;
    n->env = (gen_env_t){.rev = f->rev,
                         .vcache = f->vcache,
                         .dns = f->dns,
                         .dns_override_only = f->o.dns_override_only};
    n->old = f->gen;
    n->old->refs++;
    return n;
}

int fleet_reload_build(fleet_next_t *n, cfg_t *cfg, char err[256])
{
    assert(n->gen == NULL);
    /* Reopened on every reload, so `logrotate` + SIGHUP starts a fresh file. */
    if (fleet__open_event_log(cfg, &n->event_fd, &n->event_partial, err) < 0)
        return -1;
    if (fleet__gen_build(&n->env, cfg, &n->gen, err) < 0) {
        if (n->event_fd >= 0)
            close(n->event_fd);
        n->event_fd = -1;
        return -1;
    }
    n->match = match_groups(n->old->cfg, cfg);
    return 0;
}

void fleet_next_free(fleet_next_t *n)
{
    if (n == NULL)
        return;
    fleet__gen_unref(n->gen);
    fleet__gen_unref(n->old);
    if (n->event_fd >= 0)
        close(n->event_fd);
    free(n->match);
    free(n);
}

/* A reloaded setting that only takes effect at a restart (cfg_restart_changes). */
static void restart_warning(void *arg, const char *key)
{
    fleet__log(arg, "warning: \"%s\" changed; it takes effect at the next restart", key);
}

void fleet_reload_apply(fleet_t *f, fleet_next_t *n)
{
    assert(n->gen != NULL);
    fleet_gen_t *ng = n->gen, *old = f->gen;
    cfg_t *cfg = ng->cfg;
    if (n->old != old) { /* another reload was applied since begin: match against this one */
        free(n->match);
        n->match = match_groups(old->cfg, cfg);
    }
    const cfg_t *oc = old->cfg;
    /* A target whose binding did not change keeps what its reference said (its verdict and its
     * /targets record): profile_mismatch does not wait for it again. The others start unknown. */
    for (size_t ti = 0; ti < ng->ntargets; ti++)
        for (size_t oi = 0; oi < old->ntargets; oi++)
            if (cfg_target_equal(oc, oi, cfg, ti)) {
                ng->targets[ti].ok = old->targets[oi].ok;
                ng->targets[ti].known = old->targets[oi].known;
                if (old->targets[oi].rec != NULL)
                    ng->targets[ti].rec = snap_target_ref(old->targets[oi].rec);
                break;
            }
    size_t kept = 0;
    /* Endpoints of unchanged groups keep their state; a group's endpoints are contiguous. */
    uint32_t *ostart = group_starts(old), *nstart = group_starts(ng);
    for (size_t gi = 0; gi < ng->ngroups; gi++) {
        if (n->match[gi] < 0)
            continue;
        size_t oi = (size_t)n->match[gi];
        uint32_t cnt = nstart[gi + 1] - nstart[gi], on = ostart[oi + 1] - ostart[oi];
        for (uint32_t k = 0; k < cnt && k < on; k++) {
            fleet_ep_t *ne = &ng->eps[nstart[gi] + k];
            *ne = old->eps[ostart[oi] + k];
            ne->group = (uint16_t)gi;
            ne->in_flight = 0;
        }
        fleet_group_t *ngr = &ng->groups[gi], *ogr = &old->groups[oi];
        for (int c = 0; c < FS_CAUSE_COUNT; c++) {
            ngr->msg[c] = ogr->msg[c] ? fs_xstrdup(ogr->msg[c]) : NULL;
            ngr->detail[c] = ogr->detail[c] ? fs_xstrdup(ogr->detail[c]) : NULL;
        }
        ngr->detail_at = ogr->detail_at;
        ngr->chain_not_after = ogr->chain_not_after;
        ngr->chain_not_before = ogr->chain_not_before;
        ngr->crl_next_update = ogr->crl_next_update;
        ngr->ev_state = ogr->ev_state; /* an unchanged group does not announce itself again */
        ngr->ev_cause = ogr->ev_cause;
        kept++;
    }
    free(ostart);
    free(nstart);
    fleet__cancel_jobs(f, old);
    vcache_clear(f->vcache); /* its entries name the old generation's contexts */
    f->gen = ng;
    n->gen = NULL;
    if (f->event_fd >= 0)
        close(f->event_fd);
    f->event_fd = n->event_fd;
    f->event_partial = n->event_partial;
    n->event_fd = -1;
    cfg_restart_changes(old->cfg, cfg, restart_warning, f);
    /* Endpoints that kept their state keep their schedule; new ones start spread out. */
    int64_t now = (int64_t)uv_now(f->loop);
    double spread = fleet__first_cycle_spread_ms(ng, ng->neps);
    for (uint32_t i = 0; i < ng->neps; i++) {
        fleet_ep_t *e = &ng->eps[i];
        if (e->state == SNAP_PENDING && e->last_probe == 0)
            e->next_due = now + (int64_t)(fleet__rnd(f) * spread);
        else if (e->next_due > now + (int64_t)(cfg->interval_s * 1000.0 * (1 + cfg->jitter)))
            e->next_due = now + (int64_t)(fleet__rnd(f) * cfg->interval_s * 1000.0);
    }
    fleet__heap_rebuild(ng);
    fleet__recount(f);
    fleet_next_free(n); /* drops its reference to old */
    fleet__gen_unref(old);
    fleet__event_log_note(f, "config", "Configuration updated successfully");
    fleet__log(f, "configuration reloaded: %zu groups (%zu kept their state), %u endpoints",
               cfg->ngroups, kept, ng->neps);
    fleet__update_warnings(f, cfg);
    fleet__schedule_reference(f);
    fleet__tick_soon(f, 0);
    f->dirty = 1;
    fleet_publish(f);
}

int fleet_reload(fleet_t *f, cfg_t *cfg, char err[256])
{
    fleet_next_t *n = fleet_reload_begin(f);
    if (fleet_reload_build(n, cfg, err) < 0) {
        fleet_next_free(n);
        return -1;
    }
    fleet_reload_apply(f, n);
    return 0;
}
