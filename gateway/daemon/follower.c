/*
 * follower: follow.c bound to the gateway (follower.h).
 */
#include "follower.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "cluster.h"
#include "journal_fmt.h"
#include "follow.h"
#include "gateway.h"

#define TAKEOVER_LOG_MS 1000 /* a takeover still catching up says so this often */
#define FOLLOWER_REJOIN_DELAY_MS 200 /* a deposed leader's last answers go out meanwhile */

static bool is_list_record(uint16_t type) {
    return type >= REC_LIST_ADD && type <= REC_LIST_LOAD_COMMIT;
}

/* One record of the log, through the journal's replay path. An order's frozen mark in
 * shared memory follows at once: the record is committed in the cluster already. */
static int apply_record(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload,
                        uint32_t len) {
    gateway *gw = ctx;
    char err[256];
    int rc = commit_replay(&gw->commit, type, lsn, payload, len, err, sizeof err);
    if (rc != 0) {
        LOGE(gw, "cluster log record %llu: %s", (unsigned long long)lsn, err);
        return rc;
    }
    if (!is_list_record(type)) {
        order_rec r;
        if (record_decode(type, payload, len, &r) == 0 && r.order_no) lists_sync_order(gw, r.order_no);
    }
    return 0;
}

static void on_applied(void *ctx, uint64_t lsn, int64_t rev) {
    gateway *gw = ctx;
    /* What a follower applied came from the log: it is committed in the cluster (ROLE's
     * committed_lsn >= applied_lsn). Its acknowledged lsn still follows the journal's
     * durability (a mirror's commit layer acknowledges what is durable). */
    if (gw->commit.mirror) commit_cluster_reset(&gw->commit, lsn, rev);
}

static void on_log(void *ctx, const char *level, const char *msg) {
    char lv[8];
    snprintf(lv, sizeof lv, "%-5.5s", level); /* the log's level column is 5 wide */
    glog_write(&((gateway *)ctx)->log, lv, "%s", msg);
}

/* "a/b" into out; -1 when it does not fit (a path is never cut short). */
static int path_join(char *out, size_t cap, const char *a, const char *b) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Move every segment of the journal into <dir>/uncommitted-<unix ms>/: kept for forensics,
 * out of the replay's way. */
static int set_aside(gateway *gw, char *err, size_t errcap) {
    char name[48], aside[PATH_MAX];
    snprintf(name, sizeof name, "uncommitted-%lld", (long long)clock_now_ms());
    if (path_join(aside, sizeof aside, gw->cfg.journal_dir, name) != 0) {
        snprintf(err, errcap, "journal_dir too long to set its uncommitted journal aside");
        return -1;
    }
    DIR *d = opendir(gw->cfg.journal_dir);
    if (!d || mkdir(aside, 0750) != 0) {
        snprintf(err, errcap, "setting the uncommitted journal aside in %s: %s", aside, strerror(errno));
        if (d) closedir(d);
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        uint64_t seq;
        if (journal_seg_parse_name(e->d_name, &seq) != 0) continue;
        char from[PATH_MAX], to[PATH_MAX];
        if (path_join(from, sizeof from, gw->cfg.journal_dir, e->d_name) != 0 ||
            path_join(to, sizeof to, aside, e->d_name) != 0 || rename(from, to) != 0) {
            snprintf(err, errcap, "setting %s aside: %s", e->d_name, strerror(errno ? errno : ENAMETOOLONG));
            rc = -1;
        }
    }
    closedir(d);
    int dfd = open(gw->cfg.journal_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the renames durable before the emptied journal is written again */
        if (fsync(dfd) != 0 && rc == 0) {
            snprintf(err, errcap, "fsync %s: %s", gw->cfg.journal_dir, strerror(errno));
            rc = -1;
        }
        close(dfd);
    }
    if (rc == 0)
        LOGW(gw, "cluster: no record of this journal is in the cluster log (the cluster never committed "
                 "them; never acknowledged): set aside in %s",
             aside);
    return rc;
}

