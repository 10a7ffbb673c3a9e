/*
 * sb_burst: --burst N (SPEC §8; the 6,077-order provincial push). N STOPs, each with its own
 * request id and account, are encoded before the clock starts and written at once on one
 * connection (as fast as the socket takes them). From that moment t0:
 *
 *   burst_acked_ms     t0 -> the N-th answer has arrived (each answer: the order is durable);
 *   burst_at_bank_ms   t0 -> INFO, polled on a second connection every --poll-us, shows every
 *                      order of the burst in state SENT or later, i.e. handed to its bank's
 *                      plugin: the sum of orders_<state> over SENT, OVERDUE, CONFIRMED,
 *                      PARTIAL, NOT_FOUND, REJECTED, FUNDS_MOVED, RELEASED and EXPIRED has
 *                      grown by the number of orders the burst created;
 *   burst_confirmed_ms t0 -> likewise orders_CONFIRMED (the simulated bank confirms accounts
 *                      ending in X, SPEC §2b; other banks may never), reported when seen.
 * The counters are gateway-wide: another client's orders during the burst would count too.
 * At the end, STATUS of the last order confirms its state (burst_last_state).
 * Polling costs the gateway one INFO per --poll-us (default 500 us): the resolution of
 * burst_at_bank_ms, and a small load on the loop being measured.
 *
 * Against Redis (--target redis) the burst is N SETs and only burst_acked_ms is measured.
 * Over UDP (--transport udp) the burst is not this module's: stopbench runs the UDP engine
 * with every datagram of the burst in flight at once, and reports burst_acked_ms only.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sb_ctl.h"

static const char *const at_bank_states[] = {"SENT",        "OVERDUE",  "CONFIRMED", "PARTIAL", "NOT_FOUND",
                                             "REJECTED",    "FUNDS_MOVED", "RELEASED", "EXPIRED"};

/* orders at the bank (SENT or later) and CONFIRMED, from an INFO text; -1 when absent. */
static int info_counts(const char *t, size_t n, long long *at_bank, long long *confirmed) {
    long long sum = 0;
    for (size_t i = 0; i < sizeof at_bank_states / sizeof at_bank_states[0]; i++) {
        char key[40];
        snprintf(key, sizeof key, "orders_%s", at_bank_states[i]);
        long long v = sb_info_field(t, n, key);
        if (v < 0) return -1;
        sum += v;
    }
    *at_bank = sum;
    *confirmed = sb_info_field(t, n, "orders_CONFIRMED");
    return 0;
}

static const char info_cmd[] = "*1\r\n$4\r\nINFO\r\n";

typedef struct burst_state {
    sb_worker *w;
    sb_link *fd, *ctl; /* ctl NULL: Redis (no INFO) */
    char *out;
    size_t olen, ooff;
    sb_rbuf in, cin;
    uint64_t answered;
    bool info_pending;
    int64_t next_poll;
    long long base_bank, base_conf;
} burst_state;

static int read_answers(burst_state *b, sb_burst_result *br, int64_t t0) {
    sb_stats *st = &b->w->st;
    sb_reader *rd = &b->in.rd;
    char in[65536];
    for (;;) {
        ssize_t k = sb_link_recv(b->fd, in, sizeof in);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (k <= 0) {
            snprintf(st->first_error, sizeof st->first_error, "the burst connection was closed after %llu answers",
                     (unsigned long long)b->answered);
            return -1;
        }
        sb_reader_source(rd, in, (size_t)k);
        int64_t now = sb_now_ns() - t0;
        while (b->answered < b->w->o->burst) {
            const sb_reply_info *ri;
            int r = sb_reader_next(rd, &ri);
            if (r < 0) {
                snprintf(st->first_error, sizeof st->first_error, "malformed reply in the burst: %s",
                         sb_reader_error(rd));
                return -1;
            }
            if (r == 0) break;
            b->answered++;
            st->t_last_ns = now;
            if (ri->err) {
                size_t cl = 0;
                while (cl < ri->err_len && ri->err_text[cl] != ' ') cl++;
                if (cl == 3 && !memcmp(ri->err_text, "ERR", 3))
                    for (cl++; cl < ri->err_len && ri->err_text[cl] != ' ';) cl++;
                sb_count_error(st, K_STOP, ri->err_text, cl, ri->err_text, ri->err_len);
                continue;
            }
            hdr_record(&st->lat[K_STOP], (uint64_t)now);
            st->answered[K_STOP]++;
            sb_tick(st, now, 1);
            if (ri->status >= 0) st->statuses[ri->status]++;
            if (ri->status == 0 || b->w->o->target == TG_REDIS) br->accepted++;
            if (ri->order_id[0]) snprintf(br->last_order, sizeof br->last_order, "%s", ri->order_id);
        }
        if (b->answered == b->w->o->burst) {
            br->acked_ms = (double)now / 1e6;
            return sb_reader_keep(rd); /* anything after the N-th answer outlives `in` */
        }
    }
}

