/*
 * console_int: what the console's two files share (console.h is the module's contract).
 *   console.c          HTTP connections, responses, routes, the JSON API, event streams
 *   console_session.c  sessions: the table, tokens, and each one's RESP backend (a socketpair
 *                      the gateway's server adopted), whose replies it hands to the waiters
 * Loop thread only. Nothing here is for other modules.
 */
#ifndef SG_CONSOLE_INT_H
#define SG_CONSOLE_INT_H
#include <stdbool.h>
#include <stdint.h>

#include "console.h"
#include "gateway.h"
#include "http.h"
#include "ring.h"

enum { OP_ACCEPT = 0, OP_RECV, OP_SEND, OP_BRECV, OP_BSEND };
enum { W_LOGIN = 1, W_API, W_SSE, W_PING };
#define TOKEN_BYTES 32
#define TOKEN_HEX (2 * TOKEN_BYTES)
#define COOKIE_NAME "sg_session"
#define BACKEND_RECV_CHUNK 65536
#define BACKEND_SEND_BYTES_MAX (1024 * 1024)
#define ARGS_MAX 24

typedef struct waiter {
    uint32_t conn, gen; /* the HTTP connection (its generation: it may have closed) */
    uint8_t what;
} waiter;

typedef struct session {
    bool in_use, ready, ending;
    uint32_t gen;
    char token[TOKEN_HEX + 1], csrf[TOKEN_HEX + 1];
    char agent[AGENT_LEN_MAX + 1];
    int role;
    int64_t expires_ms;
    int64_t last_cmd_ms; /* for the keep-alive PING under [gateway] idle_timeout */
    int fd; /* the console's end of the socketpair; the gateway serves the other */
    bool recv_inflight, send_inflight;
    uint32_t inflight;
    buf rbuf, sbuf;
    waiter q[CONSOLE_PIPELINE_MAX];
    uint32_t qhead, qlen;
} session;

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

/* console.c */
void cons_respond_json(gateway *gw, hconn *c, int st, buf *body, const char *extra);
/* {"error": code, "reason": why} with HTTP status st. */
void cons_respond_err(gateway *gw, hconn *c, int st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The HTTP status of a RESP error code (docs/console.md). */
int cons_status_of(const char *code, size_t len);
/* Parse and answer what the connection holds (after an answer freed it). */
void cons_conn_process(gateway *gw, hconn *c);
void cons_conn_close(gateway *gw, hconn *c);
void cons_conn_arm_send(gateway *gw, hconn *c);

/* console_session.c */
/* A free session with fresh tokens, not yet signed in; NULL when the table is full. */
session *csess_new(gateway *gw);
/* The signed-in, unexpired session named by the request's cookie (constant time), or NULL. */
session *csess_find(gateway *gw, const http_req *r);
/* End it: waiting requests answered, the backend shut; the slot frees once no I/O is left. */
void csess_end(gateway *gw, session *s);
void csess_arm_recv(gateway *gw, session *s);
/* Queue one RESP command for w; false when the pipeline (CONSOLE_PIPELINE_MAX) is full. */
bool csess_command(gateway *gw, session *s, waiter w, uint32_t argc, const char *const *argv,
                   const size_t *lens);
void csess_on_recv(gateway *gw, session *s, int res);
void csess_on_sent(gateway *gw, session *s, int res);
/* One reply, for the waiter it belongs to (login, API request, event stream, keep-alive). */
void csess_deliver(gateway *gw, session *s, waiter w, const char *p, size_t n);
void csess_cookie_header(gateway *gw, const session *s, char *out, size_t cap, bool clear);
/* {"agent", "role", "csrf", "expires_at", "currency"} into b. */
void csess_w_me(gateway *gw, const session *s, buf *b);
#endif
