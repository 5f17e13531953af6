/* test_tlsc.c - the sans-I/O TLS engine and chain validation, driven against an in-process
 * OpenSSL server over memory BIOs: no sockets, no event loop. */
#include "lab/pki.h"
#include "probes/chain.h"
#include "probes/tlsc.h"
#include "tests/test.h"

#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static lab_pki_t pki;
static char dir[] = "/tmp/fleetscan-tlsc-XXXXXX";
static tlsc_ctx_t *ctx; /* trusts the lab root */

typedef struct server_s {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;
} server_t;

static void server_init(server_t *s, lab_leaf_t leaf, int with_inter, int maxv)
{
    s->ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_security_level(s->ctx, 0);
    ASSERT(SSL_CTX_use_certificate(s->ctx, pki.leaf[leaf].cert) == 1);
    ASSERT(SSL_CTX_use_PrivateKey(s->ctx, pki.leaf[leaf].key) == 1);
    if (with_inter)
        ASSERT(SSL_CTX_add1_chain_cert(s->ctx, pki.inter.cert) == 1);
    if (maxv)
        SSL_CTX_set_max_proto_version(s->ctx, maxv);
    s->ssl = SSL_new(s->ctx);
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(s->in, -1);
    SSL_set_bio(s->ssl, s->in, s->out);
    SSL_set_accept_state(s->ssl);
}

static void server_free(server_t *s)
{
    SSL_free(s->ssl);
    SSL_CTX_free(s->ctx);
}

/* Pumps bytes both ways until the client handshake is done or fails. */
static int pump(tlsc_t *c, server_t *s)
{
    char buf[32768];
    for (int round = 0; round < 20; round++) {
        int r = tlsc_handshake(c);
        size_t n;
        while ((n = tlsc_output(c, buf, sizeof(buf))) > 0)
            BIO_write(s->in, buf, (int)n);
        if (r != TLSC_WANT_MORE)
            return r;
        SSL_do_handshake(s->ssl);
        ERR_clear_error();
        int m;
        while ((m = BIO_read(s->out, buf, sizeof(buf))) > 0)
            ASSERT(tlsc_feed(c, buf, (size_t)m) == 0);
    }
    return TLSC_WANT_MORE;
}

static chain_verdict_t verify(tlsc_t *c, const char *host, int64_t skew, const char *thumb)
{
    chain_check_t chk = {.host = host,
                         .at = (int64_t)time(NULL) + skew,
                         .expiring_soon_s = 30 * 86400,
                         .expect_thumbprint = thumb};
    chain_verdict_t v;
    ASSERT(chain_verify(ctx->trust, tlsc_peer_chain(c), ctx->intermediates, &chk, &v) == 0);
    return v;
}

static fs_cause_t handshake_and_verify(lab_leaf_t leaf, int with_inter, const char *host,
                                       int64_t skew, uint32_t *warnings)
{
    server_t s;
    tlsc_t c;
    server_init(&s, leaf, with_inter, 0);
    ASSERT(tlsc_init(&c, ctx, host) == 0);
    ASSERT_EQ(pump(&c, &s), TLSC_DONE);
    chain_verdict_t v = verify(&c, host, skew, NULL);
    fs_cause_t cause = v.cause;
    if (warnings)
        *warnings = v.warnings;
    if (cause != FS_CAUSE_NONE)
        fprintf(stderr, "   %s: %s\n", fs_cause_id(cause), v.message);
    chain_verdict_free(&v);
    tlsc_free(&c);
    server_free(&s);
    return cause;
}

