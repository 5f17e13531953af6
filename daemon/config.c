/* config.c - the schema of the `fleetscan run` configuration (see config.h, docs/CONFIG.md):
 * one table row per key (config_table.h), and the parsers of the keys that are not scalars. */
#include "daemon/config.h"
#include "daemon/config_files.h"
#include "daemon/config_refs.h"
#include "daemon/config_table.h"
#include "daemon/jsonc.h"
#include "probes/file.h"
#include "probes/tlsc.h"
#include "probes/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/err.h>

#define MIB (1024ull * 1024ull)

/* ---- the document's own keys ------------------------------------------------------------- */

static int check_vantage(cfg__parse_t *p, const char *jpath, const char *s)
{
    if (strlen(s) > 128)
        return jsonc_fail(p->err, jpath, "longer than 128 characters");
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f || *q == '"' || *q == '\\')
            return jsonc_fail(p->err, jpath,
                              "control characters, quotes and backslashes are not "
                              "allowed (it becomes a metrics label)");
    return 0;
}

/* What no row can default: the vantage is the host name. */
static int check_root(cfg__parse_t *p, const char *path, void *base)
{
    cfg_t *c = base;
    char host[256] = "";
    if (c->vantage == NULL) {
        if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
            fs_strlcpy(host, "localhost", sizeof(host));
        c->vantage = fs_xstrdup(host);
    }
    return 0;
}

static int listen_address(cfg__parse_t *p, const char *s)
{
    cfg_t *c = p->cfg;
    const char *hs = s, *he, *ps;
    if (*s == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':')
            return jsonc_fail(p->err, "listen", "\"%.64s\": expected [IPv6]:port", s);
        ps = he + 2;
    } else {
        he = strrchr(s, ':');
        if (he == NULL)
            return jsonc_fail(p->err, "listen", "\"%.64s\": expected host:port", s);
        ps = he + 1;
        if (memchr(s, ':', (size_t)(he - s)) != NULL)
            return jsonc_fail(p->err, "listen",
                              "\"%.64s\": put IPv6 addresses in brackets: [::1]:8787", s);
    }
    if ((size_t)(he - hs) == 0 || (size_t)(he - hs) >= sizeof(c->listen_host))
        return jsonc_fail(p->err, "listen", "\"%.64s\": bad host", s);
    memcpy(c->listen_host, hs, (size_t)(he - hs));
    c->listen_host[he - hs] = '\0';
    if (!fs_is_ip_literal(c->listen_host) || (*s != '[' && strchr(c->listen_host, ':')) ||
        (*s == '[' && !strchr(c->listen_host, ':')))
        return jsonc_fail(p->err, "listen",
                          "\"%.64s\": host must be an IP address (127.0.0.1:8787, "
                          "0.0.0.0:8787, [::1]:8787)",
                          s);
    long port = 0;
    const char *q = ps;
    for (; isdigit((unsigned char)*q) && q - ps < 6; q++)
        port = port * 10 + (*q - '0');
    if (q == ps || *q != '\0' || port > 65535)
        return jsonc_fail(p->err, "listen", "\"%.64s\": port must be 0..65535", s);
    c->listen_port = (int)port;
    return 0;
}

static int listen_parse(cfg__parse_t *p, const cJSON *obj, const char *path, void *base)
{
    const char *s;
    if (jsonc_get_str(p->err, obj, "listen", path, &s) != 0)
        return -1;
    return listen_address(p, s != NULL ? s : "127.0.0.1:8787");
}

static int listen_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    return strcmp(a->listen_host, b->listen_host) == 0 && a->listen_port == b->listen_port;
}

static int token_parse(cfg__parse_t *p, const cJSON *obj, const char *path, void *base)
{
    const char *s;
    if (jsonc_get_str(p->err, obj, "api_token_file", path, &s) != 0)
        return -1;
    return s != NULL ? cfg__token_load(p->cfg, p->base_dir, s, p->err) : 0;
}

