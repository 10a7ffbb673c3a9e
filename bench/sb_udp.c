/*
 * sb_udp: stopbench's UDP engine (docs/protocol.md "Binary UDP frames"), through
 * libstopgate's frame codec only. Main did the HELLO and derived the key once (Argon2id is
 * slow on purpose); each worker has its own socket, connected to the gateway's UDP port.
 *
 * A datagram carries --batch messages (CHECKs, STOPs, or a mix); a "connection" here is a
 * flow that keeps --pipeline datagrams in flight (closed loop) or sends on the open-loop
 * schedule (sb_sched.h, one schedule slot per datagram). Replies are matched to their
 * datagram by seq through a small open-addressing table. Sequence numbers come from one
 * counter shared by the workers: the gateway keeps one replay window of 1,024 per agent, so
 * all the workers' datagrams must stay within it (hence SB_UDP_INFLIGHT_MAX = 512 in flight).
 *
 * UDP loses datagrams (a full socket buffer on either side): a datagram unanswered for
 * --udp-retry-ms is sent again with a new seq (STOPs keep their request ids, so a retry of
 * one that was applied answers DUPLICATE), SB_UDP_RETRIES times, then its messages count as
 * timeouts. The latency of a retried datagram still runs from its first send.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stopgate/frame.h>

#include "sb.h"
#include "sb_sched.h"

#define UDP_BURST 64        /* datagrams per sendmmsg / recvmmsg */
#define UDP_MAP_SLOTS 4096  /* seq -> slot table, >= 4 x the slots of one worker */

typedef struct uslot {
    uint64_t seq;
    int64_t t0;     /* latency origin: intended time (open loop) or first send, ns after the start */
    int64_t t_sent; /* last (re)send */
    int flow;
    uint16_t nmsg;
    uint8_t tries;
    bool used;
    uint8_t kinds[SG_FRAME_MSGS_MAX];
    sg_frame_writer wr;
    size_t len;
    uint8_t buf[SG_FRAME_BYTES_MAX];
} uslot;

typedef struct uflow {
    int k;
    uint32_t inflight;
    uint64_t next_i, count; /* open loop, in datagrams */
} uflow;

typedef struct udp_engine {
    int fd;
    bool open;
    uslot *slots;
    uint32_t nslots, nfree;
    uint32_t *free_list;
    int32_t map[UDP_MAP_SLOTS];
    uflow *f;
    int nflows;
    uint64_t budget_left; /* closed loop by --requests: messages */
    double dgram_rate;
    uint64_t dgram_total, dgram_conns;
    uint32_t tx[UDP_BURST];
    int ntx;
    struct mmsghdr rx_msgs[UDP_BURST];
    struct iovec rx_iov[UDP_BURST];
    uint8_t (*rx_buf)[SG_FRAME_BYTES_MAX];
} udp_engine;

_Static_assert(UDP_MAP_SLOTS >= 4 * SB_UDP_INFLIGHT_MAX, "the seq table stays sparse");

/* ---- seq -> slot ---- */

static uint32_t map_home(uint64_t seq) { return (uint32_t)((seq * 0x9E3779B97F4A7C15ULL) >> 52) & (UDP_MAP_SLOTS - 1); }

static void map_put(udp_engine *e, uint64_t seq, uint32_t slot) {
    uint32_t i = map_home(seq);
    while (e->map[i] >= 0) i = (i + 1) & (UDP_MAP_SLOTS - 1);
    e->map[i] = (int32_t)slot;
}

static int32_t map_find(const udp_engine *e, uint64_t seq, uint32_t *pos) {
    uint32_t i = map_home(seq);
    for (uint32_t n = 0; n < UDP_MAP_SLOTS && e->map[i] >= 0; n++, i = (i + 1) & (UDP_MAP_SLOTS - 1))
        if (e->slots[e->map[i]].seq == seq) {
            *pos = i;
            return e->map[i];
        }
    return -1;
}

