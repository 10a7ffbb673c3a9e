"""
sgtest: the harness of stopgate's integration tests (Python 3 standard library only).

- Gateway: writes a config into a private temp dir (journal there, free loopback ports for
  [gateway] listen / udp / metrics, a private shm_name), starts `stopgated -c`, waits for the
  `ready:` log line, can SIGTERM / kill -9 / restart it on the same journal, or run it with no
  config at all (development agent, STOPGATE_DEV_SECRET). Every process it starts is killed
  at exit (atexit, SIGTERM from meson's timeout, and PR_SET_PDEATHSIG if this process dies).
- Client: a minimal RESP2/RESP3 client over a socket: send commands, pipeline, read replies
  (RESP3 maps come back as Map, a dict; errors as RespError values, never raised).
- helpers: stopctl runner, HTTP GET for /metrics and /healthz, INFO parser, wait_until.

Binaries come from $STOPGATED / $STOPCTL (meson sets them), else from ../../build.
Set SGTEST_KEEP=1 to keep the temp dirs (journals, logs, configs) for a look afterwards.
"""
import atexit
import ctypes
import hashlib
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STOPGATED = os.environ.get("STOPGATED") or os.path.join(ROOT, "build", "gateway", "stopgated")
STOPCTL = os.environ.get("STOPCTL") or os.path.join(ROOT, "build", "gateway", "stopctl")
HOST = "127.0.0.1"

# Agents every configured gateway gets unless a test says otherwise: name -> (role, secret).
DEFAULT_AGENTS = {
    "alice": ("agent", "alice-s3cret"),
    "sam": ("supervisor", "sam-s3cret"),
    "olga": ("ops", "olga-s3cret"),
    "scott": ("screen", "scott-s3cret"),
    "bert": ("bank", "bert-s3cret"),
}


# ---- process hygiene ------------------------------------------------------------------------

_live_gateways = []
_temp_dirs = []
_shm_names = []
_cleanup_lock = threading.Lock()


def _pdeathsig():
    """In the child before exec: die with SIGKILL if the test process dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _cleanup():
    with _cleanup_lock:
        for gw in list(_live_gateways):
            try:
                gw.kill9()
            except Exception:
                pass
        _live_gateways.clear()
        try:
            shm = os.listdir("/dev/shm")
        except OSError:
            shm = []
        for name in _shm_names:  # the gateways' shared-memory lists (SPEC §5) and build files
            for f in shm:
                if f == name or f.startswith(name + "."):
                    try:
                        os.unlink(os.path.join("/dev/shm", f))
                    except OSError:
                        pass
        _shm_names.clear()
        if not os.environ.get("SGTEST_KEEP"):
            for d in _temp_dirs:
                shutil.rmtree(d, ignore_errors=True)
        else:
            for d in _temp_dirs:
                sys.stderr.write("sgtest: kept %s\n" % d)
        _temp_dirs.clear()


atexit.register(_cleanup)


def _on_signal(signo, frame):
    _cleanup()
    os._exit(128 + signo)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_s, _on_signal)
    except (ValueError, OSError):
        pass


def make_temp_dir(prefix="sgtest-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _temp_dirs.append(d)
    return d


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_in_use(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def wait_until(fn, timeout=10.0, interval=0.02, what="condition"):
    """Poll fn() until it returns a truthy value; return it. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


# ---- secrets --------------------------------------------------------------------------------

_hash_cache = {}