/* What the daemon uses is the token, wherever it came from. */
static int token_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    return cfg__str_eq(a->api_token, b->api_token);
}

static void token_release(void *base)
{
    cfg_t *c = base;
    free(c->api_token_file);
    free(c->api_token);
}

int cfg_parse_shard(const char *s, uint32_t *index, uint32_t *count)
{
    unsigned long v[2] = {0, 0};
    const char *q = s;
    for (int k = 0; k < 2; k++) {
        const char *start = q;
        while (isdigit((unsigned char)*q) && q - start < 8)
            v[k] = v[k] * 10 + (unsigned)(*q++ - '0');
        if (q == start || *q != (k == 0 ? '/' : '\0'))
            return -1;
        q++;
    }
    if (v[1] < 1 || v[0] >= v[1] || v[1] > CFG_MAX_SHARDS)
        return -1;
    *index = (uint32_t)v[0];
    *count = (uint32_t)v[1];
    return 0;
}

static int shard_parse(cfg__parse_t *p, const cJSON *obj, const char *path, void *base)
{
    cfg_t *c = base;
    const char *s;
    if (jsonc_get_str(p->err, obj, "shard", path, &s) != 0)
        return -1;
    if (s == NULL)
        s = "0/1";
    if (cfg_parse_shard(s, &c->shard_index, &c->shard_count) != 0)
        return jsonc_fail(p->err, "shard", "\"%.32s\": expected \"i/n\" with 0 <= i < n <= %u", s,
                          CFG_MAX_SHARDS);
    return 0;
}

static int event_log_parse(cfg__parse_t *p, const cJSON *obj, const char *path, void *base)
{
    const char *s;
    if (jsonc_get_str(p->err, obj, "event_log", path, &s) != 0)
        return -1;
    return s != NULL ? cfg__event_log_check(p->cfg, p->base_dir, s, p->err) : 0;
}

static void event_log_release(void *base)
{
    free(((cfg_t *)base)->event_log);
}

/* "state_db": a path (relative to the configuration), ":memory:" or null (off); absent: the
 * daemon's default beside the configuration file, so absent and null differ. */
static int state_db_parse(cfg__parse_t *p, const cJSON *obj, const char *path, void *base)
{
    cfg_t *c = p->cfg;
    const cJSON *v = jsonc_member(obj, "state_db");
    const char *s;
    if (v == NULL)
        return 0;
    c->state_db_given = 1;
    if (cJSON_IsNull(v))
        return 0;
    if (jsonc_get_str(p->err, obj, "state_db", path, &s) != 0)
        return -1;
    c->state_db = strcmp(s, ":memory:") == 0 ? fs_xstrdup(s) : cfg__path_resolve(p->base_dir, s);
    return 0;
}

static int state_db_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    return a->state_db_given == b->state_db_given &&
           (a->state_db == NULL ? b->state_db == NULL
                                : b->state_db != NULL && strcmp(a->state_db, b->state_db) == 0);
}

static void state_db_release(void *base)
{
    free(((cfg_t *)base)->state_db);
}

/* ---- a group's keys that are not scalars ------------------------------------------------- */

/* 1 with *k set when an earlier group has this name (case-insensitive): a linear scan over
 * 65,535 groups would make parsing quadratic. */
static int group_name_seen(const cfg__parse_t *p, const char *name, size_t *k)
{
    size_t mask = p->group_nslot - 1;
    for (size_t s = fs_name_hash(name) & mask; p->group_slot[s] != 0; s = (s + 1) & mask) {
        if (strcasecmp(p->cfg->groups[p->group_slot[s] - 1].name, name) == 0) {
            *k = p->group_slot[s] - 1;
            return 1;
        }
    }
    return 0;
}

static void group_name_add(cfg__parse_t *p, size_t gi)
{
    size_t mask = p->group_nslot - 1, s = fs_name_hash(p->cfg->groups[gi].name) & mask;
    while (p->group_slot[s] != 0)
        s = (s + 1) & mask;
    p->group_slot[s] = gi + 1;
}

