/* test_wbuf.c - web/wbuf.c, the one writer of the API: the JSON string escaper (control
 * characters, quotes, valid UTF-8 kept, each invalid byte U+FFFD), the Prometheus label escaper
 * (backslash, quote, newline), integers, and the hard cap. */
#include "web/wbuf.h"

#include "test.h"

#include <math.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

/* The JSON string wbuf writes for the n bytes at s. Freed by the caller. */
static char *jstr(const char *s, size_t n)
{
    wbuf_t b;
    wbuf_init(&b, 16, 1 << 20);
    wbuf_json_strn(&b, s, n);
    ASSERT_EQ(wbuf_done(&b), 0);
    return wbuf_steal(&b, NULL);
}

static void expect_jstr(const char *in, size_t n, const char *want)
{
    char *got = jstr(in, n);
    ASSERT_STREQ(got, want);
    /* Whatever the input, the output is one JSON string a parser accepts. */
    cJSON *j = cJSON_Parse(got);
    ASSERT(cJSON_IsString(j));
    cJSON_Delete(j);
    free(got);
}
#define EXPECT_JSTR(lit, want) expect_jstr(lit, sizeof(lit) - 1, want)

static void test_json_controls(void)
{
    EXPECT_JSTR("", "\"\"");
    EXPECT_JSTR("plain ASCII /~", "\"plain ASCII /~\"");
    EXPECT_JSTR("q\"b\\s", "\"q\\\"b\\\\s\"");
    EXPECT_JSTR("\n\r\t", "\"\\n\\r\\t\"");
    EXPECT_JSTR("\b\f\x01\x1f", "\"\\u0008\\u000c\\u0001\\u001f\"");
    EXPECT_JSTR("a\0b", "\"a\\u0000b\""); /* a NUL inside the n bytes */
    EXPECT_JSTR("\x7f", "\"\x7f\"");      /* DEL needs no escape in JSON */
    /* Every byte below 0x20 is escaped, and the parser gives it back. */
    for (int c = 0; c < 0x20; c++) {
        char in[3] = {'x', (char)c, 'y'};
        char *got = jstr(in, 3);
        ASSERT(strchr(got, c) == NULL || c == 0);
        cJSON *j = cJSON_Parse(got);
        ASSERT(cJSON_IsString(j));
        if (c != 0)
            ASSERT(memcmp(j->valuestring, in, 3) == 0 && j->valuestring[3] == '\0');
        cJSON_Delete(j);
        free(got);
    }
    /* NULL is null, a C string stops at its NUL. */
    wbuf_t b;
    wbuf_init(&b, 16, 1024);
    wbuf_json_str(&b, NULL);
    wbuf_putc(&b, ',');
    wbuf_json_str(&b, "é");
    ASSERT_STREQ(b.data, "null,\"é\"");
    wbuf_free(&b);
}

