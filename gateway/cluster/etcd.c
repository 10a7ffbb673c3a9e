/*
 * etcd: the client of etcd.h. Why it is built so:
 *
 * - The gateway's loop must never wait on a network round trip to etcd, and libcurl's
 *   multi interface wants a loop of its own; so the client owns a thread that runs
 *   curl_multi_poll(), and the two sides exchange slot indexes through two rings under
 *   one mutex (held for pushes and pops only). The owner wakes the thread with
 *   curl_multi_wakeup(); the thread wakes the owner with an eventfd.
 * - Requests live in a fixed array of ETCD_INFLIGHT_MAX slots allocated at create. A
 *   slot's buffers (JSON body, raw answer, decoded bytes) grow to the largest request it
 *   has carried and are kept, so steady traffic allocates nothing in this module (jansson
 *   and libcurl allocate inside their own calls).
 * - The JSON body is encoded on the owner's thread inside etcd_submit(): it is the one copy
 *   the caller's bytes need anyway, and it lets the size limit refuse a request at once.
 * - A slot moves FREE -> QUEUED (owner) -> RUNNING/WAIT (thread) -> DONE (thread) -> LENT
 *   (owner, until the next etcd_poll) -> FREE. Watches and kept leases each reserve one
 *   slot for their final completion, so an ending is always deliverable; a watch's event
 *   batches take free slots only while a quarter of the pool stays free for requests, and
 *   otherwise pause the stream (CURL_WRITEFUNC_PAUSE) until the owner releases some.
 */
#include "etcd.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#define RETRY_BACKOFF_MS_MAX 200  /* pause between rounds over every member, at most */
#define WATCH_BACKOFF_MS_MAX 1000 /* between reconnects of a watch that keeps failing */
#define WATCH_SLOTS_RESERVE  (ETCD_INFLIGHT_MAX / 4) /* left free for requests by watches */
#define POLL_WAIT_MS_MAX     1000 /* the thread looks at its timers at least this often */

typedef enum slot_state {
    S_FREE,
    S_OWNER,
    S_QUEUED,
    S_RUNNING,
    S_WAIT,
    S_DONE,
    S_LENT
} slot_state;
typedef enum xfer_kind {
    X_SLOT = 1,
    X_WATCH,
    X_LEASE
} xfer_kind;

/* What CURLOPT_PRIVATE points at: which slot, watch or lease a transfer belongs to. */
typedef struct xfer {
    xfer_kind kind;
    uint32_t idx;
} xfer;

typedef struct slot {
    slot_state state;
    etcd_kind kind;
    unsigned flags;
    uint32_t deadline_ms;
    const char *path;
    buf body;  /* JSON request */
    buf resp;  /* raw answer */
    buf arena; /* decoded keys and values; reserved before decoding, so pointers stay put */
    etcd_kv *kvs;
    size_t kvs_cap;
    etcd_event *events;
    size_t events_cap;
    etcd_op_result *ops;
    size_t ops_cap;
    etcd_result res;
    CURL *easy;
    xfer x;
    char curl_err[CURL_ERROR_SIZE];
    int64_t deadline_mono_ms, retry_at_ms;
    int ep;             /* member of the current attempt */
    uint32_t failed;    /* attempts that failed in transport */
    bool maybe_applied; /* an attempt reached etcd and its answer was lost */
} slot;

typedef enum watch_ctl {
    W_FREE,
    W_START,
    W_RUN,
    W_CANCEL,
    W_DEAD
} watch_ctl;

typedef struct watch {
    etcd_client *c;
    watch_ctl ctl; /* under mu */
    uint64_t cookie;
    uint32_t final_slot;
    uint8_t *key, *end; /* copies, made by watch_start */
    size_t key_len, end_len;
    /* thread only */
    bool connected, blocked, abort_conn, ended;
    int64_t cur_rev;  /* revision of the last event delivered (or the start when none) */
    uint32_t cur_n;   /* events of cur_rev delivered */
    int64_t skip_rev; /* this connection started at skip_rev ... */
    uint32_t skip_n;  /* ... whose first skip_n events were delivered already */
    int ep;
    int64_t reconnect_at, connected_at;
    uint32_t backoff_ms;
    buf line; /* received, not yet processed */
    size_t line_off;
    buf body;
    CURL *easy;
    xfer x;
    char curl_err[CURL_ERROR_SIZE];
    char why[ETCD_ERR_MSG_MAX];
} watch;

typedef enum lease_ctl {
    L_FREE,
    L_START,
    L_RUN,
    L_STOP
} lease_ctl;

typedef struct lease {
    lease_ctl ctl; /* under mu, with valid/valid_until */
    int64_t id;
    uint32_t interval_ms;
    uint64_t cookie;
    uint32_t final_slot;
    bool valid;
    int64_t valid_until, lost_after;
    /* thread only */
    bool inflight;
    int64_t next_at, sent_at;
    int ep;
    buf body, resp;
    CURL *easy;
    xfer x;
    char curl_err[CURL_ERROR_SIZE];
} lease;

typedef struct ring32 {
    uint32_t v[ETCD_INFLIGHT_MAX];
    uint32_t head, len;
} ring32;

struct etcd_client {
    char ep[ETCD_ENDPOINTS_MAX][ETCD_ENDPOINT_LEN_MAX];
    int nep;
    int ep_cur; /* thread only: the member the next attempt goes to */
    uint32_t deadline_ms, attempt_timeout_ms, connect_timeout_ms, watch_idle_ms;
    int efd;
    CURLM *multi;
    struct curl_slist *hdr_json, *hdr_watch;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    bool stop;
    slot slots[ETCD_INFLIGHT_MAX];
    uint32_t freel[ETCD_INFLIGHT_MAX];
    uint32_t nfree;
    ring32 queued, done;
    uint32_t lent[ETCD_INFLIGHT_MAX]; /* owner only */
    uint32_t nlent;
    watch watches[ETCD_WATCHES_MAX];
    lease leases[ETCD_LEASES_MAX];
    etcd_stats stats;
};

_Static_assert(ETCD_INFLIGHT_MAX > WATCH_SLOTS_RESERVE + ETCD_WATCHES_MAX + ETCD_LEASES_MAX,
               "the slot pool must hold the reserved final slots and the request share");

/* Thread: counters the owner reads with etcd_stats_get(). */
#define STAT_ADD(c, field, n)                                                                      \
    do {                                                                                           \
        pthread_mutex_lock(&(c)->mu);                                                              \
        (c)->stats.field += (n);                                                                   \
        pthread_mutex_unlock(&(c)->mu);                                                            \
    } while (0)

/* ---- small helpers --------------------------------------------------------------------- */

int64_t etcd_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *etcd_strerror(etcd_err e) {
    switch (e) {
    case ETCD_OK: return "ok";
    case ETCD_E_FULL: return "queue full";
    case ETCD_E_TOO_LARGE: return "request too large";
    case ETCD_E_INVALID: return "invalid request";
    case ETCD_E_TIMEOUT: return "deadline passed";
    case ETCD_E_UNAVAILABLE: return "etcd unavailable";
    case ETCD_E_SERVER: return "etcd error";
    case ETCD_E_COMPACTED: return "revision compacted";
    case ETCD_E_LEASE_LOST: return "lease lost";
    case ETCD_E_PROTOCOL: return "protocol error";
    case ETCD_E_NOMEM: return "out of memory";
    case ETCD_E_CANCELED: return "canceled";
    }
    return "unknown error";
}

static int fail(char *err, size_t cap, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t cap, int code, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return -code;
}

