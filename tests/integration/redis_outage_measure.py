#!/usr/bin/env python3
"""Measure how fast the redis_streams plugin catches up after a Redis outage (issue 15 item 6;
docs/operations.md "Redis outage"). Not part of the meson suite: a 30 s outage takes ~45 s.

A gateway routes bank RDB to redis_streams (plugin defaults: reconnect_max_ms 1000), the
reference consumer answers it, and a client sends STOPs at --rate per second throughout.
Redis goes away for --outage seconds, then comes back:

  --mode kill     kill -9, and an empty Redis on the same port (the streams are lost: the
                  consumer group is created again, every undelivered instruction re-sent);
  --mode restart  SHUTDOWN SAVE with --filler keys, and a restart that answers -LOADING
                  while it reads them back (--key-load-delay), so the first XADDs are refused.

Prints the time from Redis's return (it answers PING, and has finished loading) until every
order acknowledged while it was away is in the instruction stream ("delivered"), and until
the consumer's answers have made them all CONFIRMED ("answered").

  build:  meson setup build && ninja -C build
  run:    cd tests/integration && STOPGATED=../../build/gateway/stopgated \\
          BANK_CONSUMER=../../build/ops/stopgate-bank-consumer \\
          /usr/bin/python3 redis_outage_measure.py --outage 30 --rate 400 --mode kill
"""
import argparse
import sys
import threading
import time

import sgtest
from sgtest import HOST, todict
from test_redis_streams import RB, BankConsumer, Redis, instr_stream, redis_pairs


def sections(redis_port):
    return "\n".join([
        "[plugin rbank]", "type = redis_streams", "host = %s" % HOST, "port = %d" % redis_port,
        "[plugin sim]", "latency_us = 200",
        "[route %s]" % RB, "plugin = rbank", "[route default]", "plugin = sim", ""])


