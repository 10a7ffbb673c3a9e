/*
 * dpdk: the DPDK fast path's set-up and its order side (docs/protocol.md "DPDK"; the data
 * path the worker lcore runs is dpdk_path.c).
 *
 * Start ([dpdk] enabled = yes, after udp_init): the EAL from [dpdk] eal (split on blanks;
 * --in-memory and a per-process --file-prefix are added when absent, so nothing is left in
 * /var/run/dpdk or in hugepage files), the first port with one rx and one tx queue, an mbuf
 * pool, a dp_msg pool and two rings, the lcore's agent snapshot and its mapping of the list
 * table, a fresh epoch, then the worker: the second lcore when the EAL has one, else a
 * pthread registered with DPDK.
 *
 * Order side (this thread, the io_uring loop): the lcore hands frames holding a STOP (and
 * CHECK hits on auto_stop lists) over through the `to_order` ring and an eventfd whose read
 * is armed on the loop. Each frame is answered by udp_answer(), the same code as kernel UDP
 * (engine, idempotency, NOPERM, BUSY while draining); the reply waits in a FIFO until its
 * lsn is durable and then goes back to the lcore through the `to_lcore` ring.
 *
 * Stop: the lcore ends its loop (sending the last replies), the port is stopped and closed
 * (a TAP interface disappears), pools and rings are freed, rte_eal_cleanup(), and the EAL's
 * runtime directory is removed.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dpdk_path.h" /* every DPDK header (see there) */
#include "ring.h"

/* EAL_ARGS_MAX, DPDK_ORDER_DRAIN_MAX: limits.h */

struct dpdk_state {
    dp_ctx *c;
    uint16_t port;
    bool eal_up, port_started, launched, threaded, stopping;
    unsigned worker;
    pthread_t thr;
    int efd;
    uint64_t efd_val; /* the armed read's buffer: lives as long as the process */
    char *eal_buf;    /* the EAL's argument strings */
    char runtime_dir[512];
    bool own_prefix;
    dp_msg *wait_head, *wait_tail; /* replies waiting for durability, in lsn order */
    uint32_t nwait;
    udp_msg_counts mc;                 /* messages answered here */
    uint64_t drops[UDP_DROP__COUNT];   /* frames dropped here */
    uint64_t lost, auto_msgs;          /* replies the ring refused, auto_stop hits */
    uint8_t out[SG_FRAME_BYTES_MAX];
};

/* --- agents ---------------------------------------------------------------------------- */

static int cmp_dp_agent(const void *a, const void *b) {
    uint32_t x = ((const dp_agent *)a)->id, y = ((const dp_agent *)b)->id;
    return x < y ? -1 : x > y;
}

static dp_snap *build_snap(gateway *gw) {
    uint32_t n = gw->cfg.nagents;
    dp_snap *s = calloc(1, sizeof *s + (size_t)n * sizeof(dp_agent));
    if (!s) return NULL;
    s->auto_stop_mask = gw->ls.auto_stop_mask;
    memcpy(s->pepper, gw->login.pepper, sizeof s->pepper);
    s->n = n;
    for (uint32_t i = 0; i < n; i++) {
        dp_agent *a = &s->v[i];
        const auth_hash *ah = &gw->agent_auth[i];
        a->id = sg_frame_agent_id(gw->cfg.agents[i].name);
        a->can_check = (role_perms(gw->cfg.agents[i].role) & PERM_CHECK) != 0;
        sg_frame_key(ah->key, a->key);
        udp_mac_init(&a->mac, a->key);
        a->opslimit = ah->opslimit;
        a->memlimit = ah->memlimit;
        memcpy(a->salt, ah->salt, sizeof a->salt);
    }
    qsort(s->v, n, sizeof s->v[0], cmp_dp_agent);
    return s;
}

