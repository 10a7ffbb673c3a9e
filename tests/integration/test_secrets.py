"""Secrets never leave the gateway (issue 8 item 5): agents' secrets, their secret_hash
values (the Argon2id key A also keys the UDP frame MACs, so it is a secret too) and a
redis_streams plugin's Redis password appear in none of: the log file, INFO (every
section), /metrics, /healthz, `stopctl info`, `stopgated --check-config` output.

Exercised: AUTH right and wrong (known agent with a wrong secret, unknown agent, a secret
that is another agent's), HELLO 3 AUTH right and wrong, a STOP routed to the
redis_streams plugin (which AUTHs to a Redis that requires the password) and one routed to a
second instance with a wrong password (AUTH refused, logged), SIGHUP reload. The development
agent's secret, logged at start by design, is not part of this (no config = no dev agent).
"""
import os
import shutil
import signal
import subprocess
import time

import sgtest
from sgtest import STOPGATED, Client, Closed, Gateway, GatewayCase, RespError, todict, wait_until

REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")

AGENTS = {
    "alice": ("agent", "al1ce-S3cret-qz81"),
    "sam": ("supervisor", "s4m-S3cret-kp27"),
    "olga": ("ops", "0lga-S3cret-vv40"),
    "scott": ("screen", "sc0tt-S3cret-hh19"),
}
WRONG = "wr0ng-Gu3ss-jj42"
REDIS_PW = "r3dis-Passw0rd-xy93"
REDIS_PW_WRONG = "r3dis-Wr0ngPw-uv55"


def sections(redis_port):
    return """
[route RSB]
plugin = bankr
[route RSX]
plugin = bankx
[route default]
plugin = sim
[plugin sim]
latency_us = 200
[plugin bankr]
type = redis_streams
host = 127.0.0.1
port = %d
password = %s
reconnect_max_ms = 200
[plugin bankx]
type = redis_streams
host = 127.0.0.1
port = %d
password = %s
reconnect_max_ms = 200
""" % (redis_port, REDIS_PW, redis_port, REDIS_PW_WRONG)


def start_redis(port, password):
    """A private redis-server (no persistence) that requires `password`."""
    d = sgtest.make_temp_dir("sgtest-secrets-redis-")
    log = open(os.path.join(d, "redis.log"), "wb")
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", sgtest.HOST, "--save", "", "--appendonly",
                             "no", "--dir", d, "--requirepass", password, "--protected-mode", "no"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=sgtest._pdeathsig)
    log.close()

    def up():
        try:
            with Client(port, timeout=1) as c:
                return c.call("AUTH", password) == "OK"
        except (OSError, Closed, ValueError):
            return proc.poll() is not None  # exited: stop waiting, checked below
    wait_until(up, timeout=10, what="redis-server")
    if proc.poll() is not None:
        raise RuntimeError("redis-server exited with %d" % proc.returncode)
    return proc


def xlen(port, stream):
    with Client(port, timeout=5) as c:
        c.call("AUTH", REDIS_PW)
        return c.call("XLEN", stream)


