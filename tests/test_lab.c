/* test_lab.c - tests for the lab module: the generated PKI verifies the way the scenarios need,
 * and the loopback HTTP and TLS servers behave (and misbehave) as documented. */
#include "lab/httpserver.h"
#include "lab/pki.h"
#include "lab/tlsserver.h"

#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HOST "ns.lab.test"

static lab_pki_t pki; /* one scenario PKI shared by the PKI and TLS tests */
static char pki_dir[] = "/tmp/fleetscan-test-lab-XXXXXX";
static lab_http_t *crl_http; /* serves pki's CRLs and AIA certificates */

/* ---- HTTP server ---------------------------------------------------------------------------- */

typedef struct fetch_s {
    char buf[8192];
    size_t len;  /* bytes kept in buf */
    size_t seen; /* bytes received in total */
    size_t cap;  /* abort the transfer past this many bytes (0: no cap besides buf) */
} fetch_t;

static size_t fetch_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    fetch_t *f = ud;
    size_t n = size * nmemb;
    f->seen += n;
    size_t room = sizeof(f->buf) - 1 - f->len;
    memcpy(f->buf + f->len, ptr, n < room ? n : room);
    f->len += n < room ? n : room;
    f->buf[f->len] = '\0';
    if (f->cap != 0 && f->seen > f->cap)
        return 0; /* abort: CURLE_WRITE_ERROR */
    return n;
}

/* GETs http://127.0.0.1:port/path; returns the curl code, fills *status and f. */
static CURLcode fetch(int port, const char *path, long timeout_ms, long *status, fetch_t *f)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    ASSERT(c != NULL);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    return rc;
}

static void test_http_static_404_hits(void)
{
    char err[256];
    lab_http_t *h = lab_http_start(err);
    ASSERT(h != NULL);
    ASSERT(lab_http_port(h) > 0);
    lab_http_set(h, "/a.crl", 200, "hello", 5, "application/pkix-crl");

    fetch_t f = {0};
    long st;
    ASSERT_EQ(fetch(lab_http_port(h), "/a.crl", 5000, &st, &f), CURLE_OK);
    ASSERT_EQ(st, 200);
    ASSERT_STREQ(f.buf, "hello");

    memset(&f, 0, sizeof(f));
    ASSERT_EQ(fetch(lab_http_port(h), "/nope", 5000, &st, &f), CURLE_OK);
    ASSERT_EQ(st, 404);

    /* Replacing a route while the server runs takes effect for the next request. */
    lab_http_set(h, "/a.crl", 503, "down", 4, NULL);
    memset(&f, 0, sizeof(f));
    ASSERT_EQ(fetch(lab_http_port(h), "/a.crl?x=1", 5000, &st, &f), CURLE_OK);
    ASSERT_EQ(st, 503);
    ASSERT_STREQ(f.buf, "down");

    ASSERT_EQ(lab_http_hits(h, "/a.crl"), 2);
    ASSERT_EQ(lab_http_hits(h, "/nope"), 1);
    ASSERT_EQ(lab_http_hits(h, "/never"), 0);
    lab_http_stop(h);
}

static void test_http_endless_capped(void)
{
    char err[256];
    lab_http_t *h = lab_http_start(err);
    ASSERT(h != NULL);
    lab_http_set_special(h, "/endless", LAB_HTTP_ENDLESS);
    fetch_t f = {.cap = 256 * 1024};
    long st;
    ASSERT_EQ(fetch(lab_http_port(h), "/endless", 5000, &st, &f), CURLE_WRITE_ERROR);
    ASSERT_EQ(st, 200);
    ASSERT(f.seen > f.cap);
    ASSERT_EQ(lab_http_hits(h, "/endless"), 1);
    lab_http_stop(h);
}

static void test_http_reset_and_stall(void)
{
    char err[256];
    lab_http_t *h = lab_http_start(err);
    ASSERT(h != NULL);
    lab_http_set_special(h, "/reset", LAB_HTTP_RESET);
    lab_http_set_special(h, "/stall", LAB_HTTP_STALL);
    fetch_t f = {0};
    long st;
    CURLcode rc = fetch(lab_http_port(h), "/reset", 5000, &st, &f);
    ASSERT(rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR);
    ASSERT_EQ(st, 0);
    memset(&f, 0, sizeof(f));
    ASSERT_EQ(fetch(lab_http_port(h), "/stall", 300, &st, &f), CURLE_OPERATION_TIMEDOUT);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(lab_http_hits(h, "/stall"), 1);
    lab_http_stop(h);
}

