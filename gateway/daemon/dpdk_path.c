/*
 * dpdk_path: the DPDK lcore's data path (see dpdk_path.h; docs/protocol.md "DPDK").
 *
 * A packet is looked at once, in place: ARP requests for [dpdk] ip and ICMP echo requests
 * to it are turned into their replies in the same mbuf; a UDP datagram to ip:port goes
 * through the frame checks every transport shares (fastpath.c: header, agent, MAC/HELLO,
 * epoch, replay window) and, when it holds only CHECK/PING messages, is answered here: the
 * lookups of a frame are batched (hash and prefetch every tag line, then every candidate
 * slot, then compare) so their cache misses overlap. The reply frame is written to a scratch
 * buffer (the request is still being read) and then over the request in its mbuf, headers
 * swapped. A frame with a STOP goes whole to the order side (copied), which answers it with
 * udp_answer() like kernel UDP does.
 */
/* XXH3 inlined here: the lcore hashes every CHECK key (a call through the PLT otherwise). */
#define XXH_INLINE_ALL
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dpdk_path.h" /* every DPDK header (see there) */

#define ETH_LEN 14u
#define IP_LEN 20u
#define UDP_LEN 8u
#define HDRS_LEN (ETH_LEN + IP_LEN + UDP_LEN)
#define ARP_LEN 28u

/* --- set-up --------------------------------------------------------------------------- */

int dp_resources(dp_ctx *c, const char *tag, char *err, size_t errcap) {
    char name[RTE_MEMPOOL_NAMESIZE];
    snprintf(name, sizeof name, "%s_mbuf", tag);
    c->pool = rte_pktmbuf_pool_create(name, DP_MBUFS, DP_MBUF_CACHE, 0, DP_MBUF_DATA, (int)rte_socket_id());
    if (!c->pool) goto fail;
    snprintf(name, sizeof name, "%s_msg", tag);
    c->msgs = rte_mempool_create(name, DP_MSGS, sizeof(dp_msg), 0, 0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
    if (!c->msgs) goto fail;
    snprintf(name, sizeof name, "%s_to_order", tag);
    c->to_order = rte_ring_create(name, DP_RING_SIZE, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!c->to_order) goto fail;
    snprintf(name, sizeof name, "%s_to_lcore", tag);
    c->to_lcore = rte_ring_create(name, DP_RING_SIZE, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!c->to_lcore) goto fail;
    c->tsc_hz = rte_get_tsc_hz();
    snprintf(name, sizeof name, "%s_frag", tag);
    c->frag_tbl = rte_ip_frag_table_create(DP_FRAG_BUCKETS, 16, DP_FRAG_BUCKETS * 16,
                                           c->tsc_hz / 1000 * DP_FRAG_TIMEOUT_MS, SOCKET_ID_ANY);
    if (!c->frag_tbl) goto fail;
    return 0;
fail:
    snprintf(err, errcap, "cannot create %s: %s (give the EAL more memory: -m)", name, rte_strerror(rte_errno));
    dp_resources_free(c);
    return -1;
}

void dp_resources_free(dp_ctx *c) {
    if (c->frag_tbl) {
        rte_ip_frag_table_destroy(c->frag_tbl); /* frees the fragments it holds */
        rte_ip_frag_free_death_row(&c->death_row, 0);
    }
    c->frag_tbl = NULL;
    if (c->ntx) rte_pktmbuf_free_bulk(c->tx, c->ntx);
    c->ntx = 0;
    rte_ring_free(c->to_lcore);
    rte_ring_free(c->to_order);
    rte_mempool_free(c->msgs);
    rte_mempool_free(c->pool);
    c->to_lcore = c->to_order = NULL;
    c->msgs = c->pool = NULL;
}

int dp_port_init(dp_ctx *c, uint16_t port, char *err, size_t errcap) {
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) {
        snprintf(err, errcap, "port %u: dev_info: %s", port, rte_strerror(-rc));
        return -1;
    }
    uint32_t mtu = DP_MTU_WANTED;
    if (mtu > info.max_mtu) mtu = info.max_mtu;
    if (mtu > DP_MBUF_DATA - RTE_PKTMBUF_HEADROOM - RTE_ETHER_HDR_LEN - RTE_ETHER_CRC_LEN)
        mtu = DP_MBUF_DATA - RTE_PKTMBUF_HEADROOM - RTE_ETHER_HDR_LEN - RTE_ETHER_CRC_LEN;
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    conf.rxmode.mtu = mtu;
    rc = rte_eth_dev_configure(port, 1, 1, &conf);
    if (rc != 0) { /* some devices refuse a jumbo MTU: take their default */
        conf.rxmode.mtu = 0;
        rc = rte_eth_dev_configure(port, 1, 1, &conf);
    }
    if (rc != 0) {
        snprintf(err, errcap, "port %u: configure: %s", port, rte_strerror(-rc));
        return -1;
    }
    uint16_t nrx = DP_RX_DESC, ntx = DP_TX_DESC;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
    int sock = rte_eth_dev_socket_id(port);
    if ((rc = rte_eth_rx_queue_setup(port, 0, nrx, (unsigned)sock, NULL, c->pool)) != 0 ||
        (rc = rte_eth_tx_queue_setup(port, 0, ntx, (unsigned)sock, NULL)) != 0) {
        snprintf(err, errcap, "port %u: queue setup: %s", port, rte_strerror(-rc));
        return -1;
    }
    if ((rc = rte_eth_dev_start(port)) != 0) {
        snprintf(err, errcap, "port %u: start: %s", port, rte_strerror(-rc));
        return -1;
    }
    if (conf.rxmode.mtu) rte_eth_dev_set_mtu(port, (uint16_t)mtu); /* what tap needs to apply it */
    uint16_t got = 0;
    c->mtu = rte_eth_dev_get_mtu(port, &got) == 0 && got >= 576 ? got : RTE_ETHER_MTU;
    rte_eth_macaddr_get(port, &c->mac);
    c->port = port;
    c->queue = 0;
    return 0;
}

