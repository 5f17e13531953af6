/* policy.c - the one endpoint model: a group's configuration as probe options, and a probe's
 * outcome as the group's verdict (see policy.h). */
#include "daemon/policy.h"
#include "probes/util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

int policy_tls_ctx(tlsc_ctx_t **out, const cfg_t *cfg, size_t trust_idx, const cfg_tls_t *t,
                   char err[256])
{
    const cfg_trust_t *tr = &cfg->trust[trust_idx];
    tlsc_ctx_opts_t o = {.ca_file = tr->ca_file,
                         .ca_dir = tr->ca_dir,
                         .intermediates_file = tr->intermediates_file,
                         .min_version = t->min_version,
                         .max_version = t->max_version,
                         .ciphers = t->ciphers,
                         .ciphersuites = t->ciphersuites};
    char e[256];
    if (tlsc_ctx_new(out, &o, e) < 0) {
        snprintf(err, 256, "trust_stores.%s: %s", tr->name, e);
        return -1;
    }
    return 0;
}

void policy_revocation(const cfg_t *cfg, const cfg_group_t *g, rev_policy_t *p)
{
    rev_policy_defaults(p);
    p->mode = g->revocation.mode;
    p->scope = g->revocation.scope;
    p->aia_fetch = g->revocation.aia_fetch;
    p->url_timeout_ms = g->revocation.url_timeout_ms;
    p->budget_ms = g->revocation.budget_ms;
    p->max_bytes = (size_t)g->revocation.max_crl_bytes;
    p->crl_expiring_soon_s = (int64_t)cfg->crl_expiring_soon_hours * 3600;
    p->resolve = &g->network.resolve;
    p->proxy = g->network.proxy;
    p->ocsp = g->revocation.ocsp;
    p->timeout_mode = g->revocation.timeout_mode;
    p->ldap_host = g->network.ldap;
}

/* Groups with the same resolve map and proxy see the same CRL/AIA answers: one cache view. */
static void view_key(const cfg_network_t *n, char out[24])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[32];
    unsigned int len = 0;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (size_t i = 0; i < n->resolve.n; i++) {
        EVP_DigestUpdate(md, n->resolve.e[i].name, strlen(n->resolve.e[i].name) + 1);
        EVP_DigestUpdate(md, n->resolve.e[i].addr, strlen(n->resolve.e[i].addr) + 1);
    }
    EVP_DigestUpdate(md, "|", 1);
    if (n->proxy)
        EVP_DigestUpdate(md, n->proxy, strlen(n->proxy));
    EVP_DigestUpdate(md, "|", 1); /* the directory answers ldap:// URLs: part of the view */
    if (n->ldap)
        EVP_DigestUpdate(md, n->ldap, strlen(n->ldap));
    EVP_DigestFinal_ex(md, d, &len);
    EVP_MD_CTX_free(md);
    static const char hexd[] = "0123456789abcdef";
    for (int i = 0; i < 10; i++) {
        out[2 * i] = hexd[d[i] >> 4];
        out[2 * i + 1] = hexd[d[i] & 15];
    }
    out[20] = '\0';
}

/* The options every probe of this policy shares; grp NULL for the reference. */
static void fill_probe_opts(policy_t *pl, const cfg_t *cfg, const cfg_group_t *grp)
{
    probe_opts_t *po = &pl->popts;
    probe_opts_defaults(po);
    po->url = &pl->profile->u;
    po->tls = pl->tls;
    po->sni = grp ? grp->tls.sni : 1;
    po->resolve = grp ? &grp->network.resolve : NULL;
    po->clock_skew_s = grp ? grp->clock_skew_s : 0;
    po->expiring_soon_s = (int64_t)cfg->expiring_soon_days * 86400;
    po->expect_thumbprint = pl->thumb[0] ? pl->thumb : NULL;
    po->connect_timeout_ms = cfg->limits.connect_timeout_ms;
    po->dns_timeout_ms = cfg->limits.connect_timeout_ms;
    po->tls_timeout_ms = cfg->limits.tls_timeout_ms;
    po->request_timeout_ms = cfg->limits.request_timeout_ms;
    po->total_timeout_ms = cfg->limits.probe_timeout_ms;
    po->capture_chain = 0;
    po->rev_policy = &pl->rev;
    pl->rev.crl_expiring_soon_s = (int64_t)cfg->crl_expiring_soon_hours * 3600;
    pl->rev.view = pl->view;
}

static void compare_with_binding(policy_t *pl)
{
    const fs_url_t *p = &pl->profile->u, *r = &pl->ref->u;
    pl->http_vs_https = strcmp(p->scheme, "http") == 0 && strcmp(r->scheme, "https") == 0;
    pl->profile_differs = strcmp(p->scheme, r->scheme) != 0 || p->port != r->port ||
                          strcasecmp(p->host, r->host) != 0;
}

int policy_group_init(policy_t *pl, const cfg_t *cfg, size_t gi, tlsc_ctx_t *shared_tls,
                      char err[256])
{
    const cfg_group_t *g = &cfg->groups[gi];
    memset(pl, 0, sizeof(*pl));
    if (shared_tls != NULL)
        pl->tls = tlsc_ctx_ref(shared_tls);
    else if (policy_tls_ctx(&pl->tls, cfg, g->trust_idx, &g->tls, err) < 0)
        return -1;
    pl->profile = &cfg->profiles[g->profile_idx];
    pl->target_idx = pl->profile->target_idx;
    pl->ref = &cfg->targets[pl->target_idx].binding;
    fs_strlcpy(pl->thumb, pl->profile->expect_thumbprint, sizeof(pl->thumb));
    policy_revocation(cfg, g, &pl->rev);
    view_key(&g->network, pl->view);
    fill_probe_opts(pl, cfg, g);
    compare_with_binding(pl);
    return 0;
}

