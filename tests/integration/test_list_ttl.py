"""The expiry table of list memberships (LIST.ADD ... TTL, issue 15 item 13): reserved at
start for one membership with a TTL per slot of list_capacity, never grown on the hot path.
Full, a LIST.ADD with a TTL answers ERR BUSY with its reason (nothing journaled, the gateway
keeps serving); deleting or expiring memberships makes room again; churn that leaves deleted
slots behind is compacted without losing a live expiry; a restart replays to the same state."""
import time

import sgtest
from sgtest import GatewayCase, todict, wait_until

CAP = 1024  # list_capacity: 1024 memberships with a TTL, 768 accounts in the shared table


class ListTtl(GatewayCase):
    GW_ARGS = dict(gateway={"list_capacity": str(CAP)},
                   sections="[list mule]\n[list suspect]\n[list watch]\n")

    def lists_of(self, c, acct):
        return sorted(todict(c.ok("CHECK", "SGTB", acct))["lists"])

    def add_many(self, c, lst, accts, ttl="3600"):
        cmds = [("LIST.ADD", lst, "SGTB", a, "TTL", ttl) if ttl else ("LIST.ADD", lst, "SGTB", a) for a in accts]
        out = []
        for i in range(0, len(cmds), 256):
            out += c.pipeline(cmds[i:i + 256])
        return out

    def test_full_then_room_again_and_compaction(self):
        accts = ["TTLA%04d" % i for i in range(CAP // 2)]
        with self.gw.client("olga") as o, self.gw.client("alice") as c:
            for lst in ("mule", "suspect"):
                for r in self.add_many(o, lst, accts):
                    self.assertEqual(todict(r)["status"], "ADDED", r)
            # 1024 memberships have an expiry: one more is refused whole, with its reason.
            r = o.call("LIST.ADD", "mule", "SGTB", "TTLX0001", "TTL", "3600")
            self.assertErr(r, "ERR BUSY")
            self.assertIn("expiry table full", r.reason)
            self.assertIn("list_capacity", r.reason)
            self.assertEqual(self.lists_of(c, "TTLX0001"), [])
            # A permanent membership needs no expiry entry; updating a TTL needs no new one.
            self.assertEqual(todict(o.ok("LIST.ADD", "mule", "SGTB", "TTLX0001"))["status"], "ADDED")
            self.assertEqual(todict(o.ok("LIST.ADD", "mule", "SGTB", accts[0], "TTL", "7200"))["status"],
                             "UPDATED")
            # A delete gives its entry back.
            self.assertEqual(todict(o.ok("LIST.DEL", "suspect", "SGTB", accts[0]))["status"], "DELETED")
            self.assertEqual(todict(o.ok("LIST.ADD", "watch", "SGTB", "TTLX0001", "TTL", "3600"))["status"],
                             "ADDED")
            self.assertErr(o.call("LIST.ADD", "watch", "SGTB", "TTLX0002", "TTL", "3600"), "ERR BUSY")
            # Churn: move 300 memberships between two lists, back and forth, each move leaving
            # a deleted slot: more deleted slots than the table has room for, so it compacts.
            moving = accts[1:301]
            src, dst = "suspect", "watch"
            for _ in range(4):
                for r in o.pipeline([("LIST.DEL", src, "SGTB", a) for a in moving]):
                    self.assertEqual(todict(r)["status"], "DELETED", r)
                for r in self.add_many(o, dst, moving):
                    self.assertEqual(todict(r)["status"], "ADDED", r)
                src, dst = dst, src
            # Still exactly full: every live expiry survived the compactions.
            self.assertErr(o.call("LIST.ADD", "mule", "SGTB", "TTLX0003", "TTL", "3600"), "ERR BUSY")
            self.assertEqual(self.lists_of(c, accts[1]), ["mule", src])
            self.assertEqual(self.lists_of(c, accts[400]), ["mule", "suspect"])
            # A membership that expires frees its entry.
            self.assertEqual(todict(o.ok("LIST.DEL", "mule", "SGTB", accts[500]))["status"], "DELETED")
            self.assertEqual(todict(o.ok("LIST.ADD", "mule", "SGTB", "TTLEXP1", "TTL", "1"))["status"], "ADDED")
            wait_until(lambda: self.lists_of(c, "TTLEXP1") == [], timeout=6, what="TTL 1 membership expired")
            self.assertEqual(todict(o.ok("LIST.ADD", "mule", "SGTB", "TTLX0004", "TTL", "3600"))["status"], "ADDED")
        self.assertServing()
        # Replay rebuilds the same memberships (and the same full table) from the journal.
        self.gw.restart()
        with self.gw.client("olga") as o, self.gw.client("alice") as c:
            self.assertEqual(self.lists_of(c, accts[1]), ["mule", src])
            self.assertEqual(self.lists_of(c, "TTLX0004"), ["mule"])
            self.assertEqual(self.lists_of(c, "TTLX0001"), ["mule", "watch"])
            self.assertErr(o.call("LIST.ADD", "mule", "SGTB", "TTLX0005", "TTL", "3600"), "ERR BUSY")


if __name__ == "__main__":
    sgtest.main()
