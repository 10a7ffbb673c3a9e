"""stopgated as a process (SPEC §2, §2a, §6): configuration checking (file:line: reason,
--check-config), clean shutdown on SIGTERM/SIGINT that answers what was accepted, SIGHUP,
routing banks to plugin instances, max_clients."""
import os
import signal
import socket
import subprocess
import time

import sgtest
from sgtest import STOPGATED, Client, Closed, Gateway, GatewayCase, encode, hash_secret, todict


def check_config(path):
    return subprocess.run([STOPGATED, "--check-config", "-c", path], capture_output=True, text=True, timeout=30)


class Config(GatewayCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = None

    def conf(self, text, name="c.conf"):
        d = sgtest.make_temp_dir("sgtest-conf-")
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_check_config_ok(self):
        gw = Gateway(name="cfgok")
        p = check_config(gw.conf_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ok", p.stdout)
        self.assertFalse(os.path.exists(gw.journal_dir), "--check-config must not start anything")
        # The shipped example config is valid too.
        example = os.path.join(sgtest.ROOT, "config", "stopgate.conf")
        if os.path.exists(example):
            p = check_config(example)
            self.assertEqual(p.returncode, 0, p.stderr)

    def test_refusals_name_file_and_line(self):
        cases = [
            ("[gateway]\nlisten = 127.0.0.1:1\nfrobnicate = 3\n", 3, "frobnicate"),
            ("[gateway]\n\n; comment\nlisten = not-an-address\n", 4, "listen"),
            ("[gateway]\nstop_ttl = -5\n", 2, "stop_ttl"),
            ("[gateway]\ncurrency = EURO\n", 2, "currency"),
            ("[gateway]\nallow_anonymous_check = perhaps\n", 2, "allow_anonymous_check"),
            ("[cascade]\nmax_depth = lots\n", 2, "max_depth"),
            ("[nosuchsection]\nx = 1\n", 2, "nosuchsection"),
            ("[agent eve]\nrole = wizard\nsecret_hash = %s\n" % hash_secret("eve-s3cret"), 2, "wizard"),
        ]
        for text, line, word in cases:
            path = self.conf(text)
            p = check_config(path)
            self.assertEqual(p.returncode, 1, "%r accepted" % text)
            self.assertIn("%s:%d:" % (path, line), p.stderr, "%r -> %s" % (text, p.stderr))
            self.assertIn(word, p.stderr)

    def test_first_error_reported_with_its_own_line(self):
        """Two mistakes: the message pairs the first one's line with the first one's reason."""
        path = self.conf("[gateway]\nstop_ttl = -5\ncurrency = EURO\n")
        p = check_config(path)
        self.assertEqual(p.returncode, 1)
        line = [l for l in p.stderr.splitlines() if path in l][0]
        if "%s:2:" % path in line:
            self.assertIn("stop_ttl", line, "line 2 is stop_ttl, but the reason given is: " + line)
        else:
            self.assertIn("%s:3:" % path, line)
            self.assertIn("currency", line)

    def test_bad_plugin_value(self):
        """A bad value in a [plugin] section: refused at start with file:line, and (SPEC §2a)
        --check-config validates it too, without starting."""
        gw = sgtest.track(Gateway(name="badplugin", sections="[plugin sim]\nlatency_us = fast\n"))
        line = gw.config_text().splitlines().index("latency_us = fast") + 1
        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:%d:" % (gw.conf_path, line), log)
        self.assertIn("latency_us", log)
        p = check_config(gw.conf_path)
        self.assertEqual(p.returncode, 1, "--check-config accepted a config that stopgated refuses to start with")
        self.assertIn("%s:%d:" % (gw.conf_path, line), p.stderr)

    def test_bad_secret_hash(self):
        path = self.conf("[agent eve]\nrole = agent\nsecret_hash = plaintext-password\n")
        p = check_config(path)
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s:3:" % path, p.stderr)

    def test_start_refused_on_bad_config(self):
        gw = sgtest.track(Gateway(name="badcfg", gateway={"bogus_key": "1"}))
        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("bogus_key", log)
        self.assertIn(gw.conf_path + ":", log)

    def test_port_in_use_refused(self):
        s = socket.socket()
        s.bind((sgtest.HOST, 0))
        s.listen(1)
        try:
            gw = sgtest.track(Gateway(name="busy"))
            gw.port = s.getsockname()[1]
            gw.write_config()
            gw.ever_ready = True  # do not let the harness pick another port
            rc, log = gw.start_expect_failure()
            self.assertNotEqual(rc, 0)
            self.assertIn(str(gw.port), log)
        finally:
            s.close()


class Signals(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 200\n")

    def test_sigterm_answers_accepted_and_exits_0(self):
        gw = self.gw
        tag = time.time_ns() % 10 ** 9
        c = gw.client("alice")
        n = 3000
        c.send_raw(b"".join(encode("STOP", "sig-%d-%d" % (tag, i), "BANK", "SB", "ACCOUNT", "SIG%d%04dX" % (tag, i),
                                   "CASE", "SC") for i in range(n)))
        first = todict(c.read())
        self.assertEqual(first["status"], "ACCEPTED")
        gw.proc.send_signal(signal.SIGTERM)
        acked = [first]
        try:
            while len(acked) < n:
                r = c.read()
                if isinstance(r, sgtest.RespError):
                    self.assertEqual(r.code, "ERR BUSY", r)  # refused while draining: fine, and said so
                    acked.append(None)
                    continue
                acked.append(todict(r))
        except (Closed, ConnectionResetError):
            pass
        c.close()
        self.assertEqual(gw.proc.wait(20), 0)
        self.assertIn("draining", gw.log_since_start())
        self.assertNotIn("drain timed out", gw.log_since_start())
        gw.start()
        with gw.client("alice") as c:
            for i, d in enumerate(acked):
                if d is None:
                    continue
                st = self.status(c, d["order_id"])
                self.assertEqual(st["request_id"], "sig-%d-%d" % (tag, i))

    def test_sigint_exits_0(self):
        gw = self.gw
        self.assertEqual(gw.stop(signal.SIGINT), 0)
        gw.start()
        self.assertServing()

    def test_sighup_keeps_running(self):
        gw = self.gw
        pid = gw.proc.pid
        gw.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        self.assertTrue(gw.running)
        self.assertEqual(gw.proc.pid, pid)
        self.assertServing()


class Reload(GatewayCase):
    def test_sighup_reloads_agents(self):
        """SPEC §2: SIGHUP reloads lists and agents. A new agent added to the config can log in
        after SIGHUP without a restart, and a removed one no longer can."""
        gw = self.gw
        pid = gw.proc.pid
        gw.agents["newbie"] = ("agent", "newbie-s3cret")
        del gw.agents["bert"]
        gw.write_config()
        with Client(gw.port) as c:
            self.assertErr(c.call("AUTH", "newbie", "newbie-s3cret"), "WRONGPASS")
        gw.proc.send_signal(signal.SIGHUP)

        def newbie_ok():
            with Client(gw.port) as c:
                return c.call("AUTH", "newbie", "newbie-s3cret") == "OK"

        try:
            sgtest.wait_until(newbie_ok, timeout=5, interval=0.1, what="the new agent to be accepted after SIGHUP")
        finally:
            self.assertEqual(gw.proc.pid, pid)
        with Client(gw.port) as c:
            self.assertErr(c.call("AUTH", "bert", sgtest.DEFAULT_AGENTS["bert"][1]), "WRONGPASS")


class Routing(GatewayCase):
    GW_ARGS = dict(sections="""
[route AAA1]
plugin = bank_a
[route BB*]
plugin = bank_b
[route BBX9]
plugin = bank_a
[plugin bank_a]
type = sim
balance = 111
latency_us = 100
[plugin bank_b]
type = sim
balance = 222
latency_us = 100
""")

    def test_routes(self):
        with self.gw.client("alice") as c:
            frozen = {}
            for bank in ("AAA1", "BB", "BB77", "BBX9"):
                d = todict(c.ok("STOP", self.rid(), "BANK", bank, "ACCOUNT", "ROUTE0001X", "CASE", "RT"))
                frozen[bank] = self.wait_state(c, d["order_id"], "CONFIRMED")["frozen"]
            self.assertEqual(frozen, {"AAA1": 111, "BB": 222, "BB77": 222, "BBX9": 111})
            # No default route: an unrouted bank is refused and nothing is created.
            total = self.gw.info(c)["orders_total"]
            self.assertErr(c.call("STOP", self.rid(), "BANK", "CCC", "ACCOUNT", "ROUTE0001X", "CASE", "RT"),
                           "ERR UNKNOWNBANK")
            self.assertErr(c.call("STOP", self.rid(), "BANK", "AAA", "ACCOUNT", "ROUTE0001X", "CASE", "RT"),
                           "ERR UNKNOWNBANK")
            self.assertEqual(self.gw.info(c)["orders_total"], total)
            info = c.ok("INFO")
            self.assertRegex(info, r"plugin_bank_a:type=sim,submitted=2,")
            self.assertRegex(info, r"plugin_bank_b:type=sim,submitted=2,")

    def test_unknown_plugin_type_refused(self):
        gw = sgtest.track(Gateway(name="noplugin", sections="[route default]\nplugin = nosuch\n"))
        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("nosuch", log)


class MaxClients(GatewayCase):
    GW_ARGS = dict(gateway={"max_clients": "4"})

    def test_extra_client_refused_busy(self):
        held = [self.gw.client("alice") for _ in range(4)]
        try:
            extra = Client(self.gw.port, timeout=5)
            try:
                r = extra.read()
                self.assertErr(r, "ERR BUSY")
                self.assertTrue(extra.is_closed(3))
            finally:
                extra.close()
            for c in held:
                self.assertEqual(c.call("PING"), "PONG")
        finally:
            for c in held:
                c.close()
        # Slots are freed when clients leave.
        sgtest.wait_until(lambda: self.gw.info()["connected_clients"] == "1", timeout=5, what="clients gone")
        self.assertServing()


if __name__ == "__main__":
    sgtest.main()
