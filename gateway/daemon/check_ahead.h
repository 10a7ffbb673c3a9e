/*
 * check_ahead: prefetch for the commands a client has pipelined (docs/PERFORMANCE.md (h) and
 * "Issue 13, burst: prefetch across the receive").
 *
 * A CHECK reads two places at random addresses: the list table's tag line and slot, and the
 * order index's slot for the account (is an order live on it?). A STOP or FREEZE reads the
 * same, and the request-id index's slot. Executed one after the other, each command waits for
 * these from memory (and, on a host with shadow page tables, for a TLB miss per table). While
 * process_input executes a client's buffered commands, the look ahead keeps CHECK_AHEAD_MAX
 * commands ahead of the one executing and starts those loads, so they arrive while the
 * commands before them run - across the whole receive, not only its first commands (a
 * burst's receive holds ~400 STOPs). It changes nothing: a command it misreads costs one
 * wasted prefetch, and it reads no byte at or past the end of the input it is given.
 */
#ifndef SG_CHECK_AHEAD_H
#define SG_CHECK_AHEAD_H
#include <stdbool.h>
#include <stddef.h>

#include "gateway.h"

/* Commands kept ahead: a client's pipeline of 16 and then some, and few enough that the first
 * lines fetched are still in cache when their command runs. */
#define CHECK_AHEAD_MAX 32

/* Where the look ahead is in one input buffer: the offset after the last command it read,
 * and whether it stopped there (an incomplete command, or one it does not read). */
typedef struct check_ahead_pos {
    size_t off;
    bool stopped;
} check_ahead_pos;

/* Before the command at in[0] runs: prefetch for the CHECK_AHEAD_MAX commands after it. */
void check_ahead(const gateway *gw, check_ahead_pos *ah, const char *in, size_t len);
/* The commands in in[0..parsed) have run: prefetch for one more, so that CHECK_AHEAD_MAX stay
 * ahead; when parsing has caught up with the look ahead, start again from parsed. */
void check_ahead_step(const gateway *gw, check_ahead_pos *ah, const char *in, size_t len,
                      size_t parsed);
#endif
