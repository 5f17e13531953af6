/* config_table.h - the configuration schema as tables (internal to the config module): one row
 * per key with its type, bounds, default, place in cfg_t and flags, as Redis's config.c does. */
#ifndef FS_CONFIG_TABLE_H
#define FS_CONFIG_TABLE_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <openssl/ssl.h>

#include "daemon/config.h"

/* The state of one cfg_parse(), handed to every parser of a row. */
typedef struct cfg__parse_s {
    cfg_t *cfg;           /* being filled; cfg_free() releases whatever is set */
    const char *base_dir; /* absolute */
    char *err;            /* the caller's err[256] */
    SSL_CTX *tls_ctx;     /* created on first use, to validate cipher strings */
    size_t *group_slot;   /* hash set of group names (index + 1): duplicates in O(1) */
    size_t group_nslot;   /* a power of two, at least twice the number of groups */
} cfg__parse_t;

/* X(ENUM, "name in messages", bytes of the C value the row's offset points at) */
#define CFG_TYPE_LIST(X)                                                                           \
    X(U32, "integer", sizeof(uint32_t))                                                            \
    X(U64, "integer", sizeof(uint64_t))                                                            \
    X(I64, "integer", sizeof(int64_t))                                                             \
    X(NUM, "number", sizeof(double))                                                               \
    X(BOOL, "boolean", sizeof(bool))                                                               \
    X(ENUM, "string (one of a list)", sizeof(int))                                                 \
    X(TLS_VERSION, "TLS version", sizeof(int))                                                     \
    X(STRING, "string", sizeof(char *))                                                            \
    X(SECTION, "object", 0)                                                                        \
    X(CUSTOM, "custom", 0)

typedef enum {
#define X(e, name, size) CFG_T_##e,
    CFG_TYPE_LIST(X)
#undef X
        CFG_T_COUNT
} cfg_type_t;
extern const char *const cfg_type_names[CFG_T_COUNT];

/* What a key is part of. A SECTION row carries no flags: its rows do. */
#define CFG_F_PROBE                                                                                \
    (1u << 0) /* decides what a group's probes do or see (its count and name                       \
                 included): reload equality, cfg_group_equal() */
#define CFG_F_RESTART                                                                              \
    (1u << 1)                    /* read at start only: a reload that changes it is reported by    \
                                    cfg_restart_changes() */
#define CFG_F_TLSCTX (1u << 2)   /* part of the shared TLS context's key: cfg_tls_ctx_equal() */
#define CFG_F_REQUIRED (1u << 3) /* no default: absent (a string also null) is an error */
#define CFG_F_GT_MIN (1u << 4)   /* CFG_T_NUM: min is exclusive, the value is > min */

struct cfg_section_s;

/* One key. base is the C struct the key's section fills (cfg_t, cfg_limits_t, cfg_group_t...). */
typedef struct cfg_key_s {
    const char *name; /* the JSON key */
    cfg_type_t type;
    unsigned flags;           /* CFG_F_* */
    size_t off, size;         /* offsetof and sizeof the value in base (SECTION: the sub-struct) */
    double min, max;          /* U32/U64/I64/NUM: bounds */
    double def;               /* U32..TLS_VERSION: the default (ENUM: its index, BOOL: 0 or 1) */
    const char *const *names; /* ENUM: names[value], nnames of them */
    size_t nnames;
    const struct cfg_section_s *sub; /* SECTION: its rows */
    /* STRING: refuses a bad value (the JSON path is jpath), or NULL for any string. */
    int (*check)(cfg__parse_t *p, const char *jpath, const char *value);
    /* CUSTOM: reads member `name` of obj (path: obj's JSON path) into base; NULL obj: absent. */
    int (*parse)(cfg__parse_t *p, const cJSON *obj, const char *path, void *base);
    /* CUSTOM with a flag: 1 when the key's values in a (base ba) and b (base bb) are equal. */
    int (*equal)(const cfg_t *a, const void *ba, const cfg_t *b, const void *bb);
    /* CUSTOM: frees what parse allocated; NULL when nothing. */
    void (*release)(void *base);
} cfg_key_t;

/* The rows of one JSON object, in parse order (errors report the first problem in that order). */
typedef struct cfg_section_s {
    const char *path; /* JSON path for messages and tests: "limits", "groups[].tls" */
    const cfg_key_t *keys;
    size_t nkeys;
    /* Checks across keys once every row was read (min_version <= max_version), or NULL. */
    int (*check)(cfg__parse_t *p, const char *path, void *base);
} cfg_section_t;

#define CFG__MAX_KEYS 24 /* rows of one section */

/* The schema, defined in daemon/config.c: the document (base cfg_t) and one group (base
 * cfg_group_t); their SECTION rows lead to the nested tables. */
extern const cfg_section_t cfg__root_section;
extern const cfg_section_t cfg__group_section;

/* Reads obj (NULL: every key absent) at path into base by s's rows: unknown and duplicate keys
 * refused, defaults set, each value checked. Returns 0 or -1 with p->err filled. */
int cfg__section_parse(cfg__parse_t *p, const cfg_section_t *s, const cJSON *obj, const char *path,
                       void *base);
/* Frees the strings and what CUSTOM rows allocated; base may be half parsed (zeroed first). */
void cfg__section_free(const cfg_section_t *s, void *base);
/* The rows of s (nested sections included) that carry flag and differ between a's base ba and
 * b's base bb: calls cb with the JSON path of each (path: s's) and returns how many; with cb
 * NULL stops at the first. */
size_t cfg__section_changes(const cfg_section_t *s, unsigned flag, const cfg_t *a, const void *ba,
                            const cfg_t *b, const void *bb, const char *path,
                            void (*cb)(void *arg, const char *key), void *arg);

/* 1 when both are NULL or both hold the same string. */
int cfg__str_eq(const char *a, const char *b);

#endif