def kill_and_reap(proc, timeout=10.0):
    """SIGKILL a subprocess.Popen (or None) still running, and reap it: no zombie, no
    exception if it does not go within timeout seconds (the kernel ends it anyway)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


def _hash_cache_path():
    """A file shared by the test processes of one run, keyed by the stopctl binary (path and
    mtime), so a rebuilt stopctl never reuses an old hash format."""
    try:
        st = os.stat(STOPCTL)
    except OSError:
        return None
    key = "%s-%x" % (hashlib.sha1(os.path.realpath(STOPCTL).encode()).hexdigest()[:12], st.st_mtime_ns)
    return os.path.join(tempfile.gettempdir(), "sgtest-secret-hashes-%d-%s.txt" % (os.getuid(), key))


def hash_secret(secret):
    """`stopctl hash-secret SECRET` (Argon2id is slow): once per secret and stopctl build, shared
    across the test processes of a run through a small cache file."""
    h = _hash_cache.get(secret)
    if h is not None:
        return h
    path = _hash_cache_path()
    if path:
        try:
            with open(path) as f:
                for line in f:
                    s, _, v = line.rstrip("\n").partition("\t")
                    if v:
                        _hash_cache.setdefault(s, v)
        except OSError:
            pass
        if secret in _hash_cache:
            return _hash_cache[secret]
    p = subprocess.run([STOPCTL, "hash-secret", secret], capture_output=True, text=True, timeout=60)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError("stopctl hash-secret failed (%d): %s" % (p.returncode, p.stderr))
    h = p.stdout.strip()
    _hash_cache[secret] = h
    if path and "\t" not in secret and "\n" not in secret:
        if not os.path.exists(path):  # a new stopctl build: drop the caches of older ones
            prefix = os.path.basename(path).rsplit("-", 1)[0] + "-"
            for old in os.listdir(os.path.dirname(path)):
                if old.startswith(prefix) and old.endswith(".txt"):
                    try:
                        os.unlink(os.path.join(os.path.dirname(path), old))
                    except OSError:
                        pass
        try:
            with open(path, "a") as f:  # one short line per write: appends do not interleave
                f.write("%s\t%s\n" % (secret, h))
        except OSError:
            pass
    return h


# ---- RESP client ----------------------------------------------------------------------------


class RespError(object):
    """An error reply. code is the stable code: the first word, or two for 'ERR XXX'."""

    def __init__(self, line):
        self.line = line
        words = line.split(" ")
        if words[0] == "ERR" and len(words) > 1:
            self.code = "ERR " + words[1]
            self.reason = " ".join(words[2:])
        else:
            self.code = words[0]
            self.reason = " ".join(words[1:])

    def __repr__(self):
        return "RespError(%r)" % self.line

    def __eq__(self, other):
        return isinstance(other, RespError) and other.line == self.line

    def __hash__(self):
        return hash(self.line)


class Map(dict):
    """A RESP3 map (%)."""


class Push(list):
    """A RESP3 push (>)."""


class Closed(Exception):
    """The server closed the connection."""


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        else:
            b = str(a).encode()
        out.append(b"$%d\r\n" % len(b))
        out.append(b)
        out.append(b"\r\n")
    return b"".join(out)


class Client(object):
    def __init__(self, port, host=HOST, timeout=15.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.proto = 2

    # -- low level
    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, *args):
        self.sock.sendall(encode(*args))

    def _fill(self):
        if self.pos > 65536 and self.pos * 2 > len(self.buf):
            del self.buf[: self.pos]
            self.pos = 0
        data = self.sock.recv(1 << 20)
        if not data:
            raise Closed("connection closed by the server")
        self.buf += data

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos : i])
                self.pos = i + 2
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) - self.pos < n + 2:
            self._fill()
        data = bytes(self.buf[self.pos : self.pos + n])
        if self.buf[self.pos + n : self.pos + n + 2] != b"\r\n":
            raise ValueError("bulk not terminated by CRLF")
        self.pos += n + 2
        return data

    @staticmethod
    def _s(b):
        return b.decode("utf-8", "surrogateescape")

    def read(self):
        """Read one reply. Errors are returned as RespError, not raised."""
        line = self._line()
        if not line:
            raise ValueError("empty reply line")
        t, rest = line[:1], line[1:]
        if t == b"+":
            return self._s(rest)
        if t == b"-":
            return RespError(self._s(rest))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._s(self._exact(n))
        if t in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return None
            items = [self.read() for _ in range(n)]
            return Push(items) if t == b">" else items
        if t == b"%":
            n = int(rest)
            m = Map()
            for _ in range(n):
                k = self.read()
                m[k] = self.read()
            return m
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t == b",":
            return float(rest)
        if t == b"(":
            return int(rest)
        if t == b"=":
            s = self._s(self._exact(int(rest)))
            return s[4:] if len(s) >= 4 and s[3] == ":" else s
        if t == b"!":
            return RespError(self._s(self._exact(int(rest))))
        if t == b"|":  # attributes: read and drop, the reply follows
            for _ in range(int(rest)):
                self.read()
                self.read()
            return self.read()
        raise ValueError("unknown RESP type byte %r in line %r" % (t, line[:64]))

    # -- high level
    def call(self, *args):
        self.send(*args)
        return self.read()

    def ok(self, *args):
        """call() that fails the test on an error reply."""
        r = self.call(*args)
        if isinstance(r, RespError):
            raise AssertionError("%s -> %s" % (" ".join(str(a) for a in args), r.line))
        return r

    def pipeline(self, cmds):
        """Send every command in one write, then read one reply per command, in order."""
        self.sock.sendall(b"".join(encode(*c) for c in cmds))
        return [self.read() for _ in cmds]

    def auth(self, agent, secret):
        r = self.call("AUTH", agent, secret)
        if r != "OK":
            raise AssertionError("AUTH %s failed: %r" % (agent, r))
        return self

    def hello(self, proto=3, auth=None):
        args = ["HELLO", str(proto)]
        if auth:
            args += ["AUTH", auth[0], auth[1]]
        r = self.call(*args)
        if not isinstance(r, RespError):
            self.proto = proto
        return r

    def is_closed(self, wait=2.0):
        """True when the server has closed the connection (EOF within `wait` seconds)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(old)


