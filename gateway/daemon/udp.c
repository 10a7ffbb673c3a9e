/*
 * udp: the kernel UDP fast path (SPEC §4.3, docs/protocol.md "Binary UDP frames").
 * UDP_RECV_SLOTS recvmsg operations stay armed on the gateway's io_uring, so a burst of
 * datagrams is taken in one turn of the loop. Each datagram is authenticated (agent, epoch,
 * MAC, replay window) before anything in it is looked at; CHECKs are answered from the
 * shared-memory table at once; STOPs go through the engine like RESP orders, and the reply
 * datagram waits until every STOP in it is durable (or, when the disk refuses their batch,
 * leaves at once with BUSY for them: udp_on_journal_failed). One reply datagram per request
 * datagram.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sodium.h>
#include <unistd.h>

#include "account.h"
#include "clock.h"
#include "follower.h"
#include "gateway.h"
#include "listener.h"
#include "ring.h"


static const char *const drop_names[UDP_DROP__COUNT] = {
    [UDP_DROP_MALFORMED] = "malformed", [UDP_DROP_UNKNOWN_AGENT] = "unknown_agent",
    [UDP_DROP_BAD_MAC] = "bad_mac",     [UDP_DROP_REPLAY] = "replay",
    [UDP_DROP_NO_BUFFER] = "no_buffer",
};

const char *udp_drop_name(int why) { return why >= 0 && why < UDP_DROP__COUNT ? drop_names[why] : "?"; }

static int cmp_agent(const void *a, const void *b) {
    uint32_t x = ((const udp_agent *)a)->id, y = ((const udp_agent *)b)->id;
    return x < y ? -1 : x > y;
}

/* Agents by frame id; ids are XXH3 of the names, so two names may collide: refused. */
int udp_agents_build(gateway *gw, char *err, size_t errcap) {
    udp_state *u = &gw->udp;
    uint32_t n = gw->cfg.nagents;
    udp_agent *v = calloc(n ? n : 1, sizeof *v);
    if (!v) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        v[i].id = sg_frame_agent_id(gw->cfg.agents[i].name);
        v[i].agent = i;
        sg_frame_key(gw->agent_auth[i].key, v[i].key);
        udp_mac_init(&v[i].mac, v[i].key);
    }
    qsort(v, n, sizeof *v, cmp_agent);
    for (uint32_t i = 1; i < n; i++)
        if (v[i].id == v[i - 1].id) {
            snprintf(err, errcap, "agents %s and %s have the same UDP agent id; rename one",
                     gw->cfg.agents[v[i].agent].name, gw->cfg.agents[v[i - 1].agent].name);
            free(v);
            return -1;
        }
    /* Keep the replay windows of agents that stay (a reload must not reopen them). */
    for (uint32_t i = 0; i < n && u->agents; i++) {
        udp_agent key = {.id = v[i].id};
        udp_agent *old = bsearch(&key, u->agents, u->nagents, sizeof key, cmp_agent);
        if (old) v[i].replay = old->replay;
    }
    free(u->agents);
    u->agents = v;
    u->nagents = n;
    return 0;
}

static void arm_recv(gateway *gw, uint32_t i) {
    udp_slot *s = &gw->udp.rx[i];
    s->iov = (struct iovec){s->buf, sizeof s->buf};
    s->msg = (struct msghdr){.msg_name = &s->peer, .msg_namelen = sizeof s->peer, .msg_iov = &s->iov, .msg_iovlen = 1};
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_recvmsg(sqe, gw->udp.fd, &s->msg, 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_UDP_RECV, 0, i));
}

