"""Crash points inside the journal (issue 8 item 3), in a build configured with
-Dfault_injection=true (build-fault/, set up by ops/test; `meson test -C build-fault --suite
fault`). stopgated then reads SG_FAULT=<point>:<N> and kills itself with SIGKILL the N-th
time it passes <point> (gateway/core/journal.c):

  journal_after_write  a batch's write has completed, its fdatasync has not been seen: the
                       records are in the file but nobody was answered;
  journal_torn_write   half of a batch's first extent written, then death: a torn tail;
  journal_mid_roll     the next segment file created, its header not yet written;
  journal_torn_roll    half of the first extent of a batch that rolls into a new segment
                       written: a torn tail in one segment and an empty file after it.

(Snapshots do not exist yet, so there is no mid-snapshot point.)

For each point: load on three connections until the gateway kills itself there; `stopctl
journal verify` on the dead journal must report at most a torn tail at the very end (and
the same verdict the gateway reaches); restart on the same journal without SG_FAULT; every
acknowledged order is present and its request answers DUPLICATE with the same id; a torn
tail found by verify is reported in the log ("torn tail cut in segment N at offset O");
after SIGTERM the journal verifies clean."""
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

import sgtest  # noqa: E402
from sgtest import Closed, Gateway, RespError, todict  # noqa: E402

POINTS = [
    # (point, N, note bytes per STOP): the N-th pass kills.
    ("journal_after_write", 12, 0),
    ("journal_torn_write", 8, 0),
    ("journal_mid_roll", 1, 900),
    ("journal_torn_roll", 1, 900),
]


def fault_build():
    """Is the stopgated under test built with SG_FAULT_INJECTION (the point names are in it)?"""
    try:
        with open(sgtest.STOPGATED, "rb") as f:
            return b"journal_after_write" in f.read()
    except OSError:
        return False


class FaultPoints(unittest.TestCase):
    def load_until_death(self, gw, tag, note_len, timeout=30.0):
        """Three connections pipelining STOPs (some cascading) until the gateway dies.
        Returns {rid: (cmd, order_id, status)} of what was acknowledged."""
        acked = {}
        lock = threading.Lock()
        stop = threading.Event()

        def worker(w):
            try:
                c = gw.client("alice", timeout=10)
            except (OSError, Closed, AssertionError):
                return
            n = 0
            try:
                while not stop.is_set():
                    batch = []
                    for _ in range(20):
                        n += 1
                        suffix = ("M003", "S002", "X", "X", "X")[n % 5]
                        rid = "%s-%d-%d" % (tag, w, n)
                        cmd = ["STOP", rid, "BANK", "FB", "ACCOUNT", "%sW%dN%d%s" % (tag.upper(), w, n, suffix),
                               "CASE", "FC%s%d" % (tag, w), "AMOUNT", str(1000 + n)]
                        if note_len:
                            cmd += ["NOTE", "x" * note_len]
                        batch.append(cmd)
                    for cmd, r in zip(batch, c.pipeline(batch)):
                        if isinstance(r, RespError):
                            continue
                        d = todict(r)
                        with lock:
                            acked[cmd[1]] = (cmd, d["order_id"], d["status"])
            except (OSError, Closed, ValueError):
                pass
            finally:
                c.close()

        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(3)]
        for t in threads:
            t.start()
        try:
            rc = gw.proc.wait(timeout)
        except Exception:
            rc = None
        stop.set()
        for t in threads:
            t.join(20)
        if rc is None:
            gw.kill9()
            self.fail("the fault point was not reached within %.0f s" % timeout)
        self.assertEqual(rc, -9, "stopgated exited %r instead of killing itself at the fault point" % rc)
        gw._forget()
        return acked

    def run_point(self, point, n, note_len):
        gw = sgtest.track(Gateway(name="fault-" + point, gateway={"segment_bytes": str(1024 * 1024)},
                                  sections="[plugin sim]\nlatency_us = 200\n", env={"SG_FAULT": "%s:%d" % (point, n)}))
        gw.start()
        tag = point.split("_", 1)[1].replace("_", "")
        acked = self.load_until_death(gw, tag, note_len)
        segs = [os.path.basename(s) for s in gw.segments()]
        p = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        dead = (p.stdout + p.stderr).strip()
        torn = re.search(r"BAD (\d+)\.sgj offset (\d+): .*\(torn tail: the gateway cuts it", dead)
        print("%s:%d: %d orders acknowledged; segments %s; verify of the dead journal: %s"
              % (point, n, len(acked), segs, dead.splitlines()[-1] if dead else "?"))

        gw.extra_env.pop("SG_FAULT")
        gw.start()
        log = gw.log_since_start()
        cut = re.search(r"journal: torn tail cut in segment (\d+) at offset (\d+)", log)
        print("  restart: %s" % (cut.group(0) if cut else "no torn tail cut"))
        if point in ("journal_torn_write", "journal_torn_roll"):
            self.assertIsNotNone(cut, "a half-written batch left no torn tail to cut:\n" + log)
        if p.returncode != 0:
            self.assertIsNotNone(cut, "verify found a torn tail the restart did not report:\n%s\n%s" % (dead, log))

        with gw.client("alice") as c:
            rids = list(acked)
            for rid, st in zip(rids, c.pipeline([["STATUS", acked[r][1]] for r in rids])):
                cmd, oid, status = acked[rid]
                self.assertNotIsInstance(st, RespError, "acknowledged %s (%s) lost: %r" % (oid, rid, st))
                st = todict(st)
                self.assertEqual((st["order_id"], st["account"]), (oid, cmd[5]))
                if status == "ACCEPTED":
                    self.assertEqual(st["request_id"], rid)
            for rid, d in zip(rids, c.pipeline([acked[r][0] for r in rids])):
                d = todict(d)
                self.assertEqual((d["status"], d["order_id"]), ("DUPLICATE", acked[rid][1]), rid)
            # The cut tail's orders were never acknowledged; new ones are accepted on top of it.
            d = todict(c.ok("STOP", "after-" + tag, "BANK", "FB", "ACCOUNT", "AFTER%sX" % tag.upper(), "CASE", "FA"))
            self.assertEqual(d["status"], "ACCEPTED")
        self.assertEqual(gw.stop(), 0)
        p2 = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p2.returncode, 0, p2.stdout + p2.stderr)

        # `stopctl journal verify` must give the verdict the gateway acted on (docs/journal.md):
        # a torn tail where the restart cut one, at the same place; clean where it cut nothing.
        if p.returncode == 0:
            self.assertIsNone(cut, "verify found the dead journal clean, the gateway cut a tail:\n" + log)
        else:
            self.assertIsNotNone(torn, "stopctl journal verify calls the crashed journal damaged (\"corruption, "
                                       "not a torn tail\"), but the gateway restarted on it and cut it as a torn "
                                       "tail; every acknowledged order was there:\n%s" % dead)
            self.assertEqual((int(cut.group(1)), int(cut.group(2))), (int(torn.group(1)), int(torn.group(2))))
        return len(acked)

    def test_fault_points(self):
        if not fault_build():
            self.skipTest("stopgated built without -Dfault_injection=true")
        for point, n, note_len in POINTS:
            with self.subTest(point=point):
                self.run_point(point, n, note_len)


if __name__ == "__main__":
    sgtest.main()
