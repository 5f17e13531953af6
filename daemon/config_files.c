/* config_files.c - the files a configuration names: paths resolved against the configuration's
 * directory, trust stores read, counted and hashed, the API token read, the event log checked. */
#include "daemon/config_files.h"
#include "daemon/jsonc.h"
#include "probes/file.h"
#include "probes/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define CFG_MAX_PEM_BYTES (16u << 20) /* a CA bundle or a hashed-dir entry */
#define CFG_MAX_TOKEN_BYTES 4096u     /* api_token_file */

/* Absolute form of rel against base: "." segments and repeated slashes dropped, ".." kept so
 * the kernel resolves it (lexical ".." removal would be wrong across symlinks). */
char *cfg__path_resolve(const char *base, const char *rel)
{
    size_t n = strlen(base) + strlen(rel) + 3;
    char *joined = fs_xmalloc(n), *out = fs_xmalloc(n);
    if (rel[0] == '/')
        snprintf(joined, n, "%s", rel);
    else
        snprintf(joined, n, "%s/%s", base, rel);
    size_t o = 0;
    for (const char *q = joined; *q;) {
        while (*q == '/')
            q++;
        size_t sl = strcspn(q, "/");
        if (sl == 0)
            break;
        if (!(sl == 1 && q[0] == '.')) {
            out[o++] = '/';
            memcpy(out + o, q, sl);
            o += sl;
        }
        q += sl;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    free(joined);
    return out;
}

/* "written" or "written" (resolved), for messages about a path from the config. */
static void shown_path(char *dst, size_t n, const char *written, const char *abs)
{
    if (strcmp(written, abs) == 0)
        snprintf(dst, n, "\"%.120s\"", written);
    else
        snprintf(dst, n, "\"%.80s\" (%.100s)", written, abs);
}

static void digest_chunk(EVP_MD_CTX *md, const char *tag, const void *data, size_t len)
{
    uint64_t l = len;
    EVP_DigestUpdate(md, tag, strlen(tag) + 1);
    EVP_DigestUpdate(md, &l, sizeof(l));
    EVP_DigestUpdate(md, data, len);
}

/* Counts the PEM certificates ("CERTIFICATE" and OpenSSL's "TRUSTED CERTIFICATE", as the
 * store loader accepts) of a buffer; other PEM blocks are skipped. Returns the count,
 * or -1 when a certificate block does not parse. */
static long count_pem_certs(const char *buf, size_t len)
{
    long n = 0;
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    X509 *x;
    if (bio == NULL)
        return -1;
    ERR_clear_error();
    while ((x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) != NULL) {
        X509_free(x);
        n++;
    }
    unsigned long e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
        n = -1;
    ERR_clear_error();
    BIO_free(bio);
    return n;
}

/* Reads a PEM file named at jpath, requires at least one certificate, adds it to the digest. */
static int load_pem_file(char err[256], const char *base_dir, const char *jpath,
                         const char *written, char **abs_out, EVP_MD_CTX *md, const char *tag,
                         size_t *count)
{
    int rc = -1;
    char why[128], shown[256], *buf = NULL;
    size_t len;
    char *abs = cfg__path_resolve(base_dir, written);
    *abs_out = abs;
    shown_path(shown, sizeof(shown), written, abs);
    if (fs_read_file(abs, CFG_MAX_PEM_BYTES, &buf, &len, NULL, why, sizeof(why)) != 0) {
        jsonc_fail(err, jpath, "cannot read %s: %s", shown, why);
        goto out;
    }
    long n = count_pem_certs(buf, len);
    if (n < 0) {
        jsonc_fail(err, jpath, "%s: a certificate in it does not parse", shown);
        goto out;
    }
    if (n == 0) {
        int der = len > 0 && (unsigned char)buf[0] == 0x30;
        jsonc_fail(err, jpath, "%s contains no PEM certificate%s", shown,
                   der ? " (DER? convert it: openssl x509 -inform der -in FILE -out FILE.pem)"
                       : "");
        goto out;
    }
    digest_chunk(md, tag, buf, len);
    *count = (size_t)n;
    rc = 0;
out:
    free(buf);
    return rc;
}

/* OpenSSL hashed directory entry names: 8 hex digits, '.', optional 'r' (CRL), digits. */
static int hashed_name(const char *s, int *is_cert)
{
    for (int i = 0; i < 8; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    if (s[8] != '.')
        return 0;
    const char *q = s + 9;
    *is_cert = *q != 'r';
    if (*q == 'r')
        q++;
    if (!isdigit((unsigned char)*q))
        return 0;
    while (isdigit((unsigned char)*q))
        q++;
    return *q == '\0';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Checks an OpenSSL hashed CA directory and adds its entries (the only files OpenSSL reads
 * from it) to the digest. */
static int load_hash_dir(char err[256], const char *base_dir, const char *jpath,
                         const char *written, char **abs_out, EVP_MD_CTX *md)
{
    int rc = -1;
    char why[128], shown[256], *buf = NULL;
    char **names = NULL;
    size_t nnames = 0, ncerts = 0, len;
    struct stat st;
    char *abs = cfg__path_resolve(base_dir, written);
    DIR *d = NULL;
    *abs_out = abs;
    shown_path(shown, sizeof(shown), written, abs);
    if (stat(abs, &st) != 0) {
        jsonc_fail(err, jpath, "cannot read directory %s: %s", shown, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        jsonc_fail(err, jpath, "%s is not a directory", shown);
        goto out;
    }
    if ((d = opendir(abs)) == NULL) {
        jsonc_fail(err, jpath, "cannot read directory %s: %s", shown, strerror(errno));
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int is_cert;
        if (!hashed_name(de->d_name, &is_cert))
            continue;
        names = fs_xrealloc(names, (nnames + 1) * sizeof(*names));
        names[nnames++] = fs_xstrdup(de->d_name);
        ncerts += (size_t)is_cert;
    }
    if (ncerts == 0) {
        jsonc_fail(err, jpath, "%s has no hashed certificate links (run: openssl rehash DIR)",
                   shown);
        goto out;
    }
    qsort(names, nnames, sizeof(*names), cmp_str);
    for (size_t i = 0; i < nnames; i++) {
        size_t n = strlen(abs) + strlen(names[i]) + 2;
        char *f = fs_xmalloc(n);
        snprintf(f, n, "%s/%s", abs, names[i]);
        int r = fs_read_file(f, CFG_MAX_PEM_BYTES, &buf, &len, NULL, why, sizeof(why));
        free(f);
        if (r != 0) {
            jsonc_fail(err, jpath, "cannot read %.100s in %s: %s", names[i], shown, why);
            goto out;
        }
        digest_chunk(md, names[i], buf, len);
        free(buf);
        buf = NULL;
    }
    rc = 0;
out:
    if (d != NULL)
        closedir(d);
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    free(buf);
    return rc;
}

/* ---- trust stores ----------------------------------------------------------------------- */

int cfg__trust_load(cfg_trust_t *t, const char *base_dir, const char *path, const char *ca_file,
                    const char *ca_dir, const char *inter, char err[256])
{
    char jp[256];
    int rc = -1;
    unsigned int dl = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        jsonc_fail(err, path, "cannot initialise SHA-256");
        goto out;
    }
    jsonc_join(jp, sizeof(jp), path, "ca_file");
    if (ca_file &&
        load_pem_file(err, base_dir, jp, ca_file, &t->ca_file, md, "ca_file", &t->ca_count))
        goto out;
    jsonc_join(jp, sizeof(jp), path, "ca_dir");
    if (ca_dir && load_hash_dir(err, base_dir, jp, ca_dir, &t->ca_dir, md))
        goto out;
    jsonc_join(jp, sizeof(jp), path, "intermediates_file");
    if (inter && load_pem_file(err, base_dir, jp, inter, &t->intermediates_file, md,
                               "intermediates_file", &t->intermediates_count))
        goto out;
    if (!EVP_DigestFinal_ex(md, t->digest, &dl) || dl != sizeof(t->digest)) {
        jsonc_fail(err, path, "cannot compute SHA-256");
        goto out;
    }
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

/* ---- the API token and the event log ----------------------------------------------------- */

int cfg__token_load(cfg_t *c, const char *base_dir, const char *written, char err[256])
{
    char why[128], shown[256], *buf = NULL;
    size_t len;
    struct stat st;
    c->api_token_file = cfg__path_resolve(base_dir, written);
    shown_path(shown, sizeof(shown), written, c->api_token_file);
    if (fs_read_file(c->api_token_file, CFG_MAX_TOKEN_BYTES, &buf, &len, &st, why, sizeof(why)) !=
        0)
        return jsonc_fail(err, "api_token_file", "cannot read %s: %s", shown, why);
    c->api_token_mode = (uint32_t)(st.st_mode & 07777);
    c->api_token_gid = (uint32_t)st.st_gid;
    char *b = buf, *e = buf + len;
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    *e = '\0';
    int rc = 0;
    if (b == e)
        rc = jsonc_fail(err, "api_token_file", "%s is empty", shown);
    for (const char *q = b; rc == 0 && *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            rc = jsonc_fail(err, "api_token_file",
                            "the token in %s contains whitespace or control "
                            "characters",
                            shown);
    if (rc == 0)
        c->api_token = fs_xstrdup(b);
    free(buf);
    return rc;
}

int cfg__event_log_check(cfg_t *c, const char *base_dir, const char *written, char err[256])
{
    char shown[256];
    struct stat st;
    c->event_log = cfg__path_resolve(base_dir, written);
    shown_path(shown, sizeof(shown), written, c->event_log);
    if (stat(c->event_log, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return jsonc_fail(err, "event_log", "%s is not a regular file", shown);
        if (access(c->event_log, W_OK) != 0)
            return jsonc_fail(err, "event_log", "cannot write %s: %s", shown, strerror(errno));
        return 0;
    }
    if (errno != ENOENT)
        return jsonc_fail(err, "event_log", "cannot use %s: %s", shown, strerror(errno));
    char *dir = fs_xstrdup(c->event_log);
    *strrchr(dir, '/') = '\0';
    const char *d = *dir ? dir : "/";
    const char *why = NULL;
    if (stat(d, &st) != 0)
        why = strerror(errno);
    else if (!S_ISDIR(st.st_mode))
        why = "not a directory";
    else if (access(d, W_OK | X_OK) != 0)
        why = strerror(errno);
    int rc = 0;
    if (why != NULL)
        rc = jsonc_fail(err, "event_log", "cannot create %s: directory %.100s: %s", shown, d, why);
    free(dir);
    return rc;
}
