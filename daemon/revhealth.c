/* revhealth.c - revocation-source health (SPEC §4.2): every cycle and on a scan request the
 * vantage checks each CDP, delta-CRL and OCSP URL of each target's chain live (probes/revcheck.c,
 * never through the endpoints' cache), and records which of the target's groups depend on each
 * URL, when their cached copies run out, and which strict endpoints go offline while it stays
 * down. */
#include "daemon/fleet_int.h"
#include "probes/crl.h"
#include "probes/ocsp.h"
#include "probes/revcheck.h"
#include "probes/util.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#define RH_MAX_URLS 32       /* URLs checked per round; a real chain has a handful */
#define RH_FOREVER INT64_MAX /* an availability horizon: a URL that answers now */

enum { RH_IDLE, RH_RUNNING, RH_DONE };

typedef struct rh_target_s rh_target_t;

/* One URL of a target's chain and its last live check. */
typedef struct rh_item_s {
    rh_target_t *h;
    char url[512]; /* as the certificate (or base CRL) names it */
    revcheck_kind_t kind;
    int depth;
    int state;
    int carried; /* a delta URL kept from the last round, its base not checked yet */
    int gone;    /* such a URL the base CRL no longer names: not listed */
    revcheck_job_t *job;
    revcheck_result_t res; /* the last result (res.crl is not kept there) */
    X509_CRL *crl;         /* a usable base CRL, kept for its delta's check */
    char directory[128];   /* ldap://: the directory it is checked through */
    int64_t checked_at, last_success;
} rh_item_t;

/* One target's chain and its rounds, found by the target's name (reloads renumber targets). */
struct rh_target_s {
    fleet_rh_t *rh;
    char *name;
    STACK_OF(X509) * chain; /* the reference chain the round checks, leaf first */
    STACK_OF(X509) * next;  /* a newer one, taken at the next round's start; NULL: none */
    rh_item_t *items;       /* the round's URLs */
    size_t nitems;
    int running;           /* checks in flight */
    int again;             /* a round was asked for while one ran */
    snap_revhealth_t *rec; /* the last round's record, shared with the snapshots */
};

struct fleet_rh_s {
    fleet_t *f;
    fetch_t *fetch;
    rh_target_t **t;
    size_t nt;
    void (*done)(void *arg);
    void *done_arg;
};

static void round_start(rh_target_t *h);

static X509 *issuer_of(STACK_OF(X509) * chain, int depth)
{
    int n = sk_X509_num(chain);
    X509 *x = sk_X509_value(chain, depth);
    if (depth + 1 < n)
        return sk_X509_value(chain, depth + 1);
    int self = X509_check_issued(x, x) == X509_V_OK;
    ERR_clear_error();
    return self ? x : NULL;
}

/* Whether a check with policy p covers the certificate at depth of an n-certificate chain, as
 * rev_check_start plans it (probes/revoke.h, "scope"). */
static int in_scope(const rev_policy_t *p, STACK_OF(X509) * chain, int depth)
{
    int n = sk_X509_num(chain);
    if (p->mode == REV_OFF || (p->scope == REV_SCOPE_LEAF && depth != 0))
        return 0;
    if (depth == n - 1) {
        X509 *x = sk_X509_value(chain, depth);
        int self = X509_check_issued(x, x) == X509_V_OK;
        ERR_clear_error();
        return p->scope != REV_SCOPE_CHAIN_EXCLUDE_ROOT && self;
    }
    return 1;
}

/* Whether a group's check (policy p) would use item: the certificate is in its scope, OCSP URLs
 * with ocsp on, ldap:// CDPs through a directory of its view, never file://. */
static int depends(const rev_policy_t *p, STACK_OF(X509) * chain, const rh_item_t *it)
{
    if (!in_scope(p, chain, it->depth))
        return 0;
    if (it->kind == REVCHECK_OCSP)
        return p->ocsp;
    if (crl_url_has_scheme(it->url, "file"))
        return 0;
    return !crl_url_has_scheme(it->url, "ldap") || p->ldap_host != NULL;
}

