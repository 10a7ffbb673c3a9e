/*
 * sb_ctl: stopbench's blocking control-plane client (see sb_ctl.c). Every function returns
 * a failure with its reason in err; none exits.
 */
#ifndef SB_CTL_H
#define SB_CTL_H

#include <sys/types.h>

#include "sb.h"

/* A blocking connection's replies: its reader, created on the first read. */
typedef struct sb_rbuf {
    sb_reader rd;
    bool capture; /* also copy order_id and state (set before reading) */
} sb_rbuf;

typedef struct sb_cmdbuf {
    char *p;
    size_t len, cap;
} sb_cmdbuf;

/* A connected TCP socket (non-blocking, TCP_NODELAY), or -1. */
int sb_dial(const char *host, const char *port, int timeout_ms, char *err, size_t errcap);
/* TLS over a socket from sb_dial: the handshake (bounded by timeout_ms), then non-blocking
 * again. 0, or -1 with err. */
int sb_link_tls(sb_link *l, const sb_opts *o, int timeout_ms, char *err, size_t errcap);
/* send()/recv() with MSG_DONTWAIT through the link's TLS session when it has one: bytes, 0
 * (closed), or -1 with errno (EAGAIN: try again when the socket is ready). */
ssize_t sb_link_send(sb_link *l, const void *p, size_t n);
ssize_t sb_link_recv(sb_link *l, void *p, size_t n);
void sb_link_close(sb_link *l);
int sb_send_all(sb_link *l, const char *p, size_t n, int timeout_ms, char *err, size_t errcap);
/* Wait for one complete reply: 1 with it in *ri (ri->bulk valid until the next read on b),
 * or -1. */
long sb_read_reply(sb_link *l, sb_rbuf *b, sb_reply_info *ri, int timeout_ms, char *err, size_t errcap);
long sb_call(sb_link *l, const char *req, size_t len, sb_rbuf *b, sb_reply_info *ri, int timeout_ms, char *err,
             size_t errcap);
void sb_rbuf_free(sb_rbuf *b);
/* Append a command (argv with lengths, or NUL-terminated when lens is NULL). 0 or -1 (memory). */
int sb_cmd_append(sb_cmdbuf *c, int argc, const char *const *argv, const size_t *lens);
void sb_cmdbuf_free(sb_cmdbuf *c);
void sb_reply_error_text(const sb_reply_info *ri, char *out, size_t cap);
/* The value of "key:value" in an INFO text, or -1. */
long long sb_info_field(const char *text, size_t n, const char *key);

#endif
