/* scenarios.c - starts and stops the standard lab (see scenarios.h). */
#include "lab/scenarios.h"
#include "probes/util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

const char *const lab_scenario_names[LAB_SC_COUNT] = {
#define X(e, name, desc) name,
    LAB_SCENARIO_LIST(X)
#undef X
};
const char *const lab_scenario_descriptions[LAB_SC_COUNT] = {
#define X(e, name, desc) desc,
    LAB_SCENARIO_LIST(X)
#undef X
};

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int lab_start(lab_t *lab, char err[256])
{
    memset(lab, 0, sizeof(*lab));
    const char *tmp = getenv("TMPDIR");
    snprintf(lab->dir, sizeof(lab->dir), "%s/fleetscan-lab-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(lab->dir) == NULL) {
        snprintf(err, 256, "cannot create a temp dir under %s", tmp && *tmp ? tmp : "/tmp");
        lab->dir[0] = '\0';
        return -1;
    }
    lab->http = lab_http_start(err);
    if (lab->http == NULL)
        goto fail;
    char base[128];
    snprintf(base, sizeof(base), "http://%s:%d", LAB_CRL_HOST, lab_http_port(lab->http));
    if (lab_pki_create(&lab->pki, lab->dir, LAB_HOST, base, err) < 0)
        goto fail;
    lab_pki_publish(&lab->pki, lab->http);
    lab->closed_port = lab_closed_port();

    lab_pki_t *p = &lab->pki;
    X509 *inter[1] = {p->inter.cert};
    X509 *rogue[1] = {p->rogue_root.cert};
    for (int s = 0; s < LAB_SC_COUNT; s++) {
        lab_tls_opts_t o = {.mode = LAB_TLS_SERVE, .chain = inter, .nchain = 1};
        lab_leaf_t leaf = LAB_LEAF_GOOD;
        switch ((lab_scenario_t)s) {
        case LAB_SC_GOOD:
            break;
        case LAB_SC_LEAF_ONLY:
            o.nchain = 0;
            break;
        case LAB_SC_EXPIRED:
            leaf = LAB_LEAF_EXPIRED;
            break;
        case LAB_SC_NOTYET:
            leaf = LAB_LEAF_NOTYET;
            break;
        case LAB_SC_WRONGHOST:
            leaf = LAB_LEAF_WRONGHOST;
            break;
        case LAB_SC_ROGUE:
            leaf = LAB_LEAF_ROGUE;
            o.chain = rogue;
            break;
        case LAB_SC_LEGACY:
            leaf = LAB_LEAF_LEGACY;
            o.nchain = 0;
            break;
        case LAB_SC_SHA1:
            leaf = LAB_LEAF_SHA1;
            break;
        case LAB_SC_EXPIRING:
            leaf = LAB_LEAF_EXPIRING;
            break;
        case LAB_SC_REVOKED:
            leaf = LAB_LEAF_REVOKED;
            break;
        case LAB_SC_TLS10:
            if (!lab_tls10_supported())
                continue;
            o.min_version = o.max_version = TLS1_VERSION;
            break;
        case LAB_SC_HTTP500:
            o.status_line = "HTTP/1.1 500 Internal Server Error";
            break;
        case LAB_SC_NOSNI:
            o.nosni_cert = p->leaf[LAB_LEAF_WRONGHOST].cert;
            o.nosni_key = p->leaf[LAB_LEAF_WRONGHOST].key;
            o.nosni_chain = inter;
            o.nosni_nchain = 1;
            break;
        case LAB_SC_PLAIN_HTTP:
            o.mode = LAB_TLS_PLAIN_HTTP;
            break;
        case LAB_SC_STALL:
            o.mode = LAB_TLS_STALL;
            break;
        case LAB_SC_GARBAGE:
            o.mode = LAB_TLS_GARBAGE;
            break;
        case LAB_SC_RESET:
            o.mode = LAB_TLS_RESET;
            break;
        case LAB_SC_CLOSE:
            o.mode = LAB_TLS_CLOSE;
            break;
        case LAB_SC_COUNT:
            break;
        }
        o.cert = p->leaf[leaf].cert;
        o.key = p->leaf[leaf].key;
        lab->srv[s] = lab_tls_start(&o, err);
        if (lab->srv[s] == NULL)
            goto fail;
    }
    return 0;
fail:
    lab_stop(lab);
    return -1;
}

int lab_port(const lab_t *lab, lab_scenario_t s)
{
    return lab->srv[s] ? lab_tls_port(lab->srv[s]) : 0;
}

char *lab_url(const lab_t *lab, lab_scenario_t s, const char *path, char *buf, size_t n)
{
    snprintf(buf, n, "%s://%s:%d%s", s == LAB_SC_PLAIN_HTTP ? "http" : "https", LAB_HOST,
             lab_port(lab, s), path ? path : "");
    return buf;
}

char *lab_file(const lab_t *lab, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", lab->dir, name);
    return buf;
}

int lab_blackhole(const char *ip, int port, int fds[4])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof(a);
    inet_pton(AF_INET, ip, &a.sin_addr);
    int one = 1;
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* SO_REUSEADDR: a connection of an earlier test to that address and port may linger in
     * TIME_WAIT, and the port must be this one (the server's, on another address). */
    if (fds[0] < 0 || setsockopt(fds[0], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fds[0], (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fds[0], 0) != 0 ||
        getsockname(fds[0], (struct sockaddr *)&a, &len) != 0)
        return -1;
    for (int i = 1; i < 4; i++) { /* fill the accept queue (backlog 0 admits one or two) */
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fds[i] >= 0)
            connect(fds[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(100000); /* let the handshakes of the fillers complete */
    return ntohs(a.sin_port);
}

void lab_stop(lab_t *lab)
{
    for (int s = 0; s < LAB_SC_COUNT; s++) {
        if (lab->srv[s] != NULL)
            lab_tls_stop(lab->srv[s]);
        lab->srv[s] = NULL;
    }
    if (lab->http != NULL)
        lab_http_stop(lab->http);
    lab->http = NULL;
    lab_pki_free(&lab->pki);
    if (lab->dir[0])
        rm_tree(lab->dir);
    lab->dir[0] = '\0';
}