/* The name is unique across groups, case-insensitively (it names metrics and endpoint ids). */
static int check_group_name(cfg__parse_t *p, const char *jpath, const char *name)
{
    size_t k;
    if (!cfg__valid_name(name))
        return jsonc_fail(p->err, jpath, "\"%.64s\": use 1-48 of A-Z a-z 0-9 _ . -", name);
    if (group_name_seen(p, name, &k))
        return jsonc_fail(p->err, jpath, "duplicate group name \"%s\" (groups[%zu])", name, k);
    return 0;
}

/* Cipher strings are checked against OpenSSL here, so a typo fails the file, not a probe. */
static SSL_CTX *cipher_ctx(cfg__parse_t *p)
{
    if (p->tls_ctx == NULL)
        p->tls_ctx = SSL_CTX_new(TLS_client_method());
    ERR_clear_error();
    return p->tls_ctx;
}

static int check_ciphers(cfg__parse_t *p, const char *jpath, const char *s)
{
    SSL_CTX *ctx = cipher_ctx(p);
    if (ctx == NULL)
        return jsonc_fail(p->err, jpath, "cannot create an OpenSSL context to check ciphers");
    if (SSL_CTX_set_cipher_list(ctx, s) != 1) {
        ERR_clear_error();
        return jsonc_fail(p->err, jpath, "no cipher OpenSSL knows in \"%.120s\"", s);
    }
    return 0;
}

static int check_ciphersuites(cfg__parse_t *p, const char *jpath, const char *s)
{
    SSL_CTX *ctx = cipher_ctx(p);
    if (ctx == NULL)
        return jsonc_fail(p->err, jpath, "cannot create an OpenSSL context to check ciphers");
    if (SSL_CTX_set_ciphersuites(ctx, s) != 1) {
        ERR_clear_error();
        return jsonc_fail(p->err, jpath,
                          "invalid TLS 1.3 ciphersuites \"%.120s\" (e.g. "
                          "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384)",
                          s);
    }
    return 0;
}

static int check_tls(cfg__parse_t *p, const char *path, void *base)
{
    const cfg_tls_t *t = base;
    char jp[256];
    if (t->min_version <= t->max_version)
        return 0;
    jsonc_join(jp, sizeof(jp), path, "max_version");
    return jsonc_fail(p->err, jp, "\"%s\" is below min_version \"%s\"",
                      tlsc_version_id(t->max_version), tlsc_version_id(t->min_version));
}

/* One address of a "resolve" entry (IPv6 optionally in brackets). */
static int resolve_add(cfg__parse_t *p, cfg_network_t *n, const char *name, const cJSON *v,
                       const char *jp)
{
    char addr[64], rerr[256];
    if (!cJSON_IsString(v))
        return jsonc_fail(p->err, jp, "expected an IP address or a list of IP addresses");
    const char *a = v->valuestring;
    size_t al = strlen(a);
    if (al >= 2 && al < sizeof(addr) + 2 && a[0] == '[' && a[al - 1] == ']') {
        memcpy(addr, a + 1, al - 2);
        addr[al - 2] = '\0';
        a = addr;
    }
    if (!fs_is_ip_literal(a))
        return jsonc_fail(p->err, jp, "\"%.64s\" is not an IP address", v->valuestring);
    if (fs_resolve_add(&n->resolve, name, a, rerr) != 0)
        return jsonc_fail(p->err, jp, "%s", rerr);
    return 0;
}

/* "resolve": {"name": "address" or ["address", ...]} (SPEC §5): a farm's addresses in the
 * order a client meets them. */
