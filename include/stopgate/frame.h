/*
 * stopgate binary UDP frames (SPEC §4.3, docs/protocol.md): the fast path for screening
 * and burst stops. One request datagram holds a header, up to SG_FRAME_MSGS_MAX messages and
 * a MAC; the gateway answers with exactly one reply datagram of the same shape. The codec in
 * libstopgate is the only one: stopgated (kernel UDP and DPDK), stopbench and the tests all
 * use it.
 *
 * Datagram, little-endian:
 *   header (32 bytes) | messages | mac (16 bytes)
 * header: magic "SG", version, flags, agent_id, seq, epoch, count, length, status, reserved.
 * mac = keyed BLAKE2b-128 over header and messages, key = sg_frame_key(agent's key). The
 * agent's key is Argon2id(secret, salt) - what `stopctl hash-secret` stores - so the gateway
 * needs nothing beyond secret_hash; a client gets salt and Argon2 limits from a HELLO.
 */
#ifndef STOPGATE_FRAME_H
#define STOPGATE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SG_FRAME_MAGIC 0x4753u /* "SG" */
#define SG_FRAME_VERSION 1u
#define SG_FRAME_HDR_BYTES 32u
#define SG_FRAME_MAC_BYTES 16u
#define SG_FRAME_BYTES_MAX 8192u /* whole datagram, request or reply */
#define SG_FRAME_MSGS_MAX 256u   /* messages per datagram */
#define SG_FRAME_KEY_BYTES 32u
#define SG_FRAME_REPLAY_WINDOW 1024u /* sequence numbers remembered behind the highest */

enum sg_frame_flags { SG_FRAME_REPLY = 1u };

enum sg_msg_type {
    SG_MSG_CHECK = 1, /* bank, account */
    SG_MSG_STOP = 2,  /* request_id, bank, account, case, amount, currency */
    SG_MSG_PING = 3,
    SG_MSG_HELLO = 4, /* unauthenticated: asks for salt, Argon2 limits and the epoch */
};

/* Stable error codes in replies (frame status or per message). */
enum sg_frame_err {
    SG_FE_OK = 0,
    SG_FE_BADACCOUNT = 1,
    SG_FE_BADAMOUNT = 2,
    SG_FE_UNKNOWNBANK = 3,
    SG_FE_IDEMPOTENCY = 4,
    SG_FE_NOPERM = 5,
    SG_FE_SYNTAX = 6,
    SG_FE_TOOBIG = 7,
    SG_FE_BUSY = 8,
    SG_FE_EPOCH = 9, /* frame status: the gateway restarted; HELLO again */
    SG_FE_READONLY = 10, /* STOP on a cluster member that does not lead: ROLE names the leader */
    SG_FE_STALE = 11, /* CHECK on a cluster member behind the cluster log: ask another member */
};

enum sg_verdict_code { SG_V_CLEAR = 0, SG_V_LISTED = 1, SG_V_FROZEN = 2 };
enum sg_stop_status { SG_S_ACCEPTED = 0, SG_S_DUPLICATE = 1, SG_S_MERGED = 2, SG_S_HELD = 3 };

typedef struct sg_frame_hdr {
    uint16_t magic;
    uint8_t version, flags;
    uint32_t agent_id;
    uint64_t seq;
    uint32_t epoch;
    uint16_t count;
    uint16_t length;
    uint16_t status;
    uint16_t reserved0;
    uint32_t reserved1;
} sg_frame_hdr;

/* A decoded request message. Strings point into the datagram (not NUL-terminated). */
typedef struct sg_msg {
    uint8_t type;
    const char *bank, *account, *request_id, *case_id, *currency;
    uint8_t bank_len, account_len, request_id_len, case_len, currency_len;
    int64_t amount;
} sg_msg;

