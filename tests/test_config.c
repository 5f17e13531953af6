/* test_config.c - configuration loading: every validation rule refuses bad input with a message
 * naming the JSON path, a full config round-trips with defaults and resolved paths, reload
 * comparison, and the shipped example configurations parse. */
#include "daemon/config.h"
#include "probes/util.h"
#include "tests/test.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static char tmp[64]; /* scratch directory with pki/, token, hashdir/ */

/* A self-signed P-256 certificate named cn. */
static X509 *make_cert(const char *cn)
{
    static long serial = 1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASSERT(k != NULL && x != NULL);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k);
    ASSERT(X509_sign(x, k, EVP_sha256()) > 0);
    EVP_PKEY_free(k);
    return x;
}

static void tmp_path(char *dst, const char *rel)
{
    snprintf(dst, PATH_MAX, "%s/%s", tmp, rel);
}

static void write_file(const char *rel, const char *data, size_t len);
static void write_str(const char *rel, const char *data)
{
    write_file(rel, data, strlen(data));
}

static void write_file(const char *rel, const char *data, size_t len)
{
    char p[PATH_MAX];
    tmp_path(p, rel);
    FILE *f = fopen(p, "wb");
    ASSERT(f != NULL);
    ASSERT(fwrite(data, 1, len, f) == len);
    ASSERT(fclose(f) == 0);
}

/* Writes n fresh self-signed certificates as one PEM file. */
static void write_pem(const char *rel, int n, const char *cn)
{
    char p[PATH_MAX];
    tmp_path(p, rel);
    FILE *f = fopen(p, "w");
    ASSERT(f != NULL);
    for (int i = 0; i < n; i++) {
        X509 *x = make_cert(cn);
        ASSERT(PEM_write_X509(f, x) == 1);
        X509_free(x);
    }
    ASSERT(fclose(f) == 0);
}

static void setup(void)
{
    char p[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "/tmp/fleetscan-cfg-XXXXXX");
    ASSERT(mkdtemp(tmp) != NULL);
    tmp_path(p, "pki");
    ASSERT(mkdir(p, 0755) == 0);
    tmp_path(p, "hashdir");
    ASSERT(mkdir(p, 0755) == 0);
    tmp_path(p, "emptydir");
    ASSERT(mkdir(p, 0755) == 0);
    tmp_path(p, "logs");
    ASSERT(mkdir(p, 0755) == 0);
    write_pem("pki/root.pem", 2, "Corp Root");
    write_pem("pki/old-root.pem", 1, "Old Root");
    write_pem("pki/inter.pem", 1, "Corp Issuing CA");
    write_str("pki/empty.pem", "not a certificate\n");
    write_file("pki/der.cer", "\x30\x82\x01\x00", 4);
    write_str("pki/bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    write_str("token", "  s3cret-token\n\n");
    write_str("token-empty", " \n");
    write_str("token-space", "two words\n");
    /* Files that are not regular, or too large: refused without being read. */
    tmp_path(p, "pki/fifo.pem");
    ASSERT(mkfifo(p, 0644) == 0);
    tmp_path(p, "fifodir");
    ASSERT(mkdir(p, 0755) == 0);
    tmp_path(p, "fifodir/0badf00d.0");
    ASSERT(mkfifo(p, 0644) == 0);
    tmp_path(p, "pki/big.pem");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT(fd >= 0 && ftruncate(fd, (16 << 20) + 1) == 0 && close(fd) == 0); /* sparse */
    static char big_token[4097];
    memset(big_token, 'a', sizeof(big_token));
    write_file("token-big", big_token, sizeof(big_token));
    /* An OpenSSL hashed directory entry, as `openssl rehash` makes it. */
    X509 *x = make_cert("Dir Root");
    char name[32];
    snprintf(name, sizeof(name), "hashdir/%08lx.0", X509_subject_name_hash(x));
    tmp_path(p, name);
    FILE *f = fopen(p, "w");
    ASSERT(f != NULL && PEM_write_X509(f, x) == 1 && fclose(f) == 0);
    X509_free(x);
    /* OpenSSL's "TRUSTED CERTIFICATE" form, which the store loader accepts too */
    x = make_cert("Aux Root");
    tmp_path(p, "pki/aux.pem");
    f = fopen(p, "w");
    ASSERT(f != NULL && PEM_write_X509_AUX(f, x) == 1 && fclose(f) == 0);
    X509_free(x);
}

static void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];
    ASSERT(strncmp(dir, "/tmp/fleetscan-cfg-", 19) == 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ASSERT(system(cmd) == 0);
}

/* Pieces of a valid configuration, to build each case from. */
#define TS "\"trust_stores\": {\"corp\": {\"ca_file\": \"pki/root.pem\"}}"
#define PR "\"profiles\": {\"default\": {\"url\": \"https://ns.corp.example/Altiris/NS/\"}}"
#define G1 "\"groups\": [{\"name\": \"hq\", \"count\": 10}]"
#define BASE TS ", " PR ", " G1
#define WITH_TS(t) "{\"trust_stores\": {\"corp\": " t "}, " PR ", " G1 "}"
#define WITH_PR(pr) "{" TS ", \"profiles\": {\"default\": " pr "}, " G1 "}"
#define WITH_G(g) "{" TS ", " PR ", \"groups\": [" g "]}"
#define GRP(extra) "{\"name\": \"hq\", \"count\": 1, " extra "}"

