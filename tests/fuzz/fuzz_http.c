/*
 * fuzz_http: the console's HTTP request parser (gateway/core/http.c) over arbitrary client
 * bytes, consumed request after request the way gateway/daemon/console.c conn_process does,
 * with its helpers (percent-decoding, query parameters, cookies) on what it returns; and
 * the RESP-to-JSON converter (gateway/core/respjson.c) on the same bytes as a reply.
 *
 * Input: byte 0 picks the chunk sizes; the rest is the stream. Two runs: all bytes at once,
 * and the bytes arriving in chunks, each parse given an exact-size copy so ASan sees a read
 * past it. The parser is restartable: both runs must see the same requests and the same
 * verdict, else abort. A request must consume something, lie inside the buffer, and never
 * be larger than HTTP_REQUEST_BYTES_MAX. respjson_length and respjson_convert must agree.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "respjson.h"

typedef struct trace {
    uint64_t h;
    uint32_t n;
    int end;
} trace;

static void mix(trace *t, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) t->h = (t->h ^ b[i]) * 1099511628211ULL;
}

static void inside(const char *in, size_t len, http_str s) {
    if (s.len && (s.p < in || (size_t)(s.p - in) > len || s.len > len - (size_t)(s.p - in))) abort();
}

static void helpers(const http_req *r) {
    char out[HTTP_TARGET_BYTES_MAX];
    int n = http_pct_decode(r->path.p, r->path.len, out, sizeof out);
    if (n > (int)r->path.len) abort();
    http_query_param(r->query, "case", out, 64);
    http_str c = http_cookie(r->cookie, "sg_session");
    if (c.len && (c.p < r->cookie.p || c.p + c.len > r->cookie.p + r->cookie.len)) abort();
}

/* One parse of buffered[0..len): a request (consumed) or the verdict. */
static int step(trace *t, const char *in, size_t len, size_t *used) {
    char *copy = malloc(len ? len : 1);
    memcpy(copy, in, len);
    http_req r;
    const char *why;
    int st = http_parse(copy, len, &r, &why);
    *used = 0;
    if (st == HTTP_OK) {
        if (r.total == 0 || r.total > len || r.total > HTTP_REQUEST_BYTES_MAX) abort();
        inside(copy, len, r.path);
        inside(copy, len, r.query);
        inside(copy, len, r.cookie);
        inside(copy, len, (http_str){r.body, r.body_len});
        helpers(&r);
        t->n++;
        mix(t, &r.method, sizeof r.method);
        mix(t, &r.total, sizeof r.total);
        mix(t, r.path.p, r.path.len);
        *used = r.total;
    } else if (st != HTTP_INCOMPLETE && !why) {
        abort(); /* every refusal says why */
    }
    free(copy);
    return st;
}

static trace run(const uint8_t *data, size_t size, uint8_t chunk_seed) {
    trace t = {1469598103934665603ULL, 0, 0};
    char *buf = malloc(size + 1);
    size_t have = 0, fed = 0;
    uint32_t rnd = chunk_seed * 2654435761u + 1;
    for (;;) {
        if (fed < size) {
            size_t c = chunk_seed ? 1 + (rnd = rnd * 1103515245u + 12345u) % 37 : size;
            if (c > size - fed) c = size - fed;
            memcpy(buf + have, data + fed, c);
            have += c;
            fed += c;
        }
        size_t used;
        int st;
        while ((st = step(&t, buf, have, &used)) == HTTP_OK) {
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        if (st != HTTP_INCOMPLETE) {
            t.end = st;
            break;
        }
        if (fed == size) break;
    }
    free(buf);
    return t;
}

static void reply(const uint8_t *data, size_t size) {
    buf b;
    buf_init(&b, 1 << 20);
    long n = respjson_length((const char *)data, size);
    long m = respjson_convert((const char *)data, size, &b);
    if (size && data[0] == '-') {
        const char *code, *why;
        size_t cl, wl;
        if (n > 0) respjson_error((const char *)data, (size_t)n, &code, &cl, &why, &wl);
    } else if (m != n && m != -2) {
        abort();
    }
    if (m <= 0 && b.len) abort();
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    trace a = run(data + 1, size - 1, 0), b = run(data + 1, size - 1, data[0] | 1);
    if (a.h != b.h || a.n != b.n || a.end != b.end) abort();
    reply(data + 1, size - 1);
    return 0;
}