static void wake_owner(etcd_client *c) {
    uint64_t one = 1;
    ssize_t w = write(c->efd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is already non-zero, the owner will wake */
}

static void ring_push(ring32 *r, uint32_t v) {
    assert(r->len < ETCD_INFLIGHT_MAX); /* as many places as slots: cannot overflow */
    r->v[(r->head + r->len++) % ETCD_INFLIGHT_MAX] = v;
}
static uint32_t ring_pop(ring32 *r) {
    assert(r->len > 0);
    uint32_t v = r->v[r->head];
    r->head = (r->head + 1) % ETCD_INFLIGHT_MAX;
    r->len--;
    return v;
}

/* Under mu: a free slot, or UINT32_MAX. keep: free slots that must stay after this one. */
static uint32_t slot_take_locked(etcd_client *c, uint32_t keep) {
    if (c->nfree <= keep) return UINT32_MAX;
    uint32_t i = c->freel[--c->nfree];
    assert(c->slots[i].state == S_FREE);
    c->slots[i].state = S_OWNER;
    return i;
}
static void slot_free_locked(etcd_client *c, uint32_t i) {
    assert(c->slots[i].state != S_FREE);
    c->slots[i].state = S_FREE;
    c->freel[c->nfree++] = i;
}

/* Reset a slot's result for a new use; the buffers are kept. */
static void slot_clear(slot *s, etcd_kind kind, uint64_t cookie) {
    memset(&s->res, 0, sizeof s->res);
    s->res.kind = kind;
    s->res.cookie = cookie;
    s->res.endpoint = -1;
    s->kind = kind;
    buf_reset(&s->arena);
    s->failed = 0;
    s->maybe_applied = false;
}

/* Thread: hand a filled slot to the owner. */
static void slot_publish(etcd_client *c, uint32_t i) {
    slot *s = &c->slots[i];
    s->res.done_mono_ms = etcd_mono_ms();
    pthread_mutex_lock(&c->mu);
    s->state = S_DONE;
    ring_push(&c->done, i);
    c->stats.completed++;
    if (s->res.err != ETCD_OK) c->stats.failed++;
    pthread_mutex_unlock(&c->mu);
    wake_owner(c);
}

static void set_msg(etcd_result *r, etcd_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_msg(etcd_result *r, etcd_err err, const char *fmt, ...) {
    va_list ap;
    r->err = err;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

/* ---- encoding -------------------------------------------------------------------------- */

static int enc_b64(buf *b, const char *name, const void *p, size_t n) {
    size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    if (buf_printf(b, "\"%s\":\"", name) < 0 || buf_reserve(b, need + 2) < 0) return -1;
    sodium_bin2base64((char *)b->data + b->len, need, n ? p : (const void *)"", n,
                      sodium_base64_VARIANT_ORIGINAL);
    b->len += need - 1; /* without the NUL */
    return buf_append(b, "\"", 1);
}

static int enc_i64(buf *b, const char *name, int64_t v) {
    return buf_printf(b, "\"%s\":\"%" PRId64 "\"", name, v); /* int64 as a string, as jsonpb */
}

/* The fields of one op, inside its braces. */
static int enc_op_fields(buf *b, const etcd_op *op) {
    if (enc_b64(b, "key", op->key, op->key_len) < 0) return -1;
    if (op->range_end_len && (buf_append(b, ",", 1) < 0 ||
                              enc_b64(b, "range_end", op->range_end, op->range_end_len) < 0))
        return -1;
    if (op->kind == ETCD_OP_PUT) {
        if (buf_append(b, ",", 1) < 0 || enc_b64(b, "value", op->value, op->value_len) < 0)
            return -1;
        if (op->lease && (buf_append(b, ",", 1) < 0 || enc_i64(b, "lease", op->lease) < 0))
            return -1;
    }
    if (op->kind == ETCD_OP_RANGE) {
        if (op->limit && (buf_append(b, ",", 1) < 0 || enc_i64(b, "limit", op->limit) < 0))
            return -1;
        if (op->revision && (buf_append(b, ",", 1) < 0 || enc_i64(b, "revision", op->revision) < 0))
            return -1;
        static const char ko[] = ",\"keys_only\":true";
        if (op->keys_only && buf_append(b, ko, sizeof ko - 1) < 0) return -1;
    }
    return 0;
}

static int enc_txn_op(buf *b, const etcd_op *op) {
    static const char *names[] = {"request_range", "request_put", "request_delete_range"};
    if (buf_printf(b, "{\"%s\":{", names[op->kind]) < 0 || enc_op_fields(b, op) < 0) return -1;
    return buf_append(b, "}}", 2);
}

static int enc_compare(buf *b, const etcd_compare *cmp) {
    static const char *targets[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"};
    static const char *fields[] = {"version", "create_revision", "mod_revision", "value", "lease"};
    static const char *results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
    if (buf_append(b, "{", 1) < 0 || enc_b64(b, "key", cmp->key, cmp->key_len) < 0) return -1;
    if (buf_printf(b, ",\"target\":\"%s\",\"result\":\"%s\",", targets[cmp->target],
                   results[cmp->result]) < 0)
        return -1;
    int rc = cmp->target == ETCD_CMP_VALUE ? enc_b64(b, "value", cmp->value, cmp->value_len)
                                           : enc_i64(b, fields[cmp->target], cmp->number);
    return rc < 0 ? -1 : buf_append(b, "}", 1);
}

static int enc_ops(buf *b, const char *name, const etcd_op *ops, size_t n) {
    if (buf_printf(b, ",\"%s\":[", name) < 0) return -1;
    for (size_t i = 0; i < n; i++)
        if ((i && buf_append(b, ",", 1) < 0) || enc_txn_op(b, &ops[i]) < 0) return -1;
    return buf_append(b, "]", 1);
}

static int enc_txn(buf *b, const etcd_request *r) {
    if (buf_append(b, "{\"compare\":[", 12) < 0) return -1;
    for (size_t i = 0; i < r->compare_count; i++)
        if ((i && buf_append(b, ",", 1) < 0) || enc_compare(b, &r->compares[i]) < 0) return -1;
    if (buf_append(b, "]", 1) < 0) return -1;
    if (enc_ops(b, "success", r->success, r->success_count) < 0) return -1;
    if (enc_ops(b, "failure", r->failure, r->failure_count) < 0) return -1;
    return buf_append(b, "}", 1);
}

/* The JSON body and URL path of a request. -1: out of memory. */
static int encode_request(buf *b, const etcd_request *r, const char **path) {
    buf_reset(b);
    switch (r->kind) {
    case ETCD_RANGE:
    case ETCD_PUT:
    case ETCD_DELETE: {
        static const char *paths[] = {"/v3/kv/range", "/v3/kv/put", "/v3/kv/deleterange"};
        *path = paths[r->op.kind];
        if (buf_append(b, "{", 1) < 0 || enc_op_fields(b, &r->op) < 0) return -1;
        if ((r->flags & ETCD_F_SERIALIZABLE) && buf_printf(b, ",\"serializable\":true") < 0)
            return -1;
        return buf_append(b, "}", 1);
    }
    case ETCD_TXN: *path = "/v3/kv/txn"; return enc_txn(b, r);
    case ETCD_COMPACT:
        *path = "/v3/kv/compaction";
        return buf_printf(b, "{\"revision\":\"%" PRId64 "\",\"physical\":true}", r->revision);
    case ETCD_LEASE_GRANT:
        *path = "/v3/lease/grant";
        return buf_printf(b, "{\"TTL\":\"%" PRId64 "\",\"ID\":\"%" PRId64 "\"}", r->ttl_s,
                          r->lease_id);
    case ETCD_LEASE_REVOKE:
        *path = "/v3/lease/revoke";
        return buf_printf(b, "{\"ID\":\"%" PRId64 "\"}", r->lease_id);
    case ETCD_LEASE_KEEPALIVE:
        *path = "/v3/lease/keepalive";
        return buf_printf(b, "{\"ID\":\"%" PRId64 "\"}", r->lease_id);
    case ETCD_WATCH: break;
    }
    return -1;
}

/* ---- request checks -------------------------------------------------------------------- */

/* Protobuf: a bytes field costs tag + length varint (<= 6) + bytes; a number <= 11; a nested
 * message its own tag + length. Rounded up per op so the sum is a bound, never an estimate. */
static size_t op_bytes(const etcd_op *op) {
    return 24 + op->key_len + op->range_end_len + op->value_len + 3 * 11;
}

size_t etcd_request_bytes(const etcd_request *r) {
    size_t n = 64; /* header, the request's own framing */
    switch (r->kind) {
    case ETCD_RANGE:
    case ETCD_PUT:
    case ETCD_DELETE: return n + op_bytes(&r->op);
    case ETCD_TXN:
        for (size_t i = 0; i < r->compare_count; i++)
            n += 24 + r->compares[i].key_len + r->compares[i].value_len + 11;
        for (size_t i = 0; i < r->success_count; i++) n += op_bytes(&r->success[i]);
        for (size_t i = 0; i < r->failure_count; i++) n += op_bytes(&r->failure[i]);
        return n;
    default: return n;
    }
}

static bool op_valid(const etcd_op *op, bool alone) {
    if ((unsigned)op->kind > ETCD_OP_DELETE || !op->key || op->key_len == 0) return false;
    if (op->range_end_len && !op->range_end) return false;
    if (op->value_len && !op->value) return false;
    (void)alone;
    return true;
}

static const char *request_invalid(const etcd_request *r) {
    switch (r->kind) {
    case ETCD_RANGE:
    case ETCD_PUT:
    case ETCD_DELETE: {
        static const etcd_op_kind want[] = {ETCD_OP_RANGE, ETCD_OP_PUT, ETCD_OP_DELETE};
        if (r->op.kind != want[r->kind - ETCD_RANGE])
            return "op.kind does not match the request kind";
        return op_valid(&r->op, true) ? NULL : "empty key, or a length without its bytes";
    }
    case ETCD_TXN:
        if (r->compare_count > ETCD_TXN_OPS_MAX || r->success_count > ETCD_TXN_OPS_MAX ||
            r->failure_count > ETCD_TXN_OPS_MAX)
            return "more than ETCD_TXN_OPS_MAX compares or ops in one branch";
        for (size_t i = 0; i < r->compare_count; i++) {
            const etcd_compare *k = &r->compares[i];
            if (!k->key || !k->key_len || (unsigned)k->target > ETCD_CMP_LEASE ||
                (unsigned)k->result > ETCD_CMP_NOT_EQUAL || (k->value_len && !k->value))
                return "bad compare";
        }
        for (size_t i = 0; i < r->success_count; i++)
            if (!op_valid(&r->success[i], false)) return "bad success op";
        for (size_t i = 0; i < r->failure_count; i++)
            if (!op_valid(&r->failure[i], false)) return "bad failure op";
        return NULL;
    case ETCD_COMPACT: return r->revision > 0 ? NULL : "compaction needs a revision > 0";
    case ETCD_LEASE_GRANT: return r->ttl_s > 0 ? NULL : "lease grant needs ttl_s > 0";
    case ETCD_LEASE_REVOKE:
    case ETCD_LEASE_KEEPALIVE: return r->lease_id ? NULL : "lease request needs lease_id";
    case ETCD_WATCH: return "watches start with etcd_watch_start";
    }
    return "unknown request kind";
}

/* ---- decoding -------------------------------------------------------------------------- */

/* int64 fields come as strings from jsonpb; accept numbers too. Absent: 0. */
static int64_t j_i64(const json_t *o, const char *name) {
    const json_t *v = json_object_get(o, name);
    if (json_is_integer(v)) return (int64_t)json_integer_value(v);
    if (json_is_string(v)) return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

/* Decode base64 field `name` into the arena (reserved by the caller). Absent: empty. */
static int j_bytes(buf *arena, const json_t *o, const char *name, const uint8_t **p, size_t *n) {
    const json_t *v = json_object_get(o, name);
    *p = arena->data + arena->len;
    *n = 0;
    if (!v) return 0;
    if (!json_is_string(v)) return -1;
    size_t bin = 0;
    if (sodium_base642bin(arena->data + arena->len, arena->cap - arena->len, json_string_value(v),
                          json_string_length(v), NULL, &bin, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    arena->len += bin;
    *n = bin;
    return 0;
}

static int decode_kv(buf *arena, const json_t *o, etcd_kv *kv) {
    if (!json_is_object(o)) return -1;
    if (j_bytes(arena, o, "key", &kv->key, &kv->key_len) < 0 ||
        j_bytes(arena, o, "value", &kv->value, &kv->value_len) < 0)
        return -1;
    kv->create_revision = j_i64(o, "create_revision");
    kv->mod_revision = j_i64(o, "mod_revision");
    kv->version = j_i64(o, "version");
    kv->lease = j_i64(o, "lease");
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Append the kvs of a range answer to the slot's kv array. */
static int decode_kvs(slot *s, const json_t *o, size_t *first, size_t *count) {
    const json_t *a = json_object_get(o, "kvs");
    size_t n = json_array_size(a);
    *first = s->res.kv_count;
    *count = n;
    if (grow((void **)&s->kvs, &s->kvs_cap, s->res.kv_count + n, sizeof *s->kvs) < 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (decode_kv(&s->arena, json_array_get(a, i), &s->kvs[s->res.kv_count++]) < 0) return -1;
    return 0;
}

static int decode_txn(slot *s, const json_t *root) {
    const json_t *a = json_object_get(root, "responses");
    size_t n = json_array_size(a);
    s->res.succeeded = json_is_true(json_object_get(root, "succeeded"));
    if (grow((void **)&s->ops, &s->ops_cap, n, sizeof *s->ops) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(a, i), *v;
        etcd_op_result *op = &s->ops[i];
        memset(op, 0, sizeof *op);
        if ((v = json_object_get(e, "response_range"))) {
            op->kind = ETCD_OP_RANGE;
            if (decode_kvs(s, v, &op->kv_first, &op->kv_count) < 0) return -1;
        } else if ((v = json_object_get(e, "response_delete_range"))) {
            op->kind = ETCD_OP_DELETE;
            op->deleted = j_i64(v, "deleted");
        } else if (json_object_get(e, "response_put")) {
            op->kind = ETCD_OP_PUT;
        } else {
            return -1;
        }
    }
    s->res.op_count = n;
    s->res.ops = s->ops;
    return 0;
}

/* A 200 answer into the slot's result. */
static void decode_answer(slot *s) {
    etcd_result *r = &s->res;
    json_error_t je;
    json_t *root = json_loadb((const char *)s->resp.data, s->resp.len, 0, &je);
    if (!root) {
        set_msg(r, ETCD_E_PROTOCOL, "unparseable answer from %s: %s", s->path, je.text);
        return;
    }
    if (buf_reserve(&s->arena, s->resp.len + 1) < 0) { /* decoded bytes never outgrow base64 */
        set_msg(r, ETCD_E_NOMEM, "out of memory decoding a %zu-byte answer", s->resp.len);
        json_decref(root);
        return;
    }
    const json_t *body = s->kind == ETCD_LEASE_KEEPALIVE ? json_object_get(root, "result") : root;
    const json_t *hdr = json_object_get(body, "header");
    r->revision = j_i64(hdr, "revision");
    r->raft_term = j_i64(hdr, "raft_term");
    int rc = 0;
    switch (s->kind) {
    case ETCD_RANGE:
        rc = decode_kvs(s, body, &(size_t){0}, &(size_t){0});
        r->count = j_i64(body, "count");
        r->more = json_is_true(json_object_get(body, "more"));
        break;
    case ETCD_DELETE: r->deleted = j_i64(body, "deleted"); break;
    case ETCD_TXN: rc = decode_txn(s, body); break;
    case ETCD_LEASE_GRANT:
    case ETCD_LEASE_KEEPALIVE:
        r->lease_id = j_i64(body, "ID");
        r->ttl_s = j_i64(body, "TTL");
        if (json_is_string(json_object_get(body, "error")) &&
            json_string_length(json_object_get(body, "error")))
            set_msg(r, ETCD_E_SERVER, "%s", json_string_value(json_object_get(body, "error")));
        else if (r->ttl_s <= 0)
            set_msg(r, ETCD_E_LEASE_LOST, "lease %" PRId64 " unknown to etcd (expired or revoked)",
                    r->lease_id);
        break;
    default: break;
    }
    r->kvs = s->kvs;
    if (rc < 0) set_msg(r, ETCD_E_PROTOCOL, "malformed %s answer", s->path);
    json_decref(root);
}

/* An error answer ({"error","code","message"}) into grpc code and message. */
static void decode_error(const buf *b, long http, int *code, char *msg, size_t cap) {
    json_error_t je;
    json_t *root = json_loadb((const char *)b->data, b->len, 0, &je);
    const json_t *m = json_object_get(root, "message");
    if (!m) m = json_object_get(root, "error");
    *code = (int)j_i64(root, "code");
    if (json_is_string(m))
        snprintf(msg, cap, "%s", json_string_value(m));
    else
        snprintf(msg, cap, "HTTP %ld", http);
    json_decref(root);
}

/* ---- transfers ------------------------------------------------------------------------- */

static size_t write_buf(char *p, size_t size, size_t n, void *arg) {
    buf *b = arg;
    if (buf_append(b, p, size * n) < 0) return 0; /* over the cap: CURLE_WRITE_ERROR */
    return size * n;
}

static void easy_common(etcd_client *c, CURL *e, xfer *x, char *errbuf, int ep, const char *path) {
    char url[ETCD_ENDPOINT_LEN_MAX + 32];
    snprintf(url, sizeof url, "%s%s", c->ep[ep], path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdr_json);
    errbuf[0] = 0;
}

/* Thread: send the slot's request to the current member. */
static void slot_attempt(etcd_client *c, uint32_t i, int64_t now) {
    slot *s = &c->slots[i];
    int64_t left = s->deadline_mono_ms - now;
    assert(left > 0);
    int64_t total = left;
    if ((s->flags & ETCD_F_IDEMPOTENT) && total > c->attempt_timeout_ms)
        total = c->attempt_timeout_ms;
    s->ep = c->ep_cur;
    buf_reset(&s->resp);
    easy_common(c, s->easy, &s->x, s->curl_err, s->ep, s->path);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, (const char *)s->body.data);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body.len);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, write_buf);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, &s->resp);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)total);
    curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(total < c->connect_timeout_ms ? total : c->connect_timeout_ms));
    s->state = S_RUNNING;
    s->res.endpoint = s->ep;
    s->res.attempts++;
    STAT_ADD(c, attempts, 1);
    if (curl_multi_add_handle(c->multi, s->easy) != CURLM_OK) {
        set_msg(&s->res, ETCD_E_NOMEM, "curl_multi_add_handle failed");
        slot_publish(c, i);
    }
}

static void failover(etcd_client *c, int ep) {
    if (c->ep_cur != ep) return; /* someone moved on already */
    c->ep_cur = (ep + 1) % c->nep;
    STAT_ADD(c, failovers, 1);
}

/* Thread: an attempt failed in transport (or etcd said it is unavailable). Retry on the next
 * member when that is safe and time is left, else complete with the error. */
static void slot_transport_fail(etcd_client *c, uint32_t i, bool sent, bool timed_out,
                                const char *why) {
    slot *s = &c->slots[i];
    int64_t now = etcd_mono_ms();
    /* curl's timer may fire a millisecond early: a timeout that close is the deadline's */
    if (timed_out && s->deadline_mono_ms - now <= 2) now = s->deadline_mono_ms;
    s->maybe_applied |= sent;
    s->failed++;
    failover(c, s->ep);
    bool safe = !sent || (s->flags & ETCD_F_IDEMPOTENT);
    if (safe && now < s->deadline_mono_ms) {
        /* A whole round of members failed: pause a little instead of spinning. */
        int64_t pause =
            s->failed % (uint32_t)c->nep ? 0 : 25 * (int64_t)(s->failed / (uint32_t)c->nep);
        if (pause > RETRY_BACKOFF_MS_MAX) pause = RETRY_BACKOFF_MS_MAX;
        s->retry_at_ms = now + pause;
        s->state = S_WAIT;
        return;
    }
    s->res.unsure = s->maybe_applied;
    if (now >= s->deadline_mono_ms)
        set_msg(&s->res, ETCD_E_TIMEOUT,
                "deadline of %" PRIu32 " ms passed after %" PRIu32 " attempts (last: %s: %s)",
                s->deadline_ms, s->res.attempts, c->ep[s->ep], why);
    else
        set_msg(&s->res, ETCD_E_UNAVAILABLE, "%s: %s", c->ep[s->ep], why);
    slot_publish(c, i);
}

static bool grpc_unavailable_safe(const char *msg) {
    /* Refused before etcd proposed anything: safe to send to another member. */
    return strstr(msg, "no leader") || strstr(msg, "not capable") ||
           strstr(msg, "too many requests");
}

/* Thread: an attempt of a slot ended. */
static void slot_xfer_done(etcd_client *c, uint32_t i, CURLcode code) {
    slot *s = &c->slots[i];
    long http = 0;
    curl_off_t up = 0;
    curl_multi_remove_handle(c->multi, s->easy);
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_getinfo(s->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    if (code == CURLE_WRITE_ERROR) {
        s->res.unsure = true;
        set_msg(&s->res, ETCD_E_PROTOCOL, "answer over ETCD_RESPONSE_BYTES_MAX (%d bytes)",
                ETCD_RESPONSE_BYTES_MAX);
        slot_publish(c, i);
        return;
    }
    if (code != CURLE_OK) {
        slot_transport_fail(c, i, up > 0, code == CURLE_OPERATION_TIMEDOUT,
                            s->curl_err[0] ? s->curl_err : curl_easy_strerror(code));
        return;
    }
    if (http == 200) {
        decode_answer(s);
        slot_publish(c, i);
        return;
    }
    char msg[ETCD_ERR_MSG_MAX];
    int grpc = 0;
    decode_error(&s->resp, http, &grpc, msg, sizeof msg);
    if (grpc == 14 && (grpc_unavailable_safe(msg) || (s->flags & ETCD_F_IDEMPOTENT))) {
        slot_transport_fail(c, i, !grpc_unavailable_safe(msg), false, msg);
        return;
    }
    s->res.grpc_code = grpc;
    s->res.unsure = s->maybe_applied || grpc == 14 || grpc == 4; /* unavailable, deadline */
    if (grpc == 11 && strstr(msg, "compacted"))
        set_msg(&s->res, ETCD_E_COMPACTED, "%s", msg);
    else
        set_msg(&s->res, ETCD_E_SERVER, "%s (grpc code %d)", msg, grpc);
    slot_publish(c, i);
}

/* ---- watches --------------------------------------------------------------------------- */

/* Thread: a slot for a watch's non-final completion, or UINT32_MAX while requests need the
 * pool more (the stream then pauses). */
static uint32_t watch_slot(etcd_client *c, const watch *w) {
    pthread_mutex_lock(&c->mu);
    uint32_t i = slot_take_locked(c, WATCH_SLOTS_RESERVE);
    pthread_mutex_unlock(&c->mu);
    if (i != UINT32_MAX) slot_clear(&c->slots[i], ETCD_WATCH, w->cookie);
    return i;
}

/* Thread: the watch's last completion, in its reserved slot. */
static void watch_end(etcd_client *c, watch *w, etcd_err err, int64_t compact_rev,
                      const char *why) {
    if (w->ended) return;
    w->ended = true;
    slot *s = &c->slots[w->final_slot];
    slot_clear(s, ETCD_WATCH, w->cookie);
    s->res.final = true;
    s->res.compact_revision = compact_rev;
    s->res.revision = w->cur_rev;
    set_msg(&s->res, err, "%s", why);
    slot_publish(c, w->final_slot); /* W_DEAD only once its transfer is out of the multi */
}

/* Decode the events this watch has not delivered yet into slot s; advance the cursor only
 * when all decoded (a failure leaves it as it was, so the batch comes again). */
static int watch_take_events(watch *w, slot *s, const json_t *events) {
    int64_t cur_rev = w->cur_rev, skip_rev = w->skip_rev;
    uint32_t cur_n = w->cur_n, skip_n = w->skip_n;
    size_t n = json_array_size(events);
    if (grow((void **)&s->events, &s->events_cap, n, sizeof *s->events) < 0) return -1;
    s->res.event_count = 0;
    for (size_t k = 0; k < n; k++) {
        const json_t *e = json_array_get(events, k);
        etcd_event *ev = &s->events[s->res.event_count];
        if (decode_kv(&s->arena, json_object_get(e, "kv"), &ev->kv) < 0) return -1;
        int64_t rev = ev->kv.mod_revision;
        if (rev < skip_rev) continue; /* before where this connection asked to start */
        if (rev == skip_rev && skip_n > 0) {
            skip_n--; /* delivered on an earlier connection */
            continue;
        }
        const json_t *t = json_object_get(e, "type");
        ev->is_delete = json_is_string(t) && strcmp(json_string_value(t), "DELETE") == 0;
        if (rev < cur_rev) return -1; /* etcd never goes back: a broken stream */
        cur_n = rev == cur_rev ? cur_n + 1 : 1;
        cur_rev = rev;
        s->res.event_count++;
    }
    w->cur_rev = cur_rev, w->cur_n = cur_n, w->skip_rev = skip_rev, w->skip_n = skip_n;
    s->res.events = s->events;
    return 0;
}

typedef enum line_rc {
    LINE_OK,
    LINE_BLOCKED,
    LINE_ABORT
} line_rc;

/* Thread: one message of the watch stream. */
static line_rc watch_line(etcd_client *c, watch *w, const char *p, size_t n) {
    json_error_t je;
    json_t *root = json_loadb(p, n, 0, &je);
    const json_t *r = json_object_get(root, "result");
    if (!r) {
        const json_t *err = json_object_get(root, "error");
        snprintf(w->why, sizeof w->why, "watch stream: %s",
                 json_is_object(err) ? json_string_value(json_object_get(err, "message"))
                 : root              ? "message without result"
                                     : je.text);
        json_decref(root);
        return LINE_ABORT;
    }
    int64_t compact = j_i64(r, "compact_revision");
    if (json_is_true(json_object_get(r, "canceled")) || compact > 0) {
        if (compact > 0) {
            snprintf(w->why, sizeof w->why,
                     "watch from revision %" PRId64 ": etcd compacted up to %" PRId64, w->skip_rev,
                     compact);
            watch_end(c, w, ETCD_E_COMPACTED, compact, w->why);
        } else {
            const json_t *why = json_object_get(r, "cancel_reason");
            snprintf(w->why, sizeof w->why, "watch cancelled by etcd: %s",
                     json_is_string(why) ? json_string_value(why) : "no reason given");
        }
        json_decref(root);
        return LINE_ABORT; /* a cancel that is not a compaction: reconnect elsewhere */
    }
    const json_t *events = json_object_get(r, "events");
    bool created = json_is_true(json_object_get(r, "created"));
    if (!created && json_array_size(events) == 0) {
        json_decref(root); /* progress notification: nothing to hand over */
        return LINE_OK;
    }
    uint32_t i = watch_slot(c, w);
    if (i == UINT32_MAX) {
        json_decref(root);
        return LINE_BLOCKED;
    }
    slot *s = &c->slots[i];
    s->res.revision = j_i64(json_object_get(r, "header"), "revision");
    s->res.created = created;
    s->res.endpoint = w->ep;
    if (created && w->cur_rev == 0) w->cur_rev = w->skip_rev = s->res.revision + 1; /* "from now" */
    if (buf_reserve(&s->arena, n + 1) < 0 || watch_take_events(w, s, events) < 0) {
        snprintf(w->why, sizeof w->why, "malformed watch event batch");
        pthread_mutex_lock(&c->mu);
        slot_free_locked(c, i);
        pthread_mutex_unlock(&c->mu);
        json_decref(root);
        return LINE_ABORT;
    }
    json_decref(root);
    if (!created && s->res.event_count == 0) { /* all of it delivered before a reconnect */
        pthread_mutex_lock(&c->mu);
        slot_free_locked(c, i);
        pthread_mutex_unlock(&c->mu);
        return LINE_OK;
    }
    STAT_ADD(c, watch_events, s->res.event_count);
    slot_publish(c, i);
    return LINE_OK;
}

/* Thread: process every complete line received. False when it had to stop (blocked/abort). */
static bool watch_drain(etcd_client *c, watch *w) {
    while (!w->ended) {
        uint8_t *start = w->line.data + w->line_off;
        size_t avail = w->line.len - w->line_off;
        uint8_t *nl = avail ? memchr(start, '\n', avail) : NULL;
        if (!nl) break;
        line_rc rc = watch_line(c, w, (const char *)start, (size_t)(nl - start));
        if (rc == LINE_BLOCKED) {
            w->blocked = true;
            return false;
        }
        if (rc == LINE_ABORT) {
            w->abort_conn = true;
            return false;
        }
        w->line_off += (size_t)(nl - start) + 1;
    }
    buf_consume(&w->line, w->line_off);
    w->line_off = 0;
    return true;
}

static size_t watch_write(char *p, size_t size, size_t n, void *arg) {
    watch *w = arg;
    etcd_client *c = w->c;
    if (w->abort_conn || w->ended) return 0;     /* ends the transfer */
    if (w->blocked) return CURL_WRITEFUNC_PAUSE; /* curl keeps these bytes for later */
    if (buf_append(&w->line, p, size * n) < 0) {
        snprintf(w->why, sizeof w->why, "watch message over ETCD_WATCH_MESSAGE_BYTES_MAX");
        w->abort_conn = true;
        return 0;
    }
    watch_drain(c, w);
    return w->abort_conn ? 0 : size * n;
}

/* Thread: open the watch's stream on the current member, from its cursor. */
static void watch_connect(etcd_client *c, watch *w, int64_t now) {
    buf_reset(&w->body);
    buf_reset(&w->line);
    w->line_off = 0;
    w->blocked = w->abort_conn = false;
    w->skip_rev = w->cur_rev;
    w->skip_n = w->cur_n; /* re-read cur_rev, skipping what was delivered of it */
    w->why[0] = 0;
    int rc = buf_append(&w->body, "{\"create_request\":{", 19);
    if (rc == 0) rc = enc_b64(&w->body, "key", w->key, w->key_len);
    if (rc == 0 && w->end_len)
        rc = buf_append(&w->body, ",", 1) < 0 ? -1
                                              : enc_b64(&w->body, "range_end", w->end, w->end_len);
    if (rc == 0 && w->cur_rev)
        rc =
            buf_append(&w->body, ",", 1) < 0 ? -1 : enc_i64(&w->body, "start_revision", w->cur_rev);
    if (rc == 0) rc = buf_printf(&w->body, ",\"fragment\":true}}");
    if (rc < 0) {
        watch_end(c, w, ETCD_E_NOMEM, 0, "watch request: out of memory");
        return;
    }
    w->ep = c->ep_cur;
    easy_common(c, w->easy, &w->x, w->curl_err, w->ep, "/v3/watch");
    /* hasleader: etcd cancels the stream when its member loses the leader, so a watch
     * never sits on a partitioned member that will see no new events. */
    curl_easy_setopt(w->easy, CURLOPT_HTTPHEADER, c->hdr_watch);
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDS, (const char *)w->body.data);
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->body.len);
    curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, watch_write);
    curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(w->easy, CURLOPT_TIMEOUT_MS, 0L);
    curl_easy_setopt(w->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(w->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(w->easy, CURLOPT_LOW_SPEED_TIME, (long)((c->watch_idle_ms + 999) / 1000));
    if (curl_multi_add_handle(c->multi, w->easy) != CURLM_OK) {
        w->reconnect_at = now + WATCH_BACKOFF_MS_MAX;
        return;
    }
    w->connected = true;
    w->connected_at = now;
}

/* Thread: a watch's stream ended; reconnect to the next member unless it is over. */
static void watch_xfer_done(etcd_client *c, watch *w, CURLcode code) {
    int64_t now = etcd_mono_ms();
    curl_multi_remove_handle(c->multi, w->easy);
    w->connected = false;
    if (w->ended) return;
    if (!w->why[0])
        snprintf(w->why, sizeof w->why, "watch stream to %.100s ended: %.120s", c->ep[w->ep],
                 code == CURLE_OK ? "closed by etcd"
                 : w->curl_err[0] ? w->curl_err
                                  : curl_easy_strerror(code));
    failover(c, w->ep);
    STAT_ADD(c, watch_reconnects, 1);
    /* A stream that lived a while starts over quickly; one that keeps failing backs off. */
    if (now - w->connected_at > 1000)
        w->backoff_ms = 0;
    else
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 25;
    if (w->backoff_ms > WATCH_BACKOFF_MS_MAX) w->backoff_ms = WATCH_BACKOFF_MS_MAX;
    w->reconnect_at = now + w->backoff_ms;
    uint32_t i = watch_slot(c, w); /* tell the owner when there is room; counted regardless */
    if (i != UINT32_MAX) {
        c->slots[i].res.revision = w->cur_rev;
        c->slots[i].res.endpoint = w->ep;
        set_msg(&c->slots[i].res, ETCD_E_UNAVAILABLE, "%s; reconnecting from revision %" PRId64,
                w->why, w->cur_rev);
        slot_publish(c, i);
    }
}

/* Thread: start, cancel, reconnect and un-pause watches. */
static void watches_service(etcd_client *c, int64_t now, int64_t *wake) {
    for (int k = 0; k < ETCD_WATCHES_MAX; k++) {
        watch *w = &c->watches[k];
        pthread_mutex_lock(&c->mu);
        watch_ctl ctl = w->ctl;
        if (ctl == W_START) w->ctl = ctl = W_RUN;
        pthread_mutex_unlock(&c->mu);
        if (ctl == W_FREE || ctl == W_DEAD) continue;
        if (ctl == W_CANCEL) {
            if (w->connected) curl_multi_remove_handle(c->multi, w->easy);
            w->connected = false;
            watch_end(c, w, ETCD_E_CANCELED, 0, "watch cancelled by its owner");
        }
        if (!w->ended && w->blocked && watch_drain(c, w)) {
            w->blocked = false;
            curl_easy_pause(w->easy, CURLPAUSE_CONT); /* may call watch_write at once */
        }
        if (w->connected && (w->abort_conn || w->ended)) watch_xfer_done(c, w, CURLE_WRITE_ERROR);
        if (w->ended && !w->connected) {
            pthread_mutex_lock(&c->mu);
            w->ctl = W_DEAD; /* watch_start may reuse it: nothing of it is left in curl */
            pthread_mutex_unlock(&c->mu);
            continue;
        }
        if (!w->connected && !w->ended) {
            if (now >= w->reconnect_at)
                watch_connect(c, w, now);
            else if (w->reconnect_at < *wake)
                *wake = w->reconnect_at;
        }
    }
}

/* ---- kept leases ----------------------------------------------------------------------- */

/* Thread: the lease is gone; say so once, in its reserved slot, and stop keeping it. */
static void lease_lost(etcd_client *c, lease *l, const char *why) {
    slot *s = &c->slots[l->final_slot];
    slot_clear(s, ETCD_LEASE_KEEPALIVE, l->cookie);
    s->res.final = true;
    s->res.lease_id = l->id;
    set_msg(&s->res, ETCD_E_LEASE_LOST, "lease %" PRId64 ": %s", l->id, why);
    if (l->inflight) curl_multi_remove_handle(c->multi, l->easy);
    l->inflight = false;
    uint32_t fs = l->final_slot; /* the entry may be reused as soon as it is L_FREE */
    pthread_mutex_lock(&c->mu);
    l->valid = false;
    l->ctl = L_FREE;
    pthread_mutex_unlock(&c->mu);
    slot_publish(c, fs);
}

static void lease_send(etcd_client *c, lease *l, int64_t now) {
    buf_reset(&l->body);
    buf_reset(&l->resp);
    if (buf_printf(&l->body, "{\"ID\":\"%" PRId64 "\"}", l->id) < 0) {
        l->next_at = now + l->interval_ms / 4;
        return;
    }
    l->ep = c->ep_cur;
    easy_common(c, l->easy, &l->x, l->curl_err, l->ep, "/v3/lease/keepalive");
    curl_easy_setopt(l->easy, CURLOPT_POSTFIELDS, (const char *)l->body.data);
    curl_easy_setopt(l->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)l->body.len);
    curl_easy_setopt(l->easy, CURLOPT_WRITEFUNCTION, write_buf);
    curl_easy_setopt(l->easy, CURLOPT_WRITEDATA, &l->resp);
    curl_easy_setopt(l->easy, CURLOPT_TIMEOUT_MS, (long)l->interval_ms);
    curl_easy_setopt(
        l->easy, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(l->interval_ms < c->connect_timeout_ms ? l->interval_ms : c->connect_timeout_ms));
    l->sent_at = now;
    l->inflight = curl_multi_add_handle(c->multi, l->easy) == CURLM_OK;
    if (!l->inflight) l->next_at = now + l->interval_ms / 4;
}

/* Thread: a keep-alive ended. Success renews validity from when it was SENT (etcd restarted
 * the TTL no earlier than that); failure moves to the next member and tries again soon. */
static void lease_xfer_done(etcd_client *c, lease *l, CURLcode code) {
    int64_t now = etcd_mono_ms();
    long http = 0;
    curl_multi_remove_handle(c->multi, l->easy);
    l->inflight = false;
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &http);
    json_t *root = code == CURLE_OK && http == 200
                       ? json_loadb((const char *)l->resp.data, l->resp.len, 0, NULL)
                       : NULL;
    const json_t *r = json_object_get(root, "result");
    int64_t ttl = j_i64(r, "TTL");
    json_decref(root);
    if (r && ttl > 0) {
        pthread_mutex_lock(&c->mu);
        l->valid = true;
        l->valid_until = l->lost_after = l->sent_at + ttl * 1000;
        c->stats.keepalives_ok++;
        pthread_mutex_unlock(&c->mu);
        l->next_at = l->sent_at + l->interval_ms;
        return;
    }
    if (r) {
        lease_lost(c, l, "etcd no longer knows it (expired or revoked)");
        return;
    }
    STAT_ADD(c, keepalive_errors, 1);
    failover(c, l->ep);
    l->next_at = now + (l->interval_ms / 4 ? l->interval_ms / 4 : 1);
}

