/*
 * stopbench: load generator and report for stopgate (SPEC §8, docs/PERFORMANCE.md).
 *
 *   STOPGATE_SECRET=... stopbench [-h HOST] [-p PORT] [--agent NAME] --op check|stop|mixed|ping
 *       [--transport resp|udp] [--target stopgate|redis] [--requests N | --duration S]
 *       [--rate PER_S] [--connections C] [--pipeline P] [--threads T] [--batch B]
 *       [--burst N] [--json FILE] [--plot FILE.svg|.png] [--list NAME] [--preload N]
 *       [--list-size N] [--hit-ratio F] [--stop-ratio F] [--bank B] [--udp-port PORT]
 *       [--timeout-ms MS] [--udp-retry-ms MS] [--poll-us US] [--quiet]
 *
 * Run `stopbench --help` for what each option does. This file: the command line, the setup
 * (connections and AUTH, or the UDP HELLO and key; the list preload), the worker threads and
 * the progress line, and the exit status. The modules are listed in sb.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stopgate/frame.h>

#include "sb_ctl.h"
#include "sb_sched.h"
#include "sg_version.h"

#define DIAL_TIMEOUT_MS 3000
#define AUTH_TIMEOUT_MS 30000     /* the first AUTH runs Argon2id on the gateway */
#define PRELOAD_TIMEOUT_MS 300000 /* LIST.LOAD of millions of rows */
#define LIST_INLINE_MAX (500 * 1024) /* LIST.LOAD - <csv> takes at most 512 KiB (docs/lists.md) */
#define HELLO_TRIES 3
#define PROGRESS_MIN_S 2.0

static const char usage_text[] =
    "usage: STOPGATE_SECRET=... stopbench [-h HOST] [-p PORT] [--agent NAME] --op check|stop|mixed|ping\n"
    "         [--transport resp|udp] [--requests N | --duration S] [--rate PER_S] [--connections C]\n"
    "         [--pipeline P] [--burst N] [--json FILE] [--plot FILE.svg|.png] [options]\n"
    "\n"
    "  -h, --host HOST    gateway address (127.0.0.1); every option also takes --opt=value\n"
    "  -p, --port PORT    RESP port (7379; 6379 with --target redis)\n"
    "  --agent NAME       agent to AUTH as (dev); the secret comes from STOPGATE_SECRET, never argv\n"
    "  --op OP            check | stop | mixed (CHECKs and --stop-ratio STOPs) | ping\n"
    "  --transport T      resp (RESP over TCP, default) | udp (binary frames, libstopgate's codec)\n"
    "  --target T         stopgate (default) | redis: the same generator sends PING, SISMEMBER <list>\n"
    "                     BANK:ACCOUNT for check and SET <id> <value> for stop, for the peer numbers\n"
    "                     (Redis AUTH: from REDISCLI_AUTH, when set)\n"
    "  -n, --requests N   answer N requests, or --duration S seconds (default: --duration 5)\n"
    "  --rate PER_S       open loop: PER_S requests/s on a fixed schedule, latency from each request's\n"
    "                     intended send time (coordinated omission corrected); default closed loop\n"
    "  -c, --connections C  TCP connections (UDP: flows) (10)\n"
    "  -P, --pipeline P   closed loop: requests (UDP: datagrams) outstanding per connection (1)\n"
    "  --threads T        worker threads (min(C, CPUs))\n"
    "  --batch B          UDP: messages per datagram (1)\n"
    "  --burst N          N STOPs at once on one connection: burst_acked_ms and burst_at_bank_ms\n"
    "  --json FILE        write the JSON report (also when the run fails)\n"
    "  --plot FILE        latency by percentile and throughput over time, .svg or .png (gnuplot)\n"
    "  --list NAME        the list CHECKs hit (mule); with --target redis the set's key\n"
    "  --preload N        before the run, LIST.LOAD (Redis: SADD) N entries into --list\n"
    "  --list-size N      the list already holds stopbench's first N entries (no preload)\n"
    "  --hit-ratio F      share of CHECKs on listed accounts (0.5 when a list is known)\n"
    "  --stop-ratio F     --op mixed: share of STOPs (0.1)\n"
    "  --bank B           bank code of every request (ICBC)\n"
    "  --udp-port PORT    the gateway's UDP port (7380)\n"
    "  --timeout-ms MS    a connection silent this long with requests outstanding fails them (10000)\n"
    "  --udp-retry-ms MS  UDP: resend an unanswered datagram after MS (250), 3 times\n"
    "  --poll-us US       --burst: INFO poll interval for burst_at_bank_ms (500)\n"
    "  --quiet            no summary on stdout, no progress line\n"
    "  --help, --version  this text; the version\n"
    "  --tls              RESP over TLS (the gateway's tls_listen port), like redis-cli:\n"
    "  --cacert FILE      CA that signed the server's certificate (else the system's CAs)\n"
    "  --cert FILE --key FILE  client certificate (for a gateway with tls_ca)\n"
    "  --sni NAME         server name to send and verify (else -h)\n"
    "\n"
    "exit status: 0 ok; 1 errors (error replies, timeouts, AUTH refused, orders not at the bank);\n"
    "2 usage; 3 cannot connect; 4 open loop: the rate was not sustained; 130 interrupted\n";

