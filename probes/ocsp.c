/* ocsp.c - OCSP request encoding and response checks with OpenSSL's OCSP API (see ocsp.h).
 * Pure functions over OpenSSL objects: no I/O, no globals. */
#include "probes/ocsp.h"
#include "probes/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

static int fail(char err[CRL_ERR_LEN], const char *msg)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (reason)
        snprintf(err, CRL_ERR_LEN, "%s (%s)", msg, reason);
    else
        snprintf(err, CRL_ERR_LEN, "%s", msg);
    ERR_clear_error();
    return -1;
}

size_t ocsp_urls(X509 *cert, crl_urls_t *out)
{
    memset(out, 0, sizeof(*out));
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
    for (int i = 0; aia && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (OBJ_obj2nid(ad->method) != NID_ad_OCSP || ad->location->type != GEN_URI)
            continue;
        const ASN1_IA5STRING *s = ad->location->d.uniformResourceIdentifier;
        const unsigned char *d = ASN1_STRING_get0_data(s);
        int len = ASN1_STRING_length(s);
        if (d == NULL || len <= 0 || memchr(d, '\0', (size_t)len) != NULL)
            continue;
        char *url = fs_xmalloc((size_t)len + 1);
        memcpy(url, d, (size_t)len);
        url[len] = '\0';
        out->v = fs_xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
        out->v[out->n++] = url;
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    ERR_clear_error();
    return out->n;
}

OCSP_CERTID *ocsp_cert_id(X509 *cert, X509 *issuer)
{
    OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
    ERR_clear_error();
    return id;
}

int ocsp_cert_id_hex(OCSP_CERTID *id, char *out, size_t n)
{
    unsigned char *der = NULL;
    int len = i2d_OCSP_CERTID(id, &der);
    int rc = -1;
    if (len > 0 && (size_t)len * 2 + 1 <= n) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < len; i++) {
            out[2 * i] = hex[der[i] >> 4];
            out[2 * i + 1] = hex[der[i] & 15];
        }
        out[2 * len] = '\0';
        rc = 0;
    }
    OPENSSL_free(der);
    ERR_clear_error();
    return rc;
}

int ocsp_request_der(OCSP_CERTID *id, unsigned char **der, size_t *len)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *copy = OCSP_CERTID_dup(id);
    int rc = -1;
    if (req == NULL || copy == NULL)
        goto out;
    if (OCSP_request_add0_id(req, copy) == NULL)
        goto out;
    copy = NULL; /* owned by req now */
    int n = i2d_OCSP_REQUEST(req, NULL);
    if (n <= 0)
        goto out;
    unsigned char *p = fs_xmalloc((size_t)n);
    *der = p;
    *len = (size_t)i2d_OCSP_REQUEST(req, &p);
    rc = 0;
out:
    OCSP_CERTID_free(copy);
    OCSP_REQUEST_free(req);
    ERR_clear_error();
    return rc;
}

char *ocsp_get_url(const char *url, const unsigned char *der, size_t len)
{
    size_t ulen = strlen(url);
    if (ulen > OCSP_GET_MAX || len > OCSP_GET_MAX)
        return NULL;
    unsigned char b64[4 * ((OCSP_GET_MAX + 2) / 3) + 1];
    int n = EVP_EncodeBlock(b64, der, (int)len);
    size_t need = ulen + 1;
    for (int i = 0; i < n; i++)
        need += b64[i] == '+' || b64[i] == '/' || b64[i] == '=' ? 3 : 1;
    if (need > OCSP_GET_MAX)
        return NULL;
    char *out = fs_xmalloc(need + 1);
    size_t o = 0;
    memcpy(out, url, ulen);
    o = ulen;
    if (ulen == 0 || url[ulen - 1] != '/')
        out[o++] = '/';
    for (int i = 0; i < n; i++) {
        if (b64[i] == '+' || b64[i] == '/' || b64[i] == '=')
            o += (size_t)snprintf(out + o, 4, "%%%02X", b64[i]);
        else
            out[o++] = (char)b64[i];
    }
    out[o] = '\0';
    return out;
}

