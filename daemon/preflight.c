/* preflight.c - SPEC §4 pre-flight: would each group's endpoints accept a candidate chain that
 * is not bound yet? Trust, chain, dates at the endpoint's clock, hostname, and the
 * reachability of its CDP URLs, on a private loop so it can run on any thread. */
#include "daemon/preflight.h"
#include "daemon/policy.h"
#include "probes/chain.h"
#include "probes/report.h"
#include "probes/revoke.h"
#include "probes/tlsc.h"
#include "probes/util.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#define PREFLIGHT_MAX_CERTS 16

typedef struct pf_group_s {
    const cfg_group_t *g;
    tlsc_ctx_t *tls;
    chain_verdict_t v;
    rev_policy_t pol;
    rev_result_t rev;
    int rev_done;
    int rev_started;
    int64_t at;
} pf_group_t;

static int parse_chain(const char *pem, size_t len, STACK_OF(X509) * *out, char err[256])
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    while (b != NULL && sk != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(sk) >= PREFLIGHT_MAX_CERTS) {
            X509_free(x);
            snprintf(err, 256, "more than %d certificates in the chain", PREFLIGHT_MAX_CERTS);
            goto fail;
        }
        sk_X509_push(sk, x);
    }
    ERR_clear_error();
    if (sk == NULL || sk_X509_num(sk) == 0) {
        snprintf(err, 256,
                 "no PEM certificate found (expected the leaf first, then the "
                 "intermediates, as IIS would send them)");
        goto fail;
    }
    BIO_free(b);
    *out = sk;
    return 0;
fail:
    BIO_free(b);
    sk_X509_pop_free(sk, X509_free);
    return -1;
}

static void on_rev(void *arg, const rev_result_t *r)
{
    pf_group_t *pg = arg;
    pg->rev = *r;
    pg->rev_done = 1;
}

static void on_closed(void *arg)
{
    (void)arg;
}

static cJSON *warnings_json(uint32_t w)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < FS_WARN_COUNT; i++)
        if (w & FS_WARN_BIT(i))
            cJSON_AddItemToArray(a, cJSON_CreateString(fs_warning_id(i)));
    return a;
}

