/*
 * http: the console's HTTP/1.1 request parser (contract in http.h).
 */
#include "http.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

bool http_str_is(http_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

static bool is_tchar(unsigned char ch) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A header value may hold visible characters, spaces, tabs and obs-text; no other control. */
static bool value_ok(const char *p, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
    }
    return true;
}

/* The end of the head ("\r\n\r\n"), or NULL when not in in[0..len). */
static const char *head_end(const char *in, size_t len) {
    for (size_t i = 3; i < len; i++)
        if (in[i] == '\n' && in[i - 1] == '\r' && in[i - 2] == '\n' && in[i - 3] == '\r') return in + i + 1;
    return NULL;
}

static int parse_request_line(const char *p, const char *eol, http_req *r, const char **why) {
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || sp1 == p) return *why = "malformed request line", HTTP_BAD;
    size_t mlen = (size_t)(sp1 - p);
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)p[i])) return *why = "malformed method", HTTP_BAD;
    r->method = mlen == 3 && !memcmp(p, "GET", 3)    ? HTTP_GET
                : mlen == 4 && !memcmp(p, "HEAD", 4) ? HTTP_HEAD
                : mlen == 4 && !memcmp(p, "POST", 4) ? HTTP_POST
                                                     : HTTP_OTHER;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
    if (!sp2 || sp2 == t) return *why = "malformed request line", HTTP_BAD;
    if ((size_t)(sp2 - t) > HTTP_TARGET_BYTES_MAX) return *why = "request target too long", HTTP_TOOBIG;
    for (const char *q = t; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) return *why = "bad byte in request target", HTTP_BAD;
    if (*t != '/') return *why = "request target must be an absolute path", HTTP_BAD;
    r->target = (http_str){t, (uint32_t)(sp2 - t)};
    const char *qm = memchr(t, '?', (size_t)(sp2 - t));
    r->path = (http_str){t, (uint32_t)((qm ? qm : sp2) - t)};
    r->query = qm ? (http_str){qm + 1, (uint32_t)(sp2 - qm - 1)} : (http_str){t, 0};
    const char *v = sp2 + 1;
    if (eol - v != 8 || memcmp(v, "HTTP/1.", 7) != 0) {
        if (eol - v == 8 && !memcmp(v, "HTTP/", 5)) return *why = "only HTTP/1.0 and HTTP/1.1 are served", HTTP_UNSUPPORTED;
        return *why = "malformed HTTP version", HTTP_BAD;
    }
    if (v[7] != '0' && v[7] != '1') return *why = "only HTTP/1.0 and HTTP/1.1 are served", HTTP_UNSUPPORTED;
    r->minor = v[7] - '0';
    return HTTP_OK;
}

/* Content-Length: digits only, at most HTTP_BODY_BYTES_MAX. */
static int parse_length(http_str v, uint32_t *out, bool *seen, const char **why) {
    if (*seen) return *why = "Content-Length given twice", HTTP_BAD;
    *seen = true;
    if (v.len == 0 || v.len > 10) return *why = v.len ? "Content-Length too large" : "empty Content-Length", v.len ? HTTP_TOOBIG : HTTP_BAD;
    uint64_t n = 0;
    for (uint32_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return *why = "Content-Length must be digits", HTTP_BAD;
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (n > HTTP_BODY_BYTES_MAX) return *why = "request body too large", HTTP_TOOBIG;
    *out = (uint32_t)n;
    return HTTP_OK;
}

/* Keep the headers the console reads; judge the form of every one. */
static int parse_header(const char *p, const char *eol, http_req *r, uint32_t *clen, bool *clen_seen, const char **why) {
    if (*p == ' ' || *p == '\t') return *why = "obsolete header line folding", HTTP_BAD;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || colon == p) return *why = "malformed header line", HTTP_BAD;
    for (const char *q = p; q < colon; q++)
        if (!is_tchar((unsigned char)*q)) return *why = "malformed header name", HTTP_BAD;
    const char *v = colon + 1, *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    if (!value_ok(v, (size_t)(ve - v))) return *why = "control character in a header value", HTTP_BAD;
    http_str name = {p, (uint32_t)(colon - p)}, val = {v, (uint32_t)(ve - v)};
    if (http_str_is(name, "content-length")) return parse_length(val, clen, clen_seen, why);
    if (http_str_is(name, "transfer-encoding")) return *why = "Transfer-Encoding is not accepted: send Content-Length", HTTP_UNSUPPORTED;
    if (http_str_is(name, "cookie")) r->cookie = val;
    else if (http_str_is(name, "x-csrf-token")) r->csrf = val;
    else if (http_str_is(name, "content-type")) r->content_type = val;
    else if (http_str_is(name, "connection")) r->connection = val;
    else if (http_str_is(name, "host")) r->host = val;
    else if (http_str_is(name, "origin")) r->origin = val;
    return HTTP_OK;
}

