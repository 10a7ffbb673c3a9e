/*
 * http: the HTTP/1.1 request parser of the agents' console (SPEC §12, docs/console.md).
 *
 * Contract:
 * - Zero-copy and restartable like resp_parse(): http_parse() looks at the unconsumed input
 *   of one connection and either describes one complete request (head and body) whose
 *   fields point into that input, or says it needs more bytes. It never allocates and never
 *   reads past len.
 * - Bounded: a head (request line + headers) over HTTP_HEAD_BYTES_MAX, more than
 *   HTTP_HEADERS_MAX header lines, a target over HTTP_TARGET_BYTES_MAX or a body over
 *   HTTP_BODY_BYTES_MAX is refused (HTTP_TOOBIG) as soon as it is seen, whatever follows.
 * - Strict where leniency smuggles requests: CRLF line ends only, no obsolete line
 *   folding, one Content-Length of digits only, no Transfer-Encoding (HTTP_UNSUPPORTED),
 *   header names made of token characters. Anything else is HTTP_BAD with a reason.
 * - Only the headers the console uses are kept (Cookie, X-CSRF-Token, Content-Type,
 *   Connection, Host, Origin); the rest are checked for form and skipped.
 * Pure: no I/O, no globals, thread-compatible. Fuzzed by tests/fuzz/fuzz_http.c.
 */
#ifndef SG_HTTP_H
#define SG_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

enum http_status {
    HTTP_OK = 0,          /* one request parsed: r->total bytes belong to it */
    HTTP_INCOMPLETE,      /* need more input */
    HTTP_BAD,             /* malformed: answer 400 and close */
    HTTP_TOOBIG,          /* over a limit: answer 413/431 and close */
    HTTP_UNSUPPORTED,     /* well-formed but not served (Transfer-Encoding, HTTP/2...): 501, close */
};

enum http_method { HTTP_GET = 1, HTTP_HEAD, HTTP_POST, HTTP_OTHER };

typedef struct http_str {
    const char *p;
    uint32_t len;
} http_str;

typedef struct http_req {
    int method;
    http_str target, path, query; /* path and query split at the first '?' */
    int minor;                    /* HTTP/1.<minor>: 0 or 1 */
    http_str cookie, csrf, content_type, connection, host, origin;
    bool keep_alive;   /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive */
    bool head_toobig;  /* for HTTP_TOOBIG: true when the head, false when the body was too big */
    const char *body;
    uint32_t body_len;
    size_t total; /* head + body bytes */
} http_req;

/* Parse one request from in[0..len). On HTTP_OK r is filled; otherwise *why (static) says
 * what was wrong (for HTTP_INCOMPLETE: NULL). */
int http_parse(const char *in, size_t len, http_req *r, const char **why);

/* Percent-decode s into out (at most cap bytes, no NUL added): its length, or -1 when s has
 * a bad escape, decodes to a control byte or does not fit. '+' stays '+' (paths). */
int http_pct_decode(const char *s, size_t len, char *out, size_t cap);

/* The value of parameter name in a query string ("a=1&case=C1"), percent-decoded ('+' is a
 * space here) into out: its length, -1 when absent or bad, as http_pct_decode. */
int http_query_param(http_str query, const char *name, char *out, size_t cap);

/* The value of cookie name in a Cookie header, or a zero http_str when absent. */
http_str http_cookie(http_str cookie, const char *name);

/* Case-insensitive equality of s and a literal. */
bool http_str_is(http_str s, const char *lit);
#endif
