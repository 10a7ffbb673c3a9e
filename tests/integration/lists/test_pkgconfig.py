#!/usr/bin/env python3
"""
libstopgate as a bank's payment system would use it (issue 5, item 5): `meson install
--destdir` into a temp dir, build a small C screener with
`cc reader.c $(pkg-config --cflags --libs stopgate)` against the *installed* header, library
and stopgate.pc (PKG_CONFIG_SYSROOT_DIR points pkg-config into the destdir), and run it on the
table of a running stopgated: it must print the verdicts the gateway was given, including
FROZEN for an account with a live STOP, and follow the gateway when it publishes a new table.
"""
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lgtest  # noqa: E402
from lgtest import todict  # noqa: E402

SECRET = "pkgconfig-dev-secret"

READER_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stopgate/lists.h>

/* reader SHM BANK ACCOUNT [BANK ACCOUNT ...]: one line per account. */
int main(int argc, char **argv) {
    if (argc < 4 || argc % 2) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    Dl_info di;
    if (dladdr((void *)sg_lists_open, &di) && di.dli_fname) printf("lib %s\n", di.dli_fname);
    sg_lists *l = sg_lists_open(argv[1]);
    if (!l) {
        printf("open-error %s\n", strerror(errno));
        return 3;
    }
    printf("generation %llu\n", (unsigned long long)sg_lists_generation(l));
    for (int i = 2; i + 1 < argc; i += 2) {
        sg_verdict v;
        int rc = sg_lists_check(l, argv[i], argv[i + 1], &v);
        if (rc != 0) {
            printf("%s/%s rc=%d\n", argv[i], argv[i + 1], rc);
            continue;
        }
        printf("%s/%s mask=%llu score=%u frozen=%d lists=", argv[i], argv[i + 1], (unsigned long long)v.mask,
               (unsigned)v.score, v.frozen ? 1 : 0);
        const char *sep = "";
        for (unsigned b = 0; b < SG_LISTS_MAX; b++)
            if (v.mask & (1ull << b)) {
                const char *n = sg_lists_name(l, b);
                printf("%s%s", sep, n ? n : "?");
                sep = ",";
            }
        printf("%s\n", *sep ? "" : "-");
    }
    /* Wait for a new generation when asked (stdin line "wait"), then check again. */
    char line[64];
    if (fgets(line, sizeof line, stdin) && !strncmp(line, "wait", 4)) {
        uint64_t g0 = sg_lists_generation(l);
        sg_verdict v;
        for (long n = 0; n < 200000000L && sg_lists_generation(l) == g0; n++) sg_lists_check(l, argv[2], argv[3], &v);
        sg_lists_check(l, argv[2], argv[3], &v);
        printf("after generation %llu %s/%s mask=%llu score=%u\n", (unsigned long long)sg_lists_generation(l),
               argv[2], argv[3], (unsigned long long)v.mask, (unsigned)v.score);
    }
    sg_lists_close(l);
    return 0;
}
"""


def run(argv, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p.stdout


class PkgConfig(unittest.TestCase):
    def test_installed_library_builds_and_reads_the_gateway_table(self):
        for tool in ("cc", "pkg-config", "meson"):
            self.assertIsNotNone(shutil.which(tool), "%s is needed for this test" % tool)
        tmp = lgtest.temp_dir("pkgconfig")
        dest = os.path.join(tmp, "dest")
        # --no-rebuild: meson test has built everything; never rebuild under a running test.
        run(["meson", "install", "--no-rebuild", "--quiet", "--destdir", dest, "-C", lgtest.BUILD_ROOT], timeout=300)
        pcs = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f == "stopgate.pc"]
        self.assertEqual(len(pcs), 1, "stopgate.pc installed once: %r" % pcs)
        hdrs = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f == "lists.h"]
        self.assertTrue(any(h.endswith(os.path.join("include", "stopgate", "lists.h")) for h in hdrs), hdrs)
        libs = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f.startswith("libstopgate.so")]
        self.assertTrue(libs, "libstopgate.so is installed")

        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = os.path.dirname(pcs[0])
        # the installed stopgate.pc first, then the system's (libxxhash, libsodium: Requires.private)
        system_pc = run(["pkg-config", "--variable", "pc_path", "pkg-config"]).strip()
        env["PKG_CONFIG_LIBDIR"] = os.path.dirname(pcs[0]) + (":" + system_pc if system_pc else "")
        env["PKG_CONFIG_SYSROOT_DIR"] = dest
        flags = run(["pkg-config", "--cflags", "--libs", "stopgate"], env=env).split()
        self.assertIn("-lstopgate", flags)
        self.assertTrue(any(f.startswith("-I" + dest) for f in flags), "include dir inside the destdir: %r" % flags)
        libdirs = [f[2:] for f in flags if f.startswith("-L" + dest)]
        self.assertTrue(libdirs, "library dir inside the destdir: %r" % flags)
        self.assertEqual(run(["pkg-config", "--modversion", "stopgate"], env=env).strip(), "0.1.0")

        src = os.path.join(tmp, "reader.c")
        exe = os.path.join(tmp, "reader")
        with open(src, "w") as f:
            f.write(READER_C)
        # exactly the documented line: cc reader.c $(pkg-config --cflags --libs stopgate), plus
        # the sanitizers when this build's library carries them (a -Db_sanitize build)
        san = []
        needed = subprocess.run(["ldd", sorted(libs)[0]], capture_output=True, text=True).stdout
        if "libasan" in needed:
            san.append("-fsanitize=address")
        if "libubsan" in needed:
            san.append("-fsanitize=undefined")
        run(["cc", "-std=c11", "-Wall", "-Werror", "-o", exe, src] + san + flags, env=env)

        gw = lgtest.Gateway("pkgconfig", lists={"mule": False, "suspect": False}, dev_secret=SECRET)
        gw.start()
        c = gw.client("dev", SECRET)
        c.ok("LIST.ADD", "mule", "ICBK", "6222 0000-1111 2222", "SCORE", "88")
        c.ok("LIST.ADD", "suspect", "ICBK", "6222000011112222", "SCORE", "91")
        c.ok("LIST.ADD", "protected", "BOCN", "PAYROLL7", "SCORE", "5")
        r = todict(c.ok("STOP", "pk-1", "BANK", "ABCD", "ACCOUNT", "55667788", "CASE", "PK-CASE"))
        self.assertEqual(r["status"], "ACCEPTED")

        renv = dict(os.environ, LD_LIBRARY_PATH=":".join(libdirs))
        args = [exe, gw.shm_name, "icbk", "6222000011112222", "BOCN", "PAYROLL7", "ABCD", "55667788",
                "ICBK", "999", "ICBK", "bad_account"]
        out = run(args, env=renv, input="")
        sys.stdout.write(out)
        m = re.search(r"^lib (.*)$", out, re.M)
        self.assertIsNotNone(m, out)
        self.assertTrue(os.path.realpath(m.group(1)).startswith(os.path.realpath(dest)),
                        "the reader must run on the installed library, not %s" % m.group(1))
        self.assertIn("icbk/6222000011112222 mask=3 score=91 frozen=0 lists=mule,suspect", out)
        self.assertRegex(out, r"BOCN/PAYROLL7 mask=\d+ score=5 frozen=0 lists=protected\n")
        self.assertIn("ABCD/55667788 mask=0 score=0 frozen=1 lists=-", out)  # a live STOP: FROZEN
        self.assertIn("ICBK/999 mask=0 score=0 frozen=0 lists=-", out)
        self.assertIn("ICBK/bad_account rc=-%d" % 22, out)  # -EINVAL
        gen0 = int(re.search(r"^generation (\d+)$", out, re.M).group(1))
        self.assertGreater(gen0, 0)

        # A reader that stays open follows the gateway's next table (a bulk load publishes one).
        p = lgtest.spawn([exe, gw.shm_name, "ICBK", "7777", "ICBK", "1"], env=renv, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lgtest.wait_until(lambda: os.path.exists(gw.shm_path), what="table")
        first = p.stdout.readline()  # "lib ..."
        gen_line = p.stdout.readline()
        self.assertTrue(gen_line.startswith("generation"), first + gen_line)
        line = p.stdout.readline()
        self.assertIn("ICBK/7777 mask=0", line)
        c.ok("LIST.LOAD", "suspect", "-", "ICBK,7777,64,PK-LOAD\n")
        out2, err2 = p.communicate("wait\n", timeout=60)
        self.assertEqual(p.returncode, 0, err2)
        m = re.search(r"after generation (\d+) ICBK/7777 mask=(\d+) score=(\d+)", out2)
        self.assertIsNotNone(m, out2)
        self.assertGreater(int(m.group(1)), gen0)
        self.assertEqual(int(m.group(2)), 2)  # suspect is the second list declared
        self.assertEqual(int(m.group(3)), 64)

        # The gateway gone, the readers keep screening from the table it left.
        c.close()
        self.assertEqual(gw.stop(), 0)
        out = run(args + ["ICBK", "7777"], env=renv, input="")
        # (the load replaced suspect: the account is left on mule only)
        self.assertIn("icbk/6222000011112222 mask=1 score=91 frozen=0 lists=mule\n", out)
        self.assertIn("ICBK/7777 mask=2 score=64 frozen=0 lists=suspect\n", out)

        # Not a stopgate table: the reader says so.
        bogus = lgtest.shm_name("pkgbogus")
        with open("/dev/shm/" + bogus, "wb") as f:
            f.write(b"\0" * 8192)
        p = subprocess.run([exe, bogus, "A", "1"], env=renv, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 3)
        self.assertIn("open-error " + os.strerror(74), p.stdout)  # EBADMSG
        p = subprocess.run([exe, bogus + "-missing", "A", "1"], env=renv, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 3)
        self.assertIn("open-error " + os.strerror(2), p.stdout)  # ENOENT


if __name__ == "__main__":
    unittest.main(verbosity=2)
