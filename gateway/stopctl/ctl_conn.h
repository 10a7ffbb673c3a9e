/*
 * ctl_conn: stopctl's one connection to stopgated: TCP, or TLS with --tls (tlsclient.h:
 * Debian's hiredis 0.14 has no SSL), hiredis only formatting commands and its redisReader
 * parsing replies. Blocking, bounded by CTL_CONNECT_TIMEOUT_S / CTL_REPLY_TIMEOUT_S; one
 * command at a time; not thread-safe.
 */
#ifndef SG_CTL_CONN_H
#define SG_CTL_CONN_H
#include <hiredis/hiredis.h>
#include <stddef.h>

#include "tlsclient.h"

#define CTL_CONNECT_TIMEOUT_S 5
#define CTL_REPLY_TIMEOUT_S 30 /* LIST.LOAD of millions of rows answers only when done */

typedef struct ctl_conn ctl_conn;

/* Connect to host:port (TLS when tls->on); NULL with err. */
ctl_conn *ctl_conn_open(const char *host, int port, const tlsc_opts *tls, char *err, size_t errcap);
void ctl_conn_close(ctl_conn *c);
/* One command, one reply (the caller frees it with freeReplyObject); NULL when the
 * connection failed, with the reason in ctl_conn_error(). */
redisReply *ctl_conn_command(ctl_conn *c, int argc, const char **argv);
const char *ctl_conn_error(const ctl_conn *c);
#endif
