# shellcheck shell=bash disable=SC2034
# Helpers shared by livebucket's scripts. Source it; it defines functions and
# a few variables and runs nothing else.
#
#   LIVEBUCKET_ROOT   the repository root
#   LIVEBUCKET_CACHE  where tools built for livebucket live (~/.cache/livebucket)
#   GARAGE_VERSION    the Garage release the tests and the demo run
#   GARAGE_BIN        that Garage binary; honoured when already set
#   OSS2_PYTHON       a python with Alibaba's oss2 SDK (a venv in the cache)
#   CONSOLE_TEST_NODE puppeteer-core and hls.js for the browser tests (npm ci in the cache)

LIVEBUCKET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIVEBUCKET_CACHE=${LIVEBUCKET_CACHE:-$HOME/.cache/livebucket}
GARAGE_VERSION=2.5.0
GARAGE_BIN=${GARAGE_BIN:-$LIVEBUCKET_CACHE/garage-$GARAGE_VERSION/bin/garage}
# Alibaba's Python SDK, the OSS client the channel API tests drive.
OSS2_VERSION=2.19.1
OSS2_PYTHON=${OSS2_PYTHON:-$LIVEBUCKET_CACHE/oss2-$OSS2_VERSION/bin/python}
# puppeteer-core, pinned by tests/console/package-lock.json, which drives
# Chromium in the console test (tests/e2e/console.rs).
CONSOLE_TEST_NODE=$LIVEBUCKET_CACHE/console-test-node

# Message on stderr, prefixed with the script's name.
say() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
}

die() {
    say "error: $*"
    exit 1
}

# A TCP port nothing listens on at 127.0.0.1 right now, drawn at random
# below Linux's ephemeral range (32768-60999), so outgoing connections do not
# take it before it is bound.
free_port() {
    local port
    for port in $(shuf -i 20000-32767 -n 100); do
        if ! port_open "$port"; then
            echo "$port"
            return 0
        fi
    done
    say "no free port found"
    return 1
}

# N random bytes as lowercase hex.
random_hex() {
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# wait_for TIMEOUT_SECONDS WHAT COMMAND...: run COMMAND every 0.2 s until it
# succeeds; fail naming WHAT after TIMEOUT_SECONDS.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            say "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# http_get URL: print the body of http://HOST:PORT/PATH if the answer is
# 200, else fail (bash only: no curl on a bare Debian).
http_get() (
    [[ $1 =~ ^http://([^/:]+):([0-9]+)(/.*)?$ ]] || exit 2
    host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]} path=${BASH_REMATCH[3]:-/}
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$path" "$host" "$port" >&3
    read -r -t 5 _ status _ <&3 || exit 1
    [[ $status == 200 ]] || exit 1
    # Skip the headers, then copy the body.
    while IFS= read -r -t 5 line <&3 && [[ $line != $'\r' && -n $line ]]; do :; done
    cat <&3
)

# True when GET http://127.0.0.1:PORT/PATH answers 200.
http_ok() {
    http_get "http://127.0.0.1:$1$2" >/dev/null
}
