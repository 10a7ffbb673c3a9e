/*
 * dpdkbench: per-core CHECK messages/s of the DPDK fast path, with no kernel in the way
 * (issue 7 performance (a); docs/PERFORMANCE.md).
 *
 *   dpdkbench [--entries N] [--batch B] [--seconds S] [--hit-pct P] [--mtu M] [--json FILE]
 *
 * The lcore under test runs the gateway's own dp_lcore_main() (gateway/daemon/dpdk_path.c:
 * rx burst -> Ethernet/IPv4/UDP -> frame header, agent, MAC, epoch, replay window -> the
 * CHECKs of the frame looked up in the shared-memory table -> reply frame with its MAC ->
 * tx burst) on a net_ring port made with rte_eth_from_rings(). A generator on the main lcore
 * (the other core) feeds that port's rx ring with complete Ethernet frames, each holding B
 * CHECKs (default 64, half of them keys on the list) and signed with a fresh sequence number,
 * and takes the replies from its tx ring, checking a sample of them (MAC, count, verdicts).
 * The table has N entries (default 1 M), built with the gateway's writer in /dev/shm.
 *
 * Prints CHECKs/s and frames/s of the lcore (its own counters, over S seconds after a warm-up)
 * and how full the lcore's rx ring stayed: near the frames in flight means the lcore, not the
 * generator, was the bottleneck, i.e. the figure is the lcore's.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dpdk_path.h" /* every DPDK header, before the others (see there) */
#include <rte_eth_ring.h>

#include "benchlist.h"
#include "clock.h"
#include "lists_table.h"

#define TEMPLATES 4096  /* distinct request frames cycled through */
#define INFLIGHT 2048   /* frames between the generator and the lcore */
#define RING_SLOTS 4096 /* each of the port's two rings */
#define SAMPLE_EVERY 64 /* replies checked in full: one in this many */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The lcore under test: dp_lcore_main() itself, after noting its thread for its CPU clock. */
static pthread_t worker_thread;
static _Atomic bool worker_up;
static int worker_main(void *arg) {
    worker_thread = pthread_self();
    atomic_store(&worker_up, true);
    return dp_lcore_main(arg);
}

