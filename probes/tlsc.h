/* tlsc.h - the sans-I/O TLS client engine: OpenSSL over memory BIOs, bytes in and bytes
 * out, no sockets and no event loop inside, so it is unit-testable without a network. */
#ifndef FS_TLSC_H
#define FS_TLSC_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Most bytes the engine buffers from the peer before it must process them. A TLS record is
 * at most 16 KiB + 2 KiB; anything beyond this cap is a misbehaving peer. */
#define TLSC_MAX_INPUT (256 * 1024)
/* Largest certificate list accepted from a server (SSL_CTX_set_max_cert_list). */
#define TLSC_MAX_CERT_LIST (128 * 1024)

/* One shared context per distinct endpoint TLS configuration: the SSL_CTX for handshakes
 * and the endpoint's trust (roots + the intermediates it already holds). Built once,
 * reference counted, read-only after creation (safe to share across probes). */
typedef struct tlsc_ctx_s {
    SSL_CTX *ssl_ctx;
    X509_STORE *trust;              /* trusted roots (CA file and/or dir) */
    STACK_OF(X509) * intermediates; /* endpoint's Intermediate CA store; may be empty */
    int refs;
    uint64_t id; /* unique per process, never reused: a cache key that outlives the pointer */
} tlsc_ctx_t;

typedef struct tlsc_ctx_opts_s {
    const char *ca_file;            /* PEM roots, may be NULL */
    const char *ca_dir;             /* hashed dir of roots, may be NULL */
    int default_paths;              /* also load OpenSSL's default roots (/etc/ssl/certs) */
    const char *intermediates_file; /* PEM intermediates the endpoint holds, may be NULL */
    int min_version;                /* TLS1_VERSION..TLS1_3_VERSION, 0 = TLS 1.0 */
    int max_version;                /* 0 = TLS 1.3 */
    const char *ciphers;            /* TLS <= 1.2 cipher list, NULL = OpenSSL default */
    const char *ciphersuites;       /* TLS 1.3 suites, NULL = default */
} tlsc_ctx_opts_t;

/* Creates a context. Returns 0, or -1 with a message in err (unreadable CA file, bad cipher
 * list...). The context starts with one reference. */
int tlsc_ctx_new(tlsc_ctx_t **out, const tlsc_ctx_opts_t *o, char err[256]);
tlsc_ctx_t *tlsc_ctx_ref(tlsc_ctx_t *c);
void tlsc_ctx_unref(tlsc_ctx_t *c);
/* The TLS versions an endpoint may be limited to, oldest first, defined once:
 * X(OpenSSL constant, identifier in the configuration and the CLI, name as OpenSSL prints it). */
#define TLSC_VERSION_LIST(X)                                                                       \
    X(TLS1_VERSION, "1.0", "TLSv1.0")                                                              \
    X(TLS1_1_VERSION, "1.1", "TLSv1.1")                                                            \
    X(TLS1_2_VERSION, "1.2", "TLSv1.2")                                                            \
    X(TLS1_3_VERSION, "1.3", "TLSv1.3")
/* Parses an identifier ("1.0".."1.3") into a TLS*_VERSION constant; returns 0 when unknown. */
int tlsc_version_parse(const char *s);
/* The identifier of a TLS*_VERSION constant ("1.2"), or NULL when not in the list. */
const char *tlsc_version_id(int v);
/* The name OpenSSL prints ("TLSv1.2"), or "unknown". */
const char *tlsc_version_name(int v);

typedef enum {
    TLSC_ERR_NONE = 0,
    TLSC_ERR_PROTOCOL, /* alert, version/cipher mismatch, not TLS */
    TLSC_ERR_CLOSED,   /* peer closed during the handshake */
    TLSC_ERR_OVERFLOW, /* peer sent more than TLSC_MAX_INPUT unprocessed bytes */
} tlsc_err_t;

/* One TLS connection. Embed by value; tlsc_init() then tlsc_free(). */
typedef struct tlsc_s {
    SSL *ssl;
    BIO *in;  /* network -> SSL */
    BIO *out; /* SSL -> network */
    tlsc_err_t err;
    int alert_received; /* TLS alert description from the peer, -1 if none */
    int plain_http;     /* the peer answered in plain HTTP ("HTTP/" bytes) */
    int first_bytes_seen;
    char errmsg[200];
} tlsc_t;

enum { TLSC_DONE = 0, TLSC_WANT_MORE = 1, TLSC_FAIL = -1, TLSC_EOF = -2 };

/* Prepares a client connection. sni may be NULL (no server_name extension sent).
 * Returns 0 or -1 (allocation failure). */
int tlsc_init(tlsc_t *t, tlsc_ctx_t *ctx, const char *sni);
void tlsc_free(tlsc_t *t);

/* Gives bytes received from the network to the engine. Returns 0, or TLSC_FAIL when the
 * input cap is exceeded (t->err = TLSC_ERR_OVERFLOW). */
int tlsc_feed(tlsc_t *t, const void *buf, size_t len);
/* Tells the engine the peer closed the stream (EOF). */
void tlsc_feed_eof(tlsc_t *t);

/* Advances the handshake. Returns TLSC_DONE once established, TLSC_WANT_MORE when it needs
 * more input (send tlsc_output() first), or TLSC_FAIL with t->err and t->errmsg set.
 * Output (including alerts after a failure) must be drained after every call. */
int tlsc_handshake(tlsc_t *t);

/* Bytes waiting to be sent to the peer: copies up to cap into buf, returns the count. */
size_t tlsc_output(tlsc_t *t, void *buf, size_t cap);
size_t tlsc_output_pending(const tlsc_t *t);

/* Application data once established. tlsc_write returns 0 or TLSC_FAIL (output then
 * waits in tlsc_output). tlsc_read returns bytes read (> 0), 0 when it needs more input,
 * TLSC_EOF (close_notify or EOF) or TLSC_FAIL. */
int tlsc_write(tlsc_t *t, const void *buf, size_t len);
int tlsc_read(tlsc_t *t, void *buf, size_t cap);
/* Queues a close_notify alert (drain tlsc_output afterwards). */
void tlsc_shutdown(tlsc_t *t);

/* After the handshake (or a verification-stage failure): the presented chain, leaf first,
 * owned by the connection; NULL when the server sent no certificate. */
STACK_OF(X509) * tlsc_peer_chain(const tlsc_t *t);
int tlsc_negotiated_version(const tlsc_t *t);
const char *tlsc_cipher_name(const tlsc_t *t);

/* Process-wide, once (tlsc_keys.c): on OpenSSL 3.0.x, RSA and EC public keys (of certificates,
 * CRL and OCSP signers) are decoded, and every EVP_PKEY_CTX of those two types is served, by
 * OpenSSL's built-in methods, through an ENGINE registered for them, instead of a provider
 * decoder chain searched for every key parsed (a third of a handshake's CPU on 3.0). Only for
 * a process that never uses a provider-made RSA or EC key (EVP_RSA_gen, a key read by the
 * decoders): the built-in methods cannot sign with one. That is the daemon and the CLI, not a
 * process that also runs the lab's TLS servers (tests, `fleetscan demo`). Returns 1 when in
 * force, 0 when not (another OpenSSL, no ENGINE support, FLEETSCAN_OPENSSL_DECODERS set).
 * Thread-safe; call it before the first context. */
int tlsc_builtin_keys(void);

#endif
