/*
 * benchlib: what the bench tools share - a little RESP client (burst, stoplat), argument
 * parsing and percentiles. Header-only, everything static inline: each tool takes what it uses.
 */
#ifndef SG_BENCHLIB_H
#define SG_BENCHLIB_H
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_TOOL
#define BENCH_TOOL "bench"
#endif

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static inline void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(BENCH_TOOL ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static inline int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void sb_need(sbuf *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("out of memory");
    b->cap = cap;
}

static inline void sb_put(sbuf *b, const void *p, size_t n) {
    sb_need(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* Append one RESP command (array of bulk strings). */
static inline void sb_cmd(sbuf *b, int argc, const char **argv) {
    char h[32];
    sb_put(b, h, (size_t)snprintf(h, sizeof h, "*%d\r\n", argc));
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]);
        sb_put(b, h, (size_t)snprintf(h, sizeof h, "$%zu\r\n", l));
        sb_put(b, argv[i], l);
        sb_put(b, "\r\n", 2);
    }
}

/* What one top-level reply said: an error, and the value after a "status" key (the
 * STOP answer is a RESP3 map or a RESP2 flat array of name, value pairs). */
typedef struct rinfo {
    int err;
    int want_status;
    char status[24];
    char errmsg[160];
} rinfo;

static inline void copy_to(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

static inline void scalar_seen(rinfo *ri, int depth, const char *s, size_t n) {
    if (depth != 1) return;
    if (ri->want_status) {
        copy_to(ri->status, sizeof ri->status, s, n);
        ri->want_status = 0;
    } else if (n == 6 && !memcmp(s, "status", 6)) {
        ri->want_status = 1;
    }
}

/* Parse one RESP2/RESP3 value at p[0..n). Bytes consumed, 0 when incomplete, -1 when
 * malformed. */
static inline long rparse(const char *p, size_t n, int depth, rinfo *ri) {
    if (depth > 32) return -1;
    const char *nl = memchr(p, '\n', n);
    if (!nl) return 0;
    if (nl == p || nl[-1] != '\r') return -1;
    size_t hl = (size_t)(nl - p) + 1;
    const char *s = p + 1;
    size_t sl = hl - 3;
    long long v = strtoll(s, NULL, 10);
    switch (p[0]) {
    case '-':
        if (depth == 0) {
            ri->err = 1;
            copy_to(ri->errmsg, sizeof ri->errmsg, s, sl);
        }
        return (long)hl;
    case '+':
    case ':':
    case ',':
    case '(':
    case '#':
    case '_': scalar_seen(ri, depth, s, sl); return (long)hl;
    case '$':
    case '=':
    case '!': {
        if (v < 0) return (long)hl;
        if (hl + (size_t)v + 2 > n) return 0;
        if (p[0] == '!' && depth == 0) {
            ri->err = 1;
            copy_to(ri->errmsg, sizeof ri->errmsg, p + hl, (size_t)v);
        }
        scalar_seen(ri, depth, p + hl, (size_t)v);
        return (long)(hl + (size_t)v + 2);
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
        if (v < 0) return (long)hl;
        long long items = (p[0] == '%' || p[0] == '|') ? 2 * v : v;
        size_t off = hl;
        for (long long i = 0; i < items; i++) {
            long r = rparse(p + off, n - off, depth + 1, ri);
            if (r <= 0) return r;
            off += (size_t)r;
        }
        if (p[0] == '|') { /* an attribute precedes the real value */
            long r = rparse(p + off, n - off, depth, ri);
            if (r <= 0) return r;
            off += (size_t)r;
        }
        return (long)off;
    }
    default: return -1;
    }
}

static inline int connect_to(const char *host, const char *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) die("%s:%s: %s", host, port, gai_strerror(rc));
    int fd = -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) die("cannot connect to %s:%s: %s", host, port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static inline void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* Blocking: read one complete reply into *in (consumed from it), filling ri. */
static inline void read_reply(int fd, sbuf *in, rinfo *ri) {
    for (;;) {
        memset(ri, 0, sizeof *ri);
        long r = in->len ? rparse(in->p, in->len, 0, ri) : 0;
        if (r < 0) die("malformed reply");
        if (r > 0) {
            memmove(in->p, in->p + r, in->len - (size_t)r);
            in->len -= (size_t)r;
            return;
        }
        sb_need(in, 65536);
        ssize_t got = recv(fd, in->p + in->len, in->cap - in->len, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) die("connection closed while waiting for a reply");
        in->len += (size_t)got;
    }
}

static inline void auth(int fd, sbuf *in, const char *agent, const char *secret) {
    const char *argv[] = {"AUTH", agent, secret};
    sbuf b = {0};
    sb_cmd(&b, 3, argv);
    send_all(fd, b.p, b.len);
    free(b.p);
    rinfo ri;
    read_reply(fd, in, &ri);
    if (ri.err) die("AUTH %s refused: %s", agent, ri.errmsg);
}


/* Nearest-rank percentile of sorted v[0..n), converted by dividing by div. */
static inline double bench_pct(const int64_t *v, size_t n, double p, double div) {
    size_t k = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return (double)v[k - 1] / div;
}

/* A whole number in [lo, hi] from a command-line argument, or usage(). */
static inline long long bench_arg_ll(const char *s, long long lo, long long hi, void (*usage)(void)) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) usage();
    return v;
}

/* The options burst and stoplat share: where the gateway is, who to log in as, the bank of
 * the STOPs and the digits that make this run's request ids and accounts unique. */
typedef struct bench_opts {
    const char *host, *port, *agent, *bank;
    char tag[16];
} bench_opts;

static inline void bench_opts_init(bench_opts *o) {
    *o = (bench_opts){.host = "127.0.0.1", .port = "7379", .agent = "dev", .bank = "ICBC"};
}

/* Takes option a with value v if it is one of the shared ones (1), else 0. */
static inline int bench_opt(bench_opts *o, const char *a, const char *v, void (*usage)(void)) {
    if (!strcmp(a, "-h")) o->host = v;
    else if (!strcmp(a, "-p")) o->port = v;
    else if (!strcmp(a, "--agent")) o->agent = v;
    else if (!strcmp(a, "--bank")) o->bank = v;
    else if (!strcmp(a, "--tag")) {
        if (strlen(v) == 0 || strlen(v) > 12 || strspn(v, "0123456789") != strlen(v)) usage();
        snprintf(o->tag, sizeof o->tag, "%s", v);
    } else return 0;
    return 1;
}

/* After parsing: a tag if none was given. */
static inline void bench_opts_finish(bench_opts *o) {
    if (!*o->tag) snprintf(o->tag, sizeof o->tag, "%010lld", (long long)((mono_ns() / 1000 + getpid()) % 10000000000LL));
}

static inline int bench_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}
#endif
