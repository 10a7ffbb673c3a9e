"""Redis refuses writes (issue 15 item 6; SPEC §6, §9): nothing handed to the redis_streams
plugin is dropped, and pending instructions still go OVERDUE.

  RefusedAfterRestart  Redis SHUTDOWN SAVE'd and restarted under a pipelined STOP load; it
                       answers -LOADING while it reads its dump: every acknowledged order is
                       delivered (its instruction_id in the stream) and answered by the
                       reference consumer, none stays ACCEPTED
  RefusedOOM           maxmemory 1mb + noeviction: every XADD gets -OOM while orders are
                       acknowledged; refusals counted and logged (rate-limited); CONFIG SET
                       maxmemory 0: all delivered, once each, and answered
  OverdueUndelivered   Redis down longer than bank_deadline_ms: the orders the plugin could not
                       hand over are OVERDUE (STATUS, stopgate_bank_overdue), then delivered and
                       answered when it is back

The bank deadline is 60 s in the first two, so the bank gets the instructions through the
plugin's own retries, not through the gateway's OVERDUE re-sends. Needs redis-server and the
reference consumer as test_redis_streams.py does (its helpers are reused).
"""
import threading
import time

import sgtest
from sgtest import RespError, todict, wait_until
from test_redis_streams import RB, RedisCase

REFUSED = 'stopgate_plugin_xadd_refused_total{plugin="rbank"}'


