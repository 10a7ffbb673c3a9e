"""The RESP side (SPEC §4.1): RESP3 maps vs RESP2 flat arrays, nil encodings, pipelining
order (also across durable/non-durable replies, fragmented input and several clients),
case-insensitive commands, inline commands, QUIT."""
import re
import threading
import time

import sgtest
from sgtest import Client, GatewayCase, Map, todict, encode


class Protocols(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 200\n")

    def acct(self, tag):
        return "P%s%d" % (tag, int(time.time() * 1e6) % 10 ** 10)

    def test_resp2_flat_arrays(self):
        with self.gw.client("alice", proto=2) as c:
            a = self.acct("A")
            r = c.call("STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", a, "CASE", "PC2", "AMOUNT", "10")
            self.assertIsInstance(r, list)
            self.assertNotIsInstance(r, Map)
            self.assertEqual(r[0::2], ["order_id", "status", "lists", "lsn"])
            oid = r[1]
            st = self.wait_state(c, oid, "CONFIRMED")
            raw = c.call("STATUS", oid)
            self.assertIsInstance(raw, list)
            self.assertEqual(len(raw) % 2, 0)
            self.assertEqual(raw[0:2], ["order_id", oid])
            self.assertEqual(st["frozen"], 10)
            case = c.call("CASE", "PC2")
            self.assertIsInstance(case, list)
            self.assertIsInstance(case[3], list)
            self.assertIsInstance(case[3][0], list)  # each order a flat array too
            chk = c.call("CHECK", "SGTB", a)
            self.assertEqual(chk, ["verdict", "FROZEN", "lists", [], "score", 0, "order_id", oid])
            m = c.call("MCHECK", "SGTB", a, "SGTB", a + "9")
            self.assertIsInstance(m, list)
            self.assertEqual([x[1] for x in m], ["FROZEN", "CLEAR"])

    def test_resp3_maps(self):
        with self.gw.client("alice", proto=3) as c:
            a = self.acct("B")
            r = c.call("STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", a, "CASE", "PC3", "AMOUNT", "11")
            self.assertIsInstance(r, Map)
            self.assertEqual(set(r), {"order_id", "status", "lists", "lsn"})
            self.assertEqual(r["status"], "ACCEPTED")
            self.assertIsInstance(r["lsn"], int)
            st = self.wait_state(c, r["order_id"], "CONFIRMED")
            raw = c.call("STATUS", r["order_id"])
            self.assertIsInstance(raw, Map)
            self.assertIsNone(raw["parent"])
            self.assertEqual(raw["children"], [])
            self.assertEqual(st["frozen"], 11)
            case = c.call("CASE", "PC3")
            self.assertIsInstance(case, Map)
            self.assertIsInstance(case["orders"][0], Map)
            chk = c.call("CHECK", "SGTB", a + "9")
            self.assertEqual(chk, {"verdict": "CLEAR", "lists": [], "score": 0, "order_id": None})
            m = c.call("MCHECK", "SGTB", a, "SGTB", a + "9")
            self.assertTrue(all(isinstance(x, Map) for x in m))
            self.assertEqual([x["verdict"] for x in m], ["FROZEN", "CLEAR"])
            # Errors are the same in both protocols.
            e = c.call("STATUS", "SG-99999999")
            self.assertErr(e, "ERR NOTFOUND")

    def test_nil_encodings_on_the_wire(self):
        """RESP2 nil is $-1, RESP3 nil is _ (e.g. STATUS parent of a root order)."""
        with self.gw.client("alice") as c:
            oid = todict(c.ok("STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", self.acct("N"), "CASE", "PN"))["order_id"]
        for proto, nil in ((2, b"$6\r\nparent\r\n$-1\r\n"), (3, b"$6\r\nparent\r\n_\r\n")):
            with self.gw.client("alice", proto=proto) as c:
                c.send("STATUS", oid)
                head = b"*" if proto == 2 else b"%"
                data = b""
                c.sock.settimeout(5)
                while b"accepted_at" not in data:
                    chunk = c.sock.recv(65536)
                    self.assertTrue(chunk, "connection closed")
                    data += chunk
                self.assertTrue(data.startswith(head), data[:20])
                self.assertIn(nil, data)

    def test_switch_protocol_midway(self):
        with self.gw.client("alice", proto=2) as c:
            self.assertIsInstance(c.call("CHECK", "SGTB", "X1"), list)
            self.assertIsInstance(c.call("HELLO", "3"), Map)
            self.assertIsInstance(c.call("CHECK", "SGTB", "X1"), Map)
            r = c.call("HELLO", "2")
            self.assertIsInstance(r, list)
            self.assertNotIsInstance(c.call("CHECK", "SGTB", "X1"), Map)

    def test_case_insensitive_commands(self):
        with Client(self.gw.port) as c:
            self.assertEqual(c.call("auth", "alice", self.gw.secret("alice")), "OK")
            self.assertEqual(c.call("ping"), "PONG")
            self.assertEqual(c.call("PiNg"), "PONG")
            d = todict(c.ok("stop", self.rid(), "BANK", "SGTB", "ACCOUNT", self.acct("C"), "CASE", "PCI"))
            self.assertEqual(d["status"], "ACCEPTED")
            self.assertEqual(todict(c.ok("Status", d["order_id"]))["order_id"], d["order_id"])
            self.assertEqual(todict(c.ok("check", "SGTB", "X1"))["verdict"], "CLEAR")

    def test_inline_commands(self):
        with Client(self.gw.port) as c:
            c.send_raw(b"PING\r\n")
            self.assertEqual(c.read(), "PONG")
            c.send_raw(b"AUTH alice %s\r\nCHECK SGTB X1\r\n" % self.gw.secret("alice").encode())
            self.assertEqual(c.read(), "OK")
            self.assertEqual(todict(c.read())["verdict"], "CLEAR")

    def test_quit(self):
        with self.gw.client("alice") as c:
            self.assertEqual(c.call("QUIT"), "OK")
            self.assertTrue(c.is_closed())
        self.assertServing()

    def test_ping_echo_binary(self):
        with Client(self.gw.port) as c:
            payload = "\x00\x01 bin\r\nary\xff"
            self.assertEqual(c.call("PING", payload.encode("latin-1")), payload.encode("latin-1").decode(
                "utf-8", "surrogateescape"))


class Pipelining(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 200\n")

    def test_mixed_pipeline_order(self):
        """Durable replies (STOP) and immediate ones (PING, CHECK, errors) interleaved: every
        reply comes back in request order."""
        tag = int(time.time() * 1000) % 10 ** 8
        cmds, expect = [], []
        for i in range(400):
            k = i % 5
            if k == 0:
                cmds.append(["STOP", "pl-%d-%d" % (tag, i), "BANK", "SGTB", "ACCOUNT", "PL%d%05dX" % (tag, i),
                             "CASE", "PLC"])
                expect.append(("stop", i))
            elif k == 1:
                cmds.append(["PING", "p%d" % i])
                expect.append(("ping", "p%d" % i))
            elif k == 2:
                cmds.append(["CHECK", "SGTB", "PL%d%05dX" % (tag, i - 2)])
                expect.append(("check", "PL%d%05dX" % (tag, i - 2)))
            elif k == 3:
                cmds.append(["STOP", "bad-%d" % i, "BANK", "SGTB", "ACCOUNT", "BAD!%d" % i, "CASE", "PLC"])
                expect.append(("err", "ERR BADACCOUNT"))
            else:
                cmds.append(["NOSUCHCMD", str(i)])
                expect.append(("err", "ERR SYNTAX"))
        with self.gw.client("alice") as c:
            replies = c.pipeline(cmds)
        lsns = []
        ids = {}
        for (kind, val), r in zip(expect, replies):
            if kind == "stop":
                d = todict(r)
                self.assertEqual(d["status"], "ACCEPTED")
                lsns.append(d["lsn"])
                ids["PL%d%05dX" % (tag, val)] = d["order_id"]
            elif kind == "ping":
                self.assertEqual(r, val)
            elif kind == "check":
                d = todict(r)
                self.assertEqual(d["verdict"], "FROZEN")
                self.assertEqual(d["order_id"], ids[val])
            else:
                self.assertErr(r, val)
        self.assertEqual(lsns, sorted(lsns))
        self.assertEqual(len(set(ids.values())), 80)

    def test_stop_pipeline_odd_forms(self):
        """The look ahead over pipelined STOPs (check_ahead.h) reads only canonical commands
        and must never change what runs: STOPs in every spelling it may meet (options in any
        order and case, a repeated request id, too few arguments, more arguments than it reads,
        an inline STOP, an argument over the parser's limit skipped mid-pipeline) each get the
        answer they get alone, in order, in one write of 600 commands."""
        tag = time.time_ns() % 10 ** 9
        cmds, expect = [], []
        for i in range(600):
            acct, rid = "OF%d%04dX" % (tag, i), "of-%d-%d" % (tag, i)
            k = i % 8
            if k == 0:
                cmds.append(["STOP", rid, "BANK", "SGTB", "ACCOUNT", acct, "CASE", "OFC"])
                expect.append("ACCEPTED")
            elif k == 1:
                cmds.append(["stop", rid, "case", "OFC", "account", acct.lower(), "bank", "sgtb", "amount", "5"])
                expect.append("ACCEPTED")
            elif k == 2:
                cmds.append(["STOP", "of-%d-%d" % (tag, i - 2), "BANK", "SGTB", "ACCOUNT", "OF%d%04dX" % (tag, i - 2),
                             "CASE", "OFC"])
                expect.append("DUPLICATE")
            elif k == 3:
                cmds.append(["STOP", rid, "BANK", "SGTB", "ACCOUNT"])
                expect.append("ERR SYNTAX")
            elif k == 4:
                cmds.append(["STOP", rid, "BANK", "SGTB", "ACCOUNT", acct, "CASE", "OFC"] + ["NOTE", "n"] * 12)
                expect.append("ERR SYNTAX")  # NOTE given twice
            elif k == 5:
                cmds.append(None)  # inline
                expect.append("ACCEPTED")
            elif k == 6:
                cmds.append(["STOP", rid, "BANK", "SGTB", "ACCOUNT", "X" * 600000, "CASE", "OFC"])
                expect.append("ERR TOOBIG")
            else:
                cmds.append(["STOP", rid, "ACCOUNT", acct, "BANK", "SGTB", "CASE", "OFC", "TTL", "60", "AMOUNT", "7",
                             "CURRENCY", "CNY", "REASON", "R1", "NOTE", "n"])
                expect.append("ACCEPTED")
        wire = []
        for i, c in enumerate(cmds):
            if c is None:
                wire.append(b"STOP of-%d-%d BANK SGTB ACCOUNT OF%d%04dX CASE OFC\r\n" % (tag, i, tag, i))
            else:
                wire.append(encode(*c))
        with self.gw.client("alice") as c:
            c.send_raw(b"".join(wire))
            replies = [c.read() for _ in cmds]
        for i, (want, r) in enumerate(zip(expect, replies)):
            if want.startswith("ERR"):
                self.assertErr(r, want, "command %d: %r" % (i, r))
            else:
                self.assertEqual(todict(r)["status"], want, "command %d: %r" % (i, r))
        self.assertServing()

    def test_fragmented_input(self):
        """Commands split at every byte boundary still parse (incremental parser)."""
        with self.gw.client("alice") as c:
            data = encode("STOP", self.rid(), "BANK", "SGTB", "ACCOUNT", "FRAG0001X", "CASE", "FC") + \
                encode("PING", "after")
            for i in range(len(data)):
                c.send_raw(data[i:i + 1])
                if i % 16 == 0:
                    time.sleep(0.001)
            self.assertEqual(todict(c.read())["status"], "ACCEPTED")
            self.assertEqual(c.read(), "after")

    def test_streamed_stop_pipelines_intact(self):
        """STOPs streamed in chunks on 8 fresh connections at once while the answers are read
        concurrently (durable replies released by group commits while more input arrives):
        every byte of every answer must be a well-formed reply to the right request."""
        tag = time.time_ns() % 10 ** 9
        n, par = 1000, 8
        problems = []

        def conn(rnd, k):
            try:
                c = self.gw.client("alice")
            except Exception as e:
                problems.append("connect: %r" % e)
                return
            rids = ["st-%d-%d-%d-%d" % (tag, rnd, k, i) for i in range(n)]
            chunks = [b"".join(encode("STOP", rids[i], "BANK", "STB", "ACCOUNT", "ST%d%02d%d%04dX" % (tag, rnd, k, i),
                                      "CASE", "STC") for i in range(b, min(b + 150, n))) for b in range(0, n, 150)]

            def writer():
                try:
                    for ch in chunks:
                        c.sock.sendall(ch)
                        time.sleep(0.001)
                except OSError:
                    pass

            t = threading.Thread(target=writer)
            t.start()
            got = 0
            try:
                for i in range(n):
                    d = todict(c.read())
                    if d.get("status") != "ACCEPTED":
                        raise AssertionError("reply %d: %r" % (i, d))
                    got += 1
            except Exception as e:
                problems.append("round %d connection %d, reply %d of %d: %s" % (rnd, k, got, n, repr(e)[:200]))
            t.join(30)
            c.close()

        for rnd in range(10):
            threads = [threading.Thread(target=conn, args=(rnd, k)) for k in range(par)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        self.assertEqual(problems[:3], [], "%d of %d reply streams were corrupted (bytes that are no reply at all)"
                         % (len(problems), 10 * par))
        self.assertServing()

    def test_concurrent_pipelines(self):
        """Several clients pipelining at once each get exactly their replies, in order."""
        errors = []
        tag = int(time.time() * 1000) % 10 ** 8

        def worker(n):
            try:
                with self.gw.client("alice") as c:
                    cmds = []
                    for i in range(300):
                        if i % 2:
                            cmds.append(["PING", "w%d-%d" % (n, i)])
                        else:
                            cmds.append(["STOP", "cp-%d-%d-%d" % (tag, n, i), "BANK", "SGTB", "ACCOUNT",
                                         "CP%d%02d%04dX" % (tag, n, i), "CASE", "CPC%d" % n])
                    replies = c.pipeline(cmds)
                    for i, r in enumerate(replies):
                        if i % 2:
                            assert r == "w%d-%d" % (n, i), (n, i, r)
                        else:
                            d = todict(r)
                            assert d["status"] == "ACCEPTED", d
                            st = todict(c.ok("STATUS", d["order_id"]))
                            assert st["request_id"] == "cp-%d-%d-%d" % (tag, n, i), st
            except Exception as e:  # reported in the main thread
                errors.append("worker %d: %r" % (n, e))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])


def _bulk(s):
    s = s.encode() if isinstance(s, str) else s
    return b"$%d\r\n%s\r\n" % (len(s), s)


def order_answer_bytes(proto, raw):
    """The bytes an order command's answer must be (SPEC §4.1), rebuilt from its values: the
    pairs order_id, status, lists (live orders), expires_at (EXTENDED), lsn, as a RESP3 map
    or a RESP2 flat array."""
    oid = re.search(rb"SG-\d+", raw).group(0)
    status = re.search(rb"\$6\r\nstatus\r\n\$\d+\r\n([A-Z]+)\r\n", raw).group(1)
    lsn = int(re.search(rb"\$3\r\nlsn\r\n:(\d+)\r\n$", raw).group(1))
    pairs = [(b"order_id", _bulk(oid)), (b"status", _bulk(status))]
    if status in (b"ACCEPTED", b"DUPLICATE", b"MERGED", b"HELD"):
        lists = re.search(rb"\$5\r\nlists\r\n\*(\d+)\r\n((?:\$\d+\r\n[a-z_]+\r\n)*)\$3\r\nlsn", raw)
        names = re.findall(rb"\$\d+\r\n([a-z_]+)\r\n", lists.group(2))
        pairs.append((b"lists", b"*%d\r\n" % len(names) + b"".join(_bulk(n) for n in names)))
    if status == b"EXTENDED":
        pairs.append((b"expires_at", b":%s\r\n" % re.search(rb"expires_at\r\n:(\d+)\r\n", raw).group(1)))
    pairs.append((b"lsn", b":%d\r\n" % lsn))
    head = b"%%%d\r\n" % len(pairs) if proto == 3 else b"*%d\r\n" % (2 * len(pairs))
    return head + b"".join(_bulk(k) + v for k, v in pairs), status


class OrderReplyBytes(GatewayCase):
    """The order commands' answers (STOP first) are written in one pass without a map
    walk (issue 13, commands.c w_answer_pairs): byte for byte the same as before, in RESP2
    and RESP3, for every status and the refusals."""
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 200\n[list mule]\nauto_stop = no\n")

    def raw(self, c, *args):
        c.sock.sendall(encode(*args))
        got = b""
        while not (re.search(rb"\$3\r\nlsn\r\n:\d+\r\n$", got) or (got.startswith(b"-") and got.endswith(b"\r\n"))):
            d = c.sock.recv(4096)
            self.assertTrue(d, "connection closed")
            got += d
        return got

    def answer(self, c, proto, want_status, *args):
        got = self.raw(c, *args)
        want, status = order_answer_bytes(proto, got)
        self.assertEqual(got, want)
        self.assertEqual(status, want_status.encode())
        return re.search(rb"SG-\d+", got).group(0).decode()

    def test_order_reply_bytes(self):
        with self.gw.client("olga") as ops:
            for i in (2, 3):
                ops.ok("LIST.ADD", "mule", "SGTB", "BYTESLISTED%d" % i)
        for proto in (2, 3):
            with self.gw.client("alice", proto=proto) as c:
                a = "BYTES%d%d" % (proto, int(time.time() * 1e3) % 10 ** 8)
                rid = self.rid("bytes")
                stop = ("STOP", rid, "BANK", "SGTB", "ACCOUNT", a, "CASE", "BYTES")
                oid = self.answer(c, proto, "ACCEPTED", *stop)
                self.assertEqual(self.answer(c, proto, "DUPLICATE", *stop), oid)
                self.answer(c, proto, "MERGED", "STOP", self.rid("bytes"), "BANK", "SGTB", "ACCOUNT", a, "CASE", "B2")
                got = self.raw(c, "STOP", self.rid("bytes"), "BANK", "SGTB", "ACCOUNT", "BYTESLISTED%d" % proto,
                               "CASE", "BYTES")
                self.assertEqual(got, order_answer_bytes(proto, got)[0])
                self.assertIn(b"$5\r\nlists\r\n*1\r\n$4\r\nmule\r\n", got)
                self.wait_state(c, oid, "CONFIRMED")
                self.answer(c, proto, "EXTENDED", "EXTEND", self.rid("bytes"), oid, "TTL", "86400")
                self.answer(c, proto, "RELEASED", "RELEASE", self.rid("bytes"), oid)
                # Refusals: one error line, the same in both protocols.
                self.assertEqual(self.raw(c, "STOP", self.rid("bytes"), "BANK", "SGTB", "ACCOUNT", a),
                                 b"-ERR SYNTAX wrong number of arguments for 'STOP'\r\n")
                self.assertEqual(self.raw(c, "STOP", self.rid("bytes"), "BANK", "SGTB", "ACCOUNT", a, "NOTE", "x"),
                                 b"-ERR SYNTAX BANK, ACCOUNT and CASE are required\r\n")
                self.assertEqual(self.raw(c, "STOP", rid, "BANK", "SGTB", "ACCOUNT", a + "9", "CASE", "BYTES"),
                                 self.raw(c, "STOP", rid, "BANK", "SGTB", "ACCOUNT", a + "9", "CASE", "BYTES"))
                self.assertEqual(self.raw(c, "RELEASE", self.rid("bytes"), oid)[:11], b"-ERR STATE ")


if __name__ == "__main__":
    sgtest.main()
