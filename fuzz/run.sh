#!/usr/bin/env bash
# run.sh - builds the libFuzzer targets (clang, ASan+UBSan, in build-fuzz/) and runs each one for
# a bounded time on its seed corpus, then prints one summary line per target.
#
#   bash fuzz/run.sh                 every target, 30 s each
#   bash fuzz/run.sh crl url         only these targets
#   FUZZ_TIME=300 bash fuzz/run.sh   longer runs;  FUZZ_RUNS=10000: stop after that many inputs
#   FUZZ_FLAGS="-jobs=2" ...         extra libFuzzer flags;  BUILD=dir: another build directory
#   FUZZ_MERGE=1 bash fuzz/run.sh    then fold what raised coverage into fuzz/corpus/<name>
#                                    (libFuzzer -merge=1: only inputs that add coverage, the
#                                    smallest of equals), to be reviewed and committed
#
# The seed corpus (fuzz/corpus/<name>/) is only read; inputs the fuzzer finds go to
# $BUILD/corpus/<name>/, crashes and leaks to $BUILD/artifacts/. Exit status 1 when any target
# found something (copy reproducers worth keeping to fuzz/crashes/, see fuzz/README.md).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=${BUILD:-$src/build-fuzz}
time_s=${FUZZ_TIME:-30}
runs=${FUZZ_RUNS:--1}
cc=${CC:-clang}
case $cc in *clang*) ;; *) echo "run.sh: libFuzzer needs clang (CC=$cc)" >&2; exit 2 ;; esac

if [ $# -gt 0 ]; then
    names=("$@")
else
    names=()
    for f in "$here"/fuzz_*.c; do
        n=${f##*/fuzz_}
        names+=("${n%.c}")
    done
fi
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done

echo "== configuring $build (CC=$cc, FLEETSCAN_FUZZ=ON)"
mkdir -p "$build"
gen=()
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && gen=(-G Ninja)
CC=$cc cmake -S "$src" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFLEETSCAN_FUZZ=ON >"$build/fuzz-configure.log" 2>&1 ||
    { cat "$build/fuzz-configure.log"; exit 2; }
echo "== building ${targets[*]}"
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >"$build/fuzz-build.log" 2>&1 ||
    { grep -E "error|FAILED" "$build/fuzz-build.log" | head -40; exit 2; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export TMPDIR=$build/tmp  # fuzz_config's scratch directories (left behind by a crash)
mkdir -p "$TMPDIR"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/artifacts"
status=0
summary=()
for n in "${names[@]}"; do
    seeds=$here/corpus/$n
    work=$build/corpus/$n
    log=$build/fuzz_$n.log
    mkdir -p "$work"
    dict=()
    [ -f "$here/$n.dict" ] && dict=(-dict="$here/$n.dict")
    start=$(date +%s)
    echo "== fuzz_$n: ${time_s}s, seeds $(find "$seeds" -type f | wc -l) in fuzz/corpus/$n, log $log"
    "$build/fuzz_$n" -max_total_time="$time_s" -runs="$runs" -timeout=10 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$n-" "${dict[@]}" ${FUZZ_FLAGS:-} \
        "$work" "$seeds" >"$log" 2>&1
    rc=$?
    touch -d @$((start)) "$build/artifacts/.since"  # this run's reproducers are newer than this
    if [ $rc -eq 0 ] && [ "${FUZZ_MERGE:-0}" = 1 ]; then
        before=$(find "$seeds" -type f | wc -l)
        "$build/fuzz_$n" -merge=1 -max_len=16384 "$seeds" "$work" >"$build/fuzz_$n.merge.log" 2>&1 ||
            echo "   merge into fuzz/corpus/$n failed: see $build/fuzz_$n.merge.log"
        echo "   fuzz/corpus/$n: $before -> $(find "$seeds" -type f | wc -l) inputs (review, then commit)"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        line="ok      fuzz_$n  ${execs:-?} inputs, ${cov:-cov: ?}, corpus $(find "$work" -type f | wc -l)"
    else
        status=1
        arts=$(find "$build/artifacts" -name "$n-*" -newer "$build/artifacts/.since" | head -3 |
            tr '\n' ' ')
        what=$(grep -m1 -E "runtime error|^==[0-9]+== ?ERROR" "$log")
        line="FOUND   fuzz_$n  ${what:-exit status $rc, see $log}"$'\n'"        reproduce: $build/fuzz_$n ${arts:-<artifact>}"
        grep -A25 -m1 -E "^==[0-9]+== ?ERROR|runtime error" "$log" | sed 's/^/        | /'
    fi
    echo "$line"
    summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
