#!/usr/bin/env bash
# peers.sh: bertcc against ONNX Runtime and PyTorch on the same BERT workloads, in one
# run. Rounds interleave the sides (round r: OpenBLAS sgemm, then for each workload
# bertcc, ORT opset 12, ORT opset 14, PyTorch), each run a fresh process that prints
# the median ms of ITERS iterations after its warm-up; the table gives the median over
# rounds, ratios peer / bertcc, bertcc's GFLOP/s against the best OpenBLAS sgemm rate
# of this machine (bench/matmul_bench at the BERT shapes), and peak RSS. Setup and
# results: bench/README.md, "Peers".
#
#   bench/peers.sh [--no-bertcc]
# --no-bertcc measures only the peers and the sgemm limit (bertcc's columns say
# "skipped").
#
# Environment:
#   THREADS (default 2), ROUNDS (default 3, at least 3), ITERS (default 5)
#   WORKLOADS a subset of: base-b1 base-b8 mini-b32 base-train-b8 mini-train-b32 (all)
#   OUT_DIR   ONNX models, every run's JSON, results.tsv, table.md
#             (default /tmp/bertcc-peers)
#   BERTCC    a bertcc binary to use; without it, bertcc is built (Release) in BUILD_DIR
#   BUILD_DIR (default build; matmul_bench is built there with -DBERTCC_BENCH=ON)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

die() { echo "peers.sh: $*" >&2; exit 1; }

run_bertcc=1
for arg in "$@"; do
  case $arg in
    --no-bertcc) run_bertcc=0 ;;
    *) die "unknown argument $arg (usage: bench/peers.sh [--no-bertcc])" ;;
  esac
done
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
iters=${ITERS:-5}
workloads=${WORKLOADS:-base-b1 base-b8 mini-b32 base-train-b8 mini-train-b32}
out=${OUT_DIR:-/tmp/bertcc-peers}
build=${BUILD_DIR:-build}
py=/usr/bin/python3
peers=bench/peers
[ "$rounds" -ge 3 ] || die "ROUNDS=$rounds: the table needs the median of at least 3 rounds"

# workload name -> "model mode batch seq"
declare -A spec=(
  [base-b1]="models/bert-base.xml infer 1 128"
  [base-b8]="models/bert-base.xml infer 8 128"
  [mini-b32]="models/bert-mini-intent-slot.xml infer 32 128"
  [base-train-b8]="models/bert-base.xml train 8 128"
  [mini-train-b32]="models/bert-mini-intent-slot.xml train 32 128"
)
for w in $workloads; do [ -n "${spec[$w]:-}" ] || die "unknown workload $w"; done

# Setup, checked before anything is timed: nothing below reaches the network.
[ -d $peers/node_modules/onnxruntime-node ] ||
  die "onnxruntime-node is missing: (cd $peers && npm ci --ignore-scripts)"
$py -c 'import torch, onnx' 2>/dev/null ||
  die "$py lacks torch or onnx: apt-get install python3-torch python3-onnx python3-numpy"
if [ $run_bertcc = 1 ]; then
  bertcc=$(bench_bertcc)
  "$bertcc" bench --help >/dev/null 2>&1 ||
    die "$bertcc has no working 'bench' command (use --no-bertcc to measure only the peers)"
fi
mkdir -p "$out/onnx" "$out/runs"
rm -f "$out"/runs/*.json

# Each side's environment. OpenBLAS (PyTorch's BLAS here, and matmul_bench's) picks its
# own kernel for the CPU: no forced core type or L2 size. PyTorch's OpenMP threads sleep
# when idle (OMP_WAIT_POLICY=PASSIVE) instead of spinning against OpenBLAS's threads,
# and OpenBLAS gets PyTorch's thread count. bertcc and ONNX Runtime run as they default.
base_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
torch_env=("${base_env[@]}" OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS="$threads")

# The limit, measured in every round: the best OpenBLAS sgemm GFLOP/s over the BERT
# shapes at $threads threads (table.py reads it from matmul_bench's tables).
if [ ! -x "$build/bench/matmul_bench" ]; then
  echo "== building matmul_bench (Release, -DBERTCC_BENCH=ON) into $build/" >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBERTCC_BENCH=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target matmul_bench >/dev/null
fi
rm -f "$out"/sgemm-r*.md

vocab_of() { sed -n 's/.*[[:space:]]vocab-size="\([0-9]*\)".*/\1/p' "$1"; }

