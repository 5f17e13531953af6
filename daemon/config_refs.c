/* config_refs.c - the configuration's named maps, trust stores and profiles, and the keys that
 * name them (reference, groups[].trust, groups[].profile): parsed, looked up, compared by content.
 */
#include "daemon/config_refs.h"
#include "daemon/config_files.h"
#include "daemon/jsonc.h"
#include "probes/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* [A-Za-z0-9_.-]{1,48}: group, trust store and profile names (they appear in URLs, metrics
 * labels and endpoint ids). */
int cfg__valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 48)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

/* ---- trust stores and profiles ----------------------------------------------------------- */

static int parse_trust(cfg__parse_t *p, const cJSON *v, const char *path, cfg_trust_t *t)
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
static int parse_thumbprint(cfg__parse_t *p, const char *path, const char *s, char out[65])
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

static int parse_profile(cfg__parse_t *p, const cJSON *v, const char *path, cfg_profile_t *pr)
{
    static const char *const keys[] = {"url", "expect_thumbprint", "target", NULL};
    const char *url, *thumb, *target;
    char jp[256], uerr[256];
    if (!cJSON_IsObject(v))
        return jsonc_fail(p->err, path, "expected an object");
    if (jsonc_check_keys(p->err, v, path, keys) || jsonc_get_str(p->err, v, "url", path, &url) ||
        jsonc_get_str(p->err, v, "expect_thumbprint", path, &thumb) ||
        jsonc_get_str(p->err, v, "target", path, &target))
        return -1;
    if (target != NULL)
        pr->target_name = fs_xstrdup(target);
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
static int named_map(cfg__parse_t *p, const cJSON *root, const char *key, const cJSON **o,
                     size_t *count)
{
    if (jsonc_get_obj(p->err, root, key, "", o) != 0)
        return -1;
    if (*o == NULL || (*o)->child == NULL)
        return jsonc_fail(p->err, key, "required: an object with at least one entry");
    if (jsonc_check_map_dups(p->err, *o, key))
        return -1;
    *count = 0;
    for (const cJSON *c = (*o)->child; c; c = c->next) {
        if (!cfg__valid_name(c->string))
            return jsonc_fail(p->err, key, "invalid name \"%.64s\" (use 1-48 of A-Z a-z 0-9 _ . -)",
                              c->string);
        (*count)++;
    }
    return 0;
}

int cfg__trust_stores_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base)
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

int cfg__profiles_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base)
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
int cfg__reference_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base)
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

void cfg__trust_stores_release(void *base)
{
    cfg_t *c = base;
    for (size_t i = 0; i < c->ntrust; i++) {
        free(c->trust[i].name);
        free(c->trust[i].ca_file);
        free(c->trust[i].ca_dir);
        free(c->trust[i].intermediates_file);
    }
    free(c->trust);
}

void cfg__profiles_release(void *base)
{
    cfg_t *c = base;
    for (size_t i = 0; i < c->nprofiles; i++) {
        free(c->profiles[i].name);
        free(c->profiles[i].url);
        free(c->profiles[i].target_name);
    }
    free(c->profiles);
}

/* ---- targets ------------------------------------------------------------------------------ */

static long find_target(const cfg_t *c, const char *name)
{
    for (size_t i = 0; i < c->ntargets; i++)
        if (strcmp(c->targets[i].name, name) == 0)
            return (long)i;
    return -1;
}

