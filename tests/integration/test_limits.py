"""Fixed capacities reached (issue 15 item 13, STYLE "allocate at start"): every per-request
table is sized at start, and reaching its size is an answer, never an abort or silent growth.

- The outbox (instructions waiting for their bank, [gateway] max_outbox): with a bank that
  takes no more (sim queue_max), new orders get ERR BUSY, the connection stays usable, and
  orders are taken again once the bank drains the outbox.
- Reply marks (CLIENT_REPLY_MARKS_MAX per client): more pipelined orders than marks are all
  answered, in order, none before its journal batch is durable.
- The output limit (CLIENT_OUTPUT_BYTES_MAX, 64 MiB): a CASE whose reply is larger is never
  sent cut: it arrives whole or is refused whole (ERR TOOBIG), and the connection goes on.
"""
import itertools
import os
import time

import sgtest
from sgtest import GatewayCase, RespError, todict

_acct = itertools.count(1)


def acct():
    # 7777: the sim answers CONFIRMED (not 0004, which never answers)
    return "X%07d%05d7777" % (next(_acct), int(time.time()) % 100000)


class OutboxFull(GatewayCase):
    SIM_LATENCY_S = 3
    QUEUE_MAX = 2
    OUTBOX_MAX = 3
    GW_ARGS = dict(gateway={"max_outbox": str(OUTBOX_MAX)},
                   sections="[plugin sim]\nlatency_us = %d\nqueue_max = %d\n" % (SIM_LATENCY_S * 1000000, QUEUE_MAX))

    def test_busy_then_free(self):
        with self.gw.client("alice") as c:
            taken = []
            # The bank takes QUEUE_MAX, the outbox holds OUTBOX_MAX more: the next is refused.
            for _ in range(self.QUEUE_MAX + self.OUTBOX_MAX):
                d = self.stop_ok(c, acct())
                self.assertEqual(d["status"], "ACCEPTED", d)
                taken.append(d["order_id"])
            t_full = time.time()
            r = self.stop(c, acct())
            self.assertErr(r, "ERR BUSY")
            self.assertIn("outbox full", r.line)
            m = sgtest.parse_metrics(sgtest.http_get(self.gw.metrics_port, "/metrics")[1])
            self.assertEqual(m["stopgate_outbox_instructions"], self.OUTBOX_MAX)
            self.assertEqual(m["stopgate_outbox_capacity"], self.OUTBOX_MAX)
            # Refused, so nothing was journaled: the same request_id is free to retry later.
            rid = self.rid("retry")
            account = acct()
            self.assertErr(self.stop(c, account, request_id=rid), "ERR BUSY")
            # The connection is still usable for everything that needs no outbox.
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(self.status(c, taken[0])["order_id"], taken[0])
            # Once the bank answers its first instructions the outbox drains, and the retry
            # with the same request_id is taken.
            d = sgtest.wait_until(lambda: (lambda r: None if isinstance(r, RespError) else todict(r))(
                self.stop(c, account, request_id=rid)), timeout=self.SIM_LATENCY_S + 10, interval=0.2,
                what="the outbox to drain")
            self.assertEqual(d["status"], "ACCEPTED", d)
            self.assertGreater(time.time() - t_full, self.SIM_LATENCY_S - 1.5)
            for oid in taken[:self.QUEUE_MAX]:
                self.wait_state(c, oid, "CONFIRMED", timeout=10)


class ManyPipelinedReplies(GatewayCase):
    N = 700  # well past CLIENT_REPLY_MARKS_MAX (256)

    def test_pipelined_orders_all_answered_in_order(self):
        with self.gw.client("alice") as c:
            rids = [self.rid("pipe") for _ in range(self.N)]
            cmds = [("STOP", rid, "BANK", "SGTB", "ACCOUNT", acct(), "CASE", "PIPE") for rid in rids]
            replies = [todict(r) for r in c.pipeline(cmds)]
            nos = [int(d["order_id"][3:]) for d in replies]
            self.assertTrue(all(d["status"] == "ACCEPTED" for d in replies), replies[:3])
            self.assertEqual(nos, sorted(nos))
            self.assertEqual(len(set(nos)), self.N)
            lsns = [d["lsn"] for d in replies]
            self.assertEqual(lsns, sorted(lsns))
            # Each answer left only once its record was durable.
            durable = int(sgtest.parse_info(c.ok("INFO"))["durable_lsn"])
            self.assertGreaterEqual(durable, lsns[-1])
            self.assertEqual(c.call("PING"), "PONG")


class ReplyOverOutputLimit(GatewayCase):
    # ~1.6 KB of STATUS per order (a 1000-byte NOTE): 45,000 orders make a CASE reply of
    # ~70 MiB, over the 64 MiB output limit.
    N = 45000
    CHUNK = 1500
    # The harness's max_orders (262,144) gives a string pool of 64 MiB: room for the notes.

    def test_big_case_whole_or_refused_whole(self):
        note = "n" * 1000
        case = "BIGCASE%d" % (os.getpid() % 100000)
        with self.gw.client("alice") as c:
            c.settimeout(120)
            for start in range(0, self.N, self.CHUNK):
                cmds = [("STOP", self.rid("big"), "BANK", "SGTB", "ACCOUNT", acct(), "CASE", case, "NOTE", note)
                        for _ in range(min(self.CHUNK, self.N - start))]
                for r in c.pipeline(cmds):
                    self.assertNotIsInstance(r, RespError, r)
            r = c.call("CASE", case)
            if isinstance(r, RespError):
                self.assertErr(r, "ERR TOOBIG")
                self.assertIn("output buffer", r.line)
            else:  # streamed: then it is all there
                self.assertEqual(len(todict(r)["orders"]), self.N)
            # The connection was not cut and is in step: the next replies are the next commands'.
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(c.call("ECHO", "after"), "after")
            st = self.status(c, "SG-1")
            self.assertEqual(st["cases"], [case])


if __name__ == "__main__":
    sgtest.main()
