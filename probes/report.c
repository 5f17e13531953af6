/* report.c - JSON and text rendering of probe results (see report.h). */
#include "probes/report.h"
#include "probes/util.h"

#include <string.h>

static void add_time(cJSON *o, const char *k, int64_t t)
{
    char buf[32];
    if (t == 0)
        cJSON_AddNullToObject(o, k);
    else
        cJSON_AddStringToObject(o, k, fs_rfc3339(t, buf, sizeof(buf)));
}

static cJSON *str_array(char *const *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

cJSON *report_cert_json(const chain_cert_t *c, int64_t at)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "subject", c->subject);
    cJSON_AddStringToObject(o, "issuer", c->issuer);
    cJSON_AddStringToObject(o, "serial", c->serial);
    add_time(o, "not_before", c->not_before);
    add_time(o, "not_after", c->not_after);
    cJSON_AddNumberToObject(o, "days_left", (double)((c->not_after - at) / 86400));
    cJSON_AddStringToObject(o, "sha1_thumbprint", c->sha1);
    cJSON_AddStringToObject(o, "sha256", c->sha256);
    cJSON_AddStringToObject(o, "signature_algorithm", c->sig_alg);
    cJSON_AddBoolToObject(o, "is_ca", c->is_ca);
    cJSON_AddBoolToObject(o, "self_signed", c->self_signed);
    cJSON_AddItemToObject(o, "sans", str_array(c->sans, c->nsans));
    cJSON_AddItemToObject(o, "cdp", str_array(c->cdp, c->ncdp));
    cJSON_AddItemToObject(o, "aia", str_array(c->aia, c->naia));
    return o;
}

cJSON *report_chain_json(const chain_info_t *ci, int64_t at)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < ci->n; i++)
        cJSON_AddItemToArray(a, report_cert_json(&ci->certs[i], at));
    return a;
}

cJSON *report_retrievals_json(const rev_result_t *rr)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; rr != NULL && i < rr->nurls; i++) {
        const rev_url_result_t *u = &rr->urls[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "url", u->url);
        cJSON_AddStringToObject(o, "kind", u->kind);
        cJSON_AddNumberToObject(o, "cert_depth", u->cert_depth);
        cJSON_AddBoolToObject(o, "ok", u->ok);
        cJSON_AddBoolToObject(o, "skipped", u->skipped);
        cJSON_AddBoolToObject(o, "from_cache", u->from_cache);
        if (strcmp(u->kind, "ocsp") == 0) {
            cJSON_AddStringToObject(o, "method", u->post ? "POST" : "GET");
            if (u->status[0])
                cJSON_AddStringToObject(o, "status", u->status);
            else
                cJSON_AddNullToObject(o, "status");
        }
        cJSON_AddNumberToObject(o, "timeout_ms", u->timeout_ms);
        cJSON_AddNumberToObject(o, "http_status", (double)u->http_status);
        cJSON_AddNumberToObject(o, "bytes", (double)u->bytes);
        cJSON_AddNumberToObject(o, "time_ms", u->time_ms);
        add_time(o, "this_update", u->this_update);
        add_time(o, "next_update", u->next_update);
        if (u->error[0])
            cJSON_AddStringToObject(o, "error", u->error);
        else
            cJSON_AddNullToObject(o, "error");
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *warnings_json(uint32_t w)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < FS_WARN_COUNT; i++)
        if (w & FS_WARN_BIT(i))
            cJSON_AddItemToArray(a, cJSON_CreateString(fs_warning_id(i)));
    return a;
}

const char *report_attempt_outcome(const probe_attempt_t *a)
{
    return a->cause == FS_CAUSE_NONE     ? "connected"
           : a->error == UV_ECONNREFUSED ? "refused"
           : a->error == UV_ETIMEDOUT    ? "timeout"
                                         : "failed";
}

