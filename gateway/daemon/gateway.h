/*
 * gateway: the whole state of one stopgated, passed explicitly to every module of the
 * daemon (no globals). One thread owns it: the io_uring event loop in main.c.
 *
 * Module map (docs/architecture.md):
 *   server.c    TCP clients: accept, recv, ordered replies held until durable, send, close
 *   commands.c  RESP command table: parse arguments, check roles, format replies
 *   engine.c    order decisions: validate -> commit -> outbox -> bank
 *   commit.c    journal append + apply beneath engine and lists; the acknowledged lsn
 *   router.c    bank code -> plugin instance; plugin loading (dlopen) and polling
 *   metrics.c   counters, histograms, HTTP /metrics and /healthz
 *   console.c   the agents' web console and its JSON API (console.h; sessions: console_session.h)
 *   cluster.c   role, lease, the cluster log's commit (cluster.h; calls up via cluster_hooks)
 *   listener.c  the listening sockets (listener.h)
 *   glog.c      one line per event
 */
#ifndef SG_GATEWAY_H
#define SG_GATEWAY_H
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "admit.h"
#include "auth.h"
#include "authq.h"
#include "buf.h"
#include "cluster.h"
#include "commit.h"
#include "config.h"
#include "console.h"
#include "durview.h"
#include "journal.h"
#include "lists_table.h"
#include "obring.h"
#include "htab.h"
#include "login.h"
#include "orders.h"
#include "prom.h"
#include "resp.h"
#include "tls.h"
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <stopgate/frame.h>

