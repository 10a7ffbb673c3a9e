/*
 * tls: OpenSSL on memory (BIO pair) buffers for the io_uring loop; the contract is in tls.h.
 *
 * Why a BIO pair and not two BIO_s_mem: a pair's buffers are allocated once, at a fixed
 * size, and BIO_nwrite0()/BIO_nread0() hand out pointers into them, so io_uring receives into
 * and sends out of them directly (no copy, no growth, no malloc per request), and a full out
 * buffer is back-pressure (SSL_write takes less) instead of unbounded growth.
 */
#include "tls.h"

#include <assert.h>
/* OpenSSL's err.h uses INT_MAX, but <limits.h> here finds gateway/core/limits.h (it is on the
 * include path), so the C library's is never read. */
#ifndef INT_MAX
#define INT_MAX __INT_MAX__
#endif
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_conn {
    SSL *ssl;
    BIO *net; /* our end of the pair; the SSL holds the other */
    int64_t accepted_ms;
    bool done;     /* handshake finished */
    bool failed;   /* a fatal error: never call SSL_shutdown */
    bool shut;     /* close_notify queued */
    bool stalled;  /* SSL stopped reading to write (out buffer full): resume once some is sent */
    char err[160]; /* why it failed, for the log */
};

/* The first error OpenSSL queued, in words; clears the queue so the next one is ours. */
static void ossl_reason(char *out, size_t cap) {
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, out, cap);
    else snprintf(out, cap, "unknown error");
    ERR_clear_error();
}

static int cfg_fail(char *err, size_t errcap, const config *cfg, int line, const char *key, const char *path,
                    const char *what) {
    char why[256];
    ossl_reason(why, sizeof why);
    snprintf(err, errcap, "%s:%d: %s %s: %s (%s)", cfg->path[0] ? cfg->path : "(defaults)", line, key, path, what,
             why);
    return -1;
}

/* The certificate chain and the key it must match. */
static int load_pair(SSL_CTX *ctx, const config *cfg, char *err, size_t errcap) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        return cfg_fail(err, errcap, cfg, cfg->tls_cert_line, "tls_cert", cfg->tls_cert,
                        "cannot be loaded as a PEM certificate");
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL matches the key against the certificate while loading it. */
        unsigned long e = ERR_peek_error();
        bool mismatch = ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
        return cfg_fail(err, errcap, cfg, cfg->tls_key_line, "tls_key", cfg->tls_key,
                        mismatch ? "does not match tls_cert" : "cannot be loaded as a PEM private key");
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
        return cfg_fail(err, errcap, cfg, cfg->tls_key_line, "tls_key", cfg->tls_key, "does not match tls_cert");
    return 0;
}

/* tls_ca: the CAs whose client certificates are accepted; a client without one is refused. */
static int load_ca(SSL_CTX *ctx, const config *cfg, char *err, size_t errcap) {
    if (!cfg->tls_ca[0]) return 0;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca);
    if (!names || SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
        if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
        return cfg_fail(err, errcap, cfg, cfg->tls_ca_line, "tls_ca", cfg->tls_ca,
                        "cannot be loaded as PEM CA certificates");
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* the context owns names now */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

static int make_ctx(tls_server *t, const config *cfg, bool with_ca, char *err, size_t errcap);

int tls_server_init(tls_server *t, const config *cfg, char *err, size_t errcap) {
    memset(t, 0, sizeof *t);
    if (!cfg->tls_listen.enabled) return 0;
    return make_ctx(t, cfg, true, err, errcap);
}

int tls_server_init_console(tls_server *t, const config *cfg, char *err, size_t errcap) {
    memset(t, 0, sizeof *t);
    if (!cfg->tls_cert[0]) return 0;
    return make_ctx(t, cfg, false, err, errcap);
}

static int make_ctx(tls_server *t, const config *cfg, bool with_ca, char *err, size_t errcap) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        char why[256];
        ossl_reason(why, sizeof why);
        snprintf(err, errcap, "TLS: cannot create a context: %s", why);
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Renegotiation would let a client make the loop redo handshakes at will. Tickets: no
     * client of ours resumes, and each would cost an encryption per handshake. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx, 0);
    /* PARTIAL_WRITE: SSL_write takes what fits in the out buffer. MOVING_WRITE_BUFFER: the
     * client's output buffer may move (grow) between a WANT_WRITE and its retry. Record
     * buffers are kept (no RELEASE_BUFFERS): releasing them would malloc per request. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (load_pair(ctx, cfg, err, errcap) != 0 || (with_ca && load_ca(ctx, cfg, err, errcap) != 0)) {
        SSL_CTX_free(ctx);
        return -1;
    }
    t->ctx = ctx;
    return 0;
}

void tls_server_free(tls_server *t) {
    if (t->ctx) SSL_CTX_free(t->ctx);
    t->ctx = NULL;
}

tls_conn *tls_conn_new(tls_server *t, int64_t now_ms) {
    assert(t->ctx);
    tls_conn *tc = calloc(1, sizeof *tc);
    if (!tc) return NULL;
    BIO *inner = NULL;
    tc->ssl = SSL_new(t->ctx);
    /* bio1 (the SSL's) buffers what SSL writes: ciphertext out; bio2 (ours) what we write:
     * ciphertext in. */
    if (!tc->ssl || BIO_new_bio_pair(&inner, TLS_OUT_BYTES, &tc->net, TLS_IN_BYTES) != 1) {
        if (tc->ssl) SSL_free(tc->ssl);
        free(tc);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_bio(tc->ssl, inner, inner); /* the SSL owns inner */
    SSL_set_accept_state(tc->ssl);
    tc->accepted_ms = now_ms;
    t->clients++;
    t->handshaking++;
    return tc;
}