static sb_run g_run;
static struct rusage g_ru0; /* at the start of the timed run: setup (Argon2, preload) is not the generator's cost */

static void on_sigint(int sig) {
    (void)sig;
    atomic_store(&g_run.stop, 1);
}

static void usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "stopbench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(stopbench --help for the options)\n");
    exit(SB_EXIT_USAGE);
}

static long long num_ll(const char *name, const char *v, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: '%%s' is not an integer in %lld..%lld", name, lo, hi);
        usage_error(msg, v);
    }
    return x;
}

static double num_d(const char *name, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: '%%s' is not a number in %g..%g", name, lo, hi);
        usage_error(msg, v);
    }
    return x;
}

static int pick(const char *name, const char *v, const char *const *choices, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, choices[i])) return i;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: unknown value '%%s'", name);
    usage_error(msg, v);
    return -1;
}

/* What was given, for the checks that depend on it. */
typedef struct seen_opts {
    bool op, hit, conns, batch;
    const char *port;
} seen_opts;

enum {
    O_AGENT = 0x100, O_OP, O_TRANSPORT, O_TARGET, O_DURATION, O_RATE, O_THREADS, O_BATCH, O_BURST, O_JSON,
    O_PLOT, O_LIST, O_PRELOAD, O_LIST_SIZE, O_HIT, O_STOP_RATIO, O_BANK, O_UDP_PORT, O_TIMEOUT, O_RETRY, O_POLL,
    O_QUIET, O_HELP, O_VERSION
};

static const struct option long_opts[] = {
    {"host", required_argument, NULL, 'h'},        {"port", required_argument, NULL, 'p'},
    {"agent", required_argument, NULL, O_AGENT},   {"op", required_argument, NULL, O_OP},
    {"transport", required_argument, NULL, O_TRANSPORT}, {"target", required_argument, NULL, O_TARGET},
    {"requests", required_argument, NULL, 'n'},    {"duration", required_argument, NULL, O_DURATION},
    {"rate", required_argument, NULL, O_RATE},     {"connections", required_argument, NULL, 'c'},
    {"pipeline", required_argument, NULL, 'P'},    {"threads", required_argument, NULL, O_THREADS},
    {"batch", required_argument, NULL, O_BATCH},   {"burst", required_argument, NULL, O_BURST},
    {"json", required_argument, NULL, O_JSON},     {"plot", required_argument, NULL, O_PLOT},
    {"list", required_argument, NULL, O_LIST},     {"preload", required_argument, NULL, O_PRELOAD},
    {"list-size", required_argument, NULL, O_LIST_SIZE}, {"hit-ratio", required_argument, NULL, O_HIT},
    {"stop-ratio", required_argument, NULL, O_STOP_RATIO}, {"bank", required_argument, NULL, O_BANK},
    {"udp-port", required_argument, NULL, O_UDP_PORT}, {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"udp-retry-ms", required_argument, NULL, O_RETRY}, {"poll-us", required_argument, NULL, O_POLL},
    {"quiet", no_argument, NULL, O_QUIET},         {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},     TLSC_LONG_OPTIONS,
    {0}};

/* One option getopt_long returned (name: as the user spelled it, for messages). */
static void take_opt(sb_opts *o, seen_opts *seen, int ch, const char *name, const char *v) {
    static const char *const ops[] = {"check", "stop", "mixed", "ping"};
    static const char *const transports[] = {"resp", "udp"};
    static const char *const targets[] = {"stopgate", "redis"};
    switch (ch) {
    case 'h': o->host = v; break;
    case 'p': seen->port = v; break;
    case O_AGENT: o->agent = v; break;
    case O_OP: o->op = pick(name, v, ops, 4), seen->op = true; break;
    case O_TRANSPORT: o->transport = pick(name, v, transports, 2); break;
    case O_TARGET: o->target = pick(name, v, targets, 2); break;
    case 'n': o->requests = (uint64_t)num_ll(name, v, 1, 1LL << 40); break;
    case O_DURATION: o->duration_s = num_d(name, v, 0.001, 86400); break;
    case O_RATE: o->rate = num_d(name, v, 0.001, 1e9); break;
    case 'c': o->connections = (int)num_ll(name, v, 1, SB_CONNS_MAX), seen->conns = true; break;
    case 'P': o->pipeline = (int)num_ll(name, v, 1, SB_PIPELINE_MAX); break;
    case O_THREADS: o->threads = (int)num_ll(name, v, 1, SB_THREADS_MAX); break;
    case O_BATCH: o->batch = (int)num_ll(name, v, 1, SG_FRAME_MSGS_MAX), seen->batch = true; break;
    case O_BURST: o->burst = (uint64_t)num_ll(name, v, 1, 1000000); break;
    case O_JSON: o->json = v; break;
    case O_PLOT: o->plot = v; break;
    case O_LIST: o->list = v; break;
    case O_PRELOAD: o->preload = (uint64_t)num_ll(name, v, 1, 100000000); break;
    case O_LIST_SIZE: o->list_size = (uint64_t)num_ll(name, v, 0, 100000000); break;
    case O_HIT: o->hit_ratio = num_d(name, v, 0, 1), seen->hit = true; break;
    case O_STOP_RATIO: o->stop_ratio = num_d(name, v, 0, 1); break;
    case O_BANK: o->bank = v; break;
    case O_UDP_PORT: o->udp_port = (int)num_ll(name, v, 1, 65535); break;
    case O_TIMEOUT: o->timeout_ms = num_ll(name, v, 1, 3600000); break;
    case O_RETRY: o->udp_retry_ms = num_ll(name, v, 1, 60000); break;
    case O_POLL: o->poll_us = num_ll(name, v, 0, 1000000); break;
    case O_QUIET: o->quiet = true; break;
    case O_HELP: fputs(usage_text, stdout); exit(0);
    case O_VERSION: printf("stopbench (stopgate) %s\n", SG_VERSION); exit(0);
    default:
        if (!tlsc_take_opt(&o->tls, ch, v)) usage_error("unknown option '%s'", name);
    }
}

