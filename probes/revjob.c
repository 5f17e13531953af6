/* revjob.c - the runtime of revocation and AIA jobs: the context (fetcher, job list, teardown),
 * a job's lifecycle and callback, and one URL's retrieval: from the cache, joined to the one in
 * flight (single flight) or started, under the per_url/accumulative timeouts and the deadline. */
#include "probes/revoke_int.h"
#include "probes/ocsp.h"
#include "probes/util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REV_GRACE_MS 100 /* a waiter's own deadline trails the fetch's, so curl reports first */

static void ctx_maybe_free(rev_ctx_t *ctx)
{
    if (ctx->torn_down && ctx->open == 0) {
        void (*done)(void *) = ctx->done;
        void *arg = ctx->done_arg;
        free(ctx->buckets);
        free(ctx);
        if (done)
            done(arg);
    }
}

static void on_fetcher_closed(void *arg)
{
    rev_ctx_t *ctx = arg;
    ctx->open--;
    ctx_maybe_free(ctx);
}

static void ctx_maybe_teardown(rev_ctx_t *ctx)
{
    if (!ctx->closing || ctx->dispatching > 0 || ctx->torn_down)
        return;
    ctx->torn_down = 1;
    for (size_t i = 0; i < ctx->nbuckets; i++) {
        while (ctx->buckets[i]) {
            ent_t *e = ctx->buckets[i];
            e->fetching = 0; /* fetch_close below drops the retrieval without a callback */
            e->fetch = NULL;
            rev__cache_remove(ctx, e);
        }
    }
    fetch_close(ctx->fetch, on_fetcher_closed, ctx);
}

static void on_job_closed(uv_handle_t *h)
{
    rev_job_t *job = container_of((uv_timer_t *)h, rev_job_t, timer);
    rev_ctx_t *ctx = job->ctx;
    free(job);
    ctx->open--;
    ctx_maybe_free(ctx);
}

static void waiter_unlink(rev_job_t *job)
{
    ent_t *e = job->wait;
    if (job->wprev)
        job->wprev->wnext = job->wnext;
    else
        e->waiters = job->wnext;
    if (job->wnext)
        job->wnext->wprev = job->wprev;
    job->wprev = job->wnext = NULL;
    job->wait = NULL;
}

/* Leaves the entry it waits on; a retrieval nobody waits for any more is stopped. */
static void job_leave_wait(rev_job_t *job)
{
    ent_t *e = job->wait;
    if (e == NULL)
        return;
    waiter_unlink(job);
    if (e->waiters == NULL && e->fetching && !job->ctx->closing) {
        fetch_cancel(e->fetch);
        e->fetch = NULL;
        e->fetching = 0;
        rev__cache_remove(job->ctx, e);
    }
}

static void job_unlink(rev_job_t *job)
{
    rev_ctx_t *ctx = job->ctx;
    if (!job->linked)
        return;
    if (job->prev)
        job->prev->next = job->next;
    else
        ctx->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->prev = job->next = NULL;
    job->linked = 0;
}

/* Releases everything; the memory goes when the timer has closed. */
static void job_release(rev_job_t *job)
{
    job_leave_wait(job);
    job_unlink(job);
    sk_X509_pop_free(job->chain, X509_free);
    X509_free(job->cert);
    sk_X509_pop_free(job->issuers, X509_free);
    crl_urls_free(&job->urls);
    OCSP_CERTID_free(job->ocsp_id);
    X509_CRL_free(job->base);
    fs_resolve_free(&job->resolve);
    free(job->plan);
    free(job->proxy);
    free(job->ldap_host);
    free(job->view);
    uv_close((uv_handle_t *)&job->timer, on_job_closed);
}