static int64_t thread_cpu_ns(pthread_t th) {
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(th, &cid) != 0 || clock_gettime(cid, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct tmpl {
    uint8_t *pkt; /* Ethernet frame: headers + request frame (seq and MAC filled per send) */
    uint32_t len;
    uint64_t hits; /* bit i: message i is a listed key (B <= 64) */
} tmpl;

static uint16_t ip_cksum(const uint8_t *ip) {
    uint32_t s = 0;
    for (int i = 0; i < 20; i += 2) s += (uint32_t)ip[i] << 8 | ip[i + 1];
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

int main(int argc, char **argv) {
    uint64_t entries = 1000000;
    unsigned batch = 64, hit_pct = 50, mtu = 0;
    double seconds = 5;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--entries") && i + 1 < argc) entries = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--hit-pct") && i + 1 < argc) hit_pct = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mtu") && i + 1 < argc) mtu = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else {
            fprintf(stderr, "usage: dpdkbench [--entries N] [--batch B (1..64)] [--seconds S] [--hit-pct P] "
                            "[--mtu M] [--json FILE]\n");
            return 2;
        }
    }
    if (entries < 1000 || batch < 1 || batch > 64 || hit_pct > 100 || seconds < 0.5 || seconds > 600 ||
        (mtu && (mtu < 576 || mtu > 9000))) {
        fprintf(stderr, "dpdkbench: entries >= 1000, batch 1..64, hit-pct 0..100, seconds 0.5..600, mtu 576..9000\n");
        return 2;
    }
    if (sodium_init() < 0) return 1;

    /* The EAL: two lcores (the generator here, the lcore under test on the other core). */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "--file-prefix=dpdkbench-%d", (int)getpid());
    char *eal[] = {argv[0], "--no-huge", "-m", "1024", "--no-pci", "-l", "0-1", "--no-shconf", "--no-telemetry",
                   "--log-level", "lib.*:warning", prefix, NULL};
    if (rte_eal_init((int)(sizeof eal / sizeof eal[0]) - 1, eal) < 0) {
        fprintf(stderr, "dpdkbench: rte_eal_init failed: %s (needs two CPUs)\n", rte_strerror(rte_errno));
        return 1;
    }
    char runtime_dir[512];
    snprintf(runtime_dir, sizeof runtime_dir, "%s", rte_eal_get_runtime_dir());
    unsigned worker = rte_get_next_lcore(-1, 1, 0);
    if (worker >= RTE_MAX_LCORE) {
        fprintf(stderr, "dpdkbench: needs a second lcore\n");
        return 1;
    }

    /* The list table, built with the gateway's writer. */
    uint64_t cap = ltab_capacity_for(entries);
    char shm[64], err[512];
    snprintf(shm, sizeof shm, "dpdkbench-%d", (int)getpid());
    lists_table t;
    if (bench_list_build(&t, shm, entries, NULL, NULL, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dpdkbench: %s\n", err);
        return 1;
    }

    /* The lcore's context, exactly as the gateway sets it up, on a net_ring port. */
    dp_ctx *c = aligned_alloc(64, (sizeof(dp_ctx) + 63) / 64 * 64);
    if (!c) return 1;
    memset(c, 0, sizeof *c);
    c->wake_fd = -1;
    c->ip = rte_cpu_to_be_32(0x0a4d0002); /* 10.77.0.2 */
    c->udp_port = rte_cpu_to_be_16(7380);
    c->epoch = 0x5eed;
    if (dp_resources(c, "db", err, sizeof err) != 0) {
        fprintf(stderr, "dpdkbench: %s\n", err);
        return 1;
    }
    struct rte_ring *rxr = rte_ring_create("db_rx", RING_SLOTS, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    struct rte_ring *txr = rte_ring_create("db_tx", RING_SLOTS, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!rxr || !txr) return 1;
    int port = rte_eth_from_rings("dpdkbench", &rxr, 1, &txr, 1, SOCKET_ID_ANY);
    if (port < 0 || dp_port_init(c, (uint16_t)port, err, sizeof err) != 0) {
        fprintf(stderr, "dpdkbench: net_ring port: %s\n", port < 0 ? rte_strerror(rte_errno) : err);
        return 1;
    }
    if (mtu) c->mtu = (uint16_t)mtu; /* e.g. 1500: replies over it go out as IPv4 fragments */
    if (dp_lists_open(c, shm, err, sizeof err) != 0) {
        fprintf(stderr, "dpdkbench: %s\n", err);
        return 1;
    }
    uint8_t agent_key[32], key[SG_FRAME_KEY_BYTES];
    randombytes_buf(agent_key, sizeof agent_key);
    sg_frame_key(agent_key, key);
    dp_snap *snap = calloc(1, sizeof *snap + sizeof(dp_agent));
    if (!snap) return 1;
    snap->n = 1;
    snap->v[0].id = sg_frame_agent_id("bench");
    snap->v[0].can_check = true;
    memcpy(snap->v[0].key, key, sizeof key);
    udp_mac_init(&snap->v[0].mac, key);
    c->snap = snap;

    /* Request templates: B CHECKs each, hit_pct of them listed keys. */
    tmpl *tp = calloc(TEMPLATES, sizeof *tp);
    if (!tp) return 1;
    struct rte_ether_addr gen_mac = {{0x02, 0, 0, 0, 0, 1}};
    for (unsigned ti = 0; ti < TEMPLATES; ti++) {
        uint8_t frame[SG_FRAME_BYTES_MAX];
        sg_frame_writer w;
        sg_frame_hdr h = {.agent_id = snap->v[0].id, .seq = 1, .epoch = c->epoch};
        sg_frame_begin(&w, frame, sizeof frame, &h);
        for (unsigned j = 0; j < batch; j++) {
            bool hit = rng() % 100 < hit_pct;
            char acct[24];
            bench_account_of(rng() % entries + (hit ? 0 : entries), acct);
            sg_frame_add_check(&w, "BENCH", acct);
            if (hit) tp[ti].hits |= 1ULL << j;
        }
        size_t flen = sg_frame_finish(&w, key);
        tp[ti].len = (uint32_t)(42 + flen);
        tp[ti].pkt = malloc(tp[ti].len);
        uint8_t *p = tp[ti].pkt;
        memcpy(p, &c->mac, 6);
        memcpy(p + 6, &gen_mac, 6);
        p[12] = 0x08, p[13] = 0x00;
        uint8_t *ip = p + 14;
        memset(ip, 0, 20);
        ip[0] = 0x45;
        uint16_t tl = (uint16_t)(20 + 8 + flen);
        ip[2] = (uint8_t)(tl >> 8), ip[3] = (uint8_t)tl;
        ip[8] = 64, ip[9] = 17;
        ip[12] = 10, ip[13] = 77, ip[14] = 0, ip[15] = 1;
        memcpy(ip + 16, &c->ip, 4);
        uint16_t ck = ip_cksum(ip);
        ip[10] = (uint8_t)(ck >> 8), ip[11] = (uint8_t)ck;
        uint8_t *u = ip + 20;
        u[0] = 0x9c, u[1] = 0x40; /* 40000 */
        memcpy(u + 2, &c->udp_port, 2);
        uint16_t ul = (uint16_t)(8 + flen);
        u[4] = (uint8_t)(ul >> 8), u[5] = (uint8_t)ul;
        u[6] = u[7] = 0;
        memcpy(u + 8, frame, flen);
    }

    /* The generator's mbufs: INFLIGHT frames circulate (a reply mbuf becomes the next request). */
    struct rte_mempool *gp = rte_pktmbuf_pool_create("db_gen", INFLIGHT + 512, 256, 0, DP_MBUF_DATA, (int)rte_socket_id());
    if (!gp) {
        fprintf(stderr, "dpdkbench: generator pool: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    uint64_t seq = 1;
    struct rte_mbuf *bufs[64];
#define FILL(m)                                                                                   \
    do {                                                                                          \
        const tmpl *t_ = &tp[seq % TEMPLATES];                                                    \
        (m)->data_off = RTE_PKTMBUF_HEADROOM;                                                     \
        uint8_t *p_ = rte_pktmbuf_mtod((m), uint8_t *);                                           \
        memcpy(p_, t_->pkt, t_->len);                                                             \
        uint8_t *f_ = p_ + 42;                                                                    \
        size_t fl_ = t_->len - 42;                                                                \
        memcpy(f_ + 8, &seq, 8);                                                                  \
        crypto_generichash(f_ + fl_ - SG_FRAME_MAC_BYTES, SG_FRAME_MAC_BYTES, f_, fl_ - SG_FRAME_MAC_BYTES, key, \
                           SG_FRAME_KEY_BYTES);                                                   \
        (m)->data_len = (uint16_t)t_->len;                                                        \
        (m)->pkt_len = t_->len;                                                                   \
        (m)->nb_segs = 1;                                                                         \
        (m)->next = NULL;                                                                         \
        seq++;                                                                                    \
    } while (0)
    for (unsigned i = 0; i < INFLIGHT; i++) {
        struct rte_mbuf *m = rte_pktmbuf_alloc(gp);
        if (!m) return 1;
        FILL(m);
        if (rte_ring_sp_enqueue(rxr, m) != 0) return 1;
    }
    if (rte_eal_remote_launch(worker_main, c, worker) != 0) {
        fprintf(stderr, "dpdkbench: cannot launch lcore %u\n", worker);
        return 1;
    }

    /* Run: warm-up, then the measured window on the lcore's own counters. */
    while (!atomic_load(&worker_up)) rte_pause();
    uint64_t replies = 0, checked = 0, bad = 0, occ_sum = 0, occ_n = 0, c0 = 0, f0 = 0;
    int64_t cpu0 = 0;
    int64_t start = clock_mono_ns(), t0 = 0, warm = 1000000000LL, end = warm + (int64_t)(seconds * 1e9);
    for (;;) {
        int64_t now = clock_mono_ns() - start;
        if (!t0 && now >= warm) {
            t0 = now;
            c0 = dp_counter(c, DP_C_CHECKS);
            f0 = dp_counter(c, DP_C_TX_FRAMES);
            cpu0 = thread_cpu_ns(worker_thread);
        }
        if (now >= end) break;
        unsigned n = rte_ring_sc_dequeue_burst(txr, (void **)bufs, 64, NULL);
        if (t0 && (replies & 255) == 0) {
            occ_sum += rte_ring_count(rxr);
            occ_n++;
        }
        unsigned k = 0;
        for (unsigned i = 0; i < n; i++) {
            struct rte_mbuf *m = bufs[i];
            /* A reply over --mtu comes as IPv4 fragments: the first is reused, the rest freed. */
            const uint8_t *ipf = rte_pktmbuf_mtod_offset(m, const uint8_t *, 14 + 6);
            if (((ipf[0] & 0x1f) | ipf[1]) != 0) {
                rte_pktmbuf_free(m);
                continue;
            }
            bool first_frag = (ipf[0] & 0x20) != 0;
            if (!first_frag && (replies++ % SAMPLE_EVERY) == 0) {
                const uint8_t *d = rte_pktmbuf_mtod_offset(m, const uint8_t *, 42);
                size_t dl = m->data_len - 42u;
                sg_frame_hdr h;
                sg_frame_reader r;
                sg_reply rep;
                bool ok = m->nb_segs == 1 && sg_frame_parse_hdr(d, dl, &h) == 0 && sg_frame_verify(d, dl, key) &&
                          h.status == 0 && h.count == batch;
                if (ok) {
                    const tmpl *tt = &tp[h.seq % TEMPLATES];
                    sg_frame_read_begin(&r, d, dl, &h);
                    for (unsigned j = 0; ok && j < batch; j++)
                        ok = sg_frame_next_reply(&r, &rep) == 1 && rep.err == 0 &&
                             rep.code == (((tt->hits >> j) & 1) ? SG_V_LISTED : SG_V_CLEAR);
                }
                checked++;
                bad += !ok;
            }
            FILL(m);
            bufs[k++] = m;
        }
        if (k && rte_ring_sp_enqueue_bulk(rxr, (void **)bufs, k, NULL) != k) {
            fprintf(stderr, "dpdkbench: rx ring full\n");
            return 1;
        }
    }
    int64_t t1 = clock_mono_ns() - start;
    uint64_t c1 = dp_counter(c, DP_C_CHECKS), f1 = dp_counter(c, DP_C_TX_FRAMES);
    int64_t cpu1 = thread_cpu_ns(worker_thread);
    atomic_store(&c->stop, true);
    rte_eal_wait_lcore(worker);
    double secs = (double)(t1 - t0) / 1e9, checks_s = (double)(c1 - c0) / secs, frames_s = (double)(f1 - f0) / secs;
    double occ = occ_n ? (double)occ_sum / (double)occ_n : 0;
    double cpu_s = (double)(cpu1 - cpu0) / 1e9, per_core = cpu_s > 0 ? (double)(c1 - c0) / cpu_s : 0;
    uint64_t drops = dp_counter(c, DP_C_TX_DROPPED);
    for (int i = 0; i < UDP_DROP__COUNT; i++) drops += dp_counter(c, DP_C_DROP + i);

    printf("dpdkbench: %llu-entry table (%llu slots), %u CHECKs per frame, %u%% listed, mtu %u, %d frames in flight\n",
           (unsigned long long)entries, (unsigned long long)cap, batch, hit_pct, c->mtu, INFLIGHT);
    printf("lcore %u: %.2f M CHECKs per CPU-second of the lcore (%.1f ns per CHECK): the per-core figure\n", worker,
           per_core / 1e6, 1e9 / per_core);
    printf("         %.2f M CHECKs/s, %.0f frames/s of wall time over %.1f s; the lcore had its CPU %.0f%% of it\n",
           checks_s / 1e6, frames_s, secs, 100.0 * cpu_s / secs);
    printf("lcore rx ring: %.0f of %d frames waiting on average (%s)\n", occ, INFLIGHT,
           occ > INFLIGHT / 2 ? "the lcore is the bottleneck: the figure is its own"
                              : "the generator may be the bottleneck: the figure is a lower bound");
    printf("replies checked: %llu (MAC, count, verdicts), wrong: %llu; frames dropped: %llu\n",
           (unsigned long long)checked, (unsigned long long)bad, (unsigned long long)drops);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f,
                "{\"entries\": %llu, \"batch\": %u, \"hit_pct\": %u, \"mtu\": %u, \"seconds\": %.2f, "
                "\"checks_per_cpu_s\": %.0f, \"checks_per_s\": %.0f, \"frames_per_s\": %.0f, \"cpu_share\": %.3f, "
                "\"ns_per_check\": %.2f, \"rx_ring_avg\": %.0f, "
                "\"inflight\": %d, \"replies_checked\": %llu, \"wrong\": %llu}\n",
                (unsigned long long)entries, batch, hit_pct, c->mtu, secs, per_core, checks_s, frames_s, cpu_s / secs,
                1e9 / per_core, occ,
                INFLIGHT, (unsigned long long)checked, (unsigned long long)bad);
        fclose(f);
    }

    /* Tear down: nothing left in /dev/shm or /var/run/dpdk. */
    struct rte_mbuf *m = NULL;
    while (rte_ring_sc_dequeue(rxr, (void **)&m) == 0) rte_pktmbuf_free(m);
    while (rte_ring_sc_dequeue(txr, (void **)&m) == 0) rte_pktmbuf_free(m);
    rte_eth_dev_stop((uint16_t)port);
    rte_eth_dev_close((uint16_t)port);
    dp_lists_close(c);
    dp_resources_free(c);
    rte_mempool_free(gp);
    rte_ring_free(rxr);
    rte_ring_free(txr);
    free(snap);
    free(c);
    ltab_close(&t, false);
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/%s", shm);
    unlink(path);
    rte_eal_cleanup();
    rmdir(runtime_dir);
    for (unsigned ti = 0; ti < TEMPLATES; ti++) free(tp[ti].pkt);
    free(tp);
    return bad ? 1 : 0;
}
