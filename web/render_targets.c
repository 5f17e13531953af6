/* render_targets.c - a probe's outcome as the API shows it: the entries of /api/v1/targets (the
 * chain, retrievals, live revocation sources, addresses) and the detail of an endpoint. */
#include "web/render.h"

#include <string.h>

#include <uv.h>

#include "probes/report.h"
#include "web/render_int.h"

/* A fixed-size field of a probe's result: at most n bytes, up to its NUL. */
static void put_field(wbuf_t *b, const char *s, size_t n)
{
    wbuf_json_strn(b, s, strnlen(s, n));
}

/* A fixed-size text field, null when empty. */
static void put_field_or_null(wbuf_t *b, const char *s, size_t n)
{
    if (s[0] != '\0')
        put_field(b, s, n);
    else
        wbuf_puts(b, "null");
}

static void put_str_array(wbuf_t *b, char *const *v, size_t n)
{
    wbuf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        wbuf_json_str(b, v[i]);
    }
    wbuf_putc(b, ']');
}

/* One certificate; days_left is counted at `at` (the endpoint's time). */
static void put_cert(wbuf_t *b, const chain_cert_t *c, int64_t at)
{
    wbuf_puts(b, "{\"subject\":");
    wbuf_json_str(b, c->subject);
    wbuf_puts(b, ",\"issuer\":");
    wbuf_json_str(b, c->issuer);
    wbuf_puts(b, ",\"serial\":");
    wbuf_json_str(b, c->serial);
    wbuf_puts(b, ",\"not_before\":");
    wbuf_json_time(b, c->not_before);
    wbuf_puts(b, ",\"not_after\":");
    wbuf_json_time(b, c->not_after);
    wbuf_puts(b, ",\"days_left\":");
    wbuf_i64(b, (c->not_after - at) / 86400);
    wbuf_puts(b, ",\"sha1_thumbprint\":");
    put_field(b, c->sha1, sizeof(c->sha1));
    wbuf_puts(b, ",\"sha256\":");
    put_field(b, c->sha256, sizeof(c->sha256));
    wbuf_puts(b, ",\"signature_algorithm\":");
    put_field(b, c->sig_alg, sizeof(c->sig_alg));
    wbuf_puts(b, ",\"is_ca\":");
    wbuf_json_bool(b, c->is_ca);
    wbuf_puts(b, ",\"self_signed\":");
    wbuf_json_bool(b, c->self_signed);
    wbuf_puts(b, ",\"sans\":");
    put_str_array(b, c->sans, c->nsans);
    wbuf_puts(b, ",\"cdp\":");
    put_str_array(b, c->cdp, c->ncdp);
    wbuf_puts(b, ",\"aia\":");
    put_str_array(b, c->aia, c->naia);
    wbuf_putc(b, '}');
}

static void put_retrieval(wbuf_t *b, const rev_url_result_t *u)
{
    wbuf_puts(b, "{\"url\":");
    put_field(b, u->url, sizeof(u->url));
    wbuf_puts(b, ",\"kind\":");
    put_field(b, u->kind, sizeof(u->kind));
    wbuf_puts(b, ",\"cert_depth\":");
    wbuf_i64(b, u->cert_depth);
    wbuf_puts(b, ",\"ok\":");
    wbuf_json_bool(b, u->ok);
    wbuf_puts(b, ",\"skipped\":");
    wbuf_json_bool(b, u->skipped);
    wbuf_puts(b, ",\"from_cache\":");
    wbuf_json_bool(b, u->from_cache);
    if (strcmp(u->kind, "ocsp") == 0) {
        wbuf_puts(b,
                  u->post ? ",\"method\":\"POST\",\"status\":" : ",\"method\":\"GET\",\"status\":");
        put_field_or_null(b, u->status, sizeof(u->status));
    }
    wbuf_puts(b, ",\"timeout_ms\":");
    wbuf_u64(b, u->timeout_ms);
    wbuf_puts(b, ",\"http_status\":");
    wbuf_i64(b, u->http_status);
    wbuf_puts(b, ",\"bytes\":");
    wbuf_u64(b, u->bytes);
    wbuf_puts(b, ",\"time_ms\":");
    wbuf_u64(b, u->time_ms);
    wbuf_puts(b, ",\"this_update\":");
    wbuf_json_time(b, u->this_update);
    wbuf_puts(b, ",\"next_update\":");
    wbuf_json_time(b, u->next_update);
    wbuf_puts(b, ",\"error\":");
    put_field_or_null(b, u->error, sizeof(u->error));
    wbuf_putc(b, '}');
}

