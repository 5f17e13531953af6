/* fuzz_ocsp.c - libFuzzer target for OCSP responses as a responder (or anyone between it and
 * the vantage) sends them: parsing, who signed, the single response for a certificate, its
 * freshness, the cache lifetime. The issuer and the delegated responder use fixed keys, so the
 * seeds (written by this target itself, below) carry signatures that verify and the fuzzer
 * starts from responses that go all the way through the checks. */
#include "probes/ocsp.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* The instant every check runs at: the seeds' responses are fresh then. */
#define AT 1700000000L

static const char issuer_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1JsNrtvnaBUq47Go\n"
    "8fCVe0kRbtA02tplYd4GRofT03GhRANCAATYDu9Co8vS5/mj38s7dzmoY78nQ3ce\n"
    "RL0YzS98iYbhwotgGTyAdtv/oKuC6WFF/v2NTHnqYefQKYemm8gL27bz\n"
    "-----END PRIVATE KEY-----\n";
static const char responder_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYXJeRw4L/hOKll/w\n"
    "K+vtsFInFYjqVciQYc8tgQq6gCWhRANCAAQK7bFoox+v09IRarJxOA2uSjI7BRMw\n"
    "2FuanEmTRO7Oj5UW/xFaKFEfE5hzylLgXZWsiEtvV2KB9xilY53iRmAr\n"
    "-----END PRIVATE KEY-----\n";

static EVP_PKEY *issuer_key, *responder_key;
static int verbose; /* FLEETSCAN_FUZZ_VERBOSE: each input's verdicts, to check the seeds */
static X509 *issuer, *responder, *leaf;
static OCSP_CERTID *id_leaf, *id_other;

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_ocsp set-up failed: %s\n", what);
        abort();
    }
}

static EVP_PKEY *load_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    must(k != NULL, "key");
    return k;
}

static void add_ext(X509 *x, X509 *iss, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, iss ? iss : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    must(e != NULL && X509_add_ext(x, e, -1) == 1, value);
    X509_EXTENSION_free(e);
}

/* "CN=cn", valid from a year before AT for ten years, signed by iss/iss_key (NULL: itself). */
static X509 *make_cert(const char *cn, long serial, EVP_PKEY *key, X509 *iss, EVP_PKEY *iss_key,
                       const char *eku)
{
    X509 *x = X509_new();
    time_t at = AT;
    must(x != NULL, "cert");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_time_adj(X509_getm_notBefore(x), -365L * 86400, &at);
    X509_time_adj(X509_getm_notAfter(x), 3650L * 86400, &at);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, iss ? X509_get_subject_name(iss) : n);
    X509_set_pubkey(x, key);
    add_ext(x, iss, NID_basic_constraints, iss ? "CA:FALSE" : "critical,CA:TRUE");
    add_ext(x, iss, NID_subject_key_identifier, "hash");
    if (eku != NULL)
        add_ext(x, iss, NID_ext_key_usage, eku);
    must(X509_sign(x, iss_key ? iss_key : key, EVP_sha256()) > 0, "sign");
    return x;
}

/* ---- the seeds: responses as responders send them ----------------------------------------- */

static void write_file(const char *dir, const char *name, const unsigned char *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    must(f != NULL && fwrite(p, 1, n, f) == n && fclose(f) == 0, path);
}

static void write_response(const char *dir, const char *name, OCSP_RESPONSE *r)
{
    unsigned char *der = NULL;
    int n = i2d_OCSP_RESPONSE(r, &der);
    must(n > 0, name);
    write_file(dir, name, der, (size_t)n);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
}

/* A successful response about id (status V_OCSP_CERTSTATUS_*), thisUpdate AT + tu, nextUpdate
 * AT + nu (nu 0: none), signed by cert/key (with cert in the response when include). */
static OCSP_RESPONSE *response(OCSP_CERTID *id, int status, long tu, long nu, X509 *cert,
                               EVP_PKEY *key, int include, OCSP_CERTID *also)
{
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    ASN1_TIME *t = ASN1_TIME_set(NULL, AT + tu), *n = nu ? ASN1_TIME_set(NULL, AT + nu) : NULL;
    ASN1_TIME *rev = ASN1_TIME_set(NULL, AT - 3600);
    must(bs != NULL && t != NULL && rev != NULL, "basic response");
    must(OCSP_basic_add1_status(bs, id, status, OCSP_REVOKED_STATUS_KEYCOMPROMISE,
                                status == V_OCSP_CERTSTATUS_REVOKED ? rev : NULL, t, n) != NULL,
         "status");
    if (also != NULL)
        must(OCSP_basic_add1_status(bs, also, V_OCSP_CERTSTATUS_GOOD, 0, NULL, t, n) != NULL,
             "status 2");
    must(OCSP_basic_sign(bs, cert, key, EVP_sha256(), NULL, include ? 0 : OCSP_NOCERTS) == 1,
         "basic sign");
    OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    must(r != NULL, "response");
    OCSP_BASICRESP_free(bs);
    ASN1_TIME_free(t);
    ASN1_TIME_free(n);
    ASN1_TIME_free(rev);
    return r;
}

