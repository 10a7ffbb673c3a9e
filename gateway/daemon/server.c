/*
 * server: the RESP/TCP side of the loop. Every socket operation goes through io_uring:
 * a multishot accept, one receive and at most one send in flight per client, close by SQE.
 * An authenticated plain-TCP client's receive is multishot, into buffers the kernel picks
 * from a ring shared by all clients ("Provided buffers" below): armed once, it completes
 * once per arrival with nothing to submit again, where a one-shot recv costs an SQE, a
 * failed first try and a poll armed and torn down per request (issue 13).
 *
 * Ordering: replies are appended to the client's output in request order, each followed by
 * a mark saying which journal lsn must be durable before it may leave. Only the prefix of
 * marks that are durable is sent, so pipelined answers come back in order and no answer
 * ever promises something the disk does not hold yet.
 *
 * TLS clients (accepted on [gateway] tls_listen) differ only at the byte boundary: receives
 * land in their tls_conn and are decrypted into `in`; released output is encrypted and the
 * ciphertext sent (the "TLS" section at the end, tls.h). Everything between is shared.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check_ahead.h"
#include "clock.h"
#include "gateway.h"
#include "listener.h"
#include "mem.h"
#include "ring.h"

#define OUT_SOFT_LIMIT (1024 * 1024) /* stop reading from a client that does not read its replies */

static client *client_at(gateway *gw, uint32_t idx, uint32_t gen) {
    if (idx >= gw->srv.max) return NULL;
    client *c = &gw->srv.clients[idx];
    return (c->in_use && (c->gen & 0xffffffu) == gen) ? c : NULL;
}

client *server_client(gateway *gw, uint32_t idx, uint32_t gen) { return client_at(gw, idx, gen); }

static int rbuf_setup(gateway *gw, char *err, size_t errcap);

int server_init(gateway *gw, char *err, size_t errcap) {
    server *s = &gw->srv;
    memset(s, 0, sizeof *s);
    s->max = gw->cfg.max_clients;
    s->clients = calloc(s->max, sizeof *s->clients);
    s->free_list = calloc(s->max, sizeof *s->free_list);
    s->marks_pool = mem_reserve((size_t)s->max * CLIENT_REPLY_MARKS_MAX * sizeof *s->marks_pool);
    if (!s->clients || !s->free_list || !s->marks_pool) {
        snprintf(err, errcap, "out of memory for %u clients", s->max);
        return -1;
    }
    for (uint32_t i = 0; i < s->max; i++) s->free_list[s->nfree++] = s->max - 1 - i;
    if (rbuf_setup(gw, err, errcap) != 0) return -1;
    s->tls_listen_fd = -1;
    s->listen_fd = listener_open(&gw->cfg.listen, SOCK_STREAM, err, errcap);
    if (s->listen_fd < 0) return -1;
    if (gw->tls.ctx) {
        s->tls_listen_fd = listener_open(&gw->cfg.tls_listen, SOCK_STREAM, err, errcap);
        if (s->tls_listen_fd < 0) return -1;
    }
    s->accepting = true;
    return 0;
}

/* UD_ACCEPT's index says which listener: ACCEPT_PLAIN or ACCEPT_TLS. */
enum { ACCEPT_PLAIN = 0, ACCEPT_TLS = 1 };

static void arm_accept_on(gateway *gw, int fd, uint32_t which) {
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(UD_ACCEPT, 0, which));
}

void server_arm_accept(gateway *gw) {
    arm_accept_on(gw, gw->srv.listen_fd, ACCEPT_PLAIN);
    if (gw->srv.tls_listen_fd >= 0) arm_accept_on(gw, gw->srv.tls_listen_fd, ACCEPT_TLS);
}

static void arm_recv_tls(gateway *gw, client *c);
static void arm_send_tls(gateway *gw, client *c);
static bool tls_flushed(gateway *gw, client *c);
static int on_recv_tls(gateway *gw, client *c, size_t n);

/* Input that cannot be held: one command larger than the query buffer (before AUTH, the
 * small pre-auth cap). Nothing sane can follow: answer and close. */
static void input_toobig(gateway *gw, client *c) {
    if (c->admitted) {
        resp_w_error(&c->out, "ERR TOOBIG", "request exceeds the %d-byte query buffer", CLIENT_QUERY_BYTES_MAX);
    } else {
        gw->login.st.preauth_toobig++;
        resp_w_error(&c->out, "ERR TOOBIG", "request exceeds the %d bytes allowed before AUTH",
                     CLIENT_PREAUTH_BYTES_MAX);
    }
    server_reply_done(gw, c, 0, 0);
    c->close_after_flush = true;
}

/* ---- Provided buffers ----------------------------------------------------------------------
 * One buffer ring (group RBUF_GROUP) of [gateway] recv_buffers x RECV_BUF_BYTES, reserved at
 * start. A multishot receive completes with the id of the buffer the kernel filled; the bytes
 * are copied into the client's `in` and the buffer goes straight back to the ring. When `in`
 * cannot take them (a command waiting for journal room, an AUTH being verified, output to
 * drain, `in` full), the buffer is held on the client's list, in arrival order, the receive is
 * cancelled (the socket keeps the rest) and nothing is read past the held bytes until they
 * are copied. An empty ring ends a multishot receive with ENOBUFS and no byte taken: that
 * client's next receive is a plain one into `in`, then multishot again. */
enum { RBUF_GROUP = 1 };

