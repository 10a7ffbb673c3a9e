/*
 * stopgated: start-up, the event loop, and shutdown.
 *
 * Start: config -> journal replay (healthz says "recovering") -> plugins -> listeners.
 * Loop: wait for completions or the next deadline (expiry, bank deadline, plugin timer);
 * dispatch every completion; run the timers; send the journal's open batch (group commit).
 * SIGTERM/SIGINT: stop accepting, answer what is durable, sync, exit 0.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "follower.h"
#include "gateway.h"
#include "notify.h"
#include "ring.h"
#include "sg_version.h"

#define RING_ENTRIES 4096
#define TICK_MAX_US 100000   /* wake at least this often for housekeeping */
#define DRAIN_TIMEOUT_MS 10000

static void usage(FILE *f) {
    fprintf(f, "usage: stopgated [-c FILE] [--check-config] [--truncate-damaged-tail] [--version]\n"
               "  -c, --config=FILE        configuration (INI); without it the embedded defaults run\n"
               "  --check-config           validate the configuration and exit (0 valid, 1 not)\n"
               "  --truncate-damaged-tail  start even if the journal's last batch was written whole and\n"
               "                           is damaged: cut it and log what was dropped (stopgated(8))\n"
               "  -h, --help, --version\n");
}

static int setup_agents(gateway *gw) {
    config *c = &gw->cfg;
    if (c->nagents == 0) {
        /* A newcomer's gateway: one development agent with every permission. */
        char secret[SECRET_LEN_MAX + 1];
        const char *env = getenv("STOPGATE_DEV_SECRET");
        if (env && *env) {
            /* Truncating would leave the operator with a secret that silently does not work. */
            if (strlen(env) > SECRET_LEN_MAX) {
                LOGE(gw, "STOPGATE_DEV_SECRET is longer than %d bytes", SECRET_LEN_MAX);
                return -1;
            }
            memcpy(secret, env, strlen(env) + 1);
        } else {
            auth_random_secret(secret, 33);
        }
        cfg_agent *a = &c->agents[c->nagents++];
        memset(a, 0, sizeof *a);
        snprintf(a->name, sizeof a->name, "dev");
        a->role = ROLE_DEV;
        if (auth_hash_secret(secret, strlen(secret), a->secret_hash, sizeof a->secret_hash) != 0) return -1;
        LOGW(gw, "no agents configured: development agent enabled");
        LOGI(gw, "dev agent: name=dev secret=%s (export STOPGATE_SECRET=%s; stopctl --agent dev ...)", secret, secret);
    }
    gw->agent_auth = calloc(c->nagents, sizeof *gw->agent_auth);
    if (!gw->agent_auth) return -1;
    for (uint32_t i = 0; i < c->nagents; i++) {
        if (auth_parse(c->agents[i].secret_hash, &gw->agent_auth[i]) != 0) {
            LOGE(gw, "%s:%d: agent %s: secret_hash is not a `stopctl hash-secret` value", c->path, c->agents[i].line,
                 c->agents[i].name);
            return -1;
        }
    }
    return 0;
}

/* The config holds every agent's secret hash (and plugin passwords): say so when other users
 * may read or change it. Group read is the intended way to share it (root:stopgate 0640). */
static void warn_config_mode(gateway *gw) {
    struct stat st;
    if (!gw->cfg.path[0] || stat(gw->cfg.path, &st) != 0) return;
    mode_t loose = st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP);
    if (loose)
        LOGW(gw, "%s is %s by other users (mode %04o) and holds the agents' key material: chmod o-rwx,g-w %s",
             gw->cfg.path, (loose & (S_IWOTH | S_IWGRP)) ? "writable" : "readable", (unsigned)(st.st_mode & 07777),
             gw->cfg.path);
}

/* --check-config: every check a start makes, plugin sections judged by their plugins, without
 * an event loop (nothing is armed on a ring, no journal is opened). */
