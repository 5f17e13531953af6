/* preflight.c - SPEC §4.5 pre-flight: would each group's endpoints accept a candidate chain that
 * is not bound yet? The chain goes through the same model as a live probe (policy.c, the probe
 * engine's verify/AIA/revocation path), on a private loop so it can run on any thread. */
#include "daemon/preflight.h"
#include "daemon/policy.h"
#include "probes/chain.h"
#include "probes/probe.h"
#include "probes/report.h"
#include "probes/revoke.h"
#include "probes/util.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

/* ---- reading what admins export ------------------------------------------------------------ */

static int push_cert(STACK_OF(X509) * sk, X509 *x, char err[256])
{
    if (sk_X509_num(sk) >= PREFLIGHT_MAX_CERTS) {
        X509_free(x);
        snprintf(err, 256, "more than %d certificates in the chain", PREFLIGHT_MAX_CERTS);
        return -1;
    }
    sk_X509_push(sk, x);
    return 0;
}

static int push_pkcs7(STACK_OF(X509) * sk, PKCS7 *p7, char err[256])
{
    STACK_OF(X509) *certs = NULL;
    if (p7 != NULL && PKCS7_type_is_signed(p7) && p7->d.sign != NULL)
        certs = p7->d.sign->cert;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        X509_up_ref(x);
        if (push_cert(sk, x, err) < 0)
            return -1;
    }
    return 0;
}

static int has_pem_armour(const unsigned char *buf, size_t len)
{
    static const char tag[] = "-----BEGIN ";
    for (size_t i = 0; i + sizeof(tag) - 1 <= len; i++)
        if (memcmp(buf + i, tag, sizeof(tag) - 1) == 0)
            return 1;
    return 0;
}

static int looks_like_pfx(const unsigned char *buf, size_t len)
{
    const unsigned char *q = buf;
    PKCS12 *p12 = d2i_PKCS12(NULL, &q, (long)len);
    PKCS12_free(p12);
    return p12 != NULL;
}

/* Orders the certificates into a path: the leaf is the one that issued none of the others,
 * then each certificate's issuer as found among the rest. Unrelated extras go last. */
static int order_path(STACK_OF(X509) * in, STACK_OF(X509) * *out, char err[256])
{
    int n = sk_X509_num(in), leaf = -1;
    for (int i = 0; i < n && leaf < 0; i++) {
        X509 *c = sk_X509_value(in, i);
        int issued_other = 0;
        for (int j = 0; j < n && !issued_other; j++)
            issued_other = j != i && X509_check_issued(c, sk_X509_value(in, j)) == X509_V_OK &&
                           X509_check_issued(c, c) != X509_V_OK;
        if (!issued_other && X509_check_ca(c) == 0)
            leaf = i; /* prefer an end-entity certificate */
    }
    for (int i = 0; i < n && leaf < 0; i++) {
        X509 *c = sk_X509_value(in, i);
        int issued_other = 0;
        for (int j = 0; j < n && !issued_other; j++)
            issued_other = j != i && X509_check_issued(c, sk_X509_value(in, j)) == X509_V_OK;
        if (!issued_other)
            leaf = i;
    }
    if (leaf < 0) {
        snprintf(err, 256, "no leaf certificate: every certificate issued another one");
        return -1;
    }
    STACK_OF(X509) *path = sk_X509_new_null();
    char *used = fs_xcalloc((size_t)n, 1);
    for (int cur = leaf; cur >= 0;) {
        used[cur] = 1;
        X509 *c = sk_X509_value(in, cur);
        X509_up_ref(c);
        sk_X509_push(path, c);
        int next = -1;
        for (int j = 0; j < n && next < 0; j++)
            if (!used[j] && X509_check_issued(sk_X509_value(in, j), c) == X509_V_OK)
                next = j;
        cur = next;
    }
    for (int j = 0; j < n; j++)
        if (!used[j]) {
            X509_up_ref(sk_X509_value(in, j));
            sk_X509_push(path, sk_X509_value(in, j));
        }
    free(used);
    *out = path;
    return 0;
}

