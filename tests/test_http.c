/* test_http.c - the response status parser: final and interim statuses, line ends, malformed
 * status lines with the line quoted, and that feeding the bytes one at a time changes nothing. */
#include "probes/http.h"
#include "probes/util.h"

#include "test.h"

/* Parses s[0..n) whole, then every prefix: a prefix is MORE or already the final answer. */
static int parse(const char *s, size_t n, http_status_t *out)
{
    int rc = http_status_parse(s, n, out);
    for (size_t k = 0; k < n; k++) {
        http_status_t pre;
        int prc = http_status_parse(s, k, &pre);
        ASSERT(prc == HTTP_STATUS_MORE || prc == rc);
        if (prc == HTTP_STATUS_DONE)
            ASSERT_EQ(pre.code, out->code);
    }
    return rc;
}

#define PARSE(lit, out) parse(lit, sizeof(lit) - 1, out)

static void expect_code(const char *s, size_t n, int code, unsigned interim)
{
    http_status_t hs;
    int rc = parse(s, n, &hs);
    if (rc != HTTP_STATUS_DONE)
        fprintf(stderr, "not DONE (%d, %s) for: %s\n", rc, hs.error, s);
    ASSERT_EQ(rc, HTTP_STATUS_DONE);
    ASSERT_EQ(hs.code, code);
    ASSERT_EQ(hs.interim, interim);
    ASSERT_STREQ(hs.error, "");
}
#define EXPECT_CODE(lit, code, interim) expect_code(lit, sizeof(lit) - 1, code, interim)

static void expect_bad(const char *s, size_t n, const char *why, const char *quoted)
{
    http_status_t hs;
    int rc = parse(s, n, &hs);
    ASSERT_EQ(rc, HTTP_STATUS_BAD);
    ASSERT_CONTAINS(hs.error, why);
    ASSERT_CONTAINS(hs.error, quoted);
    for (const char *c = hs.error; *c; c++)
        ASSERT(*c >= 0x20 && *c <= 0x7e);
}
#define EXPECT_BAD(lit, why, quoted) expect_bad(lit, sizeof(lit) - 1, why, quoted)

static void test_final(void)
{
    EXPECT_CODE("HTTP/1.1 200 OK\r\n", 200, 0);
    EXPECT_CODE("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nbody", 200, 0);
    EXPECT_CODE("HTTP/1.0 404 Not Found\r\n", 404, 0);
    EXPECT_CODE("HTTP/1.1 503\r\n", 503, 0); /* the reason phrase may be absent */
    EXPECT_CODE("HTTP/1.1 204 \r\n", 204, 0);
    EXPECT_CODE("HTTP/1.1 200 \xe4\xf6 obs-text\r\n", 200, 0);
    EXPECT_CODE("HTTP/1.1 101 Switching Protocols\r\n\r\n", 101, 0);
    /* Bare LF line ends (RFC 9112 2.2: a recipient MAY accept them). */
    EXPECT_CODE("HTTP/1.1 200 OK\n\n", 200, 0);
    EXPECT_CODE("HTTP/1.1 500 Oops\n", 500, 0);
}

static void test_interim(void)
{
    EXPECT_CODE("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Internal Server Error\r\n", 500, 1);
    EXPECT_CODE("HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\n", 200, 1);
    EXPECT_CODE("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 204 No Content\r\n",
                204, 2);
    http_status_t hs;
    /* Interim only: still waiting for the final answer. */
    ASSERT_EQ(PARSE("HTTP/1.1 100 Continue\r\n\r\n", &hs), HTTP_STATUS_MORE);
    ASSERT_EQ(hs.interim, 1);
    ASSERT_EQ(PARSE("HTTP/1.1 100 Continue\r\nX: y\r\n", &hs), HTTP_STATUS_MORE);
    EXPECT_BAD("HTTP/1.1 100 Continue\r\nX: \0y\r\n\r\nHTTP/1.1 200 OK\r\n", "NUL byte",
               "X: \\x00y");
    EXPECT_BAD("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 5000 X\r\n", "not 3 digits", "5000");
}

