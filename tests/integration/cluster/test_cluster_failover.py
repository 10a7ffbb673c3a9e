"""Cluster failover and followers (SPEC §10, issue 12, docs/cluster.md): a real 3-member etcd
and 3 gateways on loopback (sgcluster.py): c0 and c1 candidates, c2 a list mirror
(candidate = no).

- a LIST.ADD on the leader is seen by a follower's CHECK and by a libstopgate reader of the
  follower's shared memory (lag p50/p99 printed);
- kill -9 of the leader under a pipelined STOP load, SG_FAILOVER_RUNS times (default 10, ~45 s in all; the
  measured figure in docs/cluster.md used 20): each time a new leader within lease_ms + 1 s,
  every acknowledged order there (STATUS), the acknowledged request ids answered DUPLICATE
  with their first order id, every instruction without a bank answer re-sent with the same
  instruction id (the sim bank's log); the killed gateway restarted, caught up, follower;
- the leader frozen (SIGSTOP) past its lease, then SIGCONT: it acknowledges nothing after the
  new election; STOPs sent to it get READONLY or BUSY (or a closed connection), and their
  request ids are unknown to the cluster (ACCEPTED, not DUPLICATE, on the new leader); it
  follows again (in place, or restarting to cut a tail the cluster never committed);
- a returning leader whose last batch etcd never committed (quorum lost, then kill -9) cuts
  it at start and follows the new leader's log;
- the re-seed procedure of docs/operations.md: a member whose journal is gone gets a running
  follower's copy and follows;
- [cluster] log_retention_ms (1 s, a cluster of its own on the same etcd): a member stopped
  while the log is trimmed past it refuses to start ("re-seed this member"); re-seeded from a
  follower's journal (docs/operations.md) it follows again;
- etcd members lost: with one of three gone STOPs are still ACCEPTED; with two gone they are
  answered ERR BUSY within the commit deadline (never ACCEPTED) while the followers serve CHECK
  and STATUS; with etcd back every acknowledged order is on every gateway and a request id
  answered BUSY, retried, is ACCEPTED or DUPLICATE and one order.

Figures go to stdout as `FIGURE name value` lines (docs/cluster.md has the commands).
"""
import os
import pathlib
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import sgcluster  # noqa: E402
import sgtest  # noqa: E402
from sgtest import RespError, todict  # noqa: E402

LEASE_MS = int(os.environ.get("SG_LEASE_MS", "1000"))
RUNS = int(os.environ.get("SG_FAILOVER_RUNS", "10"))
LOAD = int(os.environ.get("SG_FAILOVER_LOAD", "150"))  # STOPs pipelined per run
LAG_ADDS = int(os.environ.get("SG_LAG_ADDS", "60"))


def sim_section(path):
    # Answers after 60 s: during the test no instruction gets its bank answer, so every
    # instruction must be resumed by each new leader.
    return "[plugin sim]\nlatency_us = 60000000\nlog = %s\n\n" % path