void tls_conn_free(tls_server *t, tls_conn *tc) {
    if (!tc) return;
    assert(t->clients > 0);
    t->clients--;
    if (!tc->done) t->handshaking--;
    SSL_free(tc->ssl);
    BIO_free(tc->net);
    free(tc);
}

size_t tls_recv_room(tls_conn *tc, uint8_t **p) {
    char *w;
    int n = BIO_nwrite0(tc->net, &w);
    if (n <= 0) return 0;
    *p = (uint8_t *)w;
    return (size_t)n;
}

/* SSL said no: TLS_OK when it only wants more input (or room to write), else the end. */
static int ssl_outcome(tls_conn *tc, int rc) {
    int e = SSL_get_error(tc->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) return TLS_OK;
    if (e == SSL_ERROR_WANT_WRITE) {
        tc->stalled = true;
        return TLS_OK;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return TLS_CLOSED;
    tc->failed = true;
    if (e == SSL_ERROR_SSL) ossl_reason(tc->err, sizeof tc->err);
    else snprintf(tc->err, sizeof tc->err, "TLS error %d", e);
    ERR_clear_error();
    return TLS_FAILED;
}

static int handshake(tls_server *t, tls_conn *tc) {
    int rc = SSL_do_handshake(tc->ssl);
    if (rc == 1) {
        tc->done = true;
        t->handshaking--;
        t->handshakes++;
        return TLS_OK;
    }
    int st = ssl_outcome(tc, rc);
    if (st != TLS_OK) t->handshake_failures++;
    return st;
}

/* Every complete record into in: a record's worth of room per SSL_read (TLS_PLAIN_CHUNK),
 * or what is left under in's cap (a smaller cap, e.g. before AUTH, is honoured byte for
 * byte: TLS_TOOBIG only when plaintext is still waiting and in is full). */
static int decrypt(tls_conn *tc, buf *in) {
    for (;;) {
        /* Ask only for what the cap allows: a refused reserve sticks (buf.h). At the cap, the
         * rest waits in OpenSSL as it would in the socket on the plain port (a pipeline behind
         * an AUTH being verified): the caller decides when it is too big (tls_plain_waiting). */
        size_t left = in->cap_max > in->len ? in->cap_max - in->len : 0;
        size_t want = left < TLS_PLAIN_CHUNK ? left : TLS_PLAIN_CHUNK;
        if (want == 0) return TLS_OK;
        if (buf_reserve(in, want) != 0) return TLS_TOOBIG;
        size_t room = in->cap - in->len;
        int n = SSL_read(tc->ssl, in->data + in->len, room > INT32_MAX ? INT32_MAX : (int)room);
        if (n <= 0) return ssl_outcome(tc, n);
        in->len += (size_t)n;
    }
}

int tls_on_recv(tls_server *t, tls_conn *tc, size_t n, buf *in) {
    if (n > 0) {
        char *w;
        int took = BIO_nwrite(tc->net, &w, (int)n); /* commits what the kernel wrote there */
        assert(took == (int)n);
        (void)took;
    }
    tc->stalled = false;
    if (tc->failed) return TLS_FAILED;
    if (!tc->done) {
        int st = handshake(t, tc);
        if (st != TLS_OK || !tc->done) return st;
    }
    return decrypt(tc, in);
}

long tls_encrypt(tls_conn *tc, const uint8_t *p, size_t len) {
    if (!tc->done || tc->failed || tc->shut || len == 0) return 0;
    size_t taken = 0;
    while (taken < len) {
        size_t want = len - taken;
        int n = SSL_write(tc->ssl, p + taken, want > INT32_MAX ? INT32_MAX : (int)want);
        if (n <= 0) {
            if (ssl_outcome(tc, n) != TLS_OK) return -1;
            break; /* the out buffer is full: more once some of it is sent */
        }
        taken += (size_t)n;
    }
    return (long)taken;
}

size_t tls_send_data(tls_conn *tc, const uint8_t **p) {
    char *r;
    int n = BIO_nread0(tc->net, &r);
    if (n <= 0) return 0;
    *p = (const uint8_t *)r;
    return (size_t)n;
}

void tls_on_sent(tls_conn *tc, size_t n) {
    char *r;
    int took = BIO_nread(tc->net, &r, (int)n);
    assert(took == (int)n);
    (void)took;
}

void tls_shutdown(tls_conn *tc) {
    if (!tc->done || tc->failed || tc->shut) return;
    tc->shut = true;
    SSL_shutdown(tc->ssl); /* queues close_notify; we do not wait for the peer's */
    ERR_clear_error();
}

bool tls_handshake_done(const tls_conn *tc) { return tc->done; }

bool tls_stalled(const tls_conn *tc) { return tc->stalled; }

bool tls_plain_waiting(const tls_conn *tc) {
    return tc->done && (SSL_pending(tc->ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(tc->ssl)) > 0);
}

bool tls_handshake_overdue(const tls_conn *tc, int64_t now_ms) {
    return !tc->done && now_ms - tc->accepted_ms > TLS_HANDSHAKE_MS_MAX;
}

const char *tls_conn_error(const tls_conn *tc) { return tc->err; }
