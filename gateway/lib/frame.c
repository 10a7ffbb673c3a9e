/*
 * frame: the UDP frame codec of libstopgate (include/stopgate/frame.h, docs/protocol.md).
 * Every length is checked against the datagram before it is used: a frame that lies about
 * its length or message count is malformed, never read past.
 */
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <xxhash.h>

#include <stopgate/frame.h>

_Static_assert(SG_FRAME_BYTES_MAX <= UINT16_MAX, "length fits the header field");

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

void sg_frame_key(const uint8_t agent_key[32], uint8_t out[SG_FRAME_KEY_BYTES]) {
    static const char ctx[] = "stopgate-udp-frame-mac-v1";
    crypto_generichash(out, SG_FRAME_KEY_BYTES, (const uint8_t *)ctx, sizeof ctx - 1, agent_key, 32);
}

uint32_t sg_frame_agent_id(const char *name) { return (uint32_t)XXH3_64bits(name, strlen(name)); }

int sg_frame_derive_key(const char *secret, const uint8_t salt[16], uint64_t opslimit, uint64_t memlimit,
                        uint8_t agent_key[32]) {
    if (sodium_init() < 0) return -1;
    if (opslimit < crypto_pwhash_OPSLIMIT_MIN || opslimit > crypto_pwhash_OPSLIMIT_MAX ||
        memlimit < crypto_pwhash_MEMLIMIT_MIN || memlimit > (1ULL << 32))
        return -1;
    return crypto_pwhash(agent_key, 32, secret, strlen(secret), salt, opslimit, (size_t)memlimit,
                         crypto_pwhash_ALG_ARGON2ID13);
}

void sg_frame_begin(sg_frame_writer *w, uint8_t *buf, size_t cap, const sg_frame_hdr *h) {
    w->buf = buf;
    w->cap = cap > SG_FRAME_BYTES_MAX ? SG_FRAME_BYTES_MAX : cap;
    w->count = 0;
    w->overflow = w->cap < SG_FRAME_HDR_BYTES + SG_FRAME_MAC_BYTES;
    w->len = SG_FRAME_HDR_BYTES;
    if (w->overflow) return;
    memset(buf, 0, SG_FRAME_HDR_BYTES);
    put16(buf, SG_FRAME_MAGIC);
    buf[2] = SG_FRAME_VERSION;
    buf[3] = h->flags;
    put32(buf + 4, h->agent_id);
    put64(buf + 8, h->seq);
    put32(buf + 16, h->epoch);
    put16(buf + 24, h->status);
}

static uint8_t *room(sg_frame_writer *w, size_t n) {
    if (w->overflow || w->count == SG_FRAME_MSGS_MAX || w->len + n + SG_FRAME_MAC_BYTES > w->cap) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    w->count++;
    return p;
}

bool sg_frame_add_check(sg_frame_writer *w, const char *bank, const char *account) {
    size_t bl = strlen(bank), al = strlen(account);
    if (bl > 255 || al > 255) return false;
    uint8_t *p = room(w, 3 + bl + al);
    if (!p) return false;
    p[0] = SG_MSG_CHECK;
    p[1] = (uint8_t)bl;
    p[2] = (uint8_t)al;
    memcpy(p + 3, bank, bl);
    memcpy(p + 3 + bl, account, al);
    return true;
}

bool sg_frame_add_stop(sg_frame_writer *w, const char *request_id, const char *bank, const char *account,
                       const char *case_id, int64_t amount, const char *currency) {
    size_t rl = strlen(request_id), bl = strlen(bank), al = strlen(account), cl = strlen(case_id),
           yl = currency ? strlen(currency) : 0;
    if (rl > 255 || bl > 255 || al > 255 || cl > 255 || yl > 255) return false;
    uint8_t *p = room(w, 14 + rl + bl + al + cl + yl);
    if (!p) return false;
    p[0] = SG_MSG_STOP;
    p[1] = (uint8_t)rl;
    p[2] = (uint8_t)bl;
    p[3] = (uint8_t)al;
    p[4] = (uint8_t)cl;
    p[5] = (uint8_t)yl;
    put64(p + 6, (uint64_t)amount);
    uint8_t *s = p + 14;
    memcpy(s, request_id, rl);
    memcpy(s += rl, bank, bl);
    memcpy(s += bl, account, al);
    memcpy(s += al, case_id, cl);
    if (yl) memcpy(s + cl, currency, yl);
    return true;
}