static rh_item_t *item_find(rh_target_t *h, const char *url)
{
    for (size_t i = 0; i < h->nitems; i++)
        if (strcmp(h->items[i].url, url) == 0)
            return &h->items[i];
    return NULL;
}

/* Adds url (once: a URL is one line whatever names it again). */
static void item_add(rh_target_t *h, const char *url, revcheck_kind_t kind, int depth)
{
    if (h->nitems >= RH_MAX_URLS || strlen(url) >= sizeof(h->items[0].url) ||
        item_find(h, url) != NULL)
        return;
    rh_item_t *it = &h->items[h->nitems++];
    memset(it, 0, sizeof(*it));
    it->h = h;
    fs_strlcpy(it->url, url, sizeof(it->url));
    it->kind = kind;
    it->depth = depth;
}

static void add_urls(rh_target_t *h, const crl_urls_t *u, revcheck_kind_t kind, int depth)
{
    for (size_t i = 0; i < u->n; i++)
        item_add(h, u->v[i], kind, depth);
}

/* The index of h's target in the running generation, or SIZE_MAX once a reload removed it. */
static size_t target_index(const rh_target_t *h)
{
    const cfg_t *cfg = h->rh->f->gen->cfg;
    for (size_t i = 0; i < cfg->ntargets; i++)
        if (strcmp(cfg->targets[i].name, h->name) == 0)
            return i;
    return SIZE_MAX;
}

/* The view a URL is checked in: the target's reference probe's (the vantage's), except that an
 * ldap:// URL goes through the directory of the first of the target's groups that would use it
 * when the reference's view names none. */
static void fill_view(rh_target_t *h, size_t ti, rh_item_t *it, revcheck_req_t *req)
{
    const fleet_gen_t *g = h->rh->f->gen;
    const rev_policy_t *p = &g->targets[ti].pl.rev;
    if (it->kind != REVCHECK_OCSP && crl_url_has_scheme(it->url, "ldap") && p->ldap_host == NULL) {
        for (size_t i = 0; i < g->ngroups; i++) {
            const rev_policy_t *gp = &g->groups[i].pl.rev;
            if (g->groups[i].pl.target_idx == ti && gp->ldap_host != NULL &&
                depends(gp, h->chain, it)) {
                p = gp;
                break;
            }
        }
    }
    req->ldap_host = p->ldap_host;
    req->proxy = p->proxy;
    req->resolve = p->resolve;
    req->dns_override_only = p->dns_override_only;
    req->timeout_ms = p->url_timeout_ms;
    req->max_bytes = p->max_bytes;
    fs_strlcpy(it->directory,
               p->ldap_host && crl_url_has_scheme(it->url, "ldap") ? p->ldap_host : "",
               sizeof(it->directory));
}

static void on_checked(void *arg, const revcheck_result_t *r);

static void check_start(rh_target_t *h, rh_item_t *it, X509_CRL *base)
{
    size_t ti = target_index(h);
    revcheck_req_t req = {.kind = it->kind,
                          .url = it->url,
                          .cert = sk_X509_value(h->chain, it->depth),
                          .issuer = issuer_of(h->chain, it->depth),
                          .base = base,
                          .at = fs_wall_ms() / 1000};
    int rc = UV_ENOENT; /* the target went with a reload: nothing to check it for */
    it->state = RH_RUNNING;
    if (ti != SIZE_MAX) {
        fill_view(h, ti, it, &req);
        rc = revcheck_start(h->rh->fetch, &req, on_checked, it, &it->job);
    }
    if (rc != 0) {
        it->state = RH_DONE;
        it->res.signature_valid = -1;
        snprintf(it->res.error, sizeof(it->res.error), "could not start the check: %s",
                 uv_strerror(rc));
        it->checked_at = fs_wall_ms() / 1000;
        return;
    }
    h->running++;
}

