"""The .deb (issue 14 item 5): ops/package builds it with debhelper (dh, meson build system)
from ops/debian/, in a build dir of its own under the test build (kept between runs: the first
run compiles stopgate once more, later runs only what changed). Checked: dpkg-deb -c lists the
binaries, plugins, libstopgate and its .pc, the man pages, the bash completion, the systemd
unit and its sysusers.d user, and the config (a conffile, mode 0640); Depends names the
libraries the binaries link to; lintian reports nothing; then the package is installed with
`dpkg -i` on this machine (root), the installed stopgated validates the installed config with
the unit's own command line, the stopgate user exists and owns the config's group, the unit is
neither enabled nor started, and `dpkg --purge` leaves the machine as found (a stopgate user
the install created is removed again). Needs root, debhelper, dpkg-dev and lintian
(ops/lib.sh)."""
import os
import pwd
import shutil
import subprocess
import sys
import time
import unittest

import sgtest

BUILD_ROOT = os.environ.get("MESON_BUILD_ROOT") or os.path.join(sgtest.ROOT, "build")
DEB_BUILD = os.path.join(BUILD_ROOT, "deb-build")
PACKAGE = os.path.join(sgtest.ROOT, "ops", "package")

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


def dpkg(*args):
    """dpkg, waiting up to 2 minutes for its lock (another engineer's apt-get may hold it)."""
    deadline = time.monotonic() + 120
    while True:
        r = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if r.returncode == 0:
            return r.stdout
        if "lock" not in r.stderr or time.monotonic() > deadline:
            raise AssertionError("dpkg %s exited %d:\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        time.sleep(1)


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "stopgate"], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() not in ("", "not-installed")


def has_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class Deb(unittest.TestCase):
    deb = None

    @classmethod
    def setUpClass(cls):
        for tool in ("dpkg-deb", "dpkg-buildpackage", "dh", "lintian"):
            if not shutil.which(tool):
                raise unittest.SkipTest("%s not found (debhelper, dpkg-dev and lintian are in ops/lib.sh)" % tool)
        cls.out = sgtest.make_temp_dir("sgtest-deb-")
        cls.deb = sh(PACKAGE, "--build-dir=" + DEB_BUILD, "--out=" + cls.out, timeout=1500).strip().splitlines()[-1]

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
        with open(os.path.join(d, "postinst")) as f:
            postinst = f.read()
        self.assertIn("systemd-sysusers stopgate.conf", postinst)
        # Installing must never start the service (its secrets are not set yet).
        self.assertNotIn("deb-systemd-invoke", postinst)
        self.assertNotIn("invoke-rc.d", postinst)

    def test_depends_from_shlibs(self):
        """Every shared library the packaged ELF files need (the DPDK librte_* ones too, when
        stopgated is built with libdpdk) is in Depends by its package, put there by
        ${shlibs:Depends}; ops/debian/control names no library package by hand."""
        with open(os.path.join(sgtest.ROOT, "ops", "debian", "control")) as f:
            control = f.read()
        stanza = control[control.index("Package: stopgate"):]
        line = [l for l in stanza.splitlines() if l.startswith("Depends:")][0]
        self.assertEqual([w.strip() for w in line[len("Depends:"):].split(",")],
                         ["adduser", "${misc:Depends}", "${shlibs:Depends}"])
        depends = {w.strip().split()[0] for w in sh("dpkg-deb", "-f", self.deb, "Depends").split(",")}
        root = sgtest.make_temp_dir("sgtest-deb-x-")
        sh("dpkg-deb", "-x", self.deb, root)
        needed, own = set(), set()
        for top, _, files in os.walk(root):
            for name in files:
                path = os.path.join(top, name)
                own.add(name)  # libstopgate.so.0 is a link to the package's own library
                if os.path.islink(path):
                    continue
                with open(path, "rb") as f:
                    if f.read(4) != b"\x7fELF":
                        continue
                dyn = sh("readelf", "-d", path)
                needed |= {l.split("[")[1].split("]")[0] for l in dyn.splitlines() if "(NEEDED)" in l}
        self.assertTrue(any(n.startswith("libsodium") for n in needed), needed)
        multiarch = sh("dpkg-architecture", "-qDEB_HOST_MULTIARCH").strip()
        for lib in sorted(needed - own):
            owner = sh("dpkg", "-S", "*/%s/%s" % (multiarch, lib)).splitlines()[0].split(":")[0].split(",")[0]
            if owner in ("libc6", "libgcc-s1"):  # essential / build-essential: dpkg-shlibdeps may omit
                continue
            self.assertIn(owner, depends, "%s (%s) is needed but not in Depends" % (lib, owner))
        if any(n.startswith("librte_") for n in needed):
            self.assertTrue([d for d in depends if d.startswith("librte-")], depends)

    def test_lintian_clean(self):
        r = subprocess.run(["lintian", "--fail-on", "error,warning", self.deb], capture_output=True, text=True,
                           timeout=300)
        tags = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
        self.assertEqual(tags, [], r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    @unittest.skipUnless(os.geteuid() == 0, "dpkg -i needs root")
    def test_install_check_config_purge(self):
        was_installed, had_user = installed(), has_user("stopgate")
        if was_installed:
            print("package-deb: stopgate was already installed; testing an upgrade over it, and leaving it "
                  "installed (this version) at the end", file=sys.stderr)
        try:
            dpkg("-i", self.deb)
            self.assertTrue(installed())
            self.assertTrue(has_user("stopgate"), "postinst made no stopgate user")
            st = os.stat("/etc/stopgate/stopgate.conf")
            self.assertEqual(st.st_mode & 0o777, 0o640)
            self.assertEqual(st.st_gid, pwd.getpwnam("stopgate").pw_gid)
            # The unit's own ExecStartPre, from the installed paths.
            with open("/lib/systemd/system/stopgated.service") as f:
                unit = f.read()
            self.assertIn("ExecStartPre=/usr/bin/stopgated --check-config -c /etc/stopgate/stopgate.conf", unit)
            self.assertIn("configuration ok",
                          sh("/usr/bin/stopgated", "--check-config", "-c", "/etc/stopgate/stopgate.conf"))
            self.assertIn("stopctl (stopgate)", sh("/usr/bin/stopctl", "--version"))
            self.assertIn("-lstopgate", sh("pkg-config", "--libs", "stopgate"))
            self.assertFalse(os.path.exists("/etc/systemd/system/multi-user.target.wants/stopgated.service"),
                             "the package enabled the unit")
        finally:
            if not was_installed:
                dpkg("--purge", "stopgate")
                if not had_user and has_user("stopgate"):
                    sh("userdel", "stopgate")
                    subprocess.run(["groupdel", "stopgate"], capture_output=True)
        if not was_installed:
            self.assertFalse(installed())
            self.assertFalse(os.path.exists("/usr/bin/stopgated"))
            self.assertFalse(os.path.exists("/etc/stopgate"), "purge left /etc/stopgate")


if __name__ == "__main__":
    sgtest.main()
