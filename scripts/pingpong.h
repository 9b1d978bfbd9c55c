/*
 * pingpong.h: the shared half of the two reference ping-pong clients (pingpong-spin.c,
 * pingpong-block.c). Measurement references for scripts/wait-strategy.py, not part of the
 * product: one TCP connection, TCP_NODELAY, one 64-byte message at a time, a round trip timed
 * from immediately before send() to the return of the recv() that completes the echo (the same
 * timestamps as `iomodels load`). Prints `p50_us X p99_us Y round_trips N` on stdout.
 *
 * Usage: pingpong-{spin,block} HOST PORT [SECONDS [WARMUP_SECONDS [SIZE]]]
 * Each includes this file and defines wait_echo(), the only difference between them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Reads the `size`-byte echo into buf; returns 0, or -1 on error or end of file. */
static int wait_echo(int fd, char *buf, size_t size);

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST PORT [SECONDS [WARMUP_SECONDS [SIZE]]]\n", argv[0]);
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 3.0;
    double warm = argc > 4 ? atof(argv[4]) : 1.0;
    size_t size = argc > 5 ? (size_t)atol(argv[5]) : 64;
    if (secs <= 0 || warm < 0 || size == 0 || size > 65536) {
        fprintf(stderr, "%s: bad SECONDS, WARMUP_SECONDS or SIZE\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "%s: HOST must be an IPv4 address, e.g. 127.0.0.1\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");

    char *out = malloc(size), *in = malloc(size);
    size_t cap = 1 << 20, n = 0;
    uint64_t *rtt = malloc(cap * sizeof *rtt);
    if (!out || !in || !rtt) die("malloc");
    memset(out, 'x', size);

    uint64_t start = now_ns();
    uint64_t measure_from = start + (uint64_t)(warm * 1e9);
    uint64_t end = measure_from + (uint64_t)(secs * 1e9);
    for (;;) {
        uint64_t t0 = now_ns();
        if (t0 >= end) break;
        if (send(fd, out, size, 0) != (ssize_t)size) die("send");
        if (wait_echo(fd, in, size) < 0) die("recv");
        uint64_t t1 = now_ns();
        if (t0 < measure_from) continue;
        if (n == cap) {
            cap *= 2;
            rtt = realloc(rtt, cap * sizeof *rtt);
            if (!rtt) die("realloc");
        }
        rtt[n++] = t1 - t0;
    }
    close(fd);
    if (n == 0) {
        fprintf(stderr, "%s: no round trip measured\n", argv[0]);
        return 1;
    }
    qsort(rtt, n, sizeof *rtt, cmp_u64);
    /* Nearest rank, as HdrHistogram's value_at_quantile does (to its 3 significant digits). */
    size_t i50 = (size_t)(0.50 * (double)n + 0.5), i99 = (size_t)(0.99 * (double)n + 0.5);
    i50 = i50 ? i50 - 1 : 0;
    i99 = i99 ? i99 - 1 : 0;
    printf("p50_us %.3f p99_us %.3f round_trips %zu\n", rtt[i50] / 1e3, rtt[i99] / 1e3, n);
    return 0;
}
