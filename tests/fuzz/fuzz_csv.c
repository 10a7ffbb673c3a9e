/*
 * fuzz_csv: LIST.LOAD's CSV parser (gateway/core/csvload.c) on arbitrary bytes. Every row
 * handed to the callback must be what the list table can take (bank [A-Z0-9]{1,11},
 * account [A-Z0-9]{1,34} that sgl_pack accepts, score 0-100, a case of 1-64 printable
 * characters inside the input), lines must rise, a refusal must name its line, and a
 * callback that stops the parse must have its value returned. The first input byte also
 * says after how many rows the callback stops (0 = never).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvload.h"
#include "lists_layout.h"

typedef struct ctx {
    const char *data;
    size_t size;
    uint32_t rows, stop_after, last_line;
} ctx;

static bool alnum_upper(const char *s, size_t min, size_t max) {
    size_t n = strlen(s);
    if (n < min || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'))) return false;
    return true;
}

static int on_row(void *vctx, const csv_row *row) {
    ctx *c = vctx;
    if (row->line <= c->last_line) abort();
    c->last_line = row->line;
    if (!alnum_upper(row->bank, 1, BANK_LEN_MAX) || !alnum_upper(row->account, 1, ACCOUNT_LEN_MAX)) abort();
    if (row->score > 100) abort();
    if (row->case_id) {
        if (row->case_len == 0 || row->case_len > CASE_LEN_MAX || row->case_id < c->data ||
            (size_t)(row->case_id - c->data) > c->size - row->case_len)
            abort();
        for (uint32_t i = 0; i < row->case_len; i++)
            if ((unsigned char)row->case_id[i] <= 0x20 || (unsigned char)row->case_id[i] >= 0x7f) abort();
    }
    /* lists.c packs every row it is given without checking: it must pack. */
    sgl_key k;
    if (sgl_pack(row->bank, strlen(row->bank), row->account, strlen(row->account), &k) != 0) abort();
    if (++c->rows == c->stop_after) return 7;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *p = malloc(size ? size : 1); /* exact size: ASan sees reads past the end */
    if (!p) return 0;
    memcpy(p, data, size);
    ctx c = {.data = p, .size = size, .stop_after = size ? data[0] % 8 : 0};
    char why[256];
    memset(why, 0x55, sizeof why);
    uint32_t bad_line = 0;
    int rc = csv_parse(p, size, on_row, &c, why, sizeof why, &bad_line);
    if (rc == 7) {
        if (c.stop_after == 0 || c.rows != c.stop_after) abort();
    } else if (rc == -1) {
        char want[32];
        snprintf(want, sizeof want, "line %u: ", bad_line);
        if (bad_line == 0 || bad_line <= c.last_line || !memchr(why, 0, sizeof why) || strncmp(why, want, strlen(want)))
            abort();
    } else if (rc != 0) {
        abort();
    }
    /* Without why/bad_line the outcome is the same. */
    ctx c2 = {.data = p, .size = size, .stop_after = c.stop_after};
    if (csv_parse(p, size, on_row, &c2, NULL, 0, NULL) != rc || c2.rows != c.rows) abort();
    free(p);
    return 0;
}
