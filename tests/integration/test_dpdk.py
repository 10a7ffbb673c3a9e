"""The DPDK fast path on net_tap (issue 7 item 3, SPEC §4.3, docs/protocol.md "DPDK").

Everything happens inside a private network namespace made for this run (sgdpdk-<pid>): this
process enters it (setns), so the gateway it starts, the tap device DPDK creates (sgtap0),
the kernel side of that tap (10.77.0.1/24) and every client are in it; nothing touches the
host's interfaces. udp_probe talks to the DPDK port at 10.77.0.2 through the tap:

- HELLO, PING, CHECK verdicts equal to RESP CHECK and to kernel UDP for the same keys
  (LISTED / CLEAR / FROZEN / bad account), also for a 250-CHECK batch that is fragmented both
  ways at the tap's MTU of 1500;
- STOP accepted, then DUPLICATE, answered after durability, NOPERM for a screen agent;
- an auto_stop list hit seen on the lcore issues the STOP through the order side;
- bad MAC, replay, old epoch, unknown agent and garbage are dropped (or refused) and counted
  in /metrics (stopgate_dpdk_*), ARP and ICMP echo are answered;
- SIGTERM: exit 0, the tap is gone, no /var/run/dpdk directory left.

Needs root, /dev/net/tun and `ip netns`: without them the test FAILS, saying why (the test
machines have them; a silent skip would hide a missing fast path).
"""
import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

NS = "sgdpdk-%d" % os.getpid()
TAP = "sgtap0"
GW_IP, HOST_IP = "10.77.0.2", "10.77.0.1"
DPDK_PORT = 7390
CLONE_NEWNET = 0x40000000


def die(msg):
    sys.stderr.write("test_dpdk: FAIL: %s\n" % msg)
    sys.stdout.write("FAILED (test_dpdk: %s)\n" % msg)
    sys.exit(1)


def sh(*argv, check=True):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("%s -> %d: %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


# ---- the namespace (before sgtest: its free ports must be picked inside) -----------------------

if os.geteuid() != 0:
    die("needs root: it creates a network namespace and a TAP device (run ./ops/test as root)")
if not os.path.exists("/dev/net/tun") or not os.access("/dev/net/tun", os.R_OK | os.W_OK):
    die("/dev/net/tun is missing or not usable: the DPDK net_tap device needs it")
if not shutil.which("ip"):
    die("the `ip` command (iproute2) is missing: the test needs `ip netns`")
_p = subprocess.run(["ip", "netns", "add", NS], capture_output=True, text=True)
if _p.returncode != 0:
    die("`ip netns add %s` failed: %s" % (NS, _p.stderr.strip()))

_ns_deleted = [False]


def delete_ns():
    if not _ns_deleted[0]:
        _ns_deleted[0] = True
        subprocess.run(["ip", "netns", "delete", NS], capture_output=True)


atexit.register(delete_ns)  # runs after sgtest's cleanup (registered later, so first) has killed the gateway

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _fd = os.open("/var/run/netns/" + NS, os.O_RDONLY)
    if _libc.setns(_fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    os.close(_fd)
except OSError as e:
    delete_ns()
    die("cannot enter network namespace %s: %s" % (NS, e))
sh("ip", "link", "set", "lo", "up")

import sgtest  # noqa: E402  (after setns: its loopback ports are the namespace's)
from sgtest import GatewayCase, RespError, http_get, parse_metrics, todict, wait_until  # noqa: E402


def _on_signal(signo, frame):
    sgtest._cleanup()
    delete_ns()
    os._exit(128 + signo)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)

HERE = os.path.dirname(os.path.abspath(__file__))
UDP_PROBE = os.environ.get("UDP_PROBE") or os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "tests",
                                                        "integration", "udp_probe")
LCORES = "0-1" if (os.cpu_count() or 1) >= 2 else "0"  # one lcore: the gateway polls from a thread
EAL = "--no-huge -m 512 --no-pci --vdev=net_tap0,iface=%s -l %s --log-level=lib.eal:notice" % (TAP, LCORES)

AGENTS = dict(sgtest.DEFAULT_AGENTS)
V = {"CLEAR": 0, "LISTED": 1, "FROZEN": 2}


