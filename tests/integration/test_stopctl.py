"""stopctl (SPEC §2): every subcommand against a live gateway, human and --json output, and the
exit codes 0 ok, 1 refused by the gateway, 2 usage, 3 cannot connect."""
import datetime
import json
import os
import re
import time

import sgtest
from sgtest import GatewayCase, free_port, run_stopctl


COMMANDS = ["stop", "freeze", "release", "extend", "confirm", "status", "case", "check", "info", "role", "list add",
            "list del", "list load", "list info", "journal verify", "journal dump", "hash-secret"]


def project_version():
    with open(os.path.join(sgtest.ROOT, "meson.build"), encoding="utf-8") as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


class Stopctl(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 200\n")

    def ctl(self, *args, **kw):
        return self.gw.stopctl(*args, **kw)

    def js(self, p):
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "--json prints one JSON object per answer: %r" % p.stdout)
        obj = json.loads(lines[0])
        self.assertIsInstance(obj, dict)
        return obj

    def acct(self, tag="S"):
        return "CTL%s%d" % (tag, time.time_ns() % 10 ** 12)

    def stop(self, account=None, rid=None, case="CTLC", extra=(), **kw):
        return self.ctl("stop", "--request-id", rid or self.rid("ctl"), "--bank", "CTLB", "--account",
                        account or self.acct(), "--case", case, *extra, **kw)

    def test_stop_json_and_duplicate(self):
        rid, a = self.rid("ctl"), self.acct()
        p = self.stop(a, rid, extra=("--amount", "1234", "--ttl", "600", "--reason", "R1", "--note", "a note"),
                      json_out=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        d = self.js(p)
        self.assertEqual(d["status"], "ACCEPTED")
        self.assertRegex(d["order_id"], r"^SG-\d+$")
        self.assertEqual(d["lists"], [])
        self.assertIsInstance(d["lsn"], int)
        p2 = self.stop(a, rid, extra=("--amount", "1234", "--ttl", "600", "--reason", "R1", "--note", "a note"),
                       json_out=True)
        self.assertEqual(p2.returncode, 0)
        self.assertEqual(self.js(p2)["status"], "DUPLICATE")
        self.assertEqual(self.js(p2)["order_id"], d["order_id"])
        # The order as given, seen over RESP.
        with self.gw.client("alice") as c:
            st = self.wait_state(c, d["order_id"], "CONFIRMED")
        self.assertEqual((st["amount"], st["frozen"], st["order_reason"], st["note"], st["agent"]),
                         (1234, 1234, "R1", "a note", "alice"))
        # Different fields, same request id: refused, exit 1, the code in JSON.
        p3 = self.stop(a, rid, extra=("--amount", "1"), json_out=True)
        self.assertEqual(p3.returncode, 1)
        e = self.js(p3)
        self.assertEqual(e["error"], "ERR IDEMPOTENCY")
        self.assertTrue(e["reason"])

    def test_stop_human(self):
        p = self.stop()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"order_id\s+SG-\d+")
        self.assertRegex(p.stdout, r"status\s+ACCEPTED")
        p = self.stop(account="BAD$ACCOUNT")
        self.assertEqual(p.returncode, 1)
        self.assertIn("ERR BADACCOUNT", p.stderr)

    def test_refusals_exit_1(self):
        for args, code in (
            (("stop", "--request-id", self.rid(), "--bank", "CTLB", "--account", "BAD!", "--case", "C"),
             "ERR BADACCOUNT"),
            (("stop", "--request-id", self.rid(), "--bank", "CTLB", "--account", "A1", "--case", "C",
              "--amount", "1.5"), "ERR BADAMOUNT"),
            (("status", "SG-99999999"), "ERR NOTFOUND"),
            (("case", "NO-SUCH-CASE"), "ERR NOTFOUND"),
            (("release", "--request-id", self.rid(), "SG-99999999"), "ERR NOTFOUND"),
            (("confirm", "SG-1"), "NOPERM"),  # alice is not a supervisor
            (("check", "CTLB", "BAD ACCOUNT!"), "ERR BADACCOUNT"),
        ):
            p = self.ctl(*args, json_out=True)
            self.assertEqual(p.returncode, 1, "%r: %s %s" % (args, p.stdout, p.stderr))
            self.assertEqual(self.js(p)["error"], code, args)

    def test_status_case_check_json(self):
        a = self.acct("J")
        case = "CTLCASE-%d" % time.time_ns()
        d = self.js(self.stop(a, case=case, extra=("--amount", "500"), json_out=True))
        with self.gw.client("alice") as c:
            self.wait_state(c, d["order_id"], "CONFIRMED")
        p = self.ctl("status", d["order_id"], json_out=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        st = self.js(p)
        self.assertEqual(st["order_id"], d["order_id"])
        self.assertEqual(st["state"], "CONFIRMED")
        self.assertEqual(st["cases"], [case])
        self.assertIsNone(st["parent"])
        self.assertEqual(st["children"], [])
        self.assertEqual(st["frozen"], 500)
        self.assertLessEqual(st["accepted_at"], st["sent_at"])
        self.assertLessEqual(st["sent_at"], st["answered_at"])
        p = self.ctl("status", d["order_id"])
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"state\s+CONFIRMED")
        cs = self.js(self.ctl("case", case, json_out=True))
        self.assertEqual(cs["case"], case)
        self.assertEqual(cs["frozen_total"], 500)
        self.assertEqual([o["order_id"] for o in cs["orders"]], [d["order_id"]])
        self.assertEqual(cs["orders"][0]["state"], "CONFIRMED")
        ch = self.js(self.ctl("check", "CTLB", a, json_out=True))
        self.assertEqual((ch["verdict"], ch["order_id"]), ("FROZEN", d["order_id"]))
        ch = self.js(self.ctl("check", "CTLB", a + "0", json_out=True))
        self.assertEqual(ch["verdict"], "CLEAR")
        self.assertIsNone(ch["order_id"])

    def test_freeze_release_extend(self):
        p = self.ctl("freeze", "--request-id", self.rid(), "--bank", "CTLB", "--account", self.acct("F"),
                     "--case", "CF")
        self.assertEqual(p.returncode, 2, "freeze without --doc is a usage error")
        d = self.js(self.ctl("freeze", "--request-id", self.rid(), "--bank", "CTLB", "--account", self.acct("F"),
                             "--case", "CF", "--doc", "COURT-1", "--ttl", "3600", json_out=True))
        self.assertEqual(d["status"], "ACCEPTED")
        st = self.js(self.ctl("status", d["order_id"], json_out=True))
        self.assertEqual((st["kind"], st["doc"]), ("FREEZE", "COURT-1"))
        rid = self.rid("ext")
        e = self.js(self.ctl("extend", "--request-id", rid, d["order_id"], "--ttl", "7200", json_out=True))
        self.assertEqual(e["status"], "EXTENDED")
        self.assertGreater(e["expires_at"], st["expires_at"])
        self.assertEqual(self.ctl("extend", "--request-id", rid, d["order_id"]).returncode, 2)  # --ttl required
        self.assertEqual(self.ctl("extend", d["order_id"], "--ttl", "5").returncode, 2)  # --request-id required
        rrid = self.rid("rel")
        # A judicial FREEZE: released only by a supervisor, with --doc (SPEC §4.2).
        p = self.ctl("release", "--request-id", rrid, d["order_id"], "--reason", "COURT_LIFTED", json_out=True)
        self.assertEqual((p.returncode, self.js(p)["error"]), (1, "NOPERM"))
        p = self.ctl("release", "--request-id", rrid, d["order_id"], "--reason", "COURT_LIFTED", agent="sam",
                     json_out=True)
        self.assertEqual((p.returncode, self.js(p)["error"]), (1, "ERR SYNTAX"))
        rel = ("release", "--request-id", rrid, d["order_id"], "--reason", "COURT_LIFTED", "--doc", "COURT-1-LIFT")
        r = self.js(self.ctl(*rel, agent="sam", json_out=True))
        self.assertEqual(r["status"], "RELEASED")
        r = self.js(self.ctl(*rel, agent="sam", json_out=True))
        self.assertEqual(r["status"], "DUPLICATE")
        self.assertEqual(self.js(self.ctl("status", d["order_id"], json_out=True))["release_doc"], "COURT-1-LIFT")
        p = self.ctl("release", "--request-id", self.rid(), d["order_id"], "--doc", "X", agent="sam", json_out=True)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(self.js(p)["error"], "ERR STATE")
        self.assertEqual(self.js(self.ctl("status", d["order_id"], json_out=True))["state"], "RELEASED")

    def test_info(self):
        p = self.ctl("info")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("orders_total:", p.stdout)
        # --json: an object of sections, integers as numbers (issue 14: it was one string).
        j = self.js(self.ctl("info", json_out=True))
        self.assertIsInstance(j["orders"]["orders_total"], int)
        self.assertEqual(j["server"]["phase"], "running")
        self.assertEqual(j["server"]["stopgate_version"], project_version())
        self.assertIsInstance(j["journal"]["durable_lsn"], int)
        for name, sec in j.items():
            self.assertIsInstance(sec, dict, name)

    def test_list_info_json_objects(self):
        # The whole table: "lists" is an object name -> entries, not ["protected", 0].
        j = self.js(self.ctl("list", "info", json_out=True))
        self.assertIsInstance(j["lists"], dict)
        self.assertIn("protected", j["lists"])
        self.assertIsInstance(j["lists"]["protected"], int)
        self.assertIsInstance(j["capacity"], int)
        one = self.js(self.ctl("list", "info", "protected", json_out=True))
        self.assertEqual(one["list"], "protected")
        self.assertIsInstance(one["entries"], int)

    def test_opt_equals_value_and_version(self):
        a = self.acct("EQ")
        p = run_stopctl("--host=127.0.0.1", "--port=%d" % self.gw.port, "--agent=alice", "--json", "stop",
                        "--request-id=%s" % self.rid("eq"), "--bank=CTLB", "--account=" + a, "--case=CTLEQ",
                        "--amount=77", secret=self.gw.secret("alice"))
        self.assertEqual(p.returncode, 0, p.stderr)
        d = self.js(p)
        self.assertEqual(d["status"], "ACCEPTED")
        st = self.js(self.ctl("status", d["order_id"], json_out=True))
        self.assertEqual((st["account"], st["amount"]), (a, 77))
        # Options may follow the positional arguments (getopt_long permutes).
        p = self.ctl("status", d["order_id"], "--json")
        self.assertEqual(self.js(p)["order_id"], d["order_id"])
        v = run_stopctl("--version")
        self.assertEqual(v.returncode, 0)
        self.assertEqual(v.stdout.strip(), "stopctl (stopgate) %s" % project_version())

    def test_human_times_iso8601(self):
        d = self.js(self.stop(json_out=True))
        with self.gw.client("alice") as c:
            self.wait_state(c, d["order_id"], "CONFIRMED")
        js = self.js(self.ctl("status", d["order_id"], json_out=True))
        p = self.ctl("status", d["order_id"])
        self.assertEqual(p.returncode, 0, p.stderr)
        m = re.search(r"^accepted_at\s+(\S+)$", p.stdout, re.M)
        self.assertTrue(m, p.stdout)
        self.assertRegex(m.group(1), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        self.assertEqual(int(when.timestamp() * 1000 + 0.5), js["accepted_at"])  # the same instant
        self.assertRegex(p.stdout, r"expires_at\s+\d{4}-")
        self.assertNotRegex(p.stdout, r"_at\s+\d{13}\b")

    def test_errors_name_the_word(self):
        for args, word in ((("frobnicate",), "'frobnicate'"),
                           (("stop", "--request-id", "x", "--bogus=1"), "'--bogus'"),
                           (("stop", "--request-id", "x", "--bank", "B", "--account", "A"), "'case'"),
                           (("status", "SG-1", "SG-2"), "'SG-2'"),
                           (("list", "frob"), "'frob'"),
                           (("journal", "verify", "--nope"), "'--nope'"),
                           (("-p", "notaport", "info"), "'notaport'"),
                           (("--wat=1", "info"), "'--wat'")):
            p = run_stopctl(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(word, p.stderr, args)

    def test_every_command_has_help(self):
        for cmd in COMMANDS:
            p = run_stopctl(*cmd.split(), "--help")
            self.assertEqual(p.returncode, 0, "%s --help: %s" % (cmd, p.stderr))
            self.assertTrue(p.stdout.startswith("usage: stopctl [GLOBAL OPTIONS] %s" % cmd), p.stdout)
            self.assertIn("--json", p.stdout)
            h = run_stopctl("help", *cmd.split())
            self.assertEqual(h.stdout, p.stdout)
        # The global help lists exactly these commands.
        g = run_stopctl("--help").stdout
        listed = [re.match(r"  (\S+(?: \S+)?)\s\s", l).group(1) for l in g.split("commands")[1].splitlines()[1:]
                  if l.startswith("  ")]
        self.assertEqual(sorted(listed), sorted(COMMANDS))

    def test_journal_verify_json(self):
        self.stop()
        p = run_stopctl("journal", "verify", "--json", self.gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        j = self.js(p)
        self.assertEqual((j["ok"], j["journal"], j["problem"]), (True, self.gw.journal_dir, None))
        self.assertGreaterEqual(j["segments"], 1)
        self.assertGreaterEqual(j["records"], 1)
        self.assertIsInstance(j["closed"], bool)
        p = run_stopctl("--json", "journal", "verify", "/nonexistent-sg-journal")
        self.assertEqual(p.returncode, 1)
        j = self.js(p)
        self.assertEqual(j["ok"], False)
        self.assertIn("/nonexistent-sg-journal", j["problem"])

    def test_usage_exit_2(self):
        for args in ((), ("frobnicate",), ("stop",), ("stop", "--request-id", "x", "--bank", "B"),
                     ("stop", "--request-id", "x", "--bank", "B", "--account", "A", "--case", "C", "--bogus", "1"),
                     ("status",), ("status", "SG-1", "SG-2"), ("check", "B"), ("hash-secret",),
                     ("journal", "verify"), ("release", "--request-id", "x"), ("list", "frob")):
            p = run_stopctl(*args, port=self.gw.port)
            self.assertEqual(p.returncode, 2, "%r -> %d %s" % (args, p.returncode, p.stderr))
            self.assertIn("usage", p.stderr.lower() + p.stdout.lower(), args)
        for glob in (["-p", "notaport", "info"], ["-p", "70000", "info"], ["--wat", "info"]):
            p = run_stopctl(*glob)
            self.assertEqual(p.returncode, 2, glob)
        self.assertEqual(run_stopctl("--help").returncode, 0)

    def test_cannot_connect_exit_3(self):
        port = free_port()  # nothing listens there
        p = run_stopctl("info", port=port, agent="alice", secret="x")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("connect", p.stderr)
        p = run_stopctl("stop", "--request-id", "r", "--bank", "B", "--account", "A1", "--case", "C", port=port,
                        agent="alice", secret="x")
        self.assertEqual(p.returncode, 3)

    def test_auth_via_environment(self):
        # No --agent: the gateway refuses (NOAUTH) -> 1.
        p = run_stopctl("info", port=self.gw.port, json_out=True)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(self.js(p)["error"], "NOAUTH")
        # --agent without STOPGATE_SECRET: usage.
        p = run_stopctl("info", port=self.gw.port, agent="alice")
        self.assertEqual(p.returncode, 2)
        self.assertIn("STOPGATE_SECRET", p.stderr)
        # Wrong secret: refused.
        p = run_stopctl("info", port=self.gw.port, agent="alice", secret="wrong")
        self.assertEqual(p.returncode, 1)
        self.assertIn("WRONGPASS", p.stderr)
        # The right one from the environment.
        p = run_stopctl("info", port=self.gw.port, agent="alice", secret=self.gw.secret("alice"))
        self.assertEqual(p.returncode, 0, p.stderr)
        # Roles apply: a screening agent cannot order.
        p = self.ctl("stop", "--request-id", self.rid(), "--bank", "B", "--account", "A1", "--case", "C",
                     agent="scott", json_out=True)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(self.js(p)["error"], "NOPERM")

    def test_hash_secret(self):
        p = run_stopctl("hash-secret", "abc")
        self.assertEqual(p.returncode, 0)
        h = p.stdout.strip()
        self.assertNotEqual(h, "abc")
        self.assertEqual(len(h.splitlines()), 1)
        h2 = run_stopctl("hash-secret", "abc").stdout.strip()
        self.assertNotEqual(h, h2, "the hash is salted")
        j = self.js(run_stopctl("--json", "hash-secret", "abc"))
        self.assertTrue(j["secret_hash"].startswith(h.split("$")[0] + "$"), j)


if __name__ == "__main__":
    sgtest.main()