void dpdk_agents_changed(gateway *gw) {
    struct dpdk_state *d = gw->dpdk;
    if (!d || !d->c) return;
    char err[512];
    /* The order side finds agents in gw->udp.agents; reload.c rebuilds it when kernel UDP
     * runs, this does when only DPDK does. */
    if (gw->udp.fd < 0 && udp_agents_build(gw, err, sizeof err) != 0) LOGE(gw, "dpdk: agents not updated: %s", err);
    dp_snap *s = build_snap(gw);
    if (!s) {
        LOGE(gw, "dpdk: out of memory for the agent snapshot; the lcore keeps the previous one");
        return;
    }
    dp_snap_publish(d->c, s);
}

/* --- the order side --------------------------------------------------------------------- */

static void arm(gateway *gw) {
    struct dpdk_state *d = gw->dpdk;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_read(sqe, d->efd, &d->efd_val, sizeof d->efd_val, 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_DPDK, 0, 0));
}

static void release(struct dpdk_state *d, dp_msg *msg) { rte_mempool_put(d->c->msgs, msg); }

static void to_lcore(struct dpdk_state *d, dp_msg *msg) {
    if (rte_ring_sp_enqueue(d->c->to_lcore, msg) != 0) { /* cannot happen: the ring holds every dp_msg */
        d->lost++;
        release(d, msg);
    }
}

static void order_frame(gateway *gw, struct dpdk_state *d, dp_msg *msg) {
    dp_ctx *c = d->c;
    sg_frame_hdr h;
    if (udp_frame_header(msg->buf, msg->len, &h) != 0) {
        d->drops[UDP_DROP_MALFORMED]++;
        release(d, msg);
        return;
    }
    udp_agent *ag = udp_agent_find(gw->udp.agents, gw->udp.nagents, h.agent_id);
    if (!ag) { /* removed by a reload since the lcore authenticated the frame */
        d->drops[UDP_DROP_UNKNOWN_AGENT]++;
        release(d, msg);
        return;
    }
    uint64_t lsn = 0;
    size_t n = udp_answer(gw, &gw->cfg.agents[ag->agent], ag->key, msg->buf, msg->len, &h, c->epoch, d->out,
                          sizeof d->out, &lsn, &d->mc);
    if (n == 0) {
        d->drops[UDP_DROP_NO_BUFFER]++;
        release(d, msg);
        return;
    }
    memcpy(msg->buf, d->out, n);
    msg->len = (uint32_t)n;
    msg->lsn = lsn;
    msg->next = NULL;
    if (lsn > commit_acked_lsn(&gw->commit)) {
        /* An order is answered only once durable. */
        if (d->wait_tail) d->wait_tail->next = msg;
        else d->wait_head = msg;
        d->wait_tail = msg;
        d->nwait++;
        return;
    }
    to_lcore(d, msg);
}

static void order_auto(gateway *gw, struct dpdk_state *d, dp_msg *msg) {
    char bank[SGL_BANK_SYMS + 1], acct[SGL_ACCOUNT_SYMS + 1];
    sgl_unpack(&msg->key, bank, acct);
    release(d, msg);
    /* Judged again here, as the kernel path's CHECK does: the engine's own rules (protected,
     * once per account) decide. */
    sg_verdict v;
    lists_lookup(gw, bank, acct, &v);
    v.frozen = orders_live_on_account(&gw->o, bank, acct, gw->now_ms) != NULL;
    d->auto_msgs++;
    engine_auto_stop(gw, bank, acct, &v);
}

static void drain(gateway *gw, struct dpdk_state *d) {
    void *objs[64];
    unsigned total = 0, n;
    while (total < DPDK_ORDER_DRAIN_MAX && (n = rte_ring_sc_dequeue_burst(d->c->to_order, objs, 64, NULL)) > 0) {
        for (unsigned i = 0; i < n; i++) {
            dp_msg *msg = objs[i];
            if (msg->kind == DP_MSG_AUTO) order_auto(gw, d, msg);
            else order_frame(gw, d, msg);
        }
        total += n;
    }
    if (!rte_ring_empty(d->c->to_order)) { /* more than one turn's worth: come back after the loop turns */
        uint64_t one = 1;
        ssize_t wr = write(d->efd, &one, sizeof one);
        (void)wr;
    }
}