/* The probe's members, "url" to "retrievals", without the braces. */
static void put_probe(wbuf_t *b, const render_probe_t *p)
{
    wbuf_puts(b, "\"url\":");
    wbuf_json_str(b, p->url);
    wbuf_puts(b, p->online ? ",\"state\":\"online\",\"cause\":null"
                           : ",\"state\":\"offline\",\"cause\":");
    if (!p->online)
        wbuf_json_str(b, fs_cause_id(p->cause));
    wbuf_puts(b, ",\"warnings\":");
    render__put_warnings(b, p->warnings);
    wbuf_puts(b, ",\"message\":");
    wbuf_json_str(b, p->message);
    if (!p->online) {
        const fs_cause_info_t *ci = fs_cause_info(p->cause);
        wbuf_puts(b, ",\"phase\":");
        wbuf_json_str(b, ci->phase);
        wbuf_puts(b, ",\"symptom\":");
        wbuf_json_str(b, ci->symptom);
        wbuf_puts(b, ",\"remediation\":");
        wbuf_json_str(b, ci->remediation);
    }
    if (p->timings_ms != NULL) {
        wbuf_puts(b, ",\"timings_ms\":{");
        for (int ph = 0; ph < SNAP_PH_COUNT; ph++) {
            wbuf_json_key(b, render__phase_names[ph], ph == 0);
            wbuf_u64(b, p->timings_ms[ph]);
        }
        wbuf_puts(b, ",\"total\":");
        wbuf_u64(b, p->total_ms);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, ",\"address\":");
    wbuf_json_str(b, p->addr);
    wbuf_puts(b, ",\"connect_attempts\":[");
    for (size_t i = 0; i < p->nattempts; i++) {
        const probe_attempt_t *at = &p->attempts[i];
        wbuf_puts(b, i ? ",{\"address\":" : "{\"address\":");
        wbuf_json_str(b, at->addr);
        wbuf_puts(b, ",\"outcome\":");
        wbuf_json_str(b, report_attempt_outcome(at));
        if (at->error != 0 && at->error != UV_ECONNREFUSED && at->error != UV_ETIMEDOUT) {
            wbuf_puts(b, ",\"error\":");
            wbuf_json_str(b, uv_strerror(at->error));
        }
        wbuf_puts(b, ",\"time_ms\":");
        wbuf_u64(b, at->ms);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, "],\"leaf_sha1\":");
    if (p->leaf_sha1 != NULL && p->leaf_sha1[0] != '\0')
        wbuf_json_str(b, p->leaf_sha1);
    else
        wbuf_puts(b, "null");
    wbuf_puts(b, ",\"endpoint_time\":");
    wbuf_json_time(b, p->endpoint_time);
    wbuf_puts(b, ",\"tls\":{");
    if (p->tls_version != NULL && p->tls_version[0] != '\0') {
        wbuf_puts(b, "\"version\":");
        wbuf_json_str(b, p->tls_version);
        wbuf_puts(b, ",\"cipher\":");
        wbuf_json_str(b, p->cipher);
    }
    wbuf_puts(b, "},\"http_status\":");
    if (p->http_status != 0)
        wbuf_i64(b, p->http_status);
    else
        wbuf_puts(b, "null");
    wbuf_puts(b, ",\"chain\":[");
    for (size_t i = 0; p->chain != NULL && i < p->chain->n; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        put_cert(b, &p->chain->certs[i], p->endpoint_time);
    }
    wbuf_puts(b, "],\"retrievals\":[");
    for (size_t i = 0; i < p->nurls; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        put_retrieval(b, &p->urls[i]);
    }
    wbuf_putc(b, ']');
}

int render_detail(const render_probe_t *p, wbuf_t *b)
{
    wbuf_putc(b, '{');
    put_probe(b, p);
    wbuf_puts(b, ",\"source\":\"the group's last probe with this endpoint's outcome\"}");
    return wbuf_done(b);
}

static int is_crl(const rev_url_result_t *u)
{
    return strcmp(u->kind, "crl") == 0;
}

