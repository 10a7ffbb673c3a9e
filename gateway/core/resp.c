#include "resp.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Reads a CRLF-terminated decimal after a type byte at in[0]. Returns bytes used including
 * CRLF, 0 when incomplete, -1 when malformed. */
static long read_len_line(const char *in, size_t len, int64_t *out) {
    size_t max = len < 24 ? len : 24;
    for (size_t i = 1; i + 1 < max; i++) {
        if (in[i] == '\r') {
            if (in[i + 1] != '\n') return -1;
            if (i == 1) return -1;
            int64_t v = 0;
            size_t j = 1;
            bool neg = false;
            if (in[1] == '-') {
                neg = true;
                j = 2;
                if (i == 2) return -1;
            }
            for (; j < i; j++) {
                if (in[j] < '0' || in[j] > '9') return -1;
                if (v > (INT64_MAX - 9) / 10) return -1;
                v = v * 10 + (in[j] - '0');
            }
            *out = neg ? -v : v;
            return (long)(i + 2);
        }
    }
    return len >= 24 ? -1 : 0;
}

static resp_status parse_inline(char *in, size_t len, resp_cmd *cmd, size_t *consumed,
                                resp_skip *skip) {
    char *nl = memchr(in, '\n', len < RESP_INLINE_BYTES_MAX ? len : RESP_INLINE_BYTES_MAX);
    if (!nl) {
        if (len >= RESP_INLINE_BYTES_MAX) {
            cmd->error = "inline command too long";
            return RESP_PROTO;
        }
        return RESP_INCOMPLETE;
    }
    size_t line_len = (size_t)(nl - in);
    size_t end = line_len;
    if (end > 0 && in[end - 1] == '\r') end--;
    cmd->argc = 0;
    size_t i = 0;
    while (i < end) {
        while (i < end && (in[i] == ' ' || in[i] == '\t')) i++;
        if (i >= end) break;
        size_t s = i;
        while (i < end && in[i] != ' ' && in[i] != '\t') i++;
        if (cmd->argc == RESP_ARGS_MAX) {
            cmd->error = "too many arguments";
            *consumed = line_len + 1;
            /* The whole line goes with *consumed: nothing is left to skip, and the caller
             * must not resume a skip left over from an earlier command. */
            skip->bytes_left = 0;
            skip->args_left = 0;
            return RESP_TOOBIG;
        }
        cmd->argv[cmd->argc].p = in + s;
        cmd->argv[cmd->argc].len = (uint32_t)(i - s);
        cmd->argc++;
    }
    *consumed = line_len + 1;
    assert(*consumed <= len && cmd->argc <= RESP_ARGS_MAX);
    return RESP_OK;
}

resp_status resp_parse(char *in, size_t len, resp_cmd *cmd, size_t *consumed, resp_skip *skip) {
    cmd->argc = 0;
    cmd->error = NULL;
    if (len == 0) return RESP_INCOMPLETE;
    if (in[0] != '*') return parse_inline(in, len, cmd, consumed, skip);

    int64_t n;
    long used = read_len_line(in, len, &n);
    if (used == 0) return RESP_INCOMPLETE;
    if (used < 0 || n < -1) {
        cmd->error = "invalid multibulk length";
        return RESP_PROTO;
    }
    size_t pos = (size_t)used;
    if (n <= 0) { /* "*0" / "*-1": an empty command, ignored like Redis does */
        *consumed = pos;
        return RESP_OK;
    }
    if (n > RESP_ARGS_MAX) {
        if (n > 1024 * 1024) {
            cmd->error = "invalid multibulk length";
            return RESP_PROTO;
        }
        cmd->error = "too many arguments";
        *consumed = pos;
        skip->bytes_left = 0;
        skip->args_left = (uint32_t)n;
        return RESP_TOOBIG;
    }
    for (int64_t a = 0; a < n; a++) {
        if (pos >= len) return RESP_INCOMPLETE;
        if (in[pos] != '$') {
            cmd->error = "expected '$' bulk string";
            return RESP_PROTO;
        }
        int64_t blen;
        long u = read_len_line(in + pos, len - pos, &blen);
        if (u == 0) return RESP_INCOMPLETE;
        if (u < 0 || blen < 0) {
            cmd->error = "invalid bulk length";
            return RESP_PROTO;
        }
        pos += (size_t)u;
        if (blen > RESP_BULK_BYTES_MAX) {
            cmd->error = "bulk argument too large";
            *consumed = pos;
            skip->bytes_left = (uint64_t)blen + 2;
            skip->args_left = (uint32_t)(n - a - 1);
            return RESP_TOOBIG;
        }
        if (len - pos < (size_t)blen + 2) return RESP_INCOMPLETE;
        if (in[pos + blen] != '\r' || in[pos + blen + 1] != '\n') {
            cmd->error = "bulk string not terminated by CRLF";
            return RESP_PROTO;
        }
        cmd->argv[a].p = in + pos;
        cmd->argv[a].len = (uint32_t)blen;
        pos += (size_t)blen + 2;
    }
    cmd->argc = (uint32_t)n;
    *consumed = pos;
    assert(cmd->argc <= RESP_ARGS_MAX && pos <= len);
    return RESP_OK;
}

