/* tlsc.c - sans-I/O TLS client over OpenSSL memory BIOs (see tlsc.h). Chain validation is
 * not done during the handshake: chain.c verifies the presented chain afterwards, once per
 * distinct chain, the way the fleet needs it. */
#include "probes/tlsc.h"
#include "probes/file.h"
#include "probes/url.h"
#include "probes/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

static const struct {
    int v;
    const char *id, *name;
} tls_versions[] = {
#define X(v, id, name) {v, id, name},
    TLSC_VERSION_LIST(X)
#undef X
};

int tlsc_version_parse(const char *s)
{
    for (size_t i = 0; s != NULL && i < FS_ARRAY_SIZE(tls_versions); i++)
        if (strcmp(s, tls_versions[i].id) == 0)
            return tls_versions[i].v;
    return 0;
}

const char *tlsc_version_id(int v)
{
    for (size_t i = 0; i < FS_ARRAY_SIZE(tls_versions); i++)
        if (tls_versions[i].v == v)
            return tls_versions[i].id;
    return NULL;
}

const char *tlsc_version_name(int v)
{
    for (size_t i = 0; i < FS_ARRAY_SIZE(tls_versions); i++)
        if (tls_versions[i].v == v)
            return tls_versions[i].name;
    return "unknown";
}

/* The chain is verified by chain.c after the handshake; accepting here skips OpenSSL's
 * per-handshake X509_verify_cert (PERF-NOTES: ~15 % of a probe). */
static int accept_chain(X509_STORE_CTX *sctx, void *arg)
{
    (void)sctx;
    (void)arg;
    return 1;
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_ALERT) == 0 || (where & SSL_CB_READ) == 0)
        return;
    tlsc_t *t = SSL_get_app_data(ssl);
    /* Only fatal alerts explain a failure; a warning (unrecognized_name) is not the cause. */
    if (t != NULL && t->alert_received < 0 && (ret >> 8) == SSL3_AL_FATAL)
        t->alert_received = ret & 0xff;
}

static void ssl_errmsg(char *buf, size_t len, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s%s%s", what, r ? ": " : "", r ? r : "");
}

#define TLSC_MAX_PEM_BYTES (16u << 20) /* a CA bundle, or one hashed-directory entry */

/* Adds the certificates of the PEM file at path to store (with its CRLs) or, when store is
 * NULL, to sk. The file is read through fs_read_file(): a FIFO or a device named as a CA file
 * fails at once instead of blocking the loop. Returns the number of certificates, or -1
 * with why filled. */
static int load_pem(X509_STORE *store, STACK_OF(X509) * sk, const char *path, char *why,
                    size_t whylen)
{
    char *buf = NULL;
    size_t len;
    int n = -1;
    BIO *b = NULL;
    STACK_OF(X509_INFO) *infos = NULL;
    if (fs_read_file(path, TLSC_MAX_PEM_BYTES, &buf, &len, NULL, why, whylen) != 0)
        goto out;
    ERR_clear_error();
    if ((b = BIO_new_mem_buf(buf, (int)len)) == NULL ||
        (infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL)) == NULL) {
        ssl_errmsg(why, whylen, "not a PEM file");
        goto out;
    }
    n = 0;
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *in = sk_X509_INFO_value(infos, i);
        if (in->x509 != NULL) {
            int ok = store != NULL ? X509_STORE_add_cert(store, in->x509) == 1
                                   : sk_X509_push(sk, in->x509) > 0;
            if (!ok) {
                ssl_errmsg(why, whylen, "cannot add a certificate");
                n = -1;
                goto out;
            }
            if (store == NULL)
                in->x509 = NULL; /* sk owns it now */
            n++;
        }
        if (in->crl != NULL && store != NULL && X509_STORE_add_crl(store, in->crl) != 1) {
            ssl_errmsg(why, whylen, "cannot add a CRL");
            n = -1;
            goto out;
        }
    }
out:
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(b);
    free(buf);
    ERR_clear_error();
    return n;
}

