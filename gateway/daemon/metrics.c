/*
 * metrics: counters kept by the other modules, and the HTTP endpoint that shows them
 * (SPEC §4.4): GET /metrics in Prometheus text format, GET /healthz (200 running, 503
 * recovering or draining). A handful of connection slots, all I/O on the loop's ring;
 * a scrape that finds every slot busy is refused with 503 rather than queued.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gateway.h"
#include "ring.h"

int server_listen_socket(const cfg_addr *a, int type, char *err, size_t errcap);

#define NCONN ((uint32_t)(sizeof((metrics *)0)->conns / sizeof((metrics *)0)->conns[0]))

void metrics_observe_stop_us(metrics *m, uint64_t us) {
    int k = 0;
    uint64_t lim = 25;
    while (k < LAT_BUCKETS && us > lim) {
        lim *= 2;
        k++;
    }
    m->stop_lat_buckets[k]++;
    m->stop_lat_count++;
    m->stop_lat_sum_us += us;
}

int metrics_init(gateway *gw, char *err, size_t errcap) {
    metrics *m = &gw->m;
    m->listen_fd = -1;
    if (!gw->cfg.metrics.enabled) return 0;
    m->listen_fd = server_listen_socket(&gw->cfg.metrics, SOCK_STREAM, err, errcap);
    if (m->listen_fd < 0) return -1;
    for (uint32_t i = 0; i < NCONN; i++) {
        m->conns[i].fd = -1;
        buf_init(&m->conns[i].resp, 1 << 20);
    }
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_multishot_accept(sqe, m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(UD_METRICS_ACCEPT, 0, 0));
    return 0;
}

/* Per-bank pending/overdue, computed by one pass over the orders at scrape time. */
typedef struct bank_count {
    char bank[BANK_LEN_MAX + 1];
    uint64_t pending, overdue;
} bank_count;
/* METRICS_BANKS_SHOWN_MAX: limits.h */

/* One unlabelled counter or gauge: "# TYPE name type" and its value. */
static void w_metric(buf *b, const char *type, const char *name, unsigned long long v) {
    buf_printf(b, "# TYPE %s %s\n%s %llu\n", name, type, name, v);
}

/* A plugin's own counters (e.g. redis_streams: XADDs Redis refused), untyped HELP-less
 * series so that two instances of one plugin type do not repeat a family's HELP. */
static void render_plugin_stats(buf *b, plugin_inst *p) {
    if (!p->ops || !p->ops->stats) return;
    sg_plugin_stat st[SG_PLUGIN_STATS_MAX];
    size_t n = p->ops->stats(p->state, st, SG_PLUGIN_STATS_MAX);
    if (n > SG_PLUGIN_STATS_MAX) n = SG_PLUGIN_STATS_MAX; /* a plugin's bug, not worth a crash */
    for (size_t i = 0; i < n; i++)
        buf_printf(b, "stopgate_plugin_%s{plugin=\"%s\"} %llu\n", st[i].name, p->name,
                   (unsigned long long)st[i].value);
}

