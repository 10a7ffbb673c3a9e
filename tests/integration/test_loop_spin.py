"""[gateway] spin_us: the loop's bounded spin for a completion while a journal batch is in
flight (issue 13; main.c spin_for_completion, docs/PERFORMANCE.md "Issue 13, the loop's CPU
per STOP and the 1-connection wake-up").

- With spin_us set, every STOP's batch is waited for by a spin first (counted in
  stopgate_loop_spins_total), and some spins reap the fdatasync's completion without a sleep
  (stopgate_loop_spin_hits_total): a spin of SPIN_US_MAX (1 ms) outlasts most fdatasyncs on
  a pre-zeroed segment. Every STOP is still answered ACCEPTED and durable.
- The key applies on SIGHUP: set to 0, the loop spins no more.
- Off by default: a gateway without the key never spins.
"""
import re
import signal

import sgtest
from sgtest import GatewayCase, todict, wait_until

STOPS = 100


def metric(gw, name):
    return gw.metrics().get(name, 0.0)


class SpinOn(GatewayCase):
    GW_ARGS = {"gateway": {"spin_us": "1000"}}

    def stops(self, tag, n):
        with self.gw.client("alice") as c:
            for i in range(n):
                d = self.stop_ok(c, "SPIN%s%05d" % (tag, i), bank="SGTB", case="SPIN")
                self.assertEqual(d["status"], "ACCEPTED")

    def sighup(self):
        gw = self.gw
        before = len(gw.log())
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: re.search(r"SIGHUP: (reload refused|configuration reloaded)", gw.log()[before:]),
                   timeout=10, what="the reload")
        self.assertIn("configuration reloaded", gw.log()[before:])
        self.assertNotIn("needs a restart", gw.log()[before:], "spin_us applies live")

    def test_spins_while_journal_in_flight_then_off_on_reload(self):
        gw = self.gw
        spins0 = metric(gw, "stopgate_loop_spins_total")
        hits0 = metric(gw, "stopgate_loop_spin_hits_total")
        self.stops("A", STOPS)
        spins = metric(gw, "stopgate_loop_spins_total") - spins0
        hits = metric(gw, "stopgate_loop_spin_hits_total") - hits0
        # One connection, one STOP at a time: each waits for its own batch, so each spins.
        self.assertGreaterEqual(spins, STOPS, "the loop did not spin while STOPs were being made durable")
        self.assertGreater(hits, 0, "no spin reaped a completion: the spin never sees the CQ")
        self.assertLessEqual(hits, spins)

        gw.gateway_opts = {"spin_us": "0"}
        gw.write_config()
        self.sighup()
        spins1 = metric(gw, "stopgate_loop_spins_total")
        self.stops("B", 50)
        self.assertEqual(metric(gw, "stopgate_loop_spins_total"), spins1, "spin_us = 0 still spins")


class SpinOffByDefault(GatewayCase):
    def test_no_spin_without_the_key(self):
        with self.gw.client("alice") as c:
            for i in range(30):
                self.stop_ok(c, "NOSPIN%05d" % i, bank="SGTB", case="SPIN")
        self.assertEqual(metric(self.gw, "stopgate_loop_spins_total"), 0)


if __name__ == "__main__":
    sgtest.main()