static cJSON *attempts_json(const probe_result_t *r)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < r->nattempts; i++) {
        const probe_attempt_t *at = &r->attempts[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "address", at->addr);
        cJSON_AddStringToObject(o, "outcome", report_attempt_outcome(at));
        if (at->error != 0 && at->error != UV_ECONNREFUSED && at->error != UV_ETIMEDOUT)
            cJSON_AddStringToObject(o, "error", uv_strerror(at->error));
        cJSON_AddNumberToObject(o, "time_ms", at->ms);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

cJSON *report_result_json(const probe_result_t *r, const char *url)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "url", url);
    cJSON_AddStringToObject(o, "state", r->online ? "online" : "offline");
    if (r->online)
        cJSON_AddNullToObject(o, "cause");
    else
        cJSON_AddStringToObject(o, "cause", fs_cause_id(r->cause));
    cJSON_AddItemToObject(o, "warnings", warnings_json(r->warnings));
    cJSON_AddStringToObject(o, "message", r->message);
    if (!r->online) {
        const fs_cause_info_t *ci = fs_cause_info(r->cause);
        cJSON_AddStringToObject(o, "phase", ci->phase);
        cJSON_AddStringToObject(o, "symptom", ci->symptom);
        cJSON_AddStringToObject(o, "remediation", ci->remediation);
    }
    cJSON *t = cJSON_AddObjectToObject(o, "timings_ms");
    for (int i = 0; i < PROBE_PH_COUNT; i++)
        cJSON_AddNumberToObject(t, probe_phase_names[i], r->timings_ms[i]);
    cJSON_AddNumberToObject(t, "total", r->total_ms);
    cJSON_AddStringToObject(o, "address", r->addr);
    cJSON_AddItemToObject(o, "connect_attempts", attempts_json(r));
    if (r->leaf_sha1[0])
        cJSON_AddStringToObject(o, "leaf_sha1", r->leaf_sha1);
    else
        cJSON_AddNullToObject(o, "leaf_sha1");
    add_time(o, "endpoint_time", r->endpoint_time);
    cJSON *tls = cJSON_AddObjectToObject(o, "tls");
    if (r->tls_version) {
        cJSON_AddStringToObject(tls, "version", tlsc_version_name(r->tls_version));
        cJSON_AddStringToObject(tls, "cipher", r->cipher);
    }
    if (r->http_status)
        cJSON_AddNumberToObject(o, "http_status", r->http_status);
    else
        cJSON_AddNullToObject(o, "http_status");
    cJSON_AddItemToObject(o, "chain", report_chain_json(&r->chain, r->endpoint_time));
    cJSON_AddItemToObject(o, "retrievals", report_retrievals_json(r->rev));
    return o;
}

/* One retrieval as certutil -urlfetch -verify shows it: a section per kind, then
 * Verified/Failed "<what>" Time, the URL, what came back and the error. */
static void retrieval_text(FILE *f, const rev_url_result_t *u)
{
    char b1[32], b2[32];
    int ocsp = strcmp(u->kind, "ocsp") == 0;
    const char *section = ocsp                            ? "OCSP"
                          : strcmp(u->kind, "aia") == 0   ? "AIA"
                          : strcmp(u->kind, "delta") == 0 ? "Delta CRL CDP"
                                                          : "CDP";
    fprintf(f, "  ---------------- %s (certificate %d) ----------------\n", section, u->cert_depth);
    const char *verdict = u->ok ? "Verified" : u->skipped ? "Skipped" : "Failed";
    if (ocsp) {
        fprintf(f, "  %s \"OCSP\" Time: %u ms%s\n", verdict, u->time_ms,
                u->from_cache ? " (cache)" : "");
        fprintf(f, "    [%d] %s\n", u->cert_depth, u->url);
        fprintf(f, "    %s, HTTP %ld, %zu bytes", u->post ? "POST" : "GET", u->http_status,
                u->bytes);
        if (u->status[0])
            fprintf(f, ", Status %s", u->status);
    } else {
        fprintf(f, "  %s \"%s\" Time: %u ms%s\n", verdict, u->url, u->time_ms,
                u->from_cache ? " (cache)" : "");
        if (u->skipped) {
            fprintf(f, "    %s\n", u->error);
            return;
        }
        fprintf(f, "    HTTP %ld, %zu bytes", u->http_status, u->bytes);
    }
    if (u->this_update)
        fprintf(f, ", ThisUpdate %s, NextUpdate %s", fs_rfc3339(u->this_update, b1, sizeof(b1)),
                u->next_update ? fs_rfc3339(u->next_update, b2, sizeof(b2)) : "-");
    if (u->timeout_ms)
        fprintf(f, ", timeout %u ms", u->timeout_ms);
    fprintf(f, "\n");
    if (u->error[0])
        fprintf(f, "    Error: %s\n", u->error);
}

