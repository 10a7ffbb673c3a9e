/*
 * sb_report: stopbench's results - merging the workers' stats, the text summary on stdout,
 * the JSON report (SPEC §8 fields and more) and the plot (gnuplot, fed a generated script
 * with inline data blocks through a pipe: latency by percentile, and throughput over time).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb.h"

static const char *const kind_names[K__COUNT] = {"check", "stop", "ping"};
static const char *const verdict_names[3] = {"CLEAR", "LISTED", "FROZEN"};
static const char *const status_names[4] = {"ACCEPTED", "DUPLICATE", "MERGED", "HELD"};

/* ---- stats ---- */

int sb_stats_init(sb_stats *st, int64_t tick_ns) {
    memset(st, 0, sizeof *st);
    st->tick_ns = tick_ns;
    for (int k = 0; k < K__COUNT; k++)
        if (hdr_init(&st->lat[k]) != 0) return -1;
    st->ticks = calloc(SB_TICKS_MAX, sizeof *st->ticks);
    return st->ticks ? 0 : -1;
}

void sb_stats_free(sb_stats *st) {
    for (int k = 0; k < K__COUNT; k++) hdr_free(&st->lat[k]);
    free(st->ticks);
    st->ticks = NULL;
}

static void add_code(sb_stats *st, const char *code, size_t n, uint64_t count) {
    if (n >= sizeof st->codes[0]) n = sizeof st->codes[0] - 1;
    for (int i = 0; i < st->ncodes; i++)
        if (strlen(st->codes[i]) == n && !memcmp(st->codes[i], code, n)) {
            st->code_n[i] += count;
            return;
        }
    int i = st->ncodes < SB_ERR_CODES_MAX ? st->ncodes++ : SB_ERR_CODES_MAX - 1; /* the last gathers the rest */
    if (st->code_n[i] == 0 || i < SB_ERR_CODES_MAX - 1) {
        memcpy(st->codes[i], code, n);
        st->codes[i][n] = 0;
    } else {
        snprintf(st->codes[i], sizeof st->codes[i], "other");
    }
    st->code_n[i] += count;
}

void sb_count_error(sb_stats *st, int kind, const char *code, size_t code_len, const char *msg, size_t msg_len) {
    st->err_reply[kind]++;
    add_code(st, code, code_len, 1);
    if (!st->first_error[0]) {
        int n = msg_len > 150 ? 150 : (int)msg_len;
        snprintf(st->first_error, sizeof st->first_error, "%s: %.*s", kind_names[kind], n, msg);
    }
}

void sb_stats_merge(sb_stats *d, const sb_stats *s) {
    for (int k = 0; k < K__COUNT; k++) {
        hdr_merge(&d->lat[k], &s->lat[k]);
        d->answered[k] += s->answered[k];
        d->err_reply[k] += s->err_reply[k];
    }
    d->timeouts += s->timeouts;
    d->closed += s->closed;
    d->unsent += s->unsent;
    for (int i = 0; i < 3; i++) d->verdicts[i] += s->verdicts[i];
    for (int i = 0; i < 4; i++) d->statuses[i] += s->statuses[i];
    d->sent += s->sent;
    d->datagrams += s->datagrams;
    d->retries += s->retries;
    d->late_replies += s->late_replies;
    if (s->max_lag_ns > d->max_lag_ns) d->max_lag_ns = s->max_lag_ns;
    d->late_sends += s->late_sends;
    if (s->t_last_ns > d->t_last_ns) d->t_last_ns = s->t_last_ns;
    for (int i = 0; i < s->ncodes; i++) add_code(d, s->codes[i], strlen(s->codes[i]), s->code_n[i]);
    if (!d->first_error[0] && s->first_error[0]) snprintf(d->first_error, sizeof d->first_error, "%s", s->first_error);
    for (int i = 0; i < SB_TICKS_MAX; i++) d->ticks[i] += s->ticks[i];
}

uint64_t sb_ok(const sb_result *r) {
    uint64_t n = 0;
    for (int k = 0; k < K__COUNT; k++) n += r->all.answered[k];
    return n;
}

uint64_t sb_requests(const sb_result *r) {
    uint64_t n = sb_ok(r);
    for (int k = 0; k < K__COUNT; k++) n += r->all.err_reply[k];
    return n;
}