/* One line of "crls": a CDP of the chain, with the fields it has always had. */
static void put_crl_line(wbuf_t *b, int first, const char *url, size_t urlmax, int depth,
                         int reachable, int skipped, long http_status, size_t bytes,
                         int64_t this_update, int64_t next_update, const char *error, size_t errmax)
{
    wbuf_puts(b, first ? "{\"url\":" : ",{\"url\":");
    put_field(b, url, urlmax);
    wbuf_puts(b, ",\"cert_depth\":");
    wbuf_i64(b, depth);
    wbuf_puts(b, ",\"reachable\":");
    wbuf_json_bool(b, reachable);
    wbuf_puts(b, ",\"http_status\":");
    wbuf_i64(b, http_status);
    wbuf_puts(b, ",\"bytes\":");
    wbuf_u64(b, bytes);
    wbuf_puts(b, ",\"this_update\":");
    wbuf_json_time(b, this_update);
    wbuf_puts(b, ",\"next_update\":");
    wbuf_json_time(b, next_update);
    wbuf_puts(b, ",\"last_error\":");
    put_field_or_null(b, error, errmax);
    wbuf_puts(b, ",\"skipped\":");
    wbuf_json_bool(b, skipped);
    wbuf_putc(b, '}');
}

/* "crls": the live check of each CDP once a round has run (snap_revhealth_t), until then the
 * reference probe's own retrieval lines (which may come from the endpoints' cache). */
static void put_crls(wbuf_t *b, const snap_target_t *t, const snap_revhealth_t *h)
{
    int first = 1;
    wbuf_puts(b, ",\"crls\":[");
    for (size_t i = 0; h != NULL && i < h->nurls; i++) {
        const snap_rev_url_t *u = &h->urls[i];
        if (strcmp(u->kind, "crl") != 0)
            continue;
        put_crl_line(b, first, u->url, sizeof(u->url), u->cert_depth, u->reachable, u->skipped,
                     u->http_status, u->bytes, u->this_update, u->next_update, u->error,
                     sizeof(u->error));
        first = 0;
    }
    for (size_t i = 0; h == NULL && i < t->nurls; i++) {
        const rev_url_result_t *u = &t->urls[i];
        if (!is_crl(u))
            continue;
        put_crl_line(b, first, u->url, sizeof(u->url), u->cert_depth,
                     u->ok || u->http_status == 200, u->skipped, u->http_status, u->bytes,
                     u->this_update, u->next_update, u->error, sizeof(u->error));
        first = 0;
    }
    wbuf_putc(b, ']');
}

/* "revocation": every CDP, delta-CRL and OCSP URL of the chain as the vantage checked it live,
 * with the groups that depend on it (SPEC §4.2). */
static void put_revocation(wbuf_t *b, const snap_revhealth_t *h)
{
    wbuf_puts(b, ",\"revocation\":[");
    for (size_t i = 0; h != NULL && i < h->nurls; i++) {
        const snap_rev_url_t *u = &h->urls[i];
        wbuf_puts(b, i > 0 ? ",{\"url\":" : "{\"url\":");
        put_field(b, u->url, sizeof(u->url));
        wbuf_puts(b, ",\"kind\":");
        put_field(b, u->kind, sizeof(u->kind));
        wbuf_puts(b, ",\"cert_depth\":");
        wbuf_i64(b, u->cert_depth);
        wbuf_puts(b, ",\"reachable\":");
        wbuf_json_bool(b, u->reachable);
        wbuf_puts(b, ",\"skipped\":");
        wbuf_json_bool(b, u->skipped);
        wbuf_puts(b, ",\"latency_ms\":");
        wbuf_u64(b, u->latency_ms);
        wbuf_puts(b, ",\"http_status\":");
        wbuf_i64(b, u->http_status);
        wbuf_puts(b, ",\"bytes\":");
        wbuf_u64(b, u->bytes);
        wbuf_puts(b, ",\"this_update\":");
        wbuf_json_time(b, u->this_update);
        wbuf_puts(b, ",\"next_update\":");
        wbuf_json_time(b, u->next_update);
        wbuf_puts(b, ",\"signature_valid\":");
        if (u->signature_valid >= 0)
            wbuf_json_bool(b, u->signature_valid);
        else
            wbuf_puts(b, "null");
        wbuf_puts(b, ",\"ocsp_status\":");
        put_field_or_null(b, u->ocsp_status, sizeof(u->ocsp_status));
        wbuf_puts(b, ",\"last_error\":");
        put_field_or_null(b, u->error, sizeof(u->error));
        wbuf_puts(b, ",\"last_success\":");
        wbuf_json_time(b, u->last_success);
        wbuf_puts(b, ",\"checked_at\":");
        wbuf_json_time(b, u->checked_at);
        wbuf_puts(b, ",\"directory\":");
        put_field_or_null(b, u->directory, sizeof(u->directory));
        wbuf_puts(b, ",\"strict_endpoints_at_risk\":");
        wbuf_u64(b, u->strict_at_risk);
        wbuf_puts(b, ",\"strict_offline_at\":");
        wbuf_json_time(b, u->strict_offline_at);
        wbuf_puts(b, ",\"groups\":[");
        for (size_t g = 0; g < u->ngroups; g++) {
            const snap_rev_group_t *sg = &u->groups[g];
            wbuf_puts(b, g > 0 ? ",{\"name\":" : "{\"name\":");
            wbuf_json_str(b, sg->name);
            wbuf_puts(b, ",\"mode\":");
            wbuf_json_str(b, sg->mode < REV_MODE_COUNT ? rev_mode_names[sg->mode] : "");
            wbuf_puts(b, ",\"endpoints\":");
            wbuf_u64(b, sg->endpoints);
            wbuf_puts(b, ",\"cached_until\":");
            wbuf_json_time(b, sg->cached_until);
            wbuf_puts(b, ",\"at_risk\":");
            wbuf_json_bool(b, sg->at_risk);
            wbuf_puts(b, ",\"offline_at\":");
            wbuf_json_time(b, sg->at_risk ? sg->offline_at : 0);
            wbuf_putc(b, '}');
        }
        wbuf_puts(b, "]}");
    }
    wbuf_putc(b, ']');
}

