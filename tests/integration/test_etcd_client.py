"""
The etcd client (gateway/cluster/etcd.c) against a real 3-member etcd cluster on loopback.

Starts the cluster (etcdcluster.py), runs the C program $ETCD_CLIENT_TEST with the endpoints
in $ETCD_ENDPOINTS, and serves its control lines ("CTL kill9 N", "CTL restart N", "CTL stop N",
"CTL cont N") so the program can kill the very member its watch is connected to. The program
prints "ok ..." per check and "FAIL ..." per broken assertion; its exit status is the result.

    python3 tests/integration/test_etcd_client.py                     # the checks
    python3 tests/integration/test_etcd_client.py --bench 1000 65536 [DEPTH]   # fenced-txn latency
    python3 tests/integration/test_etcd_client.py --watch-lag 500 300          # put -> watch event
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcdcluster  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROG = os.environ.get("ETCD_CLIENT_TEST") or os.path.join(ROOT, "build", "tests", "integration", "cluster",
                                                          "etcd_client_test")


def main():
    if not os.access(etcdcluster.ETCD, os.X_OK):
        print("SKIP: no etcd binary at %s (apt-get install etcd-server; ops/lib.sh lists it)" % etcdcluster.ETCD)
        return 77  # meson: skipped
    t0 = time.monotonic()
    with etcdcluster.EtcdCluster(3) as cl:
        env = dict(os.environ, ETCD_ENDPOINTS=cl.endpoints)
        p = subprocess.Popen([PROG] + sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                             text=True, bufsize=1, preexec_fn=etcdcluster._pdeathsig)
        for line in p.stdout:
            line = line.rstrip("\n")
            if not line.startswith("CTL "):
                print(line, flush=True)
                continue
            cmd, _, arg = line[4:].partition(" ")
            i = int(arg)
            t = time.monotonic()
            if cmd == "kill9":
                cl.kill9(i)
            elif cmd == "restart":
                cl.restart(i)
            elif cmd == "stop":
                cl.stop(i)
            elif cmd == "cont":
                cl.cont(i)
            else:
                raise SystemExit("unknown control line: " + line)
            print("  [harness] %s member %d (%.2fs)" % (cmd, i, time.monotonic() - t), flush=True)
            p.stdin.write("ok\n")
            p.stdin.flush()
        rc = p.wait(60)
    print("etcd client test: exit %d in %.1fs" % (rc, time.monotonic() - t0), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