int preflight_parse_chain(const unsigned char *buf, size_t len, STACK_OF(X509) * *out,
                          char err[256])
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    int rc = -1;
    if (len > INT32_MAX) {
        snprintf(err, 256, "input too large");
        goto out;
    }
    if (has_pem_armour(buf, len)) {
        BIO *b = BIO_new_mem_buf(buf, (int)len);
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        while (PEM_read_bio(b, &name, &header, &data, &dlen) == 1) {
            const unsigned char *q = data;
            int bad = 0;
            if (strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0 ||
                strcmp(name, "TRUSTED CERTIFICATE") == 0) {
                X509 *x = strcmp(name, "TRUSTED CERTIFICATE") == 0 ? d2i_X509_AUX(NULL, &q, dlen)
                                                                   : d2i_X509(NULL, &q, dlen);
                bad = x == NULL || push_cert(sk, x, err) < 0;
                if (x == NULL)
                    snprintf(err, 256, "a PEM CERTIFICATE block does not decode");
            } else if (strcmp(name, "PKCS7") == 0) {
                PKCS7 *p7 = d2i_PKCS7(NULL, &q, dlen);
                bad = p7 == NULL || push_pkcs7(sk, p7, err) < 0;
                if (p7 == NULL)
                    snprintf(err, 256, "a PEM PKCS7 block does not decode");
                PKCS7_free(p7);
            } else if (strstr(name, "PRIVATE KEY") != NULL) {
                snprintf(err, 256,
                         "the file holds a private key: give only the public certificates "
                         "(never send a key to a monitoring tool)");
                bad = 1;
            }
            OPENSSL_free(name);
            OPENSSL_free(header);
            OPENSSL_free(data);
            name = header = NULL;
            data = NULL;
            if (bad) {
                BIO_free(b);
                goto out;
            }
        }
        BIO_free(b);
    } else if (looks_like_pfx(buf, len)) {
        snprintf(err, 256,
                 "this is a PFX/PKCS#12 file: it holds the private key. Export the public chain "
                 "instead: MMC > the certificate > All Tasks > Export > \"No, do not export the "
                 "private key\" > .P7B with \"Include all certificates\", or: openssl pkcs12 -in "
                 "FILE.pfx -nokeys -out chain.pem");
        goto out;
    } else {
        const unsigned char *q = buf;
        X509 *x = d2i_X509(NULL, &q, (long)len);
        if (x != NULL) {
            if (push_cert(sk, x, err) < 0)
                goto out;
        } else {
            q = buf;
            PKCS7 *p7 = d2i_PKCS7(NULL, &q, (long)len);
            int bad = p7 != NULL && push_pkcs7(sk, p7, err) < 0;
            PKCS7_free(p7);
            if (bad)
                goto out;
        }
    }
    if (sk_X509_num(sk) == 0) {
        if (err[0] == '\0' || strstr(err, "decode") == NULL)
            snprintf(err, 256,
                     "no certificate found: expected PEM, a DER .cer or a PKCS#7 .p7b with the "
                     "leaf and its intermediates");
        goto out;
    }
    rc = order_path(sk, out, err);
out:
    ERR_clear_error();
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

/* ---- evaluation ------------------------------------------------------------------------------ */

typedef struct pf_group_s {
    policy_t pl;
    int inited, started, done;
    probe_result_t r; /* its chain and retrievals moved here */
} pf_group_t;