void rev__job_finish(rev_job_t *job)
{
    rev_ctx_t *ctx = job->ctx;
    if (job->kind == KIND_CRL && job->r.cause == FS_CAUSE_NONE) {
        if (job->soft_msg[0])
            fs_strlcpy(job->r.message, job->soft_msg, sizeof(job->r.message));
        else if (job->url_dead_msg[0])
            fs_strlcpy(job->r.message, job->url_dead_msg, sizeof(job->r.message));
    }
    uv_timer_stop(&job->timer);
    job_leave_wait(job);
    job_unlink(job); /* a rev_ctx_close() inside the callback must not see it */
    ctx->dispatching++;
    if (job->kind == KIND_CRL)
        job->cb(job->arg, &job->r);
    else
        job->aia_cb(job->arg, job->issuers, &job->r);
    ctx->dispatching--;
    job_release(job);
}

static rev_url_result_t *slot_new(rev_job_t *job, const char *url, const char *kind, int depth)
{
    rev_url_result_t *u =
        job->r.nurls < REV_MAX_URLS ? &job->r.urls[job->r.nurls++] : &job->scratch;
    memset(u, 0, sizeof(*u));
    fs_url_redact(url, u->url, sizeof(u->url)); /* reported and logged: no password */
    fs_strlcpy(u->kind, kind, sizeof(u->kind));
    u->cert_depth = depth;
    return u;
}

static void on_job_timer(uv_timer_t *t);
static void on_ent_fetched(void *arg, const fetch_result_t *res);

/* The time the next retrieval may take (see "Timeouts" in revoke.h), or 0 with *why filled when
 * none is left. */
static uint64_t job_url_limit(rev_job_t *job, uint64_t now, const char **why)
{
    uint64_t limit = job->pol.url_timeout_ms;
    if (job->pol.timeout_mode == REV_TIMEOUT_ACCUMULATIVE) {
        if (job->acc_deadline == 0) /* the budget runs from the first retrieval */
            job->acc_deadline = now + job->pol.budget_ms;
        uint64_t left = job->acc_deadline > now ? job->acc_deadline - now : 0;
        limit = left / 2;
        if (limit == 0)
            *why = "the accumulative retrieval budget is spent";
    }
    if (job->hard_deadline != 0) {
        uint64_t left = job->hard_deadline > now ? job->hard_deadline - now : 0;
        if (left == 0) {
            limit = 0;
            *why = "no time left before the deadline";
        } else if (limit > left) {
            limit = left;
        }
    }
    return limit;
}

static const char *stage_kind(const rev_job_t *job)
{
    if (job->kind == KIND_AIA)
        return "aia";
    return job->stage == STAGE_OCSP ? "ocsp" : job->stage == STAGE_DELTA ? "delta" : "crl";
}

/* Whether OCSP entry e's request is POSTed (RFC 5019: a GET URL past 255 bytes), known from its
 * retrieval; an entry restored from the state database works it out once. 0 for other kinds. */
static int ent_post(const rev_job_t *job, ent_t *e)
{
    if (e->kind != KIND_OCSP)
        return 0;
    if (!e->post_known) {
        unsigned char *der;
        size_t len;
        if (ocsp_request_der(job->ocsp_id, &der, &len) != 0)
            return 0;
        char *get = ocsp_get_url(e->url, der, len);
        e->post = get == NULL;
        e->post_known = 1;
        free(get);
        free(der);
    }
    return e->post;
}

/* Starts the retrieval of entry e: the OCSP request (GET when short, else POST) or the URL. */
static int ent_fetch_start(rev_job_t *job, ent_t *e, const char *fetch_url, uint64_t limit)
{
    fetch_req_t req;
    unsigned char *der = NULL;
    size_t len = 0;
    char *get = NULL;
    fetch_req_init(&req);
    req.url = fetch_url;
    req.timeout_ms = (uint32_t)limit;
    req.max_bytes = job->pol.max_bytes;
    req.proxy = e->ldap ? NULL : job->proxy;
    req.resolve = &job->resolve;
    req.dns_override_only = job->pol.dns_override_only;
    req.allow_ldap = e->ldap;
    if (e->kind == KIND_OCSP) {
        if (ocsp_request_der(job->ocsp_id, &der, &len) != 0)
            return UV_ENOMEM;
        get = ocsp_get_url(fetch_url, der, len);
        e->post = get == NULL;
        e->post_known = 1;
        if (get != NULL) {
            req.url = get;
        } else {
            req.post_body = der;
            req.post_len = len;
            req.post_type = "application/ocsp-request";
        }
    }
    int rc = fetch_start(job->ctx->fetch, &req, on_ent_fetched, e, &e->fetch);
    free(get);
    free(der);
    return rc;
}

