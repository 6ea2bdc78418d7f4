#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Integration: installation, as an operator and as an embedder meet it.
#
# 1. `cmake --install BUILD --prefix P` into a temporary prefix other than the configured one:
#    the unit's ExecStart names P/bin (configured at install time) and systemd-analyze verify
#    accepts the unit (its man: link found through MANPATH); aip.pc names P; an outside program
#    builds with pkg-config and with find_package(aip) and runs (LD_LIBRARY_PATH, or the build
#    RPATH CMake gives a find_package consumer).
# 2. The Debian layout: a second, quick (-O0, no tests) build configured with
#    -DCMAKE_INSTALL_PREFIX=/usr, so the library goes to lib/<multiarch>, installed with
#    DESTDIR: aip.pc must name /usr/include and /usr/lib/<multiarch> (what `dpkg -i` gives), the
#    unit /usr/bin; under the DESTDIR (PKG_CONFIG_SYSROOT_DIR, CMAKE_PREFIX_PATH) the example
#    builds with pkg-config and with find_package(aip), and runs.
#
# usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
prefix=$(mktemp -d /tmp/aip-install.XXXXXX)
work=$(mktemp -d /tmp/aip-embed.XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT
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
# pc_of DIR: the directory holding aip.pc under DIR (lib, lib64 or lib/<multiarch>)
pc_of() { dirname "$(find "$1" -path '*/pkgconfig/aip.pc' | head -1)"; }

# --- 1. another prefix than the configured one -------------------------------------------------
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
pcdir=$(pc_of "$prefix")
libdir=$(dirname "$pcdir")
unit="$prefix/lib/systemd/system/constellation-agent.service"
check "shared library with a soname" "readelf -d $libdir/libaip.so | grep -q 'SONAME.*libaip.so.0'"
check "static library" "[[ -f $libdir/libaip.a ]]"
check "umbrella and component headers" "[[ -f $prefix/include/aip/aip.h && -f $prefix/include/aip/conn.h && -f $prefix/include/aip/agent.h ]]"
check "no internal headers installed" "[[ ! -e $prefix/include/aip/internal ]]"
check "pkg-config file" "[[ -f $pcdir/aip.pc ]]"
check "CMake package config" "[[ -f $libdir/cmake/aip/aipConfig.cmake && -f $libdir/cmake/aip/aipTargets.cmake ]]"
check "programs" "[[ -x $prefix/bin/constellation-agent && -x $prefix/bin/aip-test-server && -x $prefix/bin/aipctl && -x $prefix/bin/aip-bench && -x $prefix/bin/aip-codec ]]"
check "man pages" "[[ -f $prefix/share/man/man8/constellation-agent.8 && -f $prefix/share/man/man1/aipctl.1 && -f $prefix/share/man/man1/aip-test-server.1 && -f $prefix/share/man/man1/aip-codec.1 && -f $prefix/share/man/man1/aip-bench.1 ]]"
check "systemd unit: notify, restart, no restart on 78" "grep -q '^Type=notify' $unit && grep -q '^Restart=always' $unit && grep -q '^RestartPreventExitStatus=78' $unit"
check "systemd unit: ExecStart follows the install prefix ($prefix/bin)" \
    "grep -q '^ExecStart=$prefix/bin/constellation-agent ' $unit"
check "systemd unit: the token credential has a fallback (a server without a key)" \
    "grep -q '^LoadCredential=token:/etc/constellation-agent/token$' $unit && grep -q '^SetCredential=token:' $unit"
check "systemd unit: Delegate=yes kept, no ProtectControlGroups" \
    "grep -q '^Delegate=yes' $unit && ! grep -q '^ProtectControlGroups' $unit"
check "install_manifest.txt lists the configured files" \
    "grep -qx '$unit' $build/install_manifest.txt && grep -qx '$pcdir/aip.pc' $build/install_manifest.txt"
if command -v systemd-analyze >/dev/null; then
    # verify checks that ExecStart exists and runs man for Documentation=man:...; any message
    # (it exits 0 on some, e.g. a bad setting it ignores) is a failure
    MANPATH="$prefix/share/man" systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || true
    check "systemd-analyze verify accepts the installed unit, silently" "[[ ! -s $work/verify.log ]]"
    cat "$work/verify.log"
else
    check "systemd-analyze is installed (tools/install-deps.sh: systemd)" false
fi
check "aip.pc names the install prefix" \
    "[[ \$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=prefix aip) == $prefix && \$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir aip) == $libdir && \$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=includedir aip) == $prefix/include ]]"

export PKG_CONFIG_PATH="$pcdir"
check "example builds with pkg-config" "cc -std=c11 -Wall -Wextra -Werror $src/examples/embed.c \$(pkg-config --cflags --libs aip) -o $work/embed"
if ldconfig -p | grep -q 'libaip\.so\.0 '; then
    echo "     (a libaip.so.0 is installed system-wide: the private-prefix check is skipped)"
else
    check "without the library on the loader's path it does not start (a private prefix)" \
        "! $work/embed >/dev/null 2>&1"
fi
check "example runs against the installed library (LD_LIBRARY_PATH)" "LD_LIBRARY_PATH=$libdir $work/embed | grep -q 'round trip ok'"
check "example built with an rpath runs as is" \
    "cc -std=c11 $src/examples/embed.c \$(pkg-config --cflags --libs aip) -Wl,-rpath,\$(pkg-config --variable=libdir aip) -o $work/embed-rpath && $work/embed-rpath | grep -q 'round trip ok'"
mkdir -p "$work/cm"
cat >"$work/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.25)
project(embed C)
find_package(aip REQUIRED)
add_executable(embed $src/examples/embed.c)
target_link_libraries(embed PRIVATE aip::aip)
CM
check "example builds with find_package(aip)" "cmake -S $work/cm -B $work/cm/b -DCMAKE_PREFIX_PATH=$prefix >/dev/null && cmake --build $work/cm/b >/dev/null"
check "and runs (CMake's build RPATH names the prefix)" "$work/cm/b/embed | grep -q 'round trip ok'"
unset PKG_CONFIG_PATH

# --- 2. the Debian layout: prefix /usr, lib/<multiarch>, under a DESTDIR ------------------------
ma="$work/ma"
dest="$work/destdir"
if ! {
    cmake -S "$src" -B "$ma" -DCMAKE_INSTALL_PREFIX=/usr -DAIP_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_FLAGS_DEBUG=-O0 && cmake --build "$ma" -j2 && DESTDIR="$dest" cmake --install "$ma"
} >"$work/ma.log" 2>&1; then
    tail -n 30 "$work/ma.log"
    check "a /usr build installs with DESTDIR" false
fi
mlibdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$ma/CMakeCache.txt")
echo "     /usr build: CMAKE_INSTALL_LIBDIR=$mlibdir"
mpc="$dest/usr/$mlibdir/pkgconfig"
check "aip.pc under DESTDIR/usr/$mlibdir/pkgconfig" "[[ -f $mpc/aip.pc ]]"
check "aip.pc as installed at /usr: includedir /usr/include, libdir /usr/$mlibdir" \
    "[[ \$(PKG_CONFIG_PATH=$mpc pkg-config --variable=includedir aip) == /usr/include && \$(PKG_CONFIG_PATH=$mpc pkg-config --variable=libdir aip) == /usr/$mlibdir ]]"
check "nothing of DESTDIR and no lib/include or lib/lib in aip.pc" \
    "! grep -qE '$dest|lib/include|lib/lib' $mpc/aip.pc"
check "pkg-config --cflags --libs aip at /usr: only -laip of ours (system dirs dropped)" \
    "PKG_CONFIG_PATH=$mpc pkg-config --cflags --libs aip | grep -qE '(^| )-laip( |\$)' && ! PKG_CONFIG_PATH=$mpc pkg-config --cflags --libs aip | grep -qE -- '-L|-I/usr/include( |\$)'"
check "unit under DESTDIR names /usr/bin/constellation-agent" \
    "grep -q '^ExecStart=/usr/bin/constellation-agent ' $dest/usr/lib/systemd/system/constellation-agent.service"
check "example builds with pkg-config from the DESTDIR (PKG_CONFIG_SYSROOT_DIR)" \
    "PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$mpc cc -std=c11 -Wall -Wextra -Werror $src/examples/embed.c \$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$mpc pkg-config --cflags --libs aip) -o $work/embed-ma"
check "and runs" "LD_LIBRARY_PATH=$dest/usr/$mlibdir $work/embed-ma | grep -q 'round trip ok'"
mkdir -p "$work/cm2"
sed 's/project(embed C)/project(embed2 C)/' "$work/cm/CMakeLists.txt" >"$work/cm2/CMakeLists.txt"
check "example builds with find_package(aip) from DESTDIR/usr/$mlibdir/cmake" \
    "cmake -S $work/cm2 -B $work/cm2/b -DCMAKE_PREFIX_PATH=$dest/usr >/dev/null && cmake --build $work/cm2/b >/dev/null && grep -q '$dest/usr/$mlibdir/cmake/aip' $work/cm2/b/CMakeCache.txt"
check "and runs" "$work/cm2/b/embed | grep -q 'round trip ok'"

echo "install: $pass passed, $fail failed"
[[ "$fail" == 0 ]]