static int rbuf_setup(gateway *gw, char *err, size_t errcap) {
    server *s = &gw->srv;
    uint32_t n = gw->cfg.recv_buffers;
    if (n == 0) return 0;
    assert(n <= RECV_BUFS_MAX && (n & (n - 1)) == 0);
    _Static_assert(RECV_BUFS_MAX <= 65535 && RECV_BUF_BYTES <= 65535, "ids and lengths are uint16_t");
    struct io_uring_buf_ring *br = mem_reserve((size_t)n * sizeof(struct io_uring_buf));
    s->rbufs = mem_reserve((size_t)n * RECV_BUF_BYTES);
    s->rbuf_next = calloc(n, sizeof *s->rbuf_next);
    s->rbuf_len = calloc(n, sizeof *s->rbuf_len);
    if (!br || !s->rbufs || !s->rbuf_next || !s->rbuf_len) {
        snprintf(err, errcap, "out of memory for %u receive buffers", n);
        return -1;
    }
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = n, .bgid = RBUF_GROUP};
    int rc = io_uring_register_buf_ring(&gw->ring, &reg, 0);
    if (rc != 0) {
        /* Kernels before 5.19: every client keeps one plain recv per read. */
        LOGW(gw, "io_uring: no provided-buffer ring (%s): one recv per read", strerror(-rc));
        mem_release(br, (size_t)n * sizeof(struct io_uring_buf));
        mem_release(s->rbufs, (size_t)n * RECV_BUF_BYTES);
        free(s->rbuf_next);
        free(s->rbuf_len);
        s->rbufs = NULL;
        s->rbuf_next = s->rbuf_len = NULL;
        return 0;
    }
    for (uint32_t i = 0; i < n; i++)
        io_uring_buf_ring_add(br, s->rbufs + (size_t)i * RECV_BUF_BYTES, RECV_BUF_BYTES, (unsigned short)i,
                              io_uring_buf_ring_mask(n), (int)i);
    io_uring_buf_ring_advance(br, (int)n);
    s->rbr = br;
    s->nrbufs = n;
    return 0;
}

/* After the ring is gone (io_uring_queue_exit): the kernel reads no buffer any more. */
static void rbuf_free(server *s) {
    if (!s->rbr) return;
    mem_release(s->rbr, (size_t)s->nrbufs * sizeof(struct io_uring_buf));
    mem_release(s->rbufs, (size_t)s->nrbufs * RECV_BUF_BYTES);
    free(s->rbuf_next);
    free(s->rbuf_len);
    s->rbr = NULL;
    s->rbufs = NULL;
    s->rbuf_next = s->rbuf_len = NULL;
    s->nrbufs = 0;
}

void server_close(gateway *gw) {
    server *s = &gw->srv;
    for (uint32_t i = 0; s->clients && i < s->max; i++) {
        client *c = &s->clients[i];
        if (!c->in_use) continue;
        close(c->fd);
        buf_free(&c->in);
        buf_free(&c->out);
        if (c->tls) tls_conn_free(&gw->tls, c->tls);
    }
    if (s->listen_fd >= 0) close(s->listen_fd);
    if (s->tls_listen_fd >= 0) close(s->tls_listen_fd);
    rbuf_free(s);
    size_t marks_bytes = (size_t)s->max * CLIENT_REPLY_MARKS_MAX * sizeof *s->marks_pool;
    if (s->marks_pool) mem_release(s->marks_pool, marks_bytes);
    free(s->clients);
    free(s->free_list);
    memset(s, 0, sizeof *s);
    s->listen_fd = s->tls_listen_fd = -1;
}

static void rbuf_recycle(gateway *gw, uint16_t bid) {
    server *s = &gw->srv;
    assert(bid < s->nrbufs);
    io_uring_buf_ring_add(s->rbr, s->rbufs + (size_t)bid * RECV_BUF_BYTES, RECV_BUF_BYTES, bid,
                          io_uring_buf_ring_mask(s->nrbufs), 0);
    io_uring_buf_ring_advance(s->rbr, 1);
}

static void held_push(gateway *gw, client *c, uint16_t bid, uint32_t len) {
    server *s = &gw->srv;
    assert(bid < s->nrbufs && len > 0 && len <= RECV_BUF_BYTES);
    s->rbuf_len[bid] = (uint16_t)len;
    s->rbuf_next[bid] = 0;
    if (c->held_tail) s->rbuf_next[c->held_tail - 1] = (uint16_t)(bid + 1);
    else c->held_head = (uint16_t)(bid + 1);
    c->held_tail = (uint16_t)(bid + 1);
    s->rbufs_held++;
}

static void held_pop(gateway *gw, client *c) {
    server *s = &gw->srv;
    uint16_t bid = (uint16_t)(c->held_head - 1);
    c->held_head = s->rbuf_next[bid];
    if (!c->held_head) c->held_tail = 0;
    c->held_off = 0;
    s->rbufs_held--;
    rbuf_recycle(gw, bid);
}

/* A client going away gives back what it holds. */
static void held_free(gateway *gw, client *c) {
    while (c->held_head) held_pop(gw, c);
}

/* Copy held bytes into c->in while it has room: bytes moved, or -1 when `in` cannot grow. */
static long held_fill(gateway *gw, client *c) {
    long moved = 0;
    while (c->held_head) {
        uint16_t bid = (uint16_t)(c->held_head - 1);
        size_t avail = gw->srv.rbuf_len[bid] - c->held_off, room = c->in.cap_max - c->in.len;
        size_t n = avail < room ? avail : room;
        if (n == 0) break;
        if (buf_append(&c->in, gw->srv.rbufs + (size_t)bid * RECV_BUF_BYTES + c->held_off, n) != 0) return -1;
        moved += (long)n;
        c->held_off = (uint16_t)(c->held_off + n);
        if (c->held_off < gw->srv.rbuf_len[bid]) break;
        held_pop(gw, c);
    }
    return moved;
}