static void test_good_and_app_data(void)
{
    server_t s;
    tlsc_t c;
    server_init(&s, LAB_LEAF_GOOD, 1, 0);
    ASSERT(tlsc_init(&c, ctx, "ns.lab.test") == 0);
    ASSERT_EQ(pump(&c, &s), TLSC_DONE);
    ASSERT_EQ(tlsc_negotiated_version(&c), TLS1_3_VERSION);
    ASSERT_EQ(sk_X509_num(tlsc_peer_chain(&c)), 2);
    chain_info_t info = {0};
    chain_info_capture(&info, tlsc_peer_chain(&c));
    ASSERT_EQ(info.n, 2);
    ASSERT_CONTAINS(info.certs[0].subject, "CN=ns.lab.test");
    ASSERT_CONTAINS(info.certs[1].subject, "Lab Issuing CA");
    ASSERT_EQ(strlen(info.certs[0].sha1), 40);
    ASSERT_EQ(strlen(info.certs[0].sha256), 64);
    ASSERT(info.certs[0].ncdp == 1 && strstr(info.certs[0].cdp[0], "/inter.crl") != NULL);
    ASSERT(info.certs[0].naia == 1 && strstr(info.certs[0].aia[0], "/inter.der") != NULL);
    ASSERT(info.certs[0].nsans >= 1);
    ASSERT_STREQ(info.certs[0].sans[0], "DNS:ns.lab.test");
    ASSERT(!info.certs[0].is_ca && info.certs[1].is_ca);

    /* Thumbprint pin: the right one passes, another fails. */
    char pin[65];
    ASSERT(chain_normalise_thumbprint(info.certs[0].sha1, pin) == 0);
    chain_verdict_t v = verify(&c, "ns.lab.test", 0, pin);
    ASSERT_EQ(v.cause, FS_CAUSE_NONE);
    chain_verdict_free(&v);
    ASSERT(chain_normalise_thumbprint(info.certs[1].sha256, pin) == 0);
    v = verify(&c, "ns.lab.test", 0, pin);
    ASSERT_EQ(v.cause, FS_CAUSE_THUMBPRINT_MISMATCH);
    chain_verdict_free(&v);
    ASSERT(chain_normalise_thumbprint("ab:cd", pin) < 0);
    chain_info_free(&info);

    /* Application data both ways. */
    const char req[] = "GET / HTTP/1.1\r\n\r\n";
    ASSERT_EQ(tlsc_write(&c, req, sizeof(req) - 1), 0);
    char buf[16384];
    size_t n = tlsc_output(&c, buf, sizeof(buf));
    BIO_write(s.in, buf, (int)n);
    char got[64];
    ASSERT_EQ(SSL_read(s.ssl, got, sizeof(got)), (int)sizeof(req) - 1);
    ASSERT_EQ(SSL_write(s.ssl, "HTTP/1.1 200 OK\r\n", 17), 17);
    int m = BIO_read(s.out, buf, sizeof(buf));
    ASSERT(tlsc_feed(&c, buf, (size_t)m) == 0);
    int r = tlsc_read(&c, got, sizeof(got));
    while (r == 0) /* TLS 1.3 session tickets come first */
        r = tlsc_read(&c, got, sizeof(got));
    ASSERT_EQ(r, 17);
    ASSERT(memcmp(got, "HTTP/1.1 200", 12) == 0);
    tlsc_free(&c);
    server_free(&s);
}

static void test_verify_causes(void)
{
    uint32_t w = 0;
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_GOOD, 1, "ns.lab.test", 0, &w), FS_CAUSE_NONE);
    ASSERT_EQ(w, 0);
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_GOOD, 0, "ns.lab.test", 0, NULL),
              FS_CAUSE_MISSING_INTERMEDIATE);
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_EXPIRED, 1, "ns.lab.test", 0, NULL),
              FS_CAUSE_CERT_EXPIRED);
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_NOTYET, 1, "ns.lab.test", 0, NULL),
              FS_CAUSE_CERT_NOT_YET_VALID);
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_WRONGHOST, 1, "ns.lab.test", 0, NULL),
              FS_CAUSE_HOSTNAME_MISMATCH);
    /* An endpoint whose clock is 3 days behind sees the good leaf as not yet valid. */
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_GOOD, 1, "ns.lab.test", -3 * 86400, NULL),
              FS_CAUSE_CERT_NOT_YET_VALID);
    /* ... and one 400 days ahead sees it expired. */
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_GOOD, 1, "ns.lab.test", 400 * 86400, NULL),
              FS_CAUSE_CERT_EXPIRED);
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_SHA1, 1, "ns.lab.test", 0, &w), FS_CAUSE_NONE);
    ASSERT(w & FS_WARN_BIT(FS_WARN_WEAK_SIGNATURE));
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_EXPIRING, 1, "ns.lab.test", 0, &w), FS_CAUSE_NONE);
    ASSERT(w & FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON));
    /* The legacy leaf chains to a root this endpoint does not trust. */
    ASSERT_EQ(handshake_and_verify(LAB_LEAF_LEGACY, 0, "ns.lab.test", 0, NULL),
              FS_CAUSE_MISSING_INTERMEDIATE);
}