/* Backward-shift deletion: the probe chains stay intact without tombstones. */
static void map_del(udp_engine *e, uint32_t i) {
    e->map[i] = -1;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & (UDP_MAP_SLOTS - 1);
        if (e->map[j] < 0) return;
        uint32_t h = map_home(e->slots[e->map[j]].seq);
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (stays) continue;
        e->map[i] = e->map[j];
        e->map[j] = -1;
        i = j;
    }
}

/* ---- datagrams ---- */

static void put_seq(uint8_t *buf, uint64_t seq) {
    for (int i = 0; i < 8; i++) buf[8 + i] = (uint8_t)(seq >> (8 * i));
}

static void queue_tx(sb_worker *w, udp_engine *e, uint32_t s);

/* Fill a free slot with up to `nmsg` messages and queue it. */
static void dgram_new(sb_worker *w, udp_engine *e, int flow, uint32_t nmsg, int64_t t0) {
    const sb_opts *o = w->o;
    uint32_t s = e->free_list[--e->nfree];
    uslot *d = &e->slots[s];
    d->seq = atomic_fetch_add_explicit(&w->run->seq, 1, memory_order_relaxed);
    sg_frame_hdr h = {.agent_id = w->run->agent_id, .seq = d->seq, .epoch = w->run->epoch};
    sg_frame_begin(&d->wr, d->buf, sizeof d->buf, &h);
    uint16_t n = 0;
    for (uint32_t i = 0; i < nmsg; i++) {
        sb_req r;
        sb_next_req(w, &r);
        bool ok = r.kind == K_CHECK  ? sg_frame_add_check(&d->wr, o->bank, r.acct)
                  : r.kind == K_STOP ? sg_frame_add_stop(&d->wr, r.rid, o->bank, r.acct, o->case_id, 0, NULL)
                                     : sg_frame_add_ping(&d->wr);
        if (!ok) break; /* main checked that --batch fits a datagram */
        d->kinds[n++] = (uint8_t)r.kind;
    }
    d->nmsg = n;
    d->len = sg_frame_finish(&d->wr, w->run->key);
    d->flow = flow;
    d->tries = 0;
    d->used = true;
    d->t0 = t0;
    d->t_sent = t0;
    e->f[flow].inflight++;
    w->st.sent += n;
    w->st.datagrams++;
    map_put(e, d->seq, s);
    queue_tx(w, e, s);
}

