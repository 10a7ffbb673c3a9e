/* Unit tests of the console's HTTP request parser (gateway/core/http.h) and of the RESP3 to
 * JSON converter (gateway/core/respjson.h): complete and partial requests, keep-alive,
 * every limit refused as soon as seen, request smuggling shapes refused, the helpers
 * (percent-decoding, query parameters, cookies); replies as JSON, cut replies, escaping. */
#include "unit.h"

#include "http.h"
#include "respjson.h"

static int parse(const char *s, http_req *r, const char **why) { return http_parse(s, strlen(s), r, why); }

static bool str_eq(http_str s, const char *lit) { return s.len == strlen(lit) && !memcmp(s.p, lit, s.len); }

static void test_get_and_keepalive(void **state) {
    (void)state;
    http_req r;
    const char *why;
    const char *in = "GET /api/case/C%201?x=1 HTTP/1.1\r\nHost: a\r\nCookie: a=b; sg_session=tok\r\n\r\nGET /";
    assert_int_equal(parse(in, &r, &why), HTTP_OK);
    assert_int_equal(r.method, HTTP_GET);
    assert_true(str_eq(r.path, "/api/case/C%201"));
    assert_true(str_eq(r.query, "x=1"));
    assert_true(r.keep_alive);
    assert_int_equal(r.total, strlen(in) - 5); /* the pipelined next request is not consumed */
    assert_true(str_eq(http_cookie(r.cookie, "sg_session"), "tok"));
    assert_null(http_cookie(r.cookie, "sg").p);
    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &r, &why), HTTP_OK);
    assert_false(r.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &r, &why), HTTP_OK);
    assert_false(r.keep_alive);
}

static void test_post_body_restartable(void **state) {
    (void)state;
    const char *in = "POST /api/stop HTTP/1.1\r\nContent-Type: application/json\r\nX-CSRF-Token: abc\r\n"
                     "Content-Length: 7\r\n\r\n{\"a\":1}";
    http_req r;
    const char *why;
    for (size_t n = 0; n < strlen(in); n++) /* every prefix: incomplete, never an error */
        assert_int_equal(http_parse(in, n, &r, &why), HTTP_INCOMPLETE);
    assert_int_equal(parse(in, &r, &why), HTTP_OK);
    assert_int_equal(r.method, HTTP_POST);
    assert_int_equal(r.body_len, 7);
    assert_memory_equal(r.body, "{\"a\":1}", 7);
    assert_true(str_eq(r.csrf, "abc"));
    assert_true(str_eq(r.content_type, "application/json"));
}

static void test_limits(void **state) {
    (void)state;
    http_req r;
    const char *why;
    static char big[HTTP_HEAD_BYTES_MAX + 64];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(http_parse(big, sizeof big, &r, &why), HTTP_TOOBIG);
    assert_true(r.head_toobig);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 8193\r\n\r\n", &r, &why), HTTP_TOOBIG);
    assert_false(r.head_toobig); /* 413, not 431 */
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", &r, &why), HTTP_TOOBIG);
    char many[HTTP_HEADERS_MAX * 8 + 64] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i <= HTTP_HEADERS_MAX; i++) strcat(many, "A: b\r\n");
    strcat(many, "\r\n");
    assert_int_equal(parse(many, &r, &why), HTTP_TOOBIG);
    char target[HTTP_TARGET_BYTES_MAX + 64] = "GET /";
    memset(target + 5, 'x', HTTP_TARGET_BYTES_MAX);
    strcat(target, " HTTP/1.1\r\n\r\n");
    assert_int_equal(parse(target, &r, &why), HTTP_TOOBIG);
}

static void test_refused_shapes(void **state) {
    (void)state;
    http_req r;
    const char *why;
    const char *bad[] = {
        "GET / HTTP/1.1\nHost: a\n\n",                                   /* bare LF */
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",                  /* obs-fold */
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", /* two lengths */
        "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        "GET relative HTTP/1.1\r\n\r\n",
        "GET / HTTQ/1.1\r\n\r\n",
        "\x16\x03\x01\x02garbage\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], &r, &why), HTTP_BAD);
        assert_non_null(why);
    }
    assert_int_equal(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r, &why), HTTP_UNSUPPORTED);
    assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n", &r, &why), HTTP_UNSUPPORTED);
}

