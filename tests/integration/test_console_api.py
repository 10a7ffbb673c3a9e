"""The agents' console JSON API (SPEC §12, docs/console.md), by itself, with http.client
against a running stopgated: sign-in (401/200, cookie flags), the CSRF token on POST,
CASE/STATUS/CHECK as JSON equal to the RESP replies, the STOP answer, roles refused exactly
as over RESP, an SSE event per durable change of a case's orders (a 3-level cascade), bad
input answered with a clear error, an oversized request refused while the gateway (and
other connections) stay fine, logout and session expiry, the static page and its headers."""
import http.client
import json
import socket
import ssl
import time
import unittest

import sgtest
from sgtest import Gateway, GatewayCase, todict, wait_until

AGENTS = dict(sgtest.DEFAULT_AGENTS)


class Console(object):
    """One browser-like client: a cookie jar of one cookie and the CSRF token."""

    def __init__(self, port):
        self.port = port
        self.cookie = None
        self.csrf = None
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)

    def close(self):
        self.conn.close()

    def request(self, method, path, body=None, headers=None, csrf=True, raw_body=None):
        h = dict(headers or {})
        if self.cookie:
            h["Cookie"] = "sg_session=" + self.cookie
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if method == "POST" and csrf and self.csrf:
            h.setdefault("X-CSRF-Token", self.csrf)
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        text = r.read().decode()
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            doc = text
        return r.status, r, doc

    def login(self, agent, secret):
        st, r, doc = self.request("POST", "/api/login", {"agent": agent, "secret": secret})
        if st == 200:
            sc = r.getheader("Set-Cookie")
            self.cookie = sc.split(";")[0].split("=", 1)[1]
            self.csrf = doc["csrf"]
        return st, r, doc


