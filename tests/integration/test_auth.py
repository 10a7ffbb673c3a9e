"""Authentication and roles (SPEC §4.1, §4.2): NOAUTH before AUTH, WRONGPASS, NOPERM per role,
HELLO 3 AUTH, anonymous CHECK when configured, the development agent with no config."""
import os

import sgtest
from sgtest import Client, Gateway, GatewayCase, RespError, todict

STOP = ["STOP", "auth-rid-1", "BANK", "SGTB", "ACCOUNT", "AUTH0001X", "CASE", "AC"]


class Auth(GatewayCase):
    def test_noauth_before_auth(self):
        total0 = self.gw.info()["orders_total"]
        with Client(self.gw.port) as c:
            # Open to everyone: PING, HELLO (without AUTH).
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(c.call("PING", "hi"), "hi")
            for cmd in (STOP, ["FREEZE", "r", "BANK", "B", "ACCOUNT", "A1", "CASE", "C", "DOC", "D"],
                        ["RELEASE", "r", "SG-1"], ["EXTEND", "r", "SG-1", "TTL", "5"], ["STATUS", "SG-1"],
                        ["CASE", "C"], ["CHECK", "SGTB", "A1"], ["MCHECK", "SGTB", "A1"], ["INFO"],
                        ["CONFIRM", "SG-1"]):
                self.assertErr(c.call(*cmd), "NOAUTH", "%s before AUTH" % cmd[0])
            # Nothing was created by the refused STOP.
            self.assertEqual(self.gw.info()["orders_total"], total0)
            c.auth("alice", self.gw.secret("alice"))
            self.assertEqual(todict(c.ok("CHECK", "SGTB", "AUTH0001X"))["verdict"], "CLEAR")
            d = todict(c.ok(*STOP))
            self.assertEqual(d["status"], "ACCEPTED")
            self.assertEqual(self.status(c, d["order_id"])["agent"], "alice")

    def test_wrongpass(self):
        with Client(self.gw.port) as c:
            self.assertErr(c.call("AUTH", "alice", "not-the-secret"), "WRONGPASS")
            self.assertErr(c.call("AUTH", "nobody", self.gw.secret("alice")), "WRONGPASS")
            self.assertErr(c.call("AUTH", "alice", self.gw.secret("sam")), "WRONGPASS")
            self.assertErr(c.call("AUTH", "alice", ""), "WRONGPASS")
            # Still unauthenticated, and the connection is still usable.
            self.assertErr(c.call("STATUS", "SG-1"), "NOAUTH")
            self.assertEqual(c.call("AUTH", "alice", self.gw.secret("alice")), "OK")
            self.assertNotIsInstance(c.call("INFO"), RespError)
        self.assertIn("auth failed", self.gw.log())

    def test_auth_syntax(self):
        with Client(self.gw.port) as c:
            self.assertErr(c.call("AUTH", "alice"), "ERR SYNTAX")
            self.assertErr(c.call("AUTH"), "ERR SYNTAX")

    def test_reauth_switches_agent(self):
        with self.gw.client("alice") as c:
            self.assertErr(c.call("CONFIRM", "SG-1"), "NOPERM")
            c.auth("sam", self.gw.secret("sam"))
            r = c.call("CONFIRM", "SG-999999")
            self.assertFalse(isinstance(r, RespError) and r.code == "NOPERM", r)

    def test_failed_reauth_keeps_nothing_extra(self):
        with self.gw.client("scott") as c:
            self.assertErr(c.call("AUTH", "sam", "wrong"), "WRONGPASS")
            self.assertErr(c.call(*STOP[:1] + ["r-x"] + STOP[2:]), "NOPERM")

    def test_roles(self):
        gw = self.gw
        with gw.client("alice") as a:
            d = todict(a.ok("STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", "ROLES0001X", "CASE", "RC"))
        oid = d["order_id"]
        stop = lambda: ["STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", "ROLES0002X", "CASE", "RC"]
        release = lambda: ["RELEASE", self.rid(), "SG-999999"]
        # role -> commands refused with NOPERM
        refused = {
            "scott": [stop(), ["STATUS", oid], ["CASE", "RC"], ["INFO"], ["CONFIRM", oid], release(),
                      ["EXTEND", self.rid(), oid, "TTL", "5"],
                      ["FREEZE", self.rid(), "BANK", "SGTB", "ACCOUNT", "R1", "CASE", "RC", "DOC", "D"]],
            "olga": [stop(), ["CONFIRM", oid], release()],
            "alice": [["CONFIRM", oid]],
            "bert": [stop(), ["STATUS", oid], ["CHECK", "SGTB", "X1"], ["MCHECK", "SGTB", "X1"], ["INFO"],
                     ["CASE", "RC"], ["CONFIRM", oid]],
        }
        allowed = {
            "scott": [["CHECK", "SGTB", "ROLES0001X"], ["MCHECK", "SGTB", "ROLES0001X"]],
            "olga": [["STATUS", oid], ["CHECK", "SGTB", "X1"], ["INFO"], ["CASE", "RC"]],
            "alice": [stop(), ["STATUS", oid], ["CHECK", "SGTB", "X1"], ["CASE", "RC"]],
            "sam": [stop(), ["STATUS", oid], ["CHECK", "SGTB", "X1"], ["CASE", "RC"], ["INFO"]],
        }
        for agent, cmds in refused.items():
            with gw.client(agent) as c:
                for cmd in cmds:
                    self.assertErr(c.call(*cmd), "NOPERM", "%s: %s" % (agent, cmd[0]))
                self.assertEqual(c.call("PING"), "PONG")
        for agent, cmds in allowed.items():
            with gw.client(agent) as c:
                for cmd in cmds:
                    r = c.call(*cmd)
                    self.assertNotIsInstance(r, RespError, "%s: %s -> %r" % (agent, cmd[0], r))
        # CONFIRM is a supervisor's: not NOPERM for sam (the order is not HELD: ERR STATE).
        with gw.client("sam") as c:
            self.assertErr(c.call("CONFIRM", oid), "ERR STATE")
            self.assertErr(c.call("CONFIRM", "SG-999999"), "ERR NOTFOUND")
        # The screen role's CHECK sees the live order.
        with gw.client("scott") as c:
            self.assertEqual(todict(c.ok("CHECK", "SGTB", "ROLES0001X"))["order_id"], oid)

    def test_hello3_auth(self):
        with Client(self.gw.port) as c:
            r = c.call("HELLO", "3", "AUTH", "alice", self.gw.secret("alice"))
            self.assertIsInstance(r, sgtest.Map)
            self.assertEqual(r["proto"], 3)
            self.assertEqual(r["server"], "stopgate")
            c.proto = 3
            st = c.call("STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", "HELLO0001X", "CASE", "HC")
            self.assertIsInstance(st, sgtest.Map)
            self.assertEqual(st["status"], "ACCEPTED")

    def test_hello_wrongpass_and_noproto(self):
        with Client(self.gw.port) as c:
            self.assertErr(c.call("HELLO", "3", "AUTH", "alice", "wrong"), "WRONGPASS")
            # Not authenticated, protocol unchanged (RESP2 reply for the error path and PING).
            self.assertErr(c.call("STATUS", "SG-1"), "NOAUTH")
            self.assertErr(c.call("HELLO", "4"), "NOPROTO")
            self.assertErr(c.call("HELLO", "x"), "NOPROTO")
            r = c.call("HELLO", "2", "AUTH", "alice", self.gw.secret("alice"))
            self.assertIsInstance(r, list)
            self.assertEqual(todict(r)["proto"], 2)
            self.assertNotIsInstance(c.call("STATUS", "SG-999999"), sgtest.Map)

    def test_hello_without_version_auth(self):
        with Client(self.gw.port) as c:
            r = c.call("HELLO")
            self.assertEqual(todict(r)["proto"], 2)
            self.assertErr(c.call("INFO"), "NOAUTH")


