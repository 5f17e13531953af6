/* test_url.c - the DNS override map of probes/url.c: lookups are case-insensitive and the
 * first entry of a name wins, whether the map is scanned (a few names) or hashed (many). */
#include "probes/url.h"
#include "tests/test.h"

#include <stdio.h>

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
        /* A second entry for a name never hides the first. */
        ASSERT_EQ(fs_resolve_add(&m, "HOST-0.example", "192.0.2.1", err), 0);
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
    RUN(test_small_and_large_maps);
    RUN(test_refused_entries);
    return 0;
}
