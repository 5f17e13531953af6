/* chain.c - presented-chain capture and endpoint-style chain validation (see chain.h).
 * OpenSSL reports one error at a time; the verify callback collects them all so the
 * primary cause follows SPEC order rather than OpenSSL's checking order. */
#include "probes/chain.h"
#include "probes/url.h"
#include "probes/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

static char *name_str(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return fs_xstrdup("");
    X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *s = fs_xmalloc((size_t)len + 1);
    memcpy(s, data, (size_t)len);
    s[len] = '\0';
    BIO_free(b);
    return s;
}

int64_t chain_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

static void hex(const unsigned char *d, size_t n, char *out, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void chain_thumbprints(X509 *x, char sha1[41], char sha256[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    sha1[0] = sha256[0] = '\0';
    if (X509_digest(x, EVP_sha1(), md, &len) == 1)
        hex(md, len, sha1, 1);
    if (X509_digest(x, EVP_sha256(), md, &len) == 1)
        hex(md, len, sha256, 0);
}

void chain_sha1_thumbprint(X509 *x, char sha1[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    sha1[0] = '\0';
    if (X509_digest(x, EVP_sha1(), md, &len) == 1)
        hex(md, len, sha1, 1);
}

static void push_str(char ***arr, size_t *n, const char *prefix, const unsigned char *s, int len)
{
    size_t pl = strlen(prefix);
    char *v = fs_xmalloc(pl + (size_t)len + 1);
    memcpy(v, prefix, pl);
    memcpy(v + pl, s, (size_t)len);
    v[pl + (size_t)len] = '\0';
    *arr = fs_xrealloc(*arr, (*n + 1) * sizeof(char *));
    (*arr)[(*n)++] = v;
}

static void capture_sans(chain_cert_t *c, X509 *x)
{
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; g != NULL && i < sk_GENERAL_NAME_num(g); i++) {
        const GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
        if (n->type == GEN_DNS) {
            push_str(&c->sans, &c->nsans, "DNS:", ASN1_STRING_get0_data(n->d.dNSName),
                     ASN1_STRING_length(n->d.dNSName));
        } else if (n->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "";
            int len = n->d.iPAddress->length;
            if ((len == 4 || len == 16) &&
                inet_ntop(len == 4 ? AF_INET : AF_INET6, n->d.iPAddress->data, ip, sizeof(ip)))
                push_str(&c->sans, &c->nsans, "IP:", (const unsigned char *)ip, (int)strlen(ip));
        }
    }
    GENERAL_NAMES_free(g);
}

static void capture_cdp(chain_cert_t *c, X509 *x)
{
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    for (int i = 0; dps != NULL && i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);
        if (dp->distpoint == NULL || dp->distpoint->type != 0)
            continue;
        GENERAL_NAMES *names = dp->distpoint->name.fullname;
        for (int j = 0; j < sk_GENERAL_NAME_num(names); j++) {
            GENERAL_NAME *n = sk_GENERAL_NAME_value(names, j);
            if (n->type == GEN_URI)
                push_str(&c->cdp, &c->ncdp, "",
                         ASN1_STRING_get0_data(n->d.uniformResourceIdentifier),
                         ASN1_STRING_length(n->d.uniformResourceIdentifier));
        }
    }
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
}

static void capture_aia(chain_cert_t *c, X509 *x)
{
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
    for (int i = 0; aia != NULL && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (OBJ_obj2nid(ad->method) == NID_ad_ca_issuers && ad->location->type == GEN_URI)
            push_str(&c->aia, &c->naia, "",
                     ASN1_STRING_get0_data(ad->location->d.uniformResourceIdentifier),
                     ASN1_STRING_length(ad->location->d.uniformResourceIdentifier));
    }
    AUTHORITY_INFO_ACCESS_free(aia);
}

static char *serial_hex(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    char *s = fs_xstrdup(h ? h : "");
    OPENSSL_free(h);
    BN_free(bn);
    return s;
}

static void capture_one(chain_cert_t *c, X509 *x)
{
    c->subject = name_str(X509_get_subject_name(x));
    c->issuer = name_str(X509_get_issuer_name(x));
    c->serial = serial_hex(x);
    c->not_before = chain_asn1_time(X509_get0_notBefore(x));
    c->not_after = chain_asn1_time(X509_get0_notAfter(x));
    chain_thumbprints(x, c->sha1, c->sha256);
    const char *alg = OBJ_nid2ln(X509_get_signature_nid(x));
    fs_strlcpy(c->sig_alg, alg ? alg : "unknown", sizeof(c->sig_alg));
    c->is_ca = X509_check_ca(x) > 0;
    c->self_signed = X509_self_signed(x, 0) == 1;
    capture_sans(c, x);
    capture_cdp(c, x);
    capture_aia(c, x);
    ERR_clear_error();
}

void chain_info_free(chain_info_t *info)
{
    for (size_t i = 0; i < info->n; i++) {
        chain_cert_t *c = &info->certs[i];
        free(c->subject);
        free(c->issuer);
        free(c->serial);
        for (size_t j = 0; j < c->nsans; j++)
            free(c->sans[j]);
        for (size_t j = 0; j < c->ncdp; j++)
            free(c->cdp[j]);
        for (size_t j = 0; j < c->naia; j++)
            free(c->aia[j]);
        free(c->sans);
        free(c->cdp);
        free(c->aia);
    }
    memset(info, 0, sizeof(*info));
}

void chain_info_capture(chain_info_t *info, STACK_OF(X509) * chain)
{
    chain_info_free(info);
    int n = chain ? sk_X509_num(chain) : 0;
    info->total = (size_t)n;
    for (int i = 0; i < n && i < CHAIN_MAX_CERTS; i++)
        capture_one(&info->certs[info->n++], sk_X509_value(chain, i));
}

int chain_normalise_thumbprint(const char *in, char out[65])
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':' || *p == ' ' || *p == '-')
            continue;
        if (!isxdigit((unsigned char)*p) || n >= 64)
            return -1;
        out[n++] = (char)tolower((unsigned char)*p);
    }
    out[n] = '\0';
    return (n == 40 || n == 64) ? 0 : -1;
}