void dpdk_on_cqe(gateway *gw, int res) {
    struct dpdk_state *d = gw->dpdk;
    if (!d || d->stopping) return;
    if (res < 0 && res != -EINTR && res != -EAGAIN) LOGW(gw, "dpdk: eventfd read: %s", strerror(-res));
    drain(gw, d);
    arm(gw);
}

void dpdk_on_durable(gateway *gw, uint64_t durable_lsn) {
    struct dpdk_state *d = gw->dpdk;
    if (!d) return;
    while (d->wait_head && d->wait_head->lsn <= durable_lsn) {
        dp_msg *msg = d->wait_head;
        d->wait_head = msg->next;
        if (!d->wait_head) d->wait_tail = NULL;
        d->nwait--;
        to_lcore(d, msg);
    }
}

void dpdk_on_journal_failed(gateway *gw) {
    struct dpdk_state *d = gw->dpdk;
    if (!d) return;
    while (d->wait_head) {
        dp_msg *msg = d->wait_head;
        d->wait_head = msg->next;
        if (!d->wait_head) d->wait_tail = NULL;
        d->nwait--;
        sg_frame_hdr h;
        const udp_agent *ag = sg_frame_parse_hdr(msg->buf, msg->len, &h) == 0
                                  ? udp_agent_find(gw->udp.agents, gw->udp.nagents, h.agent_id) : NULL;
        if (!ag) { /* removed by a reload meanwhile: no key to sign with */
            d->drops[UDP_DROP_UNKNOWN_AGENT]++;
            release(d, msg);
            continue;
        }
        d->mc.msg_errors += udp_reply_fail_pending(msg->buf, msg->len, commit_acked_lsn(&gw->commit), ag->key);
        to_lcore(d, msg);
    }
}

bool dpdk_drained(const gateway *gw) {
    const struct dpdk_state *d = gw->dpdk;
    return !d || !d->c || (d->wait_head == NULL && rte_ring_empty(d->c->to_order));
}

/* --- metrics ----------------------------------------------------------------------------- */