/* --- the list table, mapped like libstopgate's reader does --------------------------------- */

int dp_lists_open(dp_ctx *c, const char *shm_name, char *err, size_t errcap) {
    snprintf(c->shm_path, sizeof c->shm_path, "/dev/shm/%s", shm_name);
    int rc = sgl_map_open(c->shm_path, &c->map);
    if (rc != 0) {
        snprintf(err, errcap, "cannot map the list table %s: %s", c->shm_path, strerror(-rc));
        return -1;
    }
    return 0;
}

void dp_lists_close(dp_ctx *c) { sgl_map_close(&c->map); }

/* The gateway republished the table (bulk load, compaction): follow it, as libstopgate's
 * reader does. Until the new file maps, answers come from the old one: stale, never torn. */
static void follow_lists(dp_ctx *c) {
    if (!atomic_load_explicit(&c->map.h->superseded, memory_order_acquire)) return;
    sgl_map fresh;
    if (sgl_map_open(c->shm_path, &fresh) != 0) return;
    if (atomic_load_explicit(&fresh.h->superseded, memory_order_acquire)) {
        sgl_map_close(&fresh);
        return;
    }
    sgl_map_close(&c->map);
    c->map = fresh;
}

/* --- agent snapshots -------------------------------------------------------------------- */

static dp_agent *find_agent(dp_snap *s, uint32_t id) {
    uint32_t lo = 0, hi = s->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (s->v[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < s->n && s->v[lo].id == id ? &s->v[lo] : NULL;
}

void dp_snap_publish(dp_ctx *c, dp_snap *s) {
    dp_snap_collect(c);
    free(atomic_exchange_explicit(&c->next_snap, s, memory_order_acq_rel)); /* one never taken */
}

void dp_snap_collect(dp_ctx *c) { free(atomic_exchange_explicit(&c->retired, NULL, memory_order_acq_rel)); }

static void take_snap(dp_ctx *c) {
    if (!atomic_load_explicit(&c->next_snap, memory_order_relaxed)) return;
    dp_snap *s = atomic_exchange_explicit(&c->next_snap, NULL, memory_order_acq_rel);
    if (!s) return;
    dp_snap *old = c->snap;
    /* Replay windows stay with their agents: a reload must not reopen them. */
    for (uint32_t i = 0; old && i < s->n; i++) {
        dp_agent *o = find_agent(old, s->v[i].id);
        if (o) s->v[i].replay = o->replay;
    }
    c->snap = s;
    free(atomic_exchange_explicit(&c->retired, old, memory_order_acq_rel)); /* rare: two reloads in a row */
}

/* --- packets ---------------------------------------------------------------------------- */

static inline uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

void dp_tx_flush(dp_ctx *c) {
    unsigned n = c->ntx, sent = 0;
    if (n == 0) return;
    for (int t = 0; t < DP_TX_RETRIES && sent < n; t++)
        sent += rte_eth_tx_burst(c->port, c->queue, c->tx + sent, (uint16_t)(n - sent));
    uint64_t frames = 0;
    for (unsigned i = 0; i < sent; i++) frames += c->tx_frame[i];
    dp_count(c, DP_C_TX_PKTS, sent);
    if (frames) dp_count(c, DP_C_TX_FRAMES, frames);
    if (sent < n) {
        dp_count(c, DP_C_TX_DROPPED, n - sent);
        rte_pktmbuf_free_bulk(c->tx + sent, n - sent);
    }
    c->ntx = 0;
}

static inline void tx_push(dp_ctx *c, struct rte_mbuf *m, bool frame) {
    if (c->ntx == DP_TX_BATCH) dp_tx_flush(c);
    c->tx[c->ntx] = m;
    c->tx_frame[c->ntx++] = frame;
}

/* Ethernet and IPv4 headers to the peer at p; the IPv4 payload (l4 bytes) follows. */
static void put_eth_ip(dp_ctx *c, uint8_t *p, const struct rte_ether_addr *peer_mac, rte_be32_t peer_ip,
                       size_t l4, uint16_t id, uint16_t frag) {
    memcpy(p, peer_mac, 6);
    memcpy(p + 6, &c->mac, 6);
    uint16_t et = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    memcpy(p + 12, &et, 2);
    struct rte_ipv4_hdr ip;
    memset(&ip, 0, sizeof ip);
    ip.version_ihl = RTE_IPV4_VHL_DEF;
    ip.total_length = rte_cpu_to_be_16((uint16_t)(IP_LEN + l4));
    ip.packet_id = rte_cpu_to_be_16(id);
    ip.fragment_offset = rte_cpu_to_be_16(frag);
    ip.time_to_live = 64;
    ip.next_proto_id = IPPROTO_UDP;
    ip.src_addr = c->ip;
    ip.dst_addr = peer_ip;
    ip.hdr_checksum = rte_ipv4_cksum(&ip);
    memcpy(p + ETH_LEN, &ip, IP_LEN);
}

static void set_len(struct rte_mbuf *m, size_t total) {
    m->data_len = (uint16_t)total;
    m->pkt_len = (uint32_t)total;
    m->ol_flags = 0;
    m->packet_type = 0;
}

int dp_send_udp(dp_ctx *c, struct rte_mbuf *m, const struct rte_ether_addr *peer_mac, rte_be32_t peer_ip,
                rte_be16_t peer_port, const uint8_t *payload, size_t n) {
    if (!m && !(m = rte_pktmbuf_alloc(c->pool))) goto fail;
    /* The mbuf may be the request's (a single segment of DP_MBUF_DATA): start it afresh. */
    if (m->nb_segs != 1) {
        rte_pktmbuf_free(m);
        if (!(m = rte_pktmbuf_alloc(c->pool))) goto fail;
    }
    m->data_off = RTE_PKTMBUF_HEADROOM;
    struct rte_udp_hdr u = {.src_port = c->udp_port, .dst_port = peer_port,
                            .dgram_len = rte_cpu_to_be_16((uint16_t)(UDP_LEN + n)),
                            .dgram_cksum = 0}; /* none: the frame's MAC protects what matters */
    if (IP_LEN + UDP_LEN + n <= c->mtu) {
        uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
        put_eth_ip(c, p, peer_mac, peer_ip, UDP_LEN + n, c->ip_id++, 0);
        memcpy(p + ETH_LEN + IP_LEN, &u, UDP_LEN);
        if (payload != p + HDRS_LEN) memcpy(p + HDRS_LEN, payload, n); /* else written in place */
        set_len(m, HDRS_LEN + n);
        tx_push(c, m, true);
        return 0;
    }
    /* Larger than the link carries: IPv4 fragments (the peer's kernel reassembles them). */
    size_t l4n = UDP_LEN + n, chunk = (c->mtu - IP_LEN) & ~(size_t)7;
    unsigned nf = (unsigned)((l4n + chunk - 1) / chunk);
    if (chunk < 8 || nf > DP_FRAGS_MAX) {
        rte_pktmbuf_free(m);
        goto fail;
    }
    struct rte_mbuf *fr[DP_FRAGS_MAX];
    fr[0] = m;
    if (nf > 1 && rte_pktmbuf_alloc_bulk(c->pool, fr + 1, nf - 1) != 0) {
        rte_pktmbuf_free(m);
        goto fail;
    }
    memcpy(c->l4, &u, UDP_LEN);
    memcpy(c->l4 + UDP_LEN, payload, n);
    uint16_t id = c->ip_id++;
    for (unsigned k = 0; k < nf; k++) {
        size_t off = k * chunk, len = l4n - off < chunk ? l4n - off : chunk;
        uint16_t frag = (uint16_t)(off / 8) | (k + 1 < nf ? RTE_IPV4_HDR_MF_FLAG : 0);
        fr[k]->data_off = RTE_PKTMBUF_HEADROOM;
        uint8_t *p = rte_pktmbuf_mtod(fr[k], uint8_t *);
        put_eth_ip(c, p, peer_mac, peer_ip, len, id, frag);
        memcpy(p + ETH_LEN + IP_LEN, c->l4 + off, len);
        set_len(fr[k], ETH_LEN + IP_LEN + len);
        tx_push(c, fr[k], k == 0);
    }
    dp_count(c, DP_C_FRAGMENTED, 1);
    return 0;
fail:
    dp_count(c, DP_C_TX_DROPPED, 1);
    return -1;
}

/* ARP request for our address -> reply, in place. */
static void on_arp(dp_ctx *c, struct rte_mbuf *m, uint8_t *p, uint32_t len) {
    uint8_t *a = p + ETH_LEN;
    if (len < ETH_LEN + ARP_LEN || rd16(a) != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
        rd16(a + 2) != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) || a[4] != 6 || a[5] != 4 ||
        rd16(a + 6) != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) || rd32(a + 24) != c->ip) {
        dp_count(c, DP_C_IGN_OTHER, 1);
        rte_pktmbuf_free(m);
        return;
    }
    uint8_t sha[6], spa[4];
    memcpy(sha, a + 8, 6);
    memcpy(spa, a + 14, 4);
    uint16_t op = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
    memcpy(a + 6, &op, 2);
    memcpy(a + 8, &c->mac, 6); /* sender: us */
    memcpy(a + 14, &c->ip, 4);
    memcpy(a + 18, sha, 6); /* target: the asker */
    memcpy(a + 24, spa, 4);
    memcpy(p, sha, 6);
    memcpy(p + 6, &c->mac, 6);
    dp_count(c, DP_C_ARP, 1);
    tx_push(c, m, false);
}

