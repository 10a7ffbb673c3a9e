"""Output limits (issue 15 item 10). A reply that does not fit the client's output buffer
(CLIENT_OUTPUT_BYTES_MAX, 64 MiB) is refused whole with `ERR TOOBIG` - the buffer rolled back
to before it - and the connection stays usable (before: the reply was cut mid-stream and the
connection hung). And a pipeline whose replies pass half the buffer is processed to the end
once the client reads: 400 pipelined CASEs of ~120 KB each, read slowly, get exactly 400
answers (before: 243, then silence - processing resumed only when more input arrived)."""
import socket
import time

import sgtest
from sgtest import GatewayCase, RespError, encode, todict

NOTE = "n" * 1000


class OutputLimits(GatewayCase):
    GW_ARGS = {"gateway": {"segment_bytes": "268435456"}}  # 50,000 notes fit the string pool

    def burst(self, c, case, tag, n, chunk=2000):
        """n STOPs with a 1,000-byte NOTE in case `case`, pipelined `chunk` at a time."""
        for base in range(0, n, chunk):
            cmds = [["STOP", "%s-%d" % (tag, i), "BANK", "OLB", "ACCOUNT", "OL%s%07dX" % (tag[-4:], i), "CASE", case,
                     "NOTE", NOTE] for i in range(base, min(n, base + chunk))]
            for r in c.pipeline(cmds):
                self.assertFalse(isinstance(r, RespError), r)

    def test_1_reply_over_the_output_buffer(self):
        tag = "big%d" % (time.time_ns() % 10 ** 6)
        with self.gw.client("alice", timeout=60) as c:
            t0 = time.monotonic()
            self.burst(c, "OLBIG-" + tag, tag, 50000)
            print("50,000 orders of 1 KB notes in one case: %.1f s" % (time.monotonic() - t0))
            t0 = time.monotonic()
            r = c.call("CASE", "OLBIG-" + tag)
            self.assertIsInstance(r, RespError, "a CASE of ~70 MiB was not refused")
            self.assertEqual(r.code, "ERR TOOBIG", r.line)
            self.assertIn("output buffer", r.reason)
            print("CASE of 50,000 orders: -%s (%.2f s)" % (r.line, time.monotonic() - t0))
            # Nothing of it was sent: the next command's answer is the next thing read.
            self.assertEqual(c.call("PING", "after"), "after")
            d = todict(c.call("STATUS", "SG-1"))
            self.assertEqual(d["order_id"], "SG-1")
        self.assertServing()

    def test_2_pipeline_resumes_when_output_drains(self):
        tag = "pipe%d" % (time.time_ns() % 10 ** 6)
        case = "OLPIPE-" + tag
        n_cases = 400
        with self.gw.client("alice", timeout=60) as c:
            self.burst(c, case, tag, 80)
            one = todict(c.call("CASE", case))
            self.assertEqual(len(one["orders"]), 80)
            c.sock.sendall(b"".join(encode("CASE", case) for _ in range(n_cases)) + encode("PING", "end-" + tag))
            # Read slowly: 64 KiB, then a pause, so the gateway's output stays full a while.
            got = bytearray()
            end = ("$%d\r\nend-%s\r\n" % (len("end-" + tag), tag)).encode()
            deadline = time.monotonic() + 60
            c.sock.settimeout(5)
            while not got.endswith(end):
                self.assertLess(time.monotonic(), deadline, "pipeline stalled")
                try:
                    data = c.sock.recv(65536)
                except socket.timeout:
                    self.fail("silence after %d of %d CASE answers" % (got.count(b"frozen_total"), n_cases))
                self.assertTrue(data, "connection closed")
                got += data
                time.sleep(0.0005)
            answers = got.count(b"\r\nfrozen_total\r\n")
            print("%d pipelined CASEs of 80 orders: %d answers, %.1f MiB" % (n_cases, answers, len(got) / 2 ** 20))
            self.assertEqual(answers, n_cases)


if __name__ == "__main__":
    sgtest.main()
