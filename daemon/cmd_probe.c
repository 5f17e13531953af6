/* cmd_probe.c - `fleetscan probe URL`: one endpoint's diagnosis, printed like
 * `certutil -verify -urlfetch` (or as one JSON object with --json). */
#include "daemon/cli.h"
#include "daemon/config.h"
#include "daemon/policy.h"
#include "probes/chain.h"
#include "probes/probe.h"
#include "probes/report.h"
#include "probes/revoke.h"
#include "probes/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/x509.h>

static void probe_usage(FILE *f)
{
    fprintf(
        f,
        "usage: fleetscan probe URL [options]\n"
        "       fleetscan probe -c FILE --group NAME [URL] [--json]\n"
        "  URL                       https://host[:port][/path] (a path also sends GET path)\n"
        "  -c, --config FILE         probe exactly as this configuration's group does (its\n"
        "  --group NAME                profile, trust, TLS, revocation, clock, network); URL\n"
        "                              replaces the profile's URL\n"
        "Without -c the probe uses the daemon's defaults (docs/CONFIG.md), changed by:\n"
        "  --ca FILE                 trusted roots (PEM); default: the system's roots\n"
        "  --ca-dir DIR              trusted roots directory (hashed, like /etc/ssl/certs)\n"
        "  --intermediates FILE      intermediates the endpoint already holds (PEM)\n"
        "  --resolve NAME:ADDR       resolve NAME to ADDR, like curl; repeated for one NAME: its\n"
        "                              addresses in order (a farm: round robin and failover)\n"
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
        "  --no-aia-fetch            do not fetch a missing issuer from AIA (default: fetch,\n"
        "                              as Windows does; --aia-fetch is accepted)\n"
        "  --proxy URL               HTTP proxy for CRL/AIA retrieval, "
        "http://[user:pass@]host:port\n"
        "  --no-ocsp                 CRLs only (default: OCSP first, CRLs on failure)\n"
        "  --timeout-mode M          per_url (default: each URL --url-timeout) | accumulative\n"
        "                              (all URLs --budget, each half of what remains)\n"
        "  --url-timeout MS          per-URL retrieval timeout (default 15000)\n"
        "  --budget MS               all retrievals together, accumulative mode (default 20000)\n"
        "  --ldap HOST[:PORT]        directory for ldap:// CDP URLs (default: skip them)\n"
        "  --max-crl-bytes N         size cap of a CRL/AIA body (default 16777216)\n"
        "  --dns-override-only       never query the system resolver (names must be in --resolve)\n"
        "  --json                    print one JSON object instead of the report\n"
        "A plain http:// URL is judged against the host's HTTPS binding: profile_mismatch.\n"
        "exit status: 0 online, 1 offline, 2 usage or configuration error\n");
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

/* ---- the CLI's options as a configuration: one group of one endpoint ---------------------- */

static cJSON *obj(cJSON *parent, const char *key)
{
    cJSON *o = cJSON_GetObjectItem(parent, key);
    return o ? o : cJSON_AddObjectToObject(parent, key);
}

/* Where each option goes in the configuration document (NULL: handled elsewhere). */
typedef struct opt_key_s {
    const char *opt;
    const char *section; /* "" top level, "group", "group.tls", ... */
    const char *key;
    int kind; /* 's' string, 'i' integer, 'v' TLS version, 'b' bool false (flag) */
} opt_key_t;

static const opt_key_t opt_keys[] = {
    {"--ca", "trust", "ca_file", 's'},
    {"--ca-dir", "trust", "ca_dir", 's'},
    {"--intermediates", "trust", "intermediates_file", 's'},
    {"--tls-min", "group.tls", "min_version", 'v'},
    {"--tls-max", "group.tls", "max_version", 'v'},
    {"--ciphers", "group.tls", "ciphers", 's'},
    {"--ciphersuites", "group.tls", "ciphersuites", 's'},
    {"--clock-skew", "group", "clock_skew_s", 'i'},
    {"--expect-thumbprint", "profile", "expect_thumbprint", 's'},
    {"--expiring-days", "", "expiring_soon_days", 'i'},
    {"--timeout", "limits", "probe_timeout_ms", 'i'},
    {"--revocation", "group.revocation", "mode", 's'},
    {"--revocation-scope", "group.revocation", "scope", 's'},
    {"--proxy", "group.network", "proxy", 's'},
    {"--url-timeout", "group.revocation", "url_timeout_ms", 'i'},
    {"--timeout-mode", "group.revocation", "timeout_mode", 's'},
    {"--budget", "group.revocation", "budget_ms", 'i'},
    {"--ldap", "group.network", "ldap", 's'},
    {"--max-crl-bytes", "group.revocation", "max_crl_bytes", 'i'},
};

typedef struct cli_doc_s {
    cJSON *root, *trust, *profile, *group;
} cli_doc_t;

static cJSON *section(cli_doc_t *d, const char *name)
{
    if (strcmp(name, "") == 0)
        return d->root;
    if (strcmp(name, "trust") == 0)
        return d->trust;
    if (strcmp(name, "profile") == 0)
        return d->profile;
    if (strcmp(name, "limits") == 0)
        return obj(d->root, "limits");
    if (strcmp(name, "group") == 0)
        return d->group;
    return obj(d->group, name + strlen("group."));
}

/* Which CLI option a configuration error is about, for the message. */
static const char *option_for(const char *err)
{
    static const struct {
        const char *path, *opt;
    } map[] = {{"trust_stores.cli.ca_file", "--ca"},
               {"trust_stores.cli.ca_dir", "--ca-dir"},
               {"trust_stores.cli.intermediates_file", "--intermediates"},
               {"groups[0].tls.ciphersuites", "--ciphersuites"},
               {"groups[0].tls.ciphers", "--ciphers"},
               {"groups[0].tls", "--tls-min/--tls-max"},
               {"groups[0].network.resolve", "--resolve"},
               {"groups[0].network.proxy", "--proxy"},
               {"groups[0].revocation", "--revocation options"},
               {"groups[0].network.ldap", "--ldap"},
               {"profiles.probe.url", "URL"},
               {"profiles.probe.expect_thumbprint", "--expect-thumbprint"},
               {"limits", "--timeout"}};
    for (size_t i = 0; i < FS_ARRAY_SIZE(map); i++)
        if (strncmp(err, map[i].path, strlen(map[i].path)) == 0)
            return map[i].opt;
    return NULL;
}

/* The configuration `fleetscan probe URL [options]` stands for: the daemon's defaults, the
 * options given, the system's roots when no --ca/--ca-dir. A plain http:// URL belongs to the
 * HTTPS binding of the same host (what an ITMS agent must talk to), so it is judged
 * profile_mismatch exactly as a daemon group with that profile. */
static int bare_config(cfg_t **out, cli_doc_t *d, const char *url, const fs_url_t *u, char err[256])
{
    if (cJSON_GetObjectItem(d->trust, "ca_file") == NULL &&
        cJSON_GetObjectItem(d->trust, "ca_dir") == NULL) {
        const char *file = X509_get_default_cert_file(), *dir = X509_get_default_cert_dir();
        if (access(file, R_OK) == 0)
            cJSON_AddStringToObject(d->trust, "ca_file", file);
        else
            cJSON_AddStringToObject(d->trust, "ca_dir", dir);
    }
    cJSON_AddStringToObject(d->profile, "url", url);
    cJSON *ref = cJSON_AddObjectToObject(d->root, "reference");
    cJSON_AddStringToObject(ref, "trust", "cli");
    if (strcmp(u->scheme, "http") == 0) {
        char b[600];
        int v6 = strchr(u->host, ':') != NULL;
        snprintf(b, sizeof(b), v6 ? "https://[%s]/" : "https://%s/", u->host);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(obj(d->root, "profiles"), "binding"), "url",
                                b);
        cJSON_AddStringToObject(ref, "profile", "binding");
    } else {
        cJSON_AddStringToObject(ref, "profile", "probe");
    }
    char *json = cJSON_PrintUnformatted(d->root);
    int rc = cfg_parse(out, json, strlen(json), NULL, err);
    free(json);
    if (rc < 0) {
        const char *o = option_for(err);
        if (o != NULL) {
            char e[256];
            snprintf(e, sizeof(e), "%s: %s", o, err);
            fs_strlcpy(err, e, 256);
        }
    }
    return rc;
}

