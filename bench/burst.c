/*
 * burst: the "provincial push" - N STOP orders (default 6,077) pipelined on one connection.
 *
 *   STOPGATE_SECRET=... burst [-h HOST] [-p PORT] [--agent NAME] [-n N] [--bank B]
 *                             [--tag T] [--timeout-ms MS] [--poll-us US] [--redis]
 *
 * Opens two connections and AUTHs both (AUTH is deliberately slow and is not timed), builds
 * N STOPs with distinct request ids and accounts (accounts end in X, so the simulated bank
 * CONFIRMs them, SPEC §2b), then, from t0:
 *   - writes them all at once (non-blocking; the kernel may take the bytes in a few writes,
 *     counted as writes=) and reads the answers as they come; acked_ms is t0 -> the N-th
 *     answer (each answer means the order is durable in the journal);
 *   - polls INFO on the second connection (every --poll-us, default 100 us) until
 *     orders_CONFIRMED has grown by the number of orders accepted; confirmed_ms is
 *     t0 -> the poll that saw it.
 * Prints one line:
 *   burst: n=6077 acked_ms=12.3 confirmed_ms=20.1 accepted=6077 other=0 errors=0 writes=3
 * Exit status 0 when every order was answered without error and (gateway mode) confirmed.
 *
 * --redis: the peer - N `SET key value` (value of the STOP's size) to a redis-server instead,
 * no AUTH unless STOPGATE_SECRET is set, no second connection; confirmed_ms is not measured.
 */
#include <poll.h>

#define BENCH_TOOL "burst"
#include "benchlib.h"

/* INFO on fd; the value of orders_CONFIRMED (-1 if absent). The INFO text comes as one bulk
 * (or verbatim) string, read whole into in. */
static long long info_confirmed(int fd, sbuf *in) {
    static const char cmd[] = "*1\r\n$4\r\nINFO\r\n";
    send_all(fd, cmd, sizeof cmd - 1);
    rinfo ri;
    for (;;) {
        memset(&ri, 0, sizeof ri);
        long r = in->len ? rparse(in->p, in->len, 0, &ri) : 0;
        if (r < 0) die("malformed INFO reply");
        if (r > 0) {
            if (ri.err) die("INFO refused: %s", ri.errmsg);
            long long v = -1;
            const char *k = "orders_CONFIRMED:";
            const char *hit = memmem(in->p, (size_t)r, k, strlen(k));
            if (hit) v = strtoll(hit + strlen(k), NULL, 10);
            memmove(in->p, in->p + r, in->len - (size_t)r);
            in->len -= (size_t)r;
            return v;
        }
        sb_need(in, 65536);
        ssize_t got = recv(fd, in->p + in->len, in->cap - in->len, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) die("connection closed while waiting for INFO");
        in->len += (size_t)got;
    }
}

static void usage(void) {
    fprintf(stderr, "usage: STOPGATE_SECRET=... burst [-h HOST] [-p PORT] [--agent NAME] [-n N] [--bank B]\n"
                    "             [--tag T] [--timeout-ms MS] [--poll-us US] [--redis]\n");
    exit(2);
}

static long long arg_ll(const char *s, long long lo, long long hi) { return bench_arg_ll(s, lo, hi, usage); }

