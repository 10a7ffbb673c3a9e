"""
Least privilege (SPEC §11, issue 15 item 4):

- the shared-memory lists are mode 0640 with [gateway] shm_group (default: the gateway's
  primary group), after start and after a LIST.LOAD (which publishes a new file); a reader
  in the group opens them through libstopgate, another user is refused;
- stopgated runs with no capability as an unprivileged user (what the unit gives it);
- sd_notify: READY=1 only once the gateway accepts, RELOADING=1/READY=1 around SIGHUP,
  STOPPING=1 on SIGTERM;
- the shipped unit: `systemd-analyze security --offline=yes` exposure <= 3.0, and
  `systemd-analyze verify` accepts it.

The user switches need root (else those tests are skipped, saying so); systemd-analyze comes
with the Debian package systemd (ops/lib.sh).
"""
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import unittest

import sgtest
from sgtest import STOPGATED, Client, Gateway, todict, wait_until

HAMMER = os.environ.get("HAMMER") or os.path.join(sgtest.ROOT, "build", "tests", "integration", "lists", "lists_hammer")
UNIT = os.environ.get("STOPGATED_UNIT") or os.path.join(sgtest.ROOT, "build", "ops", "stopgated.service")
IS_ROOT = os.geteuid() == 0


def nobody():
    p = pwd.getpwnam("nobody")
    return p.pw_uid, p.pw_gid


def raw_open(path):
    try:
        os.close(os.open(path, os.O_RDONLY))
        return 0
    except PermissionError:
        return 13


def peek_as(uid, gid, groups, shm_name):
    """A libstopgate reader (lists_hammer --peek) run with these ids: its output for one CHECK."""

    def drop():
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)

    p = subprocess.run([HAMMER, "--peek", shm_name], input="check LPBANK LP0001\n", capture_output=True,
                       text=True, timeout=30, preexec_fn=drop)
    return p.stdout + p.stderr


