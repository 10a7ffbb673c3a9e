/* Wall-clock helpers: unix milliseconds/microseconds. Orders carry wall time (STATUS shows it);
 * deadlines compare against the same clock so a step is never "before" its predecessor. */
#ifndef SG_CLOCK_H
#define SG_CLOCK_H
#include <stdint.h>
#include <time.h>

static inline int64_t clock_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
static inline int64_t clock_now_ms(void) { return clock_now_us() / 1000; }
static inline int64_t clock_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif
