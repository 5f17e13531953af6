/* ocspd.c - the lab's OCSP responder (see ocspd.h): decode the request, answer each CertID
 * with OCSP_basic_add1_status, sign with OCSP_basic_sign, wrap with OCSP_response_create. */
#include "lab/ocspd.h"

#include "probes/util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>

struct lab_ocsp_s {
    char prefix[128];
    lab_ocsp_opts_t o;
    lab_cert_t issuer, signer; /* own references */
    atomic_uint gets, posts;
};

static void ocspd_free(void *arg)
{
    lab_ocsp_t *r = arg;
    lab_cert_free(&r->issuer);
    lab_cert_free(&r->signer);
    free(r);
}

static void cert_ref(lab_cert_t *dst, const lab_cert_t *src)
{
    dst->cert = src->cert;
    dst->key = src->key;
    X509_up_ref(dst->cert);
    EVP_PKEY_up_ref(dst->key);
}

/* The DER request of a GET path "<prefix>/<base64>" (already percent-decoded), malloc'ed. */
static unsigned char *get_request(const lab_ocsp_t *r, const char *path, size_t *len)
{
    const char *b64 = path + strlen(r->prefix);
    while (*b64 == '/')
        b64++;
    size_t n = strlen(b64);
    if (n == 0 || n % 4 != 0)
        return NULL;
    unsigned char *der = fs_xmalloc(n / 4 * 3 + 1);
    int got = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)n);
    if (got < 0) {
        free(der);
        return NULL;
    }
    *len = (size_t)got - (b64[n - 1] == '=') - (b64[n - 2] == '=');
    return der;
}

static void reply_bytes(lab_http_reply_t *out, int status, const unsigned char *b, size_t n,
                        const char *ctype)
{
    out->status = status;
    out->body = fs_xmalloc(n ? n : 1);
    memcpy(out->body, b, n);
    out->len = n;
    out->content_type = ctype;
}

static void reply_response(lab_http_reply_t *out, OCSP_RESPONSE *resp)
{
    unsigned char *der = NULL;
    int n = resp ? i2d_OCSP_RESPONSE(resp, &der) : -1;
    if (n > 0)
        reply_bytes(out, 200, der, (size_t)n, "application/ocsp-response");
    else
        reply_bytes(out, 500, (const unsigned char *)"encoding failed\n", 16, "text/plain");
    OPENSSL_free(der);
}

static void handle(void *arg, const char *method, const char *path, const unsigned char *body,
                   size_t len, lab_http_reply_t *out)
{
    lab_ocsp_t *r = arg;
    const lab_ocsp_opts_t *o = &r->o;
    unsigned char *der = NULL;
    const unsigned char *p;
    size_t dlen = 0;
    OCSP_REQUEST *req = NULL;
    OCSP_BASICRESP *bs = NULL;
    OCSP_RESPONSE *resp = NULL;
    ASN1_TIME *tu = NULL, *nu = NULL, *rev = NULL;
    time_t now = time(NULL);

    out->delay_ms = o->delay_ms;
    if (strcasecmp(method, "POST") == 0) {
        atomic_fetch_add(&r->posts, 1);
        p = body;
        dlen = len;
    } else {
        atomic_fetch_add(&r->gets, 1);
        der = get_request(r, path, &dlen);
        p = der;
    }
    if (o->garbage) {
        reply_bytes(out, 200, (const unsigned char *)"<html>not OCSP</html>", 21,
                    "application/ocsp-response");
        goto out;
    }
    if (p == NULL || (req = d2i_OCSP_REQUEST(NULL, &p, (long)dlen)) == NULL) {
        resp = OCSP_response_create(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, NULL);
        reply_response(out, resp);
        goto out;
    }
    if (o->resp_status != 0) {
        resp = OCSP_response_create(o->resp_status, NULL);
        reply_response(out, resp);
        goto out;
    }
    bs = OCSP_BASICRESP_new();
    tu = X509_time_adj_ex(NULL, 0, (long)(o->this_update_off_s ? o->this_update_off_s : -60), &now);
    nu = X509_time_adj_ex(NULL, 0, (long)(o->next_update_off_s ? o->next_update_off_s : 86400),
                          &now);
    rev = X509_time_adj_ex(NULL, 0, -3600, &now);
    if (bs == NULL || tu == NULL || nu == NULL || rev == NULL)
        goto fail;
    static const int st[] = {V_OCSP_CERTSTATUS_GOOD, V_OCSP_CERTSTATUS_REVOKED,
                             V_OCSP_CERTSTATUS_UNKNOWN};
    for (int i = 0; i < OCSP_request_onereq_count(req); i++) {
        OCSP_CERTID *id = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
        int revoked = o->status == LAB_OCSP_REVOKED;
        if (OCSP_basic_add1_status(bs, id, st[o->status],
                                   revoked ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0,
                                   revoked ? rev : NULL, tu, o->no_next_update ? NULL : nu) == NULL)
            goto fail;
    }
    const lab_cert_t *signer = r->signer.cert ? &r->signer : &r->issuer;
    if (!OCSP_basic_sign(bs, signer->cert, signer->key, EVP_sha256(), NULL,
                         r->signer.cert ? 0 : OCSP_NOCERTS))
        goto fail;
    resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    reply_response(out, resp);
    goto out;
fail:
    reply_bytes(out, 500, (const unsigned char *)"responder failure\n", 18, "text/plain");
out:
    ASN1_TIME_free(tu);
    ASN1_TIME_free(nu);
    ASN1_TIME_free(rev);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    OCSP_REQUEST_free(req);
    free(der);
    ERR_clear_error();
}

lab_ocsp_t *lab_ocsp_serve(lab_http_t *h, const char *prefix, const lab_ocsp_opts_t *o)
{
    lab_ocsp_t *r = fs_xcalloc(1, sizeof(*r));
    fs_strlcpy(r->prefix, prefix, sizeof(r->prefix));
    r->o = *o;
    cert_ref(&r->issuer, o->issuer);
    if (o->signer != NULL)
        cert_ref(&r->signer, o->signer);
    r->o.issuer = r->o.signer = NULL;
    atomic_init(&r->gets, 0);
    atomic_init(&r->posts, 0);
    lab_http_set_handler(h, prefix, handle, r, ocspd_free);
    return r;
}

void lab_ocsp_counts(lab_ocsp_t *r, unsigned *gets, unsigned *posts)
{
    if (gets)
        *gets = atomic_load(&r->gets);
    if (posts)
        *posts = atomic_load(&r->posts);
}