static const struct {
    const char *json;
    const char *err;
} bad[] = {
    /* document */
    {"", "unexpected end of input"},
    {"[1, 2]", "must be a JSON object"},
    {"\"x\"", "must be a JSON object"},
    {"{\"interval_s\": 5,\n  \"jitter\": 0.1\n  \"shard\": \"0/1\"}", "line 3, column 3"},
    {"{\n  /* never closed\n", "unterminated /* comment starting at line 2, column 3"},
    {"{} {}", "line 1, column 4"},
    {"{\"vantage\": \"a\0b\"}", "NUL byte"},
    /* unknown and duplicate keys at each level */
    {"{" BASE ", \"intervall\": 5}", "unknown key \"intervall\" (did you mean \"interval_s\"?)"},
    {"{" BASE ", \"zzzzzz\": 5}", "unknown key \"zzzzzz\""},
    {"{" BASE ", \"interval_s\": 5, \"interval_s\": 6}", "duplicate key \"interval_s\""},
    {"{" BASE ", \"limits\": {\"max_inflight\": 5}}", "limits: unknown key \"max_inflight\""},
    {"{" BASE ", \"cache\": {\"crl_max_age\": 5}}", "cache: unknown key \"crl_max_age\""},
    {WITH_TS("{\"ca_file\": \"pki/root.pem\", \"cafile\": 1}"),
     "trust_stores.corp: unknown key \"cafile\""},
    {WITH_PR("{\"url\": \"https://a/\", \"thumbprint\": \"x\"}"),
     "profiles.default: unknown key \"thumbprint\""},
    {"{" BASE ", \"reference\": {\"profil\": \"default\"}}", "reference: unknown key \"profil\""},
    {WITH_G("{\"name\": \"hq\", \"cout\": 1}"), "groups[0]: unknown key \"cout\""},
    {WITH_G(GRP("\"revocation\": {\"mod\": \"off\"}")),
     "groups[0].revocation: unknown key \"mod\""},
    {WITH_G(GRP("\"tls\": {\"min\": \"1.2\"}")), "groups[0].tls: unknown key \"min\""},
    {WITH_G(GRP("\"network\": {\"dns\": {}}")), "groups[0].network: unknown key \"dns\""},
    /* wrong types */
    {"{" BASE ", \"vantage\": 5}", "vantage: expected a string"},
    {"{" BASE ", \"vantage\": \"\"}", "vantage: must not be empty"},
    {"{" BASE ", \"interval_s\": \"60\"}", "interval_s: expected a number"},
    {"{" BASE ", \"limits\": []}", "limits: expected an object"},
    {"{" BASE ", \"limits\": {\"max_in_flight\": \"many\"}}",
     "limits.max_in_flight: expected an integer"},
    {"{" TS ", " PR ", \"groups\": {}}", "groups: expected an array"},
    {WITH_G("[]"), "groups[0]: expected an object"},
    {WITH_G(GRP("\"revocation\": {\"aia_fetch\": \"yes\"}")),
     "groups[0].revocation.aia_fetch: expected true or false"},
    {WITH_G(GRP("\"tls\": {\"min_version\": 1.2}")),
     "groups[0].tls.min_version: expected a string"},
    {WITH_G(GRP("\"network\": {\"resolve\": [\"a\"]}")),
     "groups[0].network.resolve: expected an object"},
    {WITH_G(GRP("\"network\": {\"resolve\": {\"ns\": 10}}")),
     "groups[0].network.resolve[\"ns\"]: expected an IP address or a list of IP addresses"},
    /* numbers and ranges */
    {"{" BASE ", \"interval_s\": 0}", "interval_s: must be a number > 0"},
    {"{" BASE ", \"jitter\": 1.5}", "jitter: must be a number >= 0 and <= 1"},
    {"{" BASE ", \"limits\": {\"max_in_flight\": 0}}",
     "limits.max_in_flight: must be an integer between 1 and 1000000"},
    /* 2^63: found by fuzz_config; it used to load as max_in_flight 0 (a daemon that never
     * probes) through an undefined double-to-int64 conversion. */
    {"{" BASE ", \"limits\": {\"max_in_flight\": 9223372036854775807}}",
     "limits.max_in_flight: must be an integer between 1 and 1000000"},
    {"{" BASE ", \"limits\": {\"max_in_flight\": 2.5}}",
     "limits.max_in_flight: must be an integer between 1 and 1000000"},
    {"{" BASE ", \"limits\": {\"handshakes_per_s\": 0}}", "limits.handshakes_per_s: must be a"},
    {"{" BASE ", \"limits\": {\"probe_timeout_ms\": -1}}",
     "limits.probe_timeout_ms: must be an integer between 1 and 3600000"},
    {"{" BASE ", \"cache\": {\"crl_max_bytes_total\": 0}}", "cache.crl_max_bytes_total: must be"},
    {"{" BASE ", \"expiring_soon_days\": -1}", "expiring_soon_days: must be an integer"},
    {WITH_G(GRP("\"clock_skew_s\": 0.5")), "groups[0].clock_skew_s: must be an integer"},
    {WITH_G(GRP("\"revocation\": {\"budget_ms\": 0}")), "groups[0].revocation.budget_ms: must be"},
    /* listen, shard, token, event log */
    {"{" BASE ", \"listen\": \"8787\"}", "listen: \"8787\": expected host:port"},
    {"{" BASE ", \"listen\": \"localhost:8787\"}",
     "listen: \"localhost:8787\": host must be an IP"},
    {"{" BASE ", \"listen\": \"127.0.0.1:99999\"}", "listen: \"127.0.0.1:99999\": port must be"},
    {"{" BASE ", \"listen\": \"::1:8787\"}", "put IPv6 addresses in brackets"},
    {"{" BASE ", \"listen\": \"[::1]8787\"}", "expected [IPv6]:port"},
    {"{" BASE ", \"listen\": \"[127.0.0.1]:8787\"}", "host must be an IP address"},
    {"{" BASE ", \"shard\": \"2/2\"}", "shard: \"2/2\": expected \"i/n\" with 0 <= i < n"},
    {"{" BASE ", \"shard\": \"1\"}", "shard: \"1\": expected \"i/n\""},
    {"{" BASE ", \"shard\": \"0/0\"}", "shard: \"0/0\""},
    {"{" BASE ", \"shard\": \"-1/2\"}", "shard: \"-1/2\""},
    {"{" BASE ", \"api_token_file\": \"nope\"}",
     "api_token_file: cannot read \"nope\" (/tmp/fleetscan-cfg-"},
    {"{" BASE ", \"api_token_file\": \"token-empty\"}", "api_token_file: \"token-empty\""},
    {"{" BASE ", \"api_token_file\": \"token-space\"}", "contains whitespace"},
    {"{" BASE ", \"event_log\": \"nodir/events.log\"}", "event_log: cannot create \"nodir/"},
    {"{" BASE ", \"event_log\": \"logs\"}", "event_log: \"logs\""},
    /* trust stores */
    {"{" PR ", " G1 "}", "trust_stores: required"},
    {"{\"trust_stores\": {}, " PR ", " G1 "}", "trust_stores: required"},
    {WITH_TS("{\"ca_file\": \"pki/x.pem\"}"),
     "trust_stores.corp.ca_file: cannot read \"pki/x.pem\""},
    {WITH_TS("{\"ca_file\": \"pki/x.pem\"}"), "No such file or directory"},
    {WITH_TS("{\"ca_file\": \"pki\"}"), "is a directory"},
    {WITH_TS("{\"ca_file\": \"pki/empty.pem\"}"), "contains no PEM certificate"},
    {WITH_TS("{\"ca_file\": \"pki/der.cer\"}"), "DER? convert it"},
    {WITH_TS("{\"ca_file\": \"pki/bad.pem\"}"), "a certificate in it does not parse"},
    {WITH_TS("{\"ca_dir\": null}"), "trust_stores.corp: needs ca_file or ca_dir"},
    {WITH_TS("{\"ca_dir\": \"nodir\"}"), "trust_stores.corp.ca_dir: cannot read directory"},
    {WITH_TS("{\"ca_dir\": \"pki/root.pem\"}"), "is not a directory"},
    {WITH_TS("{\"ca_dir\": \"emptydir\"}"), "has no hashed certificate links"},
    {WITH_TS("{\"ca_file\": \"pki/root.pem\", \"intermediates_file\": \"pki/empty.pem\"}"),
     "trust_stores.corp.intermediates_file: \"pki/empty.pem\""},
    {"{\"trust_stores\": {\"a b\": {\"ca_file\": \"pki/root.pem\"}}, " PR ", " G1 "}",
     "trust_stores: invalid name \"a b\""},
    {"{\"trust_stores\": {\"c\": {\"ca_file\": \"pki/root.pem\"}, \"c\": {\"ca_file\": "
     "\"pki/root.pem\"}}, " PR ", " G1 "}",
     "trust_stores: duplicate name \"c\""},
    {"{\"trust_stores\": {\"corp\": \"pki/root.pem\"}, " PR ", " G1 "}",
     "trust_stores.corp: expected an object"},
    /* profiles */
    {"{" TS ", " G1 "}", "profiles: required"},
    {WITH_PR("{}"), "profiles.default.url: required"},
    {WITH_PR("{\"url\": \"ftp://ns.corp.example/\"}"), "unsupported scheme \"ftp\""},
    {WITH_PR("{\"url\": \"ftp://ns.corp.example/\"}"), "profiles.default.url: "},
    {WITH_PR("{\"url\": \"https://ns.corp.example:0/\"}"), "profiles.default.url: "},
    {WITH_PR("{\"url\": \"https://admin:s3cret@ns.corp.example/\"}"),
     "profiles.default.url: \"https://admin:***@ns.corp.example/\": credentials in the URL are not "
     "supported"},
    {WITH_PR("{\"url\": \"ns.corp.example\"}"), "not a URL"},
    {WITH_PR("{\"url\": \"https://a/\", \"expect_thumbprint\": \"abcd\"}"),
     "profiles.default.expect_thumbprint: 4 hex digits: expected 40 (SHA-1) or 64 (SHA-256)"},
    {WITH_PR("{\"url\": \"https://a/\", \"expect_thumbprint\": \"zz\"}"),
     "profiles.default.expect_thumbprint: expected a hex"},
    /* reference */
    {"{" BASE ", \"reference\": {\"profile\": \"nope\"}}", "reference.profile: unknown profile"},
    {"{" BASE ", \"reference\": {\"trust\": \"legcy\"}}",
     "reference.trust: unknown trust store \"legcy\""},
    {"{" TS
     ", \"profiles\": {\"a\": {\"url\": \"https://a/\"}, \"b\": {\"url\": \"https://b/\"}}, " G1
     "}",
     "reference.profile: required"},
    {"{\"trust_stores\": {\"a\": {\"ca_file\": \"pki/root.pem\"}, \"b\": {\"ca_file\": "
     "\"pki/root.pem\"}}, " PR ", " G1 "}",
     "reference.trust: required"},
    /* groups */
    {"{" TS ", " PR "}", "groups: required"},
    {"{" TS ", " PR ", \"groups\": []}", "groups: must contain at least one group"},
    {WITH_G("{\"count\": 1}"), "groups[0].name: required"},
    {WITH_G("{\"name\": \"h q\", \"count\": 1}"), "groups[0].name: \"h q\": use 1-48"},
    {WITH_G("{\"name\": \"hq\"}"), "groups[0].count: required"},
    {WITH_G("{\"name\": \"hq\", \"count\": 0}"), "groups[0].count: must be an integer between 1"},
    {WITH_G("{\"name\": \"hq\", \"count\": -5}"), "groups[0].count: must be an integer"},
    {WITH_G("{\"name\": \"hq\", \"count\": 1000001}"), "groups[0].count: must be an integer"},
    {WITH_G("{\"name\": \"a\", \"count\": 1}, {\"name\": \"hq\", \"count\": 1}, {\"name\": "
            "\"hq\", \"count\": 1}"),
     "groups[2].name: duplicate group name \"hq\" (groups[1])"},
    {WITH_G("{\"name\": \"a\", \"count\": 1000000}, {\"name\": \"b\", \"count\": 1000000}, "
            "{\"name\": \"c\", \"count\": 1000000}, {\"name\": \"d\", \"count\": 1000000}, "
            "{\"name\": \"e\", \"count\": 1000000}, {\"name\": \"f\", \"count\": 1000000}, "
            "{\"name\": \"g\", \"count\": 1000000}, {\"name\": \"h\", \"count\": 1000000}, "
            "{\"name\": \"i\", \"count\": 1000000}, {\"name\": \"j\", \"count\": 1000000}, "
            "{\"name\": \"k\", \"count\": 1}"),
     "groups: 10000001 endpoints in all: more than the limit of 10000000"},
    {WITH_G(GRP("\"trust\": \"legcy\"")), "groups[0].trust: unknown trust store \"legcy\""},
    {WITH_G(GRP("\"profile\": \"http-legacy\"")),
     "groups[0].profile: unknown profile \"http-legacy\""},
    {WITH_G(GRP("\"revocation\": {\"mode\": \"hard\"}")),
     "groups[0].revocation.mode: unknown mode \"hard\" (expected strict, soft_fail or off)"},
    {WITH_G(GRP("\"revocation\": {\"scope\": \"root\"}")),
     "groups[0].revocation.scope: unknown scope \"root\""},
    {WITH_G(GRP("\"tls\": {\"min_version\": \"1.4\"}")),
     "groups[0].tls.min_version: unknown TLS version \"1.4\""},
    {WITH_G(GRP("\"tls\": {\"max_version\": \"TLSv1.2\"}")),
     "groups[0].tls.max_version: unknown TLS version"},
    {WITH_G(GRP("\"tls\": {\"min_version\": \"1.3\", \"max_version\": \"1.2\"}")),
     "groups[0].tls.max_version: \"1.2\" is below min_version \"1.3\""},
    {WITH_G(GRP("\"tls\": {\"ciphers\": \"NO-SUCH-CIPHER\"}")),
     "groups[0].tls.ciphers: no cipher OpenSSL knows"},
    {WITH_G(GRP("\"tls\": {\"ciphersuites\": \"TLS_NOPE\"}")),
     "groups[0].tls.ciphersuites: invalid TLS 1.3 ciphersuites"},
    {WITH_G(GRP("\"network\": {\"resolve\": {\"ns.corp.example\": \"ns2\"}}")),
     "groups[0].network.resolve[\"ns.corp.example\"]: \"ns2\" is not an IP address"},
    {WITH_G(GRP("\"network\": {\"resolve\": {\"a\": \"10.0.0.1\", \"A\": \"10.0.0.2\"}}")),
     "groups[0].network.resolve[\"A\"]: duplicate name"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"https://proxy:3128\"}")),
     "groups[0].network.proxy: \"https://proxy:3128\": expected http://host:port"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"socks5://proxy:1080\"}")),
     "groups[0].network.proxy: \"socks5://proxy:1080\": expected http://host:port"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"http://proxy:3128/x\"}")),
     "groups[0].network.proxy: \"http://proxy:3128/x\": expected http://host:port (no path)"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"http://proxy:99999\"}")),
     "groups[0].network.proxy: \"http://proxy:99999\": invalid port"},
    /* a proxy's password is never quoted (each message is also checked for "s3cret") */
    {WITH_G(GRP("\"network\": {\"proxy\": \"http://user:s3cret@proxy:99999\"}")),
     "groups[0].network.proxy: \"http://user:***@proxy:99999\": invalid port"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"https://user:s3cret@proxy:3128\"}")),
     "groups[0].network.proxy: \"https://user:***@proxy:3128\": expected http://host:port"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"http://user:s3cret@proxy:3128/x\"}")),
     "groups[0].network.proxy: \"http://user:***@proxy:3128/x\": expected http://host:port (no "
     "path)"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"http://user:s3/cret@proxy:3128\"}")),
     "groups[0].network.proxy: \"http://user:***@proxy:3128\": the credentials are empty, too long "
     "or hold a character that must be percent-encoded"},
    {WITH_G(GRP("\"network\": {\"proxy\": \"s3cret@proxy:3128\"}")),
     "groups[0].network.proxy: \"***@proxy:3128\": expected http://host:port"},
    {WITH_G(GRP("\"network\": {\"source_address\": \"eth0\"}")),
     "groups[0].network.source_address: \"eth0\" is not an IP address"},
    /* strings: a NUL would cut them short in C, invalid UTF-8 breaks labels and JSON readers */
    {WITH_G("{\"name\": \"a\\u0000<script>\", \"count\": 1}"),
     "groups[0].name: string contains a NUL character"},
    {WITH_TS("{\"ca_file\": \"pki/root.pem\\u0000.evil\"}"),
     "trust_stores.corp.ca_file: string contains a NUL character"},
    {WITH_TS("{\"ca_file\\u0000x\": \"pki/root.pem\"}"),
     "trust_stores.corp: key \"ca_file\" contains a NUL character"},
    {"{\"vantage\": \"ok\", /* \"\\u0000\" */ \"shard\": \"0/1\\u0000\", " BASE "}",
     "shard: string contains a NUL character"},
    {WITH_G(GRP("\"network\": {\"resolve\": {\"ns.corp.example\": []}}")),
     "groups[0].network.resolve[\"ns.corp.example\"]: an empty list: give at least one address"},
    {WITH_G(GRP("\"network\": {\"resolve\": {\"ns.corp.example\": [\"10.0.0.1\", \"ns2\"]}}")),
     "groups[0].network.resolve[\"ns.corp.example\"][1]: \"ns2\" is not an IP address"},
    {WITH_G(GRP("\"network\": {\"resolve\": {\"ns.corp.example\": [\"10.0.0.1\\u0000\"]}}")),
     "groups[0].network.resolve[\"ns.corp.example\"][0]: string contains a NUL character"},
    {"{" BASE ", \"vantage\": \"hq\xff\"}", "vantage: invalid UTF-8 (byte 0xff at offset 2)"},
    {"{" BASE ", \"vantage\": \"\xc0\xaf\"}", "vantage: invalid UTF-8"},         /* overlong '/' */
    {"{" BASE ", \"vantage\": \"\xed\xa0\x80\"}", "vantage: invalid UTF-8"},     /* a surrogate */
    {"{" BASE ", \"vantage\": \"\xf4\x90\x80\x80\"}", "vantage: invalid UTF-8"}, /* > U+10FFFF */
    {WITH_PR("{\"url\": \"https://ns/\xe2\x82\"}"), "profiles.default.url: invalid UTF-8"},
    {WITH_G(GRP("\"network\": {\"resolve\": {\"n\xfe\": \"10.0.0.1\"}}")),
     "groups[0].network.resolve: key \"n?\": invalid UTF-8"},
    /* the error names the group it is in */
    {WITH_G("{\"name\": \"a\", \"count\": 1}, " GRP("\"tls\": {\"sni\": 1}")),
     "groups[1].tls.sni: expected true or false"},
};

