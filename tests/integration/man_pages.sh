#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Integration: the manual pages in docs/man/ against the programs as built.
# Every --flag a program's --help names must be in its man page (a new flag without its man
# page entry fails here), and each page must format without a groff/man warning (what lintian
# checks in the Debian packages).
# usage: man_pages.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
pass=0
fail=0
declare -A bin=([constellation-agent]=main/constellation-agent [aipctl]=tools/aipctl
    [aip-test-server]=tools/aip-test-server [aip-codec]=tools/aip-codec
    [aip-bench]=tools/aip-bench)
declare -A sect=([constellation-agent]=8)
for prog in constellation-agent aipctl aip-test-server aip-codec aip-bench; do
    page="$src/docs/man/$prog.${sect[$prog]:-1}"
    if [[ ! -f "$page" ]]; then
        echo "FAIL $prog: no man page $page"
        fail=$((fail + 1))
        continue
    fi
    # the page's text with roff's \- as -
    text="$(sed 's/\\-/-/g' "$page")"
    missing=()
    while read -r flag; do
        grep -qe "$flag\\b" <<<"$text" || missing+=("$flag")
    done < <("$build/${bin[$prog]}" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
    if ((${#missing[@]})); then
        echo "FAIL $prog: --help names flags its man page lacks: ${missing[*]}"
        fail=$((fail + 1))
    else
        echo "ok   $prog: every flag of --help is in $(basename "$page")"
        pass=$((pass + 1))
    fi
    warn="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null || true)"
    if [[ -n "$warn" ]]; then
        echo "FAIL $prog: man --warnings: $warn"
        fail=$((fail + 1))
    else
        echo "ok   $prog: formats without warnings"
        pass=$((pass + 1))
    fi
done
echo "man pages: $pass passed, $fail failed"
[[ "$fail" == 0 ]]
