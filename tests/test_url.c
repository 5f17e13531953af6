/* test_url.c - probes/url.c: URL redaction and proxy URLs with credentials (what messages may
 * show of a URL, what the fetcher hands to curl), and the DNS override map (lookups are
 * case-insensitive, a name added again gets one more address, scanned or hashed). */
#include "probes/url.h"

#include "test.h"

#include <stdio.h>

static void expect_redact(const char *url, const char *want)
{
    char out[256];
    ASSERT_STREQ(fs_url_redact(url, out, sizeof(out)), want);
}

static void test_redact(void)
{
    expect_redact("http://user:s3cret@proxy:3128", "http://user:***@proxy:3128");
    expect_redact("http://user:s3:cr@et@proxy:3128/x", "http://user:***@proxy:3128/x");
    expect_redact("http://token@proxy:3128", "http://***@proxy:3128");
    /* A '/' in the password does not expose it; a path with '@' pays for that. */
    expect_redact("http://user:pa/ss@proxy:3128", "http://user:***@proxy:3128");
    expect_redact("http://crl.example/a@b.crl", "http://***@b.crl");
    expect_redact("http://crl.example/x.crl?a@b", "http://crl.example/x.crl?a@b");
    expect_redact("http://crl.example/x.crl", "http://crl.example/x.crl");
    expect_redact("user:pw@host", "user:***@host");
    expect_redact("", "");
    char small[12];
    ASSERT_STREQ(fs_url_redact("http://u:secret@h", small, sizeof(small)), "http://u:**");
}

static void test_proxy(void)
{
    fs_proxy_t px;
    char err[256];
    ASSERT_EQ(fs_proxy_parse(&px, "http://user:s3cret@proxy.corp:3128", err), 0);
    ASSERT_STREQ(px.u.host, "proxy.corp");
    ASSERT_EQ(px.u.port, 3128);
    ASSERT_STREQ(px.userinfo, "user:s3cret");
    ASSERT_STREQ(px.redacted, "http://user:***@proxy.corp:3128");
    ASSERT_EQ(fs_proxy_parse(&px, "http://p%40ss@[::1]", err), 0);
    ASSERT_STREQ(px.u.host, "::1");
    ASSERT_EQ(px.u.port, 80);
    ASSERT_STREQ(px.userinfo, "p%40ss");
    ASSERT_STREQ(px.redacted, "http://***@[::1]");
    ASSERT_EQ(fs_proxy_parse(&px, "http://proxy:8080/", err), 0);
    ASSERT_STREQ(px.userinfo, "");
    ASSERT_STREQ(px.redacted, "http://proxy:8080/");

    static const char *const bad[] = {
        "http://user:s3cret@proxy:0",
        "http://user:s3cret@proxy/x",
        "https://user:s3cret@proxy",
        "http://user:s3 cret@proxy",
        "http://user:s3/cret@proxy",
        "http://user:s3cret%4@proxy",
        "http://@proxy",
        "s3cret@proxy:3128",
        "http://user:s3cret@",
        "http://user:s3cret@pro xy:1",
        "ftp://user:s3cret@proxy:21",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ASSERT_EQ(fs_proxy_parse(&px, bad[i], err), -1);
        fprintf(stderr, "   %s -> %s\n", bad[i], err);
        ASSERT(err[0] != '\0');
        ASSERT(strstr(err, "s3") == NULL);
    }
}

static void test_url_refuses_credentials(void)
{
    fs_url_t u;
    char err[256];
    ASSERT_EQ(fs_url_parse(&u, "https://admin:s3cret@ns.corp.example/x", err), -1);
    ASSERT_CONTAINS(err, "\"https://admin:***@ns.corp.example/x\": credentials");
    ASSERT_EQ(fs_url_parse(&u, "https://admin:s3cret@ns.corp.example:99999/", err), -1);
    ASSERT(strstr(err, "s3cret") == NULL);
    ASSERT_EQ(fs_url_parse(&u, "https://admin:s3/cret@ns.corp.example/", err), -1);
    ASSERT(strstr(err, "s3") == NULL);
    ASSERT_EQ(fs_url_parse(&u, "https://ns.corp.example/a@b", err), 0); /* '@' in a path */
    ASSERT_STREQ(u.path, "/a@b");
}

static void test_small_and_large_maps(void)
{
    static const size_t sizes[] = {1, 15, 16, 17, 1000, 100000};
    char name[64], addr[64], err[256];
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        fs_resolve_t m = {0};
        size_t n = sizes[s];
        for (size_t i = 0; i < n; i++) {
            snprintf(name, sizeof(name), "Host-%zu.Example", i);
            snprintf(addr, sizeof(addr), "10.%zu.%zu.%zu", (i >> 16) & 255, (i >> 8) & 255,
                     i & 255);
            ASSERT_EQ(fs_resolve_add(&m, name, addr, err), 0);
        }
        ASSERT_EQ(m.n, n);
        /* A second entry for a name is its second address: the first stays the first. */
        ASSERT_EQ(fs_resolve_add(&m, "HOST-0.example", "192.0.2.1", err), 0);
        const char *all[FS_RESOLVE_MAX_ADDRS];
        ASSERT_EQ(fs_resolve_lookup_all(&m, "host-0.EXAMPLE", all), 2);
        ASSERT_STREQ(all[0], "10.0.0.0");
        ASSERT_STREQ(all[1], "192.0.2.1");
        if (n > 1) {
            ASSERT_EQ(fs_resolve_lookup_all(&m, "host-1.example", all), 1);
            ASSERT_STREQ(all[0], "10.0.0.1");
        }
        ASSERT_EQ(fs_resolve_lookup_all(&m, "host-x.example", all), 0);
        for (size_t i = 0; i<n; i += n> 1000 ? 997 : 1) {
            snprintf(name, sizeof(name), "host-%zu.EXAMPLE", i);
            snprintf(addr, sizeof(addr), "10.%zu.%zu.%zu", (i >> 16) & 255, (i >> 8) & 255,
                     i & 255);
            ASSERT_STREQ(fs_resolve_lookup(&m, name), addr);
        }
        ASSERT_STREQ(fs_resolve_lookup(&m, "host-0.example"), "10.0.0.0");
        ASSERT(fs_resolve_lookup(&m, "host-x.example") == NULL);
        snprintf(name, sizeof(name), "host-%zu.example", n);
        ASSERT(fs_resolve_lookup(&m, name) == NULL);
        /* Order is kept: the map is walked (and hashed into a view key) as written. */
        ASSERT_STREQ(m.e[0].name, "Host-0.Example");
        ASSERT_STREQ(m.e[n].addr, "192.0.2.1");
        fs_resolve_free(&m);
        ASSERT_EQ(m.n, 0);
        ASSERT(fs_resolve_lookup(&m, "host-0.example") == NULL);
    }
    ASSERT(fs_resolve_lookup(NULL, "x") == NULL);
}

