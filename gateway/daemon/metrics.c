/*
 * metrics: counters kept by the other modules, and the HTTP endpoint that shows them
 * (SPEC §4.4): GET /metrics in Prometheus text format, GET /healthz (200 running, 503
 * recovering or draining). A handful of connection slots, all I/O on the loop's ring;
 * a scrape that finds every slot busy is refused with 503 rather than queued.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gateway.h"
#include "listener.h"
#include "ring.h"


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
    m->listen_fd = listener_open(&gw->cfg.metrics, SOCK_STREAM, err, errcap);
    if (m->listen_fd < 0) return -1;
    for (uint32_t i = 0; i < NCONN; i++) {
        m->conns[i].fd = -1;
        buf_init(&m->conns[i].resp, METRICS_PAGE_BYTES_MAX + METRICS_HEADER_BYTES_MAX);
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

/* One unlabelled counter or gauge with its HELP. */
static void w_one(prom_writer *w, prom_type type, const char *name, const char *help, uint64_t v) {
    prom_family(w, name, type, help);
    prom_sample(w, NULL, NULL, v);
}

static void render_orders(gateway *gw, prom_writer *w) {
    metrics *m = &gw->m;
    w_one(w, PROM_GAUGE, "stopgate_up", "1 while the gateway runs.", 1);
    w_one(w, PROM_GAUGE, "stopgate_phase", "0 recovering, 1 running, 2 draining.", (uint64_t)gw->phase);
    prom_family(w, "stopgate_orders", PROM_GAUGE, "Orders by current state.");
    for (int s = 1; s < ST__COUNT; s++) prom_sample(w, "state", order_state_name((uint8_t)s), gw->o.state_count[s]);
    prom_family(w, "stopgate_order_answers_total", PROM_COUNTER, "STOP/FREEZE/RELEASE/EXTEND answers by status.");
    for (int a = 0; a <= ANS_EXTENDED; a++) prom_sample(w, "status", answer_name(a), m->answers[a]);
    w_one(w, PROM_COUNTER, "stopgate_commands_total", "RESP commands executed.", m->commands);
    w_one(w, PROM_COUNTER, "stopgate_errors_total", "RESP commands answered with an error.", m->errors);
    w_one(w, PROM_COUNTER, "stopgate_protocol_errors_total", "Connections closed for a RESP protocol error.",
          m->protocol_errors);
    w_one(w, PROM_COUNTER, "stopgate_checks_total", "CHECKs answered (RESP and UDP).", m->checks);
    w_one(w, PROM_COUNTER, "stopgate_check_hits_total", "CHECKs that found the account LISTED or FROZEN.",
          m->check_hits);
}

static void render_connections(gateway *gw, prom_writer *w) {
    metrics *m = &gw->m;
    const login_stats *ls = &gw->login.st;
    /* Not "stopgate_connections": OpenMetrics reads the counter below as that family. */
    w_one(w, PROM_GAUGE, "stopgate_connections_open", "RESP client connections open now.", gw->srv.count);
    w_one(w, PROM_COUNTER, "stopgate_connections_total", "RESP client connections accepted.", m->connections_total);
    w_one(w, PROM_COUNTER, "stopgate_connections_rejected_total", "Connections refused at max_clients.",
          m->connections_rejected);
    w_one(w, PROM_COUNTER, "stopgate_connections_idle_closed_total", "Connections closed after idle_timeout.",
          m->idle_closed);
    w_one(w, PROM_GAUGE, "stopgate_recv_buffers_held", "Provided receive buffers held by clients now (recv_buffers).",
          gw->srv.rbufs_held);
    w_one(w, PROM_COUNTER, "stopgate_recv_buffers_exhausted_total",
          "Multishot receives ended by an empty buffer ring (that client then reads with a plain recv).",
          gw->srv.recv_nobufs);
    w_one(w, PROM_COUNTER, "stopgate_loop_spins_total",
          "Spins of the loop for a completion while a journal batch was in flight (spin_us).",
          m->spin_hits + m->spin_misses);
    w_one(w, PROM_COUNTER, "stopgate_loop_spin_hits_total",
          "Of those, spins that reaped a completion without sleeping.", m->spin_hits);
    w_one(w, PROM_COUNTER, "stopgate_tls_handshakes_total", "TLS handshakes completed on tls_listen.",
          gw->tls.handshakes);
    w_one(w, PROM_COUNTER, "stopgate_tls_handshake_failures_total", "TLS handshakes refused, failed or timed out.",
          gw->tls.handshake_failures);
    w_one(w, PROM_GAUGE, "stopgate_tls_clients", "TLS client connections open now.", gw->tls.clients);
    w_one(w, PROM_COUNTER, "stopgate_auth_failures_total",
          "AUTHs refused (wrong secret, unknown agent, rate-limited).", ls->failures);
    w_one(w, PROM_COUNTER, "stopgate_auth_rate_limited_total",
          "AUTHs refused at once: the address is over auth_fail_limit.", ls->limited);
    w_one(w, PROM_COUNTER, "stopgate_auth_busy_total", "AUTHs refused with ERR BUSY: the verify queue was full.",
          ls->busy);
    w_one(w, PROM_GAUGE, "stopgate_auth_queue", "AUTHs being verified off the loop now.", authq_busy(&gw->aq));
    w_one(w, PROM_COUNTER, "stopgate_connections_auth_deadline_closed_total",
          "Connections closed for not authenticating in time.", ls->deadline_closed);
    w_one(w, PROM_COUNTER, "stopgate_connections_address_refused_total",
          "Connections refused: the address has too many unauthenticated connections.", ls->addr_refused);
    w_one(w, PROM_COUNTER, "stopgate_connections_preauth_toobig_total",
          "Connections closed for sending too much before AUTH.", ls->preauth_toobig);
}

static void render_udp(gateway *gw, prom_writer *w) {
    const udp_state *u = &gw->udp;
    prom_family(w, "stopgate_udp_frames_total", PROM_COUNTER, "UDP datagrams received and replies sent.");
    prom_sample(w, "dir", "rx", u->rx_frames);
    prom_sample(w, "dir", "tx", u->tx_frames);
    prom_family(w, "stopgate_udp_dropped_total", PROM_COUNTER, "UDP datagrams dropped unanswered, by reason.");
    for (int i = 0; i < UDP_DROP__COUNT; i++) prom_sample(w, "why", udp_drop_name(i), u->drops[i]);
    prom_family(w, "stopgate_udp_messages_total", PROM_COUNTER, "UDP frame messages handled, by type.");
    prom_sample(w, "type", "check", u->mc.checks);
    prom_sample(w, "type", "stop", u->mc.stops);
    prom_sample(w, "type", "hello", u->hellos);
    prom_family(w, "stopgate_udp_errors_total", PROM_COUNTER, "UDP messages answered with an error, and socket errors.");
    prom_sample(w, "why", "message", u->mc.msg_errors);
    prom_sample(w, "why", "malformed_message", u->mc.malformed_msgs);
    prom_sample(w, "why", "epoch", u->epoch_refused);
    prom_sample(w, "why", "io", u->rx_errors + u->tx_errors);
}

static void render_lists(gateway *gw, prom_writer *w) {
    const lists_state *ls = &gw->ls;
    if (ls->t.h) {
        prom_family(w, "stopgate_list_entries", PROM_GAUGE, "Accounts on each fraud list.");
        for (uint32_t i = 0; i < ls->nlists; i++) prom_sample(w, "list", ls->names[i], ls->t.h->list_count[i]);
        w_one(w, PROM_GAUGE, "stopgate_list_table_used", "Entries in the shared list table.",
              atomic_load(&ls->t.h->count));
        w_one(w, PROM_GAUGE, "stopgate_list_table_capacity", "Slots of the shared list table.", ls->t.mask + 1);
        w_one(w, PROM_GAUGE, "stopgate_list_generation", "Generation of the shared list table.", ls->generation);
    }
    w_one(w, PROM_COUNTER, "stopgate_list_loads_total", "LIST.LOADs applied.", ls->loads);
    w_one(w, PROM_COUNTER, "stopgate_list_auto_stops_total", "STOPs ordered by an auto_stop list.", ls->auto_stops);
    w_one(w, PROM_COUNTER, "stopgate_list_frozen_dropped_total", "FROZEN list entries dropped on release or expiry.",
          ls->frozen_dropped);
    metrics *m = &gw->m;
    prom_family(w, "stopgate_bank_results_ignored_total", PROM_COUNTER, "Bank results that changed nothing.");
    prom_sample(w, "why", "duplicate", m->results_dup);
    prom_sample(w, "why", "unknown_instruction", m->results_unknown);
    prom_sample(w, "why", "malformed", m->results_bad);
}

