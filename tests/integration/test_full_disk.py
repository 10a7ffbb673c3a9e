"""A full disk (SPEC §9; issue 8 item 4, issue 15 item 9): the journal on a 3 MB tmpfs
(mounted by the test, as root; segment_bytes = 1 MiB). The accounts are on the `protected`
list, so the orders are HELD and nothing but the test's own requests is journaled (no bank
traffic): the batch the disk refuses is one of the test's bursts. One connection fills the
disk with bursts of STOPs carrying a 1,000-byte NOTE - each burst also merges a new case into
an order of the burst before - until the disk refuses a batch. Every request of that burst is
answered within 1 s: `ERR BUSY journal cannot write (ENOSPC: ...)`, not acknowledged (before,
they waited 35 s for space). During the outage new orders get ERR BUSY at once, and reads
answer at once from durable state only: STATUS of the order whose merge is not on disk shows
it without the merged case, an order whose creation is not durable is NOTFOUND (STATUS,
CASE), CHECK and the shared-memory frozen mark (libstopgate) do not say FROZEN for it, and
nothing pipelined behind them waits. The log names ENOSPC once. After `mount -o remount,size=64m` the refused batch becomes durable in
the background: retrying the refused request_ids gives DUPLICATE (caught, now durable, same
order) or ACCEPTED (never taken), every order once; after kill -9 and a restart every
acknowledged order is there and no order is doubled."""
import errno
import json
import os
import socket
import subprocess
import time
import unittest

import sgtest
from sgtest import Gateway, GatewayCase, RespError, todict, wait_until

NOTE = "n" * 1000
BURST = 10
PROTECTED = 4000  # accounts FD000000X.. on the protected list: orders HELD, no bank traffic


def mount_tmpfs(path, size):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "sgtest-full-disk", path],
                   check=True, capture_output=True, text=True)


def umount(path):
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True)


class ShmLists(object):
    """The gateway's shared-memory lists as an in-process reader sees them: libstopgate's
    sg_lists_check() (sgtest.ShmReader, in a child interpreter: an ASan build of the library
    needs its runtime preloaded there)."""

    def __init__(self, shm_name):
        if not os.environ.get("LIBSTOPGATE"):
            raise unittest.SkipTest("LIBSTOPGATE not set (run through meson test)")
        self.shm_name = shm_name

    def verdicts(self, bank, accounts):
        """{account: (frozen, list mask)} as sg_lists_check() answers."""
        r = sgtest.ShmReader(self.shm_name)
        try:
            out = {}
            for acct in accounts:
                v = r.check(bank, acct)
                out[acct] = (v.frozen, v.mask)
            return out
        finally:
            r.close()

    def frozen_many(self, bank, accounts):
        return {a: v[0] for a, v in self.verdicts(bank, accounts).items()}

    def frozen(self, bank, account):
        return self.frozen_many(bank, [account])[account]

    def close(self):
        pass


class TmpfsCase(GatewayCase):
    """A class whose gateway (cls.gw, started by the tests) keeps its journal on a tmpfs of
    TMPFS_SIZE of its own, mounted for the class (root, else skipped) and unmounted after."""
    TMPFS_PREFIX = "sgtest-tmpfs-"
    TMPFS_SIZE = "3m"

    @classmethod
    def setUpClass(cls):
        cls.gw = None
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to mount a tmpfs")
        cls.mnt = sgtest.make_temp_dir(cls.TMPFS_PREFIX)
        try:
            mount_tmpfs(cls.mnt, cls.TMPFS_SIZE)
        except subprocess.CalledProcessError as e:
            raise unittest.SkipTest("cannot mount a tmpfs: %s" % e.stderr.strip())

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.gw is not None:
                cls.gw.kill9()
        finally:
            umount(cls.mnt)


