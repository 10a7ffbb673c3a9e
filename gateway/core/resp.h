/*
 * resp: the RESP2/RESP3 wire codec of the TCP port (SPEC §4.1).
 *
 * Parsing is zero-copy and restartable: resp_parse() looks at the unconsumed input of one
 * client and either returns one complete command whose arguments point into that input,
 * or says it needs more bytes. It never allocates and never reads past len. Limits
 * (RESP_ARGS_MAX, RESP_BULK_BYTES_MAX, RESP_INLINE_BYTES_MAX) are enforced here: a command
 * with too many arguments or too large a bulk is reported as RESP_TOOBIG together with a
 * resp_skip that tells the caller how to discard the rest of it, so the connection stays
 * usable. An inline line with no newline in its first RESP_INLINE_BYTES_MAX bytes has no end
 * in sight to skip to, so it is RESP_PROTO (the connection is closed), as in Redis.
 *
 * The writer appends replies to a buf in the client's protocol (2 or 3).
 */
#ifndef SG_RESP_H
#define SG_RESP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "limits.h"

typedef struct resp_arg {
    const char *p;
    uint32_t len;
} resp_arg;

typedef enum resp_status {
    RESP_OK = 0,         /* one command parsed; *consumed bytes belong to it */
    RESP_INCOMPLETE = 1, /* need more input */
    RESP_TOOBIG = 2,     /* command over a limit; skip it with resp_skip_feed */
    RESP_PROTO = 3,      /* garbage: the stream cannot be resynchronised */
} resp_status;

/* Discards the remainder of an over-limit multibulk command as its bytes arrive. */
typedef struct resp_skip {
    uint64_t bytes_left; /* of the current bulk, CRLF included */
    uint32_t args_left;  /* bulks still to come after the current one */
} resp_skip;

typedef struct resp_cmd {
    uint32_t argc;
    resp_arg argv[RESP_ARGS_MAX];
    const char *error; /* reason for RESP_TOOBIG / RESP_PROTO */
} resp_cmd;

/* Parse one command from in[0..len). On RESP_OK and RESP_TOOBIG, *consumed is how many
 * bytes to drop now; on RESP_TOOBIG *skip is always filled for what follows (all zero when
 * nothing does, e.g. an inline command with too many words). */
resp_status resp_parse(char *in, size_t len, resp_cmd *cmd, size_t *consumed, resp_skip *skip);

/* A look ahead for prefetching, never for executing: when in[0..len) starts with a complete
 * multibulk command of exactly three bulk arguments in canonical form ("*3", then per argument
 * "$<n>" with 1 <= n <= RESP_PEEK_ARG_MAX, no leading zero, and CRLFs), fills argv and *consumed
 * and returns true; else false (the caller stops looking). Whenever it returns true,
 * resp_parse() on the same bytes returns RESP_OK with the same arguments and the same length
 * (tests/fuzz/fuzz_resp.c checks it). */
#define RESP_PEEK_ARG_MAX 999
bool resp_peek3(const char *in, size_t len, resp_arg argv[3], size_t *consumed);
/* The same look ahead for a canonical multibulk command of 1..max arguments ("*<n>" with no
 * leading zero, n <= max <= RESP_PEEK_ARGS_MAX): fills argv[0..n), *argc and *consumed. The
 * same promise: when it returns true, resp_parse() agrees on the arguments and the length.
 * It reads nothing at or past in[len]. */
#define RESP_PEEK_ARGS_MAX 32
bool resp_peek(const char *in, size_t len, resp_arg *argv, uint32_t max, uint32_t *argc, size_t *consumed);
/* Feed input to an active skip. Returns bytes consumed; sets *done when the command is gone.
 * Returns -1 on a malformed header inside the skipped command (protocol error). */
long resp_skip_feed(resp_skip *skip, const char *in, size_t len, int *done);

/* Writers. proto is 2 or 3. Each returns 0 or a negative errno from buf. */
int resp_w_simple(buf *b, const char *s);
int resp_w_error(buf *b, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int resp_w_int(buf *b, int64_t v);
int resp_w_bulk(buf *b, const char *s, size_t len);
int resp_w_str(buf *b, const char *s); /* bulk of a C string */
int resp_w_null(buf *b, int proto);
int resp_w_array(buf *b, size_t n);
int resp_w_map(buf *b, int proto, size_t pairs);

/* A map whose pair count the writer computes: resp_map_begin() marks where the pairs start,
 * the pairs are written with any writers above (nested maps and arrays included), and
 * resp_map_end() counts the elements written since and puts the header in front of them
 * (a RESP3 map, or a RESP2 flat array of twice as many elements). Adding a field can thus
 * never desynchronise the header. rc is the first error of those writes (0: none); when it
 * is not 0, or the header does not fit, the pairs are removed again (the buffer holds no
 * half map) and the error is returned. Nothing may be consumed from the buf between begin
 * and end. */
typedef struct resp_map {
    buf *b;
    size_t body_off;
    int proto; /* 2 or 3: a map; 0: an array (resp_array_begin) */
} resp_map;
void resp_map_begin(resp_map *m, buf *b, int proto);
int resp_map_end(resp_map *m, int rc);
/* The same for an array whose elements are counted by the writer ("*<n>" in both protocols):
 * resp_array_begin(), the elements, then resp_map_end(). */
void resp_array_begin(resp_map *m, buf *b);
/* Top-level RESP elements in p[0..len), or -1 when it is not a whole sequence of elements
 * (used by resp_map_end and its tests). */
long resp_count_elems(const char *p, size_t len);
/* Map key as bulk followed by a value helper, the common case. */
int resp_w_kv_str(buf *b, const char *key, const char *val);
int resp_w_kv_int(buf *b, const char *key, int64_t v);

/* Case-insensitive compare of an argument with a literal. */
int resp_arg_is(const resp_arg *a, const char *lit);
#endif
