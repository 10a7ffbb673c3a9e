"""A full disk (SPEC §9; issue 8 item 4): the journal on a 3 MB tmpfs (mounted by the test,
as root; segment_bytes = 1 MiB). One connection fills it with STOPs carrying a 1,000-byte
NOTE until an answer stalls: that order's record is in the batch the disk refused, so it is
NOT acknowledged and stays pending. Meanwhile a second connection's new orders get
`ERR BUSY journal cannot write (...)`, CHECK and STATUS keep answering, and the log says
"journal: write failed" once. After `mount -o remount,size=64m` the stalled answer arrives
and new orders are accepted again, without a restart; after kill -9 and a restart every
acknowledged order is there."""
import os
import socket
import subprocess
import time
import unittest

import sgtest
from sgtest import Gateway, GatewayCase, RespError, todict, wait_until

NOTE = "n" * 1000


def mount_tmpfs(path, size):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "sgtest-full-disk", path],
                   check=True, capture_output=True, text=True)


def umount(path):
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True)


class FullDisk(GatewayCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = None
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to mount a tmpfs")
        cls.mnt = sgtest.make_temp_dir("sgtest-fulldisk-mnt-")
        try:
            mount_tmpfs(cls.mnt, "3m")
        except subprocess.CalledProcessError as e:
            raise unittest.SkipTest("cannot mount a tmpfs: %s" % e.stderr.strip())

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.gw is not None:
                cls.gw.kill9()
        finally:
            umount(cls.mnt)

    def stop_cmd(self, rid, i, note=True):
        cmd = ["STOP", rid, "BANK", "FDB", "ACCOUNT", "FD%06dX" % i, "CASE", "FDCASE", "AMOUNT", "5000"]
        if note:
            cmd += ["NOTE", NOTE]
        return cmd

    def test_full_disk(self):
        gw = sgtest.track(Gateway(name="fulldisk", gateway={"segment_bytes": "1048576"},
                                  sections="[plugin sim]\nlatency_us = 200\n"))
        type(self).gw = gw
        gw.journal_dir = os.path.join(self.mnt, "journal")
        gw.write_config()
        gw.start()
        tag = "fd%d" % (time.time_ns() % 10 ** 8)
        acked = {}  # rid -> (cmd, order id)

        # 1. Fill the disk from one connection until an answer stalls.
        a = gw.client("alice")
        a.settimeout(2.0)
        stalled = None
        for i in range(20000):
            cmd = self.stop_cmd("%s-a%d" % (tag, i), i)
            a.send(*cmd)
            try:
                r = a.read()
            except socket.timeout:
                stalled = cmd
                break
            d = todict(r)
            self.assertEqual(d["status"], "ACCEPTED", d)
            acked[cmd[1]] = (cmd, d["order_id"])
        self.assertIsNotNone(stalled, "3 MB never filled up")
        before = len(acked)
        segs = [os.path.basename(s) for s in gw.segments()]
        st = os.statvfs(self.mnt)
        print("disk full after %d acknowledged orders (segments %s, %d KiB free); %s stalls"
              % (before, segs, st.f_bavail * st.f_frsize // 1024, stalled[1]))

        # 2. The gateway says so: new orders refused with a reason, reads keep working.
        b = gw.client("alice", timeout=5)
        r = b.call(*self.stop_cmd(tag + "-b0", 900000, note=False))
        self.assertErr(r, "ERR BUSY")
        self.assertIn("journal cannot write", r.reason)
        print("a new order while full: -%s" % r.line)
        busy_reason = r.reason
        self.assertEqual(todict(b.call("CHECK", "FDB", "FD000000X"))["verdict"], "FROZEN")
        self.assertEqual(todict(b.call("CHECK", "FDB", "NOSUCH1X"))["verdict"], "CLEAR")
        first = next(iter(acked.values()))
        self.assertEqual(self.status(b, first[1])["request_id"], first[0][1])
        with gw.client("alice", timeout=5) as c:  # a fresh connection too
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(todict(c.call("CHECK", "FDB", "FD000001X"))["verdict"], "FROZEN")
            self.assertGreaterEqual(int(gw.info(c)["orders_total"]), before)
        m = gw.metrics()
        self.assertGreaterEqual(m["stopgate_journal_write_errors_total"], 1)
        # The stalled answer is still owed: nothing arrives while the disk is full.
        self.assertFalse(a.is_closed(wait=0.5))
        self.assertEqual(len(a.buf) - a.pos, 0, "the refused batch's order was answered while the disk is full")
        time.sleep(0.5)  # several retries (every 100 ms): still one log line
        log = gw.log_since_start()
        self.assertEqual(log.count("journal: write failed"), 1, log[-3000:])
        self.assertEqual(log.count("journal: writing again"), 0)
        line = [ln for ln in log.splitlines() if "journal: write failed" in ln][0]
        print("log: " + line)

        # 3. Space comes back: the stalled order is answered, new orders are accepted again.
        subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], check=True)
        a.settimeout(10)
        d = todict(a.read())
        self.assertEqual(d["status"], "ACCEPTED")
        acked[stalled[1]] = (stalled, d["order_id"])
        ok = wait_until(lambda: (lambda r: None if isinstance(r, RespError) else r)(
            b.call(*self.stop_cmd(tag + "-b0", 900000, note=False))), timeout=5, what="orders accepted again")
        self.assertEqual(todict(ok)["status"], "ACCEPTED")
        acked[tag + "-b0"] = (self.stop_cmd(tag + "-b0", 900000, note=False), todict(ok)["order_id"])
        for i in range(1, 51):
            cmd = self.stop_cmd("%s-b%d" % (tag, i), 900000 + i)
            d = todict(b.call(*cmd))
            self.assertEqual(d["status"], "ACCEPTED", d)
            acked[cmd[1]] = (cmd, d["order_id"])
        wait_until(lambda: "journal: writing again" in gw.log_since_start(), timeout=5, what="the recovery log line")
        self.assertEqual(gw.log_since_start().count("journal: write failed"), 1)
        a.close()
        b.close()
        print("acknowledged orders: %d before the disk filled, %d after space returned (no restart)"
              % (before, len(acked)))

        # 4. kill -9 and restart (with space): every acknowledged order is there.
        gw.kill9()
        gw.start()
        with gw.client("alice") as c:
            rids = list(acked)
            for rid, st in zip(rids, c.pipeline([["STATUS", acked[r][1]] for r in rids])):
                st = todict(st)
                self.assertEqual((st["order_id"], st["request_id"]), (acked[rid][1], rid))
            for rid, d in zip(rids, c.pipeline([acked[r][0] for r in rids])):
                d = todict(d)
                self.assertEqual((d["status"], d["order_id"]), ("DUPLICATE", acked[rid][1]))
        print("after kill -9 and restart: %d of %d acknowledged orders present" % (len(rids), len(acked)))
        self.assertEqual(gw.stop(), 0)
        p = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # An operator must be told the disk is full, not handed a generic I/O error.
        self.assertIn("No space left on device", busy_reason,
                      "ERR BUSY reason for a full disk: %r (log: %s)" % (busy_reason, line))


if __name__ == "__main__":
    sgtest.main()
