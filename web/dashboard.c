/* dashboard.c - serves the page of web/dashboard.html (embedded as dashboard__html by a file
 * CMake generates at build time) and derives its Content-Security-Policy from its bytes. */
#include "web/dashboard.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

/* Generated into the build directory from web/dashboard.html (see CMakeLists.txt). */
extern const unsigned char dashboard__html[];
extern const size_t dashboard__html_len;

#define SHA256_LEN 32
/* 'sha256-' + base64 of 32 bytes (44) + quote. */
#define CSP_HASH_MAX 64
#define CSP_MAX 512

static pthread_once_t csp_once = PTHREAD_ONCE_INIT;
static char csp[CSP_MAX];

const char *dashboard_page(size_t *len)
{
    *len = dashboard__html_len;
    return (const char *)dashboard__html;
}

/* "'sha256-<base64>'" of the text between the first `open` after "<html" and the next `close`
 * (what a browser hashes for an inline element), or "'none'" when the page has no such element:
 * a page edited into a shape this does not recognise then shows blank instead of running
 * code the policy was not meant to admit. */
static void element_hash(const char *open, const char *close, char out[CSP_HASH_MAX])
{
    /* The page is NUL-terminated and holds no NUL of its own. */
    const char *body = strstr((const char *)dashboard__html, "<html");
    body = body != NULL ? strstr(body, open) : NULL;
    const char *stop = body != NULL ? strstr(body, close) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned char b64[4 * ((SHA256_LEN + 2) / 3) + 1];
    unsigned int mdlen = 0;

    snprintf(out, CSP_HASH_MAX, "'none'");
    if (stop == NULL)
        return;
    body += strlen(open);
    if (EVP_Digest(body, (size_t)(stop - body), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != SHA256_LEN)
        return;
    EVP_EncodeBlock(b64, md, (int)mdlen);
    snprintf(out, CSP_HASH_MAX, "'sha256-%s'", (const char *)b64);
}

static void csp_init(void)
{
    char script[CSP_HASH_MAX], style[CSP_HASH_MAX];
    element_hash("<script>", "</script>", script);
    element_hash("<style>", "</style>", style);
    /* connect-src 'self': the page only talks to the API that served it (relative URLs). */
    snprintf(csp, sizeof(csp),
             "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             script, style);
}

const char *dashboard_csp(void)
{
    pthread_once(&csp_once, csp_init);
    return csp;
}
