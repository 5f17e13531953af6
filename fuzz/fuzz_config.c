/* fuzz_config.c - libFuzzer target for cfg_parse(): arbitrary bytes as the JSON(C) configuration,
 * resolved against a scratch directory holding the files the seed configurations name. */
#include "daemon/config.h"

#include "fuzz/fuzz_pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Scratch base_dir: pki/ca.pem, pki/inter.pem (PEM certificates), token (an API token),
 * hashdir/ (an OpenSSL hashed directory with one entry), logs/ (writable, for event_log). */
static char base_dir[200];
/* FLEETSCAN_FUZZ_VERBOSE=1: print each input's verdict (to check what the seeds reach). */
static int verbose;

/* The scratch files, deepest first, so cleanup() can remove them in order. */
static const char *const scratch[] = {
    "pki/ca.pem", "pki/inter.pem", "hashdir/0a1b2c3d.0", "token", "pki", "hashdir", "logs", NULL};

static void sub(char *buf, size_t n, const char *rel);

static void cleanup(void)
{
    char p[256];
    if (base_dir[0] == '\0')
        return;
    for (size_t i = 0; scratch[i] != NULL; i++) {
        sub(p, sizeof(p), scratch[i]);
        remove(p);
    }
    rmdir(base_dir);
}

static void write_pem(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    fuzz_must(f != NULL && PEM_write_X509(f, x) == 1 && fclose(f) == 0, path);
}

static void sub(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", base_dir, rel);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char p[256];
    verbose = getenv("FLEETSCAN_FUZZ_VERBOSE") != NULL;
    /* In $TMPDIR (run.sh points it into the build directory): a crash skips cleanup(). */
    const char *tmp = getenv("TMPDIR");
    snprintf(base_dir, sizeof(base_dir), "%.150s/fleetscan-fuzz-config.XXXXXX",
             tmp != NULL && *tmp ? tmp : "/tmp");
    fuzz_must(mkdtemp(base_dir) != NULL, "mkdtemp");
    atexit(cleanup);
    EVP_PKEY *ca_key = NULL;
    X509 *ca = fuzz_make_cert("Fuzz Root CA", 1, 1, NULL, NULL, &ca_key);
    X509 *inter = fuzz_make_cert("Fuzz Issuing CA", 2, 1, ca, ca_key, NULL);
    const char *dirs[] = {"pki", "hashdir", "logs"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        sub(p, sizeof(p), dirs[i]);
        fuzz_must(mkdir(p, 0700) == 0, p);
    }
    sub(p, sizeof(p), "pki/ca.pem");
    write_pem(p, ca);
    sub(p, sizeof(p), "hashdir/0a1b2c3d.0");
    write_pem(p, ca);
    sub(p, sizeof(p), "pki/inter.pem");
    write_pem(p, inter);
    sub(p, sizeof(p), "token");
    FILE *f = fopen(p, "w");
    fuzz_must(f != NULL && fputs("s3cret-token\n", f) >= 0 && fclose(f) == 0, p);
    X509_free(inter);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    ERR_clear_error();
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char err[256];
    cfg_t *cfg = NULL;
    memset(err, 0, sizeof(err));
    /* cfg_parse takes len bytes that need not be NUL-terminated: give it exactly those. */
    int rc = cfg_parse(&cfg, (const char *)data, size, base_dir, err);
    if (verbose)
        fprintf(stderr, "fuzz_config: %s\n", rc == 0 ? "parsed" : err);
    if (rc == 0) {
        if (cfg == NULL || cfg->ngroups == 0 || cfg->ntrust == 0 || cfg->nprofiles == 0)
            abort(); /* the header promises >= 1 of each */
        if (cfg->ref_profile_idx >= cfg->nprofiles || cfg->ref_trust_idx >= cfg->ntrust)
            abort();
        for (size_t i = 0; i < cfg->ngroups; i++) {
            if (cfg->groups[i].profile_idx >= cfg->nprofiles ||
                cfg->groups[i].trust_idx >= cfg->ntrust)
                abort();
            /* the comparisons the schema table drives are reflexive */
            if (!cfg_group_equal(cfg, i, cfg, i) || !cfg_tls_ctx_equal(cfg, i, cfg, i))
                abort();
        }
        if (cfg_restart_changes(cfg, cfg, NULL, NULL) != 0)
            abort();
        cfg_free(cfg);
    } else {
        if (cfg != NULL || err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
            abort(); /* failure: *out NULL and a terminated message */
    }
    ERR_clear_error();
    return 0;
}
