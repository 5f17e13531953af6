/* bare_client.c - the floor for this library: the cheapest correct TLS client OpenSSL allows.
 * One SSL_CTX, SNI, SSL_set1_host, SSL_VERIFY_PEER (OpenSSL's own chain verification during
 * the handshake), sequential full handshakes over blocking sockets, paced at a fixed rate.
 * After the handshake it sends close_notify and closes, as a fleetscan probe does.
 *
 * usage: bare_client ADDR PORT SNI CA_FILE RATE_PER_S SECONDS [WARMUP_SECONDS]
 * prints one line: "handshakes=N failures=F cpu_ticks=T clk_tck=H wall_s=W us_per_handshake=U"
 * CPU is utime+stime of this process from /proc/self/stat, measured over the timed window
 * only (the warm-up and SSL_CTX set-up are excluded).
 * BARE_BUILTIN_KEYS=1 in the environment: OpenSSL 3.0 decodes RSA and EC keys with its
 * built-in methods, as fleetscan's daemon does (probes/tlsc_keys.c), for a floor that uses the
 * same workaround. */
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED /* the ENGINE API of BARE_BUILTIN_KEYS */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static const int key_nids[] = {EVP_PKEY_RSA, EVP_PKEY_EC};

static int builtin_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids, int nid)
{
    (void)e;
    if (pmeth == NULL) {
        *nids = key_nids;
        return 2;
    }
    *pmeth = (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(nid);
    return *pmeth != NULL;
}

/* The same ENGINE as probes/tlsc_keys.c: built-in RSA/EC key decoding and methods. */
static int builtin_keys(void)
{
    ENGINE *e = ENGINE_new();
    int ok = e != NULL && ENGINE_set_id(e, "bare-builtin-keys") &&
             ENGINE_set_name(e, "built-in RSA/EC keys") &&
             ENGINE_set_pkey_meths(e, builtin_pkey_meths) && ENGINE_add(e) &&
             ENGINE_register_pkey_meths(e);
    ENGINE_free(e);
    return ok;
}

static unsigned long long cpu_ticks(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (p == NULL)
        return 0;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one_handshake(SSL_CTX *ctx, const struct sockaddr_in *sa, const char *sni)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
        close(fd);
        return -1;
    }
    SSL *ssl = SSL_new(ctx);
    int ok = -1;
    if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_set_tlsext_host_name(ssl, sni) == 1 &&
        SSL_set1_host(ssl, sni) == 1 && SSL_connect(ssl) == 1 &&
        SSL_get_verify_result(ssl) == X509_V_OK) {
        ok = 0;
        SSL_shutdown(ssl); /* close_notify, no wait for the peer's */
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return ok;
}

static void run(SSL_CTX *ctx, const struct sockaddr_in *sa, const char *sni, double rate,
                double seconds, unsigned long *done, unsigned long *failed)
{
    double start = now_s(), period = 1.0 / rate;
    unsigned long i = 0;
    *done = *failed = 0;
    for (;;) {
        double due = start + (double)i * period, t = now_s();
        if (t - start >= seconds)
            break;
        if (due > t) {
            struct timespec d = {(time_t)(due - t), (long)((due - t - (time_t)(due - t)) * 1e9)};
            nanosleep(&d, NULL);
        }
        if (one_handshake(ctx, sa, sni) != 0)
            (*failed)++;
        (*done)++;
        i++;
    }
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr,
                "usage: %s ADDR PORT SNI CA_FILE RATE_PER_S SECONDS [WARMUP_SECONDS [TLS]]\n"
                "  TLS: 1.3 (default) or 1.2 (the handshake an IIS binding makes)\n",
                argv[0]);
        return 2;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    const char *sni = argv[3];
    double rate = atof(argv[5]), seconds = atof(argv[6]);
    double warm = argc > 7 ? atof(argv[7]) : 3;
    const char *bk = getenv("BARE_BUILTIN_KEYS");
    if (bk != NULL && strcmp(bk, "1") == 0 && !builtin_keys()) {
        fprintf(stderr, "bare_client: BARE_BUILTIN_KEYS: cannot register the engine\n");
        return 1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, argv[4], NULL) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int tls12 = argc > 8 && strcmp(argv[8], "1.2") == 0;
    SSL_CTX_set_min_proto_version(ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    if (tls12)
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    unsigned long done, failed;
    run(ctx, &sa, sni, rate, warm, &done, &failed);
    if (done == 0 || failed == done) {
        fprintf(stderr, "bare_client: warm-up: %lu of %lu handshakes failed\n", failed, done);
        return 1;
    }
    unsigned long long t0 = cpu_ticks();
    double w0 = now_s();
    run(ctx, &sa, sni, rate, seconds, &done, &failed);
    unsigned long long t1 = cpu_ticks();
    double wall = now_s() - w0;
    long hz = sysconf(_SC_CLK_TCK);
    double us = done ? (double)(t1 - t0) / (double)hz * 1e6 / (double)done : 0;
    printf("handshakes=%lu failures=%lu cpu_ticks=%llu clk_tck=%ld wall_s=%.2f "
           "us_per_handshake=%.0f\n",
           done, failed, t1 - t0, hz, wall, us);
    SSL_CTX_free(ctx);
    return failed ? 1 : 0;
}
