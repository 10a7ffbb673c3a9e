#!/usr/bin/env bash
# bench/listbench_ab.sh ROUNDS ENTRIES TAG=LISTBENCH [TAG=LISTBENCH ...]   (LOOKUPS, RUNS: per run)
#
# A/B of listbench builds (in-process CHECK against rte_hash_lookup_bulk on the same keys, issue
# 13), alternated round by round so that every build sees the same machine; the build that goes
# first rotates from round to round. Each run pairs its own stopgate and rte_hash timings back to
# back (listbench's `ratio` is the median of its runs' rte_hash/check_keys). Prints per round
# and build: check_keys ns, rte_hash ns and ours/rte = 1/ratio (<= 1.0: stopgate as fast or
# faster); at the end the median of ours/rte per build. JSON of every run in $OUT (default a
# fresh directory under /var/tmp, kept). Run from anywhere; tables go to /dev/shm/sgbench-<pid>.
set -euo pipefail
(($# >= 3)) || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=$1 entries=$2
shift 2
lookups=${LOOKUPS:-4000000} runs=${RUNS:-3}
out=${OUT:-$(mktemp -d /var/tmp/listbench_ab.XXXXXX)}
mkdir -p "$out"
tags=("$@")
for ((r = 1; r <= rounds; r++)); do
    n=${#tags[@]}
    for ((j = 0; j < n; j++)); do
        tb=${tags[$(((j + r - 1) % n))]}
        t=${tb%%=*} b=${tb#*=}
        json="$out/$t-$entries-$r.json"
        "$b" --entries "$entries" --lookups "$lookups" --runs "$runs" --json "$json" >"$out/$t-$entries-$r.log" 2>&1 ||
            { echo "$0: $t failed:" >&2; cat "$out/$t-$entries-$r.log" >&2; exit 1; }
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("round %s %-6s entries %s: check_keys %.1f ns, check_many %.1f ns, rte_hash %.1f ns, ours/rte %.3f" % (sys.argv[2], sys.argv[3], d["entries"], d["check_keys_ns"], d["check_many_ns"], d["rte_hash_bulk_ns"], 1 / d["ratio"]))' \
            "$json" "$r" "$t"
    done
done
python3 - "$out" "$entries" "${tags[@]}" <<'EOF'
import glob, json, statistics, sys
out, entries = sys.argv[1], sys.argv[2]
for tb in sys.argv[3:]:
    t = tb.split("=", 1)[0]
    v = sorted(1 / json.load(open(f))["ratio"] for f in glob.glob("%s/%s-%s-*.json" % (out, t, entries)))
    print("%-6s entries %s: ours/rte median %.3f (%s)" % (t, entries, statistics.median(v), " ".join("%.3f" % x for x in v)))
EOF
echo "results: $out"