/* Deltas wait for their base: once every CDP of a certificate has answered, its delta URLs are
 * checked against the first usable base (or as bare delta CRLs when there is none). */
static void deltas_start(rh_target_t *h, int depth)
{
    X509_CRL *base = NULL;
    for (size_t i = 0; i < h->nitems; i++) {
        const rh_item_t *it = &h->items[i];
        if (it->depth != depth || it->kind != REVCHECK_CRL)
            continue;
        if (it->state != RH_DONE)
            return;
        if (base == NULL && it->crl != NULL)
            base = it->crl;
    }
    crl_urls_t named = {0};
    if (base != NULL)
        crl_freshest_urls(base, sk_X509_value(h->chain, depth), &named);
    for (size_t i = 0; i < h->nitems; i++) {
        rh_item_t *it = &h->items[i];
        if (it->depth != depth || it->kind != REVCHECK_DELTA || it->state != RH_IDLE)
            continue;
        size_t k = 0;
        while (it->carried && base != NULL && k < named.n && strcmp(named.v[k], it->url) != 0)
            k++;
        if (it->carried && base != NULL && k == named.n) {
            it->state = RH_DONE; /* the CA no longer publishes it for this base */
            it->gone = 1;
            continue;
        }
        check_start(h, it, base);
    }
    crl_urls_free(&named);
}

static void round_end(rh_target_t *h);

static void on_checked(void *arg, const revcheck_result_t *r)
{
    rh_item_t *it = arg;
    rh_target_t *h = it->h;
    it->job = NULL;
    it->state = RH_DONE;
    it->res = *r;
    it->res.crl = NULL;
    it->checked_at = fs_wall_ms() / 1000;
    if (r->usable)
        it->last_success = it->checked_at;
    if (r->usable && r->crl != NULL && it->kind == REVCHECK_CRL && X509_CRL_up_ref(r->crl)) {
        it->crl = r->crl;
        crl_urls_t d = {0};
        crl_freshest_urls(r->crl, NULL, &d); /* the base names its delta */
        add_urls(h, &d, REVCHECK_DELTA, it->depth);
        crl_urls_free(&d);
    }
    h->running--;
    if (it->kind == REVCHECK_CRL)
        deltas_start(h, it->depth);
    if (h->running == 0)
        round_end(h);
}

static void items_free(rh_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        X509_CRL_free(items[i].crl);
    free(items);
}

/* A new round over the chain's URLs: OCSP and CDPs at once, each delta after its base. URLs of
 * the last round are kept when the chain still names them, with their last success, and a
 * delta URL stays listed when its base cannot be had this time. */
static void round_start(rh_target_t *h)
{
    if (h->next != NULL) {
        sk_X509_pop_free(h->chain, X509_free);
        h->chain = h->next;
        h->next = NULL;
    }
    rh_item_t *old = h->items;
    size_t nold = h->nitems;
    h->items = fs_xcalloc(RH_MAX_URLS, sizeof(*h->items));
    h->nitems = 0;
    int n = sk_X509_num(h->chain);
    for (int d = 0; d < n; d++) {
        X509 *x = sk_X509_value(h->chain, d);
        crl_urls_t u = {0};
        ocsp_urls(x, &u);
        add_urls(h, &u, REVCHECK_OCSP, d);
        crl_urls_free(&u);
        crl_cdp_urls(x, &u);
        add_urls(h, &u, REVCHECK_CRL, d);
        crl_urls_free(&u);
        crl_freshest_urls(NULL, x, &u);
        add_urls(h, &u, REVCHECK_DELTA, d);
        crl_urls_free(&u);
        size_t first = h->nitems;
        for (size_t i = 0; i < nold; i++)
            if (old[i].kind == REVCHECK_DELTA && old[i].depth == d && !old[i].gone)
                item_add(h, old[i].url, REVCHECK_DELTA, d);
        for (size_t i = first; i < h->nitems; i++)
            h->items[i].carried = 1; /* listed until a base CRL says otherwise */
    }
    ERR_clear_error();
    for (size_t i = 0; i < h->nitems; i++) {
        for (size_t k = 0; k < nold; k++)
            if (strcmp(old[k].url, h->items[i].url) == 0)
                h->items[i].last_success = old[k].last_success;
    }
    items_free(old, nold);
    size_t ncheck = h->nitems; /* deltas found on the way are added behind */
    for (size_t i = 0; i < ncheck; i++)
        if (h->items[i].kind != REVCHECK_DELTA)
            check_start(h, &h->items[i], NULL);
    for (int d = 0; d < n; d++)
        deltas_start(h, d);
    if (h->running == 0)
        round_end(h);
}

