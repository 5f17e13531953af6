/* fuzz_tlsc.c - libFuzzer target for the sans-I/O TLS client engine: the input is what a server
 * sends back (first byte: the size of the chunks it arrives in), fed between handshake steps. */
#include "probes/tlsc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static tlsc_ctx_t *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    /* No trust is needed: the engine does not verify chains (chain.c does, afterwards). */
    tlsc_ctx_opts_t o = {0};
    if (tlsc_ctx_new(&ctx, &o, err) != 0) {
        fprintf(stderr, "fuzz_tlsc: tlsc_ctx_new: %s\n", err);
        abort();
    }
    return 0;
}

/* Sends whatever the engine queued to nowhere, as the probe does after every call. */
static void drain(tlsc_t *t)
{
    unsigned char buf[4096];
    while (tlsc_output_pending(t) > 0)
        if (tlsc_output(t, buf, sizeof(buf)) == 0)
            abort(); /* pending output that cannot be read would spin the probe */
}

/* Once established (not reachable without the client's secrets, but kept honest): read the
 * rest as application data and close. */
static void after_handshake(tlsc_t *t)
{
    unsigned char buf[1024];
    (void)tlsc_peer_chain(t);
    (void)tlsc_negotiated_version(t);
    if (tlsc_cipher_name(t) == NULL)
        abort();
    for (int i = 0; i < 64 && tlsc_read(t, buf, sizeof(buf)) > 0; i++)
        ;
    drain(t);
    tlsc_shutdown(t);
    drain(t);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    tlsc_t t;
    if (size == 0)
        return 0;
    /* 0 means everything at once; otherwise chunks of 1..255 bytes. */
    size_t chunk = data[0] ? data[0] : size;
    data++;
    size--;
    if (tlsc_init(&t, ctx, (size & 1) ? "fuzz.lab.test" : NULL) != 0)
        abort();
    int r = tlsc_handshake(&t); /* ClientHello */
    drain(&t);
    if (r != TLSC_WANT_MORE)
        abort(); /* without input the engine can only wait */
    for (size_t off = 0; off < size && r == TLSC_WANT_MORE;) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (tlsc_feed(&t, data + off, n) != 0)
            break;
        off += n;
        r = tlsc_handshake(&t);
        drain(&t);
    }
    if (r == TLSC_WANT_MORE) { /* the server stops talking: EOF */
        tlsc_feed_eof(&t);
        r = tlsc_handshake(&t);
        drain(&t);
    }
    if (r == TLSC_DONE)
        after_handshake(&t);
    else if (r == TLSC_FAIL && (t.err == TLSC_ERR_NONE || t.errmsg[0] == '\0'))
        abort(); /* a failure always has a cause and a message */
    tlsc_free(&t);
    ERR_clear_error();
    return 0;
}
