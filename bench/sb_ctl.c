/*
 * sb_ctl: stopbench's blocking control-plane client: dial, one command and its reply, with
 * timeouts and a reason on every failure (never exit: the caller decides the exit status and
 * still writes its JSON report). Used for AUTH, LIST.LOAD / SADD, INFO and STATUS; the
 * timed requests go through sb_resp.c's non-blocking engine instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb_ctl.h"

/* OpenSSL's err.h needs INT_MAX; <limits.h> on the include path is gateway/core/limits.h. */
#ifndef INT_MAX
#define INT_MAX __INT_MAX__
#endif
#include <openssl/err.h>
#include <openssl/ssl.h>

static int wait_fd(int fd, short ev, int64_t deadline_ns) {
    for (;;) {
        int64_t left = deadline_ns - sb_now_ns();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, (int)((left + 999999) / 1000000));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r > 0) return 1;
    }
}

int sb_dial(const char *host, const char *port, int timeout_ms, char *err, size_t errcap) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        snprintf(err, errcap, "%s:%s: %s", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            last = errno;
            close(fd);
            fd = -1;
            continue;
        }
        int w = wait_fd(fd, POLLOUT, sb_now_ns() + (int64_t)timeout_ms * 1000000);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (w <= 0) soerr = w == 0 ? ETIMEDOUT : errno;
        else getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr) {
            last = soerr;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errcap, "cannot connect to %s:%s: %s", host, port, strerror(last ? last : ECONNREFUSED));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int sb_link_tls(sb_link *l, const sb_opts *o, int timeout_ms, char *err, size_t errcap) {
    int fl = fcntl(l->fd, F_GETFL);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(l->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    fcntl(l->fd, F_SETFL, fl & ~O_NONBLOCK);
    l->ssl = tlsc_connect(o->tls_ctx, &o->tls, l->fd, o->host, err, errcap);
    fcntl(l->fd, F_SETFL, fl | O_NONBLOCK);
    return l->ssl ? 0 : -1;
}

/* SSL's answer as a socket's: WANT_* is EAGAIN, a clean close 0, anything else EPROTO. */
static ssize_t ssl_result(sb_link *l, int n) {
    if (n > 0) return n;
    int e = SSL_get_error(l->ssl, n);
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : e == SSL_ERROR_SYSCALL && errno ? errno : EPROTO;
    ERR_clear_error();
    return -1;
}

ssize_t sb_link_send(sb_link *l, const void *p, size_t n) {
    if (!l->ssl) return send(l->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return ssl_result(l, SSL_write(l->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

ssize_t sb_link_recv(sb_link *l, void *p, size_t n) {
    if (!l->ssl) return recv(l->fd, p, n, MSG_DONTWAIT);
    return ssl_result(l, SSL_read(l->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

void sb_link_close(sb_link *l) {
    if (l->ssl) SSL_free(l->ssl); /* no close_notify: the peer sees the TCP close */
    if (l->fd >= 0) close(l->fd);
    l->ssl = NULL;
    l->fd = -1;
}

int sb_send_all(sb_link *l, const char *p, size_t n, int timeout_ms, char *err, size_t errcap) {
    int64_t deadline = sb_now_ns() + (int64_t)timeout_ms * 1000000;
    int fd = l->fd;
    while (n) {
        ssize_t k = sb_link_send(l, p, n);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline) <= 0) {
                snprintf(err, errcap, "send timed out after %d ms", timeout_ms);
                return -1;
            }
            continue;
        }
        snprintf(err, errcap, "send: %s", k < 0 ? strerror(errno) : "closed");
        return -1;
    }
    return 0;
}

long sb_read_reply(sb_link *l, sb_rbuf *b, sb_reply_info *ri, int timeout_ms, char *err, size_t errcap) {
    int64_t deadline = sb_now_ns() + (int64_t)timeout_ms * 1000000;
    int fd = l->fd;
    if (!b->rd.r && sb_reader_init(&b->rd) != 0) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    b->rd.capture = b->capture;
    char in[16384];
    for (;;) {
        const sb_reply_info *cur;
        int r = sb_reader_next(&b->rd, &cur);
        if (r > 0 && sb_reader_keep(&b->rd) != 0) r = -1; /* the next call has another `in` */
        if (r < 0) {
            snprintf(err, errcap, "malformed reply: %s", sb_reader_error(&b->rd));
            return -1;
        }
        if (r > 0) {
            *ri = *cur;
            return 1;
        }
        ssize_t k = sb_link_recv(l, in, sizeof in);
        if (k > 0) {
            sb_reader_source(&b->rd, in, (size_t)k);
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w == 0) {
                snprintf(err, errcap, "no reply within %d ms", timeout_ms);
                return -1;
            }
            if (w < 0) {
                snprintf(err, errcap, "poll: %s", strerror(errno));
                return -1;
            }
            continue;
        }
        snprintf(err, errcap, "connection closed by the server%s%s", k < 0 ? ": " : "", k < 0 ? strerror(errno) : "");
        return -1;
    }
}

void sb_rbuf_free(sb_rbuf *b) {
    sb_reader_free(&b->rd);
    memset(b, 0, sizeof *b);
}

long sb_call(sb_link *l, const char *req, size_t len, sb_rbuf *b, sb_reply_info *ri, int timeout_ms, char *err,
             size_t errcap) {
    if (sb_send_all(l, req, len, timeout_ms, err, errcap) != 0) return -1;
    return sb_read_reply(l, b, ri, timeout_ms, err, errcap);
}

int sb_cmd_append(sb_cmdbuf *c, int argc, const char *const *argv, const size_t *lens) {
    size_t need = 16;
    for (int i = 0; i < argc; i++) need += 24 + (lens ? lens[i] : strlen(argv[i]));
    if (c->len + need > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + need) cap *= 2;
        char *p = realloc(c->p, cap);
        if (!p) return -1;
        c->p = p;
        c->cap = cap;
    }
    c->len += (size_t)snprintf(c->p + c->len, c->cap - c->len, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t l = lens ? lens[i] : strlen(argv[i]);
        c->len += (size_t)snprintf(c->p + c->len, c->cap - c->len, "$%zu\r\n", l);
        memcpy(c->p + c->len, argv[i], l);
        c->len += l;
        memcpy(c->p + c->len, "\r\n", 2);
        c->len += 2;
    }
    return 0;
}

void sb_cmdbuf_free(sb_cmdbuf *c) {
    free(c->p);
    memset(c, 0, sizeof *c);
}

void sb_reply_error_text(const sb_reply_info *ri, char *out, size_t cap) {
    size_t n = ri->err_len < cap - 1 ? ri->err_len : cap - 1;
    memcpy(out, ri->err_text, n);
    out[n] = 0;
}

long long sb_info_field(const char *text, size_t n, const char *key) {
    size_t kl = strlen(key);
    const char *p = text, *end = text + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > kl && !memcmp(p, key, kl) && p[kl] == ':') return strtoll(p + kl + 1, NULL, 10);
        p = nl ? nl + 1 : end;
    }
    return -1;
}