static void test_errors(void)
{
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg_t *c = (cfg_t *)1;
        size_t len = strlen(bad[i].json);
        if (strstr(bad[i].err, "NUL byte") != NULL)
            len = 18; /* the case embeds a NUL */
        memset(err, 'x', sizeof(err));
        alarm(10); /* a case that blocks (a FIFO opened for reading) fails instead of hanging */
        int rc = cfg_parse(&c, bad[i].json, len, tmp, err);
        alarm(0);
        fprintf(stderr, "   [%zu] %s\n", i, err);
        if (rc != -1 || c != NULL || strstr(err, bad[i].err) == NULL) {
            fprintf(stderr, "case %zu: %s\n  want: %s\n  got rc=%d: %s\n", i, bad[i].json,
                    bad[i].err, rc, err);
            abort();
        }
        ASSERT(strlen(err) < 256);
        ASSERT(strstr(err, "s3cret") == NULL && strstr(err, "s3/cret") == NULL);
    }
}

/* A config with only what is required: every default. */
static void test_defaults(void)
{
    char err[256], p[PATH_MAX], host[256] = "";
    cfg_t *c = NULL;
    const char *json = "{" BASE "}";
    ASSERT_EQ(cfg_parse(&c, json, strlen(json), tmp, err), 0);
    gethostname(host, sizeof(host) - 1);
    ASSERT_STREQ(c->base_dir, tmp);
    ASSERT_STREQ(c->vantage, host);
    ASSERT_STREQ(c->listen_host, "127.0.0.1");
    ASSERT_EQ(c->listen_port, 8787);
    ASSERT(c->api_token_file == NULL && c->api_token == NULL && c->event_log == NULL);
    ASSERT(c->interval_s == 60 && c->jitter == 0.2);
    ASSERT_EQ(c->shard_index, 0);
    ASSERT_EQ(c->shard_count, 1);
    ASSERT_EQ(c->expiring_soon_days, 30);
    ASSERT_EQ(c->crl_expiring_soon_hours, 24);
    ASSERT_EQ(c->limits.max_in_flight, 256);
    ASSERT(c->limits.handshakes_per_s == 200);
    ASSERT_EQ(c->limits.probe_timeout_ms, 15000);
    ASSERT_EQ(c->limits.connect_timeout_ms, 5000);
    ASSERT_EQ(c->limits.tls_timeout_ms, 10000);
    ASSERT_EQ(c->limits.request_timeout_ms, 10000);
    ASSERT_EQ(c->cache.crl_max_age_s, 86400);
    ASSERT_EQ(c->cache.crl_max_bytes_total, 64 << 20);
    ASSERT_EQ(c->ntrust, 1);
    tmp_path(p, "pki/root.pem");
    ASSERT_STREQ(c->trust[0].ca_file, p);
    ASSERT_EQ(c->trust[0].ca_count, 2);
    ASSERT(c->trust[0].ca_dir == NULL && c->trust[0].intermediates_file == NULL);
    ASSERT_EQ(c->nprofiles, 1);
    ASSERT_STREQ(c->profiles[0].u.host, "ns.corp.example");
    ASSERT_EQ(c->profiles[0].u.port, 443);
    ASSERT_STREQ(c->profiles[0].u.path, "/Altiris/NS/");
    ASSERT_STREQ(c->profiles[0].expect_thumbprint, "");
    ASSERT_EQ(c->ref_profile_idx, 0);
    ASSERT_EQ(c->ref_trust_idx, 0);
    ASSERT_EQ(c->ngroups, 1);
    ASSERT_EQ(c->total_endpoints, 10);
    const cfg_group_t *g = &c->groups[0];
    ASSERT_STREQ(g->name, "hq");
    ASSERT_EQ(g->count, 10);
    ASSERT_EQ(g->profile_idx, 0);
    ASSERT_EQ(g->trust_idx, 0);
    ASSERT_EQ(g->revocation.mode, REV_STRICT);
    ASSERT_EQ(g->revocation.scope, REV_SCOPE_CHAIN_EXCLUDE_ROOT);
    ASSERT(g->revocation.aia_fetch);
    ASSERT_EQ(g->revocation.url_timeout_ms, 15000);
    ASSERT_EQ(g->revocation.budget_ms, 20000);
    ASSERT_EQ(g->revocation.max_crl_bytes, 16 << 20);
    ASSERT_EQ(g->tls.min_version, 0x0303);
    ASSERT_EQ(g->tls.max_version, 0x0304);
    ASSERT(g->tls.ciphers == NULL && g->tls.ciphersuites == NULL && g->tls.sni);
    ASSERT_EQ(g->clock_skew_s, 0);
    ASSERT_EQ(g->network.resolve.n, 0);
    ASSERT(g->network.proxy == NULL && g->network.source_address == NULL);
    cfg_free(c);
}