/* "addresses": every address of the target's name with what it served (SPEC §4.1), and
 * "backend_inconsistent" with the reason when they disagree. */
static void put_backends(wbuf_t *b, const snap_target_t *t)
{
    wbuf_puts(b, ",\"addresses\":[");
    for (size_t i = 0; i < t->nbackends; i++) {
        const snap_backend_t *k = &t->backends[i];
        wbuf_puts(b, i ? ",{\"address\":" : "{\"address\":");
        put_field(b, k->addr, sizeof(k->addr));
        wbuf_puts(b, ",\"leaf_sha1\":");
        put_field_or_null(b, k->leaf_sha1, sizeof(k->leaf_sha1));
        wbuf_puts(b, k->online ? ",\"state\":\"online\",\"cause\":null"
                               : ",\"state\":\"offline\",\"cause\":");
        if (!k->online)
            wbuf_json_str(b, fs_cause_id((fs_cause_t)k->cause));
        wbuf_puts(b, ",\"last_seen\":");
        wbuf_json_time(b, k->last_seen);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b,
              t->inconsistent ? "],\"backend_inconsistent\":" : "],\"backend_inconsistent\":null");
    if (t->inconsistent)
        put_field(b, t->inconsistent_why, sizeof(t->inconsistent_why));
}

int render_targets(const snap_t *s, wbuf_t *b)
{
    wbuf_puts(b, "{\"targets\":[");
    int first_target = 1;
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        if (t == NULL)
            continue; /* not probed yet */
        if (!first_target)
            wbuf_putc(b, ',');
        first_target = 0;
        render_probe_t p = {
            .url = t->url,
            .online = t->online,
            .cause = (fs_cause_t)t->cause,
            .warnings = t->warnings,
            .message = t->message,
            .timings_ms = t->timings_ms,
            .total_ms = t->total_ms,
            .addr = t->addr,
            .attempts = t->attempts,
            .nattempts = t->nattempts,
            .leaf_sha1 = t->leaf_sha1,
            .endpoint_time = t->endpoint_time,
            .tls_version = t->tls_version,
            .cipher = t->cipher,
            .http_status = t->http_status,
            .chain = &t->chain,
            .urls = t->urls,
            .nurls = t->nurls,
        };
        wbuf_putc(b, '{');
        put_probe(b, &p);
        wbuf_puts(b, ",\"name\":");
        wbuf_json_str(b, t->name);
        wbuf_puts(b, ",\"profile\":");
        wbuf_json_str(b, t->profile);
        wbuf_puts(b, ",\"trust\":");
        wbuf_json_str(b, t->trust);
        wbuf_puts(b, ",\"checked_at\":");
        wbuf_json_time(b, t->checked_at);
        const snap_revhealth_t *h = s->revocation != NULL ? s->revocation[ti] : NULL;
        put_crls(b, t, h);
        put_revocation(b, h);
        put_backends(b, t);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, "]}");
    return wbuf_done(b);
}
