/* test_config_table.c - the schema tables decide what the daemon compares: every key of a group
 * is part of reload equality, the shared TLS context follows the TLSCTX rows, and a reload
 * reports exactly the restart-only keys. Each key is changed alone and the verdicts checked. */
#include "daemon/config.h"
#include "daemon/config_table.h"
#include "probes/tlsc.h"
#include "probes/util.h"
#include "tests/test.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static char tmp[64]; /* scratch directory: pki/, token, logs/ */

/* Keys of a group that may change without resetting the group's state. None today: a key
 * that goes here must say why its change cannot change any probe's verdict. */
static const char *const group_not_probe[] = {NULL};
/* What policy_tls_ctx() builds a shared context from. A key that changes the SSL_CTX or the
 * X509_STORE belongs here and must be flagged CFG_F_TLSCTX. */
static const char *const group_tlsctx[] = {
    "groups[].trust",       "groups[].tls.min_version",  "groups[].tls.max_version",
    "groups[].tls.ciphers", "groups[].tls.ciphersuites", NULL};
/* The document's keys that decide every group's probes (docs/CONFIG.md, Reloading). */
static const char *const root_probe[] = {"expiring_soon_days",
                                         "crl_expiring_soon_hours",
                                         "limits.probe_timeout_ms",
                                         "limits.connect_timeout_ms",
                                         "limits.tls_timeout_ms",
                                         "limits.request_timeout_ms",
                                         "reference",
                                         "targets",
                                         NULL};
/* Read only at start: a reload warns that they wait for a restart. */
static const char *const root_restart[] = {"listen",
                                           "api_token_file",
                                           "cache.crl_max_age_s",
                                           "cache.crl_max_bytes_total",
                                           "state_db",
                                           "api.threads",
                                           "api.max_connections",
                                           "api.max_connections_per_ip",
                                           "api.health_reserve",
                                           "api.header_timeout_s",
                                           "api.body_timeout_s",
                                           "api.send_timeout_s",
                                           "api.idle_timeout_s",
                                           "limits.fetch_inflight_bytes",
                                           NULL};
/* The maps the groups name; compared through the groups' references, not as keys. */
static const char *const root_structural[] = {"trust_stores", "profiles", "groups", NULL};

/* Another valid value for the keys whose type gives none (strings, custom keys, required keys),
 * as JSON. A key without one fails the test: add it here. */
static const struct {
    const char *key;
    const char *json;
} alternatives[] = {
    {"groups[].name", "\"hq2\""},
    {"groups[].count", "6"},
    {"groups[].profile", "\"other\""},
    {"groups[].trust", "\"other\""},
    {"groups[].tls.ciphers", "\"HIGH:!aNULL\""},
    {"groups[].tls.ciphersuites", "\"TLS_AES_128_GCM_SHA256\""},
    {"groups[].network.resolve", "{\"ns\": \"10.0.0.1\"}"},
    {"groups[].network.proxy", "\"http://proxy:3128\""},
    {"groups[].network.source_address", "\"127.0.0.1\""},
    {"groups[].network.ldap", "\"dc1.corp.example:389\""},
    {"vantage", "\"elsewhere\""},
    {"listen", "\"127.0.0.1:9999\""},
    {"api_token_file", "\"token\""},
    {"shard", "\"1/2\""},
    {"event_log", "\"logs/events.log\""},
    {"state_db", "\"state/fleet.db\""},
    {"reference", "{\"profile\": \"other\", \"trust\": \"corp\"}"},
    {"targets", "{\"ns\": {\"url\": \"https://ns:8443/\", \"trust\": \"corp\"}}"},
};

static const char base_doc[] = "{\"trust_stores\": {\"corp\": {\"ca_file\": \"pki/root.pem\"}, "
                               "\"other\": {\"ca_file\": \"pki/other.pem\"}}, "
                               "\"profiles\": {\"default\": {\"url\": \"https://ns/\"}, "
                               "\"other\": {\"url\": \"https://ns/other\"}}, "
                               "\"reference\": {\"profile\": \"default\", \"trust\": \"corp\"}, "
                               "\"groups\": [{\"name\": \"hq\", \"count\": 5}]}";