/* When a group runs out of revocation information for the certificate at depth if the URLs that
 * do not answer now stay down: each URL gives until +forever when it answers, else until the
 * group's cached copy from it runs out (0: none); the certificate is covered by OCSP or by a base
 * CRL together with its delta when the base names one (probes/revoke.h). */
static int64_t horizon(rh_target_t *h, const fleet_group_t *gr, int depth, const int64_t *avail)
{
    int64_t ocsp = 0, base = 0, delta = 0;
    int has_delta = 0;
    for (size_t i = 0; i < h->nitems; i++) {
        const rh_item_t *it = &h->items[i];
        if (it->gone || it->depth != depth || !depends(&gr->pl.rev, h->chain, it))
            continue;
        int64_t *best = it->kind == REVCHECK_OCSP  ? &ocsp
                        : it->kind == REVCHECK_CRL ? &base
                                                   : &delta;
        if (avail[i] > *best)
            *best = avail[i];
        has_delta |= it->kind == REVCHECK_DELTA;
    }
    if (!has_delta)
        delta = RH_FOREVER; /* a complete CRL: nothing more to wait for */
    int64_t crl = base < delta ? base : delta;
    return ocsp > crl ? ocsp : crl;
}

/* Per URL, when the cache of view p (a group's) drops its copy, in seconds; 0: no copy. */
static void peek_view(rh_target_t *h, const rev_policy_t *p, int64_t *incache)
{
    for (size_t i = 0; i < h->nitems; i++) {
        const rh_item_t *it = &h->items[i];
        rev_cache_entry_t ce;
        int rc = rev_cache_peek(h->rh->f->rev, revcheck_kind_names[it->kind], it->url,
                                sk_X509_value(h->chain, it->depth), issuer_of(h->chain, it->depth),
                                p, &ce);
        incache[i] = rc == 0 && ce.ok ? ce.expires_ms / 1000 : 0;
    }
}