/* Stop the client's multishot receive (the final completion says ECANCELED). */
static void recv_cancel(gateway *gw, client *c) {
    if (!c->recv_multi || c->recv_cancelled) return;
    c->recv_cancelled = true;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_cancel64(sqe, ud_make(UD_RECV, c->gen, c->idx), 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
}

static void arm_recv_multi(gateway *gw, client *c) {
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RBUF_GROUP;
    io_uring_sqe_set_data64(sqe, ud_make(UD_RECV, c->gen, c->idx));
    c->recv_inflight = true;
    c->recv_multi = true;
    c->ops_inflight++;
}

static void process_input(gateway *gw, client *c);

/* Run the held bytes through the parser while the client may go on. */
static void held_pump(gateway *gw, client *c) {
    while (c->held_head && !c->closing && !c->close_after_flush && !c->blocked && !c->auth_pending &&
           !c->input_held) {
        long n = held_fill(gw, c);
        if (n < 0 || (n == 0 && c->in.len == c->in.cap_max)) {
            input_toobig(gw, c); /* one command larger than the query buffer */
            return;
        }
        if (n == 0) return;
        process_input(gw, c);
    }
}

static void arm_recv(gateway *gw, client *c) {
    if (c->closing) return;
    if (c->held_head) {
        held_pump(gw, c);
        /* Nothing is read past bytes still held: they go first. */
        if (c->held_head || c->closing || c->close_after_flush) {
            recv_cancel(gw, c);
            return;
        }
    }
    /* A pipeline behind an AUTH being verified waits: on the plain port in the pre-auth buffer
     * while it has room (a receive stays armed, so a client that goes away is seen and its
     * queued KDF cancelled), then in the socket; over TLS in OpenSSL and the socket. Reading
     * goes on with the AUTH's answer (server_resume). Output: resumes when it drains; before
     * AUTH the output may not grow past the input cap. */
    bool paused = c->blocked || gw->phase == PHASE_DRAINING || (c->auth_pending && c->tls) ||
                  c->out.len > (c->admitted ? OUT_SOFT_LIMIT : CLIENT_PREAUTH_BYTES_MAX);
    if (c->recv_inflight) {
        /* A multishot receive would read on while this client may not. */
        if (paused || !c->admitted) recv_cancel(gw, c);
        return;
    }
    if (paused) return;
    if (c->tls) {
        arm_recv_tls(gw, c);
        return;
    }
    if (gw->srv.rbr && !gw->srv.recv_multi_off && c->admitted && !c->recv_nobufs) {
        if (c->in.len < c->in.cap_max) arm_recv_multi(gw, c);
        else if (!c->auth_pending) input_toobig(gw, c);
        return;
    }
    /* Idle clients are most clients: start with a small receive and go to full chunks once
     * a receive fills what it was given (10,000 idle connections: ~1 KiB each, not 64). */
    size_t want = c->recv_grown ? CLIENT_RECV_CHUNK : CLIENT_RECV_FIRST;
    size_t room = c->in.cap_max - c->in.len;
    if (want > room) want = room; /* the last receive before the cap fills it exactly */
    /* While its AUTH is verified the client's commands wait (login.h), but a receive stays
     * armed while there is room, so a client that goes away is seen and its KDF cancelled. */
    if (want == 0 && c->auth_pending) return;
    if (want == 0 || buf_reserve(&c->in, want) != 0) {
        input_toobig(gw, c);
        return;
    }
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    c->recv_asked = (uint32_t)(c->in.cap - c->in.len);
    assert(c->in.len + c->recv_asked <= c->in.cap_max);
    io_uring_prep_recv(sqe, c->fd, c->in.data + c->in.len, c->recv_asked, 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_RECV, c->gen, c->idx));
    c->recv_inflight = true;
    c->ops_inflight++;
}

static void arm_send(gateway *gw, client *c) {
    if (c->send_inflight || c->fd < 0) return;
    if (c->tls) {
        arm_send_tls(gw, c);
        return;
    }
    uint64_t n = c->sendable_abs - c->out_base;
    if (n == 0) return;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_send(sqe, c->fd, c->out.data, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(UD_SEND, c->gen, c->idx));
    buf_pin(&c->out); /* replies appended meanwhile must not free what the kernel reads */
    c->send_inflight = true;
    c->ops_inflight++;
}

static void client_release(gateway *gw, client *c) {
    assert(!c->recv_inflight);
    held_free(gw, c);
    lists_client_gone(gw, c);
    login_conn_closed(gw, c);
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    buf_free(&c->in);
    buf_free(&c->out);
    if (c->tls) tls_conn_free(&gw->tls, c->tls);
    uint32_t idx = c->idx, gen = c->gen + 1;
    memset(c, 0, sizeof *c);
    c->idx = idx;
    c->gen = gen;
    c->fd = -1;
    gw->srv.free_list[gw->srv.nfree++] = idx;
    gw->srv.count--;
}