class ConsoleApi(GatewayCase):
    GW_ARGS = dict(sections="[plugin sim]\nlatency_us = 300\n")

    def console(self, agent=None):
        c = Console(self.gw.console_port)
        self.addCleanup(c.close)
        if agent:
            st, _, doc = c.login(agent, AGENTS[agent][1])
            self.assertEqual(st, 200, doc)
        return c

    def assertApiErr(self, got, status, code):
        st, _, doc = got
        self.assertEqual(st, status, doc)
        self.assertEqual(doc["error"], code, doc)
        self.assertTrue(doc["reason"].strip(), doc)

    def test_login(self):
        c = self.console()
        self.assertApiErr(c.login("alice", "wrong"), 401, "WRONGPASS")
        self.assertApiErr(c.login("nobody", "x"), 401, "WRONGPASS")
        self.assertApiErr(c.request("POST", "/api/login", {"agent": "alice"}), 400, "ERR SYNTAX")
        self.assertApiErr(c.request("POST", "/api/login", raw_body=b"agent=alice",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"}),
                          415, "ERR SYNTAX")
        st, r, doc = c.login("sam", AGENTS["sam"][1])
        self.assertEqual(st, 200, doc)
        flags = [f.strip() for f in r.getheader("Set-Cookie").split(";")]
        self.assertIn("HttpOnly", flags)
        self.assertIn("SameSite=Strict", flags)
        self.assertIn("Path=/", flags)
        self.assertNotIn("Secure", flags)  # plain HTTP here; Secure comes with TLS
        self.assertRegex(c.cookie, r"^[0-9a-f]{64}$")
        self.assertEqual((doc["agent"], doc["role"]), ("sam", "supervisor"))
        self.assertRegex(doc["csrf"], r"^[0-9a-f]{64}$")
        self.assertNotEqual(doc["csrf"], c.cookie)
        st, _, me = c.request("GET", "/api/me")
        self.assertEqual((st, me["agent"], me["csrf"]), (200, "sam", doc["csrf"]))
        # The sign-in went through the gateway's own AUTH: failures are counted and logged.
        self.assertIn("auth failed for agent 'alice' from 127.0.0.1", self.gw.log())
        st, body = sgtest.http_get(self.gw.metrics_port, "/metrics")
        m = sgtest.parse_metrics(body)
        self.assertGreaterEqual(m["stopgate_console_logins_total"], 1)
        self.assertGreaterEqual(m["stopgate_console_login_failures_total"], 2)
        self.assertGreaterEqual(m["stopgate_console_sessions"], 1)
        self.assertIn("# HELP stopgate_console_sessions ", body)

    def test_needs_session(self):
        c = self.console()
        self.assertApiErr(c.request("GET", "/api/case/C1"), 401, "NOAUTH")
        c.cookie = "0" * 64
        self.assertApiErr(c.request("GET", "/api/order/SG-1"), 401, "NOAUTH")
        c.csrf = "0" * 64
        self.assertApiErr(c.request("POST", "/api/stop", {"request_id": "x"}), 401, "NOAUTH")

    def test_csrf(self):
        c = self.console("alice")
        case = self.rid("csrf")
        form = {"request_id": self.rid(), "bank": "SGTB", "account": "CSRF0001X", "case": case}
        self.assertApiErr(c.request("POST", "/api/stop", form, csrf=False), 403, "CSRF")
        self.assertApiErr(c.request("POST", "/api/stop", form, headers={"X-CSRF-Token": "f" * 64}), 403, "CSRF")
        self.assertApiErr(c.request("POST", "/api/stop", raw_body=json.dumps(form).encode(),
                                    headers={"Content-Type": "text/plain"}), 415, "ERR SYNTAX")
        self.assertApiErr(c.request("POST", "/api/stop", form, headers={"Origin": "http://evil.example"}),
                          403, "CSRF")
        self.assertApiErr(c.request("POST", "/api/login", {"agent": "alice", "secret": AGENTS["alice"][1]},
                                    headers={"Origin": "http://evil.example"}), 403, "CSRF")
        # Nothing was ordered.
        self.assertApiErr(c.request("GET", "/api/case/" + case), 404, "ERR NOTFOUND")
        origin = "http://127.0.0.1:%d" % self.gw.console_port  # what a browser on the page sends
        st, _, doc = c.request("POST", "/api/stop", form, headers={"Origin": origin, "Host": origin[7:]})
        self.assertEqual((st, doc["status"]), (200, "ACCEPTED"), doc)

    def test_stop_case_order_check(self):
        c = self.console("alice")
        case = self.rid("case")
        rid = self.rid()
        st, _, ans = c.request("POST", "/api/stop", {"request_id": rid, "bank": "SGTB", "account": "4455-6677 0009",
                                                     "case": case, "amount": 12345, "reason": "FRAUD"})
        self.assertEqual(st, 200, ans)
        self.assertEqual(ans["status"], "ACCEPTED")
        self.assertRegex(ans["order_id"], r"^SG-\d+$")
        self.assertIsInstance(ans["lsn"], int)
        st, _, again = c.request("POST", "/api/stop", {"request_id": rid, "bank": "SGTB", "account": "4455-6677 0009",
                                                       "case": case, "amount": "12345", "reason": "FRAUD"})
        self.assertEqual((st, again["status"], again["order_id"]), (200, "DUPLICATE", ans["order_id"]))
        with self.gw.client("alice") as r:
            self.wait_state(r, ans["order_id"], "CONFIRMED")
            st, _, order = c.request("GET", "/api/order/" + ans["order_id"])
            self.assertEqual(st, 200)
            self.assertEqual(order, todict(r.ok("STATUS", ans["order_id"])), "the JSON is the RESP reply")
            self.assertEqual((order["account"], order["amount"], order["frozen"]), ("445566770009", 12345, 12345))
            st, _, cs = c.request("GET", "/api/case/" + case)
            self.assertEqual(st, 200)
            self.assertEqual(cs["case"], case)
            self.assertEqual([o["order_id"] for o in cs["orders"]], [ans["order_id"]])
            self.assertEqual(cs["frozen_total"], 12345)
        st, _, chk = c.request("GET", "/api/check/SGTB/445566770009")
        self.assertEqual((st, chk["verdict"], chk["order_id"]), (200, "FROZEN", ans["order_id"]))
        st, _, chk = c.request("GET", "/api/check/SGTB/CLEAN%2001")
        self.assertEqual((st, chk["verdict"], chk["order_id"]), (200, "CLEAR", None))

    def test_roles_as_resp(self):
        sam, alice, scott, olga = (self.console(a) for a in ("sam", "alice", "scott", "olga"))
        case = self.rid("roles")
        st, _, held = sam.request("POST", "/api/stop", {"request_id": self.rid(), "bank": "SGTB",
                                                        "account": "ROLE0001", "case": case})
        self.assertEqual(st, 200, held)
        self.assertApiErr(scott.request("GET", "/api/case/" + case), 403, "NOPERM")
        self.assertApiErr(olga.request("POST", "/api/stop", {"request_id": self.rid(), "bank": "SGTB",
                                                             "account": "ROLE0002", "case": case}), 403, "NOPERM")
        self.assertApiErr(alice.request("POST", "/api/confirm", {"order_id": held["order_id"]}), 403, "NOPERM")
        # An agent may not RELEASE another agent's order: the same refusal as over RESP.
        got = alice.request("POST", "/api/release", {"request_id": self.rid(), "order_id": held["order_id"]})
        with self.gw.client("alice") as r:
            resp = r.call("RELEASE", self.rid(), held["order_id"])
        self.assertIsInstance(resp, sgtest.RespError)
        self.assertEqual(got[2]["error"], resp.code, got)
        self.assertIn(got[0], (403, 409, 400))
        st, _, rel = sam.request("POST", "/api/release", {"request_id": self.rid(), "order_id": held["order_id"],
                                                          "reason": "MISTAKE"})
        self.assertEqual((st, rel["status"]), (200, "RELEASED"), rel)

    def test_held_confirm_freeze_extend(self):
        alice, sam = self.console("alice"), self.console("sam")
        case = self.rid("held")
        acct = "HELD%dX" % (time.time() * 1000 % 100000000)
        with self.gw.client("olga") as ops:
            self.assertNotIsInstance(ops.call("LIST.ADD", "protected", "SGTB", acct), sgtest.RespError)
        st, _, held = alice.request("POST", "/api/stop", {"request_id": self.rid(), "bank": "SGTB",
                                                          "account": acct, "case": case})
        self.assertEqual((st, held["status"], held["lists"]), (200, "HELD", ["protected"]), held)
        self.assertApiErr(alice.request("POST", "/api/confirm", {"order_id": held["order_id"]}), 403, "NOPERM")
        st, _, conf = sam.request("POST", "/api/confirm", {"order_id": held["order_id"]})
        self.assertEqual((st, conf["status"]), (200, "CONFIRMED"), conf)
        # FREEZE needs its legal document; EXTEND of one's own order.
        form = {"request_id": self.rid(), "bank": "SGTB", "account": "FRZ%dX" % (time.time() * 1000 % 10000000),
                "case": case}
        self.assertApiErr(alice.request("POST", "/api/freeze", form), 400, "ERR SYNTAX")
        st, _, frz = alice.request("POST", "/api/freeze", dict(form, doc="COURT-2026-17"))
        self.assertEqual((st, frz["status"]), (200, "ACCEPTED"), frz)
        st, _, ext = alice.request("POST", "/api/extend", {"request_id": self.rid(), "order_id": frz["order_id"],
                                                           "ttl": 86400})
        self.assertEqual((st, ext["status"]), (200, "EXTENDED"), ext)
        self.assertIsInstance(ext["expires_at"], int)
        st, _, order = alice.request("GET", "/api/order/" + frz["order_id"])
        self.assertEqual((order["kind"], order["doc"]), ("FREEZE", "COURT-2026-17"))

    def read_events(self, sock, want, timeout=15.0):
        """SSE events from sock until want(events) says enough; [(type, data, t_arrival_ms)]."""
        sock.settimeout(0.5)
        buf, events, deadline = b"", [], time.monotonic() + timeout
        while time.monotonic() < deadline and not want(events):
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            self.assertTrue(chunk, "stream closed")
            buf += chunk
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                ev, data = "message", None
                for line in block.decode().split("\n"):
                    if line.startswith("event: "):
                        ev = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                events.append((ev, data, time.time() * 1000))
        return events

    def test_events_follow_the_cascade(self):
        c = self.console("alice")
        case = self.rid("sse")
        s = socket.create_connection(("127.0.0.1", self.gw.console_port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(("GET /api/events?case=%s HTTP/1.1\r\nHost: x\r\nCookie: sg_session=%s\r\n\r\n"
                   % (case, c.cookie)).encode())
        head = self.read_events(s, lambda ev: any(e[0] == "hello" for e in ev), timeout=5)
        self.assertTrue(any(e[0] == "hello" and e[1]["case"] == case for e in head), head)
        # M002 -> M001 -> M000: FUNDS_MOVED twice, then CONFIRMED at level 2 (SPEC §2b).
        st, _, ans = c.request("POST", "/api/stop", {"request_id": self.rid(), "bank": "SGTB",
                                                     "account": "SSE0000M002", "case": case, "amount": 50000})
        self.assertEqual(st, 200, ans)

        def final(events):
            last = {}
            for ev, d, _ in events:
                if ev == "order":
                    last[d["order_id"]] = d
            done = [d for d in last.values() if d["state"] == "CONFIRMED" and d["level"] == 2]
            return last if done and len(last) == 3 else None

        events = self.read_events(s, final)
        last = final(events)
        self.assertIsNotNone(last, [e[:2] for e in events])
        by_level = {d["level"]: d for d in last.values()}
        self.assertEqual([by_level[k]["account"] for k in (0, 1, 2)], ["SSE0000M002", "SSE0000M001", "SSE0000M000"])
        self.assertEqual([by_level[k]["state"] for k in (0, 1, 2)], ["FUNDS_MOVED", "FUNDS_MOVED", "CONFIRMED"])
        self.assertEqual(by_level[2]["frozen"], 50000)
        self.assertEqual(by_level[1]["parent"], by_level[0]["order_id"])
        # Latency from the bank's answer (answered_at, gateway clock) to the event's arrival.
        lat = [t - d["answered_at"] for ev, d, t in events if ev == "order" and d.get("answered_at")]
        print("console SSE: bank answer -> event: max %.1f ms over %d events" % (max(lat), len(lat)))
        self.assertLess(max(lat), 1000)

    def test_bad_input(self):
        c = self.console("alice")
        post = lambda path, body: c.request("POST", path, body)
        self.assertApiErr(c.request("POST", "/api/stop", raw_body=b"{not json",
                                    headers={"Content-Type": "application/json"}), 400, "ERR SYNTAX")
        self.assertApiErr(post("/api/stop", [1, 2]), 400, "ERR SYNTAX")
        self.assertApiErr(post("/api/stop", {"request_id": "a", "bank": "SGTB", "account": "A1", "case": "C",
                                             "colour": "red"}), 400, "ERR SYNTAX")
        self.assertApiErr(post("/api/stop", {"request_id": "a", "bank": "SGTB", "case": "C"}), 400, "ERR SYNTAX")
        self.assertApiErr(post("/api/stop", {"request_id": self.rid(), "bank": "SGTB", "account": "BAD/ACCT!",
                                             "case": "C"}), 400, "ERR BADACCOUNT")
        self.assertApiErr(post("/api/stop", {"request_id": self.rid(), "bank": "SGTB", "account": "A1", "case": "C",
                                             "amount": 1.5}), 400, "ERR SYNTAX")
        self.assertApiErr(post("/api/stop", {"request_id": self.rid(), "bank": "SGTB", "account": "A1", "case": "C",
                                             "amount": "-3"}), 400, "ERR BADAMOUNT")
        self.assertApiErr(c.request("GET", "/api/order/SG-999999999"), 404, "ERR NOTFOUND")
        self.assertApiErr(c.request("GET", "/api/check/SGTB"), 400, "ERR SYNTAX")
        self.assertApiErr(c.request("GET", "/api/nothing"), 404, "ERR NOTFOUND")
        self.assertApiErr(c.request("DELETE", "/api/case/X"), 405, "ERR SYNTAX")
        self.assertApiErr(c.request("GET", "/api/events?case=has%20space"), 400, "ERR SYNTAX")
        st, _, me = c.request("GET", "/api/me")  # the same keep-alive connection is still fine
        self.assertEqual(st, 200)

    def raw(self, data, read_all=True):
        s = socket.create_connection(("127.0.0.1", self.gw.console_port), timeout=5)
        try:
            s.sendall(data)
            out = b""
            while read_all:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    def test_oversized_and_garbage(self):
        c = self.console("alice")  # a session on its own connection, across the abuse
        big_head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
        out = self.raw(big_head)
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:80])
        self.assertIn(b"Connection: close", out)
        out = self.raw(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100000\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:80])
        out = self.raw(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:80])
        out = self.raw(b"POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 501 "), out[:80])
        out = self.raw(b"GET / HTTP/1.1\nHost: x\n\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:80])
        # Everyone else is still served: the signed-in connection, a new one, RESP.
        st, _, me = c.request("GET", "/api/me")
        self.assertEqual(st, 200)
        st, _, _ = self.console().request("GET", "/")
        self.assertEqual(st, 200)
        self.assertServing()

    def test_pipelined_requests(self):
        c = self.console("alice")
        req = ("GET /api/me HTTP/1.1\r\nHost: x\r\nCookie: sg_session=%s\r\n\r\n" % c.cookie).encode()
        out = self.raw(req * 2 + b"GET /api/health HTTP/1.1\r\nHost: x\r\nCookie: sg_session=" +
                       c.cookie.encode() + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(out.count(b"HTTP/1.1 200 OK"), 3, out)
        self.assertIn(b'"phase":"running"', out)

    def test_logout(self):
        c = self.console("alice")
        before = self.resp_clients()
        st, r, doc = c.request("POST", "/api/logout", {})
        self.assertEqual(st, 200, doc)
        self.assertIn("Max-Age=0", r.getheader("Set-Cookie"))
        self.assertApiErr(c.request("GET", "/api/me"), 401, "NOAUTH")
        wait_until(lambda: self.resp_clients() < before, what="the session's RESP connection to close")

    def resp_clients(self):
        st, body = sgtest.http_get(self.gw.metrics_port, "/metrics")
        return sgtest.parse_metrics(body)["stopgate_connections_open"]

    def test_static_page(self):
        c = self.console()
        for path in ("/", "/case/CASE-2026-1"):
            st, r, body = c.request("GET", path)
            self.assertEqual(st, 200)
            self.assertTrue(r.getheader("Content-Type").startswith("text/html"))
            self.assertIn("default-src 'none'", r.getheader("Content-Security-Policy"))
            self.assertEqual(r.getheader("X-Frame-Options"), "DENY")
            self.assertIn('<svg id="tree"', body)
        st, r, body = c.request("GET", "/assets/app.js")
        self.assertEqual((st, r.getheader("Content-Type")), (200, "text/javascript; charset=utf-8"))
        self.assertIn("EventSource", body)
        self.assertApiErr(c.request("GET", "/assets/nope.js"), 404, "ERR NOTFOUND")
        self.assertApiErr(c.request("POST", "/", {}), 405, "ERR SYNTAX")


class ConsoleExpiry(GatewayCase):
    GW_ARGS = dict(gateway={"console_session_ttl": "2"})

    def test_session_expires(self):
        c = Console(self.gw.console_port)
        self.addCleanup(c.close)
        st, r, doc = c.login("alice", AGENTS["alice"][1])
        self.assertEqual(st, 200, doc)
        self.assertIn("Max-Age=2", r.getheader("Set-Cookie"))
        self.assertEqual(c.request("GET", "/api/me")[0], 200)
        time.sleep(2.3)
        st, _, doc = c.request("GET", "/api/me")
        self.assertEqual((st, doc["error"]), (401, "NOAUTH"))


class ConsoleOff(GatewayCase):
    GW_ARGS = dict(gateway={"console": "off"})

    def test_off(self):
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.gw.console_port), timeout=2).close()
        self.assertServing()


