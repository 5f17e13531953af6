/* pki.h - a test PKI built in memory with the OpenSSL 3.0 API: certificates with realistic
 * extensions, CRLs, and the standard rollover scenario (roots, intermediate, broken leaves). */
#ifndef LAB_PKI_H
#define LAB_PKI_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lab/httpserver.h"

/* A certificate and its private key; both owned (one reference each). */
typedef struct lab_cert_s {
    X509 *cert;
    EVP_PKEY *key;
} lab_cert_t;

/* What to issue. Zeroed fields take the defaults noted. */
typedef struct lab_cert_opts_s {
    const char *cn;              /* subject CN (required); subject also gets O=Fleetscan Lab */
    const char *const *dns_sans; /* NULL-terminated list or NULL */
    const char *const *ip_sans;  /* NULL-terminated list or NULL */
    int is_ca;                   /* CA:TRUE, keyCertSign+cRLSign; else a serverAuth leaf */
    int64_t not_before_off_s;    /* from now; 0 = -1 day (tolerates client clock skew) */
    int64_t not_after_off_s;     /* from now; 0 = +365 days */
    const char *md;              /* signature digest: NULL = "SHA256", or "SHA1", ... */
    int key_ec;                  /* new key: 0 RSA-2048, 1 EC P-256 */
    int client_auth_only;        /* leaf EKU clientAuth instead of serverAuth */
    EVP_PKEY *key;               /* reuse this key (up-ref'd) instead of generating one */
    long serial;                 /* 0 = random positive 63-bit */
    const char *crl_url;         /* CRL distribution point URI, optional */
    const char *const *crl_urls; /* more CDP URIs (NULL-terminated), after crl_url in the same
                                    distribution point, as AD CS lists ldap:// and http:// */
    const char *aia_url;         /* AIA caIssuers URI, optional */
    const char *ocsp_url;        /* AIA id-ad-ocsp URI, optional */
    const char *freshest_url;    /* freshestCRL (delta CRL distribution point) URI, optional */
    int ocsp_signing;            /* leaf EKU id-kp-OCSPSigning (a delegated OCSP responder) */
} lab_cert_opts_t;

/* Issues a certificate signed by issuer (NULL: self-signed) with basicConstraints (critical),
 * keyUsage (critical), extendedKeyUsage serverAuth (leaves), SKID, AKID, SAN, CDP and AIA.
 * Returns 0, or -1 with err filled; out is untouched on failure. Thread-safe. */
int lab_cert_issue(lab_cert_t *out, const lab_cert_opts_t *o, const lab_cert_t *issuer,
                   char err[256]);
/* Frees the certificate and key and zeroes *c; safe on a zeroed or freed struct. */
void lab_cert_free(lab_cert_t *c);

/* File helpers: return 0 or -1 (errno set). PEM files are written with mode 0644, keys 0600. */
int lab_write_pem(const char *path, X509 *const *certs, size_t n);
int lab_write_key(const char *path, EVP_PKEY *key);
int lab_write_file(const char *path, const void *buf, size_t len);
/* DER encoding of cert into a malloc'ed buffer (release with free()). Returns 0 or -1. */
int lab_cert_der(X509 *cert, unsigned char **buf, size_t *len);
/* PEM-armours der with label ("X509 CRL", "CERTIFICATE") into a malloc'ed NUL-terminated
 * string (release with free()). Returns 0 or -1. */
int lab_der_to_pem(const unsigned char *der, size_t len, const char *label, char **pem,
                   size_t *pem_len);

/* Makes a v2 CRL signed by issuer: each revoked certificate listed with revocation date
 * now - 1 h and reason keyCompromise; CRL number = this_update time; AKID from the issuer.
 * md NULL = "SHA256". *der is malloc'ed (release with free()). Returns 0 or -1 with err. */
int lab_crl_make(unsigned char **der, size_t *len, const lab_cert_t *issuer,
                 const X509 *const *revoked, size_t nrevoked, int64_t this_update_off_s,
                 int64_t next_update_off_s, const char *md, char err[256]);
/* The same with n made-up entries (16-byte serials 0x61000...01 to ...n, keyCompromise): a CRL
 * as large as a real CA's without issuing its certificates. */
int lab_crl_make_bulk(unsigned char **der, size_t *len, const lab_cert_t *issuer, size_t n,
                      int64_t this_update_off_s, int64_t next_update_off_s, char err[256]);