typedef struct trickle_arg_s {
    int port;
    fetch_t f;
    long status;
    CURLcode rc;
} trickle_arg_t;

static void *trickle_client(void *ud)
{
    trickle_arg_t *a = ud;
    a->rc = fetch(a->port, "/trickle", 20000, &a->status, &a->f);
    return NULL;
}

/* The server stops promptly while a client is mid-trickle and another waits on a stall. */
static void test_http_stop_while_slow(void)
{
    char err[256];
    lab_http_t *h = lab_http_start(err);
    ASSERT(h != NULL);
    lab_http_set_special(h, "/trickle", LAB_HTTP_TRICKLE);
    trickle_arg_t a = {.port = lab_http_port(h)};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, trickle_client, &a), 0);
    while (lab_http_hits(h, "/trickle") == 0) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {1, 200 * 1000000L};
    nanosleep(&ts, NULL); /* ~2 bytes trickled */
    lab_http_stop(h);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT(a.rc != CURLE_OK && a.rc != CURLE_OPERATION_TIMEDOUT);
    ASSERT_EQ(a.status, 200);
    ASSERT(a.f.seen >= 1 && a.f.seen <= 4);
}

typedef struct delay_arg_s {
    int port;
    long status;
    fetch_t f;
} delay_arg_t;

static void *delay_client(void *ud)
{
    delay_arg_t *a = ud;
    ASSERT_EQ(fetch(a->port, "/slow", 5000, &a->status, &a->f), CURLE_OK);
    return NULL;
}

/* A delayed route still serves concurrent clients (one thread per connection). */
static void test_http_delay_concurrent(void)
{
    char err[256];
    lab_http_t *h = lab_http_start(err);
    ASSERT(h != NULL);
    lab_http_set_delay_ms(h, "/slow", 300);
    lab_http_set(h, "/slow", 200, "ok", 2, "text/plain");
    delay_arg_t a[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        a[i].port = lab_http_port(h);
        ASSERT_EQ(pthread_create(&t[i], NULL, delay_client, &a[i]), 0);
    }
    /* While they all wait, another route answers. */
    fetch_t f = {0};
    long st;
    lab_http_set(h, "/fast", 200, "f", 1, NULL);
    ASSERT_EQ(fetch(lab_http_port(h), "/fast", 5000, &st, &f), CURLE_OK);
    ASSERT_EQ(st, 200);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
        ASSERT_EQ(a[i].status, 200);
        ASSERT_STREQ(a[i].f.buf, "ok");
    }
    ASSERT_EQ(lab_http_hits(h, "/slow"), 4);
    lab_http_stop(h);
}

/* ---- PKI ------------------------------------------------------------------------------------ */

static X509 *load_cert(const char *file)
{
    char path[1024];
    FILE *f = fopen(lab_pki_path(&pki, file, path, sizeof(path)), "r");
    ASSERT(f != NULL);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ASSERT(x != NULL);
    return x;
}

static unsigned char *load_file(const char *file, size_t *len)
{
    char path[1024];
    static unsigned char buf[65536];
    FILE *f = fopen(lab_pki_path(&pki, file, path, sizeof(path)), "rb");
    ASSERT(f != NULL);
    *len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return buf;
}

/* Verifies leaf against trust with optional untrusted intermediates, host and CRLs; returns
 * the X509_V_* result. */
static int verify(X509 *leaf, X509 *trust, X509 *untrusted, const char *host, X509_CRL *crl)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    ASSERT(store && ctx && chain);
    ASSERT(X509_STORE_add_cert(store, trust) == 1);
    if (untrusted != NULL)
        sk_X509_push(chain, untrusted);
    if (crl != NULL) {
        ASSERT(X509_STORE_add_crl(store, crl) == 1);
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    ASSERT(X509_STORE_CTX_init(ctx, store, leaf, chain) == 1);
    if (host != NULL)
        X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), host, 0);
    int ok = X509_verify_cert(ctx);
    int e = X509_STORE_CTX_get_error(ctx);
    ASSERT(ok == 1 ? e == X509_V_OK : e != X509_V_OK);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(chain);
    return e;
}