static void client_close(gateway *gw, client *c) {
    if (!c->closing) {
        c->closing = true;
        if (c->recv_inflight) {
            struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
            io_uring_prep_cancel64(sqe, ud_make(UD_RECV, c->gen, c->idx), 0);
            io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
        }
    }
    if (c->ops_inflight == 0 && !c->waiting_listed && !c->blocked) client_release(gw, c);
}

static bool marks_pending(const client *c) { return c->marks_len > 0; }

/* Advance what may be sent: every leading mark whose lsn is durable. */
static void release_marks(gateway *gw, client *c) {
    int64_t now_ns = 0;
    while (c->marks_len) {
        reply_mark *m = &c->marks[c->marks_head];
        if (m->lsn > commit_acked_lsn(&gw->commit)) break;
        assert(m->end >= c->sendable_abs && m->end <= c->out_base + c->out.len);
        c->sendable_abs = m->end;
        if (m->t_recv_ns) {
            if (!now_ns) now_ns = clock_mono_ns();
            metrics_observe_stop_us(&gw->m, (uint64_t)(now_ns - m->t_recv_ns) / 1000);
        }
        c->marks_head = (c->marks_head + 1) % c->marks_cap;
        c->marks_len--;
    }
}

/* Where the reply being written began: every reply ends in server_reply_done(), so that is
 * the end of the last mark, or what may be sent when no mark is pending. */
static uint64_t reply_start(const client *c) {
    return c->marks_len ? c->marks[(c->marks_head + c->marks_len - 1) % c->marks_cap].end : c->sendable_abs;
}

/* The reply written since start is replaced by an error (a reply is refused whole). */
static void replace_reply(gateway *gw, client *c, uint64_t start, const char *code, const char *why) {
    assert(start >= c->out_base && start <= c->out_base + c->out.len);
    buf_truncate(&c->out, (size_t)(start - c->out_base));
    gw->m.errors++;
    resp_w_error(&c->out, code, "%s", why);
    if (c->out.overflowed) {
        /* Not even the error fits (cannot happen while process_input stops at half the
         * buffer): end the connection rather than let replies and requests fall out of step. */
        buf_truncate(&c->out, (size_t)(start - c->out_base));
        c->close_after_flush = true;
    }
}

/* The reason every answer that depends on a record the journal cannot write gets. */
static void journal_busy_why(const gateway *gw, char *why, size_t cap) {
    engine_answer a;
    const char *code;
    if (engine_journal_failing(gw, &a)) snprintf(why, cap, "%s", a.why);
    else if (cluster_failing(gw) && cluster_write_refused(gw, &code, why, cap)) return;
    else snprintf(why, cap, "journal cannot write; not acknowledged, retry with the same request_id");
}

void server_reply_done(gateway *gw, client *c, uint64_t lsn, int64_t t_recv_ns) {
    if (c->out.overflowed) {
        char why[200];
        snprintf(why, sizeof why, "reply does not fit the %d-byte output buffer (%zu bytes of earlier replies "
                 "unread); ask for less",
                 CLIENT_OUTPUT_BYTES_MAX, (size_t)(reply_start(c) - c->out_base));
        replace_reply(gw, c, reply_start(c), "ERR TOOBIG", why);
        lsn = 0;
        t_recv_ns = 0;
    } else if (lsn > commit_acked_lsn(&gw->commit) && (gw->j.last_error || cluster_failing(gw))) {
        /* It would wait for a write that keeps failing (disk, or the cluster log): answer now
         * that it is not taken. The record may still become durable; a retry with the same
         * request_id then says DUPLICATE with the same order, else it is accepted afresh. */
        char why[256];
        journal_busy_why(gw, why, sizeof why);
        replace_reply(gw, c, reply_start(c), "ERR BUSY", why);
        lsn = 0;
        t_recv_ns = 0;
    }
    uint64_t end = c->out_base + c->out.len;
    assert(end >= c->sendable_abs && c->marks_cap == CLIENT_REPLY_MARKS_MAX && c->marks_len <= c->marks_cap);
    if (lsn <= commit_acked_lsn(&gw->commit) && !marks_pending(c)) {
        c->sendable_abs = end;
        if (t_recv_ns) metrics_observe_stop_us(&gw->m, (uint64_t)(clock_mono_ns() - t_recv_ns) / 1000);
        return;
    }
    if (c->marks_len == c->marks_cap) {
        /* Full: this reply joins the newest mark and leaves with it, once both lsns are
         * durable - later, never earlier, than its own (its latency sample is not kept). */
        reply_mark *last = &c->marks[(c->marks_head + c->marks_len - 1) % c->marks_cap];
        assert(end >= last->end && c->waiting_listed);
        last->end = end;
        if (lsn > last->lsn) last->lsn = lsn;
        return;
    }
    c->marks[(c->marks_head + c->marks_len) % c->marks_cap] = (reply_mark){end, lsn, t_recv_ns};
    c->marks_len++;
    if (!c->waiting_listed) {
        c->waiting_listed = true;
        c->next_waiting = gw->srv.waiting_head;
        gw->srv.waiting_head = c->idx + 1;
    }
}

/* Parse and run what the client sent. Stops at an incomplete command, a command that must
 * wait for journal room (the client is then blocked until the next durable batch), or a
 * protocol error (answered, then the connection closes). */