uint64_t sb_errors(const sb_result *r) {
    uint64_t n = r->all.timeouts + r->all.closed + r->all.unsent + r->connect_errors + r->auth_errors;
    for (int k = 0; k < K__COUNT; k++) n += r->all.err_reply[k];
    return n;
}

/* All kinds merged into one histogram (the caller frees it). */
static int merged_latency(const sb_result *r, hdr *h) {
    if (hdr_init(h) != 0) return -1;
    for (int k = 0; k < K__COUNT; k++) hdr_merge(h, &r->all.lat[k]);
    return 0;
}

static double us(uint64_t ns) { return round((double)ns / 100.0) / 10.0; } /* 0.1 us */

static const char *op_name(int op) {
    static const char *const n[] = {"check", "stop", "mixed", "ping"};
    return n[op];
}

static const char *mode_name(const sb_opts *o) { return o->burst ? "burst" : o->rate > 0 ? "open" : "closed"; }

static double throughput(const sb_result *r) { return r->seconds > 0 ? (double)sb_ok(r) / r->seconds : 0; }

/* ---- text ---- */

void sb_report_text(const sb_opts *o, const sb_result *r) {
    hdr h;
    if (merged_latency(r, &h) != 0) return;
    if (o->burst && o->transport == TR_UDP)
        printf("stopbench: stopgate burst of %llu STOPs over udp, %d per datagram, all in flight at once",
               (unsigned long long)o->burst, o->batch);
    else if (o->burst)
        printf("stopbench: %s burst of %llu %s on one connection", o->target == TG_REDIS ? "redis" : "stopgate",
               (unsigned long long)o->burst, o->target == TG_REDIS ? "SETs" : "STOPs");
    else
        printf("stopbench: %s %s over %s, %s loop, %d connection%s x %d%s", o->target == TG_REDIS ? "redis" : "stopgate",
               op_name(o->op), o->transport == TR_UDP ? "udp" : "resp", mode_name(o), o->connections,
               o->connections == 1 ? "" : "s", o->pipeline, o->transport == TR_UDP ? " datagrams" : "");
    if (o->transport == TR_UDP && !o->burst) printf(", %d per datagram", o->batch);
    if (o->rate > 0) printf(", at %.0f/s", o->rate);
    printf("\n");
    printf("  requests %llu  errors %llu  seconds %.3f  throughput %.0f/s\n", (unsigned long long)sb_requests(r),
           (unsigned long long)sb_errors(r), r->seconds, throughput(r));
    printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n", us(hdr_percentile(&h, 50)),
           us(hdr_percentile(&h, 90)), us(hdr_percentile(&h, 99)), us(hdr_percentile(&h, 99.9)), us(h.max),
           hdr_mean(&h) / 1000.0);
    if (o->rate > 0)
        printf("  open loop: offered %.0f/s, achieved %.0f/s, max send lag %.1f ms, %s\n", o->rate, throughput(r),
               (double)r->all.max_lag_ns / 1e6, r->rate_sustained ? "sustained" : "NOT sustained");
    if (r->burst_done) {
        printf("  burst %llu: acked %.3f ms", (unsigned long long)o->burst, r->burst.acked_ms);
        if (o->target == TG_STOPGATE && o->transport == TR_RESP)
            printf(", at the bank (SENT or later) %.3f ms, CONFIRMED %.3f ms, last order %s %s", r->burst.at_bank_ms,
                   r->burst.confirmed_ms, r->burst.last_order, r->burst.last_state);
        printf("\n");
    }
    if (r->all.answered[K_CHECK] && o->target == TG_STOPGATE)
        printf("  verdicts CLEAR %llu LISTED %llu FROZEN %llu\n", (unsigned long long)r->all.verdicts[0],
               (unsigned long long)r->all.verdicts[1], (unsigned long long)r->all.verdicts[2]);
    printf("  generator CPU %.2f s user + %.2f s system", r->cpu_user_s, r->cpu_sys_s);
    if (sb_requests(r)) printf(" (%.2f us per request)", (r->cpu_user_s + r->cpu_sys_s) * 1e6 / (double)sb_requests(r));
    printf("\n");
    if (sb_errors(r)) {
        printf("  errors: %llu error replies, %llu timeouts, %llu lost on closed connections, %llu not sent\n",
               (unsigned long long)(sb_errors(r) - r->all.timeouts - r->all.closed - r->all.unsent - r->connect_errors -
                                    r->auth_errors),
               (unsigned long long)r->all.timeouts, (unsigned long long)r->all.closed,
               (unsigned long long)r->all.unsent);
        for (int i = 0; i < r->all.ncodes; i++)
            printf("    %s: %llu\n", r->all.codes[i], (unsigned long long)r->all.code_n[i]);
    }
    fflush(stdout);
    hdr_free(&h);
}

