/*
 * stopgate-bank-consumer: the reference bank side of the redis_streams plugin (SPEC §6,
 * docs/plugins.md). What a bank integrator copies: read the bank's instruction stream with
 * a consumer group, act on each instruction (here: the simulated bank's rules of SPEC §2b,
 * the same code as the in-process sim plugin), write the answer to the results stream, and
 * acknowledge the instruction only after the answer is written.
 *
 *   stopgate-bank-consumer [-h HOST] [-p PORT] [--group G] [--consumer C] [--prefix P]
 *                          [--balance MINOR] [--latency-ms MS] BANK [BANK...]
 *
 * At-least-once on both sides: an instruction seen again (gateway re-send, or our own crash
 * before XACK) is answered again with the same answer; the gateway ignores repeats. An
 * instruction is acknowledged only once Redis has taken its answer (an XADD Redis refuses
 * leaves it pending, read again and answered when Redis takes writes). Runs
 * until SIGINT/SIGTERM; reconnects with capped back-off when Redis goes away.
 */
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sg_version.h"
#include "sim_rules.h"

#define BANKS_MAX 64
#define BATCH 512

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

typedef struct opts {
    const char *host, *group, *consumer, *prefix;
    int port;
    int64_t balance;
    int latency_ms;
    const char *banks[BANKS_MAX];
    int nbanks;
} opts;

static const char *field(const redisReply *kv, const char *name) {
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING && !strcmp(kv->element[i]->str, name) &&
            kv->element[i + 1]->type == REDIS_REPLY_STRING)
            return kv->element[i + 1]->str;
    return NULL;
}

static const char *status_name(sg_result_status s) {
    switch (s) {
    case SG_RESULT_CONFIRMED: return "CONFIRMED";
    case SG_RESULT_PARTIAL: return "PARTIAL";
    case SG_RESULT_NOT_FOUND: return "NOT_FOUND";
    case SG_RESULT_REJECTED: return "REJECTED";
    case SG_RESULT_FUNDS_MOVED: return "FUNDS_MOVED";
    }
    return "?";
}

static void stamp(char *out, size_t cap) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
}

#define LOG(...)                                                                                                  \
    do {                                                                                                          \
        char ts_[64];                                                                                             \
        stamp(ts_, sizeof ts_);                                                                                   \
        fprintf(stderr, "%s ", ts_);                                                                              \
        fprintf(stderr, __VA_ARGS__);                                                                             \
        fputc('\n', stderr);                                                                                      \
    } while (0)

/* Pipelines one XACK per entry whose answer is written (ok[i]); returns how many. */
static int ack_written(redisContext *c, const opts *o, const char *in_stream, const redisReply *entries,
                       const bool *ok) {
    int appended = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        if (!ok[i]) continue;
        const char *ack[] = {"XACK", in_stream, o->group, entries->element[i]->element[0]->str};
        redisAppendCommandArgv(c, 4, ack, NULL);
        appended++;
    }
    return appended;
}

/* Handle one stream's entries: answer, then acknowledge only the entries whose answer Redis
 * took. An XACK pipelined behind a refused XADD (-OOM, -READONLY, -WRONGTYPE) would have
 * dropped the instruction unanswered; left pending, it is read again (our own pending
 * entries) and answered when Redis takes writes. Returns entries handled, -1 on a connection
 * error; *refused counts answers Redis refused. */
