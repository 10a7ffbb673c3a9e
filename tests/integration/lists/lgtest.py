"""
lgtest: the small harness of the fraud-list integration tests (Python 3 standard library only).

Self-contained on purpose (the general harness ../sgtest.py evolves on its own): a gateway
under test in a private temp dir (config with free loopback ports, journal there, a unique
shm_name, lists and agents as the test says), started until its `ready:` log line, killed or
stopped and restarted on the same journal; a minimal RESP2/RESP3 client; `stopctl hash-secret`.
Every process and /dev/shm file it creates is removed at exit (atexit, SIGTERM from meson's
timeout, PR_SET_PDEATHSIG in the children).

Binaries: $STOPGATED, $STOPCTL, $HAMMER (meson sets them), else from ../../../build.
Set LGTEST_KEEP=1 to keep the temp dirs.
"""
import atexit
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ROOT = os.environ.get("MESON_SOURCE_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
BUILD_ROOT = os.environ.get("MESON_BUILD_ROOT") or os.path.join(SRC_ROOT, "build")
STOPGATED = os.environ.get("STOPGATED") or os.path.join(BUILD_ROOT, "gateway", "stopgated")
STOPCTL = os.environ.get("STOPCTL") or os.path.join(BUILD_ROOT, "gateway", "stopctl")
HAMMER = os.environ.get("HAMMER") or os.path.join(BUILD_ROOT, "tests", "integration", "lists", "lists_hammer")
HOST = "127.0.0.1"

_procs = []
_dirs = []
_shm = []


def _pdeathsig():
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _cleanup():
    for p in list(_procs):
        try:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        except Exception:
            pass
    _procs.clear()
    for name in _shm:
        try:
            for f in os.listdir("/dev/shm"):
                if f == name or f.startswith(name + ".build-"):
                    os.unlink(os.path.join("/dev/shm", f))
        except OSError:
            pass
    if os.environ.get("LGTEST_KEEP"):
        for d in _dirs:
            sys.stderr.write("lgtest: kept %s\n" % d)
    else:
        for d in _dirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def _on_signal(signo, frame):
    _cleanup()
    os._exit(128 + signo)


for _s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_s, _on_signal)


def temp_dir(tag):
    d = tempfile.mkdtemp(prefix="lgtest-%s-" % tag)
    _dirs.append(d)
    return d


def shm_name(tag):
    n = "lgtest-%s-%d-%d" % (tag, os.getpid(), random.randrange(1 << 30))
    _shm.append(n)
    return n


def spawn(argv, **kw):
    """Popen that is killed at exit and when this process dies."""
    p = subprocess.Popen(argv, preexec_fn=_pdeathsig, **kw)
    _procs.append(p)
    return p


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
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last %r)" % (timeout, what, v))
        time.sleep(interval)


_hashes = {}


def hash_secret(secret):
    """`stopctl hash-secret SECRET`: the config's secret_hash (Argon2id; once per secret)."""
    if secret not in _hashes:
        p = subprocess.run([STOPCTL, "hash-secret", secret], capture_output=True, text=True, timeout=60)
        if p.returncode != 0 or not p.stdout.strip():
            raise RuntimeError("stopctl hash-secret failed (%d): %s" % (p.returncode, p.stderr))
        _hashes[secret] = p.stdout.strip()
    return _hashes[secret]


def check_score(account):
    """The per-entry check value of the concurrency test (lists_hammer.c): FNV-1a 32 % 101."""
    h = 2166136261
    for b in account.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % 101


# ---- RESP ------------------------------------------------------------------------------------


class RespError(object):
    """An error reply; code = first word, or 'ERR XXX'."""

    def __init__(self, line):
        self.line = line
        w = line.split(" ")
        self.code = "ERR " + w[1] if w[0] == "ERR" and len(w) > 1 else w[0]

    def __repr__(self):
        return "RespError(%r)" % self.line


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out += [b"$%d\r\n" % len(b), b, b"\r\n"]
    return b"".join(out)