int preflight_run(const cfg_t *cfg, const char *pem, size_t len, int dns_override_only, cJSON **out,
                  char err[256])
{
    STACK_OF(X509) *chain = NULL;
    if (parse_chain(pem, len, &chain, err) < 0)
        return -1;
    int rc = -1;
    uv_loop_t loop;
    rev_ctx_t *rev = NULL;
    pf_group_t *pgs = fs_xcalloc(cfg->ngroups ? cfg->ngroups : 1, sizeof(*pgs));
    if (uv_loop_init(&loop) != 0) {
        snprintf(err, 256, "cannot create an event loop");
        goto out_chain;
    }
    if (rev_ctx_new(&rev, &loop, NULL) < 0) {
        snprintf(err, 256, "cannot create the retrieval context");
        goto out_loop;
    }
    int64_t now = fs_wall_ms() / 1000;
    for (size_t i = 0; i < cfg->ngroups; i++) {
        pf_group_t *pg = &pgs[i];
        const cfg_group_t *g = &cfg->groups[i];
        const cfg_trust_t *t = &cfg->trust[g->trust_idx];
        const cfg_profile_t *p = &cfg->profiles[g->profile_idx];
        pg->g = g;
        pg->at = now + g->clock_skew_s;
        tlsc_ctx_opts_t o = {.ca_file = t->ca_file,
                             .ca_dir = t->ca_dir,
                             .intermediates_file = t->intermediates_file};
        char e[256];
        if (tlsc_ctx_new(&pg->tls, &o, e) < 0) {
            snprintf(err, 256, "trust_stores.%s: %s", t->name, e);
            goto out_rev;
        }
        chain_check_t chk = {.host = p->u.host,
                             .at = pg->at,
                             .expiring_soon_s = (int64_t)cfg->expiring_soon_days * 86400};
        if (chain_verify(pg->tls->trust, chain, pg->tls->intermediates, &chk, &pg->v) < 0) {
            snprintf(err, 256, "verification failed: %s", pg->v.message);
            goto out_rev;
        }
        policy_revocation(cfg, g, &pg->pol);
        pg->pol.view = g->name; /* a private cache: one context per call */
        pg->pol.dns_override_only = dns_override_only;
        if (pg->v.cause == FS_CAUSE_NONE && pg->pol.mode != REV_OFF && pg->v.built != NULL) {
            rev_job_t *job;
            if (rev_check_start(rev, &job, pg->v.built, &pg->pol, pg->at, on_rev, pg) == 0)
                pg->rev_started = 1;
        }
    }
    for (;;) { /* the retrieval context may keep idle handles: run until our jobs are done */
        size_t pending = 0;
        for (size_t i = 0; i < cfg->ngroups; i++)
            pending += pgs[i].rev_started && !pgs[i].rev_done;
        if (pending == 0)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }

    chain_info_t info = {0};
    chain_info_capture(&info, chain);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "chain", report_chain_json(&info, now));
    chain_info_free(&info);
    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    uint64_t ok_groups = 0, bad_groups = 0, ok_eps = 0, bad_eps = 0;
    for (size_t i = 0; i < cfg->ngroups; i++) {
        pf_group_t *pg = &pgs[i];
        fs_cause_t cause = pg->v.cause;
        uint32_t warnings = pg->v.warnings;
        const char *message = pg->v.message;
        if (cause == FS_CAUSE_NONE && pg->rev_done) {
            cause = pg->rev.cause;
            warnings |= pg->rev.warnings;
            if (cause != FS_CAUSE_NONE)
                message = pg->rev.message;
        }
        int accept = cause == FS_CAUSE_NONE;
        char ts[32];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "group", pg->g->name);
        cJSON_AddNumberToObject(o, "endpoints", pg->g->count);
        cJSON_AddBoolToObject(o, "accept", accept);
        if (accept)
            cJSON_AddNullToObject(o, "cause");
        else
            cJSON_AddStringToObject(o, "cause", fs_cause_id(cause));
        cJSON_AddStringToObject(o, "message",
                                accept ? "the endpoints would accept this chain" : message);
        if (!accept)
            cJSON_AddStringToObject(o, "remediation", fs_cause_info(cause)->remediation);
        cJSON_AddItemToObject(o, "warnings", warnings_json(warnings));
        cJSON_AddStringToObject(o, "endpoint_time", fs_rfc3339(pg->at, ts, sizeof(ts)));
        cJSON_AddStringToObject(o, "host", cfg->profiles[pg->g->profile_idx].u.host);
        cJSON_AddItemToObject(o, "retrievals", report_retrievals_json(&pg->rev));
        cJSON_AddItemToArray(groups, o);
        if (accept) {
            ok_groups++;
            ok_eps += pg->g->count;
        } else {
            bad_groups++;
            bad_eps += pg->g->count;
        }
    }
    cJSON *sum = cJSON_AddObjectToObject(root, "summary");
    cJSON_AddNumberToObject(sum, "groups_accepting", (double)ok_groups);
    cJSON_AddNumberToObject(sum, "groups_rejecting", (double)bad_groups);
    cJSON_AddNumberToObject(sum, "endpoints_accepting", (double)ok_eps);
    cJSON_AddNumberToObject(sum, "endpoints_rejecting", (double)bad_eps);
    *out = root;
    rc = 0;
out_rev:
    rev_ctx_close(rev, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
out_loop:
    for (size_t i = 0; i < cfg->ngroups; i++) {
        chain_verdict_free(&pgs[i].v);
        tlsc_ctx_unref(pgs[i].tls);
    }
    uv_loop_close(&loop);
out_chain:
    free(pgs);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
