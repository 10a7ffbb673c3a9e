/*
 * follow: applying the cluster log on a member that does not lead (follow.h). The parent
 * functions keep the control flow (on_range, on_watch); apply_value decides one batch.
 */
#include "follow.h"
#include "logval.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COOKIE_RANGE (FOLLOW_COOKIE_TAG | FOLLOW_CK_RANGE)
#define COOKIE_WATCH (FOLLOW_COOKIE_TAG | FOLLOW_CK_WATCH)
#define COOKIE_PUBLISH (FOLLOW_COOKIE_TAG | FOLLOW_CK_PUBLISH)
#define COOKIE_TRIM (FOLLOW_COOKIE_TAG | FOLLOW_CK_TRIM)
#define COOKIE_COMPACT (FOLLOW_COOKIE_TAG | FOLLOW_CK_COMPACT)
#define COOKIE_EXTENT (FOLLOW_COOKIE_TAG | FOLLOW_CK_EXTENT)
#define RETRY_FULL_MS 5    /* the local journal had no room: it frees within an fdatasync */
#define RETRY_ERROR_MS 100 /* etcd refused or failed a read */
#define PUBLISH_IDLE_MS 1000 /* unchanged P/members/<name> is still put this often */

typedef enum apply_rc { AP_OK, AP_SKIP, AP_GAP, AP_AGAIN, AP_FAIL } apply_rc;

static void flog(follow *f, const char *level, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (f->ops.log) f->ops.log(f->ops.ctx, level, msg);
}

