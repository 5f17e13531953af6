/* test_cli_probe.c - `fleetscan probe` end to end: the real binary against the lab's loopback
 * servers, asserting the JSON verdict, the human report and the exit status. */
#include "lab/scenarios.h"
#include "probes/util.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>

static lab_t lab;
static char root[600];

/* Runs the binary with args (under prefix, a command such as "timeout 10 "); returns its exit
 * status and its stdout in *out (malloc'd). */
static int run_with(const char *prefix, const char *args, char **out)
{
    char cmd[4096];
    const char *bin = getenv("FLEETSCAN_BIN");
    ASSERT(bin != NULL);
    snprintf(cmd, sizeof(cmd), "%s%s %s 2>/tmp/fleetscan-cli-stderr-%d", prefix, bin, args,
             (int)getpid());
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run(const char *args, char **out)
{
    return run_with("", args, out);
}

static char *err_output(void)
{
    char path[128];
    snprintf(path, sizeof(path), "/tmp/fleetscan-cli-stderr-%d", (int)getpid());
    FILE *f = fopen(path, "r");
    static char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

static cJSON *probe_json(lab_scenario_t sc, const char *path, const char *extra, int want_exit)
{
    char url[512], args[2048];
    if (sc == LAB_SC_PLAIN_HTTP) /* an agent speaking TLS to a plain HTTP port */
        snprintf(url, sizeof(url), "https://%s:%d", LAB_HOST, lab_port(&lab, sc));
    else
        lab_url(&lab, sc, path, url, sizeof(url));
    snprintf(args, sizeof(args),
             "probe %s --json --ca %s --resolve %s:127.0.0.1 --resolve %s:127.0.0.1 "
             "--dns-override-only --timeout 4000 %s",
             url, root, LAB_HOST, LAB_CRL_HOST, extra ? extra : "");
    char *out;
    int rc = run(args, &out);
    if (rc != want_exit)
        fprintf(stderr, "exit %d (want %d) for %s\n%s\n%s\n", rc, want_exit, args, out,
                err_output());
    ASSERT_EQ(rc, want_exit);
    cJSON *j = cJSON_Parse(out);
    if (j == NULL)
        fprintf(stderr, "not JSON: %s\n", out);
    ASSERT(j != NULL);
    free(out);
    return j;
}

static void expect_cause(lab_scenario_t sc, const char *extra, const char *cause)
{
    cJSON *j = probe_json(sc, NULL, extra, cause ? 1 : 0);
    cJSON *c = cJSON_GetObjectItem(j, "cause");
    fprintf(stderr, "   %-14s %s\n", lab_scenario_names[sc],
            cJSON_IsString(c) ? c->valuestring : "online");
    if (cause == NULL) {
        ASSERT(cJSON_IsNull(c));
        ASSERT_STREQ(cJSON_GetObjectItem(j, "state")->valuestring, "online");
    } else {
        ASSERT(cJSON_IsString(c));
        ASSERT_STREQ(c->valuestring, cause);
        ASSERT_STREQ(cJSON_GetObjectItem(j, "state")->valuestring, "offline");
        ASSERT(cJSON_IsString(cJSON_GetObjectItem(j, "remediation")));
    }
    ASSERT(cJSON_IsObject(cJSON_GetObjectItem(j, "timings_ms")));
    ASSERT(cJSON_IsArray(cJSON_GetObjectItem(j, "warnings")));
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(j, "message")));
    cJSON_Delete(j);
}

static int has_warning(cJSON *j, const char *w)
{
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "warnings"))
    {
        if (strcmp(it->valuestring, w) == 0)
            return 1;
    }
    return 0;
}

static cJSON *probe_url(const char *url, const char *extra, int want_exit)
{
    char args[2048], *out;
    snprintf(args, sizeof(args),
             "probe %s --json --ca %s --resolve %s:127.0.0.1 --dns-override-only %s", url, root,
             LAB_HOST, extra ? extra : "");
    int rc = run(args, &out);
    if (rc != want_exit)
        fprintf(stderr, "exit %d for %s: %s %s\n", rc, args, out, err_output());
    ASSERT_EQ(rc, want_exit);
    cJSON *j = cJSON_Parse(out);
    ASSERT(j != NULL);
    free(out);
    return j;
}

