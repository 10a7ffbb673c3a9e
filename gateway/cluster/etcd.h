/*
 * etcd: a client for etcd's v3 JSON API (the gRPC gateway, /v3/...), for the cluster of
 * SPEC §10 (docs/cluster.md). KV range/put/delete/txn/compaction, leases (grant, revoke,
 * keep-alive kept by the client itself) and long-lived watches, against several members.
 *
 * Threading. etcd_create() starts one thread of the client's own, which does all network
 * I/O (libcurl multi interface; JSON with jansson). Every other etcd_* function but the pure
 * helpers at the end (request_bytes, strerror, mono_ms, prefix_end) is called
 * from ONE owner thread (the gateway's event loop) and never blocks on the network: it
 * takes a mutex held only for queue pushes and pops. Completions wake the owner through
 * etcd_event_fd() (an eventfd, non-blocking, readable when etcd_poll() has something);
 * etcd_poll() drains it itself, so an io_uring multishot POLLIN on it is all the loop needs
 * (an io_uring read of the eventfd works too: etcd_poll() looks at its queue regardless).
 *
 * Ownership. etcd_submit() copies (encodes) everything it is given before it returns; the
 * caller's buffers are free again at once. A result from etcd_poll() is owned by the client
 * and valid until the next etcd_poll() or etcd_destroy(): copy what you keep.
 *
 * Bounds. At most ETCD_INFLIGHT_MAX requests are queued, running or handed out and not yet
 * released; a full client refuses with ETCD_E_FULL (never blocks). A request whose encoded
 * size can exceed ETCD_REQUEST_BYTES_MAX (etcd's --max-request-bytes default) is refused
 * before it is sent with ETCD_E_TOO_LARGE; etcd_request_bytes() lets a caller split a batch
 * before it gets there. Watches and leases are limited to ETCD_WATCHES_MAX/ETCD_LEASES_MAX.
 *
 * Failover and deadlines. Endpoints are tried in turn, sticking to the last one that
 * answered. Every request has a deadline (its own or the config's); when it passes, the
 * request completes with ETCD_E_TIMEOUT - an unreachable cluster never makes a request
 * hang. A request is sent again to the next member only when the previous attempt surely
 * never reached etcd (connection refused, nothing sent), or when the caller marked it
 * ETCD_F_IDEMPOTENT; otherwise a lost answer completes it with `unsure` set: it may or may
 * not have been applied, and the caller must find out (e.g. read the key) before acting.
 *
 * Watches reconnect by themselves (next member, back-off) from the revision after the last
 * event they delivered - no event is lost or delivered twice, even when one revision's
 * events were split over several messages. A watch whose revision etcd has compacted away
 * ends with ETCD_E_COMPACTED and compact_revision set.
 *
 * What it never does: block the owner thread; drop an error (every request completes once,
 * with a code and message; watch and lease trouble is counted in etcd_stats and reported
 * as completions); retry a non-idempotent request whose outcome is unknown; keep a pointer
 * to caller memory; touch global state. libcurl needs curl_global_init(CURL_GLOBAL_DEFAULT)
 * once per process before the first etcd_create() (in main, before any thread starts).
 */
#ifndef SG_ETCD_H
#define SG_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

typedef struct etcd_client etcd_client;

typedef enum etcd_err {
    ETCD_OK = 0,
    ETCD_E_FULL = 1,        /* ETCD_INFLIGHT_MAX requests outstanding: retry later */
    ETCD_E_TOO_LARGE = 2,   /* request over ETCD_REQUEST_BYTES_MAX; not sent */
    ETCD_E_INVALID = 3,     /* bad arguments (empty key, too many ops, ...); not sent */
    ETCD_E_TIMEOUT = 4,     /* the deadline passed; see `unsure` */
    ETCD_E_UNAVAILABLE = 5, /* no member answered usefully (transport error); see `unsure` */
    ETCD_E_SERVER = 6,      /* etcd answered with an error: grpc_code and message */
    ETCD_E_COMPACTED = 7,   /* revision compacted away: compact_revision says up to where */
    ETCD_E_LEASE_LOST = 8,  /* lease expired or unknown to etcd: keep-alive stopped */
    ETCD_E_PROTOCOL = 9,    /* answer etcd should never send (unparseable, too big) */
    ETCD_E_NOMEM = 10,
    ETCD_E_CANCELED = 11, /* client destroyed, or watch cancelled by the caller */
} etcd_err;