static void leases_service(etcd_client *c, int64_t now, int64_t *wake) {
    for (int k = 0; k < ETCD_LEASES_MAX; k++) {
        lease *l = &c->leases[k];
        pthread_mutex_lock(&c->mu);
        lease_ctl ctl = l->ctl;
        if (ctl == L_START) {
            l->ctl = ctl = L_RUN;
            l->next_at = now;
            /* Until the first keep-alive answers, lost means: none got through for about
             * a TTL (the caller keeps alive at a third of it). */
            l->lost_after = now + 3 * (int64_t)l->interval_ms;
        }
        if (ctl == L_STOP) {
            l->ctl = L_FREE;
            l->valid = false;
            slot_free_locked(c, l->final_slot);
        }
        pthread_mutex_unlock(&c->mu);
        if (ctl == L_STOP && l->inflight) {
            curl_multi_remove_handle(c->multi, l->easy);
            l->inflight = false;
        }
        if (ctl != L_RUN) continue;
        if (now >= l->lost_after) {
            lease_lost(c, l, "no keep-alive answered before it expired");
            continue;
        }
        if (!l->inflight && now >= l->next_at) lease_send(c, l, now);
        if (!l->inflight && l->next_at < *wake) *wake = l->next_at;
        if (l->lost_after < *wake) *wake = l->lost_after;
    }
}