int main(int argc, char **argv) {
    bench_opts o;
    bench_opts_init(&o);
    long long n = 6077, timeout_ms = 10000, poll_us = 100;
    int redis = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--redis")) {
            redis = 1;
            continue;
        }
        if (!v) usage();
        i++;
        if (bench_opt(&o, a, v, usage)) continue;
        if (!strcmp(a, "-n")) n = arg_ll(v, 1, 1000000);
        else if (!strcmp(a, "--timeout-ms")) timeout_ms = arg_ll(v, 1, 3600000);
        else if (!strcmp(a, "--poll-us")) poll_us = arg_ll(v, 0, 1000000);
        else usage();
    }
    const char *secret = getenv("STOPGATE_SECRET");
    if (!redis && (!secret || !*secret)) die("set STOPGATE_SECRET to the agent's secret");
    bench_opts_finish(&o);
    const char *host = o.host, *port = o.port, *agent = o.agent, *bank = o.bank, *tag = o.tag;

    /* Connections and AUTH first: not part of the burst. */
    int c1 = connect_to(host, port), c2 = -1;
    sbuf in1 = {0}, in2 = {0};
    if (secret && *secret) auth(c1, &in1, agent, secret);
    long long base = 0;
    if (!redis) {
        c2 = connect_to(host, port);
        auth(c2, &in2, agent, secret);
        base = info_confirmed(c2, &in2);
        if (base < 0) die("INFO has no orders_CONFIRMED line");
    }

    /* The burst, built before t0. */
    sbuf out = {0};
    char rid[64], acct[64], cs[64], amt[32];
    snprintf(cs, sizeof cs, "BURST-%s", tag);
    for (long long i = 0; i < n; i++) {
        snprintf(rid, sizeof rid, "burst-%s-%06lld", tag, i);
        snprintf(acct, sizeof acct, "BU%s%06lldX", tag, i);
        snprintf(amt, sizeof amt, "%lld", 50000 + (i % 1000) * 100);
        if (redis) {
            char val[256];
            snprintf(val, sizeof val, "%s:%s:%s:%s", bank, acct, cs, amt);
            const char *args[] = {"SET", rid, val};
            sb_cmd(&out, 3, args);
        } else {
            const char *args[] = {"STOP", rid, "BANK", bank, "ACCOUNT", acct, "CASE", cs, "AMOUNT", amt};
            sb_cmd(&out, 10, args);
        }
    }

    int64_t t0 = mono_ns(), deadline = t0 + timeout_ms * 1000000;
    size_t sent = 0;
    long long answered = 0, accepted = 0, other = 0, errors = 0, writes = 0;
    char first_err[160] = "", other_status[24] = "";
    int malformed = 0;
    while (answered < n) {
        struct pollfd pfd = {.fd = c1, .events = POLLIN | (sent < out.len ? POLLOUT : 0)};
        int64_t left = (deadline - mono_ns()) / 1000000;
        if (left <= 0) break;
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) die("poll: %s", strerror(errno));
        if (sent < out.len && (pfd.revents & POLLOUT)) {
            ssize_t w = send(c1, out.p + sent, out.len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR) die("send: %s", strerror(errno));
            if (w > 0) {
                sent += (size_t)w;
                writes++;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            sb_need(&in1, 262144);
            ssize_t got = recv(c1, in1.p + in1.len, in1.cap - in1.len, MSG_DONTWAIT);
            if (got == 0) die("gateway closed the connection after %lld answers", answered);
            if (got < 0 && errno != EAGAIN && errno != EINTR) die("recv: %s", strerror(errno));
            if (got > 0) in1.len += (size_t)got;
            size_t off = 0;
            while (off < in1.len && answered < n) {
                rinfo ri = {0};
                long r = rparse(in1.p + off, in1.len - off, 0, &ri);
                if (r < 0) {
                    malformed = 1;
                    break;
                }
                if (r == 0) break;
                off += (size_t)r;
                answered++;
                if (ri.err) {
                    if (!errors++) snprintf(first_err, sizeof first_err, "%s", ri.errmsg);
                } else if (redis || !strcmp(ri.status, "ACCEPTED")) {
                    accepted++;
                } else {
                    if (!other++) snprintf(other_status, sizeof other_status, "%s", ri.status);
                }
            }
            memmove(in1.p, in1.p + off, in1.len - off);
            in1.len -= off;
            if (malformed) die("malformed reply after %lld answers", answered);
        }
    }
    int64_t t_ack = mono_ns();
    if (answered < n) die("timeout: %lld of %lld answered after %lld ms", answered, n, timeout_ms);

    double confirmed_ms = -1;
    if (!redis && accepted > 0) {
        for (;;) {
            long long c = info_confirmed(c2, &in2);
            int64_t t = mono_ns();
            if (c >= base + accepted) {
                confirmed_ms = (double)(t - t0) / 1e6;
                break;
            }
            if (t > deadline) {
                fprintf(stderr, "burst: only %lld of %lld CONFIRMED after %lld ms\n", c - base, accepted, timeout_ms);
                break;
            }
            if (poll_us) {
                struct timespec ts = {.tv_sec = poll_us / 1000000, .tv_nsec = (poll_us % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
        }
    }
    printf("burst: n=%lld acked_ms=%.3f confirmed_ms=%.3f accepted=%lld other=%lld errors=%lld writes=%lld bytes=%zu\n",
           n, (double)(t_ack - t0) / 1e6, confirmed_ms, accepted, other, errors, writes, out.len);
    if (errors) fprintf(stderr, "burst: %lld errors, the first: %s\n", errors, first_err);
    if (other) fprintf(stderr, "burst: %lld answers were not ACCEPTED (e.g. %s)\n", other, other_status);
    close(c1);
    if (c2 >= 0) close(c2);
    free(out.p);
    free(in1.p);
    free(in2.p);
    return errors || (!redis && confirmed_ms < 0) ? 1 : 0;
}