static void write_seeds(const char *dir)
{
    EVP_PKEY *stranger_key = EVP_EC_gen("P-256");
    X509 *stranger = make_cert("Someone Else", 9, stranger_key, NULL, NULL, "OCSPSigning");
    write_response(
        dir, "good-by-issuer",
        response(id_leaf, V_OCSP_CERTSTATUS_GOOD, -60, 86400, issuer, issuer_key, 0, NULL));
    write_response(
        dir, "revoked-by-issuer",
        response(id_leaf, V_OCSP_CERTSTATUS_REVOKED, -60, 86400, issuer, issuer_key, 0, NULL));
    write_response(
        dir, "unknown-by-issuer",
        response(id_leaf, V_OCSP_CERTSTATUS_UNKNOWN, -60, 86400, issuer, issuer_key, 0, NULL));
    write_response(
        dir, "good-delegated",
        response(id_leaf, V_OCSP_CERTSTATUS_GOOD, -60, 86400, responder, responder_key, 1, NULL));
    write_response(
        dir, "good-stale",
        response(id_leaf, V_OCSP_CERTSTATUS_GOOD, -7200, -3600, issuer, issuer_key, 0, NULL));
    write_response(dir, "good-no-next-update",
                   response(id_leaf, V_OCSP_CERTSTATUS_GOOD, -60, 0, issuer, issuer_key, 0, NULL));
    write_response(
        dir, "good-two-certificates",
        response(id_other, V_OCSP_CERTSTATUS_GOOD, -60, 86400, issuer, issuer_key, 0, id_leaf));
    write_response(
        dir, "good-wrong-signer",
        response(id_leaf, V_OCSP_CERTSTATUS_GOOD, -60, 86400, stranger, stranger_key, 1, NULL));
    write_response(dir, "try-later", OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL));
    write_file(dir, "not-ocsp", (const unsigned char *)"<html>proxy error</html>", 24);
    X509_free(stranger);
    EVP_PKEY_free(stranger_key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    issuer_key = load_key(issuer_pem);
    responder_key = load_key(responder_pem);
    issuer = make_cert("Fuzz OCSP Issuing CA", 1, issuer_key, NULL, NULL, NULL);
    responder =
        make_cert("Fuzz OCSP Responder", 2, responder_key, issuer, issuer_key, "OCSPSigning");
    leaf = make_cert("leaf.fuzz.test", 0x80, responder_key, issuer, issuer_key, "serverAuth");
    X509 *other = make_cert("other.fuzz.test", 0x81, responder_key, issuer, issuer_key, NULL);
    id_leaf = ocsp_cert_id(leaf, issuer);
    id_other = ocsp_cert_id(other, issuer);
    must(id_leaf != NULL && id_other != NULL, "cert ids");
    X509_free(other);
    verbose = getenv("FLEETSCAN_FUZZ_VERBOSE") != NULL;
    const char *seeds = getenv("FLEETSCAN_FUZZ_OCSP_SEEDS");
    if (seeds != NULL) { /* fuzz/make_seeds.sh */
        write_seeds(seeds);
        exit(0);
    }
    ERR_clear_error();
    return 0;
}

static void terminated(const char *err)
{
    if (memchr(err, '\0', CRL_ERR_LEN) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char err[CRL_ERR_LEN];
    OCSP_BASICRESP *bs = NULL;
    if (ocsp_parse_response(data, size, &bs, err) != 0) {
        terminated(err);
        if (verbose)
            fprintf(stderr, "refused: %s\n", err);
        if (bs != NULL || err[0] == '\0')
            abort(); /* a refusal says why and hands nothing out */
        ERR_clear_error();
        return 0;
    }
    if (bs == NULL)
        abort();
    /* who signed it, now and once a delegated responder's certificate has expired */
    int signer = ocsp_check_signer(bs, issuer, AT, err);
    terminated(err);
    if (verbose)
        fprintf(stderr, "signer %s", signer == 0 ? "ok" : err);
    if (ocsp_check_signer(bs, issuer, AT + 20L * 365 * 86400, err) != 0)
        terminated(err);
    OCSP_CERTID *ids[] = {id_leaf, id_other};
    for (size_t i = 0; i < 2; i++) {
        ocsp_answer_t a;
        if (ocsp_find(bs, ids[i], &a, err) != 0) {
            terminated(err);
            if (verbose)
                fprintf(stderr, "; id %zu: %s", i, err);
            continue;
        }
        if (a.status != OCSP_ANSWER_GOOD && a.status != OCSP_ANSWER_REVOKED &&
            a.status != OCSP_ANSWER_UNKNOWN)
            abort();
        if (a.reason < -1 || (a.status != OCSP_ANSWER_REVOKED && a.reason != -1))
            abort();
        if (a.next_update != 0 && ocsp_min_next_update(bs) > a.next_update)
            abort(); /* the cache lifetime is the earliest nextUpdate */
        int fresh = ocsp_check_time(&a, AT, err);
        terminated(err);
        if (verbose)
            fprintf(stderr, "; id %zu: %s, %s", i, ocsp_status_name(a.status),
                    fresh == 0 ? "fresh" : err);
    }
    if (verbose)
        fputc('\n', stderr);
    OCSP_BASICRESP_free(bs);
    ERR_clear_error();
    return 0;
}
