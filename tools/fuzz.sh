#!/usr/bin/env bash
# Longer fuzzing than CI's: tools/fuzz.sh [SECONDS] [TARGET...]
# Runs each libFuzzer target of build/sanitize (tools/setup.sh builds it;
# targets: config tokens idx checkpoint tokenizer, default all) for SECONDS (default
# 600) from its corpus in tests/corpus/<target>; a crash is kept under
# tests/corpus/found/ (then: reproduce with the target and the file, fix, and
# move the file into tests/corpus/<target>/ so every CI run replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config tokens idx checkpoint tokenizer)
[ -d build/sanitize ] || { echo "fuzz: no build/sanitize; run tools/setup.sh first"; exit 1; }
ninja -C build/sanitize "${targets[@]/#/fuzz_}" >/dev/null
failed=0
for t in "${targets[@]}"; do
  echo "fuzz: $t for $secs s"
  bash tests/fuzz/run.sh fuzz "build/sanitize/tests/fuzz/fuzz_$t" "tests/corpus/$t" "$secs" || failed=1
done
exit $failed
