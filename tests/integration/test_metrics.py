"""Metrics and health over HTTP (SPEC §4.4) and INFO: Prometheus text, order counts by state,
CHECK counts and hits, journal fsyncs, per-bank pending/overdue, latency histogram, /healthz."""
import re
import socket
import time

import sgtest
from sgtest import GatewayCase, http_get, parse_metrics, todict

DEADLINE_MS = 400
LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? -?[0-9.eE+-]+|[+-]Inf|NaN$')


class Metrics(GatewayCase):
    GW_ARGS = dict(gateway={"bank_deadline_ms": str(DEADLINE_MS)}, sections="[plugin sim]\nlatency_us = 200\n")

    def scrape(self):
        st, body = http_get(self.gw.metrics_port, "/metrics")
        self.assertEqual(st, 200)
        return body, parse_metrics(body)

    def test_format(self):
        body, m = self.scrape()
        for line in body.splitlines():
            if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
                continue
            self.assertRegex(line, LINE)
        self.assertEqual(m["stopgate_up"], 1)
        for state in ("ACCEPTED", "SENT", "OVERDUE", "CONFIRMED", "PARTIAL", "NOT_FOUND", "REJECTED",
                      "FUNDS_MOVED", "RELEASED", "EXPIRED"):
            self.assertIn('stopgate_orders{state="%s"}' % state, m)
        # Histograms: cumulative buckets ending in +Inf == _count.
        for h in ("stopgate_journal_records_per_fsync", "stopgate_stop_latency_seconds"):
            buckets = [(k, v) for k, v in m.items() if k.startswith(h + "_bucket")]
            self.assertTrue(buckets, h)
            vals = [v for _, v in buckets]
            self.assertEqual(vals, sorted(vals), "%s buckets not cumulative" % h)
            self.assertEqual(m[h + '_bucket{le="+Inf"}'], m[h + "_count"])
        self.assertIn("# TYPE stopgate_stop_latency_seconds histogram", body)

    def test_counts_follow_orders(self):
        gw = self.gw
        _, m0 = self.scrape()
        tag = int(time.time() * 1000) % 10 ** 8
        with gw.client("alice") as c:
            ids = [todict(r)["order_id"] for r in c.pipeline(
                [["STOP", "m-%d-%d" % (tag, i), "BANK", "MB", "ACCOUNT", "M%d%03dX" % (tag, i), "CASE", "MC"]
                 for i in range(40)] +
                [["STOP", "m-%d-rej" % tag, "BANK", "MB", "ACCOUNT", "MREJ%d0003" % tag, "CASE", "MC"],
                 ["STOP", "m-%d-nf" % tag, "BANK", "MB", "ACCOUNT", "MNF%d0002" % tag, "CASE", "MC"]])]
            for oid in ids:
                self.wait_state(c, oid, ("CONFIRMED", "REJECTED", "NOT_FOUND"))
            # A duplicate is counted as such.
            c.ok("STOP", "m-%d-0" % tag, "BANK", "MB", "ACCOUNT", "M%d000X" % tag, "CASE", "MC")
            for i in range(7):
                c.ok("CHECK", "MB", "M%d%03dX" % (tag, i))  # hits
            for i in range(5):
                c.ok("CHECK", "MB", "NOPE%d%03dX" % (tag, i))  # misses
            c.call("NOSUCHCMD")
        _, m = self.scrape()
        d = lambda k: m.get(k, 0) - m0.get(k, 0)
        self.assertEqual(d('stopgate_orders{state="CONFIRMED"}'), 40)
        self.assertEqual(d('stopgate_orders{state="REJECTED"}'), 1)
        self.assertEqual(d('stopgate_orders{state="NOT_FOUND"}'), 1)
        self.assertEqual(d('stopgate_order_answers_total{status="ACCEPTED"}'), 42)
        self.assertEqual(d('stopgate_order_answers_total{status="DUPLICATE"}'), 1)
        self.assertEqual(d("stopgate_checks_total"), 12)
        self.assertEqual(d("stopgate_check_hits_total"), 7)
        self.assertGreaterEqual(d("stopgate_errors_total"), 1)
        self.assertGreater(d("stopgate_journal_fsyncs_total"), 0)
        self.assertGreaterEqual(d("stopgate_journal_records_total"), 42 * 3)
        self.assertGreaterEqual(d("stopgate_stop_latency_seconds_count"), 42)
        self.assertGreaterEqual(d('stopgate_plugin_submitted_total{plugin="sim"}'), 42)
        self.assertEqual(m["stopgate_journal_durable_lsn"], int(gw.info()["durable_lsn"]))
        # INFO agrees with /metrics.
        info = gw.info()
        self.assertEqual(int(info["orders_CONFIRMED"]), m['stopgate_orders{state="CONFIRMED"}'])
        self.assertEqual(int(info["orders_total"]), sum(v for k, v in m.items() if k.startswith("stopgate_orders{")))

    def test_bank_pending_and_overdue(self):
        gw = self.gw
        with gw.client("alice") as c:
            ids = [todict(c.ok("STOP", self.rid("od"), "BANK", "SLOWBK", "ACCOUNT", "OD%d0004" % i, "CASE", "OC"))
                   ["order_id"] for i in range(3)]
            _, m = self.scrape()
            self.assertEqual(m.get('stopgate_bank_pending{bank="SLOWBK"}'), 3)
            for oid in ids:
                self.wait_state(c, oid, "OVERDUE", timeout=DEADLINE_MS / 1000 + 5)
            _, m = self.scrape()
            self.assertEqual(m.get('stopgate_bank_overdue{bank="SLOWBK"}'), 3)
            self.assertEqual(m.get('stopgate_bank_pending{bank="SLOWBK"}'), 3)
            self.assertGreaterEqual(m['stopgate_orders{state="OVERDUE"}'], 3)
            for oid in ids:
                c.ok("RELEASE", self.rid("odr"), oid)
            _, m = self.scrape()
            self.assertEqual(m.get('stopgate_bank_overdue{bank="SLOWBK"}', 0), 0)

    def test_healthz_and_404(self):
        st, body = http_get(self.gw.metrics_port, "/healthz")
        self.assertEqual(st, 200)
        self.assertEqual(body.strip(), "ok")
        st, body = http_get(self.gw.metrics_port, "/nope")
        self.assertEqual(st, 404)

    def test_bad_http_does_not_hurt(self):
        for junk in (b"\x00\x01garbage\r\n\r\n", b"GET /metrics", b"X" * 10000):
            s = socket.create_connection((sgtest.HOST, self.gw.metrics_port), timeout=5)
            try:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
            except OSError:
                pass  # the endpoint may hang up on junk; that is fine
            finally:
                s.close()
        # Several scrapes at once, then the endpoints still work, and so does RESP.
        conns = [socket.create_connection((sgtest.HOST, self.gw.metrics_port), timeout=5) for _ in range(20)]
        for s in conns:
            s.close()
        time.sleep(0.1)
        self.assertEqual(http_get(self.gw.metrics_port, "/healthz")[0], 200)
        self.scrape()
        self.assertServing()

    def test_info_sections(self):
        with self.gw.client("olga") as c:
            text = c.ok("INFO")
        for section in ("# Server", "# Clients", "# Orders", "# Journal", "# Banks"):
            self.assertIn(section, text)
        info = sgtest.parse_info(text)
        self.assertEqual(info["phase"], "running")
        self.assertGreaterEqual(int(info["connected_clients"]), 1)
        self.assertEqual(info["journal_dir"], self.gw.journal_dir)
        self.assertEqual(info["last_lsn"], info["durable_lsn"])


class HealthLifecycle(GatewayCase):
    def test_healthz_gone_after_stop(self):
        gw = self.gw
        self.assertEqual(http_get(gw.metrics_port, "/healthz")[0], 200)
        self.assertEqual(gw.stop(), 0)
        with self.assertRaises(OSError):
            http_get(gw.metrics_port, "/healthz", timeout=2)
        gw.start()
        self.assertEqual(http_get(gw.metrics_port, "/healthz")[0], 200)


if __name__ == "__main__":
    sgtest.main()
