"""Cascade, "trace and stop" (SPEC §3, §2b, §4.1 CASE): a FUNDS_MOVED answer makes the gateway
itself issue a child STOP on every onward account (>= cascade.min_amount), up to
cascade.max_depth levels below the root, each linked to its parent and in the same case;
CASE shows the tree (roots first, each child after its parent) with the frozen total."""
import time

import sgtest
from sgtest import GatewayCase, todict, wait_until


def base(tag):
    return "CZ%d" % (time.time_ns() % 10 ** 10) + tag


class CascadeMixin(object):
    def tree(self, c, case, n, timeout=5):
        """Wait until CASE holds n orders, all answered; return the CASE map."""
        def ready():
            r = c.call("CASE", case)
            if isinstance(r, sgtest.RespError):
                return None
            d = todict(r)
            done = all(o["state"] not in ("ACCEPTED", "SENT") for o in d["orders"])
            return d if len(d["orders"]) >= n and done else None
        try:
            return wait_until(ready, timeout=timeout, interval=0.05, what="case %s" % case)
        except AssertionError:
            d = todict(c.ok("CASE", case))
            self.fail("case %s should hold %d answered orders (the cascade), holds %d: %s" % (
                case, n, len(d["orders"]),
                ["%s %s level %s children %s" % (o["account"], o["state"], o["level"], o["children"])
                 for o in d["orders"]]))

    def assert_tree_order(self, orders):
        seen = set()
        for o in orders:
            if o["parent"] is not None:
                self.assertIn(o["parent"], seen, "child %s listed before its parent" % o["order_id"])
            seen.add(o["order_id"])


class Cascade(CascadeMixin, GatewayCase):
    GW_ARGS = dict(sections="[cascade]\nmax_depth = 5\nmin_amount = 0\n[plugin sim]\nlatency_us = 200\n")

    def test_chain_m(self):
        with self.gw.client("alice") as c:
            acct = base("A")
            case = "CASC-" + acct
            root = todict(c.ok("STOP", self.rid(), "BANK", "CZB", "ACCOUNT", acct + "M003", "CASE", case,
                               "AMOUNT", "10000"))
            cs = self.tree(c, case, 4)
            orders = cs["orders"]
            self.assertEqual(len(orders), 4, [o["account"] for o in orders])
            self.assert_tree_order(orders)
            by_acct = {o["account"]: o for o in orders}
            r, l1, l2, l3 = (by_acct[acct + s] for s in ("M003", "M002", "M001", "M000"))
            self.assertEqual(r["order_id"], root["order_id"])
            for o, level, parent, state in ((r, 0, None, "FUNDS_MOVED"), (l1, 1, r, "FUNDS_MOVED"),
                                            (l2, 2, l1, "FUNDS_MOVED"), (l3, 3, l2, "CONFIRMED")):
                self.assertEqual(o["level"], level, o["account"])
                self.assertEqual(o["parent"], parent["order_id"] if parent else None)
                self.assertEqual(o["state"], state, o["account"])
                self.assertEqual(o["kind"], "STOP")
                self.assertIn(case, o["cases"])
                self.assertEqual(o["bank"], "CZB")
                if parent:
                    self.assertEqual(parent["children"], [o["order_id"]])
                    self.assertEqual(o["amount"], 10000)
            self.assertEqual(l3["children"], [])
            self.assertEqual(l3["frozen"], 10000)
            self.assertEqual(cs["frozen_total"], 10000)
            # STATUS of the root shows the same links.
            st = self.status(c, root["order_id"])
            self.assertEqual(st["children"], [l1["order_id"]])

    def test_split_s(self):
        with self.gw.client("alice") as c:
            acct = base("B")
            case = "CASC-" + acct
            c.ok("STOP", self.rid(), "BANK", "CZB", "ACCOUNT", acct + "S001", "CASE", case, "AMOUNT", "10000")
            cs = self.tree(c, case, 3)
            by_acct = {o["account"]: o for o in cs["orders"]}
            self.assertEqual(set(by_acct), {acct + "S001", acct + "S000", acct + "T000"})
            self.assertEqual(by_acct[acct + "S000"]["frozen"], 9000)
            self.assertEqual(by_acct[acct + "T000"]["frozen"], 1000)
            self.assertEqual(sorted(by_acct[acct + "S001"]["children"]),
                             sorted([by_acct[acct + "S000"]["order_id"], by_acct[acct + "T000"]["order_id"]]))
            self.assertEqual(cs["frozen_total"], 10000)
            self.assert_tree_order(cs["orders"])


class CascadeLimits(CascadeMixin, GatewayCase):
    GW_ARGS = dict(sections="[cascade]\nmax_depth = 2\nmin_amount = 5000\n[plugin sim]\nlatency_us = 200\n")

    def test_max_depth(self):
        with self.gw.client("alice") as c:
            acct = base("C")
            case = "CASC-" + acct
            c.ok("STOP", self.rid(), "BANK", "CZB", "ACCOUNT", acct + "M005", "CASE", case, "AMOUNT", "10000")
            cs = self.tree(c, case, 3)
            time.sleep(0.3)  # a level-3 child would have appeared by now
            cs = todict(c.ok("CASE", case))
            self.assertEqual(sorted(o["account"] for o in cs["orders"]), sorted(acct + s for s in ("M005", "M004", "M003")))
            self.assertEqual(max(o["level"] for o in cs["orders"]), 2)

    def test_min_amount(self):
        with self.gw.client("alice") as c:
            acct = base("D")
            case = "CASC-" + acct
            c.ok("STOP", self.rid(), "BANK", "CZB", "ACCOUNT", acct + "S001", "CASE", case, "AMOUNT", "10000")
            cs = self.tree(c, case, 2)
            time.sleep(0.3)
            cs = todict(c.ok("CASE", case))
            # 9000 to S000 is followed; 1000 to T000 is under min_amount = 5000.
            self.assertEqual(sorted(o["account"] for o in cs["orders"]), sorted([acct + "S001", acct + "S000"]))


if __name__ == "__main__":
    sgtest.main()
