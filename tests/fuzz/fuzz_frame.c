/*
 * fuzz_frame: the UDP frame codec of libstopgate (gateway/lib/frame.c) on arbitrary
 * datagrams, as the gateway's UDP path and DPDK path read them.
 *
 * Input: u8 flags, then the datagram. flags 1: fix the header's magic, version and length
 * so the message walk is reached; 2: also put a valid MAC (keyed with a fixed key), which
 * sg_frame_verify must then accept. Every message read must lie inside the datagram; a
 * request whose strings hold no NUL is written again with the writer and must read back the
 * same. The same bytes, taken as u16 sequence numbers, drive sg_replay_check against a
 * plain model of the window.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <stopgate/frame.h>

static const uint8_t key[SG_FRAME_KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void inside(const uint8_t *d, size_t len, const char *p, size_t n) {
    if (n == 0) return;
    if ((const uint8_t *)p < d || (size_t)((const uint8_t *)p - d) > len - n) abort();
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) sink ^= (uint8_t)p[i];
    (void)sink;
}

static char *cstr(const char *p, size_t n, bool *ok) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, p, n);
    s[n] = 0;
    if (memchr(s, 0, n)) *ok = false;
    return s;
}

static bool msg_eq(const sg_msg *a, const sg_msg *b) {
    if (a->type != b->type || a->bank_len != b->bank_len || a->account_len != b->account_len ||
        a->request_id_len != b->request_id_len || a->case_len != b->case_len || a->currency_len != b->currency_len ||
        a->amount != b->amount)
        return false;
    return (!a->bank_len || !memcmp(a->bank, b->bank, a->bank_len)) &&
           (!a->account_len || !memcmp(a->account, b->account, a->account_len)) &&
           (!a->request_id_len || !memcmp(a->request_id, b->request_id, a->request_id_len)) &&
           (!a->case_len || !memcmp(a->case_id, b->case_id, a->case_len)) &&
           (!a->currency_len || !memcmp(a->currency, b->currency, a->currency_len));
}

static void messages(const uint8_t *d, size_t len, const sg_frame_hdr *h) {
    static sg_msg msgs[SG_FRAME_MSGS_MAX];
    sg_frame_reader r;
    sg_frame_read_begin(&r, d, len, h);
    int n = 0, rc;
    bool writable = true;
    while ((rc = sg_frame_next_msg(&r, &msgs[n])) == 1) {
        const sg_msg *m = &msgs[n];
        inside(d, len, m->bank, m->bank_len);
        inside(d, len, m->account, m->account_len);
        inside(d, len, m->request_id, m->request_id_len);
        inside(d, len, m->case_id, m->case_len);
        inside(d, len, m->currency, m->currency_len);
        if (++n > (int)SG_FRAME_MSGS_MAX) abort();
    }
    if (rc != 0 && rc != -EBADMSG) abort();
    if (rc != 0) writable = false;

    /* Written again, read back. */
    static uint8_t out[SG_FRAME_BYTES_MAX];
    sg_frame_writer w;
    sg_frame_begin(&w, out, sizeof out, h);
    char *keep[5 * SG_FRAME_MSGS_MAX];
    int nk = 0;
    for (int i = 0; i < n && writable; i++) {
        const sg_msg *m = &msgs[i];
        bool ok = true;
        switch (m->type) {
        case SG_MSG_CHECK: {
            char *b = keep[nk++] = cstr(m->bank, m->bank_len, &ok), *a = keep[nk++] = cstr(m->account, m->account_len, &ok);
            if (ok && !sg_frame_add_check(&w, b, a)) abort();
            break;
        }
        case SG_MSG_STOP: {
            char *q = keep[nk++] = cstr(m->request_id, m->request_id_len, &ok);
            char *b = keep[nk++] = cstr(m->bank, m->bank_len, &ok);
            char *a = keep[nk++] = cstr(m->account, m->account_len, &ok);
            char *c = keep[nk++] = cstr(m->case_id, m->case_len, &ok);
            char *y = keep[nk++] = cstr(m->currency, m->currency_len, &ok);
            if (ok && !sg_frame_add_stop(&w, q, b, a, c, m->amount, y)) abort();
            break;
        }
        case SG_MSG_PING: if (!sg_frame_add_ping(&w)) abort(); break;
        case SG_MSG_HELLO: if (!sg_frame_add_hello(&w)) abort(); break;
        default: abort();
        }
        writable = ok;
    }
    if (writable) {
        size_t olen = sg_frame_finish(&w, key);
        sg_frame_hdr h2;
        if (olen == 0 || sg_frame_parse_hdr(out, olen, &h2) != 0 || !sg_frame_verify(out, olen, key) ||
            h2.count != n || h2.seq != h->seq || h2.agent_id != h->agent_id)
            abort();
        sg_frame_reader r2;
        sg_frame_read_begin(&r2, out, olen, &h2);
        sg_msg m2;
        for (int i = 0; i < n; i++)
            if (sg_frame_next_msg(&r2, &m2) != 1 || !msg_eq(&msgs[i], &m2)) abort();
        if (sg_frame_next_msg(&r2, &m2) != 0) abort();
    }
    for (int i = 0; i < nk; i++) free(keep[i]);

    /* The same datagram read as a reply. */
    sg_frame_read_begin(&r, d, len, h);
    sg_reply rep;
    int k = 0;
    while ((rc = sg_frame_next_reply(&r, &rep)) == 1)
        if (++k > (int)SG_FRAME_MSGS_MAX) abort();
    if (rc != 0 && rc != -EBADMSG) abort();
}