/* ---- the thread ------------------------------------------------------------------------ */

/* Thread: hand every finished transfer to its owner. Returns how many finished. */
static int xfers_done(etcd_client *c) {
    CURLMsg *m;
    int left, n = 0;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        n++;
        CURL *e = m->easy_handle;
        CURLcode code = m->data.result; /* m is invalid once the handle is removed */
        xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        assert(x);
        if (x->kind == X_SLOT)
            slot_xfer_done(c, x->idx, code);
        else if (x->kind == X_WATCH)
            watch_xfer_done(c, &c->watches[x->idx], code);
        else
            lease_xfer_done(c, &c->leases[x->idx], code);
    }
    return n;
}

/* Thread: start what the owner queued, and retries that are due. */
static void slots_service(etcd_client *c, int64_t now, int64_t *wake) {
    uint32_t batch[ETCD_INFLIGHT_MAX];
    uint32_t n = 0;
    pthread_mutex_lock(&c->mu);
    while (c->queued.len) batch[n++] = ring_pop(&c->queued);
    pthread_mutex_unlock(&c->mu);
    for (uint32_t k = 0; k < n; k++) {
        slot *s = &c->slots[batch[k]];
        s->res.sent_mono_ms = now;
        s->deadline_mono_ms = now + s->deadline_ms;
        slot_attempt(c, batch[k], now);
    }
    for (uint32_t i = 0; i < ETCD_INFLIGHT_MAX; i++) {
        slot *s = &c->slots[i];
        if (s->state != S_WAIT) continue; /* S_WAIT is thread-only: no lock needed */
        if (now >= s->deadline_mono_ms) {
            s->res.unsure = s->maybe_applied;
            set_msg(&s->res, ETCD_E_TIMEOUT,
                    "deadline of %" PRIu32 " ms passed after %" PRIu32
                    " attempts, no member answered",
                    s->deadline_ms, s->res.attempts);
            slot_publish(c, i);
        } else if (now >= s->retry_at_ms)
            slot_attempt(c, i, now);
        else if (s->retry_at_ms < *wake)
            *wake = s->retry_at_ms;
    }
}

