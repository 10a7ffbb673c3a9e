/*
 * fuzz_resp: the RESP parser (gateway/core/resp.c) over arbitrary client bytes, consuming
 * command after command the way gateway/daemon/server.c process_input does, including
 * RESP_TOOBIG followed by resp_skip_feed.
 *
 * Two runs per input: all bytes at once, and the same bytes arriving in small chunks (sizes
 * drawn from the first byte), each parse given an exact-size copy of what is buffered so
 * ASan sees any read past it. The parser is restartable, so both runs must see the same
 * sequence of commands and errors: a difference aborts. Every parse must consume something
 * or ask for more (else process_input would spin), and every argument must lie inside the
 * buffer (its bytes are read). resp_peek3 and resp_peek on the same bytes must, when they accept, give
 * exactly what resp_parse gives.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

typedef struct trace {
    uint64_t h;      /* FNV-1a over the events */
    uint32_t events; /* commands, TOOBIGs, errors */
    int end;         /* 0 input exhausted, 3 RESP_PROTO, 4 skip error */
} trace;

static void mix(trace *t, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) t->h = (t->h ^ b[i]) * 1099511628211ULL;
}

static void event(trace *t, int kind, const resp_cmd *cmd, const char *in, size_t len) {
    t->events++;
    mix(t, &kind, sizeof kind);
    if (kind == RESP_OK) {
        mix(t, &cmd->argc, sizeof cmd->argc);
        for (uint32_t i = 0; i < cmd->argc; i++) {
            const resp_arg *a = &cmd->argv[i];
            if (a->p < in || a->len > len || (size_t)(a->p - in) > len - a->len) abort();
            mix(t, &a->len, sizeof a->len);
            mix(t, a->p, a->len);
        }
    } else if (cmd->error) {
        mix(t, cmd->error, strlen(cmd->error));
    } else if (kind != 4) {
        abort(); /* RESP_TOOBIG and RESP_PROTO always say why */
    }
}

static resp_cmd cmd;

typedef struct conn {
    bool skipping;
    resp_skip skip;
    bool closed;
} conn;

/* process_input over in[0..len): returns bytes consumed. */
static size_t process(conn *c, char *in, size_t len, trace *t) {
    size_t off = 0;
    while (!c->closed) {
        if (c->skipping) {
            int done;
            long used = resp_skip_feed(&c->skip, in + off, len - off, &done);
            if (used < 0) {
                event(t, 4, &cmd, in, len);
                t->end = 4;
                c->closed = true;
                break;
            }
            if ((size_t)used > len - off) abort();
            off += (size_t)used;
            if (!done) break;
            c->skipping = false;
            continue;
        }
        /* resp_peek3 (check_ahead's look ahead) on the same bytes: when it says yes, the
         * parse must agree on the three arguments and the length. */
        resp_arg peek[3];
        size_t peek_used = 0;
        bool peeked = resp_peek3(in + off, len - off, peek, &peek_used);
        if (peeked && (peek_used > len - off)) abort();
        /* resp_peek (the look ahead over pipelined STOPs): the same promise for 1..32. */
        resp_arg peekn[RESP_PEEK_ARGS_MAX];
        uint32_t peekn_argc = 0;
        size_t peekn_used = 0;
        bool peekedn = resp_peek(in + off, len - off, peekn, RESP_PEEK_ARGS_MAX, &peekn_argc, &peekn_used);
        if (peekedn && (peekn_used > len - off || peekn_argc < 1 || peekn_argc > RESP_PEEK_ARGS_MAX)) abort();
        size_t used = 0;
        resp_status st = resp_parse(in + off, len - off, &cmd, &used, &c->skip);
        if (peeked) {
            if (st != RESP_OK || cmd.argc != 3 || used != peek_used) abort();
            for (int i = 0; i < 3; i++)
                if (peek[i].p != cmd.argv[i].p || peek[i].len != cmd.argv[i].len) abort();
        }
        if (peekedn) {
            if (st != RESP_OK || cmd.argc != peekn_argc || used != peekn_used) abort();
            for (uint32_t i = 0; i < peekn_argc; i++)
                if (peekn[i].p != cmd.argv[i].p || peekn[i].len != cmd.argv[i].len) abort();
        }
        if (st == RESP_INCOMPLETE) break;
        if (st == RESP_PROTO) {
            event(t, RESP_PROTO, &cmd, in + off, len - off);
            t->end = 3;
            c->closed = true;
            break;
        }
        if (used == 0 || used > len - off) abort(); /* no progress: the server would spin */
        if (st == RESP_TOOBIG) {
            event(t, RESP_TOOBIG, &cmd, in + off, len - off);
            off += used;
            c->skipping = c->skip.bytes_left > 0 || c->skip.args_left > 0;
            continue;
        }
        if (st != RESP_OK) abort();
        event(t, RESP_OK, &cmd, in + off, used);
        off += used;
    }
    return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* All at once. */
    trace whole = {.h = 14695981039346656037ULL};
    conn c = {0};
    char *in = malloc(size ? size : 1);
    if (!in) return 0;
    memcpy(in, data, size);
    process(&c, in, size, &whole);
    free(in);

    /* In chunks, as recv would hand them over. */
    trace chunked = {.h = 14695981039346656037ULL};
    conn c2 = {0};
    unsigned seed = size ? data[0] : 0;
    size_t fed = 0, start = 0; /* data[start..fed) is buffered, unconsumed */
    while (fed < size && !c2.closed) {
        seed = seed * 1103515245u + 12345u;
        size_t chunk = 1 + ((seed >> 16) % ((seed & 0x100) ? 7 : 300));
        fed += chunk < size - fed ? chunk : size - fed;
        size_t avail = fed - start;
        char *buf = malloc(avail ? avail : 1);
        if (!buf) return 0;
        memcpy(buf, data + start, avail);
        start += process(&c2, buf, avail, &chunked);
        free(buf);
    }
    if (whole.events != chunked.events || whole.h != chunked.h || whole.end != chunked.end) abort();
    return 0;
}
