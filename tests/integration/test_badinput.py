"""Bad input (SPEC §3, §4.1, §9): every malformed request gets its stable error code, the
connection stays usable where the stream can be resynchronised, and an oversized or garbage
frame never crashes the gateway or blocks other clients."""
import random
import socket
import threading
import time

import sgtest
from sgtest import Client, Closed, GatewayCase, RespError, todict, encode


def stop(rid, bank="SGTB", account="BADIN0001X", case="BC", **opts):
    a = ["STOP", rid, "BANK", bank, "ACCOUNT", account, "CASE", case]
    for k, v in opts.items():
        a += [k.upper(), v]
    return a


class BadFields(GatewayCase):
    def setUp(self):
        self.c = self.gw.client("alice")
        self.total0 = self.gw.info(self.c)["orders_total"]

    def tearDown(self):
        # Refusals create nothing; the connection kept working throughout.
        self.assertEqual(self.c.call("PING"), "PONG")
        self.c.close()
        self.assertServing()

    def refused(self, args, code):
        r = self.c.call(*args)
        self.assertErr(r, code, "%r -> %r" % (args, r))
        return r

    def test_bad_account(self):
        for acc in ("AB$12", "", " - ", "ÄÖ12", "A" * 35, "1" * 129, "ACC\x00123", "ACC.123", "ACC_1"):
            self.refused(stop(self.rid(), account=acc), "ERR BADACCOUNT")
        self.assertEqual(self.gw.info(self.c)["orders_total"], self.total0)
        # The limits themselves are accepted: 34 characters after normalisation.
        d = todict(self.c.ok(*stop(self.rid(), account="A" * 30 + "-" + "1234")))
        self.assertEqual(d["status"], "ACCEPTED")
        self.assertEqual(self.status(self.c, d["order_id"])["account"], "A" * 30 + "1234")

    def test_bad_bank(self):
        for bank in ("", "B" * 12, "BA-NK", "BA NK", "B@NK"):
            self.refused(stop(self.rid(), bank=bank), "ERR BADACCOUNT")
        self.assertEqual(todict(self.c.ok(*stop(self.rid(), bank="B" * 11, account="BADBANK0001X")))["status"],
                         "ACCEPTED")

    def test_bad_amount(self):
        for amt in ("-1", "12.50", "1,5", "abc", "", "1e5", "0x10", "100000000000000001",
                    "99999999999999999999999", " 5"):
            self.refused(stop(self.rid(), account="AMT0001X", amount=amt), "ERR BADAMOUNT")
        self.assertEqual(self.gw.info(self.c)["orders_total"], self.total0)
        d = todict(self.c.ok(*stop(self.rid(), account="AMT0002X", amount="100000000000000000")))
        self.assertEqual(self.status(self.c, d["order_id"])["amount"], 10 ** 17)

    def test_bad_currency(self):
        for ccy in ("EU", "EURO", "", "E1R"):
            r = self.c.call(*stop(self.rid(), account="CCY0001X", amount="5", currency=ccy))
            self.assertIsInstance(r, RespError, ccy)
            self.assertIn(r.code, ("ERR BADAMOUNT", "ERR SYNTAX"), r.line)

    def test_syntax(self):
        R = self.rid
        for args in (
            ["STOP", R(), "BANK", "SGTB", "ACCOUNT", "S0001X", "NOTE", "x"],  # no CASE
            ["STOP", R(), "BANK", "SGTB", "ACCOUNT", "S0001X", "CASE", "C", "AMOUNT"],  # odd pairs
            stop(R(), bogus="1"),
            stop(R(), amount="1", AMOUNT="2"),
            stop(R(), case="C" * 65),
            stop(R(), case="has space"),
            stop(R(), reason="bad reason"),
            stop(R(), note="N" * 1025),
            stop(R(), note="line\nbreak"),
            stop(R(), ttl="0"),
            stop(R(), ttl="-1"),
            stop(R(), ttl="soon"),
            ["STOP", R()],
            ["STOP"],
            ["STATUS"],
            ["STATUS", "SG-1", "extra"],
            ["CHECK", "SGTB"],
            ["CHECK", "SGTB", "A1", "A2"],
            ["NOSUCHCOMMAND", "x"],
            ["SET", "k", "v"],
            ["GET", "k"],
        ):
            self.refused(args, "ERR SYNTAX")
        self.assertEqual(self.gw.info(self.c)["orders_total"], self.total0)

    def test_check_bad_key(self):
        self.refused(["CHECK", "SGTB", "NOT VALID!"], "ERR BADACCOUNT")
        self.refused(["CHECK", "BANK$", "A1"], "ERR BADACCOUNT")

    def test_mcheck_too_many_pairs(self):
        args = ["MCHECK"]
        for i in range(513):
            args += ["SGTB", "MC%05d" % i]
        self.refused(args, "ERR TOOBIG")
        ok = self.c.ok(*args[:1 + 2 * 512])
        self.assertEqual(len(ok), 512)