static void test_pki_files(void)
{
    static const char *const files[] = {"root.pem",  "inter.pem", "old-root.pem", "rogue-root.pem",
                                        "inter.crl", "root.crl",  "inter.der",    "root.der"};
    char path[1024], name[64];
    struct stat st;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        ASSERT(stat(lab_pki_path(&pki, files[i], path, sizeof(path)), &st) == 0);
        ASSERT(st.st_size > 0);
    }
    for (int i = 0; i < LAB_LEAF_COUNT; i++) {
        const char *suffix[] = {".pem", "-chain.pem", "-key.pem"};
        for (int j = 0; j < 3; j++) {
            snprintf(name, sizeof(name), "%s%s", lab_leaf_names[i], suffix[j]);
            ASSERT(stat(lab_pki_path(&pki, name, path, sizeof(path)), &st) == 0);
            ASSERT(st.st_size > 0);
        }
    }
    /* The chain file holds leaf then intermediate. */
    FILE *f = fopen(lab_pki_path(&pki, "good-chain.pem", path, sizeof(path)), "r");
    ASSERT(f != NULL);
    X509 *a = PEM_read_X509(f, NULL, NULL, NULL), *b = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ASSERT(a && b);
    ASSERT_EQ(X509_cmp(a, pki.leaf[LAB_LEAF_GOOD].cert), 0);
    ASSERT_EQ(X509_cmp(b, pki.inter.cert), 0);
    X509_free(a);
    X509_free(b);
    /* The key file matches the certificate. */
    f = fopen(lab_pki_path(&pki, "good-key.pem", path, sizeof(path)), "r");
    ASSERT(f != NULL);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ASSERT(k != NULL);
    ASSERT_EQ(X509_check_private_key(pki.leaf[LAB_LEAF_GOOD].cert, k), 1);
    EVP_PKEY_free(k);
}

