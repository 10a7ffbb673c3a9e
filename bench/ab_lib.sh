# bench/ab_lib.sh - sourced by the bench/*_ab.sh scripts (not run by itself): the one gateway
# configuration they compare builds on, so that every A/B measures the same set-up. $root is
# the repository root (the sim plugin comes from its build/).

ab_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ab_conf PORT DIR SHM_NAME MAX_ORDERS [BUILD [EXTRA]]: the config on stdout - journal in DIR/j,
# [plugin sim] from BUILD/plugins/sim (default or empty: $root/build; a build's own sim plugin
# when it differs), latency_us = 200 as ops/bench runs it, UDP, metrics and the console off (two
# gateways would both take the console's default port). EXTRA: more [gateway] keys, "k=v@k=v".
ab_conf() {
    local build=${5:-$root/build}
    printf '[gateway]\nlisten = 127.0.0.1:%s\nudp = off\nmetrics = off\nconsole = off\njournal_dir = %s/j\nshm_name = %s\nmax_orders = %s\nplugin_dir = %s/plugins/sim\n' \
        "$1" "$2" "$3" "$4" "$build"
    [[ -z ${6:-} ]] || tr '@' '\n' <<<"$6"
    printf '[plugin sim]\ntype = sim\nlatency_us = 200\n'
}

# ab_start_all WORK SHM_PREFIX MAX_ORDERS TAG=STOPGATED[@key=value...]...: one gateway per TAG
# in WORK/TAG (fills the caller's associative arrays PID and PORT, and the array tags in
# argument order), then waits until each is listening; exits 1 with its log if one does not
# start in 60 s. "@key=value" adds [gateway] keys: one binary, two settings (off=B@spin_us=0).
ab_start_all() {
    local work=$1 prefix=$2 max=$3 tb t b x i
    shift 3
    for tb in "$@"; do
        t=${tb%%=*} b=${tb#*=} x=
        [[ $b != *@* ]] || { x=${b#*@}; b=${b%%@*}; }
        tags+=("$t")
        mkdir -p "$work/$t"
        PORT[$t]="$(ab_free_port)"
        ab_conf "${PORT[$t]}" "$work/$t" "$prefix-$t" "$max" "" "$x" >"$work/$t/gw.conf"
        STOPGATE_DEV_SECRET=ab "$b" -c "$work/$t/gw.conf" >"$work/$t/gw.log" 2>&1 </dev/null &
        PID[$t]=$!
    done
    for t in "${tags[@]}"; do
        for ((i = 0; i < 600; i++)); do grep -q 'ready: listening' "$work/$t/gw.log" && break; sleep 0.1; done
        grep -q 'ready: listening' "$work/$t/gw.log" || { echo "$0: $t did not start" >&2; cat "$work/$t/gw.log" >&2; exit 1; }
    done
}
