#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Integration: aipctl and aip-bench as an operator runs them, against the scripted peer on
# 127.0.0.1. Checks exit codes, output, and that failures come fast (not at the timeout).
# usage: tools_cli.sh BUILD_TOOLS_DIR SOURCE_DIR
set -euo pipefail
tools="$1"
src="$2"
peer_pid=""
pass=0
fail=0

start_peer() {
    local out
    out=$(mktemp)
    /usr/bin/python3 "$src/tests/integration/peers/aip_peer.py" --port 0 "$@" >"$out" 2>/dev/null &
    peer_pid=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$out" && break
        sleep 0.05
    done
    port=$(sed -n 's/^listening on 127.0.0.1://p' "$out")
    rm -f "$out"
    [[ -n "$port" ]] || { echo "peer did not start"; exit 1; }
    url="ws://127.0.0.1:$port/ws"
}

stop_peer() {
    [[ -n "$peer_pid" ]] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null || true
    peer_pid=""
}
trap stop_peer EXIT

# expect NAME WANT_RC MAX_SECONDS STDERR_SUBSTRING -- command...
expect() {
    local name="$1" want="$2" max="$3" sub="$4"
    shift 5
    local t0 t1 rc=0 err
    err=$(mktemp)
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$err" || rc=$?
    t1=$(date +%s.%N)
    local dt
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    if [[ "$rc" == "$want" ]] && awk -v d="$dt" -v m="$max" 'BEGIN { exit !(d < m) }' &&
        { [[ -z "$sub" ]] || grep -qF -- "$sub" "$err"; }; then
        echo "ok   $name (exit $rc, ${dt}s)"
        pass=$((pass + 1))
    else
        echo "FAIL $name: exit $rc (want $want), ${dt}s (max $max), stderr: $(cat "$err")"
        fail=$((fail + 1))
    fi
    rm -f "$err"
}

ctl="$tools/aipctl"
bench="$tools/aip-bench"

expect "aipctl usage error" 2 5 "aipctl: bogus: not a command" -- "$ctl" bogus
expect "aipctl --help" 0 5 "" -- "$ctl" --help
expect "aip-bench usage error" 2 5 "aip-bench rr: --server: x is not a ws:// or wss:// URL" -- "$bench" rr --server x

start_peer
expect "aipctl info" 0 5 "" -- "$ctl" --server "$url" info dev-1
expect "aipctl task" 0 5 "" -- "$ctl" --server "$url" task dev-1 hello
out=$("$ctl" --server "$url" info dev-1)
grep -q '"device_id": "dev-1"' <<<"$out" && { echo "ok   aipctl info prints system info"; pass=$((pass + 1)); } ||
    { echo "FAIL aipctl info output: $out"; fail=$((fail + 1)); }
stop_peer

start_peer --info-mode error-correlated --task-mode fail
expect "aipctl info, correlated error: fast" 1 3 "not connected" -- "$ctl" --timeout 30 --server "$url" info dev-1
expect "aipctl task, failed task: exit 1" 1 3 "" -- "$ctl" --timeout 30 --server "$url" task dev-1 x
stop_peer

start_peer --info-mode drop
expect "aipctl info, dropped link: fast" 1 3 "connection lost" -- "$ctl" --timeout 30 --server "$url" info dev-1
stop_peer

start_peer --info-mode never
expect "aipctl info, silent peer: at its timeout" 1 4 "timed out" -- "$ctl" --timeout 1 --server "$url" info dev-1
stop_peer

start_peer --refuse-registration -1
expect "aipctl, refused registration: fast" 1 3 "registration refused" -- "$ctl" --timeout 30 --server "$url" info dev-1
stop_peer

expect "aipctl, nothing listening: fast" 1 3 "cannot connect" -- "$ctl" --timeout 30 --server ws://127.0.0.1:1/ws info dev-1

# aip-bench rr: many threads, answers out of order; zero errors and mismatches
start_peer --reorder 8 --info-jitter-ms 2
line=$("$bench" rr --server "$url" --target dev-1 --requests 2000 --threads 16 --inflight 64 2>/dev/null | tail -1)
echo "     $line"
if /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["requests"]==2000 and r["ok"]==2000 and r["errors"]==0 and r["mismatched"]==0 and r["p99_us"]>0))' "$line"; then
    echo "ok   aip-bench rr out of order"
    pass=$((pass + 1))
else
    echo "FAIL aip-bench rr: $line"
    fail=$((fail + 1))
fi
stop_peer

echo "tools cli: $pass passed, $fail failed"
[[ "$fail" == 0 ]]