static void test_pki_verify(void)
{
    X509 *root = load_cert("root.pem"), *inter = load_cert("inter.pem");
    X509 *old_root = load_cert("old-root.pem"), *rogue_root = load_cert("rogue-root.pem");
    X509 *leaf[LAB_LEAF_COUNT];
    for (int i = 0; i < LAB_LEAF_COUNT; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s.pem", lab_leaf_names[i]);
        leaf[i] = load_cert(name);
    }

    ASSERT_EQ(verify(leaf[LAB_LEAF_GOOD], root, inter, HOST, NULL), X509_V_OK);
    ASSERT_EQ(verify(leaf[LAB_LEAF_GOOD], root, NULL, HOST, NULL),
              X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    ASSERT_EQ(verify(leaf[LAB_LEAF_GOOD], old_root, inter, HOST, NULL),
              X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    ASSERT_EQ(verify(leaf[LAB_LEAF_EXPIRED], root, inter, HOST, NULL), X509_V_ERR_CERT_HAS_EXPIRED);
    ASSERT_EQ(verify(leaf[LAB_LEAF_NOTYET], root, inter, HOST, NULL),
              X509_V_ERR_CERT_NOT_YET_VALID);
    ASSERT_EQ(verify(leaf[LAB_LEAF_WRONGHOST], root, inter, HOST, NULL),
              X509_V_ERR_HOSTNAME_MISMATCH);
    ASSERT_EQ(verify(leaf[LAB_LEAF_WRONGHOST], root, inter, "other.lab.test", NULL), X509_V_OK);
    ASSERT_EQ(verify(leaf[LAB_LEAF_SHA1], root, inter, HOST, NULL), X509_V_OK);
    ASSERT_EQ(X509_get_signature_nid(leaf[LAB_LEAF_SHA1]), NID_sha1WithRSAEncryption);
    ASSERT_EQ(X509_get_signature_nid(leaf[LAB_LEAF_GOOD]), NID_sha256WithRSAEncryption);
    ASSERT_EQ(verify(leaf[LAB_LEAF_EXPIRING], root, inter, HOST, NULL), X509_V_OK);
    ASSERT(X509_cmp_time(X509_get0_notAfter(leaf[LAB_LEAF_EXPIRING]),
                         &(time_t){time(NULL) + 6 * 86400}) < 0);
    ASSERT_EQ(verify(leaf[LAB_LEAF_ROGUE], root, NULL, HOST, NULL),
              X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    ASSERT_EQ(verify(leaf[LAB_LEAF_ROGUE], rogue_root, NULL, HOST, NULL), X509_V_OK);
    ASSERT_EQ(verify(leaf[LAB_LEAF_LEGACY], old_root, NULL, HOST, NULL), X509_V_OK);
    ASSERT_EQ(X509_check_ip_asc(leaf[LAB_LEAF_GOOD], "127.0.0.1", 0), 1);
    ASSERT_EQ(X509_check_ca(inter), 1);
    ASSERT_EQ(X509_check_ca(leaf[LAB_LEAF_GOOD]), 0);
    ASSERT(X509_get_extension_flags(leaf[LAB_LEAF_GOOD]) & EXFLAG_XKUSAGE);
    ASSERT(X509_get_extended_key_usage(leaf[LAB_LEAF_GOOD]) & XKU_SSL_SERVER);

    /* CDP and AIA point at the CRL host. */
    char want[256];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/inter.crl", lab_http_port(crl_http));
    STACK_OF(DIST_POINT) *cdp =
        X509_get_ext_d2i(leaf[LAB_LEAF_GOOD], NID_crl_distribution_points, NULL, NULL);
    ASSERT(cdp != NULL && sk_DIST_POINT_num(cdp) == 1);
    GENERAL_NAME *gn =
        sk_GENERAL_NAME_value(sk_DIST_POINT_value(cdp, 0)->distpoint->name.fullname, 0);
    ASSERT_EQ(gn->type, GEN_URI);
    ASSERT_STREQ((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), want);
    CRL_DIST_POINTS_free(cdp);
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(leaf[LAB_LEAF_GOOD], NID_info_access, NULL, NULL);
    ASSERT(aia != NULL && sk_ACCESS_DESCRIPTION_num(aia) == 1);
    ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, 0);
    ASSERT_EQ(OBJ_obj2nid(ad->method), NID_ad_ca_issuers);
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/inter.der", lab_http_port(crl_http));
    ASSERT_STREQ((const char *)ASN1_STRING_get0_data(ad->location->d.uniformResourceIdentifier),
                 want);
    AUTHORITY_INFO_ACCESS_free(aia);

    /* inter.crl: signed by inter, lists only the revoked leaf, usable for a CRL check. */
    size_t len;
    const unsigned char *der = load_file("inter.crl", &len);
    X509_CRL *crl = d2i_X509_CRL(NULL, &der, (long)len);
    ASSERT(crl != NULL);
    ASSERT_EQ(X509_CRL_verify(crl, X509_get0_pubkey(inter)), 1);
    ASSERT(X509_CRL_verify(crl, X509_get0_pubkey(root)) != 1);
    ERR_clear_error();
    X509_REVOKED *rev = NULL;
    ASSERT_EQ(X509_CRL_get0_by_cert(crl, &rev, leaf[LAB_LEAF_REVOKED]), 1);
    ASSERT_EQ(ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(rev),
                               X509_get0_serialNumber(leaf[LAB_LEAF_REVOKED])),
              0);
    ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
    ASSERT(reason != NULL);
    ASSERT_EQ(ASN1_ENUMERATED_get(reason), CRL_REASON_KEY_COMPROMISE);
    ASN1_ENUMERATED_free(reason);
    ASSERT_EQ(X509_CRL_get0_by_cert(crl, &rev, leaf[LAB_LEAF_GOOD]), 0);
    ASSERT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1);
    ASSERT(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &(time_t){time(NULL) + 6 * 86400}) > 0);
    ASSERT(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &(time_t){time(NULL) + 8 * 86400}) < 0);
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    ASSERT(num != NULL);
    ASN1_INTEGER_free(num);
    AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    ASSERT(akid != NULL && akid->keyid != NULL);
    ASSERT_EQ(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(inter)), 0);
    AUTHORITY_KEYID_free(akid);

    /* Path validation with the CRL: revoked fails, good passes. */
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, inter);
    X509_STORE_add_cert(store, root);
    X509_STORE_add_crl(store, crl);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    X509_STORE_CTX_init(ctx, store, leaf[LAB_LEAF_REVOKED], chain);
    ASSERT(X509_verify_cert(ctx) != 1);
    ASSERT_EQ(X509_STORE_CTX_get_error(ctx), X509_V_ERR_CERT_REVOKED);
    X509_STORE_CTX_cleanup(ctx);
    X509_STORE_CTX_init(ctx, store, leaf[LAB_LEAF_GOOD], chain);
    ASSERT_EQ(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(chain);

    /* root.crl is empty and signed by the root. */
    der = load_file("root.crl", &len);
    X509_CRL *rcrl = d2i_X509_CRL(NULL, &der, (long)len);
    ASSERT(rcrl != NULL);
    ASSERT_EQ(X509_CRL_verify(rcrl, X509_get0_pubkey(root)), 1);
    ASSERT(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(rcrl)) <= 0); /* NULL when empty */
    X509_CRL_free(rcrl);
    X509_CRL_free(crl);

    for (int i = 0; i < LAB_LEAF_COUNT; i++)
        X509_free(leaf[i]);
    X509_free(root);
    X509_free(inter);
    X509_free(old_root);
    X509_free(rogue_root);
}