static const char *resp_status_name(int s)
{
    switch (s) {
    case OCSP_RESPONSE_STATUS_MALFORMEDREQUEST:
        return "malformedRequest";
    case OCSP_RESPONSE_STATUS_INTERNALERROR:
        return "internalError";
    case OCSP_RESPONSE_STATUS_TRYLATER:
        return "tryLater";
    case OCSP_RESPONSE_STATUS_SIGREQUIRED:
        return "sigRequired";
    case OCSP_RESPONSE_STATUS_UNAUTHORIZED:
        return "unauthorized";
    default:
        return "an unknown status";
    }
}

int ocsp_parse_response(const unsigned char *buf, size_t len, OCSP_BASICRESP **out,
                        char err[CRL_ERR_LEN])
{
    ERR_clear_error();
    if (len == 0 || len > 0x7fffffff) {
        snprintf(err, CRL_ERR_LEN, len ? "OCSP response too large to parse" : "empty body");
        return -1;
    }
    const unsigned char *p = buf;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    if (resp == NULL)
        return fail(err, "not an OCSP response");
    int st = OCSP_response_status(resp);
    if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, CRL_ERR_LEN, "the responder answered %s (%d)", resp_status_name(st), st);
        OCSP_RESPONSE_free(resp);
        return -1;
    }
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
    OCSP_RESPONSE_free(resp);
    if (bs == NULL)
        return fail(err, "not a basic OCSP response");
    *out = bs;
    ERR_clear_error();
    return 0;
}

static void cn_of(X509 *x, char *buf, size_t n)
{
    const X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    const ASN1_STRING *s = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)) : NULL;
    if (s)
        snprintf(buf, n, "%.*s", ASN1_STRING_length(s), ASN1_STRING_get0_data(s));
    else
        X509_NAME_oneline(name, buf, (int)n);
}

int ocsp_check_signer_key(OCSP_BASICRESP *bs, X509 *issuer, ocsp_signer_t *out,
                          char err[CRL_ERR_LEN])
{
    STACK_OF(X509) *extra = sk_X509_new_null();
    STACK_OF(X509) *one = sk_X509_new_null();
    X509_STORE *store = X509_STORE_new();
    X509 *signer = NULL;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    ERR_clear_error();
    if (extra == NULL || one == NULL || store == NULL || !sk_X509_push(extra, issuer)) {
        fail(err, "out of memory");
        goto out;
    }
    if (OCSP_resp_get0_signer(bs, &signer, extra) != 1 || signer == NULL) {
        snprintf(err, CRL_ERR_LEN,
                 "OCSP response signed by a responder neither named in it nor the issuing CA");
        ERR_clear_error();
        goto out;
    }
    cn_of(signer, out->who, sizeof(out->who));
    /* The signature itself; who may sign is decided below (no chain building here). */
    if (!sk_X509_push(one, signer) ||
        OCSP_basic_verify(bs, one, store, OCSP_NOINTERN | OCSP_NOVERIFY | OCSP_TRUSTOTHER) != 1) {
        char msg[120];
        snprintf(msg, sizeof(msg), "bad OCSP response signature (signer \"%.50s\")", out->who);
        fail(err, msg);
        goto out;
    }
    EVP_PKEY *ik = X509_get0_pubkey(issuer), *sk = X509_get0_pubkey(signer);
    if (ik != NULL && sk != NULL && EVP_PKEY_eq(ik, sk) == 1) {
        rc = 0; /* the issuing CA itself */
        goto out;
    }
    if (X509_check_issued(issuer, signer) != X509_V_OK || ik == NULL ||
        X509_verify(signer, ik) != 1) {
        snprintf(err, CRL_ERR_LEN,
                 "OCSP response signed by \"%.50s\", neither the issuing CA nor a responder "
                 "it certified",
                 out->who);
        ERR_clear_error();
        goto out;
    }
    if (!(X509_get_extension_flags(signer) & EXFLAG_XKUSAGE) ||
        !(X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN)) {
        snprintf(err, CRL_ERR_LEN,
                 "OCSP responder certificate \"%.50s\" lacks id-kp-OCSPSigning: not a "
                 "delegated responder",
                 out->who);
        goto out;
    }
    out->delegated = 1;
    out->not_before = crl_asn1_time(X509_get0_notBefore(signer));
    out->not_after = crl_asn1_time(X509_get0_notAfter(signer));
    rc = 0;
out:
    sk_X509_free(extra);
    sk_X509_free(one);
    X509_STORE_free(store);
    ERR_clear_error();
    return rc;
}

