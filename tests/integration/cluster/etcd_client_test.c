/*
 * etcd_client_test: gateway/cluster/etcd.c against a real 3-member etcd cluster.
 *
 * Run by tests/integration/test_etcd_client.py, which starts the cluster (etcdcluster.py),
 * passes its endpoints in $ETCD_ENDPOINTS and executes the control lines this program
 * prints ("CTL kill9 1", "CTL restart 1", ...), answering "ok" on our stdin once done.
 *
 *   etcd_client_test                     the checks; exit 0 when all hold
 *   etcd_client_test --bench N BYTES [DEPTH]   N fenced txns with a BYTES value, DEPTH in
 *                                        flight (default 1): latency p50/p99/max, txn/s
 *                                        (docs/cluster.md)
 *   etcd_client_test --watch-lag N BYTES  N puts, each timed until its watch event arrives
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            fflush(stdout);                                                                        \
        }                                                                                          \
    } while (0)

/* A copy of what the checks need from one result (results live only until the next poll). */
typedef struct got {
    bool have;
    etcd_err err;
    bool unsure, succeeded, created, final;
    char msg[ETCD_ERR_MSG_MAX];
    int64_t revision, lease_id, ttl_s, count, compact_revision;
    size_t kv_count, op_count;
    uint8_t value[4096];
    size_t value_len;
    int64_t create_revision, mod_revision, version;
    int64_t sent_ms, done_ms;
    int endpoint;
    uint32_t attempts;
} got;

#define WATCH_COOKIE_BASE 1000000u
#define EVENTS_MAX        4096
typedef struct seen {
    char key[64];
    int64_t rev;
    bool is_delete;
} seen;

static struct {
    got pending[64]; /* by cookie % 64 */
    seen events[EVENTS_MAX];
    size_t nevents;
    got watch_last; /* the watch's last non-event completion */
    int watch_endpoint;
    uint32_t lease_lost;
} T;

