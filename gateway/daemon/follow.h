/*
 * follow: a cluster member applying the cluster log (SPEC §10, docs/cluster.md "Followers").
 *
 * Owns one watch on the whole prefix [P/, P0) and the range reads that catch up with the log
 * [P/log/, P/log0). Each log value is one leader batch: whole journal frames (header..trailer,
 * hash chain included), keyed by its first lsn in 20 digits, raw or zstd-packed (logval.h:
 * decoded only when applied; a value that does not decode is a damaged batch: `failed`). A batch is applied exactly once,
 * in lsn order: journal_append_frames() checks it against the local journal's last record,
 * appends it byte for byte and hands each record to ops.apply (the replay path recovery
 * uses). A batch already applied (an idempotent resend, a range overlapping the watch) is
 * skipped; one that does not start at applied + 1 is a gap: the log is read again from
 * applied + 1 with paginated ranges, the watch's events being applied meanwhile when they fit.
 *
 * Also seen through the watch: P/leader (ops.leader: who leads, for READONLY answers and
 * campaigns) and P/members/<name> (every member's applied lsn, for trimming). This member's
 * own P/members/<name> = "applied_lsn revision role" is put under its lease at most every
 * FOLLOW_PUBLISH_MS, when it changed.
 *
 * Trimming (the leader only): every FOLLOW_TRIM_MS it deletes the log keys whose last lsn
 * every present member has applied (P/members) and that are older than log_retention_ms,
 * never the last key (a returning member checks its tail against it), then compacts etcd at
 * that revision. A leader first learns the log's extent from etcd (one keys-only range of
 * P/log/ and P/head, follow_set_leading): the keys older than this process are trimmed too.
 * A log that starts past applied + 1 (trimmed past this member) makes it
 * `stale`: it applies nothing more and says so until re-seeded (docs/operations.md). A watch
 * whose revision was compacted away reads the log with a range instead; only a gap there is
 * staleness.
 *
 * While this member leads (follow_set_leading), log events are its own batches and are not
 * applied; the watch keeps the leader key and the members table current.
 *
 * Single-threaded: the event loop calls everything. Never blocks (etcd_submit only).
 */
#ifndef SG_FOLLOW_H
#define SG_FOLLOW_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd.h"
#include "journal.h"
#include "logval.h"

/* Limits and periods: FOLLOW_* in limits.h. */
/* "FOLL" with bit 63 set: cluster.c hands results with that bit to the follower side. */
#define FOLLOW_COOKIE_TAG 0xc64f4c4c00000000ull
#define FOLLOW_COOKIE_MASK 0xffffffff00000000ull
enum { /* the cookies of follow's requests (FOLLOW_COOKIE_TAG | kind) */
    FOLLOW_CK_RANGE = 1, FOLLOW_CK_WATCH, FOLLOW_CK_PUBLISH, FOLLOW_CK_TRIM, FOLLOW_CK_COMPACT,
    FOLLOW_CK_EXTENT
};

typedef enum follow_state {
    FOLLOW_OFF = 0,   /* not started (single node) */
    FOLLOW_CATCHUP,   /* reading the log with ranges */
    FOLLOW_LIVE,      /* caught up once; applying the watch's events */
    FOLLOW_STALE,     /* behind the trimmed log: needs a re-seed */
    FOLLOW_FAILED,    /* a log batch did not continue the local journal: needs an operator */
} follow_state;

typedef struct follow_ops {
    journal_record_fn apply; /* one record of the log: decode + apply (the recovery path) */
    /* A batch was applied: everything up to lsn, at etcd revision rev. May be NULL. */
    void (*applied)(void *ctx, uint64_t lsn, int64_t rev);
    /* P/leader changed: name and addr ("" when nobody leads), epoch = its create_revision. */
    void (*leader)(void *ctx, const char *name, const char *addr, int64_t epoch);
    void (*log)(void *ctx, const char *level, const char *msg);
    void *ctx;
} follow_ops;

typedef struct follow_member {
    char name[FOLLOW_NAME_MAX];
    uint64_t applied_lsn;
    int64_t rev;
    char role[16];
    bool present;
} follow_member;

/* A log key seen on the watch (the leader's own batches too): what trimming may delete. */
typedef struct follow_logkey {
    uint64_t first_lsn, last_lsn;
    int64_t seen_ms;
} follow_logkey;

typedef struct follow_stats {
    uint64_t batches_applied, batches_skipped, records_applied;
    uint64_t gaps, ranges, retries, publishes, publish_errors, etcd_errors;
    uint64_t trims, trimmed_keys, compactions;
    int64_t last_apply_mono_ms;
} follow_stats;