/* OpenSSL hashed directory entry names: 8 hex digits, '.', optional 'r' (CRL), digits. */
static int hashed_name(const char *s)
{
    for (int i = 0; i < 8; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    const char *q = s[8] == '.' ? s + 9 : "";
    q += *q == 'r';
    if (!isdigit((unsigned char)*q))
        return 0;
    while (isdigit((unsigned char)*q))
        q++;
    return *q == '\0';
}

/* Loads every entry of a hashed CA directory now, through load_pem(), rather than letting
 * OpenSSL open them lazily during verification (X509_STORE_load_path): a verification on the
 * loop never reads a file, and the store is the content the configuration's digest saw.
 * Entries that cannot be read are skipped, as OpenSSL's lookup skips them. */
static int load_hash_dir(X509_STORE *store, const char *dir, char err[256])
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char why[128];
    if (d == NULL) {
        snprintf(err, 256, "cannot use CA directory \"%s\": %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (!hashed_name(de->d_name))
            continue;
        size_t n = strlen(dir) + strlen(de->d_name) + 2;
        char *f = fs_xmalloc(n);
        snprintf(f, n, "%s/%s", dir, de->d_name);
        (void)load_pem(store, NULL, f, why, sizeof(why));
        free(f);
    }
    closedir(d);
    return 0;
}

int tlsc_ctx_new(tlsc_ctx_t **out, const tlsc_ctx_opts_t *o, char err[256])
{
    static atomic_uint_fast64_t next_id; /* pre-flight creates contexts on API threads too */
    char why[128] = "";
    tlsc_ctx_t *c = fs_xcalloc(1, sizeof(*c));
    c->refs = 1;
    c->id = atomic_fetch_add(&next_id, 1) + 1;
    c->intermediates = sk_X509_new_null();
    c->trust = X509_STORE_new();
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (c->intermediates == NULL || c->trust == NULL || c->ssl_ctx == NULL) {
        snprintf(err, 256, "OpenSSL context allocation failed");
        goto fail;
    }
    ERR_clear_error();
    if (o->ca_file != NULL && load_pem(c->trust, NULL, o->ca_file, why, sizeof(why)) <= 0) {
        snprintf(err, 256, "cannot load CA file \"%s\": %s", o->ca_file,
                 strcmp(why, "") ? why : "no PEM certificate in it");
        goto fail;
    }
    if (o->ca_dir != NULL && load_hash_dir(c->trust, o->ca_dir, err) != 0)
        goto fail;
    if (o->default_paths && X509_STORE_set_default_paths(c->trust) != 1) {
        snprintf(err, 256, "cannot load the system's default trusted roots");
        goto fail;
    }
    if (o->intermediates_file != NULL &&
        load_pem(NULL, c->intermediates, o->intermediates_file, why, sizeof(why)) <= 0) {
        snprintf(err, 256, "intermediates \"%s\": %s", o->intermediates_file,
                 strcmp(why, "") ? why : "no PEM certificate found");
        goto fail;
    }

    SSL_CTX *s = c->ssl_ctx;
    /* Level 0: the endpoint's own min/max versions decide what is acceptable, as Schannel's
     * registry does; OpenSSL's default level would refuse TLS 1.0 and SHA-1 outright. */
    SSL_CTX_set_security_level(s, 0);
    int minv = o->min_version ? o->min_version : TLS1_VERSION;
    int maxv = o->max_version ? o->max_version : TLS1_3_VERSION;
    if (!SSL_CTX_set_min_proto_version(s, minv) || !SSL_CTX_set_max_proto_version(s, maxv)) {
        snprintf(err, 256, "unsupported TLS version range");
        goto fail;
    }
    if (o->ciphers != NULL && SSL_CTX_set_cipher_list(s, o->ciphers) != 1) {
        snprintf(err, 256, "invalid cipher list \"%s\"", o->ciphers);
        goto fail;
    }
    if (o->ciphersuites != NULL && SSL_CTX_set_ciphersuites(s, o->ciphersuites) != 1) {
        snprintf(err, 256, "invalid TLS 1.3 cipher suites \"%s\"", o->ciphersuites);
        goto fail;
    }
    SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(s, accept_chain, NULL);
    SSL_CTX_set_max_cert_list(s, TLSC_MAX_CERT_LIST);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_info_callback(s, info_cb);
    ERR_clear_error();
    *out = c;
    return 0;
fail:
    ERR_clear_error();
    tlsc_ctx_unref(c);
    return -1;
}

tlsc_ctx_t *tlsc_ctx_ref(tlsc_ctx_t *c)
{
    c->refs++;
    return c;
}

void tlsc_ctx_unref(tlsc_ctx_t *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    SSL_CTX_free(c->ssl_ctx);
    X509_STORE_free(c->trust);
    sk_X509_pop_free(c->intermediates, X509_free);
    free(c);
}

int tlsc_init(tlsc_t *t, tlsc_ctx_t *ctx, const char *sni)
{
    memset(t, 0, sizeof(*t));
    t->alert_received = -1;
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        SSL_free(t->ssl);
        BIO_free(t->in);
        BIO_free(t->out);
        memset(t, 0, sizeof(*t));
        return -1;
    }
    BIO_set_mem_eof_return(t->in, -1); /* empty input means "retry", not EOF */
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_app_data(t->ssl, t);
    SSL_set_connect_state(t->ssl);
    /* RFC 6066: SNI carries host names only, never IP literals. */
    if (sni != NULL && !fs_is_ip_literal(sni))
        SSL_set_tlsext_host_name(t->ssl, sni);
    return 0;
}

