"""Pre-zeroed journal segments (issue 13, docs/journal.md "Pre-zeroed segments"): the open
segment is segment_bytes long from the start (zero-filled, so fdatasync commits no size);
the journal rolls through such segments; after kill -9 every acknowledged order replays and
the last segment is zero-filled again; a clean stop leaves no spare file behind."""
import os
import time

import sgtest
from sgtest import GatewayCase, todict

SEG = 1024 * 1024
N = 4000


class Prealloc(GatewayCase):
    GW_ARGS = dict(gateway={"segment_bytes": str(SEG)}, sections="[plugin sim]\nlatency_us = 200\n")

    def sizes(self):
        return [os.path.getsize(p) for p in self.gw.segments()]

    def test_prezeroed_segments_roll_and_replay(self):
        gw = self.gw
        self.assertIn("zero-filled to segment_bytes", gw.log_since_start())
        self.assertEqual(self.sizes(), [SEG], "the open segment is not zero-filled to segment_bytes")
        tag = int(time.time() * 1000) % 10 ** 8
        ids = []
        with gw.client("alice") as c:
            for k in range(0, N, 500):  # batches, so the spare has time to be written between them
                cmds = [["STOP", "z-%d-%d" % (tag, i), "BANK", "BK1", "ACCOUNT", "ZF%d%05dX" % (tag, i),
                         "CASE", "ZF-%d" % tag, "NOTE", "n" * 200] for i in range(k, k + 500)]
                answers = [todict(r) for r in c.pipeline(cmds)]
                self.assertEqual([a["status"] for a in answers], ["ACCEPTED"] * 500)
                ids += [a["order_id"] for a in answers]
                time.sleep(0.2)
        sizes = self.sizes()
        self.assertGreater(len(sizes), 1, "segment_bytes=1MiB should have rolled over")
        self.assertTrue(all(s <= SEG for s in sizes), sizes)
        # The first was zero-filled at start and written in place; a later one is the spare
        # (also SEG) unless the disk was too slow to have it ready at the roll (then it grows).
        self.assertEqual(sizes[0], SEG, "the first segment grew instead of being overwritten")
        gw.restart(kill=True)
        log = gw.log_since_start()
        self.assertIn("replayed", log)
        self.assertNotIn("damaged", log)
        self.assertEqual(self.sizes()[-1], SEG)
        with gw.client("alice") as c:
            got = [todict(r) for r in c.pipeline([["STATUS", oid] for oid in ids])]
            self.assertEqual([g["request_id"] for g in got], ["z-%d-%d" % (tag, i) for i in range(N)])
        r = gw.stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("hash chain intact", r.stdout)
        gw.stop()
        self.assertFalse(os.path.exists(os.path.join(gw.journal_dir, "spare.sgz")))
        gw.start()


if __name__ == "__main__":
    sgtest.main()
