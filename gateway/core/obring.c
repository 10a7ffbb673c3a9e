#include "obring.h"

#include <assert.h>

#include "mem.h"

int obring_init(outbox *ob, uint32_t cap) {
    assert(cap >= 1);
    *ob = (outbox){.v = mem_reserve((size_t)cap * sizeof *ob->v), .cap = cap};
    if (ob->v) return 0;
    *ob = (outbox){0};
    return -1;
}

void obring_free(outbox *ob) {
    if (ob->v) mem_release(ob->v, (size_t)ob->cap * sizeof *ob->v);
    *ob = (outbox){0};
}

void obring_push(outbox *ob, outbox_ent e) {
    assert(ob->len < ob->cap && ob->head < ob->cap);
    ob->v[(ob->head + ob->len) % ob->cap] = e;
    ob->len++;
}

void obring_pop(outbox *ob) {
    assert(ob->len > 0 && ob->head < ob->cap);
    ob->len--;
    /* Empty: start over at the front, whose pages are resident (obring.h). */
    ob->head = ob->len ? (ob->head + 1) % ob->cap : 0;
}

void obring_clear(outbox *ob) {
    ob->head = ob->len = 0;
}

void obring_warm(outbox *ob, size_t bytes) {
    size_t all = (size_t)ob->cap * sizeof *ob->v;
    if (ob->v) mem_touch(ob->v, bytes < all ? bytes : all);
}
