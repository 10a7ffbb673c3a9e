/*
 * login: AUTH off the loop and admission per client address (contract in login.h).
 */
#include "login.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "gateway.h"
#include "ring.h"

static void arm_efd(gateway *gw) {
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_read(sqe, gw->aq.efd, &gw->login.efd_val, sizeof gw->login.efd_val, 0);
    io_uring_sqe_set_data64(sqe, ud_make(UD_AUTH, 0, 0));
}

int login_init(gateway *gw, char *err, size_t errcap) {
    const config *cf = &gw->cfg;
    admit_cfg ac = {.conns_max = cf->max_clients_per_address,
                    .fail_max = cf->auth_fail_limit,
                    .fail_window_ms = cf->auth_fail_window_s * 1000u};
    if (admit_init(&gw->adm, cf->max_clients, ac) != 0) {
        snprintf(err, errcap, "out of memory for the admission table");
        return -1;
    }
    if (authq_init(&gw->aq, err, errcap) != 0) return -1;
    int rc = authq_sched_loop(); /* on the loop's thread: its wakeups preempt the KDF workers */
    if (rc != 0) LOGW(gw, "auth: short scheduler slices for the event loop refused (%s); ignored", strerror(-rc));
    login_agents_changed(gw);
    arm_efd(gw);
    return 0;
}

void login_close(gateway *gw) {
    authq_stop(&gw->aq);
    admit_free(&gw->adm);
}

void login_agents_changed(gateway *gw) {
    auth_pepper(gw->agent_auth, gw->cfg.nagents, gw->login.pepper);
}

static const char *addr_str(uint32_t addr, char out[INET_ADDRSTRLEN]) {
    struct in_addr ia = {.s_addr = addr};
    if (!inet_ntop(AF_INET, &ia, out, INET_ADDRSTRLEN)) snprintf(out, INET_ADDRSTRLEN, "?");
    return out;
}

/* One line per failed AUTH, but at most AUTH_LOG_LINES_PER_S a second: a flood must not
 * flood the log. The next line written says how many were left out. */
static void log_failure(gateway *gw, uint32_t addr, uint16_t port, const char *name,
                        const char *why) {
    login_state *l = &gw->login;
    if (gw->now_ms - l->log_second_ms >= 1000) {
        l->log_second_ms = gw->now_ms;
        l->log_lines = 0;
    }
    if (l->log_lines >= AUTH_LOG_LINES_PER_S) {
        l->log_suppressed++;
        return;
    }
    l->log_lines++;
    char a[INET_ADDRSTRLEN];
    if (l->log_suppressed)
        LOGW(gw, "auth failed for agent '%s' from %s:%u: %s (%llu similar lines suppressed)", name,
             addr_str(addr, a), port, why, (unsigned long long)l->log_suppressed);
    else
        LOGW(gw, "auth failed for agent '%s' from %s:%u: %s", name, addr_str(addr, a), port, why);
    l->log_suppressed = 0;
}

/* Printable agent name for the log: at most AGENT_LEN_MAX bytes, anything odd replaced. */
static void name_copy(char out[AGENT_LEN_MAX + 1], const char *p, size_t len) {
    if (len > AGENT_LEN_MAX) len = AGENT_LEN_MAX;
    for (size_t i = 0; i < len; i++)
        out[i] = (p[i] > 32 && p[i] < 127 && p[i] != '\'') ? p[i] : '?';
    out[len] = 0;
}

static void authenticated(gateway *gw, client *c, const cfg_agent *a) {
    c->agent = a;
    c->perms = role_perms(a->role);
    login_admitted(gw, c);
}

int login_start(gateway *gw, client *c, const char *name, size_t name_len, const char *secret,
                size_t secret_len) {
    assert(!c->auth_pending);
    char shown[AGENT_LEN_MAX + 1];
    name_copy(shown, name, name_len);
    if (admit_auth_limited(&gw->adm, c->addr, gw->now_ms)) {
        gw->login.st.failures++;
        gw->login.st.limited++;
        log_failure(gw, c->addr, c->port, shown,
                    "too many failures from this address, refused without checking");
        return LOGIN_FAIL;
    }
    const cfg_agent *a = config_agent(&gw->cfg, name, name_len);
    const auth_hash *h = a ? &gw->agent_auth[a - gw->cfg.agents] : NULL;
    /* Digested for unknown names too (against an empty cache), so both paths cost the same. */
    static const auth_hash nobody; /* cached = false: never a hit */
    if (auth_cache_hit(h ? h : &nobody, secret, secret_len)) {
        authenticated(gw, c, a);
        return LOGIN_OK;
    }
    authq_job *j = authq_get(&gw->aq);
    if (!j) {
        gw->login.st.busy++;
        return LOGIN_BUSY;
    }
    j->client_idx = c->idx;
    j->client_gen = c->gen;
    j->addr = c->addr;
    j->fake = !a || secret_len == 0 || secret_len > SECRET_LEN_MAX;
    if (a)
        j->h = *h;
    else
        auth_fake_hash(gw->login.pepper, name, name_len, &j->h);
    j->h.cached = false;
    memcpy(j->name, shown, sizeof j->name);
    /* A secret over the limit is refused whatever it is; the KDF still runs on its prefix. */
    j->secret_len = (uint32_t)(secret_len > SECRET_LEN_MAX ? SECRET_LEN_MAX : secret_len);
    memcpy(j->secret, secret, j->secret_len);
    if (j->secret_len == 0) j->secret[j->secret_len++] = 0; /* the KDF refuses nothing: same work */
    admit_auth_attempt(&gw->adm, c->addr, gw->now_ms);
    authq_submit(&gw->aq, j);
    c->auth_pending = true;
    return LOGIN_PENDING;
}