/* ---- JSON ---- */

static json_t *latency_json(const hdr *h) {
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "p50", us(hdr_percentile(h, 50)), "p90",
                     us(hdr_percentile(h, 90)), "p99", us(hdr_percentile(h, 99)), "p999", us(hdr_percentile(h, 99.9)),
                     "max", us(h->max), "min", us(h->total ? h->min : 0), "mean", round(hdr_mean(h) / 100.0) / 10.0,
                     "count", (json_int_t)h->total);
}

/* Completions per interval, at most ~600 points: 100 ms bins, widened for long runs. */
static int series_bin(const sb_result *r, int *nbins) {
    int ticks = (int)ceil(r->seconds * 1e9 / (double)r->all.tick_ns);
    if (ticks < 1) ticks = 1;
    if (ticks > SB_TICKS_MAX) ticks = SB_TICKS_MAX;
    int per = (ticks + 599) / 600;
    *nbins = (ticks + per - 1) / per;
    return per;
}

static json_t *series_json(const sb_result *r) {
    int nbins, per = series_bin(r, &nbins);
    json_t *v = json_array();
    for (int b = 0; b < nbins; b++) {
        uint64_t n = 0;
        for (int i = b * per; i < (b + 1) * per && i < SB_TICKS_MAX; i++) n += r->all.ticks[i];
        json_array_append_new(v, json_real(round((double)n / ((double)per * (double)r->all.tick_ns / 1e9))));
    }
    return json_pack("{s:f, s:o}", "interval_s", (double)per * (double)r->all.tick_ns / 1e9, "per_second", v);
}

