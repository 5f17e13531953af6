/* cmd_probe.c - `fleetscan probe URL`: one endpoint's diagnosis, printed like
 * `certutil -verify -urlfetch` (or as one JSON object with --json). */
#include "daemon/cli.h"
#include "probes/chain.h"
#include "probes/probe.h"
#include "probes/report.h"
#include "probes/revoke.h"
#include "probes/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void probe_usage(FILE *f)
{
    fprintf(
        f,
        "usage: fleetscan probe URL [options]\n"
        "  URL                       https://host[:port][/path] (a path also sends GET path)\n"
        "  --ca FILE                 trusted roots (PEM); default: the system's roots\n"
        "  --ca-dir DIR              trusted roots directory (hashed, like /etc/ssl/certs)\n"
        "  --intermediates FILE      intermediates the endpoint already holds (PEM)\n"
        "  --resolve NAME:ADDR       resolve NAME to ADDR (repeatable), like curl\n"
        "  --no-sni                  do not send SNI (IIS then serves its default binding)\n"
        "  --tls-min V, --tls-max V  1.0 | 1.1 | 1.2 | 1.3 (default 1.2 .. 1.3)\n"
        "  --ciphers LIST            TLS <= 1.2 cipher list (OpenSSL syntax)\n"
        "  --ciphersuites LIST       TLS 1.3 cipher suites\n"
        "  --clock-skew S            endpoint clock minus host clock, seconds (e.g. -3600)\n"
        "  --expect-thumbprint H     expected SHA-1 or SHA-256 of the bound certificate\n"
        "  --expiring-days N         cert_expiring_soon window (default 30)\n"
        "  --timeout MS              whole-probe deadline (default 15000)\n"
        "  --revocation MODE         strict | soft_fail | off (default strict)\n"
        "  --revocation-scope S      leaf | chain | chain_exclude_root (default "
        "chain_exclude_root)\n"
        "  --aia-fetch               fetch a missing issuer from the AIA caIssuers URL\n"
        "  --proxy URL               HTTP proxy for CRL/AIA retrieval, "
        "http://[user:pass@]host:port\n"
        "  --url-timeout MS          per-URL retrieval timeout (default 15000)\n"
        "  --max-crl-bytes N         size cap of a CRL/AIA body (default 16777216)\n"
        "  --dns-override-only       never query the system resolver (names must be in --resolve)\n"
        "  --json                    print one JSON object instead of the report\n"
        "exit status: 0 online, 1 offline, 2 usage error\n");
}

int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "fleetscan: option %s needs a value\n", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_parse_int(const char *opt, const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "fleetscan: %s: \"%s\" is not an integer in [%lld, %lld]\n", opt, s, min,
                max);
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct probe_run_s {
    probe_result_t *out;
    int done;
    const char *url;
    int json;
    int status;
    uv_loop_t *loop;
} probe_run_t;

