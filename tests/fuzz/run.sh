#!/usr/bin/env bash
# Runs a fuzz target over a corpus directory of tests/corpus:
#   run.sh corpus BIN DIR        every file of DIR once (the regression run);
#   run.sh fuzz BIN DIR SECONDS  coverage-guided fuzzing for SECONDS from a copy
#                                of DIR (the source tree is not written); a crash
#                                is kept as DIR/../found/<target>-crash-* to commit.
set -euo pipefail
mode=$1 bin=$2 dir=$3 secs=${4:-30}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
[ -x "$bin" ] || { echo "no fuzz target $bin: build the sanitizer tree (tools/setup.sh)"; exit 1; }
files=("$dir"/*)
if [ "$mode" = corpus ]; then
  "$bin" -rss_limit_mb=4096 "${files[@]}" 2>&1 | tail -3
  for d in /dev/shm/dtrain-fuzz-*; do [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null && rm -rf "$d"; done
  echo "$(basename "$bin"): ${#files[@]} corpus files of $dir ran clean"
  exit 0
fi
work=$(mktemp -d)
# The scratch directories of fuzz targets whose process has ended (fuzz_util.h) go too.
cleanup() {
  rm -rf "$work"
  for d in /dev/shm/dtrain-fuzz-*; do
    [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null && rm -rf "$d"
  done
  return 0
}
trap cleanup EXIT
mkdir "$work/corpus" "$work/artifacts"
cp "${files[@]}" "$work/corpus/"
set +e
"$bin" -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
rc=$?
set -e
grep -E "^(stat::number_of_executed_units|stat::new_units_added)|cov:.*DONE" "$work/log" | tail -3 || true
if [ $rc -ne 0 ] || ls "$work/artifacts"/* >/dev/null 2>&1; then
  grep -E "ERROR|SUMMARY|runtime error" "$work/log" | head -5
  found="$dir/../found"
  mkdir -p "$found"
  for f in "$work/artifacts"/*; do
    [ -e "$f" ] && cp "$f" "$found/$(basename "$bin")-$(basename "$f")" && echo "kept $found/$(basename "$bin")-$(basename "$f")"
  done
  echo "$(basename "$bin"): FAILED after fuzzing (exit $rc)"
  exit 1
fi
echo "$(basename "$bin"): $secs s of fuzzing, no crash"
