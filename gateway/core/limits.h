/*
 * Every fixed limit of stopgate in one place. Each is checked where input arrives and
 * documented in docs/architecture.md ("Limits"); the ones that shape on-disk or
 * shared-memory layouts are also _Static_assert-ed where they are relied on.
 */
#ifndef SG_LIMITS_H
#define SG_LIMITS_H

/* Domain (SPEC §3). */
#define BANK_LEN_MAX 11        /* [A-Z0-9]{1,11}: BIC or national bank code */
#define ACCOUNT_LEN_MAX 34     /* IBAN length limit, after normalisation */
#define ACCOUNT_RAW_LEN_MAX 128 /* before spaces and '-' are removed */
#define REQUEST_ID_LEN_MAX 64
#define CASE_LEN_MAX 64
#define AGENT_LEN_MAX 32
#define DOC_LEN_MAX 128
#define REASON_LEN_MAX 64
#define NOTE_LEN_MAX 1024
#define CURRENCY_LEN 3
#define AMOUNT_MINOR_MAX 100000000000000000LL /* 1e17: sums of many amounts stay in int64 */
#define TTL_S_MAX (10LL * 366 * 24 * 3600)    /* ten years */
#define ORDER_CASES_MAX 32 /* cases one order (with its merges) may belong to */

/* RESP ingress (SPEC §4.1). */
#define RESP_ARGS_MAX 1100            /* MCHECK of 512 pairs + command */
#define RESP_BULK_BYTES_MAX (512 * 1024)
#define RESP_INLINE_BYTES_MAX (64 * 1024)
#define CLIENT_QUERY_BYTES_MAX (4 * 1024 * 1024) /* unparsed input held per client */
#define CLIENT_OUTPUT_BYTES_MAX (64 * 1024 * 1024) /* replies queued per client */
#define CLIENT_RECV_CHUNK 65536
#define CLIENT_RECV_FIRST 1024 /* a new client's first receive; grows to a chunk when filled */
/* Provided receive buffers (multishot recv, server.c): one buffer ring shared by every
 * authenticated plain-TCP client, [gateway] recv_buffers of RECV_BUF_BYTES each. */
#define RECV_BUF_BYTES 16384        /* one provided buffer: a receive completion carries at most this */
#define RECV_BUFS_DEFAULT 256       /* [gateway] recv_buffers default (4 MiB) */
#define RECV_BUFS_MAX 32768         /* the kernel's ceiling for one buffer ring */
/* The loop's short spin before it sleeps while a journal batch is in flight ([gateway]
 * spin_us, main.c): the fdatasync's completion is then reaped without a sleep and a
 * wake-up. Bounded: a spin longer than an fdatasync only burns a CPU. */
#define SPIN_US_MAX 1000
#define SPIN_US_DEFAULT 0 /* chosen by measurement: docs/PERFORMANCE.md "Issue 13, the loop's CPU" */
#define CLIENTS_MAX_LIMIT 100000 /* upper bound for [gateway] max_clients */
#define CLIENT_NAME_LEN_MAX 64   /* CLIENT SETNAME, and each CLIENT SETINFO value */

#define RESP_WALK_DEPTH_MAX 8 /* nesting of our own replies: CASE > orders > STATUS > onward > map */
#define MCHECK_BATCH_MAX 512  /* pairs of one MCHECK */

/* Fraud lists (docs/lists.md). */
#define LIST_CASES_MAX (1 << 20)      /* distinct case references on list entries */
#define CSV_LINE_MAX 512              /* bytes of one CSV line (csvload) */
#define LIST_CSV_LINE_MAX CSV_LINE_MAX /* bytes of one LIST.LOAD line */
#define LIST_LOAD_ROWS_MAX (64 << 20) /* rows of one LIST.LOAD */
#define LIST_SWEEP_SLOTS 65536        /* expiry records the sweep visits per tick */
/* Memberships with an expiry (LIST.ADD ... TTL) tracked at once: one per slot of the shared
 * table ([gateway] list_capacity), at most this. Their table (twice as many entries of 48
 * bytes, for short probes, and a spare as large to compact into) is reserved at start and
 * touched only as used; when it is full, LIST.ADD with a TTL answers ERR BUSY. */
#define LIST_TTL_MAX (1u << 24)
#define LIST_PENDING_MAX 1024         /* list changes journaled, not yet durable (published when durable) */

/* UDP and DPDK fast paths (SPEC §4.3). */
#define UDP_RECV_SLOTS 256   /* recvmsg operations kept armed */
#define UDP_SEND_SLOTS 4096  /* reply datagrams in flight or waiting for durability */
#define EAL_ARGS_MAX 64      /* words of [dpdk] eal */
#define DPDK_ORDER_DRAIN_MAX 4096 /* lcore hand-offs taken per wake-up (then the loop turns, and comes back) */