int udp_init(gateway *gw, char *err, size_t errcap) {
    udp_state *u = &gw->udp;
    u->fd = -1;
    if (!gw->cfg.udp.enabled) return 0;
    u->rx = calloc(UDP_RECV_SLOTS, sizeof *u->rx);
    u->tx = calloc(UDP_SEND_SLOTS, sizeof *u->tx);
    u->tx_free = calloc(UDP_SEND_SLOTS, sizeof *u->tx_free);
    if (!u->rx || !u->tx || !u->tx_free) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < UDP_SEND_SLOTS; i++) u->tx_free[u->ntx_free++] = UDP_SEND_SLOTS - 1 - i;
    if (udp_agents_build(gw, err, errcap) != 0) return -1;
    /* A new epoch per start: frames signed for the previous process are refused, so a
     * restart cannot reopen the replay window. */
    do randombytes_buf(&u->epoch, sizeof u->epoch);
    while (u->epoch == 0);
    u->fd = listener_open(&gw->cfg.udp, SOCK_DGRAM, err, errcap);
    if (u->fd < 0) return -1;
    int sz = 8 << 20;
    setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    for (uint32_t i = 0; i < UDP_RECV_SLOTS; i++) arm_recv(gw, i);
    return 0;
}

void udp_close(gateway *gw) {
    udp_state *u = &gw->udp;
    if (u->fd >= 0) close(u->fd);
    free(u->rx);
    free(u->tx);
    free(u->tx_free);
    free(u->agents);
    memset(u, 0, sizeof *u);
    u->fd = -1;
}

static void send_slot(gateway *gw, uint32_t i) {
    udp_tx_slot *t = &gw->udp.tx[i];
    t->iov = (struct iovec){t->buf, t->len};
    t->msg = (struct msghdr){.msg_name = &t->peer, .msg_namelen = sizeof t->peer, .msg_iov = &t->iov, .msg_iovlen = 1};
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_sendmsg(sqe, gw->udp.fd, &t->msg, 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_UDP_SEND, 0, i));
    t->state = UDP_TX_SENDING;
}

static uint16_t err_code(const char *code) {
    if (!code) return SG_FE_OK;
    if (!strcmp(code, "ERR BADACCOUNT")) return SG_FE_BADACCOUNT;
    if (!strcmp(code, "ERR BADAMOUNT")) return SG_FE_BADAMOUNT;
    if (!strcmp(code, "ERR UNKNOWNBANK")) return SG_FE_UNKNOWNBANK;
    if (!strcmp(code, "ERR IDEMPOTENCY")) return SG_FE_IDEMPOTENCY;
    if (!strcmp(code, "ERR TOOBIG")) return SG_FE_TOOBIG;
    if (!strcmp(code, "ERR BUSY")) return SG_FE_BUSY;
    return SG_FE_SYNTAX;
}

/* SPEC §10: a write on a member that does not lead (SG_FE_READONLY: the client asks ROLE who
 * leads), or on a leader that cannot commit to the cluster log now (SG_FE_BUSY: retry, same
 * request id). */
static bool stop_refused(const gateway *gw, sg_reply *r) {
    const char *code;
    char why[256];
    if (!cluster_write_refused(gw, &code, why, sizeof why)) return false;
    r->err = !strcmp(code, "READONLY") ? SG_FE_READONLY : SG_FE_BUSY;
    return true;
}

/* A read, as RESP CHECK (commands.c read_live): while the journal writes, the order table as
 * it is, the reply held (*lsn) until the account's latest order is durable; while it fails,
 * the durable view (durview.h), at once. */
static void do_check(gateway *gw, const sg_msg *m, sg_reply *r, uint64_t *lsn) {
    char bank[BANK_LEN_MAX + 1], acct[ACCOUNT_LEN_MAX + 1];
    const char *why;
    if (account_bank_normalise(m->bank, m->bank_len, bank, &why) != 0 ||
        account_normalise(m->account, m->account_len, acct, &why) != 0) {
        r->err = SG_FE_BADACCOUNT;
        return;
    }
    if (follower_stale(gw)) { /* RESP says ERR STALE: nothing old is served */
        r->err = SG_FE_STALE;
        return;
    }
    sg_verdict v;
    order tmp;
    bool rlive = gw->j.last_error == 0 && !cluster_failing(gw);
    uint64_t llsn = lists_lookup_read(gw, bank, acct, rlive, &v);
    if (llsn > *lsn) *lsn = llsn;
    const order *latest = rlive ? orders_latest_on_account(&gw->o, bank, acct) : NULL;
    const order *live = rlive ? (latest && order_is_live(latest, gw->now_ms) ? latest : NULL)
                              : durview_live_on_account(&gw->dv, &gw->o, bank, acct, gw->now_ms, &tmp);
    if (latest && latest->last_lsn > *lsn) *lsn = latest->last_lsn;
    gw->m.checks++;
    if (live || v.mask) gw->m.check_hits++;
    r->code = live ? SG_V_FROZEN : v.mask ? SG_V_LISTED : SG_V_CLEAR;
    r->score = v.score;
    r->mask = v.mask;
    r->order_no = live ? live->no : 0;
    /* The auto-stop is a write: it goes by every order taken, durable or not. */
    v.frozen = (v.mask & gw->ls.auto_stop_mask) ? orders_live_on_account(&gw->o, bank, acct, gw->now_ms) != NULL
                                                 : live != NULL;
    engine_auto_stop(gw, bank, acct, &v);
}