static int handle(redisContext *c, const opts *o, const char *bank, const char *in_stream, const redisReply *entries,
                  uint64_t *answered, uint64_t *malformed, int *refused) {
    char out_stream[160];
    snprintf(out_stream, sizeof out_stream, "%s:%s:results", o->prefix, bank);
    bool ok[BATCH];      /* entries->elements <= COUNT BATCH */
    bool answers[BATCH]; /* an XADD is pipelined for it */
    if (entries->elements > BATCH) return -1; /* cannot happen: COUNT BATCH */
    int appended = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *en = entries->element[i];
        ok[i] = answers[i] = false;
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2) continue;
        const char *entry_id = en->element[0]->str;
        const redisReply *kv = en->element[1];
        const char *iid = kv->type == REDIS_REPLY_ARRAY ? field(kv, "instruction_id") : NULL;
        const char *kind = iid ? field(kv, "kind") : NULL;
        const char *account = iid ? field(kv, "account") : NULL;
        const char *amount = iid ? field(kv, "amount") : NULL;
        sim_answer a;
        bool answer = false;
        ok[i] = true; /* nothing to write: acknowledged at once */
        if (!iid || !kind || !account || !amount) {
            (*malformed)++;
            LOG("WARN  %s %s: malformed instruction (missing fields); acknowledged", in_stream, entry_id);
        } else if (strcmp(kind, "RELEASE") != 0) {
            answer = sim_decide(bank, account, strtoll(amount, NULL, 10), o->balance, &a) != 0;
        }
        if (answer) {
            char frozen[24], onward[2 * 128] = "";
            snprintf(frozen, sizeof frozen, "%" PRId64, a.frozen);
            for (uint32_t k = 0; k < a.onward_count; k++) {
                size_t len = strlen(onward);
                snprintf(onward + len, sizeof onward - len, "%s%s:%s:%" PRId64, k ? "," : "", a.onward[k].bank,
                         a.onward[k].account, a.onward[k].amount_minor);
            }
            const char *argv[14] = {"XADD", out_stream, "*", "instruction_id", iid, "status", status_name(a.status),
                                    "frozen", frozen, "reason", a.reason};
            int ac = 11;
            if (a.onward_count) {
                argv[ac++] = "onward";
                argv[ac++] = onward;
            }
            redisAppendCommandArgv(c, ac, argv, NULL);
            appended++;
            answers[i] = true;
            ok[i] = false; /* until Redis says the answer is written */
        }
    }
    /* The answers' replies, in order; then the XACKs of what is written. */
    for (size_t i = 0; i < entries->elements; i++) {
        if (!answers[i]) continue;
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) return -1;
        if (r->type == REDIS_REPLY_ERROR) {
            if ((*refused)++ == 0) LOG("WARN  redis refused an answer (%s); its instruction stays pending", r->str);
        } else {
            ok[i] = true;
            (*answered)++;
        }
        freeReplyObject(r);
    }
    appended = ack_written(c, o, in_stream, entries, ok);
    for (int i = 0; i < appended; i++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) return -1;
        if (r->type == REDIS_REPLY_ERROR) LOG("WARN  redis: %s", r->str);
        freeReplyObject(r);
    }
    return (int)entries->elements;
}

#define USAGE                                                                                               \
    "usage: stopgate-bank-consumer [-h HOST] [-p PORT] [--group G] [--consumer C] [--prefix P]\n"           \
    "                              [--balance MINOR] [--latency-ms MS] BANK [BANK...]\n"                    \
    "       (every option also as --opt=value; --host, --port; --help, --version)\n"

/* A whole decimal number in lo..hi, else exit 2 naming the option and the word. */
static long long number(const char *name, const char *v, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "stopgate-bank-consumer: %s: '%s' is not a number in %lld..%lld\n", name, v, lo, hi);
        exit(2);
    }
    return x;
}

/* -1: run; else the exit status (--help, --version, a usage error naming the word). */
static int parse_args(int argc, char **argv, opts *o) {
    enum { O_GROUP = 0x100, O_CONSUMER, O_PREFIX, O_BALANCE, O_LATENCY, O_HELP, O_VERSION };
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'h'},         {"port", required_argument, NULL, 'p'},
        {"group", required_argument, NULL, O_GROUP},    {"consumer", required_argument, NULL, O_CONSUMER},
        {"prefix", required_argument, NULL, O_PREFIX},  {"balance", required_argument, NULL, O_BALANCE},
        {"latency-ms", required_argument, NULL, O_LATENCY}, {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},      {0}};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h:p:", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = (int)number("--port", optarg, 1, 65535); break;
        case O_GROUP: o->group = optarg; break;
        case O_CONSUMER: o->consumer = optarg; break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_BALANCE: o->balance = number("--balance", optarg, 0, INT64_MAX); break;
        case O_LATENCY: o->latency_ms = (int)number("--latency-ms", optarg, 0, 3600000); break;
        case O_HELP: fputs(USAGE, stdout); return 0;
        case O_VERSION: printf("stopgate-bank-consumer (stopgate) %s\n", SG_VERSION); return 0;
        default:
            fprintf(stderr, "stopgate-bank-consumer: %s '%s'\n" USAGE,
                    ch == ':' ? "missing value for" : "unknown option", argv[optind - 1]);
            return 2;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->nbanks == BANKS_MAX || strlen(argv[i]) < 1 || strlen(argv[i]) > 11) {
            fprintf(stderr, "stopgate-bank-consumer: bad bank '%s' (at most %d banks of 1-11 characters)\n",
                    argv[i], BANKS_MAX);
            return 2;
        }
        o->banks[o->nbanks++] = argv[i];
    }
    return -1;
}

