"""Redis client habits (issue 14 item 4, docs/protocol.md "Redis clients"): what redis-cli,
hiredis and redis-py send on connect or by habit works, from a stdlib socket as they send it
and from redis-cli itself: CLIENT SETNAME|GETNAME|ID|SETINFO|INFO|LIST|KILL (LIST and KILL
reach the agent's own connections, every connection for ops), SELECT 0 (others refused),
DBSIZE (orders held), COMMAND COUNT|INFO|DOCS|LIST from the command table, INFO <section>
(unknown: empty), and HELLO answering with the real client id."""
import subprocess
import time

import sgtest
from sgtest import Client, GatewayCase, RespError, todict, wait_until

REDIS_CLI = "redis-cli"


class Habits(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 200\n")

    def cli(self, *args, agent="alice", stdin=None, timeout=20):
        argv = [REDIS_CLI, "-h", sgtest.HOST, "-p", str(self.gw.port), "--user", agent, "--pass",
                self.gw.secret(agent), "--no-auth-warning"] + list(args)
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)

    # -- handshakes, as the libraries send them
    def test_redis_py_handshake(self):
        """redis-py 5: HELLO 3 AUTH, CLIENT SETINFO LIB-NAME / LIB-VER, then SELECT, SETNAME."""
        c = Client(self.gw.port)
        try:
            h = c.call("HELLO", "3", "AUTH", "alice", self.gw.secret("alice"))
            c.proto = 3
            self.assertEqual(h["server"], "stopgate")
            self.assertEqual(h["proto"], 3)
            self.assertEqual(c.call("CLIENT", "SETINFO", "LIB-NAME", "redis-py"), "OK")
            self.assertEqual(c.call("CLIENT", "SETINFO", "LIB-VER", "5.0.1"), "OK")
            self.assertEqual(c.call("SELECT", "0"), "OK")
            self.assertEqual(c.call("CLIENT", "SETNAME", "fraud-desk-7"), "OK")
            self.assertEqual(c.call("CLIENT", "GETNAME"), "fraud-desk-7")
            # HELLO's id is the real client id, and CLIENT INFO shows what was set.
            self.assertEqual(c.call("CLIENT", "ID"), h["id"])
            info = c.call("CLIENT", "INFO")
            self.assertIn("id=%d " % h["id"], info)
            for field in ("name=fraud-desk-7 ", "lib-name=redis-py ", "lib-ver=5.0.1", "user=alice ", "resp=3 ", "db=0 "):
                self.assertIn(field, info)
        finally:
            c.close()

    def test_hiredis_handshake(self):
        """hiredis / redis-cli: AUTH, SELECT 0, CLIENT SETNAME; the handshake steps that come
        before AUTH (CLIENT SETINFO, HELLO SETNAME) are open too."""
        c = Client(self.gw.port)
        try:
            self.assertEqual(c.call("CLIENT", "SETINFO", "lib-name", "hiredis"), "OK")
            h = todict(c.call("HELLO", "2", "SETNAME", "early"))
            self.assertEqual(c.call("CLIENT", "GETNAME"), "early")
            self.assertEqual(c.call("AUTH", "alice", self.gw.secret("alice")), "OK")
            self.assertEqual(c.call("SELECT", "0"), "OK")
            self.assertEqual(c.call("CLIENT", "SETNAME", "app"), "OK")
            self.assertEqual(c.call("CLIENT", "ID"), h["id"])
            self.assertEqual(c.call("CLIENT", "SETNAME", ""), "OK")  # clears it, as in Redis
            self.assertIsNone(c.call("CLIENT", "GETNAME"))
            self.assertErr(c.call("SELECT", "1"), "ERR NOTFOUND")
            self.assertIn("SELECT 0", c.call("SELECT", "1").reason)
            self.assertErr(c.call("CLIENT", "SETNAME", "has space"), "ERR SYNTAX")
            self.assertErr(c.call("CLIENT", "SETNAME", "x" * 65), "ERR SYNTAX")
            self.assertErr(c.call("CLIENT", "SETINFO", "LIB-COLOUR", "red"), "ERR SYNTAX")
            self.assertErr(c.call("CLIENT", "NOSUCH"), "ERR SYNTAX")
        finally:
            c.close()

    def test_client_ids_unique_and_growing(self):
        ids = []
        for _ in range(3):
            with self.gw.client("alice") as c:
                ids.append(c.call("CLIENT", "ID"))
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(ids, sorted(ids))
        self.assertTrue(all(isinstance(i, int) and i > 0 for i in ids))

    # -- CLIENT LIST / KILL and who may reach which connection
    def test_client_list_and_kill_own_only_unless_ops(self):
        with self.gw.client("alice") as a1, self.gw.client("alice") as a2, \
                self.gw.client("sam") as s, self.gw.client("olga") as o:
            ida, ida2, ids, ido = (x.call("CLIENT", "ID") for x in (a1, a2, s, o))
            lst = a1.call("CLIENT", "LIST")
            self.assertIn("id=%d " % ida, lst)
            self.assertIn("id=%d " % ida2, lst)
            self.assertNotIn("id=%d " % ids, lst)  # another agent's connection
            self.assertNotIn("id=%d " % ido, lst)
            self.assertTrue(all("user=alice " in line for line in lst.strip().split("\n")))
            olst = o.call("CLIENT", "LIST")  # ops sees every connection
            for i in (ida, ida2, ids, ido):
                self.assertIn("id=%d " % i, olst)
            # alice may not kill sam's connection: refused, nothing closed.
            self.assertErr(a1.call("CLIENT", "KILL", "ID", str(ids)), "NOPERM")
            self.assertEqual(s.call("PING"), "PONG")
            # alice kills her own other connection.
            self.assertEqual(a1.call("CLIENT", "KILL", "ID", str(ida2)), 1)
            self.assertTrue(a2.is_closed())
            self.assertEqual(a1.call("CLIENT", "KILL", "ID", str(ida2)), 0)  # gone already
            # ops kills sam's, by address (the old form answers OK).
            addr = [w[5:] for line in olst.split("\n") if "id=%d " % ids in line for w in line.split()
                    if w.startswith("addr=")][0]
            self.assertEqual(o.call("CLIENT", "KILL", addr), "OK")
            self.assertTrue(s.is_closed())
            self.assertErr(o.call("CLIENT", "KILL", "127.0.0.1:1"), "ERR NOTFOUND")
            self.assertErr(o.call("CLIENT", "KILL", "BOGUS", "1"), "ERR SYNTAX")
            self.assertEqual(a1.call("PING"), "PONG")
        with Client(self.gw.port) as anon:
            self.assertErr(anon.call("CLIENT", "LIST"), "NOAUTH")

    def test_client_kill_self(self):
        c = self.gw.client("alice")
        me = c.call("CLIENT", "ID")
        self.assertEqual(c.call("CLIENT", "KILL", "ID", str(me), "SKIPME", "no"), 1)
        self.assertTrue(c.is_closed())
        c.close()

    # -- DBSIZE, COMMAND, INFO
    def test_dbsize_counts_orders(self):
        with self.gw.client("alice") as c:
            before = c.call("DBSIZE")
            self.assertIsInstance(before, int)
            acct = "HAB%d" % (time.time_ns() % 10 ** 9)
            c.ok("STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", acct, "CASE", "HABITS")
            self.assertEqual(c.call("DBSIZE"), before + 1)
            self.assertEqual(c.call("DBSIZE"), int(sgtest.parse_info(c.call("INFO", "orders"))["orders_total"]))

    def test_command_from_the_table(self):
        with self.gw.client("alice", proto=3) as c:
            n = c.call("COMMAND", "COUNT")
            every = c.call("COMMAND")
            self.assertEqual(len(every), n)
            names = {e[0] for e in every}
            for want in ("stop", "check", "mcheck", "list.add", "client", "select", "dbsize", "info", "command"):
                self.assertIn(want, names)
            self.assertEqual(sorted(c.call("COMMAND", "LIST")), sorted(names))
            stop, nosuch, check = c.call("COMMAND", "INFO", "stop", "nosuch", "CHECK")
            self.assertIsNone(nosuch)
            self.assertEqual(stop[0:2], ["stop", -8])  # at least 8 arguments
            self.assertIn("write", stop[2])
            self.assertEqual(check[0:2], ["check", 3])
            self.assertIn("readonly", check[2])
            self.assertEqual(len(stop), 10)  # Redis 7's ten fields
            docs = c.call("COMMAND", "DOCS", "check", "nosuch")
            self.assertEqual(list(docs.keys()), ["check"])
            self.assertIn("Screen", docs["check"]["summary"])
            self.assertEqual(len(c.call("COMMAND", "DOCS")), n)
            self.assertErr(c.call("COMMAND", "GETKEYS", "x"), "ERR SYNTAX")

    def test_info_sections(self):
        with self.gw.client("alice") as c:
            full = c.call("INFO")
            for sec in ("# Server", "# Clients", "# Orders", "# Journal", "# Banks"):
                self.assertIn(sec, full)
            orders = c.call("INFO", "orders")
            self.assertTrue(orders.startswith("# Orders\r\n"), orders)
            self.assertNotIn("# Server", orders)
            two = c.call("INFO", "SERVER", "clients")
            self.assertIn("# Server", two)
            self.assertIn("# Clients", two)
            self.assertNotIn("# Journal", two)
            self.assertEqual(c.call("INFO", "nosuch"), "")  # as Redis: empty for an unknown section
            self.assertEqual(c.call("INFO", "all").split("\r\n")[0], full.split("\r\n")[0])

    # -- redis-cli itself
    def test_redis_cli_db0_pipe_latency(self):
        r = self.cli("-n", "0", "ping")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "PONG"), r.stderr)
        r = self.cli("-n", "3", "ping")
        self.assertIn("SELECT 3 failed", r.stdout + r.stderr)
        r = self.cli("client", "setname", "cli")
        self.assertEqual(r.stdout.strip(), "OK")
        r = self.cli("info", "clients")
        self.assertIn("connected_clients:", r.stdout)
        r = self.cli("command", "count")
        self.assertGreater(int(r.stdout.strip()), 20)
        lines = "".join("PING\r\n" for _ in range(500)) + "ECHO done\r\n"
        r = self.cli("--pipe", stdin=lines)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("errors: 0, replies: 501", r.stdout)
        # --latency runs until stopped: bounded by timeout(1); it prints min/max/avg.
        argv = ["timeout", "3", REDIS_CLI, "-h", sgtest.HOST, "-p", str(self.gw.port), "--user", "alice",
                "--pass", self.gw.secret("alice"), "--no-auth-warning", "--latency", "-i", "0.2"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        self.assertIn(r.returncode, (0, 124), r.stderr)
        fields = r.stdout.split()
        self.assertGreaterEqual(len(fields), 4, r.stdout + r.stderr)
        self.assertGreater(int(fields[-1]), 0)  # samples taken


if __name__ == "__main__":
    sgtest.main()