class AnonymousCheck(GatewayCase):
    GW_ARGS = dict(gateway={"allow_anonymous_check": "yes"})

    def test_anonymous_check_only(self):
        with Client(self.gw.port) as c:
            self.assertEqual(todict(c.ok("CHECK", "SGTB", "ANON0001X"))["verdict"], "CLEAR")
            self.assertEqual(len(c.ok("MCHECK", "SGTB", "ANON0001X", "SGTB", "ANON0002X")), 2)
            self.assertErr(c.call("STOP", "r", "BANK", "SGTB", "ACCOUNT", "ANON0001X", "CASE", "C"), "NOAUTH")
            self.assertErr(c.call("STATUS", "SG-1"), "NOAUTH")
            self.assertErr(c.call("INFO"), "NOAUTH")

    def test_still_noperm_for_authenticated_bank_role(self):
        with self.gw.client("bert") as c:
            self.assertErr(c.call("CHECK", "SGTB", "ANON0001X"), "NOPERM")


class DevAgent(GatewayCase):
    """No config file at all: default ports, ./var/journal, a development agent."""

    @classmethod
    def setUpClass(cls):
        for port in (7379, 9379):
            if sgtest.port_in_use(port):
                raise sgtest.unittest.SkipTest("default port %d is busy on this host" % port)
        cls.gw = None

    def test_dev_agent_with_env_secret(self):
        gw = sgtest.track(Gateway(no_config=True, dev_secret="dev-s3cret-for-tests", name="dev"))
        try:
            gw.start()
            log = gw.log()
            self.assertIn("ready: listening on 127.0.0.1:7379", log)
            self.assertEqual(gw.dev_secret_from_log(), "dev-s3cret-for-tests")
            with Client(7379) as c:
                self.assertErr(c.call("STATUS", "SG-1"), "NOAUTH")
                self.assertErr(c.call("AUTH", "dev", "wrong"), "WRONGPASS")
                self.assertEqual(c.call("AUTH", "dev", "dev-s3cret-for-tests"), "OK")
                d = todict(c.ok("STOP", "dev-1", "BANK", "SGTB", "ACCOUNT", "DEV0001X", "CASE", "DC"))
                self.assertEqual(d["status"], "ACCEPTED")
                self.wait_state(c, d["order_id"], "CONFIRMED")
                self.assertNotIsInstance(c.call("INFO"), RespError)
                self.assertErr(c.call("CONFIRM", d["order_id"]), "ERR STATE")  # dev may confirm: no NOPERM
            st, body = sgtest.http_get(9379, "/healthz")
            self.assertEqual(st, 200)
            # The journal is ./var/journal under the working directory.
            self.assertTrue(any(f.endswith(".sgj") for f in os.listdir(os.path.join(gw.dir, "var", "journal"))))
        finally:
            gw.close()

    def test_dev_agent_random_secret(self):
        gw = sgtest.track(Gateway(no_config=True, name="devrand"))
        try:
            gw.start()
            secret = gw.dev_secret_from_log()
            self.assertTrue(secret and len(secret) >= 16, "dev secret printed at start-up: %r" % secret)
            with Client(7379) as c:
                self.assertEqual(c.call("AUTH", "dev", secret), "OK")
                self.assertEqual(todict(c.ok("CHECK", "SGTB", "DEV0001X"))["verdict"], "CLEAR")
        finally:
            gw.close()
        gw2 = sgtest.track(Gateway(no_config=True, name="devrand2"))
        try:
            gw2.start()
            self.assertNotEqual(gw2.dev_secret_from_log(), secret, "the dev secret must be random per start")
        finally:
            gw2.close()


if __name__ == "__main__":
    sgtest.main()
