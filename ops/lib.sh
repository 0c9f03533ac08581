# Shared by ops/run, ops/test and ops/bench: install what is missing, find free ports.
# shellcheck shell=bash

ops_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# Installs Debian packages that are not installed yet (nothing when all are present).
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building and testing Clapper needs on Debian 12.
ensure_build_deps() {
    ensure_packages libhiredis-dev libcurl4-openssl-dev redis-server pkg-config python3
    # The status-page test drives a real headless browser.
    ensure_packages chromium
    # The webhook-signature test checks fal-sim's signatures with Python's `cryptography`.
    if ! python3 -c 'import cryptography' 2>/dev/null; then
        ensure_packages python3-cryptography
    fi
    if ! command -v swift >/dev/null 2>&1; then
        if [ -x /opt/swift/usr/bin/swift ]; then
            export PATH="/opt/swift/usr/bin:$PATH"
        else
            echo "error: no Swift toolchain (swift 6.3) on PATH" >&2
            exit 1
        fi
    fi
}

# fal's official Python client, for the test that drives fal-sim with it: a venv in .build/python
# (pinned version; made once, reused while it imports).
ensure_python_tools() {
    local venv=.build/python
    if [ -x "$venv/bin/python3" ] && "$venv/bin/python3" -c 'import fal_client, opentelemetry.proto, moto, boto3, standardwebhooks' 2>/dev/null; then return 0; fi
    ensure_packages python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
    # fal's own client (fal-sim's check); opentelemetry-proto for the tracing test's OTLP receiver;
    # moto's S3 server (with boto3) for the media custody tests and ops/run --bucket.
    # standardwebhooks verifies outbound events in their test.
    "$venv/bin/pip" install -q --disable-pip-version-check fal-client==1.0.3 opentelemetry-proto==1.45.2 'moto[server]==5.2.5' standardwebhooks==1.1.0
}

# A TCP port nothing listens on, chosen by the kernel.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something accepts connections on 127.0.0.1:$1 (at most $2 seconds).
wait_for_port() {
    local port=$1 limit=${2:-30} i=0
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -gt $((limit * 10)) ] && return 1
        sleep 0.1
    done
}

# Runs a swift command, hiding two harmless upstream warnings (hiredis's pkg-config flag,
# an unhandled file in swift-distributed-tracing); returns the command's own status.
swift_quiet() {
    local status
    set +e
    swift "$@" 2>&1 | { grep -vE 'prohibited flag|unhandled; explicitly declare|found 1 file\(s\) which are unhandled' || true; }
    status=${PIPESTATUS[0]}
    set -e
    return "$status"
}

# Starts a local Redis Cluster (3 masters, a replica each) on 127.0.0.1 ports $1 to $1+5 (cluster
# bus on port+10000), each node's data and nodes.conf in $2/<port> (append-only file on), forms it
# with redis-cli --cluster create unless it already is (restarted from its nodes.conf), and waits
# (at most $3 seconds, 30 by default) until every node reports cluster_state:ok. Appends the
# servers' pids to the caller's pids array and sets redis_cluster_url to the redis+cluster:// URL
# of the three lowest ports. Not in a subshell: pids would not reach the caller.
start_redis_cluster() {
    local base=$1 dir=$2 limit=${3:-30} port i out addrs=()
    if [ "$base" -gt 55530 ]; then
        echo "cluster base port $base too high: the cluster bus uses port+10000" >&2
        return 1
    fi
    command -v redis-cli >/dev/null 2>&1 || { echo "redis-cli not found (apt-get install redis-tools)" >&2; return 1; }
    for port in $(seq "$base" $((base + 5))); do
        mkdir -p "$dir/$port"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" \
            --appendonly yes --daemonize no --loglevel warning \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 &
        pids+=($!)
        addrs+=("127.0.0.1:$port")
    done
    for port in $(seq "$base" $((base + 5))); do
        wait_for_port "$port" 10 || { echo "redis-server did not start on $port" >&2; return 1; }
    done
    # Whole replies matched (not piped to grep -q: under pipefail an early exit could fail the pipe).
    out="$(redis-cli -p "$base" cluster info 2>/dev/null || true)"
    if [[ "$out" == *cluster_slots_assigned:16384* ]]; then
        echo "==> redis cluster already formed (nodes.conf in $dir/<port>)"
    else
        echo "==> forming redis cluster on ${addrs[*]}"
        out="$(redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes </dev/null 2>&1)" || {
            echo "$out" >&2
            echo "redis-cli --cluster create failed (remove $dir to start over)" >&2
            return 1
        }
    fi
    for port in $(seq "$base" $((base + 5))); do
        i=0
        until [[ "$(redis-cli -p "$port" cluster info 2>/dev/null || true)" == *cluster_state:ok* ]]; do
            i=$((i + 1))
            [ "$i" -gt $((limit * 10)) ] && { echo "redis cluster node $port not ok after ${limit}s" >&2; return 1; }
            sleep 0.1
        done
    done
    redis_cluster_url="redis+cluster://127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
}
