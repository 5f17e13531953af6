/* cmd_status.c - `fleetscan status [--url URL]`: the fleet picture of a running daemon in the
 * terminal (an admin's `curl | jq` replacement), also what `fleetscan demo` keeps printing. */
#include "daemon/cli.h"
#include "probes/causes.h"
#include "probes/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define STATUS_MAX_BODY (16u << 20)
#define STATUS_TOP_CAUSES 6

static void status_usage(FILE *f)
{
    fprintf(f, "usage: fleetscan status [--url URL] [--watch [S]] [--json]\n"
               "  --url URL     the daemon's API (default http://127.0.0.1:8787)\n"
               "  --watch [S]   print the picture again every S seconds (default 2) until Ctrl-C\n"
               "  --json        print /api/v1/status as is\n"
               "exit status: 0 every endpoint online, 1 some offline, 2 daemon unreachable\n");
}

typedef struct body_s {
    char *p;
    size_t len;
} body_t;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    body_t *b = arg;
    size_t k = size * n;
    if (b->len + k > STATUS_MAX_BODY)
        return 0; /* curl fails the transfer: a status document is never this large */
    b->p = fs_xrealloc(b->p, b->len + k + 1);
    memcpy(b->p + b->len, data, k);
    b->len += k;
    b->p[b->len] = '\0';
    return k;
}

int status_fetch(const char *base, cJSON **out, char err[256])
{
    char url[1100];
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof(url), "%.*s/api/v1/status", (int)bl, base);
    CURL *c = curl_easy_init();
    body_t b = {0};
    long code = 0;
    int rc = -1;
    if (c == NULL) {
        snprintf(err, 256, "cannot create an HTTP client");
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (cc != CURLE_OK) {
        snprintf(err, 256, "%s: %s", url, curl_easy_strerror(cc));
    } else if (code != 200) {
        snprintf(err, 256, "%s: HTTP %ld%s%.120s", url, code, b.p ? ": " : "", b.p ? b.p : "");
    } else if ((*out = cJSON_Parse(b.p ? b.p : "")) == NULL) {
        snprintf(err, 256, "%s: the answer is not JSON", url);
    } else {
        rc = 0;
    }
    free(b.p);
    curl_easy_cleanup(c);
    return rc;
}

static double num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItem(b ? cJSON_GetObjectItem(o, a) : o, b ? b : a);
    return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(x) ? x->valuestring : "";
}

void status_print(FILE *f, const cJSON *s, const char *base)
{
    fprintf(f, "fleetscan %s  vantage %s  at %s\n", base, str(s, "vantage"),
            str(s, "generated_at"));
    double total = num(s, "endpoints", "total"), on = num(s, "endpoints", "online"),
           off = num(s, "endpoints", "offline"), pend = num(s, "endpoints", "pending");
    fprintf(f, "\n  %.0f endpoints: %.0f online, %.0f OFFLINE, %.0f pending\n", total, on, off,
            pend);
    /* Top causes, most endpoints first, each with its groups and the first remediation step. */
    const cJSON *causes = cJSON_GetObjectItem(s, "causes"),
                *groups = cJSON_GetObjectItem(s, "groups");
    const cJSON *shown[STATUS_TOP_CAUSES] = {0};
    int n = 0;
    while (n < STATUS_TOP_CAUSES) {
        const cJSON *best = NULL, *c;
        cJSON_ArrayForEach(c, causes)
        {
            int seen = 0;
            for (int i = 0; i < n; i++)
                seen |= shown[i] == c;
            if (!seen && cJSON_IsNumber(c) && (best == NULL || c->valuedouble > best->valuedouble))
                best = c;
        }
        if (best == NULL)
            break;
        shown[n++] = best;
    }
    if (n > 0)
        fprintf(f, "\n  offline, by cause:\n");
    for (int i = 0; i < n; i++) {
        const char *id = shown[i]->string;
        fprintf(f, "    %-22s %6.0f  in", id, shown[i]->valuedouble);
        const cJSON *g;
        int first = 1;
        cJSON_ArrayForEach(g, groups)
        {
            double k = num(g, "causes", id);
            if (k > 0) {
                fprintf(f, "%s %s (%.0f)", first ? "" : ",", str(g, "name"), k);
                first = 0;
            }
        }
        int c = fs_cause_from_id(id);
        if (c > 0) {
            const char *rem = fs_cause_info((fs_cause_t)c)->remediation;
            const char *dot = strstr(rem, ". ");
            fprintf(f, "\n    %22s fix: %.*s\n", "", dot ? (int)(dot - rem + 1) : (int)strlen(rem),
                    rem);
        } else {
            fputc('\n', f);
        }
    }
    const cJSON *w, *warnings = cJSON_GetObjectItem(s, "warnings");
    if (cJSON_GetArraySize(warnings) > 0) {
        fprintf(f, "\n  warnings:");
        cJSON_ArrayForEach(w, warnings)
        {
            fprintf(f, " %s %.0f", w->string, w->valuedouble);
        }
        fputc('\n', f);
    }
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    fprintf(f, "\n  dashboard %.*s/   details: fleetscan status --json, %.*s/api/v1/endpoints\n",
            (int)bl, base, (int)bl, base);
    fflush(f);
}

int cmd_status(int argc, char **argv)
{
    const char *base = "http://127.0.0.1:8787", *v;
    int json = 0;
    long long watch = 0;
    for (int i = 1; i < argc; i++) {
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            status_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--watch") == 0) {
            watch = 2;
            if (i + 1 < argc && argv[i + 1][0] != '-' &&
                cli_parse_int("--watch", argv[++i], 1, 3600, &watch) < 0)
                return 2;
        } else if ((m = cli_opt_value(argc, argv, &i, "--url", &v)) != 0) {
            if (m < 0)
                return 2;
            if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
                fprintf(stderr, "fleetscan: status: --url \"%s\": expected http://HOST:PORT\n", v);
                return 2;
            }
            base = v;
        } else {
            fprintf(stderr, "fleetscan: status: unexpected argument \"%s\"\n", argv[i]);
            status_usage(stderr);
            return 2;
        }
    }
    int rc;
    do {
        cJSON *s = NULL;
        char err[256];
        if (status_fetch(base, &s, err) < 0) {
            fprintf(stderr, "fleetscan: status: %s\n", err);
            return 2;
        }
        if (json) {
            char *t = cJSON_Print(s);
            puts(t);
            free(t);
        } else {
            if (watch && isatty(STDOUT_FILENO))
                fputs("\033[H\033[2J", stdout);
            status_print(stdout, s, base);
        }
        rc = num(s, "endpoints", "offline") > 0 ? 1 : 0;
        cJSON_Delete(s);
        if (watch)
            sleep((unsigned)watch);
    } while (watch);
    return rc;
}
