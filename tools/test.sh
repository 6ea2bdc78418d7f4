#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build and test everything: the one command CI runs (.ci/run) and developers run locally.
#
# usage: tools/test.sh [--quick | --full] [--stage NAME]... [--no-deps]
#
# Stages, in order (each prints its name and wall time; a table closes the run):
#   deps        tools/install-deps.sh (installs only what is missing)
#   build       configure (if needed) + build in build/ (RelWithDebInfo, gcc)
#   ctest       ctest in build/, all labels but 'slow' and 'mcp'
#   mcp         ctest -L mcp in build/: the agent as an MCP host against real MCP servers
#               (npm's server-everything and server-filesystem from .deps/npm, a hostile one)
#   realparts   ctest -L realparts in build/: nginx (TLS reverse proxy: restart, reload, an idle
#               timeout below the heartbeat) and squid (CONNECT, proxy authentication) between
#               the agent and aip-test-server, each started by the test on 127.0.0.1 (~45 s)
#   bench       tests/integration/bench_smoke.sh: tools/bench/compare.sh with every client
#               (aip-bench raw/rr, Python, Node.js ws, pydantic), 1 round x 1 s, unpinned and
#               pinned; checks the output's shape and zero errors, no timing (≈ 30 s)
#   asan        build-asan/ with -DAIP_SANITIZE=address (ASan+UBSan), ctest as above
#               (sanitizer and fuzz builds: -O1 -g, asserts on)
#   tsan        build-tsan/ with clang -DAIP_SANITIZE=thread, ctest -L concurrency
#   soak        build/tests/test_soak under valgrind, the agent under valgrind too: links
#               dropped every 3 s with requests in flight, RSS sampled; 60 s (600 s with --full)
#   fuzz        build-fuzz/ with clang -DAIP_FUZZ=ON: the libFuzzer targets (fuzz_targets), bounded time
#   cppcheck    cppcheck over components/ tools/ main/ (compile database of build/)
#   clang-tidy  clang-tidy (.clang-tidy) over our .c files in build/compile_commands.json
#   format      clang-format --dry-run --Werror over the tracked .c/.h files
#   package     tools/package.sh (Debian packages into dist/, lintian: no error), then
#               tests/integration/package_test.sh: the packages extracted into a throwaway root
#               (AIP_PKG_DPKG=1: dpkg -i on this machine, then purged), the unit verified,
#               man pages, the conffile, --check-config, examples/embed.c with pkg-config
#   abi         tools/check-symbols.sh (libaip.so exports exactly what the installed headers
#               declare with AIP_API) and tools/abi-baseline.sh --check (abidiff of build/'s
#               libaip.so against abi/libaip.so.0.abi: any ABI change fails until the baseline
#               is written again on purpose)
#
# Options:
#   --quick       skip asan, tsan, soak and fuzz (local iteration)
#   --full        fuzz 300 s per target instead of 30 s, the soak 600 s instead of 60 s, and
#                 run ctest label 'slow' too
#   --stage NAME  run only this stage (repeatable; 'static' = cppcheck clang-tidy format).
#                 Stages that need build/ configure and build it incrementally first.
#   --no-deps     do not run tools/install-deps.sh
# Environment:
#   JOBS            parallel jobs for builds, ctest, fuzzers and linters (default: nproc)
#   AIP_FUZZ_TIME   seconds per fuzz target (overrides the 30/300 default)
#   AIP_SOAK_TIME   seconds of soak (overrides the 60/600 default)
#   AIP_PKG_DPKG    1: the package stage installs with dpkg -i and purges after (root, a
#                   throwaway machine), instead of extracting into a throwaway root
#
# Exit status: 0 when every stage run passed, 1 at the first failing stage, 2 usage error.
# Build dirs are reused (incremental). Logs of quiet steps go to build-logs/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

all_stages=(deps build ctest mcp realparts bench asan tsan soak fuzz cppcheck clang-tidy format package
    abi)
mode=default
no_deps=0
selected=()

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

