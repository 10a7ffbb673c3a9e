/*
 * stopctl: the agents' and operators' CLI (SPEC §2). Talks RESP to stopgated over its own
 * small connection (TCP, or TLS with --tls through tlsclient.h: Debian's hiredis 0.14 has no
 * SSL), with hiredis only formatting commands and parsing replies; prints answers for people or, with --json, one JSON object per answer (jansson). The
 * journal subcommands work offline on a journal directory with the same scanner recovery
 * uses. Exit codes: 0 ok, 1 refused by the gateway (or a bad journal), 2 usage, 3 cannot
 * connect.
 */
#include <errno.h>
#include <linux/limits.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "auth.h"
#include "journal_fmt.h"
#include "orders.h"
#include "record.h"
#include "tlsclient.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

typedef struct opts {
    const char *host;
    int port;
    const char *agent;
    bool json;
    tlsc_opts tls;
} opts;

static int usage(const char *msg) {
    if (msg) fprintf(stderr, "stopctl: %s\n", msg);
    fprintf(stderr,
            "usage: stopctl [-h HOST] [-p PORT] [--agent NAME] [--json]\n"
            "               [--tls [--cacert FILE] [--cert FILE --key FILE] [--sni NAME]] COMMAND ...\n"
            "  stop    --request-id ID --bank B --account A --case C [--amount MINOR] [--ttl S] [--reason CODE] [--note TEXT]\n"
            "  freeze  --request-id ID --bank B --account A --case C --doc REF [--amount MINOR] [--ttl S]\n"
            "  release --request-id ID ORDER_ID [--reason CODE] [--doc LEGAL_REF]   (a FREEZE: supervisor, --doc)\n"
            "  extend  --request-id ID ORDER_ID --ttl S\n"
            "  confirm ORDER_ID | status ORDER_ID | case CASE | check BANK ACCOUNT | info [SECTION] | role\n"
            "  list add|del LIST BANK ACCOUNT [--score N] | list load LIST FILE.csv | list info [LIST]\n"
            "  journal verify DIR | journal dump DIR      (offline)\n"
            "  hash-secret SECRET\n"
            "The secret comes from the environment variable STOPGATE_SECRET. A cluster member that does\n"
            "not lead answers a write with READONLY <leader> <host:port>: stopctl sends it there, once.\n");
    return EXIT_USAGE;
}

/* ---- RESP reply -> JSON ---------------------------------------------------------------- */

static json_t *scalar(const redisReply *r) {
    switch (r->type) {
    case REDIS_REPLY_INTEGER: return json_integer(r->integer);
    case REDIS_REPLY_NIL: return json_null();
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: return json_stringn(r->str, r->len);
    default: return json_null();
    }
}

static json_t *to_json(const redisReply *r, bool as_map);

static bool nested_maps(const char *key) { return !strcmp(key, "orders") || !strcmp(key, "onward"); }

static json_t *to_json(const redisReply *r, bool as_map) {
    if (r->type != REDIS_REPLY_ARRAY) return scalar(r);
    if (as_map && r->elements % 2 == 0) {
        json_t *o = json_object();
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)k->len, k->str ? k->str : "");
            json_t *val;
            if (v->type == REDIS_REPLY_ARRAY && nested_maps(key)) {
                val = json_array();
                for (size_t j = 0; j < v->elements; j++) json_array_append_new(val, to_json(v->element[j], true));
            } else {
                val = to_json(v, false);
            }
            json_object_set_new(o, key, val);
        }
        return o;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < r->elements; i++) json_array_append_new(a, to_json(r->element[i], false));
    return a;
}

static void print_human(json_t *j, int indent) {
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (json_is_array(v) && json_array_size(v) && json_is_object(json_array_get(v, 0))) {
            printf("%*s%s:\n", indent, "", k);
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                print_human(e, indent + 4);
                if (i + 1 < json_array_size(v)) printf("%*s--\n", indent + 4, "");
            }
            continue;
        }
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        printf("%*s%-13s %s\n", indent, "", k, s ? s : "");
        free(s);
    }
}

/* ---- connection: TCP or TLS, RESP2 through hiredis's reader -------------------------- */

#define CONNECT_TIMEOUT_S 5
#define REPLY_TIMEOUT_S 30 /* LIST.LOAD of millions of rows answers only when done */