class Cluster(unittest.TestCase):
    cl = None

    @classmethod
    def setUpClass(cls):
        cls.cl = sgcluster.GatewayCluster(candidates=(True, True, False), lease_ms=LEASE_MS,
                                          sections=sgcluster.LISTS)
        for g in cls.cl.gws:
            g.sim_log = os.path.join(g.dir, "sim.log")
            g.sections = sgcluster.LISTS + sim_section(g.sim_log)
            g.write_config()
        cls.cl.start()
        cls.seq = 0

    @classmethod
    def tearDownClass(cls):
        if cls.cl:
            cls.cl.close()

    @classmethod
    def rid(cls, tag):
        cls.seq += 1
        return "%s-%d-%d-%d" % (tag, os.getpid(), int(time.time() * 1000) % 10 ** 8, cls.seq)

    def leader(self, exclude=()):
        return self.cl.wait_leader(exclude=exclude, timeout=LEASE_MS / 1000.0 + 15)

    def stop_args(self, rid, acct):
        return ["STOP", rid, "BANK", "SGTB", "ACCOUNT", acct, "CASE", "FO1"]

    # -- (c) followers see list changes ----------------------------------------------------
    def test_1_list_lag(self):
        li = self.leader()
        fi = 2  # the mirror
        leader, mirror = self.cl.gws[li], self.cl.gws[fi]
        shm = sgcluster.ShmReader(mirror.shm_name)
        lag_check, lag_shm = [], []
        try:
            with leader.client("olga") as lc, mirror.client("scott") as fc:
                for k in range(LAG_ADDS):
                    acct = "LAG%d%06d" % (os.getpid() % 1000, k)
                    t0 = time.monotonic()
                    r = lc.call("LIST.ADD", "mule", "SGTB", acct, "SCORE", "70")
                    self.assertNotIsInstance(r, RespError, r)
                    got_shm = got_check = None
                    while got_shm is None or got_check is None:
                        now = time.monotonic()
                        if now - t0 > 5:
                            self.fail("LIST.ADD %s not on the follower after 5 s (shm %r check %r)" %
                                      (acct, got_shm, got_check))
                        if got_shm is None and shm.check("SGTB", acct).mask:
                            got_shm = time.monotonic() - t0
                        if got_check is None:
                            v = todict(fc.ok("CHECK", "SGTB", acct))
                            if v.get("lists"):
                                got_check = time.monotonic() - t0
                    lag_shm.append(got_shm * 1000)
                    lag_check.append(got_check * 1000)
            # what a follower answers to a write
            with mirror.client("olga") as fc:
                r = fc.call("LIST.ADD", "mule", "SGTB", "NOPE0001")
                self.assertIsInstance(r, RespError)
                self.assertEqual(r.code, "READONLY", r)
        finally:
            shm.close()
        for name, xs in (("follower_list_lag_shm_ms", lag_shm), ("follower_list_lag_check_ms", lag_check)):
            print("FIGURE %s p50 %.1f p99 %.1f max %.1f n %d" % (
                name, sgcluster.percentile(xs, 50), sgcluster.percentile(xs, 99), max(xs), len(xs)))
        self.assertLess(sgcluster.percentile(lag_shm, 50), 100.0)

    # -- (a) kill -9 under load, repeated -------------------------------------------------
    def load(self, gw, n, stop_at):
        """n pipelined STOPs to gw (a window of 16); [(rid, account, reply)] for those sent
        (reply None: no answer, the leader died)."""
        out = []
        try:
            c = gw.client("alice", timeout=3)
        except Exception:
            return out
        window = []
        try:
            for k in range(n):
                rid, acct = self.rid("fo"), "FO%d%07d" % (os.getpid() % 100, self.seq)
                c.send(*self.stop_args(rid, acct))
                window.append((rid, acct))
                if len(window) >= 16 or k == n - 1 or stop_at.is_set():
                    for w in window:
                        try:
                            out.append(w + (c.read(),))
                        except Exception:
                            out.append(w + (None,))
                    window = []
                if stop_at.is_set():
                    break
        except Exception:
            for w in window:
                out.append(w + (None,))
        finally:
            c.close()
        return out

    def first_accepted(self, exclude, t_kill, deadline):
        """Sends a STOP to every running gateway but `exclude` every 10 ms until one is
        ACCEPTED: (seconds since t_kill, index)."""
        while time.monotonic() < deadline:
            for i, g in enumerate(self.cl.gws):
                if i in exclude or not g.running:
                    continue
                try:
                    with g.client("alice", timeout=1) as c:
                        r = c.call(*self.stop_args(self.rid("probe"), "PROBE%07d" % self.seq))
                except Exception:
                    continue
                if not isinstance(r, RespError) and todict(r).get("status") == "ACCEPTED":
                    return time.monotonic() - t_kill, i
            time.sleep(0.01)
        self.fail("no ACCEPTED on any other gateway within %.1f s of the kill" % (deadline - t_kill))

    def sim_ids(self, gw, since):
        try:
            with open(gw.sim_log) as f:
                f.seek(since)
                return {line.split()[1] for line in f if len(line.split()) >= 2}
        except FileNotFoundError:
            return set()

    def test_2_kill9_failover(self):
        times = []
        for run in range(RUNS):
            li = self.leader()
            leader = self.cl.gws[li]
            stop_at = threading.Event()
            res = []
            th = threading.Thread(target=lambda: res.extend(self.load(leader, LOAD, stop_at)))
            th.start()
            time.sleep(0.15 + 0.05 * (run % 3))  # the kill lands mid-load
            sim_off = {i: (os.path.getsize(g.sim_log) if os.path.exists(g.sim_log) else 0)
                       for i, g in enumerate(self.cl.gws)}
            t_kill = time.monotonic()
            leader.kill9()
            stop_at.set()
            th.join(10)
            took, ni = self.first_accepted({li}, t_kill, t_kill + LEASE_MS / 1000.0 + 10)
            times.append(took * 1000)
            self.assertLess(took * 1000, LEASE_MS + 1000 + 1500,
                            "run %d: failover took %.0f ms" % (run, took * 1000))
            new = self.cl.gws[ni]
            acked = [(rid, acct, todict(rep)) for rid, acct, rep in res
                     if rep is not None and not isinstance(rep, RespError)
                     and todict(rep).get("status") == "ACCEPTED"]
            with new.client("alice") as c:
                for rid, acct, rep in acked:
                    st = c.call("STATUS", rep["order_id"])
                    self.assertNotIsInstance(st, RespError, "run %d: acknowledged %s lost: %r" %
                                             (run, rep["order_id"], st))
                    again = todict(c.ok(*self.stop_args(rid, acct)))
                    self.assertEqual((again["status"], again["order_id"]), ("DUPLICATE", rep["order_id"]),
                                     "run %d: request id %s" % (run, rid))
            # every acknowledged order's instruction resumed by the new leader, same id
            want = {rep["order_id"] for _, _, rep in acked}
            sgtest.wait_until(lambda: want <= self.sim_ids(new, sim_off[ni]), timeout=10,
                              what="the new leader resending every unanswered instruction")
            # the old leader back: reconciled, caught up, a follower
            leader.start()
            r = sgtest.wait_until(lambda: (leader.role() or {}).get("role") == "follower" and leader.role(),
                                  timeout=15, what="the old leader rejoining as a follower")
            self.assertEqual(r.get("role"), "follower")
            print("run %d: killed c%d, c%d leads after %.0f ms, %d acknowledged before the kill" %
                  (run, li, ni, took * 1000, len(acked)), flush=True)
        print("FIGURE failover_ms p50 %.0f p99 %.0f max %.0f runs %d lease_ms %d" % (
            sgcluster.percentile(times, 50), sgcluster.percentile(times, 99), max(times), len(times),
            LEASE_MS))
        # the restarted gateway holds what the leader holds
        li = self.leader()
        with self.cl.gws[li].client("alice") as c:
            last = int(sgtest.parse_info(c.ok("INFO")).get("last_lsn", 0))
        for i, g in enumerate(self.cl.gws):
            if i != li:
                sgtest.wait_until(lambda: int((g.role() or {}).get("applied_lsn", 0)) >= last, timeout=10,
                                  what="c%d applying the log to lsn %d" % (i, last))

    # -- (b) a frozen leader ----------------------------------------------------------------
    def test_3_sigstop_leader(self):
        li = self.leader()
        old = self.cl.gws[li]
        old.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            ni = self.leader(exclude={li})
            elected = time.monotonic()
            # STOPs sent to the frozen leader wait in its sockets
            pending = []
            for k in range(5):
                rid, acct = self.rid("frozen"), "FZ%d%06d" % (os.getpid() % 100, k)
                c = sgtest.Client(old.port, timeout=10)
                c.send("AUTH", "alice", old.secret("alice"))
                c.send(*self.stop_args(rid, acct))
                pending.append((c, rid, acct))
        finally:
            old.proc.send_signal(signal.SIGCONT)
        answers, rids = [], []
        for c, rid, acct in pending:
            rids.append((rid, acct))
            try:
                c.read()  # AUTH
                answers.append(c.read())
            except Exception as e:
                answers.append(e)
            finally:
                c.close()
        for a in answers:
            if isinstance(a, RespError):
                self.assertIn(a.code, ("READONLY", "ERR BUSY"), a)
            elif not isinstance(a, Exception):
                self.fail("the deposed leader answered %r" % (a,))
        with self.cl.gws[ni].client("alice") as c:
            for rid, acct in rids:
                r = todict(c.ok(*self.stop_args(rid, acct)))
                self.assertEqual(r["status"], "ACCEPTED", "request id %s exists in the cluster" % rid)
        print("FIGURE sigstop_election_ms %.0f" % ((elected - t0) * 1000))
        # deposed, it follows: in place when its journal holds only what the log has, else
        # after starting again in place (its uncommitted tail cut)
        sgtest.wait_until(lambda: any(m in old.log_since_start() for m in
                                      ("starting again in place", "rejoined as a follower in place")),
                          timeout=10, what="the deposed leader rejoining")
        self.assert_follows(old, ni)

    def assert_follows(self, g, li):
        """g says follower and has applied everything the leader li has."""
        sgtest.wait_until(lambda: (g.role() or {}).get("role") == "follower", timeout=15,
                          what="c%d following" % self.cl.gws.index(g))
        with self.cl.gws[li].client("alice") as c:
            last = int(sgtest.parse_info(c.ok("INFO", "cluster")).get("committed_lsn", 0))
        sgtest.wait_until(lambda: int((g.role() or {}).get("applied_lsn", 0)) >= last, timeout=10,
                          what="applying the log to lsn %d" % last)
        self.assertEqual((g.role() or {}).get("log"), "live")

    # -- (d) a returning leader cuts what the cluster never committed ---------------------
    def test_4_uncommitted_tail_cut(self):
        # The STOP must reach the old leader's disk but not etcd: etcd loses its quorum just
        # before it. When the leader already knows its lease is unsure, it refuses the STOP
        # without journaling it (no tail to cut): then the scenario is tried again.
        for attempt in range(4):
            li = self.leader()
            old, et = self.cl.gws[li], self.cl.etcd
            frozen = [i for i in range(3) if et.running(i)][:2]
            rid, acct = self.rid("lost"), "LOST%05d%02d" % (os.getpid() % 10 ** 5, attempt)
            with old.client("alice", timeout=20) as c:
                for i in frozen:
                    et.stop(i)
                try:
                    r = c.call(*self.stop_args(rid, acct))
                finally:
                    old.kill9()
                    for i in frozen:
                        et.cont(i)
            if not isinstance(r, RespError):
                # Never acceptable; say what the member and etcd saw, for the post-mortem.
                self.fail("acknowledged without the cluster log: %r (etcd members frozen: %s)\n"
                          "the member's log:\n%s" % (r, frozen, old.log_since_start()[-4000:]))
            self.assertIn(r.code, ("ERR BUSY", "READONLY"), r)
            journaled = any(rid.encode() in pathlib.Path(p).read_bytes() for p in old.segments())
            ni = self.leader(exclude={li})
            with self.cl.gws[ni].client("alice") as c:  # the log goes on with other bytes
                after_acct = "AFTER%04d%02d" % (os.getpid() % 10 ** 4, attempt)
                after = todict(c.ok(*self.stop_args(self.rid("after"), after_acct)))
                self.assertEqual(after["status"], "ACCEPTED")
            old.start()
            self.assert_follows(old, ni)
            with self.cl.gws[ni].client("alice") as c:  # never acknowledged, never in the cluster
                again = todict(c.ok(*self.stop_args(rid, acct)))["status"]
            if again == "DUPLICATE":
                # etcd held the proposal and committed it when its quorum came back: the order
                # answered BUSY is in the log after all (docs/cluster.md: a retry finds it).
                # Then there is no tail to cut: try again.
                print("attempt %d: the STOP answered %s reached the log after all; again" % (attempt, r.code),
                      flush=True)
                continue
            self.assertEqual(again, "ACCEPTED")
            if journaled:
                break
            print("attempt %d: the STOP was refused before the journal; again" % attempt, flush=True)
        else:
            self.skipTest("the leader refused every STOP before journaling it (lease unsure at once)")
        self.assertIn("the cluster never committed", old.log_since_start())
        with old.client("alice") as c:  # the cut tail is gone, the new leader's order is there
            self.assertEqual(todict(c.ok("STATUS", after["order_id"]))["account"], after_acct)

    # -- re-seed (docs/operations.md "Re-seeding a cluster member") ------------------------
    def test_5_reseed_from_a_follower(self):
        import shutil
        li = self.leader()
        mirror = self.cl.gws[2]
        donor = self.cl.gws[[i for i in (0, 1) if i != li][0]]
        mirror.stop()
        shutil.rmtree(mirror.journal_dir)
        # the donor keeps running: closed segments first, the last one last (a torn copy of
        # it is cut at start and supplied again by the log)
        segs = sorted(os.listdir(donor.journal_dir))
        os.makedirs(mirror.journal_dir)
        for name in segs:
            shutil.copyfile(os.path.join(donor.journal_dir, name), os.path.join(mirror.journal_dir, name))
        with self.cl.gws[li].client("alice") as c:
            after = todict(c.ok(*self.stop_args(self.rid("seed"), "SEED%07d" % (os.getpid() % 10 ** 7))))
        mirror.start()
        self.assert_follows(mirror, li)
        with mirror.client("alice") as c:
            # The sim bank never answers during this test: past bank_deadline_ms (5 s, which a
            # loaded machine's start and catch-up can take) the order is OVERDUE on the leader
            # and so in the log; what matters here is that the re-seeded mirror holds it.
            self.assertIn(todict(c.ok("STATUS", after["order_id"]))["state"], ("ACCEPTED", "SENT", "OVERDUE"))

    # -- (e) etcd members lost under a running cluster --------------------------------------
    def served_by(self, idx, order_id, acct):
        """CHECK and STATUS answered by the gateways idx."""
        for i in idx:
            g = self.cl.gws[i]

            def served():
                try:
                    with g.client("alice", timeout=2) as c:
                        ck, st = c.call("CHECK", "SGTB", acct), c.call("STATUS", order_id)
                except Exception as e:
                    last[0] = e
                    return None
                if isinstance(ck, RespError) or isinstance(st, RespError):
                    last[0] = (ck, st)
                    return None
                return todict(st)
            last = [None]
            try:
                st = sgtest.wait_until(served, timeout=8, what="c%d serving CHECK and STATUS" % i)
            except AssertionError:
                self.fail("c%d does not serve CHECK and STATUS: %r; log: %s" % (i, last[0], g.log_since_start()[-1500:]))
            self.assertEqual(st["order_id"], order_id)

    def test_6_etcd_member_loss(self):
        et = self.cl.etcd
        li = self.leader()
        led = {i: g.log_since_start().count(" leads, epoch") for i, g in enumerate(self.cl.gws)}
        acked, busy = [], []
        lost = []
        try:
            # one member gone (not etcd's leader: no election to wait for): still acknowledged
            lost.append([i for i in range(3) if et.running(i) and i != et.leader()][0])
            et.kill9(lost[0])
            with self.cl.gws[li].client("alice") as c:
                for k in range(5):
                    rid, acct = self.rid("one"), "ONE%d%05d" % (os.getpid() % 1000, k)
                    r = todict(c.ok(*self.stop_args(rid, acct)))
                    self.assertEqual(r["status"], "ACCEPTED", "one etcd member down: %r" % r)
                    acked.append((rid, acct, r["order_id"]))
            # The followers hold them before the quorum goes (a slow follower - ASan, load -
            # could not apply what it never received while etcd is down).
            for i, g in enumerate(self.cl.gws):
                for rid, acct, oid in acked:
                    sgtest.wait_until(lambda: self.status_on(g, oid), timeout=15,
                                      what="c%d holding acknowledged order %s" % (i, oid))
            # two gone: no quorum. BUSY within the commit deadline, never ACCEPTED
            lost.append([i for i in range(3) if et.running(i)][0])
            et.kill9(lost[1])
            with self.cl.gws[li].client("alice", timeout=10) as c:
                for k in range(3):
                    rid, acct = self.rid("two"), "TWO%d%05d" % (os.getpid() % 1000, k)
                    t0 = time.monotonic()
                    r = c.call(*self.stop_args(rid, acct))
                    took = time.monotonic() - t0
                    self.assertIsInstance(r, RespError, "acknowledged without an etcd quorum: %r" % (r,))
                    # the first: BUSY at its deadline; later ones may meet a deposed leader
                    self.assertIn(r.code, ("ERR BUSY",) if k == 0 else ("ERR BUSY", "READONLY"), r)
                    self.assertLess(took, (3000 + 1500) / 1000.0, "answered after %.2f s" % took)
                    busy.append((rid, acct))
            # Followers go on serving reads, and so does the old leader (its lease lost with the
            # quorum: integration-cluster-gaps shows it); a journal tail it holds (the BUSY
            # STOPs) is cut by a restart once etcd is back. A loaded box may move the lead
            # meanwhile (a keep-alive missed with one member gone): a member that took the
            # lead during the outage is in the same place.
            readers = [i for i in range(3) if i != li and
                       self.cl.gws[i].log_since_start().count(" leads, epoch") == led[i]]
            self.assertIn(2, readers)  # the list mirror (candidate = no) never leads
            self.served_by(readers, acked[0][2], acked[0][1])
        finally:
            for i in lost:
                if not et.running(i):
                    et.restart(i, wait=False)
            et.wait_healthy()
        for i, g in enumerate(self.cl.gws):
            if not g.running:  # its start gave up waiting for etcd: its service manager restarts it
                print("c%d exited waiting for etcd; started again" % i, flush=True)
                g.start()
        li = self.leader()
        self.served_by(range(3), acked[0][2], acked[0][1])
        # every acknowledged order on every gateway
        for i, g in enumerate(self.cl.gws):
            for rid, acct, oid in acked:
                sgtest.wait_until(lambda: self.status_on(g, oid), timeout=10,
                                  what="c%d holding acknowledged order %s" % (i, oid))
        # a request id answered BUSY, retried: ACCEPTED or DUPLICATE, and then one order
        for rid, acct in busy:
            r = self.stop_until_answered(rid, acct)
            self.assertIn(r["status"], ("ACCEPTED", "DUPLICATE"), r)
            again = self.stop_until_answered(rid, acct)
            self.assertEqual((again["status"], again["order_id"]), ("DUPLICATE", r["order_id"]))
            for i, g in enumerate(self.cl.gws):
                sgtest.wait_until(lambda: self.status_on(g, r["order_id"]), timeout=10,
                                  what="c%d holding retried order %s" % (i, r["order_id"]))

    def stop_until_answered(self, rid, acct, timeout=20):
        """A STOP sent as a client must: on ERR BUSY (an election still running after etcd
        came back, seen at load 25) or READONLY (the lead moved), again with the same request
        id to whoever leads then. Any other answer ends it."""
        last = [None]

        def once():
            try:
                with self.cl.gws[self.leader()].client("alice", timeout=5) as c:
                    r = c.call(*self.stop_args(rid, acct))
            except (OSError, EOFError) as e:
                last[0] = e
                return None
            last[0] = r
            if isinstance(r, RespError) and r.code in ("ERR BUSY", "READONLY"):
                return None
            self.assertNotIsInstance(r, RespError, "STOP %s: %r" % (rid, r))
            return todict(r)
        try:
            return sgtest.wait_until(once, timeout=timeout, what="STOP %s answered" % rid)
        except AssertionError:
            self.fail("STOP %s never answered but BUSY/READONLY: %r" % (rid, getattr(last[0], "line", last[0])))

    def status_on(self, g, oid):
        try:
            with g.client("alice", timeout=2) as c:
                st = c.call("STATUS", oid)
        except Exception:
            return False
        return not isinstance(st, RespError) and todict(st).get("order_id") == oid
    # -- (f) a member away longer than the log's retention --------------------------------
    def test_7_trimmed_past_a_member(self):
        """[cluster] log_retention_ms = 1000 on a small cluster of its own (same etcd, its own
        prefix): s0 leads, s1 and s2 mirror. s2 stopped, the log trimmed past it: it refuses
        to start (re-seed); re-seeded from s1 (docs/operations.md) it follows again."""
        import shutil
        sub = sgcluster.GatewayCluster(candidates=(True, False, False), lease_ms=1000,
                                       etcd=self.cl.etcd, names=["s0", "s1", "s2"])
        try:
            for g in sub.gws:
                g.cluster_opts["log_retention_ms"] = "1000"
                g.write_config()
            sub.start()
            lead, donor, away = sub.gws
            with lead.client("alice") as c:
                first = todict(c.ok(*self.stop_args(self.rid("ret"), "RET%07d" % (os.getpid() % 10 ** 7))))
            self.assertEqual(first["status"], "ACCEPTED")
            self.wait_applied(away, lead)
            away.stop()
            orders = []
            with lead.client("alice") as c:  # batches of their own: log keys past s2
                for k in range(3):
                    r = todict(c.ok(*self.stop_args(self.rid("trim"), "TRIM%d%05d" % (os.getpid() % 100, k))))
                    orders.append(r["order_id"])
                    time.sleep(0.1)
            # once s2's lease is gone it is not waited for: after the retention only the last
            # log key is left (never trimmed)
            sgtest.wait_until(lambda: len(sub.log_keys()) == 1, timeout=15, interval=0.2,
                              what="the log trimmed to its last key")
            rc, log = away.start_expect_failure()
            self.assertNotEqual(rc, 0)
            self.assertIn("re-seed this member", log)
            # re-seed from the follower s1, as docs/operations.md says
            shutil.rmtree(away.journal_dir)
            os.makedirs(away.journal_dir)
            for name in sorted(os.listdir(donor.journal_dir)):
                shutil.copyfile(os.path.join(donor.journal_dir, name), os.path.join(away.journal_dir, name))
            away.start()
            sgtest.wait_until(lambda: (away.role() or {}).get("role") == "follower", timeout=15,
                              what="the re-seeded member following")
            self.wait_applied(away, lead)
            with away.client("alice") as c:
                for oid in orders:
                    self.assertNotIsInstance(c.call("STATUS", oid), RespError)
        finally:
            sub.close()

    def wait_applied(self, g, lead):
        with lead.client("alice") as c:
            last = int(sgtest.parse_info(c.ok("INFO", "cluster")).get("committed_lsn", 0))
        sgtest.wait_until(lambda: int((g.role() or {}).get("applied_lsn", 0)) >= last, timeout=10,
                          what="applying the log to lsn %d" % last)


if __name__ == "__main__":
    unittest.main(verbosity=2)