/* Everything a CRL can be made with; zeroed fields take the defaults noted. */
typedef struct lab_crl_opts_s {
    const X509 *const *revoked; /* listed certificates (revocation date now - 1 h) */
    size_t nrevoked;
    int reason;                /* CRLReason of the entries; 0 = keyCompromise (1) */
    int64_t this_update_off_s; /* from now */
    int64_t next_update_off_s; /* from now */
    int64_t crl_number;        /* 0 = now + this_update_off_s, as lab_crl_make */
    int64_t delta_base;        /* > 0: a delta CRL, Delta CRL Indicator (critical) with this
                                  BaseCRLNumber */
    const char *freshest_url;  /* a base CRL naming its delta: Freshest CRL extension URI */
    const char *md;            /* NULL = "SHA256" */
} lab_crl_opts_t;

/* Makes a v2 CRL signed by issuer as o says (AKID from the issuer, entries sorted). *der is
 * malloc'ed (release with free()). Returns 0 or -1 with err. */
int lab_crl_make_ex(unsigned char **der, size_t *len, const lab_cert_t *issuer,
                    const lab_crl_opts_t *o, char err[256]);

/* Leaves of the standard scenario PKI. Unless noted they are issued by `inter` for the host
 * (SANs host and 127.0.0.1) and carry CDP base/inter.crl and AIA base/inter.der. */
typedef enum lab_leaf_e {
    LAB_LEAF_GOOD,      /* valid for a year */
    LAB_LEAF_EXPIRED,   /* notAfter 2 days ago */
    LAB_LEAF_NOTYET,    /* notBefore in 2 days */
    LAB_LEAF_WRONGHOST, /* SAN other.lab.test only */
    LAB_LEAF_SHA1,      /* signed with SHA-1 */
    LAB_LEAF_EXPIRING,  /* notAfter in 5 days */
    LAB_LEAF_REVOKED,   /* listed on inter.crl */
    LAB_LEAF_ROGUE,     /* issued by rogue_root (untrusted, self-signed), no CDP/AIA */
    LAB_LEAF_LEGACY,    /* issued by old_root (the legacy store's root), no CDP/AIA */
    LAB_LEAF_COUNT
} lab_leaf_t;

/* File stem of each leaf: "good", "expired", ... */
extern const char *const lab_leaf_names[LAB_LEAF_COUNT];

typedef struct lab_pki_s {
    char dir[512];
    char host[256];
    lab_cert_t root;       /* "Lab Root CA", RSA-2048 */
    lab_cert_t inter;      /* "Lab Issuing CA 1", RSA-2048, CDP base/root.crl, AIA base/root.der */
    lab_cert_t old_root;   /* "Lab Legacy Root CA" */
    lab_cert_t rogue_root; /* "Rogue Root CA", trusted by nobody */
    lab_cert_t leaf[LAB_LEAF_COUNT]; /* leaves share one RSA-2048 key */
    /* DER bytes also written to dir; owned. */
    unsigned char *inter_crl, *root_crl, *inter_der, *root_der;
    size_t inter_crl_len, root_crl_len, inter_der_len, root_der_len;
} lab_pki_t;

/* Creates the scenario PKI and writes into dir (which must exist): root.pem, inter.pem,
 * old-root.pem, rogue-root.pem; per leaf <name>.pem (leaf only), <name>-chain.pem (leaf and its
 * issuer when that is inter), <name>-key.pem; inter.crl (DER, lists the revoked leaf,
 * nextUpdate +7 days), root.crl (DER, empty), inter.der, root.der.
 * crl_base_url (e.g. "http://127.0.0.1:8080", no trailing slash) may be NULL: no CDP/AIA.
 * Returns 0, or -1 with err filled and *p zeroed. */
int lab_pki_create(lab_pki_t *p, const char *dir, const char *host, const char *crl_base_url,
                   char err[256]);
void lab_pki_free(lab_pki_t *p);
/* Writes "<dir>/<file>" into buf and returns buf. */
char *lab_pki_path(const lab_pki_t *p, const char *file, char *buf, size_t n);
/* Serves /root.crl, /inter.crl (application/pkix-crl), /root.der, /inter.der
 * (application/pkix-cert) from h, matching the URLs given to lab_pki_create. */
void lab_pki_publish(const lab_pki_t *p, lab_http_t *h);
/* The CRL host going down and coming back: with served 0, /inter.crl (or /root.crl: which is
 * "inter" or "root") closes every connection without an answer, as a dead CDP host does;
 * with served 1 it serves that CRL again as lab_pki_publish does. */
void lab_pki_serve_crl(const lab_pki_t *p, lab_http_t *h, const char *which, int served);

#endif