def probe(host, port, agent, secret, *steps, timeout=60):
    """udp_probe's replies, one dict per step (a step unanswered within 1 s: {'timeout': True})."""
    env = dict(os.environ)
    env["STOPGATE_SECRET"] = secret
    p = subprocess.run([UDP_PROBE, host, str(port), agent] + [str(s) for s in steps], capture_output=True,
                       text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError("udp_probe %s -> %d: %s" % (" ".join(map(str, steps)), p.returncode, p.stderr))
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def icmp_ping(host, timeout=3.0):
    """One ICMP echo: `ping -c1` when installed, else a raw socket. True when answered."""
    if shutil.which("ping"):
        return subprocess.run(["ping", "-c1", "-W%d" % int(timeout), host], capture_output=True).returncode == 0

    def cksum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        s = (s >> 16) + (s & 0xFFFF)
        s += s >> 16
        return ~s & 0xFFFF

    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        s.settimeout(timeout)
        ident, payload = os.getpid() & 0xFFFF, b"stopgate-dpdk-ping" * 3
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        s.sendto(struct.pack("!BBHHH", 8, 0, cksum(hdr + payload), ident, 1) + payload, (host, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d, addr = s.recvfrom(4096)
            ihl = (d[0] & 15) * 4
            t, _, _, i, _ = struct.unpack("!BBHHH", d[ihl:ihl + 8])
            if addr[0] == host and t == 0 and i == ident:
                return cksum(d[ihl:]) == 0 and d[ihl + 8:] == payload
        return False
    except socket.timeout:
        return False
    finally:
        s.close()


class Dpdk(GatewayCase):
    GW_ARGS = dict(
        gateway={"list_capacity": "65536", "prefault": "no", "max_orders": "65536"},
        sections=("[list mule]\nauto_stop = no\n\n[list suspect]\nauto_stop = no\n\n[list hot]\nauto_stop = yes\n\n"
                  "[dpdk]\nenabled = yes\neal = %s\nip = %s\nport = %d\n" % (EAL, GW_IP, DPDK_PORT)))

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(UDP_PROBE):
            raise AssertionError("udp_probe not built (%s); set UDP_PROBE" % UDP_PROBE)
        try:
            super().setUpClass()
        except sgtest.StartError as e:
            if "built without DPDK" in e.log:
                raise AssertionError("stopgated was built without DPDK (libdpdk-dev missing at build time): "
                                     "the DPDK fast path cannot be tested\n" + e.log)
            raise
        # The tap exists once the gateway is ready; its kernel side is ours to configure.
        wait_until(lambda: sh("ip", "link", "show", TAP, check=False).returncode == 0, timeout=10,
                   what="the tap device %s" % TAP)
        sh("ip", "addr", "add", HOST_IP + "/24", "dev", TAP)
        sh("ip", "link", "set", TAP, "up")
        cls.gw_pid = cls.gw.proc.pid
        cls.ops = cls.gw.client("olga")
        cls.alice = cls.gw.client("alice")

    @classmethod
    def tearDownClass(cls):
        for c in ("ops", "alice"):
            if getattr(cls, c, None):
                getattr(cls, c).close()
        pid = getattr(cls, "gw_pid", None)
        super().tearDownClass()  # SIGTERM, exit 0 required
        if pid is not None:
            # Clean shutdown: the port closed (the tap went with it), the EAL's runtime dir removed.
            gone = sh("ip", "link", "show", TAP, check=False).returncode != 0
            leftover = [d for d in os.listdir("/var/run/dpdk") if d == "stopgate-%d" % pid] \
                if os.path.isdir("/var/run/dpdk") else []
            if not gone or leftover:
                raise AssertionError("unclean DPDK shutdown: tap still there=%s, runtime dirs left=%s" %
                                     (not gone, leftover))
            log = cls.gw.log()
            if "dpdk: stopped:" not in log:
                raise AssertionError("no 'dpdk: stopped:' line in the log:\n" + cls.gw.log_tail())

    # -- helpers
    def dpdk(self, *steps, agent="alice"):
        return probe(GW_IP, DPDK_PORT, agent, AGENTS[agent][1], "hello", *steps)

    def kernel(self, *steps, agent="alice"):
        return probe(sgtest.HOST, self.gw.udp_port, agent, AGENTS[agent][1], "hello", *steps)

    def metrics(self):
        st, body = http_get(self.gw.metrics_port, "/metrics")
        self.assertEqual(st, 200)
        return parse_metrics(body)

    def assertReplyOk(self, r, n=None):
        self.assertNotIn("timeout", r, "no answer from the DPDK port")
        self.assertTrue(r["mac_ok"], r)
        self.assertTrue(r["reply_ok"], r)
        self.assertEqual(r["status"], 0, r)
        if n is not None:
            self.assertEqual(len(r["replies"]), n, r)

    # -- tests
    def test_01_hello_ping(self):
        out = self.dpdk("ping")
        self.assertEqual(out[0]["replies"][0]["type"], 0x84)
        self.assertNotEqual(out[0]["epoch"], 0)
        self.assertReplyOk(out[1], 1)
        self.assertEqual(out[1]["replies"][0]["type"], 0x83)
        # Its own epoch: a frame signed for kernel UDP is not valid here.
        k = self.kernel("ping")
        self.assertNotEqual(k[0]["epoch"], out[0]["epoch"])

    def test_02_check_equals_resp(self):
        tag = "%d" % (os.getpid() % 100000)
        self.ops.ok("LIST.ADD", "mule", "DPB1", "MULE%s01" % tag, "SCORE", "70")
        self.ops.ok("LIST.ADD", "mule", "DPB1", "BOTH%s02" % tag, "SCORE", "40")
        self.ops.ok("LIST.ADD", "suspect", "DPB1", "BOTH%s02" % tag, "SCORE", "90")
        self.stop_ok(self.alice, "FRZ%s03" % tag, bank="DPB1")
        keys = [("DPB1", "MULE%s01" % tag), ("dpb1", "both%s02" % tag), ("DPB1", "CLEAR%s04" % tag),
                ("DPB1", "FRZ%s03" % tag), ("DPB1", "MU-LE%s01" % tag), ("DPB1", "BAD_%s" % tag)]
        batch = ",".join("%s %s" % k for k in keys)
        d = self.dpdk("check", batch)[1]
        self.assertReplyOk(d, len(keys))
        kern = self.kernel("check", batch)[1]
        self.assertReplyOk(kern, len(keys))
        for (bank, acct), rd, rk in zip(keys, d["replies"], kern["replies"]):
            self.assertEqual(rd["type"], 0x81)
            resp = self.alice.call("CHECK", bank, acct)
            if isinstance(resp, RespError):
                self.assertEqual(resp.code, "ERR BADACCOUNT")
                self.assertEqual(rd["err"], 1, (acct, rd))
            else:
                r = todict(resp)
                self.assertEqual(rd["err"], 0, (acct, rd))
                self.assertEqual(rd["code"], V[r["verdict"]], (acct, rd, r))
                self.assertEqual(rd["score"], int(r["score"]), (acct, rd, r))
                self.assertEqual(bin(rd["mask"]).count("1"), len(r["lists"] or []), (acct, rd, r))
                # FROZEN on this path carries no order number (docs/protocol.md "DPDK").
                self.assertEqual(rd["order_no"], 0)
            # Same as kernel UDP, but for the FROZEN order number.
            self.assertEqual({k: v for k, v in rd.items() if k != "order_no"},
                             {k: v for k, v in rk.items() if k != "order_no"}, acct)
        self.assertEqual([r["code"] for r in d["replies"][:5]], [1, 1, 0, 2, 1])

    def test_03_big_batch_fragmented(self):
        tag = "%d" % (os.getpid() % 100000)
        for i in range(0, 250, 10):
            self.ops.ok("LIST.ADD", "suspect", "BIGB", "BIG%s%05d" % (tag, i), "SCORE", str(i % 100))
        batch = ",".join("BIGB BIG%s%05d" % (tag, i) for i in range(250))  # ~4 KB in, ~6 KB out
        m0 = self.metrics()
        d = self.dpdk("check", batch)[1]
        self.assertReplyOk(d, 250)
        k = self.kernel("check", batch)[1]
        self.assertEqual(d["replies"], k["replies"])
        self.assertEqual(sum(1 for r in d["replies"] if r["code"] == 1), 25)
        m = self.metrics()
        self.assertGreater(m['stopgate_dpdk_ip_fragmented_total{dir="rx"}'],
                           m0['stopgate_dpdk_ip_fragmented_total{dir="rx"}'])
        self.assertGreater(m['stopgate_dpdk_ip_fragmented_total{dir="tx"}'],
                           m0['stopgate_dpdk_ip_fragmented_total{dir="tx"}'])

    def test_04_stop_accepted_then_duplicate(self):
        rid, acct = self.rid("dp"), "DPSTOP%d" % (os.getpid() % 100000)
        out = self.dpdk("stop", rid, "DPB2", acct, "CASE-DP", 500, "stop", rid, "DPB2", acct, "CASE-DP", 500,
                        "check", "DPB2 " + acct)
        first, again, chk = out[1], out[2], out[3]
        self.assertReplyOk(first, 1)
        r1 = first["replies"][0]
        self.assertEqual((r1["type"], r1["err"], r1["code"]), (0x82, 0, 0), r1)  # ACCEPTED
        self.assertGreater(r1["order_no"], 0)
        self.assertGreater(r1["mask"], 0)  # its lsn: answered once durable
        durable = self.metrics()["stopgate_journal_durable_lsn"]
        self.assertGreaterEqual(durable, r1["mask"])
        self.assertReplyOk(again, 1)
        r2 = again["replies"][0]
        self.assertEqual((r2["code"], r2["order_no"]), (1, r1["order_no"]), r2)  # DUPLICATE, same order
        st = self.status(self.alice, "SG-%d" % r1["order_no"])
        self.assertEqual((st["bank"], st["account"], st["amount"]), ("DPB2", acct, 500))
        self.assertEqual(chk["replies"][0]["code"], 2)  # FROZEN, from the table's frozen bit
        self.assertEqual(todict(self.alice.ok("CHECK", "DPB2", acct))["verdict"], "FROZEN")
        # A screen agent may CHECK, not STOP.
        scr = self.dpdk("stop", self.rid("dps"), "DPB2", acct + "9", "CASE-DP", 1, "check", "DPB2 " + acct,
                        agent="scott")
        self.assertReplyOk(scr[1], 1)
        self.assertEqual(scr[1]["replies"][0]["err"], 5)  # NOPERM
        self.assertEqual(scr[2]["replies"][0]["code"], 2)

    def test_05_auto_stop(self):
        acct = "HOT%d" % (os.getpid() % 100000)
        self.ops.ok("LIST.ADD", "hot", "DPB3", acct, "SCORE", "99")
        m0 = self.metrics()
        d = self.dpdk("check", "DPB3 " + acct)[1]
        self.assertReplyOk(d, 1)
        self.assertEqual(d["replies"][0]["code"], 1)  # LISTED: the STOP comes after the answer
        # No RESP CHECK here (it would issue the STOP itself): the lcore handed the hit over,
        # the order side issued the STOP.
        wait_until(lambda: self.metrics()["stopgate_list_auto_stops_total"] > m0["stopgate_list_auto_stops_total"],
                   timeout=10, what="the auto_stop STOP issued from a DPDK CHECK hit")
        self.assertGreater(self.metrics()['stopgate_dpdk_handoffs_total{dir="auto_stop"}'],
                           m0['stopgate_dpdk_handoffs_total{dir="auto_stop"}'])
        d = self.dpdk("check", "DPB3 " + acct)[1]
        self.assertEqual(d["replies"][0]["code"], 2)  # FROZEN now
        self.assertEqual(todict(self.alice.ok("CHECK", "DPB3", acct))["verdict"], "FROZEN")

    def test_06_bad_frames_dropped_and_counted(self):
        m0 = self.metrics()
        out = self.dpdk("ping", "replay", "badmac", "oldepoch", "raw", "00112233", "raw", "4753" + "00" * 60)
        self.assertReplyOk(out[1], 1)
        self.assertEqual(out[2], {"timeout": True})  # replay
        self.assertEqual(out[3], {"timeout": True})  # bad MAC
        self.assertEqual(out[4]["status"], 9)       # old epoch: HELLO again
        self.assertEqual(out[5], {"timeout": True})  # garbage
        self.assertEqual(out[6], {"timeout": True})
        # An unknown agent's HELLO is answered like a known one's (issue 15: no enumeration),
        # its frames are dropped as unknown_agent.
        unknown = probe(GW_IP, DPDK_PORT, "nobody", "x", "hello", "ping")
        self.assertNotEqual(unknown[0], {"timeout": True})
        self.assertEqual(unknown[1], {"timeout": True})
        m = self.metrics()

        def grew(name):
            self.assertGreater(m[name], m0[name], name)

        for why in ("replay", "bad_mac", "malformed", "unknown_agent"):
            grew('stopgate_dpdk_dropped_total{why="%s"}' % why)
        grew('stopgate_dpdk_errors_total{why="epoch"}')
        self.assertEqual(m["stopgate_dpdk_up"], 1)
        # The kernel UDP counters are not the DPDK path's.
        self.assertEqual(m['stopgate_udp_dropped_total{why="bad_mac"}'], m0['stopgate_udp_dropped_total{why="bad_mac"}'])
        self.assertServing()

    def test_07_icmp_and_arp(self):
        m0 = self.metrics()
        self.assertTrue(icmp_ping(GW_IP), "no ICMP echo reply from %s" % GW_IP)
        m = self.metrics()
        self.assertGreater(m["stopgate_dpdk_icmp_echo_replies_total"], m0["stopgate_dpdk_icmp_echo_replies_total"])
        self.assertGreaterEqual(m["stopgate_dpdk_arp_replies_total"], 1)  # the kernel had to resolve 10.77.0.2
        neigh = sh("ip", "neigh", "show", GW_IP, "dev", TAP).stdout
        self.assertIn("lladdr", neigh)
        for k in ('stopgate_dpdk_packets_total{dir="rx"}', 'stopgate_dpdk_packets_total{dir="tx"}',
                  'stopgate_dpdk_frames_total{dir="rx"}', 'stopgate_dpdk_frames_total{dir="tx"}'):
            self.assertGreater(m[k], 0, k)

    def test_08_sighup_agents_reach_the_lcore(self):
        gw = self.gw
        before = probe(GW_IP, DPDK_PORT, "newbie", "newbie-s3cret", "hello", "ping")
        self.assertEqual(before[1], {"timeout": True})  # not an agent yet (its HELLO is answered)
        self.assertEqual(self.dpdk("check", "DPB9 ACCT1", agent="bert")[1]["replies"][0]["err"], 5)  # NOPERM
        gw.agents["newbie"] = ("screen", "newbie-s3cret")
        del gw.agents["bert"]
        gw.write_config()
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: configuration reloaded" in gw.log_since_start(), timeout=10, what="the reload")
        out = probe(GW_IP, DPDK_PORT, "newbie", "newbie-s3cret", "hello", "check", "DPB9 ACCT1", "stop",
                    self.rid("nb"), "DPB9", "ACCT1", "C", 1)
        self.assertReplyOk(out[1], 1)
        self.assertEqual((out[1]["replies"][0]["err"], out[1]["replies"][0]["code"]), (0, 0))
        self.assertEqual(out[2]["replies"][0]["err"], 5)  # a screen agent: NOPERM for STOP
        gone = self.dpdk("check", "DPB9 ACCT1", agent="bert")  # removed: HELLO answered, frames dropped
        self.assertNotEqual(gone[0], {"timeout": True})
        self.assertEqual(gone[1], {"timeout": True})
        self.assertReplyOk(self.dpdk("ping")[1], 1)  # the others keep working

    def test_09_stale_table_answers_stale(self):
        """The lcore reads the shared table's `stale` flag (docs/lists.md; set by a cluster member
        behind the cluster log, docs/cluster.md): a CHECK gets error 11 STALE, no verdict.
        Standalone, the gateway never sets it: the test sets it in the header as the writer
        would (offset 60 of sgl_header), then clears it."""
        import mmap
        acct = "STL%d" % (os.getpid() % 100000)
        self.ops.ok("LIST.ADD", "mule", "DPB1", acct, "SCORE", "70")
        self.assertEqual(self.dpdk("check", "DPB1 " + acct)[1]["replies"][0]["code"], 1)
        fd = os.open("/dev/shm/" + self.gw.shm_name, os.O_RDWR)
        try:
            hdr = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        try:
            hdr[60:64] = struct.pack("<I", 1)
            r = self.dpdk("check", "DPB1 " + acct)[1]
            self.assertReplyOk(r, 1)
            self.assertEqual((r["replies"][0]["err"], r["replies"][0]["code"], r["replies"][0]["mask"]), (11, 0, 0), r)
        finally:
            hdr[60:64] = struct.pack("<I", 0)
            hdr.close()
        r = self.dpdk("check", "DPB1 " + acct)[1]
        self.assertEqual((r["replies"][0]["err"], r["replies"][0]["code"]), (0, 1), r)


if __name__ == "__main__":
    try:
        sgtest.main()
    finally:
        delete_ns()