class FullDisk(TmpfsCase):
    TMPFS_PREFIX = "sgtest-fulldisk-mnt-"
    TMPFS_SIZE = "3m"

    def stop_cmd(self, rid, i, note=True, case="FDCASE"):
        cmd = ["STOP", rid, "BANK", "FDB", "ACCOUNT", "FD%06dX" % i, "CASE", case, "AMOUNT", "5000"]
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
        shm = ShmLists(gw.shm_name)
        tag = "fd%d" % (time.time_ns() % 10 ** 8)
        with gw.client("olga") as ops:
            csv = "".join("FDB,FD%06dX\n" % i for i in range(PROTECTED))
            self.assertEqual(todict(ops.ok("LIST.LOAD", "protected", "-", csv))["rows"], PROTECTED)
        acked = {}  # rid -> (cmd, order id)
        created = set()  # order ids of acknowledged new orders (not merges)

        # 1. Fill the disk from one connection, a burst at a time, until the disk refuses a
        #    batch. Every request of that burst is answered within 1 s, none acknowledged.
        #    (Each check below is a subTest, so that every one that fails is reported.)
        a = gw.client("alice")
        a.settimeout(3.0)
        busy, took, silent, merge_into = [], None, 0, None
        for n in range(0, PROTECTED - BURST, BURST):
            cmds = [self.stop_cmd("%s-a%d" % (tag, i), i) for i in range(n, n + BURST - 1)]
            if merge_into:  # a new case on an order of the burst before: a MERGE record
                cmds.append(self.stop_cmd("%s-m%d" % (tag, n), merge_into[0], case="FDMERGE"))
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
                    continue
                d = todict(r)
                self.assertIn(d["status"], ("HELD", "MERGED"), d)
                acked[cmd[1]] = (cmd, d["order_id"])
                if d["status"] == "HELD":
                    created.add(d["order_id"])
            took = time.monotonic() - t0
            if busy:
                break
            merge_into = (n, acked[cmds[0][1]][1])
        self.assertTrue(busy, "3 MB never filled up")
        with self.subTest("requests caught by the full disk answered ERR BUSY within 1 s"):
            self.assertEqual(silent, 0, "%d requests caught by the full disk got no answer within 3 s" % silent)
            self.assertLess(took, 1.5, "the burst caught by the full disk took %.2f s to be answered" % took)
        before = len(acked)
        print("disk full after %d acknowledged requests; a burst of %d answered in %.0f ms, %d of it ERR BUSY"
              % (before, len(busy), took * 1000, len(busy) - silent))
        max_no = max(int(oid[3:]) for oid in created)
        merged_id = merge_into[1]
        caught_new = [cmd for cmd in busy if cmd[7] == "FDCASE"]

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
        with self.subTest("CHECK does not say FROZEN for an order not on disk"):
            chk = todict(b.call("CHECK", "FDB", caught_new[0][5]))
            self.assertEqual((chk["verdict"], chk["order_id"]), ("LISTED", None),
                             "CHECK says FROZEN for an order not on disk")
            chk = todict(b.call("CHECK", "FDB", "FD%06dX" % merge_into[0]))
            self.assertEqual((chk["verdict"], chk["order_id"]), ("FROZEN", merged_id))
        with self.subTest("libstopgate (shared memory) does not say frozen for an order not on disk"):
            marks = shm.frozen_many("FDB", [cmd[5] for cmd in caught_new] + ["FD%06dX" % merge_into[0]])
            for cmd in caught_new:
                self.assertFalse(marks[cmd[5]], "shared-memory frozen mark for %s, not on disk" % cmd[1])
            self.assertTrue(marks["FD%06dX" % merge_into[0]])
        with self.subTest("STATUS and CASE answer at once from durable state, nothing waits behind them"):
            r = gw.client("alice", timeout=1.5)
            t0 = time.monotonic()
            try:
                st_merged, st_next, case_m, pong = r.pipeline([
                    ["STATUS", merged_id], ["STATUS", "SG-%d" % (max_no + 1)], ["CASE", "FDMERGE"], ["PING"]])
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
            st_merged = todict(st_merged)
            self.assertEqual(st_merged["cases"], ["FDCASE"], "STATUS shows a merge that is not on disk")
            self.assertErr(st_next, "ERR NOTFOUND")
            self.assertNotIn(merged_id, [o["order_id"] for o in todict(case_m)["orders"]])
            case = todict(case)
            self.assertEqual(sorted(o["order_id"] for o in case["orders"]), sorted(created),
                             "CASE lists exactly the durable orders")
            print("reads during the outage: %.1f ms for 2 STATUS, CASE, PING; CASE of %d answered"
                  % (took_reads * 1000, len(case["orders"])))
        with gw.client("alice", timeout=5) as c:  # a fresh connection too
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(todict(c.call("CHECK", "FDB", "NOSUCH1X"))["verdict"], "CLEAR")
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
        #    each refused request_id gives DUPLICATE of the same order (it was in that batch)
        #    or ACCEPTED/HELD afresh (never taken). Nothing lost, nothing twice.
        subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], check=True)
        wait_until(lambda: "journal: writing again" in gw.log_since_start(), timeout=5, what="the recovery log line")
        b.settimeout(10)
        caught = 0
        for cmd in busy:
            d = todict(b.call(*cmd))
            self.assertIn(d["status"], ("DUPLICATE", "HELD", "MERGED"), d)
            caught += d["status"] == "DUPLICATE"
            if cmd[7] == "FDMERGE":
                self.assertEqual(d["order_id"], merged_id)
            else:
                self.assertGreater(int(d["order_id"][3:]), max_no)
                created.add(d["order_id"])
            acked[cmd[1]] = (cmd, d["order_id"])
        self.assertEqual(caught, len(busy), "every request of the refused batch became durable: DUPLICATE")
        self.assertEqual(todict(b.call("STATUS", merged_id))["cases"], ["FDCASE", "FDMERGE"])
        d = todict(b.call(*self.stop_cmd(tag + "-b0", 900000, note=False)))
        self.assertEqual(d["status"], "ACCEPTED")
        acked[tag + "-b0"] = (self.stop_cmd(tag + "-b0", 900000, note=False), d["order_id"])
        created.add(d["order_id"])
        for i in range(1, 51):
            cmd = self.stop_cmd("%s-b%d" % (tag, i), 900000 + i)
            d = todict(b.call(*cmd))
            self.assertEqual(d["status"], "ACCEPTED", d)
            acked[cmd[1]] = (cmd, d["order_id"])
            created.add(d["order_id"])
        self.assertEqual(todict(b.call("CHECK", "FDB", caught_new[0][5]))["verdict"], "FROZEN")
        wait_until(lambda: shm.frozen("FDB", caught_new[0][5]), timeout=5, what="the frozen mark once durable")
        self.assertEqual(gw.log_since_start().count("journal: write failed"), 1)
        a.close()
        b.close()
        print("refused burst retried: %d DUPLICATE (caught, durable later); %d orders" % (caught, len(created)))

        # 5. kill -9 and restart (with space): every acknowledged order is there, once.
        gw.kill9()
        gw.start()
        with gw.client("alice") as c:
            rids = list(acked)
            for rid, st in zip(rids, c.pipeline([["STATUS", acked[r][1]] for r in rids])):
                st = todict(st)
                self.assertEqual(st["order_id"], acked[rid][1])
                if acked[rid][0][7] == "FDCASE":
                    self.assertEqual(st["request_id"], rid)
            for rid, d in zip(rids, c.pipeline([acked[r][0] for r in rids])):
                d = todict(d)
                self.assertEqual((d["status"], d["order_id"]), ("DUPLICATE", acked[rid][1]))
            self.assertEqual(int(gw.info(c)["orders_total"]), len(created), "an order doubled or lost")
        print("after kill -9 and restart: %d requests, %d orders, all present once" % (len(rids), len(created)))
        self.assertEqual(gw.stop(), 0)
        p = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


