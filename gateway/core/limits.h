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
#define CLIENTS_MAX_LIMIT 100000 /* upper bound for [gateway] max_clients */

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

/* Plugins and routes. */
#define PLUGINS_MAX 16
#define ROUTES_MAX 256
#define AGENTS_MAX 1024
#define PLUGIN_KV_MAX 64

/* Authentication. */
#define SECRET_LEN_MAX 256 /* AUTH secrets and STOPGATE_DEV_SECRET; longer is refused */
/* Argon2id runs on at most AUTH_WORKERS threads (one core is left to the loop: 1 thread on 2
 * cores), never on the loop. Each holds 64 MiB while it hashes, so the pool stays small; a
 * wrong-AUTH flood queues at most AUTH_QUEUE_MAX verifications and the next AUTH is answered
 * ERR BUSY at once. */
#define AUTH_WORKERS 2
#define AUTH_QUEUE_MAX 64
/* Unparsed input (and queued output before reading stops) of a connection that has not
 * authenticated: room for the longest legal HELLO 3 AUTH <name> <secret> SETNAME <name>.
 * Over it: ERR TOOBIG and close. AUTH raises the cap to CLIENT_QUERY_BYTES_MAX. */
#define CLIENT_PREAUTH_BYTES_MAX 4096
_Static_assert(CLIENT_PREAUTH_BYTES_MAX >= 128 + 2 * AGENT_LEN_MAX + SECRET_LEN_MAX,
               "the pre-auth input cap must hold the longest HELLO AUTH");
#define AUTH_FAIL_LIMIT_MAX 1000000 /* upper bound for [gateway] auth_fail_limit */
#define AUTH_LOG_LINES_PER_S 5      /* failed-AUTH log lines per second; the rest are counted */

#endif
