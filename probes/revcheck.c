/* revcheck.c - one revocation URL checked live: the retrieval (GET or POST for OCSP, through the
 * view's directory for ldap://) and the validation of its answer, with no cache in between. */
#include "probes/revcheck.h"
#include "probes/crl.h"
#include "probes/ocsp.h"
#include "probes/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

const char *const revcheck_kind_names[REVCHECK_KIND_COUNT] = {
#define X(e, name) name,
    REVCHECK_KIND_LIST(X)
#undef X
};
_Static_assert(FS_ARRAY_SIZE(revcheck_kind_names) == REVCHECK_KIND_COUNT, "revcheck kinds");

struct revcheck_job_s {
    revcheck_kind_t kind;
    X509 *cert, *issuer;
    X509_CRL *base;
    OCSP_CERTID *id;
    int ldap;
    const char *skip; /* why the URL is not retrieved at no cost, NULL when it is retrieved */
    const char *fail; /* why it cannot be checked (no issuer to ask an OCSP responder about) */
    int64_t at;
    fetch_job_t *fetch;
    revcheck_cb cb;
    void *arg;
};

static void job_free(revcheck_job_t *j)
{
    X509_free(j->cert);
    X509_free(j->issuer);
    X509_CRL_free(j->base);
    OCSP_CERTID_free(j->id);
    free(j);
}

/* A CRL (base or delta) for j->cert: issuer, signature, kind, dates. Fills r; 1 when usable. */
static int check_crl(revcheck_job_t *j, X509_CRL *crl, revcheck_result_t *r)
{
    char err[CRL_ERR_LEN], t1[32], t2[32];
    crl_times(crl, &r->this_update, &r->next_update);
    if (j->issuer != NULL) {
        if (crl_check_issuer(crl, j->cert, j->issuer, err) != 0) {
            snprintf(r->error, sizeof(r->error), "%s", err);
            return 0;
        }
        EVP_PKEY *k = X509_get0_pubkey(j->issuer);
        r->signature_valid = k != NULL && crl_verify_signature(crl, k, err) == 0;
        ERR_clear_error();
        if (!r->signature_valid) {
            snprintf(r->error, sizeof(r->error),
                     "bad CRL signature (not signed by the issuing CA's key)");
            return 0;
        }
    }
    if (j->kind == REVCHECK_DELTA) {
        if (j->base != NULL ? crl_check_delta(crl, j->base, err) != 0 : !crl_is_delta(crl)) {
            snprintf(r->error, sizeof(r->error), "%s",
                     j->base != NULL ? err : "not a delta CRL (no Delta CRL Indicator)");
            return 0;
        }
    } else if (crl_is_delta(crl)) {
        snprintf(r->error, sizeof(r->error), "a delta CRL where the base CRL belongs");
        return 0;
    }
    switch (crl_check_time(crl, j->at)) {
    case CRL_TIME_EXPIRED:
        snprintf(r->error, sizeof(r->error), "CRL expired: nextUpdate %s is before %s",
                 fs_rfc3339(r->next_update, t1, sizeof(t1)), fs_rfc3339(j->at, t2, sizeof(t2)));
        return 0;
    case CRL_TIME_NOT_YET_VALID:
        snprintf(r->error, sizeof(r->error), "CRL not yet valid: thisUpdate %s is after %s",
                 fs_rfc3339(r->this_update, t1, sizeof(t1)), fs_rfc3339(j->at, t2, sizeof(t2)));
        return 0;
    case CRL_TIME_OK:
        break;
    }
    return 1; /* without the issuer: parsed, of its kind and dated, signature unknown (-1) */
}

/* An OCSP response for j->cert. Fills r; 1 when usable. */
static int check_ocsp(revcheck_job_t *j, const fetch_result_t *res, revcheck_result_t *r)
{
    char err[CRL_ERR_LEN];
    OCSP_BASICRESP *bs = NULL;
    ocsp_answer_t a;
    int ok = 0;
    if (ocsp_parse_response(res->body, res->bytes, &bs, err) != 0) {
        snprintf(r->error, sizeof(r->error), "unusable OCSP response: %.130s", err);
        goto out;
    }
    r->signature_valid = ocsp_check_signer(bs, j->issuer, j->at, err) == 0;
    if (!r->signature_valid) {
        snprintf(r->error, sizeof(r->error), "%s", err);
        goto out;
    }
    if (ocsp_find(bs, j->id, &a, err) != 0) {
        snprintf(r->error, sizeof(r->error), "%s", err);
        goto out;
    }
    r->this_update = a.this_update;
    r->next_update = a.next_update;
    fs_strlcpy(r->status, ocsp_status_name(a.status), sizeof(r->status));
    if (ocsp_check_time(&a, j->at, err) != 0) {
        snprintf(r->error, sizeof(r->error), "%s", err);
        goto out;
    }
    if (a.status == OCSP_ANSWER_UNKNOWN) {
        snprintf(r->error, sizeof(r->error),
                 "the responder does not know this certificate (status unknown)");
        goto out;
    }
    ok = 1;
out:
    OCSP_BASICRESP_free(bs);
    ERR_clear_error();
    return ok;
}

