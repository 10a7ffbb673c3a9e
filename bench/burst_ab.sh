#!/usr/bin/env bash
# bench/burst_ab.sh ROUNDS TAG=STOPGATED [TAG=STOPGATED ...]   (N=6077 burst size, REDIS=0: no peer)
#
# A/B of stopgated builds on ops/bench's row (c), the 6,077-STOP burst on one connection (issue
# 13), alternated round by round so that every build sees the same machine: per round and
# build a fresh gateway (own empty journal under /var/tmp, max_orders = 1048576, [plugin sim]
# latency_us = 200, metrics off) runs one `bench/burst -n N --bank ICBC`, then it is stopped.
# Prints per round and build: acked_ms and confirmed_ms (bench/burst's figures: the N-th answer
# and every order CONFIRMED at the sim bank), and cpu_ms, the main thread's on-CPU time over the
# burst (/proc/PID/task/PID/schedstat before and after the client; AUTH runs on another
# thread): the burst's own work, which a loaded machine stretches far less than the wall time;
# faults, the page faults the main thread took over the burst (its stat's minflt + majflt).
# Builds take turns going first.
# Then, unless REDIS=0, the peer in the same round: N pipelined SETs to one redis-server
# (appendonly yes, appendfsync always, as ops/bench starts it). Read the ratios within a round,
# then their median. Run from the repository root after `ninja -C build` (bench/burst comes from
# build/; each gateway loads its own build's sim plugin, BUILD/plugins/sim, else build/'s).
# Loopback only; bounded (timeouts on every client).
set -euo pipefail
(($# >= 2)) || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=$1
shift
n=${N:-6077}
root="$(pwd)"
work="$(mktemp -d /var/tmp/burst_ab.XXXXXX)"
pid="" rpid=""
cleanup() {
    [[ -z "$pid" ]] || kill -KILL "$pid" 2>/dev/null || true
    [[ -z "$rpid" ]] || kill -TERM "$rpid" 2>/dev/null || true
    [[ -z "$rpid" ]] || wait "$rpid" 2>/dev/null || true
    rm -f /dev/shm/burst-ab-$$ /dev/shm/burst-ab-$$.*
    rm -rf "$work"
}
trap cleanup EXIT
. "$root/bench/ab_lib.sh"
oncpu_ns() { cut -d' ' -f1 "/proc/$1/task/$1/schedstat" 2>/dev/null || echo 0; }
# Page faults the main thread took (minflt + majflt, fields 10 and 12 of its stat; comm has no spaces).
faults() { awk '{ print $10 + $12 }' "/proc/$1/task/$1/stat" 2>/dev/null || echo 0; }
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
if [[ "${REDIS:-1}" != 0 ]]; then
    rport="$(ab_free_port)"
    mkdir -p "$work/redis"
    redis-server --port "$rport" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes --appendfsync always \
        --save '' --daemonize no --logfile "$work/redis/log" </dev/null >/dev/null 2>&1 &
    rpid=$!
    for ((i = 0; i < 200; i++)); do [[ "$(redis-cli -p "$rport" ping 2>/dev/null)" == PONG ]] && break; sleep 0.05; done
fi
builds=("$@")
for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < ${#builds[@]}; k++)); do
        # Each round starts with the next build: none always runs first (or right after Redis).
        tb=${builds[(k + r - 1) % ${#builds[@]}]}
        t=${tb%%=*} b=${tb#*=}
        rm -rf "$work/gw"
        mkdir -p "$work/gw"
        port="$(ab_free_port)"
        # The build's own sim plugin when it has one (STOPGATED is BUILD/gateway/stopgated).
        bdir="$(dirname "$(dirname "$b")")"
        [[ -e "$bdir/plugins/sim/sim.so" ]] || bdir="$root/build"
        ab_conf "$port" "$work/gw" "burst-ab-$$" 1048576 "$bdir" >"$work/gw.conf"
        rm -f "$work/gw.log" # the previous gateway's 'ready' line must not be read as this one's
        STOPGATE_DEV_SECRET=ab "$b" -c "$work/gw.conf" >"$work/gw.log" 2>&1 </dev/null &
        pid=$!
        for ((i = 0; i < 1800; i++)); do grep -qs 'ready: listening' "$work/gw.log" && break; sleep 0.1; done
        grep -qs 'ready: listening' "$work/gw.log" || { echo "$0: $t did not start" >&2; cat "$work/gw.log" >&2; exit 1; }
        c0="$(oncpu_ns "$pid")" f0="$(faults "$pid")"
        out="$(STOPGATE_SECRET=ab timeout 120 build/bench/burst -p "$port" --agent dev -n "$n" --bank ICBC)" ||
            { echo "$0: burst against $t failed: $out" >&2; tail -n 20 "$work/gw.log" >&2; exit 1; }
        c1="$(oncpu_ns "$pid")" f1="$(faults "$pid")"
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        pid=""
        echo "round $r $t acked_ms=$(kv acked_ms "$out") confirmed_ms=$(kv confirmed_ms "$out") cpu_ms=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }') faults=$((f1 - f0)) load=$(cut -d' ' -f1 /proc/loadavg)"
    done
    if [[ -n "$rpid" ]]; then
        redis-cli -p "$rport" flushall >/dev/null
        out="$(timeout 120 build/bench/burst --redis -p "$rport" -n "$n")" || { echo "$0: burst against redis failed" >&2; exit 1; }
        echo "round $r redis acked_ms=$(kv acked_ms "$out")"
    fi
done