# ONNX models (inference only), named by a hash of what made them, so a changed model or
# exporter makes new ones.
declare -A onnx=()
ops=$out/ort-ops.tsv
: >"$ops"
for w in $workloads; do
  read -r model mode _ _ <<<"${spec[$w]}"
  [ "$mode" = infer ] || continue
  for opset in 12 14; do
    key="$model:$opset"
    [ -z "${onnx[$key]:-}" ] || continue
    hash=$(cat $peers/bert_torch.py $peers/export_onnx.py "$model" | sha256sum | cut -c1-12)
    f="$out/onnx/$(basename "$model" .xml)-opset$opset-$hash.onnx"
    if [ ! -s "$f" ]; then
      echo "== exporting $model at opset $opset" >&2
      "${base_env[@]}" $py $peers/export_onnx.py "$model" --opset "$opset" -o "$f"
    fi
    onnx[$key]=$f
    # What ONNX Runtime fuses: the node types of the graph it runs (written by an
    # untimed session, so that every timed run is alike) that the export lacks.
    "${base_env[@]}" node $peers/ort_bench.js "$f" --batch-size 1 --seq-len 8 \
      --threads "$threads" --iters 1 --warmup 0 --vocab "$(vocab_of "$model")" \
      --optimized-out "${f%.onnx}.optimized.onnx" >/dev/null || die "ONNX Runtime failed on $f"
    fused=$($py $peers/ort_ops.py "${f%.onnx}.optimized.onnx" --not-in "$f")
    printf '%s\t%s\t%s\n' "$(basename "$model" .xml)" "$opset" "$fused" >>"$ops"
  done
done

# One run of one side: its JSON goes to runs/, its row to results.tsv.
# side WORKLOAD ROUND SIDE COMMAND...
results=$out/results.tsv
$py $peers/record.py --header >"$results"
side() {
  local w=$1 r=$2 s=$3 json
  shift 3
  json=$out/runs/r$r-$w-$s.json
  echo "== round $r: $w: $s" >&2
  "$@" >"$json" || die "$s failed on $w (round $r): $*"
  # shellcheck disable=SC2086 # spec's fields are words
  $py $peers/record.py "$json" "$r" "$w" ${spec[$w]} "$s" >>"$results" ||
    die "$s gave no usable result on $w (round $r)"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$rounds"); do
  echo "== round $r: sgemm: bench/run_matmul.sh $build -r 5 -t $threads" >&2
  bench/run_matmul.sh "$build" -r 5 -t "$threads" >"$out/sgemm-r$r.md" ||
    die "matmul_bench failed (round $r)"
  for w in $workloads; do
    read -r model mode B S <<<"${spec[$w]}"
    shape=(--batch-size "$B" --seq-len "$S" --threads "$threads" --iters "$iters")
    if [ $run_bertcc = 1 ]; then
      side "$w" "$r" bertcc "${base_env[@]}" "$bertcc" bench "$model" --mode "$mode" \
        "${shape[@]}" --json
    fi
    if [ "$mode" = infer ]; then
      for opset in 12 14; do
        side "$w" "$r" "ort$opset" "${base_env[@]}" node $peers/ort_bench.js \
          "${onnx[$model:$opset]}" "${shape[@]}" --vocab "$(vocab_of "$model")" --json
      done
    fi
    side "$w" "$r" pytorch "${torch_env[@]}" $py $peers/torch_bench.py "$model" \
      --mode "$mode" "${shape[@]}" --json
  done
done

cpu=$(lscpu | sed -n 's/^Model name: *//p')
versions="onnxruntime-node $(node -p "require('./$peers/node_modules/onnxruntime-node/package.json').version")"
versions+=", python3-torch $(dpkg-query -W -f '${Version}' python3-torch)"
load="$load_before / $(cut -d' ' -f1-3 /proc/loadavg)"
$py $peers/table.py "$results" --sgemm "$out"/sgemm-r*.md --ops "$ops" --cpu "$cpu" \
  --versions "$versions" --load "$load" --threads "$threads" --rounds "$rounds" \
  --iters "$iters" | tee "$out/table.md"