/* ICMP echo request to us -> echo reply, in place (when it fits the link unfragmented). */
static void on_icmp(dp_ctx *c, struct rte_mbuf *m, uint8_t *p, uint8_t *ip, uint32_t hl, uint32_t ip_total) {
    uint8_t *icmp = ip + hl;
    uint32_t n = ip_total - hl;
    if (n < 8 || icmp[0] != RTE_IP_ICMP_ECHO_REQUEST || icmp[1] != 0 || ip_total > c->mtu) {
        dp_count(c, DP_C_IGN_OTHER, 1);
        rte_pktmbuf_free(m);
        return;
    }
    icmp[0] = RTE_IP_ICMP_ECHO_REPLY;
    memset(icmp + 2, 0, 2);
    uint16_t ck = (uint16_t)~rte_raw_cksum(icmp, n);
    memcpy(icmp + 2, &ck, 2);
    uint8_t src[4];
    memcpy(src, ip + 12, 4);
    memcpy(ip + 12, &c->ip, 4);
    memcpy(ip + 16, src, 4);
    ip[8] = 64;            /* TTL */
    memset(ip + 6, 0, 2);  /* flags and offset (a reassembled request) */
    uint16_t tl = rte_cpu_to_be_16((uint16_t)ip_total);
    memcpy(ip + 2, &tl, 2);
    memset(ip + 10, 0, 2); /* header checksum */
    ck = (uint16_t)~rte_raw_cksum(ip, hl);
    memcpy(ip + 10, &ck, 2);
    memcpy(p, p + 6, 6);
    memcpy(p + 6, &c->mac, 6);
    set_len(m, ETH_LEN + ip_total);
    dp_count(c, DP_C_ICMP, 1);
    tx_push(c, m, false);
}

