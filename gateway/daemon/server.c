/*
 * server: the RESP/TCP side of the loop. Every socket operation goes through io_uring:
 * a multishot accept, one recv and at most one send in flight per client, close by SQE.
 *
 * Ordering: replies are appended to the client's output in request order, each followed by
 * a mark saying which journal lsn must be durable before it may leave. Only the prefix of
 * marks that are durable is sent, so pipelined answers come back in order and no answer
 * ever promises something the disk does not hold yet.
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

#include "clock.h"
#include "gateway.h"
#include "ring.h"

#define OUT_SOFT_LIMIT (1024 * 1024) /* stop reading from a client that does not read its replies */

static client *client_at(gateway *gw, uint32_t idx, uint32_t gen) {
    if (idx >= gw->srv.max) return NULL;
    client *c = &gw->srv.clients[idx];
    return (c->in_use && (c->gen & 0xffffffu) == gen) ? c : NULL;
}

client *server_client(gateway *gw, uint32_t idx, uint32_t gen) { return client_at(gw, idx, gen); }

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

int server_listen_socket(const cfg_addr *a, int type, char *err, size_t errcap);
int server_listen_socket(const cfg_addr *a, int type, char *err, size_t errcap) {
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

int server_init(gateway *gw, char *err, size_t errcap) {
    server *s = &gw->srv;
    memset(s, 0, sizeof *s);
    s->max = gw->cfg.max_clients;
    s->clients = calloc(s->max, sizeof *s->clients);
    s->free_list = calloc(s->max, sizeof *s->free_list);
    if (!s->clients || !s->free_list) {
        snprintf(err, errcap, "out of memory for %u clients", s->max);
        return -1;
    }
    for (uint32_t i = 0; i < s->max; i++) s->free_list[s->nfree++] = s->max - 1 - i;
    s->listen_fd = server_listen_socket(&gw->cfg.listen, SOCK_STREAM, err, errcap);
    if (s->listen_fd < 0) return -1;
    s->accepting = true;
    return 0;
}

void server_arm_accept(gateway *gw) {
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_multishot_accept(sqe, gw->srv.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(UD_ACCEPT, 0, 0));
}

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

static void arm_recv(gateway *gw, client *c) {
    if (c->recv_inflight || c->closing || c->blocked || gw->phase == PHASE_DRAINING) return;
    /* Resumes when the output drains; before AUTH the output may not grow past the input cap. */
    if (c->out.len > (c->admitted ? OUT_SOFT_LIMIT : CLIENT_PREAUTH_BYTES_MAX)) return;
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
    lists_client_gone(gw, c);
    login_conn_closed(gw, c);
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    buf_free(&c->in);
    buf_free(&c->out);
    free(c->marks);
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
        if (m->lsn > gw->j.durable_lsn) break;
        c->sendable_abs = m->end;
        if (m->t_recv_ns) {
            if (!now_ns) now_ns = clock_mono_ns();
            metrics_observe_stop_us(&gw->m, (uint64_t)(now_ns - m->t_recv_ns) / 1000);
        }
        c->marks_head = (c->marks_head + 1) % c->marks_cap;
        c->marks_len--;
    }
}

void server_reply_done(gateway *gw, client *c, uint64_t lsn, int64_t t_recv_ns) {
    uint64_t end = c->out_base + c->out.len;
    if (lsn <= gw->j.durable_lsn && !marks_pending(c)) {
        c->sendable_abs = end;
        if (t_recv_ns) metrics_observe_stop_us(&gw->m, (uint64_t)(clock_mono_ns() - t_recv_ns) / 1000);
        return;
    }
    if (c->marks_len == c->marks_cap) {
        uint32_t cap = c->marks_cap ? c->marks_cap * 2 : 64;
        reply_mark *nm = malloc(cap * sizeof *nm);
        if (!nm) {
            c->close_after_flush = true;
            return;
        }
        for (uint32_t i = 0; i < c->marks_len; i++) nm[i] = c->marks[(c->marks_head + i) % c->marks_cap];
        free(c->marks);
        c->marks = nm;
        c->marks_cap = cap;
        c->marks_head = 0;
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
        if (c->out.len > CLIENT_OUTPUT_BYTES_MAX / 2) break; /* let the client read first */
    }
    buf_consume(&c->in, off);
}

