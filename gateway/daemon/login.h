/*
 * login: AUTH and admission of TCP clients, on the event loop (issue 15).
 *
 * - AUTH never runs Argon2id on the loop: a remembered secret (auth_cache_hit) answers at
 *   once, anything else goes to the authq workers. The client holds its pipeline until the
 *   answer (c->auth_pending: nothing after the AUTH is parsed, nothing more is read), while
 *   every other client is served. The queue full: ERR BUSY at once.
 * - An unknown agent name is checked against a fake hash (auth_fake_hash) by the same KDF,
 *   and refused with the same answer: timing does not tell names apart.
 * - Per client address (admit.h): at most max_clients_per_address connections; after
 *   auth_fail_limit failed AUTHs in auth_fail_window seconds, AUTH is refused at once
 *   (WRONGPASS, no KDF) until the window ends.
 * - A connection is "admitted" once it authenticated (or ran an anonymous CHECK where
 *   allow_anonymous_check permits it). Before that it may hold CLIENT_PREAUTH_BYTES_MAX of
 *   input and must be admitted within auth_timeout seconds, whatever it sends (slowloris).
 *   An AUTH still being verified at the deadline decides: granted, the connection stays;
 *   refused, it is closed after the answer.
 * - Failed AUTHs are counted (stopgate_auth_failures_total) and logged with the client's
 *   address, at most AUTH_LOG_LINES_PER_S lines a second; the next line says how many were
 *   suppressed.
 */
#ifndef SG_LOGIN_H
#define SG_LOGIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gateway;
struct client;

enum login_rc {
    LOGIN_OK,      /* authenticated now (remembered secret) */
    LOGIN_FAIL,    /* refused now: the address is over its failure limit, or a bad argument */
    LOGIN_BUSY,    /* AUTH_QUEUE_MAX verifications already queued: answer ERR BUSY */
    LOGIN_PENDING, /* verifying; the answer comes through commands_auth_done() */
};

typedef struct login_stats {
    uint64_t failures;        /* AUTHs refused (wrong secret, unknown name, rate-limited) */
    uint64_t limited;         /* of which refused by the per-address limiter, without KDF */
    uint64_t busy;            /* AUTHs answered ERR BUSY: the queue was full */
    uint64_t deadline_closed; /* connections closed for not authenticating in auth_timeout */
    uint64_t addr_refused;    /* connections refused: max_clients_per_address */
    uint64_t preauth_toobig;  /* connections closed: CLIENT_PREAUTH_BYTES_MAX before AUTH */
} login_stats;

typedef struct login_state {
    uint8_t pepper[32]; /* auth_pepper(): the server secret behind fake hashes and salts */
    uint64_t efd_val;   /* the armed eventfd read lands here */
    int64_t log_second_ms;
    uint32_t log_lines;      /* failure lines written in the current second */
    uint64_t log_suppressed; /* failure lines not written since the last one */
    login_stats st;
} login_state;

/* Admission table, auth workers, the eventfd read on the ring. 0, or -1 with err. */
int login_init(struct gateway *gw, char *err, size_t errcap);
void login_close(struct gateway *gw);
/* The agents changed (SIGHUP): new pepper. */
void login_agents_changed(struct gateway *gw);
/* AUTH name secret (also HELLO ... AUTH) from c. */
int login_start(struct gateway *gw, struct client *c, const char *name, size_t name_len,
                const char *secret, size_t secret_len);
/* The auth eventfd completed: answer the finished verifications. */
void login_on_cqe(struct gateway *gw, int res);
/* A new connection from addr: false when that address already holds its cap (refuse it). */
bool login_conn_open(struct gateway *gw, uint32_t addr);
void login_conn_closed(struct gateway *gw, struct client *c);
/* c authenticated (or ran an allowed anonymous CHECK): full input buffer, no AUTH deadline. */
void login_admitted(struct gateway *gw, struct client *c);
/* True when c was not admitted by its AUTH deadline (the caller closes it, counted). */
bool login_deadline_passed(struct gateway *gw, const struct client *c);
/* About once a second: failure windows that ended, suppressed log lines. */
void login_tick(struct gateway *gw);
/* The UDP HELLO parameters shown for an agent id nobody has (deterministic, see auth.h). */
void login_fake_udp_hello(const struct gateway *gw, uint32_t agent_id, uint64_t *opslimit,
                          uint64_t *memlimit, uint8_t salt[16]);
#endif