int follower_reconcile(gateway *gw, uint64_t *keep, char *err, size_t errcap) {
    int rc = follow_reconcile(gw->cfg.cluster_etcd, gw->cfg.cluster_prefix, gw->cfg.journal_dir,
                              gw->cfg.cluster_commit_timeout_ms, keep, err, errcap);
    if (rc == 0 && *keep == FOLLOW_CUT_ALL) {
        *keep = 0;
        return set_aside(gw, err, errcap);
    }
    if (rc == 0 && *keep)
        LOGW(gw, "cluster: the journal holds records after lsn %llu that the cluster log does not: "
                 "they are cut (never acknowledged)",
             (unsigned long long)*keep);
    return rc;
}

int follower_start(gateway *gw, etcd_client *ec, char *err, size_t errcap) {
    assert(!gw->fl);
    gw->fl = calloc(1, sizeof *gw->fl);
    if (!gw->fl) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    follow_ops ops = {.apply = apply_record, .applied = on_applied, .log = on_log, .ctx = gw};
    if (follow_init(gw->fl, ec, &gw->j, gw->cfg.cluster_prefix, gw->cfg.cluster_name, &ops, err,
                    errcap) != 0)
        return -1;
    follow_set_retention(gw->fl, gw->cfg.cluster_log_retention_ms);
    cluster_set_ext(gw, follower_on_result);
    follow_start(gw->fl);
    return 0;
}

bool follower_owns(uint64_t cookie) { return follow_owns(cookie); }

void follower_on_result(gateway *gw, const etcd_result *r) {
    if (gw->fl && follow_owns(r->cookie)) follow_on_result(gw->fl, r);
}

void follower_set_lease(gateway *gw, int64_t lease, const char *published_role) {
    if (gw->fl) follow_set_lease(gw->fl, lease, published_role);
}

/* A takeover's catch-up is complete (the whole log applied, the journal idle): the commit
 * layer hands the next batch to the cluster log from here, the outbox is rebuilt, and the
 * member starts accepting writes (cluster_lead_ready also finishes interrupted cascades). */
static void take_over_done(gateway *gw) {
    char err[256];
    uint64_t lsn = journal_last_lsn(&gw->j);
    follow_set_leading(gw->fl, true);
    follow_set_lease(gw->fl, gw->fl->lease, "leader");
    gw->takeover_ms = 0;
    commit_set_mirror(&gw->commit, false);
    commit_cluster_reset(&gw->commit, lsn, gw->fl->sync_done_rev);
    if (engine_resume_instructions(gw, err, sizeof err) != 0) {
        LOGE(gw, "cluster: taking over: %s", err);
        follower_rejoin(gw, "the outbox cannot hold the instructions to resume");
        return;
    }
    LOGI(gw, "cluster: caught up with the log at lsn %llu (revision %lld): %u instructions "
             "without a bank answer resumed with their instruction ids",
         (unsigned long long)lsn, (long long)gw->fl->sync_done_rev, gw->ob.len);
    cluster_lead_ready(gw);
}

void follower_tick(gateway *gw) {
    if (!gw->fl) return;
    /* A restart's start-up reconciles the journal with the log in etcd: it waits until etcd
     * answers again (a lease granted), serving reads from what was acknowledged meanwhile. */
    if (gw->rejoin_at_ms && gw->now_ms >= gw->rejoin_at_ms && cluster_lease(gw))
        follower_rejoin(gw, "no longer leader, and the journal holds records the cluster log may not");
    if (gw->fl->leading) { /* published and trimmed by: what the log has of ours */
        gw->fl->applied_lsn = commit_cluster_lsn(&gw->commit);
        gw->fl->applied_rev = commit_cluster_rev(&gw->commit);
    }
    follow_tick(gw->fl, etcd_mono_ms());
    /* Screening processes on this host read the shared memory without asking ROLE: the table
     * says itself that it is not current (libstopgate answers -ESTALE, DPDK and UDP CHECK
     * SG_FE_STALE, RESP ERR STALE). */
    bool stale = follower_stale(gw);
    if (gw->ls.t.h && stale != ltab_stale(&gw->ls.t)) {
        ltab_set_stale(&gw->ls.t, stale);
        if (stale) LOGW(gw, "cluster: the shared-memory lists are marked stale for their readers");
    }
    if (gw->takeover_ms) {
        if (gw->fl->state == FOLLOW_STALE || gw->fl->state == FOLLOW_FAILED) {
            follower_rejoin(gw, "the log cannot be applied here; this member must not lead");
        } else if (follow_synced(gw->fl) && journal_idle(&gw->j)) {
            take_over_done(gw);
        } else if (gw->now_ms - gw->takeover_ms > TAKEOVER_LOG_MS) {
            LOGW(gw, "cluster: taking over: still reading the log (applied lsn %llu)",
                 (unsigned long long)gw->fl->applied_lsn);
            gw->takeover_ms = gw->now_ms;
        }
    }
}