static void drop(dp_ctx *c, int why) { dp_count(c, DP_C_DROP + why, 1); }

/* Copy a datagram (or an auto_stop hit) for the order side. false when there is no room. */
static bool hand_over(dp_ctx *c, const dp_msg *tmpl, const uint8_t *d, size_t len) {
    void *obj;
    if (rte_mempool_get(c->msgs, &obj) != 0) return false;
    dp_msg *msg = obj;
    memcpy(msg, tmpl, offsetof(dp_msg, buf));
    if (len) memcpy(msg->buf, d, len);
    msg->len = (uint32_t)len;
    if (rte_ring_sp_enqueue(c->to_order, msg) != 0) {
        rte_mempool_put(c->msgs, msg);
        return false;
    }
    c->handed = true;
    dp_count(c, msg->kind == DP_MSG_AUTO ? DP_C_AUTO : DP_C_TO_ORDER, 1);
    return true;
}

/* A CHECK hit on an auto_stop list: the order side issues the STOP (engine_auto_stop, once per
 * account). Sent at most once per DP_AUTO_QUIET_MS per account from here. */
static void auto_stop(dp_ctx *c, uint32_t i) {
    uint64_t h = c->hashes[i];
    uint32_t slot = (uint32_t)(h % DP_AUTO_RECENT);
    uint64_t quiet = c->tsc_hz / 1000 * DP_AUTO_QUIET_MS;
    if (c->auto_recent[slot].hash == h && c->now_tsc - c->auto_recent[slot].tsc < quiet) return;
    dp_msg t = {.kind = DP_MSG_AUTO, .key = c->keys[i]};
    if (hand_over(c, &t, NULL, 0)) {
        c->auto_recent[slot].hash = h;
        c->auto_recent[slot].tsc = c->now_tsc;
    }
}

