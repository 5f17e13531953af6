/* daemon_harness.c - the real `fleetscan run` for the end-to-end tests: spawn, find the API,
 * stop and check its stderr; HTTP over libcurl and JSON lookups by dotted path. */
#include "tests/daemon_harness.h"
#include "probes/util.h"
#include "tests/test.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

_Thread_local long dh_http_timeout_s = 10;

void dh_start(dh_daemon_t *d)
{
    int out[2];
    ASSERT(pipe(out) == 0);
    int errfd = open(d->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT(errfd >= 0);
    d->pid = fork();
    ASSERT(d->pid >= 0);
    if (d->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion must not leave a daemon behind */
        dup2(out[1], 1);
        dup2(errfd, 2);
        close(out[0]);
        setenv("FLEETSCAN_DNS_OVERRIDE_ONLY", "1", 1);
        if (d->state_db != NULL)
            execl(getenv("FLEETSCAN_BIN"), "fleetscan", "run", "-c", d->cfg_path, "--state-db",
                  d->state_db, (char *)NULL);
        else
            execl(getenv("FLEETSCAN_BIN"), "fleetscan", "run", "-c", d->cfg_path, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(errfd);
    d->out = out[0];
    /* The daemon prints "fleetscan: API listening on http://127.0.0.1:PORT/". */
    char line[512] = "";
    size_t len = 0;
    struct pollfd p = {.fd = d->out, .events = POLLIN};
    while (strchr(line, '\n') == NULL && poll(&p, 1, 15000) > 0) {
        ssize_t n = read(d->out, line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
    }
    char *u = strstr(line, "http://");
    if (u == NULL)
        fprintf(stderr, "daemon did not start: %s\n%s\n", line, dh_read_file(d->err_path));
    ASSERT(u != NULL);
    size_t k = strcspn(u + 7, "/\n") + 7; /* past "http://" */
    memcpy(d->api, u, k);
    d->api[k] = '\0';
    fprintf(stderr, "   daemon %d at %s\n", (int)d->pid, d->api);
}

void dh_stop(dh_daemon_t *d, int sig)
{
    ASSERT(sig == SIGTERM || sig == SIGKILL);
    ASSERT(kill(d->pid, sig) == 0);
    int st = 0;
    for (int i = 0; waitpid(d->pid, &st, WNOHANG) != d->pid; i++) {
        ASSERT(i < 100);
        usleep(100000);
    }
    if (sig == SIGKILL) {
        ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    } else {
        ASSERT(WIFEXITED(st));
        ASSERT_EQ(WEXITSTATUS(st), 0);
        char *errs = dh_read_file(d->err_path);
        if (strstr(errs, "ERROR: AddressSanitizer") || strstr(errs, "runtime error:"))
            fprintf(stderr, "%s\n", errs);
        ASSERT(strstr(errs, "ERROR: AddressSanitizer") == NULL);
        ASSERT(strstr(errs, "runtime error:") == NULL);
        ASSERT(strstr(errs, "closed with handles open") == NULL);
        free(errs);
    }
    close(d->out);
    d->out = -1;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    dh_resp_t *r = arg;
    r->body = realloc(r->body, r->len + sz * n + 1);
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = '\0';
    return sz * n;
}

dh_resp_t dh_http(const dh_daemon_t *d, const char *method, const char *path, const char *auth,
                  const char *body)
{
    dh_resp_t r = {0};
    char url[512];
    snprintf(url, sizeof(url), "%s%s", d->api, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (auth) {
        char line[160];
        snprintf(line, sizeof(line), "Authorization: Bearer %s", auth);
        h = curl_slist_append(h, line);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, dh_http_timeout_s);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fprintf(stderr, "%s %s: %s\n", method, url, curl_easy_strerror(rc));
    ASSERT(rc == CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body == NULL)
        r.body = calloc(1, 1);
    return r;
}

cJSON *dh_get_json(const dh_daemon_t *d, const char *path, long want)
{
    dh_resp_t r = dh_http(d, "GET", path, NULL, NULL);
    if (r.status != want)
        fprintf(stderr, "GET %s: %ld (want %ld): %s\n", path, r.status, want, r.body);
    ASSERT_EQ(r.status, want);
    cJSON *j = cJSON_Parse(r.body);
    ASSERT(j != NULL);
    free(r.body);
    return j;
}

cJSON *dh_get_json_ready(const dh_daemon_t *d, const char *path)
{
    dh_resp_t r = dh_http(d, "GET", path, NULL, NULL);
    for (int i = 0; r.status == 503 && i < 100; i++) {
        free(r.body);
        usleep(100000);
        r = dh_http(d, "GET", path, NULL, NULL);
    }
    if (r.status != 200)
        fprintf(stderr, "GET %s: %ld (want 200): %s\n", path, r.status, r.body);
    ASSERT_EQ(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    ASSERT(j != NULL);
    free(r.body);
    return j;
}

cJSON *dh_wait_status(const dh_daemon_t *d, int (*pred)(cJSON *s, void *arg), void *arg)
{
    for (int i = 0; i < 300; i++) {
        dh_resp_t r = dh_http(d, "GET", "/api/v1/status", NULL, NULL);
        if (r.status == 200) {
            cJSON *j = cJSON_Parse(r.body);
            free(r.body);
            ASSERT(j != NULL);
            if (pred(j, arg))
                return j;
            cJSON_Delete(j);
        } else {
            free(r.body);
        }
        usleep(100000);
    }
    fprintf(stderr, "status never reached the expected state\n");
    abort();
}

int dh_all_probed(cJSON *s, void *arg)
{
    (void)arg;
    return dh_num(s, "endpoints.pending") == 0 && dh_num(s, "endpoints.total") > 0;
}

const cJSON *dh_item(const cJSON *o, const char *path)
{
    char buf[128];
    fs_strlcpy(buf, path, sizeof(buf));
    const cJSON *cur = o;
    for (char *tok = strtok(buf, "."); tok; tok = strtok(NULL, "."))
        cur = cJSON_GetObjectItem(cur, tok);
    return cur;
}

double dh_num(const cJSON *o, const char *path)
{
    const cJSON *v = dh_item(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

char *dh_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}