static void test_more(void)
{
    http_status_t hs;
    ASSERT_EQ(http_status_parse("", 0, &hs), HTTP_STATUS_MORE);
    ASSERT_EQ(PARSE("HTTP/1.1 200 OK", &hs), HTTP_STATUS_MORE); /* no line end yet */
    ASSERT_EQ(PARSE("HTTP/1.1 200\r", &hs), HTTP_STATUS_MORE);
    ASSERT_EQ(PARSE("HTTP/1.1 20", &hs), HTTP_STATUS_MORE);
    ASSERT_EQ(PARSE("HTTP/1.", &hs), HTTP_STATUS_MORE);
}

static void test_malformed(void)
{
    EXPECT_BAD("HTTP/1.1 5000 X\r\n", "status code not 3 digits", "\"HTTP/1.1 5000 X\"");
    EXPECT_BAD("HTTP/1.1 20000000000000000000 OK\r\n", "not 3 digits", "20000000000000000000");
    EXPECT_BAD("HTTP/1.1 20 OK\r\n", "not 3 digits", "HTTP/1.1 20 OK");
    EXPECT_BAD("HTTP/1.1 2x0 OK\r\n", "not 3 digits", "2x0");
    EXPECT_BAD("HTTP/1.1 OK\r\n", "missing status code", "HTTP/1.1 OK");
    EXPECT_BAD("HTTP/1.1\r\n", "missing status code", "\"HTTP/1.1\"");
    EXPECT_BAD("HTTP/1.1 \r\n", "missing status code", "\"HTTP/1.1 \"");
    EXPECT_BAD("HTTP/1.1 099 Low\r\n", "outside 100..599", "099");
    EXPECT_BAD("HTTP/1.1 600 High\r\n", "outside 100..599", "600");
    EXPECT_BAD("HTTP/1.1 200OK\r\n", "no space after the status code", "200OK");
    EXPECT_BAD("HTTP/1.1 2\0000 OK\r\n", "NUL byte in the status line", "2\\x000 OK");
    EXPECT_BAD("HTTP/1.1 200 O\0K\r\n", "NUL byte", "O\\x00K");
    EXPECT_BAD("\0", "NUL byte", "\\x00");
    EXPECT_BAD("HTTP/2 200\r\n", "not an HTTP/1.x status line", "HTTP/2 200");
    EXPECT_BAD("ICY 200 OK\r\n", "not an HTTP/1.x status line", "ICY 200 OK");
    EXPECT_BAD("\r\nHTTP/1.1 200 OK\r\n", "not an HTTP/1.x status line", "\"\"");
    EXPECT_BAD("HTTP/1.1  200 OK\r\n", "missing status code", "HTTP/1.1  200");
    /* Decided before the line ends: a server that stalls after garbage is still an HTTP error. */
    http_status_t hs;
    ASSERT_EQ(PARSE("<html>", &hs), HTTP_STATUS_BAD);
    ASSERT_EQ(PARSE("HTTP/1.1 5000", &hs), HTTP_STATUS_BAD);
    ASSERT_EQ(PARSE("HTTP/1.1 200 \0", &hs), HTTP_STATUS_BAD);
}

static void test_escape(void)
{
    char out[32];
    ASSERT_STREQ(http_escape("a\"b\\c\r\n\t\x01\xff", 10, out, sizeof(out)),
                 "a\\\"b\\\\c\\r\\n\\t\\x01\\xff");
    ASSERT_STREQ(http_escape("abcdefghij", 10, out, 8), "abcd...");
    ASSERT_STREQ(http_escape("abcdefg", 7, out, 8), "abcdefg");
    ASSERT_STREQ(http_escape("", 0, out, 1), "");
    /* A long line is cut, and the message stays within its buffer, terminated. */
    char line[400];
    memset(line, 'A', sizeof(line));
    memcpy(line, "HTTP/1.1 9999 ", 14);
    http_status_t hs;
    ASSERT_EQ(http_status_parse(line, sizeof(line), &hs), HTTP_STATUS_BAD);
    ASSERT(strlen(hs.error) < sizeof(hs.error));
    ASSERT_CONTAINS(hs.error, "...\"");
}

int main(void)
{
    RUN(test_final);
    RUN(test_interim);
    RUN(test_more);
    RUN(test_malformed);
    RUN(test_escape);
    return 0;
}
