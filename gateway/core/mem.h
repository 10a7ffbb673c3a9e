/*
 * mem: large tables reserved up front. Address space is reserved for the configured maximum
 * at start-up (MAP_NORESERVE) and pages are touched only as entries are used, so "allocate at
 * start, never per request" costs memory only for what is really held.
 */
#ifndef SG_MEM_H
#define SG_MEM_H
#include <stddef.h>
#include <sys/mman.h>

static inline void *mem_reserve(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static inline void mem_release(void *p, size_t bytes) { munmap(p, bytes); }
#endif