/* The CHECK lookups of a frame, in passes so the cache misses of different lookups overlap
 * (as sg_lists_check_many does): answer() hashed every key and prefetched its tag line while
 * parsing; here every tag chain is walked to its first candidate, whose slot is prefetched;
 * then the slots are compared. */
static void lookup_all(dp_ctx *c, uint32_t n) {
    const sgl_map *mp = &c->map;
    for (uint32_t i = 0; i < n; i++) {
        if (!c->ok[i]) continue;
        c->cand[i] = sgl_tag_next(mp, sgl_fp(c->hashes[i]), &c->pos[i], &c->probes[i]);
        if (c->cand[i] >= 0) __builtin_prefetch(&mp->slots[c->cand[i]]);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!c->ok[i]) continue;
        memset(&c->v[i], 0, sizeof c->v[i]);
        if (c->cand[i] < 0) continue;
        int r = sgl_slot_match(mp, (uint64_t)c->cand[i], &c->keys[i], c->now_s, &c->v[i]);
        if (r == 0) { /* a fingerprint collision: walk on */
            uint8_t fp = sgl_fp(c->hashes[i]);
            int64_t idx;
            while ((idx = sgl_tag_next(mp, fp, &c->pos[i], &c->probes[i])) >= 0)
                if ((r = sgl_slot_match(mp, (uint64_t)idx, &c->keys[i], c->now_s, &c->v[i])) != 0) break;
        }
        if (r < 0) memset(&c->v[i], 0, sizeof c->v[i]); /* a slot a dead writer left locked: CLEAR, as the gateway's own lookup */
    }
}

enum { ANSWERED, TO_ORDER };

/* The messages of an authenticated frame: answered into out (*outlen), or TO_ORDER when one
 * is a STOP (the order side answers the whole frame). Same replies as udp_answer() except
 * FROZEN: from the table's frozen bit, order_no 0. out may overlap the request: every message
 * is parsed (and its key packed) before the first reply byte is written. */
