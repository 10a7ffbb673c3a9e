/*
 * admit: what each client address holds and has done, for admission (issue 15): its open
 * connections (capped per address) and its failed AUTHs in the current window (over the
 * limit, AUTH is refused without any KDF work).
 *
 * One table allocated at admit_init(), open addressing on the IPv4 address, linear probing
 * with backward-shift deletion: no allocation per connection or per AUTH. A slot lives while
 * its address holds a connection or an unexpired failure window. Connections are bounded by
 * max_clients; addresses that hold only a failure window are bounded by AUTH_FAIL_ADDRS_MAX
 * (past it a new address's failures are not recorded: counted in `untracked`, the limiter
 * fails open rather than refusing everybody). The capacity is twice the sum, so probes stay
 * short.
 *
 * Pure: the caller passes the time. Not thread-safe: the event loop owns it.
 */
#ifndef SG_ADMIT_H
#define SG_ADMIT_H
#include <stdbool.h>
#include <stdint.h>

#define AUTH_FAIL_ADDRS_MAX 16384 /* addresses remembered only for their failed AUTHs */

typedef struct admit_cfg {
    uint32_t conns_max;      /* connections per address; 0 = no cap */
    uint32_t fail_max;       /* failed AUTHs per address per window; 0 = no limiter */
    uint32_t fail_window_ms; /* the window opens at the first failure */
} admit_cfg;

typedef struct admit_slot {
    uint32_t addr; /* IPv4, network order */
    uint32_t conns, fails;
    bool used;
    int64_t window_end_ms; /* fails count until then */
} admit_slot;

typedef struct admit {
    admit_slot *v;
    uint32_t mask;
    uint32_t used;      /* slots in use */
    uint32_t fail_only; /* of which hold no connection, only a failure window */
    admit_cfg cfg;
    uint64_t untracked; /* failures not recorded: AUTH_FAIL_ADDRS_MAX addresses already held */
} admit;

/* Table for clients_max connections. 0, or -ENOMEM. */
int admit_init(admit *a, uint32_t clients_max, admit_cfg cfg);
void admit_free(admit *a);
/* A new connection from addr: true (counted), or false when addr already holds conns_max. */
bool admit_conn_open(admit *a, uint32_t addr);
/* One of addr's connections closed (it must have been counted by admit_conn_open). */
void admit_conn_close(admit *a, uint32_t addr);
/* True while addr has failed fail_max AUTHs in its current window. */
bool admit_auth_limited(admit *a, uint32_t addr, int64_t now_ms);
/* An AUTH from addr goes to the KDF: counted as a failure up front, so a burst of AUTHs in
 * flight at once cannot overshoot the limit. */
void admit_auth_attempt(admit *a, uint32_t addr, int64_t now_ms);
/* That AUTH succeeded: take the failure back. */
void admit_auth_succeeded(admit *a, uint32_t addr);
/* Drop failure windows that ended (call about once a second: a pass over the table). */
void admit_sweep(admit *a, int64_t now_ms);
/* addr's entry, or NULL (tests and metrics). */
const admit_slot *admit_find(const admit *a, uint32_t addr);
#endif
