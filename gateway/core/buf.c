#include "buf.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t cap_max) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->cap_max = cap_max;
    b->pinned = false;
    b->retired = NULL;
    b->overflowed = false;
}

void buf_free(buf *b) {
    free(b->data);
    free(b->retired);
    buf_init(b, b->cap_max);
}

void buf_unpin(buf *b) {
    b->pinned = false;
    free(b->retired);
    b->retired = NULL;
}

int buf_reserve(buf *b, size_t n) {
    assert(b->len <= b->cap && b->cap <= b->cap_max);
    /* A refusal sticks until the reply is rolled back (buf_truncate). */
    if (b->overflowed || n > b->cap_max || b->len > b->cap_max - n) {
        b->overflowed = true;
        return -ENOBUFS;
    }
    size_t need = b->len + n;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    if (cap > b->cap_max) cap = b->cap_max;
    if (b->pinned) {
        /* Move, but keep the block the pending send reads from. A second growth during the
         * same send frees the intermediate block: nobody reads that one. */
        uint8_t *p = malloc(cap);
        if (!p) return -ENOMEM;
        if (b->len) memcpy(p, b->data, b->len);
        if (b->retired) free(b->data);
        else b->retired = b->data;
        b->data = p;
        b->cap = cap;
        return 0;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p) return -ENOMEM;
    b->data = p;
    b->cap = cap;
    assert(b->len + n <= b->cap && b->cap <= b->cap_max);
    return 0;
}

int buf_append(buf *b, const void *p, size_t n) {
    assert(p || n == 0);
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_printf(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    if ((size_t)n < sizeof tmp) return buf_append(b, tmp, (size_t)n);
    /* Only the n bytes of output count against cap_max, as in buf_append: vsnprintf's NUL
     * must not turn output that ends exactly at the cap into -ENOBUFS. */
    int rc = buf_reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    if (b->cap - b->len > (size_t)n) {
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    } else {
        /* No room for the NUL in place: format aside (rare: only at the cap's very edge). */
        char *t = malloc((size_t)n + 1);
        if (!t) {
            va_end(ap);
            return -ENOMEM;
        }
        vsnprintf(t, (size_t)n + 1, fmt, ap);
        memcpy(b->data + b->len, t, (size_t)n);
        free(t);
    }
    va_end(ap);
    b->len += (size_t)n;
    assert(b->len <= b->cap);
    return 0;
}

void buf_consume(buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