bool sg_frame_add_ping(sg_frame_writer *w) {
    uint8_t *p = room(w, 1);
    if (!p) return false;
    p[0] = SG_MSG_PING;
    return true;
}

bool sg_frame_add_hello(sg_frame_writer *w) {
    uint8_t *p = room(w, 1);
    if (!p) return false;
    p[0] = SG_MSG_HELLO;
    return true;
}

bool sg_frame_add_reply(sg_frame_writer *w, const sg_reply *r) {
    bool hello = r->type == (SG_MSG_HELLO | 0x80);
    uint8_t *p = room(w, hello ? SG_HELLO_REPLY_BYTES : SG_REPLY_BYTES);
    if (!p) return false;
    memset(p, 0, hello ? SG_HELLO_REPLY_BYTES : SG_REPLY_BYTES);
    p[0] = r->type;
    p[1] = r->code;
    put16(p + 2, r->err);
    p[4] = r->score;
    put32(p + 8, r->order_no);
    put64(p + 16, r->mask);
    if (hello) {
        put32(p + 4, r->epoch);
        put64(p + 8, r->opslimit);
        put64(p + 16, r->memlimit);
        memcpy(p + 24, r->salt, 16);
    }
    return true;
}

size_t sg_frame_finish(sg_frame_writer *w, const uint8_t key[SG_FRAME_KEY_BYTES]) {
    if (w->overflow) return 0;
    put16(w->buf + 20, w->count);
    size_t total = w->len + SG_FRAME_MAC_BYTES;
    put16(w->buf + 22, (uint16_t)total);
    uint8_t *mac = w->buf + w->len;
    if (key) crypto_generichash(mac, SG_FRAME_MAC_BYTES, w->buf, w->len, key, SG_FRAME_KEY_BYTES);
    else memset(mac, 0, SG_FRAME_MAC_BYTES);
    return total;
}

int sg_frame_parse_hdr(const uint8_t *d, size_t len, sg_frame_hdr *h) {
    if (len < SG_FRAME_HDR_BYTES + SG_FRAME_MAC_BYTES || len > SG_FRAME_BYTES_MAX) return -EBADMSG;
    h->magic = get16(d);
    if (h->magic != SG_FRAME_MAGIC) return -EBADMSG;
    h->version = d[2];
    if (h->version != SG_FRAME_VERSION) return -EPROTO;
    h->flags = d[3];
    h->agent_id = get32(d + 4);
    h->seq = get64(d + 8);
    h->epoch = get32(d + 16);
    h->count = get16(d + 20);
    h->length = get16(d + 22);
    h->status = get16(d + 24);
    h->reserved0 = get16(d + 26);
    h->reserved1 = get32(d + 28);
    /* The length must be the datagram's: a frame that lies is malformed. */
    if (h->length != len || h->count > SG_FRAME_MSGS_MAX) return -EBADMSG;
    return 0;
}

bool sg_frame_verify(const uint8_t *d, size_t len, const uint8_t key[SG_FRAME_KEY_BYTES]) {
    if (len < SG_FRAME_HDR_BYTES + SG_FRAME_MAC_BYTES) return false;
    uint8_t mac[SG_FRAME_MAC_BYTES];
    crypto_generichash(mac, sizeof mac, d, len - SG_FRAME_MAC_BYTES, key, SG_FRAME_KEY_BYTES);
    return sodium_memcmp(mac, d + len - SG_FRAME_MAC_BYTES, SG_FRAME_MAC_BYTES) == 0;
}

