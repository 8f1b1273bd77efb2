/*
 * The echo load generator, in C so that it is never the bottleneck: a
 * Python client spends more per message than the servers it measures.
 *
 *   echoload pingpong PORT CONNECTIONS SIZE WARMUP SECONDS
 *       each connection keeps one SIZE-byte message in flight; counts
 *       messages echoed.
 *   echoload bulk PORT CONNECTIONS SIZE WARMUP SECONDS INFLIGHT
 *       each connection keeps INFLIGHT messages of SIZE bytes in flight;
 *       counts bytes echoed.
 *   echoload http PORT CONNECTIONS 0 WARMUP SECONDS
 *       each connection keeps one "GET / HTTP/1.1" request in flight;
 *       counts responses (their status lines).
 *
 * It prints "open" as the counting window opens (after WARMUP seconds), and
 * "count N seconds S" as it closes, so the caller can read the server's CPU
 * time at both.  Any error (a refused or closed connection) ends it with a
 * message on stderr and exit status 1.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void fail(const char *what) {
    fprintf(stderr, "echoload: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: echoload pingpong|bulk PORT CONNECTIONS SIZE"
                        " WARMUP SECONDS [INFLIGHT]\n");
        return 2;
    }
    int bulk = strcmp(argv[1], "bulk") == 0;
    int http = strcmp(argv[1], "http") == 0;
    static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    static const char marker[] = "HTTP/1.1 ";
    const size_t markerLength = sizeof marker - 1;
    int port = atoi(argv[2]);
    int conns = atoi(argv[3]);
    long size = atol(argv[4]);
    double warmup = atof(argv[5]);
    double seconds = atof(argv[6]);
    long inflight = bulk && argc > 7 ? atol(argv[7]) : 1;
    if (http) size = sizeof request - 1;
    long window = size * inflight;

    char *out = malloc(window);
    char *in = malloc(256 * 1024);
    long *owed = calloc(conns, sizeof(long));  /* bytes still to come back */
    long *unsent = calloc(conns, sizeof(long)); /* bytes still to send */
    int *fds = calloc(conns, sizeof(int));
    char *watching = calloc(conns, 1); /* watched for EPOLLOUT */
    memset(out, 'p', window);
    if (http) memcpy(out, request, size);
    /* http: the end of the last read, in case a marker spans two reads. */
    char *tails = calloc(conns, 16);

    int ep = epoll_create1(0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    for (int i = 0; i < conns; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) fail("socket");
        if (!bulk) {
            int one = 1;
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) fail("connect");
        fds[i] = s;
        unsent[i] = window;
        watching[i] = bulk;
        struct epoll_event ev = {.events = EPOLLIN | (bulk ? EPOLLOUT : 0),
                                 .data.u32 = i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) < 0) fail("epoll_ctl");
    }
    for (int i = 0; i < conns; i++) {
        if (!bulk) {
            if (send(fds[i], out, size, 0) != size) fail("send");
            unsent[i] = 0;
            owed[i] = size;
        }
    }

    double opensAt = now() + warmup, closesAt = opensAt + seconds;
    int open = 0;
    long long count = 0;
    struct epoll_event events[256];
    for (;;) {
        double t = now();
        if (!open && t >= opensAt) {
            open = 1;
            count = 0;
            opensAt = t;
            closesAt = t + seconds;
            printf("open\n");
            fflush(stdout);
        }
        if (open && t >= closesAt) break;
        /* Spin: a generator that sleeps adds its wake-up latency to every round trip. */
        int n = epoll_wait(ep, events, 256, 0);
        if (n < 0 && errno != EINTR) fail("epoll_wait");
        for (int e = 0; e < n; e++) {
            int i = events[e].data.u32, s = fds[i];
            if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t got = recv(s, in, 256 * 1024, 0);
                if (got == 0) { errno = ECONNRESET; fail("server closed"); }
                if (got < 0 && errno != EAGAIN) fail("recv");
                if (got > 0 && http) {
                    char joined[16 + 256 * 1024];
                    size_t kept = strlen(tails + 16 * i);
                    memcpy(joined, tails + 16 * i, kept);
                    memcpy(joined + kept, in, got);
                    size_t length = kept + got, at = 0;
                    char *found;
                    while ((found = memmem(joined + at, length - at, marker,
                                           markerLength)) != NULL) {
                        at = found - joined + markerLength;
                        count++;
                        if (send(s, out, size, 0) != size) fail("send");
                    }
                    size_t tail = length - at < markerLength - 1
                                      ? length - at : markerLength - 1;
                    memcpy(tails + 16 * i, joined + length - tail, tail);
                    tails[16 * i + tail] = 0;
                } else if (got > 0) {
                    if (bulk) {
                        count += got;
                        unsent[i] += got;
                    } else {
                        owed[i] -= got;
                        while (owed[i] <= 0) {
                            owed[i] += size;
                            count++;
                            if (send(s, out, size, 0) != size) fail("send");
                        }
                    }
                }
            }
            if (bulk && unsent[i]) {
                ssize_t sent = send(s, out, unsent[i], MSG_DONTWAIT);
                if (sent < 0 && errno != EAGAIN) fail("send");
                if (sent > 0) unsent[i] -= sent;
            }
            if (bulk && watching[i] != (unsent[i] != 0)) {
                watching[i] = unsent[i] != 0;
                struct epoll_event ev = {
                    .events = EPOLLIN | (watching[i] ? EPOLLOUT : 0), .data.u32 = i};
                epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev);
            }
        }
    }
    printf("count %lld seconds %.6f\n", count, now() - opensAt);
    fflush(stdout);
    return 0;
}
