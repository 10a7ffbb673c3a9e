/*
 * record: the payload of journal records - what an order-changing event says, encoded as
 * tagged fields (u8 tag, u16 length, bytes) so that new fields can be added without breaking
 * old journals. One struct (order_rec) describes every record type; unused fields stay zero.
 * Strings in a decoded record point into the payload (not NUL-terminated; use .len).
 */
#ifndef SG_RECORD_H
#define SG_RECORD_H
#include <stddef.h>
#include <stdint.h>

#include <stopgate/plugin.h>

typedef enum rec_type {
    REC_ORDER = 1,   /* a new order (agent's or cascade child) was accepted */
    REC_MERGE = 2,   /* a request was attached to a live order */
    REC_STATE = 3,   /* an order changed state (SENT, bank answer, OVERDUE, EXPIRED, ...) */
    REC_RELEASE = 4, /* RELEASE request */
    REC_EXTEND = 5,  /* EXTEND request */
    REC_CONFIRM = 6, /* supervisor CONFIRM of a HELD order */
} rec_type;

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
} order_rec;

/* Encode into out[cap]. Returns bytes written, or -1 if it does not fit (a bug: callers
 * size out as JOURNAL_RECORD_BYTES_MAX and inputs are length-checked). */
int record_encode(const order_rec *r, uint8_t *out, size_t cap);
/* Decode. 0, or -1 for a malformed payload (unknown tags are skipped for forward
 * compatibility; a field with a wrong size is malformed). */
int record_decode(uint16_t type, const uint8_t *p, size_t len, order_rec *r);
const char *record_type_name(uint16_t type);
#endif
