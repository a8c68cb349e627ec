#!/usr/bin/env bash
# pretrain_wikitext.sh: issue 5's pre-training check. Pre-trains bert-tiny from scratch
# (masked LM + next-sentence prediction) on WikiText-2 (valid + test: 122 Wikipedia
# articles, turned into one sentence per line by bench/wikitext_corpus.sh; every 10th
# article is dev), printing dev MLM loss/accuracy and NSP accuracy per epoch; then
# fine-tunes ATIS intent+slot from its best checkpoint and, with the same vocabulary,
# options and seed, from scratch, and evaluates both on ATIS test.
#
# Environment:
#   DATA_DIR  (default ../shared/data: wikitext2/{valid,test}.txt and atis/)
#   OUT_DIR   (default /tmp/bertcc-pretrain)
#   BERTCC    a bertcc binary; without it, bertcc is built (Release) in BUILD_DIR (build)
#   EPOCHS    pre-training epochs (default 24), FT_EPOCHS fine-tuning epochs (default 8)
#   STREAM_ROWS  rows per pre-training epoch, streamed with fresh pairs every pass over the
#             corpus (default 4800, about one pass; 0: the instances are made once and
#             every epoch sees the same pairs, which a small model memorizes: its dev NSP
#             loss then rises while the training NSP loss falls)
#   THREADS   (default 2)
# Results: the per-epoch dev lines of the pre-training, then one table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

data=${DATA_DIR:-../shared/data}
out=${OUT_DIR:-/tmp/bertcc-pretrain}
epochs=${EPOCHS:-24}
stream_rows=${STREAM_ROWS:-4800}
ft_epochs=${FT_EPOCHS:-8}
threads=${THREADS:-2}
bench_need "$data"/wikitext2/{valid,test}.txt "$data"/atis/{train,dev,test}/seq.in
bertcc=$(bench_bertcc)
mkdir -p "$out"
rm -rf "$out/pretrain" "$out/atis-from-pretrain" "$out/atis-from-scratch"

bash bench/wikitext_corpus.sh "$data/wikitext2/valid.txt" "$data/wikitext2/test.txt" \
  >"$out/corpus.txt"
# The vocabulary: from the pre-training corpus alone (lower-cased, as train's default).
"$bertcc" vocab --corpus "$out/corpus.txt" --size 8000 -o "$out/vocab.txt"

# The MLM gather's speed-up: the same 60 updates with the head on the masked positions
# only (the default) and on every position (--mlm-gather 0), alternated, twice each.
speed() { # speed GATHER -> seconds
  local t0 t1
  rm -rf "$out/speed"
  t0=$(date +%s.%N)
  "$bertcc" train models/bert-tiny.xml --task pretrain --data "$out/corpus.txt" \
    --vocab "$out/vocab.txt" -o "$out/speed" --steps 60 --batch-size 32 --seed 0 \
    --threads "$threads" --no-eval --quiet --mlm-gather "$1" 2>/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
speed 1 >/dev/null # compile both graphs once (JIT object cache)
speed 0 >/dev/null
g1=$(speed 1); f1=$(speed 0); g2=$(speed 1); f2=$(speed 0)
echo "== 60 updates: MLM head gathered ${g1} s, ${g2} s; at every position ${f1} s, ${f2} s" >&2

t0=$(date +%s)
"$bertcc" train models/bert-tiny.xml --task pretrain --data "$out/corpus.txt" \
  --vocab "$out/vocab.txt" -o "$out/pretrain" --epochs "$epochs" --batch-size 32 \
  --lr 1e-3 --warmup 0.05 --seed 0 --threads "$threads" --log-every 200 \
  --stream-rows "$stream_rows" \
  2>"$out/pretrain.log" || { tail -20 "$out/pretrain.log" >&2; exit 1; }
t1=$(date +%s)
grep -v '^step ' "$out/pretrain.log" >&2 || true
echo "== pre-trained in $((t1 - t0)) s" >&2

ft() { # ft NAME [--init CKPT]
  local name=$1
  shift
  "$bertcc" train models/bert-tiny.xml --task intent-slot --data "$data/atis" \
    --vocab "$out/vocab.txt" -o "$out/$name" --epochs "$ft_epochs" --batch-size 32 \
    --lr 1e-3 --seed 0 --threads "$threads" --quiet "$@" 2>"$out/$name.log" ||
    { tail -20 "$out/$name.log" >&2; exit 1; }
  "$bertcc" eval --model "$out/$name" --data "$data/atis" --split test --json \
    --threads "$threads" >"$out/$name.json"
}
ft atis-from-pretrain --init "$out/pretrain/best.safetensors"
ft atis-from-scratch

get() { sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1"; }
first=$(grep '^dev @' "$out/pretrain.log" | head -1)
last=$(grep '^dev @' "$out/pretrain.log" | tail -1)
field() { sed -n "s/.* $1 \([-0-9.eE+]*\).*/\1/p"; }
{
  echo "| pre-training dev (bert-tiny, WikiText-2) | MLM loss | MLM accuracy | NSP accuracy |"
  echo "| --- | ---: | ---: | ---: |"
  for l in "$first" "$last"; do
    printf '| %s | %s | %s | %s |\n' "$(sed -n 's/^dev @ \(epoch [0-9.]*\).*/\1/p' <<<"$l")" \
      "$(field mlm_loss <<<"$l")" "$(field mlm_accuracy <<<"$l")" "$(field nsp_accuracy <<<"$l")"
  done
  echo
  echo "| ATIS test, bert-tiny, $ft_epochs epochs | intent acc | slot F1 | frame acc |"
  echo "| --- | ---: | ---: | ---: |"
  for n in atis-from-pretrain atis-from-scratch; do
    printf '| %s | %s | %s | %s |\n' "$n" "$(get "$out/$n.json" intent_accuracy)" \
      "$(get "$out/$n.json" slot_f1)" "$(get "$out/$n.json" frame_accuracy)"
  done
  echo
  echo "60 pre-training updates (bert-tiny, B=32, S=128): MLM head gathered $g1 s / $g2 s," \
    "at every position $f1 s / $f2 s"
} | tee "$out/table.md"