void dpdk_metrics(gateway *gw, prom_writer *w) {
    struct dpdk_state *d = gw->dpdk;
    prom_family(w, "stopgate_dpdk_up", PROM_GAUGE, "1 while the DPDK fast path runs.");
    prom_sample(w, NULL, NULL, d && d->c ? 1 : 0);
    if (!d || !d->c) return;
    dp_ctx *c = d->c;
#define C(i) dp_counter(c, (i))
    prom_family(w, "stopgate_dpdk_packets_total", PROM_COUNTER, "Packets received and sent on the DPDK port.");
    prom_sample(w, "dir", "rx", C(DP_C_RX_PKTS));
    prom_sample(w, "dir", "tx", C(DP_C_TX_PKTS));
    prom_family(w, "stopgate_dpdk_tx_dropped_total", PROM_COUNTER, "Packets the port did not take (tx ring full).");
    prom_sample(w, NULL, NULL, C(DP_C_TX_DROPPED) + d->lost);
    prom_family(w, "stopgate_dpdk_frames_total", PROM_COUNTER, "Frame datagrams received and replies sent.");
    prom_sample(w, "dir", "rx", C(DP_C_RX_FRAMES));
    prom_sample(w, "dir", "tx", C(DP_C_TX_FRAMES));
    prom_family(w, "stopgate_dpdk_dropped_total", PROM_COUNTER,
                "Frame datagrams dropped unanswered, by reason (as stopgate_udp_dropped_total).");
    for (int i = 0; i < UDP_DROP__COUNT; i++) prom_sample(w, "why", udp_drop_name(i), C(DP_C_DROP + i) + d->drops[i]);
    prom_family(w, "stopgate_dpdk_ignored_total", PROM_COUNTER, "Packets that were not for the fast path.");
    prom_sample(w, "why", "not_ours", C(DP_C_IGN_NOT_OURS));
    prom_sample(w, "why", "bad_ip", C(DP_C_IGN_BAD_IP));
    prom_sample(w, "why", "other", C(DP_C_IGN_OTHER));
    prom_family(w, "stopgate_dpdk_messages_total", PROM_COUNTER, "Frame messages handled on the fast path, by type.");
    prom_sample(w, "type", "check", C(DP_C_CHECKS) + d->mc.checks);
    prom_sample(w, "type", "stop", d->mc.stops);
    prom_sample(w, "type", "hello", C(DP_C_HELLOS));
    prom_sample(w, "type", "ping", C(DP_C_PINGS));
    prom_family(w, "stopgate_dpdk_check_hits_total", PROM_COUNTER, "CHECKs answered on the lcore that were LISTED or FROZEN.");
    prom_sample(w, NULL, NULL, C(DP_C_CHECK_HITS));
    prom_family(w, "stopgate_dpdk_errors_total", PROM_COUNTER, "Frame messages answered with an error, by reason.");
    prom_sample(w, "why", "message", C(DP_C_MSG_ERRORS) + d->mc.msg_errors);
    prom_sample(w, "why", "malformed_message", C(DP_C_MALFORMED_MSGS) + d->mc.malformed_msgs);
    prom_sample(w, "why", "epoch", C(DP_C_EPOCH));
    prom_family(w, "stopgate_dpdk_ip_fragmented_total", PROM_COUNTER,
                "Datagrams reassembled from IPv4 fragments (rx) and replies sent as fragments (tx).");
    prom_sample(w, "dir", "rx", C(DP_C_REASSEMBLED));
    prom_sample(w, "dir", "tx", C(DP_C_FRAGMENTED));
    prom_family(w, "stopgate_dpdk_arp_replies_total", PROM_COUNTER, "ARP requests for [dpdk] ip answered.");
    prom_sample(w, NULL, NULL, C(DP_C_ARP));
    prom_family(w, "stopgate_dpdk_icmp_echo_replies_total", PROM_COUNTER, "ICMP echo requests answered.");
    prom_sample(w, NULL, NULL, C(DP_C_ICMP));
    prom_family(w, "stopgate_dpdk_handoffs_total", PROM_COUNTER, "Datagrams between the lcore and the order side.");
    prom_sample(w, "dir", "to_order", C(DP_C_TO_ORDER));
    prom_sample(w, "dir", "from_order", C(DP_C_FROM_ORDER));
    prom_sample(w, "dir", "auto_stop", C(DP_C_AUTO));
    prom_family(w, "stopgate_dpdk_replies_waiting", PROM_GAUGE, "Fast-path STOP replies waiting for durability.");
    prom_sample(w, NULL, NULL, d->nwait);
    prom_family(w, "stopgate_dpdk_mtu", PROM_GAUGE, "The DPDK port's MTU.");
    prom_sample(w, NULL, NULL, c->mtu);
#undef C
}

/* --- start and stop ------------------------------------------------------------------------ */

static void *lcore_thread(void *arg) {
    dp_ctx *c = arg;
    pthread_setname_np(pthread_self(), "sg-dpdk");
    /* A DPDK lcore id gives the thread its mempool caches; without one it still works. */
    int reg = rte_thread_register();
    dp_lcore_main(c);
    if (reg == 0) rte_thread_unregister();
    return NULL;
}

