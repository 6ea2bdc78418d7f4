#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Debian packages as an operator and an embedder meet them (tools/test.sh --stage package
# runs it after tools/package.sh; not a ctest).
#
# usage: package_test.sh DIST_DIR SOURCE_DIR [--dpkg]
#
# Default: the packages are extracted (dpkg -x) into a throwaway root, so the test installs
# nothing on the machine, needs no dpkg lock and can run beside other builds; the maintainer
# scripts are not run. The root gets a copy of the host's systemd units and /bin/kill, so
# `systemd-analyze verify --root` resolves the unit's ExecStart and dependencies inside it.
# --dpkg: `dpkg -i` on this machine (root only; for a throwaway CI machine), the same checks on
# the real /, then `dpkg --purge` (also when a check fails or the script is interrupted).
#
# Checks: dependencies resolve (apt-get -s); /etc/constellation-agent/agent.json is a conffile;
# systemd-analyze verify accepts the installed unit without a message, and rejects one whose
# ExecStart is missing (the check can fail); ExecStart is /usr/bin; man constellation-agent and
# man aipctl open; the agent's --check-config names what is missing in the shipped config and
# accepts it with a server; examples/embed.c builds with nothing but
# `pkg-config --cflags --libs aip` and with find_package(aip), and runs.
set -euo pipefail
dist="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
mode=extract
[[ "${3:-}" == --dpkg ]] && mode=dpkg
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
work=$(mktemp -d /tmp/aip-pkgtest.XXXXXX)
pkgs=(libaip0 libaip-dev constellation-agent aip-tools)
debs=()
for p in "${pkgs[@]}"; do
    f=""
    for g in "$dist/${p}"_*.deb; do [[ -f "$g" ]] && f="$g"; done
    [[ -n "$f" ]] || {
        echo "FAIL no ${p}_*.deb in $dist"
        exit 1
    }
    debs+=("$f")
done
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