static int answer(dp_ctx *c, const dp_agent *ag, const uint8_t *d, size_t len, const sg_frame_hdr *h, uint8_t *out,
                  size_t cap, size_t *outlen) {
    sg_frame_reader rd;
    sg_frame_read_begin(&rd, d, len, h);
    uint32_t n = 0;
    int rc = 0;
    const sgl_map *mp = &c->map;
    while (n < SG_FRAME_MSGS_MAX && (rc = sg_frame_next_msg(&rd, &c->m[n])) == 1) {
        const sg_msg *m = &c->m[n];
        if (m->type == SG_MSG_STOP) return TO_ORDER;
        c->ok[n] = m->type == SG_MSG_CHECK && ag->can_check &&
                   sgl_pack(m->bank, m->bank_len, m->account, m->account_len, &c->keys[n]) == 0;
        if (c->ok[n]) { /* its tag line is on its way while the rest of the frame is parsed */
            c->hashes[n] = sgl_hash(&c->keys[n]);
            c->pos[n] = c->hashes[n] & mp->mask;
            c->probes[n] = 0;
            __builtin_prefetch((const void *)&mp->tags[c->pos[n]]);
        }
        n++;
    }
    if (n == SG_FRAME_MSGS_MAX) rc = sg_frame_next_msg(&rd, &c->m[0]) == 0 ? 0 : -EBADMSG; /* count <= 256 */
    lookup_all(c, n);
    sg_frame_writer w;
    sg_frame_hdr rh = {.flags = SG_FRAME_REPLY, .agent_id = h->agent_id, .seq = h->seq, .epoch = c->epoch};
    sg_frame_begin(&w, out, cap, &rh);
    uint64_t checks = 0, hits = 0, errors = 0, pings = 0;
    for (uint32_t i = 0; i < n; i++) {
        const sg_msg *m = &c->m[i];
        sg_reply r = {.type = (uint8_t)(m->type | 0x80)};
        switch (m->type) {
        case SG_MSG_CHECK:
            checks++;
            if (!ag->can_check) {
                r.err = SG_FE_NOPERM;
            } else if (sgl_stale(&c->map)) {
                r.err = SG_FE_STALE; /* the writer's lists are not current (the loop sets the flag) */
            } else if (!c->ok[i]) {
                r.err = SG_FE_BADACCOUNT;
            } else {
                const sg_verdict *v = &c->v[i];
                r.code = v->frozen ? SG_V_FROZEN : v->mask ? SG_V_LISTED : SG_V_CLEAR;
                r.score = v->score;
                r.mask = v->mask;
                r.order_no = 0; /* this path knows that an order is live, not which one */
                if (v->frozen || v->mask) hits++;
                if ((v->mask & c->snap->auto_stop_mask) && !v->frozen) auto_stop(c, i);
            }
            break;
        case SG_MSG_PING: pings++; break;
        default: r.err = SG_FE_SYNTAX; break;
        }
        if (r.err) errors++;
        sg_frame_add_reply(&w, &r);
    }
    if (rc < 0) {
        dp_count(c, DP_C_MALFORMED_MSGS, 1);
        uint16_t st = SG_FE_SYNTAX;
        if (!w.overflow) memcpy(out + 24, &st, sizeof st); /* the header's status field */
    }
    dp_count(c, DP_C_CHECKS, checks);
    if (hits) dp_count(c, DP_C_CHECK_HITS, hits);
    if (errors) dp_count(c, DP_C_MSG_ERRORS, errors);
    if (pings) dp_count(c, DP_C_PINGS, pings);
    *outlen = sg_frame_finish(&w, NULL);
    if (*outlen) udp_mac_sign(&ag->mac, out, *outlen);
    return ANSWERED;
}

