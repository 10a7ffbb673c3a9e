"""Admission and AUTH under attack (issue 15 items 1, 2, 11).

- Wrong-AUTH floods (1,000 AUTHs pipelined on one connection, and over many connections) while
  an authenticated client (a process of its own) measures its PING/CHECK round trips:
  Argon2id runs on worker threads, so the worst stall stays far below the ~65 ms per AUTH the
  loop used to pay (printed as "worst stall" and p99, quoted in docs/operations.md). The
  flood's connections close with verifications queued: those are cancelled, so the queue
  drains in about one KDF.
- Unknown agent names cost the same KDF as known ones (timing ratio in a wide band), and UDP
  HELLO answers unknown agent ids like known ones (stable fake salt).
- The per-address failure limiter answers WRONGPASS at once (no KDF), counts in
  stopgate_auth_rate_limited_total, and the failure log is rate-limited.
- Before AUTH: the small input cap (ERR TOOBIG, close), the AUTH deadline (a slowloris that
  sends one byte a second is closed), the per-address connection cap.
- kill -9 with established connections on every listener, then an immediate restart on the
  same ports, several times (item 11).
"""
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import unittest

import sgtest
from sgtest import Client, Gateway, GatewayCase, RespError, todict, wait_until

# Generous: on the shared 2-core test box (load 12-20) a probe with no flood at all already
# sees 45-50 ms worst round trips. The old code stalled for the whole flood (65 ms per AUTH).
STALL_BOUND_S = 1.0
PROBE_TIMEOUT_S = 5.0
HERE = os.path.dirname(os.path.abspath(__file__))


