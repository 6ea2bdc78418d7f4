#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Integration: errors that name their cause, in the five programs as built (127.0.0.1 only).
#  - a usage error is ONE line on stderr naming the argument and the problem, then
#    "Try 'PROG --help' for more information.", nothing on stdout, exit 2;
#  - --help prints the whole usage on stdout, exit 0;
#  - aip-test-server that cannot listen (port in use, --host not an address) exits 1 with the
#    address and the reason, and never prints "listening";
#  - a missing or non-PEM TLS file is named as such (aip-test-server, aipctl, the agent), and
#    the agent's configuration file errors keep their exit 78.
# usage: usage_errors.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
pass=0
fail=0
tmp=$(mktemp -d)
holder=""
cleanup() {
    [[ -n "$holder" ]] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

agent="$build/main/constellation-agent"
ctl="$build/tools/aipctl"
srv="$build/tools/aip-test-server"
bench="$build/tools/aip-bench"
codec="$build/tools/aip-codec"

ok() {
    echo "ok   $1"
    pass=$((pass + 1))
}
bad() {
    echo "FAIL $1"
    fail=$((fail + 1))
}

# run CMD...: sets rc, out, err (10 s at most: a program that starts instead of refusing fails)
run() {
    rc=0
    timeout 10 "$@" </dev/null >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

# usage_error NAME HELP_PROG EXPECTED_FIRST_LINE -- CMD...: the exact one-line error and the hint
usage_error() {
    local name="$1" prog="$2" want="$3"
    shift 4
    run "$@"
    local first second lines
    lines=$(wc -l <"$tmp/err")
    first=$(sed -n 1p "$tmp/err")
    second=$(sed -n 2p "$tmp/err")
    if [[ $rc == 2 && $lines == 2 && "$first" == "$want" &&
        "$second" == "Try '$prog --help' for more information." && -z "$out" ]]; then
        ok "$name: $first"
    else
        bad "$name: exit $rc (want 2), $lines stderr lines (want 2), stderr: $err, stdout: ${out:0:200}"
    fi
}

# the examples of issue 14, then every program's unknown option and missing value
usage_error "agent --heartbeat 0" constellation-agent \
    "constellation-agent: --heartbeat: 0 is out of range 1..3600" -- "$agent" --heartbeat 0
usage_error "aipctl --timeout abc" aipctl \
    'aipctl: --timeout: "abc" is not a number of seconds' -- "$ctl" --timeout abc info dev
usage_error "aip-test-server --port 70000" aip-test-server \
    "aip-test-server: --port: 70000 is out of range 0..65535" -- "$srv" --port 70000
usage_error "aip-bench rr without --target" aip-bench \
    "aip-bench rr: --target is required" -- "$bench" rr --server ws://127.0.0.1:1/ws
usage_error "aipctl --server http://" aipctl \
    "aipctl: --server: http://127.0.0.1:1/ws is not a ws:// or wss:// URL" -- "$ctl" --server http://127.0.0.1:1/ws devices
usage_error "aip-bench --server keeps ?token= hidden" aip-bench \
    "aip-bench rr: --server: http://127.0.0.1:1/?token=<redacted> is not a ws:// or wss:// URL" -- "$bench" rr --server "http://127.0.0.1:1/?token=s3cret" --target x
usage_error "aipctl --server with a fragment" aipctl \
    "aipctl: --server: ws://127.0.0.1:1/ws#<redacted> has a fragment (#): WebSocket URLs take none" -- "$ctl" --server "ws://127.0.0.1:1/ws#x" devices
usage_error "constellation-agent --server with a fragment" constellation-agent \
    "constellation-agent: --server: ws://127.0.0.1:1#<redacted> has a fragment (#): WebSocket URLs take none" -- "$agent" --server "ws://127.0.0.1:1#x/ws"
usage_error "aipctl --server keeps ?token= hidden" aipctl \
    "aipctl: --server: http://127.0.0.1:1/?token=<redacted> is not a ws:// or wss:// URL" -- "$ctl" --server "http://127.0.0.1:1/?token=s3cret" devices
usage_error "aip-codec without --envelope" aip-codec \
    "aip-codec: --envelope is required" -- "$codec" --from json --to proto
for p in "$agent" "$ctl" "$srv" "$codec"; do
    name=$(basename "$p")
    usage_error "$name unknown option" "$name" "$name: --no-such-option: unknown option" -- "$p" --no-such-option
done
usage_error "aip-bench unknown option" aip-bench "aip-bench raw: --no-such-option: unknown option" -- "$bench" raw --no-such-option
usage_error "agent missing value" constellation-agent "constellation-agent: --server: needs a value" -- "$agent" --server
usage_error "aipctl missing value" aipctl "aipctl: --timeout: needs a value" -- "$ctl" info dev --timeout
usage_error "aip-codec missing value" aip-codec "aip-codec: --from: needs a value" -- "$codec" --from
usage_error "aipctl ambiguous prefix" aipctl "aipctl: --t: ambiguous, could be --token, --timeout" -- "$ctl" --t 3 devices
usage_error "aipctl unknown command" aipctl "aipctl: frob: not a command (devices, info DEVICE, task DEVICE REQUEST)" -- "$ctl" frob
usage_error "aipctl task without REQUEST" aipctl "aipctl: task: needs REQUEST after DEVICE" -- "$ctl" task dev
usage_error "aip-bench no mode" aip-bench "aip-bench: no mode: give rr, raw, fleet or codec" -- "$bench"
usage_error "aip-test-server --device-info" aip-test-server \
    'aip-test-server: --device-info: "sometimes" is not one of auto, cache, live' -- "$srv" --device-info sometimes

# --help: the whole usage on stdout, exit 0, nothing on stderr
for p in "$agent" "$ctl" "$srv" "$bench" "$codec"; do
    run "$p" --help
    if [[ $rc == 0 && -z "$err" && "$out" == usage:* && $(wc -l <"$tmp/out") -gt 8 ]]; then
        ok "$(basename "$p") --help: $(wc -l <"$tmp/out") lines on stdout"
    else
        bad "$(basename "$p") --help: exit $rc, stderr: $err"
    fi
done

# aip-test-server cannot listen: exit 1, the address and the reason, never "listening"
cannot_listen() {
    local name="$1" want="$2"
    shift 2
    run "$@"
    # one line of ours; lws's own error lines may come before it (LWS_LINES=1)
    local ours
    ours=$(grep -c '^aip-test-server: ' "$tmp/err" || true)
    if [[ $rc == 1 && "$err" == *"$want"* && "$out" != *listening* && $ours == 1 &&
        ($(wc -l <"$tmp/err") == 1 || "${LWS_LINES:-0}" == 1) ]]; then
        ok "$name: $(grep '^aip-test-server: ' "$tmp/err")"
    else
        bad "$name: exit $rc (want 1), stdout: ${out:0:200}, stderr: $err"
    fi
}
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)' >"$tmp/held" &
holder=$!
for _ in $(seq 100); do [[ -s "$tmp/held" ]] && break; sleep 0.05; done
held=$(cat "$tmp/held")
cannot_listen "port in use" "cannot listen on 127.0.0.1:$held: address in use" \
    "$srv" --no-token --port "$held"
cannot_listen "--host not-an-address" "cannot listen on not-an-address:0: not an IPv4 address" \
    "$srv" --no-token --host not-an-address --port 0

# TLS files named: missing, or not PEM
printf 'not a certificate\n' >"$tmp/junk.pem"
usage_error "aip-test-server missing --tls-cert" aip-test-server \
    "aip-test-server: --tls-cert $tmp/nope.pem: No such file or directory" -- "$srv" --no-token --tls-cert "$tmp/nope.pem" --tls-key "$tmp/nope.pem"
usage_error "aip-test-server non-PEM --tls-key" aip-test-server \
    "aip-test-server: --tls-key $tmp/junk.pem: not a PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" line)" -- "$srv" --no-token --tls-key "$tmp/junk.pem"
