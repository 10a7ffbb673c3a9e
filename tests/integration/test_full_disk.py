"""A full disk (SPEC §9; issue 8 item 4, issue 15 item 9): the journal on a 3 MB tmpfs
(mounted by the test, as root; segment_bytes = 1 MiB). One connection fills it with bursts of
STOPs carrying a 1,000-byte NOTE until the disk refuses a batch. Every order of that burst is
answered within 1 s: `ERR BUSY journal cannot write (ENOSPC: ...)`, not acknowledged - the
ones caught in the refused batch too (before, they waited 35 s for space). During the
outage new orders get ERR BUSY at once, and reads answer at once from durable state only:
STATUS of an order whose bank answer is not on disk shows the state before it, an order
whose creation is not durable is NOTFOUND (STATUS, CASE), CHECK and the shared-memory frozen
mark (libstopgate) do not say FROZEN for it, and nothing pipelined behind them waits. The log
names ENOSPC once. After `mount -o remount,size=64m` the refused batch becomes durable in
the background: retrying the refused request_ids gives DUPLICATE (caught, now durable, same
order) or ACCEPTED (never taken), every order once; after kill -9 and a restart every
acknowledged order is there and no order is doubled."""
import ctypes
import os
import socket
import subprocess
import time
import unittest

import sgtest
from sgtest import Gateway, GatewayCase, RespError, todict, wait_until

NOTE = "n" * 1000
BURST = 10


def mount_tmpfs(path, size):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "sgtest-full-disk", path],
                   check=True, capture_output=True, text=True)


def umount(path):
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True)


class Verdict(ctypes.Structure):
    _fields_ = [("mask", ctypes.c_uint64), ("score", ctypes.c_uint8), ("frozen", ctypes.c_bool),
                ("case_ref", ctypes.c_uint32)]


