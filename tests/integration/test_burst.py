"""The provincial push (SPEC intro, §4.1, §7): 6,077 STOPs pipelined on one connection are all
acknowledged, in order, and all reach CONFIRMED at the bank; the journal rolls over segments
and replays them all after kill -9."""
import time

import sgtest
from sgtest import GatewayCase, todict, wait_until

N = 6077


class Burst(GatewayCase):
    GW_ARGS = dict(gateway={"segment_bytes": str(1024 * 1024)}, sections="[plugin sim]\nlatency_us = 200\n")

    def test_6077_burst(self):
        gw = self.gw
        tag = int(time.time() * 1000) % 10 ** 8
        case = "PUSH-%d" % tag
        cmds = [["STOP", "b-%d-%d" % (tag, i), "BANK", "BK%d" % (i % 7), "ACCOUNT", "PUSH%d%05dX" % (tag, i),
                 "CASE", case, "AMOUNT", str(1000 + i)] for i in range(N)]
        with gw.client("alice") as c:
            t0 = time.monotonic()
            replies = c.pipeline(cmds)
            acked_s = time.monotonic() - t0
            answers = [todict(r) for r in replies]
            self.assertEqual([a["status"] for a in answers], ["ACCEPTED"] * N)
            ids = [a["order_id"] for a in answers]
            self.assertEqual(len(set(ids)), N)
            lsns = [a["lsn"] for a in answers]
            self.assertTrue(all(x < y for x, y in zip(lsns, lsns[1:])), "lsns not increasing in request order")
            sys_msg = "burst of %d acknowledged in %.3fs" % (N, acked_s)
            print(sys_msg)
            self.assertLess(acked_s, 30, sys_msg)

            def confirmed():
                return int(gw.info(c)["orders_CONFIRMED"]) >= N

            wait_until(confirmed, timeout=60, interval=0.1, what="all %d orders CONFIRMED" % N)
            info = gw.info(c)
            self.assertEqual(int(info["orders_CONFIRMED"]), N)
            self.assertEqual(int(info["orders_SENT"]) + int(info["orders_ACCEPTED"]), 0)
            m = gw.metrics()
            self.assertEqual(m['stopgate_orders{state="CONFIRMED"}'], N)

            statuses = [todict(r) for r in c.pipeline([["STATUS", oid] for oid in ids])]
            for i, st in enumerate(statuses):
                self.assertEqual(st["state"], "CONFIRMED")
                self.assertEqual(st["request_id"], "b-%d-%d" % (tag, i))
                self.assertEqual(st["frozen"], 1000 + i)
                self.assertLessEqual(st["accepted_at"], st["sent_at"])
                self.assertLessEqual(st["sent_at"], st["answered_at"])
            cs = todict(c.ok("CASE", case))
            self.assertEqual(len(cs["orders"]), N)
            self.assertEqual(cs["frozen_total"], sum(1000 + i for i in range(N)))

        # Several segments were written; all of them replay after kill -9.
        self.assertGreater(len(gw.segments()), 1, "segment_bytes=1MiB should have rolled over")
        gw.restart(kill=True)
        self.assertIn("replayed", gw.log_since_start())
        with gw.client("alice") as c:
            info = gw.info(c)
            self.assertEqual(int(info["orders_CONFIRMED"]), N)
            for i in range(0, N, 607):
                st = self.status(c, ids[i])
                self.assertEqual((st["state"], st["request_id"], st["frozen"]), ("CONFIRMED", "b-%d-%d" % (tag, i),
                                                                                1000 + i))
            dup = todict(c.ok(*cmds[N - 1]))
            self.assertEqual((dup["status"], dup["order_id"]), ("DUPLICATE", ids[N - 1]))

        # Offline verification of the rolled-over journal.
        self.assertEqual(gw.stop(), 0)
        p = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("OK", p.stdout)
        self.assertIn("hash chain intact", p.stdout)
        gw.start()


if __name__ == "__main__":
    sgtest.main()
