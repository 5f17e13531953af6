/* probe_verify.c - the probe's phases after the handshake that decide trust: chain verification
 * with the endpoint's store and clock, AIA issuer retrieval when an issuer is missing, and the
 * revocation check, under retrieval budgets cut to what the probe's deadline leaves. */
#include "probes/probe_int.h"
#include "probes/util.h"

#include <stdlib.h>
#include <string.h>

#define PROBE_DEADLINE_MARGIN_MS 250

static void start_revocation(probe_t *p);

/* The retrieval policy for the next AIA or revocation step. Whatever the timeout mode,
 * retrieval never outlives the probe's deadline (max_total_ms), so it always ends with its own
 * verdict and URL lines instead of being cut off by the deadline. In accumulative mode the
 * budget is one for AIA and revocation together, as Windows' accumulative timeout covers every
 * URL retrieval of the chain build; in per_url mode each URL has its own timeout. */
static const rev_policy_t *retrieval_policy(probe_t *p)
{
    uint64_t now = uv_now(p->loop);
    if (p->retrieval_start == 0)
        p->retrieval_start = now;
    p->pol = *p->o.rev_policy;
    uint64_t left = p->deadline > now + PROBE_DEADLINE_MARGIN_MS
                        ? p->deadline - now - PROBE_DEADLINE_MARGIN_MS
                        : 1;
    if (left > UINT32_MAX)
        left = UINT32_MAX;
    p->pol.max_total_ms = (uint32_t)left;
    if (p->o.rev_policy->max_total_ms != 0 && p->o.rev_policy->max_total_ms < left)
        p->pol.max_total_ms = p->o.rev_policy->max_total_ms;
    if (p->pol.timeout_mode == REV_TIMEOUT_ACCUMULATIVE) {
        uint64_t used = now - p->retrieval_start;
        uint64_t budget = p->pol.budget_ms > used ? p->pol.budget_ms - used : 1;
        p->pol.budget_ms = (uint32_t)(budget < p->pol.max_total_ms ? budget : p->pol.max_total_ms);
    }
    return &p->pol;
}

/* How long the retrieval step under pol may take at most: its phase timeout. */
static uint32_t retrieval_limit(const rev_policy_t *pol)
{
    if (pol->timeout_mode == REV_TIMEOUT_ACCUMULATIVE && pol->budget_ms < pol->max_total_ms)
        return pol->budget_ms;
    return pol->max_total_ms;
}

/* The retrieval lines are kept only for probes that report details (capture_chain). */
static rev_result_t *retrievals(probe_t *p)
{
    if (!p->o.capture_chain)
        return NULL;
    if (p->r.rev == NULL)
        p->r.rev = fs_xcalloc(1, sizeof(*p->r.rev));
    return p->r.rev;
}

static STACK_OF(X509) * extra_certs(probe_t *p)
{
    if (p->extra == NULL) {
        p->extra = sk_X509_new_null();
        STACK_OF(X509) *mine = p->o.tls->intermediates;
        for (int i = 0; i < sk_X509_num(mine); i++) {
            X509 *x = sk_X509_value(mine, i);
            X509_up_ref(x);
            sk_X509_push(p->extra, x);
        }
    }
    return p->extra;
}

static void on_aia(void *arg, STACK_OF(X509) * issuers, const rev_result_t *rr)
{
    probe_t *p = arg;
    p->rev_job = NULL;
    /* Keep the AIA retrieval lines for the report. */
    rev_result_t *mine = retrievals(p);
    for (size_t i = 0; mine != NULL && i < rr->nurls && mine->nurls < REV_MAX_URLS; i++)
        mine->urls[mine->nurls++] = rr->urls[i];
    if (issuers == NULL || sk_X509_num(issuers) == 0) {
        probe__finish(p, p->verdict.cause, "%s; AIA retrieval failed: %s", p->verdict.message,
                      rr->message[0] ? rr->message : "no usable caIssuers URL");
        return;
    }
    STACK_OF(X509) *extra = extra_certs(p);
    for (int i = 0; i < sk_X509_num(issuers); i++) {
        X509 *x = sk_X509_value(issuers, i);
        X509_up_ref(x);
        sk_X509_push(extra, x);
    }
    p->r.aia_used = 1;
    probe__start_verify(p);
}