static int resolve_parse(cfg__parse_t *p, const cJSON *o, const char *path, void *base)
{
    cfg_network_t *n = base;
    const cJSON *res;
    char jp[512];
    if (jsonc_get_obj(p->err, o, "resolve", path, &res) != 0)
        return -1;
    for (const cJSON *c = res ? res->child : NULL; c; c = c->next) {
        snprintf(jp, sizeof(jp), "%s.resolve[\"%.100s\"]", path, c->string);
        if (fs_resolve_lookup(&n->resolve, c->string) != NULL)
            return jsonc_fail(p->err, jp, "duplicate name");
        if (cJSON_IsArray(c)) {
            if (cJSON_GetArraySize(c) == 0)
                return jsonc_fail(p->err, jp, "an empty list: give at least one address");
            int k = 0;
            for (const cJSON *v = c->child; v; v = v->next, k++) {
                char ep[560];
                snprintf(ep, sizeof(ep), "%s[%d]", jp, k);
                if (resolve_add(p, n, c->string, v, ep) != 0)
                    return -1;
            }
        } else if (resolve_add(p, n, c->string, c, jp) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Same DNS overrides (each name's addresses in the same order), names in any order. */
static int resolve_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    return fs_resolve_equal(&((const cfg_network_t *)ba)->resolve,
                            &((const cfg_network_t *)bb)->resolve);
}

static void resolve_release(void *base)
{
    fs_resolve_free(&((cfg_network_t *)base)->resolve);
}

static int check_proxy(cfg__parse_t *p, const char *jpath, const char *s)
{
    fs_proxy_t px; /* its messages quote the URL with the password redacted */
    char why[256];
    return fs_proxy_parse(&px, s, why) != 0 ? jsonc_fail(p->err, jpath, "%s", why) : 0;
}

/* "host[:port]" (a directory server: AD CS's ldap:/// CDP URLs go there). */
static int check_host_port(cfg__parse_t *p, const char *jpath, const char *s)
{
    fs_url_t u;
    char url[320], why[256];
    snprintf(url, sizeof(url), "http://%s/", s);
    if (strlen(s) > 255 || strchr(s, '/') != NULL || strchr(s, '@') != NULL ||
        fs_url_parse(&u, url, why) != 0)
        return jsonc_fail(p->err, jpath, "\"%.64s\" is not host[:port]", s);
    return 0;
}

static int check_ip(cfg__parse_t *p, const char *jpath, const char *s)
{
    return fs_is_ip_literal(s) ? 0 : jsonc_fail(p->err, jpath, "\"%.64s\" is not an IP address", s);
}

static int groups_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base)
{
    cfg_t *c = p->cfg;
    const cJSON *arr = jsonc_member(root, "groups");
    if (arr == NULL)
        return jsonc_fail(p->err, "groups", "required: an array of endpoint groups");
    if (!cJSON_IsArray(arr))
        return jsonc_fail(p->err, "groups", "expected an array");
    size_t n = 0;
    for (const cJSON *g = arr->child; g; g = g->next)
        n++;
    if (n == 0)
        return jsonc_fail(p->err, "groups", "must contain at least one group");
    if (n > CFG_MAX_GROUPS)
        return jsonc_fail(p->err, "groups", "%zu groups: more than the limit of %u", n,
                          CFG_MAX_GROUPS);
    c->groups = fs_xcalloc(n, sizeof(*c->groups));
    for (p->group_nslot = 16; p->group_nslot < 2 * n;)
        p->group_nslot *= 2;
    p->group_slot = fs_xcalloc(p->group_nslot, sizeof(*p->group_slot));
    for (const cJSON *g = arr->child; g; g = g->next) {
        size_t gi = c->ngroups++; /* so cfg_free() releases a half-parsed group */
        char gpath[32];
        snprintf(gpath, sizeof(gpath), "groups[%zu]", gi);
        if (!cJSON_IsObject(g))
            return jsonc_fail(p->err, gpath, "expected an object");
        if (cfg__section_parse(p, &cfg__group_section, g, gpath, &c->groups[gi]) != 0)
            return -1;
        group_name_add(p, gi);
        c->total_endpoints += c->groups[gi].count;
    }
    if (c->total_endpoints > CFG_MAX_TOTAL_ENDPOINTS)
        return jsonc_fail(p->err, "groups", "%llu endpoints in all: more than the limit of %llu",
                          (unsigned long long)c->total_endpoints, CFG_MAX_TOTAL_ENDPOINTS);
    return 0;
}

static void groups_release(void *base)
{
    cfg_t *c = base;
    for (size_t i = 0; i < c->ngroups; i++)
        cfg__section_free(&cfg__group_section, &c->groups[i]);
    free(c->groups);
}

/* ---- the tables -------------------------------------------------------------------------- */

/* A row: the key, its type (CFG_T_*) and flags (CFG_F_*), then where it goes and its rules. */
#define KEY(n, t, fl) .name = n, .type = CFG_T_##t, .flags = fl
#define AT(st, f) .off = offsetof(st, f), .size = sizeof(((st *)0)->f)
#define RANGE(lo, hi, d) .min = lo, .max = hi, .def = d
#define NAMES(tbl, n) .names = tbl, .nnames = n
#define FNS(p, eq, rel) .parse = p, .equal = eq, .release = rel
#define SUB(s) .sub = &s
#define PROBE CFG_F_PROBE
#define RESTART CFG_F_RESTART
#define TLSCTX CFG_F_TLSCTX
#define REQUIRED CFG_F_REQUIRED
#define GT_MIN CFG_F_GT_MIN

static const cfg_key_t limits_keys[] = {
    {KEY("max_in_flight", U32, 0), AT(cfg_limits_t, max_in_flight), RANGE(1, 1000000, 256)},
    {KEY("handshakes_per_s", NUM, GT_MIN), AT(cfg_limits_t, handshakes_per_s), RANGE(0, 1e6, 200)},
    {KEY("probe_timeout_ms", U32, PROBE), AT(cfg_limits_t, probe_timeout_ms),
     RANGE(1, 3600000, 15000)},
    {KEY("connect_timeout_ms", U32, PROBE), AT(cfg_limits_t, connect_timeout_ms),
     RANGE(1, 3600000, 5000)},
    {KEY("tls_timeout_ms", U32, PROBE), AT(cfg_limits_t, tls_timeout_ms), RANGE(1, 3600000, 10000)},
    {KEY("request_timeout_ms", U32, PROBE), AT(cfg_limits_t, request_timeout_ms),
     RANGE(1, 3600000, 10000)},
    /* Set once, at start (fetch_set_inflight_limit). */
    {KEY("fetch_inflight_bytes", U64, RESTART), AT(cfg_limits_t, fetch_inflight_bytes),
     RANGE(1 * MIB, 1ull << 36, 64 * MIB)},
};
static const cfg_section_t limits_section = {"limits", limits_keys, FS_ARRAY_SIZE(limits_keys),
                                             NULL};

/* The API starts once (api_start): every key waits for a restart, like listen. */
static const cfg_key_t api_keys[] = {
    {KEY("threads", U32, RESTART), AT(cfg_api_t, threads), RANGE(0, 64, 0)},
    {KEY("max_connections", U32, RESTART), AT(cfg_api_t, max_connections), RANGE(1, 100000, 256)},
    {KEY("max_connections_per_ip", U32, RESTART), AT(cfg_api_t, max_connections_per_ip),
     RANGE(1, 100000, 32)},
    {KEY("health_reserve", U32, RESTART), AT(cfg_api_t, health_reserve), RANGE(0, 1024, 4)},
    {KEY("header_timeout_s", U32, RESTART), AT(cfg_api_t, header_timeout_s), RANGE(1, 3600, 10)},
    {KEY("body_timeout_s", U32, RESTART), AT(cfg_api_t, body_timeout_s), RANGE(1, 3600, 30)},
    {KEY("send_timeout_s", U32, RESTART), AT(cfg_api_t, send_timeout_s), RANGE(1, 3600, 60)},
    {KEY("idle_timeout_s", U32, RESTART), AT(cfg_api_t, idle_timeout_s), RANGE(1, 3600, 30)},
};
static const cfg_section_t api_section = {"api", api_keys, FS_ARRAY_SIZE(api_keys), NULL};

/* The cache is made once, at start (rev_ctx_new). */
static const cfg_key_t cache_keys[] = {
    {KEY("crl_max_age_s", U32, RESTART), AT(cfg_cache_t, crl_max_age_s), RANGE(1, 31536000, 86400)},
    {KEY("crl_max_bytes_total", U64, RESTART), AT(cfg_cache_t, crl_max_bytes_total),
     RANGE(1, 1ull << 36, 64 * MIB)},
};
static const cfg_section_t cache_section = {"cache", cache_keys, FS_ARRAY_SIZE(cache_keys), NULL};

static const cfg_key_t revocation_keys[] = {
    {KEY("mode", ENUM, PROBE), AT(cfg_revocation_t, mode), .def = REV_STRICT,
     NAMES(rev_mode_names, REV_MODE_COUNT)},
    {KEY("scope", ENUM, PROBE), AT(cfg_revocation_t, scope), .def = REV_SCOPE_CHAIN_EXCLUDE_ROOT,
     NAMES(rev_scope_names, REV_SCOPE_COUNT)},
    {KEY("aia_fetch", BOOL, PROBE), AT(cfg_revocation_t, aia_fetch), .def = 1},
    {KEY("url_timeout_ms", U32, PROBE), AT(cfg_revocation_t, url_timeout_ms),
     RANGE(1, 3600000, 15000)},
    {KEY("budget_ms", U32, PROBE), AT(cfg_revocation_t, budget_ms), RANGE(1, 3600000, 20000)},
    {KEY("max_crl_bytes", U64, PROBE), AT(cfg_revocation_t, max_crl_bytes),
     RANGE(1, 1u << 30, 16 * MIB)},
    {KEY("ocsp", BOOL, PROBE), AT(cfg_revocation_t, ocsp), .def = 1},
    {KEY("timeout_mode", ENUM, PROBE), AT(cfg_revocation_t, timeout_mode),
     .def = REV_TIMEOUT_PER_URL, NAMES(rev_timeout_names, REV_TIMEOUT_COUNT)},
};
static const cfg_section_t revocation_section = {"groups[].revocation", revocation_keys,
                                                 FS_ARRAY_SIZE(revocation_keys), NULL};

/* TLSCTX: what policy_tls_ctx() builds a context from, with the group's trust store. */
static const cfg_key_t tls_keys[] = {
    {KEY("min_version", TLS_VERSION, PROBE | TLSCTX), AT(cfg_tls_t, min_version),
     .def = TLS1_2_VERSION},
    {KEY("max_version", TLS_VERSION, PROBE | TLSCTX), AT(cfg_tls_t, max_version),
     .def = TLS1_3_VERSION},
    {KEY("ciphers", STRING, PROBE | TLSCTX), AT(cfg_tls_t, ciphers), .check = check_ciphers},
    {KEY("ciphersuites", STRING, PROBE | TLSCTX), AT(cfg_tls_t, ciphersuites),
     .check = check_ciphersuites},
    {KEY("sni", BOOL, PROBE), AT(cfg_tls_t, sni), .def = 1},
};
static const cfg_section_t tls_section = {"groups[].tls", tls_keys, FS_ARRAY_SIZE(tls_keys),
                                          check_tls};

static const cfg_key_t network_keys[] = {
    {KEY("resolve", CUSTOM, PROBE), FNS(resolve_parse, resolve_equal, resolve_release)},
    {KEY("proxy", STRING, PROBE), AT(cfg_network_t, proxy), .check = check_proxy},
    {KEY("source_address", STRING, PROBE), AT(cfg_network_t, source_address), .check = check_ip},
    {KEY("ldap", STRING, PROBE), AT(cfg_network_t, ldap), .check = check_host_port},
};
static const cfg_section_t network_section = {"groups[].network", network_keys,
                                              FS_ARRAY_SIZE(network_keys), NULL};

/* Every key of a group decides its probes or its endpoints: a changed one resets its state. */
static const cfg_key_t group_keys[] = {
    {KEY("name", STRING, PROBE | REQUIRED), AT(cfg_group_t, name), .check = check_group_name},
    {KEY("count", U32, PROBE | REQUIRED), AT(cfg_group_t, count), RANGE(1, CFG_MAX_GROUP_COUNT, 0)},
    {KEY("profile", CUSTOM, PROBE), FNS(cfg__group_profile_parse, cfg__group_profile_equal, NULL)},
    {KEY("trust", CUSTOM, PROBE | TLSCTX),
     FNS(cfg__group_trust_parse, cfg__group_trust_equal, NULL)},
    {KEY("revocation", SECTION, 0), AT(cfg_group_t, revocation), SUB(revocation_section)},
    {KEY("tls", SECTION, 0), AT(cfg_group_t, tls), SUB(tls_section)},
    {KEY("clock_skew_s", I64, PROBE), AT(cfg_group_t, clock_skew_s),
     RANGE(-3153600000LL, 3153600000LL, 0)},
    {KEY("network", SECTION, 0), AT(cfg_group_t, network), SUB(network_section)},
};
const cfg_section_t cfg__group_section = {"groups[]", group_keys, FS_ARRAY_SIZE(group_keys), NULL};

/* In parse order: the trust stores and profiles before the reference and the groups that
 * name them. PROBE here: the settings every group's probes share. */
static const cfg_key_t root_keys[] = {
    {KEY("vantage", STRING, 0), AT(cfg_t, vantage), .check = check_vantage},
    {KEY("listen", CUSTOM, RESTART), FNS(listen_parse, listen_equal, NULL)},
    {KEY("api_token_file", CUSTOM, RESTART), FNS(token_parse, token_equal, token_release)},
    {KEY("interval_s", NUM, GT_MIN), AT(cfg_t, interval_s), RANGE(0, 604800, 60)},
    {KEY("jitter", NUM, 0), AT(cfg_t, jitter), RANGE(0, 1, 0.2)},
    {KEY("shard", CUSTOM, 0), FNS(shard_parse, NULL, NULL)},
    {KEY("event_log", CUSTOM, 0), FNS(event_log_parse, NULL, event_log_release)},
    {KEY("state_db", CUSTOM, RESTART), FNS(state_db_parse, state_db_equal, state_db_release)},
    {KEY("expiring_soon_days", U32, PROBE), AT(cfg_t, expiring_soon_days), RANGE(0, 3650, 30)},
    {KEY("crl_expiring_soon_hours", U32, PROBE), AT(cfg_t, crl_expiring_soon_hours),
     RANGE(0, 8760, 24)},
    {KEY("limits", SECTION, 0), AT(cfg_t, limits), SUB(limits_section)},
    {KEY("api", SECTION, 0), AT(cfg_t, api), SUB(api_section)},
    {KEY("cache", SECTION, 0), AT(cfg_t, cache), SUB(cache_section)},
    {KEY("trust_stores", CUSTOM, 0), FNS(cfg__trust_stores_parse, NULL, cfg__trust_stores_release)},
    {KEY("profiles", CUSTOM, 0), FNS(cfg__profiles_parse, NULL, cfg__profiles_release)},
    {KEY("reference", CUSTOM, PROBE), FNS(cfg__reference_parse, cfg__reference_equal, NULL)},
    {KEY("targets", CUSTOM, PROBE),
     FNS(cfg__targets_parse, cfg__targets_equal, cfg__targets_release)},
    {KEY("groups", CUSTOM, 0), FNS(groups_parse, NULL, groups_release)},
};
const cfg_section_t cfg__root_section = {"", root_keys, FS_ARRAY_SIZE(root_keys), check_root};

#undef KEY
#undef AT
#undef RANGE
#undef NAMES
#undef FNS
#undef SUB
#undef PROBE
#undef RESTART
#undef TLSCTX
#undef REQUIRED
#undef GT_MIN

/* ---- loading ----------------------------------------------------------------------------- */

int cfg_parse(cfg_t **out, const char *json, size_t len, const char *base_dir, char err[256])
{
    cfg__parse_t p = {.err = err};
    cJSON *root = NULL;
    char *cwd = NULL, *base = NULL;
    int rc = -1;
    *out = NULL;
    err[0] = '\0';
    p.cfg = fs_xcalloc(1, sizeof(*p.cfg));
    atomic_init(&p.cfg->refs, 1);

    if (base_dir == NULL || base_dir[0] != '/') {
        cwd = getcwd(NULL, 0);
        if (cwd == NULL) {
            jsonc_fail(err, "", "cannot get the current directory: %s", strerror(errno));
            goto out;
        }
    }
    base = cfg__path_resolve(cwd ? cwd : "/", base_dir ? base_dir : ".");
    p.base_dir = p.cfg->base_dir = base;

    if (jsonc_parse(&root, json, len, err) != 0 ||
        cfg__section_parse(&p, &cfg__root_section, root, "", p.cfg) != 0)
        goto out;
    *out = p.cfg;
    p.cfg = NULL;
    rc = 0;
out:
    if (p.tls_ctx != NULL)
        SSL_CTX_free(p.tls_ctx);
    free(p.group_slot);
    cJSON_Delete(root);
    cfg_free(p.cfg);
    free(cwd);
    return rc;
}

int cfg_load(cfg_t **out, const char *path, char err[256])
{
    char why[128], *buf = NULL, *dir = NULL;
    size_t len;
    int rc = -1;
    *out = NULL;
    if (fs_read_file(path, CFG_MAX_FILE_BYTES, &buf, &len, NULL, why, sizeof(why)) != 0) {
        snprintf(err, 256, "cannot read \"%.120s\": %.110s", path, why);
        goto out;
    }
    dir = fs_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    rc = cfg_parse(out, buf, len, dir, err);
out:
    free(buf);
    free(dir);
    return rc;
}

const cfg_t *cfg_ref(const cfg_t *c)
{
    atomic_fetch_add(&((cfg_t *)c)->refs, 1); /* the count is the one mutable field */
    return c;
}

void cfg_unref(const cfg_t *c)
{
    cfg_free((cfg_t *)c);
}

void cfg_free(cfg_t *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) > 1)
        return;
    cfg__section_free(&cfg__root_section, c);
    free(c->base_dir);
    free(c);
}

