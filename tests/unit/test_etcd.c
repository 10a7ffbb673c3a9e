/* Unit tests of the etcd client (gateway/cluster/etcd.h) without etcd: argument checks and
 * the size bound, refusals before sending, deadlines against a dead port and a silent
 * server (unsure), and the watch's resume logic against a scripted fake member that splits
 * one revision's events over two connections. The real-etcd test is integration-etcd-client. */
#include "unit.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <sodium.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "etcd.h"

/* ---- a scripted fake member: connection k gets script[k] as its whole answer ------------- */

#define FAKE_CONNS 48
typedef struct fake {
    int lfd, port;
    const char *script[FAKE_CONNS]; /* NULL: read the request, then never answer */
    char body[FAKE_CONNS][1024];    /* the request bodies received (cut) */
    int served;
    bool stop;
    pthread_t thr;
} fake;

static void fake_read_request(int fd, char *body, size_t cap) {
    char req[8192];
    size_t n = 0;
    char *hdr_end = NULL;
    while (!hdr_end && n < sizeof req - 1) {
        ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0) return;
        n += (size_t)r;
        req[n] = 0;
        hdr_end = strstr(req, "\r\n\r\n");
    }
    if (!hdr_end) return;
    char *cl = strcasestr(req, "content-length:");
    size_t want = cl ? (size_t)atol(cl + 15) : 0, have = n - (size_t)(hdr_end + 4 - req);
    while (have < want && n < sizeof req - 1) {
        ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        have += (size_t)r;
    }
    req[n] = 0;
    snprintf(body, cap, "%s", hdr_end + 4);
}

static void *fake_main(void *arg) {
    fake *f = arg;
    int held[FAKE_CONNS], nheld = 0;
    while (!f->stop && f->served < FAKE_CONNS) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) continue;
        int k = f->served;
        fake_read_request(fd, f->body[k], sizeof f->body[k]);
        const char *s = f->script[k];
        __atomic_store_n(&f->served, k + 1, __ATOMIC_SEQ_CST);
        if (!s) {
            held[nheld++] = fd; /* the frozen member: connected, never a byte back */
            continue;
        }
        char head[256];
        int hn = snprintf(
            head, sizeof head,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
        ssize_t w = send(fd, head, (size_t)hn, MSG_NOSIGNAL);
        w = send(fd, s, strlen(s), MSG_NOSIGNAL);
        (void)w;
        close(fd);
    }
    while (!f->stop) usleep(10000);
    for (int i = 0; i < nheld; i++) close(held[i]);
    return NULL;
}

static void fake_start(fake *f) {
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thr, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f) {
    f->stop = true;
    pthread_join(f->thr, NULL);
    close(f->lfd);
}

/* A loopback port nothing listens on (bound, then closed). */
static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static etcd_client *client(const char *eps, uint32_t deadline_ms) {
    char err[256] = "";
    etcd_config cfg = {.endpoints = eps,
                       .deadline_ms = deadline_ms,
                       .attempt_timeout_ms = 200,
                       .connect_timeout_ms = 100};
    etcd_client *c = etcd_create(&cfg, err, sizeof err);
    if (!c) fail_msg("etcd_create: %s", err);
    return c;
}

/* Wait up to ms for results; copy the first one's fields the tests look at. */
static size_t wait_results(etcd_client *c, const etcd_result **out, size_t max, int ms) {
    int64_t end = etcd_mono_ms() + ms;
    size_t n = 0;
    while (n == 0 && etcd_mono_ms() < end) {
        struct pollfd p = {.fd = etcd_event_fd(c), .events = POLLIN};
        poll(&p, 1, 20);
        n = etcd_poll(c, out, max);
    }
    return n;
}

/* ---- the tests ------------------------------------------------------------------------- */

static void test_config_refused(void **state) {
    (void)state;
    char err[256];
    etcd_config cfg = {.endpoints = "127.0.0.1:2379"};
    assert_null(etcd_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "http://"));
    cfg.endpoints = " , ";
    assert_null(etcd_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "no etcd endpoint"));
    cfg.endpoints =
        "http://a:1,http://a:2,http://a:3,http://a:4,http://a:5,http://a:6,http://a:7,http://a:8,"
        "http://a:9,http://a:10";
    assert_null(etcd_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "more than"));
}

static void test_prefix_end(void **state) {
    (void)state;
    uint8_t end[8];
    assert_int_equal(etcd_prefix_end("/a/", 3, end, sizeof end), 3);
    assert_memory_equal(end, "/a0", 3);
    assert_int_equal(etcd_prefix_end("a\xff\xff", 3, end, sizeof end), 1);
    assert_int_equal(end[0], 'b');
    assert_int_equal(etcd_prefix_end("\xff", 1, end, sizeof end), 0);
}