/* A datagram to our ip:port (m is its packet, freed or reused for the reply). */
static void on_frame(dp_ctx *c, struct rte_mbuf *m, const struct rte_ether_addr *peer_mac, rte_be32_t peer_ip,
                     rte_be16_t peer_port, const uint8_t *d, size_t len) {
    dp_count(c, DP_C_RX_FRAMES, 1);
    sg_frame_hdr h;
    size_t n = 0;
    int why = -1;
    dp_agent *ag = NULL;
    if (udp_frame_header(d, len, &h) != 0) {
        why = UDP_DROP_MALFORMED;
        goto dropped;
    }
    /* The reply goes where dp_send_udp() puts a datagram's payload in this mbuf, written
     * straight there (no copy) when it answers messages. */
    uint8_t *out = (uint8_t *)m->buf_addr + RTE_PKTMBUF_HEADROOM + HDRS_LEN;
    size_t cap = (size_t)m->buf_len - RTE_PKTMBUF_HEADROOM - HDRS_LEN;
    if (!(ag = find_agent(c->snap, h.agent_id))) {
        if (!udp_frame_is_hello(d, len, &h)) {
            why = UDP_DROP_UNKNOWN_AGENT;
            goto dropped;
        }
        /* Answered like a known agent's, with a stable fake salt (docs/protocol.md). */
        auth_hash fh;
        auth_fake_udp_hash(c->snap->pepper, h.agent_id, &fh);
        n = udp_hello_reply(c->scratch, sizeof c->scratch, &h, c->epoch, fh.opslimit, fh.memlimit, fh.salt);
        dp_count(c, DP_C_HELLOS, 1);
        out = c->scratch;
        goto reply;
    }
    switch (udp_frame_auth(d, len, &h, &ag->mac, &ag->replay, c->epoch)) {
    case UDP_AUTH_BAD_MAC: why = UDP_DROP_BAD_MAC; goto dropped;
    case UDP_AUTH_REPLAY: why = UDP_DROP_REPLAY; goto dropped;
    case UDP_AUTH_HELLO:
        n = udp_hello_reply(c->scratch, sizeof c->scratch, &h, c->epoch, ag->opslimit, ag->memlimit, ag->salt);
        dp_count(c, DP_C_HELLOS, 1);
        out = c->scratch;
        break;
    case UDP_AUTH_EPOCH:
        n = udp_status_reply(c->scratch, sizeof c->scratch, &h, c->epoch, SG_FE_EPOCH, ag->key);
        dp_count(c, DP_C_EPOCH, 1);
        out = c->scratch;
        break;
    default:
        if (cap > SG_FRAME_BYTES_MAX) cap = SG_FRAME_BYTES_MAX;
        if (m->nb_segs != 1 || cap < SG_FRAME_HDR_BYTES + SG_FRAME_MAC_BYTES) {
            out = c->scratch;
            cap = sizeof c->scratch;
        }
        if (answer(c, ag, d, len, &h, out, cap, &n) == TO_ORDER) {
            dp_msg t = {.kind = DP_MSG_FRAME, .peer_mac = *peer_mac, .peer_ip = peer_ip, .peer_port = peer_port};
            if (!hand_over(c, &t, d, len)) drop(c, UDP_DROP_NO_BUFFER); /* the client retries, same request id */
            rte_pktmbuf_free(m);
            return;
        }
        break;
    }
reply:
    if (n == 0) { /* cannot happen: a reply is never larger than its request allows */
        why = UDP_DROP_NO_BUFFER;
        goto dropped;
    }
    struct rte_ether_addr mac = *peer_mac; /* the headers are about to be overwritten */
    dp_send_udp(c, m, &mac, peer_ip, peer_port, out, n);
    return;
dropped:
    drop(c, why);
    rte_pktmbuf_free(m);
}