static void test_untrusted_full_chain(void)
{
    /* Full chain ending in the rogue root: untrusted_ca, not missing_intermediate. */
    server_t s;
    tlsc_t c;
    server_init(&s, LAB_LEAF_ROGUE, 0, 0);
    ASSERT(SSL_CTX_add1_chain_cert(s.ctx, pki.rogue_root.cert) == 1);
    SSL_free(s.ssl);
    s.ssl = SSL_new(s.ctx);
    s.in = BIO_new(BIO_s_mem());
    s.out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(s.in, -1);
    SSL_set_bio(s.ssl, s.in, s.out);
    SSL_set_accept_state(s.ssl);
    ASSERT(tlsc_init(&c, ctx, "ns.lab.test") == 0);
    ASSERT_EQ(pump(&c, &s), TLSC_DONE);
    chain_verdict_t v = verify(&c, "ns.lab.test", 0, NULL);
    ASSERT_EQ(v.cause, FS_CAUSE_UNTRUSTED_CA);
    ASSERT_CONTAINS(v.message, "Rogue Root");
    chain_verdict_free(&v);
    tlsc_free(&c);
    server_free(&s);

    /* Intermediate sent, but the endpoint trusts only the legacy root: untrusted_ca. */
    char path[600];
    tlsc_ctx_t *legacy;
    char err[256];
    tlsc_ctx_opts_t o = {.ca_file = lab_pki_path(&pki, "old-root.pem", path, sizeof(path))};
    ASSERT(tlsc_ctx_new(&legacy, &o, err) == 0);
    server_init(&s, LAB_LEAF_GOOD, 1, 0);
    ASSERT(tlsc_init(&c, legacy, "ns.lab.test") == 0);
    ASSERT_EQ(pump(&c, &s), TLSC_DONE);
    chain_check_t chk = {.host = "ns.lab.test", .at = (int64_t)time(NULL)};
    ASSERT(chain_verify(legacy->trust, tlsc_peer_chain(&c), NULL, &chk, &v) == 0);
    ASSERT_EQ(v.cause, FS_CAUSE_UNTRUSTED_CA);
    chain_verdict_free(&v);
    tlsc_free(&c);
    server_free(&s);
    tlsc_ctx_unref(legacy);

    /* The endpoint holds the intermediate in its own store: the leaf-only server is fine. */
    tlsc_ctx_t *held;
    char ipath[600];
    tlsc_ctx_opts_t o2 = {.ca_file = lab_pki_path(&pki, "root.pem", path, sizeof(path)),
                          .intermediates_file =
                              lab_pki_path(&pki, "inter.pem", ipath, sizeof(ipath))};
    ASSERT(tlsc_ctx_new(&held, &o2, err) == 0);
    server_init(&s, LAB_LEAF_GOOD, 0, 0);
    ASSERT(tlsc_init(&c, held, "ns.lab.test") == 0);
    ASSERT_EQ(pump(&c, &s), TLSC_DONE);
    ASSERT(chain_verify(held->trust, tlsc_peer_chain(&c), held->intermediates, &chk, &v) == 0);
    ASSERT_EQ(v.cause, FS_CAUSE_NONE);
    chain_verdict_free(&v);
    tlsc_free(&c);
    server_free(&s);
    tlsc_ctx_unref(held);
}

