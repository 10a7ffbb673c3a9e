"""The .deb (issue 14 item 5): ops/make-deb builds it from `meson install --destdir` into a
build dir of its own under the test build (configured for /usr, kept between runs: the first
run compiles stopgate once more, later runs only what changed). Checked: dpkg-deb -c lists the
binaries, plugins, libstopgate and its .pc, the man pages, the bash completion, the systemd
unit and its sysusers.d user, and the config (a conffile, mode 0640); Depends names the
libraries the binaries link to; lintian reports nothing; the unpacked stopgated validates
the packaged config and the unpacked stopctl runs. Needs dpkg-dev and lintian (ops/lib.sh)."""
import os
import shutil
import subprocess
import unittest

import sgtest

BUILD_ROOT = os.environ.get("MESON_BUILD_ROOT") or os.path.join(sgtest.ROOT, "build")
DEB_BUILD = os.path.join(BUILD_ROOT, "deb-build")
MAKE_DEB = os.path.join(sgtest.ROOT, "ops", "make-deb")

WANT = [
    "./usr/bin/stopgated", "./usr/bin/stopctl", "./usr/bin/stopbench", "./usr/bin/stopgate-bank-consumer",
    "./usr/share/man/man1/stopctl.1.gz", "./usr/share/man/man1/stopbench.1.gz",
    "./usr/share/man/man1/stopgate-bank-consumer.1.gz", "./usr/share/man/man5/stopgate.conf.5.gz",
    "./usr/share/man/man8/stopgated.8.gz", "./lib/systemd/system/stopgated.service",
    "./usr/lib/sysusers.d/stopgate.conf", "./etc/stopgate/stopgate.conf",
    "./usr/share/bash-completion/completions/stopctl", "./usr/include/stopgate/plugin.h",
    "./usr/share/doc/stopgate/copyright", "./usr/share/doc/stopgate/alerts.yml",
]


def sh(*argv, timeout=120, env=None):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r.stdout


class Deb(unittest.TestCase):
    deb = None

    @classmethod
    def setUpClass(cls):
        for tool in ("dpkg-deb", "dpkg-shlibdeps", "lintian"):
            if not shutil.which(tool):
                raise unittest.SkipTest("%s not found (dpkg-dev and lintian are in ops/lib.sh)" % tool)
        cls.out = sgtest.make_temp_dir("sgtest-deb-")
        cls.deb = sh(MAKE_DEB, "--build-dir=" + DEB_BUILD, "--out=" + cls.out, timeout=1500).strip().splitlines()[-1]

    def test_contents(self):
        listing = sh("dpkg-deb", "-c", self.deb)
        rows = {l.split()[-1] if "->" not in l else l.split()[-3]: l.split()[0] for l in listing.splitlines()}
        for path in WANT:
            self.assertIn(path, rows, "%s is not in the package" % path)
        self.assertTrue(any(p.endswith("/stopgate/plugins/sim.so") for p in rows))
        self.assertTrue(any(p.endswith("/stopgate/plugins/redis_streams.so") for p in rows))
        self.assertTrue(any("/libstopgate.so.0" in p for p in rows))
        self.assertTrue(any(p.endswith("/pkgconfig/stopgate.pc") for p in rows))
        self.assertEqual(rows["./etc/stopgate/stopgate.conf"], "-rw-r-----")  # it holds secret hashes
        self.assertFalse([p for p in rows if "/local/" in p], "nothing under /usr/local")

    def test_control(self):
        depends = sh("dpkg-deb", "-f", self.deb, "Depends")
        for lib in ("libc6", "libhiredis", "liburing", "libsodium", "libjansson", "libinih", "libxxhash", "libssl3"):
            self.assertIn(lib, depends)
        self.assertNotIn("libstopgate", depends)
        self.assertEqual(sh("dpkg-deb", "-f", self.deb, "Version").strip(),
                         sh(sgtest.STOPCTL, "--version").split()[-1])
        d = sgtest.make_temp_dir("sgtest-deb-ctl-")
        sh("dpkg-deb", "-e", self.deb, d)
        with open(os.path.join(d, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/stopgate/stopgate.conf"])

    def test_lintian_clean(self):
        r = subprocess.run(["lintian", "--fail-on", "error,warning", self.deb], capture_output=True, text=True,
                           timeout=300)
        tags = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
        self.assertEqual(tags, [], r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_unpacked_programs_run(self):
        d = sgtest.make_temp_dir("sgtest-deb-x-")
        sh("dpkg-deb", "-x", self.deb, d)
        libdir = os.path.dirname(next(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs
                                      if f.startswith("libstopgate.so")))
        env = dict(os.environ, LD_LIBRARY_PATH=libdir, STOPGATE_PLUGIN_PATH=os.path.join(libdir, "stopgate", "plugins"))
        out = sh(os.path.join(d, "usr/bin/stopgated"), "--check-config", "-c",
                 os.path.join(d, "etc/stopgate/stopgate.conf"), env=env)
        self.assertIn("configuration ok", out)
        self.assertIn("stopctl (stopgate)", sh(os.path.join(d, "usr/bin/stopctl"), "--version", env=env))


if __name__ == "__main__":
    sgtest.main()