static void process_input(gateway *gw, client *c) {
    size_t off = 0;
    c->input_held = false;
    /* A skip's input starts inside the command being skipped: look ahead once it is gone. */
    check_ahead_pos ah = {.stopped = true};
    if (!c->skipping) check_ahead(gw, &ah, (const char *)c->in.data, c->in.len);
    while (!c->closing && !c->close_after_flush && !c->auth_pending) {
        if (c->skipping) {
            int done;
            long used = resp_skip_feed(&c->skip, (char *)c->in.data + off, c->in.len - off, &done);
            if (used < 0) {
                gw->m.protocol_errors++;
                resp_w_error(&c->out, "ERR SYNTAX", "protocol error inside an oversized command");
                server_reply_done(gw, c, 0, 0);
                c->close_after_flush = true;
                break;
            }
            off += (size_t)used;
            if (!done) break;
            c->skipping = false;
            continue;
        }
        size_t used = 0;
        resp_status st = resp_parse((char *)c->in.data + off, c->in.len - off, gw->cmd, &used, &c->skip);
        if (st == RESP_INCOMPLETE) break;
        if (st == RESP_PROTO) {
            gw->m.protocol_errors++;
            resp_w_error(&c->out, "ERR SYNTAX", "protocol error: %s", gw->cmd->error);
            server_reply_done(gw, c, 0, 0);
            c->close_after_flush = true;
            break;
        }
        if (st == RESP_TOOBIG) {
            gw->m.errors++;
            resp_w_error(&c->out, "ERR TOOBIG", "%s (limits: %d arguments, %d bytes per argument)", gw->cmd->error,
                         RESP_ARGS_MAX, RESP_BULK_BYTES_MAX);
            server_reply_done(gw, c, 0, 0);
            off += used;
            c->skipping = c->skip.bytes_left > 0 || c->skip.args_left > 0;
            continue;
        }
        if (gw->cmd->argc == 0) {
            off += used;
            continue;
        }
        if (!commands_dispatch(gw, c, gw->cmd, clock_mono_ns())) {
            c->blocked = true;
            c->next_blocked = gw->srv.blocked_head;
            gw->srv.blocked_head = c->idx + 1;
            break;
        }
        off += used;
        check_ahead_step(gw, &ah, (const char *)c->in.data, c->in.len, off);
        if (c->out.len > CLIENT_OUTPUT_BYTES_MAX / 2) {
            /* Let the client read first; after_io() resumes once the output has drained,
             * whether or not more input arrives. */
            c->input_held = off < c->in.len;
            break;
        }
    }
    buf_consume(&c->in, off);
}

static void after_io(gateway *gw, client *c) {
    if (c->input_held && !c->blocked && !c->closing && !c->close_after_flush &&
        c->out.len <= CLIENT_OUTPUT_BYTES_MAX / 2)
        process_input(gw, c);
    arm_send(gw, c);
    if (c->close_after_flush && !c->send_inflight && c->sendable_abs == c->out_base + c->out.len &&
        !marks_pending(c) && (!c->tls || tls_flushed(gw, c))) {
        client_close(gw, c);
        return;
    }
    if (c->closing) {
        client_close(gw, c);
        return;
    }
    if (!c->close_after_flush) {
        arm_recv(gw, c);
        /* arm_recv may have run held input, or queued a final error (query buffer full):
         * send it now, since with no receive armed nothing else would wake this client. */
        arm_send(gw, c);
    }
    if (c->close_after_flush) recv_cancel(gw, c); /* nothing more is read from it */
}

/* Refuse a just accepted connection: one static line, then close (linked, no state kept). */
static void refuse_conn(gateway *gw, int fd, const char *msg, size_t len) {
    gw->m.connections_rejected++;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_send(sqe, fd, msg, len, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    sqe = ring_sqe(&gw->ring);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
}

/* The peer's address (one syscall per connection, not per request); 0 when unknown. */
static void peer_of(int fd, uint32_t *addr, uint16_t *port) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    *addr = 0;
    *port = 0;
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) == 0 && sa.sin_family == AF_INET) {
        *addr = sa.sin_addr.s_addr;
        *port = ntohs(sa.sin_port);
    }
}

/* A new client starts unadmitted: small input cap, AUTH deadline (login.h). */
static void admission_start(gateway *gw, client *c) {
    buf_init(&c->in, CLIENT_PREAUTH_BYTES_MAX);
    if (gw->cfg.auth_timeout_s) c->auth_deadline_ms = gw->now_ms + (int64_t)gw->cfg.auth_timeout_s * 1000;
}

/* A new client on fd (admitted by login_conn_open already): its slot, reading at once. */
static void client_open(gateway *gw, int fd, tls_conn *tc, uint32_t addr, uint16_t port) {
    uint32_t idx = gw->srv.free_list[--gw->srv.nfree];
    client *c = &gw->srv.clients[idx];
    /* The free list is a stack: a freed slot is the next one used, so the slots ever used
     * stay as few as the most clients connected at once, and the sweeps need go no further. */
    if (idx >= gw->srv.hwm) gw->srv.hwm = idx + 1;
    uint32_t gen = (c->gen + 1) & 0xffffffu;
    memset(c, 0, sizeof *c);
    c->idx = idx;
    c->gen = gen;
    c->fd = fd;
    c->in_use = true;
    c->marks = gw->srv.marks_pool + (size_t)idx * CLIENT_REPLY_MARKS_MAX;
    c->marks_cap = CLIENT_REPLY_MARKS_MAX;
    c->proto = 2;
    c->tls = tc;
    c->addr = addr;
    c->port = port;
    c->id = ++gw->srv.next_client_id;
    c->created_ms = gw->now_ms;
    admission_start(gw, c);
    buf_init(&c->out, CLIENT_OUTPUT_BYTES_MAX);
    c->last_active_ms = gw->now_ms;
    gw->srv.count++;
    gw->m.connections_total++;
    arm_recv(gw, c);
}