typedef struct gwconn {
    int fd;
    tlsc_ctx *ctx; /* NULL: plain TCP */
    tlsc_ssl *ssl;
    redisReader *rd;
    char errstr[256];
} gwconn;

static void conn_close(gwconn *c) {
    if (!c) return;
    tlsc_close(c->ssl);
    if (c->ctx) tlsc_ctx_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    if (c->rd) redisReaderFree(c->rd);
    free(c);
}

static int dial(const char *host, int port, char *err, size_t errcap) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errcap, "%s", gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {CONNECT_TIMEOUT_S, 0}; /* SO_SNDTIMEO bounds connect() too */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            snprintf(err, errcap, "%s", strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {REPLY_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* TCP, and TLS with --tls. NULL with err. */
static gwconn *conn_open(const opts *o, char *err, size_t errcap) {
    gwconn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    c->rd = redisReaderCreate();
    c->fd = c->rd ? dial(o->host, o->port, err, errcap) : -1;
    if (c->fd >= 0 && o->tls.on) {
        c->ctx = tlsc_ctx_new(&o->tls, err, errcap);
        if (c->ctx) c->ssl = tlsc_connect(c->ctx, &o->tls, c->fd, o->host, err, errcap);
        if (!c->ssl) {
            conn_close(c);
            return NULL;
        }
    }
    if (c->fd < 0) {
        if (!c->rd) snprintf(err, errcap, "out of memory");
        conn_close(c);
        return NULL;
    }
    return c;
}

static bool conn_write(gwconn *c, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = c->ssl ? SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n) : send(c->fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) {
            if (k < 0 && !c->ssl && errno == EINTR) continue;
            snprintf(c->errstr, sizeof c->errstr, "%s", c->ssl ? "TLS write failed" : strerror(errno));
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* One command, one reply (NULL with c->errstr when the connection failed). */
static redisReply *conn_command(gwconn *c, int argc, const char **argv) {
    char *cmd;
    int len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    if (len < 0) {
        snprintf(c->errstr, sizeof c->errstr, "out of memory");
        return NULL;
    }
    bool ok = conn_write(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (!ok) return NULL;
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->rd, &reply) != REDIS_OK) {
            snprintf(c->errstr, sizeof c->errstr, "protocol error: %s", c->rd->errstr);
            return NULL;
        }
        if (reply) return reply;
        char buf[65536];
        ssize_t k = c->ssl ? SSL_read(c->ssl, buf, sizeof buf) : recv(c->fd, buf, sizeof buf, 0);
        if (k < 0 && !c->ssl && errno == EINTR) continue;
        if (k <= 0) {
            snprintf(c->errstr, sizeof c->errstr, "%s",
                     k == 0 ? "closed by the server" : c->ssl ? "TLS read failed" : strerror(errno));
            return NULL;
        }
        redisReaderFeed(c->rd, buf, (size_t)k);
    }
}

/* Print one answer (and free it). Returns an exit code. */
static int report(const opts *o, redisReply *r, bool as_map) {
    int rc = EXIT_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = EXIT_REFUSED;
        if (o->json) {
            const char *sp = strchr(r->str, ' ');
            json_t *e = json_object();
            char code[64];
            /* The stable code is the first word, or two for "ERR XXX". */
            const char *end = sp;
            if (sp && !strncmp(r->str, "ERR ", 4)) {
                const char *sp2 = strchr(sp + 1, ' ');
                end = sp2 ? sp2 : r->str + r->len;
            }
            snprintf(code, sizeof code, "%.*s", (int)(end ? end - r->str : (long)r->len), r->str);
            json_object_set_new(e, "error", json_string(code));
            json_object_set_new(e, "reason", json_string(end && *end ? end + 1 : ""));
            char *s = json_dumps(e, JSON_COMPACT);
            printf("%s\n", s);
            free(s);
            json_decref(e);
        } else {
            fprintf(stderr, "refused: %s\n", r->str);
        }
    } else if (r->type == REDIS_REPLY_STRING && !as_map) {
        if (o->json) {
            json_t *e = json_object();
            json_object_set_new(e, "info", json_stringn(r->str, r->len));
            char *s = json_dumps(e, JSON_COMPACT);
            printf("%s\n", s);
            free(s);
            json_decref(e);
        } else {
            fwrite(r->str, 1, r->len, stdout);
            printf("\n");
        }
    } else {
        json_t *j = to_json(r, as_map);
        if (o->json) {
            char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%s\n", s);
            free(s);
        } else if (json_is_object(j)) {
            print_human(j, 0);
        } else {
            char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
            printf("%s\n", s);
            free(s);
        }
        json_decref(j);
    }
    freeReplyObject(r);
    return rc;
}