def in_child_as(uid, gid, groups, fn):
    """Run fn() in a forked child with these ids; returns its exit status (fn's int result)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            code = fn()
        except BaseException:
            code = 98
        os._exit(code)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)


class ShmAccess(unittest.TestCase):
    def shm_path(self, gw):
        return os.path.join("/dev/shm", gw.shm_name)

    def assert_mode_group(self, path, gid):
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640, "%s is %04o" % (path, stat.S_IMODE(st.st_mode)))
        self.assertEqual(st.st_gid, gid)
        return st

    def test_default_group_is_the_gateways(self):
        gw = Gateway(name="shmdefault", sections="[list mule]\n")
        gw.start()
        self.assert_mode_group(self.shm_path(gw), os.getegid())
        gw.close()

    @unittest.skipUnless(IS_ROOT, "needs root to switch users (setgroups/setuid)")
    def test_group_mode_and_readers(self):
        group = grp.getgrgid(1).gr_name  # "daemon" on Debian: a group nobody is not in
        uid, ngid = nobody()
        self.assertNotIn(1, os.getgrouplist("nobody", ngid))
        gw = Gateway(name="shmgroup", gateway={"shm_group": group}, sections="[list mule]\n")
        gw.start()
        path = self.shm_path(gw)
        st0 = self.assert_mode_group(path, 1)
        # A bulk load publishes a new file: same mode and group.
        csv = os.path.join(gw.dir, "load.csv")
        with open(csv, "w") as f:
            f.write("LPBANK,LP0001\nLPBANK,LP0002\n")
        with gw.client("olga") as c:
            self.assertEqual(todict(c.ok("LIST.LOAD", "mule", csv))["rows"], 2)
        st1 = self.assert_mode_group(path, 1)
        self.assertNotEqual((st0.st_ino, st0.st_dev), (st1.st_ino, st1.st_dev), "LIST.LOAD published no new file")

        # nobody, not in the group: refused, by libstopgate and by a plain open.
        out = peek_as(uid, ngid, [], gw.shm_name)
        self.assertIn("open-error 13", out, "a user outside shm_group opened the lists")
        self.assertEqual(in_child_as(uid, ngid, [], lambda: raw_open(path)), 13)
        # nobody with the group as a supplementary one: a working reader.
        out = peek_as(uid, ngid, [1], gw.shm_name)
        self.assertIn("opened gen=", out)
        self.assertRegex(out, r"rc=0 mask=\d+ .*lists=mule", "a reader in shm_group could not screen")
        gw.close()

    @unittest.skipUnless(IS_ROOT, "needs root to start the gateway as another user")
    def test_runs_without_privileges(self):
        """What the unit gives stopgated: its own user, no capability, no new privileges."""
        if not shutil.which("setpriv"):
            self.skipTest("setpriv (util-linux) not installed")
        uid, ngid = nobody()
        gw = Gateway(name="unpriv", sections="[list mule]\n")
        os.chown(gw.dir, uid, ngid)
        os.chown(gw.conf_path, 0, ngid)
        os.chmod(gw.conf_path, 0o640)
        real = sgtest.STOPGATED
        wrapper = os.path.join(gw.dir, "stopgated-unpriv")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --clear-groups --inh-caps=-all "
                    "--bounding-set=-all --no-new-privs %s \"$@\"\n" % (uid, ngid, real))
        os.chmod(wrapper, 0o755)
        sgtest.STOPGATED = wrapper
        try:
            gw.start()
        finally:
            sgtest.STOPGATED = real
        self.assert_mode_group(self.shm_path(gw), ngid)
        self.assertEqual(os.stat(self.shm_path(gw)).st_uid, uid)
        with gw.client("alice") as c:
            d = todict(c.ok("STOP", "lp-1", "BANK", "LPBANK", "ACCOUNT", "LP0009", "CASE", "LP"))
            self.assertEqual(d["status"], "ACCEPTED")
        gw.close()


class Notify(unittest.TestCase):
    def test_sd_notify(self):
        d = sgtest.make_temp_dir("sgtest-notify-")
        sock_path = os.path.join(d, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(sock_path)
        s.settimeout(30)
        self.addCleanup(s.close)
        gw = Gateway(name="notify", env={"NOTIFY_SOCKET": sock_path})
        gw._spawn()
        msgs = []

        def until(key):
            while True:
                m = s.recv(4096).decode()
                fields = dict(l.split("=", 1) for l in m.split("\n") if "=" in l)
                msgs.append(fields)
                if key in fields:
                    return fields

        ready = until("READY")
        # At READY=1 the listener accepts and answers, and the log says ready.
        with Client(gw.port, timeout=5) as c:
            self.assertEqual(c.call("PING"), "PONG")
        self.assertIn("ready:", gw.log_since_start())
        self.assertEqual(ready["READY"], "1")
        self.assertIn("accepting on 127.0.0.1:%d" % gw.port, ready.get("STATUS", ""))
        self.assertTrue(any("recovering" in m.get("STATUS", "") for m in msgs[:-1]), msgs)
        gw._wait_ready(10)

        gw.proc.send_signal(signal.SIGHUP)
        reloading = until("RELOADING")
        self.assertEqual(reloading["RELOADING"], "1")
        self.assertRegex(reloading.get("MONOTONIC_USEC", ""), r"^\d+$")
        again = until("READY")
        self.assertIn("reloaded", again.get("STATUS", ""))

        gw.proc.send_signal(signal.SIGTERM)
        stopping = until("STOPPING")
        self.assertEqual(stopping["STOPPING"], "1")
        self.assertEqual(gw.proc.wait(20), 0)
        gw._forget()


@unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze not installed (Debian package systemd)")
class Unit(unittest.TestCase):
    def test_security_exposure(self):
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", UNIT], capture_output=True, text=True,
                           timeout=60)
        out = p.stdout + p.stderr
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
        self.assertIsNotNone(m, out)
        print("systemd-analyze security exposure: %s" % m.group(1))
        self.assertLessEqual(float(m.group(1)), 3.0, out)

    def test_verify_and_contents(self):
        with open(UNIT) as f:
            text = f.read()
        for line in ("Type=notify", "ExecReload=", "User=stopgate", "CapabilityBoundingSet=\n",
                     "ProtectKernelTunables=yes", "RestrictAddressFamilies=", "io_uring_setup", "StateDirectory=",
                     "--check-config"):
            self.assertIn(line, text)
        # verify wants the binaries to exist: point the unit at this build's.
        m = re.search(r"^ExecStart=(\S+)", text, re.M)
        d = sgtest.make_temp_dir("sgtest-unit-")
        local = os.path.join(d, "stopgated.service")
        with open(local, "w") as f:
            f.write(text.replace(m.group(1), STOPGATED))
        p = subprocess.run(["systemd-analyze", "verify", local], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # ExecStartPre's check accepts the installed sample config.
        p = subprocess.run([STOPGATED, "--check-config", "-c", os.path.join(sgtest.ROOT, "config", "stopgate.conf")],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