void report_result_text(FILE *f, const probe_result_t *r, const char *url)
{
    char b1[32], b2[32];
    fprintf(f, "fleetscan probe %s\n", url);
    fprintf(f, "  address      %s", r->addr[0] ? r->addr : "-");
    if (r->naddrs > 1)
        fprintf(f, " (one of %zu addresses)", r->naddrs);
    fprintf(f, "\n");
    if (r->nattempts > 1) { /* the failover, as a client would have lived it */
        fprintf(f, "  connects     ");
        for (size_t i = 0; i < r->nattempts; i++)
            fprintf(f, "%s%s %s %u ms", i ? ", " : "", r->attempts[i].addr,
                    report_attempt_outcome(&r->attempts[i]), r->attempts[i].ms);
        fprintf(f, "\n");
    }
    if (r->leaf_sha1[0])
        fprintf(f, "  leaf sha1    %s\n", r->leaf_sha1);
    fprintf(f, "  phases       ");
    for (int i = 0; i < PROBE_PH_COUNT; i++)
        fprintf(f, "%s %u ms%s", probe_phase_names[i], r->timings_ms[i],
                i + 1 < PROBE_PH_COUNT ? ", " : "");
    fprintf(f, " (total %u ms)\n", r->total_ms);
    if (r->tls_version)
        fprintf(f, "  tls          %s %s\n", tlsc_version_name(r->tls_version), r->cipher);
    if (r->http_status)
        fprintf(f, "  http         %d\n", r->http_status);
    if (r->chain.n > 0) {
        fprintf(f, "\nPresented chain (%zu certificate%s):\n", r->chain.total,
                r->chain.total == 1 ? "" : "s");
        for (size_t i = 0; i < r->chain.n; i++) {
            const chain_cert_t *c = &r->chain.certs[i];
            fprintf(f, "  [%zu] Subject:    %s\n", i, c->subject);
            fprintf(f, "      Issuer:     %s\n", c->issuer);
            fprintf(f, "      Serial:     %s\n", c->serial);
            fprintf(f, "      NotBefore:  %s\n", fs_rfc3339(c->not_before, b1, sizeof(b1)));
            fprintf(f, "      NotAfter:   %s (%lld days)\n",
                    fs_rfc3339(c->not_after, b2, sizeof(b2)),
                    (long long)((c->not_after - r->endpoint_time) / 86400));
            fprintf(f, "      Cert Hash(sha1): %s\n", c->sha1);
            fprintf(f, "      SHA-256:    %s\n", c->sha256);
            fprintf(f, "      Signature:  %s\n", c->sig_alg);
            for (size_t j = 0; j < c->nsans; j++)
                fprintf(f, "      SAN:        %s\n", c->sans[j]);
            for (size_t j = 0; j < c->ncdp; j++)
                fprintf(f, "      CDP:        %s\n", c->cdp[j]);
            for (size_t j = 0; j < c->naia; j++)
                fprintf(f, "      AIA:        %s\n", c->aia[j]);
        }
    }
    if (r->rev != NULL && r->rev->nurls > 0) {
        fprintf(f, "\nURL retrieval:\n");
        for (size_t i = 0; i < r->rev->nurls; i++)
            retrieval_text(f, &r->rev->urls[i]);
    }
    fprintf(f, "\nVerdict: %s\n", r->online ? "ONLINE" : "OFFLINE");
    if (r->warnings) {
        fprintf(f, "Warnings:");
        for (int i = 0; i < FS_WARN_COUNT; i++)
            if (r->warnings & FS_WARN_BIT(i))
                fprintf(f, " %s", fs_warning_id(i));
        fprintf(f, "\n");
    }
    if (!r->online) {
        const fs_cause_info_t *ci = fs_cause_info(r->cause);
        fprintf(f, "Cause:   %s (phase %s)\n", ci->id, ci->phase);
        fprintf(f, "agent.log would say: %s\n", ci->symptom);
        fprintf(f, "Detail:  %s\n", r->message);
        fprintf(f, "Remediation: %s\n", ci->remediation);
    } else {
        fprintf(f, "Detail:  %s\n", r->message);
    }
}