class ConsoleTls(unittest.TestCase):
    """With tls_cert/tls_key set the console speaks HTTPS only, with the same certificate as
    RESP over TLS (here without tls_listen: the certificate alone turns it on), and the
    session cookie is Secure."""

    @classmethod
    def setUpClass(cls):
        import test_tls
        d = sgtest.make_temp_dir("sgtest-console-certs-")
        ca = test_tls.make_ca(d, "ca")
        server = test_tls.make_cert(d, "server", ca, "serverAuth", "IP:127.0.0.1,DNS:localhost")
        cls.cafile = ca[1]
        cls.gw = sgtest.track(Gateway(name="ConsoleTls", gateway={"tls_cert": server[1], "tls_key": server[0]}))
        cls.gw.start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.close()

    def test_https_and_secure_cookie(self):
        ctx = ssl.create_default_context(cafile=self.cafile)
        c = Console(self.gw.console_port)
        c.conn = http.client.HTTPSConnection("127.0.0.1", self.gw.console_port, timeout=15, context=ctx)
        self.addCleanup(c.close)
        st, r, doc = c.login("alice", AGENTS["alice"][1])
        self.assertEqual(st, 200, doc)
        self.assertIn("Secure", [f.strip() for f in r.getheader("Set-Cookie").split(";")])
        case = "TLS-%d" % time.time()
        st, _, ans = c.request("POST", "/api/stop", {"request_id": case, "bank": "SGTB", "account": "TLS0001",
                                                     "case": case})
        self.assertEqual((st, ans["status"]), (200, "ACCEPTED"), ans)
        st, _, cs = c.request("GET", "/api/case/" + case)
        self.assertEqual((st, cs["orders"][0]["order_id"]), (200, ans["order_id"]))
        st, r, body = c.request("GET", "/")
        self.assertEqual(st, 200)
        self.assertIn("<svg", body)
        # Plain HTTP on the HTTPS port gets nothing it could take for an answer.
        s = socket.create_connection(("127.0.0.1", self.gw.console_port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = s.recv(100)
        except OSError:
            got = b""
        s.close()
        self.assertFalse(got.startswith(b"HTTP/1.1 200"), got)
        # And the HTTPS side still works afterwards.
        self.assertEqual(c.request("GET", "/api/me")[0], 200)


class ConsoleIdleTimeout(GatewayCase):
    """[gateway] idle_timeout closes idle RESP clients; a session's own is kept alive."""
    GW_ARGS = dict(gateway={"idle_timeout": "3"})

    def test_session_survives_idle_timeout(self):
        c = Console(self.gw.console_port)
        self.addCleanup(c.close)
        self.assertEqual(c.login("alice", AGENTS["alice"][1])[0], 200)
        time.sleep(4.5)
        c.conn.close()  # the HTTP connection may have idled out (60 s); the session must not
        st, _, doc = c.request("GET", "/api/order/SG-424242")
        self.assertEqual((st, doc["error"]), (404, "ERR NOTFOUND"), doc)


if __name__ == "__main__":
    sgtest.main()
