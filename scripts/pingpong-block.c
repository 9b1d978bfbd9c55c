/*
 * pingpong-block.c: the blocking reference client. After each send() it sleeps in a blocking
 * recv() until the echo is complete, so every round trip includes the client thread's wake-up.
 * Compare with `iomodels load -c 1 -s 64` (the sleeping generator; scripts/wait-strategy.py).
 * See pingpong.h for usage and output.
 */
#include "pingpong.h"

static int wait_echo(int fd, char *buf, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t r = recv(fd, buf + got, size - got, 0);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}
