/*
 * cluster: this member's place in the cluster of SPEC §10 (docs/cluster.md) - its role, its
 * lease, the leader it knows of - and the leader's half of the commit path: each journal batch
 * becomes one fenced etcd txn. gw->cl is NULL without [cluster] etcd (a single node: every
 * function below is then a no-op or says "standalone" / "may write").
 *
 * Role. A member starts as a follower. It grants itself a lease of [cluster] lease_ms (kept
 * alive by the etcd client every lease_ms / 3). A candidate campaigns with one txn: if
 * version(P/leader) == 0 then put P/leader = "<name> <advertise>" bound to its lease, else
 * range P/leader. Won: its epoch is the txn's revision (= create_revision of P/leader), and
 * engine_on_lead() is called; the member accepts writes once that says it is ready (at once,
 * or later through cluster_lead_ready() when a catch-up had to run first). Lost: the range
 * names the leader. A watch on P/leader follows the leader; its delete starts a campaign on a
 * candidate. A leader whose lease can no longer be sure (valid_until - 10 % - 50 ms,
 * etcd_lease_valid_until) stops accepting writes; a leader that sees P/leader re-created by
 * someone else, or loses its lease, becomes a follower.
 *
 * Commit (leader). commit.c hands each new journal batch to cluster (commit_ops.batch). It goes
 * out as: if create_revision(P/leader) == epoch then put P/log/<first lsn, 20 digits> = the
 * batch's frames, else range P/leader - ETCD_F_IDEMPOTENT, deadline [cluster]
 * commit_timeout_ms. Succeeded: commit_cluster_done(ok, revision), the batch's orders are
 * acknowledged once the disk has them too. Compare failed: the member is deposed; every reply
 * waiting for an unacknowledged record gets -READONLY <leader> <host:port>, and the batch is
 * settled as never committed (commit_cluster_done(!ok)). Deadline / unavailable: those replies
 * get ERR BUSY (not acknowledged: retry with the same request_id), new writes are refused with
 * ERR BUSY, and the SAME txn is sent again (CLUSTER_RESEND_MS apart) before any later batch,
 * so the log never has a gap; once it succeeds, writes are taken again.
 *
 * Threading: the event loop only. The etcd client's eventfd is armed on the loop's io_uring
 * (multishot POLLIN, UD_CLUSTER); the loop never blocks on etcd.
 */
#ifndef SG_CLUSTER_H
#define SG_CLUSTER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gateway;
struct buf;
struct prom_writer;
typedef struct cluster cluster;

typedef enum cluster_role {
    CLUSTER_STANDALONE = 0, /* no [cluster] etcd */
    CLUSTER_FOLLOWER,       /* applies the log, serves reads, answers writes READONLY */
    CLUSTER_LEADING,        /* won the campaign, catching up (engine_on_lead): no writes yet */
    CLUSTER_LEADER,         /* takes writes, drives the bank plugins */
} cluster_role;

#define CLUSTER_RESEND_MS 100 /* pause before the same txn is sent again after a failure */

/* What ROLE, INFO cluster and /metrics show. Strings are NUL-terminated copies. */
typedef struct cluster_view {
    cluster_role role;
    const char *role_name; /* "standalone" | "follower" | "leader" ("leader" while catching up too) */
    char name[80];
    char leader[80];      /* "" when none is known */
    char leader_addr[80]; /* host:port, "" when none is known */
    int64_t epoch;        /* this member's epoch while it leads; else the known leader's; 0 */
    uint64_t applied_lsn; /* acknowledged here: commit_acked_lsn() */
    uint64_t committed_lsn; /* last lsn this member committed to the etcd log (leader) */
    int64_t committed_rev;  /* etcd revision of that commit */
    bool writable;          /* cluster_write_refused() says no refusal */
    uint64_t batches, batch_bytes, commit_failures, deposed, campaigns, elected;
    uint64_t value_bytes;   /* bytes put as log values: batch_bytes after packing (logval.h) */
    uint64_t etcd_requests, etcd_errors, etcd_failovers, etcd_watch_reconnects, etcd_keepalive_errors;
} cluster_view;

