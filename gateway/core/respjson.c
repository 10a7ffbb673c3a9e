/*
 * respjson: RESP replies as JSON (contract in respjson.h).
 */
#include "respjson.h"

#include <stdbool.h>
#include <string.h>

/* The line starting at p (after the type byte): its length before CRLF, or -1/-0. */
static long line_len(const char *p, size_t len) {
    for (size_t i = 0; i + 1 < len; i++)
        if (p[i] == '\r') return p[i + 1] == '\n' ? (long)i : -1;
    return -2; /* incomplete */
}

static int parse_int(const char *p, long n, long long *out) {
    long i = 0;
    bool neg = false;
    if (n > 0 && p[0] == '-') neg = true, i = 1;
    if (i == n || n - i > 18) return -1;
    long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* UTF-8 sequence length at s (valid, well-formed, no overlongs/surrogates), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t k = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!k || k > n) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (k == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
    if (k == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return k;
}

int respjson_string(buf *out, const char *s, size_t len) {
    int rc = buf_append(out, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len && rc == 0;) {
        unsigned char ch = u[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            rc = buf_append(out, e, 2);
            i++;
        } else if (ch < 0x20 || ch == 0x7f) {
            rc = buf_printf(out, "\\u%04x", ch);
            i++;
        } else if (ch == '<' || ch == '>' || ch == '&') {
            rc = buf_printf(out, "\\u%04x", ch); /* inert if ever pasted into HTML */
            i++;
        } else {
            size_t k = utf8_len(u + i, len - i);
            rc = k ? buf_append(out, s + i, k) : buf_append(out, "\\ufffd", 6);
            i += k ? k : 1;
        }
    }
    return rc ? rc : buf_append(out, "\"", 1);
}

static long elem(const char *p, size_t len, buf *out, int depth);

/* An array, set, push or map of v elements (pairs) whose header is head bytes long. */
static long aggregate(const char *p, size_t len, buf *out, int depth, size_t head, long long v) {
    int rc = 0;
    if (v == -1) {
        if (out) rc = buf_append(out, "null", 4);
        return rc ? -2 : (long)head;
    }
    bool map = p[0] == '%';
    unsigned long long count = (unsigned long long)v * (map ? 2 : 1);
    if (count > len) return 0; /* every element takes 3 bytes or more: not all here yet */
    if (out) rc = buf_append(out, map ? "{" : "[", 1);
    size_t off = head;
    for (unsigned long long i = 0; i < count && rc == 0; i++) {
        if (out && i) rc = buf_append(out, map && i % 2 ? ":" : ",", 1);
        if (rc) break;
        /* A map key must come out as a JSON string: integers are quoted. */
        bool key = map && i % 2 == 0;
        if (key && off < len && p[off] == ':') {
            long m = line_len(p + off + 1, len - off - 1);
            if (m == -2) return 0;
            if (m < 0) return -1;
            if (out) rc = respjson_string(out, p + off + 1, (size_t)m);
            off += (size_t)m + 3;
            continue;
        }
        if (key && off < len && strchr("*~>%", p[off])) return -1;
        long e = elem(p + off, len - off, out, depth + 1);
        if (e <= 0) return e;
        off += (size_t)e;
    }
    if (!rc && out) rc = buf_append(out, map ? "}" : "]", 1);
    return rc ? -2 : (long)off;
}

/* One element at p; out may be NULL (length only). Returns bytes, 0 incomplete, -1 bad, -2 out. */
static long elem(const char *p, size_t len, buf *out, int depth) {
    if (len < 1) return 0;
    if (depth > RESPJSON_DEPTH_MAX) return -1;
    long n = line_len(p + 1, len - 1);
    if (n == -2) return 0;
    if (n < 0) return -1;
    const char *l = p + 1;
    size_t head = (size_t)n + 3;
    long long v = 0;
    int rc = 0;
    switch (p[0]) {
    case '+':
        if (out) rc = respjson_string(out, l, (size_t)n);
        return rc ? -2 : (long)head;
    case '-': return -1; /* an error inside a reply: ours never nest one */
    case ':':
        if (parse_int(l, n, &v) != 0) return -1;
        if (out) rc = buf_printf(out, "%lld", v);
        return rc ? -2 : (long)head;
    case ',':
    case '(':
        if (out) rc = respjson_string(out, l, (size_t)n);
        return rc ? -2 : (long)head;
    case '_':
        if (n != 0) return -1;
        if (out) rc = buf_append(out, "null", 4);
        return rc ? -2 : (long)head;
    case '#':
        if (n != 1 || (l[0] != 't' && l[0] != 'f')) return -1;
        if (out) rc = l[0] == 't' ? buf_append(out, "true", 4) : buf_append(out, "false", 5);
        return rc ? -2 : (long)head;
    case '$':
    case '=': {
        if (parse_int(l, n, &v) != 0 || v < -1) return -1;
        if (v == -1) {
            if (out) rc = buf_append(out, "null", 4);
            return rc ? -2 : (long)head;
        }
        if ((unsigned long long)v > len || head + (size_t)v + 2 > len) return 0;
        const char *s = p + head;
        if (s[v] != '\r' || s[v + 1] != '\n') return -1;
        size_t skip = p[0] == '=' && v >= 4 ? 4 : 0; /* verbatim: "txt:" prefix */
        if (out) rc = respjson_string(out, s + skip, (size_t)v - skip);
        return rc ? -2 : (long)(head + (size_t)v + 2);
    }
    case '*':
    case '~':
    case '>':
    case '%':
        if (parse_int(l, n, &v) != 0 || v < -1) return -1;
        return aggregate(p, len, out, depth, head, v);
    default: return -1;
    }
}

long respjson_length(const char *p, size_t len) {
    if (len && p[0] == '-') {
        long n = line_len(p + 1, len - 1);
        return n == -2 ? 0 : n < 0 ? -1 : n + 3;
    }
    return elem(p, len, NULL, 0);
}

long respjson_convert(const char *p, size_t len, buf *out) {
    long n = elem(p, len, NULL, 0);
    if (n <= 0) return n;
    size_t before = out->len;
    long m = elem(p, (size_t)n, out, 0);
    if (m != n) {
        buf_truncate(out, before);
        return m == -2 ? -2 : -1;
    }
    return n;
}

void respjson_error(const char *p, size_t len, const char **code, size_t *code_len, const char **why,
                    size_t *why_len) {
    const char *s = len && p[0] == '-' ? p + 1 : p;
    const char *e = memchr(s, '\r', len - (size_t)(s - p));
    if (!e) e = p + len;
    /* "ERR NOTFOUND reason": the code is two words after ERR, one otherwise (NOPERM ...). */
    const char *sp = memchr(s, ' ', (size_t)(e - s));
    if (sp && (size_t)(sp - s) == 3 && !memcmp(s, "ERR", 3)) {
        const char *sp2 = memchr(sp + 1, ' ', (size_t)(e - sp - 1));
        sp = sp2;
    }
    *code = s;
    *code_len = (size_t)((sp ? sp : e) - s);
    *why = sp ? sp + 1 : e;
    *why_len = (size_t)(e - *why);
}