/* Engine and metrics. */
#define CASCADE_RETRY_MAX 4096       /* FUNDS_MOVED orders whose cascade waits for room */
#define METRICS_BANKS_SHOWN_MAX 256  /* banks with their own series in /metrics; more are left out (truncated) */
#define PROM_FAMILIES_MAX 256        /* metric families one /metrics page may hold (prom.h) */
#define PROM_NAME_MAX 128            /* bytes of one metric family name (plugin stats: stopgate_plugin_<name>) */
#define METRICS_PAGE_BYTES_MAX (1 << 20) /* one /metrics page; larger: 500, never a page with holes */
#define METRICS_HEADER_BYTES_MAX 512     /* the HTTP header in front of it */
/* Listeners: how long start-up waits for a port still held by a killed predecessor. */
#define LISTEN_BIND_RETRY_MS 5000
#define LISTEN_BIND_RETRY_STEP_MS 10

/* Journal (SPEC §7). */
#define JOURNAL_BUF_BYTES (8 * 1024 * 1024) /* one group-commit batch, at most */
#define JOURNAL_RECORD_BYTES_MAX 8192       /* one encoded record, header included */
#define JOURNAL_EXTENTS_MAX 8               /* segment roll-overs inside one batch */
#define JOURNAL_SEGMENT_BYTES_MIN (1024 * 1024)
#define JOURNAL_SEGMENT_BYTES_MAX (1024LL * 1024 * 1024 * 4)

/* Orders. */
#define ORDERS_MAX_LIMIT (64u * 1024 * 1024)
/* Order records journaled but not yet durable that reads must look past (durview.h); more
 * wait for the next durable batch, like a full journal batch. ~72 bytes each, reserved. */
#define DURVIEW_ENTRIES_MAX (256u * 1024)
/* Tables filled from their front (orders, requests, strings, schedules, durview): a helper
 * thread keeps each one's pages resident this far ahead of its writer (pagefill.h), so that
 * replay and a burst of new orders write into pages zeroed and mapped already. 8 MiB holds
 * ~30,000 orders, five 6,077-order bursts; resident memory grows by at most this per table. */
#define PAGEFILL_WINDOW_BYTES (8u * 1024 * 1024)
#define PAGEFILL_CHUNK_BYTES (2u * 1024 * 1024) /* made resident per table per pass */
#define PAGEFILL_IDLE_MS 10                     /* the helper's sleep when every window is full */
#define PAGEFILL_REGIONS_MAX 16                 /* tables one helper follows */
/* Instructions waiting for durability or for their bank plugin: [gateway] max_outbox, by
 * default OUTBOX_PER_ORDER x max_orders (an order's instruction and its RELEASE). Full:
 * new orders, RELEASE and CONFIRM answer ERR BUSY until the banks take some. */
#define OUTBOX_PER_ORDER 2
#define OUTBOX_MAX_LIMIT (OUTBOX_PER_ORDER * ORDERS_MAX_LIMIT)
/* The outbox's front written once at start (obring.h): 16,384 instructions, more than a
 * 6,077-order burst's instructions and RELEASEs in flight, so its first burst faults none. */
#define OUTBOX_WARM_BYTES (256u * 1024)
/* Replies of one client waiting for their journal batch to be durable, each with its own
 * lsn. More pipelined replies than this share the newest mark (they leave with it). */
#define CLIENT_REPLY_MARKS_MAX 256

/* Plugins and routes. */
#define PLUGINS_MAX 16
#define ROUTES_MAX 256
#define AGENTS_MAX 1024
#define PLUGIN_KV_MAX 64

/* TLS on RESP (SPEC §11, gateway/daemon/tls.h). Per TLS connection, allocated at accept: the
 * two ciphertext buffers below plus OpenSSL's own record buffers (~34 KiB). */
#define TLS_IN_BYTES (17 * 1024)  /* ciphertext received, not yet decrypted: one full record (16 KiB + header) */
#define TLS_OUT_BYTES (32 * 1024) /* ciphertext encrypted, not yet sent: two full records */
#define TLS_PLAIN_CHUNK (17 * 1024) /* input room reserved before decrypting: one record's plaintext, and more */
#define TLS_HANDSHAKE_MS_MAX 5000 /* a handshake not done by then is closed (garbage or stalled peer) */

