/*
 * listener: the listening sockets of the daemon (RESP, TLS, UDP, /metrics, the console). A
 * leaf beneath every module that listens: it knows no gateway state.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "limits.h"

/* bind(), retried on EADDRINUSE for up to LISTEN_BIND_RETRY_MS (issue 15 item 11). After a
 * kill -9 the kernel tears the dead process's io_uring down asynchronously: its listening
 * sockets, still referenced by their multishot accepts, outlive the process by milliseconds
 * (longer on a busy host), and SO_REUSEADDR does not let a new socket bind beside a listening
 * one. SO_REUSEPORT would, but it would also let a second gateway share the port and split the
 * traffic silently, so it is not used: waiting is. A port another live process holds still
 * fails, once the wait is over. */
static int bind_retrying(int fd, const struct sockaddr_in *sa) {
    for (int waited_ms = 0;; waited_ms += LISTEN_BIND_RETRY_STEP_MS) {
        if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) == 0) return 0;
        if (errno != EADDRINUSE || waited_ms >= LISTEN_BIND_RETRY_MS) return -1;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = LISTEN_BIND_RETRY_STEP_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int listener_open(const cfg_addr *a, int type, char *err, size_t errcap) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(a->port)};
    if (inet_pton(AF_INET, a->host, &sa.sin_addr) != 1) {
        snprintf(err, errcap, "bad IPv4 address '%s'", a->host);
        return -1;
    }
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errcap, "socket: %s", strerror(errno));
        return -1;
    }
    /* TIME_WAIT leftovers of a previous run must not block the port. */
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        snprintf(err, errcap, "SO_REUSEADDR: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (bind_retrying(fd, &sa) != 0 || (type == SOCK_STREAM && listen(fd, 4096) != 0)) {
        snprintf(err, errcap, "%s:%u: %s", a->host, a->port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
