#!/usr/bin/env bash
# compare_outputs.sh OLD_BERTCC NEW_BERTCC: runs the same commands with two bertcc
# binaries (e.g. before and after a refactoring) and compares what they write, byte for
# byte: run (forward and --grads, both backends), the compile stages ir/opt/grad,
# tokenize, vocab, demo-data, pretrain-data, train of every task (interrupted with
# --steps and resumed), eval --json, predict and export. Only the timing columns of
# train_log.csv (tokens_per_s) are left out; stderr (notes and errors, no progress: every
# command runs --quiet) is compared too.
#
# Run it from the repository root; it needs no ../shared. Exit status 0 when every
# output is identical. WORK (default: a new temporary folder) keeps both trees.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1") new=$(realpath "$2")
work=${WORK:-$(mktemp -d)}
fx=tests/fixtures
export BERTCC_CACHE_DIR=off OMP_NUM_THREADS=2

root=$PWD
jobs() { # $1: the bertcc binary; runs every command in the current folder
  local b=$1 r=$PWD
  ( cd "$root"
    "$b" run $fx/run_tiny/model.xml --weights $fx/run_tiny/weights.safetensors \
      --batch $fx/run_tiny/batch.safetensors -o "$r/run.safetensors" --quiet
    "$b" run $fx/run_mlm_nsp/model.xml --weights $fx/run_mlm_nsp/weights.safetensors \
      --batch $fx/run_mlm_nsp/batch.safetensors -o "$r/run_grads.safetensors" --grads --quiet
    "$b" run $fx/run_mlm_nsp/model.xml --batch $fx/run_mlm_nsp/batch.safetensors \
      -o "$r/run_ref.safetensors" --grads --backend ref --seed 3 --quiet
    for st in ir opt grad; do
      "$b" models/bert-tiny-all-heads.xml --emit=$st -o "$r/emit_$st.txt"
    done
  )
  "$b" demo-data -o data --per-intent 60 2>/dev/null
  "$b" vocab --corpus data/train/seq.in --size 400 --no-lowercase -o vocab.txt 2>/dev/null
  "$b" tokenize --vocab vocab.txt --no-lowercase "아이유 노래 아무거나 틀어줘" >tokenize.txt
  local m=$root/models/bert-tiny.xml common=(--threads 2 --quiet --seed 1)
  "$b" train "$m" --task intent-slot --data data --vocab vocab.txt --no-lowercase -o is \
    --epochs 2 --batch-size 16 --lr 1e-3 --steps 5 "${common[@]}"
  "$b" train --resume is --steps 12 --quiet
  "$b" eval --model is --data data --split test --json >is_eval.json
  "$b" predict --model is "아이유 노래 아무거나 틀어줘" "노래 그만 틀어" >is_predict.txt
  "$b" predict --model is --json "아이유 노래 틀어줘" >is_predict.json
  "$b" export --model is -o is_hf 2>/dev/null
  local q=$root/$fx/qa_task
  "$b" train "$m" --task qa --data $q/train.json --holdout 2 --vocab $q/vocab.txt \
    --no-lowercase -o qa --steps 4 --batch-size 2 --accum 2 --max-seq 64 "${common[@]}"
  "$b" eval --model qa --data $q/train.json --split dev --json >qa_eval.json
  "$b" predict --model qa --question "이순신은 언제 태어났나요?" \
    --context "이순신은 조선 중기의 무신이다. 그는 1545년 한성 건천동에서 태어났다." >qa_predict.txt
  awk '{print} NR % 8 == 0 {print ""}' data/train/seq.in >corpus.txt
  "$b" pretrain-data --corpus corpus.txt --vocab vocab.txt --no-lowercase \
    --max-seq 32 --max-predictions 5 --dupe-factor 2 --seed 4 -o pd.safetensors 2>/dev/null
  "$b" train "$m" --task pretrain --data corpus.txt --vocab vocab.txt \
    --no-lowercase -o pt --steps 3 --batch-size 4 --max-seq 32 --holdout 5 "${common[@]}"
  "$b" train "$m" --data pd.safetensors -o batches --steps 2 --batch-size 4 --group-by-length "${common[@]}"
  "$b" predict --model pt "아이유 [MASK] 틀어줘" >pt_predict.txt
}

for side in old new; do
  rm -rf "${work:?}/$side" && mkdir -p "$work/$side"
  bin=$old && [ $side = new ] && bin=$new
  (cd "$work/$side" && jobs "$bin") 2>"$work/$side.stderr" ||
    { echo "compare_outputs: the $side binary failed (see $work/$side.stderr)" >&2; exit 1; }
  # Timing columns: tokens_per_s in train_log.csv (the last column).
  find "$work/$side" -name train_log.csv -exec sed -i -E 's/,[^,]*$//' {} +
done
# Absolute paths in options.json and the notes on stderr name each side's own folder.
find "$work/new" -name options.json -exec sed -i "s#$work/new#$work/old#g" {} +
sed -i "s#$work/new#$work/old#g" "$work/new.stderr"
if diff -r "$work/old" "$work/new" && diff "$work/old.stderr" "$work/new.stderr"; then
  echo "compare_outputs: identical ($(find "$work/old" -type f | wc -l) files in $work)"
else
  echo "compare_outputs: outputs differ (trees in $work)" >&2
  exit 1
fi
