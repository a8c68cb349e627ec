#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets of tests/fuzz (clang-19, ASan + UBSan, in
# build-fuzz/) and runs them.
#   tools/fuzz.sh                 every target deterministically (-seed=1, a fixed number
#                                 of runs) over its committed corpus and crash reproducers;
#                                 what CI runs. Fails on any finding.
#   tools/fuzz.sh --time SECONDS  every target for SECONDS (by hand, for hours), keeping
#                                 what it learns in build-fuzz/corpus/TARGET; prints each
#                                 target's executions and coverage at the end.
# Targets: model_xml, config_json, safetensors, batch, vocab, tokenizer, ir_text, squad,
# atis
# (tests/fuzz/fuzz_*.c). A crash found is minimized into tests/fuzz/crashes/TARGET/ by
# hand, fixed, and committed as a reproducer: from then on every run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${FUZZ_RUNS:-20000}
time=0
if [ "${1:-}" = "--time" ]; then
  time=${2:?usage: tools/fuzz.sh [--time SECONDS]}
fi
command -v clang-19 >/dev/null || {
  echo "fuzz.sh: clang-19 is missing (tools/setup.sh installs it)" >&2
  exit 1
}
CC=clang-19 cmake -S . -B build-fuzz -DBERTCC_FUZZ=ON -DBERTCC_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
targets=(model_xml config_json safetensors batch vocab tokenizer ir_text squad atis)
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
status=0
for t in "${targets[@]}"; do
  work=build-fuzz/corpus/$t
  mkdir -p "$work"
  seeds=(tests/fuzz/corpus/$t)
  [ -d tests/fuzz/crashes/$t ] && seeds+=(tests/fuzz/crashes/$t)
  if [ "$time" = 0 ]; then
    # a fresh directory for what this run adds, so that neither the committed corpus nor
    # a long run's (build-fuzz/corpus) is written to
    work=build-fuzz/ci/$t
    rm -rf "$work" && mkdir -p "$work"
    log=$(mktemp)
    t0=$SECONDS
    if build-fuzz/fuzz_$t -seed=1 -runs="$runs" -max_len=8192 "$work" "${seeds[@]}" \
      >"$log" 2>&1; then
      echo "fuzz $t: $(grep -Eo 'Done [0-9]+ runs' "$log"), $(grep -Eo 'cov: [0-9]+' "$log" | tail -1), 0 findings, $((SECONDS - t0)) s"
    else
      echo "fuzz $t: FINDING" >&2
      grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -20 >&2
      status=1
    fi
    rm -f "$log"
  else
    build-fuzz/fuzz_$t -max_total_time="$time" -max_len=65536 -print_final_stats=1 \
      "$work" "${seeds[@]}" 2>&1 | grep -E "stat::number_of_executed_units|cov:|ERROR|SUMMARY" | tail -3 || status=1
  fi
done
exit $status