/* Every key set away from its default, written to a file with JSONC features; loaded through
 * cfg_load with a relative path so relative paths resolve against the file's directory. */
static const char full_json[] =
    "\xef\xbb\xbf// fleetscan test configuration\n"
    "{\n"
    "  \"vantage\": \"hq-dc1\", /* block comment */ \"listen\": \"[::1]:0\",\n"
    "  \"api_token_file\": \"./token\",\n"
    "  \"interval_s\": 30.5, \"jitter\": 0, \"shard\": \"2/3\",\n"
    "  \"event_log\": \"logs/events.log\",\n"
    "  \"expiring_soon_days\": 14, \"crl_expiring_soon_hours\": 0,\n"
    "  \"limits\": {\"max_in_flight\": 64, \"handshakes_per_s\": 12.5, \"probe_timeout_ms\": "
    "30000,\n"
    "             \"connect_timeout_ms\": 1000, \"tls_timeout_ms\": 2000,\n"
    "             \"request_timeout_ms\": 3000},\n"
    "  \"cache\": {\"crl_max_age_s\": 600, \"crl_max_bytes_total\": 1048576},\n"
    "  \"trust_stores\": {\n"
    "    \"corp\": {\"ca_file\": \"pki/root.pem\", \"intermediates_file\": \"pki//inter.pem\"},\n"
    "    \"legacy\": {\"ca_file\": \"pki/old-root.pem\", \"ca_dir\": \"hashdir/\"},\n"
    "    \"aux\": {\"ca_file\": \"pki/aux.pem\"},\n"
    "  },\n"
    "  \"profiles\": {\n"
    "    \"default\": {\"url\": \"https://ns.corp.example/Altiris//NS/*x*/\", // not a comment\n"
    "                \"expect_thumbprint\": \"\xe2\x80\x8e"
    "AB:cd ef 01 23 45 67 89 AB CD EF 01 23 45 67 89 ab cd ef 01\"},\n"
    "    \"http-legacy\": {\"url\": \"http://ns.corp.example:8080\"}\n"
    "  },\n"
    "  \"reference\": {\"profile\": \"http-legacy\", \"trust\": \"legacy\"},\n"
    "  \"groups\": [\n"
    "    {\"name\": \"hq\", \"count\": 500},\n"
    "    {\"name\": \"branch-1.old_pcs\", \"count\": 1000000, \"profile\": \"default\",\n"
    "     \"trust\": \"corp\",\n"
    "     \"revocation\": {\"mode\": \"strict\", \"scope\": \"leaf\", \"aia_fetch\": false,\n"
    "                    \"url_timeout_ms\": 100, \"budget_ms\": 200, \"max_crl_bytes\": 1000},\n"
    "     \"tls\": {\"min_version\": \"1.0\", \"max_version\": \"1.2\", \"ciphers\": "
    "\"HIGH:!aNULL\",\n"
    "             \"ciphersuites\": \"TLS_AES_128_GCM_SHA256\", \"sni\": false},\n"
    "     \"clock_skew_s\": -3600,\n"
    "     \"network\": {\"resolve\": {\"ns.corp.example\": \"10.0.0.5\", \"crl.corp.example\": "
    "\"[fd00::1]\"},\n"
    "                 \"proxy\": \"http://svc-crl:pa%40ss@proxy.corp.example:3128\", "
    "\"source_address\": "
    "\"::1\"}},\n"
    "  ],\n"
    "}\n";