typedef enum etcd_kind {
    ETCD_RANGE = 1,
    ETCD_PUT,
    ETCD_DELETE,
    ETCD_TXN,
    ETCD_COMPACT,
    ETCD_LEASE_GRANT,
    ETCD_LEASE_REVOKE,
    ETCD_LEASE_KEEPALIVE, /* one keep-alive; or a kept lease's loss (cookie of keep_start) */
    ETCD_WATCH,           /* a watch's events, creation, or its end (cookie of watch_start) */
} etcd_kind;

enum {
    ETCD_F_IDEMPOTENT = 1u << 0,   /* applying twice is harmless: retry after unknown outcome */
    ETCD_F_SERIALIZABLE = 1u << 1, /* range: answer from the member's own state, no quorum */
};

typedef enum etcd_cmp_target {
    ETCD_CMP_VERSION = 0, /* number: the key's version (0 = absent) */
    ETCD_CMP_CREATE = 1,  /* number: create_revision */
    ETCD_CMP_MOD = 2,     /* number: mod_revision */
    ETCD_CMP_VALUE = 3,   /* bytes: value */
    ETCD_CMP_LEASE = 4,   /* number: lease id */
} etcd_cmp_target;

typedef enum etcd_cmp_result {
    ETCD_CMP_EQUAL = 0,
    ETCD_CMP_GREATER = 1,
    ETCD_CMP_LESS = 2,
    ETCD_CMP_NOT_EQUAL = 3,
} etcd_cmp_result;

typedef struct etcd_compare {
    const void *key;
    size_t key_len;
    etcd_cmp_target target;
    etcd_cmp_result result;
    int64_t number;    /* VERSION, CREATE, MOD, LEASE */
    const void *value; /* VALUE */
    size_t value_len;
} etcd_compare;

typedef enum etcd_op_kind {
    ETCD_OP_RANGE = 0,
    ETCD_OP_PUT = 1,
    ETCD_OP_DELETE = 2
} etcd_op_kind;

/* One operation: a request of its own (RANGE/PUT/DELETE) or one branch op of a txn. */
typedef struct etcd_op {
    etcd_op_kind kind;
    const void *key;
    size_t key_len;
    const void *range_end; /* RANGE, DELETE: [key, range_end); NULL/0 = the key alone */
    size_t range_end_len;
    const void *value; /* PUT */
    size_t value_len;
    int64_t lease;    /* PUT: bind to this lease (0: none) */
    int64_t limit;    /* RANGE: at most this many keys (0: all) */
    int64_t revision; /* RANGE: read at this revision (0: latest) */
    bool keys_only;   /* RANGE: keys without their values (kv.value_len 0) */
} etcd_op;

typedef struct etcd_request {
    etcd_kind kind;
    unsigned flags;               /* ETCD_F_* */
    uint32_t deadline_ms;         /* 0: the config's */
    etcd_op op;                   /* RANGE, PUT, DELETE */
    const etcd_compare *compares; /* TXN: all must hold for `success` to run */
    size_t compare_count;
    const etcd_op *success, *failure;
    size_t success_count, failure_count;
    int64_t lease_id; /* LEASE_GRANT (0: etcd picks), LEASE_REVOKE, LEASE_KEEPALIVE */
    int64_t ttl_s;    /* LEASE_GRANT */
    int64_t revision; /* COMPACT */
} etcd_request;

/* A key-value as etcd returns it. Bytes are not NUL-terminated. */
typedef struct etcd_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision, mod_revision, version, lease;
} etcd_kv;

typedef struct etcd_event {
    bool is_delete; /* else a put */
    etcd_kv kv;     /* a delete carries key and mod_revision only */
} etcd_event;

/* One response of a txn branch, in op order; a range's keys are kvs[kv_first..+kv_count). */
typedef struct etcd_op_result {
    etcd_op_kind kind;
    size_t kv_first, kv_count;
    int64_t deleted; /* DELETE */
} etcd_op_result;

typedef struct etcd_result {
    uint64_t cookie; /* the caller's, from submit / watch_start / keep_start */
    etcd_kind kind;
    etcd_err err;
    bool unsure;                /* err != OK and the request may have been applied all the same */
    int grpc_code;              /* ETCD_E_SERVER: etcd's gRPC status code */
    char msg[ETCD_ERR_MSG_MAX]; /* "" when err == ETCD_OK */
    int64_t revision;           /* header.revision of the answer */
    int64_t raft_term;          /* header.raft_term */
    bool succeeded;             /* TXN: the compares held */
    const etcd_kv *kvs;         /* RANGE; TXN: every range response's keys, see ops */
    size_t kv_count;
    int64_t count;             /* RANGE: keys in the range (more than kv_count when limited) */
    bool more;                 /* RANGE: limit cut the answer */
    int64_t deleted;           /* DELETE */
    const etcd_op_result *ops; /* TXN: responses of the branch that ran */
    size_t op_count;
    int64_t lease_id, ttl_s;  /* LEASE_GRANT, LEASE_KEEPALIVE */
    const etcd_event *events; /* WATCH: in revision order */
    size_t event_count;
    bool created;             /* WATCH: the stream is (re)established; revision = etcd's then */
    bool final;               /* WATCH / kept lease: no more completions for this cookie */
    int64_t compact_revision; /* ETCD_E_COMPACTED */
    int64_t sent_mono_ms;     /* CLOCK_MONOTONIC ms when the first attempt started */
    int64_t done_mono_ms;
    uint32_t attempts;
    int endpoint; /* index in the config's list of the member that answered last, or -1 */
} etcd_result;

