/* ocspd.h - an OCSP responder for tests and the lab, served by lab/httpserver: it answers RFC
 * 6960 requests (GET with the base64 request in the path, or POST) with responses built by
 * OpenSSL's OCSP API, well or badly as the test asks. */
#ifndef LAB_OCSPD_H
#define LAB_OCSPD_H

#include <stdint.h>

#include "lab/httpserver.h"
#include "lab/pki.h"

typedef enum {
    LAB_OCSP_GOOD,
    LAB_OCSP_REVOKED, /* keyCompromise, an hour ago */
    LAB_OCSP_UNKNOWN
} lab_ocsp_status_t;

typedef struct lab_ocsp_opts_s {
    const lab_cert_t *issuer;  /* the CA answered for (required) */
    const lab_cert_t *signer;  /* signs the responses: NULL = issuer (no certificate sent); else
                                  its certificate goes in the response (a delegated responder,
                                  or a wrong signer) */
    lab_ocsp_status_t status;  /* for every certificate asked about */
    int64_t this_update_off_s; /* from now; 0 = -60 s */
    int64_t next_update_off_s; /* from now; 0 = +1 day; < this_update: a stale response */
    int no_next_update;        /* leave nextUpdate out */
    int garbage;               /* answer 200 with bytes that are no OCSP response */
    int resp_status;           /* != 0: answer this unsuccessful responseStatus (3 tryLater) */
    unsigned delay_ms;         /* before answering: a slow responder */
} lab_ocsp_opts_t;

typedef struct lab_ocsp_s lab_ocsp_t;

/* Serves OCSP under prefix (e.g. "/ocsp": GET /ocsp/<base64> and POST /ocsp) on h; o is copied
 * (the certificates are up-ref'd). The responder lives until lab_http_stop(h); calling this
 * again for the same prefix replaces it. Returns the responder, for its counters. */
lab_ocsp_t *lab_ocsp_serve(lab_http_t *h, const char *prefix, const lab_ocsp_opts_t *o);

/* Requests answered so far by method; either pointer may be NULL. Thread-safe. */
void lab_ocsp_counts(lab_ocsp_t *r, unsigned *gets, unsigned *posts);

#endif
