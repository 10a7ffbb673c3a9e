/*
 * dpdk_path: the data path of the DPDK fast path (docs/protocol.md "DPDK"), what the worker
 * lcore runs: rx burst -> Ethernet/ARP/IPv4/ICMP/UDP -> frame checks (fastpath.c) -> CHECKs
 * answered from the shared-memory list table -> reply built in the mbuf -> tx burst.
 * Frames holding a STOP, and CHECK hits on auto_stop lists, are copied into a dp_msg and
 * handed to the order side (dpdk.c, the gateway's loop thread) through an rte_ring; their
 * replies come back through a second ring once durable and leave from here too.
 *
 * No locks and no gateway state on this path: the lcore owns its agent snapshot (keys,
 * roles, replay windows), its own read-only mapping of /dev/shm/<shm_name> and its counters
 * (atomics read by the metrics page). bench/dpdkbench.c drives the same dp_poll() on a
 * net_ring port, so the benchmark measures this code and nothing else.
 */
#ifndef SG_DPDK_PATH_H
#define SG_DPDK_PATH_H
/* rte_mbuf_core.h uses CHAR_BIT, and <limits.h> here is gateway/core/limits.h. */
#ifndef CHAR_BIT
#define CHAR_BIT __CHAR_BIT__
#endif
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Every DPDK header the DPDK modules use, before gateway.h: its `buf` type would otherwise
 * be shadowed by parameters in rte_ip.h (-Wshadow). */
#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_ip_frag.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pause.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include "gateway.h"

#define DP_BURST 32          /* packets per rx burst */
#define DP_MBUFS 8191        /* mbuf pool */
#define DP_MBUF_CACHE 256
#define DP_MBUF_DATA (RTE_PKTMBUF_HEADROOM + 9216) /* a jumbo frame (8 KiB datagram) in one segment */
#define DP_MTU_WANTED 9000   /* asked of the port (tap gives 1500: replies are then fragmented) */
#define DP_MSGS 4095         /* dp_msg pool: datagrams between the lcore and the order side */
#define DP_RING_SIZE 4096    /* each direction; > DP_MSGS so an enqueue never fails */
#define DP_RX_DESC 1024
#define DP_TX_DESC 1024
#define DP_TX_RETRIES 4      /* tx bursts tried before the rest of a batch is dropped */
#define DP_IDLE_SPINS 4096   /* empty polls before the lcore starts napping */
#define DP_IDLE_NAP_NS 20000 /* nap length while idle (first packet after idle waits at most this) */
#define DP_AUTO_RECENT 64    /* auto_stop hand-offs remembered, so a hot account is sent once */
#define DP_AUTO_QUIET_MS 200 /* ... per this many ms */
#define DP_TX_BATCH 64       /* packets gathered before a tx burst */
#define DP_FRAG_BUCKETS 256  /* IPv4 reassembly table: buckets x 16 datagrams in reassembly */
#define DP_FRAG_TIMEOUT_MS 500 /* a datagram whose fragments are not all in by then is dropped */
#define DP_FRAGS_MAX RTE_LIBRTE_IP_FRAG_MAX_FRAG /* fragments of one datagram, both ways */

enum dp_msg_kind { DP_MSG_FRAME = 1, DP_MSG_AUTO = 2 };

/* A datagram (or an auto_stop hit) on its way to the order side, and its reply on the way
 * back. Allocated from the dp_msg mempool (multi-producer/consumer safe). */
typedef struct dp_msg {
    uint8_t kind;
    struct rte_ether_addr peer_mac;
    rte_be32_t peer_ip;
    rte_be16_t peer_port;
    uint32_t len;
    uint64_t lsn;         /* order side: the reply waits until this is durable */
    struct dp_msg *next;  /* order side: waiting list */
    sgl_key key;          /* DP_MSG_AUTO: the account */
    uint8_t buf[SG_FRAME_BYTES_MAX];
} dp_msg;

/* One agent as the lcore sees it. */
typedef struct dp_agent {
    uint32_t id; /* sg_frame_agent_id(name) */
    bool can_check;
    uint8_t key[SG_FRAME_KEY_BYTES];
    udp_mac mac; /* the same key, keyed state */
    uint64_t opslimit, memlimit; /* for the HELLO reply */
    uint8_t salt[16];
    sg_replay replay; /* lcore-owned; carried over when a new snapshot comes */
} dp_agent;

/* What the lcore needs of the configuration, built by the order side at start and on
 * SIGHUP, handed over with an atomic pointer exchange. */
typedef struct dp_snap {
    uint64_t auto_stop_mask;
    uint8_t pepper[32]; /* the gateway's login pepper: HELLOs for unknown ids (auth.h) */
    uint32_t n;
    dp_agent v[]; /* sorted by id */
} dp_snap;

