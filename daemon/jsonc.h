/* jsonc.h - the configuration's JSON toolkit: JSON with comments, as people hand-edit it, into
 * cJSON, and typed reads whose errors name the JSON path ("groups[2].tls.sni: expected ..."). */
#ifndef FS_JSONC_H
#define FS_JSONC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#if defined(__GNUC__)
#define JSONC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define JSONC_PRINTF(f, a)
#endif

/* Every function that fails fills err (256 bytes) with one message, "path: problem" (just
 * "problem" at the top level, path ""), and returns -1; success returns 0. A path is a JSON
 * path as the user reads it: "limits.max_in_flight", "groups[2].network.resolve[\"a b\"]". */

/* Parses len bytes of JSONC (need not be NUL-terminated) into a cJSON object in *out (free
 * with cJSON_Delete). Accepts // and block comments and trailing commas outside strings,
 * skips a UTF-8 BOM; refuses a NUL byte, a top level other than an object, and any key or
 * string holding \u0000 or invalid UTF-8 (with its path). Syntax errors give line and column
 * of the original text. *out is NULL on failure. */
int jsonc_parse(cJSON **out, const char *text, size_t len, char err[256]);

int jsonc_fail(char err[256], const char *path, const char *fmt, ...) JSONC_PRINTF(3, 4);
/* dst = path "." key (key alone at the top level), truncated to n. */
void jsonc_join(char *dst, size_t n, const char *path, const char *key);
/* "a, b or c" (quoted: "\"a\", \"b\" or \"c\""), the choices a message lists. */
void jsonc_choices(char *dst, size_t n, const char *const *names, size_t count, int quoted);

/* Refuses members of obj not named in known (NULL-terminated), suggesting a close spelling
 * ("unknown key \"cout\" (did you mean \"count\"?)"), and members given twice. */
int jsonc_check_keys(char err[256], const cJSON *obj, const char *path, const char *const *known);
/* Refuses names given twice in a name -> object map (cJSON keeps both). */
int jsonc_check_map_dups(char err[256], const cJSON *obj, const char *path);

/* obj's member key, or NULL (also when obj is NULL). */
const cJSON *jsonc_member(const cJSON *obj, const char *key);

/* Typed reads of obj's member key (obj may be NULL: every member absent); path is obj's path.
 * An absent member gives the default; so does null for the optional kinds (string, object). */
/* Non-empty string, borrowed from obj; NULL when absent or null. */
int jsonc_get_str(char err[256], const cJSON *obj, const char *key, const char *path,
                  const char **out);
/* Integer (a number without fraction) in [min, max]. */
int jsonc_get_int(char err[256], const cJSON *obj, const char *key, const char *path, int64_t min,
                  int64_t max, int64_t def, int64_t *out);
/* Number in (min, max] when min_open, else [min, max]. */
int jsonc_get_num(char err[256], const cJSON *obj, const char *key, const char *path, double min,
                  int min_open, double max, double def, double *out);
int jsonc_get_bool(char err[256], const cJSON *obj, const char *key, const char *path, bool def,
                   bool *out);
/* Object, borrowed from obj; NULL when absent or null. */
int jsonc_get_obj(char err[256], const cJSON *obj, const char *key, const char *path,
                  const cJSON **out);
/* A string among names[0..n): *out is its index. */
int jsonc_get_enum(char err[256], const cJSON *obj, const char *key, const char *path,
                   const char *const *names, size_t n, int def, int *out);

#endif