static void test_full(void)
{
    char err[256], p[PATH_MAX], cwd[PATH_MAX];
    cfg_t *c = NULL;
    write_file("fleetscan.json", full_json, sizeof(full_json) - 1);
    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    ASSERT_EQ(chdir("/"), 0);
    snprintf(p, sizeof(p), "%s/fleetscan.json", tmp + 1); /* relative to "/" */
    ASSERT_EQ(cfg_load(&c, p, err), 0);
    ASSERT_EQ(chdir(cwd), 0);
    ASSERT_STREQ(c->base_dir, tmp);
    ASSERT_STREQ(c->vantage, "hq-dc1");
    ASSERT_STREQ(c->listen_host, "::1");
    ASSERT_EQ(c->listen_port, 0);
    tmp_path(p, "token");
    ASSERT_STREQ(c->api_token_file, p);
    ASSERT_STREQ(c->api_token, "s3cret-token");
    ASSERT(c->interval_s == 30.5 && c->jitter == 0);
    ASSERT_EQ(c->shard_index, 2);
    ASSERT_EQ(c->shard_count, 3);
    tmp_path(p, "logs/events.log");
    ASSERT_STREQ(c->event_log, p);
    ASSERT_EQ(c->expiring_soon_days, 14);
    ASSERT_EQ(c->crl_expiring_soon_hours, 0);
    ASSERT_EQ(c->limits.max_in_flight, 64);
    ASSERT(c->limits.handshakes_per_s == 12.5);
    ASSERT_EQ(c->limits.probe_timeout_ms, 30000);
    ASSERT_EQ(c->limits.connect_timeout_ms, 1000);
    ASSERT_EQ(c->limits.tls_timeout_ms, 2000);
    ASSERT_EQ(c->limits.request_timeout_ms, 3000);
    ASSERT_EQ(c->cache.crl_max_age_s, 600);
    ASSERT_EQ(c->cache.crl_max_bytes_total, 1048576);

    ASSERT_EQ(c->ntrust, 3);
    ASSERT_STREQ(c->trust[0].name, "corp");
    tmp_path(p, "pki/inter.pem");
    ASSERT_STREQ(c->trust[0].intermediates_file, p);
    ASSERT_EQ(c->trust[0].intermediates_count, 1);
    ASSERT_STREQ(c->trust[1].name, "legacy");
    tmp_path(p, "hashdir");
    ASSERT_STREQ(c->trust[1].ca_dir, p);
    ASSERT_EQ(c->trust[1].ca_count, 1);
    ASSERT(memcmp(c->trust[0].digest, c->trust[1].digest, 32) != 0);
    ASSERT_STREQ(c->trust[2].name, "aux");
    ASSERT_EQ(c->trust[2].ca_count, 1);

    ASSERT_EQ(c->nprofiles, 2);
    ASSERT_STREQ(c->profiles[0].url, "https://ns.corp.example/Altiris//NS/*x*/");
    ASSERT_STREQ(c->profiles[0].expect_thumbprint, "abcdef0123456789abcdef0123456789abcdef01");
    ASSERT_STREQ(c->profiles[1].u.scheme, "http");
    ASSERT_EQ(c->profiles[1].u.port, 8080);
    ASSERT_STREQ(c->profiles[1].u.path, "");
    ASSERT_EQ(c->ref_profile_idx, 1);
    ASSERT_EQ(c->ref_trust_idx, 1);

    ASSERT_EQ(c->ngroups, 2);
    ASSERT_EQ(c->total_endpoints, 1000500);
    /* a group without profile/trust takes the reference's */
    ASSERT_EQ(c->groups[0].profile_idx, 1);
    ASSERT_EQ(c->groups[0].trust_idx, 1);
    const cfg_group_t *g = &c->groups[1];
    ASSERT_STREQ(g->name, "branch-1.old_pcs");
    ASSERT_EQ(g->count, 1000000);
    ASSERT_EQ(g->profile_idx, 0);
    ASSERT_EQ(g->trust_idx, 0);
    ASSERT_EQ(g->revocation.mode, REV_STRICT);
    ASSERT_EQ(g->revocation.scope, REV_SCOPE_LEAF);
    ASSERT(!g->revocation.aia_fetch);
    ASSERT_EQ(g->revocation.url_timeout_ms, 100);
    ASSERT_EQ(g->revocation.budget_ms, 200);
    ASSERT_EQ(g->revocation.max_crl_bytes, 1000);
    ASSERT_EQ(g->tls.min_version, 0x0301);
    ASSERT_EQ(g->tls.max_version, 0x0303);
    ASSERT_STREQ(g->tls.ciphers, "HIGH:!aNULL");
    ASSERT_STREQ(g->tls.ciphersuites, "TLS_AES_128_GCM_SHA256");
    ASSERT(!g->tls.sni);
    ASSERT_EQ(g->clock_skew_s, -3600);
    ASSERT_EQ(g->network.resolve.n, 2);
    ASSERT_STREQ(fs_resolve_lookup(&g->network.resolve, "NS.corp.example"), "10.0.0.5");
    ASSERT_STREQ(fs_resolve_lookup(&g->network.resolve, "crl.corp.example"), "fd00::1");
    /* credentials are kept for the fetcher (which hands them to curl only) */
    ASSERT_STREQ(g->network.proxy, "http://svc-crl:pa%40ss@proxy.corp.example:3128");
    ASSERT_STREQ(g->network.source_address, "::1");
    cfg_free(c);
}