/* 0 done (r filled), -EAGAIN journal full. */
static int do_stop(gateway *gw, const cfg_agent *agent, const sg_msg *m, sg_reply *r, uint64_t *lsn) {
    order_req rq = {.kind = KIND_STOP, .agent = agent->name};
    const char *why;
    if (m->request_id_len == 0 || !field_ident_ok(m->request_id, m->request_id_len, REQUEST_ID_LEN_MAX) ||
        m->case_len == 0 || !field_ident_ok(m->case_id, m->case_len, CASE_LEN_MAX)) {
        r->err = SG_FE_SYNTAX;
        return 0;
    }
    if (account_bank_normalise(m->bank, m->bank_len, rq.bank, &why) != 0 ||
        account_normalise(m->account, m->account_len, rq.account, &why) != 0) {
        r->err = SG_FE_BADACCOUNT;
        return 0;
    }
    if (m->amount < 0 || m->amount > AMOUNT_MINOR_MAX) {
        r->err = SG_FE_BADAMOUNT;
        return 0;
    }
    rq.request_id = (rec_str){m->request_id, m->request_id_len};
    rq.case_id = (rec_str){m->case_id, m->case_len};
    rq.amount_minor = m->amount;
    if (m->currency_len) {
        if (field_currency_parse(m->currency, m->currency_len, rq.currency, &why) != 0) {
            r->err = SG_FE_SYNTAX;
            return 0;
        }
        rq.currency_given = true;
    } else {
        memcpy(rq.currency, gw->cfg.currency, sizeof rq.currency);
    }
    engine_answer a;
    if (engine_order(gw, &rq, &a) == -EAGAIN) return -EAGAIN;
    if (a.code) {
        r->err = err_code(a.code);
        return 0;
    }
    static const uint8_t st[] = {[ANS_ACCEPTED] = SG_S_ACCEPTED, [ANS_DUPLICATE] = SG_S_DUPLICATE,
                                 [ANS_MERGED] = SG_S_MERGED, [ANS_HELD] = SG_S_HELD};
    r->code = a.status <= ANS_HELD ? st[a.status] : SG_S_ACCEPTED;
    r->order_no = a.order_no;
    r->mask = a.lsn;
    if (a.lsn > *lsn) *lsn = a.lsn;
    gw->m.answers[a.status < 8 ? a.status : 7]++;
    return 0;
}

static void drop(gateway *gw, int why) { gw->udp.drops[why]++; }

