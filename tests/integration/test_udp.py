"""Hostile datagrams on the kernel UDP path (SPEC §4.3, docs/protocol.md "Binary UDP frames",
issue 15 item 13): the same cases test_dpdk.py drives on the DPDK port, here on kernel UDP,
which runs everywhere (no root, no namespace).

Each of these is dropped unanswered and counted in /metrics by reason, and valid frames sent
after them (by the same agent, over the same socket) are still answered:
- a replayed sequence number (stopgate_udp_dropped_total{why="replay"});
- a wrong MAC (why="bad_mac");
- an unknown agent (why="unknown_agent");
- truncated and garbage datagrams (why="malformed" or, when the header survives, "bad_mac").
An old epoch is answered with status EPOCH (HELLO again) and counted in
stopgate_udp_errors_total{why="epoch"}; a role lacking the operation gets NOPERM for that
message (stopgate_udp_errors_total{why="message"}) and nothing is done.
"""
import json
import os
import subprocess

import sgtest
from sgtest import GatewayCase, http_get, parse_metrics, todict

HERE = os.path.dirname(os.path.abspath(__file__))
UDP_PROBE = os.environ.get("UDP_PROBE") or os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "tests",
                                                        "integration", "udp_probe")
AGENTS = dict(sgtest.DEFAULT_AGENTS)
SG_FE_NOPERM = 5
SG_FE_EPOCH = 9


