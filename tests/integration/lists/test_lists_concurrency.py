#!/usr/bin/env python3
"""
Concurrency test of the shared-memory fraud lists (issue 5, SPEC §5): two reader processes
(lists_hammer, linked to libstopgate) check accounts in a loop while a real stopgated adds,
deletes (LIST.ADD / LIST.DEL over RESP) and bulk-loads (LIST.LOAD, from a file and inline).
Every entry the test gives the gateway carries a check value the hammer verifies (score =
FNV-1a(account) % 101), and every load of `suspect` is one recognisable pattern with its own
case, so a torn entry or a half-published load makes a hammer exit non-zero.
"""
import os
import random
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lgtest  # noqa: E402
from lgtest import RespError, check_score, todict  # noqa: E402

SECONDS = float(os.environ.get("LISTS_HAMMER_SECONDS", "8"))
N_MULE = 20000  # live ADD/DEL churn over M<i> and S<i>
N_SUSPECT = 3000  # bulk-loaded: S<i> with (i + k) % 3 != 0, case LOAD-<k>
SECRET = "hammer-dev-secret"


def suspect_rows(k):
    return [i for i in range(N_SUSPECT) if (i + k) % 3 != 0]


def suspect_csv(k):
    return "".join("HAMR,S%d,%d,LOAD-%d\n" % (i, check_score("S%d" % i), k) for i in suspect_rows(k))