def todict(reply, nested=("orders", "onward")):
    """A STATUS / STOP / CHECK / CASE reply as a dict, from a RESP3 map or a RESP2 flat array
    of pairs. The values under `nested` (arrays of maps) are converted too."""
    if isinstance(reply, RespError):
        raise AssertionError("expected a map reply, got %r" % (reply,))
    if isinstance(reply, dict):
        d = dict(reply)
    else:
        if not isinstance(reply, list) or len(reply) % 2:
            raise AssertionError("expected a map or flat array of pairs, got %r" % (reply,))
        d = {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}
    for k in nested:
        if isinstance(d.get(k), list):
            d[k] = [todict(x, nested) for x in d[k]]
    return d


def parse_info(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k] = v
    return out


def http_get(port, path, timeout=10.0):
    """(status, body text) of GET path on the metrics port."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def parse_metrics(text):
    """Prometheus text -> {'name{labels}': float}. Raises ValueError on a malformed line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if not name or not value:
            raise ValueError("malformed metrics line %r" % line)
        out[name] = float(value)
    return out


# ---- the gateway ----------------------------------------------------------------------------


class StartError(Exception):
    def __init__(self, msg, rc, log):
        Exception.__init__(self, msg)
        self.rc = rc
        self.log = log


class Gateway(object):
    """One stopgated under test.

    agents:   {name: (role, secret)}; None -> DEFAULT_AGENTS; {} -> no agent sections.
    gateway:  extra [gateway] keys (override the harness's).
    sections: extra text appended to the config (e.g. "[plugin sim]\\nlatency_us = 100\\n").
    no_config: run without -c (embedded defaults: fixed default ports, ./var/journal in the
              temp dir, dev agent); dev_secret sets STOPGATE_DEV_SECRET.
    """

    def __init__(self, agents=None, gateway=None, sections="", no_config=False, dev_secret=None, env=None,
                 name="gw"):
        self.dir = make_temp_dir("sgtest-%s-" % name)
        self.journal_dir = os.path.join(self.dir, "journal")
        self.log_path = os.path.join(self.dir, "stopgated.log")
        self.conf_path = os.path.join(self.dir, "stopgate.conf")
        self.agents = dict(DEFAULT_AGENTS if agents is None else agents)
        self.gateway_opts = dict(gateway or {})
        self.sections = sections
        self.no_config = no_config
        self.dev_secret = dev_secret
        self.extra_env = dict(env or {})
        self.extra_args = []  # appended to stopgated's command line (e.g. --truncate-damaged-tail)
        self.argv_prefix = []  # run stopgated under a wrapper (e.g. ["nice", "-n", "5"])
        self.proc = None
        self.ever_ready = False
        self.starts = 0
        self._log_off = 0
        self.shm_name = "sgtest-%d-%d" % (os.getpid(), random.randrange(1 << 30))
        if no_config:
            self.shm_name = "stopgate-lists"  # the default; removed at exit only if we created it
            if os.path.exists(os.path.join("/dev/shm", self.shm_name)):
                self.shm_name = None
        if self.shm_name:
            _shm_names.append(self.shm_name)
        if no_config:
            self.journal_dir = os.path.join(self.dir, "var", "journal")
            self.port, self.metrics_port, self.udp_port = 7379, 9379, 7380
            self.console_port = 9380
        else:
            self._pick_ports()
            self.write_config()

    def _pick_ports(self):
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.console_port = free_port()
        while self.console_port in (self.port, self.metrics_port):
            self.console_port = free_port()

    def config_text(self):
        g = {
            "listen": "%s:%d" % (HOST, self.port),
            "udp": "%s:%d" % (HOST, self.udp_port),
            "metrics": "%s:%d" % (HOST, self.metrics_port),
            "console": "%s:%d" % (HOST, self.console_port),
            "journal_dir": self.journal_dir,
            "shm_name": self.shm_name,
            "max_orders": "262144",
        }
        g.update(self.gateway_opts)
        lines = ["; written by tests/integration/sgtest.py", "[gateway]"]
        lines += ["%s = %s" % (k, v) for k, v in g.items() if v is not None]
        lines.append("")
        for name, (role, secret) in self.agents.items():
            lines += ["[agent %s]" % name, "role = %s" % role, "secret_hash = %s" % hash_secret(secret), ""]
        return "\n".join(lines) + "\n" + self.sections

    def write_config(self, text=None):
        with open(self.conf_path, "w") as f:
            f.write(self.config_text() if text is None else text)

    # -- logs
    def _log_bytes(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def log(self):
        return self._log_bytes().decode("utf-8", "replace")

    def log_since_start(self):
        return self._log_bytes()[self._log_off:].decode("utf-8", "replace")

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    # -- lifecycle
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self):
        env = dict(os.environ)
        env.pop("STOPGATE_DEV_SECRET", None)
        if self.dev_secret is not None:
            env["STOPGATE_DEV_SECRET"] = self.dev_secret
        build_plugins = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(STOPGATED))), "plugins")
        if not self.no_config and "STOPGATE_PLUGIN_PATH" not in env and os.path.isdir(build_plugins):
            # The plugins of this build, never an installed (maybe older) copy. Gateways without
            # a config find them by themselves from the build tree (SPEC §2).
            env["STOPGATE_PLUGIN_PATH"] = build_plugins
        env.update(self.extra_env)
        argv = [STOPGATED] if self.no_config else [STOPGATED, "-c", self.conf_path]
        if self.argv_prefix:  # the wrapper runs in self.dir: it needs stopgated's absolute path
            argv = self.argv_prefix + [os.path.abspath(argv[0])] + argv[1:]
        argv += self.extra_args
        if self.starts:
            # After kill -9 the kernel tears the old process's io_uring down asynchronously and
            # its listening sockets linger for a few ms: wait for the ports to be bindable.
            deadline = time.monotonic() + 5
            while (port_in_use(self.port) or port_in_use(self.metrics_port) or port_in_use(self.console_port)) \
                    and time.monotonic() < deadline:
                time.sleep(0.005)
        with open(self.log_path, "ab") as logf:
            logf.write(("---- sgtest: start #%d: %s\n" % (self.starts + 1, " ".join(argv))).encode())
            logf.flush()
            self._log_off = logf.tell()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=self.dir,
                                         env=env, preexec_fn=_pdeathsig)
        self.starts += 1
        _live_gateways.append(self)

    def start(self, timeout=30.0):
        """Start and wait for `ready:`. Raises StartError (with the log) if it exits first."""
        assert not self.running, "already running"
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready(timeout)
                self.ever_ready = True
                return self
            except StartError as e:
                # Another process took one of our free ports between pick and bind: repick once.
                if "in use" in e.log and not self.ever_ready and not self.no_config and attempt < 2:
                    self._pick_ports()
                    self.write_config()
                    continue
                raise
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since_start()
            if "ready:" in text:
                return
            rc = self.proc.poll()
            if rc is not None:
                self._forget()
                raise StartError("stopgated exited with %d before ready:\n%s" % (rc, text), rc, text)
            if time.monotonic() > deadline:
                self.kill9()
                raise StartError("stopgated not ready after %.0fs:\n%s" % (timeout, text), None, text)
            time.sleep(0.01)

    def start_expect_failure(self, timeout=30.0):
        """Start and expect stopgated to exit before `ready:`. Returns (rc, log of this start)."""
        assert not self.running
        self._spawn()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            text = self.log_since_start()
            self.kill9()
            raise AssertionError("stopgated did not exit (expected a refusal to start):\n" + text)
        self._forget()
        return rc, self.log_since_start()

    def try_start(self, timeout=30.0):
        """Start and return (True, None, log) once ready, or (False, rc, log) if stopgated exits
        before that."""
        assert not self.running
        self._spawn()
        try:
            self._wait_ready(timeout)
            self.ever_ready = True
            return True, None, self.log_since_start()
        except StartError as e:
            return False, e.rc, e.log

    def _forget(self):
        if self in _live_gateways:
            _live_gateways.remove(self)

    def kill9(self):
        kill_and_reap(self.proc)
        self._forget()

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Signal and wait; returns the exit status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError("stopgated did not exit within %.0fs of signal %d" % (timeout, sig))
        self._forget()
        return self.proc.returncode

    def restart(self, kill=True, timeout=30.0):
        """kill -9 (or SIGTERM with kill=False) and start again on the same journal."""
        if kill:
            self.kill9()
        else:
            rc = self.stop()
            if rc != 0:
                raise AssertionError("stopgated exited %r on SIGTERM\n%s" % (rc, self.log_tail()))
            if "drain timed out" in self.log_since_start():
                raise AssertionError("stopgated could not drain its clients on SIGTERM\n%s" % self.log_tail())
        return self.start(timeout)

    def close(self):
        """Stop with SIGTERM; AssertionError unless it exits 0 (a crash or sanitizer report
        during the test shows up here)."""
        if not self.running:
            rc = self.proc.returncode if self.proc else 0
            self._forget()
            if rc not in (0, None, -9):
                raise AssertionError("stopgated had exited with %r\n%s" % (rc, self.log_tail()))
            return
        rc = self.stop()
        if rc != 0:
            raise AssertionError("stopgated exited %r on SIGTERM\n%s" % (rc, self.log_tail()))
        if "drain timed out" in self.log_since_start():
            raise AssertionError("stopgated could not drain its clients on SIGTERM (a reply stuck in a "
                                 "client's output?)\n%s" % self.log_tail())

    # -- clients
    def secret(self, agent):
        if self.no_config and agent == "dev":
            return self.dev_secret or self.dev_secret_from_log()
        return self.agents[agent][1]

    def dev_secret_from_log(self):
        import re

        m = re.search(r"dev agent: name=dev secret=(\S+)", self.log())
        return m.group(1) if m else None

    def client(self, agent="alice", proto=2, timeout=15.0):
        """A connection authenticated as agent (None: unauthenticated), speaking proto."""
        c = Client(self.port, timeout=timeout)
        if proto == 3:
            r = c.hello(3, auth=(agent, self.secret(agent)) if agent else None)
            if isinstance(r, RespError):
                raise AssertionError("HELLO 3 failed: %r" % (r,))
        elif agent:
            c.auth(agent, self.secret(agent))
        return c

    def info(self, client=None):
        c = client or self.client("alice")
        try:
            r = c.ok("INFO")
            return parse_info(r)
        finally:
            if client is None:
                c.close()

    def metrics(self):
        st, body = http_get(self.metrics_port, "/metrics")
        if st != 200:
            raise AssertionError("/metrics answered %d" % st)
        return parse_metrics(body)

    def stopctl(self, *args, agent="alice", json_out=False, secret=None, env=None, port=None, timeout=60):
        return run_stopctl(*args, port=self.port if port is None else port, agent=agent, json_out=json_out,
                           secret=self.secret(agent) if (agent and secret is None) else secret, env=env,
                           timeout=timeout)

    def segments(self):
        if not os.path.isdir(self.journal_dir):
            return []
        return sorted(os.path.join(self.journal_dir, f) for f in os.listdir(self.journal_dir) if f.endswith(".sgj"))