/* A burst is a run of its own: one connection, STOPs, no pace. */
static void check_burst(sb_opts *o, seen_opts *seen) {
    if (seen->op && o->op != OP_STOP) usage_error("--burst sends STOPs: %s", "drop --op or use --op stop");
    o->op = OP_STOP;
    seen->op = true;
    if (o->rate > 0 || o->requests || o->duration_s > 0)
        usage_error("--burst is a run of its own: %s", "no --rate, --requests or --duration with it");
    o->connections = 1;
    o->pipeline = 1;
    if (o->transport == TR_UDP) {
        /* Over UDP: every datagram of the burst in flight at once, from one socket. */
        if (!seen->batch) o->batch = 64;
        o->pipeline = (int)((o->burst + (uint64_t)o->batch - 1) / (uint64_t)o->batch);
        o->requests = o->burst;
        o->threads = 1;
        if (o->pipeline > SB_UDP_INFLIGHT_MAX)
            usage_error("UDP --burst: at most 512 datagrams in flight (%s)", "raise --batch, at most 90 STOPs");
    }
}

static void check_transport(const sb_opts *o) {
    if (o->tls.on && o->transport == TR_UDP) usage_error("%s", "--tls is for --transport resp");
    if (o->transport == TR_UDP) {
        if (o->target == TG_REDIS) usage_error("%s", "Redis has no UDP: --target redis needs --transport resp");
        int per = o->op == OP_CHECK ? 22 : o->op == OP_PING ? 1 : 90; /* bytes per message, at most */
        if ((size_t)o->batch * (size_t)per + SG_FRAME_HDR_BYTES + SG_FRAME_MAC_BYTES > SG_FRAME_BYTES_MAX)
            usage_error("--batch %s: the messages do not fit one datagram (STOPs: at most 90)", "");
        if (o->rate == 0 && !o->burst && (long)o->connections * o->pipeline > SB_UDP_INFLIGHT_MAX)
            usage_error("UDP: connections x pipeline must be at most 512 (%s)",
                        "the gateway's replay window is 1,024 sequence numbers per agent");
    } else if (o->batch != 1) {
        usage_error("%s", "--batch is for --transport udp (RESP: --pipeline)");
    }
}

/* The checks across options, and the values derived from them. */
static void check_opts(sb_opts *o, seen_opts *seen) {
    if (o->burst) check_burst(o, seen);
    if (!seen->op) usage_error("%s", "--op check|stop|mixed|ping is required");
    if (o->requests && o->duration_s > 0) usage_error("%s", "--requests and --duration exclude each other");
    if (!o->requests && o->duration_s == 0 && !o->burst) o->duration_s = 5;
    if (!seen->conns && !o->burst) o->connections = 10;
    if (o->rate > 0 && o->pipeline > 1) usage_error("%s", "--pipeline is for the closed loop; --rate sets the pace");
    o->port = seen->port ? seen->port : o->target == TG_REDIS ? "6379" : "7379";
    size_t bl = strlen(o->bank);
    if (bl == 0 || bl > SB_BANK_MAX || strspn(o->bank, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != bl)
        usage_error("--bank '%s': 1-11 characters A-Z 0-9", o->bank);
    if (strlen(o->list) == 0 || strlen(o->list) > 31) usage_error("--list '%s': 1-31 characters", o->list);
    if (o->preload) o->list_size = o->preload;
    if (!seen->hit) o->hit_ratio = o->list_size ? 0.5 : 0;
    if (o->hit_ratio > 0 && !o->list_size) usage_error("%s", "--hit-ratio needs a list: --preload N or --list-size N");
    if (tlsc_opts_check(&o->tls)) usage_error("%s", tlsc_opts_check(&o->tls));
    check_transport(o);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (o->threads == 0) o->threads = (int)(cpus < 1 ? 1 : cpus > SB_THREADS_MAX ? SB_THREADS_MAX : cpus);
    if (o->threads > o->connections) o->threads = o->connections;
    if (o->rate > 0) o->total = o->requests ? o->requests : sched_total_for(o->rate, o->duration_s);
    double expect_s = o->rate > 0 ? (double)o->total / o->rate : o->duration_s;
    o->tick_ns = o->burst ? 1000000 : expect_s > 0 && expect_s < 2 ? 10000000 : SB_TICK_NS;
}

static void parse_args(int argc, char **argv, sb_opts *o) {
    seen_opts seen = {0};
    opterr = 0;
    int ch, li = -1;
    while ((ch = getopt_long(argc, argv, ":h:p:n:c:P:", long_opts, &li)) != -1) {
        char name[48];
        const char *word = argv[optind - 1];
        if (ch == '?' || ch == ':') { /* the word as typed, without an "=value" */
            const char *eq = strncmp(word, "--", 2) ? NULL : strchr(word, '=');
            snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - word) : (int)strlen(word), word);
            usage_error(ch == ':' ? "%s needs a value" : "unknown option '%s'", name);
        }
        if (li >= 0) snprintf(name, sizeof name, "--%s", long_opts[li].name);
        else snprintf(name, sizeof name, "-%c", ch);
        take_opt(o, &seen, ch, name, optarg);
        li = -1;
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    check_opts(o, &seen);
}

