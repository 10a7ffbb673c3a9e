#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "gateway.h"

void glog_open(glog *l, const char *path) {
    l->f = stderr;
    if (path && *path) {
        FILE *f = fopen(path, "a");
        if (f) l->f = f;
    }
    setvbuf(l->f, NULL, _IOLBF, 0);
}

void glog_write(const glog *l, const char *level, const char *fmt, ...) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2048];
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %s ", ts.tv_nsec / 1000000, level);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : ((size_t)m < sizeof line - (size_t)n - 1 ? (size_t)m : sizeof line - (size_t)n - 2));
    line[len++] = '\n';
    fwrite(line, 1, len, l->f);
}