static int check_config(gateway *gw, const char *argv0) {
    char err[1024];
    glog_open(&gw->log, "");
    warn_config_mode(gw);
    if (gateway_config_check(&gw->cfg, NULL, argv0, &gw->log, err, sizeof err) != 0) {
        fprintf(stderr, "stopgated: %s\n", err);
        return 1;
    }
    /* The TLS certificate and key are loaded and matched, as at start. */
    if (tls_server_init(&gw->tls, &gw->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "stopgated: %s\n", err);
        return 1;
    }
    tls_server_free(&gw->tls);
    printf("%s: configuration ok\n", gw->cfg.path[0] ? gw->cfg.path : "(embedded defaults)");
    return 0;
}

static void arm_signals(gateway *gw) {
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_read(sqe, gw->signal_fd, gw->sigbuf, sizeof(struct signalfd_siginfo), 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_SIGNAL, 0, 0));
}

static void on_signal(gateway *gw, int res) {
    if (res == (int)sizeof(struct signalfd_siginfo)) {
        struct signalfd_siginfo si;
        memcpy(&si, gw->sigbuf, sizeof si);
        if (si.ssi_signo == SIGHUP) {
            char err[1024];
            notify_reloading();
            if (gateway_reload(gw, err, sizeof err) != 0) {
                LOGE(gw, "SIGHUP: reload refused, configuration unchanged: %s", err);
                notify_ready("running; the last reload was refused (see the log)");
            } else {
                notify_ready("running; configuration reloaded");
            }
        } else {
            LOGI(gw, "signal %u: draining", si.ssi_signo);
            gw->stop_requested = true;
        }
    }
    arm_signals(gw);
}

static void on_durable(void *ctx, uint64_t lsn) {
    gateway *gw = ctx;
    engine_on_durable(gw, lsn); /* first: the durable view the replies' readers see */
    server_on_durable(gw, lsn);
    udp_on_durable(gw, lsn);
    dpdk_on_durable(gw, lsn);
}

static int apply_list(void *ctx, const order_rec *r, bool live, char *err, size_t errcap) {
    return lists_apply(ctx, r, live, err, errcap);
}

static void commit_log(void *ctx, const char *level, const char *msg) {
    glog_write(&((gateway *)ctx)->log, level, "%s", msg);
}

static void dispatch(gateway *gw, struct io_uring_cqe *cqe) {
    uint64_t ud = cqe->user_data;
    unsigned kind = ud_kind(ud);
    switch (kind) {
    case UD_ACCEPT:
    case UD_RECV:
    case UD_SEND: server_on_cqe(gw, kind, ud_aux(ud), ud_idx(ud), cqe->res, cqe->flags); break;
    case UD_JOURNAL: journal_on_cqe(&gw->j, ud_aux(ud), cqe->res, clock_mono_ns()); break;
    case UD_PLUGIN: router_on_cqe(gw, ud_idx(ud), cqe->res, cqe->flags); break;
    case UD_METRICS_ACCEPT:
    case UD_METRICS_RECV:
    case UD_METRICS_SEND: metrics_on_cqe(gw, kind, ud_idx(ud), cqe->res, cqe->flags); break;
    case UD_SIGNAL: on_signal(gw, cqe->res); break;
    case UD_UDP_RECV:
    case UD_UDP_SEND: udp_on_cqe(gw, kind, ud_idx(ud), cqe->res); break;
    case UD_DPDK: dpdk_on_cqe(gw, cqe->res); break;
    case UD_AUTH: login_on_cqe(gw, cqe->res); break;
    case UD_CONSOLE: console_on_cqe(gw, ud_aux(ud), ud_idx(ud), cqe->res, cqe->flags); break;
    case UD_CLUSTER: cluster_on_cqe(gw, cqe->res, cqe->flags); break;
    default: break;
    }
}

static int64_t wait_us(gateway *gw) {
    int64_t now_us = clock_now_us();
    int64_t next = now_us + TICK_MAX_US;
    int64_t due_ms = orders_next_due_ms(&gw->o);
    if (due_ms != INT64_MAX && due_ms * 1000 < next) next = due_ms * 1000;
    int64_t p = router_next_poll_us(gw);
    if (p < next) next = p;
    p = console_next_due_us(gw, now_us);
    if (p < next) next = p;
    if (gw->j.retry_at_ns) next = now_us + 1000;
    int64_t lazy_ns = journal_lazy_deadline_ns(&gw->j);
    if (lazy_ns) {
        int64_t lazy_us = now_us + (lazy_ns - clock_mono_ns()) / 1000;
        if (lazy_us < next) next = lazy_us;
    }
    return next > now_us ? next - now_us : 0;
}

