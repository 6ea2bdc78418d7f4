#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# compare.sh — libaip beside its transport ceiling and the clients users would pick instead,
# against ONE aip-test-server (--device-info cache) on 127.0.0.1, on this machine, in one run.
#
#   tools/bench/compare.sh [--build DIR] [--rounds R] [--seconds S] [--inflight C] [--pin]
#                          [--extras] [--rate Q] [--out DIR]
#   tools/bench/compare.sh --fleet N [--ramp PER_S] [--seconds S] [--build DIR]
#
# Default: R rounds (5) of these runs, each S seconds (5) with C in flight (64), alternately
# (A B C ... A B C ...), all doing the same work over one connection: register as a
# constellation, then keep C device_info_request frames in flight, each answer checked against
# its own request:
#   raw          aip-bench raw: 200-byte binary frames echoed by /echo (the transport ceiling)
#   rr json t0   aip-bench rr, JSON, --threads 0 (completion callbacks send the next request)
#   rr json t4   aip-bench rr, JSON, --threads 4 (four caller threads share the connection)
#   rr proto t0  / rr proto t4: the same with --encoding proto
#   python       tools/bench/python_baseline.py: asyncio + Debian's websockets + json.dumps
#   node ws      tools/bench/node_ws_rr.js: Node.js + npm ws 8 + JSON.parse/JSON.stringify
#   pydantic     tools/bench/pydantic_rr.py: UFO-shaped pydantic v2 models over websockets
# The caller threads of t4 wait on their futures (aip-bench --wait future). --extras adds
# "rr json t4 callback" (--wait callback: a completion callback wakes the caller thread, once
# per answer) and the older runs "rr json 1 thread" and "rr json @Q/s" (open loop, --rate Q,
# default 5000). A peer that cannot run here is skipped with a line saying why (node ws: no
# node or no ws in .deps/npm, see tools/install-deps.sh; pydantic: no python3 with pydantic 2,
# set PYDANTIC_PYTHON to choose one); any other failure, or any error or mismatched answer in
# a run, stops the script with exit 1.
#
# --pin: every round runs the set twice, unpinned and pinned (client on CPU 0 with taskset -c,
# the server's threads on CPU 1 with taskset -a -p; the device agent, idle here, unpinned), and
# both are reported.
#
# Each round prints (stderr) its load average (/proc/loadavg, at its start) and the CPU that
# other work took during it, in cores: the machine's busy time from /proc/stat (user, nice,
# system, irq, softirq: the kernel charges loopback softirq work done in a process's context to
# that process, so it is on both sides) minus the time of the processes measured (the server's
# and the agent's utime+stime from /proc/PID/stat, and this script's own plus its reaped
# children's, i.e. every client run, from /proc/$$/stat). The two clocks differ (ticks against
# precise task time), so a quiet round reads about 0, give or take 0.1; steal is shown apart.
# Then (stdout) per mode: a table of medians (req/s, p50/p99, client CPU µs/req = the client
# process's whole user+system CPU over its requests, client RSS, server CPU µs/req), the
# ratios computed within each round (median over rounds), and the rounds' load and other CPU.
# Raw JSON lines are kept in --out DIR (default $OUT or /tmp/aip-compare-<pid>):
# results.jsonl (one line per run) and rounds.jsonl (one line per round and mode).
#
# --fleet N: one aip-test-server, aip-bench fleet with N devices ramped at PER_S per second
# (default 250), heartbeats every 5 s, steady state S seconds (default 30); prints its line.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$here/build
rounds=5 seconds=5 inflight=64 rate=5000 fleet=0 ramp=250 seconds_set=0 pin=0 extras=0
OUT=${OUT:-/tmp/aip-compare-$$}
while [[ $# -gt 0 ]]; do
    case $1 in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; seconds_set=1; shift 2 ;;
    --inflight) inflight=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --extras) extras=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --fleet) fleet=$2; shift 2 ;;
    --ramp) ramp=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | grep -v SPDX-License-Identifier | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds must be a positive integer" >&2; exit 2; }