static void test_failures(void)
{
    tlsc_t c;
    char buf[4096];
    /* Plain HTTP answer to the ClientHello. */
    ASSERT(tlsc_init(&c, ctx, "ns.lab.test") == 0);
    ASSERT_EQ(tlsc_handshake(&c), TLSC_WANT_MORE);
    ASSERT(tlsc_output(&c, buf, sizeof(buf)) > 0);
    const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    ASSERT(tlsc_feed(&c, http, sizeof(http) - 1) == 0);
    ASSERT_EQ(tlsc_handshake(&c), TLSC_FAIL);
    ASSERT_EQ(c.err, TLSC_ERR_PROTOCOL);
    ASSERT(c.plain_http);
    ASSERT_CONTAINS(c.errmsg, "plain HTTP");
    tlsc_free(&c);

    /* Garbage. */
    ASSERT(tlsc_init(&c, ctx, "ns.lab.test") == 0);
    tlsc_handshake(&c);
    tlsc_output(&c, buf, sizeof(buf));
    memset(buf, 0x5a, sizeof(buf));
    ASSERT(tlsc_feed(&c, buf, sizeof(buf)) == 0);
    ASSERT_EQ(tlsc_handshake(&c), TLSC_FAIL);
    ASSERT_EQ(c.err, TLSC_ERR_PROTOCOL);
    ASSERT(!c.plain_http);
    tlsc_free(&c);

    /* EOF mid-handshake. */
    ASSERT(tlsc_init(&c, ctx, "ns.lab.test") == 0);
    tlsc_handshake(&c);
    tlsc_output(&c, buf, sizeof(buf));
    tlsc_feed_eof(&c);
    ASSERT_EQ(tlsc_handshake(&c), TLSC_FAIL);
    ASSERT_EQ(c.err, TLSC_ERR_CLOSED);
    tlsc_free(&c);

    /* Input cap: a peer that floods without the engine consuming. */
    ASSERT(tlsc_init(&c, ctx, "ns.lab.test") == 0);
    int r = 0;
    for (int i = 0; i < 100 && r == 0; i++)
        r = tlsc_feed(&c, buf, sizeof(buf));
    ASSERT_EQ(r, TLSC_FAIL);
    ASSERT_EQ(c.err, TLSC_ERR_OVERFLOW);
    tlsc_free(&c);

    /* Version mismatch: the server speaks at most TLS 1.1, the endpoint wants >= 1.2. */
    server_t s;
    server_init(&s, LAB_LEAF_GOOD, 1, TLS1_1_VERSION);
    ASSERT(tlsc_init(&c, ctx, "ns.lab.test") == 0);
    ASSERT_EQ(pump(&c, &s), TLSC_FAIL);
    ASSERT_EQ(c.err, TLSC_ERR_PROTOCOL);
    tlsc_free(&c);
    server_free(&s);
}

static void test_ctx_errors(void)
{
    tlsc_ctx_t *c = NULL;
    char err[256];
    tlsc_ctx_opts_t o = {.ca_file = "/nonexistent/ca.pem"};
    ASSERT(tlsc_ctx_new(&c, &o, err) < 0);
    ASSERT_CONTAINS(err, "/nonexistent/ca.pem");
    tlsc_ctx_opts_t o2 = {.ciphers = "NOT-A-CIPHER"};
    ASSERT(tlsc_ctx_new(&c, &o2, err) < 0);
    ASSERT_CONTAINS(err, "cipher");
    ASSERT_EQ(tlsc_version_parse("1.2"), TLS1_2_VERSION);
    ASSERT_EQ(tlsc_version_parse("1.4"), 0);
    ASSERT_EQ(tlsc_version_parse(NULL), 0);
    /* one table: identifier and printed name of each version */
    ASSERT_STREQ(tlsc_version_id(TLS1_1_VERSION), "1.1");
    ASSERT(tlsc_version_id(SSL3_VERSION) == NULL);
    ASSERT_STREQ(tlsc_version_name(TLS1_3_VERSION), "TLSv1.3");
    ASSERT_STREQ(tlsc_version_name(SSL3_VERSION), "unknown");
}

/* The client side of a handshake in a child process that uses tlsc_builtin_keys(), as the
 * daemon does, over fd: its exit status says how far it got (0: the handshake completed, the
 * server's key was decoded the built-in way, and the chain verified). */
