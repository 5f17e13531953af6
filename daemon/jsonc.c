/* jsonc.c - JSON as people hand-edit it (comments, trailing commas) into cJSON, strings
 * checked for NUL and UTF-8, and typed reads whose errors name the JSON path (see jsonc.h). */
#include "daemon/jsonc.h"
#include "probes/util.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors and JSON paths --------------------------------------------------------------- */

/* Fills err with "path: message" (just "message" at the top level); returns -1. */
int jsonc_fail(char err[256], const char *path, const char *fmt, ...)
{
    int n = *path ? snprintf(err, 256, "%s: ", path) : 0;
    if (n < 0 || n >= 200) /* keep room for the message itself */
        n = snprintf(err, 256, "%.180s...: ", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, 256 - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* dst = path "." key (or key at the top level), truncated to n. */
void jsonc_join(char *dst, size_t n, const char *path, const char *key)
{
    fs_strlcpy(dst, path, n);
    size_t l = strlen(dst);
    if (*path && l + 1 < n) {
        dst[l++] = '.';
        dst[l] = '\0';
    }
    fs_strlcpy(dst + l, key, n - l);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best =
                diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            if (up + 1 < best)
                best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Refuses keys not in known (NULL-terminated) and keys given twice (cJSON keeps both). */
int jsonc_check_keys(char err[256], const cJSON *obj, const char *path, const char *const *known)
{
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        size_t k = 0;
        while (known[k] != NULL && strcmp(known[k], c->string) != 0)
            k++;
        if (known[k] == NULL) {
            const char *best = NULL;
            size_t bestd = 3; /* suggest only close spellings */
            for (k = 0; known[k] != NULL; k++) {
                size_t d = edit_distance(c->string, known[k]);
                if (d < bestd && d < strlen(c->string)) {
                    bestd = d;
                    best = known[k];
                }
            }
            if (best != NULL)
                return jsonc_fail(err, path, "unknown key \"%.64s\" (did you mean \"%s\"?)",
                                  c->string, best);
            return jsonc_fail(err, path, "unknown key \"%.64s\"", c->string);
        }
        for (const cJSON *d = obj->child; d != c; d = d->next)
            if (strcmp(d->string, c->string) == 0)
                return jsonc_fail(err, path, "duplicate key \"%.64s\"", c->string);
    }
    return 0;
}

/* Refuses names given twice in a name -> object map (trust_stores, profiles). */
int jsonc_check_map_dups(char err[256], const cJSON *obj, const char *path)
{
    for (const cJSON *c = obj->child; c != NULL; c = c->next)
        for (const cJSON *d = obj->child; d != c; d = d->next)
            if (strcmp(d->string, c->string) == 0)
                return jsonc_fail(err, path, "duplicate name \"%.64s\"", c->string);
    return 0;
}

const cJSON *jsonc_member(const cJSON *obj, const char *key)
{
    return obj != NULL ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* Optional string: *out is NULL when absent or null. Empty strings are refused. */
int jsonc_get_str(char err[256], const cJSON *obj, const char *key, const char *path,
                  const char **out)
{
    char jp[256];
    const cJSON *v = jsonc_member(obj, key);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    jsonc_join(jp, sizeof(jp), path, key);
    if (!cJSON_IsString(v))
        return jsonc_fail(err, jp, "expected a string");
    if (v->valuestring[0] == '\0')
        return jsonc_fail(err, jp, "must not be empty (leave the key out for the default)");
    *out = v->valuestring;
    return 0;
}

int jsonc_get_int(char err[256], const cJSON *obj, const char *key, const char *path, int64_t min,
                  int64_t max, int64_t def, int64_t *out)
{
    char jp[256];
    const cJSON *v = jsonc_member(obj, key);
    *out = def;
    if (v == NULL)
        return 0;
    jsonc_join(jp, sizeof(jp), path, key);
    if (!cJSON_IsNumber(v))
        return jsonc_fail(err, jp, "expected an integer");
    double d = v->valuedouble;
    /* 0x1p63 is exact: (double)INT64_MAX rounds up to it, so `d > (double)max` would let 2^63
     * through and the cast below would be undefined. */
    if (!isfinite(d) || d != trunc(d) || d < (double)min || d >= 0x1p63 || d > (double)max) {
        return jsonc_fail(err, jp, "must be an integer between %lld and %lld", (long long)min,
                          (long long)max);
    }
    *out = (int64_t)d;
    return 0;
}

/* Number in (min, max] when min_open, else [min, max]. */
int jsonc_get_num(char err[256], const cJSON *obj, const char *key, const char *path, double min,
                  int min_open, double max, double def, double *out)
{
    char jp[256];
    const cJSON *v = jsonc_member(obj, key);
    *out = def;
    if (v == NULL)
        return 0;
    jsonc_join(jp, sizeof(jp), path, key);
    if (!cJSON_IsNumber(v))
        return jsonc_fail(err, jp, "expected a number");
    double d = v->valuedouble;
    if (!isfinite(d) || (min_open ? d <= min : d < min) || d > max)
        return jsonc_fail(err, jp, "must be a number %s %g and <= %g", min_open ? ">" : ">=", min,
                          max);
    *out = d;
    return 0;
}

int jsonc_get_bool(char err[256], const cJSON *obj, const char *key, const char *path, bool def,
                   bool *out)
{
    char jp[256];
    const cJSON *v = jsonc_member(obj, key);
    *out = def;
    if (v == NULL)
        return 0;
    jsonc_join(jp, sizeof(jp), path, key);
    if (!cJSON_IsBool(v))
        return jsonc_fail(err, jp, "expected true or false");
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Optional object: *out is NULL when absent or null. */
int jsonc_get_obj(char err[256], const cJSON *obj, const char *key, const char *path,
                  const cJSON **out)
{
    char jp[256];
    const cJSON *v = jsonc_member(obj, key);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    jsonc_join(jp, sizeof(jp), path, key);
    if (!cJSON_IsObject(v))
        return jsonc_fail(err, jp, "expected an object");
    *out = v;
    return 0;
}

/* "a, b or c" (quoted: "\"a\", \"b\" or \"c\""), for the messages that list the choices. */
void jsonc_choices(char *dst, size_t n, const char *const *names, size_t count, int quoted)
{
    const char *q = quoted ? "\"" : "";
    dst[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        size_t l = strlen(dst);
        snprintf(dst + l, n - l, "%s%s%s%s",
                 i == 0           ? ""
                 : i + 1 == count ? " or "
                                  : ", ",
                 q, names[i], q);
    }
}

int jsonc_get_enum(char err[256], const cJSON *o, const char *key, const char *path,
                   const char *const *names, size_t n, int def, int *out)
{
    const char *s;
    char jp[256], list[128];
    *out = def;
    if (jsonc_get_str(err, o, key, path, &s) != 0)
        return -1;
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    jsonc_choices(list, sizeof(list), names, n, 0);
    jsonc_join(jp, sizeof(jp), path, key);
    return jsonc_fail(err, jp, "unknown %s \"%.64s\" (expected %s)", key, s, list);
}

/* ---- the document: JSONC to JSON, and strings cJSON would cut short or pass on ----------- */

/* Line and column (1-based, in characters) of byte offset off of s. */
static void line_col(const char *s, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)s[i] & 0xc0) != 0x80) {
            (*col)++;
        }
    }
}

