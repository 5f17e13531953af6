/* config_table.c - the engine of the schema tables (config_table.h): rows read into C structs,
 * freed, and compared by flag for reload equality, TLS context sharing and restart-only keys. */
#include "daemon/config_table.h"
#include "daemon/jsonc.h"
#include "probes/tlsc.h"
#include "probes/util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cfg_type_names[CFG_T_COUNT] = {
#define X(e, name, size) name,
    CFG_TYPE_LIST(X)
#undef X
};
static const size_t type_size[] = {
#define X(e, name, size) size,
    CFG_TYPE_LIST(X)
#undef X
};
_Static_assert(FS_ARRAY_SIZE(type_size) == CFG_T_COUNT, "type_size");

#define AT(base, k) ((char *)(base) + (k)->off)
#define AT_CONST(base, k) ((const char *)(base) + (k)->off)

/* ---- reading ----------------------------------------------------------------------------- */

static int parse_tls_version(cfg__parse_t *p, const cJSON *obj, const cfg_key_t *k,
                             const char *path, int *out)
{
    static const char *const ids[] = {
#define X(v, id, name) id,
        TLSC_VERSION_LIST(X)
#undef X
    };
    char jp[256], list[64];
    const cJSON *v = jsonc_member(obj, k->name);
    *out = (int)k->def;
    if (v == NULL)
        return 0;
    jsonc_join(jp, sizeof(jp), path, k->name);
    jsonc_choices(list, sizeof(list), ids, FS_ARRAY_SIZE(ids), 1);
    if (!cJSON_IsString(v))
        return jsonc_fail(p->err, jp, "expected a string (%s)", list);
    if ((*out = tlsc_version_parse(v->valuestring)) == 0)
        return jsonc_fail(p->err, jp, "unknown TLS version \"%.16s\" (expected %s)", v->valuestring,
                          list);
    return 0;
}

static int parse_string(cfg__parse_t *p, const cJSON *obj, const cfg_key_t *k, const char *path,
                        char **out)
{
    char jp[256];
    const char *s;
    if (jsonc_get_str(p->err, obj, k->name, path, &s) != 0)
        return -1;
    jsonc_join(jp, sizeof(jp), path, k->name);
    if (s == NULL)
        return (k->flags & CFG_F_REQUIRED) ? jsonc_fail(p->err, jp, "required") : 0;
    if (k->check != NULL && k->check(p, jp, s) != 0)
        return -1;
    *out = fs_xstrdup(s);
    return 0;
}

static int parse_key(cfg__parse_t *p, const cfg_key_t *k, const cJSON *obj, const char *path,
                     void *base)
{
    char jp[256];
    int64_t v;
    int e;
    if (type_size[k->type] != 0 && k->size != type_size[k->type])
        abort(); /* a row's type does not fit its field: every parse of the schema says so */
    if ((k->flags & CFG_F_REQUIRED) && k->type != CFG_T_STRING &&
        jsonc_member(obj, k->name) == NULL) {
        jsonc_join(jp, sizeof(jp), path, k->name);
        return jsonc_fail(p->err, jp, "required");
    }
    switch (k->type) {
    case CFG_T_U32:
    case CFG_T_U64:
    case CFG_T_I64:
        if (jsonc_get_int(p->err, obj, k->name, path, (int64_t)k->min, (int64_t)k->max,
                          (int64_t)k->def, &v) != 0)
            return -1;
        if (k->type == CFG_T_U32)
            *(uint32_t *)AT(base, k) = (uint32_t)v;
        else if (k->type == CFG_T_U64)
            *(uint64_t *)AT(base, k) = (uint64_t)v;
        else
            *(int64_t *)AT(base, k) = v;
        return 0;
    case CFG_T_NUM:
        return jsonc_get_num(p->err, obj, k->name, path, k->min, (k->flags & CFG_F_GT_MIN) != 0,
                             k->max, k->def, (double *)AT(base, k));
    case CFG_T_BOOL:
        return jsonc_get_bool(p->err, obj, k->name, path, k->def != 0, (bool *)AT(base, k));
    case CFG_T_ENUM:
        if (jsonc_get_enum(p->err, obj, k->name, path, k->names, k->nnames, (int)k->def, &e) != 0)
            return -1;
        *(int *)AT(base, k) = e;
        return 0;
    case CFG_T_TLS_VERSION:
        return parse_tls_version(p, obj, k, path, (int *)AT(base, k));
    case CFG_T_STRING:
        return parse_string(p, obj, k, path, (char **)AT(base, k));
    case CFG_T_SECTION: {
        const cJSON *o;
        if (jsonc_get_obj(p->err, obj, k->name, path, &o) != 0)
            return -1;
        jsonc_join(jp, sizeof(jp), path, k->name);
        return cfg__section_parse(p, k->sub, o, jp, AT(base, k));
    }
    case CFG_T_CUSTOM:
        return k->parse(p, obj, path, base);
    case CFG_T_COUNT:
        break;
    }
    abort();
}