/* The ring, with the cheapest completion delivery measured on this loop (issue 13,
 * docs/PERFORMANCE.md "Issue 13"): COOP_TASKRUN, so a completion from an io-wq worker (every
 * journal fdatasync) does not interrupt the loop with an IPI; its task work runs at the
 * loop's next io_uring_enter. SINGLE_ISSUER|DEFER_TASKRUN was measured too and was slower
 * here (more context switches, -6..-24 % STOP/s at 50 connections): with a wait for one
 * completion, each deferred completion wakes the loop alone. Older kernels: plain. */
static int ring_setup(struct io_uring *ring, const char **mode) {
    static const struct {
        unsigned flags;
        const char *name;
    } modes[] = {
        {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, "cooperative task run"},
        {0, "plain"},
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | modes[i].flags,
                                    .cq_entries = RING_ENTRIES * 4};
        rc = io_uring_queue_init_params(RING_ENTRIES, ring, &p);
        if (rc != -EINVAL) {
            *mode = modes[i].name;
            /* Every io_uring_enter then skips the ring's fd lookup; an optimisation only. */
            if (rc == 0) (void)io_uring_register_ring_fd(ring);
            return rc;
        }
    }
    return rc;
}

/* [gateway] spin_us: while a journal batch is in flight, look for a completion for up to
 * spin_us before sleeping, so the fdatasync's completion (posted to the CQ ring by the io-wq
 * worker) is reaped without a sleep and a wake-up of the loop. Submits first (the batch and
 * the replies of the pass must be on their way). A completion, or task work the kernel
 * flags (IORING_SQ_TASKRUN: a socket's receive to run), ends the spin. How long is left to
 * wait after it; 0 when something arrived. */
static int64_t spin_for_completion(gateway *gw, int64_t us) {
    if (!gw->cfg.spin_us || !gw->j.inflight || us == 0) return us;
    struct io_uring *ring = &gw->ring;
    /* A refused submit leaves its SQEs queued: the loop's own submit right after reports it. */
    (void)io_uring_submit(ring);
    int64_t spin_ns = (int64_t)(gw->cfg.spin_us < us ? gw->cfg.spin_us : us) * 1000;
    int64_t t0 = clock_mono_ns(), now = t0;
    do {
        for (int i = 0; i < 64; i++) {
            if (io_uring_cq_ready(ring) || (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN)) {
                gw->m.spin_hits++;
                return 0;
            }
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause(); /* leave the core to the sibling hyperthread */
#endif
        }
        now = clock_mono_ns();
    } while (now - t0 < spin_ns);
    gw->m.spin_misses++;
    return us - (now - t0) / 1000 > 0 ? us - (now - t0) / 1000 : 0;
}

static void run_loop(gateway *gw) {
    int64_t drain_deadline = 0;
    for (;;) {
        int64_t us = spin_for_completion(gw, wait_us(gw));
        struct __kernel_timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
        struct io_uring_cqe *cqe;
        /* Both ask the kernel for events, so pending task work runs at every pass. */
        int rc = us == 0 ? io_uring_submit_and_get_events(&gw->ring)
                         : io_uring_submit_and_wait_timeout(&gw->ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
            LOGE(gw, "io_uring: %s", strerror(-rc));
            break;
        }
        unsigned head, n = 0;
        gw->now_ms = clock_now_ms();
        io_uring_for_each_cqe(&gw->ring, head, cqe) {
            dispatch(gw, cqe);
            n++;
        }
        io_uring_cq_advance(&gw->ring, n);
        gw->now_ms = clock_now_ms();
        engine_tick(gw);
        server_reap_idle(gw);
        server_reap_tls(gw);
        lists_tick(gw);
        console_tick(gw);
        cluster_tick(gw);
        if (cluster_leads(gw)) router_poll_due(gw, clock_now_us()); /* only the leader drives banks */
        commit_flush(&gw->commit, clock_mono_ns());
        if (gw->j.last_error != gw->journal_error_logged) {
            /* One line per change of state, not per retry. */
            if (gw->j.last_error)
                LOGE(gw, "journal: write failed: %s: %s; new orders refused with ERR BUSY, retrying every 100 ms",
                     strerrorname_np(gw->j.last_error), strerror(gw->j.last_error));
            else
                LOGI(gw, "journal: writing again; orders accepted");
            gw->journal_error_logged = gw->j.last_error;
            if (gw->j.last_error) server_on_journal_failed(gw);
        }
        if (gw->stop_requested && gw->phase != PHASE_DRAINING) {
            gw->phase = PHASE_DRAINING;
            gw->j.flush_all = true;
            drain_deadline = gw->now_ms + DRAIN_TIMEOUT_MS;
            server_stop_accepting(gw);
            notify_stopping("draining: answering what is durable, then exiting");
        }
        if (gw->phase == PHASE_DRAINING) {
            if (journal_idle(&gw->j) && server_drained(gw) && udp_drained(gw) && dpdk_drained(gw)) break;
            if (gw->now_ms > drain_deadline) {
                LOGW(gw, "drain timed out after %d ms; exiting with durable state only", DRAIN_TIMEOUT_MS);
                break;
            }
        }
    }
}

