/* http.h - the status of an HTTP/1.x response head, parsed from the bytes received so far: a
 * pure function (no I/O, no allocation) the probe's request phase and the fuzzer share. */
#ifndef FS_HTTP_H
#define FS_HTTP_H

#include <stddef.h>

/* Room for what http_status_t.error says, the offending line escaped included. */
#define HTTP_ERR_LEN 160

typedef struct http_status_s {
    int code;                 /* the final status, 101 or 200..599, when parsed */
    unsigned interim;         /* 1xx interim responses skipped before it */
    size_t line_end;          /* with the code: bytes up to the final status line's LF, included */
    char error[HTTP_ERR_LEN]; /* when malformed: what is wrong and the line, escaped */
} http_status_t;

enum { HTTP_STATUS_BAD = -1, HTTP_STATUS_MORE = 0, HTTP_STATUS_DONE = 1 };

/* Parses the head of a response from buf[0..len), any bytes (NULs included, nothing needs to be
 * terminated). A line ends at LF, with or without a CR before it. Interim responses (1xx other
 * than 101: 100 Continue, 102, 103 Early Hints; their status line and header lines up to the
 * empty line) are skipped; the first final status line is parsed: "HTTP/1." DIGIT SP, exactly
 * three digits from 100 to 599, then the end of the line or SP and any reason phrase. 101
 * Switching Protocols counts as final (nothing else can follow it on this connection).
 * Returns HTTP_STATUS_DONE with out->code; HTTP_STATUS_MORE while no complete final status line
 * is there (the caller bounds len); HTTP_STATUS_BAD for a malformed status line (no HTTP/1.x
 * version, a code that is not three digits or not 100..599) or a NUL in a line of the head, with
 * out->error naming the problem and quoting the line via http_escape. A result other than
 * HTTP_STATUS_MORE never changes when more bytes follow. */
int http_status_parse(const void *buf, size_t len, http_status_t *out);

/* Writes in[0..n) into out (cap >= 1, always terminated) as printable ASCII: backslash, double
 * quote and bytes outside 0x20..0x7e escaped (\\ \" \r \n \t \xNN); cut with "..." when it does
 * not fit. Returns out. */
char *http_escape(const void *in, size_t n, char *out, size_t cap);

#endif
