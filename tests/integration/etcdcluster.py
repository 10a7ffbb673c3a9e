"""
etcdcluster: a real etcd cluster on loopback for stopgate's cluster tests (Python 3 stdlib).

    with EtcdCluster(3) as cl:          # members on free 127.0.0.1 ports, temp data dirs
        cl.endpoints                     # "http://127.0.0.1:P1,http://127.0.0.1:P2,..."
        cl.kill9(1); cl.restart(1)       # kill -9 / start again on the same data dir
        cl.stop(0); cl.cont(0)           # SIGSTOP / SIGCONT (a frozen member)
        cl.wait_healthy()                # every running member answers /health true

Members run `etcd` from $ETCD or PATH with short --heartbeat-interval/--election-timeout so
elections take well under a second. Every member is killed and every data dir removed at
exit: atexit, SIGTERM/SIGINT/SIGHUP (meson's timeout), and PR_SET_PDEATHSIG in the child
should this process die by SIGKILL. ETCDCLUSTER_KEEP=1 keeps the dirs (logs) for a look;
ETCDCLUSTER_DIR=DIR makes them under DIR (e.g. /dev/shm) instead of $TMPDIR.

Run by hand: `python3 tests/integration/etcdcluster.py` starts a cluster, prints the
endpoints and waits for Ctrl-C.
"""
import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HOST = "127.0.0.1"
ETCD = os.environ.get("ETCD") or shutil.which("etcd") or "/usr/bin/etcd"

_live = []
_lock = threading.RLock()  # _cleanup holds it while close() takes it again


def _pdeathsig():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _cleanup():
    with _lock:
        for cl in list(_live):
            try:
                cl.close()
            except Exception:
                pass
        _live.clear()


atexit.register(_cleanup)


def _on_signal(signo, frame):
    _cleanup()
    os._exit(128 + signo)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        if signal.getsignal(_s) in (signal.SIG_DFL, signal.default_int_handler, None):
            signal.signal(_s, _on_signal)
    except (ValueError, OSError):
        pass


def free_ports(n):
    """n distinct free loopback ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()



def _all_threads_stopped(pid):
    """Every thread of pid is in state T (stopped) or t (traced): proc(5) stat field 3."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return True
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state not in ("T", "t"):
            return False
    return True

class Member:
    def __init__(self, name, client_port, peer_port, data_dir):
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.url = "http://%s:%d" % (HOST, client_port)
        self.peer_url = "http://%s:%d" % (HOST, peer_port)
        self.proc = None
        self.log = None
        self.stopped = False


class EtcdCluster:
    def __init__(self, size=3, heartbeat_ms=25, election_ms=250):
        if not os.access(ETCD, os.X_OK):
            raise RuntimeError("no etcd binary (%s): apt-get install etcd-server" % ETCD)
        # ETCDCLUSTER_DIR=/dev/shm puts the members' data (and fsyncs) on tmpfs.
        self.dir = tempfile.mkdtemp(prefix="sg-etcd-", dir=os.environ.get("ETCDCLUSTER_DIR"))
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        ports = free_ports(2 * size)
        self.members = [
            Member("m%d" % i, ports[2 * i], ports[2 * i + 1], os.path.join(self.dir, "m%d" % i))
            for i in range(size)
        ]
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        self.token = "sg-%d-%d" % (os.getpid(), ports[0])
        with _lock:
            _live.append(self)
        for i in range(size):
            self._spawn(i, new=True)
        self.wait_healthy()

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def endpoints(self):
        return ",".join(m.url for m in self.members)

    def _spawn(self, i, new=False):
        m = self.members[i]
        args = [
            ETCD, "--name", m.name, "--data-dir", m.data_dir,
            "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--snapshot-count", "100000",
            "--log-outputs", "stderr", "--logger", "zap",
        ]
        m.log = open(os.path.join(self.dir, m.name + ".log"), "ab")
        m.proc = subprocess.Popen(args, stdout=m.log, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
        m.stopped = False

    def kill9(self, i):
        m = self.members[i]
        if m.proc and m.proc.poll() is None:
            if m.stopped:
                m.proc.send_signal(signal.SIGCONT)
            m.proc.kill()
            m.proc.wait(10)
        m.stopped = False

    def restart(self, i, wait=True):
        """Start member i again on its data dir (after kill9)."""
        m = self.members[i]
        if m.proc and m.proc.poll() is None:
            raise RuntimeError("%s is still running" % m.name)
        self._spawn(i)
        if wait:
            self.wait_healthy()

    def stop(self, i):
        """SIGSTOP: the member keeps its sockets but answers nothing (a frozen host). Returns
        once every thread of it is stopped: kill() only starts a group stop, which the
        member's threads carry out when they next run - on a loaded machine, milliseconds
        later, long enough for a txn sent "after" the freeze to be committed."""
        m = self.members[i]
        m.proc.send_signal(signal.SIGSTOP)
        m.stopped = True
        deadline = time.monotonic() + 10
        while not _all_threads_stopped(m.proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError("%s: not stopped 10 s after SIGSTOP" % m.name)
            time.sleep(0.001)

    def cont(self, i):
        self.members[i].proc.send_signal(signal.SIGCONT)
        self.members[i].stopped = False

    def running(self, i):
        m = self.members[i]
        return m.proc is not None and m.proc.poll() is None and not m.stopped

    def close(self):
        for i in range(len(self.members)):
            try:
                self.kill9(i)
            except Exception:
                pass
            if self.members[i].log:
                self.members[i].log.close()
        with _lock:
            if self in _live:
                _live.remove(self)
        if os.environ.get("ETCDCLUSTER_KEEP"):
            sys.stderr.write("etcdcluster: kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- health -------------------------------------------------------------------------------

    def post(self, i, path, body, timeout=2.0):
        req = urllib.request.Request(self.members[i].url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def healthy(self, i):
        try:
            with urllib.request.urlopen(self.members[i].url + "/health", timeout=1.0) as r:
                return json.loads(r.read()).get("health") in (True, "true")
        except Exception:
            return False

    def wait_healthy(self, timeout=20.0):
        """Every running member says healthy (it has a leader and can commit)."""
        deadline = time.monotonic() + timeout
        while True:
            bad = [m.name for i, m in enumerate(self.members) if self.running(i) and not self.healthy(i)]
            for i, m in enumerate(self.members):
                if m.proc and m.proc.poll() is not None and not m.stopped and m.proc.returncode not in (-9,):
                    raise RuntimeError("etcd %s exited with %s; log: %s" % (
                        m.name, m.proc.returncode, os.path.join(self.dir, m.name + ".log")))
            if not bad:
                return
            if time.monotonic() > deadline:
                raise AssertionError("etcd members not healthy after %.0fs: %s" % (timeout, ", ".join(bad)))
            time.sleep(0.05)

    def leader(self):
        """Index of the member that leads, or None."""
        for i in range(len(self.members)):
            if not self.running(i):
                continue
            try:
                st = self.post(i, "/v3/maintenance/status", {}, timeout=1.0)
            except Exception:
                continue
            if st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
                return i
        return None


if __name__ == "__main__":
    with EtcdCluster(int(sys.argv[1]) if len(sys.argv) > 1 else 3) as cl:
        print(cl.endpoints, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
