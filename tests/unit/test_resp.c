/* Unit tests of the RESP codec (gateway/core/resp.h): multibulk and inline parsing,
 * pipelining, restartability on partial input, limits reported as RESP_TOOBIG with a skip
 * that keeps the connection usable, protocol errors, and the reply writers. */
#include "unit.h"

#include <errno.h>
#include <sys/mman.h>

#include "resp.h"

/* resp_cmd holds RESP_ARGS_MAX arguments: too big to want on every test's stack. */
static resp_cmd g_cmd;

static void expect_args(const resp_cmd *c, uint32_t argc, const char *const *want) {
    assert_int_equal(c->argc, argc);
    for (uint32_t i = 0; i < argc; i++) {
        assert_int_equal(c->argv[i].len, strlen(want[i]));
        assert_memory_equal(c->argv[i].p, want[i], c->argv[i].len);
    }
}

static void test_multibulk_simple(void **state) {
    (void)state;
    char in[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
    size_t len = sizeof in - 1, used = 0;
    resp_skip skip = {0};
    assert_int_equal(resp_parse(in, len, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, len);
    expect_args(&g_cmd, 3, (const char *[]){"SET", "k", "hello"});
    /* zero-copy: the arguments point into the input */
    assert_ptr_equal(g_cmd.argv[0].p, in + 8);
    assert_ptr_equal(g_cmd.argv[2].p, in + len - 7);
}

static void test_binary_safe_and_empty_bulk(void **state) {
    (void)state;
    char in[] = "*3\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$3\r\nx\0y\r\n";
    size_t len = sizeof in - 1, used = 0;
    resp_skip skip = {0};
    assert_int_equal(resp_parse(in, len, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, len);
    assert_int_equal(g_cmd.argc, 3);
    assert_int_equal(g_cmd.argv[0].len, 4);
    assert_memory_equal(g_cmd.argv[0].p, "a\r\nb", 4); /* CRLF inside a bulk is data */
    assert_int_equal(g_cmd.argv[1].len, 0);
    assert_int_equal(g_cmd.argv[2].len, 3);
    assert_memory_equal(g_cmd.argv[2].p, "x\0y", 3);
}

static void test_empty_multibulk(void **state) {
    (void)state;
    resp_skip skip = {0};
    size_t used = 0;
    char a[] = "*0\r\n";
    assert_int_equal(resp_parse(a, 4, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, 4);
    assert_int_equal(g_cmd.argc, 0);
    char b[] = "*-1\r\n";
    assert_int_equal(resp_parse(b, 5, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, 5);
    assert_int_equal(g_cmd.argc, 0);
}

static void test_inline(void **state) {
    (void)state;
    resp_skip skip = {0};
    size_t used = 0;
    char a[] = "PING\r\n";
    assert_int_equal(resp_parse(a, 6, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, 6);
    expect_args(&g_cmd, 1, (const char *[]){"PING"});
    /* LF alone, several spaces and tabs between words, leading/trailing blanks */
    char b[] = "  check\t BANK1   acct 42 \nrest";
    assert_int_equal(resp_parse(b, sizeof b - 1, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, 26);
    expect_args(&g_cmd, 4, (const char *[]){"check", "BANK1", "acct", "42"});
    /* an empty line is an empty command, consumed */
    char c[] = "\r\nPING\r\n";
    assert_int_equal(resp_parse(c, sizeof c - 1, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, 2);
    assert_int_equal(g_cmd.argc, 0);
    /* no newline yet: wait */
    char d[] = "PIN";
    assert_int_equal(resp_parse(d, 3, &g_cmd, &used, &skip), RESP_INCOMPLETE);
}

static void test_arg_is(void **state) {
    (void)state;
    resp_arg a = {"pInG", 4};
    assert_true(resp_arg_is(&a, "PING"));
    assert_true(resp_arg_is(&a, "ping"));
    assert_false(resp_arg_is(&a, "PINGS"));
    assert_false(resp_arg_is(&a, "PIN"));
    resp_arg b = {"PINGX", 4}; /* only len bytes count */
    assert_true(resp_arg_is(&b, "ping"));
}

/* A pipeline of mixed commands, and what each must parse to. */
static const char k_pipeline[] =
    "*2\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n"
    "PING\r\n"
    "*4\r\n$5\r\nCHECK\r\n$4\r\nBANK\r\n$10\r\n0123456789\r\n$0\r\n\r\n"
    "*0\r\n"
    "status SG-1\n"
    "*1\r\n$4\r\nQUIT\r\n";
static const char *const k_pipe_args[][4] = {
    {"AUTH", "alice"},  {"PING"}, {"CHECK", "BANK", "0123456789", ""}, {NULL},
    {"status", "SG-1"}, {"QUIT"},
};
static const uint32_t k_pipe_argc[] = {2, 1, 4, 0, 2, 1};
#define PIPE_N 6

static void test_pipelined(void **state) {
    (void)state;
    char in[sizeof k_pipeline];
    memcpy(in, k_pipeline, sizeof in);
    size_t len = sizeof k_pipeline - 1, off = 0;
    resp_skip skip = {0};
    for (int i = 0; i < PIPE_N; i++) {
        size_t used = 0;
        assert_int_equal(resp_parse(in + off, len - off, &g_cmd, &used, &skip), RESP_OK);
        assert_true(used > 0);
        expect_args(&g_cmd, k_pipe_argc[i], k_pipe_args[i]);
        off += used;
    }
    assert_int_equal(off, len);
    size_t used = 0;
    assert_int_equal(resp_parse(in + off, 0, &g_cmd, &used, &skip), RESP_INCOMPLETE);
}

/* The bytes arrive in pieces of every size: each call sees only what has arrived. A command
 * must be reported only when complete, never as an error while partial, and the sequence of
 * commands must be the same as when everything arrives at once. */
static void run_chunked(size_t chunk) {
    size_t total = sizeof k_pipeline - 1;
    char in[sizeof k_pipeline];
    size_t have = 0, off = 0;
    int ncmd = 0;
    resp_skip skip = {0};
    while (off < total) {
        if (have < total) {
            size_t n = total - have < chunk ? total - have : chunk;
            memcpy(in + have, k_pipeline + have, n);
            have += n;
        }
        for (;;) {
            size_t used = 0;
            resp_status st = resp_parse(in + off, have - off, &g_cmd, &used, &skip);
            if (st == RESP_INCOMPLETE) {
                assert_true(have < total); /* all bytes present: nothing may be pending */
                break;
            }
            assert_int_equal(st, RESP_OK);
            assert_true(ncmd < PIPE_N);
            expect_args(&g_cmd, k_pipe_argc[ncmd], k_pipe_args[ncmd]);
            ncmd++;
            off += used;
            if (off == have) break;
        }
    }
    assert_int_equal(ncmd, PIPE_N);
}

static void test_partial_input_restartable(void **state) {
    (void)state;
    for (size_t chunk = 1; chunk <= 17; chunk++) run_chunked(chunk);
    run_chunked(64);
}

/* Every strict prefix of one command is INCOMPLETE, never OK or an error. */
static void test_every_prefix_incomplete(void **state) {
    (void)state;
    char in[] = "*3\r\n$4\r\nSTOP\r\n$12\r\nrequest-0001\r\n$2\r\nab\r\n";
    size_t len = sizeof in - 1;
    resp_skip skip = {0};
    for (size_t n = 0; n < len; n++) {
        size_t used = 12345;
        assert_int_equal(resp_parse(in, n, &g_cmd, &used, &skip), RESP_INCOMPLETE);
    }
    size_t used = 0;
    assert_int_equal(resp_parse(in, len, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, len);
}

static void expect_proto(const char *s) {
    char in[256];
    size_t len = strlen(s);
    memcpy(in, s, len);
    size_t used = 0;
    resp_skip skip = {0};
    resp_status st = resp_parse(in, len, &g_cmd, &used, &skip);
    if (st != RESP_PROTO) fail_msg("'%s': status %d, want RESP_PROTO", s, st);
    assert_non_null(g_cmd.error);
}

static void test_protocol_errors(void **state) {
    (void)state;
    expect_proto("*abc\r\n");
    expect_proto("*\r\n");
    expect_proto("*-2\r\n");
    expect_proto("*3\rX");
    expect_proto("*3\r\n+foo\r\n");    /* arguments must be bulk strings */
    expect_proto("*1\r\n$3\r\nfooXX"); /* bulk not terminated by CRLF */
    expect_proto("*1\r\n$-1\r\n");     /* null bulk is not an argument */
    expect_proto("*1\r\n$\r\n");
    expect_proto("*1\r\n$1x\r\nx\r\n");
    expect_proto("*123456789012345678901234567890\r\n"); /* length line too long */
    expect_proto("*2000000\r\n");                        /* absurd count: not even skippable */
}

/* n bulks "$1\r\nx\r\n" after a "*n" header, then a PING the connection must still see. */
static char *make_many_args(uint32_t n, size_t *len) {
    size_t cap = 32 + (size_t)n * 7 + 32;
    char *p = malloc(cap);
    assert_non_null(p);
    size_t off = (size_t)snprintf(p, cap, "*%u\r\n", n);
    for (uint32_t i = 0; i < n; i++) {
        memcpy(p + off, "$1\r\nx\r\n", 7);
        off += 7;
    }
    memcpy(p + off, "*1\r\n$4\r\nPING\r\n", 14);
    off += 14;
    *len = off;
    return p;
}

/* Feed data[0..len) to an active skip in chunks, the way a connection receives it: what
 * resp_skip_feed leaves unconsumed (a partial bulk header) is kept for the next round.
 * Returns the offset where the skipped command ended. */
static size_t skip_chunked(resp_skip *skip, const char *data, size_t len, size_t chunk) {
    size_t have = 0, off = 0;
    for (;;) {
        assert_true(have < len || off < have);
        size_t n = len - have < chunk ? len - have : chunk;
        have += n;
        int done = 0;
        long used = resp_skip_feed(skip, data + off, have - off, &done);
        assert_true(used >= 0);
        off += (size_t)used;
        if (done) return off;
        assert_true(have < len); /* not done with everything available: must wait for more */
    }
}

static void test_toobig_args_then_usable(void **state) {
    (void)state;
    size_t chunks[] = {1, 3, 7, 4096, 1 << 20};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        size_t len;
        char *in = make_many_args(RESP_ARGS_MAX + 1, &len);
        size_t used = 0;
        resp_skip skip = {99, 99};
        /* Only the header needs to be there to know the command is too big. */
        assert_int_equal(resp_parse(in, 9, &g_cmd, &used, &skip), RESP_TOOBIG);
        assert_non_null(g_cmd.error);
        assert_int_equal(used, strlen("*1101\r\n"));
        assert_int_equal(skip.args_left, RESP_ARGS_MAX + 1);
        assert_int_equal(skip.bytes_left, 0);
        size_t end = used + skip_chunked(&skip, in + used, len - used, chunks[c]);
        assert_int_equal(end, len - 14); /* exactly up to the PING */
        assert_int_equal(resp_parse(in + end, len - end, &g_cmd, &used, &skip), RESP_OK);
        expect_args(&g_cmd, 1, (const char *[]){"PING"});
        free(in);
    }
}

static void test_args_at_limit_ok(void **state) {
    (void)state;
    size_t len;
    char *in = make_many_args(RESP_ARGS_MAX, &len);
    size_t used = 0;
    resp_skip skip = {0};
    assert_int_equal(resp_parse(in, len, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(g_cmd.argc, RESP_ARGS_MAX);
    assert_int_equal(used, len - 14);
    assert_int_equal(g_cmd.argv[RESP_ARGS_MAX - 1].len, 1);
    free(in);
}

/* "*3 STOP <bulk of blen bytes> x" followed by PING. */
static char *make_big_bulk(size_t blen, size_t *len, size_t *hdr_end) {
    size_t cap = blen + 128;
    char *p = malloc(cap);
    assert_non_null(p);
    size_t off = (size_t)snprintf(p, cap, "*3\r\n$4\r\nSTOP\r\n$%zu\r\n", blen);
    *hdr_end = off;
    memset(p + off, 'B', blen);
    off += blen;
    off += (size_t)snprintf(p + off, cap - off, "\r\n$1\r\nx\r\n*1\r\n$4\r\nPING\r\n");
    *len = off;
    return p;
}

static void test_toobig_bulk_then_usable(void **state) {
    (void)state;
    size_t chunks[] = {1000, 65536, 1 << 22};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        size_t len, hdr_end;
        char *in = make_big_bulk(RESP_BULK_BYTES_MAX + 1, &len, &hdr_end);
        size_t used = 0;
        resp_skip skip = {0};
        /* The oversized length is recognised before its body arrives. */
        assert_int_equal(resp_parse(in, hdr_end, &g_cmd, &used, &skip), RESP_TOOBIG);
        assert_non_null(g_cmd.error);
        assert_int_equal(used, hdr_end);
        assert_int_equal(skip.bytes_left, (uint64_t)RESP_BULK_BYTES_MAX + 1 + 2);
        assert_int_equal(skip.args_left, 1);
        size_t end = used + skip_chunked(&skip, in + used, len - used, chunks[c]);
        assert_int_equal(end, len - 14);
        assert_int_equal(resp_parse(in + end, len - end, &g_cmd, &used, &skip), RESP_OK);
        expect_args(&g_cmd, 1, (const char *[]){"PING"});
        free(in);
    }
}

static void test_bulk_at_limit_ok(void **state) {
    (void)state;
    size_t len, hdr_end;
    char *in = make_big_bulk(RESP_BULK_BYTES_MAX, &len, &hdr_end);
    size_t used = 0;
    resp_skip skip = {0};
    assert_int_equal(resp_parse(in, len - 1, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(g_cmd.argc, 3);
    assert_int_equal(g_cmd.argv[1].len, RESP_BULK_BYTES_MAX);
    assert_int_equal(used, len - 14);
    free(in);
}

static void test_skip_feed_malformed(void **state) {
    (void)state;
    resp_skip skip = {.bytes_left = 0, .args_left = 2};
    int done = 0;
    assert_int_equal(resp_skip_feed(&skip, "+oops\r\n", 7, &done), -1);
    resp_skip s2 = {.bytes_left = 0, .args_left = 2};
    assert_int_equal(resp_skip_feed(&s2, "$-5\r\n", 5, &done), -1);
    /* an already finished skip consumes nothing and is done */
    resp_skip s3 = {0};
    assert_int_equal(resp_skip_feed(&s3, "*1\r\n", 4, &done), 0);
    assert_int_equal(done, 1);
}

/* Too many words on an inline line: TOOBIG, the line is consumed, and (resp.h) *skip is filled
 * for what follows - here nothing, since the whole line is gone. A caller that reuses one
 * resp_skip per connection must not be left with a stale one. */
static void test_inline_too_many_args(void **state) {
    (void)state;
    size_t n = RESP_ARGS_MAX + 1;
    char *in = malloc(n * 2 + 16);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++) {
        in[2 * i] = 'a';
        in[2 * i + 1] = ' ';
    }
    size_t line = n * 2;
    in[line] = '\n';
    memcpy(in + line + 1, "PING\r\n", 6);
    size_t len = line + 7, used = 0;
    resp_skip skip = {.bytes_left = 77, .args_left = 5}; /* left over from an earlier command */
    assert_int_equal(resp_parse(in, len, &g_cmd, &used, &skip), RESP_TOOBIG);
    assert_non_null(g_cmd.error);
    assert_int_equal(used, line + 1);
    assert_int_equal(resp_parse(in + used, len - used, &g_cmd, &used, &skip), RESP_OK);
    expect_args(&g_cmd, 1, (const char *[]){"PING"});
    free(in);
    /* the skip must say "nothing left to skip" */
    resp_skip skip2 = {.bytes_left = 77, .args_left = 5};
    char *in2 = malloc(n * 2 + 1);
    assert_non_null(in2);
    memset(in2, ' ', n * 2);
    for (size_t i = 0; i < n; i++) in2[2 * i] = 'z';
    in2[n * 2] = '\n';
    assert_int_equal(resp_parse(in2, n * 2 + 1, &g_cmd, &used, &skip2), RESP_TOOBIG);
    assert_int_equal(skip2.bytes_left, 0);
    assert_int_equal(skip2.args_left, 0);
    free(in2);
}

/* An inline line longer than RESP_INLINE_BYTES_MAX without a newline must not be held
 * waiting forever: it is refused (the stream cannot resynchronise, so RESP_PROTO is right). */
static void test_inline_too_long(void **state) {
    (void)state;
    char *in = malloc(RESP_INLINE_BYTES_MAX + 10);
    assert_non_null(in);
    memset(in, 'a', RESP_INLINE_BYTES_MAX + 10);
    size_t used = 0;
    resp_skip skip = {0};
    assert_int_equal(resp_parse(in, RESP_INLINE_BYTES_MAX - 1, &g_cmd, &used, &skip),
                     RESP_INCOMPLETE);
    resp_status st = resp_parse(in, RESP_INLINE_BYTES_MAX, &g_cmd, &used, &skip);
    assert_true(st == RESP_PROTO || st == RESP_TOOBIG);
    assert_non_null(g_cmd.error);
    st = resp_parse(in, RESP_INLINE_BYTES_MAX + 10, &g_cmd, &used, &skip);
    assert_true(st == RESP_PROTO || st == RESP_TOOBIG);
    free(in);
}

/* Parsing must never read past len. The input is placed so that its last byte is the last
 * byte of a page followed by an inaccessible page: any over-read faults. */
static void test_never_reads_past_len(void **state) {
    (void)state;
    long pg = sysconf(_SC_PAGESIZE);
    size_t area = (size_t)pg * 4;
    uint8_t *m =
        mmap(NULL, area + (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + area, (size_t)pg, PROT_NONE), 0);
    char *end = (char *)m + area;
    size_t plen = sizeof k_pipeline - 1;
    resp_skip skip = {0};
    /* every prefix of the pipeline, and every suffix (mid-command starts) */
    for (size_t n = 0; n <= plen; n++) {
        memcpy(end - n, k_pipeline, n);
        size_t used = 0;
        resp_status st = resp_parse(end - n, n, &g_cmd, &used, &skip);
        assert_true(st == RESP_OK || st == RESP_INCOMPLETE);
        memcpy(end - n, k_pipeline + plen - n, n);
        used = 0;
        (void)resp_parse(end - n, n, &g_cmd, &used, &skip);
        int done;
        resp_skip s = {.bytes_left = 0, .args_left = 3};
        (void)resp_skip_feed(&s, end - n, n, &done);
    }
    /* random garbage biased towards RESP punctuation */
    static const char alpha[] = "*$\r\n0123456789-+ abcPING";
    uint32_t seed = 12345;
    for (int it = 0; it < 20000; it++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 16) % 64;
        char *p = end - n;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            p[i] = alpha[(seed >> 16) % (sizeof alpha - 1)];
        }
        if (n > 0 && (it & 1)) p[0] = '*';
        size_t used = 0;
        resp_status st = resp_parse(p, n, &g_cmd, &used, &skip);
        assert_true(st <= RESP_PROTO);
        if (st == RESP_OK) {
            assert_true(used > 0 && used <= n);
            for (uint32_t a = 0; a < g_cmd.argc; a++) {
                assert_true(g_cmd.argv[a].p >= p);
                assert_true(g_cmd.argv[a].p + g_cmd.argv[a].len <= p + used);
            }
        }
        if (st == RESP_TOOBIG) assert_true(used <= n);
    }
    munmap(m, area + (size_t)pg);
}

/* --- writers ----------------------------------------------------------------------------- */

static void expect_buf(buf *b, const char *want) {
    size_t n = strlen(want);
    if (b->len != n || memcmp(b->data, want, n) != 0)
        fail_msg("got '%.*s', want '%s'", (int)b->len, (const char *)b->data, want);
    buf_reset(b);
}

static void test_writers(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(resp_w_simple(&b, "OK"), 0);
    expect_buf(&b, "+OK\r\n");
    assert_int_equal(resp_w_error(&b, "ERR SYNTAX", "bad %s %d", "thing", 7), 0);
    expect_buf(&b, "-ERR SYNTAX bad thing 7\r\n");
    /* a reason quoting client text must not break the line */
    assert_int_equal(resp_w_error(&b, "ERR BADACCOUNT", "%s", "a\r\n+OK\r\nb"), 0);
    expect_buf(&b, "-ERR BADACCOUNT a  +OK  b\r\n");
    assert_int_equal(resp_w_int(&b, 0), 0);
    expect_buf(&b, ":0\r\n");
    assert_int_equal(resp_w_int(&b, -42), 0);
    expect_buf(&b, ":-42\r\n");
    assert_int_equal(resp_w_int(&b, INT64_MIN), 0);
    expect_buf(&b, ":-9223372036854775808\r\n");
    assert_int_equal(resp_w_int(&b, INT64_MAX), 0);
    expect_buf(&b, ":9223372036854775807\r\n");
    assert_int_equal(resp_w_bulk(&b, "a\r\nb", 4), 0);
    expect_buf(&b, "$4\r\na\r\nb\r\n");
    assert_int_equal(resp_w_bulk(&b, "", 0), 0);
    expect_buf(&b, "$0\r\n\r\n");
    assert_int_equal(resp_w_str(&b, "SG-17"), 0);
    expect_buf(&b, "$5\r\nSG-17\r\n");
    assert_int_equal(resp_w_null(&b, 2), 0);
    expect_buf(&b, "$-1\r\n");
    assert_int_equal(resp_w_null(&b, 3), 0);
    expect_buf(&b, "_\r\n");
    assert_int_equal(resp_w_array(&b, 3), 0);
    expect_buf(&b, "*3\r\n");
    assert_int_equal(resp_w_array(&b, 0), 0);
    expect_buf(&b, "*0\r\n");
    assert_int_equal(resp_w_map(&b, 3, 2), 0);
    expect_buf(&b, "%2\r\n");
    assert_int_equal(resp_w_map(&b, 2, 2), 0); /* RESP2: flat array of the pairs */
    expect_buf(&b, "*4\r\n");
    assert_int_equal(resp_w_kv_str(&b, "status", "ACCEPTED"), 0);
    expect_buf(&b, "$6\r\nstatus\r\n$8\r\nACCEPTED\r\n");
    assert_int_equal(resp_w_kv_int(&b, "lsn", 12), 0);
    expect_buf(&b, "$3\r\nlsn\r\n:12\r\n");
    buf_free(&b);
}

static void test_writers_report_cap(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 16);
    assert_int_equal(resp_w_str(&b, "0123456789abcdefXYZ"), -ENOBUFS);
    buf_reset(&b);
    assert_int_equal(resp_w_simple(&b, "0123456789abcdefXYZ"), -ENOBUFS);
    buf_free(&b);
}

/* What the writers produce as a command parses back to the same arguments. */
static void test_writer_parser_roundtrip(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    const char *args[] = {"STOP", "req-1", "BANK", "ICBKCNBJ", "NOTE", "with\r\nnewline", ""};
    assert_int_equal(resp_w_array(&b, 7), 0);
    for (int i = 0; i < 7; i++) assert_int_equal(resp_w_str(&b, args[i]), 0);
    size_t used = 0;
    resp_skip skip = {0};
    assert_int_equal(resp_parse((char *)b.data, b.len, &g_cmd, &used, &skip), RESP_OK);
    assert_int_equal(used, b.len);
    expect_args(&g_cmd, 7, args);
    buf_free(&b);
}

/* The map header is counted from what was written: RESP3 map and RESP2 flat array, nested
 * maps and arrays counted as one value each, an empty map. */
static void test_map_counts_itself(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    for (int proto = 2; proto <= 3; proto++) {
        buf_reset(&b);
        assert_int_equal(resp_w_simple(&b, "OK"), 0); /* an earlier reply stays untouched */
        resp_map m, inner;
        resp_map_begin(&m, &b, proto);
        assert_int_equal(resp_w_kv_str(&b, "a", "x"), 0);
        assert_int_equal(resp_w_str(&b, "nested"), 0);
        resp_map_begin(&inner, &b, proto);
        assert_int_equal(resp_w_kv_int(&b, "n", -12), 0);
        assert_int_equal(resp_map_end(&inner, 0), 0);
        assert_int_equal(resp_w_str(&b, "list"), 0);
        assert_int_equal(resp_w_array(&b, 2), 0);
        assert_int_equal(resp_w_null(&b, proto), 0);
        assert_int_equal(resp_w_int(&b, 7), 0);
        assert_int_equal(resp_map_end(&m, 0), 0);
        if (proto == 3)
            expect_buf(&b, "+OK\r\n%3\r\n$1\r\na\r\n$1\r\nx\r\n$6\r\nnested\r\n%1\r\n$1\r\nn\r\n:-12\r\n"
                           "$4\r\nlist\r\n*2\r\n_\r\n:7\r\n");
        else
            expect_buf(&b, "+OK\r\n*6\r\n$1\r\na\r\n$1\r\nx\r\n$6\r\nnested\r\n*2\r\n$1\r\nn\r\n:-12\r\n"
                           "$4\r\nlist\r\n*2\r\n$-1\r\n:7\r\n");
        buf_reset(&b);
        resp_map_begin(&m, &b, proto);
        assert_int_equal(resp_map_end(&m, 0), 0);
        expect_buf(&b, proto == 3 ? "%0\r\n" : "*0\r\n");
    }
    buf_free(&b);
}

/* A map of many pairs (more digits in the header than one) and a bulk holding CRLF. */
static void test_map_many_pairs(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    resp_map m;
    resp_map_begin(&m, &b, 3);
    for (int i = 0; i < 1234; i++) assert_int_equal(resp_w_kv_str(&b, "k", "v\r\n:1\r\n"), 0);
    assert_int_equal(resp_map_end(&m, 0), 0);
    assert_memory_equal(b.data, "%1234\r\n", 7);
    assert_int_equal(resp_count_elems((const char *)b.data, b.len), 1);
    buf_free(&b);
}

/* No room for the header at the cap: an error, and no half map left in the buffer. */
static void test_map_end_at_cap(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 16);
    assert_int_equal(resp_w_simple(&b, "OK"), 0);
    resp_map m;
    resp_map_begin(&m, &b, 3);
    assert_int_equal(resp_w_int(&b, 1), 0);
    assert_int_equal(resp_w_int(&b, 123), 0); /* 15 bytes: a 4-byte header does not fit */
    assert_int_equal(resp_map_end(&m, 0), -ENOBUFS);
    expect_buf(&b, "+OK\r\n");
    buf_free(&b);
}

/* A write inside the map failed: the map is removed whole and the error passed on. */
static void test_map_end_after_failed_write(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 64);
    assert_int_equal(resp_w_simple(&b, "OK"), 0);
    resp_map m;
    resp_map_begin(&m, &b, 2);
    int rc = resp_w_kv_int(&b, "a", 1);
    assert_int_equal(rc, 0);
    int rc2 = resp_w_str(&b, "a value far too long for what is left of this small buffer's cap");
    assert_int_equal(rc2, -ENOBUFS);
    assert_int_equal(resp_map_end(&m, rc2), -ENOBUFS);
    expect_buf(&b, "+OK\r\n");
    buf_free(&b);
}

/* An array counts its elements (an odd count is fine, nested maps count as one), and is the
 * same "*<n>" in both protocols; inside a map it is one value. */
static void test_array_counts_itself(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    for (int proto = 2; proto <= 3; proto++) {
        buf_reset(&b);
        resp_map m, a, inner;
        resp_map_begin(&m, &b, proto);
        assert_int_equal(resp_w_str(&b, "xs"), 0);
        resp_array_begin(&a, &b);
        assert_int_equal(resp_w_int(&b, 1), 0);
        resp_map_begin(&inner, &b, proto);
        assert_int_equal(resp_w_kv_int(&b, "n", 2), 0);
        assert_int_equal(resp_map_end(&inner, 0), 0);
        assert_int_equal(resp_w_str(&b, "z"), 0);
        assert_int_equal(resp_map_end(&a, 0), 0);
        assert_int_equal(resp_map_end(&m, 0), 0);
        if (proto == 3)
            expect_buf(&b, "%1\r\n$2\r\nxs\r\n*3\r\n:1\r\n%1\r\n$1\r\nn\r\n:2\r\n$1\r\nz\r\n");
        else
            expect_buf(&b, "*2\r\n$2\r\nxs\r\n*3\r\n:1\r\n*2\r\n$1\r\nn\r\n:2\r\n$1\r\nz\r\n");
        buf_reset(&b);
        resp_array_begin(&a, &b);
        assert_int_equal(resp_map_end(&a, 0), 0);
        expect_buf(&b, "*0\r\n");
    }
    buf_free(&b);
}

static void test_count_elems_rejects_cut(void **state) {
    (void)state;
    assert_int_equal(resp_count_elems("$3\r\nab", 7), -1);
    assert_int_equal(resp_count_elems("*2\r\n:1\r\n", 9), -1);
    assert_int_equal(resp_count_elems(":1\r\n:2\r\n", 8), 2);
    assert_int_equal(resp_count_elems("", 0), 0);
}

/* resp_peek3 (check_ahead's look ahead): canonical 3-argument commands only, each exactly what
 * resp_parse makes of the same bytes; anything else is refused, never misread. */
static void test_peek3(void **state) {
    (void)state;
    char in[] = "*3\r\n$5\r\nCHECK\r\n$4\r\nICBC\r\n$10\r\nAC00000001\r\n*3\r\n$5\r\ncheck\r\n$1\r\nX\r\n$3\r\nA-1\r\n"
                "PING\r\n";
    size_t len = strlen(in), off = 0, used;
    resp_arg a[3];
    resp_skip skip;
    for (int cmd = 0; cmd < 2; cmd++) {
        assert_true(resp_peek3(in + off, len - off, a, &used));
        size_t pused = 0;
        assert_int_equal(resp_parse(in + off, len - off, &g_cmd, &pused, &skip), RESP_OK);
        assert_int_equal(g_cmd.argc, 3);
        assert_int_equal(used, pused);
        for (int i = 0; i < 3; i++) {
            assert_ptr_equal(a[i].p, g_cmd.argv[i].p);
            assert_int_equal(a[i].len, g_cmd.argv[i].len);
        }
        off += used;
    }
    assert_memory_equal(a[2].p, "A-1", 3);
    assert_false(resp_peek3(in + off, len - off, a, &used)); /* inline PING: not for peek3 */
    /* every prefix of a whole command is incomplete: refused */
    for (size_t n = 0; n < 42; n++) assert_false(resp_peek3(in, n, a, &used));
    assert_true(resp_peek3(in, 42, a, &used));
    static const char *refused[] = {
        "*2\r\n$4\r\nPING\r\n$1\r\nx\r\n",                            /* two arguments */
        "*4\r\n$5\r\nCHECK\r\n$1\r\nA\r\n$1\r\nB\r\n$1\r\nC\r\n",       /* four */
        "*3\r\n$05\r\nCHECK\r\n$1\r\nA\r\n$1\r\nB\r\n",               /* leading zero */
        "*3\r\n$5\r\nCHECK\r\n$0\r\n\r\n$1\r\nB\r\n",                 /* empty argument */
        "*3\r\n$5\r\nCHECK\r\n$1000\r\n",                             /* over RESP_PEEK_ARG_MAX */
        "*3\r\n$5\r\nCHECK\r\n$-1\r\n$1\r\nA\r\n$1\r\nB\r\n",         /* null bulk */
        "*3\r\n$5\r\nCHECKX\r\n$1\r\nA\r\n$1\r\nB\r\n",               /* length lies */
        "*3\r\n$5\r\nCHECK\n\n$1\r\nA\r\n$1\r\nB\r\n",                /* bare LF */
        "*3\r\n$5\r\nCHECK\r\n:1\r\n$1\r\nB\r\n",                     /* not a bulk */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        assert_false(resp_peek3(refused[i], strlen(refused[i]), a, &used));
}

/* resp_peek (the look ahead over pipelined STOPs, check_ahead.h): a canonical command of up to
 * max arguments, exactly what resp_parse makes of it; refused when incomplete, over max, or not
 * canonical. Every prefix is given in a heap block of exactly its size, so that a read at or
 * past in[len] is an error under ASan (the look ahead runs over a client's input buffer). */
static void test_peek_n(void **state) {
    (void)state;
    const char *stop = "*10\r\n$4\r\nSTOP\r\n$7\r\nburst-1\r\n$4\r\nBANK\r\n$4\r\nICBC\r\n$7\r\nACCOUNT\r\n"
                       "$3\r\nA1X\r\n$4\r\nCASE\r\n$1\r\nC\r\n$6\r\nAMOUNT\r\n$3\r\n500\r\n";
    size_t len = strlen(stop), used, pused;
    resp_arg a[19];
    uint32_t argc;
    resp_skip skip;
    for (size_t n = 0; n <= len; n++) {
        char *in = malloc(n ? n : 1);
        assert_non_null(in);
        memcpy(in, stop, n);
        bool ok = resp_peek(in, n, a, 19, &argc, &used);
        assert_int_equal(ok, n == len); /* every proper prefix is incomplete */
        if (ok) {
            assert_int_equal(resp_parse(in, n, &g_cmd, &pused, &skip), RESP_OK);
            assert_int_equal(argc, 10);
            assert_int_equal(g_cmd.argc, 10);
            assert_int_equal(used, pused);
            for (uint32_t i = 0; i < argc; i++) {
                assert_ptr_equal(a[i].p, g_cmd.argv[i].p);
                assert_int_equal(a[i].len, g_cmd.argv[i].len);
            }
            assert_memory_equal(a[1].p, "burst-1", 7);
        }
        free(in);
    }
    assert_false(resp_peek(stop, len, a, 9, &argc, &used)); /* more arguments than asked for */
    static const char *refused[] = {
        "*010\r\n$4\r\nSTOP\r\n", /* leading zero */
        "*0\r\n",                   /* empty */
        "*100\r\n$4\r\nSTOP\r\n", /* three digits */
        "*1\r\n$4\r\nSTOP\n\n",    /* bare LF */
        "PING\r\n",                 /* inline */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        assert_false(resp_peek(refused[i], strlen(refused[i]), a, 19, &argc, &used));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peek_n),
        cmocka_unit_test(test_multibulk_simple),
        cmocka_unit_test(test_peek3),
        cmocka_unit_test(test_binary_safe_and_empty_bulk),
        cmocka_unit_test(test_empty_multibulk),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_arg_is),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_partial_input_restartable),
        cmocka_unit_test(test_every_prefix_incomplete),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_toobig_args_then_usable),
        cmocka_unit_test(test_args_at_limit_ok),
        cmocka_unit_test(test_toobig_bulk_then_usable),
        cmocka_unit_test(test_bulk_at_limit_ok),
        cmocka_unit_test(test_skip_feed_malformed),
        cmocka_unit_test(test_inline_too_many_args),
        cmocka_unit_test(test_inline_too_long),
        cmocka_unit_test(test_never_reads_past_len),
        cmocka_unit_test(test_writers),
        cmocka_unit_test(test_writers_report_cap),
        cmocka_unit_test(test_writer_parser_roundtrip),
        cmocka_unit_test(test_map_counts_itself),
        cmocka_unit_test(test_map_many_pairs),
        cmocka_unit_test(test_map_end_at_cap),
        cmocka_unit_test(test_map_end_after_failed_write),
        cmocka_unit_test(test_array_counts_itself),
        cmocka_unit_test(test_count_elems_rejects_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
