/*
 * stoplat: the latency of one durable STOP, one connection, one request in flight.
 *
 *   STOPGATE_SECRET=... stoplat [-h HOST] [-p PORT] [--agent NAME] [-n N] [-w WARMUP]
 *                               [--think-us US] [--bank B] [--tag DIGITS] [--dump FILE]
 *
 * AUTHs (not timed), then sends N STOPs (after WARMUP untimed ones), each with its own
 * request id and account (ending in X: the simulated bank CONFIRMs it), waiting for each
 * answer before sending the next; the time is send -> complete answer. --think-us pauses
 * that long after each answer (default 0: closed loop, as redis-benchmark -c 1 does), which
 * shows what a STOP costs when the gateway's own follow-up journal records (SENT, the bank's
 * answer) are already durable when it arrives. Prints one line:
 *
 *   stoplat: n=2000 think_us=0 p50_us=... p90_us=... p99_us=... max_us=... mean_us=... errors=0 other=0
 *
 * other counts answers that were not ACCEPTED (DUPLICATE when a --tag is reused: answered
 * from memory, not a durable write).
 *
 * Percentiles are nearest-rank. --dump writes one line per timed STOP, "start_us latency_us"
 * (start relative to the first), to find what the slow ones have in common (e.g. a period).
 * Exit status 1 if any STOP was refused or not ACCEPTED.
 */
#define BENCH_TOOL "stoplat"
#include "benchlib.h"

static void usage(void) {
    fprintf(stderr, "usage: STOPGATE_SECRET=... stoplat [-h HOST] [-p PORT] [--agent NAME] [-n N] [-w WARMUP]\n"
                    "               [--think-us US] [--bank B] [--tag DIGITS] [--dump FILE]\n");
    exit(2);
}

static long long arg_ll(const char *s, long long lo, long long hi) { return bench_arg_ll(s, lo, hi, usage); }

int main(int argc, char **argv) {
    bench_opts o;
    bench_opts_init(&o);
    long long n = 2000, warmup = 50, think_us = 0;
    const char *dump = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (bench_opt(&o, a, v, usage)) continue;
        if (!strcmp(a, "-n")) n = arg_ll(v, 1, 10000000);
        else if (!strcmp(a, "-w")) warmup = arg_ll(v, 0, 1000000);
        else if (!strcmp(a, "--think-us")) think_us = arg_ll(v, 0, 10000000);
        else if (!strcmp(a, "--dump")) dump = v;
        else usage();
    }
    const char *secret = getenv("STOPGATE_SECRET");
    if (!secret || !*secret) die("set STOPGATE_SECRET to the agent's secret");
    bench_opts_finish(&o);
    const char *host = o.host, *port = o.port, *agent = o.agent, *bank = o.bank, *tag = o.tag;

    int fd = connect_to(host, port);
    sbuf in = {0}, out = {0};
    auth(fd, &in, agent, secret);
    int64_t *lat = malloc(sizeof *lat * (size_t)n), *start = malloc(sizeof *start * (size_t)n);
    if (!lat || !start) die("out of memory");
    long long errors = 0, other = 0;
    char first_err[160] = "", other_status[24] = "";
    char rid[64], acct[64], cs[64];
    snprintf(cs, sizeof cs, "LAT-%s", tag);
    for (long long i = -warmup; i < n; i++) {
        long long k = i + warmup;
        snprintf(rid, sizeof rid, "lat-%s-%07lld", tag, k);
        snprintf(acct, sizeof acct, "LA%s%07lldX", tag, k);
        const char *args[] = {"STOP", rid, "BANK", bank, "ACCOUNT", acct, "CASE", cs};
        out.len = 0;
        sb_cmd(&out, 8, args);
        rinfo ri;
        int64_t t0 = mono_ns();
        send_all(fd, out.p, out.len);
        read_reply(fd, &in, &ri);
        int64_t t1 = mono_ns();
        if (ri.err) {
            if (!errors++) snprintf(first_err, sizeof first_err, "%s", ri.errmsg);
        } else if (strcmp(ri.status, "ACCEPTED") != 0 && !other++) {
            snprintf(other_status, sizeof other_status, "%s", ri.status);
        }
        if (i >= 0) {
            lat[i] = t1 - t0;
            start[i] = t0;
        }
        if (think_us) {
            struct timespec ts = {.tv_sec = think_us / 1000000, .tv_nsec = (think_us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    close(fd);
    if (dump) {
        FILE *f = fopen(dump, "w");
        if (!f) die("%s: %s", dump, strerror(errno));
        for (long long i = 0; i < n; i++)
            fprintf(f, "%.1f %.1f\n", (double)(start[i] - start[0]) / 1e3, (double)lat[i] / 1e3);
        if (fclose(f) != 0) die("%s: %s", dump, strerror(errno));
    }
    free(start);
    double sum = 0;
    for (long long i = 0; i < n; i++) sum += (double)lat[i];
    qsort(lat, (size_t)n, sizeof *lat, bench_cmp_i64);
    printf("stoplat: n=%lld think_us=%lld p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f errors=%lld other=%lld\n",
           n, think_us, bench_pct(lat, (size_t)n, 50, 1e3), bench_pct(lat, (size_t)n, 90, 1e3),
           bench_pct(lat, (size_t)n, 99, 1e3), (double)lat[n - 1] / 1e3, sum / (double)n / 1e3, errors, other);
    if (errors) fprintf(stderr, "stoplat: %lld STOPs refused, the first: %s\n", errors, first_err);
    /* A DUPLICATE (a --tag used before) is answered from memory: not a durable-write latency. */
    if (other) fprintf(stderr, "stoplat: %lld answers were not ACCEPTED (e.g. %s)\n", other, other_status);
    free(lat);
    free(in.p);
    free(out.p);
    return errors || other ? 1 : 0;
}
