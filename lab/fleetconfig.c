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
    G_SKEW = 128,       /* the endpoints' clock is 3 days behind */
    G_PIN = 256,        /* the profile pins a thumbprint the server's certificate does not have */
};

/* One row per group; lab_groups[] (what tests assert) and row_flags[] (how the group is
 * configured) are parallel arrays. */
const lab_group_t lab_groups[] = {
    {"hq", LAB_SC_GOOD, 400, NULL, NULL},
    {"branch-aia", LAB_SC_LEAF_ONLY, 120, NULL, "aia_fetch_required"},
    {"branch-noaia", LAB_SC_LEAF_ONLY, 60, "missing_intermediate", NULL},
    {"old-trust", LAB_SC_GOOD, 80, "untrusted_ca", NULL},
    {"dmz-expired", LAB_SC_EXPIRED, 40, "cert_expired", NULL},
    {"wrong-binding", LAB_SC_WRONGHOST, 50, "hostname_mismatch", NULL},
    {"http-profile", LAB_SC_PLAIN_HTTP, 70, "profile_mismatch", NULL},
    {"old-port", LAB_SC_GOOD, 30, "profile_mismatch", NULL},
    {"site-nocrl", LAB_SC_GOOD, 90, "crl_unreachable", NULL},
    {"site-nocrl-soft", LAB_SC_GOOD, 40, NULL, "revocation_soft_fail"},
    {"revoked-binding", LAB_SC_REVOKED, 20, "cert_revoked", NULL},
    {"kiosk-sha1", LAB_SC_SHA1, 20, NULL, "weak_signature"},
    {"clock-behind", LAB_SC_GOOD, 15, "cert_not_yet_valid", NULL},
    {"pinned-old", LAB_SC_GOOD, 10, "thumbprint_mismatch", NULL},
    {"agent-500", LAB_SC_HTTP500, 10, "http_error", NULL},
};
const size_t lab_ngroups = FS_ARRAY_SIZE(lab_groups);

static const int row_flags[] = {
    G_PATH, G_AIA,        0,          G_LEGACY_TRUST,      0, 0,
    G_HTTP, G_WRONG_PORT, G_DEAD_CRL, G_DEAD_CRL | G_SOFT, 0, 0,
    G_SKEW, G_PIN,        G_PATH,
};
_Static_assert(FS_ARRAY_SIZE(row_flags) == FS_ARRAY_SIZE(lab_groups), "row_flags out of sync");

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
    for (size_t i = 0; i < lab_ngroups; i++) {
        const lab_group_t *g = &lab_groups[i];
        int flags = row_flags[i];
        int port = flags & G_WRONG_PORT ? lab->closed_port : lab_port(lab, g->scenario);
        fprintf(f, ",\n    \"p-%s\": {\"url\": \"%s://%s:%d%s\"%s}", g->name,
                flags & G_HTTP ? "http" : "https", LAB_HOST, port,
                flags & G_PATH ? "/Altiris/NS/Agent/GetClientPolicies.aspx" : "",
                flags & G_PIN
                    ? ", \"expect_thumbprint\": \"0000000000000000000000000000000000000000\""
                    : "");
    }
    fprintf(f, "\n  },\n  \"reference\": {\"profile\": \"default\", \"trust\": \"corp\"},\n");
    fprintf(f, "  \"groups\": [\n");
    for (size_t i = 0; i < lab_ngroups; i++) {
        const lab_group_t *g = &lab_groups[i];
        int flags = row_flags[i];
        unsigned count = (unsigned)(g->count * scale + 0.5);
        if (count == 0)
            count = 1;
        fprintf(f,
                "    {\"name\": \"%s\", \"count\": %u, \"profile\": \"p-%s\", \"trust\": \"%s\",\n"
                "     \"revocation\": {\"mode\": \"%s\", \"scope\": \"chain_exclude_root\", "
                "\"aia_fetch\": %s, \"url_timeout_ms\": 2000, \"budget_ms\": 3000},%s\n"
                "     \"network\": {\"resolve\": {\"%s\": \"127.0.0.1\", \"%s\": \"%s\"}}}%s\n",
                g->name, count, g->name, flags & G_LEGACY_TRUST ? "legacy" : "corp",
                flags & G_SOFT ? "soft_fail" : "strict", flags & G_AIA ? "true" : "false",
                flags & G_SKEW ? " \"clock_skew_s\": -259200," : "", LAB_HOST, LAB_CRL_HOST,
                flags & G_DEAD_CRL ? "127.0.0.2" : "127.0.0.1", i + 1 < lab_ngroups ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    if (fclose(f) != 0) {
        snprintf(err, 256, "cannot write %s", path);
        return -1;
    }
    return 0;
}