cleanup() {
    if [[ "$mode" == dpkg ]]; then
        dpkg --purge "${pkgs[@]}" >"$work/purge.log" 2>&1 || cat "$work/purge.log"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the package files themselves ---------------------------------------------------------------
check "dependencies resolve (apt-get -s install)" \
    "apt-get -s -q install ${debs[*]} >$work/apt.log 2>&1 || { cat $work/apt.log; false; }"
agent_deb=${debs[2]}
dpkg-deb --ctrl-tarfile "$agent_deb" | tar -xOf - ./conffiles >"$work/conffiles" 2>/dev/null || true
check "/etc/constellation-agent/agent.json is a conffile" \
    "grep -qx /etc/constellation-agent/agent.json $work/conffiles"
check "no token file shipped (the operator's secret)" \
    "! dpkg-deb -c $agent_deb | grep -q 'etc/constellation-agent/token'"
dpkg-deb --ctrl-tarfile "$agent_deb" | tar -xOf - ./postinst >"$work/postinst"
check "postinst enables the unit only if it was enabled before (dh_installsystemd --no-enable)" \
    "grep -q \"deb-systemd-helper debian-installed 'constellation-agent.service'\" $work/postinst"

# --- install ------------------------------------------------------------------------------------
if [[ "$mode" == dpkg ]]; then
    [[ "$(id -u)" == 0 ]] || {
        echo "FAIL --dpkg needs root"
        exit 1
    }
    root=""
    check "dpkg -i installs the four packages" "dpkg -i ${debs[*]} >$work/dpkg.log 2>&1 || { cat $work/dpkg.log; false; }"
    verify=(systemd-analyze verify constellation-agent.service)
    manenv=()
    pcenv=()
    ldenv=()
    cmprefix=()
else
    root="$work/root"
    mkdir -p "$root"
    for f in "${debs[@]}"; do dpkg -x "$f" "$root"; done
    # what the unit needs from the host: its dependencies' units and /bin/kill (ExecReload)
    cp -an /lib/systemd/system/. "$root/lib/systemd/system/"
    mkdir -p "$root/bin"
    cp "$(type -P kill)" "$root/bin/kill"
    verify=(systemd-analyze verify "--root=$root" constellation-agent.service)
    manenv=(MANPATH="$root/usr/share/man")
    pcenv=(PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_PATH="$root/usr/lib/$arch/pkgconfig")
    ldenv=(LD_LIBRARY_PATH="$root/usr/lib/$arch")
    cmprefix=(-DCMAKE_PREFIX_PATH="$root/usr")
fi
unit="$root/lib/systemd/system/constellation-agent.service"
agent="$root/usr/bin/constellation-agent"
conf="$root/etc/constellation-agent/agent.json"

# --- the unit -----------------------------------------------------------------------------------
if [[ "$mode" == dpkg ]]; then
    check "installing did not enable the unit (the server is not set yet)" \
        "[[ ! -e /etc/systemd/system/multi-user.target.wants/constellation-agent.service ]]"
fi
check "unit installed in /lib/systemd/system, ExecStart=/usr/bin/constellation-agent" \
    "grep -q '^ExecStart=/usr/bin/constellation-agent ' $unit"
rc=0
env "${manenv[@]}" "${verify[@]}" >"$work/verify.log" 2>&1 || rc=$?
check "systemd-analyze verify accepts the installed unit (exit 0, no message)" \
    "[[ $rc == 0 && ! -s $work/verify.log ]]"
cat "$work/verify.log"
if [[ "$mode" == extract ]]; then
    # the same check on a unit that points at a missing program must fail
    sed 's#^ExecStart=/usr/bin/#ExecStart=/usr/local/bin/#' "$unit" \
        >"$root/lib/systemd/system/aip-broken-test.service"
    env "${manenv[@]}" systemd-analyze verify "--root=$root" aip-broken-test.service \
        >"$work/verify-broken.log" 2>&1 || true
    check "... and rejects a unit whose ExecStart does not exist in the root" \
        "grep -q 'is not executable' $work/verify-broken.log"
    rm -f "$root/lib/systemd/system/aip-broken-test.service"
fi

# --- man pages ----------------------------------------------------------------------------------
for page in constellation-agent aipctl aip-test-server; do
    check "man $page opens (from the package)" \
        "env ${manenv[*]} man -w $page | grep -q '^$root/usr/share/man/' && env ${manenv[*]} MANWIDTH=80 man -P cat $page 2>/dev/null | grep -q '^NAME'"
done

# --- the agent: --check-config explains ----------------------------------------------------------
r=0
"$agent" --config "$conf" --check-config >"$work/cc.out" 2>"$work/cc.err" || r=$?
check "agent --check-config on the shipped config: exit 78, names \"server\" and the file" \
    "[[ $r == 78 ]] && grep -q 'no server' $work/cc.err && grep -qF '\"server\" in $conf' $work/cc.err"
sed 's/^/     /' "$work/cc.err"
: >"$work/empty-token"
chmod 600 "$work/empty-token"
r=0
AIP_SERVER=wss://orchestrator.example.net/ws "$agent" --config "$conf" --token-file "$work/empty-token" \
    --check-config >"$work/cc2.out" 2>"$work/cc2.err" || r=$?
check "with a server (AIP_SERVER) and the unit's empty fallback token: valid, no token" \
    "[[ $r == 0 ]] && grep -q '\"token\":null' $work/cc2.out && grep -q 'connecting without a token' $work/cc2.err"

# --- embedding: pkg-config alone, find_package(aip) ---------------------------------------------
example="$root/usr/share/doc/libaip-dev/examples/embed.c"
check "examples/embed.c shipped in libaip-dev" "cmp -s $example $src/examples/embed.c"
flags=$(env "${pcenv[@]}" pkg-config --cflags --libs aip)
echo "     pkg-config --cflags --libs aip: $flags"
check "aip.pc: libdir /usr/lib/$arch, includedir /usr/include (as installed)" \
    "[[ \$(PKG_CONFIG_PATH=$root/usr/lib/$arch/pkgconfig pkg-config --variable=libdir aip) == /usr/lib/$arch && \$(PKG_CONFIG_PATH=$root/usr/lib/$arch/pkgconfig pkg-config --variable=includedir aip) == /usr/include ]]"
check "embed.c builds with nothing but pkg-config --cflags --libs aip" \
    "cc -std=c11 -Wall -Wextra -Werror $example $flags -o $work/embed"
check "and runs" "env ${ldenv[*]} $work/embed | grep -q 'round trip ok'"
mkdir -p "$work/cm"
cat >"$work/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.25)
project(embed C)
find_package(aip REQUIRED)
add_executable(embed $example)
target_link_libraries(embed PRIVATE aip::aip)
CM
check "embed.c builds with find_package(aip)" \
    "cmake -S $work/cm -B $work/cm/b ${cmprefix[*]} >$work/cm.log 2>&1 && cmake --build $work/cm/b >>$work/cm.log 2>&1 || { tail -20 $work/cm.log; false; }"
check "and runs" "env ${ldenv[*]} $work/cm/b/embed | grep -q 'round trip ok'"

echo "package ($mode): $pass passed, $fail failed"
[[ "$fail" == 0 ]]