/* What the command line asks for. */
typedef struct args {
    const char *conf;
    bool check_only, truncate_damaged;
} args;

/* -1: go on and start; otherwise the exit status (--help, --version, a usage error). */
static int parse_args(int argc, char **argv, args *a) {
    enum { OPT_CHECK = 0x100, OPT_TRUNCATE, OPT_VERSION };
    static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
                                       {"check-config", no_argument, NULL, OPT_CHECK},
                                       {"truncate-damaged-tail", no_argument, NULL, OPT_TRUNCATE},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, OPT_VERSION},
                                       {0}};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'c': a->conf = optarg; break;
        case OPT_CHECK: a->check_only = true; break;
        case OPT_TRUNCATE: a->truncate_damaged = true; break;
        case 'h': usage(stdout); return 0;
        case OPT_VERSION: printf("stopgated (stopgate) %s\n", SG_VERSION); return 0;
        case ':': fprintf(stderr, "stopgated: missing value for '%s'\n", argv[optind - 1]); usage(stderr); return 2;
        default: fprintf(stderr, "stopgated: unknown option '%s'\n", argv[optind - 1]); usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "stopgated: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Defaults, the file, the derived values; 0 or 1 with the reason on stderr. */
static int load_config(gateway *gw, const char *conf) {
    char err[1024];
    config_defaults(&gw->cfg);
    if (conf && config_load(&gw->cfg, conf, err, sizeof err) != 0) {
        fprintf(stderr, "stopgated: %s\n", err);
        return 1;
    }
    if (config_finish(&gw->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "stopgated: %s\n", err);
        return 1;
    }
    if (auth_init() != 0) {
        fprintf(stderr, "stopgated: libsodium failed to initialise\n");
        return 1;
    }
    return 0;
}