static void on_accept(gateway *gw, int res, uint32_t flags, uint32_t which) {
    if (!(flags & IORING_CQE_F_MORE) && gw->srv.accepting)
        arm_accept_on(gw, which == ACCEPT_TLS ? gw->srv.tls_listen_fd : gw->srv.listen_fd, which);
    if (res < 0) {
        if (res != -ECANCELED) LOGW(gw, "accept: %s", strerror(-res));
        return;
    }
    tls_conn *tc = NULL;
    if (which == ACCEPT_TLS && gw->srv.accepting && gw->srv.nfree > 0) tc = tls_conn_new(&gw->tls, gw->now_ms);
    if (which == ACCEPT_TLS && !tc) {
        /* A plaintext "-ERR BUSY" would be garbage to a TLS client: just close. */
        gw->m.connections_rejected++;
        struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
        io_uring_prep_close(sqe, res);
        io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
        return;
    }
    if (!gw->srv.accepting || gw->srv.nfree == 0) {
        static const char msg[] = "-ERR BUSY max number of clients reached\r\n";
        refuse_conn(gw, res, msg, sizeof msg - 1);
        return;
    }
    uint32_t addr;
    uint16_t port;
    peer_of(res, &addr, &port);
    if (!login_conn_open(gw, addr)) {
        static const char msg[] = "-ERR BUSY too many connections from your address (max_clients_per_address)\r\n";
        if (tc) tls_conn_free(&gw->tls, tc);
        refuse_conn(gw, res, msg, sizeof msg - 1);
        return;
    }
    int one = 1;
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    client_open(gw, res, tc, addr, port);
}

int server_adopt(gateway *gw, int fd, uint32_t addr, uint16_t port) {
    if (!gw->srv.accepting || gw->srv.nfree == 0) return -EBUSY;
    if (!login_conn_open(gw, addr)) return -EMFILE;
    client_open(gw, fd, NULL, addr, port);
    return 0;
}

/* A completion of c's multishot receive: bytes in a provided buffer (more may follow), or
 * its end (F_MORE clear): an empty ring, our cancel, end of stream or an error. */
static void on_recv_multi(gateway *gw, client *c, int res, uint32_t flags) {
    if (!(flags & IORING_CQE_F_MORE)) {
        c->ops_inflight--;
        c->recv_inflight = c->recv_multi = c->recv_cancelled = false;
    }
    if (res > 0) {
        assert(flags & IORING_CQE_F_BUFFER);
        uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
        if (c->closing) {
            rbuf_recycle(gw, bid);
        } else {
            held_push(gw, c, bid, (uint32_t)res);
            c->last_active_ms = gw->now_ms;
        }
    } else if (res == -ENOBUFS) {
        gw->srv.recv_nobufs++; /* no byte was taken: a plain receive reads on */
        c->recv_nobufs = true;
    } else if (res == -EINVAL && !c->closing) {
        /* A kernel with buffer rings but no multishot receive (5.19): plain receives. */
        LOGW(gw, "io_uring: multishot receive refused (%s): one recv per read", strerror(-res));
        gw->srv.recv_multi_off = true;
    } else if (res != -ECANCELED || c->closing) {
        client_close(gw, c); /* end of stream, an error, or the cancel of a close */
        return;
    }
    after_io(gw, c);
}

void server_on_cqe(gateway *gw, unsigned kind, uint32_t aux, uint32_t idx, int res, uint32_t flags) {
    if (kind == UD_ACCEPT) {
        on_accept(gw, res, flags, idx);
        return;
    }
    client *c = client_at(gw, idx, aux);
    if (!c) {
        /* Cannot happen (a client is released only once its receive has ended); the buffer
         * would be lost to the ring otherwise. */
        if (kind == UD_RECV && (flags & IORING_CQE_F_BUFFER)) rbuf_recycle(gw, (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT));
        return;
    }
    if (kind == UD_RECV && c->recv_multi) {
        on_recv_multi(gw, c, res, flags);
        return;
    }
    c->ops_inflight--;
    if (kind == UD_RECV) {
        c->recv_inflight = false;
        c->recv_nobufs = false; /* the plain receive after an empty ring: multishot again next */
        if (res <= 0) {
            if (!c->closing) client_close(gw, c);
            else client_close(gw, c);
            return;
        }
        if (c->tls) {
            if (on_recv_tls(gw, c, (size_t)res) != 0) return;
        } else {
            c->in.len += (size_t)res;
            if ((uint32_t)res == c->recv_asked) c->recv_grown = true;
        }
        c->last_active_ms = gw->now_ms;
        if (!c->closing && !c->blocked) process_input(gw, c);
    } else if (kind == UD_SEND) {
        c->send_inflight = false;
        if (!c->tls) buf_unpin(&c->out);
        if (res < 0) {
            client_close(gw, c);
            return;
        }
        if (c->tls) {
            tls_on_sent(c->tls, (size_t)res);
            if (tls_stalled(c->tls) && !c->recv_inflight && !c->closing) {
                size_t had = c->in.len;
                if (on_recv_tls(gw, c, 0) != 0) return;
                if (c->in.len > had && !c->blocked) process_input(gw, c);
            }
        } else {
            buf_consume(&c->out, (size_t)res);
            c->out_base += (uint64_t)res;
        }
    }
    after_io(gw, c);
}