/* A farm behind one name: addresses in the order added, interleaved with other names, across
 * the switch from scanning to hashing; duplicates and a 17th address refused. */
static void test_several_addresses(void)
{
    fs_resolve_t m = {0}, same = {0}, other = {0};
    char err[256], addr[64], name[64];
    const char *all[FS_RESOLVE_MAX_ADDRS];
    for (int i = 0; i < FS_RESOLVE_MAX_ADDRS; i++) {
        snprintf(addr, sizeof(addr), "10.0.0.%d", i + 1);
        ASSERT_EQ(fs_resolve_add(&m, i % 2 ? "FARM.example" : "farm.example", addr, err), 0);
        snprintf(name, sizeof(name), "other-%d.example", i);
        ASSERT_EQ(fs_resolve_add(&m, name, "192.0.2.1", err), 0);
    }
    ASSERT(m.slot != NULL); /* hashed by now */
    ASSERT_EQ(fs_resolve_lookup_all(&m, "farm.example", all), FS_RESOLVE_MAX_ADDRS);
    for (int i = 0; i < FS_RESOLVE_MAX_ADDRS; i++) {
        snprintf(addr, sizeof(addr), "10.0.0.%d", i + 1);
        ASSERT_STREQ(all[i], addr);
    }
    ASSERT_STREQ(fs_resolve_lookup(&m, "farm.example"), "10.0.0.1");
    ASSERT(fs_resolve_add(&m, "farm.example", "10.0.0.99", err) < 0);
    ASSERT_CONTAINS(err, "more than 16 addresses");
    ASSERT(fs_resolve_add(&m, "other-3.example", "192.0.2.1", err) < 0);
    ASSERT_CONTAINS(err, "listed twice");
    ASSERT_EQ(fs_resolve_add(&same, "v6.example", "2001:db8::1", err), 0);
    ASSERT(fs_resolve_add(&same, "v6.example", "2001:db8:0::1", err) < 0); /* same address */
    ASSERT_EQ(fs_resolve_add(&same, "v6.example", "127.0.0.1", err), 0);
    ASSERT_EQ(fs_resolve_lookup_all(&same, "v6.example", all), 2);
    /* Equality: same names with the same lists in the same order, in any name order. */
    ASSERT_EQ(fs_resolve_add(&other, "v6.example", "127.0.0.1", err), 0);
    ASSERT_EQ(fs_resolve_add(&other, "v6.example", "2001:db8::1", err), 0);
    ASSERT(!fs_resolve_equal(&same, &other)); /* another order: round robin starts elsewhere */
    fs_resolve_free(&other);
    ASSERT_EQ(fs_resolve_add(&other, "a.example", "192.0.2.7", err), 0);
    ASSERT_EQ(fs_resolve_add(&other, "V6.example", "2001:db8::1", err), 0);
    ASSERT_EQ(fs_resolve_add(&other, "v6.example", "127.0.0.1", err), 0);
    ASSERT_EQ(fs_resolve_add(&same, "a.example", "192.0.2.7", err), 0);
    ASSERT(fs_resolve_equal(&same, &other));
    ASSERT(fs_resolve_equal(&other, &same));
    ASSERT(!fs_resolve_equal(&same, &m));
    fs_resolve_free(&m);
    fs_resolve_free(&same);
    fs_resolve_free(&other);
}

static void test_refused_entries(void)
{
    fs_resolve_t m = {0};
    char err[256];
    ASSERT(fs_resolve_add(&m, "", "10.0.0.1", err) < 0);
    ASSERT(fs_resolve_add(&m, "a b", "10.0.0.1", err) < 0);
    ASSERT(fs_resolve_add(&m, "ok.example", "not-an-ip", err) < 0);
    ASSERT_CONTAINS(err, "not an IP address");
    ASSERT_EQ(m.n, 0);
    ASSERT_EQ(fs_resolve_add_spec(&m, "v6.example:[::1]", err), 0);
    ASSERT_STREQ(fs_resolve_lookup(&m, "V6.example"), "::1");
    fs_resolve_free(&m);
}

int main(void)
{
    RUN(test_redact);
    RUN(test_proxy);
    RUN(test_url_refuses_credentials);
    RUN(test_small_and_large_maps);
    RUN(test_several_addresses);
    RUN(test_refused_entries);
    return 0;
}