class _Refusals(RedisCase):
    CONSUMER = {}
    GATEWAY = {"bank_deadline_ms": "60000"}

    def stops(self, n, prefix):
        t = tag = "%s%d" % (prefix, time.time_ns() // 1000 % 10 ** 9)
        return [["STOP", "%s-%d" % (tag, i), "BANK", RB, "ACCOUNT", "%s%05dX" % (t, i), "CASE", "RF-" + t,
                 "AMOUNT", "700"] for i in range(n)]

    def assert_delivered_and_answered(self, c, oids, timeout=30):
        got = self.wait_states(c, oids, "CONFIRMED", timeout=timeout)
        self.assertTrue(all(d["frozen"] == 700 for d in got.values()))
        by = self.entries_by_order()
        missing = [o for o in oids if o not in by]
        self.assertEqual(missing, [], "%d acknowledged orders never reached the stream" % len(missing))
        for o in oids:
            self.assertEqual(len({f["instruction_id"] for _, f in by[o]}), 1, "%s under several ids" % o)
        return by


class RefusedAfterRestart(_Refusals):
    def test_loading_after_restart_under_load(self):
        gw = self.gw
        acked, errors = [], []
        stop = threading.Event()

        def load():
            try:
                with gw.client("alice") as c:
                    while not stop.is_set():
                        for rep in c.pipeline(self.stops(20, "LR")):
                            d = todict(rep)
                            if d.get("status") != "ACCEPTED":
                                errors.append(d)
                            acked.append(d["order_id"])
                        time.sleep(0.01)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        th = threading.Thread(target=load, daemon=True)
        th.start()
        try:
            time.sleep(0.5)
            # Enough keys that the restarted Redis answers -LOADING for a couple of seconds.
            with self.rc() as r:
                for i in range(0, 20000, 2000):
                    r.pipeline([["SET", "filler:%d" % k, "x"] for k in range(i, i + 2000)])
            self.redis.shutdown_save()
            time.sleep(0.3)
            self.redis.start(extra=["--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"],
                             wait=False)

            def loaded():
                try:
                    with self.rc() as r:
                        return "loading:0" in r.call("INFO", "persistence")
                except (OSError, sgtest.Closed):
                    return False
            wait_until(loaded, timeout=30, interval=0.05, what="redis to finish loading its dump")
            time.sleep(0.5)
        finally:
            stop.set()
            th.join(15)
        self.assertEqual(errors, [])
        self.assertGreater(len(acked), 200)
        # The plugin met -LOADING (the case this test is about), and said so.
        self.assertGreater(self.metric(REFUSED), 0, "no XADD was refused: Redis never answered LOADING")
        self.assertIn("LOADING", gw.log())
        with gw.client("alice") as c:
            self.assert_delivered_and_answered(c, acked)
        self.assert_nothing_pending()


class RefusedOOM(_Refusals):
    def test_oom_then_lifted(self):
        gw = self.gw
        with self.rc() as r:
            self.assertEqual(r.call("SET", "filler", "x" * 400000), "OK")  # above 1mb in use from here on
            r.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
            r.call("CONFIG", "SET", "maxmemory", "1mb")
            probe = r.call("XADD", "probe", "*", "a", "b")
            self.assertIsInstance(probe, RespError)
            self.assertIn("OOM", probe.line)
        log_off = len(gw.log())
        with gw.client("alice") as c:
            reps = c.pipeline(self.stops(500, "OM"))
            self.assertEqual({todict(x)["status"] for x in reps}, {"ACCEPTED"})
            oids = [todict(x)["order_id"] for x in reps]
            wait_until(lambda: self.metric(REFUSED) >= 500, timeout=10, what="500 refused XADDs counted")
            time.sleep(1.5)  # several back-off rounds
            states = {todict(x)["state"] for x in c.pipeline([["STATUS", o] for o in oids])}
            self.assertEqual(states, {"ACCEPTED"}, "not delivered, so not SENT")
            self.assertEqual([o for o in oids if o in self.entries_by_order()], [])
            lines = [l for l in gw.log()[log_off:].splitlines() if "refused" in l]
            self.assertTrue(any("OOM" in l for l in lines), "\n".join(lines))
            self.assertLessEqual(len(lines), 3, "refusals must be logged rate-limited:\n" + "\n".join(lines))
            self.assertGreater(self.metric('stopgate_plugin_queued{plugin="rbank"}'), 0)
            with self.rc() as r:
                r.call("CONFIG", "SET", "maxmemory", "0")
            t0 = time.monotonic()
            self.assert_delivered_and_answered(c, oids, timeout=20)
            print("500 orders refused with OOM: all CONFIRMED %.2fs after maxmemory was lifted" % (
                time.monotonic() - t0))
        self.assertIn("accepts writes again", gw.log())
        self.assertEqual(self.metric('stopgate_plugin_queued{plugin="rbank"}'), 0)
        self.assert_nothing_pending()


class OverdueUndelivered(RedisCase):
    CONSUMER = {}
    GATEWAY = {"bank_deadline_ms": "1000"}

    def test_overdue_while_redis_down(self):
        gw = self.gw
        self.redis.kill9()
        with gw.client("alice") as c:
            t = "%d" % (time.time_ns() // 1000 % 10 ** 9)
            reps = c.pipeline([["STOP", "od-%s-%d" % (t, i), "BANK", RB, "ACCOUNT", "OD%s%03dX" % (t, i), "CASE",
                                "OD-" + t, "AMOUNT", "900"] for i in range(50)])
            oids = [todict(x)["order_id"] for x in reps]
            self.assertEqual({todict(x)["status"] for x in reps}, {"ACCEPTED"})
            overdue = 'stopgate_bank_overdue{bank="%s"}' % RB
            wait_until(lambda: self.metric(overdue) >= 50, timeout=5,
                       what="50 undelivered orders counted in %s" % overdue)
            for o in oids:
                st = self.status(c, o)
                self.assertEqual(st["state"], "OVERDUE", st)
                self.assertNotIn("sent_at", st)
                self.assertGreaterEqual(st["overdue_at"], st["accepted_at"] + 1000)
            self.assertIn("not yet delivered", gw.log())
            self.redis.start()
            got = self.wait_states(c, oids, "CONFIRMED", timeout=20)
            self.assertTrue(all(d["frozen"] == 900 for d in got.values()))
            wait_until(lambda: self.metric(overdue) == 0, timeout=5, what="%s back to 0" % overdue)


if __name__ == "__main__":
    sgtest.main()