usage_error "aip-test-server --tls-ca a directory" aip-test-server \
    "aip-test-server: --tls-ca $tmp: is a directory" -- "$srv" --no-token --tls-ca "$tmp"
usage_error "aipctl missing --ca-file" aipctl \
    "aipctl: --ca-file $tmp/nope.pem: No such file or directory" -- "$ctl" --server wss://127.0.0.1:1/ws --ca-file "$tmp/nope.pem" info dev
usage_error "agent non-PEM --cert" constellation-agent \
    "constellation-agent: --cert $tmp/junk.pem: not a PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line)" -- "$agent" --server wss://127.0.0.1:1/ws --cert "$tmp/junk.pem" --key "$tmp/junk.pem"
# PEM files whose contents lws refuses (a key that is not the certificate's): exit 1, named
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/k1.pem" -out "$tmp/c1.pem" \
        -subj /CN=127.0.0.1 -days 1 2>/dev/null
    openssl genrsa -out "$tmp/k2.pem" 2048 2>/dev/null
    # libwebsockets 4.1.6 leaks one 72-byte allocation of its own when it refuses the pair in
    # lws_create_context() (LeakSanitizer's stack ends inside libwebsockets.so.17); the
    # server exits at once. Suppressed for this one run, for leaks inside lws only.
    printf 'leak:libwebsockets.so\n' >"$tmp/lsan.supp"
    LSAN_OPTIONS="suppressions=$tmp/lsan.supp:print_suppressions=0" \
    LWS_LINES=1 cannot_listen "TLS key not the certificate's" \
        "cannot serve TLS with --tls-cert $tmp/c1.pem and --tls-key $tmp/k2.pem: libwebsockets refused them" \
        "$srv" --no-token --port 0 --log-level error --tls-cert "$tmp/c1.pem" --tls-key "$tmp/k2.pem"
else
    echo "skip TLS key mismatch (no openssl)"
fi
# the same file named in the agent's configuration: a configuration error, 78
printf '{"server": "wss://127.0.0.1:1/ws", "ca_file": "%s"}\n' "$tmp/nope.pem" >"$tmp/agent.json"
run "$agent" --config "$tmp/agent.json" --check-config
if [[ $rc == 78 && "$err" == *"ca_file $tmp/nope.pem: No such file or directory"* ]]; then
    ok "agent config ca_file missing: exit 78, named"
else
    bad "agent config ca_file: exit $rc (want 78), stderr: $err"
fi

echo "usage errors: $pass passed, $fail failed"
[[ "$fail" == 0 ]]