static gwconn *connect_gw(const opts *o, int *rc);

/* "READONLY <leader> <host:port>" (SPEC §10: a cluster member that does not lead): the
 * leader's address into host/port. */
static bool redirect_target(const redisReply *r, char *host, size_t cap, int *port) {
    if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "READONLY ", 9) != 0) return false;
    const char *addr = strchr(r->str + 9, ' ');
    const char *colon = addr ? strrchr(addr + 1, ':') : NULL;
    if (!colon || colon == addr + 1 || (size_t)(colon - addr - 1) >= cap) return false;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535) return false;
    snprintf(host, cap, "%.*s", (int)(colon - addr - 1), addr + 1);
    *port = (int)p;
    return true;
}

/* Run one command on a fresh connection and print its answer; an answer READONLY sends it once
 * more, to the leader it names (never further: two members naming each other cannot loop).
 * Returns an exit code. */
static int run(const opts *o, int argc, const char **argv, bool as_map) {
    int rc;
    gwconn *c = connect_gw(o, &rc);
    if (!c) return rc;
    redisReply *r = conn_command(c, argc, argv);
    char host[256];
    int port;
    if (r && redirect_target(r, host, sizeof host, &port)) {
        fprintf(stderr, "stopctl: %s:%d %s; sending the command there\n", o->host, o->port, r->str);
        freeReplyObject(r);
        conn_close(c);
        opts to = *o;
        to.host = host;
        to.port = port;
        c = connect_gw(&to, &rc);
        if (!c) return rc;
        r = conn_command(c, argc, argv);
    }
    if (!r) {
        fprintf(stderr, "stopctl: connection lost: %s\n", c->errstr);
        conn_close(c);
        return EXIT_CONNECT;
    }
    rc = report(o, r, as_map);
    conn_close(c);
    return rc;
}

static gwconn *connect_gw(const opts *o, int *rc) {
    char err[512];
    gwconn *c = conn_open(o, err, sizeof err);
    if (!c) {
        fprintf(stderr, "stopctl: cannot connect to %s:%d%s: %s\n", o->host, o->port, o->tls.on ? " (TLS)" : "", err);
        *rc = EXIT_CONNECT;
        return NULL;
    }
    const char *secret = getenv("STOPGATE_SECRET");
    if (o->agent) {
        if (!secret || !*secret) {
            fprintf(stderr, "stopctl: --agent %s needs the secret in STOPGATE_SECRET\n", o->agent);
            conn_close(c);
            *rc = EXIT_USAGE;
            return NULL;
        }
        const char *av[3] = {"AUTH", o->agent, secret};
        redisReply *r = conn_command(c, 3, av);
        if (!r) {
            fprintf(stderr, "stopctl: connection lost during AUTH: %s\n", c->errstr);
            conn_close(c);
            *rc = EXIT_CONNECT;
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "refused: %s\n", r->str);
            freeReplyObject(r);
            conn_close(c);
            *rc = EXIT_REFUSED;
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/* --flag value options of one subcommand, mapped onto RESP NAME value pairs. */
typedef struct flagmap {
    const char *flag, *name;
    bool required;
    const char *value;
} flagmap;

static int parse_flags(int argc, char **argv, flagmap *f, size_t nf, const char **pos, int *npos, int maxpos) {
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "--", 2)) {
            size_t k;
            for (k = 0; k < nf; k++)
                if (!strcmp(argv[i], f[k].flag)) break;
            if (k == nf || i + 1 >= argc) {
                fprintf(stderr, "stopctl: unknown option or missing value: %s\n", argv[i]);
                return -1;
            }
            f[k].value = argv[++i];
        } else {
            if (*npos == maxpos) {
                fprintf(stderr, "stopctl: unexpected argument: %s\n", argv[i]);
                return -1;
            }
            pos[(*npos)++] = argv[i];
        }
    }
    for (size_t k = 0; k < nf; k++)
        if (f[k].required && !f[k].value) {
            fprintf(stderr, "stopctl: %s is required\n", f[k].flag);
            return -1;
        }
    return 0;
}