class Oversized(GatewayCase):
    """Frames over the RESP limits: 1100 arguments, 512 KiB per argument, 4 MiB per client."""

    def test_too_many_arguments(self):
        with self.gw.client("alice") as c:
            args = ["MCHECK"] + ["X%d" % i for i in range(1500)]
            c.send(*args)
            c.send("PING", "next")
            self.assertErr(c.read(), "ERR TOOBIG")
            self.assertEqual(c.read(), "next")  # the rest was skipped, the stream is in sync
            self.assertEqual(todict(c.ok("CHECK", "SGTB", "X1"))["verdict"], "CLEAR")
        self.assertServing()

    def test_bulk_too_big(self):
        with self.gw.client("alice") as c:
            big = b"N" * (600 * 1024)
            c.send_raw(encode(*stop(self.rid(), note=big)) + encode("PING", "after-big"))
            self.assertErr(c.read(), "ERR TOOBIG")
            self.assertEqual(c.read(), "after-big")
            d = todict(c.ok(*stop(self.rid(), account="BIG0001X")))
            self.assertEqual(d["status"], "ACCEPTED")
        self.assertServing()

    def test_big_bulk_trickled_does_not_block_others(self):
        """An over-limit bulk arriving slowly is skipped as it comes; other clients are served
        meanwhile."""
        with self.gw.client("alice") as slow, self.gw.client("alice") as other:
            n = 700 * 1024
            slow.send_raw(b"*2\r\n$4\r\nPING\r\n$%d\r\n" % n)
            sent = 0
            chunk = b"z" * 65536
            while sent < n:
                k = min(len(chunk), n - sent)
                slow.send_raw(chunk[:k])
                sent += k
                t = time.monotonic()
                self.assertEqual(other.call("PING", "meanwhile"), "meanwhile")
                self.assertLess(time.monotonic() - t, 1.0)
            slow.send_raw(b"\r\n")
            self.assertErr(slow.read(), "ERR TOOBIG")
            self.assertEqual(slow.call("PING"), "PONG")

    def test_query_buffer_limit(self):
        """One command larger than the 4 MiB query buffer (every bulk under 512 KiB):
        ERR TOOBIG, the connection is closed, the gateway lives on."""
        c = self.gw.client("alice", timeout=5)
        part = b"p" * (500 * 1024)
        data = encode("PING", *([part] * 10))
        got = []

        def reader():
            try:
                got.append(c.read())
                got.append("closed" if c.is_closed(5) else "open")
            except (Closed, OSError) as e:
                got.append(e)

        t = threading.Thread(target=reader)
        t.start()
        try:
            c.send_raw(data)
        except OSError:
            pass
        t.join(20)
        c.close()
        self.assertTrue(got, "no reply at all")
        self.assertIsInstance(got[0], RespError, got)
        self.assertEqual(got[0].code, "ERR TOOBIG", got[0])
        self.assertEqual(got[1:], ["closed"])
        self.assertServing()

    def test_inline_too_long(self):
        c = Client(self.gw.port)
        c.send_raw(b"PING " + b"x" * (70 * 1024))
        r = c.read()
        self.assertIsInstance(r, RespError)
        self.assertIn(r.code, ("ERR TOOBIG", "ERR SYNTAX"), r.line)
        self.assertTrue(c.is_closed(5))
        c.close()
        self.assertServing()


