#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install the Debian packages needed to build and test libaip + constellation-agent, the
# MCP servers the MCP tests run and the `ws` client of tools/bench/node_ws_rr.js (npm packages,
# pinned, into .deps/npm, which git ignores).
#
# Idempotent: asks dpkg-query what is installed and calls apt-get (update + install) only when
# something is missing, so a second run costs well under a second and needs no network.
#
# usage: tools/install-deps.sh [--check] [PACKAGE...]
#   PACKAGE...        extra Debian packages to install as well (e.g. chromium chromium-driver)
#   --check           install nothing: list what is missing and exit 1 if anything is
#   --no-npm          skip the npm packages (the MCP tests and the bench stage then fail,
#                     naming this script)
#   AIP_EXTRA_PACKAGES  environment variable, more extra packages (space separated)
#   AIP_CLANG_VERSION   clang major version whose libFuzzer/sanitizer runtime to install
#                       (default: the installed clang's, else 14 as on Debian 12)
#
# Runs apt-get as root, or through sudo when not root. Output is quiet; apt's log is printed
# only when it fails.
set -euo pipefail

check_only=0
no_npm=0
extra=()
for arg in "$@"; do
    case "$arg" in
    --check) check_only=1 ;;
    --no-npm) no_npm=1 ;;
    -h | --help)
        awk 'NR > 1 && /SPDX-License-Identifier/ { next } NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    -*)
        echo "install-deps: unknown option $arg" >&2
        exit 2
        ;;
    *) extra+=("$arg") ;;
    esac
done
# shellcheck disable=SC2206 # word splitting of the env list is intended
extra+=(${AIP_EXTRA_PACKAGES:-})

clang_major="${AIP_CLANG_VERSION:-}"
if [[ -z "$clang_major" ]] && command -v clang >/dev/null 2>&1; then
    clang_major="$(clang -dumpversion 2>/dev/null | cut -d. -f1)"
fi
clang_major="${clang_major:-14}"

# What each package is for (README.md "Dependencies" says the same).
packages=(
    build-essential          # gcc, make, libc headers: the default compiler
    clang                    # libFuzzer targets and the TSan build
    "libclang-rt-${clang_major}-dev" # clang's sanitizer + libFuzzer runtime (-fsanitize=fuzzer)
    cmake                    # the build (>= 3.25)
    pkg-config               # finds libwebsockets, protobuf-c, cJSON, cmocka
    git                      # tools/test.sh lists tracked sources for clang-format
    libwebsockets-dev        # the WebSocket transport (pulls libssl-dev for wss://)
    libssl-dev               # TLS (AIP_TLS)
    libprotobuf-c-dev        # protobuf-c runtime for the binary encoding
    protobuf-c-compiler      # protoc-c: generates build/gen/aip.pb-c.[ch] from proto/aip.proto
    libcjson-dev             # the JSON encoding
    libcmocka-dev            # unit tests
    cppcheck                 # static analysis
    clang-tidy               # static analysis
    clang-format             # formatting check
    python3                  # /usr/bin/python3 for test helpers
    python3-websockets       # reference WebSocket peer used by integration tests
    chromium                 # headless browser for the dashboard test (driven over CDP)
    valgrind                 # leak/soak checks
    openssl                  # makes throwaway TLS certificates for wss:// tests
    libcurl4-openssl-dev     # the MCP host's streamable HTTP client (components/mcp)
    iproute2                 # `ip link set lo up` in the MCP test's own network namespace
    dpkg-dev                 # dpkg-buildpackage: tools/package.sh builds the Debian packages
    debhelper                # dh (compat 13) in packaging/debian/rules
    lintian                  # checks the packages (the package stage fails on an error)
    man-db                   # man: the man pages' checks; systemd-analyze verify follows man: links
    systemd                  # systemd-analyze verify on the installed unit
    nginx                    # realparts stage: TLS-terminating reverse proxy (test's own config)
    squid                    # realparts stage: HTTP CONNECT proxy, basic_ncsa_auth for proxy auth
    abigail-tools            # abi stage: abidw/abidiff hold libaip's ABI to abi/libaip.so.0.abi
)
# Packages whose Debian install starts a system service the tests never use: nginx on
# 0.0.0.0:80, squid on port 3128 of every interface. The realparts tests run their own nginx
# and squid in the foreground on free ports of 127.0.0.1, so the services only open ports to
# the network, and nginx's install fails outright when port 80 is taken (its postinst's start
# fails). They are installed with services kept from starting (a policy-rc.d answering 101,
# as Debian's container images ship, only when none exists), then disabled at boot.
no_start=(nginx squid)
# Node.js and npm run the MCP servers of the tests; a machine that has a node already (e.g.
# from another source) keeps it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi
packages+=("${extra[@]}")