#define ARGV_MAX 64

static int cmd_order(const opts *o, const char *verb, int argc, char **argv) {
    bool freeze = !strcmp(verb, "FREEZE");
    flagmap f[] = {{"--request-id", NULL, true},  {"--bank", "BANK", true}, {"--account", "ACCOUNT", true},
                   {"--case", "CASE", true},      {"--amount", "AMOUNT"},   {"--currency", "CURRENCY"},
                   {"--ttl", "TTL"},              {"--reason", "REASON"},   {"--note", "NOTE"},
                   {"--doc", "DOC", freeze}};
    const char *pos[1];
    int npos;
    if (parse_flags(argc, argv, f, freeze ? 10 : 9, pos, &npos, 0) != 0) return usage(NULL);
    const char *av[ARGV_MAX];
    int ac = 0;
    av[ac++] = verb;
    av[ac++] = f[0].value;
    for (size_t k = 1; k < (freeze ? 10u : 9u); k++)
        if (f[k].value) {
            av[ac++] = f[k].name;
            av[ac++] = f[k].value;
        }
    return run(o, ac, av, true);
}

static int cmd_simple(const opts *o, int ac, const char **av, bool as_map) { return run(o, ac, av, as_map); }

/* ---- offline journal ------------------------------------------------------------------- */

typedef struct dump_ctx {
    bool print;
    bool json;
    const uint8_t *base; /* the segment being dumped, to find batch boundaries */
    size_t size;
    uint64_t seq;
} dump_ctx;

static void put_str(json_t *o, const char *k, rec_str s) {
    if (s.len) json_object_set_new(o, k, json_stringn(s.p, s.len));
}

