#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Smoke test of the side-by-side benchmark (tools/test.sh --stage bench): the peer clients
# (tools/bench/node_ws_rr.js, tools/bench/pydantic_rr.py) on their own against one
# aip-test-server, then tools/bench/compare.sh --rounds 1 --seconds 1 (--pin when taskset and
# 2 CPUs are there), checking the shape of everything it writes and that every run had zero
# errors and zero mismatched answers. Functional only: no timing threshold anywhere.
# The Node.js client is required (tools/install-deps.sh installs ws into .deps/npm); the
# pydantic client may be skipped only when compare.sh says no python3 with pydantic 2 exists.
# usage: bench_smoke.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"
src="$2"
bench="$build/tools/aip-bench"
py=/usr/bin/python3
pids=()
pass=0
fail=0
out=$(mktemp -d -t aip-bench-smoke.XXXXXX)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$out"
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

if [[ ! -f "$src/.deps/npm/node_modules/ws/package.json" ]] || ! command -v node >/dev/null; then
    echo "FAIL node or the npm package ws is missing: run tools/install-deps.sh (without --no-npm)"
    echo "0 passed, 1 failed"
    exit 1
fi
# The interpreter for the pydantic client, chosen as compare.sh chooses it.
pyd=""
for c in ${PYDANTIC_PYTHON:-} $(type -ap python3); do
    if "$c" -c 'import pydantic,sys; sys.exit(0 if pydantic.VERSION.startswith("2.") else 1)' \
        >/dev/null 2>&1; then pyd=$c; break; fi
done

# --- the peer clients on their own ---------------------------------------------------------------
"$build/tools/aip-test-server" --port 0 --no-token --device-info cache --log-level warn >"$out/srv" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do grep -q '^listening on' "$out/srv" && break; sleep 0.05; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/srv")
[[ -n "$port" ]] || { echo "FAIL server did not start"; exit 1; }
url="ws://127.0.0.1:$port"
"$build/main/constellation-agent" --server "$url/ws" --client-id smoke-dev --log-level warn \
    >"$out/agent" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do "$bench" rr --server "$url/ws" --target smoke-dev --requests 1 \
    >/dev/null 2>&1 && break; sleep 0.1; done

shape='all(k in d for k in ("requests","ok","errors","mismatched","seconds","req_per_s","p50_us","p99_us","p999_us","max_us","cpu_s","max_rss_kb"))'
# client NAME WANT_RC 'python predicate on d, or "noline"' -- command...
client() {
    local name="$1" want="$2" pred="$3" rc=0 line
    shift 4
    line=$("$@" 2>"$out/err" | tail -1) || rc=$?
    if [[ $rc != "$want" ]]; then
        bad "$name: exit $rc (want $want), line: $line, stderr: $(tail -3 "$out/err")"
    elif [[ $pred == noline ]]; then
        if [[ $line == \{* ]]; then bad "$name: printed a result line: $line"; else ok "$name"; fi
    elif "$py" -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if ($pred) else 1)" "$line" 2>/dev/null; then
        ok "$name"
    else
        bad "$name: line: $line"
    fi
}
node_js="$src/tools/bench/node_ws_rr.js"
client "node ws: 300 requests, 8 in flight" 0 \
    "$shape and d['mode']=='node-ws' and d['ok']==300 and d['requests']==300 and d['errors']==0 and d['mismatched']==0 and d['cpu_s']>0" \
    -- node "$node_js" --server "$url/ws" --target smoke-dev --requests 300 --inflight 8
client "node ws: a target that is not connected fails registration (exit 1)" 1 noline \
    -- node "$node_js" --server "$url/ws" --target no-such-device --requests 5
client "node ws: refused connection exits 1" 1 noline \
    -- node "$node_js" --server "ws://127.0.0.1:1/ws" --target smoke-dev --requests 5
client "node ws: usage error exits 2" 2 noline -- node "$node_js" --server "$url/ws"
if [[ -n $pyd ]]; then
    pyd_py="$src/tools/bench/pydantic_rr.py"
    client "pydantic: 300 requests, 8 in flight ($pyd)" 0 \
        "$shape and d['mode']=='pydantic' and d['pydantic'].startswith('2.') and d['ok']==300 and d['errors']==0 and d['mismatched']==0" \
        -- "$pyd" "$pyd_py" --server "$url/ws" --target smoke-dev --requests 300 --inflight 8
    client "pydantic: a target that is not connected fails registration (exit 1)" 1 noline \
        -- "$pyd" "$pyd_py" --server "$url/ws" --target no-such-device --requests 5
    client "pydantic: usage error exits 2" 2 noline -- "$pyd" "$pyd_py" --server "$url/ws"
else
    echo "skip pydantic client: no python3 with pydantic 2 here (Debian 12 ships pydantic 1)"
fi

# --- compare.sh, every client, briefly -----------------------------------------------------------
if "$src/tools/bench/compare.sh" --no-such-flag >/dev/null 2>&1; then
    bad "compare.sh: unknown flag accepted"