missing=()
for p in "${packages[@]}"; do
    [[ -n "$p" ]] || continue
    status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    if [[ "$status" != "installed" ]]; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#packages[@]} packages present"
else
    if ((check_only)); then
        echo "install-deps: missing: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    if [[ "$(id -u)" -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo -n) # never prompt: CI has no stdin
    else
        echo "install-deps: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    log="$(mktemp -t aip-install-deps.XXXXXX)"
    trap 'rm -f "$log"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-deps: apt-get update failed" >&2
        exit 1
    fi
    quiet_units=()
    for p in "${missing[@]}"; do
        [[ " ${no_start[*]} " == *" $p "* ]] && quiet_units+=("$p")
    done
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if ((${#quiet_units[@]})) && [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# tools/install-deps.sh: no service starts during this install\nexit 101\n' |
            "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        own_policy=1
        trap 'rm -f "$log"; "${sudo[@]}" rm -f "$policy"' EXIT
    fi
    rc=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y \
        --no-install-recommends "${missing[@]}" >"$log" 2>&1 || rc=$?
    ((own_policy)) && "${sudo[@]}" rm -f "$policy"
    if ((rc)); then
        cat "$log" >&2
        echo "install-deps: apt-get install failed" >&2
        exit 1
    fi
    if ((${#quiet_units[@]})) && command -v systemctl >/dev/null 2>&1; then
        "${sudo[@]}" systemctl disable "${quiet_units[@]/%/.service}" >/dev/null 2>&1 || true
        echo "install-deps: ${quiet_units[*]} installed with their services not started" \
            "and disabled (the tests run their own)"
    fi
    echo "install-deps: installed ${#missing[@]} package(s)"
fi

# libFuzzer must actually link: clang without its runtime package fails only at link time.
if ((!check_only)); then
    tmp="$(mktemp -d -t aip-fuzzcheck.XXXXXX)"
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$tmp/f.c"
    if ! clang -fsanitize=fuzzer,address "$tmp/f.c" -o "$tmp/f" >"$tmp/log" 2>&1; then
        cat "$tmp/log" >&2
        rm -rf "$tmp"
        echo "install-deps: 'clang -fsanitize=fuzzer' does not link" \
            "(is libclang-rt-${clang_major}-dev right for $(clang --version | head -1)?)" >&2
        exit 1
    fi
    rm -rf "$tmp"
fi

# The MCP servers of the MCP tests (tests/integration/mcp_test.py) and the WebSocket library of
# the Node.js peer client in tools/bench/compare.sh, pinned. No lockfile is written; the versions
# below are the pin. Skipped when present at these versions.
npm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.deps/npm"
npm_pkgs=(
    "@modelcontextprotocol/server-everything@2026.8.31" # stdio + streamable HTTP reference
    "@modelcontextprotocol/server-filesystem@2026.8.31" # read_text_file under a root
    "ws@8.23.1"                                         # tools/bench/node_ws_rr.js (pure JS)
)
if ((!no_npm)); then
    npm_missing=()
    for spec in "${npm_pkgs[@]}"; do
        name="${spec%@*}"
        want="${spec##*@}"
        have="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' \
            "$npm_dir/node_modules/$name/package.json" 2>/dev/null || true)"
        [[ "$have" == "$want" ]] || npm_missing+=("$spec")
    done
    if ((${#npm_missing[@]} == 0)); then
        echo "install-deps: npm packages present (${#npm_pkgs[@]})"
    elif ((check_only)); then
        echo "install-deps: missing npm packages: ${npm_missing[*]}" >&2
        exit 1
    else
        mkdir -p "$npm_dir"
        [[ -f "$npm_dir/package.json" ]] || echo '{"private": true}' >"$npm_dir/package.json"
        log="$(mktemp -t aip-install-npm.XXXXXX)"
        if ! (cd "$npm_dir" && npm install --no-audit --no-fund --no-package-lock \
            --loglevel=error "${npm_pkgs[@]}") >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            echo "install-deps: npm install failed" >&2
            exit 1
        fi
        rm -f "$log"
        echo "install-deps: installed npm ${npm_missing[*]} into .deps/npm"
    fi
fi
