"""The journal on disk (SPEC §7, §9): corruption in the middle of a segment makes stopgated refuse
to start with a clear message (and leaves the files alone) and `stopctl journal verify` exit
non-zero; a torn tail is cut at start and every complete record is kept; `journal dump`."""
import json
import os
import random
import time

import sgtest
from sgtest import REC_CLOSE, Gateway, GatewayCase, journal_frames, journal_records, run_stopctl, todict, wait_until

SEG1 = "0000000000000001.sgj"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def dump(journal_dir, batches=False):
    """(process, records) of `stopctl journal dump`; with batches, the batch lines instead."""
    p = run_stopctl("--json", "journal", "dump", journal_dir)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    return p, [x for x in lines if ("batch" in x) == batches]


class JournalFiles(GatewayCase):
    """Each test builds its own journal with a fresh gateway, so tests can break files freely."""

    @classmethod
    def setUpClass(cls):
        cls.gw = None

    def make_journal(self, n=30, segment_bytes=None, name="j", note_len=200):
        """A stopped gateway whose journal holds n CONFIRMED orders. Returns (gw, order ids)."""
        g = {"segment_bytes": str(segment_bytes)} if segment_bytes else {}
        gw = sgtest.track(Gateway(gateway=g, sections="[plugin sim]\nlatency_us = 100\n", name=name))
        self.addCleanup(gw.kill9)
        gw.start()
        tag = int(time.time() * 1000) % 10 ** 8
        with gw.client("alice") as c:
            ids = []
            # Pipelines small enough to arrive in one read (< 64 KiB): this setup must not depend
            # on streamed pipelining, which test_resp covers.
            step = max(1, 48000 // (note_len + 150))
            for base in range(0, n, step):
                cmds = [["STOP", "j-%d-%d" % (tag, i), "BANK", "JB", "ACCOUNT", "J%d%05dX" % (tag, i), "CASE", "JC",
                         "AMOUNT", str(100 + i), "NOTE", "n" * note_len] for i in range(base, min(base + step, n))]
                ids += [todict(r)["order_id"] for r in c.pipeline(cmds)]
            wait_until(lambda: gw.info(c)["orders_CONFIRMED"] == str(n), timeout=30, what="orders confirmed")
        self.assertEqual(gw.stop(), 0)
        self.tag = tag
        return gw, ids

    def assert_orders(self, gw, ids):
        with gw.client("alice") as c:
            info = gw.info(c)
            self.assertEqual(int(info["orders_total"]), len(ids))
            for i, st in enumerate(c.pipeline([["STATUS", oid] for oid in ids])):
                st = todict(st)
                self.assertEqual(st["request_id"], "j-%d-%d" % (self.tag, i))
                self.assertEqual(st["state"], "CONFIRMED")

    # -- verify / dump on a healthy journal

    def test_verify_and_dump_clean(self):
        gw, ids = self.make_journal(n=25)
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("OK", p.stdout)
        on_disk = journal_records(os.path.join(gw.journal_dir, SEG1))
        nrec = len(on_disk)
        self.assertEqual(on_disk[-1][2], REC_CLOSE, "a clean shutdown leaves a close record last")
        self.assertIn("%d records" % (nrec - 1), p.stdout)
        self.assertIn("clean shutdown", p.stdout)
        p, recs = dump(gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(recs), nrec)
        self.assertEqual([r["lsn"] for r in recs], list(range(1, nrec + 1)))
        self.assertEqual(recs[-1]["type"], "CLOSE")
        # Batch boundaries: each batch line opens a run of lsns; together they cover them all.
        batches = dump(gw.journal_dir, batches=True)[1]
        frames = journal_frames(os.path.join(gw.journal_dir, SEG1))
        self.assertEqual([(b["offset"], b["bytes"], b["batch"], b["last_lsn"]) for b in batches], frames)
        self.assertEqual(sum(b["records"] for b in batches), nrec)
        orders = [r for r in recs if r["type"] == "ORDER"]
        self.assertEqual([r["order_id"] for r in orders], ids)
        self.assertEqual(orders[3]["request_id"], "j-%d-3" % self.tag)
        self.assertEqual(orders[3]["agent"], "alice")
        self.assertEqual(orders[3]["amount"], 103)
        states = [r["state"] for r in recs if r["type"] == "STATE"]
        self.assertEqual(states.count("CONFIRMED"), 25)
        self.assertEqual(run_stopctl("journal", "verify", os.path.join(gw.dir, "nonexistent")).returncode, 1)
        self.assertEqual(run_stopctl("journal", "verify").returncode, 2)

    # -- corruption in the middle

    def test_flipped_byte_mid_segment_refuses_start(self):
        gw, ids = self.make_journal(n=30)
        seg = os.path.join(gw.journal_dir, SEG1)
        # A record in the middle of a batch that later batches follow (the last data batch
        # would be a damaged tail, tested below).
        frames = journal_frames(seg)
        self.assertGreaterEqual(len(frames), 3, "want a batch with more batches after it")
        first = frames[0]
        recs = [r for r in journal_records(seg) if first[0] < r[0] < first[0] + first[1]]
        off, length, _, lsn, plen = recs[len(recs) // 2]
        data = bytearray(read(seg))
        pos = off + 40 + plen // 2  # inside the payload of a record in the middle
        data[pos] ^= 0x5A
        write(seg, bytes(data))
        before = read(seg)

        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertNotIn("ready:", log)
        self.assertIn(SEG1, log, "the message names the segment")
        self.assertIn("offset %d" % off, log, "the message gives the offset of the bad record")
        self.assertIn("checksum", log)
        self.assertIn("journal verify", log, "the message tells the operator what to run")
        self.assertEqual(read(seg), before, "a refused start must not modify the journal")
        leftovers = [f for f in os.listdir("/dev/shm") if f.startswith(gw.shm_name + ".")]
        self.assertEqual(leftovers, [], "a refused start leaves its half-built list region in /dev/shm")

        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("BAD", p.stderr)
        self.assertIn(SEG1, p.stderr)
        self.assertIn("offset %d" % off, p.stderr)
        self.assertIn("corruption", p.stderr)

        # Put the byte back: the gateway starts with every order.
        data[pos] ^= 0x5A
        write(seg, bytes(data))
        self.assertEqual(run_stopctl("journal", "verify", gw.journal_dir).returncode, 0)
        gw.start()
        self.assert_orders(gw, ids)
        gw.close()

    def test_flipped_byte_in_record_header(self):
        gw, ids = self.make_journal(n=20)
        seg = os.path.join(gw.journal_dir, SEG1)
        recs = journal_records(seg)
        off = recs[5][0]
        data = bytearray(read(seg))
        data[off + 24] ^= 0x01  # the lsn field of the 6th record
        write(seg, bytes(data))
        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn(SEG1, log)
        self.assertNotEqual(run_stopctl("journal", "verify", gw.journal_dir).returncode, 0)

    def test_corruption_in_older_segment_refuses_start(self):
        gw, ids = self.make_journal(n=3000, segment_bytes=1024 * 1024, name="multi")
        segs = gw.segments()
        self.assertGreater(len(segs), 1)
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("%d segments" % len(segs), p.stdout)
        first = segs[0]
        recs = journal_records(first)
        off, length, _, _, plen = recs[-1]  # even the LAST record of a non-last segment is not a torn tail
        data = bytearray(read(first))
        data[off + 40 + plen - 1] ^= 0xFF  # its last checksummed byte
        write(first, bytes(data))
        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn(os.path.basename(first), log)
        self.assertEqual(len(gw.segments()), len(segs), "no segment may be removed by a refused start")
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(os.path.basename(first), p.stderr)

    def test_missing_segment_refuses_start(self):
        gw, ids = self.make_journal(n=3000, segment_bytes=1024 * 1024, name="gap", note_len=700)
        segs = gw.segments()
        self.assertGreaterEqual(len(segs), 3, "want a middle segment to remove")
        os.rename(segs[1], os.path.join(gw.dir, "aside.sgj"))
        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertIn("missing", log)
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("missing", p.stderr)

    def test_corrupt_header_of_last_segment_loses_nothing(self):
        """A flipped byte in the header of a segment that holds acknowledged records is
        corruption, not a torn segment creation: nothing acknowledged may disappear."""
        gw, ids = self.make_journal(n=20, name="hdr")
        seg = os.path.join(gw.journal_dir, SEG1)
        data = bytearray(read(seg))
        data[48] ^= 0x01  # created_ms: the header checksum no longer matches
        write(seg, bytes(data))
        self.assertNotEqual(run_stopctl("journal", "verify", gw.journal_dir).returncode, 0)
        ready, rc, log = gw.try_start(timeout=20)
        if ready:
            # It started after all: then every acknowledged order must still be there.
            self.assertTrue(os.path.exists(seg), "the segment holding %d acknowledged orders was deleted:\n%s"
                            % (len(ids), log))
            self.assert_orders(gw, ids)
            gw.close()
        else:
            self.assertNotEqual(rc, 0)
            self.assertIn(SEG1, log)
            self.assertEqual(bytes(data), read(seg), "a refused start must not modify the journal")

    # -- damage to the last batch after a clean shutdown (issue 15 item 8)

    def test_flipped_bit_in_last_record_refuses_start(self):
        """An order acknowledged HELD, SIGTERM, one bit flipped in its ORDER record (the last
        data record): that is damage to a batch written whole, not a torn write. stopgated
        refuses to start, names the damage; with --truncate-damaged-tail it starts, and logs
        what it dropped."""
        gw = sgtest.track(Gateway(sections="[list protected]\nauto_stop = no\n\n[plugin sim]\nlatency_us = 100\n",
                                  name="held"))
        self.addCleanup(gw.kill9)
        gw.start()
        tag = int(time.time() * 1000) % 10 ** 8
        acct = "HELD%dX" % tag
        with gw.client("olga") as ops:
            ops.ok("LIST.ADD", "protected", "HB", acct, "SCORE", "100")
        with gw.client("alice") as c:
            d = todict(c.ok("STOP", "held-%d" % tag, "BANK", "HB", "ACCOUNT", acct, "CASE", "HC"))
            self.assertEqual(d["status"], "HELD")
            oid = d["order_id"]
        self.assertEqual(gw.stop(), 0)
        seg = os.path.join(gw.journal_dir, SEG1)
        recs = journal_records(seg)
        self.assertEqual(recs[-1][2], REC_CLOSE)
        off, length, rtype, lsn, plen = recs[-2]
        self.assertEqual(rtype, 1, "the HELD order's ORDER record is the last data record")
        data = bytearray(read(seg))
        data[off + 40 + plen // 2] ^= 0x08  # one bit
        write(seg, bytes(data))
        damaged = bytes(data)

        rc, log = gw.start_expect_failure()
        self.assertNotEqual(rc, 0)
        self.assertNotIn("ready:", log)
        self.assertNotIn("torn tail cut", log)
        self.assertIn("damaged lsn %d..%d" % (lsn, lsn), log)
        self.assertIn("--truncate-damaged-tail", log)
        self.assertIn(SEG1, log)
        self.assertIn("ORDER of order %s" % oid, log, "the log names the order in the damaged batch")
        self.assertEqual(read(seg), damaged, "a refused start must not modify the journal")
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("damaged tail", p.stderr)
        self.assertIn("lsn %d..%d" % (lsn, lsn), p.stderr)

        gw.extra_args = ["--truncate-damaged-tail"]
        gw.start()
        log = gw.log_since_start()
        self.assertIn("DROPPED the damaged tail", log)
        self.assertIn("lsn %d..%d" % (lsn, lsn), log)
        self.assertIn("ORDER of order %s" % oid, log)
        with gw.client("alice") as c:
            self.assertIsInstance(c.call("STATUS", oid), sgtest.RespError, "the dropped order is gone, as the log says")
        self.assertEqual(gw.stop(), 0)
        gw.extra_args = []
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        gw.start()
        gw.close()

    # -- torn tails

    def tear_and_restart(self, gw, ids, cut):
        """cut(segment bytes, records) -> new bytes. Restart, check the complete records are all
        kept, byte for byte, and the gateway carries on appending."""
        seg = gw.segments()[-1]
        recs_before = dump(gw.journal_dir)[1]
        data = read(seg)
        torn = cut(data, journal_records(seg))
        write(seg, torn)
        complete = len(journal_records(seg)) if len(torn) >= 64 else 0
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertIn("torn", p.stderr)
        gw.start()
        log = gw.log_since_start()
        self.assertIn("torn tail cut", log)
        with gw.client("alice") as c:
            d = todict(c.ok("STOP", "after-tear-%d" % time.time_ns(), "BANK", "JB", "ACCOUNT", "AFTERTEARX",
                            "CASE", "JC"))
            self.assertEqual(d["status"], "ACCEPTED")
            self.wait_state(c, d["order_id"], "CONFIRMED")
        self.assertEqual(gw.stop(), 0)
        p = run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        recs_after = dump(gw.journal_dir)[1]
        return recs_before, recs_after, complete

    def test_truncated_tail_mid_record(self):
        """The last batch of data (before the close record) cut in its last record: the whole
        batch is an incomplete write, cut at start; every complete batch before it is kept."""
        gw, ids = self.make_journal(n=30, name="torn")
        seg = os.path.join(gw.journal_dir, SEG1)
        frames = journal_frames(seg)
        last = frames[-2]  # frames[-1] holds the close record
        inside = [r for r in journal_records(seg) if last[0] < r[0] < last[0] + last[1]]
        keep = len([r for r in journal_records(seg) if r[0] < last[0]])
        before, after, complete = self.tear_and_restart(
            gw, ids, lambda data, recs: data[: inside[-1][0] + inside[-1][1] // 2])
        self.assertEqual(complete, keep)
        self.assertEqual(after[:keep], before[:keep], "a complete record was lost or changed")
        # Every order whose ORDER record was in a complete batch is still there.
        gw.start()
        with gw.client("alice") as c:
            for r in before[:keep]:
                if r["type"] == "ORDER":
                    self.assertEqual(self.status(c, r["order_id"])["request_id"], r["request_id"])
        gw.close()

    def test_truncated_tail_mid_header(self):
        gw, ids = self.make_journal(n=10, name="tornh")
        recs = dump(gw.journal_dir)[1]
        before, after, complete = self.tear_and_restart(
            gw, ids, lambda data, recs: data[: recs[-1][0] + 17])
        self.assertEqual(after[: len(recs) - 1], before[: len(recs) - 1])

    def test_garbage_appended_tail(self):
        gw, ids = self.make_journal(n=10, name="tornj")
        recs = dump(gw.journal_dir)[1]
        rnd = random.Random(7)
        junk = bytes(rnd.randrange(1, 256) for _ in range(100))
        before, after, complete = self.tear_and_restart(gw, ids, lambda data, recs: data + junk)
        self.assertEqual(after[: len(recs)], before)
        gw.start()
        self.assert_orders_subset(gw, ids)
        gw.close()

    def assert_orders_subset(self, gw, ids):
        with gw.client("alice") as c:
            for i, oid in enumerate(ids):
                self.assertEqual(self.status(c, oid)["request_id"], "j-%d-%d" % (self.tag, i))

    def test_torn_segment_creation(self):
        """A crash while creating the next segment leaves a file shorter than its header: it is
        removed at start and nothing else is touched."""
        gw, ids = self.make_journal(n=15, name="tornseg")
        seg1 = read(os.path.join(gw.journal_dir, SEG1))
        write(os.path.join(gw.journal_dir, "0000000000000002.sgj"), seg1[:30])
        gw.start()
        self.assertIn("torn tail cut", gw.log_since_start())
        self.assert_orders(gw, ids)
        gw.close()
        self.assertEqual(run_stopctl("journal", "verify", gw.journal_dir).returncode, 0)
        self.assertEqual(read(os.path.join(gw.journal_dir, SEG1))[: len(seg1)], seg1)


if __name__ == "__main__":
    sgtest.main()