def run_stopctl(*args, port=None, agent=None, json_out=False, secret=None, env=None, timeout=60):
    """Run stopctl with global options before the subcommand. The secret goes through
    STOPGATE_SECRET, never argv."""
    argv = [STOPCTL]
    if port is not None:
        argv += ["-h", HOST, "-p", str(port)]
    if agent:
        argv += ["--agent", agent]
    if json_out:
        argv.append("--json")
    argv += [str(a) for a in args]
    e = dict(os.environ)
    e.pop("STOPGATE_SECRET", None)
    if secret is not None:
        e["STOPGATE_SECRET"] = secret
    if env:
        e.update(env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e)


# ---- journal files --------------------------------------------------------------------------

SEG_HDR = 64
REC_HDR = 40


FRAME_HDR = 40  # journal format version 2: each batch write is a frame, docs/journal.md
REC_CLOSE = 0xFFFF


def journal_frames(path):
    """[(offset, length, first_lsn, last_lsn)] of the complete frames (batches) of one
    version 2 segment file, by their headers and trailers (no checksum check). Stops at the
    first frame that does not parse or runs past the end of the file."""
    import struct

    with open(path, "rb") as f:
        data = f.read()
    out = []
    off = SEG_HDR
    while off + 2 * FRAME_HDR <= len(data):
        _sum, magic, length, first, last, _ls = struct.unpack_from("<QIIQQQ", data, off)
        if magic != 0x424A4753 or length < 2 * FRAME_HDR + REC_HDR or off + length > len(data):
            break
        if struct.unpack_from("<I", data, off + length - FRAME_HDR + 8)[0] != 0x454A4753:
            break
        out.append((off, length, first, last))
        off += length
    return out


