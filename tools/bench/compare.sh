#!/usr/bin/env bash
# compare.sh — libaip side by side with its transport ceiling and the Python client pattern,
# against ONE aip-test-server (--device-info cache) on 127.0.0.1, on this machine, in one run.
#
#   tools/bench/compare.sh [--build DIR] [--rounds R] [--seconds S] [--inflight C] [--threads T]
#                          [--rate Q]
#   tools/bench/compare.sh --fleet N [--ramp PER_S] [--seconds S] [--build DIR]
#
# Default: R rounds (3) of raw, rr json, rr proto, python, rr json --rate Q (5000), each S
# seconds (5) with C in flight (64) and T caller threads (0: completion callbacks send the next
# request on the service thread, like Python's one event loop; "rr json 1 thread" runs too),
# alternately (A B C D E A B C D E ...), then a table of medians: req/s, p50/p99, client CPU
# and RSS, the server's CPU during the run, and ratios computed within each round (then the
# median): C json / Python, C proto / raw, C json / raw, and Python's client CPU per request
# over C json's. A constellation-agent is the device whose info is requested. Raw JSON
# lines are kept in $OUT (default /tmp/aip-compare-<pid>).
#
# --fleet N: one aip-test-server, aip-bench fleet with N devices ramped at PER_S per second
# (default 250), heartbeats every 5 s, steady state S seconds (default 30); prints its line.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$here/build
rounds=3 seconds=5 inflight=64 threads=0 rate=5000 fleet=0 ramp=250 seconds_set=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; seconds_set=1; shift 2 ;;
    --inflight) inflight=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --fleet) fleet=$2; shift 2 ;;
    --ramp) ramp=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
py=/usr/bin/python3
bench=$build/tools/aip-bench
server_bin=$build/tools/aip-test-server
agent_bin=$build/main/constellation-agent
for f in "$bench" "$server_bin" "$agent_bin"; do
    [[ -x $f ]] || { echo "compare.sh: $f missing: build first (cmake -S . -B build && cmake --build build -j2)" >&2; exit 1; }
done
OUT=${OUT:-/tmp/aip-compare-$$}
mkdir -p "$OUT"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$server_bin" --port 0 --no-token --device-info cache --log-level warn >"$OUT/server.out" 2>"$OUT/server.err" &
srv=$!
pids+=("$srv")
for _ in $(seq 100); do
    grep -q '^listening on' "$OUT/server.out" 2>/dev/null && break
    sleep 0.05
done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$OUT/server.out")
[[ -n $port ]] || { echo "compare.sh: the server did not start" >&2; cat "$OUT/server.err" >&2; exit 1; }
url=ws://127.0.0.1:$port
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

if [[ $fleet -gt 0 ]]; then
    [[ $seconds_set == 1 ]] || seconds=30
    echo "compare.sh: aip-test-server pid $srv on $url; fleet of $fleet (hard RLIMIT_NOFILE $(ulimit -Hn))" >&2
    "$bench" fleet --server "$url/ws" --devices "$fleet" --ramp "$ramp" --seconds "$seconds" \
        --server-pid "$srv" | tee "$OUT/fleet.json"
    exit "${PIPESTATUS[0]}"
fi

dev=compare-dev-$$
"$agent_bin" --server "$url/ws" --client-id "$dev" --log-level warn >"$OUT/agent.log" 2>&1 &
pids+=("$!")
ok=0
for _ in $(seq 100); do
    if "$bench" rr --server "$url/ws" --target "$dev" --requests 1 >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
done
[[ $ok == 1 ]] || { echo "compare.sh: the device never registered" >&2; exit 1; }

run() { # name, command...
    local name=$1; shift
    local c0 c1 line
    c0=$(cpu_ticks "$srv")
    if ! line=$("$@" 2>>"$OUT/bench.err" | tail -1); then
        echo "compare.sh: $name failed: $line (see $OUT/bench.err)" >&2
        exit 1
    fi
    c1=$(cpu_ticks "$srv")
    echo "$line" | "$py" -c 'import json,sys; d=json.loads(sys.stdin.read()); d["name"]=sys.argv[1]; d["round"]=int(sys.argv[2]); d["server_cpu_s"]=(int(sys.argv[3]))/int(sys.argv[4]); print(json.dumps(d))' \
        "$name" "$r" "$((c1 - c0))" "$tck" >>"$OUT/results.jsonl"
    echo "  round $r $name: $line" >&2
}
: >"$OUT/results.jsonl"
echo "compare.sh: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $rounds rounds x ${seconds}s, $inflight in flight; server $url (pid $srv)" >&2
for r in $(seq "$rounds"); do
    run raw "$bench" raw --server "$url/echo" --seconds "$seconds" --inflight "$inflight"
    run "rr json" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" --inflight "$inflight" --threads "$threads"
    run "rr json 1 thread" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" --inflight "$inflight" --threads 1
    run "rr proto" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" --inflight "$inflight" --threads "$threads" --encoding proto
    run python "$py" "$here/tools/bench/python_baseline.py" --server "$url/ws" --target "$dev" --seconds "$seconds" --inflight "$inflight"
    run "rr json @${rate}/s" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" --rate "$rate"
done

"$py" - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = []
for r in rows:
    if r["name"] not in names:
        names.append(r["name"])
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("| run | req/s | p50 µs | p99 µs | client CPU µs/req | client RSS KiB | server CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|---:|")
for n in names:
    rs = [r for r in rows if r["name"] == n]
    print("| %s | %.0f | %.0f | %.0f | %.1f | %.0f | %.1f |" % (
        n, med([r["req_per_s"] for r in rs]), med([r["p50_us"] for r in rs]),
        med([r["p99_us"] for r in rs]), med([1e6 * r["cpu_s"] / r["requests"] for r in rs]),
        med([r["max_rss_kb"] for r in rs]),
        med([1e6 * r["server_cpu_s"] / r["requests"] for r in rs])))
by = {}
for r in rows:
    by.setdefault(r["round"], {})[r["name"]] = r
def ratio(a, b, key="req_per_s", inv=False):
    xs = []
    for rd in by.values():
        if a in rd and b in rd and rd[b][key] and rd[a][key]:
            xs.append(rd[b][key] / rd[a][key] if inv else rd[a][key] / rd[b][key])
    return med(xs)
cpu = lambda r: r["cpu_s"] / r["requests"]
def cpu_ratio():
    xs = [cpu(rd["python"]) / cpu(rd["rr json"]) for rd in by.values()
          if "python" in rd and "rr json" in rd]
    return med(xs)
print()
print("| ratio (median of per-round ratios) | value |")
print("|---|---:|")
print("| rr json / python, req/s | %.2f |" % ratio("rr json", "python"))
print("| rr proto / raw, req/s | %.2f |" % ratio("rr proto", "raw"))
print("| rr json / raw, req/s | %.2f |" % ratio("rr json", "raw"))
print("| python / rr json, client CPU per request | %.2f |" % cpu_ratio())
PY