static void *thread_main(void *arg) {
    etcd_client *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool stop = c->stop;
        pthread_mutex_unlock(&c->mu);
        if (stop) break;
        int64_t now = etcd_mono_ms(), wake = now + POLL_WAIT_MS_MAX;
        slots_service(c, now, &wake);
        watches_service(c, now, &wake);
        leases_service(c, now, &wake);
        int running = 0;
        curl_multi_perform(c->multi, &running);
        /* A finished transfer may have scheduled a retry or a reconnect the wake time above
         * does not know about: go round once more before sleeping. */
        if (xfers_done(c) > 0) continue;
        now = etcd_mono_ms();
        int wait = wake > now ? (int)(wake - now) : 0;
        curl_multi_poll(c->multi, NULL, 0, wait, NULL); /* also ends at curl's own timers */
    }
    /* Abandon what is in flight: the owner is going away and polls nothing more. */
    for (uint32_t i = 0; i < ETCD_INFLIGHT_MAX; i++)
        if (c->slots[i].state == S_RUNNING) curl_multi_remove_handle(c->multi, c->slots[i].easy);
    for (int k = 0; k < ETCD_WATCHES_MAX; k++)
        if (c->watches[k].connected) curl_multi_remove_handle(c->multi, c->watches[k].easy);
    for (int k = 0; k < ETCD_LEASES_MAX; k++)
        if (c->leases[k].inflight) curl_multi_remove_handle(c->multi, c->leases[k].easy);
    return NULL;
}

