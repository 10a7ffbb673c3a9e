/*
 * console_session: the console's sessions (console.h is the module's contract to the rest of
 * the daemon; this is the sessions' contract to console.c). A session is a RESP connection
 * to this gateway - one end of a socketpair server_adopt() serves - with the tokens that name
 * it and a pipeline of waiters. It owns the session slots' tokens and backends; it never
 * writes to an HTTP connection: each reply, and each waiter a session's end leaves
 * unanswered, goes back up through the csess_hooks console.c gives at init.
 * Loop thread only.
 */
#ifndef SG_CONSOLE_SESSION_H
#define SG_CONSOLE_SESSION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway.h"
#include "http.h"

enum { W_LOGIN = 1, W_API, W_SSE, W_PING };
#define TOKEN_BYTES 32
#define TOKEN_HEX (2 * TOKEN_BYTES)
#define COOKIE_NAME "sg_session"
#define BACKEND_RECV_CHUNK 65536
#define BACKEND_SEND_BYTES_MAX (1024 * 1024)

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

/* What a session hands back up to the HTTP side (console.c), given at init. Both required. */
typedef struct csess_hooks {
    /* One reply, for the waiter it belongs to (login, API request, event stream, keep-alive). */
    void (*deliver)(gateway *gw, session *s, waiter w, const char *p, size_t n);
    /* A waiter the session's end leaves without its reply. */
    void (*dropped)(gateway *gw, waiter w);
} csess_hooks;

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
void csess_cookie_header(gateway *gw, const session *s, char *out, size_t cap, bool clear);
/* {"agent", "role", "csrf", "expires_at", "currency"} into b. */
void csess_w_me(gateway *gw, const session *s, buf *b);
#endif