static void test_load_errors(void)
{
    char err[256], p[PATH_MAX];
    cfg_t *c = NULL;
    tmp_path(p, "missing.json");
    ASSERT_EQ(cfg_load(&c, p, err), -1);
    ASSERT(c == NULL);
    ASSERT_CONTAINS(err, "cannot read \"/tmp/fleetscan-cfg-");
    ASSERT_CONTAINS(err, "No such file or directory");
    ASSERT_EQ(cfg_load(&c, tmp, err), -1);
    ASSERT_CONTAINS(err, "is a directory");
    /* 4 MiB + 1 of whitespace around a valid document */
    size_t n = (4u << 20) + 1;
    char *big = malloc(n);
    ASSERT(big != NULL);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    write_file("big.json", big, n);
    free(big);
    tmp_path(p, "big.json");
    ASSERT_EQ(cfg_load(&c, p, err), -1);
    ASSERT_CONTAINS(err, "larger than 4 MiB");
    /* a syntax error in a file reports its position */
    write_str("syntax.json", "{\n  // comment\n  \"jitter\": .5\n}\n");
    tmp_path(p, "syntax.json");
    ASSERT_EQ(cfg_load(&c, p, err), -1);
    ASSERT_CONTAINS(err, "JSON syntax error at line 3, column 13 near \".5\"");
}

static cfg_t *parse_ok(const char *json)
{
    char err[256];
    cfg_t *c = NULL;
    if (cfg_parse(&c, json, strlen(json), tmp, err) != 0) {
        fprintf(stderr, "unexpected error: %s\nin: %s\n", err, json);
        abort();
    }
    return c;
}

/* Every key that names a file refuses what is not a regular file, or is too large, at once and
 * without reading it: a FIFO would block the loader (and a SIGHUP reload, on the event loop)
 * forever, /dev/zero never ends. The message names the JSON path and the file. */
static void test_special_files(void)
{
    static const struct {
        const char *key;
        const char *file;
        const char *why;
    } cases[] = {
        {"ca_file", "pki/fifo.pem", "is not a regular file (a FIFO)"},
        {"ca_file", "/dev/zero", "is not a regular file (a character device)"},
        {"ca_file", "pki", "is a directory"},
        {"ca_file", "pki/big.pem", "larger than 16 MiB"},
        {"intermediates_file", "pki/fifo.pem", "is not a regular file (a FIFO)"},
        {"intermediates_file", "/dev/zero", "is not a regular file (a character device)"},
        {"api_token_file", "pki/fifo.pem", "is not a regular file (a FIFO)"},
        {"api_token_file", "/dev/zero", "is not a regular file (a character device)"},
        {"api_token_file", "pki", "is a directory"},
        {"api_token_file", "token-big", "larger than 4 KiB"},
        {"ca_dir", "fifodir", "cannot read 0badf00d.0 in \"fifodir\""},
        {"ca_dir", "fifodir", "is not a regular file (a FIFO)"},
    };
    char json[1024], err[256], want[256];
    for (size_t i = 0; i < FS_ARRAY_SIZE(cases); i++) {
        const char *k = cases[i].key;
        if (strcmp(k, "api_token_file") == 0) {
            snprintf(json, sizeof(json), "{" BASE ", \"api_token_file\": \"%s\"}", cases[i].file);
            snprintf(want, sizeof(want), "api_token_file: cannot read \"%s\"", cases[i].file);
        } else {
            if (strcmp(k, "ca_file") == 0)
                snprintf(json, sizeof(json), WITH_TS("{\"ca_file\": \"%s\"}"), cases[i].file);
            else
                snprintf(json, sizeof(json),
                         WITH_TS("{\"ca_file\": \"pki/root.pem\", \"%s\": \"%s\"}"), k,
                         cases[i].file);
            snprintf(want, sizeof(want), "trust_stores.corp.%s: ", k);
        }
        cfg_t *c = (cfg_t *)1;
        alarm(10);
        int rc = cfg_parse(&c, json, strlen(json), tmp, err);
        alarm(0);
        fprintf(stderr, "   %s %s: %s\n", k, cases[i].file, err);
        ASSERT_EQ(rc, -1);
        ASSERT(c == NULL);
        ASSERT(strncmp(err, want, strlen(want)) == 0);
        ASSERT_CONTAINS(err, cases[i].why);
    }
    /* the configuration file itself */
    char p[PATH_MAX];
    cfg_t *c = NULL;
    tmp_path(p, "pki/fifo.pem");
    alarm(10);
    ASSERT_EQ(cfg_load(&c, p, err), -1);
    ASSERT_CONTAINS(err, "is not a regular file (a FIFO)");
    ASSERT_EQ(cfg_load(&c, "/dev/zero", err), -1);
    ASSERT_CONTAINS(err, "is not a regular file (a character device)");
    alarm(0);
}

/* What looks like a NUL but is not one, and valid UTF-8, load as written. */
static void test_strings_ok(void)
{
    char err[256];
    cfg_t *c = NULL;
    /* "\\u0000" is a backslash and "u0000"; a \u0000 inside a comment is no string */
    const char *json =
        "{" BASE ", /* \"\\u0000\" */ \"vantage\": \"caf\\u00e9-\xc3\xa9-\xf0\x9f\x94\x92\", "
        "\"event_log\": \"logs/x\\\\u0000.log\"}";
    ASSERT_EQ(cfg_parse(&c, json, strlen(json), tmp, err), 0);
    ASSERT_STREQ(c->vantage, "caf\xc3\xa9-\xc3\xa9-\xf0\x9f\x94\x92");
    ASSERT_CONTAINS(c->event_log, "/logs/x\\u0000.log");
    cfg_free(c);
}