def journal_records(path):
    """[(offset, length, type, lsn, payload_len)] of the records in the complete frames of one
    segment file (close records, type REC_CLOSE, included), by their headers (no checksum
    check). The checksum covers bytes [offset + 8, offset + 40 + payload_len); the rest up
    to length is padding."""
    import struct

    with open(path, "rb") as f:
        data = f.read()
    out = []
    for foff, flen, _first, _last in journal_frames(path):
        off, end = foff + FRAME_HDR, foff + flen - FRAME_HDR
        while off + REC_HDR <= end:
            _sum, magic, length, rtype, _ver, plen, lsn, _prev = struct.unpack_from("<QIIHHIQQ", data, off)
            if magic != 0x524A4753 or length < REC_HDR or off + length > end:
                break
            out.append((off, length, rtype, lsn, plen))
            off += length
    return out


# ---- test-case helpers ----------------------------------------------------------------------

_all_gateways_made = []


# The reader proper, in a process of its own: a libstopgate built with ASan can only be loaded
# by a process whose first library is the ASan runtime (LD_PRELOAD), which this Python is not.
_SHM_HELPER = r"""
import ctypes, sys
class Verdict(ctypes.Structure):
    _fields_ = [("mask", ctypes.c_uint64), ("score", ctypes.c_uint8), ("frozen", ctypes.c_bool),
                ("case_ref", ctypes.c_uint32)]
lib = ctypes.CDLL(sys.argv[1])
lib.sg_lists_open.restype = ctypes.c_void_p
lib.sg_lists_open.argtypes = [ctypes.c_char_p]
lib.sg_lists_check.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Verdict)]
lib.sg_lists_close.argtypes = [ctypes.c_void_p]
h = lib.sg_lists_open(sys.argv[2].encode())
print("ok" if h else "ERR open", flush=True)
for line in sys.stdin:
    bank, account = line.split()
    v = Verdict()
    rc = lib.sg_lists_check(h, bank.encode(), account.encode(), ctypes.byref(v))
    print("ERR %d" % rc if rc else "%d %d %d %d" % (v.mask, v.score, v.frozen, v.case_ref), flush=True)
if h:
    lib.sg_lists_close(h)
"""


