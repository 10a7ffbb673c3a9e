/*
 * Shared helpers of the cmocka unit tests: the includes cmocka needs before its header, and
 * temporary directories under /tmp that a test creates and removes again. Everything here is
 * static inline so that each test executable stays one translation unit plus this header.
 */
#ifndef SG_UNIT_H
#define SG_UNIT_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fresh empty directory under /tmp; the name is written to out. */
static inline void unit_mkdtemp(char *out, size_t cap, const char *tag) {
    snprintf(out, cap, "/tmp/sg-unit-%s-XXXXXX", tag);
    assert_non_null(mkdtemp(out));
}

static inline int unit_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf; only ever called on a directory made by unit_mkdtemp. */
static inline void unit_rmtree(const char *dir) {
    if (strncmp(dir, "/tmp/sg-unit-", 13) != 0) return; /* never anything else */
    nftw(dir, unit_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void unit_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Whole file into a malloc'd buffer (*size bytes). */
static inline uint8_t *unit_read_file(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *p = malloc((size_t)st.st_size + 1);
    assert_non_null(p);
    assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *size = (size_t)st.st_size;
    return p;
}

static inline off_t unit_file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}
/* How many 4 KiB pages of [p, p + len) are resident now (mincore): what the page-touching
 * modules (pagefill, obring) promise. */
static inline size_t unit_resident_pages(void *p, size_t len) {
    size_t n = (len + 4095) / 4096, in = 0;
    unsigned char *v = malloc(n);
    assert_non_null(v);
    assert_int_equal(mincore(p, len, v), 0);
    for (size_t i = 0; i < n; i++) in += v[i] & 1;
    free(v);
    return in;
}
#endif
