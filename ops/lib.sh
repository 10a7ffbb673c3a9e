#!/usr/bin/env bash
# ops/lib.sh — helpers shared by the ops/ scripts. Source it, do not run it:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets no shell options of its own: each script chooses `set -euo pipefail` itself, and
# every helper here returns a status instead of exiting, so a caller can still print a
# summary after a failure.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "ops/lib.sh is a library for the ops/ scripts: source it, do not run it" >&2
    exit 2
fi

# Everything a clean Debian bookworm needs to build, test and demo stopgate. One list, so
# ops/quickstart, ops/test and CI cannot drift apart. libclang-rt-14-dev carries the
# sanitizer and libFuzzer runtimes clang needs for the fuzz targets; redis-server and
# redis-tools are the peer for the redis_streams plugin tests and redis-cli for humans;
# dpdk-dev builds the kernel-bypass path that integration-dpdk drives (meson finds libdpdk
# as optional, so without it the build silently lacks DPDK and that test fails); iproute2
# gives `ip netns` for it; gnuplot-nox draws stopbench's plots. libsystemd-dev gives
# stopgated sd_notify (Type=notify); systemd brings systemd-analyze, with which
# integration-least_privilege judges the shipped unit. libssl-dev and openssl: TLS on RESP
# and the test certificates. etcd-server, etcd-client and libcurl4-openssl-dev: the
# cluster (SPEC §10) and its tests against a real 3-member etcd.
# shellcheck disable=SC2034  # used by the scripts that source this file
SG_PACKAGES=(
    meson ninja-build pkg-config gcc clang libclang-rt-14-dev
    liburing-dev libxxhash-dev libhiredis-dev libcmocka-dev libinih-dev libsodium-dev
    libjansson-dev redis-server redis-tools python3
    dpdk-dev iproute2 gnuplot-nox libsystemd-dev systemd libssl-dev openssl
    etcd-server etcd-client libcurl4-openssl-dev libzstd-dev zstd # zstd: test_cluster_leader.py decodes packed log values
    prometheus # promtool: tests/integration/test_promtool.py checks /metrics and docs/alerts.yml
    dpkg-dev debhelper lintian # ops/package (dpkg-buildpackage, dh) and tests/integration/test_deb.py
    man-db groff-base # man and groff: tests/integration/test_manpages.py renders the man pages
    chromium chromium-driver python3-selenium # tests/integration/test_console_browser.py
)

# The repository root, whatever directory the script was started from.
# shellcheck disable=SC2034
SG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

sg_log() { printf '==> %s\n' "$*" >&2; }
sg_warn() { printf 'WARNING: %s\n' "$*" >&2; }

# sg_pkg_installed PKG: true when dpkg knows PKG as fully installed. `dpkg -s` alone also
# succeeds for a package that was removed but left its config files behind, so the Status
# line is checked too.
sg_pkg_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

# sg_need_packages PKG...: install the packages that are missing, and only those. The apt
# index is refreshed only when something must be installed, so the usual run (everything
# present) makes no network access and needs no root.
sg_need_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        sg_pkg_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0

    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 ||
            { sg_warn "missing packages (${missing[*]}) and not root: install them and rerun"; return 1; }
        sudo=(sudo)
    fi
    sg_log "installing missing packages: ${missing[*]}"
    "${sudo[@]}" apt-get update || return 1
    # Recommends stay on: gcc only *recommends* libc6-dev, without which nothing compiles.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" || return 1
}

# sg_build DIR [MESON_ARGS...]: configure DIR once, then build it. An existing build
# directory is reused (incremental builds are what makes ops/test bearable); MESON_ARGS
# are then applied with `meson configure` so a reused directory still gets the options
# the caller asked for (e.g. -Dwerror=true on a build/ someone set up without it).
sg_build() {
    local dir="$1"
    shift
    if [[ -f "$dir/build.ninja" ]]; then
        if (($# > 0)); then
            meson configure "$dir" "$@" || return 1
        fi
    elif [[ -d "$dir/meson-private" ]]; then
        # A directory left half-configured (interrupted setup): start it over.
        meson setup --wipe "$dir" "$@" || return 1
    else
        meson setup "$dir" "$@" || return 1
    fi
    ninja -C "$dir"
}

# sg_free_port: print a TCP port on 127.0.0.1 that nothing listens on right now (the
# kernel picks it). Racy by nature — another process may take it before we bind — which
# is acceptable for tests and demos.
sg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# sg_port_busy PORT [HOST]: true when something already listens on HOST:PORT (TCP).
sg_port_busy() {
    python3 - "$1" "${2:-127.0.0.1}" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect((sys.argv[2], int(sys.argv[1])))
except OSError:
    sys.exit(1)  # nobody answers: the port is free
sys.exit(0)
PY
}
