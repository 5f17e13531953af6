/* hostile.c - the soak's hostile servers (bench/run.sh section "soak"), on 127.0.0.1, one
 * thread, poll(): a "stall" port that accepts and never speaks (reads and discards what the
 * client sends), and a "trickle" port that sends one byte every TRICKLE_MS for as long as the
 * client stays: the header of a 16 KiB TLS handshake record, then its body, which at two bytes a
 * second would take over two hours. Either way the probe waits for its TLS phase timeout; the
 * server never closes first.
 *
 * usage: hostile [MAX_CONNECTIONS=4096]
 * Prints "stall=PORT trickle=PORT" once listening; on SIGTERM prints the connections accepted
 * on each and exits. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TRICKLE_MS 500

enum { STALL, TRICKLE };

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int listen_on(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("hostile: listen");
        exit(1);
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    int max = argc > 1 ? atoi(argv[1]) : 4096;
    if (max < 1) {
        fprintf(stderr, "usage: hostile [MAX_CONNECTIONS]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int ports[2];
    struct pollfd *pf = calloc((size_t)max + 2, sizeof(*pf));
    int *kind = calloc((size_t)max + 2, sizeof(*kind));
    long long *sent = calloc((size_t)max + 2, sizeof(*sent));
    if (pf == NULL || kind == NULL || sent == NULL)
        return 1;
    pf[0] = (struct pollfd){.fd = listen_on(&ports[STALL]), .events = POLLIN};
    pf[1] = (struct pollfd){.fd = listen_on(&ports[TRICKLE]), .events = POLLIN};
    int n = 2;
    unsigned long accepted[2] = {0, 0};
    printf("stall=%d trickle=%d\n", ports[STALL], ports[TRICKLE]);
    fflush(stdout);
    long long next_tick = now_ms() + TRICKLE_MS;
    while (!stop) {
        int wait = (int)(next_tick - now_ms());
        int r = poll(pf, (nfds_t)n, wait > 0 ? wait : 0);
        if (r < 0 && errno != EINTR)
            break;
        for (int l = 0; l < 2; l++) {
            if ((pf[l].revents & POLLIN) == 0)
                continue;
            int c;
            while (n < max + 2 && (c = accept4(pf[l].fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                pf[n] = (struct pollfd){.fd = c, .events = POLLIN};
                kind[n] = l;
                sent[n] = 0;
                n++;
                accepted[l]++;
            }
        }
        for (int i = 2; i < n; i++) {
            if ((pf[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
                continue;
            char buf[4096];
            ssize_t m = read(pf[i].fd, buf, sizeof(buf));
            if (m == 0 || (m < 0 && errno != EAGAIN)) { /* the client left: forget it */
                close(pf[i].fd);
                pf[i] = pf[--n];
                kind[i] = kind[n];
                sent[i] = sent[n];
                i--;
            }
        }
        if (now_ms() >= next_tick) {
            next_tick += TRICKLE_MS;
            for (int i = 2; i < n; i++) {
                if (kind[i] != TRICKLE)
                    continue;
                static const char header[] = {0x16, 0x03, 0x03, 0x40, 0x00};
                char b = sent[i] < (long long)sizeof(header) ? header[sent[i]] : 0;
                if (write(pf[i].fd, &b, 1) == 1)
                    sent[i]++;
            }
        }
    }
    printf("accepted stall=%lu trickle=%lu open=%d\n", accepted[STALL], accepted[TRICKLE], n - 2);
    return 0;
}