class Load(threading.Thread):
    """STOPs at a fixed rate, in pipelines of 20; remembers when each was acknowledged."""

    def __init__(self, gw, rate):
        super().__init__(daemon=True)
        self.gw, self.rate = gw, rate
        self.acked = []  # (monotonic time, order id)
        self.errors = []
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        t = "%d" % (time.time_ns() // 1000 % 10 ** 9)
        seq, batch = 0, 20
        next_t = time.monotonic()
        try:
            with self.gw.client("alice") as c:
                while not self.stop_flag.is_set():
                    cmds = []
                    for _ in range(batch):
                        seq += 1
                        cmds.append(["STOP", "om-%s-%d" % (t, seq), "BANK", RB, "ACCOUNT", "OM%s%06dX" % (t, seq),
                                     "CASE", "OM-" + t, "AMOUNT", "100"])
                    reps = c.pipeline(cmds)
                    now = time.monotonic()
                    with self.lock:
                        for r in reps:
                            d = todict(r)
                            if d.get("status") != "ACCEPTED":
                                self.errors.append(d)
                            else:
                                self.acked.append((now, d["order_id"]))
                    next_t += batch / self.rate
                    time.sleep(max(0.0, next_t - time.monotonic()))
        except Exception as e:  # noqa: BLE001 - reported by main
            self.errors.append(repr(e))

    def acked_before(self, t):
        with self.lock:
            return {o for at, o in self.acked if at <= t}


def wait_redis_ready(redis, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with redis.client(timeout=2) as r:
                if "loading:0" in r.call("INFO", "persistence") and r.call("PING") == "PONG":
                    return time.monotonic()
        except (OSError, sgtest.Closed, ValueError):
            pass
        time.sleep(0.01)
    raise RuntimeError("redis not ready after %ds" % timeout)


def wait_plugin_empty(gw, timeout):
    """Until the plugin holds nothing Redis has not taken (stopgate_plugin_queued == 0): the
    moment every instruction it was handed is delivered. Cheap to poll, unlike the stream."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gw.metrics().get('stopgate_plugin_queued{plugin="rbank"}', 1) == 0:
            return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError("the plugin still holds instructions after %ds" % timeout)


def wait_delivered(redis, want, timeout):
    """Poll the instruction stream incrementally until every order in want is in it."""
    seen, last = set(), "-"
    deadline = time.monotonic() + timeout
    with redis.client() as r:
        while time.monotonic() < deadline:
            rep = r.call("XRANGE", instr_stream(), last if last == "-" else "(" + last, "+", "COUNT", "10000")
            if isinstance(rep, list) and rep:
                for eid, kv in rep:
                    seen.add(redis_pairs(kv).get("order_id"))
                last = rep[-1][0]
                if want <= seen:
                    return time.monotonic()
                continue
            if want <= seen:
                return time.monotonic()
            time.sleep(0.01)
    raise RuntimeError("%d of %d orders not delivered after %ds" % (len(want - seen), len(want), timeout))


def wait_answered(gw, want, timeout):
    left = sorted(want)
    deadline = time.monotonic() + timeout
    with gw.client("alice") as c:
        while left:
            reps = c.pipeline([["STATUS", o] for o in left[:2000]])
            done = {o for o, r in zip(left, reps) if todict(r)["state"] == "CONFIRMED"}
            left = [o for o in left if o not in done]
            if left and time.monotonic() > deadline:
                raise RuntimeError("%d orders not CONFIRMED after %ds" % (len(left), timeout))
            if left and not done:
                time.sleep(0.02)
    return time.monotonic()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outage", type=float, default=30.0, help="seconds Redis is away")
    ap.add_argument("--rate", type=float, default=400.0, help="STOPs per second, throughout")
    ap.add_argument("--mode", choices=("kill", "restart"), default="kill")
    ap.add_argument("--filler", type=int, default=20000, help="restart: keys Redis must load back")
    a = ap.parse_args()
    redis = Redis(name="measure").start()
    consumer = BankConsumer(redis.port, [RB], name="measure-consumer").start()
    gw = sgtest.Gateway(name="redis-outage-measure", sections=sections(redis.port))
    gw.start()
    load = Load(gw, a.rate)
    try:
        load.start()
        time.sleep(2.0)
        if a.mode == "restart":
            with redis.client() as r:
                for i in range(0, a.filler, 2000):
                    r.pipeline([["SET", "filler:%d" % k, "x"] for k in range(i, min(i + 2000, a.filler))])
            redis.shutdown_save()
        else:
            redis.kill9()
        t_down = time.monotonic()
        time.sleep(a.outage)
        extra = ["--key-load-delay", "50", "--loading-process-events-interval-bytes", "1024"] \
            if a.mode == "restart" else []
        redis.start(extra=extra, wait=False)
        t_back = wait_redis_ready(redis)
        # What must reach the new stream: every order acknowledged while Redis was away (in
        # kill mode the old stream, with the orders answered before, is gone).
        want = load.acked_before(t_back) - load.acked_before(t_down)
        during = want
        t_empty = wait_plugin_empty(gw, timeout=120)
        t_deliv = wait_delivered(redis, want, timeout=120)
        t_ans = wait_answered(gw, want, timeout=120)
        load.stop_flag.set()
        load.join(10)
        if load.errors:
            print("load errors: %r" % load.errors[:3])
            return 1
        m = gw.metrics()
        refused = m.get('stopgate_plugin_xadd_refused_total{plugin="rbank"}', 0)
        print("mode %s: Redis away %.1fs (back %.1fs after it went, incl. loading); %d orders acknowledged while "
              "it was away; XADDs refused %d" % (a.mode, a.outage, t_back - t_down, len(during), refused),
              flush=True)
        print("plugin queue empty (every instruction taken by Redis) %.2fs after Redis's return; seen in the "
              "stream by this script's poller %.2fs after; all CONFIRMED %.2fs after" % (
                  t_empty - t_back, t_deliv - t_back, t_ans - t_back))
        return 0
    finally:
        load.stop_flag.set()
        gw.close()
        consumer.stop()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