static void tx_flush(sb_worker *w, udp_engine *e) {
    if (!e->ntx) return;
    struct mmsghdr m[UDP_BURST];
    struct iovec iov[UDP_BURST];
    int64_t now_rel = sb_now_ns() - w->run->t0_ns;
    for (int i = 0; i < e->ntx; i++) {
        uslot *d = &e->slots[e->tx[i]];
        /* Closed loop: from the moment it leaves; a burst: from the start, like the open loop. */
        if (d->tries == 0 && !e->open && !w->o->burst) d->t0 = now_rel;
        d->t_sent = now_rel;
        iov[i] = (struct iovec){d->buf, d->len};
        m[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    int off = 0;
    while (off < e->ntx) {
        int k = sendmmsg(e->fd, m + off, (unsigned)(e->ntx - off), 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            /* ENOBUFS or ECONNREFUSED (an ICMP from an earlier datagram): the retry timer
             * covers the datagrams that did not leave. */
            if (!w->st.first_error[0])
                snprintf(w->st.first_error, sizeof w->st.first_error, "UDP send: %s", strerror(errno));
            break;
        }
        off += k;
    }
    e->ntx = 0;
}

static void queue_tx(sb_worker *w, udp_engine *e, uint32_t s) {
    if (e->ntx == UDP_BURST) tx_flush(w, e);
    e->tx[e->ntx++] = s;
}

static void slot_free(udp_engine *e, uint32_t s) {
    uslot *d = &e->slots[s];
    d->used = false;
    e->f[d->flow].inflight--;
    e->free_list[e->nfree++] = s;
}

static const char *fe_name(unsigned err) {
    static const char *const names[] = {"OK",    "BADACCOUNT", "BADAMOUNT", "UNKNOWNBANK", "IDEMPOTENCY",
                                        "NOPERM", "SYNTAX",    "TOOBIG",    "BUSY",        "EPOCH"};
    return err < sizeof names / sizeof names[0] ? names[err] : "ERR?";
}

static void count_fe(sb_worker *w, int kind, unsigned err) {
    char msg[64];
    const char *n = fe_name(err);
    snprintf(msg, sizeof msg, "UDP reply error %u %s", err, n);
    sb_count_error(&w->st, kind, n, strlen(n), msg, strlen(msg));
    atomic_fetch_add_explicit(&w->progress_err, 1, memory_order_relaxed);
}

static void on_datagram(sb_worker *w, udp_engine *e, const uint8_t *buf, size_t len, int64_t now_rel) {
    sb_stats *st = &w->st;
    sg_frame_hdr h;
    if (sg_frame_parse_hdr(buf, len, &h) != 0 || !(h.flags & SG_FRAME_REPLY) || !sg_frame_verify(buf, len, w->run->key)) {
        st->late_replies++; /* not ours, or damaged: the retry covers it */
        return;
    }
    uint32_t pos;
    int32_t s = map_find(e, h.seq, &pos);
    if (s < 0) {
        st->late_replies++; /* the answer to a datagram already retried or given up */
        return;
    }
    map_del(e, pos);
    uslot *d = &e->slots[s];
    int64_t lat = now_rel - d->t0;
    if (lat < 0) lat = 0;
    uint32_t ok = 0, i = 0;
    if (h.status == SG_FE_EPOCH) {
        for (; i < d->nmsg; i++) count_fe(w, d->kinds[i], SG_FE_EPOCH);
    } else {
        sg_frame_reader rd;
        sg_frame_read_begin(&rd, buf, len, &h);
        sg_reply r;
        for (; i < d->nmsg && sg_frame_next_reply(&rd, &r) == 1; i++) {
            int kind = d->kinds[i];
            if (r.err) {
                count_fe(w, kind, r.err);
                continue;
            }
            hdr_record(&st->lat[kind], (uint64_t)lat);
            st->answered[kind]++;
            if (kind == K_CHECK && r.code < 3) st->verdicts[r.code]++;
            if (kind == K_STOP && r.code < 4) st->statuses[r.code]++;
            ok++;
        }
        for (; i < d->nmsg; i++) count_fe(w, d->kinds[i], h.status ? h.status : SG_FE_SYNTAX); /* cut short */
    }
    st->t_last_ns = now_rel;
    if (ok) {
        sb_tick(st, now_rel, ok);
        atomic_fetch_add_explicit(&w->progress_done, ok, memory_order_relaxed);
    }
    slot_free(e, (uint32_t)s);
}

static void rx_drain(sb_worker *w, udp_engine *e) {
    for (;;) {
        for (int i = 0; i < UDP_BURST; i++) {
            e->rx_iov[i] = (struct iovec){e->rx_buf[i], SG_FRAME_BYTES_MAX};
            e->rx_msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &e->rx_iov[i], .msg_iovlen = 1}};
        }
        int n = recvmmsg(e->fd, e->rx_msgs, UDP_BURST, MSG_DONTWAIT, NULL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (errno == ECONNREFUSED && !w->st.first_error[0])
                snprintf(w->st.first_error, sizeof w->st.first_error,
                         "UDP port unreachable (ICMP): is [gateway] udp enabled on that port?");
            return;
        }
        int64_t now_rel = sb_now_ns() - w->run->t0_ns;
        for (int i = 0; i < n; i++) on_datagram(w, e, e->rx_buf[i], e->rx_msgs[i].msg_len, now_rel);
        if (n < UDP_BURST) return;
    }
}

