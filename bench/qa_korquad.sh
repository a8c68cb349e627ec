#!/usr/bin/env bash
# qa_korquad.sh: issue 5's QA check end to end. Trains bert-mini-qa from scratch (no
# pre-trained weights) on KorQuAD 1.0 with every 5th article held out (only the dev file
# is public here: 5774 questions, so about 4.6k train / 1.2k held out, split by article so
# that no passage is in both), with the KR-BERT character vocabulary, cased (Hangul
# syllables kept), then scores the held-out articles (bertcc eval --split dev --json:
# KorQuAD's EM and character F1), and answers the README's question. (XQuAD-en, 1190
# questions, is too small to train on from scratch; it serves as an English test file.)
#
# Environment:
#   DATA_DIR (default ../shared/data: korquad1/KorQuAD_v1.0_dev.json, krbert_vocab/)
#   OUT_DIR  (default /tmp/bertcc-qa)
#   BERTCC   a bertcc binary; without it, bertcc is built (Release) in BUILD_DIR (build)
#   EPOCHS   (default 2), MAX_SEQ (default 256), THREADS (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

data=${DATA_DIR:-../shared/data}
out=${OUT_DIR:-/tmp/bertcc-qa}
epochs=${EPOCHS:-2}
max_seq=${MAX_SEQ:-256}
threads=${THREADS:-2}
squad=$data/korquad1/KorQuAD_v1.0_dev.json
vocab=$data/krbert_vocab/vocab_char_16424.txt
bench_need "$squad" "$vocab"
bertcc=$(bench_bertcc)
mkdir -p "$out"
rm -rf "$out/run"
cmd=("$bertcc" train models/bert-mini-qa.xml --task qa --data "$squad" --holdout 5
  --vocab "$vocab" --no-lowercase -o "$out/run" --max-seq "$max_seq" --doc-stride 128
  --epochs "$epochs" --batch-size 32 --lr 1e-3 --warmup 0.1 --seed 0 --threads "$threads"
  --log-every 50)
echo "== ${cmd[*]}" >&2
t0=$(date +%s)
"${cmd[@]}" 2>"$out/train.log" || { tail -20 "$out/train.log" >&2; exit 1; }
t1=$(date +%s)
grep -v '^step ' "$out/train.log" >&2 || true
echo "== trained in $((t1 - t0)) s" >&2
"$bertcc" eval --model "$out/run" --data "$squad" --split dev --json --threads "$threads" |
  tee "$out/dev.json"
"$bertcc" predict --model "$out/run" --question "이순신은 언제 태어났나요?" \
  --context "이순신은 조선 중기의 무신이다. 1545년 한성에서 태어났다." || true
