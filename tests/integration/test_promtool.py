"""/metrics passes `promtool check metrics` (issue 14 item 2), with every family present: a
gateway with TLS on, two redis_streams instances (plugin stats from both) and sim, after
orders, CHECKs and a failed AUTH. Also checked here, because promtool is lenient about them:
HELP and TYPE before every family's samples, each family in one group (never interleaved
with another), no OpenMetrics clash (a gauge `x` beside a counter `x_total`), the
Content-Type; and docs/alerts.yml passes `promtool check rules` and names only series the
gateway exports. Needs promtool (Debian `prometheus`, in ops/lib.sh) and redis-server."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import http.client

import sgtest
from sgtest import HOST, todict, wait_until
from test_redis_streams import RB, RedisCase
from test_tls import Certs, TlsClient, tls_gateway_opts

PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
ALERTS = os.path.join(sgtest.ROOT, "docs", "alerts.yml")
RB2 = "RDB2"  # routed to the second redis_streams instance
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? \S+$')
SUFFIXES = ("_bucket", "_sum", "_count")


def families(body):
    """[(family, type, help, [sample lines])] in page order; AssertionError on a sample
    outside a declared family."""
    out, cur, help_ = [], None, {}
    for line in body.splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            help_[name] = text
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            cur = (name, typ, help_.get(name), [])
            out.append(cur)
        elif line:
            m = SAMPLE.match(line)
            if not m or cur is None:
                raise AssertionError("sample outside a family: %r" % line)
            name = m.group(1)
            base = name
            if cur[1] == "histogram":
                for s in SUFFIXES:
                    if name.endswith(s):
                        base = name[:-len(s)]
            if base != cur[0]:
                raise AssertionError("sample %r under family %s: families interleaved or TYPE missing" %
                                     (line, cur[0]))
            cur[3].append(line)
    return out


class Promtool(RedisCase):
    @classmethod
    def setUpClass(cls):
        if not PROMTOOL:
            raise unittest.SkipTest("promtool not found (Debian package prometheus, installed by ops/lib.sh)")
        cls.certs = Certs.get()
        cls.tls_port = sgtest.free_port()
        cls.GATEWAY = dict(tls_gateway_opts(cls.certs, cls.tls_port), bank_deadline_ms="300")
        super().setUpClass()

    @classmethod
    def sections(cls):
        text = super().sections()
        second = ("[plugin rbank2]\ntype = redis_streams\nhost = %s\nport = %d\nblock_ms = 50\n"
                  "[route %s]\nplugin = rbank2\n" % (HOST, cls.redis.port, RB2))
        return text + second

    def load(self):
        gw = self.gw
        tag = self.rid("pt").replace("-", "")[-10:]
        with gw.client("alice") as c:
            for bank in ("SGTB", RB, RB2):
                for i in range(3):
                    self.stop_ok(c, "PT%s%s%dX" % (bank, tag, i), bank=bank, case="PTCASE")
            c.ok("CHECK", "SGTB", "PTSGTB%s0X" % tag)
            c.call("NOSUCHCMD")
        with TlsClient(self.tls_port, self.certs.ca[1]) as t:
            t.auth("alice", gw.secret("alice"))
            self.assertEqual(t.call("PING"), "PONG")
        bad = sgtest.Client(gw.port)
        bad.call("AUTH", "alice", "wrong-secret")
        bad.close()
        # Nobody answers RB/RB2 in time: they go OVERDUE and show per bank.
        wait_until(lambda: gw.metrics().get('stopgate_bank_overdue{bank="%s"}' % RB2, 0) >= 3, timeout=15,
                   what="RDB2 orders overdue")

    def scrape(self):
        c = http.client.HTTPConnection(HOST, self.gw.metrics_port, timeout=10)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read().decode("utf-8")
        finally:
            c.close()

    def test_promtool_clean_with_every_family(self):
        self.load()
        st, ctype, body = self.scrape()
        self.assertEqual(st, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, "promtool check metrics:\n%s%s" % (r.stdout, r.stderr))
        self.assertEqual((r.stdout + r.stderr).strip(), "", "promtool lint:\n%s%s" % (r.stdout, r.stderr))

        fams = families(body)
        names = [f[0] for f in fams]
        self.assertEqual(len(names), len(set(names)), "a family appears in two groups")
        for name, typ, help_, samples in fams:
            self.assertTrue(help_, "%s has no HELP" % name)
            self.assertIn(typ, ("counter", "gauge", "histogram"), name)
            self.assertEqual(name.endswith("_total"), typ == "counter", "%s is a %s" % (name, typ))
            # OpenMetrics: counter x_total is family x; nothing else may be called x.
            if typ == "counter":
                self.assertNotIn(name[:-len("_total")], names)
        # Every module's families appear, the plugin ones once with both instances.
        for want in ("stopgate_connections_open", "stopgate_tls_handshakes_total", "stopgate_auth_failures_total",
                     "stopgate_bank_overdue", "stopgate_stop_latency_seconds", "stopgate_list_entries",
                     "stopgate_plugin_submitted_total", "stopgate_plugin_queued",
                     "stopgate_plugin_xadd_refused_total", "stopgate_dpdk_up"):
            self.assertIn(want, names)
        by = {f[0]: f[3] for f in fams}
        queued = " ".join(by["stopgate_plugin_queued"])
        self.assertIn('plugin="rbank"', queued)
        self.assertIn('plugin="rbank2"', queued)
        self.assertTrue(any("sim" in s for s in by["stopgate_plugin_submitted_total"]))
        self.assertTrue(by["stopgate_bank_overdue"], "no per-bank overdue series")
        m = sgtest.parse_metrics(body)
        self.assertGreaterEqual(m["stopgate_tls_handshakes_total"], 1)
        self.assertGreaterEqual(m["stopgate_auth_failures_total"], 1)
        self.assertNotIn("stopgate_connections", m)

    def test_alert_rules(self):
        r = subprocess.run([PROMTOOL, "check", "rules", ALERTS], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)
        self.load()
        names = {f[0] for f in families(self.scrape()[2])}
        with open(ALERTS, encoding="utf-8") as f:
            used = set(re.findall(r"\bstopgate_[a-z0-9_]+", f.read()))
        for n in used:
            base = n[:-len("_bucket")] if n.endswith("_bucket") else n
            self.assertIn(base, names, "docs/alerts.yml names %s, which /metrics does not export" % n)


if __name__ == "__main__":
    sgtest.main()
