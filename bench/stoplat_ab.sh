#!/usr/bin/env bash
# bench/stoplat_ab.sh ROUNDS N TAG=STOPGATED [TAG=STOPGATED ...]
#
# STOP latency at 1 connection, builds side by side on a shared, noisy machine (issue 13,
# docs/PERFORMANCE.md "Issue 13: STOP latency at 1 connection"). One gateway per TAG is
# started (own empty, pre-zeroed journal under /var/tmp, [plugin sim] latency_us = 200, as
# ops/bench runs it); each round runs `fsynclat -z -n N` on a file in the same directory (the
# peer: the file kind the journal writes), then `stoplat -n N` against every gateway in turn,
# the order of the gateways rotating from round to round. Prints one line per run, then the
# medians over rounds of p50/p99 and of each build's excess over the same round's fdatasync.
# Run from the repository root after `ninja -C build` (fsynclat, stoplat and the sim plugin
# come from build/). Loopback only; bounded (timeouts).
set -euo pipefail
(($# >= 3)) || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=$1 n=$2
shift 2
root="$(pwd)"
work="$(mktemp -d /var/tmp/stoplat_ab.XXXXXX)"
declare -A PID PORT
tags=()
cleanup() {
    for t in "${!PID[@]}"; do kill -TERM "${PID[$t]}" 2>/dev/null || true; done
    for t in "${!PID[@]}"; do wait "${PID[$t]}" 2>/dev/null || true; done
    for t in "${!PID[@]}"; do rm -f "/dev/shm/stoplat-ab-$$-$t"; done
    rm -rf "$work"
}
trap cleanup EXIT
. "$root/bench/ab_lib.sh"
ab_start_all "$work" "stoplat-ab-$$" 1048576 "$@"
# The gateways zero-fill their first segment at start, fsynclat -z its file each run: let
# writeback of that finish before anything is timed, or whoever runs next pays for it.
flush() { timeout 120 sync || true; }
flush
mkdir -p "$work/fsync"
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
res="$work/results"
: >"$res"
nt=${#tags[@]}
for ((r = 1; r <= rounds; r++)); do
    f="$(timeout 300 "$root/build/bench/fsynclat" -d "$work/fsync" -n "$n" -z)"
    f50="$(field p50_us <<<"$f")" f99="$(field p99_us <<<"$f")"
    flush
    echo "round $r fdatasync-z p50_us=$f50 p99_us=$f99 load=$(cut -d' ' -f1 /proc/loadavg)"
    for ((k = 0; k < nt; k++)); do
        t=${tags[$(((k + r) % nt))]}
        s="$(STOPGATE_SECRET=ab timeout 300 "$root/build/bench/stoplat" -p "${PORT[$t]}" -n "$n" --bank ICBC)"
        s50="$(field p50_us <<<"$s")" s99="$(field p99_us <<<"$s")"
        echo "round $r $t p50_us=$s50 p99_us=$s99 (fdatasync +$(python3 -c "print(round($s50 - $f50))") / +$(python3 -c "print(round($s99 - $f99))"))"
        echo "$t $s50 $s99 $f50 $f99" >>"$res"
    done
done
python3 - "$res" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, s50, s99, f50, f99 = line.split()
    rows.setdefault(t, []).append(tuple(map(float, (s50, s99, f50, f99))))
for t, v in rows.items():
    med = lambda i: statistics.median(x[i] for x in v)
    d50 = statistics.median(x[0] - x[2] for x in v)
    d99 = statistics.median(x[1] - x[3] for x in v)
    print(f"median {t}: p50_us={med(0):.1f} p99_us={med(1):.1f} fdatasync p50/p99 {med(2):.1f}/{med(3):.1f} "
          f"excess p50 +{d50:.1f} p99 +{d99:.1f}")
EOF
