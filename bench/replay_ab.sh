#!/usr/bin/env bash
# bench/replay_ab.sh ROUNDS JOURNAL TAG=STOPGATED [TAG=STOPGATED ...]   (WARM=1: no eviction)
#
# A/B of stopgated builds on the replay of ops/bench's row (e) (issue 13), alternated round by
# round so that every build sees the same machine: per round and build, a fresh copy of the
# journal directory JOURNAL (made once by `build/bench/mkjournal DIR 1000000`) is dropped from
# the page cache (`mkjournal --evict`), the gateway is started on it (max_orders = 2097152,
# [plugin sim], metrics off) and killed once it logs `journal: replayed ... in X ms`. Prints
# per round and build: wall_ms (X, the bench row's figure) and cpu_ms, the main thread's
# on-CPU time from the plugin's 'ready' line to the replay line (/proc/PID/task/PID/schedstat,
# polled every 10 ms): the replay's own work, which a loaded machine stretches far less than
# the wall time. Read the ratios within a round, then their median. Run from the repository
# root after `ninja -C build` (mkjournal and the sim plugin come from build/). Loopback only.
set -euo pipefail
(($# >= 3)) || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=$1 master=$2
shift 2
root="$(pwd)"
work="$(mktemp -d /var/tmp/replay_ab.XXXXXX)"
pid=""
cleanup() {
    [[ -z "$pid" ]] || kill -KILL "$pid" 2>/dev/null || true
    rm -f /dev/shm/replay-ab-$$ /dev/shm/replay-ab-$$.*
    rm -rf "$work"
}
trap cleanup EXIT
. "$root/bench/ab_lib.sh"
oncpu_ns() { cut -d' ' -f1 "/proc/$1/task/$1/schedstat" 2>/dev/null || echo 0; }
for ((r = 1; r <= rounds; r++)); do
    for tb in "$@"; do
        t=${tb%%=*} b=${tb#*=}
        rm -rf "$work/j"
        cp -a "$master" "$work/j"
        [[ -n "${WARM:-}" ]] || "$root/build/bench/mkjournal" --evict "$work/j" >/dev/null
        ab_conf "$(ab_free_port)" "$work" "replay-ab-$$" 2097152 >"$work/gw.conf"
        : >"$work/gw.log"
        STOPGATE_DEV_SECRET=replayab "$b" -c "$work/gw.conf" >"$work/gw.log" 2>&1 </dev/null &
        pid=$!
        c0="" c1=""
        for ((i = 0; i < 60000; i++)); do # at most ~10 minutes
            if [[ -z "$c0" ]] && grep -q 'plugin .* ready' "$work/gw.log"; then c0=$(oncpu_ns "$pid"); fi
            if grep -q 'journal: replayed' "$work/gw.log"; then
                c1=$(oncpu_ns "$pid")
                break
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.01
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
        rm -f /dev/shm/replay-ab-$$ /dev/shm/replay-ab-$$.*
        line="$(grep -m1 'journal: replayed' "$work/gw.log" || true)"
        [[ -n "$line" ]] || { echo "$t: no replay line" >&2; tail -3 "$work/gw.log" >&2; exit 1; }
        printf 'round %d %s wall_ms %s cpu_ms %d\n' "$r" "$t" "$(sed -n 's/.* in \([0-9.]*\) ms;.*/\1/p' <<<"$line")" \
            $(((${c1:-0} - ${c0:-0}) / 1000000))
    done
done
