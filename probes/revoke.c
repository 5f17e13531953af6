/* revoke.c - revocation and AIA jobs over the fetcher: OCSP, CRLs and delta CRLs per certificate
 * the way CryptoAPI checks them, and a cache of parsed CRLs, OCSP responses and issuer
 * certificates per (URL, network view) with LRU bounds, negative entries and single flight.
 * One file because the cache only exists for these jobs and they only through it. */
#include "probes/revoke.h"
#include "probes/crl.h"
#include "probes/fetch.h"
#include "probes/ocsp.h"
#include "probes/util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define REV_GRACE_MS 100 /* a waiter's own deadline trails the fetch's, so curl reports first */
#define SIG_MEMO 4

const char *const rev_mode_names[REV_MODE_COUNT] = {
#define X(e, name) name,
    REV_MODE_LIST(X)
#undef X
};
const char *const rev_scope_names[REV_SCOPE_COUNT] = {
#define X(e, name) name,
    REV_SCOPE_LIST(X)
#undef X
};
const char *const rev_timeout_names[REV_TIMEOUT_COUNT] = {
#define X(e, name) name,
    REV_TIMEOUT_LIST(X)
#undef X
};
_Static_assert(FS_ARRAY_SIZE(rev_mode_names) == REV_MODE_COUNT, "rev_mode_names");
_Static_assert(FS_ARRAY_SIZE(rev_scope_names) == REV_SCOPE_COUNT, "rev_scope_names");
_Static_assert(FS_ARRAY_SIZE(rev_timeout_names) == REV_TIMEOUT_COUNT, "rev_timeout_names");

/* What an entry holds (a delta CRL is a KIND_CRL entry: same URL rules and cache). */
enum { KIND_CRL, KIND_AIA, KIND_OCSP };
/* Where a certificate's check is: its OCSP URLs, its CDP URLs, the delta URLs of its base CRL. */
enum { STAGE_OCSP, STAGE_CDP, STAGE_DELTA };
/* Failure classes, ranked: a certificate reports its most advanced failure. */
enum { FAIL_NONE, FAIL_UNREACHABLE, FAIL_INVALID, FAIL_EXPIRED };

typedef struct ent_s ent_t;

/* A cache entry: one URL in one network view, in flight or holding its last outcome. */
struct ent_s {
    ent_t *hnext;         /* hash chain */
    ent_t *lprev, *lnext; /* LRU, completed entries only */
    uint64_t hash;
    char *key;
    char *url;
    int kind;
    int ldap;     /* retrieved through LDAP: no HTTP status, an LDIF-like body */
    int fetching; /* a retrieval is in flight; never evicted */
    int busy;     /* waiters are being told; never freed */
    int in_lru;   /* counted against the budget (ctx->lru_bytes) */
    int refused;  /* larger than the budget with the oversized place taken: dropped once told */
    fetch_job_t *fetch;
    rev_job_t *waiters;
    rev_ctx_t *ctx;
    /* outcome of the last retrieval */
    int ok;
    int fail;
    char error[160];
    long http_status;
    size_t bytes;
    int64_t expires_ms; /* host wall clock */
    int64_t fetched_ms; /* when it was retrieved, host wall clock */
    uint64_t settled;   /* ctx->settle_seq when it settled (rev_cache_export), 0: imported */
    X509_CRL *crl;
    int64_t this_update, next_update;
    STACK_OF(X509) * certs;
    OCSP_BASICRESP *bs;
    EVP_PKEY *sig_good[SIG_MEMO], *sig_bad[SIG_MEMO]; /* issuer keys already tried */
    unsigned nsig_good, nsig_bad;
    size_t cost;
};

struct rev_ctx_s {
    uv_loop_t *loop;
    fetch_t *fetch;
    rev_cache_limits_t lim;
    ent_t **buckets;
    size_t nbuckets;
    ent_t *lru_head, *lru_tail;
    size_t lru_bytes; /* cost of the entries in the LRU list, kept <= max_bytes_total */
    ent_t *oversize;  /* the one entry that costs more than max_bytes_total, or NULL */
    rev_job_t *jobs;
    rev_cache_stats_t stats;
    uint64_t settle_seq; /* retrievals settled so far (rev_cache_export's cursor) */
    int open;            /* the fetcher and job timers not closed yet */
    int dispatching;
    int closing, torn_down;
    void (*done)(void *arg);
    void *done_arg;
};

struct rev_job_s {
    rev_ctx_t *ctx;
    rev_job_t *prev, *next; /* ctx->jobs, while linked */
    int linked;
    rev_job_t *wprev, *wnext; /* wait->waiters */
    ent_t *wait;
    rev_url_result_t *wslot;
    uint64_t wait_start;
    uv_timer_t timer; /* kick-off, then the deadline of the current wait */
    int kind;
    rev_policy_t pol; /* strings below are the job's copies */
    char *proxy, *ldap_host, *view;
    fs_resolve_t resolve;
    STACK_OF(X509) * chain;
    X509 *cert; /* AIA: the certificate whose issuer is wanted */
    int64_t at;
    uint64_t acc_deadline;  /* accumulative mode: first retrieval's uv_now() + budget_ms */
    uint64_t hard_deadline; /* uv_now() + max_total_ms, or 0 */
    int *plan;              /* depths to check, root down */
    int nplan, pi;
    int stage;       /* STAGE_* of plan[pi] */
    crl_urls_t urls; /* the current stage's URLs */
    size_t ui;
    int urls_loaded;
    int stage_ok;         /* the current stage got its answer (OCSP good, a base CRL, a delta) */
    int cert_done;        /* plan[pi] has a usable answer */
    int cert_fail;        /* FAIL_* of plan[pi] so far */
    int cert_dead;        /* URLs of plan[pi] that failed (skipped ones do not count) */
    int cert_skipped;     /* URLs of plan[pi] skipped at no cost */
    char cert_msg[200];   /* the failure that decides, in words */
    char dead_msg[200];   /* the first dead URL of plan[pi] */
    char skip_msg[120];   /* the first skipped URL of plan[pi] */
    OCSP_CERTID *ocsp_id; /* of plan[pi], for the OCSP stage */
    char ocsp_hex[256];   /* its DER in hex: the cache key part */
    X509_CRL *base;       /* the usable base CRL of plan[pi] while its delta is sought */
    int revoked;
    char soft_msg[256];
    char url_dead_msg[256]; /* the first revocation_url_dead, in words */
    STACK_OF(X509) * issuers;
    rev_url_result_t scratch; /* results past REV_MAX_URLS */
    rev_result_t r;
    rev_cb cb;
    rev_aia_cb aia_cb;
    void *arg;
};

