/* reference.c - the targets: each reference probe of a server's own binding recorded as the
 * structured snap_target_t the snapshots share, from which web/render_targets.c renders
 * /api/v1/targets and web/render_metrics.c the certificate and CRL gauges of /metrics. */
#include "daemon/fleet_int.h"
#include "probes/backend.h"
#include "probes/util.h"

#include <stdlib.h>
#include <string.h>

_Static_assert((int)SNAP_PH_COUNT == (int)PROBE_PH_COUNT, "snapshot and probe phases out of sync");

static char **copy_strs(char *const *v, size_t n)
{
    if (n == 0)
        return NULL;
    char **out = fs_xmalloc(n * sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = fs_xstrdup(v[i] != NULL ? v[i] : "");
    return out;
}

/* A deep copy that chain_info_free() releases. */
static void copy_chain(chain_info_t *dst, const chain_info_t *src)
{
    memset(dst, 0, sizeof(*dst));
    for (size_t i = 0; i < src->n; i++) {
        const chain_cert_t *s = &src->certs[i];
        chain_cert_t *d = &dst->certs[i];
        *d = *s; /* dates, thumbprints, signature, flags, counts */
        d->subject = fs_xstrdup(s->subject != NULL ? s->subject : "");
        d->issuer = fs_xstrdup(s->issuer != NULL ? s->issuer : "");
        d->serial = fs_xstrdup(s->serial != NULL ? s->serial : "");
        d->sans = copy_strs(s->sans, s->nsans);
        d->cdp = copy_strs(s->cdp, s->ncdp);
        d->aia = copy_strs(s->aia, s->naia);
    }
    dst->n = src->n;
    dst->total = src->total;
}

void fleet__render_reference(fleet_t *f, size_t ti, const probe_result_t *r)
{
    const cfg_t *cfg = f->gen->cfg;
    const cfg_target_t *ct = &cfg->targets[ti];
    snap_target_t *t = snap_target_new();
    t->name = fs_xstrdup(ct->name);
    t->url = fs_xstrdup(ct->binding.url);
    t->profile = fs_xstrdup(ct->binding.name);
    t->trust = fs_xstrdup(cfg->trust[ct->trust_idx].name);
    t->checked_at = r->started_at;
    t->online = r->online;
    t->cause = (uint8_t)r->cause;
    t->warnings = r->warnings;
    fs_strlcpy(t->message, r->message, sizeof(t->message));
    memcpy(t->timings_ms, r->timings_ms, sizeof(t->timings_ms));
    t->total_ms = r->total_ms;
    fs_strlcpy(t->addr, r->addr, sizeof(t->addr));
    memcpy(t->attempts, r->attempts, r->nattempts * sizeof(*t->attempts));
    t->nattempts = r->nattempts;
    fs_strlcpy(t->leaf_sha1, r->leaf_sha1, sizeof(t->leaf_sha1));
    fleet_target_t *ft = &f->gen->targets[ti];
    int changed;
    fleet__target_backend(ft, r, FLEET_BACKEND_MAX_AGE_S(cfg), &changed);
    memcpy(t->backends, ft->backends, ft->nbackends * sizeof(*t->backends));
    t->nbackends = ft->nbackends;
    t->backend_max_age_s = FLEET_BACKEND_MAX_AGE_S(cfg);
    t->inconsistent = ft->inconsistent;
    fs_strlcpy(t->inconsistent_why, ft->why, sizeof(t->inconsistent_why));
    t->endpoint_time = r->endpoint_time;
    if (r->tls_version != 0)
        fs_strlcpy(t->tls_version, tlsc_version_name(r->tls_version), sizeof(t->tls_version));
    fs_strlcpy(t->cipher, r->cipher, sizeof(t->cipher));
    t->http_status = r->http_status;
    copy_chain(&t->chain, &r->chain);
    if (r->rev != NULL && r->rev->nurls > 0) {
        t->nurls = r->rev->nurls;
        t->urls = fs_xmalloc(t->nurls * sizeof(*t->urls));
        memcpy(t->urls, r->rev->urls, t->nurls * sizeof(*t->urls));
    }
    /* Snapshots already published keep the previous record until they go. */
    snap_target_unref(f->gen->targets[ti].rec);
    f->gen->targets[ti].rec = t;
}

int fleet__target_backend(fleet_target_t *t, const probe_result_t *r, int64_t max_age_s,
                          int *changed)
{
    *changed = 0;
    if (r->addr[0] == '\0' || r->cancelled)
        return t->inconsistent;
    size_t i = 0;
    while (i < t->nbackends && strcmp(t->backends[i].addr, r->addr) != 0)
        i++;
    if (i == t->nbackends) {
        if (t->nbackends == FS_ARRAY_SIZE(t->backends))
            return t->inconsistent;
        t->nbackends++;
        fs_strlcpy(t->backends[i].addr, r->addr, sizeof(t->backends[i].addr));
    }
    snap_backend_t *b = &t->backends[i];
    snap_backend_t before = *b;
    /* a connect that failed at this address says nothing of its certificate */
    if (r->leaf_sha1[0] != '\0' || r->online)
        fs_strlcpy(b->leaf_sha1, r->leaf_sha1, sizeof(b->leaf_sha1));
    b->online = r->online;
    b->cause = (uint8_t)(r->online ? FS_CAUSE_NONE : r->cause);
    b->last_seen = r->started_at;
    backend_record_t rec[FS_ARRAY_SIZE(t->backends)];
    for (size_t k = 0; k < t->nbackends; k++)
        rec[k] = (backend_record_t){.addr = t->backends[k].addr,
                                    .leaf_sha1 = t->backends[k].leaf_sha1,
                                    .online = t->backends[k].online,
                                    .cause = (fs_cause_t)t->backends[k].cause,
                                    .last_seen = t->backends[k].last_seen};
    int was = t->inconsistent;
    t->inconsistent = backend_inconsistent(rec, t->nbackends, r->started_at, max_age_s, t->why);
    /* what /targets shows changed (not just last_seen) */
    *changed = i + 1 == t->nbackends && before.addr[0] == '\0'
                   ? 1
                   : strcmp(before.leaf_sha1, b->leaf_sha1) != 0 || before.online != b->online ||
                         before.cause != b->cause || was != t->inconsistent;
    return t->inconsistent;
}

void fleet__target_backends_changed(fleet_t *f, size_t ti)
{
    fleet_target_t *ft = &f->gen->targets[ti];
    const snap_target_t *o = ft->rec;
    if (o == NULL)
        return; /* the first reference probe will show them */
    snap_target_t *t = snap_target_new();
    t->name = fs_xstrdup(o->name);
    t->url = fs_xstrdup(o->url);
    t->profile = fs_xstrdup(o->profile);
    t->trust = fs_xstrdup(o->trust);
    t->checked_at = o->checked_at;
    t->online = o->online;
    t->cause = o->cause;
    t->warnings = o->warnings;
    memcpy(t->message, o->message, sizeof(t->message));
    memcpy(t->timings_ms, o->timings_ms, sizeof(t->timings_ms));
    t->total_ms = o->total_ms;
    memcpy(t->addr, o->addr, sizeof(t->addr));
    memcpy(t->attempts, o->attempts, sizeof(t->attempts));
    t->nattempts = o->nattempts;
    memcpy(t->leaf_sha1, o->leaf_sha1, sizeof(t->leaf_sha1));
    t->endpoint_time = o->endpoint_time;
    memcpy(t->tls_version, o->tls_version, sizeof(t->tls_version));
    memcpy(t->cipher, o->cipher, sizeof(t->cipher));
    t->http_status = o->http_status;
    copy_chain(&t->chain, &o->chain);
    if (o->nurls > 0) {
        t->nurls = o->nurls;
        t->urls = fs_xmalloc(t->nurls * sizeof(*t->urls));
        memcpy(t->urls, o->urls, t->nurls * sizeof(*t->urls));
    }
    memcpy(t->backends, ft->backends, ft->nbackends * sizeof(*t->backends));
    t->nbackends = ft->nbackends;
    t->backend_max_age_s = o->backend_max_age_s;
    t->inconsistent = ft->inconsistent;
    fs_strlcpy(t->inconsistent_why, ft->why, sizeof(t->inconsistent_why));
    snap_target_unref(ft->rec);
    ft->rec = t;
}
