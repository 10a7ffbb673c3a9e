#!/usr/bin/env bash
# bench/burst_ab.sh ROUNDS TAG=STOPGATED [TAG=STOPGATED ...]
#
# A/B of stopgated builds on ops/bench's row (c), the 6,077-STOP burst (issue 13), alternated
# round by round so that every build sees the same machine: per round and build, a fresh
# gateway on an empty journal (max_orders = 1048576 and prefault on, as ops/bench starts it;
# [plugin sim] latency_us = 200), one `build/bench/burst -n 6077` as soon as it listens, then
# it is killed. Prints per round and build: acked_ms and confirmed_ms (the bench row's
# figures) and cpu_ms, the main thread's on-CPU time over the burst
# (/proc/PID/task/PID/schedstat before and after): the burst's own work, which a loaded machine
# stretches less than the wall time. Read the ratios within a round, then their median. Run
# from the repository root after `ninja -C build` (burst and the sim plugin come from build/).
# Loopback only; each burst is bounded (-n 6077, timeout 120 s).
set -euo pipefail
(($# >= 2)) || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=$1
shift
root="$(pwd)"
work="$(mktemp -d /var/tmp/burst_ab.XXXXXX)"
pid=""
cleanup() {
    [[ -z "$pid" ]] || kill -KILL "$pid" 2>/dev/null || true
    rm -f /dev/shm/burst-ab-$$ /dev/shm/burst-ab-$$.*
    rm -rf "$work"
}
trap cleanup EXIT
. "$root/bench/ab_lib.sh"
oncpu_ns() { cut -d' ' -f1 "/proc/$1/task/$1/schedstat" 2>/dev/null || echo 0; }
kv() { sed -n "s/.*\\b$1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }
for ((r = 1; r <= rounds; r++)); do
    for tb in "$@"; do
        t=${tb%%=*} b=${tb#*=}
        rm -rf "$work/j"
        port="$(ab_free_port)"
        ab_conf "$port" "$work" "burst-ab-$$" 1048576 >"$work/gw.conf"
        : >"$work/gw.log"
        STOPGATE_DEV_SECRET=burstab "$b" -c "$work/gw.conf" >"$work/gw.log" 2>&1 </dev/null &
        pid=$!
        for ((i = 0; i < 600; i++)); do grep -q 'ready: listening' "$work/gw.log" && break; sleep 0.1; done
        grep -q 'ready: listening' "$work/gw.log" || { echo "$t did not start" >&2; tail -3 "$work/gw.log" >&2; exit 1; }
        c0=$(oncpu_ns "$pid")
        out="$(STOPGATE_SECRET=burstab timeout 120 "$root/build/bench/burst" -p "$port" -n 6077 --bank ICBC)"
        c1=$(oncpu_ns "$pid")
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
        rm -f /dev/shm/burst-ab-$$ /dev/shm/burst-ab-$$.*
        printf 'round %d %s acked_ms %s confirmed_ms %s cpu_ms %.1f\n' "$r" "$t" "$(kv acked_ms "$out")" \
            "$(kv confirmed_ms "$out")" "$(((c1 - c0) / 100000))e-1"
    done
done
