/* reference.c - the reference target: its probe result as the /api/v1/targets document and
 * the certificate and CRL gauges of /metrics. */
#include "daemon/fleet_int.h"
#include "probes/report.h"
#include "probes/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends to a growing string; never truncates, never overruns. */
static void appendf(char **m, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char **m, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (*len + (size_t)n + 1 > *cap) {
        *cap = (*len + (size_t)n + 1) * 2;
        *m = fs_xrealloc(*m, *cap);
    }
    va_start(ap, fmt);
    vsnprintf(*m + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
}

/* A Prometheus label value: backslash, double quote and newline escaped (exposition 0.0.4). */
static const char *label_value(const char *in, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = in; *p && k + 3 < n; p++) {
        if (*p == '\\' || *p == '"') {
            out[k++] = '\\';
            out[k++] = *p;
        } else if (*p == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = *p;
        }
    }
    out[k] = '\0';
    return out;
}

void fleet__render_reference(fleet_t *f, const probe_result_t *r)
{
    char lv[1100];
    fleet_gen_t *g = f->gen;
    const cfg_t *cfg = g->cfg;
    const cfg_profile_t *refp = &cfg->profiles[cfg->ref_profile_idx];
    char ts[32];
    cJSON *root = cJSON_CreateObject();
    cJSON *targets = cJSON_AddArrayToObject(root, "targets");
    cJSON *t = report_result_json(r, refp->url);
    cJSON_AddStringToObject(t, "name", "reference");
    cJSON_AddStringToObject(t, "profile", refp->name);
    cJSON_AddStringToObject(t, "trust", cfg->trust[cfg->ref_trust_idx].name);
    cJSON_AddStringToObject(t, "checked_at", fs_rfc3339(r->started_at, ts, sizeof(ts)));
    /* The CRL view of the target: one line per CRL URL. */
    cJSON *crls = cJSON_AddArrayToObject(t, "crls");
    size_t nurls = r->rev ? r->rev->nurls : 0;
    for (size_t i = 0; i < nurls; i++) {
        const rev_url_result_t *u = &r->rev->urls[i];
        if (strcmp(u->kind, "crl") != 0)
            continue;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "url", u->url);
        cJSON_AddNumberToObject(c, "cert_depth", u->cert_depth);
        cJSON_AddBoolToObject(c, "reachable", u->ok || u->http_status == 200);
        cJSON_AddNumberToObject(c, "http_status", (double)u->http_status);
        cJSON_AddNumberToObject(c, "bytes", (double)u->bytes);
        if (u->this_update)
            cJSON_AddStringToObject(c, "this_update", fs_rfc3339(u->this_update, ts, sizeof(ts)));
        else
            cJSON_AddNullToObject(c, "this_update");
        if (u->next_update)
            cJSON_AddStringToObject(c, "next_update", fs_rfc3339(u->next_update, ts, sizeof(ts)));
        else
            cJSON_AddNullToObject(c, "next_update");
        if (u->error[0])
            cJSON_AddStringToObject(c, "last_error", u->error);
        else
            cJSON_AddNullToObject(c, "last_error");
        cJSON_AddItemToArray(crls, c);
    }
    cJSON_AddItemToArray(targets, t);
    free(f->targets_json);
    f->targets_json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    /* Gauges for Prometheus; the renderer adds vantage and shard. */
    size_t cap = 4096, len = 0;
    char *m = fs_xmalloc(cap);
    m[0] = '\0';
#define APPEND(...) appendf(&m, &len, &cap, __VA_ARGS__)
    APPEND("# HELP fleetscan_cert_not_after_seconds notAfter of each presented certificate "
           "(Unix time).\n# TYPE fleetscan_cert_not_after_seconds gauge\n");
    for (size_t i = 0; i < r->chain.n; i++) {
        const chain_cert_t *c = &r->chain.certs[i];
        char subj[320];
        label_value(c->subject, subj, sizeof(subj));
        APPEND("fleetscan_cert_not_after_seconds{target=\"reference\",depth=\"%zu\",subject=\"%s\","
               "sha1=\"%s\"} %lld\n",
               i, subj, c->sha1, (long long)c->not_after);
    }
    APPEND("# HELP fleetscan_crl_reachable 1 when the CRL URL answered with a usable CRL.\n"
           "# TYPE fleetscan_crl_reachable gauge\n");
    for (size_t i = 0; i < nurls; i++) {
        const rev_url_result_t *u = &r->rev->urls[i];
        if (strcmp(u->kind, "crl") == 0)
            APPEND("fleetscan_crl_reachable{url=\"%s\"} %d\n", label_value(u->url, lv, sizeof(lv)),
                   u->ok ? 1 : 0);
    }
    APPEND("# HELP fleetscan_crl_next_update_seconds nextUpdate of the CRL served at the URL "
           "(Unix time).\n# TYPE fleetscan_crl_next_update_seconds gauge\n");
    for (size_t i = 0; i < nurls; i++) {
        const rev_url_result_t *u = &r->rev->urls[i];
        if (strcmp(u->kind, "crl") == 0 && u->next_update)
            APPEND("fleetscan_crl_next_update_seconds{url=\"%s\"} %lld\n",
                   label_value(u->url, lv, sizeof(lv)), (long long)u->next_update);
    }
    APPEND("# HELP fleetscan_reference_up 1 when the reference binding accepts a connection "
           "and validates.\n# TYPE fleetscan_reference_up gauge\n");
    APPEND("fleetscan_reference_up %d\n", r->online ? 1 : 0);
#undef APPEND
    free(f->metrics_extra);
    f->metrics_extra = m;
}