[[ $inflight =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --inflight must be a positive integer" >&2; exit 2; }
[[ $seconds =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "compare.sh: --seconds must be a number" >&2; exit 2; }
py=/usr/bin/python3
bench=$build/tools/aip-bench
server_bin=$build/tools/aip-test-server
agent_bin=$build/main/constellation-agent
for f in "$bench" "$server_bin" "$agent_bin"; do
    [[ -x $f ]] || { echo "compare.sh: $f missing: build first (cmake -S . -B build && cmake --build build -j2)" >&2; exit 1; }
done
if [[ $pin == 1 ]]; then
    command -v taskset >/dev/null || { echo "compare.sh: --pin needs taskset (util-linux)" >&2; exit 1; }
    [[ $(nproc) -ge 2 ]] || { echo "compare.sh: --pin needs 2 CPUs, this has $(nproc)" >&2; exit 1; }
fi
mkdir -p "$OUT"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# --- the peers that may be missing on this machine ----------------------------------------------
node_skip="" pyd_skip="" pyd_py=""
if ! command -v node >/dev/null; then
    node_skip="no node on PATH (tools/install-deps.sh installs nodejs)"
elif ! (cd "$here" && NODE_PATH="$here/.deps/npm/node_modules" node -e 'require("ws")') >/dev/null 2>&1; then
    node_skip="the npm package ws is not in .deps/npm (run tools/install-deps.sh)"
fi
pyd_ok() { "$1" -c 'import pydantic, sys; sys.exit(0 if pydantic.VERSION.startswith("2.") else 1)' >/dev/null 2>&1; }
cands=()
[[ -n ${PYDANTIC_PYTHON:-} ]] && cands+=("$PYDANTIC_PYTHON")
mapfile -t -O "${#cands[@]}" cands < <(type -ap python3 2>/dev/null || true)
for c in "${cands[@]}"; do
    if pyd_ok "$c"; then pyd_py=$c; break; fi
done
[[ -n $pyd_py ]] || pyd_skip="no python3 with pydantic 2 (tried: ${cands[*]:-none}; set PYDANTIC_PYTHON)"

# --- the server (and the device it is asked about) ----------------------------------------------
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
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }       # utime+stime
self_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' /proc/$$/stat; } # + reaped children
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
agent=$!
pids+=("$agent")
ok=0
for _ in $(seq 100); do
    if "$bench" rr --server "$url/ws" --target "$dev" --requests 1 >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
done
[[ $ok == 1 ]] || { echo "compare.sh: the device never registered" >&2; exit 1; }

# --- one run, one round -----------------------------------------------------------------------
client_pin=()
run() { # name, command...
    local name=$1; shift
    local c0 c1 line
    c0=$(cpu_ticks "$srv")
    if ! line=$("${client_pin[@]}" "$@" 2>>"$OUT/bench.err" | tail -1); then
        echo "compare.sh: $name ($mode) failed: $line (see $OUT/bench.err)" >&2
        exit 1
    fi
    c1=$(cpu_ticks "$srv")
    echo "$line" | "$py" -c 'import json,sys; d=json.loads(sys.stdin.read()); d["name"]=sys.argv[1]; d["round"]=int(sys.argv[2]); d["pin"]=sys.argv[3]; d["server_cpu_s"]=(int(sys.argv[4]))/int(sys.argv[5]); print(json.dumps(d))' \
        "$name" "$r" "$mode" "$((c1 - c0))" "$tck" >>"$OUT/results.jsonl"
    echo "  round $r $mode $name: $line" >&2
}
skip() { # name, reason: once per run of the script
    grep -qxF "$1" "$OUT/skipped.txt" 2>/dev/null && return 0
    echo "$1" >>"$OUT/skipped.txt"
    echo "compare.sh: skipped $1: $2" >&2
    echo "skipped $1: $2" >>"$OUT/skipped-why.txt"
}
stat_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $7 + $8, $9; exit}' /proc/stat; } # busy irq+softirq steal
round() {
    local load busy0 irq0 steal0 busy1 irq1 steal1 m0 m1 t0 t1
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    read -r busy0 irq0 steal0 < <(stat_busy)
    m0=$(($(cpu_ticks "$srv") + $(cpu_ticks "$agent") + $(self_ticks)))
    t0=$EPOCHREALTIME
    run raw "$bench" raw --server "$url/echo" --seconds "$seconds" --inflight "$inflight"
    for enc in json proto; do
        for th in 0 4; do
            run "rr $enc t$th" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" \
                --inflight "$inflight" --threads "$th" --encoding "$enc"
        done
    done
    run python "$py" "$here/tools/bench/python_baseline.py" --server "$url/ws" --target "$dev" \
        --seconds "$seconds" --inflight "$inflight"
    if [[ -z $node_skip ]]; then
        run "node ws" node "$here/tools/bench/node_ws_rr.js" \
            --server "$url/ws" --target "$dev" --seconds "$seconds" --inflight "$inflight"
    else
        skip "node ws" "$node_skip"
    fi
    if [[ -z $pyd_skip ]]; then
        run pydantic "$pyd_py" "$here/tools/bench/pydantic_rr.py" --server "$url/ws" --target "$dev" \
            --seconds "$seconds" --inflight "$inflight"
    else
        skip pydantic "$pyd_skip"
    fi
    if [[ $extras == 1 ]]; then
        run "rr json 1 thread" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" \
            --inflight "$inflight" --threads 1
        run "rr json @${rate}/s" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" --rate "$rate"
        run "rr json t4 callback" "$bench" rr --server "$url/ws" --target "$dev" --seconds "$seconds" \
            --inflight "$inflight" --threads 4 --wait callback
    fi
    t1=$EPOCHREALTIME
    m1=$(($(cpu_ticks "$srv") + $(cpu_ticks "$agent") + $(self_ticks)))
    read -r busy1 irq1 steal1 < <(stat_busy)
    "$py" - "$r" "$mode" "$load" "$t0" "$t1" "$((busy1 - busy0))" "$((m1 - m0))" \
        "$((irq1 - irq0))" "$((steal1 - steal0))" "$tck" "$(nproc)" >>"$OUT/rounds.jsonl" <<'PY'
import json, sys
r, mode, load, t0, t1, busy, meas, irq, steal, tck, ncpu = sys.argv[1:]
wall = float(t1) - float(t0)
c = lambda ticks: int(ticks) / int(tck) / wall  # ticks -> cores
print(json.dumps({"round": int(r), "pin": mode, "loadavg": load, "wall_s": round(wall, 2),
                  "busy_cores": round(c(busy), 3), "measured_cores": round(c(meas), 3),
                  "other_cores": round(c(int(busy) - int(meas)), 3),
                  "irq_cores": round(c(irq), 3), "steal_cores": round(c(steal), 3),
                  "cpus": int(ncpu)}))
PY
    tail -1 "$OUT/rounds.jsonl" | "$py" -c 'import json,sys; d=json.loads(sys.stdin.read()); print("round %d %s: load average %s at its start; %.1f s; other work %.2f cores of %d (all busy %.2f incl. irq+softirq %.2f, measured %.2f; steal %.2f)" % (d["round"], d["pin"], d["loadavg"], d["wall_s"], d["other_cores"], d["cpus"], d["busy_cores"], d["irq_cores"], d["measured_cores"], d["steal_cores"]))' >&2
}
pin_server() { # CPU list
    local out
    out=$(taskset -a -p -c "$1" "$srv" 2>&1) || { echo "compare.sh: taskset on the server: $out" >&2; exit 1; }
}

: >"$OUT/results.jsonl"
: >"$OUT/rounds.jsonl"
rm -f "$OUT/skipped.txt" "$OUT/skipped-why.txt"
echo "compare.sh: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $rounds rounds x ${seconds}s, $inflight in flight; server $url (pid $srv)$([[ $pin == 1 ]] && echo '; unpinned and pinned')" >&2
echo "compare.sh: node $(node --version 2>/dev/null || echo none), pydantic via ${pyd_py:-none}; results in $OUT" >&2
all_cpus="0-$(($(nproc) - 1))"
for r in $(seq "$rounds"); do
    mode=unpinned
    client_pin=()
    [[ $pin == 1 ]] && pin_server "$all_cpus"
    round
    if [[ $pin == 1 ]]; then
        mode=pinned
        client_pin=(taskset -c 0)
        pin_server 1
        round
    fi
done

"$py" - "$OUT/results.jsonl" "$OUT/rounds.jsonl" "$inflight" "$seconds" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds = [json.loads(l) for l in open(sys.argv[2])]
inflight, seconds = sys.argv[3], sys.argv[4]
med = lambda xs: statistics.median(xs) if xs else float("nan")
cpu = lambda r: r["cpu_s"] / r["requests"]
modes = []
for r in rows:
    if r["pin"] not in modes:
        modes.append(r["pin"])
for mode in modes:
    mrows = [r for r in rows if r["pin"] == mode]
    names = []
    for r in mrows:
        if r["name"] not in names:
            names.append(r["name"])
    nr = len({r["round"] for r in mrows})
    where = "client on CPU 0, server on CPU 1" if mode == "pinned" else "not pinned"
    print("### %s (%s): medians of %d rounds x %s s, %s in flight" % (mode, where, nr, seconds, inflight))
    print()
    print("| run | req/s | p50 µs | p99 µs | client CPU µs/req | client RSS KiB | server CPU µs/req |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n in names:
        rs = [r for r in mrows if r["name"] == n]
        print("| %s | %.0f | %.0f | %.0f | %.1f | %.0f | %.1f |" % (
            n, med([r["req_per_s"] for r in rs]), med([r["p50_us"] for r in rs]),
            med([r["p99_us"] for r in rs]), med([1e6 * cpu(r) for r in rs]),
            med([r["max_rss_kb"] for r in rs]),
            med([1e6 * r["server_cpu_s"] / r["requests"] for r in rs])))
    by = {}
    for r in mrows:
        by.setdefault(r["round"], {})[r["name"]] = r
    def ratio(a, b, f):
        xs = [f(rd[a]) / f(rd[b]) for rd in by.values() if a in rd and b in rd and f(rd[b])]
        return ("%.2f" % med(xs)) if xs else "n/a"
    rps = lambda r: r["req_per_s"]
    print()
    print("| ratio (%s; median of per-round ratios) | value |" % mode)
    print("|---|---:|")
    for a, b in (("rr json t4", "node ws"), ("rr json t0", "node ws"), ("rr json t0", "pydantic"),
                 ("rr json t0", "python"), ("rr proto t0", "raw"), ("rr proto t4", "raw"),
                 ("rr json t0", "raw")):
        print("| %s / %s, req/s | %s |" % (a, b, ratio(a, b, rps)))
    for a, b in (("node ws", "rr json t0"), ("pydantic", "rr json t0"), ("python", "rr json t0")):
        print("| %s / %s, client CPU per request | %s |" % (a, b, ratio(a, b, cpu)))
    print()
    print("| round | load average at start | other work, cores | all busy | of which irq+softirq | measured | steal |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for d in (d for d in rounds if d["pin"] == mode):
        print("| %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            d["round"], d["loadavg"], d["other_cores"], d["busy_cores"], d["irq_cores"],
            d["measured_cores"], d["steal_cores"]))
    print()
PY
if [[ -s $OUT/skipped-why.txt ]]; then
    cat "$OUT/skipped-why.txt"
fi
