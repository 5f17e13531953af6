/* config.c - loading and validating the `fleetscan run` configuration (see config.h and
 * docs/CONFIG.md): the schema over the JSONC toolkit (jsonc.h), trust stores, path resolution. */
#include "daemon/config.h"
#include "daemon/config_files.h"
#include "daemon/jsonc.h"
#include "probes/file.h"
#include "probes/tlsc.h"
#include "probes/util.h"

#include <cjson/cJSON.h>
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
#include <openssl/ssl.h>

#define MIB (1024ull * 1024ull)

/* ---- the state of one parse -------------------------------------------------------------- */

typedef struct parse_s {
    cfg_t *cfg;
    const char *base_dir; /* absolute */
    char *err;            /* caller's err[256] */
    SSL_CTX *tls_ctx;     /* created on first use, to validate cipher strings */
    size_t *group_slot;   /* hash set of group names (index + 1): duplicates in O(1) */
    size_t group_nslot;   /* a power of two, at least twice the number of groups */
} parse_t;

/* [A-Za-z0-9_.-]{1,48}: group, trust store and profile names (they appear in URLs, metrics
 * labels and endpoint ids). */
static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 48)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

/* ---- top-level scalars ------------------------------------------------------------------- */

static int parse_listen(parse_t *p, const char *s)
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

static int parse_limits(parse_t *p, const cJSON *root)
{
    static const char *const keys[] = {"max_in_flight",
                                       "handshakes_per_s",
                                       "probe_timeout_ms",
                                       "connect_timeout_ms",
                                       "tls_timeout_ms",
                                       "request_timeout_ms",
                                       NULL};
    cfg_limits_t *l = &p->cfg->limits;
    const cJSON *o;
    int64_t v;
    if (jsonc_get_obj(p->err, root, "limits", "", &o) != 0 ||
        (o && jsonc_check_keys(p->err, o, "limits", keys)))
        return -1;
    if (jsonc_get_int(p->err, o, "max_in_flight", "limits", 1, JSONC_NO_MAX, 256, &v))
        return -1;
    if (v > 1000000)
        return jsonc_fail(p->err, "limits.max_in_flight",
                          "must be an integer between 1 and 1000000");
    l->max_in_flight = (uint32_t)v;
    if (jsonc_get_num(p->err, o, "handshakes_per_s", "limits", 0, 1, 1e6, 200,
                      &l->handshakes_per_s))
        return -1;
    const struct {
        const char *key;
        int64_t def;
        uint32_t *dst;
    } ms[] = {{"probe_timeout_ms", 15000, &l->probe_timeout_ms},
              {"connect_timeout_ms", 5000, &l->connect_timeout_ms},
              {"tls_timeout_ms", 10000, &l->tls_timeout_ms},
              {"request_timeout_ms", 10000, &l->request_timeout_ms}};
    for (size_t i = 0; i < FS_ARRAY_SIZE(ms); i++) {
        if (jsonc_get_int(p->err, o, ms[i].key, "limits", 1, 3600000, ms[i].def, &v))
            return -1;
        *ms[i].dst = (uint32_t)v;
    }
    return 0;
}

static int parse_cache(parse_t *p, const cJSON *root)
{
    static const char *const keys[] = {"crl_max_age_s", "crl_max_bytes_total", NULL};
    const cJSON *o;
    int64_t v;
    if (jsonc_get_obj(p->err, root, "cache", "", &o) != 0 ||
        (o && jsonc_check_keys(p->err, o, "cache", keys)))
        return -1;
    if (jsonc_get_int(p->err, o, "crl_max_age_s", "cache", 1, 31536000, 86400, &v))
        return -1;
    p->cfg->cache.crl_max_age_s = (uint32_t)v;
    if (jsonc_get_int(p->err, o, "crl_max_bytes_total", "cache", 1, (int64_t)(1ull << 36), 64 * MIB,
                      &v))
        return -1;
    p->cfg->cache.crl_max_bytes_total = (uint64_t)v;
    return 0;
}

