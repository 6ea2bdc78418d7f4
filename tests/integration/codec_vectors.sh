#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# codec_vectors.sh AIP_CODEC VECTORS_DIR — runs the aip-codec CLI over tests/vectors/ (see its
# README.md); the ctest `codec_vectors_cli`.
#
#   valid/<env>/*.json   json->json and json->proto->json give the same bytes, which are a fixed
#                        point and valid JSON; proto->json --pretty is valid JSON too
#   valid/<env>/*.bin    proto->json gives the bytes json->json gives for its .json twin
#   malformed/           exit status exactly 1, nothing on stdout, one stderr line
#                        "aip-codec: invalid message: ..." containing the manifest's substring
#   invalid_actions/     exit status 1, the stderr line names the first invalid action
#
# Prints one FAIL line per problem and a summary "codec vectors: N passed, M failed";
# exits non-zero when anything failed.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 AIP_CODEC VECTORS_DIR" >&2
    exit 2
fi
codec=$1
dir=$2
py=/usr/bin/python3
[[ -x "$codec" ]] || { echo "codec_vectors: $codec is not executable" >&2; exit 2; }
[[ -d "$dir" ]] || { echo "codec_vectors: no folder $dir" >&2; exit 2; }

# Minimum numbers of vectors, so that an empty or misplaced corpus cannot pass.
min_valid_json=20  # per envelope
min_valid_bin=6    # both envelopes
min_malformed=140
min_invalid_actions=15

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every vector (and every corpus-level check) has an entry in status: 1 passed, 0 failed.
declare -A status=()
current=corpus

fail() {
    echo "FAIL: $*" >&2
    status[$current]=0
}

begin_vector() {
    current=$1
    [[ -n "${status[$current]:-}" ]] || status[$current]=1
}

# run NAME ARGS... <input : runs aip-codec, stdout to $tmp/NAME.out, stderr to $tmp/NAME.err;
# sets rc (never trips set -e).
run() {
    local name=$1
    shift
    rc=0
    "$codec" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
}

finish_vector() {
    current=corpus
}

# JSON outputs are checked with Python's parser in one run at the end (a Python start-up per
# file would cost more than the rest of this script): check_json FILE WHAT queues FILE.
mkdir "$tmp/json"
n_json_checks=0
printf '' >"$tmp/json/index.tsv"
check_json() {
    n_json_checks=$((n_json_checks + 1))
    cp "$1" "$tmp/json/$n_json_checks.json"
    printf '%s\t%s\t%s\n' "$n_json_checks" "$current" "$2" >>"$tmp/json/index.tsv"
}