static void render(gateway *gw, buf *b) {
    metrics *m = &gw->m;
    journal_stats *js = &gw->j.stats;
    buf_printf(b, "# HELP stopgate_up 1 while the gateway runs.\n# TYPE stopgate_up gauge\nstopgate_up 1\n");
    buf_printf(b, "# HELP stopgate_phase 0 recovering, 1 running, 2 draining.\n# TYPE stopgate_phase gauge\n"
                  "stopgate_phase %d\n", gw->phase);
    buf_printf(b, "# HELP stopgate_orders Orders by current state.\n# TYPE stopgate_orders gauge\n");
    for (int s = 1; s < ST__COUNT; s++)
        buf_printf(b, "stopgate_orders{state=\"%s\"} %llu\n", order_state_name((uint8_t)s),
                   (unsigned long long)gw->o.state_count[s]);
    buf_printf(b, "# HELP stopgate_order_answers_total STOP/FREEZE/RELEASE/EXTEND answers by status.\n"
                  "# TYPE stopgate_order_answers_total counter\n");
    for (int a = 0; a <= ANS_EXTENDED; a++)
        buf_printf(b, "stopgate_order_answers_total{status=\"%s\"} %llu\n", answer_name(a),
                   (unsigned long long)m->answers[a]);
    w_metric(b, "counter", "stopgate_commands_total", m->commands);
    w_metric(b, "counter", "stopgate_errors_total", m->errors);
    w_metric(b, "counter", "stopgate_protocol_errors_total", m->protocol_errors);
    buf_printf(b, "# TYPE stopgate_connections gauge\nstopgate_connections %u\n", gw->srv.count);
    w_metric(b, "counter", "stopgate_connections_total", m->connections_total);
    w_metric(b, "counter", "stopgate_connections_rejected_total", m->connections_rejected);
    w_metric(b, "counter", "stopgate_connections_idle_closed_total", m->idle_closed);
    buf_printf(b, "# HELP stopgate_tls_handshakes_total TLS handshakes completed on tls_listen.\n");
    w_metric(b, "counter", "stopgate_tls_handshakes_total", gw->tls.handshakes);
    buf_printf(b, "# HELP stopgate_tls_handshake_failures_total TLS handshakes refused, failed or timed out.\n");
    w_metric(b, "counter", "stopgate_tls_handshake_failures_total", gw->tls.handshake_failures);
    w_metric(b, "gauge", "stopgate_tls_clients", gw->tls.clients);
    const login_stats *ls_ = &gw->login.st;
    buf_printf(b, "# HELP stopgate_auth_failures_total AUTHs refused (wrong secret, unknown agent, rate-limited).\n");
    w_metric(b, "counter", "stopgate_auth_failures_total", ls_->failures);
    buf_printf(b, "# HELP stopgate_auth_rate_limited_total AUTHs refused at once: the address is over auth_fail_limit.\n");
    w_metric(b, "counter", "stopgate_auth_rate_limited_total", ls_->limited);
    w_metric(b, "counter", "stopgate_auth_busy_total", ls_->busy);
    w_metric(b, "gauge", "stopgate_auth_queue", authq_busy(&gw->aq));
    w_metric(b, "counter", "stopgate_connections_auth_deadline_closed_total", ls_->deadline_closed);
    w_metric(b, "counter", "stopgate_connections_address_refused_total", ls_->addr_refused);
    w_metric(b, "counter", "stopgate_connections_preauth_toobig_total", ls_->preauth_toobig);
    w_metric(b, "counter", "stopgate_checks_total", m->checks);
    w_metric(b, "counter", "stopgate_check_hits_total", m->check_hits);
    const udp_state *u = &gw->udp;
    buf_printf(b, "# HELP stopgate_udp_frames_total UDP datagrams received and replies sent.\n"
                  "# TYPE stopgate_udp_frames_total counter\n"
                  "stopgate_udp_frames_total{dir=\"rx\"} %llu\nstopgate_udp_frames_total{dir=\"tx\"} %llu\n",
               (unsigned long long)u->rx_frames, (unsigned long long)u->tx_frames);
    buf_printf(b, "# HELP stopgate_udp_dropped_total UDP datagrams dropped unanswered, by reason.\n"
                  "# TYPE stopgate_udp_dropped_total counter\n");
    for (int i = 0; i < UDP_DROP__COUNT; i++)
        buf_printf(b, "stopgate_udp_dropped_total{why=\"%s\"} %llu\n", udp_drop_name(i), (unsigned long long)u->drops[i]);
    buf_printf(b, "# TYPE stopgate_udp_messages_total counter\n"
                  "stopgate_udp_messages_total{type=\"check\"} %llu\nstopgate_udp_messages_total{type=\"stop\"} %llu\n"
                  "stopgate_udp_messages_total{type=\"hello\"} %llu\n",
               (unsigned long long)u->mc.checks, (unsigned long long)u->mc.stops, (unsigned long long)u->hellos);
    buf_printf(b, "# TYPE stopgate_udp_errors_total counter\n"
                  "stopgate_udp_errors_total{why=\"message\"} %llu\nstopgate_udp_errors_total{why=\"malformed_message\"} %llu\n"
                  "stopgate_udp_errors_total{why=\"epoch\"} %llu\nstopgate_udp_errors_total{why=\"io\"} %llu\n",
               (unsigned long long)u->mc.msg_errors, (unsigned long long)u->mc.malformed_msgs,
               (unsigned long long)u->epoch_refused, (unsigned long long)(u->rx_errors + u->tx_errors));
    dpdk_metrics(gw, b);
    cluster_metrics(gw, b); /* role standalone on a single node */
    const lists_state *ls = &gw->ls;
    if (ls->t.h) {
        buf_printf(b, "# TYPE stopgate_list_entries gauge\n");
        for (uint32_t i = 0; i < ls->nlists; i++)
            buf_printf(b, "stopgate_list_entries{list=\"%s\"} %llu\n", ls->names[i],
                       (unsigned long long)ls->t.h->list_count[i]);
        w_metric(b, "gauge", "stopgate_list_table_used", atomic_load(&ls->t.h->count));
        w_metric(b, "gauge", "stopgate_list_table_capacity", (ls->t.mask + 1));
        w_metric(b, "gauge", "stopgate_list_generation", ls->generation);
    }
    w_metric(b, "counter", "stopgate_list_loads_total", ls->loads);
    w_metric(b, "counter", "stopgate_list_auto_stops_total", ls->auto_stops);
    w_metric(b, "counter", "stopgate_list_frozen_dropped_total", ls->frozen_dropped);
    buf_printf(b, "# HELP stopgate_bank_results_ignored_total Bank results that changed nothing.\n"
                  "# TYPE stopgate_bank_results_ignored_total counter\n"
                  "stopgate_bank_results_ignored_total{why=\"duplicate\"} %llu\n"
                  "stopgate_bank_results_ignored_total{why=\"unknown_instruction\"} %llu\n"
                  "stopgate_bank_results_ignored_total{why=\"malformed\"} %llu\n",
               (unsigned long long)m->results_dup, (unsigned long long)m->results_unknown,
               (unsigned long long)m->results_bad);
    buf_printf(b, "# HELP stopgate_journal_fsyncs_total fdatasync calls that made records durable.\n"
                  "# TYPE stopgate_journal_fsyncs_total counter\nstopgate_journal_fsyncs_total %llu\n",
               (unsigned long long)js->fsyncs);
    w_metric(b, "counter", "stopgate_journal_records_total", js->records);
    w_metric(b, "counter", "stopgate_journal_bytes_total", js->bytes);
    w_metric(b, "counter", "stopgate_journal_write_errors_total", js->write_errors);
    w_metric(b, "gauge", "stopgate_journal_durable_lsn", gw->j.durable_lsn);
    buf_printf(b, "# HELP stopgate_journal_records_per_fsync Records made durable by one group commit.\n"
                  "# TYPE stopgate_journal_records_per_fsync histogram\n");
    uint64_t cum = 0, lim = 1;
    for (int k = 0; k < JOURNAL_RPF_BUCKETS - 1; k++, lim *= 2) {
        cum += js->rpf_buckets[k];
        buf_printf(b, "stopgate_journal_records_per_fsync_bucket{le=\"%llu\"} %llu\n", (unsigned long long)lim,
                   (unsigned long long)cum);
    }
    cum += js->rpf_buckets[JOURNAL_RPF_BUCKETS - 1];
    buf_printf(b, "stopgate_journal_records_per_fsync_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    buf_printf(b, "stopgate_journal_records_per_fsync_sum %llu\nstopgate_journal_records_per_fsync_count %llu\n",
               (unsigned long long)js->records, (unsigned long long)cum);
    buf_printf(b, "# HELP stopgate_stop_latency_seconds From request parsed to durable answer released.\n"
                  "# TYPE stopgate_stop_latency_seconds histogram\n");
    cum = 0;
    lim = 25;
    for (int k = 0; k < LAT_BUCKETS; k++, lim *= 2) {
        cum += m->stop_lat_buckets[k];
        buf_printf(b, "stopgate_stop_latency_seconds_bucket{le=\"%.6f\"} %llu\n", lim / 1e6, (unsigned long long)cum);
    }
    cum += m->stop_lat_buckets[LAT_BUCKETS];
    buf_printf(b, "stopgate_stop_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    buf_printf(b, "stopgate_stop_latency_seconds_sum %.6f\nstopgate_stop_latency_seconds_count %llu\n",
               m->stop_lat_sum_us / 1e6, (unsigned long long)m->stop_lat_count);

    static bank_count banks[METRICS_BANKS_SHOWN_MAX];
    uint32_t nb = 0;
    bool truncated = false;
    for (uint32_t no = 1; no <= gw->o.n; no++) {
        const order *o = &gw->o.v[no];
        bool pend = o->state == ST_ACCEPTED || o->state == ST_SENT || o->state == ST_OVERDUE;
        if (!pend) continue;
        uint32_t i;
        for (i = 0; i < nb; i++)
            if (!strcmp(banks[i].bank, o->bank)) break;
        if (i == nb) {
            if (nb == METRICS_BANKS_SHOWN_MAX) {
                truncated = true;
                continue;
            }
            memset(&banks[nb], 0, sizeof banks[nb]);
            snprintf(banks[nb].bank, sizeof banks[nb].bank, "%s", o->bank);
            nb++;
        }
        banks[i].pending++;
        if (o->state == ST_OVERDUE) banks[i].overdue++;
    }
    /* At capacity new orders get ERR BUSY (max_outbox). */
    w_metric(b, "gauge", "stopgate_outbox_instructions", gw->ob.len);
    w_metric(b, "gauge", "stopgate_outbox_capacity", gw->ob.cap);
    buf_printf(b, "# HELP stopgate_bank_pending Orders waiting for the bank's answer (ACCEPTED, SENT, OVERDUE).\n"
                  "# TYPE stopgate_bank_pending gauge\n");
    for (uint32_t i = 0; i < nb; i++)
        buf_printf(b, "stopgate_bank_pending{bank=\"%s\"} %llu\n", banks[i].bank, (unsigned long long)banks[i].pending);
    buf_printf(b, "# HELP stopgate_bank_overdue Orders past bank_deadline_ms without an answer.\n"
                  "# TYPE stopgate_bank_overdue gauge\n");
    for (uint32_t i = 0; i < nb; i++)
        buf_printf(b, "stopgate_bank_overdue{bank=\"%s\"} %llu\n", banks[i].bank, (unsigned long long)banks[i].overdue);
    buf_printf(b, "# TYPE stopgate_bank_series_truncated gauge\nstopgate_bank_series_truncated %d\n", truncated);
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) {
        plugin_inst *p = &gw->rt.plugins[i];
        buf_printf(b, "stopgate_plugin_submitted_total{plugin=\"%s\"} %llu\n", p->name, (unsigned long long)p->submitted);
        buf_printf(b, "stopgate_plugin_results_total{plugin=\"%s\"} %llu\n", p->name, (unsigned long long)p->results);
        render_plugin_stats(b, p);
    }
}