static void test_causes(void)
{
    expect_cause(LAB_SC_GOOD, NULL, NULL);
    /* AIA fetching is on by default, as in the daemon's groups and on Windows. */
    expect_cause(LAB_SC_LEAF_ONLY, "--revocation off --no-aia-fetch", "missing_intermediate");
    expect_cause(LAB_SC_ROGUE, NULL, "untrusted_ca");
    expect_cause(LAB_SC_EXPIRED, NULL, "cert_expired");
    expect_cause(LAB_SC_NOTYET, NULL, "cert_not_yet_valid");
    expect_cause(LAB_SC_WRONGHOST, NULL, "hostname_mismatch");
    expect_cause(LAB_SC_GOOD,
                 "--expect-thumbprint 00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33",
                 "thumbprint_mismatch");
    expect_cause(LAB_SC_NOSNI, "--no-sni", "hostname_mismatch");
    expect_cause(LAB_SC_GOOD, "--clock-skew -259200", "cert_not_yet_valid");
    expect_cause(LAB_SC_PLAIN_HTTP, NULL, "tls_handshake_failed");
    expect_cause(LAB_SC_GARBAGE, NULL, "tls_handshake_failed");
    expect_cause(LAB_SC_RESET, NULL, "connection_closed");
    expect_cause(LAB_SC_CLOSE, NULL, "connection_closed");
    expect_cause(LAB_SC_STALL, "--timeout 500", "probe_timeout");
    expect_cause(LAB_SC_REVOKED, "--revocation strict", "cert_revoked");
    if (lab_port(&lab, LAB_SC_TLS10)) {
        expect_cause(LAB_SC_TLS10, NULL, "tls_handshake_failed");
        cJSON *j = probe_json(LAB_SC_TLS10, NULL, "--tls-min 1.0", 0);
        ASSERT(has_warning(j, "weak_protocol"));
        cJSON_Delete(j);
    }
    cJSON *j = probe_json(LAB_SC_SHA1, NULL, NULL, 0);
    ASSERT(has_warning(j, "weak_signature"));
    cJSON_Delete(j);
    j = probe_json(LAB_SC_EXPIRING, NULL, NULL, 0);
    ASSERT(has_warning(j, "cert_expiring_soon"));
    cJSON_Delete(j);
    j = probe_json(LAB_SC_HTTP500, "/agent", NULL, 1);
    ASSERT_STREQ(cJSON_GetObjectItem(j, "cause")->valuestring, "http_error");
    ASSERT_EQ(cJSON_GetObjectItem(j, "http_status")->valueint, 500);
    cJSON_Delete(j);
    j = probe_json(LAB_SC_LEAF_ONLY, NULL, NULL, 0);
    ASSERT(has_warning(j, "aia_fetch_required"));
    cJSON_Delete(j);
    /* A plain-HTTP agent URL answered in the clear is the daemon's profile_mismatch too. */
    char url[256];
    snprintf(url, sizeof(url), "http://%s:%d/agent", LAB_HOST, lab_port(&lab, LAB_SC_PLAIN_HTTP));
    j = probe_url(url, NULL, 1);
    ASSERT_STREQ(cJSON_GetObjectItem(j, "cause")->valuestring, "profile_mismatch");
    ASSERT(strstr(cJSON_GetObjectItem(j, "message")->valuestring, "plain HTTP") != NULL);
    cJSON_Delete(j);
}

static void expect_url_cause(const char *url, const char *extra, const char *cause)
{
    cJSON *j = probe_url(url, extra, 1);
    fprintf(stderr, "   %-40s %s\n", url, cJSON_GetObjectItem(j, "cause")->valuestring);
    ASSERT_STREQ(cJSON_GetObjectItem(j, "cause")->valuestring, cause);
    cJSON_Delete(j);
}

static void test_network_causes(void)
{
    char url[256];
    snprintf(url, sizeof(url), "https://%s:%d", LAB_HOST, lab.closed_port);
    expect_url_cause(url, NULL, "connect_refused");
    snprintf(url, sizeof(url), "https://unknown.lab.test:%d", lab_port(&lab, LAB_SC_GOOD));
    expect_url_cause(url, NULL, "dns_failure");
    int fds[4];
    int port = lab_blackhole("127.0.0.1", 0, fds);
    ASSERT(port > 0);
    snprintf(url, sizeof(url), "https://%s:%d", LAB_HOST, port);
    expect_url_cause(url, "--timeout 700", "connect_timeout");
    for (int i = 0; i < 4; i++)
        close(fds[i]);
}