static bool has_token(http_str v, const char *tok) {
    size_t n = strlen(tok);
    for (uint32_t i = 0; i + n <= v.len; i++)
        if (!strncasecmp(v.p + i, tok, n) && (i == 0 || v.p[i - 1] == ',' || v.p[i - 1] == ' ') &&
            (i + n == v.len || v.p[i + n] == ',' || v.p[i + n] == ' '))
            return true;
    return false;
}

int http_parse(const char *in, size_t len, http_req *r, const char **why) {
    memset(r, 0, sizeof *r);
    *why = NULL;
    const char *end = head_end(in, len < HTTP_HEAD_BYTES_MAX ? len : HTTP_HEAD_BYTES_MAX);
    if (!end) {
        r->head_toobig = true;
        if (len >= HTTP_HEAD_BYTES_MAX) return *why = "request head too large", HTTP_TOOBIG;
        /* A bad request line is refused before the rest of the head arrives. */
        const char *eol = memchr(in, '\n', len);
        if (eol && (eol == in || eol[-1] != '\r')) return *why = "lines must end in CRLF", HTTP_BAD;
        return HTTP_INCOMPLETE;
    }
    const char *p = in;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    assert(eol);
    if (eol == p || eol[-1] != '\r') return *why = "lines must end in CRLF", HTTP_BAD;
    int rc = parse_request_line(p, eol - 1, r, why);
    if (rc != HTTP_OK) return r->head_toobig = true, rc;
    uint32_t clen = 0, nheaders = 0;
    bool clen_seen = false;
    for (p = eol + 1; p < end - 2; p = eol + 1) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == p || eol[-1] != '\r') return *why = "lines must end in CRLF", HTTP_BAD;
        if (++nheaders > HTTP_HEADERS_MAX) return r->head_toobig = true, *why = "too many header lines", HTTP_TOOBIG;
        rc = parse_header(p, eol - 1, r, &clen, &clen_seen, why);
        if (rc != HTTP_OK) return r->head_toobig = rc != HTTP_TOOBIG || !clen_seen, rc;
    }
    r->keep_alive = r->minor == 1 ? !has_token(r->connection, "close") : has_token(r->connection, "keep-alive");
    size_t head = (size_t)(end - in);
    if (len - head < clen) return HTTP_INCOMPLETE;
    r->body = end;
    r->body_len = clen;
    r->total = head + clen;
    return HTTP_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int decode(const char *s, size_t len, char *out, size_t cap, bool plus_space) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= len) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_space) {
            ch = ' ';
        }
        if (ch < 0x20 || ch == 0x7f) return -1;
        if (n == cap) return -1;
        out[n++] = (char)ch;
    }
    return (int)n;
}

int http_pct_decode(const char *s, size_t len, char *out, size_t cap) { return decode(s, len, out, cap, false); }

int http_query_param(http_str q, const char *name, char *out, size_t cap) {
    size_t nlen = strlen(name);
    for (uint32_t i = 0; i < q.len;) {
        const char *amp = memchr(q.p + i, '&', q.len - i);
        uint32_t e = amp ? (uint32_t)(amp - q.p) : q.len;
        if (e - i > nlen && q.p[i + nlen] == '=' && !memcmp(q.p + i, name, nlen))
            return decode(q.p + i + nlen + 1, e - i - nlen - 1, out, cap, true);
        i = e + 1;
    }
    return -1;
}

http_str http_cookie(http_str c, const char *name) {
    size_t nlen = strlen(name);
    for (uint32_t i = 0; i < c.len;) {
        while (i < c.len && (c.p[i] == ' ' || c.p[i] == ';')) i++;
        const char *semi = memchr(c.p + i, ';', c.len - i);
        uint32_t e = semi ? (uint32_t)(semi - c.p) : c.len;
        if (e - i > nlen && c.p[i + nlen] == '=' && !memcmp(c.p + i, name, nlen))
            return (http_str){c.p + i + nlen + 1, e - i - (uint32_t)nlen - 1};
        i = e + 1;
    }
    return (http_str){0};
}
