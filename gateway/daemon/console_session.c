/*
 * console_session: the console's sessions (console_session.h). A session is a RESP connection
 * to this gateway: one end of a socketpair that server_adopt() serves as a client with the
 * browser's address, the other end here. Its commands are pipelined; replies come back in
 * order and each is handed, with the oldest waiter, to csess_hooks.deliver (console.c answers
 * the HTTP side). The AUTH secret is wiped from the send buffer as soon as it is sent; the
 * tokens when the session ends.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "clock.h"
#include "console_int.h"
#include "respjson.h"

/* ---- sessions and their RESP backends --------------------------------------------- */

static void csess_release(gateway *gw, session *s) {
    console *cs = cons(gw);
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_close(sqe, s->fd);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    sodium_memzero(s->sbuf.data, s->sbuf.cap); /* it held the HELLO ... AUTH secret */
    buf_reset(&s->sbuf);
    buf_reset(&s->rbuf);
    sodium_memzero(s->token, sizeof s->token);
    sodium_memzero(s->csrf, sizeof s->csrf);
    s->fd = -1;
    s->in_use = s->ready = s->ending = false;
    s->gen++;
    cs->nsessions--;
}

/* The session ends (logout, expiry, its RESP connection closed, a broken reply): waiting
 * requests are answered, streams closed by the sweep; the slot frees once no I/O is left. */
void csess_end(gateway *gw, session *s) {
    console *cs = cons(gw);
    if (!s->ending) {
        s->ending = true;
        s->ready = false;
        for (uint32_t k = 0; k < s->qlen; k++)
            cs->sess_up.dropped(gw, s->q[(s->qhead + k) % CONSOLE_PIPELINE_MAX]);
        s->qlen = 0;
        shutdown(s->fd, SHUT_RDWR); /* the armed receive completes; the gateway sees EOF */
    }
    if (s->inflight == 0) csess_release(gw, s);
}

void csess_arm_recv(gateway *gw, session *s) {
    if (s->recv_inflight || s->ending) return;
    size_t want = BACKEND_RECV_CHUNK;
    if (s->rbuf.cap_max - s->rbuf.len < want) want = s->rbuf.cap_max - s->rbuf.len;
    if (want == 0 || buf_reserve(&s->rbuf, want) != 0) {
        LOGW(gw, "console: session of '%s': a reply over %d bytes; session ended", s->agent,
             CONSOLE_REPLY_BYTES_MAX);
        csess_end(gw, s);
        return;
    }
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_recv(sqe, s->fd, s->rbuf.data + s->rbuf.len, s->rbuf.cap - s->rbuf.len, 0);
    cons_sqe_ud(sqe, OP_BRECV, csess_idx(cons(gw), s));
    s->recv_inflight = true;
    s->inflight++;
}

static void csess_arm_send(gateway *gw, session *s) {
    if (s->send_inflight || s->ending || s->sbuf.len == 0) return;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_send(sqe, s->fd, s->sbuf.data, s->sbuf.len, MSG_NOSIGNAL);
    cons_sqe_ud(sqe, OP_BSEND, csess_idx(cons(gw), s));
    buf_pin(&s->sbuf);
    s->send_inflight = true;
    s->inflight++;
}

/* Queue one RESP command (argv as byte strings) for w. false when the pipeline is full. */
bool csess_command(gateway *gw, session *s, waiter w, uint32_t argc, const char *const *argv,
                         const size_t *lens) {
    if (s->ending || s->qlen == CONSOLE_PIPELINE_MAX) return false;
    size_t before = s->sbuf.len;
    int rc = buf_printf(&s->sbuf, "*%u\r\n", argc);
    for (uint32_t i = 0; i < argc && rc == 0; i++) {
        rc = buf_printf(&s->sbuf, "$%zu\r\n", lens[i]);
        if (rc == 0) rc = buf_append(&s->sbuf, argv[i], lens[i]);
        if (rc == 0) rc = buf_append(&s->sbuf, "\r\n", 2);
    }
    if (rc != 0) {
        buf_truncate(&s->sbuf, before);
        return false;
    }
    s->q[(s->qhead + s->qlen) % CONSOLE_PIPELINE_MAX] = w;
    s->qlen++;
    s->last_cmd_ms = gw->now_ms;
    csess_arm_send(gw, s);
    return true;
}