size_t follow_log_key(const char *prefix, uint64_t lsn, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/log/%020llu", prefix, (unsigned long long)lsn);
    assert(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

const char *follow_state_name(follow_state s) {
    static const char *names[] = {"off", "catchup", "live", "stale", "failed"};
    return s <= FOLLOW_FAILED ? names[s] : "?";
}

int follow_init(follow *f, etcd_client *ec, journal *j, const char *prefix, const char *name,
                const follow_ops *ops, char *err, size_t errcap) {
    memset(f, 0, sizeof *f);
    if (strlen(prefix) >= FOLLOW_PREFIX_MAX || strlen(name) >= FOLLOW_NAME_MAX || !*name) {
        snprintf(err, errcap, "cluster prefix (< %d bytes) or name (1..%d bytes) out of bounds",
                 FOLLOW_PREFIX_MAX, FOLLOW_NAME_MAX - 1);
        return -1;
    }
    assert(ops->apply);
    f->codec = logval_new();
    if (!f->codec) {
        snprintf(err, errcap, "out of memory (the log values' codec)");
        return -1;
    }
    f->ec = ec;
    f->j = j;
    f->ops = *ops;
    snprintf(f->prefix, sizeof f->prefix, "%s", prefix);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->watch_id = -1;
    f->role = "follower";
    f->retention_ms = CLUSTER_LOG_RETENTION_MS_DEFAULT;
    return 0;
}

void follow_fini(follow *f) {
    logval_free(f->codec);
    f->codec = NULL;
}

void follow_set_retention(follow *f, uint32_t ms) {
    assert(ms >= CLUSTER_LOG_RETENTION_MS_MIN && ms <= CLUSTER_LOG_RETENTION_MS_MAX);
    f->retention_ms = ms;
}

/* A range page of the log from applied + 1 (pinned to range_rev when paginating). */
static void submit_range(follow *f) {
    char key[FOLLOW_PREFIX_MAX + 32], end[FOLLOW_PREFIX_MAX + 8], err[256];
    size_t kl = follow_log_key(f->prefix, f->applied_lsn + 1, key, sizeof key);
    int el = snprintf(end, sizeof end, "%s/log0", f->prefix);
    etcd_request rq = {.kind = ETCD_RANGE,
                       .flags = ETCD_F_IDEMPOTENT,
                       .op = {.kind = ETCD_OP_RANGE,
                              .key = key,
                              .key_len = kl,
                              .range_end = end,
                              .range_end_len = (size_t)el,
                              .limit = FOLLOW_RANGE_KEYS,
                              .revision = f->range_rev}};
    if (etcd_submit(f->ec, &rq, COOKIE_RANGE, err, sizeof err) != 0) {
        f->stats.etcd_errors++;
        f->retry_at_ms = etcd_mono_ms() + RETRY_ERROR_MS;
        return;
    }
    f->range_inflight = true;
    f->stats.ranges++;
}

/* Read the log again from applied + 1 now, or once the read in flight has ended. */
static void read_again(follow *f) {
    if (f->range_inflight) {
        f->range_again = true;
        return;
    }
    f->range_rev = 0;
    submit_range(f);
}

void follow_start(follow *f) {
    assert(f->state == FOLLOW_OFF);
    f->applied_lsn = journal_last_lsn(f->j);
    f->state = FOLLOW_CATCHUP;
    flog(f, "INFO", "cluster: following the log from lsn %llu",
         (unsigned long long)f->applied_lsn + 1);
    read_again(f);
}

static void become(follow *f, follow_state s, const char *why) {
    if (f->state == s) return;
    f->state = s;
    snprintf(f->why, sizeof f->why, "%s", why);
    flog(f, "ERROR", "cluster: %s at lsn %llu: %s", follow_state_name(s),
         (unsigned long long)f->applied_lsn, why);
}

/* Offset of the frame starting at lsn inside value v (a batch that straddles applied), or
 * -1. */
static long frame_at(const uint8_t *v, size_t n, uint64_t lsn) {
    for (size_t off = 0; off + sizeof(journal_frame) <= n;) {
        journal_frame h;
        memcpy(&h, v + off, sizeof h);
        if (h.magic != JOURNAL_FRAME_MAGIC || h.len < JOURNAL_FRAME_OVERHEAD || h.len > n - off)
            return -1;
        if (h.first_lsn == lsn) return (long)off;
        off += h.len;
    }
    return -1;
}

/* One log batch: applied (exactly once, in lsn order), skipped, or why not. Decoded
 * (logval.h) only when it is applied: skipping and gaps need the lsns its header claims. */
static apply_rc apply_value(follow *f, const uint8_t *v, size_t n, int64_t rev) {
    uint64_t first, last;
    char err[256];
    if (!logval_range(v, n, &first, &last)) {
        become(f, FOLLOW_FAILED, "a log value is not a journal batch");
        return AP_FAIL;
    }
    if (last <= f->applied_lsn) {
        f->stats.batches_skipped++; /* an idempotent resend, or a range overlapping the watch */
        return AP_SKIP;
    }
    if (first > f->applied_lsn + 1) return AP_GAP;
    if (logval_decode(f->codec, v, n, &v, &n, err, sizeof err) != 0) {
        become(f, FOLLOW_FAILED, err); /* the decoded frames' lsns are the header's */
        return AP_FAIL;
    }
    long off = first == f->applied_lsn + 1 ? 0 : frame_at(v, n, f->applied_lsn + 1);
    if (off < 0) {
        become(f, FOLLOW_FAILED, "a log batch straddles the local journal's end");
        return AP_FAIL;
    }
    int rc = journal_append_frames(f->j, v + off, (uint32_t)(n - (size_t)off), f->ops.apply,
                                   f->ops.ctx, err, sizeof err);
    if (rc == -EAGAIN) return AP_AGAIN;
    if (rc == -EINVAL) {
        become(f, FOLLOW_FAILED, err);
        return AP_FAIL;
    }
    if (rc != 0) {
        /* Records were applied but not appended: memory and journal disagree. Stop, as
         * recovery does; a restart replays the journal and reads the log again. */
        flog(f, "ERROR", "cluster: applying the log: %s", err);
        abort();
    }
    f->stats.batches_applied++;
    f->stats.records_applied += last - f->applied_lsn;
    f->stats.last_apply_mono_ms = etcd_mono_ms();
    f->applied_lsn = last;
    f->applied_rev = rev;
    assert(journal_last_lsn(f->j) == last);
    if (f->ops.applied) f->ops.applied(f->ops.ctx, last, rev);
    return AP_OK;
}

static void start_watch(follow *f, int64_t from_rev) {
    char key[FOLLOW_PREFIX_MAX + 2], end[FOLLOW_PREFIX_MAX + 2];
    int kl = snprintf(key, sizeof key, "%s/", f->prefix);
    int el = snprintf(end, sizeof end, "%s0", f->prefix);
    f->watch_id = etcd_watch_start(f->ec, key, (size_t)kl, end, (size_t)el, from_rev, COOKIE_WATCH);
    if (f->watch_id < 0) {
        f->stats.etcd_errors++;
        f->retry_at_ms = etcd_mono_ms() + RETRY_ERROR_MS;
        return;
    }
    f->watch_from = from_rev;
}

static void key_seen(follow *f, const uint8_t *v, size_t n);

/* A range page: apply what fits, then the next page, or the watch once at the end. */
static void on_range(follow *f, const etcd_result *r) {
    f->range_inflight = false;
    if (f->state == FOLLOW_STALE || f->state == FOLLOW_FAILED) return;
    if (r->err != ETCD_OK) {
        f->stats.etcd_errors++;
        f->range_rev = 0; /* a compacted page revision: start over at the latest */
        f->retry_at_ms = etcd_mono_ms() + RETRY_ERROR_MS;
        return;
    }
    for (size_t i = 0; i < r->kv_count; i++) key_seen(f, r->kvs[i].value, r->kvs[i].value_len);
    for (size_t i = 0; i < r->kv_count && !f->leading; i++) {
        apply_rc rc = apply_value(f, r->kvs[i].value, r->kvs[i].value_len, r->kvs[i].mod_revision);
        if (rc == AP_FAIL) return;
        if (rc == AP_AGAIN) {
            f->stats.retries++;
            f->retry_at_ms = etcd_mono_ms() + RETRY_FULL_MS;
            return;
        }
        if (rc == AP_GAP) {
            /* The read starts at applied + 1: a first key past it means the log was trimmed
             * past this member. */
            become(f, FOLLOW_STALE, "the log in etcd starts past this member's journal "
                                    "(trimmed): re-seed it (docs/operations.md)");
            return;
        }
    }
    if (r->more) {
        f->range_rev = r->revision;
        submit_range(f);
        return;
    }
    f->range_rev = 0;
    if (f->sync_asked && !f->range_again) f->sync_done_rev = r->revision;
    if (f->state == FOLLOW_CATCHUP) f->state = FOLLOW_LIVE;
    if (f->watch_id < 0 && f->watch_from == 0) start_watch(f, r->revision + 1);
    if (f->range_again) {
        f->range_again = false;
        submit_range(f);
    }
}

static void member_seen(follow *f, const char *name, size_t nl, const etcd_event *e) {
    follow_member *m = NULL, *free_slot = NULL;
    for (int i = 0; i < FOLLOW_MEMBERS_MAX; i++) {
        follow_member *x = &f->members[i];
        if (x->name[0] && strlen(x->name) == nl && memcmp(x->name, name, nl) == 0) m = x;
        if (!x->name[0] && !free_slot) free_slot = x;
    }
    if (!m) {
        if (e->is_delete || !free_slot || nl >= FOLLOW_NAME_MAX) return;
        m = free_slot;
        memcpy(m->name, name, nl);
        m->name[nl] = 0;
    }
    m->present = !e->is_delete;
    if (e->is_delete) return;
    char v[128];
    size_t vl = e->kv.value_len < sizeof v - 1 ? e->kv.value_len : sizeof v - 1;
    memcpy(v, e->kv.value, vl);
    v[vl] = 0;
    unsigned long long lsn = 0;
    long long rev = 0;
    char role[16] = "";
    if (sscanf(v, "%llu %lld %15s", &lsn, &rev, role) >= 2) {
        m->applied_lsn = lsn;
        m->rev = rev;
        snprintf(m->role, sizeof m->role, "%s", role);
    }
}

static void leader_seen(follow *f, const etcd_event *e) {
    f->leader_name[0] = f->leader_addr[0] = 0;
    f->leader_epoch = 0;
    if (!e->is_delete) {
        char v[FOLLOW_NAME_MAX + 160];
        size_t vl = e->kv.value_len < sizeof v - 1 ? e->kv.value_len : sizeof v - 1;
        memcpy(v, e->kv.value, vl);
        v[vl] = 0;
        char *sp = strchr(v, ' ');
        if (sp) *sp = 0;
        snprintf(f->leader_name, sizeof f->leader_name, "%.*s", FOLLOW_NAME_MAX - 1, v);
        snprintf(f->leader_addr, sizeof f->leader_addr, "%.*s", (int)sizeof f->leader_addr - 1,
                 sp ? sp + 1 : "");
        f->leader_epoch = e->kv.create_revision;
    }
    if (f->ops.leader) f->ops.leader(f->ops.ctx, f->leader_name, f->leader_addr, f->leader_epoch);
}

/* Remembers a log key for trimming (lsn order: the log is written in order). */
static void key_seen(follow *f, const uint8_t *v, size_t n) {
    uint64_t first, last;
    if (!logval_range(v, n, &first, &last)) return;
    if (f->keys_len) {
        const follow_logkey *prev = &f->keys[(f->keys_head + f->keys_len - 1) % FOLLOW_TRIM_RING];
        if (first <= prev->last_lsn) return; /* a resend */
    }
    if (f->keys_len == FOLLOW_TRIM_RING) { /* forget the oldest: trimmed by a later look */
        f->keys_head = (f->keys_head + 1) % FOLLOW_TRIM_RING;
        f->keys_len--;
    }
    f->keys[(f->keys_head + f->keys_len++) % FOLLOW_TRIM_RING] =
        (follow_logkey){.first_lsn = first, .last_lsn = last, .seen_ms = etcd_mono_ms()};
}

/* The leader: delete [P/log/, P/log/<keep>) where keep is the first key some present member
 * still needs, or too young, or the last one. */
static void trim(follow *f, int64_t now) {
    f->trimmed_ms = now;
    uint64_t bound = follow_members_min_applied(f);
    uint32_t n = 0;
    while (n + 1 < f->keys_len) {
        const follow_logkey *k = &f->keys[(f->keys_head + n) % FOLLOW_TRIM_RING];
        if (k->last_lsn > bound || now - k->seen_ms < f->retention_ms) break;
        n++;
    }
    if (n == 0) return;
    uint64_t keep = f->keys[(f->keys_head + n) % FOLLOW_TRIM_RING].first_lsn;
    char key[FOLLOW_PREFIX_MAX + 8], end[FOLLOW_PREFIX_MAX + 32], err[256];
    int kl = snprintf(key, sizeof key, "%s/log/", f->prefix);
    size_t el = follow_log_key(f->prefix, keep, end, sizeof end);
    etcd_request rq = {.kind = ETCD_DELETE,
                       .flags = ETCD_F_IDEMPOTENT,
                       .op = {.kind = ETCD_OP_DELETE, .key = key, .key_len = (size_t)kl,
                              .range_end = end, .range_end_len = el}};
    if (etcd_submit(f->ec, &rq, COOKIE_TRIM, err, sizeof err) != 0) return;
    f->trim_inflight = true;
    f->keys_head = (f->keys_head + n) % FOLLOW_TRIM_RING;
    f->keys_len -= n;
    f->stats.trimmed_keys += n;
    flog(f, "INFO", "cluster: trimming the log below lsn %llu (%u keys; every member applied them)",
         (unsigned long long)keep, n);
}

static void on_trim(follow *f, const etcd_result *r) {
    f->trim_inflight = false;
    if (r->err != ETCD_OK) {
        f->stats.etcd_errors++;
        return;
    }
    f->stats.trims++;
    char err[256];
    etcd_request rq = {.kind = ETCD_COMPACT, .revision = r->revision};
    if (etcd_submit(f->ec, &rq, COOKIE_COMPACT, err, sizeof err) == 0) f->stats.compactions++;
}

/* A new leader's view of the log is what it saw since its process started: older keys (a
 * restarted leader's) would never be trimmed. One txn reads the oldest FOLLOW_EXTENT_KEYS log keys
 * (keys only) and P/head at the same revision. */
static void learn_extent(follow *f) {
    char key[FOLLOW_PREFIX_MAX + 8], end[FOLLOW_PREFIX_MAX + 8], head[FOLLOW_PREFIX_MAX + 8], err[256];
    int kl = snprintf(key, sizeof key, "%s/log/", f->prefix);
    int el = snprintf(end, sizeof end, "%s/log0", f->prefix);
    int hl = snprintf(head, sizeof head, "%s/head", f->prefix);
    etcd_op ops[2] = {{.kind = ETCD_OP_RANGE, .key = key, .key_len = (size_t)kl, .range_end = end,
                       .range_end_len = (size_t)el, .limit = FOLLOW_EXTENT_KEYS, .keys_only = true},
                      {.kind = ETCD_OP_RANGE, .key = head, .key_len = (size_t)hl}};
    etcd_request rq = {.kind = ETCD_TXN, .flags = ETCD_F_IDEMPOTENT, .success = ops, .success_count = 2};
    if (etcd_submit(f->ec, &rq, COOKIE_EXTENT, err, sizeof err) != 0) {
        f->stats.etcd_errors++;
        return; /* the next look tries again */
    }
    f->extent_inflight = true;
}

/* The lsn written as (up to) 20 decimal digits at p (a log key's tail, P/head's value). */
static uint64_t digits_lsn(const uint8_t *p, size_t n) {
    char d[21];
    if (n > 20) n = 20;
    memcpy(d, p, n);
    d[n] = 0;
    return strtoull(d, NULL, 10);
}

/* The lsn a log key names (its first), or 0 when it is not one. */
static uint64_t key_lsn(const follow *f, const etcd_kv *kv) {
    size_t pl = strlen(f->prefix) + 5;
    if (kv->key_len != pl + 20 || memcmp((const char *)kv->key + pl - 5, "/log/", 5) != 0) return 0;
    return digits_lsn(kv->key + pl, 20);
}

/* Prepend the keys older than the oldest one remembered (all of them if none is): each one's
 * last lsn is the next key's first - 1, the log's last key's is P/head. Their age is unknown:
 * the retention counts from now. */
static void on_extent(follow *f, const etcd_result *r) {
    f->extent_inflight = false;
    if (r->err != ETCD_OK || r->op_count != 2) {
        f->stats.etcd_errors++;
        return;
    }
    const etcd_op_result *lr = &r->ops[0], *hr = &r->ops[1];
    uint64_t oldest = f->keys_len ? f->keys[f->keys_head].first_lsn : UINT64_MAX;
    uint64_t head = 0;
    if (hr->kv_count) head = digits_lsn(r->kvs[hr->kv_first].value, r->kvs[hr->kv_first].value_len);
    /* The last key of a cut answer has an unknown end: left to a later delete. */
    size_t n = lr->kv_count == FOLLOW_EXTENT_KEYS ? lr->kv_count - 1 : lr->kv_count;
    int64_t now = etcd_mono_ms();
    for (size_t i = n; i-- > 0;) {
        uint64_t first = key_lsn(f, &r->kvs[lr->kv_first + i]);
        uint64_t next = i + 1 < lr->kv_count ? key_lsn(f, &r->kvs[lr->kv_first + i + 1]) : head + 1;
        if (!first || first >= oldest || next <= first || f->keys_len == FOLLOW_TRIM_RING) continue;
        f->keys_head = (f->keys_head + FOLLOW_TRIM_RING - 1) % FOLLOW_TRIM_RING;
        f->keys_len++;
        f->keys[f->keys_head] = (follow_logkey){.first_lsn = first, .last_lsn = next - 1, .seen_ms = now};
        oldest = first;
    }
    f->extent_known = true;
}

/* One event of the prefix watch. */
static void on_event(follow *f, const etcd_event *e) {
    size_t pl = strlen(f->prefix);
    const char *k = (const char *)e->kv.key + pl;
    size_t kl = e->kv.key_len - pl;
    if (e->kv.key_len <= pl) return;
    if (kl > 5 && memcmp(k, "/log/", 5) == 0) {
        if (!e->is_delete) key_seen(f, e->kv.value, e->kv.value_len);
        if (e->is_delete || f->leading || f->state == FOLLOW_STALE || f->state == FOLLOW_FAILED)
            return; /* trimming, or our own batch */
        apply_rc rc = apply_value(f, e->kv.value, e->kv.value_len, e->kv.mod_revision);
        if (rc == AP_GAP || rc == AP_AGAIN) {
            f->stats.gaps += rc == AP_GAP;
            f->stats.retries += rc == AP_AGAIN;
            if (rc == AP_AGAIN && !f->range_inflight)
                f->retry_at_ms = etcd_mono_ms() + RETRY_FULL_MS;
            else
                read_again(f);
        }
    } else if (kl == 7 && memcmp(k, "/leader", 7) == 0) {
        leader_seen(f, e);
    } else if (kl > 9 && memcmp(k, "/members/", 9) == 0) {
        member_seen(f, k + 9, kl - 9, e);
    }
}

static void on_watch(follow *f, const etcd_result *r) {
    if (r->err == ETCD_E_COMPACTED) {
        /* Revisions compacted: what the log still holds decides (a range; a gap = stale). */
        f->watch_id = -1;
        f->watch_from = 0;
        read_again(f);
        return;
    }
    if (r->final) {
        /* Ended for good (not a reconnect, which the client does itself): start it again
         * from the last revision applied. */
        f->watch_id = -1;
        f->watch_from = 0;
        f->stats.etcd_errors++;
        f->retry_at_ms = etcd_mono_ms() + RETRY_ERROR_MS;
        return;
    }
    for (size_t i = 0; i < r->event_count; i++) on_event(f, &r->events[i]);
}

static void on_publish(follow *f, const etcd_result *r) {
    f->publish_inflight = false;
    if (r->err != ETCD_OK) f->stats.publish_errors++;
}

void follow_on_result(follow *f, const etcd_result *r) {
    assert(follow_owns(r->cookie));
    switch (r->cookie) {
    case COOKIE_RANGE: on_range(f, r); break;
    case COOKIE_WATCH: on_watch(f, r); break;
    case COOKIE_PUBLISH: on_publish(f, r); break;
    case COOKIE_TRIM: on_trim(f, r); break;
    case COOKIE_EXTENT: on_extent(f, r); break;
    case COOKIE_COMPACT:
        if (r->err != ETCD_OK) f->stats.etcd_errors++;
        break;
    default: assert(!"unknown follow cookie");
    }
}

static void publish(follow *f, int64_t now) {
    char key[FOLLOW_PREFIX_MAX + FOLLOW_NAME_MAX + 16], val[96], err[256];
    int kl = snprintf(key, sizeof key, "%s/members/%s", f->prefix, f->name);
    int vl = snprintf(val, sizeof val, "%llu %lld %s", (unsigned long long)f->applied_lsn,
                      (long long)f->applied_rev, f->state == FOLLOW_STALE ? "stale" : f->role);
    etcd_request rq = {.kind = ETCD_PUT,
                       .flags = ETCD_F_IDEMPOTENT,
                       .deadline_ms = 1000,
                       .op = {.kind = ETCD_OP_PUT,
                              .key = key,
                              .key_len = (size_t)kl,
                              .value = val,
                              .value_len = (size_t)vl,
                              .lease = f->lease}};
    if (etcd_submit(f->ec, &rq, COOKIE_PUBLISH, err, sizeof err) != 0) {
        f->stats.publish_errors++;
        return;
    }
    f->publish_inflight = true;
    f->published_ms = now;
    f->published_lsn = f->applied_lsn;
    f->published_role = f->role;
    f->stats.publishes++;
}

void follow_tick(follow *f, int64_t now) {
    if (f->state == FOLLOW_OFF) return;
    if (f->retry_at_ms && now >= f->retry_at_ms) {
        f->retry_at_ms = 0;
        if (f->watch_id < 0 && f->watch_from == 0 && f->state == FOLLOW_LIVE)
            start_watch(f, f->applied_rev + 1);
        if (f->state == FOLLOW_CATCHUP || f->state == FOLLOW_LIVE) read_again(f);
    }
    if (f->leading && !f->extent_known && !f->extent_inflight) learn_extent(f);
    if (f->leading && f->extent_known && !f->trim_inflight && now - f->trimmed_ms >= FOLLOW_TRIM_MS)
        trim(f, now);
    bool changed = f->published_lsn != f->applied_lsn || f->published_role != f->role;
    if (f->lease && !f->publish_inflight && now - f->published_ms >= FOLLOW_PUBLISH_MS &&
        (changed || now - f->published_ms >= PUBLISH_IDLE_MS))
        publish(f, now);
}

void follow_sync(follow *f) {
    f->sync_asked = etcd_mono_ms();
    f->sync_done_rev = 0;
    read_again(f);
}

bool follow_synced(const follow *f) {
    return f->sync_asked && f->sync_done_rev > 0 && !f->range_inflight && !f->range_again &&
           f->state == FOLLOW_LIVE;
}

void follow_set_leading(follow *f, bool leading) {
    f->leading = leading;
    f->extent_known = false;
    if (leading) f->applied_lsn = journal_last_lsn(f->j);
}

void follow_rejoin(follow *f) {
    follow_set_leading(f, false);
    f->applied_lsn = journal_last_lsn(f->j);
    f->sync_asked = f->sync_done_rev = 0;
    if (f->state == FOLLOW_STALE || f->state == FOLLOW_FAILED) return;
    read_again(f); /* what another leader wrote meanwhile; the watch runs on */
}

void follow_set_lease(follow *f, int64_t lease, const char *role) {
    f->lease = lease;
    f->role = role;
}

uint64_t follow_members_min_applied(const follow *f) {
    uint64_t min = f->applied_lsn;
    for (int i = 0; i < FOLLOW_MEMBERS_MAX; i++) {
        const follow_member *m = &f->members[i];
        if (m->name[0] && m->present && strcmp(m->name, f->name) != 0 && m->applied_lsn < min)
            min = m->applied_lsn;
    }
    return min;
}

/* --- reconcile: the local tail against the log (start only, synchronous) ------------------ */

typedef struct tail {
    uint8_t *data[2]; /* the last two segment files */
    size_t size[2];
    const uint8_t *frame[FOLLOW_TAIL_FRAMES]; /* the last frames, oldest first */
    uint32_t len[FOLLOW_TAIL_FRAMES];
    int n;
} tail;

static void tail_free(tail *t) {
    free(t->data[0]);
    free(t->data[1]);
}

static int read_file(const char *path, uint8_t **out, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return -errno;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *out = malloc(n > 0 ? (size_t)n : 1);
    *size = n > 0 && *out && fread(*out, 1, (size_t)n, fp) == (size_t)n ? (size_t)n : 0;
    fclose(fp);
    return *out ? 0 : -ENOMEM;
}

/* The whole frames (header and trailer consistent) of the last two segments, last ones kept. */
static int tail_read(const char *dir, tail *t, char *err, size_t errcap) {
    memset(t, 0, sizeof *t);
    uint64_t *seqs = NULL;
    int n = journal_list_segments(dir, &seqs);
    if (n == -ENOENT) return 0; /* a new member: nothing to check */
    if (n < 0) {
        snprintf(err, errcap, "journal_dir %s: %s", dir, strerror(-n));
        return -1;
    }
    for (int k = n >= 2 ? n - 2 : 0, s = 0; k < n; k++, s++) {
        char name[64], path[4200];
        journal_seg_name(name, sizeof name, seqs[k]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (read_file(path, &t->data[s], &t->size[s]) != 0) continue;
        for (size_t off = sizeof(journal_seg_hdr); off < t->size[s];) {
            journal_frame h, tr;
            if (!journal_frame_read(t->data[s], t->size[s], off, JOURNAL_FRAME_MAGIC, &h) ||
                h.len < JOURNAL_FRAME_OVERHEAD || h.len > t->size[s] - off ||
                !journal_frame_read(t->data[s], t->size[s], off + h.len - sizeof tr,
                                    JOURNAL_TRAILER_MAGIC, &tr))
                break; /* a torn tail: journal_open cuts it */
            if (t->n == FOLLOW_TAIL_FRAMES) {
                memmove(t->frame, t->frame + 1, sizeof t->frame[0] * (FOLLOW_TAIL_FRAMES - 1));
                memmove(t->len, t->len + 1, sizeof t->len[0] * (FOLLOW_TAIL_FRAMES - 1));
                t->n--;
            }
            t->frame[t->n] = t->data[s] + off;
            t->len[t->n++] = h.len;
            off += h.len;
        }
    }
    free(seqs);
    return 0;
}

/* The local checksum of record lsn, if the tail holds it (or it is the record just before
 * the tail, whose sum the first record carries as prev_sum). */
static bool tail_sum(const tail *t, uint64_t lsn, uint64_t *sum) {
    for (int i = 0; i < t->n; i++)
        if (journal_frames_sum_at(t->frame[i], t->len[i], lsn, sum) == 0) return true;
    if (t->n > 0) {
        journal_frame h;
        journal_rec_hdr r;
        memcpy(&h, t->frame[0], sizeof h);
        memcpy(&r, t->frame[0] + sizeof h, sizeof r);
        if (lsn + 1 == h.first_lsn) {
            *sum = r.prev_sum;
            return true;
        }
    }
    return false;
}

/* The highest lsn where the tail and the log value v agree (0: none shown by v, or v is
 * damaged). */
static uint64_t agree_with(const tail *t, logval_codec *codec, const uint8_t *v, size_t n,
                           uint64_t local_last) {
    uint64_t first, last, a = 0, ls, vs;
    char err[256];
    if (logval_decode(codec, v, n, &v, &n, err, sizeof err) != 0) return 0;
    if (!logval_range(v, n, &first, &last) || n < sizeof(journal_frame) + sizeof(journal_rec_hdr))
        return 0;
    journal_rec_hdr r;
    memcpy(&r, v + sizeof(journal_frame), sizeof r);
    if (first > 1 && tail_sum(t, first - 1, &ls) && ls == r.prev_sum) a = first - 1;
    uint64_t upto = last < local_last ? last : local_last;
    for (uint64_t x = upto; x >= first && x > a; x--) {
        /* Only the highest lsn both hold needs checking: the chain vouches for the rest. */
        if (tail_sum(t, x, &ls) && journal_frames_sum_at(v, n, x, &vs) == 0) {
            if (ls == vs) a = x;
            break;
        }
    }
    return a;
}

/* One range read, waited for on the client's eventfd. The result stays valid until the next
 * etcd_poll. NULL with err on timeout or error. */
static const etcd_result *range_sync(etcd_client *ec, const char *key, size_t kl, const char *end,
                                     size_t el, int64_t limit, uint32_t deadline_ms, char *err,
                                     size_t errcap) {
    etcd_request rq = {.kind = ETCD_RANGE,
                       .flags = ETCD_F_IDEMPOTENT,
                       .deadline_ms = deadline_ms,
                       .op = {.kind = ETCD_OP_RANGE, .key = key, .key_len = kl, .range_end = end,
                              .range_end_len = el, .limit = limit}};
    if (etcd_submit(ec, &rq, 1, err, errcap) != 0) return NULL;
    int64_t until = etcd_mono_ms() + deadline_ms + 1000;
    while (etcd_mono_ms() < until) {
        struct pollfd p = {.fd = etcd_event_fd(ec), .events = POLLIN};
        poll(&p, 1, 50);
        const etcd_result *r;
        if (etcd_poll(ec, &r, 1) == 1) {
            if (r->err == ETCD_OK) return r;
            snprintf(err, errcap, "etcd: %s (%s)", etcd_strerror(r->err), r->msg);
            return NULL;
        }
    }
    snprintf(err, errcap, "etcd: no answer");
    return NULL;
}

int follow_reconcile(const char *endpoints, const char *prefix, const char *journal_dir,
                     uint32_t deadline_ms, uint64_t *keep, char *err, size_t errcap) {
    *keep = 0;
    tail t;
    if (tail_read(journal_dir, &t, err, errcap) != 0) return -1;
    if (t.n == 0) {
        tail_free(&t);
        return 0; /* nothing local to check */
    }
    journal_frame h, tr;
    memcpy(&h, t.frame[0], sizeof h);
    memcpy(&tr, t.frame[t.n - 1] + t.len[t.n - 1] - sizeof tr, sizeof tr);
    uint64_t local_last = tr.last_lsn;
    etcd_config cfg = {.endpoints = endpoints, .deadline_ms = deadline_ms};
    logval_codec *codec = logval_new();
    etcd_client *ec = codec ? etcd_create(&cfg, err, errcap) : NULL;
    if (!ec) {
        if (!codec) snprintf(err, errcap, "out of memory (the log values' codec)");
        logval_free(codec);
        tail_free(&t);
        return -1;
    }
    char key[FOLLOW_PREFIX_MAX + 32], end[FOLLOW_PREFIX_MAX + 8];
    size_t kl = follow_log_key(prefix, h.first_lsn > 1 ? h.first_lsn - 1 : 1, key, sizeof key);
    size_t el = (size_t)snprintf(end, sizeof end, "%s/log0", prefix);
    /* From the lsn before the tail: a batch of the log starting there shows the chain
     * through it by its first record's prev_sum. */
    int rc = -1;
    /* A few keys past the tail's start cover it: the log may have gone on far beyond. */
    const etcd_result *r = range_sync(ec, key, kl, end, el, 2 * FOLLOW_TAIL_FRAMES, deadline_ms, err, errcap);
    if (r) {
        uint64_t a = 0, f0, l0;
        for (size_t i = 0; i < r->kv_count; i++) {
            uint64_t x = agree_with(&t, codec, r->kvs[i].value, r->kvs[i].value_len, local_last);
            if (x > a) a = x;
        }
        if (r->kv_count == 0) {
            /* The log holds nothing from the tail on: empty (a new cluster), else the tail
             * and the log share nothing we can see. */
            size_t k0 = (size_t)snprintf(key, sizeof key, "%s/log/", prefix);
            r = range_sync(ec, key, k0, end, el, 1, deadline_ms, err, errcap);
            if (r && r->count == 0) rc = 0;
            else if (r)
                snprintf(err, errcap, "the cluster log ends before this journal's last %d "
                                      "frames (lsn %llu..%llu): re-seed this member "
                                      "(docs/operations.md)",
                         t.n, (unsigned long long)h.first_lsn, (unsigned long long)local_last);
        } else if (a == 0 && h.first_lsn == 1 &&
                   logval_range(r->kvs[0].value, r->kvs[0].value_len, &f0, &l0) && f0 == 1) {
            /* The log's first batch is not ours: nothing in this journal was committed (a
             * leader that never got one batch through), so none of it was acknowledged. */
            *keep = FOLLOW_CUT_ALL;
            rc = 0;
        } else if (a == 0) {
            snprintf(err, errcap, "this journal's tail (lsn %llu..%llu) shares no record with "
                                  "the cluster log: re-seed this member (docs/operations.md)",
                     (unsigned long long)h.first_lsn, (unsigned long long)local_last);
        } else {
            *keep = a < local_last ? a : 0;
            rc = 0;
        }
    }
    etcd_destroy(ec);
    logval_free(codec);
    tail_free(&t);
    return rc;
}
