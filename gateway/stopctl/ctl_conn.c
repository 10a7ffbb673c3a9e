/*
 * ctl_conn: stopctl's connection (ctl_conn.h). Moved out of stopctl.c as it was.
 */
#include "ctl_conn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

struct ctl_conn {
    int fd;
    tlsc_ctx *ctx; /* NULL: plain TCP */
    tlsc_ssl *ssl;
    redisReader *rd;
    char errstr[256];
};

void ctl_conn_close(ctl_conn *c) {
    if (!c) return;
    tlsc_close(c->ssl);
    if (c->ctx) tlsc_ctx_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    if (c->rd) redisReaderFree(c->rd);
    free(c);
}

static int dial(const char *host, int port, char *err, size_t errcap) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errcap, "%s", gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {CTL_CONNECT_TIMEOUT_S, 0}; /* SO_SNDTIMEO bounds connect() too */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            snprintf(err, errcap, "%s", strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {CTL_REPLY_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* TCP, and TLS with --tls. NULL with err. */
ctl_conn *ctl_conn_open(const char *host, int port, const tlsc_opts *tls, char *err, size_t errcap) {
    ctl_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    c->rd = redisReaderCreate();
    c->fd = c->rd ? dial(host, port, err, errcap) : -1;
    if (c->fd >= 0 && tls->on) {
        c->ctx = tlsc_ctx_new(tls, err, errcap);
        if (c->ctx) c->ssl = tlsc_connect(c->ctx, tls, c->fd, host, err, errcap);
        if (!c->ssl) {
            ctl_conn_close(c);
            return NULL;
        }
    }
    if (c->fd < 0) {
        if (!c->rd) snprintf(err, errcap, "out of memory");
        ctl_conn_close(c);
        return NULL;
    }
    return c;
}

static bool conn_write(ctl_conn *c, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = c->ssl ? SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n) : send(c->fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) {
            if (k < 0 && !c->ssl && errno == EINTR) continue;
            snprintf(c->errstr, sizeof c->errstr, "%s", c->ssl ? "TLS write failed" : strerror(errno));
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* One command, one reply (NULL with c->errstr when the connection failed). */
redisReply *ctl_conn_command(ctl_conn *c, int argc, const char **argv) {
    char *cmd;
    int len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    if (len < 0) {
        snprintf(c->errstr, sizeof c->errstr, "out of memory");
        return NULL;
    }
    bool ok = conn_write(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (!ok) return NULL;
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->rd, &reply) != REDIS_OK) {
            snprintf(c->errstr, sizeof c->errstr, "protocol error: %s", c->rd->errstr);
            return NULL;
        }
        if (reply) return reply;
        char buf[65536];
        ssize_t k = c->ssl ? SSL_read(c->ssl, buf, sizeof buf) : recv(c->fd, buf, sizeof buf, 0);
        if (k < 0 && !c->ssl && errno == EINTR) continue;
        if (k <= 0) {
            snprintf(c->errstr, sizeof c->errstr, "%s",
                     k == 0 ? "closed by the server" : c->ssl ? "TLS read failed" : strerror(errno));
            return NULL;
        }
        redisReaderFeed(c->rd, buf, (size_t)k);
    }
}


const char *ctl_conn_error(const ctl_conn *c) { return c->errstr; }
