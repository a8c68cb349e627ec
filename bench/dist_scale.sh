#!/usr/bin/env bash
# dist_scale.sh: one machine's cores as one process or as MPI ranks. The same
# pre-training (MODEL, STEPS updates of BATCH rows of 128 tokens, seed 0) runs as
#   (a) one process, --threads 2
#   (b) mpirun -np 2 (shared memory: --mca pml ob1 --mca btl self,vader; ob1 is the
#       point-to-point layer that uses --mca btl), --threads 1 each
# alternated over ROUNDS rounds after one untimed 1-step run of each (it fills the JIT
# cache and stops early on a broken setup), then one table: the median step time, the
# median tokens/s, the communication share and (b) against (a).
#
#   bench/dist_scale.sh                  # bert-mini, 40 updates of 32 rows, 3 rounds
#   MODEL=models/bert-tiny.xml STEPS=20 ROUNDS=5 bench/dist_scale.sh
#
# Environment:
#   MODEL     model description (default models/bert-mini.xml)
#   STEPS     updates per run (default 40); BATCH rows per update, all ranks together
#             (default 32); ROUNDS (default 3)
#   DATA_DIR  (default ../shared/data): with wikitext2/valid.txt there, the corpus is
#             WikiText-2 valid (bench/wikitext_corpus.sh); without it, a generated text
#             (made-up words with a Zipf-like frequency, long documents). Either way the
#             vocabulary is learnt from it with --size 8000, as pretrain_wikitext.sh does,
#             so both give the same model size and the same gradient bytes.
#   CORPUS, VOCAB  use these instead (both)
#   BERTCC    a bertcc binary built with MPI; without it, bertcc is built (Release) in
#             BUILD_DIR (default build)
#   MPIRUN    (default mpirun); MPIRUN_ARGS extra mpirun options (e.g. "--bind-to none";
#             Open MPI binds each of 2 ranks to a core by default)
#   OUT_DIR   keeps the runs (logs, run directories, samples.tsv, table.md) there;
#             default: a temporary folder, removed at the end
#
# Step time: bertcc's progress line (--log-every 1) goes to stderr once per update, and
# each line is stamped here on arrival ($EPOCHREALTIME), so a step's time is the gap
# between two lines; the first update (warm-up) is left out. train_log.csv gives no
# time (its tokens_per_s counts tokens that are not padding, which differ per update), and
# the summary's "communication A s of B s training" is printed only with 2 or more ranks.
# tokens/s: train_log.csv's, median of the updates after the first. Communication share:
# the summary line of (b), A / B over the rounds; beyond the folds it counts the small
# collectives between updates (stop and save agreements, the rank check before the last
# checkpoint), where a rank waits for the slower one, so it is above the progress lines'
# per-update "comm X%" (also in the per-run rows).
# The per-run rows give the 1-minute load average before each run: other work on the
# machine slows (b) more than (a) (a rank bound to a busy core waits, and so does the
# other rank at the next collective), so read the ratio only from quiet runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export LC_ALL=C # $EPOCHREALTIME and printf with a decimal point

model=${MODEL:-models/bert-mini.xml}
steps=${STEPS:-40}
batch=${BATCH:-32}
rounds=${ROUNDS:-3}
data=${DATA_DIR:-../shared/data}
mpirun=${MPIRUN:-mpirun}
read -r -a mpirun_extra <<<"${MPIRUN_ARGS:-}"

die() {
  echo "dist_scale.sh: $*" >&2
  exit 1
}
[ -f "$model" ] || die "no model description $model"
[ "$steps" -ge 3 ] 2>/dev/null || die "STEPS must be a number, 3 or more"
[ "$rounds" -ge 1 ] 2>/dev/null || die "ROUNDS must be a number, 1 or more"
[ "$batch" -ge 2 ] 2>/dev/null || die "BATCH must be a number, 2 or more"
command -v "$mpirun" >/dev/null ||
  die "$mpirun not found: install Open MPI (Debian: openmpi-bin libopenmpi-dev) and" \
    "rebuild bertcc with it (tools/setup.sh), or set MPIRUN"
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 (\$EPOCHREALTIME)"
if [ -n "${OUT_DIR:-}" ]; then
  work=$OUT_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/bertcc-dist-scale.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
# A copy, so that a rebuild of the binary during the runs changes none of them.
cp "$(bench_bertcc)" "$work/bertcc" || die "no bertcc"
bertcc=$work/bertcc
"$bertcc" train --help 2>&1 | grep -q 'This build has MPI' ||
  die "the bertcc given was built without MPI (install libopenmpi-dev, reconfigure, rebuild)"

