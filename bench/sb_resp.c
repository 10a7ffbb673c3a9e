/*
 * sb_resp: stopbench's RESP/TCP engine. One worker thread owns a slice of the connections
 * (already connected and authenticated by main) and runs one edge-triggered epoll loop over
 * them.
 *
 * Closed loop: every connection keeps `pipeline` requests outstanding; each answer sends the
 * next one, stamped with the time it is written. Open loop: connection k sends its i-th
 * request at its intended time (sb_sched.h), whatever is outstanding (up to SB_OPEN_WINDOW),
 * and the latency is taken from that intended time.
 *
 * Per connection, allocated once: an output buffer, an input buffer, and a ring of the
 * outstanding requests' start times and kinds (answers come back in request order, so the
 * ring's head is always the request being answered), and a reply reader (sb_reply.c:
 * hiredis's redisReader, which builds no reply object). Received bytes go through the
 * input buffer into the reader.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb.h"
#include "sb_ctl.h"
#include "sb_sched.h"

typedef struct rconn {
    sb_link link; /* socket, and TLS session with --tls */
    int fd;       /* link.fd, for epoll */
    int k; /* global connection index: its open-loop schedule */
    bool dead;
    char *out;
    uint32_t olen, ooff, ocap;
    char *in;     /* one recv's bytes, fed to rd */
    uint32_t icap; /* also the most a reply may hold back unanswered (as before the reader) */
    sb_reader rd;
    int64_t *t0;   /* ring: start time of each outstanding request (ns after run start) */
    uint8_t *kind; /* ring: its kind */
    uint32_t rmask, head, tail, stamp_from;
    uint64_t next_i, count; /* open loop: next request index, requests scheduled */
    int64_t last_progress_ns;
    uint64_t replies;
} rconn;

typedef struct resp_engine {
    int ep;
    rconn *c;
    int n;
    bool open;
    uint64_t budget_left; /* closed loop, --requests */
} resp_engine;

typedef sb_reply_info reply_info;

/* ---- connections ---- */