/* ---- trust stores and profiles ----------------------------------------------------------- */

static int parse_trust(parse_t *p, const cJSON *v, const char *path, cfg_trust_t *t)
{
    static const char *const keys[] = {"ca_file", "ca_dir", "intermediates_file", NULL};
    const char *ca_file, *ca_dir, *inter;
    if (!cJSON_IsObject(v))
        return jsonc_fail(p->err, path, "expected an object");
    if (jsonc_check_keys(p->err, v, path, keys) ||
        jsonc_get_str(p->err, v, "ca_file", path, &ca_file) ||
        jsonc_get_str(p->err, v, "ca_dir", path, &ca_dir) ||
        jsonc_get_str(p->err, v, "intermediates_file", path, &inter))
        return -1;
    if (ca_file == NULL && ca_dir == NULL)
        return jsonc_fail(p->err, path, "needs ca_file or ca_dir (or both)");
    return cfg__trust_load(t, p->base_dir, path, ca_file, ca_dir, inter, p->err);
}

/* Normalises a thumbprint as copied from MMC or certutil: drops colons, spaces and the
 * invisible U+200E/U+200F marks MMC's copy adds; lower-cases the hex. */
static int parse_thumbprint(parse_t *p, const char *path, const char *s, char out[65])
{
    size_t n = 0;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if (q[0] == 0xe2 && q[1] == 0x80 && (q[2] == 0x8e || q[2] == 0x8f)) {
            q += 2;
            continue;
        }
        if (*q == ':' || *q == ' ' || *q == '\t')
            continue;
        if (!isxdigit(*q) || n >= 64)
            return jsonc_fail(p->err, path,
                              "expected a hex SHA-1 (40 digits) or SHA-256 (64 digits) "
                              "thumbprint");
        out[n++] = (char)tolower(*q);
    }
    out[n] = '\0';
    if (n != 40 && n != 64)
        return jsonc_fail(p->err, path, "%zu hex digits: expected 40 (SHA-1) or 64 (SHA-256)", n);
    return 0;
}

static int parse_profile(parse_t *p, const cJSON *v, const char *path, cfg_profile_t *pr)
{
    static const char *const keys[] = {"url", "expect_thumbprint", NULL};
    const char *url, *thumb;
    char jp[256], uerr[256];
    if (!cJSON_IsObject(v))
        return jsonc_fail(p->err, path, "expected an object");
    if (jsonc_check_keys(p->err, v, path, keys) || jsonc_get_str(p->err, v, "url", path, &url) ||
        jsonc_get_str(p->err, v, "expect_thumbprint", path, &thumb))
        return -1;
    jsonc_join(jp, sizeof(jp), path, "url");
    if (url == NULL)
        return jsonc_fail(p->err, jp, "required");
    if (fs_url_parse(&pr->u, url, uerr) != 0)
        return jsonc_fail(p->err, jp, "%s", uerr);
    pr->url = fs_xstrdup(url);
    jsonc_join(jp, sizeof(jp), path, "expect_thumbprint");
    if (thumb && parse_thumbprint(p, jp, thumb, pr->expect_thumbprint))
        return -1;
    return 0;
}

/* Checks a name -> object map (trust_stores, profiles): present, non-empty, no name twice.
 * Sets *count to its number of entries. */
static int named_map(parse_t *p, const cJSON *root, const char *key, const cJSON **o, size_t *count)
{
    if (jsonc_get_obj(p->err, root, key, "", o) != 0)
        return -1;
    if (*o == NULL || (*o)->child == NULL)
        return jsonc_fail(p->err, key, "required: an object with at least one entry");
    if (jsonc_check_map_dups(p->err, *o, key))
        return -1;
    *count = 0;
    for (const cJSON *c = (*o)->child; c; c = c->next) {
        if (!valid_name(c->string))
            return jsonc_fail(p->err, key, "invalid name \"%.64s\" (use 1-48 of A-Z a-z 0-9 _ . -)",
                              c->string);
        (*count)++;
    }
    return 0;
}

