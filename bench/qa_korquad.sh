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
#   PRETRAIN_EPOCHS  when > 0, first pre-trains bert-mini (masked LM + NSP, from scratch)
#            on the contexts of the training articles only (one sentence per line, an
#            article a document; streamed, PRETRAIN_ROWS rows an epoch, default 1300:
#            about one pass), then fine-tunes QA from that checkpoint (default 0: off)
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
rm -rf "$out/run" "$out/pretrain"
init=()
if [ "${PRETRAIN_EPOCHS:-0}" -gt 0 ]; then
  # The contexts of the articles --holdout 5 trains on (article i with i % 5 != 4).
  python3 - "$squad" >"$out/contexts.txt" <<'PY'
import json, re, sys
arts = json.load(open(sys.argv[1], encoding="utf-8"))["data"]
for i, a in enumerate(arts):
    if i % 5 == 4:
        continue
    for p in a["paragraphs"]:
        for s in re.split(r"(?<=[.?!])\s+", p["context"].strip()):
            if s.strip():
                print(s.strip())
    print()
PY
  pcmd=("$bertcc" train models/bert-mini.xml --task pretrain --data "$out/contexts.txt"
    --vocab "$vocab" --no-lowercase -o "$out/pretrain" --max-seq "$max_seq"
    --stream-rows "${PRETRAIN_ROWS:-1300}" --epochs "$PRETRAIN_EPOCHS" --batch-size 32
    --lr 1e-3 --warmup 0.05 --seed 0 --threads "$threads" --log-every 50)
  echo "== ${pcmd[*]}" >&2
  t0=$(date +%s)
  "${pcmd[@]}" 2>"$out/pretrain.log" || { tail -20 "$out/pretrain.log" >&2; exit 1; }
  echo "== pre-trained in $(($(date +%s) - t0)) s" >&2
  grep -v '^step ' "$out/pretrain.log" >&2 || true
  init=(--init "$out/pretrain/best.safetensors")
fi
cmd=("$bertcc" train models/bert-mini-qa.xml --task qa --data "$squad" --holdout 5
  --vocab "$vocab" --no-lowercase -o "$out/run" --max-seq "$max_seq" --doc-stride 128
  --epochs "$epochs" --batch-size 32 --lr 1e-3 --warmup 0.1 --seed 0 --threads "$threads"
  --log-every 50 "${init[@]}")
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