/* ---- the owner's side ------------------------------------------------------------------ */

static int parse_endpoints(etcd_client *c, const char *list, char *err, size_t errcap) {
    const char *p = list ? list : "";
    c->nep = 0;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        size_t n = strcspn(p, ", ");
        while (n && p[n - 1] == '/') n--;
        if (c->nep == ETCD_ENDPOINTS_MAX)
            return fail(err, errcap, ETCD_E_INVALID, "more than %d etcd endpoints",
                        ETCD_ENDPOINTS_MAX);
        if (n >= ETCD_ENDPOINT_LEN_MAX)
            return fail(err, errcap, ETCD_E_INVALID, "etcd endpoint longer than %d bytes",
                        ETCD_ENDPOINT_LEN_MAX - 1);
        if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)
            return fail(err, errcap, ETCD_E_INVALID, "etcd endpoint '%.*s': want http://host:port",
                        (int)n, p);
        memcpy(c->ep[c->nep], p, n);
        c->ep[c->nep++][n] = 0;
        p += strcspn(p, ",");
    }
    if (c->nep == 0) return fail(err, errcap, ETCD_E_INVALID, "no etcd endpoint");
    return 0;
}

static int client_alloc(etcd_client *c) {
    for (uint32_t i = 0; i < ETCD_INFLIGHT_MAX; i++) {
        slot *s = &c->slots[i];
        buf_init(&s->body, ETCD_REQUEST_BYTES_MAX * 2);
        buf_init(&s->resp, ETCD_RESPONSE_BYTES_MAX);
        buf_init(&s->arena, ETCD_RESPONSE_BYTES_MAX);
        s->x = (xfer){X_SLOT, i};
        if (!(s->easy = curl_easy_init())) return -1;
        c->freel[c->nfree++] = ETCD_INFLIGHT_MAX - 1 - i; /* slot 0 is taken first */
    }
    for (uint32_t k = 0; k < ETCD_WATCHES_MAX; k++) {
        watch *w = &c->watches[k];
        w->c = c;
        buf_init(&w->line, ETCD_WATCH_MESSAGE_BYTES_MAX);
        buf_init(&w->body, 64 * 1024);
        w->x = (xfer){X_WATCH, k};
        if (!(w->easy = curl_easy_init())) return -1;
    }
    for (uint32_t k = 0; k < ETCD_LEASES_MAX; k++) {
        lease *l = &c->leases[k];
        buf_init(&l->body, 256);
        buf_init(&l->resp, 64 * 1024);
        l->x = (xfer){X_LEASE, k};
        if (!(l->easy = curl_easy_init())) return -1;
    }
    c->hdr_json = curl_slist_append(NULL, "Content-Type: application/json");
    c->hdr_json =
        c->hdr_json ? curl_slist_append(c->hdr_json, "Expect:") : NULL; /* no 100-continue wait */
    c->hdr_watch = curl_slist_append(NULL, "Content-Type: application/json");
    c->hdr_watch =
        c->hdr_watch ? curl_slist_append(c->hdr_watch, "Grpc-Metadata-hasleader: true") : NULL;
    c->hdr_watch = c->hdr_watch ? curl_slist_append(c->hdr_watch, "Expect:") : NULL;
    c->multi = curl_multi_init();
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return c->hdr_json && c->hdr_watch && c->multi && c->efd >= 0 ? 0 : -1;
}