/* ---- logging ---- */
typedef struct glog {
    FILE *f;
} glog;
void glog_open(glog *l, const char *path);
void glog_write(const glog *l, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define LOGI(gw, ...) glog_write(&(gw)->log, "INFO ", __VA_ARGS__)
#define LOGW(gw, ...) glog_write(&(gw)->log, "WARN ", __VA_ARGS__)
#define LOGE(gw, ...) glog_write(&(gw)->log, "ERROR", __VA_ARGS__)

/* ---- clients ---- */
typedef struct reply_mark {
    uint64_t end;     /* absolute output offset where this reply ends */
    uint64_t lsn;     /* journal position that must be durable before it may be sent */
    int64_t t_recv_ns; /* when the request was parsed, for the latency histogram (0 = not an order) */
} reply_mark;

typedef struct client {
    uint32_t idx, gen;
    int fd;
    bool in_use, closing, close_after_flush, recv_inflight, send_inflight, blocked, skipping, waiting_listed;
    int proto;
    const cfg_agent *agent; /* NULL until AUTH */
    unsigned perms;
    buf in, out;
    uint64_t out_base;     /* absolute offset of out.data[0] */
    uint64_t sendable_abs; /* replies up to here may be sent */
    reply_mark *marks;
    uint32_t marks_head, marks_len, marks_cap;
    resp_skip skip;
    uint32_t ops_inflight;
    int64_t last_active_ms;
    uint32_t recv_asked; /* bytes the armed receive may fill */
    bool recv_grown;     /* a receive filled its buffer: use full chunks from now on */
    /* Multishot receive into the provided buffers (server.c "Provided buffers"): */
    bool recv_multi;     /* the armed receive is multishot (it stays armed across completions) */
    bool recv_cancelled; /* a cancel of it is on its way: stop reading, bytes held wait */
    bool recv_nobufs;    /* the buffer ring ran dry under it: the next receive is a plain one */
    uint16_t held_head, held_tail; /* provided buffers received, not yet copied to in: id + 1, 0 = none */
    uint16_t held_off;   /* bytes of the head buffer already copied */
    uint32_t next_waiting; /* intrusive list of clients with replies held for durability */
    uint32_t next_blocked; /* intrusive list of clients waiting for journal room */
    bool input_held;       /* process_input stopped for output room with commands unread */
    tls_conn *tls;         /* NULL: plain TCP (tls.h) */
    uint64_t tls_taken_abs; /* TLS: output up to here is encrypted (out_base <= it <= sendable_abs) */
    /* Admission (login.h): */
    uint32_t addr;           /* peer IPv4 address, network order (0 when unknown) */
    uint16_t port;           /* peer port, host order, for the log */
    bool admitted;           /* authenticated, or an allowed anonymous CHECK */
    bool auth_pending;       /* an AUTH is being verified: the pipeline waits for it */
    uint8_t auth_hello_proto; /* that AUTH came with HELLO <proto> (0: plain AUTH) */
    int64_t auth_deadline_ms; /* not admitted by then: closed (0 = no deadline) */
    /* Redis client habits (CLIENT ..., HELLO): */
    uint64_t id;             /* CLIENT ID: unique for the life of the process, from 1 */
    int64_t created_ms;      /* accepted at (CLIENT LIST age) */
    char name[CLIENT_NAME_LEN_MAX + 1];     /* CLIENT SETNAME / HELLO SETNAME, "" = none */
    char lib_name[CLIENT_NAME_LEN_MAX + 1]; /* CLIENT SETINFO LIB-NAME */
    char lib_ver[CLIENT_NAME_LEN_MAX + 1];  /* CLIENT SETINFO LIB-VER */
} client;

typedef struct server {
    int listen_fd;
    int tls_listen_fd; /* -1: no [gateway] tls_listen */
    bool accepting;
    client *clients; /* [0..max) */
    uint32_t max, count;
    uint32_t hwm; /* clients[hwm..max) were never used: the per-second sweeps stop there */
    uint32_t *free_list;
    uint32_t nfree;
    reply_mark *marks_pool; /* CLIENT_REPLY_MARKS_MAX per client, reserved at start */
    uint32_t waiting_head; /* 1-based client index + 1 encoding: 0 = none */
    uint32_t blocked_head;
    int64_t next_reap_ms; /* next idle-timeout sweep */
    int64_t next_tls_reap_ms; /* next handshake-deadline sweep */
    uint64_t next_client_id; /* the last CLIENT ID given */
    /* Provided receive buffers ([gateway] recv_buffers; server.c "Provided buffers"). */
    struct io_uring_buf_ring *rbr; /* NULL: off, or refused by the kernel: one plain recv per read */
    uint8_t *rbufs;                /* nrbufs x RECV_BUF_BYTES */
    uint16_t *rbuf_next;           /* per buffer: the next one its client holds (id + 1, 0 = last) */
    uint16_t *rbuf_len;            /* per buffer: bytes received into it */
    uint32_t nrbufs, rbufs_held;   /* ring size; buffers out of the ring, held by clients */
    uint64_t recv_nobufs;          /* multishot receives ended by an empty ring (then a plain recv) */
    bool recv_multi_off;           /* the kernel refused a multishot receive: plain ones only */
} server;

/* ---- plugins and routes ---- */
typedef struct plugin_inst {
    char name[64];
    const void *so; /* dlopen handle */
    const sg_plugin_ops *ops;
    void *state;
    sg_host host;
    int event_fd;
    bool poll_armed;
    int64_t next_poll_us; /* -1 = none */
    struct gateway *gw;
    uint32_t idx;
    uint64_t submitted, results, delivered;
} plugin_inst;

typedef struct router {
    plugin_inst plugins[PLUGINS_MAX];
    uint32_t nplugins;
    const char *argv0; /* where plugins are looked for beside the binary (router_check_plugin) */
} router;

/* ---- outbox: instructions waiting for durability or for the plugin to take them ----
 * outbox_ent and outbox are obring.h's (the ring restarts at its front whenever it empties). */

/* ---- metrics ---- */
#define LAT_BUCKETS 24 /* STOP latency: 25us * 2^k */
typedef struct metrics {
    uint64_t commands, errors, connections_total, connections_rejected, protocol_errors, idle_closed;
    uint64_t answers[8]; /* by answer status: ACCEPTED DUPLICATE MERGED HELD */
    uint64_t checks, check_hits;
    uint64_t results_dup, results_unknown, results_bad;
    uint64_t stop_lat_buckets[LAT_BUCKETS + 1];
    uint64_t stop_lat_count, stop_lat_sum_us;
    uint64_t spin_hits, spin_misses; /* [gateway] spin_us: a completion came during the spin, or not */
    int listen_fd;
    struct metrics_conn {
        int fd;
        bool in_use;
        char req[2048];
        uint32_t req_len;
        buf resp;
    } conns[16];
} metrics;

/* ---- fraud lists (lists.c, docs/lists.md) ---- */
/* LIST_CASES_MAX, LIST_CSV_LINE_MAX, LIST_LOAD_ROWS_MAX, LIST_SWEEP_SLOTS, LIST_PENDING_MAX,
 * MCHECK_BATCH_MAX: limits.h */
#define LIST_TICK_MS 50              /* how often the sweep runs */

typedef struct list_staged {
    sgl_key key;
    uint8_t score;
    uint32_t case_ref;
} list_staged;

typedef struct list_ttl {
    sgl_key key;
    uint32_t expires_s;
    uint8_t bit, state; /* state: 0 empty, 1 used, 2 deleted */
} list_ttl;

/* A list change journaled but not yet durable: the shared table (and CHECK, which reads it)
 * shows it only once its batch is (SPEC §9; lists_on_durable). */
typedef struct list_pending {
    uint64_t lsn;
    sgl_key key;        /* ADD, DEL */
    uint32_t case_ref;  /* ADD */
    uint32_t expires_s; /* ADD: 0 = permanent */
    uint16_t type;      /* REC_LIST_ADD, REC_LIST_DEL, REC_LIST_LOAD_COMMIT (of the staged rows) */
    uint8_t bit, score;
} list_pending;

typedef struct list_live_load {
    bool active, begun;
    uint32_t client_idx, client_gen;
    uint32_t next_row;
    int64_t t0_ns;
} list_live_load;

typedef struct lists_state {
    lists_table t;
    uint32_t nlists;
    char names[SGL_LISTS_MAX][SGL_LIST_NAME_MAX];
    uint64_t auto_stop_mask, protected_mask;
    uint64_t generation;
    char **cases; /* [1..ncases], each into case_arena */
    char *case_arena; /* LIST_CASES_MAX x (CASE_LEN_MAX + 1), reserved at start */
    uint32_t ncases;
    htab case_idx;
    list_staged *stage; /* rows of the load between BEGIN and COMMIT; stage_cap reserved at start */
    uint32_t nstage, stage_cap;
    int stage_bit;
    uint64_t stage_load_id;
    list_live_load live;
    list_pending *pend; /* ring of LIST_PENDING_MAX, in lsn order */
    uint32_t pend_head, npend;
    bool commit_pending; /* a load's COMMIT is among them: its rows stay staged until then */
    list_ttl *ttl; /* expiries of (list, account) memberships that have one; open addressing */
    list_ttl *ttl_spare; /* as large: what a compaction rehashes into (both reserved at start) */
    uint32_t ttl_cap, ttl_used, ttl_live;
    uint32_t ttl_max; /* memberships with an expiry at most (ttl_cap / 2): LIST_TTL_MAX, list_capacity */
    uint64_t sweep_pos;
    uint64_t loads, expired, auto_stops, frozen_dropped, replay_skipped;
    uint64_t frozen_dropped_logged; /* frozen_dropped when the last warning may be logged */
    int64_t frozen_log_next_ms;
    int64_t next_tick_ms;
} lists_state;

typedef struct list_answer {
    const char *status; /* ADDED UPDATED DELETED ABSENT LOADED */
    uint64_t lsn;
    uint32_t rows;
    int64_t ms;
    const char *code;
    char why[256];
} list_answer;

/* ---- kernel UDP fast path (udp.c) ---- */
/* UDP_RECV_SLOTS, UDP_SEND_SLOTS: limits.h */

enum udp_drop { UDP_DROP_MALFORMED, UDP_DROP_UNKNOWN_AGENT, UDP_DROP_BAD_MAC, UDP_DROP_REPLAY, UDP_DROP_NO_BUFFER,
                UDP_DROP__COUNT };
enum udp_tx_state { UDP_TX_FREE, UDP_TX_WAITING, UDP_TX_SENDING };

typedef struct udp_slot {
    struct sockaddr_in peer;
    struct iovec iov;
    struct msghdr msg;
    uint8_t buf[SG_FRAME_BYTES_MAX + 1]; /* one more: a datagram over the limit shows as too long */
} udp_slot;

typedef struct udp_tx_slot {
    struct sockaddr_in peer;
    struct iovec iov;
    struct msghdr msg;
    uint64_t lsn;  /* send once durable */
    uint32_t next; /* waiting list, 1-based */
    uint32_t len;
    int state;
    uint8_t buf[SG_FRAME_BYTES_MAX];
} udp_tx_slot;

/* An agent's frame MAC with BLAKE2b already keyed (fastpath.c): the key block is compressed
 * once per agent instead of once per frame. Bytes of a crypto_generichash_state (copied to an
 * aligned one for each use), so it may sit in any struct. */
typedef struct udp_mac {
    uint8_t st[sizeof(crypto_generichash_state)];
} udp_mac;

typedef struct udp_agent {
    uint32_t id;    /* sg_frame_agent_id(name) */
    uint32_t agent; /* index in cfg.agents */
    uint8_t key[SG_FRAME_KEY_BYTES];
    udp_mac mac;    /* the same key, keyed state */
    sg_replay replay;
} udp_agent;

/* Message counts of one transport (udp_answer() adds to the caller's). */
typedef struct udp_msg_counts {
    uint64_t checks, stops, msg_errors, malformed_msgs;
} udp_msg_counts;

typedef struct udp_state {
    int fd;
    uint32_t epoch;
    udp_slot *rx;
    udp_tx_slot *tx;
    uint32_t *tx_free, ntx_free;
    uint32_t wait_head, wait_tail;
    udp_agent *agents; /* sorted by id */
    uint32_t nagents;
    uint64_t rx_frames, tx_frames, rx_errors, tx_errors, hellos, epoch_refused;
    udp_msg_counts mc;
    uint64_t drops[UDP_DROP__COUNT];
} udp_state;

enum gw_phase { PHASE_RECOVERING = 0, PHASE_RUNNING, PHASE_DRAINING };

typedef struct gateway {
    config cfg;
    glog log;
    struct io_uring ring;
    journal j;
    commit commit; /* journal append + apply, and what is acknowledged (commit.h) */
    struct cluster *cl; /* cluster.h; NULL: a single node (no [cluster] etcd) */
    struct follow *fl;         /* cluster mode: the cluster log reader (follower.h), else NULL */
    uint64_t keep_through_lsn; /* cluster mode: recovery cuts the journal after it (0: no cut) */
    char **argv;               /* as started: a deposed leader starts again in place */
    int64_t takeover_ms;       /* a won campaign is catching up with the log since (0: no) */
    int64_t rejoin_at_ms;      /* deposed: start again in place at (0: no) */
    orders o;
    durview dv; /* the orders as reads show them: durable state only (durview.h) */
    pagefill pf; /* [gateway] prefault: the helper that keeps o's and dv's tables ahead (pagefill.h) */
    router rt;
    server srv;
    tls_server tls; /* TLS on RESP (tls.h); tls.ctx NULL when off */
    outbox ob;
    metrics m;
    lists_state ls;
    udp_state udp;
    struct dpdk_state *dpdk; /* dpdk.c; NULL unless [dpdk] enabled = yes */
    console *console;        /* console.c; NULL when [gateway] console = off */
    int journal_error_logged; /* last journal errno reported in the log */
    bool truncate_damaged_tail; /* stopgated --truncate-damaged-tail: cut a damaged journal tail */
    uint32_t cascade_retry[CASCADE_RETRY_MAX]; /* FUNDS_MOVED orders whose cascade waits for room */
    uint32_t cascade_retry_len;
    auth_hash *agent_auth; /* parallel to cfg.agents */
    admit adm;             /* per-address connections and failed AUTHs (login.c) */
    authq aq;              /* Argon2id off the loop (login.c) */
    login_state login;
    int phase;
    bool stop_requested, reload_requested;
    int signal_fd;
    uint8_t sigbuf[128];
    int64_t now_ms;
    resp_cmd *cmd; /* one parse area: commands are handled one at a time */
    uint8_t *recbuf; /* JOURNAL_RECORD_BYTES_MAX: encoding scratch */
    int64_t started_ms;
    uint32_t sim_instances;
} gateway;

/* server.c */
int server_init(gateway *gw, char *err, size_t errcap);
/* After the loop and io_uring_queue_exit, before tls_server_free: every client, listener,
 * table and the provided-buffer ring freed (after a server_init that returned 0). */
void server_close(gateway *gw);
void server_arm_accept(gateway *gw);
void server_on_cqe(gateway *gw, unsigned kind, uint32_t aux, uint32_t idx, int res, uint32_t flags);
void server_on_durable(gateway *gw, uint64_t durable_lsn);
void server_stop_accepting(gateway *gw);
bool server_drained(gateway *gw);
/* Queue a reply that may go once lsn is durable (0 = at once, after earlier replies). A
 * reply that did not fit the output buffer (c->out.overflowed) is replaced by ERR TOOBIG,
 * one that would wait for a journal that cannot write by ERR BUSY: refused whole. */
void server_reply_done(gateway *gw, client *c, uint64_t lsn, int64_t t_recv_ns);
/* The journal has started failing: every reply waiting for a record not yet durable is
 * answered ERR BUSY now (SPEC §9: bounded time), and blocked clients run again. */
void server_on_journal_failed(gateway *gw);
/* Every reply waiting for a record not yet acknowledged is answered `-<code> <why>` now
 * (the cluster: ERR BUSY when its log cannot be written, READONLY when this member was
 * deposed); order is kept, and blocked clients run again. */
void server_fail_unacked(gateway *gw, const char *code, const char *why);
void server_kick_all(gateway *gw);
/* Close another client as the idle reaper does (CLIENT KILL): replies it was still owed are
 * dropped. A client ending itself uses close_after_flush instead. */
void server_kill(gateway *gw, client *c);
/* Close clients idle longer than [gateway] idle_timeout (0 = never), and those not admitted by
 * their AUTH deadline; sweeps once a second. */
void server_reap_idle(gateway *gw);
/* Close TLS clients whose handshake is past TLS_HANDSHAKE_MS_MAX; sweeps once a second. */
void server_reap_tls(gateway *gw);
/* The live client at idx with generation gen, or NULL (it closed meanwhile). */
client *server_client(gateway *gw, uint32_t idx, uint32_t gen);
/* c's AUTH was answered: go on with its pipeline. */
void server_resume(gateway *gw, client *c);
/* Serve fd (a connected stream socket: the console's end of a socketpair, console.h) as a
 * RESP client whose peer is addr:port for admission, AUTH limits and the log, exactly as if
 * accepted. 0, or -EBUSY (not accepting, max_clients) / -EMFILE (max_clients_per_address):
 * fd is then still the caller's. */
int server_adopt(gateway *gw, int fd, uint32_t addr, uint16_t port);

/* commands.c: handle one parsed command. Returns 1 when handled, 0 when it must wait for
 * journal room (nothing was written; call again later with the same command). */
int commands_dispatch(gateway *gw, client *c, resp_cmd *cmd, int64_t t_recv_ns);
/* The answer to c's AUTH (or HELLO ... AUTH) once verified: the reply it waited for. */
void commands_auth_done(gateway *gw, client *c, bool ok);

/* engine.c */
typedef struct order_req {
    uint8_t kind;
    rec_str request_id;
    char bank[BANK_LEN_MAX + 1];
    char account[ACCOUNT_LEN_MAX + 1];
    rec_str case_id, reason, note, doc;
    int64_t amount_minor;
    char currency[4];
    bool currency_given;
    int64_t ttl_s; /* 0 = the kind's default */
    const char *agent;
    uint32_t parent_no, level;
} order_req;

enum answer_status { ANS_ACCEPTED = 0, ANS_DUPLICATE, ANS_MERGED, ANS_HELD, ANS_RELEASED, ANS_EXTENDED, ANS_CONFIRMED };
const char *answer_name(int a);

typedef struct engine_answer {
    int status;
    uint32_t order_no;
    uint64_t lsn;
    const char *code; /* error code ("ERR IDEMPOTENCY"...) or NULL when ok */
    char why[256];
} engine_answer;

/* Each returns 0 (answer filled, or code set for a refusal) or -EAGAIN (no journal room:
 * nothing changed, retry after the next durable batch). */
int engine_order(gateway *gw, const order_req *rq, engine_answer *a);
/* Who asks to undo an order (SPEC §4.2): an agent may RELEASE or EXTEND only the orders it
 * gave and never a HELD one nor release a judicial FREEZE; a supervisor may act on any
 * order, a FREEZE's RELEASE with a DOC. */
typedef struct engine_actor {
    const char *name;
    bool supervisor;
} engine_actor;
int engine_release(gateway *gw, rec_str request_id, uint32_t order_no, rec_str reason, rec_str doc,
                   const engine_actor *who, engine_answer *a);
int engine_extend(gateway *gw, rec_str request_id, uint32_t order_no, int64_t ttl_s,
                  const engine_actor *who, engine_answer *a);
/* Reserve the outbox (max_outbox entries) before anything is recovered. */
int engine_init(gateway *gw, char *err, size_t errcap);
void engine_free(gateway *gw);
int engine_recover(gateway *gw, char *err, size_t errcap);
/* This member just won a cluster campaign (cluster.h): 0 when it may take writes at once, 1 when
 * a catch-up runs first (which then calls cluster_lead_ready). Finishes interrupted cascades. */
int engine_on_lead(gateway *gw);
/* Rebuild the outbox from the orders: every live instruction without a final bank answer,
 * to be sent again with its instruction id (after recovery; on a new cluster leader once it
 * has applied the whole log). 0, or -1 with err when max_outbox cannot hold them. */
int engine_resume_instructions(gateway *gw, char *err, size_t errcap);
void engine_on_durable(gateway *gw, uint64_t durable_lsn);
void engine_tick(gateway *gw);
/* A bank's answer: journaled (returns its lsn) or ignored (returns 0, counted). */
uint64_t engine_on_result(gateway *gw, plugin_inst *p, const sg_result *r);
void engine_on_delivered(gateway *gw, plugin_inst *p, uint64_t instruction_id);
bool engine_room(gateway *gw);

/* True (and a filled with ERR BUSY and the reason) while journal writes fail. */
bool engine_journal_failing(const gateway *gw, engine_answer *a);
/* Confirm a HELD order (supervisor): 0 with a filled, or -EAGAIN. */
int engine_confirm(gateway *gw, uint32_t order_no, const char *agent, engine_answer *a);
/* CHECK-triggered STOP on an auto_stop list hit (once per account, agent "auto"). */
void engine_auto_stop(gateway *gw, const char *bank, const char *account, const sg_verdict *v);

/* Create the child STOPs of a FUNDS_MOVED order (idempotent); -EAGAIN when queued for later. */
int engine_cascade(gateway *gw, uint32_t parent_no);
void engine_finish_cascades(gateway *gw);
/* NULL when onward transfer w of parent gets a child STOP, else why not (bank and account
 * are filled with the normalised values when valid). */
const char *engine_onward_skip(gateway *gw, const order *parent, const sg_onward *w, char bank[BANK_LEN_MAX + 1],
                               char account[ACCOUNT_LEN_MAX + 1]);

/* udp.c */
int udp_init(gateway *gw, char *err, size_t errcap);
int udp_agents_build(gateway *gw, char *err, size_t errcap);
void udp_on_cqe(gateway *gw, unsigned kind, uint32_t idx, int res);
void udp_on_durable(gateway *gw, uint64_t durable_lsn);
/* The journal cannot write (server_on_journal_failed): the parked replies leave now, their
 * answers not yet durable turned into BUSY (udp_reply_fail_pending). */
void udp_on_journal_failed(gateway *gw);
bool udp_drained(const gateway *gw);
void udp_close(gateway *gw);
const char *udp_drop_name(int why);
/* Answer the messages (CHECK, STOP, PING) of an authenticated request frame: the reply frame
 * (MAC'd with key, header epoch `epoch`) into out; its length, or 0 when it cannot be built.
 * *lsn is raised to the journal position its STOPs need durable before it may be sent.
 * Loop thread only (the engine). Used by kernel UDP and by the DPDK path's order side. */
size_t udp_answer(gateway *gw, const cfg_agent *agent, const uint8_t key[SG_FRAME_KEY_BYTES], const uint8_t *dgram,
                  size_t len, const sg_frame_hdr *h, uint32_t epoch, uint8_t *out, size_t cap, uint64_t *lsn,
                  udp_msg_counts *mc);

/* fastpath.c: the checks every frame goes through before its messages, and the replies that
 * need none of them. No gateway state: kernel UDP, the DPDK lcore and dpdkbench share them. */
enum udp_auth { UDP_AUTH_OK, UDP_AUTH_HELLO, UDP_AUTH_EPOCH, UDP_AUTH_BAD_MAC, UDP_AUTH_REPLAY };
/* Size, magic, version, length, count, not a reply: 0, or -1 (malformed). */
int udp_frame_header(const uint8_t *dgram, size_t len, sg_frame_hdr *h);
udp_agent *udp_agent_find(udp_agent *v, uint32_t n, uint32_t id);
/* A datagram that is one HELLO message (answered for any agent id, known or not). */
bool udp_frame_is_hello(const uint8_t *dgram, size_t len, const sg_frame_hdr *h);
/* HELLO (no MAC needed), else MAC, epoch, then the replay window (updated when new). */
int udp_frame_auth(const uint8_t *dgram, size_t len, const sg_frame_hdr *h, const udp_mac *mac, sg_replay *replay,
                   uint32_t epoch);
/* The frame MAC (docs/protocol.md) from a keyed state: the same bytes as sg_frame_verify() and
 * sg_frame_finish() with the key. sign writes the last SG_FRAME_MAC_BYTES of the datagram. */
void udp_mac_init(udp_mac *m, const uint8_t key[SG_FRAME_KEY_BYTES]);
bool udp_mac_verify(const udp_mac *m, const uint8_t *dgram, size_t len);
void udp_mac_sign(const udp_mac *m, uint8_t *dgram, size_t len);
size_t udp_hello_reply(uint8_t *out, size_t cap, const sg_frame_hdr *h, uint32_t epoch, uint64_t opslimit,
                       uint64_t memlimit, const uint8_t salt[16]);
/* A reply with no messages and a frame-level status (SG_FE_EPOCH, SG_FE_TOOBIG). */
size_t udp_status_reply(uint8_t *out, size_t cap, const sg_frame_hdr *h, uint32_t epoch, uint16_t status,
                        const uint8_t key[SG_FRAME_KEY_BYTES]);
/* A reply frame parked for durability whose batch the disk refuses: in place, every STOP
 * answer whose lsn (its mask) is past durable_lsn, and every CHECK answer, becomes err BUSY
 * (not acknowledged: the client retries with the same request id); other answers keep their
 * values; the MAC is made again with key. Same length. Returns the answers changed. */
uint32_t udp_reply_fail_pending(uint8_t *dgram, size_t len, uint64_t durable_lsn,
                                const uint8_t key[SG_FRAME_KEY_BYTES]);

/* dpdk.c: the DPDK fast path ([dpdk] enabled = yes; docs/protocol.md "DPDK"). Built only
 * with libdpdk (HAVE_DPDK); without it the stubs below refuse `enabled = yes`. */
#ifdef HAVE_DPDK
int dpdk_start(gateway *gw, char *err, size_t errcap);
void dpdk_on_cqe(gateway *gw, int res);
void dpdk_on_durable(gateway *gw, uint64_t durable_lsn);
/* As udp_on_journal_failed, for the replies the DPDK order side holds. */
void dpdk_on_journal_failed(gateway *gw);
bool dpdk_drained(const gateway *gw);
/* Agents or auto_stop lists changed (SIGHUP): the order side's agent table and a new
 * snapshot for the lcore. */
void dpdk_agents_changed(gateway *gw);
void dpdk_metrics(gateway *gw, prom_writer *w);
void dpdk_stop(gateway *gw);
#else
static inline int dpdk_start(gateway *gw, char *err, size_t errcap) {
    if (!gw->cfg.dpdk_enabled) return 0;
    snprintf(err, errcap, "[dpdk] enabled = yes, but this stopgated was built without DPDK (libdpdk-dev was "
                          "not found at build time): install it and rebuild, or set [dpdk] enabled = no");
    return -1;
}
static inline void dpdk_on_cqe(gateway *gw, int res) { (void)gw, (void)res; }
static inline void dpdk_on_durable(gateway *gw, uint64_t durable_lsn) { (void)gw, (void)durable_lsn; }
static inline void dpdk_on_journal_failed(gateway *gw) { (void)gw; }
static inline bool dpdk_drained(const gateway *gw) { (void)gw; return true; }
static inline void dpdk_agents_changed(gateway *gw) { (void)gw; }
static inline void dpdk_metrics(gateway *gw, prom_writer *w) { (void)gw, (void)w; }
static inline void dpdk_stop(gateway *gw) { (void)gw; }
#endif

/* reload.c: SIGHUP. 0, or -1 with the reason (nothing changed). */
int gateway_reload(gateway *gw, char *err, size_t errcap);
/* The checks of a loaded config beyond the parser's that need no plugin: agents' secrets, the
 * [dpdk] section. Start, --check-config and SIGHUP all run them. 0, or -1 with err. */
int gateway_config_check_static(const config *c, char *err, size_t errcap);
/* The static checks and every [plugin] section judged by its plugin (router_check_plugin);
 * sections equal to those of `running` (NULL: none) are skipped. 0, or -1 with err. */
int gateway_config_check(const config *c, const config *running, const char *argv0, const glog *log, char *err,
                         size_t errcap);

/* lists.c */
int lists_init(gateway *gw, char *err, size_t errcap);
int lists_apply(gateway *gw, const order_rec *r, bool live, char *err, size_t errcap);
int lists_start(gateway *gw, char *err, size_t errcap);
void lists_close(gateway *gw);
int lists_bit(const gateway *gw, const char *name, size_t len);
const char *lists_name(const gateway *gw, unsigned bit);
const char *lists_case_str(const gateway *gw, uint32_t ref);
bool lists_lookup(gateway *gw, const char *bank, const char *account, sg_verdict *v);
/* For a reply held until durable (live: the journal writes): the verdict with the list
 * changes not yet durable put in, and the lsn to hold it for (0: none). Not live: the table,
 * durable state only. A load's COMMIT not yet durable is not put in (its rows are not
 * looked up one by one): for that moment the list reads as before the load. */
uint64_t lists_lookup_read(gateway *gw, const char *bank, const char *account, bool live, sg_verdict *v);
/* The tag line and home slot lists_lookup will read, to prefetch (check_ahead.h): 2 addresses
 * in out, or 0 when the account is malformed or no table is mapped. */
unsigned lists_lines(const gateway *gw, const char *bank, const char *account, const void *out[2]);
void lists_set_frozen(gateway *gw, const char *bank, const char *account, bool frozen);
void lists_sync_order(gateway *gw, uint32_t order_no);
/* Records up to durable_lsn are on disk: publish the list changes among them. */
void lists_on_durable(gateway *gw, uint64_t durable_lsn);
void lists_tick(gateway *gw);
int lists_change(gateway *gw, uint16_t type, int bit, const char *bank, const char *account, uint8_t score,
                 int64_t ttl_s, rec_str case_id, const char *agent, list_answer *a);
int lists_load(gateway *gw, const client *c, int bit, const char *path, const char *inline_csv, size_t inline_len,
               const char *agent, list_answer *a);
void lists_client_gone(gateway *gw, const client *c);

/* router.c */
int router_init(gateway *gw, const char *argv0, char *err, size_t errcap);
/* Judge [plugin] sections without an event loop (--check-config, SIGHUP): load each plugin,
 * init() it on the section with a host that takes nothing, and shut it down again. 0, or -1
 * with err = "file:line: reason". */
int router_check(const config *c, const char *argv0, const glog *log, char *err, size_t errcap);
int router_check_plugin(const config *c, const cfg_plugin *cp, const char *argv0, const glog *log, char *err,
                        size_t errcap);
plugin_inst *router_route(gateway *gw, const char *bank);
void router_on_cqe(gateway *gw, uint32_t idx, int res, uint32_t flags);
void router_poll_due(gateway *gw, int64_t now_us);
int64_t router_next_poll_us(gateway *gw);
void router_shutdown(gateway *gw);

/* metrics.c */
int metrics_init(gateway *gw, char *err, size_t errcap);
void metrics_on_cqe(gateway *gw, unsigned kind, uint32_t idx, int res, uint32_t flags);
void metrics_observe_stop_us(metrics *m, uint64_t us);
void metrics_close(gateway *gw);
#endif