typedef struct follow {
    etcd_client *ec;
    logval_codec *codec;   /* decodes packed log values (logval.h) */
    journal *j;
    follow_ops ops;
    char name[FOLLOW_NAME_MAX];
    char prefix[FOLLOW_PREFIX_MAX];
    follow_state state;
    bool leading;          /* this member leads: log events are its own */
    uint64_t applied_lsn;  /* last lsn in the local journal that the log also holds */
    int64_t applied_rev;   /* etcd revision of the batch that brought it */
    int64_t watch_from;    /* revision the watch was started from (0: not started) */
    int watch_id;
    bool range_inflight;
    bool range_again;      /* something the range may have missed: read again when it ends */
    int64_t range_rev;     /* the page revision of a paginated read (0: latest) */
    int64_t sync_asked;    /* follow_sync: a full read asked for at this mono ms (0: none) */
    int64_t sync_done_rev; /* ... and the revision it reached the end of the log at */
    int64_t retry_at_ms;   /* journal full or etcd error: read again then */
    int64_t lease;         /* the member's lease for its P/members key (0: none yet) */
    const char *role;      /* published role ("follower", "leader", "mirror") */
    bool publish_inflight;
    int64_t published_ms;
    uint64_t published_lsn;
    const char *published_role;
    char leader_name[FOLLOW_NAME_MAX];
    char leader_addr[128];
    int64_t leader_epoch;
    follow_member members[FOLLOW_MEMBERS_MAX];
    follow_logkey keys[FOLLOW_TRIM_RING]; /* ring, lsn order */
    uint32_t keys_head, keys_len;
    int64_t trimmed_ms;   /* last trim look */
    int64_t retention_ms; /* [cluster] log_retention_ms (follow_set_retention) */
    bool trim_inflight;
    bool extent_known;    /* leading: the log keys older than this run's have been read */
    bool extent_inflight; /* ... that read (keys only) is in flight */
    follow_stats stats;
    char why[256]; /* stale / failed: why */
} follow;

/* Wire it up; nothing is sent yet. prefix is [cluster] prefix, name [cluster] name. */
int follow_init(follow *f, etcd_client *ec, journal *j, const char *prefix, const char *name,
                const follow_ops *ops, char *err, size_t errcap);
/* Frees what follow_init made (the codec). */
void follow_fini(follow *f);
/* Start following from the local journal's last lsn: a range read to the end of the log,
 * then the watch from that read's revision + 1. */
void follow_start(follow *f);
/* [cluster] log_retention_ms (CLUSTER_LOG_RETENTION_MS_DEFAULT until set): a log key younger
 * than this is never trimmed. */
void follow_set_retention(follow *f, uint32_t ms);
/* Does this etcd result belong to follow? Then follow_on_result takes it. */
static inline bool follow_owns(uint64_t cookie) {
    return (cookie & FOLLOW_COOKIE_MASK) == FOLLOW_COOKIE_TAG;
}
void follow_on_result(follow *f, const etcd_result *r);
/* Timers: publish P/members/<name>, retry a read after an error or a full journal. */
void follow_tick(follow *f, int64_t now_mono_ms);
/* Ask for a linearizable read of the log to its end (a new leader, before it accepts). */
void follow_sync(follow *f);
/* Has the read asked for by follow_sync reached the end of the log, all of it applied? */
bool follow_synced(const follow *f);
/* This member leads (log events are its own) or not. */
void follow_set_leading(follow *f, bool leading);
/* A leader deposed with nothing uncommitted in its journal follows again in place: from its
 * journal's last lsn (= the log's, as far as it committed), reading the log to catch up. */
void follow_rejoin(follow *f);
/* The lease P/members/<name> is put under, and the role published with it. */
void follow_set_lease(follow *f, int64_t lease, const char *role);
/* Smallest applied lsn among the members present (this one included); 0 if none known. */
uint64_t follow_members_min_applied(const follow *f);
const char *follow_state_name(follow_state s);
/* Before the journal is replayed (stopgated's start in cluster mode): compare the local
 * journal's tail (its last FOLLOW_TAIL_FRAMES frames) with the cluster log and set *keep to
 * the last lsn both hold with the same hash chain - what follows it locally is a tail this
 * member fsynced as leader but the cluster never committed (never acknowledged), to be cut
 * with journal_opts.keep_through_lsn. *keep = 0: nothing to cut. Synchronous (its own etcd
 * client, up to deadline_ms): at start only. 0, or -1 with err (etcd unreachable, or the
 * tail shares nothing with the log: a re-seed is needed). *keep = FOLLOW_CUT_ALL: the whole
 * journal is such a tail (it starts at lsn 1 and the log's lsn 1 differs): set it aside. */
#define FOLLOW_CUT_ALL UINT64_MAX
int follow_reconcile(const char *endpoints, const char *prefix, const char *journal_dir,
                     uint32_t deadline_ms, uint64_t *keep, char *err, size_t errcap);
/* The key of a log batch: <prefix>/log/<first lsn in 20 digits>. Its length. */
size_t follow_log_key(const char *prefix, uint64_t lsn, char *out, size_t cap);
#endif