static void handle(dp_ctx *c, struct rte_mbuf *m, bool reassembled) {
    if (m->nb_segs != 1 && rte_pktmbuf_linearize(m) != 0) { /* cannot happen with DP_MBUF_DATA */
        dp_count(c, DP_C_IGN_OTHER, 1);
        rte_pktmbuf_free(m);
        return;
    }
    uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
    uint32_t len = m->data_len;
    if (len < ETH_LEN) goto other;
    uint16_t et = rd16(p + 12);
    if (et == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
        on_arp(c, m, p, len);
        return;
    }
    if (et != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) || len < ETH_LEN + IP_LEN) goto other;
    uint8_t *ip = p + ETH_LEN;
    uint32_t hl = (ip[0] & 0xfu) * 4u, total = rte_be_to_cpu_16(rd16(ip + 2));
    if ((ip[0] >> 4) != 4 || hl < IP_LEN || total < hl || total > len - ETH_LEN) goto bad_ip;
    if (rd32(ip + 16) != c->ip) {
        dp_count(c, DP_C_IGN_NOT_OURS, 1);
        rte_pktmbuf_free(m);
        return;
    }
    if (!reassembled) { /* (reassembly rewrote the header; each fragment's was checked) */
        if (rte_raw_cksum(ip, hl) != 0xffff) goto bad_ip;
        if (rte_ipv4_frag_pkt_is_fragmented((const struct rte_ipv4_hdr *)ip)) {
            m->l2_len = ETH_LEN;
            m->l3_len = hl;
            struct rte_mbuf *whole =
                rte_ipv4_frag_reassemble_packet(c->frag_tbl, &c->death_row, m, c->now_tsc, (struct rte_ipv4_hdr *)ip);
            if (!whole) return; /* kept until its other fragments come (or dropped by the table) */
            dp_count(c, DP_C_REASSEMBLED, 1);
            handle(c, whole, true);
            return;
        }
    }
    if (ip[9] == IPPROTO_ICMP) {
        on_icmp(c, m, p, ip, hl, total);
        return;
    }
    if (ip[9] != IPPROTO_UDP || total < hl + UDP_LEN) goto other;
    uint8_t *udp = ip + hl;
    uint32_t ulen = rte_be_to_cpu_16(rd16(udp + 4));
    if (ulen < UDP_LEN || ulen > total - hl) goto bad_ip;
    if (rd16(udp + 2) != c->udp_port) {
        dp_count(c, DP_C_IGN_NOT_OURS, 1);
        rte_pktmbuf_free(m);
        return;
    }
    struct rte_ether_addr peer_mac;
    memcpy(&peer_mac, p + 6, 6);
    on_frame(c, m, &peer_mac, rd32(ip + 12), rd16(udp), udp + UDP_LEN, ulen - UDP_LEN);
    return;
bad_ip:
    dp_count(c, DP_C_IGN_BAD_IP, 1);
    rte_pktmbuf_free(m);
    return;
other:
    dp_count(c, DP_C_IGN_OTHER, 1);
    rte_pktmbuf_free(m);
}

void dp_handle(dp_ctx *c, struct rte_mbuf *m) { handle(c, m, false); }

/* --- the lcore -------------------------------------------------------------------------- */

unsigned dp_poll(dp_ctx *c) {
    take_snap(c);
    follow_lists(c);
    /* Replies of the order side (durable STOPs). */
    void *objs[DP_BURST];
    unsigned k = rte_ring_sc_dequeue_burst(c->to_lcore, objs, DP_BURST, NULL);
    for (unsigned i = 0; i < k; i++) {
        dp_msg *msg = objs[i];
        dp_send_udp(c, NULL, &msg->peer_mac, msg->peer_ip, msg->peer_port, msg->buf, msg->len);
        rte_mempool_put(c->msgs, msg);
    }
    if (k) dp_count(c, DP_C_FROM_ORDER, k);
    struct rte_mbuf *rx[DP_BURST];
    unsigned n = rte_eth_rx_burst(c->port, c->queue, rx, DP_BURST);
    if (n) {
        c->now_s = sgl_now_s();
        c->now_tsc = rte_rdtsc();
        dp_count(c, DP_C_RX_PKTS, n);
    }
    for (unsigned i = 0; i < n; i++) {
        if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(rx[i + 1], void *));
        handle(c, rx[i], false);
    }
    if (n) rte_ip_frag_free_death_row(&c->death_row, 3);
    if (c->handed) {
        c->handed = false;
        if (c->wake_fd >= 0) {
            uint64_t one = 1;
            ssize_t wr = write(c->wake_fd, &one, sizeof one); /* the order side's eventfd */
            (void)wr;
        }
    }
    dp_tx_flush(c);
    return n + k;
}

int dp_lcore_main(void *arg) {
    dp_ctx *c = arg;
    prctl(PR_SET_TIMERSLACK, 1000UL); /* naps of DP_IDLE_NAP_NS, not the default 50 us slack */
    unsigned idle = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
        if (dp_poll(c)) {
            idle = 0;
        } else if (++idle > DP_IDLE_SPINS) {
            struct timespec ts = {0, DP_IDLE_NAP_NS};
            nanosleep(&ts, NULL);
        } else {
            rte_pause();
        }
    }
    /* The order side stopped handing replies over before it set stop: send the last ones. */
    for (int i = 0; i < 256 && rte_ring_count(c->to_lcore) > 0; i++) dp_poll(c);
    return 0;
}
