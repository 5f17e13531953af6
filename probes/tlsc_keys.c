/* tlsc_keys.c - RSA and EC public keys decoded by OpenSSL's built-in methods instead of its
 * provider decoders, on OpenSSL 3.0 (see tlsc.h, tlsc_builtin_keys). The one file that uses
 * the ENGINE API, deprecated in 3.0, hence the #undef before any OpenSSL header. */
#undef OPENSSL_NO_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include <pthread.h>
#include <stdlib.h>

#include "probes/tlsc.h"

#ifndef OPENSSL_NO_ENGINE
static const int key_nids[] = {EVP_PKEY_RSA, EVP_PKEY_EC};

/* The engine's only capability: OpenSSL's own built-in (legacy) methods for RSA and EC keys. */
static int builtin_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids, int nid)
{
    (void)e;
    if (pmeth == NULL) {
        *nids = key_nids;
        return (int)(sizeof(key_nids) / sizeof(key_nids[0]));
    }
    *pmeth = (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(nid);
    return *pmeth != NULL;
}

static int keys_enabled;

static void keys_init_once(void)
{
    /* OpenSSL 3.0 builds a provider decoder chain from scratch for every public key it parses
     * (openssl/openssl#15199, #17950): about a third of a TLS handshake's client CPU goes to
     * the two certificates of the server's chain. When an ENGINE is registered for a key type,
     * X509_PUBKEY's d2i takes the built-in decoder instead (x509_pubkey_decode: "engines
     * aren't overridden by providers"), and EVP_PKEY_CTXs for that type use the built-in
     * methods: the same OpenSSL code for RSA and ECDSA, without the per-key decoder search.
     * Only on 3.0.x, where the defect is; FLEETSCAN_OPENSSL_DECODERS=1 keeps OpenSSL's way. */
    unsigned long v = OpenSSL_version_num();
    if (v < 0x30000000UL || v >= 0x30100000UL || getenv("FLEETSCAN_OPENSSL_DECODERS") != NULL)
        return;
    ENGINE *e = ENGINE_new();
    if (e == NULL)
        return;
    if (ENGINE_set_id(e, "fleetscan-builtin-keys") && ENGINE_set_name(e, "built-in RSA/EC keys") &&
        ENGINE_set_pkey_meths(e, builtin_pkey_meths) && ENGINE_add(e) &&
        ENGINE_register_pkey_meths(e))
        keys_enabled = 1;
    ENGINE_free(e); /* the engine list keeps its own reference */
    ERR_clear_error();
}
#endif

int tlsc_builtin_keys(void)
{
#ifndef OPENSSL_NO_ENGINE
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, keys_init_once);
    return keys_enabled;
#else
    return 0;
#endif
}
