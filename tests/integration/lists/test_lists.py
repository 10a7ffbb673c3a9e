#!/usr/bin/env python3
"""
Integration tests of the fraud lists against a real stopgated (issue 5; SPEC §3, §4.1, §5):
LIST.ADD / LIST.DEL / LIST.LOAD / LIST.INFO, CHECK / MCHECK verdicts, the `lists` field of
STOP answers, protected accounts (HELD, CONFIRM by a supervisor), auto_stop lists (one STOP
per account however many hits), entry TTLs, bad input, a 1,000,000-row LIST.LOAD, and
persistence: kill -9, a removed, truncated or foreign /dev/shm file.
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lgtest  # noqa: E402
from lgtest import RespError, parse_info, todict, wait_until  # noqa: E402

AGENTS = {
    "alice": ("agent", "alice-s3cret"),
    "sam": ("supervisor", "sam-s3cret"),
    "olga": ("ops", "olga-s3cret"),
    "scott": ("screen", "scott-s3cret"),
}
LISTS = {"mule": False, "suspect": False, "watch": True}  # + protected, always there


def login(gw, who):
    return gw.client(who, AGENTS[who][1])


def err(r, code):
    """r is an error reply with this code."""
    if not isinstance(r, RespError):
        raise AssertionError("expected %s, got %r" % (code, r))
    if r.code != code:
        raise AssertionError("expected %s, got %s" % (code, r.line))
    return r


def check(c, bank, acct):
    return todict(c.ok("CHECK", bank, acct))


def orders_total(c):
    return int(parse_info(c.ok("INFO"))["orders_total"])


def list_entries(c, name):
    return todict(c.ok("LIST.INFO", name))["entries"]


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


class Lists(unittest.TestCase):
    """One gateway for the command tests (each test uses its own accounts)."""

    @classmethod
    def setUpClass(cls):
        cls.gw = lgtest.Gateway("lists", agents=AGENTS, lists=LISTS)
        cls.gw.start()
        cls.ops = login(cls.gw, "olga")
        cls.agent = login(cls.gw, "alice")
        cls.sup = login(cls.gw, "sam")
        cls.screen = login(cls.gw, "scott")

    @classmethod
    def tearDownClass(cls):
        for c in (cls.ops, cls.agent, cls.sup, cls.screen):
            c.close()
        rc = cls.gw.stop()
        if rc != 0:
            raise AssertionError("stopgated exited %r on SIGTERM:\n%s" % (rc, cls.gw.log()[-3000:]))

    # -- LIST.ADD / LIST.DEL ------------------------------------------------------------------

    def test_add_del_and_check(self):
        ops, scr = self.ops, self.screen
        n0 = list_entries(ops, "mule")
        r = todict(ops.ok("LIST.ADD", "mule", "ICBK", "6222000011110001", "SCORE", "70", "CASE", "C-ADD-1"))
        self.assertEqual(r["status"], "ADDED")
        self.assertIsInstance(r["lsn"], int)
        self.assertGreater(r["lsn"], 0)
        self.assertEqual(list_entries(ops, "mule"), n0 + 1)
        v = check(scr, "ICBK", "6222000011110001")
        self.assertEqual(v["verdict"], "LISTED")
        self.assertEqual(v["lists"], ["mule"])
        self.assertEqual(v["score"], 70)
        self.assertIsNone(v["order_id"])
        # again: an update, not a second entry
        r2 = todict(ops.ok("LIST.ADD", "mule", "ICBK", "6222000011110001", "SCORE", "75"))
        self.assertEqual(r2["status"], "UPDATED")
        self.assertGreater(r2["lsn"], r["lsn"])
        self.assertEqual(list_entries(ops, "mule"), n0 + 1)
        self.assertEqual(check(scr, "ICBK", "6222000011110001")["score"], 75)
        # a second list on the same account
        self.assertEqual(todict(ops.ok("LIST.ADD", "suspect", "ICBK", "6222000011110001", "SCORE", "80"))["status"],
                         "ADDED")
        v = check(scr, "icbk", "6222-0000 1111-0001")  # normalised like the gateway stores it
        self.assertEqual(v["verdict"], "LISTED")
        self.assertEqual(sorted(v["lists"]), ["mule", "suspect"])
        # delete one list, then the other
        self.assertEqual(todict(ops.ok("LIST.DEL", "mule", "ICBK", "6222000011110001"))["status"], "DELETED")
        v = check(scr, "ICBK", "6222000011110001")
        self.assertEqual(v["lists"], ["suspect"])
        self.assertEqual(list_entries(ops, "mule"), n0)
        self.assertEqual(todict(ops.ok("LIST.DEL", "suspect", "ICBK", "6222000011110001"))["status"], "DELETED")
        v = check(scr, "ICBK", "6222000011110001")
        self.assertEqual(v["verdict"], "CLEAR")
        self.assertEqual(v["lists"], [])
        self.assertEqual(v["score"], 0)
        self.assertEqual(todict(ops.ok("LIST.DEL", "suspect", "ICBK", "6222000011110001"))["status"], "ABSENT")
        # re-add after delete; SCORE defaults to 0
        self.assertEqual(todict(ops.ok("LIST.ADD", "mule", "icbk", "6222 0000 1111 0001"))["status"], "ADDED")
        v = check(scr, "ICBK", "6222000011110001")
        self.assertEqual((v["verdict"], v["score"]), ("LISTED", 0))
        # normalised at ADD too: deleting with another spelling hits the same entry
        self.assertEqual(todict(ops.ok("LIST.DEL", "mule", "ICBK", "62220000-11110001"))["status"], "DELETED")
        self.assertEqual(check(scr, "ICBK", "6222000011110001")["verdict"], "CLEAR")

    def test_check_resp3_map(self):
        c = login(self.gw, "scott")
        try:
            self.ops.ok("LIST.ADD", "suspect", "R3BANK", "R3ACCT", "SCORE", "33")
            c.call("HELLO", "3")
            v = c.ok("CHECK", "R3BANK", "R3ACCT")
            self.assertIsInstance(v, dict)
            self.assertEqual(v, {"verdict": "LISTED", "lists": ["suspect"], "score": 33, "order_id": None})
            v = c.ok("MCHECK", "R3BANK", "R3ACCT", "R3BANK", "OTHER")
            self.assertEqual([x["verdict"] for x in v], ["LISTED", "CLEAR"])
        finally:
            c.close()

    def test_check_reply_bytes(self):
        # The CLEAR answer is written from a template (commands.c w_check_clear): byte for byte
        # what the field writers give, in RESP2 and RESP3; LISTED still goes field by field.
        c = login(self.gw, "scott")
        try:
            want2 = (b"*8\r\n$7\r\nverdict\r\n$5\r\nCLEAR\r\n$5\r\nlists\r\n*0\r\n$5\r\nscore\r\n:0\r\n"
                     b"$8\r\norder_id\r\n$-1\r\n")
            want3 = want2.replace(b"*8\r\n", b"%4\r\n", 1).replace(b"$-1\r\n", b"_\r\n")
            for proto, want in ((2, want2), (3, want3)):
                if proto == 3:
                    self.assertIsInstance(c.call("HELLO", "3"), dict)
                c.sock.sendall(lgtest.encode("CHECK", "BYTESBANK", "BYTES-0001"))
                got = b""
                while len(got) < len(want):
                    d = c.sock.recv(4096)
                    self.assertTrue(d, "connection closed")
                    got += d
                self.assertEqual(got, want)
            self.ops.ok("LIST.ADD", "mule", "BYTESBANK", "BYTES0002", "SCORE", "12")
            self.assertEqual(c.ok("CHECK", "BYTESBANK", "BYTES0002"),
                             {"verdict": "LISTED", "lists": ["mule"], "score": 12, "order_id": None})
        finally:
            c.close()

    def test_pipelined_checks_agree(self):
        # A pipeline of CHECKs (check_ahead prefetches for those behind the first) answers
        # exactly what the same commands sent one at a time answer, in order, whatever is
        # mixed in: listed and clear accounts, other spellings, malformed ones, other commands.
        ops, scr = self.ops, self.screen
        for i in range(0, 40, 3):
            ops.ok("LIST.ADD", "suspect", "PIPEBANK", "PIPE%04d" % i, "SCORE", str(i))
        cmds = []
        for i in range(40):
            cmds.append(("CHECK" if i % 2 else "check", "PIPEBANK", "pipe-%04d" % i))
            if i % 7 == 0:
                cmds.append(("PING",))
            if i % 11 == 0:
                cmds.append(("CHECK", "PIPE BANK", "X"))  # malformed bank
        one = [scr.call(*c) for c in cmds]
        many = scr.pipeline(cmds)
        self.assertEqual([repr(x) if isinstance(x, lgtest.RespError) else x for x in many],
                         [repr(x) if isinstance(x, lgtest.RespError) else x for x in one])
        listed = [todict(x)["score"] for x in many if isinstance(x, list) and todict(x)["verdict"] == "LISTED"]
        self.assertEqual(listed, list(range(0, 40, 3)))

    def test_score_of_an_entry_on_two_lists(self):
        # include/stopgate/lists.h: sg_verdict.score is "the highest risk score given while
        # listed". A low-score list must not hide a high-score one.
        ops = self.ops
        ops.ok("LIST.ADD", "mule", "SCOREBK", "TWOLISTS", "SCORE", "88")
        ops.ok("LIST.ADD", "suspect", "SCOREBK", "TWOLISTS", "SCORE", "10")
        v = check(self.screen, "SCOREBK", "TWOLISTS")
        self.assertEqual(sorted(v["lists"]), ["mule", "suspect"])
        self.assertEqual(v["score"], 88, "a suspect score of 10 lowered the mule's 88")

    def test_add_del_refusals(self):
        ops = self.ops
        err(ops.call("LIST.ADD", "nolist", "ICBK", "1"), "ERR NOTFOUND")
        err(ops.call("LIST.DEL", "nolist", "ICBK", "1"), "ERR NOTFOUND")
        err(ops.call("LIST.LOAD", "nolist", "-", "ICBK,1\n"), "ERR NOTFOUND")
        err(ops.call("LIST.INFO", "nolist"), "ERR NOTFOUND")
        err(ops.call("LIST.ADD", "mule", "ICBK", "12_34"), "ERR BADACCOUNT")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1" * 35), "ERR BADACCOUNT")
        err(ops.call("LIST.ADD", "mule", "ICBKICBKICBK", "1234"), "ERR BADACCOUNT")
        err(ops.call("LIST.ADD", "mule", "IC-BK", "1234"), "ERR BADACCOUNT")
        err(ops.call("LIST.ADD", "mule", "ICBK", " - "), "ERR BADACCOUNT")
        err(ops.call("LIST.DEL", "mule", "ICBK", "12.34"), "ERR BADACCOUNT")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "SCORE", "101"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "SCORE", "-1"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "SCORE", "ten"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "TTL", "0"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "TTL", "soon"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "CASE", "two words"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "COLOR", "red"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "SCORE"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK", "1234", "SCORE", "5", "SCORE", "6"), "ERR SYNTAX")
        err(ops.call("LIST.DEL", "mule", "ICBK", "1234", "SCORE", "5"), "ERR SYNTAX")
        err(ops.call("LIST.ADD", "mule", "ICBK"), "ERR SYNTAX")
        # nothing of that reached the table
        self.assertEqual(check(self.screen, "ICBK", "1234")["verdict"], "CLEAR")
        # roles: lists are ops' business
        err(self.agent.call("LIST.ADD", "mule", "ICBK", "1234"), "NOPERM")
        err(self.screen.call("LIST.DEL", "mule", "ICBK", "1234"), "NOPERM")
        err(self.sup.call("LIST.LOAD", "mule", "-", "ICBK,1234\n"), "NOPERM")
        anon = self.gw.client()
        try:
            err(anon.call("CHECK", "ICBK", "1234"), "NOAUTH")
            err(anon.call("LIST.ADD", "mule", "ICBK", "1234"), "NOAUTH")
        finally:
            anon.close()
        # CHECK's own bad input, and the connection stays usable
        err(self.screen.call("CHECK", "ICBK", "12_34"), "ERR BADACCOUNT")
        err(self.screen.call("CHECK", "", "1234"), "ERR BADACCOUNT")
        err(self.screen.call("CHECK", "ICBK"), "ERR SYNTAX")
        self.assertEqual(self.screen.call("PING"), "PONG")

    # -- CHECK / MCHECK / STOP --------------------------------------------------------------------

    def test_verdicts_and_stop_lists(self):
        ops, ag, scr = self.ops, self.agent, self.screen
        ops.ok("LIST.ADD", "mule", "VBANK", "LISTED01", "SCORE", "61")
        ops.ok("LIST.ADD", "mule", "VBANK", "FROZEN01", "SCORE", "62")
        ops.ok("LIST.ADD", "suspect", "VBANK", "FROZEN01", "SCORE", "63")
        # STOP answers report the lists the account is on
        a = todict(ag.ok("STOP", "v-stop-1", "BANK", "VBANK", "ACCOUNT", "FROZEN01", "CASE", "V-CASE"))
        self.assertEqual(a["status"], "ACCEPTED")
        self.assertEqual(sorted(a["lists"]), ["mule", "suspect"])
        b = todict(ag.ok("STOP", "v-stop-2", "BANK", "VBANK", "ACCOUNT", "NOLIST01", "CASE", "V-CASE"))
        self.assertEqual(b["status"], "ACCEPTED")
        self.assertEqual(b["lists"], [])
        # a FREEZE answer too
        f = todict(ag.ok("FREEZE", "v-frz-1", "BANK", "VBANK", "ACCOUNT", "LISTED01", "CASE", "V-CASE",
                         "DOC", "COURT-1"))
        self.assertEqual(f["lists"], ["mule"])
        st = todict(ag.ok("STATUS", a["order_id"]))
        self.assertEqual(sorted(st["lists"]), ["mule", "suspect"])

        v = check(scr, "VBANK", "FROZEN01")
        self.assertEqual(v["verdict"], "FROZEN")
        self.assertEqual(v["order_id"], a["order_id"])
        self.assertEqual(sorted(v["lists"]), ["mule", "suspect"])
        v = check(scr, "VBANK", "NOLIST01")
        self.assertEqual((v["verdict"], v["order_id"], v["lists"]), ("FROZEN", b["order_id"], []))
        v = check(scr, "VBANK", "CLEAR001")
        self.assertEqual((v["verdict"], v["order_id"], v["lists"], v["score"]), ("CLEAR", None, [], 0))

        ops.ok("LIST.ADD", "suspect", "VBANK", "LISTED02", "SCORE", "64")
        m = [todict(x) for x in scr.ok("MCHECK", "VBANK", "CLEAR001", "vbank", "listed02", "VBANK", "FROZEN01",
                                       "VBANK", "NOLIST01", "VBANK", "LISTED02")]
        self.assertEqual([x["verdict"] for x in m], ["CLEAR", "LISTED", "FROZEN", "FROZEN", "LISTED"])
        self.assertEqual(m[1]["lists"], ["suspect"])
        self.assertEqual(m[1]["score"], 64)
        self.assertEqual(m[2]["order_id"], a["order_id"])
        self.assertIsNone(m[1]["order_id"])

        # a released order is no longer FROZEN; the lists stay
        ag.ok("RELEASE", "v-rel-1", a["order_id"])
        v = wait_until(lambda: (lambda d: d if d["verdict"] == "LISTED" else None)(check(scr, "VBANK", "FROZEN01")),
                       what="FROZEN01 released")
        self.assertIsNone(v["order_id"])

    def test_mcheck_limits(self):
        scr = self.screen
        err(scr.call("MCHECK", "VBANK", "A1", "VBANK"), "ERR SYNTAX")
        err(scr.call("MCHECK", "VBANK"), "ERR SYNTAX")
        err(scr.call("MCHECK"), "ERR SYNTAX")
        args = []
        for i in range(512):
            args += ["MBANK", "ACC%d" % i]
        r = scr.ok("MCHECK", *args)
        self.assertEqual(len(r), 512)
        self.assertTrue(all(todict(x)["verdict"] == "CLEAR" for x in r))
        err(scr.call("MCHECK", *(args + ["MBANK", "ACC512"])), "ERR TOOBIG")
        bad = list(args[:20])
        bad[11] = "AC_5"
        e = err(scr.call("MCHECK", *bad), "ERR BADACCOUNT")
        self.assertIn("pair 6", e.line)
        self.assertEqual(scr.call("PING"), "PONG")

    # -- protected: HELD until a supervisor's CONFIRM -------------------------------------------------

    def test_protected_held_and_confirm(self):
        ops, ag, sup = self.ops, self.agent, self.sup
        ops.ok("LIST.ADD", "protected", "PBANK", "PAYROLL01", "CASE", "PAYROLL")
        a = todict(ag.ok("STOP", "p-stop-1", "BANK", "PBANK", "ACCOUNT", "PAYROLL01", "CASE", "P-CASE",
                         "AMOUNT", "5000"))
        self.assertEqual(a["status"], "HELD")
        self.assertEqual(a["lists"], ["protected"])
        oid = a["order_id"]
        st = todict(ag.ok("STATUS", oid))
        self.assertEqual(st["state"], "HELD")
        self.assertIn("held_at", st)
        self.assertNotIn("sent_at", st)
        self.assertEqual(st["lists"], ["protected"])
        # not forwarded while held: still no sent_at a moment later (the sim bank answers in µs)
        time.sleep(0.3)
        st = todict(ag.ok("STATUS", oid))
        self.assertEqual(st["state"], "HELD")
        self.assertNotIn("sent_at", st)
        # the same request again: DUPLICATE of the held order, still HELD
        d = todict(ag.ok("STOP", "p-stop-1", "BANK", "PBANK", "ACCOUNT", "PAYROLL01", "CASE", "P-CASE",
                         "AMOUNT", "5000"))
        self.assertEqual((d["status"], d["order_id"]), ("DUPLICATE", oid))
        # only a supervisor confirms
        err(ag.call("CONFIRM", oid), "NOPERM")
        err(ops.call("CONFIRM", oid), "NOPERM")
        err(self.screen.call("CONFIRM", oid), "NOPERM")
        self.assertEqual(todict(ag.ok("STATUS", oid))["state"], "HELD")
        c = todict(sup.ok("CONFIRM", oid))
        self.assertEqual(c["order_id"], oid)
        self.assertEqual(c["status"], "CONFIRMED")
        st = wait_until(lambda: (lambda s: s if s["state"] == "CONFIRMED" else None)(todict(ag.ok("STATUS", oid))),
                        what="the bank's answer after CONFIRM")
        self.assertIn("sent_at", st)
        self.assertIn("held_at", st)
        self.assertGreaterEqual(st["sent_at"], st["held_at"])
        self.assertEqual(st["frozen"], 5000)
        # confirming again, or an order that was never held
        err(sup.call("CONFIRM", oid), "ERR STATE")
        b = todict(ag.ok("STOP", "p-stop-2", "BANK", "PBANK", "ACCOUNT", "NOTPROT01", "CASE", "P-CASE"))
        self.assertEqual(b["status"], "ACCEPTED")
        err(sup.call("CONFIRM", b["order_id"]), "ERR STATE")
        e = sup.call("CONFIRM", "SG-99999999")
        self.assertIsInstance(e, RespError)
        self.assertIn(e.code, ("ERR NOTFOUND", "ERR SYNTAX"))

    # -- auto_stop ------------------------------------------------------------------------------------------

    def test_auto_stop_once_per_account(self):
        ops, scr = self.ops, self.screen
        ops.ok("LIST.ADD", "watch", "ABANK", "AUTO01", "SCORE", "90", "CASE", "W-CASE-1")
        ops.ok("LIST.ADD", "watch", "ABANK", "AUTO02", "SCORE", "91")
        ops.ok("LIST.ADD", "mule", "ABANK", "NOAUTO01", "SCORE", "92")  # mule: auto_stop = no
        self.assertEqual(todict(ops.ok("LIST.INFO", "watch"))["auto_stop"], 1)
        self.assertEqual(todict(ops.ok("LIST.INFO", "mule"))["auto_stop"], 0)
        n0 = orders_total(ops)
        replies = scr.pipeline([("CHECK", "ABANK", "AUTO01")] * 30 + [("CHECK", "ABANK", "NOAUTO01")] * 5)
        self.assertTrue(all(not isinstance(r, RespError) for r in replies), replies[:3])
        first = todict(replies[0])
        self.assertIn(first["verdict"], ("LISTED", "FROZEN"))
        self.assertEqual(first["lists"], ["watch"])
        scr.ok("MCHECK", *(["ABANK", "AUTO01"] * 10 + ["abank", "auto02"] * 10))
        for _ in range(5):
            scr.ok("CHECK", "ABANK", "AUTO02")
        self.assertEqual(orders_total(ops), n0 + 2, "exactly one STOP per auto_stop account")
        # the entry's case, agent auto
        cs = todict(ops.ok("CASE", "W-CASE-1"))
        orders = [todict(o) for o in cs["orders"]]
        self.assertEqual(len(orders), 1)
        o = orders[0]
        self.assertEqual((o["kind"], o["agent"], o["bank"], o["account"], o["level"]), ("STOP", "auto", "ABANK",
                                                                                       "AUTO01", 0))
        self.assertEqual(o["lists"], ["watch"])
        # no case on the entry: AUTO-<list>
        cs = todict(ops.ok("CASE", "AUTO-watch"))
        self.assertEqual([todict(x)["account"] for x in cs["orders"] if todict(x)["account"].startswith("AUTO")],
                         ["AUTO02"])
        # the account is FROZEN now, with that order
        v = check(scr, "ABANK", "AUTO01")
        self.assertEqual((v["verdict"], v["order_id"]), ("FROZEN", o["order_id"]))
        # it reaches the bank like any order
        wait_until(lambda: todict(ops.ok("STATUS", o["order_id"])).get("sent_at"), what="auto STOP sent")
        # mule hits stopped nothing
        self.assertEqual(check(scr, "ABANK", "NOAUTO01")["verdict"], "LISTED")
        # more hits later: still one
        scr.pipeline([("CHECK", "ABANK", "AUTO01")] * 10)
        self.assertEqual(orders_total(ops), n0 + 2)

    def test_auto_stop_spares_protected_accounts(self):
        # docs/lists.md and lists.c: "A protected account is never auto-stopped". An account on
        # an auto_stop list and on protected: CHECK hits issue no order (not even a HELD one,
        # which would already make every screener see the payroll account as FROZEN).
        ops, scr = self.ops, self.screen
        ops.ok("LIST.ADD", "watch", "ABANK", "PROTAUTO1")
        ops.ok("LIST.ADD", "protected", "ABANK", "PROTAUTO1")
        n0 = orders_total(ops)
        for _ in range(3):
            v = check(scr, "ABANK", "PROTAUTO1")
        self.assertEqual(sorted(v["lists"]), ["protected", "watch"])
        self.assertEqual(orders_total(ops), n0, "an auto_stop hit on a protected account issued an order")
        self.assertEqual(v["verdict"], "LISTED")

    # -- LIST.LOAD -----------------------------------------------------------------------------------------

    def test_load_file_replaces_the_list(self):
        ops, scr = self.ops, self.screen
        ops.ok("LIST.ADD", "mule", "LBANK", "BOTH01", "SCORE", "12")  # on mule: must survive suspect loads
        gen0 = todict(ops.ok("LIST.INFO"))["generation"]
        csv = ("# suspect accounts, exported 2024-05-01\n"
               "LBANK,L0001\n"
               "\n"
               "lbank , l-0002 , 42\r\n"
               "LBANK,L 0003,77,CASE-L3\n"
               "LBANK,BOTH01,55\n"
               "   \n"
               "LBANK,L0004,,CASE-L4")  # no final newline
        path = write(os.path.join(self.gw.dir, "suspect-1.csv"), csv)
        r = todict(ops.ok("LIST.LOAD", "suspect", path))
        self.assertEqual(r["status"], "LOADED")
        self.assertEqual(r["rows"], 5)
        self.assertIn("ms", r)
        self.assertGreater(r["lsn"], 0)
        self.assertEqual(list_entries(ops, "suspect"), 5)
        info = todict(ops.ok("LIST.INFO"))
        self.assertGreater(info["generation"], gen0, "a load publishes a new table")
        for acct, score in (("L0001", 0), ("L0002", 42), ("L0003", 77), ("L0004", 0)):
            v = check(scr, "LBANK", acct)
            self.assertEqual((v["verdict"], v["lists"], v["score"]), ("LISTED", ["suspect"], score), acct)
        self.assertEqual(sorted(check(scr, "LBANK", "BOTH01")["lists"]), ["mule", "suspect"])
        # a second load replaces the list's contents
        r = todict(ops.ok("LIST.LOAD", "suspect", write(os.path.join(self.gw.dir, "suspect-2.csv"),
                                                        "LBANK,L0005,5\nLBANK,L0001,1\n")))
        self.assertEqual(r["rows"], 2)
        self.assertEqual(list_entries(ops, "suspect"), 2)
        self.assertEqual(check(scr, "LBANK", "L0002")["verdict"], "CLEAR")
        self.assertEqual(check(scr, "LBANK", "L0001")["score"], 1)
        self.assertEqual(check(scr, "LBANK", "L0005")["lists"], ["suspect"])
        v = check(scr, "LBANK", "BOTH01")
        self.assertEqual(v["lists"], ["mule"], "loading suspect must not touch mule")
        # the inline form
        r = todict(ops.ok("LIST.LOAD", "suspect", "-", "LBANK,INL01,9\nLBANK,INL02,10,CASE-I\n"))
        self.assertEqual((r["status"], r["rows"]), ("LOADED", 2))
        self.assertEqual(check(scr, "LBANK", "INL02")["score"], 10)
        self.assertEqual(check(scr, "LBANK", "L0005")["verdict"], "CLEAR")
        # the same account twice in one file: one entry
        r = todict(ops.ok("LIST.LOAD", "suspect", "-", "LBANK,DUP01,9\nLBANK,dup-01,10\n"))
        self.assertEqual(list_entries(ops, "suspect"), 1)
        self.assertEqual(check(scr, "LBANK", "DUP01")["verdict"], "LISTED")

    def test_load_all_or_nothing(self):
        ops, scr = self.ops, self.screen
        good = "".join("ANBANK,AN%04d,%d\n" % (i, i % 101) for i in range(50))
        self.assertEqual(todict(ops.ok("LIST.LOAD", "suspect", "-", good))["rows"], 50)
        gen = todict(ops.ok("LIST.INFO"))["generation"]
        before = list_entries(ops, "suspect")
        self.assertEqual(before, 50)
        d = self.gw.dir
        cases = [
            ("bad account in the middle", "ANBANK,NEW0001\nANBANK,NEW0002\nANBANK,NEW_0003\nANBANK,NEW0004\n", 3),
            ("bad bank", "ANBANK,NEW0001\nAN-BANK,NEW0002\n", 2),
            ("score over 100", "ANBANK,NEW0001,50\nANBANK,NEW0002,101\n", 2),
            ("score not a number", "ANBANK,NEW0001,x\n", 1),
            ("too many fields", "ANBANK,NEW0001\nANBANK,NEW0002,1,C,extra\n", 2),
            ("one field", "ANBANK,NEW0001\n\n# c\nANBANK\n", 4),
            ("bad case", "ANBANK,NEW0001,1,two words\n", 1),
            ("over-long line", "ANBANK,NEW0001\nANBANK,NEW0002,1,C%s\n" % ("x" * 600), 2),
            ("account too long", "ANBANK,%s\n" % ("9" * 35), 1),
        ]
        for what, csv, line in cases:
            path = write(os.path.join(d, "bad.csv"), csv)
            for rep in (ops.call("LIST.LOAD", "suspect", path), ops.call("LIST.LOAD", "suspect", "-", csv)):
                e = err(rep, "ERR SYNTAX")
                self.assertRegex(e.line, r"^ERR SYNTAX line %d:" % line, what)
            self.assertEqual(list_entries(ops, "suspect"), before, what)
            self.assertEqual(check(scr, "ANBANK", "NEW0001")["verdict"], "CLEAR", what)
        self.assertEqual(check(scr, "ANBANK", "AN0007")["score"], 7, "the list stays as it was")
        self.assertEqual(todict(ops.ok("LIST.INFO"))["generation"], gen, "a refused load publishes nothing")
        # a long line (under the limit) is fine
        ok = "ANBANK,LONG01,1,C%s\n" % ("y" * 60)
        self.assertEqual(todict(ops.ok("LIST.LOAD", "suspect", "-", ok))["rows"], 1)
        self.assertEqual(todict(ops.ok("LIST.LOAD", "suspect", "-", good))["rows"], 50)

    def test_load_empty_missing_and_bad_forms(self):
        ops, d = self.ops, self.gw.dir
        self.assertEqual(todict(ops.ok("LIST.LOAD", "suspect", "-", "EMBANK,EM01,3\n"))["rows"], 1)
        err(ops.call("LIST.LOAD", "suspect", write(os.path.join(d, "empty.csv"), "")), "ERR SYNTAX")
        err(ops.call("LIST.LOAD", "suspect", write(os.path.join(d, "blank.csv"), "\n  \n# only comments\n")),
            "ERR SYNTAX")
        err(ops.call("LIST.LOAD", "suspect", "-", ""), "ERR SYNTAX")
        e = ops.call("LIST.LOAD", "suspect", os.path.join(d, "no-such-file.csv"))
        self.assertIsInstance(e, RespError)
        self.assertEqual(e.code, "ERR NOTFOUND")
        self.assertIn("no-such-file.csv", e.line)
        err(ops.call("LIST.LOAD", "suspect", d), "ERR NOTFOUND")  # a directory
        err(ops.call("LIST.LOAD", "suspect", "-"), "ERR SYNTAX")  # inline without the CSV
        err(ops.call("LIST.LOAD", "suspect", os.path.join(d, "x.csv"), "extra"), "ERR SYNTAX")
        err(ops.call("LIST.LOAD", "suspect"), "ERR SYNTAX")
        self.assertEqual(list_entries(ops, "suspect"), 1)
        self.assertEqual(check(self.screen, "EMBANK", "EM01")["verdict"], "LISTED")

    # -- TTL ---------------------------------------------------------------------------------------------------

    def test_entry_ttl_expires(self):
        ops, scr = self.ops, self.screen
        n0 = list_entries(ops, "mule")
        ops.ok("LIST.ADD", "mule", "TBANK", "TTL01", "SCORE", "50", "TTL", "1")
        ops.ok("LIST.ADD", "mule", "TBANK", "TTL02", "SCORE", "51", "TTL", "1")
        ops.ok("LIST.ADD", "mule", "TBANK", "TTL02", "SCORE", "52")  # the last ADD's TTL: never
        ops.ok("LIST.ADD", "mule", "TBANK", "TTL03", "SCORE", "53", "TTL", "3600")
        self.assertEqual(check(scr, "TBANK", "TTL01")["verdict"], "LISTED")
        t0 = time.monotonic()
        wait_until(lambda: check(scr, "TBANK", "TTL01")["verdict"] == "CLEAR", timeout=5, interval=0.05,
                   what="TTL01 expiry")
        self.assertGreater(time.monotonic() - t0, 0.2)
        v = check(scr, "TBANK", "TTL01")
        self.assertEqual((v["lists"], v["score"]), ([], 0))
        self.assertEqual(check(scr, "TBANK", "TTL02")["score"], 52)
        self.assertEqual(check(scr, "TBANK", "TTL03")["verdict"], "LISTED")
        # the sweep gives the expired entry back
        wait_until(lambda: list_entries(ops, "mule") == n0 + 2, timeout=10, what="expired entry swept")
        # re-adding the expired account makes a fresh entry
        self.assertEqual(todict(ops.ok("LIST.ADD", "mule", "TBANK", "TTL01"))["status"], "ADDED")


    def test_ttl_on_one_list_keeps_the_others(self):
        # An account's TTL'd listing on one list must not take its permanent listings on
        # other lists with it when it expires (nor may a load of another list make the TTL'd
        # listing permanent).
        ops, scr = self.ops, self.screen
        ops.ok("LIST.ADD", "protected", "XBANK", "PROTX1")  # permanent
        ops.ok("LIST.ADD", "mule", "XBANK", "PROTX1", "SCORE", "60", "TTL", "1")  # for one second
        ops.ok("LIST.ADD", "mule", "XBANK", "TTLMULE2", "SCORE", "61", "TTL", "1")
        ops.ok("LIST.LOAD", "suspect", "-", "XBANK,TTLMULE2,41\n")
        self.assertEqual(sorted(check(scr, "XBANK", "PROTX1")["lists"]), ["mule", "protected"])
        self.assertEqual(sorted(check(scr, "XBANK", "TTLMULE2")["lists"]), ["mule", "suspect"])
        time.sleep(2.2)
        with self.subTest("TTL on mule expired: the permanent protected listing stays"):
            self.assertEqual(check(scr, "XBANK", "PROTX1")["lists"], ["protected"])
            a = todict(self.agent.ok("STOP", "x-prot-1", "BANK", "XBANK", "ACCOUNT", "PROTX1", "CASE", "X"))
            self.assertEqual(a["status"], "HELD", "a protected account was sent to the bank unconfirmed")
        with self.subTest("a load of suspect does not make a TTL'd mule listing permanent"):
            self.assertEqual(check(scr, "XBANK", "TTLMULE2")["lists"], ["suspect"])

    def test_reader_sees_frozen_bit(self):
        # Readers see FROZEN too (issue 5 item 1): the shared table's frozen bit follows the
        # order table: set by a STOP, cleared by RELEASE and by the order's expiry.
        ops, ag = self.ops, self.agent
        peek = lgtest.Peek(self.gw.shm_name)
        try:
            ops.ok("LIST.ADD", "mule", "FBANK", "FRZLIST1", "SCORE", "45")
            self.assertEqual(peek.check("FBANK", "FRZLIST1")["frozen"], 0)
            a = todict(ag.ok("STOP", "fb-1", "BANK", "FBANK", "ACCOUNT", "FRZLIST1", "CASE", "FB"))
            b = todict(ag.ok("STOP", "fb-2", "BANK", "FBANK", "ACCOUNT", "FRZNOLIST", "CASE", "FB", "TTL", "1"))
            v = peek.check("FBANK", "FRZLIST1")
            self.assertEqual((v["frozen"], v["lists"], v["score"]), (1, ["mule"], 45))
            v = peek.check("fbank", "frz-nolist")
            self.assertEqual((v["frozen"], v["lists"], v["mask"]), (1, [], 0))
            ag.ok("RELEASE", "fb-rel-1", a["order_id"])
            wait_until(lambda: peek.check("FBANK", "FRZLIST1")["frozen"] == 0, what="frozen bit cleared on RELEASE")
            self.assertEqual(peek.check("FBANK", "FRZLIST1")["lists"], ["mule"])
            # the TTL'd STOP expires: no longer frozen, for CHECK and for readers
            wait_until(lambda: check(self.screen, "FBANK", "FRZNOLIST")["verdict"] == "CLEAR", timeout=6,
                       what="STOP expiry")
            wait_until(lambda: peek.check("FBANK", "FRZNOLIST")["frozen"] == 0, timeout=3,
                       what="frozen bit cleared on expiry")
            self.assertEqual(todict(ag.ok("STATUS", b["order_id"]))["state"], "EXPIRED")
            # the reader's generation is the one LIST.INFO reports
            self.assertEqual(peek.check("FBANK", "X")["gen"], todict(ops.ok("LIST.INFO"))["generation"])
        finally:
            peek.close()


class Capacity(unittest.TestCase):
    """A small table (list_capacity = 1024: at most 768 entries at the 75 % load factor)."""

    def gateway(self, tag):
        gw = lgtest.Gateway(tag, lists={"mule": False, "suspect": False}, dev_secret="cap-secret",
                            gateway={"list_capacity": "1024"})
        gw.start()
        self.addCleanup(gw.kill9)
        return gw, gw.client("dev", "cap-secret")

    def test_full_table_answers_toobig(self):
        gw, c = self.gateway("capfull")
        r = todict(c.ok("LIST.LOAD", "mule", "-", "".join("CBANK,C%d\n" % i for i in range(768))))
        self.assertEqual(r["rows"], 768)
        info = todict(c.ok("LIST.INFO"))
        self.assertEqual((info["capacity"], info["entries"], info["load_factor"]), (1024, 768, "0.7500"))
        err(c.call("LIST.ADD", "mule", "CBANK", "C768"), "ERR TOOBIG")
        err(c.call("LIST.ADD", "suspect", "CBANK", "NEW1"), "ERR TOOBIG")
        err(c.call("LIST.LOAD", "suspect", "-", "CBANK,NEW1\n"), "ERR TOOBIG")
        err(c.call("LIST.LOAD", "mule", "-", "".join("CBANK,D%d\n" % i for i in range(769))), "ERR TOOBIG")
        self.assertEqual(list_entries(c, "mule"), 768)
        self.assertEqual(check(c, "CBANK", "C5")["verdict"], "LISTED")
        self.assertEqual(check(c, "CBANK", "D5")["verdict"], "CLEAR")
        # an existing entry can still change; a full list table never blocks orders
        self.assertEqual(todict(c.ok("LIST.ADD", "mule", "CBANK", "C1", "SCORE", "9"))["status"], "UPDATED")
        a = todict(c.ok("STOP", "cap-1", "BANK", "CBANK", "ACCOUNT", "NOTLISTED", "CASE", "CAP"))
        self.assertEqual(a["status"], "ACCEPTED")
        self.assertEqual(check(c, "CBANK", "NOTLISTED")["verdict"], "FROZEN")
        # replacing the list with fewer rows makes room again
        self.assertEqual(todict(c.ok("LIST.LOAD", "mule", "-", "CBANK,C1\n"))["rows"], 1)
        self.assertEqual(todict(c.ok("LIST.ADD", "suspect", "CBANK", "NEW1"))["status"], "ADDED")
        c.close()

    def test_deleted_entries_do_not_eat_capacity(self):
        # 760 added, 100 deleted: 660 entries; 100 more must fit (760 <= 768).
        gw, c = self.gateway("captomb")
        reps = c.pipeline([("LIST.ADD", "mule", "TBANK", "T%d" % i) for i in range(760)])
        self.assertFalse([r for r in reps if isinstance(r, RespError)])
        reps = c.pipeline([("LIST.DEL", "mule", "TBANK", "T%d" % i) for i in range(100)])
        self.assertFalse([r for r in reps if isinstance(r, RespError)])
        self.assertEqual(list_entries(c, "mule"), 660)
        reps = c.pipeline([("LIST.ADD", "mule", "TBANK", "U%d" % i) for i in range(100)])
        refused = [r.line for r in reps if isinstance(r, RespError)]
        info = todict(c.ok("LIST.INFO"))
        self.assertEqual(len(refused), 0, "%d of 100 ADDs refused (%s) with %d entries and %d tombstones in a table "
                         "for 768" % (len(refused), refused[:1], info["entries"], info["tombstones"]))
        c.close()

    def test_load_overlapping_other_lists_fits(self):
        # 400 accounts on mule; loading the same 400 into suspect adds no entry.
        gw, c = self.gateway("capoverlap")
        rows = "".join("OBANK,O%d\n" % i for i in range(400))
        self.assertEqual(todict(c.ok("LIST.LOAD", "mule", "-", rows))["rows"], 400)
        r = c.call("LIST.LOAD", "suspect", "-", rows)
        self.assertFalse(isinstance(r, RespError), "400 rows already in the table refused: %r" % (r,))
        self.assertEqual(todict(c.ok("LIST.INFO"))["entries"], 400)
        self.assertEqual(sorted(check(c, "OBANK", "O7")["lists"]), ["mule", "suspect"])
        c.close()

    def test_restart_after_deletes_and_readds(self):
        # Live, the gateway compacts deleted slots; the journal replay at start must fit what
        # the live table held, or the gateway cannot start again.
        gw, c = self.gateway("capreplay")
        c.pipeline([("LIST.ADD", "mule", "RBANK", "A%d" % i) for i in range(700)])
        c.pipeline([("LIST.DEL", "mule", "RBANK", "A%d" % i) for i in range(700)])
        wait_until(lambda: todict(c.ok("LIST.INFO"))["tombstones"] == 0, what="compaction")
        reps = c.pipeline([("LIST.ADD", "mule", "RBANK", "N%d" % i) for i in range(700)])
        self.assertFalse([r for r in reps if isinstance(r, RespError)][:1])
        c.close()
        gw.kill9()
        gw.start()  # AssertionError with the log when the replay is refused
        c = gw.client("dev", "cap-secret")
        self.assertEqual(list_entries(c, "mule"), 700)
        self.assertEqual(check(c, "RBANK", "N699")["verdict"], "LISTED")
        self.assertEqual(check(c, "RBANK", "A1")["verdict"], "CLEAR")
        c.close()

    def test_restart_after_two_loads(self):
        # Two loads of 700 different rows: live, each builds a fresh table; the replay must
        # not run out of room on the first load's deleted slots.
        gw, c = self.gateway("caploads")
        self.assertEqual(todict(c.ok("LIST.LOAD", "suspect", "-", "".join("LBANK,A%d\n" % i for i in range(700))))
                         ["rows"], 700)
        self.assertEqual(todict(c.ok("LIST.LOAD", "suspect", "-", "".join("LBANK,N%d\n" % i for i in range(700))))
                         ["rows"], 700)
        c.close()
        gw.kill9()
        gw.start()
        c = gw.client("dev", "cap-secret")
        self.assertEqual(list_entries(c, "suspect"), 700)
        self.assertEqual(check(c, "LBANK", "N5")["verdict"], "LISTED")
        self.assertEqual(check(c, "LBANK", "A5")["verdict"], "CLEAR")
        c.close()

    def test_restart_after_entries_expired(self):
        # The same with TTLs: expired entries were swept live, the replay must not keep them.
        gw, c = self.gateway("capttl")
        c.pipeline([("LIST.ADD", "mule", "EBANK", "A%d" % i, "TTL", "1") for i in range(700)])
        wait_until(lambda: (lambda i: i["entries"] == 0 and i["tombstones"] == 0)(todict(c.ok("LIST.INFO"))),
                   timeout=10, what="expiry sweep and compaction")
        reps = c.pipeline([("LIST.ADD", "mule", "EBANK", "N%d" % i) for i in range(700)])
        self.assertFalse([r for r in reps if isinstance(r, RespError)][:1])
        c.close()
        gw.kill9()
        gw.start()
        c = gw.client("dev", "cap-secret")
        self.assertEqual(list_entries(c, "mule"), 700)
        c.close()


class BigLoad(unittest.TestCase):
    def test_load_one_million_rows(self):
        n = 1000000
        gw = lgtest.Gateway("bigload", agents={"olga": AGENTS["olga"]}, lists={"mule": False, "suspect": False},
                            gateway={"list_capacity": str(1 << 21)})
        gw.start()
        ops = login(gw, "olga")
        ops.ok("LIST.ADD", "mule", "BIGBANK", "KEEP01", "SCORE", "1")
        path = os.path.join(gw.dir, "million.csv")
        with open(path, "w") as f:
            f.write("".join("BIGBANK,62%014d,%d\n" % (i, i % 101) for i in range(n)))
        t0 = time.monotonic()
        r = todict(ops.ok("LIST.LOAD", "suspect", path))
        dt = time.monotonic() - t0
        sys.stdout.write("LIST.LOAD of %d rows: %.2f s, %.0f rows/s (gateway says %d ms)\n" % (n, dt, n / dt, r["ms"]))
        self.assertEqual((r["status"], r["rows"]), ("LOADED", n))
        info = todict(ops.ok("LIST.INFO"))
        self.assertEqual(info["entries"], n + 1)
        self.assertEqual(list_entries(ops, "suspect"), n)
        sample = list(range(0, n, n // 511))[:511] + [n - 1]
        args = []
        for i in sample:
            args += ["BIGBANK", "62%014d" % i]
        reps = [todict(x) for x in ops.ok("MCHECK", *args)]
        self.assertEqual([(x["verdict"], x["score"]) for x in reps], [("LISTED", i % 101) for i in sample])
        self.assertEqual(check(ops, "BIGBANK", "62%014d" % n)["verdict"], "CLEAR")
        self.assertEqual(check(ops, "BIGBANK", "KEEP01")["lists"], ["mule"])
        # and it all comes back from the journal after kill -9
        ops.close()
        gw.kill9()
        t0 = time.monotonic()
        gw.start(timeout=60)
        sys.stdout.write("restart with a 1M-row load in the journal: %.2f s\n" % (time.monotonic() - t0))
        ops = login(gw, "olga")
        self.assertEqual(list_entries(ops, "suspect"), n)
        reps = [todict(x) for x in ops.ok("MCHECK", *args)]
        self.assertEqual([(x["verdict"], x["score"]) for x in reps], [("LISTED", i % 101) for i in sample])
        ops.close()

        # kill -9 while the table is being built aside (replaying the 1M rows): the next start
        # must not leave the dead writer's 128 MiB build file in /dev/shm for ever.
        gw.kill9()

        def build_files():
            return sorted(f for f in os.listdir("/dev/shm") if f.startswith(gw.shm_name + ".build-"))

        self.assertEqual(build_files(), [])
        p = lgtest.spawn([lgtest.STOPGATED, "-c", gw.conf_path], stdout=lgtest.subprocess.DEVNULL,
                         stderr=lgtest.subprocess.DEVNULL, cwd=gw.dir,
                         env=dict(os.environ, STOPGATE_PLUGIN_PATH=os.path.join(lgtest.BUILD_ROOT, "plugins")))
        wait_until(lambda: build_files() or p.poll() is not None, timeout=10, interval=0.002, what="a build file")
        p.kill()
        p.wait()
        left = build_files()
        if not left:
            self.skipTest("the gateway finished its start before it could be killed mid-build")
        gw.start(timeout=60)
        self.assertEqual(build_files(), [], "build files of dead writers left in /dev/shm (%d MiB each)" %
                         (os.path.getsize(gw.shm_path) >> 20))
        self.assertEqual(gw.stop(), 0)


class Persistence(unittest.TestCase):
    def test_restart_and_shm_file_loss(self):
        gw = lgtest.Gateway("persist", agents={k: AGENTS[k] for k in ("olga", "alice", "scott")}, lists=LISTS)
        gw.start()
        ops, ag = login(gw, "olga"), login(gw, "alice")
        ops.ok("LIST.ADD", "mule", "PBANK", "P0001", "SCORE", "71", "CASE", "P-CASE-1")
        ops.ok("LIST.ADD", "mule", "PBANK", "P0002", "SCORE", "72", "TTL", "86400")
        ops.ok("LIST.ADD", "suspect", "PBANK", "P0002", "SCORE", "73")
        ops.ok("LIST.ADD", "mule", "PBANK", "GONE01", "SCORE", "74")
        ops.ok("LIST.DEL", "mule", "PBANK", "GONE01")
        ops.ok("LIST.LOAD", "suspect", "-", "PBANK,S0001,11\nPBANK,S0002,12\nPBANK,P0002,73\n")
        ops.ok("LIST.ADD", "protected", "PBANK", "PAY01")
        ops.ok("LIST.ADD", "watch", "PBANK", "W0001", "CASE", "P-WATCH")
        stop = todict(ag.ok("STOP", "per-1", "BANK", "PBANK", "ACCOUNT", "FRZ01", "CASE", "P-CASE-2"))
        ops.ok("CHECK", "PBANK", "W0001")  # auto_stop: one STOP
        auto_total = orders_total(ops)
        accounts = ["P0001", "P0002", "GONE01", "S0001", "S0002", "PAY01", "W0001", "FRZ01", "NONE01"]

        def snapshot():
            c = login(gw, "olga")
            try:
                args = []
                for a in accounts:
                    args += ["PBANK", a]
                reps = [todict(x) for x in c.ok("MCHECK", *args)]
                info = todict(c.ok("LIST.INFO"))
                lists = dict(zip(info["lists"][0::2], info["lists"][1::2])) if isinstance(info["lists"], list) \
                    else dict(info["lists"])
                return ({a: (r["verdict"], sorted(r["lists"]), r["score"], r["order_id"]) for a, r in zip(accounts, reps)},
                        lists, info["entries"], orders_total(c))
            finally:
                c.close()

        want = snapshot()
        checks, lists, entries, total = want
        self.assertEqual(checks["P0001"], ("LISTED", ["mule"], 71, None))
        self.assertEqual(checks["P0002"][:2], ("LISTED", ["mule", "suspect"]))
        self.assertEqual(checks["GONE01"], ("CLEAR", [], 0, None))
        self.assertEqual(checks["FRZ01"][0], "FROZEN")
        self.assertEqual(checks["FRZ01"][3], stop["order_id"])
        self.assertEqual(checks["W0001"][0], "FROZEN")
        self.assertEqual(lists["suspect"], 3)
        self.assertEqual(total, auto_total)
        ops.close()
        ag.close()

        size = os.path.getsize(gw.shm_path)
        peek = lgtest.Peek(gw.shm_name)  # a reader that stays open through the restarts
        self.addCleanup(peek.close)

        def reader_view():
            p = lgtest.Peek(gw.shm_name)
            try:
                return {a: (lambda v: (v["lists"], v["score"], v["frozen"]))(p.check("PBANK", a)) for a in accounts}
            finally:
                p.close()

        shm_want = reader_view()
        self.assertEqual(shm_want["P0001"], (["mule"], 71, 0))
        self.assertEqual(shm_want["FRZ01"], ([], 0, 1))
        self.assertEqual(shm_want["W0001"], (["watch"], 0, 1))
        self.assertEqual(shm_want["GONE01"], ([], 0, 0))

        def gen():
            c = login(gw, "olga")
            try:
                return todict(c.ok("LIST.INFO"))["generation"]
            finally:
                c.close()
        g0 = gen()

        # 1. kill -9 and restart
        gw.kill9()
        gw.start()
        self.assertEqual(snapshot(), want, "lists after kill -9")
        self.assertEqual(reader_view(), shm_want, "the shared table after kill -9 (frozen bits too)")
        g1 = gen()
        self.assertGreater(g1, g0, "a restart publishes a newer generation")
        # the reader that stayed open follows the restarted gateway
        c = login(gw, "olga")
        c.ok("LIST.ADD", "mule", "PBANK", "AFTER01", "SCORE", "15")
        c.close()
        v = peek.check("PBANK", "AFTER01")
        self.assertEqual((v["gen"], v["lists"], v["score"]), (g1, ["mule"], 15))
        self.assertEqual(peek.check("PBANK", "FRZ01")["frozen"], 1)
        c = login(gw, "olga")
        c.ok("LIST.DEL", "mule", "PBANK", "AFTER01")
        c.close()
        # more hits on the auto_stop account after the restart: still no second STOP
        c = login(gw, "scott")
        c.ok("CHECK", "PBANK", "W0001")
        c.close()
        self.assertEqual(snapshot()[3], auto_total)

        # 2. /dev/shm file removed while stopped: rebuilt from the journal
        self.assertEqual(gw.stop(), 0)
        os.unlink(gw.shm_path)
        gw.start()
        self.assertTrue(os.path.exists(gw.shm_path))
        self.assertEqual(os.path.getsize(gw.shm_path), size)
        self.assertEqual(snapshot(), want, "lists after the shm file was removed")
        self.assertEqual(reader_view(), shm_want, "the shared table rebuilt after its file was removed")

        # 3. truncated /dev/shm file (replaced while stopped)
        gw.kill9()
        with open(gw.shm_path, "rb") as f:
            head = f.read(5000)
        os.unlink(gw.shm_path)
        with open(gw.shm_path, "wb") as f:
            f.write(head)
        gw.start()
        self.assertEqual(os.path.getsize(gw.shm_path), size)
        self.assertEqual(snapshot(), want, "lists after a truncated shm file")
        self.assertEqual(reader_view(), shm_want, "the shared table rebuilt over a truncated file")
        self.assertIsNotNone(re.search(r"lists: /dev/shm/\S+ published", gw.log_since_start()))

        # 4. a foreign file of the right size under the name
        self.assertEqual(gw.stop(), 0)
        os.unlink(gw.shm_path)
        with open(gw.shm_path, "wb") as f:
            f.write(os.urandom(size))
        gw.start()
        self.assertEqual(snapshot(), want, "lists after a foreign shm file")
        self.assertEqual(reader_view(), shm_want, "the shared table rebuilt over a foreign file")
        with open(gw.shm_path, "rb") as f:
            self.assertEqual(f.read(8), b"SGLISTS1")
        self.assertEqual(gw.stop(), 0)

    def test_open_reader_follows_a_table_rebuilt_after_its_file_was_removed(self):
        # A payment system's reader stays up while ops restart the gateway and (SPEC §5 / issue
        # 5) the /dev/shm file is removed meanwhile: the gateway rebuilds it from the journal;
        # the reader must move to the new table, not keep screening a deleted one forever.
        gw = lgtest.Gateway("follow", lists={"mule": False}, dev_secret="follow-secret")
        gw.start()
        self.addCleanup(gw.kill9)
        c = gw.client("dev", "follow-secret")
        c.ok("LIST.ADD", "mule", "RBANK", "OLD01", "SCORE", "20")
        c.close()
        peek = lgtest.Peek(gw.shm_name)
        self.addCleanup(peek.close)
        self.assertEqual(peek.check("RBANK", "OLD01")["lists"], ["mule"])
        self.assertEqual(gw.stop(), 0)
        os.unlink(gw.shm_path)
        gw.start()
        c = gw.client("dev", "follow-secret")
        c.ok("LIST.ADD", "mule", "RBANK", "NEW01", "SCORE", "21")
        c.ok("LIST.DEL", "mule", "RBANK", "OLD01")
        gen = todict(c.ok("LIST.INFO"))["generation"]
        c.close()
        fresh = lgtest.Peek(gw.shm_name)
        self.addCleanup(fresh.close)
        self.assertEqual(fresh.check("RBANK", "NEW01")["lists"], ["mule"])  # a new handle: fine
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and peek.check("RBANK", "NEW01")["lists"] != ["mule"]:
            time.sleep(0.05)
        v = peek.check("RBANK", "NEW01")
        self.assertEqual((v["gen"], v["lists"]), (gen, ["mule"]), "the open handle still reads the removed table")
        self.assertEqual(peek.check("RBANK", "OLD01")["lists"], [])

    def test_open_reader_follows_a_restart_with_a_bigger_table(self):
        gw = lgtest.Gateway("grow", lists={"mule": False}, dev_secret="grow-secret")
        gw.start()
        self.addCleanup(gw.kill9)
        c = gw.client("dev", "grow-secret")
        c.ok("LIST.ADD", "mule", "GBANK", "G01", "SCORE", "30")
        c.close()
        peek = lgtest.Peek(gw.shm_name)
        self.addCleanup(peek.close)
        g0 = peek.check("GBANK", "G01")["gen"]
        size0 = os.path.getsize(gw.shm_path)
        self.assertEqual(gw.stop(), 0)
        gw.gateway_opts["list_capacity"] = "131072"
        gw.write_config()
        gw.start()
        self.assertGreater(os.path.getsize(gw.shm_path), size0)
        c = gw.client("dev", "grow-secret")
        c.ok("LIST.ADD", "mule", "GBANK", "G02", "SCORE", "31")
        self.assertEqual(todict(c.ok("LIST.INFO"))["capacity"], 131072)
        c.close()
        v = peek.check("GBANK", "G02")
        self.assertGreater(v["gen"], g0)
        self.assertEqual((v["lists"], v["score"]), (["mule"], 31))
        self.assertEqual(peek.check("GBANK", "G01")["score"], 30)

    def test_sighup_declares_a_new_list(self):
        gw = lgtest.Gateway("hup", lists={"mule": False}, dev_secret="hup-secret")
        gw.start()
        self.addCleanup(gw.kill9)
        c = gw.client("dev", "hup-secret")
        c.ok("LIST.ADD", "mule", "HBANK", "H01", "SCORE", "10")
        err(c.call("LIST.ADD", "fresh", "HBANK", "H01"), "ERR NOTFOUND")
        gw.lists["fresh"] = False
        gw.write_config()
        gw.proc.send_signal(lgtest.signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in gw.log_since_start(), what="SIGHUP reload")
        self.assertEqual(todict(c.ok("LIST.ADD", "fresh", "HBANK", "H01", "SCORE", "20"))["status"], "ADDED")
        self.assertEqual(sorted(check(c, "HBANK", "H01")["lists"]), ["fresh", "mule"])
        peek = lgtest.Peek(gw.shm_name)
        self.addCleanup(peek.close)
        self.assertEqual(sorted(peek.check("HBANK", "H01")["lists"]), ["fresh", "mule"])
        # removing a declared list needs a restart: the reload is refused, the list stays
        del gw.lists["fresh"]
        gw.write_config()
        gw.proc.send_signal(lgtest.signal.SIGHUP)
        wait_until(lambda: "reload refused" in gw.log_since_start(), what="refused reload")
        self.assertEqual(todict(c.ok("LIST.INFO", "fresh"))["entries"], 1)
        c.close()
        # restarted with the list declared again: journaled entries come back on it
        gw.lists["fresh"] = False
        gw.write_config()
        gw.kill9()
        gw.start()
        c = gw.client("dev", "hup-secret")
        self.assertEqual(sorted(check(c, "HBANK", "H01")["lists"]), ["fresh", "mule"])
        c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