/* ---- setup: RESP ---- */

static int auth_command(const sb_opts *o, sb_cmdbuf *c) {
    if (o->target == TG_REDIS) {
        const char *argv[] = {"AUTH", o->secret};
        return sb_cmd_append(c, 2, argv, NULL);
    }
    const char *argv[] = {"AUTH", o->agent, o->secret};
    return sb_cmd_append(c, 3, argv, NULL);
}

/* One AUTH reply on fd: 0, or the exit status with the reason in err. */
static int auth_reply(const sb_opts *o, sb_link *fd, sb_result *res, char *err, size_t errcap) {
    sb_rbuf b = {0};
    sb_reply_info ri = {0};
    int rc = 0;
    long r = sb_read_reply(fd, &b, &ri, AUTH_TIMEOUT_MS, err, errcap);
    if (r < 0) {
        char tmp[200];
        snprintf(tmp, sizeof tmp, "AUTH: %s", err);
        snprintf(err, errcap, "%s", tmp);
        rc = SB_EXIT_ERRORS;
    } else if (ri.err) {
        char text[160];
        sb_reply_error_text(&ri, text, sizeof text);
        snprintf(err, errcap, "AUTH as %s refused: %s", o->target == TG_REDIS ? "(redis)" : o->agent, text);
        res->auth_errors = 1;
        rc = SB_EXIT_ERRORS;
    } else if (sb_reader_pending(&b.rd) != 0) {
        snprintf(err, errcap, "AUTH: unexpected extra data from the server");
        rc = SB_EXIT_ERRORS;
    }
    sb_rbuf_free(&b);
    return rc;
}

/* Dial C connections and AUTH them: the first alone (a wrong secret is refused once, not C
 * times), then the rest pipelined (the gateway's Argon2 check is cached after the first). */
static int open_connections(const sb_opts *o, sb_link *fds, sb_result *res, char *err, size_t errcap) {
    for (int i = 0; i < o->connections; i++) fds[i] = (sb_link){.fd = -1};
    for (int i = 0; i < o->connections; i++) {
        fds[i].fd = sb_dial(o->host, o->port, DIAL_TIMEOUT_MS, err, errcap);
        if (fds[i].fd >= 0 && o->tls.on && sb_link_tls(&fds[i], o, DIAL_TIMEOUT_MS, err, errcap) != 0) {
            char tmp[300];
            snprintf(tmp, sizeof tmp, "%s:%s: %s", o->host, o->port, err);
            snprintf(err, errcap, "%s", tmp);
            sb_link_close(&fds[i]);
        }
        if (fds[i].fd < 0) {
            res->connect_errors = (uint64_t)(o->connections - i);
            return SB_EXIT_CONNECT;
        }
    }
    if (!o->secret) return 0;
    sb_cmdbuf c = {0};
    if (auth_command(o, &c) != 0) return SB_EXIT_ERRORS;
    int rc = sb_send_all(&fds[0], c.p, c.len, AUTH_TIMEOUT_MS, err, errcap) != 0 ? SB_EXIT_ERRORS : 0;
    if (!rc) rc = auth_reply(o, &fds[0], res, err, errcap);
    for (int i = 1; i < o->connections && !rc; i++)
        if (sb_send_all(&fds[i], c.p, c.len, AUTH_TIMEOUT_MS, err, errcap) != 0) rc = SB_EXIT_ERRORS;
    for (int i = 1; i < o->connections && !rc; i++) rc = auth_reply(o, &fds[i], res, err, errcap);
    sb_cmdbuf_free(&c);
    return rc;
}

/* --preload N: the list's entries SBL0000000000.. (sb_listed_account), one LIST.LOAD (inline
 * CSV when small, else a file the gateway reads: same host) or SADD batches for Redis. */
