#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build the Debian packages into dist/ (dpkg-buildpackage with packaging/debian/), then lintian.
#
# usage: tools/package.sh [--out DIR] [--no-lintian]
#   --out DIR      where the packages go (default: dist/)
#   --no-lintian   do not run lintian on them
# Environment: JOBS (parallel build jobs, default nproc).
#
# Packages (packaging/debian/control):
#   constellation-agent   the daemon, its systemd unit (not enabled on installation), its man
#                         page and /etc/constellation-agent/agent.json (a conffile, no server)
#   libaip0               the shared library
#   libaip-dev            headers, libaip.a, aip.pc, the CMake package, examples/embed.c
#   aip-tools             aipctl, aip-test-server, aip-codec, aip-bench and their man pages
# plus their -dbgsym packages (.ddeb, detached debug symbols).
#
# The build runs in a copy of the tree (build-pkg/aip-VERSION/: the tracked and new, not ignored
# files as they are in the working tree, with packaging/debian/ as debian/), so dpkg-buildpackage
# writes nothing into the tree or beside it. The Debian version must match project(VERSION) in
# CMakeLists.txt. lintian errors fail the script; warnings and infos are printed.
# Exit: 0 built (and lintian found no error), 1 failure, 2 usage.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/dist"
lintian=1
while (($#)); do
    case "$1" in
    --out)
        (($# >= 2)) || {
            echo "package.sh: --out needs a directory" >&2
            exit 2
        }
        mkdir -p "$2"
        out="$(cd "$2" && pwd)"
        shift
        ;;
    --no-lintian) lintian=0 ;;
    -h | --help)
        awk 'NR > 1 && /SPDX-License-Identifier/ { next } NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "package.sh: unknown argument '$1'" >&2
        exit 2
        ;;
    esac
    shift
done
JOBS="${JOBS:-$(nproc)}"

need=(dpkg-buildpackage dpkg-parsechangelog dh)
((lintian)) && need+=(lintian)
for t in "${need[@]}"; do
    command -v "$t" >/dev/null || {
        echo "package.sh: $t is missing (tools/install-deps.sh installs it)" >&2
        exit 1
    }
done

version="$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)"
upstream="$(sed -n 's/^project(aip VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
if [[ "${version%%-*}" != "$upstream" ]]; then
    echo "package.sh: packaging/debian/changelog is at $version but CMakeLists.txt at $upstream:" \
        "add a changelog entry (dch -v $upstream)" >&2
    exit 1
fi

stage="$root/build-pkg"
src="$stage/aip-$version"
rm -rf "$stage"
mkdir -p "$src" "$out"
log="$stage/build.log"
# The tree as it is now (tracked and new files, not the ignored build dirs), debian/ on top.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
        tar --null -T - -cf - | tar -xf - -C "$src"
else
    tar --exclude='./build*' --exclude=./dist --exclude=./.git -cf - . | tar -xf - -C "$src"
fi
cp -a packaging/debian "$src/debian"

echo "package.sh: building aip $version in ${stage#"$root"/}/ (log: ${log#"$root"/})"
t0=$SECONDS
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$JOBS ${DEB_BUILD_OPTIONS:-}" \
    dpkg-buildpackage -b -us -uc) >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "package.sh: dpkg-buildpackage failed (full log: $log)" >&2
    exit 1
fi
grep -E '^dh_missing: warning' "$log" || true

shopt -s nullglob
files=("$stage"/*.deb "$stage"/*.ddeb "$stage"/*.changes "$stage"/*.buildinfo)
shopt -u nullglob
# only this version's packages stay in dist/
rm -f "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo
mv "${files[@]}" "$out/"
echo "package.sh: built in $((SECONDS - t0)) s, in ${out#"$root"/}/:"
for f in "$out"/*.deb; do
    printf '  %-44s %8s bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done

if ((lintian)); then
    changes=("$out"/*.changes)
    llog="$stage/lintian.log"
    rc=0
    # --fail-on error: warnings are reported, not fatal
    lintian --fail-on error --info --display-info "${changes[0]}" >"$llog" 2>&1 || rc=$?
    e=$(grep -c '^E: ' "$llog" || true)
    w=$(grep -c '^W: ' "$llog" || true)
    i=$(grep -c '^I: ' "$llog" || true)
    grep -E '^[EW]: ' "$llog" || true
    echo "package.sh: lintian: $e error(s), $w warning(s), $i info(s) (all: ${llog#"$root"/})"
    if ((rc)) || ((e)); then
        echo "package.sh: lintian failed" >&2
        exit 1
    fi
fi