static int listed(const char *const *list, const char *key)
{
    for (; *list != NULL; list++)
        if (strcmp(*list, key) == 0)
            return 1;
    return 0;
}

static void write_cert(const char *rel, const char *cn)
{
    char p[PATH_MAX];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASSERT(k != NULL && x != NULL);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k);
    ASSERT(X509_sign(x, k, EVP_sha256()) > 0);
    snprintf(p, sizeof(p), "%s/%s", tmp, rel);
    FILE *f = fopen(p, "w");
    ASSERT(f != NULL && PEM_write_X509(f, x) == 1 && fclose(f) == 0);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void setup(void)
{
    char p[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "/tmp/fleetscan-cfgtab-XXXXXX");
    ASSERT(mkdtemp(tmp) != NULL);
    snprintf(p, sizeof(p), "%s/pki", tmp);
    ASSERT(mkdir(p, 0755) == 0);
    snprintf(p, sizeof(p), "%s/logs", tmp);
    ASSERT(mkdir(p, 0755) == 0);
    write_cert("pki/root.pem", "Corp Root");
    write_cert("pki/other.pem", "Other Root");
    snprintf(p, sizeof(p), "%s/token", tmp);
    FILE *f = fopen(p, "w");
    ASSERT(f != NULL && fputs("s3cret\n", f) >= 0 && fclose(f) == 0);
    ASSERT(chmod(p, 0600) == 0);
}

static cfg_t *parse_ok(const char *json)
{
    char err[256];
    cfg_t *c = NULL;
    if (cfg_parse(&c, json, strlen(json), tmp, err) != 0) {
        fprintf(stderr, "unexpected error: %s\nin: %s\n", err, json);
        abort();
    }
    return c;
}

/* A value other than the default for a key, as JSON, into buf; 0 when the type gives none. */
static int other_value(const cfg_key_t *k, const char *key, char *buf, size_t n)
{
    for (size_t i = 0; i < FS_ARRAY_SIZE(alternatives); i++)
        if (strcmp(alternatives[i].key, key) == 0) {
            snprintf(buf, n, "%s", alternatives[i].json);
            return 1;
        }
    switch (k->type) {
    case CFG_T_U32:
    case CFG_T_U64:
    case CFG_T_I64:
        snprintf(buf, n, "%.0f", k->def + 1 <= k->max ? k->def + 1 : k->def - 1);
        return !(k->flags & CFG_F_REQUIRED);
    case CFG_T_NUM:
        snprintf(buf, n, "%.17g", (k->def + k->max) / 2);
        return 1;
    case CFG_T_BOOL:
        snprintf(buf, n, "%s", k->def != 0 ? "false" : "true");
        return 1;
    case CFG_T_ENUM:
        snprintf(buf, n, "\"%s\"", k->names[((size_t)k->def + 1) % k->nnames]);
        return 1;
    case CFG_T_TLS_VERSION: { /* one step towards the middle keeps min <= max */
        const char *id = tlsc_version_id((int)k->def - 1);
        snprintf(buf, n, "\"%s\"", id != NULL ? id : tlsc_version_id((int)k->def + 1));
        return 1;
    }
    default:
        return 0;
    }
}

/* The default of a scalar key written out, as JSON; 0 when it has none to write. */
static int default_value(const cfg_key_t *k, char *buf, size_t n)
{
    if (k->flags & CFG_F_REQUIRED)
        return 0;
    switch (k->type) {
    case CFG_T_U32:
    case CFG_T_U64:
    case CFG_T_I64:
        snprintf(buf, n, "%.0f", k->def);
        return 1;
    case CFG_T_NUM:
        snprintf(buf, n, "%.17g", k->def);
        return 1;
    case CFG_T_BOOL:
        snprintf(buf, n, "%s", k->def != 0 ? "true" : "false");
        return 1;
    case CFG_T_ENUM:
        snprintf(buf, n, "\"%s\"", k->names[(size_t)k->def]);
        return 1;
    case CFG_T_TLS_VERSION:
        snprintf(buf, n, "\"%s\"", tlsc_version_id((int)k->def));
        return 1;
    default:
        return 0;
    }
}

