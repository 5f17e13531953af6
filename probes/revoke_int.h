/* revoke_int.h - what the three files of the revocation engine share: revoke.c (what a check asks
 * for and what the answers mean), revjob.c (contexts, jobs, waiting on a retrieval) and revcache.c
 * (the cache of retrievals). Not for use outside them. */
#ifndef FS_REVOKE_INT_H
#define FS_REVOKE_INT_H

#include "probes/crl.h"
#include "probes/fetch.h"
#include "probes/ocsp.h"
#include "probes/revoke.h"

#include <openssl/ocsp.h>

#define SIG_MEMO 4

/* What an entry holds (a delta CRL is a KIND_CRL entry: same URL rules and cache). */
enum { KIND_CRL, KIND_AIA, KIND_OCSP };
/* Where a certificate's check is: its OCSP URLs, its CDP URLs, the delta URLs of its base CRL. */
enum { STAGE_OCSP, STAGE_CDP, STAGE_DELTA };
/* Failure classes, ranked: a certificate reports its most advanced failure. */
enum { FAIL_NONE, FAIL_UNREACHABLE, FAIL_INVALID, FAIL_EXPIRED };

typedef struct ent_s ent_t;

/* What checking who signed a cached OCSP response found for one issuer certificate. */
typedef struct ocsp_memo_s {
    X509 *issuer;          /* up-ref'd; NULL: a free slot */
    int ok;                /* the signature and the signer's authority */
    ocsp_signer_t signer;  /* when ok: a delegated responder's validity is checked per job */
    char err[CRL_ERR_LEN]; /* when not */
} ocsp_memo_t;

/* A cache entry: one URL in one network view, in flight or holding its last outcome. */
struct ent_s {
    ent_t *hnext;         /* hash chain */
    ent_t *lprev, *lnext; /* LRU, completed entries only */
    uint64_t hash;
    char *key;
    char *url;
    int kind;
    int ldap;       /* retrieved through LDAP: no HTTP status, an LDIF-like body */
    int fetching;   /* a retrieval is in flight; never evicted */
    int busy;       /* waiters are being told; never freed */
    int in_lru;     /* counted against the budget (ctx->lru_bytes) */
    int refused;    /* larger than the budget with the oversized place taken: dropped once told */
    int post;       /* KIND_OCSP: the request is POSTed (too long for a GET URL) ... */
    int post_known; /* ... once known: set when retrieved, worked out on a first use if imported */
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
    ocsp_memo_t *ocsp_memo; /* KIND_OCSP: SIG_MEMO slots, allocated on first use */
    unsigned nocsp_memo;
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

/* ---- revcache.c: the cache of retrievals per (URL, network view) ---------------------------- */

uint64_t rev__key_hash(const char *s);
/* A malloc'ed cache key for (kind, url, OCSP CertID hex or "", view). */
char *rev__key_make(int kind, const char *url, const char *certid, const char *view);
/* A new in-flight entry that takes key; rev__cache_remove frees it (it must be idle then). */
ent_t *rev__cache_add(rev_ctx_t *ctx, int kind, const char *url, char *key, uint64_t hash);
void rev__cache_remove(rev_ctx_t *ctx, ent_t *e);
/* The entry for key, or NULL; drops a stale completed entry. */
ent_t *rev__cache_lookup(rev_ctx_t *ctx, const char *key, uint64_t hash);
/* A cache hit: e becomes the most recently used. */
void rev__cache_touch(rev_ctx_t *ctx, ent_t *e);
/* Trims the least recently used idle entries down to the budget. */
void rev__cache_evict(rev_ctx_t *ctx);
/* Turns a finished retrieval into e's outcome and places e in the cache (or marks it refused). */
void rev__ent_settle(ent_t *e, const fetch_result_t *res);
/* Drops a refused entry's payload once its waiters used it, keeping a failure in its place. */
void rev__ent_refuse(rev_ctx_t *ctx, ent_t *e);
/* Whether the CRL in e is signed by issuer's key (remembered per key); fills err when not. */
int rev__ent_sig_ok(ent_t *e, X509 *issuer, char err[CRL_ERR_LEN]);
/* Whether the OCSP response in e is signed by issuer or a responder it certified that is valid
 * at `at` (ocsp_check_signer), the signature checked once per issuer; fills err when not. */
int rev__ent_ocsp_signer_ok(ent_t *e, X509 *issuer, int64_t at, char err[CRL_ERR_LEN]);

/* ---- revjob.c: contexts, jobs, one URL's retrieval ------------------------------------------ */

/* A linked job of kind KIND_CRL or KIND_AIA with its own copy of p; it runs from a zero timer. */
rev_job_t *rev__job_new(rev_ctx_t *ctx, int kind, const rev_policy_t *p, void *arg);
/* Calls the job's callback and releases it. */
void rev__job_finish(rev_job_t *job);
/* Works on URL `url`: answers it from the cache, joins a retrieval in flight or starts one.
 * Returns 1 when the job now waits, 0 when the URL is settled (job->ui advanced). */
int rev__job_step_url(rev_job_t *job, const char *url, int depth);

/* ---- revoke.c: the check itself ------------------------------------------------------------- */

/* Goes on with the job until it waits on a retrieval or finishes. */
void rev__job_run(rev_job_t *job);
/* Applies a settled entry to the job's current URL result u. */
void rev__job_use(rev_job_t *job, ent_t *e, rev_url_result_t *u);
/* Records u's failure of class cls (FAIL_*) for the current certificate. */
void rev__url_fail(rev_job_t *job, rev_url_result_t *u, int cls, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* What a URL of the current stage is in this view: 1 fetch (fills *fetch_url, malloc'ed, and
 * *ldap), 0 after it was skipped or failed. */
int rev__job_url_route(rev_job_t *job, const char *url, rev_url_result_t *u, char **fetch_url,
                       int *ldap);

#endif