class ShmLists(object):
    """The gateway's shared-memory lists as an in-process reader sees them (libstopgate)."""

    def __init__(self, shm_name):
        path = os.environ.get("LIBSTOPGATE")
        if not path:
            raise unittest.SkipTest("LIBSTOPGATE not set (run through meson test)")
        self.lib = ctypes.CDLL(path)
        self.lib.sg_lists_open.restype = ctypes.c_void_p
        self.lib.sg_lists_open.argtypes = [ctypes.c_char_p]
        self.lib.sg_lists_check.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                            ctypes.POINTER(Verdict)]
        self.lib.sg_lists_close.argtypes = [ctypes.c_void_p]
        self.h = self.lib.sg_lists_open(shm_name.encode())
        if not self.h:
            raise AssertionError("sg_lists_open(%s) failed" % shm_name)

    def frozen(self, bank, account):
        v = Verdict()
        rc = self.lib.sg_lists_check(self.h, bank.encode(), account.encode(), ctypes.byref(v))
        if rc != 0:
            raise AssertionError("sg_lists_check: %d" % rc)
        return bool(v.frozen)

    def close(self):
        self.lib.sg_lists_close(self.h)


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
        # The bank answers 300 ms after an instruction: the answers to the last orders taken
        # before the disk fills arrive during the outage, so their records cannot be durable.
        gw = sgtest.track(Gateway(name="fulldisk", gateway={"segment_bytes": "1048576"},
                                  sections="[plugin sim]\nlatency_us = 300000\n"))
        type(self).gw = gw
        gw.journal_dir = os.path.join(self.mnt, "journal")
        gw.write_config()
        gw.start()
        shm = ShmLists(gw.shm_name)
        tag = "fd%d" % (time.time_ns() % 10 ** 8)
        acked = {}  # rid -> (cmd, order id)

        # 1. Fill the disk from one connection, a burst at a time, until the disk refuses a
        #    batch. Every order of that burst is answered within 1 s, none acknowledged.
        #    (Each check below is a subTest, so that every one that fails is reported.)
        a = gw.client("alice")
        a.settimeout(3.0)
        busy, last_acked, took, silent = [], None, None, 0
        for n in range(0, 20000, BURST):
            cmds = [self.stop_cmd("%s-a%d" % (tag, i), i) for i in range(n, n + BURST)]
            t0 = time.monotonic()
            a.send_raw(b"".join(sgtest.encode(*cmd) for cmd in cmds))
            for k, cmd in enumerate(cmds):
                try:
                    r = a.read()
                except socket.timeout:
                    silent = len(cmds) - k
                    busy += cmds[k:]
                    break
                if isinstance(r, RespError):
                    self.assertEqual(r.code, "ERR BUSY", r.line)
                    busy.append(cmd)
                else:
                    d = todict(r)
                    self.assertEqual(d["status"], "ACCEPTED", d)
                    acked[cmd[1]] = (cmd, d["order_id"])
                    last_acked = cmd
            took = time.monotonic() - t0
            if busy:
                break
        self.assertTrue(busy, "3 MB never filled up")
        with self.subTest("orders caught by the full disk answered ERR BUSY within 1 s"):
            self.assertEqual(silent, 0, "%d orders caught by the full disk got no answer within 3 s" % silent)
            self.assertLess(took, 1.5, "the burst caught by the full disk took %.2f s to be answered" % took)
        before = len(acked)
        print("disk full after %d acknowledged orders; a burst of %d answered in %.0f ms, %d of it ERR BUSY"
              % (before, BURST, took * 1000, len(busy) - silent))
        last_id = acked[last_acked[1]][1]
        max_no = max(int(oid[3:]) for _, oid in acked.values())

        # 2. New orders refused at once, with the real errno.
        b = gw.client("alice", timeout=5)
        t0 = time.monotonic()
        r = b.call(*self.stop_cmd(tag + "-b0", 900000, note=False))
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertErr(r, "ERR BUSY")
        self.assertIn("journal cannot write", r.reason)
        print("a new order while full: -%s" % r.line)
        with self.subTest("the ERR BUSY reason names the real errno"):
            self.assertIn("ENOSPC", r.reason)
            self.assertIn("No space left on device", r.reason)
        with self.subTest("a retry of a caught order while the disk is full: ERR BUSY at once"):
            b.settimeout(1.5)
            try:
                self.assertErr(b.call(*busy[0]), "ERR BUSY")
            except socket.timeout:
                b.close()
                b = gw.client("alice", timeout=5)
                self.fail("the retry got no answer within 1.5 s")

        # 3. Reads answer at once from durable state; what is pipelined behind them too.
        time.sleep(0.6)  # the bank's answers to the last acknowledged orders have arrived
        with self.subTest("CHECK does not say FROZEN for an order not on disk (RESP, libstopgate)"):
            chk_busy = todict(b.call("CHECK", "FDB", busy[0][5]))
            self.assertEqual(chk_busy["verdict"], "CLEAR", "CHECK says FROZEN for an order not on disk")
            chk_acked = todict(b.call("CHECK", "FDB", last_acked[5]))
            self.assertEqual((chk_acked["verdict"], chk_acked["order_id"]), ("FROZEN", last_id))
            for cmd in busy:
                self.assertFalse(shm.frozen("FDB", cmd[5]), "shared-memory frozen mark for %s, not on disk" % cmd[1])
            self.assertTrue(shm.frozen("FDB", last_acked[5]))
        with self.subTest("STATUS and CASE answer at once from durable state, nothing waits behind them"):
            r = gw.client("alice", timeout=1.5)
            t0 = time.monotonic()
            try:
                st_last, st_next, pong = r.pipeline([["STATUS", last_id], ["STATUS", "SG-%d" % (max_no + 1)],
                                                     ["PING"]])
                took_reads = time.monotonic() - t0
                # CASE of every order (2.5 MB to parse here): sent at once too, and the PING
                # behind it is not held either.
                case, pong2 = r.pipeline([["CASE", "FDCASE"], ["PING", "after-case"]])
            except socket.timeout:
                self.fail("reads during the outage did not answer within 1.5 s")
            finally:
                r.close()
            self.assertLess(took_reads, 1.0)
            self.assertEqual((pong, pong2), ("PONG", "after-case"))
            st_last = todict(st_last)
            self.assertIn(st_last["state"], ("ACCEPTED", "SENT"),
                          "STATUS shows a bank answer that is not on disk: %r" % st_last)
            self.assertEqual(st_last["frozen"], 0)
            case = todict(case)
            self.assertEqual(sorted(o["order_id"] for o in case["orders"]),
                             sorted(oid for _, oid in acked.values()), "CASE lists exactly the durable orders")
            self.assertErr(st_next, "ERR NOTFOUND")
            print("reads during the outage: %.1f ms for 2 STATUS, PING; CASE of %d answered; %s shows %s"
                  % (took_reads * 1000, len(case["orders"]), last_id, st_last["state"]))
        with gw.client("alice", timeout=5) as c:  # a fresh connection too
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(todict(c.call("CHECK", "FDB", "NOSUCH1X"))["verdict"], "CLEAR")
            self.assertGreaterEqual(int(gw.info(c)["orders_total"]), before)
        m = gw.metrics()
        self.assertGreaterEqual(m["stopgate_journal_write_errors_total"], 1)
        time.sleep(0.3)  # several retries (every 100 ms): still one log line
        log = gw.log_since_start()
        self.assertEqual(log.count("journal: write failed"), 1, log[-3000:])
        self.assertEqual(log.count("journal: writing again"), 0)
        line = [ln for ln in log.splitlines() if "journal: write failed" in ln][0]
        print("log: " + line)
        with self.subTest("the log names ENOSPC"):
            self.assertIn("ENOSPC", line)

        # 4. Space comes back: the refused batch becomes durable in the background. Retrying
        #    each refused request_id: DUPLICATE of the same order if it was caught in that
        #    batch, ACCEPTED if it was never taken. Nothing lost, nothing twice.
        subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], check=True)
        wait_until(lambda: "journal: writing again" in gw.log_since_start(), timeout=5, what="the recovery log line")
        b.settimeout(10)
        caught = 0
        for cmd in busy:
            d = todict(b.call(*cmd))
            self.assertIn(d["status"], ("DUPLICATE", "ACCEPTED"), d)
            if d["status"] == "DUPLICATE":
                caught += 1
                self.assertGreater(int(d["order_id"][3:]), max_no)
            acked[cmd[1]] = (cmd, d["order_id"])
        self.assertGreater(caught, 0, "no order of the refused burst was in the refused batch")
        d = todict(b.call(*self.stop_cmd(tag + "-b0", 900000, note=False)))
        self.assertEqual(d["status"], "ACCEPTED")
        acked[tag + "-b0"] = (self.stop_cmd(tag + "-b0", 900000, note=False), d["order_id"])
        for i in range(1, 51):
            cmd = self.stop_cmd("%s-b%d" % (tag, i), 900000 + i)
            d = todict(b.call(*cmd))
            self.assertEqual(d["status"], "ACCEPTED", d)
            acked[cmd[1]] = (cmd, d["order_id"])
        ids = [oid for _, oid in acked.values()]
        self.assertEqual(len(ids), len(set(ids)), "an order id answered for two request_ids")
        self.assertEqual(todict(b.call("CHECK", "FDB", busy[0][5]))["verdict"], "FROZEN")
        wait_until(lambda: shm.frozen("FDB", busy[0][5]), timeout=5, what="the frozen mark once durable")
        self.wait_state(b, last_id, "CONFIRMED")
        self.assertEqual(gw.log_since_start().count("journal: write failed"), 1)
        a.close()
        b.close()
        shm.close()
        print("refused burst retried: %d DUPLICATE (caught, durable later), %d ACCEPTED afresh; %d orders"
              % (caught, len(busy) - caught, len(acked)))

        # 5. kill -9 and restart (with space): every acknowledged order is there, once.
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
            self.assertEqual(int(gw.info(c)["orders_total"]), len(acked), "an order doubled or lost")
        print("after kill -9 and restart: %d of %d acknowledged orders present" % (len(rids), len(acked)))
        self.assertEqual(gw.stop(), 0)
        p = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    sgtest.main()
