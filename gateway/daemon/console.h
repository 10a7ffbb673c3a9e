/*
 * console: the agents' web console (SPEC §12, docs/console.md), served by stopgated on
 * [gateway] console over HTTP/1.1 (HTTPS with the TLS listener's keys when tls_listen,
 * tls_cert and tls_key are set), on the io_uring loop like /metrics.
 *
 * What it owns:
 * - The HTTP listener and up to CONSOLE_CONNS_MAX connections, each with one request buffer
 *   (HTTP_REQUEST_BYTES_MAX, parsed by http.h) and its output, all reserved at start. Every
 *   socket operation goes through the ring; nothing here blocks or runs a KDF.
 * - The static page (gateway/console/assets/, embedded in the binary at build time).
 * - Up to CONSOLE_SESSIONS_MAX sessions. A session is a RESP connection to this very
 *   gateway (one end of a socketpair given to server_adopt() with the browser's address),
 *   signed in with HELLO 3 AUTH: so login is the RESP AUTH (Argon2id off the loop in authq,
 *   the per-address failure limit, the log line), and every API call is the RESP command an
 *   agent would type, checked by the same role table and engine functions, answered only
 *   once durable. The console turns the RESP3 reply into JSON (respjson.h). The session
 *   never keeps the secret: the cookie names the session, the RESP connection is who it is.
 * - Event streams (SSE): after each durable batch (at most every CONSOLE_SSE_TICK_MS) the
 *   orders of a watched case whose last record is newly durable are asked for with STATUS
 *   on the stream's session and sent as one `order` event each.
 *
 * Security: cookie HttpOnly, SameSite=Strict (+ Secure over TLS); every POST carries the
 * session's CSRF token in X-CSRF-Token and a JSON Content-Type; sessions end after
 * [gateway] console_session_ttl, at logout, or when their RESP connection closes.
 *
 * Loop thread only.
 */
#ifndef SG_CONSOLE_H
#define SG_CONSOLE_H
#include <stdint.h>
#include <stddef.h>

struct gateway;
struct prom_writer;
typedef struct console console;

/* Listen on [gateway] console (nothing when off) and reserve every table. 0, or -1 with err. */
int console_init(struct gateway *gw, char *err, size_t errcap);
/* A completion of ours (UD_CONSOLE): op in aux, connection or session in idx. */
void console_on_cqe(struct gateway *gw, uint32_t op, uint32_t idx, int res, uint32_t flags);
/* Housekeeping on every turn of the loop: event streams, deadlines, expired sessions. */
void console_tick(struct gateway *gw);
/* Microseconds until console_tick has work (event streams waiting for their next look). */
int64_t console_next_due_us(struct gateway *gw, int64_t now_us);
void console_close(struct gateway *gw);
/* The console's families for /metrics (HELP and TYPE each; nothing when off). */
struct buf;
void console_metrics(struct gateway *gw, struct prom_writer *w);
#endif
