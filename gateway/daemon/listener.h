/*
 * listener: open one listening socket at start. Blocking (bind may wait, bounded by
 * LISTEN_BIND_RETRY_MS): called before the loop runs, never on it. No gateway state.
 */
#ifndef SG_LISTENER_H
#define SG_LISTENER_H
#include <stddef.h>

#include "config.h"

/* A socket of type (SOCK_STREAM: listening, backlog 4096; SOCK_DGRAM: bound) on a->host:a->port,
 * SO_REUSEADDR, close-on-exec. The fd, or -1 with err. */
int listener_open(const cfg_addr *a, int type, char *err, size_t errcap);
#endif