size_t udp_answer(gateway *gw, const cfg_agent *agent, const uint8_t key[SG_FRAME_KEY_BYTES], const uint8_t *dgram,
                  size_t len, const sg_frame_hdr *h, uint32_t epoch, uint8_t *out, size_t cap, uint64_t *lsn,
                  udp_msg_counts *mc) {
    unsigned perms = role_perms(agent->role);
    sg_frame_writer w;
    sg_frame_hdr rh = {.flags = SG_FRAME_REPLY, .agent_id = h->agent_id, .seq = h->seq, .epoch = epoch};
    sg_frame_begin(&w, out, cap, &rh);
    sg_frame_reader rd;
    sg_frame_read_begin(&rd, dgram, len, h);
    sg_msg m;
    int rc;
    while ((rc = sg_frame_next_msg(&rd, &m)) == 1) {
        sg_reply r = {.type = (uint8_t)(m.type | 0x80)};
        switch (m.type) {
        case SG_MSG_CHECK:
            if (!(perms & PERM_CHECK)) r.err = SG_FE_NOPERM;
            else do_check(gw, &m, &r, lsn);
            mc->checks++;
            break;
        case SG_MSG_STOP:
            if (!(perms & PERM_ORDER)) r.err = SG_FE_NOPERM;
            else if (gw->phase == PHASE_DRAINING) r.err = SG_FE_BUSY;
            else if (stop_refused(gw, &r)) {
            } else if (do_stop(gw, agent, &m, &r, lsn) == -EAGAIN) r.err = SG_FE_BUSY; /* client retries, same id */
            mc->stops++;
            break;
        case SG_MSG_PING: break;
        default: r.err = SG_FE_SYNTAX; break;
        }
        if (r.err) mc->msg_errors++;
        sg_frame_add_reply(&w, &r);
    }
    if (rc < 0) {
        /* A message that lies about its lengths: the rest of the frame cannot be trusted.
         * The answer says so, with the replies of the messages before it. */
        mc->malformed_msgs++;
        uint16_t st = SG_FE_SYNTAX;
        if (!w.overflow) memcpy(out + 24, &st, sizeof st); /* the header's status field */
    }
    return sg_frame_finish(&w, key);
}

/* A HELLO for an agent id nobody has is answered like one for a real agent, with a fake salt
 * that stays the same for that id (login.h): HELLO does not tell which names exist. */
static void hello_unknown(gateway *gw, const udp_slot *s, const sg_frame_hdr *h) {
    udp_state *u = &gw->udp;
    uint32_t ti = u->tx_free[--u->ntx_free];
    udp_tx_slot *t = &u->tx[ti];
    t->peer = s->peer;
    t->lsn = 0;
    uint64_t ops, mem;
    uint8_t salt[AUTH_SALT_BYTES];
    login_fake_udp_hello(gw, h->agent_id, &ops, &mem, salt);
    t->len = (uint32_t)udp_hello_reply(t->buf, sizeof t->buf, h, u->epoch, ops, mem, salt);
    u->hellos++;
    send_slot(gw, ti);
}

static void handle(gateway *gw, udp_slot *s, size_t len) {
    udp_state *u = &gw->udp;
    u->rx_frames++;
    sg_frame_hdr h;
    if (udp_frame_header(s->buf, len, &h) != 0) {
        drop(gw, UDP_DROP_MALFORMED);
        return;
    }
    udp_agent *ag = udp_agent_find(u->agents, u->nagents, h.agent_id);
    bool hello = !ag && udp_frame_is_hello(s->buf, len, &h);
    if (!ag && !hello) {
        drop(gw, UDP_DROP_UNKNOWN_AGENT);
        return;
    }
    if (u->ntx_free == 0) {
        drop(gw, UDP_DROP_NO_BUFFER);
        return;
    }
    if (hello) {
        hello_unknown(gw, s, &h);
        return;
    }
    int auth = udp_frame_auth(s->buf, len, &h, &ag->mac, &ag->replay, u->epoch);
    if (auth == UDP_AUTH_BAD_MAC || auth == UDP_AUTH_REPLAY) {
        drop(gw, auth == UDP_AUTH_BAD_MAC ? UDP_DROP_BAD_MAC : UDP_DROP_REPLAY);
        return;
    }
    uint32_t ti = u->tx_free[--u->ntx_free];
    assert(ti < UDP_SEND_SLOTS);
    udp_tx_slot *t = &u->tx[ti];
    assert(t->state == UDP_TX_FREE);
    t->peer = s->peer;
    t->lsn = 0;
    if (auth == UDP_AUTH_HELLO) {
        const auth_hash *ah = &gw->agent_auth[ag->agent];
        t->len = (uint32_t)udp_hello_reply(t->buf, sizeof t->buf, &h, u->epoch, ah->opslimit, ah->memlimit, ah->salt);
        u->hellos++;
        send_slot(gw, ti);
        return;
    }
    if (auth == UDP_AUTH_EPOCH) {
        /* Signed for an earlier run of the gateway: tell the client to HELLO again. */
        t->len = (uint32_t)udp_status_reply(t->buf, sizeof t->buf, &h, u->epoch, SG_FE_EPOCH, ag->key);
        u->epoch_refused++;
        send_slot(gw, ti);
        return;
    }
    uint64_t lsn = 0;
    t->len = (uint32_t)udp_answer(gw, &gw->cfg.agents[ag->agent], ag->key, s->buf, len, &h, u->epoch, t->buf,
                                  sizeof t->buf, &lsn, &u->mc);
    if (t->len == 0) { /* cannot happen: a reply is never larger than its request allows */
        u->tx_free[u->ntx_free++] = ti;
        drop(gw, UDP_DROP_NO_BUFFER);
        return;
    }
    assert(t->len <= sizeof t->buf && lsn <= journal_last_lsn(&gw->j));
    if (lsn > commit_acked_lsn(&gw->commit)) {
        /* An order is answered only once durable: park the datagram until its fsync. */
        t->lsn = lsn;
        t->state = UDP_TX_WAITING;
        t->next = 0;
        if (u->wait_tail) u->tx[u->wait_tail - 1].next = ti + 1;
        else u->wait_head = ti + 1;
        u->wait_tail = ti + 1;
        return;
    }
    send_slot(gw, ti);
}

