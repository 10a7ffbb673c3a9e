/*
 * fuzz_record: the journal record payload codec (gateway/core/record.c) on arbitrary bytes.
 * record_decode runs for every record type; a decoded record is re-encoded (record_encode
 * must succeed: re-encoding never grows a payload) and decoding that must give back the
 * same record, and encoding is a fixed point from there on. Rows blobs (LIST.LOAD) are
 * walked with record_row_next, both the decoded record's and the raw input as a blob, and
 * every row read is re-written with record_row_put to the very same bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

static const uint16_t types[] = {REC_ORDER,    REC_MERGE,    REC_STATE,           REC_RELEASE,
                                 REC_EXTEND,   REC_CONFIRM,  REC_LIST_ADD,        REC_LIST_DEL,
                                 REC_LIST_LOAD_BEGIN, REC_LIST_LOAD_ROWS, REC_LIST_LOAD_COMMIT, 0, 0xffff};

/* Walk a rows blob; each row re-written must reproduce the blob's bytes. */
static void walk_rows(rec_str blob) {
    uint8_t *copy = malloc(blob.len ? blob.len : 1);
    if (!copy) return;
    size_t off = 0, out = 0;
    list_row row;
    int rc;
    uint32_t rows = 0;
    while ((rc = record_row_next(blob, &off, &row)) == 1) {
        if (off > blob.len || ++rows > blob.len) abort(); /* a row is at least 4 bytes */
        volatile uint8_t sink = 0;
        for (uint32_t i = 0; i < row.bank.len; i++) sink ^= (uint8_t)row.bank.p[i];
        for (uint32_t i = 0; i < row.account.len; i++) sink ^= (uint8_t)row.account.p[i];
        for (uint32_t i = 0; i < row.case_id.len; i++) sink ^= (uint8_t)row.case_id.p[i];
        (void)sink;
        if (record_row_put(copy, blob.len, &out, &row) != 0 || out != off || memcmp(copy, blob.p, off) != 0) abort();
    }
    if (rc != 0 && rc != -1) abort();
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Exact-size copy: ASan reports any read past the payload. */
    uint8_t *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);
    walk_rows((rec_str){(const char *)p, (uint32_t)(size > UINT32_MAX ? UINT32_MAX : size)});

    static order_rec r, r2, r3;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        if (record_decode(types[t], p, size, &r) != 0) continue;
        (void)record_type_name(r.type);
        if (r.rows.len) walk_rows(r.rows);
        /* record_encode's contract: only the order and list types (asserted); 0 and the
         * journal's close record are decoded above only to prove decoding them is safe. */
        if (r.type < REC_ORDER || r.type > REC_LIST_LOAD_COMMIT) continue;
        uint8_t *enc = malloc(size ? size : 1);
        if (!enc) break;
        int n = record_encode(&r, enc, size);
        if (n < 0 || (size_t)n > size) abort();
        uint8_t *enc1 = malloc(n ? (size_t)n : 1); /* exact size again */
        if (!enc1) abort();
        memcpy(enc1, enc, (size_t)n);
        if (record_decode(types[t], enc1, (size_t)n, &r2) != 0 || !record_equal(&r, &r2)) abort();
        int n2 = record_encode(&r2, enc, size);
        if (n2 != n || memcmp(enc, enc1, (size_t)n) != 0) abort();
        if (record_decode(types[t], enc, (size_t)n2, &r3) != 0 || !record_equal(&r2, &r3)) abort();
        free(enc1);
        free(enc);
    }
    free(p);
    return 0;
}
