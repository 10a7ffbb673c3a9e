"""TLS on RESP (SPEC §11, issue 15 item 3): [gateway] tls_listen beside the plain listener.

Certificates are made here with the `openssl` command: a CA, a server certificate for
127.0.0.1 / localhost, a client certificate, and a second CA with a client certificate of its
own. Checked: redis-cli --tls (AUTH, PING, STOP, STATUS, a pipelined burst of 1,000 STOPs all
answered), stopctl --tls, a CASE reply of a few MB arriving intact, garbage and stalled
handshakes neither delaying a plain or TLS client nor living past the handshake deadline, the
metrics, --check-config on a bad pair; with tls_ca: no client certificate, or one from
another CA, is refused, a good one works. The plain port keeps working alongside."""
import json
import os
import re
import socket
import ssl
import subprocess
import time
import unittest

import sgtest
from sgtest import Client, Closed, Gateway, GatewayCase, RespError, todict

REDIS_CLI = "redis-cli"
HANDSHAKE_DEADLINE_S = 5  # TLS_HANDSHAKE_MS_MAX (gateway/core/limits.h)


def sh(*argv, cwd=None):
    r = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(argv), r.stderr))
    return r.stdout


def make_ca(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=sgtest " + name,
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


def make_cert(d, name, ca, usage, san=None):
    key, csr, crt = (os.path.join(d, name + x) for x in (".key", ".csr", ".crt"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % usage)
        f.write("subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        if san:
            f.write("subjectAltName=%s\n" % san)
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
       "-out", csr, "-subj", "/CN=" + name)
    sh("openssl", "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial", "-out", crt,
       "-days", "2", "-extfile", ext)
    return key, crt


class Certs(object):
    """Everything the tests need, made once per process."""
    _made = None

    @classmethod
    def get(cls):
        if cls._made is None:
            c = cls()
            c.dir = sgtest.make_temp_dir("sgtest-tls-certs-")
            c.ca = make_ca(c.dir, "ca")
            c.other_ca = make_ca(c.dir, "otherca")
            c.server = make_cert(c.dir, "server", c.ca, "serverAuth", "IP:127.0.0.1,DNS:localhost")
            c.client = make_cert(c.dir, "client", c.ca, "clientAuth")
            c.stranger = make_cert(c.dir, "stranger", c.other_ca, "clientAuth")
            cls._made = c
        return cls._made


class TlsClient(sgtest.Client):
    """sgtest's RESP client over TLS (Python's ssl module)."""

    def __init__(self, port, cafile, cert=None, host=sgtest.HOST, timeout=15.0, server_hostname="localhost"):
        ctx = ssl.create_default_context(cafile=cafile)
        if cert:
            ctx.load_cert_chain(cert[1], cert[0])
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        self.buf = bytearray()
        self.pos = 0
        self.proto = 2


def tls_gateway_opts(certs, port, ca=False):
    g = {"tls_listen": "%s:%d" % (sgtest.HOST, port), "tls_cert": certs.server[1], "tls_key": certs.server[0]}
    if ca:
        g["tls_ca"] = certs.ca[1]
    return g


def redis_cli(port, cafile, stdin=None, args=(), cert=None, pipe=False, timeout=60):
    argv = [REDIS_CLI, "--tls", "--cacert", cafile, "-h", sgtest.HOST, "-p", str(port)]
    if cert:
        argv += ["--cert", cert[1], "--key", cert[0]]
    if pipe:
        argv.append("--pipe")
    argv += list(args)
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                          text=not isinstance(stdin, bytes))


class TlsGatewayCase(GatewayCase):
    """A gateway with tls_listen; the test class says whether client certificates are required."""
    REQUIRE_CLIENT_CERT = False

    @classmethod
    def setUpClass(cls):
        cls.certs = Certs.get()
        cls.tls_port = sgtest.free_port()
        cls.GW_ARGS = dict(gateway=tls_gateway_opts(cls.certs, cls.tls_port, ca=cls.REQUIRE_CLIENT_CERT))
        super().setUpClass()

    def tls_client(self, agent="alice", cert=None):
        c = TlsClient(self.tls_port, self.certs.ca[1], cert=cert)
        if agent:
            c.auth(agent, self.gw.secret(agent))
        return c


class TlsTest(TlsGatewayCase):
    def test_redis_cli_auth_ping_stop_status(self):
        rid = self.rid("tls")
        script = ("AUTH alice %s\nPING\nSTOP %s BANK SGTB ACCOUNT TLS0000Z CASE TLSCASE\n"
                  % (self.gw.secret("alice"), rid))
        r = redis_cli(self.tls_port, self.certs.ca[1], stdin=script)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split("\n")
        self.assertEqual(lines[0], "OK", r.stdout)
        self.assertEqual(lines[1], "PONG", r.stdout)
        m = re.search(r"order_id\n(SG-\d+)\n", r.stdout)
        self.assertTrue(m, r.stdout)
        self.assertIn("ACCEPTED", r.stdout)
        r = redis_cli(self.tls_port, self.certs.ca[1],
                      stdin="AUTH alice %s\nSTATUS %s\n" % (self.gw.secret("alice"), m.group(1)))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"state\n(ACCEPTED|SENT|CONFIRMED)\n")
        self.assertIn("TLS0000Z", r.stdout)

    def test_redis_cli_pipelined_burst_of_1000_stops(self):
        # AUTH by redis-cli itself (--user/--pass); an AUTH at the head of the piped stream
        # works too (test_pipeline_behind_auth_waits_like_on_the_plain_port).
        payload = b""
        tag = self.rid("burst")
        for i in range(1000):
            payload += sgtest.encode("STOP", "%s-%d" % (tag, i), "BANK", "SGTB", "ACCOUNT", "TLSB%06dZ" % i,
                                     "CASE", "TLSBURST")
        r = redis_cli(self.tls_port, self.certs.ca[1], stdin=payload, pipe=True,
                      args=("--user", "alice", "--pass", self.gw.secret("alice"), "--no-auth-warning"))
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("errors: 0, replies: 1000", out)
        # Every one is an order of its own, durable: the case holds all 1,000.
        with self.gw.client("alice") as c:
            d = todict(c.ok("CASE", "TLSBURST"))
            self.assertEqual(len(d["orders"]), 1000)

    def test_pipeline_behind_auth_waits_like_on_the_plain_port(self):
        # AUTH then 1,000 STOPs (~117 KB) in one write: the pipeline waits (in OpenSSL, as in
        # the socket on the plain port) while the AUTH is verified, then runs; the pre-auth
        # input cap (4 KiB) is not hit by it on either port (before: ERR TOOBIG over TLS).
        for port in ("plain", "tls"):
            tag = self.rid("pa" + port)
            payload = sgtest.encode("AUTH", "alice", self.gw.secret("alice"))
            for i in range(1000):
                payload += sgtest.encode("STOP", "%s-%d" % (tag, i), "BANK", "SGTB", "ACCOUNT",
                                         "TLW%s%06dZ" % (port[0].upper(), i), "CASE", "TLSPA" + port.upper())
            c = Client(self.gw.port, timeout=30) if port == "plain" else TlsClient(self.tls_port, self.certs.ca[1])
            with c:
                c.send_raw(payload)
                replies = [c.read() for _ in range(1001)]
            self.assertEqual(replies[0], "OK", port)
            self.assertEqual({todict(r)["status"] for r in replies[1:]}, {"ACCEPTED"}, port)

    def test_own_client_pipelines_and_gets_answers_in_order(self):
        with self.tls_client() as c:
            tag = self.rid("pl")
            replies = c.pipeline([["STOP", "%s-%d" % (tag, i), "BANK", "SGTB", "ACCOUNT", "TLSP%06dZ" % i,
                                   "CASE", "TLSPIPE"] for i in range(300)] + [["PING"]])
            self.assertEqual(replies[-1], "PONG")
            for r in replies[:-1]:
                self.assertEqual(todict(r)["status"], "ACCEPTED")

    def test_stopctl_tls(self):
        tls = ["--tls", "--cacert", self.certs.ca[1]]
        r = self.gw.stopctl(*tls, "stop", "--request-id", self.rid("ctl"), "--bank", "SGTB", "--account",
                            "TLSCTL01", "--case", "TLSCTL", port=self.tls_port, json_out=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"status": "ACCEPTED"', r.stdout.replace('":"', '": "'))
        r = self.gw.stopctl(*tls, "--sni", "localhost", "check", "SGTB", "TLSCTL01", port=self.tls_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("FROZEN", r.stdout)
        # The server certificate must match: a CA that did not sign it is refused (exit 3).
        r = self.gw.stopctl("--tls", "--cacert", self.certs.other_ca[1], "check", "SGTB", "X1",
                            port=self.tls_port)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("certificate", r.stderr)
        # Plain stopctl against the TLS port does not hang: the server drops the garbage.
        r = self.gw.stopctl("check", "SGTB", "X1", port=self.tls_port, timeout=20)
        self.assertNotEqual(r.returncode, 0)

    def test_stopbench_tls(self):
        bench = os.environ.get("STOPBENCH") or os.path.join(os.path.dirname(os.path.dirname(sgtest.STOPGATED)),
                                                            "bench", "stopbench")
        if not os.path.exists(bench):
            self.skipTest("no stopbench at %s" % bench)
        report = os.path.join(self.certs.dir, "stopbench.json")
        env = dict(os.environ, STOPGATE_SECRET=self.gw.secret("alice"))
        for op in ("check", "stop"):
            r = subprocess.run([bench, "-h", sgtest.HOST, "-p", str(self.tls_port), "--agent", "alice", "--tls",
                                "--cacert", self.certs.ca[1], "--op", op, "--requests", "500", "-c", "4", "-P", "4",
                                "--quiet", "--json", report], capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(report) as f:
                d = json.load(f)
            self.assertEqual(d["errors"], 0, d)
            self.assertEqual(d["requests"], 500, d)
        # A server certificate from a CA it was not told to trust: cannot connect (exit 3).
        r = subprocess.run([bench, "-h", sgtest.HOST, "-p", str(self.tls_port), "--agent", "alice", "--tls",
                            "--cacert", self.certs.other_ca[1], "--op", "check", "--requests", "10", "--quiet"],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("certificate", r.stderr)

    def test_large_case_reply_arrives_intact(self):
        case = "TLSBIG"
        tag = self.rid("big")
        with self.gw.client("alice") as plain:
            for start in range(0, 4000, 1000):
                rs = plain.pipeline([["STOP", "%s-%d" % (tag, i), "BANK", "SGTB", "ACCOUNT", "TLSL%06dZ" % i,
                                      "CASE", case, "NOTE", "x" * 200] for i in range(start, start + 1000)])
                self.assertTrue(all(not isinstance(r, RespError) for r in rs))
            # The simulated bank moves the orders on (SENT -> CONFIRMED) meanwhile: compare a
            # TLS reply taken between two equal plain ones.
            with self.tls_client() as c:
                for _ in range(20):
                    want = plain.call("CASE", case)
                    got = c.call("CASE", case)
                    if plain.call("CASE", case) == want:
                        break
                    time.sleep(0.5)
                self.assertEqual(c.call("PING"), "PONG")  # the connection is still in step
        self.assertEqual(len(todict(want)["orders"]), 4000)
        self.assertEqual(got, want)

    def test_garbage_and_stalled_handshakes_do_not_delay_others(self):
        before = self.gw.metrics()
        garbage = socket.create_connection((sgtest.HOST, self.tls_port), timeout=10)
        garbage.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(4000))
        stalled = []
        for _ in range(20):  # half a ClientHello each, then silence
            s = socket.create_connection((sgtest.HOST, self.tls_port), timeout=15)
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40))
            stalled.append(s)
        quiet = socket.create_connection((sgtest.HOST, self.tls_port), timeout=15)  # connects, says nothing
        stalled.append(quiet)
        # The garbage is refused at once (an alert, then the close).
        data = garbage.recv(4096)
        while data:
            data = garbage.recv(4096)
        garbage.close()
        # Meanwhile plain and TLS clients are served at once.
        with self.gw.client("alice") as plain, self.tls_client() as tc:
            for c in (plain, tc):
                t0 = time.monotonic()
                for _ in range(20):
                    self.assertEqual(c.call("PING"), "PONG")
                self.assertLess((time.monotonic() - t0) / 20, 0.05)
        m = self.gw.metrics()
        self.assertGreaterEqual(m["stopgate_tls_clients"], 21)
        # The stalled ones are closed once the handshake deadline passes.
        t0 = time.monotonic()
        for s in stalled:
            s.settimeout(HANDSHAKE_DEADLINE_S + 6)
            try:
                self.assertEqual(s.recv(4096), b"")
            except ConnectionResetError:
                pass
            s.close()
        self.assertLess(time.monotonic() - t0, HANDSHAKE_DEADLINE_S + 6)
        m = sgtest.wait_until(lambda: (lambda m: m if m["stopgate_tls_clients"] == 0 else None)(self.gw.metrics()),
                              timeout=5, what="tls clients to be gone")
        # Closed by the handshake deadline or, first, by the AUTH deadline (auth_timeout): both
        # are the same 5 s, so either counter may have them.
        closed = (m["stopgate_tls_handshake_failures_total"] - before["stopgate_tls_handshake_failures_total"] +
                  m.get("stopgate_connections_auth_deadline_closed_total", 0) -
                  before.get("stopgate_connections_auth_deadline_closed_total", 0))
        self.assertGreaterEqual(closed, 22)
        self.assertGreater(m["stopgate_tls_handshakes_total"], before["stopgate_tls_handshakes_total"])
        self.assertIn("handshake failed", self.gw.log())

    def test_plain_port_works_alongside(self):
        with self.gw.client("alice") as c:
            self.assertEqual(c.call("PING"), "PONG")
            d = self.stop_ok(c, "PLAIN0001")
            self.assertEqual(d["status"], "ACCEPTED")
        with self.tls_client() as c:
            self.assertEqual(todict(c.call("STATUS", d["order_id"]))["account"], "PLAIN0001")

    def test_query_buffer_limit_over_tls(self):
        """An unfinished command past CLIENT_QUERY_BYTES_MAX (4 MiB): ERR TOOBIG, then closed,
        as on the plain port; decrypting never grows the input past its cap."""
        import threading
        with self.tls_client() as c:
            arg = b"x" * 500000
            data = b"*20\r\n" + (b"$500000\r\n" + arg + b"\r\n") * 9  # 4.5 MB, never complete

            def push():
                try:
                    c.sock.sendall(data)
                except (OSError, ssl.SSLError):
                    pass  # the server closes once it has answered
            t = threading.Thread(target=push)
            t.start()
            try:
                r = c.read()
                self.assertErr(r, "ERR TOOBIG")
                self.assertRaises((Closed, ssl.SSLError, ConnectionError), c.read)
            except (Closed, ssl.SSLError, ConnectionError):
                # Closing with the rest of our 4.5 MB unread makes the kernel send a reset,
                # which may overtake the error reply (the plain port does the same).
                pass
            t.join(30)
            self.assertFalse(t.is_alive(), "the gateway kept reading past the query limit")
        self.assertServing()

    def test_quit_gets_ok_and_a_clean_close(self):
        with self.tls_client() as c:
            self.assertEqual(c.call("QUIT"), "OK")
            self.assertRaises((Closed, ssl.SSLError, ConnectionError), c.read)


class TlsClientCertTest(TlsGatewayCase):
    REQUIRE_CLIENT_CERT = True

    def refused(self, cert):
        """True when the gateway will not talk to a client presenting cert (None: no cert)."""
        try:
            c = TlsClient(self.tls_port, self.certs.ca[1], cert=cert)
        except (ssl.SSLError, ConnectionError):
            return True
        try:
            # TLS 1.3: the client's handshake ends before the server judged its certificate,
            # so the refusal shows on the first read.
            r = c.call("PING")
            return r != "PONG"
        except (ssl.SSLError, ConnectionError, Closed, OSError):
            return True
        finally:
            c.close()

    def test_no_client_cert_refused(self):
        self.assertTrue(self.refused(None))
        r = redis_cli(self.tls_port, self.certs.ca[1], args=["PING"])
        self.assertNotIn("PONG", r.stdout)

    def test_good_client_cert_works(self):
        self.assertFalse(self.refused(self.certs.client))
        r = redis_cli(self.tls_port, self.certs.ca[1], args=["PING"], cert=self.certs.client)
        self.assertEqual(r.stdout.strip(), "PONG", r.stderr)
        with self.tls_client(cert=self.certs.client) as c:
            self.stop_ok(c, "CERT0001")
        r = self.gw.stopctl("--tls", "--cacert", self.certs.ca[1], "--cert", self.certs.client[1], "--key",
                            self.certs.client[0], "check", "SGTB", "CERT0001", port=self.tls_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("FROZEN", r.stdout)

    def test_cert_from_another_ca_refused(self):
        self.assertTrue(self.refused(self.certs.stranger))
        r = redis_cli(self.tls_port, self.certs.ca[1], args=["PING"], cert=self.certs.stranger)
        self.assertNotIn("PONG", r.stdout)
        r = self.gw.stopctl("--tls", "--cacert", self.certs.ca[1], "--cert", self.certs.stranger[1], "--key",
                            self.certs.stranger[0], "check", "SGTB", "X1", port=self.tls_port)
        self.assertNotEqual(r.returncode, 0)
        self.assertGreaterEqual(self.gw.metrics()["stopgate_tls_handshake_failures_total"], 1)

    def test_plain_port_needs_no_cert(self):
        self.assertServing()


class TlsBigChainTest(unittest.TestCase):
    """A handshake flight larger than the connection's out buffer (TLS_OUT_BYTES, 32 KiB): the
    handshake stalls for room, resumes as the first part is sent, and completes."""

    def test_certificate_larger_than_the_out_buffer(self):
        certs = Certs.get()
        names = ",".join("DNS:h%05d.big-chain.example" % i for i in range(1800))  # ~45 KB of SANs
        big = make_cert(certs.dir, "bigserver", certs.ca, "serverAuth", "IP:127.0.0.1,DNS:localhost," + names)
        self.assertGreater(os.path.getsize(big[1]), 40000)
        port = sgtest.free_port()
        gw = sgtest.track(Gateway(name="tlsbig", gateway={"tls_listen": "%s:%d" % (sgtest.HOST, port),
                                                          "tls_cert": big[1], "tls_key": big[0]}))
        gw.start()
        try:
            c = TlsClient(port, certs.ca[1], timeout=10)
            c.auth("alice", gw.secret("alice"))
            self.assertEqual(c.call("PING"), "PONG")
            c.close()
            self.assertEqual(gw.metrics()["stopgate_tls_handshakes_total"], 1)
        finally:
            gw.close()


class TlsConfigTest(unittest.TestCase):
    def check(self, gateway):
        gw = sgtest.track(Gateway(name="tlsconf", gateway=gateway))
        r = subprocess.run([sgtest.STOPGATED, "--check-config", "-c", gw.conf_path], capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr, gw

    def test_check_config_loads_the_pair(self):
        certs = Certs.get()
        port = sgtest.free_port()
        rc, out, _ = self.check(tls_gateway_opts(certs, port, ca=True))
        self.assertEqual(rc, 0, out)
        # A key that is not the certificate's: refused, naming the tls_key line.
        g = tls_gateway_opts(certs, port)
        g["tls_key"] = certs.client[0]
        rc, out, gw = self.check(g)
        self.assertEqual(rc, 1, out)
        line = gw.config_text().split("\n").index("tls_key = %s" % certs.client[0]) + 1
        self.assertIn("stopgate.conf:%d: tls_key" % line, out)
        self.assertIn("does not match tls_cert", out)
        # A file that is not PEM.
        g = tls_gateway_opts(certs, port)
        g["tls_cert"] = certs.server[0].replace(".key", ".csr")
        rc, out, _ = self.check(g)
        self.assertEqual(rc, 1, out)
        self.assertIn("tls_cert", out)
        # A missing file, and tls_listen without a certificate.
        rc, out, _ = self.check({"tls_listen": "127.0.0.1:%d" % port, "tls_cert": "/nonexistent.pem"})
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"stopgate.conf:\d+: tls_cert: cannot read '/nonexistent.pem'")
        rc, out, _ = self.check({"tls_listen": "127.0.0.1:%d" % port})
        self.assertEqual(rc, 1, out)
        self.assertIn("tls_listen needs tls_cert and tls_key", out)


if __name__ == "__main__":
    sgtest.main()
