"""Order lifecycle against the simulated bank (SPEC §2b, §3, §4.1): every magic account's
outcome with its timestamps, MERGED, FREEZE/DOC, RELEASE, EXTEND, expiry, CASE, CHECK."""
import itertools
import time

import sgtest
from sgtest import GatewayCase, todict

BALANCE = 1000000
DEADLINE_MS = 600
STOP_TTL_S = 172800
FREEZE_TTL_S = 15552000

_acct = itertools.count(1)


def acct(suffix, tag="L"):
    """A fresh account number ending in `suffix` (the sim's magic tail)."""
    return "%s%07d%d%s" % (tag, next(_acct), int(time.time()) % 100000, suffix)


def now_ms():
    return int(time.time() * 1000)


def transfers(onward):
    """The onward transfers as (bank, account, amount) maps, whatever else the gateway adds
    (e.g. the cascade child it issued)."""
    return sorted(({k: w[k] for k in ("bank", "account", "amount")} for w in onward), key=lambda w: w["account"])


class Outcomes(GatewayCase):
    GW_ARGS = dict(gateway={"bank_deadline_ms": str(DEADLINE_MS)},
                   sections="[plugin sim]\nlatency_us = 2000\nbalance = %d\n" % BALANCE)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.c = cls.gw.client("alice")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        super().tearDownClass()

    def order(self, suffix, amount=None, **kw):
        t0 = now_ms()
        d = self.stop_ok(self.c, acct(suffix), amount=amount, **kw)
        self.assertEqual(d["status"], "ACCEPTED")
        self.assertEqual(d["lists"], [])
        self.assertIsInstance(d["lsn"], int)
        self.assertGreater(d["lsn"], 0)
        return d["order_id"], t0

    def check_common(self, st, order_id, t0, state):
        self.assertEqual(st["order_id"], order_id)
        self.assertEqual(st["state"], state)
        self.assertEqual(st["kind"], "STOP")
        self.assertEqual(st["bank"], "SGTB")
        self.assertEqual(st["currency"], "CNY")
        self.assertEqual(st["cases"], ["CASE1"])
        self.assertEqual(st["agent"], "alice")
        self.assertIsNone(st["parent"])
        self.assertEqual(st["level"], 0)
        self.assertEqual(st["lists"], [])
        t1 = now_ms()
        # One timestamp per step reached, in order, inside the test's wall-clock window.
        self.assertLessEqual(t0 - 5, st["accepted_at"])
        self.assertLessEqual(st["accepted_at"], st["sent_at"])
        self.assertLessEqual(st["sent_at"], t1 + 5)
        if "answered_at" in st:
            self.assertLessEqual(st["sent_at"], st["answered_at"])
            self.assertLessEqual(st["answered_at"], t1 + 5)
        for k in ("released_at", "expired_at", "held_at"):
            self.assertNotIn(k, st)
        # Default STOP lifetime: 48 h from acceptance.
        self.assertAlmostEqual(st["expires_at"], st["accepted_at"] + STOP_TTL_S * 1000, delta=2000)

    def test_confirmed_amount(self):
        oid, t0 = self.order("7777", amount=12345)
        st = self.wait_state(self.c, oid, "CONFIRMED")
        self.check_common(st, oid, t0, "CONFIRMED")
        self.assertEqual(st["amount"], 12345)
        self.assertEqual(st["frozen"], 12345)
        self.assertIsNone(st["reason"])
        self.assertIn("answered_at", st)
        self.assertNotIn("overdue_at", st)
        self.assertNotIn("onward", st)

    def test_confirmed_whole_balance(self):
        oid, t0 = self.order("5555")
        st = self.wait_state(self.c, oid, "CONFIRMED")
        self.check_common(st, oid, t0, "CONFIRMED")
        self.assertEqual(st["amount"], 0)
        self.assertEqual(st["frozen"], BALANCE)

    def test_confirmed_capped_at_balance(self):
        oid, t0 = self.order("5556", amount=BALANCE * 3)
        st = self.wait_state(self.c, oid, "CONFIRMED")
        self.assertEqual(st["amount"], BALANCE * 3)
        self.assertEqual(st["frozen"], BALANCE)

    def test_m000_s000_confirmed(self):
        for suffix in ("M000", "S000"):
            oid, t0 = self.order(suffix, amount=700)
            st = self.wait_state(self.c, oid, ("CONFIRMED", "FUNDS_MOVED", "PARTIAL", "NOT_FOUND", "REJECTED"))
            self.assertEqual(st["state"], "CONFIRMED", suffix)
            self.assertEqual(st["frozen"], 700)

    def test_partial(self):
        oid, t0 = self.order("0001", amount=10000)
        st = self.wait_state(self.c, oid, "PARTIAL")
        self.check_common(st, oid, t0, "PARTIAL")
        self.assertEqual(st["frozen"], 5000)
        self.assertIn("answered_at", st)
        oid, t0 = self.order("0001")
        st = self.wait_state(self.c, oid, "PARTIAL")
        self.assertEqual(st["frozen"], BALANCE // 2)

    def test_not_found(self):
        oid, t0 = self.order("0002", amount=10000)
        st = self.wait_state(self.c, oid, "NOT_FOUND")
        self.check_common(st, oid, t0, "NOT_FOUND")
        self.assertEqual(st["frozen"], 0)
        self.assertIn("answered_at", st)

    def test_rejected(self):
        oid, t0 = self.order("0003", amount=10000)
        st = self.wait_state(self.c, oid, "REJECTED")
        self.check_common(st, oid, t0, "REJECTED")
        self.assertEqual(st["reason"], "ACCOUNT_CLOSED")
        self.assertEqual(st["frozen"], 0)
        self.assertIn("answered_at", st)

    def test_funds_moved_m(self):
        a = acct("M003")
        d = self.stop_ok(self.c, a, amount=10000)
        oid = d["order_id"]
        st = self.wait_state(self.c, oid, "FUNDS_MOVED")
        self.assertEqual(st["frozen"], 0)
        self.assertIn("answered_at", st)
        self.assertEqual(transfers(st["onward"]), [{"bank": "SGTB", "account": a[:-4] + "M002", "amount": 10000}])

    def test_funds_moved_s(self):
        a = acct("S002")
        d = self.stop_ok(self.c, a, amount=10000)
        st = self.wait_state(self.c, d["order_id"], "FUNDS_MOVED")
        self.assertEqual(st["frozen"], 0)
        self.assertEqual(transfers(st["onward"]), [{"bank": "SGTB", "account": a[:-4] + "S001", "amount": 9000},
                                  {"bank": "SGTB", "account": a[:-4] + "T000", "amount": 1000}])

    def test_funds_moved_whole_balance(self):
        a = acct("M001")
        d = self.stop_ok(self.c, a)
        st = self.wait_state(self.c, d["order_id"], "FUNDS_MOVED")
        self.assertEqual(transfers(st["onward"]), [{"bank": "SGTB", "account": a[:-4] + "M000", "amount": BALANCE}])

    def test_no_answer_overdue(self):
        oid, t0 = self.order("0004", amount=10000)
        st = self.status(self.c, oid)
        self.assertIn(st["state"], ("ACCEPTED", "SENT"))
        self.assertNotIn("overdue_at", st)
        st = self.wait_state(self.c, oid, "OVERDUE", timeout=DEADLINE_MS / 1000 + 5)
        self.check_common(st, oid, t0, "OVERDUE")
        self.assertIn("overdue_at", st)
        # The deadline runs from acceptance, delivered or not (docs/protocol.md).
        self.assertGreaterEqual(st["overdue_at"], st["accepted_at"] + DEADLINE_MS)
        self.assertNotIn("answered_at", st)
        self.assertEqual(st["frozen"], 0)
        # Still a live order: the account screens as FROZEN by it.
        chk = todict(self.c.ok("CHECK", "SGTB", st["account"]))
        self.assertEqual(chk["verdict"], "FROZEN")
        self.assertEqual(chk["order_id"], oid)

    def test_note_reason_currency(self):
        d = self.stop_ok(self.c, acct("7001"), amount=250, currency="EUR", reason="FRAUD_APP",
                         note="victim called at 09:12, 3 transfers")
        st = self.wait_state(self.c, d["order_id"], "CONFIRMED")
        self.assertEqual(st["currency"], "EUR")
        self.assertEqual(st["order_reason"], "FRAUD_APP")
        self.assertEqual(st["note"], "victim called at 09:12, 3 transfers")
        self.assertEqual(st["frozen"], 250)

    def test_account_normalised(self):
        raw = acct("8888")
        spaced = "-".join([raw[:4].lower(), raw[4:8], raw[8:]])
        d = self.stop_ok(self.c, spaced, bank="sgtb", amount=5)
        st = self.status(self.c, d["order_id"])
        self.assertEqual(st["account"], raw.upper())
        self.assertEqual(st["bank"], "SGTB")
        # The normalised key is the one screened.
        self.assertEqual(todict(self.c.ok("CHECK", "SGTB", raw))["order_id"], d["order_id"])

    def test_status_unknown(self):
        self.assertErr(self.c.call("STATUS", "SG-99999999"), "ERR NOTFOUND")
        self.assertErr(self.c.call("STATUS", "nonsense"), "ERR NOTFOUND")


class Merge(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 500\n")

    def test_second_stop_merged(self):
        with self.gw.client("alice") as c:
            a = acct("6001", "G")
            first = self.stop_ok(c, a, case="MC-A", amount=1000)
            self.assertEqual(first["status"], "ACCEPTED")
            self.wait_state(c, first["order_id"], "CONFIRMED")
            submitted = lambda: self.gw.info(c)["plugin_sim"].split("submitted=")[1].split(",")[0]
            submitted0 = submitted()
            second = self.stop_ok(c, a, case="MC-B", amount=5000)
            self.assertEqual(second["status"], "MERGED")
            self.assertEqual(second["order_id"], first["order_id"])
            self.assertGreater(second["lsn"], first["lsn"])
            st = self.status(c, first["order_id"])
            self.assertEqual(sorted(st["cases"]), ["MC-A", "MC-B"])
            self.assertEqual(st["amount"], 5000)
            # A smaller ask does not lower the amount; a known case is not added twice.
            third = self.stop_ok(c, a, case="MC-A", amount=10)
            self.assertEqual((third["status"], third["order_id"]), ("MERGED", first["order_id"]))
            st = self.status(c, first["order_id"])
            self.assertEqual(st["amount"], 5000)
            self.assertEqual(sorted(st["cases"]), ["MC-A", "MC-B"])
            # The merged order is in both cases.
            for case in ("MC-A", "MC-B"):
                cs = todict(c.ok("CASE", case))
                self.assertIn(first["order_id"], [o["order_id"] for o in cs["orders"]])
            # Only one order and one instruction for this account: merges send nothing to the bank.
            self.assertEqual(len([o for o in todict(c.ok("CASE", "MC-B"))["orders"] if o["account"] == a]), 1)
            time.sleep(0.05)
            self.assertEqual(submitted(), submitted0)

    def test_merge_all_amount_wins(self):
        with self.gw.client("alice") as c:
            a = acct("6002", "G")
            first = self.stop_ok(c, a, case="MC-C", amount=1000)
            second = self.stop_ok(c, a, case="MC-C")  # no amount: everything
            self.assertEqual((second["status"], second["order_id"]), ("MERGED", first["order_id"]))
            self.assertEqual(self.status(c, first["order_id"])["amount"], 0)

    def test_merge_while_pending_and_duplicate_of_merge(self):
        with self.gw.client("alice") as c:
            a = acct("0004", "G")  # never answered: stays pending
            first = self.stop_ok(c, a, case="MC-D")
            rid = self.rid("merge")
            m = self.stop_ok(c, a, case="MC-E", request_id=rid)
            self.assertEqual((m["status"], m["order_id"]), ("MERGED", first["order_id"]))
            again = self.stop_ok(c, a, case="MC-E", request_id=rid)
            self.assertEqual((again["status"], again["order_id"]), ("DUPLICATE", first["order_id"]))

    def test_no_merge_after_final_negative_answer(self):
        with self.gw.client("alice") as c:
            a = acct("0002", "G")  # NOT_FOUND: not a live hold
            first = self.stop_ok(c, a, case="MC-F")
            self.wait_state(c, first["order_id"], "NOT_FOUND")
            second = self.stop_ok(c, a, case="MC-F")
            self.assertEqual(second["status"], "ACCEPTED")
            self.assertNotEqual(second["order_id"], first["order_id"])

    def test_other_bank_same_account_not_merged(self):
        with self.gw.client("alice") as c:
            a = acct("6003", "G")
            first = self.stop_ok(c, a, bank="BANKA")
            second = self.stop_ok(c, a, bank="BANKB")
            self.assertEqual(second["status"], "ACCEPTED")
            self.assertNotEqual(first["order_id"], second["order_id"])


class FreezeReleaseExtend(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 500\n")

    def test_freeze_requires_doc(self):
        with self.gw.client("alice") as c:
            a = acct("9001", "F")
            # Without DOC (with and without other options): refused, nothing created.
            self.assertErr(c.call("FREEZE", self.rid(), "BANK", "SGTB", "ACCOUNT", a, "CASE", "FC1"), "ERR SYNTAX")
            self.assertErr(c.call("FREEZE", self.rid(), "BANK", "SGTB", "ACCOUNT", a, "CASE", "FC1", "AMOUNT", "5"),
                           "ERR SYNTAX")
            self.assertEqual(todict(c.ok("CHECK", "SGTB", a))["verdict"], "CLEAR")
            t0 = now_ms()
            r = todict(c.ok("FREEZE", self.rid(), "BANK", "SGTB", "ACCOUNT", a, "CASE", "FC1", "DOC",
                            "COURT/2026/123", "AMOUNT", "777"))
            self.assertEqual(r["status"], "ACCEPTED")
            st = self.wait_state(c, r["order_id"], "CONFIRMED")
            self.assertEqual(st["kind"], "FREEZE")
            self.assertEqual(st["doc"], "COURT/2026/123")
            self.assertEqual(st["frozen"], 777)
            self.assertGreaterEqual(st["accepted_at"], t0 - 5)
            self.assertAlmostEqual(st["expires_at"], st["accepted_at"] + FREEZE_TTL_S * 1000, delta=2000)

    def test_freeze_with_ttl(self):
        with self.gw.client("alice") as c:
            r = todict(c.ok("FREEZE", self.rid(), "BANK", "SGTB", "ACCOUNT", acct("9002", "F"), "CASE", "FC2",
                            "DOC", "D-1", "TTL", "3600"))
            st = self.status(c, r["order_id"])
            self.assertAlmostEqual(st["expires_at"], st["accepted_at"] + 3600 * 1000, delta=2000)

    def test_release(self):
        with self.gw.client("alice") as c:
            a = acct("9101", "F")
            d = self.stop_ok(c, a, amount=100)
            oid = d["order_id"]
            self.wait_state(c, oid, "CONFIRMED")
            rid = self.rid("rel")
            r = todict(c.ok("RELEASE", rid, oid, "REASON", "VICTIM_REFUNDED"))
            self.assertEqual((r["order_id"], r["status"]), (oid, "RELEASED"))
            self.assertGreater(r["lsn"], d["lsn"])
            st = self.status(c, oid)
            self.assertEqual(st["state"], "RELEASED")
            self.assertIn("released_at", st)
            self.assertGreaterEqual(st["released_at"], st["answered_at"])
            self.assertEqual(todict(c.ok("CHECK", "SGTB", a))["verdict"], "CLEAR")
            # Same request again: the original answer; nothing changes.
            r2 = todict(c.ok("RELEASE", rid, oid, "REASON", "VICTIM_REFUNDED"))
            self.assertEqual((r2["order_id"], r2["status"]), (oid, "DUPLICATE"))
            self.assertEqual(self.status(c, oid)["released_at"], st["released_at"])
            # A new request on a released order: ERR STATE. Same request_id, other fields: IDEMPOTENCY.
            self.assertErr(c.call("RELEASE", self.rid("rel"), oid), "ERR STATE")
            self.assertErr(c.call("RELEASE", rid, oid, "REASON", "OTHER"), "ERR IDEMPOTENCY")
            self.assertErr(c.call("EXTEND", self.rid("ext"), oid, "TTL", "100"), "ERR STATE")
            # The account can be stopped afresh: a new order, not a merge.
            d2 = self.stop_ok(c, a)
            self.assertEqual(d2["status"], "ACCEPTED")
            self.assertNotEqual(d2["order_id"], oid)

    def test_release_errors(self):
        with self.gw.client("alice") as c:
            self.assertErr(c.call("RELEASE", self.rid(), "SG-88888888"), "ERR NOTFOUND")
            self.assertErr(c.call("RELEASE", self.rid()), "ERR SYNTAX")
            d = self.stop_ok(c, acct("9102", "F"))
            self.assertErr(c.call("RELEASE", self.rid(), d["order_id"], "BOGUS", "x"), "ERR SYNTAX")
            # A STOP's request_id reused for a RELEASE: different fields.
            rid = self.rid("shared")
            d = self.stop_ok(c, acct("9103", "F"), request_id=rid)
            self.assertErr(c.call("RELEASE", rid, d["order_id"]), "ERR IDEMPOTENCY")
            self.assertIn(self.status(c, d["order_id"])["state"], ("ACCEPTED", "SENT", "CONFIRMED"))

    def test_release_pending_order(self):
        with self.gw.client("alice") as c:
            d = self.stop_ok(c, acct("0004", "F"))
            r = todict(c.ok("RELEASE", self.rid(), d["order_id"]))
            self.assertEqual(r["status"], "RELEASED")
            self.assertEqual(self.status(c, d["order_id"])["state"], "RELEASED")

    def test_extend(self):
        with self.gw.client("alice") as c:
            d = self.stop_ok(c, acct("9201", "F"), ttl=100)
            oid = d["order_id"]
            self.wait_state(c, oid, "CONFIRMED")
            st = self.status(c, oid)
            self.assertAlmostEqual(st["expires_at"], st["accepted_at"] + 100000, delta=2000)
            rid = self.rid("ext")
            t0 = now_ms()
            r = todict(c.ok("EXTEND", rid, oid, "TTL", "86400"))
            self.assertEqual((r["order_id"], r["status"]), (oid, "EXTENDED"))
            self.assertAlmostEqual(r["expires_at"], t0 + 86400 * 1000, delta=3000)
            st = self.status(c, oid)
            self.assertEqual(st["expires_at"], r["expires_at"])
            self.assertEqual(st["state"], "CONFIRMED")
            # Duplicate: same answer, no change. Same id other TTL: IDEMPOTENCY.
            r2 = todict(c.ok("EXTEND", rid, oid, "TTL", "86400"))
            self.assertEqual(r2["status"], "DUPLICATE")
            self.assertErr(c.call("EXTEND", rid, oid, "TTL", "90000"), "ERR IDEMPOTENCY")
            # EXTEND prolongs, never shortens.
            r3 = todict(c.ok("EXTEND", self.rid("ext"), oid, "TTL", "10"))
            self.assertEqual(r3["status"], "EXTENDED")
            self.assertEqual(self.status(c, oid)["expires_at"], st["expires_at"])

    def test_extend_errors(self):
        with self.gw.client("alice") as c:
            d = self.stop_ok(c, acct("9202", "F"))
            oid = d["order_id"]
            self.assertErr(c.call("EXTEND", self.rid(), oid), "ERR SYNTAX")
            for bad in ("0", "-5", "abc", "1.5", "999999999999"):
                self.assertErr(c.call("EXTEND", self.rid(), oid, "TTL", bad), "ERR SYNTAX", "TTL %s" % bad)
            self.assertErr(c.call("EXTEND", self.rid(), "SG-77777777", "TTL", "10"), "ERR NOTFOUND")


class Expiry(GatewayCase):
    GW_ARGS = dict(gateway={"stop_ttl": "1", "freeze_ttl": "2"}, sections="[plugin sim]\nlatency_us = 200\n")

    def test_stop_expires_with_ttl(self):
        with self.gw.client("alice") as c:
            a = acct("9301", "E")
            d = self.stop_ok(c, a, ttl=1)
            oid = d["order_id"]
            st = self.wait_state(c, oid, "CONFIRMED")
            self.assertEqual(todict(c.ok("CHECK", "SGTB", a))["verdict"], "FROZEN")
            st = self.wait_state(c, oid, "EXPIRED", timeout=5)
            self.assertIn("expired_at", st)
            self.assertGreaterEqual(st["expired_at"], st["expires_at"])
            self.assertLess(st["expired_at"], st["expires_at"] + 1500)
            self.assertIn("answered_at", st)
            self.assertEqual(todict(c.ok("CHECK", "SGTB", a))["verdict"], "CLEAR")
            self.assertErr(c.call("RELEASE", self.rid(), oid), "ERR STATE")
            self.assertErr(c.call("EXTEND", self.rid(), oid, "TTL", "60"), "ERR STATE")
            d2 = self.stop_ok(c, a, ttl=60)
            self.assertEqual(d2["status"], "ACCEPTED")
            self.assertNotEqual(d2["order_id"], oid)

    def test_default_ttls_from_config(self):
        with self.gw.client("alice") as c:
            s = self.stop_ok(c, acct("9302", "E"))
            f = todict(c.ok("FREEZE", self.rid(), "BANK", "SGTB", "ACCOUNT", acct("9303", "E"), "CASE", "EC",
                            "DOC", "D-9"))
            st = self.status(c, s["order_id"])
            self.assertAlmostEqual(st["expires_at"], st["accepted_at"] + 1000, delta=300)
            ft = self.status(c, f["order_id"])
            self.assertAlmostEqual(ft["expires_at"], ft["accepted_at"] + 2000, delta=300)
            self.wait_state(c, s["order_id"], "EXPIRED", timeout=5)
            self.assertNotEqual(self.status(c, f["order_id"])["state"], "EXPIRED")
            self.wait_state(c, f["order_id"], "EXPIRED", timeout=5)

    def test_pending_order_expires(self):
        with self.gw.client("alice") as c:
            d = self.stop_ok(c, acct("0004", "E"), ttl=1)
            self.wait_state(c, d["order_id"], "EXPIRED", timeout=5)

    def test_extend_keeps_alive(self):
        with self.gw.client("alice") as c:
            d = self.stop_ok(c, acct("9304", "E"), ttl=1)
            self.assertEqual(todict(c.ok("EXTEND", self.rid(), d["order_id"], "TTL", "3600"))["status"], "EXTENDED")
            time.sleep(1.6)
            self.assertEqual(self.status(c, d["order_id"])["state"], "CONFIRMED")


class Cases(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 200\n")

    def test_case_view(self):
        with self.gw.client("alice") as c:
            case = "CASE-%s" % self.rid("c")
            a = self.stop_ok(c, acct("4000", "C"), case=case, amount=1000)
            b = self.stop_ok(c, acct("0001", "C"), case=case, amount=10000)
            n = self.stop_ok(c, acct("0002", "C"), case=case, amount=300)
            other = self.stop_ok(c, acct("4001", "C"), case="OTHER-" + case, amount=99)
            for d, s in ((a, "CONFIRMED"), (b, "PARTIAL"), (n, "NOT_FOUND"), (other, "CONFIRMED")):
                self.wait_state(c, d["order_id"], s)
            cs = todict(c.ok("CASE", case))
            self.assertEqual(cs["case"], case)
            ids = [o["order_id"] for o in cs["orders"]]
            self.assertEqual(sorted(ids), sorted([a["order_id"], b["order_id"], n["order_id"]]))
            self.assertEqual(cs["frozen_total"], 1000 + 5000)
            for o in cs["orders"]:
                self.assertIn(case, o["cases"])
                self.assertIn(o["state"], ("CONFIRMED", "PARTIAL", "NOT_FOUND"))
                self.assertIn("accepted_at", o)
            self.assertErr(c.call("CASE", "NO-SUCH-CASE-" + case), "ERR NOTFOUND")
            self.assertErr(c.call("CASE"), "ERR SYNTAX")

    def test_check_and_mcheck(self):
        with self.gw.client("alice") as c:
            a = acct("4100", "C")
            free = acct("4101", "C")
            d = self.stop_ok(c, a)
            chk = todict(c.ok("CHECK", "SGTB", a))
            self.assertEqual(chk, {"verdict": "FROZEN", "lists": [], "score": 0, "order_id": d["order_id"]})
            chk = todict(c.ok("CHECK", "SGTB", free))
            self.assertEqual(chk["verdict"], "CLEAR")
            self.assertIsNone(chk["order_id"])
            m = c.ok("MCHECK", "SGTB", a, "SGTB", free, "OTHERBANK", a)
            self.assertEqual([todict(x)["verdict"] for x in m], ["FROZEN", "CLEAR", "CLEAR"])
            self.assertErr(c.call("MCHECK", "SGTB", a, "SGTB"), "ERR SYNTAX")
            self.assertErr(c.call("MCHECK", "SGTB", a, "SGTB", "BAD!ACC"), "ERR BADACCOUNT")


if __name__ == "__main__":
    sgtest.main()
