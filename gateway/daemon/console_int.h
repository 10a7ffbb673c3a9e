/*
 * console_int: what the console's two files share (console.h is the module's contract).
 *   console.c          HTTP connections, responses, routes, the JSON API, event streams, and
 *                      the answers to the sessions' replies (csess_hooks)
 *   console_session.c  sessions: the table, tokens, and each one's RESP backend (a socketpair
 *                      the gateway's server adopted); console_session.h is its contract
 * Loop thread only. Nothing here is for other modules.
 */
#ifndef SG_CONSOLE_INT_H
#define SG_CONSOLE_INT_H
#include <stdbool.h>
#include <stdint.h>

#include "console.h"
#include "console_session.h"
#include "gateway.h"
#include "http.h"
#include "ring.h"

enum { OP_ACCEPT = 0, OP_RECV, OP_SEND, OP_BRECV, OP_BSEND };
#define ARGS_MAX 24

typedef struct hconn {
    bool in_use, closing, recv_inflight, send_inflight, busy, close_after, sse;
    bool lingering; /* answered, write side shut: reading what the peer still sends until EOF */
    uint32_t gen, inflight;
    int fd;
    uint32_t addr;
    uint16_t port;
    buf in, out;
    uint32_t in_off;
    int64_t req_start_ms, last_ms;
    tls_conn *tls; /* NULL: plain HTTP (console.tls off) */
    int32_t sess; /* the session a waiting request or a stream belongs to, -1: none */
    uint32_t sess_gen;
    char sse_case[CASE_LEN_MAX + 1];
    uint64_t sse_seen_lsn;
    int64_t sse_ping_ms;
} hconn;

struct console {
    int listen_fd;
    bool tls;          /* HTTPS: tls_cert is set (tls.h, the listener's certificate and key) */
    tls_server tlss;   /* its context and counters, the console's own */
    hconn *conns;
    session *sess;
    csess_hooks sess_up; /* console.c's answers, given to the sessions at init */
    uint32_t nsse, nsessions;
    buf scratch; /* one response body being built */
    uint64_t scanned_lsn;
    int64_t next_scan_ms, next_sweep_ms;
    uint64_t requests, refused_conns, logins, login_failures, events;
};

static inline console *cons(gateway *gw) { return gw->console; }

static inline void cons_sqe_ud(struct io_uring_sqe *sqe, uint32_t op, uint32_t idx) {
    io_uring_sqe_set_data64(sqe, ud_make(UD_CONSOLE, op, idx));
}

static inline uint32_t cons_conn_idx(const console *cs, const hconn *c) { return (uint32_t)(c - cs->conns); }
static inline uint32_t csess_idx(const console *cs, const session *s) { return (uint32_t)(s - cs->sess); }

/* The connection a waiter answers, or NULL when it closed meanwhile (its generation moved). */
static inline hconn *cons_waiter_conn(console *cs, const waiter *w) {
    hconn *c = &cs->conns[w->conn];
    return c->in_use && !c->closing && c->gen == w->gen ? c : NULL;
}

#endif
