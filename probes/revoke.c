/* revoke.c - revocation the way CryptoAPI checks it: which certificates a check covers (scope,
 * root down), per certificate OCSP then the CDPs then the delta CRL, which URLs a view retrieves,
 * what an answer means (usable, revoked, stale, invalid) and the verdict (cause, soft-fail,
 * revocation_url_dead); AIA issuer retrieval. Jobs run in revjob.c, the cache is revcache.c. */
#include "probes/revoke_int.h"
#include "probes/ocsp.h"
#include "probes/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

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

void rev__url_fail(rev_job_t *job, rev_url_result_t *u, int cls, const char *fmt, ...)
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
 * when usable, 0 after rev__url_fail. */
static int crl_usable(rev_job_t *job, ent_t *e, rev_url_result_t *u, int depth)
{
    X509 *cert = sk_X509_value(job->chain, depth), *issuer = issuer_of(job, depth);
    char err[CRL_ERR_LEN], t1[32], t2[32];
    u->http_status = e->http_status;
    u->bytes = e->bytes;
    u->this_update = e->this_update;
    u->next_update = e->next_update;
    if (!e->ok) {
        rev__url_fail(job, u, e->fail, "%s", e->error);
        return 0;
    }
    if (e->bytes > job->pol.max_bytes) {
        rev__url_fail(job, u, FAIL_INVALID, "over size cap (%zu bytes > %zu)", e->bytes,
                      job->pol.max_bytes);
        return 0;
    }
    if (crl_check_issuer(e->crl, cert, issuer, err) != 0 || !rev__ent_sig_ok(e, issuer, err)) {
        rev__url_fail(job, u, FAIL_INVALID, "%s", err);
        return 0;
    }
    if (job->stage == STAGE_DELTA) {
        if (crl_check_delta(e->crl, job->base, err) != 0) {
            rev__url_fail(job, u, FAIL_INVALID, "%s", err);
            return 0;
        }
    } else if (crl_is_delta(e->crl)) {
        rev__url_fail(job, u, FAIL_INVALID, "a delta CRL where the base CRL belongs");
        return 0;
    }
    switch (crl_check_time(e->crl, job->at)) {
    case CRL_TIME_EXPIRED:
        rev__url_fail(
            job, u, FAIL_EXPIRED, "CRL expired: nextUpdate %s is before the endpoint's time %s",
            fs_rfc3339(e->next_update, t1, sizeof(t1)), fs_rfc3339(job->at, t2, sizeof(t2)));
        return 0;
    case CRL_TIME_NOT_YET_VALID:
        rev__url_fail(job, u, FAIL_EXPIRED,
                      "CRL not yet valid: thisUpdate %s is after the endpoint's time %s",
                      fs_rfc3339(e->this_update, t1, sizeof(t1)),
                      fs_rfc3339(job->at, t2, sizeof(t2)));
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
        rev__url_fail(job, u, FAIL_UNREACHABLE, "%s", e->error);
        return;
    }
    if (e->bytes > job->pol.max_bytes) {
        rev__url_fail(job, u, FAIL_UNREACHABLE, "over size cap (%zu bytes > %zu)", e->bytes,
                      job->pol.max_bytes);
        return;
    }
    if (!rev__ent_ocsp_signer_ok(e, issuer, job->at, err) ||
        ocsp_find(e->bs, job->ocsp_id, &a, err) != 0) {
        rev__url_fail(job, u, FAIL_UNREACHABLE, "%s", err);
        return;
    }
    u->this_update = a.this_update;
    u->next_update = a.next_update;
    fs_strlcpy(u->status, ocsp_status_name(a.status), sizeof(u->status));
    if (ocsp_check_time(&a, job->at, err) != 0) {
        rev__url_fail(job, u, FAIL_UNREACHABLE, "%s", err);
        return;
    }
    if (a.status == OCSP_ANSWER_UNKNOWN) {
        rev__url_fail(job, u, FAIL_UNREACHABLE,
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
        rev__url_fail(job, u, e->fail, "%s", e->error);
        return;
    }
    if (e->bytes > job->pol.max_bytes) {
        rev__url_fail(job, u, FAIL_INVALID, "over size cap (%zu bytes > %zu)", e->bytes,
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
        rev__url_fail(job, u, FAIL_INVALID, "the payload holds no issuer of this certificate");
        return;
    }
    u->ok = 1;
    job->issuers = sk;
}

void rev__job_use(rev_job_t *job, ent_t *e, rev_url_result_t *u)
{
    if (e->kind == KIND_OCSP)
        job_use_ocsp(job, e, u);
    else if (e->kind == KIND_CRL)
        job_use_crl(job, e, u);
    else
        job_use_aia(job, e, u);
}

/* What a URL of the current stage is in this view: 1 fetch (fills *fetch_url, malloc'ed, and
 * *ldap), 0 after url_skip or rev__url_fail. */
int rev__job_url_route(rev_job_t *job, const char *url, rev_url_result_t *u, char **fetch_url,
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
    rev__url_fail(job, u, FAIL_UNREACHABLE, "%.*s URL not retrieved (only http://%s is fetched)",
                  n > 10 ? 10 : n, url,
                  job->kind == KIND_CRL && job->stage != STAGE_OCSP ? " and ldap://" : "");
    return 0;
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
            rev__job_finish(job);
            return;
        }
        if (!job->urls_loaded)
            job_load_stage(job);
        if (job->stage_ok || job->ui >= job->urls.n) {
            job_next_stage(job);
            continue;
        }
        if (rev__job_step_url(job, job->urls.v[job->ui], job->plan[job->pi]))
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
            rev__job_finish(job);
            return;
        }
        if (job->ui >= job->urls.n) {
            if (job->urls.n == 0)
                snprintf(job->r.message, sizeof(job->r.message),
                         "the certificate has no AIA caIssuers URL");
            else
                snprintf(job->r.message, sizeof(job->r.message), "no AIA URL gave the issuer: %s",
                         job->cert_msg);
            rev__job_finish(job);
            return;
        }
        if (rev__job_step_url(job, job->urls.v[job->ui], 0))
            return;
    }
}

void rev__job_run(rev_job_t *job)
{
    if (job->kind == KIND_CRL)
        job_run_check(job);
    else
        job_run_aia(job);
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
    rev_job_t *j = rev__job_new(ctx, KIND_CRL, p, arg);
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
    rev_job_t *j = rev__job_new(ctx, KIND_AIA, p, arg);
    j->aia_cb = cb;
    j->cert = cert;
    if (job)
        *job = j;
    return 0;
}