/* Authentication. */
#define SECRET_LEN_MAX 256 /* AUTH secrets and STOPGATE_DEV_SECRET; longer is refused */
/* Argon2id runs on at most AUTH_WORKERS threads (one core is left to the loop: 1 thread on 2
 * cores), never on the loop. Each holds 64 MiB while it hashes, so the pool stays small; a
 * wrong-AUTH flood queues at most AUTH_QUEUE_MAX verifications and the next AUTH is answered
 * ERR BUSY at once. */
#define AUTH_WORKERS 2
#define AUTH_QUEUE_MAX 64
/* The event loop asks the kernel (Linux >= 6.12, EEVDF) for slices this short, so that when it
 * wakes it preempts a CPU-bound thread (an Argon2id worker) at once instead of waiting up to
 * that thread's slice (~3 ms) in the run queue; older kernels ignore it. */
#define LOOP_SCHED_SLICE_NS 100000
/* Unparsed input (and queued output before reading stops) of a connection that has not
 * authenticated: room for the longest legal HELLO 3 AUTH <name> <secret> SETNAME <name>.
 * Over it: ERR TOOBIG and close. AUTH raises the cap to CLIENT_QUERY_BYTES_MAX. */
#define CLIENT_PREAUTH_BYTES_MAX 4096
_Static_assert(CLIENT_PREAUTH_BYTES_MAX >= 128 + 2 * AGENT_LEN_MAX + SECRET_LEN_MAX,
               "the pre-auth input cap must hold the longest HELLO AUTH");
#define AUTH_FAIL_LIMIT_MAX 1000000 /* upper bound for [gateway] auth_fail_limit */
#define AUTH_LOG_LINES_PER_S 5      /* failed-AUTH log lines per second; the rest are counted */

/* Cluster: the etcd client (gateway/cluster/etcd.h, SPEC §10, docs/cluster.md). */
#define ETCD_REQUEST_BYTES_MAX (1536 * 1024) /* etcd's --max-request-bytes default (1.5 MiB) */
#define ETCD_RESPONSE_BYTES_MAX (16 * 1024 * 1024) /* one answer; read long ranges with limit */
#define ETCD_WATCH_MESSAGE_BYTES_MAX (4 * 1024 * 1024) /* one watch message (fragmented) */
#define ETCD_INFLIGHT_MAX 256  /* requests queued, running or handed out, per client */
#define ETCD_TXN_OPS_MAX 128   /* etcd's --max-txn-ops default */
#define ETCD_ENDPOINTS_MAX 9   /* members one client knows */
#define ETCD_ENDPOINT_LEN_MAX 256
#define ETCD_WATCHES_MAX 4     /* long-lived watch streams per client */
#define ETCD_LEASES_MAX 4      /* leases one client keeps alive */
#define ETCD_ERR_MSG_MAX 256   /* bytes of a result's message, NUL included */

/* Agents' console (SPEC §12, gateway/daemon/console.h, docs/console.md). Everything is
 * reserved at start: CONSOLE_CONNS_MAX x (HTTP_REQUEST_BYTES_MAX + output) and
 * CONSOLE_SESSIONS_MAX backend buffers. */
#define HTTP_HEAD_BYTES_MAX 8192   /* request line + headers of one request */
#define HTTP_HEADERS_MAX 64        /* header lines of one request */
#define HTTP_TARGET_BYTES_MAX 1024 /* the request target (path and query) */
#define HTTP_BODY_BYTES_MAX 8192   /* a JSON form: far more than the longest order needs */
#define HTTP_REQUEST_BYTES_MAX (HTTP_HEAD_BYTES_MAX + HTTP_BODY_BYTES_MAX)
#define CONSOLE_CONNS_MAX 128      /* HTTP connections open at once (SSE streams included) */
#define CONSOLE_SSE_MAX 64         /* of which event streams */
#define CONSOLE_SESSIONS_MAX 256   /* signed-in sessions; each holds one RESP client slot */
#define CONSOLE_PIPELINE_MAX 64    /* commands a session has in flight on its RESP backend */
#define CONSOLE_REPLY_BYTES_MAX (16 * 1024 * 1024) /* one backend reply (a large CASE) */
#define CONSOLE_OUT_BYTES_MAX (32 * 1024 * 1024)   /* queued output of one HTTP connection */
#define CONSOLE_REQUEST_MS_MAX 10000 /* a request not complete by then: closed (slowloris) */
#define CONSOLE_IDLE_MS_MAX 60000    /* a keep-alive connection idle that long: closed */
#define CONSOLE_LINGER_MS 2000       /* after a last answer, how long the rest of a request is read */
#define CONSOLE_SSE_OUT_BYTES_MAX (1024 * 1024) /* unsent events of one stream; more: closed (the page reconnects) */
#define CONSOLE_SSE_PING_MS 15000    /* comment line on an idle event stream (proxies, dead peers) */
#define CONSOLE_SSE_TICK_MS 5        /* durable changes are looked for at most this often */
#define CONSOLE_SSE_CHANGES_MAX 256  /* orders one stream asks about per look; more: a resync event */
#define CONSOLE_SESSION_TTL_S_DEFAULT 28800 /* [gateway] console_session_ttl: 8 h, a shift */
#define CONSOLE_SESSION_TTL_S_MAX (7 * 86400)

