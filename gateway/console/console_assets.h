/*
 * console_assets: the agents' console page (gateway/console/assets/), embedded in stopgated
 * at build time by embed.py so that the binary serves it with nothing installed beside it
 * and the page always matches the API of the gateway that serves it (docs/console.md).
 */
#ifndef SG_CONSOLE_ASSETS_H
#define SG_CONSOLE_ASSETS_H
#include <stddef.h>

typedef struct console_asset {
    const char *name;  /* file name under assets/ ("index.html", "app.js") */
    const char *ctype; /* Content-Type */
    const unsigned char *data;
    size_t len;
} console_asset;

extern const console_asset console_assets[];
extern const size_t console_nassets;
#endif