/* sg_replay_check against the plain rule: new when above the top, refused when a window or
 * more below it, else new unless seen. */
static void replay(const uint8_t *data, size_t size) {
    static sg_replay win;
    static uint64_t seen[4096];
    memset(&win, 0, sizeof win);
    size_t nseen = 0;
    uint64_t top = 0, base = 0;
    for (size_t i = 0; i + 1 < size && nseen < sizeof seen / sizeof seen[0]; i += 2) {
        uint16_t v;
        memcpy(&v, data + i, 2);
        if (v == 0xffff) base += 1u << 20; /* a jump far ahead */
        uint64_t seq = base + (v & 0x7ff);
        bool want;
        if (seq == 0) want = false;
        else if (seq > top) want = true;
        else if (top - seq >= SG_FRAME_REPLAY_WINDOW) want = false;
        else {
            want = true;
            for (size_t k = 0; k < nseen && want; k++) want = seen[k] != seq;
        }
        if (sg_replay_check(&win, seq) != want) abort();
        if (want) {
            seen[nseen++] = seq;
            if (seq > top) top = seq;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    size_t len = size - 1;
    uint8_t *d = malloc(len ? len : 1); /* exact size */
    if (!d) abort();
    memcpy(d, data + 1, len);
    if ((flags & 1) && len >= SG_FRAME_HDR_BYTES && len <= SG_FRAME_BYTES_MAX) {
        uint16_t magic = SG_FRAME_MAGIC, l16 = (uint16_t)len;
        memcpy(d, &magic, 2);
        d[2] = SG_FRAME_VERSION;
        memcpy(d + 22, &l16, 2);
        if (len >= SG_FRAME_HDR_BYTES + SG_FRAME_MAC_BYTES && (flags & 2))
            crypto_generichash(d + len - SG_FRAME_MAC_BYTES, SG_FRAME_MAC_BYTES, d, len - SG_FRAME_MAC_BYTES, key,
                               SG_FRAME_KEY_BYTES);
    }
    sg_frame_hdr h;
    int rc = sg_frame_parse_hdr(d, len, &h);
    if (rc == 0) {
        bool mac_ok = sg_frame_verify(d, len, key);
        if ((flags & 3) == 3 && !mac_ok) abort();
        messages(d, len, &h);
    } else if (rc != -EBADMSG && rc != -EPROTO) {
        abort();
    }
    replay(data, size);
    free(d);
    return 0;
}