/* What the verify callback saw, by kind; depth of the first occurrence of each. */
typedef struct verify_seen_s {
    int expired, notyet, hostname, purpose, issuer_missing, untrusted_root, other;
    int purpose_depth;
    int expired_depth, notyet_depth, issuer_missing_depth, other_err, other_depth;
} verify_seen_t;

static int collect_cb(int ok, X509_STORE_CTX *ctx)
{
    if (ok)
        return 1;
    verify_seen_t *s = X509_STORE_CTX_get_app_data(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (!s->expired++)
            s->expired_depth = depth;
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (!s->notyet++)
            s->notyet_depth = depth;
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        s->hostname++;
        break;
    case X509_V_ERR_INVALID_PURPOSE:
        if (!s->purpose++)
            s->purpose_depth = depth;
        break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        if (!s->issuer_missing++)
            s->issuer_missing_depth = depth;
        break;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        s->untrusted_root++;
        break;
    default:
        if (!s->other++) {
            s->other_err = err;
            s->other_depth = depth;
        }
        break;
    }
    return 1; /* keep going: every problem is collected, the verdict picks by SPEC order */
}

static const char *cert_subject_cn(X509 *x, char *buf, size_t len)
{
    char *s = name_str(X509_get_subject_name(x));
    fs_strlcpy(buf, s, len);
    free(s);
    return buf;
}

static int is_sha1_signed(X509 *x)
{
    int md = NID_undef, pk = NID_undef;
    if (!OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk))
        return 0;
    return md == NID_sha1 || md == NID_md5;
}