static void conn_close(gateway *gw, uint32_t i) {
    struct metrics_conn *mc = &gw->m.conns[i];
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_close(sqe, mc->fd);
    io_uring_sqe_set_data64(sqe, ud_make(UD_IGNORE, 0, 0));
    mc->fd = -1;
    mc->in_use = false;
    buf_reset(&mc->resp);
}

static void respond(gateway *gw, uint32_t i) {
    struct metrics_conn *mc = &gw->m.conns[i];
    buf body;
    buf_init(&body, 1 << 20);
    int code = 200;
    const char *ctype = "text/plain; version=0.0.4";
    if (!strncmp(mc->req, "GET /metrics", 12)) {
        render(gw, &body);
    } else if (!strncmp(mc->req, "GET /healthz", 12)) {
        code = gw->phase == PHASE_RUNNING ? 200 : 503;
        buf_printf(&body, "%s\n", gw->phase == PHASE_RUNNING ? "ok" : gw->phase == PHASE_DRAINING ? "draining" : "recovering");
        ctype = "text/plain";
    } else {
        code = 404;
        buf_printf(&body, "not found: GET /metrics or /healthz\n");
        ctype = "text/plain";
    }
    buf_printf(&mc->resp, "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
               code, code == 200 ? "OK" : code == 503 ? "Service Unavailable" : "Not Found", ctype, body.len);
    buf_append(&mc->resp, body.data, body.len);
    buf_free(&body);
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_send(sqe, mc->fd, mc->resp.data, mc->resp.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(UD_METRICS_SEND, 0, i));
}