static void test_chain_and_retrievals(void)
{
    /* The expired chain is reported in full: certificate facts survive failure. */
    cJSON *j = probe_json(LAB_SC_EXPIRED, NULL, NULL, 1);
    cJSON *chain = cJSON_GetObjectItem(j, "chain");
    ASSERT_EQ(cJSON_GetArraySize(chain), 2);
    cJSON *leaf = cJSON_GetArrayItem(chain, 0);
    const char *keys[] = {"subject",         "issuer", "serial", "not_before", "not_after",
                          "sha1_thumbprint", "sha256", "sans",   "cdp",        "aia"};
    for (size_t i = 0; i < FS_ARRAY_SIZE(keys); i++)
        ASSERT(cJSON_GetObjectItem(leaf, keys[i]) != NULL);
    ASSERT_EQ(strlen(cJSON_GetObjectItem(leaf, "sha1_thumbprint")->valuestring), 40);
    cJSON_Delete(j);

    j = probe_json(LAB_SC_GOOD, NULL, "--revocation strict", 0);
    cJSON *rt = cJSON_GetObjectItem(j, "retrievals");
    /* Checked from the root down: the intermediate's CRL (root.crl), then the leaf's. */
    ASSERT_EQ(cJSON_GetArraySize(rt), 2);
    ASSERT_CONTAINS(cJSON_GetObjectItem(cJSON_GetArrayItem(rt, 0), "url")->valuestring,
                    "/root.crl");
    cJSON *r1 = cJSON_GetArrayItem(rt, 1);
    ASSERT_CONTAINS(cJSON_GetObjectItem(r1, "url")->valuestring, "/inter.crl");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(r1, "ok")));
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(r1, "next_update")));
    cJSON_Delete(j);
}

static void test_text_report(void)
{
    char url[512], args[2048], *out;
    lab_url(&lab, LAB_SC_EXPIRED, NULL, url, sizeof(url));
    snprintf(args, sizeof(args), "probe %s --ca %s --resolve %s:127.0.0.1 --resolve %s:127.0.0.1",
             url, root, LAB_HOST, LAB_CRL_HOST);
    ASSERT_EQ(run(args, &out), 1);
    ASSERT_CONTAINS(out, "Verdict: OFFLINE");
    ASSERT_CONTAINS(out, "Cause:   cert_expired");
    ASSERT_CONTAINS(out, "Cert Hash(sha1):");
    ASSERT_CONTAINS(out, "Remediation:");
    free(out);
}

static void test_usage_errors(void)
{
    const char *bad[] = {
        "probe",
        "probe ftp://x",
        "probe https://ns.lab.test --tls-min 1.4",
        "probe https://ns.lab.test --timeout abc",
        "probe https://ns.lab.test --revocation sometimes",
        "probe https://ns.lab.test --resolve nocolon",
        "probe https://ns.lab.test --resolve ns.lab.test:not-an-ip",
        "probe https://ns.lab.test --expect-thumbprint xyz",
        "probe https://ns.lab.test --bogus",
        "probe https://ns.lab.test --ca /nonexistent.pem",
        "probe https://ns.lab.test:99999",
        "probe https://ns.lab.test --tls-min 1.3 --tls-max 1.2",
        "probe https://ns.lab.test --timeout",
        "probe 'https://[a b]/p'", /* a bracketed host must be IPv6 (fuzz_url) */
        "probe https://ns.lab.test --resolve 'bad name:127.0.0.1'",
        "nosuchcommand",
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(bad); i++) {
        char *out;
        int rc = run(bad[i], &out);
        const char *e = err_output();
        if (rc != 2 || strstr(e, "fleetscan") == NULL)
            fprintf(stderr, "'%s' -> exit %d, stderr: %s\n", bad[i], rc, e);
        ASSERT_EQ(rc, 2);
        ASSERT_CONTAINS(e, "fleetscan");
        free(out);
    }
}

/* A hashed CA directory as `openssl rehash` makes it, holding the certificate of pem. */
static void make_hash_dir(const char *dir, const char *pem)
{
    char link[700];
    FILE *f = fopen(pem, "r");
    ASSERT(f != NULL);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ASSERT(x != NULL);
    ASSERT(mkdir(dir, 0755) == 0);
    snprintf(link, sizeof(link), "%s/%08lx.0", dir, X509_subject_name_hash(x));
    ASSERT(symlink(pem, link) == 0);
    X509_free(x);
}