static int preload(const sb_opts *o, sb_link *fd, char *err, size_t errcap) {
    int64_t t = sb_now_ns();
    sb_cmdbuf c = {0};
    sb_rbuf b = {0};
    char acct[24], path[64] = "";
    int rc = SB_EXIT_ERRORS;
    uint64_t replies = 0;
    if (o->target == TG_REDIS) {
        const char *del[] = {"DEL", o->list};
        if (sb_cmd_append(&c, 2, del, NULL) != 0) goto out;
        replies++;
        enum { BATCH = 1000 };
        const char *argv[BATCH + 2];
        static char members[BATCH][SB_BANK_MAX + 1 + 24];
        argv[0] = "SADD";
        argv[1] = o->list;
        for (uint64_t i = 0; i < o->preload;) {
            int n = 0;
            for (; n < BATCH && i < o->preload; n++, i++) {
                sb_listed_account(i, acct);
                snprintf(members[n], sizeof members[n], "%s:%s", o->bank, acct);
                argv[2 + n] = members[n];
            }
            if (sb_cmd_append(&c, n + 2, argv, NULL) != 0) goto out;
            replies++;
        }
    } else {
        size_t row = strlen(o->bank) + 1 + 13 + 1, size = row * o->preload;
        char *csv = malloc(size + 1);
        if (!csv) goto out;
        size_t n = 0;
        for (uint64_t i = 0; i < o->preload; i++) {
            sb_listed_account(i, acct);
            n += (size_t)snprintf(csv + n, size + 1 - n, "%s,%s\n", o->bank, acct);
        }
        if (n <= LIST_INLINE_MAX) {
            const char *argv[] = {"LIST.LOAD", o->list, "-", csv};
            size_t lens[] = {9, strlen(o->list), 1, n};
            if (sb_cmd_append(&c, 4, argv, lens) != 0) {
                free(csv);
                goto out;
            }
        } else {
            /* Too big for an inline load: a file the gateway reads (it runs on this host). */
            snprintf(path, sizeof path, "/tmp/stopbench-preload-XXXXXX");
            int f = mkstemp(path);
            bool ok = f >= 0 && fchmod(f, 0644) == 0 && write(f, csv, n) == (ssize_t)n;
            if (f >= 0) close(f);
            if (!ok) {
                snprintf(err, errcap, "preload: cannot write %s: %s", path, strerror(errno));
                free(csv);
                goto out;
            }
            const char *argv[] = {"LIST.LOAD", o->list, path};
            if (sb_cmd_append(&c, 3, argv, NULL) != 0) {
                free(csv);
                goto out;
            }
        }
        free(csv);
        replies = 1;
    }
    if (sb_send_all(fd, c.p, c.len, PRELOAD_TIMEOUT_MS, err, errcap) != 0) goto out;
    for (uint64_t i = 0; i < replies; i++) {
        sb_reply_info ri = {0};
        long r = sb_read_reply(fd, &b, &ri, PRELOAD_TIMEOUT_MS, err, errcap);
        if (r < 0) goto out;
        if (ri.err) {
            char text[160];
            sb_reply_error_text(&ri, text, sizeof text);
            snprintf(err, errcap, "preload of %llu entries into %s refused: %s", (unsigned long long)o->preload,
                     o->list, text);
            goto out;
        }
    }
    if (!o->quiet)
        fprintf(stderr, "stopbench: preloaded %llu entries into %s%s in %.0f ms\n", (unsigned long long)o->preload,
                o->target == TG_REDIS ? "set " : "list ", o->list, (double)(sb_now_ns() - t) / 1e6);
    rc = 0;
out:
    if (path[0]) unlink(path);
    sb_cmdbuf_free(&c);
    sb_rbuf_free(&b);
    return rc;
}

/* ---- setup: UDP ---- */

