/* tlsc.c - sans-I/O TLS client over OpenSSL memory BIOs (see tlsc.h). Chain validation is
 * not done during the handshake: chain.c verifies the presented chain afterwards, once per
 * distinct chain, the way the fleet needs it. */
#include "probes/tlsc.h"
#include "probes/url.h"
#include "probes/util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

int tlsc_version_parse(const char *s)
{
    if (s == NULL)
        return 0;
    if (strcmp(s, "1.0") == 0)
        return TLS1_VERSION;
    if (strcmp(s, "1.1") == 0)
        return TLS1_1_VERSION;
    if (strcmp(s, "1.2") == 0)
        return TLS1_2_VERSION;
    if (strcmp(s, "1.3") == 0)
        return TLS1_3_VERSION;
    return 0;
}

const char *tlsc_version_name(int v)
{
    switch (v) {
    case TLS1_VERSION:
        return "TLSv1.0";
    case TLS1_1_VERSION:
        return "TLSv1.1";
    case TLS1_2_VERSION:
        return "TLSv1.2";
    case TLS1_3_VERSION:
        return "TLSv1.3";
    default:
        return "unknown";
    }
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

static int load_intermediates(STACK_OF(X509) * sk, const char *path, char err[256])
{
    BIO *b = BIO_new_file(path, "r");
    if (b == NULL) {
        snprintf(err, 256, "intermediates \"%s\": %s", path, strerror(errno));
        return -1;
    }
    X509 *x;
    int n = 0;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        sk_X509_push(sk, x);
        n++;
    }
    ERR_clear_error();
    BIO_free(b);
    if (n == 0) {
        snprintf(err, 256, "intermediates \"%s\": no PEM certificate found", path);
        return -1;
    }
    return 0;
}

int tlsc_ctx_new(tlsc_ctx_t **out, const tlsc_ctx_opts_t *o, char err[256])
{
    static atomic_uint_fast64_t next_id; /* pre-flight creates contexts on API threads too */
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
    if (o->ca_file != NULL && X509_STORE_load_file(c->trust, o->ca_file) != 1) {
        ssl_errmsg(err, 256, "cannot load CA file");
        snprintf(err + strlen(err), 256 - strlen(err), " (\"%s\")", o->ca_file);
        goto fail;
    }
    if (o->ca_dir != NULL && X509_STORE_load_path(c->trust, o->ca_dir) != 1) {
        snprintf(err, 256, "cannot use CA directory \"%s\"", o->ca_dir);
        goto fail;
    }
    if (o->default_paths && X509_STORE_set_default_paths(c->trust) != 1) {
        snprintf(err, 256, "cannot load the system's default trusted roots");
        goto fail;
    }
    if (o->intermediates_file != NULL &&
        load_intermediates(c->intermediates, o->intermediates_file, err) != 0)
        goto fail;

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
