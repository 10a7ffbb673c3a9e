/*
 * sb: what stopbench's modules share (SPEC §8).
 *
 *   stopbench.c   command line, setup (connect, AUTH, HELLO, preload), threads, progress, exit
 *   sb_keys.c     the requests: accounts with a hit ratio against a pre-loaded list, unique
 *                 STOP request ids, the RESP encoding of each command
 *   sb_resp.c     the RESP/TCP engine: one epoll loop per thread, closed or open loop
 *   sb_reply.c    the RESP reply reader (hiredis's redisReader, no reply objects built)
 *   sb_udp.c      the UDP engine: libstopgate's frames, many datagrams in flight, by seq
 *   sb_burst.c    --burst N: N STOPs at once on one connection, acked and at the bank
 *   sb_ctl.c      the blocking control-plane client (AUTH, LIST.LOAD / SADD, INFO, STATUS)
 *   sb_report.c   merging the threads, the text summary, the JSON report, the gnuplot plot
 *   hdr.c         the latency histogram; sb_sched.h the open-loop schedule
 *
 * Threads share nothing mutable but a few atomics (the stop flag, progress counters, the UDP
 * sequence number): each worker owns its connections, buffers, histograms and counters, and
 * the main thread reads them after join. Buffers are sized at setup: nothing is allocated
 * per request.
 */
#ifndef SB_H
#define SB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>

#include "hdr.h"
#include "tlsclient.h"

#define SB_CONNS_MAX 4096
#define SB_THREADS_MAX 64
#define SB_PIPELINE_MAX 4096
#define SB_REQ_BYTES_MAX 256          /* one encoded RESP request, at most */
#define SB_RESP_IN_BYTES (256 * 1024) /* per connection: replies received and not yet parsed */
#define SB_OPEN_WINDOW 16384          /* open loop: requests outstanding per connection, at most */
#define SB_OPEN_OUT_BYTES (1024 * 1024)
/* Throughput over time: completions per tick; 100 ms, 10 ms for runs under 2 s, 1 ms for a burst.
 * SB_TICKS_MAX ticks (one hour at 100 ms); later completions land in the last. */
#define SB_TICK_NS 100000000LL
#define SB_TICKS_MAX 36000
#define SB_ERR_CODES_MAX 8     /* distinct error codes kept per worker */
#define SB_UDP_INFLIGHT_MAX 512 /* datagrams in flight, all threads: half the gateway's replay window */
#define SB_UDP_RETRIES 3
#define SB_BANK_MAX 11

enum sb_op { OP_CHECK, OP_STOP, OP_MIXED, OP_PING };
enum sb_kind { K_CHECK, K_STOP, K_PING, K__COUNT };
enum sb_transport { TR_RESP, TR_UDP };
enum sb_target { TG_STOPGATE, TG_REDIS };

/* Exit statuses (stopctl's where they overlap). */
enum { SB_EXIT_OK = 0, SB_EXIT_ERRORS = 1, SB_EXIT_USAGE = 2, SB_EXIT_CONNECT = 3, SB_EXIT_RATE = 4 };

typedef struct sb_opts {
    const char *host, *port, *agent, *secret;
    int udp_port;
    int op, transport, target;
    uint64_t requests;  /* 0: by duration */
    double duration_s;  /* 0: by requests */
    double rate;        /* 0: closed loop */
    int connections, pipeline, threads, batch;
    uint64_t burst;
    const char *json, *plot;
    const char *list;     /* list name (stopgate) or set key (Redis) */
    uint64_t preload;     /* entries to LIST.LOAD / SADD before the run */
    uint64_t list_size;   /* entries the keys may hit (= preload when preloading) */
    double hit_ratio;     /* CHECK: share of accounts drawn from the list */
    double stop_ratio;    /* mixed: share of STOPs */
    const char *bank;
    int64_t timeout_ms;   /* a connection silent this long with requests outstanding: they fail */
    int64_t udp_retry_ms; /* a datagram unanswered this long is sent again (new seq) */
    int64_t poll_us;      /* --burst: INFO poll interval */
    bool quiet;
    tlsc_opts tls;    /* --tls, --cacert, --cert, --key, --sni (RESP only) */
    tlsc_ctx *tls_ctx; /* one client context for every connection (NULL: plain TCP) */
    /* derived */
    char tag[16];  /* this run's tag: in every request id, account and case */
    char case_id[40];
    uint64_t total; /* open loop: requests scheduled */
    int64_t tick_ns; /* throughput-over-time resolution */
} sb_opts;