void tlsc_free(tlsc_t *t)
{
    if (t->ssl != NULL)
        SSL_free(t->ssl); /* frees both BIOs */
    memset(t, 0, sizeof(*t));
}

int tlsc_feed(tlsc_t *t, const void *buf, size_t len)
{
    if (!t->first_bytes_seen && len > 0) {
        t->first_bytes_seen = 1;
        t->plain_http = len >= 5 && memcmp(buf, "HTTP/", 5) == 0;
    }
    if (BIO_ctrl_pending(t->in) + len > TLSC_MAX_INPUT) {
        t->err = TLSC_ERR_OVERFLOW;
        snprintf(t->errmsg, sizeof(t->errmsg), "peer sent more than %d unprocessed bytes",
                 TLSC_MAX_INPUT);
        return TLSC_FAIL;
    }
    if (len > 0 && BIO_write(t->in, buf, (int)len) != (int)len) {
        t->err = TLSC_ERR_OVERFLOW;
        snprintf(t->errmsg, sizeof(t->errmsg), "memory BIO write failed");
        return TLSC_FAIL;
    }
    return 0;
}

void tlsc_feed_eof(tlsc_t *t)
{
    BIO_set_mem_eof_return(t->in, 0);
}

static int fail_from_ssl(tlsc_t *t, int e, const char *phase)
{
    if (t->plain_http) {
        t->err = TLSC_ERR_PROTOCOL;
        snprintf(t->errmsg, sizeof(t->errmsg),
                 "%s: the server answered in plain HTTP (no TLS on this port)", phase);
    } else if (t->alert_received >= 0) {
        t->err = TLSC_ERR_PROTOCOL;
        snprintf(t->errmsg, sizeof(t->errmsg), "%s: server sent TLS alert \"%s\"", phase,
                 SSL_alert_desc_string_long(t->alert_received));
    } else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ||
               (e == SSL_ERROR_SSL &&
                ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        t->err = TLSC_ERR_CLOSED;
        snprintf(t->errmsg, sizeof(t->errmsg), "%s: the server closed the connection", phase);
    } else {
        t->err = TLSC_ERR_PROTOCOL;
        ssl_errmsg(t->errmsg, sizeof(t->errmsg), phase);
    }
    ERR_clear_error();
    return TLSC_FAIL;
}

int tlsc_handshake(tlsc_t *t)
{
    if (t->err != TLSC_ERR_NONE)
        return TLSC_FAIL;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return TLSC_DONE;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return TLSC_WANT_MORE;
    return fail_from_ssl(t, e, "TLS handshake");
}

size_t tlsc_output_pending(const tlsc_t *t)
{
    return BIO_ctrl_pending(t->out);
}

size_t tlsc_output(tlsc_t *t, void *buf, size_t cap)
{
    size_t n = BIO_ctrl_pending(t->out);
    if (n > cap)
        n = cap;
    if (n == 0)
        return 0;
    int r = BIO_read(t->out, buf, (int)n);
    return r > 0 ? (size_t)r : 0;
}

int tlsc_write(tlsc_t *t, const void *buf, size_t len)
{
    ERR_clear_error();
    size_t written = 0;
    int r = SSL_write_ex(t->ssl, buf, len, &written);
    if (r == 1 && written == len)
        return 0;
    return fail_from_ssl(t, SSL_get_error(t->ssl, r), "request");
}

int tlsc_read(tlsc_t *t, void *buf, size_t cap)
{
    ERR_clear_error();
    size_t n = 0;
    int r = SSL_read_ex(t->ssl, buf, cap, &n);
    if (r == 1)
        return (int)n;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
        ERR_clear_error();
        return TLSC_EOF;
    }
    if (e == SSL_ERROR_SSL &&
        ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return TLSC_EOF;
    }
    return fail_from_ssl(t, e, "response");
}

void tlsc_shutdown(tlsc_t *t)
{
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl))
        SSL_shutdown(t->ssl);
    ERR_clear_error();
}

STACK_OF(X509) * tlsc_peer_chain(const tlsc_t *t)
{
    return SSL_get_peer_cert_chain(t->ssl);
}

int tlsc_negotiated_version(const tlsc_t *t)
{
    return SSL_version(t->ssl);
}

const char *tlsc_cipher_name(const tlsc_t *t)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    return c ? SSL_CIPHER_get_name(c) : "";
}