HERE = os.path.dirname(os.path.abspath(__file__))
UDP_PROBE = os.environ.get("UDP_PROBE") or os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "tests",
                                                        "integration", "udp_probe")
UDP_STOPS = 100  # one datagram; their records take more than the page the journal has left
SG_FE_BUSY = 8
SG_S_DUPLICATE = 1


def fill_up(path):
    """Writes a file in path until the filesystem refuses a single byte more."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise


class FullDiskSmall(TmpfsCase):
    """A 4 MB tmpfs whose free space a file beside the journal takes (fill_up), so that the
    batch the disk refuses is exactly the test's next burst; each test has its own gateway and
    journal directory on it, and removes its file to give the space back.

    UDP (issue 15 remnant): a reply datagram already parked for the batch the disk refuses is
    answered within 1 s with BUSY for each STOP in it (not acknowledged; retried with the same
    request ids), as RESP clients are, instead of leaving only when that batch becomes
    durable. Once the space is back the batch lands, and the retried STOPs are DUPLICATE.

    Lists (issue 15 remnant, SPEC §9): LIST.ADDs in the refused batch are not visible, neither
    to CHECK nor to a libstopgate reader of the shared memory, until that batch is durable;
    then they are."""

    TMPFS_PREFIX = "sgtest-fulldisk-small-"
    TMPFS_SIZE = "4m"

    @classmethod
    def setUpClass(cls):
        if os.geteuid() == 0 and not os.path.exists(UDP_PROBE):
            raise AssertionError("udp_probe not built (%s); set UDP_PROBE" % UDP_PROBE)
        super().setUpClass()

    def start_gateway(self, name, sections=""):
        gw = sgtest.track(Gateway(name=name, sections=sections + "[plugin sim]\nlatency_us = 200\n"))
        type(self).gw = gw
        gw.journal_dir = os.path.join(self.mnt, name)
        gw.write_config()
        gw.start()
        self.filler = os.path.join(self.mnt, name + ".filler")
        self.addCleanup(lambda: os.path.exists(self.filler) and os.unlink(self.filler))
        self.addCleanup(gw.kill9)
        return gw

    def space_back(self):
        os.unlink(self.filler)
        wait_until(lambda: "journal: writing again" in self.gw.log_since_start(), timeout=5,
                   what="the recovery log line")

    def probe(self, *steps):
        env = dict(os.environ, STOPGATE_SECRET=sgtest.DEFAULT_AGENTS["alice"][1], UDP_PROBE_WAIT_MS="4000")
        p = subprocess.run([UDP_PROBE, sgtest.HOST, str(self.gw.udp_port), "alice", "hello"] + [str(s) for s in steps],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()]
        self.assertNotIn("timeout", out[0], "no HELLO answer")
        return out[1:]

    def test_parked_udp_reply_answered_busy(self):
        gw = self.start_gateway("udp")
        with gw.client("olga") as ops:  # orders HELD: no bank traffic journaled meanwhile
            csv = "".join("FUB,FUDP%04dX\n" % i for i in range(UDP_STOPS))
            self.assertEqual(todict(ops.ok("LIST.LOAD", "protected", "-", csv))["rows"], UDP_STOPS)
        tag = "fu%d" % (time.time_ns() % 10 ** 8)
        stops = ["stops", UDP_STOPS, tag, "FUB", "FUDP", "FUCASE", 5000]
        fill_up(self.filler)

        (r,) = self.probe(*stops)
        self.assertNotIn("timeout", r, "the parked UDP reply did not leave within 4 s (it waits for space)")
        print("UDP reply of the refused batch after %.1f ms" % r["ms"])
        self.assertTrue(r["mac_ok"], r)
        self.assertEqual(r["status"], 0, r)
        self.assertEqual(len(r["replies"]), UDP_STOPS)
        self.assertEqual([x["err"] for x in r["replies"]], [SG_FE_BUSY] * UDP_STOPS,
                         "every STOP of the refused batch is answered BUSY")
        self.assertEqual({x["order_no"] for x in r["replies"]}, {0})
        self.assertLess(r["ms"], 1000.0, "the BUSY answer must come within 1 s")
        self.assertIn("journal: write failed", gw.log_since_start())
        (r,) = self.probe("stop", tag + "-new", "FUB", "FUDP0000X", "FUCASE2", 5000)  # new: BUSY at once
        self.assertEqual(r["replies"][0]["err"], SG_FE_BUSY, r)

        self.space_back()
        (r,) = self.probe(*stops)
        self.assertEqual(r["status"], 0, r)
        self.assertEqual([(x["err"], x["code"]) for x in r["replies"]], [(0, SG_S_DUPLICATE)] * UDP_STOPS,
                         "the refused batch landed once space returned: every retry is DUPLICATE")
        self.assertEqual(len({x["order_no"] for x in r["replies"]}), UDP_STOPS)
        with gw.client("alice") as c:
            self.assertEqual(int(gw.info(c)["orders_total"]), UDP_STOPS, "an order doubled or lost")

    def test_list_changes_published_when_durable(self):
        gw = self.start_gateway("lists", sections="[list mule]\nauto_stop = no\n\n")
        shm = ShmLists(gw.shm_name)
        n = 100  # LIST.ADDs in one write: one batch, larger than the page the journal has left
        accts = ["FLST%04dX" % i for i in range(n)]
        with gw.client("olga") as ops:
            ops.ok("LIST.ADD", "mule", "FLB", "FLSTDURABLEX", "SCORE", "60")  # durable before
        fill_up(self.filler)
        ops = gw.client("olga", timeout=5)
        ops.send_raw(b"".join(sgtest.encode("LIST.ADD", "mule", "FLB", a, "SCORE", "70", "CASE", "C" * 60)
                              for a in accts))
        replies = [ops.read() for _ in accts]
        # The first may still fit the disk (acknowledged: durable); the rest are refused.
        busy = [a for a, r in zip(accts, replies) if isinstance(r, RespError)]
        self.assertTrue(busy, "the disk took every LIST.ADD")
        self.assertTrue(all(r.code == "ERR BUSY" for r in replies if isinstance(r, RespError)), replies[-1])
        durable = [a for a, r in zip(accts, replies) if not isinstance(r, RespError)] + ["FLSTDURABLEX"]
        print("LIST.ADD while the disk is full: %d acknowledged, %d ERR BUSY" % (len(durable) - 1, len(busy)))
        with gw.client("alice", timeout=5) as c:
            chk = c.pipeline([["CHECK", "FLB", a] for a in busy + durable])
        with self.subTest("CHECK does not show a list change that is not on disk"):
            self.assertEqual({todict(r)["verdict"] for r in chk[:len(busy)]}, {"CLEAR"})
        self.assertEqual({todict(r)["verdict"] for r in chk[len(busy):]}, {"LISTED"})
        with self.subTest("libstopgate does not show a list change that is not on disk"):
            v = shm.verdicts("FLB", busy + durable)
            self.assertEqual({v[a][1] for a in busy}, {0}, "shared memory lists an account not on disk")
            self.assertNotIn(0, {v[a][1] for a in durable})

        self.space_back()  # the refused batch lands: now they are published, everywhere
        wait_until(lambda: all(m for _, m in shm.verdicts("FLB", accts).values()), timeout=5,
                   what="the list changes in shared memory once durable")
        with gw.client("alice", timeout=5) as c:
            chk = c.pipeline([["CHECK", "FLB", a] for a in accts])
        self.assertEqual({todict(r)["verdict"] for r in chk}, {"LISTED"})
        # Pipelined behind its LIST.ADD, a CHECK sees the change (its answer waits for it).
        r_add, r_chk = ops.pipeline([["LIST.DEL", "mule", "FLB", accts[0]], ["CHECK", "FLB", accts[0]]])
        self.assertEqual(todict(r_add)["status"], "DELETED")
        self.assertEqual(todict(r_chk)["verdict"], "CLEAR")
        ops.close()


if __name__ == "__main__":
    sgtest.main()