/* Trust from files the way a user names them: a hashed directory (read entry by entry when
 * the context is made, never during verification), intermediates the endpoint holds, and what
 * is not a regular file, refused at once: a FIFO as --ca used to block OpenSSL's loader, and
 * the probe, forever. `timeout` turns a hang into a failure. */
static void test_trust_files(void)
{
    char dir[600], olddir[600], old[600], inter[600], fifo[600], url[512], leaf_url[512];
    char args[2048], *out;
    lab_file(&lab, "hashdir", dir, sizeof(dir));
    lab_file(&lab, "olddir", olddir, sizeof(olddir));
    lab_file(&lab, "old-root.pem", old, sizeof(old));
    lab_file(&lab, "inter.pem", inter, sizeof(inter));
    lab_file(&lab, "trust-fifo", fifo, sizeof(fifo));
    make_hash_dir(dir, root);
    make_hash_dir(olddir, old);
    ASSERT(mkfifo(fifo, 0600) == 0);
    lab_url(&lab, LAB_SC_GOOD, NULL, url, sizeof(url));
    lab_url(&lab, LAB_SC_LEAF_ONLY, NULL, leaf_url, sizeof(leaf_url));
    static const char common[] = "--json --resolve " LAB_HOST ":127.0.0.1 --resolve " LAB_CRL_HOST
                                 ":127.0.0.1 --dns-override-only --timeout 4000";
    const struct {
        const char *url, *trust, *path, *extra;
        int exit;
        const char *cause;
    } cases[] = {
        {url, "--ca-dir", dir, "", 0, NULL},
        {url, "--ca-dir", olddir, "", 1, "untrusted_ca"},
        {leaf_url, "--ca", root, "--revocation off --intermediates", 0, NULL},
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(cases); i++) {
        snprintf(args, sizeof(args), "probe %s %s %s %s %s %s", cases[i].url, common,
                 cases[i].trust, cases[i].path, cases[i].extra, i == 2 ? inter : "");
        int rc = run_with("timeout 20 ", args, &out);
        if (rc != cases[i].exit)
            fprintf(stderr, "exit %d for %s\n%s\n%s\n", rc, args, out, err_output());
        ASSERT_EQ(rc, cases[i].exit);
        cJSON *j = cJSON_Parse(out);
        ASSERT(j != NULL);
        cJSON *c = cJSON_GetObjectItem(j, "cause");
        if (cases[i].cause)
            ASSERT_STREQ(c->valuestring, cases[i].cause);
        else
            ASSERT(cJSON_IsNull(c));
        cJSON_Delete(j);
        free(out);
    }
    /* A FIFO among the hashed entries is refused like in a configuration (the CLI's options
     * are one), never waited on. */
    char entry[700];
    snprintf(entry, sizeof(entry), "%s/0badf00d.0", dir);
    ASSERT(mkfifo(entry, 0600) == 0);
    /* {option, file, the trust it needs besides}: each file is refused, never read */
    const char *const refused[][3] = {{"--ca", fifo, ""},
                                      {"--ca", "/dev/zero", ""},
                                      {"--ca", dir, ""},
                                      {"--ca-dir", dir, ""},
                                      {"--intermediates", fifo, "--ca"}};
    for (size_t i = 0; i < FS_ARRAY_SIZE(refused); i++) {
        snprintf(args, sizeof(args), "probe %s %s %s %s %s %s", url, common, refused[i][0],
                 refused[i][1], refused[i][2], refused[i][2][0] ? root : "");
        int rc = run_with("timeout 10 ", args, &out);
        const char *e = err_output();
        fprintf(stderr, "   %s", e);
        ASSERT_EQ(rc, 2);
        ASSERT_CONTAINS(e, refused[i][1] == dir && refused[i][0][4] == '\0'
                               ? "is a directory"
                               : "is not a regular file");
        free(out);
    }
    snprintf(args, sizeof(args), "rm -rf '%s' '%s'", dir, olddir); /* lab_stop() keeps dirs */
    ASSERT(system(args) == 0);
}

int main(void)
{
    char err[256];
    ASSERT(lab_start(&lab, err) == 0);
    lab_file(&lab, "root.pem", root, sizeof(root));
    RUN(test_causes);
    RUN(test_network_causes);
    RUN(test_chain_and_retrievals);
    RUN(test_text_report);
    RUN(test_usage_errors);
    RUN(test_trust_files);
    char path[128];
    snprintf(path, sizeof(path), "/tmp/fleetscan-cli-stderr-%d", (int)getpid());
    unlink(path);
    lab_stop(&lab);
    return 0;
}