static int parse_target(cfg__parse_t *p, const cJSON *v, const char *path, cfg_target_t *t)
{
    static const char *const keys[] = {"url", "trust", NULL};
    const char *url, *trust;
    char jp[256], uerr[256];
    long i;
    if (!cJSON_IsObject(v))
        return jsonc_fail(p->err, path, "expected an object");
    if (jsonc_check_keys(p->err, v, path, keys) || jsonc_get_str(p->err, v, "url", path, &url) ||
        jsonc_get_str(p->err, v, "trust", path, &trust))
        return -1;
    jsonc_join(jp, sizeof(jp), path, "url");
    if (url == NULL)
        return jsonc_fail(p->err, jp, "required");
    if (fs_url_parse(&t->binding.u, url, uerr) != 0)
        return jsonc_fail(p->err, jp, "%s", uerr);
    t->binding.u.path[0] = '\0'; /* a binding: the reference only completes the handshake */
    t->binding.url = fs_xstrdup(url);
    t->binding.name = fs_xstrdup(t->name);
    t->trust_idx = p->cfg->ref_trust_idx;
    if (trust != NULL) {
        if ((i = find_trust(p->cfg, trust)) < 0) {
            jsonc_join(jp, sizeof(jp), path, "trust");
            return jsonc_fail(p->err, jp, "unknown trust store \"%.64s\"", trust);
        }
        t->trust_idx = (size_t)i;
    }
    return 0;
}

/* The target of a profile (SPEC §5): its "target", else the one with the same scheme, host and
 * port, else the one with the same host, else the only one. */
static int assign_target(cfg__parse_t *p, cfg_profile_t *pr)
{
    const cfg_t *c = p->cfg;
    char jp[256];
    long i = -1;
    jsonc_join(jp, sizeof(jp), "profiles", pr->name);
    if (pr->target_name != NULL) {
        if ((i = find_target(c, pr->target_name)) < 0) {
            char kp[300];
            jsonc_join(kp, sizeof(kp), jp, "target");
            return jsonc_fail(p->err, kp, "unknown target \"%.64s\"", pr->target_name);
        }
    }
    for (size_t k = 0; i < 0 && k < c->ntargets; k++) {
        const fs_url_t *t = &c->targets[k].binding.u;
        if (strcmp(t->scheme, pr->u.scheme) == 0 && strcasecmp(t->host, pr->u.host) == 0 &&
            t->port == pr->u.port)
            i = (long)k;
    }
    for (size_t k = 0; i < 0 && k < c->ntargets; k++)
        if (strcasecmp(c->targets[k].binding.u.host, pr->u.host) == 0)
            i = (long)k;
    if (i < 0 && c->ntargets == 1)
        i = 0;
    if (i < 0)
        return jsonc_fail(p->err, jp, "no target has the host \"%.64s\": name one with \"target\"",
                          pr->u.host);
    pr->target_idx = (size_t)i;
    return 0;
}

/* After "reference": "targets", or the single target the reference defines (name "reference",
 * its profile's URL, path and pin, its trust store: a configuration without targets probes
 * exactly as before). Then every profile gets its target. */
int cfg__targets_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base)
{
    cfg_t *c = p->cfg;
    const cJSON *o = jsonc_member(root, "targets");
    size_t n;
    char jp[256];
    if (o != NULL) {
        if (named_map(p, root, "targets", &o, &n))
            return -1;
        c->targets = fs_xcalloc(n, sizeof(*c->targets));
        for (const cJSON *e = o->child; e; e = e->next) {
            cfg_target_t *t = &c->targets[c->ntargets++];
            t->name = fs_xstrdup(e->string);
            jsonc_join(jp, sizeof(jp), "targets", e->string);
            if (parse_target(p, e, jp, t))
                return -1;
        }
    } else {
        const cfg_profile_t *rp = &c->profiles[c->ref_profile_idx];
        cfg_target_t *t = c->targets = fs_xcalloc(1, sizeof(*c->targets));
        c->ntargets = 1;
        t->name = fs_xstrdup("reference");
        t->binding = *rp;
        t->binding.name = fs_xstrdup(rp->name);
        t->binding.url = fs_xstrdup(rp->url);
        t->binding.target_name = NULL;
        t->trust_idx = c->ref_trust_idx;
    }
    for (size_t i = 0; i < c->nprofiles; i++)
        if (assign_target(p, &c->profiles[i]))
            return -1;
    return 0;
}