int chain_verify(X509_STORE *trust, STACK_OF(X509) * presented, STACK_OF(X509) * extra,
                 const chain_check_t *c, chain_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    v->issuer_missing_depth = -1;
    int rc = -1;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *untrusted = NULL;
    verify_seen_t seen;
    memset(&seen, 0, sizeof(seen));
    char who[160], when[32], at[32];

    if (presented == NULL || sk_X509_num(presented) == 0) {
        v->cause = FS_CAUSE_UNTRUSTED_CA;
        snprintf(v->message, sizeof(v->message), "the server presented no certificate");
        return 0;
    }
    X509 *leaf = sk_X509_value(presented, 0);
    untrusted = sk_X509_new_null();
    ctx = X509_STORE_CTX_new();
    if (untrusted == NULL || ctx == NULL)
        goto out;
    for (int i = 1; i < sk_X509_num(presented); i++)
        sk_X509_push(untrusted, sk_X509_value(presented, i));
    for (int i = 0; extra != NULL && i < sk_X509_num(extra); i++)
        sk_X509_push(untrusted, sk_X509_value(extra, i));
    if (X509_STORE_CTX_init(ctx, trust, leaf, untrusted) != 1)
        goto out;
    /* Schannel checks the server-authentication usage (EKU): a client-auth-only certificate
     * bound to 443 is a wrong certificate, whatever its names. */
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, (time_t)c->at);
    /* Security level 0: a SHA-1 enterprise chain is a warning (weak_signature), as on
     * Windows, not a verification failure. */
    X509_VERIFY_PARAM_set_auth_level(param, 0);
    if (c->host != NULL) {
        if (fs_is_ip_literal(c->host))
            X509_VERIFY_PARAM_set1_ip_asc(param, c->host);
        else
            X509_VERIFY_PARAM_set1_host(param, c->host, 0);
    }
    X509_STORE_CTX_set_app_data(ctx, &seen);
    X509_STORE_CTX_set_verify_cb(ctx, collect_cb);
    if (X509_verify_cert(ctx) < 0 && !seen.other && !seen.issuer_missing) {
        snprintf(v->message, sizeof(v->message), "chain verification could not run");
        goto out;
    }
    v->built = X509_STORE_CTX_get1_chain(ctx);
    STACK_OF(X509) *built = v->built;
    int nb = built ? sk_X509_num(built) : 0;
    fs_rfc3339(c->at, at, sizeof(at));

    if (seen.expired) {
        X509 *x = sk_X509_value(built, seen.expired_depth < nb ? seen.expired_depth : 0);
        v->cause = FS_CAUSE_CERT_EXPIRED;
        fs_rfc3339(chain_asn1_time(X509_get0_notAfter(x)), when, sizeof(when));
        snprintf(v->message, sizeof(v->message),
                 "certificate \"%s\" expired on %s (endpoint time %s)",
                 cert_subject_cn(x, who, sizeof(who)), when, at);
    } else if (seen.notyet) {
        X509 *x = sk_X509_value(built, seen.notyet_depth < nb ? seen.notyet_depth : 0);
        v->cause = FS_CAUSE_CERT_NOT_YET_VALID;
        fs_rfc3339(chain_asn1_time(X509_get0_notBefore(x)), when, sizeof(when));
        snprintf(v->message, sizeof(v->message),
                 "certificate \"%s\" is not valid before %s (endpoint time %s)",
                 cert_subject_cn(x, who, sizeof(who)), when, at);
    } else if (seen.hostname) {
        v->cause = FS_CAUSE_HOSTNAME_MISMATCH;
        snprintf(v->message, sizeof(v->message),
                 "certificate \"%s\" does not name \"%s\" (wrong certificate bound?)",
                 cert_subject_cn(leaf, who, sizeof(who)), c->host ? c->host : "");
    }
    if (v->cause == FS_CAUSE_NONE && seen.purpose) {
        X509 *x = sk_X509_value(built, seen.purpose_depth < nb ? seen.purpose_depth : 0);
        v->cause = FS_CAUSE_HOSTNAME_MISMATCH;
        snprintf(v->message, sizeof(v->message),
                 "certificate \"%s\" is not valid for server authentication (extended key usage "
                 "lacks serverAuth): wrong certificate bound?",
                 cert_subject_cn(x, who, sizeof(who)));
    }
    if (v->cause == FS_CAUSE_NONE && c->expect_thumbprint != NULL) {
        char sha1[41], sha256[65], want[65];
        chain_thumbprints(leaf, sha1, sha256);
        for (char *p = sha1; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        fs_strlcpy(want, c->expect_thumbprint, sizeof(want));
        const char *got = strlen(want) == 40 ? sha1 : sha256;
        if (strcmp(got, want) != 0) {
            v->cause = FS_CAUSE_THUMBPRINT_MISMATCH;
            snprintf(v->message, sizeof(v->message),
                     "bound certificate thumbprint %s differs from the expected %s", got, want);
        }
    }
    if (v->cause == FS_CAUSE_NONE && seen.issuer_missing) {
        int d = seen.issuer_missing_depth < nb ? seen.issuer_missing_depth : nb - 1;
        X509 *x = sk_X509_value(built, d);
        char iss[160];
        char *is = name_str(X509_get_issuer_name(x));
        fs_strlcpy(iss, is, sizeof(iss));
        free(is);
        v->issuer_missing_depth = d;
        /* The chain stops at a certificate whose issuer nobody supplied (not sent, not in the
         * endpoint's stores, not fetched through AIA). Whether that issuer is an intermediate
         * (the server must send it) or a root (the endpoints must trust it) only the issuer
         * itself can tell: AIA is asked for it first (probe.c), so reaching here means the data
         * cannot tell, and the message names both sides. Under a leaf the server most likely
         * omitted its intermediate; under a CA it sent, most likely the root is missing. */
        if (X509_check_ca(x) > 0) {
            v->cause = FS_CAUSE_UNTRUSTED_CA;
            snprintf(v->message, sizeof(v->message),
                     "issuer \"%s\" of CA \"%s\" is not in the endpoint's trusted roots (if it is "
                     "an intermediate rather than a root, the server must send it)",
                     iss, cert_subject_cn(x, who, sizeof(who)));
        } else {
            v->cause = FS_CAUSE_MISSING_INTERMEDIATE;
            snprintf(v->message, sizeof(v->message),
                     "issuer \"%s\" of \"%s\" was not sent by the server and is not in the "
                     "endpoint's store (if it is a root rather than an intermediate, the endpoint "
                     "lacks that root)",
                     iss, cert_subject_cn(x, who, sizeof(who)));
        }
    } else if (v->cause == FS_CAUSE_NONE && seen.untrusted_root) {
        X509 *top = sk_X509_value(built, nb - 1);
        v->cause = FS_CAUSE_UNTRUSTED_CA;
        snprintf(v->message, sizeof(v->message), "root \"%s\" is not trusted by the endpoint",
                 cert_subject_cn(top, who, sizeof(who)));
    } else if (v->cause == FS_CAUSE_NONE && seen.other) {
        v->cause = FS_CAUSE_UNTRUSTED_CA;
        snprintf(v->message, sizeof(v->message), "certificate at depth %d rejected: %s",
                 seen.other_depth, X509_verify_cert_error_string(seen.other_err));
    }

    for (int i = 0; i < nb; i++) {
        X509 *x = sk_X509_value(built, i);
        int64_t na = chain_asn1_time(X509_get0_notAfter(x));
        if (na != 0 && (v->not_after_min == 0 || na < v->not_after_min))
            v->not_after_min = na;
        int64_t nbf = chain_asn1_time(X509_get0_notBefore(x));
        if (nbf > v->not_before_max)
            v->not_before_max = nbf;
        if (na > c->at && na - c->at < c->expiring_soon_s)
            v->warnings |= FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON);
        if (!(i == nb - 1 && X509_self_signed(x, 0) == 1) && is_sha1_signed(x))
            v->warnings |= FS_WARN_BIT(FS_WARN_WEAK_SIGNATURE);
    }
    rc = 0;
out:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    return rc;
}

void chain_verdict_free(chain_verdict_t *v)
{
    sk_X509_pop_free(v->built, X509_free);
    v->built = NULL;
}