/* "$<n>\r\n" with n in 1..RESP_PEEK_ARG_MAX, canonical digits; bytes used or 0. */
static size_t peek_len(const char *in, size_t len, uint32_t *n) {
    if (len < 4 || in[0] != '$' || in[1] < '1' || in[1] > '9') return 0;
    uint32_t v = 0;
    size_t i = 1;
    for (; i < len && i < 4 && in[i] >= '0' && in[i] <= '9'; i++) v = v * 10 + (uint32_t)(in[i] - '0');
    if (len - i < 2 || in[i] != '\r' || in[i + 1] != '\n') return 0;
    *n = v;
    return i + 2;
}

bool resp_peek(const char *in, size_t len, resp_arg *argv, uint32_t max, uint32_t *argc, size_t *consumed) {
    _Static_assert(RESP_PEEK_ARG_MAX <= RESP_BULK_BYTES_MAX && RESP_PEEK_ARGS_MAX <= RESP_ARGS_MAX,
                   "peek stays inside parse's limits");
    assert(max >= 1 && max <= RESP_PEEK_ARGS_MAX);
    /* "*<n>\r\n", n in 1..99 without a leading zero: the same count parse reads. */
    if (len < 4 || in[0] != '*' || in[1] < '1' || in[1] > '9') return false;
    uint32_t n = (uint32_t)(in[1] - '0');
    size_t pos = 2;
    if (in[2] >= '0' && in[2] <= '9') n = n * 10 + (uint32_t)(in[pos++] - '0');
    if (n > max || len - pos < 2 || in[pos] != '\r' || in[pos + 1] != '\n') return false;
    pos += 2;
    for (uint32_t a = 0; a < n; a++) {
        uint32_t l;
        size_t u = peek_len(in + pos, len - pos, &l);
        if (u == 0) return false;
        pos += u;
        if (len - pos < (size_t)l + 2 || in[pos + l] != '\r' || in[pos + l + 1] != '\n') return false;
        argv[a].p = in + pos;
        argv[a].len = l;
        pos += l + 2;
    }
    *argc = n;
    *consumed = pos;
    return true;
}

bool resp_peek3(const char *in, size_t len, resp_arg argv[3], size_t *consumed) {
    uint32_t argc;
    return resp_peek(in, len, argv, 3, &argc, consumed) && argc == 3;
}

long resp_skip_feed(resp_skip *skip, const char *in, size_t len, int *done) {
    size_t pos = 0;
    *done = 0;
    for (;;) {
        if (skip->bytes_left > 0) {
            size_t take = len - pos < skip->bytes_left ? len - pos : (size_t)skip->bytes_left;
            pos += take;
            skip->bytes_left -= take;
            if (skip->bytes_left > 0) return (long)pos;
        }
        if (skip->args_left == 0) {
            *done = 1;
            return (long)pos;
        }
        assert(pos <= len);
        if (pos >= len) return (long)pos;
        if (in[pos] != '$') return -1;
        int64_t blen;
        long u = read_len_line(in + pos, len - pos, &blen);
        if (u == 0) return (long)pos;
        if (u < 0 || blen < 0) return -1;
        pos += (size_t)u;
        skip->bytes_left = (uint64_t)blen + 2;
        skip->args_left--;
    }
}

int resp_w_simple(buf *b, const char *s) {
    assert(!strpbrk(s, "\r\n")); /* a simple string is one line */
    int rc = buf_append(b, "+", 1);
    if (!rc) rc = buf_append(b, s, strlen(s));
    if (!rc) rc = buf_append(b, "\r\n", 2);
    return rc;
}

int resp_w_error(buf *b, const char *code, const char *fmt, ...) {
    assert(code[0] && !strpbrk(code, "\r\n")); /* "ERR BUSY", "NOAUTH": a code on one line */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* An error line must stay one line whatever the reason quotes back from the client. */
    for (char *p = msg; *p; p++)
        if (*p == '\r' || *p == '\n') *p = ' ';
    return buf_printf(b, "-%s %s\r\n", code, msg);
}

/* "<type><number>\r\n" without printf: every reply is mostly these headers, and formatting
 * them through vsnprintf was a sixth of a pipelined CHECK's cost. */
static int w_num(buf *b, char type, int64_t v) {
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    *--p = '\n';
    *--p = '\r';
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    *--p = type;
    assert(p >= tmp);
    return buf_append(b, p, (size_t)(end - p));
}

int resp_w_int(buf *b, int64_t v) { return w_num(b, ':', v); }

