#!/usr/bin/env bash
# classify_3i4k.sh: the accuracy target of issue 13 (Korean utterance-type
# classification, 3i4k, trained from scratch). It holds out every 10th record of
# fci_train_val.txt as dev (--holdout 10, fixed), learns a WordPiece vocabulary from the
# training part only (Hangul syllables kept), trains bert-mini (L4 H256 A4 I1024, no
# pre-trained weights) with the JIT on 2 threads for each of 3 seeds, timing each run,
# then scores the weights that were best on dev on fci_test.txt (bertcc eval --json) and
# prints a table with the median over seeds.
#
# Environment:
#   DATA_DIR  the data sets (default ../shared/data: DATA_DIR/3i4k/fci_{train_val,test}.txt)
#   OUT_DIR   vocabulary, run directories (OUT_DIR/3i4k-seedN), logs and results.tsv
#             (default /tmp/bertcc-3i4k)
#   BERTCC    a bertcc binary to use; without it, bertcc is built (Release) in BUILD_DIR
#   SEEDS     (default "0 1 2"), THREADS (default 2)
#   SPLIT     test (the default: fci_test.txt) or dev (the held-out tenth, for tuning)
#   KEEP=1    keep the runs already finished in OUT_DIR and train only the missing ones
#   EPOCHS, BATCH, ACCUM, LR, WARMUP, WEIGHT_DECAY, VOCAB_SIZE, MAX_SEQ, EXTRA: override
#             the recipe below (EXTRA: more train options, e.g. "--class-weights balanced")
#   VOCAB_OPTS more `bertcc vocab` options (e.g. "--limit-alphabet 4000")
# Each training must take at most 15 minutes of wall time; a run over that is flagged.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

data=${DATA_DIR:-../shared/data}/3i4k
out=${OUT_DIR:-/tmp/bertcc-3i4k}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-2}
split=${SPLIT:-test}
limit_s=900
bench_need "$data/fci_train_val.txt" "$data/fci_test.txt"
bertcc=$(bench_bertcc)

# The recipe (chosen on dev: bench/RESULTS-classify.md).
# Updates of 256 rows of similar length (on dev, 64 x 4 did as well, but is slower); 6
# epochs are what fit in the 15 minutes on 2 cores (10 epochs took about 18).
epochs=${EPOCHS:-6}
batch=${BATCH:-256}
accum=${ACCUM:-1}
lr=${LR:-1e-3}
warmup=${WARMUP:-0.1}
wd=${WEIGHT_DECAY:-0.1}
vsize=${VOCAB_SIZE:-8000}
max_seq=${MAX_SEQ:-64}
extra=${EXTRA:-}

mkdir -p "$out"
# The training part's texts: records 0, 1, ... with every 10th (index 9, 19, ...) held
# out, as --holdout 10 splits them (the file has no blank lines).
awk -F'\t' 'NR % 10 != 0 { sub(/\r$/, "", $2); print $2 }' "$data/fci_train_val.txt" \
  >"$out/train-text.txt"
vocab=$out/vocab$vsize.txt
# shellcheck disable=SC2086
"$bertcc" vocab --corpus "$out/train-text.txt" --size "$vsize" -o "$vocab" ${VOCAB_OPTS:-}

results=$out/results.tsv
printf 'seed\twall_s\taccuracy\tmacro_f1\n' >"$results"
json_get() { sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p"; }
for seed in $seeds; do
  run=$out/3i4k-seed$seed
  if [ "${KEEP:-0}" = 1 ] && [ -s "$run.wall" ] && [ -s "$run.$split.json" ]; then
    echo "== seed $seed: kept from $out" >&2
  else
    rm -rf "$run" "$run.wall"
    # shellcheck disable=SC2086
    cmd=("$bertcc" train models/bert-mini.xml --task classify
      --data "$data/fci_train_val.txt" --holdout 10 --vocab "$vocab" --no-strip-accents
      -o "$run" --epochs "$epochs" --batch-size "$batch" --lr "$lr" --warmup "$warmup"
      --accum "$accum" --group-by-length --weight-decay "$wd" --max-seq "$max_seq"
      --seed "$seed" --backend jit --threads "$threads" --log-every 200 $extra)
    echo "== ${cmd[*]}" >&2
    t0=$(date +%s.%N)
    "${cmd[@]}" 2>"$run.log" || { tail -20 "$run.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", b - a }' >"$run.wall"
    grep -v '^step ' "$run.log" >&2 || true
    if [ "$split" = dev ]; then
      "$bertcc" eval --model "$run" --data "$data/fci_train_val.txt" --split dev --json \
        --threads "$threads" >"$run.$split.json"
    else
      "$bertcc" eval --model "$run" --data "$data/fci_test.txt" --json \
        --threads "$threads" >"$run.$split.json"
    fi
  fi
  j=$(cat "$run.$split.json")
  printf '%s\t%s\t%s\t%s\n' "$seed" "$(cat "$run.wall")" "$(json_get accuracy <<<"$j")" \
    "$(json_get macro_f1 <<<"$j")" >>"$results"
done

awk -F'\t' -v limit="$limit_s" -v sp="$split" '
  NR == 1 { next }
  { n++; W[n] = $2; A[n] = $3 * 100; F[n] = $4
    printf "| %4s | %6d%s | %6.2f | %6.4f |\n", $1, $2, ($2 > limit ? " (over 15 min)" : ""),
      $3 * 100, $4 }
  function med(V, m,   i, j, t, v) {
    for (i = 1; i <= m; i++) v[i] = V[i]
    for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
  }
  BEGIN { print "| seed | wall s | accuracy % | macro F1 |"; print "| ---: | ---: | ---: | ---: |" }
  END { printf "| median | %6d | %6.2f | %6.4f |\n(split: %s)\n", med(W, n), med(A, n), med(F, n), sp }
' "$results" | tee "$out/table.md"
