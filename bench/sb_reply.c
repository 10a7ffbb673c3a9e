/*
 * sb_reply: stopbench's RESP reply reader, on hiredis's redisReader.
 *
 * redisReader does the framing (partial replies across reads, bulk lengths, nesting); its
 * object callbacks do not build a reply: they fill one sb_reply_info as the values go by
 * (whether the reply is an error, the value after a "verdict", "status", "order_id" or
 * "state" key, a top-level integer or bulk string) and return a marker. So a reply costs no
 * allocation: the reader's buffer and the bulk copy only grow, to the largest seen.
 *
 * hiredis 0.14 (Debian bookworm) reads RESP2 only; stopbench never sends HELLO 3, so the
 * gateway and Redis both answer it in RESP2 (a reply map is a flat array of name, value).
 */
#include <assert.h>
#include <hiredis/read.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb.h"

enum { WANT_NONE, WANT_VERDICT, WANT_STATUS, WANT_ORDER_ID, WANT_STATE };

static void info_reset(sb_reply_info *ri) {
    ri->err = false;
    ri->err_len = 0;
    ri->err_text[0] = 0;
    ri->verdict = ri->status = -1;
    ri->has_ival = false;
    ri->ival = 0;
    ri->order_id[0] = ri->state[0] = 0;
    ri->bulk = NULL;
    ri->bulk_len = 0;
}

static void copy_str(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

static int find_word(const char *const *words, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(words[i]) == len && !memcmp(s, words[i], len)) return i;
    return -1;
}

/* A scalar s[0..n) inside the reply: the value of the key before it, or a key we want. */
static void on_scalar(sb_reader *rd, const char *s, size_t n) {
    static const char *const verdicts[] = {"CLEAR", "LISTED", "FROZEN"};
    static const char *const statuses[] = {"ACCEPTED", "DUPLICATE", "MERGED", "HELD"};
    sb_reply_info *ri = &rd->cur;
    int want = rd->want;
    rd->want = WANT_NONE;
    switch (want) {
    case WANT_VERDICT: ri->verdict = find_word(verdicts, 3, s, n); return;
    case WANT_STATUS: ri->status = find_word(statuses, 4, s, n); return;
    case WANT_ORDER_ID: copy_str(ri->order_id, sizeof ri->order_id, s, n); return;
    case WANT_STATE: copy_str(ri->state, sizeof ri->state, s, n); return;
    default: break;
    }
    if (n == 7 && !memcmp(s, "verdict", 7) && ri->verdict < 0) rd->want = WANT_VERDICT;
    else if (n == 6 && !memcmp(s, "status", 6) && ri->status < 0) rd->want = WANT_STATUS;
    else if (rd->capture && n == 8 && !memcmp(s, "order_id", 8) && !ri->order_id[0]) rd->want = WANT_ORDER_ID;
    else if (rd->capture && n == 5 && !memcmp(s, "state", 5) && !ri->state[0]) rd->want = WANT_STATE;
}

/* A top-level bulk string (INFO): copied, since redisReader moves its buffer. */
static int keep_bulk(sb_reader *rd, const char *s, size_t n) {
    if (n + 1 > rd->bulk_cap) {
        size_t cap = rd->bulk_cap ? rd->bulk_cap : 4096;
        while (cap < n + 1) cap *= 2;
        char *p = realloc(rd->bulk, cap);
        if (!p) return -1;
        rd->bulk = p;
        rd->bulk_cap = cap;
    }
    memcpy(rd->bulk, s, n);
    rd->bulk[n] = 0;
    rd->cur.bulk = rd->bulk;
    rd->cur.bulk_len = n;
    return 0;
}

static void *cb_string(const redisReadTask *t, char *s, size_t n) {
    sb_reader *rd = t->privdata;
    if (!t->parent && t->type == REDIS_REPLY_ERROR) {
        rd->cur.err = true;
        rd->cur.err_len = n < sizeof rd->cur.err_text - 1 ? n : sizeof rd->cur.err_text - 1;
        memcpy(rd->cur.err_text, s, rd->cur.err_len);
        rd->cur.err_text[rd->cur.err_len] = 0;
    } else if (!t->parent && t->type == REDIS_REPLY_STRING && keep_bulk(rd, s, n) != 0) {
        return NULL; /* the reader reports out of memory */
    }
    on_scalar(rd, s, n);
    return rd;
}

static void *cb_array(const redisReadTask *t, int elements) {
    (void)elements;
    return t->privdata; /* an aggregate is not a scalar: the key before it keeps waiting */
}

static void *cb_integer(const redisReadTask *t, long long v) {
    sb_reader *rd = t->privdata;
    char text[24];
    if (!t->parent) {
        rd->cur.ival = v;
        rd->cur.has_ival = true;
    }
    on_scalar(rd, text, (size_t)snprintf(text, sizeof text, "%lld", v));
    return rd;
}

static void *cb_nil(const redisReadTask *t) {
    sb_reader *rd = t->privdata;
    on_scalar(rd, "", 0);
    return rd;
}

/* No object is built, so none is freed. */
static redisReplyObjectFunctions sb_reply_fns = {
    .createString = cb_string,
    .createArray = cb_array,
    .createInteger = cb_integer,
    .createNil = cb_nil,
    .freeObject = NULL,
};

int sb_reader_init(sb_reader *rd) {
    memset(rd, 0, sizeof *rd);
    rd->r = redisReaderCreateWithFunctions(&sb_reply_fns);
    if (!rd->r) return -1;
    rd->r->maxbuf = 0; /* keep the buffer once grown: no free/malloc cycle per drained read */
    rd->r->privdata = rd;
    info_reset(&rd->cur);
    return 0;
}

void sb_reader_free(sb_reader *rd) {
    if (rd->r) redisReaderFree(rd->r);
    free(rd->bulk);
    memset(rd, 0, sizeof *rd);
}

void sb_reader_source(sb_reader *rd, const char *p, size_t n) {
    assert(rd->src_len == 0); /* the previous bytes were all taken */
    rd->src = p;
    rd->src_len = n;
}

int sb_reader_next(sb_reader *rd, const sb_reply_info **out) {
    if (rd->done) { /* the reply handed out last time is over: start the next one clean */
        info_reset(&rd->cur);
        rd->want = WANT_NONE;
        rd->done = false;
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(rd->r, &reply) != REDIS_OK) return -1;
        if (reply) {
            rd->done = true;
            *out = &rd->cur;
            return 1;
        }
        if (rd->src_len == 0) return 0;
        /* The next slice: redisReader compacts its buffer by moving what is left unread, so
         * feeding a large read at once would move it again and again. */
        size_t n = rd->src_len < SB_READER_SLICE ? rd->src_len : SB_READER_SLICE;
        if (redisReaderFeed(rd->r, rd->src, n) != REDIS_OK) return -1;
        rd->src += n;
        rd->src_len -= n;
    }
}

int sb_reader_keep(sb_reader *rd) {
    if (rd->src_len && redisReaderFeed(rd->r, rd->src, rd->src_len) != REDIS_OK) return -1;
    rd->src = NULL;
    rd->src_len = 0;
    return 0;
}

size_t sb_reader_pending(const sb_reader *rd) {
    return rd->r->len - rd->r->pos + rd->src_len;
}

const char *sb_reader_error(const sb_reader *rd) {
    return rd->r->errstr;
}