/* The record of a finished round, for the snapshots (web/snapshot.h, snap_revhealth_t). */
static snap_revhealth_t *round_record(rh_target_t *h)
{
    const fleet_gen_t *g = h->rh->f->gen;
    size_t ti = target_index(h);
    int64_t now = fs_wall_ms() / 1000;
    snap_revhealth_t *rec = snap_revhealth_new();
    rec->checked_at = now;
    rec->urls = fs_xcalloc(h->nitems ? h->nitems : 1, sizeof(*rec->urls));
    /* Per group and URL: what the group's cache holds, then how long each URL serves it. */
    int64_t *cached = fs_xcalloc(h->nitems ? h->nitems : 1, sizeof(*cached));
    int64_t *avail = fs_xcalloc(h->nitems ? h->nitems : 1, sizeof(*avail));
    int64_t *incache = fs_xcalloc(h->nitems ? h->nitems : 1, sizeof(*incache));
    size_t *cap = fs_xcalloc(h->nitems ? h->nitems : 1, sizeof(*cap));
    size_t *line = fs_xcalloc(h->nitems ? h->nitems : 1, sizeof(*line)); /* item -> rec->urls */
    for (size_t i = 0; i < h->nitems; i++) {
        const rh_item_t *it = &h->items[i];
        if (it->gone)
            continue;
        line[i] = rec->nurls++;
        snap_rev_url_t *u = &rec->urls[line[i]];
        fs_url_redact(it->url, u->url, sizeof(u->url));
        fs_strlcpy(u->kind, revcheck_kind_names[it->kind], sizeof(u->kind));
        u->cert_depth = it->depth;
        u->skipped = it->res.skipped;
        u->reachable = it->res.usable;
        u->signature_valid = it->res.signature_valid;
        u->latency_ms = it->res.time_ms;
        u->http_status = it->res.http_status;
        u->bytes = it->res.bytes;
        u->this_update = it->res.this_update;
        u->next_update = it->res.next_update;
        fs_strlcpy(u->ocsp_status, it->res.status, sizeof(u->ocsp_status));
        fs_strlcpy(u->error, it->res.error, sizeof(u->error));
        fs_strlcpy(u->directory, it->directory, sizeof(u->directory));
        u->checked_at = it->checked_at;
        u->last_success = it->last_success;
    }
    const char *view = NULL; /* whose cache incache[] holds: consecutive groups often share it */
    for (size_t gi = 0; gi < g->ngroups; gi++) {
        const fleet_group_t *gr = &g->groups[gi];
        if (gr->pl.target_idx != ti)
            continue; /* another target's group: another chain */
        if (view == NULL || strcmp(view, gr->pl.view) != 0) {
            view = gr->pl.view;
            peek_view(h, &gr->pl.rev, incache);
        }
        for (size_t i = 0; i < h->nitems; i++) {
            cached[i] = depends(&gr->pl.rev, h->chain, &h->items[i]) ? incache[i] : 0;
            avail[i] = h->items[i].res.usable ? RH_FOREVER : cached[i];
        }
        for (size_t i = 0; i < h->nitems; i++) {
            const rh_item_t *it = &h->items[i];
            if (it->gone || it->res.skipped || !depends(&gr->pl.rev, h->chain, it))
                continue;
            snap_rev_url_t *u = &rec->urls[line[i]];
            if (u->ngroups == cap[i]) { /* only the groups that depend on it: grown as found */
                cap[i] = cap[i] ? 2 * cap[i] : 8;
                u->groups = fs_xrealloc(u->groups, cap[i] * sizeof(*u->groups));
            }
            snap_rev_group_t *sg = &u->groups[u->ngroups++];
            memset(sg, 0, sizeof(*sg));
            sg->name = fs_xstrdup(gr->cfg->name);
            sg->mode = (uint8_t)gr->pl.rev.mode;
            sg->endpoints = gr->counts.total;
            sg->cached_until = cached[i];
            if (gr->pl.rev.mode != REV_STRICT || it->res.usable)
                continue;
            int64_t until = horizon(h, gr, it->depth, avail);
            if (until == RH_FOREVER)
                continue; /* another URL answers for that certificate */
            sg->at_risk = 1;
            sg->offline_at = until > now ? until : now;
            u->strict_at_risk += sg->endpoints;
            if (u->strict_offline_at == 0 || sg->offline_at < u->strict_offline_at)
                u->strict_offline_at = sg->offline_at;
        }
    }
    ERR_clear_error();
    free(cached);
    free(avail);
    free(incache);
    free(cap);
    free(line);
    return rec;
}

static void round_end(rh_target_t *h)
{
    snap_revhealth_unref(h->rec);
    h->rec = round_record(h);
    h->rh->f->dirty = 1;
    if (h->again) {
        h->again = 0;
        round_start(h);
    }
}

static void target_free(rh_target_t *h)
{
    items_free(h->items, h->nitems);
    sk_X509_pop_free(h->chain, X509_free);
    sk_X509_pop_free(h->next, X509_free);
    snap_revhealth_unref(h->rec);
    free(h->name);
    free(h);
}