void rev_policy_defaults(rev_policy_t *p)
{
    memset(p, 0, sizeof(*p));
    p->mode = REV_STRICT;
    p->scope = REV_SCOPE_CHAIN_EXCLUDE_ROOT;
    p->aia_fetch = 1;
    p->ocsp = 1;
    p->timeout_mode = REV_TIMEOUT_PER_URL;
    p->url_timeout_ms = 15000;
    p->budget_ms = 20000;
    p->max_bytes = (size_t)16 << 20;
    p->crl_expiring_soon_s = 86400;
}

/* ---- cache -------------------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* "<kind><url>\x1f[<certid hex>\x1f]<view>": OCSP answers are per certificate too. */
static char *key_make(int kind, const char *url, const char *certid, const char *view)
{
    size_t n = strlen(url) + strlen(view) + strlen(certid) + 5;
    char *k = fs_xmalloc(n);
    snprintf(k, n, "%c%s\x1f%s%s%s", "CAO"[kind], url, certid, certid[0] ? "\x1f" : "", view);
    return k;
}

static void lru_unlink(rev_ctx_t *ctx, ent_t *e)
{
    if (!e->in_lru)
        return;
    e->in_lru = 0;
    ctx->lru_bytes -= e->cost;
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else if (ctx->lru_head == e)
        ctx->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else if (ctx->lru_tail == e)
        ctx->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push_front(rev_ctx_t *ctx, ent_t *e)
{
    assert(!e->in_lru);
    e->in_lru = 1;
    ctx->lru_bytes += e->cost;
    e->lprev = NULL;
    e->lnext = ctx->lru_head;
    if (ctx->lru_head)
        ctx->lru_head->lprev = e;
    ctx->lru_head = e;
    if (ctx->lru_tail == NULL)
        ctx->lru_tail = e;
}

static void ent_clear_payload(ent_t *e)
{
    X509_CRL_free(e->crl);
    e->crl = NULL;
    sk_X509_pop_free(e->certs, X509_free);
    e->certs = NULL;
    OCSP_BASICRESP_free(e->bs);
    e->bs = NULL;
    for (unsigned i = 0; i < SIG_MEMO; i++) {
        EVP_PKEY_free(e->sig_good[i]);
        EVP_PKEY_free(e->sig_bad[i]);
        e->sig_good[i] = e->sig_bad[i] = NULL;
    }
    e->nsig_good = e->nsig_bad = 0;
}

static void cache_grow(rev_ctx_t *ctx)
{
    size_t n = ctx->nbuckets * 2;
    ent_t **b = fs_xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < ctx->nbuckets; i++) {
        ent_t *e = ctx->buckets[i];
        while (e) {
            ent_t *next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(ctx->buckets);
    ctx->buckets = b;
    ctx->nbuckets = n;
}

static ent_t *cache_add(rev_ctx_t *ctx, int kind, const char *url, char *key, uint64_t hash)
{
    if (ctx->stats.entries + 1 > ctx->nbuckets)
        cache_grow(ctx);
    ent_t *e = fs_xcalloc(1, sizeof(*e));
    e->ctx = ctx;
    e->kind = kind;
    e->key = key;
    e->hash = hash;
    e->url = fs_xstrdup(url);
    e->hnext = ctx->buckets[hash & (ctx->nbuckets - 1)];
    ctx->buckets[hash & (ctx->nbuckets - 1)] = e;
    ctx->stats.entries++;
    return e;
}

/* Frees e; it must be idle (no retrieval, no waiters, not being dispatched). */
static void cache_remove(rev_ctx_t *ctx, ent_t *e)
{
    assert(!e->fetching && e->waiters == NULL && e->busy == 0);
    ent_t **pp = &ctx->buckets[e->hash & (ctx->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ctx, e);
    if (ctx->oversize == e)
        ctx->oversize = NULL;
    ctx->stats.bytes -= e->cost;
    ctx->stats.entries--;
    ent_clear_payload(e);
    free(e->key);
    free(e->url);
    free(e);
}

/* The entry for key, or NULL; drops a stale completed entry. */
static ent_t *cache_lookup(rev_ctx_t *ctx, const char *key, uint64_t hash)
{
    ent_t *e = ctx->buckets[hash & (ctx->nbuckets - 1)];
    while (e && (e->hash != hash || strcmp(e->key, key) != 0))
        e = e->hnext;
    if (e && !e->fetching && e->busy == 0 && fs_wall_ms() >= e->expires_ms) {
        cache_remove(ctx, e);
        return NULL;
    }
    return e;
}

static void cache_evict(rev_ctx_t *ctx)
{
    ent_t *e = ctx->lru_tail;
    while (e && ctx->lru_bytes > ctx->lim.max_bytes_total) {
        ent_t *prev = e->lprev;
        if (e->busy == 0 && e->waiters == NULL && !e->fetching)
            cache_remove(ctx, e);
        e = prev;
    }
}

/* Whether the CRL in e is signed by issuer's key, remembered per key. */
static int ent_sig_ok(ent_t *e, X509 *issuer, char err[CRL_ERR_LEN])
{
    EVP_PKEY *k = X509_get0_pubkey(issuer);
    if (k == NULL) {
        ERR_clear_error();
        snprintf(err, CRL_ERR_LEN, "the issuing CA has no usable public key");
        return 0;
    }
    for (unsigned i = 0; i < SIG_MEMO; i++) {
        if (e->sig_good[i] && EVP_PKEY_eq(e->sig_good[i], k) == 1)
            return 1;
        if (e->sig_bad[i] && EVP_PKEY_eq(e->sig_bad[i], k) == 1) {
            snprintf(err, CRL_ERR_LEN, "bad CRL signature (not signed by the issuing CA's key)");
            return 0;
        }
    }
    int ok = crl_verify_signature(e->crl, k, err) == 0;
    EVP_PKEY **slot =
        ok ? &e->sig_good[e->nsig_good++ % SIG_MEMO] : &e->sig_bad[e->nsig_bad++ % SIG_MEMO];
    EVP_PKEY_free(*slot);
    *slot = EVP_PKEY_up_ref(k) ? k : NULL;
    if (!ok)
        snprintf(err, CRL_ERR_LEN, "bad CRL signature (not signed by the issuing CA's key)");
    return ok;
}

/* How long a failure is kept: REV_NEGATIVE_TTL_S, never beyond max_age_s. */
static int64_t neg_ttl_ms(const rev_ctx_t *ctx)
{
    int64_t neg = (int64_t)REV_NEGATIVE_TTL_S * 1000, max_age = ctx->lim.max_age_s * 1000;
    return neg < max_age ? neg : max_age;
}

/* What e holds in memory: its bookkeeping and the parsed CRL or certificates. */
static size_t ent_cost(const ent_t *e)
{
    size_t c = sizeof(*e) + strlen(e->key) + 1 + strlen(e->url) + 1;
    if (e->crl)
        c += crl_parsed_cost(e->crl, e->bytes);
    if (e->certs)
        c += crl_certs_cost(e->certs, e->bytes);
    if (e->bs) /* the response's own certificates dominate, as for an AIA payload */
        c += crl_certs_cost(OCSP_resp_get0_certs(e->bs), e->bytes) + 1024;
    return c;
}

/* Places an entry that just settled (see "Cache bounds" in revoke.h). Within the budget it joins
 * the LRU list; cache_evict trims the oldest once its waiters are told. Costing more than the
 * whole budget, it takes the one place outside the budget when that is free or its holder is
 * stale, and evicts nothing; else it is refused (ent_refuse after its waiters). */
static void cache_admit(rev_ctx_t *ctx, ent_t *e, int64_t now_ms)
{
    if (e->cost <= ctx->lim.max_bytes_total) {
        lru_push_front(ctx, e);
        return;
    }
    ent_t *held = ctx->oversize;
    if (held && now_ms >= held->expires_ms && held->busy == 0)
        cache_remove(ctx, held);
    if (ctx->oversize == NULL)
        ctx->oversize = e;
    else
        e->refused = 1;
}

/* Drops a refused entry's payload once the jobs waiting for its retrieval used it, and keeps a
 * failure in its place for the negative TTL: the URL is not retrieved again sooner. */
static void ent_refuse(rev_ctx_t *ctx, ent_t *e)
{
    assert(e->refused && !e->in_lru && e->busy == 0);
    size_t was = e->cost;
    ent_clear_payload(e);
    e->refused = 0;
    e->ok = 0;
    e->fail = FAIL_INVALID;
    snprintf(e->error, sizeof(e->error),
             "CRL not kept: %zu bytes once parsed, over cache.crl_max_bytes_total (%zu) while "
             "another CRL that size is cached",
             was, ctx->lim.max_bytes_total);
    int64_t until = fs_wall_ms() + neg_ttl_ms(ctx);
    if (e->expires_ms > until)
        e->expires_ms = until;
    ctx->stats.bytes -= was;
    e->cost = ent_cost(e);
    ctx->stats.bytes += e->cost;
    ctx->stats.refused++;
    lru_push_front(ctx, e);
}

/* ---- jobs --------------------------------------------------------------------------------- */

static void job_run(rev_job_t *job);

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
            cache_remove(ctx, e);
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
        cache_remove(job->ctx, e);
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

static void job_finish(rev_job_t *job)
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

static void url_fail(rev_job_t *job, rev_url_result_t *u, int cls, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void url_fail(rev_job_t *job, rev_url_result_t *u, int cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->error, sizeof(u->error), fmt, ap);
    va_end(ap);
    u->ok = 0;
    if (cls > job->cert_fail || job->cert_msg[0] == '\0') {
        if (cls > job->cert_fail)
            job->cert_fail = cls;
        snprintf(job->cert_msg, sizeof(job->cert_msg), "%.80s: %.110s", u->url, u->error);
    }
    if (job->cert_dead++ == 0)
        snprintf(job->dead_msg, sizeof(job->dead_msg), "%.80s: %.110s", u->url, u->error);
}

/* A URL not retrieved at no cost: reported, never a failure by itself. */
static void url_skip(rev_job_t *job, rev_url_result_t *u, const char *why)
{
    u->ok = 0;
    u->skipped = 1;
    snprintf(u->error, sizeof(u->error), "skipped: %s", why);
    if (job->cert_skipped++ == 0)
        snprintf(job->skip_msg, sizeof(job->skip_msg), "%.60s %.50s", u->url, u->error);
}

static void subject_str(X509 *x, char *buf, size_t n)
{
    const X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    const ASN1_STRING *s = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)) : NULL;
    if (s)
        snprintf(buf, n, "%.*s", ASN1_STRING_length(s), ASN1_STRING_get0_data(s));
    else
        X509_NAME_oneline(name, buf, (int)n);
}

static const char *reason_name(int r)
{
    static const char *const names[] = {
        "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", "value7",
        "removeFromCRL", "privilegeWithdrawn",   "aACompromise",
    };
    return r >= 0 && r < (int)FS_ARRAY_SIZE(names) ? names[r] : "no reason given";
}

static X509 *issuer_of(rev_job_t *job, int depth)
{
    int n = sk_X509_num(job->chain);
    return depth + 1 < n ? sk_X509_value(job->chain, depth + 1) : sk_X509_value(job->chain, depth);
}

/* Records a revocation of the certificate at depth, found at u, and stops the check there. */
static void job_revoked(rev_job_t *job, rev_url_result_t *u, int depth, int64_t when, int reason,
                        const char *source)
{
    char subj[64], t1[32];
    subject_str(sk_X509_value(job->chain, depth), subj, sizeof(subj));
    job->revoked = 1;
    job->r.cause = FS_CAUSE_CERT_REVOKED;
    job->r.revoked_depth = depth;
    job->r.revoked_at = when;
    job->r.revoked_reason = reason;
    snprintf(job->r.message, sizeof(job->r.message),
             "certificate \"%.60s\" (depth %d) revoked on %s (%s) per %s %.100s", subj, depth,
             fs_rfc3339(when, t1, sizeof(t1)), reason_name(reason), source, u->url);
}

/* The checks a CRL (base or delta) must pass for the certificate at depth; fills u. Returns 1
 * when usable, 0 after url_fail. */
static int crl_usable(rev_job_t *job, ent_t *e, rev_url_result_t *u, int depth)
{
    X509 *cert = sk_X509_value(job->chain, depth), *issuer = issuer_of(job, depth);
    char err[CRL_ERR_LEN], t1[32], t2[32];
    u->http_status = e->http_status;
    u->bytes = e->bytes;
    u->this_update = e->this_update;
    u->next_update = e->next_update;
    if (!e->ok) {
        url_fail(job, u, e->fail, "%s", e->error);
        return 0;
    }
    if (e->bytes > job->pol.max_bytes) {
        url_fail(job, u, FAIL_INVALID, "over size cap (%zu bytes > %zu)", e->bytes,
                 job->pol.max_bytes);
        return 0;
    }
    if (crl_check_issuer(e->crl, cert, issuer, err) != 0 || !ent_sig_ok(e, issuer, err)) {
        url_fail(job, u, FAIL_INVALID, "%s", err);
        return 0;
    }
    if (job->stage == STAGE_DELTA) {
        if (crl_check_delta(e->crl, job->base, err) != 0) {
            url_fail(job, u, FAIL_INVALID, "%s", err);
            return 0;
        }
    } else if (crl_is_delta(e->crl)) {
        url_fail(job, u, FAIL_INVALID, "a delta CRL where the base CRL belongs");
        return 0;
    }
    switch (crl_check_time(e->crl, job->at)) {
    case CRL_TIME_EXPIRED:
        url_fail(job, u, FAIL_EXPIRED,
                 "CRL expired: nextUpdate %s is before the endpoint's time %s",
                 fs_rfc3339(e->next_update, t1, sizeof(t1)), fs_rfc3339(job->at, t2, sizeof(t2)));
        return 0;
    case CRL_TIME_NOT_YET_VALID:
        url_fail(job, u, FAIL_EXPIRED,
                 "CRL not yet valid: thisUpdate %s is after the endpoint's time %s",
                 fs_rfc3339(e->this_update, t1, sizeof(t1)), fs_rfc3339(job->at, t2, sizeof(t2)));
        return 0;
    case CRL_TIME_OK:
        break;
    }
    u->ok = 1;
    u->error[0] = '\0';
    if (e->next_update && e->next_update - job->at < job->pol.crl_expiring_soon_s)
        job->r.warnings |= FS_WARN_BIT(FS_WARN_CRL_EXPIRING_SOON);
    return 1;
}

/* Applies the CRL (base or delta) in e to the certificate at plan[pi]. */
static void job_use_crl(rev_job_t *job, ent_t *e, rev_url_result_t *u)
{
    int depth = job->plan[job->pi];
    X509 *cert = sk_X509_value(job->chain, depth);
    if (!crl_usable(job, e, u, depth))
        return;
    job->stage_ok = 1;
    int64_t when = 0;
    int reason = -1;
    if (crl_lookup_serial(e->crl, X509_get0_serialNumber(cert), &when, &reason) == 1) {
        job_revoked(job, u, depth, when, reason,
                    job->stage == STAGE_DELTA ? "the delta CRL at" : "the CRL at");
        return;
    }
    if (job->stage == STAGE_CDP && X509_CRL_up_ref(e->crl)) {
        X509_CRL_free(job->base); /* kept for its delta, if it names one */
        job->base = e->crl;
    }
}

/* Applies the OCSP response in e to the certificate at plan[pi]. Every failure counts as
 * unreachable: Windows falls over to the CRLs and, without them, reports revocation offline. */
static void job_use_ocsp(rev_job_t *job, ent_t *e, rev_url_result_t *u)
{
    int depth = job->plan[job->pi];
    X509 *issuer = issuer_of(job, depth);
    char err[CRL_ERR_LEN];
    ocsp_answer_t a;
    u->http_status = e->http_status;
    u->bytes = e->bytes;
    if (!e->ok) {
        url_fail(job, u, FAIL_UNREACHABLE, "%s", e->error);
        return;
    }
    if (e->bytes > job->pol.max_bytes) {
        url_fail(job, u, FAIL_UNREACHABLE, "over size cap (%zu bytes > %zu)", e->bytes,
                 job->pol.max_bytes);
        return;
    }
    if (ocsp_check_signer(e->bs, issuer, job->at, err) != 0 ||
        ocsp_find(e->bs, job->ocsp_id, &a, err) != 0) {
        url_fail(job, u, FAIL_UNREACHABLE, "%s", err);
        return;
    }
    u->this_update = a.this_update;
    u->next_update = a.next_update;
    fs_strlcpy(u->status, ocsp_status_name(a.status), sizeof(u->status));
    if (ocsp_check_time(&a, job->at, err) != 0) {
        url_fail(job, u, FAIL_UNREACHABLE, "%s", err);
        return;
    }
    if (a.status == OCSP_ANSWER_UNKNOWN) {
        url_fail(job, u, FAIL_UNREACHABLE,
                 "the responder does not know this certificate "
                 "(status unknown)");
        return;
    }
    u->ok = 1;
    u->error[0] = '\0';
    job->stage_ok = 1;
    if (a.status == OCSP_ANSWER_REVOKED)
        job_revoked(job, u, depth, a.revoked_at, a.reason, "the OCSP responder");
}

/* Keeps the issuers of job->cert found in e. */
static void job_use_aia(rev_job_t *job, ent_t *e, rev_url_result_t *u)
{
    u->http_status = e->http_status;
    u->bytes = e->bytes;
    if (!e->ok) {
        url_fail(job, u, e->fail, "%s", e->error);
        return;
    }
    if (e->bytes > job->pol.max_bytes) {
        url_fail(job, u, FAIL_INVALID, "over size cap (%zu bytes > %zu)", e->bytes,
                 job->pol.max_bytes);
        return;
    }
    STACK_OF(X509) *sk = sk_X509_new_null();
    for (int i = 0; sk && i < sk_X509_num(e->certs); i++) {
        X509 *c = sk_X509_value(e->certs, i);
        if (X509_check_issued(c, job->cert) == X509_V_OK && X509_up_ref(c) && !sk_X509_push(sk, c))
            X509_free(c);
    }
    ERR_clear_error();
    if (sk == NULL || sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        url_fail(job, u, FAIL_INVALID, "the payload holds no issuer of this certificate");
        return;
    }
    u->ok = 1;
    job->issuers = sk;
}

static void job_use(rev_job_t *job, ent_t *e, rev_url_result_t *u)
{
    if (e->kind == KIND_OCSP)
        job_use_ocsp(job, e, u);
    else if (e->kind == KIND_CRL)
        job_use_crl(job, e, u);
    else
        job_use_aia(job, e, u);
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

/* What a URL of the current stage is in this view: 1 fetch (fills *fetch_url, malloc'ed, and
 * *ldap), 0 after url_skip or url_fail. */
static int job_url_route(rev_job_t *job, const char *url, rev_url_result_t *u, char **fetch_url,
                         int *ldap)
{
    *ldap = 0;
    if (crl_url_is_http(url)) {
        *fetch_url = fs_xstrdup(url);
        return 1;
    }
    if (job->kind == KIND_CRL && job->stage != STAGE_OCSP) {
        if (crl_url_has_scheme(url, "ldap")) {
            if (job->pol.ldap_host == NULL) {
                url_skip(job, u, "no directory in this view");
                return 0;
            }
            size_t n = strlen(url) + strlen(job->pol.ldap_host) + 8;
            *fetch_url = fs_xmalloc(n);
            if (strncmp(url + 7, "/", 1) == 0) /* host-less: the view's directory */
                snprintf(*fetch_url, n, "ldap://%s%s", job->pol.ldap_host, url + 7);
            else
                snprintf(*fetch_url, n, "%s", url);
            *ldap = 1;
            return 1;
        }
        if (crl_url_has_scheme(url, "file")) {
            url_skip(job, u, "file:// is not retrieved");
            return 0;
        }
    }
    const char *colon = strchr(url, ':');
    int n = colon ? (int)(colon - url) : 0;
    url_fail(job, u, FAIL_UNREACHABLE, "%.*s URL not retrieved (only http://%s is fetched)",
             n > 10 ? 10 : n, url,
             job->kind == KIND_CRL && job->stage != STAGE_OCSP ? " and ldap://" : "");
    return 0;
}

static const char *stage_kind(const rev_job_t *job)
{
    if (job->kind == KIND_AIA)
        return "aia";
    return job->stage == STAGE_OCSP ? "ocsp" : job->stage == STAGE_DELTA ? "delta" : "crl";
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
static int job_step_url(rev_job_t *job, const char *url, int depth)
{
    rev_ctx_t *ctx = job->ctx;
    rev_url_result_t *u = slot_new(job, url, stage_kind(job), depth);
    int kind = job->kind == KIND_AIA ? KIND_AIA : job->stage == STAGE_OCSP ? KIND_OCSP : KIND_CRL;
    char *fetch_url = NULL;
    int ldap = 0;
    if (!job_url_route(job, url, u, &fetch_url, &ldap)) {
        job->ui++;
        return 0;
    }
    if (kind == KIND_OCSP) {
        unsigned char *der;
        size_t len;
        if (ocsp_request_der(job->ocsp_id, &der, &len) == 0) {
            char *get = ocsp_get_url(fetch_url, der, len);
            u->post = get == NULL;
            free(get);
            free(der);
        }
    }
    char *key = key_make(kind, fetch_url, kind == KIND_OCSP ? job->ocsp_hex : "", job->view);
    uint64_t hash = fnv1a(key);
    ent_t *e = cache_lookup(ctx, key, hash);
    if (e && !e->fetching) {
        free(key);
        free(fetch_url);
        ctx->stats.hits++;
        if (e->in_lru) {
            lru_unlink(ctx, e);
            lru_push_front(ctx, e);
        }
        u->from_cache = 1;
        job_use(job, e, u);
        job->ui++;
        return 0;
    }
    uint64_t now = uv_now(ctx->loop);
    const char *why = NULL;
    uint64_t limit = job_url_limit(job, now, &why);
    if (limit == 0) {
        free(key);
        free(fetch_url);
        url_fail(job, u, FAIL_UNREACHABLE, "not tried: %s", why);
        job->ui++;
        return 0;
    }
    if (e == NULL) {
        e = cache_add(ctx, kind, fetch_url, key, hash);
        e->ldap = ldap;
        int rc = ent_fetch_start(job, e, fetch_url, limit);
        if (rc != 0) {
            e->fetch = NULL;
            cache_remove(ctx, e);
            free(fetch_url);
            url_fail(job, u, FAIL_UNREACHABLE, "could not start the retrieval: %s",
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

/* Settles plan[pi]: records its failure as a cause or a forgiven warning, or a dead URL beside
 * its success, and moves on to the next certificate. */
static void job_conclude_cert(rev_job_t *job)
{
    int depth = job->plan[job->pi];
    char subj[64];
    subject_str(sk_X509_value(job->chain, depth), subj, sizeof(subj));
    if (!job->cert_done && job->cert_fail == FAIL_NONE && job->cert_skipped > 0) {
        /* Nothing retrievable in this view: an off-domain client with only ldap:// CDPs. */
        job->cert_fail = FAIL_UNREACHABLE;
        snprintf(job->cert_msg, sizeof(job->cert_msg),
                 "no revocation URL can be retrieved in this view (%d skipped; %.120s)",
                 job->cert_skipped, job->skip_msg);
    }
    if (!job->cert_done && job->cert_fail != FAIL_NONE) {
        static const fs_cause_t causes[] = {FS_CAUSE_NONE, FS_CAUSE_CRL_UNREACHABLE,
                                            FS_CAUSE_CRL_INVALID, FS_CAUSE_CRL_EXPIRED};
        static const char *const what[] = {"", "revocation server offline", "invalid CRL",
                                           "stale CRL"};
        int forgiven = job->pol.mode == REV_SOFT_FAIL &&
                       (job->cert_fail == FAIL_UNREACHABLE || job->cert_fail == FAIL_EXPIRED);
        if (forgiven) {
            job->r.warnings |= FS_WARN_BIT(FS_WARN_REVOCATION_SOFT_FAIL);
            if (job->soft_msg[0] == '\0')
                snprintf(job->soft_msg, sizeof(job->soft_msg),
                         "%s for \"%.50s\" (ignored by the soft-fail policy): %.140s",
                         what[job->cert_fail], subj, job->cert_msg);
        } else if (job->r.cause == FS_CAUSE_NONE) {
            job->r.cause = causes[job->cert_fail];
            snprintf(job->r.message, sizeof(job->r.message), "%s for \"%.50s\": %.170s",
                     what[job->cert_fail], subj, job->cert_msg);
        }
    } else if (job->cert_done && job->cert_dead > 0) {
        job->r.warnings |= FS_WARN_BIT(FS_WARN_REVOCATION_URL_DEAD);
        if (job->url_dead_msg[0] == '\0')
            snprintf(job->url_dead_msg, sizeof(job->url_dead_msg),
                     "revocation URL dead for \"%.50s\" (another one answered): %.170s", subj,
                     job->dead_msg);
    }
    crl_urls_free(&job->urls);
    OCSP_CERTID_free(job->ocsp_id);
    job->ocsp_id = NULL;
    X509_CRL_free(job->base);
    job->base = NULL;
    job->urls_loaded = 0;
    job->stage = STAGE_OCSP;
    job->stage_ok = 0;
    job->cert_done = 0;
    job->cert_fail = FAIL_NONE;
    job->cert_dead = job->cert_skipped = 0;
    job->cert_msg[0] = job->dead_msg[0] = job->skip_msg[0] = '\0';
    job->pi++;
}

/* Loads the URLs of the current stage of plan[pi]. */
static void job_load_stage(rev_job_t *job)
{
    X509 *cert = sk_X509_value(job->chain, job->plan[job->pi]);
    crl_urls_free(&job->urls);
    job->ui = 0;
    job->stage_ok = 0;
    job->urls_loaded = 1;
    switch (job->stage) {
    case STAGE_OCSP:
        if (job->pol.ocsp && ocsp_urls(cert, &job->urls) > 0) {
            job->ocsp_id = ocsp_cert_id(cert, issuer_of(job, job->plan[job->pi]));
            if (job->ocsp_id == NULL ||
                ocsp_cert_id_hex(job->ocsp_id, job->ocsp_hex, sizeof(job->ocsp_hex)) != 0)
                crl_urls_free(&job->urls); /* no CertID: straight to the CRLs */
        }
        break;
    case STAGE_CDP:
        crl_cdp_urls(cert, &job->urls);
        break;
    case STAGE_DELTA:
        /* The base answered: earlier failures no longer decide, the delta's will. */
        job->cert_fail = FAIL_NONE;
        job->cert_msg[0] = '\0';
        crl_freshest_urls(job->base, cert, &job->urls);
        break;
    }
}

/* The current stage has no URL left or got its answer: on to the next stage or certificate. */
static void job_next_stage(rev_job_t *job)
{
    switch (job->stage) {
    case STAGE_OCSP:
        if (job->stage_ok) {
            job->cert_done = 1;
            job_conclude_cert(job);
            return;
        }
        job->stage = STAGE_CDP;
        job_load_stage(job);
        return;
    case STAGE_CDP:
        if (!job->stage_ok) {
            job_conclude_cert(job);
            return;
        }
        job->stage = STAGE_DELTA;
        job_load_stage(job);
        if (job->urls.n == 0) { /* a complete CRL without delta */
            job->cert_done = 1;
            job_conclude_cert(job);
        }
        return;
    case STAGE_DELTA:
        if (job->stage_ok) {
            job->cert_done = 1;
        } else {
            /* The base CRL says it is incomplete without its delta: revocation offline. */
            char msg[200];
            snprintf(msg, sizeof(msg), "no usable delta CRL, which the base CRL requires: %.150s",
                     job->cert_msg);
            fs_strlcpy(job->cert_msg, msg, sizeof(job->cert_msg));
            job->cert_fail = FAIL_UNREACHABLE;
        }
        job_conclude_cert(job);
        return;
    }
}

static void job_run_check(rev_job_t *job)
{
    for (;;) {
        if (job->revoked || job->pi >= job->nplan) {
            job_finish(job);
            return;
        }
        if (!job->urls_loaded)
            job_load_stage(job);
        if (job->stage_ok || job->ui >= job->urls.n) {
            job_next_stage(job);
            continue;
        }
        if (job_step_url(job, job->urls.v[job->ui], job->plan[job->pi]))
            return;
    }
}

static void job_run_aia(rev_job_t *job)
{
    for (;;) {
        if (!job->urls_loaded) {
            crl_aia_issuer_urls(job->cert, &job->urls);
            job->urls_loaded = 1;
        }
        if (job->issuers) {
            char subj[64];
            subject_str(job->cert, subj, sizeof(subj));
            job->r.warnings |= FS_WARN_BIT(FS_WARN_AIA_FETCH_REQUIRED);
            char shown[160];
            snprintf(job->r.message, sizeof(job->r.message),
                     "issuer of \"%.60s\" fetched from %.150s", subj,
                     fs_url_redact(job->urls.v[job->ui - 1], shown, sizeof(shown)));
            job_finish(job);
            return;
        }
        if (job->ui >= job->urls.n) {
            if (job->urls.n == 0)
                snprintf(job->r.message, sizeof(job->r.message),
                         "the certificate has no AIA caIssuers URL");
            else
                snprintf(job->r.message, sizeof(job->r.message), "no AIA URL gave the issuer: %s",
                         job->cert_msg);
            job_finish(job);
            return;
        }
        if (job_step_url(job, job->urls.v[job->ui], 0))
            return;
    }
}

static void job_run(rev_job_t *job)
{
    if (job->kind == KIND_CRL)
        job_run_check(job);
    else
        job_run_aia(job);
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
        url_fail(job, u, FAIL_UNREACHABLE, "timed out after %u ms", waited);
        u->time_ms = waited;
        job->ui++;
    }
    job_run(job);
    ctx->dispatching--;
    ctx_maybe_teardown(ctx);
}

/* Parses the body of a successful retrieval into e. */
static void ent_parse(ent_t *e, const fetch_result_t *res)
{
    char err[CRL_ERR_LEN];
    unsigned char *der = NULL;
    size_t len = 0;
    switch (e->kind) {
    case KIND_CRL:
        if (e->ldap && crl_from_ldap(res->body, res->bytes, &der, &len, err) != 0) {
            e->fail = FAIL_INVALID;
            snprintf(e->error, sizeof(e->error), "%.150s", err);
            break;
        }
        if (crl_parse(der ? der : res->body, der ? len : res->bytes, &e->crl, err) == 0) {
            e->ok = 1;
            crl_times(e->crl, &e->this_update, &e->next_update);
        } else {
            e->fail = FAIL_INVALID;
            snprintf(e->error, sizeof(e->error), "unparsable CRL: %.140s", err);
        }
        free(der);
        break;
    case KIND_OCSP:
        if (ocsp_parse_response(res->body, res->bytes, &e->bs, err) == 0) {
            e->ok = 1;
            e->next_update = ocsp_min_next_update(e->bs);
        } else {
            snprintf(e->error, sizeof(e->error), "unusable OCSP response: %.130s", err);
        }
        break;
    default:
        if (crl_parse_certs(res->body, res->bytes, &e->certs, err) == 0) {
            e->ok = 1;
        } else {
            e->fail = FAIL_INVALID;
            snprintf(e->error, sizeof(e->error), "unusable AIA payload: %.130s", err);
        }
        break;
    }
}

/* Turns a retrieval into the entry's outcome. */
static void ent_settle(ent_t *e, const fetch_result_t *res)
{
    rev_ctx_t *ctx = e->ctx;
    e->http_status = res->http_status;
    e->bytes = res->bytes;
    e->ok = 0;
    e->fail = FAIL_UNREACHABLE;
    if (res->err == FETCH_ERR_TOO_BIG) {
        e->fail = FAIL_INVALID;
        snprintf(e->error, sizeof(e->error), "%s", res->error);
    } else if (res->err != FETCH_OK) {
        snprintf(e->error, sizeof(e->error), "%s", res->error);
    } else if (!e->ldap && res->http_status != 200) {
        snprintf(e->error, sizeof(e->error), "HTTP %ld", res->http_status);
    } else if (res->bytes == 0) {
        snprintf(e->error, sizeof(e->error),
                 e->ldap ? "LDAP: no entry found" : "empty body (HTTP 200)");
    } else {
        ent_parse(e, res);
    }
    if (e->ok)
        e->error[0] = '\0';
    int64_t now = fs_wall_ms(), max_age = ctx->lim.max_age_s * 1000, neg = neg_ttl_ms(ctx);
    e->expires_ms = now + (e->ok ? max_age : neg);
    if (e->ok && e->kind == KIND_OCSP && e->next_update == 0)
        e->expires_ms = now + neg; /* no nextUpdate: newer information is always available */
    if (e->ok && e->kind != KIND_AIA && e->next_update) {
        if (e->next_update * 1000 < e->expires_ms)
            e->expires_ms = e->next_update * 1000;
        if (e->expires_ms <= now) /* stale when published: ask again soon, not at once */
            e->expires_ms = now + neg;
    }
    e->fetched_ms = now;
    e->settled = ++ctx->settle_seq;
    e->cost = ent_cost(e);
    ctx->stats.bytes += e->cost;
    cache_admit(ctx, e, now);
}

static void on_ent_fetched(void *arg, const fetch_result_t *res)
{
    ent_t *e = arg;
    rev_ctx_t *ctx = e->ctx;
    ctx->dispatching++;
    e->fetch = NULL;
    e->fetching = 0;
    ent_settle(e, res);
    e->busy++;
    rev_job_t *job;
    while ((job = e->waiters) != NULL) {
        rev_url_result_t *u = job->wslot;
        waiter_unlink(job);
        uv_timer_stop(&job->timer);
        u->time_ms = (uint32_t)(uv_now(ctx->loop) - job->wait_start);
        job_use(job, e, u);
        job->ui++;
        job_run(job);
    }
    e->busy--;
    if (e->refused)
        ent_refuse(ctx, e);
    cache_evict(ctx);
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

void rev_cache_stats(const rev_ctx_t *ctx, rev_cache_stats_t *s)
{
    *s = ctx->stats;
}

/* The body of a settled entry as its retrieval would give it again (rev_cache_item_t): a CRL's
 * DER (OpenSSL keeps the signed part's encoding), an OCSP response wrapping the basic response,
 * the AIA certificates as PEM; *out is freed with OPENSSL_free. 0, or -1 when it cannot be
 * encoded. */
static int ent_encode(const ent_t *e, unsigned char **out, size_t *len)
{
    int n = -1;
    *out = NULL;
    if (e->kind == KIND_CRL) {
        n = i2d_X509_CRL(e->crl, out);
    } else if (e->kind == KIND_OCSP) {
        OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, e->bs);
        n = r != NULL ? i2d_OCSP_RESPONSE(r, out) : -1;
        OCSP_RESPONSE_free(r);
    } else {
        BIO *b = BIO_new(BIO_s_mem());
        for (int i = 0; b != NULL && i < sk_X509_num(e->certs); i++)
            if (!PEM_write_bio_X509(b, sk_X509_value(e->certs, i)))
                break;
        char *p;
        long l = b != NULL ? BIO_get_mem_data(b, &p) : 0;
        if (l > 0 && (*out = OPENSSL_malloc((size_t)l)) != NULL) {
            memcpy(*out, p, (size_t)l);
            n = (int)l;
        }
        BIO_free(b);
    }
    ERR_clear_error();
    if (n <= 0) {
        OPENSSL_free(*out);
        *out = NULL;
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

size_t rev_cache_export(rev_ctx_t *ctx, uint64_t *cursor,
                        void (*fn)(void *arg, const rev_cache_item_t *it), void *arg)
{
    size_t n = 0;
    if (*cursor >= ctx->settle_seq || ctx->closing)
        return 0;
    int64_t now = fs_wall_ms();
    for (size_t b = 0; b < ctx->nbuckets; b++) {
        for (const ent_t *e = ctx->buckets[b]; e != NULL; e = e->hnext) {
            if (e->settled <= *cursor || !e->ok || e->fetching || e->refused ||
                now >= e->expires_ms)
                continue;
            /* key: "<kind><url>\x1f[<certid>\x1f]<view>" (key_make) */
            const char *rest = e->key + 1 + strlen(e->url) + 1, *view = rest;
            char certid[256] = ""; /* as rev_job_t.ocsp_hex */
            if (e->kind == KIND_OCSP) {
                const char *sep = strchr(rest, '\x1f');
                if (sep == NULL || (size_t)(sep - rest) >= sizeof(certid))
                    continue;
                memcpy(certid, rest, (size_t)(sep - rest));
                certid[sep - rest] = '\0';
                view = sep + 1;
            }
            unsigned char *body;
            size_t len;
            if (ent_encode(e, &body, &len) != 0)
                continue;
            rev_cache_item_t it = {.kind = "CAO"[e->kind],
                                   .url = e->url,
                                   .certid = certid,
                                   .view = view,
                                   .fetched_at = e->fetched_ms / 1000,
                                   .next_update = e->kind == KIND_AIA ? 0 : e->next_update,
                                   .expires_at = (e->expires_ms + 999) / 1000,
                                   .http_status = e->http_status,
                                   .body = body,
                                   .len = len};
            fn(arg, &it);
            OPENSSL_free(body);
            n++;
        }
    }
    *cursor = ctx->settle_seq;
    return n;
}

int rev_cache_import(rev_ctx_t *ctx, const rev_cache_item_t *it)
{
    const char *kinds = "CAO", *k = it->kind ? strchr(kinds, it->kind) : NULL;
    if (ctx->closing)
        return UV_ECANCELED;
    if (k == NULL || it->url == NULL || it->body == NULL || it->len == 0)
        return UV_EINVAL;
    int kind = (int)(k - kinds);
    int64_t now = fs_wall_ms();
    int64_t expires = it->expires_at * 1000, max_age = (it->fetched_at + ctx->lim.max_age_s) * 1000;
    if (max_age < expires)
        expires = max_age;
    if (kind != KIND_AIA && it->next_update != 0 && it->next_update * 1000 < expires)
        expires = it->next_update * 1000;
    if (expires <= now)
        return UV_ETIMEDOUT;
    char *key = key_make(kind, it->url, kind == KIND_OCSP && it->certid ? it->certid : "",
                         it->view ? it->view : "");
    uint64_t hash = fnv1a(key);
    if (cache_lookup(ctx, key, hash) != NULL) {
        free(key);
        return UV_EEXIST;
    }
    ent_t *e = cache_add(ctx, kind, it->url, key, hash);
    fetch_result_t res;
    memset(&res, 0, sizeof(res));
    res.body = it->body;
    res.bytes = it->len;
    ent_parse(e, &res);
    if (!e->ok) {
        cache_remove(ctx, e);
        return UV_EINVAL;
    }
    e->http_status = it->http_status;
    e->bytes = it->len;
    e->fetched_ms = it->fetched_at * 1000;
    e->expires_ms = expires;
    e->cost = ent_cost(e);
    ctx->stats.bytes += e->cost;
    cache_admit(ctx, e, now);
    if (e->refused) { /* a second entry over the budget: not kept, as after a retrieval */
        e->refused = 0;
        cache_remove(ctx, e);
        return UV_EINVAL;
    }
    cache_evict(ctx);
    return 0;
}

static rev_job_t *job_new(rev_ctx_t *ctx, int kind, const rev_policy_t *p, void *arg)
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

int rev_check_start(rev_ctx_t *ctx, rev_job_t **job, STACK_OF(X509) * chain, const rev_policy_t *p,
                    int64_t at, rev_cb cb, void *arg)
{
    if (ctx == NULL || chain == NULL || p == NULL || cb == NULL || sk_X509_num(chain) <= 0)
        return UV_EINVAL;
    if (ctx->closing)
        return UV_ECANCELED;
    STACK_OF(X509) *copy = X509_chain_up_ref(chain);
    if (copy == NULL)
        return UV_ENOMEM;
    rev_job_t *j = job_new(ctx, KIND_CRL, p, arg);
    j->cb = cb;
    j->chain = copy;
    j->at = at;
    int n = sk_X509_num(copy);
    j->plan = fs_xcalloc((size_t)n, sizeof(*j->plan));
    if (p->mode != REV_OFF) {
        int top = p->scope == REV_SCOPE_LEAF ? 0 : n - 1;
        for (int d = top; d >= 0; d--) {
            X509 *x = sk_X509_value(copy, d);
            if (d == n - 1) { /* the last cert: its issuer is only known when self-issued */
                if (p->scope == REV_SCOPE_CHAIN_EXCLUDE_ROOT ||
                    X509_check_issued(x, x) != X509_V_OK)
                    continue;
            }
            j->plan[j->nplan++] = d;
        }
        ERR_clear_error();
    }
    if (job)
        *job = j;
    return 0;
}

int rev_aia_start(rev_ctx_t *ctx, rev_job_t **job, X509 *cert, const rev_policy_t *p, rev_aia_cb cb,
                  void *arg)
{
    if (ctx == NULL || cert == NULL || p == NULL || cb == NULL)
        return UV_EINVAL;
    if (ctx->closing)
        return UV_ECANCELED;
    if (!X509_up_ref(cert))
        return UV_ENOMEM;
    rev_job_t *j = job_new(ctx, KIND_AIA, p, arg);
    j->aia_cb = cb;
    j->cert = cert;
    if (job)
        *job = j;
    return 0;
}

void rev_job_cancel(rev_job_t *job)
{
    rev_ctx_t *ctx = job->ctx;
    ctx->dispatching++;
    job_release(job);
    ctx->dispatching--;
    ctx_maybe_teardown(ctx);
}

int rev_cache_peek(const rev_ctx_t *ctx, const char *kind, const char *url, X509 *cert,
                   X509 *issuer, const rev_policy_t *p, rev_cache_entry_t *out)
{
    if (ctx == NULL || kind == NULL || url == NULL || p == NULL || out == NULL)
        return UV_EINVAL;
    int k = strcmp(kind, "ocsp") == 0 ? KIND_OCSP : strcmp(kind, "aia") == 0 ? KIND_AIA : KIND_CRL;
    char certid[256] = "", *fetch_url;
    if (k == KIND_OCSP) {
        OCSP_CERTID *id = cert && issuer ? ocsp_cert_id(cert, issuer) : NULL;
        int bad = id == NULL || ocsp_cert_id_hex(id, certid, sizeof(certid)) != 0;
        OCSP_CERTID_free(id);
        ERR_clear_error();
        if (bad)
            return UV_EINVAL;
    }
    /* Routed as job_url_route does: http:// as is, ldap:// (CRLs) through the view's directory. */
    if (crl_url_is_http(url)) {
        fetch_url = fs_xstrdup(url);
    } else if (k == KIND_CRL && crl_url_has_scheme(url, "ldap") && p->ldap_host != NULL) {
        size_t n = strlen(url) + strlen(p->ldap_host) + 8;
        fetch_url = fs_xmalloc(n);
        if (url[7] == '/')
            snprintf(fetch_url, n, "ldap://%s%s", p->ldap_host, url + 7);
        else
            snprintf(fetch_url, n, "%s", url);
    } else {
        return UV_ENOENT;
    }
    char *key = key_make(k, fetch_url, certid, p->view ? p->view : "");
    uint64_t hash = fnv1a(key);
    const ent_t *e = ctx->buckets[hash & (ctx->nbuckets - 1)];
    while (e && (e->hash != hash || strcmp(e->key, key) != 0))
        e = e->hnext;
    free(key);
    free(fetch_url);
    if (e == NULL || e->fetching || fs_wall_ms() >= e->expires_ms)
        return UV_ENOENT;
    out->ok = e->ok;
    out->expires_ms = e->expires_ms;
    out->next_update = e->kind == KIND_AIA ? 0 : e->next_update;
    return 0;
}
