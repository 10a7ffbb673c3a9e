"""
Configuration checks at start, in --check-config and on SIGHUP (issue 15 items 4, 7 and 12):

- --check-config with a redis_streams plugin judges its section without an event loop
  (it crashed with exit 139), and still refuses a bad key of it with file:line;
- a key set twice in one section is refused with file:line at start, in --check-config and
  on SIGHUP;
- SIGHUP validates as a start does (a plugin key typo refuses the reload whole; the running
  configuration stays) and names the changed keys it does not apply as needing a restart;
- LIST.LOAD skips a first line `bank,account[,score[,case]]` as a header;
- stopgated warns when its config file is readable by other users.
"""
import os
import re
import signal
import subprocess
import time
import unittest

import sgtest
from sgtest import STOPGATED, Client, Gateway, GatewayCase, todict, wait_until


def check_config(path):
    return subprocess.run([STOPGATED, "--check-config", "-c", path], capture_output=True, text=True, timeout=30)


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def line_of(text, needle):
    """1-based line of the first line of text that contains needle."""
    for i, l in enumerate(text.splitlines(), 1):
        if needle in l:
            return i
    raise AssertionError("%r not in the config" % needle)


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.dir = sgtest.make_temp_dir("sgtest-check-")

    def test_redis_streams_section_checked_without_event_loop(self):
        """Item 7: router_init armed a poll on a ring check mode never set up (exit 139)."""
        port = sgtest.free_port()  # nothing listens: the plugin's threads get "refused" at once
        text = ("[gateway]\nlisten = 127.0.0.1:1\n[route default]\nplugin = rs\n"
                "[plugin rs]\ntype = redis_streams\nhost = 127.0.0.1\nport = %d\n" % port)
        p = check_config(write(os.path.join(self.dir, "rs.conf"), text))
        self.assertEqual(p.returncode, 0, "exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr))
        self.assertIn("configuration ok", p.stdout)
        # The plugin still judges its section: a typo is refused with its line.
        bad = text + "blok_ms = 5\n"
        path = write(os.path.join(self.dir, "rs-bad.conf"), bad)
        p = check_config(path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("%s:%d: [plugin rs]: unknown key 'blok_ms'" % (path, line_of(bad, "blok_ms")), p.stderr)

    def test_duplicate_key_refused_by_check_and_start(self):
        gw = Gateway(name="dupstart")
        text = gw.config_text() + "[cascade]\nmax_depth = 3\nmax_depth = 4\n"
        gw.write_config(text)
        line = len(text.splitlines())
        p = check_config(gw.conf_path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        want = "%s:%d: duplicate key 'max_depth' (first set at line %d)" % (gw.conf_path, line, line - 1)
        self.assertIn(want, p.stderr)
        rc, log = gw.start_expect_failure()
        self.assertEqual(rc, 1, log)
        self.assertIn(want, log)

    def test_config_readable_by_others_warned(self):
        """Item 4: the file holds every agent's secret hash."""
        gw = Gateway(name="confmode")
        os.chmod(gw.conf_path, 0o644)
        p = check_config(gw.conf_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout + p.stderr, r"WARN .*%s is readable by other users \(mode 0644\)" % re.escape(
            gw.conf_path))
        gw.start()
        self.assertIn("is readable by other users", gw.log_since_start())
        gw.stop()
        os.chmod(gw.conf_path, 0o662)
        gw.start()
        self.assertIn("is writable by other users (mode 0662)", gw.log_since_start())
        gw.stop()
        os.chmod(gw.conf_path, 0o640)  # group read is the intended way to share it
        gw.start()
        self.assertNotIn("by other users", gw.log_since_start())
        gw.close()


BASE_SECTIONS = "[list mule]\n\n[plugin sim]\nbalance = 1000000\nlatency_us = 100\n"


class Reload(GatewayCase):
    """Each test adds an agent of its own: whether it can AUTH tells whether the reload applied."""

    GW_ARGS = dict(sections=BASE_SECTIONS)
    base_sections = BASE_SECTIONS

    def setUp(self):
        self.gw.sections = self.base_sections
        self.gw.gateway_opts = {}
        self.gw.write_config()

    def sighup(self, what):
        """Send SIGHUP and wait for its outcome line; returns the log lines it wrote."""
        gw = self.gw
        before = len(gw.log())
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: re.search(r"SIGHUP: (reload refused|configuration reloaded)", gw.log()[before:]),
                   timeout=10, what=what)
        return gw.log()[before:]

    def can_auth(self, agent):
        with Client(self.gw.port) as c:
            return c.call("AUTH", agent, agent + "-s3cret") == "OK"

    def test_plugin_typo_refuses_whole_reload(self):
        """Item 12: the reload accepted what --check-config refuses (a plugin key typo) and applied
        the rest of the file."""
        gw = self.gw
        gw.agents["typo1"] = ("agent", "typo1-s3cret")
        gw.sections = "[list mule]\n\n[plugin sim]\nbalanse = 5\nlatency_us = 100\n"
        text = gw.config_text()
        gw.write_config(text)
        out = self.sighup("the reload's outcome")
        self.assertIn("SIGHUP: reload refused, configuration unchanged: %s:%d: [plugin sim]: unknown key 'balanse'"
                      % (gw.conf_path, line_of(text, "balanse")), out)
        self.assertNotIn("reloaded", out)
        self.assertFalse(self.can_auth("typo1"), "an agent of a refused reload was applied")
        self.assertTrue(gw.running)

    def test_duplicate_key_refuses_reload(self):
        gw = self.gw
        gw.agents["dup1"] = ("agent", "dup1-s3cret")
        gw.gateway_opts = {"stop_ttl": "100"}
        text = gw.config_text() + "[gateway]\nstop_ttl = 200\n"
        gw.write_config(text)
        out = self.sighup("the reload's outcome")
        self.assertIn("reload refused, configuration unchanged: %s:%d: duplicate key 'stop_ttl'"
                      % (gw.conf_path, len(text.splitlines())), out)
        self.assertFalse(self.can_auth("dup1"))

    def test_keys_needing_restart_are_named(self):
        """Item 12: `[plugin sim] balance` (and listen addresses, journal_dir...) are not applied
        live: the log names them instead of claiming them reloaded. Live keys apply."""
        gw = self.gw
        gw.agents["live1"] = ("agent", "live1-s3cret")
        gw.sections = "[list mule]\n\n[list fresh]\n\n[plugin sim]\nbalance = 5\nlatency_us = 100\n"
        gw.gateway_opts = {"bank_deadline_ms": "7000", "journal_dir": os.path.join(gw.dir, "elsewhere"),
                           "stop_ttl": "3600"}
        gw.write_config()
        out = self.sighup("the reload")
        self.assertIn("configuration reloaded", out)
        m = re.search(r"WARN  SIGHUP: (\d+) changed key\(s\) not applied, needs a restart \(the running values "
                      r"stay\): (.*)", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(m.group(1), "3", out)
        self.assertEqual(sorted(m.group(2).split(", ")),
                         ["[gateway] bank_deadline_ms", "[gateway] journal_dir", "[plugin sim] balance"])
        self.assertTrue(self.can_auth("live1"), "agents apply live")
        with gw.client("olga") as c:
            self.assertIn("fresh", str(c.ok("LIST.INFO")), "new lists apply live")
        # stop_ttl applied live: a new STOP expires in an hour, not in the default 48 h.
        with gw.client("alice") as c:
            t0 = time.time() * 1000
            d = todict(c.ok("STOP", "rl-ttl-1", "BANK", "RLBANK", "ACCOUNT", "RL0009", "CASE", "RL"))
            st = todict(c.ok("STATUS", d["order_id"]))
        self.assertAlmostEqual(st["expires_at"] - t0, 3600 * 1000, delta=60 * 1000)
        # Back to the running values: nothing left to name (a list cannot be removed live).
        Reload.base_sections = BASE_SECTIONS + "[list fresh]\n\n"
        self.setUp()
        out = self.sighup("the reload back")
        self.assertIn("configuration reloaded", out)
        self.assertNotIn("needs a restart", out)

    def test_csv_header_skipped(self):
        """Item 12: `bank,account` as the first line was loaded as the account ACCOUNT at BANK."""
        gw = self.gw
        path = write(os.path.join(gw.dir, "hdr.csv"), "Bank,Account,Score\nHDRBANK,HDR0001,30\n", 0o644)
        with gw.client("olga") as ops, gw.client("scott") as scr:
            r = todict(ops.ok("LIST.LOAD", "mule", path))
            self.assertEqual(r["rows"], 1)
            self.assertEqual(todict(scr.ok("CHECK", "BANK", "ACCOUNT"))["verdict"], "CLEAR")
            self.assertEqual(todict(scr.ok("CHECK", "HDRBANK", "HDR0001"))["verdict"], "LISTED")
            # Anywhere else it is refused, with its line.
            r = ops.call("LIST.LOAD", "mule", "-", "HDRBANK,HDR0002\nbank,account\n")
            self.assertIsInstance(r, sgtest.RespError)
            self.assertIn("line 2", r.line)


if __name__ == "__main__":
    unittest.main(verbosity=2)