static void test_pki_crl_pem_and_publish(void)
{
    char *pem;
    size_t pem_len;
    ASSERT_EQ(lab_der_to_pem(pki.inter_crl, pki.inter_crl_len, "X509 CRL", &pem, &pem_len), 0);
    ASSERT_CONTAINS(pem, "-----BEGIN X509 CRL-----");
    BIO *b = BIO_new_mem_buf(pem, (int)pem_len);
    X509_CRL *crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
    ASSERT(crl != NULL);
    X509_CRL_free(crl);
    BIO_free(b);
    free(pem);

    fetch_t f = {0};
    long st;
    ASSERT_EQ(fetch(lab_http_port(crl_http), "/inter.crl", 5000, &st, &f), CURLE_OK);
    ASSERT_EQ(st, 200);
    ASSERT_EQ(f.seen, pki.inter_crl_len);
    ASSERT(memcmp(f.buf, pki.inter_crl, pki.inter_crl_len) == 0);
    memset(&f, 0, sizeof(f));
    ASSERT_EQ(fetch(lab_http_port(crl_http), "/inter.der", 5000, &st, &f), CURLE_OK);
    ASSERT_EQ(f.seen, pki.inter_der_len);
    ASSERT(memcmp(f.buf, pki.inter_der, pki.inter_der_len) == 0);
}

/* A custom certificate: EC key, explicit serial, SHA-384, self-signed CA. */
static void test_cert_issue_options(void)
{
    char err[256];
    lab_cert_t ca = {0}, leaf = {0};
    lab_cert_opts_t o = {
        .cn = "Custom CA", .is_ca = 1, .key_ec = 1, .md = "SHA384", .serial = 4242};
    ASSERT_EQ(lab_cert_issue(&ca, &o, NULL, err), 0);
    ASSERT_EQ(ASN1_INTEGER_get(X509_get0_serialNumber(ca.cert)), 4242);
    ASSERT_EQ(X509_get_signature_nid(ca.cert), NID_ecdsa_with_SHA384);
    ASSERT_EQ(X509_check_issued(ca.cert, ca.cert), X509_V_OK);
    const char *ips[] = {"::1", NULL};
    o = (lab_cert_opts_t){
        .cn = "x", .ip_sans = ips, .key_ec = 1, .not_before_off_s = -10, .not_after_off_s = 10};
    ASSERT_EQ(lab_cert_issue(&leaf, &o, &ca, err), 0);
    ASSERT_EQ(X509_check_ip_asc(leaf.cert, "::1", 0), 1);
    ASSERT_EQ(X509_check_issued(ca.cert, leaf.cert), X509_V_OK);
    ASSERT(X509_cmp_time(X509_get0_notAfter(leaf.cert), &(time_t){time(NULL) + 60}) < 0);
    o.md = "NOPE";
    ASSERT_EQ(lab_cert_issue(&leaf, &o, &ca, err), -1);
    ASSERT_CONTAINS(err, "NOPE");
    lab_cert_free(&leaf);
    lab_cert_free(&ca);
    lab_cert_free(&ca); /* idempotent */
}

/* ---- TLS servers ---------------------------------------------------------------------------- */