class Garbage(GatewayCase):
    def test_protocol_errors_close_only_that_connection(self):
        for junk in (b"*abc\r\n", b"*2\r\n:1\r\n:2\r\n", b"*1\r\n$-5\r\n", b"*1\r\n$3\r\nPINGXX\r\n",
                     b"*99999999999\r\n", b"*1\r\n$abc\r\n", b"*" + b"9" * 30 + b"\r\n"):
            with self.gw.client("alice") as c, self.gw.client("alice") as bystander:
                c.send_raw(junk)
                r = c.read()
                self.assertErr(r, "ERR SYNTAX", "junk %r -> %r" % (junk, r))
                self.assertTrue(c.is_closed(5), "connection kept open after %r" % junk)
                self.assertEqual(bystander.call("PING", "still"), "still")
        self.assertServing()

    def test_binary_garbage_inline(self):
        with self.gw.client("alice") as c:
            c.send_raw(b"\x00\x01\xff\xfe\x80garbage\r\n")
            r = c.read()
            self.assertErr(r, "ERR SYNTAX")
            self.assertEqual(c.call("PING"), "PONG")  # an inline line is one bad command, not a broken stream

    def test_random_garbage_many_connections(self):
        rnd = random.Random(1234)
        socks = []
        for i in range(40):
            s = socket.create_connection((sgtest.HOST, self.gw.port), timeout=5)
            s.sendall(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 8192))))
            socks.append(s)
        self.assertServing()
        for s in socks:
            s.close()
        time.sleep(0.2)
        self.assertTrue(self.gw.running, "stopgated died on random garbage")
        self.assertServing()
        m = self.gw.metrics()
        self.assertGreater(m.get("stopgate_errors_total", 0) + m.get("stopgate_protocol_errors_total", 0), 0)

    def test_half_command_does_not_block_others(self):
        with self.gw.client("alice") as stuck:
            stuck.send_raw(b"*8\r\n$4\r\nSTOP\r\n$3\r\nabc\r\n$4\r\nBA")
            t = time.monotonic()
            self.assertServing()
            self.assertLess(time.monotonic() - t, 2)
            # It completes later and is answered.
            stuck.send_raw(b"NK\r\n$4\r\nSGTB\r\n$7\r\nACCOUNT\r\n$8\r\nHALF001X\r\n$4\r\nCASE\r\n$2\r\nHC\r\n")
            self.assertEqual(todict(stuck.read())["status"], "ACCEPTED")

    def test_client_not_reading_replies(self):
        """A client pipelining far more than it reads is throttled; others are not."""
        hog = self.gw.client("alice")
        hog.settimeout(0.5)
        payload = encode("PING", "y" * 1000) * 2000  # ~2 MB request, ~2 MB of replies
        stop_flag = threading.Event()

        def flood():
            try:
                while not stop_flag.is_set():
                    hog.send_raw(payload)
            except OSError:
                pass

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            time.sleep(1.0)
            for _ in range(5):
                t0 = time.monotonic()
                self.assertServing()
                self.assertLess(time.monotonic() - t0, 2.0)
        finally:
            stop_flag.set()
            hog.close()
            t.join(5)
        self.assertTrue(self.gw.running)

    def test_abrupt_disconnect_mid_pipeline(self):
        tag = int(time.time() * 1000) % 10 ** 8
        for _ in range(5):
            s = socket.create_connection((sgtest.HOST, self.gw.port))
            s.sendall(encode("AUTH", "alice", self.gw.secret("alice")) +
                      b"".join(encode(*stop("ab-%d-%d" % (tag, i), account="AB%d%04d" % (tag, i)))
                               for i in range(500)))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST
        time.sleep(0.3)
        self.assertTrue(self.gw.running)
        self.assertServing()


if __name__ == "__main__":
    sgtest.main()