/* Counters (written by the lcore only, read by the metrics page). */
enum dp_ctr {
    DP_C_RX_PKTS, DP_C_TX_PKTS, DP_C_TX_DROPPED, DP_C_RX_FRAMES, DP_C_TX_FRAMES, DP_C_ARP, DP_C_ICMP,
    DP_C_CHECKS, DP_C_CHECK_HITS, DP_C_PINGS, DP_C_HELLOS, DP_C_EPOCH, DP_C_MSG_ERRORS, DP_C_MALFORMED_MSGS,
    DP_C_TO_ORDER, DP_C_FROM_ORDER, DP_C_AUTO, DP_C_REASSEMBLED, DP_C_FRAGMENTED,
    DP_C_IGN_NOT_OURS, DP_C_IGN_BAD_IP, DP_C_IGN_OTHER, DP_C_DROP, /* + udp_drop reason */
    DP_C__COUNT = DP_C_DROP + UDP_DROP__COUNT
};

typedef struct dp_ctx {
    /* Set up before the lcore starts, read-only afterwards. */
    uint16_t port, queue;
    struct rte_mempool *pool; /* mbufs */
    struct rte_mempool *msgs; /* dp_msg */
    struct rte_ring *to_order, *to_lcore;
    int wake_fd; /* eventfd of the order side (-1: none, as in the bench) */
    struct rte_ether_addr mac;
    rte_be32_t ip;
    rte_be16_t udp_port;
    uint16_t mtu;
    uint32_t epoch;
    char shm_path[320];
    /* Shared with the order side. */
    _Atomic(dp_snap *) next_snap; /* a new snapshot for the lcore to take */
    _Atomic(dp_snap *) retired;   /* the one it replaced, for the order side to free */
    _Atomic bool stop;
    _Atomic uint64_t ctr[DP_C__COUNT];
    /* Lcore-owned. */
    alignas(64) dp_snap *snap;
    sgl_map map;
    struct rte_ip_frag_tbl *frag_tbl;
    struct rte_ip_frag_death_row death_row;
    struct rte_mbuf *tx[DP_TX_BATCH];
    uint8_t tx_frame[DP_TX_BATCH];
    unsigned ntx;
    int64_t now_s;
    uint64_t now_tsc, tsc_hz;
    uint16_t ip_id;
    bool handed; /* something went to the order side in this poll: wake it */
    struct {
        uint64_t hash, tsc;
    } auto_recent[DP_AUTO_RECENT];
    sg_msg m[SG_FRAME_MSGS_MAX];
    sgl_key keys[SG_FRAME_MSGS_MAX];
    uint64_t hashes[SG_FRAME_MSGS_MAX], pos[SG_FRAME_MSGS_MAX], probes[SG_FRAME_MSGS_MAX];
    int64_t cand[SG_FRAME_MSGS_MAX];
    int8_t ok[SG_FRAME_MSGS_MAX];
    sg_verdict v[SG_FRAME_MSGS_MAX];
    uint8_t scratch[SG_FRAME_BYTES_MAX];
    uint8_t l4[8 + SG_FRAME_BYTES_MAX]; /* a reply's UDP header and payload, cut into fragments */
} dp_ctx;

static inline void dp_count(dp_ctx *c, int i, uint64_t n) {
    atomic_store_explicit(&c->ctr[i], atomic_load_explicit(&c->ctr[i], memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline uint64_t dp_counter(dp_ctx *c, int i) { return atomic_load_explicit(&c->ctr[i], memory_order_relaxed); }

/* Create the mbuf and dp_msg pools and both rings (names get `tag`). 0 or -1 with err. */
int dp_resources(dp_ctx *c, const char *tag, char *err, size_t errcap);
void dp_resources_free(dp_ctx *c);
/* Configure one rx and one tx queue on port, ask for DP_MTU_WANTED, start it; fills mac and
 * mtu. 0 or -1 with err. */
int dp_port_init(dp_ctx *c, uint16_t port, char *err, size_t errcap);
/* Map /dev/shm/<shm_name> read-only (the lcore follows the writer when it republishes). */
int dp_lists_open(dp_ctx *c, const char *shm_name, char *err, size_t errcap);
void dp_lists_close(dp_ctx *c);
/* Hand a new snapshot to the lcore (order side). Before the lcore runs, set c->snap. */
void dp_snap_publish(dp_ctx *c, dp_snap *s);
/* Free what the lcore retired (order side). */
void dp_snap_collect(dp_ctx *c);

/* One received packet (ownership passes): answered (the reply queued for tx), handed to
 * the order side (copied), kept for reassembly, or dropped and counted. */
void dp_handle(dp_ctx *c, struct rte_mbuf *m);
/* Queue a UDP datagram to the peer (in m, or a new mbuf when m is NULL), cut into IPv4
 * fragments when it is larger than the MTU. 0, or -1 (dropped, m freed). */
int dp_send_udp(dp_ctx *c, struct rte_mbuf *m, const struct rte_ether_addr *peer_mac, rte_be32_t peer_ip,
                rte_be16_t peer_port, const uint8_t *payload, size_t n);
/* Send what is queued. */
void dp_tx_flush(dp_ctx *c);
/* One turn of the lcore: replies from the order side, one rx burst, tx. Packets handled. */
unsigned dp_poll(dp_ctx *c);
/* The lcore: dp_poll() until c->stop (naps when idle), then sends the last replies. */
int dp_lcore_main(void *arg);
#endif