void server_on_durable(gateway *gw, uint64_t durable_lsn) {
    (void)durable_lsn;
    uint32_t *link = &gw->srv.waiting_head;
    while (*link) {
        client *c = &gw->srv.clients[*link - 1];
        release_marks(gw, c);
        if (!marks_pending(c)) {
            *link = c->next_waiting;
            c->waiting_listed = false;
        } else {
            link = &c->next_waiting;
        }
        after_io(gw, c);
    }
    /* Clients that waited for journal room retry their command now. */
    uint32_t b = gw->srv.blocked_head;
    gw->srv.blocked_head = 0;
    while (b) {
        client *c = &gw->srv.clients[b - 1];
        b = c->next_blocked;
        c->blocked = false;
        if (!c->closing) process_input(gw, c);
        after_io(gw, c);
    }
}

/* Rewrite the unsent tail of c's output: every pending reply that waits for a record not
 * yet durable becomes ERR BUSY, the others keep their bytes; order is kept. */
static void fail_pending_replies(gateway *gw, client *c, const char *code, const char *why) {
    uint64_t start = c->sendable_abs, old_end = c->out_base + c->out.len;
    size_t tail_len = (size_t)(old_end - start);
    uint8_t *tail = malloc(tail_len ? tail_len : 1); /* once per client per disk failure */
    if (!tail) {
        c->close_after_flush = true;
        return;
    }
    memcpy(tail, c->out.data + (start - c->out_base), tail_len);
    buf_truncate(&c->out, (size_t)(start - c->out_base));
    uint64_t seg = start;
    for (uint32_t i = 0; i < c->marks_len; i++) {
        reply_mark *m = &c->marks[(c->marks_head + i) % c->marks_cap];
        if (m->lsn > commit_acked_lsn(&gw->commit)) {
            gw->m.errors++;
            resp_w_error(&c->out, code, "%s", why);
            m->lsn = 0;
            m->t_recv_ns = 0;
        } else {
            buf_append(&c->out, tail + (seg - start), (size_t)(m->end - seg));
        }
        seg = m->end;
        m->end = c->out_base + c->out.len;
    }
    buf_append(&c->out, tail + (seg - start), (size_t)(old_end - seg)); /* a reply being written */
    free(tail);
    if (c->out.overflowed) c->close_after_flush = true; /* cannot happen: errors are short */
}

void server_fail_unacked(gateway *gw, const char *code, const char *why) {
    for (uint32_t link = gw->srv.waiting_head; link; link = gw->srv.clients[link - 1].next_waiting) {
        client *c = &gw->srv.clients[link - 1];
        if (!c->closing) fail_pending_replies(gw, c, code, why);
    }
    /* The rewritten replies have lsn 0 now: what leads may go. */
    server_on_durable(gw, commit_acked_lsn(&gw->commit));
}

void server_on_journal_failed(gateway *gw) {
    char why[256];
    journal_busy_why(gw, why, sizeof why);
    server_fail_unacked(gw, "ERR BUSY", why);
    udp_on_journal_failed(gw);
    dpdk_on_journal_failed(gw);
}

void server_resume(gateway *gw, client *c) {
    if (!c->closing && !c->blocked) process_input(gw, c);
    after_io(gw, c);
}

void server_kick_all(gateway *gw) {
    for (uint32_t i = 0; i < gw->srv.hwm; i++) {
        client *c = &gw->srv.clients[i];
        if (c->in_use) after_io(gw, c);
    }
}

void server_stop_accepting(gateway *gw) {
    if (!gw->srv.accepting) return;
    gw->srv.accepting = false;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_cancel64(sqe, ud_make(UD_ACCEPT, 0, ACCEPT_PLAIN), 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    if (gw->srv.tls_listen_fd >= 0) {
        sqe = ring_sqe(&gw->ring);
        io_uring_prep_cancel64(sqe, ud_make(UD_ACCEPT, 0, ACCEPT_TLS), 0);
        io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    }
}

bool server_drained(gateway *gw) {
    for (uint32_t i = 0; i < gw->srv.hwm; i++) {
        client *c = &gw->srv.clients[i];
        if (!c->in_use) continue;
        if (marks_pending(c) || c->send_inflight || c->sendable_abs > c->out_base) {
            /* TLS output is dropped lazily: what is encrypted and sent counts as drained. */
            if (!c->tls || marks_pending(c) || c->send_inflight || !tls_flushed(gw, c)) return false;
        }
    }
    return true;
}

void server_kill(gateway *gw, client *c) {
    assert(c->in_use);
    if (!c->closing) client_close(gw, c);
}

void server_reap_idle(gateway *gw) {
    uint32_t limit_s = gw->cfg.idle_timeout_s;
    if (gw->now_ms < gw->srv.next_reap_ms) return;
    gw->srv.next_reap_ms = gw->now_ms + 1000;
    login_tick(gw);
    if (limit_s == 0 && gw->cfg.auth_timeout_s == 0) return;
    int64_t cutoff = limit_s ? gw->now_ms - (int64_t)limit_s * 1000 : INT64_MIN;
    /* Up to the highest slot ever used (the free list hands out low slots first), not all
     * max_clients of them: 5 MiB of client table every second, mostly cold (issue 13). */
    for (uint32_t i = 0; i < gw->srv.hwm; i++) {
        client *c = &gw->srv.clients[i];
        if (!c->in_use || c->closing) continue;
        /* Bytes do not buy time before AUTH (slowloris): only the deadline counts. An AUTH
         * being verified is the gateway's delay, not the client's: its answer decides. */
        if (login_deadline_passed(gw, c) && !c->auth_pending) {
            gw->login.st.deadline_closed++;
            client_close(gw, c);
            continue;
        }
        /* A client still owed a durable reply, or the answer to its AUTH (Argon2id on the
         * worker threads can take longer than idle_timeout on a busy host), is not idle: it
         * is waiting on us. */
        if (marks_pending(c) || c->blocked || c->auth_pending) continue;
        if (c->last_active_ms >= cutoff) continue;
        gw->m.idle_closed++;
        client_close(gw, c);
    }
}

/* ---- TLS (tls.h): the byte boundary of a TLS client; the rest of this file is shared ---- */

static void arm_recv_tls(gateway *gw, client *c) {
    if (tls_stalled(c->tls)) return; /* resumed when a send completes (server_on_cqe) */
    if (tls_plain_waiting(c->tls)) {
        /* Input OpenSSL holds waits for room, as bytes in the socket do on the plain port: a
         * pipeline behind an AUTH waits (arm_recv is not called then) and is read once the
         * cap is lifted; with the input at its cap and nothing taken from it, too big. */
        if (c->in.len >= c->in.cap_max) {
            input_toobig(gw, c);
            return;
        }
        size_t had = c->in.len;
        if (on_recv_tls(gw, c, 0) != 0) return;
        if (c->in.len > had) {
            if (!c->blocked) process_input(gw, c);
            after_io(gw, c); /* sends what that answered, and comes back here */
            return;
        }
    }
    uint8_t *dst;
    size_t room = tls_recv_room(c->tls, &dst);
    assert(room > 0); /* tls_on_recv drains the in buffer unless stalled */
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_recv(sqe, c->fd, dst, room, 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_RECV, c->gen, c->idx));
    c->recv_inflight = true;
    c->ops_inflight++;
}