/* Settings that work but expose the daemon are reported, with the key that sets them. */
static void test_warnings(void)
{
    static const struct {
        const char *ip;
        int loopback;
    } addrs[] = {{"127.0.0.1", 1}, {"127.1.2.3", 1}, {"::1", 1},      {"::ffff:127.0.0.1", 1},
                 {"0.0.0.0", 0},   {"::", 0},        {"10.0.0.5", 0}, {"::ffff:10.0.0.5", 0},
                 {"128.0.0.1", 0}, {"fe80::1", 0}};
    for (size_t i = 0; i < FS_ARRAY_SIZE(addrs); i++)
        ASSERT_EQ(cfg_is_loopback(addrs[i].ip), addrs[i].loopback);

    char p[PATH_MAX];
    cfg_warning_t w[CFG_MAX_WARNINGS];
    cfg_t *c = parse_ok("{" BASE "}");
    ASSERT_EQ(cfg_warnings(c, w), 0);
    cfg_free(c);
    c = parse_ok("{" BASE ", \"listen\": \"[::]:8787\"}");
    ASSERT_EQ(cfg_warnings(c, w), 1);
    ASSERT_STREQ(w[0].code, "listen_not_loopback");
    ASSERT_CONTAINS(w[0].message, "listen: [::]:8787 is not a loopback address");
    cfg_free(c);

    tmp_path(p, "token");
    ASSERT(chmod(p, 0644) == 0);
    c = parse_ok("{" BASE ", \"listen\": \"0.0.0.0:0\", \"api_token_file\": \"token\"}");
    ASSERT_EQ(c->api_token_mode, 0644);
    ASSERT_EQ(cfg_warnings(c, w), 2);
    ASSERT_STREQ(w[0].code, "listen_not_loopback");
    ASSERT_STREQ(w[1].code, "token_file_exposed");
    ASSERT_CONTAINS(w[1].message, "api_token_file: \"");
    ASSERT_CONTAINS(w[1].message, "has mode 0644: every user can read the API token");
    cfg_free(c);
    /* owner only, or shared with this process's own (service) group: fine */
    static const unsigned quiet[] = {0600, 0400, 0640, 0660};
    for (size_t i = 0; i < FS_ARRAY_SIZE(quiet); i++) {
        ASSERT(chmod(p, quiet[i]) == 0);
        c = parse_ok("{" BASE ", \"api_token_file\": \"token\"}");
        ASSERT_EQ(c->api_token_mode, quiet[i]);
        ASSERT_EQ(cfg_warnings(c, w), 0);
        cfg_free(c);
    }
    ASSERT(chmod(p, 0602) == 0);
    c = parse_ok("{" BASE ", \"api_token_file\": \"token\"}");
    ASSERT_EQ(cfg_warnings(c, w), 1);
    ASSERT_CONTAINS(w[0].message, "has mode 0602: every user can replace the API token");
    cfg_free(c);
    /* another group (needs root to hand the file over) */
    if (chown(p, (uid_t)-1, 54321) == 0) {
        ASSERT(chmod(p, 0640) == 0);
        c = parse_ok("{" BASE ", \"api_token_file\": \"token\"}");
        ASSERT_EQ(cfg_warnings(c, w), 1);
        ASSERT_CONTAINS(w[0].message, "has mode 0640: group 54321 can read the API token");
        cfg_free(c);
        ASSERT(chown(p, (uid_t)-1, getegid()) == 0);
    } else {
        fprintf(stderr, "   not root: group ownership of the token file not checked\n");
    }
    ASSERT(chmod(p, 0644) == 0);
}

static int equal(const char *a, const char *b, size_t ia, size_t ib)
{
    cfg_t *ca = parse_ok(a), *cb = parse_ok(b);
    int r = cfg_group_equal(ca, ia, cb, ib);
    cfg_free(ca);
    cfg_free(cb);
    return r;
}

#define EQ_G(g)                                                                                    \
    "{" TS ", \"profiles\": {\"default\": {\"url\": \"https://ns/\"}}, \"groups\": [" g "]}"

static void test_group_equal(void)
{
    const char *a = EQ_G("{\"name\": \"hq\", \"count\": 5, \"network\": {\"resolve\": "
                         "{\"a\": \"10.0.0.1\", \"b\": \"10.0.0.2\"}}}");
    ASSERT(equal(a, a, 0, 0));
    /* order of overrides and of groups does not matter; group names do */
    ASSERT(equal(a,
                 EQ_G("{\"name\": \"x\", \"count\": 1}, {\"name\": \"hq\", \"count\": 5, "
                      "\"network\": {\"resolve\": {\"b\": \"10.0.0.2\", \"a\": \"10.0.0.1\"}}}"),
                 0, 1));
    ASSERT(!equal(a, a, 0, 1) && !equal(a, EQ_G("{\"name\": \"hq2\", \"count\": 5}"), 0, 0));
    ASSERT(!equal(a,
                  EQ_G("{\"name\": \"hq\", \"count\": 6, \"network\": {\"resolve\": "
                       "{\"a\": \"10.0.0.1\", \"b\": \"10.0.0.2\"}}}"),
                  0, 0));
    ASSERT(!equal(a,
                  EQ_G("{\"name\": \"hq\", \"count\": 5, \"network\": {\"resolve\": "
                       "{\"a\": \"10.0.0.1\", \"b\": \"10.0.0.3\"}}}"),
                  0, 0));
    const char *b = EQ_G("{\"name\": \"hq\", \"count\": 5}");
    ASSERT(equal(b, b, 0, 0));
    ASSERT(!equal(b, EQ_G("{\"name\": \"hq\", \"count\": 5, \"clock_skew_s\": 1}"), 0, 0));
    ASSERT(!equal(b, EQ_G("{\"name\": \"hq\", \"count\": 5, \"tls\": {\"sni\": false}}"), 0, 0));
    ASSERT(!equal(b, EQ_G("{\"name\": \"hq\", \"count\": 5, \"revocation\": {\"mode\": \"off\"}}"),
                  0, 0));
    ASSERT(!equal(b,
                  EQ_G("{\"name\": \"hq\", \"count\": 5, \"network\": {\"proxy\": "
                       "\"http://p:3128\"}}"),
                  0, 0));
    /* explicit defaults equal implicit ones; schedule settings do not matter */
    ASSERT(equal(b,
                 "{\"interval_s\": 5, \"jitter\": 0.9, \"limits\": {\"max_in_flight\": 1}, "
                 "\"vantage\": \"other\", " TS ", \"profiles\": {\"default\": {\"url\": "
                 "\"HTTPS://NS:443\"}}, \"groups\": [{\"name\": \"hq\", \"count\": 5, "
                 "\"revocation\": {\"mode\": \"strict\"}, \"tls\": {\"min_version\": \"1.2\"}}]}",
                 0, 0));
    /* probe-outcome globals do */
    ASSERT(!equal(b,
                  "{\"limits\": {\"connect_timeout_ms\": 1}, " TS ", \"profiles\": {\"default\": "
                  "{\"url\": \"https://ns/\"}}, \"groups\": [{\"name\": \"hq\", \"count\": 5}]}",
                  0, 0));
    ASSERT(!equal(b,
                  "{\"expiring_soon_days\": 1, " TS ", \"profiles\": {\"default\": {\"url\": "
                  "\"https://ns/\"}}, \"groups\": [{\"name\": \"hq\", \"count\": 5}]}",
                  0, 0));
    /* the profile's content counts, not its name */
    ASSERT(equal(b,
                 "{" TS ", \"profiles\": {\"p\": {\"url\": \"https://ns/\"}}, \"groups\": "
                 "[{\"name\": \"hq\", \"count\": 5, \"profile\": \"p\"}]}",
                 0, 0));
    ASSERT(!equal(b,
                  "{" TS ", \"profiles\": {\"default\": {\"url\": \"https://ns/x\"}}, "
                  "\"groups\": [{\"name\": \"hq\", \"count\": 5}]}",
                  0, 0));
    ASSERT(!equal(b,
                  "{" TS ", \"profiles\": {\"default\": {\"url\": \"https://ns/\", "
                  "\"expect_thumbprint\": \""
                  "0123456789012345678901234567890123456789\"}}, "
                  "\"groups\": [{\"name\": \"hq\", \"count\": 5}]}",
                  0, 0));
    /* the trust store's content counts, not its name or path */
    ASSERT(equal(b,
                 "{\"trust_stores\": {\"t\": {\"ca_file\": \"./pki/../pki/root.pem\"}}, "
                 "\"profiles\": {\"default\": {\"url\": \"https://ns/\"}}, \"groups\": "
                 "[{\"name\": \"hq\", \"count\": 5}]}",
                 0, 0));
    cfg_t *before = parse_ok(b);
    write_pem("pki/root.pem", 2, "Corp Root"); /* renewed root, same path */
    cfg_t *after = parse_ok(b);
    ASSERT(!cfg_group_equal(before, 0, after, 0));
    ASSERT(cfg_group_equal(after, 0, after, 0));
    cfg_free(before);
    cfg_free(after);
    ASSERT(!cfg_group_equal(NULL, 0, NULL, 0));
}