static void test_request_bound(void **state) {
    (void)state;
    static uint8_t v[1000];
    etcd_op op = {
        .kind = ETCD_OP_PUT, .key = "/k", .key_len = 2, .value = v, .value_len = sizeof v};
    etcd_request r = {.kind = ETCD_PUT, .op = op};
    size_t one = etcd_request_bytes(&r);
    assert_true(one >= 2 + sizeof v + 4); /* at least the bytes and their framing */
    etcd_op ops[3] = {op, op, op};
    etcd_compare cmp = {.key = "/leader", .key_len = 7, .target = ETCD_CMP_CREATE, .number = 5};
    etcd_request t = {
        .kind = ETCD_TXN, .compares = &cmp, .compare_count = 1, .success = ops, .success_count = 3};
    assert_true(etcd_request_bytes(&t) >= 3 * (one - 64) + 7);
}

static void test_refusals_before_sending(void **state) {
    (void)state;
    char eps[64], err[256];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d", dead_port());
    etcd_client *c = client(eps, 5000);
    static uint8_t big[ETCD_REQUEST_BYTES_MAX];
    etcd_request r = {.kind = ETCD_PUT};
    r.op = (etcd_op){
        .kind = ETCD_OP_PUT, .key = "/k", .key_len = 2, .value = big, .value_len = sizeof big};
    assert_int_equal(etcd_submit(c, &r, 1, err, sizeof err), -ETCD_E_TOO_LARGE);
    r.op.key_len = 0;
    r.op.value_len = 1;
    assert_int_equal(etcd_submit(c, &r, 1, err, sizeof err), -ETCD_E_INVALID);
    r.op.key_len = 2;
    r.kind = ETCD_RANGE; /* op.kind says put */
    assert_int_equal(etcd_submit(c, &r, 1, err, sizeof err), -ETCD_E_INVALID);
    etcd_op ops[ETCD_TXN_OPS_MAX + 1];
    for (int i = 0; i <= ETCD_TXN_OPS_MAX; i++)
        ops[i] = (etcd_op){.kind = ETCD_OP_DELETE, .key = "/k", .key_len = 2};
    etcd_request t = {.kind = ETCD_TXN, .success = ops, .success_count = ETCD_TXN_OPS_MAX + 1};
    assert_int_equal(etcd_submit(c, &t, 1, err, sizeof err), -ETCD_E_INVALID);
    /* The pool: ETCD_INFLIGHT_MAX outstanding, then FULL at once (the dead port keeps them
     * retrying until their 5 s deadline). */
    r.kind = ETCD_PUT;
    r.op.value_len = 1;
    for (int i = 0; i < ETCD_INFLIGHT_MAX; i++)
        assert_int_equal(etcd_submit(c, &r, (uint64_t)i, err, sizeof err), 0);
    int64_t t0 = etcd_mono_ms();
    assert_int_equal(etcd_submit(c, &r, 999, err, sizeof err), -ETCD_E_FULL);
    assert_true(etcd_mono_ms() - t0 < 50);
    etcd_stats st;
    etcd_stats_get(c, &st);
    assert_int_equal(st.refused_too_large, 1);
    assert_int_equal(st.refused_full, 1);
    assert_int_equal(st.submitted, ETCD_INFLIGHT_MAX);
    etcd_destroy(c); /* with everything in flight: must not hang or leak */
}

/* Nobody listens: refused everywhere, retried until the deadline; surely not applied. */
static void test_dead_members_deadline(void **state) {
    (void)state;
    char eps[128];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d,http://127.0.0.1:%d", dead_port(), dead_port());
    etcd_client *c = client(eps, 300);
    etcd_request r = {.kind = ETCD_PUT};
    r.op = (etcd_op){.kind = ETCD_OP_PUT, .key = "/k", .key_len = 2, .value = "v", .value_len = 1};
    assert_int_equal(etcd_submit(c, &r, 42, NULL, 0), 0);
    const etcd_result *out[4];
    assert_int_equal(wait_results(c, out, 4, 2000), 1);
    assert_int_equal(out[0]->cookie, 42);
    assert_int_equal(out[0]->err, ETCD_E_TIMEOUT);
    assert_false(out[0]->unsure);
    print_message("dead members: %s (%u attempts)\n", out[0]->msg, out[0]->attempts);
    assert_true(out[0]->attempts >= 2);
    int64_t took = out[0]->done_mono_ms - out[0]->sent_mono_ms;
    assert_true(took >= 290 && took <= 450);
    etcd_destroy(c);
}

