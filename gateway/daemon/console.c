/*
 * console: the agents' web console (contract in console.h, design in docs/console.md).
 *
 * Layout of this file: HTTP connections (accept, receive, send, deadlines), sessions and
 * their RESP backends, the routes (static page, JSON API, event streams).
 *
 * One request per connection is answered at a time: a request that needs the gateway
 * (every API call but /api/me and /api/health) marks its connection busy until the
 * session's backend answers; pipelined requests wait in the buffer meanwhile. Input is
 * consumed by an offset and compacted only while no receive is in flight, so a receive
 * never lands in bytes that moved.
 */
#include "console_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "account.h"
#include "clock.h"
#include "console_assets.h"
#include "gateway.h"
#include "listener.h"
#include "http.h"
#include "respjson.h"
#include "ring.h"

/* Defined below, used before (static: nothing outside this file answers a connection). */
static void cons_respond_json(gateway *gw, hconn *c, int st, buf *body, const char *extra);
/* {"error": code, "reason": why} with HTTP status st. */
static void cons_respond_err(gateway *gw, hconn *c, int st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The HTTP status of a RESP error code (docs/console.md). */
static int cons_status_of(const char *code, size_t len);
/* Parse and answer what the connection holds (after an answer freed it). */
static void cons_conn_process(gateway *gw, hconn *c);
static void cons_conn_close(gateway *gw, hconn *c);
static void cons_conn_arm_send(gateway *gw, hconn *c);

/* ---- small helpers ----------------------------------------------------------------- */

static const char *reason_phrase(int st) {
    switch (st) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* ---- HTTP connections ------------------------------------------------------------- */


static void conn_release(gateway *gw, hconn *c) {
    console *cs = cons(gw);
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    if (c->sse) cs->nsse--;
    if (c->tls) tls_conn_free(&cs->tlss, c->tls);
    c->tls = NULL;
    c->fd = -1;
    c->in_use = false;
    c->gen++;
}

static void cons_conn_close(gateway *gw, hconn *c) {
    if (!c->closing) {
        c->closing = true;
        if (c->recv_inflight) {
            struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
            io_uring_prep_cancel64(sqe, ud_make(UD_CONSOLE, OP_RECV, cons_conn_idx(cons(gw), c)), 0);
            io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
        }
    }
    if (c->inflight == 0) conn_release(gw, c);
}

static void conn_compact(hconn *c) {
    if (!c->in_off) return;
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
}

static void conn_arm_recv(gateway *gw, hconn *c) {
    if (c->recv_inflight || c->closing) return;
    uint8_t *dst;
    size_t room;
    if (c->tls) { /* ciphertext lands in the tls_conn, plaintext is appended on completion */
        if (tls_stalled(c->tls)) return; /* resumed when a send completes */
        room = tls_recv_room(c->tls, &dst);
    } else {
        conn_compact(c); /* no receive is in flight: nothing points into the buffer */
        dst = c->in.data + c->in.len;
        room = c->in.cap - c->in.len;
    }
    if (room == 0) return; /* full and busy: the request being answered frees it */
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_recv(sqe, c->fd, dst, room, 0);
    cons_sqe_ud(sqe, OP_RECV, cons_conn_idx(cons(gw), c));
    c->recv_inflight = true;
    c->inflight++;
}

static void cons_conn_arm_send(gateway *gw, hconn *c) {
    if (c->send_inflight || c->closing) return;
    const uint8_t *p = c->out.data;
    size_t len = c->out.len;
    if (c->tls) { /* encrypt what fits, send the ciphertext: out itself is never pinned */
        long took = c->out.len ? tls_encrypt(c->tls, c->out.data, c->out.len) : 0;
        if (took < 0) {
            cons_conn_close(gw, c);
            return;
        }
        buf_consume(&c->out, (size_t)took);
        len = tls_send_data(c->tls, &p);
    }
    if (len == 0) return;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_send(sqe, c->fd, p, len, MSG_NOSIGNAL);
    cons_sqe_ud(sqe, OP_SEND, cons_conn_idx(cons(gw), c));
    if (!c->tls) buf_pin(&c->out);
    c->send_inflight = true;
    c->inflight++;
}

static void on_accept(gateway *gw, int res, uint32_t flags) {
    console *cs = cons(gw);
    if (!(flags & IORING_CQE_F_MORE) && cs->listen_fd >= 0) {
        struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
        io_uring_prep_multishot_accept(sqe, cs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        cons_sqe_ud(sqe, OP_ACCEPT, 0);
    }
    if (res < 0) return;
    hconn *c = NULL;
    for (uint32_t i = 0; i < CONSOLE_CONNS_MAX && !c; i++)
        if (!cs->conns[i].in_use) c = &cs->conns[i];
    tls_conn *tc = c && cs->tls && gw->phase != PHASE_DRAINING ? tls_conn_new(&cs->tlss, gw->now_ms) : NULL;
    if (!c || gw->phase == PHASE_DRAINING || (cs->tls && !tc)) {
        cs->refused_conns++;
        struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
        io_uring_prep_close(sqe, res);
        io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
        return;
    }
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    c->addr = 0;
    c->port = 0;
    if (getpeername(res, (struct sockaddr *)&sa, &sl) == 0 && sa.sin_family == AF_INET) {
        c->addr = sa.sin_addr.s_addr;
        c->port = ntohs(sa.sin_port);
    }
    c->in_use = true;
    c->closing = c->recv_inflight = c->send_inflight = c->busy = c->close_after = c->sse = false;
    c->lingering = false;
    c->tls = tc;
    c->inflight = 0;
    c->fd = res;
    c->in.len = c->in_off = 0;
    buf_reset(&c->out);
    c->req_start_ms = 0;
    c->last_ms = gw->now_ms;
    c->sess = -1;
    conn_arm_recv(gw, c);
}

/* ---- responses -------------------------------------------------------------------- */

static void respond(gateway *gw, hconn *c, int st, const char *ctype, const void *body, size_t len,
                    const char *extra) {
    bool keep = !c->close_after;
    int rc = buf_printf(&c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                        "Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n%s%s\r\n",
                        st, reason_phrase(st), ctype, len, extra ? extra : "",
                        keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    if (rc == 0 && len) rc = buf_append(&c->out, body, len);
    if (rc != 0) { /* over CONSOLE_OUT_BYTES_MAX: nothing sane can follow */
        buf_reset(&c->out);
        c->close_after = true;
        cons_conn_close(gw, c);
        return;
    }
    c->busy = false;
    c->req_start_ms = 0;
    cons_conn_arm_send(gw, c);
}

static void cons_respond_json(gateway *gw, hconn *c, int st, buf *body, const char *extra) {
    respond(gw, c, st, "application/json; charset=utf-8", body->data, body->len, extra);
}

/* {"error": code, "reason": why}: the code is the RESP error's stable first words. */
static void cons_respond_err(gateway *gw, hconn *c, int st, const char *code, const char *fmt, ...) {
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    buf *b = &cons(gw)->scratch;
    buf_reset(b);
    buf_append(b, "{\"error\":", 9);
    respjson_string(b, code, strlen(code));
    buf_append(b, ",\"reason\":", 10);
    respjson_string(b, why, strlen(why));
    buf_append(b, "}", 1);
    cons_respond_json(gw, c, st, b, NULL);
}

/* A refused request whose stream cannot be trusted any more (malformed, over a limit). */
static void respond_fatal(gateway *gw, hconn *c, int st, const char *why) {
    c->close_after = true;
    cons_respond_err(gw, c, st, st == 413 || st == 431 ? "ERR TOOBIG" : "ERR SYNTAX", "%s", why);
}

/* The HTTP status of a RESP error code (SPEC §4.1 codes). */
static int cons_status_of(const char *code, size_t len) {
    struct { const char *code; int st; } map[] = {
        {"NOPERM", 403},       {"NOAUTH", 401},         {"WRONGPASS", 401},  {"ERR NOTFOUND", 404},
        {"ERR BUSY", 503},     {"READONLY", 503},       {"ERR TOOBIG", 413}, {"ERR IDEMPOTENCY", 409},
        {"ERR STATE", 409},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strlen(map[i].code) == len && !memcmp(map[i].code, code, len)) return map[i].st;
    return 400;
}

/* ---- the JSON API ------------------------------------------------------------------ */

/* One RESP command being built from a request: words point into the request, the JSON
 * document or num[] until it is queued. */
typedef struct cmdv {
    uint32_t argc;
    const char *argv[ARGS_MAX];
    size_t lens[ARGS_MAX];
    char num[ARGS_MAX][24];
} cmdv;

static void cmd_add(cmdv *v, const char *p, size_t len) {
    assert(v->argc < ARGS_MAX);
    v->argv[v->argc] = p;
    v->lens[v->argc++] = len;
}

/* A field of a POST form: its JSON name and the RESP option it becomes (NULL: positional,
 * in table order). Amounts and TTLs may be JSON integers or strings of digits. */
typedef struct field {
    const char *json, *opt;
    bool required, number;
} field;

typedef struct endpoint {
    const char *path, *command;
    const field *fields;
} endpoint;

static const field f_stop[] = {{"request_id", NULL, true, false}, {"bank", "BANK", true, false},
                               {"account", "ACCOUNT", true, false}, {"case", "CASE", true, false},
                               {"amount", "AMOUNT", false, true},  {"currency", "CURRENCY", false, false},
                               {"ttl", "TTL", false, true},        {"reason", "REASON", false, false},
                               {"note", "NOTE", false, false},     {NULL}};
static const field f_freeze[] = {{"request_id", NULL, true, false}, {"bank", "BANK", true, false},
                                 {"account", "ACCOUNT", true, false}, {"case", "CASE", true, false},
                                 {"doc", "DOC", true, false},       {"amount", "AMOUNT", false, true},
                                 {"currency", "CURRENCY", false, false}, {"ttl", "TTL", false, true},
                                 {"reason", "REASON", false, false}, {"note", "NOTE", false, false},
                                 {NULL}};
static const field f_release[] = {{"request_id", NULL, true, false}, {"order_id", NULL, true, false},
                                  {"reason", "REASON", false, false}, {"doc", "DOC", false, false}, {NULL}};
static const field f_extend[] = {{"request_id", NULL, true, false}, {"order_id", NULL, true, false},
                                 {"ttl", "TTL", true, true}, {NULL}};
static const field f_confirm[] = {{"order_id", NULL, true, false}, {NULL}};

static const endpoint k_posts[] = {
    {"/api/stop", "STOP", f_stop},          {"/api/freeze", "FREEZE", f_freeze},
    {"/api/release", "RELEASE", f_release}, {"/api/extend", "EXTEND", f_extend},
    {"/api/confirm", "CONFIRM", f_confirm},
};

/* The words of one field value; NULL, or why it is refused. */
static const char *field_value(const field *f, json_t *v, cmdv *cv) {
    if (json_is_string(v)) {
        cmd_add(cv, json_string_value(v), json_string_length(v));
        return NULL;
    }
    if (f->number && json_is_integer(v)) {
        int n = snprintf(cv->num[cv->argc], sizeof cv->num[0], "%lld", (long long)json_integer_value(v));
        cmd_add(cv, cv->num[cv->argc], (size_t)n);
        return NULL;
    }
    return f->number ? "must be an integer (minor units or seconds) or a string of digits" : "must be a string";
}

/* The form's fields as RESP words; NULL, or why not (why filled). */
static const char *form_words(const endpoint *ep, json_t *doc, cmdv *cv, char *why, size_t cap) {
    const char *key;
    json_t *val;
    json_object_foreach(doc, key, val) {
        const field *f;
        for (f = ep->fields; f->json && strcmp(f->json, key); f++) {}
        if (!f->json) return snprintf(why, cap, "unknown field '%.40s'", key), why;
    }
    for (int pass = 0; pass < 2; pass++) /* positional words first, then NAME value pairs */
        for (const field *f = ep->fields; f->json; f++) {
            if ((pass == 0) != (f->opt == NULL)) continue;
            json_t *v = json_object_get(doc, f->json);
            if (!v || json_is_null(v)) {
                if (f->required) return snprintf(why, cap, "missing field '%s'", f->json), why;
                continue;
            }
            if (f->opt) cmd_add(cv, f->opt, strlen(f->opt));
            const char *e = field_value(f, v, cv);
            if (e) return snprintf(why, cap, "field '%s' %s", f->json, e), why;
        }
    return NULL;
}

/* Queue cv on the session for c; the connection waits for the answer. */
static void api_send(gateway *gw, hconn *c, session *s, cmdv *cv) {
    waiter w = {.conn = cons_conn_idx(cons(gw), c), .gen = c->gen, .what = W_API};
    if (!csess_command(gw, s, w, cv->argc, cv->argv, cv->lens)) {
        cons_respond_err(gw, c, 503, "ERR BUSY", "too many requests in flight on this session; retry");
        return;
    }
    c->busy = true;
}

static void api_post(gateway *gw, hconn *c, session *s, const http_req *r, const endpoint *ep) {
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        cons_respond_err(gw, c, 400, "ERR SYNTAX", "the body must be a JSON object%s%s", doc ? "" : ": ",
                    doc ? "" : jerr.text);
        json_decref(doc);
        return;
    }
    cmdv cv = {0};
    char why[160];
    cmd_add(&cv, ep->command, strlen(ep->command));
    const char *e = form_words(ep, doc, &cv, why, sizeof why);
    if (e) cons_respond_err(gw, c, 400, "ERR SYNTAX", "%s", e);
    else api_send(gw, c, s, &cv);
    json_decref(doc);
}

/* GET /api/<what>/<a>[/<b>]: the path's words, percent-decoded, into words[]. */
static int path_words(http_str rest, char words[2][128], size_t lens[2]) {
    int n = 0;
    uint32_t i = 0;
    while (i <= rest.len && n < 2) {
        const char *slash = memchr(rest.p + i, '/', rest.len - i);
        uint32_t e = slash ? (uint32_t)(slash - rest.p) : rest.len;
        int l = http_pct_decode(rest.p + i, e - i, words[n], sizeof words[n]);
        if (l <= 0) return -1;
        lens[n++] = (size_t)l;
        if (!slash) return n;
        i = e + 1;
    }
    return -1;
}

static void api_get(gateway *gw, hconn *c, session *s, http_str path) {
    static const struct { const char *prefix, *command; int words; } gets[] = {
        {"/api/case/", "CASE", 1}, {"/api/order/", "STATUS", 1}, {"/api/check/", "CHECK", 2}};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        size_t pl = strlen(gets[i].prefix);
        if (path.len < pl || memcmp(path.p, gets[i].prefix, pl)) continue;
        char words[2][128];
        size_t lens[2];
        int n = path_words((http_str){path.p + pl, (uint32_t)(path.len - pl)}, words, lens);
        if (n != gets[i].words) {
            cons_respond_err(gw, c, 400, "ERR SYNTAX", "%s takes %d path word%s", gets[i].prefix, gets[i].words,
                        gets[i].words > 1 ? "s: /api/check/<bank>/<account>" : "");
            return;
        }
        cmdv cv = {0};
        cmd_add(&cv, gets[i].command, strlen(gets[i].command));
        for (int k = 0; k < n; k++) cmd_add(&cv, words[k], lens[k]);
        api_send(gw, c, s, &cv);
        return;
    }
    cons_respond_err(gw, c, 404, "ERR NOTFOUND", "no such API endpoint (docs/console.md)");
}

/* POST /api/login {"agent", "secret"}: HELLO 3 AUTH on a new RESP connection that carries
 * the browser's address, so the gateway's own AUTH judges it (authq, limiter, log). */
static void api_login(gateway *gw, hconn *c, http_req *r) {
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    sodium_memzero((void *)r->body, r->body_len);
    json_t *a = doc ? json_object_get(doc, "agent") : NULL, *sec = doc ? json_object_get(doc, "secret") : NULL;
    if (!json_is_object(doc) || !json_is_string(a) || !json_is_string(sec) || json_object_size(doc) != 2 ||
        json_string_length(a) == 0 || json_string_length(a) > AGENT_LEN_MAX || json_string_length(sec) > SECRET_LEN_MAX) {
        if (json_is_string(sec)) sodium_memzero((void *)json_string_value(sec), json_string_length(sec));
        json_decref(doc);
        cons_respond_err(gw, c, 400, "ERR SYNTAX", "the body must be {\"agent\": name, \"secret\": secret} "
                    "(name 1-%d bytes, secret at most %d)", AGENT_LEN_MAX, SECRET_LEN_MAX);
        return;
    }
    session *s = csess_new(gw);
    int sv[2] = {-1, -1};
    int rc = !s ? -ENOSPC : socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ? -errno : 0;
    if (rc == 0) rc = server_adopt(gw, sv[1], c->addr, c->port);
    if (rc != 0) {
        if (sv[0] >= 0) close(sv[0]), close(sv[1]);
        if (s) s->in_use = false, cons(gw)->nsessions--;
        sodium_memzero((void *)json_string_value(sec), json_string_length(sec));
        json_decref(doc);
        cons_respond_err(gw, c, 503, "ERR BUSY", "%s", rc == -ENOSPC ? "too many console sessions" :
                    rc == -EMFILE ? "too many connections from your address (max_clients_per_address)" :
                    rc == -EBUSY ? "the gateway takes no more clients now" : "cannot open a session");
        return;
    }
    s->fd = sv[0];
    snprintf(s->agent, sizeof s->agent, "%s", json_string_value(a));
    const char *argv[] = {"HELLO", "3", "AUTH", json_string_value(a), json_string_value(sec)};
    size_t lens[] = {5, 1, 4, json_string_length(a), json_string_length(sec)};
    waiter w = {.conn = cons_conn_idx(cons(gw), c), .gen = c->gen, .what = W_LOGIN};
    bool queued = csess_command(gw, s, w, 5, argv, lens);
    assert(queued); /* a new session's pipeline is empty */
    (void)queued;
    sodium_memzero((void *)json_string_value(sec), json_string_length(sec));
    json_decref(doc);
    csess_arm_recv(gw, s);
    c->busy = true;
}

/* GET /api/health: the strip on every page, from the loop's own state (no RESP command:
 * any signed-in role may see it, INFO is for ops). */
static void api_health(gateway *gw, hconn *c) {
    buf *b = &cons(gw)->scratch;
    buf_reset(b);
    const char *phase = gw->phase == PHASE_RUNNING ? "running" : gw->phase == PHASE_DRAINING ? "draining" : "recovering";
    buf_printf(b, "{\"phase\":\"%s\",\"uptime_s\":%lld,\"journal_ok\":%s,\"durable_lsn\":%llu,\"orders\":{", phase,
               (long long)((gw->now_ms - gw->started_ms) / 1000), gw->j.last_error ? "false" : "true",
               (unsigned long long)commit_acked_lsn(&gw->commit));
    for (int st = 1; st < ST__COUNT; st++)
        buf_printf(b, "%s\"%s\":%llu", st > 1 ? "," : "", order_state_name((uint8_t)st),
                   (unsigned long long)gw->o.state_count[st]);
    buf_printf(b, "},\"outbox\":%u,\"outbox_capacity\":%u,\"clients\":%u,\"console_sessions\":%u,\"now\":%lld}",
               gw->ob.len, gw->ob.cap, gw->srv.count, cons(gw)->nsessions, (long long)clock_now_ms());
    cons_respond_json(gw, c, 200, b, NULL);
}

/* GET /api/events?case=C: a stream of `order` events for the case (console.h). */
static void api_events(gateway *gw, hconn *c, session *s, const http_req *r) {
    console *cs = cons(gw);
    char cid[CASE_LEN_MAX + 1];
    int n = http_query_param(r->query, "case", cid, CASE_LEN_MAX);
    if (n <= 0 || !field_ident_ok(cid, (size_t)n, CASE_LEN_MAX)) {
        cons_respond_err(gw, c, 400, "ERR SYNTAX", "?case= must be 1-%d printable characters without spaces", CASE_LEN_MAX);
        return;
    }
    if (cs->nsse >= CONSOLE_SSE_MAX) {
        cons_respond_err(gw, c, 503, "ERR BUSY", "too many event streams open (%d)", CONSOLE_SSE_MAX);
        return;
    }
    cid[n] = 0;
    memcpy(c->sse_case, cid, (size_t)n + 1);
    c->sse = true;
    cs->nsse++;
    c->sess = (int32_t)csess_idx(cs, s);
    c->sess_gen = s->gen;
    c->sse_seen_lsn = commit_acked_lsn(&gw->commit);
    c->sse_ping_ms = gw->now_ms + CONSOLE_SSE_PING_MS;
    c->close_after = true;
    buf_printf(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                        "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 2000\n\n"
                        "event: hello\ndata: {\"case\":");
    respjson_string(&c->out, cid, (size_t)n);
    buf_printf(&c->out, ",\"lsn\":%llu}\n\n", (unsigned long long)c->sse_seen_lsn);
    c->req_start_ms = 0;
    cons_conn_arm_send(gw, c);
}

static void serve_asset(gateway *gw, hconn *c, const char *name, size_t len) {
    for (size_t i = 0; i < console_nassets; i++) {
        const console_asset *a = &console_assets[i];
        if (strlen(a->name) != len || memcmp(a->name, name, len)) continue;
        respond(gw, c, 200, a->ctype, a->data, a->len,
                "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
                "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                "base-uri 'none'\r\n");
        return;
    }
    cons_respond_err(gw, c, 404, "ERR NOTFOUND", "no such page");
}

/* ---- routing ------------------------------------------------------------------------ */

static bool path_is(http_str p, const char *lit) { return p.len == strlen(lit) && !memcmp(p.p, lit, p.len); }
static bool path_has(http_str p, const char *prefix) { return p.len > strlen(prefix) && !memcmp(p.p, prefix, strlen(prefix)); }

static void route_page(gateway *gw, hconn *c, const http_req *r) {
    http_str p = r->path;
    if (r->method != HTTP_GET) {
        cons_respond_err(gw, c, 405, "ERR SYNTAX", "pages are read with GET");
        return;
    }
    if (path_is(p, "/") || path_has(p, "/case/")) serve_asset(gw, c, "index.html", 10);
    else if (path_has(p, "/assets/")) serve_asset(gw, c, p.p + 8, p.len - 8);
    else cons_respond_err(gw, c, 404, "ERR NOTFOUND", "no such page");
}

/* A browser says where a POST comes from in Origin: when it does, it must be this very
 * site (scheme://Host), whatever the cookie and token say. */
static bool origin_ok(gateway *gw, hconn *c, const http_req *r) {
    const char *sep = r->origin.len ? memmem(r->origin.p, r->origin.len, "://", 3) : NULL;
    if (!r->origin.len) return true;
    if (sep && r->host.len && (size_t)(r->origin.p + r->origin.len - sep - 3) == r->host.len &&
        !memcmp(sep + 3, r->host.p, r->host.len))
        return true;
    cons_respond_err(gw, c, 403, "CSRF", "cross-origin request refused (Origin is not this console)");
    return false;
}

/* A POST must come from our page: a JSON body and the session's CSRF token (compared in
 * constant time). SameSite=Strict already keeps the cookie off other sites' requests. */
static bool post_ok(gateway *gw, hconn *c, const session *s, const http_req *r) {
    if (!origin_ok(gw, c, r)) return false;
    if (r->csrf.len != TOKEN_HEX || sodium_memcmp(r->csrf.p, s->csrf, TOKEN_HEX) != 0) {
        cons_respond_err(gw, c, 403, "CSRF", "missing or wrong X-CSRF-Token (GET /api/me gives it)");
        return false;
    }
    if (r->content_type.len < 16 || strncasecmp(r->content_type.p, "application/json", 16) != 0) {
        cons_respond_err(gw, c, 415, "ERR SYNTAX", "POST bodies are JSON: Content-Type: application/json");
        return false;
    }
    return true;
}

static void route_api(gateway *gw, hconn *c, http_req *r) {
    http_str p = r->path;
    if (path_is(p, "/api/login")) {
        if (r->method != HTTP_POST) cons_respond_err(gw, c, 405, "ERR SYNTAX", "sign in with POST");
        else if (!origin_ok(gw, c, r)) return;
        else if (r->content_type.len < 16 || strncasecmp(r->content_type.p, "application/json", 16))
            cons_respond_err(gw, c, 415, "ERR SYNTAX", "POST bodies are JSON: Content-Type: application/json");
        else api_login(gw, c, r);
        return;
    }
    session *s = csess_find(gw, r);
    if (!s) {
        cons_respond_err(gw, c, 401, "NOAUTH", "sign in first (POST /api/login)");
        return;
    }
    if (r->method == HTTP_POST) {
        if (!post_ok(gw, c, s, r)) return;
        if (path_is(p, "/api/logout")) {
            char cookie[256];
            csess_cookie_header(gw, s, cookie, sizeof cookie, true);
            LOGI(gw, "console: '%s' signed out", s->agent);
            csess_end(gw, s);
            buf *b = &cons(gw)->scratch;
            buf_reset(b);
            buf_printf(b, "{\"status\":\"SIGNED_OUT\"}");
            cons_respond_json(gw, c, 200, b, cookie);
            return;
        }
        for (size_t i = 0; i < sizeof k_posts / sizeof k_posts[0]; i++)
            if (path_is(p, k_posts[i].path)) {
                api_post(gw, c, s, r, &k_posts[i]);
                return;
            }
        cons_respond_err(gw, c, 404, "ERR NOTFOUND", "no such API endpoint (docs/console.md)");
        return;
    }
    if (r->method != HTTP_GET) {
        cons_respond_err(gw, c, 405, "ERR SYNTAX", "the API takes GET and POST");
        return;
    }
    if (path_is(p, "/api/me")) {
        csess_w_me(gw, s, &cons(gw)->scratch);
        cons_respond_json(gw, c, 200, &cons(gw)->scratch, NULL);
    } else if (path_is(p, "/api/health")) {
        api_health(gw, c);
    } else if (path_is(p, "/api/events")) {
        api_events(gw, c, s, r);
    } else {
        api_get(gw, c, s, p);
    }
}

/* Parse and answer what the connection sent, one request at a time. */
static void cons_conn_process(gateway *gw, hconn *c) {
    while (c->in_use && !c->closing && !c->busy && !c->close_after && !c->sse) {
        size_t avail = c->in.len - c->in_off;
        if (avail == 0) break;
        http_req r;
        const char *why;
        int st = http_parse((const char *)c->in.data + c->in_off, avail, &r, &why);
        if (st == HTTP_INCOMPLETE) {
            if (!c->req_start_ms) c->req_start_ms = gw->now_ms;
            break;
        }
        if (st != HTTP_OK) {
            respond_fatal(gw, c, st == HTTP_TOOBIG ? (r.head_toobig ? 431 : 413) : st == HTTP_UNSUPPORTED ? 501 : 400, why);
            break;
        }
        cons(gw)->requests++;
        c->close_after = !r.keep_alive;
        c->last_ms = gw->now_ms;
        if (path_has(r.path, "/api/")) route_api(gw, c, &r);
        else route_page(gw, c, &r);
        c->in_off += (uint32_t)r.total;
    }
    if (c->in_use && !c->closing) conn_arm_recv(gw, c);
}

static void on_recv(gateway *gw, hconn *c, int res) {
    c->recv_inflight = false;
    c->inflight--;
    if (res <= 0 || c->closing) {
        cons_conn_close(gw, c);
        return;
    }
    c->last_ms = gw->now_ms;
    if (c->tls) {
        conn_compact(c); /* TLS: no receive ever points into in */
        int st = tls_on_recv(&cons(gw)->tlss, c->tls, (size_t)res, &c->in);
        if (st == TLS_CLOSED || st == TLS_FAILED) {
            c->close_after = true; /* an alert may wait to be sent */
            c->busy = false;
            cons_conn_arm_send(gw, c);
            if (!c->send_inflight) cons_conn_close(gw, c);
            return;
        }
        if (st == TLS_TOOBIG) {
            respond_fatal(gw, c, 413, "request too large");
            return;
        }
    } else {
        c->in.len += (size_t)res;
    }
    if (c->tls) cons_conn_arm_send(gw, c); /* handshake flights */
    if (c->sse || c->lingering) { /* nothing more to answer: drop it, keep watching for EOF */
        c->in.len = c->in_off = 0;
        conn_arm_recv(gw, c);
        return;
    }
    cons_conn_process(gw, c);
}

/* The last answer is sent: shut the write side and read until the peer closes (at most
 * CONSOLE_LINGER_MS), so that closing with its unread request bytes (an oversized one) does
 * not reset the connection and destroy the answer before the peer read it. */
static void linger(gateway *gw, hconn *c) {
    if (c->tls) { /* a close_notify, sent, then closed (see conn_flushed) */
        if (c->lingering) {
            cons_conn_close(gw, c);
            return;
        }
        c->lingering = true;
        tls_shutdown(c->tls);
        cons_conn_arm_send(gw, c);
        if (!c->send_inflight) cons_conn_close(gw, c);
        return;
    }
    if (c->lingering) return;
    c->lingering = true;
    c->last_ms = gw->now_ms;
    shutdown(c->fd, SHUT_WR);
    if (!c->recv_inflight) c->in.len = c->in_off = 0; /* else its completion drops it */
    conn_arm_recv(gw, c);
}

static bool conn_flushed(const hconn *c) {
    const uint8_t *p;
    return c->out.len == 0 && (!c->tls || tls_send_data(c->tls, &p) == 0);
}

static void on_send(gateway *gw, hconn *c, int res) {
    c->send_inflight = false;
    c->inflight--;
    if (!c->tls) buf_unpin(&c->out);
    if (res <= 0 || c->closing) {
        cons_conn_close(gw, c);
        return;
    }
    if (c->tls) {
        tls_on_sent(c->tls, (size_t)res);
        if (tls_stalled(c->tls) && tls_on_recv(&cons(gw)->tlss, c->tls, 0, &c->in) != TLS_OK) {
            cons_conn_close(gw, c);
            return;
        }
    } else {
        buf_consume(&c->out, (size_t)res);
    }
    c->last_ms = gw->now_ms;
    if (!conn_flushed(c)) {
        cons_conn_arm_send(gw, c);
    } else if (c->close_after && !c->sse && !c->busy) {
        linger(gw, c);
    } else {
        cons_conn_process(gw, c);
    }
}

void console_on_cqe(gateway *gw, uint32_t op, uint32_t idx, int res, uint32_t flags) {
    console *cs = cons(gw);
    if (op == OP_ACCEPT) {
        on_accept(gw, res, flags);
    } else if (op == OP_RECV || op == OP_SEND) {
        assert(idx < CONSOLE_CONNS_MAX && cs->conns[idx].in_use);
        hconn *c = &cs->conns[idx];
        if (op == OP_RECV) on_recv(gw, c, res);
        else on_send(gw, c, res);
        if (c->in_use && c->closing && c->inflight == 0) conn_release(gw, c);
    } else {
        assert(idx < CONSOLE_SESSIONS_MAX && cs->sess[idx].in_use);
        session *s = &cs->sess[idx];
        if (op == OP_BRECV) csess_on_recv(gw, s, res);
        else csess_on_sent(gw, s, res);
    }
}

/* ---- answers from the sessions (csess_hooks, given to them at init) ----------------- */

/* A waiter its session's end leaves unanswered: streams are closed by the sweep. */
static void dropped(gateway *gw, waiter w) {
    hconn *c = cons_waiter_conn(cons(gw), &w);
    if (!c || w.what == W_SSE) return;
    if (w.what == W_LOGIN) cons_respond_err(gw, c, 503, "ERR BUSY", "the gateway closed the session's connection");
    else cons_respond_err(gw, c, 401, "NOAUTH", "session ended; sign in again");
}

static void deliver_login(gateway *gw, session *s, hconn *c, const char *p, size_t n) {
    console *cs = cons(gw);
    if (p[0] == '-') {
        const char *code, *why;
        size_t cl, wl;
        respjson_error(p, n, &code, &cl, &why, &wl);
        int st = cons_status_of(code, cl);
        cs->login_failures++;
        if (c) cons_respond_err(gw, c, st == 503 ? 503 : 401, st == 503 ? "ERR BUSY" : "WRONGPASS", "%.*s",
                           (int)wl, why);
        csess_end(gw, s);
        return;
    }
    const cfg_agent *a = config_agent(&gw->cfg, s->agent, strlen(s->agent));
    if (!a) { /* reloaded away between the AUTH and now */
        if (c) cons_respond_err(gw, c, 401, "WRONGPASS", "invalid agent or secret");
        csess_end(gw, s);
        return;
    }
    s->ready = true;
    s->role = (int)a->role;
    s->expires_ms = gw->now_ms + (int64_t)gw->cfg.console_session_ttl_s * 1000; /* from sign-in */
    /* last_cmd_ms stays the HELLO's: the gateway counts idleness from what it received,
     * and the KDF may have taken a while since. */
    cs->logins++;
    LOGI(gw, "console: '%s' signed in (role %s)", s->agent, role_name(a->role));
    if (!c) return;
    char cookie[256];
    csess_cookie_header(gw, s, cookie, sizeof cookie, false);
    csess_w_me(gw, s, &cs->scratch);
    cons_respond_json(gw, c, 200, &cs->scratch, cookie);
}

static void deliver_sse(gateway *gw, hconn *c, const char *p, size_t n) {
    console *cs = cons(gw);
    if (p[0] == '-') return; /* e.g. not durable any more after a journal failure: skip */
    if (c->out.len > CONSOLE_SSE_OUT_BYTES_MAX) { /* a reader that does not read: it reconnects */
        cons_conn_close(gw, c);
        return;
    }
    size_t before = c->out.len;
    if (buf_append(&c->out, "event: order\ndata: ", 19) != 0 || respjson_convert(p, n, &c->out) <= 0 ||
        buf_append(&c->out, "\n\n", 2) != 0) {
        buf_truncate(&c->out, before); /* a reader that does not read: it is closed */
        cons_conn_close(gw, c);
        return;
    }
    cs->events++;
    c->sse_ping_ms = gw->now_ms + CONSOLE_SSE_PING_MS;
    cons_conn_arm_send(gw, c);
}

static void deliver(gateway *gw, session *s, waiter w, const char *p, size_t n) {
    console *cs = cons(gw);
    if (w.what == W_PING) return;
    hconn *c = cons_waiter_conn(cs, &w);
    if (w.what == W_LOGIN) {
        deliver_login(gw, s, c, p, n);
        return;
    }
    if (!c) return;
    if (w.what == W_SSE) {
        deliver_sse(gw, c, p, n);
        return;
    }
    if (p[0] == '-') {
        const char *code, *why;
        size_t cl, wl;
        respjson_error(p, n, &code, &cl, &why, &wl);
        char cb[32];
        snprintf(cb, sizeof cb, "%.*s", (int)(cl < sizeof cb ? cl : sizeof cb - 1), code);
        cons_respond_err(gw, c, cons_status_of(code, cl), cb, "%.*s", (int)wl, why);
    } else {
        buf_reset(&cs->scratch);
        if (respjson_convert(p, n, &cs->scratch) <= 0) {
            cons_respond_err(gw, c, 503, "ERR TOOBIG", "the answer could not be shown as JSON");
        } else {
            cons_respond_json(gw, c, 200, &cs->scratch, NULL);
        }
    }
    cons_conn_process(gw, c); /* requests pipelined behind this one */
}

/* ---- event streams and housekeeping ----------------------------------------------- */

static session *stream_session(console *cs, const hconn *c) {
    session *s = &cs->sess[c->sess];
    return s->in_use && s->ready && s->gen == c->sess_gen ? s : NULL;
}

/* The orders of c's case whose newest record became durable since the last look: asked
 * for with STATUS on the stream's session, each answer one event. Too many at once (a
 * burst into one case): one `resync` event, the page reloads the case. */
static void sse_look(gateway *gw, hconn *c, session *s, uint64_t durable) {
    const orders *o = &gw->o;
    const case_ent *ce = orders_find_case(o, c->sse_case, (uint32_t)strlen(c->sse_case));
    uint32_t ids[CONSOLE_SSE_CHANGES_MAX], n = 0;
    bool over = false;
    for (uint32_t l = ce ? ce->orders_head : 0; l && !over; l = o->links[l].next) {
        const order *ord = &o->v[o->links[l].val];
        if (ord->last_lsn <= c->sse_seen_lsn || ord->last_lsn > durable) continue;
        if (n == CONSOLE_SSE_CHANGES_MAX || n >= CONSOLE_PIPELINE_MAX - s->qlen) over = true;
        else ids[n++] = ord->no;
    }
    c->sse_seen_lsn = durable;
    if (over) {
        buf_printf(&c->out, "event: resync\ndata: {}\n\n");
        cons_conn_arm_send(gw, c);
        return;
    }
    waiter w = {.conn = cons_conn_idx(cons(gw), c), .gen = c->gen, .what = W_SSE};
    for (uint32_t i = 0; i < n; i++) {
        char id[32];
        order_id_format(id, sizeof id, ids[i]);
        const char *argv[] = {"STATUS", id};
        size_t lens[] = {6, strlen(id)};
        csess_command(gw, s, w, 2, argv, lens);
    }
}

static void sse_scan(gateway *gw) {
    console *cs = cons(gw);
    uint64_t durable = commit_acked_lsn(&gw->commit);
    cs->scanned_lsn = durable;
    cs->next_scan_ms = gw->now_ms + CONSOLE_SSE_TICK_MS;
    for (uint32_t i = 0; i < CONSOLE_CONNS_MAX; i++) {
        hconn *c = &cs->conns[i];
        if (!c->in_use || c->closing || !c->sse || c->sse_seen_lsn >= durable) continue;
        session *s = stream_session(cs, c);
        if (s) sse_look(gw, c, s, durable);
    }
}

/* Once a second: deadlines of connections, ends of sessions and their streams, pings. */
static void sweep(gateway *gw) {
    console *cs = cons(gw);
    cs->next_sweep_ms = gw->now_ms + 1000;
    for (uint32_t i = 0; i < CONSOLE_SESSIONS_MAX; i++) {
        session *s = &cs->sess[i];
        if (s->in_use && s->ready && gw->now_ms >= s->expires_ms) {
            LOGI(gw, "console: session of '%s' expired", s->agent);
            csess_end(gw, s);
        } else if (s->in_use && s->ready && gw->cfg.idle_timeout_s &&
                   gw->now_ms - s->last_cmd_ms >= (int64_t)gw->cfg.idle_timeout_s * 1000 / 3) {
            /* The gateway closes clients idle for idle_timeout: a signed-in page that only
             * looks at a case must not lose its session to it. */
            static const char *const ping[] = {"PING"};
            static const size_t ping_len[] = {4};
            csess_command(gw, s, (waiter){.what = W_PING}, 1, ping, ping_len);
        }
    }
    for (uint32_t i = 0; i < CONSOLE_CONNS_MAX; i++) {
        hconn *c = &cs->conns[i];
        if (!c->in_use || c->closing) continue;
        if (c->sse) {
            if (!stream_session(cs, c)) {
                buf_printf(&c->out, "event: end\ndata: {\"reason\":\"session ended\"}\n\n");
                c->sse = false; /* closes once sent */
                cs->nsse--;
                cons_conn_arm_send(gw, c);
            } else if (gw->now_ms >= c->sse_ping_ms) {
                c->sse_ping_ms = gw->now_ms + CONSOLE_SSE_PING_MS;
                buf_printf(&c->out, ": ping\n\n");
                cons_conn_arm_send(gw, c);
            }
            continue;
        }
        if (c->lingering) {
            if (gw->now_ms - c->last_ms > CONSOLE_LINGER_MS) cons_conn_close(gw, c);
            continue;
        }
        if (c->tls && !tls_handshake_done(c->tls) && tls_handshake_overdue(c->tls, gw->now_ms)) {
            cs->tlss.handshake_failures++;
            cons_conn_close(gw, c);
            continue;
        }
        if (c->busy || c->send_inflight) continue;
        if (c->req_start_ms && gw->now_ms - c->req_start_ms > CONSOLE_REQUEST_MS_MAX) {
            respond_fatal(gw, c, 408, "request not complete in time");
        } else if (!c->req_start_ms && c->in.len == c->in_off && gw->now_ms - c->last_ms > CONSOLE_IDLE_MS_MAX) {
            cons_conn_close(gw, c);
        }
    }
}

void console_tick(gateway *gw) {
    console *cs = cons(gw);
    if (!cs) return;
    if (cs->nsse && commit_acked_lsn(&gw->commit) > cs->scanned_lsn && gw->now_ms >= cs->next_scan_ms) sse_scan(gw);
    if (gw->now_ms >= cs->next_sweep_ms) sweep(gw);
}

int64_t console_next_due_us(gateway *gw, int64_t now_us) {
    console *cs = cons(gw);
    if (!cs || !cs->nsse || commit_acked_lsn(&gw->commit) <= cs->scanned_lsn) return INT64_MAX;
    int64_t due = cs->next_scan_ms * 1000;
    return due > now_us ? due : now_us;
}

/* ---- metrics ---------------------------------------------------------------------- */

/* One unlabelled series, its family opened through prom.h's checks. */
static void w_family(prom_writer *w, const char *name, prom_type type, const char *help, uint64_t v) {
    prom_family(w, name, type, help);
    prom_sample(w, NULL, NULL, v);
}

void console_metrics(gateway *gw, prom_writer *b) {
    console *cs = cons(gw);
    if (!cs) return;
    uint32_t open = 0;
    for (uint32_t i = 0; i < CONSOLE_CONNS_MAX; i++) open += cs->conns[i].in_use;
    w_family(b, "stopgate_console_sessions", PROM_GAUGE, "Console sessions signed in or signing in.", cs->nsessions);
    w_family(b, "stopgate_console_connections", PROM_GAUGE, "Console HTTP connections open (event streams included).", open);
    w_family(b, "stopgate_console_event_streams", PROM_GAUGE, "Console event streams (SSE) open.", cs->nsse);
    w_family(b, "stopgate_console_requests_total", PROM_COUNTER, "Console HTTP requests parsed.", cs->requests);
    w_family(b, "stopgate_console_connections_refused_total", PROM_COUNTER,
             "Console connections closed at accept: all slots in use, or draining.", cs->refused_conns);
    w_family(b, "stopgate_console_logins_total", PROM_COUNTER, "Console sign-ins granted.", cs->logins);
    w_family(b, "stopgate_console_login_failures_total", PROM_COUNTER,
             "Console sign-ins refused (wrong secret, rate-limited, busy).", cs->login_failures);
    w_family(b, "stopgate_console_events_total", PROM_COUNTER, "Console order events sent on event streams.", cs->events);
}

/* ---- start and stop --------------------------------------------------------------- */

int console_init(gateway *gw, char *err, size_t errcap) {
    gw->console = NULL;
    if (!gw->cfg.console.enabled) return 0;
    console *cs = calloc(1, sizeof *cs);
    if (!cs) return snprintf(err, errcap, "out of memory"), -1;
    cs->conns = calloc(CONSOLE_CONNS_MAX, sizeof *cs->conns);
    cs->sess = calloc(CONSOLE_SESSIONS_MAX, sizeof *cs->sess);
    cs->sess_up = (csess_hooks){.deliver = deliver, .dropped = dropped};
    buf_init(&cs->scratch, CONSOLE_OUT_BYTES_MAX);
    gw->console = cs;
    if (!cs->conns || !cs->sess) return snprintf(err, errcap, "out of memory"), -1;
    for (uint32_t i = 0; i < CONSOLE_CONNS_MAX; i++) {
        hconn *c = &cs->conns[i];
        c->fd = -1;
        buf_init(&c->in, HTTP_REQUEST_BYTES_MAX);
        buf_init(&c->out, CONSOLE_OUT_BYTES_MAX);
        if (buf_reserve(&c->in, HTTP_REQUEST_BYTES_MAX) != 0) return snprintf(err, errcap, "out of memory"), -1;
    }
    for (uint32_t i = 0; i < CONSOLE_SESSIONS_MAX; i++) {
        cs->sess[i].fd = -1;
        buf_init(&cs->sess[i].rbuf, CONSOLE_REPLY_BYTES_MAX);
        buf_init(&cs->sess[i].sbuf, BACKEND_SEND_BYTES_MAX);
    }
    cs->listen_fd = -1;
    if (tls_server_init_console(&cs->tlss, &gw->cfg, err, errcap) != 0) return -1;
    cs->tls = cs->tlss.ctx != NULL;
    cs->listen_fd = listener_open(&gw->cfg.console, SOCK_STREAM, err, errcap);
    if (cs->listen_fd < 0) return -1;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_multishot_accept(sqe, cs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    cons_sqe_ud(sqe, OP_ACCEPT, 0);
    LOGI(gw, "console: agents' console on %s://%s:%u/", cs->tls ? "https" : "http", gw->cfg.console.host,
         gw->cfg.console.port);
    return 0;
}

void console_close(gateway *gw) {
    console *cs = cons(gw);
    if (!cs) return;
    if (cs->listen_fd >= 0) close(cs->listen_fd);
    for (uint32_t i = 0; cs->conns && i < CONSOLE_CONNS_MAX; i++) {
        if (cs->conns[i].fd >= 0) close(cs->conns[i].fd);
        buf_free(&cs->conns[i].in);
        buf_free(&cs->conns[i].out);
    }
    for (uint32_t i = 0; cs->sess && i < CONSOLE_SESSIONS_MAX; i++) {
        if (cs->sess[i].fd >= 0) close(cs->sess[i].fd);
        buf_free(&cs->sess[i].rbuf);
        buf_free(&cs->sess[i].sbuf);
    }
    buf_free(&cs->scratch);
    for (uint32_t i = 0; cs->conns && i < CONSOLE_CONNS_MAX; i++)
        if (cs->conns[i].tls) tls_conn_free(&cs->tlss, cs->conns[i].tls);
    tls_server_free(&cs->tlss);
    free(cs->conns);
    free(cs->sess);
    free(cs);
    gw->console = NULL;
}
