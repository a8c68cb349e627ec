#!/usr/bin/env bash
# sweep.sh: compares `bertcc run` with the PyTorch oracle on random model
# configurations (odd sizes, random head subsets, padding, I32/I64 batches).
# Not part of the test suite (it needs /usr/bin/python3 with torch); run it by hand:
#   tests/oracle/sweep.sh [N] [BERTCC] [extra bertcc run options...]
# With GRADS=1 it also checks --grads against PyTorch autograd (cases without labels
# are then given labels).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10}
bertcc=${2:-build/bertcc}
shift $(($# < 2 ? $# : 2))
tmp=$(mktemp -d)
fails=0
expected=expected.safetensors
[ "${GRADS:-0}" = 1 ] && expected=expected_grads.safetensors
for i in $(seq 1 "$n"); do
  read -r args <<<"$(/usr/bin/python3 - "$i" "${GRADS:-0}" <<'PY'
import random, sys
r = random.Random(int(sys.argv[1]) * 7919)
heads = r.randint(1, 4); d = r.randint(1, 7); h = heads * d
hs = [x for x in ("mlm", "nsp", "intent", "slot", "qa") if r.random() < 0.5]
S = r.randint(1, 11); B = r.randint(1, 4)
args = ["--vocab", r.randint(5, 61), "--hidden", h, "--heads", heads,
        "--layers", r.randint(1, 3), "--intermediate", r.randint(1, 40),
        "--max-position", S + r.randint(0, 5), "--type-vocab", r.randint(1, 3),
        "--activation", r.choice(["gelu", "gelu_tanh"]),
        "--intent-classes", r.randint(1, 9), "--slot-labels", r.randint(1, 9),
        "--batch", B, "--seq", S, "--seed", sys.argv[1],
        "--ids-dtype", r.choice(["i64", "i32"])]
if hs: args += ["--model-heads", ",".join(hs)]
if r.random() < 0.2: args += ["--no-mask"]
if r.random() < 0.2 and sys.argv[2] != "1": args += ["--no-labels"]
if sys.argv[2] == "1": args += ["--grads"]
print(" ".join(map(str, args)))
PY
)"
  d=$tmp/case$i
  # shellcheck disable=SC2086
  /usr/bin/python3 tests/oracle/make_case.py "$d" $args >/dev/null
  if "$bertcc" run "$d/model.xml" --weights "$d/weights.safetensors" \
       --batch "$d/batch.safetensors" -o "$d/out.safetensors" --quiet ${GRADS:+--grads} "$@" \
       2>"$d/err" &&
     /usr/bin/python3 tests/oracle/compare.py "$d/$expected" "$d/out.safetensors" \
       >"$d/cmp" 2>&1; then
    echo "case $i ok   ($args)"
  else
    echo "case $i FAIL ($args)"; cat "$d/err" "$d/cmp" 2>/dev/null | grep -v '^ok' | head -5
    fails=$((fails + 1))
  fi
done
echo "$((n - fails)) passed, $fails failed"
[ "$fails" -eq 0 ] && rm -rf "$tmp"
[ "$fails" -eq 0 ]