def probe(port, agent, secret, *steps, timeout=60):
    """udp_probe's replies, one dict per step (a step unanswered within 1 s: {'timeout': True})."""
    env = dict(os.environ)
    env["STOPGATE_SECRET"] = secret
    p = subprocess.run([UDP_PROBE, sgtest.HOST, str(port), agent] + [str(s) for s in steps], capture_output=True,
                       text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError("udp_probe %s -> %d: %s" % (" ".join(map(str, steps)), p.returncode, p.stderr))
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


class KernelUdpHostile(GatewayCase):

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(UDP_PROBE):
            raise AssertionError("udp_probe not built (%s); set UDP_PROBE" % UDP_PROBE)
        super().setUpClass()
        cls.alice = cls.gw.client("alice")

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "alice", None):
            cls.alice.close()
        super().tearDownClass()

    def udp(self, *steps, agent="alice"):
        return probe(self.gw.udp_port, agent, AGENTS[agent][1], "hello", *steps)

    def metrics(self):
        st, body = http_get(self.gw.metrics_port, "/metrics")
        self.assertEqual(st, 200)
        return parse_metrics(body)

    def assertReplyOk(self, r, n=None):
        self.assertNotIn("timeout", r, "no answer on kernel UDP")
        self.assertTrue(r["mac_ok"], r)
        self.assertTrue(r["reply_ok"], r)
        self.assertEqual(r["status"], 0, r)
        if n is not None:
            self.assertEqual(len(r["replies"]), n, r)

    def grew(self, m0, m, name, by=1):
        self.assertEqual(m[name] - m0[name], by, name)

    def test_replay_dropped_and_counted(self):
        m0 = self.metrics()
        out = self.udp("ping", "replay", "ping")
        self.assertReplyOk(out[1], 1)
        self.assertEqual(out[2], {"timeout": True})
        self.assertReplyOk(out[3], 1)  # a fresh sequence number is answered again
        self.grew(m0, self.metrics(), 'stopgate_udp_dropped_total{why="replay"}')

    def test_bad_mac_dropped_and_counted(self):
        m0 = self.metrics()
        out = self.udp("badmac", "ping")
        self.assertEqual(out[1], {"timeout": True})
        self.assertReplyOk(out[2], 1)
        m = self.metrics()
        self.grew(m0, m, 'stopgate_udp_dropped_total{why="bad_mac"}')
        self.grew(m0, m, 'stopgate_udp_dropped_total{why="replay"}', by=0)

    def test_old_epoch_told_to_hello_again(self):
        m0 = self.metrics()
        out = self.udp("oldepoch", "ping")
        self.assertNotIn("timeout", out[1])
        self.assertEqual(out[1]["status"], SG_FE_EPOCH, out[1])
        self.assertEqual(out[1]["replies"], [])
        self.assertTrue(out[1]["mac_ok"], out[1])  # signed with the agent's key: not forgeable
        self.assertReplyOk(out[2], 1)
        self.grew(m0, self.metrics(), 'stopgate_udp_errors_total{why="epoch"}')

    def test_noperm_for_a_role_lacking_the_op(self):
        acct = "UDPNP%d" % (os.getpid() % 100000)
        m0 = self.metrics()
        # scott is a screen agent: CHECK yes, STOP no.
        out = self.udp("stop", self.rid("udpnp"), "SGTB", acct, "CASE-UDP", 100, "check", "SGTB " + acct,
                       agent="scott")
        self.assertReplyOk(out[1], 1)
        r = out[1]["replies"][0]
        self.assertEqual((r["type"], r["err"], r["order_no"]), (0x82, SG_FE_NOPERM, 0), r)
        self.assertReplyOk(out[2], 1)
        self.assertEqual(out[2]["replies"][0]["code"], 0)  # CLEAR: no order was made
        self.assertEqual(todict(self.alice.ok("CHECK", "SGTB", acct))["verdict"], "CLEAR")
        m = self.metrics()
        self.grew(m0, m, 'stopgate_udp_errors_total{why="message"}')
        self.grew(m0, m, 'stopgate_udp_messages_total{type="stop"}')

    def test_unknown_agent_dropped_and_counted(self):
        m0 = self.metrics()
        out = probe(self.gw.udp_port, "nobody", "x", "ping", "ping")
        self.assertEqual(out, [{"timeout": True}, {"timeout": True}])
        self.grew(m0, self.metrics(), 'stopgate_udp_dropped_total{why="unknown_agent"}', by=2)
        self.assertReplyOk(self.udp("ping")[1], 1)

    def test_truncated_and_garbage_dropped_and_counted(self):
        m0 = self.metrics()
        # Cut into the MAC, into the header, to nothing; garbage short and long.
        out = self.udp("truncated", 3, "truncated", 40, "truncated", 10000, "raw", "00112233",
                       "raw", "4753" + "00" * 60, "raw", "ff" * 300, "ping")
        for r in out[1:7]:
            self.assertEqual(r, {"timeout": True})
        self.assertReplyOk(out[7], 1)
        m = self.metrics()
        dropped = sum(m['stopgate_udp_dropped_total{why="%s"}' % w] - m0['stopgate_udp_dropped_total{why="%s"}' % w]
                      for w in ("malformed", "bad_mac", "unknown_agent"))
        self.assertEqual(dropped, 6)
        self.assertGreaterEqual(m['stopgate_udp_dropped_total{why="malformed"}'] -
                                m0['stopgate_udp_dropped_total{why="malformed"}'], 4)

    def test_valid_frames_answered_after_the_hostile_ones(self):
        acct = "UDPOK%d" % (os.getpid() % 100000)
        rid = self.rid("udpok")
        out = self.udp("badmac", "replay", "oldepoch", "raw", "deadbeef", "stop", rid, "SGTB", acct, "CASE-UDP", 500,
                       "check", "SGTB " + acct)
        self.assertEqual(out[1:3], [{"timeout": True}] * 2)
        self.assertEqual(out[3]["status"], SG_FE_EPOCH)
        self.assertEqual(out[4], {"timeout": True})
        self.assertReplyOk(out[5], 1)
        r = out[5]["replies"][0]
        self.assertEqual((r["type"], r["err"], r["code"]), (0x82, 0, 0), r)  # ACCEPTED
        self.assertGreater(r["order_no"], 0)
        self.assertReplyOk(out[6], 1)
        self.assertEqual(out[6]["replies"][0]["code"], 2)  # FROZEN
        st = self.status(self.alice, "SG-%d" % r["order_no"])
        self.assertEqual((st["bank"], st["account"], st["amount"], st["agent"]), ("SGTB", acct, 500, "alice"))
        self.assertServing()


if __name__ == "__main__":
    sgtest.main()
