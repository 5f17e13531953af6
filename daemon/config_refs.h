/* config_refs.h - the rows of the schema for trust stores, profiles and the keys that name them
 * (internal to the config module; the tables in daemon/config.c point at these functions). */
#ifndef FS_CONFIG_REFS_H
#define FS_CONFIG_REFS_H

#include "daemon/config_table.h"

/* 1 when s is a valid group, trust store or profile name: [A-Za-z0-9_.-]{1,48} (they appear in
 * URLs, metrics labels and endpoint ids). */
int cfg__valid_name(const char *s);

/* CFG_T_CUSTOM rows of the document (base: cfg_t). "trust_stores" and "profiles" are required
 * maps of at least one entry; "reference" defaults to the entries named "default", else the
 * only one, and must come after both. Equality is by content: a store's file bytes, a
 * profile's URL and pin, never names or paths. */
int cfg__trust_stores_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base);
void cfg__trust_stores_release(void *base);
int cfg__profiles_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base);
void cfg__profiles_release(void *base);
int cfg__reference_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base);
int cfg__reference_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb);
/* "targets" (optional; without it the reference defines the single target "reference"), after
 * "reference"; assigns every profile its target. */
int cfg__targets_parse(cfg__parse_t *p, const cJSON *root, const char *path, void *base);
int cfg__targets_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb);
void cfg__targets_release(void *base);

/* CFG_T_CUSTOM rows of a group (base: cfg_group_t): "profile" and "trust" name an entry of the
 * maps, default the reference's. */
int cfg__group_profile_parse(cfg__parse_t *p, const cJSON *g, const char *path, void *base);
int cfg__group_profile_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb);
int cfg__group_trust_parse(cfg__parse_t *p, const cJSON *g, const char *path, void *base);
int cfg__group_trust_equal(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb);

#endif