/* Remove the EAL's runtime directory when it is ours (--file-prefix we chose). */
static void remove_runtime_dir(struct dpdk_state *d) {
    if (!d->runtime_dir[0]) return;
    if (d->own_prefix) {
        DIR *dir = opendir(d->runtime_dir);
        if (dir) {
            struct dirent *e;
            char path[1024];
            while ((e = readdir(dir)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                snprintf(path, sizeof path, "%s/%s", d->runtime_dir, e->d_name);
                unlink(path);
            }
            closedir(dir);
        }
    }
    rmdir(d->runtime_dir); /* fails, harmlessly, on a shared prefix still in use */
}

static void teardown(gateway *gw, struct dpdk_state *d) {
    d->stopping = true;
    dp_ctx *c = d->c;
    if (c) atomic_store_explicit(&c->stop, true, memory_order_release);
    if (d->launched) rte_eal_wait_lcore(d->worker);
    if (d->threaded) pthread_join(d->thr, NULL);
    d->launched = d->threaded = false;
    if (c) {
        LOGI(gw, "dpdk: stopped: %llu packets in, %llu out, %llu CHECKs on the lcore, %llu frames to the order side",
             (unsigned long long)dp_counter(c, DP_C_RX_PKTS), (unsigned long long)dp_counter(c, DP_C_TX_PKTS),
             (unsigned long long)dp_counter(c, DP_C_CHECKS), (unsigned long long)dp_counter(c, DP_C_TO_ORDER));
        if (d->port_started) {
            rte_eth_dev_stop(d->port);
            rte_eth_dev_close(d->port);
            d->port_started = false;
        }
        dp_lists_close(c);
        free(c->snap);
        free(atomic_exchange(&c->next_snap, NULL));
        dp_snap_collect(c);
        dp_resources_free(c);
        free(c);
        d->c = NULL;
        d->wait_head = d->wait_tail = NULL;
        d->nwait = 0;
    }
    if (d->eal_up) {
        rte_eal_cleanup();
        d->eal_up = false;
        remove_runtime_dir(d);
    }
    if (d->efd >= 0) close(d->efd); /* a read still armed is cancelled with the ring */
    d->efd = -1;
    free(d->eal_buf);
    d->eal_buf = NULL;
}

static int fail(gateway *gw, struct dpdk_state *d) {
    teardown(gw, d);
    gw->dpdk = NULL;
    return -1;
}

/* EAL arguments: [dpdk] eal split on blanks (into d->eal_buf, which argv points into), plus
 * --in-memory and a file prefix of our own unless the operator gave them. argv has room for
 * EAL_ARGS_MAX + 4 pointers. */
static int eal_args(const config *cfg, struct dpdk_state *d, char **argv, int *argcp, char *err,
                    size_t errcap) {
    int argc = 0;
    argv[argc++] = "stopgated";
    d->eal_buf = malloc(strlen(cfg->dpdk_eal) + 64);
    if (!d->eal_buf) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    strcpy(d->eal_buf, cfg->dpdk_eal);
    bool in_memory = false, no_huge = false, no_shconf = false, prefix = false;
    char *save = NULL;
    for (char *t = strtok_r(d->eal_buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (argc >= EAL_ARGS_MAX) {
            snprintf(err, errcap, "[dpdk] eal: more than %d arguments", EAL_ARGS_MAX);
            return -1;
        }
        argv[argc++] = t;
        if (!strcmp(t, "--in-memory")) in_memory = true;
        if (!strcmp(t, "--no-huge")) no_huge = true;
        if (!strcmp(t, "--no-shconf")) no_shconf = true;
        if (!strncmp(t, "--file-prefix", 13)) prefix = true;
    }
    /* Nothing shared on disk: --in-memory (no hugepage files, no shared config); the EAL
     * refuses it with --no-huge (legacy memory), which creates no hugepage files anyway, so
     * there --no-shconf keeps the config off disk. */
    static char in_mem_arg[] = "--in-memory", no_shconf_arg[] = "--no-shconf";
    static char prefix_arg[64];
    if (!in_memory && !no_huge) argv[argc++] = in_mem_arg;
    if (!in_memory && no_huge && !no_shconf) argv[argc++] = no_shconf_arg;
    if (!prefix) {
        snprintf(prefix_arg, sizeof prefix_arg, "--file-prefix=stopgate-%d", (int)getpid());
        argv[argc++] = prefix_arg;
        d->own_prefix = true;
    }
    assert(argc <= EAL_ARGS_MAX + 3);
    argv[argc] = NULL;
    *argcp = argc;
    return 0;
}

/* rte_eal_init on argv (which it may permute: it gets a copy); the runtime directory is
 * noted either way, so that a failed start leaves none behind. */
static int eal_start(gateway *gw, struct dpdk_state *d, char **argv, int argc, char *err,
                     size_t errcap) {
    char line[1400];
    size_t off = 0;
    for (int i = 1; i < argc && off < sizeof line; i++)
        off += (size_t)snprintf(line + off, sizeof line - off, "%s%s", i > 1 ? " " : "", argv[i]);
    LOGI(gw, "dpdk: starting the EAL: %s", line);
    rte_openlog_stream(gw->log.f);
    char *eal_argv[EAL_ARGS_MAX + 4];
    memcpy(eal_argv, argv, sizeof(char *) * (size_t)(argc + 1));
    if (rte_eal_init(argc, eal_argv) < 0) {
        snprintf(err, errcap, "rte_eal_init failed: %s (EAL arguments: %s)", rte_strerror(rte_errno), line);
        /* It may have made its runtime directory before it gave up. */
        const char *rd = rte_eal_get_runtime_dir();
        snprintf(d->runtime_dir, sizeof d->runtime_dir, "%s", rd ? rd : "");
        remove_runtime_dir(d); /* teardown removes it only for an EAL that came up */
        return -1;
    }
    d->eal_up = true;
    snprintf(d->runtime_dir, sizeof d->runtime_dir, "%s", rte_eal_get_runtime_dir());
    return 0;
}

/* The first port the EAL found; the others are left alone (and said so). */
static int first_port(gateway *gw, uint16_t *port, char *err, size_t errcap) {
    if (rte_eth_dev_count_avail() == 0) {
        snprintf(err, errcap, "no DPDK port: name one in [dpdk] eal (e.g. --vdev=net_tap0,iface=sgtap0) or bind a NIC");
        return -1;
    }
    uint16_t pid;
    *port = RTE_MAX_ETHPORTS;
    RTE_ETH_FOREACH_DEV(pid) {
        if (*port == RTE_MAX_ETHPORTS) *port = pid;
    }
    if (rte_eth_dev_count_avail() > 1) LOGW(gw, "dpdk: %u ports; using port %u only", rte_eth_dev_count_avail(), *port);
    return 0;
}

/* The lcore's context: pools and rings, the port with its queues, the list table's mapping,
 * the agents' snapshot, a fresh epoch and the eventfd the order side is woken through. */
static int ctx_create(gateway *gw, struct dpdk_state *d, uint16_t port, uint32_t ip, char *err,
                      size_t errcap) {
    dp_ctx *c = aligned_alloc(64, (sizeof(dp_ctx) + 63) / 64 * 64);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    memset(c, 0, sizeof *c);
    d->c = c;
    c->ip = ip;
    c->udp_port = rte_cpu_to_be_16(gw->cfg.dpdk_port);
    c->wake_fd = -1;
    if (dp_resources(c, "sg", err, errcap) != 0) return -1;
    if (dp_port_init(c, port, err, errcap) != 0) return -1;
    d->port = port;
    d->port_started = true;
    if (dp_lists_open(c, gw->cfg.shm_name, err, errcap) != 0) return -1;
    if (!gw->udp.agents && udp_agents_build(gw, err, errcap) != 0) return -1;
    c->snap = build_snap(gw);
    if (!c->snap) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    /* An epoch of its own: a frame signed for kernel UDP is refused here (and the reverse), so
     * neither transport's replay window can be sidestepped through the other. */
    do randombytes_buf(&c->epoch, sizeof c->epoch);
    while (c->epoch == 0 || c->epoch == gw->udp.epoch);
    d->efd = eventfd(0, EFD_CLOEXEC);
    if (d->efd < 0) {
        snprintf(err, errcap, "eventfd: %s", strerror(errno));
        return -1;
    }
    c->wake_fd = d->efd;
    return 0;
}

/* One lcore only (the main one is this loop's): poll from a thread of our own, kept off the
 * main lcore's CPU when there is another. */
static int polling_thread_start(struct dpdk_state *d, char *err, size_t errcap) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    cpu_set_t cs;
    CPU_ZERO(&cs);
    rte_cpuset_t mainset = rte_lcore_cpuset(rte_get_main_lcore());
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++)
        if (!CPU_ISSET((int)i, &mainset)) CPU_SET((int)i, &cs);
    if (CPU_COUNT(&cs) == 0)
        for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++) CPU_SET((int)i, &cs);
    pthread_attr_setaffinity_np(&at, sizeof cs, &cs);
    int rc = pthread_create(&d->thr, &at, lcore_thread, d->c);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        snprintf(err, errcap, "cannot start the polling thread: %s", strerror(rc));
        return -1;
    }
    d->threaded = true;
    return 0;
}

