#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Integration: aip-bench raw, rr --rate and fleet, and tools/bench/python_baseline.py, each at a
# tiny size against one aip-test-server on 127.0.0.1. Functional only: the output line's shape,
# zero errors, exit codes. No timing threshold (performance is measured by tools/bench, not here).
# usage: bench_modes.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"
src="$2"
bench="$build/tools/aip-bench"
pids=()
pass=0
fail=0
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
out=$(mktemp -d)
"$build/tools/aip-test-server" --port 0 --no-token --device-info cache --log-level warn >"$out/srv" 2>&1 &
srv=$!
pids+=("$srv")
for _ in $(seq 100); do grep -q '^listening on' "$out/srv" && break; sleep 0.05; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/srv")
[[ -n "$port" ]] || { echo "server did not start"; exit 1; }
url="ws://127.0.0.1:$port"
"$build/main/constellation-agent" --server "$url/ws" --client-id bench-dev --log-level warn \
    >"$out/agent" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do "$bench" rr --server "$url/ws" --target bench-dev --requests 1 \
    >/dev/null 2>&1 && break; sleep 0.1; done

# check NAME 'python predicate on d' -- command...
check() {
    local name="$1" pred="$2" rc=0 line
    shift 3
    line=$("$@" 2>"$out/err" | tail -1) || rc=$?
    if [[ $rc == 0 ]] && /usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if ($pred) else 1)" "$line" 2>/dev/null; then
        echo "ok   $name"
        pass=$((pass + 1))
    else
        echo "FAIL $name: exit $rc, line: $line, stderr: $(tail -3 "$out/err")"
        fail=$((fail + 1))
    fi
}
rr_shape='all(k in d for k in ("requests","ok","errors","mismatched","seconds","req_per_s","p50_us","p99_us","p999_us","max_us","cpu_s","max_rss_kb"))'
check "raw: 500 echoes, 8 in flight" \
    "$rr_shape and d['mode']=='raw' and d['ok']==500 and d['errors']==0 and d['mismatched']==0" \
    -- "$bench" raw --server "$url/echo" --requests 500 --inflight 8
check "rr --rate: 100 requests open loop" \
    "$rr_shape and d['mode']=='rr' and d['rate']==500 and d['ok']==100 and d['errors']==0" \
    -- "$bench" rr --server "$url/ws" --target bench-dev --requests 100 --rate 500
check "rr --threads 0: callbacks send the next request" \
    "$rr_shape and d['threads']==0 and d['ok']==400 and d['errors']==0 and d['mismatched']==0" \
    -- "$bench" rr --server "$url/ws" --target bench-dev --requests 400 --threads 0 --inflight 16
check "rr --threads 3: caller threads wait on their futures" \
    "$rr_shape and d['threads']==3 and d['ok']==600 and d['errors']==0 and d['mismatched']==0" \
    -- "$bench" rr --server "$url/ws" --target bench-dev --requests 600 --threads 3 --inflight 12
check "rr --wait callback: a callback wakes each caller thread" \
    "$rr_shape and d['threads']==3 and d['ok']==600 and d['errors']==0 and d['mismatched']==0" \
    -- "$bench" rr --server "$url/ws" --target bench-dev --requests 600 --threads 3 --inflight 12 --wait callback
check "rr proto: 300 requests" \
    "$rr_shape and d['encoding']=='proto' and d['ok']==300 and d['mismatched']==0" \
    -- "$bench" rr --server "$url/ws" --target bench-dev --requests 300 --encoding proto
check "python baseline: 300 requests" \
    "$rr_shape and d['mode']=='python' and d['ok']==300 and d['errors']==0" \
    -- /usr/bin/python3 "$src/tools/bench/python_baseline.py" --server "$url/ws" --target bench-dev --requests 300 --inflight 8
check "fleet: 20 devices, tasks, /proc figures" \
    "d['mode']=='fleet' and d['registered']==20 and d['connect_errors']==0 and d['closed_early']==0 and d['tasks']>0 and d['task_ok']==d['tasks'] and d['server_rss_kb']>0 and d['server_cpu_pct']>=0" \
    -- "$bench" fleet --server "$url/ws" --devices 20 --ramp 0 --seconds 1.5 --heartbeat 0.5 --task-rate 10 --server-pid "$srv"
check "fleet proto: 10 devices" \
    "d['encoding']=='proto' and d['registered']==10 and d['task_ok']==d['tasks'] and d['heartbeat_acks']>0" \
    -- "$bench" fleet --server "$url/ws" --devices 10 --ramp 100 --seconds 1.5 --heartbeat 0.5 --task-rate 10 --encoding proto
# usage errors
if "$bench" rr --server "$url/ws" --target bench-dev --requests 5 --wait poll >/dev/null 2>&1; then
    echo "FAIL rr: --wait poll accepted"; fail=$((fail + 1))
else
    echo "ok   rr: --wait takes future or callback"; pass=$((pass + 1))
fi
if "$bench" raw --server "$url/echo" --requests 5 --seconds 1 >/dev/null 2>&1; then
    echo "FAIL raw: --requests with --seconds accepted"; fail=$((fail + 1))
else rc=$?; [[ $rc == 2 ]] && { echo "ok   usage error exits 2"; pass=$((pass + 1)); } || { echo "FAIL usage error exit $rc"; fail=$((fail + 1)); }; fi
if "$bench" --help | grep -q "aip-bench fleet"; then echo "ok   --help names fleet"; pass=$((pass + 1)); else echo "FAIL --help"; fail=$((fail + 1)); fi
rm -rf "$out"
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
