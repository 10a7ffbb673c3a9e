"""SIGTERM drains (issue 8 item 5): several connections pipeline thousands of STOPs, SIGTERM
arrives mid-stream. The gateway exits 0 within its drain time; every order it answered is
durable (present after a restart, same id, DUPLICATE when sent again); everything not taken
was refused with ERR BUSY, never silently dropped mid-answer; and it leaves no half-written
record: `stopctl journal verify` passes on the stopped journal and the restart cuts no torn
tail. (test_daemon.Signals covers one connection; this adds several connections, the
journal's state after the drain, and segment rolls during it.)"""
import signal
import threading
import time

import sgtest
from sgtest import Closed, GatewayCase, RespError, encode, todict

CONNS = 3
PER_CONN = 4000


class Drain(GatewayCase):
    GW_ARGS = dict(gateway={"segment_bytes": str(1024 * 1024)}, sections="[plugin sim]\nlatency_us = 200\n")

    def test_sigterm_mid_stream(self):
        gw = self.gw
        tag = time.time_ns() % 10 ** 9
        cmds = [[["STOP", "dr-%d-%d-%d" % (tag, k, i), "BANK", "DRB", "ACCOUNT", "DR%d%d%05dX" % (tag % 1000, k, i),
                  "CASE", "DRAIN", "NOTE", "d" * 200] for i in range(PER_CONN)] for k in range(CONNS)]
        clients = [gw.client("alice", timeout=20) for _ in range(CONNS)]
        results = [[] for _ in range(CONNS)]  # per connection: dicts or RespErrors, in order
        first_answers = threading.Event()
        errors = []

        def writer(k):
            c = clients[k]
            try:
                for base in range(0, PER_CONN, 200):
                    c.sock.sendall(b"".join(encode(*cmd) for cmd in cmds[k][base:base + 200]))
                    time.sleep(0.001)
            except OSError:
                pass  # closed by the drain

        def reader(k):
            c = clients[k]
            try:
                while len(results[k]) < PER_CONN:
                    r = c.read()
                    results[k].append(r if isinstance(r, RespError) else todict(r))
                    if len(results[k]) == 300:
                        first_answers.set()
            except (Closed, ConnectionResetError, OSError):
                pass
            except Exception as e:  # a corrupt answer
                errors.append(repr(e))

        threads = [threading.Thread(target=f, args=(k,), daemon=True) for k in range(CONNS) for f in (writer, reader)]
        for t in threads:
            t.start()
        self.assertTrue(first_answers.wait(20), "no answers")
        gw.proc.send_signal(signal.SIGTERM)
        rc = gw.proc.wait(20)
        for t in threads:
            t.join(20)
        for c in clients:
            c.close()
        gw._forget()
        self.assertEqual(errors, [])
        self.assertEqual(rc, 0)
        log = gw.log_since_start()
        self.assertIn("draining", log)
        self.assertNotIn("drain timed out", log)

        acked, busy = {}, 0
        for k in range(CONNS):
            for cmd, r in zip(cmds[k], results[k]):
                if isinstance(r, RespError):
                    self.assertEqual(r.code, "ERR BUSY", r)
                    busy += 1
                    continue
                self.assertEqual(r["status"], "ACCEPTED", r)
                acked[cmd[1]] = (cmd, r["order_id"])
        unanswered = CONNS * PER_CONN - len(acked) - busy
        print("SIGTERM mid-stream: %d answered ACCEPTED, %d refused ERR BUSY, %d unanswered (connection closed)"
              % (len(acked), busy, unanswered))

        p = sgtest.run_stopctl("journal", "verify", gw.journal_dir)
        self.assertEqual(p.returncode, 0, "half-written records after a drain:\n" + p.stdout + p.stderr)
        gw.start()
        self.assertNotIn("torn tail", gw.log_since_start())
        with gw.client("alice") as c:
            rids = list(acked)
            for rid, st in zip(rids, c.pipeline([["STATUS", acked[r][1]] for r in rids])):
                self.assertNotIsInstance(st, RespError, "answered %s (%s) lost: %r" % (acked[rid][1], rid, st))
                st = todict(st)
                self.assertEqual((st["order_id"], st["request_id"]), (acked[rid][1], rid))
            for rid, d in zip(rids, c.pipeline([acked[r][0] for r in rids])):
                d = todict(d)
                self.assertEqual((d["status"], d["order_id"]), ("DUPLICATE", acked[rid][1]))


if __name__ == "__main__":
    sgtest.main()