/* Works on URL `url`: answers it from the cache, joins a retrieval in flight or starts one.
 * Returns 1 when the job now waits, 0 when the URL is settled (job->ui advanced). */
int rev__job_step_url(rev_job_t *job, const char *url, int depth)
{
    rev_ctx_t *ctx = job->ctx;
    rev_url_result_t *u = slot_new(job, url, stage_kind(job), depth);
    int kind = job->kind == KIND_AIA ? KIND_AIA : job->stage == STAGE_OCSP ? KIND_OCSP : KIND_CRL;
    char *fetch_url = NULL;
    int ldap = 0;
    if (!rev__job_url_route(job, url, u, &fetch_url, &ldap)) {
        job->ui++;
        return 0;
    }
    char *key = rev__key_make(kind, fetch_url, kind == KIND_OCSP ? job->ocsp_hex : "", job->view);
    uint64_t hash = rev__key_hash(key);
    ent_t *e = rev__cache_lookup(ctx, key, hash);
    if (e && !e->fetching) {
        free(key);
        free(fetch_url);
        ctx->stats.hits++;
        rev__cache_touch(ctx, e);
        u->from_cache = 1;
        u->post = ent_post(job, e);
        rev__job_use(job, e, u);
        job->ui++;
        return 0;
    }
    uint64_t now = uv_now(ctx->loop);
    const char *why = NULL;
    uint64_t limit = job_url_limit(job, now, &why);
    if (limit == 0) {
        free(key);
        free(fetch_url);
        rev__url_fail(job, u, FAIL_UNREACHABLE, "not tried: %s", why);
        job->ui++;
        return 0;
    }
    if (e == NULL) {
        e = rev__cache_add(ctx, kind, fetch_url, key, hash);
        e->ldap = ldap;
        int rc = ent_fetch_start(job, e, fetch_url, limit);
        if (rc != 0) {
            e->fetch = NULL;
            rev__cache_remove(ctx, e);
            free(fetch_url);
            rev__url_fail(job, u, FAIL_UNREACHABLE, "could not start the retrieval: %s",
                          uv_strerror(rc));
            job->ui++;
            return 0;
        }
        e->fetching = 1;
        ctx->stats.fetches++;
    } else {
        free(key);
        ctx->stats.joined++;
    }
    free(fetch_url);
    u->post = ent_post(job, e);
    u->timeout_ms = (uint32_t)limit;
    job->wait = e;
    job->wslot = u;
    job->wait_start = now;
    job->wprev = NULL;
    job->wnext = e->waiters;
    if (e->waiters)
        e->waiters->wprev = job;
    e->waiters = job;
    uv_timer_start(&job->timer, on_job_timer, limit + REV_GRACE_MS, 0);
    return 1;
}

static void on_job_timer(uv_timer_t *t)
{
    rev_job_t *job = container_of(t, rev_job_t, timer);
    rev_ctx_t *ctx = job->ctx;
    ctx->dispatching++;
    if (job->wait) {
        rev_url_result_t *u = job->wslot;
        uint32_t waited = (uint32_t)(uv_now(ctx->loop) - job->wait_start);
        job_leave_wait(job);
        rev__url_fail(job, u, FAIL_UNREACHABLE, "timed out after %u ms", waited);
        u->time_ms = waited;
        job->ui++;
    }
    rev__job_run(job);
    ctx->dispatching--;
    ctx_maybe_teardown(ctx);
}