/* An INFO answer arrived on ctl: are all the burst's orders at the bank / confirmed? */
static int read_info(burst_state *b, sb_burst_result *br, int64_t t0, bool acked) {
    char err[160];
    sb_reply_info ri = {0};
    long r = sb_read_reply(b->ctl, &b->cin, &ri, 10000, err, sizeof err);
    if (r < 0 || ri.err || !ri.bulk) {
        snprintf(b->w->st.first_error, sizeof b->w->st.first_error, "INFO during the burst: %s",
                 r < 0 ? err : "refused (the agent needs the INFO permission)");
        return -1;
    }
    int64_t now = sb_now_ns() - t0;
    long long bank, conf;
    int rc = info_counts(ri.bulk, ri.bulk_len, &bank, &conf);
    b->info_pending = false;
    if (rc != 0) {
        snprintf(b->w->st.first_error, sizeof b->w->st.first_error, "INFO has no orders_<state> counters");
        return -1;
    }
    /* Until every answer is in, all N are expected; then only those the burst created. */
    long long want = acked ? (long long)br->accepted : (long long)b->w->o->burst;
    if (br->at_bank_ms < 0 && bank - b->base_bank >= want && want > 0) br->at_bank_ms = (double)now / 1e6;
    if (br->confirmed_ms < 0 && conf - b->base_conf >= want && want > 0) br->confirmed_ms = (double)now / 1e6;
    return 0;
}

static int baseline(burst_state *b) {
    char err[160];
    sb_reply_info ri = {0};
    long r = sb_call(b->ctl, info_cmd, sizeof info_cmd - 1, &b->cin, &ri, 10000, err, sizeof err);
    int rc = r > 0 && !ri.err && ri.bulk ? info_counts(ri.bulk, ri.bulk_len, &b->base_bank, &b->base_conf) : -1;
    if (rc != 0)
        snprintf(b->w->st.first_error, sizeof b->w->st.first_error, "INFO before the burst: %s",
                 r < 0 ? err : "no orders_<state> counters (or INFO refused)");
    return rc;
}

static void last_status(burst_state *b, sb_burst_result *br) {
    if (!br->last_order[0]) return;
    sb_cmdbuf c = {0};
    const char *argv[] = {"STATUS", br->last_order};
    if (sb_cmd_append(&c, 2, argv, NULL) != 0) return;
    char err[160];
    sb_reply_info ri = {0};
    long r = sb_call(b->ctl, c.p, c.len, &b->cin, &ri, 10000, err, sizeof err);
    if (r > 0) snprintf(br->last_state, sizeof br->last_state, "%s", ri.err ? "?" : ri.state);
    sb_cmdbuf_free(&c);
}