while (($#)); do
    case "$1" in
    --quick) mode=quick ;;
    --full) mode=full ;;
    --no-deps) no_deps=1 ;;
    --stage | --stage=*)
        if [[ "$1" == --stage=* ]]; then
            name="${1#--stage=}"
        else
            (($# >= 2)) || {
                usage >&2
                exit 2
            }
            name="$2"
            shift
        fi
        if [[ "$name" == static ]]; then
            selected+=(cppcheck clang-tidy format)
        elif [[ " ${all_stages[*]} " == *" $name "* ]]; then
            selected+=("$name")
        else
            echo "test.sh: unknown stage '$name' (stages: ${all_stages[*]} static)" >&2
            exit 2
        fi
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "test.sh: unknown argument '$1'" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
done

JOBS="${JOBS:-$(nproc)}"
if [[ -n "${AIP_FUZZ_TIME:-}" ]]; then
    fuzz_time="$AIP_FUZZ_TIME"
elif [[ "$mode" == full ]]; then
    fuzz_time=300
else
    fuzz_time=30
fi
# The ctest stage leaves labels mcp and realparts to their own stages (the asan stage runs mcp
# too; realparts exercises the same library paths as the ctest stage's tests, with real
# proxies, and stays out of the sanitizer stages to keep the whole run short).
ctest_labels=(-LE 'slow|mcp|realparts')
[[ "$mode" == full ]] && ctest_labels=(-LE 'mcp|realparts')
san_labels=(-LE 'slow|realparts')
[[ "$mode" == full ]] && san_labels=(-LE realparts)

logdir="$root/build-logs"
mkdir -p "$logdir"
tmp_root="$(mktemp -d -t aip-test.XXXXXX)"
cleanup() {
    # Our own background jobs (fuzzers), by pid.
    local p
    for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp_root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ------------------------------------------------------------------------------------

say() { printf '%s\n' "$*"; }

# quiet LOG CMD...: run CMD with its output in LOG; print LOG's tail when it fails.
quiet() {
    local log="$1"
    shift
    local rc=0
    "$@" >"$log" 2>&1 || rc=$?
    ((rc == 0)) && return 0
    say "--- $* failed (exit $rc); last lines of $log:"
    tail -n 150 "$log"
    return "$rc"
}

# cmake_build DIR TAG [cmake args...] [-- targets...]: configure DIR (cheap when cached; always
# run so the options given here hold), then build it incrementally.
cmake_build() {
    local dir="$1" tag="$2"
    shift 2
    local cfg=() targets=()
    while (($#)) && [[ "$1" != -- ]]; do
        cfg+=("$1")
        shift
    done
    if (($#)); then
        shift
        targets=("$@")
    fi
    if [[ ! -f "$dir/CMakeCache.txt" ]]; then
        say "configure $dir (${cfg[*]:-defaults})"
    fi
    quiet "$logdir/$tag-configure.log" cmake -S "$root" -B "$dir" "${cfg[@]}"
    local tgt=()
    ((${#targets[@]})) && tgt=(--target "${targets[@]}")
    quiet "$logdir/$tag-build.log" cmake --build "$dir" -j "$JOBS" "${tgt[@]}"
}

main_build() {
    cmake_build build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
}

# Sanitizer and fuzz builds: -O1 -g as the sanitizer docs advise, and no NDEBUG, so assert()s
# stay on.
san_build_type=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O1 -g")

# ctest_count DIR ARGS...: number of tests ctest would run with ARGS.
ctest_count() {
    local dir="$1"
    shift
    ctest --test-dir "$dir" -N "$@" | sed -n 's/^Total Tests: *\([0-9]*\).*/\1/p'
}

# --- stages -------------------------------------------------------------------------------------

stage_deps() {
    tools/install-deps.sh
}

stage_build() {
    main_build
    say "built build/ ($(grep -c '"file"' build/compile_commands.json) compile commands)"
}

stage_ctest() {
    main_build
    ctest --test-dir build --output-on-failure --no-tests=error -j "$JOBS" "${ctest_labels[@]}"
}

stage_mcp() {
    main_build
    ctest --test-dir build --output-on-failure --no-tests=error -j "$JOBS" -L mcp
}

stage_bench() {
    main_build
    tests/integration/bench_smoke.sh "$root/build" "$root"
}

stage_realparts() {
    main_build
    ctest --test-dir build --output-on-failure --no-tests=error -j "$JOBS" -L realparts
}

stage_asan() {
    cmake_build build-asan asan "${san_build_type[@]}" -DAIP_SANITIZE=address
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure --no-tests=error -j "$JOBS" \
        "${san_labels[@]}"
}

stage_tsan() {
    # Configure first: ctest -N needs only the configured tree, so an empty label costs no build.
    quiet "$logdir/tsan-configure.log" cmake -S "$root" -B build-tsan \
        -DCMAKE_C_COMPILER=clang "${san_build_type[@]}" -DAIP_SANITIZE=thread
    local n
    n="$(ctest_count build-tsan -L concurrency "${san_labels[@]}")"
    if [[ "${n:-0}" -eq 0 ]]; then
        say "tsan: no test carries label 'concurrency' yet: nothing to run (pass)"
        return 0
    fi
    cmake_build build-tsan tsan -DCMAKE_C_COMPILER=clang "${san_build_type[@]}" \
        -DAIP_SANITIZE=thread
    # clang 14's TSan cannot map its shadow under high ASLR entropy (vm.mmap_rnd_bits > 28 on
    # newer kernels): run without ASLR there.
    local pre=()
    local bits
    bits="$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)"
    if ((bits > 28)) && setarch "$(uname -m)" -R true 2>/dev/null; then
        pre=(setarch "$(uname -m)" -R)
    fi
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        "${pre[@]}" ctest --test-dir build-tsan --output-on-failure --no-tests=error -j "$JOBS" \
        -L concurrency "${san_labels[@]}"
}

stage_soak() {
    main_build
    local secs="${AIP_SOAK_TIME:-60}"
    [[ -z "${AIP_SOAK_TIME:-}" && "$mode" == full ]] && secs=600
    # valgrind over this process (libaip's client side) and, inside it, over the agent; a
    # small freed-block quarantine keeps RSS meaningful (see tests/integration/test_soak.c)
    local rc=0
    valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
        --error-exitcode=99 --freelist-vol=1000000 --log-file="$logdir/soak-valgrind.log" \
        build/tests/test_soak --seconds "$secs" --valgrind-agent || rc=$?
    say "soak process: $(grep -h 'ERROR SUMMARY' "$logdir/soak-valgrind.log" | sed 's/^==[0-9]*== //')"
    grep -hE 'definitely lost|in use at exit' "$logdir/soak-valgrind.log" | sed 's/^==[0-9]*== /  /'
    ((rc == 99)) && say "soak: valgrind found errors in the soak process: $logdir/soak-valgrind.log"
    return "$rc"
}

fuzz_targets=(json_client json_server proto_client proto_server reassembler url)

# fuzz_one NAME SEEDDIR: run one target for fuzz_time seconds; writes its log and exit status.
fuzz_one() {
    local t="$1" seeds="$2"
    local work="$tmp_root/fuzz-work-$t" art="$root/build-fuzz/artifacts/$t"
    rm -rf "$work" "$art"
    mkdir -p "$work" "$art"
    local rc=0
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$fuzz_time" -rss_limit_mb=2048 \
        -timeout=30 -print_final_stats=1 -artifact_prefix="$art/" "$work" "$seeds" \
        >"$logdir/fuzz_$t.log" 2>&1 || rc=$?
    echo "$rc" >"$tmp_root/fuzz-$t.rc"
}

stage_fuzz() {
    # aip-codec from build/ turns the JSON vectors into protobuf seeds.
    cmake_build build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -- aip-codec
    # AIP_FUZZ=ON instruments the whole library for coverage (-fsanitize=fuzzer-no-link, set in
    # CMakeLists.txt); the harnesses link the libFuzzer runtime.
    cmake_build build-fuzz fuzz -DCMAKE_C_COMPILER=clang "${san_build_type[@]}" \
        -DAIP_FUZZ=ON -DAIP_SANITIZE=address -DAIP_TESTS=OFF \
        -- "${fuzz_targets[@]/#/fuzz_}"

    shopt -s nullglob
    local t enc env f seeds n conv_fail out
    for t in "${fuzz_targets[@]}"; do
        enc="${t%_*}"
        env="${t#*_}"
        seeds="$tmp_root/fuzz-seeds-$t"
        mkdir -p "$seeds"
        for f in tests/fuzz/corpus/"$t"/*; do
            [[ -f "$f" ]] && cp "$f" "$seeds/"
        done
        conv_fail=0
        for f in tests/vectors/valid/"$env"/*.json; do
            out="$seeds/vector-$(basename "$f" .json)"
            if [[ "$enc" == json ]]; then
                cp "$f" "$out.json"
            elif ! build/tools/aip-codec --from json --to proto --envelope "$env" \
                <"$f" >"$out.pb" 2>/dev/null; then
                rm -f "$out.pb"
                conv_fail=$((conv_fail + 1))
            fi
        done
        n=$(find "$seeds" -type f | wc -l)
        say "fuzz_$t: $n seed(s)$( ((conv_fail)) && echo ", $conv_fail vector(s) aip-codec refused")"
    done
    shopt -u nullglob

    say "running ${#fuzz_targets[@]} targets for ${fuzz_time}s each, $JOBS at a time"
    # Stop our fuzzers (by pid) if this stage is interrupted.
    trap 'for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done' EXIT
    for t in "${fuzz_targets[@]}"; do
        while (($(jobs -rp | wc -l) >= JOBS)); do
            wait -n || true
        done
        fuzz_one "$t" "$tmp_root/fuzz-seeds-$t" &
    done
    wait

    local failed=0 rc execs cov
    for t in "${fuzz_targets[@]}"; do
        rc="$(cat "$tmp_root/fuzz-$t.rc" 2>/dev/null || echo 99)"
        execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logdir/fuzz_$t.log" |
            tail -n 1)"
        cov="$(sed -n 's/.*\(cov: [0-9]* ft: [0-9]* corp: [0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' \
            "$logdir/fuzz_$t.log" | tail -n 1)"
        if [[ "$rc" -eq 0 ]]; then
            say "fuzz_$t: ok, ${execs:-?} execs, ${cov:-no stats}"
        else
            failed=1
            say "fuzz_$t: FAILED (exit $rc); first report in $logdir/fuzz_$t.log:"
            # The first sanitizer/libFuzzer report and its top frames, else the log's tail.
            if grep -qE 'runtime error:|==ERROR:|ERROR: libFuzzer' "$logdir/fuzz_$t.log"; then
                awk '/runtime error:|==ERROR:|ERROR: libFuzzer/ && !n { n = 1 }
                     n && n++ <= 25' "$logdir/fuzz_$t.log"
            else
                tail -n 40 "$logdir/fuzz_$t.log"
            fi
            for f in "$root/build-fuzz/artifacts/$t"/*; do
                [[ -e "$f" ]] || continue
                say "reproduce: build-fuzz/tests/fuzz/fuzz_$t ${f#"$root"/}"
            done
        fi
    done
    return "$failed"
}

stage_cppcheck() {
    main_build
    mkdir -p build/cppcheck
    local filters=() d
    for d in components tools main; do
        [[ -d "$d" ]] && filters+=("--file-filter=$d/*")
    done
    # cppcheck does not read system headers, so the version guard in the generated aip.pb-c.h
    # sees PROTOBUF_C_VERSION_NUMBER undefined and hits its #error: give it the real version.
    local pbc_ver pbc_num
    pbc_ver="$(pkg-config --modversion libprotobuf-c)"
    pbc_num="$(awk -F. '{ printf "%d%03d%03d", $1, $2, $3 }' <<<"$pbc_ver")"
    # --project takes the include paths and defines from the real build; the filters keep it to
    # our library, tools and daemon (not generated code, not tests).
    cppcheck --project=build/compile_commands.json "${filters[@]}" \
        -DPROTOBUF_C_VERSION_NUMBER="$pbc_num" \
        --cppcheck-build-dir=build/cppcheck -j "$JOBS" --quiet \
        --std=c11 --library=posix --enable=warning,performance,portability \
        --inline-suppr --suppressions-list=.cppcheck-suppressions \
        --error-exitcode=1 --template='{file}:{line}:{column}: {severity}: {message} [{id}]'
    say "cppcheck: clean"
}

stage_clang_tidy() {
    main_build
    # Our .c files from the compile database: everything under the source tree except generated
    # code in build*/ (aip.pb-c.c).
    local files=()
    local py=python3
    [[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
    mapfile -t files < <("$py" - "$root" <<'EOF'
import json, os, sys
root = sys.argv[1]
seen = set()
for e in json.load(open(os.path.join(root, "build", "compile_commands.json"))):
    f = os.path.normpath(os.path.join(e.get("directory", ""), e["file"]))
    rel = os.path.relpath(f, root)
    if rel.startswith("..") or rel.split(os.sep)[0].startswith("build") or not f.endswith(".c"):
        continue
    if f not in seen:
        seen.add(f)
        print(f)
EOF
    )
    say "clang-tidy: ${#files[@]} files, $JOBS at a time"
    local out="$tmp_root/tidy"
    mkdir -p "$out"
    # One clang-tidy per file; each file's report is printed whole (no interleaving).
    # The header filter of .clang-tidy, anchored at this checkout (regex-quoted).
    local qroot
    qroot="$(printf '%s' "$root" | sed 's/[][\.*^$+?(){}|]/\\&/g')"
    local hf="^${qroot}/(components/.*|include/aip/.*|tools/.*|tests/.*|main/[^/]*\\.h)$"
    local rc=0
    # shellcheck disable=SC2016 # the script is for the inner bash, expanded there
    printf '%s\0' "${files[@]}" | xargs -0 -n 1 -P "$JOBS" bash -c '
        log="$0/$(echo "$2" | tr / _).log"
        clang-tidy -p build --quiet --warnings-as-errors="*" --header-filter="$1" \
            --extra-arg=-Wno-unknown-warning-option "$2" >"$log" 2>&1 || {
            echo "--- $2"; grep -v "warnings\? generated\.$" "$log"; exit 1; }
    ' "$out" "$hf" || rc=$?
    if ((rc)); then
        say "clang-tidy: findings above (checks and their reasons: .clang-tidy)"
        return 1
    fi
    say "clang-tidy: clean"
}

stage_format() {
    local files=() f
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked plus new (not ignored) files, so a file not yet added is checked too.
        while IFS= read -r -d '' f; do
            [[ -f "$f" ]] && files+=("$f")
        done < <(git ls-files -z --cached --others --exclude-standard -- '*.c' '*.h')
    else
        mapfile -t files < <(find components include main tools tests -name '*.[ch]' 2>/dev/null)
    fi
    if ((${#files[@]} == 0)); then
        say "format: no .c/.h files found"
        return 1
    fi
    if ! clang-format --dry-run --Werror "${files[@]}" >/dev/null 2>&1; then
        # Slower per-file pass only to name the culprits.
        local bad=()
        for f in "${files[@]}"; do
            clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
        done
        if ((${#bad[@]} == 0)); then # failed, but not on one file: show why
            clang-format --dry-run --Werror "${files[@]}"
            return 1
        fi
        say "format: ${#bad[@]} of ${#files[@]} files differ from .clang-format:"
        for f in "${bad[@]}"; do
            say "  $f ($(clang-format "$f" | diff "$f" - | grep -c '^<') lines to change)"
        done
        say "first differences (clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' |
            head -n 1)):"
        clang-format "${bad[0]}" | diff -u --label "${bad[0]}" --label formatted "${bad[0]}" - |
            head -n 40 || true
        say "fix: clang-format -i ${bad[*]}"
        return 1
    fi
    say "format: ${#files[@]} files clean"
}

stage_package() {
    tools/package.sh
    local how=()
    [[ "${AIP_PKG_DPKG:-0}" == 1 ]] && how=(--dpkg)
    tests/integration/package_test.sh dist "$root" "${how[@]}"
}

stage_abi() {
    main_build
    tools/check-symbols.sh "$root/build"
    tools/abi-baseline.sh --check "$root/build"
}

# --- driver -------------------------------------------------------------------------------------

run=()
if ((${#selected[@]})); then
    ((no_deps)) || run=(deps)
    for s in "${all_stages[@]}"; do
        [[ "$s" == deps ]] && continue
        [[ " ${selected[*]} " == *" $s "* ]] && run+=("$s")
    done
    [[ " ${selected[*]} " == *" deps "* && ${#run[@]} -eq 0 ]] && run=(deps)
else
    for s in "${all_stages[@]}"; do
        [[ "$s" == deps ]] && ((no_deps)) && continue
        [[ "$mode" == quick && " asan tsan soak fuzz " == *" $s "* ]] && continue
        run+=("$s")
    done
fi

declare -A result=() elapsed=()
fmt_time() {
    awk -v s="$1" 'BEGIN { if (s >= 60) printf "%dm%04.1fs", int(s / 60), s - 60 * int(s / 60);
                          else printf "%.1fs", s }'
}
table() {
    local s passed=0 failed=0 skipped=0
    say ""
    say "stage        result    time"
    for s in "${run[@]}"; do
        printf '%-12s %-8s %8s\n' "$s" "${result[$s]:-not run}" \
            "$( [[ -n "${elapsed[$s]:-}" ]] && fmt_time "${elapsed[$s]}")"
        case "${result[$s]:-}" in
        ok) passed=$((passed + 1)) ;;
        FAILED) failed=$((failed + 1)) ;;
        *) skipped=$((skipped + 1)) ;;
        esac
    done
    printf '%-12s %-8s %8s\n' total "" "$(fmt_time "$(awk -v a="$t_all" -v b="$EPOCHREALTIME" \
        'BEGIN { print b - a }')")"
    if ((skipped)); then
        say "stages: $passed passed, $failed failed, $skipped skipped"
    else
        say "stages: $passed passed, $failed failed"
    fi
}

say "tools/test.sh: mode $mode, JOBS=$JOBS, stages: ${run[*]}"
t_all="$EPOCHREALTIME"
for s in "${run[@]}"; do
    say ""
    say "==> $s"
    t0="$EPOCHREALTIME"
    fn="stage_${s//-/_}"
    # A subshell outside any 'if' keeps set -e in force inside the stage.
    set +e
    (
        set -euo pipefail
        "$fn"
    )
    rc=$?
    set -e
    elapsed[$s]="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')"
    say "<== $s: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)") in $(fmt_time "${elapsed[$s]}")"
    if ((rc)); then
        result[$s]=FAILED
        table
        exit 1
    fi
    result[$s]=ok
done
table