# ---- valid/<env>/*.json ----------------------------------------------------------------------
n_bin=0
for env in client server; do
    n=0
    for f in "$dir/valid/$env"/*.json; do
        [[ -e "$f" ]] || continue
        n=$((n + 1))
        v="valid/$env/$(basename "$f")"
        begin_vector "$v"
        run direct --from json --to json --envelope "$env" <"$f"
        if [[ $rc -ne 0 ]]; then
            fail "$v: json->json exit $rc: $(head -c 300 "$tmp/direct.err")"
            finish_vector
            continue
        fi
        cp "$tmp/direct.out" "$tmp/a.json"
        check_json "$tmp/a.json" "json->json output"

        run fixed --from json --to json --envelope "$env" <"$tmp/a.json"
        [[ $rc -eq 0 ]] && cmp -s "$tmp/a.json" "$tmp/fixed.out" ||
            fail "$v: json->json output is not a fixed point (exit $rc)"

        run proto --from json --to proto --envelope "$env" <"$f"
        if [[ $rc -ne 0 ]]; then
            fail "$v: json->proto exit $rc: $(head -c 300 "$tmp/proto.err")"
        else
            cp "$tmp/proto.out" "$tmp/p.bin"
            run back --from proto --to json --envelope "$env" <"$tmp/p.bin"
            if [[ $rc -ne 0 ]]; then
                fail "$v: proto->json exit $rc: $(head -c 300 "$tmp/back.err")"
            elif ! cmp -s "$tmp/a.json" "$tmp/back.out"; then
                fail "$v: json->proto->json differs from json->json"
                diff <(cat "$tmp/a.json") <(cat "$tmp/back.out") | head -5 >&2 || true
            fi
            run pretty --from proto --to json --envelope "$env" --pretty <"$tmp/p.bin"
            if [[ $rc -ne 0 ]]; then
                fail "$v: proto->json --pretty exit $rc: $(head -c 300 "$tmp/pretty.err")"
            else
                check_json "$tmp/pretty.out" "proto->json --pretty output"
            fi
        fi
        finish_vector
    done
    if [[ $n -lt $min_valid_json ]]; then
        fail "valid/$env: only $n JSON vectors, expected at least $min_valid_json"
        finish_vector
    fi

    # ---- valid/<env>/*.bin: hand-encoded protobuf with a JSON twin ----
    for f in "$dir/valid/$env"/*.bin; do
        [[ -e "$f" ]] || continue
        n_bin=$((n_bin + 1))
        v="valid/$env/$(basename "$f")"
        begin_vector "$v"
        twin="${f%.bin}.json"
        run fromproto --from proto --to json --envelope "$env" <"$f"
        if [[ $rc -ne 0 ]]; then
            fail "$v: proto->json exit $rc: $(head -c 300 "$tmp/fromproto.err")"
        elif [[ ! -e "$twin" ]]; then
            fail "$v: no JSON twin $(basename "$twin")"
        else
            run twin --from json --to json --envelope "$env" <"$twin"
            [[ $rc -eq 0 ]] && cmp -s "$tmp/fromproto.out" "$tmp/twin.out" ||
                fail "$v: proto->json differs from json->json of $(basename "$twin")"
        fi
        finish_vector
    done
done
if [[ $n_bin -lt $min_valid_bin ]]; then
    fail "valid: only $n_bin .bin vectors, expected at least $min_valid_bin"
    finish_vector
fi

# check_rejected VECTOR WANT_PREFIX SUBSTRING: the last run failed the way it must.
check_rejected() {
    local v=$1 prefix=$2 sub=$3 line
    if [[ $rc -ne 1 ]]; then
        fail "$v: exit status $rc, expected 1 (stderr: $(head -c 300 "$tmp/bad.err"))"
        return
    fi
    [[ -s "$tmp/bad.out" ]] && fail "$v: wrote to stdout although it failed"
    if [[ $(wc -l <"$tmp/bad.err") -ne 1 ]] || [[ $(tail -c 1 "$tmp/bad.err" | od -An -c | tr -d ' ') != '\n' ]]; then
        fail "$v: stderr is not exactly one line: $(head -c 300 "$tmp/bad.err")"
        return
    fi
    IFS= read -r line <"$tmp/bad.err"
    [[ "$line" == "$prefix"* ]] || fail "$v: stderr \"$line\" does not start with \"$prefix\""
    [[ "$line" == *"$sub"* ]] || fail "$v: stderr \"$line\" does not contain \"$sub\""
}

# ---- malformed/ ---------------------------------------------------------------------------------
n=0
declare -A listed=()
while IFS=$'\t' read -r file env enc code sub <&3; do
    [[ -z "$file" || "$file" == \#* ]] && continue
    n=$((n + 1))
    v="malformed/$file"
    begin_vector "$v"
    listed[$file]=1
    if [[ -z "${sub:-}" || ! -e "$dir/malformed/$file" ]]; then
        fail "malformed/MANIFEST.tsv: bad row or missing file for $file"
        finish_vector
        continue
    fi
    case $enc in
    json) to=proto ;;
    proto) to=json ;;
    *) to= ;;
    esac
    if [[ -z "$to" || ( "$env" != client && "$env" != server ) || "$code" != AIP_E_* ]]; then
        fail "malformed/MANIFEST.tsv: bad row for $file"
        finish_vector
        continue
    fi
    run bad --from "$enc" --to "$to" --envelope "$env" <"$dir/malformed/$file"
    check_rejected "$v" "aip-codec: invalid message: " "$sub"
    finish_vector
done 3<"$dir/malformed/MANIFEST.tsv"
for f in "$dir/malformed"/*; do
    b=$(basename "$f")
    [[ "$b" == MANIFEST.tsv || "$b" == README.md ]] && continue
    if [[ -z "${listed[$b]:-}" ]]; then
        fail "malformed/$b: not listed in MANIFEST.tsv"
        finish_vector
    fi
done
if [[ $n -lt $min_malformed ]]; then
    fail "malformed: only $n rows, expected at least $min_malformed"
    finish_vector
fi

# ---- invalid_actions/ -----------------------------------------------------------------------------
# The CLI refuses to re-encode a command holding an invalid action and names the first one.
declare -A first_idx=() first_sub=()
n=0
while IFS=$'\t' read -r file idx sub call_id <&3; do
    [[ -z "$file" || "$file" == \#* ]] && continue
    n=$((n + 1))
    if [[ -z "${first_idx[$file]:-}" || $idx -lt ${first_idx[$file]} ]]; then
        first_idx[$file]=$idx
        first_sub[$file]=$sub
    fi
done 3<"$dir/invalid_actions/MANIFEST.tsv"
for f in "$dir/invalid_actions"/*; do
    b=$(basename "$f")
    [[ "$b" == MANIFEST.tsv || "$b" == README.md ]] && continue
    v="invalid_actions/$b"
    begin_vector "$v"
    if [[ -z "${first_idx[$b]:-}" ]]; then
        fail "$v: not listed in MANIFEST.tsv"
        finish_vector
        continue
    fi
    case $b in
    *.bin) enc=proto to=json ;;
    *) enc=json to=proto ;;
    esac
    run bad --from "$enc" --to "$to" --envelope server <"$f"
    check_rejected "$v" "aip-codec: invalid message: action ${first_idx[$b]}: " "${first_sub[$b]}"
    finish_vector
done
if [[ $n -lt $min_invalid_actions ]]; then
    fail "invalid_actions: only $n rows, expected at least $min_invalid_actions"
    finish_vector
fi

# ---- the queued JSON checks -----------------------------------------------------------------------
bad_json=$("$py" - "$tmp/json" <<'PY'
import json, sys
folder = sys.argv[1]
for line in open(folder + "/index.tsv", encoding="utf-8"):
    idx, vector, what = line.rstrip("\n").split("\t")
    try:
        with open("%s/%s.json" % (folder, idx), "rb") as f:
            json.loads(f.read().decode("utf-8"))
    except Exception as e:
        print("%s\t%s is not valid JSON: %s" % (vector, what, str(e).replace("\t", " ")))
PY
) || { echo "FAIL: the JSON check itself failed" >&2; status[corpus]=0; }
while IFS=$'\t' read -r vector msg; do
    [[ -n "$vector" ]] || continue
    current=$vector
    fail "$vector: $msg"
done <<<"$bad_json"
current=corpus
[[ $n_json_checks -gt 0 ]] || fail "no JSON output was checked"

passed=0
failed=0
for k in "${!status[@]}"; do
    [[ $k == corpus ]] && continue
    if [[ ${status[$k]} -eq 1 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
[[ ${status[corpus]:-1} -eq 1 ]] || failed=$((failed + 1))
echo "codec vectors: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