int cfg__section_parse(cfg__parse_t *p, const cfg_section_t *s, const cJSON *obj, const char *path,
                       void *base)
{
    const char *known[CFG__MAX_KEYS + 1];
    if (s->nkeys > CFG__MAX_KEYS)
        abort(); /* raise CFG__MAX_KEYS */
    for (size_t i = 0; i < s->nkeys; i++)
        known[i] = s->keys[i].name;
    known[s->nkeys] = NULL;
    if (obj != NULL && jsonc_check_keys(p->err, obj, path, known) != 0)
        return -1;
    for (size_t i = 0; i < s->nkeys; i++)
        if (parse_key(p, &s->keys[i], obj, path, base) != 0)
            return -1;
    return s->check != NULL ? s->check(p, path, base) : 0;
}

void cfg__section_free(const cfg_section_t *s, void *base)
{
    for (size_t i = 0; i < s->nkeys; i++) {
        const cfg_key_t *k = &s->keys[i];
        if (k->type == CFG_T_STRING) {
            free(*(char **)AT(base, k));
            *(char **)AT(base, k) = NULL;
        } else if (k->type == CFG_T_SECTION) {
            cfg__section_free(k->sub, AT(base, k));
        } else if (k->type == CFG_T_CUSTOM && k->release != NULL) {
            k->release(base);
        }
    }
}

/* ---- comparing --------------------------------------------------------------------------- */

int cfg__str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int key_equal(const cfg_key_t *k, const cfg_t *a, const void *ba, const cfg_t *b,
                     const void *bb)
{
    switch (k->type) {
    case CFG_T_U32:
    case CFG_T_U64:
    case CFG_T_I64:
    case CFG_T_BOOL:
    case CFG_T_ENUM:
    case CFG_T_TLS_VERSION:
        return memcmp(AT_CONST(ba, k), AT_CONST(bb, k), k->size) == 0;
    case CFG_T_NUM:
        return *(const double *)AT_CONST(ba, k) == *(const double *)AT_CONST(bb, k);
    case CFG_T_STRING:
        return cfg__str_eq(*(char *const *)AT_CONST(ba, k), *(char *const *)AT_CONST(bb, k));
    case CFG_T_CUSTOM:
        assert(k->equal != NULL); /* a flagged custom key says how it compares */
        return k->equal(a, ba, b, bb);
    case CFG_T_SECTION:
    case CFG_T_COUNT:
        break;
    }
    abort();
}

size_t cfg__section_changes(const cfg_section_t *s, unsigned flag, const cfg_t *a, const void *ba,
                            const cfg_t *b, const void *bb, const char *path,
                            void (*cb)(void *arg, const char *key), void *arg)
{
    size_t n = 0;
    char jp[256] = ""; /* only named when someone is told (reload equality runs per group) */
    for (size_t i = 0; i < s->nkeys && (cb != NULL || n == 0); i++) {
        const cfg_key_t *k = &s->keys[i];
        if (cb != NULL)
            jsonc_join(jp, sizeof(jp), path, k->name);
        if (k->type == CFG_T_SECTION) {
            n += cfg__section_changes(k->sub, flag, a, AT_CONST(ba, k), b, AT_CONST(bb, k), jp, cb,
                                      arg);
        } else if ((k->flags & flag) && !key_equal(k, a, ba, b, bb)) {
            n++;
            if (cb != NULL)
                cb(arg, jp);
        }
    }
    return n;
}

/* ---- what the rest of the daemon asks ---------------------------------------------------- */

static int groups_equal(unsigned flag, const cfg_t *a, size_t ia, const cfg_t *b, size_t ib)
{
    if (a == NULL || b == NULL || ia >= a->ngroups || ib >= b->ngroups)
        return 0;
    return cfg__section_changes(&cfg__group_section, flag, a, &a->groups[ia], b, &b->groups[ib], "",
                                NULL, NULL) == 0;
}

int cfg_group_equal(const cfg_t *a, size_t ia, const cfg_t *b, size_t ib)
{
    return groups_equal(CFG_F_PROBE, a, ia, b, ib) &&
           cfg__section_changes(&cfg__root_section, CFG_F_PROBE, a, a, b, b, "", NULL, NULL) == 0;
}

int cfg_tls_ctx_equal(const cfg_t *a, size_t ia, const cfg_t *b, size_t ib)
{
    return groups_equal(CFG_F_TLSCTX, a, ia, b, ib);
}

size_t cfg_restart_changes(const cfg_t *was, const cfg_t *now,
                           void (*cb)(void *arg, const char *key), void *arg)
{
    return cfg__section_changes(&cfg__root_section, CFG_F_RESTART, was, was, now, now, "", cb, arg);
}