etcd_client *etcd_create(const etcd_config *cfg, char *err, size_t errcap) {
    etcd_client *c = calloc(1, sizeof *c);
    if (!c) {
        fail(err, errcap, ETCD_E_NOMEM, "out of memory");
        return NULL;
    }
    c->efd = -1;
    if (parse_endpoints(c, cfg->endpoints, err, errcap) < 0) {
        free(c);
        return NULL;
    }
    c->deadline_ms = cfg->deadline_ms ? cfg->deadline_ms : 2000;
    c->attempt_timeout_ms = cfg->attempt_timeout_ms ? cfg->attempt_timeout_ms : 1000;
    c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 300;
    c->watch_idle_ms = cfg->watch_idle_ms ? cfg->watch_idle_ms : 30000;
    pthread_mutex_init(&c->mu, NULL);
    if (client_alloc(c) < 0) {
        fail(err, errcap, ETCD_E_NOMEM, "etcd client: out of memory (curl handles, eventfd)");
        etcd_destroy(c);
        return NULL;
    }
    if (pthread_create(&c->thread, NULL, thread_main, c) != 0) {
        fail(err, errcap, ETCD_E_NOMEM, "etcd client: cannot start its thread");
        etcd_destroy(c);
        return NULL;
    }
    c->thread_started = true;
    return c;
}

void etcd_destroy(etcd_client *c) {
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_mutex_unlock(&c->mu);
        curl_multi_wakeup(c->multi);
        pthread_join(c->thread, NULL);
    }
    for (uint32_t i = 0; i < ETCD_INFLIGHT_MAX; i++) {
        slot *s = &c->slots[i];
        if (s->easy) curl_easy_cleanup(s->easy);
        buf_free(&s->body);
        buf_free(&s->resp);
        buf_free(&s->arena);
        free(s->kvs);
        free(s->events);
        free(s->ops);
    }
    for (int k = 0; k < ETCD_WATCHES_MAX; k++) {
        watch *w = &c->watches[k];
        if (w->easy) curl_easy_cleanup(w->easy);
        buf_free(&w->line);
        buf_free(&w->body);
        free(w->key);
        free(w->end);
    }
    for (int k = 0; k < ETCD_LEASES_MAX; k++) {
        if (c->leases[k].easy) curl_easy_cleanup(c->leases[k].easy);
        buf_free(&c->leases[k].body);
        buf_free(&c->leases[k].resp);
    }
    if (c->multi) curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->hdr_json);
    curl_slist_free_all(c->hdr_watch);
    if (c->efd >= 0) close(c->efd);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int etcd_event_fd(const etcd_client *c) {
    return c->efd;
}