/* A member that takes the request and never answers: a put times out at its deadline and is
 * `unsure` (it reached etcd); it is not sent elsewhere. An idempotent range is. */
static void test_silent_member_unsure(void **state) {
    (void)state;
    fake f = {0};
    f.script[2] = "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"L2s=\",\"value\":\"dg==\","
                  "\"mod_revision\":\"7\"}],\"count\":\"1\"}";
    fake_start(&f);
    char eps[128];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d,http://127.0.0.1:%d", f.port, f.port);
    etcd_client *c = client(eps, 400);
    etcd_request r = {.kind = ETCD_PUT};
    r.op = (etcd_op){.kind = ETCD_OP_PUT, .key = "/k", .key_len = 2, .value = "v", .value_len = 1};
    assert_int_equal(etcd_submit(c, &r, 1, NULL, 0), 0);
    const etcd_result *out[4];
    assert_int_equal(wait_results(c, out, 4, 2000), 1);
    assert_int_equal(out[0]->err, ETCD_E_TIMEOUT);
    assert_true(out[0]->unsure);
    assert_int_equal(out[0]->attempts, 1);
    assert_non_null(strstr(f.body[0], "\"value\":\"dg==\"")); /* base64 of "v" */
    etcd_request g = {.kind = ETCD_RANGE, .flags = ETCD_F_IDEMPOTENT, .deadline_ms = 2000};
    g.op = (etcd_op){.kind = ETCD_OP_RANGE, .key = "/k", .key_len = 2};
    assert_int_equal(etcd_submit(c, &g, 2, NULL, 0), 0);
    assert_int_equal(wait_results(c, out, 4, 3000), 1);
    assert_int_equal(out[0]->err, ETCD_OK); /* connection 1 is silent too: after its 200 ms */
    assert_int_equal(out[0]->attempts, 2);  /* share, connection 2 answers */
    assert_int_equal(out[0]->kv_count, 1);
    assert_int_equal(out[0]->kvs[0].value_len, 1);
    assert_int_equal(out[0]->kvs[0].value[0], 'v');
    assert_int_equal(out[0]->revision, 7);
    etcd_destroy(c);
    fake_stop(&f);
}

/* One revision (9) of three events split over two connections: the second must start at 9,
 * deliver only the third event of 9, then 10 - nothing lost, nothing twice. */
static void test_watch_resume_split_revision(void **state) {
    (void)state;
    fake f = {0};
    /* keys: /w/a=L3cvYQ== /w/b=L3cvYg== /w/c=L3cvYw== /w/d=L3cvZA== */
    f.script[0] = "{\"result\":{\"header\":{\"revision\":\"8\"},\"created\":true}}\n"
                  "{\"result\":{\"header\":{\"revision\":\"9\"},\"fragment\":true,\"events\":["
                  "{\"kv\":{\"key\":\"L3cvYQ==\",\"mod_revision\":\"9\",\"value\":\"MQ==\"}},"
                  "{\"kv\":{\"key\":\"L3cvYg==\",\"mod_revision\":\"9\",\"value\":\"MQ==\"}}]}}\n";
    f.script[1] =
        "{\"result\":{\"header\":{\"revision\":\"10\"},\"created\":true}}\n"
        "{\"result\":{\"header\":{\"revision\":\"10\"},\"events\":["
        "{\"kv\":{\"key\":\"L3cvYQ==\",\"mod_revision\":\"9\",\"value\":\"MQ==\"}},"
        "{\"kv\":{\"key\":\"L3cvYg==\",\"mod_revision\":\"9\",\"value\":\"MQ==\"}},"
        "{\"kv\":{\"key\":\"L3cvYw==\",\"mod_revision\":\"9\",\"value\":\"MQ==\"}},"
        "{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3cvZA==\",\"mod_revision\":\"10\"}}]}}\n";
    f.script[2] = "{\"result\":{\"header\":{\"revision\":\"10\"},\"canceled\":true,\"compact_"
                  "revision\":\"10\"}}\n";
    fake_start(&f);
    char eps[64];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d", f.port);
    etcd_client *c = client(eps, 1000);
    assert_true(etcd_watch_start(c, "/w/", 3, "/w0", 3, 9, 77) >= 0);
    char got[8][8];
    int ngot = 0, created = 0;
    bool ended = false;
    int64_t end = etcd_mono_ms() + 5000;
    while (!ended && etcd_mono_ms() < end) {
        const etcd_result *out[8];
        size_t n = wait_results(c, out, 8, 100);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(out[i]->cookie, 77);
            created += out[i]->created;
            for (size_t k = 0; k < out[i]->event_count && ngot < 8; k++) {
                snprintf(got[ngot], sizeof got[ngot], "%c%.*s@%d",
                         out[i]->events[k].is_delete ? '-' : '+',
                         (int)out[i]->events[k].kv.key_len - 3,
                         (const char *)out[i]->events[k].kv.key + 3,
                         (int)out[i]->events[k].kv.mod_revision);
                ngot++;
            }
            if (out[i]->final) {
                assert_int_equal(out[i]->err, ETCD_E_COMPACTED);
                assert_int_equal(out[i]->compact_revision, 10);
                ended = true;
            }
        }
    }
    assert_true(ended);
    assert_int_equal(created, 2);
    assert_int_equal(ngot, 4);
    assert_string_equal(got[0], "+a@9");
    assert_string_equal(got[1], "+b@9");
    assert_string_equal(got[2], "+c@9");
    assert_string_equal(got[3], "-d@10");
    assert_non_null(strstr(f.body[0], "\"start_revision\":\"9\""));
    assert_non_null(strstr(f.body[1], "\"start_revision\":\"9\"")); /* 9 again, skipping two */
    assert_non_null(strstr(f.body[2], "\"start_revision\":\"10\""));
    etcd_stats st;
    etcd_stats_get(c, &st);
    assert_int_equal(st.watch_events, 4);
    assert_true(st.watch_reconnects >= 2);
    etcd_destroy(c);
    fake_stop(&f);
}