/* One finished verification: the client (if still there) gets its answer. */
static void finish(gateway *gw, authq_job *j) {
    const cfg_agent *a = j->ok ? config_agent(&gw->cfg, j->name, strlen(j->name)) : NULL;
    /* The agents may have been reloaded while the KDF ran: only the hash it checked counts. */
    if (a) {
        auth_hash *h = &gw->agent_auth[a - gw->cfg.agents];
        if (sodium_memcmp(h->key, j->h.key, sizeof h->key) != 0 ||
            sodium_memcmp(h->salt, j->h.salt, sizeof h->salt) != 0)
            a = NULL;
        else
            auth_remember(h, j->secret, j->secret_len);
    }
    if (a) admit_auth_succeeded(&gw->adm, j->addr);
    client *c = server_client(gw, j->client_idx, j->client_gen);
    if (!a) {
        gw->login.st.failures++;
        log_failure(gw, j->addr, c ? c->port : 0, j->name,
                    c ? "invalid agent or secret" : "invalid agent or secret (client gone)");
    }
    if (!c) return; /* closed while its AUTH was verified */
    assert(c->auth_pending);
    c->auth_pending = false;
    if (a) authenticated(gw, c, a);
    commands_auth_done(gw, c, a != NULL);
    if (login_deadline_passed(gw, c)) {
        /* Its deadline passed while the KDF ran and the AUTH failed: no second chance. */
        gw->login.st.deadline_closed++;
        c->close_after_flush = true;
    }
    server_resume(gw, c);
}

void login_on_cqe(gateway *gw, int res) {
    (void)res; /* the counter's value does not matter: the done queue says what finished */
    authq_job *j;
    while ((j = authq_done(&gw->aq))) {
        finish(gw, j);
        authq_put(&gw->aq, j);
    }
    if (gw->aq.efd >= 0) arm_efd(gw);
}

bool login_conn_open(gateway *gw, uint32_t addr) {
    if (admit_conn_open(&gw->adm, addr)) return true;
    gw->login.st.addr_refused++;
    return false;
}

void login_conn_closed(gateway *gw, client *c) {
    if (c->auth_pending) authq_cancel(&gw->aq, c->idx, c->gen);
    admit_conn_close(&gw->adm, c->addr);
}

void login_admitted(gateway *gw, client *c) {
    (void)gw;
    c->admitted = true;
    c->auth_deadline_ms = 0;
    c->in.cap_max = CLIENT_QUERY_BYTES_MAX; /* the pre-auth cap is lifted */
}

bool login_deadline_passed(gateway *gw, const client *c) {
    return !c->admitted && c->auth_deadline_ms && gw->now_ms >= c->auth_deadline_ms;
}

void login_tick(gateway *gw) {
    admit_sweep(&gw->adm, gw->now_ms);
    login_state *l = &gw->login;
    if (l->log_suppressed && gw->now_ms - l->log_second_ms >= 1000) {
        LOGW(gw,
             "auth failed: %llu more failures not logged one by one (stopgate_auth_failures_total "
             "counts all)",
             (unsigned long long)l->log_suppressed);
        l->log_suppressed = 0;
        l->log_second_ms = gw->now_ms;
        l->log_lines = 1;
    }
}

void login_fake_udp_hello(const gateway *gw, uint32_t agent_id, uint64_t *opslimit,
                          uint64_t *memlimit, uint8_t salt[16]) {
    auth_hash h;
    auth_fake_udp_hash(gw->login.pepper, agent_id, &h);
    *opslimit = h.opslimit;
    *memlimit = h.memlimit;
    memcpy(salt, h.salt, 16);
}
