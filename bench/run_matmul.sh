#!/bin/sh
# Runs matmul_bench with OpenBLAS choosing its own kernel for this CPU (no forced core
# type or L2 size), and with both libraries' idle threads sleeping at once instead of
# spinning: OpenMP's through OMP_WAIT_POLICY=PASSIVE, OpenBLAS's through
# OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles; the default, 2^28 cycles ~ 0.1 s, leaves its
# worker spinning on the core that the next, generated run needs). Neither setting
# changes how either library computes.
#   bench/run_matmul.sh [BUILD_DIR] [matmul_bench options]
dir=${1:-build}
[ $# -gt 0 ] && shift
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=PASSIVE \
    OPENBLAS_THREAD_TIMEOUT=4 "$dir/bench/matmul_bench" "$@"