class ShmReader(object):
    """libstopgate on a gateway's shared-memory lists: what a screening process sees."""

    class Verdict(object):
        def __init__(self, mask, score, frozen, case_ref):
            self.mask, self.score, self.frozen, self.case_ref = mask, score, bool(frozen), case_ref

    def __init__(self, shm_name):
        # meson passes the library's path; run by hand, the one beside stopgated
        lib = os.environ.get("LIBSTOPGATE") or os.path.join(os.path.dirname(os.path.abspath(STOPGATED)),
                                                             "libstopgate.so")
        env = dict(os.environ)
        needed = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
        for line in needed.splitlines():
            if "libasan" in line and "=>" in line:  # an ASan build: its runtime goes first
                env["LD_PRELOAD"] = line.split("=>")[1].split()[0]
                env["ASAN_OPTIONS"] = "detect_leaks=0"  # Python's own allocations are not ours
        self.p = subprocess.Popen([sys.executable, "-c", _SHM_HELPER, lib, shm_name], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=env)
        first = self.p.stdout.readline().strip()
        if first != "ok":
            self.close()
            raise AssertionError("sg_lists_open(%s) failed: %r" % (shm_name, first))

    def check(self, bank, account):
        rc, v = self.check_rc(bank, account)
        if rc:
            raise AssertionError("sg_lists_check: %d" % rc)
        return v

    def check_rc(self, bank, account):
        """(rc, Verdict): rc is sg_lists_check's (0, or a negative errno: -ESTALE, ...)."""
        self.p.stdin.write("%s %s\n" % (bank, account))
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        if line.startswith("ERR ") and line[4:].lstrip("-").isdigit():
            return int(line[4:]), None
        if not line or line.startswith("ERR"):
            raise AssertionError("sg_lists_check: %r" % line)
        return 0, ShmReader.Verdict(*(int(x) for x in line.split()))

    def close(self):
        if self.p:
            self.p.stdin.close()
            self.p.wait(timeout=10)
            self.p.stdout.close()
            self.p = None


