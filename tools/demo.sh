#!/usr/bin/env bash
# demo.sh: the bundled default job. With nothing downloaded, it makes a small Korean
# voice-assistant data set (bertcc demo-data), learns a WordPiece vocabulary from it
# (cased, so Hangul stays syllables), fine-tunes a bert-tiny-shaped model from scratch
# for intent + slots, evaluates it on the test split and answers two sentences.
#
# Environment: DEMO_DIR (default /tmp/bertcc-demo) keeps the data and the run, so that
# `bertcc predict --model $DEMO_DIR/run "..."` works afterwards; BACKEND (jit, the
# default, or ref); EPOCHS (8); THREADS (all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bertcc=build/bertcc
if [ ! -x "$bertcc" ]; then
  echo "== building bertcc (Release) into build/"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" --target bertcc >/dev/null
fi
dir=${DEMO_DIR:-/tmp/bertcc-demo}
backend=${BACKEND:-jit}
epochs=${EPOCHS:-8}
threads=()
if [ -n "${THREADS:-}" ]; then threads=(--threads "$THREADS"); fi
mkdir -p "$dir"
rm -rf "$dir/data" "$dir/run" "$dir/vocab.txt"

echo "== bertcc demo-data -o $dir/data"
$bertcc demo-data -o "$dir/data"
echo "   e.g.: $(head -n 1 "$dir/data/train/seq.in")  ->  $(head -n 1 "$dir/data/train/seq.out")  /  $(head -n 1 "$dir/data/train/label")"

echo "== bertcc vocab (WordPiece, cased: Hangul stays syllables)"
$bertcc vocab --corpus "$dir/data/train/seq.in" --size 2000 --no-lowercase -o "$dir/vocab.txt"

train() {
  $bertcc train models/bert-tiny.xml --task intent-slot --data "$dir/data" \
    --vocab "$dir/vocab.txt" --no-lowercase -o "$dir/run" --epochs "$epochs" \
    --batch-size 16 --lr 1e-3 --seed 0 --backend "$1" "${threads[@]}"
}
echo "== bertcc train models/bert-tiny.xml --task intent-slot (backend $backend, $epochs epochs)"
if ! train "$backend"; then
  if [ "$backend" = jit ]; then
    echo "== the JIT backend failed; training again with the reference interpreter"
    rm -rf "$dir/run"
    backend=ref
    train ref
  else
    exit 1
  fi
fi

echo "== bertcc eval --model $dir/run --data $dir/data --split test"
$bertcc eval --model "$dir/run" --data "$dir/data" --split test --backend "$backend"

for text in "아이유 노래 아무거나 틀어줘" "노래 그만 틀어"; do
  echo "== bertcc predict --model $dir/run \"$text\""
  $bertcc predict --model "$dir/run" --backend "$backend" "$text"
done

echo "== done in $((SECONDS - start)) s; the run is in $dir/run (curves.svg, metrics.csv)."
echo "   Try: $bertcc predict --model $dir/run \"버스커 버스커 벚꽃 엔딩 틀어줘\""
