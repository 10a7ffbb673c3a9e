"""The cluster's former gaps (docs/cluster.md), each on a real 3-member etcd on loopback:

1. a follower's ROLE: committed_lsn >= applied_lsn at every sample while the leader writes
   (what a follower applied came from the committed log);
2. a member behind the cluster log says so on every read path: RESP CHECK `ERR STALE`, a UDP
   CHECK error 11 (SG_FE_STALE), libstopgate on its shared memory -ESTALE - not the lists it
   still holds;
3. a restarted leader learns the log's extent from etcd and trims the keys older than its
   process (log_retention_ms 2000);
4. a leader that loses etcd's quorum (two of three members killed) stops acknowledging but
   keeps serving CHECK, MCHECK, STATUS and its shared memory from what was acknowledged, in the
   same process (no restart: nothing uncommitted in its journal); with etcd back exactly one
   leader, nothing acknowledged missing, STOPs accepted again;
5. the same with a STOP journaled as etcd goes (answered BUSY): reads served all through the
   outage, the restart that cuts that tail only once etcd is back, the request id then new.
"""
import errno
import json
import os
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import etcdcluster  # noqa: E402
import sgcluster  # noqa: E402
import sgtest  # noqa: E402
from sgtest import RespError, todict  # noqa: E402

UDP_PROBE = os.environ.get("UDP_PROBE") or os.path.join(sgtest.ROOT, "build", "tests", "integration", "udp_probe")
FRAME_MAGIC, TRAILER_MAGIC = 0x424a4753, 0x454a4753  # journal_fmt.h


def role(g):
    return g.role() or {}


def udp_check(g, bank, acct):
    """One UDP CHECK through libstopgate's codec (udp_probe): the reply message."""
    p = subprocess.run([UDP_PROBE, "127.0.0.1", str(g.udp_port), "alice", "hello", "check", "%s %s" % (bank, acct)],
                       env=dict(os.environ, STOPGATE_SECRET=g.secret("alice")), capture_output=True, text=True,
                       timeout=60)
    replies = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    if len(replies) < 2 or not replies[1].get("replies"):
        raise AssertionError("no UDP CHECK reply: %r %s" % (replies, p.stderr))
    return replies[1]["replies"][0]