static void render_journal(gateway *gw, prom_writer *w) {
    journal_stats *js = &gw->j.stats;
    w_one(w, PROM_COUNTER, "stopgate_journal_fsyncs_total", "fdatasync calls that made records durable.", js->fsyncs);
    w_one(w, PROM_COUNTER, "stopgate_journal_records_total", "Records appended to the journal.", js->records);
    w_one(w, PROM_COUNTER, "stopgate_journal_bytes_total", "Bytes appended to the journal.", js->bytes);
    w_one(w, PROM_COUNTER, "stopgate_journal_write_errors_total", "Journal writes or fsyncs that failed.",
          js->write_errors);
    w_one(w, PROM_GAUGE, "stopgate_journal_durable_lsn", "Position of the last durable journal record.",
          gw->j.durable_lsn);
    prom_family(w, "stopgate_journal_records_per_fsync", PROM_HISTOGRAM, "Records made durable by one group commit.");
    char le[32];
    uint64_t cum = 0, lim = 1;
    for (int k = 0; k < JOURNAL_RPF_BUCKETS - 1; k++, lim *= 2) {
        cum += js->rpf_buckets[k];
        snprintf(le, sizeof le, "%llu", (unsigned long long)lim);
        prom_bucket(w, le, cum);
    }
    cum += js->rpf_buckets[JOURNAL_RPF_BUCKETS - 1];
    snprintf(le, sizeof le, "%llu", (unsigned long long)js->records);
    prom_histogram_end(w, le, cum);
}

static void render_latency(gateway *gw, prom_writer *w) {
    metrics *m = &gw->m;
    prom_family(w, "stopgate_stop_latency_seconds", PROM_HISTOGRAM, "From request parsed to durable answer released.");
    char le[32];
    uint64_t cum = 0, lim = 25;
    for (int k = 0; k < LAT_BUCKETS; k++, lim *= 2) {
        cum += m->stop_lat_buckets[k];
        snprintf(le, sizeof le, "%.6f", lim / 1e6);
        prom_bucket(w, le, cum);
    }
    cum += m->stop_lat_buckets[LAT_BUCKETS];
    assert(cum == m->stop_lat_count);
    snprintf(le, sizeof le, "%.6f", m->stop_lat_sum_us / 1e6);
    prom_histogram_end(w, le, m->stop_lat_count);
}

/* Pending and overdue orders per bank, at most METRICS_BANKS_SHOWN_MAX banks; true when
 * more banks had pending orders than that. */
static bool count_banks(const gateway *gw, bank_count *banks, uint32_t *nb_out) {
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
    *nb_out = nb;
    return truncated;
}

static void render_banks(gateway *gw, prom_writer *w) {
    static bank_count banks[METRICS_BANKS_SHOWN_MAX]; /* scrape-time scratch, loop thread only */
    uint32_t nb = 0;
    bool truncated = count_banks(gw, banks, &nb);
    /* At capacity new orders get ERR BUSY (max_outbox). */
    w_one(w, PROM_GAUGE, "stopgate_outbox_instructions", "Instructions waiting to be handed to a bank plugin.",
          gw->ob.len);
    w_one(w, PROM_GAUGE, "stopgate_outbox_capacity", "Room in the outbox (max_outbox).", gw->ob.cap);
    prom_family(w, "stopgate_bank_pending", PROM_GAUGE, "Orders waiting for the bank's answer (ACCEPTED, SENT, OVERDUE).");
    for (uint32_t i = 0; i < nb; i++) prom_sample(w, "bank", banks[i].bank, banks[i].pending);
    prom_family(w, "stopgate_bank_overdue", PROM_GAUGE, "Orders past bank_deadline_ms without an answer.");
    for (uint32_t i = 0; i < nb; i++) prom_sample(w, "bank", banks[i].bank, banks[i].overdue);
    w_one(w, PROM_GAUGE, "stopgate_bank_series_truncated",
          "1 when more banks had pending orders than METRICS_BANKS_SHOWN_MAX.", truncated);
}