static void test_helpers(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(http_pct_decode("C%2D1+x", 7, out, sizeof out), 5);
    assert_memory_equal(out, "C-1+x", 5);
    assert_int_equal(http_pct_decode("%0a", 3, out, sizeof out), -1); /* control byte */
    assert_int_equal(http_pct_decode("%g1", 3, out, sizeof out), -1);
    assert_int_equal(http_pct_decode("%4", 2, out, sizeof out), -1);
    assert_int_equal(http_pct_decode("abcd", 4, out, 3), -1); /* does not fit */
    http_str q = {"a=1&case=CASE+1%21&cases=no", 27};
    assert_int_equal(http_query_param(q, "case", out, sizeof out), 7);
    assert_memory_equal(out, "CASE 1!", 7);
    assert_int_equal(http_query_param(q, "b", out, sizeof out), -1);
}

static void conv(const char *resp, const char *want) {
    buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(respjson_convert(resp, strlen(resp), &b), (long)strlen(resp));
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    for (size_t n = 0; n < strlen(resp); n++) { /* every cut reply: incomplete, out unchanged */
        size_t before = b.len;
        assert_int_equal(respjson_convert(resp, n, &b), 0);
        assert_int_equal(b.len, before);
    }
    buf_free(&b);
}

static void test_respjson(void **state) {
    (void)state;
    conv("%3\r\n$8\r\norder_id\r\n$4\r\nSG-1\r\n$5\r\nlevel\r\n:2\r\n$6\r\nparent\r\n_\r\n",
         "{\"order_id\":\"SG-1\",\"level\":2,\"parent\":null}");
    conv("*3\r\n+OK\r\n#t\r\n$-1\r\n", "[\"OK\",true,null]");
    conv("$8\r\na\"b\\c<\x01\xff\r\n", "\"a\\\"b\\\\c\\u003c\\u0001\\ufffd\"");
    conv("%1\r\n:7\r\n,1.5\r\n", "{\"7\":\"1.5\"}");
    conv("$6\r\n\xe4\xb8\xad\xe6\x96\x87\r\n", "\"\xe4\xb8\xad\xe6\x96\x87\""); /* UTF-8 kept */
    buf b;
    buf_init(&b, 16);
    assert_int_equal(respjson_convert("*1\r\n-ERR x\r\n", 12, &b), -1);
    assert_int_equal(respjson_convert("?\r\n", 3, &b), -1);
    assert_int_equal(respjson_convert("$5\r\nab\r\n\r\n", 11, &b), -1);
    assert_int_equal(respjson_convert("$40\r\n0123456789012345678901234567890123456789\r\n", 47, &b), -2);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    char deep[200] = "";
    for (int i = 0; i <= RESPJSON_DEPTH_MAX + 1; i++) strcat(deep, "*1\r\n");
    strcat(deep, ":1\r\n");
    assert_int_equal(respjson_length(deep, strlen(deep)), -1);
    const char *code, *why;
    size_t cl, wl;
    const char *e = "-ERR NOTFOUND no order 'SG-9'\r\n";
    assert_int_equal(respjson_length(e, strlen(e)), (long)strlen(e));
    respjson_error(e, strlen(e), &code, &cl, &why, &wl);
    assert_int_equal(cl, 12);
    assert_memory_equal(code, "ERR NOTFOUND", 12);
    assert_int_equal(wl, 15);
    respjson_error("-NOPERM this role may not\r\n", 27, &code, &cl, &why, &wl);
    assert_int_equal(cl, 6);
    assert_memory_equal(why, "this role may not", wl);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_keepalive), cmocka_unit_test(test_post_body_restartable),
        cmocka_unit_test(test_limits),            cmocka_unit_test(test_refused_shapes),
        cmocka_unit_test(test_helpers),           cmocka_unit_test(test_respjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
