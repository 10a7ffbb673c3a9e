"""Who may undo an order (SPEC §4.2; issue 15 item 5; docs/protocol.md "Who may undo an order").

  - an `agent` may RELEASE or EXTEND only the orders it gave (NOPERM otherwise); a supervisor
    may act on any order;
  - a judicial FREEZE is released only by a supervisor, with DOC <legal_ref> (journaled with
    the release, shown by STATUS as release_doc): without DOC ERR SYNTAX, by an agent NOPERM;
  - a HELD order is CONFIRMed or RELEASEd only by a supervisor; an agent's EXTEND of it NOPERM;
  - no TTL (STOP, FREEZE, EXTEND) past the kind's maximum ([gateway] stop_ttl_max,
    freeze_ttl_max): refused with ERR SYNTAX naming the maximum, nothing changed;
  - refusals leave nothing in the journal; a retried request_id gets its original answer,
    after a restart too, and replay reproduces every decision.
"""
import os

import sgtest
from sgtest import GatewayCase, RespError, todict

AGENTS = dict(sgtest.DEFAULT_AGENTS)
AGENTS["bob"] = ("agent", "bob-s3cret")  # alice's colleague
STOP_MAX_S = 7 * 86400
FREEZE_MAX_S = 90 * 86400


class Permissions(GatewayCase):
    GW_ARGS = {"agents": AGENTS,
               "gateway": {"stop_ttl_max": str(STOP_MAX_S), "freeze_ttl_max": str(FREEZE_MAX_S),
                           "freeze_ttl": str(30 * 86400)}}

    def acct(self, tag):
        self._n = getattr(self, "_n", 0) + 1
        return "PM%s%d%05dX" % (tag, os.getpid() % 1000, self._n)  # "X" last: the sim bank CONFIRMs

    def test_agent_undoes_only_own_orders(self):
        with self.gw.client("alice") as alice, self.gw.client("bob") as bob, self.gw.client("sam") as sam:
            oid = self.stop_ok(alice, self.acct("A"))["order_id"]
            self.assertErr(bob.call("RELEASE", self.rid(), oid), "NOPERM")
            self.assertErr(bob.call("EXTEND", self.rid(), oid, "TTL", "3600"), "NOPERM")
            r = bob.call("RELEASE", self.rid(), oid)
            self.assertIn("alice", r.reason, "the refusal names who gave the order")
            self.assertNotEqual(self.status(alice, oid)["state"], "RELEASED")
            # Its own agent may; a supervisor may act on anyone's.
            self.assertEqual(todict(alice.ok("EXTEND", self.rid(), oid, "TTL", "7200"))["status"], "EXTENDED")
            self.assertEqual(todict(sam.ok("EXTEND", self.rid(), oid, "TTL", "9000"))["status"], "EXTENDED")
            self.assertEqual(todict(sam.ok("RELEASE", self.rid(), oid, "REASON", "MISTAKE"))["status"], "RELEASED")
            other = self.stop_ok(bob, self.acct("B"))["order_id"]
            self.assertEqual(todict(bob.ok("RELEASE", self.rid(), other))["status"], "RELEASED")

    def test_freeze_release_needs_supervisor_and_doc(self):
        with self.gw.client("alice") as alice, self.gw.client("sam") as sam:
            fz = todict(alice.ok(*self._freeze_args(self.acct("F"))))["order_id"]
            # Not even the agent who gave it.
            self.assertErr(alice.call("RELEASE", self.rid(), fz), "NOPERM")
            self.assertErr(alice.call("RELEASE", self.rid(), fz, "DOC", "COURT-8/2026"), "NOPERM")
            self.assertErr(sam.call("RELEASE", self.rid(), fz), "ERR SYNTAX")
            self.assertIn("DOC", sam.call("RELEASE", self.rid(), fz).reason)
            st = self.status(sam, fz)
            self.assertNotEqual(st["state"], "RELEASED")
            self.assertNotIn("release_doc", st)
            rid = self.rid("rel")
            r = todict(sam.ok("RELEASE", rid, fz, "REASON", "COURT_ORDER", "DOC", "COURT-8/2026-LIFT"))
            self.assertEqual(r["status"], "RELEASED")
            st = self.status(sam, fz)
            self.assertEqual((st["state"], st["release_doc"], st["doc"]), ("RELEASED", "COURT-8/2026-LIFT",
                                                                          "COURT-7/2026"))
            # Idempotent: the same request again answers the same; another DOC is another request.
            dup = todict(sam.ok("RELEASE", rid, fz, "REASON", "COURT_ORDER", "DOC", "COURT-8/2026-LIFT"))
            self.assertEqual((dup["order_id"], dup["status"], dup["lsn"]), (fz, "DUPLICATE", r["lsn"]))
            self.assertErr(sam.call("RELEASE", rid, fz, "REASON", "COURT_ORDER", "DOC", "OTHER"), "ERR IDEMPOTENCY")
            # An agent may still EXTEND its own FREEZE (within the maximum).
            fz2 = todict(alice.ok(*self._freeze_args(self.acct("G"))))["order_id"]
            self.assertEqual(todict(alice.ok("EXTEND", self.rid(), fz2, "TTL", "86400"))["status"], "EXTENDED")

    def _freeze_args(self, account, **opts):
        args = ["FREEZE", self.rid("fz"), "BANK", "SGTB", "ACCOUNT", account, "CASE", "PCASE", "DOC", "COURT-7/2026"]
        for k, v in opts.items():
            args += [k.upper(), str(v)]
        return args

    def test_held_order_only_supervisor(self):
        with self.gw.client("olga") as ops:
            a1, a2 = self.acct("H"), self.acct("I")
            for a in (a1, a2):
                self.assertNotIsInstance(ops.call("LIST.ADD", "protected", "SGTB", a), RespError)
        with self.gw.client("alice") as alice, self.gw.client("sam") as sam:
            held = self.stop_ok(alice, a1)
            self.assertEqual(held["status"], "HELD")
            oid = held["order_id"]
            self.assertErr(alice.call("CONFIRM", oid), "NOPERM")
            self.assertErr(alice.call("RELEASE", self.rid(), oid), "NOPERM")
            self.assertErr(alice.call("EXTEND", self.rid(), oid, "TTL", "315360000"), "NOPERM")
            self.assertErr(alice.call("EXTEND", self.rid(), oid, "TTL", "60"), "NOPERM")
            st = self.status(alice, oid)
            self.assertEqual(st["state"], "HELD")
            self.assertEqual(todict(sam.ok("RELEASE", self.rid(), oid))["status"], "RELEASED")
            oid2 = self.stop_ok(alice, a2)["order_id"]
            self.assertEqual(todict(sam.ok("EXTEND", self.rid(), oid2, "TTL", "3600"))["status"], "EXTENDED")
            self.assertEqual(todict(sam.ok("CONFIRM", oid2))["status"], "CONFIRMED")

    def test_ttl_capped_by_kind_maximum(self):
        with self.gw.client("alice") as alice, self.gw.client("sam") as sam:
            r = self.stop(alice, self.acct("T"), ttl=STOP_MAX_S + 1)
            self.assertErr(r, "ERR SYNTAX")
            self.assertIn(str(STOP_MAX_S), r.reason)
            self.assertIn("stop_ttl_max", r.reason)
            self.assertErr(alice.call(*self._freeze_args(self.acct("U"), ttl=FREEZE_MAX_S + 1)), "ERR SYNTAX")
            ok = self.stop_ok(alice, self.acct("V"), ttl=STOP_MAX_S)
            oid = ok["order_id"]
            before = self.status(alice, oid)["expires_at"]
            # Ten years, by its own agent and by a supervisor: refused, nothing changed.
            for c in (alice, sam):
                r = c.call("EXTEND", self.rid(), oid, "TTL", "315360000")
                self.assertErr(r, "ERR SYNTAX")
                self.assertIn("nothing was changed", r.reason)
            self.assertEqual(self.status(alice, oid)["expires_at"], before)
            ext = todict(alice.ok("EXTEND", self.rid(), oid, "TTL", str(STOP_MAX_S)))
            self.assertLessEqual(ext["expires_at"], self.status(alice, oid)["accepted_at"] + STOP_MAX_S * 1000 + 60000)
            fz = todict(alice.ok(*self._freeze_args(self.acct("W"))))["order_id"]
            self.assertErr(sam.call("EXTEND", self.rid(), fz, "TTL", str(FREEZE_MAX_S + 1)), "ERR SYNTAX")
            self.assertEqual(todict(sam.ok("EXTEND", self.rid(), fz, "TTL", str(FREEZE_MAX_S)))["status"], "EXTENDED")

    def test_decisions_survive_restart(self):
        """Refusals leave no record; every answer is the same after a restart (journal replay)."""
        with self.gw.client("alice") as alice, self.gw.client("bob") as bob, self.gw.client("sam") as sam:
            oid = self.stop_ok(alice, self.acct("R"))["order_id"]
            fz = todict(alice.ok(*self._freeze_args(self.acct("S"))))["order_id"]
            refused = ["RELEASE", self.rid("bad"), oid]
            self.assertErr(bob.call(*refused), "NOPERM")
            ext_rid, rel_rid = self.rid("ext"), self.rid("rel")
            ext = todict(alice.ok("EXTEND", ext_rid, oid, "TTL", "5000"))
            rel = todict(sam.ok("RELEASE", rel_rid, fz, "DOC", "COURT-9/2026"))
            before = {o: self.status(alice, o) for o in (oid, fz)}
        self.gw.restart(kill=True)
        with self.gw.client("alice") as alice, self.gw.client("bob") as bob, self.gw.client("sam") as sam:
            for o, st in before.items():
                self.assertEqual(self.status(alice, o), st, "state of %s changed across the restart" % o)
            dup = todict(alice.ok("EXTEND", ext_rid, oid, "TTL", "5000"))
            self.assertEqual((dup["status"], dup["lsn"]), ("DUPLICATE", ext["lsn"]))
            dup = todict(sam.ok("RELEASE", rel_rid, fz, "DOC", "COURT-9/2026"))
            self.assertEqual((dup["order_id"], dup["status"], dup["lsn"]), (fz, "DUPLICATE", rel["lsn"]))
            # The refused request was never journaled: refused again, not "DUPLICATE".
            self.assertErr(bob.call(*refused), "NOPERM")
            self.assertEqual(self.status(alice, oid)["state"], before[oid]["state"])


    def test_config_validates_ttl_max(self):
        for opts, word in (({"stop_ttl": "7200", "stop_ttl_max": "3600"}, "stop_ttl_max"),
                           ({"freeze_ttl_max": "0"}, "freeze_ttl_max"),
                           ({"stop_ttl_max": "soon"}, "stop_ttl_max")):
            gw = sgtest.track(sgtest.Gateway(name="ttlmax", gateway=opts))
            rc, log = gw.start_expect_failure()
            self.assertNotEqual(rc, 0)
            self.assertIn(word, log)


if __name__ == "__main__":
    sgtest.main()