/* One worker's results. Written only by its thread; read by main after join (and the two
 * progress atomics while it runs). */
typedef struct sb_stats {
    hdr lat[K__COUNT]; /* ns, answered without error */
    uint64_t answered[K__COUNT];
    uint64_t err_reply[K__COUNT];
    uint64_t timeouts, closed, unsent;
    uint64_t verdicts[3]; /* CLEAR LISTED FROZEN (Redis SISMEMBER: 0 -> CLEAR, 1 -> LISTED) */
    uint64_t statuses[4]; /* ACCEPTED DUPLICATE MERGED HELD */
    uint64_t sent, datagrams, retries, late_replies;
    int64_t max_lag_ns; /* open loop: how late a request left after its intended time */
    uint64_t late_sends; /* open loop: requests that left more than 1 ms late */
    int64_t t_last_ns;   /* last answer, ns after the run's start */
    char codes[SB_ERR_CODES_MAX][32];
    uint64_t code_n[SB_ERR_CODES_MAX];
    int ncodes;
    char first_error[200];
    uint32_t *ticks; /* SB_TICKS_MAX */
    int64_t tick_ns;
} sb_stats;

struct sb_run;

typedef struct sb_worker {
    int id;
    pthread_t th;
    struct sb_run *run;
    const sb_opts *o;
    sb_stats st;
    uint64_t rng;
    uint64_t stop_no; /* STOPs this worker made: with the tag and id, unique in the run */
    _Atomic uint64_t progress_done, progress_err;
    int conn_first, conn_count; /* global connection (flow) indexes [first, first + count) */
    uint64_t budget;            /* closed loop by --requests: what this worker sends */
    void *engine;               /* sb_resp / sb_udp private state */
} sb_worker;

typedef struct sb_run {
    sb_opts *o;
    int64_t t0_ns; /* CLOCK_MONOTONIC at the start of the timed run */
    atomic_int stop; /* SIGINT: no new requests, drain what is outstanding */
    int nworkers;
    sb_worker *w;
    /* UDP */
    uint8_t key[32];
    uint32_t agent_id, epoch;
    _Atomic uint64_t seq;
} sb_run;