/* A record that opens a batch (a frame header right before it): print the batch's line. */
static void dump_batch(const dump_ctx *d, uint64_t lsn, const uint8_t *p) {
    size_t rec_off = (size_t)(p - d->base) - sizeof(journal_rec_hdr);
    journal_frame f;
    if (rec_off < sizeof(journal_seg_hdr) + sizeof f ||
        !journal_frame_read(d->base, d->size, rec_off - sizeof f, JOURNAL_FRAME_MAGIC, &f) ||
        f.first_lsn != lsn)
        return;
    json_t *o = json_object();
    json_object_set_new(o, "batch", json_integer((json_int_t)f.first_lsn));
    json_object_set_new(o, "last_lsn", json_integer((json_int_t)f.last_lsn));
    json_object_set_new(o, "records", json_integer((json_int_t)(f.last_lsn - f.first_lsn + 1)));
    json_object_set_new(o, "segment", json_integer((json_int_t)d->seq));
    json_object_set_new(o, "offset", json_integer((json_int_t)(rec_off - sizeof f)));
    json_object_set_new(o, "bytes", json_integer(f.len));
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

static int dump_record(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *p, uint32_t len) {
    dump_ctx *d = ctx;
    if (d->print && d->base) dump_batch(d, lsn, p);
    if (type == REC_CLOSE) {
        int64_t ts = 0;
        if (len == sizeof ts) memcpy(&ts, p, sizeof ts);
        if (d->print)
            printf("{\"lsn\":%llu,\"type\":\"CLOSE\",\"ts\":%lld}\n", (unsigned long long)lsn,
                   (long long)ts);
        return 0;
    }
    order_rec r;
    if (record_decode(type, p, len, &r) != 0) {
        fprintf(stderr, "record %llu: malformed payload\n", (unsigned long long)lsn);
        return 1;
    }
    if (!d->print) return 0;
    json_t *o = json_object();
    json_object_set_new(o, "lsn", json_integer((json_int_t)lsn));
    json_object_set_new(o, "type", json_string(record_type_name(type)));
    char id[32];
    order_id_format(id, sizeof id, r.order_no);
    json_object_set_new(o, "order_id", json_string(id));
    if (r.kind) json_object_set_new(o, "kind", json_string(order_kind_name(r.kind)));
    if (r.state) json_object_set_new(o, "state", json_string(order_state_name(r.state)));
    put_str(o, "request_id", r.request_id);
    put_str(o, "bank", r.bank);
    put_str(o, "account", r.account);
    put_str(o, "case", r.case_id);
    put_str(o, "agent", r.agent);
    put_str(o, "reason", r.reason);
    put_str(o, "doc", r.doc);
    if (r.amount_minor) json_object_set_new(o, "amount", json_integer(r.amount_minor));
    if (r.frozen_minor) json_object_set_new(o, "frozen", json_integer(r.frozen_minor));
    if (r.expires_at_ms) json_object_set_new(o, "expires_at", json_integer(r.expires_at_ms));
    if (r.parent_no) {
        order_id_format(id, sizeof id, r.parent_no);
        json_object_set_new(o, "parent", json_string(id));
    }
    json_object_set_new(o, "ts", json_integer(r.ts_ms));
    if (r.onward_count) {
        json_t *a = json_array();
        for (uint32_t i = 0; i < r.onward_count; i++) {
            json_t *w = json_object();
            json_object_set_new(w, "bank", json_string(r.onward[i].bank));
            json_object_set_new(w, "account", json_string(r.onward[i].account));
            json_object_set_new(w, "amount", json_integer(r.onward[i].amount_minor));
            json_array_append_new(a, w);
        }
        json_object_set_new(o, "onward", a);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return 0;
}

static void salvage_line(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *p, uint32_t len,
                         bool verified) {
    (void)ctx;
    order_rec r;
    char id[32] = "?";
    if (record_decode(type, p, len, &r) == 0 && r.order_no)
        order_id_format(id, sizeof id, r.order_no);
    fprintf(stderr, "  in the damaged part: lsn %llu %s of order %s%s\n", (unsigned long long)lsn,
            record_type_name(type), id, verified ? "" : " (checksum fails: unverified)");
}

/* The verdict recovery reaches on the same bytes (journal.c replay_segment): a torn tail (an
 * incomplete last write: cut at start), a damaged tail (written whole, then damaged: start
 * refused unless --truncate-damaged-tail), or damage followed by valid records. seqs[0] is
 * the bad segment, seqs[1..n) the ones after it. */
static void report_bad(const char *dir, const uint64_t *seqs, int n, const uint8_t *data,
                       size_t size, const journal_scan_result *res) {
    bool later_records = false;
    for (int k = 1; k < n && !later_records && !res->valid_after_bad; k++) {
        char lname[64], lpath[4200];
        journal_seg_name(lname, sizeof lname, seqs[k]);
        snprintf(lpath, sizeof lpath, "%s/%s", dir, lname);
        int lfd = open(lpath, O_RDONLY | O_CLOEXEC);
        later_records = lfd < 0 || journal_fd_empty_after_header(lfd) != 1;
        if (lfd >= 0) close(lfd);
    }
    char name[64], at[48] = "", range[80];
    journal_seg_name(name, sizeof name, seqs[0]);
    if (res->bad_record_offset)
        snprintf(at, sizeof at, " (record at offset %zu)", res->bad_record_offset);
    if (res->bad_last_lsn)
        snprintf(range, sizeof range, "lsn %llu..%llu", (unsigned long long)res->bad_first_lsn,
                 (unsigned long long)res->bad_last_lsn);
    else
        snprintf(range, sizeof range, "lsn %llu and later", (unsigned long long)res->bad_first_lsn);
    const char *verdict;
    if (res->valid_after_bad || later_records)
        verdict = "(valid records follow: corruption, not a torn tail; stopgated refuses to start)";
    else if (res->damaged)
        verdict =
            "(damaged tail: written whole, so possibly acknowledged - not a torn write; stopgated "
            "refuses to start unless --truncate-damaged-tail)";
    else
        verdict = "(torn tail: the gateway cuts it at start; an incomplete last write, never "
                  "acknowledged)";
    fprintf(stderr, "BAD %s offset %zu: %s%s, %s %s\n", name, res->bad_offset, res->why, at, range,
            verdict);
    if (res->damaged || later_records)
        journal_salvage(data, size, res->bad_offset, size, salvage_line, NULL);
}

static int cmd_journal(const char *what, const char *dir, bool json) {
    bool dump = !strcmp(what, "dump");
    if (!dump && strcmp(what, "verify") != 0) return usage("journal verify DIR | journal dump DIR");
    uint64_t *seqs;
    int n = journal_list_segments(dir, &seqs);
    if (n < 0) {
        fprintf(stderr, "stopctl: %s: %s\n", dir, strerror(-n));
        return EXIT_REFUSED;
    }
    journal_chain chain = {.next_lsn = 1};
    dump_ctx d = {.print = dump, .json = json};
    int rc = EXIT_OK;
    for (int i = 0; i < n; i++) {
        char name[64], path[4200];
        journal_seg_name(name, sizeof name, seqs[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (i > 0 && seqs[i] != seqs[i - 1] + 1) {
            fprintf(stderr, "BAD %s: segment %llu is missing before it\n", name, (unsigned long long)seqs[i - 1] + 1);
            rc = EXIT_REFUSED;
            break;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            fprintf(stderr, "BAD %s: %s\n", name, strerror(errno));
            rc = EXIT_REFUSED;
            if (fd >= 0) close(fd);
            break;
        }
        const uint8_t *data = (const uint8_t *)"";
        if (st.st_size > 0) {
            data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (data == MAP_FAILED) {
                fprintf(stderr, "BAD %s: mmap: %s\n", name, strerror(errno));
                close(fd);
                rc = EXIT_REFUSED;
                break;
            }
        }
        journal_scan_result res;
        d.base = data;
        d.size = (size_t)st.st_size;
        d.seq = seqs[i];
        int cb = journal_scan_segment(data, (size_t)st.st_size, &chain, dump_record, &d, &res);
        if (!cb && !res.clean) report_bad(dir, seqs + i, n - i, data, (size_t)st.st_size, &res);
        if (st.st_size > 0) munmap((void *)data, (size_t)st.st_size);
        close(fd);
        if (cb) {
            fprintf(stderr, "BAD %s: a record's payload does not decode (lsn %llu)\n", name,
                    (unsigned long long)chain.next_lsn);
            rc = EXIT_REFUSED;
            break;
        }
        if (!res.clean) {
            rc = EXIT_REFUSED;
            break;
        }
    }
    free(seqs);
    if (rc == EXIT_OK && !dump)
        printf("journal %s: OK, %d segments, %llu records, hash chain intact%s\n", dir, n,
               (unsigned long long)chain.records,
               chain.closed ? ", ends with a close record (clean shutdown)"
                            : ", no close record at the end");
    return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    opts o = {.host = "127.0.0.1", .port = 7379};
    int i = 1, tls_opt;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "-h") && i + 1 < argc) o.host = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) {
            char *end;
            long p = strtol(argv[++i], &end, 10);
            if (*end || p <= 0 || p > 65535) return usage("bad port");
            o.port = (int)p;
        } else if (!strcmp(argv[i], "--agent") && i + 1 < argc) o.agent = argv[++i];
        else if (!strcmp(argv[i], "--json")) o.json = true;
        else if ((tls_opt = tlsc_parse_opt(&o.tls, argc, argv, &i)) != 0) {
            if (tls_opt < 0) return usage("missing value for a TLS option");
        } else if (!strcmp(argv[i], "--help")) {
            usage(NULL);
            return EXIT_OK;
        } else if (argv[i][0] == '-') return usage("unknown global option");
        else break;
    }
    if (tlsc_opts_check(&o.tls)) return usage(tlsc_opts_check(&o.tls));
    if (i >= argc) return usage("missing command");
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **ra = argv + i;
    if (!strcmp(cmd, "hash-secret")) {
        if (rest != 1) return usage("hash-secret SECRET");
        if (auth_init() != 0) return EXIT_REFUSED;
        char out[256];
        if (auth_hash_secret(ra[0], strlen(ra[0]), out, sizeof out) != 0) return usage("secret must be 1-256 bytes");
        printf("%s\n", out);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "journal")) {
        if (rest != 2) return usage("journal verify DIR | journal dump DIR");
        return cmd_journal(ra[0], ra[1], o.json);
    }
    if (!strcmp(cmd, "stop")) return cmd_order(&o, "STOP", rest, ra);
    if (!strcmp(cmd, "freeze")) return cmd_order(&o, "FREEZE", rest, ra);
    if (!strcmp(cmd, "release") || !strcmp(cmd, "extend")) {
        bool ext = !strcmp(cmd, "extend");
        /* --doc: the legal reference a supervisor gives to release a judicial FREEZE. */
        flagmap f[] = {{"--request-id", NULL, true},
                       {ext ? "--ttl" : "--reason", ext ? "TTL" : "REASON", ext},
                       {"--doc", "DOC"}};
        const char *pos[1];
        int npos;
        if (parse_flags(rest, ra, f, ext ? 2 : 3, pos, &npos, 1) != 0 || npos != 1) return usage(NULL);
        const char *av[8] = {ext ? "EXTEND" : "RELEASE", f[0].value, pos[0]};
        int ac = 3;
        for (size_t k = 1; k < 3; k++)
            if (f[k].value) {
                av[ac++] = f[k].name;
                av[ac++] = f[k].value;
            }
        return cmd_simple(&o, ac, av, true);
    }
    if (!strcmp(cmd, "confirm") || !strcmp(cmd, "status") || !strcmp(cmd, "case")) {
        if (rest != 1) return usage(NULL);
        const char *av[2] = {!strcmp(cmd, "confirm") ? "CONFIRM" : !strcmp(cmd, "status") ? "STATUS" : "CASE", ra[0]};
        return cmd_simple(&o, 2, av, true);
    }
    if (!strcmp(cmd, "check")) {
        if (rest != 2) return usage("check BANK ACCOUNT");
        const char *av[3] = {"CHECK", ra[0], ra[1]};
        return cmd_simple(&o, 3, av, true);
    }
    if (!strcmp(cmd, "info")) {
        if (rest > 1) return usage("info [SECTION]");
        const char *av[2] = {"INFO", rest ? ra[0] : NULL};
        return cmd_simple(&o, 1 + rest, av, false);
    }
    if (!strcmp(cmd, "role")) {
        const char *av[1] = {"ROLE"};
        return cmd_simple(&o, 1, av, true);
    }
    if (!strcmp(cmd, "list")) {
        if (rest < 1) return usage(NULL);
        const char *av[ARGV_MAX];
        int ac = 0;
        flagmap f[] = {{"--score", "SCORE"}, {"--ttl", "TTL"}, {"--case", "CASE"}};
        const char *pos[4];
        int npos;
        if (parse_flags(rest - 1, ra + 1, f, 3, pos, &npos, 3) != 0) return usage(NULL);
        if (!strcmp(ra[0], "add") || !strcmp(ra[0], "del")) {
            if (npos != 3) return usage("list add|del LIST BANK ACCOUNT");
            av[ac++] = !strcmp(ra[0], "add") ? "LIST.ADD" : "LIST.DEL";
        } else if (!strcmp(ra[0], "load")) {
            if (npos != 2) return usage("list load LIST FILE.csv");
            av[ac++] = "LIST.LOAD";
        } else if (!strcmp(ra[0], "info")) {
            if (npos > 1) return usage("list info [LIST]");
            av[ac++] = "LIST.INFO";
        } else {
            return usage("list add|del|load|info");
        }
        char abs_path[PATH_MAX];
        char *csv = NULL;
        if (!strcmp(ra[0], "load")) {
            /* The gateway opens the file itself (it may be millions of rows): give it a path
             * that does not depend on our working directory. '-' sends stdin inline instead. */
            av[ac++] = pos[0];
            if (!strcmp(pos[1], "-")) {
                size_t len = 0, cap = 0;
                for (;;) {
                    if (len == cap) {
                        cap = cap ? cap * 2 : 65536;
                        char *n = realloc(csv, cap + 1);
                        if (!n) {
                            free(csv);
                            fprintf(stderr, "stopctl: out of memory reading stdin\n");
                            return EXIT_USAGE;
                        }
                        csv = n;
                    }
                    size_t got = fread(csv + len, 1, cap - len, stdin);
                    if (got == 0) break;
                    len += got;
                }
                if (!csv) csv = strdup("");
                csv[len] = 0;
                av[ac++] = "-";
                av[ac++] = csv;
            } else {
                if (!realpath(pos[1], abs_path)) {
                    fprintf(stderr, "stopctl: %s: %s\n", pos[1], strerror(errno));
                    return EXIT_USAGE;
                }
                av[ac++] = abs_path;
            }
        } else {
            for (int k = 0; k < npos; k++) av[ac++] = pos[k];
        }
        for (int k = 0; k < 3; k++)
            if (f[k].value) {
                av[ac++] = f[k].name;
                av[ac++] = f[k].value;
            }
        int rc = cmd_simple(&o, ac, av, true);
        free(csv);
        return rc;
    }
    return usage("unknown command");
}
