#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks that libaip.so exports its API and nothing else (README "ABI").
#
# usage: tools/check-symbols.sh [BUILD_DIR]     (default: build)
#
# Fails (exit 1), naming each culprit, when
# - an installed header (build/public-include/aip/: a link to each header CMakeLists.txt's
#   AIP_PUBLIC_HEADERS installs) lies under an internal/ directory, or is aip/port.h;
# - BUILD_DIR/libaip.so exports a symbol that no installed header declares with AIP_API
#   (an internal function, generated protobuf-c code: the library is built with hidden
#   visibility, see aip/export.h);
# - an installed header declares a function with AIP_API that libaip.so does not export
#   (declared but never defined, or defined static), or declares one without AIP_API (it
#   would be hidden: in libaip.a, missing from libaip.so).
# Exit 2: BUILD_DIR has no libaip.so or no public-include/ (build it first).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
lib="$build/libaip.so"
pub="$build/public-include/aip"
if [[ ! -e "$lib" || ! -d "$pub" ]]; then
    echo "check-symbols: no $lib or $pub: build first (cmake --build $build)" >&2
    exit 2
fi

fail=0
headers=()
for h in "$pub"/*.h; do
    src="$(readlink -f "$h")"
    headers+=("$src")
    rel="${src#"$root"/}"
    if [[ "$rel" == */internal/* || "$(basename "$rel")" == port.h ]]; then
        echo "check-symbols: installed header $rel is internal (AIP_PUBLIC_HEADERS)"
        fail=1
    fi
done

# A function declared in an installed header without AIP_API would be hidden in libaip.so:
# usable from the static library, missing from the shared one.
unmarked="$(grep -nE '^[A-Za-z_][A-Za-z0-9_ *]*\baip_[A-Za-z0-9_]+ ?\(' "${headers[@]}" |
    grep -vE '^[^:]*:[0-9]+:(typedef|extern|AIP_API) ' || true)"
if [[ -n "$unmarked" ]]; then
    echo "check-symbols: functions declared in installed headers without AIP_API:"
    sed "s|^$root/|  |" <<<"$unmarked"
    fail=1
fi

tmp="$(mktemp -d -t aip-symbols.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
# Declared: the function name on each line that starts with AIP_API (clang-format keeps the
# name on that line).
grep -h '^AIP_API ' "${headers[@]}" | grep -o '[A-Za-z_][A-Za-z0-9_]*(' | sed 's/($//' |
    awk '!seen[$0]++ && !/^__attribute__$/' | sort >"$tmp/declared"
# Exported: every defined dynamic symbol, whatever its kind (function, data).
nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/exported"

extra="$(comm -13 "$tmp/declared" "$tmp/exported")"
missing="$(comm -23 "$tmp/declared" "$tmp/exported")"
if [[ -n "$extra" ]]; then
    echo "check-symbols: libaip.so exports $(wc -l <<<"$extra") symbol(s) no installed header" \
        "declares with AIP_API:"
    sed 's/^/  /' <<<"$extra" | head -n 50
    fail=1
fi
if [[ -n "$missing" ]]; then
    echo "check-symbols: declared with AIP_API but not exported by libaip.so:"
    sed 's/^/  /' <<<"$missing"
    fail=1
fi
if ((fail == 0)); then
    echo "check-symbols: libaip.so exports $(wc -l <"$tmp/exported") symbols, each declared" \
        "with AIP_API in the ${#headers[@]} installed headers, and nothing else"
fi
exit "$fail"
