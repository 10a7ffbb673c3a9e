/*
 * buf: a growable byte buffer with a hard cap. Growth is geometric (amortised, not per
 * request); going past the cap is an error the caller must handle (close the client,
 * refuse the request) - a buffer never grows without bound and never truncates silently.
 */
#ifndef SG_BUF_H
#define SG_BUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t cap_max;
    /* While pinned (the kernel may still read data: an io_uring send in flight), growing
     * must not free the old block: it is kept in retired until buf_unpin(). */
    bool pinned;
    uint8_t *retired;
    /* An append was refused (cap_max): every later append is refused too, so a reply that
     * does not fit is never left with a hole in its middle. The writer rolls the buffer back
     * with buf_truncate() to before the reply and answers something that fits. */
    bool overflowed;
} buf;

void buf_init(buf *b, size_t cap_max);
void buf_free(buf *b);
/* Make room for n more bytes. 0, or -ENOBUFS past cap_max (and after any earlier refusal
 * until buf_truncate()), -ENOMEM. */
int buf_reserve(buf *b, size_t n);
/* Append n bytes whole, or nothing (as buf_reserve). */
int buf_append(buf *b, const void *p, size_t n);
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (consumed). */
void buf_consume(buf *b, size_t n);
static inline void buf_pin(buf *b) { b->pinned = true; }
void buf_unpin(buf *b);
static inline void buf_reset(buf *b) {
    b->len = 0;
    b->overflowed = false;
}
/* Drop everything from offset len on (a reply being rolled back); clears overflowed. */
static inline void buf_truncate(buf *b, size_t len) {
    if (len < b->len) b->len = len;
    b->overflowed = false;
}
#endif