void udp_on_durable(gateway *gw, uint64_t durable_lsn) {
    udp_state *u = &gw->udp;
    /* Replies wait in lsn order (lsns only grow), so the head is always the oldest. */
    while (u->wait_head && u->tx[u->wait_head - 1].lsn <= durable_lsn) {
        uint32_t ti = u->wait_head - 1;
        assert(u->tx[ti].state == UDP_TX_WAITING);
        u->wait_head = u->tx[ti].next;
        if (!u->wait_head) u->wait_tail = 0;
        send_slot(gw, ti);
    }
}

void udp_on_journal_failed(gateway *gw) {
    udp_state *u = &gw->udp;
    while (u->wait_head) {
        uint32_t ti = u->wait_head - 1;
        udp_tx_slot *t = &u->tx[ti];
        assert(t->state == UDP_TX_WAITING && t->lsn > gw->j.durable_lsn);
        u->wait_head = t->next;
        if (!u->wait_head) u->wait_tail = 0;
        sg_frame_hdr h;
        const udp_agent *ag = sg_frame_parse_hdr(t->buf, t->len, &h) == 0
                                  ? udp_agent_find(u->agents, u->nagents, h.agent_id) : NULL;
        if (!ag) { /* the agent was removed by a reload meanwhile: no key to sign with */
            t->state = UDP_TX_FREE;
            u->tx_free[u->ntx_free++] = ti;
            drop(gw, UDP_DROP_UNKNOWN_AGENT);
            continue;
        }
        u->mc.msg_errors += udp_reply_fail_pending(t->buf, t->len, commit_acked_lsn(&gw->commit), ag->key);
        send_slot(gw, ti);
    }
}

void udp_on_cqe(gateway *gw, unsigned kind, uint32_t idx, int res) {
    udp_state *u = &gw->udp;
    if (kind == UD_UDP_RECV) {
        if (res >= 0) handle(gw, &u->rx[idx], (size_t)res);
        else if (res != -ECANCELED) u->rx_errors++;
        if (u->fd >= 0 && gw->phase != PHASE_DRAINING) arm_recv(gw, idx);
        return;
    }
    /* UD_UDP_SEND */
    udp_tx_slot *t = &u->tx[idx];
    if (res < 0) u->tx_errors++;
    else u->tx_frames++;
    t->state = UDP_TX_FREE;
    u->tx_free[u->ntx_free++] = idx;
}

bool udp_drained(const gateway *gw) { return gw->udp.wait_head == 0; }