int etcd_submit(etcd_client *c, const etcd_request *r, uint64_t cookie, char *err, size_t errcap) {
    const char *why = request_invalid(r);
    if (why) return fail(err, errcap, ETCD_E_INVALID, "%s", why);
    size_t bytes = etcd_request_bytes(r);
    if (bytes > ETCD_REQUEST_BYTES_MAX) {
        pthread_mutex_lock(&c->mu);
        c->stats.refused_too_large++;
        pthread_mutex_unlock(&c->mu);
        return fail(err, errcap, ETCD_E_TOO_LARGE, "request of up to %zu bytes, etcd takes %d",
                    bytes, ETCD_REQUEST_BYTES_MAX);
    }
    pthread_mutex_lock(&c->mu);
    uint32_t i = slot_take_locked(c, 0);
    if (i == UINT32_MAX) c->stats.refused_full++;
    pthread_mutex_unlock(&c->mu);
    if (i == UINT32_MAX)
        return fail(err, errcap, ETCD_E_FULL, "%d etcd requests outstanding", ETCD_INFLIGHT_MAX);
    slot *s = &c->slots[i];
    slot_clear(s, r->kind, cookie);
    s->flags = r->flags;
    s->deadline_ms = r->deadline_ms ? r->deadline_ms : c->deadline_ms;
    s->res.kvs = s->kvs;
    if (encode_request(&s->body, r, &s->path) < 0 || buf_append(&s->body, "", 1) < 0) {
        pthread_mutex_lock(&c->mu);
        slot_free_locked(c, i);
        pthread_mutex_unlock(&c->mu);
        return fail(err, errcap, ETCD_E_NOMEM, "out of memory encoding the request");
    }
    s->body.len--; /* the NUL stays for debugging, outside the body */
    pthread_mutex_lock(&c->mu);
    s->state = S_QUEUED;
    ring_push(&c->queued, i);
    c->stats.submitted++;
    pthread_mutex_unlock(&c->mu);
    curl_multi_wakeup(c->multi);
    return 0;
}

size_t etcd_poll(etcd_client *c, const etcd_result **out, size_t max) {
    uint64_t cnt;
    ssize_t rd = read(c->efd, &cnt, sizeof cnt);
    (void)rd; /* EAGAIN: nothing new was signalled; the ring is looked at anyway */
    size_t n = 0;
    bool released = c->nlent > 0, more;
    pthread_mutex_lock(&c->mu);
    for (uint32_t k = 0; k < c->nlent; k++) slot_free_locked(c, c->lent[k]);
    c->nlent = 0;
    while (n < max && c->done.len) {
        uint32_t i = ring_pop(&c->done);
        assert(c->slots[i].state == S_DONE);
        c->slots[i].state = S_LENT;
        c->lent[c->nlent++] = i;
        out[n++] = &c->slots[i].res;
    }
    more = c->done.len > 0;
    pthread_mutex_unlock(&c->mu);
    if (more) wake_owner(c);                   /* what did not fit comes at the next wake-up */
    if (released) curl_multi_wakeup(c->multi); /* a paused watch may go on */
    return n;
}

int etcd_watch_start(etcd_client *c, const void *key, size_t key_len, const void *range_end,
                     size_t range_end_len, int64_t start_revision, uint64_t cookie) {
    if (!key || !key_len || (range_end_len && !range_end) || start_revision < 0)
        return -ETCD_E_INVALID;
    pthread_mutex_lock(&c->mu);
    int k = 0;
    while (k < ETCD_WATCHES_MAX && c->watches[k].ctl != W_FREE && c->watches[k].ctl != W_DEAD) k++;
    uint32_t fs = k < ETCD_WATCHES_MAX ? slot_take_locked(c, 0) : UINT32_MAX;
    pthread_mutex_unlock(&c->mu);
    if (fs == UINT32_MAX) return -ETCD_E_FULL;
    watch *w = &c->watches[k];
    free(w->key);
    free(w->end);
    w->key = malloc(key_len);
    w->end = malloc(range_end_len ? range_end_len : 1);
    if (!w->key || !w->end) {
        pthread_mutex_lock(&c->mu);
        slot_free_locked(c, fs);
        pthread_mutex_unlock(&c->mu);
        return -ETCD_E_NOMEM;
    }
    memcpy(w->key, key, key_len);
    if (range_end_len) memcpy(w->end, range_end, range_end_len);
    w->key_len = key_len;
    w->end_len = range_end_len;
    w->cookie = cookie;
    w->final_slot = fs;
    w->cur_rev = w->skip_rev = start_revision;
    w->cur_n = w->skip_n = 0;
    w->connected = w->blocked = w->abort_conn = w->ended = false;
    w->reconnect_at = 0;
    w->backoff_ms = 0;
    pthread_mutex_lock(&c->mu);
    w->ctl = W_START; /* publishes the fields above to the thread */
    pthread_mutex_unlock(&c->mu);
    curl_multi_wakeup(c->multi);
    return k;
}

void etcd_watch_cancel(etcd_client *c, int watch_id) {
    if (watch_id < 0 || watch_id >= ETCD_WATCHES_MAX) return;
    pthread_mutex_lock(&c->mu);
    watch *w = &c->watches[watch_id];
    if (w->ctl == W_START || w->ctl == W_RUN) w->ctl = W_CANCEL;
    pthread_mutex_unlock(&c->mu);
    curl_multi_wakeup(c->multi);
}

int etcd_lease_keep_start(etcd_client *c, int64_t lease_id, uint32_t interval_ms, uint64_t cookie) {
    if (!lease_id || !interval_ms) return -ETCD_E_INVALID;
    pthread_mutex_lock(&c->mu);
    int k = 0;
    while (k < ETCD_LEASES_MAX && c->leases[k].ctl != L_FREE) k++;
    uint32_t fs = k < ETCD_LEASES_MAX ? slot_take_locked(c, 0) : UINT32_MAX;
    if (fs != UINT32_MAX) {
        lease *l = &c->leases[k];
        l->id = lease_id;
        l->interval_ms = interval_ms;
        l->cookie = cookie;
        l->final_slot = fs;
        l->valid = false;
        l->ctl = L_START;
    }
    pthread_mutex_unlock(&c->mu);
    if (fs == UINT32_MAX) return -ETCD_E_FULL;
    curl_multi_wakeup(c->multi);
    return 0;
}

void etcd_lease_keep_stop(etcd_client *c, int64_t lease_id) {
    pthread_mutex_lock(&c->mu);
    for (int k = 0; k < ETCD_LEASES_MAX; k++) {
        lease *l = &c->leases[k];
        if (l->id != lease_id) continue;
        if (l->ctl == L_START) { /* the thread never saw it */
            l->ctl = L_FREE;
            slot_free_locked(c, l->final_slot);
        } else if (l->ctl == L_RUN) {
            l->ctl = L_STOP;
        }
    }
    pthread_mutex_unlock(&c->mu);
    curl_multi_wakeup(c->multi);
}

bool etcd_lease_valid_until(etcd_client *c, int64_t lease_id, int64_t *valid_until_mono_ms) {
    bool ok = false;
    pthread_mutex_lock(&c->mu);
    for (int k = 0; k < ETCD_LEASES_MAX && !ok; k++) {
        lease *l = &c->leases[k];
        if (l->id == lease_id && (l->ctl == L_RUN || l->ctl == L_START) && l->valid) {
            *valid_until_mono_ms = l->valid_until;
            ok = true;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

void etcd_stats_get(etcd_client *c, etcd_stats *out) {
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}

size_t etcd_prefix_end(const void *prefix, size_t prefix_len, uint8_t *end, size_t cap) {
    assert(prefix_len <= cap); /* a cut prefix would widen the range: a caller's bug */
    size_t n = prefix_len;
    memcpy(end, prefix, n);
    while (n > 0) {
        if (end[n - 1] < 0xff) {
            end[n - 1]++;
            return n;
        }
        n--; /* 0xff cannot be incremented: drop it and carry */
    }
    return 0;
}
