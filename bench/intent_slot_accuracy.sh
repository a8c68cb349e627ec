#!/usr/bin/env bash
# intent_slot_accuracy.sh: the accuracy target of issue 5 (intent + slot, trained from
# scratch). For ATIS and SNIPS, it learns a WordPiece vocabulary from the train split
# only, trains bert-mini (L4 H256 A4 I1024, no pre-trained weights) with the JIT
# backend on 2 threads for each of 3 seeds, timing each run, then evaluates the weights
# that were best on dev on the test split (bertcc eval --json) and prints a table with
# the median over seeds. Results and hyper-parameters: bench/RESULTS-intent-slot.md.
#
# Environment:
#   DATA_DIR  the data sets (default ../shared/data: DATA_DIR/{atis,snips}/{train,dev,test})
#   OUT_DIR   vocabularies, run directories, logs and results.tsv (default /tmp/bertcc-intent-slot)
#   BERTCC    a bertcc binary to use; without it, bertcc is built (Release) in BUILD_DIR
#   BUILD_DIR (default build)
#   DATASETS  (default "atis snips"), SEEDS (default "0 1 2"), THREADS (default 2)
#   SPLIT     the split evaluated at the end (default test; dev for tuning)
#   KEEP=1    keep the runs already finished in OUT_DIR (their .wall and .SPLIT.json
#             files) and train only the missing ones: to add seeds or data sets later
# Each training must take at most 15 minutes of wall time; a run over that is flagged
# in the table (on 2 otherwise idle cores they take about 4-6 minutes, see the results).
set -euo pipefail
cd "$(dirname "$0")/.."

data=${DATA_DIR:-../shared/data}
out=${OUT_DIR:-/tmp/bertcc-intent-slot}
datasets=${DATASETS:-atis snips}
seeds=${SEEDS:-0 1 2}
threads=${THREADS:-2}
split=${SPLIT:-test}
limit_s=900

for ds in $datasets; do
  for sp in train dev test; do
    for f in seq.in seq.out label; do
      if [ ! -f "$data/$ds/$sp/$f" ]; then
        echo "intent_slot_accuracy.sh: $data/$ds/$sp/$f is missing: set DATA_DIR to the" \
          "folder holding $datasets (each with {train,dev,test}/{seq.in,seq.out,label})" >&2
        exit 2
      fi
    done
  done
done

if [ -n "${BERTCC:-}" ]; then
  bertcc=$BERTCC
else
  build=${BUILD_DIR:-build}
  echo "== building bertcc (Release) into $build/" >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target bertcc >/dev/null
  bertcc=$build/bertcc
fi
[ -x "$bertcc" ] || { echo "intent_slot_accuracy.sh: no bertcc at $bertcc" >&2; exit 1; }

# The recipe, per data set (see bench/RESULTS-intent-slot.md for how it was chosen on dev).
# vocab size | epochs | batch size | peak lr | warm-up fraction | model description
recipe() {
  case $1 in
    atis) echo "1000 30 32 1e-3 0.1 models/bert-mini.xml" ;;
    snips) echo "8000 15 32 1e-3 0.1 models/bert-mini.xml" ;;
    *) echo "intent_slot_accuracy.sh: no recipe for data set '$1'" >&2; exit 1 ;;
  esac
}

mkdir -p "$out"
results=$out/results.tsv
printf 'dataset\tseed\twall_s\tintent_accuracy\tslot_f1\tframe_accuracy\n' >"$results"

json_get() { # json_get KEY < json  (a flat object of numbers, as bertcc eval --json prints)
  sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p"
}

for ds in $datasets; do
  read -r vsize epochs bs lr warmup model <<<"$(recipe "$ds")"
  vocab=$out/$ds-vocab$vsize.txt
  # From the train split only (lower-cased, accents stripped: what train and eval do by
  # default), so that nothing of dev or test leaks into it.
  "$bertcc" vocab --corpus "$data/$ds/train/seq.in" --size "$vsize" --strip-accents -o "$vocab"
  for seed in $seeds; do
    run=$out/$ds-seed$seed
    if [ "${KEEP:-0}" = 1 ] && [ -s "$out/$ds-seed$seed.wall" ] &&
      [ -s "$out/$ds-seed$seed.$split.json" ]; then
      echo "== $ds seed $seed: kept from $out" >&2
      j=$(cat "$out/$ds-seed$seed.$split.json")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$seed" "$(cat "$out/$ds-seed$seed.wall")" \
        "$(json_get intent_accuracy <<<"$j")" "$(json_get slot_f1 <<<"$j")" \
        "$(json_get frame_accuracy <<<"$j")" >>"$results"
      continue
    fi
    rm -rf "$run" "$out/$ds-seed$seed.wall"
    cmd=("$bertcc" train "$model" --task intent-slot --data "$data/$ds" --vocab "$vocab"
      -o "$run" --epochs "$epochs" --batch-size "$bs" --lr "$lr" --warmup "$warmup"
      --seed "$seed" --backend jit --threads "$threads" --log-every 100)
    echo "== ${cmd[*]}" >&2
    t0=$(date +%s.%N)
    "${cmd[@]}" 2>"$out/$ds-seed$seed.log"
    t1=$(date +%s.%N)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')
    echo "$wall" >"$out/$ds-seed$seed.wall"
    grep -v '^step ' "$out/$ds-seed$seed.log" >&2 || true
    echo "== $ds seed $seed: trained in $wall s" >&2
    j=$("$bertcc" eval --model "$run" --data "$data/$ds" --split "$split" --json \
      --threads "$threads")
    echo "$j" >"$out/$ds-seed$seed.$split.json"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$seed" "$wall" "$(json_get intent_accuracy <<<"$j")" \
      "$(json_get slot_f1 <<<"$j")" "$(json_get frame_accuracy <<<"$j")" >>"$results"
  done
done

# The table: every seed, then the median per data set (percentages).
awk -F'\t' -v limit="$limit_s" -v sp="$split" '
  NR == 1 { next }
  { n[$1]++; k = $1 SUBSEP n[$1]; W[k] = $3; I[k] = $4 * 100; F[k] = $5 * 100; R[k] = $6 * 100
    if (!($1 in seen)) { seen[$1] = 1; order[++nd] = $1 }
    printf "| %-5s | %4s | %6d%s | %6.2f | %6.2f | %6.2f |\n", $1, $2, $3,
      ($3 > limit ? " (over 15 min)" : ""), $4 * 100, $5 * 100, $6 * 100 }
  function med(A, ds, m,   i, j, t, v) {
    for (i = 1; i <= m; i++) v[i] = A[ds SUBSEP i]
    for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
  }
  BEGIN { print "| data | seed | wall s | intent acc % | slot F1 % | frame acc % |"
          print "| --- | ---: | ---: | ---: | ---: | ---: |" }
  END { for (d = 1; d <= nd; d++) { ds = order[d]; m = n[ds]
          printf "| %-5s | median | %6d | %6.2f | %6.2f | %6.2f |\n", ds, med(W, ds, m),
            med(I, ds, m), med(F, ds, m), med(R, ds, m) }
        print "(split: " sp ")" }
' "$results" | tee "$out/table.md"
