/*
 * check_ahead: prefetch for the CHECKs a client has pipelined (docs/PERFORMANCE.md (h)).
 *
 * A CHECK reads two places at random addresses: the list table's tag line and slot, and the
 * order index's slot for the account (is an order live on it?). Executed one after the other,
 * each CHECK waits for both from memory (half the gateway's CPU under a 50 x 16 CHECK load).
 * Before process_input executes a client's buffered commands, check_ahead looks at the CHECKs
 * behind the first one and starts those loads, so they arrive while the commands before them
 * run. It changes nothing: a command it misreads costs one wasted prefetch.
 */
#ifndef SG_CHECK_AHEAD_H
#define SG_CHECK_AHEAD_H
#include <stddef.h>

#include "gateway.h"

/* Commands looked at per call: a client's pipeline of 16 and then some, and few enough that
 * the first lines fetched are still in cache when their CHECK runs. */
#define CHECK_AHEAD_MAX 32

void check_ahead(const gateway *gw, const char *in, size_t len);
#endif