static inline int64_t sb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Workers start their clocks together: sleep until the run's t0. */
static inline void sb_wait_start(int64_t t0_ns) {
    struct timespec ts = {.tv_sec = t0_ns / 1000000000, .tv_nsec = t0_ns % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

/* xorshift64*: per worker, good enough for picking keys. */
static inline uint64_t sb_rand(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}
/* Uniform in [0, 1). */
static inline double sb_rand01(uint64_t *s) { return (double)(sb_rand(s) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- sb_keys.c ---- */
/* One request's fields, formatted into the caller's storage (no allocation). */
typedef struct sb_req {
    int kind;
    bool listed;
    uint8_t rid_len, acct_len;
    char rid[64];
    char acct[40];
} sb_req;
void sb_listed_account(uint64_t i, char out[24]); /* the i-th entry of the pre-loaded list */
void sb_next_req(sb_worker *w, sb_req *r);
/* Append the RESP encoding of r to p (at least SB_REQ_BYTES_MAX free); returns bytes written. */
size_t sb_encode_resp(const sb_opts *o, const sb_req *r, char *p);
void sb_make_tag(char out[16]);

/* ---- results ---- */
void sb_count_error(sb_stats *st, int kind, const char *code, size_t code_len, const char *msg, size_t msg_len);
static inline void sb_tick(sb_stats *st, int64_t rel_ns, uint32_t n) {
    int64_t t = rel_ns / st->tick_ns;
    if (t < 0) t = 0;
    if (t >= SB_TICKS_MAX) t = SB_TICKS_MAX - 1;
    st->ticks[t] += n;
}
int sb_stats_init(sb_stats *st, int64_t tick_ns);
void sb_stats_free(sb_stats *st);
void sb_stats_merge(sb_stats *dst, const sb_stats *src);

/* ---- sb_reply.c: the RESP reply reader (hiredis's redisReader; every RESP client here) ---- */
#define SB_ERR_TEXT_MAX 256 /* an error reply's text kept, at most (longer ones are cut) */
#define SB_READER_SLICE 2048 /* bytes fed to redisReader at a time (what its compaction moves) */
typedef struct sb_reply_info {
    bool err; /* a top-level error reply: err_text[0..err_len) */
    char err_text[SB_ERR_TEXT_MAX];
    size_t err_len;
    int verdict; /* CHECK: 0 CLEAR 1 LISTED 2 FROZEN, else -1 */
    int status;  /* STOP: 0 ACCEPTED 1 DUPLICATE 2 MERGED 3 HELD, else -1 */
    long long ival; /* a top-level integer (Redis SISMEMBER) */
    bool has_ival;
    const char *bulk; /* a top-level bulk string (INFO), NUL-terminated; the reader's */
    size_t bulk_len;
    char order_id[24], state[24]; /* with capture */
} sb_reply_info;
struct redisReader;
/* One connection's reader: bytes in, one sb_reply_info per complete reply out. */
typedef struct sb_reader {
    struct redisReader *r;
    bool capture; /* also copy order_id and state (STATUS, the burst's STOPs) */
    sb_reply_info cur; /* the reply being read, then the one handed out */
    int want;          /* what the next scalar is the value of */
    bool done;
    char *bulk; /* cur.bulk's storage: grows to the largest bulk seen */
    size_t bulk_cap;
    const char *src; /* bytes given and not yet fed to r */
    size_t src_len;
} sb_reader;
int sb_reader_init(sb_reader *rd); /* 0, or -1 (memory) */
void sb_reader_free(sb_reader *rd);
/* Bytes received, p[0..n): the reader takes them as sb_reader_next needs them, so p must
 * stay as it is until sb_reader_next has returned 0 or -1. */
void sb_reader_source(sb_reader *rd, const char *p, size_t n);
/* The next complete reply: 1 with *out (valid until the next call), 0 when every byte given
 * is taken and more are needed, -1 when the bytes are not RESP or memory ran out
 * (sb_reader_error says which; the reader is dead). */
int sb_reader_next(sb_reader *rd, const sb_reply_info **out);
/* Copy what is left of the bytes given into the reader, before their storage goes: 0, or -1
 * (memory). */
int sb_reader_keep(sb_reader *rd);
size_t sb_reader_pending(const sb_reader *rd); /* bytes given and not yet part of a reply */
const char *sb_reader_error(const sb_reader *rd);

/* ---- engines: run in the worker's thread, return when its share is done ---- */
/* A RESP connection: a non-blocking socket, and its TLS session with --tls. */
typedef struct sb_link {
    int fd;
    tlsc_ssl *ssl; /* NULL: plain TCP */
} sb_link;
int sb_resp_prepare(sb_worker *w, sb_link *links); /* takes connected, authenticated links */
void *sb_resp_main(void *arg);
int sb_udp_prepare(sb_worker *w, char *err, size_t errcap);
void sb_udp_set_fd(sb_worker *w, int fd);
void *sb_udp_main(void *arg);

/* ---- sb_burst.c ---- */
typedef struct sb_burst_result {
    double acked_ms;     /* the first byte sent -> the N-th answer */
    double at_bank_ms;   /* -> INFO shows them all SENT or later (-1: not seen in time, or Redis) */
    double confirmed_ms; /* -> INFO shows them all CONFIRMED (-1: not seen in time, or Redis) */
    uint64_t accepted;
    char last_order[24];
    char last_state[24];
} sb_burst_result;
/* Run --burst on fd (connected, authenticated) with ctl (a second one, for INFO and STATUS;
 * -1 for Redis). Fills st (latency of each answer from the burst's start) and br. 0, or -1
 * with the reason in st->first_error (the connection failed). */
int sb_burst_run(sb_worker *w, sb_link *fd, sb_link *ctl, sb_burst_result *br);

/* ---- sb_report.c ---- */
typedef struct sb_result {
    sb_stats all;        /* the workers' stats merged */
    double seconds;      /* the timed run: start -> last answer */
    uint64_t connect_errors, auth_errors;
    const char *fatal;   /* why the run failed (cannot connect, AUTH refused, errors, rate not sustained) */
    bool interrupted;    /* SIGINT */
    bool burst_done;
    sb_burst_result burst;
    double cpu_user_s, cpu_sys_s; /* stopbench's own CPU (the generator's cost) */
    int exit_code;
    bool rate_sustained;
    char started_at[32];
} sb_result;
uint64_t sb_requests(const sb_result *r); /* answered, with or without error */
uint64_t sb_errors(const sb_result *r);
uint64_t sb_ok(const sb_result *r);
void sb_report_text(const sb_opts *o, const sb_result *r);
int sb_report_json(const sb_opts *o, const sb_result *r, const char *path);
int sb_report_plot(const sb_opts *o, const sb_result *r, const char *path);

#endif