/* The checks of target `name`, created when create is set, else NULL. */
static rh_target_t *target_find(fleet_rh_t *rh, const char *name, int create)
{
    for (size_t i = 0; i < rh->nt; i++)
        if (strcmp(rh->t[i]->name, name) == 0)
            return rh->t[i];
    if (!create)
        return NULL;
    rh_target_t *h = fs_xcalloc(1, sizeof(*h));
    h->rh = rh;
    h->name = fs_xstrdup(name);
    rh->t = fs_xrealloc(rh->t, (rh->nt + 1) * sizeof(*rh->t));
    rh->t[rh->nt++] = h;
    return h;
}

static void target_run(rh_target_t *h)
{
    if (h->chain == NULL && h->next == NULL)
        return;
    if (h->running > 0) {
        h->again = 1;
        return;
    }
    round_start(h);
}

/* ---- fleet_int.h ------------------------------------------------------------------------- */

void fleet__rh_run(fleet_t *f)
{
    fleet_rh_t *rh = f->rh;
    if (f->closing || rh == NULL)
        return;
    for (size_t i = 0; i < rh->nt;) { /* targets a reload removed go, once idle */
        if (rh->t[i]->running == 0 && target_index(rh->t[i]) == SIZE_MAX) {
            target_free(rh->t[i]);
            rh->t[i] = rh->t[--rh->nt];
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < rh->nt; i++)
        target_run(rh->t[i]);
}

snap_revhealth_t *fleet__rh_record(fleet_t *f, const char *name)
{
    rh_target_t *h = f->rh != NULL ? target_find(f->rh, name, 0) : NULL;
    return h != NULL && h->rec != NULL ? snap_revhealth_ref(h->rec) : NULL;
}

/* 1 when the two chains hold the same certificates. */
static int same_chain(STACK_OF(X509) * a, STACK_OF(X509) * b)
{
    if (a == NULL || b == NULL || sk_X509_num(a) != sk_X509_num(b))
        return 0;
    for (int i = 0; i < sk_X509_num(a); i++)
        if (X509_cmp(sk_X509_value(a, i), sk_X509_value(b, i)) != 0)
            return 0;
    return 1;
}

void fleet__rh_reference(fleet_t *f, size_t ti, const probe_result_t *r)
{
    if (f->closing || r->built == NULL || sk_X509_num(r->built) == 0)
        return; /* no chain this time: the last one known is checked on */
    fleet_rh_t *rh = f->rh;
    if (rh == NULL) {
        rh = fs_xcalloc(1, sizeof(*rh));
        rh->f = f;
        if (fetch_new(&rh->fetch, f->loop) != 0) {
            fleet__log(f, "revocation health: cannot create a fetcher; URLs are not checked");
            free(rh);
            return;
        }
        f->rh = rh;
    }
    rh_target_t *h = target_find(rh, f->gen->cfg->targets[ti].name, 1);
    if (same_chain(h->next != NULL ? h->next : h->chain, r->built))
        return; /* checked every cycle (fleet__rh_run), not once more per reference probe */
    STACK_OF(X509) *copy = X509_chain_up_ref(r->built);
    if (copy == NULL)
        return;
    sk_X509_pop_free(h->next, X509_free); /* a round in flight keeps its chain until it ends */
    h->next = copy;
    target_run(h);
}

static void on_fetch_closed(void *arg)
{
    fleet_rh_t *rh = arg;
    void (*done)(void *) = rh->done;
    void *done_arg = rh->done_arg;
    for (size_t i = 0; i < rh->nt; i++)
        target_free(rh->t[i]);
    free(rh->t);
    free(rh);
    done(done_arg);
}

int fleet__rh_close(fleet_t *f, void (*done)(void *arg), void *arg)
{
    fleet_rh_t *rh = f->rh;
    if (rh == NULL)
        return 0;
    f->rh = NULL;
    for (size_t i = 0; i < rh->nt; i++) {
        rh_target_t *h = rh->t[i];
        for (size_t k = 0; k < h->nitems; k++)
            if (h->items[k].job != NULL)
                revcheck_cancel(h->items[k].job);
        h->running = 0;
    }
    rh->done = done;
    rh->done_arg = arg;
    fetch_close(rh->fetch, on_fetch_closed, rh);
    return 1;
}
