"""Idempotency by request_id (SPEC §3): same request -> DUPLICATE with the original order,
different fields -> ERR IDEMPOTENCY, nothing changes; and all of it across restarts
(kill -9 and clean)."""
import time

import sgtest
from sgtest import GatewayCase, todict


def stop_args(rid, account, case="IC1", amount=None, bank="SGTB", **opts):
    a = ["STOP", rid, "BANK", bank, "ACCOUNT", account, "CASE", case]
    if amount is not None:
        a += ["AMOUNT", str(amount)]
    for k, v in opts.items():
        a += [k.upper(), str(v)]
    return a


class Idempotency(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 300\n")

    def acct(self, suffix="1234"):
        return "I%d%s" % (int(time.time() * 1e6) % 10 ** 12, suffix)

    def test_duplicate_same_fields(self):
        with self.gw.client("alice") as c:
            rid, a = self.rid("dup"), self.acct()
            first = todict(c.ok(*stop_args(rid, a, amount=500)))
            self.assertEqual(first["status"], "ACCEPTED")
            self.wait_state(c, first["order_id"], "CONFIRMED")
            before = self.status(c, first["order_id"])
            info0 = self.gw.info(c)
            again = todict(c.ok(*stop_args(rid, a, amount=500)))
            self.assertEqual(again["status"], "DUPLICATE")
            self.assertEqual(again["order_id"], first["order_id"])
            self.assertEqual(again["lsn"], first["lsn"])
            # Nothing changed: same order, no new order, no new journal record.
            self.assertEqual(self.status(c, first["order_id"]), before)
            info1 = self.gw.info(c)
            self.assertEqual(info1["orders_total"], info0["orders_total"])
            self.assertEqual(info1["last_lsn"], info0["last_lsn"])

    def test_duplicate_on_another_connection_and_agent(self):
        with self.gw.client("alice") as c, self.gw.client("sam") as c2:
            rid, a = self.rid("dup2"), self.acct()
            first = todict(c.ok(*stop_args(rid, a)))
            again = todict(c2.ok(*stop_args(rid, a)))
            self.assertEqual((again["status"], again["order_id"]), ("DUPLICATE", first["order_id"]))

    def test_different_fields_refused(self):
        with self.gw.client("alice") as c:
            rid, a = self.rid("idem"), self.acct()
            first = todict(c.ok(*stop_args(rid, a, amount=500)))
            self.wait_state(c, first["order_id"], "CONFIRMED")
            info0 = self.gw.info(c)
            variants = [
                stop_args(rid, a, amount=501),
                stop_args(rid, a),
                stop_args(rid, a, case="IC2", amount=500),
                stop_args(rid, self.acct("9999"), amount=500),
                stop_args(rid, a, bank="OTHERBK", amount=500),
                stop_args(rid, a, amount=500, ttl=60),
                stop_args(rid, a, amount=500, reason="X"),
                ["FREEZE", rid, "BANK", "SGTB", "ACCOUNT", a, "CASE", "IC1", "DOC", "D1", "AMOUNT", "500"],
            ]
            for v in variants:
                self.assertErr(c.call(*v), "ERR IDEMPOTENCY", "variant %r" % (v,))
            info1 = self.gw.info(c)
            self.assertEqual(info1["orders_total"], info0["orders_total"])
            self.assertEqual(info1["last_lsn"], info0["last_lsn"])
            st = self.status(c, first["order_id"])
            self.assertEqual((st["amount"], st["cases"], st["account"]), (500, ["IC1"], a))

    def test_pipelined_duplicates(self):
        """The same request twice in one pipeline: one order, then a DUPLICATE."""
        with self.gw.client("alice") as c:
            rid, a = self.rid("pdup"), self.acct()
            r = [todict(x) for x in c.pipeline([stop_args(rid, a)] * 3)]
            self.assertEqual([x["status"] for x in r], ["ACCEPTED", "DUPLICATE", "DUPLICATE"])
            self.assertEqual(len({x["order_id"] for x in r}), 1)

    def test_request_id_bounds(self):
        with self.gw.client("alice") as c:
            ok = "R" * 64
            self.assertEqual(todict(c.ok(*stop_args(ok + "", self.acct())))["status"], "ACCEPTED")
            self.assertErr(c.call(*stop_args("R" * 65, self.acct())), "ERR SYNTAX")
            self.assertErr(c.call(*stop_args("", self.acct())), "ERR SYNTAX")
            self.assertErr(c.call(*stop_args("has space", self.acct())), "ERR SYNTAX")


class AcrossRestart(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 300\n")

    def test_idempotency_survives_kill9_and_clean_restart(self):
        gw = self.gw
        tag = int(time.time() * 1000) % 10 ** 9
        with gw.client("alice") as c:
            orders = {}
            for i in range(20):
                rid, a = "rs-%d-%d" % (tag, i), "RS%d%04dX" % (tag, i)
                d = todict(c.ok(*stop_args(rid, a, amount=100 + i)))
                self.assertEqual(d["status"], "ACCEPTED")
                orders[rid] = (a, d["order_id"])
            rel_rid = "rs-rel-%d" % tag
            rel_oid = orders["rs-%d-0" % tag][1]
            self.wait_state(c, rel_oid, "CONFIRMED")
            self.assertEqual(todict(c.ok("RELEASE", rel_rid, rel_oid))["status"], "RELEASED")
            ext_rid = "rs-ext-%d" % tag
            ext_oid = orders["rs-%d-1" % tag][1]
            ext = todict(c.ok("EXTEND", ext_rid, ext_oid, "TTL", "99999"))
            self.assertEqual(ext["status"], "EXTENDED")
            max_id = max(int(o.split("-")[1]) for _, o in orders.values())

        for how in ("kill9", "sigterm"):
            gw.restart(kill=(how == "kill9"))
            with gw.client("alice") as c:
                for i in range(20):
                    rid = "rs-%d-%d" % (tag, i)
                    a, oid = orders[rid]
                    d = todict(c.ok(*stop_args(rid, a, amount=100 + i)))
                    self.assertEqual((d["status"], d["order_id"]), ("DUPLICATE", oid), how)
                    self.assertErr(c.call(*stop_args(rid, a, amount=1)), "ERR IDEMPOTENCY", how)
                    st = self.status(c, oid)
                    self.assertEqual((st["request_id"], st["account"], st["amount"]), (rid, a, 100 + i), how)
                self.assertEqual(todict(c.ok("RELEASE", rel_rid, rel_oid))["status"], "DUPLICATE", how)
                self.assertErr(c.call("RELEASE", rel_rid, ext_oid), "ERR IDEMPOTENCY")
                self.assertEqual(self.status(c, rel_oid)["state"], "RELEASED", how)
                d = todict(c.ok("EXTEND", ext_rid, ext_oid, "TTL", "99999"))
                self.assertEqual(d["status"], "DUPLICATE", how)
                self.assertEqual(self.status(c, ext_oid)["expires_at"], ext["expires_at"], how)
                # New orders get new ids, never one handed out before the restart.
                n = todict(c.ok(*stop_args("rs-new-%s-%d" % (how, tag), "RSNEW%s%d" % (how[0].upper(), tag))))
                self.assertEqual(n["status"], "ACCEPTED")
                self.assertGreater(int(n["order_id"].split("-")[1]), max_id)
                max_id = int(n["order_id"].split("-")[1])


if __name__ == "__main__":
    sgtest.main()
