/*
 * fuzz_result: the redis_streams result-entry parser (plugins/redis_streams/result_parse.c)
 * on arbitrary entries. The input is split at '\n' into name, value, name, value, ... (a
 * last name without a value is dropped, as a pair with a missing member would be); each
 * piece gets its own exact-size allocation so ASan sees any read past it. An accepted
 * result must be one the gateway can take: a known status, instruction_id >= 1, amounts in
 * range, NUL-terminated onward banks and accounts of at least one character, FUNDS_MOVED
 * with onward accounts, a reason of at most RS_REASON_MAX bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "result_parse.h"

#define PIECES_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *piece[PIECES_MAX];
    size_t plen[PIECES_MAX], np = 0, pos = 0;
    while (pos < size && np < PIECES_MAX) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : size - pos;
        piece[np] = malloc(n ? n : 1);
        if (!piece[np]) abort();
        memcpy(piece[np], data + pos, n);
        plen[np++] = n;
        pos += n + (nl ? 1 : 0);
    }
    rs_field f[PIECES_MAX / 2];
    size_t nf = np / 2;
    for (size_t i = 0; i < nf; i++) f[i] = (rs_field){piece[2 * i], plen[2 * i], piece[2 * i + 1], plen[2 * i + 1]};

    sg_result r;
    sg_onward onward[SG_ONWARD_MAX];
    char reason[RS_REASON_MAX + 1], why[96];
    memset(why, 0x55, sizeof why);
    memset(onward, 0x55, sizeof onward);
    bool ok = rs_parse_result(f, nf, &r, onward, reason, why, sizeof why);
    if (ok) {
        if (r.instruction_id < 1 || r.instruction_id > INT64_MAX) abort();
        if (r.status < SG_RESULT_CONFIRMED || r.status > SG_RESULT_FUNDS_MOVED) abort();
        if (r.frozen_minor < 0 || r.frozen_minor > 100000000000000000LL) abort();
        if (r.reason != reason || strlen(reason) > RS_REASON_MAX) abort();
        if (r.onward != onward || r.onward_count > SG_ONWARD_MAX) abort();
        if (r.status == SG_RESULT_FUNDS_MOVED && r.onward_count == 0) abort();
        for (uint32_t i = 0; i < r.onward_count; i++) {
            const sg_onward *o = &onward[i];
            size_t bl = strnlen(o->bank, sizeof o->bank), al = strnlen(o->account, sizeof o->account);
            if (bl == sizeof o->bank || al == sizeof o->account) abort(); /* not terminated */
            if (o->amount_minor < 0 || o->amount_minor > 100000000000000000LL) abort();
        }
    } else if (!memchr(why, 0, sizeof why)) {
        abort();
    }
    /* Without room for a reason why, the verdict is the same. */
    sg_result r2;
    if (rs_parse_result(f, nf, &r2, onward, reason, NULL, 0) != ok) abort();
    if (ok && (r2.instruction_id != r.instruction_id || r2.status != r.status || r2.onward_count != r.onward_count))
        abort();
    for (size_t i = 0; i < np; i++) free(piece[i]);
    return 0;
}