/* base_doc with nest[0].nest[1]...key set to value (JSON) in the document (group 0: in_group).
 * Returns a new string. */
static char *doc_with(int in_group, const char *const *nest, size_t depth, const char *key,
                      const char *value)
{
    cJSON *doc = cJSON_Parse(base_doc), *v = cJSON_Parse(value);
    ASSERT(doc != NULL && v != NULL);
    cJSON *o = in_group ? cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "groups"), 0) : doc;
    for (size_t i = 0; i < depth; i++) {
        cJSON *sub = cJSON_GetObjectItem(o, nest[i]);
        if (sub == NULL)
            sub = cJSON_AddObjectToObject(o, nest[i]);
        o = sub;
    }
    if (cJSON_GetObjectItem(o, key) != NULL)
        cJSON_ReplaceItemInObject(o, key, v);
    else
        cJSON_AddItemToObject(o, key, v);
    char *s = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return s;
}

typedef struct walk_s {
    int in_group;
    cfg_t *base;
    const char *nest[4];
    size_t depth;
    size_t leaves, probe, tlsctx, restart;
} walk_t;

static void on_change(void *arg, const char *key)
{
    char *seen = arg;
    snprintf(seen, 256, "%s", key);
}

/* Changes one key away from base_doc and checks each comparison against the key's flags. */
static void check_key(walk_t *w, const cfg_key_t *k, const char *key)
{
    char value[256], seen[256] = "";
    if (!w->in_group && listed(root_structural, key))
        return;
    if (!other_value(k, key, value, sizeof(value))) {
        fprintf(stderr, "no other value for \"%s\" (a %s): add one to alternatives[]\n", key,
                cfg_type_names[k->type]);
        abort();
    }
    char *json = doc_with(w->in_group, w->nest, w->depth, k->name, value);
    cfg_t *c = parse_ok(json);
    int probe = (k->flags & CFG_F_PROBE) != 0, tlsctx = (k->flags & CFG_F_TLSCTX) != 0;
    int restart = (k->flags & CFG_F_RESTART) != 0;
    fprintf(stderr, "   %-34s %-10s probe=%d tlsctx=%d restart=%d\n", key, value, probe, tlsctx,
            restart);
    w->leaves++;
    w->probe += (size_t)probe;
    w->tlsctx += (size_t)tlsctx;
    w->restart += (size_t)restart;

    /* the flags are the documented ones */
    if (w->in_group) {
        ASSERT_EQ(probe, !listed(group_not_probe, key));
        ASSERT_EQ(tlsctx, listed(group_tlsctx, key));
        ASSERT(!restart);
    } else {
        ASSERT_EQ(probe, listed(root_probe, key));
        ASSERT_EQ(restart, listed(root_restart, key));
        ASSERT(!tlsctx);
    }
    /* and every comparison follows them */
    ASSERT_EQ(cfg_group_equal(w->base, 0, c, 0), !probe);
    ASSERT_EQ(cfg_group_equal(c, 0, w->base, 0), !probe);
    ASSERT_EQ(cfg_tls_ctx_equal(w->base, 0, c, 0), !tlsctx);
    ASSERT_EQ(cfg_restart_changes(w->base, c, on_change, seen), restart);
    if (restart)
        ASSERT_STREQ(seen, key);
    cfg_free(c);
    free(json);

    /* the default written out is the default left out */
    if (default_value(k, value, sizeof(value))) {
        json = doc_with(w->in_group, w->nest, w->depth, k->name, value);
        c = parse_ok(json);
        ASSERT(cfg_group_equal(w->base, 0, c, 0));
        ASSERT(cfg_tls_ctx_equal(w->base, 0, c, 0));
        ASSERT_EQ(cfg_restart_changes(w->base, c, NULL, NULL), 0);
        cfg_free(c);
        free(json);
    }
}

