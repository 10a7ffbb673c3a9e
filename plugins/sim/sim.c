/*
 * sim: the simulated bank (SPEC §2b). Answers every instruction after latency_us, with the
 * outcome chosen by the last four characters of the account, like a card network's test
 * card numbers, so every path of the gateway can be driven from outside. Timer-driven: it
 * has no fd; poll() returns when the next answer is due, and the gateway's loop wakes then.
 * The smallest complete example of the plugin ABI (docs/plugins.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stopgate/plugin.h>

#include "sim_rules.h"

#define SIM_QUEUE_MAX 65536 /* instructions waiting for their answer */

typedef struct pending {
    int64_t due_us;
    uint64_t instruction_id;
    sg_result_status status;
    int64_t frozen;
    const char *reason;
    uint32_t onward_count;
    sg_onward onward[2];
} pending;

typedef struct sim {
    sg_host host;
    int64_t latency_us;
    int64_t balance;
    int64_t queue_max; /* answers owed at once; past it submit says -EAGAIN (a bank that takes no more) */
    pending *q; /* FIFO ring: latency is constant, so due times are in order */
    uint32_t head, len;
    FILE *log; /* `log = path`: one line per instruction received (tests: ids across failover) */
} sim;

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int sim_init(const sg_host *host, const sg_plugin_kv *kv, size_t n, void **state, char err[SG_PLUGIN_ERR_MAX],
                    int *bad_line) {
    sim *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, SG_PLUGIN_ERR_MAX, "out of memory");
        return -1;
    }
    s->host = *host;
    s->latency_us = 200;
    s->balance = 1000000;
    s->queue_max = SIM_QUEUE_MAX;
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (!strcmp(kv[i].key, "latency_us")) rc = parse_i64(kv[i].value, 0, 60000000, &s->latency_us);
        else if (!strcmp(kv[i].key, "balance")) rc = parse_i64(kv[i].value, 0, 100000000000000000LL, &s->balance);
        else if (!strcmp(kv[i].key, "queue_max")) rc = parse_i64(kv[i].value, 1, SIM_QUEUE_MAX, &s->queue_max);
        else if (!strcmp(kv[i].key, "log")) {
            if (s->log) fclose(s->log);
            s->log = fopen(kv[i].value, "a");
            if (s->log) setvbuf(s->log, NULL, _IOLBF, 0);
            rc = s->log ? 0 : -1;
        } else {
            snprintf(err, SG_PLUGIN_ERR_MAX, "unknown key '%s' (sim knows latency_us, balance, queue_max, log)", kv[i].key);
            *bad_line = kv[i].line;
            if (s->log) fclose(s->log);
            free(s);
            return -1;
        }
        if (rc) {
            snprintf(err, SG_PLUGIN_ERR_MAX, "bad value for %s: '%s'", kv[i].key, kv[i].value);
            *bad_line = kv[i].line;
            if (s->log) fclose(s->log);
            free(s);
            return -1;
        }
    }
    s->q = calloc(SIM_QUEUE_MAX, sizeof *s->q);
    if (!s->q) {
        if (s->log) fclose(s->log);
        free(s);
        snprintf(err, SG_PLUGIN_ERR_MAX, "out of memory");
        return -1;
    }
    /* Every page of the queue written once now, not at the first instruction that lands on it:
     * the queue is ~15 MiB of fresh zero pages, and a first burst of 6,077 instructions would
     * fault in ~330 of them, each also a shadow-page-table miss on a PVM host (~4 % of that
     * burst's CPU, docs/PERFORMANCE.md issue 13). */
    for (size_t off = 0; off < (size_t)SIM_QUEUE_MAX * sizeof *s->q; off += 4096) ((volatile char *)s->q)[off] = 0;
    *state = s;
    return 0;
}

/* Decide the answer for one instruction. Returns 0 when the bank never answers. */
static int decide(const sim *s, const sg_instruction *in, pending *p) {
    sim_answer a;
    if (!sim_decide(in->bank, in->account, in->amount_minor, s->balance, &a)) return 0;
    p->instruction_id = in->instruction_id;
    p->status = a.status;
    p->frozen = a.frozen;
    p->reason = a.reason;
    p->onward_count = a.onward_count;
    memcpy(p->onward, a.onward, a.onward_count * sizeof a.onward[0]); /* mostly none */
    return 1;
}

static int sim_submit(void *state, const sg_instruction *in) {
    sim *s = state;
    if (s->log)
        fprintf(s->log, "%llu %s %s %u\n", (unsigned long long)in->instruction_id, in->order_id,
                in->kind == SG_INSTR_RELEASE ? "release" : "stop", in->attempt);
    if (in->kind == SG_INSTR_RELEASE) return 0; /* the simulated hold is lifted silently */
    if (s->len >= s->queue_max) return -EAGAIN;
    pending *p = &s->q[(s->head + s->len) % SIM_QUEUE_MAX];
    if (!decide(s, in, p)) return 0;
    p->due_us = s->host.now_us(s->host.ctx) + s->latency_us;
    s->len++;
    return 0;
}

static int sim_event_fd(void *state) {
    (void)state;
    return -1;
}

static int64_t sim_poll(void *state, int64_t now_us) {
    sim *s = state;
    uint32_t delivered = 0;
    while (s->len && delivered < SG_POLL_RESULTS_MAX) {
        pending *p = &s->q[s->head];
        if (p->due_us > now_us) return p->due_us;
        sg_result r = {.instruction_id = p->instruction_id, .status = p->status, .frozen_minor = p->frozen,
                       .reason = p->reason, .onward_count = p->onward_count, .onward = p->onward};
        s->head = (s->head + 1) % SIM_QUEUE_MAX;
        s->len--;
        delivered++;
        (void)s->host.result(s->host.ctx, &r);
    }
    return s->len ? now_us : -1;
}

static void sim_shutdown(void *state) {
    sim *s = state;
    if (!s) return;
    if (s->log) fclose(s->log);
    free(s->q);
    free(s);
}

static const sg_plugin_ops sim_ops = {
    .abi_version = SG_PLUGIN_ABI_VERSION,
    .name = "sim",
    .init = sim_init,
    .submit = sim_submit,
    .event_fd = sim_event_fd,
    .poll = sim_poll,
    .shutdown = sim_shutdown,
};

const sg_plugin_ops *sg_plugin_entry(void);
const sg_plugin_ops *sg_plugin_entry(void) { return &sim_ops; }