static int udp_socket(const sb_opts *o, char *err, size_t errcap) {
    char port[8];
    snprintf(port, sizeof port, "%d", o->udp_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai;
    int rc = getaddrinfo(o->host, port, &hints, &ai);
    if (rc) {
        snprintf(err, errcap, "%s:%s: %s", o->host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errcap, "UDP socket to %s:%s: %s", o->host, port, strerror(errno));
        return -1;
    }
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    return fd;
}

/* Send one datagram and wait for the reply with its seq (HELLO_TRIES x 1 s). */
static ssize_t udp_ask(int fd, uint8_t *buf, size_t len, uint64_t seq, uint8_t *reply) {
    for (int t = 0; t < HELLO_TRIES; t++) {
        if (send(fd, buf, len, 0) < 0 && errno != ECONNREFUSED) return -1;
        int64_t deadline = sb_now_ns() + 1000000000LL;
        for (;;) {
            int64_t left_ms = (deadline - sb_now_ns()) / 1000000;
            if (left_ms <= 0) break;
            struct timeval tv = {.tv_sec = left_ms / 1000, .tv_usec = (left_ms % 1000) * 1000};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ssize_t n = recv(fd, reply, SG_FRAME_BYTES_MAX, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                break; /* timeout, or ECONNREFUSED: nobody on that port; try again */
            }
            sg_frame_hdr h;
            if (sg_frame_parse_hdr(reply, (size_t)n, &h) == 0 && h.seq == seq) return n;
        }
    }
    return 0;
}

/* HELLO, derive the agent's key (Argon2id, once), then prove it with a signed PING. */
static int udp_hello(sb_opts *o, sb_result *res, char *err, size_t errcap) {
    int fd = udp_socket(o, err, errcap);
    if (fd < 0) return SB_EXIT_CONNECT;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Sequence numbers only grow per agent: start from the clock, as a restarted client must. */
    atomic_store(&g_run.seq, (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec);
    g_run.agent_id = sg_frame_agent_id(o->agent);
    uint8_t buf[SG_FRAME_BYTES_MAX], reply[SG_FRAME_BYTES_MAX];
    sg_frame_writer w;
    uint64_t seq = atomic_fetch_add(&g_run.seq, 1);
    sg_frame_hdr h = {.agent_id = g_run.agent_id, .seq = seq};
    sg_frame_begin(&w, buf, sizeof buf, &h);
    sg_frame_add_hello(&w);
    ssize_t n = udp_ask(fd, buf, sg_frame_finish(&w, NULL), seq, reply);
    sg_frame_hdr rh;
    sg_reply r;
    sg_frame_reader rd;
    if (n > 0 && sg_frame_parse_hdr(reply, (size_t)n, &rh) == 0) {
        sg_frame_read_begin(&rd, reply, (size_t)n, &rh);
        if (sg_frame_next_reply(&rd, &r) != 1 || r.type != (SG_MSG_HELLO | 0x80)) n = 0;
    }
    if (n <= 0) {
        snprintf(err, errcap,
                 "no answer to a UDP HELLO from %s:%d: UDP off on that port ([gateway] udp), gateway down, or "
                 "agent '%s' unknown to it",
                 o->host, o->udp_port, o->agent);
        res->connect_errors = 1;
        close(fd);
        return SB_EXIT_CONNECT;
    }
    g_run.epoch = r.epoch;
    uint8_t ak[32];
    if (sg_frame_derive_key(o->secret, r.salt, r.opslimit, r.memlimit, ak) != 0) {
        snprintf(err, errcap, "cannot derive the UDP key (Argon2id limits %llu/%llu)",
                 (unsigned long long)r.opslimit, (unsigned long long)r.memlimit);
        close(fd);
        return SB_EXIT_ERRORS;
    }
    sg_frame_key(ak, g_run.key);
    seq = atomic_fetch_add(&g_run.seq, 1);
    h = (sg_frame_hdr){.agent_id = g_run.agent_id, .seq = seq, .epoch = g_run.epoch};
    sg_frame_begin(&w, buf, sizeof buf, &h);
    sg_frame_add_ping(&w);
    n = udp_ask(fd, buf, sg_frame_finish(&w, g_run.key), seq, reply);
    close(fd);
    if (n <= 0 || !sg_frame_verify(reply, (size_t)n, g_run.key)) {
        snprintf(err, errcap, "the gateway did not answer a signed UDP PING as %s: wrong secret (frames with a bad "
                 "MAC are dropped without an answer)", o->agent);
        res->auth_errors = 1;
        return SB_EXIT_ERRORS;
    }
    return 0;
}

/* ---- the run ---- */

static void progress_line(const sb_run *run, int64_t now, uint64_t *last_done, int64_t *last_t) {
    uint64_t done = 0, errs = 0;
    for (int i = 0; i < run->nworkers; i++) {
        done += atomic_load_explicit(&run->w[i].progress_done, memory_order_relaxed);
        errs += atomic_load_explicit(&run->w[i].progress_err, memory_order_relaxed);
    }
    double dt = (double)(now - *last_t) / 1e9;
    double rate = dt > 0 ? (double)(done - *last_done) / dt : 0;
    fprintf(stderr, "\r  %6.1f s  %12llu answered  %10.0f/s  %llu errors   ", (double)(now - run->t0_ns) / 1e9,
            (unsigned long long)done, rate, (unsigned long long)errs);
    fflush(stderr);
    *last_done = done;
    *last_t = now;
}

static int start_workers(sb_opts *o, sb_link *fds, char *err, size_t errcap) {
    sb_run *run = &g_run;
    run->nworkers = o->threads;
    run->w = calloc((size_t)o->threads, sizeof *run->w);
    if (!run->w) return -1;
    uint64_t seed = 0;
    for (int i = 0; i < 8; i++) seed = seed * 131 + (uint8_t)o->tag[i];
    for (int i = 0; i < o->threads; i++) {
        sb_worker *w = &run->w[i];
        w->id = i;
        w->run = run;
        w->o = o;
        w->rng = (seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1))) | 1;
        w->conn_first = (int)((long)i * o->connections / o->threads);
        w->conn_count = (int)((long)(i + 1) * o->connections / o->threads) - w->conn_first;
        if (o->requests && o->rate == 0)
            w->budget = o->requests * (uint64_t)(w->conn_first + w->conn_count) / (uint64_t)o->connections -
                        o->requests * (uint64_t)w->conn_first / (uint64_t)o->connections;
        if (sb_stats_init(&w->st, o->tick_ns) != 0) return -1;
        if (o->transport == TR_RESP) {
            if (sb_resp_prepare(w, fds + w->conn_first) != 0) {
                snprintf(err, errcap, "cannot set up the connections: %s", strerror(errno));
                return -1;
            }
        } else {
            if (sb_udp_prepare(w, err, errcap) != 0) return -1;
            int fd = udp_socket(o, err, errcap);
            if (fd < 0) return -1;
            sb_udp_set_fd(w, fd);
        }
    }
    getrusage(RUSAGE_SELF, &g_ru0);
    /* A few ms for the threads to start: the open-loop schedule begins after that. */
    run->t0_ns = sb_now_ns() + 2000000;
    for (int i = 0; i < o->threads; i++) {
        sb_worker *w = &run->w[i];
        if (pthread_create(&w->th, NULL, o->transport == TR_RESP ? sb_resp_main : sb_udp_main, w) != 0) {
            snprintf(err, errcap, "pthread_create: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void wait_workers(const sb_opts *o) {
    sb_run *run = &g_run;
    bool tty = !o->quiet && isatty(STDERR_FILENO);
    double expect_s = o->rate > 0 ? (double)o->total / o->rate : o->duration_s;
    uint64_t last_done = 0;
    int64_t last_t = run->t0_ns, last_print = run->t0_ns;
    bool printed = false;
    for (int i = 0; i < run->nworkers; i++) {
        for (;;) {
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_nsec += 50000000;
            if (deadline.tv_nsec >= 1000000000) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000;
            }
            if (pthread_timedjoin_np(run->w[i].th, NULL, &deadline) == 0) break;
            int64_t now = sb_now_ns();
            double el = (double)(now - run->t0_ns) / 1e9;
            if (tty && (expect_s > PROGRESS_MIN_S || el > PROGRESS_MIN_S) && now - last_print >= 1000000000) {
                progress_line(run, now, &last_done, &last_t);
                last_print = now;
                printed = true;
            }
        }
    }
    if (printed) fputc('\n', stderr);
}

/* The exit status and its one-line reason (also the JSON's "error"), then the reports. */
static void finish(sb_opts *o, sb_result *res, int rc_setup, const char *err) {
    static char why[400];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->cpu_user_s = (double)(ru.ru_utime.tv_sec - g_ru0.ru_utime.tv_sec) +
                      (double)(ru.ru_utime.tv_usec - g_ru0.ru_utime.tv_usec) / 1e6;
    res->cpu_sys_s = (double)(ru.ru_stime.tv_sec - g_ru0.ru_stime.tv_sec) +
                     (double)(ru.ru_stime.tv_usec - g_ru0.ru_stime.tv_usec) / 1e6;
    res->interrupted = atomic_load(&g_run.stop) != 0;
    int rc = rc_setup;
    why[0] = 0;
    if (rc) {
        snprintf(why, sizeof why, "%s", err);
    } else if (res->interrupted) {
        rc = 130;
        snprintf(why, sizeof why, "interrupted; the report covers what was answered");
    } else if (sb_errors(res) || (o->burst && !res->burst_done)) {
        rc = SB_EXIT_ERRORS;
        snprintf(why, sizeof why, "%llu of %llu requests failed%s%s", (unsigned long long)sb_errors(res),
                 (unsigned long long)(sb_requests(res) + res->all.timeouts + res->all.closed + res->all.unsent),
                 res->all.first_error[0] ? "; the first: " : "", res->all.first_error);
    } else if (res->burst_done && o->target == TG_STOPGATE && o->transport == TR_RESP && res->burst.at_bank_ms < 0) {
        rc = SB_EXIT_ERRORS;
        snprintf(why, sizeof why, "%s", res->all.first_error[0] ? res->all.first_error : "orders not at the bank");
    } else if (o->rate > 0 && !res->rate_sustained) {
        rc = SB_EXIT_RATE;
        snprintf(why, sizeof why,
                 "the rate was not sustained: %.0f/s offered, %.0f/s answered; requests left up to %.1f ms late "
                 "(the latencies include that wait)",
                 o->rate, res->seconds > 0 ? (double)sb_ok(res) / res->seconds : 0.0, (double)res->all.max_lag_ns / 1e6);
    }
    res->exit_code = rc;
    res->fatal = why[0] ? why : NULL;
    if (!o->quiet && !rc_setup) sb_report_text(o, res);
    if (why[0]) fprintf(stderr, "stopbench: %s\n", why);
    if (o->json && sb_report_json(o, res, o->json) != 0 && !rc) res->exit_code = SB_EXIT_ERRORS;
    if (o->plot && !rc_setup && sb_report_plot(o, res, o->plot) == 0 && !o->quiet)
        fprintf(stderr, "stopbench: plot written to %s\n", o->plot);
}

static int run_burst(sb_opts *o, sb_result *res, char *err, size_t errcap) {
    sb_link fds[2] = {{.fd = -1}, {.fd = -1}};
    sb_opts one = *o;
    one.connections = o->target == TG_REDIS ? 1 : 2; /* the burst's, and one for INFO / STATUS */
    int rc = open_connections(&one, fds, res, err, errcap);
    if (rc) return rc;
    sb_worker w = {.id = 0, .run = &g_run, .o = o, .rng = 1};
    g_run.nworkers = 0;
    if (sb_stats_init(&w.st, o->tick_ns) != 0) return SB_EXIT_ERRORS;
    getrusage(RUSAGE_SELF, &g_ru0);
    int brc = sb_burst_run(&w, &fds[0], &fds[1], &res->burst);
    res->burst_done = brc == 0;
    res->seconds = res->burst.acked_ms / 1e3;
    sb_stats_merge(&res->all, &w.st);
    sb_stats_free(&w.st);
    for (int i = 0; i < 2; i++) sb_link_close(&fds[i]);
    return 0;
}

/* After the timed run: every worker's figures merged into res, and the verdicts on them. */
static void collect_results(const sb_opts *o, sb_result *res) {
    wait_workers(o);
    for (int i = 0; i < g_run.nworkers; i++) {
        sb_stats_merge(&res->all, &g_run.w[i].st);
        sb_stats_free(&g_run.w[i].st);
    }
    res->seconds = (double)res->all.t_last_ns / 1e9;
    if (res->seconds <= 0) res->seconds = (double)(sb_now_ns() - g_run.t0_ns) / 1e9;
    if (o->burst) { /* over UDP: acknowledged only (INFO is not polled) */
        res->burst_done = sb_ok(res) == o->burst;
        res->burst.acked_ms = res->seconds * 1e3;
        res->burst.at_bank_ms = res->burst.confirmed_ms = -1;
        res->burst.accepted = res->all.statuses[0];
    }
    if (o->rate > 0) {
        double got = res->seconds > 0 ? (double)sb_ok(res) / res->seconds : 0;
        res->rate_sustained = res->all.unsent == 0 && res->all.timeouts == 0 && got >= 0.9 * o->rate;
    }
}

int main(int argc, char **argv) {
    sb_opts o = {.host = "127.0.0.1", .agent = "dev", .udp_port = 7380, .pipeline = 1, .batch = 1, .list = "mule",
                 .stop_ratio = 0.1, .bank = "ICBC", .timeout_ms = 10000, .udp_retry_ms = 250, .poll_us = 500};
    parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* The secret never comes from argv: STOPGATE_SECRET, or for Redis redis-cli's REDISCLI_AUTH. */
    const char *secret = getenv(o.target == TG_REDIS ? "REDISCLI_AUTH" : "STOPGATE_SECRET");
    o.secret = secret && *secret ? secret : NULL;
    if (!o.secret && o.target == TG_STOPGATE) {
        fprintf(stderr, "stopbench: set STOPGATE_SECRET to the secret of agent %s (it is never taken from argv)\n",
                o.agent);
        return SB_EXIT_USAGE;
    }
    sb_make_tag(o.tag);
    snprintf(o.case_id, sizeof o.case_id, "%s-%s", o.burst ? "SBBURST" : "SB", o.tag);
    g_run.o = &o;

    sb_result res = {0};
    if (sb_stats_init(&res.all, o.tick_ns) != 0) {
        fprintf(stderr, "stopbench: out of memory\n");
        return SB_EXIT_ERRORS;
    }
    time_t now = time(NULL);
    strftime(res.started_at, sizeof res.started_at, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    char err[300] = "";
    int rc = 0;

    if (o.tls.on && !(o.tls_ctx = tlsc_ctx_new(&o.tls, err, sizeof err))) rc = SB_EXIT_USAGE;
    if (!rc && o.preload) {
        sb_link fd[1];
        sb_opts one = o;
        one.connections = 1;
        rc = open_connections(&one, fd, &res, err, sizeof err);
        if (!rc) rc = preload(&o, &fd[0], err, sizeof err);
        sb_link_close(&fd[0]);
    }
    if (!rc && o.burst && o.transport == TR_RESP) {
        rc = run_burst(&o, &res, err, sizeof err);
        finish(&o, &res, rc, err);
        sb_stats_free(&res.all);
        if (o.tls_ctx) tlsc_ctx_free(o.tls_ctx);
        return res.exit_code;
    }
    sb_link *fds = calloc((size_t)o.connections, sizeof *fds);
    if (!fds) {
        fprintf(stderr, "stopbench: out of memory\n");
        return SB_EXIT_ERRORS;
    }
    if (!rc) {
        if (o.transport == TR_RESP) rc = open_connections(&o, fds, &res, err, sizeof err);
        else rc = udp_hello(&o, &res, err, sizeof err);
    }
    if (!rc && start_workers(&o, fds, err, sizeof err) != 0) rc = SB_EXIT_ERRORS;
    if (!rc) {
        collect_results(&o, &res);
    } else if (rc && o.transport == TR_RESP) {
        for (int i = 0; i < o.connections; i++)
            if (fds[i].fd > 0) sb_link_close(&fds[i]);
    }
    finish(&o, &res, rc, err);
    free(fds);
    if (o.tls_ctx) tlsc_ctx_free(o.tls_ctx);
    free(g_run.w);
    sb_stats_free(&res.all);
    return res.exit_code;
}
