#!/usr/bin/env bash
# setup.sh: installs what bertcc needs on Debian 12 (as root) and builds it in build/.
# Every dependency and its reason is listed in README.md ("Dependencies").
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config llvm-19-dev libxml2-dev libjansson-dev
      libutf8proc-dev libcriterion-dev python3-numpy
      clang-19 libclang-rt-19-dev libomp-19-dev openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/bertcc"