# ---- the corpus and vocabulary ----
if [ -n "${CORPUS:-}" ] || [ -n "${VOCAB:-}" ]; then
  [ -n "${CORPUS:-}" ] && [ -n "${VOCAB:-}" ] || die "set both CORPUS and VOCAB"
  bench_need "$CORPUS" "$VOCAB"
  corpus=$CORPUS vocab=$VOCAB source="$CORPUS"
else
  corpus=$work/corpus.txt vocab=$work/vocab.txt
  if [ -f "$data/wikitext2/valid.txt" ]; then
    bash bench/wikitext_corpus.sh "$data/wikitext2/valid.txt" >"$corpus"
    source="WikiText-2 valid ($data/wikitext2/valid.txt)"
  else
    # 300 documents of 30-70 sentences of 6-25 words; words of 1-3 syllables (70 of
    # them) drawn Zipf-like from 30,000; Park-Miller's generator, so any awk gives the
    # same text.
    awk 'function rnd() { s = (s * 16807) % 2147483647; return s / 2147483647 }
      BEGIN {
        split("a e i o u", V, " ")
        split("b d f g k l m n p r s t v z", C, " ")
        s = 12345
        for (d = 0; d < 300; d++) {
          if (d) print ""
          ns = 30 + int(rnd() * 41)
          for (i = 0; i < ns; i++) {
            nw = 6 + int(rnd() * 20)
            line = ""
            for (j = 0; j < nw; j++) {
              id = int(exp(rnd() * log(30000)))   # Zipf-like: P(id) ~ 1/id
              w = ""
              do { w = w C[1 + id % 14] V[1 + int(id / 14) % 5]; id = int(id / 70) } while (id > 0)
              line = line (j ? " " : "") w
            }
            print line " ."
          }
        }
      }' >"$corpus"
    source="generated text (no $data/wikitext2/valid.txt)"
  fi
  "$bertcc" vocab --corpus "$corpus" --size 8000 -o "$vocab" 2>"$work/vocab.log" ||
    { cat "$work/vocab.log" >&2; die "bertcc vocab failed"; }
fi

# ---- one run ----
# run CONFIG ROUND STEPS: trains; leaves $work/CONFIG-ROUND.log (stamped stderr) and
# $work/CONFIG-ROUND/ (the run directory).
run() {
  local cfg=$1 name=$1-$2 n=$3 cmd
  local args=(train "$model" --task pretrain --data "$corpus" --vocab "$vocab"
    --max-seq 128 --steps "$n" --batch-size "$batch" --seed 0 --no-eval --log-every 1
    -o "$work/$name")
  case $cfg in
  a) cmd=("$bertcc" "${args[@]}" --threads 2) ;;
  b) cmd=("$mpirun" --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl self,vader
    ${mpirun_extra[@]+"${mpirun_extra[@]}"} -np 2 "$bertcc" "${args[@]}" --threads 1) ;;
  esac
  rm -rf "${work:?}/$name"
  local t0=$EPOCHREALTIME
  if ! "${cmd[@]}" 2>&1 </dev/null | while IFS= read -r l; do
    printf '%s %s\n' "$EPOCHREALTIME" "$l"
  done >"$work/$name.log"; then
    tail -20 "$work/$name.log" >&2
    die "run $name failed: ${cmd[*]}"
  fi
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

echo "== $source; $model; $steps updates of $batch rows x 128 tokens; $rounds rounds" >&2
run a warm 1 >/dev/null
run b warm 1 >/dev/null