/* A reply message (fixed 24 bytes on the wire). */
typedef struct sg_reply {
    uint8_t type;     /* the request's type | 0x80 */
    uint8_t code;     /* CHECK: sg_verdict_code; STOP: sg_stop_status */
    uint16_t err;     /* sg_frame_err, 0 = ok */
    uint8_t score;    /* CHECK */
    uint32_t order_no; /* FROZEN / STOP: the order ("SG-<n>") */
    uint64_t mask;    /* CHECK: lists; STOP: the journal position (lsn) */
    /* HELLO reply only (in a message of its own, 48 bytes): */
    uint32_t epoch;
    uint64_t opslimit, memlimit;
    uint8_t salt[16];
} sg_reply;

#define SG_REPLY_BYTES 24u
#define SG_HELLO_REPLY_BYTES 48u

/* The MAC key of an agent, from its Argon2id key (32 bytes). */
void sg_frame_key(const uint8_t agent_key[32], uint8_t out[SG_FRAME_KEY_BYTES]);
/* The agent id of an agent name (what a client puts in agent_id): XXH3 of the name, low 32 bits. */
uint32_t sg_frame_agent_id(const char *name);
/* Derive the Argon2id key from a secret and the HELLO answer (slow on purpose). 0 or -1. */
int sg_frame_derive_key(const char *secret, const uint8_t salt[16], uint64_t opslimit, uint64_t memlimit,
                        uint8_t agent_key[32]);

/* --- writing a request (client) or a reply (gateway) --- */
typedef struct sg_frame_writer {
    uint8_t *buf;
    size_t cap, len;
    uint16_t count;
    bool overflow;
} sg_frame_writer;

void sg_frame_begin(sg_frame_writer *w, uint8_t *buf, size_t cap, const sg_frame_hdr *h);
/* Append messages; false when the datagram would exceed cap or SG_FRAME_MSGS_MAX. */
bool sg_frame_add_check(sg_frame_writer *w, const char *bank, const char *account);
bool sg_frame_add_stop(sg_frame_writer *w, const char *request_id, const char *bank, const char *account,
                       const char *case_id, int64_t amount, const char *currency);
bool sg_frame_add_ping(sg_frame_writer *w);
bool sg_frame_add_hello(sg_frame_writer *w);
bool sg_frame_add_reply(sg_frame_writer *w, const sg_reply *r);
/* Close the frame: count, length and MAC (key NULL: a HELLO or its reply, MAC zero).
 * Returns the datagram length, or 0 on overflow. */
size_t sg_frame_finish(sg_frame_writer *w, const uint8_t key[SG_FRAME_KEY_BYTES]);

/* --- reading --- */
/* Check the header and length of a datagram: 0, or a negative errno (-EBADMSG malformed,
 * -EPROTO version). Does not check the MAC. */
int sg_frame_parse_hdr(const uint8_t *dgram, size_t len, sg_frame_hdr *h);
/* Constant-time MAC check. */
bool sg_frame_verify(const uint8_t *dgram, size_t len, const uint8_t key[SG_FRAME_KEY_BYTES]);

typedef struct sg_frame_reader {
    const uint8_t *p, *end;
    uint16_t left;
} sg_frame_reader;

void sg_frame_read_begin(sg_frame_reader *r, const uint8_t *dgram, size_t len, const sg_frame_hdr *h);
/* Next request message: 1 and m filled, 0 at the end, -EBADMSG when malformed (stop there). */
int sg_frame_next_msg(sg_frame_reader *r, sg_msg *m);
/* Next reply message. */
int sg_frame_next_reply(sg_frame_reader *r, sg_reply *out);

/* Replay protection for one agent: a sliding window of SG_FRAME_REPLAY_WINDOW sequence
 * numbers. true (and remembered) when seq is new. */
typedef struct sg_replay {
    uint64_t top;
    uint64_t bits[SG_FRAME_REPLAY_WINDOW / 64];
} sg_replay;
bool sg_replay_check(sg_replay *w, uint64_t seq);

#ifdef __cplusplus
}
#endif
#endif