static void walk(walk_t *w, const cfg_section_t *s)
{
    for (size_t i = 0; i < s->nkeys; i++) {
        const cfg_key_t *k = &s->keys[i];
        char key[128];
        snprintf(key, sizeof(key), "%s%s%s", s->path, *s->path ? "." : "", k->name);
        if (k->type == CFG_T_SECTION) {
            ASSERT(k->flags == 0 && w->depth < FS_ARRAY_SIZE(w->nest));
            w->nest[w->depth++] = k->name;
            walk(w, k->sub);
            w->depth--;
        } else {
            check_key(w, k, key);
        }
    }
}

/* Every key of a group, changed alone, makes the group start over (reload equality), and only
 * the TLSCTX keys give it another TLS context. */
static void test_group_keys(void)
{
    walk_t w = {.in_group = 1, .base = parse_ok(base_doc)};
    walk(&w, &cfg__group_section);
    fprintf(stderr, "   %zu group keys: %zu probe, %zu tls context\n", w.leaves, w.probe, w.tlsctx);
    ASSERT(w.leaves >= 19);
    ASSERT_EQ(w.tlsctx, 5);
    cfg_free(w.base);
}

/* The document's keys: the probe-outcome ones reset every group, the restart-only ones are
 * reported by name, the others change neither. */
static void test_root_keys(void)
{
    walk_t w = {.in_group = 0, .base = parse_ok(base_doc)};
    walk(&w, &cfg__root_section);
    fprintf(stderr, "   %zu document keys: %zu probe, %zu restart-only\n", w.leaves, w.probe,
            w.restart);
    ASSERT_EQ(w.probe, 8);
    ASSERT_EQ(w.restart, 14);
    cfg_free(w.base);
}

/* Within one configuration (what fleet.c's find_ctx asks): groups share a context unless a
 * TLSCTX key differs; the same trust content under two names is the same trust. */
static void test_tls_ctx_sharing(void)
{
    cfg_t *c =
        parse_ok("{\"trust_stores\": {\"a\": {\"ca_file\": \"pki/root.pem\"}, \"b\": {\"ca_file\": "
                 "\"pki/./root.pem\"}, \"o\": {\"ca_file\": \"pki/other.pem\"}}, \"profiles\": "
                 "{\"default\": {\"url\": \"https://ns/\"}, \"x\": {\"url\": \"https://x/\"}}, "
                 "\"reference\": {\"trust\": \"a\"}, \"groups\": ["
                 "{\"name\": \"g0\", \"count\": 1},"
                 "{\"name\": \"g1\", \"count\": 9, \"profile\": \"x\", \"tls\": {\"sni\": false}, "
                 "\"revocation\": {\"mode\": \"off\"}, \"clock_skew_s\": 60},"
                 "{\"name\": \"g2\", \"count\": 1, \"trust\": \"b\"},"
                 "{\"name\": \"g3\", \"count\": 1, \"trust\": \"o\"},"
                 "{\"name\": \"g4\", \"count\": 1, \"tls\": {\"ciphers\": \"HIGH\"}},"
                 "{\"name\": \"g5\", \"count\": 1, \"tls\": {\"max_version\": \"1.2\"}}]}");
    ASSERT(cfg_tls_ctx_equal(c, 0, c, 0));
    ASSERT(cfg_tls_ctx_equal(c, 0, c, 1));
    ASSERT(!cfg_group_equal(c, 0, c, 1));
    ASSERT(cfg_tls_ctx_equal(c, 0, c, 2));
    ASSERT(!cfg_tls_ctx_equal(c, 0, c, 3));
    ASSERT(!cfg_tls_ctx_equal(c, 0, c, 4));
    ASSERT(!cfg_tls_ctx_equal(c, 0, c, 5));
    ASSERT(!cfg_tls_ctx_equal(c, 0, c, 6)); /* out of range */
    ASSERT(!cfg_tls_ctx_equal(NULL, 0, c, 0));
    cfg_free(c);
}

int main(void)
{
    setup();
    RUN(test_group_keys);
    RUN(test_root_keys);
    RUN(test_tls_ctx_sharing);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    ASSERT(system(cmd) == 0);
    fprintf(stderr, "ok\n");
    return 0;
}