static int connect_port(int port, int rcvtimeo_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct timeval tv = {.tv_sec = rcvtimeo_ms / 1000, .tv_usec = (rcvtimeo_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

typedef struct client_s {
    int handshake_ok;   /* SSL_connect returned 1 */
    long verify;        /* SSL_get_verify_result */
    int ssl_error;      /* SSL_get_error on failure */
    int sys_errno;      /* errno on SSL_ERROR_SYSCALL */
    int version;        /* negotiated protocol */
    char peer_cn[128];  /* leaf CN */
    int peer_chain_len; /* certificates the server sent */
    char response[512]; /* answer to GET / */
} client_t;

/* A plain OpenSSL client: connects, handshakes (sni may be NULL), sends GET / and reads the
 * answer. trust NULL: no verification. */
static void tls_client(int port, const char *sni, X509 *trust, int min_v, int max_v, int timeout_ms,
                       client_t *out)
{
    memset(out, 0, sizeof(*out));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT(ctx != NULL);
    SSL_CTX_set_security_level(ctx, 0);
    if (min_v)
        SSL_CTX_set_min_proto_version(ctx, min_v);
    if (max_v)
        SSL_CTX_set_max_proto_version(ctx, max_v);
    if (trust != NULL)
        X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), trust);
    int fd = connect_port(port, timeout_ms);
    ASSERT(fd >= 0);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (sni != NULL) {
        SSL_set_tlsext_host_name(ssl, sni);
        SSL_set1_host(ssl, sni);
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(ssl);
    if (r == 1) {
        out->handshake_ok = 1;
        out->version = SSL_version(ssl);
        out->verify = SSL_get_verify_result(ssl);
        X509 *peer = SSL_get1_peer_certificate(ssl);
        ASSERT(peer != NULL);
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, out->peer_cn,
                                  sizeof(out->peer_cn));
        X509_free(peer);
        out->peer_chain_len = sk_X509_num(SSL_get_peer_cert_chain(ssl));
        const char req[] = "GET / HTTP/1.1\r\nHost: " HOST "\r\nConnection: close\r\n\r\n";
        ASSERT(SSL_write(ssl, req, sizeof(req) - 1) > 0);
        size_t got = 0;
        while (got < sizeof(out->response) - 1) {
            int n = SSL_read(ssl, out->response + got, (int)(sizeof(out->response) - 1 - got));
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        out->response[got] = '\0';
    } else {
        out->ssl_error = SSL_get_error(ssl, r);
        out->sys_errno = errno;
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
}

static void test_tls_serve_sni(void)
{
    char err[256];
    X509 *chain[] = {pki.inter.cert};
    lab_tls_opts_t o = {.mode = LAB_TLS_SERVE,
                        .cert = pki.leaf[LAB_LEAF_GOOD].cert,
                        .key = pki.leaf[LAB_LEAF_GOOD].key,
                        .chain = chain,
                        .nchain = 1,
                        .nosni_cert = pki.leaf[LAB_LEAF_WRONGHOST].cert,
                        .nosni_key = pki.leaf[LAB_LEAF_WRONGHOST].key,
                        .nosni_chain = chain,
                        .nosni_nchain = 1};
    lab_tls_t *s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    client_t c;
    tls_client(lab_tls_port(s), HOST, pki.root.cert, 0, 0, 5000, &c);
    ASSERT(c.handshake_ok);
    ASSERT_EQ(c.verify, X509_V_OK);
    ASSERT_STREQ(c.peer_cn, HOST);
    ASSERT_EQ(c.peer_chain_len, 2);
    ASSERT(strncmp(c.response, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ASSERT_CONTAINS(c.response, "Connection: close");

    /* No SNI: the default binding, like IIS without "Require Server Name Indication". */
    tls_client(lab_tls_port(s), NULL, pki.root.cert, 0, 0, 5000, &c);
    ASSERT(c.handshake_ok);
    ASSERT_STREQ(c.peer_cn, "other.lab.test");
    ASSERT_EQ(lab_tls_accepts(s), 2);
    ASSERT_EQ(lab_tls_handshakes(s), 2);
    lab_tls_stop(s);
}

static void test_tls_missing_intermediate_and_status(void)
{
    char err[256];
    lab_tls_opts_t o = {.mode = LAB_TLS_SERVE,
                        .cert = pki.leaf[LAB_LEAF_GOOD].cert,
                        .key = pki.leaf[LAB_LEAF_GOOD].key,
                        .max_version = TLS1_2_VERSION,
                        .status_line = "HTTP/1.1 503 Service Unavailable"};
    lab_tls_t *s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    client_t c;
    tls_client(lab_tls_port(s), HOST, pki.root.cert, 0, 0, 5000, &c);
    ASSERT(c.handshake_ok); /* SSL_VERIFY_NONE: the result is recorded, not enforced */
    ASSERT_EQ(c.peer_chain_len, 1);
    ASSERT_EQ(c.verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    ASSERT_EQ(c.version, TLS1_2_VERSION);
    ASSERT(strncmp(c.response, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);

    /* A client that requires TLS 1.3 fails against a TLS 1.2 binding. */
    tls_client(lab_tls_port(s), HOST, NULL, TLS1_3_VERSION, 0, 5000, &c);
    ASSERT(!c.handshake_ok);
    ASSERT_EQ(c.ssl_error, SSL_ERROR_SSL);
    lab_tls_stop(s);
}

static void test_tls10(void)
{
    if (!lab_tls10_supported()) {
        fprintf(stderr, "   TLS 1.0 not available in this OpenSSL: skipped\n");
        return;
    }
    char err[256];
    X509 *chain[] = {pki.inter.cert};
    lab_tls_opts_t o = {.mode = LAB_TLS_SERVE,
                        .cert = pki.leaf[LAB_LEAF_SHA1].cert,
                        .key = pki.leaf[LAB_LEAF_SHA1].key,
                        .chain = chain,
                        .nchain = 1,
                        .min_version = TLS1_VERSION,
                        .max_version = TLS1_VERSION};
    lab_tls_t *s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    client_t c;
    tls_client(lab_tls_port(s), HOST, pki.root.cert, TLS1_VERSION, TLS1_VERSION, 5000, &c);
    ASSERT(c.handshake_ok);
    ASSERT_EQ(c.version, TLS1_VERSION);
    ASSERT_EQ(c.verify, X509_V_OK);
    lab_tls_stop(s);
}

static void test_tls_stall(void)
{
    char err[256];
    lab_tls_opts_t o = {.mode = LAB_TLS_STALL};
    lab_tls_t *s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    client_t c;
    tls_client(lab_tls_port(s), HOST, NULL, 0, 0, 300, &c);
    ASSERT(!c.handshake_ok);
    ASSERT_EQ(c.ssl_error, SSL_ERROR_WANT_READ); /* our receive timeout, nothing came */
    ASSERT_EQ(lab_tls_accepts(s), 1);
    /* Stop returns although a client still holds a connection open. */
    int fd = connect_port(lab_tls_port(s), 5000);
    ASSERT(fd >= 0);
    while (lab_tls_accepts(s) < 2)
        usleep(10000);
    lab_tls_stop(s);
    char b;
    ASSERT_EQ(recv(fd, &b, 1, 0), 0); /* closed at stop */
    close(fd);
}

static void test_tls_garbage(void)
{
    char err[256], buf[8192];
    lab_tls_opts_t o = {.mode = LAB_TLS_GARBAGE};
    lab_tls_t *s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    client_t c;
    tls_client(lab_tls_port(s), HOST, NULL, 0, 0, 5000, &c);
    ASSERT(!c.handshake_ok);
    ASSERT_EQ(c.ssl_error, SSL_ERROR_SSL);

    int fd = connect_port(lab_tls_port(s), 5000);
    ASSERT(fd >= 0);
    size_t got = 0;
    ssize_t n;
    while ((n = recv(fd, buf + got, sizeof(buf) - got, 0)) > 0)
        got += (size_t)n;
    ASSERT_EQ(n, 0);
    ASSERT_EQ(got, 4096);
    ASSERT(buf[0] < 0x14 || buf[0] > 0x18); /* not a TLS record type */
    close(fd);
    lab_tls_stop(s);
}

static void test_tls_reset_and_close(void)
{
    char err[256];
    lab_tls_opts_t o = {.mode = LAB_TLS_RESET};
    lab_tls_t *s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    client_t c;
    tls_client(lab_tls_port(s), HOST, NULL, 0, 0, 5000, &c);
    ASSERT(!c.handshake_ok);
    ASSERT_EQ(c.ssl_error, SSL_ERROR_SYSCALL);
    ASSERT_EQ(c.sys_errno, ECONNRESET);
    lab_tls_stop(s);

    o.mode = LAB_TLS_CLOSE;
    s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    tls_client(lab_tls_port(s), HOST, NULL, 0, 0, 5000, &c);
    ASSERT(!c.handshake_ok);
    ASSERT(c.ssl_error == SSL_ERROR_SSL || c.ssl_error == SSL_ERROR_SYSCALL);
    ASSERT(c.sys_errno != ECONNRESET);
    /* Raw: the server reads the hello and answers with EOF, not an RST. */
    int fd = connect_port(lab_tls_port(s), 5000);
    ASSERT(fd >= 0);
    ASSERT_EQ(send(fd, "\x16\x03\x01\x00\x05hello", 10, 0), 10);
    char b;
    ASSERT_EQ(recv(fd, &b, 1, 0), 0);
    close(fd);
    lab_tls_stop(s);
}

static void test_tls_plain_http(void)
{
    char err[256], buf[1024];
    lab_tls_opts_t o = {.mode = LAB_TLS_PLAIN_HTTP};
    lab_tls_t *s = lab_tls_start(&o, err);
    ASSERT(s != NULL);
    /* A TLS client meets an HTTP port: it gets "HTTP/1.1 400" bytes, not a ServerHello. */
    client_t c;
    tls_client(lab_tls_port(s), HOST, NULL, 0, 0, 5000, &c);
    ASSERT(!c.handshake_ok);
    ASSERT_EQ(c.ssl_error, SSL_ERROR_SSL);

    int fd = connect_port(lab_tls_port(s), 5000);
    ASSERT(fd >= 0);
    ASSERT_EQ(send(fd, "\x16\x03\x01\x00\x05hello", 10, 0), 10);
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    ASSERT(n > 0);
    buf[n] = '\0';
    ASSERT(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    close(fd);

    fetch_t f = {0};
    long st;
    ASSERT_EQ(fetch(lab_tls_port(s), "/", 5000, &st, &f), CURLE_OK);
    ASSERT_EQ(st, 200);
    ASSERT_EQ(lab_tls_accepts(s), 3);
    lab_tls_stop(s);
}

static void test_closed_port(void)
{
    int port = lab_closed_port();
    ASSERT(port > 0);
    ASSERT_EQ(connect_port(port, 1000), -1);
    ASSERT_EQ(errno, ECONNREFUSED);
}

static void test_tls_bad_opts(void)
{
    char err[256];
    lab_tls_opts_t o = {.mode = LAB_TLS_SERVE};
    ASSERT(lab_tls_start(&o, err) == NULL);
    ASSERT_CONTAINS(err, "certificate");
    o = (lab_tls_opts_t){.mode = LAB_TLS_SERVE,
                         .cert = pki.leaf[LAB_LEAF_GOOD].cert,
                         .key = pki.rogue_root.key}; /* key does not match */
    ASSERT(lab_tls_start(&o, err) == NULL);
    ASSERT_CONTAINS(err, "SSL_CTX");
}

int main(void)
{
    char err[256], base[64];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_http_static_404_hits);
    RUN(test_http_endless_capped);
    RUN(test_http_reset_and_stall);
    RUN(test_http_stop_while_slow);
    RUN(test_http_delay_concurrent);

    ASSERT(mkdtemp(pki_dir) != NULL);
    crl_http = lab_http_start(err);
    ASSERT(crl_http != NULL);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", lab_http_port(crl_http));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (lab_pki_create(&pki, pki_dir, HOST, base, err) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "   lab_pki_create: %.0f ms\n",
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    lab_pki_publish(&pki, crl_http);

    RUN(test_pki_files);
    RUN(test_pki_verify);
    RUN(test_pki_crl_pem_and_publish);
    RUN(test_cert_issue_options);
    RUN(test_tls_serve_sni);
    RUN(test_tls_missing_intermediate_and_status);
    RUN(test_tls10);
    RUN(test_tls_stall);
    RUN(test_tls_garbage);
    RUN(test_tls_reset_and_close);
    RUN(test_tls_plain_http);
    RUN(test_closed_port);
    RUN(test_tls_bad_opts);

    lab_http_stop(crl_http);
    lab_pki_free(&pki);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki_dir);
    ASSERT_EQ(system(cmd), 0);
    curl_global_cleanup();
    return 0;
}