static uint32_t pow2_at_least(uint32_t v) {
    uint32_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

static void conn_fail(sb_worker *w, rconn *c, bool timeout, const char *why) {
    sb_stats *st = &w->st;
    uint32_t lost = c->tail - c->head;
    if (timeout) st->timeouts += lost;
    else st->closed += lost;
    atomic_fetch_add_explicit(&w->progress_err, lost, memory_order_relaxed);
    if (!st->first_error[0])
        snprintf(st->first_error, sizeof st->first_error, "connection %d: %s (%u requests unanswered)", c->k, why,
                 lost);
    c->head = c->tail;
    c->dead = true;
    resp_engine *e = w->engine;
    epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
    sb_link_close(&c->link);
    c->fd = -1;
}

/* Write what is pending; false when the connection failed. */
static bool conn_flush(sb_worker *w, rconn *c) {
    while (c->ooff < c->olen) {
        ssize_t k = sb_link_send(&c->link, c->out + c->ooff, c->olen - c->ooff);
        if (k > 0) {
            c->ooff += (uint32_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        conn_fail(w, c, false, k < 0 ? strerror(errno) : "send returned 0");
        return false;
    }
    c->ooff = c->olen = 0;
    return true;
}

/* Room for one more request: ring and output buffer. */
static bool conn_room(const rconn *c) {
    if (c->tail - c->head > c->rmask) return false;
    if (c->olen + SB_REQ_BYTES_MAX > c->ocap) {
        if (c->ooff == 0) return false;
        return c->olen - c->ooff + SB_REQ_BYTES_MAX <= c->ocap;
    }
    return true;
}

static void conn_push(sb_worker *w, rconn *c, int64_t t0) {
    if (c->olen + SB_REQ_BYTES_MAX > c->ocap) { /* conn_room said compacting makes room */
        memmove(c->out, c->out + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
    }
    sb_req r;
    sb_next_req(w, &r);
    c->olen += (uint32_t)sb_encode_resp(w->o, &r, c->out + c->olen);
    c->t0[c->tail & c->rmask] = t0;
    c->kind[c->tail & c->rmask] = (uint8_t)r.kind;
    if (c->tail == c->head) c->last_progress_ns = sb_now_ns() - w->run->t0_ns;
    c->tail++;
    w->st.sent++;
}

static void on_reply(sb_worker *w, rconn *c, const reply_info *ri, int64_t now_rel) {
    sb_stats *st = &w->st;
    uint32_t slot = c->head & c->rmask;
    int kind = c->kind[slot];
    int64_t lat = now_rel - c->t0[slot];
    c->head++;
    c->replies++;
    c->last_progress_ns = now_rel;
    st->t_last_ns = now_rel;
    if (ri->err) {
        const char *m = ri->err_text;
        size_t ml = ri->err_len, cl = 0;
        while (cl < ml && m[cl] != ' ') cl++;
        if (cl == 3 && !memcmp(m, "ERR", 3) && cl < ml) { /* "ERR XXX": two words */
            cl++;
            while (cl < ml && m[cl] != ' ') cl++;
        }
        sb_count_error(st, kind, m, cl, m, ml);
        atomic_fetch_add_explicit(&w->progress_err, 1, memory_order_relaxed);
        return;
    }
    hdr_record(&st->lat[kind], lat > 0 ? (uint64_t)lat : 0);
    st->answered[kind]++;
    if (ri->verdict >= 0) st->verdicts[ri->verdict]++;
    if (ri->status >= 0) st->statuses[ri->status]++;
    if (kind == K_CHECK && w->o->target == TG_REDIS && ri->has_ival) st->verdicts[ri->ival ? 1 : 0]++;
    sb_tick(st, now_rel, 1);
    atomic_fetch_add_explicit(&w->progress_done, 1, memory_order_relaxed);
}

/* Read everything the socket has (edge-triggered) and account for each complete reply. */
static void conn_read(sb_worker *w, rconn *c) {
    for (;;) {
        ssize_t k = sb_link_recv(&c->link, c->in, c->icap);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (k <= 0) {
            char why[96];
            snprintf(why, sizeof why, "closed by the server after %llu replies%s%s", (unsigned long long)c->replies,
                     k < 0 ? ": " : "", k < 0 ? strerror(errno) : "");
            conn_fail(w, c, false, why);
            return;
        }
        sb_reader_source(&c->rd, c->in, (size_t)k);
        int64_t now_rel = sb_now_ns() - w->run->t0_ns;
        const reply_info *ri;
        int r;
        while ((r = sb_reader_next(&c->rd, &ri)) > 0) {
            if (c->head == c->tail) {
                conn_fail(w, c, false, "a reply to no request");
                return;
            }
            on_reply(w, c, ri, now_rel);
        }
        if (r < 0) {
            conn_fail(w, c, false, sb_reader_error(&c->rd)); /* a malformed reply, or memory */
            return;
        }
        if (sb_reader_pending(&c->rd) >= c->icap) {
            conn_fail(w, c, false, "a reply larger than the input buffer (protocol error?)");
            return;
        }
    }
}

int sb_resp_prepare(sb_worker *w, sb_link *links) {
    const sb_opts *o = w->o;
    resp_engine *e = calloc(1, sizeof *e);
    if (!e) return -1;
    w->engine = e;
    e->open = o->rate > 0;
    e->n = w->conn_count;
    e->c = calloc((size_t)e->n, sizeof *e->c);
    e->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!e->c || e->ep < 0) return -1;
    uint32_t ring = e->open ? SB_OPEN_WINDOW : pow2_at_least((uint32_t)o->pipeline);
    uint32_t ocap = e->open ? 256 * 1024 : (uint32_t)o->pipeline * SB_REQ_BYTES_MAX + SB_REQ_BYTES_MAX;
    uint32_t icap = e->open ? 64 * 1024 : (uint32_t)o->pipeline * 512 + 16384;
    if (icap > SB_RESP_IN_BYTES) icap = SB_RESP_IN_BYTES;
    for (int i = 0; i < e->n; i++) {
        rconn *c = &e->c[i];
        c->link = links[i];
        links[i] = (sb_link){.fd = -1}; /* the engine owns it now */
        c->fd = c->link.fd;
        c->k = w->conn_first + i;
        c->ocap = ocap;
        c->icap = icap;
        c->rmask = ring - 1;
        c->out = malloc(ocap);
        c->in = malloc(icap);
        c->t0 = malloc(sizeof *c->t0 * ring);
        c->kind = malloc(ring);
        if (!c->out || !c->in || !c->t0 || !c->kind || sb_reader_init(&c->rd) != 0) return -1;
        if (e->open) c->count = sched_count((uint64_t)c->k, (uint64_t)o->connections, o->total);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = (uint32_t)i};
        if (epoll_ctl(e->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) return -1;
    }
    e->budget_left = w->budget;
    return 0;
}

static void engine_free(resp_engine *e) {
    for (int i = 0; i < e->n; i++) {
        rconn *c = &e->c[i];
        if (c->fd >= 0) sb_link_close(&c->link);
        free(c->out);
        free(c->in);
        free(c->t0);
        free(c->kind);
        sb_reader_free(&c->rd);
    }
    free(e->c);
    close(e->ep);
    free(e);
}

/* Closed loop: may this worker send one more request now? */
static bool closed_may_send(sb_worker *w, resp_engine *e, int64_t now_rel) {
    const sb_opts *o = w->o;
    if (atomic_load_explicit(&w->run->stop, memory_order_relaxed)) return false;
    if (o->requests) {
        if (e->budget_left == 0) return false;
        e->budget_left--;
        return true;
    }
    return now_rel < (int64_t)(o->duration_s * 1e9);
}

static void closed_fill(sb_worker *w, resp_engine *e, rconn *c, int64_t now_rel) {
    if (c->dead) return;
    while (c->tail - c->head < (uint32_t)w->o->pipeline && closed_may_send(w, e, now_rel)) conn_push(w, c, 0);
    if (c->stamp_from != c->tail) {
        int64_t t = sb_now_ns() - w->run->t0_ns;
        for (uint32_t i = c->stamp_from; i != c->tail; i++) c->t0[i & c->rmask] = t;
        c->stamp_from = c->tail;
    }
    conn_flush(w, c);
}

/* Open loop: send what is due on c; returns the next intended time (INT64_MAX: none, or
 * the connection is full and must wait for answers). */
static int64_t open_send_due(sb_worker *w, rconn *c, int64_t now_rel, bool stopping) {
    const sb_opts *o = w->o;
    if (c->dead || stopping) return INT64_MAX;
    bool pushed = false;
    int64_t next = INT64_MAX;
    while (c->next_i < c->count) {
        int64_t due = sched_intended_ns((uint64_t)c->k, c->next_i, (uint64_t)o->connections, o->rate);
        if (due > now_rel) {
            next = due;
            break;
        }
        if (!conn_room(c)) break;
        int64_t lag = now_rel - due;
        if (lag > w->st.max_lag_ns) w->st.max_lag_ns = lag;
        if (lag > 1000000) w->st.late_sends++;
        conn_push(w, c, due);
        c->next_i++;
        pushed = true;
    }
    if (pushed) conn_flush(w, c);
    return next;
}

static void check_timeouts(sb_worker *w, resp_engine *e, int64_t now_rel) {
    int64_t limit = w->o->timeout_ms * 1000000;
    for (int i = 0; i < e->n; i++) {
        rconn *c = &e->c[i];
        if (!c->dead && c->tail != c->head && now_rel - c->last_progress_ns > limit) {
            char why[80];
            snprintf(why, sizeof why, "no answer for %lld ms", (long long)w->o->timeout_ms);
            conn_fail(w, c, true, why);
        }
    }
}

void *sb_resp_main(void *arg) {
    sb_worker *w = arg;
    resp_engine *e = w->engine;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* open loop: wake within ~1 us of a due time */
    sb_wait_start(w->run->t0_ns);
    struct epoll_event evs[256];
    int64_t now_rel = sb_now_ns() - w->run->t0_ns, last_check = now_rel;
    if (!e->open)
        for (int i = 0; i < e->n; i++) closed_fill(w, e, &e->c[i], now_rel);
    for (;;) {
        now_rel = sb_now_ns() - w->run->t0_ns;
        bool stopping = atomic_load_explicit(&w->run->stop, memory_order_relaxed);
        int64_t next_due = INT64_MAX;
        bool busy = false; /* requests outstanding, or (open loop) still to send */
        for (int i = 0; i < e->n; i++) {
            rconn *c = &e->c[i];
            if (e->open) {
                int64_t nd = open_send_due(w, c, now_rel, stopping);
                if (nd < next_due) next_due = nd;
                if (!c->dead && !stopping && c->next_i < c->count) busy = true;
            }
            if (!c->dead && c->tail != c->head) busy = true;
        }
        if (!e->open && !busy) {
            /* Closed loop: nothing outstanding: either finished, or every connection died. */
            bool any = false;
            for (int i = 0; i < e->n; i++) {
                closed_fill(w, e, &e->c[i], now_rel);
                if (!e->c[i].dead && e->c[i].tail != e->c[i].head) any = true;
            }
            if (!any) break;
        } else if (e->open && !busy) {
            break;
        }
        int64_t wait_ns = 50000000; /* wake at least every 50 ms: timeouts, the stop flag */
        if (next_due != INT64_MAX && next_due - now_rel < wait_ns) wait_ns = next_due - now_rel;
        if (wait_ns < 0) wait_ns = 0;
        struct timespec ts = {.tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000};
        int n = epoll_pwait2(e->ep, evs, 256, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            snprintf(w->st.first_error, sizeof w->st.first_error, "epoll: %s", strerror(errno));
            break;
        }
        for (int k = 0; k < n; k++) {
            rconn *c = &e->c[evs[k].data.u32];
            if (c->dead) continue;
            if (evs[k].events & EPOLLOUT) {
                if (!conn_flush(w, c)) continue;
            }
            if (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                conn_read(w, c);
                if (!e->open && !c->dead) closed_fill(w, e, c, sb_now_ns() - w->run->t0_ns);
            }
        }
        now_rel = sb_now_ns() - w->run->t0_ns;
        if (now_rel - last_check > 100000000) {
            check_timeouts(w, e, now_rel);
            last_check = now_rel;
        }
    }
    /* Open loop: what the schedule still held when the connections died or the run was cut. */
    if (e->open && !atomic_load(&w->run->stop))
        for (int i = 0; i < e->n; i++) w->st.unsent += e->c[i].count - e->c[i].next_i;
    engine_free(e);
    w->engine = NULL;
    return NULL;
}