int sb_report_json(const sb_opts *o, const sb_result *r, const char *path) {
    hdr h;
    if (merged_latency(r, &h) != 0) return -1;
    const sb_stats *s = &r->all;
    uint64_t err_replies = 0;
    for (int k = 0; k < K__COUNT; k++) err_replies += s->err_reply[k];
    json_t *j = json_object();
    json_object_set_new(j, "tool", json_string("stopbench"));
    json_object_set_new(j, "started_at", json_string(r->started_at));
    json_object_set_new(j, "target", json_string(o->target == TG_REDIS ? "redis" : "stopgate"));
    json_object_set_new(j, "op", json_string(op_name(o->op)));
    json_object_set_new(j, "transport", json_string(o->transport == TR_UDP ? "udp" : "resp"));
    json_object_set_new(j, "mode", json_string(mode_name(o)));
    json_object_set_new(j, "host", json_string(o->host));
    json_object_set_new(j, "port", json_string(o->port));
    if (o->transport == TR_UDP) json_object_set_new(j, "udp_port", json_integer(o->udp_port));
    json_object_set_new(j, "agent", json_string(o->agent));
    json_object_set_new(j, "connections", json_integer(o->connections));
    json_object_set_new(j, "pipeline", json_integer(o->pipeline));
    json_object_set_new(j, "threads", json_integer(o->threads));
    if (o->transport == TR_UDP) json_object_set_new(j, "batch", json_integer(o->batch));
    json_object_set_new(j, "rate", o->rate > 0 ? json_real(o->rate) : json_null());
    json_object_set_new(j, "requests", json_integer((json_int_t)sb_requests(r)));
    json_object_set_new(j, "errors", json_integer((json_int_t)sb_errors(r)));
    json_object_set_new(j, "seconds", json_real(round(r->seconds * 1e6) / 1e6));
    json_object_set_new(j, "throughput", json_real(round(throughput(r) * 10) / 10));
    json_object_set_new(j, "latency_us", latency_json(&h));
    json_object_set_new(j, "ok", json_boolean(r->exit_code == SB_EXIT_OK));
    json_object_set_new(j, "exit_code", json_integer(r->exit_code));
    json_object_set_new(j, "error", r->fatal ? json_string(r->fatal) : json_null());
    json_object_set_new(j, "first_error", s->first_error[0] ? json_string(s->first_error) : json_null());
    json_object_set_new(j, "interrupted", json_boolean(r->interrupted));
    json_object_set_new(j, "sent", json_integer((json_int_t)s->sent));
    json_object_set_new(j, "errors_by",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "reply", (json_int_t)err_replies, "timeout",
                                  (json_int_t)s->timeouts, "closed", (json_int_t)s->closed, "unsent",
                                  (json_int_t)s->unsent, "connect", (json_int_t)r->connect_errors, "auth",
                                  (json_int_t)r->auth_errors));
    json_t *codes = json_object();
    for (int i = 0; i < s->ncodes; i++) json_object_set_new(codes, s->codes[i], json_integer((json_int_t)s->code_n[i]));
    json_object_set_new(j, "error_codes", codes);
    json_t *by = json_object();
    for (int k = 0; k < K__COUNT; k++) {
        if (!s->answered[k] && !s->err_reply[k]) continue;
        json_object_set_new(by, kind_names[k],
                            json_pack("{s:I, s:I, s:f, s:o}", "requests", (json_int_t)(s->answered[k] + s->err_reply[k]),
                                      "errors", (json_int_t)s->err_reply[k], "throughput",
                                      r->seconds > 0 ? round((double)s->answered[k] / r->seconds * 10) / 10 : 0.0,
                                      "latency_us", latency_json(&s->lat[k])));
    }
    json_object_set_new(j, "by_op", by);
    if (s->answered[K_CHECK]) {
        json_t *v = json_object();
        for (int i = 0; i < 3; i++) json_object_set_new(v, verdict_names[i], json_integer((json_int_t)s->verdicts[i]));
        json_object_set_new(j, "verdicts", v);
        uint64_t hits = s->verdicts[1] + s->verdicts[2];
        json_object_set_new(j, "hit_ratio",
                            json_pack("{s:f, s:f, s:I, s:s}", "target", o->list_size ? o->hit_ratio : 0.0, "observed",
                                      round((double)hits / (double)s->answered[K_CHECK] * 1e4) / 1e4, "list_size",
                                      (json_int_t)o->list_size, "list", o->list));
    }
    if (s->answered[K_STOP] && o->target == TG_STOPGATE) {
        json_t *v = json_object();
        for (int i = 0; i < 4; i++) json_object_set_new(v, status_names[i], json_integer((json_int_t)s->statuses[i]));
        json_object_set_new(j, "statuses", v);
        json_object_set_new(j, "case", json_string(o->case_id));
    }
    if (o->rate > 0)
        json_object_set_new(j, "open_loop",
                            json_pack("{s:f, s:f, s:b, s:f, s:I, s:I}", "rate_target", o->rate, "rate_achieved",
                                      round(throughput(r) * 10) / 10, "sustained", r->rate_sustained, "max_send_lag_ms",
                                      round((double)s->max_lag_ns / 1e3) / 1e3, "late_sends",
                                      (json_int_t)s->late_sends, "scheduled", (json_int_t)o->total));
    if (o->transport == TR_UDP)
        json_object_set_new(j, "udp",
                            json_pack("{s:I, s:I, s:I}", "datagrams", (json_int_t)s->datagrams, "retries",
                                      (json_int_t)s->retries, "late_replies", (json_int_t)s->late_replies));
    if (r->burst_done) {
        json_object_set_new(j, "burst", json_integer((json_int_t)o->burst));
        json_object_set_new(j, "burst_acked_ms", json_real(round(r->burst.acked_ms * 1000) / 1000));
        json_object_set_new(j, "burst_at_bank_ms",
                            r->burst.at_bank_ms >= 0 ? json_real(round(r->burst.at_bank_ms * 1000) / 1000) : json_null());
        json_object_set_new(j, "burst_confirmed_ms", r->burst.confirmed_ms >= 0
                                                         ? json_real(round(r->burst.confirmed_ms * 1000) / 1000)
                                                         : json_null());
        json_object_set_new(j, "burst_accepted", json_integer((json_int_t)r->burst.accepted));
        json_object_set_new(j, "burst_case", json_string(o->case_id));
        json_object_set_new(j, "burst_last_order", r->burst.last_order[0] ? json_string(r->burst.last_order) : json_null());
        json_object_set_new(j, "burst_last_state", r->burst.last_state[0] ? json_string(r->burst.last_state) : json_null());
        json_object_set_new(j, "burst_at_bank_means", json_string("every order of the burst in state SENT or later "
                                                                  "(handed to its bank's plugin), from INFO"));
    }
    double cpu = r->cpu_user_s + r->cpu_sys_s;
    json_object_set_new(j, "generator",
                        json_pack("{s:f, s:f, s:f}", "cpu_user_s", round(r->cpu_user_s * 1000) / 1000, "cpu_sys_s",
                                  round(r->cpu_sys_s * 1000) / 1000, "cpu_us_per_request",
                                  sb_requests(r) ? round(cpu * 1e7 / (double)sb_requests(r)) / 10 : 0.0));
    json_object_set_new(j, "throughput_series", series_json(r));
    hdr_free(&h);
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (rc != 0) fprintf(stderr, "stopbench: cannot write %s: %s\n", path, strerror(errno));
    return rc;
}