/* Encrypt released output, then send whatever ciphertext waits. Output handed to SSL is
 * dropped from `out` only once it is half of it: dropping it per record would move the
 * rest of a large reply for every 16 KiB sent. */
static void arm_send_tls(gateway *gw, client *c) {
    if (c->tls_taken_abs < c->out_base) c->tls_taken_abs = c->out_base;
    assert(c->tls_taken_abs <= c->sendable_abs);
    uint64_t n = c->sendable_abs - c->tls_taken_abs;
    if (n) {
        long took = tls_encrypt(c->tls, c->out.data + (c->tls_taken_abs - c->out_base), n);
        if (took < 0) {
            client_close(gw, c);
            return;
        }
        c->tls_taken_abs += (uint64_t)took;
        uint64_t done = c->tls_taken_abs - c->out_base;
        if (done == c->out.len || done >= c->out.len / 2) {
            buf_consume(&c->out, done);
            c->out_base += done;
        }
    }
    const uint8_t *p;
    size_t len = tls_send_data(c->tls, &p);
    if (len == 0) return;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_send(sqe, c->fd, p, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(UD_SEND, c->gen, c->idx));
    c->send_inflight = true;
    c->ops_inflight++;
}

/* Everything released is encrypted and sent. A client closing after its last reply also
 * gets a close_notify, which must leave before the socket closes. */
static bool tls_flushed(gateway *gw, client *c) {
    if (c->tls_taken_abs < c->sendable_abs) return false;
    const uint8_t *p;
    if (tls_send_data(c->tls, &p) > 0) return false;
    if (c->close_after_flush) {
        tls_shutdown(c->tls);
        if (tls_send_data(c->tls, &p) > 0) {
            arm_send(gw, c);
            return false;
        }
    }
    return true;
}

/* n ciphertext bytes arrived: decrypted into c->in. 0 to go on to process_input, -1 when
 * the client was handled here (closed, or closing after an alert or error reply). */
static int on_recv_tls(gateway *gw, client *c, size_t n) {
    int st = tls_on_recv(&gw->tls, c->tls, n, &c->in);
    if (st == TLS_OK) return 0;
    if (st == TLS_CLOSED) {
        client_close(gw, c);
        return -1;
    }
    if (st == TLS_TOOBIG) {
        resp_w_error(&c->out, "ERR TOOBIG", "request exceeds the %d-byte query buffer", CLIENT_QUERY_BYTES_MAX);
        server_reply_done(gw, c, 0, 0);
    } else if (gw->now_ms >= gw->tls.fail_log_next_ms) {
        /* One line a second at most: a scanner must not flood the log. */
        gw->tls.fail_log_next_ms = gw->now_ms + 1000;
        LOGW(gw, "tls: client %u: %s: %s", c->idx, tls_handshake_done(c->tls) ? "failed" : "handshake failed",
             tls_conn_error(c->tls));
    }
    c->close_after_flush = true; /* the alert or the error reply goes first */
    after_io(gw, c);
    return -1;
}

void server_reap_tls(gateway *gw) {
    if (gw->tls.handshaking == 0 || gw->now_ms < gw->srv.next_tls_reap_ms) return;
    gw->srv.next_tls_reap_ms = gw->now_ms + 1000;
    for (uint32_t i = 0; i < gw->srv.hwm; i++) {
        client *c = &gw->srv.clients[i];
        if (!c->in_use || c->closing || !c->tls || !tls_handshake_overdue(c->tls, gw->now_ms)) continue;
        gw->tls.handshake_failures++;
        client_close(gw, c);
    }
}
