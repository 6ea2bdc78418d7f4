#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Integration: tools/demo.sh as a reader uses it (127.0.0.1 only).
#  - --help is complete (the whole header, up to its last sentence), exit 0;
#  - `demo.sh --stay --build-dir BUILD` runs the tour, then every command it printed (each line
#    starting with "$ ") is pasted into a fresh shell with an empty environment, as printed:
#    each must exit 0 (step 4's failing batch: 1, with a "failed" task), and every aipctl line
#    names the real ws://127.0.0.1:PORT/ws and the key;
#  - on SIGINT it stops both programs and keeps the logs it named, saying how to remove them.
# usage: demo_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
demo="$src/tools/demo.sh"
pass=0
fail=0
tmp=$(mktemp -d)
demo_pid=""
kept=""
cleanup() {
    [[ -n "$demo_pid" ]] && kill -INT "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null || true
    [[ -n "$kept" && "$kept" == /tmp/aip-demo.* ]] && rm -rf "$kept" || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ok() {
    echo "ok   $1"
    pass=$((pass + 1))
}
bad() {
    echo "FAIL $1"
    fail=$((fail + 1))
}

# --help: the header, whole
rc=0
"$demo" --help >"$tmp/help" 2>&1 || rc=$?
if [[ $rc == 0 ]] && grep -q -- "--build-dir DIR" "$tmp/help" && tail -1 "$tmp/help" | grep -q "left behind\.$"; then
    ok "--help is complete ($(wc -l <"$tmp/help") lines, ends: $(tail -1 "$tmp/help"))"
else
    bad "--help: exit $rc: $(cat "$tmp/help")"
fi
rc=0
"$demo" --no-such-option >/dev/null 2>"$tmp/err" || rc=$?
[[ $rc == 2 ]] && grep -q "no-such-option: unknown option" "$tmp/err" && ok "unknown option: exit 2, named" ||
    bad "unknown option: exit $rc: $(cat "$tmp/err")"

# the tour, kept running (job control: a background job then takes SIGINT, as on a terminal)
set -m
env -u AIP_TOKEN "$demo" --stay --build-dir "$build" </dev/null >"$tmp/demo.out" 2>&1 &
demo_pid=$!
for _ in $(seq 600); do
    grep -q "^Ctrl-C stops both" "$tmp/demo.out" && break
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "the tour worked" "$tmp/demo.out" || ! grep -q "^Ctrl-C stops both" "$tmp/demo.out"; then
    bad "the tour did not finish: $(tail -30 "$tmp/demo.out")"
    echo "demo: $pass passed, $fail failed"
    exit 1
fi
ok "the tour worked"
port=$(sed -n 's#^listening on ws://127.0.0.1:\([0-9]*\)/ws$#\1#p' "$tmp/demo.out")

# every printed command, pasted as printed into a shell that inherits nothing
sed -n 's/^ *\$ //p' "$tmp/demo.out" >"$tmp/commands"
n=0
while IFS= read -r cmd; do
    n=$((n + 1))
    short="${cmd:0:110}"
    if [[ "$cmd" == *aipctl* ]]; then
        [[ "$cmd" == *"--server ws://127.0.0.1:$port/ws "* && "$cmd" == *"AIP_TOKEN="* ]] ||
            bad "command $n does not name the real server and the key: $short"
    fi
    if [[ "$cmd" == curl* ]] && ! command -v curl >/dev/null; then
        echo "skip command $n (no curl here): $short"
        continue
    fi
    rc=0
    env -i PATH="$PATH" HOME="${HOME:-/tmp}" bash -c "$cmd" </dev/null >"$tmp/cmd.out" 2>&1 || rc=$?
    if [[ "$cmd" == *no_such_tool* ]]; then
        [[ $rc == 1 ]] && grep -q '"status": "failed"' "$tmp/cmd.out" &&
            ok "command $n fails as the tour says (exit 1, task failed): $short" ||
            bad "command $n: exit $rc (want 1): $short: $(head -c 400 "$tmp/cmd.out")"
    elif [[ $rc == 0 && -s "$tmp/cmd.out" || $rc == 0 && "$cmd" == kill* ]]; then
        ok "command $n: $short"
    else
        bad "command $n: exit $rc: $cmd: $(head -c 400 "$tmp/cmd.out")"
    fi
    if [[ "$cmd" == *'"fault":"drop"'* ]]; then
        # a reader would wait for the agent to come back: so does this test (the first
        # printed command lists the devices)
        for _ in $(seq 100); do
            env -i PATH="$PATH" bash -c "$(head -1 "$tmp/commands")" 2>/dev/null | grep -q '"demo-device"' && break
            sleep 0.1
        done
    fi
done <"$tmp/commands"
((n >= 13)) && ok "$n commands printed and pasted" || bad "only $n commands printed"
grep -qE '\$(URL|PORT|AIP_TOKEN)\b' "$tmp/commands" && bad "a printed command names an unset variable" ||
    ok "no printed command relies on a variable"

# Ctrl-C: both stop, the logs it named stay
kill -INT "$demo_pid"
rc=0
wait "$demo_pid" || rc=$?
demo_pid=""
line=$(grep "^logs kept: " "$tmp/demo.out" || true)
kept=$(sed -n 's/.*remove them with: rm -r \(.*\))$/\1/p' <<<"$line")
server_log=$(sed -n 's/^logs kept: \([^ ]*\) and .*/\1/p' <<<"$line")
if [[ $rc == 0 && -n "$kept" && -s "$server_log" && -s "$kept/agent.log" ]]; then
    ok "SIGINT: exit 0, logs kept ($line)"
else
    bad "SIGINT: exit $rc, $line; $(tail -5 "$tmp/demo.out")"
fi

echo "demo: $pass passed, $fail failed"
[[ "$fail" == 0 ]]