/* JSONC -> JSON in place, keeping every byte offset (so line:column stay true): comments
 * outside strings become spaces (newlines kept), and so do trailing commas before } or ]. */
static int strip(char err[256], char *s, size_t n, const char *orig)
{
    size_t i = 0, line, col;
    while (i < n) {
        if (s[i] == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            i++;
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '/') {
            while (i < n && s[i] != '\n')
                s[i++] = ' ';
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
            size_t start = i;
            s[i++] = ' ';
            s[i++] = ' ';
            while (i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/')) {
                if (s[i] != '\n')
                    s[i] = ' ';
                i++;
            }
            if (i >= n) {
                line_col(orig, start, &line, &col);
                return jsonc_fail(
                    err, "", "unterminated /* comment starting at line %zu, column %zu", line, col);
            }
            s[i++] = ' ';
            s[i++] = ' ';
        } else {
            i++;
        }
    }
    char prev = 0; /* last significant character outside strings */
    for (i = 0; i < n; i++) {
        if (s[i] == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            prev = '"';
        } else if (s[i] == ',' && prev != ',' && prev != '[' && prev != '{') {
            size_t j = i + 1;
            while (j < n && isspace((unsigned char)s[j]))
                j++;
            if (j < n && (s[j] == '}' || s[j] == ']'))
                s[i] = ' ';
            else
                prev = ',';
        } else if (!isspace((unsigned char)s[i])) {
            prev = s[i];
        }
    }
    return 0;
}

/* ---- strings: what cJSON would silently cut short or pass on ------------------------------ */

/* Length of the valid UTF-8 sequence at p (n bytes readable), or 0 when invalid: overlong
 * forms, UTF-16 surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/* Offset of the first byte of s that does not start a valid UTF-8 sequence, or -1. */
static long utf8_invalid_at(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l == 0)
            return (long)i;
        i += l;
    }
    return -1;
}

/* Ordinal (0-based, document order, keys included) of the first string literal of the JSON
 * text s that holds a \u0000 escape, or SIZE_MAX. cJSON decodes it into a NUL that ends the C
 * string early: "a\u0000<script>" would load as "a", "root.pem\u0000.evil" as "root.pem". */
static size_t first_nul_string(const char *s, size_t n)
{
    size_t ord = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '"')
            continue;
        for (i++; i < n && s[i] != '"'; i++) {
            if (s[i] != '\\')
                continue;
            i++;
            if (i + 4 < n && s[i] == 'u' && memcmp(s + i + 1, "0000", 4) == 0)
                return ord;
        }
        ord++;
    }
    return SIZE_MAX;
}

typedef struct strwalk_s {
    size_t ord;     /* ordinal of the next string (key or value) in document order */
    size_t nul_ord; /* first_nul_string() */
    char path[256]; /* JSON path of the current value */
} strwalk_t;

