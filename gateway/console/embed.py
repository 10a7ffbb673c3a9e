#!/usr/bin/env python3
"""Embed the console's static files in a C source (console_assets.h): embed.py OUT.c FILE...

No build step for the page itself: the files are served byte for byte as written."""
import os
import sys

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def main():
    out, files = sys.argv[1], sys.argv[2:]
    lines = ['#include "console_assets.h"', ""]
    entries = []
    for i, path in enumerate(files):
        name = os.path.basename(path)
        ext = os.path.splitext(name)[1]
        if ext not in TYPES:
            sys.exit("embed.py: no Content-Type for %s" % name)
        data = open(path, "rb").read()
        body = ",".join(str(b) for b in data)
        lines.append("static const unsigned char a%d[%d] = {%s};" % (i, max(len(data), 1), body or "0"))
        entries.append('    {"%s", "%s", a%d, %d},' % (name, TYPES[ext], i, len(data)))
    lines.append("const console_asset console_assets[] = {")
    lines += entries
    lines.append("};")
    lines.append("const size_t console_nassets = %d;" % len(files))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