/* What the cluster calls back up into: the engine, the server and the follower side
 * (follower.h) sit above it, so they are passed in at cluster_start instead of called by name
 * (cluster.c calls nothing above it). The context is the gateway every call already carries.
 * All are required. */
struct etcd_client;
typedef struct cluster_hooks {
    /* This member won a campaign (engine_on_lead): 0 when it may take writes at once, 1 when a
     * catch-up runs first (which then calls cluster_lead_ready). */
    int (*on_lead)(struct gateway *gw);
    /* Writes are accepted in this epoch: finish the cascades a crash or a failover interrupted
     * (engine_finish_cascades). */
    void (*on_writable)(struct gateway *gw);
    /* Every reply waiting for a record not yet acknowledged is answered `-<code> <why>` now
     * (server_fail_unacked). */
    void (*fail_unacked)(struct gateway *gw, const char *code, const char *why);
    /* The follower side (follower.h): started on the cluster's etcd client at cluster_start
     * (0, or -1 with err), ticked every turn, told of the lease (P/members/<name>), of a
     * deposition, and asked for INFO's lines about the log reader. */
    int (*start_follower)(struct gateway *gw, struct etcd_client *ec, char *err, size_t errcap);
    void (*tick_follower)(struct gateway *gw);
    void (*lease_granted)(struct gateway *gw, int64_t lease, const char *published_role);
    void (*deposed)(struct gateway *gw);
    void (*info_lines)(const struct gateway *gw, struct buf *b);
} cluster_hooks;

/* Start the client and the campaign (gw->cfg's [cluster]); does nothing without etcd. Call
 * after the journal is replayed and commit_attach()ed, before the loop. up is copied. 0, or
 * -1 with err. */
int cluster_start(struct gateway *gw, const cluster_hooks *up, char *err, size_t errcap);
/* The eventfd's completion (UD_CLUSTER): results of etcd, re-armed as needed. */
void cluster_on_cqe(struct gateway *gw, int res, uint32_t flags);
/* Timers: lease margin, resends, re-campaign. Every loop turn. */
void cluster_tick(struct gateway *gw);
/* Revoke the lease when leading (a clean hand-over), stop the client. */
void cluster_stop(struct gateway *gw);

cluster_role cluster_role_of(const struct gateway *gw);
/* Leader and accepting writes (what bank plugins, expiries and re-sends need). True on a single
 * node. */
bool cluster_leads(const struct gateway *gw);
/* Must a write (STOP, FREEZE, RELEASE, EXTEND, CONFIRM, LIST.ADD/DEL/LOAD, a UDP STOP) be
 * refused now? false on a single node and on a writable leader. true with *code and why:
 * "READONLY" and "<leader name> <host:port>" (or "- -" when no leader is known), or
 * "ERR BUSY" and a reason (the cluster log cannot be written, the lease is not sure). */
bool cluster_write_refused(const struct gateway *gw, const char **code, char *why, size_t cap);
/* The leader's commits to the etcd log are failing (replies must not wait for them). */
bool cluster_failing(const struct gateway *gw);
/* Catch-up done (engine_on_lead returned 1): start accepting writes in this epoch. */
void cluster_lead_ready(struct gateway *gw);
void cluster_view_get(const struct gateway *gw, cluster_view *v);
/* The follower side shares this member's etcd client (one thread, one eventfd, armed here):
 * its requests and watches use cookies with CLUSTER_COOKIE_EXT set, and their results are
 * handed, on the loop, to the function registered with cluster_set_ext (results without it
 * are dropped). cluster_etcd is NULL on a single node. cluster_lease is this member's lease
 * (0 while none is granted), for keys that must vanish with the member (P/members/<name>). */
#define CLUSTER_COOKIE_EXT (1ULL << 63)
struct etcd_client;
struct etcd_result;
typedef void (*cluster_ext_fn)(struct gateway *gw, const struct etcd_result *r);
void cluster_set_ext(struct gateway *gw, cluster_ext_fn fn);
struct etcd_client *cluster_etcd(struct gateway *gw);
int64_t cluster_lease(const struct gateway *gw);
/* INFO's "# Cluster" section and /metrics' stopgate_cluster_* lines. */
void cluster_info(const struct gateway *gw, struct buf *b);
void cluster_metrics(const struct gateway *gw, struct prom_writer *w);
#endif