static void on_ent_fetched(void *arg, const fetch_result_t *res)
{
    ent_t *e = arg;
    rev_ctx_t *ctx = e->ctx;
    ctx->dispatching++;
    e->fetch = NULL;
    e->fetching = 0;
    rev__ent_settle(e, res);
    e->busy++;
    rev_job_t *job;
    while ((job = e->waiters) != NULL) {
        rev_url_result_t *u = job->wslot;
        waiter_unlink(job);
        uv_timer_stop(&job->timer);
        u->time_ms = (uint32_t)(uv_now(ctx->loop) - job->wait_start);
        rev__job_use(job, e, u);
        job->ui++;
        rev__job_run(job);
    }
    e->busy--;
    if (e->refused)
        rev__ent_refuse(ctx, e);
    rev__cache_evict(ctx);
    ctx->dispatching--;
    ctx_maybe_teardown(ctx);
}

/* ---- public ------------------------------------------------------------------------------- */

int rev_ctx_new(rev_ctx_t **out, uv_loop_t *loop, const rev_cache_limits_t *lim)
{
    rev_ctx_t *ctx = fs_xcalloc(1, sizeof(*ctx));
    int rc = fetch_new(&ctx->fetch, loop);
    if (rc != 0) {
        free(ctx);
        return rc;
    }
    ctx->loop = loop;
    ctx->lim.max_age_s = 86400;
    ctx->lim.max_bytes_total = (size_t)64 << 20;
    if (lim) {
        ctx->lim.max_age_s = lim->max_age_s >= 0 ? lim->max_age_s : 0;
        ctx->lim.max_bytes_total = lim->max_bytes_total;
    }
    ctx->nbuckets = 64;
    ctx->buckets = fs_xcalloc(ctx->nbuckets, sizeof(*ctx->buckets));
    ctx->open = 1;
    *out = ctx;
    return 0;
}

void rev_ctx_close(rev_ctx_t *ctx, void (*done)(void *arg), void *arg)
{
    assert(!ctx->closing);
    ctx->closing = 1;
    ctx->done = done;
    ctx->done_arg = arg;
    ctx->dispatching++;
    while (ctx->jobs)
        job_release(ctx->jobs);
    ctx->dispatching--;
    ctx_maybe_teardown(ctx);
}

rev_job_t *rev__job_new(rev_ctx_t *ctx, int kind, const rev_policy_t *p, void *arg)
{
    rev_job_t *job = fs_xcalloc(1, sizeof(*job));
    char err[256];
    job->ctx = ctx;
    job->kind = kind;
    job->arg = arg;
    job->pol = *p;
    job->proxy = p->proxy ? fs_xstrdup(p->proxy) : NULL;
    job->ldap_host = p->ldap_host ? fs_xstrdup(p->ldap_host) : NULL;
    job->view = fs_xstrdup(p->view ? p->view : "");
    for (size_t i = 0; p->resolve && i < p->resolve->n; i++)
        fs_resolve_add(&job->resolve, p->resolve->e[i].name, p->resolve->e[i].addr, err);
    job->pol.proxy = job->proxy;
    job->pol.ldap_host = job->ldap_host;
    job->pol.view = job->view;
    job->pol.resolve = &job->resolve;
    if (job->pol.url_timeout_ms == 0)
        job->pol.url_timeout_ms = 15000;
    if (job->pol.budget_ms == 0)
        job->pol.budget_ms = 20000;
    if (job->pol.max_bytes == 0)
        job->pol.max_bytes = (size_t)16 << 20;
    uint64_t now = uv_now(ctx->loop);
    if (job->pol.max_total_ms != 0)
        job->hard_deadline = now + job->pol.max_total_ms;
    job->r.revoked_depth = -1;
    job->r.revoked_reason = -1;
    uv_timer_init(ctx->loop, &job->timer);
    ctx->open++;
    job->next = ctx->jobs;
    if (ctx->jobs)
        ctx->jobs->prev = job;
    ctx->jobs = job;
    job->linked = 1;
    uv_timer_start(&job->timer, on_job_timer, 0, 0); /* never call back from inside start */
    return job;
}

void rev_job_cancel(rev_job_t *job)
{
    rev_ctx_t *ctx = job->ctx;
    ctx->dispatching++;
    job_release(job);
    ctx->dispatching--;
    ctx_maybe_teardown(ctx);
}
