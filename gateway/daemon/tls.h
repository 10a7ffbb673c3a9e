/*
 * tls: TLS for RESP clients over the io_uring loop (SPEC §11, docs/architecture.md "TLS").
 *
 * OpenSSL never touches a socket and never blocks. Each connection's SSL is wired to a BIO
 * pair whose two buffers (TLS_IN_BYTES, TLS_OUT_BYTES, allocated at accept) are the only
 * place ciphertext lives:
 *   in:  io_uring receives straight into the pair (tls_recv_room), tls_on_recv() commits
 *        the bytes, drives the handshake, and SSL_read()s every complete record into the
 *        client's RESP input buffer;
 *   out: tls_encrypt() SSL_write()s plaintext replies the server has released (durable
 *        ones only: the caller passes nothing past its reply marks) into the pair, and
 *        io_uring sends straight out of it (tls_send_data / tls_on_sent).
 *
 * Contract:
 * - One tls_conn per TLS client, created at accept, freed by tls_conn_free() at close.
 *   Nothing is allocated per request (OpenSSL keeps its record buffers for the connection).
 * - Ownership: tls_conn owns its SSL and both ciphertext buffers. The plaintext buffers are
 *   the client's (buf.h): tls only appends to `in` and only reads the bytes given to
 *   tls_encrypt(), which the caller then drops from its output.
 * - The pointer tls_recv_room() gives stays valid and is written only by the kernel until
 *   tls_on_recv(); the pointer tls_send_data() gives stays valid and unchanged until
 *   tls_on_sent(). So at most one receive and one send may be in flight per connection,
 *   and tls_on_recv() must not run while a receive is in flight (it is that receive's
 *   completion).
 * - A handshake costs the loop only its CPU work: a peer that sends garbage fails at once,
 *   a peer that stalls is closed by the caller once tls_handshake_overdue() says so.
 * - Loop thread only; not thread-safe.
 */
#ifndef SG_TLS_H
#define SG_TLS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

typedef struct tls_conn tls_conn;

/* The listener's TLS state and its counters (metrics.c shows them). */
typedef struct tls_server {
    struct ssl_ctx_st *ctx; /* NULL: TLS off */
    uint64_t handshakes, handshake_failures;
    uint32_t clients;     /* TLS connections open now */
    uint32_t handshaking; /* of which still in the handshake */
    int64_t fail_log_next_ms; /* failures are logged once a second at most */
} tls_server;

enum tls_status {
    TLS_OK = 0,     /* go on: maybe plaintext was appended, maybe ciphertext waits to be sent */
    TLS_CLOSED,     /* the peer closed the TLS session (close_notify) or the stream ended */
    TLS_FAILED,     /* handshake or record failure: an alert may wait to be sent, then close */
    TLS_TOOBIG,     /* the RESP input buffer cannot grow: answer ERR TOOBIG and close */
};

/* Load tls_cert, tls_key (and tls_ca: then client certificates are required and verified)
 * into a server context. 0, or -1 with err = "file:line: reason" naming the config key.
 * --check-config runs it too, so a bad pair is refused before the gateway starts. */
int tls_server_init(tls_server *t, const config *cfg, char *err, size_t errcap);
/* The same for the agents' console (console.h): a context when tls_cert is set, whether
 * tls_listen is or not, with the same certificate and key; no client certificates asked
 * for (agents sign in with their secret in a browser). 0, or -1 with err. */
int tls_server_init_console(tls_server *t, const config *cfg, char *err, size_t errcap);
void tls_server_free(tls_server *t);

/* A new server-side connection, handshake pending. NULL when out of memory. */
tls_conn *tls_conn_new(tls_server *t, int64_t now_ms);
void tls_conn_free(tls_server *t, tls_conn *tc);

/* Where the next receive may write ciphertext, and how much; 0 when the in buffer is full
 * (cannot happen after tls_on_recv returned TLS_OK: it drains the buffer). */
size_t tls_recv_room(tls_conn *tc, uint8_t **p);
/* n bytes landed at tls_recv_room()'s pointer: handshake, then decrypt into in. n = 0
 * resumes a stalled connection (below) without new bytes. */
int tls_on_recv(tls_server *t, tls_conn *tc, size_t n, buf *in);

/* Encrypt up to len bytes of released plaintext; returns how many were taken (the caller
 * drops them from its output), which is less than len when the out buffer is full; -1 on a
 * fatal error (close). Nothing is taken before the handshake is done. */
long tls_encrypt(tls_conn *tc, const uint8_t *p, size_t len);
/* Ciphertext waiting to be sent (0: none), and that n bytes of it were sent. */
size_t tls_send_data(tls_conn *tc, const uint8_t **p);
void tls_on_sent(tls_conn *tc, size_t n);

/* Queue a close_notify (once, after a done handshake); send it, then close the socket. */
void tls_shutdown(tls_conn *tc);
bool tls_handshake_done(const tls_conn *tc);
/* SSL stopped reading because it must write first (its handshake flight, or the answer to a
 * KeyUpdate) and the out buffer is full. Arm no receive while stalled; once some ciphertext
 * was sent, call tls_on_recv(.., 0, ..) to resume. */
bool tls_stalled(const tls_conn *tc);
/* Input already taken from the socket that tls_on_recv left in OpenSSL (the RESP input was
 * at its cap): decrypt it (tls_on_recv with n = 0) before asking the socket for more. */
bool tls_plain_waiting(const tls_conn *tc);
/* Still in the handshake TLS_HANDSHAKE_MS_MAX after accept. */
bool tls_handshake_overdue(const tls_conn *tc, int64_t now_ms);
/* The reason of the last failure, for the log ("" when none). */
const char *tls_conn_error(const tls_conn *tc);
#endif