/* One slot carries request after request: its decode buffer is reused, not grown per answer
 * (it once grew until ETCD_RESPONSE_BYTES_MAX and then failed every answer with NOMEM). An
 * answer that is not JSON is a protocol error with a message. */
static void test_slot_reuse_and_garbage(void **state) {
    (void)state;
    enum {
        VALUE_BYTES = 1024 * 1024,
        ROUNDS = 40 /* 20 MiB decoded on each of the two slots it alternates between */
    };
    static uint8_t val[VALUE_BYTES];
    memset(val, 'z', sizeof val);
    size_t b64 = sodium_base64_ENCODED_LEN(VALUE_BYTES, sodium_base64_VARIANT_ORIGINAL);
    char *answer = malloc(b64 + 256);
    assert_non_null(answer);
    int n = snprintf(answer, 256,
                     "{\"header\":{\"revision\":\"3\"},\"kvs\":[{\"key\":\"L2s=\",\"value\":\"");
    sodium_bin2base64(answer + n, b64, val, VALUE_BYTES, sodium_base64_VARIANT_ORIGINAL);
    strcat(answer, "\"}],\"count\":\"1\"}");
    fake f = {0};
    for (int i = 0; i < ROUNDS; i++) f.script[i] = answer;
    f.script[ROUNDS] = "this is not json";
    fake_start(&f);
    char eps[64];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%d", f.port);
    etcd_client *c = client(eps, 5000);
    etcd_request g = {.kind = ETCD_RANGE, .flags = ETCD_F_IDEMPOTENT};
    g.op = (etcd_op){.kind = ETCD_OP_RANGE, .key = "/k", .key_len = 2};
    const etcd_result *out[4];
    for (int i = 0; i <= ROUNDS; i++) {
        assert_int_equal(etcd_submit(c, &g, (uint64_t)i, NULL, 0), 0);
        assert_int_equal(wait_results(c, out, 4, 5000), 1);
        if (i == ROUNDS) break;
        assert_int_equal(out[0]->err, ETCD_OK);
        assert_int_equal(out[0]->kv_count, 1);
        assert_int_equal(out[0]->kvs[0].value_len, VALUE_BYTES);
        assert_memory_equal(out[0]->kvs[0].value, val, VALUE_BYTES);
    }
    assert_int_equal(out[0]->err, ETCD_E_PROTOCOL);
    assert_non_null(strstr(out[0]->msg, "unparseable answer"));
    etcd_destroy(c);
    fake_stop(&f);
    free(answer);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_refused),
        cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_request_bound),
        cmocka_unit_test(test_refusals_before_sending),
        cmocka_unit_test(test_dead_members_deadline),
        cmocka_unit_test(test_silent_member_unsure),
        cmocka_unit_test(test_watch_resume_split_revision),
        cmocka_unit_test(test_slot_reuse_and_garbage),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