typedef struct etcd_config {
    const char *endpoints;       /* "http://h:p,http://h:p,..." ([cluster] etcd) */
    uint32_t deadline_ms;        /* default per-request deadline; 0: 2000 */
    uint32_t attempt_timeout_ms; /* ETCD_F_IDEMPOTENT: one member's share; 0: 1000 */
    uint32_t connect_timeout_ms; /* 0: 300 */
    uint32_t watch_idle_ms;      /* reconnect a watch silent this long; 0: 30000 */
} etcd_config;

typedef struct etcd_stats {
    uint64_t submitted, completed, failed; /* failed: completed with err != OK */
    uint64_t refused_full, refused_too_large;
    uint64_t attempts, failovers; /* failovers: moves to the next member */
    uint64_t watch_events, watch_reconnects;
    uint64_t keepalives_ok, keepalive_errors;
} etcd_stats;

/* Parse the config, start the client's thread. NULL with a reason in err on failure. */
etcd_client *etcd_create(const etcd_config *cfg, char *err, size_t errcap);
/* Stop the thread (in-flight requests are abandoned; nothing more completes) and free. */
void etcd_destroy(etcd_client *c);

/* The eventfd to wait on. */
int etcd_event_fd(const etcd_client *c);

/* Queue a request; its result comes from etcd_poll() with `cookie`. 0, or -ETCD_E_FULL,
 * -ETCD_E_TOO_LARGE, -ETCD_E_INVALID, -ETCD_E_NOMEM with a reason in err (nothing queued). */
int etcd_submit(etcd_client *c, const etcd_request *r, uint64_t cookie, char *err, size_t errcap);

/* Up to max finished results, in completion order; results of the previous call are
 * released first. Returns how many were stored in out[]. */
size_t etcd_poll(etcd_client *c, const etcd_result **out, size_t max);

/* An upper bound of the request's size as etcd measures it against its request limit
 * (protobuf encoding). etcd_submit refuses what this puts above ETCD_REQUEST_BYTES_MAX. */
size_t etcd_request_bytes(const etcd_request *r);

/* Watch [key, range_end) (range_end NULL/0: the key alone) from start_revision (0: from
 * now). Returns a watch id >= 0, or -ETCD_E_FULL / -ETCD_E_INVALID. */
int etcd_watch_start(etcd_client *c, const void *key, size_t key_len, const void *range_end,
                     size_t range_end_len, int64_t start_revision, uint64_t cookie);
/* Stop a watch; it completes once more with ETCD_E_CANCELED, final. */
void etcd_watch_cancel(etcd_client *c, int watch_id);

/* Keep lease_id alive with a keep-alive every interval_ms (SPEC §10: a third of the TTL).
 * Completes with `cookie` only when the lease is lost (final). 0 or -ETCD_E_FULL. */
int etcd_lease_keep_start(etcd_client *c, int64_t lease_id, uint32_t interval_ms, uint64_t cookie);
/* Stop keeping it (it expires at etcd after its TTL unless revoked). */
void etcd_lease_keep_stop(etcd_client *c, int64_t lease_id);
/* The lease surely lives until *valid_until_mono_ms (first attempt of the last successful
 * keep-alive + its TTL, on CLOCK_MONOTONIC); false when unknown or lost. */
bool etcd_lease_valid_until(etcd_client *c, int64_t lease_id, int64_t *valid_until_mono_ms);

void etcd_stats_get(etcd_client *c, etcd_stats *out);
const char *etcd_strerror(etcd_err e);
/* CLOCK_MONOTONIC in ms: the clock of sent_mono_ms and lease validity. */
int64_t etcd_mono_ms(void);

/* Helper: the range_end that makes [key, end) every key with this prefix (cap >= prefix_len).
 * Returns its length (<= prefix_len); 0 when the prefix is all 0xff (then use "\0" = to the
 * end). */
size_t etcd_prefix_end(const void *prefix, size_t prefix_len, uint8_t *end, size_t cap);

#endif