static int builtin_keys_client(int fd, const char *root)
{
    char err[256], buf[16384];
    if (OpenSSL_version_num() < 0x30000000UL || OpenSSL_version_num() >= 0x30100000UL)
        return tlsc_builtin_keys() == 0 ? 0 : 10; /* only on 3.0.x */
    if (tlsc_builtin_keys() != 1)
        return 11;
    tlsc_ctx_t *cc = NULL;
    tlsc_ctx_opts_t o = {.ca_file = root, .min_version = TLS1_2_VERSION};
    if (tlsc_ctx_new(&cc, &o, err) != 0)
        return 12;
    tlsc_t c;
    if (tlsc_init(&c, cc, "ns.lab.test") != 0)
        return 13;
    for (;;) {
        int r = tlsc_handshake(&c);
        size_t n;
        while ((n = tlsc_output(&c, buf, sizeof(buf))) > 0)
            if (send(fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
                return 14;
        if (r == TLSC_DONE)
            break;
        if (r == TLSC_FAIL) {
            fprintf(stderr, "   builtin keys: %s\n", c.errmsg);
            return 15;
        }
        ssize_t m = read(fd, buf, sizeof(buf));
        if (m <= 0 || tlsc_feed(&c, buf, (size_t)m) != 0)
            return 16;
    }
    X509 *leaf = sk_X509_value(tlsc_peer_chain(&c), 0);
    if (leaf == NULL || EVP_PKEY_get0_provider(X509_get0_pubkey(leaf)) != NULL)
        return 17; /* decoded by a provider: the built-in way is not in force */
    chain_check_t chk = {.host = "ns.lab.test", .at = (int64_t)time(NULL)};
    chain_verdict_t v;
    int rc = chain_verify(cc->trust, tlsc_peer_chain(&c), cc->intermediates, &chk, &v) == 0 &&
                     v.cause == FS_CAUSE_NONE
                 ? 0
                 : 18;
    chain_verdict_free(&v);
    tlsc_free(&c);
    tlsc_ctx_unref(cc);
    return rc;
}

/* The daemon's key decoding on OpenSSL 3.0 (tlsc_builtin_keys): a TLS 1.2 (PKCS#1 signature)
 * and a TLS 1.3 (RSA-PSS) handshake verified with keys decoded the built-in way. The client is
 * a child process: the lab server here signs with a provider key, which that mode cannot. */
static void test_builtin_keys(void)
{
    char root[600];
    lab_pki_path(&pki, "root.pem", root, sizeof(root));
    for (int maxv = TLS1_2_VERSION; maxv <= TLS1_3_VERSION; maxv++) {
        int sv[2];
        ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        fflush(NULL);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            close(sv[0]);
            _exit(builtin_keys_client(sv[1], root));
        }
        close(sv[1]);
        server_t s;
        server_init(&s, LAB_LEAF_GOOD, 1, maxv);
        char buf[16384];
        ssize_t m;
        while ((m = read(sv[0], buf, sizeof(buf))) > 0) {
            ASSERT(BIO_write(s.in, buf, (int)m) == (int)m);
            int r = SSL_do_handshake(s.ssl);
            int n;
            while ((n = BIO_read(s.out, buf, sizeof(buf))) > 0)
                (void)send(sv[0], buf, (size_t)n, MSG_NOSIGNAL);
            if (r == 1)
                break;
        }
        int st = 0;
        ASSERT(waitpid(pid, &st, 0) == pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fprintf(stderr, "   builtin keys, max version %#x: child status %d\n", maxv,
                    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        close(sv[0]);
        server_free(&s);
    }
}

int main(void)
{
    char err[256], path[600];
    ASSERT(mkdtemp(dir) != NULL);
    ASSERT(lab_pki_create(&pki, dir, "ns.lab.test", "http://crl.lab.test:1", err) == 0);
    tlsc_ctx_opts_t o = {.ca_file = lab_pki_path(&pki, "root.pem", path, sizeof(path)),
                         .min_version = TLS1_2_VERSION};
    ASSERT(tlsc_ctx_new(&ctx, &o, err) == 0);
    RUN(test_good_and_app_data);
    RUN(test_verify_causes);
    RUN(test_untrusted_full_chain);
    RUN(test_failures);
    RUN(test_ctx_errors);
    RUN(test_builtin_keys);
    tlsc_ctx_unref(ctx);
    lab_pki_free(&pki);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT(system(cmd) == 0);
    return 0;
}