static void test_json_utf8(void)
{
    /* Valid sequences are copied as they are: 2, 3 and 4 bytes, the edges of each range. */
    EXPECT_JSTR("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    EXPECT_JSTR("\xc2\x80\xdf\xbf", "\"\xc2\x80\xdf\xbf\"");
    EXPECT_JSTR("\xe0\xa0\x80\xef\xbf\xbf", "\"\xe0\xa0\x80\xef\xbf\xbf\"");
    EXPECT_JSTR("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", "\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"");
    /* Each byte that does not start a valid sequence is one U+FFFD; what follows is read anew. */
    EXPECT_JSTR("\x80", "\"\\ufffd\"");                       /* a lone continuation byte */
    EXPECT_JSTR("\xc0\x80", "\"\\ufffd\\ufffd\"");            /* overlong NUL */
    EXPECT_JSTR("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""); /* overlong '/' */
    EXPECT_JSTR("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""); /* a UTF-16 surrogate */
    EXPECT_JSTR("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* past U+10FFFF */
    EXPECT_JSTR("\xf5\xff", "\"\\ufffd\\ufffd\"");
    EXPECT_JSTR("\xe2\x82", "\"\\ufffd\\ufffd\""); /* cut at the end of the input */
    EXPECT_JSTR("\xe2\x82"
                "A\"",
                "\"\\ufffd\\ufffdA\\\"\""); /* cut, then ASCII */
    EXPECT_JSTR("\xf0\x9f\x98", "\"\\ufffd\\ufffd\\ufffd\"");
    /* A sequence may not run past n, even when the bytes after n would complete it. */
    expect_jstr("\xc3\xa9", 1, "\"\\ufffd\"");

    /* Every code point but the surrogates, encoded as UTF-8, comes out as it went in. */
    for (uint32_t cp = 0x80; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        unsigned char u[4];
        size_t n;
        if (cp < 0x800) {
            u[0] = (unsigned char)(0xC0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            u[0] = (unsigned char)(0xE0 | cp >> 12);
            u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            u[2] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            u[0] = (unsigned char)(0xF0 | cp >> 18);
            u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
            u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            u[3] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 4;
        }
        wbuf_t b;
        char small[16];
        wbuf_init(&b, 16, 64);
        wbuf_json_strn(&b, (const char *)u, n);
        if (b.len != n + 2 || memcmp(b.data + 1, u, n) != 0) {
            snprintf(small, sizeof(small), "U+%04X", (unsigned)cp);
            fprintf(stderr, "%s was not copied as is: %s\n", small, b.data);
            ASSERT(0);
        }
        wbuf_free(&b);
    }
}

static void test_json_values(void)
{
    wbuf_t b;
    wbuf_init(&b, 16, 1024);
    wbuf_putc(&b, '{');
    wbuf_json_key(&b, "n", 1);
    wbuf_i64(&b, -42);
    wbuf_json_key(&b, "min", 0);
    wbuf_i64(&b, INT64_MIN);
    wbuf_json_key(&b, "max", 0);
    wbuf_u64(&b, UINT64_MAX);
    wbuf_json_key(&b, "zero", 0);
    wbuf_u64(&b, 0);
    wbuf_json_key(&b, "t", 0);
    wbuf_json_time(&b, 1764000000);
    wbuf_json_key(&b, "never", 0);
    wbuf_json_time(&b, 0);
    wbuf_json_key(&b, "yes", 0);
    wbuf_json_bool(&b, 7);
    wbuf_json_key(&b, "no", 0);
    wbuf_json_bool(&b, 0);
    wbuf_putc(&b, '}');
    ASSERT_STREQ(b.data, "{\"n\":-42,\"min\":-9223372036854775808,\"max\":18446744073709551615,"
                         "\"zero\":0,\"t\":\"2025-11-24T16:00:00Z\",\"never\":null,\"yes\":true,"
                         "\"no\":false}");
    wbuf_free(&b);
}

static void expect_label(const char *in, const char *want)
{
    wbuf_t b;
    wbuf_init(&b, 16, 1024);
    wbuf_prom_label(&b, in);
    ASSERT_EQ(wbuf_done(&b), 0);
    ASSERT_STREQ(b.data, want);
    wbuf_free(&b);
}

static void test_prom_label(void)
{
    expect_label("", "");
    expect_label("hq-dc1", "hq-dc1");
    expect_label("a\\b", "a\\\\b");
    expect_label("say \"hi\"", "say \\\"hi\\\"");
    expect_label("two\nlines", "two\\nlines");
    expect_label("\\\"\n", "\\\\\\\"\\n");
    expect_label("\\n", "\\\\n"); /* a backslash and an n, not a newline */
    /* Nothing else is escaped: the format takes any UTF-8, tabs and carriage returns as is. */
    expect_label("tab\tcr\r caf\xc3\xa9 {a=\"b\"},", "tab\tcr\r caf\xc3\xa9 {a=\\\"b\\\"},");

    wbuf_t b;
    wbuf_init(&b, 16, 1024);
    wbuf_prom_double(&b, 4.5);
    wbuf_putc(&b, ' ');
    wbuf_prom_double(&b, 0.1 + 0.2);
    wbuf_putc(&b, ' ');
    wbuf_prom_double(&b, INFINITY);
    wbuf_putc(&b, ' ');
    wbuf_prom_double(&b, -INFINITY);
    wbuf_putc(&b, ' ');
    wbuf_prom_double(&b, NAN);
    ASSERT_STREQ(b.data, "4.5 0.3 +Inf -Inf NaN");
    wbuf_free(&b);
}

static void test_cap(void)
{
    wbuf_t b;
    wbuf_init(&b, 4, 16);
    wbuf_puts(&b, "0123456789");
    wbuf_json_str(&b, "abc"); /* 15 bytes + NUL: exactly at the cap */
    ASSERT_EQ(wbuf_done(&b), 0);
    ASSERT_STREQ(b.data, "0123456789\"abc\"");
    wbuf_putc(&b, 'x'); /* past it: failed for good */
    ASSERT_EQ(wbuf_done(&b), UV_ENOMEM);
    wbuf_putc(&b, 'y');
    ASSERT_EQ(b.len, 15);
    size_t len = 99;
    ASSERT(wbuf_steal(&b, &len) == NULL);
    ASSERT_EQ(len, 99);
    ASSERT(b.data == NULL);

    /* A hint past the cap is clamped; a steal hands over exactly what was written. */
    wbuf_init(&b, 1 << 20, 64);
    ASSERT(b.cap <= 64);
    wbuf_puts(&b, "ok");
    char *d = wbuf_steal(&b, &len);
    ASSERT_STREQ(d, "ok");
    ASSERT_EQ(len, 2);
    free(d);
}

int main(void)
{
    RUN(test_json_controls);
    RUN(test_json_utf8);
    RUN(test_json_values);
    RUN(test_prom_label);
    RUN(test_cap);
    return 0;
}