/* ---- plot ---- */

typedef struct curve_ctx {
    FILE *f;
    uint64_t total;
    double prev_x;
} curve_ctx;

/* One step of the percentile curve: the bucket covers percentiles (prev, cum/total]; x is
 * 1 / (1 - percentile), the usual HDR axis (10 = 90 %, 100 = 99 %, ...). */
static void curve_point(void *ctx, uint64_t value, uint64_t count, uint64_t cum) {
    (void)count;
    curve_ctx *c = ctx;
    double q = (double)cum / (double)c->total;
    double x = q >= 1.0 ? 2.0 * (double)c->total : 1.0 / (1.0 - q);
    if (x > 2.0 * (double)c->total) x = 2.0 * (double)c->total;
    fprintf(c->f, "%.6g %.3f\n%.6g %.3f\n", c->prev_x, (double)value / 1000.0, x, (double)value / 1000.0);
    c->prev_x = x;
}

static void curve_block(FILE *f, const char *name, const hdr *h) {
    fprintf(f, "$%s << EOD\n", name);
    curve_ctx c = {f, h->total, 1.0};
    hdr_visit(h, curve_point, &c);
    fprintf(f, "EOD\n");
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

int sb_report_plot(const sb_opts *o, const sb_result *r, const char *path) {
    bool svg = ends_with(path, ".svg");
    if (!svg && !ends_with(path, ".png")) {
        fprintf(stderr, "stopbench: --plot needs a .svg or .png file name\n");
        return -1;
    }
    hdr all;
    if (merged_latency(r, &all) != 0) return -1;
    if (all.total == 0) {
        fprintf(stderr, "stopbench: no answered requests: no plot\n");
        hdr_free(&all);
        return -1;
    }
    unlink(path);
    /* gnuplot's messages go to our stderr (its stdout is ours too, unused); the script comes through the pipe. */
    FILE *g = popen("gnuplot", "w");
    if (!g) {
        fprintf(stderr, "stopbench: cannot run gnuplot: %s\n", strerror(errno));
        hdr_free(&all);
        return -1;
    }
    int kinds = 0;
    for (int k = 0; k < K__COUNT; k++) kinds += r->all.lat[k].total > 0;
    if (svg) fprintf(g, "set terminal svg size 1000,820 dynamic enhanced font 'sans,11' background rgb 'white'\n");
    else fprintf(g, "set terminal pngcairo size 1000,820 enhanced font 'sans,10' background rgb 'white'\n");
    fprintf(g, "set output '%s'\n", path);
    char title[256];
    if (o->burst)
        snprintf(title, sizeof title, "stopbench: %s burst of %llu over %s - all acked in %.1f ms",
                 o->target == TG_REDIS ? "redis" : "stopgate", (unsigned long long)o->burst,
                 o->transport == TR_UDP ? "udp" : "one connection", r->burst.acked_ms);
    else
        snprintf(title, sizeof title, "stopbench: %s %s over %s, %s loop, %d conn x %d%s - %.0f/s, p99 %.1f us",
                 o->target == TG_REDIS ? "redis" : "stopgate", op_name(o->op), o->transport == TR_UDP ? "udp" : "resp",
                 mode_name(o), o->connections, o->pipeline, o->rate > 0 ? " (open)" : "", throughput(r),
                 us(hdr_percentile(&all, 99)));
    curve_block(g, "lat_all", &all);
    for (int k = 0; k < K__COUNT; k++)
        if (kinds > 1 && r->all.lat[k].total) {
            char name[16];
            snprintf(name, sizeof name, "lat_%s", kind_names[k]);
            curve_block(g, name, &r->all.lat[k]);
        }
    int nbins, per = series_bin(r, &nbins);
    double bin_s = (double)per * (double)r->all.tick_ns / 1e9;
    /* Second panel: answers per second over time; for a burst, answers so far (cumulative, ms). */
    fprintf(g, "$tput << EOD\n");
    uint64_t cum = 0;
    if (o->burst) fprintf(g, "0 0\n");
    for (int b = 0; b < nbins; b++) {
        uint64_t n = 0;
        for (int i = b * per; i < (b + 1) * per && i < SB_TICKS_MAX; i++) n += r->all.ticks[i];
        cum += n;
        if (o->burst) fprintf(g, "%.3f %llu\n", (b + 1) * bin_s * 1e3, (unsigned long long)cum);
        else fprintf(g, "%.3f %.1f\n", (b + 1) * bin_s, (double)n / bin_s);
    }
    fprintf(g, "EOD\n");
    fprintf(g, "set multiplot layout 2,1 title \"%s\" noenhanced\n", title);
    /* Tic labels are gnuplot format strings: a literal % is %% there, hence %%%% here. */
    fprintf(g, "set grid\nset key bottom right noenhanced\nset logscale x 10\n"
               "set xtics (\"0%%%%\" 1, \"90%%%%\" 10, \"99%%%%\" 100, \"99.9%%%%\" 1000, \"99.99%%%%\" 10000, "
               "\"99.999%%%%\" 100000, \"99.9999%%%%\" 1000000)\n"
               "set xlabel 'percentile'\nset ylabel 'latency (us)'\nset yrange [0:*]\n");
    fprintf(g, "set title 'latency by percentile (HDR histogram, %s)'\n",
            o->burst      ? "from the start of the burst"
            : o->rate > 0 ? "from the intended send time"
                          : "from the actual send time");
    fprintf(g, "plot $lat_all with lines lw 2 title 'all'");
    for (int k = 0; k < K__COUNT; k++)
        if (kinds > 1 && r->all.lat[k].total) fprintf(g, ", $lat_%s with lines title '%s'", kind_names[k], kind_names[k]);
    fprintf(g, "\nunset logscale x\nset xtics autofreq\nset yrange [0:*]\n");
    if (o->burst) {
        fprintf(g, "set key top left\nset xlabel 'time since the burst started (ms)'\nset ylabel 'orders answered'\n"
                   "set title 'answers as they arrive (group commits)'\n");
        if (r->burst.at_bank_ms >= 0)
            fprintf(g, "set arrow from %f, graph 0 to %f, graph 1 nohead dt 2\n"
                       "set label 'all at the bank' at %f, graph 0.1 right offset -0.5,0\n",
                    r->burst.at_bank_ms, r->burst.at_bank_ms, r->burst.at_bank_ms);
        fprintf(g, "plot $tput with steps lw 2 title 'answered (cumulative)'");
    } else {
        fprintf(g, "set key bottom center\nset xlabel 'time (s)'\nset ylabel 'answered per second'\n"
                   "set title 'throughput over time (%g s bins)'\n",
                bin_s);
        fprintf(g, "plot $tput with steps lw 2 title 'answered/s'");
        if (o->rate > 0) fprintf(g, ", %f with lines dt 2 title 'offered rate'", o->rate);
    }
    fprintf(g, "\nunset multiplot\nset output\n");
    int st = pclose(g);
    hdr_free(&all);
    struct stat sb;
    if (st != 0 || stat(path, &sb) != 0 || sb.st_size == 0) {
        fprintf(stderr, "stopbench: gnuplot failed (%s); no plot written (Debian: apt-get install gnuplot-nox)\n",
                st == -1                             ? strerror(errno)
                : WIFEXITED(st) && WEXITSTATUS(st) == 127 ? "not installed"
                                                     : "see its messages above");
        return -1;
    }
    return 0;
}
