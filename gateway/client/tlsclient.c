/* tlsclient: see tlsclient.h. */
#include "tlsclient.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* OpenSSL's err.h needs INT_MAX, and <limits.h> on our include path is gateway/core/limits.h. */
#ifndef INT_MAX
#define INT_MAX __INT_MAX__
#endif
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

bool tlsc_take_opt(tlsc_opts *o, int val, const char *arg) {
    switch (val) {
    case TLSC_OPT_BASE: o->on = true; return true;
    case TLSC_OPT_BASE + 1: o->cacert = arg; return true;
    case TLSC_OPT_BASE + 2: o->cert = arg; return true;
    case TLSC_OPT_BASE + 3: o->key = arg; return true;
    case TLSC_OPT_BASE + 4: o->sni = arg; return true;
    default: return false;
    }
}

const char *tlsc_opts_check(const tlsc_opts *o) {
    if (!o->on && (o->cacert || o->cert || o->key || o->sni)) return "--cacert, --cert, --key and --sni need --tls";
    if (!o->cert != !o->key) return "--cert and --key go together";
    return NULL;
}

static void reason(char *err, size_t errcap, const char *what, const char *file) {
    unsigned long e = ERR_get_error();
    char why[256];
    if (e) ERR_error_string_n(e, why, sizeof why);
    else snprintf(why, sizeof why, "unknown error");
    ERR_clear_error();
    snprintf(err, errcap, "%s%s%s: %s", what, file ? " " : "", file ? file : "", why);
}

tlsc_ctx *tlsc_ctx_new(const tlsc_opts *o, char *err, size_t errcap) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        reason(err, errcap, "TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = o->cacert ? SSL_CTX_load_verify_locations(ctx, o->cacert, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        reason(err, errcap, "--cacert", o->cacert ? o->cacert : "(system CAs)");
    } else if (o->cert && SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        reason(err, errcap, "--cert", o->cert);
        ok = 0;
    } else if (o->key && SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
        reason(err, errcap, "--key", o->key);
        ok = 0;
    } else if (o->cert && SSL_CTX_check_private_key(ctx) != 1) {
        reason(err, errcap, "--key does not match --cert", NULL);
        ok = 0;
    }
    if (ok != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void tlsc_ctx_free(tlsc_ctx *ctx) { SSL_CTX_free(ctx); }

/* What the certificate must name: --sni, else the host (an IP literal is matched against
 * IP SANs and, as the TLS RFCs require, not sent as SNI). */
static int expect_name(SSL *ssl, const tlsc_opts *o, const char *host) {
    const char *name = o->sni ? o->sni : host;
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (literal) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, name) != 1) return -1;
    return SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

tlsc_ssl *tlsc_connect(tlsc_ctx *ctx, const tlsc_opts *o, int fd, const char *host, char *err, size_t errcap) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1 || expect_name(ssl, o, host) != 0) {
        reason(err, errcap, "TLS setup", NULL);
        SSL_free(ssl);
        return NULL;
    }
    if (SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK)
            snprintf(err, errcap, "TLS handshake: server certificate: %s", X509_verify_cert_error_string(v));
        else
            reason(err, errcap, "TLS handshake", NULL);
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

void tlsc_close(tlsc_ssl *ssl) {
    if (!ssl) return;
    SSL_shutdown(ssl);
    ERR_clear_error();
    SSL_free(ssl);
}
