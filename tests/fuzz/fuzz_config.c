/*
 * fuzz_config: the INI configuration reader (gateway/core/config.c, libinih underneath) on
 * arbitrary file contents: config_defaults, config_load from a memfd (opened by its
 * /proc/self/fd path, as a file would be), config_finish when the load passed, config_free.
 * A refusal must come with a NUL-terminated "path:line: reason"; ASan and LeakSanitizer
 * watch the plugin key/value copies.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static config cfg;
static int memfd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (memfd < 0) {
        memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
        if (memfd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0) abort();
    if (size && pwrite(memfd, data, size, 0) != (ssize_t)size) abort();

    char err[1024];
    memset(err, 0x55, sizeof err);
    config_defaults(&cfg);
    int rc = config_load(&cfg, path, err, sizeof err);
    if (rc == 0) {
        memset(err, 0x55, sizeof err);
        rc = config_finish(&cfg, err, sizeof err);
        if (rc == 0) {
            /* What the gateway reads next: every agent is findable by its own name. */
            for (uint32_t i = 0; i < cfg.nagents; i++)
                if (config_agent(&cfg, cfg.agents[i].name, strlen(cfg.agents[i].name)) == NULL) abort();
            for (uint32_t i = 0; i < cfg.nplugins; i++)
                for (uint32_t k = 0; k < cfg.plugins[i].nkv; k++)
                    if (!cfg.plugins[i].kv[k].key || !cfg.plugins[i].kv[k].value) abort();
        }
    } else if (rc != -1) {
        abort();
    }
    if (rc != 0 && (memchr(err, 0, sizeof err) == NULL || strncmp(err, path, strlen(path)) != 0)) abort();
    config_free(&cfg);

    /* The address syntax on its own (HOST:PORT | off), the input up to its first NUL. */
    char addr[256];
    size_t n = size < sizeof addr - 1 ? size : sizeof addr - 1;
    memcpy(addr, data, n);
    addr[n] = 0;
    cfg_addr a;
    (void)config_parse_addr(addr, &a);
    return 0;
}