int sb_burst_run(sb_worker *w, sb_link *fdl, sb_link *ctll, sb_burst_result *br) {
    const sb_opts *o = w->o;
    burst_state b = {.w = w, .fd = fdl, .ctl = ctll && ctll->fd >= 0 ? ctll : NULL};
    int fd = fdl->fd, ctl = b.ctl ? b.ctl->fd : -1; /* for poll */
    br->at_bank_ms = br->confirmed_ms = -1;
    int rc = -1;
    b.out = malloc(o->burst * SB_REQ_BYTES_MAX);
    b.in.capture = b.cin.capture = true; /* the STOPs' order ids, the last one's state */
    if (!b.out || sb_reader_init(&b.in.rd) != 0) {
        snprintf(w->st.first_error, sizeof w->st.first_error, "out of memory for the burst");
        free(b.out);
        sb_rbuf_free(&b.in);
        return -1;
    }
    b.in.rd.capture = true;
    for (uint64_t i = 0; i < o->burst; i++) {
        sb_req r;
        sb_next_req(w, &r);
        b.olen += sb_encode_resp(o, &r, b.out + b.olen);
    }
    if (ctl >= 0 && baseline(&b) != 0) goto out;
    int64_t t0 = sb_now_ns();
    w->run->t0_ns = t0;
    w->st.sent = o->burst;
    bool acked = false;
    int64_t deadline = t0 + o->timeout_ms * 1000000; /* for the answers; then as long again for the bank */
    for (;;) {
        int64_t now = sb_now_ns();
        bool bank_done = ctl < 0 || (br->at_bank_ms >= 0 && br->confirmed_ms >= 0);
        if (acked && bank_done) break;
        if (now > deadline) {
            if (!acked) {
                w->st.timeouts += o->burst - b.answered;
                snprintf(w->st.first_error, sizeof w->st.first_error, "only %llu of %llu answered within %lld ms",
                         (unsigned long long)b.answered, (unsigned long long)o->burst, (long long)o->timeout_ms);
            }
            break;
        }
        if (ctl >= 0 && !b.info_pending && now >= b.next_poll) {
            char err[160];
            if (sb_send_all(b.ctl, info_cmd, sizeof info_cmd - 1, 1000, err, sizeof err) != 0) {
                snprintf(w->st.first_error, sizeof w->st.first_error, "INFO during the burst: %s", err);
                goto out;
            }
            b.info_pending = true;
            b.next_poll = now + o->poll_us * 1000;
        }
        struct pollfd p[2] = {{.fd = fd, .events = (short)(acked ? 0 : POLLIN) | (b.ooff < b.olen ? POLLOUT : 0)},
                              {.fd = ctl, .events = b.info_pending ? POLLIN : 0}};
        int64_t wait_ms = b.info_pending ? 10 : (b.next_poll - now) / 1000000;
        if (wait_ms < 0) wait_ms = 0;
        int n = poll(p, ctl >= 0 ? 2 : 1, (int)wait_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        if (p[0].revents & POLLOUT) {
            ssize_t k = sb_link_send(fdl, b.out + b.ooff, b.olen - b.ooff);
            if (k > 0) b.ooff += (size_t)k;
            else if (k < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(w->st.first_error, sizeof w->st.first_error, "send: %s", strerror(errno));
                goto out;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (read_answers(&b, br, t0) != 0) {
                w->st.closed += o->burst - b.answered;
                goto out;
            }
            if (b.answered == o->burst && !acked) {
                acked = true;
                deadline = sb_now_ns() + o->timeout_ms * 1000000;
            }
        }
        if (ctl >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) && read_info(&b, br, t0, acked) != 0) goto out;
    }
    if (ctl >= 0 && b.info_pending) { /* the last poll's answer, so STATUS reads its own */
        char err[160];
        sb_reply_info ri = {0};
        (void)sb_read_reply(b.ctl, &b.cin, &ri, 10000, err, sizeof err);
    }
    if (ctl >= 0) {
        last_status(&b, br);
        if (acked && br->at_bank_ms < 0 && !w->st.first_error[0])
            snprintf(w->st.first_error, sizeof w->st.first_error,
                     "the orders did not all reach the bank (SENT or later) within %lld ms of the last answer",
                     (long long)o->timeout_ms);
    }
    rc = acked ? 0 : -1;
out:
    free(b.out);
    sb_rbuf_free(&b.in);
    sb_rbuf_free(&b.cin);
    return rc;
}