/* Cluster: the [cluster] section and the leader's commit path (docs/cluster.md). */
#define CLUSTER_ETCD_LEN_MAX (ETCD_ENDPOINTS_MAX * (ETCD_ENDPOINT_LEN_MAX + 1)) /* [cluster] etcd */
#define CLUSTER_NAME_LEN_MAX 64     /* [cluster] name: letters, digits, '-', '_', '.' */
#define CLUSTER_PREFIX_LEN_MAX 128  /* [cluster] prefix: starts with '/', no spaces */
#define CLUSTER_LEASE_MS_DEFAULT 2000
#define CLUSTER_LEASE_MS_MIN 1000   /* etcd TTLs are whole seconds */
#define CLUSTER_LEASE_MS_MAX 60000
/* [cluster] commit_timeout_ms: the deadline of one batch's fenced txn; past it the batch's
 * orders get ERR BUSY (the txn is resent until settled). It must outlast an etcd leader
 * election (etcd's --election-timeout, 1 s by default) or every etcd leader change turns into
 * BUSY answers. */
#define CLUSTER_COMMIT_TIMEOUT_MS_DEFAULT 3000
#define CLUSTER_COMMIT_TIMEOUT_MS_MIN 200
#define CLUSTER_COMMIT_TIMEOUT_MS_MAX 60000
/* [cluster] log_retention_ms: the leader trims a log key only once every present member has
 * applied it and it is at least this old. A member away longer than this (stopped: its
 * P/members key gone with its lease) may find the log trimmed past its journal: it is stale
 * and needs a re-seed (docs/operations.md). A restart of a few seconds needs none. */
#define CLUSTER_LOG_RETENTION_MS_DEFAULT 60000
#define CLUSTER_LOG_RETENTION_MS_MIN 1000     /* the leader looks every FOLLOW_TRIM_MS */
#define CLUSTER_LOG_RETENTION_MS_MAX 86400000 /* a day: etcd holds the log in memory */
/* Room in one etcd request beside a batch's bytes (key, compare, protobuf framing): in cluster
 * mode a journal batch holds at most ETCD_REQUEST_BYTES_MAX minus this, so that one batch is
 * always one txn (checked against etcd_request_bytes() at start). */
#define CLUSTER_TXN_OVERHEAD_BYTES 4096
#define CLUSTER_BATCH_BYTES_MAX (ETCD_REQUEST_BYTES_MAX - CLUSTER_TXN_OVERHEAD_BYTES)
/* The leader stops acknowledging this long before its lease can have expired: 10 % of the
 * lease + 50 ms for clock-rate drift between hosts (safety comes from the fenced txn). */
#define CLUSTER_LEASE_MARGIN_PCT 10
#define CLUSTER_LEASE_MARGIN_MS 50

/* Cluster, the follower side (gateway/daemon/follow.h, docs/cluster.md). */
#define FOLLOW_PUBLISH_MS 50       /* P/members/<name> put at most this often */
#define FOLLOW_RANGE_KEYS 64       /* log keys per catch-up range page */
#define FOLLOW_MEMBERS_MAX 16      /* members' publications kept; more are not seen by trimming */
#define FOLLOW_NAME_MAX (CLUSTER_NAME_LEN_MAX + 1)     /* a member name, NUL included */
#define FOLLOW_PREFIX_MAX (CLUSTER_PREFIX_LEN_MAX + 1) /* [cluster] prefix, NUL included */
#define FOLLOW_TRIM_MS 1000        /* the leader looks for log keys to trim this often */
#define FOLLOW_TRIM_RING 4096      /* log keys the leader remembers for trimming */
/* Oldest log keys a new leader reads (keys only) to learn the log's extent; older ones go with
 * the first trim's range delete [P/log/, keep). ~50 bytes of JSON each. */
#define FOLLOW_EXTENT_KEYS (FOLLOW_TRIM_RING / 2)
/* Frames of a returning member's journal tail checked against the log at start: a leader has
 * at most two batches out of the log (one txn in flight, the next fsynced meanwhile), each
 * at most two or three frames (a segment roll). */
#define FOLLOW_TAIL_FRAMES 6

#endif