# samples.tsv: config, round, step, seconds (gap since the previous progress line),
# tokens/s (train_log.csv), the progress line's "comm X%" (0 for one process)
printf 'config\tround\tstep\tseconds\ttokens_per_s\tcomm_percent\n' >"$work/samples.tsv"
: >"$work/rounds.tsv"
for r in $(seq 1 "$rounds"); do
  for cfg in a b; do
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo ?)
    wall=$(run "$cfg" "r$r" "$steps")
    awk -v cfg="$cfg" -v r="$r" '
      FNR == NR {
        if ($2 == "step" && split($3, s, "/") == 2) {
          t[s[1] + 0] = $1
          c[s[1] + 0] = $(NF - 1) == "comm" ? $NF + 0 : 0
        }
        next
      }
      FNR > 1 && ($1 - 1) in t {
        printf "%s\t%d\t%d\t%.4f\t%s\t%s\n", cfg, r, $1, t[$1] - t[$1 - 1], $6, c[$1]
      }
    ' FS=' ' "$work/$cfg-r$r.log" FS=, "$work/$cfg-r$r/train_log.csv" >>"$work/samples.tsv"
    comm=$(sed -n 's/.*communication \([0-9.]*\) s of \([0-9.]*\) s training.*/\1 \2/p' \
      "$work/$cfg-r$r.log")
    [ "$cfg" = a ] || [ -n "$comm" ] || die "no communication summary in $work/$cfg-r$r.log"
    printf '%s\t%d\t%s\t%s\t%s\n' "$cfg" "$r" "$wall" "${comm:-0 0}" "$load" >>"$work/rounds.tsv"
    echo "== round $r ($cfg): ${wall} s" >&2
  done
done

n_expect=$((rounds * (steps - 1)))
for cfg in a b; do
  got=$(awk -v c="$cfg" '$1 == c' "$work/samples.tsv" | wc -l)
  [ "$got" -eq "$n_expect" ] ||
    die "($cfg): $got step times, expected $n_expect (see $work/$cfg-r*.log)"
done

params=$("$bertcc" show "$work/a-r1/weights.safetensors" 2>/dev/null | awk '
  { s = $0; sub(/^[^[]*\[/, "", s); sub(/\].*/, "", s); n = split(s, d, ", *"); p = 1
    for (i = 1; i <= n; i++) p *= d[i]; total += p }
  END { printf "%d", total }')
vocab_n=$(grep -c '' "$vocab")

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" -v k="$2" -F'\t' '$1 == c { print $k }' "$3"; }
sa=$(col a 4 "$work/samples.tsv" | median) sb=$(col b 4 "$work/samples.tsv" | median)
ta=$(col a 5 "$work/samples.tsv" | median) tb=$(col b 5 "$work/samples.tsv" | median)
commb=$(awk -F'\t' '$1 == "b" { split($4, c, " "); a += c[1]; t += c[2] }
  END { printf "%.1f", (t > 0) ? 100 * a / t : 0 }' "$work/rounds.tsv")

{
  echo "dist_scale.sh, $(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $("$mpirun" --version 2>/dev/null | head -1)"
  echo "$model, vocabulary $vocab_n, $params parameters ($(awk -v p="$params" 'BEGIN { printf "%.1f", 4 * p / 1048576 }') MiB of fp32 gradient); corpus: $source"
  echo "$steps updates of $batch rows x 128 tokens per run; median over the updates after the first of $rounds alternated rounds"
  echo
  echo "| configuration | median step s | tokens/s | communication | step time vs (a) | tokens/s vs (a) |"
  echo "|---|---:|---:|---:|---:|---:|"
  printf '| (a) 1 process, --threads 2 | %.3f | %.0f | 0%% | 1.00 | 1.00 |\n' "$sa" "$ta"
  printf '| (b) mpirun -np 2, --threads 1 | %.3f | %.0f | %s%% | %.2f | %.2f |\n' "$sb" "$tb" \
    "$commb" "$(awk -v a="$sa" -v b="$sb" 'BEGIN { print b / a }')" \
    "$(awk -v a="$ta" -v b="$tb" 'BEGIN { print b / a }')"
  echo
  echo "| configuration | round | load before | wall s (process) | median step s | tokens/s | communication s of training s | median comm % per update |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  while IFS=$'\t' read -r cfg r wall comm load; do
    ms=$(awk -v c="$cfg" -v r="$r" -F'\t' '$1 == c && $2 == r { print $4 }' "$work/samples.tsv" | median)
    mt=$(awk -v c="$cfg" -v r="$r" -F'\t' '$1 == c && $2 == r { print $5 }' "$work/samples.tsv" | median)
    mc=$(awk -v c="$cfg" -v r="$r" -F'\t' '$1 == c && $2 == r { print $6 }' "$work/samples.tsv" | median)
    printf '| (%s) | %d | %s | %s | %.3f | %.0f | %s | %s |\n' "$cfg" "$r" "$load" "$wall" "$ms" "$mt" \
      "$([ "$cfg" = a ] && echo - || awk -v c="$comm" 'BEGIN { split(c, x, " "); printf "%.2f of %.2f", x[1], x[2] }')" \
      "$([ "$cfg" = a ] && echo - || echo "$mc")"
  done <"$work/rounds.tsv"
} | tee "$work/table.md"