/* Signals through a signalfd on the ring; enough descriptors for max_clients. */
static void setup_process(gateway *gw) {
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    gw->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < gw->cfg.max_clients + 256) {
        rl.rlim_cur = rl.rlim_max < gw->cfg.max_clients + 256 ? rl.rlim_max : gw->cfg.max_clients + 256;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The order tables' pages made resident ahead of replay and of new orders, on a thread of
 * their own, while this one goes on (the index prefault below, then the replay). */
static int start_pagefill(gateway *gw) {
    pagefill_init(&gw->pf, PAGEFILL_WINDOW_BYTES);
    int rc = orders_pagefill(&gw->o, &gw->pf);
    if (rc == 0) rc = durview_pagefill(&gw->dv, &gw->pf);
    if (rc == 0) rc = pagefill_start(&gw->pf);
    if (rc != 0)
        LOGE(gw, "pagefill: cannot start the helper thread: %s", strerror(-rc));
    else
        LOGI(gw, "pagefill: %u order tables kept resident %u MiB ahead of use", gw->pf.n,
             PAGEFILL_WINDOW_BYTES >> 20);
    return rc;
}

/* Everything allocated at start: agents, TLS, the ring, the order tables, the engine. */
static int start_tables(gateway *gw) {
    char err[1024];
    if (setup_agents(gw) != 0) return 1;
    if (tls_server_init(&gw->tls, &gw->cfg, err, sizeof err) != 0) {
        LOGE(gw, "%s", err);
        return 1;
    }
    gw->cmd = malloc(sizeof *gw->cmd);
    gw->recbuf = malloc(JOURNAL_RECORD_BYTES_MAX);
    if (!gw->cmd || !gw->recbuf) return 1;
    const char *ring_mode = NULL;
    int rc = ring_setup(&gw->ring, &ring_mode);
    if (rc < 0) {
        LOGE(gw, "io_uring_queue_init: %s", strerror(-rc));
        return 1;
    }
    LOGI(gw, "io_uring: %s", ring_mode);
    if (orders_init(&gw->o, gw->cfg.max_orders, gw->cfg.bank_deadline_ms) != 0 ||
        durview_init(&gw->dv, gw->cfg.max_orders, DURVIEW_ENTRIES_MAX) != 0) {
        LOGE(gw, "cannot reserve tables for max_orders=%u", gw->cfg.max_orders);
        return 1;
    }
    commit_ops cops = {.apply_list = apply_list, .acked = on_durable, .log = commit_log, .ctx = gw};
    commit_init(&gw->commit, &gw->j, &gw->o, &gw->dv, gw->recbuf, &cops);
    if (engine_init(gw, err, sizeof err) != 0) {
        LOGE(gw, "%s", err);
        return 1;
    }
    if (gw->cfg.prefault && start_pagefill(gw) != 0) return 1;
    if (gw->cfg.prefault) {
        int64_t t0 = clock_mono_ns();
        size_t bytes = orders_prefault(&gw->o);
        LOGI(gw, "prefault: %zu MiB of order indexes resident in %.1f ms", bytes >> 20,
             (double)(clock_mono_ns() - t0) / 1e6);
    }
    return 0;
}

/* Metrics, plugins, lists, then the journal replayed and the list table published. */
static int start_recover(gateway *gw, const char *argv0) {
    char err[1024];
    /* Metrics first, so /healthz can say "recovering" while the journal replays. */
    if (metrics_init(gw, err, sizeof err) != 0) {
        LOGE(gw, "metrics: %s", err);
        return 1;
    }
    if (router_init(gw, argv0, err, sizeof err) != 0) {
        LOGE(gw, "%s", err);
        return 1;
    }
    if (lists_init(gw, err, sizeof err) != 0) {
        LOGE(gw, "lists: %s", err);
        return 1;
    }
    /* libcurl's global state, once, before any etcd client's thread starts (etcd.h). */
    if (gw->cfg.cluster_etcd[0] && curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        LOGE(gw, "cluster: curl_global_init failed");
        return 1;
    }
    /* A former leader's journal may end in batches the cluster never committed: cut them. */
    if (gw->cfg.cluster_etcd[0] && follower_reconcile(gw, &gw->keep_through_lsn, err, sizeof err) != 0) {
        LOGE(gw, "cluster: %s", err);
        lists_close(gw);
        return 1;
    }
    if (engine_recover(gw, err, sizeof err) != 0) {
        LOGE(gw, "journal: %s", err);
        lists_close(gw); /* removes the table being built; the published one stays */
        return 1;
    }
    /* Published only now: the table readers see is the replayed one, never a partial one. */
    if (lists_start(gw, err, sizeof err) != 0) {
        LOGE(gw, "lists: %s", err);
        lists_close(gw);
        return 1;
    }
    commit_attach(&gw->commit, &gw->ring);
    if (!gw->cfg.cluster_etcd[0]) engine_finish_cascades(gw); /* a cluster's leader: engine_on_lead */
    /* The cluster lies beneath the engine and the server: what it calls back up into. */
    const cluster_hooks up = {.on_lead = engine_on_lead,
                              .on_writable = engine_finish_cascades,
                              .fail_unacked = server_fail_unacked,
                              .start_follower = follower_start,
                              .tick_follower = follower_tick,
                              .lease_granted = follower_set_lease,
                              .deposed = follower_deposed,
                              .info_lines = follower_info};
    if (cluster_start(gw, &up, err, sizeof err) != 0) {
        LOGE(gw, "cluster: %s", err);
        return 1;
    }
    return 0;
}

/* The listeners (RESP, TLS, UDP, DPDK) and the signals armed; the gateway is running. */
static int start_listeners(gateway *gw) {
    char err[1024];
    if (login_init(gw, err, sizeof err) != 0) {
        LOGE(gw, "auth: %s", err);
        return 1;
    }
    if (server_init(gw, err, sizeof err) != 0) {
        LOGE(gw, "listen: %s", err);
        return 1;
    }
    if (udp_init(gw, err, sizeof err) != 0) {
        LOGE(gw, "udp: %s", err);
        lists_close(gw);
        return 1;
    }
    if (dpdk_start(gw, err, sizeof err) != 0) {
        LOGE(gw, "dpdk: %s", err);
        udp_close(gw);
        lists_close(gw);
        return 1;
    }
    if (console_init(gw, err, sizeof err) != 0) {
        LOGE(gw, "console: %s", err);
        return 1;
    }
    server_arm_accept(gw);
    arm_signals(gw);
    gw->phase = PHASE_RUNNING;
    if (gw->udp.fd >= 0) LOGI(gw, "udp: frames on %s:%u (epoch %u)", gw->cfg.udp.host, gw->cfg.udp.port, gw->udp.epoch);
    if (gw->tls.ctx)
        LOGI(gw, "tls: RESP over TLS on %s:%u (client certificates %s)", gw->cfg.tls_listen.host,
             gw->cfg.tls_listen.port, gw->cfg.tls_ca[0] ? "required" : "not asked for");
    LOGI(gw, "ready: listening on %s:%u (metrics %s:%u, journal %s)", gw->cfg.listen.host, gw->cfg.listen.port,
         gw->cfg.metrics.enabled ? gw->cfg.metrics.host : "off", gw->cfg.metrics.port, gw->cfg.journal_dir);
    char status[256];
    snprintf(status, sizeof status, "accepting on %.64s:%u", gw->cfg.listen.host, gw->cfg.listen.port);
    notify_ready(status); /* after the accept is armed: the first submit makes it live */
    return 0;
}

/* After the loop: the close record, then every module closed in reverse. */
static void shutdown_gateway(gateway *gw) {
    /* A close record last: at the next start, damage to the last batch cannot pass for a
     * torn write. Only when everything is durable (a timed-out drain leaves it out). */
    if (journal_idle(&gw->j)) {
        int src = journal_seal(&gw->j, clock_now_ms());
        if (src != 0) LOGW(gw, "journal: could not write the close record: %s", strerror(-src));
    }
    LOGI(gw, "stopped: durable lsn %llu, %u orders", (unsigned long long)gw->j.durable_lsn, gw->o.n);
    router_shutdown(gw);
    login_close(gw);
    udp_close(gw);
    dpdk_stop(gw);
    cluster_stop(gw);
    if (gw->cfg.cluster_etcd[0]) curl_global_cleanup();
    lists_close(gw);
    journal_close(&gw->j);
    metrics_close(gw);
    console_close(gw);
    io_uring_queue_exit(&gw->ring);
    server_close(gw);
    pagefill_stop(&gw->pf); /* before the tables it touches are unmapped */
    orders_free(&gw->o);
    durview_free(&gw->dv);
    config_free(&gw->cfg);
    free(gw->agent_auth);
    free(gw->cmd);
    free(gw->recbuf);
    engine_free(gw);
    tls_server_free(&gw->tls);
}

int main(int argc, char **argv) {
    args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    static gateway gw_storage; /* large; lives for the whole process */
    gateway *gw = &gw_storage;
    gw->truncate_damaged_tail = a.truncate_damaged;
    gw->argv = argv;
    if (load_config(gw, a.conf) != 0) return 1;
    if (a.check_only) return check_config(gw, argv[0]);
    char err[1024];
    if (gateway_config_check_static(&gw->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "stopgated: %s\n", err);
        return 1;
    }
    glog_open(&gw->log, gw->cfg.log_file);
    warn_config_mode(gw);
    gw->started_ms = gw->now_ms = clock_now_ms();
    gw->phase = PHASE_RECOVERING;
    notify_status("recovering: replaying the journal");
    setup_process(gw);
    if (start_tables(gw) != 0 || start_recover(gw, argv[0]) != 0 || start_listeners(gw) != 0) return 1;
    run_loop(gw);
    shutdown_gateway(gw);
    return 0;
}
