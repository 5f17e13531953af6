/* fleetconfig.c - the lab's fleet configuration: groups of simulated endpoints against the
 * lab's bindings, one per way a rollover breaks agents (see scenarios.h). */
#include "lab/scenarios.h"
#include "probes/util.h"

#include <stdio.h>
#include <string.h>

/* group flags */
enum {
    G_LEGACY_TRUST = 1, /* trusts only the legacy root (trust store not updated) */
    G_AIA = 2,          /* fetches missing issuers through AIA */
    G_DEAD_CRL = 4,     /* its network cannot reach the CRL host */
    G_SOFT = 8,         /* soft_fail revocation instead of strict */
    G_HTTP = 16,        /* profile still says http:// */
    G_WRONG_PORT = 32,  /* profile points at a port nothing listens on */
    G_PATH = 64,        /* profile requests the agent URL */
};

typedef struct row_s {
    lab_group_t g;
    int flags;
} row_t;

static const row_t rows[] = {
    {{"hq", LAB_SC_GOOD, 400, NULL, NULL}, G_PATH},
    {{"branch-aia", LAB_SC_LEAF_ONLY, 120, NULL, "aia_fetch_required"}, G_AIA},
    {{"branch-noaia", LAB_SC_LEAF_ONLY, 60, "missing_intermediate", NULL}, 0},
    {{"old-trust", LAB_SC_GOOD, 80, "untrusted_ca", NULL}, G_LEGACY_TRUST},
    {{"dmz-expired", LAB_SC_EXPIRED, 40, "cert_expired", NULL}, 0},
    {{"wrong-binding", LAB_SC_WRONGHOST, 50, "hostname_mismatch", NULL}, 0},
    {{"http-profile", LAB_SC_PLAIN_HTTP, 70, "profile_mismatch", NULL}, G_HTTP},
    {{"old-port", LAB_SC_GOOD, 30, "profile_mismatch", NULL}, G_WRONG_PORT},
    {{"site-nocrl", LAB_SC_GOOD, 90, "crl_unreachable", NULL}, G_DEAD_CRL},
    {{"site-nocrl-soft", LAB_SC_GOOD, 40, NULL, "revocation_soft_fail"}, G_DEAD_CRL | G_SOFT},
    {{"revoked-binding", LAB_SC_REVOKED, 20, "cert_revoked", NULL}, 0},
    {{"kiosk-sha1", LAB_SC_SHA1, 20, NULL, "weak_signature"}, 0},
};

const lab_group_t lab_groups[] = {
#define R(i) rows[i].g
    R(0), R(1), R(2), R(3), R(4), R(5), R(6), R(7), R(8), R(9), R(10), R(11),
#undef R
};
const size_t lab_ngroups = FS_ARRAY_SIZE(rows);
_Static_assert(FS_ARRAY_SIZE(rows) == 12, "lab_groups initialiser out of sync with rows");

int lab_write_fleet_config(const lab_t *lab, const char *path, const lab_fleet_opts_t *o,
                           char err[256])
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        snprintf(err, 256, "cannot write %s", path);
        return -1;
    }
    double scale = o->scale > 0 ? o->scale : 1;
    char root[600], old[600];
    lab_file(lab, "root.pem", root, sizeof(root));
    lab_file(lab, "old-root.pem", old, sizeof(old));
    fprintf(f, "{\n  \"vantage\": \"%s\",\n  \"listen\": \"%s\",\n",
            o->vantage ? o->vantage : "lab", o->listen ? o->listen : "127.0.0.1:0");
    if (o->token_file)
        fprintf(f, "  \"api_token_file\": \"%s\",\n", o->token_file);
    if (o->event_log)
        fprintf(f, "  \"event_log\": \"%s\",\n", o->event_log);
    fprintf(f, "  \"interval_s\": %g, \"jitter\": 0.2,\n", o->interval_s > 0 ? o->interval_s : 30);
    fprintf(f, "  \"limits\": {\"max_in_flight\": 64, \"handshakes_per_s\": 2000, "
               "\"probe_timeout_ms\": 8000},\n");
    fprintf(f,
            "  \"trust_stores\": {\"corp\": {\"ca_file\": \"%s\"}, \"legacy\": {\"ca_file\": "
            "\"%s\"}},\n",
            root, old);
    fprintf(f, "  \"profiles\": {\n");
    fprintf(f,
            "    \"default\": {\"url\": \"https://%s:%d/Altiris/NS/Agent/GetClientPolicies.aspx\"}",
            LAB_HOST, lab_port(lab, LAB_SC_GOOD));
    for (size_t i = 0; i < FS_ARRAY_SIZE(rows); i++) {
        const row_t *r = &rows[i];
        int port = r->flags & G_WRONG_PORT ? lab->closed_port : lab_port(lab, r->g.scenario);
        fprintf(f, ",\n    \"p-%s\": {\"url\": \"%s://%s:%d%s\"}", r->g.name,
                r->flags & G_HTTP ? "http" : "https", LAB_HOST, port,
                r->flags & G_PATH ? "/Altiris/NS/Agent/GetClientPolicies.aspx" : "");
    }
    fprintf(f, "\n  },\n  \"reference\": {\"profile\": \"default\", \"trust\": \"corp\"},\n");
    fprintf(f, "  \"groups\": [\n");
    for (size_t i = 0; i < FS_ARRAY_SIZE(rows); i++) {
        const row_t *r = &rows[i];
        unsigned count = (unsigned)(r->g.count * scale + 0.5);
        if (count == 0)
            count = 1;
        fprintf(f,
                "    {\"name\": \"%s\", \"count\": %u, \"profile\": \"p-%s\", \"trust\": \"%s\",\n"
                "     \"revocation\": {\"mode\": \"%s\", \"scope\": \"chain_exclude_root\", "
                "\"aia_fetch\": %s, \"url_timeout_ms\": 2000, \"budget_ms\": 3000},\n"
                "     \"network\": {\"resolve\": {\"%s\": \"127.0.0.1\", \"%s\": \"%s\"}}}%s\n",
                r->g.name, count, r->g.name, r->flags & G_LEGACY_TRUST ? "legacy" : "corp",
                r->flags & G_SOFT ? "soft_fail" : "strict", r->flags & G_AIA ? "true" : "false",
                LAB_HOST, LAB_CRL_HOST, r->flags & G_DEAD_CRL ? "127.0.0.2" : "127.0.0.1",
                i + 1 < FS_ARRAY_SIZE(rows) ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    if (fclose(f) != 0) {
        snprintf(err, 256, "cannot write %s", path);
        return -1;
    }
    return 0;
}