int follower_take_over(gateway *gw) {
    assert(gw->fl);
    if (gw->fl->state == FOLLOW_STALE || gw->fl->state == FOLLOW_FAILED) return -1;
    gw->takeover_ms = gw->now_ms ? gw->now_ms : 1;
    follow_sync(gw->fl);
    return 1;
}

/* The journal holds nothing the cluster log does not: the memory is the log's state up to
 * the journal's last lsn, and the member can follow on from there as it is. */
static bool journal_is_log(const gateway *gw) {
    const commit *cm = &gw->commit;
    return !cm->pending && !cm->queued && journal_last_lsn(&gw->j) == commit_cluster_lsn(cm);
}

void follower_deposed(gateway *gw) {
    gw->takeover_ms = 0;
    if (journal_is_log(gw)) {
        /* Nothing to cut: follow in place, serving reads throughout, the shared memory as it is. */
        uint64_t lsn = journal_last_lsn(&gw->j);
        commit_set_mirror(&gw->commit, true);
        commit_cluster_reset(&gw->commit, lsn, commit_cluster_rev(&gw->commit));
        follow_rejoin(gw->fl);
        follow_set_lease(gw->fl, cluster_lease(gw), gw->cfg.cluster_candidate ? "follower" : "mirror");
        LOGW(gw, "cluster: rejoined as a follower in place at lsn %llu (the journal holds only what the "
                 "cluster log has)",
             (unsigned long long)lsn);
        return;
    }
    /* Its memory may hold a tail the cluster never had: start again (after the READONLY / BUSY
     * answers to what was in flight went out, and once etcd answers: follower_tick). */
    if (!gw->rejoin_at_ms) gw->rejoin_at_ms = gw->now_ms + FOLLOWER_REJOIN_DELAY_MS;
}

void follower_rejoin(gateway *gw, const char *why) {
    LOGW(gw, "cluster: %s: starting again in place to rejoin as a follower", why);
    /* Everything but stdin/out/err closes at exec: the ring (and with it the sockets it
     * holds), the journal, the etcd client's sockets. */
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    execv("/proc/self/exe", gw->argv);
    LOGE(gw, "cluster: exec to rejoin failed: %s; exiting", strerror(errno));
    _exit(1);
}

const char *follower_state(const gateway *gw) {
    return gw->fl ? follow_state_name(gw->fl->state) : "off";
}

bool follower_stale(const gateway *gw) {
    return gw->fl && (gw->fl->state == FOLLOW_STALE || gw->fl->state == FOLLOW_FAILED);
}

const char *follower_stale_why(const gateway *gw) { return gw->fl ? gw->fl->why : ""; }

void follower_info(const gateway *gw, buf *b) {
    if (!gw->fl) return;
    const follow *f = gw->fl;
    buf_printf(b, "log_reader:%s\r\nlog_applied_lsn:%llu\r\nlog_applied_revision:%lld\r\n",
               follow_state_name(f->state), (unsigned long long)f->applied_lsn, (long long)f->applied_rev);
    buf_printf(b, "log_batches_applied:%llu\r\nlog_batches_skipped:%llu\r\nlog_gaps:%llu\r\n"
                  "log_trimmed_keys:%llu\r\nlog_members_min_applied:%llu\r\n",
               (unsigned long long)f->stats.batches_applied, (unsigned long long)f->stats.batches_skipped,
               (unsigned long long)f->stats.gaps, (unsigned long long)f->stats.trimmed_keys,
               (unsigned long long)follow_members_min_applied(f));
    if (f->why[0]) buf_printf(b, "log_reader_why:%s\r\n", f->why);
}

uint64_t follower_applied_lsn(const gateway *gw) { return gw->fl ? gw->fl->applied_lsn : 0; }
int64_t follower_applied_rev(const gateway *gw) { return gw->fl ? gw->fl->applied_rev : 0; }

uint64_t follower_members_min_applied(const gateway *gw) {
    return gw->fl ? follow_members_min_applied(gw->fl) : 0;
}
