# ops/bench-cluster.sh — the cluster part of ./ops/bench (issue 12, SPEC §10, docs/cluster.md).
# Sourced by ops/bench, never run alone: it uses ops/bench's helpers (gw_start, gw_stop,
# record, section, sg_log, rb_run, kv) and variables (QUICK, WORK, BENCH_BIN, SECRET, BANK,
# STOP_CMD, A_CONNS, BURST_N) and its cleanup trap.
#
#   (n) durable STOP/s at 50 connections on a gateway in cluster mode (leader of a 3-member
#       etcd on this machine: every journal batch is also one fenced etcd txn) vs a single
#       node, fresh gateways in turn, same generator (redis-benchmark); and the 6,077 burst
#       acknowledged in cluster mode vs on a single node, with the bytes its log put into etcd
#       (log values, packed) against its journal frames and the CPU the 3 etcd members used
#       from its first STOP to 0.5 s after its last bank answer;
#   (o) failover time (kill -9 of the leader to the first ACCEPTED on the new leader, p99 of
#       N_FAILOVERS runs) and follower list lag (LIST.ADD on the leader to the follower's
#       CHECK and libstopgate shared memory, p99 of N_LAG_ADDS): the measurement entry points
#       of tests/integration/cluster/test_cluster_failover.py (3 etcd + 3 gateways, lease
#       1000 ms), parsed from its FIGURE lines.
# The etcd members (tests/integration/etcdcluster.py: heartbeat 25 ms, election 250 ms) keep
# their data under the scratch directory, on the same disk as the journals.
# shellcheck shell=bash disable=SC2154,SC2034  # variables and helpers come from, and go to, ops/bench

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "ops/bench-cluster.sh is part of ./ops/bench: run ./ops/bench [--cluster-only]" >&2
    exit 2
fi

if ((QUICK)); then
    N_RUNS=2 N_N=20000 N_BURSTS=2 N_FAILOVERS=5 N_LAG_ADDS=60
else
    N_RUNS=3 N_N=100000 N_BURSTS=5 N_FAILOVERS=20 N_LAG_ADDS=200
fi
ETCD_BIN="$(command -v etcd || echo /usr/bin/etcd)"

if [[ ! -x "$ETCD_BIN" ]]; then
    sg_warn "(n) skipped: no etcd binary (apt-get install etcd-server)"
