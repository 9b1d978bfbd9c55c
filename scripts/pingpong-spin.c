/*
 * pingpong-spin.c: the spinning reference client. After each send() it calls
 * recv(MSG_DONTWAIT) in a loop until the echo is complete, so it never sleeps and a round trip
 * excludes the client's wake-up. Compare with `iomodels load -c 1 -s 64 --busy-poll`
 * (scripts/wait-strategy.py). See pingpong.h for usage and output.
 */
#include "pingpong.h"

static int wait_echo(int fd, char *buf, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t r = recv(fd, buf + got, size - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            return -1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return -1;
        }
    }
    return 0;
}