class Secrets(GatewayCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = None
        cls.redis_port = sgtest.free_port()
        if REDIS_SERVER:
            cls.redis = start_redis(cls.redis_port, REDIS_PW)
        # else nobody listens there: the plugins only retry, and the rest still holds.
        cls.GW_ARGS = dict(agents=AGENTS, sections=sections(cls.redis_port))
        super(Secrets, cls).setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super(Secrets, cls).tearDownClass()
        finally:
            if cls.redis is not None:
                cls.redis.kill()
                cls.redis.wait(10)

    def secrets(self):
        out = {"the secret of %s" % a: s for a, (role, s) in AGENTS.items()}
        out["a wrong secret tried in AUTH"] = WRONG
        out["the redis_streams password"] = REDIS_PW
        out["the second redis_streams password"] = REDIS_PW_WRONG
        for a, (role, s) in AGENTS.items():
            h = sgtest.hash_secret(s)
            out["the secret_hash of %s" % a] = h
            # The part after the last '$' (the key itself), should a message print only that.
            out["the key in %s's secret_hash" % a] = h.rsplit("$", 1)[-1]
        return out

    def assertNoSecret(self, where, text):
        for what, s in self.secrets().items():
            self.assertNotIn(s, text, "%s appears in %s" % (what, where))

    def test_no_secret_anywhere(self):
        gw = self.gw
        # AUTH right, wrong, unknown agent, another agent's secret; HELLO AUTH right and wrong.
        with Client(gw.port) as c:
            self.assertErr(c.call("AUTH", "alice", WRONG), "WRONGPASS")
            self.assertErr(c.call("AUTH", "nobody", WRONG), "WRONGPASS")
            self.assertErr(c.call("AUTH", "alice", AGENTS["sam"][1]), "WRONGPASS")
            self.assertErr(c.call("HELLO", "3", "AUTH", "olga", WRONG), "WRONGPASS")
            self.assertEqual(c.call("AUTH", "alice", AGENTS["alice"][1]), "OK")
        for agent in AGENTS:
            with gw.client(agent, proto=3) as c:
                self.assertEqual(c.call("PING"), "PONG")
        # Orders through both redis_streams instances and the sim.
        with gw.client("alice") as c:
            tag = time.time_ns() % 10 ** 9
            for bank in ("RSB", "RSX", "SIMB"):
                d = todict(c.call("STOP", "sec-%d-%s" % (tag, bank), "BANK", bank, "ACCOUNT", "SEC%dX" % tag,
                                  "CASE", "SECRETS"))
                self.assertEqual(d["status"], "ACCEPTED")
        if self.redis is not None:
            # bankr reached Redis with the password (its instruction arrived); bankx was refused.
            wait_until(lambda: xlen(self.redis_port, "stopgate:RSB:instructions") >= 1, timeout=10,
                       what="the instruction on Redis (the plugin's AUTH accepted)")
            self.assertEqual(xlen(self.redis_port, "stopgate:RSX:instructions"), 0)
        # A reload re-reads agents and plugin sections.
        gw.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertServing()

        # Now look everywhere.
        with gw.client("olga") as c:
            info = ""
            for section in (None, "all", "everything", "server", "clients", "journal", "banks", "plugins", "lists"):
                r = c.call("INFO") if section is None else c.call("INFO", section)
                info += r.line if isinstance(r, RespError) else str(r)
            self.assertIn("plugin_bankr", info)
            self.assertNoSecret("INFO", info)
        st, body = sgtest.http_get(gw.metrics_port, "/metrics")
        self.assertEqual(st, 200)
        self.assertNoSecret("/metrics", body)
        st, health = sgtest.http_get(gw.metrics_port, "/healthz")
        self.assertNoSecret("/healthz", health)
        p = gw.stopctl("info", agent="olga")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNoSecret("stopctl info", p.stdout + p.stderr)
        p = subprocess.run([STOPGATED, "--check-config", "-c", gw.conf_path], capture_output=True, text=True,
                           timeout=30)
        self.assertNoSecret("stopgated --check-config", p.stdout + p.stderr)
        log = gw.log()
        if self.redis is not None:
            self.assertRegex(log, r"redis_streams .*AUTH refused", "the wrong password's refusal is not logged")
        self.assertRegex(log, r"(?i)auth.*(alice|nobody)", "failed AUTHs are not logged with the agent name")
        self.assertNoSecret("the log", log)
        print("checked: log %d bytes, INFO %d bytes, /metrics %d bytes, for %d secret strings"
              % (len(log), len(info), len(body), len(self.secrets())))

    def test_refused_password_not_echoed(self):
        """A password the plugin refuses (too long): the refusal names file:line and the key,
        never the value."""
        gw = sgtest.track(Gateway(name="secrets-badcfg", agents={"alice": AGENTS["alice"]},
                                  sections="[plugin bankq]\ntype = redis_streams\npassword = %s%s\n"
                                  % (REDIS_PW, "x" * 300)))
        p = subprocess.run([STOPGATED, "--check-config", "-c", gw.conf_path], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(p.returncode, 0, "a 319-byte password was accepted")
        self.assertIn("password", p.stderr)
        self.assertNotIn(REDIS_PW, p.stdout + p.stderr, "the refused password is echoed by --check-config")
        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertNotIn(REDIS_PW, log, "the refused password is echoed in the log")


if __name__ == "__main__":
    sgtest.main()