/* ---- running it ---------------------------------------------------------------------------- */

typedef struct probe_run_s {
    uv_loop_t *loop;
    int pending;
    int ref_done, ref_online;
    probe_result_t ref; /* the reference's cause and message (no chain kept) */
    int have_result;
    probe_result_t result; /* the group's probe, its chain moved here */
} probe_run_t;

static void on_group_probe(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    probe_run_t *run = arg;
    run->result = *r;
    memset(&r->chain, 0, sizeof(r->chain)); /* ownership moves to run->result */
    r->rev = NULL;
    run->have_result = 1;
    if (--run->pending == 0)
        uv_stop(run->loop); /* the retrieval context may keep handles open: stop explicitly */
}

static void on_ref_probe(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    probe_run_t *run = arg;
    run->ref_done = 1;
    run->ref_online = policy_reference_answers(r);
    if (--run->pending == 0)
        uv_stop(run->loop);
}

static void on_rev_closed(void *arg)
{
    (void)arg;
}

static int find_group(const cfg_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->ngroups; i++)
        if (strcmp(cfg->groups[i].name, name) == 0)
            return (int)i;
    return -1;
}

int cmd_probe(int argc, char **argv)
{
    const char *url = NULL, *cfg_path = NULL, *group = NULL, *v, *other_opt = NULL;
    fs_url_t u;
    char err[256];
    int json = 0, rc = 2, r, dns_override_only = 0;
    long long n;
    cfg_t *cfg = NULL;
    rev_ctx_t *rev = NULL;
    uv_loop_t loop;
    int loop_inited = 0, pl_inited = 0, ref_inited = 0;
    policy_t pl, ref;
    cfg_profile_t cli_profile;
    probe_run_t run = {0};
    cli_doc_t d;
    d.root = cJSON_CreateObject();
    d.trust = cJSON_AddObjectToObject(cJSON_AddObjectToObject(d.root, "trust_stores"), "cli");
    d.profile = cJSON_AddObjectToObject(cJSON_AddObjectToObject(d.root, "profiles"), "probe");
    cJSON *groups = cJSON_AddArrayToObject(d.root, "groups");
    d.group = cJSON_CreateObject();
    cJSON_AddItemToArray(groups, d.group);
    cJSON_AddStringToObject(d.group, "name", "probe");
    cJSON_AddNumberToObject(d.group, "count", 1);
    cJSON_AddStringToObject(d.group, "profile", "probe");
    cJSON_AddStringToObject(d.group, "trust", "cli");

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t k;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            probe_usage(stdout);
            rc = 0;
            goto out;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        } else if (strcmp(a, "--dns-override-only") == 0) {
            dns_override_only = 1;
            continue;
        } else if (strcmp(a, "--no-sni") == 0) {
            cJSON_AddFalseToObject(obj(d.group, "tls"), "sni");
        } else if (strcmp(a, "--no-ocsp") == 0) {
            cJSON_AddFalseToObject(obj(d.group, "revocation"), "ocsp");
        } else if (strcmp(a, "--aia-fetch") == 0 || strcmp(a, "--no-aia-fetch") == 0) {
            cJSON_DeleteItemFromObject(obj(d.group, "revocation"), "aia_fetch");
            cJSON_AddBoolToObject(obj(d.group, "revocation"), "aia_fetch", a[2] == 'a');
        } else if ((r = cli_opt_value(argc, argv, &i, "-c", &v)) != 0 ||
                   (r = cli_opt_value(argc, argv, &i, "--config", &v)) != 0) {
            if (r < 0)
                goto out;
            cfg_path = v;
            continue;
        } else if ((r = cli_opt_value(argc, argv, &i, "--group", &v)) != 0) {
            if (r < 0)
                goto out;
            group = v;
            continue;
        } else if ((r = cli_opt_value(argc, argv, &i, "--resolve", &v)) != 0) {
            if (r < 0)
                goto out;
            const char *colon = strchr(v, ':');
            if (colon == NULL || colon == v || colon[1] == '\0') {
                fprintf(stderr, "fleetscan: --resolve: \"%s\" is not NAME:ADDR\n", v);
                goto out;
            }
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)(colon - v), v);
            /* repeated for one name: its addresses, in order (a farm behind one name) */
            cJSON *res = obj(obj(d.group, "network"), "resolve");
            cJSON *have = cJSON_GetObjectItem(res, name);
            if (have == NULL) {
                cJSON_AddStringToObject(res, name, colon + 1);
            } else {
                if (cJSON_IsString(have)) {
                    cJSON *list = cJSON_CreateArray();
                    cJSON_AddItemToArray(list, cJSON_CreateString(have->valuestring));
                    cJSON_ReplaceItemInObject(res, name, list);
                    have = list;
                }
                cJSON_AddItemToArray(have, cJSON_CreateString(colon + 1));
            }
        } else {
            for (k = 0; k < FS_ARRAY_SIZE(opt_keys); k++)
                if ((r = cli_opt_value(argc, argv, &i, opt_keys[k].opt, &v)) != 0)
                    break;
            if (k < FS_ARRAY_SIZE(opt_keys)) {
                const opt_key_t *ok = &opt_keys[k];
                if (r < 0)
                    goto out;
                cJSON *sec = section(&d, ok->section);
                cJSON_DeleteItemFromObject(sec, ok->key);
                if (ok->kind == 'i') {
                    if (cli_parse_int(ok->opt, v, -3153600000LL, 3153600000LL, &n) < 0)
                        goto out;
                    cJSON_AddNumberToObject(sec, ok->key, (double)n);
                } else if (ok->kind == 'v' && tlsc_version_parse(v) == 0) {
                    fprintf(stderr, "fleetscan: %s: \"%s\" is not one of 1.0, 1.1, 1.2, 1.3\n",
                            ok->opt, v);
                    goto out;
                } else {
                    cJSON_AddStringToObject(sec, ok->key, v);
                }
            } else if (a[0] == '-' && a[1] != '\0') {
                fprintf(stderr,
                        "fleetscan: probe: unknown option \"%s\" (see fleetscan probe --help)\n",
                        a);
                goto out;
            } else if (url == NULL) {
                url = a;
                continue;
            } else {
                fprintf(stderr, "fleetscan: probe: unexpected argument \"%s\"\n", a);
                goto out;
            }
        }
        other_opt = a;
    }
    if ((cfg_path == NULL) != (group == NULL)) {
        fprintf(stderr, "fleetscan: probe: -c FILE and --group NAME go together\n");
        goto out;
    }
    if (cfg_path != NULL && other_opt != NULL) {
        fprintf(stderr,
                "fleetscan: probe: %s cannot be combined with -c: the group's configuration "
                "decides how it probes\n",
                other_opt);
        goto out;
    }
    if (url == NULL && cfg_path == NULL) {
        fprintf(stderr, "fleetscan: probe: missing URL\n");
        probe_usage(stderr);
        goto out;
    }
    if (url != NULL && fs_url_parse(&u, url, err) < 0) {
        fprintf(stderr, "fleetscan: probe: %s\n", err);
        goto out;
    }
    int gi = 0;
    if (cfg_path != NULL) {
        if (cfg_load(&cfg, cfg_path, err) < 0) {
            fprintf(stderr, "fleetscan: %s: %s\n", cfg_path, err);
            goto out;
        }
        if ((gi = find_group(cfg, group)) < 0) {
            fprintf(stderr, "fleetscan: probe: %s has no group \"%s\"\n", cfg_path, group);
            goto out;
        }
    } else if (bare_config(&cfg, &d, url, &u, err) < 0) {
        fprintf(stderr, "fleetscan: probe: %s\n", err);
        goto out;
    }
    if (policy_group_init(&pl, cfg, (size_t)gi, NULL, err) < 0) {
        fprintf(stderr, "fleetscan: probe: %s\n", err);
        goto out;
    }
    pl_inited = 1;
    if (cfg_path != NULL && url != NULL) { /* the group's settings against another URL */
        cli_profile = *pl.profile;
        cli_profile.url = (char *)url;
        cli_profile.u = u;
        policy_set_profile(&pl, &cli_profile);
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
    pl.popts.rev = rev;
    pl.popts.capture_chain = 1;
    pl.popts.dns_override_only = pl.rev.dns_override_only = dns_override_only;
    run.loop = &loop;
    int src = probe_start(NULL, &loop, &pl.popts, on_group_probe, &run);
    if (src < 0) {
        fprintf(stderr, "fleetscan: probe: %s\n", uv_strerror(src));
        goto out;
    }
    run.pending++;
    /* A profile that differs from the server's binding is judged against that binding's own
     * answer (SPEC §4.1), so the binding is probed too, at the same time. */
    if (pl.profile_differs && !pl.http_vs_https) {
        if (policy_reference_init(&ref, cfg, pl.target_idx, err) < 0) {
            fprintf(stderr, "fleetscan: probe: %s\n", err);
            goto out;
        }
        ref_inited = 1;
        ref.popts.rev = rev;
        ref.popts.capture_chain = 0;
        ref.popts.dns_override_only = ref.rev.dns_override_only = dns_override_only;
        if (probe_start(NULL, &loop, &ref.popts, on_ref_probe, &run) == 0)
            run.pending++;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!run.have_result)
        goto out;
    probe_result_t *res = &run.result;
    char msg[sizeof(res->message)];
    policy_ref_t rs = !run.ref_done    ? POLICY_REF_UNKNOWN
                      : run.ref_online ? POLICY_REF_UP
                                       : POLICY_REF_DOWN;
    fs_cause_t cause = policy_verdict(&pl, res, rs, msg, sizeof(msg));
    res->cause = cause;
    res->online = cause == FS_CAUSE_NONE;
    fs_strlcpy(res->message, msg, sizeof(res->message));
    const char *shown = pl.profile->url;
    if (json) {
        cJSON *o = report_result_json(res, shown);
        if (cfg_path != NULL)
            cJSON_AddStringToObject(o, "group", cfg->groups[gi].name);
        if (run.ref_done)
            cJSON_AddStringToObject(o, "reference", run.ref_online ? "up" : "down");
        char *s = cJSON_Print(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        if (cfg_path != NULL)
            printf("Group %s of %s (%s)\n", cfg->groups[gi].name, cfg_path, shown);
        report_result_text(stdout, res, shown);
        if (run.ref_done)
            printf("Reference binding %s: %s\n", pl.ref->url, run.ref_online ? "up" : "down");
    }
    fflush(stdout);
    rc = res->online ? 0 : 1;
    probe_result_free(res);
out:
    if (rev != NULL)
        rev_ctx_close(rev, on_rev_closed, NULL);
    if (loop_inited) {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            fprintf(stderr, "fleetscan: warning: event loop closed with open handles\n");
    }
    if (pl_inited)
        policy_free(&pl);
    if (ref_inited)
        policy_free(&ref);
    cfg_free(cfg);
    cJSON_Delete(d.root);
    return rc;
}