else
    rc=$?
    [[ $rc == 2 ]] && ok "compare.sh: unknown flag exits 2" || bad "compare.sh: unknown flag exit $rc"
fi
pin=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then pin=(--pin); fi
rc=0
"$src/tools/bench/compare.sh" --build "$build" --rounds 1 --seconds 1 --inflight 16 "${pin[@]}" \
    --out "$out/cmp" >"$out/cmp.stdout" 2>"$out/cmp.stderr" || rc=$?
if [[ $rc != 0 ]]; then
    bad "compare.sh --rounds 1 --seconds 1 ${pin[*]}: exit $rc; $(tail -5 "$out/cmp.stderr")"
else
    ok "compare.sh --rounds 1 --seconds 1 ${pin[*]}: exit 0"
    if "$py" - "$out/cmp" "$out/cmp.stdout" "${#pin[@]}" <<'PY'; then ok "compare.sh: results, rounds and tables have their shape; every run 0 errors, 0 mismatched"; else bad "compare.sh: output shape (above)"; fi
import json, os, re, sys
d, stdout, pinned = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3] == "1"
modes = ["unpinned", "pinned"] if pinned else ["unpinned"]
names = ["raw", "rr json t0", "rr json t4", "rr proto t0", "rr proto t4", "python", "node ws",
         "pydantic"]
skipped = open(os.path.join(d, "skipped-why.txt")).read() if os.path.exists(
    os.path.join(d, "skipped-why.txt")) else ""
problems = []
if skipped:
    if [l for l in skipped.splitlines() if not l.startswith("skipped pydantic: no python3 with pydantic 2")]:
        problems.append("compare.sh skipped a client it must run: " + skipped)
    names.remove("pydantic")
rows = [json.loads(l) for l in open(os.path.join(d, "results.jsonl"))]
keys = ("requests", "ok", "errors", "mismatched", "seconds", "req_per_s", "p50_us", "p99_us",
        "cpu_s", "max_rss_kb", "server_cpu_s", "name", "round", "pin")
for r in rows:
    miss = [k for k in keys if k not in r]
    if miss:
        problems.append("%s: missing %s" % (r.get("name"), miss))
    elif not (r["errors"] == 0 and r["mismatched"] == 0 and r["ok"] == r["requests"] > 0
              and r["req_per_s"] > 0 and r["cpu_s"] > 0 and r["server_cpu_s"] >= 0):
        problems.append("%s (%s): %s" % (r["name"], r["pin"], r))
    elif r["name"].startswith("rr proto") and r.get("encoding") != "proto":
        problems.append("%s ran as %s" % (r["name"], r.get("encoding")))
for m in modes:
    got = sorted(r["name"] for r in rows if r["pin"] == m)
    if got != sorted(names):
        problems.append("%s runs: %s, want %s" % (m, got, sorted(names)))
rounds = [json.loads(l) for l in open(os.path.join(d, "rounds.jsonl"))]
if sorted(x["pin"] for x in rounds) != sorted(modes):
    problems.append("rounds.jsonl: %s" % rounds)
for x in rounds:
    if not re.fullmatch(r"[0-9.]+ [0-9.]+ [0-9.]+", x.get("loadavg", "")):
        problems.append("round load average: %r" % x.get("loadavg"))
    for k in ("other_cores", "busy_cores", "measured_cores", "irq_cores", "steal_cores"):
        if not isinstance(x.get(k), (int, float)):
            problems.append("round %s: %r" % (k, x.get(k)))
num = r"[0-9]+(?:\.[0-9]+)?"
sections = re.split(r"^### ", stdout, flags=re.M)[1:]
if [s.split(" ", 1)[0] for s in sections] != modes:
    problems.append("table sections: %s" % [s[:40] for s in sections])
for s in sections:
    for n in names:
        if not re.search(r"^\| %s \| %s \| %s \| %s \| %s \| %s \| %s \|$" % ((re.escape(n),) + (num,) * 6), s, re.M):
            problems.append("no median row for %r in %s" % (n, s.split("\n", 1)[0]))
    tracked = ["rr json t4 / node ws, req/s", "rr json t0 / node ws, req/s",
               "rr proto t0 / raw, req/s", "rr proto t4 / raw, req/s", "rr json t0 / python, req/s",
               "node ws / rr json t0, client CPU per request"]
    if "pydantic" in names:
        tracked.append("rr json t0 / pydantic, req/s")
    for t in tracked:
        if not re.search(r"^\| %s \| %s \|$" % (re.escape(t), num), s, re.M):
            problems.append("no value for ratio %r" % t)
    if not re.search(r"^\| 1 \| [0-9.]+ [0-9.]+ [0-9.]+ \| -?%s \|" % num, s, re.M):
        problems.append("no round row with load average and other work")
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
    if grep -q '^round 1 unpinned: load average [0-9.]* [0-9.]* [0-9.]* at its start; .* other work -\{0,1\}[0-9.]* cores' "$out/cmp.stderr"; then
        ok "compare.sh: each round prints its load average and other work's CPU"
    else
        bad "compare.sh: no per-round load line on stderr"
    fi
fi
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