class GatewayCase(unittest.TestCase):
    """One gateway per test class (GW_ARGS are Gateway() keyword arguments), started in
    setUpClass and required to exit 0 on SIGTERM in tearDownClass."""

    GW_ARGS = {}
    gw = None

    @classmethod
    def setUpClass(cls):
        cls.gw = Gateway(name=cls.__name__, **cls.GW_ARGS)
        _all_gateways_made.append(cls.gw)
        cls.gw.start()

    @classmethod
    def tearDownClass(cls):
        if cls.gw is not None:
            cls.gw.close()

    # -- assertions
    def assertErr(self, reply, code, msg=None):
        self.assertIsInstance(reply, RespError, msg or "expected %s, got %r" % (code, reply))
        self.assertEqual(reply.code, code, msg or "wrong error code in %r" % (reply.line,))
        self.assertTrue(reply.reason.strip(), "error %r carries no human reason" % (reply.line,))

    def assertServing(self, gw=None):
        """The gateway still answers another, fresh client."""
        gw = gw or self.gw
        with gw.client("alice") as c:
            self.assertEqual(c.call("PING"), "PONG")
            r = c.call("CHECK", "SGTB", "ALIVE1")
            self.assertEqual(todict(r)["verdict"], "CLEAR")

    # -- orders
    _seq = [0]

    @classmethod
    def rid(cls, tag="r"):
        cls._seq[0] += 1
        return "%s-%d-%d-%d" % (tag, os.getpid(), int(time.time() * 1000) % 100000000, cls._seq[0])

    def stop(self, c, account, bank="SGTB", case="CASE1", request_id=None, amount=None, **opts):
        args = ["STOP", request_id or self.rid(), "BANK", bank, "ACCOUNT", account, "CASE", case]
        if amount is not None:
            args += ["AMOUNT", str(amount)]
        for k, v in opts.items():
            args += [k.upper(), str(v)]
        return c.call(*args)

    def stop_ok(self, c, account, **kw):
        r = self.stop(c, account, **kw)
        d = todict(r)
        self.assertIn(d["status"], ("ACCEPTED", "MERGED", "DUPLICATE", "HELD"), d)
        self.assertRegex(d["order_id"], r"^SG-\d+$")
        return d

    def status(self, c, order_id):
        return todict(c.ok("STATUS", order_id))

    def wait_state(self, c, order_id, states, timeout=10.0):
        if isinstance(states, str):
            states = (states,)
        return wait_until(lambda: (lambda d: d if d["state"] in states else None)(self.status(c, order_id)),
                          timeout=timeout, what="%s to reach %s" % (order_id, "/".join(states)))


EXIT_SKIP = 77  # meson (and automake) record a test that exits 77 as SKIP, not OK


def exit_status(result):
    """1 if anything failed; else EXIT_SKIP if anything was skipped (a test, or a whole class
    in setUpClass), so that meson and ops/test report the skip instead of a pass; else 0."""
    if not result.wasSuccessful():
        return 1
    return EXIT_SKIP if result.skipped else 0


def main():
    """unittest.main, printing the tail of every gateway log when something failed, and the
    skipped tests with their reasons (the exit status is EXIT_SKIP when there are any)."""
    prog = unittest.main(exit=False, verbosity=2, buffer=False)
    rc = exit_status(prog.result)
    if rc == 1:
        for gw in _all_gateways_made:
            sys.stderr.write("\n==== tail of %s ====\n%s\n" % (gw.log_path, gw.log_tail(60)))
    for test, reason in prog.result.skipped:
        sys.stderr.write("SKIPPED %s: %s\n" % (test, reason))
    _cleanup()
    sys.exit(rc)


def track(gw):
    """Register a Gateway made inside a test so its log is shown on failure."""
    _all_gateways_made.append(gw)
    return gw
