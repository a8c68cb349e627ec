#!/usr/bin/env bash
# allreduce.sh: allreduce_bench (MPI_Allreduce against bertcc's rank-ordered fold,
# train/dist.h) with NP ranks over shared memory (--mca btl self,vader) and over TCP on
# the loopback interface (--mca btl self,tcp --mca btl_tcp_if_include lo; Open MPI's TCP
# transport leaves lo out by default). The point-to-point layer is fixed to ob1, the one
# that uses these transports (UCX's would ignore --mca btl).
#
#   bench/allreduce.sh [allreduce_bench options]     e.g. -r 21, -b 4, --max 16777216
#
# Environment:
#   ALLREDUCE_BENCH  the binary; without it, built (Release, -DBERTCC_BENCH=ON) in
#                    BUILD_DIR (default build), which needs MPI and OpenBLAS
#   NP (default 2), THREADS (OpenMP threads per rank for the fold's adds, default 1)
#   TRANSPORTS       (default "vader tcp")
#   MPIRUN           (default mpirun); MPIRUN_ARGS extra mpirun options
set -euo pipefail
cd "$(dirname "$0")/.."

np=${NP:-2}
threads=${THREADS:-1}
mpirun=${MPIRUN:-mpirun}
read -r -a mpirun_extra <<<"${MPIRUN_ARGS:-}"
die() {
  echo "allreduce.sh: $*" >&2
  exit 1
}
command -v "$mpirun" >/dev/null ||
  die "$mpirun not found: install Open MPI (Debian: openmpi-bin libopenmpi-dev), or set MPIRUN"
if [ -n "${ALLREDUCE_BENCH:-}" ]; then
  bin=$ALLREDUCE_BENCH
else
  build=${BUILD_DIR:-build}
  echo "== building allreduce_bench (Release) into $build/" >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBERTCC_BENCH=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target allreduce_bench >/dev/null ||
    die "could not build allreduce_bench (it is configured only when CMake finds MPI:" \
      "libopenmpi-dev)"
  bin=$build/bench/allreduce_bench
fi
[ -x "$bin" ] || die "$bin is not executable"

echo "allreduce.sh, $(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $("$mpirun" --version 2>/dev/null | head -1)"
for tr in ${TRANSPORTS:-vader tcp}; do
  case $tr in
  vader) mca=(--mca btl self,vader) what="shared memory (--mca btl self,vader)" ;;
  tcp) mca=(--mca btl self,tcp --mca btl_tcp_if_include lo) what="TCP loopback (--mca btl self,tcp --mca btl_tcp_if_include lo)" ;;
  *) die "unknown transport $tr (vader or tcp)" ;;
  esac
  echo
  echo "### $np ranks, $what"
  echo
  env OMP_WAIT_POLICY=PASSIVE "$mpirun" --allow-run-as-root --oversubscribe --mca pml ob1 \
    "${mca[@]}" ${mpirun_extra[@]+"${mpirun_extra[@]}"} -np "$np" "$bin" -t "$threads" "$@" ||
    die "allreduce_bench failed over $tr"
done
