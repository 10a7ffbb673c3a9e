/*
 * test_sb_reply: stopbench's reply reader (sb_reply.c) on the replies it meets.
 *   - a CHECK map and a STOP map (RESP2 flat arrays): verdict, status, order_id, state;
 *   - the same bytes fed one at a time: the same reply, once, only when it is complete;
 *   - pipelined replies given at once (several of the reader's slices, replies across their
 *     edges): each in turn, nothing carried over between them;
 *   - sb_reader_keep: the rest of a read survives its buffer being reused;
 *   - an error reply (text kept, cut at SB_ERR_TEXT_MAX), a top-level integer, a bulk (INFO)
 *     that outlives the reader's buffer compaction, nil values;
 *   - bytes that are not RESP: -1, not a reply.
 * Plain C (no cmocka needed); exit 0 when everything holds.
 */
#include <stdio.h>
#include <string.h>

#include "sb.h"

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
        }                                                                                          \
    } while (0)

static const char check_map[] = "*4\r\n$7\r\nverdict\r\n$6\r\nLISTED\r\n$4\r\nlist\r\n$4\r\nmule\r\n";
static const char stop_map[] = "*6\r\n$6\r\nstatus\r\n+ACCEPTED\r\n$8\r\norder_id\r\n$6\r\nO-0042\r\n"
                               "$5\r\nstate\r\n$4\r\nSENT\r\n";

/* Feed all of s at once; the one reply it holds. */
static const sb_reply_info *one(sb_reader *rd, const char *s, size_t n) {
    const sb_reply_info *ri = NULL;
    sb_reader_source(rd, s, n);
    CHECK(sb_reader_next(rd, &ri) == 1);
    return ri;
}

static void test_maps(void) {
    sb_reader rd;
    CHECK(sb_reader_init(&rd) == 0);
    const sb_reply_info *ri = one(&rd, check_map, sizeof check_map - 1);
    CHECK(ri && !ri->err && ri->verdict == 1 && ri->status == -1 && !ri->has_ival);
    ri = one(&rd, stop_map, sizeof stop_map - 1);
    CHECK(ri && ri->status == 0 && ri->verdict == -1);
    CHECK(ri && ri->order_id[0] == 0); /* no capture */
    rd.capture = true;
    ri = one(&rd, stop_map, sizeof stop_map - 1);
    CHECK(ri && !strcmp(ri->order_id, "O-0042") && !strcmp(ri->state, "SENT"));
    CHECK(sb_reader_next(&rd, &ri) == 0 && sb_reader_pending(&rd) == 0);
    sb_reader_free(&rd);
}

static void test_byte_by_byte(void) {
    sb_reader rd;
    CHECK(sb_reader_init(&rd) == 0);
    const sb_reply_info *ri = NULL;
    int replies = 0;
    for (size_t i = 0; i < sizeof check_map - 1; i++) {
        sb_reader_source(&rd, check_map + i, 1);
        int r = sb_reader_next(&rd, &ri);
        CHECK(r == (i == sizeof check_map - 2 ? 1 : 0));
        replies += r;
    }
    CHECK(replies == 1 && ri && ri->verdict == 1);
    sb_reader_free(&rd);
}

static void test_pipelined(void) {
    char buf[8192];
    size_t n = 0;
    for (int i = 0; i < 100; i++) { /* > 2 slices; past 1 KiB the reader compacts its buffer */
        const char *s = i % 2 ? stop_map : "-ERR BUSY journal full\r\n";
        memcpy(buf + n, s, strlen(s));
        n += strlen(s);
    }
    sb_reader rd;
    CHECK(sb_reader_init(&rd) == 0);
    sb_reader_source(&rd, buf, n);
    const sb_reply_info *ri;
    for (int i = 0; i < 100; i++) {
        CHECK(sb_reader_next(&rd, &ri) == 1);
        if (i % 2) CHECK(!ri->err && ri->status == 0);
        else CHECK(ri->err && ri->status == -1 && !strcmp(ri->err_text, "ERR BUSY journal full"));
    }
    CHECK(sb_reader_next(&rd, &ri) == 0);
    sb_reader_free(&rd);
}

static void test_keep(void) {
    char buf[256];
    size_t n = strlen(check_map);
    memcpy(buf, check_map, n);
    memcpy(buf + n, stop_map, 20); /* the first 20 bytes of the next reply */
    sb_reader rd;
    CHECK(sb_reader_init(&rd) == 0);
    sb_reader_source(&rd, buf, n + 20);
    const sb_reply_info *ri;
    CHECK(sb_reader_next(&rd, &ri) == 1 && ri->verdict == 1);
    CHECK(sb_reader_pending(&rd) == 20);
    CHECK(sb_reader_keep(&rd) == 0);
    memset(buf, 'z', sizeof buf); /* the receive buffer is reused */
    strcpy(buf, stop_map + 20);
    sb_reader_source(&rd, buf, strlen(buf));
    CHECK(sb_reader_next(&rd, &ri) == 1 && ri->status == 0 && ri->verdict == -1);
    CHECK(sb_reader_next(&rd, &ri) == 0 && sb_reader_pending(&rd) == 0);
    sb_reader_free(&rd);
}

static void test_scalars(void) {
    sb_reader rd;
    CHECK(sb_reader_init(&rd) == 0);
    const sb_reply_info *ri = one(&rd, ":1\r\n", 4);
    CHECK(ri && ri->has_ival && ri->ival == 1 && !ri->err);
    ri = one(&rd, "+PONG\r\n", 7);
    CHECK(ri && !ri->has_ival && !ri->err && !ri->bulk);
    char info[3000] = "$2980\r\n";
    size_t h = strlen(info);
    memset(info + h, 'x', 2980);
    memcpy(info + h, "orders_SENT:7\r\n", 15);
    memcpy(info + h + 2980, "\r\n", 2);
    ri = one(&rd, info, h + 2982);
    CHECK(ri && ri->bulk && ri->bulk_len == 2980 && !memcmp(ri->bulk, "orders_SENT:7\r\n", 15) &&
          ri->bulk[2980] == 0);
    ri = one(&rd, "*2\r\n$7\r\nverdict\r\n$-1\r\n", 22);
    CHECK(ri && ri->verdict == -1 && !ri->err);
    char big[SB_ERR_TEXT_MAX * 2 + 8] = "-ERR ";
    memset(big + 5, 'y', sizeof big - 8);
    memcpy(big + sizeof big - 3, "\r\n", 3);
    ri = one(&rd, big, sizeof big - 1);
    CHECK(ri && ri->err && ri->err_len == SB_ERR_TEXT_MAX - 1 && ri->err_text[SB_ERR_TEXT_MAX - 1] == 0);
    sb_reader_free(&rd);
}

static void test_malformed(void) {
    sb_reader rd;
    CHECK(sb_reader_init(&rd) == 0);
    const sb_reply_info *ri;
    sb_reader_source(&rd, "?what\r\n", 7);
    CHECK(sb_reader_next(&rd, &ri) == -1);
    CHECK(sb_reader_error(&rd)[0] != 0);
    sb_reader_free(&rd);
    CHECK(sb_reader_init(&rd) == 0);
    sb_reader_source(&rd, "$abc\r\n", 6);
    CHECK(sb_reader_next(&rd, &ri) == -1);
    sb_reader_free(&rd);
}

int main(void) {
    test_maps();
    test_byte_by_byte();
    test_pipelined();
    test_keep();
    test_scalars();
    test_malformed();
    if (failures) fprintf(stderr, "test_sb_reply: %d failures\n", failures);
    return failures ? 1 : 0;
}