static int parse_trust_stores(parse_t *p, const cJSON *root)
{
    cfg_t *c = p->cfg;
    const cJSON *o;
    size_t n;
    char jp[256];
    if (named_map(p, root, "trust_stores", &o, &n))
        return -1;
    c->trust = fs_xcalloc(n, sizeof(*c->trust));
    for (const cJSON *e = o->child; e; e = e->next) {
        cfg_trust_t *t = &c->trust[c->ntrust++];
        t->name = fs_xstrdup(e->string);
        jsonc_join(jp, sizeof(jp), "trust_stores", e->string);
        if (parse_trust(p, e, jp, t))
            return -1;
    }
    return 0;
}

static int parse_profiles(parse_t *p, const cJSON *root)
{
    cfg_t *c = p->cfg;
    const cJSON *o;
    size_t n;
    char jp[256];
    if (named_map(p, root, "profiles", &o, &n))
        return -1;
    c->profiles = fs_xcalloc(n, sizeof(*c->profiles));
    for (const cJSON *e = o->child; e; e = e->next) {
        cfg_profile_t *pr = &c->profiles[c->nprofiles++];
        pr->name = fs_xstrdup(e->string);
        jsonc_join(jp, sizeof(jp), "profiles", e->string);
        if (parse_profile(p, e, jp, pr))
            return -1;
    }
    return 0;
}