class Client(object):
    def __init__(self, port, timeout=60.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        if self.pos > 65536:
            del self.buf[: self.pos]
            self.pos = 0
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

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
        d = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n + 2
        return d

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t in (b":", b"("):
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            return {self.read(): self.read() for _ in range(int(rest))}
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t == b"!":
            return RespError(self._exact(int(rest)).decode())
        if t == b"=":
            s = self._exact(int(rest)).decode()
            return s[4:]
        raise ValueError("unexpected RESP line %r" % line[:80])

    def call(self, *args):
        self.sock.sendall(encode(*args))
        return self.read()

    def ok(self, *args):
        r = self.call(*args)
        if isinstance(r, RespError):
            raise AssertionError("%s -> %s" % (" ".join(str(a)[:60] for a in args[:6]), r.line))
        return r

    def pipeline(self, cmds):
        self.sock.sendall(b"".join(encode(*c) for c in cmds))
        return [self.read() for _ in cmds]

    def auth(self, agent, secret):
        r = self.call("AUTH", agent, secret)
        if r != "OK":
            raise AssertionError("AUTH %s: %r" % (agent, r))
        return self


def todict(r):
    """A reply map (RESP3) or flat pair array (RESP2) as a dict."""
    if isinstance(r, RespError):
        raise AssertionError("expected a map, got %r" % (r,))
    if isinstance(r, dict):
        return r
    if not isinstance(r, list) or len(r) % 2:
        raise AssertionError("expected a map or pairs, got %r" % (r,))
    return {r[i]: r[i + 1] for i in range(0, len(r), 2)}


def parse_info(text):
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.strip().split(":", 1)
            out[k] = v
    return out


# ---- the gateway -------------------------------------------------------------------------------


class Gateway(object):
    """One stopgated. agents: {name: (role, secret)} ({} = none: the dev agent, with dev_secret).
    lists: {name: auto_stop bool}. gateway: extra [gateway] keys. sections: extra config text."""

    def __init__(self, tag, agents=None, lists=None, gateway=None, sections="", dev_secret=None):
        self.dir = temp_dir(tag)
        self.journal_dir = os.path.join(self.dir, "journal")
        self.log_path = os.path.join(self.dir, "stopgated.log")
        self.conf_path = os.path.join(self.dir, "stopgate.conf")
        self.shm_name = shm_name(tag)
        self.shm_path = os.path.join("/dev/shm", self.shm_name)
        self.agents = agents or {}
        self.lists = lists or {}
        self.gateway_opts = dict(gateway or {})
        self.sections = sections
        self.dev_secret = dev_secret
        self.proc = None
        self.starts = 0
        self._log_off = 0
        self.port = free_port()
        self.metrics_port = free_port()
        self.write_config()

    def write_config(self):
        g = {
            "listen": "%s:%d" % (HOST, self.port),
            "udp": "off",
            "metrics": "%s:%d" % (HOST, self.metrics_port),
            "console": "off",  # the console's own tests run it (test_console_*.py)
            "journal_dir": self.journal_dir,
            "shm_name": self.shm_name,
            "list_capacity": "65536",
            "prefault": "no",
            "max_orders": "65536",
        }
        g.update(self.gateway_opts)
        lines = ["[gateway]"] + ["%s = %s" % kv for kv in g.items() if kv[1] is not None] + [""]
        for name, (role, secret) in self.agents.items():
            lines += ["[agent %s]" % name, "role = %s" % role, "secret_hash = %s" % hash_secret(secret), ""]
        for name, auto in self.lists.items():
            lines += ["[list %s]" % name, "auto_stop = %s" % ("yes" if auto else "no"), ""]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n" + self.sections)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_off)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=30.0):
        assert not self.running
        env = dict(os.environ)
        env.pop("STOPGATE_DEV_SECRET", None)
        if self.dev_secret:
            env["STOPGATE_DEV_SECRET"] = self.dev_secret
        plugins = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(STOPGATED))), "plugins")
        if os.path.isdir(plugins):
            env["STOPGATE_PLUGIN_PATH"] = plugins
        if self.starts:
            deadline = time.monotonic() + 5
            while (port_in_use(self.port) or port_in_use(self.metrics_port)) and time.monotonic() < deadline:
                time.sleep(0.005)
        with open(self.log_path, "ab") as logf:
            logf.write(b"---- lgtest: start #%d\n" % (self.starts + 1))
            logf.flush()
            self._log_off = logf.tell()
            self.proc = spawn([STOPGATED, "-c", self.conf_path], stdin=subprocess.DEVNULL, stdout=logf,
                              stderr=logf, cwd=self.dir, env=env)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while "ready:" not in self.log_since_start():
            if self.proc.poll() is not None:
                raise AssertionError("stopgated exited %d before ready:\n%s" % (self.proc.returncode,
                                                                               self.log_since_start()))
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError("stopgated not ready after %.0fs:\n%s" % (timeout, self.log_since_start()))
            time.sleep(0.01)
        return self

    def kill9(self):
        if self.running:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout=30.0):
        """SIGTERM; the exit status."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        return self.proc.returncode if self.proc else None

    def client(self, agent=None, secret=None):
        c = Client(self.port)
        if agent:
            c.auth(agent, secret)
        return c


class Peek(object):
    """An in-process reader's view: `lists_hammer --peek SHM`, one libstopgate handle kept open
    for the life of this object (so it shows whether a handle follows the writer)."""

    def __init__(self, shm):
        self.p = spawn([HAMMER, "--peek", shm], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.opened = self.p.stdout.readline().strip()

    def _ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        if not out:
            raise AssertionError("lists_hammer --peek died (rc %r)" % self.p.poll())
        return out.strip()

    def check(self, bank, account):
        """{'gen', 'rc', 'mask', 'score', 'frozen', 'case', 'lists': [names]}"""
        out = self._ask("check %s %s" % (bank, account))
        d = dict(kv.split("=", 1) for kv in out.split())
        r = {k: int(v) for k, v in d.items() if k != "lists"}
        r["lists"] = [] if d["lists"] == "-" else d["lists"].split(",")
        return r

    def reopen(self):
        return self._ask("reopen")

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(10)
        except Exception:
            pass
