#!/usr/bin/env bash
# bench/stop_ab.sh ROUNDS N TAG=STOPGATED [TAG=STOPGATED ...]
#
# Side-by-side A/B of stopgated builds on a shared, noisy machine (issue 13): one gateway per
# TAG is started (own empty journal under /var/tmp, [plugin sim] latency_us = 200, metrics
# off), then each round runs `redis-benchmark -c 50 -n N STOP ...` against ALL of them at the
# same time, so every build sees the same disk and CPU noise; per gateway and round it prints
# STOP/s, server CPU us per STOP (user+system of every thread, io-wq workers included, from
# /proc/PID/stat) and context switches per STOP (voluntary+involuntary, all threads). Read the
# ratios between builds within a round, then their median over rounds. Run from the repository
# root after `ninja -C build` (the sim plugin is build/plugins/sim). Loopback only; bounded.
set -euo pipefail
(($# >= 3)) || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=$1 n=$2
shift 2
root="$(pwd)"
work="$(mktemp -d /var/tmp/stop_ab.XXXXXX)"
declare -A PID PORT
cleanup() {
    for t in "${!PID[@]}"; do kill -TERM "${PID[$t]}" 2>/dev/null || true; done
    for t in "${!PID[@]}"; do wait "${PID[$t]}" 2>/dev/null || true; done
    for t in "${!PID[@]}"; do rm -f "/dev/shm/stop-ab-$$-$t"; done # the lists region stays otherwise
    rm -rf "$work"
}
trap cleanup EXIT
tags=()
. "$root/bench/ab_lib.sh"
ab_start_all "$work" "stop-ab-$$" 2097152 "$@"
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cswitches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s }'; }
tck="$(getconf CLK_TCK)"
for ((r = 1; r <= rounds; r++)); do
    declare -A C0 S0
    rm -f "$work"/*.rps
    for tb in "$@"; do t=${tb%%=*}; C0[$t]="$(ticks "${PID[$t]}")"; S0[$t]="$(cswitches "${PID[$t]}")"; done
    bpids=()
    for tb in "$@"; do
        t=${tb%%=*}
        (timeout 300 redis-benchmark -h 127.0.0.1 -p "${PORT[$t]}" --user dev -a ab -c 50 -n "$n" -r 2147483647 --csv \
            STOP 'r__rand_int____rand_int__' BANK ICBC ACCOUNT 'AC__rand_int____rand_int__X' CASE BENCH 2>/dev/null |
            tail -n 1 | awk -F'","' '{ print $2 }' >"$work/$t.rps") &
        bpids+=($!)
    done
    for p in "${bpids[@]}"; do wait "$p" || true; done
    for tb in "$@"; do
        t=${tb%%=*} p=${PID[$t]}
        c1="$(ticks "$p")" s1="$(cswitches "$p")"
        echo "round $r $t stop_per_s=$(cat "$work/$t.rps") cpu_us_per_stop=$(python3 -c "print(round(($c1 - ${C0[$t]}) * 1e6 / $tck / $n, 1))") cs_per_stop=$(python3 -c "print(round(($s1 - ${S0[$t]}) / $n, 2))") load=$(cut -d' ' -f1 /proc/loadavg)"
    done
done