/* A growable JSON text for the large cases. */
typedef struct text_s {
    char *p;
    size_t len, cap;
} text_t;

static void add(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text_t *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        ASSERT(n >= 0);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap ? 2 * t->cap : 4096;
        t->p = realloc(t->p, t->cap);
        ASSERT(t->p != NULL);
    }
}

/* One group whose DNS view has n names, listed forwards or backwards, with an extra entry. */
static char *resolve_doc(int n, int backwards, const char *extra)
{
    text_t t = {0};
    add(&t, "{" TS ", \"profiles\": {\"default\": {\"url\": \"https://ns/\"}}, \"groups\": "
            "[{\"name\": \"hq\", \"count\": 1, \"network\": {\"resolve\": {");
    for (int k = 0; k < n; k++) {
        int i = backwards ? n - 1 - k : k;
        add(&t, "%s\"h%05d.example\": \"10.0.%d.%d\"", k ? ", " : "", i, i / 256 % 256, i % 256);
    }
    add(&t, "%s}}}]}", extra);
    return t.p;
}

/* Tens of thousands of groups or DNS overrides: the same validation and comparison as a small
 * file (duplicates found in any case, maps compared in any order), in linear time. */
static void test_large_maps(void)
{
    char err[256];
    cfg_t *c = NULL;
    text_t t = {0};
    add(&t, "{" TS ", \"profiles\": {\"default\": {\"url\": \"https://ns/\"}}, \"groups\": [");
    for (int i = 0; i < 20000; i++)
        add(&t, "%s{\"name\": \"g-%05d\", \"count\": 1}", i ? ", " : "", i);
    add(&t, ", {\"name\": \"G-00123\", \"count\": 1}]}");
    ASSERT_EQ(cfg_parse(&c, t.p, t.len, tmp, err), -1);
    ASSERT_CONTAINS(err, "groups[20000].name: duplicate group name \"G-00123\" (groups[123])");
    free(t.p);

    char *doc = resolve_doc(50000, 0, ", \"H00007.EXAMPLE\": \"10.9.9.9\"");
    ASSERT_EQ(cfg_parse(&c, doc, strlen(doc), tmp, err), -1);
    ASSERT_CONTAINS(err, "groups[0].network.resolve[\"H00007.EXAMPLE\"]: duplicate name");
    free(doc);

    char *fwd = resolve_doc(50000, 0, ""), *back = resolve_doc(50000, 1, "");
    char *other = resolve_doc(50000, 1, "");
    char *at = strstr(other, "\"h00042.example\": \"10.0.0.42\"");
    ASSERT(at != NULL);
    memcpy(strstr(at, "10.0.0.42"), "10.0.0.43", 9);
    cfg_t *a = parse_ok(fwd), *b = parse_ok(back), *o = parse_ok(other);
    ASSERT_EQ(a->groups[0].network.resolve.n, 50000);
    ASSERT(cfg_group_equal(a, 0, b, 0));
    ASSERT(!cfg_group_equal(a, 0, o, 0));
    cfg_free(a);
    cfg_free(b);
    cfg_free(o);
    free(fwd);
    free(back);
    free(other);
}

/* The configuration takes its names from the probes' tables (probes/revoke.h, probes/tlsc.h). */
static void test_names(void)
{
    static const char *const modes[] = {"strict", "soft_fail", "off"};
    for (size_t i = 0; i < FS_ARRAY_SIZE(modes); i++) {
        char json[512];
        snprintf(json, sizeof(json), WITH_G(GRP("\"revocation\": {\"mode\": \"%s\"}")), modes[i]);
        cfg_t *c = parse_ok(json);
        ASSERT_STREQ(rev_mode_names[c->groups[0].revocation.mode], modes[i]);
        cfg_free(c);
    }
    cfg_t *c = parse_ok(WITH_G(GRP("\"revocation\": {\"scope\": \"chain\"}, \"tls\": "
                                   "{\"min_version\": \"1.1\"}")));
    ASSERT_EQ(c->groups[0].revocation.scope, REV_SCOPE_CHAIN);
    ASSERT_STREQ(rev_scope_names[REV_SCOPE_CHAIN_EXCLUDE_ROOT], "chain_exclude_root");
    ASSERT_EQ(c->groups[0].tls.min_version, TLS1_1_VERSION);
    cfg_free(c);
}

/* "shard" and `fleetscan run --shard` share one grammar: digits, 0 <= i < n <= 1000000. */
static void test_shard(void)
{
    static const char *const refused[] = {"",     "1",         "1/",    "/2",   "2/2",
                                          "0/0",  "-1/2",      "+1/2",  " 1/2", "1/2 ",
                                          "1/2x", "0/1000001", "0x1/2", "1/-2"};
    uint32_t i = 7, n = 7;
    for (size_t k = 0; k < FS_ARRAY_SIZE(refused); k++)
        ASSERT_EQ(cfg_parse_shard(refused[k], &i, &n), -1);
    ASSERT(i == 7 && n == 7);
    ASSERT_EQ(cfg_parse_shard("0/1", &i, &n), 0);
    ASSERT(i == 0 && n == 1);
    ASSERT_EQ(cfg_parse_shard("999999/1000000", &i, &n), 0);
    ASSERT(i == 999999 && n == 1000000);
}

/* The shipped examples parse, with the files they name created in a scratch directory. */
static void test_examples(void)
{
    const char *src = getenv("FLEETSCAN_SRC");
    char p[PATH_MAX], err[256];
    static const char *const files[] = {"config/fleetscan.example.jsonc", "config/minimal.json"};
    ASSERT(src != NULL);
    write_pem("pki/corp-root.pem", 1, "Corp Root");
    write_pem("pki/corp-intermediates.pem", 1, "Corp Issuing CA");
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", src, files[i]);
        FILE *f = fopen(p, "rb");
        ASSERT(f != NULL);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        ASSERT(n > 0 && n < sizeof(buf));
        cfg_t *c = NULL;
        if (cfg_parse(&c, buf, n, tmp, err) != 0) {
            fprintf(stderr, "%s: %s\n", files[i], err);
            abort();
        }
        ASSERT(c->ngroups >= 1);
        if (i == 0) {
            /* the example spells out every default: it must equal the defaults */
            const cfg_group_t *g = &c->groups[0];
            ASSERT_STREQ(c->listen_host, "127.0.0.1");
            ASSERT_EQ(c->listen_port, 8787);
            ASSERT(c->interval_s == 60 && c->jitter == 0.2);
            ASSERT_EQ(c->limits.max_in_flight, 256);
            ASSERT_EQ(c->limits.probe_timeout_ms, 15000);
            ASSERT_EQ(c->cache.crl_max_bytes_total, 64 << 20);
            ASSERT_EQ(g->revocation.mode, REV_STRICT);
            ASSERT_EQ(g->revocation.scope, REV_SCOPE_CHAIN_EXCLUDE_ROOT);
            ASSERT_EQ(g->revocation.max_crl_bytes, 16 << 20);
            ASSERT_EQ(g->tls.min_version, 0x0303);
        }
        cfg_free(c);
    }
}

int main(void)
{
    setup();
    RUN(test_errors);
    RUN(test_defaults);
    RUN(test_full);
    RUN(test_large_maps);
    RUN(test_load_errors);
    RUN(test_special_files);
    RUN(test_strings_ok);
    RUN(test_warnings);
    RUN(test_group_equal);
    RUN(test_names);
    RUN(test_shard);
    RUN(test_examples);
    rm_rf(tmp);
    fprintf(stderr, "ok\n");
    return 0;
}