static void after_io(gateway *gw, client *c) {
    arm_send(gw, c);
    if (c->close_after_flush && !c->send_inflight && c->sendable_abs == c->out_base + c->out.len &&
        !marks_pending(c)) {
        client_close(gw, c);
        return;
    }
    if (c->closing) {
        client_close(gw, c);
        return;
    }
    if (!c->close_after_flush) {
        arm_recv(gw, c);
        /* arm_recv may have queued a final error (query buffer full): send it now, since
         * with no receive armed nothing else would wake this client. */
        if (c->close_after_flush) arm_send(gw, c);
    }
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

static void on_accept(gateway *gw, int res, uint32_t flags) {
    if (!(flags & IORING_CQE_F_MORE) && gw->srv.accepting) server_arm_accept(gw);
    if (res < 0) {
        if (res != -ECANCELED) LOGW(gw, "accept: %s", strerror(-res));
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
        refuse_conn(gw, res, msg, sizeof msg - 1);
        return;
    }
    int one = 1;
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint32_t idx = gw->srv.free_list[--gw->srv.nfree];
    client *c = &gw->srv.clients[idx];
    uint32_t gen = (c->gen + 1) & 0xffffffu;
    memset(c, 0, sizeof *c);
    c->idx = idx;
    c->gen = gen;
    c->fd = res;
    c->in_use = true;
    c->proto = 2;
    c->addr = addr;
    c->port = port;
    admission_start(gw, c);
    buf_init(&c->out, CLIENT_OUTPUT_BYTES_MAX);
    c->last_active_ms = gw->now_ms;
    gw->srv.count++;
    gw->m.connections_total++;
    arm_recv(gw, c);
}

void server_on_cqe(gateway *gw, unsigned kind, uint32_t aux, uint32_t idx, int res, uint32_t flags) {
    if (kind == UD_ACCEPT) {
        on_accept(gw, res, flags);
        return;
    }
    client *c = client_at(gw, idx, aux);
    if (!c) return;
    c->ops_inflight--;
    if (kind == UD_RECV) {
        c->recv_inflight = false;
        if (res <= 0) {
            if (!c->closing) client_close(gw, c);
            else client_close(gw, c);
            return;
        }
        c->in.len += (size_t)res;
        if ((uint32_t)res == c->recv_asked) c->recv_grown = true;
        c->last_active_ms = gw->now_ms;
        if (!c->closing && !c->blocked) process_input(gw, c);
    } else if (kind == UD_SEND) {
        c->send_inflight = false;
        buf_unpin(&c->out);
        if (res < 0) {
            client_close(gw, c);
            return;
        }
        buf_consume(&c->out, (size_t)res);
        c->out_base += (uint64_t)res;
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

void server_resume(gateway *gw, client *c) {
    if (!c->closing && !c->blocked) process_input(gw, c);
    after_io(gw, c);
}

void server_kick_all(gateway *gw) {
    for (uint32_t i = 0; i < gw->srv.max; i++) {
        client *c = &gw->srv.clients[i];
        if (c->in_use) after_io(gw, c);
    }
}

void server_stop_accepting(gateway *gw) {
    if (!gw->srv.accepting) return;
    gw->srv.accepting = false;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_cancel64(sqe, ud_make(UD_ACCEPT, 0, 0), 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
}

bool server_drained(gateway *gw) {
    for (uint32_t i = 0; i < gw->srv.max; i++) {
        client *c = &gw->srv.clients[i];
        if (!c->in_use) continue;
        if (marks_pending(c) || c->send_inflight || c->sendable_abs > c->out_base) return false;
    }
    return true;
}

void server_reap_idle(gateway *gw) {
    uint32_t limit_s = gw->cfg.idle_timeout_s;
    if (gw->now_ms < gw->srv.next_reap_ms) return;
    gw->srv.next_reap_ms = gw->now_ms + 1000;
    login_tick(gw);
    if (limit_s == 0 && gw->cfg.auth_timeout_s == 0) return;
    int64_t cutoff = limit_s ? gw->now_ms - (int64_t)limit_s * 1000 : INT64_MIN;
    for (uint32_t i = 0; i < gw->srv.max; i++) {
        client *c = &gw->srv.clients[i];
        if (!c->in_use || c->closing) continue;
        /* Bytes do not buy time before AUTH (slowloris): only the deadline counts. An AUTH
         * being verified is the gateway's delay, not the client's: its answer decides. */
        if (login_deadline_passed(gw, c) && !c->auth_pending) {
            gw->login.st.deadline_closed++;
            client_close(gw, c);
            continue;
        }
        /* A client still owed a durable reply is not idle: it is waiting on us. */
        if (marks_pending(c) || c->blocked) continue;
        if (c->last_active_ms >= cutoff) continue;
        gw->m.idle_closed++;
        client_close(gw, c);
    }
}