/* Closed loop: how many messages the next datagram may carry (0: none). */
static uint32_t closed_take(sb_worker *w, udp_engine *e, int64_t now_rel) {
    const sb_opts *o = w->o;
    if (atomic_load_explicit(&w->run->stop, memory_order_relaxed)) return 0;
    if (o->requests) {
        uint32_t n = e->budget_left < (uint64_t)o->batch ? (uint32_t)e->budget_left : (uint32_t)o->batch;
        e->budget_left -= n;
        return n;
    }
    return now_rel < (int64_t)(o->duration_s * 1e9) ? (uint32_t)o->batch : 0;
}

static void closed_fill(sb_worker *w, udp_engine *e, int flow, int64_t now_rel) {
    uint32_t n;
    while (e->f[flow].inflight < (uint32_t)w->o->pipeline && e->nfree && (n = closed_take(w, e, now_rel)) > 0)
        dgram_new(w, e, flow, n, now_rel);
}

/* Open loop: the due datagrams of every flow; returns the next intended time. */
static int64_t open_send_due(sb_worker *w, udp_engine *e, int64_t now_rel) {
    int64_t next = INT64_MAX;
    for (int i = 0; i < e->nflows; i++) {
        uflow *f = &e->f[i];
        while (f->next_i < f->count) {
            int64_t due = sched_intended_ns((uint64_t)f->k, f->next_i, e->dgram_conns, e->dgram_rate);
            if (due > now_rel) {
                if (due < next) next = due;
                break;
            }
            if (!e->nfree) break;
            int64_t lag = now_rel - due;
            if (lag > w->st.max_lag_ns) w->st.max_lag_ns = lag;
            if (lag > 1000000) w->st.late_sends++;
            /* The last datagram of the run carries what is left of --requests. */
            uint64_t j = (uint64_t)f->k + f->next_i * e->dgram_conns;
            uint64_t left = w->o->total - j * (uint64_t)w->o->batch;
            dgram_new(w, e, i, left < (uint64_t)w->o->batch ? (uint32_t)left : (uint32_t)w->o->batch, due);
            f->next_i++;
        }
    }
    return next;
}

static void retry_scan(sb_worker *w, udp_engine *e, int64_t now_rel) {
    int64_t limit = w->o->udp_retry_ms * 1000000;
    for (uint32_t s = 0; s < e->nslots; s++) {
        uslot *d = &e->slots[s];
        if (!d->used || now_rel - d->t_sent < limit) continue;
        uint32_t pos;
        if (map_find(e, d->seq, &pos) >= 0) map_del(e, pos);
        if (d->tries >= SB_UDP_RETRIES) {
            w->st.timeouts += d->nmsg;
            atomic_fetch_add_explicit(&w->progress_err, d->nmsg, memory_order_relaxed);
            if (!w->st.first_error[0])
                snprintf(w->st.first_error, sizeof w->st.first_error,
                         "UDP: no answer to a datagram after %d sends %lld ms apart (gateway down, wrong "
                         "secret or agent: frames with a bad MAC are dropped silently)",
                         SB_UDP_RETRIES + 1, (long long)w->o->udp_retry_ms);
            slot_free(e, s);
            continue;
        }
        d->tries++;
        w->st.retries++;
        d->seq = atomic_fetch_add_explicit(&w->run->seq, 1, memory_order_relaxed);
        put_seq(d->buf, d->seq);
        d->len = sg_frame_finish(&d->wr, w->run->key);
        map_put(e, d->seq, s);
        queue_tx(w, e, s);
    }
}

