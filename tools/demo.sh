#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo: aip-test-server and a constellation-agent on 127.0.0.1, then a tour with aipctl.
#
# usage: tools/demo.sh [--once | --stay] [--build-dir DIR]
#
# Installs what it needs (tools/install-deps.sh), builds, starts the test server and one device
# agent, and runs the tour: list the devices, the device's system info, a task running a batch
# of tools, a batch that fails half-way (the rest is skipped), a link broken on purpose through
# the admin API (the agent comes back) and the server's metrics. Every command it shows (the
# lines starting with "$ ") can be pasted into another shell as it is: it names the server's
# real port and key. On a terminal it then keeps both running and prints more commands to try
# until Ctrl-C; with --once, or when stdin is not a terminal, it exits after the tour: 0 only if
# every step worked.
#   --once            exit after the tour
#   --stay            keep both running after the tour even without a terminal (until SIGINT
#                     or SIGTERM); tests/integration/demo_test.sh pastes what it printed
#   --build-dir DIR   use the programs already built in DIR (no install, no build)
# The server's and the agent's logs are kept when it stops (it says where, and how to remove
# them); after a successful --once run nothing is left behind.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
once=0
stay=0
build_dir=""
demo_usage() {
    echo "tools/demo.sh: $1" >&2
    echo "Try 'tools/demo.sh --help' for more information." >&2
    exit 2
}
while (($#)); do
    case "$1" in
    --once) once=1 ;;
    --stay) stay=1 ;;
    --build-dir)
        (($# >= 2)) || demo_usage "--build-dir: needs a value"
        build_dir="$(cd "$2" 2>/dev/null && pwd)" || demo_usage "--build-dir $2: no such directory"
        shift
        ;;
    -h | --help)
        # the comment block at the top, whole
        awk 'NR > 1 && /SPDX-License-Identifier/ { next } NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
        exit 0
        ;;
    *) demo_usage "$1: unknown option" ;;
    esac
    shift
done
((once && stay)) && demo_usage "--once and --stay: give one"
[[ -t 0 ]] || ((stay)) || once=1

bold() { if [[ -t 1 ]]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }

if [[ -n "$build_dir" ]]; then
    bin="$build_dir/tools"
    agent_bin="$build_dir/main/constellation-agent"
    for b in "$bin/aip-test-server" "$bin/aipctl" "$agent_bin"; do
        [[ -x "$b" ]] || demo_usage "--build-dir $build_dir: no $b (build it first)"
    done
else
    bold "==> dependencies"
    tools/install-deps.sh >/dev/null
    bold "==> build"
    mkdir -p build-logs
    if ! { cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >build-logs/demo-configure.log &&
        cmake --build build -j"$(nproc)" --target aip-test-server constellation-agent aipctl \
            >build-logs/demo-build.log; }; then
        echo "build failed: see build-logs/demo-configure.log and build-logs/demo-build.log" >&2
        exit 1
    fi
    bin="$root/build/tools"
    agent_bin="$root/build/main/constellation-agent"
fi

