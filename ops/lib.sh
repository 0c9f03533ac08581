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
