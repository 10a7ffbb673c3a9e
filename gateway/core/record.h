/*
 * record: the payload of journal records - what an order-changing event says, encoded as
 * tagged fields (u8 tag, u16 length, bytes) so that new fields can be added without breaking
 * old journals. One struct (order_rec) describes every record type; unused fields stay zero.
 * Strings in a decoded record point into the payload (not NUL-terminated; use .len).
 */
#ifndef SG_RECORD_H
#define SG_RECORD_H
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <stopgate/plugin.h>

#include "limits.h"

typedef enum rec_type {
    REC_ORDER = 1,   /* a new order (agent's or cascade child) was accepted */
    REC_MERGE = 2,   /* a request was attached to a live order */
    REC_STATE = 3,   /* an order changed state (SENT, bank answer, OVERDUE, EXPIRED, ...) */
    REC_RELEASE = 4, /* RELEASE request */
    REC_EXTEND = 5,  /* EXTEND request */
    REC_CONFIRM = 6, /* supervisor CONFIRM of a HELD order */
    /* Fraud lists (docs/lists.md). A LIST.LOAD is BEGIN, ROWS..., COMMIT; replay applies the
     * rows only when it reaches the COMMIT, so a load cut by a crash changes nothing. */
    REC_LIST_ADD = 10,
    REC_LIST_DEL = 11,
    REC_LIST_LOAD_BEGIN = 12,
    REC_LIST_LOAD_ROWS = 13,
    REC_LIST_LOAD_COMMIT = 14,
    /* The journal's own close record (JOURNAL_REC_CLOSE, journal_fmt.h): a clean shutdown.
     * Never replayed; named here so `stopctl journal dump` can show it. */
    REC_CLOSE = 0xffff,
} rec_type;

/* One row inside a REC_LIST_LOAD_ROWS blob: u8 bank_len, bank, u8 account_len, account,
 * u8 score, u8 case_len, case. */
#define LIST_ROW_BYTES_MAX (1 + BANK_LEN_MAX + 1 + ACCOUNT_LEN_MAX + 1 + 1 + CASE_LEN_MAX)

typedef struct rec_str {
    const char *p;
    uint32_t len;
} rec_str;

typedef struct order_rec {
    uint16_t type;
    uint8_t kind;  /* order_kind */
    uint8_t state; /* order_state, REC_ORDER (initial) and REC_STATE */
    uint64_t order_no;
    uint64_t parent_no; /* 0 = root */
    uint32_t level;
    uint64_t fingerprint; /* of the request, for idempotency */
    int64_t amount_minor;
    int64_t frozen_minor;
    int64_t ts_ms;
    int64_t expires_at_ms;
    rec_str request_id, bank, account, currency, case_id, reason, note, doc, agent;
    uint32_t onward_count;
    sg_onward onward[SG_ONWARD_MAX];
    /* list records: list name, score, the load they belong to, rows of a ROWS record */
    rec_str list, rows;
    uint8_t score;
    uint64_t load_id;
    uint32_t row_count;
} order_rec;

/* Worst-case payload sizes, from the limits (each field is u8 tag, u16 length, bytes). */
#define RECORD_FIELD_BYTES(n) (3 + (n))
#define RECORD_ONWARD_BYTES_MAX                                                                    \
    RECORD_FIELD_BYTES(8 + 1 + (sizeof(((sg_onward *)0)->bank) - 1) +                              \
                       (sizeof(((sg_onward *)0)->account) - 1))
/* A bank's answer (REC_STATE from engine_on_result): state, order_no, frozen, ts, reason and
 * SG_ONWARD_MAX onward transfers of the longest bank and account a plugin can hand over. */
#define RECORD_RESULT_PAYLOAD_MAX                                                                  \
    (RECORD_FIELD_BYTES(1) + 3 * RECORD_FIELD_BYTES(8) + RECORD_FIELD_BYTES(REASON_LEN_MAX) +      \
     SG_ONWARD_MAX * RECORD_ONWARD_BYTES_MAX)

/* Encode into out[cap]. Returns bytes written, or -1 if it does not fit (a bug: callers
 * size out as JOURNAL_RECORD_BYTES_MAX and inputs are length-checked). */
int record_encode(const order_rec *r, uint8_t *out, size_t cap);
/* Decode. 0, or -1 for a malformed payload (unknown tags are skipped for forward
 * compatibility; a field with a wrong size is malformed). */
int record_decode(uint16_t type, const uint8_t *p, size_t len, order_rec *r);
const char *record_type_name(uint16_t type);
/* Every field equal (strings by content): what a decode of an encode must give back. The
 * journal writer asserts it before a record goes to disk (pair assertion with replay). */
bool record_equal(const order_rec *a, const order_rec *b);

typedef struct list_row {
    rec_str bank, account, case_id;
    uint8_t score;
} list_row;
/* Append a row to a rows blob of cap bytes at *len. -1 when it does not fit. */
int record_row_put(uint8_t *blob, size_t cap, size_t *len, const list_row *row);
/* Next row of a blob at *off. 1 and row filled, 0 at the end, -1 malformed. */
int record_row_next(rec_str blob, size_t *off, list_row *row);
#endif