int main(int argc, char **argv) {
    opts o = {.host = "127.0.0.1", .port = 6379, .group = "bank", .consumer = "bank-1", .prefix = "stopgate",
              .balance = 1000000, .latency_ms = 0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.nbanks == 0 || o.port <= 0 || o.port > 65535 || o.balance < 0) {
        fprintf(stderr, "stopgate-bank-consumer: give at least one BANK (and a sane port and balance)\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char streams[BANKS_MAX][160];
    for (int i = 0; i < o.nbanks; i++)
        snprintf(streams[i], sizeof streams[i], "%s:%s:instructions", o.prefix, o.banks[i]);
    uint64_t answered = 0, malformed = 0;
    int backoff = 50;
    bool up = false, logged_down = false;
    while (!stop_flag) {
        struct timeval tv = {2, 0};
        redisContext *c = redisConnectWithTimeout(o.host, o.port, tv);
        if (!c || c->err) {
            if (!logged_down) LOG("WARN  cannot reach redis %s:%d (%s); retrying", o.host, o.port, c ? c->errstr : "oom");
            logged_down = true;
            if (c) redisFree(c);
            struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            continue;
        }
        redisSetTimeout(c, tv);
        backoff = 50;
        logged_down = false;
        if (!up) LOG("INFO  connected to redis %s:%d; serving %d bank(s) as %s/%s", o.host, o.port, o.nbanks, o.group,
                     o.consumer);
        up = true;
        for (int i = 0; i < o.nbanks; i++) {
            redisReply *r = redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", streams[i], o.group);
            if (r) freeReplyObject(r);
        }
        bool pending = true; /* first our own unacknowledged entries (a crash before XACK) */
        while (!stop_flag && !c->err) {
            const char *av[8 + 2 * BANKS_MAX];
            int ac = 0;
            av[ac++] = "XREADGROUP";
            av[ac++] = "GROUP";
            av[ac++] = o.group;
            av[ac++] = o.consumer;
            av[ac++] = "COUNT";
            av[ac++] = "512";
            if (!pending) {
                av[ac++] = "BLOCK";
                av[ac++] = "500";
            }
            av[ac++] = "STREAMS";
            for (int i = 0; i < o.nbanks; i++) av[ac++] = streams[i];
            for (int i = 0; i < o.nbanks; i++) av[ac++] = pending ? "0" : ">";
            redisReply *r = redisCommandArgv(c, ac, av, NULL);
            if (!r) break;
            int got = 0, refused = 0;
            if (r->type == REDIS_REPLY_ARRAY) {
                if (o.latency_ms > 0) {
                    struct timespec ts = {o.latency_ms / 1000, (long)(o.latency_ms % 1000) * 1000000L};
                    nanosleep(&ts, NULL);
                }
                for (size_t si = 0; si < r->elements; si++) {
                    const redisReply *st = r->element[si];
                    if (st->type != REDIS_REPLY_ARRAY || st->elements != 2) continue;
                    for (int b = 0; b < o.nbanks; b++) {
                        if (strcmp(st->element[0]->str, streams[b]) != 0) continue;
                        int n = handle(c, &o, o.banks[b], streams[b], st->element[1], &answered, &malformed,
                                       &refused);
                        if (n < 0) break;
                        got += n;
                    }
                }
            } else if (r->type == REDIS_REPLY_ERROR) {
                LOG("WARN  XREADGROUP: %s", r->str);
                if (strstr(r->str, "NOGROUP")) {
                    freeReplyObject(r);
                    break; /* stream deleted: reconnect and create the group again */
                }
                /* LOADING after a restart and the like: do not spin (nor flood the log). */
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
            }
            /* A refused read (-LOADING) has not read our pending entries: keep the pass. */
            bool read_ok = r->type != REDIS_REPLY_ERROR;
            freeReplyObject(r);
            if (pending && got == 0 && read_ok) pending = false;
            if (refused) {
                /* Answers Redis refused: their instructions are still ours, pending. Read them
                 * again after a pause (not spinning against a full or read-only Redis). */
                pending = true;
                struct timespec ts = {0, 200 * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        if (c->err && !stop_flag) LOG("WARN  connection to redis lost (%s); reconnecting", c->errstr);
        up = false;
        redisFree(c);
    }
    LOG("INFO  stopped: %" PRIu64 " answers written, %" PRIu64 " malformed instructions", answered, malformed);
    return 0;
}