session *csess_new(gateway *gw) {
    console *cs = cons(gw);
    for (uint32_t i = 0; i < CONSOLE_SESSIONS_MAX; i++) {
        session *s = &cs->sess[i];
        if (s->in_use) continue;
        uint8_t raw[TOKEN_BYTES];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(s->token, sizeof s->token, raw, sizeof raw);
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(s->csrf, sizeof s->csrf, raw, sizeof raw);
        sodium_memzero(raw, sizeof raw);
        s->in_use = true;
        s->ready = s->ending = false;
        s->qhead = s->qlen = 0;
        s->inflight = 0;
        s->recv_inflight = s->send_inflight = false;
        s->fd = -1;
        s->expires_ms = gw->now_ms + (int64_t)gw->cfg.console_session_ttl_s * 1000;
        cs->nsessions++;
        return s;
    }
    return NULL;
}

/* The session named by the request's cookie: live, signed in, not expired. Compared in
 * constant time against every slot, so timing says nothing about tokens. */
session *csess_find(gateway *gw, const http_req *r) {
    console *cs = cons(gw);
    http_str v = http_cookie(r->cookie, COOKIE_NAME);
    if (v.len != TOKEN_HEX) return NULL;
    session *found = NULL;
    for (uint32_t i = 0; i < CONSOLE_SESSIONS_MAX; i++) {
        session *s = &cs->sess[i];
        if (sodium_memcmp(s->token, v.p, TOKEN_HEX) == 0 && s->in_use && s->ready) found = s;
    }
    if (found && gw->now_ms >= found->expires_ms) {
        csess_end(gw, found);
        return NULL;
    }
    return found;
}

/* Replies arrived: each goes to the oldest waiter (RESP answers in order). */
void csess_on_recv(gateway *gw, session *s, int res) {
    s->recv_inflight = false;
    s->inflight--;
    if (res <= 0 || s->ending) {
        csess_end(gw, s);
        return;
    }
    s->rbuf.len += (size_t)res;
    size_t off = 0;
    for (;;) {
        long n = respjson_length((const char *)s->rbuf.data + off, s->rbuf.len - off);
        if (n == 0) break;
        if (n < 0 || s->qlen == 0) {
            LOGW(gw, "console: session of '%s': unexpected reply from the gateway; session ended", s->agent);
            csess_end(gw, s);
            return;
        }
        waiter w = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % CONSOLE_PIPELINE_MAX;
        s->qlen--;
        cons(gw)->sess_up.deliver(gw, s, w, (const char *)s->rbuf.data + off, (size_t)n);
        off += (size_t)n;
        if (!s->in_use || s->ending) break;
    }
    if (!s->in_use) return;
    buf_consume(&s->rbuf, off);
    if (s->ending) csess_end(gw, s);
    else csess_arm_recv(gw, s);
}

void csess_on_sent(gateway *gw, session *s, int res) {
    s->send_inflight = false;
    s->inflight--;
    buf_unpin(&s->sbuf);
    if (res <= 0) {
        csess_end(gw, s);
        return;
    }
    sodium_memzero(s->sbuf.data, (size_t)res); /* sent: the AUTH secret must not linger */
    buf_consume(&s->sbuf, (size_t)res);
    if (s->ending) csess_end(gw, s);
    else csess_arm_send(gw, s);
}

/* ---- answers from the gateway -------------------------------------------------------- */

void csess_cookie_header(gateway *gw, const session *s, char *out, size_t cap, bool clear) {
    snprintf(out, cap, "Set-Cookie: " COOKIE_NAME "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%u%s\r\n",
             clear ? "" : s->token, clear ? 0u : gw->cfg.console_session_ttl_s,
             cons(gw)->tls ? "; Secure" : "");
}

/* {"agent", "role", "csrf", "expires_at"}: what the page needs to act (the cookie is
 * HttpOnly: the CSRF token comes from here). */
void csess_w_me(gateway *gw, const session *s, buf *b) {
    buf_reset(b);
    buf_append(b, "{\"agent\":", 9);
    respjson_string(b, s->agent, strlen(s->agent));
    buf_printf(b, ",\"role\":\"%s\",\"csrf\":\"%s\",\"expires_at\":%lld,\"currency\":\"%s\"}",
               role_name((role)s->role), s->csrf,
               (long long)(clock_now_ms() + (s->expires_ms - gw->now_ms)), gw->cfg.currency);
}
