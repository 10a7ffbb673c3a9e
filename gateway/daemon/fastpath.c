/*
 * fastpath: the checks every UDP frame goes through before any of its messages is looked at
 * (docs/protocol.md "Binary UDP frames"), and the replies that need no message of the frame
 * (HELLO, a frame-level status). Shared by kernel UDP (udp.c), the DPDK lcore (dpdk_path.c)
 * and bench/dpdkbench.c, so both transports judge a datagram with the same code. No gateway
 * state: safe on any thread; the replay window passed in belongs to the caller's thread.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

int udp_frame_header(const uint8_t *d, size_t len, sg_frame_hdr *h) {
    if (sg_frame_parse_hdr(d, len, h) != 0 || (h->flags & SG_FRAME_REPLY)) return -1;
    return 0;
}

static int cmp_agent(const void *a, const void *b) {
    uint32_t x = ((const udp_agent *)a)->id, y = ((const udp_agent *)b)->id;
    return x < y ? -1 : x > y;
}

udp_agent *udp_agent_find(udp_agent *v, uint32_t n, uint32_t id) {
    if (!v || n == 0) return NULL;
    udp_agent key = {.id = id};
    return bsearch(&key, v, n, sizeof key, cmp_agent);
}

void udp_mac_init(udp_mac *m, const uint8_t key[SG_FRAME_KEY_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, SG_FRAME_KEY_BYTES, SG_FRAME_MAC_BYTES);
    memcpy(m->st, &st, sizeof st);
}

static void mac_of(const udp_mac *m, const uint8_t *d, size_t n, uint8_t out[SG_FRAME_MAC_BYTES]) {
    crypto_generichash_state st;
    memcpy(&st, m->st, sizeof st);
    crypto_generichash_update(&st, d, n);
    crypto_generichash_final(&st, out, SG_FRAME_MAC_BYTES);
}

bool udp_mac_verify(const udp_mac *m, const uint8_t *d, size_t len) {
    if (len < SG_FRAME_HDR_BYTES + SG_FRAME_MAC_BYTES) return false;
    uint8_t mac[SG_FRAME_MAC_BYTES];
    mac_of(m, d, len - SG_FRAME_MAC_BYTES, mac);
    return sodium_memcmp(mac, d + len - SG_FRAME_MAC_BYTES, SG_FRAME_MAC_BYTES) == 0;
}

void udp_mac_sign(const udp_mac *m, uint8_t *d, size_t len) {
    mac_of(m, d, len - SG_FRAME_MAC_BYTES, d + len - SG_FRAME_MAC_BYTES);
}

bool udp_frame_is_hello(const uint8_t *d, size_t len, const sg_frame_hdr *h) {
    if (h->count != 1) return false;
    sg_frame_reader rd;
    sg_msg m;
    sg_frame_read_begin(&rd, d, len, h);
    return sg_frame_next_msg(&rd, &m) == 1 && m.type == SG_MSG_HELLO;
}

int udp_frame_auth(const uint8_t *d, size_t len, const sg_frame_hdr *h, const udp_mac *mac, sg_replay *replay,
                   uint32_t epoch) {
    /* HELLO: unauthenticated by nature (the client has no key yet); it learns only what
     * stopctl hash-secret already made public in spirit: salt and Argon2 limits. */
    bool hello = udp_frame_is_hello(d, len, h);
    if (!hello && !udp_mac_verify(mac, d, len)) return UDP_AUTH_BAD_MAC;
    if (hello) return UDP_AUTH_HELLO;
    /* Signed for an earlier run of the gateway (or the other transport): re-HELLO. */
    if (h->epoch != epoch) return UDP_AUTH_EPOCH;
    if (!sg_replay_check(replay, h->seq)) return UDP_AUTH_REPLAY;
    return UDP_AUTH_OK;
}

size_t udp_hello_reply(uint8_t *out, size_t cap, const sg_frame_hdr *h, uint32_t epoch, uint64_t opslimit,
                       uint64_t memlimit, const uint8_t salt[16]) {
    sg_frame_writer w;
    sg_frame_hdr rh = {.flags = SG_FRAME_REPLY, .agent_id = h->agent_id, .seq = h->seq, .epoch = epoch};
    sg_frame_begin(&w, out, cap, &rh);
    sg_reply r = {.type = SG_MSG_HELLO | 0x80, .epoch = epoch, .opslimit = opslimit, .memlimit = memlimit};
    memcpy(r.salt, salt, sizeof r.salt);
    sg_frame_add_reply(&w, &r);
    return sg_frame_finish(&w, NULL);
}

size_t udp_status_reply(uint8_t *out, size_t cap, const sg_frame_hdr *h, uint32_t epoch, uint16_t status,
                        const uint8_t key[SG_FRAME_KEY_BYTES]) {
    sg_frame_writer w;
    sg_frame_hdr rh = {.flags = SG_FRAME_REPLY, .agent_id = h->agent_id, .seq = h->seq, .epoch = epoch,
                       .status = status};
    sg_frame_begin(&w, out, cap, &rh);
    return sg_frame_finish(&w, key);
}

uint32_t udp_reply_fail_pending(uint8_t *d, size_t len, uint64_t durable_lsn, const uint8_t key[SG_FRAME_KEY_BYTES]) {
    sg_frame_hdr h;
    if (sg_frame_parse_hdr(d, len, &h) != 0 || !(h.flags & SG_FRAME_REPLY)) return 0;
    uint8_t out[SG_FRAME_BYTES_MAX]; /* error path only: once per parked reply per disk failure */
    sg_frame_writer w;
    sg_frame_begin(&w, out, sizeof out, &h);
    sg_frame_reader rd;
    sg_frame_read_begin(&rd, d, len, &h);
    sg_reply r;
    uint32_t failed = 0;
    int rc;
    while ((rc = sg_frame_next_reply(&rd, &r)) == 1) {
        /* A STOP whose record is not durable is not acknowledged; a CHECK in the same frame
         * may show such an order (its lsn is not in its reply): both are asked again. */
        bool pending_stop = r.type == (SG_MSG_STOP | 0x80) && !r.err && r.mask > durable_lsn;
        bool check = r.type == (SG_MSG_CHECK | 0x80) && !r.err;
        if (pending_stop || check) {
            r = (sg_reply){.type = r.type, .err = SG_FE_BUSY};
            failed++;
        }
        sg_frame_add_reply(&w, &r);
    }
    if (rc != 0) return 0; /* cannot happen: the gateway wrote this frame */
    size_t n = sg_frame_finish(&w, key);
    assert(n == len); /* replies have a fixed size: the same bytes, other values */
    memcpy(d, out, n);
    return failed;
}
