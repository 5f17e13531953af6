/* fuzz_http.c - libFuzzer target for the response status parser of the probe's request phase:
 * the input is what a server sends back to GET on the agent URL. */
#include "probes/http.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_message(const char *s)
{
    size_t n = strnlen(s, HTTP_ERR_LEN);
    if (n == 0 || n >= HTTP_ERR_LEN)
        abort(); /* a failure says why, within its buffer */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            abort(); /* escaped: it goes into the journal and JSON as is */
}

static int parse(const unsigned char *data, size_t size, http_status_t *hs)
{
    int rc = http_status_parse(data, size, hs);
    if (rc == HTTP_STATUS_DONE && !(hs->code == 101 || (hs->code >= 200 && hs->code <= 599)))
        abort();
    if (rc == HTTP_STATUS_BAD)
        check_message(hs->error);
    else if (rc != HTTP_STATUS_MORE && rc != HTTP_STATUS_DONE)
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    http_status_t all, half;
    int rc = parse(data, size, &all);
    /* Bytes arrive in pieces: a verdict reached on a prefix is the verdict on the whole. */
    int hrc = parse(data, size / 2, &half);
    if (hrc != HTTP_STATUS_MORE && hrc != rc)
        abort();
    if (hrc == HTTP_STATUS_DONE && (half.code != all.code || half.interim != all.interim))
        abort();
    /* The escaper on its own, with a small buffer: terminated, printable, within cap. */
    char out[24];
    memset(out, 'Z', sizeof(out));
    http_escape(data, size, out, 1 + size % sizeof(out));
    size_t n = strnlen(out, sizeof(out));
    if (n >= 1 + size % sizeof(out))
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            abort();
    return 0;
}