# shq WORD...: the words quoted for a POSIX shell, so that a printed command can be pasted
shq() {
    local out="" w q="'\\''"
    for w in "$@"; do
        if [[ "$w" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+=" $w"
        else
            out+=" '${w//\'/$q}'"
        fi
    done
    printf '%s' "${out# }"
}

work=$(mktemp -d /tmp/aip-demo.XXXXXX)
server_pid=""
agent_pid=""
keep_logs=0 # set once the log paths have been shown: they stay for the reader
cleanup() {
    [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    if ((keep_logs)); then
        echo "logs kept: $work/server.log and $work/agent.log (remove them with: rm -r $work)"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'echo; bold "stopping"; exit 0' INT TERM

bold "==> aip-test-server on 127.0.0.1"
# no key given (and none from the environment): the server makes a random one and prints the
# dashboard URL carrying it; the agent and aipctl get it through AIP_TOKEN
env -u AIP_TOKEN "$bin/aip-test-server" --port 0 >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "^dashboard: " "$work/server.out" 2>/dev/null && break
    sleep 0.05
done
port=$(sed -n 's/^listening on 127.0.0.1://p' "$work/server.out")
dashboard=$(sed -n 's/^dashboard: //p' "$work/server.out")
[[ -n "$port" && "$dashboard" == *"?token="* ]] ||
    { echo "the server did not start:" >&2; cat "$work/server.log" >&2; keep_logs=1; exit 1; }
AIP_TOKEN=${dashboard#*\?token=}
export AIP_TOKEN
url="ws://127.0.0.1:$port/ws"
echo "listening on $url"
echo "dashboard: $dashboard"

bold "==> constellation-agent (device id demo-device)"
mkdir -p "$work/files"
echo "hello from a file the agent may read" >"$work/files/greeting.txt"
cat >"$work/agent.json" <<EOF
{
  "server": "$url",
  "client_id": "demo-device",
  "heartbeat": 5,
  "tags": {"site": "demo", "role": "example"},
  "tools": {
    "read_file": {"roots": ["$work/files"]},
    "execute_command": {"enabled": false}
  }
}
EOF
"$agent_bin" --config "$work/agent.json" 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 100); do
    "$bin/aipctl" --server "$url" devices 2>/dev/null | grep -q '"demo-device"' && break
    sleep 0.1
done

failures=0
# the aipctl command line as it can be pasted: the real URL and the server's key
ctl_cmd() { shq env AIP_TOKEN="$AIP_TOKEN" "$bin/aipctl" --server "$url" "$@"; }
# step TITLE ARGS...: shows and runs one aipctl command; prints its output unless QUIET=1
# (tasks are summarized)
step() {
    local title="$1" cmd
    shift
    cmd=$(ctl_cmd "$@")
    echo
    bold "--- $title"
    echo "\$ $cmd"
    if bash -c "$cmd" >"$work/step.out" 2>&1; then
        [[ "${QUIET:-0}" == 1 ]] || cat "$work/step.out"
    else
        cat "$work/step.out"
        echo "(step failed)"
        failures=$((failures + 1))
    fi
}

# Prints a task's Results one line each: "1. echo: success -> ...".
summarize() {
    /usr/bin/python3 - "$1" "$work/step.out" <<'EOF'
import json, sys
want = sys.argv[1]
try:
    out = json.load(open(sys.argv[2]))
except Exception as e:
    print("  (no task result to summarize: %s)" % e); sys.exit(1)
n = 0
for batch in out.get("result") or []:
    for r in batch.get("result") or []:
        n += 1
        detail = r.get("error") or json.dumps(r.get("result"))[:70]
        print("  %d. %-8s %s" % (n, r["status"], detail))
print("  task: %s" % out["status"])
sys.exit(0 if out["status"] == want else 1)
EOF
}

echo
bold "=== the tour"
step "1. the connected devices (GET /api/clients)" devices
step "2. the device's system info (device_info_request)" info demo-device
QUIET=1 step "3. a task: a batch of three tools run by the agent" task demo-device \
    '{"actions":[{"tool_name":"get_device_info","tool_type":"data_collection"},{"tool_name":"echo","parameters":{"text":"hello from the demo"}},{"tool_name":"read_file","parameters":{"path":"'"$work"'/files/greeting.txt"}}]}'
summarize completed || failures=$((failures + 1))
echo
bold "--- 4. a batch that fails half-way: the rest is skipped, the task fails (exit 1)"
cmd=$(ctl_cmd task demo-device \
    '{"actions":[{"tool_name":"echo","parameters":{"text":"first"}},{"tool_name":"no_such_tool"},{"tool_name":"echo","parameters":{"text":"never runs"}}]}')
echo "\$ $cmd"
if bash -c "$cmd" >"$work/step.out" 2>&1; then
    echo "(expected the task to fail)"
    failures=$((failures + 1))
else
    summarize failed || failures=$((failures + 1))
fi

# api METHOD PATH [JSON]: the test server's HTTP API (no curl needed)
api() {
    /usr/bin/python3 - "$port" "$@" <<'PY'
import os, sys, urllib.request
port, method, path = sys.argv[1], sys.argv[2], sys.argv[3]
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=data, method=method,
                             headers={"Content-Type": "application/json",
                                      "X-API-Key": os.environ["AIP_TOKEN"]})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}

echo
bold "--- 5. break the link on purpose (POST /api/faults) and watch the agent come back"
since() { api GET /api/clients/demo-device | sed -n 's/.*"connected_since":"\([^"]*\)".*/\1/p'; }
before=$(since)
echo "\$ $(shq curl -s -X POST "http://127.0.0.1:$port/api/faults" -H "X-API-Key: $AIP_TOKEN" \
    -H 'Content-Type: application/json' -d '{"client_id":"demo-device","fault":"drop"}')"
api POST /api/faults '{"client_id":"demo-device","fault":"drop"}' || failures=$((failures + 1))
back=""
for _ in $(seq 100); do
    now=$(since 2>/dev/null || true)
    if [[ -n "$now" && "$now" != "$before" ]]; then
        back=$now
        break
    fi
    sleep 0.1
done
if [[ -n "$back" ]]; then
    echo "registered again (connected since $back; before: $before)"
else
    echo "(the agent did not come back within 10 s)"
    failures=$((failures + 1))
fi

echo
bold "--- 6. what the server counted (GET /metrics, excerpt)"
metrics_re='^aip_(connections|registrations_total|faults_total\{fault="drop"|tasks_total|command_rtt_seconds_count)'
echo "\$ $(shq curl -s -H "X-API-Key: $AIP_TOKEN" "http://127.0.0.1:$port/metrics") | grep -E $(shq "$metrics_re")"
api GET /metrics | grep -E "$metrics_re" ||
    failures=$((failures + 1))
echo
if ((failures)); then
    bold "the tour had $failures failing step(s); logs: server and agent below"
    tail -20 "$work/server.log" "$work/agent.log"
    keep_logs=1
    exit 1
fi
bold "the tour worked: every step as expected"
if ((once)); then
    exit 0
fi
echo
bold "Both are still running. Try, in another terminal (each line pastes as it is):"
curl_key=(curl -s -H "X-API-Key: $AIP_TOKEN")
echo "  dashboard (open it in a browser: live events, device view, actions):"
echo "    $dashboard"
echo "  \$ $(ctl_cmd devices)"
echo "  \$ $(ctl_cmd info demo-device)"
echo "  \$ $(ctl_cmd task demo-device '{"actions":[{"tool_name":"list_tools"}]}')"
echo "  \$ $(ctl_cmd task demo-device '{"actions":[{"tool_name":"sleep","parameters":{"seconds":2}}]}')"
echo "  \$ $(shq "${curl_key[@]}" "http://127.0.0.1:$port/api/clients/details")"
echo "  \$ $(shq "${curl_key[@]}" "http://127.0.0.1:$port/metrics")"
echo "  \$ $(shq "${curl_key[@]}" -H 'Content-Type: application/json' -X POST \
    "http://127.0.0.1:$port/api/faults" -d '{"client_id":"demo-device","fault":"stall","seconds":5}')"
echo "  \$ kill -USR1 $agent_pid    # the agent logs its statistics (in its log)"
keep_logs=1
echo "Logs: $work/server.log and $work/agent.log (kept when the demo stops)."
echo "Ctrl-C stops both."
while kill -0 "$agent_pid" 2>/dev/null && kill -0 "$server_pid" 2>/dev/null; do
    sleep 1
done
echo "a process exited; stopping"
exit 1