static void on_probe(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    probe_run_t *run = arg;
    run->done = 1;
    run->status = r->online ? 0 : 1;
    if (run->json) {
        cJSON *o = report_result_json(r, run->url);
        char *s = cJSON_Print(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        report_result_text(stdout, r, run->url);
    }
    fflush(stdout);
    uv_stop(run->loop); /* the retrieval context may keep handles open: stop explicitly */
}

static void on_rev_closed(void *arg)
{
    (void)arg;
}

int cmd_probe(int argc, char **argv)
{
    const char *url = NULL, *v;
    tlsc_ctx_opts_t topts = {0};
    probe_opts_t popts;
    rev_policy_t rpol;
    fs_resolve_t resolve = {0};
    fs_url_t u;
    char err[256], thumb[65];
    int json = 0, rc = 2, r;
    long long n;
    tlsc_ctx_t *tls = NULL;
    rev_ctx_t *rev = NULL;
    uv_loop_t loop;
    int loop_inited = 0;

    probe_opts_defaults(&popts);
    rev_policy_defaults(&rpol);
    rpol.mode = REV_STRICT; /* Schannel's behaviour for agents: an offline CRL fails trust */
    rpol.aia_fetch = 0;
    topts.min_version = TLS1_2_VERSION;
    topts.max_version = TLS1_3_VERSION;

#define OPT(name) ((r = cli_opt_value(argc, argv, &i, name, &v)) != 0)
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            probe_usage(stdout);
            rc = 0;
            goto out;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--no-sni") == 0) {
            popts.sni = 0;
        } else if (strcmp(a, "--aia-fetch") == 0) {
            rpol.aia_fetch = 1;
        } else if (strcmp(a, "--dns-override-only") == 0) {
            popts.dns_override_only = 1;
            rpol.dns_override_only = 1;
        } else if (OPT("--ca")) {
            if (r < 0)
                goto out;
            topts.ca_file = v;
        } else if (OPT("--ca-dir")) {
            if (r < 0)
                goto out;
            topts.ca_dir = v;
        } else if (OPT("--intermediates")) {
            if (r < 0)
                goto out;
            topts.intermediates_file = v;
        } else if (OPT("--resolve")) {
            if (r < 0)
                goto out;
            if (fs_resolve_add_spec(&resolve, v, err) < 0) {
                fprintf(stderr, "fleetscan: %s\n", err);
                goto out;
            }
        } else if (OPT("--tls-min") || OPT("--tls-max")) {
            if (r < 0)
                goto out;
            int ver = tlsc_version_parse(v);
            if (ver == 0) {
                fprintf(stderr, "fleetscan: %s: \"%s\" is not one of 1.0, 1.1, 1.2, 1.3\n", a, v);
                goto out;
            }
            if (strncmp(a, "--tls-min", 9) == 0)
                topts.min_version = ver;
            else
                topts.max_version = ver;
        } else if (OPT("--ciphers")) {
            if (r < 0)
                goto out;
            topts.ciphers = v;
        } else if (OPT("--ciphersuites")) {
            if (r < 0)
                goto out;
            topts.ciphersuites = v;
        } else if (OPT("--clock-skew")) {
            if (r < 0 || cli_parse_int("--clock-skew", v, -3153600000LL, 3153600000LL, &n) < 0)
                goto out;
            popts.clock_skew_s = n;
        } else if (OPT("--expect-thumbprint")) {
            if (r < 0)
                goto out;
            if (chain_normalise_thumbprint(v, thumb) < 0) {
                fprintf(stderr,
                        "fleetscan: --expect-thumbprint: \"%s\" is not a SHA-1 (40 hex) "
                        "or SHA-256 (64 hex) thumbprint\n",
                        v);
                goto out;
            }
            popts.expect_thumbprint = thumb;
        } else if (OPT("--expiring-days")) {
            if (r < 0 || cli_parse_int("--expiring-days", v, 0, 3650, &n) < 0)
                goto out;
            popts.expiring_soon_s = n * 86400;
        } else if (OPT("--timeout")) {
            if (r < 0 || cli_parse_int("--timeout", v, 1, 3600000, &n) < 0)
                goto out;
            popts.total_timeout_ms = (uint32_t)n;
        } else if (OPT("--revocation-scope")) {
            if (r < 0)
                goto out;
            if (strcmp(v, "leaf") == 0)
                rpol.scope = REV_SCOPE_LEAF;
            else if (strcmp(v, "chain") == 0)
                rpol.scope = REV_SCOPE_CHAIN;
            else if (strcmp(v, "chain_exclude_root") == 0)
                rpol.scope = REV_SCOPE_CHAIN_EXCLUDE_ROOT;
            else {
                fprintf(stderr,
                        "fleetscan: --revocation-scope: \"%s\" is not leaf, chain or "
                        "chain_exclude_root\n",
                        v);
                goto out;
            }
        } else if (OPT("--revocation")) {
            if (r < 0)
                goto out;
            if (strcmp(v, "strict") == 0)
                rpol.mode = REV_STRICT;
            else if (strcmp(v, "soft_fail") == 0)
                rpol.mode = REV_SOFT_FAIL;
            else if (strcmp(v, "off") == 0)
                rpol.mode = REV_OFF;
            else {
                fprintf(stderr, "fleetscan: --revocation: \"%s\" is not strict, soft_fail or off\n",
                        v);
                goto out;
            }
        } else if (OPT("--proxy")) {
            if (r < 0)
                goto out;
            fs_proxy_t px;
            if (fs_proxy_parse(&px, v, err) < 0) {
                fprintf(stderr, "fleetscan: --proxy: %s\n", err);
                goto out;
            }
            rpol.proxy = v;
        } else if (OPT("--url-timeout")) {
            if (r < 0 || cli_parse_int("--url-timeout", v, 1, 600000, &n) < 0)
                goto out;
            rpol.url_timeout_ms = (uint32_t)n;
        } else if (OPT("--max-crl-bytes")) {
            if (r < 0 || cli_parse_int("--max-crl-bytes", v, 1024, 1LL << 31, &n) < 0)
                goto out;
            rpol.max_bytes = (size_t)n;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr,
                    "fleetscan: probe: unknown option \"%s\" (see fleetscan probe --help)\n", a);
            goto out;
        } else if (url == NULL) {
            url = a;
        } else {
            fprintf(stderr, "fleetscan: probe: unexpected argument \"%s\"\n", a);
            goto out;
        }
    }
#undef OPT
    if (url == NULL) {
        fprintf(stderr, "fleetscan: probe: missing URL\n");
        probe_usage(stderr);
        goto out;
    }
    if (fs_url_parse(&u, url, err) < 0) {
        fprintf(stderr, "fleetscan: probe: %s\n", err);
        goto out;
    }
    if (topts.min_version > topts.max_version) {
        fprintf(stderr, "fleetscan: probe: --tls-min is above --tls-max\n");
        goto out;
    }
    topts.default_paths = topts.ca_file == NULL && topts.ca_dir == NULL;
    if (tlsc_ctx_new(&tls, &topts, err) < 0) {
        fprintf(stderr, "fleetscan: probe: %s\n", err);
        goto out;
    }
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "fleetscan: probe: cannot create the event loop\n");
        goto out;
    }
    loop_inited = 1;
    if (rev_ctx_new(&rev, &loop, NULL) < 0) {
        fprintf(stderr, "fleetscan: probe: cannot create the retrieval context\n");
        goto out;
    }
    rpol.resolve = &resolve;
    rpol.view = "cli";
    popts.url = &u;
    popts.tls = tls;
    popts.resolve = &resolve;
    popts.rev = rev;
    popts.rev_policy = &rpol;
    probe_run_t run = {.url = url, .json = json, .status = 1, .loop = &loop};
    int src = probe_start(NULL, &loop, &popts, on_probe, &run);
    if (src < 0) {
        fprintf(stderr, "fleetscan: probe: %s\n", uv_strerror(src));
        goto out;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = run.done ? run.status : 1;
out:
    if (rev != NULL)
        rev_ctx_close(rev, on_rev_closed, NULL);
    if (loop_inited) {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            fprintf(stderr, "fleetscan: warning: event loop closed with open handles\n");
    }
    tlsc_ctx_unref(tls);
    fs_resolve_free(&resolve);
    return rc;
}
