/*
 * follower: the gateway's side of following the cluster log and of taking over (SPEC §10,
 * docs/cluster.md "Followers", "Failover", "A returning leader"). Binds follow.c (the log
 * reader, which knows nothing of the gateway) to the commit layer, the lists and the engine,
 * and is what cluster.c calls for everything a follower and a new leader do:
 *
 *   start          follower_start: follow the log from the replayed journal's last lsn
 *   etcd results   follower_on_result: the ones whose cookie follow_owns()
 *   each turn      follower_tick: P/members/<name>, retries, a takeover's progress
 *   lease          follower_set_lease: P/members/<name> is put under it
 *   campaign won   engine_on_lead (engine.c) -> follower_take_over: read the log to its end,
 *                  apply it, then rebuild the outbox (every instruction without a final bank
 *                  answer, resent with its instruction id) and cluster_lead_ready()
 *   deposed        follower_deposed: a journal holding only what the log has follows in place
 *                  (follow_rejoin; reads served throughout); one with a tail the log may not
 *                  hold is started again in place (follower_rejoin, exec) once etcd answers,
 *                  and at start reconcile cuts that tail and the member follows
 *   shared memory  follower_tick marks the table stale (sgl_header.stale) while the log
 *                  reader is stale or failed
 *
 * Records applied from the log go through commit_replay (the recovery path); an order's
 * frozen mark in shared memory is updated with it (lists_sync_order), a LIST record reaches
 * the shared table as it is applied. Nothing here journals a record of its own.
 */
#ifndef SG_FOLLOWER_H
#define SG_FOLLOWER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd.h"

struct gateway;

/* Before engine_recover, in cluster mode: the journal_opts.keep_through_lsn that cuts what
 * the cluster never committed (0: nothing). 0, or -1 with err. */
int follower_reconcile(struct gateway *gw, uint64_t *keep, char *err, size_t errcap);
/* Start following, on ec (the cluster's client), after the journal was replayed and attached. */
int follower_start(struct gateway *gw, etcd_client *ec, char *err, size_t errcap);
bool follower_owns(uint64_t cookie);
void follower_on_result(struct gateway *gw, const etcd_result *r);
void follower_tick(struct gateway *gw);
void follower_set_lease(struct gateway *gw, int64_t lease, const char *published_role);
/* Campaign won: catch up with the log. Returns 1 (ready later: follower_tick calls
 * engine_lead_caught_up, then cluster_lead_ready) or -1 (stale/failed: must not lead). */
int follower_take_over(struct gateway *gw);
/* Deposed (cluster.c step_down), after the answers in flight were refused: follow in place
 * when the journal holds only what the log has, else follower_rejoin once etcd answers. */
void follower_deposed(struct gateway *gw);
/* Start again in place (exec): at start, reconcile cuts what the cluster never committed. */
void follower_rejoin(struct gateway *gw, const char *why);
/* "live", "catchup", "stale", "failed", or "off"; and whether reads may be served. */
const char *follower_state(const struct gateway *gw);
bool follower_stale(const struct gateway *gw);
const char *follower_stale_why(const struct gateway *gw);
/* INFO cluster's lines about the log reader. */
struct buf;
void follower_info(const struct gateway *gw, struct buf *b);
uint64_t follower_applied_lsn(const struct gateway *gw);
int64_t follower_applied_rev(const struct gateway *gw);
/* Smallest applied lsn over the members present (the leader's trim bound); 0 unknown. */
uint64_t follower_members_min_applied(const struct gateway *gw);
#endif