int ocsp_check_signer_time(const ocsp_signer_t *s, int64_t at, char err[CRL_ERR_LEN])
{
    if (s->delegated && (s->not_before > at + OCSP_SKEW_S || s->not_after < at - OCSP_SKEW_S)) {
        snprintf(err, CRL_ERR_LEN,
                 "OCSP responder certificate \"%.50s\" is not valid at the endpoint's time",
                 s->who);
        return -1;
    }
    return 0;
}

int ocsp_check_signer(OCSP_BASICRESP *bs, X509 *issuer, int64_t at, char err[CRL_ERR_LEN])
{
    ocsp_signer_t s;
    if (ocsp_check_signer_key(bs, issuer, &s, err) != 0)
        return -1;
    return ocsp_check_signer_time(&s, at, err);
}

int ocsp_find(OCSP_BASICRESP *bs, OCSP_CERTID *id, ocsp_answer_t *a, char err[CRL_ERR_LEN])
{
    int status = -1, reason = -1;
    ASN1_GENERALIZEDTIME *rev = NULL, *tu = NULL, *nu = NULL;
    memset(a, 0, sizeof(*a));
    if (OCSP_resp_find_status(bs, id, &status, &reason, &rev, &tu, &nu) != 1) {
        snprintf(err, CRL_ERR_LEN, "the OCSP response does not answer for this certificate");
        ERR_clear_error();
        return -1;
    }
    a->status = status == V_OCSP_CERTSTATUS_GOOD      ? OCSP_ANSWER_GOOD
                : status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_ANSWER_REVOKED
                                                      : OCSP_ANSWER_UNKNOWN;
    a->reason = a->status == OCSP_ANSWER_REVOKED && reason >= 0 ? reason : -1;
    a->revoked_at = crl_asn1_time(rev);
    a->this_update = crl_asn1_time(tu);
    a->next_update = crl_asn1_time(nu);
    ERR_clear_error();
    return 0;
}

int ocsp_check_time(const ocsp_answer_t *a, int64_t at, char err[CRL_ERR_LEN])
{
    char t1[32], t2[32];
    if (a->this_update == 0) {
        snprintf(err, CRL_ERR_LEN, "OCSP response without a usable thisUpdate");
        return -1;
    }
    if (a->this_update > at + OCSP_SKEW_S) {
        snprintf(err, CRL_ERR_LEN,
                 "OCSP response not yet valid: thisUpdate %s is after the endpoint's time %s",
                 fs_rfc3339(a->this_update, t1, sizeof(t1)), fs_rfc3339(at, t2, sizeof(t2)));
        return -1;
    }
    if (a->next_update != 0 && a->next_update < at - OCSP_SKEW_S) {
        snprintf(err, CRL_ERR_LEN,
                 "stale OCSP response: nextUpdate %s is before the endpoint's time %s",
                 fs_rfc3339(a->next_update, t1, sizeof(t1)), fs_rfc3339(at, t2, sizeof(t2)));
        return -1;
    }
    return 0;
}

int64_t ocsp_min_next_update(OCSP_BASICRESP *bs)
{
    int64_t min = 0;
    for (int i = 0; i < OCSP_resp_count(bs); i++) {
        ASN1_GENERALIZEDTIME *nu = NULL;
        OCSP_single_get0_status(OCSP_resp_get0(bs, i), NULL, NULL, NULL, &nu);
        int64_t t = crl_asn1_time(nu);
        if (t != 0 && (min == 0 || t < min))
            min = t;
    }
    ERR_clear_error();
    return min;
}

const char *ocsp_status_name(ocsp_status_t s)
{
    static const char *const names[] = {"good", "revoked", "unknown"};
    return (unsigned)s < FS_ARRAY_SIZE(names) ? names[s] : "unknown";
}
