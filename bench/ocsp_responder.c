/* ocsp_responder.c - the bench's OCSP responder: lab/ocspd.c (good for every certificate asked
 * about, signed by the issuing CA, nextUpdate a day ahead) on lab/httpserver (127.0.0.1, an
 * ephemeral port), one prefix per issuing CA. bench/run.sh puts it behind nginx, whose port the
 * -ocsp leaves' AIA OCSP URLs name (the port must be known when the certificates are made).
 *
 * usage: bench_ocsp PREFIX CA_CERT CA_KEY [PREFIX CA_CERT CA_KEY ...]
 * Prints "port=N" once listening, then serves until SIGTERM or SIGINT, and prints the requests
 * answered per prefix ("PREFIX gets=N posts=M") before it exits. */
#include "lab/httpserver.h"
#include "lab/ocspd.h"
#include "lab/pki.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/pem.h>

#define MAX_CAS 8

static int load(lab_cert_t *c, const char *cert, const char *key)
{
    FILE *f = fopen(cert, "r");
    c->cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    f = fopen(key, "r");
    c->key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return c->cert != NULL && c->key != NULL ? 0 : -1;
}

int main(int argc, char **argv)
{
    int n = (argc - 1) / 3;
    if (argc < 4 || (argc - 1) % 3 != 0 || n > MAX_CAS) {
        fprintf(stderr, "usage: %s PREFIX CA_CERT CA_KEY [PREFIX CA_CERT CA_KEY ...]\n", argv[0]);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server's threads exist */
    char err[256];
    lab_http_t *h = lab_http_start(err);
    if (h == NULL) {
        fprintf(stderr, "bench_ocsp: %s\n", err);
        return 1;
    }
    lab_cert_t cas[MAX_CAS] = {0};
    lab_ocsp_t *r[MAX_CAS];
    for (int i = 0; i < n; i++) {
        if (load(&cas[i], argv[2 + 3 * i], argv[3 + 3 * i]) != 0) {
            fprintf(stderr, "bench_ocsp: cannot load %s / %s\n", argv[2 + 3 * i], argv[3 + 3 * i]);
            return 1;
        }
        lab_ocsp_opts_t o = {.issuer = &cas[i], .status = LAB_OCSP_GOOD};
        r[i] = lab_ocsp_serve(h, argv[1 + 3 * i], &o);
    }
    printf("port=%d\n", lab_http_port(h));
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    for (int i = 0; i < n; i++) {
        unsigned gets = 0, posts = 0;
        lab_ocsp_counts(r[i], &gets, &posts);
        printf("%s gets=%u posts=%u\n", argv[1 + 3 * i], gets, posts);
    }
    lab_http_stop(h);
    for (int i = 0; i < n; i++)
        lab_cert_free(&cas[i]);
    return 0;
}