int sb_udp_prepare(sb_worker *w, char *err, size_t errcap) {
    const sb_opts *o = w->o;
    udp_engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    w->engine = e;
    e->fd = -1;
    e->open = o->rate > 0;
    e->nflows = w->conn_count;
    e->f = calloc((size_t)e->nflows, sizeof *e->f);
    e->nslots = e->open ? SB_UDP_INFLIGHT_MAX / (uint32_t)w->run->nworkers
                        : (uint32_t)e->nflows * (uint32_t)o->pipeline;
    if (e->nslots < 1) e->nslots = 1;
    e->slots = calloc(e->nslots, sizeof *e->slots);
    e->free_list = calloc(e->nslots, sizeof *e->free_list);
    e->rx_buf = malloc(UDP_BURST * sizeof *e->rx_buf);
    if (!e->f || !e->slots || !e->free_list || !e->rx_buf) goto oom;
    for (uint32_t i = 0; i < e->nslots; i++) e->free_list[e->nfree++] = e->nslots - 1 - i;
    for (int i = 0; i < UDP_MAP_SLOTS; i++) e->map[i] = -1;
    e->dgram_conns = (uint64_t)o->connections;
    e->dgram_rate = o->rate / o->batch;
    e->dgram_total = (o->total + (uint64_t)o->batch - 1) / (uint64_t)o->batch;
    for (int i = 0; i < e->nflows; i++) {
        e->f[i].k = w->conn_first + i;
        if (e->open) e->f[i].count = sched_count((uint64_t)e->f[i].k, e->dgram_conns, e->dgram_total);
    }
    e->budget_left = w->budget;
    return 0;
oom:
    snprintf(err, errcap, "out of memory");
    return -1;
}

/* Main hands each worker a connected UDP socket after the HELLO. */
void sb_udp_set_fd(sb_worker *w, int fd) { ((udp_engine *)w->engine)->fd = fd; }

static void engine_free(udp_engine *e) {
    if (e->fd >= 0) close(e->fd);
    free(e->f);
    free(e->slots);
    free(e->free_list);
    free(e->rx_buf);
    free(e);
}

void *sb_udp_main(void *arg) {
    sb_worker *w = arg;
    udp_engine *e = w->engine;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    sb_wait_start(w->run->t0_ns);
    int64_t now_rel = sb_now_ns() - w->run->t0_ns, last_scan = now_rel;
    if (!e->open)
        for (int i = 0; i < e->nflows; i++) closed_fill(w, e, i, now_rel);
    tx_flush(w, e);
    for (;;) {
        now_rel = sb_now_ns() - w->run->t0_ns;
        bool stopping = atomic_load_explicit(&w->run->stop, memory_order_relaxed);
        int64_t next_due = INT64_MAX;
        if (e->open && !stopping) next_due = open_send_due(w, e, now_rel);
        if (!e->open)
            for (int i = 0; i < e->nflows; i++) closed_fill(w, e, i, now_rel);
        tx_flush(w, e);
        bool more = e->nfree < e->nslots;
        if (e->open && !stopping)
            for (int i = 0; i < e->nflows && !more; i++) more = e->f[i].next_i < e->f[i].count;
        if (!more) break;
        int64_t wait_ns = 10000000; /* the retry scan runs every 10 ms */
        if (next_due != INT64_MAX && next_due - now_rel < wait_ns) wait_ns = next_due - now_rel;
        if (wait_ns < 0) wait_ns = 0;
        struct pollfd pfd = {.fd = e->fd, .events = POLLIN};
        struct timespec ts = {.tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000};
        int pr = ppoll(&pfd, 1, &ts, NULL);
        if (pr > 0) rx_drain(w, e);
        now_rel = sb_now_ns() - w->run->t0_ns;
        if (now_rel - last_scan >= 10000000) {
            retry_scan(w, e, now_rel);
            last_scan = now_rel;
        }
    }
    if (e->open && !atomic_load(&w->run->stop))
        for (int i = 0; i < e->nflows; i++) {
            uflow *f = &e->f[i];
            for (uint64_t d = f->next_i; d < f->count; d++) {
                uint64_t j = (uint64_t)f->k + d * e->dgram_conns;
                uint64_t left = w->o->total - j * (uint64_t)w->o->batch;
                w->st.unsent += left < (uint64_t)w->o->batch ? left : (uint64_t)w->o->batch;
            }
        }
    engine_free(e);
    w->engine = NULL;
    return NULL;
}
