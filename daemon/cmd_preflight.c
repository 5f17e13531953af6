/* cmd_preflight.c - `fleetscan preflight -c FILE --chain FILE.pem [--json]`: before binding a
 * new certificate, which groups of the fleet would accept it, and why not. */
#include "daemon/cli.h"
#include "daemon/preflight.h"
#include "probes/file.h"
#include "probes/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFLIGHT_MAX_FILE (1024 * 1024)

static void preflight_usage(FILE *f)
{
    fprintf(f, "usage: fleetscan preflight -c FILE --chain FILE [--target NAME] [--json]\n"
               "  -c, --config FILE   the fleet configuration (groups, trust stores, profiles)\n"
               "  --chain FILE        candidate chain: PEM, DER .cer or PKCS#7 .p7b, in any order\n"
               "  --target NAME       the server binding it is for (default: the target most\n"
               "                      endpoints talk to); the groups of that target are judged\n"
               "  --json              print one JSON object\n"
               "exit status: 0 every group accepts, 1 some group rejects, 2 usage/config error\n");
}

static void print_text(const cJSON *doc)
{
    const cJSON *leaf = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "chain"), 0);
    printf("Candidate: %s\n  issuer %s\n  valid %s .. %s, sha1 %s\n\n",
           cJSON_GetObjectItem(leaf, "subject")->valuestring,
           cJSON_GetObjectItem(leaf, "issuer")->valuestring,
           cJSON_GetObjectItem(leaf, "not_before")->valuestring,
           cJSON_GetObjectItem(leaf, "not_after")->valuestring,
           cJSON_GetObjectItem(leaf, "sha1_thumbprint")->valuestring);
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(doc, "groups"))
    {
        int ok = cJSON_IsTrue(cJSON_GetObjectItem(g, "accept"));
        printf("  %-24s %6d endpoints  %-6s %s%s%s\n", cJSON_GetObjectItem(g, "group")->valuestring,
               cJSON_GetObjectItem(g, "endpoints")->valueint, ok ? "ACCEPT" : "REJECT",
               ok ? "" : cJSON_GetObjectItem(g, "cause")->valuestring, ok ? "" : ": ",
               ok ? "" : cJSON_GetObjectItem(g, "message")->valuestring);
    }
    const cJSON *s = cJSON_GetObjectItem(doc, "summary");
    printf("\n%d group(s) accept (%d endpoints), %d reject (%d endpoints)\n",
           cJSON_GetObjectItem(s, "groups_accepting")->valueint,
           cJSON_GetObjectItem(s, "endpoints_accepting")->valueint,
           cJSON_GetObjectItem(s, "groups_rejecting")->valueint,
           cJSON_GetObjectItem(s, "endpoints_rejecting")->valueint);
}

int cmd_preflight(int argc, char **argv)
{
    const char *cfg_path = NULL, *chain_path = NULL, *target = NULL, *v;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            preflight_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if ((m = cli_opt_value(argc, argv, &i, "-c", &v)) != 0 ||
                   (m = cli_opt_value(argc, argv, &i, "--config", &v)) != 0) {
            if (m < 0)
                return 2;
            cfg_path = v;
        } else if ((m = cli_opt_value(argc, argv, &i, "--target", &v)) != 0) {
            if (m < 0)
                return 2;
            target = v;
        } else if ((m = cli_opt_value(argc, argv, &i, "--chain", &v)) != 0) {
            if (m < 0)
                return 2;
            chain_path = v;
        } else {
            fprintf(stderr, "fleetscan: preflight: unexpected argument \"%s\"\n", argv[i]);
            preflight_usage(stderr);
            return 2;
        }
    }
    if (cfg_path == NULL || chain_path == NULL) {
        fprintf(stderr, "fleetscan: preflight: -c FILE and --chain FILE.pem are required\n");
        preflight_usage(stderr);
        return 2;
    }
    char err[256];
    cfg_t *cfg;
    if (cfg_load(&cfg, cfg_path, err) < 0) {
        fprintf(stderr, "fleetscan: %s: %s\n", cfg_path, err);
        return 2;
    }
    char *pem = NULL, why[128];
    size_t n;
    int rc = 2;
    if (fs_read_file(chain_path, PREFLIGHT_MAX_FILE, &pem, &n, NULL, why, sizeof(why)) != 0) {
        fprintf(stderr, "fleetscan: preflight: cannot read \"%s\": %s\n", chain_path, why);
        goto out;
    }
    cJSON *doc;
    long ti = -1;
    for (size_t t = 0; target != NULL && t < cfg->ntargets; t++)
        if (strcmp(cfg->targets[t].name, target) == 0)
            ti = (long)t;
    if (target != NULL && ti < 0) {
        fprintf(stderr, "fleetscan: preflight: --target: %s has no target \"%s\"\n", cfg_path,
                target);
        goto out;
    }
    if (preflight_run(cfg, (const unsigned char *)pem, n,
                      getenv("FLEETSCAN_DNS_OVERRIDE_ONLY") != NULL, ti, NULL, &doc, err) < 0) {
        fprintf(stderr, "fleetscan: preflight: %s: %s\n", chain_path, err);
        goto out;
    }
    if (json) {
        char *s = cJSON_Print(doc);
        puts(s);
        free(s);
    } else {
        print_text(doc);
    }
    rc = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "summary"), "groups_rejecting")->valueint ? 1
                                                                                                : 0;
    cJSON_Delete(doc);
out:
    free(pem);
    cfg_free(cfg);
    return rc;
}
