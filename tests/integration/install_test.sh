#!/usr/bin/env bash
# Integration: `cmake --install` into a temporary prefix, then an outside program built against
# it twice — with pkg-config and with find_package(aip) — and run.
# usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
prefix=$(mktemp -d /tmp/aip-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
pass=0
fail=0
check() {
    if eval "$2"; then
        echo "ok   $1"
        pass=$((pass + 1))
    else
        echo "FAIL $1"
        fail=$((fail + 1))
    fi
}

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(cd "$prefix" && ls -d lib* | head -1)
for l in "$prefix"/lib*/; do [[ -e "$l/pkgconfig/aip.pc" ]] && libdir="${l%/}" && break; done
check "shared library with a soname" "readelf -d $libdir/libaip.so | grep -q 'SONAME.*libaip.so.0'"
check "static library" "[[ -f $libdir/libaip.a ]]"
check "umbrella and component headers" "[[ -f $prefix/include/aip/aip.h && -f $prefix/include/aip/conn.h && -f $prefix/include/aip/agent.h ]]"
check "no internal headers installed" "[[ ! -e $prefix/include/aip/internal ]]"
check "pkg-config file" "[[ -f $libdir/pkgconfig/aip.pc ]]"
check "CMake package config" "[[ -f $libdir/cmake/aip/aipConfig.cmake && -f $libdir/cmake/aip/aipTargets.cmake ]]"
check "programs" "[[ -x $prefix/bin/constellation-agent && -x $prefix/bin/aip-test-server && -x $prefix/bin/aipctl && -x $prefix/bin/aip-bench && -x $prefix/bin/aip-codec ]]"
check "systemd unit: notify, restart, no restart on 78" "grep -q '^Type=notify' $prefix/lib/systemd/system/constellation-agent.service && grep -q '^Restart=always' $prefix/lib/systemd/system/constellation-agent.service && grep -q '^RestartPreventExitStatus=78' $prefix/lib/systemd/system/constellation-agent.service"

work=$(mktemp -d /tmp/aip-embed.XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT
export PKG_CONFIG_PATH="$libdir/pkgconfig"
check "example builds with pkg-config" "cc -std=c11 -Wall -Wextra -Werror $src/examples/embed.c \$(pkg-config --cflags --libs aip) -o $work/embed"
check "example runs against the installed library" "LD_LIBRARY_PATH=$libdir $work/embed | grep -q 'round trip ok'"
mkdir -p "$work/cm"
cat >"$work/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.25)
project(embed C)
find_package(aip REQUIRED)
add_executable(embed $src/examples/embed.c)
target_link_libraries(embed PRIVATE aip::aip)
CM
check "example builds with find_package(aip)" "cmake -S $work/cm -B $work/cm/b -DCMAKE_PREFIX_PATH=$prefix >/dev/null && cmake --build $work/cm/b >/dev/null"
check "and runs" "LD_LIBRARY_PATH=$libdir $work/cm/b/embed | grep -q 'round trip ok'"
echo "install: $pass passed, $fail failed"
[[ "$fail" == 0 ]]
