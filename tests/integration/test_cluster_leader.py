"""
The cluster's leader side (SPEC §10, docs/cluster.md) against a real 3-member etcd on loopback
(etcdcluster.py) and two stopgated with [cluster]: one leads, one follows.

  - ROLE on both: one leader, one follower naming it, the same epoch;
  - a STOP on the leader is ACCEPTED and its batch is under P/log/ in etcd: the journal frame's
    bytes, keyed by its first lsn, which is the lsn the answer gave; 300 pipelined STOPs make
    batches that etcd holds zstd-packed (header magic "SGJZ", gateway/cluster/logval.h): each
    decodes (the zstd CLI) to exactly the frames of its lsns, the follower applied them all, and
    INFO cluster's log_value_bytes is below log_bytes;
  - a STOP on the follower is answered -READONLY <leader> <host:port> (LIST.ADD and RELEASE too,
    a UDP STOP gets message error 10), and stopctl sent to the follower follows the redirect and
    gets ACCEPTED from the leader; ROLE on a gateway without [cluster] says standalone;
  - INFO cluster and /metrics show role, epoch and committed lsn;
  - with 2 of 3 etcd members killed, a STOP on the leader is answered ERR BUSY within the
    commit deadline and never ACCEPTED, while CHECK is still served; once etcd is back, the
    same request id is taken (ACCEPTED or DUPLICATE with one order id, never two);
  - kill -9 of the leader: the other candidate leads within lease_ms + 1 s (ROLE says leader);
    a leader stopped with SIGTERM revokes its lease (the leader key is gone at once).
"""
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcdcluster  # noqa: E402
import sgtest  # noqa: E402
from sgtest import Client, RespError, todict, wait_until  # noqa: E402

LEASE_MS = 6000  # long enough to keep the lead through the etcd outage below
COMMIT_TIMEOUT_MS = 1500
PREFIX = "/sgtest-%d" % os.getpid()
UDP_PROBE = os.environ.get("UDP_PROBE") or os.path.join(sgtest.ROOT, "build", "tests", "integration", "udp_probe")


def member(name, endpoints):
    gw = sgtest.Gateway(name=name)
    gw.sections += ("[cluster]\netcd = %s\nname = %s\nprefix = %s\nadvertise = 127.0.0.1:%d\nlease_ms = %d\n"
                    "commit_timeout_ms = %d\n" % (endpoints, name, PREFIX, gw.port, LEASE_MS, COMMIT_TIMEOUT_MS))
    gw.write_config()
    return gw


def role(gw):
    with Client(gw.port) as c:
        c.auth("alice", "alice-s3cret")
        return todict(c.call("ROLE"))


LOGVAL_MAGIC_ZSTD = 0x5a4a4753  # "SGJZ": a packed log value (gateway/cluster/logval.h)


def log_frames(val):
    """A log value's frames: the value itself when raw, else its 32-byte header (sum, magic, raw_len,
    first_lsn, last_lsn) checked and the zstd frame after it decoded. (frames, packed?)"""
    if int.from_bytes(val[8:12], "little") != LOGVAL_MAGIC_ZSTD:
        return val, False
    raw_len = int.from_bytes(val[12:16], "little")
    out = subprocess.run(["zstd", "-d", "-c", "-q"], input=val[32:], stdout=subprocess.PIPE, check=True).stdout
    check(len(out) == raw_len, "a packed value decodes to its raw_len (%d, got %d)" % (raw_len, len(out)))
    first, last = int.from_bytes(val[16:24], "little"), int.from_bytes(val[24:32], "little")
    check(int.from_bytes(out[16:24], "little") == first and int.from_bytes(out[-16:-8], "little") == last,
          "a packed value's frames are its header's lsns %d..%d" % (first, last))
    return out, True