/* The plugins' own counters, grouped by name so that each family is written once with all
 * its instances (two redis_streams instances share stopgate_plugin_queued). A name a
 * plugin got wrong (prom.h's rules) is left out rather than allowed to spoil the page. */
typedef struct plugin_stat_row {
    const char *plugin;
    sg_plugin_stat st;
} plugin_stat_row;

static void render_plugin_stats(gateway *gw, prom_writer *w) {
    static plugin_stat_row rows[PLUGINS_MAX * SG_PLUGIN_STATS_MAX]; /* scrape-time scratch, loop thread only */
    static bool done[PLUGINS_MAX * SG_PLUGIN_STATS_MAX];
    size_t nrows = 0;
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) {
        plugin_inst *p = &gw->rt.plugins[i];
        if (!p->ops || !p->ops->stats) continue;
        sg_plugin_stat st[SG_PLUGIN_STATS_MAX];
        size_t n = p->ops->stats(p->state, st, SG_PLUGIN_STATS_MAX);
        if (n > SG_PLUGIN_STATS_MAX) n = SG_PLUGIN_STATS_MAX; /* a plugin's bug, not worth a crash */
        for (size_t k = 0; k < n; k++) rows[nrows++] = (plugin_stat_row){p->name, st[k]};
    }
    memset(done, 0, nrows * sizeof done[0]);
    char name[PROM_NAME_MAX + 1];
    for (size_t i = 0; i < nrows; i++) {
        if (done[i] || !rows[i].st.name) continue;
        prom_type type = rows[i].st.counter ? PROM_COUNTER : PROM_GAUGE;
        int n = snprintf(name, sizeof name, "stopgate_plugin_%s", rows[i].st.name);
        bool ok = n > 0 && (size_t)n < sizeof name &&
                  prom_family_try(w, name, type, rows[i].st.help ? rows[i].st.help : "A plugin's own counter.");
        for (size_t k = i; k < nrows; k++) {
            if (done[k] || !rows[k].st.name || strcmp(rows[k].st.name, rows[i].st.name)) continue;
            done[k] = true;
            if (ok && (rows[k].st.counter != 0) == (type == PROM_COUNTER))
                prom_sample(w, "plugin", rows[k].plugin, rows[k].st.value);
        }
    }
}

static void render_plugins(gateway *gw, prom_writer *w) {
    prom_family(w, "stopgate_plugin_submitted_total", PROM_COUNTER, "Instructions handed to each bank plugin.");
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) prom_sample(w, "plugin", gw->rt.plugins[i].name, gw->rt.plugins[i].submitted);
    prom_family(w, "stopgate_plugin_results_total", PROM_COUNTER, "Bank results each plugin passed back.");
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) prom_sample(w, "plugin", gw->rt.plugins[i].name, gw->rt.plugins[i].results);
    render_plugin_stats(gw, w);
}

/* The whole page, one group of families per module. A new family goes into the group of
 * the module that counts it (or a new render_* here); prom.h checks its name, type and
 * HELP, and test_metrics runs promtool over the result. */
static void render(gateway *gw, buf *b) {
    prom_writer w;
    prom_init(&w, b);
    render_orders(gw, &w);
    render_connections(gw, &w);
    render_udp(gw, &w);
    dpdk_metrics(gw, &w);
    console_metrics(gw, &w);
    cluster_metrics(gw, &w); /* role standalone on a single node */
    render_lists(gw, &w);
    render_journal(gw, &w);
    render_latency(gw, &w);
    render_banks(gw, &w);
    render_plugins(gw, &w);
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
    buf_init(&body, METRICS_PAGE_BYTES_MAX);
    int code = 200;
    const char *ctype = "text/plain; version=0.0.4; charset=utf-8";
    if (!strncmp(mc->req, "GET /metrics", 12)) {
        render(gw, &body);
        if (body.overflowed) { /* a page with holes would mislead: say so instead */
            buf_reset(&body);
            code = 500;
            ctype = "text/plain";
            buf_printf(&body, "metrics page larger than METRICS_PAGE_BYTES_MAX\n");
        }
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
               code, code == 200 ? "OK" : code == 503 ? "Service Unavailable" : code == 500 ? "Internal Server Error" : "Not Found",
               ctype, body.len);
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