class ListsConcurrency(unittest.TestCase):
    def test_readers_never_see_torn_or_half_published_entries(self):
        self.assertTrue(os.access(lgtest.HAMMER, os.X_OK), "no hammer at %s" % lgtest.HAMMER)
        gw = lgtest.Gateway("conc", lists={"mule": False, "suspect": False}, dev_secret=SECRET)
        gw.start()
        admin = gw.client("dev", SECRET)
        # A first load, so the hammers see suspect entries from the start.
        r = todict(admin.ok("LIST.LOAD", "suspect", "-", suspect_csv(0)))
        self.assertEqual(r["status"], "LOADED")
        self.assertEqual(r["rows"], len(suspect_rows(0)))

        hammers = [lgtest.spawn([lgtest.HAMMER, gw.shm_name, str(SECONDS), str(N_MULE), str(N_SUSPECT)],
                                stdout=lgtest.subprocess.PIPE, stderr=lgtest.subprocess.PIPE, text=True)
                   for _ in range(2)]
        stop = threading.Event()
        errors = []
        model = {}  # mule entries the gateway should have: account -> score
        stats = {"adds": 0, "dels": 0, "loads": 1, "last_k": 0, "hot": 0}

        def churn():
            rnd = random.Random(1)
            c = gw.client("dev", SECRET)
            try:
                while not stop.is_set():
                    cmds = []
                    for _ in range(200):
                        acct = ("M%d" % rnd.randrange(N_MULE)) if rnd.random() < 0.8 else ("S%d" % rnd.randrange(N_SUSPECT))
                        if rnd.random() < 0.55:
                            cmds.append(("LIST.ADD", "mule", "hamr", acct, "SCORE", check_score(acct)))
                        else:
                            cmds.append(("LIST.DEL", "mule", "HAMR", acct))
                    for cmd, rep in zip(cmds, c.pipeline(cmds)):
                        if isinstance(rep, RespError):
                            errors.append("%s -> %s" % (cmd, rep.line))
                            return
                        st = todict(rep)["status"]
                        acct = cmd[3]
                        if cmd[0] == "LIST.ADD":
                            if st != ("UPDATED" if acct in model else "ADDED"):
                                errors.append("%s -> %s (model says %s)" % (cmd, st, acct in model))
                            model[acct] = cmd[5]
                            stats["adds"] += 1
                        else:
                            if st != ("DELETED" if acct in model else "ABSENT"):
                                errors.append("%s -> %s (model says %s)" % (cmd, st, acct in model))
                            model.pop(acct, None)
                            stats["dels"] += 1
            except Exception as e:  # noqa: BLE001
                errors.append("churn: %r" % (e,))
            finally:
                c.close()

        def loads():
            c = gw.client("dev", SECRET)
            k = 0
            try:
                while not stop.is_set():
                    k += 1
                    if k % 2:
                        path = os.path.join(gw.dir, "suspect-%d.csv" % k)
                        with open(path, "w") as f:
                            f.write(suspect_csv(k))
                        rep = c.call("LIST.LOAD", "suspect", path)
                    else:
                        rep = c.call("LIST.LOAD", "suspect", "-", suspect_csv(k))
                    if isinstance(rep, RespError):
                        errors.append("LIST.LOAD %d -> %s" % (k, rep.line))
                        return
                    d = todict(rep)
                    if d.get("status") != "LOADED" or d.get("rows") != len(suspect_rows(k)):
                        errors.append("LIST.LOAD %d -> %r" % (k, d))
                    stats["loads"] += 1
                    stats["last_k"] = k
                    time.sleep(0.1)
            except Exception as e:  # noqa: BLE001
                errors.append("loads: %r" % (e,))
            finally:
                c.close()

        def hot():
            # H0..H7 added and deleted back to back: the hammers check exactly these slots
            # while they are being written.
            c = gw.client("dev", SECRET)
            try:
                cmds = [("LIST.ADD", "mule", "HAMR", "H%d" % i, "SCORE", check_score("H%d" % i)) for i in range(8)]
                cmds += [("LIST.DEL", "mule", "HAMR", "H%d" % i) for i in range(8)]
                cmds = cmds * 25
                while not stop.is_set():
                    for cmd, rep in zip(cmds, c.pipeline(cmds)):
                        if isinstance(rep, RespError) or todict(rep)["status"] not in ("ADDED", "DELETED"):
                            errors.append("%s -> %r" % (cmd, rep))
                            return
                    stats["hot"] += len(cmds)
            except Exception as e:  # noqa: BLE001
                errors.append("hot: %r" % (e,))
            finally:
                c.close()

        threads = [threading.Thread(target=churn), threading.Thread(target=loads), threading.Thread(target=hot)]
        for t in threads:
            t.start()
        outs = []
        try:
            for h in hammers:
                out, err = h.communicate(timeout=SECONDS + 60)
                outs.append((h.returncode, out, err))
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(errors, [], "the gateway refused or answered wrongly:\n" + "\n".join(errors[:10]))
        for rc, out, err in outs:
            sys.stdout.write(out)
            sys.stderr.write(err)
            self.assertEqual(rc, 0, "hammer failed (rc %d):\n%s%s" % (rc, out, err))
            m = dict(re.findall(r"(\w+)=(\d+)", out))
            self.assertGreater(int(m.get("checks", 0)), 0, out)
            self.assertGreater(int(m.get("mule_hits", 0)), 0, "the hammer never saw a live ADD: " + out)
            self.assertGreater(int(m.get("hot_hits", 0)), 0, "the hammer never saw a hot entry: " + out)
            # the pipelined batch path (sg_lists_check_keys) under the same writes, with the same
            # invariants (violations above). Its key_hot_hits may well be 0: a hot entry lives a
            # microsecond or so between its ADD and DEL, less than a batch's gap between a key's
            # tag walk and its slot read, so the batch reads the slot as deleted (correctly).
            self.assertGreater(int(m.get("key_batches", 0)), 0, out)
            self.assertGreater(int(m.get("suspect_hits", 0)), 0, "the hammer never saw a loaded entry: " + out)
            # loads publish new tables: the open handle must have followed at least one
            self.assertGreater(int(m.get("generations", 0)), 1, "the handle never followed a new table: " + out)
            self.assertEqual(int(m.get("violations", 1)), 0, out)
        sys.stdout.write("driver: %d ADD, %d DEL, %d hot ADD/DEL, %d LIST.LOAD of %d rows\n" %
                         (stats["adds"], stats["dels"], stats["hot"], stats["loads"], len(suspect_rows(0))))
        self.assertGreater(stats["adds"], 1000)
        self.assertGreater(stats["loads"], 3)

        # The gateway's own view agrees with the driver's model.
        info = todict(admin.ok("LIST.INFO", "mule"))
        self.assertEqual(info["entries"], len(model))
        info = todict(admin.ok("LIST.INFO", "suspect"))
        self.assertEqual(info["entries"], len(suspect_rows(stats["last_k"])))
        sample = random.Random(2).sample(range(N_MULE), 300)
        args = []
        for i in sample:
            args += ["HAMR", "M%d" % i]
        reps = admin.ok("MCHECK", *args)
        for i, rep in zip(sample, reps):
            d = todict(rep)
            acct = "M%d" % i
            if acct in model:
                self.assertEqual(d["verdict"], "LISTED", acct)
                self.assertEqual(d["lists"], ["mule"], acct)
                self.assertEqual(d["score"], check_score(acct), acct)
            else:
                self.assertEqual(d["verdict"], "CLEAR", acct)
        admin.close()
        self.assertEqual(gw.stop(), 0, gw.log()[-3000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