void probe__start_verify(probe_t *p)
{
    STACK_OF(X509) *presented = p->o.presented ? p->o.presented : tlsc_peer_chain(&p->tls);
    if (p->r.leaf_sha1[0] == '\0' && sk_X509_num(presented) > 0)
        chain_sha1_thumbprint(sk_X509_value(presented, 0), p->r.leaf_sha1);
    if (p->o.capture_chain && p->r.chain.n == 0)
        chain_info_capture(&p->r.chain, presented);
    chain_check_t c = {
        .host = p->o.url->host,
        .at = p->r.endpoint_time,
        .expiring_soon_s = p->o.expiring_soon_s,
        .expect_thumbprint = p->o.expect_thumbprint,
    };
    p->r.built = NULL;
    chain_verdict_free(&p->verdict);
    int rc;
    if (p->o.vcache != NULL && p->extra == NULL) {
        rc = vcache_verify(p->o.vcache, p->o.tls, presented, &c, &p->verdict);
    } else {
        STACK_OF(X509) *extra =
            sk_X509_num(p->o.tls->intermediates) > 0 || p->extra ? extra_certs(p) : NULL;
        rc = chain_verify(p->o.tls->trust, presented, extra, &c, &p->verdict);
    }
    p->r.built = p->verdict.built; /* the verdict is freed after the callback */
    if (rc < 0) {
        probe__finish(p, FS_CAUSE_UNTRUSTED_CA, "%s", p->verdict.message);
        return;
    }
    p->r.warnings |= p->verdict.warnings;
    p->r.chain_not_after = p->verdict.not_after_min;
    p->r.chain_not_before = p->verdict.not_before_max;
    /* An issuer nobody supplied: ask AIA for it before deciding which side must act, as
     * CryptoAPI does (a fetched root makes the chain complete up to an untrusted root). */
    if (p->verdict.issuer_missing_depth >= 0 && p->o.rev != NULL && p->o.rev_policy != NULL &&
        p->o.rev_policy->aia_fetch && !p->aia_tried) {
        p->aia_tried = 1;
        X509 *x = sk_X509_value(p->verdict.built, p->verdict.issuer_missing_depth);
        const rev_policy_t *pol = retrieval_policy(p);
        probe__set_state(p, PS_AIA, retrieval_limit(pol) + PROBE_DEADLINE_MARGIN_MS);
        rc = rev_aia_start(p->o.rev, &p->rev_job, x, pol, on_aia, p);
        if (rc < 0)
            probe__finish(p, p->verdict.cause, "%s; AIA retrieval could not start",
                          p->verdict.message);
        return;
    }
    if (p->verdict.cause != FS_CAUSE_NONE) {
        probe__finish(p, p->verdict.cause, "%s", p->verdict.message);
        return;
    }
    if (p->r.aia_used)
        p->r.warnings |= FS_WARN_BIT(FS_WARN_AIA_FETCH_REQUIRED);
    start_revocation(p);
}

static void on_revocation(void *arg, const rev_result_t *rr)
{
    probe_t *p = arg;
    p->rev_job = NULL;
    rev_result_t *mine = retrievals(p);
    if (mine != NULL) {
        /* AIA lines first (already there), then the CRL lines, within the fixed capacity. */
        size_t keep = mine->nurls, n = rr->nurls;
        if (keep + n > REV_MAX_URLS)
            n = REV_MAX_URLS - keep;
        rev_url_result_t *aia = fs_xmalloc((keep ? keep : 1) * sizeof(*aia));
        memcpy(aia, mine->urls, keep * sizeof(*aia));
        *mine = *rr;
        memmove(mine->urls + keep, rr->urls, n * sizeof(*aia));
        memcpy(mine->urls, aia, keep * sizeof(*aia));
        mine->nurls = keep + n;
        free(aia);
    }
    p->r.warnings |= rr->warnings;
    for (size_t i = 0; i < rr->nurls; i++) {
        const rev_url_result_t *u = &rr->urls[i];
        /* the freshness edge of the forecast: a CRL, a delta or an OCSP answer, all the same */
        if (u->ok &&
            (strcmp(u->kind, "crl") == 0 || strcmp(u->kind, "delta") == 0 ||
             strcmp(u->kind, "ocsp") == 0) &&
            u->next_update != 0 &&
            (p->r.crl_next_update == 0 || u->next_update < p->r.crl_next_update))
            p->r.crl_next_update = u->next_update;
    }
    if (rr->cause != FS_CAUSE_NONE) {
        probe__finish(p, rr->cause, "%s", rr->message);
        return;
    }
    probe__start_request(p);
}

static void start_revocation(probe_t *p)
{
    if (p->o.rev == NULL || p->o.rev_policy == NULL || p->o.rev_policy->mode == REV_OFF) {
        probe__start_request(p);
        return;
    }
    const rev_policy_t *pol = retrieval_policy(p);
    probe__set_state(p, PS_REVOCATION, retrieval_limit(pol) + PROBE_DEADLINE_MARGIN_MS);
    int rc = rev_check_start(p->o.rev, &p->rev_job, p->verdict.built, pol, p->r.endpoint_time,
                             on_revocation, p);
    if (rc < 0)
        probe__finish(p, FS_CAUSE_CRL_UNREACHABLE, "revocation check could not start");
}