void cfg__targets_release(void *base)
{
    cfg_t *c = base;
    for (size_t i = 0; i < c->ntargets; i++) {
        free(c->targets[i].name);
        free(c->targets[i].binding.name);
        free(c->targets[i].binding.url);
    }
    free(c->targets);
}

/* A profile's content counts, not its name: the same URL and pin probe alike. */
static int profile_eq(const cfg_profile_t *a, const cfg_profile_t *b)
{
    return strcmp(a->u.scheme, b->u.scheme) == 0 && strcasecmp(a->u.host, b->u.host) == 0 &&
           a->u.port == b->u.port && strcmp(a->u.path, b->u.path) == 0 &&
           strcmp(a->expect_thumbprint, b->expect_thumbprint) == 0;
}

/* A trust store's content counts (the bytes of its files), not its name or paths. */
static int trust_eq(const cfg_trust_t *a, const cfg_trust_t *b)
{
    return memcmp(a->digest, b->digest, sizeof(a->digest)) == 0 && !a->ca_file == !b->ca_file &&
           !a->ca_dir == !b->ca_dir && !a->intermediates_file == !b->intermediates_file;
}

int cfg__reference_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    return profile_eq(&a->profiles[a->ref_profile_idx], &b->profiles[b->ref_profile_idx]) &&
           trust_eq(&a->trust[a->ref_trust_idx], &b->trust[b->ref_trust_idx]);
}

int cfg_target_equal(const cfg_t *a, size_t ia, const cfg_t *b, size_t ib)
{
    const cfg_target_t *ta = &a->targets[ia], *tb = &b->targets[ib];
    return strcmp(ta->name, tb->name) == 0 && profile_eq(&ta->binding, &tb->binding) &&
           trust_eq(&a->trust[ta->trust_idx], &b->trust[tb->trust_idx]);
}

int cfg__targets_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    if (a->ntargets != b->ntargets)
        return 0;
    for (size_t i = 0; i < a->ntargets; i++)
        if (!cfg_target_equal(a, i, b, i))
            return 0;
    return 1;
}

/* ---- a group's references ---------------------------------------------------------------- */

int cfg__group_profile_parse(cfg__parse_t *p, const cJSON *g, const char *path, void *base)
{
    cfg_group_t *grp = base;
    const char *name;
    char jp[256];
    long i = (long)p->cfg->ref_profile_idx;
    if (jsonc_get_str(p->err, g, "profile", path, &name) != 0)
        return -1;
    if (name != NULL && (i = find_profile(p->cfg, name)) < 0) {
        jsonc_join(jp, sizeof(jp), path, "profile");
        return jsonc_fail(p->err, jp, "unknown profile \"%.64s\"", name);
    }
    grp->profile_idx = (size_t)i;
    return 0;
}

int cfg__group_profile_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    const cfg_group_t *ga = ba, *gb = bb;
    const cfg_profile_t *pa = &a->profiles[ga->profile_idx], *pb = &b->profiles[gb->profile_idx];
    /* the profile's target decides its profile_mismatch verdicts: part of the profile */
    return profile_eq(pa, pb) && cfg_target_equal(a, pa->target_idx, b, pb->target_idx);
}

int cfg__group_trust_parse(cfg__parse_t *p, const cJSON *g, const char *path, void *base)
{
    cfg_group_t *grp = base;
    const char *name;
    char jp[256];
    long i = (long)p->cfg->ref_trust_idx;
    if (jsonc_get_str(p->err, g, "trust", path, &name) != 0)
        return -1;
    if (name != NULL && (i = find_trust(p->cfg, name)) < 0) {
        jsonc_join(jp, sizeof(jp), path, "trust");
        return jsonc_fail(p->err, jp, "unknown trust store \"%.64s\"", name);
    }
    grp->trust_idx = (size_t)i;
    return 0;
}

int cfg__group_trust_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb)
{
    const cfg_group_t *ga = ba, *gb = bb;
    return trust_eq(&a->trust[ga->trust_idx], &b->trust[gb->trust_idx]);
}