_PROBE_CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from sgtest import Client, todict
c = Client(int(sys.argv[2]), timeout=float(sys.argv[4]))
c.auth("alice", sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", flush=True)
rtts, err, i = [], None, 0
try:
    while not stop.is_set():
        t0 = time.monotonic()
        if i % 2:
            r = c.call("PING")
            assert r == "PONG", r
        else:
            r = c.call("CHECK", "SGTB", "PROBE%04dX" % (i % 1000))
            assert todict(r)["verdict"] == "CLEAR", r
        rtts.append(time.monotonic() - t0)
        i += 1
        time.sleep(0.002)
except Exception as e:  # a timeout is a stall of at least the timeout
    err = repr(e)
    rtts.append(float(sys.argv[4]))
rtts.sort()
print(json.dumps({"worst": rtts[-1] if rtts else 0.0, "n": len(rtts), "error": err,
                  "p99": rtts[int(len(rtts) * 0.99)] if rtts else 0.0}), flush=True)
"""


class Prober(object):
    """An authenticated client doing PING and CHECK back to back (2 ms apart); keeps the worst
    round trip. It runs in a process of its own: as a thread beside the flooding client it
    measured that client's Python (the GIL is handed over every 5 ms), not the gateway."""

    def __init__(self, gw):
        self.p = subprocess.Popen([sys.executable, "-c", _PROBE_CHILD, HERE, str(gw.port), gw.secret("alice"),
                                   str(PROBE_TIMEOUT_S)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.worst, self.p99, self.n, self.error = 0.0, 0.0, 0, None

    def start(self):
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError("the probing client did not start: %r" % line)

    def finish(self):
        self.p.stdin.close()
        out = self.p.stdout.read()
        self.p.wait(timeout=PROBE_TIMEOUT_S + 10)
        self.p.stdout.close()
        r = json.loads(out.strip().splitlines()[-1])
        self.worst, self.p99, self.n, self.error = r["worst"], r["p99"], r["n"], r["error"]
        return self.worst


class ClientFrom(Client):
    """A client whose connection comes from another loopback address (the limiter and the
    per-address cap count 127.0.0.1, where the floods come from)."""

    def __init__(self, port, src, timeout=15.0):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf, self.pos, self.proto = s, bytearray(), 0, 2


def wrong_auths(n, name="alice", tag=""):
    """n AUTHs with n different wrong secrets (distinct per tag: repeats of one guess in
    flight share one KDF, see authq.h)."""
    return b"".join(sgtest.encode("AUTH", name, "wrong-%s-%d" % (tag, i)) for i in range(n))


def read_replies(c, n, deadline):
    out = []
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        out.append(c.read())
    return out


def metric(gw, name):
    return gw.metrics().get(name, 0)


class PipelinedFlood(GatewayCase):
    """1,000 wrong AUTHs in one write on one connection, the limiter on (10 KDFs, then refused
    at once; the AUTH deadline is pushed out: on a loaded box those KDFs may take seconds)."""

    GW_ARGS = dict(gateway={"auth_timeout": "60", "auth_fail_limit": "10"})

    def test_pipelined_flood_does_not_stall_others(self):
        p = Prober(self.gw)
        p.start()
        time.sleep(0.2)
        with Client(self.gw.port, timeout=60) as f:
            f.send_raw(wrong_auths(1000))
            replies = read_replies(f, 1000, time.monotonic() + 50)
        worst = p.finish()
        print("pipelined flood: %d answers, worst stall %.1f ms (p99 %.1f ms) over %d probes"
              % (len(replies), worst * 1e3, p.p99 * 1e3, p.n))
        self.assertIsNone(p.error, "the probing client timed out: the loop stalled")
        self.assertEqual(len(replies), 1000)
        self.assertTrue(all(isinstance(r, RespError) and r.code == "WRONGPASS" for r in replies), replies[:3])
        self.assertLess(worst, STALL_BOUND_S, "worst PING/CHECK stall %.1f ms during the flood" % (worst * 1e3))
        self.assertGreaterEqual(metric(self.gw, "stopgate_auth_failures_total"), 1000)
        self.assertGreater(metric(self.gw, "stopgate_auth_rate_limited_total"), 900)
        # The failure log names the address and does not write 1,000 lines.
        wait_until(lambda: "not logged one by one" in self.gw.log() or "suppressed" in self.gw.log(),
                   timeout=5, what="the count of suppressed log lines")
        log = self.gw.log()
        lines = [l for l in log.splitlines() if "auth failed" in l]
        self.assertIn("from 127.0.0.1:", log)
        self.assertLess(len(lines), 200, "one log line per failure in a flood")
        # 127.0.0.1 is now over its limit (even a right secret is refused there); others are not.
        with Client(self.gw.port) as c:
            self.assertErr(c.call("AUTH", "alice", self.gw.secret("alice")), "WRONGPASS")
        with ClientFrom(self.gw.port, "127.0.0.5") as c:
            self.assertEqual(c.call("AUTH", "alice", self.gw.secret("alice")), "OK")
            self.assertEqual(c.call("PING"), "PONG")


class ManyConnectionFlood(GatewayCase):
    """1,000 wrong AUTHs over 100 connections, the limiter off: every AUTH costs a KDF, the
    queue fills (ERR BUSY), clients close with verifications in flight."""

    GW_ARGS = dict(gateway={"auth_fail_limit": "0", "auth_timeout": "30"})

    def test_many_connection_flood(self):
        p = Prober(self.gw)
        p.start()
        time.sleep(0.2)
        conns = [Client(self.gw.port, timeout=30) for _ in range(100)]
        for i, c in enumerate(conns):
            c.send_raw(wrong_auths(10, name="alice" if i % 2 else "nobody", tag=str(i)))
        answers = {"WRONGPASS": 0, "ERR BUSY": 0}
        lock = threading.Lock()

        def reader(c):
            for _ in range(10):
                try:
                    r = c.read()
                except Exception:
                    return
                with lock:
                    answers[r.code] = answers.get(r.code, 0) + 1

        readers = [threading.Thread(target=reader, args=(c,), daemon=True) for c in conns]
        for t in readers:
            t.start()
        time.sleep(6)  # the flood goes on; the probe keeps measuring
        worst = p.finish()
        for c in conns:  # closed with verifications still queued and running
            try:
                c.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv, sends FIN
            except OSError:
                pass
            c.close()
        print("many-connection flood: answers %s in 6 s, worst stall %.1f ms (p99 %.1f ms) over %d probes"
              % (answers, worst * 1e3, p.p99 * 1e3, p.n))
        self.assertIsNone(p.error, "the probing client timed out: the loop stalled")
        self.assertLess(worst, STALL_BOUND_S, "worst PING/CHECK stall %.1f ms during the flood" % (worst * 1e3))
        self.assertGreater(answers["ERR BUSY"], 0, "the bounded queue never refused: %r" % answers)
        self.assertGreater(answers["WRONGPASS"], 0, answers)
        self.assertEqual(set(answers), {"WRONGPASS", "ERR BUSY"}, answers)
        self.assertGreater(metric(self.gw, "stopgate_auth_busy_total"), 0)
        # The closed clients' queued verifications are cancelled (their close is seen while the
        # AUTH is pending), so the queue drains in about one KDF (the one running), not in the
        # ~64 KDFs it holds: bounded by 8 KDF times as this run measured them (6 s / answers).
        t0 = time.monotonic()
        wait_until(lambda: metric(self.gw, "stopgate_auth_queue") == 0, timeout=60, what="auth queue drained")
        drained, kdf = time.monotonic() - t0, 6.0 / max(answers["WRONGPASS"], 1)
        print("auth queue drained %.2f s after the flood's connections closed (one KDF ~%.2f s)" % (drained, kdf))
        self.assertLess(drained, max(2.0, 8 * kdf), "queued KDFs of closed clients were not cancelled")
        self.assertServing()
        with Client(self.gw.port) as c:
            self.assertEqual(c.call("AUTH", "sam", self.gw.secret("sam")), "OK")


class Timing(GatewayCase):
    GW_ARGS = dict(gateway={"auth_fail_limit": "0"})

    def time_auth(self, name, secret):
        with Client(self.gw.port) as c:
            t0 = time.monotonic()
            r = c.call("AUTH", name, secret)
            dt = time.monotonic() - t0
        self.assertErr(r, "WRONGPASS")
        return dt

    def test_unknown_name_costs_the_same(self):
        known, unknown = [], []
        for i in range(4):
            known.append(self.time_auth("alice", "wrong-%d" % i))
            unknown.append(self.time_auth("nobody%d" % i, "wrong-%d" % i))
        k, u = statistics.median(known), statistics.median(unknown)
        print("AUTH timing: known name %.1f ms, unknown name %.1f ms (medians)" % (k * 1e3, u * 1e3))
        self.assertGreater(k, 0.005, "a known name's wrong AUTH did not run the KDF?")
        self.assertTrue(0.4 < u / k < 2.5, "unknown %.2f ms vs known %.2f ms" % (u * 1e3, k * 1e3))

    def test_hello_auth_unknown_same_answer(self):
        with Client(self.gw.port) as c:
            a = c.call("HELLO", "3", "AUTH", "nobody", "x")
            b = c.call("HELLO", "3", "AUTH", "alice", "x")
        self.assertErr(a, "WRONGPASS")
        self.assertEqual(a.line, b.line)

    def test_answers_stay_in_order(self):
        """A pipeline after an AUTH waits for it: PING, AUTH (slow), PING come back in order."""
        with Client(self.gw.port) as c:
            c.send_raw(sgtest.encode("PING", "a") + sgtest.encode("AUTH", "alice", self.gw.secret("alice"))
                       + sgtest.encode("CHECK", "SGTB", "ORDER0001X") + sgtest.encode("PING", "b"))
            self.assertEqual(c.read(), "a")
            self.assertEqual(c.read(), "OK")
            self.assertEqual(todict(c.read())["verdict"], "CLEAR")  # ran as alice, after the AUTH
            self.assertEqual(c.read(), "b")

    def hello_udp(self, agent_id):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        try:
            hdr = struct.pack("<HBBIQIHHH6s", 0x4753, 1, 0, agent_id, 7, 0, 1, 32 + 1 + 16, 0, b"")
            s.sendto(hdr + b"\x04" + b"\0" * 16, ("127.0.0.1", self.gw.udp_port))
            d, _ = s.recvfrom(9000)
        finally:
            s.close()
        self.assertEqual(d[32], 0x84, d[:40])
        ops, mem = struct.unpack_from("<QQ", d, 32 + 8)
        return ops, mem, d[32 + 24:32 + 40]

    def test_udp_hello_unknown_agent_answered(self):
        ops, mem, salt = self.hello_udp(0x12345678)
        ops2, mem2, salt2 = self.hello_udp(0x12345678)
        _, _, salt3 = self.hello_udp(0x12345679)
        self.assertEqual(salt, salt2, "a fake salt must be stable for an id")
        self.assertNotEqual(salt, salt3)
        # The same Argon2 limits as a real agent's stored hash.
        real = sgtest.hash_secret("alice-s3cret").split("$")
        self.assertEqual((ops, mem), (int(real[2]), int(real[3])))


class Limiter(GatewayCase):
    # auth_timeout pushed out: the test's one connection makes 3 KDFs, seconds on a loaded box.
    GW_ARGS = dict(gateway={"auth_fail_limit": "3", "auth_fail_window": "60", "auth_timeout": "60"})

    def test_limiter_answers_at_once(self):
        with Client(self.gw.port) as c:
            slow = []
            for i in range(3):
                t0 = time.monotonic()
                self.assertErr(c.call("AUTH", "alice", "bad-%d" % i), "WRONGPASS")
                slow.append(time.monotonic() - t0)
            fast = []
            for i in range(5):
                t0 = time.monotonic()
                self.assertErr(c.call("AUTH", "alice", "bad-x%d" % i), "WRONGPASS")
                fast.append(time.monotonic() - t0)
            # Over the limit even the right secret is refused (no KDF is run at all).
            self.assertErr(c.call("AUTH", "alice", self.gw.secret("alice")), "WRONGPASS")
        print("limiter: KDF answers %.1f ms, limited answers %.2f ms (medians)"
              % (statistics.median(slow) * 1e3, statistics.median(fast) * 1e3))
        self.assertLess(statistics.median(fast), statistics.median(slow) / 4)
        m = self.gw.metrics()
        self.assertGreaterEqual(m.get("stopgate_auth_rate_limited_total", 0), 6)
        self.assertGreaterEqual(m.get("stopgate_auth_failures_total", 0), 9)
        self.assertIn("too many failures from this address", self.gw.log())


class PreAuth(GatewayCase):
    GW_ARGS = dict(gateway={"auth_timeout": "2", "max_clients_per_address": "8"})

    def test_preauth_input_cap(self):
        with Client(self.gw.port) as c:
            c.send_raw(b"*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$9000\r\n" + b"x" * 6000)
            r = c.read()
            self.assertErr(r, "ERR TOOBIG")
            self.assertTrue(c.is_closed())
        self.assertGreaterEqual(self.gw.metrics().get("stopgate_connections_preauth_toobig_total", 0), 1)
        # After AUTH the full query buffer is there: a 100 KB argument is fine.
        with self.gw.client("alice") as c:
            self.assertEqual(len(c.call("PING", "y" * 100000)), 100000)

    def test_slowloris_closed_at_auth_deadline(self):
        s = socket.create_connection(("127.0.0.1", self.gw.port))
        try:
            t0 = time.monotonic()
            closed_after = None
            payload = b"PING\r\n" * 10
            for i in range(len(payload)):
                try:
                    s.sendall(payload[i:i + 1])
                except OSError:
                    closed_after = time.monotonic() - t0
                    break
                s.settimeout(0.5)
                try:
                    d = s.recv(4096)
                    if d == b"":
                        closed_after = time.monotonic() - t0
                        break
                except socket.timeout:
                    pass
                time.sleep(0.5)  # with the recv wait: about one byte a second
            self.assertIsNotNone(closed_after, "a client trickling bytes without AUTH was never closed")
            self.assertLess(closed_after, 2 + 2.5)
        finally:
            s.close()
        self.assertGreaterEqual(self.gw.metrics().get("stopgate_connections_auth_deadline_closed_total", 0), 1)

    def test_authenticated_outlives_deadline(self):
        with self.gw.client("alice") as c:
            time.sleep(3.5)
            self.assertEqual(c.call("PING"), "PONG")

    def test_per_address_cap(self):
        held = [Client(self.gw.port) for _ in range(8)]
        try:
            for c in held:
                self.assertEqual(c.call("PING"), "PONG")
            with Client(self.gw.port) as extra:
                r = extra.read()
                self.assertErr(r, "ERR BUSY")
                self.assertIn("address", r.reason)
            # Another loopback address is not affected.
            with ClientFrom(self.gw.port, "127.0.0.2") as other:
                self.assertEqual(other.call("PING"), "PONG")
        finally:
            for c in held:
                c.close()
        wait_until(lambda: self.gw.metrics().get("stopgate_connections_open", 99) <= 1, what="connections closed")
        with Client(self.gw.port) as c:
            self.assertEqual(c.call("PING"), "PONG")
        self.assertGreaterEqual(self.gw.metrics().get("stopgate_connections_address_refused_total", 0), 1)


class AnonymousCheckDeadline(GatewayCase):
    GW_ARGS = dict(gateway={"allow_anonymous_check": "yes", "auth_timeout": "2"})

    def test_anonymous_checker_kept_idle_one_closed(self):
        with Client(self.gw.port) as checker, Client(self.gw.port) as pinger:
            self.assertEqual(todict(checker.ok("CHECK", "SGTB", "ANON0001X"))["verdict"], "CLEAR")
            self.assertEqual(pinger.call("PING"), "PONG")
            time.sleep(3.5)
            self.assertEqual(todict(checker.ok("CHECK", "SGTB", "ANON0002X"))["verdict"], "CLEAR")
            self.assertTrue(pinger.is_closed())


class RestartAfterKill(GatewayCase):
    """Item 11: kill -9 with connections established on every listener, restart at once.

    The harness normally waits for the ports to be free before a restart (sgtest._spawn); this
    test starts stopgated right away, as systemd's Restart= or an operator would. prefault =
    no makes the new process reach its first bind within a few ms, as a small gateway does."""

    GW_ARGS = dict(gateway={"prefault": "no"})

    def test_kill9_restart_same_ports(self):
        gw = self.gw
        for cycle in range(4):
            held = [gw.client("alice")] + [Client(gw.port) for _ in range(100)]
            ms = []
            for _ in range(10):
                m = socket.create_connection(("127.0.0.1", gw.metrics_port))
                m.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # unfinished: a receive stays armed
                ms.append(m)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.connect(("127.0.0.1", gw.udp_port))
            u.send(b"x" * 10)
            # Killed under load, as in the incident: journal writes and fsyncs in flight.
            held[0].send_raw(b"".join(sgtest.encode("STOP", "rk-%d-%d-%d" % (os.getpid(), cycle, i), "BANK", "SGTB",
                                                    "ACCOUNT", "RK%d%05dX" % (cycle, i), "CASE", "RK")
                                      for i in range(3000)))
            time.sleep(0.05)
            gw.kill9()
            starts, gw.starts = gw.starts, 0  # no wait for the ports (see the docstring)
            try:
                gw.start()
            except sgtest.StartError as e:
                self.fail("cycle %d: restart right after kill -9 failed:\n%s" % (cycle, e.log))
            finally:
                gw.starts += starts
                for c in held + ms + [u]:
                    c.close()
            self.assertServing()

    def test_port_still_held_for_a_moment(self):
        """Deterministic form of the race: a listening socket (what a killed gateway's lingering
        io_uring holds) occupies the metrics and RESP ports for 2 s after the start."""
        gw = self.gw
        gw.kill9()
        holders = []
        for port in (gw.metrics_port, gw.port):
            h = socket.socket()
            h.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            wait_until(lambda: not sgtest.port_in_use(port), timeout=5, what="port %d free" % port)
            h.bind(("127.0.0.1", port))
            h.listen(1)
            holders.append(h)
        threading.Timer(2.0, lambda: [h.close() for h in holders]).start()
        starts, gw.starts = gw.starts, 0
        try:
            gw.start()
        except sgtest.StartError as e:
            self.fail("start while the port was held for 2 s failed:\n%s" % e.log)
        finally:
            gw.starts += starts
        self.assertServing()


class OperatorNice(unittest.TestCase):
    """The loop asks for short scheduler slices and the KDF workers for SCHED_BATCH
    (sched_setattr), but the nice value the gateway was started with (nice, systemd Nice=)
    stays on every thread: sched_setattr() would reset it to 0 if not told otherwise."""

    def test_nice_kept_on_every_thread(self):
        gw = sgtest.track(Gateway(name="nice"))
        gw.argv_prefix = ["nice", "-n", "7"]
        gw.start()
        try:
            tids = os.listdir("/proc/%d/task" % gw.proc.pid)
            self.assertGreater(len(tids), 1, "the KDF workers are threads of their own")
            for tid in tids:
                with open("/proc/%d/task/%s/stat" % (gw.proc.pid, tid)) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                # stat(5): field 19 is nice, field 41 the policy (0 OTHER, 3 BATCH); after the
                # "comm)" split, field n is fields[n - 3].
                self.assertEqual(int(fields[19 - 3]), 7, "thread %s lost the operator's nice" % tid)
                self.assertIn(int(fields[41 - 3]), (0, 3), "thread %s policy" % tid)
            c = sgtest.Client(gw.port)
            self.assertEqual(c.call("PING"), "PONG")
            c.close()
        finally:
            gw.close()


if __name__ == "__main__":
    sgtest.main()