else
    section "(n) cluster mode: STOP/s at $A_CONNS connections ($N_RUNS x $N_N) and the $BURST_N burst ($N_BURSTS x), leader on a 3-member etcd vs a single node"
    mkdir -p "$WORK/etcd"
    ETCDCLUSTER_DIR="$WORK/etcd" python3 "$SG_ROOT/tests/integration/etcdcluster.py" 3 \
        >"$WORK/etcdcluster.out" 2>"$WORK/etcdcluster.log" </dev/null 9>&- &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    for ((i = 0; i < 600; i++)); do
        [[ -s "$WORK/etcdcluster.out" ]] && break
        kill -0 "$ETCD_PID" 2>/dev/null || { echo "ops/bench: etcd cluster did not start (see etcdcluster.log)" >&2; exit 1; }
        sleep 0.05
    done
    ETCD_ENDPOINTS="$(head -n 1 "$WORK/etcdcluster.out")"
    [[ "$ETCD_ENDPOINTS" == http://* ]] || { echo "ops/bench: etcd cluster did not start" >&2; exit 1; }

    # cluster_start NAME: a fresh gateway leading its own prefix; waits until it takes writes.
    # (A one-member cluster: nobody is redirected, so advertise only has to be well-formed.)
    cluster_start() {
        local name="$1" port
        port="$(sg_free_port)"
        GW_EXTRA_CONF="$(printf '[cluster]\netcd = %s\nname = %s\nprefix = /bench-%s-%s\nadvertise = 127.0.0.1:%s\n' \
            "$ETCD_ENDPOINTS" "$name" "$$" "$name" "$port")"
        gw_start "$name" "$WORK/journal-$name" 1048576
        GW_EXTRA_CONF=""
        local k
        for ((k = 0; k < 200; k++)); do
            [[ "$(gw_cli ROLE 2>/dev/null | awk 'prev == "writable" { print; exit } { prev = $0 }')" == 1 ]] && return 0
            sleep 0.05
        done
        echo "ops/bench: cluster gateway $name does not lead (see $GW_LOG)" >&2
        return 1
    }
    for ((r = 1; r <= N_RUNS; r++)); do
        gw_start "single-n$r" "$WORK/journal-single-n$r" 1048576
        s_rps="$(rb_run -p "$GW_PORT" --user dev -a "$SECRET" -c "$A_CONNS" -n "$N_N" -r 2147483647 --csv "${STOP_CMD[@]}")" ||
            { echo "ops/bench: redis-benchmark against the single node failed" >&2; exit 1; }
        gw_stop KILL
        rm -rf "$WORK/journal-single-n$r"
        cluster_start "cluster-n$r"
        c_rps="$(rb_run -p "$GW_PORT" --user dev -a "$SECRET" -c "$A_CONNS" -n "$N_N" -r 2147483647 --csv "${STOP_CMD[@]}")" ||
            { echo "ops/bench: redis-benchmark against the cluster leader failed" >&2; exit 1; }
        batches="$(gw_cli INFO cluster | tr -d '\r' | awk -F: '$1 == "log_batches" { print $2 }')"
        gw_stop
        rm -rf "$WORK/journal-cluster-n$r"
        record stop_per_s_50c_cluster stopgate "$r" "$c_rps"
        record stop_per_s_50c_cluster peer "$r" "$s_rps"
        printf '    run %d: cluster %8.0f STOP/s (%s etcd txns)   single node %8.0f STOP/s\n' \
            "$r" "$c_rps" "$batches" "$s_rps" >&2
    done
    # CPU (ms) the etcd members (children of etcdcluster.py) have used so far.
    etcd_cpu_ms() {
        local pid t=0 f
        for pid in $(ps --ppid "$ETCD_PID" -o pid=); do
            read -ra f <"/proc/$pid/stat" || continue
            t=$((t + f[13] + f[14]))
        done
        echo $((t * 1000 / $(getconf CLK_TCK)))
    }
    for ((r = 1; r <= N_BURSTS; r++)); do
        cluster_start "cburst-$r"
        ecpu0="$(etcd_cpu_ms)"
        out="$(STOPGATE_SECRET="$SECRET" timeout 120 "$BENCH_BIN/burst" -p "$GW_PORT" -n "$BURST_N" --bank "$BANK")" ||
            { echo "ops/bench: burst against the cluster leader failed: $out" >&2; exit 1; }
        # Bytes of the burst's log in etcd: the values put (log_value_bytes: packed, logval.h)
        # against the journal frames they hold (log_bytes). The bank answers' batch settles first.
        sleep 0.5
        ecpu=$(($(etcd_cpu_ms) - ecpu0))
        info="$(gw_cli INFO cluster | tr -d '\r')"
        fbytes="$(awk -F: '$1 == "log_bytes" { print $2 }' <<<"$info")"
        vbytes="$(awk -F: '$1 == "log_value_bytes" { print $2 }' <<<"$info")"
        [[ -n "$vbytes" ]] || vbytes="$fbytes" # a gateway before packing puts the frames as they are
        gw_stop
        rm -rf "$WORK/journal-cburst-$r"
        cack="$(kv acked_ms "$out")"
        record burst6077_log_bytes_cluster stopgate "$r" "$vbytes"
        record burst6077_log_bytes_cluster peer "$r" "$fbytes"
        record burst6077_etcd_cpu_ms_cluster stopgate "$r" "$ecpu"
        gw_start "sburst-$r" "$WORK/journal-sburst-$r" 1048576
        out="$(STOPGATE_SECRET="$SECRET" timeout 120 "$BENCH_BIN/burst" -p "$GW_PORT" -n "$BURST_N" --bank "$BANK")" ||
            { echo "ops/bench: burst against the single node failed: $out" >&2; exit 1; }
        gw_stop KILL
        rm -rf "$WORK/journal-sburst-$r"
        sack="$(kv acked_ms "$out")"
        record burst6077_acked_ms_cluster stopgate "$r" "$cack"
        record burst6077_acked_ms_cluster peer "$r" "$sack"
        printf '    run %d: burst acked: cluster %6.1f ms   single node %6.1f ms   (log: %s bytes put for %s bytes of frames; etcd CPU %d ms)\n' \
            "$r" "$cack" "$sack" "$vbytes" "$fbytes" "$ecpu" >&2
    done
    kill -TERM "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    forget_pid "$ETCD_PID"
    printf '    (%ds)\n' $((SECONDS - SECTION_T0)) >&2
    SECTION_T0=""

    section "(o) cluster failover ($N_FAILOVERS x kill -9 of the leader) and follower list lag ($N_LAG_ADDS LIST.ADDs): 3 etcd + 3 gateways"
    FO_OUT="$WORK/cluster-failover.out"
    if (cd "$SG_ROOT/tests/integration/cluster" &&
        STOPGATED="$GW_BUILD/gateway/stopgated" STOPCTL="$GW_BUILD/gateway/stopctl" \
            SG_FAILOVER_RUNS="$N_FAILOVERS" SG_LAG_ADDS="$N_LAG_ADDS" SG_LEASE_MS=1000 PYTHONDONTWRITEBYTECODE=1 \
            timeout 900 /usr/bin/python3 test_cluster_failover.py Cluster.test_1_list_lag Cluster.test_2_kill9_failover \
            >"$FO_OUT" 2>"$FO_OUT.log" </dev/null 9>&-); then
        fo_p99="$(awk '$1 == "FIGURE" && $2 == "failover_ms" { print $6 }' "$FO_OUT")"
        # the later of the two readers (CHECK over RESP, libstopgate on the shared memory)
        lag_p99="$(awk '$1 == "FIGURE" && $2 ~ /^follower_list_lag_/ { if ($6 > m) m = $6 } END { print m }' "$FO_OUT")"
        record cluster_failover_ms_p99 stopgate 1 "$fo_p99"
        record cluster_list_lag_ms_p99 stopgate 1 "$lag_p99"
        grep '^FIGURE' "$FO_OUT" | sed 's/^/    /' >&2
    else
        sg_warn "(o) failed: no failover/lag rows (see $FO_OUT.log)"
        tail -n 20 "$FO_OUT.log" >&2
    fi
    printf '    (%ds)\n' $((SECONDS - SECTION_T0)) >&2
    SECTION_T0=""
fi
