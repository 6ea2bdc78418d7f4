#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# libaip's ABI baseline: abi/<soname>.abi (abi/libaip.so.0.abi), written by abidw
# (Debian's abigail-tools) from a build with debug info, checked in, and compared with every
# build by tools/test.sh --stage abi (README "ABI").
#
# usage: tools/abi-baseline.sh [--check] [BUILD_DIR]     (default BUILD_DIR: build)
#   (no option)  write the baseline from BUILD_DIR/libaip.so: run it on purpose, when a change
#                of the ABI is meant (a function added, a public struct grown, ...), and commit
#                the new file with that change
#   --check      compare BUILD_DIR/libaip.so with the baseline (abidiff); exit 1 on any ABI
#                change, compatible or not, printing abidiff's report: every change is
#                deliberate, and recorded by writing the baseline again
#
# The ABI is what the installed headers declare (abidw --header-file for each, through
# BUILD_DIR/public-include/aip): types private to the library, such as the inside of an opaque
# aip_conn, are left out, so changing them is not an ABI change. BUILD_DIR must hold a -g
# build (RelWithDebInfo or Debug, no sanitizer).
# Exit status: 0 written / no change, 1 ABI changed, 2 usage or setup error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=0
build="$root/build"
for arg in "$@"; do
    case "$arg" in
    --check) check=1 ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    -*)
        echo "abi-baseline: unknown option $arg" >&2
        exit 2
        ;;
    *) build="$arg" ;;
    esac
done

for tool in abidw abidiff; do
    command -v "$tool" >/dev/null || {
        echo "abi-baseline: no $tool: install abigail-tools (tools/install-deps.sh)" >&2
        exit 2
    }
done
lib="$build/libaip.so"
pub="$build/public-include/aip"
if [[ ! -e "$lib" || ! -d "$pub" ]]; then
    echo "abi-baseline: no $lib or $pub: build first (cmake --build $build)" >&2
    exit 2
fi
# (grep after readelf has finished: grep -q stopping early would fail the pipe under pipefail)
sections="$(readelf -S "$lib")"
if [[ "$sections" != *.debug_info* ]]; then
    echo "abi-baseline: $lib has no debug info: build with -g (RelWithDebInfo)" >&2
    exit 2
fi
soname="$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
baseline="$root/abi/${soname:?no SONAME in $lib}.abi"

# abidw LIB OUT: the ABI of LIB as the installed headers declare it, with no path of this
# machine in it (compilation units are named relative to the source tree).
dump() {
    local hf=() h
    for h in "$pub"/*.h; do
        hf+=(--header-file "$(readlink -f "$h")")
    done
    abidw --no-corpus-path --no-comp-dir-path --no-show-locs --drop-private-types \
        --drop-undefined-syms "${hf[@]}" --out-file "$2.tmp" "$1"
    sed -e "s|path='$root/|path='|" "$2.tmp" >"$2"
    rm -f "$2.tmp"
}

if ((check == 0)); then
    mkdir -p "$(dirname "$baseline")"
    dump "$lib" "$baseline"
    echo "abi-baseline: wrote ${baseline#"$root"/} ($(grep -c '<elf-symbol ' "$baseline")" \
        "functions) from $lib"
    exit 0
fi

if [[ ! -f "$baseline" ]]; then
    echo "abi-baseline: no baseline ${baseline#"$root"/} (soname $soname): write it with" \
        "tools/abi-baseline.sh" >&2
    exit 1
fi
tmp="$(mktemp -d -t aip-abi.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
dump "$lib" "$tmp/current.abi"
rc=0
abidiff --no-unreferenced-symbols "$baseline" "$tmp/current.abi" >"$tmp/report" 2>&1 || rc=$?
if ((rc == 0)); then
    echo "abi-baseline: libaip ABI unchanged from ${baseline#"$root"/}" \
        "($(grep -c '<elf-symbol ' "$baseline") functions)"
    exit 0
fi
cat "$tmp/report"
# abidiff's exit status is a bit field: 1 error, 2 usage, 4 ABI change, 8 incompatible change
if ((rc & 3)); then
    echo "abi-baseline: abidiff failed (exit $rc)" >&2
    exit 2
fi
if ((rc & 8)); then
    echo "abi-baseline: INCOMPATIBLE ABI change from ${baseline#"$root"/} (above)."
else
    echo "abi-baseline: ABI change from ${baseline#"$root"/} (above; compatible)."
fi
echo "If it is meant, write the baseline again (tools/abi-baseline.sh) and commit it with the" \
    "change; an incompatible change before 1.0 bumps the minor version (README \"ABI\")."
exit 1