/* A key as it can be shown: printable ASCII, others as '?', at most 64 characters. */
static void shown_key(char *dst, size_t n, const char *key)
{
    size_t k = 0;
    for (; *key && k + 1 < n && k < 64; key++)
        dst[k++] = *key >= 0x20 && *key < 0x7f && *key != '"' && *key != '\\' ? *key : '?';
    dst[k] = '\0';
}

/* Appends .key (or ["key"] when the key is not a plain name) to w->path. */
static void path_push_key(strwalk_t *w, const char *key)
{
    char shown[72];
    size_t l = strlen(w->path);
    int plain = *key != '\0';
    for (const char *q = key; *q && plain; q++)
        plain = isalnum((unsigned char)*q) || *q == '_' || *q == '-';
    shown_key(shown, sizeof(shown), key);
    if (plain)
        snprintf(w->path + l, sizeof(w->path) - l, "%s%s", l ? "." : "", shown);
    else
        snprintf(w->path + l, sizeof(w->path) - l, "[\"%s\"]", shown);
}

static int check_string(char err[256], strwalk_t *w, const char *s, int is_key)
{
    char shown[72];
    long bad;
    if (is_key)
        shown_key(shown, sizeof(shown), s);
    if (w->ord++ == w->nul_ord)
        return is_key ? jsonc_fail(err, w->path, "key \"%s\" contains a NUL character (\\u0000)",
                                   shown)
                      : jsonc_fail(err, w->path, "string contains a NUL character (\\u0000)");
    if ((bad = utf8_invalid_at(s)) >= 0)
        return is_key ? jsonc_fail(err, w->path,
                                   "key \"%s\": invalid UTF-8 (byte 0x%02x at offset %ld)", shown,
                                   (unsigned char)s[bad], bad)
                      : jsonc_fail(err, w->path, "invalid UTF-8 (byte 0x%02x at offset %ld)",
                                   (unsigned char)s[bad], bad);
    return 0;
}

/* Refuses every string, key or value, that holds a NUL or is not valid UTF-8, with its path:
 * the schema never sees a string cut short, and a metrics label or a JSON answer never
 * carries bytes a reader would choke on. */
static int check_strings(char err[256], strwalk_t *w, const cJSON *v)
{
    size_t l = strlen(w->path), i = 0;
    if (cJSON_IsString(v))
        return check_string(err, w, v->valuestring, 0);
    for (const cJSON *c = v->child; c != NULL; c = c->next, i++) {
        if (cJSON_IsObject(v)) {
            if (check_string(err, w, c->string, 1) != 0)
                return -1;
            path_push_key(w, c->string);
        } else {
            snprintf(w->path + l, sizeof(w->path) - l, "[%zu]", i);
        }
        if (check_strings(err, w, c) != 0)
            return -1;
        w->path[l] = '\0';
    }
    return 0;
}

int jsonc_parse(cJSON **out, const char *json, size_t len, char err[256])
{
    cJSON *root = NULL;
    char *buf = NULL;
    int rc = -1;
    *out = NULL;
    if (len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0) { /* Notepad's UTF-8 BOM */
        json += 3;
        len -= 3;
    }
    const char *nul = memchr(json, '\0', len);
    if (nul != NULL) {
        size_t line, col;
        line_col(json, (size_t)(nul - json), &line, &col);
        jsonc_fail(err, "",
                   "NUL byte at line %zu, column %zu (is the file UTF-16? save it as UTF-8)", line,
                   col);
        goto out;
    }
    buf = fs_xmalloc(len + 1);
    memcpy(buf, json, len);
    buf[len] = '\0';
    if (strip(err, buf, len, json) != 0)
        goto out;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1);
    if (root == NULL) {
        size_t off = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : len;
        size_t line, col, k = 0;
        char near[32];
        while (off < len && isspace((unsigned char)buf[off]))
            off++;
        line_col(json, off, &line, &col);
        for (; k < 20 && off + k < len && buf[off + k] != '\n' && buf[off + k] != '\r'; k++)
            near[k] = isprint((unsigned char)buf[off + k]) ? buf[off + k] : '?';
        near[k] = '\0';
        if (off >= len)
            jsonc_fail(err, "",
                       "JSON syntax error at line %zu, column %zu: unexpected end of input", line,
                       col);
        else
            jsonc_fail(err, "", "JSON syntax error at line %zu, column %zu near \"%s\"", line, col,
                       near);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        jsonc_fail(err, "", "the configuration must be a JSON object ({...}), not %s",
                   cJSON_IsArray(root)    ? "an array"
                   : cJSON_IsString(root) ? "a string"
                   : cJSON_IsNumber(root) ? "a number"
                                          : "a literal");
        goto out;
    }
    strwalk_t w = {.nul_ord = first_nul_string(buf, len)};
    if (check_strings(err, &w, root) != 0)
        goto out;
    *out = root;
    root = NULL;
    rc = 0;
out:
    cJSON_Delete(root);
    free(buf);
    return rc;
}
