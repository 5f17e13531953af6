/* tlsserver.h - loopback scenario servers on ephemeral ports: a real TLS binding (with an
 * optional no-SNI default binding, like IIS) and servers that stall, reset, close or babble. */
#ifndef LAB_TLSSERVER_H
#define LAB_TLSSERVER_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

typedef enum lab_tls_mode_e {
    LAB_TLS_SERVE,      /* TLS handshake, then one HTTP request answered, Connection: close */
    LAB_TLS_PLAIN_HTTP, /* plain HTTP: 200 to a request line, 400 Bad Request to anything else */
    LAB_TLS_STALL,      /* accepts, never sends, holds the socket until the client leaves or stop */
    LAB_TLS_GARBAGE,    /* accepts, writes 4 KiB of non-TLS bytes, closes */
    LAB_TLS_RESET,      /* accepts, reads the ClientHello, closes with an RST (SO_LINGER 0) */
    LAB_TLS_CLOSE,      /* accepts, reads the ClientHello, closes cleanly (FIN, no alert) */
    LAB_TLS_RESET_ACCEPT,    /* closes each connection with an RST as soon as it is accepted */
    LAB_TLS_ENDLESS_HEADERS, /* handshake, then to a request "200 OK" and header lines forever */
    LAB_TLS_ENDLESS_BODY,    /* handshake, then to a request "200 OK", no length, bytes forever */
    LAB_TLS_TRICKLE,         /* a real handshake whose server bytes go out one per trickle_ms */
    LAB_TLS_MODE_COUNT
} lab_tls_mode_t;

extern const char *const lab_tls_mode_names[LAB_TLS_MODE_COUNT];

/* Server options; the server takes its own references, the caller keeps ownership of its. */
typedef struct lab_tls_opts_s {
    lab_tls_mode_t mode;
    /* LAB_TLS_SERVE: the binding for clients that send SNI (any name) */
    X509 *cert;
    EVP_PKEY *key;
    X509 *const *chain; /* sent after cert, in order; exactly these (no auto chain building) */
    size_t nchain;
    /* optional default binding for clients without SNI; NULL: cert/key serve everyone */
    X509 *nosni_cert;
    EVP_PKEY *nosni_key;
    X509 *const *nosni_chain;
    size_t nosni_nchain;
    int min_version, max_version; /* TLS1_VERSION..TLS1_3_VERSION; 0: OpenSSL's bound */
    /* status line answered to a request (SERVE) or a GET (PLAIN_HTTP); NULL: "HTTP/1.1 200 OK" */
    const char *status_line;
    /* when response_len > 0: these bytes (copied; NULs allowed) are the whole answer instead of
     * status_line and the usual headers, for clients that must cope with odd servers */
    const void *response;
    size_t response_len;
    /* SERVE: complete the handshake, read the request and never answer it (an agent URL that
     * hangs), holding the connection until the client leaves or stop */
    int no_answer;
    /* where to listen: an IPv4 address (NULL: 127.0.0.1) and a port (0: an ephemeral one), so
     * several servers can share a port on different loopback addresses, like a farm's nodes */
    const char *bind_addr;
    int port;
    unsigned trickle_ms; /* LAB_TLS_TRICKLE: between two bytes; 0: 1000 */
} lab_tls_opts_t;

typedef struct lab_tls_s lab_tls_t;

/* Starts a server on bind_addr:port (127.0.0.1, ephemeral): an accept thread plus one thread per
 * connection, with all signals blocked in them. Every socket wait polls a stop flag, so
 * lab_tls_stop returns within ~200 ms whatever clients do. A connection lives at most 10 s
 * (STALL: until the client leaves). Returns NULL with err on failure.
 * The security level is 0 so SHA-1 certificates and old protocols are served when the local
 * OpenSSL can. */
lab_tls_t *lab_tls_start(const lab_tls_opts_t *o, char err[256]);
int lab_tls_port(const lab_tls_t *s);
/* TCP connections accepted so far. Thread-safe. */
unsigned lab_tls_accepts(const lab_tls_t *s);
/* TLS handshakes completed so far (SERVE). Thread-safe. */
unsigned lab_tls_handshakes(const lab_tls_t *s);
/* Stops, joins every thread, frees. NULL is a no-op. */
void lab_tls_stop(lab_tls_t *s);

/* 1 when this OpenSSL completes a TLS 1.0 handshake at security level 0 (memory BIOs, computed
 * once), else 0. Tests needing TLS 1.0 skip when it is 0. */
int lab_tls10_supported(void);
/* A 127.0.0.1 TCP port nothing listens on, or -1: bound and never listening for the rest of the
 * process (one descriptor each call), so no other process can take it meanwhile. */
int lab_closed_port(void);

#endif