static void on_probe(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    pf_group_t *pg = arg;
    pg->r = *r;
    memset(&r->chain, 0, sizeof(r->chain));
    r->rev = NULL;
    pg->done = 1;
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

int preflight_cause_is_certificate_independent(fs_cause_t c)
{
    if (c == FS_CAUSE_NONE)
        return 0;
    /* probe_timeout ("any" phase) is what the model reports only where no phase-specific cause
     * applies: a handshake that never completes (before any certificate is seen) and a request
     * that is never answered (after the chain was accepted). AIA and revocation retrievals are
     * bounded to end before the probe's deadline with their own verdict (crl_unreachable, the
     * soft-fail warning): a timed-out group stays offline whatever certificate is bound. */
    if (c == FS_CAUSE_PROFILE_MISMATCH || c == FS_CAUSE_PROBE_TIMEOUT)
        return 1;
    const char *ph = fs_cause_info(c)->phase;
    return strcmp(ph, "resolve") == 0 || strcmp(ph, "connect") == 0 || strcmp(ph, "tls") == 0 ||
           strcmp(ph, "request") == 0;
}

long preflight_default_target(const cfg_t *cfg)
{
    uint64_t best = 0;
    long ti = 0;
    for (size_t t = 0; t < cfg->ntargets; t++) {
        uint64_t n = 0;
        for (size_t i = 0; i < cfg->ngroups; i++)
            if (cfg->profiles[cfg->groups[i].profile_idx].target_idx == t)
                n += cfg->groups[i].count;
        if (n > best) {
            best = n;
            ti = (long)t;
        }
    }
    return ti;
}

int preflight_run(const cfg_t *cfg, const unsigned char *buf, size_t len, int dns_override_only,
                  long target, const fs_cause_t *current, cJSON **out, char err[256])
{
    if (target < 0 || (size_t)target >= cfg->ntargets)
        target = preflight_default_target(cfg);
    STACK_OF(X509) *chain = NULL;
    err[0] = '\0';
    if (preflight_parse_chain(buf, len, &chain, err) < 0)
        return -1;
    int rc = -1;
    uv_loop_t loop;
    rev_ctx_t *rev = NULL;
    size_t ng = cfg->ngroups;
    pf_group_t *pgs = fs_xcalloc(ng ? ng : 1, sizeof(*pgs));
    if (uv_loop_init(&loop) != 0) {
        snprintf(err, 256, "cannot create an event loop");
        goto out_chain;
    }
    if (rev_ctx_new(&rev, &loop, NULL) < 0) {
        snprintf(err, 256, "cannot create the retrieval context");
        goto out_loop;
    }
    int failed = 0;
    for (size_t i = 0; i < ng && !failed; i++) {
        pf_group_t *pg = &pgs[i];
        if (cfg->profiles[cfg->groups[i].profile_idx].target_idx != (size_t)target)
            continue; /* the candidate is for one binding: the groups that talk to it */
        if (policy_group_init(&pg->pl, cfg, i, NULL, err) < 0) {
            failed = 1;
            break;
        }
        pg->inited = 1;
        pg->pl.popts.presented = chain;
        pg->pl.popts.rev = rev;
        pg->pl.popts.capture_chain = 1;
        pg->pl.popts.dns_override_only = pg->pl.rev.dns_override_only = dns_override_only;
        if (probe_start(NULL, &loop, &pg->pl.popts, on_probe, pg) < 0) {
            snprintf(err, 256, "groups[%zu]: the evaluation could not start", i);
            failed = 1;
        }
        pg->started = !failed;
    }
    for (;;) { /* the retrieval context may keep idle handles: run until our probes are done */
        size_t pending = 0;
        for (size_t i = 0; i < ng; i++)
            pending += pgs[i].started && !pgs[i].done;
        if (pending == 0)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    if (failed)
        goto out_rev;

    int64_t now = fs_wall_ms() / 1000;
    chain_info_t info = {0};
    chain_info_capture(&info, chain);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "chain", report_chain_json(&info, now));
    chain_info_free(&info);
    cJSON_AddStringToObject(root, "target", cfg->targets[target].name);
    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    uint64_t ok_groups = 0, bad_groups = 0, ok_eps = 0, bad_eps = 0;
    for (size_t i = 0; i < ng; i++) {
        pf_group_t *pg = &pgs[i];
        if (!pg->inited)
            continue; /* another target's group */
        const cfg_group_t *g = &cfg->groups[i];
        char msg[sizeof(pg->r.message)];
        /* The probe engine judged the chain; the profile rules judge the group. */
        fs_cause_t cause = policy_verdict(&pg->pl, &pg->r, POLICY_REF_UNKNOWN, msg, sizeof(msg));
        fs_cause_t chain_cause = cause;
        if (current != NULL && preflight_cause_is_certificate_independent(current[i]) &&
            cause != FS_CAUSE_PROFILE_MISMATCH) {
            cause = current[i];
            snprintf(msg, sizeof(msg),
                     "the group is offline now for %s, which a new certificate does not change "
                     "(the chain itself: %s)",
                     fs_cause_id(cause),
                     chain_cause == FS_CAUSE_NONE ? "accepted" : fs_cause_id(chain_cause));
        }
        int accept = cause == FS_CAUSE_NONE;
        char ts[32];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "group", g->name);
        cJSON_AddNumberToObject(o, "endpoints", g->count);
        cJSON_AddBoolToObject(o, "accept", accept);
        if (accept)
            cJSON_AddNullToObject(o, "cause");
        else
            cJSON_AddStringToObject(o, "cause", fs_cause_id(cause));
        cJSON_AddStringToObject(o, "message",
                                accept ? "the endpoints would accept this chain" : msg);
        if (!accept)
            cJSON_AddStringToObject(o, "remediation", fs_cause_info(cause)->remediation);
        if (chain_cause == FS_CAUSE_NONE)
            cJSON_AddNullToObject(o, "chain_cause");
        else
            cJSON_AddStringToObject(o, "chain_cause", fs_cause_id(chain_cause));
        cJSON_AddItemToObject(o, "warnings", warnings_json(pg->r.warnings));
        cJSON_AddStringToObject(o, "endpoint_time",
                                fs_rfc3339(pg->r.endpoint_time, ts, sizeof(ts)));
        cJSON_AddStringToObject(o, "host", pg->pl.profile->u.host);
        rev_result_t none = {0};
        cJSON_AddItemToObject(o, "retrievals",
                              report_retrievals_json(pg->r.rev ? pg->r.rev : &none));
        cJSON_AddItemToArray(groups, o);
        if (accept) {
            ok_groups++;
            ok_eps += g->count;
        } else {
            bad_groups++;
            bad_eps += g->count;
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
    for (size_t i = 0; i < ng; i++) {
        probe_result_free(&pgs[i].r);
        if (pgs[i].inited)
            policy_free(&pgs[i].pl);
    }
    uv_loop_close(&loop);
out_chain:
    free(pgs);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
