# lib.sh: what the bench/ scripts share (sourced, from the repository root).

# bench_bertcc: prints the bertcc to use: $BERTCC when set, else one built (Release) in
# $BUILD_DIR (default build).
bench_bertcc() {
  if [ -n "${BERTCC:-}" ]; then
    [ -x "$BERTCC" ] || { echo "bench: BERTCC=$BERTCC is not executable" >&2; return 1; }
    echo "$BERTCC"
    return
  fi
  local build=${BUILD_DIR:-build}
  echo "== building bertcc (Release) into $build/" >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build "$build" -j"$(nproc)" --target bertcc >/dev/null &&
    echo "$build/bertcc"
}

# bench_need FILE...: fails naming the first missing file (set DATA_DIR).
bench_need() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || { echo "bench: $f is missing (set DATA_DIR to the data sets' folder)" >&2; return 2; }
  done
}
