/*
 * tlsclient: the client side of TLS on RESP (SPEC §11) for stopctl and stopbench, which
 * cannot use hiredis for it (Debian's hiredis 0.14 has no SSL). Options like redis-cli's:
 * --tls, --cacert FILE, --cert FILE --key FILE (a client certificate, for a gateway with
 * tls_ca), --sni NAME.
 *
 * The server's certificate is always verified: against --cacert, else the system's CAs, and
 * for the name the client dialled (--sni NAME, else the host: an IP address is checked
 * against the certificate's IP SANs). A failure says why (tlsc_connect's err).
 * Blocking: the handshake runs on a blocking socket bounded by its SO_RCVTIMEO/SO_SNDTIMEO;
 * afterwards the caller may make the socket non-blocking and use SSL_read/SSL_write itself.
 * Not thread-safe per SSL; one SSL_CTX may serve many connections (stopbench's threads).
 */
#ifndef SG_TLSCLIENT_H
#define SG_TLSCLIENT_H
#include <stdbool.h>
#include <getopt.h>
#include <stddef.h>

typedef struct ssl_st tlsc_ssl;
typedef struct ssl_ctx_st tlsc_ctx;

typedef struct tlsc_opts {
    bool on;                      /* --tls */
    const char *cacert;           /* --cacert: PEM CA(s) that signed the gateway's certificate */
    const char *cert, *key;       /* --cert / --key: our certificate for tls_ca gateways */
    const char *sni;              /* --sni: server name to send and to verify */
} tlsc_opts;

/* The TLS options as getopt_long entries (put them in a program's struct option table), and
 * the hand-back of what getopt_long returned for them: true when val was one of them.
 * Shared so stopctl and stopbench read the same flags. */
#define TLSC_OPT_BASE 0x7100
#define TLSC_LONG_OPTIONS                                                                               \
    {"tls", no_argument, NULL, TLSC_OPT_BASE}, {"cacert", required_argument, NULL, TLSC_OPT_BASE + 1},  \
        {"cert", required_argument, NULL, TLSC_OPT_BASE + 2}, {"key", required_argument, NULL, TLSC_OPT_BASE + 3}, \
        {"sni", required_argument, NULL, TLSC_OPT_BASE + 4}
bool tlsc_take_opt(tlsc_opts *o, int val, const char *arg);
/* "--cert needs --key" and the like: NULL when consistent, else the complaint. */
const char *tlsc_opts_check(const tlsc_opts *o);

/* A client context for o; NULL with err. */
tlsc_ctx *tlsc_ctx_new(const tlsc_opts *o, char *err, size_t errcap);
void tlsc_ctx_free(tlsc_ctx *ctx);
/* Handshake over the connected, blocking fd dialled to host. The SSL, or NULL with err. */
tlsc_ssl *tlsc_connect(tlsc_ctx *ctx, const tlsc_opts *o, int fd, const char *host, char *err, size_t errcap);
/* close_notify (best effort) and free; the fd stays the caller's. */
void tlsc_close(tlsc_ssl *ssl);
#endif
