"""
sgcluster: a stopgate cluster on loopback for the cluster tests (SPEC §10, docs/cluster.md).
Python 3 stdlib; composes etcdcluster.EtcdCluster (3 real etcd members) and sgtest.Gateway.

    with GatewayCluster(candidates=(True, True, False), lease_ms=1000) as cl:
        cl.start()                      # gateway 0 first (it wins the campaign), then the rest
        i = cl.leader()                 # index of the gateway whose ROLE says leader
        cl.gws[i].kill9(); cl.wait_leader(exclude={i})
        cl.etcd_get_prefix("/log/")     # the cluster log as etcd holds it

Every gateway gets a [cluster] section: the cluster's etcd endpoints, name c<i>, a prefix of
its own per cluster (several test clusters may share nothing), advertise = its RESP address,
candidate yes/no, lease_ms. Everything is removed at exit by the two harnesses.
"""
import base64
import json
import os
import random
import time
import urllib.request

import etcdcluster
import sgtest
from sgtest import HOST, RespError, todict

LISTS = "[list mule]\nauto_stop = no\n\n[list hot]\nauto_stop = no\n\n"


def prefix_end(p):
    b = bytearray(p.encode())
    b[-1] += 1
    return bytes(b).decode()


class ClusterGateway(sgtest.Gateway):
    """A Gateway whose config carries [cluster] (advertise follows its port if it is re-picked)."""

    def __init__(self, cluster_opts, **kw):
        self.cluster_opts = cluster_opts
        super().__init__(**kw)

    def config_text(self):
        o = dict(self.cluster_opts)
        o["advertise"] = "%s:%d" % (HOST, self.port)
        lines = ["[cluster]"] + ["%s = %s" % (k, v) for k, v in o.items()] + [""]
        return super().config_text() + "\n" + "\n".join(lines) + "\n"

    def role(self, timeout=5.0):
        """ROLE as a dict, or None when the gateway does not answer."""
        c = None
        try:
            c = sgtest.Client(self.port, timeout=timeout)
            c.auth("alice", self.secret("alice"))
            r = c.call("ROLE")
        except Exception:
            return None
        finally:
            if c is not None:
                c.close()
        if isinstance(r, RespError):
            return None
        return todict(r)


class GatewayCluster(object):
    def __init__(self, n=3, candidates=(True, True, False), lease_ms=1000, sections=LISTS,
                 gateway=None, etcd=None, names=None):
        self.etcd = etcd or etcdcluster.EtcdCluster(3)
        self.own_etcd = etcd is None
        self.prefix = "/sgtest/%d-%d" % (os.getpid(), random.randrange(1 << 30))
        self.lease_ms = lease_ms
        self.gws = []
        for i in range(n):
            opts = {"etcd": self.etcd.endpoints, "name": names[i] if names else "c%d" % i, "prefix": self.prefix,
                    "candidate": "yes" if candidates[i] else "no", "lease_ms": str(lease_ms)}
            self.gws.append(ClusterGateway(opts, name="c%d" % i, sections=sections,
                                           gateway=dict(gateway or {})))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for g in self.gws:
            try:
                g.kill9()
            except Exception:
                pass
        if self.own_etcd:
            self.etcd.close()

    def start(self, timeout=30.0):
        """Gateway 0 first and until it leads, then the others (followers)."""
        self.gws[0].start(timeout)
        self.wait_leader(timeout=timeout)
        for g in self.gws[1:]:
            g.start(timeout)
        return self

    def leader(self, exclude=()):
        for i, g in enumerate(self.gws):
            if i in exclude or not g.running:
                continue
            r = g.role(timeout=2.0)
            if r and r.get("role") == "leader" and r.get("writable", "1") in ("1", 1, True, "yes"):
                return i
        return None

    def wait_leader(self, exclude=(), timeout=15.0):
        def probe():  # one ROLE round: asking twice could see a leader, then none
            i = self.leader(exclude)
            return (i,) if i is not None else None
        return sgtest.wait_until(probe, timeout=timeout, interval=0.02, what="a leader among the gateways")[0]

    # -- etcd, straight (what the cluster holds, independently of any gateway)
    def etcd_range(self, key, end, limit=0):
        body = {"key": base64.b64encode(key.encode()).decode(),
                "range_end": base64.b64encode(end.encode()).decode()}
        if limit:
            body["limit"] = str(limit)
        for i in range(len(self.etcd.members)):
            if not self.etcd.running(i):
                continue
            try:
                r = self.etcd.post(i, "/v3/kv/range", body, timeout=3.0)
            except Exception:
                continue
            return [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")),
                     int(kv.get("mod_revision", 0))) for kv in r.get("kvs", [])]
        raise AssertionError("no etcd member answered a range")

    def log_keys(self):
        p = self.prefix + "/log/"
        return self.etcd_range(p, prefix_end(p))

    def members(self):
        p = self.prefix + "/members/"
        return {k[len(p):]: v.decode() for k, v, _ in self.etcd_range(p, prefix_end(p))}

    def etcd_put(self, key, value):
        body = {"key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(value).decode()}
        for i in range(len(self.etcd.members)):
            if self.etcd.running(i):
                return self.etcd.post(i, "/v3/kv/put", body, timeout=3.0)
        raise AssertionError("no etcd member running")


# libstopgate on a gateway's shared memory: sgtest.ShmReader.
ShmReader = sgtest.ShmReader


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]
