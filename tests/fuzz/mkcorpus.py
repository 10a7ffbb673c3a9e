#!/usr/bin/env python3
"""mkcorpus: (re)writes the seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/.

    python3 tests/fuzz/mkcorpus.py            (needs build/gateway/stopgated and stopctl)

Most seeds are spelled out below. The journal and record seeds, and the list-table seed,
come from a real stopgated (tests/integration/sgtest.py starts it): STOPs, a FREEZE, a
cascade through the simulated bank's FUNDS_MOVED accounts, a HELD order and its CONFIRM,
RELEASE, EXTEND, LIST.ADD/DEL and a LIST.LOAD; then its first journal segment and its
/dev/shm table are taken as they are on disk. Seeds are named by what they hold; a file
of the same name is overwritten, others (regression inputs from crashes) are kept.
"""
import os
import shutil
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def seed(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


# ---- fuzz_resp -------------------------------------------------------------------------------
def resp_seeds():
    seed("fuzz_resp", "ping-inline", "PING\r\n")
    seed("fuzz_resp", "hello3-auth", resp("HELLO", "3", "AUTH", "alice", "alice-s3cret"))
    seed("fuzz_resp", "stop-full", resp("STOP", "r-1", "BANK", "ICBK", "ACCOUNT", "6222 0000 1111 0001", "CASE",
                                        "C-1", "AMOUNT", "150000", "CURRENCY", "CNY", "TTL", "3600", "REASON",
                                        "FRAUD", "NOTE", "called by victim"))
    seed("fuzz_resp", "pipelined-mixed",
         resp("AUTH", "alice", "s") + resp("STOP", "r-2", "BANK", "B1", "ACCOUNT", "A1", "CASE", "C") +
         b"CHECK B1 A1\r\n" + resp("MCHECK", "B1", "A1", "B2", "A2") + resp("STATUS", "SG-1") + b"QUIT\n")
    seed("fuzz_resp", "list-load-inline", resp("LIST.LOAD", "mule", "-", "ICBK,6222000011110001,80,C-1\nBOC,9\n"))
    seed("fuzz_resp", "empty-multibulk", b"*0\r\n*-1\r\nPING\r\n")
    seed("fuzz_resp", "toobig-bulk-then-ping", b"*2\r\n$4\r\nECHO\r\n$600000\r\n" + b"x" * 64 + b"\r\n" +
         resp("PING"))
    seed("fuzz_resp", "toobig-args", b"*1200\r\n" + b"$1\r\nx\r\n" * 3 + resp("PING"))
    seed("fuzz_resp", "proto-bad-bulk", b"*1\r\n$x\r\nPING\r\n")
    seed("fuzz_resp", "partial-tail", resp("PING") + b"*3\r\n$5\r\nCHECK\r\n$2\r\nB")


# ---- fuzz_config -----------------------------------------------------------------------------
def config_seeds():
    with open(os.path.join(ROOT, "config", "stopgate.conf"), "rb") as f:
        seed("fuzz_config", "stopgate.conf", f.read())
    seed("fuzz_config", "minimal", "[gateway]\nlisten = 127.0.0.1:7379\n")
    seed("fuzz_config", "all-sections",
         "[gateway]\nlisten = 0.0.0.0:7379\nudp = off\nmetrics = [::1]:9379\njournal_dir = /tmp/j\n"
         "list_capacity = 1024\nshm_name = x\ncurrency = eur\nstop_ttl = 60\nmax_clients = 5\n"
         "segment_bytes = 1048576\nmax_orders = 1024\nprefault = no\nidle_timeout = 30\n"
         "[cascade]\nmax_depth = 2\nmin_amount = 100\n"
         "[agent a]\nrole = ops\nsecret_hash = sg1$argon2id$2$65536$c2FsdA$a2V5\n"
         "[list mule]\nauto_stop = yes\n[list protected]\n"
         "[route ICBC]\nplugin = rs\n[route 9*]\nplugin = sim\n[route default]\nplugin = sim\n"
         "[plugin rs]\ntype = redis_streams\nhost = 127.0.0.1\nport = 6379\nbanks = ICBC, BOC\n"
         "[dpdk]\nenabled = no\neal = --no-huge -m 512\nip = 192.168.77.2\nport = 7380\n")
    seed("fuzz_config", "errors",
         "\xef\xbb\xbf[gateway]\nlisten = nowhere\n  continued = line\n[agent bad name]\n[route]\n"
         "[unknown]\nkey\n[list x] ; comment\n")
    seed("fuzz_config", "empty-sections", "[agent lonely]\n[plugin p]\n[route B1]\n[list l]\n[cascade]\n")


# ---- fuzz_csv --------------------------------------------------------------------------------
def csv_seeds():
    seed("fuzz_csv", "rows", "ICBK,6222000011110001\nBOC, 6222 0000 2222 0002 ,80\n"
                             "abc1,de89-3704-0044,100,CASE-7\n")
    seed("fuzz_csv", "comments-blank-crlf", "# bank,account,score,case\r\n\r\n  \t\nICBK,1,0,C\r\n#x\n")
    seed("fuzz_csv", "empty-score", "B1,A1,,C-1\nB2,A2,\n")
    seed("fuzz_csv", "bad-score", "\x03B1,A1,101\n")
    seed("fuzz_csv", "too-many-fields", "B1,A1,1,C,extra,more\n")
    seed("fuzz_csv", "long-line", "B1," + "1" * 600 + "\n")
    seed("fuzz_csv", "bad-bank", "TOOLONGBANKCODE,1\n")


# ---- fuzz_result -----------------------------------------------------------------------------
def result_seeds():
    def entry(*kv):
        return "\n".join(kv)
    seed("fuzz_result", "confirmed", entry("instruction_id", "42", "status", "CONFIRMED", "frozen", "150000"))
    seed("fuzz_result", "funds-moved", entry("instruction_id", "7", "status", "FUNDS_MOVED", "frozen", "0",
                                             "onward", "BOC:6222000033330003:90000,ABC:622800:1000",
                                             "reason", "moved before the freeze"))
    seed("fuzz_result", "rejected-reason", entry("instruction_id", "9223372036854775807", "status", "REJECTED",
                                                 "reason", "x" * 80))
    seed("fuzz_result", "not-found", entry("status", "NOT_FOUND", "instruction_id", "3"))
    seed("fuzz_result", "partial", entry("instruction_id", "5", "status", "PARTIAL", "frozen", "10"))
    seed("fuzz_result", "bad-onward", entry("instruction_id", "1", "status", "FUNDS_MOVED", "onward", "B::1,C:D"))
    # Regression: 19-digit numbers overflowed int64 inside parse_i64 (UBSan: signed integer
    # overflow) when the parser lived in redis_streams.c; now refused.
    seed("fuzz_result", "regress-i64-overflow", entry("instruction_id", "9999999999999999999", "status", "PARTIAL",
                                                       "frozen", "9223372036854775808",
                                                       "onward", "B:A:9999999999999999999"))


# ---- fuzz_frame ------------------------------------------------------------------------------
def frame(msgs, flags=0, seq=1, agent_id=0x1234, epoch=7, count=None):
    body = b"".join(msgs)
    n = len(msgs) if count is None else count
    total = 32 + len(body) + 16
    hdr = struct.pack("<HBBIQIHHHHI", 0x4753, 1, flags, agent_id, seq, epoch, n, total, 0, 0, 0)
    return hdr + body + b"\0" * 16


def m_check(bank, acct):
    return bytes([1, len(bank), len(acct)]) + bank + acct


def m_stop(rid, bank, acct, case, amount, ccy):
    return bytes([2, len(rid), len(bank), len(acct), len(case), len(ccy)]) + struct.pack("<q", amount) + \
        rid + bank + acct + case + ccy


def frame_seeds():
    # First byte: the target's flags (3 = fix the header and put a valid MAC).
    seed("fuzz_frame", "check-batch", b"\x03" + frame([m_check(b"ICBK", b"6222000011110001"),
                                                      m_check(b"BOC", b"DE89 3704 0044 0532 0130 00")]))
    seed("fuzz_frame", "stop", b"\x03" + frame([m_stop(b"r-1", b"ICBK", b"6222000011110001", b"C-1", 150000,
                                                       b"CNY")]))
    seed("fuzz_frame", "ping-hello", b"\x01" + frame([b"\x03", b"\x04"]))
    seed("fuzz_frame", "count-lies", b"\x00" + frame([m_check(b"B", b"A")], count=3))
    reply = struct.pack("<BBHBxxxIxxxxQ", 0x81, 1, 0, 70, 12, 0b101)
    seed("fuzz_frame", "reply", b"\x03" + frame([reply], flags=1))


# ---- fuzz_lists ------------------------------------------------------------------------------
def lists_prefix(flags, bank, acct):
    return bytes([flags, len(bank)]) + bank + bytes([len(acct)]) + acct


def lists_seeds(table=None):
    seed("fuzz_lists", "key-only", lists_prefix(0, b"ICBK", b"6222 0000 1111 0001"))
    seed("fuzz_lists", "key-lower-dashes", lists_prefix(8, b"icbk", b"de89-3704-0044-0532-0130-00"))
    seed("fuzz_lists", "bad-key", lists_prefix(0, b"IC K", b"\xff"))
    hdr = bytearray(4096)
    hdr[0:8] = b"SGLISTS1"
    struct.pack_into("<IIIIQ", hdr, 8, 2, 4096, 64, 3, 1024)
    hdr[200:205] = b"mule\0"
    seed("fuzz_lists", "header-only", lists_prefix(2 | 8, b"B1", b"A1") + bytes(hdr[:512]))
    # A foreign table whose list names fill their 32 bytes with no NUL (sg_lists_name then
    # hands out an unterminated string).
    names = bytearray(b"A" * 4096)
    struct.pack_into("<IIIIQ", names, 8, 2, 4096, 64, 64, 1024)
    seed("fuzz_lists", "names-unterminated", lists_prefix(2 | 4 | 8, b"B1", b"A1") + bytes(names))
    # flags 16 + 128: one slot keeps its odd seqlock (a writer that died inside it)
    seed("fuzz_lists", "repeat-slots", lists_prefix(1 | 8 | 16 | 128, b"B1", b"A1") + bytes(range(1, 65)))
    if table:
        # A real table, whole (the 4096-byte header, tags, slots): flags 2|4|8.
        seed("fuzz_lists", "gateway-table", lists_prefix(2 | 4 | 8, b"ICBK", b"6222000011110001") + table)


# ---- fuzz_journal / fuzz_record from a real gateway --------------------------------------------
def records_of(segment):
    """(type, payload) of each record of a segment's bytes (format 2: records inside frames,
    whose 40-byte headers (magic SGJB) and trailers (SGJE) are stepped over; close records,
    type 0xffff, left out)."""
    out, off = [], 64
    while off + 40 <= len(segment):
        _, magic, ln, typ, _, plen = struct.unpack_from("<QIIHHI", segment, off)
        if magic in (0x424A4753, 0x454A4753):  # frame header or trailer
            off += 40
            continue
        if magic != 0x524A4753 or ln == 0:
            break
        if typ != 0xFFFF:
            out.append((typ, segment[off + 40:off + 40 + plen]))
        off += ln
    return out


def gateway_run():
    """Drive a real stopgated; return (segment bytes, list table bytes)."""
    import sgtest
    from sgtest import Gateway, todict, wait_until
    sections = ("[list mule]\n[list protected]\n[plugin sim]\nlatency_us = 100\n"
                "[cascade]\nmax_depth = 2\n")
    gw = sgtest.track(Gateway(gateway={"list_capacity": "1024"}, sections=sections, name="fuzzseed"))
    try:
        gw.start()
        with gw.client("olga") as ops:
            ops.ok("LIST.ADD", "mule", "ICBK", "6222000011110001", "SCORE", "80", "CASE", "C-L1")
            ops.ok("LIST.ADD", "protected", "PAYR", "10000001")
            ops.ok("LIST.ADD", "mule", "ICBK", "6222000099990009")
            ops.ok("LIST.DEL", "mule", "ICBK", "6222000099990009")
            ops.ok("LIST.LOAD", "mule", "-", "BOC,6222000022220002,60,C-L2\nABC,6228000033330003\n")
        with gw.client("alice") as c:
            stop = todict(c.ok("STOP", "fz-1", "BANK", "ICBK", "ACCOUNT", "6222000044440004", "CASE", "C-1",
                               "AMOUNT", "150000", "NOTE", "victim called"))
            c.ok("FREEZE", "fz-2", "BANK", "BOC", "ACCOUNT", "6222000055550005", "CASE", "C-2", "DOC", "court-77")
            c.ok("STOP", "fz-3", "BANK", "ICBK", "ACCOUNT", "6222M001", "CASE", "C-3", "AMOUNT", "90000")
            c.ok("STOP", "fz-1", "BANK", "ICBK", "ACCOUNT", "6222000044440004", "CASE", "C-1", "AMOUNT", "150000",
                 "NOTE", "victim called")
            c.ok("STOP", "fz-7", "BANK", "BOC", "ACCOUNT", "6222000055550005", "CASE", "C-7")  # merged
            held = todict(c.ok("STOP", "fz-4", "BANK", "PAYR", "ACCOUNT", "10000001", "CASE", "C-4"))
            c.ok("EXTEND", "fz-5", stop["order_id"], "TTL", "7200")
            c.ok("RELEASE", "fz-6", stop["order_id"], "REASON", "mistake")
        with gw.client("sam") as sup:
            sup.ok("CONFIRM", held["order_id"])
        time.sleep(0.5)  # bank answers and the cascade
        with open(os.path.join("/dev/shm", gw.shm_name), "rb") as f:
            table = f.read()
        gw.stop()
        with open(os.path.join(gw.journal_dir, "0000000000000001.sgj"), "rb") as f:
            segment = f.read()
        return segment, table
    finally:
        gw.kill9()


def journal_seeds(segment):
    recs = records_of(segment)
    seed("fuzz_journal", "gateway-segment", b"\x00" + segment)
    seed("fuzz_journal", "gateway-segment-torn", b"\x00" + segment[:len(segment) - 13])
    seed("fuzz_journal", "header-then-garbage", b"\x01" + b"SGJR" * 20)
    # modes 2/3: u8 type, u16 payload length, u8 op, payload (op 0x20 rolls, 0x80 flips a byte)
    built = b"".join(struct.pack("<BHB", t, len(p), 0) + p for t, p in recs)
    seed("fuzz_journal", "gateway-records-rebuilt", b"\x02" + built)
    rolled = b"".join(struct.pack("<BHB", t, len(p), 0x20 if i in (3, 9) else 0) + p for i, (t, p) in enumerate(recs))
    seed("fuzz_journal", "gateway-records-3-segments", b"\x03" + rolled)
    flipped = b"".join(struct.pack("<BHB", t, len(p), 0x85 if i == len(recs) // 2 else 0) + p
                       for i, (t, p) in enumerate(recs))
    seed("fuzz_journal", "gateway-records-flip-middle", b"\x02" + flipped)
    seed("fuzz_journal", "gateway-records-cut", b"\x02" + built[:-5])
    # op 0x10 closes the open frame: several batches, the last one damaged by a flip
    batches = b"".join(struct.pack("<BHB", t, len(p), (0x10 if i % 3 == 0 else 0) |
                                   (0x83 if i == len(recs) - 1 else 0)) + p for i, (t, p) in enumerate(recs))
    seed("fuzz_journal", "gateway-records-batches-flip-last", b"\x02" + batches)
    names = {1: "order", 2: "merge", 3: "state", 4: "release", 5: "extend", 6: "confirm", 10: "list-add",
             11: "list-del", 12: "list-load-begin", 13: "list-load-rows", 14: "list-load-commit"}
    def tags(p):
        off, out = 0, set()
        while off + 3 <= len(p):
            out.add(p[off])
            off += 3 + struct.unpack_from("<H", p, off + 1)[0]
        return out
    done = set()
    for t, p in recs:
        n = names.get(t, "type%d" % t)
        if t == 3 and 20 in tags(p):  # T_ONWARD: a FUNDS_MOVED answer, the cascade's source
            n = "state-funds-moved"
        if n in done:
            continue
        done.add(n)
        seed("fuzz_record", "gateway-" + n, p)
        if t == 13:  # the rows blob alone: fuzz_record also walks its input as a blob
            tag_rows = 23
            off = 0
            while off + 3 <= len(p):
                tag, ln = p[off], struct.unpack_from("<H", p, off + 1)[0]
                if tag == tag_rows:
                    seed("fuzz_record", "gateway-rows-blob", p[off + 3:off + 3 + ln])
                off += 3 + ln
    return sorted(done)


def main():
    resp_seeds()
    config_seeds()
    csv_seeds()
    result_seeds()
    frame_seeds()
    segment, table = gateway_run()
    lists_seeds(table)
    kinds = journal_seeds(segment)
    print("seeds written under %s; record types seen: %s" % (CORPUS, ", ".join(kinds)))


if __name__ == "__main__":
    main()