static long find_trust(const cfg_t *c, const char *name)
{
    for (size_t i = 0; i < c->ntrust; i++)
        if (strcmp(c->trust[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long find_profile(const cfg_t *c, const char *name)
{
    for (size_t i = 0; i < c->nprofiles; i++)
        if (strcmp(c->profiles[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* reference.profile defaults to the profile named "default", else the only profile;
 * reference.trust to the store named "default", else the only store. */
static int parse_reference(parse_t *p, const cJSON *root)
{
    static const char *const keys[] = {"profile", "trust", NULL};
    cfg_t *c = p->cfg;
    const cJSON *o;
    const char *prof, *trust;
    long i;
    if (jsonc_get_obj(p->err, root, "reference", "", &o) ||
        (o && jsonc_check_keys(p->err, o, "reference", keys)) ||
        jsonc_get_str(p->err, o, "profile", "reference", &prof) ||
        jsonc_get_str(p->err, o, "trust", "reference", &trust))
        return -1;
    if (prof != NULL) {
        if ((i = find_profile(c, prof)) < 0)
            return jsonc_fail(p->err, "reference.profile", "unknown profile \"%.64s\"", prof);
    } else if ((i = find_profile(c, "default")) < 0) {
        if (c->nprofiles != 1)
            return jsonc_fail(p->err, "reference.profile",
                              "required: there is no profile named \"default\" "
                              "and %zu profiles to choose from",
                              c->nprofiles);
        i = 0;
    }
    c->ref_profile_idx = (size_t)i;
    if (trust != NULL) {
        if ((i = find_trust(c, trust)) < 0)
            return jsonc_fail(p->err, "reference.trust", "unknown trust store \"%.64s\"", trust);
    } else if ((i = find_trust(c, "default")) < 0) {
        if (c->ntrust != 1)
            return jsonc_fail(p->err, "reference.trust",
                              "required: there is no trust store named "
                              "\"default\" and %zu to choose from",
                              c->ntrust);
        i = 0;
    }
    c->ref_trust_idx = (size_t)i;
    return 0;
}

/* ---- groups ------------------------------------------------------------------------------ */

static int parse_revocation(parse_t *p, const cJSON *g, const char *gpath, cfg_revocation_t *r)
{
    static const char *const keys[] = {"mode",      "scope",         "aia_fetch", "url_timeout_ms",
                                       "budget_ms", "max_crl_bytes", NULL};
    const cJSON *o;
    char path[256];
    int e;
    int64_t v;
    jsonc_join(path, sizeof(path), gpath, "revocation");
    if (jsonc_get_obj(p->err, g, "revocation", gpath, &o) ||
        (o && jsonc_check_keys(p->err, o, path, keys)))
        return -1;
    if (jsonc_get_enum(p->err, o, "mode", path, rev_mode_names, REV_MODE_COUNT, REV_STRICT, &e))
        return -1;
    r->mode = (rev_mode_t)e;
    if (jsonc_get_enum(p->err, o, "scope", path, rev_scope_names, REV_SCOPE_COUNT,
                       REV_SCOPE_CHAIN_EXCLUDE_ROOT, &e))
        return -1;
    r->scope = (rev_scope_t)e;
    if (jsonc_get_bool(p->err, o, "aia_fetch", path, true, &r->aia_fetch))
        return -1;
    if (jsonc_get_int(p->err, o, "url_timeout_ms", path, 1, 3600000, 15000, &v))
        return -1;
    r->url_timeout_ms = (uint32_t)v;
    if (jsonc_get_int(p->err, o, "budget_ms", path, 1, 3600000, 20000, &v))
        return -1;
    r->budget_ms = (uint32_t)v;
    if (jsonc_get_int(p->err, o, "max_crl_bytes", path, 1, (int64_t)(1ull << 30), 16 * MIB, &v))
        return -1;
    r->max_crl_bytes = (uint64_t)v;
    return 0;
}

static int parse_tls_version(parse_t *p, const cJSON *o, const char *key, const char *path, int def,
                             int *out)
{
    static const char *const ids[] = {
#define X(v, id, name) id,
        TLSC_VERSION_LIST(X)
#undef X
    };
    char jp[256], list[64];
    const cJSON *v = jsonc_member(o, key);
    *out = def;
    if (v == NULL)
        return 0;
    jsonc_join(jp, sizeof(jp), path, key);
    jsonc_choices(list, sizeof(list), ids, FS_ARRAY_SIZE(ids), 1);
    if (!cJSON_IsString(v))
        return jsonc_fail(p->err, jp, "expected a string (%s)", list);
    if ((*out = tlsc_version_parse(v->valuestring)) == 0)
        return jsonc_fail(p->err, jp, "unknown TLS version \"%.16s\" (expected %s)", v->valuestring,
                          list);
    return 0;
}

static int parse_tls(parse_t *p, const cJSON *g, const char *gpath, cfg_tls_t *t)
{
    static const char *const keys[] = {"min_version",  "max_version", "ciphers",
                                       "ciphersuites", "sni",         NULL};
    const cJSON *o;
    const char *ciphers, *suites;
    char path[256], jp[256];
    jsonc_join(path, sizeof(path), gpath, "tls");
    if (jsonc_get_obj(p->err, g, "tls", gpath, &o) ||
        (o && jsonc_check_keys(p->err, o, path, keys)) ||
        parse_tls_version(p, o, "min_version", path, TLS1_2_VERSION, &t->min_version) ||
        parse_tls_version(p, o, "max_version", path, TLS1_3_VERSION, &t->max_version) ||
        jsonc_get_str(p->err, o, "ciphers", path, &ciphers) ||
        jsonc_get_str(p->err, o, "ciphersuites", path, &suites) ||
        jsonc_get_bool(p->err, o, "sni", path, true, &t->sni))
        return -1;
    if (t->min_version > t->max_version) {
        jsonc_join(jp, sizeof(jp), path, "max_version");
        return jsonc_fail(p->err, jp, "\"%s\" is below min_version \"%s\"",
                          tlsc_version_id(t->max_version), tlsc_version_id(t->min_version));
    }
    if ((ciphers || suites) && p->tls_ctx == NULL &&
        (p->tls_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
        return jsonc_fail(p->err, path, "cannot create an OpenSSL context to check ciphers");
    ERR_clear_error();
    if (ciphers && SSL_CTX_set_cipher_list(p->tls_ctx, ciphers) != 1) {
        ERR_clear_error();
        jsonc_join(jp, sizeof(jp), path, "ciphers");
        return jsonc_fail(p->err, jp, "no cipher OpenSSL knows in \"%.120s\"", ciphers);
    }
    if (suites && SSL_CTX_set_ciphersuites(p->tls_ctx, suites) != 1) {
        ERR_clear_error();
        jsonc_join(jp, sizeof(jp), path, "ciphersuites");
        return jsonc_fail(p->err, jp,
                          "invalid TLS 1.3 ciphersuites \"%.120s\" (e.g. "
                          "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384)",
                          suites);
    }
    t->ciphers = ciphers ? fs_xstrdup(ciphers) : NULL;
    t->ciphersuites = suites ? fs_xstrdup(suites) : NULL;
    return 0;
}

static int parse_network(parse_t *p, const cJSON *g, const char *gpath, cfg_network_t *n)
{
    static const char *const keys[] = {"resolve", "proxy", "source_address", NULL};
    const cJSON *o, *res;
    const char *proxy, *src;
    char path[256], jp[512], rerr[256];
    jsonc_join(path, sizeof(path), gpath, "network");
    if (jsonc_get_obj(p->err, g, "network", gpath, &o) ||
        (o && jsonc_check_keys(p->err, o, path, keys)) ||
        jsonc_get_obj(p->err, o, "resolve", path, &res) ||
        jsonc_get_str(p->err, o, "proxy", path, &proxy) ||
        jsonc_get_str(p->err, o, "source_address", path, &src))
        return -1;
    for (const cJSON *c = res ? res->child : NULL; c; c = c->next) {
        snprintf(jp, sizeof(jp), "%s.resolve[\"%.100s\"]", path, c->string);
        if (!cJSON_IsString(c))
            return jsonc_fail(p->err, jp, "expected a string (an IP address)");
        if (fs_resolve_lookup(&n->resolve, c->string) != NULL)
            return jsonc_fail(p->err, jp, "duplicate name");
        char addr[64];
        const char *a = c->valuestring;
        size_t al = strlen(a);
        if (al >= 2 && al < sizeof(addr) + 2 && a[0] == '[' && a[al - 1] == ']') {
            memcpy(addr, a + 1, al - 2);
            addr[al - 2] = '\0';
            a = addr;
        }
        if (fs_resolve_add(&n->resolve, c->string, a, rerr) != 0)
            return jsonc_fail(p->err, jp, "\"%.64s\" is not an IP address", c->valuestring);
    }
    if (proxy != NULL) {
        fs_proxy_t px; /* its messages quote the URL with the password redacted */
        jsonc_join(jp, sizeof(jp), path, "proxy");
        if (fs_proxy_parse(&px, proxy, rerr) != 0)
            return jsonc_fail(p->err, jp, "%s", rerr);
        n->proxy = fs_xstrdup(proxy);
    }
    if (src != NULL) {
        jsonc_join(jp, sizeof(jp), path, "source_address");
        if (!fs_is_ip_literal(src))
            return jsonc_fail(p->err, jp, "\"%.64s\" is not an IP address", src);
        n->source_address = fs_xstrdup(src);
    }
    return 0;
}

static size_t group_name_hash(const char *name)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a over the lower-cased name */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        h ^= (uint64_t)tolower(*c);
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

/* 1 with *k set when an earlier group has this name (case-insensitive): a linear scan over
 * 65,535 groups would make parsing quadratic. */
static int group_name_seen(const parse_t *p, const char *name, size_t *k)
{
    size_t mask = p->group_nslot - 1;
    for (size_t s = group_name_hash(name) & mask; p->group_slot[s] != 0; s = (s + 1) & mask) {
        if (strcasecmp(p->cfg->groups[p->group_slot[s] - 1].name, name) == 0) {
            *k = p->group_slot[s] - 1;
            return 1;
        }
    }
    return 0;
}

static void group_name_add(parse_t *p, size_t gi)
{
    size_t mask = p->group_nslot - 1, s = group_name_hash(p->cfg->groups[gi].name) & mask;
    while (p->group_slot[s] != 0)
        s = (s + 1) & mask;
    p->group_slot[s] = gi + 1;
}

static int parse_group(parse_t *p, const cJSON *g, size_t gi, cfg_group_t *grp)
{
    static const char *const keys[] = {"name", "count",        "profile", "trust", "revocation",
                                       "tls",  "clock_skew_s", "network", NULL};
    cfg_t *c = p->cfg;
    char path[64], jp[128];
    const char *name, *prof, *trust;
    int64_t v;
    long i;
    snprintf(path, sizeof(path), "groups[%zu]", gi);
    if (!cJSON_IsObject(g))
        return jsonc_fail(p->err, path, "expected an object");
    if (jsonc_check_keys(p->err, g, path, keys) || jsonc_get_str(p->err, g, "name", path, &name))
        return -1;
    jsonc_join(jp, sizeof(jp), path, "name");
    if (name == NULL)
        return jsonc_fail(p->err, jp, "required");
    if (!valid_name(name))
        return jsonc_fail(p->err, jp, "\"%.64s\": use 1-48 of A-Z a-z 0-9 _ . -", name);
    size_t k;
    if (group_name_seen(p, name, &k))
        return jsonc_fail(p->err, jp, "duplicate group name \"%s\" (groups[%zu])", name, k);
    grp->name = fs_xstrdup(name);
    group_name_add(p, gi);
    jsonc_join(jp, sizeof(jp), path, "count");
    if (jsonc_member(g, "count") == NULL)
        return jsonc_fail(p->err, jp, "required");
    if (jsonc_get_int(p->err, g, "count", path, 1, CFG_MAX_GROUP_COUNT, 0, &v))
        return -1;
    grp->count = (uint32_t)v;
    if (jsonc_get_str(p->err, g, "profile", path, &prof) ||
        jsonc_get_str(p->err, g, "trust", path, &trust))
        return -1;
    i = (long)c->ref_profile_idx;
    if (prof != NULL && (i = find_profile(c, prof)) < 0) {
        jsonc_join(jp, sizeof(jp), path, "profile");
        return jsonc_fail(p->err, jp, "unknown profile \"%.64s\"", prof);
    }
    grp->profile_idx = (size_t)i;
    i = (long)c->ref_trust_idx;
    if (trust != NULL && (i = find_trust(c, trust)) < 0) {
        jsonc_join(jp, sizeof(jp), path, "trust");
        return jsonc_fail(p->err, jp, "unknown trust store \"%.64s\"", trust);
    }
    grp->trust_idx = (size_t)i;
    if (parse_revocation(p, g, path, &grp->revocation) || parse_tls(p, g, path, &grp->tls))
        return -1;
    if (jsonc_get_int(p->err, g, "clock_skew_s", path, -3153600000LL, 3153600000LL, 0,
                      &grp->clock_skew_s))
        return -1;
    return parse_network(p, g, path, &grp->network);
}

static int parse_groups(parse_t *p, const cJSON *root)
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
        c->ngroups++; /* so cfg_free() releases a half-parsed group */
        if (parse_group(p, g, c->ngroups - 1, &c->groups[c->ngroups - 1]) != 0)
            return -1;
        c->total_endpoints += c->groups[c->ngroups - 1].count;
    }
    if (c->total_endpoints > CFG_MAX_TOTAL_ENDPOINTS)
        return jsonc_fail(p->err, "groups", "%llu endpoints in all: more than the limit of %llu",
                          (unsigned long long)c->total_endpoints, CFG_MAX_TOTAL_ENDPOINTS);
    return 0;
}

/* ---- the document ------------------------------------------------------------------------ */

static int parse_root(parse_t *p, const cJSON *root)
{
    static const char *const keys[] = {"vantage",
                                       "listen",
                                       "api_token_file",
                                       "interval_s",
                                       "jitter",
                                       "shard",
                                       "event_log",
                                       "expiring_soon_days",
                                       "crl_expiring_soon_hours",
                                       "limits",
                                       "cache",
                                       "trust_stores",
                                       "profiles",
                                       "reference",
                                       "groups",
                                       NULL};
    cfg_t *c = p->cfg;
    const char *s;
    int64_t v;
    if (jsonc_check_keys(p->err, root, "", keys))
        return -1;

    if (jsonc_get_str(p->err, root, "vantage", "", &s))
        return -1;
    char host[256] = "";
    if (s == NULL) {
        if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
            fs_strlcpy(host, "localhost", sizeof(host));
        s = host;
    } else {
        if (strlen(s) > 128)
            return jsonc_fail(p->err, "vantage", "longer than 128 characters");
        for (const char *q = s; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f || *q == '"' || *q == '\\')
                return jsonc_fail(p->err, "vantage",
                                  "control characters, quotes and backslashes are not "
                                  "allowed (it becomes a metrics label)");
    }
    c->vantage = fs_xstrdup(s);

    if (jsonc_get_str(p->err, root, "listen", "", &s) || parse_listen(p, s ? s : "127.0.0.1:8787"))
        return -1;
    if (jsonc_get_str(p->err, root, "api_token_file", "", &s) ||
        (s && cfg__token_load(p->cfg, p->base_dir, s, p->err)))
        return -1;
    if (jsonc_get_num(p->err, root, "interval_s", "", 0, 1, 604800, 60, &c->interval_s) ||
        jsonc_get_num(p->err, root, "jitter", "", 0, 0, 1, 0.2, &c->jitter))
        return -1;
    if (jsonc_get_str(p->err, root, "shard", "", &s))
        return -1;
    if (s == NULL)
        s = "0/1";
    if (cfg_parse_shard(s, &c->shard_index, &c->shard_count) != 0)
        return jsonc_fail(p->err, "shard", "\"%.32s\": expected \"i/n\" with 0 <= i < n <= %u", s,
                          CFG_MAX_SHARDS);
    if (jsonc_get_str(p->err, root, "event_log", "", &s) ||
        (s && cfg__event_log_check(p->cfg, p->base_dir, s, p->err)))
        return -1;
    if (jsonc_get_int(p->err, root, "expiring_soon_days", "", 0, 3650, 30, &v))
        return -1;
    c->expiring_soon_days = (uint32_t)v;
    if (jsonc_get_int(p->err, root, "crl_expiring_soon_hours", "", 0, 8760, 24, &v))
        return -1;
    c->crl_expiring_soon_hours = (uint32_t)v;
    if (parse_limits(p, root) || parse_cache(p, root))
        return -1;
    if (parse_trust_stores(p, root) || parse_profiles(p, root))
        return -1;
    if (parse_reference(p, root))
        return -1;
    return parse_groups(p, root);
}

int cfg_parse(cfg_t **out, const char *json, size_t len, const char *base_dir, char err[256])
{
    parse_t p = {.err = err};
    cJSON *root = NULL;
    char *cwd = NULL, *base = NULL;
    int rc = -1;
    *out = NULL;
    err[0] = '\0';
    p.cfg = fs_xcalloc(1, sizeof(*p.cfg));

    if (base_dir == NULL || base_dir[0] != '/') {
        cwd = getcwd(NULL, 0);
        if (cwd == NULL) {
            jsonc_fail(err, "", "cannot get the current directory: %s", strerror(errno));
            goto out;
        }
    }
    base = cfg__path_resolve(cwd ? cwd : "/", base_dir ? base_dir : ".");
    p.base_dir = p.cfg->base_dir = base;

    if (jsonc_parse(&root, json, len, err) != 0 || parse_root(&p, root) != 0)
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

void cfg_free(cfg_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->ntrust; i++) {
        free(c->trust[i].name);
        free(c->trust[i].ca_file);
        free(c->trust[i].ca_dir);
        free(c->trust[i].intermediates_file);
    }
    free(c->trust);
    for (size_t i = 0; i < c->nprofiles; i++) {
        free(c->profiles[i].name);
        free(c->profiles[i].url);
    }
    free(c->profiles);
    for (size_t i = 0; i < c->ngroups; i++) {
        cfg_group_t *g = &c->groups[i];
        free(g->name);
        free(g->tls.ciphers);
        free(g->tls.ciphersuites);
        fs_resolve_free(&g->network.resolve);
        free(g->network.proxy);
        free(g->network.source_address);
    }
    free(c->groups);
    free(c->base_dir);
    free(c->vantage);
    free(c->api_token_file);
    free(c->api_token);
    free(c->event_log);
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

/* ---- reload comparison ------------------------------------------------------------------- */

static int str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int profile_eq(const cfg_profile_t *a, const cfg_profile_t *b)
{
    return strcmp(a->u.scheme, b->u.scheme) == 0 && strcasecmp(a->u.host, b->u.host) == 0 &&
           a->u.port == b->u.port && strcmp(a->u.path, b->u.path) == 0 &&
           strcmp(a->expect_thumbprint, b->expect_thumbprint) == 0;
}

static int trust_eq(const cfg_trust_t *a, const cfg_trust_t *b)
{
    return memcmp(a->digest, b->digest, sizeof(a->digest)) == 0 && !a->ca_file == !b->ca_file &&
           !a->ca_dir == !b->ca_dir && !a->intermediates_file == !b->intermediates_file;
}

/* Same DNS overrides, in any order. */
static int resolve_eq(const fs_resolve_t *a, const fs_resolve_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const char *addr = fs_resolve_lookup(b, a->e[i].name);
        if (addr == NULL || strcmp(addr, a->e[i].addr) != 0)
            return 0;
    }
    return 1;
}

int cfg_group_equal(const cfg_t *a, size_t ia, const cfg_t *b, size_t ib)
{
    if (a == NULL || b == NULL || ia >= a->ngroups || ib >= b->ngroups)
        return 0;
    const cfg_group_t *ga = &a->groups[ia], *gb = &b->groups[ib];
    const cfg_limits_t *la = &a->limits, *lb = &b->limits;
    const cfg_revocation_t *ra = &ga->revocation, *rb = &gb->revocation;
    const cfg_tls_t *ta = &ga->tls, *tb = &gb->tls;
    return strcmp(ga->name, gb->name) == 0 && ga->count == gb->count &&
           profile_eq(&a->profiles[ga->profile_idx], &b->profiles[gb->profile_idx]) &&
           trust_eq(&a->trust[ga->trust_idx], &b->trust[gb->trust_idx]) && ra->mode == rb->mode &&
           ra->scope == rb->scope && ra->aia_fetch == rb->aia_fetch &&
           ra->url_timeout_ms == rb->url_timeout_ms && ra->budget_ms == rb->budget_ms &&
           ra->max_crl_bytes == rb->max_crl_bytes && ta->min_version == tb->min_version &&
           ta->max_version == tb->max_version && str_eq(ta->ciphers, tb->ciphers) &&
           str_eq(ta->ciphersuites, tb->ciphersuites) && ta->sni == tb->sni &&
           ga->clock_skew_s == gb->clock_skew_s &&
           resolve_eq(&ga->network.resolve, &gb->network.resolve) &&
           str_eq(ga->network.proxy, gb->network.proxy) &&
           str_eq(ga->network.source_address, gb->network.source_address) &&
           /* global settings that change a probe's outcome */
           la->probe_timeout_ms == lb->probe_timeout_ms &&
           la->connect_timeout_ms == lb->connect_timeout_ms &&
           la->tls_timeout_ms == lb->tls_timeout_ms &&
           la->request_timeout_ms == lb->request_timeout_ms &&
           a->expiring_soon_days == b->expiring_soon_days &&
           a->crl_expiring_soon_hours == b->crl_expiring_soon_hours &&
           profile_eq(&a->profiles[a->ref_profile_idx], &b->profiles[b->ref_profile_idx]) &&
           trust_eq(&a->trust[a->ref_trust_idx], &b->trust[b->ref_trust_idx]);
}