class Gaps(unittest.TestCase):
    etcd = cl = None

    @classmethod
    def setUpClass(cls):
        cls.etcd = etcdcluster.EtcdCluster(3)
        # c0 leads, c1 is a list mirror (candidate = no): after a quorum loss c0 is the only
        # one that can lead again.
        # The bank answers after 60 s and is not asked again for 10 minutes: a leader that writes
        # nothing of its own meanwhile (the in-place case of test 4).
        cls.cl = sgcluster.GatewayCluster(n=2, candidates=(True, False), lease_ms=1000, etcd=cls.etcd,
                                          gateway={"bank_deadline_ms": "600000"})
        for g in cls.cl.gws:
            g.sections = sgcluster.LISTS + "[plugin sim]\nlatency_us = 60000000\n\n"
            g.write_config()
        cls.cl.start()
        cls.seq = 0

    @classmethod
    def tearDownClass(cls):
        if cls.cl:
            cls.cl.close()
        if cls.etcd:
            cls.etcd.close()

    @classmethod
    def rid(cls, tag):
        cls.seq += 1
        return "%s-%d-%d" % (tag, os.getpid(), cls.seq)

    def stop_args(self, rid, acct):
        return ["STOP", rid, "BANK", "SGTB", "ACCOUNT", acct, "CASE", "GAPS"]

    def wait_applied(self, g, lead):
        with lead.client("alice") as c:
            last = int(sgtest.parse_info(c.ok("INFO", "cluster")).get("committed_lsn", 0))
        sgtest.wait_until(lambda: int(role(g).get("applied_lsn", 0)) >= last, timeout=10,
                          what="applying the log to lsn %d" % last)
        return last

    # -- 1. a follower's committed_lsn ------------------------------------------------------
    def test_1_follower_committed_not_below_applied(self):
        lead, mirror = self.cl.gws[self.cl.wait_leader()], self.cl.gws[1]
        samples = []
        with lead.client("alice") as lc, mirror.client("alice") as mc:
            for k in range(30):
                r = todict(lc.ok(*self.stop_args(self.rid("cm"), "CM%d%05d" % (os.getpid() % 1000, k))))
                self.assertEqual(r["status"], "ACCEPTED")
                for _ in range(3):
                    v = todict(mc.ok("ROLE"))
                    samples.append((int(v["applied_lsn"]), int(v["committed_lsn"])))
        last = self.wait_applied(mirror, lead)
        v = role(mirror)
        samples.append((int(v["applied_lsn"]), int(v["committed_lsn"])))
        bad = [s for s in samples if s[1] < s[0]]
        self.assertEqual(bad, [], "follower ROLE with committed_lsn < applied_lsn (applied, committed)")
        self.assertGreaterEqual(int(v["committed_lsn"]), last)

    # -- 2. stale on every read path ---------------------------------------------------------
    def test_2_stale_member_says_so_everywhere(self):
        sub = sgcluster.GatewayCluster(n=2, candidates=(True, False), lease_ms=1000, etcd=self.etcd,
                                       names=["st0", "st1"])
        shm = None
        try:
            sub.start()
            lead, mirror = sub.gws
            acct = "STALE%06d" % (os.getpid() % 10 ** 6)
            with lead.client("olga") as c:
                self.assertNotIsInstance(c.call("LIST.ADD", "mule", "SGTB", acct, "SCORE", "80"), RespError)
            applied = self.wait_applied(mirror, lead)
            shm = sgcluster.ShmReader(mirror.shm_name)
            sgtest.wait_until(lambda: shm.check("SGTB", acct).mask, timeout=5, what="the entry in shared memory")
            r = udp_check(mirror, "SGTB", acct)
            self.assertEqual((r["err"], r["code"]), (0, 1), "UDP CHECK on a live follower: %r" % r)
            # A log key far past the mirror's journal: the log "starts past" it, as after a trim
            # while it was away. Header and trailer are all the reader looks at before the gap.
            lsn = applied + 1000
            frame = b"".join(struct.pack("<QIIQQQ", 0, magic, 80, lsn, lsn, 0) for magic in (FRAME_MAGIC, TRAILER_MAGIC))
            sub.etcd_put("%s/log/%020d" % (sub.prefix, lsn), frame)
            sgtest.wait_until(lambda: role(mirror).get("log") == "stale", timeout=10, what="the mirror stale")
            with mirror.client("alice") as c:
                e = c.call("CHECK", "SGTB", acct)
                self.assertIsInstance(e, RespError)
                self.assertEqual(e.code, "ERR STALE", e)
            r = udp_check(mirror, "SGTB", acct)
            self.assertEqual((r["err"], r["code"], r["mask"]), (11, 0, 0), "UDP CHECK on a stale member: %r" % r)
            got = sgtest.wait_until(lambda: (shm.check_rc("SGTB", acct),) if shm.check_rc("SGTB", acct)[0] else None,
                                    timeout=2, what="libstopgate saying stale")
            self.assertEqual(got[0][0], -errno.ESTALE)
            self.assertIn("marked stale", mirror.log_since_start())
        finally:
            if shm:
                shm.close()
            sub.close()

    # -- 3. a restarted leader trims the keys older than its process ----------------------
    def test_3_restarted_leader_trims_old_keys(self):
        sub = sgcluster.GatewayCluster(n=1, candidates=(True,), lease_ms=1000, etcd=self.etcd, names=["tr0"])
        try:
            g = sub.gws[0]
            g.cluster_opts["log_retention_ms"] = "3000"
            g.write_config()
            sub.start()
            with g.client("olga") as c:  # LIST.ADDs: one batch each, and no bank instruction
                for k in range(4):
                    self.assertNotIsInstance(c.call("LIST.ADD", "mule", "SGTB", "TR%d%05d" % (os.getpid() % 100, k)),
                                             RespError)
                    time.sleep(0.05)
            before = [k for k, _, _ in sub.log_keys()]
            self.assertGreaterEqual(len(before), 4, "log keys before the trim could run: %r" % before)
            g.kill9()
            g.start()
            sub.wait_leader(timeout=15)
            # Retention counts from when the restarted leader learnt the keys: 3 s, then a look
            # every second. Nothing new was written: only the extent read can know them.
            sgtest.wait_until(lambda: len(sub.log_keys()) == 1, timeout=15, interval=0.2,
                              what="the restarted leader trimming the log to its last key")
            self.assertEqual([k for k, _, _ in sub.log_keys()], before[-1:])
        finally:
            sub.close()

    # -- 4. a leader that loses etcd's quorum keeps serving reads ---------------------------
    def prepare(self, tag):
        """On the leader (c0): a listed account and five acknowledged STOPs, applied by c1, and
        nothing more being written (the bank answers after 60 s): what the outage starts from."""
        lead, mirror = self.cl.gws
        listed = "%s%d" % (tag, os.getpid() % 10 ** 6)
        reqs = [(self.rid(tag), "%sS%d%04d" % (tag, os.getpid() % 1000, k)) for k in range(5)]
        for attempt in range(5):  # a loaded box may cost c0 its 1 s lease: it leads again
            self.assertEqual(self.cl.wait_leader(timeout=20), 0)
            acked = []
            with lead.client("olga") as c:
                r = c.call("LIST.ADD", "hot", "SGTB", listed, "SCORE", "90")
            with lead.client("alice") as c:
                for rid, acct in reqs:
                    a = c.call(*self.stop_args(rid, acct))
                    if isinstance(a, RespError):
                        break
                    a = todict(a)
                    self.assertIn(a["status"], ("ACCEPTED", "DUPLICATE"))
                    acked.append((rid, acct, a["order_id"]))
            if not isinstance(r, RespError) and len(acked) == len(reqs):
                break
            time.sleep(0.5)
        self.assertEqual(len(acked), len(reqs), "no stable leader to prepare on")
        # quiet: the instructions' SENT records acknowledged, nothing written for a while
        last = [None, time.monotonic()]

        def quiet():
            v = role(lead)
            now = (v.get("applied_lsn"), v.get("committed_lsn"))
            if now != last[0]:
                last[0], last[1] = now, time.monotonic()
            return now[0] == now[1] and time.monotonic() - last[1] > 0.8
        sgtest.wait_until(quiet, timeout=15, interval=0.1, what="the leader idle")
        self.wait_applied(mirror, lead)
        return lead, listed, acked

    def outage(self, lead, listed, acked, shm, seconds, during=None):
        """Two of three etcd members killed for `seconds`: CHECK, MCHECK and the shared memory
        on the old leader answer from what was acknowledged all along; during(c) is called on
        each turn. etcd restored at the end."""
        et = self.etcd
        lost = [i for i in range(3) if et.running(i)][:2]
        served = 0
        restarts = lead.log_since_start().count("starting again in place")
        try:
            for i in lost:
                et.kill9(i)
            t0 = time.monotonic()
            with lead.client("alice", timeout=10) as c:
                while time.monotonic() - t0 < seconds:
                    v = todict(c.ok("CHECK", "SGTB", listed))
                    self.assertEqual(v["verdict"], "LISTED", v)
                    v = todict(c.ok("CHECK", "SGTB", acked[0][1]))
                    self.assertEqual(v["verdict"], "FROZEN", v)
                    self.assertEqual(len(c.ok("MCHECK", "SGTB", listed, "SGTB", acked[1][1])), 2)
                    self.assertTrue(shm.check("SGTB", listed).mask)
                    self.assertTrue(shm.check("SGTB", acked[0][1]).frozen)
                    served += 1
                    if during:
                        during(c)
                    time.sleep(0.05)
            self.assertGreater(served, 20)
            self.assertTrue(lead.running, "the old leader exited during the outage")
            self.assertEqual(lead.log_since_start().count("starting again in place"), restarts,
                             "restarted while etcd was away: reads were not served meanwhile")
        finally:
            for i in lost:
                if not et.running(i):
                    et.restart(i, wait=False)
            et.wait_healthy()

    def after_outage(self, acked, listed, retry=()):
        """One leader, every acknowledged order everywhere, DUPLICATE for their request ids,
        a request id refused during the outage ACCEPTED or DUPLICATE, a new STOP ACCEPTED."""
        li = self.cl.wait_leader(timeout=20)
        leaders = [i for i, g in enumerate(self.cl.gws) if role(g).get("role") == "leader"]
        self.assertEqual(leaders, [li])
        for g in self.cl.gws:
            for rid, acct, oid in acked:
                with g.client("alice") as c:
                    sgtest.wait_until(lambda: not isinstance(c.call("STATUS", oid), RespError), timeout=10,
                                      what="acknowledged order %s on c%d" % (oid, self.cl.gws.index(g)))
            with g.client("alice") as c:
                self.assertEqual(todict(c.ok("CHECK", "SGTB", listed))["verdict"], "LISTED")
        with self.cl.gws[li].client("alice") as c:
            for rid, acct, oid in acked:
                r = todict(c.ok(*self.stop_args(rid, acct)))
                self.assertEqual((r["status"], r["order_id"]), ("DUPLICATE", oid))
            for rid, acct in retry:
                r = todict(c.ok(*self.stop_args(rid, acct)))
                self.assertIn(r["status"], ("ACCEPTED", "DUPLICATE"), r)
            r = todict(c.ok(*self.stop_args(self.rid("after"), "AF%d%d" % (os.getpid() % 10 ** 6, self.seq))))
            self.assertEqual(r["status"], "ACCEPTED")

    def test_4_quorum_loss_reads_served_in_place(self):
        """Nothing uncommitted in the leader's journal: it follows on in the same process."""
        lead, listed, acked = self.prepare("QL")
        pid = lead.proc.pid
        shm = sgcluster.ShmReader(lead.shm_name)
        refused = []
        stepped = lead.log_since_start().count("rejoined as a follower in place")
        restarts = lead.log_since_start().count("starting again in place")

        def write_refused(c):
            if not refused and lead.log_since_start().count("rejoined as a follower in place") > stepped:
                with lead.client("alice", timeout=10) as w:
                    r = w.call(*self.stop_args(self.rid("qlno"), "QLNO%d" % (os.getpid() % 10 ** 6)))
                self.assertIsInstance(r, RespError, "acknowledged without an etcd quorum: %r" % (r,))
                self.assertIn(r.code, ("ERR BUSY", "READONLY"), r)
                refused.append(r)
                with lead.client("alice") as rc:
                    for rid, acct, oid in acked:
                        self.assertEqual(todict(rc.ok("STATUS", oid))["order_id"], oid)
        try:
            self.outage(lead, listed, acked, shm, 4.0, write_refused)
            self.assertTrue(refused, "the leader never stepped down in place; log: %s" %
                            lead.log_since_start()[-2000:])
            self.after_outage(acked, listed)
            # the same process throughout, its shared memory never re-published
            self.assertEqual(lead.proc.pid, pid)
            self.assertEqual(lead.log_since_start().count("starting again in place"), restarts)
            self.assertTrue(shm.check("SGTB", listed).mask)
        finally:
            shm.close()

    def test_5_quorum_loss_with_uncommitted_tail(self):
        """A STOP journaled as etcd goes away (answered BUSY, never acknowledged): the old
        leader serves reads during the outage and restarts to cut that tail only once etcd
        answers again."""
        lead, listed, acked = self.prepare("QT")
        shm = sgcluster.ShmReader(lead.shm_name)
        log0 = len(lead.log_since_start())
        rid, acct = self.rid("qt"), "QTNO%d" % (os.getpid() % 10 ** 6)
        w = sgtest.Client(lead.port, timeout=15)
        try:
            w.call("AUTH", "alice", lead.secret("alice"))
            sent = []

            def send_stop(c):
                if not sent:
                    w.send(*self.stop_args(rid, acct))
                    sent.append(time.monotonic())
            self.outage(lead, listed, acked, shm, 4.0, send_stop)
            r = w.read()
            self.assertIsInstance(r, RespError, "acknowledged without an etcd quorum: %r" % (r,))
            self.assertIn(r.code, ("ERR BUSY", "READONLY"), r)
        finally:
            w.close()
            shm.close()
        self.after_outage(acked, listed, retry=[(rid, acct)])
        log = lead.log_since_start()[log0:]
        # the STOP was journaled (a tail: restarted once etcd was back, the tail cut) or, when the
        # leader already knew its lease was gone, refused before the journal (followed in place)
        self.assertTrue("starting again in place" in log or "rejoined as a follower in place" in log, log[-2000:])
        print("tail: %s" % ("restarted after the outage" if "starting again in place" in log else "none"), flush=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
