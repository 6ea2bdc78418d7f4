#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Each installed header compiles alone, as C11 and as C++17, with -Wall -Wextra -Werror
# -Wpedantic, seeing only the installed headers (a header that needs an internal one, or
# another it does not include, fails), and declares its functions inside extern "C" (a C++
# translation unit that calls one must link against the C library's symbol).
#
# usage: check_headers.sh PUBLIC_INCLUDE_DIR [CC] [CXX]
#   PUBLIC_INCLUDE_DIR  build/public-include (holds aip/<header>.h, the installed set)
#   CC, CXX             compilers (default: cc, c++)
set -euo pipefail

inc="$1"
cc="${2:-cc}"
cxx="${3:-c++}"
command -v "$cxx" >/dev/null || {
    echo "check_headers: no C++ compiler '$cxx' (build-essential has g++)" >&2
    exit 1
}
tmp="$(mktemp -d -t aip-headers.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

flags=(-Wall -Wextra -Werror -Wpedantic -I"$inc")
n=0 fail=0
for h in "$inc"/aip/*.h; do
    name="aip/$(basename "$h")"
    # (a declaration after it: ISO C forbids an empty translation unit)
    printf '#include <%s>\ntypedef int aip_header_check_;\n' "$name" >"$tmp/t.c"
    if ! "$cc" -std=c11 "${flags[@]}" -fsyntax-only -x c "$tmp/t.c" 2>"$tmp/err"; then
        echo "FAIL (C11): $name"
        sed 's/^/  /' "$tmp/err" | head -n 20
        fail=1
    fi
    if ! "$cxx" -std=c++17 "${flags[@]}" -fsyntax-only -x c++ "$tmp/t.c" 2>"$tmp/err"; then
        echo "FAIL (C++17): $name"
        sed 's/^/  /' "$tmp/err" | head -n 20
        fail=1
    fi
    if grep -q '^AIP_API ' "$h" && ! grep -q '^extern "C" {' "$h"; then
        echo "FAIL: $name declares functions but has no extern \"C\" guard"
        fail=1
    fi
    n=$((n + 1))
done
# extern "C": every function the headers declare keeps its C name in a C++ object file.
printf '#include <aip/aip.h>\nextern "C" const char *(*aip_check_fn)(int);\nconst char *(*aip_check_fn)(int) = aip_strerror;\nint aip_check_call(void) { return aip_strerror(0)[0] + (int)aip_future_done(nullptr) + (int)aip_tool_call_cancelled(nullptr); }\n' >"$tmp/u.cc"
if "$cxx" -std=c++17 "${flags[@]}" -c "$tmp/u.cc" -o "$tmp/u.o" 2>"$tmp/err"; then
    mangled="$(nm -u "$tmp/u.o" | awk '$2 ~ /^_Z/ { print $2 }')"
    if [[ -n "$mangled" ]]; then
        echo "FAIL (C++17): aip functions referenced with C++ linkage (no extern \"C\"):"
        sed 's/^/  /' <<<"$mangled"
        fail=1
    fi
else
    echo "FAIL (C++17): a C++ file calling the API does not compile"
    sed 's/^/  /' "$tmp/err" | head -n 20
    fail=1
fi
((n > 0)) || {
    echo "check_headers: no headers in $inc/aip" >&2
    exit 1
}
((fail == 0)) && echo "check_headers: $n installed headers compile alone as C11 and C++17"
exit "$fail"