/* ---- warnings ---------------------------------------------------------------------------- */

int cfg_is_loopback(const char *ip)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, ip, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

size_t cfg_warnings(const cfg_t *c, cfg_warning_t out[CFG_MAX_WARNINGS])
{
    size_t n = 0;
    if (!cfg_is_loopback(c->listen_host)) {
        char addr[80];
        snprintf(addr, sizeof(addr), strchr(c->listen_host, ':') ? "[%s]:%d" : "%s:%d",
                 c->listen_host, c->listen_port);
        out[n].code = CFG_WARN_LISTEN;
        snprintf(out[n++].message, sizeof(out[0].message),
                 "listen: %s is not a loopback address: the API, /metrics and the dashboard are "
                 "reachable from the network, read-only routes without a token (bind 127.0.0.1, "
                 "or firewall the port)",
                 addr);
    }
    uint32_t mode = c->api_token_mode;
    int group = (mode & 0060) != 0 && c->api_token_gid != (uint32_t)getegid();
    if (c->api_token_file != NULL && ((mode & 0006) != 0 || group)) {
        char who[40];
        if (mode & 0006)
            snprintf(who, sizeof(who), "every user");
        else
            snprintf(who, sizeof(who), "group %u", (unsigned)c->api_token_gid);
        out[n].code = CFG_WARN_TOKEN_FILE;
        snprintf(out[n++].message, sizeof(out[0].message),
                 "api_token_file: \"%.100s\" has mode %04o: %s can %s the API token "
                 "(chmod 600 it)",
                 c->api_token_file, (unsigned)mode, who,
                 mode & ((mode & 0006) ? 0004 : 0040) ? "read" : "replace");
    }
    return n;
}