/* The data path's worker: the EAL's second lcore when it has one, else a thread of ours. */
static int worker_launch(struct dpdk_state *d, char *err, size_t errcap) {
    unsigned worker = rte_get_next_lcore(-1, 1, 0);
    if (worker >= RTE_MAX_LCORE) return polling_thread_start(d, err, errcap);
    int rc = rte_eal_remote_launch(dp_lcore_main, d->c, worker);
    if (rc != 0) {
        snprintf(err, errcap, "cannot launch lcore %u: %s", worker, rte_strerror(-rc));
        return -1;
    }
    d->worker = worker;
    d->launched = true;
    return 0;
}

int dpdk_start(gateway *gw, char *err, size_t errcap) {
    if (!gw->cfg.dpdk_enabled) return 0;
    const config *cfg = &gw->cfg;
    struct in_addr ia;
    if (!cfg->dpdk_ip[0] || inet_pton(AF_INET, cfg->dpdk_ip, &ia) != 1) {
        snprintf(err, errcap, "[dpdk] ip = '%s' is not an IPv4 address (the address the DPDK port answers on)",
                 cfg->dpdk_ip);
        return -1;
    }
    /* Kept for the whole process: the read armed on the eventfd writes into it. */
    static struct dpdk_state state;
    struct dpdk_state *d = &state;
    memset(d, 0, sizeof *d);
    d->efd = -1;
    gw->dpdk = d;

    char *argv[EAL_ARGS_MAX + 4];
    int argc;
    uint16_t port;
    if (eal_args(cfg, d, argv, &argc, err, errcap) != 0 || eal_start(gw, d, argv, argc, err, errcap) != 0 ||
        first_port(gw, &port, err, errcap) != 0 || ctx_create(gw, d, port, ia.s_addr, err, errcap) != 0)
        return fail(gw, d);
    arm(gw);
    if (worker_launch(d, err, errcap) != 0) return fail(gw, d);

    dp_ctx *c = d->c;
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof mac, &c->mac);
    char name[RTE_ETH_NAME_MAX_LEN] = "?";
    rte_eth_dev_get_name_by_port(port, name);
    LOGI(gw, "dpdk: frames on %s:%u via port %u (%s, mac %s, mtu %u), %s, epoch %u", cfg->dpdk_ip, cfg->dpdk_port,
         port, name, mac, c->mtu, d->launched ? "worker lcore" : "polling thread", c->epoch);
    if (d->launched) LOGI(gw, "dpdk: worker is lcore %u", d->worker);
    return 0;
}

void dpdk_stop(gateway *gw) {
    struct dpdk_state *d = gw->dpdk;
    if (!d) return;
    teardown(gw, d);
    gw->dpdk = NULL;
}