def frames_of(buf):
    """Walk whole journal frames (header magic SGJB .. trailer SGJE): [(first, last, len)]."""
    out, off = [], 0
    while off < len(buf):
        magic, flen = int.from_bytes(buf[off + 8:off + 12], "little"), int.from_bytes(buf[off + 12:off + 16], "little")
        check(magic == 0x424a4753 and 80 <= flen <= len(buf) - off, "a whole frame at offset %d" % off)
        tr = buf[off + flen - 40:off + flen]
        check(int.from_bytes(tr[8:12], "little") == 0x454a4753, "the frame at offset %d ends with its trailer" % off)
        out.append((int.from_bytes(buf[off + 16:off + 24], "little"), int.from_bytes(tr[24:32], "little"), flen))
        off += flen
    return out


def stop(c, rid, account):
    return c.call("STOP", rid, "BANK", "DVB", "ACCOUNT", account, "CASE", "C-1")


def etcd_range(cl, key):
    body = {"key": base64.b64encode(key.encode()).decode()}
    for i in range(len(cl.members)):
        if not cl.running(i):
            continue
        try:
            return cl.post(i, "/v3/kv/range", body)
        except Exception:
            continue
    raise AssertionError("no etcd member answered")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok", what, flush=True)


def main():
    if not os.access(etcdcluster.ETCD, os.X_OK):
        print("SKIP: no etcd binary at %s (apt-get install etcd-server; ops/lib.sh lists it)" % etcdcluster.ETCD)
        return 77
    t0 = time.monotonic()
    with etcdcluster.EtcdCluster(3) as cl:
        a = member("gw-a", cl.endpoints).start()
        wait_until(lambda: role(a)["role"] == "leader" and role(a)["writable"] == 1, timeout=10, what="gw-a leads")
        b = member("gw-b", cl.endpoints).start()
        wait_until(lambda: role(b)["leader"] == "gw-a", timeout=10, what="gw-b knows the leader")
        ra, rb = role(a), role(b)
        alone = sgtest.Gateway(name="gw-alone").start()
        r = role(alone)
        check(r["role"] == "standalone" and r["epoch"] == 0 and r["writable"] == 1, "ROLE without [cluster]: %r" % r)
        alone.stop()
        check(ra["role"] == "leader" and ra["name"] == "gw-a" and ra["epoch"] > 0, "ROLE on the leader: %r" % ra)
        check(rb["role"] == "follower" and rb["leader_addr"] == "127.0.0.1:%d" % a.port and rb["epoch"] == ra["epoch"],
              "ROLE on the follower names the leader: %r" % rb)

        # A STOP on the leader: ACCEPTED, and its batch is in etcd under P/log/<first lsn>.
        with Client(a.port) as c:
            c.auth("alice", "alice-s3cret")
            ans = todict(stop(c, "r-1", "ACC-1"))
            check(ans["status"] == "ACCEPTED", "STOP on the leader ACCEPTED: %r" % ans)
            lsn = ans["lsn"]
        key = "%s/log/%020d" % (PREFIX, lsn)
        res = etcd_range(cl, key)
        kvs = res.get("kvs", [])
        check(len(kvs) == 1, "the batch of lsn %d is in etcd under %s" % (lsn, key))
        val, _ = log_frames(base64.b64decode(kvs[0]["value"]))
        # Journal format v2 frame: sum u64, magic "SGJB" u32, len u32, first_lsn, last_lsn, last_sum.
        magic = int.from_bytes(val[8:12], "little")
        flen = int.from_bytes(val[12:16], "little")
        first = int.from_bytes(val[16:24], "little")
        check(magic == 0x424a4753 and flen == len(val) and first == lsn,
              "its value is the journal frame header..trailer (%d bytes, first lsn %d)" % (len(val), first))
        tmagic = int.from_bytes(val[-32:-28], "little")
        check(tmagic == 0x454a4753, "the frame ends with its trailer")

        # 300 pipelined STOPs: batches big enough to be packed (logval.h). etcd holds them packed,
        # each decodes to exactly its frames, together the log's lsns 1..last without a gap, and
        # the follower applied them all (it decoded them too).
        with Client(a.port) as c:
            c.auth("alice", "alice-s3cret")
            answers = c.pipeline([("STOP", "rz-%d" % i, "BANK", "DVB", "ACCOUNT", "ACZ-%d" % i, "CASE", "C-1")
                                  for i in range(300)])
            check(all(todict(x)["status"] == "ACCEPTED" for x in answers), "300 pipelined STOPs ACCEPTED")
            last = max(todict(x)["lsn"] for x in answers)
            info = sgtest.parse_info(c.call("INFO", "cluster"))
        p = PREFIX + "/log/"
        res = None
        for i in range(len(cl.members)):
            if cl.running(i):
                res = cl.post(i, "/v3/kv/range", {"key": base64.b64encode(p.encode()).decode(),
                                                  "range_end": base64.b64encode((PREFIX + "/log0").encode()).decode()})
                break
        vals = [base64.b64decode(kv["value"]) for kv in res.get("kvs", [])]
        decoded = [log_frames(v) for v in vals]
        packed = [v for v, (_, z) in zip(vals, decoded) if z]
        check(len(packed) >= 1, "the log holds packed values (%d of %d)" % (len(packed), len(vals)))
        lsns = [x for fr, _ in decoded for x in frames_of(fr)]
        check(lsns[0][0] == 1 and lsns[-1][1] >= last and all(lsns[k][0] == lsns[k - 1][1] + 1
                                                                for k in range(1, len(lsns))),
              "the decoded values are the frames of lsn 1..%d (and on), in order, without a gap: %r"
              % (last, [(f, l) for f, l, _ in lsns]))
        put, frames = sum(len(v) for v in vals), sum(len(fr) for fr, _ in decoded)
        print("log values: %d keys, %d packed, %d bytes in etcd for %d bytes of frames (%.2fx)"
              % (len(vals), len(packed), put, frames, frames / put))
        check(put < frames and sum(len(v) for v in packed) * 2 < sum(len(log_frames(v)[0]) for v in packed),
              "packed values are at most half their frames")
        check(int(info["log_value_bytes"]) < int(info["log_bytes"]),
              "INFO cluster: log_value_bytes %s < log_bytes %s" % (info["log_value_bytes"], info["log_bytes"]))
        check(wait_until(lambda: role(b)["applied_lsn"] >= last, 10), "the follower applied lsn %d" % last)

        # A write on the follower: READONLY naming the leader; reads are served.
        with Client(b.port) as c:
            c.auth("alice", "alice-s3cret")
            r = stop(c, "r-2", "ACC-2")
            check(isinstance(r, RespError) and str(r.line).startswith("READONLY gw-a 127.0.0.1:%d" % a.port),
                  "STOP on the follower: %s" % r.line)
            r = c.call("CHECK", "DVB", "ACC-9")
            check(not isinstance(r, RespError), "CHECK served on the follower")
        # The other writes too: LIST.ADD (ops) and RELEASE; a UDP STOP gets message error 10.
        with Client(b.port) as c:
            c.auth("olga", "olga-s3cret")
            r = c.call("LIST.ADD", "mule", "DVB", "ACC-7")
            check(isinstance(r, RespError) and str(r.line).startswith("READONLY gw-a "), "LIST.ADD on the follower: %s"
                  % getattr(r, "line", r))
        with Client(b.port) as c:
            c.auth("alice", "alice-s3cret")
            r = c.call("RELEASE", "r-rel", "SG-1")
            check(isinstance(r, RespError) and str(r.line).startswith("READONLY gw-a "), "RELEASE on the follower")
        if os.path.exists(UDP_PROBE):
            p = subprocess.run([UDP_PROBE, "127.0.0.1", str(b.udp_port), "alice", "hello", "stop", "r-udp", "DVB",
                                "ACC-8", "C-1", "100"], env=dict(os.environ, STOPGATE_SECRET="alice-s3cret"),
                               capture_output=True, text=True, timeout=60)
            replies = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
            err = replies[1]["replies"][0]["err"] if len(replies) > 1 and replies[1].get("replies") else None
            check(err == 10, "UDP STOP on the follower: message error 10 READONLY (%r)" % replies)
        # stopctl sent to the follower follows the redirect once.
        env = dict(os.environ, STOPGATE_SECRET="alice-s3cret")
        p = subprocess.run([sgtest.STOPCTL, "-p", str(b.port), "--agent", "alice", "--json", "stop",
                            "--request-id", "r-3", "--bank", "DVB", "--account", "ACC-3", "--case", "C-1"],
                           env=env, capture_output=True, text=True, timeout=20)
        out = json.loads(p.stdout) if p.stdout.strip() else {}
        check(p.returncode == 0 and out.get("status") == "ACCEPTED" and "READONLY gw-a" in p.stderr,
              "stopctl followed READONLY to the leader: %r %r" % (p.stdout, p.stderr))

        # INFO cluster and /metrics.
        with Client(a.port) as c:
            c.auth("olga", "olga-s3cret")
            info = sgtest.parse_info(c.call("INFO", "cluster"))
        check(info.get("role") == "leader" and int(info.get("committed_lsn", 0)) >= lsn, "INFO cluster: %r" % info)
        m = sgtest.http_get(a.metrics_port, "/metrics")[1]
        check('stopgate_cluster_role{role="leader"} 1' in m and "stopgate_cluster_committed_lsn" in m,
              "/metrics carries the cluster gauges")

        # Two of three etcd members gone: no quorum. A STOP is answered ERR BUSY within the
        # commit deadline (+ slack for this shared box), never ACCEPTED; CHECK still served.
        lead_i = cl.leader()
        others = [i for i in range(3) if i != lead_i]
        cl.kill9(others[0])
        cl.kill9(lead_i)
        with Client(a.port) as c:
            c.auth("alice", "alice-s3cret")
            t = time.monotonic()
            r = stop(c, "r-4", "ACC-4")
            took = time.monotonic() - t
            check(isinstance(r, RespError) and str(r.line).startswith("ERR BUSY"),
                  "STOP without etcd quorum: %s" % getattr(r, "line", r))
            check(took < (COMMIT_TIMEOUT_MS + 1500) / 1000.0, "answered within the deadline (%.2f s)" % took)
            r2 = c.call("CHECK", "DVB", "ACC-1")
            check(not isinstance(r2, RespError) and todict(r2)["verdict"] == "FROZEN", "CHECK still served: %r" % r2)
            r3 = stop(c, "r-5", "ACC-5")
            check(isinstance(r3, RespError) and str(r3.line).startswith("ERR BUSY"), "new STOPs refused at once")
        cl.restart(others[0])
        cl.restart(lead_i)
        cl.wait_healthy()

        # Back: the batch that held r-4 was sent again until etcd took it, so r-4 exists (once):
        # its retry is a DUPLICATE, never a second order. (The lease outlived the outage.)
        got = {}

        def retried():
            with Client(a.port) as c:
                c.auth("alice", "alice-s3cret")
                r = stop(c, "r-4", "ACC-4")
                got["r"] = r
                return not isinstance(r, RespError)
        wait_until(retried, timeout=15, what="r-4 answered once etcd is back")
        check(todict(got["r"])["status"] == "DUPLICATE", "r-4 retried after the outage: %r" % got["r"])
        check(role(a)["role"] == "leader", "gw-a kept the lead through the outage")

        # kill -9 of the leader: the other candidate leads within lease_ms + 1 s.
        leader, other = (a, b) if role(a)["role"] == "leader" else (b, a)
        t = time.monotonic()
        leader.kill9()
        wait_until(lambda: role(other)["role"] == "leader", timeout=LEASE_MS / 1000.0 + 5,
                   what="the other candidate leads")
        took = time.monotonic() - t
        check(took < LEASE_MS / 1000.0 + 1.0, "takeover in %.2f s (lease %d ms)" % (took, LEASE_MS))
        check(role(other)["epoch"] > ra["epoch"], "a new epoch")
        # A leader stopped with SIGTERM gives its lease back: the leader key is free at once.
        check(other.stop() == 0, "the new leader stops cleanly")
        check(not etcd_range(cl, "%s/leader" % PREFIX).get("kvs"), "the stopped leader's key is gone at once")
    print("all ok in %.1f s" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