static void on_fetched(void *arg, const fetch_result_t *res)
{
    revcheck_job_t *j = arg;
    revcheck_result_t r;
    memset(&r, 0, sizeof(r));
    r.signature_valid = -1;
    r.http_status = res->http_status;
    r.bytes = res->bytes;
    r.time_ms = res->time_ms;
    char err[CRL_ERR_LEN];
    unsigned char *der = NULL;
    size_t len = 0;
    if (j->skip != NULL) {
        r.skipped = 1;
        r.time_ms = 0;
        snprintf(r.error, sizeof(r.error), "skipped: %s", j->skip);
    } else if (j->fail != NULL) {
        r.time_ms = 0;
        snprintf(r.error, sizeof(r.error), "%s", j->fail);
    } else if (res->err != FETCH_OK) {
        snprintf(r.error, sizeof(r.error), "%s", res->error);
    } else if (!j->ldap && res->http_status != 200) {
        snprintf(r.error, sizeof(r.error), "HTTP %ld", res->http_status);
    } else if (res->bytes == 0) {
        snprintf(r.error, sizeof(r.error),
                 j->ldap ? "LDAP: no entry found" : "empty body (HTTP 200)");
    } else if (j->kind == REVCHECK_OCSP) {
        r.usable = check_ocsp(j, res, &r);
    } else if (j->ldap && crl_from_ldap(res->body, res->bytes, &der, &len, err) != 0) {
        snprintf(r.error, sizeof(r.error), "%s", err);
    } else if (crl_parse(der ? der : res->body, der ? len : res->bytes, &r.crl, err) != 0) {
        snprintf(r.error, sizeof(r.error), "unparsable CRL: %.140s", err);
    } else {
        r.usable = check_crl(j, r.crl, &r);
    }
    free(der);
    ERR_clear_error();
    if (r.usable)
        r.error[0] = '\0';
    j->cb(j->arg, &r);
    X509_CRL_free(r.crl);
    job_free(j);
}

/* The URL to retrieve for j (malloc'ed), or NULL when j->skip says why it is not retrieved. */
static char *route(revcheck_job_t *j, const revcheck_req_t *req)
{
    const char *url = req->url;
    if (j->kind != REVCHECK_OCSP && crl_url_has_scheme(url, "file")) {
        j->skip = "file:// is not retrieved";
        return NULL;
    }
    if (j->kind == REVCHECK_OCSP || !crl_url_has_scheme(url, "ldap"))
        return fs_xstrdup(url); /* http://, or a scheme the fetcher reports as unsupported */
    if (req->ldap_host == NULL) {
        j->skip = "no directory in this view";
        return NULL;
    }
    size_t n = strlen(url) + strlen(req->ldap_host) + 8;
    char *out = fs_xmalloc(n);
    if (url[7] == '/') /* host-less, as AD CS writes them: the view's directory */
        snprintf(out, n, "ldap://%s%s", req->ldap_host, url + 7);
    else
        snprintf(out, n, "%s", url);
    j->ldap = 1;
    return out;
}

int revcheck_start(fetch_t *f, const revcheck_req_t *req, revcheck_cb cb, void *arg,
                   revcheck_job_t **job)
{
    if (f == NULL || req == NULL || req->url == NULL || req->cert == NULL || cb == NULL)
        return UV_EINVAL;
    revcheck_job_t *j = fs_xcalloc(1, sizeof(*j));
    j->kind = req->kind;
    j->at = req->at;
    j->cb = cb;
    j->arg = arg;
    j->cert = req->cert;
    X509_up_ref(j->cert);
    if (req->issuer != NULL && X509_up_ref(req->issuer))
        j->issuer = req->issuer;
    if (req->base != NULL && X509_CRL_up_ref(req->base))
        j->base = req->base;
    fetch_req_t fr;
    fetch_req_init(&fr);
    fr.timeout_ms = req->timeout_ms;
    fr.max_bytes = req->max_bytes;
    fr.resolve = req->resolve;
    fr.dns_override_only = req->dns_override_only;
    unsigned char *der = NULL;
    char *url = route(j, req), *get = NULL;
    if (url != NULL && j->kind == REVCHECK_OCSP && j->issuer == NULL) {
        j->fail = "the issuing CA is not known: no OCSP request can be made";
        free(url);
        url = NULL;
    }
    /* A URL that is not retrieved still goes through the fetcher, as a scheme it reports
     * unsupported, asynchronously: the callback's contract without a timer of our own. */
    fr.url = url != NULL ? url : "file:///";
    fr.allow_ldap = j->ldap;
    fr.proxy = j->ldap ? NULL : req->proxy;
    if (url != NULL && j->kind == REVCHECK_OCSP) {
        size_t len = 0;
        j->id = ocsp_cert_id(j->cert, j->issuer);
        if (j->id == NULL || ocsp_request_der(j->id, &der, &len) != 0) {
            ERR_clear_error();
            free(url);
            job_free(j);
            return UV_ENOMEM;
        }
        get = ocsp_get_url(url, der, len);
        if (get != NULL) {
            fr.url = get;
        } else {
            fr.post_body = der;
            fr.post_len = len;
            fr.post_type = "application/ocsp-request";
        }
    }
    int rc = fetch_start(f, &fr, on_fetched, j, &j->fetch);
    free(der);
    free(get);
    free(url);
    if (rc != 0) {
        job_free(j);
        return rc;
    }
    if (job)
        *job = j;
    return 0;
}

void revcheck_cancel(revcheck_job_t *job)
{
    fetch_cancel(job->fetch);
    job_free(job);
}
