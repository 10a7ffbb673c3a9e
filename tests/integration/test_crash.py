"""kill -9 (SPEC §7, §9): nothing acknowledged is ever lost. Cycles of: pipeline a burst of
STOPs, kill -9 the gateway while the answers are streaming back, restart on the same journal,
and check that every acknowledged order is there with the same id (and the same request), that
re-sending it gives DUPLICATE, and that every order still reaches the bank (CONFIRMED)."""
import os
import random
import socket
import threading
import time

import sgtest
from sgtest import Closed, GatewayCase, encode, todict, wait_until

CYCLES = 6
PER_CYCLE = 3000


class KillDuringBurst(GatewayCase):
    GW_ARGS = dict(gateway={"segment_bytes": str(1024 * 1024)}, sections="[plugin sim]\nlatency_us = 300\n")

    def burst_and_kill(self, cycle, tag, rnd):
        """Pipeline PER_CYCLE STOPs, kill -9 after `kill_after` answers. Returns the acked
        {rid: (account, order_id)} and the commands sent."""
        gw = self.gw
        c = gw.client("alice")
        cmds = {}
        chunks = []
        for base in range(0, PER_CYCLE, 150):
            part = []
            for i in range(base, min(base + 150, PER_CYCLE)):
                rid = "k%d-%d-%d" % (tag, cycle, i)
                acct = "K%d%d%05dX" % (tag, cycle, i)
                cmd = ["STOP", rid, "BANK", "KB%d" % (i % 3), "ACCOUNT", acct, "CASE", "KC%d" % cycle]
                cmds[rid] = cmd
                part.append(encode(*cmd))
            chunks.append(b"".join(part))
        rids = list(cmds)
        kill_after = rnd.randrange(1, PER_CYCLE // 2)

        def writer():
            try:
                for ch in chunks:
                    c.sock.sendall(ch)
                    time.sleep(0.002)
            except OSError:
                pass

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        acked = {}
        n = 0
        try:
            while True:
                try:
                    d = todict(c.read())
                    if d.get("status") != "ACCEPTED" or not str(d.get("order_id", "")).startswith("SG-"):
                        raise ValueError("not an ACCEPTED answer: %r" % (d,))
                except (ValueError, AssertionError, KeyError) as e:
                    # A corrupted reply stream: what came before it still counts as acknowledged;
                    # stop reading, kill, and go on checking durability. Reported at the end.
                    self.corrupted.append("cycle %d, answer %d: %s" % (cycle, n, repr(e)[:200]))
                    break
                rid = rids[n]
                acked[rid] = (cmds[rid][5], d["order_id"])
                n += 1
                if n == kill_after:
                    gw.kill9()
                if n == PER_CYCLE:
                    break
        except (Closed, ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
        t.join(10)
        c.close()
        if gw.running:
            gw.kill9()  # every answer arrived before the kill took effect
        return acked, cmds, kill_after

    def test_kill9_cycles(self):
        seed = int(os.environ.get("SGTEST_SEED", int(time.time())))
        rnd = random.Random(seed)
        tag = seed % 10 ** 6
        gw = self.gw
        self.corrupted = []
        all_acked = {}
        all_cmds = {}
        for cycle in range(CYCLES):
            acked, cmds, kill_after = self.burst_and_kill(cycle, tag, rnd)
            msg = "seed %d cycle %d: kill -9 after %d answers, %d acked" % (seed, cycle, kill_after, len(acked))
            print(msg)
            if not self.corrupted:
                self.assertGreaterEqual(len(acked), min(kill_after, PER_CYCLE), msg)
            all_acked.update(acked)
            all_cmds.update(cmds)
            gw.start()
            with gw.client("alice") as c:
                rids = list(all_acked)
                statuses = c.pipeline([["STATUS", all_acked[r][1]] for r in rids])
                for rid, st in zip(rids, statuses):
                    st = todict(st)
                    acct, oid = all_acked[rid]
                    self.assertEqual((st["order_id"], st["request_id"], st["account"]), (oid, rid, acct), msg)
                # Re-sending an acknowledged request: DUPLICATE with the same id.
                dups = c.pipeline([all_cmds[r] for r in rids[-500:]] + [all_cmds[r] for r in rids[:200]])
                for rid, d in zip(rids[-500:] + rids[:200], dups):
                    d = todict(d)
                    self.assertEqual((d["status"], d["order_id"]), ("DUPLICATE", all_acked[rid][1]), msg)
                # Ids are never handed out twice.
                self.assertEqual(len({v[1] for v in all_acked.values()}), len(all_acked))

        # Every order ever accepted reaches the bank and is CONFIRMED (instructions without an
        # answer are re-sent after each restart).
        with gw.client("alice") as c:
            def all_confirmed():
                i = gw.info(c)
                return i["orders_CONFIRMED"] == i["orders_total"] and i
            info = wait_until(all_confirmed, timeout=60, interval=0.1, what="every order CONFIRMED after restarts")
            self.assertGreaterEqual(int(info["orders_total"]), len(all_acked))
            rids = list(all_acked)
            for rid, st in zip(rids, c.pipeline([["STATUS", all_acked[r][1]] for r in rids])):
                st = todict(st)
                self.assertEqual(st["state"], "CONFIRMED", rid)
                self.assertIn("answered_at", st)
        self.assertEqual(self.corrupted, [], "the stream of STOP answers was corrupted (not a RESP reply); "
                         "see test_resp Pipelining.test_streamed_stop_pipelines_intact")


    def test_kill9_then_torn_tail(self):
        """kill -9 mid-burst, then a torn last write on top (half a batch, its header damaged,
        as a machine crash during the write leaves it): the restart cuts the torn tail (a
        log line says so) and every acknowledged order is there."""
        seed = int(os.environ.get("SGTEST_SEED", int(time.time()))) + 1
        rnd = random.Random(seed)
        tag = seed % 10 ** 6
        gw = self.gw
        self.corrupted = []
        if not gw.running:
            gw.start()
        acked, cmds, kill_after = self.burst_and_kill(77, tag, rnd)
        seg = gw.segments()[-1]
        frames = sgtest.journal_frames(seg)
        self.assertTrue(frames, "the last segment holds no complete batch")
        off, length = frames[-1][0], frames[-1][1]
        with open(seg, "rb") as f:
            data = f.read()
        torn = bytearray(data[off:off + length // 2])
        torn[0] ^= 0xFF  # the copied frame header's checksum no longer holds
        with open(seg, "ab") as f:
            f.write(bytes(torn))
        p = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        self.assertIn("torn tail", p.stderr)
        gw.start()
        self.assertIn("torn tail cut", gw.log_since_start())
        with gw.client("alice") as c:
            rids = list(acked)
            for rid, st in zip(rids, c.pipeline([["STATUS", acked[r][1]] for r in rids])):
                st = todict(st)
                self.assertEqual((st["order_id"], st["request_id"]), (acked[rid][1], rid),
                                 "seed %d: kill -9 after %d answers" % (seed, kill_after))


class KillWithAnswersPending(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 1500000\n")

    def test_kill9_while_bank_answers_pending(self):
        """Orders SENT to a slow bank (1.5 s) when the gateway dies are sent again after the
        restart and answered."""
        gw = self.gw
        tag = int(time.time() * 1000) % 10 ** 7
        with gw.client("alice") as c:
            ids = [todict(r)["order_id"] for r in c.pipeline(
                [["STOP", "pend-%d-%d" % (tag, i), "BANK", "PB", "ACCOUNT", "PEND%d%03dX" % (tag, i), "CASE", "PC"]
                 for i in range(200)])]
            before = [self.status(c, oid)["state"] for oid in ids]
        self.assertEqual(set(before) - {"ACCEPTED", "SENT"}, set(), "the sim answered faster than configured")
        gw.kill9()
        gw.start()
        self.assertIn("sent again", gw.log_since_start())
        with gw.client("alice") as c:
            for oid in ids:
                st = self.wait_state(c, oid, "CONFIRMED", timeout=15)
                self.assertIn("sent_at", st)


if __name__ == "__main__":
    sgtest.main()