int resp_w_bulk(buf *b, const char *s, size_t len) {
    assert(s || len == 0);
    int rc = buf_reserve(b, len + 24 + 2);
    if (!rc) rc = w_num(b, '$', (int64_t)len);
    if (!rc) rc = buf_append(b, s, len);
    if (!rc) rc = buf_append(b, "\r\n", 2);
    return rc;
}

int resp_w_str(buf *b, const char *s) { return resp_w_bulk(b, s, strlen(s)); }

int resp_w_null(buf *b, int proto) {
    assert(proto == 2 || proto == 3);
    return proto == 3 ? buf_append(b, "_\r\n", 3) : buf_append(b, "$-1\r\n", 5); }

int resp_w_array(buf *b, size_t n) { return w_num(b, '*', (int64_t)n); }

int resp_w_map(buf *b, int proto, size_t pairs) {
    assert(proto == 2 || proto == 3);
    return proto == 3 ? w_num(b, '%', (int64_t)pairs) : w_num(b, '*', (int64_t)(pairs * 2));
}


/* Skips one element at p[0..len) written by the writers above. Returns its bytes, -1 when
 * malformed or cut short. */
static long skip_elem(const char *p, size_t len, int depth) {
    if (len < 3 || depth > RESP_WALK_DEPTH_MAX) return -1;
    const char *nl = memchr(p, '\n', len);
    if (!nl || nl == p || nl[-1] != '\r') return -1;
    size_t line = (size_t)(nl - p) + 1;
    if (p[0] == '+' || p[0] == '-' || p[0] == ':' || p[0] == '_') return (long)line;
    int64_t n;
    if (read_len_line(p, line, &n) != (long)line) return -1;
    if (p[0] == '$') {
        if (n < 0) return (long)line;
        if (len - line < (size_t)n + 2 || p[line + n] != '\r' || p[line + n + 1] != '\n') return -1;
        return (long)(line + (size_t)n + 2);
    }
    if (p[0] != '*' && p[0] != '%') return -1;
    if (n < 0) return (long)line;
    int64_t elems = p[0] == '%' ? 2 * n : n;
    size_t pos = line;
    for (int64_t i = 0; i < elems; i++) {
        long u = skip_elem(p + pos, len - pos, depth + 1);
        if (u < 0) return -1;
        pos += (size_t)u;
    }
    return (long)pos;
}

long resp_count_elems(const char *p, size_t len) {
    long n = 0;
    for (size_t pos = 0; pos < len; n++) {
        long u = skip_elem(p + pos, len - pos, 0);
        if (u < 0) return -1;
        pos += (size_t)u;
    }
    return n;
}

void resp_map_begin(resp_map *m, buf *b, int proto) {
    assert(proto == 2 || proto == 3);
    m->b = b;
    m->body_off = b->len;
    m->proto = proto;
}

void resp_array_begin(resp_map *m, buf *b) {
    m->b = b;
    m->body_off = b->len;
    m->proto = 0;
}

int resp_map_end(resp_map *m, int rc) {
    buf *b = m->b;
    assert(b->len >= m->body_off); /* nothing consumed since begin */
    if (rc) { /* a write failed: what is there is not whole pairs */
        b->len = m->body_off;
        return rc;
    }
    long elems = resp_count_elems((const char *)b->data + m->body_off, b->len - m->body_off);
    /* Pair assertion: what the writers put down parses back as whole elements (as whole
     * key/value pairs for a map). */
    bool array = m->proto == 0;
    assert(elems >= 0 && (array || elems % 2 == 0));
    if (elems < 0 || (!array && elems % 2 != 0)) {
        b->len = m->body_off;
        return -EPROTO;
    }
    char hdr[24];
    buf tmp = {.data = (uint8_t *)hdr, .cap = sizeof hdr, .cap_max = sizeof hdr};
    rc = array ? resp_w_array(&tmp, (size_t)elems) : resp_w_map(&tmp, m->proto, (size_t)elems / 2);
    assert(rc == 0); /* a header always fits 24 bytes */
    if (!rc) rc = buf_reserve(b, tmp.len);
    if (rc) {
        b->len = m->body_off;
        return rc;
    }
    uint8_t *body = b->data + m->body_off;
    memmove(body + tmp.len, body, b->len - m->body_off);
    memcpy(body, hdr, tmp.len);
    b->len += tmp.len;
    return 0;
}

int resp_w_kv_str(buf *b, const char *key, const char *val) {
    int rc = resp_w_str(b, key);
    return rc ? rc : resp_w_str(b, val);
}

int resp_w_kv_int(buf *b, const char *key, int64_t v) {
    int rc = resp_w_str(b, key);
    return rc ? rc : resp_w_int(b, v);
}

int resp_arg_is(const resp_arg *a, const char *lit) {
    size_t n = strlen(lit);
    return a->len == n && strncasecmp(a->p, lit, n) == 0;
}