static void arm_recv(gateway *gw, uint32_t i) {
    struct metrics_conn *mc = &gw->m.conns[i];
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_recv(sqe, mc->fd, mc->req + mc->req_len, sizeof mc->req - 1 - mc->req_len, 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_METRICS_RECV, 0, i));
}

void metrics_on_cqe(gateway *gw, unsigned kind, uint32_t idx, int res, uint32_t flags) {
    metrics *m = &gw->m;
    if (kind == UD_METRICS_ACCEPT) {
        if (!(flags & IORING_CQE_F_MORE) && m->listen_fd >= 0) {
            struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
            io_uring_prep_multishot_accept(sqe, m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            io_uring_sqe_set_data64(sqe, ud_make(UD_METRICS_ACCEPT, 0, 0));
        }
        if (res < 0) return;
        uint32_t i;
        for (i = 0; i < NCONN && m->conns[i].in_use; i++) {}
        if (i == NCONN) {
            close(res);
            return;
        }
        m->conns[i].fd = res;
        m->conns[i].in_use = true;
        m->conns[i].req_len = 0;
        arm_recv(gw, i);
        return;
    }
    if (idx >= NCONN || !m->conns[idx].in_use) return;
    struct metrics_conn *mc = &m->conns[idx];
    if (kind == UD_METRICS_RECV) {
        if (res <= 0) {
            conn_close(gw, idx);
            return;
        }
        mc->req_len += (uint32_t)res;
        mc->req[mc->req_len] = 0;
        if (strstr(mc->req, "\r\n\r\n") || strstr(mc->req, "\n\n")) respond(gw, idx);
        else if (mc->req_len >= sizeof mc->req - 1) conn_close(gw, idx);
        else arm_recv(gw, idx);
    } else if (kind == UD_METRICS_SEND) {
        if (res > 0 && (size_t)res < mc->resp.len) {
            buf_consume(&mc->resp, (size_t)res);
            struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
            io_uring_prep_send(sqe, mc->fd, mc->resp.data, mc->resp.len, MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, ud_make(UD_METRICS_SEND, 0, idx));
            return;
        }
        conn_close(gw, idx);
    }
}

void metrics_close(gateway *gw) {
    for (uint32_t i = 0; i < NCONN; i++) buf_free(&gw->m.conns[i].resp);
    if (gw->m.listen_fd >= 0) close(gw->m.listen_fd);
    gw->m.listen_fd = -1;
}