static void ctl(const char *fmt, ...) {
    char line[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("CTL %s\n", line);
    fflush(stdout);
    char ans[64];
    if (!fgets(ans, sizeof ans, stdin) || strncmp(ans, "ok", 2) != 0) {
        printf("FAIL control '%s' answered '%s'\n", line, ans);
        exit(2);
    }
}

static void keep(got *g, const etcd_result *r) {
    memset(g, 0, sizeof *g);
    g->have = true;
    g->err = r->err;
    g->unsure = r->unsure;
    g->succeeded = r->succeeded;
    g->created = r->created;
    g->final = r->final;
    snprintf(g->msg, sizeof g->msg, "%s", r->msg);
    g->revision = r->revision;
    g->lease_id = r->lease_id;
    g->ttl_s = r->ttl_s;
    g->count = r->count;
    g->compact_revision = r->compact_revision;
    g->kv_count = r->kv_count;
    g->op_count = r->op_count;
    g->sent_ms = r->sent_mono_ms;
    g->done_ms = r->done_mono_ms;
    g->endpoint = r->endpoint;
    g->attempts = r->attempts;
    if (r->kv_count) {
        g->value_len =
            r->kvs[0].value_len < sizeof g->value ? r->kvs[0].value_len : sizeof g->value;
        memcpy(g->value, r->kvs[0].value, g->value_len);
        g->create_revision = r->kvs[0].create_revision;
        g->mod_revision = r->kvs[0].mod_revision;
        g->version = r->kvs[0].version;
    }
}

static void dispatch(const etcd_result *r) {
    if (r->cookie >= WATCH_COOKIE_BASE && r->kind == ETCD_WATCH) {
        for (size_t k = 0; k < r->event_count && T.nevents < EVENTS_MAX; k++) {
            seen *s = &T.events[T.nevents++];
            size_t n = r->events[k].kv.key_len < sizeof s->key - 1 ? r->events[k].kv.key_len
                                                                   : sizeof s->key - 1;
            memcpy(s->key, r->events[k].kv.key, n);
            s->key[n] = 0;
            s->rev = r->events[k].kv.mod_revision;
            s->is_delete = r->events[k].is_delete;
        }
        if (r->created) T.watch_endpoint = r->endpoint;
        if (r->event_count == 0) keep(&T.watch_last, r);
        return;
    }
    if (r->kind == ETCD_LEASE_KEEPALIVE && r->final) {
        T.lease_lost++;
        return;
    }
    keep(&T.pending[r->cookie % 64], r);
}

/* Wait up to timeout_ms for completions and file them. */
static void pump(etcd_client *c, int timeout_ms) {
    struct pollfd p = {.fd = etcd_event_fd(c), .events = POLLIN};
    poll(&p, 1, timeout_ms);
    const etcd_result *out[64];
    size_t n;
    while ((n = etcd_poll(c, out, 64)) > 0)
        for (size_t k = 0; k < n; k++) dispatch(out[k]);
}

static uint64_t next_cookie = 1;

static int submit(etcd_client *c, const etcd_request *r, uint64_t *cookie) {
    char err[256];
    *cookie = next_cookie++;
    T.pending[*cookie % 64].have = false;
    int rc = etcd_submit(c, r, *cookie, err, sizeof err);
    if (rc < 0) printf("submit refused: %s\n", err);
    return rc;
}

static got wait_for(etcd_client *c, uint64_t cookie, int timeout_ms) {
    int64_t end = etcd_mono_ms() + timeout_ms;
    while (!T.pending[cookie % 64].have && etcd_mono_ms() < end) pump(c, 50);
    got g = T.pending[cookie % 64];
    if (!g.have) {
        printf("FAIL request %" PRIu64 " never completed within %d ms\n", cookie, timeout_ms);
        exit(3); /* a request that hangs is the one failure the client must never have */
    }
    return g;
}

static got run(etcd_client *c, const etcd_request *r) {
    uint64_t cookie;
    got g = {0};
    if (submit(c, r, &cookie) < 0) {
        g.err = ETCD_E_INVALID;
        return g;
    }
    return wait_for(c, cookie, (r->deadline_ms ? (int)r->deadline_ms : 2000) + 2000);
}

static got put(etcd_client *c, const char *key, const void *val, size_t len, int64_t lease) {
    etcd_request r = {.kind = ETCD_PUT, .flags = ETCD_F_IDEMPOTENT};
    r.op = (etcd_op){.kind = ETCD_OP_PUT,
                     .key = key,
                     .key_len = strlen(key),
                     .value = val,
                     .value_len = len,
                     .lease = lease};
    return run(c, &r);
}

static got get(etcd_client *c, const void *key, size_t key_len) {
    etcd_request r = {.kind = ETCD_RANGE, .flags = ETCD_F_IDEMPOTENT};
    r.op = (etcd_op){.kind = ETCD_OP_RANGE, .key = key, .key_len = key_len};
    return run(c, &r);
}

static void ok_at(const got *g, const char *what, int line) {
    if (g->err == ETCD_OK) return;
    failures++;
    printf("FAIL %s:%d: %s: %s: %s (unsure=%d, %u attempts, %" PRId64 " ms)\n", __FILE__, line,
           what, etcd_strerror(g->err), g->msg, g->unsure, g->attempts, g->done_ms - g->sent_ms);
}
#define OK(expr)                                                                                   \
    do {                                                                                           \
        got ok_ = (expr);                                                                          \
        ok_at(&ok_, #expr, __LINE__);                                                              \
    } while (0)

/* ---- the checks ------------------------------------------------------------------------ */

static void test_binary_round_trip(etcd_client *c) {
    uint8_t key[] = {'/', 'b', 0, 0xff, 0x80, '\n', '"'};
    uint8_t val[1024];
    for (size_t i = 0; i < sizeof val; i++) val[i] = (uint8_t)(i * 7 + 3);
    etcd_request r = {.kind = ETCD_PUT};
    r.op = (etcd_op){.kind = ETCD_OP_PUT,
                     .key = key,
                     .key_len = sizeof key,
                     .value = val,
                     .value_len = sizeof val};
    got g = run(c, &r);
    OK(g);
    g = get(c, key, sizeof key);
    OK(g);
    CHECK(g.kv_count == 1 && g.value_len == sizeof val && memcmp(g.value, val, sizeof val) == 0,
          "binary value read back differs (%zu kvs, %zu bytes)", g.kv_count, g.value_len);
    got e = put(c, "/b/empty", "", 0, 0);
    OK(e);
    e = get(c, "/b/empty", 8);
    CHECK(e.kv_count == 1 && e.value_len == 0, "empty value: %zu kvs, %zu bytes", e.kv_count,
          e.value_len);
    printf("ok binary put/range round trip\n");
}

static void test_request_limit(etcd_client *c) {
    static uint8_t big[ETCD_REQUEST_BYTES_MAX];
    memset(big, 'x', sizeof big);
    etcd_request r = {.kind = ETCD_PUT};
    r.op = (etcd_op){
        .kind = ETCD_OP_PUT, .key = "/big", .key_len = 4, .value = big, .value_len = sizeof big};
    char err[256] = "";
    etcd_stats before, after;
    etcd_stats_get(c, &before);
    int rc = etcd_submit(c, &r, 77, err, sizeof err);
    etcd_stats_get(c, &after);
    CHECK(rc == -ETCD_E_TOO_LARGE, "rc %d (%s)", rc, err);
    CHECK(after.submitted == before.submitted &&
              after.refused_too_large == before.refused_too_large + 1,
          "a refused request was counted as sent");
    /* Just under the limit as the client counts it: etcd takes it, so the bound is honest. */
    r.op.value_len = ETCD_REQUEST_BYTES_MAX - (etcd_request_bytes(&r) - sizeof big);
    CHECK(etcd_request_bytes(&r) == ETCD_REQUEST_BYTES_MAX, "bound %zu", etcd_request_bytes(&r));
    r.deadline_ms = 5000;
    got g = run(c, &r);
    OK(g);
    printf("ok request over ETCD_REQUEST_BYTES_MAX refused before sending; %zu-byte value at the "
           "limit accepted\n",
           r.op.value_len);
}

/* The cluster log's fencing (docs/cluster.md): a log put is conditional on the leader key
 * still being the one this member created (its create_revision = the epoch). */
static got fenced_put(etcd_client *c, const char *leader_key, int64_t epoch, const char *log_key,
                      const void *val, size_t len) {
    etcd_compare cmp = {.key = leader_key,
                        .key_len = strlen(leader_key),
                        .target = ETCD_CMP_CREATE,
                        .result = ETCD_CMP_EQUAL,
                        .number = epoch};
    etcd_op ok = {.kind = ETCD_OP_PUT,
                  .key = log_key,
                  .key_len = strlen(log_key),
                  .value = val,
                  .value_len = len};
    etcd_op no = {.kind = ETCD_OP_RANGE, .key = leader_key, .key_len = strlen(leader_key)};
    etcd_request r = {.kind = ETCD_TXN,
                      .compares = &cmp,
                      .compare_count = 1,
                      .success = &ok,
                      .success_count = 1,
                      .failure = &no,
                      .failure_count = 1};
    return run(c, &r);
}

static void test_fencing_txn(etcd_client *c) {
    const char *lk = "/f/leader";
    /* Campaign: create the leader key only if absent (version == 0). */
    etcd_compare absent = {.key = lk,
                           .key_len = strlen(lk),
                           .target = ETCD_CMP_VERSION,
                           .result = ETCD_CMP_EQUAL,
                           .number = 0};
    etcd_op mine = {
        .kind = ETCD_OP_PUT, .key = lk, .key_len = strlen(lk), .value = "gw-a", .value_len = 4};
    etcd_op who = {.kind = ETCD_OP_RANGE, .key = lk, .key_len = strlen(lk)};
    etcd_request camp = {.kind = ETCD_TXN,
                         .compares = &absent,
                         .compare_count = 1,
                         .success = &mine,
                         .success_count = 1,
                         .failure = &who,
                         .failure_count = 1};
    got g = run(c, &camp);
    OK(g);
    CHECK(g.succeeded, "campaign on an absent key lost");
    int64_t epoch = g.revision; /* the txn's revision is the key's create_revision */
    got l = get(c, lk, strlen(lk));
    CHECK(l.create_revision == epoch, "epoch %" PRId64 " vs create_revision %" PRId64, epoch,
          l.create_revision);
    got again = run(c, &camp);
    CHECK(again.err == ETCD_OK && !again.succeeded && again.op_count == 1 && again.kv_count == 1,
          "second campaign: err %d succeeded %d ops %zu kvs %zu", again.err, again.succeeded,
          again.op_count, again.kv_count);

    got f = fenced_put(c, lk, epoch, "/f/log/1", "batch-1", 7);
    OK(f);
    CHECK(f.succeeded, "the holder's fenced put failed");
    /* Someone else takes over: the key is deleted (lease expired) and created again. */
    etcd_request del = {.kind = ETCD_DELETE};
    del.op = (etcd_op){.kind = ETCD_OP_DELETE, .key = lk, .key_len = strlen(lk)};
    OK(run(c, &del));
    mine.value = "gw-b";
    g = run(c, &camp);
    CHECK(g.succeeded && g.revision > epoch, "the new leader's campaign");
    f = fenced_put(c, lk, epoch, "/f/log/2", "batch-2", 7);
    OK(f);
    CHECK(!f.succeeded, "a deposed leader's fenced put went through");
    CHECK(f.kv_count == 1 && f.create_revision == g.revision && f.value_len == 4 &&
              memcmp(f.value, "gw-b", 4) == 0,
          "the failure branch should show the new holder");
    got log2 = get(c, "/f/log/2", 8);
    CHECK(log2.err == ETCD_OK && log2.kv_count == 0, "the fenced-out log key exists");
    printf("ok fencing txn: holder commits, a deposed epoch is refused\n");
}

static void test_lease(etcd_client *c) {
    etcd_request gr = {.kind = ETCD_LEASE_GRANT, .ttl_s = 1};
    got g = run(c, &gr);
    OK(g);
    CHECK(g.lease_id != 0 && g.ttl_s == 1, "lease %" PRId64 " ttl %" PRId64, g.lease_id, g.ttl_s);
    int64_t id = g.lease_id;
    OK(put(c, "/l/alive", "1", 1, id));
    CHECK(etcd_lease_keep_start(c, id, 300, 55) == 0, "keep_start");
    int64_t end = etcd_mono_ms() + 2500; /* 2.5 TTLs */
    while (etcd_mono_ms() < end) pump(c, 100);
    got k = get(c, "/l/alive", 8);
    CHECK(k.kv_count == 1, "a kept lease's key vanished");
    int64_t until = 0;
    CHECK(etcd_lease_valid_until(c, id, &until) && until > etcd_mono_ms(),
          "lease validity not known/future");
    CHECK(T.lease_lost == 0, "kept lease reported lost");
    etcd_lease_keep_stop(c, id);
    int64_t stopped = etcd_mono_ms();
    bool gone = false;
    while (!gone && etcd_mono_ms() < stopped + 4000) {
        pump(c, 100);
        gone = get(c, "/l/alive", 8).kv_count == 0;
    }
    CHECK(gone, "key of an abandoned lease still there after 4 s");
    etcd_request ka = {.kind = ETCD_LEASE_KEEPALIVE, .lease_id = id};
    got a = run(c, &ka);
    CHECK(a.err == ETCD_E_LEASE_LOST, "keep-alive of an expired lease: %s", etcd_strerror(a.err));
    printf("ok lease kept past its TTL; deleted %" PRId64 " ms after keep-alives stopped\n",
           etcd_mono_ms() - stopped);
}

static int64_t watch_prefix(etcd_client *c, const char *prefix, int64_t from) {
    uint8_t end[32];
    size_t n = etcd_prefix_end(prefix, strlen(prefix), end, sizeof end);
    T.watch_endpoint = -1;
    int id = etcd_watch_start(c, prefix, strlen(prefix), end, n, from, WATCH_COOKIE_BASE);
    CHECK(id >= 0, "watch_start %d", id);
    int64_t t = etcd_mono_ms() + 3000;
    while (T.watch_endpoint < 0 && etcd_mono_ms() < t) pump(c, 50);
    CHECK(T.watch_endpoint >= 0, "watch never created");
    return id;
}

static void put_async(etcd_client *c, const char *key) {
    etcd_request r = {.kind = ETCD_PUT, .flags = ETCD_F_IDEMPOTENT, .deadline_ms = 5000};
    r.op = (etcd_op){.kind = ETCD_OP_PUT,
                     .key = key,
                     .key_len = strlen(key),
                     .value = key,
                     .value_len = strlen(key)};
    uint64_t cookie;
    CHECK(submit(c, &r, &cookie) == 0, "submit");
}

/* Three keys in one txn: one revision, three events (the reconnect must neither lose nor
 * repeat any of them). */
static void put3(etcd_client *c, int i) {
    char k[3][32];
    etcd_op ops[3];
    for (int j = 0; j < 3; j++) {
        snprintf(k[j], sizeof k[j], "/w/%03d", i + j);
        ops[j] = (etcd_op){.kind = ETCD_OP_PUT,
                           .key = k[j],
                           .key_len = strlen(k[j]),
                           .value = "t",
                           .value_len = 1};
    }
    /* Right after the kill etcd may be electing a leader: a proposal forwarded to the dead
     * one is lost and its outcome unknown, so the txn is sent again (the same three puts
     * twice are harmless) until one member answers. */
    etcd_request r = {.kind = ETCD_TXN,
                      .flags = ETCD_F_IDEMPOTENT,
                      .deadline_ms = 5000,
                      .success = ops,
                      .success_count = 3};
    OK(run(c, &r));
}

/* The watch's events against etcd's own account of what happened under /w/: a put retried
 * after its member died may have been applied twice (ETCD_F_IDEMPOTENT), so each key's
 * version says how many events it must have, and its mod_revision which one came last. */
static void check_watch_history(etcd_client *c, int want, int64_t from) {
    char key[32];
    int64_t versions = 0, last_rev[128] = {0};
    int64_t t = etcd_mono_ms() + 8000;
    for (int i = 0; i < want; i++) {
        snprintf(key, sizeof key, "/w/%03d", i);
        got g;
        do {
            pump(c, 20);
            g = get(c, key, strlen(key));
        } while (g.kv_count == 0 && etcd_mono_ms() < t); /* its put may still be retrying */
        CHECK(g.kv_count == 1, "%s never written", key);
        versions += g.version;
        last_rev[i] = g.mod_revision;
    }
    while (T.nevents < (size_t)versions && etcd_mono_ms() < t) pump(c, 50);
    pump(c, 200); /* anything beyond would be a duplicate */
    CHECK(T.nevents == (size_t)versions, "watch saw %zu events, etcd holds %" PRId64, T.nevents,
          versions);
    int64_t seen_last[128] = {0};
    for (size_t k = 0; k < T.nevents; k++) {
        int idx = atoi(T.events[k].key + 3);
        CHECK(idx >= 0 && idx < want, "unexpected key %s", T.events[k].key);
        CHECK(T.events[k].rev >= from, "event before the start revision");
        CHECK(k == 0 || T.events[k].rev >= T.events[k - 1].rev, "revision went back at event %zu",
              k);
        for (size_t j = 0; j < k; j++)
            CHECK(T.events[j].rev != T.events[k].rev ||
                      strcmp(T.events[j].key, T.events[k].key) != 0,
                  "event %s@%" PRId64 " delivered twice", T.events[k].key, T.events[k].rev);
        CHECK(k == 0 || T.events[k].rev > T.events[k - 1].rev ||
                  idx == atoi(T.events[k - 1].key + 3) + 1,
              "two events of one revision out of txn order");
        if (idx >= 0 && idx < 128) seen_last[idx] = T.events[k].rev;
    }
    for (int i = 0; i < want; i++)
        CHECK(seen_last[i] == last_rev[i], "/w/%03d: last event at %" PRId64 ", etcd has %" PRId64,
              i, seen_last[i], last_rev[i]);
}

/* A watch from revision R, the member it is connected to killed (-9) amid concurrent puts and
 * a txn. Returns the killed member. */
static int test_watch_across_kill(etcd_client *c) {
    got base = put(c, "/w-start", "x", 1, 0);
    OK(base);
    int64_t from = base.revision + 1;
    int id = (int)watch_prefix(c, "/w/", from);
    int victim = T.watch_endpoint;
    int want = 0;
    char key[32];
    for (; want < 30; want++) {
        snprintf(key, sizeof key, "/w/%03d", want);
        put_async(c, key);
    }
    /* Some events delivered first, so the reconnect must resume after them, not from `from`. */
    int64_t t0 = etcd_mono_ms() + 5000;
    while (T.nevents < 10 && etcd_mono_ms() < t0) pump(c, 5);
    CHECK(T.nevents >= 10, "watch delivered %zu events before the kill", T.nevents);
    size_t before_kill = T.nevents;
    ctl("kill9 %d", victim); /* the member the watch is connected to, amid the puts */
    for (; want < 60; want++) {
        snprintf(key, sizeof key, "/w/%03d", want);
        put_async(c, key);
    }
    put3(c, want);
    want += 3;
    for (; want < 80; want++) {
        snprintf(key, sizeof key, "/w/%03d", want);
        put_async(c, key);
    }
    check_watch_history(c, want, from);
    etcd_stats st;
    etcd_stats_get(c, &st);
    CHECK(st.watch_reconnects >= 1, "the watch never reconnected (was it on the killed member?)");
    printf("ok watch from revision %" PRId64
           ": %zu events (%d keys), each once and in order, across kill -9 of member %d "
           "after %zu events (%" PRIu64 " reconnects)\n",
           from, T.nevents, want, victim, before_kill, st.watch_reconnects);
    etcd_watch_cancel(c, id);
    int64_t t = etcd_mono_ms() + 2000;
    while (!T.watch_last.final && etcd_mono_ms() < t) pump(c, 50);
    CHECK(T.watch_last.final && T.watch_last.err == ETCD_E_CANCELED, "cancelled watch did not end");
    return victim;
}

static void test_member_loss(etcd_client *c, int victim) {
    /* One member down (victim): requests keep succeeding. */
    for (int i = 0; i < 10; i++) {
        got g = put(c, "/one-down", "v", 1, 0);
        OK(g);
    }
    OK(get(c, "/one-down", 9));
    printf("ok with member %d down, puts and ranges succeed\n", victim);

    /* Two down: no quorum. Requests fail with a timeout at their deadline, never hang. */
    int second = (victim + 1) % 3;
    ctl("kill9 %d", second);
    etcd_request r = {.kind = ETCD_PUT, .deadline_ms = 1500};
    r.op = (etcd_op){
        .kind = ETCD_OP_PUT, .key = "/two-down", .key_len = 9, .value = "v", .value_len = 1};
    got g = run(c, &r);
    int64_t took = g.done_ms - g.sent_ms;
    CHECK(g.err == ETCD_E_TIMEOUT, "no quorum: %s: %s", etcd_strerror(g.err), g.msg);
    CHECK(took >= 1400 && took <= 1700, "no-quorum put took %" PRId64 " ms, deadline 1500", took);
    etcd_request rg = {.kind = ETCD_RANGE, .flags = ETCD_F_IDEMPOTENT, .deadline_ms = 1000};
    rg.op = (etcd_op){.kind = ETCD_OP_RANGE, .key = "/one-down", .key_len = 9};
    got gr = run(c, &rg);
    CHECK(gr.err == ETCD_E_TIMEOUT && gr.done_ms - gr.sent_ms <= 1200,
          "no quorum range: %s in %" PRId64 " ms", etcd_strerror(gr.err), gr.done_ms - gr.sent_ms);
    printf("ok with two members down: put -> %s after %" PRId64 " ms (deadline 1500), unsure=%d\n",
           etcd_strerror(g.err), took, g.unsure);
    ctl("restart %d", second);
    ctl("restart %d", victim);
    g = put(c, "/two-down", "back", 4, 0);
    OK(g);
    printf("ok after restart, requests succeed again\n");
}

static void test_frozen_member(etcd_client *c) {
    got g = put(c, "/two-down", "back", 4, 0);
    OK(g);
    /* A frozen member (SIGSTOP) accepts connections and answers nothing: an idempotent
     * request moves on after attempt_timeout_ms and succeeds on another member. */
    int frozen = g.endpoint;
    ctl("stop %d", frozen);
    etcd_request rf = {.kind = ETCD_RANGE, .flags = ETCD_F_IDEMPOTENT, .deadline_ms = 4000};
    rf.op = (etcd_op){.kind = ETCD_OP_RANGE, .key = "/two-down", .key_len = 9};
    got f = run(c, &rf); /* 700 ms on the frozen member, then (if it led) an election */
    OK(f);
    CHECK(f.endpoint != frozen && f.attempts >= 2,
          "range with member %d frozen: answered by %d after %u attempts in %" PRId64 " ms", frozen,
          f.endpoint, f.attempts, f.done_ms - f.sent_ms);
    CHECK(f.value_len == 4 && memcmp(f.value, "back", 4) == 0, "wrong value read");
    ctl("cont %d", frozen);
    printf("ok with member %d frozen, an idempotent range fails over in %" PRId64 " ms\n", frozen,
           f.done_ms - f.sent_ms);
}

/* Compaction through /v3/kv/compaction; a watch or a read from before it is told so, with
 * the revision etcd compacted up to (the cluster's "member behind the trimmed log"). */
static void test_compaction(etcd_client *c) {
    got g = put(c, "/c/k", "v", 1, 0);
    OK(g);
    int64_t rev = g.revision;
    etcd_request cr = {.kind = ETCD_COMPACT, .flags = ETCD_F_IDEMPOTENT, .revision = rev};
    OK(run(c, &cr));
    etcd_request old = {.kind = ETCD_RANGE, .flags = ETCD_F_IDEMPOTENT};
    old.op = (etcd_op){.kind = ETCD_OP_RANGE, .key = "/c/k", .key_len = 4, .revision = rev - 1};
    got o = run(c, &old);
    CHECK(o.err == ETCD_E_COMPACTED, "range at a compacted revision: %s: %s", etcd_strerror(o.err),
          o.msg);
    memset(&T.watch_last, 0, sizeof T.watch_last);
    int id = etcd_watch_start(c, "/c/", 3, "/c0", 3, 2, WATCH_COOKIE_BASE);
    CHECK(id >= 0, "watch_start %d", id);
    int64_t t = etcd_mono_ms() + 3000;
    while (!T.watch_last.final && etcd_mono_ms() < t) pump(c, 50);
    CHECK(T.watch_last.final && T.watch_last.err == ETCD_E_COMPACTED &&
              T.watch_last.compact_revision == rev,
          "watch from revision 2 after compaction at %" PRId64 ": final %d %s compact %" PRId64,
          rev, T.watch_last.final, etcd_strerror(T.watch_last.err), T.watch_last.compact_revision);
    /* A revoked lease: its keep-alive says lost. */
    etcd_request gr = {.kind = ETCD_LEASE_GRANT, .ttl_s = 30};
    got l = run(c, &gr);
    OK(l);
    etcd_request rv = {.kind = ETCD_LEASE_REVOKE, .lease_id = l.lease_id};
    OK(run(c, &rv));
    etcd_request ka = {.kind = ETCD_LEASE_KEEPALIVE, .lease_id = l.lease_id};
    got a = run(c, &ka);
    CHECK(a.err == ETCD_E_LEASE_LOST, "keep-alive of a revoked lease: %s", etcd_strerror(a.err));
    printf("ok compaction at %" PRId64 ": old read and watch get ETCD_E_COMPACTED; revoked lease "
           "is lost\n",
           rev);
}

/* ---- the latency figure ---------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* n fenced txns with a `bytes` value, `depth` in flight at once (1: one after the other, as
 * a log that commits batch after batch). Latency from submit to completion, on the owner. */
static int bench(etcd_client *c, int n, size_t bytes, int depth) {
    const char *lk = "/bench/leader";
    etcd_request del = {.kind = ETCD_DELETE, .deadline_ms = 10000};
    del.op = (etcd_op){.kind = ETCD_OP_DELETE,
                       .key = "/bench/",
                       .key_len = 7,
                       .range_end = "/bench0",
                       .range_end_len = 7};
    run(c, &del);
    got g = put(c, lk, "gw-a", 4, 0);
    OK(g);
    int64_t epoch = g.revision;
    uint8_t *val = malloc(bytes);
    int64_t *lat_us = calloc((size_t)n, sizeof *lat_us),
            *sent_us = calloc((size_t)n, sizeof *sent_us);
    if (!val || !lat_us || !sent_us || depth < 1 || depth > 32) return 1;
    for (size_t i = 0; i < bytes; i++) val[i] = (uint8_t)(i * 31);
    int sent = 0, done = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (done < n) {
        while (sent < n && sent - done < depth) {
            char key[48];
            snprintf(key, sizeof key, "/bench/log/%016d", sent);
            etcd_compare cmp = {.key = lk,
                                .key_len = strlen(lk),
                                .target = ETCD_CMP_CREATE,
                                .result = ETCD_CMP_EQUAL,
                                .number = epoch};
            etcd_op op = {.kind = ETCD_OP_PUT,
                          .key = key,
                          .key_len = strlen(key),
                          .value = val,
                          .value_len = bytes};
            etcd_request r = {.kind = ETCD_TXN,
                              .compares = &cmp,
                              .compare_count = 1,
                              .success = &op,
                              .success_count = 1};
            char err[256];
            sent_us[sent] = mono_us();
            if (etcd_submit(c, &r, (uint64_t)sent + 1, err, sizeof err) < 0) {
                printf("FAIL bench submit: %s\n", err);
                return 1;
            }
            sent++;
        }
        struct pollfd p = {.fd = etcd_event_fd(c), .events = POLLIN};
        poll(&p, 1, 100);
        const etcd_result *out[64];
        size_t k = etcd_poll(c, out, 64);
        for (size_t j = 0; j < k; j++) {
            if (out[j]->err != ETCD_OK || !out[j]->succeeded) {
                printf("FAIL bench txn: %s %s\n", etcd_strerror(out[j]->err), out[j]->msg);
                return 1;
            }
            lat_us[done++] = mono_us() - sent_us[out[j]->cookie - 1];
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    qsort(lat_us, (size_t)n, sizeof *lat_us, cmp_i64);
    printf("bench: %d fenced txns, %zu-byte value, %d in flight, 3 members on loopback: p50 %.2f "
           "ms  p99 %.2f ms  "
           "max %.2f ms  %.0f txn/s  %.1f MB/s\n",
           n, bytes, depth, lat_us[n / 2] / 1000.0, lat_us[(size_t)n * 99 / 100] / 1000.0,
           lat_us[n - 1] / 1000.0, n / secs, (double)n * (double)bytes / secs / 1e6);
    run(c, &del);
    free(val);
    free(lat_us);
    free(sent_us);
    return 0;
}

/* Put -> watch event lag: n puts one after another, each timed from its submit to the
 * arrival of its event on a watch of the prefix (what a follower's log watch will see). */
static int watch_lag(etcd_client *c, int n, size_t bytes) {
    int64_t *lag_us = calloc((size_t)n, sizeof *lag_us);
    uint8_t *val = calloc(1, bytes + 1);
    if (!lag_us || !val) return 1;
    uint8_t end[8];
    size_t end_len = etcd_prefix_end("/lag/", 5, end, sizeof end);
    if (etcd_watch_start(c, "/lag/", 5, end, end_len, 0, WATCH_COOKIE_BASE + 1) < 0) return 1;
    const etcd_result *out[64];
    bool created = false;
    for (int64_t t = etcd_mono_ms() + 3000; !created && etcd_mono_ms() < t;) {
        struct pollfd p = {.fd = etcd_event_fd(c), .events = POLLIN};
        poll(&p, 1, 50);
        size_t k = etcd_poll(c, out, 64);
        for (size_t j = 0; j < k; j++) created |= out[j]->created;
    }
    for (int i = 0; i < n && created; i++) {
        etcd_request r = {.kind = ETCD_PUT};
        r.op = (etcd_op){
            .kind = ETCD_OP_PUT, .key = "/lag/k", .key_len = 6, .value = val, .value_len = bytes};
        int64_t t0 = mono_us();
        if (etcd_submit(c, &r, 1, NULL, 0) < 0) return 1;
        bool arrived = false;
        while (!arrived && mono_us() - t0 < 5000000) {
            struct pollfd p = {.fd = etcd_event_fd(c), .events = POLLIN};
            poll(&p, 1, 50);
            size_t k = etcd_poll(c, out, 64);
            for (size_t j = 0; j < k; j++)
                if (out[j]->kind == ETCD_WATCH && out[j]->event_count > 0) arrived = true;
        }
        if (!arrived) {
            printf("FAIL watch lag: event %d never arrived\n", i);
            return 1;
        }
        lag_us[i] = mono_us() - t0;
    }
    if (!created) return 1;
    qsort(lag_us, (size_t)n, sizeof *lag_us, cmp_i64);
    printf("watch-lag: %d puts of %zu bytes, submit -> event on the watch, 3 members on loopback: "
           "p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
           n, bytes, lag_us[n / 2] / 1000.0, lag_us[(size_t)n * 99 / 100] / 1000.0,
           lag_us[n - 1] / 1000.0);
    free(lag_us);
    free(val);
    return 0;
}

int main(int argc, char **argv) {
    const char *eps = getenv("ETCD_ENDPOINTS");
    if (!eps) {
        fprintf(stderr, "ETCD_ENDPOINTS not set (run through test_etcd_client.py)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* once per process, before any client thread */
    char err[256];
    etcd_config cfg = {.endpoints = eps,
                       .deadline_ms = 2000,
                       .attempt_timeout_ms = 700,
                       .connect_timeout_ms = 200};
    etcd_client *c = etcd_create(&cfg, err, sizeof err);
    if (!c) {
        printf("FAIL etcd_create: %s\n", err);
        return 1;
    }
    int rc;
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "--bench") == 0) {
        rc = bench(c, atoi(argv[2]), (size_t)atol(argv[3]), argc == 5 ? atoi(argv[4]) : 1);
    } else if (argc == 4 && strcmp(argv[1], "--watch-lag") == 0) {
        rc = watch_lag(c, atoi(argv[2]), (size_t)atol(argv[3]));
    } else {
        test_binary_round_trip(c);
        test_request_limit(c);
        test_fencing_txn(c);
        test_lease(c);
        test_member_loss(c, test_watch_across_kill(c));
        test_frozen_member(c);
        test_compaction(c);
        etcd_stats st;
        etcd_stats_get(c, &st);
        printf("stats: submitted %" PRIu64 " completed %" PRIu64 " failed %" PRIu64
               " attempts %" PRIu64 " failovers %" PRIu64 " watch_events %" PRIu64
               " keepalives_ok %" PRIu64 "\n",
               st.submitted, st.completed, st.failed, st.attempts, st.failovers, st.watch_events,
               st.keepalives_ok);
        rc = failures ? 1 : 0;
        printf("%s: %d failure(s)\n", rc ? "FAILED" : "PASSED", failures);
    }
    etcd_destroy(c);
    curl_global_cleanup();
    return rc;
}