/* The group whose network view a target's reference borrows: one whose profile is the binding
 * itself (same scheme, host and port), else any group of the target, else the first group
 * whose DNS overrides name the binding's host; SIZE_MAX: the system's view. */
static size_t reference_view(const cfg_t *cfg, size_t ti)
{
    const fs_url_t *b = &cfg->targets[ti].binding.u;
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < cfg->ngroups; i++) {
            const cfg_profile_t *p = &cfg->profiles[cfg->groups[i].profile_idx];
            int mine = p->target_idx == ti;
            if ((pass == 0 && mine && strcmp(p->u.scheme, b->scheme) == 0 &&
                 strcasecmp(p->u.host, b->host) == 0 && p->u.port == b->port) ||
                (pass == 1 && mine) ||
                (pass == 2 && fs_resolve_lookup(&cfg->groups[i].network.resolve, b->host)))
                return i;
        }
    return SIZE_MAX;
}

int policy_reference_init(policy_t *pl, const cfg_t *cfg, size_t ti, char err[256])
{
    memset(pl, 0, sizeof(*pl));
    /* The server's own binding as its admin sees it: any protocol the server offers. */
    cfg_tls_t reftls = {.min_version = TLS1_VERSION, .max_version = TLS1_3_VERSION, .sni = true};
    if (policy_tls_ctx(&pl->tls, cfg, cfg->targets[ti].trust_idx, &reftls, err) < 0)
        return -1;
    pl->target_idx = ti;
    pl->profile = pl->ref = &cfg->targets[ti].binding;
    fs_strlcpy(pl->thumb, pl->profile->expect_thumbprint, sizeof(pl->thumb));
    rev_policy_defaults(&pl->rev);
    pl->rev.mode = REV_SOFT_FAIL;
    pl->rev.scope = REV_SCOPE_CHAIN_EXCLUDE_ROOT;
    pl->rev.aia_fetch = 1;
    fs_strlcpy(pl->view, "reference", sizeof(pl->view));
    fill_probe_opts(pl, cfg, NULL);
    size_t view = reference_view(cfg, ti);
    if (view != SIZE_MAX) {
        const cfg_network_t *net = &cfg->groups[view].network;
        pl->popts.resolve = &net->resolve;
        pl->rev.resolve = &net->resolve;
        pl->rev.proxy = net->proxy;
        pl->rev.ldap_host = net->ldap;
        view_key(net, pl->view);
    }
    pl->popts.capture_chain = 1;
    return 0;
}

int policy_same_addresses(const policy_t *a, const policy_t *b)
{
    const char *host = a->ref->u.host;
    const char *x[FS_RESOLVE_MAX_ADDRS], *y[FS_RESOLVE_MAX_ADDRS];
    size_t nx = fs_resolve_lookup_all(a->popts.resolve, host, x);
    size_t ny = fs_resolve_lookup_all(b->popts.resolve, host, y);
    if (nx != ny)
        return 0;
    for (size_t i = 0; i < nx; i++)
        if (strcmp(x[i], y[i]) != 0)
            return 0;
    return 1;
}

void policy_set_profile(policy_t *pl, const cfg_profile_t *p)
{
    pl->profile = p;
    pl->popts.url = &p->u;
    compare_with_binding(pl);
}

void policy_free(policy_t *pl)
{
    tlsc_ctx_unref(pl->tls);
    pl->tls = NULL;
}

int policy_reference_answers(const probe_result_t *r)
{
    if (r->online)
        return 1;
    const char *ph = fs_cause_info(r->cause)->phase;
    if (strcmp(ph, "resolve") == 0 || strcmp(ph, "connect") == 0 || strcmp(ph, "tls") == 0)
        return 0;
    return r->cause != FS_CAUSE_PROBE_TIMEOUT || r->failed_phase > PROBE_PH_TLS;
}

/* Whether a failure of a profile that differs from the binding is the profile's fault: it
 * could not connect or handshake, or it names an FQDN the certificate does not cover.
 * Validation failures past the handshake on another port are that binding's own problem and
 * keep their cause (an expired certificate is an expired certificate). */
static int profile_explains(const policy_t *pl, const probe_result_t *r)
{
    if (!pl->profile_differs)
        return 0;
    const char *ph = fs_cause_info(r->cause)->phase;
    if (strcmp(ph, "resolve") == 0 || strcmp(ph, "connect") == 0 || strcmp(ph, "tls") == 0)
        return 1;
    if (r->cause == FS_CAUSE_PROBE_TIMEOUT && r->failed_phase <= PROBE_PH_TLS)
        return 1;
    return r->cause == FS_CAUSE_HOSTNAME_MISMATCH &&
           strcasecmp(pl->profile->u.host, pl->ref->u.host) != 0;
}

fs_cause_t policy_verdict(const policy_t *pl, const probe_result_t *r, policy_ref_t ref, char *msg,
                          size_t n)
{
    fs_cause_t cause = r->online ? FS_CAUSE_NONE : r->cause;
    if (pl->http_vs_https) {
        snprintf(msg, n, "the profile URL %s speaks plain HTTP; the server's binding %s is HTTPS",
                 pl->profile->url, pl->ref->url);
        return FS_CAUSE_PROFILE_MISMATCH;
    }
    if (cause != FS_CAUSE_NONE && ref == POLICY_REF_UP && profile_explains(pl, r)) {
        snprintf(msg, n, "%s (%s) while the reference binding %s answers", fs_cause_id(cause),
                 r->message, pl->ref->url);
        return FS_CAUSE_PROFILE_MISMATCH;
    }
    fs_strlcpy(msg, r->message, n);
    return cause;
}