void sg_frame_read_begin(sg_frame_reader *r, const uint8_t *d, size_t len, const sg_frame_hdr *h) {
    r->p = d + SG_FRAME_HDR_BYTES;
    r->end = d + len - SG_FRAME_MAC_BYTES;
    r->left = h->count;
}

int sg_frame_next_msg(sg_frame_reader *r, sg_msg *m) {
    if (r->left == 0) return r->p == r->end ? 0 : -EBADMSG; /* trailing bytes: the count lied */
    size_t avail = (size_t)(r->end - r->p);
    if (avail < 1) return -EBADMSG;
    memset(m, 0, sizeof *m);
    const uint8_t *p = r->p;
    m->type = p[0];
    size_t used;
    switch (m->type) {
    case SG_MSG_CHECK:
        if (avail < 3) return -EBADMSG;
        m->bank_len = p[1];
        m->account_len = p[2];
        used = 3u + m->bank_len + m->account_len;
        if (avail < used) return -EBADMSG;
        m->bank = (const char *)p + 3;
        m->account = m->bank + m->bank_len;
        break;
    case SG_MSG_STOP: {
        if (avail < 14) return -EBADMSG;
        m->request_id_len = p[1];
        m->bank_len = p[2];
        m->account_len = p[3];
        m->case_len = p[4];
        m->currency_len = p[5];
        m->amount = (int64_t)get64(p + 6);
        used = 14u + m->request_id_len + m->bank_len + m->account_len + m->case_len + m->currency_len;
        if (avail < used) return -EBADMSG;
        const char *s = (const char *)p + 14;
        m->request_id = s;
        m->bank = s += m->request_id_len;
        m->account = s += m->bank_len;
        m->case_id = s += m->account_len;
        m->currency = s + m->case_len;
        break;
    }
    case SG_MSG_PING:
    case SG_MSG_HELLO: used = 1; break;
    default: return -EBADMSG;
    }
    r->p += used;
    r->left--;
    return 1;
}

int sg_frame_next_reply(sg_frame_reader *r, sg_reply *out) {
    if (r->left == 0) return r->p == r->end ? 0 : -EBADMSG;
    size_t avail = (size_t)(r->end - r->p);
    if (avail < SG_REPLY_BYTES) return -EBADMSG;
    const uint8_t *p = r->p;
    memset(out, 0, sizeof *out);
    out->type = p[0];
    out->code = p[1];
    out->err = get16(p + 2);
    if (out->type == (SG_MSG_HELLO | 0x80)) {
        if (avail < SG_HELLO_REPLY_BYTES) return -EBADMSG;
        out->epoch = get32(p + 4);
        out->opslimit = get64(p + 8);
        out->memlimit = get64(p + 16);
        memcpy(out->salt, p + 24, 16);
        r->p += SG_HELLO_REPLY_BYTES;
    } else {
        out->score = p[4];
        out->order_no = get32(p + 8);
        out->mask = get64(p + 16);
        r->p += SG_REPLY_BYTES;
    }
    r->left--;
    return 1;
}

bool sg_replay_check(sg_replay *w, uint64_t seq) {
    if (seq == 0) return false;
    const uint64_t win = SG_FRAME_REPLAY_WINDOW;
    if (seq > w->top) {
        uint64_t shift = seq - w->top;
        if (shift >= win) {
            memset(w->bits, 0, sizeof w->bits);
        } else {
            /* Clear the bits of the numbers the window slides past. */
            for (uint64_t s = w->top + 1; s <= seq; s++) w->bits[(s % win) / 64] &= ~(1ULL << (s % 64));
        }
        w->top = seq;
        w->bits[(seq % win) / 64] |= 1ULL << (seq % 64);
        return true;
    }
    if (w->top - seq >= win) return false; /* too old to tell: refuse */
    uint64_t *word = &w->bits[(seq % win) / 64], bit = 1ULL << (seq % 64);
    if (*word & bit) return false;
    *word |= bit;
    return true;
}
